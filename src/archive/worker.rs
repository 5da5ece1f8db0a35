//! The archive's work, one job at a time per instance: queue final recordings, upload and
//! verify them, remove the objects of deleted or purged ones, and remove local copies past
//! `local_retention_days`. Each failure is retried after a capped, fully jittered backoff,
//! forever; nothing local is removed before its upload was read back whole.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use tokio::sync::watch;

use super::objects::{attributes_for, object_keys};
use super::queue::{self, Job};
use super::{backoff, Archive, ArchiveError};
use crate::clock::now_ms;
use crate::db::Database;

const DAY_MS: i64 = 86_400_000;
/// Rounds between full looks queue recordings that started this recently (a call's file is
/// final when it ends, hours at most after its start).
const RECENT_MS: i64 = 2 * DAY_MS;
/// The longest sleep of an idle worker: a safety net for anything no one told it about.
const IDLE_ROUND: Duration = Duration::from_secs(600);

pub struct Worker {
    db: Database,
    archive: Arc<Archive>,
    root: PathBuf,
    /// This instance's node: it uploads the files of its own recordings folder.
    node: String,
    /// When the last look over every row was (recordings queued or gone that no one told the
    /// worker about); rounds in between look only at recent recordings.
    last_full_look: std::sync::Mutex<Option<std::time::Instant>>,
}

/// What one round did, for tests and the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    pub queued: u64,
    pub stored: u64,
    pub failed: u64,
    pub removed: u64,
    pub local_copies_removed: u64,
    /// Objects of whole-call copies deleted.
    pub call_copies_removed: u64,
}

impl Worker {
    pub fn new(db: Database, archive: Arc<Archive>, root: PathBuf, node: &str) -> Worker {
        Worker {
            db,
            archive,
            root,
            node: node.to_string(),
            last_full_look: std::sync::Mutex::new(None),
        }
    }

    /// Rounds until shutdown: at once when told a recording is final, else when the next
    /// retry is due.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        match queue::release_leases(&self.db, &self.node, now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                uploads = n,
                "uploads this node's previous process had taken are due again"
            ),
            Err(e) => tracing::warn!(error = %e, "leases of this node's uploads not released"),
        }
        loop {
            let pause = match self.round().await {
                Ok(_) => self.until_next_due().await,
                Err(e) => {
                    tracing::warn!(error = %e, "archive round failed; retrying");
                    Duration::from_secs(5)
                }
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = self.archive.wake.notified() => {}
                _ = tokio::time::sleep(pause) => {}
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    async fn until_next_due(&self) -> Duration {
        let now = now_ms();
        let mut next = IDLE_ROUND;
        if let Ok(Some(at)) = queue::next_due(&self.db).await {
            next = next.min(Duration::from_millis(u64::try_from(at - now).unwrap_or(0)));
        }
        if let Ok(Some(at)) = super::calls::next_removal(&self.db).await {
            next = next.min(Duration::from_millis(u64::try_from(at - now).unwrap_or(0)));
        }
        if let Ok(Some(at)) = queue::next_local_removal(&self.db).await {
            let at = at + i64::from(self.archive.settings.local_retention_days) * DAY_MS;
            next = next.min(Duration::from_millis(u64::try_from(at - now).unwrap_or(0)));
        }
        next.max(Duration::from_millis(50))
    }

    /// Everything due now.
    pub async fn round(&self) -> Result<Round, ArchiveError> {
        let full = {
            let mut last = self
                .last_full_look
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let due = last.is_none_or(|at| at.elapsed() >= IDLE_ROUND);
            if due {
                *last = Some(std::time::Instant::now());
            }
            due
        };
        let now = now_ms();
        let sealed_only = self.archive.settings.sealed_only;
        let mut round = Round {
            queued: if full {
                queue::sweep_gone(&self.db, now).await?;
                queue::requeue_resealed(&self.db, now).await?;
                queue::enqueue_ready(&self.db, &self.node, now, None, sealed_only).await?
            } else {
                queue::enqueue_ready(
                    &self.db,
                    &self.node,
                    now,
                    Some(now - RECENT_MS),
                    sealed_only,
                )
                .await?
            },
            ..Round::default()
        };
        while let Some(job) = queue::claim_next(&self.db, &self.node, now_ms()).await? {
            let result = if job.state == queue::REMOVING {
                self.remove_objects(&job).await.map(|()| false)
            } else {
                self.upload(&job).await
            };
            match result {
                Ok(stored) => {
                    if job.state == queue::REMOVING {
                        queue::forget(&self.db, job.recording_id).await?;
                        round.removed += 1;
                    } else if stored {
                        round.stored += 1;
                    }
                }
                Err(e) => {
                    round.failed += 1;
                    self.archive.stats.failures.fetch_add(1, Ordering::Relaxed);
                    let attempts = u32::try_from(job.attempts).unwrap_or(u32::MAX);
                    let wait = backoff(attempts, self.archive.settings.retry_cap);
                    let next = now_ms() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
                    tracing::warn!(recording = job.recording_id, attempt = attempts + 1, error = %e, retry_in_ms = wait.as_millis() as u64, "archive job failed");
                    queue::mark_failed(&self.db, &job, next, &e.to_string()).await?;
                }
            }
        }
        round.local_copies_removed = self.remove_local_copies().await?;
        round.call_copies_removed = self.remove_call_copies().await?;
        Ok(round)
    }

    /// Deletes the objects of whole-call copies retired now or before (a segment changed or
    /// went, or a newer version replaced them). Deleting is idempotent, so two instances
    /// meeting on one object do no harm.
    async fn remove_call_copies(&self) -> Result<u64, ArchiveError> {
        let now = now_ms();
        super::calls::retire_stale(&self.db, now).await?;
        let mut removed = 0;
        for retired in super::calls::removals_due(&self.db, now, 100).await? {
            match self.archive.delete_keys(&retired.object_key, 0).await {
                Ok(()) => {
                    super::calls::forget(&self.db, &retired.object_key).await?;
                    self.archive
                        .stats
                        .objects_removed
                        .fetch_add(1, Ordering::Relaxed);
                    removed += 1;
                }
                Err(e) => {
                    let attempts = u32::try_from(retired.attempts).unwrap_or(u32::MAX);
                    let wait = backoff(attempts, self.archive.settings.retry_cap);
                    let next = now_ms() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "a whole call's copy was not deleted from the bucket");
                    super::calls::removal_failed(
                        &self.db,
                        &retired.object_key,
                        next,
                        &e.to_string(),
                    )
                    .await?;
                }
            }
        }
        Ok(removed)
    }

    /// Uploads, reads back and records one recording; false when there was nothing to store
    /// after all (the recording went meanwhile).
    async fn upload(&self, job: &Job) -> Result<bool, ArchiveError> {
        let (Some(rel), Some(tenant)) = (&job.path, &job.tenant) else {
            return Err(ArchiveError::Mismatch("the recording's row is gone".into()));
        };
        if job.current_status.as_deref() != Some("ready") {
            return Err(ArchiveError::Mismatch(format!(
                "the recording is {}, not ready",
                job.current_status.as_deref().unwrap_or("unknown")
            )));
        }
        let Some(current) = job.current_sha256.as_deref() else {
            return Err(ArchiveError::Mismatch("the recording is not hashed".into()));
        };
        if current != job.sha256 {
            // Re-indexed since it was queued: upload what the library says now.
            queue::rehash(&self.db, job.recording_id, current).await?;
            return Err(ArchiveError::Mismatch(
                "the file changed since it was queued".into(),
            ));
        }
        // The file, and whether it is sealed, looked at on a blocking thread.
        let (root, rel_owned) = (self.root.clone(), rel.to_string());
        let found = tokio::task::spawn_blocking(move || {
            crate::library::file_inside(&root, &rel_owned)
                .map(|file| crate::encryption::is_sealed_file(&file).map(|sealed| (file, sealed)))
                .transpose()
        })
        .await
        .map_err(std::io::Error::other)??;
        let (file, sealed) = found.ok_or_else(|| {
            ArchiveError::Mismatch("the file is gone or outside the recordings folder".into())
        })?;
        let size = u64::try_from(job.size_bytes).unwrap_or(0);
        if self.archive.settings.sealed_only && !sealed {
            return Err(ArchiveError::Mismatch(
                "encryption at rest is on and the file is not sealed yet".into(),
            ));
        }
        let key = self.archive.object_key(tenant, &self.node, rel);
        let started = std::time::Instant::now();
        let (object, sent) = self
            .archive
            .store_file(
                &key,
                &file,
                (size, self.archive.settings.split_bytes),
                attributes_for(rel),
                sealed,
            )
            .await?;
        // In clear, what went up must be what the library hashed (a sealed file holds the same
        // plaintext under another hash).
        if !sealed && sent != job.sha256 {
            self.archive.delete_keys(&key, object.parts).await?;
            return Err(ArchiveError::Mismatch(format!(
                "SHA-256 differs: library {}, sent {sent}",
                job.sha256
            )));
        }
        let stats = &self.archive.stats;
        stats.uploaded.fetch_add(1, Ordering::Relaxed);
        stats.uploaded_bytes.fetch_add(size, Ordering::Relaxed);
        tracing::debug!(
            recording = job.recording_id,
            bytes = size,
            parts = object.parts,
            sealed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "recording archived"
        );
        if !queue::mark_stored(&self.db, job.recording_id, &object, now_ms()).await? {
            // Deleted or purged while it went up: its objects go now.
            self.archive.delete_keys(&key, object.parts).await?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Seals recording `id`'s object again with the current key (or for the first time, when it
    /// went up in clear before encryption was turned on), for one held only in the bucket: read
    /// through the keys, sealed into a file in `scratch`, uploaded over the old object and
    /// verified. Its plaintext never touches the disk.
    pub async fn reseal_remote(
        &self,
        id: i64,
        keys: &Arc<crate::encryption::Keyring>,
        scratch: &Path,
    ) -> Result<(), ArchiveError> {
        let stored = queue::stored(&self.db, id)
            .await?
            .ok_or_else(|| ArchiveError::Mismatch("not stored in the archive".into()))?;
        let object = super::ObjectBytes {
            archive: self.archive.clone(),
            key: stored.object_key.clone(),
            len: u64::try_from(stored.size_bytes).unwrap_or(0),
            parts: u64::try_from(stored.parts).unwrap_or(0),
            part_bytes: u64::try_from(stored.part_bytes).unwrap_or(0),
        };
        std::fs::create_dir_all(scratch)?;
        let sealed_file = scratch.join(format!(".reseal-{id}-{:08x}", fastrand::u32(..)));
        let was_sealed = stored.sealed != 0;
        let sealing = {
            let keys = keys.clone();
            let sealed_file = sealed_file.clone();
            tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
                let reader = std::io::BufReader::with_capacity(
                    super::SEALED_READ_AHEAD,
                    super::ObjectReader { object, pos: 0 },
                );
                let mut out = std::fs::File::create(&sealed_file)?;
                if was_sealed {
                    keys.seal(&mut keys.open(reader)?, &mut out)?;
                } else {
                    keys.seal(&mut { reader }, &mut out)?;
                }
                out.sync_all()?;
                Ok(std::fs::metadata(&sealed_file)?.len())
            })
        };
        let result = async {
            let size = sealing.await.map_err(std::io::Error::other)??;
            let (object, _) = self
                .archive
                .store_file(
                    &stored.object_key,
                    &sealed_file,
                    (size, self.archive.settings.split_bytes),
                    attributes_for(&stored.object_key),
                    true,
                )
                .await?;
            // Parts of the old form the new one does not have.
            let old = object_keys(&stored.object_key, u64::try_from(stored.parts).unwrap_or(0));
            let new = object_keys(&object.key, object.parts);
            self.archive
                .delete_objects(old.into_iter().filter(|k| !new.contains(k)))
                .await?;
            let now = now_ms();
            queue::replaced(&self.db, id, &object, now).await?;
            crate::sealing::seals::record(&self.db, id, &keys.current_id(), now).await?;
            Ok(())
        }
        .await;
        let _ = std::fs::remove_file(&sealed_file);
        result
    }

    async fn remove_objects(&self, job: &Job) -> Result<(), ArchiveError> {
        match &job.object_key {
            Some(key) => {
                let parts = u64::try_from(job.parts).unwrap_or(0);
                self.archive.delete_keys(key, parts).await?;
                self.archive
                    .stats
                    .objects_removed
                    .fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            // Never stored: an interrupted upload left nothing a key names.
            None => Ok(()),
        }
    }

    /// Local copies stored longer than `local_retention_days` ago: checked still in the
    /// bucket, marked, then removed from disk.
    async fn remove_local_copies(&self) -> Result<u64, ArchiveError> {
        let days = i64::from(self.archive.settings.local_retention_days);
        let cutoff = now_ms() - days * DAY_MS;
        let mut removed = 0;
        for copy in queue::local_copies_due(&self.db, &self.node, cutoff, 100).await? {
            let first = if copy.parts > 0 {
                Archive::part_key(&copy.object_key, 0)
            } else {
                copy.object_key.clone()
            };
            match self.archive.store().head(&ObjectPath::from(first)).await {
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(recording = copy.recording_id, error = %e, "the bucket does not answer for an archived recording; its local copy stays");
                    continue;
                }
            }
            queue::mark_local_removed(&self.db, copy.recording_id, now_ms()).await?;
            let (root, path) = (self.root.clone(), copy.path.clone());
            if tokio::task::spawn_blocking(move || crate::library::remove_inside(&root, &path))
                .await
                .unwrap_or(false)
            {
                removed += 1;
                self.archive
                    .stats
                    .local_copies_removed
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(removed)
    }
}
