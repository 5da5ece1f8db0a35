//! Issue 14's benchmark: the archive and encryption at rest, against a real S3-compatible server
//! (s3s-fs, as in the tests) on loopback.
//!
//! - Upload throughput: one worker round over a one-hour call (57.6 MB, multipart) and twenty
//!   one-minute calls, each read back and hashed before it counts; beside boto3's
//!   `upload_file` + `download_file` of the same files (the same work: send, then read back).
//! - Range latency: 256 KiB ranges at random offsets of the hour, from disk and from the bucket
//!   (p50 / p99), and through age from a sealed file.
//! - Sealing throughput: the hour sealed in place, beside the `age` command-line tool.
//!
//! Run: `cargo bench --bench archive` (scripts/bench.sh installs boto3 and age; S3S_FS_BIN or
//! target/tools/bin/s3s-fs, which scripts/test.sh builds).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "support/process.rs"]
mod process;

use ari_recorder::archive::{Archive, ArchiveSettings, ObjectBytes, StoredAudio};
use ari_recorder::audio::wav;
use ari_recorder::db::Database;
use ari_recorder::encryption::Keyring;
use ari_recorder::library::Indexer;

const KEY: &str = "bench-key";
const SECRET: &str = "bench-secret-0123456789abcdef";
const RANGE: usize = 256 * 1024;
const RANGES: usize = 200;

fn wav_of(seconds: u64, seed: u64) -> Vec<u8> {
    let samples = seconds * 8000;
    let mut bytes = wav::header((samples * 2) as u32).to_vec();
    let mut rng = fastrand::Rng::with_seed(seed);
    bytes.reserve(samples as usize * 2);
    for n in 0..samples {
        let tone = ((n as f64 * 0.07).sin() * 6000.0) as i32 + rng.i32(-2000..2000);
        bytes.extend_from_slice(&(tone as i16).to_le_bytes());
    }
    bytes
}

fn write_old(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write");
    ari_recorder::library::index::set_mtime(
        path,
        std::time::SystemTime::now() - Duration::from_secs(3600),
    )
    .expect("mtime");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Latencies (ms) of RANGES reads of RANGE bytes at random offsets of `source`.
fn range_latencies(runtime: &tokio::runtime::Runtime, source: StoredAudio, len: u64) -> Vec<f64> {
    let source = Arc::new(source);
    let mut rng = fastrand::Rng::with_seed(7);
    let offsets: Vec<u64> = (0..RANGES)
        .map(|_| rng.u64(0..len - RANGE as u64))
        .collect();
    let mut out = runtime.block_on(async move {
        let mut out = Vec::new();
        for offset in offsets {
            let source = source.clone();
            let started = Instant::now();
            tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; RANGE];
                source.read_exact_at(offset, &mut buf).expect("range");
            })
            .await
            .expect("read");
            out.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        out
    });
    out.sort_by(f64::total_cmp);
    out
}

fn main() {
    let bin = std::env::var_os("S3S_FS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/bin/s3s-fs"));
    if !bin.is_file() {
        eprintln!(
            "s3s-fs not found (S3S_FS_BIN or target/tools/bin/s3s-fs): run scripts/test.sh once"
        );
        std::process::exit(1);
    }
    let dir = tempfile::tempdir().expect("dir");
    let recordings = dir.path().join("recordings");
    let s3_root = dir.path().join("s3");
    std::fs::create_dir_all(&recordings).expect("recordings");
    std::fs::create_dir_all(s3_root.join("bench")).expect("bucket");
    let port = process::free_port();
    let mut server = Command::new(&bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", KEY, "--secret-key", SECRET])
        .arg(&s3_root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("s3s-fs");
    let endpoint = format!("http://127.0.0.1:{port}");
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let hour = wav_of(3600, 1);
    write_old(&recordings.join("hour.wav"), &hour);
    let aside = dir.path().join("hour-copy.wav");
    std::fs::write(&aside, &hour).expect("copy");
    let mut total = hour.len() as u64;
    for i in 0..20 {
        let minute = wav_of(60, 10 + i);
        total += minute.len() as u64;
        write_old(&recordings.join(format!("minute-{i}.wav")), &minute);
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let settings: std::collections::HashMap<&str, String> = [
        ("ARCHIVE_BUCKET", "bench".to_string()),
        ("ARCHIVE_ENDPOINT", endpoint.clone()),
        ("ARCHIVE_ACCESS_KEY_ID", KEY.to_string()),
        ("ARCHIVE_SECRET_ACCESS_KEY", SECRET.to_string()),
        ("ARCHIVE_LOCAL_RETENTION_DAYS", "0".to_string()),
        ("ARI_PASSWORD", "x".to_string()),
    ]
    .into_iter()
    .collect();
    let config =
        ari_recorder::config::Config::load(None, |k| settings.get(k).cloned()).expect("config");
    let archive = Archive::connect(
        ArchiveSettings::from_config(&config)
            .expect("settings")
            .expect("archive"),
        None,
    )
    .expect("client");
    let db_url = format!("sqlite://{}/bench.db?mode=rwc", dir.path().display());
    let (upload_seconds, round) = runtime.block_on(async {
        let db = Database::open(&db_url).await.expect("db");
        Indexer::new(db.clone(), recordings.clone(), Duration::from_secs(1))
            .with_node("bench")
            .full_scan()
            .await
            .expect("scan");
        let worker = ari_recorder::archive::worker::Worker::new(
            db.clone(),
            archive.clone(),
            recordings.clone(),
            "bench",
        );
        let started = Instant::now();
        let round = worker.round().await.expect("round");
        (started.elapsed().as_secs_f64(), round)
    });
    assert_eq!(round.stored, 21, "{round:?}");
    assert_eq!(round.local_copies_removed, 21, "{round:?}");
    let mb = total as f64 / 1e6;
    println!(
        "archive upload + read-back + SHA-256 of {} files, {mb:.1} MB: {upload_seconds:.2} s ({:.0} MB/s)",
        round.stored,
        mb / upload_seconds
    );

    // The peer: boto3 sends the same files and reads each back.
    let peer_files: Vec<String> = std::iter::once(aside.display().to_string())
        .chain((0..20).map(|i| {
            let path = dir.path().join(format!("minute-{i}.wav"));
            std::fs::write(&path, wav_of(60, 10 + i)).expect("minute copy");
            path.display().to_string()
        }))
        .collect();
    let script = format!(
        "import boto3, sys, time, hashlib\n\
         s3 = boto3.client('s3', endpoint_url='{endpoint}', aws_access_key_id='{KEY}', aws_secret_access_key='{SECRET}', region_name='us-east-1')\n\
         files = sys.argv[1:]\n\
         t = time.perf_counter()\n\
         for i, f in enumerate(files):\n\
         \x20   s3.upload_file(f, 'bench', 'peer/%d' % i)\n\
         \x20   s3.download_file('bench', 'peer/%d' % i, f + '.back')\n\
         \x20   hashlib.sha256(open(f + '.back', 'rb').read()).hexdigest()\n\
         print(time.perf_counter() - t)\n"
    );
    let peer = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .args(&peer_files)
        .output();
    match peer {
        Ok(out) if out.status.success() => {
            let seconds: f64 = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .unwrap_or(f64::NAN);
            println!(
                "peer boto3 upload_file + download_file + SHA-256, same files: {seconds:.2} s ({:.0} MB/s)",
                mb / seconds
            );
        }
        Ok(out) => println!(
            "peer boto3 failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ),
        Err(e) => println!("peer boto3 not run: {e}"),
    }

    // Range latency: disk vs bucket, the same 256 KiB ranges.
    let len = hour.len() as u64;
    let disk = range_latencies(&runtime, StoredAudio::File(aside.clone()), len);
    let object = ObjectBytes {
        archive: archive.clone(),
        key: "default/bench/hour.wav".into(),
        len,
        parts: 0,
        part_bytes: 0,
    };
    let bucket = range_latencies(&runtime, StoredAudio::Object(object), len);
    println!(
        "256 KiB range, {RANGES} random offsets of the hour: disk p50 {:.2} ms p99 {:.2} ms; bucket p50 {:.2} ms p99 {:.2} ms",
        percentile(&disk, 0.5),
        percentile(&disk, 0.99),
        percentile(&bucket, 0.5),
        percentile(&bucket, 0.99)
    );

    // The peer of the bucket's figure: boto3's ranged GETs of the same object, same offsets
    // (what the server itself costs per request).
    let mut rng = fastrand::Rng::with_seed(7);
    let offsets: Vec<String> = (0..RANGES)
        .map(|_| rng.u64(0..len - RANGE as u64).to_string())
        .collect();
    let script = format!(
        "import boto3, sys, time\n\
         s3 = boto3.client('s3', endpoint_url='{endpoint}', aws_access_key_id='{KEY}', aws_secret_access_key='{SECRET}', region_name='us-east-1')\n\
         out = []\n\
         for o in map(int, sys.argv[1:]):\n\
         \x20   t = time.perf_counter()\n\
         \x20   s3.get_object(Bucket='bench', Key='default/bench/hour.wav', Range='bytes=%d-%d' % (o, o + {RANGE} - 1))['Body'].read()\n\
         \x20   out.append((time.perf_counter() - t) * 1000)\n\
         out.sort()\n\
         print('%.2f %.2f' % (out[len(out) // 2], out[int(len(out) * 0.99)]))\n"
    );
    match Command::new("python3")
        .arg("-c")
        .arg(&script)
        .args(&offsets)
        .output()
    {
        Ok(out) if out.status.success() => println!(
            "peer boto3 get_object with Range, same ranges: p50 / p99 {} ms",
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .replace(' ', " / ")
        ),
        Ok(out) => println!(
            "peer boto3 ranges failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ),
        Err(e) => println!("peer boto3 ranges not run: {e}"),
    }

    // Sealing: in place, beside the age tool; then ranges through age.
    let (secret, public) = Keyring::generate();
    let keys = Arc::new(Keyring::parse(&[secret]).expect("key"));
    let sealed = dir.path().join("hour-sealed.wav");
    std::fs::write(&sealed, &hour).expect("copy");
    let started = Instant::now();
    keys.seal_file(&sealed).expect("seal");
    let seal_seconds = started.elapsed().as_secs_f64();
    println!(
        "seal the hour ({:.1} MB) in place, fsync included: {seal_seconds:.3} s ({:.0} MB/s)",
        len as f64 / 1e6,
        len as f64 / 1e6 / seal_seconds
    );
    let age_out = dir.path().join("hour.age");
    let started = Instant::now();
    match Command::new("age")
        .args(["-r", &public, "-o"])
        .arg(&age_out)
        .arg(&aside)
        .status()
    {
        Ok(status) if status.success() => {
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "peer age -r (Go, no fsync): {seconds:.3} s ({:.0} MB/s)",
                len as f64 / 1e6 / seconds
            );
        }
        other => println!("peer age not run: {other:?}"),
    }
    let through_age = range_latencies(
        &runtime,
        StoredAudio::File(sealed).sealed_if(true, Some(&keys)),
        len,
    );
    println!(
        "256 KiB range through age from disk: p50 {:.2} ms p99 {:.2} ms",
        percentile(&through_age, 0.5),
        percentile(&through_age, 0.99)
    );
    let _ = server.kill();
    let _ = server.wait();
}
