//! The `ari-recorder` command: `serve`, `demo`, `sim`, `check`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use ari_recorder::ari::stream::StreamTiming;
use ari_recorder::config::Config;
use ari_recorder::service;
use ari_recorder::sim::{self, SimOptions};

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
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
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
        } => {
            std::fs::create_dir_all(&recordings_dir)
                .map_err(|e| format!("cannot create {}: {e}", recordings_dir.display()))?;
            let handle = sim::start(SimOptions {
                listen,
                username,
                password,
                app,
                recordings_dir,
                speed,
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
    }
}

/// A full scan of RECORDINGS_DIR into the library, printing progress on stderr.
async fn index(config: Option<PathBuf>) -> Result<(), String> {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    let config = Config::from_process(config.as_deref()).map_err(|e| e.to_string())?;
    let db = ari_recorder::library::Database::open(&config.database_url)
        .await
        .map_err(|e| e.to_string())?;
    let indexer = ari_recorder::library::Indexer::new(
        db,
        config.recordings_dir.clone(),
        Duration::from_secs(3),
    );
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
    let flows = match ari_recorder::flows::check_folder(&config.dialplans_dir) {
        Ok(set) => set.flows.len(),
        Err(errors) => {
            problems.extend(errors.iter().map(|e| e.to_string()));
            0
        }
    };
    if let Err(e) = std::fs::read_dir(&config.recordings_dir) {
        problems.push(format!(
            "RECORDINGS_DIR {}: {e}",
            config.recordings_dir.display()
        ));
    }
    if problems.is_empty() {
        println!("configuration is valid ({flows} flows): {config:?}");
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// The service plus the simulated Asterisk on loopback, placing a steady mix of sample calls.
async fn demo(config: Option<PathBuf>, data: PathBuf, call_every: f64) -> Result<(), String> {
    let recordings_dir = data.join("recordings");
    std::fs::create_dir_all(&recordings_dir)
        .map_err(|e| format!("cannot create {}: {e}", recordings_dir.display()))?;
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
    let config = Config::load(config.as_deref(), |key| match key {
        "ARI_URL" => Some(sim_url.clone()),
        "ARI_USERNAME" => Some("recorder".into()),
        "ARI_PASSWORD" => Some(password.clone()),
        "ARI_APP" => Some("recorder".into()),
        "RECORDINGS_DIR" => Some(recordings.clone()),
        "DATABASE_URL" => std::env::var(key)
            .ok()
            .or_else(|| Some(database_url.clone())),
        _ => std::env::var(key).ok(),
    })
    .map_err(|e| e.to_string())?;
    let shutdown = service::shutdown_on_signals();
    let service = service::start(&config, StreamTiming::default(), shutdown.clone())
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "ari-recorder demo: service at http://{} (metrics at /metrics), simulated Asterisk at {}",
        service.http_addr,
        sim.url()
    );
    // A steady mix over the sample flows of dialplans/: support (greeting, transfer, voicemail),
    // voicemail (ended by hang-up or #), the sales hunt group, the helpdesk queue, and a direct
    // outbound call.
    const CALLERS: [(&str, &str, &str); 5] = [
        ("100", "Alice <5551001>", "talk"),
        ("300", "Bob <5551002>", "talk"),
        ("400", "Carol <5551003>", "talk"),
        ("500", "Dave <5551004>", "talk"),
        ("320", "Ivan <5551009>", "talkhash"),
    ];
    let mut shutdown_wait = shutdown.clone();
    let mut n = 0usize;
    loop {
        if n % 6 == 5 {
            let id = service.flows.place_outbound("PJSIP/204", "PJSIP/205");
            tracing::info!(call = %id, "demo outbound call placed");
        } else {
            let (exten, caller, behaviour) = CALLERS[n % CALLERS.len()];
            match sim.place_inbound_call(exten, caller, behaviour) {
                Ok(channel) => {
                    tracing::info!(exten, caller_channel = %channel.id, "demo call placed")
                }
                Err(e) => tracing::warn!(error = %e, "demo call failed"),
            }
        }
        n += 1;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(call_every.max(0.5))) => {}
            _ = shutdown_wait.wait_for(|stop| *stop) => break,
        }
    }
    service.join().await;
    Ok(())
}
