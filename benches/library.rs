//! Library benchmarks, each beside a peer measured in the same run:
//! - scanning 100,000 files (first index, then a warm rescan) against a plain directory walk
//!   (`find`);
//! - a list page at `BENCH_ROWS` rows (1,000,000), shallow and deep, through the HTTP endpoint,
//!   against OFFSET paging of the same rows (SQLite, or PostgreSQL at `BENCH_POSTGRES_URL`);
//! - a search of what was said (`?q=`) at `BENCH_ROWS` transcribed recordings, a rare word and a
//!   word of every transcript, through the HTTP endpoint, against a scan of the transcripts'
//!   text (`LIKE`, what a search without the full-text index does);
//! - mu-law to WAV transcoding throughput against `sox`, Opus encoding speed against `opusenc`,
//!   and one range stream against nginx serving the same file (`scripts/bench.sh` installs the
//!   three).
//!
//! `cargo bench --bench library`

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ari_recorder::audio::Encoding;
use ari_recorder::db::Database;
use ari_recorder::library::Indexer;
use ari_recorder::playback::serve::WavStream;

#[path = "support/process.rs"]
mod process;

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

/// A list answer, its recordings counted.
#[derive(serde::Deserialize)]
struct Page {
    recordings: Vec<serde::de::IgnoredAny>,
}

/// Requests per list measurement: enough for a p99 that is not one slow request.
const REQUESTS: usize = 1000;

/// `rows` final recordings in one statement (newest last, a call a second), each `duration` ms
/// long (an SQL expression of the row's number `x`) with consent `consent`.
async fn seed_recordings(db: &Database, backend: &str, rows: i64, duration: &str, consent: &str) {
    let numbers = if backend == "SQLite" {
        format!("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < {rows}) SELECT x FROM n")
    } else {
        format!("SELECT x FROM generate_series(1::bigint, {rows}) AS n(x)")
    };
    sqlx::query(&format!(
        "INSERT INTO recordings (path, name, format, status, size_bytes, mtime_ms, duration_ms, encoding, sample_rate, \
         data_offset, data_len, caller_number, caller_name, node_type, direction, started_at_ms, indexed_at_ms, consent) \
         SELECT 'r/' || x || '.wav', 'r/' || x, 'wav', 'ready', 16044, 0, {duration}, 'pcm16', 8000, 44, 16000, \
         '555' || (x % 10000), 'Caller ' || x, 'transfer', 'inbound', 1700000000000 + x * 1000, 0, $1 \
         FROM ({numbers}) AS numbers"
    ))
    .bind(consent)
    .execute(&db.pool)
    .await
    .expect("seed recordings");
}

/// `BENCH_ROWS` (default 1,000,000) rows, on SQLite, or on the PostgreSQL database named by
/// `BENCH_POSTGRES_URL` when set (its recordings table is emptied first).
async fn list(dir: &Path) {
    let rows: i64 = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let (url, backend) = match std::env::var("BENCH_POSTGRES_URL") {
        Ok(url) => (url, "PostgreSQL"),
        Err(_) => (
            format!("sqlite://{}/list.db?mode=rwc", dir.display()),
            "SQLite",
        ),
    };
    let db = Database::open(&url).await.expect("db");
    sqlx::query("DELETE FROM recordings")
        .execute(&db.pool)
        .await
        .expect("empty");
    // Bulk load as one would: secondary indexes dropped, rows in, indexes built once (the
    // same CREATE INDEX statements as the migration).
    let migration = if backend == "SQLite" {
        concat!(
            include_str!("../migrations/sqlite/0002_recordings.sql"),
            include_str!("../migrations/sqlite/0004_access.sql")
        )
    } else {
        concat!(
            include_str!("../migrations/postgres/0002_recordings.sql"),
            include_str!("../migrations/postgres/0004_access.sql")
        )
    };
    let create_indexes: Vec<String> = migration
        .split(';')
        .map(|statement| {
            statement
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
                .to_string()
        })
        .filter(|statement| statement.starts_with("CREATE INDEX IF NOT EXISTS recordings"))
        .collect();
    for statement in &create_indexes {
        let name = statement.split_whitespace().nth(5).expect("index name");
        sqlx::query(&format!("DROP INDEX IF EXISTS {name}"))
            .execute(&db.pool)
            .await
            .expect("drop index");
    }
    let t0 = Instant::now();
    seed_recordings(&db, backend, rows, "(x * 7919) % 600000", "unknown").await;
    for statement in &create_indexes {
        sqlx::query(statement)
            .execute(&db.pool)
            .await
            .expect("create index");
    }
    sqlx::query("ANALYZE")
        .execute(&db.pool)
        .await
        .expect("analyze");
    println!(
        "list at {rows} rows ({backend}, seeded in {:.1?}):",
        t0.elapsed()
    );

    // The endpoint, on a real socket.
    let (router, token) = library_router(dir, db.clone(), dir.join("none")).await;
    let addr = serve_router(router).await;
    let client = bearer_client(&token);
    let base = format!("http://{addr}/api/recordings?limit=50");
    // A cursor deep in the list: the last full page.
    let depth = rows - 50;
    let (deep_started, deep_id): (i64, i64) =
        sqlx::query_as("SELECT started_at_ms, id FROM recordings ORDER BY started_at_ms DESC, id DESC LIMIT 1 OFFSET $1")
            .bind(depth - 1)
            .fetch_one(&db.pool)
            .await
            .expect("deep row");
    use base64::Engine;
    let deep_cursor = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("n:{deep_started}:{deep_id}"));
    let deep_label = format!("deep (row {depth})");
    for (label, url) in [
        ("shallow (first page)".to_string(), base.clone()),
        (deep_label.clone(), format!("{base}&cursor={deep_cursor}")),
    ] {
        let mut times = Vec::new();
        for _ in 0..REQUESTS {
            let t0 = Instant::now();
            let response = client.get(&url).send().await.expect("get");
            assert_eq!(response.status().as_u16(), 200);
            // Read whole and checked, without building a tree of it (the client's cost).
            let body = response.bytes().await.expect("body");
            let page: Page = serde_json::from_slice(&body).expect("a page");
            assert_eq!(page.recordings.len(), 50);
            times.push(t0.elapsed());
        }
        times.sort();
        println!(
            "  GET /api/recordings {label}: p50 {:?}  p99 {:?}",
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
    // Where a request's time goes: its authentication (one query) and its audit event (one
    // transaction), each alone on the same database.
    let mut auth_times = Vec::new();
    let mut audit_times = Vec::new();
    for _ in 0..REQUESTS {
        let t0 = Instant::now();
        let mut conn = db.pool.acquire().await.expect("connection");
        let principal = ari_recorder::access::accounts::principal_for_token(
            &mut conn,
            &token,
            ari_recorder::clock::now_ms(),
        )
        .await
        .expect("token query");
        drop(conn);
        assert!(principal.is_some());
        auth_times.push(t0.elapsed());
        let t0 = Instant::now();
        let entry = ari_recorder::access::audit::AuditEntry::new("bench", "default", "list");
        ari_recorder::access::audit::record(&db, &entry)
            .await
            .expect("audit write");
        audit_times.push(t0.elapsed());
    }
    for (label, times) in [
        ("token check alone", &mut auth_times),
        ("audit write alone", &mut audit_times),
    ] {
        times.sort();
        println!(
            "  {label}: p50 {:?}  p99 {:?}",
            percentile(times, 0.5),
            percentile(times, 0.99)
        );
    }
    for (label, cursor) in [
        ("shallow".to_string(), None),
        (deep_label, Some((deep_started, deep_id))),
    ] {
        let mut times = Vec::new();
        for _ in 0..REQUESTS {
            let t0 = Instant::now();
            let found: Vec<(i64,)> = match cursor {
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
            assert!(found.len() >= 50);
            times.push(t0.elapsed());
        }
        times.sort();
        println!(
            "  keyset query only, {label}: p50 {:?}  p99 {:?}",
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
    for (label, offset) in [
        ("shallow (OFFSET 0)".to_string(), 0),
        (format!("deep (OFFSET {depth})"), depth),
    ] {
        let mut times = Vec::new();
        for _ in 0..20 {
            let t0 = Instant::now();
            let found: Vec<(i64,)> = sqlx::query_as(
                "SELECT id FROM recordings ORDER BY started_at_ms DESC, id DESC LIMIT 50 OFFSET $1",
            )
            .bind(offset)
            .fetch_all(&db.pool)
            .await
            .expect("offset");
            assert_eq!(found.len(), 50);
            times.push(t0.elapsed());
        }
        times.sort();
        println!(
            "  peer: OFFSET paging, query only, {label}: p50 {:?}  p99 {:?}",
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
    // The whole list as CSV through the endpoint (streamed, read chunk by chunk), beside the
    // sqlite3 shell writing the same columns of the same rows from the same file.
    let t0 = Instant::now();
    let mut response = client
        .get(format!("http://{addr}/api/recordings/export.csv"))
        .send()
        .await
        .expect("export");
    assert_eq!(response.status().as_u16(), 200);
    let (mut bytes, mut lines) = (0usize, 0usize);
    while let Some(chunk) = response.chunk().await.expect("chunk") {
        bytes += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
    }
    let served = t0.elapsed();
    assert_eq!(lines as i64, rows + 1, "a header and every row");
    println!(
        "  GET /api/recordings/export.csv, {rows} rows: {served:?} ({:.0} rows/s, {:.1} MB)",
        rows as f64 / served.as_secs_f64(),
        bytes as f64 / 1e6
    );
    if backend == "SQLite" {
        let t0 = Instant::now();
        let peer = std::process::Command::new("sqlite3")
            .args([
                "-csv",
                "-header",
                &dir.join("list.db").display().to_string(),
                "SELECT id, name, started_at_ms, duration_ms, status, reason, format, caller_name, \
                 caller_number, callee, direction, node_type, flow, node, call_id, tenant, project, \
                 consent, compliance FROM recordings ORDER BY started_at_ms DESC, id DESC",
            ])
            .stdout(std::process::Stdio::piped())
            .output()
            .expect("sqlite3 (scripts/bench.sh installs it)");
        let took = t0.elapsed();
        assert!(peer.status.success());
        println!(
            "  peer: sqlite3 -csv of the same columns and rows: {took:?} ({:.0} rows/s, {:.1} MB)",
            rows as f64 / took.as_secs_f64(),
            peer.stdout.len() as f64 / 1e6
        );
    }
}

/// `?q=` over `BENCH_ROWS` (1,000,000) transcribed recordings on SQLite, or on PostgreSQL at
/// `BENCH_POSTGRES_URL` (its recordings are replaced): every transcript says "refund", one in a
/// thousand "damaged", one in a hundred thousand its order number.
async fn said(dir: &Path) {
    let rows: i64 = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let (url, backend) = match std::env::var("BENCH_POSTGRES_URL") {
        Ok(url) => (url, "PostgreSQL"),
        Err(_) => (
            format!("sqlite://{}/said.db?mode=rwc", dir.display()),
            "SQLite",
        ),
    };
    let db = Database::open(&url).await.expect("db");
    for table in ["recording_transcripts", "recordings"] {
        sqlx::query(&format!("DELETE FROM {table}"))
            .execute(&db.pool)
            .await
            .expect("empty");
    }
    sqlx::query("DELETE FROM transcript_search")
        .execute(&db.pool)
        .await
        .expect("empty index");
    let t0 = Instant::now();
    seed_recordings(&db, backend, rows, "60000", "granted").await;
    // What each call said.
    let text = "'thank you for calling about order ' || (id % 100000) || ' the parcel ' || \
                CASE WHEN id % 1000 = 0 THEN 'damaged' ELSE 'arrived' END || ' please refund'";
    let (cues, words) = if backend == "SQLite" {
        (
            format!("json_array(json_object('start_ms', 1500, 'end_ms', 4000, 'speaker', 'Caller', 'text', {text}))"),
            format!("INSERT INTO transcript_search (rowid, text) SELECT id, {text} FROM recordings"),
        )
    } else {
        (
            format!("json_build_array(json_build_object('start_ms', 1500, 'end_ms', 4000, 'speaker', 'Caller', 'text', {text}))::text"),
            format!("INSERT INTO transcript_search (recording_id, words) SELECT id, to_tsvector('simple', {text}) FROM recordings"),
        )
    };
    sqlx::query(&format!(
        "INSERT INTO recording_transcripts (recording_id, source, cues, updated_at_ms, by_actor) \
         SELECT id, 'api', {cues}, 0, 'bench' FROM recordings"
    ))
    .execute(&db.pool)
    .await
    .expect("seed transcripts");
    sqlx::query(&words)
        .execute(&db.pool)
        .await
        .expect("seed the index");
    sqlx::query("ANALYZE")
        .execute(&db.pool)
        .await
        .expect("analyze");
    println!(
        "search of what was said at {rows} transcribed recordings ({backend}, seeded in {:.1?}):",
        t0.elapsed()
    );
    let (router, token) = library_router(dir, db.clone(), dir.join("none")).await;
    let addr = serve_router(router).await;
    let client = bearer_client(&token);
    for (label, words, requests) in [
        (
            "a word of one transcript in a thousand (damaged)",
            "damaged",
            REQUESTS,
        ),
        ("an order number (ten transcripts)", "order+4242", REQUESTS),
        ("a word of every transcript (refund)", "refund", 100),
    ] {
        let url = format!("http://{addr}/api/recordings?limit=50&q={words}");
        let mut times = Vec::new();
        for _ in 0..requests {
            let t0 = Instant::now();
            let response = client.get(&url).send().await.expect("get");
            assert_eq!(response.status().as_u16(), 200);
            let body = response.bytes().await.expect("body");
            let page: Page = serde_json::from_slice(&body).expect("a page");
            assert!(!page.recordings.is_empty());
            times.push(t0.elapsed());
        }
        times.sort();
        println!(
            "  GET /api/recordings?q={words}, {label}: p50 {:?}  p99 {:?}",
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
    // Peer: the same search as a scan of the transcripts' text, newest first, 50 rows.
    for (label, pattern) in [("damaged", "%damaged%"), ("refund", "%refund%")] {
        let mut times = Vec::new();
        for _ in 0..5 {
            let t0 = Instant::now();
            let found: Vec<(i64,)> = sqlx::query_as(
                "SELECT r.id FROM recordings r JOIN recording_transcripts t ON t.recording_id = r.id \
                 WHERE t.cues LIKE $1 ORDER BY r.started_at_ms DESC, r.id DESC LIMIT 50",
            )
            .bind(pattern)
            .fetch_all(&db.pool)
            .await
            .expect("scan");
            assert!(!found.is_empty());
            times.push(t0.elapsed());
        }
        times.sort();
        println!(
            "  peer: LIKE scan of the transcripts, {label}, query only: p50 {:?}  max {:?}",
            percentile(&times, 0.5),
            times[times.len() - 1]
        );
    }
}

fn transcode(dir: &Path) {
    const BYTES: usize = 200 * 1024 * 1024;
    let input = dir.join("big.ulaw");
    let source: Vec<u8> = (0..BYTES).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&input, &source).expect("write");
    let stream = WavStream {
        source: input.clone().into(),
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

fn opus(dir: &Path) {
    const SECONDS: usize = 600;
    let mut samples = vec![0i16; 8000 * SECONDS];
    ari_recorder::audio::synth::Voice::from_name("bench").fill(0, &mut samples);
    let t0 = Instant::now();
    let ogg = ari_recorder::audio::opus::encode_ogg_opus(&samples, 8000).expect("opus");
    let ours = t0.elapsed();
    println!("Opus encoding of {SECONDS} s of 8 kHz speech:");
    println!(
        "  ari-recorder (libopus via audiopus, voip): {:>6.0}x realtime ({ours:.2?}, {} bytes)",
        SECONDS as f64 / ours.as_secs_f64(),
        ogg.len()
    );
    let wav_path = dir.join("speech.wav");
    let mut wav =
        ari_recorder::audio::wav::header(u32::try_from(samples.len() * 2).expect("fits")).to_vec();
    wav.extend(ari_recorder::audio::wav::pcm_bytes(&samples));
    std::fs::write(&wav_path, wav).expect("wav");
    let t0 = Instant::now();
    match Command::new("opusenc")
        .args(["--quiet", "--speech"])
        .arg(&wav_path)
        .arg(dir.join("speech.opus"))
        .status()
    {
        Ok(status) if status.success() => {
            let theirs = t0.elapsed();
            println!(
                "  peer: opusenc --speech:                    {:>6.0}x realtime ({theirs:.2?})",
                SECONDS as f64 / theirs.as_secs_f64()
            );
        }
        _ => println!("  peer: opusenc not installed (scripts/bench.sh installs it)"),
    }
}

fn bearer_client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("ascii"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

/// Builds the service's HTTP router over `db` and `recordings` (no Asterisk needed), with an
/// admin of the default tenant whose token the requests carry.
async fn library_router(
    dir: &Path,
    db: Database,
    recordings: std::path::PathBuf,
) -> (axum::Router, String) {
    use ari_recorder::access::accounts;
    let mut conn = db.pool.acquire().await.expect("connection");
    let admin = accounts::NewUser {
        username: "bench".into(),
        password: "bench-password".into(),
        role: "admin".into(),
        tenant: "default".into(),
        projects: Vec::new(),
        extension: None,
    };
    match accounts::create_user(&mut conn, &admin).await {
        Ok(_) | Err(accounts::AccountError::Exists(_)) => {}
        Err(e) => panic!("bench user: {e}"),
    }
    let (_, token) = accounts::create_token(
        &mut conn,
        "bench",
        "bench",
        &[ari_recorder::access::Scope::Admin],
        None,
    )
    .await
    .expect("token");
    drop(conn);
    let dialplans = dir.join("dialplans");
    std::fs::create_dir_all(&dialplans).expect("dir");
    let (store, _) = ari_recorder::flows::FlowStore::load(&dialplans).expect("flows");
    let client = ari_recorder::ari::AriClient::new("http://127.0.0.1:9", "x", "x").expect("client");
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    std::mem::forget(stop); // lives as long as the benchmark
    let (flows, _) = ari_recorder::flows::FlowRuntime::new(
        client,
        "recorder".into(),
        std::sync::Arc::new(store),
        db.clone(),
        ari_recorder::flows::runtime::LibraryLinks {
            metrics: Default::default(),
            finished: None,
        },
        shutdown,
        Default::default(),
    );
    let indexer = std::sync::Arc::new(Indexer::new(
        db.clone(),
        recordings.clone(),
        Duration::from_secs(3),
    ));
    let router = ari_recorder::http::router(ari_recorder::http::AppState {
        db,
        metrics: Default::default(),
        recordings_dir: recordings.clone(),
        flows,
        library: std::sync::Arc::new(ari_recorder::http::Library::new(
            indexer,
            ari_recorder::playback::call_audio::CallAudio::new(
                recordings.with_extension("cache"),
                1 << 30,
                2,
            )
            .expect("cache"),
        )),
        disk: ari_recorder::disk_space::DiskSpace::new(
            recordings.clone(),
            None,
            recordings.with_extension("cache"),
            0,
        ),
        access: std::sync::Arc::new(ari_recorder::http::Access::from_config(
            &ari_recorder::config::Config::default(),
            Default::default(),
        )),
    });
    (router, token)
}

async fn serve_router(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Reads a whole `Range: bytes=0-` answer, returning MiB/s.
async fn range_throughput(url: &str, client: &reqwest::Client) -> f64 {
    let t0 = Instant::now();
    let mut response = client
        .get(url)
        .header("range", "bytes=0-")
        .send()
        .await
        .expect("get");
    assert_eq!(response.status().as_u16(), 206, "{url}");
    let mut bytes = 0usize;
    while let Some(chunk) = response.chunk().await.expect("chunk") {
        bytes += chunk.len();
    }
    bytes as f64 / 1_048_576.0 / t0.elapsed().as_secs_f64()
}

/// One range stream of the same 200 MiB WAV from the library endpoint and from nginx.
async fn range_stream(dir: &Path) {
    let www = dir.join("www");
    std::fs::create_dir_all(&www).expect("dir");
    let samples = 100 * 1024 * 1024; // 200 MiB of PCM
    let mut wav =
        ari_recorder::audio::wav::header(u32::try_from(samples * 2).expect("fits")).to_vec();
    wav.extend((0..samples).flat_map(|i| ((i % 20_000) as i16).to_le_bytes()));
    let file = www.join("big.wav");
    std::fs::write(&file, &wav).expect("write");
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .expect("open")
        .set_modified(old)
        .expect("mtime");
    let db = Database::open(&format!("sqlite://{}/range.db?mode=rwc", dir.display()))
        .await
        .expect("db");
    Indexer::new(db.clone(), www.clone(), Duration::from_secs(3))
        .full_scan()
        .await
        .expect("scan");
    sqlx::query("UPDATE recordings SET consent = 'granted'")
        .execute(&db.pool)
        .await
        .expect("consent");
    let (router, token) = library_router(dir, db, www.clone()).await;
    let addr = serve_router(router).await;
    let ours_client = bearer_client(&token);
    // Warm both paths once, then measure.
    let ours_url = format!("http://{addr}/api/recordings/1/audio");
    range_throughput(&ours_url, &ours_client).await;
    let ours = range_throughput(&ours_url, &ours_client).await;
    println!("one range stream of a 200 MiB WAV (Range: bytes=0-):");
    println!("  ari-recorder /api/recordings/{{id}}/audio: {ours:>6.0} MiB/s");
    let port = process::free_port();
    let conf = dir.join("nginx.conf");
    let user = if std::env::var("USER").as_deref() == Ok("root") || is_root() {
        "user root;"
    } else {
        ""
    };
    std::fs::write(
        &conf,
        format!(
            "{user} daemon off; pid {d}/nginx.pid; error_log {d}/nginx-error.log; worker_processes 1;\n\
             events {{}}\nhttp {{ access_log off; sendfile on; server {{ listen 127.0.0.1:{port}; root {w}; }} }}\n",
            d = dir.display(),
            w = www.display()
        ),
    )
    .expect("conf");
    match Command::new("nginx")
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(dir)
        .spawn()
    {
        Ok(mut nginx) => {
            let url = format!("http://127.0.0.1:{port}/big.wav");
            for _ in 0..100 {
                if reqwest::get(&url).await.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            range_throughput(&url, &reqwest::Client::new()).await;
            let theirs = range_throughput(&url, &reqwest::Client::new()).await;
            println!("  peer: nginx (sendfile), same file:        {theirs:>6.0} MiB/s");
            process::terminate(&mut nginx);
        }
        Err(_) => println!("  peer: nginx not installed (scripts/bench.sh installs it)"),
    }
}

/// Whether this process runs as root (nginx then needs `user root;` to read the temp folder).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn main() {
    // `BENCH_ONLY=list` (or said, scan, range, transcode, opus) runs one part.
    let only = std::env::var("BENCH_ONLY").ok();
    let run = |part: &str| only.as_deref().is_none_or(|o| o == part);
    let dir = tempfile::tempdir().expect("dir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if run("opus") {
        opus(dir.path());
    }
    if run("transcode") {
        transcode(dir.path());
    }
    if run("scan") {
        runtime.block_on(scan(dir.path()));
    }
    if run("range") {
        runtime.block_on(range_stream(dir.path()));
    }
    if run("list") {
        runtime.block_on(list(dir.path()));
    }
    if run("said") {
        runtime.block_on(said(dir.path()));
    }
}
