//! The transcription settings (`TRANSCRIPTION_*`, `POCKETSPHINX_*`), read and checked from the
//! configuration: data only, used by `crate::transcription`.

use std::path::PathBuf;
use std::time::Duration;

use super::{Config, ConfigError};

/// Which engine transcribes final recordings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineChoice {
    /// Nothing is transcribed (uploaded and sidecar transcripts still are kept).
    Off,
    /// The offline engine: Debian's `pocketsphinx_continuous` and its `en-us` model.
    Pocketsphinx { bin: PathBuf, model_dir: PathBuf },
    /// A server speaking the OpenAI-compatible `POST /v1/audio/transcriptions`.
    OpenAi(OpenAiSettings),
}

impl EngineChoice {
    pub fn name(&self) -> &'static str {
        match self {
            EngineChoice::Off => "off",
            EngineChoice::Pocketsphinx { .. } => "pocketsphinx",
            EngineChoice::OpenAi(_) => "openai",
        }
    }
}

/// Where the OpenAI-compatible server is, and how to ask it.
#[derive(Clone, PartialEq, Eq)]
pub struct OpenAiSettings {
    /// The server's base (`https://whisper.example:8000`): requests go to `<base>/v1/audio/transcriptions`.
    pub url: url::Url,
    pub model: String,
    /// Read by the engine alone; never logged (see `Debug`).
    pub(crate) api_key: Option<String>,
}

impl std::fmt::Debug for OpenAiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiSettings")
            .field("url", &self.url.as_str())
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// What the transcription settings configure, checked.
#[derive(Debug, Clone)]
pub struct TranscriptionSettings {
    pub engine: EngineChoice,
    pub workers: usize,
    pub language: String,
    pub timeout: Duration,
}

pub use crate::library::transcripts::valid_language;

impl TranscriptionSettings {
    /// The settings the configuration asks for. `auto` picks the offline engine when its
    /// program and model are found (a look at the disk), else `off`.
    pub fn from_config(config: &Config) -> Result<TranscriptionSettings, ConfigError> {
        let invalid = |key: &'static str, reason: String| ConfigError::Invalid { key, reason };
        let pocketsphinx = || EngineChoice::Pocketsphinx {
            bin: config.pocketsphinx_bin.clone(),
            model_dir: config.pocketsphinx_model_dir.clone(),
        };
        let engine = match config.transcription_engine.to_ascii_lowercase().as_str() {
            "off" => EngineChoice::Off,
            "pocketsphinx" => pocketsphinx(),
            "auto" => {
                if pocketsphinx_installed(&config.pocketsphinx_bin, &config.pocketsphinx_model_dir)
                {
                    pocketsphinx()
                } else {
                    EngineChoice::Off
                }
            }
            "openai" => EngineChoice::OpenAi(openai(config)?),
            other => {
                return Err(invalid(
                    "TRANSCRIPTION_ENGINE",
                    format!("{other:?} is not auto, off, pocketsphinx or openai"),
                ))
            }
        };
        if config.transcription_workers == 0 || config.transcription_workers > 64 {
            return Err(invalid("TRANSCRIPTION_WORKERS", "must be 1 to 64".into()));
        }
        if !valid_language(&config.transcription_language) {
            return Err(invalid(
                "TRANSCRIPTION_LANGUAGE",
                format!(
                    "{:?} is not a language tag (en, de, pt-BR)",
                    config.transcription_language
                ),
            ));
        }
        if config.transcription_timeout_seconds == 0 {
            return Err(invalid(
                "TRANSCRIPTION_TIMEOUT_SECONDS",
                "must be at least 1".into(),
            ));
        }
        Ok(TranscriptionSettings {
            engine,
            workers: usize::try_from(config.transcription_workers).unwrap_or(1),
            language: config.transcription_language.clone(),
            timeout: Duration::from_secs(config.transcription_timeout_seconds),
        })
    }
}

fn openai(config: &Config) -> Result<OpenAiSettings, ConfigError> {
    let invalid = |key: &'static str, reason: String| ConfigError::Invalid { key, reason };
    if config.transcription_openai_url.is_empty() {
        return Err(invalid(
            "TRANSCRIPTION_OPENAI_URL",
            "the openai engine needs the server's URL".into(),
        ));
    }
    let url = url::Url::parse(&config.transcription_openai_url)
        .map_err(|e| invalid("TRANSCRIPTION_OPENAI_URL", e.to_string()))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(invalid(
                "TRANSCRIPTION_OPENAI_URL",
                "plain http only to a loopback address: call audio crosses this network".into(),
            ))
        }
        other => {
            return Err(invalid(
                "TRANSCRIPTION_OPENAI_URL",
                format!("{other}: not http or https"),
            ))
        }
    }
    let api_key = match &config.transcription_openai_key_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| {
                    invalid(
                        "TRANSCRIPTION_OPENAI_KEY_FILE",
                        format!("{}: {e}", path.display()),
                    )
                })?
                .trim()
                .to_string(),
        ),
        None => Some(config.transcription_openai_key.trim().to_string()),
    }
    .filter(|key| !key.is_empty());
    if config.transcription_openai_model.trim().is_empty() {
        return Err(invalid(
            "TRANSCRIPTION_OPENAI_MODEL",
            "must not be empty".into(),
        ));
    }
    Ok(OpenAiSettings {
        url,
        model: config.transcription_openai_model.trim().to_string(),
        api_key,
    })
}

/// Whether the offline engine's program can be found (a path, or a name on `PATH`) and its
/// model folder holds the acoustic model.
pub fn pocketsphinx_installed(bin: &std::path::Path, model_dir: &std::path::Path) -> bool {
    locate_program(bin).is_some() && model_dir.join("en-us").join("mdef").is_file()
}

/// Where program `bin` is: itself when it is a path to a file, else the first file of that
/// name on `PATH`.
pub fn locate_program(bin: &std::path::Path) -> Option<PathBuf> {
    if bin.components().count() > 1 {
        return bin.is_file().then(|| bin.to_path_buf());
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(bin))
        .find(|candidate| candidate.is_file())
}
