//! What was said: final recordings transcribed after the call, off the call path.
//!
//! A recording that becomes final and hashed is queued in the database (`queue`); this
//! instance's worker claims jobs (at most `TRANSCRIPTION_WORKERS` at once), reads the audio as
//! playback does (disk or bucket, sealed or not), hands it to the configured engine
//! (`pocketsphinx`, offline; `openai`, a server speaking the OpenAI-compatible API) and stores
//! the transcript beside the recording, where the page and the API read it. A dual-channel
//! recording is transcribed party by party, so each line says who spoke. A transcript attached
//! by hand (the API, or a `.vtt` file beside the audio) is never replaced. Failures are retried
//! with backoff, then the job is marked failed with the reason.

pub mod openai;
pub mod pocketsphinx;
pub mod queue;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify, Semaphore};

use crate::audio::activity::{talk_time, timeline, Activity, TalkTime, Timeline};
use crate::clock::now_ms;
use crate::config::transcription::{EngineChoice, TranscriptionSettings};
use crate::db::{Database, DbError};
use crate::library::recordings::Recording;
use crate::library::transcripts::{self, Cue};
use crate::playback::serve::WavStream;

/// The longest sleep of an idle worker: a safety net for a recording no one told it about.
const IDLE_ROUND: Duration = Duration::from_secs(30);
/// Recordings that started this recently are queued when final: a call's file is final when it
/// ends, hours at most after its start. Older ones (a library that existed before transcription
/// was turned on) are not transcribed by themselves.
const RECENT_MS: i64 = 2 * 86_400_000;

/// A stretch of recognised speech: times in ms from the start of the audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phrase {
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine cannot run here now (its program is missing, its server is away).
    #[error("engine unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Failed(String),
}

/// The engine the deployment chose.
pub enum Engine {
    Pocketsphinx(pocketsphinx::Pocketsphinx),
    OpenAi(openai::OpenAi),
}

impl Engine {
    /// The engine of `settings`; None when transcription is off.
    pub fn from_settings(
        settings: &TranscriptionSettings,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Option<Engine>, String> {
        Ok(match &settings.engine {
            EngineChoice::Off => None,
            EngineChoice::Pocketsphinx { bin, model_dir } => {
                Some(Engine::Pocketsphinx(pocketsphinx::Pocketsphinx {
                    bin: bin.clone(),
                    model_dir: model_dir.clone(),
                    timeout: settings.timeout,
                }))
            }
            EngineChoice::OpenAi(openai) => Some(Engine::OpenAi(openai::OpenAi::new(
                openai.clone(),
                settings.timeout,
                tls,
            )?)),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Engine::Pocketsphinx(_) => "pocketsphinx",
            Engine::OpenAi(_) => "openai",
        }
    }

    /// Whether it understands `language` (the offline model is English only).
    fn speaks(&self, language: &str) -> bool {
        match self {
            Engine::Pocketsphinx(_) => primary(language) == "en",
            Engine::OpenAi(_) => true,
        }
    }

    async fn transcribe(
        &self,
        audio: WavStream,
        language: &str,
    ) -> Result<Vec<Phrase>, EngineError> {
        match self {
            Engine::Pocketsphinx(engine) => engine.transcribe(audio).await,
            Engine::OpenAi(engine) => engine.transcribe(audio, language).await,
        }
    }
}

/// `en` of `en-US`.
fn primary(language: &str) -> &str {
    language.split('-').next().unwrap_or(language)
}

/// Where the worker reads a recording's audio: the library's files and bucket, as playback
/// reads them (given by the service, which knows both).
pub trait RecordingAudio: Send + Sync + 'static {
    /// The recording's audio, or why there is none.
    fn audio(&self, row: &Recording) -> impl Future<Output = Result<WavStream, String>> + Send;
    /// Each party's own audio of a dual-channel recording (caller, agent), when there is one.
    fn parties(&self, row: &Recording) -> impl Future<Output = Option<[WavStream; 2]>> + Send;
}

/// What a flow asks of transcription: whether its calls are transcribed, and in which language
/// (None: the deployment's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowPolicy {
    pub transcribe: bool,
    pub language: Option<String>,
}

/// The flow policy of a recording's flow (its name; None for a file no flow made).
pub type FlowPolicies = Arc<dyn Fn(Option<&str>) -> FlowPolicy + Send + Sync>;

/// Runs jobs until shutdown.
pub struct Worker<A: RecordingAudio> {
    db: Database,
    engine: Engine,
    audio: A,
    policies: FlowPolicies,
    language: String,
    workers: usize,
    node: String,
    /// Wakes the worker: a recording became final (the indexer), or a job ended.
    pub wake: Arc<Notify>,
    /// The deployment's keys: transcripts and talk timelines are stored sealed with them.
    keys: Option<Arc<crate::encryption::Keyring>>,
}

/// What one job did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done { cues: usize, audio_ms: i64 },
    Skipped(String),
}

impl<A: RecordingAudio> Worker<A> {
    pub fn new(
        db: Database,
        engine: Engine,
        audio: A,
        policies: FlowPolicies,
        settings: &TranscriptionSettings,
        node: &str,
        wake: Arc<Notify>,
    ) -> Worker<A> {
        Worker {
            db,
            engine,
            audio,
            policies,
            language: settings.language.clone(),
            workers: settings.workers.max(1),
            node: node.to_string(),
            wake,
            keys: None,
        }
    }

    /// Stores what it draws sealed with `keys`.
    pub fn with_keys(mut self, keys: Option<Arc<crate::encryption::Keyring>>) -> Worker<A> {
        self.keys = keys;
        self
    }

    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        match queue::release_leases(&self.db, &self.node, now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                jobs = n,
                "transcriptions this node's previous process had taken are due again"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "leases of this node's transcriptions not released")
            }
        }
        let slots = Arc::new(Semaphore::new(self.workers));
        loop {
            if let Err(e) = self.claim_what_is_due(&slots).await {
                tracing::warn!(error = %e, "transcription round failed; retrying");
            }
            // Every slot busy: the next job can start only when one ends, which wakes the
            // loop; looking at the queue meanwhile (every 50 ms while jobs are due) cost the
            // call path CPU for nothing.
            let pause = if slots.available_permits() == 0 {
                IDLE_ROUND
            } else {
                self.until_next_due().await
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(pause) => {}
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    async fn until_next_due(&self) -> Duration {
        match queue::next_due(&self.db).await {
            Ok(Some(at)) => Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0))
                .clamp(Duration::from_millis(50), IDLE_ROUND),
            _ => IDLE_ROUND,
        }
    }

    /// Queues new recordings, then starts due jobs while a slot is free.
    async fn claim_what_is_due(self: &Arc<Self>, slots: &Arc<Semaphore>) -> Result<(), DbError> {
        let now = now_ms();
        queue::enqueue_ready(&self.db, now - RECENT_MS, now).await?;
        while let Ok(slot) = Arc::clone(slots).try_acquire_owned() {
            // A read first: an idle queue takes no write lock.
            let due = queue::next_due(&self.db).await?;
            if due.is_none_or(|at| at > now_ms()) {
                return Ok(());
            }
            let Some(job) = queue::claim_next(&self.db, &self.node, now_ms()).await? else {
                return Ok(());
            };
            let worker = Arc::clone(self);
            tokio::spawn(async move {
                worker.run_job(&job).await;
                drop(slot);
                worker.wake.notify_one();
            });
        }
        Ok(())
    }

    async fn run_job(&self, job: &queue::Job) {
        let started = std::time::Instant::now();
        let result = self.transcribe(job.recording_id).await;
        let now = now_ms();
        let recorded = match result {
            Ok(Outcome::Done { cues, audio_ms }) => {
                tracing::debug!(
                    recording = job.recording_id,
                    cues,
                    audio_ms,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "recording transcribed"
                );
                queue::finish(
                    &self.db,
                    job.recording_id,
                    "done",
                    Some(self.engine.name()),
                    Some(audio_ms),
                    None,
                    now,
                )
                .await
            }
            Ok(Outcome::Skipped(reason)) => {
                queue::finish(
                    &self.db,
                    job.recording_id,
                    "skipped",
                    None,
                    None,
                    Some(&reason),
                    now,
                )
                .await
            }
            Err(e) => {
                let attempts = u32::try_from(job.attempts).unwrap_or(u32::MAX);
                let wait = crate::clock::backoff(attempts, Duration::from_secs(3600))
                    .max(Duration::from_secs(1));
                let next = now + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
                let message = e.to_string();
                match queue::failed(&self.db, job, next, &message, now).await {
                    Ok(true) => {
                        tracing::warn!(recording = job.recording_id, error = %message, "transcription failed for good");
                        Ok(())
                    }
                    Ok(false) => {
                        tracing::warn!(recording = job.recording_id, attempt = job.attempts, error = %message, retry_in_ms = wait.as_millis() as u64, "transcription failed");
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = recorded {
            // The lease runs out and the job is taken again.
            tracing::warn!(recording = job.recording_id, error = %e, "a transcription's outcome was not recorded");
        }
    }

    /// Transcribes recording `id`, or says why there is nothing to do.
    pub async fn transcribe(&self, id: i64) -> Result<Outcome, EngineError> {
        let db_error = |e: sqlx::Error| EngineError::Failed(format!("database: {e}"));
        let Some(row) = crate::library::recordings::by_id(&self.db.pool, id)
            .await
            .map_err(db_error)?
        else {
            return Ok(Outcome::Skipped("the recording is gone".into()));
        };
        if row.status != crate::library::RecordingStatus::Ready {
            return Ok(Outcome::Skipped(format!(
                "the recording is {}",
                row.status.as_str()
            )));
        }
        if transcripts::exists(&self.db, id)
            .await
            .map_err(|e| EngineError::Failed(e.to_string()))?
        {
            return Ok(Outcome::Skipped("a transcript is attached already".into()));
        }
        // Who talked when, from the audio (no words: also for a flow that is not transcribed).
        self.draw_insights(&row).await;
        let policy = (self.policies)(row.flow.as_deref());
        if !policy.transcribe {
            return Ok(Outcome::Skipped(format!(
                "flow {} is not transcribed (transcribe = false)",
                row.flow.as_deref().unwrap_or("-")
            )));
        }
        let language = policy.language.unwrap_or_else(|| self.language.clone());
        if !self.engine.speaks(&language) {
            return Ok(Outcome::Skipped(format!(
                "the {} engine does not know {language}",
                self.engine.name()
            )));
        }
        let (cues, audio_ms) = match self.audio.parties(&row).await {
            Some([caller, agent]) => {
                let audio_ms = ms_of(&caller) + ms_of(&agent);
                let mut cues = Vec::new();
                for (audio, speaker) in [
                    (caller, speaker("Caller", row.caller_name.as_deref())),
                    (agent, speaker("Agent", row.callee.as_deref())),
                ] {
                    let phrases = self.engine.transcribe(audio, &language).await?;
                    cues.extend(phrases.into_iter().map(|p| cue(p, Some(speaker.clone()))));
                }
                (cues, audio_ms)
            }
            None => {
                let audio = self.audio.audio(&row).await.map_err(EngineError::Failed)?;
                let audio_ms = ms_of(&audio);
                let phrases = self.engine.transcribe(audio, &language).await?;
                (
                    phrases.into_iter().map(|p| cue(p, None)).collect(),
                    audio_ms,
                )
            }
        };
        let mut cues: Vec<Cue> = cues;
        cues.sort_by_key(|c| (c.start_ms, c.end_ms));
        cues.truncate(transcripts::MAX_CUES);
        let stored = transcripts::store_recognised(
            &self.db,
            self.keys.as_deref(),
            id,
            &cues,
            self.engine.name(),
        )
        .await
        .map_err(|e| EngineError::Failed(e.to_string()))?;
        if !stored {
            return Ok(Outcome::Skipped(
                "a transcript was attached, or the recording went, meanwhile".into(),
            ));
        }
        Ok(Outcome::Done {
            cues: cues.len(),
            audio_ms,
        })
    }
}

impl<A: RecordingAudio> Worker<A> {
    /// Draws and stores the recording's talk-time figures: each party's voice when recorded
    /// apart, else speech against silence. A failure is logged: the transcript goes on.
    async fn draw_insights(&self, row: &Recording) {
        let parties = self.audio.parties(row).await;
        let mono = match parties {
            Some(_) => None,
            None => match self.audio.audio(row).await {
                Ok(audio) => Some(audio),
                Err(e) => {
                    tracing::warn!(recording = row.id, error = %e, "no talk-time figures: no audio");
                    return;
                }
            },
        };
        let drawn =
            tokio::task::spawn_blocking(move || -> std::io::Result<(TalkTime, Timeline)> {
                let frames = |audio: &WavStream| -> std::io::Result<Vec<bool>> {
                    let mut activity = Activity::new(audio.sample_rate);
                    audio.for_each_chunk(|chunk| {
                        activity.push(chunk);
                        Ok::<(), std::io::Error>(())
                    })?;
                    Ok(activity.frames())
                };
                Ok(match (&parties, &mono) {
                    (Some([caller, agent]), _) => {
                        let (caller, agent) = (frames(caller)?, frames(agent)?);
                        (
                            talk_time(&caller, Some(&agent)),
                            timeline(&caller, Some(&agent)),
                        )
                    }
                    (None, Some(audio)) => {
                        let speech = frames(audio)?;
                        (talk_time(&speech, None), timeline(&speech, None))
                    }
                    (None, None) => (TalkTime::default(), Timeline::default()),
                })
            })
            .await;
        match drawn {
            Ok(Ok((talk, timeline))) => {
                let stored = crate::library::insights::store(
                    &self.db,
                    self.keys.as_deref(),
                    row.id,
                    &talk,
                    &timeline,
                )
                .await;
                if let Err(e) = stored {
                    tracing::warn!(recording = row.id, error = %e, "talk-time figures not stored");
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(recording = row.id, error = %e, "talk-time figures not drawn")
            }
            Err(e) => tracing::warn!(recording = row.id, error = %e, "talk-time figures not drawn"),
        }
    }
}

fn ms_of(audio: &WavStream) -> i64 {
    let rate = u64::from(audio.sample_rate.max(1));
    i64::try_from(audio.samples() * 1000 / rate).unwrap_or(i64::MAX)
}

/// `Caller (Al Smith)`, or the role alone.
fn speaker(role: &str, name: Option<&str>) -> String {
    match name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) => format!("{role} ({name})"),
        None => role.to_string(),
    }
}

fn cue(phrase: Phrase, speaker: Option<String>) -> Cue {
    Cue {
        start_ms: phrase.start_ms,
        end_ms: phrase.end_ms.max(phrase.start_ms),
        speaker,
        text: phrase.text.chars().take(1_900).collect(),
    }
}
