//! What a flow is once read: its nodes and their kinds, feature codes, errors, the set of flows.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::settings::Settings;

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
        /// The greeting says the message is recorded: a message left after it is consent by
        /// conduct (`implied`).
        greeting_discloses_recording: bool,
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
    pub(super) fn always_waits(&self) -> bool {
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
    /// Whether its recordings are transcribed after the call (true unless the flow says
    /// `transcribe = false`, e.g. a health line that may not be).
    pub transcribe: bool,
    /// The language its calls are in (`language = "de"`); None: the deployment's.
    pub language: Option<String>,
    /// Whether people may pause its calls' recordings (`redaction = false`: never); None: the
    /// deployment's `redaction_inbound_calls`.
    pub redaction: Option<bool>,
    /// The same said by a node (`[nodes.<id>] redaction`), which wins while the call is there.
    pub node_redaction: BTreeMap<String, bool>,
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
