//! `settings.toml`: the deployment's recording switches, announcement, redaction and separation, as data.

use crate::library::Compliance;

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
    /// Whether the recording of an inbound call may be paused by people (the API, the page's
    /// Pause button, the flow's feature codes); a flow or a node may say otherwise. A node's
    /// own `pause_recording` redacts whatever this says.
    pub redaction_inbound_calls: bool,
    /// The same for direct outbound calls (`POST /api/calls`).
    pub redaction_outbound_calls: bool,
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
            redaction_inbound_calls: true,
            redaction_outbound_calls: true,
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

pub const SETTINGS_FILE: &str = "settings.toml";

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
