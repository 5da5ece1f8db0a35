//! Scale-out: list and audio requests a second served by one and by two instances of
//! `ari-recorder serve` (separate processes, each with its own node id, recordings folder and
//! simulated Asterisk) on one PostgreSQL, beside nginx with one and with two worker processes
//! serving the same bytes as static files; and the audit write's share of a list request.
//!
//! `BENCH_POSTGRES_URL=postgres://... cargo bench --bench scale` (or TEST_POSTGRES_URL, which
//! `scripts/test.sh` sets up); a throwaway database is created on that server. `BENCH_ROWS`
//! sets the library's size (default 100,000), `BENCH_SECONDS` each measurement's length (5).

use ari_recorder::access::audit::SealedAudit;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ari_recorder::access::{accounts, audit, Scope};
use ari_recorder::db::Database;
use ari_recorder::sim::{self, SimOptions};

#[path = "support/cpu.rs"]
mod cpu;
#[path = "support/process.rs"]
mod process;
use process::{free_port, wait_for};

/// Requests in flight at once, across all targets.
const CONCURRENCY: usize = 16;
/// Recordings in each node's folder, requested whole.
const FILES: usize = 20;
/// Each file's length: 5 s of 8 kHz 16-bit audio.
const FILE_SECONDS: usize = 5;
const AUDIT_KEY: &str = "a1:scale-bench-audit-key-0123456789abcdef";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A child process killed when the benchmark ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        process::terminate(&mut self.0);
    }
}

/// One instance: its process, address and node.
struct Instance {
    process: Running,
    base: String,
}

fn start_instance(dir: &Path, node: &str, ari: &str, db_url: &str) -> Instance {
    let port = free_port();
    let process = Command::new(env!("CARGO_BIN_EXE_ari-recorder"))
        .arg("serve")
        .env("ARI_URL", ari)
        .env("ARI_PASSWORD", "recorder-secret")
        .env("RECORDINGS_DIR", dir.join(format!("recordings-{node}")))
        .env("DATABASE_URL", db_url)
        .env("DIALPLANS_DIR", dir.join("dialplans"))
        .env("CACHE_DIR", dir.join(format!("cache-{node}")))
        .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("TRANSCRIPTION_ENGINE", "off")
        .env("NODE_ID", node)
        .env("AUDIT_KEYS", AUDIT_KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ari-recorder starts");
    Instance {
        process: Running(process),
        base: format!("http://127.0.0.1:{port}"),
    }
}

/// Distinct 5-second recordings in `folder`.
fn fill(folder: &Path) {
    std::fs::create_dir_all(folder).expect("folder");
    let samples = 8000 * FILE_SECONDS;
    for i in 0..FILES {
        let mut wav = ari_recorder::audio::wav::header((samples * 2) as u32).to_vec();
        for n in 0..samples {
            let sample = (((n * (i + 3)) % 200) as i16 - 100) * 50;
            wav.extend_from_slice(&sample.to_le_bytes());
        }
        std::fs::write(folder.join(format!("call-{i:02}.wav")), wav).expect("write");
    }
}

/// `node`'s indexed, final recordings.
async fn node_ids(db: &Database, node: &str) -> Vec<i64> {
    sqlx::query_as::<_, (i64,)>(
        "SELECT id FROM recordings WHERE node_id = $1 AND status = 'ready' AND sha256 IS NOT NULL ORDER BY id",
    )
    .bind(node)
    .fetch_all(&db.pool)
    .await
    .expect("ids")
    .into_iter()
    .map(|(id,)| id)
    .collect()
}

/// What a load cost: requests a second, and CPU time a request of the processes serving it
/// and of the whole machine (the load generator, PostgreSQL and the servers together).
struct Load {
    per_second: f64,
    server_cpu_ms: f64,
    /// PostgreSQL's processes.
    database_cpu_ms: f64,
    machine_cpu_ms: f64,
    /// Cores busy on average (of the machine's).
    busy_cores: f64,
}

/// Runs `CONCURRENCY` tasks for `seconds`, task k sending to target k modulo the number of
/// targets, each target's URLs in turn; every answer must be 200 and is read whole. `servers`
/// are the processes whose CPU time is counted as the servers'.
async fn load(
    client: &reqwest::Client,
    targets: &[Vec<String>],
    servers: &[u32],
    seconds: f64,
) -> Load {
    let done = Arc::new(AtomicU64::new(0));
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for k in 0..CONCURRENCY {
        let urls = targets[k % targets.len()].clone();
        let (client, done, counting, stop) =
            (client.clone(), done.clone(), counting.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = k;
            while !stop.load(Ordering::Relaxed) {
                let url = &urls[i % urls.len()];
                i += 1;
                let response = client.get(url).send().await.expect("request");
                assert_eq!(response.status().as_u16(), 200, "{url}");
                response.bytes().await.expect("body");
                if counting.load(Ordering::Relaxed) {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let server_cpu = || -> Duration { servers.iter().map(|&pid| cpu::process_cpu(pid)).sum() };
    // One second of warm-up (connections opened, caches filled), then the measurement.
    tokio::time::sleep(Duration::from_secs(1)).await;
    counting.store(true, Ordering::Relaxed);
    let (t0, server0, machine0) = (Instant::now(), server_cpu(), cpu::machine_busy());
    let database0 = cpu::processes_named("postgres");
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let counted = done.load(Ordering::Relaxed) as f64;
    let elapsed = t0.elapsed().as_secs_f64();
    let (server, machine) = (server_cpu() - server0, cpu::machine_busy() - machine0);
    let database = cpu::used_between(&database0, &cpu::processes_named("postgres"));
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("load task");
    }
    Load {
        per_second: counted / elapsed,
        server_cpu_ms: server.as_secs_f64() * 1e3 / counted,
        database_cpu_ms: database.as_secs_f64() * 1e3 / counted,
        machine_cpu_ms: machine.as_secs_f64() * 1e3 / counted,
        busy_cores: machine.as_secs_f64() / elapsed,
    }
}

/// nginx serving `www` with `workers` worker processes; None when nginx is not installed.
async fn nginx(dir: &Path, www: &Path, workers: usize) -> Option<(Running, String)> {
    let port = free_port();
    let run = dir.join(format!("nginx-{workers}"));
    std::fs::create_dir_all(&run).expect("nginx folder");
    let user = if std::env::var("USER").as_deref() == Ok("root") {
        "user root;"
    } else {
        ""
    };
    let conf = run.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "{user} daemon off; pid {d}/nginx.pid; error_log {d}/error.log; worker_processes {workers};\n\
             events {{}}\nhttp {{ access_log off; sendfile on; server {{ listen 127.0.0.1:{port}; root {w}; }} }}\n",
            d = run.display(),
            w = www.display()
        ),
    )
    .expect("nginx conf");
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(&run)
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let base = format!("http://127.0.0.1:{port}");
    let probe = format!("{base}/list.json");
    wait_for("nginx", || async {
        reqwest::get(&probe)
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    Some((Running(child), base))
}

#[tokio::main]
async fn main() {
    let Some(admin_url) = std::env::var("BENCH_POSTGRES_URL")
        .or_else(|_| std::env::var("TEST_POSTGRES_URL"))
        .ok()
    else {
        println!(
            "scale: BENCH_POSTGRES_URL not set (scripts/test.sh starts a PostgreSQL): not run"
        );
        return;
    };
    let rows = env_usize("BENCH_ROWS", 100_000);
    let seconds = env_usize("BENCH_SECONDS", 5) as f64;
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&admin_url)
        .await
        .expect("PostgreSQL");
    let name = format!("ari_recorder_scale_{:08x}", std::process::id());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .expect("create database");
    let (server, _) = admin_url.rsplit_once('/').expect("URL names a database");
    let db_url = format!("{server}/{name}");
    let db = Database::open(&db_url)
        .await
        .expect("database")
        .with_audit_keys(Some(
            ari_recorder::signing::SigningKeys::parse(&[AUDIT_KEY.to_string()]).expect("audit key"),
        ));

    // The library: `rows` recordings of a node not running here (so neither instance's scan
    // touches them), and each instance's own folder of playable files.
    let t0 = Instant::now();
    sqlx::query(&format!(
        "INSERT INTO recordings (path, node_id, name, format, status, size_bytes, mtime_ms, duration_ms, encoding, sample_rate, \
         data_offset, data_len, caller_number, caller_name, node_type, direction, started_at_ms, indexed_at_ms) \
         SELECT 'r/' || x || '.wav', 'archive', 'r/' || x, 'wav', 'ready', 16044, 0, (x * 7919) % 600000, 'pcm16', 8000, 44, 16000, \
         '555' || (x % 10000), 'Caller ' || x, 'transfer', 'inbound', 1700000000000 + x * 1000, 0 \
         FROM generate_series(1::bigint, {rows}) AS n(x)"
    ))
    .execute(&db.pool)
    .await
    .expect("seed");
    sqlx::query("ANALYZE")
        .execute(&db.pool)
        .await
        .expect("analyze");
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(dir.path().join("dialplans")).expect("dialplans");
    let mut conn = db.pool.acquire().await.expect("connection");
    accounts::create_user(
        &mut conn,
        &accounts::NewUser {
            username: "bench".into(),
            password: "bench-password".into(),
            role: "admin".into(),
            tenant: "default".into(),
            projects: Vec::new(),
            extension: None,
        },
    )
    .await
    .expect("user");
    let (_, token) = accounts::create_token(&mut conn, "bench", "bench", &[Scope::Admin], None)
        .await
        .expect("token");
    drop(conn);
    println!(
        "scale-out on PostgreSQL, {rows} recordings (seeded in {:.1} s), {CONCURRENCY} requests in flight, {seconds} s each:",
        t0.elapsed().as_secs_f64()
    );

    let mut instances = Vec::new();
    let mut sims = Vec::new();
    let mut audio: Vec<Vec<String>> = Vec::new();
    for node in ["a", "b"] {
        let folder: PathBuf = dir.path().join(format!("recordings-{node}"));
        fill(&folder);
        let sim = sim::start(SimOptions {
            recordings_dir: folder,
            ..SimOptions::default()
        })
        .await
        .expect("sim");
        let instance = start_instance(dir.path(), node, &sim.url(), &db_url);
        wait_for(&format!("instance {node} indexed its files"), || async {
            node_ids(&db, node).await.len() == FILES
        })
        .await;
        // Recorded outside a flow, so with no consent on file: as if the caller had agreed.
        sqlx::query("UPDATE recordings SET consent = 'granted' WHERE node_id = $1")
            .bind(node)
            .execute(&db.pool)
            .await
            .expect("consent");
        audio.push(
            node_ids(&db, node)
                .await
                .into_iter()
                .map(|id| format!("{}/api/recordings/{id}/audio", instance.base))
                .collect(),
        );
        instances.push(instance);
        sims.push(sim);
    }
    let list: Vec<Vec<String>> = instances
        .iter()
        .map(|i| vec![format!("{}/api/recordings?limit=50", i.base)])
        .collect();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("header"),
    );
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .tcp_nodelay(true)
        .build()
        .expect("client");

    // The peer: the same bytes as static files.
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).expect("www");
    let page = client.get(&list[0][0]).send().await.expect("list");
    std::fs::write(www.join("list.json"), page.bytes().await.expect("page")).expect("page file");
    std::fs::copy(
        dir.path().join("recordings-a/call-00.wav"),
        www.join("audio.wav"),
    )
    .expect("audio file");

    let pids: Vec<u32> = instances.iter().map(|i| i.process.0.id()).collect();
    for (what, targets, file) in [
        ("list page", &list, "list.json"),
        ("whole recording", &audio, "audio.wav"),
    ] {
        let one = load(&client, &targets[..1], &pids[..1], seconds).await;
        let two = load(&client, targets, &pids, seconds).await;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        for (label, l) in [("one instance", &one), ("two instances", &two)] {
            println!(
                "  {what}, {label}: {:.0}/s; CPU-ms a request: {:.2} in the instances, {:.2} in PostgreSQL, \
                 {:.2} on the machine ({:.1} of {cores} cores busy)",
                l.per_second, l.server_cpu_ms, l.database_cpu_ms, l.machine_cpu_ms, l.busy_cores
            );
        }
        println!(
            "  {what}: two instances / one = x{:.2}",
            two.per_second / one.per_second
        );
        let mut peer = Vec::new();
        for workers in [1, 2] {
            if let Some((nginx, base)) = nginx(dir.path(), &www, workers).await {
                // nginx's workers are its master's children: the machine's figure prices them.
                let url = vec![vec![format!("{base}/{file}")]];
                peer.push(load(&reqwest::Client::new(), &url, &[nginx.0.id()], seconds).await);
            }
        }
        match peer.as_slice() {
            [one, two] => println!(
                "    peer nginx, same bytes: one worker {:.0}/s ({:.3} CPU-ms a request on the machine), two workers {:.0}/s ({:.3}): x{:.2}",
                one.per_second,
                one.machine_cpu_ms,
                two.per_second,
                two.machine_cpu_ms,
                two.per_second / one.per_second
            ),
            _ => println!("    peer: nginx not installed (scripts/bench.sh installs it)"),
        }
    }

    // The audit write's share of a list request: the request, one at a time, then its audit
    // write alone (the same event through the same code) on the same database.
    let mut requests = Vec::new();
    for _ in 0..1000 {
        let t0 = Instant::now();
        let response = client.get(&list[0][0]).send().await.expect("list");
        assert_eq!(response.status().as_u16(), 200);
        response.bytes().await.expect("body");
        requests.push(t0.elapsed());
    }
    let mut writes = Vec::new();
    for _ in 0..1000 {
        let t0 = Instant::now();
        audit::record(&db, &audit::AuditEntry::new("bench", "default", "list"))
            .await
            .expect("audit write");
        writes.push(t0.elapsed());
    }
    requests.sort();
    writes.sort();
    println!(
        "  list request, one at a time: p50 {:.2} ms, p99 {:.2} ms; its audit write alone: p50 {:.2} ms, p99 {:.2} ms ({:.0} % of the request at the median)",
        percentile(&requests, 0.5).as_secs_f64() * 1e3,
        percentile(&requests, 0.99).as_secs_f64() * 1e3,
        percentile(&writes, 0.5).as_secs_f64() * 1e3,
        percentile(&writes, 0.99).as_secs_f64() * 1e3,
        100.0 * percentile(&writes, 0.5).as_secs_f64() / percentile(&requests, 0.5).as_secs_f64()
    );
    let verified = audit::verify(&db, None).await.expect("verify");
    assert_eq!(verified.problem, None, "the audit chain verifies");
    println!(
        "  audit chain after the run: {} events from both instances and this process, verified",
        verified.events
    );
    drop(instances);
    db.pool.close().await;
    let _ = sqlx::query(&format!("DROP DATABASE {name}"))
        .execute(&admin)
        .await;
}
