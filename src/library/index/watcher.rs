//! Keeping the table current: file events, recordings ARI finished, growing files settling.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify::Watcher;
use tokio::sync::{mpsc, watch};

use super::super::calls::CallMeta;
use super::names::recording_name;
use super::rows::RECORDING_BY_NAME;
use super::state::{Retry, ScanError, ScanState, INDEX_RETRY_FIRST, INDEX_RETRY_MAX};
use super::{mtime_ms, now_ms, Indexer, EVENT_QUEUE, GROWING_UPDATE};
use crate::db::{DbError, HeldConnection};

/// Whether a file event can mean new content or a file appearing or going. Opens, reads and
/// closes without writing (the indexer's own probing, playback) are not.
pub fn changes_content(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match kind {
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Any | EventKind::Other => true,
    }
}

/// A file watcher told only of what can change a file's content or existence. The kernel
/// filters the rest (inotify's mask): a file being written (Asterisk writes every 20 ms of each
/// recording) or read (probing, playback) wakes nobody; its close after writing does.
pub fn content_watcher<F: notify::EventHandler>(
    handler: F,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::EventKindMask;
    notify::RecommendedWatcher::new(
        handler,
        notify::Config::default().with_event_kinds(
            EventKindMask::CREATE
                | EventKindMask::REMOVE
                | EventKindMask::MODIFY_NAME
                | EventKindMask::MODIFY_META
                | EventKindMask::ACCESS_CLOSE,
        ),
    )
}

/// A recording ARI finished, and its call metadata as the finish left it.
pub(super) type Finished = (String, Option<CallMeta>);

pub(super) async fn recv_finished(rx: &mut Option<mpsc::Receiver<Finished>>) -> Option<Finished> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Tells the watcher that ARI finished a recording, so its row turns final at once instead of
/// after the settle time. Never blocks: when the watcher is behind, the settle time catches it.
#[derive(Clone)]
pub struct FinishedNotifier {
    tx: mpsc::Sender<Finished>,
    state: Arc<ScanState>,
}

impl FinishedNotifier {
    /// `meta`: the recording's call metadata as the finish left it (None: read it again).
    pub fn finished(&self, name: &str, meta: Option<CallMeta>) {
        if self.tx.try_send((name.to_string(), meta)).is_err() {
            self.state
                .events_dropped_total
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Recordings being written: when their row was last rewritten, and at what size.
#[derive(Default)]
pub(super) struct Growing {
    pub(super) entries: HashMap<String, GrowingEntry>,
}

pub(super) struct GrowingEntry {
    pub(super) written_at: std::time::Instant,
    pub(super) written_size: u64,
}

impl GrowingEntry {
    pub(super) fn now() -> GrowingEntry {
        GrowingEntry {
            written_at: std::time::Instant::now(),
            written_size: 0,
        }
    }
}

/// The time a file was last modified, for tests that age a file.
pub fn set_mtime(path: &Path, when: SystemTime) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new().append(true).open(path)?;
    file.set_modified(when)
}

impl Indexer {
    /// A handle for telling the watcher that ARI finished a recording.
    pub fn finished_notifier(&self) -> FinishedNotifier {
        FinishedNotifier {
            tx: self.finished_tx.clone(),
            state: Arc::clone(&self.state),
        }
    }

    /// Keeps the table current until `shutdown`: file events that change content re-index
    /// their paths, an overflow rescans everything, growing recordings are looked at (a stat,
    /// no read) once a second while there are any, and a finished recording turns final as
    /// soon as the flow runtime says so.
    pub fn watch(
        self: &Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<tokio::task::JoinHandle<()>, notify::Error> {
        let (tx, mut rx) = mpsc::channel::<Vec<PathBuf>>(EVENT_QUEUE);
        let rescan = Arc::new(AtomicBool::new(false));
        let rescan_flag = Arc::clone(&rescan);
        let state = Arc::clone(&self.state);
        let mut watcher = content_watcher(move |event: notify::Result<notify::Event>| {
            state.events_total.fetch_add(1, Ordering::Relaxed);
            let overflow = match event {
                Ok(event) if event.need_rescan() => true,
                Ok(event) if !changes_content(&event.kind) => {
                    state.events_ignored_total.fetch_add(1, Ordering::Relaxed);
                    false
                }
                Ok(event) => match tx.try_send(event.paths) {
                    Ok(()) => false,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        state.events_dropped_total.fetch_add(1, Ordering::Relaxed);
                        true
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                },
                Err(_) => true,
            };
            if overflow && !rescan_flag.swap(true, Ordering::Relaxed) {
                // Wake the task with an empty batch; a full queue wakes it anyway.
                let _ = tx.try_send(Vec::new());
            }
        })?;
        watcher.watch(&self.root, notify::RecursiveMode::Recursive)?;
        let indexer = Arc::clone(self);
        let mut finished = self
            .finished_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        Ok(tokio::spawn(async move {
            let _watcher = watcher;
            // Kept while files keep coming (each connection given back costs a check).
            let mut conn = HeldConnection::new(&indexer.db);
            let mut growing = Growing::default();
            match indexer.growing_paths().await {
                Ok(paths) => growing.add(paths),
                Err(e) => tracing::warn!(error = %e, "cannot list the recordings being written"),
            }
            // Work a failed batch left (the database away or locked by another writer): tried
            // again, with the next changes, after a wait that doubles up to INDEX_RETRY_MAX, so
            // every recording is in the library within seconds of the database's return.
            let mut retry: Option<Retry> = None;
            loop {
                indexer
                    .state
                    .growing
                    .store(growing.len() as u64, Ordering::Relaxed);
                let mut paths: HashSet<PathBuf> = HashSet::new();
                let mut done = Vec::new();
                let mut tick = false;
                let retry_wait = retry.as_ref().map_or(INDEX_RETRY_FIRST, |r| r.wait);
                tokio::select! {
                    got = rx.recv() => match got {
                        Some(p) => paths.extend(p),
                        None => return,
                    },
                    _ = tokio::time::sleep(retry_wait), if retry.is_some() => {
                        indexer.state.retries_total.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(finished) = recv_finished(&mut finished) => done.push(finished),
                    _ = tokio::time::sleep(Duration::from_secs(1)), if !growing.is_empty() => tick = true,
                    // Quiet: the connection kept while busy goes back to the pool.
                    _ = tokio::time::sleep(Duration::from_secs(1)), if growing.is_empty() && conn.is_held() => {
                        conn.release();
                        continue;
                    }
                    changed = shutdown.changed() => {
                        if changed.is_err() || *shutdown.borrow() {
                            return;
                        }
                        continue;
                    }
                }
                if !paths.is_empty() {
                    // Gather what else arrived meanwhile: a file being copied in changes often.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    while let Ok(more) = rx.try_recv() {
                        paths.extend(more);
                    }
                }
                let mut wait = INDEX_RETRY_FIRST;
                if let Some(left) = retry.take() {
                    paths.extend(left.paths);
                    done.extend(left.done);
                    tick |= left.tick;
                    wait = left.wait;
                }
                let batch = Retry {
                    paths: paths.clone(),
                    done: done.clone(),
                    tick,
                    wait: (wait * 2).min(INDEX_RETRY_MAX),
                };
                indexer
                    .state
                    .queue_depth
                    .store(paths.len() as u64, Ordering::Relaxed);
                let rescanning = rescan.swap(false, Ordering::Relaxed);
                let result = if rescanning {
                    tracing::info!("file watcher overflowed: rescanning the recordings folder");
                    match indexer.full_scan().await {
                        Ok(_) => indexer.growing_paths().await.map(|open| {
                            growing = Growing::default();
                            growing.add(open);
                        }),
                        Err(ScanError::Database(e)) => Err(e),
                        Err(ScanError::Walk(_)) => Ok(()),
                    }
                } else {
                    // Usually one of the three; after a failed batch all it left.
                    let mut result = Ok(());
                    if !done.is_empty() {
                        result = indexer.settle_finished(&mut conn, done, &mut growing).await;
                    }
                    if result.is_ok() && tick {
                        result = indexer.settle_growing(&mut conn, &mut growing).await;
                    }
                    if result.is_ok() && !paths.is_empty() {
                        // A recording already known to grow is left to the once-a-second look.
                        let fresh: Vec<PathBuf> = paths
                            .into_iter()
                            .filter(|p| !growing.contains_path(&indexer.root, p))
                            .collect();
                        result = indexer
                            .index_paths_with(&mut conn, fresh, HashMap::new())
                            .await
                            .map(|open| growing.add(open));
                    }
                    result
                };
                indexer.state.queue_depth.store(0, Ordering::Relaxed);
                match result {
                    Ok(()) => {
                        indexer.state.failing_since_ms.store(0, Ordering::Relaxed);
                        indexer.db.took_a_write();
                    }
                    Err(e) => {
                        // The next try takes a fresh connection (this one may be left in a
                        // transaction).
                        conn.discard();
                        let _ = indexer.state.failing_since_ms.compare_exchange(
                            0,
                            now_ms(),
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                        tracing::warn!(error = %e, retry_in_ms = batch.wait.as_millis() as u64, "indexing failed; retrying");
                        if rescanning {
                            rescan.store(true, Ordering::Relaxed);
                        }
                        retry = Some(batch);
                    }
                }
            }
        }))
    }

    /// ARI finished these recordings: their rows turn final now, with the call metadata the
    /// finish returned (read again when it did not).
    pub(super) async fn settle_finished(
        &self,
        conn: &mut HeldConnection,
        done: Vec<(String, Option<CallMeta>)>,
        growing: &mut Growing,
    ) -> Result<(), DbError> {
        let mut paths = Vec::new();
        let mut calls = HashMap::new();
        for (name, meta) in done {
            // The file being written is among the growing ones (its row said `recording`).
            let mut rels = growing.paths_of(&name);
            if rels.is_empty() {
                rels = {
                    let rows: Vec<(String, String)> = sqlx::query_as(RECORDING_BY_NAME)
                        .bind(&name)
                        .fetch_all(&self.db.pool)
                        .await?;
                    // This node's only (filtered here, not in SQL: see RECORDING_BY_NAME).
                    rows.into_iter()
                        .filter(|(_, node)| *node == self.node)
                        .map(|(rel, _)| rel)
                        .collect()
                };
            }
            for rel in rels {
                growing.remove(&rel);
                paths.push(self.root.join(rel));
            }
            if let Some(meta) = meta {
                calls.insert(name, meta);
            }
        }
        let open = self.index_paths_with(conn, paths, calls).await?;
        growing.add(open);
        Ok(())
    }

    /// Looks at each growing recording (metadata only): one that stopped changing for `settle`
    /// or vanished is indexed as it is now; one still growing has its row rewritten at most
    /// every [`GROWING_UPDATE`].
    pub(super) async fn settle_growing(
        &self,
        conn: &mut HeldConnection,
        growing: &mut Growing,
    ) -> Result<(), DbError> {
        let settle_ms = self.settle.as_millis() as i64;
        let now = now_ms();
        if growing.entries.is_empty() {
            return Ok(());
        }
        // Each growing file's size and time, read on a blocking thread.
        let paths: Vec<PathBuf> = growing
            .entries
            .keys()
            .map(|rel| self.root.join(rel))
            .collect();
        let mut stats = tokio::task::spawn_blocking(move || {
            paths
                .iter()
                .map(|path| std::fs::metadata(path).map(|m| (m.len(), mtime_ms(&m))))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default()
        .into_iter();
        let mut due = Vec::new();
        for (rel, entry) in growing.entries.iter_mut() {
            // The same order as the paths read (the map did not change meanwhile).
            match stats
                .next()
                .unwrap_or_else(|| Err(std::io::ErrorKind::Other.into()))
            {
                Ok((size, mtime)) => {
                    let quiet = now - mtime >= settle_ms;
                    let stale =
                        size != entry.written_size && entry.written_at.elapsed() >= GROWING_UPDATE;
                    if quiet || stale {
                        entry.written_size = size;
                        entry.written_at = std::time::Instant::now();
                        due.push(rel.clone());
                    }
                }
                Err(_) => due.push(rel.clone()),
            }
        }
        if due.is_empty() {
            return Ok(());
        }
        for rel in &due {
            growing.remove(rel);
        }
        let due_paths = due.iter().map(|rel| self.root.join(rel)).collect();
        let open = self
            .index_paths_with(conn, due_paths, HashMap::new())
            .await?;
        // Rows rewritten as still growing keep their entry (and its last write time).
        for rel in open {
            growing.entries.entry(rel).or_insert_with(GrowingEntry::now);
        }
        Ok(())
    }
}

impl Growing {
    pub(super) fn add(&mut self, rels: Vec<String>) {
        for rel in rels {
            self.entries.entry(rel).or_insert_with(GrowingEntry::now);
        }
    }
    /// The files of the recording named `name` that are growing.
    pub(super) fn paths_of(&self, name: &str) -> Vec<String> {
        self.entries
            .keys()
            .filter(|rel| recording_name(rel) == name)
            .cloned()
            .collect()
    }

    pub(super) fn remove(&mut self, rel: &str) {
        self.entries.remove(rel);
    }
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub(super) fn contains_path(&self, root: &Path, path: &Path) -> bool {
        path.strip_prefix(root)
            .map(|rel| {
                self.entries
                    .contains_key(&rel.to_string_lossy().replace('\\', "/"))
            })
            .unwrap_or(false)
    }
}
