//! What goes in and out of the call machine: the commands it asks of Asterisk, its outputs
//! (commands, timers, library writes), the inputs it takes, and what it shows of itself.

use super::*;

/// A request to Asterisk.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Answer {
        channel: String,
    },
    Hangup {
        channel: String,
    },
    CreateBridge {
        bridge: String,
        kind: &'static str,
        name: String,
    },
    AddChannels {
        bridge: String,
        channels: Vec<String>,
    },
    RemoveChannel {
        bridge: String,
        channel: String,
    },
    DestroyBridge {
        bridge: String,
    },
    BridgeMoh {
        bridge: String,
        class: String,
        on: bool,
    },
    Originate {
        channel: String,
        endpoint: String,
        caller_id: Option<String>,
        timeout: u32,
        app_args: String,
    },
    Play {
        channel: String,
        playback: String,
        media: String,
    },
    RecordBridge {
        bridge: String,
        request: RecordRequest,
    },
    RecordChannel {
        channel: String,
        request: RecordRequest,
    },
    /// A `spy=in` snoop on `channel` named `snoop` (in the app, args `snoop,<role>,<channel>`):
    /// what that party says, to record it on its own.
    Snoop {
        channel: String,
        snoop: String,
        role: &'static str,
    },
    StopRecording {
        name: String,
    },
    /// Stops and discards a recording (a lead-in nobody answered).
    CancelRecording {
        name: String,
    },
    /// Mutes (Asterisk writes silence) or pauses (Asterisk drops the audio) a live recording,
    /// or lifts it.
    RedactRecording {
        name: String,
        mode: RedactMode,
        on: bool,
    },
}

/// A request to redact the call's recording from now (`on`) or to stop redacting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedactRequest {
    pub on: bool,
    pub mode: RedactMode,
    /// Who asked: an actor of the audit log (`user:alice`), or what (`node:payment`, `dtmf`).
    pub by: String,
}

/// A stretch of a recording that was redacted, where it lies in the file and on the clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedactionSpan {
    pub recording: String,
    pub mode: RedactMode,
    /// Offsets in the file: equal for a pause (the audio is not in the file at all).
    pub from_offset_ms: i64,
    pub to_offset_ms: i64,
    pub started_at_ms: i64,
    pub ended_at_ms: i64,
    pub by: String,
}

/// What the live-calls API shows of a call in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveCall {
    pub id: String,
    pub tenant: String,
    pub project: String,
    pub private: bool,
    /// Caller number and the bridged party, comma-separated, as recordings list them.
    pub participants: String,
    pub caller_name: String,
    pub caller_number: String,
    pub callee: Option<String>,
    pub node: Option<String>,
    pub direction: &'static str,
    pub started_at_ms: i64,
    pub recording: Option<String>,
    /// `recording`, `muted`, `paused`; None without a recording.
    pub recording_state: Option<&'static str>,
    /// Why people may not pause the recording now (the switch that says no); None: they may.
    pub redaction_refused_by: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Command(Command),
    /// Call back with `Input::Timer(key)` after `after`.
    Timer {
        key: u64,
        after: Duration,
    },
    RecordingStarted(Box<RecordingStarted>),
    /// A bridged call its node (or the outbound setting) said not to record: listed so a
    /// reviewer looking for it learns why there is no audio.
    /// With the switch that said no (`record_call`, `record_inbound_calls`,
    /// `record_outbound_calls`, `recording_enabled`).
    NotRecorded(Box<RecordingStarted>, &'static str),
    /// A record request was refused outright (no 201): stored as failed with the reason.
    RecordingRefused {
        name: String,
        cause: String,
    },
    /// A recording armed when the caller entered the bridge: the other party answered now
    /// (the lead-in ends here) and is `callee`.
    RecordingAnswered {
        name: String,
        callee: String,
        at_ms: i64,
    },
    /// A recording armed at dial that nobody answered: discarded.
    RecordingCancelled {
        name: String,
    },
    /// A redaction of the call's recording ended (lifted, or the recording ended under it).
    Redacted(Box<RedactionSpan>),
    /// The call records again after the full recordings disk ended its recording.
    RecordingResumed,
    /// The call is over; no more input is expected.
    Finished,
}

#[derive(Debug, Clone)]
pub enum Input<'a> {
    /// The caller entered the app (or, outbound, the first leg was placed): start.
    Start,
    Event(&'a Event),
    Timer(u64),
    /// A command Asterisk refused.
    Failed {
        command: Command,
        status: Option<u16>,
        message: String,
    },
    /// REST shows this channel is gone (missed while the websocket was away).
    ChannelGone(String),
    /// The call was restored from its saved state after ari-recorder restarted: what Asterisk
    /// shows of it now.
    Adopted(&'a Adoption),
    /// Redact the call's live recording, or stop redacting it.
    Redact(RedactRequest),
    /// Whether the recordings disk has room now (sent before a recording's end and whenever
    /// it turns).
    RecordingsDisk {
        room: bool,
    },
}

/// What REST showed of a restored call when a new ari-recorder took it over.
#[derive(Debug, Clone, Default)]
pub struct Adoption {
    /// Which of the call's channels (caller and legs) still exist.
    pub channels: BTreeSet<String>,
    /// The call's recording is no longer live (it finished or failed while we were away).
    pub recording_over: bool,
    /// The prompt that was playing has ended.
    pub playback_over: bool,
}
