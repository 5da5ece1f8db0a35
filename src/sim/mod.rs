//! The simulated Asterisk: the project's only stand-in, used by the tests and by `demo`.
//!
//! It serves ARI REST and the event websocket on loopback and behaves like the real Asterisk 22
//! of the reference traces (`tests/fixtures/traces/`): same status codes and messages, same
//! event and body shapes, recordings written as Asterisk writes them. Parties on the far end of
//! channels follow scripts ([`party::Step`]); tests inject faults through [`SimHandle`].
//!
//! Time is simulated in 20 ms frames. `speed` 1.0 is real time; tests run faster, or at 0.0 and
//! call [`SimHandle::advance`] themselves.

pub mod http;
pub mod party;
pub mod world;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

pub use party::{Script, Step};
pub use world::World;

use crate::ari::models::Channel;
use crate::audio::{FRAME_SAMPLES, SAMPLE_RATE};

#[derive(Debug, Clone)]
pub struct SimOptions {
    pub listen: SocketAddr,
    pub username: String,
    pub password: String,
    /// The app inbound calls are sent to (`Stasis(<app>,inbound,<exten>)`).
    pub app: String,
    pub recordings_dir: PathBuf,
    /// Simulated seconds per real second; 0 means time moves only through `advance`.
    pub speed: f64,
    /// Serve ARI over TLS (`https://`, `wss://`) with this server configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            username: "recorder".into(),
            password: "recorder-secret".into(),
            app: "recorder".into(),
            recordings_dir: PathBuf::from("./recordings"),
            speed: 1.0,
            tls: None,
        }
    }
}

/// A running simulated Asterisk. Dropping it stops it.
pub struct SimHandle {
    pub addr: SocketAddr,
    /// Served over TLS.
    tls: bool,
    state: http::SimState,
    shutdown: watch::Sender<bool>,
}

impl SimHandle {
    /// `http://127.0.0.1:<port>` (`https://` over TLS): what `ARI_URL` should be.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Runs `f` on the world under its lock.
    pub fn with_world<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        let mut world = self.state.world.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut world)
    }

    /// Scripts the party behind an endpoint or Local extension.
    pub fn define_party(&self, endpoint: &str, script: Script) {
        self.with_world(|w| w.define_party(endpoint, script));
    }

    /// A call from the network to `exten`, the caller following the script registered under
    /// `behaviour` (or the built-in `talk`, `talkhash`, `silent`).
    pub fn place_inbound_call(
        &self,
        exten: &str,
        caller_id: &str,
        behaviour: &str,
    ) -> Result<Channel, String> {
        let app = self.state.dialplan_app.clone();
        self.with_world(|w| {
            w.originate(
                &format!("Local/{exten}@inbound"),
                None,
                None,
                Some("caller-sim"),
                Some(behaviour),
                Some(caller_id),
                Some(30),
                None,
                &app,
            )
        })
        .map_err(|e| format!("{} {}", e.status, e.message))
    }

    /// Moves simulated time forward (for tests running at speed 0).
    pub fn advance(&self, seconds: f64) {
        let frames = (seconds * f64::from(SAMPLE_RATE) / FRAME_SAMPLES as f64).round() as u64;
        self.with_world(|w| w.advance(frames));
    }

    /// Closes every event websocket; events raised until the app reconnects are lost.
    pub fn drop_websockets(&self) {
        self.with_world(|w| w.drop_connections());
    }

    /// Websockets stop reading and writing (no pong either) for `duration`.
    pub fn stall_websockets(&self, duration: Duration) {
        *self
            .state
            .stalled_until
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + duration);
    }

    /// Asterisk restarts: all channels and bridges gone.
    pub fn restart(&self) {
        self.with_world(|w| w.restart());
    }

    /// Calls arriving while the app has no websocket follow the shipped dialplan's fallback:
    /// answered elsewhere and recorded by MixMonitor for `seconds` (None: hung up).
    pub fn set_dialplan_fallback(&self, seconds: Option<f64>) {
        self.with_world(|w| w.set_dialplan_fallback(seconds));
    }

    /// ari.conf's `channelvars` (e.g. `CHANNEL(linkedid)`): reported in every channel snapshot.
    pub fn set_channelvars(&self, names: &[&str]) {
        self.with_world(|w| w.set_channelvars(names));
    }

    /// The next record request answers 201 and then fails with `cause`.
    pub fn fail_next_record(&self, cause: &str) {
        self.with_world(|w| w.fail_next_record(cause));
    }

    /// Adds to a bridge are done and answered after `delay`, as a loaded Asterisk answers them.
    pub fn delay_adds(&self, delay: Option<Duration>) {
        *self
            .state
            .add_delay
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = delay;
    }

    /// Requests whose path ends with `suffix` are received (and listed in [`Self::requests`])
    /// but neither carried out nor answered until it is changed; None releases them.
    pub fn hold_requests(&self, suffix: Option<&str>) {
        self.state
            .held_requests
            .send_replace(suffix.map(str::to_string));
    }

    /// Every ARI request received so far.
    pub fn requests(&self) -> Vec<http::SimRequest> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn app_connected(&self, app: &str) -> bool {
        self.with_world(|w| w.app_connected(app))
    }

    pub fn stop(&self) {
        let _ = self.shutdown.send(true);
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Binds and starts the simulated Asterisk (HTTP server and clock).
pub async fn start(options: SimOptions) -> std::io::Result<SimHandle> {
    let listener = TcpListener::bind(options.listen).await?;
    let addr = listener.local_addr()?;
    let state = http::SimState {
        world: Arc::new(Mutex::new(World::new(options.recordings_dir.clone()))),
        username: options.username.clone(),
        password: options.password.clone(),
        dialplan_app: options.app.clone(),
        stalled_until: Arc::new(Mutex::new(None)),
        requests: Arc::new(Mutex::new(Vec::new())),
        add_delay: Arc::new(Mutex::new(None)),
        held_requests: Arc::new(watch::channel(None).0),
    };
    let (shutdown, mut shutdown_rx) = watch::channel(false);
    let app = http::router(state.clone());
    let mut server_shutdown = shutdown_rx.clone();
    let tls = options.tls.is_some();
    match options.tls {
        Some(config) => {
            let listener = crate::tls::TlsListener::new(listener, config);
            tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = server_shutdown.wait_for(|stop| *stop).await;
                    })
                    .await;
            });
        }
        None => {
            tokio::spawn(async move {
                // Small websocket frames must not wait on Nagle and delayed ACKs (40 ms stalls).
                let listener = axum::serve::ListenerExt::tap_io(
                    listener,
                    |tcp: &mut tokio::net::TcpStream| {
                        let _ = tcp.set_nodelay(true);
                    },
                );
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = server_shutdown.wait_for(|stop| *stop).await;
                    })
                    .await;
            });
        }
    }
    if options.speed > 0.0 {
        let world = state.world.clone();
        let speed = options.speed;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let start = Instant::now();
            let mut frames_done: u64 = 0;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown_rx.changed() => return,
                }
                let due = (start.elapsed().as_secs_f64() * speed * f64::from(SAMPLE_RATE)
                    / FRAME_SAMPLES as f64) as u64;
                if due > frames_done {
                    let mut w = world.lock().unwrap_or_else(|p| p.into_inner());
                    w.advance(due - frames_done);
                    frames_done = due;
                }
            }
        });
    }
    Ok(SimHandle {
        addr,
        tls,
        state,
        shutdown,
    })
}
