//! Library benchmarks, each beside a peer measured in the same run:
//! - scanning 100,000 files (first index, then a warm rescan) against a plain directory walk
//!   (`find`);
//! - a list page at 1,000,000 rows, shallow and deep, through the HTTP endpoint's keyset query,
//!   against OFFSET paging of the same rows;
//! - mu-law to WAV transcoding throughput against `sox` (when installed: `scripts/bench.sh`
//!   installs it).
//!
//! `cargo bench --bench library`

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ari_recorder::audio::serve::WavStream;
use ari_recorder::library::probe::Encoding;
use ari_recorder::library::{Database, Indexer};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

async fn scan(dir: &Path) {
    const FILES: usize = 100_000;
    let root = dir.join("scan");
    for i in 0..FILES {
        let sub = root.join(format!("{:03}", i % 1000));
        if i < 1000 {
            std::fs::create_dir_all(&sub).expect("dir");
        }
        // 0.1 s of mu-law each, dated in the past so every file is final.
        let path = sub.join(format!("call-{i:06}.ulaw"));
        std::fs::write(&path, vec![0xFFu8; 800]).expect("write");
    }
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    for i in 0..FILES {
        let path = root
            .join(format!("{:03}", i % 1000))
            .join(format!("call-{i:06}.ulaw"));
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .expect("open");
        file.set_modified(old).expect("mtime");
    }
    let t0 = Instant::now();
    let found = Command::new("find")
        .arg(&root)
        .args(["-type", "f"])
        .output()
        .expect("find")
        .stdout;
    let find_time = t0.elapsed();
    let lines = found.iter().filter(|b| **b == b'\n').count();
    let db = Database::open(&format!("sqlite://{}/scan.db?mode=rwc", dir.display()))
        .await
        .expect("db");
    let indexer = Indexer::new(db, root.clone(), Duration::from_secs(3));
    let t0 = Instant::now();
    let first = indexer.full_scan().await.expect("scan");
    let first_time = t0.elapsed();
    let t0 = Instant::now();
    let warm = indexer.full_scan().await.expect("rescan");
    let warm_time = t0.elapsed();
    assert_eq!((first.probed, warm.unchanged), (FILES as u64, FILES as u64));
    let rate = |d: Duration| FILES as f64 / d.as_secs_f64();
    println!("scan of {FILES} files (SQLite):");
    println!(
        "  first index (probe + SHA-256 + insert): {:>9.0} files/s ({first_time:.2?})",
        rate(first_time)
    );
    println!(
        "  warm rescan (nothing changed):          {:>9.0} files/s ({warm_time:.2?})",
        rate(warm_time)
    );
    println!(
        "  peer: find -type f ({lines} files):       {:>9.0} files/s ({find_time:.2?})",
        rate(find_time)
    );
}

async fn list(dir: &Path) {
    const ROWS: i64 = 1_000_000;
    let url = format!("sqlite://{}/list.db?mode=rwc", dir.display());
    let db = Database::open(&url).await.expect("db");
    let t0 = Instant::now();
    // One statement generates the rows: a recursive counter.
    sqlx::query(&format!(
        "INSERT INTO recordings (path, name, format, status, size_bytes, mtime_ms, duration_ms, encoding, sample_rate, \
         data_offset, data_len, caller_number, caller_name, caller_name_lower, node_type, direction, started_at_ms, indexed_at_ms) \
         WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < {ROWS}) \
         SELECT 'r/' || x || '.wav', 'r/' || x, 'wav', 'ready', 16044, 0, (x * 7919) % 600000, 'pcm16', 8000, 44, 16000, \
         '555' || (x % 10000), 'Caller ' || x, 'caller ' || x, 'transfer', 'inbound', 1700000000000 + x * 1000, 0 FROM n"
    ))
    .execute(&db.pool)
    .await
    .expect("seed");
    println!(
        "list at {ROWS} rows (SQLite, seeded in {:.1?}):",
        t0.elapsed()
    );

    // The endpoint, on a real socket.
    let dialplans = dir.join("dialplans");
    std::fs::create_dir_all(&dialplans).expect("dir");
    let (store, _) = ari_recorder::flows::FlowStore::load(&dialplans).expect("flows");
    let client = ari_recorder::ari::AriClient::new("http://127.0.0.1:9", "x", "x").expect("client");
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let (flows, _) = ari_recorder::flows::FlowRuntime::new(
        client,
        "recorder".into(),
        std::sync::Arc::new(store),
        db.clone(),
        shutdown,
    );
    let indexer = std::sync::Arc::new(Indexer::new(
        db.clone(),
        dir.join("none"),
        Duration::from_secs(3),
    ));
    let app = ari_recorder::http::router(ari_recorder::http::AppState {
        db: db.clone(),
        metrics: Default::default(),
        recordings_dir: dir.join("none"),
        flows,
        library: std::sync::Arc::new(ari_recorder::http::Library::new(indexer)),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    // As the service does: no Nagle delay on small responses.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let base = format!("http://{addr}/api/recordings?limit=50");
    // A cursor deep in the list: the row at depth 999,950.
    let (deep_started, deep_id): (i64, i64) = sqlx::query_as(
        "SELECT started_at_ms, id FROM recordings ORDER BY started_at_ms DESC, id DESC LIMIT 1 OFFSET 999950",
    )
    .fetch_one(&db.pool)
    .await
    .expect("deep row");
    use base64::Engine;
    let deep_cursor = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("n:{deep_started}:{deep_id}"));
    for (label, url) in [
        ("shallow (first page)", base.clone()),
        ("deep (row 999,950)", format!("{base}&cursor={deep_cursor}")),
    ] {
        let mut times = Vec::new();
        for _ in 0..200 {
            let t0 = Instant::now();
            let response = client.get(&url).send().await.expect("get");
            assert_eq!(response.status().as_u16(), 200);
            let _ = response.bytes().await.expect("body");
            times.push(t0.elapsed());
        }
        times.sort();
        println!(
            "  GET /api/recordings {label}: p50 {:?}  p99 {:?}",
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
    for (label, cursor) in [
        ("shallow", None),
        ("deep (row 999,950)", Some((deep_started, deep_id))),
    ] {
        let mut times = Vec::new();
        for _ in 0..200 {
            let t0 = Instant::now();
            let rows: Vec<(i64,)> = match cursor {
                None => sqlx::query_as("SELECT id FROM recordings ORDER BY started_at_ms DESC, id DESC LIMIT $1")
                    .bind(51i64)
                    .fetch_all(&db.pool)
                    .await
                    .expect("keyset"),
                Some((k, id)) => sqlx::query_as(
                    "SELECT id FROM recordings WHERE (started_at_ms, id) < ($1, $2) ORDER BY started_at_ms DESC, id DESC LIMIT $3",
                )
                .bind(k)
                .bind(id)
                .bind(51i64)
                .fetch_all(&db.pool)
                .await
                .expect("keyset"),
            };
            assert!(rows.len() >= 49, "a page, or the last 49 rows");
            times.push(t0.elapsed());
        }
        times.sort();
        println!(
            "  keyset query only, {label}: p50 {:?}  p99 {:?}",
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
    for (label, offset) in [("shallow (OFFSET 0)", 0), ("deep (OFFSET 999950)", 999_950)] {
        let mut times = Vec::new();
        for _ in 0..20 {
            let t0 = Instant::now();
            let rows: Vec<(i64,)> = sqlx::query_as(
                "SELECT id FROM recordings ORDER BY started_at_ms DESC, id DESC LIMIT 50 OFFSET $1",
            )
            .bind(offset as i64)
            .fetch_all(&db.pool)
            .await
            .expect("offset");
            assert_eq!(rows.len(), 50);
            times.push(t0.elapsed());
        }
        times.sort();
        println!(
            "  peer: OFFSET paging, query only, {label}: p50 {:?}  p99 {:?}",
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
}

fn transcode(dir: &Path) {
    const BYTES: usize = 200 * 1024 * 1024;
    let input = dir.join("big.ulaw");
    let source: Vec<u8> = (0..BYTES).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&input, &source).expect("write");
    let stream = WavStream {
        path: input.clone(),
        encoding: Encoding::Ulaw,
        sample_rate: 8000,
        data_offset: 0,
        data_len: BYTES as u64,
    };
    let t0 = Instant::now();
    let mut served = 0u64;
    let chunk = 4 * 1024 * 1024;
    let mut start = 0u64;
    while start < stream.len() {
        let part = stream.read_range(start, start + chunk).expect("range");
        served += part.len() as u64;
        start += chunk;
    }
    let ours = t0.elapsed();
    let mb = BYTES as f64 / 1_048_576.0;
    println!("mu-law -> WAV, {mb:.0} MiB of mu-law ({served} bytes of WAV out):");
    println!(
        "  ari-recorder WavStream: {:>7.0} MiB/s of input ({ours:.2?})",
        mb / ours.as_secs_f64()
    );
    let out = dir.join("sox.wav");
    let t0 = Instant::now();
    match Command::new("sox")
        .args(["-t", "ul", "-r", "8000", "-c", "1"])
        .arg(&input)
        .args(["-t", "wav", "-e", "signed-integer", "-b", "16"])
        .arg(&out)
        .status()
    {
        Ok(status) if status.success() => {
            let theirs = t0.elapsed();
            println!(
                "  peer: sox:              {:>7.0} MiB/s of input ({theirs:.2?})",
                mb / theirs.as_secs_f64()
            );
        }
        _ => println!("  peer: sox not installed (scripts/bench.sh installs it)"),
    }
}

fn main() {
    let dir = tempfile::tempdir().expect("dir");
    transcode(dir.path());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(scan(dir.path()));
    runtime.block_on(list(dir.path()));
}
