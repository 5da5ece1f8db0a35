//! Full scans and indexing paths: walk the folder, probe what changed, reconcile the rows.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::super::calls::{self, CallMeta};
use super::super::probe::{is_recording_file, probe_sealed, Probe, Status};
use super::names::{in_hidden_folder, is_sidecar, recording_name};
use super::rows::{gone_for_good, Before, Row, Seen, GROWING_ROWS, KNOWN_ROW};
use super::state::{ScanError, ScanReport};
use super::{mtime_ms, now_ms, Indexer, BATCH};
use crate::db::{DbError, HeldConnection};

pub(super) fn walk(root: &Path) -> Result<Vec<Seen>, String> {
    let canonical_root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
            let path = entry.path();
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                // Removed between the listing and now: simply not there.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("{}: {e}", path.display())),
            };
            let rel = match path.strip_prefix(root) {
                Ok(r) => r.to_string_lossy().replace('\\', "/"),
                Err(_) => continue,
            };
            if meta.file_type().is_symlink() {
                let target = path.canonicalize();
                let inside = target
                    .as_ref()
                    .is_ok_and(|t| t.starts_with(&canonical_root));
                let target_meta = target.as_ref().ok().and_then(|t| std::fs::metadata(t).ok());
                if target_meta.as_ref().is_some_and(|m| m.is_dir()) {
                    continue; // directory links are not walked
                }
                if is_recording_file(&path) {
                    let (size, mtime) = target_meta
                        .map(|m| (m.len(), mtime_ms(&m)))
                        .unwrap_or((0, mtime_ms(&meta)));
                    out.push(Seen {
                        rel,
                        size,
                        mtime_ms: mtime,
                        escapes: !inside,
                        before: Before::Unknown,
                    });
                }
                continue;
            }
            if meta.is_dir() {
                if !in_hidden_folder(&rel) {
                    stack.push(path);
                }
            } else if meta.is_file() && (is_recording_file(&path) || is_sidecar(&path)) {
                out.push(Seen {
                    rel,
                    size: meta.len(),
                    mtime_ms: mtime_ms(&meta),
                    escapes: false,
                    before: Before::Unknown,
                });
            }
        }
    }
    Ok(out)
}

/// What the disk says of a path the watcher named.
enum OnDisk {
    /// A transcript sidecar (`<name>.vtt`), modified then.
    Sidecar {
        mtime: i64,
    },
    /// A recording file (or a link to one: `escapes` when it leads outside the folder).
    File {
        size: u64,
        mtime: i64,
        escapes: bool,
    },
    /// Not a file: a folder, a device.
    Other,
    Gone,
    Unreadable(std::io::Error),
}

/// Looks at each path (a folder is walked: its first files can be written before its watch is
/// in place), keeping the recordings and sidecars of the folder `root`, by path in it. Blocking:
/// run off the async threads.
fn look_at(root: &Path, paths: Vec<PathBuf>) -> Vec<(String, OnDisk)> {
    let mut expanded = Vec::new();
    for path in paths {
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            match walk(&path) {
                Ok(inside) => expanded.extend(inside.into_iter().map(|s| path.join(s.rel))),
                Err(reason) => {
                    tracing::warn!(reason = %reason, "cannot list a new folder; the next rescan retries")
                }
            }
        } else {
            expanded.push(path);
        }
    }
    let canonical_root = root.canonicalize().unwrap_or_default();
    let mut out = Vec::new();
    for path in expanded {
        let Ok(rel) = path.strip_prefix(root) else {
            continue;
        };
        let rel = rel.to_string_lossy().replace('\\', "/");
        if is_sidecar(&path) && !in_hidden_folder(&rel) {
            let mtime = std::fs::metadata(&path).map(|m| mtime_ms(&m)).unwrap_or(0);
            out.push((rel, OnDisk::Sidecar { mtime }));
            continue;
        }
        if !is_recording_file(&path) || in_hidden_folder(&rel) {
            continue;
        }
        let on_disk = match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let inside = path
                    .canonicalize()
                    .is_ok_and(|t| t.starts_with(&canonical_root));
                let target = std::fs::metadata(&path).ok();
                let (size, mtime) = target
                    .map(|m| (m.len(), mtime_ms(&m)))
                    .unwrap_or((0, mtime_ms(&meta)));
                OnDisk::File {
                    size,
                    mtime,
                    escapes: !inside,
                }
            }
            Ok(meta) if meta.is_file() => OnDisk::File {
                size: meta.len(),
                mtime: mtime_ms(&meta),
                escapes: false,
            },
            Ok(_) => OnDisk::Other,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => OnDisk::Gone,
            Err(e) => OnDisk::Unreadable(e),
        };
        out.push((rel, on_disk));
    }
    out
}

impl Indexer {
    /// Reconciles the table with the folder. A walk that fails changes no row: the error is
    /// kept for `/readyz` and `/metrics` and returned.
    pub async fn full_scan(&self) -> Result<ScanReport, ScanError> {
        self.state.running.store(true, Ordering::Relaxed);
        self.state.files_probed.store(0, Ordering::Relaxed);
        let result = self.full_scan_inner().await;
        self.state.running.store(false, Ordering::Relaxed);
        match &result {
            Ok(_) => {
                self.state.scans_completed.fetch_add(1, Ordering::Relaxed);
                self.state
                    .last_scan_ms
                    .store(now_ms() as u64, Ordering::Relaxed);
            }
            Err(ScanError::Walk(reason)) => {
                self.state
                    .walk_failures_total
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(reason = %reason, "walking the recordings folder failed; no row changed");
            }
            Err(_) => {}
        }
        result
    }

    pub(super) async fn full_scan_inner(&self) -> Result<ScanReport, ScanError> {
        let root = self.root.clone();
        let walked = tokio::task::spawn_blocking(move || walk(&root))
            .await
            .map_err(|e| ScanError::Walk(format!("the walk stopped: {e}")))?;
        let seen = match walked {
            Ok(seen) => {
                self.state.set_walk_error(None);
                seen
            }
            Err(reason) => {
                self.state.set_walk_error(Some(reason.clone()));
                return Err(ScanError::Walk(reason));
            }
        };
        let (sidecars, seen): (Vec<Seen>, Vec<Seen>) = seen
            .into_iter()
            .partition(|s| is_sidecar(Path::new(&s.rel)));
        self.state
            .files_found
            .store(seen.len() as u64, Ordering::Relaxed);
        let known: Vec<(String, i64, i64, String)> = sqlx::query_as(
            "SELECT path, size_bytes, mtime_ms, status FROM recordings WHERE node_id = $1",
        )
        .bind(&self.node)
        .fetch_all(&self.db.pool)
        .await?;
        let known: HashMap<String, (i64, i64, String)> = known
            .into_iter()
            .map(|(p, s, m, st)| (p, (s, m, st)))
            .collect();
        let mut report = ScanReport {
            found: seen.len() as u64,
            ..ScanReport::default()
        };
        let on_disk: HashSet<&str> = seen.iter().map(|s| s.rel.as_str()).collect();

        // Deleted or purged rows whose file came back or was never removed: finish the removal.
        for s in &seen {
            if known.get(&s.rel).is_some_and(|k| gone_for_good(&k.2)) {
                let _ = std::fs::remove_file(self.root.join(&s.rel));
            }
        }
        let mut to_probe: Vec<Seen> = seen
            .iter()
            .filter(|s| match known.get(&s.rel) {
                Some((_, _, status)) if gone_for_good(status) => false,
                // Unchanged and final: nothing to do.
                Some((size, mtime, status)) => {
                    !(*size == s.size as i64
                        && *mtime == s.mtime_ms
                        && !matches!(status.as_str(), "recording" | "missing" | "quarantined"))
                }
                None => true,
            })
            .map(|s| Seen {
                before: if known.contains_key(&s.rel) {
                    Before::Unknown
                } else {
                    Before::Nothing
                },
                ..s.clone()
            })
            .collect();
        report.unchanged = report.found - to_probe.len() as u64;
        let mut conn = self.db.pool.acquire().await?;
        let calls = calls::meta_all(&mut *conn).await?;
        while !to_probe.is_empty() {
            let batch: Vec<Seen> = to_probe.drain(..to_probe.len().min(BATCH)).collect();
            let rows = self.probe_batch(batch, &calls).await;
            report.probed += rows.len() as u64;
            self.state
                .files_probed
                .fetch_add(rows.len() as u64, Ordering::Relaxed);
            self.write_rows(&mut conn, rows).await?;
        }
        drop(conn);
        let mut vanished: Vec<String> = known
            .iter()
            .filter(|(path, (_, _, status))| {
                !on_disk.contains(path.as_str())
                    && !matches!(
                        status.as_str(),
                        "deleted" | "purged" | "missing" | "not_recorded"
                    )
            })
            .map(|(p, _)| p.clone())
            .collect();
        // Local copies removed once the archive held them are not lost.
        let remote = self.kept_elsewhere(&vanished).await?;
        vanished.retain(|p| !remote.contains(p));
        // A lead-in Asterisk discarded (nobody answered) is not a missing recording.
        let (cancelled, vanished): (Vec<String>, Vec<String>) =
            vanished.into_iter().partition(|path| {
                calls
                    .get(&recording_name(path))
                    .is_some_and(|c| c.state == "canceled")
            });
        self.forget(&cancelled).await?;
        report.missing = vanished.len() as u64;
        for chunk in vanished.chunks(BATCH) {
            self.count_write();
            let mut tx = self.db.pool.begin().await?;
            for path in chunk {
                sqlx::query("UPDATE recordings SET status = 'missing', reason = 'file no longer on disk', indexed_at_ms = $1 WHERE path = $2 AND node_id = $3")
                    .bind(now_ms())
                    .bind(path)
                    .bind(&self.node)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
        // Transcripts beside the audio, once the recordings they belong to are rows.
        for sidecar in &sidecars {
            self.import_sidecar(&sidecar.rel, sidecar.mtime_ms).await?;
        }
        Ok(report)
    }

    /// A `<name>.vtt` beside recording `<name>`: its transcript, read only when it changed.
    /// A file that is not WebVTT is logged with the reason and left as it is.
    pub(super) async fn import_sidecar(&self, rel: &str, mtime: i64) -> Result<(), DbError> {
        let path = self.root.join(rel);
        let reads = Arc::clone(&self.state);
        let read = move || {
            reads.file_reads_total.fetch_add(1, Ordering::Relaxed);
            let meta = std::fs::metadata(&path)?;
            if meta.len() > 2 << 20 {
                return Err(std::io::Error::other("larger than 2 MiB"));
            }
            std::fs::read_to_string(&path)
        };
        match crate::library::transcripts::import_sidecar(
            &self.db,
            self.keys.as_deref(),
            rel,
            mtime,
            read,
        )
        .await?
        {
            Ok(true) => tracing::info!(file = %rel, "transcript attached from its sidecar file"),
            Ok(false) => {}
            Err(reason) => {
                tracing::warn!(file = %rel, reason = %reason, "sidecar transcript not attached")
            }
        }
        Ok(())
    }

    pub(super) async fn probe_batch(
        &self,
        batch: Vec<Seen>,
        calls: &HashMap<String, CallMeta>,
    ) -> Vec<(Row, Option<CallMeta>)> {
        let root = self.root.clone();
        let settle_ms = self.settle.as_millis() as i64;
        let finished: HashSet<String> = batch
            .iter()
            .map(|s| recording_name(&s.rel))
            .filter(|n| {
                calls
                    .get(n)
                    .is_some_and(|c| c.state == "done" || c.state == "failed")
            })
            .collect();
        let state = Arc::clone(&self.state);
        let keys = self.keys.clone();
        let probed = tokio::task::spawn_blocking(move || {
            let reads = &state.file_reads_total;
            let now = now_ms();
            batch
                .into_iter()
                .filter_map(|seen| {
                    let is_final = finished.contains(&recording_name(&seen.rel))
                        || now - seen.mtime_ms >= settle_ms;
                    let probe = if seen.escapes {
                        let format = Path::new(&seen.rel)
                            .extension()
                            .and_then(|e| e.to_str())
                            .unwrap_or("")
                            .to_string();
                        Probe::problem(
                            &format,
                            0,
                            Status::Unreadable,
                            "symlink points outside the recordings folder: not followed",
                        )
                    } else {
                        reads.fetch_add(1, Ordering::Relaxed);
                        let path = root.join(&seen.rel);
                        let probe = probe_sealed(&path, is_final, keys.as_deref());
                        // Gone since it was seen (the archive removed its local copy, a delete):
                        // not unreadable. Its removal is handled as such (its own event, or the
                        // next scan), where a copy kept elsewhere is not missing.
                        if probe.status == Status::Unreadable
                            && matches!(std::fs::symlink_metadata(&path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
                        {
                            return None;
                        }
                        probe
                    };
                    let status = match probe.status {
                        Status::Ready | Status::Empty if !is_final => "recording",
                        other => other.as_str(),
                    };
                    Some(Row {
                        seen,
                        probe,
                        status,
                    })
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        probed
            .into_iter()
            .map(|row| {
                let name = recording_name(&row.seen.rel);
                let meta = calls
                    .get(&name)
                    .cloned()
                    .or_else(|| self.fallback_meta(&name));
                (row, meta)
            })
            .collect()
    }

    /// Re-indexes the given files (from the watcher); vanished ones become `missing`. A file
    /// whose size and mtime match its final row is not read again. Returns the paths (relative)
    /// still being recorded.
    pub async fn index_paths(&self, paths: Vec<PathBuf>) -> Result<Vec<String>, DbError> {
        let mut conn = HeldConnection::new(&self.db);
        self.index_paths_with(&mut conn, paths, HashMap::new())
            .await
    }

    /// [`Indexer::index_paths`] with the call metadata of some of them already in hand (read
    /// when the call finished them): not read again.
    pub(super) async fn index_paths_with(
        &self,
        held: &mut HeldConnection,
        paths: Vec<PathBuf>,
        mut calls: HashMap<String, CallMeta>,
    ) -> Result<Vec<String>, DbError> {
        // What the disk says of each path, read on a blocking thread before any statement.
        let root = self.root.clone();
        let looked = tokio::task::spawn_blocking(move || look_at(&root, paths))
            .await
            .unwrap_or_default();
        // One connection for all the statements: each given back to the pool costs a check.
        let conn = held.get().await?;
        let mut seen = Vec::new();
        // Read once the recordings of this batch are rows: a file and its transcript written
        // together arrive in one batch, the transcript maybe first.
        let mut sidecars = Vec::new();
        for (rel, on_disk) in looked {
            let on_disk = match on_disk {
                OnDisk::Sidecar { mtime } => {
                    sidecars.push((rel, mtime));
                    continue;
                }
                other => other,
            };
            let known: Option<(String, i64, i64, Option<String>)> = sqlx::query_as(KNOWN_ROW)
                .bind(&rel)
                .bind(&self.node)
                .fetch_optional(&mut *conn)
                .await?;
            if known.as_ref().is_some_and(|k| gone_for_good(&k.0)) {
                continue;
            }
            let before = match &known {
                Some((_, _, _, caller)) => Before::Caller(caller.clone()),
                None => Before::Nothing,
            };
            let unchanged = |size: u64, mtime: i64| {
                known.as_ref().is_some_and(|(status, s, m, _)| {
                    *s == size as i64
                        && *m == mtime
                        && !matches!(status.as_str(), "recording" | "missing" | "quarantined")
                })
            };
            match on_disk {
                OnDisk::Sidecar { .. } | OnDisk::Other => {}
                OnDisk::File {
                    size,
                    mtime,
                    escapes,
                } => {
                    if !unchanged(size, mtime) {
                        seen.push(Seen {
                            rel,
                            size,
                            mtime_ms: mtime,
                            escapes,
                            before,
                        });
                    }
                }
                OnDisk::Gone => {
                    let listed = known.as_ref().is_some_and(|(status, _, _, _)| {
                        !matches!(status.as_str(), "missing" | "not_recorded")
                    }) && !self
                        .kept_elsewhere(std::slice::from_ref(&rel))
                        .await?
                        .contains(&rel);
                    let call_state = calls::meta(&mut *conn, &recording_name(&rel))
                        .await?
                        .map(|m| m.state);
                    match call_state.as_deref() {
                        // A lead-in discarded because nobody answered: it never was a recording.
                        Some("canceled") if known.is_some() => {
                            self.forget(std::slice::from_ref(&rel)).await?;
                            continue;
                        }
                        // Still recording says the call: its end (or cancel) will be told.
                        Some("recording") => continue,
                        _ => {}
                    }
                    if listed {
                        self.count_write();
                        sqlx::query("UPDATE recordings SET status = 'missing', reason = 'file no longer on disk', indexed_at_ms = $1 WHERE path = $2 AND node_id = $3 AND status NOT IN ('deleted', 'purged')")
                            .bind(now_ms())
                            .bind(&rel)
                            .bind(&self.node)
                            .execute(&mut *conn)
                            .await?;
                    }
                }
                OnDisk::Unreadable(e) => {
                    tracing::warn!(path = %rel, error = %e, "cannot read a recording's metadata; left as it was");
                }
            }
        }
        if seen.is_empty() {
            for (rel, mtime) in sidecars {
                self.import_sidecar(&rel, mtime).await?;
            }
            return Ok(Vec::new());
        }
        for s in &seen {
            let name = recording_name(&s.rel);
            if calls.contains_key(&name) {
                continue;
            }
            if let Some(meta) = calls::meta(&mut *conn, &name).await? {
                calls.insert(name, meta);
            }
        }
        let rows = self.probe_batch(seen, &calls).await;
        let growing = self.write_rows(conn, rows).await?;
        for (rel, mtime) in sidecars {
            self.import_sidecar(&rel, mtime).await?;
        }
        Ok(growing)
    }

    /// Removes the rows of recordings that never were (a cancelled lead-in).
    pub(super) async fn forget(&self, paths: &[String]) -> Result<(), DbError> {
        if paths.is_empty() {
            return Ok(());
        }
        self.count_write();
        let mut tx = self.db.pool.begin().await?;
        for path in paths {
            sqlx::query("DELETE FROM recording_words WHERE recording_id IN (SELECT id FROM recordings WHERE path = $1 AND node_id = $2)")
                .bind(path)
                .bind(&self.node)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM recordings WHERE path = $1 AND node_id = $2")
                .bind(path)
                .bind(&self.node)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Paths of the rows still listed as being recorded.
    pub(super) async fn growing_paths(&self) -> Result<Vec<String>, DbError> {
        // By status alone, the node filtered here: SQLite without statistics would otherwise
        // walk every row of this node through the (node_id, path) index, once a second.
        let open: Vec<(String, String)> = sqlx::query_as(GROWING_ROWS)
            .fetch_all(&self.db.pool)
            .await?;
        Ok(open
            .into_iter()
            .filter(|(_, node)| *node == self.node)
            .map(|(p, _)| p)
            .collect())
    }
}
