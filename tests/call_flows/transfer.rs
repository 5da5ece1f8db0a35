//! Transfer nodes: the bridge recorded or not, the failure edges (busy, no answer), hang-ups
//! on either side and at once, a transfer failing over to a queue.

use super::*;

#[tokio::test]
async fn transfer_with_record_call_records_the_bridge_and_stores_metadata() {
    let t = start_sim(0.0).await;
    let s = start_service(&t, &[("support.toml", &transfer_flow("PJSIP/201", true))]).await;
    t.sim
        .place_inbound_call("100", "Alice <5551001>", "talk")
        .expect("call");
    let rows = wait_recording(&t, &s, "recording row", 1).await;
    let row = &rows[0];
    assert!(row.recording_name.starts_with("transfer-"), "{row:?}");
    assert_eq!(row.format, "wav");
    assert_eq!(
        (
            row.flow.as_deref(),
            row.node.as_deref(),
            row.node_type.as_deref()
        ),
        (Some("support"), Some("desk"), Some("transfer"))
    );
    assert_eq!(
        (row.caller_name.as_deref(), row.caller_number.as_deref()),
        (Some("Alice"), Some("5551001"))
    );
    assert_eq!(row.callee.as_deref(), Some("PJSIP/201"));
    assert_eq!(
        (row.tenant.as_str(), row.direction.as_str()),
        ("acme", "inbound")
    );
    let requests = record_requests(&t);
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0].contains("format=wav") && requests[0].contains("ifExists=fail"),
        "{requests:?}"
    );
    // The agent's leg is originated with an id of Asterisk's choosing (a chosen one costs a
    // loaded Asterisk dearly: docs/asterisk.md "What it asks of a loaded Asterisk").
    let originates: Vec<String> = t
        .sim
        .requests()
        .into_iter()
        .filter(|r| {
            r.method == "POST" && r.path.ends_with("/channels") && r.query.contains("appArgs=leg")
        })
        .map(|r| r.query)
        .collect();
    assert_eq!(originates.len(), 1, "{originates:?}");
    assert!(!originates[0].contains("channelId"), "{originates:?}");

    // The agent talks 16.2 s then hangs up: the call ends cleanly.
    t.sim.advance(16.5);
    let rows = wait_rows(&s.svc.db, "finished row", 1, |r| r.state == "done").await;
    assert_eq!(rows[0].duration_seconds, Some(16));
    wait_until("everything torn down", || quiet(&t)).await;
    let file = t.recordings.join(format!("{}.wav", rows[0].recording_name));
    let bytes = std::fs::read(&file).expect("recording on disk");
    assert_eq!(
        u32::from_le_bytes([bytes[40], bytes[41], bytes[42], bytes[43]]) as usize,
        bytes.len() - 44
    );
    stop(s).await;
}

/// A loaded Asterisk takes hundreds of milliseconds to answer an add: the bridge's recording is
/// asked for beside the answering party's add, not after its answer, so it misses none of
/// their first words.
#[tokio::test]
async fn the_recording_is_asked_for_while_the_answering_partys_add_is_in_progress() {
    let t = start_sim(0.0).await;
    t.sim.delay_adds(Some(std::time::Duration::from_secs(2)));
    let s = start_service(&t, &[("support.toml", &transfer_flow("PJSIP/201", true))]).await;
    t.sim
        .place_inbound_call("100", "Alice <5551001>", "talk")
        .expect("call");
    wait_recording(&t, &s, "recording row", 1).await;
    wait_until("agent bridged", || {
        t.sim
            .with_world(|w| w.bridges().iter().any(|b| b.channels.len() == 2))
    })
    .await;
    let requests = t.sim.requests();
    let record = requests
        .iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/record"))
        .expect("record request");
    let bridge = record.path.trim_end_matches("/record");
    let adds: Vec<_> = requests
        .iter()
        .filter(|r| r.method == "POST" && r.path == format!("{bridge}/addChannel"))
        .collect();
    assert_eq!(
        adds.len(),
        2,
        "the caller's add, then the agent's: {adds:?}"
    );
    let agent_add = adds[1];
    assert!(
        agent_add.at <= record.at && agent_add.answered.is_some_and(|a| record.at < a),
        "the record request arrived while the agent's add was in progress: {agent_add:?} {record:?}"
    );
    stop(s).await;
}

#[tokio::test]
async fn record_call_off_never_sends_a_record_request() {
    let t = start_sim(0.0).await;
    let s = start_service(&t, &[("support.toml", &transfer_flow("PJSIP/201", false))]).await;
    t.sim
        .place_inbound_call("100", "Alice <5551001>", "talk")
        .expect("call");
    wait_until("agent bridged", || {
        t.sim
            .with_world(|w| w.bridges().iter().any(|b| b.channels.len() == 2))
    })
    .await;
    t.sim.advance(17.0);
    wait_until("call over", || quiet(&t)).await;
    assert!(record_requests(&t).is_empty());
    assert!(recording_rows(&s.svc.db).await.is_empty());
    stop(s).await;
}

#[tokio::test]
async fn busy_target_takes_the_failure_edge_to_voicemail() {
    let t = start_sim(0.0).await;
    let flow = r#"
[flow]
numbers = ["100"]
start = "desk"
[nodes.desk]
type = "transfer"
target = "PJSIP/busy"
record_call = true
on_failure = "vm"
[nodes.vm]
type = "voicemail"
mailbox = "support"
max_duration = 60
max_silence = 10
"#;
    let s = start_service(&t, &[("support.toml", flow)]).await;
    caller(
        &t,
        "leaves-message",
        vec![Step::Answer, Step::Talk(3.0), Step::Hangup],
    );
    t.sim
        .place_inbound_call("100", "Carol <5551003>", "leaves-message")
        .expect("call");
    let rows = wait_recording(&t, &s, "voicemail row", 1).await;
    assert_eq!(
        (rows[0].format.as_str(), rows[0].node_type.as_deref()),
        ("ulaw", Some("voicemail"))
    );
    assert_eq!(
        rows[0].callee.as_deref(),
        Some("support"),
        "tied to the mailbox"
    );
    let requests = record_requests(&t);
    assert_eq!(
        requests.len(),
        1,
        "the busy transfer never recorded: {requests:?}"
    );
    assert!(
        requests[0].contains("/channels/")
            && requests[0].contains("format=ulaw")
            && requests[0].contains("terminateOn=%23"),
        "{requests:?}"
    );
    t.sim.advance(4.0);
    let rows = wait_rows(&s.svc.db, "voicemail done", 1, |r| r.state == "done").await;
    assert_eq!(rows[0].duration_seconds, Some(3));
    assert_eq!(
        std::fs::metadata(
            t.recordings
                .join(format!("{}.ulaw", rows[0].recording_name))
        )
        .expect("file")
        .len(),
        3 * 8000
    );
    wait_until("torn down", || quiet(&t)).await;
    stop(s).await;
}

#[tokio::test]
async fn no_answer_takes_the_failure_edge() {
    let t = start_sim(0.0).await;
    let s = start_service(
        &t,
        &[("support.toml", &transfer_flow("PJSIP/noanswer", true))],
    )
    .await;
    t.sim
        .place_inbound_call("100", "Dave <5551004>", "silent")
        .expect("call");
    wait_until("ringing", || {
        t.sim
            .requests()
            .iter()
            .any(|r| r.method == "POST" && r.path == "/channels")
    })
    .await;
    t.sim.advance(5.5);
    wait_until("goodbye prompt", || {
        t.sim.requests().iter().any(|r| r.path.ends_with("/play"))
    })
    .await;
    t.sim.advance(1.5);
    wait_until("hung up", || quiet(&t)).await;
    assert!(record_requests(&t).is_empty());
    stop(s).await;
}

#[tokio::test]
async fn caller_hanging_up_while_the_agent_rings_ends_everything() {
    let t = start_sim(0.0).await;
    let s = start_service(
        &t,
        &[("support.toml", &transfer_flow("PJSIP/noanswer", true))],
    )
    .await;
    caller(
        &t,
        "impatient",
        vec![Step::Answer, Step::Wait(1.0), Step::Hangup],
    );
    t.sim
        .place_inbound_call("100", "Erin <5551011>", "impatient")
        .expect("call");
    wait_until("ringing", || t.sim.with_world(|w| w.channels().len()) == 4).await;
    t.sim.advance(1.5);
    wait_until("ringing leg hung up and bridge gone", || quiet(&t)).await;
    stop(s).await;
}

#[tokio::test]
async fn caller_hanging_up_first_and_both_at_once_end_cleanly() {
    let t = start_sim(0.0).await;
    let s = start_service(
        &t,
        &[("support.toml", &transfer_flow("PJSIP/agent-long", true))],
    )
    .await;
    t.sim.define_party(
        "PJSIP/agent-long",
        Script::new("agent", vec![Step::Answer, Step::Talk(60.0), Step::Hangup]),
    );
    caller(
        &t,
        "brief",
        vec![Step::Answer, Step::Talk(3.0), Step::Hangup],
    );
    t.sim
        .place_inbound_call("100", "Brief <5550050>", "brief")
        .expect("call");
    wait_recording(&t, &s, "recording", 1).await;
    t.sim.advance(3.5);
    let rows = wait_rows(&s.svc.db, "stopped when the caller left", 1, |r| {
        r.state == "done"
    })
    .await;
    assert_eq!(rows[0].duration_seconds, Some(3));
    wait_until("agent hung up, bridge gone", || quiet(&t)).await;
    assert!(
        t.sim
            .requests()
            .iter()
            .any(|r| r.method == "POST" && r.path.ends_with("/stop")),
        "stopped with /stop, never discarded"
    );
    assert!(!t
        .sim
        .requests()
        .iter()
        .any(|r| r.method == "DELETE" && r.path.starts_with("/recordings/live")));

    // Both parties hang up in the same 20 ms frame.
    t.sim.define_party(
        "PJSIP/agent-short",
        Script::new("agent", vec![Step::Answer, Step::Talk(2.0), Step::Hangup]),
    );
    std::fs::write(
        s.dialplans.join("support.toml"),
        transfer_flow("PJSIP/agent-short", true),
    )
    .expect("edit");
    let flows = s.svc.flows.store().clone();
    wait_until("reloaded", || {
        flows.current().flows["support"].nodes["desk"].kind
            == ari_recorder::flows::NodeKind::Transfer {
                target: "PJSIP/agent-short".into(),
                ring_timeout: 5,
                record_call: Some(true),
                on_failure: Some("sorry".into()),
                on_agent_hangup: None,
                dual_channel: false,
                pause_recording: false,
            }
    })
    .await;
    caller(
        &t,
        "same-time",
        vec![Step::Answer, Step::Talk(2.0), Step::Hangup],
    );
    t.sim
        .place_inbound_call("100", "Same <5550051>", "same-time")
        .expect("call");
    wait_rows(&s.svc.db, "second recording", 2, |_| true).await;
    t.sim.advance(2.5);
    wait_rows(&s.svc.db, "both done", 2, |r| r.state == "done").await;
    wait_until("torn down", || quiet(&t)).await;
    stop(s).await;
}

/// Issue 10: a transfer that failed over to a queue left its first mixing bridge behind when
/// an agent answered (the call's bridge was replaced, and only the new one was destroyed).
#[tokio::test]
async fn a_transfer_failing_over_to_a_queue_leaves_no_bridge_behind() {
    let t = start_sim(0.0).await;
    let flow = r#"
[flow]
numbers = ["100"]
start = "desk"
tenant = "acme"

[nodes.desk]
type = "transfer"
target = "Local/busy@agents"
ring_timeout = 5
record_call = true
on_failure = "line"

[nodes.line]
type = "queue"
agents = ["PJSIP/201"]
strategy = "ringall"
ring_timeout = 30
max_wait = 60
record_call = true
"#;
    let s = start_service(&t, &[("support.toml", flow)]).await;
    t.sim
        .place_inbound_call("100", "Alice <5551001>", "talk")
        .expect("call");
    wait_until("the queue's agent bridged", || {
        t.sim.with_world(|w| {
            w.bridges()
                .iter()
                .any(|b| b.bridge_type == "mixing" && b.channels.len() == 2)
        })
    })
    .await;
    // Only the bridge the caller and the agent are in is left: the transfer's is gone.
    assert_eq!(t.sim.with_world(|w| w.bridges().len()), 1);
    t.sim.advance(16.5);
    wait_until("everything torn down", || quiet(&t)).await;
    stop(s).await;
}
