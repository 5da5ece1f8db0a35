//! One call as a state machine (sans-IO): ARI events, timer ticks and failed commands in; ARI
//! commands, timers and library writes out. The task in `runtime.rs` only moves messages.
//!
//! IDs the call creates (legs, bridges, playbacks) are chosen here, `<call id>_<kind><n>`, and
//! passed to ARI (`channelId`, `bridgeId`, `playbackId`), so commands need no answer to go on
//! and every event can be routed back to its call by ID.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::definition::{node_records, FeatureLeg, Flow, HuntMode, NodeKind, Strategy};
use crate::ari::events::Event;
use crate::ari::{IfExists, RecordRequest};
use crate::library::RecordingFormat;

mod agents;
mod consent;
mod events;
mod legs;
mod messages;
mod nodes;
mod recording;
mod redaction;
#[cfg(test)]
mod tests;

pub use super::definition::RedactMode;
pub use crate::library::calls::RecordingStarted;
pub use agents::AgentBook;
pub use messages::{Adoption, Command, Input, LiveCall, Output, RedactRequest, RedactionSpan};

/// The call's recording now being redacted: since when, how, by whom.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Redacting {
    since_ms: u64,
    mode: RedactMode,
    by: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum LegState {
    Ringing,
    Up,
    Gone,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Leg {
    endpoint: String,
    state: LegState,
    /// Claimed in the agent book (queue agents and hunt members).
    claimed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum DialKind {
    Transfer,
    HuntSequential { index: usize },
    HuntSimultaneous,
    Queue,
    Outbound,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
enum Phase {
    /// Waiting for the outbound first leg to answer.
    PlacingOutbound,
    Playing {
        index: usize,
        playback: String,
    },
    Dialing {
        kind: DialKind,
        timer: u64,
    },
    /// The answering party is in the bridge (recorded from then on, when the node records).
    Bridged {
        agent: String,
    },
    VoicemailGreeting {
        playback: String,
    },
    VoicemailRecording {
        name: String,
    },
    /// A consent node's prompt is playing; a key pressed meanwhile is kept for its end.
    ConsentPrompt {
        index: usize,
        playback: String,
        attempt: u32,
        key: Option<String>,
    },
    /// The prompt ended: waiting for the caller's key until `timer`.
    ConsentWaiting {
        attempt: u32,
        timer: u64,
    },
    /// The deployment's recording announcement plays before the node that records.
    Announcing {
        index: usize,
        playback: String,
    },
    Ended,
}

/// Where a call came from (saved with the call under serde's names, as before it moved).
pub use crate::library::Direction;

/// Serialized as is (but its flow, saved by name, and its timer counters) at each transition,
/// to resume it after a restart or a crash of ari-recorder.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Call {
    pub id: String,
    #[serde(skip)]
    flow: Option<Arc<Flow>>,
    /// The flow's name, to find it again when the call is resumed.
    flow_name: Option<String>,
    direction: Direction,
    caller_name: String,
    caller_number: String,
    caller_gone: bool,
    /// Outbound: where the second leg goes, and whether to record.
    outbound_to: Option<(String, bool)>,
    node: Option<String>,
    phase: Phase,
    mixing: Option<String>,
    holding: Option<String>,
    moh_on: Option<String>,
    legs: BTreeMap<String, Leg>,
    recording: Option<String>,
    next_id: u32,
    #[serde(skip)]
    next_timer: u64,
    #[serde(skip)]
    queue_retry_timer: Option<u64>,
    queue_deadline_timer: Option<u64>,
    hops: u32,
    /// A `recording_notice` prompt was played to the caller.
    heard_recording_notice: bool,
    /// Tenant and project of a direct outbound call (flows carry their own).
    outbound_scope: (String, String),
    /// When each pending timer is due (wall ms), so a restored call re-arms them. The queue's
    /// once-a-second retry is not kept: it is re-armed from the phase.
    deadlines: BTreeMap<u64, u64>,
    /// Wall time of the input being handled.
    #[serde(skip)]
    now_ms: u64,
    /// Start recording the bridge when the caller is in it and the other party is dialled,
    /// not once both are in: a slow Asterisk then loses no word (the lead-in is marked).
    record_from_dial: bool,
    /// The recording was armed at dial and nobody has answered yet.
    lead_in: bool,
    /// Snoops recording each party of a dual-channel node on its own, and their recordings'
    /// names (redacted with the bridge's, hung up when the segment ends).
    #[serde(default)]
    snoops: Vec<(String, String)>,
    /// Names of the call's channels by id, as StasisStart gave them. Hang-ups go by name:
    /// Asterisk finds a channel by name in its hash table, but by id only by locking every
    /// channel in turn under its global channel lock, which stalls all channel creation.
    #[serde(default)]
    channel_names: BTreeMap<String, String>,
    /// Asterisk's ids of the channels the call originated (legs, snoops), by the names the call
    /// gave them. Originating with a chosen id makes Asterisk check it is free by locking every channel in
    /// turn under its global channel lock, which stalls every channel's creation under load
    /// (see BENCHMARKS.md); so Asterisk chooses, and the runtime translates.
    #[serde(default)]
    asterisk_ids: BTreeMap<String, String>,
    /// When the call entered the app (wall ms).
    #[serde(default)]
    started_ms: u64,
    /// When the current recording was requested (wall ms): redaction offsets count from it.
    #[serde(default)]
    recording_started_ms: Option<u64>,
    /// Paused time of the current recording so far: its file lacks it.
    #[serde(default)]
    paused_ms: u64,
    #[serde(default)]
    redacting: Option<Redacting>,
    #[serde(default)]
    redaction_mode: RedactMode,
    /// The last keys heard on the feature-code leg, for matching `pause_code` / `resume_code`.
    #[serde(default)]
    keys_heard: String,
    /// `redaction_inbound_calls` / `redaction_outbound_calls` for this call's kind: whether
    /// people may pause its recording, unless its flow or node says otherwise.
    #[serde(default = "switched_on")]
    redaction_by_people: bool,
    /// `recording_enabled`: off, nothing of this call is recorded (voicemail still is).
    #[serde(default = "switched_on")]
    recording_enabled: bool,
    /// `record_inbound_calls`: what nodes without their own `record_call` do.
    #[serde(default)]
    record_inbound_calls: bool,
    /// The caller's answer to a consent node: granted or declined. A declined call is not
    /// recorded by any later node.
    #[serde(default)]
    consent: Option<bool>,
    /// The deployment's `recording_announcement`, fixed for the call's life.
    #[serde(default)]
    announcement: Vec<String>,
    /// Whether the recordings disk had room when last told (the runtime tells each call before
    /// its recording's end, and everyone when it turns).
    #[serde(skip, default = "switched_on")]
    disk_room: bool,
    /// The full disk ended the bridged call's recording: it records again once the disk has room.
    #[serde(default)]
    awaiting_disk_room: bool,
    /// The call's own randomness (the suffix of its recordings' names), seeded by whoever makes
    /// the call ([`Call::seeded`]): the machine draws nothing from outside. Saved, so a resumed
    /// call goes on with its own sequence; 0 in a state saved before it existed.
    #[serde(default)]
    random: u64,
    /// Asterisk's linkedid of the call (CDR and CEL carry it), from the first channel snapshot
    /// of the call that reports it (ari.conf's `channelvars = CHANNEL(linkedid)`).
    #[serde(default)]
    linkedid: Option<String>,
}

/// The channel variable ari.conf's `channelvars` must list for calls to carry their linkedid.
pub const LINKEDID_VAR: &str = "CHANNEL(linkedid)";

fn switched_on() -> bool {
    true
}

/// A waiting queue caller re-checks for a free agent this often.
const QUEUE_RETRY: Duration = Duration::from_secs(1);
/// Node transitions allowed in one call before it is ended: a last guard against loops.
const MAX_HOPS: u32 = 200;

fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

impl Call {
    /// A call that entered the app through the dialplan, for `flow`.
    pub fn inbound(
        channel_id: &str,
        caller_name: &str,
        caller_number: &str,
        flow: Arc<Flow>,
    ) -> Call {
        Call::new(
            channel_id,
            Some(flow),
            Direction::Inbound,
            caller_name,
            caller_number,
            None,
        )
    }

    /// A direct outbound call: `from` is rung first (as the caller), then `to`.
    pub fn outbound(call_id: &str, from: &str, to: &str, record: bool) -> Call {
        let mut call = Call::new(
            call_id,
            None,
            Direction::Outbound,
            "",
            from,
            Some((to.to_string(), record)),
        );
        call.phase = Phase::PlacingOutbound;
        call
    }

    /// The tenant and project a direct outbound call's recordings belong to.
    pub fn in_scope(mut self, tenant: &str, project: &str) -> Call {
        self.outbound_scope = (tenant.to_string(), project.to_string());
        self
    }

    fn new(
        id: &str,
        flow: Option<Arc<Flow>>,
        direction: Direction,
        caller_name: &str,
        caller_number: &str,
        outbound_to: Option<(String, bool)>,
    ) -> Call {
        Call {
            id: id.to_string(),
            flow_name: flow.as_ref().map(|f| f.name.clone()),
            flow,
            direction,
            caller_name: caller_name.to_string(),
            caller_number: caller_number.to_string(),
            caller_gone: false,
            outbound_to,
            node: None,
            phase: Phase::PlacingOutbound,
            mixing: None,
            holding: None,
            moh_on: None,
            legs: BTreeMap::new(),
            recording: None,
            next_id: 0,
            next_timer: 0,
            queue_retry_timer: None,
            queue_deadline_timer: None,
            hops: 0,
            heard_recording_notice: false,
            outbound_scope: ("default".into(), "default".into()),
            deadlines: BTreeMap::new(),
            now_ms: 0,
            record_from_dial: false,
            lead_in: false,
            snoops: Vec::new(),
            channel_names: BTreeMap::new(),
            asterisk_ids: BTreeMap::new(),
            started_ms: 0,
            recording_started_ms: None,
            paused_ms: 0,
            redacting: None,
            redaction_mode: RedactMode::Mute,
            keys_heard: String::new(),
            redaction_by_people: true,
            recording_enabled: true,
            record_inbound_calls: false,
            consent: None,
            announcement: Vec::new(),
            disk_room: true,
            awaiting_disk_room: false,
            random: 0,
            linkedid: None,
        }
    }

    /// The caller channel's name (from its StasisStart), for hanging up by name.
    /// The call's randomness starts from `seed` (the runtime gives each call its own).
    pub fn seeded(mut self, seed: u64) -> Call {
        self.random = seed;
        self
    }

    /// Whether the call was given a seed (a state saved before calls had one was not).
    pub fn is_seeded(&self) -> bool {
        self.random != 0
    }

    /// The next 32 bits of the call's randomness.
    fn next_random(&mut self) -> u32 {
        let mut rng = fastrand::Rng::with_seed(self.random);
        let drawn = rng.u32(..);
        self.random = rng.u64(..);
        drawn
    }

    /// The linkedid the channel snapshot reports, if it does.
    pub fn with_linkedid_of(mut self, channel: &crate::ari::models::Channel) -> Call {
        self.note_linkedid(channel);
        self
    }

    pub(super) fn note_linkedid(&mut self, channel: &crate::ari::models::Channel) {
        if self.linkedid.is_none() {
            self.linkedid = channel
                .channelvars
                .as_ref()
                .and_then(|vars| vars.get(LINKEDID_VAR))
                .filter(|id| !id.is_empty())
                .cloned();
        }
    }

    pub fn with_channel_name(mut self, name: &str) -> Call {
        if !name.is_empty() {
            self.channel_names.insert(self.id.clone(), name.to_string());
        }
        self
    }

    /// Asterisk gave `channel` (originated by the call) the id `asterisk_id`.
    pub fn channel_originated(&mut self, channel: &str, asterisk_id: &str) {
        if channel != asterisk_id {
            self.asterisk_ids
                .insert(channel.to_string(), asterisk_id.to_string());
        }
    }

    /// Asterisk's id of the call's `channel` (the call's own name for it otherwise).
    pub fn asterisk_id<'a>(&'a self, channel: &'a str) -> &'a str {
        self.asterisk_ids
            .get(channel)
            .map(String::as_str)
            .unwrap_or(channel)
    }

    /// The call's names of its originated channels and Asterisk's ids of them.
    pub fn originated(&self) -> impl Iterator<Item = (&str, &str)> {
        self.asterisk_ids
            .iter()
            .map(|(name, id)| (name.as_str(), id.as_str()))
    }

    /// A hang-up of `channel`, by name when it is known (see `channel_names`).
    fn hangup(&self, channel: &str) -> Output {
        Output::Command(Command::Hangup {
            channel: self
                .channel_names
                .get(channel)
                .cloned()
                .unwrap_or_else(|| channel.to_string()),
        })
    }

    /// Arm recordings when the other party is dialled (see `Call::record_from_dial`).
    pub fn recording_from_dial(mut self, on: bool) -> Call {
        self.record_from_dial = on;
        self
    }

    /// How feature codes and nodes redact the recording (the deployment's `redaction_mode`).
    pub fn redacting_with(mut self, mode: RedactMode) -> Call {
        self.redaction_mode = mode;
        self
    }

    /// The call as saved (`.0`), and the same with the deadlines of its timers left out
    /// (`.1`): what decides whether it is worth saving again (timers alone moving are not).
    pub fn saved(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A digest of the saved state without the timers' due times: a new one means the state
    /// is worth writing again (a timer re-armed alone is not). Serialized to text and hashed,
    /// at every step of every call, so without building a JSON tree.
    pub fn saved_digest(&mut self) -> u64 {
        use std::hash::{Hash, Hasher};
        let deadlines = std::mem::take(&mut self.deadlines);
        let text = serde_json::to_string(self).unwrap_or_default();
        self.deadlines = deadlines;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut hasher);
        hasher.finish()
    }

    /// The name of the call's flow (None: a direct outbound call).
    pub fn flow_name(&self) -> Option<&str> {
        self.flow_name.as_deref()
    }

    /// The recording running now.
    pub fn recording(&self) -> Option<&str> {
        self.recording.as_deref()
    }

    /// The channels of the call Asterisk may still have: the caller and every leg not gone.
    pub fn channels(&self) -> Vec<String> {
        std::iter::once(self.id.clone())
            .chain(
                self.legs
                    .iter()
                    .filter(|(_, l)| l.state != LegState::Gone)
                    .map(|(id, _)| id.clone()),
            )
            .collect()
    }

    /// The prompt playing now.
    pub fn playback(&self) -> Option<&str> {
        match &self.phase {
            Phase::Playing { playback, .. }
            | Phase::VoicemailGreeting { playback }
            | Phase::ConsentPrompt { playback, .. }
            | Phase::Announcing { playback, .. } => Some(playback),
            _ => None,
        }
    }

    /// A saved call made ready to go on: `flow` is the flow of its name in force now (None:
    /// it was removed, and the call ends at its next step). Feed it [`Input::Adopted`] first.
    pub fn resume(mut self, flow: Option<Arc<Flow>>) -> Call {
        self.flow = flow;
        self.next_timer = self
            .deadlines
            .keys()
            .copied()
            .chain(self.queue_deadline_timer)
            .chain(match self.phase {
                Phase::Dialing { timer, .. } => Some(timer),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        self
    }

    /// Takes the call over as Asterisk shows it now: timers re-armed, agents claimed again,
    /// and whatever ended while nobody was listening handled as if its event had come.
    fn adopt(
        &mut self,
        adoption: &Adoption,
        now_ms: u64,
        agents: &mut AgentBook,
        out: &mut Vec<Output>,
    ) {
        for (key, due) in &self.deadlines {
            out.push(Output::Timer {
                key: *key,
                after: Duration::from_millis(due.saturating_sub(now_ms)),
            });
        }
        for leg in self.legs.values() {
            if leg.claimed && leg.state != LegState::Gone {
                agents.claim(&leg.endpoint);
            }
        }
        if let Phase::Dialing {
            kind: DialKind::Queue,
            ..
        } = self.phase
        {
            self.queue_retry_timer = Some(self.retry_timer(out));
        }
        if !adoption.channels.contains(&self.id) {
            self.on_gone(&self.id.clone(), now_ms, agents, out);
            return;
        }
        let legs_gone: Vec<String> = self
            .legs
            .iter()
            .filter(|(id, l)| l.state != LegState::Gone && !adoption.channels.contains(*id))
            .map(|(id, _)| id.clone())
            .collect();
        for leg in legs_gone {
            self.on_gone(&leg, now_ms, agents, out);
        }
        if adoption.recording_over {
            if let Some(name) = self.recording.clone() {
                self.recording_over(&name, now_ms, agents, out);
            }
        }
        if adoption.playback_over {
            if let Phase::Playing { playback, .. }
            | Phase::VoicemailGreeting { playback }
            | Phase::ConsentPrompt { playback, .. }
            | Phase::Announcing { playback, .. } = self.phase.clone()
            {
                self.playback_done(&playback, now_ms, agents, out);
            }
        }
    }

    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Ended
    }

    fn fresh(&mut self, kind: &str) -> String {
        self.next_id += 1;
        format!("{}_{kind}{}", self.id, self.next_id)
    }

    fn timer(&mut self, out: &mut Vec<Output>, after: Duration) -> u64 {
        let key = self.retry_timer_after(out, after);
        let after_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        self.deadlines
            .insert(key, self.now_ms.saturating_add(after_ms));
        key
    }

    /// The queue's retry tick: not saved (a restored queue call re-arms it).
    fn retry_timer(&mut self, out: &mut Vec<Output>) -> u64 {
        self.retry_timer_after(out, QUEUE_RETRY)
    }

    fn retry_timer_after(&mut self, out: &mut Vec<Output>, after: Duration) -> u64 {
        self.next_timer += 1;
        out.push(Output::Timer {
            key: self.next_timer,
            after,
        });
        self.next_timer
    }

    /// Feeds one input; `now_ms` is wall time in ms (for the library and longest-idle).
    pub fn handle(&mut self, input: Input<'_>, now_ms: u64, agents: &mut AgentBook) -> Vec<Output> {
        let mut out = Vec::new();
        if self.phase == Phase::Ended {
            return out;
        }
        self.now_ms = now_ms;
        if self.started_ms == 0 {
            self.started_ms = now_ms;
        }
        let recording_before = self.recording.clone();
        match input {
            Input::Redact(request) => self.redact(request, now_ms, &mut out),
            Input::Adopted(adoption) => self.adopt(adoption, now_ms, agents, &mut out),
            Input::Start => self.start(now_ms, agents, &mut out),
            Input::Event(event) => self.on_event(event, now_ms, agents, &mut out),
            Input::Timer(key) => self.on_timer(key, now_ms, agents, &mut out),
            Input::Failed {
                command,
                status,
                message,
            } => self.on_failed(command, status, message, now_ms, agents, &mut out),
            Input::ChannelGone(id) => self.on_gone(&id, now_ms, agents, &mut out),
            Input::RecordingsDisk { room } => self.disk_room_now(room, now_ms, &mut out),
        }
        if self.recording != recording_before {
            // The recording under a redaction ended: its span ends with it.
            if let Some(ended) = recording_before {
                self.close_redaction(&ended, now_ms, &mut out);
            }
            self.recording_started_ms = self.recording.as_ref().map(|_| now_ms);
            self.paused_ms = 0;
            self.redacting = None;
        }
        out
    }

    /// The live recording's name and how it is redacted now, if the call has one.
    pub fn live_recording(&self) -> Option<(&str, Option<RedactMode>)> {
        let name = self.recording.as_deref()?;
        Some((name, self.redacting.as_ref().map(|r| r.mode)))
    }

    /// A digest of what [`Call::live_view`] depends on that changes during a call (phase, the
    /// bridged party, node, recording, redaction), without allocating: the runtime rebuilds the
    /// view only when it changes, not at every event.
    pub fn live_fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        std::mem::discriminant(&self.phase).hash(&mut hasher);
        if let Phase::Bridged { agent, .. } = &self.phase {
            agent.hash(&mut hasher);
        }
        self.node.hash(&mut hasher);
        self.recording.hash(&mut hasher);
        self.redacting.as_ref().map(|r| r.mode).hash(&mut hasher);
        hasher.finish()
    }

    /// What the live-calls API shows of this call.
    pub fn live_view(&self) -> LiveCall {
        let callee = match &self.phase {
            Phase::Bridged { agent, .. } => self.legs.get(agent).map(|l| l.endpoint.clone()),
            _ => None,
        };
        let row = self.row("", None, callee.as_deref().unwrap_or(""), self.started_ms);
        LiveCall {
            id: self.id.clone(),
            tenant: row.tenant,
            project: row.project,
            private: row.private,
            participants: row.participants,
            caller_name: self.caller_name.clone(),
            caller_number: self.caller_number.clone(),
            callee,
            node: self.node.clone(),
            direction: self.direction.as_str(),
            started_at_ms: i64::try_from(self.started_ms).unwrap_or(i64::MAX),
            recording: self.recording.clone(),
            recording_state: self.recording.as_ref().map(|_| match &self.redacting {
                None => "recording",
                Some(r) if r.mode == RedactMode::Mute => "muted",
                Some(_) => "paused",
            }),
            redaction_refused_by: self.redaction_refused_by(),
        }
    }

    fn start(&mut self, now_ms: u64, agents: &mut AgentBook, out: &mut Vec<Output>) {
        match (&self.outbound_to, &self.flow) {
            (Some(_), _) => {
                // The first leg carries the call's own ID; its StasisStart starts the dial.
                out.push(Output::Command(Command::Originate {
                    channel: self.id.clone(),
                    endpoint: self.caller_number.clone(),
                    caller_id: None,
                    timeout: 30,
                    app_args: format!("outbound,{}", self.id),
                }));
                self.phase = Phase::PlacingOutbound;
            }
            (None, Some(flow)) => {
                out.push(Output::Command(Command::Answer {
                    channel: self.id.clone(),
                }));
                let start = flow.start.clone();
                self.enter(Some(start), now_ms, agents, out);
            }
            (None, None) => self.end(now_ms, agents, out),
        }
    }

    fn node_kind(&self, id: &str) -> Option<NodeKind> {
        self.flow
            .as_ref()
            .and_then(|f| f.nodes.get(id))
            .map(|n| n.kind.clone())
    }

    /// The prompts announcing recording (`recording_announcement`), fixed for the call's life.
    pub fn announcing(mut self, prompts: Vec<String>) -> Call {
        self.announcement = prompts;
        self
    }

    /// The deployment's recording switches (`settings.toml`), fixed for the call's life.
    /// Whether people may pause this kind of call's recording (the deployment's
    /// `redaction_inbound_calls` or `redaction_outbound_calls`).
    pub fn redaction_by_people(mut self, allowed: bool) -> Call {
        self.redaction_by_people = allowed;
        self
    }

    /// Why people may not pause the recording now: the switch that says no (the node's
    /// `redaction`, the flow's, or the deployment's for this kind of call); None: they may.
    pub fn redaction_refused_by(&self) -> Option<&'static str> {
        let flow = self.flow.as_deref();
        let node_says = flow
            .zip(self.node.as_ref())
            .and_then(|(flow, node)| flow.node_redaction.get(node));
        if let Some(allowed) = node_says {
            return (!allowed).then_some("node");
        }
        if let Some(allowed) = flow.and_then(|f| f.redaction) {
            return (!allowed).then_some("flow");
        }
        (!self.redaction_by_people).then_some(match self.direction {
            Direction::Inbound => "redaction_inbound_calls",
            Direction::Outbound => "redaction_outbound_calls",
        })
    }

    pub fn recording_switches(mut self, enabled: bool, inbound_default: bool) -> Call {
        self.recording_enabled = enabled;
        self.record_inbound_calls = inbound_default;
        self
    }

    /// The answering party left and the caller goes on: this segment's recording is stopped
    /// (kept), its bridge destroyed; the next node starts its own.
    fn leave_bridge(&mut self, out: &mut Vec<Output>) {
        self.stop_parties(out);
        self.cancel_lead_in(out);
        if let Some(name) = self.recording.take() {
            out.push(Output::Command(Command::StopRecording { name }));
        }
        for bridge in [self.holding.take(), self.mixing.take()]
            .into_iter()
            .flatten()
        {
            out.push(Output::Command(Command::DestroyBridge { bridge }));
        }
        // The next node sets the phase as it enters.
    }

    /// Ends the call cleanly: recording stopped (never discarded), legs hung up, bridges gone.
    fn end(&mut self, now_ms: u64, agents: &mut AgentBook, out: &mut Vec<Output>) {
        if self.phase == Phase::Ended {
            return;
        }
        // The caller left before anyone answered: the armed recording holds nothing of a call.
        self.cancel_lead_in(out);
        if let Some(name) = self.recording.take() {
            out.push(Output::Command(Command::StopRecording { name }));
        }
        // The snoops end with the legs they listen to.
        self.snoops.clear();
        let legs: Vec<(String, LegState)> = self
            .legs
            .iter()
            .map(|(id, l)| (id.clone(), l.state))
            .collect();
        for (leg, state) in legs {
            if state != LegState::Gone {
                out.push(self.hangup(&leg));
            }
            self.release_leg(&leg, now_ms, agents, state == LegState::Up);
        }
        if !self.caller_gone {
            out.push(self.hangup(&self.id));
            self.caller_gone = true;
        }
        for bridge in [self.holding.take(), self.mixing.take()]
            .into_iter()
            .flatten()
        {
            out.push(Output::Command(Command::DestroyBridge { bridge }));
        }
        self.phase = Phase::Ended;
        out.push(Output::Finished);
    }
}

/// A unique, filesystem-safe recording name: `<kind>-<UTC date-time>-<8 hex>`, the hex drawn
/// from the call's randomness.
pub fn recording_name(kind: &str, now_ms: u64, random: u32) -> String {
    let when = chrono::DateTime::from_timestamp_millis(i64::try_from(now_ms).unwrap_or(0))
        .map(|t| t.format("%Y%m%d-%H%M%S").to_string())
        .unwrap_or_else(|| "00000000-000000".into());
    format!("{}-{when}-{random:08x}", sanitize(kind))
}
