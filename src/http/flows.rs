//! The flow designers' API: read flows, toggle `record_call` and `record_outbound_calls`,
//! place direct outbound calls.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{ApiError, AppState};
use crate::flows::NodeKind;

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
pub(super) async fn list_flows(State(state): State<AppState>) -> Response {
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
pub(super) struct NodePatch {
    record_call: bool,
}

pub(super) async fn patch_node(
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

pub(super) async fn get_settings(State(state): State<AppState>) -> Response {
    Json(state.flows.store().settings()).into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SettingsPatch {
    record_outbound_calls: bool,
}

pub(super) async fn patch_settings(
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
pub(super) struct CallRequest {
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
pub(super) async fn place_call(
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
