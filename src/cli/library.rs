//! The library's maintenance: `index`, `purge`, `reencrypt`, `audit verify`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;

use ari_recorder::config::Config;

use super::open_database;

#[derive(Subcommand)]
pub(crate) enum AuditCommand {
    /// Walk the hash chain; exit non-zero naming the first broken event.
    Verify {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

pub(crate) async fn purge(config: Option<PathBuf>, dry_run: bool) -> Result<(), String> {
    let (config, db) = open_database(config.as_deref()).await?;
    let report = ari_recorder::retention::purge(
        &db,
        &config.recordings_dir,
        &config.node(),
        ari_recorder::clock::now_ms(),
        dry_run,
    )
    .await
    .map_err(|e| e.to_string())?;
    // The service's cache of assembled calls holds the purged audio too.
    let calls = config.cache_dir.join("calls");
    if !report.removed.is_empty() && calls.is_dir() {
        let cache = ari_recorder::playback::call_audio::CallAudio::new(calls, u64::MAX, 1)
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

pub(crate) async fn reencrypt(config: Option<PathBuf>) -> Result<(), String> {
    let (config, db) = open_database(config.as_deref()).await?;
    let keys = config
        .encryption_keyring()
        .map_err(|e| e.to_string())?
        .map(std::sync::Arc::new)
        .ok_or("no ENCRYPTION_KEYS (or ENCRYPTION_KEYS_FILE) configured")?;
    let node = config.node();
    let sealer = ari_recorder::sealing::Sealer::new(
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
    let words = sealer.seal_transcripts().await.map_err(|e| e.to_string())?;
    println!(
        "database: {} transcripts and talk timelines sealed with {}; {} failed (see the log)",
        words.sealed,
        keys.current_id(),
        words.failed
    );
    let Some(settings) =
        ari_recorder::archive::ArchiveSettings::from_config(&config).map_err(|e| e.to_string())?
    else {
        if first.failed + again.failed + words.failed > 0 {
            return Err(
                "some recordings or transcripts were not sealed again; run reencrypt again".into(),
            );
        }
        return Ok(());
    };
    let archive = ari_recorder::archive::Archive::connect(settings, config.tls_ca_file.as_deref())?;
    let worker = ari_recorder::archive::worker::Worker::new(
        db.clone(),
        archive,
        config.recordings_dir.clone(),
        &node,
    );
    let now = ari_recorder::clock::now_ms();
    let requeued = ari_recorder::archive::queue::requeue_resealed(&db, now)
        .await
        .map_err(|e| e.to_string())?;
    // Whole calls kept for download links are copies: retired (and deleted by the round) rather
    // than sealed again; the next link assembles the call under the new key.
    let calls_retired = ari_recorder::archive::calls::retire_sealed(&db, now)
        .await
        .map_err(|e| e.to_string())?;
    let round = worker.round().await.map_err(|e| e.to_string())?;
    if calls_retired > 0 {
        println!(
            "archive: {calls_retired} whole-call copies retired, {} deleted (made again on the next link)",
            round.call_copies_removed
        );
    }
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
    if failed > 0 || first.failed + again.failed + words.failed > 0 {
        return Err("some recordings were not sealed again; run reencrypt again".into());
    }
    Ok(())
}

pub(crate) async fn audit(command: AuditCommand) -> Result<(), String> {
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
pub(crate) async fn index(config: Option<PathBuf>) -> Result<(), String> {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    let config = Config::from_process(config.as_deref()).map_err(|e| e.to_string())?;
    let db = ari_recorder::db::Database::open(&config.database_connect_url())
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
    .with_copies_elsewhere(std::sync::Arc::new(
        ari_recorder::archive::queue::KeptInBucket,
    ))
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
