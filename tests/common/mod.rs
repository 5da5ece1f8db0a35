//! Shared helpers: a simulated Asterisk in a temp folder, an ARI client for it, and a raw
//! websocket listener that collects events.
#![allow(dead_code)]

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

/// A simulated Asterisk; `speed` 0 means time moves only through `advance`.
pub async fn start_sim(speed: f64) -> TestSim {
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
        for _ in 0..500 {
            if pred(&self.snapshot()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}; got {:?}", self.types());
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
