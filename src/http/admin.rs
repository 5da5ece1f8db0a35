//! Administration of one tenant by its admins: users and their roles, the tenant's entitlements,
//! and the audit log. Every change is written with its audit event in one transaction.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::Caller;
use super::params::{AuditQuery, Params, UserId};
use super::{internal, rfc3339, ApiError, AppState, ErrorBody};
use crate::access::accounts::{self, AccountError, NewUser};
use crate::access::audit::{self, AuditTx};
use crate::access::policy::TenantSettings;
use crate::access::{Role, Scope};

const ADMIN: [Role; 1] = [Role::Admin];

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> ApiError {
        match e {
            AccountError::Db(e) => internal(e),
            AccountError::Exists(_) => ApiError::new(StatusCode::CONFLICT, "exists", e.to_string()),
            other => bad(other.to_string()),
        }
    }
}

/// The users of the admin's tenant.
#[utoipa::path(get, path = "/api/users", tag = "access", responses(
    (status = 200, description = "`{\"users\": [...]}`"),
    crate::http::openapi::AdminRefusals,
))]
pub(super) async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller
        .require(&state, "user_list", &ADMIN, Scope::Admin)
        .await?;
    let mut conn = state.db.pool.acquire().await.map_err(internal)?;
    let users = accounts::list_users(&mut conn, &caller.principal.tenant)
        .await
        .map_err(internal)?;
    Ok(Json(serde_json::json!({ "users": users })).into_response())
}

/// Add a user to the admin's own tenant.
#[utoipa::path(post, path = "/api/users", tag = "access", request_body = NewUser, responses(
    (status = 201, description = "created: the user"),
    (status = 400, description = "a bad name, role, password or tenant", body = ErrorBody),
    crate::http::openapi::AdminRefusals,
    (status = 409, description = "the name is taken", body = ErrorBody),
))]
pub(super) async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<NewUser>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(mut user) = body?;
    caller
        .require(&state, "user_create", &ADMIN, Scope::Admin)
        .await?;
    if !user.tenant.is_empty() && user.tenant != caller.principal.tenant {
        return Err(bad("tenant: admins create users in their own tenant only"));
    }
    user.tenant = caller.principal.tenant.clone();
    accounts::check_new_user(&user)?;
    let mut entry = caller.entry("user_create");
    entry.detail = Some(format!("{} as {}", user.username, user.role));
    // Giving someone an extension opens the private recordings it was on to them: the audit
    // says how many, for the other admins to see.
    if let Some(extension) = &user.extension {
        let private =
            crate::library::search::private_recordings_on(&state.db, &user.tenant, extension)
                .await
                .map_err(internal)?;
        entry.detail = Some(format!(
            "{} as {}, extension {extension} (on {private} private recordings)",
            user.username, user.role
        ));
    }
    let mut tx = AuditTx::begin(&state.db).await.map_err(internal)?;
    let id = accounts::create_user(tx.conn(), &user).await?;
    tx.commit(&entry).await.map_err(internal)?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"id": id, "username": user.username, "role": user.role})),
    )
        .into_response())
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UserPatch {
    /// `admin`, `manager` or `staff`.
    role: Option<String>,
    projects: Option<Vec<String>>,
    disabled: Option<bool>,
}

/// Change a user's role, projects or disabled flag.
#[utoipa::path(patch, path = "/api/users/{id}", tag = "access", params(UserId), request_body = UserPatch, responses(
    (status = 200, description = "the user"),
    (status = 400, description = "a bad role or project", body = ErrorBody),
    crate::http::openapi::AdminRefusals,
    (status = 404, description = "no such user in the tenant", body = ErrorBody),
))]
pub(super) async fn update_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(UserId { id }): Path<UserId>,
    body: Result<Json<UserPatch>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(patch) = body?;
    caller
        .require(&state, "role_change", &ADMIN, Scope::Admin)
        .await?;
    let role = match patch.role.as_deref() {
        None => None,
        Some(text) => Some(Role::parse(text).ok_or_else(|| bad("role: admin, manager or staff"))?),
    };
    // An empty or malformed project name would leave the user limited to nothing, which the
    // policy reads as unrestricted.
    if patch
        .projects
        .as_ref()
        .is_some_and(|projects| projects.iter().any(|p| !accounts::valid_name(p)))
    {
        return Err(bad(
            "projects: names of 1 to 64 letters, digits, '.', '_', '-', '@' (an empty list for every project)",
        ));
    }
    if id == caller.principal.user_id
        && (role.is_some_and(|r| r != Role::Admin) || patch.disabled == Some(true))
    {
        return Err(bad(
            "an admin cannot demote or disable themselves: ask another admin",
        ));
    }
    let mut entry = caller.entry("role_change");
    entry.detail = Some(format!(
        "user {id}: role {:?}, projects {:?}, disabled {:?}",
        patch.role, patch.projects, patch.disabled
    ));
    let mut tx = AuditTx::begin(&state.db).await.map_err(internal)?;
    let updated = accounts::update_user(
        tx.conn(),
        &caller.principal.tenant,
        id,
        role,
        patch.projects.as_deref(),
        patch.disabled,
    )
    .await
    .map_err(internal)?;
    let Some(user) = updated else {
        drop(tx);
        let error = ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such user");
        return Err(caller.refuse(&state, entry, error).await);
    };
    tx.commit(&entry).await.map_err(internal)?;
    Ok(Json(user).into_response())
}

/// The caller's tenant's entitlements.
#[utoipa::path(get, path = "/api/tenant", tag = "access", responses(
    (status = 200, description = "`{tenant, staff_playback, download_entitlement}`"),
    crate::http::openapi::SignedIn,
))]
pub(super) async fn get_tenant(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let mut conn = state.db.pool.acquire().await.map_err(internal)?;
    let settings = accounts::tenant_settings(&mut conn, &caller.principal.tenant)
        .await
        .map_err(internal)?;
    let mut view = tenant_json(&caller.principal.tenant, settings);
    // Read-only here: the operator sets them (`ari-recorder tenant set --call-endpoints`).
    view["call_endpoints"] = crate::access::calls::endpoints(&mut conn, &caller.principal.tenant)
        .await
        .map_err(internal)?
        .into();
    Ok(Json(view).into_response())
}

fn tenant_json(name: &str, settings: TenantSettings) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "staff_playback": settings.staff_playback,
        "download_entitlement": settings.download_entitlement,
    })
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TenantPatch {
    staff_playback: Option<bool>,
    download_entitlement: Option<bool>,
}

/// Set the admin's tenant's `staff_playback` and `download_entitlement` (audited).
#[utoipa::path(patch, path = "/api/tenant", tag = "access", request_body = TenantPatch, responses(
    (status = 200, description = "the tenant"),
    (status = 400, description = "a bad body", body = ErrorBody),
    crate::http::openapi::AdminRefusals,
))]
pub(super) async fn patch_tenant(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<TenantPatch>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(patch) = body?;
    caller
        .require(&state, "setting_change", &ADMIN, Scope::Admin)
        .await?;
    let tenant = caller.principal.tenant.clone();
    let mut tx = AuditTx::begin(&state.db).await.map_err(internal)?;
    let current = accounts::tenant_settings(tx.conn(), &tenant)
        .await
        .map_err(internal)?;
    let settings = TenantSettings {
        staff_playback: patch.staff_playback.unwrap_or(current.staff_playback),
        download_entitlement: patch
            .download_entitlement
            .unwrap_or(current.download_entitlement),
    };
    accounts::set_tenant_settings(tx.conn(), &tenant, settings)
        .await
        .map_err(internal)?;
    let mut entry = caller.entry("setting_change");
    entry.detail = Some(format!(
        "staff_playback = {}, download_entitlement = {}",
        settings.staff_playback, settings.download_entitlement
    ));
    tx.commit(&entry).await.map_err(internal)?;
    Ok(Json(tenant_json(&tenant, settings)).into_response())
}

/// The tenant's audit events, newest first (admins).
#[utoipa::path(get, path = "/api/audit", tag = "access", params(super::params::AuditQuery), responses(
    (status = 200, description = "`{\"events\": [...], \"next_before\"}`"),
    (status = 400, description = "an unknown or bad parameter", body = ErrorBody),
    crate::http::openapi::AdminRefusals,
))]
pub(super) async fn list_audit(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Params<AuditQuery>, ApiError>,
) -> Result<Response, ApiError> {
    caller
        .require(&state, "audit_read", &ADMIN, Scope::Admin)
        .await?;
    let Params(query) = query?;
    let filter = audit::EventFilter {
        tenant: caller.principal.tenant.clone(),
        actor: query.actor,
        action: query.action,
        outcome: query.outcome,
        recording_id: query.recording,
        before: query.before,
        limit: query.limit,
    };
    let (events, next) = audit::list(&state.db, &filter).await.map_err(internal)?;
    // Reading the log is itself an access worth recording.
    let mut entry = caller.entry("audit_read");
    entry.detail = Some(format!("{} events", events.len()));
    audit::record(&state.db, &entry)
        .await
        .map_err(crate::http::audit_failed)?;
    let events: Vec<serde_json::Value> = events
        .into_iter()
        .map(|e| {
            serde_json::json!({
                "seq": e.seq,
                "at": rfc3339(e.at_ms),
                "actor": e.actor,
                "action": e.action,
                "recording_id": e.recording_id,
                "outcome": e.outcome,
                "client": e.client,
                "detail": e.detail,
                "hash": e.hash,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({
        "events": events,
        "next_before": next,
    }))
    .into_response())
}
