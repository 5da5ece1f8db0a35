//! Shared helpers: a simulated Asterisk in a temp folder, an ARI client for it, and a raw
//! websocket listener that collects events.
#![allow(dead_code)]

/// What the benchmarks that run other processes share (a free port, waiting on another process).
#[path = "../../benches/support/process.rs"]
pub mod process;
pub mod s3;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ari_recorder::ari::AriClient;
use ari_recorder::sim::{self, SimHandle, SimOptions};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

pub const USER: &str = "recorder";
pub const PASSWORD: &str = "recorder-secret";

pub struct TestSim {
    pub sim: SimHandle,
    pub dir: tempfile::TempDir,
    pub recordings: PathBuf,
}

impl TestSim {
    pub fn client(&self) -> AriClient {
        AriClient::new(&self.sim.url(), USER, PASSWORD).expect("client")
    }
}

/// With `RUST_LOG` set, the service's log goes to the test's output (shown when it fails).
fn show_logs_if_asked() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .with_ansi(false)
            .try_init();
    }
}

/// A simulated Asterisk; `speed` 0 means time moves only through `advance`.
pub async fn start_sim(speed: f64) -> TestSim {
    show_logs_if_asked();
    let dir = tempfile::tempdir().expect("temp dir");
    let recordings = dir.path().join("recording");
    std::fs::create_dir_all(&recordings).expect("recordings dir");
    let sim = sim::start(SimOptions {
        recordings_dir: recordings.clone(),
        speed,
        ..SimOptions::default()
    })
    .await
    .expect("sim starts");
    TestSim {
        sim,
        dir,
        recordings,
    }
}

/// Events received on one raw websocket, as JSON values.
#[derive(Clone, Default)]
pub struct Collected(pub Arc<Mutex<Vec<serde_json::Value>>>);

impl Collected {
    pub fn snapshot(&self) -> Vec<serde_json::Value> {
        self.0.lock().expect("lock").clone()
    }
    pub fn types(&self) -> Vec<String> {
        self.snapshot()
            .iter()
            .map(|e| e["type"].as_str().unwrap_or("").to_string())
            .collect()
    }
    /// Waits (bounded) until `pred` holds for the collected events.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[serde_json::Value]) -> bool) {
        wait_until(what, || pred(&self.snapshot())).await;
    }
}

/// Opens `/ari/events?app=<app>` and collects everything it receives until closed.
pub async fn listen(base: &str, app: &str) -> (Collected, tokio::task::JoinHandle<()>) {
    let url = format!(
        "{}/ari/events?app={app}&api_key={USER}:{PASSWORD}",
        base.replace("http://", "ws://")
    );
    let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("websocket connects");
    let collected = Collected::default();
    let sink = collected.clone();
    let task = tokio::spawn(async move {
        let (_write, mut read) = socket.split();
        while let Some(Ok(message)) = read.next().await {
            if let Message::Text(text) = message {
                if let Ok(value) = serde_json::from_str(&text) {
                    sink.0.lock().expect("lock").push(value);
                }
            }
        }
    });
    (collected, task)
}

/// `listen`, then waits until the simulator has registered the websocket, so no event is lost.
pub async fn listen_sim(sim: &SimHandle, app: &str) -> (Collected, tokio::task::JoinHandle<()>) {
    let listened = listen(&sim.url(), app).await;
    for _ in 0..500 {
        if sim.app_connected(app) {
            return listened;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("simulator never registered the websocket for {app}");
}

/// A running ari-recorder pointed at a simulated Asterisk, with its own dialplans folder.
pub struct TestService {
    pub svc: ari_recorder::service::Service,
    pub stop: tokio::sync::watch::Sender<bool>,
    pub dialplans: PathBuf,
    pub base: String,
    /// An admin API token (every scope) of the default tenant, which may play and download.
    pub token: String,
}

thread_local! {
    /// The admin token of the service this test started last. Each `#[tokio::test]` runs on its
    /// own thread, so tests that only pass URLs around still authenticate as their own admin.
    static ADMIN_TOKEN: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// An HTTP client that sends this test's admin token.
pub fn authed() -> reqwest::Client {
    let token = ADMIN_TOKEN.with(|t| t.borrow().clone());
    bearer(
        token
            .as_deref()
            .expect("a service was started on this thread"),
    )
}

/// An HTTP client that sends `token` as a Bearer token.
pub fn bearer(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value =
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("token is ASCII");
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

/// A user with `role` in `tenant` (limited to `projects` when not empty) and a token with
/// `scopes`; returns the token.
pub async fn user_token(
    db: &ari_recorder::db::Database,
    username: &str,
    role: &str,
    tenant: &str,
    projects: &[&str],
    extension: Option<&str>,
    scopes: &[ari_recorder::access::Scope],
) -> String {
    use ari_recorder::access::accounts;
    let mut conn = db.pool.acquire().await.expect("connection");
    let user = accounts::NewUser {
        username: username.into(),
        password: format!("{username}-password"),
        role: role.into(),
        tenant: tenant.into(),
        projects: projects.iter().map(|p| p.to_string()).collect(),
        extension: extension.map(String::from),
    };
    match accounts::create_user(&mut conn, &user).await {
        Ok(_) | Err(accounts::AccountError::Exists(_)) => {}
        Err(e) => panic!("user {username}: {e}"),
    }
    let (_, token) = accounts::create_token(&mut conn, username, "tests", scopes, None)
        .await
        .expect("token");
    token
}

/// A client authenticated as an admin (every scope) of `tenant`: user `<tenant>-admin`.
pub async fn tenant_admin(db: &ari_recorder::db::Database, tenant: &str) -> reqwest::Client {
    let name = format!("{tenant}-admin");
    bearer(
        &user_token(
            db,
            &name,
            "admin",
            tenant,
            &[],
            None,
            &[ari_recorder::access::Scope::Admin],
        )
        .await,
    )
}

/// Creates an admin with an all-scopes token in the default tenant and lets that tenant play
/// and download; returns the token.
pub async fn bootstrap_admin(db: &ari_recorder::db::Database) -> String {
    use ari_recorder::access::{accounts, policy::TenantSettings, Scope};
    let mut conn = db.pool.acquire().await.expect("connection");
    let user = accounts::NewUser {
        username: "tester".into(),
        password: "tester-password".into(),
        role: "admin".into(),
        tenant: "default".into(),
        projects: Vec::new(),
        extension: None,
    };
    match accounts::create_user(&mut conn, &user).await {
        Ok(_) | Err(accounts::AccountError::Exists(_)) => {}
        Err(e) => panic!("test admin: {e}"),
    }
    accounts::set_tenant_settings(
        &mut conn,
        "default",
        TenantSettings {
            staff_playback: true,
            download_entitlement: true,
        },
    )
    .await
    .expect("tenant");
    let (_, token) = accounts::create_token(&mut conn, "tester", "tests", &[Scope::Admin], None)
        .await
        .expect("token");
    ADMIN_TOKEN.with(|t| *t.borrow_mut() = Some(token.clone()));
    token
}

pub fn fast_timing() -> ari_recorder::ari::stream::StreamTiming {
    ari_recorder::ari::stream::StreamTiming {
        ping_interval: Duration::from_millis(100),
        dead_after: Duration::from_millis(500),
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(100),
        stable_after: Duration::from_secs(10),
    }
}

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A fresh database of that kind for one test: an SQLite file in the test's folder, or a new
/// database in the PostgreSQL that `scripts/test.sh` starts (`TEST_POSTGRES_URL`).
///
/// Tests that need PostgreSQL, Chromium or s3s-fs are marked `#[ignore = "needs ..."]`: a
/// plain `cargo test` lists them as ignored with that reason, and `scripts/test.sh` (which
/// provides the servers) runs them with `--include-ignored`. Run, they fail when their server
/// is missing: none passes without having checked anything.
pub async fn database_url(t: &TestSim, db: Db) -> String {
    match db {
        Db::Sqlite => format!("sqlite://{}/library.db?mode=rwc", t.dir.path().display()),
        Db::Postgres => {
            let admin_url = required_env(
                "TEST_POSTGRES_URL",
                "a PostgreSQL server (scripts/test.sh starts one)",
            );
            sqlx::any::install_default_drivers();
            let admin = sqlx::AnyPool::connect(&admin_url)
                .await
                .expect("admin connection");
            let name = format!("ari_recorder_test_{:016x}", fastrand::u64(..));
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&admin)
                .await
                .expect("create database");
            admin.close().await;
            let (base, _) = admin_url
                .rsplit_once('/')
                .expect("TEST_POSTGRES_URL names a database");
            format!("{base}/{name}")
        }
    }
}

/// An environment variable a test that was asked to run cannot do without: missing, the test
/// fails and says what it needs.
pub fn required_env(name: &str, what: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: this test needs {what}; run it through scripts/test.sh")
    })
}

/// The test services serve `/metrics` to this bearer token.
pub const METRICS_TOKEN: &str = "test-metrics-token-0123456789abcdef";

/// The service's `/metrics` text.
pub async fn metrics_text(base: &str) -> String {
    reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// Starts the service with `flows` (file name, TOML) in a fresh dialplans folder.
pub async fn start_service(t: &TestSim, flows: &[(&str, &str)]) -> TestService {
    let url = database_url(t, Db::Sqlite).await;
    start_service_on(t, flows, &url).await
}

/// The same, on the database at `database`.
pub async fn start_service_on(t: &TestSim, flows: &[(&str, &str)], database: &str) -> TestService {
    start_service_with(t, flows, database, &[]).await
}

/// The same, with more configuration (`SESSION_SECONDS`, `LINK_SIGNING_KEYS`...).
pub async fn start_service_with(
    t: &TestSim,
    flows: &[(&str, &str)],
    database: &str,
    settings: &[(&str, &str)],
) -> TestService {
    let settings: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let dialplans = t.dir.path().join("dialplans");
    std::fs::create_dir_all(&dialplans).expect("dialplans dir");
    for (name, text) in flows {
        std::fs::write(dialplans.join(name), text).expect("flow file");
    }
    let sim_url = t.sim.url();
    let recordings = t.recordings.display().to_string();
    let database = database.to_string();
    let dialplans_text = dialplans.display().to_string();
    let cache_text = t.dir.path().join("cache").display().to_string();
    // `settings` override the defaults below (e.g. a DIALPLANS_DIR that does not exist).
    let config = ari_recorder::config::Config::load(None, |key| {
        if let Some((_, value)) = settings.iter().find(|(k, _)| k == key) {
            return Some(value.clone());
        }
        match key {
            "ARI_URL" => Some(sim_url.clone()),
            "ARI_PASSWORD" => Some(PASSWORD.into()),
            "RECORDINGS_DIR" => Some(recordings.clone()),
            "DATABASE_URL" => Some(database.clone()),
            "DIALPLANS_DIR" => Some(dialplans_text.clone()),
            "CACHE_DIR" => Some(cache_text.clone()),
            "HTTP_ADDR" => Some("127.0.0.1:0".into()),
            "METRICS_TOKEN" => Some(METRICS_TOKEN.into()),
            // Transcription costs seconds of CPU a recording: the tests that transcribe ask.
            "TRANSCRIPTION_ENGINE" => Some("off".into()),
            _ => None,
        }
    })
    .expect("config");
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let svc = ari_recorder::service::start(&config, fast_timing(), shutdown)
        .await
        .expect("service starts");
    let base = format!("http://{}", svc.http_addr);
    wait_until("ARI connected", || {
        t.sim.app_connected("recorder") && svc.metrics.ari_connected()
    })
    .await;
    let token = bootstrap_admin(&svc.db).await;
    TestService {
        svc,
        stop,
        dialplans,
        base,
        token,
    }
}

/// How long a test waits for a state reached through sockets, tasks and the database before it
/// fails: generous, so a loaded machine passes, and bounded, so a hung test ends.
pub const WAIT_LIMIT: Duration = Duration::from_secs(60);
/// How often a wait looks again.
const WAIT_POLL: Duration = Duration::from_millis(10);

/// The tests' one wait: polls `check` until it holds, failing the test with `what` after
/// [`WAIT_LIMIT`]. Tests wait on conditions, never on time.
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(WAIT_POLL).await;
    }
}

/// The named steps of a long scenario test: each step says what it checks, its name is
/// printed as it starts (shown with a failing test's output), and a failure says which step it
/// failed in.
pub struct Steps {
    scenario: &'static str,
    current: std::cell::RefCell<String>,
}

impl Steps {
    pub fn new(scenario: &'static str) -> Steps {
        Steps {
            scenario,
            current: std::cell::RefCell::new("setting up".into()),
        }
    }

    /// The next step begins.
    pub fn step(&self, name: &str) {
        eprintln!("[{}] step: {name}", self.scenario);
        *self.current.borrow_mut() = name.to_string();
    }
}

impl Drop for Steps {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "[{}] failed in step: {}",
                self.scenario,
                self.current.borrow()
            );
        }
    }
}

/// [`eventually`] for a condition read at once (the simulated world, a metric, a registry).
pub async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    eventually(what, async || condition()).await;
}

/// A row of the library's call metadata, as the tests compare it.
#[derive(Debug, Clone)]
pub struct RecordingRow {
    pub recording_name: String,
    pub call_id: String,
    pub tenant: String,
    pub flow: Option<String>,
    pub node: Option<String>,
    pub node_type: Option<String>,
    pub direction: String,
    pub caller_name: Option<String>,
    pub caller_number: Option<String>,
    pub callee: Option<String>,
    pub format: String,
    pub state: String,
    pub duration_seconds: Option<i64>,
    pub failure_cause: Option<String>,
}

/// The library's call metadata (as the indexer reads it), oldest first.
pub async fn recording_rows(db: &ari_recorder::db::Database) -> Vec<RecordingRow> {
    let mut metas: Vec<_> = ari_recorder::library::calls::meta_all(&db.pool)
        .await
        .expect("rows")
        .into_values()
        .collect();
    metas.sort_by(|a, b| {
        (a.started_at_ms, &a.recording_name).cmp(&(b.started_at_ms, &b.recording_name))
    });
    metas
        .into_iter()
        .map(|m| RecordingRow {
            recording_name: m.recording_name,
            call_id: m.call_id,
            tenant: m.tenant,
            flow: m.flow,
            node: m.node,
            node_type: m.node_type.map(|t| t.as_str().to_string()),
            direction: m.direction.as_str().to_string(),
            caller_name: m.caller_name,
            caller_number: m.caller_number,
            callee: m.callee,
            format: m.format,
            state: m.state,
            duration_seconds: m.duration_seconds,
            failure_cause: m.failure_cause,
        })
        .collect()
}

/// Waits until the library holds `n` rows all satisfying `pred`.
pub async fn wait_rows(
    db: &ari_recorder::db::Database,
    what: &str,
    n: usize,
    pred: impl Fn(&RecordingRow) -> bool,
) -> Vec<RecordingRow> {
    let mut rows = Vec::new();
    eventually(what, async || {
        rows = recording_rows(db).await;
        rows.len() == n && rows.iter().all(&pred)
    })
    .await;
    rows
}

/// Places a call from the network to `exten` and answers it: the caller's channel in the app.
pub async fn answered_caller(t: &TestSim, exten: &str, caller_id: &str, behaviour: &str) -> String {
    // A call from the network enters the app only while the app has a websocket (Stasis()
    // fails otherwise, as on a real Asterisk): listen, unless a test already does.
    if !t.sim.app_connected("recorder") {
        let _ = listen_sim(&t.sim, "recorder").await;
    }
    let client = t.client();
    let before = client
        .application("recorder")
        .await
        .map(|a| a.channel_ids)
        .unwrap_or_default();
    t.sim
        .place_inbound_call(exten, caller_id, behaviour)
        .expect("call placed");
    let now = client
        .application("recorder")
        .await
        .expect("app")
        .channel_ids;
    let caller = now
        .into_iter()
        .find(|id| !before.contains(id))
        .expect("caller in the app");
    client.answer(&caller).await.expect("answer");
    caller
}

/// `answered_caller`, then put in a new mixing bridge: (caller, bridge id).
pub async fn caller_in_bridge(
    t: &TestSim,
    exten: &str,
    caller_id: &str,
    behaviour: &str,
) -> (String, String) {
    let caller = answered_caller(t, exten, caller_id, behaviour).await;
    let client = t.client();
    let bridge = client.create_bridge("mixing", None).await.expect("bridge");
    client
        .add_channels(&bridge.id, &[&caller], None)
        .await
        .expect("add");
    (caller, bridge.id)
}

/// Runs each named `async fn(Db)` twice, as `sqlite::<name>` and `postgres::<name>`. The
/// PostgreSQL variants are ignored by a plain `cargo test` (scripts/test.sh runs them); a name
/// preceded by `#[needs = "reason"]` needs another server on SQLite too, and is ignored there
/// with that reason.
#[macro_export]
macro_rules! on_both_databases {
    ($($(#[needs = $needs:literal])? $name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                $(#[ignore = $needs])?
                async fn $name() { super::$name(super::Db::Sqlite).await }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                #[ignore = "needs PostgreSQL: scripts/test.sh starts one and runs it"]
                async fn $name() { super::$name(super::Db::Postgres).await }
            )*
        }
    };
}

/// How many record requests (bridge or channel) the simulated Asterisk has received.
pub fn record_requests(t: &TestSim) -> usize {
    t.sim
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/record"))
        .count()
}

/// No channel, bridge or live recording left in the simulated Asterisk.
pub fn quiet(t: &TestSim) -> bool {
    t.sim.with_world(|w| w.counts()) == (0, 0, 0)
}

/// Waits until `n` recordings are started in the library and live in the simulated Asterisk
/// (the row is written just before the record request is sent).
pub async fn wait_recording(
    t: &TestSim,
    s: &TestService,
    what: &str,
    n: usize,
) -> Vec<RecordingRow> {
    let rows = wait_rows(&s.svc.db, what, n, |r| r.state == "recording").await;
    wait_until("recordings live in Asterisk", || {
        t.sim.with_world(|w| w.counts().2) == n
    })
    .await;
    rows
}

pub async fn stop(s: TestService) {
    let _ = s.stop.send(true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.svc.join()).await;
}

pub fn caller(t: &TestSim, name: &str, steps: Vec<ari_recorder::sim::Step>) {
    t.sim
        .define_party(name, ari_recorder::sim::Script::new(name, steps));
}

/// An HTTP answer read whole: status, headers, body.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or("").to_string()
    }
}

pub async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("request");
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.bytes().await.expect("body").to_vec(),
    }
}

/// Deletes recording `id` the two-step way (ask, then confirm with the token); the answer to
/// the confirmation.
pub async fn delete_confirmed(client: &reqwest::Client, base: &str, id: i64) -> Answer {
    let url = format!("{base}/api/recordings/{id}");
    let step = send(client.delete(&url)).await.json();
    let token = step["confirm_token"]
        .as_str()
        .expect("a confirmation token")
        .to_string();
    send(client.delete(format!("{url}?confirm={token}"))).await
}

/// A short real WAV (8 kHz, 16-bit) dated an hour ago, so the indexer takes it as final.
pub fn put_wav(t: &TestSim, name: &str) {
    let samples: Vec<u8> = (0..1600i16).flat_map(|i| (i * 7).to_le_bytes()).collect();
    let mut wav = ari_recorder::audio::wav::header(samples.len() as u32).to_vec();
    wav.extend(samples);
    let path = t.recordings.join(format!("{name}.wav"));
    std::fs::write(&path, wav).expect("write");
    ari_recorder::library::index::set_mtime(
        &path,
        std::time::SystemTime::now() - Duration::from_secs(3600),
    )
    .expect("mtime");
}

/// Waits until `count` recordings are final (`ready`) in the library.
pub async fn wait_ready(db: &ari_recorder::db::Database, count: i64) {
    eventually(&format!("{count} recordings indexed"), async || {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM recordings WHERE status = 'ready'")
            .fetch_one(&db.pool)
            .await
            .expect("count");
        n >= count
    })
    .await;
}

/// A service with one final recording (`call.wav`) of `tenant` with consent granted, and its id.
pub async fn one_playable_recording(
    t: &TestSim,
    url: &str,
    settings: &[(&str, &str)],
    tenant: &str,
) -> (TestService, i64) {
    put_wav(t, "call");
    let s = start_service_with(t, &[], url, settings).await;
    wait_ready(&s.svc.db, 1).await;
    let (id,): (i64,) = sqlx::query_as(
        "UPDATE recordings SET tenant = $1, consent = 'granted' WHERE name = 'call' RETURNING id",
    )
    .bind(tenant)
    .fetch_one(&s.svc.db.pool)
    .await
    .expect("consent");
    (s, id)
}

/// An HTTP client whose requests come from `address` (any of 127.0.0.0/8 reaches the service).
pub fn client_from(address: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(address))
        .build()
        .expect("client")
}

/// A TCP connection to `addr` from `local` (any of 127.0.0.0/8 reaches the service).
pub async fn connect_from(local: [u8; 4], addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(std::net::SocketAddr::from((local, 0)))
        .expect("bind");
    socket.connect(addr).await.expect("connect")
}
