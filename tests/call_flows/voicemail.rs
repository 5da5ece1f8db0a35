//! Play-audio and voicemail nodes: prompts never recorded, a message ended by `#`, silence or
//! its maximum length, unreachable targets failing over to voicemail.

use super::*;

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

/// Mailbox `general` on number 300 after `vm-intro` (5.65 s), with `extra` lines in its node.
fn general_mailbox(extra: &str) -> String {
    format!(
        "[flow]\nnumbers = [\"300\"]\nstart = \"vm\"\n[nodes.vm]\ntype = \"voicemail\"\nmailbox = \"general\"\ngreeting = \"sound:vm-intro\"\nmax_duration = 60\nmax_silence = 3\n{extra}"
    )
}

/// A caller script `name` that speaks 4 s after the greeting and ends the message with `#`.
fn leaves_a_message(t: &TestSim, name: &str) {
    caller(
        t,
        name,
        vec![
            Step::Answer,
            Step::Wait(6.0),
            Step::Talk(4.0),
            Step::Dtmf('#'),
            Step::Wait(30.0),
        ],
    );
}

/// Both greetings are playing.
async fn two_greetings(t: &TestSim) {
    wait_until("greetings playing", || {
        t.sim
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/play"))
            .count()
            == 2
    })
    .await;
}

#[tokio::test]
async fn voicemail_stops_on_hash_and_on_silence() {
    let t = start_sim(0.0).await;
    let s = start_service(&t, &[("vm.toml", &general_mailbox(""))]).await;
    leaves_a_message(&t, "presses-hash");
    caller(&t, "says-nothing", vec![Step::Answer, Step::Wait(60.0)]);
    t.sim
        .place_inbound_call("300", "Ivan <5551009>", "presses-hash")
        .expect("call");
    t.sim
        .place_inbound_call("300", "Judy <5551010>", "says-nothing")
        .expect("call");
    two_greetings(&t).await;
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

/// The voicemail view: messages by mailbox, new until someone who may play one asks for its
/// audio (or marks it heard), new again when marked so; another tenant sees none; every look and
/// mark is audited.
#[tokio::test]
async fn voicemail_messages_are_new_until_heard() {
    let t = start_sim(0.0).await;
    let flow = general_mailbox("greeting_discloses_recording = true\n");
    let s = start_service(&t, &[("vm.toml", &flow)]).await;
    leaves_a_message(&t, "leaves-a-message");
    for who in ["Ivan <5551009>", "Judy <5551010>"] {
        t.sim
            .place_inbound_call("300", who, "leaves-a-message")
            .expect("call");
    }
    two_greetings(&t).await;
    t.sim.advance(5.8);
    wait_recording(&t, &s, "both recording", 2).await;
    t.sim.advance(12.0);
    wait_rows(&s.svc.db, "both done", 2, |r| r.state == "done").await;
    common::wait_ready(&s.svc.db, 2).await;
    let admin = common::authed();
    let view = |client: reqwest::Client| {
        let base = s.base.clone();
        async move {
            let answer = common::send(client.get(format!("{base}/api/voicemail"))).await;
            assert_eq!(answer.status, 200, "{}", answer.error());
            answer.json()
        }
    };
    let boxes = view(admin.clone()).await;
    assert_eq!(
        boxes["mailboxes"].as_array().map(Vec::len),
        Some(1),
        "{boxes}"
    );
    let general = &boxes["mailboxes"][0];
    assert_eq!(
        (general["mailbox"].as_str(), general["new"].as_u64()),
        (Some("general"), Some(2))
    );
    let messages = general["messages"].as_array().expect("messages");
    assert!(
        messages
            .iter()
            .all(|m| m["heard"].is_null() && m["may_play"] == true && m["consent"] == "implied"),
        "{general}"
    );
    let ivan = messages
        .iter()
        .find(|m| m["caller"]["name"] == "Ivan")
        .and_then(|m| m["id"].as_i64())
        .expect("Ivan's message");
    // Listening (the player's audio link) marks it heard, by whoever listened.
    let link = common::send(admin.post(format!("{}/api/recordings/{ivan}/play-url", s.base))).await;
    assert_eq!(link.status, 201, "{}", link.error());
    let boxes = view(admin.clone()).await;
    assert_eq!(boxes["mailboxes"][0]["new"], 1, "{boxes}");
    let heard = boxes["mailboxes"][0]["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["id"] == ivan)
        .map(|m| m["heard"].clone())
        .expect("Ivan's");
    assert_eq!(
        heard["by"], "token:1:tester",
        "the admin's token listened: {heard}"
    );
    // New again, then heard by hand.
    let renewed =
        common::send(admin.delete(format!("{}/api/recordings/{ivan}/heard", s.base))).await;
    assert_eq!(renewed.json()["heard"], serde_json::Value::Null);
    assert_eq!(view(admin.clone()).await["mailboxes"][0]["new"], 2);
    let marked = common::send(admin.put(format!("{}/api/recordings/{ivan}/heard", s.base))).await;
    assert_eq!(marked.status, 200, "{}", marked.error());
    assert!(marked.json()["heard"]["at"].is_string());
    assert_eq!(view(admin.clone()).await["mailboxes"][0]["new"], 1);
    // Another tenant's admin sees no mailbox and cannot mark one of these.
    let outsider = common::tenant_admin(&s.svc.db, "other").await;
    assert_eq!(
        view(outsider.clone()).await["mailboxes"],
        serde_json::json!([])
    );
    let hidden =
        common::send(outsider.put(format!("{}/api/recordings/{ivan}/heard", s.base))).await;
    assert_eq!(hidden.status, 404);
    let actions: Vec<(String, String)> = sqlx::query_as(
        "SELECT action, outcome FROM audit_events WHERE action LIKE 'voicemail_%' ORDER BY seq",
    )
    .fetch_all(&s.svc.db.pool)
    .await
    .expect("audit");
    let count = |action: &str, outcome: &str| {
        actions
            .iter()
            .filter(|(a, o)| a == action && o == outcome)
            .count()
    };
    assert_eq!(count("voicemail_list", "allowed"), 5, "{actions:?}");
    assert_eq!(count("voicemail_new", "allowed"), 1, "{actions:?}");
    assert_eq!(count("voicemail_heard", "allowed"), 1, "{actions:?}");
    assert_eq!(count("voicemail_heard", "not_found"), 1, "{actions:?}");
    stop(s).await;
}
