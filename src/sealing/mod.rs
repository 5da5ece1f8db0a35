//! Sealing recordings at rest: the task that seals final recordings in place (the format is
//! [`crate::encryption`]'s), and the table of which key sealed what.
//!
//! Seals final recordings in place, and with `ari-recorder reencrypt` seals them again with the
//! newest key. A recording's files (its audio and each party's own recording) are sealed once
//! the library has hashed their plaintext; the library row keeps describing the plaintext and
//! learns the new size on disk before the seal is recorded, which is what lets the archive
//! upload it (an encrypted deployment uploads only sealed files).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

pub mod seals;
use crate::clock::now_ms;
use crate::db::{Database, DbError};
use crate::encryption::{is_sealed_file, Keyring};
use crate::library::{file_inside as inside, index};

/// Rounds between full looks consider recordings that started this recently.
const RECENT_MS: i64 = 2 * 86_400_000;
/// A full look (every final recording not sealed yet) at least this often.
const FULL_LOOK: Duration = Duration::from_secs(600);

pub struct Sealer {
    db: Database,
    root: PathBuf,
    /// This instance's node: it seals the files of its own recordings folder.
    node: String,
    keys: Arc<Keyring>,
    wake: Arc<Notify>,
    /// Told when a recording was sealed (the archive may upload it now).
    sealed: Option<Arc<Notify>>,
}

/// What a round or `reencrypt` did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SealReport {
    pub sealed: u64,
    pub failed: u64,
    /// Files of recordings whose local copy is gone (in the archive's bucket only).
    pub not_on_disk: u64,
}

impl Sealer {
    pub fn new(
        db: Database,
        root: PathBuf,
        node: &str,
        keys: Arc<Keyring>,
        wake: Arc<Notify>,
    ) -> Sealer {
        Sealer {
            db,
            root,
            node: node.to_string(),
            keys,
            wake,
            sealed: None,
        }
    }

    /// `notify` is told each time recordings were sealed.
    pub fn with_sealed_notify(mut self, notify: Option<Arc<Notify>>) -> Sealer {
        self.sealed = notify;
        self
    }

    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        // Transcripts and timelines are written sealed with the current key: only a start
        // (encryption turned on, a key rotated) leaves any in clear or under an older key, so
        // they are looked for once, here, not at every full look (a pass over the table).
        match self.seal_transcripts().await {
            Ok(report) if report.sealed > 0 || report.failed > 0 => tracing::info!(
                sealed = report.sealed,
                failed = report.failed,
                "transcripts and talk timelines sealed with the current key"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "transcripts not sealed; tried again at the next start")
            }
        }
        let mut last_full: Option<Instant> = None;
        loop {
            let full = last_full.is_none_or(|at| at.elapsed() >= FULL_LOOK);
            if full {
                last_full = Some(Instant::now());
            }
            let since = (!full).then(|| now_ms() - RECENT_MS);
            if let Err(e) = self.round(since).await {
                tracing::warn!(error = %e, "sealing round failed; retried at the next");
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(FULL_LOOK) => {}
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// Seals every final recording not sealed yet (started since `since`, when given).
    pub async fn round(&self, since: Option<i64>) -> Result<SealReport, DbError> {
        let mut report = SealReport::default();
        let mut seen = std::collections::HashSet::new();
        loop {
            let batch = seals::unsealed(&self.db, &self.node, since, 64).await?;
            // A file that cannot be sealed stays in the list: look at each once a round.
            let batch: Vec<_> = batch.into_iter().filter(|r| seen.insert(r.id)).collect();
            if batch.is_empty() {
                break;
            }
            for recording in batch {
                match self.seal_one(&recording).await {
                    Ok(true) => report.sealed += 1,
                    Ok(false) => report.not_on_disk += 1,
                    Err(e) => {
                        report.failed += 1;
                        tracing::warn!(recording = recording.id, error = %e, "recording not sealed; retried at the next round");
                    }
                }
            }
        }
        if report.sealed > 0 {
            if let Some(notify) = &self.sealed {
                notify.notify_one();
            }
        }
        Ok(report)
    }

    /// Seals (again) every transcript and talk timeline stored in clear or sealed with an older
    /// key (their rows are written by any instance: whichever looks first seals them).
    pub async fn seal_transcripts(&self) -> Result<SealReport, DbError> {
        use crate::library::{insights, transcripts};
        let mut report = SealReport::default();
        for timelines in [false, true] {
            let mut after = 0;
            loop {
                let pass = if timelines {
                    insights::reseal(&self.db, &self.keys, after, 256).await?
                } else {
                    transcripts::reseal(&self.db, &self.keys, after, 256).await?
                };
                report.sealed += pass.sealed;
                report.failed += pass.failed;
                let Some(last) = pass.last else { break };
                after = last;
            }
        }
        Ok(report)
    }

    /// Each party's own file of dual-channel recording `name`, those on disk.
    fn party_files(&self, name: &str) -> Vec<PathBuf> {
        ["caller", "agent"]
            .iter()
            .filter_map(|role| {
                let rel = format!("{}/{name}-{role}.wav", crate::audio::PARTY_FOLDER);
                inside(&self.root, &rel)
            })
            .collect()
    }

    /// Seals one recording's files; false when its audio is not on disk.
    async fn seal_one(&self, recording: &seals::ToSeal) -> Result<bool, String> {
        let Some(path) = inside(&self.root, &recording.path) else {
            return Ok(false);
        };
        let keys = self.keys.clone();
        let parties = self.party_files(&recording.name);
        let sealed = tokio::task::spawn_blocking(move || -> std::io::Result<(u64, i64, String)> {
            let key_id = if is_sealed_file(&path)? {
                // Sealed before its seal was recorded (a crash in between), or copied in sealed.
                keys.key_of_file(&path)?.ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "sealed with a key this service does not hold",
                    )
                })?
            } else {
                keys.seal_file(&path)?;
                keys.current_id()
            };
            for party in &parties {
                if !is_sealed_file(party)? {
                    keys.seal_file(party)?;
                }
            }
            let size = std::fs::metadata(&path)?.len();
            Ok((size, index::file_mtime_ms(&path)?, key_id))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let (size, mtime, key_id) = sealed;
        index::note_rewritten(&self.db, recording.id, size, mtime)
            .await
            .map_err(|e| e.to_string())?;
        seals::record(&self.db, recording.id, &key_id, now_ms())
            .await
            .map_err(|e| e.to_string())?;
        Ok(true)
    }

    /// Seals again, with the current key, every recording on disk sealed with an older one;
    /// what `ari-recorder reencrypt` runs. Those held only in the archive's bucket are counted
    /// in `not_on_disk` and left to `reencrypt_archived`.
    pub async fn reencrypt_local(&self) -> Result<(SealReport, Vec<i64>), DbError> {
        let mut report = SealReport::default();
        let mut remote = Vec::new();
        let current = self.keys.current_id();
        let mut after = 0;
        loop {
            let batch =
                seals::sealed_with_other_keys(&self.db, &self.node, &current, after, 64).await?;
            let Some(last) = batch.last() else { break };
            after = last.id;
            for recording in batch {
                let Some(path) = inside(&self.root, &recording.path) else {
                    report.not_on_disk += 1;
                    remote.push(recording.id);
                    continue;
                };
                let keys = self.keys.clone();
                let parties = self.party_files(&recording.name);
                let done = tokio::task::spawn_blocking(move || -> std::io::Result<(u64, i64)> {
                    let size = keys.reseal_file(&path)?;
                    for party in &parties {
                        if is_sealed_file(party)? {
                            keys.reseal_file(party)?;
                        }
                    }
                    Ok((size, index::file_mtime_ms(&path)?))
                })
                .await;
                match done {
                    Ok(Ok((size, mtime))) => {
                        index::note_rewritten(&self.db, recording.id, size, mtime).await?;
                        seals::record(&self.db, recording.id, &current, now_ms()).await?;
                        report.sealed += 1;
                    }
                    Ok(Err(e)) => {
                        report.failed += 1;
                        tracing::warn!(recording = recording.id, error = %e, "recording not sealed again");
                    }
                    Err(e) => {
                        report.failed += 1;
                        tracing::warn!(recording = recording.id, error = %e, "recording not sealed again");
                    }
                }
            }
        }
        Ok((report, remote))
    }
}
