//! Queues: round robin, ring-all and longest-idle strategies, busy agents not offered, the
//! overflow after `max_wait`, the caller leaving, `record_call` off.

use super::hunt::hunt_flow;
use super::*;

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
