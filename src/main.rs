//! The `ari-recorder` command: `serve`, `demo`, `sim`, `check`, `index`, and the access
//! bootstrap: `user add`, `token create`, `tenant set`, `audit verify`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use ari_recorder::access::accounts::{self, NewUser};
use ari_recorder::access::audit::{AuditEntry, AuditTx};
use ari_recorder::access::policy::TenantSettings;
use ari_recorder::access::Scope;
use ari_recorder::ari::stream::StreamTiming;
use ari_recorder::config::Config;
use ari_recorder::service;
use ari_recorder::sim::{self, SimOptions};

// mimalloc instead of glibc's malloc: a long-running service with many short-lived threads
// (blocking file work, SQLite's workers) otherwise spreads its heap over many arenas that are
// seldom given back (RSS grew by half again between 1,000 and 10,000 calls in the soak).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "ari-recorder",
    version,
    about = "Call recording for Asterisk over ARI"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service against the Asterisk in ARI_URL.
    Serve {
        /// TOML configuration file; environment variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the service with the simulated Asterisk on loopback, placing a steady mix of calls.
    Demo {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Folder for the demo's recordings and database.
        #[arg(long, default_value = "./demo-data")]
        data: PathBuf,
        /// Seconds between simulated calls.
        #[arg(long, default_value_t = 8.0)]
        call_every: f64,
    },
    /// Run the simulated Asterisk alone.
    Sim {
        #[arg(long, default_value = "127.0.0.1:8088")]
        listen: SocketAddr,
        #[arg(long, default_value = "./recordings")]
        recordings_dir: PathBuf,
        #[arg(long, default_value = "recorder")]
        username: String,
        #[arg(long, env = "SIM_PASSWORD", default_value = "recorder-secret")]
        password: String,
        /// The app inbound calls enter (`Stasis(<app>,inbound,<exten>)`).
        #[arg(long, default_value = "recorder")]
        app: String,
        /// Simulated seconds per real second.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Serve ARI over TLS with this PEM certificate chain (and --tls-key).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Index the recordings folder into the library now, with progress.
    Index {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate the configuration and the dialplans folder; exit non-zero with the reasons.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Users who sign in to the page and the API.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// API tokens for integrations.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// A tenant's entitlements.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Apply every tenant's retention rule now: remove the audio past its days (held
    /// recordings excepted), forget old purged rows; one audit event per recording.
    Purge {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Report what would be removed, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print a new age identity for ENCRYPTION_KEYS (and its public half, which names it).
    EncryptionKey,
    /// Seal every recording sealed with an older key again with the first of ENCRYPTION_KEYS
    /// (and those in clear, once encryption was turned on): on disk in place, in the archive's
    /// bucket by reading, sealing and uploading over the old object.
    Reencrypt {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
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
enum TokenCommand {
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
enum TenantCommand {
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

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain; exit non-zero naming the first broken event.
    Verify {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// The async runtime's worker threads: `TOKIO_WORKER_THREADS`, else one. The service waits on
/// Asterisk, the database and the disk; its CPU work (hashing, encoding, password checks,
/// waveforms) runs on blocking threads. One worker spares the hand-offs between two (about a
/// tenth of the CPU a call costs) and leaves the other core to Asterisk; a node serving many
/// reviewers at once can raise it (BENCHMARKS.md, "One async worker").
fn async_workers() -> usize {
    let Ok(value) = std::env::var("TOKIO_WORKER_THREADS") else {
        return 1;
    };
    match value.trim().parse::<usize>() {
        Ok(n) if n > 0 => n,
        _ => {
            tracing::warn!(value = %value, "TOKIO_WORKER_THREADS is not a positive number; using one worker");
            1
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo's terminal shows its own lines (the page's address, what was recorded), not
    // three INFO lines a call: its log starts at warnings unless RUST_LOG says otherwise.
    // (sqlx's slow-statement notices, which a busy laptop raises, are no news to a demo user.)
    let default_level = if matches!(cli.command, Command::Demo { .. }) {
        "warn,sqlx::query=error"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into journald or a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(async_workers())
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ari-recorder: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Serve { config } => {
            let config = Config::from_process(config.as_deref()).map_err(|e| e.to_string())?;
            let shutdown = service::shutdown_on_signals();
            let service = service::start(&config, StreamTiming::default(), shutdown)
                .await
                .map_err(|e| e.to_string())?;
            service.join().await;
            Ok(())
        }
        Command::Demo {
            config,
            data,
            call_every,
        } => demo(config, data, call_every).await,
        Command::Sim {
            listen,
            recordings_dir,
            username,
            password,
            app,
            speed,
            tls_cert,
            tls_key,
        } => {
            std::fs::create_dir_all(&recordings_dir)
                .map_err(|e| format!("cannot create {}: {e}", recordings_dir.display()))?;
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => {
                    Some(ari_recorder::tls::server_config(&cert, &key).map_err(|e| e.to_string())?)
                }
                _ => None,
            };
            let handle = sim::start(SimOptions {
                listen,
                username,
                password,
                app,
                recordings_dir,
                speed,
                tls,
            })
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            println!("simulated Asterisk: ARI at {}/ari", handle.url());
            let mut shutdown = service::shutdown_on_signals();
            let _ = shutdown.wait_for(|stop| *stop).await;
            Ok(())
        }
        Command::Check { config } => check(config),
        Command::Index { config } => index(config).await,
        Command::User { command } => user(command).await,
        Command::Token { command } => token(command).await,
        Command::Tenant { command } => tenant(command).await,
        Command::Purge { config, dry_run } => purge(config, dry_run).await,
        Command::Audit { command } => audit(command).await,
        Command::EncryptionKey => {
            let (secret, public) = ari_recorder::encryption::Keyring::generate();
            println!("# public key: {public}\n{secret}");
            Ok(())
        }
        Command::Reencrypt { config } => reencrypt(config).await,
    }
}

async fn open_database(
    config: Option<&std::path::Path>,
) -> Result<(Config, ari_recorder::library::Database), String> {
    let config = Config::from_process(config).map_err(|e| e.to_string())?;
    let keys = config.audit_signing_keys().map_err(|e| e.to_string())?;
    let db = ari_recorder::library::Database::open(&config.database_connect_url())
        .await
        .map_err(|e| e.to_string())?
        .with_audit_keys(keys);
    Ok((config, db))
}

/// Who the command line acts as in the audit log.
fn cli_entry(tenant: &str, action: &'static str, detail: String) -> AuditEntry {
    AuditEntry {
        client: "command line".into(),
        detail: Some(detail),
        ..AuditEntry::new("cli", tenant, action)
    }
}

async fn user(command: UserCommand) -> Result<(), String> {
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

async fn token(command: TokenCommand) -> Result<(), String> {
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
        expires_days.map(|days| ari_recorder::access::now_ms() + i64::from(days) * 86_400_000);
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

async fn revoke_token(config: Option<PathBuf>, id: i64) -> Result<(), String> {
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

async fn tenant(command: TenantCommand) -> Result<(), String> {
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

async fn purge(config: Option<PathBuf>, dry_run: bool) -> Result<(), String> {
    let (config, db) = open_database(config.as_deref()).await?;
    let report = ari_recorder::retention::purge(
        &db,
        &config.recordings_dir,
        &config.node(),
        chrono::Utc::now().timestamp_millis(),
        dry_run,
    )
    .await
    .map_err(|e| e.to_string())?;
    // The service's cache of assembled calls holds the purged audio too.
    let calls = config.cache_dir.join("calls");
    if !report.removed.is_empty() && calls.is_dir() {
        let cache = ari_recorder::audio::call_audio::CallAudio::new(calls, u64::MAX, 1)
            .map_err(|e| format!("CACHE_DIR: {e}"))?;
        for call in report
            .removed
            .iter()
            .filter_map(|(_, call)| call.as_deref())
        {
            cache.forget_call(call);
        }
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    println!(
        "purge{}: {verb} the audio of {} recordings, {} forgotten; {} held past their rule kept; {} files not removed",
        if dry_run { " (dry run)" } else { "" },
        report.purged,
        report.forgotten,
        report.held,
        report.failed_files
    );
    Ok(())
}

async fn reencrypt(config: Option<PathBuf>) -> Result<(), String> {
    let (config, db) = open_database(config.as_deref()).await?;
    let keys = config
        .encryption_keyring()
        .map_err(|e| e.to_string())?
        .map(std::sync::Arc::new)
        .ok_or("no ENCRYPTION_KEYS (or ENCRYPTION_KEYS_FILE) configured")?;
    let node = config.node();
    let sealer = ari_recorder::encryption::sealer::Sealer::new(
        db.clone(),
        config.recordings_dir.clone(),
        &node,
        keys.clone(),
        std::sync::Arc::new(tokio::sync::Notify::new()),
    );
    // Recordings still in clear first, then those of older keys.
    let first = sealer.round(None).await.map_err(|e| e.to_string())?;
    let (again, _) = sealer.reencrypt_local().await.map_err(|e| e.to_string())?;
    println!(
        "on disk: {} sealed for the first time, {} sealed again with {}; {} failed (see the log)",
        first.sealed,
        again.sealed,
        keys.current_id(),
        first.failed + again.failed
    );
    let Some(settings) =
        ari_recorder::archive::ArchiveSettings::from_config(&config).map_err(|e| e.to_string())?
    else {
        return Ok(());
    };
    let archive = ari_recorder::archive::Archive::connect(settings, config.tls_ca_file.as_deref())?;
    let worker = ari_recorder::archive::worker::Worker::new(
        db.clone(),
        archive,
        config.recordings_dir.clone(),
        &node,
    );
    let now = chrono::Utc::now().timestamp_millis();
    let requeued = ari_recorder::archive::queue::requeue_resealed(&db, now)
        .await
        .map_err(|e| e.to_string())?;
    let round = worker.round().await.map_err(|e| e.to_string())?;
    let remote = ari_recorder::archive::queue::remote_to_reseal(&db, &keys.current_id())
        .await
        .map_err(|e| e.to_string())?;
    let scratch = config.cache_dir.join("reseal");
    let mut resealed = 0;
    let mut failed = 0;
    for id in remote {
        match worker.reseal_remote(id, &keys, &scratch).await {
            Ok(()) => resealed += 1,
            Err(e) => {
                failed += 1;
                eprintln!("recording {id}: not sealed again in the bucket: {e}");
            }
        }
    }
    println!(
        "archive: {requeued} uploaded again from disk ({} stored, {} failed and left queued), {resealed} sealed again in the bucket, {failed} failed",
        round.stored, round.failed
    );
    if failed > 0 || first.failed + again.failed > 0 {
        return Err("some recordings were not sealed again; run reencrypt again".into());
    }
    Ok(())
}

async fn audit(command: AuditCommand) -> Result<(), String> {
    let AuditCommand::Verify { config } = command;
    let (config, db) = open_database(config.as_deref()).await?;
    let report = ari_recorder::access::audit::verify(&db, config.audit_anchor_file.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    match report.problem {
        None => {
            println!(
                "audit log intact: {} events, head {}, {} anchored heads checked",
                report.events, report.head_hash, report.anchors
            );
            if report.unsealed > 0 {
                println!(
                    "{} events are chained without a key (written before AUDIT_KEYS was set): someone able to write the database could have rewritten them",
                    report.unsealed
                );
            }
            Ok(())
        }
        Some(problem) => Err(format!(
            "audit log broken after {} good events: {problem}",
            report.events
        )),
    }
}

/// A full scan of RECORDINGS_DIR into the library, printing progress on stderr.
async fn index(config: Option<PathBuf>) -> Result<(), String> {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    let config = Config::from_process(config.as_deref()).map_err(|e| e.to_string())?;
    let db = ari_recorder::library::Database::open(&config.database_connect_url())
        .await
        .map_err(|e| e.to_string())?;
    let node = config.node();
    ari_recorder::library::index::adopt_unowned_rows(&db, &node)
        .await
        .map_err(|e| e.to_string())?;
    let keys = config
        .encryption_keyring()
        .map_err(|e| e.to_string())?
        .map(std::sync::Arc::new);
    let indexer = ari_recorder::library::Indexer::new(
        db,
        config.recordings_dir.clone(),
        Duration::from_secs(3),
    )
    .with_default_scope(&config.default_tenant, &config.default_project)
    .with_node(&node)
    .with_keys(keys);
    let state = indexer.state.clone();
    let progress = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let found = state.files_found.load(Ordering::Relaxed);
            let probed = state.files_probed.load(Ordering::Relaxed);
            let width = 30usize;
            let filled = if found == 0 {
                0
            } else {
                (probed as usize * width / found as usize).min(width)
            };
            eprint!(
                "\r[{}{}] {probed} probed, {found} found",
                "#".repeat(filled),
                " ".repeat(width - filled)
            );
            let _ = std::io::stderr().flush();
        }
    });
    let started = std::time::Instant::now();
    let report = indexer.full_scan().await.map_err(|e| e.to_string());
    progress.abort();
    let report = report?;
    eprintln!();
    println!(
        "indexed {} in {:.2?}: {} found, {} probed, {} unchanged, {} missing",
        config.recordings_dir.display(),
        started.elapsed(),
        report.found,
        report.probed,
        report.unchanged,
        report.missing
    );
    Ok(())
}

fn check(config: Option<PathBuf>) -> Result<(), String> {
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
fn check_summary(config: &Config, flows: usize) -> String {
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
            ari_recorder::config::redact_url(&config.database_url),
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

/// The demo's users' password: the demo is a local sandbox, not a deployment.
const DEMO_PASSWORD: &str = "ari-recorder-demo";

/// One user per role in the default tenant, which may download and lets staff play.
async fn demo_accounts(db: &ari_recorder::library::Database, tenant: &str) -> Result<(), String> {
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
const DEMO_FLOWS: [(&str, &str); 6] = [
    ("support.toml", include_str!("../dialplans/support.toml")),
    (
        "general-voicemail.toml",
        include_str!("../dialplans/general-voicemail.toml"),
    ),
    ("sales.toml", include_str!("../dialplans/sales.toml")),
    ("helpdesk.toml", include_str!("../dialplans/helpdesk.toml")),
    ("billing.toml", include_str!("../dialplans/billing.toml")),
    ("settings.toml", include_str!("../dialplans/settings.toml")),
];

/// The demo's flows folder: `<data>/dialplans`, given the sample flows when it holds none
/// (edits made there are kept across demo restarts).
fn demo_flows(data: &Path) -> Result<PathBuf, String> {
    let dir = data.join("dialplans");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let has_flows = std::fs::read_dir(&dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .flatten()
        .any(|e| e.path().extension().is_some_and(|x| x == "toml"));
    if !has_flows {
        for (name, text) in DEMO_FLOWS {
            let path = dir.join(name);
            std::fs::write(&path, text)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
    }
    Ok(dir)
}

/// The demo's link-signing and audit keys, made on its first start and kept in
/// `<data>/keys.toml` (readable by its owner only), so links and the audit chain's seal survive
/// a demo restart and the demo needs none configured.
fn demo_keys(data: &Path) -> Result<(String, String), String> {
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
async fn demo(config: Option<PathBuf>, data: PathBuf, call_every: f64) -> Result<(), String> {
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
        ("320", "Ivan <5551009>", "talkhash"),
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
