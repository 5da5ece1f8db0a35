//! The flow designers' API: read flows, toggle `record_call` and `record_outbound_calls`,
//! place direct outbound calls.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::Caller;
use super::{internal, ApiError, AppState};
use crate::access::audit::AuditTx;
use crate::access::policy::in_scope;
use crate::access::{Role, Scope};
use crate::flows::definition::Settings;
use crate::flows::NodeKind;

const EDITORS: [Role; 2] = [Role::Admin, Role::Manager];

/// A node as the API shows it: for nodes that record, whether they do now (`record_call`) and
/// which switch decided (`record_call_source`: the node's own `record_call`,
/// `record_inbound_calls`, or `recording_enabled` when recording is off for the deployment).
fn node_json(id: &str, kind: &NodeKind, settings: &Settings) -> serde_json::Value {
    let mut node = serde_json::json!({"id": id, "type": kind.type_name()});
    if kind.has_record_switch() {
        let (record, source) = settings.records_node(kind.record_call());
        node["record_call"] = serde_json::Value::Bool(record);
        node["record_call_source"] = source.into();
        node["channels"] = if kind.dual_channel() { "dual" } else { "mixed" }.into();
    }
    let edges: serde_json::Map<String, serde_json::Value> = kind
        .edges()
        .into_iter()
        .map(|(field, target)| (field.to_string(), serde_json::Value::from(target)))
        .collect();
    node["edges"] = serde_json::Value::Object(edges);
    node
}

/// The flows in the caller's scope and their nodes.
///
/// `record_call` where the node type has it; the deployment's settings for the operator's
/// tenant (null for other tenants).
#[utoipa::path(get, path = "/api/flows", tag = "flows", responses(
    (status = 200, description = "`{\"flows\": [{name, tenant, project, private, numbers, start, nodes}], \"settings\"}`"),
    crate::http::openapi::SignedIn,
))]
pub(super) async fn list_flows(State(state): State<AppState>, caller: Caller) -> Response {
    let set = state.flows.store().current();
    let flows: Vec<serde_json::Value> = set
        .flows
        .values()
        .filter(|f| in_scope(&caller.principal, &f.tenant, &f.project))
        .map(|f| {
            serde_json::json!({
                "name": f.name,
                "tenant": f.tenant,
                "project": f.project,
                "private": f.private,
                "numbers": f.numbers,
                "start": f.start,
                "nodes": f.nodes.values().map(|n| node_json(&n.id, &n.kind, &set.settings)).collect::<Vec<_>>(),
            })
        })
        .collect();
    // The deployment's settings are the business of the operator's editors only.
    let settings = (caller.is_operator(&state) && EDITORS.contains(&caller.principal.role))
        .then_some(&set.settings);
    Json(serde_json::json!({"flows": flows, "settings": settings})).into_response()
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NodePatch {
    record_call: bool,
}

/// Runs a file edit under an open audit transaction, so the event is written with its outcome.
async fn audited_edit<T: Send + 'static>(
    state: &AppState,
    caller: &Caller,
    action: &'static str,
    detail: String,
    edit: impl FnOnce() -> Result<T, crate::flows::store::EditError> + Send + 'static,
) -> Result<T, ApiError> {
    let tx = AuditTx::begin(&state.db).await.map_err(internal)?;
    let result = tokio::task::spawn_blocking(edit).await.map_err(internal)?;
    let mut entry = caller.entry(action);
    entry.detail = Some(detail);
    if let Err(e) = &result {
        entry.outcome = format!("failed: {e}");
    }
    tx.commit(&entry).await.map_err(internal)?;
    Ok(result?)
}

/// Turn `record_call` on or off for a transfer, queue or hunt_group node.
///
/// Written back to the flow's file with its comments; audited.
#[utoipa::path(patch, path = "/api/flows/{flow}/nodes/{node}", tag = "flows",
    params(("flow" = String, Path), ("node" = String, Path)),
    request_body = NodePatch,
    responses(
        (status = 200, description = "the node"),
        (status = 400, description = "not a node that records, or a bad body", body = super::ErrorBody),
        (status = 403, description = "not a flow editor", body = super::ErrorBody),
        (status = 404, description = "no such flow or node in the caller's scope", body = super::ErrorBody),
    ))]
pub(super) async fn patch_node(
    State(state): State<AppState>,
    caller: Caller,
    Path((flow, node)): Path<(String, String)>,
    body: Result<Json<NodePatch>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(patch) = body?;
    caller
        .require(&state, "flow_change", &EDITORS, Scope::FlowsWrite)
        .await?;
    let visible = state
        .flows
        .store()
        .current()
        .flows
        .get(&flow)
        .is_some_and(|f| in_scope(&caller.principal, &f.tenant, &f.project));
    if !visible {
        let error = ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no flow {flow:?}"),
        );
        return Err(caller
            .refuse(&state, caller.entry("flow_change"), error)
            .await);
    }
    let store = state.flows.store().clone();
    let (f, n) = (flow.clone(), node.clone());
    audited_edit(
        &state,
        &caller,
        "flow_change",
        format!("{flow}/{node} record_call = {}", patch.record_call),
        move || store.set_record_call(&f, &n, patch.record_call),
    )
    .await?;
    let set = state.flows.store().current();
    let kind = set
        .flows
        .get(&flow)
        .and_then(|f| f.nodes.get(&node))
        .map(|n| n.kind.clone());
    match kind {
        Some(kind) => Ok(Json(node_json(&node, &kind, &set.settings)).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "node vanished during the edit",
        )),
    }
}

/// Service-wide call settings (the operator's admins and managers only).
#[utoipa::path(get, path = "/api/settings", tag = "flows", responses(
    (status = 200, description = "the settings", body = crate::flows::definition::Settings),
    (status = 403, description = "not an admin or manager of the operator's tenant", body = super::ErrorBody),
))]
pub(super) async fn get_settings(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require_operator(&state, "settings_read").await?;
    // Staff of the operator's tenant review recordings; the deployment's switches are not theirs.
    if !EDITORS.contains(&caller.principal.role) {
        let refusal = super::auth::denied(crate::access::policy::Denial::RoleRestriction);
        return Err(caller
            .refuse(&state, caller.entry("settings_read"), refusal)
            .await);
    }
    Ok(Json(state.flows.store().settings()).into_response())
}

/// The switches a PATCH may change; at least one.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SettingsPatch {
    recording_enabled: Option<bool>,
    record_inbound_calls: Option<bool>,
    record_outbound_calls: Option<bool>,
    redaction_inbound_calls: Option<bool>,
    redaction_outbound_calls: Option<bool>,
}

impl SettingsPatch {
    fn switches(&self) -> Vec<(&'static str, bool)> {
        [
            ("recording_enabled", self.recording_enabled),
            ("record_inbound_calls", self.record_inbound_calls),
            ("record_outbound_calls", self.record_outbound_calls),
            ("redaction_inbound_calls", self.redaction_inbound_calls),
            ("redaction_outbound_calls", self.redaction_outbound_calls),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.map(|on| (key, on)))
        .collect()
    }
}

/// Change `recording_enabled`, `record_inbound_calls`, `record_outbound_calls`,
/// `redaction_inbound_calls` and/or `redaction_outbound_calls`.
///
/// Settings are the deployment's, not a tenant's: only editors of the operator's tenant (the
/// configured default tenant) change them. Audited; written back to settings.toml with its
/// comments.
#[utoipa::path(patch, path = "/api/settings", tag = "flows", request_body = SettingsPatch, responses(
    (status = 200, description = "the settings", body = crate::flows::definition::Settings),
    (status = 400, description = "no switch named, or an unknown field", body = super::ErrorBody),
    (status = 403, description = "not an editor of the operator's tenant", body = super::ErrorBody),
))]
pub(super) async fn patch_settings(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<SettingsPatch>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(patch) = body?;
    caller
        .require(&state, "setting_change", &EDITORS, Scope::FlowsWrite)
        .await?;
    caller.require_operator(&state, "setting_change").await?;
    let switches = patch.switches();
    if switches.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "name at least one of recording_enabled, record_inbound_calls, record_outbound_calls, redaction_inbound_calls, redaction_outbound_calls",
        ));
    }
    let detail = switches
        .iter()
        .map(|(key, on)| format!("{key} = {on}"))
        .collect::<Vec<_>>()
        .join(", ");
    let store = state.flows.store().clone();
    let settings = audited_edit(&state, &caller, "setting_change", detail, move || {
        store.set_switches(&switches)
    })
    .await?;
    Ok(Json(settings).into_response())
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CallRequest {
    /// Rung first.
    #[schema(example = "PJSIP/201")]
    from: String,
    /// Rung once `from` answers.
    #[schema(example = "PJSIP/202")]
    to: String,
}

fn valid_endpoint(endpoint: &str) -> bool {
    matches!(endpoint.split_once('/'), Some((tech, resource)) if !tech.is_empty() && !resource.is_empty())
        && endpoint.len() <= 200
        && !endpoint.chars().any(|c| c.is_control() || c == ',')
}

/// Place a direct outbound call: ring `from`, then `to`, bridge them.
///
/// Recorded when `record_outbound_calls` is on; both endpoints must be among the tenant's call
/// endpoints. Audited.
#[utoipa::path(post, path = "/api/calls", tag = "calls", request_body = CallRequest, responses(
    (status = 202, description = "placed: `{\"call_id\"}`"),
    (status = 400, description = "not an endpoint like PJSIP/201", body = super::ErrorBody),
    (status = 403, description = "not a flow editor, or an endpoint outside the tenant's", body = super::ErrorBody),
    (status = 429, description = "too many calls placed", body = super::ErrorBody),
))]
pub(super) async fn place_call(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<CallRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    caller
        .require(&state, "call_place", &EDITORS, Scope::FlowsWrite)
        .await?;
    for (field, value) in [("from", &request.from), ("to", &request.to)] {
        if !valid_endpoint(value) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("{field}: {value:?} is not an endpoint like PJSIP/201"),
            ));
        }
    }
    let principal = &caller.principal;
    let mut entry = caller.entry("call_place");
    entry.detail = Some(format!("{} -> {}", request.from, request.to));
    // A call rings real phones and may cost money: each user or token has a rate.
    if let Err(wait) = state.access.limiter.take(
        &format!("call:{}", principal.actor()),
        std::time::Instant::now(),
    ) {
        return Err(caller.refuse(&state, entry, super::too_many(wait)).await);
    }
    let mut conn = state.db.pool.acquire().await.map_err(internal)?;
    let allowed = crate::access::calls::endpoints(&mut conn, &principal.tenant)
        .await
        .map_err(internal)?;
    drop(conn);
    if let Some(outside) = [&request.from, &request.to]
        .into_iter()
        .find(|endpoint| !crate::access::calls::allows(&allowed, endpoint))
    {
        let error = ApiError::new(
            StatusCode::FORBIDDEN,
            "endpoint_not_allowed",
            format!(
                "{outside:?} is not among tenant {:?}'s call endpoints; the operator lists them with `ari-recorder tenant set {} --call-endpoints ...`",
                principal.tenant, principal.tenant
            ),
        );
        return Err(caller.refuse(&state, entry, error).await);
    }
    let project = principal
        .projects
        .first()
        .map(String::as_str)
        .unwrap_or(state.access.default_project.as_str());
    // The trace is written before the call exists.
    crate::access::audit::record(&state.db, &entry)
        .await
        .map_err(super::audit_failed)?;
    let call_id =
        state
            .flows
            .place_outbound(&request.from, &request.to, &principal.tenant, project);
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"call_id": call_id})),
    )
        .into_response())
}
