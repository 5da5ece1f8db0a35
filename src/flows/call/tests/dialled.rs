//! Nodes that dial: transfers, hunt groups (sequential and simultaneous), queues and their
//! strategies, outbound calls; legs answering, failing and hanging up.

use super::recording::recorded_row;
use super::*;

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
