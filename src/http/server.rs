//! The HTTP listener loop: hyper's HTTP/1 connections with the limits `axum::serve` does not
//! offer. A client that opens connections and sends nothing, or sends its headers a byte at a
//! time, is cut off after the read timeout (hyper's header timeout, which also bounds an idle
//! keep-alive connection); at most `max_connections` are open at once, and past that the
//! listener stops accepting so new clients wait in the kernel's queue instead of exhausting
//! file descriptors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

use crate::metrics::Metrics;

/// How long open connections get to finish their answers at shutdown (a long download is cut).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of file descriptors): retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What one listener allows.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub read_timeout: Duration,
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
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
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
        let _ = tcp.set_nodelay(true);
        let service = app
            .clone()
            .map_request(move |mut request: axum::http::Request<Incoming>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                request
            });
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
            drop(permit);
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
