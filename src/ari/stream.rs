//! The ARI event websocket, watched and reconnected forever.
//!
//! The reader task only parses frames and pushes them into an unbounded channel: it never waits
//! on REST calls or the database, because Asterisk drops a consumer that stalls for 100 ms.
//! A socket that goes silent is detected with pings (one every `ping_interval`; no frame at all
//! for `dead_after` means dead). Reconnects back off exponentially with full jitter, capped,
//! with no retry limit. After each reconnect the consumer must resynchronise from REST, because
//! Asterisk drops events while the app is away (see `Notice::Connected::resync`).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::{self, Message};

use super::client::AriClient;
use super::events::{parse_event, Event, Parsed};
use crate::metrics::Metrics;

/// What the stream tells its consumer, in order.
#[derive(Debug)]
pub enum Notice {
    /// The socket is open. `resync` is true after the first connection: events were lost.
    Connected { resync: bool },
    /// One event from Asterisk.
    Event(Box<Event>),
    /// The socket closed or was found dead; a reconnect follows.
    Disconnected { reason: String },
    /// Another consumer took over the application (`ApplicationReplaced`).
    Replaced,
}

/// Timing of the watch and of reconnects.
#[derive(Debug, Clone, Copy)]
pub struct StreamTiming {
    pub ping_interval: Duration,
    /// No frame of any kind for this long means the socket is dead (aim: detected within 10 s).
    pub dead_after: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// A connection that lived this long resets the backoff.
    pub stable_after: Duration,
}

impl Default for StreamTiming {
    fn default() -> Self {
        StreamTiming {
            // Checked at each ping: a silent socket is found within 7 + 2 = 9 s.
            ping_interval: Duration::from_secs(2),
            dead_after: Duration::from_secs(7),
            backoff_base: Duration::from_millis(250),
            backoff_cap: Duration::from_secs(30),
            stable_after: Duration::from_secs(10),
        }
    }
}

/// Full-jitter backoff: a uniform wait in `[0, min(cap, base * 2^attempt)]`.
pub fn backoff_delay(timing: &StreamTiming, attempt: u32, unit_random: f64) -> Duration {
    let exp = timing
        .backoff_base
        .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX));
    let ceiling = exp.min(timing.backoff_cap);
    ceiling.mul_f64(unit_random.clamp(0.0, 1.0))
}

/// How long ago Asterisk stamped an event (`2026-11-30T12:00:00.123+0000`): how far the app
/// runs behind Asterisk, clock skew included.
fn lag_behind(timestamp: &str) -> Option<Duration> {
    let stamped = chrono::DateTime::parse_from_str(timestamp, "%Y-%m-%dT%H:%M:%S%.3f%z").ok()?;
    let lag = chrono::Utc::now().signed_duration_since(stamped);
    lag.to_std().ok()
}

/// Notices the consumer has not taken yet; past this the reader waits for it (and TCP pushes
/// back on Asterisk) instead of growing without bound.
pub const NOTICE_QUEUE: usize = 65_536;

/// Runs until `shutdown` turns true. Notices go to `tx`; if the receiver is gone, it stops.
pub async fn run_event_stream(
    client: AriClient,
    app: String,
    timing: StreamTiming,
    metrics: Arc<Metrics>,
    tx: mpsc::Sender<Notice>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut attempt: u32 = 0;
    let mut connected_before = false;
    let mut replaced = false;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let started = Instant::now();
        let outcome = tokio::select! {
            outcome = session(&client, &app, &timing, &metrics, &tx, connected_before) => outcome,
            _ = shutdown.changed() => return,
        };
        metrics.set_ari_connected(false);
        match outcome {
            SessionEnd::ConsumerGone => return,
            SessionEnd::Replaced => {
                connected_before = true;
                if tx.send(Notice::Replaced).await.is_err() {
                    return;
                }
                // Another consumer took the app. Wait the longest backoff before taking it back,
                // so two live instances do not fight in a tight loop.
                replaced = true;
                tracing::error!(app = %app, "another websocket took over the ARI application; taking it back after the backoff cap");
            }
            SessionEnd::Lost {
                reason,
                was_connected,
            } => {
                if was_connected {
                    connected_before = true;
                    if tx
                        .send(Notice::Disconnected {
                            reason: reason.clone(),
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                    tracing::warn!(reason = %reason, "ARI websocket lost");
                } else {
                    tracing::warn!(reason = %reason, "cannot connect ARI websocket");
                }
            }
        }
        if started.elapsed() >= timing.stable_after {
            attempt = 0;
        }
        let delay = if std::mem::take(&mut replaced) {
            timing.backoff_cap
        } else {
            backoff_delay(&timing, attempt, fastrand::f64())
        };
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
        metrics.count_reconnect();
    }
}

enum SessionEnd {
    Lost { reason: String, was_connected: bool },
    Replaced,
    ConsumerGone,
}

async fn session(
    client: &AriClient,
    app: &str,
    timing: &StreamTiming,
    metrics: &Metrics,
    tx: &mpsc::Sender<Notice>,
    connected_before: bool,
) -> SessionEnd {
    let url = client.events_url(app);
    let mut request = match url.as_str().into_client_request() {
        Ok(r) => r,
        Err(e) => {
            return SessionEnd::Lost {
                reason: format!("bad events URL: {e}"),
                was_connected: false,
            }
        }
    };
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        client.username(),
        client.password()
    ));
    if let Ok(value) = HeaderValue::from_str(&format!("Basic {credentials}")) {
        request.headers_mut().insert(header::AUTHORIZATION, value);
    }
    let socket = match tokio::time::timeout(
        Duration::from_secs(10),
        // Always our rustls settings: a wss:// URL is TLS or nothing.
        tokio_tungstenite::connect_async_tls_with_config(
            request,
            None,
            true,
            Some(tokio_tungstenite::Connector::Rustls(client.tls())),
        ),
    )
    .await
    {
        Ok(Ok((socket, _))) => socket,
        Ok(Err(tungstenite::Error::Http(response))) if response.status() == StatusCode::UNAUTHORIZED => {
            return SessionEnd::Lost {
                reason: format!(
                    "ARI refused the credentials of user {:?} (401): check ARI_USERNAME and ARI_PASSWORD",
                    client.username()
                ),
                was_connected: false,
            }
        }
        Ok(Err(e)) => {
            return SessionEnd::Lost {
                reason: e.to_string(),
                was_connected: false,
            }
        }
        Err(_) => {
            return SessionEnd::Lost {
                reason: "websocket handshake timed out".into(),
                was_connected: false,
            }
        }
    };
    metrics.set_ari_connected(true);
    tracing::info!(app = %app, resync = connected_before, "ARI websocket connected");
    if tx
        .send(Notice::Connected {
            resync: connected_before,
        })
        .await
        .is_err()
    {
        return SessionEnd::ConsumerGone;
    }

    let (mut sink, mut stream) = socket.split();
    let mut last_frame = Instant::now();
    let mut ping = tokio::time::interval(timing.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let lost = |reason: String| SessionEnd::Lost {
        reason,
        was_connected: true,
    };
    loop {
        tokio::select! {
            frame = stream.next() => {
                last_frame = Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => match parse_event(&text) {
                        Ok(Parsed::Known(event)) => {
                            metrics.count_event(event.type_name());
                            if let Some(lag) = event.timestamp().and_then(lag_behind) {
                                metrics.event_lag.observe(lag);
                            }
                            let replaced = matches!(*event, Event::ApplicationReplaced(_));
                            if tx.send(Notice::Event(event)).await.is_err() {
                                return SessionEnd::ConsumerGone;
                            }
                            if replaced {
                                return SessionEnd::Replaced;
                            }
                        }
                        Ok(Parsed::Unknown(kind)) => {
                            metrics.count_event("Unknown");
                            tracing::info!(event_type = %kind, "skipping ARI event of unknown type");
                        }
                        Err(e) => tracing::warn!(error = %e, "skipping malformed ARI frame"),
                    },
                    Some(Ok(Message::Close(_))) | None => return lost("closed by Asterisk".into()),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return lost(e.to_string()),
                }
            }
            _ = ping.tick() => {
                if last_frame.elapsed() >= timing.dead_after {
                    return lost(format!("no frame for {:?}: socket dead", timing.dead_after));
                }
                // A ping that cannot even be sent means the socket is gone.
                if let Err(e) = sink.send(Message::Ping(Vec::new().into())).await {
                    return lost(e.to_string());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_caps_and_jitters_from_zero() {
        let timing = StreamTiming::default();
        assert_eq!(backoff_delay(&timing, 0, 1.0), Duration::from_millis(250));
        assert_eq!(backoff_delay(&timing, 3, 1.0), Duration::from_secs(2));
        assert_eq!(backoff_delay(&timing, 40, 1.0), Duration::from_secs(30));
        assert_eq!(backoff_delay(&timing, 40, 0.0), Duration::ZERO);
        assert_eq!(backoff_delay(&timing, 40, 0.5), Duration::from_secs(15));
    }
}
