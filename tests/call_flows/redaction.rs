//! Redaction of a live recording: muted or paused by the agent, by feature codes from the
//! keypad of the right leg, and who may pause which call.

use super::*;

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
    ari_recorder::library::calls::redactions(&s.svc.db.pool, recording)
        .await
        .expect("spans")
        .into_iter()
        .map(|span| span.by_actor)
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

/// Pausing turned off for a flow (`redaction = false`): the API refuses with `redaction_off`,
/// the live call says which switch (`pause_off_by`), and the flow's feature codes do nothing;
/// the recording has no redacted stretch.
#[tokio::test]
async fn a_flow_that_forbids_pausing_refuses_the_api_and_its_feature_codes() {
    let t = start_sim(0.0).await;
    let flow = feature_code_flow("caller")
        .replace("tenant = \"acme\"", "tenant = \"acme\"\nredaction = false");
    let s = start_service(&t, &[("support.toml", &flow)]).await;
    let admin = common::tenant_admin(&s.svc.db, "acme").await;
    // Presses *1 after 3 s and *2 3 s later.
    t.sim
        .place_inbound_call("100", "Olivia <5551013>", "talkdtmf")
        .expect("call");
    let rows = wait_recording(&t, &s, "recording", 1).await;
    let calls = common::send(admin.get(format!("{}/api/calls", s.base))).await;
    let call = calls.json()["calls"][0].clone();
    assert_eq!(call["pause_off_by"], "flow", "{call}");
    assert_eq!(call["can_pause"], true, "the role may, the flow says no");
    let id = call["id"].as_str().expect("id").to_string();
    let refused =
        common::send(admin.post(format!("{}/api/calls/{id}/recording/pause", s.base))).await;
    assert_eq!(
        (refused.status, refused.error().as_str()),
        (403, "redaction_off")
    );
    // The keys come and go; the recording runs on.
    t.sim.advance(3.2);
    t.sim.advance(3.0);
    t.sim.advance(14.0);
    wait_rows(&s.svc.db, "finished", 1, |r| r.state == "done").await;
    wait_until("torn down", || quiet(&t)).await;
    assert!(redaction_authors(&s, &rows[0].recording_name)
        .await
        .is_empty());
    let samples = samples_of(&t, &rows[0].recording_name);
    let at = |s: f64| (s * 8000.0) as usize;
    assert!(
        samples[at(3.3)..at(5.7)].iter().any(|v| *v != 0),
        "not muted"
    );
    let audit: Vec<(String, String)> = sqlx::query_as(
        "SELECT action, outcome FROM audit_events WHERE action = 'recording_pause' ORDER BY seq",
    )
    .fetch_all(&s.svc.db.pool)
    .await
    .expect("audit");
    assert_eq!(
        audit,
        [("recording_pause".to_string(), "redaction_off".to_string())]
    );
    stop(s).await;
}

/// The deployment turns pausing off for inbound calls; a node that allows it (`redaction =
/// true`) wins while the call is there.
#[tokio::test]
async fn a_node_may_allow_pausing_the_deployment_turned_off() {
    let t = start_sim(0.0).await;
    let allowed_desk = transfer_flow("PJSIP/201", true)
        .replace("record_call = true", "record_call = true\nredaction = true");
    let s = start_service(
        &t,
        &[
            ("support.toml", &allowed_desk),
            ("settings.toml", "redaction_inbound_calls = false\n"),
        ],
    )
    .await;
    let admin = common::tenant_admin(&s.svc.db, "acme").await;
    t.sim
        .place_inbound_call("100", "Alice <5551001>", "talk")
        .expect("call");
    wait_recording(&t, &s, "recording", 1).await;
    let calls = common::send(admin.get(format!("{}/api/calls", s.base))).await;
    let call = calls.json()["calls"][0].clone();
    assert_eq!(call["pause_off_by"], serde_json::Value::Null, "{call}");
    let id = call["id"].as_str().expect("id").to_string();
    let paused =
        common::send(admin.post(format!("{}/api/calls/{id}/recording/pause", s.base))).await;
    assert_eq!(paused.status, 200, "{}", paused.error());
    assert_eq!(paused.json()["recording"]["state"], "muted");
    stop(s).await;

    // Without the node's word, the deployment's switch holds.
    let t = start_sim(0.0).await;
    let s = start_service(
        &t,
        &[
            ("support.toml", &transfer_flow("PJSIP/201", true)),
            ("settings.toml", "redaction_inbound_calls = false\n"),
        ],
    )
    .await;
    let admin = common::tenant_admin(&s.svc.db, "acme").await;
    t.sim
        .place_inbound_call("100", "Alice <5551001>", "talk")
        .expect("call");
    wait_recording(&t, &s, "recording", 1).await;
    let calls = common::send(admin.get(format!("{}/api/calls", s.base))).await;
    let call = calls.json()["calls"][0].clone();
    assert_eq!(call["pause_off_by"], "redaction_inbound_calls", "{call}");
    let id = call["id"].as_str().expect("id").to_string();
    let refused =
        common::send(admin.post(format!("{}/api/calls/{id}/recording/pause", s.base))).await;
    assert_eq!(
        (refused.status, refused.error().as_str()),
        (403, "redaction_off")
    );
    stop(s).await;
}
