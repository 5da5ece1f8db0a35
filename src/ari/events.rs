//! Every message model of ARI's `events.json` as a typed variant of [`Event`].
//!
//! A message whose `type` this build does not know parses as [`Event::Unknown`]; the stream logs
//! and skips it, so a newer Asterisk never breaks the app.

use serde::{Deserialize, Serialize};

use super::models::*;

macro_rules! ari_events {
    ($(
        $(#[$doc:meta])*
        $name:ident { $( $(#[$fattr:meta])* $field:ident : $ty:ty ),* $(,)? }
    )*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
            pub struct $name {
                $( $(#[$fattr])* pub $field: $ty, )*
                /// When Asterisk raised the event (`2026-11-21T22:42:10.526+0000`).
                #[serde(default)]
                pub timestamp: String,
                /// The Stasis application the event is for.
                #[serde(default)]
                pub application: String,
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub asterisk_id: Option<String>,
            }
        )*

        /// One message from `/ari/events`, tagged by its `type` field.
        // Variants differ in size (transfers carry many channels); events travel boxed
        // (`Notice::Event(Box<Event>)`), so the enum's size only matters on the stack.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type")]
        pub enum Event {
            $( $name($name), )*
            /// A `type` this build does not know.
            #[serde(other)]
            Unknown,
        }

        impl Event {
            /// The `type` string on the wire.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $( Event::$name(_) => stringify!($name), )*
                    Event::Unknown => "Unknown",
                }
            }

            /// When Asterisk raised the event.
            pub fn timestamp(&self) -> Option<&str> {
                match self {
                    $( Event::$name(e) => Some(e.timestamp.as_str()), )*
                    Event::Unknown => None,
                }
            }

            /// The Asterisk instance that raised the event.
            pub fn asterisk_id(&self) -> Option<&str> {
                match self {
                    $( Event::$name(e) => e.asterisk_id.as_deref(), )*
                    Event::Unknown => None,
                }
            }

            /// Every known `type` string, for metrics and tests.
            pub const TYPE_NAMES: &'static [&'static str] = &[ $( stringify!($name), )* ];
        }
    };
}

ari_events! {
    /// A request was missing required parameters.
    MissingParams { params: Vec<String> }
    DeviceStateChanged { device_state: DeviceState }
    PlaybackStarted { playback: Playback }
    PlaybackContinuing { playback: Playback }
    PlaybackFinished { playback: Playback }
    RecordingStarted { recording: LiveRecording }
    RecordingFinished { recording: LiveRecording }
    /// Can follow a 201 from a record request: the 2xx promised nothing.
    RecordingFailed { recording: LiveRecording }
    ApplicationMoveFailed { channel: Channel, destination: String, args: Vec<String> }
    ApplicationRegistered {}
    ApplicationUnregistered {}
    /// Another websocket took over this application: this one will get no more events.
    ApplicationReplaced {}
    BridgeCreated { bridge: Bridge }
    BridgeDestroyed { bridge: Bridge }
    BridgeMerged { bridge: Bridge, bridge_from: Bridge }
    BridgeVideoSourceChanged {
        bridge: Bridge,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old_video_source_id: Option<String>,
    }
    BridgeBlindTransfer {
        channel: Channel,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replace_channel: Option<Channel>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transferee: Option<Channel>,
        exten: String,
        context: String,
        result: String,
        is_external: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bridge: Option<Bridge>,
    }
    BridgeAttendedTransfer {
        transferer_first_leg: Channel,
        transferer_second_leg: Channel,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replace_channel: Option<Channel>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transferee: Option<Channel>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transfer_target: Option<Channel>,
        result: String,
        is_external: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transferer_first_leg_bridge: Option<Bridge>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transferer_second_leg_bridge: Option<Bridge>,
        destination_type: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        destination_bridge: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        destination_application: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        destination_link_first_leg: Option<Channel>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        destination_link_second_leg: Option<Channel>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        destination_threeway_channel: Option<Channel>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        destination_threeway_bridge: Option<Bridge>,
    }
    ChannelCreated { channel: Channel }
    ChannelDestroyed {
        cause: i64,
        cause_txt: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tech_cause: Option<i64>,
        channel: Channel,
    }
    ChannelEnteredBridge {
        bridge: Bridge,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<Channel>,
    }
    ChannelLeftBridge { bridge: Bridge, channel: Channel }
    ChannelStateChange { channel: Channel }
    ChannelDtmfReceived { digit: String, duration_ms: i64, channel: Channel }
    ChannelDialplan { channel: Channel, dialplan_app: String, dialplan_app_data: String }
    ChannelCallerId { caller_presentation: i64, caller_presentation_txt: String, channel: Channel }
    ChannelUserevent {
        eventname: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<Channel>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bridge: Option<Bridge>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<Endpoint>,
        userevent: serde_json::Value,
    }
    ChannelHangupRequest {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tech_cause: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        soft: Option<bool>,
        channel: Channel,
    }
    ChannelVarset {
        variable: String,
        value: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<Channel>,
    }
    ChannelToneDetected { channel: Channel }
    ChannelTalkingStarted { channel: Channel }
    ChannelTalkingFinished { channel: Channel, duration: i64 }
    ChannelHold {
        channel: Channel,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        musicclass: Option<String>,
    }
    ChannelUnhold { channel: Channel }
    ContactStatusChange { endpoint: Endpoint, contact_info: ContactInfo }
    PeerStatusChange { endpoint: Endpoint, peer: Peer }
    EndpointStateChange { endpoint: Endpoint }
    /// A dial's progress; `dialstatus` is empty while ringing, then `ANSWER`, `BUSY`, `NOANSWER`...
    Dial {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caller: Option<Channel>,
        peer: Channel,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        forward: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        forwarded: Option<Channel>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dialstring: Option<String>,
        dialstatus: String,
    }
    StasisEnd { channel: Channel }
    /// A channel entered the app; `args` are the `Stasis(app,args...)` arguments.
    StasisStart {
        args: Vec<String>,
        channel: Channel,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replace_channel: Option<Channel>,
    }
    TextMessageReceived {
        message: TextMessage,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<Endpoint>,
    }
    ChannelConnectedLine { channel: Channel }
    ChannelTransfer {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<String>,
        refer_to: ReferTo,
        referred_by: ReferredBy,
    }
    RESTResponse {
        transaction_id: String,
        request_id: String,
        status_code: i64,
        reason_phrase: String,
        uri: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content_type: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_body: Option<String>,
    }
    CallBroadcast {
        channel: Channel,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caller: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        called: Option<String>,
    }
    CallClaimed { channel: Channel, winner_app: String }
}

/// Just the `type` of a message: used to name an unknown event in the log.
#[derive(Deserialize)]
struct TypeOnly {
    #[serde(rename = "type")]
    kind: String,
}

/// Why a websocket text frame was not an event.
#[derive(Debug, thiserror::Error)]
#[error("malformed ARI event: {0}")]
pub struct EventParseError(#[from] serde_json::Error);

/// A parsed frame: the event, or the name of an event type this build does not know.
#[derive(Debug)]
pub enum Parsed {
    Known(Box<Event>),
    Unknown(String),
}

/// Parses one websocket text frame.
pub fn parse_event(text: &str) -> Result<Parsed, EventParseError> {
    match serde_json::from_str::<Event>(text)? {
        Event::Unknown => {
            let kind = serde_json::from_str::<TypeOnly>(text)?.kind;
            Ok(Parsed::Unknown(kind))
        }
        event => Ok(Parsed::Known(Box::new(event))),
    }
}

/// The channel an event is about, by reference (`as_ref, &`) or mutably (`as_mut, &mut`): one
/// list of the events that name a channel.
macro_rules! channel_of {
    ($event:expr, $optional:ident, $($borrow:tt)+) => {
        match $event {
            Event::StasisStart(e) => Some($($borrow)+ e.channel),
            Event::StasisEnd(e) => Some($($borrow)+ e.channel),
            Event::ChannelStateChange(e) => Some($($borrow)+ e.channel),
            Event::ChannelDestroyed(e) => Some($($borrow)+ e.channel),
            Event::ChannelHangupRequest(e) => Some($($borrow)+ e.channel),
            Event::ChannelEnteredBridge(e) => e.channel.$optional(),
            Event::ChannelLeftBridge(e) => Some($($borrow)+ e.channel),
            Event::ChannelDtmfReceived(e) => Some($($borrow)+ e.channel),
            Event::ChannelDialplan(e) => Some($($borrow)+ e.channel),
            Event::ChannelCallerId(e) => Some($($borrow)+ e.channel),
            Event::ChannelVarset(e) => e.channel.$optional(),
            Event::ChannelConnectedLine(e) => Some($($borrow)+ e.channel),
            Event::ChannelCreated(e) => Some($($borrow)+ e.channel),
            Event::ChannelHold(e) => Some($($borrow)+ e.channel),
            Event::ChannelUnhold(e) => Some($($borrow)+ e.channel),
            Event::ChannelTalkingStarted(e) => Some($($borrow)+ e.channel),
            Event::ChannelTalkingFinished(e) => Some($($borrow)+ e.channel),
            Event::ChannelToneDetected(e) => Some($($borrow)+ e.channel),
            Event::Dial(e) => Some($($borrow)+ e.peer),
            _ => None,
        }
    };
}

impl Event {
    /// The channel the event is about, when it is about one.
    pub fn channel(&self) -> Option<&Channel> {
        channel_of!(self, as_ref, &)
    }

    fn channel_mut(&mut self) -> Option<&mut Channel> {
        channel_of!(self, as_mut, &mut)
    }

    /// Calls channel `from` by `to` wherever the event names it: its channel, a dial's caller,
    /// a bridge's members. The app gives channels it originates its own names, while Asterisk
    /// chose their ids.
    pub fn rename_channel(&mut self, from: &str, to: &str) {
        if let Some(channel) = self.channel_mut() {
            if channel.id == from {
                channel.id = to.to_string();
            }
        }
        let bridge = match self {
            Event::ChannelEnteredBridge(e) => Some(&mut e.bridge),
            Event::ChannelLeftBridge(e) => Some(&mut e.bridge),
            Event::Dial(e) => {
                if let Some(caller) = e.caller.as_mut().filter(|c| c.id == from) {
                    caller.id = to.to_string();
                }
                None
            }
            _ => None,
        };
        for member in bridge.into_iter().flat_map(|b| b.channels.iter_mut()) {
            if member == from {
                *member = to.to_string();
            }
        }
    }

    /// The live recording the event is about, when it is about one.
    pub fn recording(&self) -> Option<&LiveRecording> {
        match self {
            Event::RecordingStarted(e) => Some(&e.recording),
            Event::RecordingFinished(e) => Some(&e.recording),
            Event::RecordingFailed(e) => Some(&e.recording),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_type_is_named_not_fatal() {
        let parsed = parse_event(r#"{"type":"FancyNewEvent","application":"recorder","x":1}"#)
            .expect("parses");
        match parsed {
            Parsed::Unknown(name) => assert_eq!(name, "FancyNewEvent"),
            Parsed::Known(e) => panic!("expected unknown, got {e:?}"),
        }
    }

    /// The app's name for a channel Asterisk named: wherever a real Asterisk's event names it.
    #[test]
    fn a_channel_is_renamed_wherever_the_event_names_it() {
        let events: Vec<Event> = include_str!("../../tests/fixtures/traces/transfer.jsonl")
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|record| record["kind"] == "event")
            .filter_map(|record| serde_json::from_value(record["event"].clone()).ok())
            .collect();
        let joined = events
            .iter()
            .rfind(|e| e.type_name() == "ChannelEnteredBridge")
            .expect("the agent joining");
        let mut renamed = joined.clone();
        renamed.rename_channel("1795300930.36", "call_L2");
        let Event::ChannelEnteredBridge(e) = &renamed else {
            panic!("same event")
        };
        assert_eq!(e.bridge.channels, ["1795300930.35", "call_L2"]);
        assert_eq!(renamed.channel().map(|c| c.id.as_str()), Some("call_L2"));
        let mut dial = events
            .iter()
            .find(|e| e.type_name() == "Dial")
            .expect("a dial")
            .clone();
        dial.rename_channel("1795300930.36", "call_L2");
        assert_eq!(dial.channel().map(|c| c.id.as_str()), Some("call_L2"));
        // Another channel's name stays.
        let mut untouched = joined.clone();
        untouched.rename_channel("9.9", "call_L3");
        assert_eq!(&untouched, joined);
    }

    #[test]
    fn malformed_frame_is_an_error() {
        assert!(parse_event("{not json").is_err());
        assert!(parse_event(r#"{"type":"StasisStart","args":"oops"}"#).is_err());
    }

    #[test]
    fn recording_failed_keeps_its_cause() {
        let text = r#"{"type":"RecordingFailed","timestamp":"2026-11-21T23:19:37.870+0000","recording":{"name":"fail-1","format":"wav","state":"failed","target_uri":"channel:1.1","cause":"Cannot record channel while in bridge"},"asterisk_id":"02:fc:00:00:00:01","application":"recorder"}"#;
        let Parsed::Known(event) = parse_event(text).expect("parses") else {
            panic!("known type")
        };
        let recording = event.recording().expect("has recording");
        assert_eq!(
            recording.cause.as_deref(),
            Some("Cannot record channel while in bridge")
        );
        assert_eq!(event.type_name(), "RecordingFailed");
    }
}
