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

pub const ASTERISK_ID: &str = "02:fc:00:00:00:01";

/// An ARI error answer: status and `{"message": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimError {
    pub status: u16,
    pub message: String,
}

fn fail<T>(status: u16, message: impl Into<String>) -> Result<T, SimError> {
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
        if let Some(old) = self.apps.insert(app.to_string(), AppConnection { id, tx }) {
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
        if let Some(conn) = self.apps.get(app) {
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
            .filter(|c| c.in_stasis && c.app.as_deref() == Some(name))
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
        Ok(Application {
            name: name.to_string(),
            channel_ids,
            bridge_ids,
            endpoint_ids: vec![],
            device_names: vec![],
            events_allowed: vec![],
            events_disallowed: vec![],
        })
    }

    pub fn applications(&self) -> Vec<Application> {
        let mut names: Vec<String> = self.apps.keys().cloned().collect();
        names.sort();
        names
            .iter()
            .filter_map(|n| self.application(n).ok())
            .collect()
    }

    // ---------------------------------------------------------------- channels

    pub fn channels(&self) -> Vec<Channel> {
        self.channels.values().map(|c| c.model.clone()).collect()
    }

    pub fn channel(&self, id: &str) -> SimResult<Channel> {
        Ok(self.channel_model(id)?.model.clone())
    }

    /// `POST /channels`. `Local/<exten>@inbound` with a `caller-sim` context/extension is a call
    /// from the network into `Stasis(<app>,inbound,<exten>)`; `app=` originates a party into
    /// the app; anything unknown fails at once like `Local/999@nowhere`.
    #[allow(clippy::too_many_arguments)]
    pub fn originate(
        &mut self,
        endpoint: &str,
        app: Option<&str>,
        app_args: Option<&str>,
        _context: Option<&str>,
        extension: Option<&str>,
        caller_id: Option<&str>,
        timeout: Option<u32>,
        channel_id: Option<&str>,
        default_app: &str,
    ) -> SimResult<Channel> {
        if endpoint.is_empty() {
            return fail(400, "Endpoint must be specified");
        }
        let (tech, resource) = match endpoint.split_once('/') {
            Some(parts) => parts,
            None => return fail(400, "Endpoint parameter is not in tech/resource format"),
        };
        if app.is_none() && extension.is_none() {
            return fail(400, "Application or extension must be specified");
        }
        let caller = parse_caller_id(caller_id.unwrap_or(""));
        let (exten, ctx) = resource.split_once('@').unwrap_or((resource, "default"));
        let created = timestamp();
        let local_seq = self.next_local;
        self.next_local += 1;
        let base_name = if tech == "Local" {
            format!("Local/{resource}-{local_seq:08x}")
        } else {
            format!("{endpoint}-{local_seq:08x}")
        };
        let outgoing_id = match channel_id {
            Some(id) if self.channels.contains_key(id) => {
                return fail(409, "Channel with given unique ID already exists");
            }
            Some(id) => id.to_string(),
            None => self.new_channel_id(),
        };
        let other_id = self.new_channel_id();
        let outgoing = Channel {
            id: outgoing_id.clone(),
            name: format!("{base_name};1"),
            state: "Down".into(),
            protocol_id: String::new(),
            caller: caller.clone(),
            connected: caller.clone(),
            accountcode: String::new(),
            dialplan: DialplanCep {
                context: ctx.to_string(),
                exten: exten.to_string(),
                priority: 1,
                app_name: "AppDial2".into(),
                app_data: "(Outgoing Line)".into(),
            },
            creationtime: created.clone(),
            language: "en".into(),
            channelvars: None,
            caller_rdnis: None,
            tenantid: None,
        };
        let timeout_samples = seconds(f64::from(timeout.unwrap_or(30)));

        if tech == "Local" && ctx == "inbound" {
            // A call from the network: ;2 enters the app, ;1 runs the caller's script.
            let script = extension.and_then(|e| {
                self.parties
                    .get(e)
                    .cloned()
                    .or_else(|| caller_sim_script(e))
            });
            let stasis_app = default_app.to_string();
            if !self.app_connected(&stasis_app) {
                // Stasis() fails at once and the dialplan goes on: the app never hears of the
                // call (app_gone_newcall); the fallback, when configured, records it.
                if let Some(length) = self.dialplan_fallback {
                    self.write_fallback_recording(exten, &caller, &other_id, length);
                }
                return Ok(outgoing);
            }
            let app_data = format!("{stasis_app},inbound,{exten}");
            let mut inbound = outgoing.clone();
            inbound.id = other_id.clone();
            inbound.name = format!("{base_name};2");
            inbound.state = "Ring".into();
            inbound.dialplan = DialplanCep {
                context: "inbound".into(),
                exten: exten.to_string(),
                priority: 2,
                app_name: "Stasis".into(),
                app_data,
            };
            self.channels.insert(
                outgoing_id.clone(),
                SimChannel::new(outgoing.clone(), Role::Half, None, Some(other_id.clone())),
            );
            let mut caller_channel = SimChannel::new(
                inbound.clone(),
                Role::InboundCaller,
                Some(stasis_app.clone()),
                Some(outgoing_id.clone()),
            );
            caller_channel.in_stasis = true;
            caller_channel.args = vec!["inbound".into(), exten.to_string()];
            caller_channel.script = script;
            caller_channel.ring_deadline = Some(self.now + timeout_samples);
            self.channels.insert(other_id.clone(), caller_channel);
            self.emit(
                &stasis_app,
                Event::StasisStart(StasisStart {
                    args: vec!["inbound".into(), exten.to_string()],
                    channel: inbound,
                    replace_channel: None,
                    timestamp: self.timestamp(),
                    application: stasis_app.clone(),
                    asterisk_id: Some(ASTERISK_ID.into()),
                }),
            );
            return Ok(outgoing);
        }

        let Some(app) = app else {
            return fail(
                400,
                "Only calls into the app or to Local/<exten>@inbound are simulated",
            );
        };
        // Phones (`PJSIP/201`) behave like the reference agents (`Local/201@agents`).
        let script = self.parties.get(endpoint).cloned().or_else(|| match tech {
            "Local" if ctx == "agents" => agent_script(exten),
            "Local" => None,
            _ => agent_script(resource),
        });
        let args: Vec<String> = app_args
            .map(|a| a.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        let mut dialled = SimChannel::new(
            outgoing.clone(),
            Role::Dialled,
            Some(app.to_string()),
            Some(other_id.clone()),
        );
        dialled.args = args;
        dialled.dialstring = resource.to_string();
        dialled.ring_deadline = Some(self.now + timeout_samples);
        let mut half_model = outgoing.clone();
        half_model.id = other_id.clone();
        half_model.name = format!("{base_name};2");
        half_model.state = "Ring".into();
        half_model.dialplan.priority = 1;
        half_model.dialplan.app_name = String::new();
        half_model.dialplan.app_data = String::new();
        self.channels.insert(
            other_id.clone(),
            SimChannel::new(
                half_model.clone(),
                Role::Half,
                None,
                Some(outgoing_id.clone()),
            ),
        );
        match script {
            Some(script) => {
                let mut run = PartyRun::new(&script);
                let mut actions = Vec::new();
                run.take_instant(&mut actions);
                dialled.party = Some(run);
                dialled.script = Some(script);
                self.channels.insert(outgoing_id.clone(), dialled);
                self.emit_dial(&outgoing_id, "");
                for action in actions {
                    self.apply_party_action(&outgoing_id, action);
                }
            }
            None => {
                // Nothing answers this endpoint: both halves are destroyed at once.
                self.channels.insert(outgoing_id.clone(), dialled);
                for id in [&other_id, &outgoing_id] {
                    if let Some(c) = self.channels.remove(id.as_str()) {
                        self.emit(
                            app,
                            Event::ChannelDestroyed(ChannelDestroyed {
                                cause: 0,
                                cause_txt: "Unknown".into(),
                                tech_cause: None,
                                channel: c.model,
                                timestamp: self.timestamp(),
                                application: app.to_string(),
                                asterisk_id: Some(ASTERISK_ID.into()),
                            }),
                        );
                    }
                }
            }
        }
        Ok(outgoing)
    }

    fn emit_dial(&self, id: &str, status: &str) {
        let Some(c) = self.channels.get(id) else {
            return;
        };
        let Some(app) = &c.app else { return };
        self.emit(
            app,
            Event::Dial(Dial {
                caller: None,
                peer: c.model.clone(),
                forward: Some(String::new()),
                forwarded: None,
                dialstring: Some(c.dialstring.clone()),
                dialstatus: status.to_string(),
                timestamp: self.timestamp(),
                application: app.clone(),
                asterisk_id: Some(ASTERISK_ID.into()),
            }),
        );
    }

    fn emit_state_change(&self, id: &str) {
        let Some(c) = self.channels.get(id) else {
            return;
        };
        let Some(app) = &c.app else { return };
        self.emit(
            app,
            Event::ChannelStateChange(ChannelStateChange {
                channel: c.model.clone(),
                timestamp: self.timestamp(),
                application: app.clone(),
                asterisk_id: Some(ASTERISK_ID.into()),
            }),
        );
    }

    pub fn answer(&mut self, id: &str) -> SimResult<()> {
        self.stasis_channel(id)?;
        let Some(c) = self.channels.get_mut(id) else {
            return fail(404, "Channel not found");
        };
        if c.model.state == "Up" {
            return Ok(());
        }
        c.model.state = "Up".into();
        c.ring_deadline = None;
        if c.role == Role::InboundCaller && c.party.is_none() {
            c.party = c.script.as_ref().map(PartyRun::new);
        }
        let half = c.half.clone();
        if let Some(h) = half.and_then(|h| self.channels.get_mut(&h)) {
            h.model.state = "Up".into();
        }
        self.emit_state_change(id);
        Ok(())
    }

    pub fn ring(&mut self, id: &str) -> SimResult<()> {
        self.stasis_channel(id)?;
        Ok(())
    }

    pub fn set_var(&mut self, id: &str, variable: &str, value: &str) -> SimResult<()> {
        if variable.is_empty() {
            return fail(400, "Variable name is required");
        }
        self.channel_model(id)?;
        if let Some(c) = self.channels.get_mut(id) {
            c.vars.insert(variable.to_string(), value.to_string());
        }
        Ok(())
    }

    pub fn get_var(&self, id: &str, variable: &str) -> SimResult<Variable> {
        if variable.is_empty() {
            return fail(400, "Variable name is required");
        }
        let c = self.channel_model(id)?;
        match c.vars.get(variable) {
            Some(v) => Ok(Variable { value: v.clone() }),
            None => fail(404, "Provided variable was not found"),
        }
    }

    pub fn channel_moh(&mut self, id: &str, on: bool) -> SimResult<()> {
        self.stasis_channel(id)?;
        if let Some(c) = self.channels.get_mut(id) {
            c.moh = on;
        }
        Ok(())
    }

    /// `DELETE /channels/{id}`: the app hangs a channel up.
    pub fn hangup(&mut self, id: &str, reason: Option<&str>) -> SimResult<()> {
        if let Some(r) = reason {
            const REASONS: [&str; 10] = [
                "normal",
                "busy",
                "congestion",
                "no_answer",
                "timeout",
                "rejected",
                "unallocated",
                "normal_unspecified",
                "number_incomplete",
                "codec_mismatch",
            ];
            if !REASONS.contains(&r)
                && !["interworking", "failure", "answered_elsewhere"].contains(&r)
            {
                return fail(400, "Invalid reason for hangup provided");
            }
        }
        // As Asterisk: the channel's name first, then its id.
        let id = self
            .channels
            .iter()
            .find(|(_, c)| c.model.name == id)
            .map(|(key, _)| key.clone())
            .unwrap_or_else(|| id.to_string());
        self.channel_model(&id)?;
        self.end_channel(&id, 32, true);
        Ok(())
    }

    /// `POST /channels/{id}/snoop`: a new channel in the app that listens to `spied`, as the
    /// snoop traces show: 200 with the channel (`Snoop/<spied>-NNNNNNNN`, `Up`, empty caller,
    /// `default`/`s`/1), then its `StasisStart` with `appArgs` split on commas.
    pub fn snoop(
        &mut self,
        spied: &str,
        spy: Option<&str>,
        whisper: Option<&str>,
        app: Option<&str>,
        app_args: Option<&str>,
        snoop_id: Option<&str>,
    ) -> SimResult<Channel> {
        let spy = match spy.unwrap_or("none") {
            "in" => Some(Spy::In),
            "out" => Some(Spy::Out),
            "both" => Some(Spy::Both),
            "none" => None,
            _ => return fail(400, "Invalid direction specified for spy"),
        };
        if !matches!(whisper.unwrap_or("none"), "none" | "in" | "out" | "both") {
            return fail(400, "Invalid direction specified for whisper");
        }
        let Some(app) = app.filter(|a| !a.is_empty()) else {
            return fail(400, "Application name is required");
        };
        let spied_model = self.channel_model(spied)?.model.clone();
        let id = match snoop_id {
            Some(id) if self.channels.contains_key(id) => {
                return fail(409, "Channel with the requested snoopId already exists")
            }
            Some(id) => id.to_string(),
            None => self.new_channel_id(),
        };
        let seq = self.next_local;
        self.next_local += 1;
        let created = self.timestamp();
        let mut model = spied_model;
        model.id = id.clone();
        model.name = format!("Snoop/{spied}-{seq:08x}");
        model.state = "Up".into();
        model.caller = Default::default();
        model.connected = Default::default();
        model.dialplan.context = "default".into();
        model.dialplan.exten = "s".into();
        model.dialplan.priority = 1;
        model.dialplan.app_name = String::new();
        model.dialplan.app_data = String::new();
        model.creationtime = created;
        let answer = model.clone();
        let args: Vec<String> = app_args
            .filter(|a| !a.is_empty())
            .map(|a| a.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        model.dialplan.app_name = "Stasis".into();
        model.dialplan.app_data = std::iter::once(app.to_string())
            .chain(args.iter().cloned())
            .collect::<Vec<_>>()
            .join(",");
        let mut channel = SimChannel::new(model.clone(), Role::Snoop, Some(app.to_string()), None);
        channel.in_stasis = true;
        channel.args = args.clone();
        channel.snoop = spy.map(|spy| (spied.to_string(), spy));
        self.channels.insert(id, channel);
        self.emit(
            app,
            Event::StasisStart(StasisStart {
                args,
                channel: model,
                replace_channel: None,
                timestamp: self.timestamp(),
                application: app.to_string(),
                asterisk_id: Some(ASTERISK_ID.into()),
            }),
        );
        Ok(answer)
    }

    /// What a snoop hears this frame: the spied party's voice (`in`), what the spied channel
    /// hears in its bridge (`out`), or both. A party that sends nothing is heard as silence, so
    /// the snoop's file keeps time (snoop_silent trace).
    fn snoop_frame(&self, spied: &str, spy: Spy) -> Vec<i16> {
        let silence = || vec![0i16; FRAME_SAMPLES];
        let Some(channel) = self.channels.get(spied) else {
            return silence();
        };
        let own = channel.frame.clone().unwrap_or_else(silence);
        let heard = || {
            let mut mix = vec![0i32; FRAME_SAMPLES];
            let members = channel
                .bridge
                .as_ref()
                .and_then(|b| self.bridges.get(b))
                .map(|b| b.model.channels.clone())
                .unwrap_or_default();
            for other in members.iter().filter(|m| m.as_str() != spied) {
                if let Some(frame) = self.channels.get(other).and_then(|c| c.frame.as_ref()) {
                    for (m, s) in mix.iter_mut().zip(frame) {
                        *m += i32::from(*s);
                    }
                }
            }
            mix
        };
        let mixed: Vec<i32> = match spy {
            Spy::In => return own,
            Spy::Out => heard(),
            Spy::Both => heard()
                .into_iter()
                .zip(&own)
                .map(|(h, o)| h + i32::from(*o))
                .collect(),
        };
        mixed
            .into_iter()
            .map(|v| v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16)
            .collect()
    }

    /// A spied channel is gone: Asterisk ends its snoops, the snoop's recording finished, then
    /// its `StasisEnd` (no hangup request, no `ChannelDestroyed`: snoop_dual trace).
    fn end_snoops_of(&mut self, spied: &str) {
        let snoops: Vec<String> = self
            .channels
            .iter()
            .filter(|(_, c)| c.snoop.as_ref().is_some_and(|(s, _)| s == spied))
            .map(|(id, _)| id.clone())
            .collect();
        for id in snoops {
            if let Some(name) = self.channels.get(&id).and_then(|c| c.recording.clone()) {
                self.finish_recording(&name, "done");
            }
            let Some(c) = self.channels.remove(&id) else {
                continue;
            };
            if let Some(app) = &c.app {
                self.emit(
                    app,
                    Event::StasisEnd(StasisEnd {
                        channel: c.model,
                        timestamp: self.timestamp(),
                        application: app.clone(),
                        asterisk_id: Some(ASTERISK_ID.into()),
                    }),
                );
            }
        }
    }

    /// Ends a channel: hangup request, recording finished, bridge left, StasisEnd, destroyed.
    fn end_channel(&mut self, id: &str, cause: i64, by_app: bool) {
        let Some(c) = self.channels.get(id) else {
            return;
        };
        let model = c.model.clone();
        let app = c.app.clone();
        let in_stasis = c.in_stasis;
        let role = c.role;
        let was_up = model.state == "Up";
        if let Some(app) = &app {
            self.emit(
                app,
                Event::ChannelHangupRequest(ChannelHangupRequest {
                    cause: Some(cause),
                    tech_cause: None,
                    soft: if by_app { Some(true) } else { None },
                    channel: model.clone(),
                    timestamp: self.timestamp(),
                    application: app.clone(),
                    asterisk_id: Some(ASTERISK_ID.into()),
                }),
            );
        }
        if role == Role::Dialled && !was_up {
            self.emit_dial(id, "NOANSWER");
        }
        if let Some(name) = self.channels.get(id).and_then(|c| c.recording.clone()) {
            self.finish_recording(&name, "done");
        }
        self.stop_playbacks_of(&Target::Channel(id.to_string()));
        if let Some(bridge) = self.channels.get(id).and_then(|c| c.bridge.clone()) {
            self.leave_bridge(id, &bridge);
        }
        if in_stasis {
            if let Some(app) = &app {
                self.emit(
                    app,
                    Event::StasisEnd(StasisEnd {
                        channel: model.clone(),
                        timestamp: self.timestamp(),
                        application: app.clone(),
                        asterisk_id: Some(ASTERISK_ID.into()),
                    }),
                );
            }
        }
        let Some(c) = self.channels.remove(id) else {
            return;
        };
        if let Some(h) = &c.half {
            self.channels.remove(h);
        }
        self.end_snoops_of(id);
        // Channels the app originated stay subscribed to the end; a caller that entered from
        // the dialplan is unsubscribed at StasisEnd, as in the traces.
        if role == Role::Dialled {
            if let Some(app) = &app {
                let (cause, cause_txt) = if by_app {
                    (16, "Normal Clearing")
                } else {
                    (cause, cause_text(cause))
                };
                self.emit(
                    app,
                    Event::ChannelDestroyed(ChannelDestroyed {
                        cause,
                        cause_txt: cause_txt.into(),
                        tech_cause: None,
                        channel: c.model,
                        timestamp: self.timestamp(),
                        application: app.clone(),
                        asterisk_id: Some(ASTERISK_ID.into()),
                    }),
                );
            }
        }
    }

    // ---------------------------------------------------------------- bridges

    pub fn bridges(&self) -> Vec<Bridge> {
        self.bridges.values().map(|b| b.model.clone()).collect()
    }

    pub fn bridge(&self, id: &str) -> SimResult<Bridge> {
        match self.bridges.get(id) {
            Some(b) => Ok(b.model.clone()),
            None => fail(404, "Bridge not found"),
        }
    }

    pub fn create_bridge(
        &mut self,
        kind: Option<&str>,
        name: Option<&str>,
        bridge_id: Option<&str>,
        app: &str,
    ) -> SimResult<Bridge> {
        let kind = kind.unwrap_or("mixing");
        let holding = kind.split(',').any(|k| k == "holding");
        for k in kind.split(',') {
            if ![
                "mixing",
                "holding",
                "dtmf_events",
                "proxy_media",
                "video_sfu",
                "video_single",
                "sdp_label",
            ]
            .contains(&k)
            {
                return fail(400, format!("Invalid bridge type '{k}'"));
            }
        }
        let id = bridge_id.map(str::to_string).unwrap_or_else(new_uuid);
        if self.bridges.contains_key(&id) {
            return fail(409, "Bridge with same ID already exists");
        }
        let model = Bridge {
            id: id.clone(),
            technology: if holding {
                "holding_bridge"
            } else {
                "simple_bridge"
            }
            .into(),
            bridge_type: if holding { "holding" } else { "mixing" }.into(),
            bridge_class: "stasis".into(),
            creator: "Stasis".into(),
            name: name.unwrap_or("").to_string(),
            channels: vec![],
            creationtime: timestamp(),
            video_mode: Some("talker".into()),
            video_source_id: None,
            bridgevars: None,
        };
        self.bridges.insert(
            id,
            SimBridge {
                model: model.clone(),
                app: app.to_string(),
                moh: false,
                recording: None,
            },
        );
        Ok(model)
    }

    pub fn add_channels(&mut self, bridge: &str, channels: &[&str]) -> SimResult<()> {
        if !self.bridges.contains_key(bridge) {
            return fail(404, "Bridge not found");
        }
        for id in channels {
            let Some(c) = self.channels.get(*id) else {
                return fail(400, "Channel not found");
            };
            if !c.in_stasis {
                return fail(422, "Channel not in Stasis application");
            }
        }
        for id in channels {
            let current = self.channels.get(*id).and_then(|c| c.bridge.clone());
            if current.as_deref() == Some(bridge) {
                continue;
            }
            if let Some(old) = current {
                self.leave_bridge(id, &old);
            }
            let Some(b) = self.bridges.get_mut(bridge) else {
                continue;
            };
            b.model.channels.push(id.to_string());
            if b.model.channels.len() == 2 {
                self.bridge_complete_at
                    .entry(bridge.to_string())
                    .or_insert_with(std::time::Instant::now);
            }
            let bridge_model = b.model.clone();
            let app = b.app.clone();
            let Some(c) = self.channels.get_mut(*id) else {
                continue;
            };
            c.bridge = Some(bridge.to_string());
            let channel_model = c.model.clone();
            self.emit(
                &app,
                Event::ChannelEnteredBridge(ChannelEnteredBridge {
                    bridge: bridge_model,
                    channel: Some(channel_model),
                    timestamp: self.timestamp(),
                    application: app.clone(),
                    asterisk_id: Some(ASTERISK_ID.into()),
                }),
            );
        }
        Ok(())
    }

    pub fn remove_channels(&mut self, bridge: &str, channels: &[&str]) -> SimResult<()> {
        let Some(b) = self.bridges.get(bridge) else {
            return fail(404, "Bridge not found");
        };
        for id in channels {
            if !self.channels.contains_key(*id) {
                return fail(400, "Channel not found");
            }
            if !b.model.channels.iter().any(|c| c == id) {
                return fail(422, "Channel not in this bridge");
            }
        }
        for id in channels {
            self.leave_bridge(id, bridge);
        }
        Ok(())
    }

    fn leave_bridge(&mut self, channel: &str, bridge: &str) {
        let Some(c) = self.channels.get_mut(channel) else {
            return;
        };
        c.bridge = None;
        let channel_model = c.model.clone();
        let Some(b) = self.bridges.get_mut(bridge) else {
            return;
        };
        // With three or more participants (the recorder counts) Asterisk has moved the bridge
        // to softmix; the leave event still shows it, then it falls back (hunt, transfer traces).
        let participants = b.model.channels.len() + usize::from(b.recording.is_some());
        b.model.channels.retain(|id| id != channel);
        let mut bridge_model = b.model.clone();
        if b.model.bridge_type == "mixing" && participants >= 3 {
            bridge_model.technology = "softmix".into();
        }
        let app = b.app.clone();
        let empty = b.model.channels.is_empty();
        let recording = b.recording.clone();
        self.emit(
            &app,
            Event::ChannelLeftBridge(ChannelLeftBridge {
                bridge: bridge_model,
                channel: channel_model,
                timestamp: self.timestamp(),
                application: app.clone(),
                asterisk_id: Some(ASTERISK_ID.into()),
            }),
        );
        if empty {
            if let Some(name) = recording {
                self.finish_recording(&name, "done");
            }
        }
    }

    pub fn destroy_bridge(&mut self, id: &str) -> SimResult<()> {
        let Some(b) = self.bridges.get(id) else {
            return fail(404, "Bridge not found");
        };
        let members = b.model.channels.clone();
        for channel in members {
            self.leave_bridge(&channel, id);
        }
        if let Some(name) = self.bridges.get(id).and_then(|b| b.recording.clone()) {
            self.finish_recording(&name, "done");
        }
        self.stop_playbacks_of(&Target::Bridge(id.to_string()));
        self.bridge_complete_at.remove(id);
        if let Some(b) = self.bridges.remove(id) {
            self.emit(
                &b.app,
                Event::BridgeDestroyed(BridgeDestroyed {
                    bridge: b.model,
                    timestamp: self.timestamp(),
                    application: b.app.clone(),
                    asterisk_id: Some(ASTERISK_ID.into()),
                }),
            );
        }
        Ok(())
    }

    pub fn bridge_moh(&mut self, id: &str, on: bool) -> SimResult<()> {
        match self.bridges.get_mut(id) {
            Some(b) => {
                b.moh = on;
                Ok(())
            }
            None => fail(404, "Bridge not found"),
        }
    }

    // ---------------------------------------------------------------- playbacks

    pub fn play(
        &mut self,
        target: &str,
        on_bridge: bool,
        media: &str,
        playback_id: Option<&str>,
    ) -> SimResult<Playback> {
        let app = if on_bridge {
            match self.bridges.get(target) {
                Some(b) => b.app.clone(),
                None => return fail(404, "Bridge not found"),
            }
        } else {
            let c = self.stasis_channel(target)?;
            c.app.clone().unwrap_or_default()
        };
        if media.is_empty() {
            return fail(400, "media is required");
        }
        let id = playback_id.map(str::to_string).unwrap_or_else(new_uuid);
        if self.playbacks.contains_key(&id) {
            return fail(409, "Playback with same ID already exists");
        }
        let mut queue: VecDeque<String> = media.split(',').map(str::to_string).collect();
        let first = queue.front().cloned().unwrap_or_default();
        queue.pop_front();
        let target_uri = if on_bridge {
            format!("bridge:{target}")
        } else {
            format!("channel:{target}")
        };
        let model = Playback {
            id: id.clone(),
            media_uri: first.clone(),
            next_media_uri: queue.front().cloned(),
            target_uri,
            language: Some("en".into()),
            state: "queued".into(),
        };
        self.playbacks.insert(
            id,
            SimPlayback {
                model: model.clone(),
                app,
                target: if on_bridge {
                    Target::Bridge(target.into())
                } else {
                    Target::Channel(target.into())
                },
                queue,
                current: Some((first, 0, 0)),
                started: false,
            },
        );
        Ok(model)
    }

    pub fn playback(&self, id: &str) -> SimResult<Playback> {
        match self.playbacks.get(id) {
            Some(p) => Ok(p.model.clone()),
            None => fail(404, "Playback not found"),
        }
    }

    pub fn stop_playback(&mut self, id: &str) -> SimResult<()> {
        if !self.playbacks.contains_key(id) {
            return fail(404, "Playback not found");
        }
        self.finish_playback(id, "done");
        Ok(())
    }

    fn stop_playbacks_of(&mut self, target: &Target) {
        let ids: Vec<String> = self
            .playbacks
            .iter()
            .filter(|(_, p)| &p.target == target)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.finish_playback(&id, "done");
        }
    }

    fn finish_playback(&mut self, id: &str, state: &str) {
        if let Some(mut p) = self.playbacks.remove(id) {
            p.model.state = state.into();
            self.emit(
                &p.app,
                Event::PlaybackFinished(PlaybackFinished {
                    playback: p.model,
                    timestamp: self.timestamp(),
                    application: p.app.clone(),
                    asterisk_id: Some(ASTERISK_ID.into()),
                }),
            );
        }
    }

    /// Audio of `media` (`sound:<name>` or `recording:<name>`) and its length in samples.
    fn media_length(&self, media: &str) -> Option<u64> {
        if let Some(sound) = media.strip_prefix("sound:") {
            return sound_length(sound);
        }
        if let Some(name) = media.strip_prefix("recording:") {
            return self.stored_audio(name).map(|s| s.len() as u64);
        }
        None
    }

    fn stored_audio(&self, name: &str) -> Option<Vec<i16>> {
        if !safe_relative(name) {
            return None;
        }
        let wav_path = self.recordings_dir.join(format!("{name}.wav"));
        if let Ok(bytes) = std::fs::read(&wav_path) {
            let data = bytes.get(wav::HEADER_LEN as usize..)?;
            return Some(
                data.chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            );
        }
        let ulaw_path = self.recordings_dir.join(format!("{name}.ulaw"));
        std::fs::read(ulaw_path)
            .ok()
            .map(|b| b.into_iter().map(g711::decode_ulaw).collect())
    }

    // ---------------------------------------------------------------- recordings

    /// `POST /bridges/{id}/record` and `POST /channels/{id}/record`.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        target: &str,
        on_bridge: bool,
        name: &str,
        format: &str,
        max_duration: Option<u32>,
        max_silence: Option<u32>,
        if_exists: Option<&str>,
        beep: Option<bool>,
        terminate_on: Option<&str>,
    ) -> SimResult<LiveRecording> {
        let app = if on_bridge {
            match self.bridges.get(target) {
                Some(b) => b.app.clone(),
                None => return fail(404, "Bridge not found"),
            }
        } else {
            self.stasis_channel(target)?.app.clone().unwrap_or_default()
        };
        if name.is_empty() {
            return fail(400, "Recording name is required");
        }
        if format.is_empty() {
            return fail(400, "Recording format is required");
        }
        let if_exists = match if_exists {
            None => IfExists::Fail,
            Some(text) => match IfExists::parse(text) {
                Some(v) => v,
                None => return fail(400, "ifExists invalid"),
            },
        };
        if let Some(t) = terminate_on {
            if !["none", "any", "*", "#"].contains(&t) {
                return fail(400, "terminateOn invalid");
            }
        }
        let Some(file_format) = FileFormat::parse(format) else {
            return fail(422, "specified format is unknown on this system");
        };
        if !safe_relative(name) {
            return fail(500, "Error parsing request");
        }
        if self.recordings.contains_key(name) {
            return fail(
                409,
                format!("Recording '{name}' already exists and can not be overwritten"),
            );
        }
        let path = self.recordings_dir.join(format!("{name}.{format}"));
        if if_exists == IfExists::Fail && path.exists() {
            return fail(
                409,
                format!("Recording '{name}' already exists and can not be overwritten"),
            );
        }
        if !self.recordings_dir.is_dir() {
            return fail(500, "Internal Server Error");
        }
        if let Some(parent) = path.parent() {
            if std::fs::create_dir_all(parent).is_err() {
                return fail(500, "Internal Server Error");
            }
        }
        let append =
            if_exists == IfExists::Append && path.exists() && file_format != FileFormat::Wav;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&path);
        let Ok(file) = file else {
            return fail(500, "Internal Server Error");
        };
        let mut writer = BufWriter::new(file);
        if file_format == FileFormat::Wav && writer.write_all(&wav::header(0)).is_err() {
            return fail(500, "Internal Server Error");
        }
        let target_uri = if on_bridge {
            format!("bridge:{target}")
        } else {
            format!("channel:{target}")
        };
        let in_bridge = !on_bridge
            && self
                .channels
                .get(target)
                .is_some_and(|c| c.bridge.is_some());
        // A snoop's recording attaches to its audio hook first: `queued`, as a bridge's.
        let snoop = !on_bridge
            && self
                .channels
                .get(target)
                .is_some_and(|c| c.role == Role::Snoop);
        // Asterisk answers `queued` while a beep is pending or a bridge must attach the recorder;
        // a plain channel recording is already `recording` in the 201 (voicemail_silence trace).
        let immediate = !on_bridge && !in_bridge && !snoop && beep != Some(true);
        let live = LiveRecording {
            name: name.to_string(),
            format: format.to_string(),
            state: if immediate { "recording" } else { "queued" }.into(),
            target_uri,
            duration: None,
            talking_duration: None,
            silence_duration: None,
            cause: None,
        };
        let mut fail_cause = self.fail_next_record.take();
        if in_bridge {
            fail_cause = Some("Cannot record channel while in bridge".into());
        }
        let recording = SimRecording {
            live: live.clone(),
            app: app.clone(),
            target: if on_bridge {
                Target::Bridge(target.into())
            } else {
                Target::Channel(target.into())
            },
            writer: Some(writer),
            format: file_format,
            data_bytes: 0,
            recorded: 0,
            elapsed: 0,
            talking: 0,
            silence_run: 0,
            max_duration: max_duration
                .filter(|d| *d > 0)
                .map(|d| seconds(f64::from(d))),
            max_silence: max_silence
                .filter(|d| *d > 0)
                .map(|d| seconds(f64::from(d))),
            terminate_on: terminate_on.filter(|t| *t != "none").map(str::to_string),
            report_talk: max_silence.is_some_and(|d| d > 0),
            paused: false,
            muted: false,
            fail_cause: fail_cause.clone(),
        };
        self.recordings.insert(name.to_string(), recording);
        match &fail_cause {
            Some(_) => {
                // The 201 promised nothing: the failure follows at once.
                self.finish_recording(name, "failed");
                let _ = std::fs::remove_file(&path);
            }
            None => {
                if on_bridge {
                    if let Some(b) = self.bridges.get_mut(target) {
                        b.recording = Some(name.to_string());
                    }
                } else if let Some(c) = self.channels.get_mut(target) {
                    c.recording = Some(name.to_string());
                }
                if let Some(r) = self.recordings.get_mut(name) {
                    r.live.state = "recording".into();
                    let started = r.live.clone();
                    self.emit(
                        &app,
                        Event::RecordingStarted(RecordingStarted {
                            recording: started,
                            timestamp: self.timestamp(),
                            application: app.clone(),
                            asterisk_id: Some(ASTERISK_ID.into()),
                        }),
                    );
                }
            }
        }
        Ok(live)
    }

    pub fn live_recording(&self, name: &str) -> SimResult<LiveRecording> {
        match self.recordings.get(name) {
            Some(r) => Ok(r.live.clone()),
            None => fail(404, "Recording not found"),
        }
    }

    pub fn stop_recording(&mut self, name: &str) -> SimResult<()> {
        if !self.recordings.contains_key(name) {
            return fail(404, "Recording not found");
        }
        self.finish_recording(name, "done");
        Ok(())
    }

    /// `DELETE /recordings/live/{name}`: stop and discard.
    pub fn cancel_recording(&mut self, name: &str) -> SimResult<()> {
        let Some(r) = self.recordings.get(name) else {
            return fail(404, "Recording not found");
        };
        let path = self
            .recordings_dir
            .join(format!("{}.{}", r.live.name, r.live.format));
        self.finish_recording(name, "canceled");
        let _ = std::fs::remove_file(path);
        Ok(())
    }

    pub fn pause_recording(&mut self, name: &str, paused: bool) -> SimResult<()> {
        match self.recordings.get_mut(name) {
            Some(r) => {
                r.paused = paused;
                r.live.state = if paused { "paused" } else { "recording" }.into();
                Ok(())
            }
            None => fail(404, "Recording not found"),
        }
    }

    pub fn mute_recording(&mut self, name: &str, muted: bool) -> SimResult<()> {
        match self.recordings.get_mut(name) {
            Some(r) => {
                r.muted = muted;
                Ok(())
            }
            None => fail(404, "Recording not found"),
        }
    }

    /// Closes the file (sizes filled in) and tells the app.
    fn finish_recording(&mut self, name: &str, state: &str) {
        self.finish_recording_trimmed(name, state, 0);
    }

    /// Closes the file, dropping its last `trim` samples first (Asterisk cuts the keypress off a
    /// recording ended by DTMF: the voicemail_hash trace reports 29 s for 30.5 s of talk).
    fn finish_recording_trimmed(&mut self, name: &str, state: &str, trim: u64) {
        let Some(mut r) = self.recordings.remove(name) else {
            return;
        };
        let bytes_per_sample: u64 = if r.format == FileFormat::Ulaw { 1 } else { 2 };
        let trimmed = trim.min(r.recorded);
        r.recorded -= trimmed;
        r.data_bytes -= (trimmed * bytes_per_sample).min(r.data_bytes);
        if let Some(mut writer) = r.writer.take() {
            let _ = writer.flush();
            if let Ok(mut file) = writer.into_inner() {
                let header = if r.format == FileFormat::Wav {
                    wav::HEADER_LEN
                } else {
                    0
                };
                let _ = file.set_len(header + r.data_bytes);
                if r.format == FileFormat::Wav {
                    let data_len = u32::try_from(r.data_bytes).unwrap_or(u32::MAX);
                    let _ = wav::finalize(&mut file, data_len);
                }
                let _ = file.sync_data();
            }
        }
        match &r.target {
            Target::Bridge(id) => {
                if let Some(b) = self.bridges.get_mut(id) {
                    b.recording = None;
                }
            }
            Target::Channel(id) => {
                if let Some(c) = self.channels.get_mut(id) {
                    c.recording = None;
                }
            }
        }
        r.live.state = state.into();
        let app = r.app.clone();
        let event = if state == "failed" {
            r.live.cause = r.fail_cause.clone();
            Event::RecordingFailed(RecordingFailed {
                recording: r.live,
                timestamp: self.timestamp(),
                application: app.clone(),
                asterisk_id: Some(ASTERISK_ID.into()),
            })
        } else {
            let rate = u64::from(SAMPLE_RATE);
            r.live.duration = Some((r.recorded / rate) as i64);
            if r.report_talk {
                let talking = (r.talking / rate) as i64;
                r.live.talking_duration = Some(talking);
                r.live.silence_duration = Some((r.recorded / rate) as i64 - talking);
            }
            Event::RecordingFinished(RecordingFinished {
                recording: r.live,
                timestamp: self.timestamp(),
                application: app.clone(),
                asterisk_id: Some(ASTERISK_ID.into()),
            })
        };
        self.emit(&app, event);
    }

    pub fn stored_recordings(&self) -> Vec<StoredRecording> {
        let mut out = Vec::new();
        collect_stored(&self.recordings_dir, &self.recordings_dir, &mut out);
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    fn stored_path(&self, name: &str) -> SimResult<(PathBuf, String)> {
        if !safe_relative(name) {
            return fail(404, "Recording not found");
        }
        for ext in STORED_EXTENSIONS {
            let path = self.recordings_dir.join(format!("{name}.{ext}"));
            if path.is_file() {
                return Ok((path, ext.to_string()));
            }
        }
        fail(404, "Recording not found")
    }

    pub fn stored_recording(&self, name: &str) -> SimResult<StoredRecording> {
        let (_, format) = self.stored_path(name)?;
        Ok(StoredRecording {
            name: name.to_string(),
            format,
        })
    }

    /// The file's bytes and its content type.
    pub fn stored_file(&self, name: &str) -> SimResult<(Vec<u8>, &'static str)> {
        let (path, format) = self.stored_path(name)?;
        let content_type = match format.as_str() {
            "wav" | "wav16" | "WAV" => "audio/wav",
            "ulaw" => "audio/basic",
            "gsm" => "audio/gsm",
            _ => "application/octet-stream",
        };
        match std::fs::read(path) {
            Ok(bytes) => Ok((bytes, content_type)),
            Err(_) => fail(403, "Recording file could not be opened"),
        }
    }

    pub fn copy_stored(&mut self, name: &str, destination: &str) -> SimResult<StoredRecording> {
        let (path, format) = self.stored_path(name)?;
        if !safe_relative(destination) {
            return fail(400, "Invalid destination recording name");
        }
        if self.stored_path(destination).is_ok() {
            return fail(
                409,
                "A recording with the same name already exists on the system",
            );
        }
        let dest = self.recordings_dir.join(format!("{destination}.{format}"));
        if let Some(parent) = dest.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        if std::fs::copy(path, dest).is_err() {
            return fail(500, "Internal Server Error");
        }
        Ok(StoredRecording {
            name: destination.to_string(),
            format,
        })
    }

    pub fn delete_stored(&mut self, name: &str) -> SimResult<()> {
        let (path, _) = self.stored_path(name)?;
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(_) => fail(500, "Internal Server Error"),
        }
    }

    // ---------------------------------------------------------------- time

    /// Advances simulated time by `frames` 20 ms frames.
    pub fn advance(&mut self, frames: u64) {
        for _ in 0..frames {
            self.now += FRAME_SAMPLES as u64;
            self.step_parties();
            self.step_ring_deadlines();
            self.step_playbacks();
            self.step_recordings();
        }
    }

    fn step_parties(&mut self) {
        let ids: Vec<String> = self.channels.keys().cloned().collect();
        for id in ids {
            let mut actions = Vec::new();
            let Some(c) = self.channels.get_mut(&id) else {
                continue;
            };
            c.frame = match c.party.as_mut() {
                Some(run) => run.frame(&mut actions),
                None => None,
            };
            for action in actions {
                self.apply_party_action(&id, action);
            }
        }
    }

    fn apply_party_action(&mut self, id: &str, action: PartyAction) {
        let Some(c) = self.channels.get(id) else {
            return;
        };
        let role = c.role;
        match action {
            PartyAction::Answer => {
                if role == Role::Dialled && c.model.state != "Up" {
                    let half = c.half.clone();
                    if let Some(h) = half.and_then(|h| self.channels.get_mut(&h)) {
                        h.model.state = "Up".into();
                    }
                    let Some(c) = self.channels.get_mut(id) else {
                        return;
                    };
                    c.model.state = "Up".into();
                    c.ring_deadline = None;
                    c.in_stasis = true;
                    let args = c.args.clone();
                    let model = c.model.clone();
                    let app = c.app.clone().unwrap_or_default();
                    self.emit_state_change(id);
                    self.emit_dial(id, "ANSWER");
                    self.emit(
                        &app,
                        Event::StasisStart(StasisStart {
                            args,
                            channel: model,
                            replace_channel: None,
                            timestamp: self.timestamp(),
                            application: app.clone(),
                            asterisk_id: Some(ASTERISK_ID.into()),
                        }),
                    );
                }
            }
            PartyAction::Busy => {
                if role == Role::Dialled {
                    self.emit_dial(id, "BUSY");
                    // The ;1 half dies with cause 0, its ;2 with 17 (hunt trace).
                    self.destroy_unanswered(id, 0, "Unknown");
                }
            }
            PartyAction::Dtmf(digit) => {
                let model = c.model.clone();
                let in_stasis = c.in_stasis;
                let app = c.app.clone();
                let recording = c.recording.clone();
                if let (true, Some(app)) = (in_stasis, app) {
                    self.emit(
                        &app,
                        Event::ChannelDtmfReceived(ChannelDtmfReceived {
                            digit: digit.to_string(),
                            duration_ms: 100,
                            channel: model,
                            timestamp: self.timestamp(),
                            application: app.clone(),
                            asterisk_id: Some(ASTERISK_ID.into()),
                        }),
                    );
                }
                // In a bridge the digit reaches the other members too, and each of them in the
                // app raises its own event (dtmf_in_bridge: the caller's `*1` shows on the
                // caller's channel and on the agent's).
                let others: Vec<(Channel, String)> = self
                    .bridges
                    .values()
                    .filter(|b| b.model.channels.iter().any(|m| m == id))
                    .flat_map(|b| b.model.channels.clone())
                    .filter(|m| m != id)
                    .filter_map(|m| {
                        let other = self.channels.get(&m)?;
                        let app = other.app.clone().filter(|_| other.in_stasis)?;
                        // The event names the member's other Local half (`Local/203@agents;2`
                        // in the trace), the side the digit leaves the bridge through.
                        let named = other
                            .half
                            .as_ref()
                            .and_then(|h| self.channels.get(h))
                            .unwrap_or(other);
                        Some((named.model.clone(), app))
                    })
                    .collect();
                for (channel, app) in others {
                    self.emit(
                        &app,
                        Event::ChannelDtmfReceived(ChannelDtmfReceived {
                            digit: digit.to_string(),
                            duration_ms: 100,
                            channel,
                            timestamp: self.timestamp(),
                            application: app.clone(),
                            asterisk_id: Some(ASTERISK_ID.into()),
                        }),
                    );
                }
                if let Some(name) = recording {
                    let stops = self
                        .recordings
                        .get(&name)
                        .and_then(|r| r.terminate_on.clone())
                        .is_some_and(|t| t == "any" || t == digit.to_string());
                    if stops {
                        self.finish_recording_trimmed(&name, "done", seconds(0.5));
                    }
                }
            }
            PartyAction::Hangup => {
                if role == Role::Dialled && c.model.state != "Up" {
                    self.emit_dial(id, "CANCEL");
                    self.destroy_unanswered(id, 16, "Normal Clearing");
                } else {
                    self.end_channel(id, 16, false);
                }
            }
        }
    }

    /// A dialled party that never answered: destroyed without entering the app.
    fn destroy_unanswered(&mut self, id: &str, cause: i64, cause_txt: &str) {
        let Some(c) = self.channels.remove(id) else {
            return;
        };
        if let Some(h) = &c.half {
            self.channels.remove(h);
        }
        if let Some(app) = &c.app {
            self.emit(
                app,
                Event::ChannelDestroyed(ChannelDestroyed {
                    cause,
                    cause_txt: cause_txt.into(),
                    tech_cause: None,
                    channel: c.model,
                    timestamp: self.timestamp(),
                    application: app.clone(),
                    asterisk_id: Some(ASTERISK_ID.into()),
                }),
            );
        }
    }

    fn step_ring_deadlines(&mut self) {
        let now = self.now;
        let expired: Vec<(String, Role)> = self
            .channels
            .iter()
            .filter(|(_, c)| c.ring_deadline.is_some_and(|d| d <= now) && c.model.state != "Up")
            .map(|(id, c)| (id.clone(), c.role))
            .collect();
        for (id, role) in expired {
            match role {
                Role::Dialled => {
                    self.emit_dial(&id, "NOANSWER");
                    self.destroy_unanswered(&id, 19, "No user responding");
                }
                // A caller nobody answered gives up.
                _ => self.end_channel(&id, 16, false),
            }
        }
    }

    fn step_playbacks(&mut self) {
        let ids: Vec<String> = self.playbacks.keys().cloned().collect();
        for id in ids {
            let (media, pos, started) = match self.playbacks.get(&id) {
                Some(p) => match &p.current {
                    Some((m, pos, _)) => (m.clone(), *pos, p.started),
                    None => continue,
                },
                None => continue,
            };
            let length = self.media_length(&media);
            let Some(p) = self.playbacks.get_mut(&id) else {
                continue;
            };
            if !started {
                p.started = true;
                p.model.state = "playing".into();
                let model = p.model.clone();
                let app = p.app.clone();
                self.emit(
                    &app,
                    Event::PlaybackStarted(PlaybackStarted {
                        playback: model,
                        timestamp: self.timestamp(),
                        application: app.clone(),
                        asterisk_id: Some(ASTERISK_ID.into()),
                    }),
                );
                if length.is_none() {
                    self.finish_playback(&id, "failed");
                }
                continue;
            }
            let Some(length) = length else {
                self.finish_playback(&id, "failed");
                continue;
            };
            let next_pos = pos + FRAME_SAMPLES as u64;
            if next_pos < length {
                p.current = Some((media, next_pos, length));
                continue;
            }
            match p.queue.pop_front() {
                Some(next) => {
                    p.model.media_uri = next.clone();
                    p.model.next_media_uri = p.queue.front().cloned();
                    p.model.state = "continuing".into();
                    p.current = Some((next, 0, 0));
                    let model = p.model.clone();
                    let app = p.app.clone();
                    self.emit(
                        &app,
                        Event::PlaybackContinuing(PlaybackContinuing {
                            playback: model,
                            timestamp: self.timestamp(),
                            application: app.clone(),
                            asterisk_id: Some(ASTERISK_ID.into()),
                        }),
                    );
                }
                None => self.finish_playback(&id, "done"),
            }
        }
    }

    /// The audio a bridge recording hears this frame: the sum of what every member sends,
    /// plus prompts played to the bridge.
    fn bridge_mix(&self, bridge: &SimBridge) -> Vec<i16> {
        let mut mix = vec![0i32; FRAME_SAMPLES];
        for id in &bridge.model.channels {
            if let Some(frame) = self.channels.get(id).and_then(|c| c.frame.as_ref()) {
                for (m, s) in mix.iter_mut().zip(frame) {
                    *m += i32::from(*s);
                }
            }
        }
        for p in self.playbacks.values() {
            if p.target == Target::Bridge(bridge.model.id.clone()) && p.started {
                if let Some((media, pos, _)) = &p.current {
                    if let Some(sound) = media.strip_prefix("sound:") {
                        for (i, m) in mix.iter_mut().enumerate() {
                            *m += i32::from(sound_sample(sound, pos + i as u64));
                        }
                    }
                }
            }
        }
        if bridge.moh && bridge.model.channels.len() <= 1 {
            let start = self.now;
            for (i, m) in mix.iter_mut().enumerate() {
                *m += i32::from(music_on_hold(start + i as u64));
            }
        }
        mix.into_iter()
            .map(|v| v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16)
            .collect()
    }

    fn step_recordings(&mut self) {
        let names: Vec<String> = self.recordings.keys().cloned().collect();
        for name in names {
            let frame = match self.recordings.get(&name).map(|r| r.target.clone()) {
                Some(Target::Bridge(id)) => self.bridges.get(&id).map(|b| self.bridge_mix(b)),
                Some(Target::Channel(id)) => match self.channels.get(&id) {
                    Some(SimChannel {
                        snoop: Some((spied, spy)),
                        ..
                    }) => Some(self.snoop_frame(spied, *spy)),
                    Some(c) => c.frame.clone(),
                    None => None,
                },
                None => continue,
            };
            let Some(r) = self.recordings.get_mut(&name) else {
                continue;
            };
            if r.paused {
                continue; // a paused recording drops the audio
            }
            r.elapsed += FRAME_SAMPLES as u64;
            let silent = frame.as_deref().map(is_silent).unwrap_or(true);
            if silent {
                r.silence_run += FRAME_SAMPLES as u64;
            } else {
                r.silence_run = 0;
            }
            if let Some(mut samples) = frame {
                if r.muted {
                    samples.iter_mut().for_each(|s| *s = 0); // muted writes silence
                } else if !silent {
                    r.talking += FRAME_SAMPLES as u64;
                }
                let bytes = match r.format {
                    FileFormat::Wav | FileFormat::Sln => wav::pcm_bytes(&samples),
                    FileFormat::Ulaw => samples.iter().map(|s| g711::encode_ulaw(*s)).collect(),
                };
                if let Some(w) = r.writer.as_mut() {
                    // Flushed each frame so a copy taken mid-call sees the audio so far.
                    if w.write_all(&bytes).and_then(|_| w.flush()).is_ok() {
                        r.data_bytes += bytes.len() as u64;
                        r.recorded += FRAME_SAMPLES as u64;
                    }
                }
            }
            let over_time = r.max_duration.is_some_and(|m| r.elapsed >= m);
            let over_silence = r.max_silence.is_some_and(|m| r.silence_run >= m);
            if over_time || over_silence {
                self.finish_recording(&name, "done");
            }
        }
    }

    /// When `bridge` first held two channels.
    pub fn bridge_completed_at(&self, bridge: &str) -> Option<std::time::Instant> {
        self.bridge_complete_at.get(bridge).copied()
    }

    /// Number of channels and live recordings, for the demo's status line and tests.
    pub fn counts(&self) -> (usize, usize, usize) {
        (
            self.channels.len(),
            self.bridges.len(),
            self.recordings.len(),
        )
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

fn collect_stored(root: &Path, dir: &Path, out: &mut Vec<StoredRecording>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            collect_stored(root, &path, out);
            continue;
        }
        let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
            continue;
        };
        if !STORED_EXTENSIONS.contains(&ext) {
            continue;
        }
        let Ok(relative) = path
            .with_extension("")
            .strip_prefix(root)
            .map(Path::to_path_buf)
        else {
            continue;
        };
        out.push(StoredRecording {
            name: relative.to_string_lossy().into_owned(),
            format: ext.to_string(),
        });
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
