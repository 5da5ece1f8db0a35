//! What goes wrong around a call: a recording Asterisk fails or refuses, the ARI socket
//! dropped, calls found after a restart, 200 calls at once, a caller waiting before the service.

use super::*;

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
