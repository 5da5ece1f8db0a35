//! The service's HTTP API: the operators' endpoints (`/healthz`, `/readyz`, `/metrics`) and the
//! flow designers' API (`/api/flows`, `/api/settings`, `/api/calls`). Every request is counted
//! by route and status; every error is JSON `{"error": code, "message": reason}`.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

mod admin;
pub mod auth;
pub mod body_limits;
mod calls;
mod flows;
mod holds;
mod live;
pub mod openapi;
mod params;
pub mod proxy;
mod recordings;
pub mod server;
mod transcripts;
mod voicemail;
mod webhooks;

pub use auth::Access;
pub use recordings::{Library, LibraryAudio};

use crate::db::Database;
use crate::flows::store::EditError;
use crate::flows::FlowRuntime;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AppState {
    pub db: Database,
    pub metrics: Arc<Metrics>,
    pub recordings_dir: PathBuf,
    pub flows: FlowRuntime,
    pub library: Arc<Library>,
    pub access: Arc<Access>,
    /// Free space of the folders written during calls.
    pub disk: Arc<crate::disk_space::DiskSpace>,
}

/// A JSON error answer.
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }
}

/// Every error answer of the API: a code a program can branch on, and the reason in words.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody<'a> {
    /// e.g. `bad_request`, `not_found`, `forbidden`, `missing_consent`.
    pub error: &'a str,
    /// Why, for a person: which parameter, which rule.
    pub message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: self.code,
                message: &self.message,
            }),
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        body_rejection(&rejection, rejection.status()).unwrap_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                rejection.body_text(),
            )
        })
    }
}

/// A body that could not be read for its size or its pace, as the API's error: 408 when it
/// did not arrive by its deadline, 413 when it went past its route's limit while being read
/// (a body that declares a larger length never gets that far). None for other rejections.
pub fn body_rejection(
    rejection: &(dyn std::error::Error + 'static),
    status: StatusCode,
) -> Option<ApiError> {
    if body_limits::is_too_slow(rejection) {
        return Some(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request body did not arrive within HTTP_READ_TIMEOUT_SECONDS plus its length at {} bytes a second",
                body_limits::MIN_BODY_RATE
            ),
        ));
    }
    (status == StatusCode::PAYLOAD_TOO_LARGE).then(|| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is larger than this route accepts",
        )
    })
}

/// No such recording, or one out of the caller's scope: the same answer, so a scope's edges
/// cannot be probed.
pub fn recording_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such recording")
}

/// An access that could not be audited (the database is away, locked by another writer, or
/// failing): refused, since nothing is served unaudited, with 503 and `Retry-After` rather than
/// a 500 (the client did nothing wrong and may try again in a moment). Logged here.
pub fn audit_failed(e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "an access could not be audited; refused with 503");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "audit_unavailable",
        "the access cannot be recorded in the audit log right now (the database is unavailable): try again shortly",
    )
    .retry_after(5)
}

/// The database could not be reached to say who is asking (it is away or refuses
/// connections): 503 with `Retry-After`, since the client did nothing wrong. Logged here.
pub fn database_unavailable(e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "the database is unavailable; refused with 503");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
        "the library's database is unavailable: try again shortly",
    )
    .retry_after(5)
}

/// A failure the client cannot fix: logged here, answered without detail.
pub fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "request failed");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the service could not answer",
    )
}

/// 429 with `Retry-After`.
pub fn too_many(wait: std::time::Duration) -> ApiError {
    let seconds = wait.as_secs() + 1;
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests: retry in {seconds} s"),
    )
    .retry_after(seconds)
}

pub use crate::clock::rfc3339;

impl From<EditError> for ApiError {
    fn from(e: EditError) -> ApiError {
        let (status, code) = match &e {
            EditError::NoFlow(_) | EditError::NoNode { .. } => (StatusCode::NOT_FOUND, "not_found"),
            EditError::NotRecordable { .. } | EditError::Invalid(_) => {
                (StatusCode::BAD_REQUEST, "bad_request")
            }
            EditError::Write { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "write_failed"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// The API's routes, each with its description: the router and the OpenAPI document come from
/// this one list, so no route goes undescribed.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(flows::list_flows))
        .routes(routes!(flows::patch_node))
        .routes(routes!(flows::get_settings, flows::patch_settings))
        .routes(routes!(live::list, flows::place_call))
        .routes(routes!(calls::get_call))
        .routes(routes!(calls::audio))
        .routes(routes!(calls::download))
        .routes(routes!(calls::download_url, calls::download_url_get))
        .routes(routes!(calls::peaks))
        .routes(routes!(calls::transcript))
        .routes(routes!(holds::hold_call, holds::release_call))
        .routes(routes!(live::pause))
        .routes(routes!(live::resume))
        .routes(routes!(auth::current, auth::login, auth::logout))
        .routes(routes!(admin::list_users, admin::create_user))
        .routes(routes!(admin::update_user))
        .routes(routes!(webhooks::list_endpoints, webhooks::create_endpoint))
        .routes(routes!(
            webhooks::update_endpoint,
            webhooks::delete_endpoint
        ))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(webhooks::send_test))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(webhooks::redeliver))
        .routes(routes!(admin::get_tenant, admin::patch_tenant))
        .routes(routes!(admin::list_audit))
        .routes(routes!(recordings::list))
        .routes(routes!(recordings::export_csv))
        .routes(routes!(recordings::export_zip))
        .routes(routes!(
            recordings::get_one,
            recordings::set_status,
            recordings::delete
        ))
        .routes(routes!(recordings::audio))
        .routes(routes!(recordings::download))
        .routes(routes!(
            recordings::download_url,
            recordings::download_url_get
        ))
        .routes(routes!(recordings::play_url))
        .routes(routes!(recordings::peaks))
        .routes(routes!(holds::hold_recording, holds::release_recording))
        .routes(routes!(
            transcripts::get,
            transcripts::put,
            transcripts::delete
        ))
        .routes(routes!(recordings::scan_state))
        .routes(routes!(voicemail::mailboxes))
        .routes(routes!(voicemail::mark_heard, voicemail::mark_new))
}

pub fn router(state: AppState) -> Router {
    let (api, _) = api_routes().split_for_parts();
    let routes = api
        .merge(crate::web::routes())
        .fallback(not_found)
        // Each route's own body limit and a deadline for the whole body (axum's own
        // per-extractor limit off: one place decides).
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            body_limits::limit_body,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            observe_request,
        ))
        // Outermost: every handler and the request log see the resolved client address.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            proxy::resolve_client,
        ));
    // Around everything, refusals made before a handler ran included (a 413 from the headers).
    with_security_headers(routes).with_state(state)
}

pub use body_limits::MAX_REQUEST_BODY;

/// 413 for a body larger than `limit` bytes.
fn payload_too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body is larger than {limit} bytes, the most this route accepts"),
    )
}

/// Who a request turned out to be, filled in by the authentication extractor for the log.
#[derive(Clone, Default)]
pub struct RequestPrincipal(Arc<std::sync::Mutex<Option<String>>>);

impl RequestPrincipal {
    pub fn set(&self, id: String) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(id);
    }
    fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Counts every request by route and status, and logs it: method, route (the template, so no
/// IDs, query strings or signatures), status, latency and the principal's id. Never a header,
/// a body or a secret.
async fn observe_request(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    // Routes, not raw paths: label values must stay few.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().clone();
    let principal = RequestPrincipal::default();
    request.extensions_mut().insert(principal.clone());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    state.metrics.count_http(&route, status);
    tracing::info!(
        target: "ari_recorder::http::request",
        method = %method,
        route = %route,
        status,
        ms = started.elapsed().as_secs_f64() * 1000.0,
        principal = principal.get().as_deref().unwrap_or("-"),
        "request"
    );
    response
}

/// The headers every answer carries, in one place: nothing is sniffed as another type, framed,
/// or followed by a Referer (signed audio links sit in URLs); the page's Content-Security-
/// Policy allows only this origin. An answer that says nothing of caching (JSON: caller names
/// and numbers) is never stored by a browser or a proxy.
fn with_security_headers<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    use header::HeaderValue;
    router
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(crate::web::CSP),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
}

async fn not_found() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route").into_response()
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "`{\"status\": \"ok\"}`")))]
async fn healthz() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

/// Ready to serve the library: database open and recordings folder readable.
///
/// ARI's state is reported but does not make the service unready (the library keeps serving
/// while Asterisk is away), nor do the warnings (folders not writable, no dialplans folder), the
/// calls recorded by the dialplan's fallback while the service was away, or the archive's state.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()), responses(
    (status = 200, description = "ready: `status`, `database`, `recordings_dir`, `disk_space`, `ari`, `fallback_recordings`, `archive`, `webhooks`, `transcription`, `warnings`"),
    (status = 503, description = "not ready, with the reasons in the same fields"),
))]
async fn readyz(State(state): State<AppState>) -> Response {
    // Answered within a second whatever the database does: a load balancer's check must not
    // hang on a pool whose connections all wait on a held lock.
    let database = match tokio::time::timeout(std::time::Duration::from_secs(1), state.db.ping())
        .await
    {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer within 1 s (no free connection: the database is busy or away)".into(),
    };
    let scan = &state.library.indexer.state;
    let recordings_dir = match (
        tokio::fs::read_dir(&state.recordings_dir).await,
        scan.last_walk_error(),
    ) {
        (Err(e), _) => format!("cannot read the recordings folder: {e}"),
        (Ok(_), Some(walk)) => format!("the last walk of the recordings folder failed: {walk}"),
        (Ok(_), None) => "ok".to_string(),
    };
    let ready = database == "ok" && recordings_dir == "ok";
    let archive = match &state.library.archive {
        Some(_) => Some(match crate::archive::queue::summary(&state.db).await {
            Ok(summary) => crate::archive::Archive::readiness(&summary, crate::clock::now_ms()),
            Err(e) => serde_json::json!({"status": "degraded", "error": e.to_string()}),
        }),
        None => None,
    };
    // Reads can go on while writes fail (SQLite held by another writer, PostgreSQL going
    // away): the library then lags and accesses cannot be audited, which the operator must see.
    let writes_failing_since = [
        state.metrics.db_writes_failing_since(),
        scan.failing_since(),
    ]
    .into_iter()
    .flatten()
    .min();
    let database_writes = match writes_failing_since {
        Some(since) => format!(
            "failing since {} (call metadata and new recordings wait and are retried)",
            rfc3339(since)
        ),
        None => "ok".to_string(),
    };
    let degraded = archive.as_ref().is_some_and(|a| a["status"] == "degraded")
        || writes_failing_since.is_some()
        || state.disk.any_full();
    // Not gating: a read-only volume still plays, a library-only node has no flows.
    let warnings =
        crate::preflight::folder_warnings_for(&state.recordings_dir, state.flows.store().dir());
    // Calls Asterisk answered through the dialplan fallback while the app was away.
    let (count, newest) = scan.fallback_summary();
    let fallback = serde_json::json!({
        "count": count,
        "newest_started_at": newest.map(rfc3339),
    });
    // Informative, not gating: a receiver that is down is not this node's fault.
    let webhooks = match crate::outbox::pending(&state.db).await {
        Ok((pending, oldest)) => serde_json::json!({
            "pending": pending,
            "oldest_pending_since": oldest.map(rfc3339),
        }),
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    };
    // Informative too: transcripts come after the call, whenever the engine gets to them.
    let transcription = match state.library.transcription {
        Some(engine) => Some(
            match crate::transcription::queue::summary(&state.db).await {
                Ok(summary) => summary.readiness(engine),
                Err(e) => serde_json::json!({ "engine": engine, "error": e.to_string() }),
            },
        ),
        None => None,
    };
    let body = serde_json::json!({
        "status": match (ready, degraded) {
            (false, _) => "not_ready",
            (true, true) => "degraded",
            (true, false) => "ready",
        },
        "database": database,
        "database_writes": database_writes,
        "recordings_dir": recordings_dir,
        "disk_space": state.disk.readiness(),
        "ari": if state.metrics.ari_connected() { "connected" } else { "disconnected" },
        "fallback_recordings": fallback,
        "archive": archive,
        "webhooks": webhooks,
        "transcription": transcription,
        "warnings": warnings,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Prometheus metrics (text exposition format).
///
/// Off unless `METRICS_TOKEN` is set (then `Authorization: Bearer <token>`); with `METRICS_ADDR`
/// they are served on that address instead, without credentials.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()), responses(
    (status = 200, description = "text exposition format", content_type = "text/plain"),
    (status = 401, description = "the metrics token is missing or wrong", body = ErrorBody),
    (status = 404, description = "metrics are off, or served on METRICS_ADDR", body = ErrorBody),
))]
async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    match &state.access.metrics {
        auth::MetricsAccess::Token(_) if state.access.metrics.allows(&headers) => {
            render_metrics(State(state)).await
        }
        auth::MetricsAccess::Token(_) => {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "metrics need Authorization: Bearer <METRICS_TOKEN>",
            )
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            response
        }
        auth::MetricsAccess::Elsewhere => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "metrics are served on METRICS_ADDR",
        )
        .into_response(),
        auth::MetricsAccess::Off => ApiError::new(
            StatusCode::NOT_FOUND,
            "metrics_off",
            "metrics are off: set METRICS_ADDR (a separate address) or METRICS_TOKEN",
        )
        .into_response(),
    }
}

/// The router of `METRICS_ADDR`: `/metrics` alone, unauthenticated.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .fallback(not_found)
        .with_state(state)
}

/// The audit log's growth for `/metrics`: events appended and repeats folded since start.
fn audit_metrics(db: &crate::db::Database, out: &mut String) {
    use std::sync::atomic::Ordering;
    for (name, help, value) in [
        (
            "audit_events_written_total",
            "Audit events appended since start (alert on its rate: it is the audit log's growth).",
            crate::access::audit::group_writer(db).written.load(Ordering::Relaxed),
        ),
        (
            "audit_events_folded_total",
            "Repeats of a principal's identical read or refusal counted into one event instead of each written.",
            crate::access::audit::group_writer(db).folded.load(Ordering::Relaxed),
        ),
    ] {
        crate::metrics::header(out, name, "counter", help);
        out.push_str(&format!("{name} {value}\n"));
    }
}

async fn render_metrics(State(state): State<AppState>) -> Response {
    let mut text = state.metrics.render();
    audit_metrics(&state.db, &mut text);
    state.library.indexer.state.render(&mut text);
    state.disk.render_metrics(&mut text);
    state.library.renderings.render_metrics(&mut text);
    state.library.call_audio.render_metrics(&mut text);
    if let Some(archive) = &state.library.archive {
        match crate::archive::queue::summary(&state.db).await {
            Ok(summary) => archive.render_metrics(&summary, crate::clock::now_ms(), &mut text),
            Err(e) => tracing::warn!(error = %e, "archive figures not read for /metrics"),
        }
    }
    if state.library.transcription.is_some() {
        match crate::transcription::queue::summary(&state.db).await {
            Ok(summary) => summary.render_metrics(crate::clock::now_ms(), &mut text),
            Err(e) => tracing::warn!(error = %e, "transcription figures not read for /metrics"),
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
