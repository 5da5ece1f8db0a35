//! `serve`: the whole service wired together: HTTP API, library database, ARI event stream and
//! the Stasis app runtime. `run` takes its shutdown signal as an argument so tests start it on a
//! free port and stop it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::access::audit::SealedAudit;
use crate::ari::stream::{run_event_stream, StreamTiming, NOTICE_QUEUE};
use crate::ari::AriClient;
use crate::config::Config;
use crate::db::Database;
use crate::flows::runtime::LibraryLinks;
use crate::flows::{FlowRuntime, FlowStore};
use crate::http::{self, AppState, Library};
use crate::library::index::ScanError;
use crate::library::Indexer;
use crate::metrics::Metrics;
use crate::playback::call_audio::CallAudio;
use crate::stasis::{self, Registry};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Database(#[from] crate::db::DbError),
    #[error("ARI_URL: {0}")]
    AriUrl(url::ParseError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("DIALPLANS_DIR: {0}")]
    Dialplans(crate::flows::FlowError),
    #[error("CACHE_DIR {path}: {source}")]
    Cache {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("DIALPLANS_DIR: cannot watch for changes: {0}")]
    Watch(notify::Error),
    #[error(transparent)]
    Webhooks(#[from] crate::webhooks::WebhookError),
    #[error("transcription: {0}")]
    Transcription(String),
    #[error("archive: {0}")]
    Archive(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot listen on {key} {addr}: {source}")]
    Listen {
        key: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A started service: where it listens and handles for tests.
pub struct Service {
    pub http_addr: SocketAddr,
    /// Where `/metrics` is served alone, when `METRICS_ADDR` is set.
    pub metrics_addr: Option<SocketAddr>,
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Mutex<Registry>>,
    pub db: Database,
    pub flows: FlowRuntime,
    pub indexer: Arc<Indexer>,
    /// The object store recordings are copied to, when configured.
    pub archive: Option<Arc<crate::archive::Archive>>,
    /// What links, sessions and API tokens expire by (tests move it on).
    pub clock: crate::clock::Clock,
    tasks: Vec<JoinHandle<()>>,
}

impl Service {
    /// Waits for every task to end (after the shutdown signal).
    pub async fn join(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Starts everything; it all stops when `shutdown` turns true.
pub async fn start(
    config: &Config,
    timing: StreamTiming,
    shutdown: watch::Receiver<bool>,
) -> Result<Service, ServiceError> {
    let metrics = Arc::new(Metrics::default());
    if let Some(warning) = config.database_tls_warning() {
        tracing::warn!("{warning}");
    }
    let audit_keys = config.audit_signing_keys().ok().flatten();
    if audit_keys.is_none() {
        tracing::warn!(
            "no audit_keys configured: the audit chain is plain SHA-256, which someone able to write the database can recompute"
        );
    }
    let db = Database::open(&config.database_connect_url())
        .await?
        .with_audit_keys(audit_keys);
    if let Err(e) = crate::access::audit::seal_from_here(&db, &config.default_tenant).await {
        tracing::error!(error = %e, "cannot seal the audit chain");
    }
    let tls = crate::tls::client_config(config.tls_ca_file.as_deref())?;
    let client = AriClient::with_tls(
        &config.ari_url,
        &config.ari_username,
        &config.ari_password,
        tls.clone(),
    )
    .map_err(ServiceError::AriUrl)?
    .with_metrics(metrics.clone());
    if std::fs::read_dir(&config.recordings_dir).is_err() {
        tracing::warn!(dir = %config.recordings_dir.display(), "recordings folder is not readable yet; /readyz will say so");
    }
    for warning in crate::preflight::folder_warnings(config) {
        tracing::warn!("{warning}");
    }
    let (listener, http_addr) = listen("HTTP_ADDR", config.http_addr).await?;
    let metrics_listener = match config.metrics_addr {
        Some(addr) => Some(listen("METRICS_ADDR", addr).await?),
        None => None,
    };
    let (store, problems) =
        FlowStore::load(&config.dialplans_dir).map_err(ServiceError::Dialplans)?;
    for problem in &problems {
        tracing::error!(problem = %problem, "dialplan not loaded");
    }
    let store = Arc::new(store);
    let watch_task = store.watch(shutdown.clone()).map_err(ServiceError::Watch)?;
    let archive = match crate::archive::ArchiveSettings::from_config(config)? {
        Some(settings) => Some(
            crate::archive::Archive::connect(settings, config.tls_ca_file.as_deref())
                .map_err(ServiceError::Archive)?,
        ),
        None => None,
    };
    let node = config.node();
    let adopted = crate::library::index::adopt_unowned_rows(&db, &node).await?;
    if adopted > 0 {
        tracing::info!(node = %node, rows = adopted, "recordings of no node taken over by this one");
    }
    let others = crate::library::index::other_nodes_when_new(&db, &node).await?;
    if !others.is_empty() {
        // A renamed instance would index its folder again as new rows.
        tracing::warn!(node = %node, others = %others.join(", "), "this node has no recordings in the library yet, other nodes have: if this instance was renamed, set NODE_ID to its old name");
    }
    let indexer = Indexer::new(
        db.clone(),
        config.recordings_dir.clone(),
        Duration::from_secs(3),
    )
    .with_default_scope(&config.default_tenant, &config.default_project)
    .with_node(&node)
    .with_copies_elsewhere(Arc::new(crate::archive::queue::KeptInBucket))
    .with_number_scope(number_scope(store.clone()))
    .with_new_compliance({
        let store = store.clone();
        Arc::new(move || store.current().settings.default_compliance.as_str())
    });
    let keys = config.encryption_keyring()?.map(Arc::new);
    if let Some(keys) = &keys {
        tracing::info!(key = %keys.current_id(), "recordings are sealed at rest");
    }
    // Final recordings go to the sealer first when encryption is on (it then wakes the
    // archive), else straight to the archive.
    let seal_wake = Arc::new(tokio::sync::Notify::new());
    let indexer = indexer.with_keys(keys.clone());
    let indexer = match (&keys, &archive) {
        (Some(_), _) => indexer.with_ready_notify(seal_wake.clone()),
        (None, Some(archive)) => indexer.with_ready_notify(archive.wake.clone()),
        (None, None) => indexer,
    };
    // Final recordings are also transcribed, when an engine is configured.
    let transcription = crate::config::transcription::TranscriptionSettings::from_config(config)?;
    let transcription_engine =
        crate::transcription::Engine::from_settings(&transcription, tls.clone())
            .map_err(ServiceError::Transcription)?;
    let transcribe_wake = Arc::new(tokio::sync::Notify::new());
    let indexer = match &transcription_engine {
        Some(engine) => {
            tracing::info!(
                engine = engine.name(),
                workers = transcription.workers,
                "final recordings are transcribed"
            );
            indexer.with_ready_notify(transcribe_wake.clone())
        }
        None => indexer,
    };
    let indexer = Arc::new(indexer);
    // One time for links, sessions and the calls' timers (tests move it on).
    let clock = crate::clock::Clock::default();
    let (flows, writer_task) = FlowRuntime::new(
        client.clone(),
        config.ari_app.clone(),
        store,
        db.clone(),
        LibraryLinks {
            metrics: metrics.clone(),
            finished: Some(indexer.finished_notifier()),
        },
        shutdown.clone(),
        clock.clone(),
    );
    flows.end_unresumable_calls(config.end_unresumable_calls);
    let disk = crate::disk_space::DiskSpace::new(
        config.recordings_dir.clone(),
        crate::db::sqlite_file(&config.database_url)
            .and_then(|f| f.parent().map(std::path::Path::to_path_buf)),
        config.cache_dir.clone(),
        config.disk_reserve_bytes,
    );
    disk.spawn(
        Duration::from_secs(config.disk_check_seconds),
        shutdown.clone(),
    );
    flows.watch_disk(disk.clone());
    let call_audio_dir = config.cache_dir.join("calls");
    let call_audio = CallAudio::with_seal(
        call_audio_dir.clone(),
        config.call_audio_cache_bytes,
        std::thread::available_parallelism().map_or(2, |n| n.get()),
        keys.is_some(),
    )
    .map_err(|source| ServiceError::Cache {
        path: call_audio_dir,
        source,
    })?;
    let index_task = tokio::spawn(keep_indexed(indexer.clone(), shutdown.clone()));
    let library = Arc::new(
        Library::new(indexer.clone(), call_audio)
            .with_archive(archive.clone())
            .with_keys(keys.clone())
            .with_transcription(transcription_engine.as_ref().map(|e| e.name())),
    );
    let seal_task = keys.clone().map(|keys| {
        let sealer = crate::sealing::Sealer::new(
            db.clone(),
            config.recordings_dir.clone(),
            &node,
            keys,
            seal_wake,
        )
        .with_sealed_notify(archive.as_ref().map(|a| a.wake.clone()));
        tokio::spawn(sealer.run(shutdown.clone()))
    });
    let archive_task = archive.clone().map(|archive| {
        let worker = crate::archive::worker::Worker::new(
            db.clone(),
            archive,
            config.recordings_dir.clone(),
            &node,
        );
        tokio::spawn(worker.run(shutdown.clone()))
    });
    let transcription_task = transcription_engine.map(|engine| {
        let flows_store = Arc::clone(flows.store());
        let policies: crate::transcription::FlowPolicies = Arc::new(move |flow: Option<&str>| {
            let found =
                flow.and_then(|name| {
                    flows_store.current().flows.get(name).map(|f| {
                        crate::transcription::FlowPolicy {
                            transcribe: f.transcribe,
                            language: f.language.clone(),
                        }
                    })
                });
            found.unwrap_or(crate::transcription::FlowPolicy {
                transcribe: true,
                language: None,
            })
        });
        let worker = crate::transcription::Worker::new(
            db.clone(),
            engine,
            http::LibraryAudio {
                db: db.clone(),
                library: library.clone(),
            },
            policies,
            &transcription,
            &node,
            transcribe_wake,
        )
        .with_keys(keys.clone());
        tokio::spawn(Arc::new(worker).run(shutdown.clone()))
    });
    let webhooks = crate::webhooks::Deliverer::new(
        db.clone(),
        crate::webhooks::WebhookSettings::from_config(config),
        tls,
        metrics.clone(),
    )?
    .with_keys(keys.clone());
    let webhook_task = tokio::spawn(Arc::new(webhooks).run(shutdown.clone()));
    let filing_task = tokio::spawn(file_unclaimed_recordings(
        db.clone(),
        indexer.clone(),
        Duration::from_secs(config.quarantine_grace_hours.saturating_mul(3600)),
        (
            config.default_tenant.clone(),
            config.default_project.clone(),
        ),
        clock.clone(),
        shutdown.clone(),
    ));
    let purge_task = tokio::spawn(purge_hourly(
        db.clone(),
        config.recordings_dir.clone(),
        library.clone(),
        shutdown.clone(),
    ));
    let state = AppState {
        library,
        db: db.clone(),
        metrics: metrics.clone(),
        recordings_dir: config.recordings_dir.clone(),
        flows: flows.clone(),
        access: Arc::new(http::Access::from_config(config, clock.clone())),
        disk: disk.clone(),
    };
    let max_connections = usize::try_from(config.http_max_connections).unwrap_or(usize::MAX);
    let limits = http::server::Limits {
        max_connections,
        // Below the global cap whatever is configured: one client never takes every slot.
        max_per_client: usize::try_from(config.http_max_connections_per_client)
            .unwrap_or(usize::MAX)
            .min(max_connections.saturating_sub(1).max(1)),
        read_timeout: Duration::from_secs(config.http_read_timeout_seconds),
        proxies: config.trusted_proxy_nets().unwrap_or_default(),
    };
    let mut tasks = Vec::new();
    let metrics_addr = match metrics_listener {
        Some((listener, addr)) => {
            // A scraper needs few connections.
            let limits = http::server::Limits {
                max_connections: 16,
                max_per_client: 16,
                ..limits.clone()
            };
            tasks.push(tokio::spawn(http::server::serve(
                listener,
                http::metrics_router(state.clone()),
                limits,
                None,
                shutdown.clone(),
            )));
            Some(addr)
        }
        None => None,
    };
    tasks.push(tokio::spawn(http::server::serve(
        listener,
        http::router(state),
        limits,
        Some(metrics.clone()),
        shutdown.clone(),
    )));

    let (notice_tx, notice_rx) = mpsc::channel(NOTICE_QUEUE);
    let stream_task = tokio::spawn(run_event_stream(
        client.clone(),
        config.ari_app.clone(),
        timing,
        metrics.clone(),
        notice_tx,
        shutdown.clone(),
    ));
    let registry = Arc::new(Mutex::new(Registry::default()));
    let (input_tx, input_rx) = mpsc::channel(NOTICE_QUEUE);
    let stasis_task = tokio::spawn(stasis::run(
        client,
        config.ari_app.clone(),
        registry.clone(),
        metrics.clone(),
        notice_rx,
        input_tx,
        stasis::StasisOptions {
            event_filter: config.ari_event_filter,
            disk: Some(disk.clone()),
        },
    ));
    let flows_task = tokio::spawn(flows.clone().run(input_rx));
    tracing::info!(http = %http_addr, ari = %config.ari_url, app = %config.ari_app, "ari-recorder started");
    if let Some(path) = config.audit_anchor_file.clone() {
        if let Err(e) = crate::access::audit::note_anchoring(&db).await {
            tracing::error!(error = %e, "could not note in the database that the audit chain is anchored");
        }
        tasks.push(tokio::spawn(anchor_audit_head(
            db.clone(),
            path,
            shutdown.clone(),
        )));
    }
    tasks.push(tokio::spawn(fold_audit_repeats(
        db.clone(),
        shutdown.clone(),
    )));
    tasks.extend([
        stream_task,
        stasis_task,
        flows_task,
        watch_task,
        writer_task,
        index_task,
        purge_task,
        filing_task,
        webhook_task,
    ]);
    tasks.extend(archive_task);
    tasks.extend(seal_task);
    tasks.extend(transcription_task);
    Ok(Service {
        http_addr,
        metrics_addr,
        metrics,
        registry,
        db,
        flows,
        indexer,
        archive,
        clock,
        tasks,
    })
}

/// How often the audit chain's head is anchored outside the database (when it moved).
const AUDIT_ANCHOR_EVERY: Duration = Duration::from_secs(60);

/// Appends the audit head to `path` every `AUDIT_ANCHOR_EVERY` it moved, and once more at
/// shutdown. A failed write is logged and retried at the next tick.
async fn anchor_audit_head(
    db: Database,
    path: std::path::PathBuf,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last = -1;
    loop {
        // Read before anchoring: a stop that comes while the head is read or written brings
        // one more turn, so the last head is anchored whatever the timing.
        let stopping = *shutdown.borrow();
        match crate::access::audit::anchor_head(&db, &path, last).await {
            Ok(seq) => last = seq,
            Err(e) => tracing::error!(error = %e, "audit head not anchored"),
        }
        if stopping {
            return;
        }
        // A delete, a hold, a consent change or a grant is anchored at once: cutting the log's
        // tail after the last anchor can then hide reads, never such an action.
        let audit_writer = crate::access::audit::group_writer(&db);
        tokio::select! {
            _ = tokio::time::sleep(AUDIT_ANCHOR_EVERY) => {}
            _ = audit_writer.security_event.notified() => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    }
}

/// How often the counts of folded audit repeats are written, and the log's growth checked.
const AUDIT_FOLD_EVERY: Duration = Duration::from_secs(10);
/// Audit events a minute past which the log is said to grow too fast (a warning, and the
/// `audit_events_written_total` rate for an alert): about 30 MB an hour.
const AUDIT_GROWTH_WARN_PER_MINUTE: u64 = 2_000;

/// Writes the counts of folded audit repeats as their windows end, and all of them at shutdown;
/// warns when more events than `AUDIT_GROWTH_WARN_PER_MINUTE` were written in a minute.
async fn fold_audit_repeats(db: Database, mut shutdown: watch::Receiver<bool>) {
    use std::sync::atomic::Ordering;
    let mut minute_start = (tokio::time::Instant::now(), 0u64);
    loop {
        let stopping = *shutdown.borrow();
        if let Err(e) = crate::access::audit::flush_folds(&db, stopping).await {
            tracing::warn!(error = %e, "audit repeat counts not written; retried in a moment");
        }
        if stopping {
            return;
        }
        let written = crate::access::audit::group_writer(&db)
            .written
            .load(Ordering::Relaxed);
        if minute_start.0.elapsed() >= Duration::from_secs(60) {
            let grew = written.saturating_sub(minute_start.1);
            if grew > AUDIT_GROWTH_WARN_PER_MINUTE {
                tracing::warn!(events = grew, "the audit log grew by more events in the last minute than expected; see audit_events_written_total and who is acting");
            }
            minute_start = (tokio::time::Instant::now(), written);
        }
        tokio::select! {
            _ = tokio::time::sleep(AUDIT_FOLD_EVERY) => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    }
}

/// How often the retention rules are applied.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Applies the tenants' retention rules every hour (the first a minute after start), and drops
/// what the caches hold of purged audio. A failed run is logged and retried at the next.
/// How often quarantined recordings are looked at for filing.
const FILING_EVERY: Duration = Duration::from_secs(600);

/// Files the recordings quarantined for longer than `grace` (their call's metadata never came:
/// lost in a crash) as private recordings of the operator's tenant, seen by its admins, instead
/// of leaving them invisible to everyone. On the service's clock (tests move it on).
async fn file_unclaimed_recordings(
    db: Database,
    indexer: Arc<Indexer>,
    grace: Duration,
    scope: (String, String),
    clock: crate::clock::Clock,
    mut shutdown: watch::Receiver<bool>,
) {
    let finished = indexer.finished_notifier();
    loop {
        tokio::select! {
            _ = clock.sleep(FILING_EVERY) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        let before = clock.now_ms().saturating_sub(grace_ms);
        let due = match crate::library::index::quarantined_before(&db, indexer.node(), before).await
        {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "quarantined recordings not looked at; tried again later");
                continue;
            }
        };
        for (name, format, written_ms) in due {
            let filed = crate::library::calls::file_unclaimed(
                &db.pool,
                &name,
                &format,
                (&scope.0, &scope.1),
                written_ms,
            )
            .await;
            match filed {
                Ok(()) => {
                    tracing::warn!(recording = %name, "a call's recording whose metadata never came is filed for the operator's admins");
                    finished.finished(&name, None);
                }
                Err(e) => {
                    tracing::warn!(error = %e, recording = %name, "not filed; tried again later")
                }
            }
        }
    }
}

async fn purge_hourly(
    db: Database,
    root: std::path::PathBuf,
    library: Arc<Library>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut wait = Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        wait = PURGE_EVERY;
        let now = crate::clock::now_ms();
        match crate::retention::purge(&db, &root, library.indexer.node(), now, false).await {
            Ok(report) => {
                if let Some(archive) = &library.archive {
                    archive.wake.notify_one();
                }
                for (id, call) in &report.removed {
                    library.renderings.forget(*id);
                    if let Some(call) = call {
                        library.call_audio.forget_call(call);
                    }
                }
                if report.purged + report.forgotten > 0 {
                    tracing::info!(
                        purged = report.purged,
                        forgotten = report.forgotten,
                        held = report.held,
                        failed_files = report.failed_files,
                        "retention applied"
                    );
                }
            }
            Err(e) => tracing::error!(error = %e, "retention not applied; retried in an hour"),
        }
    }
}

/// The tenant, project and privacy of a dialled number: its flow's, as loaded now.
fn number_scope(store: Arc<FlowStore>) -> crate::library::index::NumberScopeFn {
    Arc::new(move |number: &str| {
        store
            .current()
            .flow_for_number(number)
            .map(|flow| crate::library::index::NumberScope {
                flow: flow.name.clone(),
                tenant: flow.tenant.clone(),
                project: flow.project.clone(),
                private: flow.private,
            })
    })
}

/// Binds `addr` (port 0: any free port) and says where it listens.
async fn listen(
    key: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), ServiceError> {
    let error = |source| ServiceError::Listen { key, addr, source };
    let listener = TcpListener::bind(addr).await.map_err(error)?;
    let bound = listener.local_addr().map_err(error)?;
    Ok((listener, bound))
}

/// A full scan of the recordings folder, then its watcher, until shutdown. A folder that does
/// not exist yet (Asterisk not started) is waited for; a walk that fails (permissions, I/O)
/// changes no row and is retried.
async fn keep_indexed(indexer: Arc<Indexer>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let mut retry = Duration::from_secs(5);
        // Not there yet (Asterisk not started) is waited for; there but not a readable folder
        // is a failed walk, reported.
        if indexer.root().exists() {
            match indexer.full_scan().await {
                Ok(report) => {
                    tracing::info!(
                        found = report.found,
                        probed = report.probed,
                        missing = report.missing,
                        "recordings folder indexed"
                    );
                    match indexer.watch(shutdown.clone()) {
                        Ok(task) => {
                            let _ = task.await;
                            return;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot watch the recordings folder; rescanning in 5 s")
                        }
                    }
                }
                Err(ScanError::Walk(_)) => retry = Duration::from_secs(30),
                Err(e) => tracing::error!(error = %e, "indexing the recordings folder failed"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            changed = shutdown.changed() => if changed.is_err() { return },
        }
    }
}

/// Turns SIGINT or SIGTERM into the shutdown signal.
pub fn shutdown_on_signals() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
        tracing::info!("shutting down: calls in progress are left to Asterisk");
        let _ = tx.send(true);
    });
    rx
}
