//! Flow files: one TOML file per flow in `dialplans/`, plus `settings.toml`.
//!
//! Parsing is done by hand over a `toml::Table` so every problem is reported with the file, the
//! node and the field, and all problems of a folder are reported at once.

use crate::library::Compliance;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::{Table, Value};

/// How a queue offers a waiting caller to its agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Every free agent rings at once; the first to answer gets the call.
    RingAll,
    /// Free agents in turn, continuing after the last one offered a call (shared by all calls).
    RoundRobin,
    /// The free agent whose last call ended longest ago.
    LongestIdle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HuntMode {
    /// Each member rings `ring_seconds`, one after the other.
    Sequential,
    /// All members ring at once; the first to answer wins, the others are hung up.
    Simultaneous,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    PlayAudio {
        media: Vec<String>,
        next: Option<String>,
        /// The prompt tells the caller the call is recorded: their recordings are marked as
        /// consented.
        recording_notice: bool,
    },
    Transfer {
        target: String,
        ring_timeout: u32,
        /// None: the node follows `record_inbound_calls`.
        record_call: Option<bool>,
        on_failure: Option<String>,
        /// Where the caller goes when the answering party hangs up first (a survey, another
        /// desk); without it the call ends there.
        on_agent_hangup: Option<String>,
        /// `channels = "dual"`: each party is also recorded on its own (a snoop on each leg),
        /// for a stereo file with the caller left and the agent right.
        dual_channel: bool,
        /// `pause_recording = true`: the recording of this node's bridge is redacted from its
        /// start to its end (a payment desk), as `redaction_mode` says.
        pause_recording: bool,
    },
    Queue {
        agents: Vec<String>,
        strategy: Strategy,
        ring_timeout: u32,
        max_wait: u32,
        overflow: Option<String>,
        moh_class: String,
        record_call: Option<bool>,
        on_agent_hangup: Option<String>,
        dual_channel: bool,
        pause_recording: bool,
    },
    HuntGroup {
        members: Vec<String>,
        mode: HuntMode,
        ring_seconds: u32,
        record_call: Option<bool>,
        on_failure: Option<String>,
        on_agent_hangup: Option<String>,
        dual_channel: bool,
        pause_recording: bool,
    },
    Voicemail {
        mailbox: String,
        greeting: Option<String>,
        beep: bool,
        max_duration: u32,
        max_silence: u32,
    },
    /// Asks the caller's permission to record: plays `media`, waits `timeout` seconds for one
    /// key, asks again up to `retries` times; the answer is the call's consent.
    Consent {
        media: Vec<String>,
        grant_key: String,
        decline_key: String,
        timeout: u32,
        retries: u32,
        /// The consent when the caller never answers (false: declined).
        grant_on_timeout: bool,
        next: Option<String>,
        on_granted: Option<String>,
        on_declined: Option<String>,
    },
    Hangup,
}

impl NodeKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            NodeKind::PlayAudio { .. } => "play_audio",
            NodeKind::Transfer { .. } => "transfer",
            NodeKind::Queue { .. } => "queue",
            NodeKind::HuntGroup { .. } => "hunt_group",
            NodeKind::Voicemail { .. } => "voicemail",
            NodeKind::Consent { .. } => "consent",
            NodeKind::Hangup => "hangup",
        }
    }

    /// What a recording this node makes is listed as (None: a node that records nothing).
    pub fn recorded_as(&self) -> Option<crate::library::NodeType> {
        use crate::library::NodeType;
        match self {
            NodeKind::Transfer { .. } => Some(NodeType::Transfer),
            NodeKind::Queue { .. } => Some(NodeType::Queue),
            NodeKind::HuntGroup { .. } => Some(NodeType::HuntGroup),
            NodeKind::Voicemail { .. } => Some(NodeType::Voicemail),
            NodeKind::PlayAudio { .. } | NodeKind::Consent { .. } | NodeKind::Hangup => None,
        }
    }

    /// Whether the node type records calls (transfer, queue, hunt group).
    pub fn has_record_switch(&self) -> bool {
        matches!(
            self,
            NodeKind::Transfer { .. } | NodeKind::Queue { .. } | NodeKind::HuntGroup { .. }
        )
    }

    /// The node's own `record_call`, when its file sets one.
    pub fn record_call(&self) -> Option<bool> {
        match self {
            NodeKind::Transfer { record_call, .. }
            | NodeKind::Queue { record_call, .. }
            | NodeKind::HuntGroup { record_call, .. } => *record_call,
            _ => None,
        }
    }

    /// The edges leaving the node, with the field that holds each.
    pub fn edges(&self) -> Vec<(&'static str, &str)> {
        fn pick<'a>(
            field: &'static str,
            target: &'a Option<String>,
        ) -> Option<(&'static str, &'a str)> {
            target.as_deref().map(|t| (field, t))
        }
        match self {
            NodeKind::PlayAudio { next, .. } => pick("next", next).into_iter().collect(),
            NodeKind::Transfer {
                on_failure,
                on_agent_hangup,
                ..
            }
            | NodeKind::HuntGroup {
                on_failure,
                on_agent_hangup,
                ..
            } => [
                pick("on_failure", on_failure),
                pick("on_agent_hangup", on_agent_hangup),
            ]
            .into_iter()
            .flatten()
            .collect(),
            NodeKind::Queue {
                overflow,
                on_agent_hangup,
                ..
            } => [
                pick("overflow", overflow),
                pick("on_agent_hangup", on_agent_hangup),
            ]
            .into_iter()
            .flatten()
            .collect(),
            NodeKind::Consent {
                next,
                on_granted,
                on_declined,
                ..
            } => [
                pick("next", next),
                pick("on_granted", on_granted),
                pick("on_declined", on_declined),
            ]
            .into_iter()
            .flatten()
            .collect(),
            NodeKind::Voicemail { .. } | NodeKind::Hangup => vec![],
        }
    }

    /// Whether the node records each party on its own as well (`channels = "dual"`).
    pub fn dual_channel(&self) -> bool {
        match self {
            NodeKind::Transfer { dual_channel, .. }
            | NodeKind::Queue { dual_channel, .. }
            | NodeKind::HuntGroup { dual_channel, .. } => *dual_channel,
            _ => false,
        }
    }

    /// Whether the node's recording is redacted throughout (`pause_recording = true`).
    pub fn pauses_recording(&self) -> bool {
        match self {
            NodeKind::Transfer {
                pause_recording, ..
            }
            | NodeKind::Queue {
                pause_recording, ..
            }
            | NodeKind::HuntGroup {
                pause_recording, ..
            } => *pause_recording,
            _ => false,
        }
    }

    /// Where the caller goes when the answering party hangs up first.
    pub fn after_agent_hangup(&self) -> Option<&str> {
        match self {
            NodeKind::Transfer {
                on_agent_hangup, ..
            }
            | NodeKind::Queue {
                on_agent_hangup, ..
            }
            | NodeKind::HuntGroup {
                on_agent_hangup, ..
            } => on_agent_hangup.as_deref(),
            _ => None,
        }
    }

    /// Whether passing through the node always takes time (a prompt, a wait, a recording).
    /// A cycle made only of nodes that may not wait would spin.
    fn always_waits(&self) -> bool {
        match self {
            NodeKind::PlayAudio { media, .. } => !media.is_empty(),
            NodeKind::Queue { max_wait, .. } => *max_wait > 0,
            NodeKind::Voicemail { .. } | NodeKind::Hangup | NodeKind::Consent { .. } => true,
            // A busy target fails at once.
            NodeKind::Transfer { .. } | NodeKind::HuntGroup { .. } => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub id: String,
    pub kind: NodeKind,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    pub name: String,
    pub file: PathBuf,
    pub tenant: String,
    /// The project inside the tenant whose users see this flow and its recordings.
    pub project: String,
    /// Recordings of this flow are visible only to the people on the call.
    pub private: bool,
    /// Dialled numbers (the Stasis args after `inbound`) that enter this flow.
    pub numbers: Vec<String>,
    pub start: String,
    pub nodes: BTreeMap<String, Node>,
    /// DTMF feature codes that pause and resume the call's recording while it is bridged.
    pub feature_codes: Option<FeatureCodes>,
    /// Whether the deployment's `recording_announcement` plays in this flow (true unless the
    /// flow says `recording_announcement = false`).
    pub announces: bool,
}

/// `pause_code` / `resume_code` of a flow: digits an agent on a desk phone keys to pause and
/// resume the recording, heard on `leg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureCodes {
    pub pause: String,
    pub resume: String,
    pub leg: FeatureLeg,
}

/// Whose keypad the feature codes are read from. In a bridge a digit shows on both parties'
/// channels (dtmf_in_bridge): one of them is listened to, so each press counts once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureLeg {
    Agent,
    Caller,
}

/// How a live recording is redacted: `mute` keeps the file aligned with the call (silence in
/// place of the audio), `pause` leaves the audio out (the file is shorter than the call).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RedactMode {
    #[default]
    Mute,
    Pause,
}

impl RedactMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RedactMode::Mute => "mute",
            RedactMode::Pause => "pause",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Settings {
    /// The master switch: off, no call is recorded whatever the nodes say (voicemail messages
    /// are not call recordings and still work).
    pub recording_enabled: bool,
    /// Whether transfer, queue and hunt-group nodes that set no `record_call` record.
    pub record_inbound_calls: bool,
    /// Record direct outbound calls placed through `POST /api/calls`.
    pub record_outbound_calls: bool,
    /// Start a call's recording when the other party is dialled (the caller alone in the
    /// bridge; the lead-in is marked and discarded when nobody answers), so a slow Asterisk
    /// loses no word. Off (the default): record once both parties are in the bridge.
    #[schema(read_only)]
    pub record_from_dial: bool,
    /// How pausing a live recording redacts it: `mute` (the default: silence in its place, the
    /// file stays aligned with the call) or `pause` (the audio is left out).
    #[schema(read_only)]
    pub redaction_mode: RedactMode,
    /// Compliance status of new recordings: `permitted` (the default), or `unknown`, which
    /// blocks playback until an admin records the evidence (the strict reading).
    #[schema(read_only)]
    pub default_compliance: DefaultCompliance,
    /// Prompts played to a caller before the first recorded part of a call that has not heard
    /// a recording notice. Empty (the default): none; Asterisk's core sounds hold no "this call
    /// may be recorded" prompt, so the operator names their own.
    #[schema(read_only)]
    pub recording_announcement: Vec<String>,
    /// What the page and downloads offer first for a call of several segments: the call as
    /// one recording (`per_call`, the default) or each segment (`per_segment`).
    #[schema(read_only)]
    pub recording_separation: RecordingSeparation,
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RecordingSeparation {
    #[default]
    PerCall,
    PerSegment,
}

impl RecordingSeparation {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingSeparation::PerCall => "per_call",
            RecordingSeparation::PerSegment => "per_segment",
        }
    }
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum DefaultCompliance {
    #[default]
    Permitted,
    Unknown,
}

impl DefaultCompliance {
    pub fn as_str(self) -> &'static str {
        match self {
            DefaultCompliance::Permitted => Compliance::Permitted.as_str(),
            DefaultCompliance::Unknown => Compliance::Unknown.as_str(),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            recording_enabled: true,
            record_inbound_calls: false,
            record_outbound_calls: false,
            record_from_dial: false,
            redaction_mode: RedactMode::Mute,
            default_compliance: DefaultCompliance::Permitted,
            recording_separation: RecordingSeparation::PerCall,
            recording_announcement: Vec::new(),
        }
    }
}

impl Settings {
    /// Whether a node with this own `record_call` records, and which switch decided.
    pub fn records_node(&self, own: Option<bool>) -> (bool, &'static str) {
        node_records(self.recording_enabled, own, self.record_inbound_calls)
    }
}

/// The precedence of the recording switches for a node: `recording_enabled` off wins over
/// everything, then the node's own `record_call`, then the `record_inbound_calls` default.
/// Returns the answer and the switch that decided.
pub fn node_records(
    recording_enabled: bool,
    own: Option<bool>,
    record_inbound_calls: bool,
) -> (bool, &'static str) {
    match own {
        _ if !recording_enabled => (false, "recording_enabled"),
        Some(record) => (record, "record_call"),
        None => (record_inbound_calls, "record_inbound_calls"),
    }
}

/// One problem, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowError {
    pub file: PathBuf,
    pub node: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(node) = &self.node {
            write!(f, ": node {node:?}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ", field {field:?}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every flow of the folder and the settings.
#[derive(Debug, Clone, Default)]
pub struct FlowSet {
    pub flows: BTreeMap<String, Arc<Flow>>,
    pub by_number: HashMap<String, String>,
    pub settings: Settings,
}

impl FlowSet {
    pub fn flow_for_number(&self, number: &str) -> Option<Arc<Flow>> {
        self.by_number
            .get(number)
            .and_then(|name| self.flows.get(name))
            .cloned()
    }
}

pub const SETTINGS_FILE: &str = "settings.toml";

struct Ctx<'a> {
    file: &'a Path,
    node: Option<&'a str>,
    errors: &'a mut Vec<FlowError>,
}

impl Ctx<'_> {
    fn err(&mut self, field: Option<&str>, message: impl Into<String>) {
        self.errors.push(FlowError {
            file: self.file.to_path_buf(),
            node: self.node.map(str::to_string),
            field: field.map(str::to_string),
            message: message.into(),
        });
    }

    fn string(&mut self, table: &Table, field: &str, required: bool) -> Option<String> {
        match table.get(field) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            Some(Value::String(_)) => {
                self.err(Some(field), "must not be empty");
                None
            }
            Some(other) => {
                self.err(
                    Some(field),
                    format!("must be a string, not {}", other.type_str()),
                );
                None
            }
            None => {
                if required {
                    self.err(Some(field), "missing");
                }
                None
            }
        }
    }

    fn strings(&mut self, table: &Table, field: &str, required: bool) -> Vec<String> {
        match table.get(field) {
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        Value::String(s) if !s.trim().is_empty() => out.push(s.clone()),
                        _ => self.err(Some(field), "every entry must be a non-empty string"),
                    }
                }
                if required && out.is_empty() && !items.is_empty() {
                    return out;
                }
                if required && items.is_empty() {
                    self.err(Some(field), "must list at least one entry");
                }
                out
            }
            Some(other) => {
                self.err(
                    Some(field),
                    format!("must be a list of strings, not {}", other.type_str()),
                );
                vec![]
            }
            None => {
                if required {
                    self.err(Some(field), "missing");
                }
                vec![]
            }
        }
    }

    fn seconds(&mut self, table: &Table, field: &str, default: u32, max: u32) -> u32 {
        match table.get(field) {
            None => default,
            Some(Value::Integer(n)) if (0..=i64::from(max)).contains(n) => *n as u32,
            Some(Value::Integer(n)) => {
                self.err(Some(field), format!("{n} is out of range 0..={max}"));
                default
            }
            Some(other) => {
                self.err(
                    Some(field),
                    format!(
                        "must be a whole number of seconds, not {}",
                        other.type_str()
                    ),
                );
                default
            }
        }
    }

    /// One of a field's named values; the first is the default when the field is absent. An
    /// unknown name is an error naming the choices (and the default stands in).
    fn choice<T: Copy>(&mut self, table: &Table, field: &str, choices: &[(&str, T)]) -> T {
        let default = choices[0].1;
        let Some(name) = self.string(table, field, false) else {
            return default;
        };
        match choices.iter().find(|(n, _)| *n == name) {
            Some((_, value)) => *value,
            None => {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                self.err(
                    Some(field),
                    format!("{name:?} is not one of {}", names.join(", ")),
                );
                default
            }
        }
    }

    fn boolean(&mut self, table: &Table, field: &str, default: bool) -> bool {
        match table.get(field) {
            None => default,
            Some(Value::Boolean(b)) => *b,
            Some(other) => {
                self.err(
                    Some(field),
                    format!("must be true or false, not {}", other.type_str()),
                );
                default
            }
        }
    }

    fn known_fields(&mut self, table: &Table, allowed: &[&str]) {
        for key in table.keys() {
            if !allowed.contains(&key.as_str()) {
                self.err(
                    Some(key),
                    format!("unknown field (expected one of: {})", allowed.join(", ")),
                );
            }
        }
    }
}

fn check_media(ctx: &mut Ctx<'_>, field: &str, media: &str) {
    if !(media.starts_with("sound:")
        || media.starts_with("recording:")
        || media.starts_with("tone:"))
    {
        ctx.err(
            Some(field),
            format!("{media:?} must start with sound:, recording: or tone:"),
        );
    }
}

/// `channels`: `mixed` (the default: the bridge's recording only) or `dual` (each party on its
/// own as well).
fn dual_channel(ctx: &mut Ctx, table: &Table) -> bool {
    ctx.choice(table, "channels", &[("mixed", false), ("dual", true)])
}

fn check_endpoint(ctx: &mut Ctx<'_>, field: &str, endpoint: &str) {
    match endpoint.split_once('/') {
        Some((tech, resource)) if !tech.is_empty() && !resource.is_empty() => {}
        _ => ctx.err(
            Some(field),
            format!("{endpoint:?} is not an endpoint like PJSIP/201 or Local/201@agents"),
        ),
    }
}

fn parse_node(ctx: &mut Ctx<'_>, id: &str, table: &Table) -> Option<NodeKind> {
    let kind = ctx.string(table, "type", true)?;
    let kind = match kind.as_str() {
        "play_audio" => {
            ctx.known_fields(table, &["type", "media", "next", "recording_notice"]);
            let media = ctx.strings(table, "media", true);
            for m in &media {
                check_media(ctx, "media", m);
            }
            NodeKind::PlayAudio {
                media,
                next: ctx.string(table, "next", false),
                recording_notice: ctx.boolean(table, "recording_notice", false),
            }
        }
        "transfer" => {
            ctx.known_fields(
                table,
                &[
                    "type",
                    "target",
                    "ring_timeout",
                    "record_call",
                    "on_failure",
                    "on_agent_hangup",
                    "channels",
                    "pause_recording",
                ],
            );
            let target = ctx.string(table, "target", true);
            if let Some(t) = &target {
                check_endpoint(ctx, "target", t);
            }
            NodeKind::Transfer {
                target: target.unwrap_or_default(),
                ring_timeout: ctx.seconds(table, "ring_timeout", 20, 600),
                record_call: table
                    .contains_key("record_call")
                    .then(|| ctx.boolean(table, "record_call", false)),
                on_failure: ctx.string(table, "on_failure", false),
                on_agent_hangup: ctx.string(table, "on_agent_hangup", false),
                dual_channel: dual_channel(ctx, table),
                pause_recording: ctx.boolean(table, "pause_recording", false),
            }
        }
        "queue" => {
            ctx.known_fields(
                table,
                &[
                    "type",
                    "agents",
                    "strategy",
                    "ring_timeout",
                    "max_wait",
                    "overflow",
                    "moh_class",
                    "record_call",
                    "on_agent_hangup",
                    "channels",
                    "pause_recording",
                ],
            );
            let agents = ctx.strings(table, "agents", true);
            for a in &agents {
                check_endpoint(ctx, "agents", a);
            }
            let strategy = ctx.choice(
                table,
                "strategy",
                &[
                    ("ringall", Strategy::RingAll),
                    ("round_robin", Strategy::RoundRobin),
                    ("longest_idle", Strategy::LongestIdle),
                ],
            );
            NodeKind::Queue {
                agents,
                strategy,
                ring_timeout: ctx.seconds(table, "ring_timeout", 15, 600),
                max_wait: ctx.seconds(table, "max_wait", 300, 86_400),
                overflow: ctx.string(table, "overflow", false),
                moh_class: ctx
                    .string(table, "moh_class", false)
                    .unwrap_or_else(|| "default".into()),
                record_call: table
                    .contains_key("record_call")
                    .then(|| ctx.boolean(table, "record_call", false)),
                on_agent_hangup: ctx.string(table, "on_agent_hangup", false),
                dual_channel: dual_channel(ctx, table),
                pause_recording: ctx.boolean(table, "pause_recording", false),
            }
        }
        "hunt_group" => {
            ctx.known_fields(
                table,
                &[
                    "type",
                    "members",
                    "mode",
                    "ring_seconds",
                    "record_call",
                    "on_failure",
                    "on_agent_hangup",
                    "channels",
                    "pause_recording",
                ],
            );
            let members = ctx.strings(table, "members", true);
            for m in &members {
                check_endpoint(ctx, "members", m);
            }
            let mode = ctx.choice(
                table,
                "mode",
                &[
                    ("sequential", HuntMode::Sequential),
                    ("simultaneous", HuntMode::Simultaneous),
                ],
            );
            NodeKind::HuntGroup {
                members,
                mode,
                ring_seconds: ctx.seconds(table, "ring_seconds", 15, 600),
                record_call: table
                    .contains_key("record_call")
                    .then(|| ctx.boolean(table, "record_call", false)),
                on_failure: ctx.string(table, "on_failure", false),
                on_agent_hangup: ctx.string(table, "on_agent_hangup", false),
                dual_channel: dual_channel(ctx, table),
                pause_recording: ctx.boolean(table, "pause_recording", false),
            }
        }
        "voicemail" => {
            ctx.known_fields(
                table,
                &[
                    "type",
                    "mailbox",
                    "greeting",
                    "beep",
                    "max_duration",
                    "max_silence",
                ],
            );
            let mailbox = ctx.string(table, "mailbox", true);
            if let Some(m) = &mailbox {
                if !m
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    ctx.err(
                        Some("mailbox"),
                        "letters, digits, '-' and '_' only (it names files)",
                    );
                }
            }
            let greeting = ctx.string(table, "greeting", false);
            if let Some(g) = &greeting {
                check_media(ctx, "greeting", g);
            }
            NodeKind::Voicemail {
                mailbox: mailbox.unwrap_or_default(),
                greeting,
                beep: ctx.boolean(table, "beep", true),
                max_duration: ctx.seconds(table, "max_duration", 120, 3600),
                max_silence: ctx.seconds(table, "max_silence", 10, 600),
            }
        }
        "hangup" => {
            ctx.known_fields(table, &["type"]);
            NodeKind::Hangup
        }
        "consent" => {
            ctx.known_fields(
                table,
                &[
                    "type",
                    "media",
                    "grant_key",
                    "decline_key",
                    "timeout",
                    "retries",
                    "on_timeout",
                    "next",
                    "on_granted",
                    "on_declined",
                ],
            );
            let media = ctx.strings(table, "media", true);
            for m in &media {
                check_media(ctx, "media", m);
            }
            let key = |ctx: &mut Ctx<'_>, field: &str, default: &str| {
                let key = ctx
                    .string(table, field, false)
                    .unwrap_or_else(|| default.to_string());
                let valid = key.len() == 1
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#');
                if !valid {
                    ctx.err(Some(field), format!("{key:?} must be one key: 0-9, * or #"));
                }
                key
            };
            let grant_key = key(ctx, "grant_key", "1");
            let decline_key = key(ctx, "decline_key", "2");
            if grant_key == decline_key {
                ctx.err(Some("decline_key"), "must differ from grant_key");
            }
            let grant_on_timeout = ctx.choice(
                table,
                "on_timeout",
                &[("declined", false), ("granted", true)],
            );
            let next = ctx.string(table, "next", false);
            let on_granted = ctx.string(table, "on_granted", false);
            let on_declined = ctx.string(table, "on_declined", false);
            if next.is_none() && (on_granted.is_none() || on_declined.is_none()) {
                ctx.err(
                    Some("next"),
                    "missing: name next, or both on_granted and on_declined",
                );
            }
            NodeKind::Consent {
                media,
                grant_key,
                decline_key,
                timeout: ctx.seconds(table, "timeout", 5, 60),
                retries: ctx.seconds(table, "retries", 2, 5),
                grant_on_timeout,
                next,
                on_granted,
                on_declined,
            }
        }
        other => {
            ctx.err(
                Some("type"),
                format!("unknown node type {other:?} (expected play_audio, transfer, queue, hunt_group, voicemail or hangup)"),
            );
            return None;
        }
    };
    let _ = id;
    Some(kind)
}

/// Parses one flow file. The flow's name is the file stem.
pub fn parse_flow(file: &Path, text: &str) -> Result<Flow, Vec<FlowError>> {
    let mut errors = Vec::new();
    let table: Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            return Err(vec![FlowError {
                file: file.to_path_buf(),
                node: None,
                field: None,
                message: match line {
                    Some(l) => format!("line {l}: {}", e.message()),
                    None => e.message().to_string(),
                },
            }]);
        }
    };
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut ctx = Ctx {
        file,
        node: None,
        errors: &mut errors,
    };
    ctx.known_fields(&table, &["flow", "nodes"]);
    let empty = Table::new();
    let head = match table.get("flow") {
        Some(Value::Table(t)) => t,
        Some(_) => {
            ctx.err(Some("flow"), "must be a table ([flow])");
            &empty
        }
        None => {
            ctx.err(Some("flow"), "missing [flow] section");
            &empty
        }
    };
    ctx.known_fields(
        head,
        &[
            "numbers",
            "start",
            "tenant",
            "project",
            "private",
            "description",
            "pause_code",
            "resume_code",
            "feature_code_leg",
            "recording_announcement",
        ],
    );
    let numbers = ctx.strings(head, "numbers", true);
    let start = ctx.string(head, "start", true).unwrap_or_default();
    let tenant = ctx
        .string(head, "tenant", false)
        .unwrap_or_else(|| "default".into());
    let project = ctx
        .string(head, "project", false)
        .unwrap_or_else(|| "default".into());
    let private = ctx.boolean(head, "private", false);
    let feature_codes = feature_codes(&mut ctx, head);
    let announces = ctx.boolean(head, "recording_announcement", true);
    let mut nodes = BTreeMap::new();
    match table.get("nodes") {
        Some(Value::Table(node_tables)) => {
            for (id, value) in node_tables {
                let mut node_ctx = Ctx {
                    file,
                    node: Some(id),
                    errors: ctx.errors,
                };
                match value {
                    Value::Table(t) => {
                        if let Some(kind) = parse_node(&mut node_ctx, id, t) {
                            nodes.insert(
                                id.clone(),
                                Node {
                                    id: id.clone(),
                                    kind,
                                },
                            );
                        }
                    }
                    _ => node_ctx.err(None, "must be a table ([nodes.<name>])"),
                }
            }
        }
        Some(_) => ctx.err(Some("nodes"), "must be a table of nodes"),
        None => ctx.err(
            Some("nodes"),
            "missing: a flow needs at least one [nodes.<name>]",
        ),
    }
    // Edges must land on nodes; parse failures of the target are reported on their own.
    let all_ids: BTreeSet<&String> = match table.get("nodes") {
        Some(Value::Table(t)) => t.keys().collect(),
        _ => BTreeSet::new(),
    };
    if !start.is_empty() && !all_ids.contains(&start) && table.get("nodes").is_some() {
        errors.push(FlowError {
            file: file.to_path_buf(),
            node: None,
            field: Some("start".into()),
            message: format!("names node {start:?}, which does not exist"),
        });
    }
    for node in nodes.values() {
        for (field, target) in node.kind.edges() {
            if !all_ids.contains(&target.to_string()) {
                errors.push(FlowError {
                    file: file.to_path_buf(),
                    node: Some(node.id.clone()),
                    field: Some(field.into()),
                    message: format!("points to node {target:?}, which does not exist"),
                });
            }
        }
    }
    if let Some(cycle) = cycle_without_wait(&nodes) {
        errors.push(FlowError {
            file: file.to_path_buf(),
            node: cycle.first().cloned(),
            field: None,
            message: format!(
                "cycle without a wait: {} (add a prompt, a queue or voicemail on the loop)",
                cycle.join(" -> ")
            ),
        });
    }
    if errors.is_empty() {
        Ok(Flow {
            name,
            file: file.to_path_buf(),
            tenant,
            project,
            private,
            numbers,
            start,
            nodes,
            feature_codes,
            announces,
        })
    } else {
        Err(errors)
    }
}

/// The flow's DTMF feature codes: both or neither, one to four of `0-9*#` each, different.
fn feature_codes(ctx: &mut Ctx<'_>, head: &Table) -> Option<FeatureCodes> {
    let pause = ctx.string(head, "pause_code", false);
    let resume = ctx.string(head, "resume_code", false);
    let leg = ctx.choice(
        head,
        "feature_code_leg",
        &[("agent", FeatureLeg::Agent), ("caller", FeatureLeg::Caller)],
    );
    let valid = |code: &str| {
        (1..=4).contains(&code.len())
            && code
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
    };
    match (pause, resume) {
        (None, None) => None,
        (Some(pause), Some(resume)) => {
            for (field, code) in [("pause_code", &pause), ("resume_code", &resume)] {
                if !valid(code) {
                    ctx.err(
                        Some(field),
                        format!("{code:?} must be 1 to 4 of the keys 0-9, * and #"),
                    );
                }
            }
            if pause == resume {
                ctx.err(Some("resume_code"), "must differ from pause_code");
            }
            Some(FeatureCodes { pause, resume, leg })
        }
        (Some(_), None) => {
            ctx.err(
                Some("resume_code"),
                "missing: pause_code needs a resume_code",
            );
            None
        }
        (None, Some(_)) => {
            ctx.err(
                Some("pause_code"),
                "missing: resume_code needs a pause_code",
            );
            None
        }
    }
}

/// A cycle through nodes none of which always waits, if any.
fn cycle_without_wait(nodes: &BTreeMap<String, Node>) -> Option<Vec<String>> {
    // Only edges between non-waiting nodes matter; find a cycle in that subgraph by DFS.
    fn visit(
        id: &str,
        nodes: &BTreeMap<String, Node>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|s| s == id) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(id.to_string());
            return Some(cycle);
        }
        if done.contains(id) {
            return None;
        }
        let node = nodes.get(id)?;
        if node.kind.always_waits() {
            return None;
        }
        stack.push(id.to_string());
        // After an agent hung up the call has taken time: not a loop that spins.
        for (_, next) in node
            .kind
            .edges()
            .into_iter()
            .filter(|e| e.0 != "on_agent_hangup")
        {
            if let Some(c) = visit(next, nodes, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(id.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for id in nodes.keys() {
        if let Some(c) = visit(id, nodes, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

pub fn parse_settings(file: &Path, text: &str) -> Result<Settings, Vec<FlowError>> {
    let mut errors = Vec::new();
    let table: Table = toml::from_str(text).map_err(|e| {
        vec![FlowError {
            file: file.to_path_buf(),
            node: None,
            field: None,
            message: e.message().to_string(),
        }]
    })?;
    let mut ctx = Ctx {
        file,
        node: None,
        errors: &mut errors,
    };
    ctx.known_fields(
        &table,
        &[
            "recording_enabled",
            "record_inbound_calls",
            "record_outbound_calls",
            "record_from_dial",
            "redaction_mode",
            "default_compliance",
            "recording_announcement",
            "recording_separation",
        ],
    );
    let recording_separation = ctx.choice(
        &table,
        "recording_separation",
        &[
            ("per_call", RecordingSeparation::PerCall),
            ("per_segment", RecordingSeparation::PerSegment),
        ],
    );
    let redaction_mode = ctx.choice(
        &table,
        "redaction_mode",
        &[("mute", RedactMode::Mute), ("pause", RedactMode::Pause)],
    );
    let default_compliance = ctx.choice(
        &table,
        "default_compliance",
        &[
            ("permitted", DefaultCompliance::Permitted),
            ("unknown", DefaultCompliance::Unknown),
        ],
    );
    let recording_announcement = ctx.strings(&table, "recording_announcement", false);
    for media in &recording_announcement {
        check_media(&mut ctx, "recording_announcement", media);
    }
    let settings = Settings {
        recording_announcement,
        recording_separation,
        default_compliance,
        recording_enabled: ctx.boolean(&table, "recording_enabled", true),
        record_inbound_calls: ctx.boolean(&table, "record_inbound_calls", false),
        record_outbound_calls: ctx.boolean(&table, "record_outbound_calls", false),
        record_from_dial: ctx.boolean(&table, "record_from_dial", false),
        redaction_mode,
    };
    if errors.is_empty() {
        Ok(settings)
    } else {
        Err(errors)
    }
}

/// Reads every `*.toml` of `dir`. Returns each file's parse result (flow files by path) and the
/// settings result.
pub struct FolderRead {
    pub flows: BTreeMap<PathBuf, Result<Flow, Vec<FlowError>>>,
    pub settings: Option<Result<Settings, Vec<FlowError>>>,
}

pub fn read_folder(dir: &Path) -> Result<FolderRead, FlowError> {
    let entries = std::fs::read_dir(dir).map_err(|e| FlowError {
        file: dir.to_path_buf(),
        node: None,
        field: None,
        message: format!("cannot read the dialplans folder: {e}"),
    })?;
    let mut flows = BTreeMap::new();
    let mut settings = None;
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
        .collect();
    paths.sort();
    for path in paths {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                let error = FlowError {
                    file: path.clone(),
                    node: None,
                    field: None,
                    message: format!("cannot read: {e}"),
                };
                if path.file_name().is_some_and(|n| n == SETTINGS_FILE) {
                    settings = Some(Err(vec![error]));
                } else {
                    flows.insert(path, Err(vec![error]));
                }
                continue;
            }
        };
        if path.file_name().is_some_and(|n| n == SETTINGS_FILE) {
            settings = Some(parse_settings(&path, &text));
        } else {
            flows.insert(path.clone(), parse_flow(&path, &text));
        }
    }
    Ok(FolderRead { flows, settings })
}

/// Builds a set from per-file flows, refusing numbers claimed twice (the file read later loses).
pub fn assemble(flows: Vec<Flow>, settings: Settings) -> (FlowSet, Vec<FlowError>) {
    let mut set = FlowSet {
        settings,
        ..FlowSet::default()
    };
    let mut errors = Vec::new();
    for flow in flows {
        let clash: Vec<&String> = flow
            .numbers
            .iter()
            .filter(|n| set.by_number.contains_key(*n))
            .collect();
        if let Some(number) = clash.first() {
            errors.push(FlowError {
                file: flow.file.clone(),
                node: None,
                field: Some("numbers".into()),
                message: format!(
                    "number {number:?} is already used by flow {:?}",
                    set.by_number[*number]
                ),
            });
            continue;
        }
        for n in &flow.numbers {
            set.by_number.insert(n.clone(), flow.name.clone());
        }
        set.flows.insert(flow.name.clone(), Arc::new(flow));
    }
    (set, errors)
}

/// `check`: every problem of the folder, or the valid set.
pub fn check_folder(dir: &Path) -> Result<FlowSet, Vec<FlowError>> {
    let read = read_folder(dir).map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    let mut good = Vec::new();
    for result in read.flows.into_values() {
        match result {
            Ok(flow) => good.push(flow),
            Err(mut e) => errors.append(&mut e),
        }
    }
    let settings = match read.settings {
        Some(Ok(s)) => s,
        Some(Err(mut e)) => {
            errors.append(&mut e);
            Settings::default()
        }
        None => Settings::default(),
    };
    let (set, mut clashes) = assemble(good, settings);
    errors.append(&mut clashes);
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Flow, Vec<FlowError>> {
        parse_flow(Path::new("dialplans/support.toml"), text)
    }

    const GOOD: &str = r#"
[flow]
numbers = ["100"]
start = "hello"

[nodes.hello]
type = "play_audio"
media = ["sound:hello-world"]
next = "desk"

[nodes.desk]
type = "transfer"
target = "Local/201@agents"
record_call = true
on_failure = "vm"

[nodes.vm]
type = "voicemail"
mailbox = "support"
"#;

    #[test]
    fn a_good_flow_parses_with_defaults() {
        let flow = parse(GOOD).expect("valid");
        assert_eq!(flow.name, "support");
        assert_eq!(flow.tenant, "default");
        assert_eq!(flow.nodes["desk"].kind.record_call(), Some(true));
        match &flow.nodes["vm"].kind {
            NodeKind::Voicemail {
                beep,
                max_duration,
                max_silence,
                ..
            } => {
                assert!(*beep);
                assert_eq!((*max_duration, *max_silence), (120, 10));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_consent_node_needs_its_edges_and_two_different_keys() {
        let node = |extra: &str| {
            format!(
                "[flow]\nnumbers = [\"100\"]\nstart = \"ask\"\n[nodes.ask]\ntype = \"consent\"\nmedia = [\"sound:hello-world\"]\n{extra}\n[nodes.desk]\ntype = \"hangup\"\n"
            )
        };
        let flow = parse(&node("next = \"desk\"")).expect("valid");
        match &flow.nodes["ask"].kind {
            NodeKind::Consent {
                grant_key,
                decline_key,
                timeout,
                retries,
                grant_on_timeout,
                ..
            } => assert_eq!(
                (
                    grant_key.as_str(),
                    decline_key.as_str(),
                    *timeout,
                    *retries,
                    *grant_on_timeout
                ),
                ("1", "2", 5, 2, false)
            ),
            other => panic!("{other:?}"),
        }
        for (extra, field) in [
            ("on_granted = \"desk\"", "next"),
            ("next = \"desk\"\ngrant_key = \"2\"", "decline_key"),
            ("next = \"desk\"\ngrant_key = \"12\"", "grant_key"),
            ("next = \"desk\"\non_timeout = \"maybe\"", "on_timeout"),
            ("next = \"nowhere\"", "next"),
        ] {
            let errors = parse(&node(extra)).expect_err(extra);
            assert!(
                errors.iter().any(|e| e.field.as_deref() == Some(field)),
                "{extra}: {errors:?}"
            );
        }
    }

    #[test]
    fn feature_codes_come_in_pairs_of_keypad_keys() {
        let with =
            |extra: &str| GOOD.replace("start = \"hello\"", &format!("start = \"hello\"\n{extra}"));
        let flow = parse(&with("pause_code = \"*1\"\nresume_code = \"*2\"")).expect("valid");
        assert_eq!(
            flow.feature_codes,
            Some(FeatureCodes {
                pause: "*1".into(),
                resume: "*2".into(),
                leg: FeatureLeg::Agent
            })
        );
        for (extra, field) in [
            ("pause_code = \"*1\"", "resume_code"),
            ("pause_code = \"*1\"\nresume_code = \"*1\"", "resume_code"),
            ("pause_code = \"12345\"\nresume_code = \"*2\"", "pause_code"),
            (
                "pause_code = \"*1\"\nresume_code = \"*2\"\nfeature_code_leg = \"both\"",
                "feature_code_leg",
            ),
        ] {
            let errors = parse(&with(extra)).expect_err(extra);
            assert!(
                errors.iter().any(|e| e.field.as_deref() == Some(field)),
                "{extra}: {errors:?}"
            );
        }
    }

    #[test]
    fn recording_separation_is_one_of_two_named_values() {
        let file = Path::new("settings.toml");
        let default = parse_settings(file, "").expect("empty settings");
        assert_eq!(default.recording_separation, RecordingSeparation::PerCall);
        let set = parse_settings(file, "recording_separation = \"per_segment\"\n").expect("valid");
        assert_eq!(set.recording_separation, RecordingSeparation::PerSegment);
        let errors = parse_settings(file, "recording_separation = \"stereo\"\n").expect_err("bad");
        assert_eq!(errors[0].field.as_deref(), Some("recording_separation"));
    }

    #[test]
    fn on_agent_hangup_must_name_a_node_and_may_loop_back() {
        let flow = |edge: &str| {
            format!("[flow]\nnumbers = [\"100\"]\nstart = \"desk\"\n[nodes.desk]\ntype = \"transfer\"\ntarget = \"PJSIP/201\"\non_agent_hangup = \"{edge}\"\n")
        };
        // Back to the same desk after each agent: a loop, but one that waits on people.
        parse_flow(Path::new("desk.toml"), &flow("desk")).expect("a desk that loops back");
        let errors = parse_flow(Path::new("desk.toml"), &flow("nowhere")).expect_err("dangling");
        assert_eq!(
            errors[0].field.as_deref(),
            Some("on_agent_hangup"),
            "{errors:?}"
        );
    }

    #[test]
    fn errors_name_file_node_and_field_and_all_are_reported() {
        let text = r#"
[flow]
numbers = ["100"]
start = "desk"

[nodes.desk]
type = "transfer"
on_failure = "nowhere"

[nodes.odd]
type = "conference"

[nodes.loud]
type = "play_audio"
media = ["http://x"]
"#;
        let errors = parse(text).expect_err("invalid");
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        let joined = shown.join("\n");
        assert!(
            joined.contains(r#"dialplans/support.toml: node "desk", field "target": missing"#),
            "{joined}"
        );
        assert!(
            joined.contains(r#"node "desk", field "on_failure": points to node "nowhere""#),
            "{joined}"
        );
        assert!(
            joined.contains(r#"node "odd", field "type": unknown node type "conference""#),
            "{joined}"
        );
        assert!(joined.contains(r#"node "loud", field "media""#), "{joined}");
        assert_eq!(errors.len(), 4, "{joined}");
    }

    #[test]
    fn a_cycle_without_a_wait_is_refused_but_one_through_a_prompt_is_fine() {
        let spin = r#"
[flow]
numbers = ["1"]
start = "a"
[nodes.a]
type = "transfer"
target = "PJSIP/a"
on_failure = "b"
[nodes.b]
type = "hunt_group"
members = ["PJSIP/b"]
on_failure = "a"
"#;
        let errors = parse(spin).expect_err("spins");
        assert!(
            errors[0]
                .message
                .contains("cycle without a wait: a -> b -> a"),
            "{errors:?}"
        );
        let waits = spin.replace("on_failure = \"a\"", "on_failure = \"sorry\"")
            + "[nodes.sorry]\ntype = \"play_audio\"\nmedia = [\"sound:vm-goodbye\"]\nnext = \"a\"\n";
        parse(&waits).expect("a prompt on the loop is a wait");
    }

    #[test]
    fn duplicate_numbers_across_files_are_refused() {
        let a = parse(GOOD).expect("valid");
        let mut b = parse(GOOD).expect("valid");
        b.name = "other".into();
        b.file = PathBuf::from("dialplans/other.toml");
        let (set, errors) = assemble(vec![a, b], Settings::default());
        assert_eq!(set.flows.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            r#"dialplans/other.toml, field "numbers": number "100" is already used by flow "support""#
        );
    }

    #[test]
    fn syntax_errors_give_the_line() {
        let errors = parse("[flow]\nnumbers = [\n").expect_err("broken");
        assert!(errors[0].message.starts_with("line "), "{errors:?}");
    }
}
