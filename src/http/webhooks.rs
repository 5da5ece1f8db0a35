//! A tenant's webhook endpoints, by its admins: register, change, turn off, remove, rotate the
//! signing secret, send a test event, read the delivery log and deliver again. Every change is
//! written with its audit event in one transaction; a secret is shown once, when it is made.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::Caller;
use super::params::{WebhookDelivery, WebhookId};
use super::{internal, ApiError, AppState, ErrorBody};
use crate::access::audit::AuditTx;
use crate::access::{Role, Scope};
use crate::webhooks::{endpoints, signature};

const ADMIN: [Role; 1] = [Role::Admin];

/// How long a rotated secret keeps signing beside the new one unless asked otherwise.
const ROTATION_OVERLAP_HOURS: u32 = 24;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such webhook endpoint",
    )
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewEndpoint {
    /// `https://` (plain `http://` only to hosts the operator allows); never a private,
    /// loopback or metadata address unless the operator allows its network.
    url: String,
    /// Event types: `recording.ready`, `recording.failed`, `call.ended`, `transcript.ready`,
    /// `recording.deleted`, `recording.purged`, `hold.placed`, `hold.released`,
    /// `consent.changed`.
    events: Vec<String>,
    #[serde(default)]
    description: String,
    /// `transcript.ready` carries the transcript's text (only when the tenant may download).
    #[serde(default)]
    include_transcript: bool,
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EndpointPatch {
    url: Option<String>,
    events: Option<Vec<String>>,
    description: Option<String>,
    include_transcript: Option<bool>,
    /// Turning an endpoint on again clears why it was turned off.
    enabled: Option<bool>,
}

#[derive(serde::Deserialize, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Rotation {
    /// Hours the old secret keeps signing beside the new one (0 to 168; default 24).
    keep_previous_hours: Option<u32>,
}

fn check_description(text: &str) -> Result<(), ApiError> {
    if text.chars().count() > 200 || text.chars().any(char::is_control) {
        return Err(bad(
            "description: at most 200 characters, no control characters",
        ));
    }
    Ok(())
}

fn check_url(state: &AppState, url: &str) -> Result<String, ApiError> {
    if url.len() > 2000 {
        return Err(bad("url: at most 2000 characters"));
    }
    state
        .access
        .webhook_guard
        .check_url(url)
        .map(|u| u.to_string())
        .map_err(|reason| bad(format!("url: {reason}")))
}

/// The admin's tenant's endpoints (never their secrets).
#[utoipa::path(get, path = "/api/webhooks", tag = "access", responses(
    (status = 200, description = "`{\"endpoints\": [...]}`"),
    crate::http::openapi::AdminRefusals,
))]
pub(super) async fn list_endpoints(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller
        .require(&state, "webhook_list", &ADMIN, Scope::Admin)
        .await?;
    let list = endpoints::list(&state.db, &caller.principal.tenant)
        .await
        .map_err(internal)?;
    Ok(Json(serde_json::json!({ "endpoints": list })).into_response())
}

/// Register an endpoint; the answer carries its signing secret, shown this once.
#[utoipa::path(post, path = "/api/webhooks", tag = "access", request_body = NewEndpoint, responses(
    (status = 201, description = "the endpoint and its `secret` (`whsec_...`)"),
    (status = 400, description = "a bad URL, event or description", body = ErrorBody),
    crate::http::openapi::AdminRefusals,
))]
pub(super) async fn create_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<NewEndpoint>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(new) = body?;
    caller
        .require(&state, "webhook_create", &ADMIN, Scope::Admin)
        .await?;
    let url = check_url(&state, &new.url)?;
    let events = endpoints::parse_events(&new.events).map_err(|e| bad(format!("events: {e}")))?;
    check_description(&new.description)?;
    let secret = signature::new_secret();
    let mut entry = caller.entry("webhook_create");
    // The host, not the whole URL: a path may carry a receiver's token.
    entry.detail = Some(format!("to {} for {events}", host_of(&url)));
    let mut tx = AuditTx::begin(&state.db).await.map_err(internal)?;
    let id = endpoints::create(
        tx.conn(),
        &endpoints::NewEndpoint {
            tenant: &caller.principal.tenant,
            url: &url,
            description: &new.description,
            events: &events,
            include_transcript: new.include_transcript,
            secret: &secret,
            created_by: &caller.principal.actor(),
            at_ms: state.access.clock.now_ms(),
        },
    )
    .await
    .map_err(internal)?;
    let endpoint = endpoints::get(tx.conn(), &caller.principal.tenant, id)
        .await
        .map_err(internal)?;
    tx.commit(&entry).await.map_err(internal)?;
    crate::outbox::wake(&state.db);
    let mut json = serde_json::to_value(endpoint).unwrap_or_default();
    json["secret"] = serde_json::json!(secret);
    Ok((StatusCode::CREATED, Json(json)).into_response())
}

/// A delivery queued (committed): this instance's delivering task looks at once; 202.
fn queued(state: &AppState, delivery: i64) -> Response {
    crate::outbox::wake(&state.db);
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "delivery_id": delivery })),
    )
        .into_response()
}

fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(String::from))
        .unwrap_or_default()
}

/// Change an endpoint, or turn it off or on.
#[utoipa::path(patch, path = "/api/webhooks/{id}", tag = "access", params(WebhookId), request_body = EndpointPatch, responses(
    (status = 200, description = "the endpoint"),
    (status = 400, description = "a bad URL, event or description", body = ErrorBody),
    crate::http::openapi::AdminRefusals,
    (status = 404, description = "no such endpoint in the tenant", body = ErrorBody),
))]
pub(super) async fn update_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(WebhookId { id }): Path<WebhookId>,
    body: Result<Json<EndpointPatch>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(patch) = body?;
    caller
        .require(&state, "webhook_change", &ADMIN, Scope::Admin)
        .await?;
    let url = patch
        .url
        .as_deref()
        .map(|u| check_url(&state, u))
        .transpose()?;
    let events = patch
        .events
        .as_deref()
        .map(endpoints::parse_events)
        .transpose()
        .map_err(|e| bad(format!("events: {e}")))?;
    if let Some(description) = &patch.description {
        check_description(description)?;
    }
    let mut entry = caller.entry("webhook_change");
    entry.detail = Some(format!(
        "endpoint {id}: url {}, events {events:?}, enabled {:?}",
        url.as_deref().map_or("unchanged".to_string(), host_of),
        patch.enabled
    ));
    let mut tx = AuditTx::begin(&state.db).await.map_err(internal)?;
    let change = endpoints::Change {
        url: url.as_deref(),
        description: patch.description.as_deref(),
        events: events.as_deref(),
        include_transcript: patch.include_transcript,
        enabled: patch.enabled,
    };
    if !endpoints::update(tx.conn(), &caller.principal.tenant, id, &change)
        .await
        .map_err(internal)?
    {
        drop(tx);
        return Err(caller.refuse(&state, entry, not_found()).await);
    }
    let endpoint = endpoints::get(tx.conn(), &caller.principal.tenant, id)
        .await
        .map_err(internal)?;
    tx.commit(&entry).await.map_err(internal)?;
    crate::outbox::wake(&state.db);
    Ok(Json(endpoint).into_response())
}

/// Remove an endpoint; its pending deliveries are given up.
#[utoipa::path(delete, path = "/api/webhooks/{id}", tag = "access", params(WebhookId), responses(
    (status = 204, description = "removed"),
    crate::http::openapi::AdminRefusals,
    (status = 404, description = "no such endpoint in the tenant", body = ErrorBody),
))]
pub(super) async fn delete_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(WebhookId { id }): Path<WebhookId>,
) -> Result<Response, ApiError> {
    caller
        .require(&state, "webhook_delete", &ADMIN, Scope::Admin)
        .await?;
    let mut entry = caller.entry("webhook_delete");
    entry.detail = Some(format!("endpoint {id}"));
    let mut tx = AuditTx::begin(&state.db).await.map_err(internal)?;
    if !endpoints::delete(tx.conn(), &caller.principal.tenant, id)
        .await
        .map_err(internal)?
    {
        drop(tx);
        return Err(caller.refuse(&state, entry, not_found()).await);
    }
    crate::outbox::drop_endpoint(tx.conn(), id)
        .await
        .map_err(internal)?;
    tx.commit(&entry).await.map_err(internal)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A new signing secret, shown this once; the old one keeps signing beside it for a while
/// (both signatures are sent), so receivers can switch without losing an event.
#[utoipa::path(post, path = "/api/webhooks/{id}/rotate-secret", tag = "access", params(WebhookId), request_body = Rotation, responses(
    (status = 200, description = "`{secret, previous_valid_until}`"),
    (status = 400, description = "a bad overlap", body = ErrorBody),
    crate::http::openapi::AdminRefusals,
    (status = 404, description = "no such endpoint in the tenant", body = ErrorBody),
))]
pub(super) async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(WebhookId { id }): Path<WebhookId>,
    body: Option<Json<Rotation>>,
) -> Result<Response, ApiError> {
    let rotation = body.map(|Json(r)| r).unwrap_or_default();
    caller
        .require(&state, "webhook_rotate", &ADMIN, Scope::Admin)
        .await?;
    let hours = rotation
        .keep_previous_hours
        .unwrap_or(ROTATION_OVERLAP_HOURS);
    if hours > 168 {
        return Err(bad("keep_previous_hours: 0 to 168"));
    }
    let until = state.access.clock.now_ms() + i64::from(hours) * 3_600_000;
    let secret = signature::new_secret();
    let mut entry = caller.entry("webhook_rotate");
    entry.detail = Some(format!("endpoint {id}: the old secret signs for {hours} h"));
    let mut tx = AuditTx::begin(&state.db).await.map_err(internal)?;
    if !endpoints::rotate(tx.conn(), &caller.principal.tenant, id, &secret, until)
        .await
        .map_err(internal)?
    {
        drop(tx);
        return Err(caller.refuse(&state, entry, not_found()).await);
    }
    tx.commit(&entry).await.map_err(internal)?;
    Ok(Json(serde_json::json!({
        "secret": secret,
        "previous_valid_until": crate::clock::rfc3339(until),
    }))
    .into_response())
}

/// Queue a `webhook.test` event to the endpoint (whatever it subscribes to).
#[utoipa::path(post, path = "/api/webhooks/{id}/test", tag = "access", params(WebhookId), responses(
    (status = 202, description = "`{delivery_id}`: see its deliveries"),
    crate::http::openapi::AdminRefusals,
    (status = 404, description = "no such endpoint in the tenant", body = ErrorBody),
))]
pub(super) async fn send_test(
    State(state): State<AppState>,
    caller: Caller,
    Path(WebhookId { id }): Path<WebhookId>,
) -> Result<Response, ApiError> {
    caller
        .require(&state, "webhook_test", &ADMIN, Scope::Admin)
        .await?;
    let mut entry = caller.entry("webhook_test");
    entry.detail = Some(format!("endpoint {id}"));
    let mut tx = AuditTx::begin(&state.db).await.map_err(internal)?;
    let tenant = caller.principal.tenant.clone();
    if endpoints::get(tx.conn(), &tenant, id)
        .await
        .map_err(internal)?
        .is_none()
    {
        drop(tx);
        return Err(caller.refuse(&state, entry, not_found()).await);
    }
    let delivery = crate::outbox::test_event(tx.conn(), &tenant, id, state.access.clock.now_ms())
        .await
        .map_err(internal)?;
    tx.commit(&entry).await.map_err(internal)?;
    Ok(queued(&state, delivery))
}

/// The endpoint's delivery log: its latest deliveries and attempts, newest first.
#[utoipa::path(get, path = "/api/webhooks/{id}/deliveries", tag = "access", params(WebhookId), responses(
    (status = 200, description = "`{deliveries: [...], attempts: [...]}`"),
    crate::http::openapi::AdminRefusals,
    (status = 404, description = "no such endpoint in the tenant", body = ErrorBody),
))]
pub(super) async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(WebhookId { id }): Path<WebhookId>,
) -> Result<Response, ApiError> {
    caller
        .require(&state, "webhook_log", &ADMIN, Scope::Admin)
        .await?;
    let mut conn = state.db.pool.acquire().await.map_err(internal)?;
    if endpoints::get(&mut conn, &caller.principal.tenant, id)
        .await
        .map_err(internal)?
        .is_none()
    {
        return Err(not_found());
    }
    drop(conn);
    let deliveries = crate::outbox::deliveries_of(&state.db, id, 100)
        .await
        .map_err(internal)?;
    let attempts = endpoints::attempts(&state.db, id, 200)
        .await
        .map_err(internal)?;
    Ok(Json(serde_json::json!({ "deliveries": deliveries, "attempts": attempts })).into_response())
}

/// Deliver one of the endpoint's deliveries again, now.
#[utoipa::path(post, path = "/api/webhooks/{id}/deliveries/{delivery}/redeliver", tag = "access", params(WebhookDelivery), responses(
    (status = 202, description = "queued again"),
    crate::http::openapi::AdminRefusals,
    (status = 404, description = "no such endpoint or delivery in the tenant", body = ErrorBody),
))]
pub(super) async fn redeliver(
    State(state): State<AppState>,
    caller: Caller,
    Path(WebhookDelivery { id, delivery }): Path<WebhookDelivery>,
) -> Result<Response, ApiError> {
    caller
        .require(&state, "webhook_redeliver", &ADMIN, Scope::Admin)
        .await?;
    let mut entry = caller.entry("webhook_redeliver");
    entry.detail = Some(format!("endpoint {id}, delivery {delivery}"));
    let mut tx = AuditTx::begin(&state.db).await.map_err(internal)?;
    let ours = endpoints::get(tx.conn(), &caller.principal.tenant, id)
        .await
        .map_err(internal)?
        .is_some()
        && crate::outbox::redeliver(tx.conn(), id, delivery, state.access.clock.now_ms())
            .await
            .map_err(internal)?;
    if !ours {
        drop(tx);
        return Err(caller.refuse(&state, entry, not_found()).await);
    }
    tx.commit(&entry).await.map_err(internal)?;
    Ok(queued(&state, delivery))
}
