//! Call flows against the simulated Asterisk: every node type with `record_call` on and off,
//! failure edges, hang-ups, queue strategies, hunt modes, outbound calls, hot reload, failed
//! recordings and a dropped ARI socket. Simulated time moves only when a test advances it.

mod common;

use ari_recorder::sim::{Script, Step};
use common::{
    caller, quiet, recording_rows, start_service, start_sim, stop, wait_recording, wait_rows,
    wait_until, TestSim,
};

fn transfer_flow(target: &str, record: bool) -> String {
    format!(
        r#"
[flow]
numbers = ["100"]
start = "desk"
tenant = "acme"

[nodes.desk]
type = "transfer"
target = "{target}"
ring_timeout = 5
record_call = {record}
on_failure = "sorry"

[nodes.sorry]
type = "play_audio"
media = ["sound:vm-goodbye"]
"#
    )
}

fn record_requests(t: &TestSim) -> Vec<String> {
    t.sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/record"))
        .map(|r| format!("{}?{}", r.path, r.query))
        .collect()
}

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
async fn play_audio_is_never_recorded_and_then_hangs_up() {
    let t = start_sim(0.0).await;
    let flow = r#"
[flow]
numbers = ["200"]
start = "hello"
[nodes.hello]
type = "play_audio"
media = ["sound:hello-world", "sound:vm-goodbye"]
"#;
    let s = start_service(&t, &[("hello.toml", flow)]).await;
    t.sim
        .place_inbound_call("200", "Bob <5551002>", "silent")
        .expect("call");
    wait_until("first prompt", || {
        t.sim.requests().iter().any(|r| r.path.ends_with("/play"))
    })
    .await;
    t.sim.advance(1.5);
    wait_until("second prompt", || {
        t.sim
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/play"))
            .count()
            == 2
    })
    .await;
    t.sim.advance(1.5);
    wait_until("hung up after the prompts", || quiet(&t)).await;
    assert!(record_requests(&t).is_empty());
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
async fn voicemail_stops_on_hash_and_on_silence() {
    let t = start_sim(0.0).await;
    let flow = r#"
[flow]
numbers = ["300"]
start = "vm"
[nodes.vm]
type = "voicemail"
mailbox = "general"
greeting = "sound:vm-intro"
max_duration = 60
max_silence = 3
"#;
    let s = start_service(&t, &[("vm.toml", flow)]).await;
    caller(
        &t,
        "presses-hash",
        vec![
            Step::Answer,
            Step::Wait(6.0),
            Step::Talk(4.0),
            Step::Dtmf('#'),
            Step::Wait(30.0),
        ],
    );
    caller(&t, "says-nothing", vec![Step::Answer, Step::Wait(60.0)]);
    t.sim
        .place_inbound_call("300", "Ivan <5551009>", "presses-hash")
        .expect("call");
    t.sim
        .place_inbound_call("300", "Judy <5551010>", "says-nothing")
        .expect("call");
    wait_until("greetings playing", || {
        t.sim
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/play"))
            .count()
            == 2
    })
    .await;
    t.sim.advance(5.8); // vm-intro is 5.65 s
    wait_recording(&t, &s, "both recording", 2).await;
    t.sim.advance(12.0);
    let rows = wait_rows(&s.svc.db, "both done", 2, |r| r.state == "done").await;
    let by_caller = |name: &str| {
        rows.iter()
            .find(|r| r.caller_name.as_deref() == Some(name))
            .expect("row")
            .clone()
    };
    assert_eq!(
        by_caller("Ivan").duration_seconds,
        Some(3),
        "# ends it, keypress trimmed"
    );
    assert_eq!(
        by_caller("Judy").duration_seconds,
        Some(0),
        "silence ends it"
    );
    wait_until("both calls hung up", || quiet(&t)).await;
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

fn hunt_flow(mode: &str, members: &[&str]) -> String {
    let members: Vec<String> = members.iter().map(|m| format!("\"{m}\"")).collect();
    format!(
        r#"
[flow]
numbers = ["400"]
start = "team"
[nodes.team]
type = "hunt_group"
mode = "{mode}"
members = [{}]
ring_seconds = 2
record_call = true
on_failure = "bye"
[nodes.bye]
type = "hangup"
"#,
        members.join(", ")
    )
}

#[tokio::test]
async fn simultaneous_hunt_first_answer_wins_others_hung_up() {
    let t = start_sim(0.0).await;
    let s = start_service(
        &t,
        &[(
            "sales.toml",
            &hunt_flow(
                "simultaneous",
                &["PJSIP/noanswer", "PJSIP/202", "PJSIP/busy"],
            ),
        )],
    )
    .await;
    t.sim
        .place_inbound_call("400", "Carol <5551003>", "talk")
        .expect("call");
    let rows = wait_recording(&t, &s, "hunt recording", 1).await;
    assert_eq!(rows[0].callee.as_deref(), Some("PJSIP/202"));
    assert_eq!(rows[0].node_type.as_deref(), Some("hunt_group"));
    // The member still ringing was hung up by the app.
    let hangups = t
        .sim
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE" && r.path.starts_with("/channels/"))
        .count();
    assert!(hangups >= 1);
    wait_until("only caller and winner left", || {
        t.sim.with_world(|w| w.channels().len()) == 4
    })
    .await;
    t.sim.advance(17.0);
    wait_rows(&s.svc.db, "done", 1, |r| r.state == "done").await;
    wait_until("torn down", || quiet(&t)).await;
    stop(s).await;
}

#[tokio::test]
async fn sequential_hunt_moves_on_after_busy_and_no_answer() {
    let t = start_sim(0.0).await;
    let s = start_service(
        &t,
        &[(
            "sales.toml",
            &hunt_flow("sequential", &["PJSIP/busy", "PJSIP/noanswer", "PJSIP/203"]),
        )],
    )
    .await;
    t.sim
        .place_inbound_call("400", "Carol <5551003>", "talk")
        .expect("call");
    wait_until("second member ringing", || {
        t.sim
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path == "/channels")
            .count()
            == 2
    })
    .await;
    t.sim.advance(2.5);
    let rows = wait_recording(&t, &s, "third member recorded", 1).await;
    assert_eq!(rows[0].callee.as_deref(), Some("PJSIP/203"));
    t.sim.advance(17.0);
    wait_until("torn down", || quiet(&t)).await;
    stop(s).await;
}

#[tokio::test]
async fn hunt_with_nobody_answering_takes_the_failure_edge() {
    let t = start_sim(0.0).await;
    let s = start_service(
        &t,
        &[(
            "sales.toml",
            &hunt_flow("simultaneous", &["PJSIP/noanswer", "PJSIP/busy"]),
        )],
    )
    .await;
    t.sim
        .place_inbound_call("400", "Carol <5551003>", "talk")
        .expect("call");
    wait_until("ringing", || {
        t.sim
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path == "/channels")
            .count()
            == 2
    })
    .await;
    t.sim.advance(2.5);
    wait_until("hung up by the failure edge", || quiet(&t)).await;
    assert!(record_requests(&t).is_empty());
    stop(s).await;
}

fn queue_flow(strategy: &str, agents: &[&str], max_wait: u32) -> String {
    let agents: Vec<String> = agents.iter().map(|m| format!("\"{m}\"")).collect();
    format!(
        r#"
[flow]
numbers = ["500"]
start = "q"
[nodes.q]
type = "queue"
agents = [{}]
strategy = "{strategy}"
ring_timeout = 30
max_wait = {max_wait}
record_call = true
overflow = "fallback"
[nodes.fallback]
type = "transfer"
target = "PJSIP/209"
record_call = true
"#,
        agents.join(", ")
    )
}

#[tokio::test]
async fn queue_round_robin_spreads_calls_and_busy_agents_are_not_offered() {
    let t = start_sim(0.0).await;
    let s = start_service(
        &t,
        &[(
            "helpdesk.toml",
            &queue_flow("round_robin", &["PJSIP/201", "PJSIP/202"], 60),
        )],
    )
    .await;
    t.sim
        .place_inbound_call("500", "Caller One <5550001>", "talk")
        .expect("call");
    wait_recording(&t, &s, "first answered", 1).await;
    t.sim
        .place_inbound_call("500", "Caller Two <5550002>", "talk")
        .expect("call");
    let rows = wait_recording(&t, &s, "second answered", 2).await;
    let callees: Vec<&str> = rows.iter().filter_map(|r| r.callee.as_deref()).collect();
    assert_eq!(
        callees,
        vec!["PJSIP/201", "PJSIP/202"],
        "each agent gets one call"
    );
    // Both agents busy: a third caller waits in the holding bridge, offered to nobody.
    t.sim
        .place_inbound_call("500", "Caller Three <5550003>", "talk")
        .expect("call");
    wait_until("third waits on hold", || {
        t.sim.with_world(|w| {
            w.bridges()
                .iter()
                .any(|b| b.bridge_type == "holding" && b.channels.len() == 1)
        })
    })
    .await;
    let originates = t
        .sim
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/channels")
        .count();
    assert_eq!(originates, 2, "no busy agent was offered the third call");
    // Agents hang up after 16.2 s: the waiting caller gets the next free agent.
    t.sim.advance(17.0);
    wait_until("third caller offered", || {
        t.sim
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path == "/channels")
            .count()
            == 3
    })
    .await;
    let rows = wait_rows(&s.svc.db, "third answered", 3, |_| true).await;
    assert_eq!(rows[2].caller_name.as_deref(), Some("Caller Three"));
    t.sim.advance(17.0);
    wait_until("torn down", || quiet(&t)).await;
    stop(s).await;
}

#[tokio::test]
async fn queue_ringall_offers_every_free_agent_and_longest_idle_picks_the_rested_one() {
    let t = start_sim(0.0).await;
    let s = start_service(
        &t,
        &[
            (
                "ringall.toml",
                &queue_flow("ringall", &["PJSIP/noanswer", "PJSIP/202"], 60),
            ),
            (
                "idle.toml",
                &queue_flow("longest_idle", &["PJSIP/211", "PJSIP/212"], 60)
                    .replace("\"500\"", "\"510\""),
            ),
        ],
    )
    .await;
    t.sim
        .place_inbound_call("500", "Ring All <5550010>", "talk")
        .expect("call");
    let rows = wait_rows(&s.svc.db, "ringall answered", 1, |_| true).await;
    assert_eq!(rows[0].callee.as_deref(), Some("PJSIP/202"));
    assert_eq!(
        t.sim
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path == "/channels")
            .count(),
        2,
        "both agents rung"
    );

    // Longest idle: 211 takes a call and finishes; the next call goes to 212 (never used) and
    // the one after to 211 (idle longer than 212, which just ended).
    t.sim
        .place_inbound_call("510", "Idle One <5550011>", "talk")
        .expect("call");
    wait_rows(&s.svc.db, "first idle call", 2, |_| true).await;
    t.sim.advance(17.0);
    wait_rows(&s.svc.db, "finished", 2, |r| r.state == "done").await;
    t.sim
        .place_inbound_call("510", "Idle Two <5550012>", "talk")
        .expect("call");
    let rows = wait_rows(&s.svc.db, "second idle call", 3, |_| true).await;
    assert_eq!(rows[1].callee.as_deref(), Some("PJSIP/211"));
    assert_eq!(rows[2].callee.as_deref(), Some("PJSIP/212"));
    t.sim.advance(17.0);
    wait_until("torn down", || quiet(&t)).await;
    stop(s).await;
}

#[tokio::test]
async fn queue_overflows_after_max_wait_and_records_the_new_segment() {
    let t = start_sim(0.0).await;
    let s = start_service(
        &t,
        &[(
            "helpdesk.toml",
            &queue_flow("ringall", &["PJSIP/noanswer"], 60),
        )],
    )
    .await;
    t.sim
        .place_inbound_call("500", "Waiter <5550020>", "talk")
        .expect("call");
    // The queue's deadline is armed before its agents are rung.
    wait_until("on hold and the agent ringing", || {
        t.sim.with_world(|w| {
            w.channels()
                .iter()
                .any(|c| c.name.starts_with("PJSIP/noanswer"))
        })
    })
    .await;
    // Nothing overflows before max_wait: the caller is still on hold, in a holding bridge.
    assert!(t
        .sim
        .with_world(|w| w.bridges().iter().any(|b| b.bridge_type == "holding")));
    // max_wait runs on the service's clock: moved on past it, the caller overflows to the
    // transfer without the test waiting a minute.
    s.svc.clock.advance(std::time::Duration::from_secs(61));
    let rows = wait_recording(&t, &s, "overflow transfer recorded", 1).await;
    assert_eq!(
        (rows[0].node.as_deref(), rows[0].callee.as_deref()),
        (Some("fallback"), Some("PJSIP/209"))
    );
    assert!(
        t.sim
            .with_world(|w| w.bridges().iter().all(|b| b.bridge_type == "mixing")),
        "holding bridge destroyed"
    );
    t.sim.advance(17.0);
    wait_until("torn down", || quiet(&t)).await;
    stop(s).await;
}

#[tokio::test]
async fn caller_leaving_the_queue_ends_cleanly() {
    let t = start_sim(0.0).await;
    let s = start_service(
        &t,
        &[(
            "helpdesk.toml",
            &queue_flow("ringall", &["PJSIP/noanswer"], 60),
        )],
    )
    .await;
    caller(
        &t,
        "gives-up",
        vec![Step::Answer, Step::Wait(2.0), Step::Hangup],
    );
    t.sim
        .place_inbound_call("500", "Quitter <5550021>", "gives-up")
        .expect("call");
    wait_until("on hold and agent ringing", || {
        t.sim.with_world(|w| w.channels().len()) == 4
    })
    .await;
    t.sim.advance(2.5);
    wait_until("torn down", || quiet(&t)).await;
    assert!(record_requests(&t).is_empty());
    stop(s).await;
}

async fn api(
    method: reqwest::Method,
    url: String,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    api_with(common::authed(), method, url, body).await
}

async fn api_with(
    client: reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = client
        .request(method, url)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (
        status,
        response.json().await.unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn outbound_calls_follow_record_outbound_calls() {
    let t = start_sim(0.0).await;
    let s = start_service(&t, &[]).await;
    let mut conn = s.svc.db.pool.acquire().await.expect("connection");
    ari_recorder::access::calls::set_endpoints(&mut conn, "default", &["PJSIP/2*".into()])
        .await
        .expect("the operator allows the tenant's phones");
    drop(conn);
    let (status, body) = api(
        reqwest::Method::POST,
        format!("{}/api/calls", s.base),
        serde_json::json!({"from": "PJSIP/201", "to": "PJSIP/202"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    wait_until("both legs bridged", || {
        t.sim
            .with_world(|w| w.bridges().iter().any(|b| b.channels.len() == 2))
    })
    .await;
    assert!(record_requests(&t).is_empty(), "setting off: not recorded");
    t.sim.advance(17.0);
    wait_until("over", || quiet(&t)).await;

    let (status, body) = api(
        reqwest::Method::PATCH,
        format!("{}/api/settings", s.base),
        serde_json::json!({"record_outbound_calls": true}),
    )
    .await;
    assert_eq!(
        (status, body["record_outbound_calls"].as_bool()),
        (200, Some(true))
    );
    let (status, _) = api(
        reqwest::Method::POST,
        format!("{}/api/calls", s.base),
        serde_json::json!({"from": "PJSIP/203", "to": "PJSIP/204"}),
    )
    .await;
    assert_eq!(status, 202);
    let rows = wait_recording(&t, &s, "outbound recorded", 1).await;
    assert_eq!(
        (
            rows[0].direction.as_str(),
            rows[0].caller_number.as_deref(),
            rows[0].callee.as_deref()
        ),
        ("outbound", Some("PJSIP/203"), Some("PJSIP/204"))
    );
    t.sim.advance(17.0);
    wait_until("over", || quiet(&t)).await;

    let (status, body) = api(
        reqwest::Method::POST,
        format!("{}/api/calls", s.base),
        serde_json::json!({"from": "nonsense", "to": "PJSIP/1"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "bad_request");
    assert!(
        body["message"].as_str().unwrap_or("").contains("from"),
        "{body}"
    );
    stop(s).await;
}

#[tokio::test]
async fn patch_record_call_applies_to_the_next_call_and_errors_are_json() {
    let t = start_sim(0.0).await;
    let s = start_service(&t, &[("support.toml", &transfer_flow("PJSIP/201", false))]).await;
    // The flow belongs to tenant acme: the default tenant's admin neither sees nor edits it.
    let (status, flows) = api(
        reqwest::Method::GET,
        format!("{}/api/flows", s.base),
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(
        (status, flows["flows"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    let (status, _) = api(
        reqwest::Method::PATCH,
        format!("{}/api/flows/support/nodes/desk", s.base),
        serde_json::json!({"record_call": true}),
    )
    .await;
    assert_eq!(status, 404, "another tenant's flow is invisible");
    let acme = common::user_token(
        &s.svc.db,
        "acme-manager",
        "manager",
        "acme",
        &[],
        None,
        &[ari_recorder::access::Scope::FlowsWrite],
    )
    .await;
    let acme_client = || common::bearer(&acme);
    let (status, flows) = api_with(
        acme_client(),
        reqwest::Method::GET,
        format!("{}/api/flows", s.base),
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(flows["flows"][0]["name"], "support");
    let (status, node) = api_with(
        acme_client(),
        reqwest::Method::PATCH,
        format!("{}/api/flows/support/nodes/desk", s.base),
        serde_json::json!({"record_call": true}),
    )
    .await;
    assert_eq!(
        (status, node["record_call"].as_bool()),
        (200, Some(true)),
        "{node}"
    );
    let text = std::fs::read_to_string(s.dialplans.join("support.toml")).expect("file");
    assert!(text.contains("record_call = true"), "written back: {text}");
    t.sim
        .place_inbound_call("100", "Alice <5551001>", "talk")
        .expect("call");
    wait_recording(&t, &s, "now recorded", 1).await;

    let (status, body) = api_with(
        acme_client(),
        reqwest::Method::PATCH,
        format!("{}/api/flows/nope/nodes/desk", s.base),
        serde_json::json!({"record_call": true}),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (status, body) = api_with(
        acme_client(),
        reqwest::Method::PATCH,
        format!("{}/api/flows/support/nodes/sorry", s.base),
        serde_json::json!({"record_call": true}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = api_with(
        acme_client(),
        reqwest::Method::PATCH,
        format!("{}/api/flows/support/nodes/desk", s.base),
        serde_json::json!({"record_call": "yes"}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );
    t.sim.advance(17.0);
    wait_until("over", || quiet(&t)).await;
    stop(s).await;
}

#[tokio::test]
async fn hot_reload_swaps_good_edits_and_refuses_broken_ones() {
    let t = start_sim(0.0).await;
    let s = start_service(&t, &[("support.toml", &transfer_flow("PJSIP/201", false))]).await;
    // A good edit: a new number appears.
    std::fs::write(
        s.dialplans.join("support.toml"),
        transfer_flow("PJSIP/201", true).replace("[\"100\"]", "[\"100\", \"101\"]"),
    )
    .expect("edit");
    let flows = s.svc.flows.store().clone();
    wait_until("new version in force", || {
        flows.current().flow_for_number("101").is_some()
    })
    .await;
    // A broken edit: refused, the last good version keeps running.
    let refusals = flows.refusals();
    std::fs::write(
        s.dialplans.join("support.toml"),
        "[flow]\nnumbers = [\"100\"]\nstart = \"desk\"\n[nodes.desk]\ntype = \"teleport\"\n",
    )
    .expect("edit");
    wait_until("the broken edit read and refused", || {
        flows.refusals() > refusals
    })
    .await;
    assert!(
        flows.current().flow_for_number("101").is_some(),
        "last good version still in force"
    );
    t.sim
        .place_inbound_call("101", "Alice <5551001>", "talk")
        .expect("call");
    wait_recording(&t, &s, "recorded with the good version", 1).await;
    t.sim.advance(17.0);
    wait_until("over", || quiet(&t)).await;
    stop(s).await;
}

#[tokio::test]
async fn recording_failed_after_201_is_stored_and_the_call_goes_on() {
    let t = start_sim(0.0).await;
    let s = start_service(&t, &[("support.toml", &transfer_flow("PJSIP/201", true))]).await;
    t.sim.fail_next_record("Simulated disk failure");
    t.sim
        .place_inbound_call("100", "Alice <5551001>", "talk")
        .expect("call");
    let rows = wait_rows(&s.svc.db, "failed row", 1, |r| r.state == "failed").await;
    assert_eq!(
        rows[0].failure_cause.as_deref(),
        Some("Simulated disk failure")
    );
    assert!(
        t.sim
            .with_world(|w| w.bridges().iter().any(|b| b.channels.len() == 2)),
        "still talking"
    );
    t.sim.advance(17.0);
    wait_until("over", || quiet(&t)).await;
    stop(s).await;
}

#[tokio::test]
async fn missing_recordings_folder_stores_the_refusal_and_the_call_goes_on() {
    let t = start_sim(0.0).await;
    let s = start_service(&t, &[("support.toml", &transfer_flow("PJSIP/201", true))]).await;
    std::fs::remove_dir_all(&t.recordings).expect("remove");
    t.sim
        .place_inbound_call("100", "Alice <5551001>", "talk")
        .expect("call");
    let rows = wait_rows(&s.svc.db, "refused row", 1, |r| r.state == "failed").await;
    assert!(
        rows[0]
            .failure_cause
            .as_deref()
            .unwrap_or("")
            .starts_with("500"),
        "{rows:?}"
    );
    t.sim.advance(17.0);
    wait_until("over", || quiet(&t)).await;
    stop(s).await;
}

#[tokio::test]
async fn a_dropped_socket_mid_call_keeps_the_recording_and_ends_cleanly_after() {
    let t = start_sim(0.0).await;
    let s = start_service(&t, &[("support.toml", &transfer_flow("PJSIP/201", true))]).await;
    t.sim
        .place_inbound_call("100", "Alice <5551001>", "talk")
        .expect("call");
    wait_recording(&t, &s, "recording", 1).await;
    let reconnects = s.svc.metrics.reconnects();
    t.sim.drop_websockets();
    // While the app is away the agent hangs up; that event is lost.
    t.sim.advance(17.0);
    wait_until("reconnected", || {
        s.svc.metrics.reconnects() > reconnects && s.svc.metrics.ari_connected()
    })
    .await;
    let rows = wait_rows(&s.svc.db, "finished after resync", 1, |r| r.state == "done").await;
    // The bridge kept recording the caller for all 17 simulated seconds the app was away.
    assert_eq!(rows[0].duration_seconds, Some(17));
    wait_until("over", || quiet(&t)).await;
    stop(s).await;
}

#[tokio::test]
async fn calls_found_after_a_restart_without_saved_state_are_ended_cleanly() {
    let t = start_sim(0.0).await;
    let s = start_service(&t, &[("support.toml", &transfer_flow("PJSIP/201", true))]).await;
    t.sim
        .place_inbound_call("100", "Alice <5551001>", "talk")
        .expect("call");
    wait_recording(&t, &s, "recording", 1).await;
    stop(s).await;
    assert!(
        !quiet(&t),
        "calls in progress are left to Asterisk on shutdown"
    );
    // A new start on another database knows nothing of the call: it cannot resume it. Asked
    // to (END_UNRESUMABLE_CALLS), it ends the call; by default it would leave the conversation
    // to Asterisk (restart::a_conversation_with_no_saved_state_is_left_to_asterisk).
    let other = format!("sqlite://{}/other.db?mode=rwc", t.dir.path().display());
    let s = common::start_service_with(&t, &[], &other, &[("END_UNRESUMABLE_CALLS", "true")]).await;
    wait_until(
        "restarted service ends the orphaned call and its bridge",
        || quiet(&t),
    )
    .await;
    stop(s).await;
}

#[tokio::test]
async fn two_hundred_concurrent_calls_every_recording_accounted_for() {
    let t = start_sim(0.0).await;
    let vm = r#"
[flow]
numbers = ["300"]
start = "vm"
[nodes.vm]
type = "voicemail"
mailbox = "general"
max_duration = 60
max_silence = 10
"#;
    let s = start_service(
        &t,
        &[
            ("support.toml", &transfer_flow("PJSIP/201", true)),
            ("vm.toml", vm),
        ],
    )
    .await;
    caller(
        &t,
        "short-message",
        vec![Step::Answer, Step::Talk(2.0), Step::Hangup],
    );
    for i in 0..200 {
        let (number, behaviour) = if i % 2 == 0 {
            ("100", "talk")
        } else {
            ("300", "short-message")
        };
        t.sim
            .place_inbound_call(number, &format!("Caller {i} <555{i:04}>"), behaviour)
            .expect("call");
    }
    wait_recording(&t, &s, "200 recordings started", 200).await;
    t.sim.advance(17.0);
    let rows = wait_rows(&s.svc.db, "200 recordings finished", 200, |r| {
        r.state == "done"
    })
    .await;
    for row in &rows {
        let ext = if row.format == "wav" { "wav" } else { "ulaw" };
        assert!(
            t.recordings
                .join(format!("{}.{ext}", row.recording_name))
                .is_file(),
            "{row:?}"
        );
    }
    assert_eq!(rows.iter().filter(|r| r.format == "wav").count(), 100);
    wait_until("all 200 calls torn down", || quiet(&t)).await;
    // Asterisk's side is empty; each call's task ends once it has read its last events.
    wait_until("every call's task ended", || {
        s.svc.flows.calls_in_progress() == 0
    })
    .await;
    stop(s).await;
}

#[tokio::test]
async fn a_caller_waiting_in_the_app_before_the_service_connects_gets_the_flow() {
    let t = start_sim(0.0).await;
    // The caller entered Stasis while an earlier ari-recorder was connected, which then went
    // away (Stasis() would refuse a call with no app connected at all): no StasisStart will
    // come to the new one.
    let (_, earlier) = common::listen_sim(&t.sim, "recorder").await;
    t.sim
        .place_inbound_call("100", "Early <5551099>", "talk")
        .expect("call");
    t.sim.drop_websockets();
    earlier.abort();
    let s = start_service(&t, &[("support.toml", &transfer_flow("PJSIP/201", true))]).await;
    let rows = wait_recording(&t, &s, "recorded", 1).await;
    assert_eq!(rows[0].caller_name.as_deref(), Some("Early"));
    t.sim.advance(16.5);
    wait_until("over", || quiet(&t)).await;
    stop(s).await;
}

#[tokio::test]
async fn hunt_and_queue_with_record_call_off_never_record() {
    let t = start_sim(0.0).await;
    let hunt = hunt_flow("simultaneous", &["PJSIP/202"])
        .replace("record_call = true", "record_call = false");
    let queue = queue_flow("ringall", &["PJSIP/203"], 60)
        .replace("record_call = true", "record_call = false");
    let s = start_service(&t, &[("sales.toml", &hunt), ("helpdesk.toml", &queue)]).await;
    t.sim
        .place_inbound_call("400", "Hunt <5550030>", "talk")
        .expect("call");
    t.sim
        .place_inbound_call("500", "Queue <5550031>", "talk")
        .expect("call");
    wait_until("both bridged", || {
        t.sim
            .with_world(|w| w.bridges().iter().filter(|b| b.channels.len() == 2).count() == 2)
    })
    .await;
    t.sim.advance(16.5);
    wait_until("over", || quiet(&t)).await;
    assert!(record_requests(&t).is_empty());
    stop(s).await;
}

#[tokio::test]
async fn voicemail_stops_at_max_duration_and_unreachable_targets_fail_over() {
    let t = start_sim(0.0).await;
    let flow = r#"
[flow]
numbers = ["100"]
start = "desk"
[nodes.desk]
type = "transfer"
target = "Local/999@nowhere"
record_call = true
on_failure = "vm"
[nodes.vm]
type = "voicemail"
mailbox = "support"
beep = false
max_duration = 2
max_silence = 10
"#;
    let s = start_service(&t, &[("support.toml", flow)]).await;
    caller(&t, "talks-on", vec![Step::Answer, Step::Talk(60.0)]);
    t.sim
        .place_inbound_call("100", "Long <5550040>", "talks-on")
        .expect("call");
    let rows = wait_recording(&t, &s, "voicemail after the failed dial", 1).await;
    assert_eq!(rows[0].format, "ulaw");
    t.sim.advance(3.0);
    let rows = wait_rows(&s.svc.db, "capped", 1, |r| r.state == "done").await;
    assert_eq!(rows[0].duration_seconds, Some(2));
    wait_until("hung up after the message", || quiet(&t)).await;
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

/// 16-bit samples of a recording on disk (after its 44-byte header).
fn samples_of(t: &TestSim, name: &str) -> Vec<i16> {
    let bytes = std::fs::read(t.recordings.join(format!("{name}.wav"))).expect("recording");
    bytes[44..]
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// Issue 12: a live recording is paused (muted by default) by the agent on the call, through
/// the API; others may not; the muted stretch is silence in the file and stored with it.
#[tokio::test]
async fn the_agent_mutes_a_live_recording_and_the_stretch_is_stored() {
    use ari_recorder::access::Scope;
    use common::{bearer, send, user_token};
    let t = start_sim(0.0).await;
    let s = start_service(&t, &[("support.toml", &transfer_flow("PJSIP/201", true))]).await;
    let token = |name: &'static str, role: &'static str, extension: Option<&'static str>| {
        let db = s.svc.db.clone();
        async move {
            bearer(
                &user_token(
                    &db,
                    name,
                    role,
                    "acme",
                    &[],
                    extension,
                    &[Scope::RecordingsRead, Scope::FlowsWrite],
                )
                .await,
            )
        }
    };
    let agent = token("agent", "staff", Some("PJSIP/201")).await;
    let bystander = token("bystander", "staff", None).await;
    let other_tenant = common::authed();
    t.sim
        .place_inbound_call("100", "Alice <5551001>", "talk")
        .expect("call");
    let rows = wait_recording(&t, &s, "recording", 1).await;
    let name = rows[0].recording_name.clone();
    let listed = send(agent.get(format!("{}/api/calls", s.base))).await;
    let calls = listed.json()["calls"].as_array().cloned().expect("calls");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["recording"]["state"], "recording");
    assert_eq!(calls[0]["callee"], "PJSIP/201");
    let id = calls[0]["id"].as_str().expect("id").to_string();
    assert_eq!(
        send(other_tenant.get(format!("{}/api/calls", s.base)))
            .await
            .json()["calls"],
        serde_json::json!([])
    );
    t.sim.advance(2.0);
    let pause = |client: &reqwest::Client| {
        send(client.post(format!("{}/api/calls/{id}/recording/pause", s.base)))
    };
    let refused = pause(&bystander).await;
    assert_eq!(
        (refused.status, refused.error().as_str()),
        (403, "role_restriction")
    );
    let hidden = pause(&other_tenant).await;
    assert_eq!((hidden.status, hidden.error().as_str()), (404, "not_found"));
    let paused = pause(&agent).await;
    assert_eq!(paused.status, 200, "{:?}", paused.json());
    assert_eq!(paused.json()["recording"]["state"], "muted");
    t.sim.advance(3.0);
    let resumed = send(agent.post(format!("{}/api/calls/{id}/recording/resume", s.base))).await;
    assert_eq!(resumed.json()["recording"]["state"], "recording");
    t.sim.advance(11.5);
    wait_rows(&s.svc.db, "finished", 1, |r| r.state == "done").await;
    wait_until("torn down", || quiet(&t)).await;

    // Simulated seconds 2 to 5 are silence; the talk around them is not.
    let samples = samples_of(&t, &name);
    let second = |s: f64| (s * 8000.0) as usize;
    assert!(samples[second(2.1)..second(4.9)].iter().all(|v| *v == 0));
    assert!(samples[second(0.5)..second(1.9)].iter().any(|v| *v != 0));
    assert!(samples[second(5.1)..second(8.0)].iter().any(|v| *v != 0));
    // The stretch is stored with the recording, with who asked.
    let spans: Vec<(String, i64, i64, String)> = sqlx::query_as(
        "SELECT mode, from_offset_ms, to_offset_ms, by_actor FROM recording_redactions WHERE recording_name = $1",
    )
    .bind(&name)
    .fetch_all(&s.svc.db.pool)
    .await
    .expect("spans");
    assert_eq!(spans.len(), 1, "{spans:?}");
    let (mode, from, to, by) = &spans[0];
    assert_eq!(mode, "mute");
    assert!(0 <= *from && from <= to, "{spans:?}");
    assert!(by.ends_with(":agent"), "{by}");
    common::wait_ready(&s.svc.db, 1).await;
    let (recording_id,): (i64,) = sqlx::query_as("SELECT id FROM recordings WHERE name = $1")
        .bind(&name)
        .fetch_one(&s.svc.db.pool)
        .await
        .expect("indexed");
    let shown = send(agent.get(format!("{}/api/recordings/{recording_id}", s.base))).await;
    assert_eq!(
        shown.json()["redactions"][0]["mode"],
        "mute",
        "{:?}",
        shown.json()
    );
    let audit: Vec<(String, String)> = sqlx::query_as(
        "SELECT action, outcome FROM audit_events WHERE action LIKE 'recording_%' ORDER BY seq",
    )
    .fetch_all(&s.svc.db.pool)
    .await
    .expect("audit");
    let audit: Vec<(&str, &str)> = audit
        .iter()
        .map(|(a, o)| (a.as_str(), o.as_str()))
        .collect();
    assert_eq!(
        audit,
        [
            ("recording_pause", "role_restriction"),
            ("recording_pause", "not_found"),
            ("recording_pause", "allowed"),
            ("recording_resume", "allowed"),
        ]
    );
    stop(s).await;
}

/// With `redaction_mode = "pause"` the paused audio is left out of the file altogether.
#[tokio::test]
async fn in_pause_mode_the_paused_audio_is_left_out() {
    let t = start_sim(0.0).await;
    let s = start_service(
        &t,
        &[
            ("support.toml", &transfer_flow("PJSIP/201", true)),
            ("settings.toml", "redaction_mode = \"pause\"\n"),
        ],
    )
    .await;
    t.sim
        .place_inbound_call("100", "Alice <5551001>", "talk")
        .expect("call");
    let rows = wait_recording(&t, &s, "recording", 1).await;
    let admin = common::authed();
    // The flow's tenant is acme: the default tenant's admin sees nothing of it.
    let acme_admin = common::tenant_admin(&s.svc.db, "acme").await;
    drop(admin);
    let calls = common::send(acme_admin.get(format!("{}/api/calls", s.base))).await;
    let id = calls.json()["calls"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    t.sim.advance(2.0);
    let paused =
        common::send(acme_admin.post(format!("{}/api/calls/{id}/recording/pause", s.base))).await;
    assert_eq!(paused.json()["recording"]["state"], "paused");
    t.sim.advance(4.0);
    common::send(acme_admin.post(format!("{}/api/calls/{id}/recording/resume", s.base))).await;
    t.sim.advance(10.5);
    wait_rows(&s.svc.db, "finished", 1, |r| r.state == "done").await;
    wait_until("torn down", || quiet(&t)).await;
    let samples = samples_of(&t, &rows[0].recording_name);
    let seconds = samples.len() as f64 / 8000.0;
    // About 16.2 s of call, 4 s of it paused.
    assert!((11.5..13.0).contains(&seconds), "{seconds} s");
    let (from, to): (i64, i64) = sqlx::query_as(
        "SELECT from_offset_ms, to_offset_ms FROM recording_redactions WHERE recording_name = $1",
    )
    .bind(&rows[0].recording_name)
    .fetch_one(&s.svc.db.pool)
    .await
    .expect("span");
    assert_eq!(
        from, to,
        "a pause leaves no audio in the file: a point, not a stretch"
    );
    stop(s).await;
}

/// Waits until the service shows the call's recording in `state` (`muted`, `recording`).
async fn wait_recording_state(s: &common::TestService, state: &'static str) {
    let flows = s.svc.flows.clone();
    wait_until(state, move || {
        flows
            .live_calls()
            .first()
            .is_some_and(|c| c.recording_state == Some(state))
    })
    .await;
}

/// Who or what redacted each stretch of a recording, in order.
async fn redaction_authors(s: &common::TestService, recording: &str) -> Vec<String> {
    sqlx::query_as::<_, (String,)>(
        "SELECT by_actor FROM recording_redactions WHERE recording_name = $1 ORDER BY id",
    )
    .bind(recording)
    .fetch_all(&s.svc.db.pool)
    .await
    .expect("spans")
    .into_iter()
    .map(|(by,)| by)
    .collect()
}

/// Lets a call whose keys mute its recording at `mute_at` simulated seconds run to its end:
/// time stands still while the service answers each key (muted, then recording again 3 s
/// later). Returns the recording's samples.
async fn record_with_keys(
    t: &TestSim,
    s: &common::TestService,
    name: &str,
    mute_at: f64,
) -> Vec<i16> {
    t.sim.advance(mute_at);
    wait_recording_state(s, "muted").await;
    t.sim.advance(3.0);
    wait_recording_state(s, "recording").await;
    t.sim.advance(20.0 - mute_at - 3.0);
    wait_rows(&s.svc.db, "finished", 1, |r| r.state == "done").await;
    wait_until("torn down", || quiet(t)).await;
    samples_of(t, name)
}

fn feature_code_flow(leg: &str) -> String {
    transfer_flow("PJSIP/201", true).replace(
        "tenant = \"acme\"",
        &format!(
            "tenant = \"acme\"\npause_code = \"*1\"\nresume_code = \"*2\"\nfeature_code_leg = \"{leg}\""
        ),
    )
}

/// Issue 12: feature codes pause and resume the recording from a keypad, heard on one leg
/// only (in a bridge a key shows on both parties' channels).
#[tokio::test]
async fn feature_codes_from_the_callers_keypad_mute_the_recording() {
    let t = start_sim(0.0).await;
    let s = start_service(&t, &[("support.toml", &feature_code_flow("caller"))]).await;
    // Presses *1 after 3 s and *2 3 s later (dtmf_in_bridge's caller).
    t.sim
        .place_inbound_call("100", "Olivia <5551013>", "talkdtmf")
        .expect("call");
    let rows = wait_recording(&t, &s, "recording", 1).await;
    let samples = record_with_keys(&t, &s, &rows[0].recording_name, 3.2).await;
    let at = |s: f64| (s * 8000.0) as usize;
    assert!(samples[at(3.3)..at(5.7)].iter().all(|v| *v == 0), "muted");
    assert!(samples[at(0.5)..at(2.8)].iter().any(|v| *v != 0));
    assert!(samples[at(6.5)..at(9.0)].iter().any(|v| *v != 0));
    assert_eq!(
        redaction_authors(&s, &rows[0].recording_name).await,
        ["dtmf:caller"]
    );
    stop(s).await;
}

#[tokio::test]
async fn feature_codes_on_the_agents_leg_ignore_the_callers_keys() {
    let t = start_sim(0.0).await;
    caller(
        &t,
        "PJSIP/201",
        vec![
            Step::Answer,
            Step::Talk(8.0),
            Step::Dtmf('*'),
            Step::Dtmf('1'),
            Step::Talk(3.0),
            Step::Dtmf('*'),
            Step::Dtmf('2'),
            Step::Talk(3.0),
            Step::Hangup,
        ],
    );
    let s = start_service(&t, &[("support.toml", &feature_code_flow("agent"))]).await;
    // The caller keys *1 and *2 too, at 3 and 6 s: not the agent's leg, not counted.
    t.sim
        .place_inbound_call("100", "Olivia <5551013>", "talkdtmf")
        .expect("call");
    let rows = wait_recording(&t, &s, "recording", 1).await;
    // The caller's keys come and go unheeded; then the agent's.
    let samples = record_with_keys(&t, &s, &rows[0].recording_name, 8.2).await;
    let at = |s: f64| (s * 8000.0) as usize;
    assert!(
        samples[at(3.3)..at(5.7)].iter().any(|v| *v != 0),
        "the caller's keys are ignored"
    );
    assert!(
        samples[at(8.3)..at(10.7)].iter().all(|v| *v == 0),
        "the agent's keys mute"
    );
    assert_eq!(
        redaction_authors(&s, &rows[0].recording_name).await,
        ["dtmf:agent"]
    );
    stop(s).await;
}

/// The `not_recorded` row of a bridged call and its reason, once listed.
async fn not_recorded_reason(s: &common::TestService) -> String {
    for _ in 0..1000 {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT reason FROM recordings WHERE status = 'not_recorded'")
                .fetch_optional(&s.svc.db.pool)
                .await
                .expect("row");
        if let Some((reason,)) = row {
            return reason;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no not_recorded row");
}

/// Issue 12: `recording_enabled = false` records no call whatever the node says, names itself
/// as the reason, and leaves voicemail working.
#[tokio::test]
async fn the_master_switch_off_records_no_call_but_voicemail() {
    let t = start_sim(0.0).await;
    let voicemail = r#"
[flow]
numbers = ["300"]
start = "vm"
[nodes.vm]
type = "voicemail"
mailbox = "general"
max_duration = 60
max_silence = 10
"#;
    let s = start_service(
        &t,
        &[
            ("support.toml", &transfer_flow("PJSIP/201", true)),
            ("general.toml", voicemail),
            ("settings.toml", "recording_enabled = false\n"),
        ],
    )
    .await;
    t.sim
        .place_inbound_call("100", "Alice <5551001>", "talk")
        .expect("call");
    let reason = not_recorded_reason(&s).await;
    assert!(reason.contains("recording_enabled = false"), "{reason}");
    t.sim.advance(17.0);
    wait_until("call over", || quiet(&t)).await;
    assert!(record_requests(&t).is_empty(), "no call recorded");
    caller(
        &t,
        "leaves-message",
        vec![Step::Answer, Step::Talk(3.0), Step::Hangup],
    );
    t.sim
        .place_inbound_call("300", "Carol <5551003>", "leaves-message")
        .expect("call");
    let rows = wait_recording(&t, &s, "voicemail row", 1).await;
    assert_eq!(rows[0].node_type.as_deref(), Some("voicemail"));
    t.sim.advance(4.0);
    wait_rows(&s.svc.db, "voicemail done", 1, |r| r.state == "done").await;
    stop(s).await;
}

/// `record_inbound_calls` is the default of nodes that set no `record_call`; a node's own
/// value wins; the flows API says which switch decided.
#[tokio::test]
async fn nodes_without_record_call_follow_record_inbound_calls() {
    let t = start_sim(0.0).await;
    let silent_node = transfer_flow("PJSIP/201", true).replace("record_call = true\n", "");
    let s = start_service(
        &t,
        &[
            ("support.toml", &silent_node),
            ("settings.toml", "record_inbound_calls = true\n"),
        ],
    )
    .await;
    let acme_admin = common::tenant_admin(&s.svc.db, "acme").await;
    let flows = common::send(acme_admin.get(format!("{}/api/flows", s.base))).await;
    let desk = flows.json()["flows"][0]["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["id"] == "desk").cloned())
        .expect("desk");
    assert_eq!(
        (&desk["record_call"], &desk["record_call_source"]),
        (&true.into(), &"record_inbound_calls".into())
    );
    t.sim
        .place_inbound_call("100", "Alice <5551001>", "talk")
        .expect("call");
    wait_recording(&t, &s, "recorded by the default", 1).await;
    t.sim.advance(17.0);
    wait_until("call over", || quiet(&t)).await;

    // The node's own switch wins over the default, and names itself.
    let store = s.svc.flows.store().clone();
    let reloads = store.reloads();
    std::fs::write(
        s.dialplans.join("support.toml"),
        transfer_flow("PJSIP/201", false),
    )
    .expect("edit");
    wait_until("the edit in force", || {
        store.reloads() > reloads
            && store
                .current()
                .flow_for_number("100")
                .is_some_and(|f| f.nodes["desk"].kind.record_call() == Some(false))
    })
    .await;
    t.sim
        .place_inbound_call("100", "Bob <5551002>", "talk")
        .expect("call");
    let reason = not_recorded_reason(&s).await;
    assert!(reason.contains("record_call = false"), "{reason}");
    t.sim.advance(17.0);
    wait_until("call over", || quiet(&t)).await;
    assert_eq!(record_requests(&t).len(), 1);

    // The switches change through the API too, audited, comments kept.
    let changed = common::send(
        common::authed()
            .patch(format!("{}/api/settings", s.base))
            .json(&serde_json::json!({"recording_enabled": false})),
    )
    .await;
    assert_eq!(
        changed.json()["recording_enabled"],
        false,
        "{:?}",
        changed.json()
    );
    let text = std::fs::read_to_string(s.dialplans.join("settings.toml")).expect("settings");
    assert!(
        text.contains("recording_enabled = false") && text.contains("record_inbound_calls = true"),
        "{text}"
    );
    let empty = common::send(
        common::authed()
            .patch(format!("{}/api/settings", s.base))
            .json(&serde_json::json!({})),
    )
    .await;
    assert_eq!(empty.status, 400);
    stop(s).await;
}

fn consent_flow(extra: &str) -> String {
    format!(
        r#"
[flow]
numbers = ["100"]
start = "ask"
tenant = "acme"

[nodes.ask]
type = "consent"
media = ["sound:hello-world"]
timeout = 1
retries = 1
next = "desk"
{extra}

[nodes.desk]
type = "transfer"
target = "PJSIP/201"
ring_timeout = 5
record_call = true
"#
    )
}

/// The consent stored with the call's metadata.
async fn call_consent(s: &common::TestService) -> Vec<String> {
    sqlx::query_as::<_, (String,)>("SELECT consent FROM call_recordings")
        .fetch_all(&s.svc.db.pool)
        .await
        .expect("rows")
        .into_iter()
        .map(|(c,)| c)
        .collect()
}

/// Issue 12: a consent node asks, hears one key, and the answer is the call's consent: a
/// granted call is recorded with consent `granted`, a declined one is never recorded.
#[tokio::test]
async fn the_consent_node_records_only_callers_who_agree() {
    let t = start_sim(0.0).await;
    let s = start_service(&t, &[("support.toml", &consent_flow(""))]).await;
    // Keys 1 after the prompt (1.3 s): granted.
    caller(
        &t,
        "agrees",
        vec![
            Step::Answer,
            Step::Wait(1.5),
            Step::Dtmf('1'),
            Step::Talk(20.0),
            Step::Hangup,
        ],
    );
    t.sim
        .place_inbound_call("100", "Alice <5551001>", "agrees")
        .expect("call");
    wait_until("the prompt plays", || {
        t.sim.requests().iter().any(|r| r.path.ends_with("/play"))
    })
    .await;
    t.sim.advance(1.4);
    // The prompt ended: the service arms its wait; then the key.
    let flows = s.svc.flows.clone();
    wait_until("waiting for the key", || flows.live_calls().len() == 1).await;
    t.sim.advance(0.2);
    let rows = wait_recording(&t, &s, "recorded after consent", 1).await;
    assert_eq!(call_consent(&s).await, ["granted"]);
    assert_eq!(rows[0].node.as_deref(), Some("desk"));
    t.sim.advance(20.0);
    wait_until("torn down", || quiet(&t)).await;

    // Keys 2 while the prompt plays: declined when it ends; bridged, never recorded.
    caller(
        &t,
        "declines",
        vec![
            Step::Answer,
            Step::Wait(0.3),
            Step::Dtmf('2'),
            Step::Talk(20.0),
            Step::Hangup,
        ],
    );
    t.sim
        .place_inbound_call("100", "Bob <5551002>", "declines")
        .expect("call");
    wait_until("the second prompt plays", || {
        t.sim
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/play"))
            .count()
            == 2
    })
    .await;
    t.sim.advance(1.5);
    let reason = not_recorded_reason(&s).await;
    assert_eq!(reason, "the caller declined recording");
    t.sim.advance(20.0);
    wait_until("torn down", || quiet(&t)).await;
    assert_eq!(record_requests(&t).len(), 1, "only the consenting call");
    let (consent,): (String,) =
        sqlx::query_as("SELECT consent FROM recordings WHERE status = 'not_recorded'")
            .fetch_one(&s.svc.db.pool)
            .await
            .expect("row");
    assert_eq!(consent, "denied");
    stop(s).await;
}

/// No key: the prompt is played again `retries` times, then `on_timeout` (declined by
/// default) decides; `on_granted` / `on_declined` pick the edge.
#[tokio::test]
async fn a_silent_caller_is_asked_again_then_counts_as_declined() {
    let t = start_sim(0.0).await;
    let flow = consent_flow("on_declined = \"bye\"\non_granted = \"desk\"")
        .replace("next = \"desk\"\n", "")
        + "\n[nodes.bye]\ntype = \"play_audio\"\nmedia = [\"sound:vm-goodbye\"]\n";
    let s = start_service(&t, &[("support.toml", &flow)]).await;
    t.sim
        .place_inbound_call("100", "Carol <5551003>", "silent")
        .expect("call");
    let plays = || {
        t.sim
            .requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/play"))
            .map(|r| r.query)
            .collect::<Vec<_>>()
    };
    for asked in 1..=2 {
        wait_until("the prompt plays", || plays().len() == asked).await;
        // The prompt ends; the 1 s wait for a key runs out on the service's clock.
        t.sim.advance(1.4);
    }
    wait_until("goodbye played", || plays().len() == 3).await;
    let all = plays();
    assert!(
        all[0].contains("hello-world") && all[1].contains("hello-world"),
        "{all:?}"
    );
    assert!(all[2].contains("vm-goodbye"), "{all:?}");
    assert!(record_requests(&t).is_empty());
    t.sim.advance(2.0);
    wait_until("torn down", || quiet(&t)).await;
    stop(s).await;
}

/// Issue 12: the deployment's recording announcement plays to a caller about to be recorded
/// who has not heard a notice, before the agent is rung; a flow can turn it off.
#[tokio::test]
async fn the_recording_announcement_plays_before_the_first_recorded_node() {
    let t = start_sim(0.0).await;
    let quiet_flow = transfer_flow("PJSIP/202", true)
        .replace("numbers = [\"100\"]", "numbers = [\"101\"]")
        .replace(
            "tenant = \"acme\"",
            "tenant = \"acme\"\nrecording_announcement = false",
        );
    let s = start_service(
        &t,
        &[
            ("support.toml", &transfer_flow("PJSIP/201", true)),
            ("quiet.toml", &quiet_flow),
            (
                "settings.toml",
                "recording_announcement = [\"sound:hello-world\"]\n",
            ),
        ],
    )
    .await;
    let plays = || {
        t.sim
            .requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/play"))
            .map(|r| r.query)
            .collect::<Vec<_>>()
    };
    t.sim
        .place_inbound_call("100", "Alice <5551001>", "talk")
        .expect("call");
    wait_until("the announcement", || plays().len() == 1).await;
    assert!(plays()[0].contains("hello-world"), "{:?}", plays());
    let agent_rung = || {
        t.sim
            .requests()
            .iter()
            .any(|r| r.method == "POST" && r.path.ends_with("/channels") && r.query.contains("201"))
    };
    assert!(
        !agent_rung(),
        "the agent is not rung before the announcement ends"
    );
    t.sim.advance(1.5);
    let rows = wait_recording(&t, &s, "recorded after the announcement", 1).await;
    assert!(agent_rung(), "then the agent is rung");
    assert_eq!(call_consent(&s).await, ["granted"], "told, so consented");
    assert_eq!(rows[0].node.as_deref(), Some("desk"));
    t.sim.advance(17.0);
    wait_until("torn down", || quiet(&t)).await;

    // A flow that turned it off: no prompt, straight to the agent.
    t.sim
        .place_inbound_call("101", "Bob <5551002>", "talk")
        .expect("call");
    wait_rows(&s.svc.db, "the quiet flow's recording", 2, |_| true).await;
    assert_eq!(plays().len(), 1);
    t.sim.advance(17.0);
    wait_until("torn down", || quiet(&t)).await;
    stop(s).await;
}

/// Issue 12: who may pause a live recording, in the access matrix's style: every role, with and
/// without `flows:write`, as the agent on the call or not, of the call's tenant or another, on
/// a public and a private call. Each attempt leaves one audit event.
#[tokio::test]
async fn pausing_follows_the_rules_for_every_role_scope_tenant_and_privacy() {
    use ari_recorder::access::Scope;
    use common::{bearer, send, user_token};
    let t = start_sim(0.0).await;
    let public = transfer_flow("PJSIP/201", true);
    let private = transfer_flow("PJSIP/201", true)
        .replace("\"100\"", "\"101\"")
        .replace("tenant = \"acme\"", "tenant = \"acme\"\nprivate = true");
    let s = start_service(&t, &[("support.toml", &public), ("private.toml", &private)]).await;
    t.sim
        .place_inbound_call("100", "Alice <5551001>", "talk")
        .expect("call");
    t.sim
        .place_inbound_call("101", "Bob <5551002>", "talk")
        .expect("call");
    wait_recording(&t, &s, "both recording", 2).await;
    let calls = s.svc.flows.live_calls();
    let id_of = |private: bool| {
        calls
            .iter()
            .find(|c| c.private == private)
            .map(|c| c.id.clone())
            .expect("call")
    };
    let (public_call, private_call) = (id_of(false), id_of(true));
    let audit_head = || async {
        let (seq,): (i64,) = sqlx::query_as("SELECT seq FROM audit_head WHERE id = 1")
            .fetch_one(&s.svc.db.pool)
            .await
            .expect("head");
        seq
    };
    // An extension belongs to one user of a tenant: the agent on the calls is a staff member;
    // admins and managers may pause whoever they are.
    for tenant in ["acme", "other"] {
        for (role, agent) in [
            ("admin", false),
            ("manager", false),
            ("staff", true),
            ("staff", false),
        ] {
            for write in [true, false] {
                let scopes: &[Scope] = if write {
                    &[Scope::RecordingsRead, Scope::FlowsWrite]
                } else {
                    &[Scope::RecordingsRead]
                };
                let extension = agent.then_some("PJSIP/201");
                let name = format!("{tenant}-{role}-{agent}");
                let client = bearer(
                    &user_token(&s.svc.db, &name, role, tenant, &[], extension, scopes).await,
                );
                for (call, is_private) in [(&public_call, false), (&private_call, true)] {
                    let visible = tenant == "acme" && (!is_private || agent);
                    let may = write && (role != "staff" || agent);
                    let expected = match (visible, may) {
                        (false, _) => (404, "not_found"),
                        (true, false) => (403, "role_restriction"),
                        (true, true) => (200, ""),
                    };
                    let before = audit_head().await;
                    let answer =
                        send(client.post(format!("{}/api/calls/{call}/recording/pause", s.base)))
                            .await;
                    let context = format!(
                            "{role} of {tenant}, agent {agent}, flows:write {write}, private {is_private}"
                        );
                    assert_eq!(answer.status, expected.0, "{context}: {:?}", answer.json());
                    if expected.0 != 200 {
                        assert_eq!(answer.error(), expected.1, "{context}");
                    }
                    assert_eq!(audit_head().await, before + 1, "{context}: one audit event");
                    if expected.0 == 200 {
                        let resumed = send(
                            client.post(format!("{}/api/calls/{call}/recording/resume", s.base)),
                        )
                        .await;
                        assert_eq!(resumed.status, 200, "{context}");
                    }
                }
            }
        }
    }
    t.sim.advance(20.0);
    wait_until("torn down", || quiet(&t)).await;
    stop(s).await;
}
