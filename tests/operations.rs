//! Running for months: a quiet service costs nothing (no file reads, no database writes, no
//! reloads), a failed walk of the recordings folder changes no row and is reported, and ARI is
//! reached over TLS (and never over plain HTTP when the URL says https).

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use ari_recorder::sim::{self, SimOptions};
use common::{
    eventually, start_service, start_service_with, start_sim, wait_until, TestService, TestSim,
};

const FILES: usize = 2000;

/// Fills the recordings folder with `n` finished WAV files (modified an hour ago).
fn fill(t: &TestSim, n: usize) {
    let wav = std::fs::read("tests/fixtures/recordings/queue-447a786b.wav").expect("fixture");
    let old = SystemTime::now() - Duration::from_secs(3600);
    for i in 0..n {
        let path = t.recordings.join(format!("old-{i:05}.wav"));
        std::fs::write(&path, &wav).expect("write");
        ari_recorder::library::index::set_mtime(&path, old).expect("mtime");
    }
}

async fn rows_with_status(s: &TestService, status: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM recordings WHERE status = $1")
        .bind(status)
        .fetch_one(&s.svc.db.pool)
        .await
        .expect("count");
    n
}

async fn wait_indexed(s: &TestService, n: usize) {
    eventually(&format!("the {n} files indexed"), async || {
        rows_with_status(s, "ready").await == n as i64
    })
    .await;
}

/// What the service has done so far: (file reads, indexer writes, call writes, flow reloads).
fn costs(s: &TestService) -> (u64, u64, u64, u64) {
    let scan = &s.svc.indexer.state;
    (
        scan.file_reads_total.load(Ordering::Relaxed),
        scan.write_transactions_total.load(Ordering::Relaxed),
        s.svc.metrics.call_db_writes.count(),
        s.svc.flows.store().reloads(),
    )
}

/// A stretch of time in which nothing should happen. It is a duration on purpose: "nothing
/// happened" has no event to wait for. Longer than the settle time (3 s) and than the cycle
/// in which the old watcher re-read every file (about 2.5 s).
async fn quiet_interval() {
    tokio::time::sleep(Duration::from_secs(4)).await;
}

#[tokio::test]
async fn a_settled_service_reads_no_file_and_writes_nothing_even_while_files_are_read() {
    let t = start_sim(0.0).await;
    fill(&t, FILES);
    let s = start_service(&t, &[]).await;
    wait_indexed(&s, FILES).await;
    assert_eq!(costs(&s).0, FILES as u64, "each file read once to index it");

    // Playback through the API, and every file read by someone else (a backup, a copy).
    let (id,): (i64,) = sqlx::query_as("SELECT id FROM recordings ORDER BY id LIMIT 1")
        .fetch_one(&s.svc.db.pool)
        .await
        .expect("id");
    // Files found without call metadata have no consent on record: an admin records it.
    let consent = common::authed()
        .patch(format!("{}/api/recordings/{id}", s.base))
        .json(&serde_json::json!({"consent": "granted"}))
        .send()
        .await
        .expect("consent");
    assert_eq!(consent.status(), 200, "{:?}", consent.text().await);
    let before = costs(&s);
    let audio = common::authed()
        .get(format!("{}/api/recordings/{id}/audio", s.base))
        .send()
        .await
        .expect("audio");
    assert_eq!(audio.status(), 200);
    assert_eq!(audio.bytes().await.expect("body").len(), 62444);
    let events = || s.svc.indexer.state.events_total.load(Ordering::Relaxed);
    let events_before = events();
    for i in 0..FILES {
        let bytes = std::fs::read(t.recordings.join(format!("old-{i:05}.wav"))).expect("read");
        assert_eq!(bytes.len(), 62444);
    }
    // Events reach the watcher in order: once the marker's are in, the reads' would be too.
    std::fs::write(t.recordings.join("zz-after-the-reads.txt"), b"marker").expect("marker");
    wait_until("the marker's events reached the watcher", || {
        events() > events_before
    })
    .await;
    quiet_interval().await;
    // The marker's creation and close after writing; no open or read of the files woke it.
    assert!(
        events() - events_before <= 2,
        "{} events for 1 file written and {FILES} read",
        events() - events_before
    );
    quiet_interval().await;
    assert_eq!(
        costs(&s),
        before,
        "(file reads, indexer writes, call writes, reloads) moved while nothing changed"
    );
    assert_eq!(rows_with_status(&s, "ready").await, FILES as i64);
    common::stop(s).await;
}

#[tokio::test]
async fn one_edit_of_a_flow_reloads_once_and_then_the_folder_is_quiet() {
    let t = start_sim(0.0).await;
    let flow = "[flow]\nnumbers = [\"100\"]\nstart = \"bye\"\n[nodes.bye]\ntype = \"hangup\"\n";
    let s = start_service(&t, &[("one.toml", flow)]).await;
    let reloads = s.svc.flows.store().reloads();
    std::fs::write(
        s.dialplans.join("two.toml"),
        flow.replace("\"100\"", "\"200\""),
    )
    .expect("write");
    wait_until("the edit was loaded", || {
        s.svc.flows.store().current().flows.len() == 2
    })
    .await;
    let after_edit = s.svc.flows.store().reloads();
    assert!(after_edit > reloads);
    quiet_interval().await;
    assert_eq!(
        s.svc.flows.store().reloads(),
        after_edit,
        "reading the folder must not trigger another reload"
    );
    common::stop(s).await;
}

#[tokio::test]
async fn a_walk_that_fails_changes_no_row_and_is_reported() {
    let t = start_sim(0.0).await;
    fill(&t, 20);
    let s = start_service(&t, &[]).await;
    wait_indexed(&s, 20).await;
    // The folder goes away under us (an unmounted volume): its path is now a plain file.
    let away = t.dir.path().join("moved-away");
    std::fs::rename(&t.recordings, &away).expect("move");
    std::fs::write(&t.recordings, b"not a folder").expect("file");
    let error = s.svc.indexer.full_scan().await.expect_err("the walk fails");
    assert!(error.to_string().contains("no row changed"), "{error}");
    assert_eq!(
        rows_with_status(&s, "ready").await,
        20,
        "no row marked missing"
    );
    assert_eq!(rows_with_status(&s, "missing").await, 0);

    let http = reqwest::Client::new();
    let ready = http
        .get(format!("{}/readyz", s.base))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.expect("json");
    assert!(
        body["recordings_dir"]
            .as_str()
            .is_some_and(|r| r.contains("cannot read")),
        "{body}"
    );
    let metrics = common::metrics_text(&s.base).await;
    assert!(
        metrics.contains("indexer_walk_failures_total 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("indexer_walk_ok 0\n"), "{metrics}");

    // The volume comes back: the next walk succeeds, nothing was lost, the report clears.
    std::fs::remove_file(&t.recordings).expect("remove");
    std::fs::rename(&away, &t.recordings).expect("move back");
    let report = s.svc.indexer.full_scan().await.expect("scan");
    assert_eq!((report.found, report.missing), (20, 0));
    assert!(s.svc.indexer.state.last_walk_error().is_none());
    common::stop(s).await;
}

#[tokio::test]
async fn a_node_without_a_dialplans_folder_serves_the_library_and_loads_flows_once_it_appears() {
    let t = start_sim(0.0).await;
    fill(&t, 3);
    let later = t.dir.path().join("flows-written-later");
    let database = common::database_url(&t, common::Db::Sqlite).await;
    let dir = later.display().to_string();
    let s = start_service_with(&t, &[], &database, &[("DIALPLANS_DIR", dir.as_str())]).await;
    wait_indexed(&s, 3).await;
    assert!(s.svc.flows.store().current().flows.is_empty());
    let http = reqwest::Client::new();
    let readyz = || async {
        let ready = http
            .get(format!("{}/readyz", s.base))
            .send()
            .await
            .expect("readyz");
        assert_eq!(ready.status(), 200, "a library-only node is ready");
        ready.json::<serde_json::Value>().await.expect("json")
    };
    let body = readyz().await;
    let warnings = body["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{body}");
    assert!(
        warnings[0]
            .as_str()
            .is_some_and(|w| w.contains("DIALPLANS_DIR") && w.contains("does not exist")),
        "{body}"
    );
    let list = common::authed()
        .get(format!("{}/api/recordings", s.base))
        .send()
        .await
        .expect("list");
    assert_eq!(list.status(), 200);

    // The operator writes the first flow: it is picked up without a restart.
    std::fs::create_dir_all(&later).expect("create the folder");
    std::fs::write(
        later.join("support.toml"),
        "[flow]\nnumbers = [\"100\"]\nstart = \"bye\"\n[nodes.bye]\ntype = \"hangup\"\n",
    )
    .expect("flow");
    let store = s.svc.flows.store().clone();
    wait_until("the new folder's flow is loaded", || {
        store.current().flows.contains_key("support")
    })
    .await;
    let body = readyz().await;
    assert_eq!(body["warnings"], serde_json::json!([]), "{body}");
    common::stop(s).await;
}

/// A certificate authority and a server certificate for 127.0.0.1 it signed, as PEM files in
/// `dir`: (CA certificate, server certificate, server key).
fn certificates(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let server_key = KeyPair::generate().expect("server key");
    let server = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("server params")
        .signed_by(&server_key, &ca, &ca_key)
        .expect("server certificate");
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, ca.pem()).expect("write");
    std::fs::write(&paths.1, server.pem()).expect("write");
    std::fs::write(&paths.2, server_key.serialize_pem()).expect("write");
    paths
}

async fn tls_sim() -> (TestSim, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let recordings = dir.path().join("recording");
    std::fs::create_dir_all(&recordings).expect("recordings dir");
    let (ca, cert, key) = certificates(dir.path());
    let sim = sim::start(SimOptions {
        recordings_dir: recordings.clone(),
        speed: 0.0,
        tls: Some(ari_recorder::tls::server_config(&cert, &key).expect("server TLS")),
        ..SimOptions::default()
    })
    .await
    .expect("sim starts");
    assert!(sim.url().starts_with("https://"));
    (
        TestSim {
            sim,
            dir,
            recordings,
        },
        ca,
    )
}

#[tokio::test]
async fn ari_over_tls_with_a_private_ca_records_a_call() {
    let (t, ca) = tls_sim().await;
    let flow = r#"
[flow]
numbers = ["100"]
start = "desk"
[nodes.desk]
type = "transfer"
target = "PJSIP/201"
record_call = true
"#;
    let database = common::database_url(&t, common::Db::Sqlite).await;
    let ca_text = ca.display().to_string();
    // Waits for the wss:// websocket to connect, so REST and events both cross TLS.
    let s = start_service_with(
        &t,
        &[("support.toml", flow)],
        &database,
        &[("TLS_CA_FILE", &ca_text)],
    )
    .await;
    t.sim
        .place_inbound_call("100", "Alice <5551001>", "talk")
        .expect("call");
    let rows = common::wait_recording(&t, &s, "recorded over TLS", 1).await;
    assert_eq!(rows[0].callee.as_deref(), Some("PJSIP/201"));
    common::stop(s).await;
}

/// Starts the service against `ari_url` without waiting for ARI; returns it and its stopper.
async fn service_for(
    t: &TestSim,
    ari_url: &str,
    ca_file: Option<&str>,
) -> (
    ari_recorder::service::Service,
    tokio::sync::watch::Sender<bool>,
) {
    let dialplans = t.dir.path().join("dialplans");
    std::fs::create_dir_all(&dialplans).expect("dialplans");
    let database = format!("sqlite://{}/tls.db?mode=rwc", t.dir.path().display());
    let recordings = t.recordings.display().to_string();
    let dialplans_text = dialplans.display().to_string();
    let config = ari_recorder::config::Config::load(None, |key| match key {
        "ARI_URL" => Some(ari_url.to_string()),
        "ARI_PASSWORD" => Some(common::PASSWORD.into()),
        "RECORDINGS_DIR" => Some(recordings.clone()),
        "DATABASE_URL" => Some(database.clone()),
        "DIALPLANS_DIR" => Some(dialplans_text.clone()),
        "CACHE_DIR" => Some(t.dir.path().join("cache").display().to_string()),
        "HTTP_ADDR" => Some("127.0.0.1:0".into()),
        "TLS_CA_FILE" => ca_file.map(String::from),
        _ => None,
    })
    .expect("config");
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let svc = ari_recorder::service::start(&config, common::fast_timing(), shutdown)
        .await
        .expect("service starts");
    (svc, stop)
}

#[tokio::test]
async fn a_tls_url_never_falls_back_and_an_unknown_ca_is_refused() {
    // An https:// URL to an Asterisk that speaks plain HTTP: no connection, ever.
    let plain = start_sim(0.0).await;
    let https_to_plain = plain.sim.url().replace("http://", "https://");
    let (svc, stop) = service_for(&plain, &https_to_plain, None).await;
    wait_until("several attempts", || svc.metrics.reconnects() >= 3).await;
    assert!(!svc.metrics.ari_connected());
    assert!(!plain.sim.app_connected("recorder"));
    let _ = stop.send(true);
    svc.join().await;

    // A TLS Asterisk whose certificate no trusted CA signed: refused.
    let (t, _ca) = tls_sim().await;
    let (svc, stop) = service_for(&t, &t.sim.url(), None).await;
    wait_until("several attempts", || svc.metrics.reconnects() >= 3).await;
    assert!(!svc.metrics.ari_connected());
    assert!(!t.sim.app_connected("recorder"));
    let _ = stop.send(true);
    svc.join().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL with TLS: scripts/test.sh starts one and runs it"]
async fn postgres_over_tls_with_sslmode_verify_full() {
    let t = start_sim(0.0).await;
    let url = common::database_url(&t, common::Db::Postgres).await;
    let ca = common::required_env(
        "TEST_POSTGRES_CA",
        "the CA of the test PostgreSQL's certificate (scripts/test.sh makes one)",
    );
    let verified = format!("{url}?sslmode=verify-full");
    let config = ari_recorder::config::Config::load(None, |key| match key {
        "DATABASE_URL" => Some(verified.clone()),
        "TLS_CA_FILE" => Some(ca.clone()),
        _ => None,
    })
    .expect("config");
    let db = ari_recorder::db::Database::open(&config.database_connect_url())
        .await
        .expect("TLS connection verified against the CA");
    let (ssl,): (bool,) =
        sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&db.pool)
            .await
            .expect("pg_stat_ssl");
    assert!(ssl, "the connection is encrypted");

    // The same server checked against a CA that did not sign it: refused, not downgraded.
    let other = tempfile::tempdir().expect("dir");
    let (wrong_ca, _, _) = certificates(other.path());
    let refused = ari_recorder::db::Database::open(&format!(
        "{url}?sslmode=verify-full&sslrootcert={}",
        wrong_ca.display()
    ))
    .await;
    assert!(refused.is_err(), "an unverified server must be refused");
}

/// Issue 17: a call that arrives while ari-recorder is away never reaches the app (Stasis()
/// fails at once); the shipped dialplan's fallback answers it and MixMonitor records it into
/// the same folder. When the service is back those recordings are listed like the others: node
/// type `fallback`, caller and dialled number from the name, the tenant of the number's flow,
/// playable under the usual rules.
#[tokio::test]
async fn calls_while_the_service_is_away_are_recorded_by_the_fallback_and_listed_on_return() {
    use common::{send, Db};
    let t = start_sim(0.0).await;
    t.sim.set_dialplan_fallback(Some(4.0));
    // Nothing is connected: the calls go to the fallback.
    t.sim
        .place_inbound_call("100", "Alice <5551001>", "talk")
        .expect("call");
    t.sim
        .place_inbound_call("555", "Bob <+1 555-1002>", "talk")
        .expect("call");
    assert_eq!(
        t.sim.with_world(|w| w.counts()),
        (0, 0, 0),
        "no call in the app"
    );
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&t.recordings)
        .expect("recordings")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    for file in &files {
        let name = file.file_name().and_then(|n| n.to_str()).expect("name");
        assert!(name.starts_with("fallback-"), "{name}");
        // Recorded during the outage, finished since.
        ari_recorder::library::index::set_mtime(file, SystemTime::now() - Duration::from_secs(60))
            .expect("mtime");
    }

    let flow = r#"
[flow]
numbers = ["100"]
start = "desk"
tenant = "acme"

[nodes.desk]
type = "transfer"
target = "PJSIP/201"
ring_timeout = 5
record_call = true
"#;
    let url = common::database_url(&t, Db::Sqlite).await;
    let s = start_service_with(&t, &[("support.toml", flow)], &url, &[]).await;
    common::wait_ready(&s.svc.db, 2).await;

    let operator = send(common::authed().get(format!("{}/api/recordings", s.base))).await;
    let rows = operator.json()["recordings"]
        .as_array()
        .cloned()
        .expect("rows");
    assert_eq!(
        rows.len(),
        1,
        "the unmatched number is the operator's: {rows:?}"
    );
    assert_eq!(
        (
            &rows[0]["node_type"],
            &rows[0]["caller"]["number"],
            &rows[0]["callee"]
        ),
        (&"fallback".into(), &"15551002".into(), &"555".into())
    );
    let acme = common::tenant_admin(&s.svc.db, "acme").await;
    let listed = send(acme.get(format!("{}/api/recordings?node_type=fallback", s.base))).await;
    let rows = listed.json()["recordings"]
        .as_array()
        .cloned()
        .expect("rows");
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(
        (
            &row["caller"]["number"],
            &row["callee"],
            &row["flow"],
            &row["direction"]
        ),
        (
            &"5551001".into(),
            &"100".into(),
            &"support".into(),
            &"inbound".into()
        )
    );
    assert!(
        (row["duration_seconds"].as_f64().unwrap_or(0.0) - 4.0).abs() < 0.01,
        "{row}"
    );
    // Playable under the usual rules: consent first.
    let id = row["id"].as_i64().expect("id");
    let audio = format!("{}/api/recordings/{id}/audio", s.base);
    let refused = send(acme.get(&audio)).await;
    assert_eq!(
        (refused.status, refused.error().as_str()),
        (403, "missing_consent")
    );
    let granted = send(
        acme.patch(format!("{}/api/recordings/{id}", s.base))
            .json(&serde_json::json!({"consent": "granted"})),
    )
    .await;
    assert_eq!(granted.status, 200);
    let played = send(acme.get(&audio).header("range", "bytes=0-43")).await;
    assert_eq!(played.status, 206);

    let ready: serde_json::Value = reqwest::get(format!("{}/readyz", s.base))
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["fallback_recordings"]["count"], 2, "{ready}");
    let metrics = common::metrics_text(&s.base).await;
    assert!(
        metrics.contains("indexer_fallback_recordings_total 2\n"),
        "{metrics}"
    );
    let _ = s.stop.send(true);
}

/// Issue 12: `default_compliance = "unknown"` (the strict reading) files new recordings as
/// unknown, which blocks playback until an admin records the evidence; a re-index keeps the
/// admin's decision.
#[tokio::test]
async fn strict_compliance_blocks_new_recordings_until_an_admin_permits_them() {
    use common::send;
    let t = start_sim(0.0).await;
    common::put_wav(&t, "call");
    let url = common::database_url(&t, common::Db::Sqlite).await;
    let s = start_service_with(
        &t,
        &[("settings.toml", "default_compliance = \"unknown\"\n")],
        &url,
        &[],
    )
    .await;
    common::wait_ready(&s.svc.db, 1).await;
    let (id, compliance): (i64, String) =
        sqlx::query_as("UPDATE recordings SET consent = 'granted' RETURNING id, compliance")
            .fetch_one(&s.svc.db.pool)
            .await
            .expect("row");
    assert_eq!(compliance, "unknown");
    let admin = common::authed();
    let audio = format!("{}/api/recordings/{id}/audio", s.base);
    let blocked = send(admin.get(&audio)).await;
    assert_eq!(
        (blocked.status, blocked.error().as_str()),
        (403, "compliance_policy")
    );
    let permitted = send(
        admin
            .patch(format!("{}/api/recordings/{id}", s.base))
            .json(&serde_json::json!({"compliance": "permitted"})),
    )
    .await;
    assert_eq!(permitted.status, 200);
    assert_eq!(send(admin.get(&audio)).await.status, 200);
    // The file changes and is indexed again: the admin's decision stays.
    common::put_wav(&t, "call");
    let path = t.recordings.join("call.wav");
    ari_recorder::library::index::set_mtime(&path, SystemTime::now() - Duration::from_secs(1800))
        .expect("mtime");
    s.svc
        .indexer
        .index_paths(vec![path])
        .await
        .expect("re-index");
    let row = ari_recorder::library::recordings::by_id(&s.svc.db.pool, id)
        .await
        .expect("row")
        .expect("listed");
    assert_eq!(row.compliance.as_str(), "permitted");
    let _ = s.stop.send(true);
}
