//! Who is asking: a Bearer API token or a browser session cookie (whose state-changing requests
//! must carry the session's CSRF token). Sign in and out, and the session's own view.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequestParts, OptionalFromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{ApiError, AppState};
use crate::access::accounts;
use crate::access::audit::{self, AuditEntry, AuditTx};
use crate::access::links::LinkKeys;
use crate::access::policy::Denial;
use crate::access::rate::RateLimiter;
use crate::access::{sha256_hex, Credential, Principal, Role, Scope};
use crate::config::Config;
use sha2::{Digest, Sha256};

pub const SESSION_COOKIE: &str = "ari_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Access settings and state shared by the handlers.
pub struct Access {
    pub keys: LinkKeys,
    /// What links, sessions and tokens expire by.
    pub clock: crate::clock::Clock,
    /// Signed-link requests per principal, and sign-in attempts per user name.
    pub limiter: RateLimiter,
    /// Sign-in attempts per client address: ten times looser, since a whole office may sit
    /// behind one proxy address.
    pub address_limiter: RateLimiter,
    /// Refused signed links per client address: past it they are answered 429 and no longer
    /// audited one by one (an unauthenticated client must not grow the audit log at will).
    pub failure_limiter: RateLimiter,
    /// The same over every address together (twenty addresses' worth): many addresses cannot
    /// grow the log at will either.
    pub failure_limiter_all: RateLimiter,
    /// Requests per signed-in user (`API_REQUESTS_PER_MINUTE`).
    pub request_limiter: RateLimiter,
    /// Argon2 checks run on blocking threads, this many at a time (one per core): sign-in
    /// floods queue here instead of starving every other request.
    pub password_checks: Arc<tokio::sync::Semaphore>,
    /// Peers whose forwarding headers name the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The one header believed from them.
    pub forwarded_header: crate::config::ForwardedHeader,
    pub session_ms: i64,
    /// A session unused this long has ended.
    pub session_idle_ms: i64,
    pub link_max_seconds: i64,
    pub play_link_seconds: i64,
    pub secure_cookies: bool,
    /// The deployment's own tenant: its editors change deployment-wide settings.
    pub operator_tenant: String,
    /// Project of direct outbound calls placed by users not limited to projects.
    pub default_project: String,
    /// Who may read `/metrics` on the main address.
    pub metrics: MetricsAccess,
    /// How long a client gets to send a request body.
    pub read_timeout: std::time::Duration,
    /// Where webhook endpoints may point (checked when an admin registers one).
    pub webhook_guard: crate::webhooks::Guard,
}

/// Where `/metrics` is served: it shows every tenant's call volumes and errors.
#[derive(Clone, PartialEq, Eq)]
pub enum MetricsAccess {
    /// Not served until an operator chooses how.
    Off,
    /// On its own address (`METRICS_ADDR`), not the main one.
    Elsewhere,
    /// On the main address to `Authorization: Bearer <token>`; the SHA-256 of the token.
    Token([u8; 32]),
}

impl MetricsAccess {
    fn from_config(config: &Config) -> MetricsAccess {
        if config.metrics_addr.is_some() {
            MetricsAccess::Elsewhere
        } else if config.metrics_token.is_empty() {
            MetricsAccess::Off
        } else {
            MetricsAccess::Token(Sha256::digest(config.metrics_token.as_bytes()).into())
        }
    }

    /// Whether a request with these headers may read `/metrics` here. Hashes are compared, so
    /// the comparison's timing says nothing about the token.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let MetricsAccess::Token(expected) = self else {
            return false;
        };
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| {
                <[u8; 32]>::from(Sha256::digest(given.trim().as_bytes())) == *expected
            })
    }
}

impl Access {
    pub fn from_config(config: &Config, clock: crate::clock::Clock) -> Access {
        let keys = if config.link_signing_keys.is_empty() {
            tracing::warn!(
                "no link_signing_keys configured: links are signed with a random key and stop working when the service restarts"
            );
            LinkKeys::ephemeral()
        } else {
            // Validated when the config was loaded; should that ever be bypassed, say so
            // rather than sign with a key nobody configured in silence.
            LinkKeys::parse(&config.link_signing_keys).unwrap_or_else(|reason| {
                tracing::error!(%reason, "link_signing_keys unusable: using a random key");
                LinkKeys::ephemeral()
            })
        };
        Access {
            keys,
            clock,
            limiter: RateLimiter::new(config.grants_per_minute),
            address_limiter: RateLimiter::new(config.grants_per_minute.saturating_mul(10)),
            failure_limiter: RateLimiter::new(config.grants_per_minute),
            failure_limiter_all: RateLimiter::new(config.grants_per_minute.saturating_mul(20)),
            request_limiter: RateLimiter::new(config.api_requests_per_minute),
            // Validated when the config was loaded.
            trusted_proxies: config.trusted_proxy_nets().unwrap_or_default(),
            forwarded_header: config.forwarded_header,
            password_checks: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            session_ms: i64::try_from(config.session_seconds.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            session_idle_ms: i64::try_from(config.session_idle_seconds.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            metrics: MetricsAccess::from_config(config),
            read_timeout: std::time::Duration::from_secs(config.http_read_timeout_seconds),
            webhook_guard: crate::webhooks::WebhookSettings::from_config(config).guard,
            link_max_seconds: i64::try_from(config.link_max_seconds).unwrap_or(i64::MAX),
            play_link_seconds: i64::try_from(config.play_link_seconds).unwrap_or(i64::MAX),
            secure_cookies: config.secure_cookies,
            operator_tenant: config.default_tenant.clone(),
            default_project: config.default_project.clone(),
        }
    }
}

/// An authenticated request: the principal and the client's address (for the audit log).
pub struct Caller {
    pub principal: Principal,
    pub client: String,
    /// A browser session's CSRF token and expiry.
    pub session: Option<(String, i64)>,
}

impl Caller {
    /// An audit entry for this caller.
    pub fn entry(&self, action: &'static str) -> AuditEntry {
        AuditEntry {
            client: self.client.clone(),
            // A signed-in principal's repeats fold into counted events (`audit::record`).
            foldable: true,
            ..AuditEntry::new(
                self.principal.actor(),
                self.principal.tenant.clone(),
                action,
            )
        }
    }

    /// Records a refused attempt and returns the error to answer with.
    pub async fn refuse(
        &self,
        state: &AppState,
        mut entry: AuditEntry,
        error: ApiError,
    ) -> ApiError {
        entry.outcome = error.code.to_string();
        match audit::record(&state.db, &entry).await {
            Ok(_) => error,
            Err(e) => super::audit_failed(e),
        }
    }

    /// Whether the caller belongs to the deployment's own tenant.
    pub fn is_operator(&self, state: &AppState) -> bool {
        self.principal.tenant == state.access.operator_tenant
    }

    /// Requires the deployment's own tenant (deployment-wide settings and state); records a
    /// refusal.
    pub async fn require_operator(
        &self,
        state: &AppState,
        action: &'static str,
    ) -> Result<(), ApiError> {
        if self.is_operator(state) {
            return Ok(());
        }
        let error = ApiError::new(
            StatusCode::FORBIDDEN,
            "role_restriction",
            "deployment-wide settings and state belong to the operator's tenant",
        );
        Err(self.refuse(state, self.entry(action), error).await)
    }

    /// Requires a role among `roles` and the token scope `scope`; records a refusal.
    pub async fn require(
        &self,
        state: &AppState,
        action: &'static str,
        roles: &[Role],
        scope: Scope,
    ) -> Result<(), ApiError> {
        let denial = if !self.principal.has_scope(scope) {
            Some(Denial::MissingScope)
        } else if !roles.contains(&self.principal.role) {
            Some(Denial::RoleRestriction)
        } else {
            None
        };
        match denial {
            None => Ok(()),
            Some(d) => Err(self.refuse(state, self.entry(action), denied(d)).await),
        }
    }
}

/// The error answer for a denial; out of scope reads exactly like "no such recording".
pub fn denied(denial: Denial) -> ApiError {
    match denial {
        Denial::OutOfScope => super::recording_not_found(),
        other => ApiError::new(StatusCode::FORBIDDEN, other.reason(), other.message()),
    }
}

pub fn client_address(parts: &Parts) -> String {
    if let Some(super::proxy::ClientAddress(ip)) = parts.extensions.get() {
        return ip.to_string();
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_string())
}

/// Constant-time equality of two secrets.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The principal behind the request's credentials, None when it carries none.
pub async fn authenticate(state: &AppState, parts: &Parts) -> Result<Option<Caller>, ApiError> {
    let client = client_address(parts);
    let mut conn = state
        .db
        .pool
        .acquire()
        .await
        .map_err(super::database_unavailable)?;
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("the Authorization header must be 'Bearer <token>'"))?;
        let principal =
            accounts::principal_for_token(&mut conn, token.trim(), state.access.clock.now_ms())
                .await
                .map_err(super::database_unavailable)?
                .ok_or_else(|| unauthorized("unknown, expired or revoked API token"))?;
        return Ok(Some(Caller {
            principal,
            client,
            session: None,
        }));
    }
    let Some(secret) = session_cookie(&parts.headers) else {
        return Ok(None);
    };
    let (principal, csrf, expires) = accounts::principal_for_session(
        &mut conn,
        &secret,
        state.access.session_idle_ms,
        state.access.clock.now_ms(),
    )
    .await
    .map_err(super::database_unavailable)?
    .ok_or_else(|| {
        unauthorized("the session has expired, ended or been idle too long: sign in again")
    })?;
    drop(conn);
    let caller = Caller {
        principal,
        client,
        session: Some((csrf.clone(), expires)),
    };
    // A cookie rides along on any request the browser makes, a forged cross-site form too: a
    // state-changing request must also prove it read the session's CSRF token.
    if !matches!(parts.method, Method::GET | Method::HEAD) {
        let what = format!("{} {}", parts.method, parts.uri.path());
        caller.require_csrf(state, &parts.headers, what).await?;
    }
    Ok(Some(caller))
}

impl Caller {
    /// A caller signed in with a session cookie proves it read the session's CSRF token (the
    /// `X-CSRF-Token` header); a refusal is audited with `what`. API tokens pass: no browser
    /// sends them by itself. Every method but GET and HEAD is checked so; a GET that changes
    /// state (creating a link) asks for it too.
    pub async fn require_csrf(
        &self,
        state: &AppState,
        headers: &HeaderMap,
        what: String,
    ) -> Result<(), ApiError> {
        let Some((csrf, _)) = &self.session else {
            return Ok(());
        };
        let sent = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if same_secret(sent, csrf) {
            return Ok(());
        }
        let mut entry = self.entry("request");
        entry.detail = Some(what);
        Err(self
            .refuse(
                state,
                entry,
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "csrf",
                    "missing or wrong X-CSRF-Token header: read it from GET /api/session",
                ),
            )
            .await)
    }
}

/// Takes one of the caller's requests this minute (`API_REQUESTS_PER_MINUTE`); past them the
/// request is answered 429 and counted, not audited.
fn within_request_rate(state: &AppState, caller: &Caller) -> Result<(), ApiError> {
    let key = format!("u{}", caller.principal.user_id);
    state
        .access
        .request_limiter
        .take(&key, Instant::now())
        .map_err(|wait| {
            state.metrics.count_request_rate_limited();
            super::too_many(wait)
        })
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, Response> {
        match authenticate(state, parts).await {
            Ok(Some(caller)) => {
                within_request_rate(state, &caller).map_err(IntoResponse::into_response)?;
                Ok(note_principal(parts, caller))
            }
            Ok(None) => Err(with_challenge(unauthorized(
                "sign in, or send an API token as 'Authorization: Bearer <token>'",
            ))),
            Err(e) if e.status == StatusCode::UNAUTHORIZED => Err(with_challenge(e)),
            Err(e) => Err(e.into_response()),
        }
    }
}

/// For endpoints that also take signed links: no (valid) credentials is not an error yet.
impl OptionalFromRequestParts<AppState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Caller>, Response> {
        match authenticate(state, parts).await {
            Ok(Some(caller)) => {
                within_request_rate(state, &caller).map_err(IntoResponse::into_response)?;
                Ok(Some(note_principal(parts, caller)))
            }
            Ok(None) => Ok(None),
            Err(e) if e.status == StatusCode::UNAUTHORIZED => Ok(None),
            Err(e) => Err(e.into_response()),
        }
    }
}

/// Tells the request log who this is (`u<user id>`).
fn note_principal(parts: &Parts, caller: Caller) -> Caller {
    if let Some(slot) = parts.extensions.get::<super::RequestPrincipal>() {
        slot.set(format!("u{}", caller.principal.user_id));
    }
    caller
}

fn with_challenge(error: ApiError) -> Response {
    let mut response = error.into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"ari-recorder\""),
    );
    response
}

/// What the page needs to know of the signed-in user.
fn session_view(
    access: &Access,
    principal: &Principal,
    csrf: Option<&str>,
    expires_at_ms: Option<i64>,
) -> serde_json::Value {
    let role = principal.role;
    let edit_flows =
        matches!(role, Role::Admin | Role::Manager) && principal.has_scope(Scope::FlowsWrite);
    serde_json::json!({
        "user": {
            "id": principal.user_id,
            "username": principal.username,
            "role": role.as_str(),
            "tenant": principal.tenant,
            "projects": principal.projects,
            "extension": principal.extension,
        },
        "csrf_token": csrf,
        "expires_at": expires_at_ms.map(super::rfc3339),
        "can": {
            "edit_flows": edit_flows,
            "deployment_settings": edit_flows && principal.tenant == access.operator_tenant,
            "administer": role == Role::Admin && principal.has_scope(Scope::Admin),
        },
    })
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Login {
    username: String,
    #[schema(format = Password)]
    password: String,
    /// The user's tenant (organisation): user names are unique within a tenant, so a name that
    /// several tenants use needs it when their passwords are the same.
    #[serde(default)]
    tenant: Option<String>,
}

fn cookie(access: &Access, value: &str, max_age_seconds: i64) -> HeaderValue {
    let secure = if access.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_seconds}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("ari_session=; Max-Age=0"))
}

/// Sign in with a password.
///
/// Sets the HttpOnly SameSite=Strict session cookie and answers the session's CSRF token.
/// Repeated failures from one address or for one name are slowed down (429).
#[utoipa::path(post, path = "/api/session", tag = "access", security(()), request_body = Login, responses(
    (status = 200, description = "signed in: the session"),
    (status = 400, description = "a bad body, or a name or password too long", body = super::ErrorBody),
    (status = 401, description = "wrong name or password", body = super::ErrorBody),
    (status = 429, description = "too many failures: wait (Retry-After)", body = super::ErrorBody),
))]
pub(super) async fn login(
    State(state): State<AppState>,
    ConnectInfoOrUnknown(client): ConnectInfoOrUnknown,
    body: Result<Json<Login>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(login) = body?;
    if login.username.len() > 64 || login.password.len() > 1024 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "username or password too long",
        ));
    }
    let mut conn = state.db.pool.acquire().await.map_err(super::internal)?;
    let candidate =
        accounts::sign_in_candidate(&mut conn, &login.username, login.tenant.as_deref())
            .await
            .map_err(super::internal)?;
    drop(conn);
    // A name that matches no user may be a password typed into the wrong field: only a short
    // hash of it is kept (enough to see the same name tried again). Attempts on a user belong
    // to their tenant; the others (and those on a name of several tenants) to the operators.
    let actor = if candidate.exists() {
        format!("user:{}", login.username)
    } else {
        format!("user:unknown#{}", &sha256_hex(&login.username)[..12])
    };
    let tenant = candidate
        .tenant()
        .map_or_else(|| state.access.operator_tenant.clone(), str::to_string);
    let mut entry = AuditEntry {
        client: client.clone(),
        ..AuditEntry::new(actor, tenant, "login")
    };
    // Guessing is slowed per address on every attempt, and per name and address on failures
    // only: nobody else's failures lock a user out.
    let now = Instant::now();
    let access = &state.access;
    let name_key = format!("login:{}@{client}", login.username);
    let limited = access
        .address_limiter
        .take(&format!("login@{client}"), now)
        .and_then(|()| access.limiter.peek(&name_key, now));
    if let Err(wait) = limited {
        entry.outcome = "rate_limited".into();
        audit_failure(&state, &entry).await?;
        return Err(super::too_many(wait));
    }
    let permit = Arc::clone(&access.password_checks)
        .acquire_owned()
        .await
        .map_err(super::internal)?;
    let password = login.password.clone();
    let user = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        candidate.verify(&password)
    })
    .await
    .map_err(super::internal)?;
    let mut conn = state.db.pool.acquire().await.map_err(super::internal)?;
    let principal = match user {
        accounts::SignIn::User(id) => {
            accounts::principal_for_user(&mut conn, id, Credential::Session)
                .await
                .map_err(super::internal)?
        }
        accounts::SignIn::NameTheTenant => {
            drop(conn);
            entry.outcome = "tenant_needed".into();
            audit_failure(&state, &entry).await?;
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "tenant_needed",
                "this user name is in several organisations: sign in with your tenant as well",
            ));
        }
        accounts::SignIn::Refused => None,
    };
    drop(conn);
    let Some(principal) = principal else {
        let _ = access.limiter.take(&name_key, now);
        entry.outcome = "bad_credentials".into();
        audit_failure(&state, &entry).await?;
        return Err(unauthorized("wrong user name or password"));
    };
    entry.tenant = principal.tenant.clone();
    let mut tx = AuditTx::begin(&state.db).await.map_err(super::internal)?;
    let session = accounts::create_session(
        tx.conn(),
        principal.user_id,
        state.access.session_ms,
        state.access.clock.now_ms(),
    )
    .await
    .map_err(super::internal)?;
    tx.commit(&entry).await.map_err(super::internal)?;
    let mut response = Json(session_view(
        &state.access,
        &principal,
        Some(&session.csrf_token),
        Some(session.expires_at_ms),
    ))
    .into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        cookie(
            &state.access,
            &session.secret,
            state.access.session_ms / 1000,
        ),
    );
    Ok(response)
}

/// Audits a refused unauthenticated attempt, unless its address already had its share this
/// minute: then it is only counted (`audit_events_suppressed_total`), so nobody grows the audit
/// log at will.
pub(super) async fn audit_failure(state: &AppState, entry: &AuditEntry) -> Result<(), ApiError> {
    if past_failure_share(state, entry).is_some() {
        return Ok(());
    }
    audit::record(&state.db, entry)
        .await
        .map(|_| ())
        .map_err(super::audit_failed)
}

/// How long until `entry`'s client may have another refusal audited, when it already had its
/// share this minute (then counted in `audit_events_suppressed_total`).
pub(super) fn past_failure_share(
    state: &AppState,
    entry: &AuditEntry,
) -> Option<std::time::Duration> {
    let key = format!("{}@{}", entry.action, entry.client);
    let now = Instant::now();
    let access = &state.access;
    let wait = access
        .failure_limiter
        .take(&key, now)
        .and_then(|()| access.failure_limiter_all.take(entry.action, now))
        .err()?;
    state.metrics.count_audit_suppressed();
    Some(wait)
}

/// The signed-in user, the session's CSRF token and what they may do.
#[utoipa::path(get, path = "/api/session", tag = "access", responses(
    (status = 200, description = "the session"),
    crate::http::openapi::SignedIn,
))]
pub(super) async fn current(State(state): State<AppState>, caller: Caller) -> Response {
    let (csrf, expires) = match &caller.session {
        Some((csrf, expires)) => (Some(csrf.as_str()), Some(*expires)),
        None => (None, None),
    };
    Json(session_view(
        &state.access,
        &caller.principal,
        csrf,
        expires,
    ))
    .into_response()
}

/// Sign out: the session ends at once.
#[utoipa::path(delete, path = "/api/session", tag = "access", responses(
    (status = 204, description = "signed out"),
    crate::http::openapi::SignedIn,
    (status = 403, description = "no or a wrong CSRF token", body = super::ErrorBody),
))]
pub(super) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
) -> Result<Response, ApiError> {
    let mut tx = AuditTx::begin(&state.db).await.map_err(super::internal)?;
    if let Some(secret) = session_cookie(&headers) {
        accounts::end_session(tx.conn(), &secret)
            .await
            .map_err(super::internal)?;
    }
    tx.commit(&caller.entry("logout"))
        .await
        .map_err(super::internal)?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie(&state.access, "", 0));
    Ok(response)
}

/// The client's address, or "unknown" when the server runs without connect info.
pub struct ConnectInfoOrUnknown(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ConnectInfoOrUnknown {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ConnectInfoOrUnknown(client_address(parts)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("ascii");
        headers.insert(header::AUTHORIZATION, value);
        headers
    }

    #[test]
    fn metrics_are_off_until_an_operator_says_where() {
        let token = "metrics-token-0123456789abcdef0123";
        let mut config = Config::default();
        let off = MetricsAccess::from_config(&config);
        assert!(off == MetricsAccess::Off);
        assert!(!off.allows(&with_bearer(token)));

        config.metrics_token = token.into();
        let by_token = MetricsAccess::from_config(&config);
        assert!(by_token.allows(&with_bearer(token)));
        assert!(!by_token.allows(&with_bearer("metrics-token-0123456789abcdef0124")));
        assert!(!by_token.allows(&HeaderMap::new()));

        // A separate address wins: the main one serves no metrics, token or not.
        config.metrics_addr = Some(SocketAddr::from(([127, 0, 0, 1], 9090)));
        let elsewhere = MetricsAccess::from_config(&config);
        assert!(elsewhere == MetricsAccess::Elsewhere);
        assert!(!elsewhere.allows(&with_bearer(token)));
    }
}
