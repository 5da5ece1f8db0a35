//! The service's HTTP API: the operators' endpoints (`/healthz`, `/readyz`, `/metrics`) and the
//! flow designers' API (`/api/flows`, `/api/settings`, `/api/calls`). Every request is counted
//! by route and status; every error is JSON `{"error": code, "message": reason}`.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};

use crate::flows::store::EditError;
use crate::flows::{FlowRuntime, NodeKind};
use crate::library::Database;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AppState {
    pub db: Database,
    pub metrics: Arc<Metrics>,
    pub recordings_dir: PathBuf,
    pub flows: FlowRuntime,
}

/// A JSON error answer.
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({"error": self.code, "message": self.message})),
        )
            .into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            rejection.body_text(),
        )
    }
}

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

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/flows", get(list_flows))
        .route("/api/flows/{flow}/nodes/{node}", patch(patch_node))
        .route("/api/settings", get(get_settings).patch(patch_settings))
        .route("/api/calls", post(place_call))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // Routes, not raw paths: label values must stay few.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    state.metrics.count_http(&route, response.status().as_u16());
    response
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({"error": "not_found", "message": "no such route"})),
    )
        .into_response()
}

/// The process is up.
async fn healthz() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

/// Ready to serve the library: database open and recordings folder readable. ARI's state is
/// reported but does not make the service unready: the library keeps serving while Asterisk is
/// away.
async fn readyz(State(state): State<AppState>) -> Response {
    let database = match state.db.ping().await {
        Ok(()) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    let recordings_dir = match std::fs::read_dir(&state.recordings_dir) {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("cannot read the recordings folder: {e}"),
    };
    let ready = database == "ok" && recordings_dir == "ok";
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not_ready" },
        "database": database,
        "recordings_dir": recordings_dir,
        "ari": if state.metrics.ari_connected() { "connected" } else { "disconnected" },
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

fn node_json(id: &str, kind: &NodeKind) -> serde_json::Value {
    let mut node = serde_json::json!({"id": id, "type": kind.type_name()});
    if let Some(record) = kind.record_call() {
        node["record_call"] = serde_json::Value::Bool(record);
    }
    let edges: serde_json::Map<String, serde_json::Value> = kind
        .edges()
        .into_iter()
        .map(|(field, target)| (field.to_string(), serde_json::Value::from(target)))
        .collect();
    node["edges"] = serde_json::Value::Object(edges);
    node
}

/// Every flow in force with its nodes, `record_call` where the node type has it.
async fn list_flows(State(state): State<AppState>) -> Response {
    let set = state.flows.store().current();
    let flows: Vec<serde_json::Value> = set
        .flows
        .values()
        .map(|f| {
            serde_json::json!({
                "name": f.name,
                "tenant": f.tenant,
                "numbers": f.numbers,
                "start": f.start,
                "nodes": f.nodes.values().map(|n| node_json(&n.id, &n.kind)).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(serde_json::json!({"flows": flows, "settings": set.settings})).into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NodePatch {
    record_call: bool,
}

async fn patch_node(
    State(state): State<AppState>,
    Path((flow, node)): Path<(String, String)>,
    body: Result<Json<NodePatch>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(patch) = body?;
    let store = state.flows.store().clone();
    let (f, n) = (flow.clone(), node.clone());
    tokio::task::spawn_blocking(move || store.set_record_call(&f, &n, patch.record_call))
        .await
        .map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })??;
    let set = state.flows.store().current();
    let kind = set
        .flows
        .get(&flow)
        .and_then(|f| f.nodes.get(&node))
        .map(|n| n.kind.clone());
    match kind {
        Some(kind) => Ok(Json(node_json(&node, &kind)).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "node vanished during the edit",
        )),
    }
}

async fn get_settings(State(state): State<AppState>) -> Response {
    Json(state.flows.store().settings()).into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsPatch {
    record_outbound_calls: bool,
}

async fn patch_settings(
    State(state): State<AppState>,
    body: Result<Json<SettingsPatch>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(patch) = body?;
    let store = state.flows.store().clone();
    let settings = tokio::task::spawn_blocking(move || {
        store.set_record_outbound_calls(patch.record_outbound_calls)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    Ok(Json(settings).into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CallRequest {
    from: String,
    to: String,
}

fn valid_endpoint(endpoint: &str) -> bool {
    matches!(endpoint.split_once('/'), Some((tech, resource)) if !tech.is_empty() && !resource.is_empty())
        && endpoint.len() <= 200
        && !endpoint.chars().any(|c| c.is_control() || c == ',')
}

/// A direct outbound call: `from` rings first, then `to`; recorded when
/// `record_outbound_calls` is on.
async fn place_call(
    State(state): State<AppState>,
    body: Result<Json<CallRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    for (field, value) in [("from", &request.from), ("to", &request.to)] {
        if !valid_endpoint(value) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("{field}: {value:?} is not an endpoint like PJSIP/201"),
            ));
        }
    }
    let call_id = state.flows.place_outbound(&request.from, &request.to);
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"call_id": call_id})),
    )
        .into_response())
}
