//! The call machine, node by node, through `handle()` with chosen times.

use super::*;
use crate::ari::events::{ChannelEnteredBridge, StasisEnd, StasisStart};
use crate::ari::models::{Bridge, CallerId, Channel, DialplanCep};
use crate::flows::definition::parse_flow;
use std::path::Path;

fn channel(id: &str) -> Channel {
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

fn flow(record: bool) -> Arc<Flow> {
    let text = format!(
        "[flow]\nnumbers = [\"100\"]\nstart = \"desk\"\n[nodes.desk]\ntype = \"transfer\"\ntarget = \"PJSIP/201\"\nrecord_call = {record}\n"
    );
    Arc::new(parse_flow(Path::new("support.toml"), &text).expect("valid"))
}

fn commands(out: &[Output]) -> Vec<&Command> {
    out.iter()
        .filter_map(|o| match o {
            Output::Command(c) => Some(c),
            _ => None,
        })
        .collect()
}

fn entered(bridge: &str, channels: &[&str], who: &str) -> Event {
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

fn stasis_start(id: &str) -> Event {
    Event::StasisStart(StasisStart {
        args: vec!["leg".into(), "c1".into()],
        channel: channel(id),
        replace_channel: None,
        timestamp: String::new(),
        application: "recorder".into(),
        asterisk_id: None,
    })
}

fn stasis_end(id: &str) -> Event {
    Event::StasisEnd(StasisEnd {
        channel: channel(id),
        timestamp: String::new(),
        application: "recorder".into(),
        asterisk_id: None,
    })
}

fn flow_of(text: &str) -> Arc<Flow> {
    Arc::new(parse_flow(Path::new("sales.toml"), text).expect("valid"))
}

/// A call `c1` of the flow `text`, started: the call, the agents' book and what it asked for.
fn started(text: &str) -> (Call, AgentBook, Vec<Output>) {
    let mut agents = AgentBook::default();
    let mut call = Call::inbound("c1", "Alice", "5551001", flow_of(text));
    let out = call.handle(Input::Start, 0, &mut agents);
    (call, agents, out)
}

/// An event as Asterisk sends it, from its JSON.
fn event(json: serde_json::Value) -> Event {
    serde_json::from_value(json).expect("event")
}

fn channel_json(id: &str) -> serde_json::Value {
    serde_json::to_value(channel(id)).expect("channel")
}

fn dial_ended(peer: &str, status: &str) -> Event {
    event(serde_json::json!({
        "type": "Dial", "timestamp": "", "application": "recorder",
        "peer": channel_json(peer), "dialstatus": status, "dialstring": "201"
    }))
}

/// The endpoints originated by `out`, with the leg ids the call gave them.
fn originated(out: &[Output]) -> Vec<(String, String)> {
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

/// Issue 10: a sequential hunt group rings its members one after the other; a busy member
/// passes the call on; the one who answers is bridged and recorded.
#[test]
fn a_sequential_hunt_group_passes_a_busy_member_on() {
    let (mut call, mut agents, out) = started(
        "[flow]\nnumbers = [\"400\"]\nstart = \"team\"\n[nodes.team]\ntype = \"hunt_group\"\nmode = \"sequential\"\nmembers = [\"PJSIP/201\", \"PJSIP/202\"]\nring_seconds = 15\nrecord_call = true\n",
    );
    let first = originated(&out);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].1, "PJSIP/201");
    let out = call.handle(
        Input::Event(&dial_ended(&first[0].0, "BUSY")),
        100,
        &mut agents,
    );
    let second = originated(&out);
    assert_eq!(second.len(), 1, "{out:?}");
    assert_eq!(second[0].1, "PJSIP/202");
    let out = call.handle(Input::Event(&stasis_start(&second[0].0)), 200, &mut agents);
    let recorded = recorded_row(&out);
    let row = recorded.expect("recorded once the member is added");
    assert_eq!(
        (row.callee.as_str(), row.node_type),
        ("PJSIP/202", Some(crate::library::NodeType::HuntGroup))
    );
    assert_eq!(call.live_view().callee.as_deref(), Some("PJSIP/202"));
}

/// The caller hanging up while a member rings ends everything the call made: the ringing
/// leg is hung up, the bridge destroyed, the agent free again.
#[test]
fn a_caller_hanging_up_while_a_member_rings_leaves_nothing_behind() {
    let (mut call, mut agents, out) = started(
        "[flow]\nnumbers = [\"400\"]\nstart = \"team\"\n[nodes.team]\ntype = \"hunt_group\"\nmode = \"simultaneous\"\nmembers = [\"PJSIP/201\", \"PJSIP/202\"]\nrecord_call = true\n",
    );
    let legs = originated(&out);
    assert_eq!(legs.len(), 2, "all members ring at once");
    let out = call.handle(Input::Event(&stasis_end("c1")), 500, &mut agents);
    let cmds = commands(&out);
    for (leg, _) in &legs {
        assert!(
            cmds.iter()
                .any(|c| matches!(c, Command::Hangup { channel } if channel == leg)),
            "{leg} hung up: {cmds:?}"
        );
    }
    assert!(cmds
        .iter()
        .any(|c| matches!(c, Command::DestroyBridge { .. })));
    assert!(!out.iter().any(|o| matches!(o, Output::RecordingStarted(_))));
    assert_eq!(out.last(), Some(&Output::Finished));
    assert!(!agents.is_busy("PJSIP/201") && !agents.is_busy("PJSIP/202"));
}

/// A queue offers no agent busy on another call; when `max_wait` runs out the caller goes
/// to `overflow` (here a voicemail box, recorded as mu-law on the caller's channel).
#[test]
fn a_queue_skips_busy_agents_and_overflows_at_max_wait() {
    let flow = flow_of(
        "[flow]\nnumbers = [\"500\"]\nstart = \"q\"\n[nodes.q]\ntype = \"queue\"\nagents = [\"PJSIP/201\"]\nmax_wait = 60\nrecord_call = true\noverflow = \"vm\"\n[nodes.vm]\ntype = \"voicemail\"\nmailbox = \"help\"\n",
    );
    let mut agents = AgentBook::default();
    // The only agent is on another queue call.
    let mut other = Call::inbound("c0", "Bob", "5551002", flow.clone());
    let out = other.handle(Input::Start, 0, &mut agents);
    assert_eq!(originated(&out).len(), 1);
    assert!(agents.is_busy("PJSIP/201"));

    let mut call = Call::inbound("c1", "Alice", "5551001", flow);
    let out = call.handle(Input::Start, 10, &mut agents);
    assert!(
        originated(&out).is_empty(),
        "a busy agent is not offered: {out:?}"
    );
    let deadline = out
        .iter()
        .filter_map(|o| match o {
            Output::Timer { key, after } if *after == Duration::from_secs(60) => Some(*key),
            _ => None,
        })
        .next()
        .expect("the max_wait timer");
    let out = call.handle(Input::Timer(deadline), 60_010, &mut agents);
    let voicemail = commands(&out).into_iter().find_map(|c| match c {
        Command::RecordChannel { channel, request } => Some((channel.clone(), request.clone())),
        _ => None,
    });
    let (channel, request) = voicemail.expect("voicemail after the overflow");
    assert_eq!(channel, "c1");
    assert_eq!(request.format, "ulaw");
}

fn spans(out: &[Output]) -> Vec<(RedactMode, i64, i64, String)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Redacted(span) => Some((
                span.mode,
                span.from_offset_ms,
                span.to_offset_ms,
                span.by.clone(),
            )),
            _ => None,
        })
        .collect()
}

fn redact(on: bool, mode: RedactMode) -> Input<'static> {
    Input::Redact(RedactRequest {
        on,
        mode,
        by: "user:agent".into(),
    })
}

/// A muted stretch lies where it was in the file; a paused one leaves no audio, so it is a
/// point and later offsets shrink by the paused time; a recording ending under a
/// redaction closes it.
#[test]
fn redactions_are_placed_in_the_file_as_each_mode_leaves_it() {
    let mut agents = AgentBook::default();
    let mut call = Call::inbound("c1", "Alice", "5551001", flow(true));
    call.handle(Input::Start, 0, &mut agents);
    // The recording is asked for as the agent is added, at 20 ms: offsets count from then.
    call.handle(Input::Event(&stasis_start("c1_L2")), 20, &mut agents);
    let (name, _) = call.live_recording().expect("recording");
    let name = name.to_string();

    let out = call.handle(redact(true, RedactMode::Mute), 1_020, &mut agents);
    assert!(matches!(
        commands(&out)[..],
        [Command::RedactRecording {
            mode: RedactMode::Mute,
            on: true,
            ..
        }]
    ));
    assert_eq!(call.live_view().recording_state, Some("muted"));
    // Asking again changes nothing.
    assert!(call
        .handle(redact(true, RedactMode::Mute), 1_500, &mut agents)
        .is_empty());
    let out = call.handle(redact(false, RedactMode::Mute), 3_020, &mut agents);
    assert_eq!(
        spans(&out),
        [(RedactMode::Mute, 1_000, 3_000, "user:agent".into())]
    );

    call.handle(redact(true, RedactMode::Pause), 4_020, &mut agents);
    assert_eq!(call.live_view().recording_state, Some("paused"));
    let out = call.handle(redact(false, RedactMode::Pause), 5_020, &mut agents);
    assert_eq!(
        spans(&out),
        [(RedactMode::Pause, 4_000, 4_000, "user:agent".into())]
    );
    call.handle(redact(true, RedactMode::Pause), 6_020, &mut agents);
    let out = call.handle(redact(false, RedactMode::Pause), 7_020, &mut agents);
    assert_eq!(
        spans(&out),
        [(RedactMode::Pause, 5_000, 5_000, "user:agent".into())]
    );

    // Refused by Asterisk: not redacted after all.
    call.handle(redact(true, RedactMode::Mute), 7_500, &mut agents);
    call.handle(
        Input::Failed {
            command: Command::RedactRecording {
                name: name.clone(),
                mode: RedactMode::Mute,
                on: true,
            },
            status: Some(404),
            message: "Recording not found".into(),
        },
        7_510,
        &mut agents,
    );
    assert_eq!(call.live_view().recording_state, Some("recording"));

    // The agent hangs up while muted: the stretch ends with the recording.
    call.handle(redact(true, RedactMode::Mute), 8_020, &mut agents);
    let out = call.handle(Input::Event(&stasis_end("c1_L2")), 9_020, &mut agents);
    assert_eq!(
        spans(&out),
        [(RedactMode::Mute, 6_000, 7_000, "user:agent".into())]
    );
    assert!(commands(&out)
        .iter()
        .any(|c| matches!(c, Command::StopRecording { name: n } if *n == name)));
}

/// The recording is asked for with the answering party's add to the bridge (the runtime sends
/// the two together), not when Asterisk's event says it joined.
#[test]
fn transfer_records_once_the_agent_is_added_and_ends_cleanly() {
    let mut agents = AgentBook::default();
    let mut call = Call::inbound("c1", "Alice", "5551001", flow(true));
    let out = call.handle(Input::Start, 0, &mut agents);
    let cmds = commands(&out);
    assert!(matches!(cmds[0], Command::Answer { channel } if channel == "c1"));
    assert!(
        matches!(cmds[1], Command::CreateBridge { bridge, kind: "mixing", .. } if bridge == "c1_B1")
    );
    assert!(
        matches!(cmds[3], Command::Originate { channel, endpoint, timeout: 20, .. } if channel == "c1_L2" && endpoint == "PJSIP/201")
    );

    let out = call.handle(Input::Event(&stasis_start("c1_L2")), 10, &mut agents);
    assert!(
        matches!(commands(&out)[..], [Command::AddChannels { bridge, channels }, Command::RecordBridge { bridge: recorded, .. }] if bridge == "c1_B1" && channels == &vec!["c1_L2".to_string()] && recorded == "c1_B1"),
        "{out:?}"
    );
    assert!(agents.is_busy("PJSIP/201"));
    // Asterisk saying the agent joined starts nothing more.
    assert!(call
        .handle(
            Input::Event(&entered("c1_B1", &["c1", "c1_L2"], "c1_L2")),
            20,
            &mut agents,
        )
        .is_empty());
    let row = out.iter().find_map(|o| match o {
        Output::RecordingStarted(row) => Some(*row.clone()),
        _ => None,
    });
    let row = row.expect("row written before the request");
    assert_eq!(
        (row.callee.as_str(), row.node_type, row.format),
        (
            "PJSIP/201",
            Some(crate::library::NodeType::Transfer),
            Some(crate::library::RecordingFormat::Wav)
        )
    );
    assert!(
        matches!(out.last(), Some(Output::Command(Command::RecordBridge { bridge, .. })) if bridge == "c1_B1")
    );

    // The agent hangs up first: recording stopped (not discarded), caller hung up, bridge gone.
    let out = call.handle(Input::Event(&stasis_end("c1_L2")), 30, &mut agents);
    let cmds = commands(&out);
    assert!(matches!(cmds[0], Command::StopRecording { name } if *name == row.recording_name));
    assert!(cmds
        .iter()
        .any(|c| matches!(c, Command::Hangup { channel } if channel == "c1")));
    assert!(cmds
        .iter()
        .any(|c| matches!(c, Command::DestroyBridge { bridge } if bridge == "c1_B1")));
    assert_eq!(out.last(), Some(&Output::Finished));
    assert!(!agents.is_busy("PJSIP/201"));
    assert!(call.is_finished());
}

/// A call of `flow_text` (one desk at PJSIP/201) bridged with its agent, `c1_L2`, and
/// recorded: the outputs of the agent answering.
fn bridged(flow_text: &str) -> (Call, AgentBook, Vec<Output>) {
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

#[test]
fn after_the_agent_hangs_up_the_caller_goes_on_and_a_new_segment_is_recorded() {
    let text = "[flow]\nnumbers = [\"100\"]\nstart = \"desk\"\n[nodes.desk]\ntype = \"transfer\"\ntarget = \"PJSIP/201\"\nrecord_call = true\non_agent_hangup = \"second\"\n[nodes.second]\ntype = \"transfer\"\ntarget = \"PJSIP/202\"\nrecord_call = true\n";
    let (mut call, mut agents, _) = bridged(text);
    let first = call.recording().expect("first segment").to_string();

    let out = call.handle(Input::Event(&stasis_end("c1_L2")), 3_000, &mut agents);
    let cmds = commands(&out);
    // The segment is kept and its bridge goes; the caller is not hung up but put through.
    assert!(matches!(cmds[0], Command::StopRecording { name } if *name == first));
    assert!(cmds
        .iter()
        .any(|c| matches!(c, Command::DestroyBridge { bridge } if bridge == "c1_B1")));
    assert!(!cmds
        .iter()
        .any(|c| matches!(c, Command::Hangup { channel } if channel == "c1")));
    assert!(cmds
        .iter()
        .any(|c| matches!(c, Command::Originate { endpoint, .. } if endpoint == "PJSIP/202")));
    assert!(!call.is_finished());
    assert!(!agents.is_busy("PJSIP/201"));
}

#[test]
fn a_dual_channel_node_snoops_each_party_redacts_all_three_and_ends_the_snoops() {
    let text = "[flow]\nnumbers = [\"100\"]\nstart = \"desk\"\n[nodes.desk]\ntype = \"transfer\"\ntarget = \"PJSIP/201\"\nrecord_call = true\nchannels = \"dual\"\non_agent_hangup = \"desk\"\n";
    let (mut call, mut agents, out) = bridged(text);
    let name = call.recording().expect("bridge recording").to_string();
    let cmds = commands(&out);
    let snoops: Vec<(&str, &str)> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::Snoop { channel, role, .. } => Some((channel.as_str(), *role)),
            _ => None,
        })
        .collect();
    assert_eq!(snoops, [("c1", "caller"), ("c1_L2", "agent")]);
    let recorded: Vec<&str> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::RecordChannel { request, .. } => Some(request.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        recorded,
        [
            format!(".channels/{name}-caller").as_str(),
            format!(".channels/{name}-agent").as_str()
        ]
    );

    // A pause redacts the bridge's recording and each party's.
    let out = call.handle(
        Input::Redact(RedactRequest {
            on: true,
            mode: RedactMode::Mute,
            by: "user:agent".into(),
        }),
        1_000,
        &mut agents,
    );
    let redacted = commands(&out)
        .iter()
        .filter(|c| matches!(c, Command::RedactRecording { on: true, .. }))
        .count();
    assert_eq!(redacted, 3);

    // The agent leaves and the caller goes on: the caller's snoop is hung up with the segment.
    let out = call.handle(Input::Event(&stasis_end("c1_L2")), 3_000, &mut agents);
    let hung: Vec<&str> = commands(&out)
        .iter()
        .filter_map(|c| match c {
            Command::Hangup { channel } => Some(channel.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        hung.contains(&"c1_S3") && hung.contains(&"c1_S4"),
        "{hung:?}"
    );
}

#[test]
fn a_node_with_pause_recording_redacts_its_segment_from_the_start() {
    let text = "[flow]\nnumbers = [\"100\"]\nstart = \"pay\"\n[nodes.pay]\ntype = \"transfer\"\ntarget = \"PJSIP/201\"\nrecord_call = true\npause_recording = true\n";
    let (mut call, mut agents, _) = bridged(text);
    let name = call.recording().expect("recording").to_string();
    let started = Event::RecordingStarted(crate::ari::events::RecordingStarted {
        recording: crate::ari::models::LiveRecording {
            name: name.clone(),
            format: "wav".into(),
            state: "recording".into(),
            target_uri: "bridge:c1_B1".into(),
            duration: None,
            talking_duration: None,
            silence_duration: None,
            cause: None,
        },
        timestamp: String::new(),
        application: "recorder".into(),
        asterisk_id: None,
    });
    let out = call.handle(Input::Event(&started), 30, &mut agents);
    assert!(commands(&out).iter().any(|c| matches!(c,
        Command::RedactRecording { name: n, on: true, mode: RedactMode::Mute } if *n == name)));
    assert_eq!(call.live_view().recording_state, Some("muted"));
    // The segment ends: its stretch is stored, by the node.
    let out = call.handle(Input::Event(&stasis_end("c1_L2")), 5_030, &mut agents);
    assert_eq!(
        spans(&out),
        [(RedactMode::Mute, 0, 5_000, "node:pay".into())]
    );
}

#[test]
fn recording_from_dial_arms_at_dial_marks_the_answer_and_hangs_up_by_name() {
    let mut agents = AgentBook::default();
    let mut call = Call::inbound("c1", "Alice", "5551001", flow(true))
        .recording_from_dial(true)
        .with_channel_name("Local/100@inbound-00000001;2");
    let out = call.handle(Input::Start, 0, &mut agents);
    let cmds = commands(&out);
    // Originate first (ringing overlaps the record request), then the recording.
    let originate = cmds
        .iter()
        .position(|c| matches!(c, Command::Originate { .. }))
        .expect("originate");
    let record = cmds
        .iter()
        .position(|c| matches!(c, Command::RecordBridge { bridge, .. } if bridge == "c1_B1"))
        .expect("armed at dial");
    assert!(originate < record);
    let name = call.recording().expect("recording").to_string();

    let out = call.handle(Input::Event(&stasis_start("c1_L2")), 1500, &mut agents);
    assert!(out.iter().any(|o| matches!(o,
        Output::RecordingAnswered { name: n, callee, at_ms: 1500 } if *n == name && callee == "PJSIP/201")));
    // Both in the bridge: no second recording.
    let out = call.handle(
        Input::Event(&entered("c1_B1", &["c1", "c1_L2"], "c1_L2")),
        1510,
        &mut agents,
    );
    assert!(!commands(&out)
        .iter()
        .any(|c| matches!(c, Command::RecordBridge { .. })));

    // The agent hangs up: the caller is hung up by name, not by id.
    let out = call.handle(Input::Event(&stasis_end("c1_L2")), 9000, &mut agents);
    let cmds = commands(&out);
    assert!(matches!(cmds[0], Command::StopRecording { name: n } if *n == name));
    assert!(cmds.iter().any(
        |c| matches!(c, Command::Hangup { channel } if channel == "Local/100@inbound-00000001;2")
    ));
}

#[test]
fn a_recording_armed_at_dial_that_nobody_answers_is_cancelled() {
    let mut agents = AgentBook::default();
    let mut call = Call::inbound("c1", "Alice", "5551001", flow(true)).recording_from_dial(true);
    call.handle(Input::Start, 0, &mut agents);
    let name = call.recording().expect("armed").to_string();
    let busy = Event::Dial(crate::ari::events::Dial {
        peer: channel("c1_L2"),
        caller: None,
        forwarded: None,
        forward: None,
        dialstring: None,
        dialstatus: "BUSY".into(),
        timestamp: String::new(),
        application: "recorder".into(),
        asterisk_id: None,
    });
    let out = call.handle(Input::Event(&busy), 500, &mut agents);
    let cancelled = out
        .iter()
        .position(|o| matches!(o, Output::RecordingCancelled { name: n } if *n == name))
        .expect("library told");
    let command = out
        .iter()
        .position(
            |o| matches!(o, Output::Command(Command::CancelRecording { name: n }) if *n == name),
        )
        .expect("discarded in Asterisk");
    assert!(
        cancelled < command,
        "the library hears it before the file goes"
    );
    assert!(call.recording().is_none());
}

#[test]
fn record_call_off_never_asks_for_a_recording() {
    let mut agents = AgentBook::default();
    let mut call = Call::inbound("c1", "Alice", "5551001", flow(false));
    let mut all = call.handle(Input::Start, 0, &mut agents);
    all.extend(call.handle(Input::Event(&stasis_start("c1_L2")), 1, &mut agents));
    all.extend(call.handle(
        Input::Event(&entered("c1_B1", &["c1", "c1_L2"], "c1_L2")),
        2,
        &mut agents,
    ));
    all.extend(call.handle(Input::Event(&stasis_end("c1")), 3, &mut agents));
    assert!(!all.iter().any(|o| matches!(
        o,
        Output::RecordingStarted(_) | Output::Command(Command::RecordBridge { .. })
    )));
    assert!(call.is_finished());
}

#[test]
fn round_robin_and_longest_idle_choose_across_calls() {
    let mut book = AgentBook::default();
    let agents = vec!["A".to_string(), "B".to_string(), "C".to_string()];
    assert_eq!(book.offer("q", &agents, Strategy::RoundRobin), vec!["A"]);
    assert_eq!(book.offer("q", &agents, Strategy::RoundRobin), vec!["B"]);
    book.release("A", 100, true);
    assert_eq!(book.offer("q", &agents, Strategy::RoundRobin), vec!["C"]);
    assert_eq!(book.offer("q", &agents, Strategy::RoundRobin), vec!["A"]);
    assert!(
        book.offer("q", &agents, Strategy::RingAll).is_empty(),
        "all busy"
    );
    book.release("A", 300, true);
    book.release("B", 200, true);
    assert_eq!(book.offer("q2", &agents, Strategy::LongestIdle), vec!["B"]);
}

fn playback_finished(playback: &str) -> Event {
    event(serde_json::json!({
        "type": "PlaybackFinished", "timestamp": "", "application": "recorder",
        "playback": {"id": playback, "media_uri": "sound:x", "target_uri": "channel:c1", "state": "done"}
    }))
}

fn recording_finished(name: &str, target: &str) -> Event {
    event(serde_json::json!({
        "type": "RecordingFinished", "timestamp": "", "application": "recorder",
        "recording": {"name": name, "format": "ulaw", "state": "done", "target_uri": target, "duration": 12}
    }))
}

fn dtmf(channel: &str, digit: &str) -> Event {
    event(serde_json::json!({
        "type": "ChannelDtmfReceived", "timestamp": "", "application": "recorder",
        "digit": digit, "duration_ms": 120, "channel": channel_json(channel)
    }))
}

/// The prompts `out` starts, as (playback id, media).
fn plays(out: &[Output]) -> Vec<(String, String)> {
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

/// The row of the recording `out` starts.
fn recorded_row(out: &[Output]) -> Option<Box<RecordingStarted>> {
    out.iter().find_map(|o| match o {
        Output::RecordingStarted(row) => Some(row.clone()),
        _ => None,
    })
}

fn hung_up(out: &[Output], channel: &str) -> bool {
    commands(out)
        .iter()
        .any(|c| matches!(c, Command::Hangup { channel: ch } if ch == channel))
}

/// A play_audio node plays its prompts in order, each once the one before has finished, then
/// goes to `next`.
#[test]
fn play_audio_plays_each_prompt_in_turn_then_goes_on() {
    let (mut call, mut agents, out) = started(
        "[flow]\nnumbers = [\"100\"]\nstart = \"hello\"\n[nodes.hello]\ntype = \"play_audio\"\nmedia = [\"sound:hello-world\", \"sound:vm-goodbye\"]\nnext = \"desk\"\n[nodes.desk]\ntype = \"transfer\"\ntarget = \"PJSIP/201\"\n",
    );
    let first = plays(&out);
    assert_eq!(first.len(), 1, "one prompt at a time: {out:?}");
    assert_eq!(first[0].1, "sound:hello-world");
    assert!(originated(&out).is_empty());
    // Another playback finishing changes nothing.
    assert!(call
        .handle(Input::Event(&playback_finished("other")), 50, &mut agents)
        .is_empty());
    let out = call.handle(
        Input::Event(&playback_finished(&first[0].0)),
        100,
        &mut agents,
    );
    let second = plays(&out);
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].1, "sound:vm-goodbye");
    // A prompt Asterisk refuses to play is passed over like one that finished.
    let out = call.handle(
        Input::Failed {
            command: Command::Play {
                channel: "c1".into(),
                playback: second[0].0.clone(),
                media: second[0].1.clone(),
            },
            status: Some(404),
            message: "Media not found".into(),
        },
        200,
        &mut agents,
    );
    let legs = originated(&out);
    assert_eq!(legs.len(), 1, "{out:?}");
    assert_eq!(legs[0].1, "PJSIP/201");
}

/// A flow that loops on itself is ended at the hop limit, not followed for ever.
#[test]
fn a_flow_that_loops_is_ended_at_the_hop_limit() {
    let (mut call, mut agents, mut out) = started(
        "[flow]\nnumbers = [\"100\"]\nstart = \"again\"\n[nodes.again]\ntype = \"play_audio\"\nmedia = [\"sound:beep\"]\nnext = \"again\"\n",
    );
    let mut played = 0;
    while let Some((playback, _)) = plays(&out).pop() {
        played += 1;
        assert!(played <= MAX_HOPS as usize, "followed past the hop limit");
        out = call.handle(
            Input::Event(&playback_finished(&playback)),
            played as u64,
            &mut agents,
        );
    }
    assert_eq!(played, MAX_HOPS as usize);
    assert!(hung_up(&out, "c1"), "{out:?}");
    assert_eq!(out.last(), Some(&Output::Finished));
}

/// Voicemail: the greeting, then the caller's channel recorded as mu-law with the node's stop
/// conditions (length, silence, `#`); the message finishing ends the call. The row is written
/// before the record request, so `RecordingFinished` always finds it.
#[test]
fn voicemail_greets_records_with_its_stop_conditions_and_ends_when_the_message_does() {
    let (mut call, mut agents, out) = started(
        "[flow]\nnumbers = [\"600\"]\nstart = \"vm\"\n[nodes.vm]\ntype = \"voicemail\"\nmailbox = \"sales\"\ngreeting = \"sound:vm-intro\"\nmax_duration = 90\nmax_silence = 4\n",
    );
    let greeting = plays(&out);
    assert_eq!(greeting.len(), 1);
    assert_eq!(greeting[0].1, "sound:vm-intro");
    let out = call.handle(
        Input::Event(&playback_finished(&greeting[0].0)),
        3_000,
        &mut agents,
    );
    let row_at = out
        .iter()
        .position(|o| matches!(o, Output::RecordingStarted(_)))
        .expect("row");
    let (request_at, request) = out
        .iter()
        .enumerate()
        .find_map(|(i, o)| match o {
            Output::Command(Command::RecordChannel { channel, request }) if channel == "c1" => {
                Some((i, request.clone()))
            }
            _ => None,
        })
        .expect("the caller's channel recorded");
    assert!(row_at < request_at);
    assert_eq!(request.format, "ulaw");
    assert_eq!(request.max_duration_seconds, Some(90));
    assert_eq!(request.max_silence_seconds, Some(4));
    assert_eq!(request.terminate_on.as_deref(), Some("#"));
    assert!(request.name.starts_with("voicemail-sales-"));
    let out = call.handle(
        Input::Event(&recording_finished(&request.name, "channel:c1")),
        20_000,
        &mut agents,
    );
    assert!(hung_up(&out, "c1"), "{out:?}");
    assert!(!commands(&out).iter().any(|c| matches!(
        c,
        Command::StopRecording { .. } | Command::CancelRecording { .. }
    )));
    assert_eq!(out.last(), Some(&Output::Finished));
}

/// A caller hanging up while leaving a message keeps it: Asterisk finishes the recording
/// itself, so nothing stops or cancels it.
#[test]
fn a_caller_hanging_up_during_a_message_keeps_it() {
    let (mut call, mut agents, out) = started(
        "[flow]\nnumbers = [\"600\"]\nstart = \"vm\"\n[nodes.vm]\ntype = \"voicemail\"\nmailbox = \"sales\"\n",
    );
    assert!(commands(&out)
        .iter()
        .any(|c| matches!(c, Command::RecordChannel { .. })));
    let out = call.handle(Input::Event(&stasis_end("c1")), 5_000, &mut agents);
    assert!(!commands(&out).iter().any(|c| matches!(
        c,
        Command::StopRecording { .. } | Command::CancelRecording { .. }
    )));
    assert_eq!(out.last(), Some(&Output::Finished));
}

/// A direct outbound call rings `from` first (the call's own channel), then `to`, bridges and
/// records them as an outbound call.
#[test]
fn an_outbound_call_rings_from_then_to_and_records_them() {
    let mut agents = AgentBook::default();
    let mut call = Call::outbound("o1", "PJSIP/201", "PJSIP/202", true).in_scope("acme", "sales");
    let out = call.handle(Input::Start, 0, &mut agents);
    assert!(
        matches!(commands(&out)[..], [Command::Originate { channel, endpoint, .. }] if channel == "o1" && endpoint == "PJSIP/201"),
        "{out:?}"
    );
    let out = call.handle(Input::Event(&stasis_start("o1")), 1_000, &mut agents);
    let legs = originated(&out);
    assert_eq!(legs.len(), 1);
    assert_eq!(legs[0].1, "PJSIP/202");
    let out = call.handle(Input::Event(&stasis_start(&legs[0].0)), 3_000, &mut agents);
    let row = recorded_row(&out).expect("recorded");
    assert_eq!(row.node_type, Some(crate::library::NodeType::Outbound));
    assert_eq!(row.direction, crate::library::Direction::Outbound);
    assert_eq!(
        (row.tenant.as_str(), row.callee.as_str()),
        ("acme", "PJSIP/202")
    );
    assert!(commands(&out)
        .iter()
        .any(|c| matches!(c, Command::RecordBridge { .. })));
}

/// `from` not answering (its originate refused) ends the outbound call at once.
#[test]
fn an_outbound_call_whose_first_leg_is_refused_ends() {
    let mut agents = AgentBook::default();
    let mut call = Call::outbound("o1", "PJSIP/201", "PJSIP/202", true);
    let out = call.handle(Input::Start, 0, &mut agents);
    let Some(Command::Originate { .. }) = commands(&out).first().map(|c| (*c).clone()) else {
        panic!("{out:?}");
    };
    let out = call.handle(
        Input::Failed {
            command: (*commands(&out)[0]).clone(),
            status: Some(400),
            message: "Allocation failed".into(),
        },
        100,
        &mut agents,
    );
    assert_eq!(out.last(), Some(&Output::Finished), "{out:?}");
    assert!(call.is_finished());
}

/// An originate Asterisk refuses counts as the target not answering: the transfer takes its
/// `on_failure` edge.
#[test]
fn a_refused_transfer_takes_its_failure_edge() {
    let (mut call, mut agents, out) = started(
        "[flow]\nnumbers = [\"100\"]\nstart = \"desk\"\n[nodes.desk]\ntype = \"transfer\"\ntarget = \"PJSIP/201\"\non_failure = \"vm\"\n[nodes.vm]\ntype = \"voicemail\"\nmailbox = \"desk\"\n",
    );
    let originate = commands(&out)
        .into_iter()
        .find(|c| matches!(c, Command::Originate { .. }))
        .cloned()
        .expect("originate");
    let out = call.handle(
        Input::Failed {
            command: originate,
            status: Some(500),
            message: "Internal Server Error".into(),
        },
        100,
        &mut agents,
    );
    assert!(
        commands(&out)
            .iter()
            .any(|c| matches!(c, Command::RecordChannel { channel, .. } if channel == "c1")),
        "voicemail after the failure: {out:?}"
    );
    assert!(!call.is_finished());
}

/// A record request Asterisk refuses is stored as failed, with the reason; the call itself
/// goes on bridged.
#[test]
fn a_refused_record_request_is_stored_as_failed_and_the_call_goes_on() {
    let (mut call, mut agents, out) = bridged(
        "[flow]\nnumbers = [\"100\"]\nstart = \"desk\"\n[nodes.desk]\ntype = \"transfer\"\ntarget = \"PJSIP/201\"\nrecord_call = true\n",
    );
    let record = commands(&out)
        .into_iter()
        .find(|c| matches!(c, Command::RecordBridge { .. }))
        .cloned()
        .expect("record request");
    let Command::RecordBridge { request, .. } = &record else {
        unreachable!()
    };
    let name = request.name.clone();
    let out = call.handle(
        Input::Failed {
            command: record,
            status: Some(409),
            message: "Recording already in progress".into(),
        },
        100,
        &mut agents,
    );
    assert!(
        out.contains(&Output::RecordingRefused {
            name,
            cause: "409 Recording already in progress".into()
        }),
        "{out:?}"
    );
    assert!(!call.is_finished());
    assert!(!hung_up(&out, "c1"));
}

/// A simultaneous hunt group rings every member; the first to answer is bridged, the others
/// are hung up and free again.
#[test]
fn a_simultaneous_hunt_group_bridges_the_first_to_answer_and_hangs_up_the_rest() {
    let (mut call, mut agents, out) = started(
        "[flow]\nnumbers = [\"400\"]\nstart = \"team\"\n[nodes.team]\ntype = \"hunt_group\"\nmode = \"simultaneous\"\nmembers = [\"PJSIP/201\", \"PJSIP/202\", \"PJSIP/203\"]\nrecord_call = true\n",
    );
    let legs = originated(&out);
    assert_eq!(legs.len(), 3);
    let out = call.handle(Input::Event(&stasis_start(&legs[1].0)), 2_000, &mut agents);
    for (leg, endpoint) in [&legs[0], &legs[2]] {
        assert!(hung_up(&out, leg), "{endpoint} hung up: {out:?}");
        assert!(!agents.is_busy(endpoint));
    }
    assert!(!hung_up(&out, &legs[1].0));
    let row = recorded_row(&out).expect("recorded");
    assert_eq!(row.callee, "PJSIP/202");
    // A late answer from a member already hung up is not bridged.
    let out = call.handle(Input::Event(&stasis_start(&legs[0].0)), 2_100, &mut agents);
    assert!(!commands(&out)
        .iter()
        .any(|c| matches!(c, Command::AddChannels { .. })));
}

/// A consent node: the grant key sends the caller on with consent granted on the recordings;
/// no key at all, after its retries, counts as `on_timeout` says (here declined: the call is
/// not recorded).
#[test]
fn a_consent_node_records_the_callers_answer_or_its_silence() {
    let text = "[flow]\nnumbers = [\"100\"]\nstart = \"ask\"\n[nodes.ask]\ntype = \"consent\"\nmedia = [\"sound:consent\"]\ntimeout = 5\nretries = 1\non_timeout = \"declined\"\nnext = \"desk\"\n[nodes.desk]\ntype = \"transfer\"\ntarget = \"PJSIP/201\"\nrecord_call = true\n";
    // Pressed 1 while the prompt played.
    let mut agents = AgentBook::default();
    let mut call = Call::inbound("c1", "Alice", "5551001", flow_of(text));
    let out = call.handle(Input::Start, 0, &mut agents);
    let prompt = plays(&out);
    assert_eq!(prompt.len(), 1);
    call.handle(Input::Event(&dtmf("c1", "1")), 500, &mut agents);
    let out = call.handle(
        Input::Event(&playback_finished(&prompt[0].0)),
        1_000,
        &mut agents,
    );
    let legs = originated(&out);
    assert_eq!(legs.len(), 1, "on to the desk: {out:?}");
    let out = call.handle(Input::Event(&stasis_start(&legs[0].0)), 2_000, &mut agents);
    let row = recorded_row(&out).expect("recorded");
    assert_eq!(row.consent, crate::library::Consent::Granted);

    // Silence: asked twice (one retry), then declined, and the desk's call is recorded so.
    let mut agents = AgentBook::default();
    let mut call = Call::inbound("c2", "Bob", "5551002", flow_of(text));
    let mut out = call.handle(Input::Start, 0, &mut agents);
    let mut asked = 0;
    let mut now = 0;
    while let Some((playback, _)) = plays(&out).pop() {
        asked += 1;
        now += 1_000;
        out = call.handle(
            Input::Event(&playback_finished(&playback)),
            now,
            &mut agents,
        );
        let timer = out.iter().find_map(|o| match o {
            Output::Timer { key, after } if *after == Duration::from_secs(5) => Some(*key),
            _ => None,
        });
        let Some(timer) = timer else { break };
        now += 5_000;
        out = call.handle(Input::Timer(timer), now, &mut agents);
    }
    assert_eq!(asked, 2);
    let legs = originated(&out);
    assert_eq!(legs.len(), 1, "{out:?}");
    let out = call.handle(
        Input::Event(&stasis_start(&legs[0].0)),
        now + 1_000,
        &mut agents,
    );
    // Declined: the call is bridged but not recorded, and listed as such with the reason.
    assert!(!out.iter().any(|o| matches!(o, Output::RecordingStarted(_))));
    let not_recorded = out.iter().find_map(|o| match o {
        Output::NotRecorded(row, switch) => Some((row.consent, *switch)),
        _ => None,
    });
    assert_eq!(
        not_recorded,
        Some((crate::library::Consent::Denied, "consent")),
        "{out:?}"
    );
}

/// The caller hanging up in any state ends the call cleanly: whatever rings is hung up,
/// whatever records is stopped (never discarded), every bridge is destroyed, no agent stays
/// busy.
#[test]
fn a_caller_hanging_up_in_any_state_leaves_nothing_behind() {
    let text = "[flow]\nnumbers = [\"100\"]\nstart = \"hello\"\n[nodes.hello]\ntype = \"play_audio\"\nmedia = [\"sound:hello-world\"]\nnext = \"q\"\n[nodes.q]\ntype = \"queue\"\nagents = [\"PJSIP/201\"]\nmax_wait = 60\nrecord_call = true\n";
    // Each state, reached by the inputs after Start (a function of the outputs so far).
    type Step = fn(&mut Call, &mut AgentBook, &[Output]) -> Vec<Output>;
    let greeting: Step = |_, _, out| out.to_vec();
    let queued: Step = |call, agents, out| {
        let (playback, _) = plays(out).pop().expect("greeting");
        call.handle(Input::Event(&playback_finished(&playback)), 1_000, agents)
    };
    let bridged: Step = |call, agents, out| {
        let (playback, _) = plays(out).pop().expect("greeting");
        let out = call.handle(Input::Event(&playback_finished(&playback)), 1_000, agents);
        let (leg, _) = originated(&out).pop().expect("agent rung");
        call.handle(Input::Event(&stasis_start(&leg)), 2_000, agents)
    };
    for (state, step) in [
        ("greeting", greeting),
        ("queued", queued),
        ("bridged", bridged),
    ] {
        let mut agents = AgentBook::default();
        let mut call = Call::inbound("c1", "Alice", "5551001", flow_of(text));
        let started = call.handle(Input::Start, 0, &mut agents);
        let reached = step(&mut call, &mut agents, &started);
        let recording = call.recording().map(String::from);
        let out = call.handle(Input::Event(&stasis_end("c1")), 5_000, &mut agents);
        let cmds = commands(&out);
        assert_eq!(out.last(), Some(&Output::Finished), "{state}: {out:?}");
        assert!(!agents.is_busy("PJSIP/201"), "{state}: agent still busy");
        if state != "greeting" {
            assert!(
                cmds.iter()
                    .any(|c| matches!(c, Command::DestroyBridge { .. })),
                "{state}: bridges left: {out:?}"
            );
        }
        for (leg, _) in originated(&reached) {
            assert!(hung_up(&out, &leg), "{state}: {leg} left up: {out:?}");
        }
        if let Some(name) = recording {
            assert!(
                cmds.iter()
                    .any(|c| matches!(c, Command::StopRecording { name: n } if *n == name)),
                "{state}: recording not stopped: {out:?}"
            );
        }
        assert!(!cmds
            .iter()
            .any(|c| matches!(c, Command::CancelRecording { .. })));
        // Events after the end change nothing.
        assert!(call
            .handle(Input::Event(&stasis_end("c1")), 6_000, &mut agents)
            .is_empty());
    }
}

/// The name of the recording a transfer asks for once its agent answers, for a call seeded so.
fn recording_name_with_seed(seed: u64) -> String {
    let mut agents = AgentBook::default();
    let mut call = Call::inbound("c1", "Alice", "5551001", flow(true)).seeded(seed);
    call.handle(Input::Start, 0, &mut agents);
    let out = call.handle(Input::Event(&stasis_start("c1_L2")), 10, &mut agents);
    commands(&out)
        .iter()
        .find_map(|c| match c {
            Command::RecordBridge { request, .. } => Some(request.name.clone()),
            _ => None,
        })
        .expect("a recording asked for")
}

/// The machine draws its randomness from its own seed, not from the world: the same seed names
/// the recording alike, another seed differently (the runtime seeds each call on its own).
#[test]
fn a_calls_recording_names_come_from_its_seed() {
    let name = recording_name_with_seed(7);
    assert!(name.starts_with("transfer-19700101-000000-"), "{name}");
    assert_eq!(name, recording_name_with_seed(7));
    assert_ne!(name, recording_name_with_seed(8));
}
