//! What a request body may cost the service: each route accepts bodies up to its own size (a
//! sign-in is a few hundred bytes, a transcript up to [`MAX_REQUEST_BODY`]), refused before a
//! byte of it is read when the declared length is larger; and the whole body must arrive by a
//! deadline set when its headers came: the read timeout plus its length at
//! [`MIN_BODY_RATE`]. A timeout that restarts at every byte bounds nothing: one byte every 20 s
//! held a connection for as long as a client liked.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use http_body_util::Limited;
use tokio::time::{Instant, Sleep};

use super::AppState;

/// The largest request body accepted anywhere: a transcript of a long call is the largest
/// there is.
pub const MAX_REQUEST_BODY: usize = 2 << 20;
/// A sign-in: a user name and a password.
const SIGN_IN_BODY: usize = 16 << 10;
/// Every other route takes a small JSON document.
const DEFAULT_BODY: usize = 64 << 10;
/// The slowest a body may arrive once the read timeout's grace is spent, in bytes a second:
/// a 2 MiB transcript gets a minute on top of the grace, a sign-in a fraction of a second.
pub const MIN_BODY_RATE: u64 = 32 << 10;

/// The largest body `method` on `route` (the matched template) accepts.
pub fn route_limit(method: &Method, route: Option<&str>) -> usize {
    match (method, route) {
        (&Method::PUT, Some("/api/recordings/{id}/transcript")) => MAX_REQUEST_BODY,
        (&Method::POST, Some("/api/session")) => SIGN_IN_BODY,
        _ => DEFAULT_BODY,
    }
}

/// When a body of at most `bytes` that starts arriving now must be complete.
pub fn body_deadline(read_timeout: Duration, bytes: usize) -> Instant {
    let transfer = Duration::from_secs_f64(bytes as f64 / MIN_BODY_RATE as f64);
    Instant::now() + read_timeout + transfer
}

/// Middleware: the route's size limit and the whole-body deadline.
pub async fn limit_body(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let limit = route_limit(request.method(), route.as_deref());
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        // Refused from the headers alone: not a byte of the body is read.
        return super::payload_too_large(limit).into_response();
    }
    let expected = declared.map_or(limit, |n| usize::try_from(n).unwrap_or(limit));
    let deadline = body_deadline(state.access.read_timeout, expected);
    let request = request.map(|body| Body::new(Deadline::new(Limited::new(body, limit), deadline)));
    next.run(request).await
}

/// A body that did not arrive whole by its deadline.
#[derive(Debug)]
pub struct BodyTooSlow;

impl std::fmt::Display for BodyTooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyTooSlow {}

/// A body that fails with [`BodyTooSlow`] once its deadline passes.
pub struct Deadline<B> {
    inner: B,
    sleep: Pin<Box<Sleep>>,
}

impl<B> Deadline<B> {
    pub fn new(inner: B, deadline: Instant) -> Deadline<B> {
        Deadline {
            inner,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }
}

impl<B> http_body::Body for Deadline<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTooSlow)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `error` (a body extractor's rejection) comes from a body that arrived too slowly.
pub fn is_too_slow(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<BodyTooSlow>() {
            return true;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_has_its_size() {
        assert_eq!(
            route_limit(&Method::PUT, Some("/api/recordings/{id}/transcript")),
            MAX_REQUEST_BODY
        );
        assert_eq!(
            route_limit(&Method::POST, Some("/api/session")),
            SIGN_IN_BODY
        );
        assert_eq!(route_limit(&Method::POST, Some("/api/users")), DEFAULT_BODY);
        assert_eq!(route_limit(&Method::POST, None), DEFAULT_BODY);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_body_fails_at_its_deadline_whatever_it_sends() {
        use http_body_util::BodyExt;
        // One byte every 300 ms: a timeout restarted at each byte (1 s) would never fire.
        let trickle = futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Some((Ok::<_, std::io::Error>(Bytes::from_static(b"x")), ()))
        });
        let mut body = Deadline::new(
            Body::from_stream(trickle),
            body_deadline(Duration::from_secs(1), 100),
        );
        let mut received = 0;
        let error = loop {
            match body.frame().await {
                Some(Ok(frame)) => received += frame.into_data().map_or(0, |d| d.len()),
                Some(Err(e)) => break e,
                None => panic!("the body ended"),
            }
        };
        assert!(is_too_slow(error.as_ref()), "{error}");
        // Paused time: cut at 1 s of grace plus 100 bytes at the minimum rate, after 3 bytes.
        assert_eq!(received, 3);
    }
}
