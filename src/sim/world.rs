//! The simulated Asterisk's state: channels, bridges, playbacks and recordings, advanced in
//! 20 ms frames of simulated time. No IO besides the recording files; the HTTP layer calls in
//! under a lock and the ticker calls [`World::advance`].
//!
//! Behaviour follows the reference traces: status codes and messages of errors, the order of
//! events, recordings that answer 201 `queued` then `RecordingStarted`, `RecordingFinished`
//! with whole-second `duration`, WAV sizes left at 0 until the file is closed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Component, Path, PathBuf};

use tokio::sync::mpsc;

use super::party::{agent_script, caller_sim_script, PartyAction, PartyRun, Script};
use crate::ari::events::*;
use crate::ari::models::*;
use crate::ari::IfExists;
use crate::audio::synth::{is_silent, music_on_hold, sound_length, sound_sample};
use crate::audio::{g711, wav, FRAME_SAMPLES, SAMPLE_RATE};

mod bridges;
mod channels;
mod playbacks;
mod recordings;
mod time;

pub const ASTERISK_ID: &str = "02:fc:00:00:00:01";

/// An ARI error answer: status and `{"message": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimError {
    pub status: u16,
    pub message: String,
}

pub(crate) fn fail<T>(status: u16, message: impl Into<String>) -> Result<T, SimError> {
    Err(SimError {
        status,
        message: message.into(),
    })
}

pub type SimResult<T> = Result<T, SimError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// `;2` of `Local/<exten>@inbound`: runs `Stasis(app,inbound,<exten>)`.
    InboundCaller,
    /// Originated by the app into itself (`app=`): an agent, a hunt member, an outbound leg.
    Dialled,
    /// The other half of a Local pair: listed by `GET /channels`, never in the app.
    Half,
    /// A snoop on another channel (`POST /channels/{id}/snoop`): hears what that channel says
    /// (`spy=in`), hears (`out`) or both, mixed.
    Snoop,
}

/// Which way a snoop listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spy {
    In,
    Out,
    Both,
}

struct SimChannel {
    model: Channel,
    role: Role,
    /// The app subscribed to this channel's events.
    app: Option<String>,
    in_stasis: bool,
    args: Vec<String>,
    bridge: Option<String>,
    script: Option<Script>,
    party: Option<PartyRun>,
    /// Sample time at which an unanswered channel gives up.
    ring_deadline: Option<u64>,
    dialstring: String,
    half: Option<String>,
    vars: BTreeMap<String, String>,
    moh: bool,
    recording: Option<String>,
    /// The audio this channel's party sent in the current frame.
    frame: Option<Vec<i16>>,
    /// For a snoop: the channel it listens to, and which way.
    snoop: Option<(String, Spy)>,
}

struct SimBridge {
    model: Bridge,
    app: String,
    moh: bool,
    recording: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileFormat {
    Wav,
    Ulaw,
    Sln,
}

impl FileFormat {
    fn parse(format: &str) -> Option<FileFormat> {
        match format {
            "wav" => Some(FileFormat::Wav),
            "ulaw" => Some(FileFormat::Ulaw),
            "sln" => Some(FileFormat::Sln),
            _ => None,
        }
    }
}

/// File extensions Asterisk writes, listed by `GET /recordings/stored`.
const STORED_EXTENSIONS: [&str; 8] = ["wav", "ulaw", "alaw", "gsm", "sln", "wav16", "WAV", "g722"];

struct SimRecording {
    live: LiveRecording,
    app: String,
    target: Target,
    writer: Option<BufWriter<File>>,
    format: FileFormat,
    data_bytes: u64,
    recorded: u64,
    elapsed: u64,
    talking: u64,
    silence_run: u64,
    max_duration: Option<u64>,
    max_silence: Option<u64>,
    terminate_on: Option<String>,
    report_talk: bool,
    paused: bool,
    muted: bool,
    /// Injected fault: fail right after the 201.
    fail_cause: Option<String>,
    /// Some audio reached the disk.
    on_disk: bool,
    /// A write failed (the disk is full): the recording ends, as Asterisk's does.
    write_failed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Bridge(String),
    Channel(String),
}

struct SimPlayback {
    model: Playback,
    app: String,
    target: Target,
    queue: VecDeque<String>,
    current: Option<(String, u64, u64)>,
    started: bool,
}

struct AppConnection {
    id: u64,
    tx: mpsc::UnboundedSender<String>,
    /// `PUT /applications/{app}/eventFilter`: gone with the connection (event_filter trace: a
    /// new connection after the app was unregistered finds none).
    filter: EventFilter,
}

/// Event types an app is sent: `allowed` empty means all; `disallowed` wins.
#[derive(Debug, Clone, Default)]
struct EventFilter {
    allowed: Vec<String>,
    disallowed: Vec<String>,
}

impl EventFilter {
    fn allows(&self, kind: &str) -> bool {
        !self.disallowed.iter().any(|d| d == kind)
            && (self.allowed.is_empty() || self.allowed.iter().any(|a| a == kind))
    }

    fn listed(types: &[String]) -> Vec<serde_json::Value> {
        types
            .iter()
            .map(|t| serde_json::json!({"type": t}))
            .collect()
    }
}

/// Everything the simulated Asterisk knows.
pub struct World {
    pub recordings_dir: PathBuf,
    now: u64,
    /// The wall clock when the simulated clock was at 0: events are stamped with the simulated
    /// clock, as Asterisk stamps them with the clock its audio runs on.
    epoch: chrono::DateTime<chrono::Utc>,
    id_epoch: u64,
    next_id: u64,
    next_local: u32,
    channels: BTreeMap<String, SimChannel>,
    bridges: BTreeMap<String, SimBridge>,
    recordings: BTreeMap<String, SimRecording>,
    playbacks: BTreeMap<String, SimPlayback>,
    apps: HashMap<String, AppConnection>,
    next_conn: u64,
    parties: HashMap<String, Script>,
    fail_next_record: Option<String>,
    started_at: String,
    /// When each bridge first held two channels (for latency benchmarks).
    bridge_complete_at: HashMap<String, std::time::Instant>,
    /// What the dialplan does with a call `Stasis()` could not hand to the app (no websocket):
    /// None hangs it up (the dialplan without a fallback); Some answers it through the shipped
    /// fallback, which MixMonitor records for this many seconds.
    dialplan_fallback: Option<f64>,
    /// ari.conf's `channelvars`: the channel variables every snapshot reports (Asterisk
    /// evaluates functions such as `CHANNEL(linkedid)` for each). Empty, as Asterisk ships.
    channelvars: Vec<String>,
}

fn timestamp() -> String {
    format_time(chrono::Utc::now())
}

fn format_time(time: chrono::DateTime<chrono::Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

fn seconds(s: f64) -> u64 {
    (s.max(0.0) * f64::from(SAMPLE_RATE)) as u64
}

fn new_uuid() -> String {
    let a = fastrand::u64(..);
    let b = fastrand::u64(..);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        ((b >> 48) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

/// A recording name must stay inside the recordings folder.
fn safe_relative(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && Path::new(name)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

impl World {
    pub fn new(recordings_dir: PathBuf) -> World {
        let id_epoch = chrono::Utc::now().timestamp().max(0) as u64;
        World {
            recordings_dir,
            now: 0,
            epoch: chrono::Utc::now(),
            id_epoch,
            next_id: 0,
            next_local: 0,
            channels: BTreeMap::new(),
            bridges: BTreeMap::new(),
            recordings: BTreeMap::new(),
            playbacks: BTreeMap::new(),
            apps: HashMap::new(),
            next_conn: 0,
            parties: HashMap::new(),
            fail_next_record: None,
            started_at: timestamp(),
            bridge_complete_at: HashMap::new(),
            dialplan_fallback: None,
            channelvars: Vec::new(),
        }
    }

    /// Now on the simulated clock, as an event's timestamp.
    fn timestamp(&self) -> String {
        let ms = (self.now * 1000 / u64::from(SAMPLE_RATE)) as i64;
        format_time(self.epoch + chrono::Duration::milliseconds(ms))
    }

    /// Calls arriving while the app has no websocket follow asterisk/extensions.conf's fallback
    /// (answered elsewhere, MixMonitor recording `seconds` of the call), or are hung up (None).
    pub fn set_dialplan_fallback(&mut self, seconds: Option<f64>) {
        self.dialplan_fallback = seconds;
    }

    /// ari.conf's `channelvars`; of functions the simulator knows `CHANNEL(linkedid)` (a
    /// channel's linkedid is the id of the channel that began its call: both halves of a Local
    /// pair carry the first half's) and `CHANNEL(uniqueid)`; others report empty, as unset
    /// variables do.
    pub fn set_channelvars(&mut self, names: &[&str]) {
        self.channelvars = names.iter().map(|n| n.to_string()).collect();
    }

    /// The `channelvars` of a new channel whose call began with channel `linked`.
    pub(super) fn channelvars_of(
        &self,
        own: &str,
        linked: &str,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        if self.channelvars.is_empty() {
            return None;
        }
        Some(
            self.channelvars
                .iter()
                .map(|name| {
                    let value = match name.as_str() {
                        "CHANNEL(linkedid)" => linked.to_string(),
                        "CHANNEL(uniqueid)" => own.to_string(),
                        _ => String::new(),
                    };
                    (name.clone(), value)
                })
                .collect(),
        )
    }

    /// The recording MixMonitor leaves for a fallback call, finished: a WAV named as the
    /// shipped dialplan names it, `fallback-<dialled>-<caller digits>-<unique id>.wav`.
    fn write_fallback_recording(
        &self,
        exten: &str,
        caller: &CallerId,
        unique_id: &str,
        length: f64,
    ) {
        let digits: String = caller.number.chars().filter(char::is_ascii_digit).collect();
        let dialled: String = exten.chars().filter(char::is_ascii_digit).collect();
        let path = self
            .recordings_dir
            .join(format!("fallback-{dialled}-{digits}-{unique_id}.wav"));
        let voice = crate::audio::synth::Voice::from_name(&caller.name);
        let mut samples = vec![0i16; seconds(length) as usize];
        voice.fill(0, &mut samples);
        let mut bytes = crate::audio::wav::header((samples.len() * 2) as u32).to_vec();
        bytes.extend(samples.iter().flat_map(|s| s.to_le_bytes()));
        if let Err(e) = std::fs::write(&path, bytes) {
            tracing::warn!(error = %e, "simulated MixMonitor could not write its file");
        }
    }

    // ---------------------------------------------------------------- app connections

    /// A websocket for `app` opened. A previous one gets `ApplicationReplaced` and is dropped.
    pub fn connect_app(&mut self, app: &str) -> (u64, mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = mpsc::unbounded_channel();
        self.next_conn += 1;
        let id = self.next_conn;
        let connection = AppConnection {
            id,
            tx,
            filter: EventFilter::default(),
        };
        if let Some(old) = self.apps.insert(app.to_string(), connection) {
            let event = Event::ApplicationReplaced(ApplicationReplaced {
                timestamp: self.timestamp(),
                application: app.to_string(),
                asterisk_id: Some(ASTERISK_ID.into()),
            });
            if let Ok(text) = serde_json::to_string(&event) {
                let _ = old.tx.send(text);
            }
        }
        (id, rx)
    }

    pub fn disconnect_app(&mut self, app: &str, id: u64) {
        if self.apps.get(app).is_some_and(|c| c.id == id) {
            self.apps.remove(app);
        }
    }

    /// Closes every websocket (a fault a test injects): events raised meanwhile are lost.
    pub fn drop_connections(&mut self) {
        self.apps.clear();
    }

    pub fn app_connected(&self, app: &str) -> bool {
        self.apps.contains_key(app)
    }

    fn emit(&self, app: &str, event: Event) {
        if let Some(conn) = self
            .apps
            .get(app)
            .filter(|c| c.filter.allows(event.type_name()))
        {
            if let Ok(text) = serde_json::to_string(&event) {
                let _ = conn.tx.send(text);
            }
        }
    }

    // ---------------------------------------------------------------- scripting and faults

    /// Registers a party script for an endpoint (`PJSIP/alice`) or a Local extension
    /// (`Local/210@agents`), replacing the built-in behaviour for it.
    pub fn define_party(&mut self, endpoint: &str, script: Script) {
        self.parties.insert(endpoint.to_string(), script);
    }

    /// The next record request answers 201, then fails with `cause`.
    pub fn fail_next_record(&mut self, cause: &str) {
        self.fail_next_record = Some(cause.to_string());
    }

    /// "Asterisk restarted": every channel, bridge and playback is gone, live recordings are
    /// left as a crash leaves them (WAV sizes still 0), websockets close.
    pub fn restart(&mut self) {
        for recording in self.recordings.values_mut() {
            if let Some(mut w) = recording.writer.take() {
                let _ = w.flush();
            }
        }
        self.recordings.clear();
        self.channels.clear();
        self.bridges.clear();
        self.playbacks.clear();
        self.apps.clear();
        self.started_at = timestamp();
    }

    // ---------------------------------------------------------------- ids and models

    fn new_channel_id(&mut self) -> String {
        let id = format!("{}.{}", self.id_epoch, self.next_id);
        self.next_id += 1;
        id
    }

    fn channel_model(&self, id: &str) -> SimResult<&SimChannel> {
        match self.channels.get(id) {
            Some(c) => Ok(c),
            None => fail(404, "Channel not found"),
        }
    }

    fn stasis_channel(&self, id: &str) -> SimResult<&SimChannel> {
        let channel = self.channel_model(id)?;
        if !channel.in_stasis {
            return fail(409, "Channel not in Stasis application");
        }
        Ok(channel)
    }

    // ---------------------------------------------------------------- asterisk, applications

    pub fn asterisk_info(&self) -> AsteriskInfo {
        AsteriskInfo {
            build: Some(BuildInfo {
                os: "Linux".into(),
                kernel: "simulated".into(),
                options: "".into(),
                machine: "x86_64".into(),
                date: "2026-11-21 00:00:00 UTC".into(),
                user: "ari-recorder".into(),
            }),
            system: Some(SystemInfo {
                version: "22.0.0-ari-recorder-sim".into(),
                entity_id: ASTERISK_ID.into(),
            }),
            config: Some(ConfigInfo {
                name: "".into(),
                default_language: "en".into(),
                max_channels: None,
                max_open_files: None,
                max_load: None,
                setid: SetId {
                    user: "".into(),
                    group: "".into(),
                },
            }),
            status: Some(StatusInfo {
                startup_time: self.started_at.clone(),
                last_reload_time: self.started_at.clone(),
            }),
        }
    }

    pub fn application(&self, name: &str) -> SimResult<Application> {
        let channel_ids = self
            .channels
            .values()
            // Every channel the app is subscribed to, in Stasis or not: both halves of a Local
            // channel it originated, a dialled party still ringing (app_gone trace).
            .filter(|c| c.app.as_deref() == Some(name))
            .map(|c| c.model.id.clone())
            .collect();
        let bridge_ids = self
            .bridges
            .values()
            .filter(|b| b.app == name)
            .map(|b| b.model.id.clone())
            .collect();
        let known = self.apps.contains_key(name)
            || self
                .channels
                .values()
                .any(|c| c.app.as_deref() == Some(name))
            || self.bridges.values().any(|b| b.app == name);
        if !known {
            return fail(404, "Application not found");
        }
        let filter = self
            .apps
            .get(name)
            .map(|c| c.filter.clone())
            .unwrap_or_default();
        Ok(Application {
            name: name.to_string(),
            channel_ids,
            bridge_ids,
            endpoint_ids: vec![],
            device_names: vec![],
            events_allowed: EventFilter::listed(&filter.allowed),
            events_disallowed: EventFilter::listed(&filter.disallowed),
        })
    }

    /// `PUT /applications/{app}/eventFilter` with `body` (`{"allowed": [{"type": ...}],
    /// "disallowed": [...]}`; a list not given is left as it is; an empty body clears both).
    pub fn set_event_filter(
        &mut self,
        name: &str,
        body: &serde_json::Value,
    ) -> SimResult<Application> {
        if self.application(name).is_err() {
            return fail(404, "Application not found");
        }
        let invalid = || fail(400, "Invalid format definition");
        let Some(fields) = body.as_object() else {
            return invalid();
        };
        let mut lists = Vec::new();
        for key in ["allowed", "disallowed"] {
            let Some(value) = fields.get(key) else {
                continue;
            };
            let Some(items) = value.as_array() else {
                return invalid();
            };
            let mut types = Vec::new();
            for item in items {
                match item.get("type").and_then(|t| t.as_str()) {
                    Some(t) => types.push(t.to_string()),
                    None => return invalid(),
                }
            }
            lists.push((key, types));
        }
        if let Some(conn) = self.apps.get_mut(name) {
            if fields.is_empty() {
                conn.filter = EventFilter::default();
            }
            for (key, types) in lists {
                match key {
                    "allowed" => conn.filter.allowed = types,
                    _ => conn.filter.disallowed = types,
                }
            }
        }
        self.application(name)
    }

    pub fn applications(&self) -> Vec<Application> {
        let mut names: Vec<String> = self.apps.keys().cloned().collect();
        names.sort();
        names
            .iter()
            .filter_map(|n| self.application(n).ok())
            .collect()
    }
}

impl SimChannel {
    fn new(model: Channel, role: Role, app: Option<String>, half: Option<String>) -> SimChannel {
        SimChannel {
            model,
            role,
            app,
            in_stasis: false,
            args: vec![],
            bridge: None,
            script: None,
            party: None,
            ring_deadline: None,
            dialstring: String::new(),
            half,
            vars: BTreeMap::new(),
            moh: false,
            recording: None,
            frame: None,
            snoop: None,
        }
    }
}

fn cause_text(cause: i64) -> &'static str {
    match cause {
        16 => "Normal Clearing",
        17 => "User busy",
        19 => "No user responding",
        32 => "Normal Clearing",
        _ => "Unknown",
    }
}

/// `Alice <5551001>` -> name Alice, number 5551001.
fn parse_caller_id(text: &str) -> CallerId {
    match (text.find('<'), text.rfind('>')) {
        (Some(open), Some(close)) if open < close => CallerId {
            name: text[..open].trim().trim_matches('"').to_string(),
            number: text[open + 1..close].trim().to_string(),
        },
        _ => CallerId {
            name: String::new(),
            number: text.trim().to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_id_parses() {
        assert_eq!(
            parse_caller_id("Alice <5551001>"),
            CallerId {
                name: "Alice".into(),
                number: "5551001".into()
            }
        );
        assert_eq!(parse_caller_id("").number, "");
    }

    #[test]
    fn names_with_parent_components_are_refused() {
        assert!(safe_relative("a/b"));
        assert!(!safe_relative("../escape"));
        assert!(!safe_relative("/abs"));
        assert!(!safe_relative(""));
    }
}
