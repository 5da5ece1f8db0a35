//! Webhooks end to end: a recorded call through the simulated Asterisk is told to its tenant's
//! endpoint (a real HTTP receiver on 127.0.0.1), signed the Standard Webhooks way and verified
//! with that project's own library; retried while the receiver fails, once per change, never
//! to another tenant, never to an address the operator did not allow.

mod common;

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use common::{
    database_url, eventually, send, start_service_with, start_sim, tenant_admin, wait_until, Db,
    Steps, TestService, TestSim,
};

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// An HTTP receiver: keeps every request and answers with `status`.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
}

impl Receiver {
    async fn start() -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let status = Arc::new(AtomicU16::new(200));
        let (kept, answer) = (Arc::clone(&got), Arc::clone(&status));
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let (kept, answer) = (Arc::clone(&kept), Arc::clone(&answer));
                    async move {
                        kept.lock().expect("lock").push(Received {
                            headers,
                            body: body.to_vec(),
                        });
                        axum::http::StatusCode::from_u16(answer.load(Ordering::SeqCst))
                            .unwrap_or(axum::http::StatusCode::OK)
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, got, status }
    }

    fn all(&self) -> Vec<Received> {
        self.got.lock().expect("lock").clone()
    }

    fn of_type(&self, kind: &str) -> Vec<Received> {
        self.all()
            .into_iter()
            .filter(|r| r.json()["type"] == kind)
            .collect()
    }
}

/// Loopback is refused unless the operator allows it: the tests' receivers are on it.
const SETTINGS: [(&str, &str); 3] = [
    ("WEBHOOK_ALLOW_HTTP_HOSTS", "127.0.0.1"),
    ("WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8"),
    ("PUBLIC_URL", "https://recorder.example.com"),
];

const FLOW: &str = r#"
[flow]
numbers = ["100"]
start = "desk"

[nodes.desk]
type = "transfer"
target = "PJSIP/201"
ring_timeout = 5
record_call = true
"#;

async fn service(t: &TestSim, db: Db) -> TestService {
    let url = database_url(t, db).await;
    start_service_with(t, &[("support.toml", FLOW)], &url, &SETTINGS).await
}

async fn register(
    client: &reqwest::Client,
    base: &str,
    url: &str,
    events: &[&str],
) -> (i64, String) {
    let created = send(
        client
            .post(format!("{base}/api/webhooks"))
            .json(&serde_json::json!({
                "url": url,
                "events": events,
                "description": "CRM upload",
            })),
    )
    .await;
    assert_eq!(created.status, 201, "{:?}", created.json());
    let json = created.json();
    (
        json["id"].as_i64().expect("id"),
        json["secret"].as_str().expect("secret").to_string(),
    )
}

/// What the Standard Webhooks library says of a delivery signed for `secret`.
fn verifies(secret: &str, received: &Received) -> bool {
    let webhook = standardwebhooks::Webhook::new(secret).expect("a Standard Webhooks secret");
    webhook.verify(&received.body, &received.headers).is_ok()
}

async fn a_recorded_call_is_told_to_its_tenants_endpoint(db: Db) {
    let steps = Steps::new("webhooks");
    let t = start_sim(0.0).await;
    let s = service(&t, db).await;
    let admin = common::authed();
    let ours = Receiver::start().await;
    let theirs = Receiver::start().await;

    steps.step("endpoints of two tenants");
    let (endpoint, secret) = register(
        &admin,
        &s.base,
        &ours.url,
        &[
            "recording.ready",
            "call.ended",
            "hold.placed",
            "consent.changed",
        ],
    )
    .await;
    let other = tenant_admin(&s.svc.db, "other").await;
    register(
        &other,
        &s.base,
        &theirs.url,
        &["recording.ready", "call.ended"],
    )
    .await;
    let listed = send(admin.get(format!("{}/api/webhooks", s.base)))
        .await
        .json();
    assert_eq!(
        listed["endpoints"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    assert_eq!(listed["endpoints"][0]["events"][0], "recording.ready");
    assert!(
        !listed.to_string().contains("whsec_"),
        "a read never shows the secret: {listed}"
    );

    steps.step("a recorded call, Asterisk reporting its linkedid (ari.conf's channelvars)");
    t.sim.set_channelvars(&["CHANNEL(linkedid)"]);
    t.sim
        .place_inbound_call("100", "Alice <5551001>", "talk")
        .expect("call");
    common::wait_recording(&t, &s, "recording", 1).await;
    let half_one = t
        .sim
        .with_world(|w| {
            w.channels()
                .iter()
                .find(|c| c.name.ends_with(";1") && c.name.contains("@inbound"))
                .map(|c| c.id.clone())
        })
        .expect("the caller's ;1 half");
    let agent = t
        .sim
        .with_world(|w| {
            w.channels()
                .iter()
                .find(|c| c.name.starts_with("PJSIP/201"))
                .map(|c| c.id.clone())
        })
        .expect("the agent's channel");
    t.sim.advance(20.0);
    wait_until("torn down", || common::quiet(&t)).await;
    common::wait_ready(&s.svc.db, 1).await;

    steps.step("recording.ready and call.ended, signed");
    eventually("recording.ready delivered", async || {
        !ours.of_type("recording.ready").is_empty()
    })
    .await;
    eventually("call.ended delivered", async || {
        !ours.of_type("call.ended").is_empty()
    })
    .await;
    let ready = &ours.of_type("recording.ready")[0];
    assert!(verifies(&secret, ready), "{:?}", ready.headers);
    let mut forged = ready.clone();
    forged.body = String::from_utf8_lossy(&ready.body)
        .replace("\"ready\"", "\"empty\"")
        .into_bytes();
    assert!(
        !verifies(&secret, &forged),
        "a changed body no longer verifies"
    );
    let json = ready.json();
    let id = json["data"]["id"].as_i64().expect("recording id");
    assert_eq!(json["data"]["status"], "ready");
    assert_eq!(json["data"]["tenant"], "default");
    assert_eq!(json["data"]["caller_number"], "5551001");
    assert_eq!(json["data"]["sha256"].as_str().map(str::len), Some(64));
    assert_eq!(
        json["data"]["links"]["recording"],
        format!("https://recorder.example.com/api/recordings/{id}")
    );
    assert!(ready.body.len() < 4096, "metadata, never audio");
    // The call's linkedid (the CDR's): its caller's Local ;1 half began the call, so it is
    // not the call's own id (the ;2 half in Stasis); the list finds the recording by it.
    let linkedid = json["data"]["linkedid"]
        .as_str()
        .expect("linkedid")
        .to_string();
    assert_ne!(json["data"]["call_id"].as_str(), Some(linkedid.as_str()));
    assert_eq!(linkedid, half_one);
    let found = send(admin.get(format!("{}/api/recordings?linkedid={linkedid}", s.base)))
        .await
        .json();
    assert_eq!(found["recordings"][0]["id"], id, "{found}");
    assert_eq!(found["recordings"][0]["linkedid"], linkedid.as_str());
    // The answering agent's channel: Asterisk's uniqueid of it, and the list finds the
    // recording by it as by the caller's.
    assert_eq!(json["data"]["callee_channel"], agent.as_str());
    for channel in [
        agent.as_str(),
        json["data"]["call_id"].as_str().unwrap_or(""),
    ] {
        let found = send(admin.get(format!("{}/api/recordings?channel={channel}", s.base)))
            .await
            .json();
        assert_eq!(found["recordings"][0]["id"], id, "{channel}: {found}");
    }
    let none = send(admin.get(format!("{}/api/recordings?linkedid=1.2", s.base)))
        .await
        .json();
    assert_eq!(none["recordings"], serde_json::json!([]));
    let ended = ours.of_type("call.ended")[0].json();
    assert_eq!(ended["data"]["segments"][0]["id"], id, "{ended}");
    assert!(verifies(&secret, &ours.of_type("call.ended")[0]));

    steps.step("changes people make are told too, once each");
    let held = send(
        admin
            .put(format!("{}/api/recordings/{id}/hold", s.base))
            .json(&serde_json::json!({"reason": "complaint 4411"})),
    )
    .await;
    assert!(held.status < 300, "{:?}", held.json());
    let consent = send(
        admin
            .patch(format!("{}/api/recordings/{id}", s.base))
            .json(&serde_json::json!({"consent": "granted"})),
    )
    .await;
    assert_eq!(consent.status, 200, "{:?}", consent.json());
    eventually("hold and consent delivered", async || {
        !ours.of_type("hold.placed").is_empty() && !ours.of_type("consent.changed").is_empty()
    })
    .await;
    assert_eq!(
        ours.of_type("hold.placed")[0].json()["data"]["hold_reason"],
        "complaint 4411"
    );
    // The call as a ZIP, by its id: its one segment and the manifest.
    let call = json["data"]["call_id"]
        .as_str()
        .expect("call id")
        .to_string();
    let zip = send(admin.get(format!("{}/api/recordings/export.zip?calls={call}", s.base))).await;
    assert_eq!(zip.status, 200, "{:?}", zip.json());
    let text = String::from_utf8_lossy(&zip.body);
    assert!(text.contains("manifest.json") && text.contains(&format!("\"id\": {id}")));
    // A rescan of the library tells nothing again.
    s.svc.indexer.full_scan().await.expect("rescan");
    let log = send(admin.get(format!("{}/api/webhooks/{endpoint}/deliveries", s.base)))
        .await
        .json();
    let kinds: Vec<&str> = log["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .filter_map(|d| d["kind"].as_str())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "recording.ready").count(),
        1,
        "{log}"
    );
    assert!(log["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .all(|d| d["state"] == "delivered"));
    assert!(log["attempts"][0]["status"] == 200, "{log}");
    assert_eq!(ours.of_type("recording.ready").len(), 1);
    assert!(
        theirs.all().is_empty(),
        "another tenant's endpoint heard nothing of this call"
    );
    common::stop(s).await;
}

#[tokio::test]
async fn a_recorded_call_is_told_to_its_tenants_endpoint_on_sqlite() {
    a_recorded_call_is_told_to_its_tenants_endpoint(Db::Sqlite).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test.sh starts one and runs it"]
async fn a_recorded_call_is_told_to_its_tenants_endpoint_on_postgres() {
    a_recorded_call_is_told_to_its_tenants_endpoint(Db::Postgres).await;
}

#[tokio::test]
async fn a_failing_receiver_is_retried_and_a_rotated_secret_signs_beside_the_new_one() {
    let t = start_sim(0.0).await;
    let s = service(&t, Db::Sqlite).await;
    let admin = common::authed();
    let receiver = Receiver::start().await;
    receiver.status.store(503, Ordering::SeqCst);
    let (endpoint, old_secret) =
        register(&admin, &s.base, &receiver.url, &["recording.ready"]).await;

    let test = send(admin.post(format!("{}/api/webhooks/{endpoint}/test", s.base))).await;
    assert_eq!(test.status, 202, "{:?}", test.json());
    eventually("the test event tried", async || !receiver.all().is_empty()).await;
    let log = send(admin.get(format!("{}/api/webhooks/{endpoint}/deliveries", s.base)))
        .await
        .json();
    let delivery = &log["deliveries"][0];
    assert_eq!(delivery["state"], "pending", "a failure is retried: {log}");
    assert_eq!(delivery["last_status"], 503);
    assert!(delivery["next_attempt_at_ms"].as_i64() > delivery["created_at_ms"].as_i64());
    assert_eq!(log["attempts"][0]["status"], 503);

    // Rotated: both secrets sign until the old one's time is up.
    let rotated = send(
        admin
            .post(format!("{}/api/webhooks/{endpoint}/rotate-secret", s.base))
            .json(&serde_json::json!({"keep_previous_hours": 1})),
    )
    .await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.json());
    let new_secret = rotated.json()["secret"]
        .as_str()
        .expect("secret")
        .to_string();
    assert_ne!(new_secret, old_secret);

    // The receiver is back; an admin asks for the delivery again rather than wait.
    receiver.status.store(200, Ordering::SeqCst);
    let id = delivery["id"].as_i64().expect("delivery id");
    let again = send(admin.post(format!(
        "{}/api/webhooks/{endpoint}/deliveries/{id}/redeliver",
        s.base
    )))
    .await;
    assert_eq!(again.status, 202, "{:?}", again.json());
    eventually("delivered", async || {
        let log = send(admin.get(format!("{}/api/webhooks/{endpoint}/deliveries", s.base)))
            .await
            .json();
        log["deliveries"][0]["state"] == "delivered"
    })
    .await;
    let last = receiver.all().last().cloned().expect("a delivery");
    assert_eq!(last.json()["type"], "webhook.test");
    assert!(verifies(&new_secret, &last), "the new secret verifies");
    assert!(
        verifies(&old_secret, &last),
        "the old one still does, for an hour"
    );
    let signatures = last.headers["webhook-signature"].to_str().expect("ascii");
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    let ids: std::collections::HashSet<String> = receiver
        .all()
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().expect("ascii").to_string())
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "every attempt of one delivery carries its one webhook-id"
    );

    // Another tenant's admin cannot see, change or redeliver it.
    let other = tenant_admin(&s.svc.db, "other").await;
    for answer in [
        send(other.get(format!("{}/api/webhooks/{endpoint}/deliveries", s.base))).await,
        send(other.delete(format!("{}/api/webhooks/{endpoint}", s.base))).await,
        send(other.post(format!(
            "{}/api/webhooks/{endpoint}/deliveries/{id}/redeliver",
            s.base
        )))
        .await,
    ] {
        assert_eq!(answer.status, 404, "{:?}", answer.json());
    }
    common::stop(s).await;
}

#[tokio::test]
async fn endpoints_the_operator_did_not_allow_are_refused_with_the_reason() {
    let t = start_sim(0.0).await;
    let url = database_url(&t, Db::Sqlite).await;
    // No exceptions: only public https:// endpoints.
    let s = start_service_with(&t, &[], &url, &[]).await;
    let admin = common::authed();
    for (url, reason) in [
        ("http://hooks.example.com/in", "plain http://"),
        ("https://127.0.0.1/in", "not a public address"),
        (
            "https://169.254.169.254/latest/meta-data/",
            "not a public address",
        ),
        ("https://[::1]/in", "not a public address"),
        ("https://10.0.0.7/in", "not a public address"),
        ("https://user:pw@hooks.example.com/in", "credentials"),
        ("file:///etc/passwd", "not https://"),
    ] {
        let refused = send(
            admin
                .post(format!("{}/api/webhooks", s.base))
                .json(&serde_json::json!({"url": url, "events": ["recording.ready"]})),
        )
        .await;
        assert_eq!(refused.status, 400, "{url}: {:?}", refused.json());
        let message = refused.json()["message"].as_str().unwrap_or("").to_string();
        assert!(message.contains(reason), "{url}: {message}");
    }
    let unknown = send(admin.post(format!("{}/api/webhooks", s.base)).json(
        &serde_json::json!({"url": "https://hooks.example.com/in", "events": ["recording.played"]}),
    ))
    .await;
    assert_eq!(unknown.status, 400);
    assert!(unknown.json()["message"]
        .as_str()
        .unwrap_or("")
        .contains("recording.played"));
    // A name that resolves to loopback is refused when delivering, by the checked resolver.
    let created = send(admin.post(format!("{}/api/webhooks", s.base)).json(
        &serde_json::json!({"url": "https://localhost:9/in", "events": ["recording.ready"]}),
    ))
    .await;
    assert_eq!(created.status, 201, "{:?}", created.json());
    let endpoint = created.json()["id"].as_i64().expect("id");
    send(admin.post(format!("{}/api/webhooks/{endpoint}/test", s.base))).await;
    eventually("the attempt refused", async || {
        let log = send(admin.get(format!("{}/api/webhooks/{endpoint}/deliveries", s.base)))
            .await
            .json();
        log["attempts"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("resolves to no address webhooks may reach"))
    })
    .await;
    // Staff are not admins.
    let staff = common::bearer(
        &common::user_token(
            &s.svc.db,
            "reviewer",
            "staff",
            "default",
            &[],
            None,
            &[ari_recorder::access::Scope::RecordingsRead],
        )
        .await,
    );
    let refused = send(staff.get(format!("{}/api/webhooks", s.base))).await;
    assert_eq!(refused.status, 403);
    common::stop(s).await;
}

#[tokio::test]
async fn a_delivery_outlives_a_restart_and_is_made_once() {
    let steps = Steps::new("webhook across a restart");
    let t = start_sim(0.0).await;
    let url = database_url(&t, Db::Sqlite).await;
    let s = start_service_with(&t, &[], &url, &SETTINGS).await;
    let receiver = Receiver::start().await;
    receiver.status.store(500, Ordering::SeqCst);
    register(
        &common::authed(),
        &s.base,
        &receiver.url,
        &["recording.ready"],
    )
    .await;

    steps.step("a recording ready while the receiver fails");
    common::put_wav(&t, "restart");
    common::wait_ready(&s.svc.db, 1).await;
    eventually("the first attempt", async || !receiver.all().is_empty()).await;
    common::stop(s).await;

    steps.step("the service starts again; the receiver is back");
    receiver.status.store(200, Ordering::SeqCst);
    let s = start_service_with(&t, &[], &url, &SETTINGS).await;
    eventually("delivered after the restart", async || {
        let (delivered,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'delivered'")
                .fetch_one(&s.svc.db.pool)
                .await
                .expect("count");
        delivered == 1
    })
    .await;
    let got = receiver.all();
    let ids: std::collections::HashSet<String> = got
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().expect("ascii").to_string())
        .collect();
    assert_eq!(ids.len(), 1, "one event, tried {} times", got.len());
    assert_eq!(
        got.iter()
            .filter(|r| r.json()["type"] == "recording.ready")
            .count(),
        got.len()
    );
    // The restart's rescan of the folder told nothing new.
    let (events,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM webhook_events")
        .fetch_one(&s.svc.db.pool)
        .await
        .expect("count");
    assert_eq!(events, 1);
    common::stop(s).await;
}
