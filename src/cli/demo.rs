//! `demo`: the service beside the simulated Asterisk placing calls, in a data folder of its own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ari_recorder::access::accounts::{self, NewUser};
use ari_recorder::access::audit::AuditTx;
use ari_recorder::access::policy::TenantSettings;
use ari_recorder::ari::stream::StreamTiming;
use ari_recorder::config::Config;
use ari_recorder::service;
use ari_recorder::sim::{self, SimOptions};

use super::cli_entry;

/// The demo's users' password: the demo is a local sandbox, not a deployment.
pub(crate) const DEMO_PASSWORD: &str = "ari-recorder-demo";

/// One user per role in the default tenant, which may download and lets staff play.
pub(crate) async fn demo_accounts(
    db: &ari_recorder::db::Database,
    tenant: &str,
) -> Result<(), String> {
    let mut tx = AuditTx::begin(db).await.map_err(|e| e.to_string())?;
    for (name, extension) in [
        ("admin", None),
        ("manager", Some("PJSIP/201")),
        ("staff", Some("PJSIP/202")),
    ] {
        let user = NewUser {
            username: name.into(),
            password: DEMO_PASSWORD.into(),
            role: name.into(),
            tenant: tenant.into(),
            projects: Vec::new(),
            extension: extension.map(String::from),
        };
        match accounts::create_user(tx.conn(), &user).await {
            Ok(_) | Err(accounts::AccountError::Exists(_)) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let everything = TenantSettings {
        staff_playback: true,
        download_entitlement: true,
    };
    accounts::set_tenant_settings(tx.conn(), tenant, everything)
        .await
        .map_err(|e| e.to_string())?;
    let entry = cli_entry(
        tenant,
        "setting_change",
        "demo users and entitlements".into(),
    );
    tx.commit(&entry).await.map_err(|e| e.to_string())?;
    Ok(())
}

/// The sample flows the demo runs (the repository's `dialplans/`), carried in the binary so
/// that `ari-recorder demo` works from any folder.
pub(crate) const DEMO_FLOWS: [(&str, &str); 6] = [
    ("support.toml", include_str!("../../dialplans/support.toml")),
    (
        "general-voicemail.toml",
        include_str!("../../dialplans/general-voicemail.toml"),
    ),
    ("sales.toml", include_str!("../../dialplans/sales.toml")),
    (
        "helpdesk.toml",
        include_str!("../../dialplans/helpdesk.toml"),
    ),
    ("billing.toml", include_str!("../../dialplans/billing.toml")),
    (
        "settings.toml",
        include_str!("../../dialplans/settings.toml"),
    ),
];

/// The demo's flows folder: `<data>/dialplans`, given the sample flows when it holds none
/// (edits made there are kept across demo restarts).
pub(crate) fn demo_flows(data: &Path) -> Result<PathBuf, String> {
    let dir = data.join("dialplans");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let has_flows = std::fs::read_dir(&dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .flatten()
        .any(|e| e.path().extension().is_some_and(|x| x == "toml"));
    if !has_flows {
        for (name, text) in DEMO_FLOWS {
            let path = dir.join(name);
            let text = match name {
                "settings.toml" => demo_settings(text),
                _ => text.to_string(),
            };
            std::fs::write(&path, text)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
    }
    Ok(dir)
}

/// The sample settings with recording on: a new deployment starts with it off, the demo records
/// its sample calls (their callers are simulated).
fn demo_settings(sample: &str) -> String {
    sample.replace(
        "recording_enabled = false",
        "recording_enabled = true # the demo records its simulated calls",
    )
}

/// The demo's link-signing and audit keys, made on its first start and kept in
/// `<data>/keys.toml` (readable by its owner only), so links and the audit chain's seal survive
/// a demo restart and the demo needs none configured.
pub(crate) fn demo_keys(data: &Path) -> Result<(String, String), String> {
    let path = data.join("keys.toml");
    #[derive(serde::Deserialize)]
    struct Keys {
        link_signing_keys: String,
        audit_keys: String,
    }
    if let Ok(text) = std::fs::read_to_string(&path) {
        let keys: Keys =
            toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))?;
        return Ok((keys.link_signing_keys, keys.audit_keys));
    }
    let secret = ari_recorder::access::random_secret;
    let (links, audit) = (format!("demo:{}", secret()), format!("demo:{}", secret()));
    let text = format!(
        "# The demo's own keys, made at its first start: delete this file to get new ones.\nlink_signing_keys = \"{links}\"\naudit_keys = \"{audit}\"\n"
    );
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    Ok((links, audit))
}

/// The service plus the simulated Asterisk on loopback, placing a steady mix of sample calls.
pub(crate) async fn demo(
    config: Option<PathBuf>,
    data: PathBuf,
    call_every: f64,
) -> Result<(), String> {
    let recordings_dir = data.join("recordings");
    std::fs::create_dir_all(&recordings_dir)
        .map_err(|e| format!("cannot create {}: {e}", recordings_dir.display()))?;
    let dialplans = demo_flows(&data)?.display().to_string();
    let (link_keys, audit_keys) = demo_keys(&data)?;
    let password = format!("demo-{:016x}", fastrand::u64(..));
    let sim = sim::start(SimOptions {
        recordings_dir: recordings_dir.clone(),
        password: password.clone(),
        ..SimOptions::default()
    })
    .await
    .map_err(|e| format!("cannot start the simulated Asterisk: {e}"))?;
    let data_abs = std::fs::canonicalize(&data).unwrap_or(data.clone());
    let sim_url = sim.url();
    let database_url = format!("sqlite://{}/library.db?mode=rwc", data_abs.display());
    let recordings = recordings_dir.display().to_string();
    let cache = data_abs.join("cache").display().to_string();
    let config = Config::load(config.as_deref(), |key| match key {
        "ARI_URL" => Some(sim_url.clone()),
        "ARI_USERNAME" => Some("recorder".into()),
        "ARI_PASSWORD" => Some(password.clone()),
        "ARI_APP" => Some("recorder".into()),
        "RECORDINGS_DIR" => Some(recordings.clone()),
        "DATABASE_URL" => std::env::var(key)
            .ok()
            .or_else(|| Some(database_url.clone())),
        "CACHE_DIR" => std::env::var(key).ok().or_else(|| Some(cache.clone())),
        // Metrics on a loopback port of their own, as an operator would keep them.
        "METRICS_ADDR" => std::env::var(key)
            .ok()
            .or_else(|| Some("127.0.0.1:0".into())),
        "DIALPLANS_DIR" => std::env::var(key).ok().or_else(|| Some(dialplans.clone())),
        "LINK_SIGNING_KEYS" => std::env::var(key).ok().or_else(|| Some(link_keys.clone())),
        "AUDIT_KEYS" => std::env::var(key).ok().or_else(|| Some(audit_keys.clone())),
        _ => std::env::var(key).ok(),
    })
    .map_err(|e| e.to_string())?;
    let shutdown = service::shutdown_on_signals();
    let service = service::start(&config, StreamTiming::default(), shutdown.clone())
        .await
        .map_err(|e| e.to_string())?;
    demo_accounts(&service.db, &config.default_tenant).await?;
    let metrics = service
        .metrics_addr
        .map(|addr| format!("metrics at http://{addr}/metrics"))
        .unwrap_or_else(|| "metrics with METRICS_TOKEN".into());
    let page = format!("http://localhost:{}/", service.http_addr.port());
    println!(
        "ari-recorder demo: library at {page} ({metrics}), simulated Asterisk at {}",
        sim.url()
    );
    println!(
        "sign in as admin, manager or staff (password {DEMO_PASSWORD}); staff may play but never download"
    );
    println!(
        "the demo keeps its flows, keys and recordings in {} (RUST_LOG=info shows each call)",
        data_abs.display()
    );
    let mut reminded = std::time::Instant::now();
    // A steady mix over the sample flows of dialplans/: support (greeting, transfer, voicemail),
    // voicemail (ended by hang-up or #), the sales hunt group, the helpdesk queue, and a direct
    // outbound call.
    const CALLERS: [(&str, &str, &str); 6] = [
        ("100", "Alice <5551001>", "talk"),
        ("300", "Bob <5551002>", "talk"),
        ("400", "Carol <5551003>", "talk"),
        ("500", "Dave <5551004>", "talk"),
        // A voicemail message said in words: its transcript can be read and searched.
        ("320", "Ivan <5551009>", "speakhash"),
        // The billing line asks for consent; this caller presses 1.
        ("600", "Grace <5551007>", "talkconsent"),
    ];
    let mut shutdown_wait = shutdown.clone();
    let mut n = 0usize;
    loop {
        // Each inbound caller in turn, then a direct outbound call.
        let turn = n % (CALLERS.len() + 1);
        if turn == CALLERS.len() {
            let id = service
                .flows
                .place_outbound("PJSIP/204", "PJSIP/205", "default", "default");
            tracing::info!(call = %id, "demo outbound call placed");
        } else {
            let (exten, caller, behaviour) = CALLERS[turn];
            match sim.place_inbound_call(exten, caller, behaviour) {
                Ok(channel) => {
                    tracing::info!(exten, caller_channel = %channel.id, "demo call placed")
                }
                Err(e) => tracing::warn!(error = %e, "demo call failed"),
            }
        }
        n += 1;
        // The address again every minute, so it never scrolls away.
        if reminded.elapsed() >= Duration::from_secs(60) {
            reminded = std::time::Instant::now();
            println!("ari-recorder demo: {n} calls placed; library at {page} (admin, manager or staff / {DEMO_PASSWORD})");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(call_every.max(0.5))) => {}
            _ = shutdown_wait.wait_for(|stop| *stop) => break,
        }
    }
    service.join().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new deployment records nothing until an admin turns recording on; the demo's copy of
    /// the same settings records.
    #[test]
    fn the_shipped_settings_record_nothing_and_the_demo_turns_recording_on() {
        let (_, sample) = DEMO_FLOWS
            .iter()
            .find(|(name, _)| *name == "settings.toml")
            .expect("sample settings");
        let shipped: toml::Table = sample.parse().expect("toml");
        assert_eq!(
            shipped.get("recording_enabled"),
            Some(&toml::Value::Boolean(false))
        );
        let demo: toml::Table = demo_settings(sample).parse().expect("toml");
        assert_eq!(
            demo.get("recording_enabled"),
            Some(&toml::Value::Boolean(true))
        );
    }
}
