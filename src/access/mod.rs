//! Access control: who is asking (a browser session, an API token or a signed link), what their
//! role and scopes allow, and the audit trail every access leaves.
//!
//! - `policy`: the one decision function (role x consent x compliance x entitlement x scope).
//! - `accounts`: users, API tokens, browser sessions and tenants' settings in the database.
//! - `links`: short-lived HMAC-signed URLs for audio and downloads.
//! - `rate`: per-principal limits on grant requests.
//! - `confirmations`: delete confirmations, bound to one recording, used once.
//! - `audit`: the append-only, hash-chained audit log.

pub mod accounts;
pub mod audit;
mod audit_folds;
pub mod calls;
pub mod confirmations;
pub mod links;
pub mod policy;
pub mod rate;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Manager,
    Staff,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "manager" => Some(Role::Manager),
            "staff" => Some(Role::Staff),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Manager => "manager",
            Role::Staff => "staff",
        }
    }
}

/// What an API token may be used for. A token never does more than its user's role allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    RecordingsRead,
    RecordingsPlay,
    RecordingsDownload,
    RecordingsDelete,
    FlowsWrite,
    /// Everything the user's role allows, including administration.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 6] = [
        Scope::RecordingsRead,
        Scope::RecordingsPlay,
        Scope::RecordingsDownload,
        Scope::RecordingsDelete,
        Scope::FlowsWrite,
        Scope::Admin,
    ];

    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::RecordingsRead => "recordings:read",
            Scope::RecordingsPlay => "recordings:play",
            Scope::RecordingsDownload => "recordings:download",
            Scope::RecordingsDelete => "recordings:delete",
            Scope::FlowsWrite => "flows:write",
            Scope::Admin => "admin",
        }
    }
}

/// How the principal proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A browser session cookie: the full rights of the role; writes need the CSRF token.
    Session,
    /// A Bearer token limited to its scopes.
    Token { id: i64, scopes: Vec<Scope> },
}

/// The authenticated user behind a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: i64,
    pub username: String,
    pub role: Role,
    pub tenant: String,
    /// Projects the user is limited to; empty means every project of the tenant.
    pub projects: Vec<String>,
    /// The user's phone endpoint (`PJSIP/201`), to recognise their own calls.
    pub extension: Option<String>,
    pub credential: Credential,
    /// The entitlements of the user's tenant, read with the user on every request.
    pub settings: policy::TenantSettings,
}

impl Principal {
    pub fn has_scope(&self, scope: Scope) -> bool {
        match &self.credential {
            Credential::Session => true,
            Credential::Token { scopes, .. } => {
                scopes.contains(&scope) || scopes.contains(&Scope::Admin)
            }
        }
    }

    /// Who, as the audit log and signed links name them: `user:alice` or `token:3:alice`.
    pub fn actor(&self) -> String {
        match &self.credential {
            Credential::Session => format!("user:{}", self.username),
            Credential::Token { id, .. } => format!("token:{id}:{}", self.username),
        }
    }

    /// The identity a signed link is bound to: `u<user id>` or `t<token id>`.
    pub fn link_subject(&self) -> String {
        match &self.credential {
            Credential::Session => format!("u{}", self.user_id),
            Credential::Token { id, .. } => format!("t{id}"),
        }
    }
}

/// A 256-bit secret from the operating system, as URL-safe text.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}
