//! The consent node: only callers who agree are recorded; silence asks again, then counts as
//! declined.

use super::*;

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
pub(crate) async fn call_consent(s: &common::TestService) -> Vec<String> {
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
