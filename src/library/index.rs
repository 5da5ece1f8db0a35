//! Indexing the recordings folder into the `recordings` table.
//!
//! A full scan reconciles the table with the disk: new files are probed and added, changed ones
//! re-probed, vanished ones marked `missing`, and a tombstoned (deleted) file still on disk,
//! left by a crash between the two steps of a delete, is removed. Then a `notify` watcher keeps
//! the table current; a watcher overflow triggers a full rescan. Writes go in batches, each in
//! one transaction, so a kill at any moment leaves whole rows and the next start reconciles.
//!
//! A file is final when ARI said `RecordingFinished` for its name or it has not changed for
//! `settle`; until then it is listed as `recording` with the duration its size gives.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use notify::Watcher;
use tokio::sync::{mpsc, watch};

use super::db::{Database, DbError};
use super::probe::{is_recording_file, probe_with, Encoding, Probe, Status};

/// Rows written per transaction.
const BATCH: usize = 500;

/// Progress of the scan, for `ari-recorder index` and `GET /api/library/scan`.
#[derive(Debug, Default)]
pub struct ScanState {
    pub running: AtomicBool,
    pub files_found: AtomicU64,
    pub files_probed: AtomicU64,
    pub scans_completed: AtomicU64,
    pub last_scan_ms: AtomicU64,
}

impl ScanState {
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "running": self.running.load(Ordering::Relaxed),
            "files_found": self.files_found.load(Ordering::Relaxed),
            "files_probed": self.files_probed.load(Ordering::Relaxed),
            "scans_completed": self.scans_completed.load(Ordering::Relaxed),
            "last_scan_ms": self.last_scan_ms.load(Ordering::Relaxed),
        })
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanReport {
    pub found: u64,
    pub probed: u64,
    pub missing: u64,
    pub unchanged: u64,
}

/// One file seen on disk.
#[derive(Debug, Clone)]
struct Seen {
    /// Relative path with `/` separators.
    rel: String,
    size: u64,
    mtime_ms: i64,
    /// A symlink whose target leaves the folder: never followed.
    escapes: bool,
}

pub struct Indexer {
    db: Database,
    root: PathBuf,
    settle: Duration,
    pub state: Arc<ScanState>,
    /// Tenant and project of files found without call metadata.
    default_scope: (String, String),
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn mtime_ms(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Walks `root` without following symlinks out of it.
fn walk(root: &Path) -> Vec<Seen> {
    let canonical_root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
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
                    });
                }
                continue;
            }
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() && is_recording_file(&path) {
                out.push(Seen {
                    rel,
                    size: meta.len(),
                    mtime_ms: mtime_ms(&meta),
                    escapes: false,
                });
            }
        }
    }
    out
}

/// The ARI name of a file: its relative path without the extension.
fn recording_name(rel: &str) -> String {
    match rel.rsplit_once('.') {
        Some((stem, _)) => stem.to_string(),
        None => rel.to_string(),
    }
}

/// Call metadata written by the flows, by recording name.
#[derive(Debug, Clone, sqlx::FromRow)]
struct CallMeta {
    recording_name: String,
    call_id: String,
    tenant: String,
    flow: Option<String>,
    node: Option<String>,
    node_type: Option<String>,
    direction: String,
    caller_name: Option<String>,
    caller_number: Option<String>,
    callee: Option<String>,
    state: String,
    started_at_ms: i64,
    project: String,
    private: i64,
    consent: String,
    participants: Option<String>,
}

/// The columns the indexer writes, in the order of its values.
const ROW_COLUMNS: [&str; 29] = [
    "path",
    "name",
    "format",
    "status",
    "reason",
    "size_bytes",
    "mtime_ms",
    "duration_ms",
    "encoding",
    "sample_rate",
    "data_offset",
    "data_len",
    "sha256",
    "call_id",
    "tenant",
    "flow",
    "node",
    "node_type",
    "direction",
    "caller_name",
    "caller_number",
    "callee",
    "started_at_ms",
    "owner",
    "participants",
    "indexed_at_ms",
    "project",
    "private",
    "consent",
];

/// A value the indexer writes.
enum Stored {
    Text(Option<String>),
    Int(i64),
}

fn bind_stored<'q>(
    mut query: sqlx::query::QueryAs<'q, sqlx::Any, (i64,), sqlx::any::AnyArguments<'q>>,
    values: &'q [Stored],
) -> sqlx::query::QueryAs<'q, sqlx::Any, (i64,), sqlx::any::AnyArguments<'q>> {
    for value in values {
        query = match value {
            Stored::Text(text) => query.bind(text.as_deref()),
            Stored::Int(int) => query.bind(*int),
        };
    }
    query
}

/// `UPDATE ... WHERE path = $1`: every column but the path; consent an admin or a flow set is
/// kept (only `unknown` is replaced).
static UPDATE_ROW: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let sets: Vec<String> = ROW_COLUMNS
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, column)| match *column {
            "consent" => format!(
                "consent = CASE WHEN consent = 'unknown' THEN ${} ELSE consent END",
                i + 1
            ),
            _ => format!("{column} = ${}", i + 1),
        })
        .collect();
    format!(
        "UPDATE recordings SET {} WHERE path = $1 RETURNING id",
        sets.join(", ")
    )
});

static INSERT_ROW: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let placeholders: Vec<String> = (1..=ROW_COLUMNS.len()).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO recordings ({}) VALUES ({}) ON CONFLICT (path) DO NOTHING RETURNING id",
        ROW_COLUMNS.join(", "),
        placeholders.join(", ")
    )
});

/// Replaces the words of recording `id`'s caller name, for the name search.
pub async fn store_name_words(
    conn: &mut sqlx::AnyConnection,
    id: i64,
    caller_name: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM recording_words WHERE recording_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    for word in name_words(caller_name) {
        sqlx::query("INSERT INTO recording_words (word, recording_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(word)
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The lower-cased words of a caller name (letters and digits), each once.
pub fn name_words(name: &str) -> Vec<String> {
    let mut words: Vec<String> = name
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    words.sort();
    words.dedup();
    words
}

/// A probed file ready to write.
struct Row {
    seen: Seen,
    probe: Probe,
    status: &'static str,
}

impl Indexer {
    pub fn new(db: Database, root: PathBuf, settle: Duration) -> Indexer {
        Indexer {
            db,
            root,
            settle,
            state: Arc::new(ScanState::default()),
            default_scope: ("default".into(), "default".into()),
        }
    }

    /// Files found on disk without call metadata belong to `tenant` and `project`.
    pub fn with_default_scope(mut self, tenant: &str, project: &str) -> Indexer {
        self.default_scope = (tenant.to_string(), project.to_string());
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Reconciles the table with the folder.
    pub async fn full_scan(&self) -> Result<ScanReport, DbError> {
        self.state.running.store(true, Ordering::Relaxed);
        self.state.files_probed.store(0, Ordering::Relaxed);
        let result = self.full_scan_inner().await;
        self.state.running.store(false, Ordering::Relaxed);
        if result.is_ok() {
            self.state.scans_completed.fetch_add(1, Ordering::Relaxed);
            self.state
                .last_scan_ms
                .store(now_ms() as u64, Ordering::Relaxed);
        }
        result
    }

    async fn full_scan_inner(&self) -> Result<ScanReport, DbError> {
        let root = self.root.clone();
        let seen = tokio::task::spawn_blocking(move || walk(&root))
            .await
            .unwrap_or_default();
        self.state
            .files_found
            .store(seen.len() as u64, Ordering::Relaxed);
        let known: Vec<(String, i64, i64, String)> =
            sqlx::query_as("SELECT path, size_bytes, mtime_ms, status FROM recordings")
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

        // Deleted rows whose file came back or was never removed: finish the deletion.
        for s in &seen {
            if known.get(&s.rel).is_some_and(|k| k.2 == "deleted") {
                let _ = std::fs::remove_file(self.root.join(&s.rel));
            }
        }
        let mut to_probe: Vec<Seen> = seen
            .iter()
            .filter(|s| match known.get(&s.rel) {
                Some((_, _, status)) if status == "deleted" => false,
                // Unchanged and final: nothing to do.
                Some((size, mtime, status)) => {
                    !(*size == s.size as i64
                        && *mtime == s.mtime_ms
                        && status != "recording"
                        && status != "missing")
                }
                None => true,
            })
            .cloned()
            .collect();
        report.unchanged = report.found - to_probe.len() as u64;
        let calls = self.call_meta_all().await?;
        while !to_probe.is_empty() {
            let batch: Vec<Seen> = to_probe.drain(..to_probe.len().min(BATCH)).collect();
            let rows = self.probe_batch(batch, &calls).await;
            report.probed += rows.len() as u64;
            self.state
                .files_probed
                .fetch_add(rows.len() as u64, Ordering::Relaxed);
            self.write_rows(rows).await?;
        }
        let vanished: Vec<String> = known
            .iter()
            .filter(|(path, (_, _, status))| {
                !on_disk.contains(path.as_str())
                    && !matches!(status.as_str(), "deleted" | "missing" | "not_recorded")
            })
            .map(|(p, _)| p.clone())
            .collect();
        report.missing = vanished.len() as u64;
        for chunk in vanished.chunks(BATCH) {
            let mut tx = self.db.pool.begin().await?;
            for path in chunk {
                sqlx::query("UPDATE recordings SET status = 'missing', reason = 'file no longer on disk', indexed_at_ms = $1 WHERE path = $2")
                    .bind(now_ms())
                    .bind(path)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
        Ok(report)
    }

    async fn call_meta_all(&self) -> Result<HashMap<String, CallMeta>, DbError> {
        let rows: Vec<CallMeta> = sqlx::query_as(
            "SELECT recording_name, call_id, tenant, flow, node, node_type, direction, caller_name, caller_number, callee, state, started_at_ms, project, private, consent, participants FROM call_recordings",
        )
        .fetch_all(&self.db.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.recording_name.clone(), r))
            .collect())
    }

    async fn call_meta(&self, name: &str) -> Result<Option<CallMeta>, DbError> {
        Ok(sqlx::query_as(
            "SELECT recording_name, call_id, tenant, flow, node, node_type, direction, caller_name, caller_number, callee, state, started_at_ms, project, private, consent, participants FROM call_recordings WHERE recording_name = $1",
        )
        .bind(name)
        .fetch_optional(&self.db.pool)
        .await?)
    }

    async fn probe_batch(
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
        let probed = tokio::task::spawn_blocking(move || {
            let now = now_ms();
            batch
                .into_iter()
                .map(|seen| {
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
                        probe_with(&root.join(&seen.rel), is_final)
                    };
                    let status = match probe.status {
                        Status::Ready | Status::Empty if !is_final => "recording",
                        other => other.as_str(),
                    };
                    Row {
                        seen,
                        probe,
                        status,
                    }
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        probed
            .into_iter()
            .map(|row| {
                let meta = calls.get(&recording_name(&row.seen.rel)).cloned();
                (row, meta)
            })
            .collect()
    }

    async fn write_rows(&self, rows: Vec<(Row, Option<CallMeta>)>) -> Result<(), DbError> {
        let mut tx = self.db.pool.begin().await?;
        for (row, meta) in rows {
            let name = recording_name(&row.seen.rel);
            let started = meta
                .as_ref()
                .map(|m| m.started_at_ms)
                .unwrap_or(row.seen.mtime_ms - row.probe.duration_ms as i64);
            let encoding = row.probe.encoding.map(|e| match e {
                Encoding::Pcm16 => "pcm16",
                Encoding::Ulaw => "ulaw",
                Encoding::Alaw => "alaw",
            });
            let m = meta.as_ref();
            let text = |v: Option<String>| Stored::Text(v);
            let int = |v: i64| Stored::Int(v);
            // In ROW_COLUMNS order.
            let values = [
                text(Some(row.seen.rel.clone())),
                text(Some(name.clone())),
                text(Some(row.probe.format.clone())),
                text(Some(row.status.to_string())),
                text(row.probe.reason.clone()),
                int(row.probe.size as i64),
                int(row.seen.mtime_ms),
                int(row.probe.duration_ms as i64),
                text(encoding.map(String::from)),
                int(i64::from(row.probe.sample_rate)),
                int(row.probe.data_offset as i64),
                int(row.probe.data_len as i64),
                text(row.probe.sha256.clone()),
                text(m.map(|m| m.call_id.clone())),
                text(Some(
                    m.map(|m| m.tenant.clone())
                        .unwrap_or_else(|| self.default_scope.0.clone()),
                )),
                text(m.and_then(|m| m.flow.clone())),
                text(m.and_then(|m| m.node.clone())),
                text(m.and_then(|m| m.node_type.clone())),
                text(m.map(|m| m.direction.clone())),
                text(m.and_then(|m| m.caller_name.clone())),
                text(m.and_then(|m| m.caller_number.clone())),
                text(m.and_then(|m| m.callee.clone())),
                int(started),
                text(m.and_then(|m| m.callee.clone())),
                text(m.map(|m| {
                    m.participants.clone().unwrap_or_else(|| {
                        format!(
                            "{},{}",
                            m.caller_number.clone().unwrap_or_default(),
                            m.callee.clone().unwrap_or_default()
                        )
                    })
                })),
                int(now_ms()),
                text(Some(
                    m.map(|m| m.project.clone())
                        .unwrap_or_else(|| self.default_scope.1.clone()),
                )),
                int(m.map(|m| m.private).unwrap_or(0)),
                text(Some(
                    m.map(|m| m.consent.clone())
                        .unwrap_or_else(|| "unknown".into()),
                )),
            ];
            // Update first: an upsert that turns into an update still spends an id of the
            // sequence, and a file being written is re-indexed many times.
            let updated: Option<(i64,)> = bind_stored(sqlx::query_as(&UPDATE_ROW), &values)
                .fetch_optional(&mut *tx)
                .await?;
            let id = match updated {
                Some((id,)) => id,
                None => {
                    let inserted: Option<(i64,)> =
                        bind_stored(sqlx::query_as(&INSERT_ROW), &values)
                            .fetch_optional(&mut *tx)
                            .await?;
                    match inserted {
                        Some((id,)) => id,
                        // Another writer (the watcher, a second instance) added it meanwhile.
                        None => {
                            bind_stored(sqlx::query_as(&UPDATE_ROW), &values)
                                .fetch_one(&mut *tx)
                                .await?
                                .0
                        }
                    }
                }
            };
            let caller_name = m.and_then(|m| m.caller_name.as_deref()).unwrap_or("");
            store_name_words(&mut tx, id, caller_name).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Re-indexes the given files (from the watcher); vanished ones become `missing`.
    pub async fn index_paths(&self, paths: Vec<PathBuf>) -> Result<(), DbError> {
        let mut seen = Vec::new();
        // A new folder's first files can be written before its watch is in place: index
        // whatever a folder event names.
        let mut expanded = Vec::new();
        for path in paths {
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                let inside = walk(&path);
                expanded.extend(inside.into_iter().map(|s| path.join(s.rel)));
            } else {
                expanded.push(path);
            }
        }
        for path in expanded {
            let Ok(rel) = path.strip_prefix(&self.root) else {
                continue;
            };
            let rel = rel.to_string_lossy().replace('\\', "/");
            if !is_recording_file(&path) {
                continue;
            }
            let deleted: Option<(String,)> = sqlx::query_as(
                "SELECT status FROM recordings WHERE path = $1 AND status = 'deleted'",
            )
            .bind(&rel)
            .fetch_optional(&self.db.pool)
            .await?;
            if deleted.is_some() {
                continue;
            }
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    let inside = path
                        .canonicalize()
                        .is_ok_and(|t| t.starts_with(self.root.canonicalize().unwrap_or_default()));
                    let target = std::fs::metadata(&path).ok();
                    let (size, mtime) = target
                        .map(|m| (m.len(), mtime_ms(&m)))
                        .unwrap_or((0, mtime_ms(&meta)));
                    seen.push(Seen {
                        rel,
                        size,
                        mtime_ms: mtime,
                        escapes: !inside,
                    });
                }
                Ok(meta) if meta.is_file() => seen.push(Seen {
                    rel,
                    size: meta.len(),
                    mtime_ms: mtime_ms(&meta),
                    escapes: false,
                }),
                Ok(_) => {}
                Err(_) => {
                    sqlx::query("UPDATE recordings SET status = 'missing', reason = 'file no longer on disk', indexed_at_ms = $1 WHERE path = $2 AND status <> 'deleted'")
                        .bind(now_ms())
                        .bind(&rel)
                        .execute(&self.db.pool)
                        .await?;
                }
            }
        }
        if seen.is_empty() {
            return Ok(());
        }
        let mut calls = HashMap::new();
        for s in &seen {
            let name = recording_name(&s.rel);
            if let Some(meta) = self.call_meta(&name).await? {
                calls.insert(name, meta);
            }
        }
        let rows = self.probe_batch(seen, &calls).await;
        self.write_rows(rows).await
    }

    /// Re-probes rows still `recording`: the ones ARI finished or that stopped changing
    /// become final.
    pub async fn settle(&self) -> Result<(), DbError> {
        let open: Vec<(String,)> =
            sqlx::query_as("SELECT path FROM recordings WHERE status = 'recording'")
                .fetch_all(&self.db.pool)
                .await?;
        if open.is_empty() {
            return Ok(());
        }
        self.index_paths(open.into_iter().map(|(p,)| self.root.join(p)).collect())
            .await
    }

    /// Keeps the table current until `shutdown`: file events re-index their paths, an
    /// overflow rescans everything, and open recordings are settled every second.
    pub fn watch(
        self: &Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<tokio::task::JoinHandle<()>, notify::Error> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Option<Vec<PathBuf>>>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(event) if event.need_rescan() => {
                    let _ = tx.send(None);
                }
                Ok(event) => {
                    let _ = tx.send(Some(event.paths));
                }
                Err(_) => {
                    let _ = tx.send(None);
                }
            })?;
        watcher.watch(&self.root, notify::RecursiveMode::Recursive)?;
        let indexer = Arc::clone(self);
        Ok(tokio::spawn(async move {
            let _watcher = watcher;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                let mut paths: HashSet<PathBuf> = HashSet::new();
                let mut rescan = false;
                tokio::select! {
                    got = rx.recv() => match got {
                        Some(Some(p)) => paths.extend(p),
                        Some(None) => rescan = true,
                        None => return,
                    },
                    _ = tick.tick() => {
                        if let Err(e) = indexer.settle().await {
                            tracing::warn!(error = %e, "settling open recordings failed");
                        }
                        continue;
                    }
                    changed = shutdown.changed() => {
                        if changed.is_err() || *shutdown.borrow() {
                            return;
                        }
                        continue;
                    }
                }
                // Gather what else arrived meanwhile: an active recording changes 50 times a second.
                tokio::time::sleep(Duration::from_millis(100)).await;
                while let Ok(more) = rx.try_recv() {
                    match more {
                        Some(p) => paths.extend(p),
                        None => rescan = true,
                    }
                }
                let result = if rescan {
                    tracing::info!("file watcher overflowed: rescanning the recordings folder");
                    indexer.full_scan().await.map(drop)
                } else {
                    indexer.index_paths(paths.into_iter().collect()).await
                };
                if let Err(e) = result {
                    tracing::warn!(error = %e, "indexing failed; the next change or rescan retries");
                }
            }
        }))
    }
}

/// The time a file was last modified, for tests that age a file.
pub fn set_mtime(path: &Path, when: SystemTime) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new().append(true).open(path)?;
    file.set_modified(when)
}
