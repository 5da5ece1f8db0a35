//! The archive's work, one job at a time per instance: queue final recordings, upload and
//! verify them, remove the objects of deleted or purged ones, and remove local copies past
//! `local_retention_days`. Each failure is retried after a capped, fully jittered backoff,
//! forever; nothing local is removed before its upload was read back whole.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, Attributes, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, WriteMultipart,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::watch;

use super::queue::{self, Job};
use super::{backoff, Archive, ArchiveError};
use crate::clock::now_ms;
use crate::db::Database;

const DAY_MS: i64 = 86_400_000;
/// Files up to this size go up in one request; larger ones as a multipart upload of such parts.
const MULTIPART_CHUNK: usize = 8 << 20;
/// Parts of one multipart upload in flight at once.
const MULTIPART_CONCURRENCY: usize = 2;
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
}

/// The manifest of a recording stored as parts.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Manifest {
    size: u64,
    sha256: String,
    part_bytes: u64,
    parts: Vec<ManifestPart>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ManifestPart {
    key: String,
    size: u64,
    sha256: String,
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
        Ok(round)
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
            .store_file(&key, &file, size, attributes_for(rel), sealed)
            .await?;
        // In clear, what went up must be what the library hashed (a sealed file holds the same
        // plaintext under another hash).
        if !sealed && sent != job.sha256 {
            self.delete_keys(&key, object.parts).await?;
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
            self.delete_keys(&key, object.parts).await?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Uploads `file` (`size` bytes) as `key`, as parts plus a manifest past `split_bytes`,
    /// and reads every object back; what is stored and the SHA-256 of what went up.
    async fn store_file(
        &self,
        key: &str,
        file: &Path,
        size: u64,
        attributes: Attributes,
        sealed: bool,
    ) -> Result<(queue::StoredObject, String), ArchiveError> {
        let split = self.archive.settings.split_bytes;
        let (parts, part_bytes) = if split > 0 && size > split {
            (size.div_ceil(split), split)
        } else {
            (0, 0)
        };
        let mut sent = Sha256::new();
        let mut manifest_parts = Vec::new();
        if parts == 0 {
            self.put_region(key, file, 0, size, attributes, &mut sent)
                .await?;
        } else {
            for part in 0..parts {
                let start = part * part_bytes;
                let len = part_bytes.min(size - start);
                let part_key = Archive::part_key(key, part);
                let part_sha = self
                    .put_region(&part_key, file, start, len, Attributes::new(), &mut sent)
                    .await?;
                manifest_parts.push(ManifestPart {
                    key: part_key,
                    size: len,
                    sha256: part_sha,
                });
            }
        }
        let sent = hex::encode(sent.finalize());
        let read_back = self.verify(key, parts, &manifest_parts, size).await?;
        if read_back != sent {
            return Err(ArchiveError::Mismatch(format!(
                "SHA-256 read back {read_back}, sent {sent}"
            )));
        }
        if parts > 0 {
            let manifest = Manifest {
                size,
                sha256: sent.clone(),
                part_bytes,
                parts: manifest_parts,
            };
            let body = serde_json::to_vec_pretty(&manifest)
                .map_err(|e| ArchiveError::Mismatch(e.to_string()))?;
            self.archive
                .store()
                .put(
                    &ObjectPath::from(Archive::manifest_key(key)),
                    PutPayload::from(body),
                )
                .await?;
        }
        let object = queue::StoredObject {
            key: key.to_string(),
            parts,
            part_bytes,
            size,
            sealed,
        };
        Ok((object, sent))
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
                .store_file(
                    &stored.object_key,
                    &sealed_file,
                    size,
                    attributes_for(&stored.object_key),
                    true,
                )
                .await?;
            // Parts of the old form the new one does not have.
            let old = object_keys(&stored.object_key, u64::try_from(stored.parts).unwrap_or(0));
            let new = object_keys(&object.key, object.parts);
            self.delete_objects(old.into_iter().filter(|k| !new.contains(k)))
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

    /// Sends bytes `start..start + len` of `file` as object `key`, feeding them to `whole` as
    /// well; the SHA-256 of what was sent.
    async fn put_region(
        &self,
        key: &str,
        file: &Path,
        start: u64,
        len: u64,
        attributes: Attributes,
        whole: &mut Sha256,
    ) -> Result<String, ArchiveError> {
        let mut source = tokio::fs::File::open(file).await?;
        source.seek(std::io::SeekFrom::Start(start)).await?;
        let mut source = source.take(len);
        let path = ObjectPath::from(key);
        let store = self.archive.store();
        let mut hash = Sha256::new();
        let mut sent = 0u64;
        if len <= MULTIPART_CHUNK as u64 {
            let mut body = Vec::with_capacity(len as usize);
            source.read_to_end(&mut body).await?;
            hash.update(&body);
            whole.update(&body);
            sent = body.len() as u64;
            check_len(sent, len, key)?;
            store
                .put_opts(
                    &path,
                    PutPayload::from(body),
                    PutOptions {
                        attributes,
                        ..PutOptions::default()
                    },
                )
                .await?;
        } else {
            let upload = store
                .put_multipart_opts(
                    &path,
                    PutMultipartOptions {
                        attributes,
                        ..PutMultipartOptions::default()
                    },
                )
                .await?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, MULTIPART_CHUNK);
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = match source.read(&mut buf).await {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = writer.abort().await;
                        return Err(e.into());
                    }
                };
                if n == 0 {
                    break;
                }
                if let Err(e) = writer.wait_for_capacity(MULTIPART_CONCURRENCY).await {
                    let _ = writer.abort().await;
                    return Err(e.into());
                }
                hash.update(&buf[..n]);
                whole.update(&buf[..n]);
                writer.write(&buf[..n]);
                sent += n as u64;
            }
            if let Err(e) = check_len(sent, len, key) {
                let _ = writer.abort().await;
                return Err(e);
            }
            writer.finish().await?;
        }
        Ok(hex::encode(hash.finalize()))
    }

    /// Reads every object back: sizes as sent, and the SHA-256 of the whole as read.
    async fn verify(
        &self,
        key: &str,
        parts: u64,
        manifest: &[ManifestPart],
        size: u64,
    ) -> Result<String, ArchiveError> {
        let store = self.archive.store();
        let objects: Vec<(String, u64, Option<&str>)> = if parts == 0 {
            vec![(key.to_string(), size, None)]
        } else {
            manifest
                .iter()
                .map(|p| (p.key.clone(), p.size, Some(p.sha256.as_str())))
                .collect()
        };
        let mut whole = Sha256::new();
        for (object, expected, part_sha) in objects {
            let path = ObjectPath::from(object.as_str());
            let meta = store.head(&path).await?;
            if meta.size != expected {
                return Err(ArchiveError::Mismatch(format!(
                    "{object}: the bucket holds {} bytes, {expected} were sent",
                    meta.size
                )));
            }
            let mut stream = store.get(&path).await?.into_stream();
            let mut part = Sha256::new();
            let mut read = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                read += chunk.len() as u64;
                part.update(&chunk);
                whole.update(&chunk);
            }
            if read != expected {
                return Err(ArchiveError::Mismatch(format!(
                    "{object}: read back {read} bytes of {expected}"
                )));
            }
            if let Some(sha) = part_sha {
                let got = hex::encode(part.finalize());
                if got != sha {
                    return Err(ArchiveError::Mismatch(format!(
                        "{object}: SHA-256 read back {got}, sent {sha}"
                    )));
                }
            }
        }
        Ok(hex::encode(whole.finalize()))
    }

    async fn remove_objects(&self, job: &Job) -> Result<(), ArchiveError> {
        match &job.object_key {
            Some(key) => {
                let parts = u64::try_from(job.parts).unwrap_or(0);
                self.delete_keys(key, parts).await?;
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

    async fn delete_keys(&self, key: &str, parts: u64) -> Result<(), ArchiveError> {
        self.delete_objects(object_keys(key, parts)).await
    }

    /// Deletes each object; one already gone counts as deleted.
    async fn delete_objects(
        &self,
        keys: impl IntoIterator<Item = String>,
    ) -> Result<(), ArchiveError> {
        for key in keys {
            match self.archive.store().delete(&ObjectPath::from(key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
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

/// Every object a recording stored as `key` (in `parts`, 0: whole) is made of.
fn object_keys(key: &str, parts: u64) -> Vec<String> {
    if parts == 0 {
        return vec![key.to_string()];
    }
    let mut keys: Vec<String> = (0..parts).map(|p| Archive::part_key(key, p)).collect();
    keys.push(Archive::manifest_key(key));
    keys
}

fn check_len(sent: u64, len: u64, key: &str) -> Result<(), ArchiveError> {
    if sent == len {
        Ok(())
    } else {
        Err(ArchiveError::Mismatch(format!(
            "{key}: the file ended after {sent} of {len} bytes"
        )))
    }
}

/// What a browser fetching the object itself (a presigned link) should be told.
fn attributes_for(rel: &str) -> Attributes {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let content_type = match name.rsplit('.').next() {
        Some("wav") => "audio/wav",
        Some("ulaw") | Some("ul") => "audio/basic",
        _ => "application/octet-stream",
    };
    let safe: String = name
        .chars()
        .map(|c| if c == '"' || c.is_control() { '_' } else { c })
        .collect();
    let mut attributes = Attributes::new();
    attributes.insert(Attribute::ContentType, content_type.into());
    attributes.insert(
        Attribute::ContentDisposition,
        format!("attachment; filename=\"{safe}\"").into(),
    );
    attributes
}
