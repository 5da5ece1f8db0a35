//! Calls survive a restart of ari-recorder: the service stops mid-call (bridged, queued,
//! ringing a hunt group, in voicemail), a new one starts on the same database, takes the calls
//! over and each ends as if nothing had happened, with a recording of full length.

mod common;

use ari_recorder::sim::{Script, Step};
use common::{
    caller, eventually, quiet, start_service, start_sim, stop, wait_recording, wait_rows,
    wait_until, TestService, TestSim,
};

const SUPPORT: &str = r#"
[flow]
numbers = ["100"]
start = "desk"
[nodes.desk]
type = "transfer"
target = "Local/agent-long@agents"
ring_timeout = 5
record_call = true
"#;

const HELPDESK: &str = r#"
[flow]
numbers = ["500"]
start = "q"
[nodes.q]
type = "queue"
agents = ["Local/noanswer@agents"]
strategy = "ringall"
ring_timeout = 30
max_wait = 3
record_call = true
overflow = "fallback"
[nodes.fallback]
type = "transfer"
target = "Local/209@agents"
record_call = true
"#;

/// A sequential hunt group: `first`, then Local/202@agents, each rung `ring_seconds`.
fn sales(first: &str, ring_seconds: u32) -> String {
    format!(
        r#"
[flow]
numbers = ["400"]
start = "team"
[nodes.team]
type = "hunt_group"
mode = "sequential"
members = ["{first}", "Local/202@agents"]
ring_seconds = {ring_seconds}
record_call = true
"#
    )
}

const MAILBOX: &str = r#"
[flow]
numbers = ["300"]
start = "vm"
[nodes.vm]
type = "voicemail"
mailbox = "general"
max_duration = 60
max_silence = 10
"#;

/// Stops the service as SIGTERM does, checks Asterisk still has the call, starts a new one on
/// the same database and folders.
async fn restart(t: &TestSim, s: TestService, flows: &[(&str, &str)]) -> TestService {
    stop(s).await;
    assert!(
        !quiet(t),
        "the call is left up in Asterisk while we are away"
    );
    start_service(t, flows).await
}

/// The library row of a recording once the indexer made it final: (status, duration ms).
async fn final_file(s: &TestService, name: &str) -> (String, i64) {
    let mut row = None;
    eventually(&format!("{name} final"), async || {
        let found: Option<(String, i64)> =
            sqlx::query_as("SELECT status, duration_ms FROM recordings WHERE name = $1")
                .bind(name)
                .fetch_optional(&s.svc.db.pool)
                .await
                .expect("query");
        row = found.filter(|(status, _)| status != "recording");
        row.is_some()
    })
    .await;
    row.unwrap_or_default()
}

/// A simulated Asterisk on its own clock, a caller `name` behaving by `steps`, and the service
/// running `flows`.
async fn caller_and_service(
    flows: &[(&str, &str)],
    name: &str,
    steps: Vec<Step>,
) -> (TestSim, TestService) {
    let t = start_sim(0.0).await;
    caller(&t, name, steps);
    let s = start_service(&t, flows).await;
    (t, s)
}

/// Whether Asterisk has a channel to `endpoint` (an inbound call alone is two: both halves of
/// its Local channel).
fn ringing(t: &TestSim, endpoint: &str) -> bool {
    t.sim.with_world(|w| {
        w.channels()
            .iter()
            .any(|c| c.name.starts_with(&format!("{endpoint}-")))
    })
}

async fn saved_calls(s: &TestService) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM active_calls")
        .fetch_one(&s.svc.db.pool)
        .await
        .expect("count");
    n
}

#[tokio::test]
async fn a_bridged_call_keeps_its_recording_through_a_restart() {
    let flows = [("support.toml", SUPPORT)];
    let (t, s) = caller_and_service(
        &flows,
        "patient",
        vec![Step::Answer, Step::Talk(60.0), Step::Hangup],
    )
    .await;
    t.sim.define_party(
        "Local/agent-long@agents",
        Script::new("agent", vec![Step::Answer, Step::Talk(20.0), Step::Hangup]),
    );
    t.sim
        .place_inbound_call("100", "Alice <5551001>", "patient")
        .expect("call");
    let rows = wait_recording(&t, &s, "recording", 1).await;
    t.sim.advance(5.0);
    let s = restart(&t, s, &flows).await;
    // Away for 5 s: the recording went on in Asterisk.
    t.sim.advance(5.0);
    assert_eq!(
        t.sim.with_world(|w| w.counts().2),
        1,
        "the recording is still live after the restart"
    );
    // The agent hangs up 20 s into the call: the adopted call ends normally.
    t.sim.advance(9.9);
    let channels = t.sim.with_world(|w| w.counts().0);
    while t.sim.with_world(|w| w.counts().0) == channels {
        t.sim.advance(0.02);
    }
    let done = wait_rows(&s.svc.db, "finished", 1, |r| r.state == "done").await;
    assert_eq!(done[0].recording_name, rows[0].recording_name);
    assert_eq!(done[0].duration_seconds, Some(20), "full length, no cut");
    let (status, duration_ms) = final_file(&s, &rows[0].recording_name).await;
    assert_eq!(status, "ready");
    assert!((19_900..=20_100).contains(&duration_ms), "{duration_ms}");
    wait_until("caller hung up and bridge destroyed", || quiet(&t)).await;
    wait_until("the call's task ended", || {
        s.svc.flows.calls_in_progress() == 0
    })
    .await;
    // Ended calls' states are removed with the next gathered write.
    eventually("the saved state removed", async || {
        saved_calls(&s).await == 0
    })
    .await;
    stop(s).await;
}

/// A stop while a call is in the middle of its first step (here: answering the caller, then
/// starting the voicemail recording) lets the step finish and saves the state it ends in: the
/// next start takes the call over instead of finding a caller it knows nothing of.
#[tokio::test]
async fn a_step_under_way_at_a_stop_is_finished_and_saved() {
    let flows = [("vm.toml", MAILBOX)];
    let (t, s) = caller_and_service(
        &flows,
        "message",
        vec![Step::Answer, Step::Talk(10.0), Step::Hangup],
    )
    .await;
    t.sim.hold_requests(Some("/answer"));
    t.sim
        .place_inbound_call("300", "Gil <5551007>", "message")
        .expect("call");
    wait_until("the answer request waiting for Asterisk", || {
        t.sim
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/answer") && r.answered.is_none())
    })
    .await;
    let _ = s.stop.send(true);
    t.sim.hold_requests(None);
    stop(s).await;
    assert!(!quiet(&t), "the call is left up in Asterisk");
    let s = start_service(&t, &flows).await;
    t.sim.advance(11.0);
    let done = wait_rows(&s.svc.db, "message done", 1, |r| r.state == "done").await;
    assert_eq!(done[0].duration_seconds, Some(10), "the whole message");
    wait_until("caller gone", || quiet(&t)).await;
    stop(s).await;
}

#[tokio::test]
async fn a_queued_caller_waits_on_and_overflows_after_a_restart() {
    let flows = [("helpdesk.toml", HELPDESK)];
    let (t, s) = caller_and_service(
        &flows,
        "waiting",
        vec![Step::Answer, Step::Talk(120.0), Step::Hangup],
    )
    .await;
    t.sim
        .place_inbound_call("500", "Bob <5551002>", "waiting")
        .expect("call");
    wait_until("caller held with the agent ringing", || {
        ringing(&t, "Local/noanswer@agents")
    })
    .await;
    let s = restart(&t, s, &flows).await;
    // max_wait runs on from where it was: the caller overflows to the fallback, recorded.
    let rows = wait_recording(&t, &s, "overflow recording", 1).await;
    assert_eq!(rows[0].node.as_deref(), Some("fallback"));
    assert_eq!(rows[0].callee.as_deref(), Some("Local/209@agents"));
    t.sim.advance(30.0);
    wait_rows(&s.svc.db, "finished", 1, |r| r.state == "done").await;
    wait_until("everything torn down", || quiet(&t)).await;
    stop(s).await;
}

/// The hunt group's second member is recorded with the caller, and the call ends cleanly.
async fn second_member_takes_the_call(t: &TestSim, s: TestService) {
    let rows = wait_recording(t, &s, "second member recorded", 1).await;
    assert_eq!(rows[0].callee.as_deref(), Some("Local/202@agents"));
    t.sim.advance(30.0);
    wait_rows(&s.svc.db, "finished", 1, |r| r.state == "done").await;
    wait_until("everything torn down", || quiet(t)).await;
    stop(s).await;
}

/// A shopper's call to the sales hunt group `flow`, placed and ringing its first member
/// `first` (who behaves by `script`, when given).
async fn shopper_ringing(
    flow: &str,
    first: &str,
    script: Option<Script>,
) -> (TestSim, TestService) {
    let (t, s) = caller_and_service(
        &[("sales.toml", flow)],
        "shopper",
        vec![Step::Answer, Step::Talk(60.0), Step::Hangup],
    )
    .await;
    if let Some(script) = script {
        t.sim.define_party(first, script);
    }
    t.sim
        .place_inbound_call("400", "Dan <5551004>", "shopper")
        .expect("call");
    wait_until("first member ringing", || ringing(&t, first)).await;
    (t, s)
}

#[tokio::test]
async fn a_hunt_group_rings_on_through_a_restart() {
    let flow = sales("Local/noanswer@agents", 2);
    let (t, s) = shopper_ringing(&flow, "Local/noanswer@agents", None).await;
    let s = restart(&t, s, &[("sales.toml", &flow)]).await;
    // The first member's 2 s pass without an answer; the hunt goes on to the second.
    t.sim.advance(3.0);
    second_member_takes_the_call(&t, s).await;
}

/// A member who picks up while the service is away never reaches the app (Asterisk's Stasis()
/// fails and hangs the member up, as for any call arriving then): the next start finds that
/// member gone and hunts on, as for a member who stopped ringing.
#[tokio::test]
async fn a_member_answering_while_the_service_is_away_counts_as_not_answering() {
    // The first member rings long enough to answer late: no wall-clock timer decides the test.
    let flow = sales("Local/late@agents", 600);
    let late = Script::new(
        "late",
        vec![
            Step::Ring(3.0),
            Step::Answer,
            Step::Talk(20.0),
            Step::Hangup,
        ],
    );
    let (t, s) = shopper_ringing(&flow, "Local/late@agents", Some(late)).await;
    stop(s).await;
    wait_until("Asterisk saw the websocket close", || {
        !t.sim.app_connected("recorder")
    })
    .await;
    t.sim.advance(4.0);
    assert!(
        !ringing(&t, "Local/late@agents"),
        "hung up by Stasis() failing"
    );
    let s = start_service(&t, &[("sales.toml", &flow)]).await;
    second_member_takes_the_call(&t, s).await;
}

#[tokio::test]
async fn a_voicemail_message_is_recorded_whole_through_a_restart() {
    let flows = [("vm.toml", MAILBOX)];
    let (t, s) = caller_and_service(
        &flows,
        "long-message",
        vec![Step::Answer, Step::Talk(10.0), Step::Hangup],
    )
    .await;
    t.sim
        .place_inbound_call("300", "Eve <5551005>", "long-message")
        .expect("call");
    let rows = wait_recording(&t, &s, "voicemail", 1).await;
    t.sim.advance(4.0);
    let s = restart(&t, s, &flows).await;
    t.sim.advance(7.0);
    let done = wait_rows(&s.svc.db, "message done", 1, |r| r.state == "done").await;
    assert_eq!(done[0].duration_seconds, Some(10));
    let file = t
        .recordings
        .join(format!("{}.ulaw", rows[0].recording_name));
    assert_eq!(std::fs::metadata(file).expect("file").len(), 10 * 8000);
    wait_until("caller gone", || quiet(&t)).await;
    stop(s).await;
}

/// A caller on the support line (talking a minute) bridged with an agent who hangs up after
/// `agent_talks` seconds, the call being recorded.
async fn support_call_recording(caller_id: &str, agent_talks: f64) -> (TestSim, TestService) {
    let (t, s) = caller_and_service(
        &[("support.toml", SUPPORT)],
        "caller",
        vec![Step::Answer, Step::Talk(60.0), Step::Hangup],
    )
    .await;
    t.sim.define_party(
        "Local/agent-long@agents",
        Script::new(
            "agent",
            vec![Step::Answer, Step::Talk(agent_talks), Step::Hangup],
        ),
    );
    t.sim
        .place_inbound_call("100", caller_id, "caller")
        .expect("call");
    wait_recording(&t, &s, "recording", 1).await;
    (t, s)
}

#[tokio::test]
async fn a_call_that_ended_while_away_is_cleaned_up_and_its_recording_finished() {
    let flows = [("support.toml", SUPPORT)];
    let (t, s) = support_call_recording("Fay <5551006>", 8.0).await;
    stop(s).await;
    // The agent hangs up while nobody listens: the bridge keeps the caller and ends the
    // recording only when the caller goes too.
    t.sim.advance(9.0);
    let s = start_service(&t, &flows).await;
    let done = wait_rows(&s.svc.db, "finished", 1, |r| r.state == "done").await;
    assert_eq!(done[0].duration_seconds.map(|d| d >= 8), Some(true));
    wait_until("caller hung up, bridge destroyed", || quiet(&t)).await;
    wait_until("no call left", || s.svc.flows.calls_in_progress() == 0).await;
    stop(s).await;
}

/// A bridged call whose saved state is gone (a crash before its first save, a database
/// restored from an older backup): the next start cannot resume it.
async fn bridged_call_without_saved_state(settings: &[(&str, &str)]) -> (TestSim, TestService) {
    let flows = [("support.toml", SUPPORT)];
    let (t, s) = support_call_recording("Gus <5551007>", 20.0).await;
    t.sim.advance(3.0);
    let url = common::database_url(&t, common::Db::Sqlite).await;
    stop(s).await;
    let pool = sqlx::SqlitePool::connect(&url).await.expect("database");
    sqlx::query("DELETE FROM active_calls")
        .execute(&pool)
        .await
        .expect("forget the saved state");
    pool.close().await;
    let s = common::start_service_with(&t, &flows, &url, settings).await;
    (t, s)
}

/// What cannot be resumed is left to Asterisk rather than cut: the conversation goes on (the
/// agent's Local channel and both its halves included) and ends when a party leaves.
#[tokio::test]
async fn a_conversation_with_no_saved_state_is_left_to_asterisk() {
    let (t, s) = bridged_call_without_saved_state(&[]).await;
    wait_until("the conversation left to Asterisk", || {
        s.svc.metrics.calls_left_to_asterisk() == 1
    })
    .await;
    assert_eq!(
        t.sim.with_world(|w| w.counts()),
        (4, 1, 1),
        "both parties (two Local channels, four halves), the bridge and the recording stay"
    );
    // The agent hangs up 20 s into the call; the caller is then alone and the call is ended.
    t.sim.advance(20.0);
    wait_until("caller hung up and bridge destroyed", || quiet(&t)).await;
    stop(s).await;
}

#[tokio::test]
async fn an_operator_can_have_unresumable_calls_ended() {
    let (t, s) = bridged_call_without_saved_state(&[("END_UNRESUMABLE_CALLS", "true")]).await;
    wait_until("the call ended at once", || {
        t.sim.with_world(|w| w.counts().0) == 0
    })
    .await;
    assert_eq!(s.svc.metrics.calls_left_to_asterisk(), 0);
    stop(s).await;
}
