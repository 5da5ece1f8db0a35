//! The `openai` engine: any server speaking the OpenAI-compatible
//! `POST /v1/audio/transcriptions` (whisper.cpp's server, faster-whisper / speaches, LocalAI,
//! vLLM, hosted APIs). Each party's audio is sent once, as a WAV in a multipart form, asking
//! for `verbose_json` with segment timestamps; the key goes as a bearer token, over TLS unless
//! the server is on loopback; redirects are not followed.

use std::sync::Arc;
use std::time::Duration;

use super::{EngineError, Phrase};
use crate::config::transcription::OpenAiSettings;
use crate::playback::serve::WavStream;

/// Bytes of answer read at most (a transcript of hours is a few hundred KB).
const MAX_ANSWER: usize = 16 << 20;

pub struct OpenAi {
    http: reqwest::Client,
    settings: OpenAiSettings,
}

#[derive(serde::Deserialize)]
struct Verbose {
    #[serde(default)]
    text: String,
    #[serde(default)]
    duration: Option<f64>,
    #[serde(default)]
    segments: Vec<Segment>,
}

#[derive(serde::Deserialize)]
struct Segment {
    start: f64,
    end: f64,
    text: String,
}

impl OpenAi {
    pub fn new(
        settings: OpenAiSettings,
        timeout: Duration,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<OpenAi, String> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls.as_ref().clone())
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(timeout)
            .user_agent(concat!("ari-recorder/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(OpenAi { http, settings })
    }

    fn endpoint(&self) -> String {
        format!(
            "{}/v1/audio/transcriptions",
            self.settings.url.as_str().trim_end_matches('/')
        )
    }

    pub async fn transcribe(
        &self,
        audio: WavStream,
        language: &str,
    ) -> Result<Vec<Phrase>, EngineError> {
        let wav = tokio::task::spawn_blocking(move || audio.read_range(0, audio.len()))
            .await
            .map_err(|e| EngineError::Failed(e.to_string()))?
            .map_err(|e| EngineError::Failed(format!("reading the audio: {e}")))?;
        let file = reqwest::multipart::Part::bytes(wav)
            .file_name("audio.wav")
            .mime_str("audio/wav")
            .map_err(|e| EngineError::Failed(e.to_string()))?;
        let form = reqwest::multipart::Form::new()
            .part("file", file)
            .text("model", self.settings.model.clone())
            .text("language", super::primary(language).to_ascii_lowercase())
            .text("response_format", "verbose_json")
            .text("timestamp_granularities[]", "segment");
        let mut request = self.http.post(self.endpoint()).multipart(form);
        if let Some(key) = &self.settings.api_key {
            request = request.bearer_auth(key);
        }
        let answer = request.send().await.map_err(|e| {
            // Never the URL's query or the key: reqwest's error names the host and the cause.
            EngineError::Unavailable(format!("the transcription server: {}", e.without_url()))
        })?;
        let status = answer.status();
        let body = read_capped(answer).await?;
        if !status.is_success() {
            let reason: String = String::from_utf8_lossy(&body).chars().take(300).collect();
            let error = format!("the transcription server answered {status}: {reason}");
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                EngineError::Unavailable(error)
            } else {
                EngineError::Failed(error)
            });
        }
        let verbose: Verbose = serde_json::from_slice(&body).map_err(|e| {
            EngineError::Failed(format!(
                "the transcription server's answer is not verbose_json: {e}"
            ))
        })?;
        Ok(phrases(verbose))
    }
}

async fn read_capped(mut answer: reqwest::Response) -> Result<Vec<u8>, EngineError> {
    let mut body = Vec::new();
    while let Some(chunk) = answer
        .chunk()
        .await
        .map_err(|e| EngineError::Unavailable(e.without_url().to_string()))?
    {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(EngineError::Failed(format!(
                "the transcription server's answer is larger than {MAX_ANSWER} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The answer's segments as phrases; a server that gives the text alone yields one phrase over
/// the whole audio.
fn phrases(verbose: Verbose) -> Vec<Phrase> {
    let ms = |seconds: f64| {
        if seconds.is_finite() && seconds > 0.0 {
            (seconds * 1000.0).round() as u64
        } else {
            0
        }
    };
    let mut out: Vec<Phrase> = verbose
        .segments
        .into_iter()
        .map(|s| Phrase {
            start_ms: ms(s.start),
            end_ms: ms(s.end),
            text: s.text.split_whitespace().collect::<Vec<_>>().join(" "),
        })
        .filter(|p| !p.text.is_empty())
        .collect();
    let text = verbose
        .text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if out.is_empty() && !text.is_empty() {
        out.push(Phrase {
            start_ms: 0,
            end_ms: verbose.duration.map_or(0, ms),
            text,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_or_the_text_alone() {
        let verbose: Verbose = serde_json::from_str(
            r#"{"text": " Hello there. Fine.", "segments": [{"id": 0, "start": 0.0, "end": 1.5, "text": " Hello  there."}, {"start": 2.25, "end": 3.0, "text": " Fine."}]}"#,
        )
        .expect("json");
        assert_eq!(
            phrases(verbose),
            vec![
                Phrase {
                    start_ms: 0,
                    end_ms: 1500,
                    text: "Hello there.".into()
                },
                Phrase {
                    start_ms: 2250,
                    end_ms: 3000,
                    text: "Fine.".into()
                }
            ]
        );
        let plain: Verbose =
            serde_json::from_str(r#"{"text": "just text", "duration": 4.2}"#).expect("json");
        assert_eq!(
            phrases(plain),
            vec![Phrase {
                start_ms: 0,
                end_ms: 4200,
                text: "just text".into()
            }]
        );
    }
}
