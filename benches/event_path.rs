//! Event-path benchmark: how fast ARI events are parsed and dispatched, and how long the reader
//! holds an event between the socket and the consumer.
//!
//! `cargo bench --bench event_path`. Frames are the real events of `tests/fixtures/traces`.
//! Peer in the same run: untyped parsing (`serde_json::Value`) of the same frames.
//! The reader runs on one thread (a current-thread runtime), i.e. one core; the sender, standing
//! in for Asterisk, on another.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ari_recorder::ari::events::{parse_event, Parsed};
use ari_recorder::ari::stream::{run_event_stream, Notice, StreamTiming};
use ari_recorder::ari::AriClient;
use ari_recorder::metrics::Metrics;
use futures_util::SinkExt;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

fn frames() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/traces");
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("traces").flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let text = std::fs::read_to_string(entry.path()).expect("trace");
        for line in text.lines() {
            let record: serde_json::Value = serde_json::from_str(line).expect("json");
            // ApplicationReplaced makes the stream hand the app over: not part of a steady load.
            if record["kind"] == "event" && record["event"]["type"] != "ApplicationReplaced" {
                out.push(record["event"].to_string());
            }
        }
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn parse_throughput(frames: &[String], total: usize) {
    let start = Instant::now();
    let mut known = 0usize;
    for i in 0..total {
        if let Ok(Parsed::Known(_)) = parse_event(&frames[i % frames.len()]) {
            known += 1;
        }
    }
    let typed = total as f64 / start.elapsed().as_secs_f64();
    assert_eq!(known, total);
    let start = Instant::now();
    let mut objects = 0usize;
    for i in 0..total {
        if serde_json::from_str::<serde_json::Value>(&frames[i % frames.len()]).is_ok() {
            objects += 1;
        }
    }
    let untyped = total as f64 / start.elapsed().as_secs_f64();
    assert_eq!(objects, total);
    println!(
        "parse, one core, {total} frames ({} distinct real events, avg {} bytes):",
        frames.len(),
        frames.iter().map(String::len).sum::<usize>() / frames.len()
    );
    println!("  typed parse_event        {typed:>12.0} events/s");
    println!("  peer serde_json::Value   {untyped:>12.0} events/s");
}

/// A websocket server sending `total` frames, `per_tick` every `tick` (None: as fast as it can),
/// each stamped with its send time in `asterisk_id`. It runs on a thread and runtime of its own,
/// like Asterisk in its own process, so the reader under test has its core to itself.
async fn serve(
    frames: Vec<String>,
    total: usize,
    pace: Option<(usize, Duration)>,
    epoch: Instant,
) -> std::net::SocketAddr {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    std_listener.set_nonblocking(true).expect("nonblocking");
    let addr = std_listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
            let (tcp, _) = listener.accept().await.expect("accept");
            tcp.set_nodelay(true).expect("nodelay");
            let mut ws = tokio_tungstenite::accept_async(tcp)
                .await
                .expect("handshake");
            let mut sent = 0usize;
            let mut ticker = pace.map(|(_, tick)| tokio::time::interval(tick));
            while sent < total {
                let burst = pace.map(|(n, _)| n).unwrap_or(256);
                if let Some(t) = ticker.as_mut() {
                    t.tick().await;
                }
                for _ in 0..burst.min(total - sent) {
                    let stamp = epoch.elapsed().as_nanos().to_string();
                    let frame = frames[sent % frames.len()].replace("02:fc:00:00:00:01", &stamp);
                    ws.feed(Message::Text(frame.into())).await.expect("send");
                    sent += 1;
                }
                ws.flush().await.expect("flush");
            }
            // Keep the socket open until the reader is done.
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
    });
    addr
}

async fn stream_run(
    frames: Vec<String>,
    total: usize,
    pace: Option<(usize, Duration)>,
) -> (f64, Vec<Duration>) {
    let epoch = Instant::now();
    let addr = serve(frames, total, pace, epoch).await;
    let client = AriClient::new(&format!("http://{addr}"), "recorder", "x").expect("client");
    let (tx, mut rx) = mpsc::channel(ari_recorder::ari::stream::NOTICE_QUEUE);
    let (_stop, shutdown) = watch::channel(false);
    tokio::spawn(run_event_stream(
        client,
        "recorder".into(),
        StreamTiming::default(),
        Arc::new(Metrics::default()),
        tx,
        shutdown,
    ));
    let mut delays = Vec::with_capacity(total);
    let mut first: Option<Instant> = None;
    while delays.len() < total {
        match rx.recv().await {
            Some(Notice::Event(event)) => {
                let now = epoch.elapsed().as_nanos();
                first.get_or_insert_with(Instant::now);
                let sent: u128 = event
                    .asterisk_id()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(now);
                delays.push(Duration::from_nanos((now.saturating_sub(sent)) as u64));
            }
            Some(_) => {}
            None => break,
        }
    }
    let elapsed = first.map(|f| f.elapsed().as_secs_f64()).unwrap_or(1.0);
    delays.sort();
    (total as f64 / elapsed, delays)
}

fn main() {
    let frames = frames();
    parse_throughput(&frames, 400_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (rate, _) = runtime.block_on(stream_run(frames.clone(), 300_000, None));
    println!("websocket -> typed event -> consumer, one core, unpaced: {rate:.0} events/s");
    let (_, delays) = runtime.block_on(stream_run(
        frames,
        150_000,
        Some((500, Duration::from_millis(10))),
    ));
    println!(
        "reader delay at 50,000 events/s (send -> consumer): p50 {:?}  p99 {:?}  max {:?}",
        percentile(&delays, 0.50),
        percentile(&delays, 0.99),
        delays.last().copied().unwrap_or_default()
    );
}
