//! The HTTP listener loop: hyper's HTTP/1 connections with the limits `axum::serve` does not
//! offer. A client that opens connections and sends nothing, or sends its headers a byte at a
//! time, is cut off after the read timeout (hyper's header timeout, which also bounds an idle
//! keep-alive connection); one client address holds at most `max_per_client` connections; at
//! most `max_connections` are open at once, and past that the listener stops accepting so new
//! clients wait in the kernel's queue instead of exhausting file descriptors, but for a few
//! held back for the operator's health checks ([`HEALTH_RESERVE`]). The body's size and pace
//! are bounded per request (`body_limits`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

use crate::metrics::Metrics;

/// How long open connections get to finish their answers at shutdown (a long download is cut).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of file descriptors): retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Connections accepted beyond `max_connections` so that `/healthz` and `/readyz` answer while
/// every slot is taken: on such a connection a health check is answered at once, any other
/// request waits for a slot up to [`RESERVE_WAIT`], then is answered 503 and the connection
/// closed, so requests that are not health checks cannot keep the reserve.
pub const HEALTH_RESERVE: usize = 4;
/// How long a request on a reserve connection waits for a slot.
const RESERVE_WAIT: Duration = Duration::from_secs(2);

/// What one listener allows.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_connections: usize,
    /// Connections one client address may hold at once (below `max_connections`, so one
    /// client cannot take them all); past it a new connection is closed at once.
    pub max_per_client: usize,
    pub read_timeout: Duration,
    /// Peers exempt from `max_per_client`: the reverse proxies every client comes through.
    pub proxies: Vec<IpNet>,
}

/// Connections open per client address.
#[derive(Default)]
struct PerClient(Mutex<HashMap<IpAddr, usize>>);

impl PerClient {
    /// Counts a connection of `ip` in, unless it already holds `max`.
    fn admit(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<ClientSlot> {
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(ClientSlot(Arc::clone(self), ip))
    }
}

/// One connection counted against its address; given back when dropped.
struct ClientSlot(Arc<PerClient>, IpAddr);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = (self.0).0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.1) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.1);
            }
        }
    }
}

/// 503 for a request that found every slot taken; the connection closes after it.
fn busy() -> axum::response::Response {
    (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        [
            (axum::http::header::RETRY_AFTER, "2"),
            (axum::http::header::CONNECTION, "close"),
            (axum::http::header::CONTENT_TYPE, "application/json"),
            (axum::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        r#"{"error":"busy","message":"every connection slot is taken: try again shortly"}"#,
    )
        .into_response()
}

fn is_health_check(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

/// Serves `app` on `listener` until `shutdown` turns true, then lets open connections finish
/// (up to `SHUTDOWN_GRACE`). Handlers see the peer as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    connections: Option<Arc<Metrics>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Every accepted connection holds one of these: the slots and the reserve together.
    let accepted_cap = Arc::new(Semaphore::new(
        limits.max_connections.max(1) + HEALTH_RESERVE,
    ));
    let per_client = Arc::new(PerClient::default());
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout);
    loop {
        // Room first, then the connection: with none, new clients wait in the kernel's queue
        // instead of exhausting file descriptors. The slot itself is taken only once the
        // connection is in, so the loop never holds one a waiting connection needs.
        let room = tokio::select! {
            room = accepted_cap.clone().acquire_owned() => match room {
                Ok(room) => room,
                Err(_) => break,
            },
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // A slot when one is free; otherwise the connection is on the reserve.
        let slot = permits.clone().try_acquire_owned().ok();
        tracing::debug!(%peer, reserve = slot.is_none(), "HTTP connection accepted");
        let proxy = limits.proxies.iter().any(|net| net.contains(&peer.ip()));
        let client_slot = if proxy {
            None
        } else {
            match per_client.admit(peer.ip(), limits.max_per_client.max(1)) {
                Some(slot) => Some(slot),
                None => {
                    tracing::debug!(%peer, "HTTP connection refused: its address holds its share");
                    // Closed at once: holding it open would spend the slot it was refused.
                    if let Some(metrics) = &connections {
                        metrics.count_http_connection_refused();
                    }
                    continue;
                }
            }
        };
        let _ = tcp.set_nodelay(true);
        // A connection on a reserve slot takes a main slot for its first request that is not a
        // health check, and keeps it until it closes.
        let held = Arc::new(tokio::sync::Mutex::new(slot));
        let service = {
            let app = app.clone();
            let permits = permits.clone();
            let held = held.clone();
            tower::service_fn(move |mut request: axum::http::Request<Incoming>| {
                let app = app.clone();
                let permits = permits.clone();
                let held = held.clone();
                async move {
                    request
                        .extensions_mut()
                        .insert(ConnectInfo::<SocketAddr>(peer));
                    if !is_health_check(request.uri().path()) {
                        let mut held = held.lock().await;
                        if held.is_none() {
                            match tokio::time::timeout(RESERVE_WAIT, permits.acquire_owned()).await
                            {
                                Ok(Ok(permit)) => *held = Some(permit),
                                _ => return Ok(busy()),
                            }
                        }
                    }
                    app.oneshot(request).await
                }
            })
        };
        let connection = graceful
            .watch(builder.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service)));
        let connections = connections.clone();
        if let Some(metrics) = &connections {
            metrics.add_http_connections(1);
        }
        tokio::spawn(async move {
            // Errors here are clients going away or timing out: nothing to report.
            let _ = connection.await;
            if let Some(metrics) = connections {
                metrics.add_http_connections(-1);
            }
            drop((held, room, client_slot));
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open after the shutdown grace period: closed");
    }
}
