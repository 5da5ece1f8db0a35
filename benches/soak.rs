//! Soak benchmark: what the service costs over time, measured on its own process (the release
//! binary, `serve`, driven by the simulated Asterisk in this process):
//!
//! - idle CPU with 100,000 finished files in the recordings folder, beside a bare inotify
//!   watcher on the same folder (`inotifywait`, the floor for "watching costs nothing");
//! - CPU-ms per recorded call over 1,000 calls at a steady rate (events, REST, database,
//!   indexing: everything the service does for a call);
//! - RSS at start, after 1,000 calls and after 10,000;
//! - database write transactions per recording (call state, call metadata, indexer).
//!
//! `cargo bench --bench soak` (SOAK_FILES, SOAK_CALLS, SOAK_RATE change the sizes;
//! SOAK_BIN runs another build of the service, e.g. an older one, for a before/after).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use ari_recorder::sim::{self, Script, SimOptions, Step};

#[path = "support/cpu.rs"]
mod cpu;
use cpu::process_cpu as cpu;
#[path = "support/process.rs"]
mod process;
use process::free_port;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// User + system CPU time of a process, from /proc (clock ticks of 10 ms).
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// The soak's service serves /metrics to this token.
const SOAK_METRICS_TOKEN: &str = "soak-metrics-token-0123456789abcdef";

/// One value of the service's /metrics (summed over label sets).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

async fn metrics(http: &reqwest::Client, base: &str) -> String {
    // Twice: a pooled connection the service just closed after its idle timeout (30 s, the
    // length of the idle window) fails once.
    for _ in 0..2 {
        let request = http
            .get(format!("{base}/metrics"))
            .bearer_auth(SOAK_METRICS_TOKEN);
        if let Ok(r) = request.send().await {
            if let Ok(text) = r.text().await {
                return text;
            }
        }
    }
    String::new()
}

/// Finished recordings with a small WAV each, modified an hour ago.
fn fill(dir: &Path, n: usize) {
    let mut wav = ari_recorder::audio::wav::header(1600).to_vec();
    wav.extend(std::iter::repeat_n(0u8, 1600));
    let old = SystemTime::now() - Duration::from_secs(3600);
    for i in 0..n {
        let sub = dir.join(format!("archive-{:03}", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir_all(&sub).expect("folder");
        }
        let path = sub.join(format!("old-{i:06}.wav"));
        std::fs::write(&path, &wav).expect("write");
        ari_recorder::library::index::set_mtime(&path, old).expect("mtime");
    }
}

struct Service {
    child: Child,
    base: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_service(bin: &Path, dir: &Path, ari: &str) -> Service {
    let port = free_port();
    let child = Command::new(bin)
        .arg("serve")
        .env("ARI_URL", ari)
        .env("ARI_PASSWORD", "recorder-secret")
        .env("RECORDINGS_DIR", dir.join("recording"))
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/library.db?mode=rwc", dir.display()),
        )
        .env("DIALPLANS_DIR", dir.join("dialplans"))
        .env("CACHE_DIR", dir.join("cache"))
        .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("TRANSCRIPTION_ENGINE", "off")
        .env("METRICS_TOKEN", SOAK_METRICS_TOKEN)
        // SOAK_LOG=FILE keeps the service's log, at SOAK_RUST_LOG (warn) level.
        .env(
            "RUST_LOG",
            std::env::var("SOAK_RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(
            std::env::var("SOAK_LOG")
                .ok()
                .and_then(|path| std::fs::File::create(path).ok())
                .map_or_else(Stdio::null, Stdio::from),
        )
        .spawn()
        .expect("service starts");
    Service {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

/// Waits until `f` of the service's metrics stops moving for `still`.
async fn settle(http: &reqwest::Client, base: &str, f: impl Fn(&str) -> f64, still: Duration) {
    let mut last = f64::NAN;
    let mut since = Instant::now();
    loop {
        let value = f(&metrics(http, base).await);
        if value != last {
            last = value;
            since = Instant::now();
        } else if since.elapsed() >= still && !value.is_nan() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn inotify_peer(dir: &Path) -> Option<Child> {
    Command::new("inotifywait")
        .args(["-m", "-r", "-q", "-e", "close_write,create,delete,move"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let files = env_usize("SOAK_FILES", 100_000);
    let calls = env_usize("SOAK_CALLS", 10_000);
    let rate = env_usize("SOAK_RATE", 40) as f64;
    let bin = std::env::var("SOAK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_BIN_EXE_ari-recorder")));
    let dir = tempfile::tempdir().expect("dir");
    let recordings = dir.path().join("recording");
    std::fs::create_dir_all(dir.path().join("dialplans")).expect("dialplans");
    std::fs::write(
        dir.path().join("dialplans/support.toml"),
        "[flow]\nnumbers = [\"100\"]\nstart = \"desk\"\n[nodes.desk]\ntype = \"transfer\"\ntarget = \"PJSIP/agent\"\nrecord_call = true\n",
    )
    .expect("flow");
    std::fs::create_dir_all(&recordings).expect("recordings");
    println!(
        "soak: {} ({files} files, {calls} calls at {rate}/s)",
        bin.display()
    );
    let started = Instant::now();
    fill(&recordings, files);
    println!(
        "  {files} files written in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Ten simulated seconds a second: a call (2 s of talk) is up about 0.3 s of real time.
    let sim = sim::start(SimOptions {
        recordings_dir: recordings.clone(),
        speed: 10.0,
        ..SimOptions::default()
    })
    .await
    .expect("sim");
    sim.define_party(
        "caller",
        Script::new("caller", vec![Step::Answer, Step::Talk(2.0), Step::Hangup]),
    );
    sim.define_party(
        "PJSIP/agent",
        Script::new("agent", vec![Step::Answer, Step::Talk(60.0), Step::Hangup]),
    );
    let http = reqwest::Client::new();
    let service = start_service(&bin, dir.path(), &sim.url());
    let pid = service.child.id();
    let index_start = Instant::now();
    settle(
        &http,
        &service.base,
        |m| {
            metric(m, "recordings_total")
                + metric(m, "indexer_file_reads_total")
                + metric(m, "ari_connected")
        },
        Duration::from_secs(5),
    )
    .await;
    println!(
        "  indexed {files} files in {:.1} s (first start), CPU {:.1} s",
        index_start.elapsed().as_secs_f64() - 5.0,
        cpu(pid).as_secs_f64()
    );

    // Idle: nothing changes for 30 s.
    let window = Duration::from_secs(30);
    let peer = inotify_peer(&recordings);
    tokio::time::sleep(Duration::from_secs(2)).await; // the peer's own set-up is not idle
    let (cpu0, peer0) = (cpu(pid), peer.as_ref().map(|p| cpu(p.id())));
    let before = metrics(&http, &service.base).await;
    tokio::time::sleep(window).await;
    let after = metrics(&http, &service.base).await;
    let idle = (cpu(pid) - cpu0).as_secs_f64() / window.as_secs_f64() * 100.0;
    let peer_idle = peer
        .as_ref()
        .zip(peer0)
        .map(|(p, c0)| (cpu(p.id()) - c0).as_secs_f64() / window.as_secs_f64() * 100.0);
    if let Some(mut p) = peer {
        let _ = p.kill();
        let _ = p.wait();
    }
    println!(
        "  idle CPU over {} s with {files} files: {idle:.2} % of a core; file reads {}, indexer writes {} (peer inotifywait on the same folder: {})",
        window.as_secs(),
        metric(&after, "indexer_file_reads_total") - metric(&before, "indexer_file_reads_total"),
        metric(&after, "indexer_db_write_transactions_total")
            - metric(&before, "indexer_db_write_transactions_total"),
        peer_idle
            .map(|p| format!("{p:.2} %"))
            .unwrap_or_else(|| "not installed".into())
    );
    let rss_start = rss_mib(pid);

    // Calls at a steady rate.
    let writes = |m: &str| {
        metric(m, "indexer_db_write_transactions_total") + metric(m, "calls_db_write_seconds_count")
    };
    let base_writes = writes(&metrics(&http, &service.base).await);
    let finished_name = "recordings_total{outcome=\"finished\"}";
    let started_name = "recordings_total{outcome=\"started\"}";
    let base_metrics = metrics(&http, &service.base).await;
    let base_recorded = metric(&base_metrics, finished_name);
    let base_started = metric(&base_metrics, started_name);
    let mut rss_1k = 0.0;
    // RSS at each thousandth call, under load: the shape of the curve (a plateau or a slope).
    let mut rss_curve = Vec::new();
    let cpu_start = cpu(pid);
    let run_start = Instant::now();
    // The pause for settling at 1,000 calls moves the schedule on: without that the calls due
    // meanwhile went out at once, a burst in which callers hung up before their agents were
    // bridged (fewer recorded calls, a different cost).
    let mut paused = Duration::ZERO;
    for i in 0..calls {
        let due = run_start + paused + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let _ = sim.place_inbound_call("100", "Soak <5550100>", "caller");
        if (i + 1) % 1000 == 0 {
            rss_curve.push(rss_mib(pid));
        }
        if i + 1 == 1000 || i + 1 == calls {
            // Let the calls in flight end, their files settle and be indexed.
            let settle_start = Instant::now();
            settle(
                &http,
                &service.base,
                |m| metric(m, "recordings_total") + metric(m, "indexer_file_reads_total"),
                Duration::from_secs(5),
            )
            .await;
            let done = i + 1;
            let m = metrics(&http, &service.base).await;
            paused += settle_start.elapsed();
            let finished = metric(&m, finished_name) - base_recorded;
            // A call whose caller hung up before its agent was bridged starts no recording.
            let started = metric(&m, started_name) - base_started;
            if done == 1000 {
                let cpu_1k = (cpu(pid) - cpu_start).as_secs_f64() * 1000.0 / 1000.0;
                rss_1k = rss_mib(pid);
                println!(
                    "  1,000 calls: {cpu_1k:.2} CPU-ms per recorded call ({finished:.0} of {started:.0} recordings started finished), RSS {rss_1k:.1} MiB (start {rss_start:.1} MiB), {:.1} write transactions per recording",
                    (writes(&m) - base_writes) / 1000.0
                );
            }
            if done == calls && calls > 1000 {
                let per_call = (cpu(pid) - cpu_start).as_secs_f64() * 1000.0 / done as f64;
                let rss = rss_mib(pid);
                println!(
                    "  {done} calls: {per_call:.2} CPU-ms per recorded call ({finished:.0} of {started:.0} recordings started finished), RSS {rss:.1} MiB ({:+.1} % since 1,000 calls), {:.1} write transactions per recording, {:.0} library write retries",
                    (rss / rss_1k - 1.0) * 100.0,
                    (writes(&m) - base_writes) / done as f64,
                    metric(&m, "library_write_retries_total")
                );
            }
        }
    }
    let curve: Vec<String> = rss_curve.iter().map(|r| format!("{r:.1}")).collect();
    println!(
        "  RSS at each 1,000 calls, under load (MiB): {}",
        curve.join(", ")
    );
    drop(service);
}
