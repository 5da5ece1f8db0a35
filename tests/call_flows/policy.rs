//! Whether a call is recorded: `record_outbound_calls`, `record_inbound_calls`, the master
//! switch, `record_call` changed through the API and by hot reload, the announcement.

use super::consent::call_consent;
use super::*;

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
