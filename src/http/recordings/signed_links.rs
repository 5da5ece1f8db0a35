//! Signed links to a recording's bytes: made (`download-url`, `play-url`, or a presigned URL of
//! the archive's bucket), checked when used, and refusals audited where the recording's admins
//! see them.

use super::*;

pub(in crate::http) fn link_refused(error: links::LinkError) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, error.reason(), error.message())
}

/// Checks a signed link to a recording and returns the caller it stands for, auditing a
/// refusal.
pub(in crate::http) async fn link_caller(
    state: &AppState,
    request: &MediaRequest,
    action: LinkAction,
) -> Result<(Caller, Grant), ApiError> {
    let target = request.id.parse().ok().map(LinkTarget::Recording);
    link_caller_for(state, &request.query, &request.client, target, action).await
}

/// Checks a signed link to `target` (None: a recording id that is no number) and returns the
/// caller it stands for, auditing a refusal where the recording's (or call's) admins see it.
pub(in crate::http) async fn link_caller_for(
    state: &AppState,
    query: &HashMap<String, String>,
    client: &str,
    target: Option<LinkTarget>,
    action: LinkAction,
) -> Result<(Caller, Grant), ApiError> {
    let audit_action = action.audit_action();
    // Only a well-formed subject is written down; anything else is named as such.
    let subject = query
        .get("by")
        .filter(|by| links::valid_subject(by))
        .map_or("invalid", String::as_str);
    let (recording_id, detail) = match &target {
        Some(LinkTarget::Recording(id)) => (Some(*id), "signed link".to_string()),
        Some(LinkTarget::Call(call)) => (
            fetch_call(&state.db, call).await?.first().map(|r| r.id),
            audit::capped(&format!("signed link, call {call}"), 200),
        ),
        None => (None, "signed link".to_string()),
    };
    let mut entry = AuditEntry {
        client: client.to_string(),
        recording_id,
        detail: Some(detail),
        ..AuditEntry::new(format!("link:{subject}"), "", audit_action)
    };
    let now = state.access.clock.now_secs();
    let verified = match target {
        Some(target) => links::verify(&state.access.keys, target, action, query, now),
        None => Err(links::LinkError::Tampered),
    };
    let principal = match verified {
        Ok(ref grant) => {
            let mut conn = state.db.pool.acquire().await.map_err(internal)?;
            principal_for_subject(
                &mut conn,
                &grant.subject,
                grant.issued_ms,
                state.access.clock.now_ms(),
            )
            .await
            .map_err(internal)?
        }
        Err(_) => None,
    };
    match (verified, principal) {
        (Ok(grant), Some(principal)) => Ok((
            Caller {
                principal,
                client: client.to_string(),
                session: None,
            },
            grant,
        )),
        (Ok(_), None) => {
            entry.outcome = "link_revoked".into();
            audit::record(&state.db, &entry).await.map_err(internal)?;
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "link_revoked",
                "the user or token this link was made for is no longer valid",
            ))
        }
        (Err(e), _) => {
            if let Some(wait) = crate::http::auth::past_failure_share(state, &entry) {
                return Err(crate::http::too_many(wait));
            }
            entry.outcome = e.reason().into();
            entry.tenant = refusal_tenant(state, entry.recording_id).await?;
            audit::record(&state.db, &entry).await.map_err(internal)?;
            Err(link_refused(e))
        }
    }
}

/// Whose admins see a refused link: the recording's tenant, or the operators' when the link
/// names no recording there is.
pub(in crate::http) async fn refusal_tenant(
    state: &AppState,
    recording: Option<i64>,
) -> Result<String, ApiError> {
    let tenant = match recording {
        Some(id) => crate::library::recordings::tenant_of(&state.db.pool, id)
            .await
            .map_err(internal)?,
        None => None,
    };
    Ok(tenant.unwrap_or_else(|| state.access.operator_tenant.clone()))
}

/// A download link usable without credentials until it expires.
///
/// Single-use and served by this service, or (`ARCHIVE_PRESIGNED_LINKS`, once archived) a
/// presigned bucket URL reusable until it expires.
#[utoipa::path(post, path = "/api/recordings/{id}/download-url", tag = "recordings",
    params(RecordingId, LinkLifetime),
    responses(
    (status = 201, description = "`{url, expires_at, expires_in, single_use, presigned}`"),
    (status = 400, description = "a bad expires_in", body = ErrorBody),
    crate::http::openapi::RecordingRefusals,
    (status = 429, description = "too many links asked for", body = ErrorBody),
))]
pub(in crate::http) async fn download_url(
    State(state): State<AppState>,
    caller: Caller,
    Path(RecordingId { id }): Path<RecordingId>,
    Params(lifetime): Params<LinkLifetime>,
) -> Result<Response, ApiError> {
    create_link(&state, &caller, &id, lifetime, LinkAction::Download).await
}

/// A download link, as `POST` makes it (`GET` as the Gravity Rail API spells it).
#[utoipa::path(get, path = "/api/recordings/{id}/download-url", tag = "recordings",
    operation_id = "download_url_get",
    params(RecordingId, LinkLifetime),
    responses(
    (status = 201, description = "`{url, expires_at, expires_in, single_use, presigned}`"),
    (status = 400, description = "a bad expires_in", body = ErrorBody),
    crate::http::openapi::RecordingRefusals,
    (status = 429, description = "too many links asked for", body = ErrorBody),
))]
pub(in crate::http) async fn download_url_get(
    state: State<AppState>,
    caller: Caller,
    id: Path<RecordingId>,
    lifetime: Params<LinkLifetime>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    // Making a link is a state change (audited, counted against the caller's quota) however
    // it is spelt: a cookie session must send its CSRF token here as for POST.
    caller
        .require_csrf(
            &state,
            &headers,
            format!("GET /api/recordings/{}/download-url", id.0.id),
        )
        .await?;
    download_url(state, caller, id, lifetime).await
}

/// A short-lived signed audio link for a player (reusable until it expires).
#[utoipa::path(post, path = "/api/recordings/{id}/play-url", tag = "recordings", params(RecordingId, LinkLifetime), responses(
    (status = 201, description = "`{url, expires_at, expires_in, single_use}`"),
    crate::http::openapi::RecordingRefusals,
    (status = 429, description = "too many links asked for", body = ErrorBody),
))]
pub(in crate::http) async fn play_url(
    State(state): State<AppState>,
    caller: Caller,
    Path(RecordingId { id }): Path<RecordingId>,
    Params(lifetime): Params<LinkLifetime>,
) -> Result<Response, ApiError> {
    create_link(&state, &caller, &id, lifetime, LinkAction::Audio).await
}

pub(in crate::http) async fn create_link(
    state: &AppState,
    caller: &Caller,
    id: &str,
    LinkLifetime { expires_in }: LinkLifetime,
    action: LinkAction,
) -> Result<Response, ApiError> {
    let access = &state.access;
    let requested = match expires_in {
        None if action == LinkAction::Download => 3600,
        None => access.play_link_seconds,
        Some(seconds) => seconds,
    };
    let cap = match action {
        LinkAction::Download => access.link_max_seconds,
        LinkAction::Audio => access.play_link_seconds,
    };
    let lifetime = requested.min(cap);
    let principal = &caller.principal;
    if let Err(wait) = access.limiter.take(
        &format!("grant:{}", principal.link_subject()),
        Instant::now(),
    ) {
        let mut entry = caller.entry("link_create");
        entry.recording_id = id.parse().ok();
        return Err(caller
            .refuse(state, entry, crate::http::too_many(wait))
            .await);
    }
    let (row, _, mut entry) =
        authorize(state, caller, id, action.policy_action(), "link_create").await?;
    if action == LinkAction::Audio {
        crate::http::voicemail::heard_on_play(state, caller, &row).await?;
    }
    let issued_ms = state.access.clock.now_ms();
    let expires = issued_ms.div_euclid(1000) + lifetime;
    let grant = Grant {
        target: LinkTarget::Recording(row.id),
        action,
        subject: principal.link_subject(),
        issued_ms,
        expires,
        nonce: random_secret()[..32].to_string(),
    };
    if let Some(presigned) = presigned_download(state, &row, action, lifetime).await? {
        entry.detail = Some(format!("presigned bucket link for {lifetime} s"));
        audit::record(&state.db, &entry).await.map_err(internal)?;
        return Ok((
            StatusCode::CREATED,
            Json(serde_json::json!({
                "url": presigned,
                "expires_at": rfc3339(expires * 1000),
                "expires_in": lifetime,
                "single_use": false,
                "presigned": true,
            })),
        )
            .into_response());
    }
    entry.detail = Some(format!("{} link for {lifetime} s", action.as_str()));
    audit::record(&state.db, &entry).await.map_err(internal)?;
    let url = format!(
        "/api/recordings/{}/{}?{}",
        row.id,
        action.as_str(),
        links::sign(&access.keys, &grant)
    );
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "url": url,
            "expires_at": rfc3339(expires * 1000),
            "expires_in": lifetime,
            "single_use": action == LinkAction::Download,
            "presigned": false,
        })),
    )
        .into_response())
}

/// With `ARCHIVE_PRESIGNED_LINKS`, a download link straight to the bucket for a recording
/// stored there whole (not split, the file as recorded); else None and the service's own link.
async fn presigned_download(
    state: &AppState,
    row: &Recording,
    action: LinkAction,
    lifetime: i64,
) -> Result<Option<String>, ApiError> {
    let Some(archive) = state.library.archive.as_ref() else {
        return Ok(None);
    };
    if action != LinkAction::Download || !archive.settings.presigned_links {
        return Ok(None);
    }
    let stored = crate::archive::queue::stored(&state.db, row.id)
        .await
        .map_err(internal)?;
    let Some(stored) = stored.filter(|s| s.parts == 0) else {
        return Ok(None);
    };
    let lifetime = std::time::Duration::from_secs(u64::try_from(lifetime).unwrap_or(1));
    archive
        .presigned_get(&stored.object_key, lifetime)
        .await
        .map(Some)
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "archive_unavailable",
                format!("cannot sign a bucket link: {e}"),
            )
        })
}
