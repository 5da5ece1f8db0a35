//! The call machine, node by node, through `handle()` with chosen times; the helpers every
//! group of tests shares.

use super::*;

mod dialled;
mod prompts;
mod recording;
use crate::ari::events::{ChannelEnteredBridge, StasisEnd, StasisStart};
use crate::ari::models::{Bridge, CallerId, Channel, DialplanCep};
use crate::flows::definition::parse_flow;
use std::path::Path;

pub(super) fn channel(id: &str) -> Channel {
    Channel {
        id: id.into(),
        name: format!("PJSIP/{id}"),
        state: "Up".into(),
        protocol_id: String::new(),
        caller: CallerId::default(),
        connected: CallerId::default(),
        accountcode: String::new(),
        dialplan: DialplanCep::default(),
        creationtime: String::new(),
        language: "en".into(),
        channelvars: None,
        caller_rdnis: None,
        tenantid: None,
    }
}

pub(super) fn flow(record: bool) -> Arc<Flow> {
    let text = format!(
        "[flow]\nnumbers = [\"100\"]\nstart = \"desk\"\n[nodes.desk]\ntype = \"transfer\"\ntarget = \"PJSIP/201\"\nrecord_call = {record}\n"
    );
    Arc::new(parse_flow(Path::new("support.toml"), &text).expect("valid"))
}

pub(super) fn commands(out: &[Output]) -> Vec<&Command> {
    out.iter()
        .filter_map(|o| match o {
            Output::Command(c) => Some(c),
            _ => None,
        })
        .collect()
}

pub(super) fn entered(bridge: &str, channels: &[&str], who: &str) -> Event {
    Event::ChannelEnteredBridge(ChannelEnteredBridge {
        bridge: Bridge {
            id: bridge.into(),
            technology: "simple_bridge".into(),
            bridge_type: "mixing".into(),
            bridge_class: "stasis".into(),
            creator: "Stasis".into(),
            name: String::new(),
            channels: channels.iter().map(|c| c.to_string()).collect(),
            creationtime: String::new(),
            video_mode: None,
            video_source_id: None,
            bridgevars: None,
        },
        channel: Some(channel(who)),
        timestamp: String::new(),
        application: "recorder".into(),
        asterisk_id: None,
    })
}

pub(super) fn stasis_start(id: &str) -> Event {
    Event::StasisStart(StasisStart {
        args: vec!["leg".into(), "c1".into()],
        channel: channel(id),
        replace_channel: None,
        timestamp: String::new(),
        application: "recorder".into(),
        asterisk_id: None,
    })
}

pub(super) fn stasis_end(id: &str) -> Event {
    Event::StasisEnd(StasisEnd {
        channel: channel(id),
        timestamp: String::new(),
        application: "recorder".into(),
        asterisk_id: None,
    })
}

pub(super) fn flow_of(text: &str) -> Arc<Flow> {
    Arc::new(parse_flow(Path::new("sales.toml"), text).expect("valid"))
}

/// A call `c1` of the flow `text`, started: the call, the agents' book and what it asked for.
pub(super) fn started(text: &str) -> (Call, AgentBook, Vec<Output>) {
    let mut agents = AgentBook::default();
    let mut call = Call::inbound("c1", "Alice", "5551001", flow_of(text));
    let out = call.handle(Input::Start, 0, &mut agents);
    (call, agents, out)
}

/// An event as Asterisk sends it, from its JSON.
pub(super) fn event(json: serde_json::Value) -> Event {
    serde_json::from_value(json).expect("event")
}

pub(super) fn channel_json(id: &str) -> serde_json::Value {
    serde_json::to_value(channel(id)).expect("channel")
}

pub(super) fn dial_ended(peer: &str, status: &str) -> Event {
    event(serde_json::json!({
        "type": "Dial", "timestamp": "", "application": "recorder",
        "peer": channel_json(peer), "dialstatus": status, "dialstring": "201"
    }))
}

/// The endpoints originated by `out`, with the leg ids the call gave them.
pub(super) fn originated(out: &[Output]) -> Vec<(String, String)> {
    commands(out)
        .into_iter()
        .filter_map(|c| match c {
            Command::Originate {
                channel, endpoint, ..
            } => Some((channel.clone(), endpoint.clone())),
            _ => None,
        })
        .collect()
}

/// A call of `flow_text` (one desk at PJSIP/201) bridged with its agent, `c1_L2`, and
/// recorded: the outputs of the agent answering.
pub(super) fn bridged(flow_text: &str) -> (Call, AgentBook, Vec<Output>) {
    let flow = Arc::new(parse_flow(Path::new("support.toml"), flow_text).expect("valid"));
    let mut agents = AgentBook::default();
    let mut call = Call::inbound("c1", "Alice", "5551001", flow);
    call.handle(Input::Start, 0, &mut agents);
    let out = call.handle(Input::Event(&stasis_start("c1_L2")), 10, &mut agents);
    call.handle(
        Input::Event(&entered("c1_B1", &["c1", "c1_L2"], "c1_L2")),
        20,
        &mut agents,
    );
    (call, agents, out)
}

pub(super) fn playback_finished(playback: &str) -> Event {
    event(serde_json::json!({
        "type": "PlaybackFinished", "timestamp": "", "application": "recorder",
        "playback": {"id": playback, "media_uri": "sound:x", "target_uri": "channel:c1", "state": "done"}
    }))
}

pub(super) fn recording_finished(name: &str, target: &str) -> Event {
    event(serde_json::json!({
        "type": "RecordingFinished", "timestamp": "", "application": "recorder",
        "recording": {"name": name, "format": "ulaw", "state": "done", "target_uri": target, "duration": 12}
    }))
}

pub(super) fn dtmf(channel: &str, digit: &str) -> Event {
    event(serde_json::json!({
        "type": "ChannelDtmfReceived", "timestamp": "", "application": "recorder",
        "digit": digit, "duration_ms": 120, "channel": channel_json(channel)
    }))
}

/// The prompts `out` starts, as (playback id, media).
pub(super) fn plays(out: &[Output]) -> Vec<(String, String)> {
    commands(out)
        .into_iter()
        .filter_map(|c| match c {
            Command::Play {
                playback, media, ..
            } => Some((playback.clone(), media.clone())),
            _ => None,
        })
        .collect()
}

pub(super) fn hung_up(out: &[Output], channel: &str) -> bool {
    commands(out)
        .iter()
        .any(|c| matches!(c, Command::Hangup { channel: ch } if ch == channel))
}
