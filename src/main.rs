//! The `ari-recorder` command: `serve`, `demo`, `sim`, `check`, `index`, and the access
//! bootstrap: `user add`, `token create`, `tenant set`, `audit verify`.

// Production code answers bad input with an error, never a panic; tests may unwrap.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

use cli::accounts::{tenant, token, user, TenantCommand, TokenCommand, UserCommand};
use cli::check::check;
use cli::demo::demo;
use cli::library::{audit, index, purge, reencrypt, AuditCommand};

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
