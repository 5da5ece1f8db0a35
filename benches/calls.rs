//! Call benchmark: 500 concurrent simulated calls through a transfer node with `record_call`
//! on. Measures the delay from the bridge being complete (the simulated Asterisk has both
//! parties in the bridge) to the record request arriving back at it, through the whole path:
//! event on the websocket, reader, dispatcher, the call's task, the REST request. Also the
//! resident memory per call of the process (service and simulator together).
//!
//! `cargo bench --bench calls`

use std::time::{Duration, Instant};

use ari_recorder::ari::stream::StreamTiming;
use ari_recorder::config::Config;
use ari_recorder::service;
use ari_recorder::sim::{self, SimOptions};

const CALLS: usize = 500;

/// All calls in the same instant (worst case), or 100 calls a second until 500 are up.
#[derive(Clone, Copy, Debug)]
enum Arrival {
    Burst,
    Paced,
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn main() {
    for arrival in [Arrival::Paced, Arrival::Burst] {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(run(arrival));
    }
}

async fn run(arrival: Arrival) {
    {
        let dir = tempfile::tempdir().expect("dir");
        let recordings = dir.path().join("recording");
        let dialplans = dir.path().join("dialplans");
        std::fs::create_dir_all(&recordings).expect("dir");
        std::fs::create_dir_all(&dialplans).expect("dir");
        std::fs::write(
            dialplans.join("bench.toml"),
            "[flow]\nnumbers = [\"100\"]\nstart = \"desk\"\n[nodes.desk]\ntype = \"transfer\"\ntarget = \"PJSIP/201\"\nrecord_call = true\n",
        )
        .expect("flow");
        let sim = sim::start(SimOptions {
            recordings_dir: recordings.clone(),
            speed: 0.0,
            ..SimOptions::default()
        })
        .await
        .expect("sim");
        let url = sim.url();
        let config = Config::load(None, |key| match key {
            "ARI_URL" => Some(url.clone()),
            "ARI_PASSWORD" => Some("recorder-secret".into()),
            "RECORDINGS_DIR" => Some(recordings.display().to_string()),
            "DATABASE_URL" => Some(format!("sqlite://{}/lib.db?mode=rwc", dir.path().display())),
            "DIALPLANS_DIR" => Some(dialplans.display().to_string()),
            "CACHE_DIR" => Some(dir.path().join("cache").display().to_string()),
            "HTTP_ADDR" => Some("127.0.0.1:0".into()),
            "TRANSCRIPTION_ENGINE" => Some("off".into()),
            _ => None,
        })
        .expect("config");
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        let svc = service::start(&config, StreamTiming::default(), shutdown)
            .await
            .expect("service");
        while !sim.app_connected("recorder") {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let rss_before = rss_bytes();
        let started = Instant::now();
        for i in 0..CALLS {
            sim.place_inbound_call("100", &format!("Caller {i} <555{i:04}>"), "talk")
                .expect("call");
            if let Arrival::Paced = arrival {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let records = loop {
            let records: Vec<_> = sim
                .requests()
                .into_iter()
                .filter(|r| r.path.ends_with("/record"))
                .collect();
            if records.len() == CALLS {
                break records;
            }
            if started.elapsed() > Duration::from_secs(120) {
                panic!("only {} of {CALLS} calls recorded", records.len());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let setup = started.elapsed();
        let rss_after = rss_bytes();
        let mut delays: Vec<Duration> = records
            .iter()
            .filter_map(|r| {
                let bridge = r
                    .path
                    .trim_start_matches("/bridges/")
                    .trim_end_matches("/record")
                    .to_string();
                sim.with_world(|w| w.bridge_completed_at(&bridge))
                    .map(|complete| r.at.saturating_duration_since(complete))
            })
            .collect();
        delays.sort();
        println!("{arrival:?}: {CALLS} concurrent calls set up and recording in {setup:?} ({} calls in progress)", svc.flows.calls_in_progress());
        println!(
            "bridge complete -> record request: p50 {:?}  p99 {:?}  max {:?}  (n = {})",
            percentile(&delays, 0.5),
            percentile(&delays, 0.99),
            delays.last().copied().unwrap_or_default(),
            delays.len()
        );
        // Peer in the same run: a bare REST round trip to the same simulator, calls still up.
        let client = ari_recorder::ari::AriClient::new(&sim.url(), "recorder", "recorder-secret")
            .expect("client");
        let mut round_trips = Vec::new();
        for _ in 0..200 {
            let t0 = Instant::now();
            client.asterisk_info().await.expect("info");
            round_trips.push(t0.elapsed());
        }
        round_trips.sort();
        println!(
            "peer: GET /ari/asterisk/info round trip to the simulator: p50 {:?}  p99 {:?}",
            percentile(&round_trips, 0.5),
            percentile(&round_trips, 0.99)
        );
        println!(
            "resident memory: {:.1} MiB before, {:.1} MiB with {CALLS} calls up: {:.1} KiB per call (service + simulator)",
            rss_before as f64 / 1048576.0,
            rss_after as f64 / 1048576.0,
            (rss_after.saturating_sub(rss_before)) as f64 / 1024.0 / CALLS as f64
        );
    }
}
