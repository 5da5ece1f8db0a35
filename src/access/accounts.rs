//! Users, API tokens, browser sessions and tenants' settings, as stored in the database.
//!
//! Passwords are argon2id hashes; tokens and session cookies are 256-bit random secrets stored
//! as SHA-256, so neither a log nor a stolen database holds anything that signs in.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier};
use argon2::{password_hash::SaltString, Argon2};
use sqlx::AnyConnection;

use super::policy::TenantSettings;
use super::{random_secret, sha256_hex, Credential, Principal, Role, Scope};
use crate::clock::now_ms;
use crate::db::DbError;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("user {0:?} already exists")]
    Exists(String),
    #[error("no user {0:?}")]
    NoUser(String),
    /// The name is a user's in several tenants: say which.
    #[error("user name {0:?} is taken in several tenants ({1}): name the tenant")]
    Ambiguous(String, String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for AccountError {
    fn from(e: sqlx::Error) -> AccountError {
        AccountError::Db(DbError::Query(e))
    }
}

/// What `user add` and `POST /api/users` take.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    #[schema(format = Password, min_length = 10)]
    pub password: String,
    /// `admin`, `manager` or `staff`.
    #[schema(example = "staff")]
    pub role: String,
    /// The admin's own tenant (the only one they may add to).
    #[serde(default)]
    pub tenant: String,
    /// The projects they see (none: all of the tenant's).
    #[serde(default)]
    pub projects: Vec<String>,
    /// Their phone: they see the private calls it was on.
    #[serde(default)]
    #[schema(example = "PJSIP/201")]
    pub extension: Option<String>,
}

/// A tenant, project or user name: 1 to 64 letters, digits, `.`, `_`, `-`, `@`.
pub fn valid_name(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

pub fn hash_password(password: &str) -> Result<String, AccountError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccountError::Invalid {
            field: "password",
            reason: e.to_string(),
        })
}

fn password_matches(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// Checks and normalises a new user; returns the role.
pub fn check_new_user(user: &NewUser) -> Result<Role, AccountError> {
    let invalid = |field, reason: &str| AccountError::Invalid {
        field,
        reason: reason.into(),
    };
    if !valid_name(&user.username) {
        return Err(invalid(
            "username",
            "1 to 64 letters, digits, '.', '_', '-' or '@'",
        ));
    }
    if user.password.chars().count() < 10 {
        return Err(invalid("password", "at least 10 characters"));
    }
    let role = Role::parse(&user.role).ok_or_else(|| invalid("role", "admin, manager or staff"))?;
    if !valid_name(&user.tenant) {
        return Err(invalid("tenant", "1 to 64 letters, digits, '.', '_', '-'"));
    }
    if user.projects.iter().any(|p| !valid_name(p)) {
        return Err(invalid(
            "projects",
            "names of 1 to 64 letters, digits, '.', '_', '-'",
        ));
    }
    if user
        .extension
        .as_deref()
        .is_some_and(|e| e.is_empty() || e.len() > 80 || e.contains(','))
    {
        return Err(invalid("extension", "1 to 80 characters without ','"));
    }
    Ok(role)
}

pub async fn create_user(conn: &mut AnyConnection, user: &NewUser) -> Result<i64, AccountError> {
    let role = check_new_user(user)?;
    // Unique within the tenant only: another tenant's users are none of its admins' business.
    let exists: Option<(i64,)> =
        sqlx::query_as("SELECT id FROM users WHERE tenant = $1 AND username = $2")
            .bind(&user.tenant)
            .bind(&user.username)
            .fetch_optional(&mut *conn)
            .await?;
    if exists.is_some() {
        return Err(AccountError::Exists(user.username.clone()));
    }
    // An extension names one person in a tenant: it is how private recordings know their
    // participants.
    if let Some(extension) = &user.extension {
        let holder: Option<(String,)> =
            sqlx::query_as("SELECT username FROM users WHERE tenant = $1 AND extension = $2")
                .bind(&user.tenant)
                .bind(extension)
                .fetch_optional(&mut *conn)
                .await?;
        if let Some((holder,)) = holder {
            return Err(AccountError::Invalid {
                field: "extension",
                reason: format!(
                    "{extension} is already {holder}'s in tenant {}",
                    user.tenant
                ),
            });
        }
    }
    let hash = hash_password(&user.password)?;
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO users (username, password_hash, role, tenant, projects, extension, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(&user.username)
    .bind(hash)
    .bind(role.as_str())
    .bind(&user.tenant)
    .bind(user.projects.join(","))
    .bind(&user.extension)
    .bind(now_ms())
    .fetch_one(&mut *conn)
    .await?;
    Ok(id)
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: i64,
    username: String,
    role: String,
    tenant: String,
    projects: String,
    extension: Option<String>,
    disabled: i64,
    links_valid_after_ms: i64,
    staff_playback: i64,
    download_entitlement: i64,
}

impl UserRow {
    fn principal(self, credential: Credential) -> Option<Principal> {
        if self.disabled != 0 {
            return None;
        }
        Some(Principal {
            user_id: self.id,
            username: self.username,
            role: Role::parse(&self.role)?,
            tenant: self.tenant,
            projects: self
                .projects
                .split(',')
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect(),
            extension: self.extension,
            credential,
            settings: TenantSettings {
                staff_playback: self.staff_playback != 0,
                download_entitlement: self.download_entitlement != 0,
            },
        })
    }
}

/// A user with their tenant's settings: one query answers who is asking and what their tenant
/// allows. Selected from users `u` followed by `TENANT_OF_USER`.
const USER_COLUMNS: &str = "u.id, u.username, u.role, u.tenant, u.projects, u.extension, u.disabled, u.links_valid_after_ms, \
     COALESCE(tn.staff_playback, 0) AS staff_playback, COALESCE(tn.download_entitlement, 0) AS download_entitlement";
const TENANT_OF_USER: &str = "LEFT JOIN tenants tn ON tn.name = u.tenant";

async fn user_by_id(conn: &mut AnyConnection, id: i64) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM users u {TENANT_OF_USER} WHERE u.id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// The user's id when the password is right. A wrong user name costs the same hashing work as
/// a wrong password, so timing does not tell which names exist.
/// The stored side of a sign-in attempt, read before the (slow, blocking) password check: every
/// user of that name (one per tenant at most), or of that name in the tenant the sign-in names.
pub struct SignInCandidate {
    users: Vec<CandidateUser>,
}

struct CandidateUser {
    id: i64,
    tenant: String,
    enabled: bool,
    hash: String,
}

/// What a password check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignIn {
    /// The one user whose password it is.
    User(i64),
    /// No user of that name has that password (or they are disabled).
    Refused,
    /// Users of that name in several tenants share the password: the sign-in must name its
    /// tenant.
    NameTheTenant,
}

impl SignInCandidate {
    /// The tenant attempts on this name are audited under: the user's when the name is one
    /// user's, none when it is nobody's or several tenants'.
    pub fn tenant(&self) -> Option<&str> {
        match &self.users[..] {
            [one] => Some(&one.tenant),
            _ => None,
        }
    }

    /// Whether the name is a user's at all.
    pub fn exists(&self) -> bool {
        !self.users.is_empty()
    }

    /// Checks `password` with Argon2: about 20 ms of one core per user of that name, so
    /// callers run it off the async workers. A name that matches no user costs the same time as
    /// one that does.
    pub fn verify(&self, password: &str) -> SignIn {
        static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        if self.users.is_empty() {
            let dummy = DUMMY.get_or_init(|| hash_password("not a password").unwrap_or_default());
            let _ = password_matches(password, dummy);
            return SignIn::Refused;
        }
        let matching: Vec<i64> = self
            .users
            .iter()
            .filter(|u| password_matches(password, &u.hash) && u.enabled)
            .map(|u| u.id)
            .collect();
        match matching[..] {
            [id] => SignIn::User(id),
            [] => SignIn::Refused,
            _ => SignIn::NameTheTenant,
        }
    }
}

/// Reads what a sign-in as `username` (in `tenant`, when the sign-in names one) is checked
/// against.
pub async fn sign_in_candidate(
    conn: &mut AnyConnection,
    username: &str,
    tenant: Option<&str>,
) -> Result<SignInCandidate, sqlx::Error> {
    let rows: Vec<(i64, String, i64, String)> = sqlx::query_as(
        "SELECT id, tenant, disabled, password_hash FROM users \
         WHERE username = $1 AND ($2 = '' OR tenant = $2) ORDER BY id",
    )
    .bind(username)
    .bind(tenant.unwrap_or(""))
    .fetch_all(conn)
    .await?;
    Ok(SignInCandidate {
        users: rows
            .into_iter()
            .map(|(id, tenant, disabled, hash)| CandidateUser {
                id,
                tenant,
                enabled: disabled == 0,
                hash,
            })
            .collect(),
    })
}

/// The one user named `username` (in `tenant` when given): its id and tenant.
pub async fn find_user(
    conn: &mut AnyConnection,
    username: &str,
    tenant: Option<&str>,
) -> Result<(i64, String), AccountError> {
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT id, tenant FROM users WHERE username = $1 AND ($2 = '' OR tenant = $2) ORDER BY tenant",
    )
    .bind(username)
    .bind(tenant.unwrap_or(""))
    .fetch_all(&mut *conn)
    .await?;
    match &rows[..] {
        [one] => Ok(one.clone()),
        [] => Err(AccountError::NoUser(username.to_string())),
        several => Err(AccountError::Ambiguous(
            username.to_string(),
            several
                .iter()
                .map(|(_, t)| t.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

/// The principal a user id stands for (None when missing or disabled).
pub async fn principal_for_user(
    conn: &mut AnyConnection,
    user_id: i64,
    credential: Credential,
) -> Result<Option<Principal>, sqlx::Error> {
    Ok(user_by_id(conn, user_id)
        .await?
        .and_then(|u| u.principal(credential)))
}

/// The tenant of the one user named `username` (in `tenant` when given), when there is one.
pub async fn tenant_of_user(
    conn: &mut AnyConnection,
    username: &str,
    tenant: Option<&str>,
) -> Result<Option<String>, AccountError> {
    match find_user(conn, username, tenant).await {
        Ok((_, tenant)) => Ok(Some(tenant)),
        Err(AccountError::NoUser(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Revokes API token `id` (revoking it again changes nothing); returns its user's tenant, or
/// `None` when there is no such token.
pub async fn revoke_token(
    conn: &mut AnyConnection,
    id: i64,
) -> Result<Option<String>, sqlx::Error> {
    let owner: Option<(String,)> = sqlx::query_as(
        "SELECT users.tenant FROM api_tokens JOIN users ON users.id = api_tokens.user_id WHERE api_tokens.id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((tenant,)) = owner else {
        return Ok(None);
    };
    sqlx::query("UPDATE api_tokens SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL")
        .bind(now_ms())
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(Some(tenant))
}

/// Creates an API token for a user; returns its id and the secret, shown once.
pub async fn create_token(
    conn: &mut AnyConnection,
    username: &str,
    name: &str,
    scopes: &[Scope],
    expires_at_ms: Option<i64>,
) -> Result<(i64, String), AccountError> {
    create_token_in(conn, username, None, name, scopes, expires_at_ms).await
}

/// The same for the user of that name in `tenant` (needed when the name is in several).
pub async fn create_token_in(
    conn: &mut AnyConnection,
    username: &str,
    tenant: Option<&str>,
    name: &str,
    scopes: &[Scope],
    expires_at_ms: Option<i64>,
) -> Result<(i64, String), AccountError> {
    let (user_id, _) = find_user(conn, username, tenant).await?;
    if scopes.is_empty() {
        return Err(AccountError::Invalid {
            field: "scopes",
            reason: "name at least one scope".into(),
        });
    }
    let secret = format!("arr_{}", random_secret());
    let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO api_tokens (user_id, name, token_hash, scopes, created_at_ms, expires_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(user_id)
    .bind(name)
    .bind(sha256_hex(&secret))
    .bind(scopes.join(" "))
    .bind(now_ms())
    .bind(expires_at_ms)
    .fetch_one(&mut *conn)
    .await?;
    Ok((id, secret))
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    token_id: i64,
    scopes: String,
    expires_at_ms: Option<i64>,
    revoked_at_ms: Option<i64>,
    #[sqlx(flatten)]
    user: UserRow,
}

impl TokenRow {
    /// The token's principal at `now_ms`, unless it is revoked or expired (or its user disabled).
    fn principal(self, now_ms: i64) -> Option<Principal> {
        let live = self.revoked_at_ms.is_none() && self.expires_at_ms.is_none_or(|e| e > now_ms);
        let credential = Credential::Token {
            id: self.token_id,
            scopes: self.scopes.split(' ').filter_map(Scope::parse).collect(),
        };
        live.then(|| self.user.principal(credential)).flatten()
    }
}

fn token_query(condition: &str) -> String {
    format!(
        "SELECT t.id AS token_id, t.scopes, t.expires_at_ms, t.revoked_at_ms, {USER_COLUMNS} \
         FROM api_tokens t JOIN users u ON u.id = t.user_id {TENANT_OF_USER} WHERE {condition}"
    )
}

/// The principal of a live Bearer token.
pub async fn principal_for_token(
    conn: &mut AnyConnection,
    secret: &str,
    now_ms: i64,
) -> Result<Option<Principal>, sqlx::Error> {
    let row: Option<TokenRow> = sqlx::query_as(&token_query("t.token_hash = $1"))
        .bind(sha256_hex(secret))
        .fetch_optional(conn)
        .await?;
    Ok(row.and_then(|row| row.principal(now_ms)))
}

/// The principal a signed link was issued to (`u<user id>` or `t<token id>`) at `issued_ms`
/// (unix milliseconds), if still valid at `now_ms`: a user's links made before they were last
/// disabled are not.
pub async fn principal_for_subject(
    conn: &mut AnyConnection,
    subject: &str,
    issued_ms: i64,
    now_ms: i64,
) -> Result<Option<Principal>, sqlx::Error> {
    if let Some(user) = subject.strip_prefix('u').and_then(|s| s.parse().ok()) {
        return Ok(user_by_id(conn, user)
            .await?
            .filter(|u| issued_ms > u.links_valid_after_ms)
            .and_then(|u| u.principal(Credential::Session)));
    }
    let Some(token) = subject
        .strip_prefix('t')
        .and_then(|s| s.parse::<i64>().ok())
    else {
        return Ok(None);
    };
    let row: Option<TokenRow> = sqlx::query_as(&token_query("t.id = $1"))
        .bind(token)
        .fetch_optional(conn)
        .await?;
    Ok(row.and_then(|row| row.principal(now_ms)))
}

/// A new browser session: the cookie secret and its CSRF token.
pub struct NewSession {
    pub secret: String,
    pub csrf_token: String,
    pub expires_at_ms: i64,
}

pub async fn create_session(
    conn: &mut AnyConnection,
    user_id: i64,
    lifetime_ms: i64,
    now: i64,
) -> Result<NewSession, sqlx::Error> {
    // Expired sessions are dropped as new ones are made.
    sqlx::query("DELETE FROM sessions WHERE expires_at_ms <= $1")
        .bind(now)
        .execute(&mut *conn)
        .await?;
    let session = NewSession {
        secret: random_secret(),
        csrf_token: random_secret(),
        expires_at_ms: now + lifetime_ms,
    };
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at_ms, expires_at_ms, last_seen_at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(sha256_hex(&session.secret))
    .bind(user_id)
    .bind(&session.csrf_token)
    .bind(now)
    .bind(session.expires_at_ms)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(session)
}

/// A session's last use is written at most this often: one write a minute per active user,
/// not one per request.
const SESSION_TOUCH_MS: i64 = 60_000;

/// The principal, CSRF token and expiry of a live session cookie at `now`: neither past its
/// absolute expiry nor unused for `idle_ms`. Using it keeps it alive.
pub async fn principal_for_session(
    conn: &mut AnyConnection,
    secret: &str,
    idle_ms: i64,
    now: i64,
) -> Result<Option<(Principal, String, i64)>, sqlx::Error> {
    let token_hash = sha256_hex(secret);
    let row: Option<SessionRow> = sqlx::query_as(&format!(
        "SELECT s.csrf_token, s.expires_at_ms AS session_expires_at_ms, s.last_seen_at_ms, {USER_COLUMNS} \
         FROM sessions s JOIN users u ON u.id = s.user_id {TENANT_OF_USER} WHERE s.token_hash = $1"
    ))
    .bind(&token_hash)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row.filter(|r| {
        r.session_expires_at_ms > now && now.saturating_sub(r.last_seen_at_ms) < idle_ms
    }) else {
        return Ok(None);
    };
    if now - row.last_seen_at_ms >= SESSION_TOUCH_MS {
        sqlx::query("UPDATE sessions SET last_seen_at_ms = $1 WHERE token_hash = $2")
            .bind(now)
            .bind(&token_hash)
            .execute(&mut *conn)
            .await?;
    }
    let (csrf, expires) = (row.csrf_token, row.session_expires_at_ms);
    Ok(row
        .user
        .principal(Credential::Session)
        .map(|p| (p, csrf, expires)))
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    csrf_token: String,
    session_expires_at_ms: i64,
    last_seen_at_ms: i64,
    #[sqlx(flatten)]
    user: UserRow,
}

pub async fn end_session(conn: &mut AnyConnection, secret: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(sha256_hex(secret))
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn tenant_settings(
    conn: &mut AnyConnection,
    tenant: &str,
) -> Result<TenantSettings, sqlx::Error> {
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT staff_playback, download_entitlement FROM tenants WHERE name = $1")
            .bind(tenant)
            .fetch_optional(conn)
            .await?;
    Ok(row
        .map(|(staff, download)| TenantSettings {
            staff_playback: staff != 0,
            download_entitlement: download != 0,
        })
        .unwrap_or_default())
}

pub async fn set_tenant_settings(
    conn: &mut AnyConnection,
    tenant: &str,
    settings: TenantSettings,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO tenants (name, staff_playback, download_entitlement) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET staff_playback = excluded.staff_playback, \
         download_entitlement = excluded.download_entitlement",
    )
    .bind(tenant)
    .bind(i64::from(settings.staff_playback))
    .bind(i64::from(settings.download_entitlement))
    .execute(conn)
    .await
    .map(|_| ())
}

/// A user as the admin API shows it (never the hash).
#[derive(Debug, serde::Serialize, sqlx::FromRow)]
pub struct UserView {
    pub id: i64,
    pub username: String,
    pub role: String,
    pub tenant: String,
    pub projects: String,
    pub extension: Option<String>,
    pub disabled: i64,
}

pub async fn list_users(
    conn: &mut AnyConnection,
    tenant: &str,
) -> Result<Vec<UserView>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, username, role, tenant, projects, extension, disabled FROM users WHERE tenant = $1 ORDER BY username",
    )
    .bind(tenant)
    .fetch_all(conn)
    .await
}

/// Changes a user's role, projects or disabled flag; None when the user is not in `tenant`.
pub async fn update_user(
    conn: &mut AnyConnection,
    tenant: &str,
    id: i64,
    role: Option<Role>,
    projects: Option<&[String]>,
    disabled: Option<bool>,
) -> Result<Option<UserView>, sqlx::Error> {
    let current: Option<UserView> = sqlx::query_as(
        "SELECT id, username, role, tenant, projects, extension, disabled FROM users WHERE id = $1 AND tenant = $2",
    )
    .bind(id)
    .bind(tenant)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(current) = current else {
        return Ok(None);
    };
    let role = role.map(Role::as_str).unwrap_or(current.role.as_str());
    let projects = projects
        .map(|p| p.join(","))
        .unwrap_or(current.projects.clone());
    let disabled = disabled.map(i64::from).unwrap_or(current.disabled);
    sqlx::query("UPDATE users SET role = $1, projects = $2, disabled = $3 WHERE id = $4")
        .bind(role)
        .bind(&projects)
        .bind(disabled)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    if disabled != 0 {
        // A disabled user's sessions end at once, and their tokens and links (and the links made
        // with the tokens) are revoked for good: enabling the user again does not bring them back.
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await?;
        sqlx::query("UPDATE users SET links_valid_after_ms = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "UPDATE api_tokens SET revoked_at_ms = $1 WHERE user_id = $2 AND revoked_at_ms IS NULL",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(Some(UserView {
        role: role.to_string(),
        projects,
        disabled,
        ..current
    }))
}
