//! `user add`, `token create` / `revoke`, `tenant set`.

use std::path::PathBuf;

use clap::Subcommand;

use ari_recorder::access::accounts::{self, NewUser};
use ari_recorder::access::audit::AuditTx;
use ari_recorder::access::policy::TenantSettings;
use ari_recorder::access::Scope;

use super::{cli_entry, open_database};

#[derive(Subcommand)]
pub(crate) enum UserCommand {
    /// Add a user. The password is read from ARI_RECORDER_PASSWORD or the first line of stdin
    /// (never from the command line, where other users of the machine could see it).
    Add {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        username: String,
        /// admin, manager or staff.
        #[arg(long)]
        role: String,
        /// Defaults to the configured default tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Comma-separated projects the user is limited to (default: every project).
        #[arg(long, value_delimiter = ',')]
        projects: Vec<String>,
        /// The user's phone endpoint, e.g. PJSIP/201: private calls they were on are theirs.
        #[arg(long)]
        extension: Option<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum TokenCommand {
    /// Create an API token for a user; it is printed once.
    Create {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        user: String,
        /// The user's tenant, when that user name is in several tenants.
        #[arg(long)]
        tenant: Option<String>,
        /// A label for the token (what uses it).
        #[arg(long)]
        name: String,
        /// Comma-separated: recordings:read, recordings:play, recordings:download,
        /// recordings:delete, flows:write, admin.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Days until the token stops working (default: never).
        #[arg(long)]
        expires_days: Option<u32>,
    },
    /// Revoke a token by its id: it stops working at once, with the links made with it.
    Revoke {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        id: i64,
    },
}

#[derive(Subcommand)]
pub(crate) enum TenantCommand {
    /// Set a tenant's entitlements (unnamed ones keep their value).
    Set {
        #[arg(long)]
        config: Option<PathBuf>,
        name: String,
        /// Staff may play recordings.
        #[arg(long)]
        staff_playback: Option<bool>,
        /// Managers and admins may download recordings.
        #[arg(long)]
        download: Option<bool>,
        /// Endpoints the tenant's editors may place direct calls between, comma-separated
        /// patterns with at most one * each: "PJSIP/2*,Local/*@internal" ("" clears).
        #[arg(long)]
        call_endpoints: Option<String>,
        /// Days after which call recordings' audio is removed by the purge (0: kept forever).
        #[arg(long)]
        retain_calls_days: Option<u32>,
        /// Days after which voicemail messages' audio is removed (0: kept forever).
        #[arg(long)]
        retain_voicemail_days: Option<u32>,
        /// Days after which purged or deleted rows are forgotten altogether (0: never).
        #[arg(long)]
        forget_after_days: Option<u32>,
    },
}

pub(crate) async fn user(command: UserCommand) -> Result<(), String> {
    let UserCommand::Add {
        config,
        username,
        role,
        tenant,
        projects,
        extension,
    } = command;
    let (config, db) = open_database(config.as_deref()).await?;
    let password = match std::env::var("ARI_RECORDER_PASSWORD") {
        Ok(p) => p,
        Err(_) => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    let user = NewUser {
        username,
        password,
        role,
        tenant: tenant.unwrap_or(config.default_tenant.clone()),
        projects,
        extension,
    };
    let entry = cli_entry(
        &user.tenant,
        "user_create",
        format!("{} as {}", user.username, user.role),
    );
    let mut tx = AuditTx::begin(&db).await.map_err(|e| e.to_string())?;
    let id = accounts::create_user(tx.conn(), &user)
        .await
        .map_err(|e| e.to_string())?;
    tx.commit(&entry).await.map_err(|e| e.to_string())?;
    println!(
        "user {} added (id {id}, {} of tenant {})",
        user.username, user.role, user.tenant
    );
    Ok(())
}

pub(crate) async fn token(command: TokenCommand) -> Result<(), String> {
    let (config, user, user_tenant, name, scopes, expires_days) = match command {
        TokenCommand::Create {
            config,
            user,
            tenant,
            name,
            scopes,
            expires_days,
        } => (config, user, tenant, name, scopes, expires_days),
        TokenCommand::Revoke { config, id } => return revoke_token(config, id).await,
    };
    let (_, db) = open_database(config.as_deref()).await?;
    let scopes = scopes
        .iter()
        .map(|s| {
            Scope::parse(s.trim()).ok_or_else(|| {
                let known: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown scope {s:?} (known: {})", known.join(", "))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let expires =
        expires_days.map(|days| ari_recorder::clock::now_ms() + i64::from(days) * 86_400_000);
    let mut tx = AuditTx::begin(&db).await.map_err(|e| e.to_string())?;
    let tenant = accounts::tenant_of_user(tx.conn(), &user, user_tenant.as_deref())
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    let (id, secret) = accounts::create_token_in(
        tx.conn(),
        &user,
        user_tenant.as_deref(),
        &name,
        &scopes,
        expires,
    )
    .await
    .map_err(|e| e.to_string())?;
    let listed: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    let entry = cli_entry(
        &tenant,
        "token_create",
        format!("token {id} ({name}) for {user}: {}", listed.join(" ")),
    );
    tx.commit(&entry).await.map_err(|e| e.to_string())?;
    eprintln!("token {id} for {user} created; it is shown once, store it now:");
    println!("{secret}");
    Ok(())
}

pub(crate) async fn revoke_token(config: Option<PathBuf>, id: i64) -> Result<(), String> {
    let (_, db) = open_database(config.as_deref()).await?;
    let mut tx = AuditTx::begin(&db).await.map_err(|e| e.to_string())?;
    let Some(tenant) = accounts::revoke_token(tx.conn(), id)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Err(format!("no token {id}"));
    };
    tx.commit(&cli_entry(&tenant, "token_revoke", format!("token {id}")))
        .await
        .map_err(|e| e.to_string())?;
    println!("token {id} revoked");
    Ok(())
}

pub(crate) async fn tenant(command: TenantCommand) -> Result<(), String> {
    let TenantCommand::Set {
        config,
        name,
        staff_playback,
        download,
        call_endpoints,
        retain_calls_days,
        retain_voicemail_days,
        forget_after_days,
    } = command;
    let endpoints = match call_endpoints {
        Some(text) => {
            let patterns: Vec<String> = text
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect();
            for pattern in &patterns {
                ari_recorder::access::calls::check_pattern(pattern)?;
            }
            Some(patterns)
        }
        None => None,
    };
    let (_, db) = open_database(config.as_deref()).await?;
    let mut tx = AuditTx::begin(&db).await.map_err(|e| e.to_string())?;
    let current = accounts::tenant_settings(tx.conn(), &name)
        .await
        .map_err(|e| e.to_string())?;
    let settings = TenantSettings {
        staff_playback: staff_playback.unwrap_or(current.staff_playback),
        download_entitlement: download.unwrap_or(current.download_entitlement),
    };
    accounts::set_tenant_settings(tx.conn(), &name, settings)
        .await
        .map_err(|e| e.to_string())?;
    let mut detail = format!(
        "staff_playback = {}, download_entitlement = {}",
        settings.staff_playback, settings.download_entitlement
    );
    if let Some(patterns) = &endpoints {
        ari_recorder::access::calls::set_endpoints(tx.conn(), &name, patterns)
            .await
            .map_err(|e| e.to_string())?;
        detail.push_str(&format!(", call_endpoints = [{}]", patterns.join(", ")));
    }
    tx.commit(&cli_entry(&name, "setting_change", detail.clone()))
        .await
        .map_err(|e| e.to_string())?;
    if retain_calls_days.is_some() || retain_voicemail_days.is_some() || forget_after_days.is_some()
    {
        let current = ari_recorder::retention::rule(&db, &name)
            .await
            .map_err(|e| e.to_string())?;
        let keep = |new: Option<u32>, old: Option<u32>| match new {
            Some(0) => None,
            Some(days) => Some(days),
            None => old,
        };
        let rule = ari_recorder::retention::Rule {
            calls_days: keep(retain_calls_days, current.calls_days),
            voicemail_days: keep(retain_voicemail_days, current.voicemail_days),
            forget_after_days: keep(forget_after_days, current.forget_after_days),
        };
        ari_recorder::retention::set_rule(&db, &name, rule)
            .await
            .map_err(|e| e.to_string())?;
        let shown = |d: Option<u32>| d.map_or("forever".to_string(), |d| format!("{d} days"));
        let retention = format!(
            "retention: calls {}, voicemail {}, forget after {}",
            shown(rule.calls_days),
            shown(rule.voicemail_days),
            shown(rule.forget_after_days)
        );
        ari_recorder::access::audit::record(
            &db,
            &cli_entry(&name, "setting_change", retention.clone()),
        )
        .await
        .map_err(|e| e.to_string())?;
        detail.push_str(&format!(", {retention}"));
    }
    println!("tenant {name}: {detail}");
    Ok(())
}
