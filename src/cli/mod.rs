//! The command line's commands beyond `serve` and `sim`: accounts and tokens, the library's
//! maintenance (index, purge, re-encryption, the audit chain), `check` and the demo. Each acts
//! on the database as the command line, audited as such.

pub(crate) mod accounts;
pub(crate) mod check;
pub(crate) mod demo;
pub(crate) mod library;

use ari_recorder::access::audit::{AuditEntry, SealedAudit};
use ari_recorder::config::Config;

pub(crate) async fn open_database(
    config: Option<&std::path::Path>,
) -> Result<(Config, ari_recorder::db::Database), String> {
    let config = Config::from_process(config).map_err(|e| e.to_string())?;
    let keys = config.audit_signing_keys().map_err(|e| e.to_string())?;
    let db = ari_recorder::db::Database::open(&config.database_connect_url())
        .await
        .map_err(|e| e.to_string())?
        .with_audit_keys(keys);
    Ok((config, db))
}

/// Who the command line acts as in the audit log.
pub(crate) fn cli_entry(tenant: &str, action: &'static str, detail: String) -> AuditEntry {
    AuditEntry {
        client: "command line".into(),
        detail: Some(detail),
        ..AuditEntry::new("cli", tenant, action)
    }
}
