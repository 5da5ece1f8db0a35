//! Hunt groups: simultaneous (the first answer wins) and sequential (busy and no answer move
//! on), nobody answering.

use super::*;

pub(crate) fn hunt_flow(mode: &str, members: &[&str]) -> String {
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
