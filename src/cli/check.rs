//! `check`: the configuration and folders validated, each setting on a line.

use std::path::PathBuf;

use ari_recorder::config::Config;

pub(crate) fn check(config: Option<PathBuf>) -> Result<(), String> {
    let config = Config::from_process(config.as_deref()).map_err(|e| e.to_string())?;
    let mut problems = Vec::new();
    let warnings = ari_recorder::preflight::folder_warnings(&config);
    // A missing dialplans folder is a warning (a library-only node), not a problem.
    let flows = if config.dialplans_dir.exists() {
        match ari_recorder::flows::check_folder(&config.dialplans_dir) {
            Ok(set) => set.flows.len(),
            Err(errors) => {
                problems.extend(errors.iter().map(|e| e.to_string()));
                0
            }
        }
    } else {
        0
    };
    if let Err(e) = std::fs::read_dir(&config.recordings_dir) {
        problems.push(format!(
            "RECORDINGS_DIR {}: {e}",
            config.recordings_dir.display()
        ));
    }
    if problems.is_empty() {
        println!("{}", check_summary(&config, flows));
        for warning in warnings {
            println!("{:<18} {warning}", "warning");
        }
        Ok(())
    } else {
        problems.extend(warnings.into_iter().map(|w| format!("warning: {w}")));
        Err(problems.join("\n"))
    }
}

/// What `check` found, one setting a line; secrets are never shown, only whether they are set.
pub(crate) fn check_summary(config: &Config, flows: usize) -> String {
    let set = |secret: bool| if secret { "set" } else { "not set" };
    let lines = [
        ("configuration", "valid".to_string()),
        (
            "ARI",
            format!(
                "{} as {} (password {}), app {}",
                config.ari_url,
                config.ari_username,
                set(!config.ari_password.is_empty()),
                config.ari_app
            ),
        ),
        (
            "TLS CA file",
            config
                .tls_ca_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "none (public roots only)".into()),
        ),
        ("recordings", config.recordings_dir.display().to_string()),
        (
            "database",
            ari_recorder::db::redact_url(&config.database_url),
        ),
        ("HTTP", config.http_addr.to_string()),
        (
            "flows",
            format!("{flows} in {}", config.dialplans_dir.display()),
        ),
        (
            "link signing keys",
            if config.link_signing_keys.is_empty() {
                "none (a random key per process)".into()
            } else {
                format!("{} configured", config.link_signing_keys.len())
            },
        ),
        (
            "default scope",
            format!(
                "tenant {}, project {}",
                config.default_tenant, config.default_project
            ),
        ),
        (
            "archive",
            if config.archive_bucket.is_empty() {
                "none (recordings stay on this disk)".into()
            } else {
                format!(
                    "bucket {} at {} (credentials {}), local copies kept {} days, split {}",
                    config.archive_bucket,
                    if config.archive_endpoint.is_empty() {
                        "AWS"
                    } else {
                        config.archive_endpoint.as_str()
                    },
                    set(!config.archive_secret_access_key.is_empty()
                        || config.archive_credentials_file.is_some()),
                    config.archive_local_retention_days,
                    if config.archive_split_bytes == 0 {
                        "never".to_string()
                    } else {
                        format!("past {} bytes", config.archive_split_bytes)
                    }
                )
            },
        ),
        (
            "encryption",
            match config.encryption_keyring() {
                Ok(Some(keys)) => format!("on, sealing with {}", keys.current_id()),
                Ok(None) => "off (recordings in clear at rest)".into(),
                Err(e) => e.to_string(),
            },
        ),
    ];
    let mut out = String::new();
    for (name, value) in lines {
        out.push_str(&format!("{name:<18} {value}\n"));
    }
    if let Some(warning) = config.database_tls_warning() {
        out.push_str(&format!("warning            {warning}\n"));
    }
    out.trim_end().to_string()
}
