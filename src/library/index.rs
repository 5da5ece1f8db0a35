//! Indexing the recordings folder into the `recordings` table.
//!
//! A full scan reconciles the table with the disk: new files are probed and added, changed ones
//! re-probed, vanished ones marked `missing`, and a tombstoned (deleted) file still on disk,
//! left by a crash between the two steps of a delete, is removed. Then a `notify` watcher keeps
//! the table current; a watcher overflow triggers a full rescan. Writes go in batches, each in
//! one transaction, so a kill at any moment leaves whole rows and the next start reconciles.
//!
//! A file is final when ARI said `RecordingFinished` for its name (the flow runtime tells the
//! watcher at once), or it was closed after writing, or it has not changed for `settle`; until
//! then it is listed as `recording` with the duration its size gives, rewritten at most every
//! [`GROWING_UPDATE`]. The watcher reacts only to events that change a file's content or
//! existence (never to opens and reads, its own probing included), and a file whose size and
//! mtime are unchanged is never probed again: at rest it costs nothing.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use notify::Watcher;

use super::calls::{self, CallMeta, RecordingRow};
use super::db::HeldConnection;
use sqlx::Row as _;
use tokio::sync::{mpsc, watch};

use super::db::{Database, DbError};
use super::probe::{is_recording_file, probe_sealed, Encoding, Probe, Status};

/// Rows written per transaction.
const BATCH: usize = 500;
/// A growing recording's row is rewritten (its length) at most this often.
pub const GROWING_UPDATE: Duration = Duration::from_secs(5);
/// File events waiting for the watcher task; past this the watcher rescans instead.
const EVENT_QUEUE: usize = 4096;

/// Progress of the scan, for `ari-recorder index` and `GET /api/library/scan`.
#[derive(Debug, Default)]
pub struct ScanState {
    pub running: AtomicBool,
    pub files_found: AtomicU64,
    pub files_probed: AtomicU64,
    pub scans_completed: AtomicU64,
    pub last_scan_ms: AtomicU64,
    /// Files opened and read to probe them, since start (a quiet library keeps this still).
    pub file_reads_total: AtomicU64,
    /// Database write transactions of the indexer, since start.
    pub write_transactions_total: AtomicU64,
    /// File events the watcher was told of (the kernel tells only of content changes).
    pub events_total: AtomicU64,
    /// File events that named no content change (opens, reads) and were ignored.
    pub events_ignored_total: AtomicU64,
    /// File events dropped because the queue was full (a rescan follows).
    pub events_dropped_total: AtomicU64,
    /// Paths waiting to be indexed, and recordings still growing.
    pub queue_depth: AtomicU64,
    pub growing: AtomicU64,
    pub walk_failures_total: AtomicU64,
    /// Recordings Asterisk made through the dialplan fallback while the app was away, newly
    /// listed since start.
    pub fallback_recordings_total: AtomicU64,
    /// When the newest of them started (unix ms; 0: none yet).
    pub fallback_newest_ms: std::sync::atomic::AtomicI64,
    /// Why the last walk of the folder failed; cleared by the next one that succeeds.
    pub last_walk_error: std::sync::Mutex<Option<String>>,
    /// How long the indexer's write transactions take.
    pub write_seconds: crate::metrics::Histogram,
    /// Indexing batches that failed on the database and were tried again.
    pub retries_total: AtomicU64,
    /// When indexing started failing on the database (unix ms; 0: it works).
    pub failing_since_ms: std::sync::atomic::AtomicI64,
}

impl ScanState {
    /// The recordings the dialplan fallback made while the app was away, newly listed since
    /// start: how many, and when the newest started (unix ms). Kept in memory: `/readyz` is
    /// polled, and a count over the table would scan it.
    pub fn fallback_summary(&self) -> (u64, Option<i64>) {
        let newest = self.fallback_newest_ms.load(Ordering::Relaxed);
        (
            self.fallback_recordings_total.load(Ordering::Relaxed),
            (newest > 0).then_some(newest),
        )
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "running": self.running.load(Ordering::Relaxed),
            "files_found": self.files_found.load(Ordering::Relaxed),
            "files_probed": self.files_probed.load(Ordering::Relaxed),
            "scans_completed": self.scans_completed.load(Ordering::Relaxed),
            "last_scan_ms": self.last_scan_ms.load(Ordering::Relaxed),
            "last_walk_error": self.last_walk_error(),
        })
    }

    /// Since when indexing fails on the database (unix ms), if it does.
    pub fn failing_since(&self) -> Option<i64> {
        Some(self.failing_since_ms.load(Ordering::Relaxed)).filter(|&ms| ms > 0)
    }

    pub fn last_walk_error(&self) -> Option<String> {
        self.last_walk_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The indexer's part of `/metrics`.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let counters = [
            (
                "indexer_file_reads_total",
                "counter",
                "Files opened and read to probe them.",
                &self.file_reads_total,
            ),
            (
                "indexer_db_write_transactions_total",
                "counter",
                "Database write transactions of the indexer.",
                &self.write_transactions_total,
            ),
            (
                "indexer_events_total",
                "counter",
                "File events received: creations, removals, renames, attribute changes, closes after writing.",
                &self.events_total,
            ),
            (
                "indexer_events_ignored_total",
                "counter",
                "File events that changed no content (opens, reads), ignored.",
                &self.events_ignored_total,
            ),
            (
                "indexer_events_dropped_total",
                "counter",
                "File events dropped on a full queue (a rescan follows).",
                &self.events_dropped_total,
            ),
            (
                "indexer_walk_failures_total",
                "counter",
                "Walks of the recordings folder that failed (no row changed).",
                &self.walk_failures_total,
            ),
            (
                "indexer_fallback_recordings_total",
                "counter",
                "Recordings Asterisk made through the dialplan fallback while the app was away, newly listed.",
                &self.fallback_recordings_total,
            ),
            (
                "indexer_retries_total",
                "counter",
                "Indexing batches that failed on the database (away, locked) and were tried again.",
                &self.retries_total,
            ),
            (
                "indexer_queue_depth",
                "gauge",
                "Paths being indexed now.",
                &self.queue_depth,
            ),
            (
                "indexer_growing_recordings",
                "gauge",
                "Recordings still being written.",
                &self.growing,
            ),
        ];
        for (name, kind, help, value) in counters {
            crate::metrics::header(out, name, kind, help);
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        crate::metrics::header(
            out,
            "indexer_walk_ok",
            "gauge",
            "1 when the last walk of the recordings folder succeeded.",
        );
        let _ = writeln!(
            out,
            "indexer_walk_ok {}",
            u8::from(self.last_walk_error().is_none())
        );
        crate::metrics::header(
            out,
            "indexer_db_write_seconds",
            "histogram",
            "Database write transactions of the indexer.",
        );
        self.write_seconds
            .render(out, "indexer_db_write_seconds", "");
    }

    fn set_walk_error(&self, error: Option<String>) {
        *self
            .last_walk_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = error;
    }
}

/// What a failed indexing batch left to do, and how long to wait before trying it again.
struct Retry {
    paths: HashSet<PathBuf>,
    done: Vec<(String, Option<CallMeta>)>,
    tick: bool,
    wait: Duration,
}

/// The first wait before a failed indexing batch is tried again; it doubles up to
/// `INDEX_RETRY_MAX`.
const INDEX_RETRY_FIRST: Duration = Duration::from_millis(250);
const INDEX_RETRY_MAX: Duration = Duration::from_secs(5);

/// Why a scan stopped without changing the table.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("walking the recordings folder failed, no row changed: {0}")]
    Walk(String),
    #[error(transparent)]
    Database(#[from] DbError),
}

impl From<sqlx::Error> for ScanError {
    fn from(e: sqlx::Error) -> ScanError {
        ScanError::Database(DbError::from(e))
    }
}

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
    before: Before,
}

/// Whether the row written for `row` keeps the caller name it had (its words stay as they are).
fn same_caller(row: &Row, meta: Option<&CallMeta>) -> bool {
    let caller = meta.and_then(|m| m.caller_name.as_deref()).unwrap_or("");
    matches!(&row.seen.before, Before::Caller(before) if before.as_deref().unwrap_or("") == caller)
}

/// What the library held for a file when it was looked at.
#[derive(Debug, Clone, Default)]
enum Before {
    /// Not looked up: written as if a row may exist.
    #[default]
    Unknown,
    /// No row: inserted straight away.
    Nothing,
    /// A row with this caller name: its name words stay when the name does.
    Caller(Option<String>),
}

pub struct Indexer {
    db: Database,
    root: PathBuf,
    settle: Duration,
    pub state: Arc<ScanState>,
    /// Tenant and project of files found without call metadata.
    default_scope: (String, String),
    /// Whose a dialled number is (the flow that answers it), for the dialplan fallback's
    /// recordings, which carry only the number.
    number_scope: Option<NumberScopeFn>,
    /// The compliance status of recordings new to the library (`default_compliance`).
    new_compliance: Option<Arc<dyn Fn() -> &'static str + Send + Sync>>,
    finished_tx: mpsc::Sender<Finished>,
    /// Taken by the watcher.
    finished_rx: std::sync::Mutex<Option<mpsc::Receiver<Finished>>>,
    /// Told when recordings become final (the sealer and the archive take them).
    ready_notify: Vec<Arc<tokio::sync::Notify>>,
    /// Opens recordings sealed at rest.
    keys: Option<Arc<crate::encryption::Keyring>>,
    /// This instance's node id: the rows of its recordings folder carry it.
    node: String,
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

/// Walks `root` without following symlinks out of it. Any folder that cannot be listed fails
/// the whole walk: a partial listing would look like vanished files.
/// Marks recording `id` purged by a retention rule (its audio is about to be removed): the row
/// stays, with the rule as its reason, so "no recording available: retention" is true. False
/// when it was not in a purgeable state any more (deleted, purged or held meanwhile).
pub async fn mark_purged(db: &Database, id: i64, reason: &str) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE recordings SET status = 'purged', reason = $1, indexed_at_ms = $2 \
         WHERE id = $3 AND status NOT IN ('deleted', 'purged', 'recording') \
         AND NOT EXISTS (SELECT 1 FROM recording_holds h WHERE h.recording_id = recordings.id)",
    )
    .bind(reason)
    .bind(now_ms())
    .bind(id)
    .execute(&db.pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Recording `name`, final, turned out cut short (Asterisk restarted under it): its row says
/// why. A row not final yet takes the reason from its call's metadata when it is indexed.
pub async fn note_cut(
    conn: impl sqlx::Executor<'_, Database = sqlx::Any>,
    name: &str,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE recordings SET reason = $1 WHERE name = $2 AND status = 'ready' AND reason IS NULL",
    )
    .bind(reason)
    .bind(name)
    .execute(conn)
    .await?;
    Ok(())
}

/// This node's recordings quarantined (a call's file whose metadata never came) since before
/// `before_ms`: name, format and when the file was last written.
pub async fn quarantined_before(
    db: &Database,
    node: &str,
    before_ms: i64,
) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT name, format, mtime_ms FROM recordings \
         WHERE status = 'quarantined' AND node_id = $1 AND mtime_ms < $2",
    )
    .bind(node)
    .bind(before_ms)
    .fetch_all(&db.pool)
    .await
}

/// The file of recording `id` was rewritten on purpose (sealed at rest): same audio, new size on
/// disk and the same modification time, so the indexer does not read it again.
pub async fn note_rewritten(
    db: &Database,
    id: i64,
    size: u64,
    mtime_ms: i64,
) -> Result<(), DbError> {
    sqlx::query("UPDATE recordings SET size_bytes = $1, mtime_ms = $2 WHERE id = $3")
        .bind(i64::try_from(size).unwrap_or(i64::MAX))
        .bind(mtime_ms)
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// A file's modification time as the library stores it.
pub fn file_mtime_ms(path: &Path) -> std::io::Result<i64> {
    std::fs::metadata(path).map(|m| mtime_ms(&m))
}

/// A recording being written, by name, of every node (the caller keeps its own node's): with
/// `node_id` in the WHERE clause, SQLite without statistics picks the (node_id, path) index and
/// walks the node's every row, milliseconds a call on a large library. A quarantined one too:
/// its file was indexed before the call's metadata could be written (the database was away),
/// and it turns final when the metadata comes.
const RECORDING_BY_NAME: &str = "SELECT path, node_id FROM recordings \
     WHERE name = $1 AND status IN ('recording', 'quarantined')";

/// What the library holds for one file ($1, node $2): before it is probed again.
const KNOWN_ROW: &str =
    "SELECT status, size_bytes, mtime_ms, caller_name FROM recordings WHERE path = $1 AND node_id = $2";

/// The rows still being recorded (of every node: filtered by the caller).
const GROWING_ROWS: &str = "SELECT path, node_id FROM recordings WHERE status = 'recording'";

/// The node id of rows written before instances had one, and of a library used without one
/// (tests, tools): taken over by the first instance that starts (`adopt_unowned_rows`).
pub const DEFAULT_NODE: &str = "";

/// Gives rows of no node (a library from before node ids) to `node`; how many. An SQLite
/// library is one machine's: every row is this node's, even if the host was renamed (the node
/// id defaults to the host name, which a recreated container changes).
pub async fn adopt_unowned_rows(db: &Database, node: &str) -> Result<u64, DbError> {
    let sql = match db.backend {
        super::Backend::Sqlite => "UPDATE recordings SET node_id = $1 WHERE node_id <> $1",
        super::Backend::Postgres => "UPDATE recordings SET node_id = $1 WHERE node_id = ''",
    };
    let done = sqlx::query(sql).bind(node).execute(&db.pool).await?;
    Ok(done.rows_affected())
}

/// When `node` has no rows yet, the other nodes that have some (a few of them), for the warning
/// at start; empty otherwise. Index lookups only: cheap at any size.
pub async fn other_nodes_when_new(db: &Database, node: &str) -> Result<Vec<String>, DbError> {
    let mine: Option<(i64,)> =
        sqlx::query_as("SELECT id FROM recordings WHERE node_id = $1 LIMIT 1")
            .bind(node)
            .fetch_optional(&db.pool)
            .await?;
    if mine.is_some() {
        return Ok(Vec::new());
    }
    let others: Vec<(String,)> = sqlx::query_as(
        "SELECT DISTINCT node_id FROM (SELECT node_id FROM recordings WHERE node_id <> $1 LIMIT 1000) AS sample",
    )
    .bind(node)
    .fetch_all(&db.pool)
    .await?;
    Ok(others.into_iter().map(|(n,)| n).collect())
}

/// Forgets rows whose audio is gone (purged or deleted) altogether: the row and its name words.
pub async fn forget_rows(db: &Database, ids: &[i64]) -> Result<(), DbError> {
    let mut tx = db.pool.begin().await?;
    for id in ids {
        sqlx::query("DELETE FROM recording_words WHERE recording_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM recordings WHERE id = $1 AND status IN ('purged', 'deleted')")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// A row whose audio was removed on purpose (deleted by hand, purged by retention): its file is
/// never indexed again.
fn gone_for_good(status: &str) -> bool {
    matches!(status, "deleted" | "purged")
}

/// A transcript beside a recording: `<name>.vtt` for `<name>.wav`.
fn is_sidecar(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "vtt")
}

/// A path (relative to the recordings folder) under a folder whose name starts with a dot:
/// the service's own (each party of a dual-channel recording, `.channels/`), never listed.
fn in_hidden_folder(rel: &str) -> bool {
    rel.split('/').any(|part| part.starts_with('.'))
}

fn walk(root: &Path) -> Result<Vec<Seen>, String> {
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

/// The ARI name of a file: its relative path without the extension.
/// Whether `name` has the shape the call flows give their recordings
/// (`<kind>-<YYYYMMDD>-<HHMMSS>-<8 hex>`, see `flows::call::recording_name`): such a file
/// belongs to a call whose metadata says whose it is, so without that metadata it is held back,
/// not filed under the default tenant.
pub fn made_by_a_call(name: &str) -> bool {
    let mut parts = name.rsplitn(4, '-');
    let (Some(hex), Some(time), Some(date), Some(kind)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let digits = |t: &str, n: usize| t.len() == n && t.bytes().all(|b| b.is_ascii_digit());
    !kind.is_empty()
        && !kind.contains('/')
        && digits(date, 8)
        && digits(time, 6)
        && hex.len() == 8
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whose a dialled number is: the flow answering it, its tenant, project and privacy.
#[derive(Debug, Clone)]
pub struct NumberScope {
    pub flow: String,
    pub tenant: String,
    pub project: String,
    pub private: bool,
}

pub type NumberScopeFn = Arc<dyn Fn(&str) -> Option<NumberScope> + Send + Sync>;

/// What the shipped dialplan's fallback puts in a recording's name:
/// `fallback-<dialled digits>-<caller digits>-<unique id>` (see asterisk/extensions.conf).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackName {
    pub dialled: String,
    pub caller: String,
    pub unique_id: String,
    /// From the unique id (`<unix seconds>.<sequence>`): when Asterisk made the channel.
    pub started_at_ms: i64,
}

pub fn parse_fallback_name(name: &str) -> Option<FallbackName> {
    let rest = name.strip_prefix("fallback-")?;
    let mut parts = rest.splitn(3, '-');
    let (dialled, caller, unique_id) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |t: &str| {
        t.bytes()
            .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#' || b == b'+')
    };
    let (seconds, sequence) = unique_id.split_once('.')?;
    let started_at_ms = seconds.parse::<i64>().ok()?.checked_mul(1000)?;
    (!dialled.is_empty()
        && dialled.len() <= 32
        && caller.len() <= 32
        && digits(dialled)
        && digits(caller)
        && !sequence.is_empty()
        && sequence.bytes().all(|b| b.is_ascii_digit()))
    .then(|| FallbackName {
        dialled: dialled.to_string(),
        caller: caller.to_string(),
        unique_id: unique_id.to_string(),
        started_at_ms,
    })
}

fn recording_name(rel: &str) -> String {
    match rel.rsplit_once('.') {
        Some((stem, _)) => stem.to_string(),
        None => rel.to_string(),
    }
}

/// The columns the indexer writes, in the order of its values.
const ROW_COLUMNS: [&str; 32] = [
    "path",
    // The instance whose recordings folder holds the file: with several instances on one
    // database, a row is found by (node_id, path).
    "node_id",
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
    "asterisk_started_at_ms",
    // Set when the row is made (the deployment's `default_compliance`); never changed by a
    // re-index, so an admin's decision stays.
    "compliance",
];

/// A value the indexer writes.
enum Stored {
    Text(Option<String>),
    Int(i64),
    MaybeInt(Option<i64>),
}

fn bind_stored<'q>(
    mut query: sqlx::query::QueryAs<'q, sqlx::Any, (i64,), sqlx::any::AnyArguments<'q>>,
    values: &'q [Stored],
) -> sqlx::query::QueryAs<'q, sqlx::Any, (i64,), sqlx::any::AnyArguments<'q>> {
    for value in values {
        query = match value {
            Stored::Text(text) => query.bind(text.as_deref()),
            Stored::Int(int) => query.bind(*int),
            Stored::MaybeInt(int) => query.bind(*int),
        };
    }
    query
}

/// `UPDATE ... WHERE path = $1 AND node_id = $2`: every column but those two; consent an admin
/// or a flow set is kept (only `unknown` is replaced).
static UPDATE_ROW: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let sets: Vec<String> = ROW_COLUMNS
        .iter()
        .enumerate()
        .skip(2)
        .map(|(i, column)| match *column {
            "consent" => format!(
                "consent = CASE WHEN consent = 'unknown' THEN ${} ELSE consent END",
                i + 1
            ),
            "compliance" => format!("compliance = COALESCE(compliance, ${})", i + 1),
            _ => format!("{column} = ${}", i + 1),
        })
        .collect();
    format!(
        "UPDATE recordings SET {} WHERE path = $1 AND node_id = $2 RETURNING id",
        sets.join(", ")
    )
});

static INSERT_ROW: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let placeholders: Vec<String> = (1..=ROW_COLUMNS.len()).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO recordings ({}) VALUES ({}) ON CONFLICT (node_id, path) DO NOTHING RETURNING id",
        ROW_COLUMNS.join(", "),
        placeholders.join(", ")
    )
});

/// A call bridged without recording goes straight into the list (no file): its path is
/// `call:<id>`, which the indexer never treats as a file.
pub async fn add_not_recorded(
    conn: &mut sqlx::AnyConnection,
    row: &RecordingRow,
    reason: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = sqlx::Connection::begin(conn).await?;
    // The row's values as `calls::bind_row` numbers them, the reason $17.
    let inserted = calls::bind_row(
        sqlx::query(
            "INSERT INTO recordings (path, name, format, status, reason, size_bytes, mtime_ms, call_id, tenant, project, \
             flow, node, node_type, direction, caller_name, caller_number, callee, started_at_ms, participants, private, \
             consent, indexed_at_ms) \
             VALUES ($1, $1, $11, 'not_recorded', $17, 0, $12, $2, $3, $13, $4, $5, $6, $7, $8, $9, $10, $12, $16, $14, $15, $12) \
             ON CONFLICT (node_id, path) DO NOTHING RETURNING id",
        ),
        row,
    )
    .bind(reason)
    .fetch_optional(&mut *tx)
    .await?
    .map(|found| found.try_get::<i64, _>(0))
    .transpose()?;
    if let Some(id) = inserted {
        store_name_words(&mut tx, id, &row.caller_name, true).await?;
    }
    tx.commit().await
}

/// Stores the words of recording `id`'s caller name, for the name search. A row written again
/// (a growing file, then final) usually keeps its caller: its words are compared first and
/// left alone when they match, so a re-index costs one read instead of a delete and inserts.
pub async fn store_name_words(
    conn: &mut sqlx::AnyConnection,
    id: i64,
    caller_name: &str,
    new_row: bool,
) -> Result<(), sqlx::Error> {
    let words = name_words(caller_name);
    if !new_row {
        let mut stored: Vec<String> = sqlx::query_as::<_, (String,)>(
            "SELECT word FROM recording_words WHERE recording_id = $1",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|(word,)| word)
        .collect();
        stored.sort();
        if stored == words {
            return Ok(());
        }
        sqlx::query("DELETE FROM recording_words WHERE recording_id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    if words.is_empty() {
        return Ok(());
    }
    // One statement for all of them: $1 is the recording, $2... the words.
    let rows: Vec<String> = (0..words.len())
        .map(|i| format!("(${}, $1)", i + 2))
        .collect();
    let sql = format!(
        "INSERT INTO recording_words (word, recording_id) VALUES {} ON CONFLICT DO NOTHING",
        rows.join(", ")
    );
    let mut query = sqlx::query(&sql).bind(id);
    for word in &words {
        query = query.bind(word);
    }
    query.execute(&mut *conn).await?;
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
        let (finished_tx, finished_rx) = mpsc::channel(EVENT_QUEUE);
        Indexer {
            db,
            root,
            settle,
            state: Arc::new(ScanState::default()),
            default_scope: ("default".into(), "default".into()),
            number_scope: None,
            new_compliance: None,
            finished_tx,
            finished_rx: std::sync::Mutex::new(Some(finished_rx)),
            ready_notify: Vec::new(),
            keys: None,
            node: DEFAULT_NODE.to_string(),
        }
    }

    /// The rows this indexer keeps are those of node `node` (its recordings folder's).
    pub fn with_node(mut self, node: &str) -> Indexer {
        self.node = node.to_string();
        self
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// `notify` is told each time recordings become final.
    pub fn with_ready_notify(mut self, notify: Arc<tokio::sync::Notify>) -> Indexer {
        self.ready_notify.push(notify);
        self
    }

    /// Recordings sealed at rest are read through `keys`.
    pub fn with_keys(mut self, keys: Option<Arc<crate::encryption::Keyring>>) -> Indexer {
        self.keys = keys;
        self
    }

    /// Files found on disk without call metadata belong to `tenant` and `project`.
    pub fn with_default_scope(mut self, tenant: &str, project: &str) -> Indexer {
        self.default_scope = (tenant.to_string(), project.to_string());
        self
    }

    /// Where new recordings' compliance status comes from (read at each new row, so a change
    /// of the setting applies to the next recording).
    pub fn with_new_compliance(
        mut self,
        status: Arc<dyn Fn() -> &'static str + Send + Sync>,
    ) -> Indexer {
        self.new_compliance = Some(status);
        self
    }

    /// How to find the tenant, project and privacy of a dialled number (the flows').
    pub fn with_number_scope(mut self, lookup: NumberScopeFn) -> Indexer {
        self.number_scope = Some(lookup);
        self
    }

    /// The call metadata of a recording Asterisk made through the dialplan fallback, read from
    /// its name: caller and dialled number, the call's start, the number's flow's scope.
    fn fallback_meta(&self, name: &str) -> Option<CallMeta> {
        let fallback = parse_fallback_name(name)?;
        let scope = self
            .number_scope
            .as_ref()
            .and_then(|lookup| lookup(&fallback.dialled));
        let (tenant, project, private, flow) = match scope {
            Some(s) => (s.tenant, s.project, s.private, Some(s.flow)),
            None => (
                self.default_scope.0.clone(),
                self.default_scope.1.clone(),
                false,
                None,
            ),
        };
        Some(CallMeta {
            recording_name: name.to_string(),
            call_id: fallback.unique_id.clone(),
            tenant,
            flow,
            node: None,
            node_type: Some(super::NodeType::Fallback.as_str().into()),
            direction: super::Direction::Inbound.as_str().into(),
            caller_name: None,
            caller_number: Some(fallback.caller.clone()).filter(|c| !c.is_empty()),
            callee: Some(fallback.dialled.clone()),
            // Final once MixMonitor stops writing (settled), like a file of unknown origin.
            state: "recording".into(),
            started_at_ms: fallback.started_at_ms,
            project,
            private: i64::from(private),
            consent: super::Consent::Unknown.as_str().into(),
            participants: Some(format!("{},{}", fallback.caller, fallback.dialled)),
            // MixMonitor's start time comes from the file name, on Asterisk's clock.
            asterisk_started_at_ms: Some(fallback.started_at_ms),
            failure_cause: None,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

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

    async fn full_scan_inner(&self) -> Result<ScanReport, ScanError> {
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
        let remote = crate::archive::queue::kept_remotely(&self.db, &self.node, &vanished).await?;
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
    async fn import_sidecar(&self, rel: &str, mtime: i64) -> Result<(), DbError> {
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
        match super::transcripts::import_sidecar(&self.db, rel, mtime, read).await? {
            Ok(true) => tracing::info!(file = %rel, "transcript attached from its sidecar file"),
            Ok(false) => {}
            Err(reason) => {
                tracing::warn!(file = %rel, reason = %reason, "sidecar transcript not attached")
            }
        }
        Ok(())
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
        let state = Arc::clone(&self.state);
        let keys = self.keys.clone();
        let probed = tokio::task::spawn_blocking(move || {
            let reads = &state.file_reads_total;
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
                        reads.fetch_add(1, Ordering::Relaxed);
                        probe_sealed(&root.join(&seen.rel), is_final, keys.as_deref())
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
                let name = recording_name(&row.seen.rel);
                let meta = calls
                    .get(&name)
                    .cloned()
                    .or_else(|| self.fallback_meta(&name));
                (row, meta)
            })
            .collect()
    }

    fn count_write(&self) {
        self.state
            .write_transactions_total
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A file's row as the indexer writes it, in [`ROW_COLUMNS`] order.
    fn row_values(&self, row: &Row, m: Option<&CallMeta>) -> [Stored; ROW_COLUMNS.len()] {
        let name = recording_name(&row.seen.rel);
        // A call's file whose metadata has not arrived (its write is being retried, or the
        // file appeared first): nobody sees it until the metadata says whose it is.
        let quarantined = m.is_none() && made_by_a_call(&name);
        let (status, reason) = if quarantined {
            (
                "quarantined",
                Some("a call's recording whose metadata has not reached the library yet: hidden until it does".to_string()),
            )
        } else if let Some(cut) = m
            .filter(|m| m.state == "done" && matches!(row.status, "ready" | "empty"))
            .and_then(|m| m.failure_cause.clone())
        {
            // Whole as a file, but short of its call: say why (Asterisk restarted, the disk
            // was full).
            let reason = match row.status {
                "empty" => format!("0 bytes: nothing was recorded; {cut}"),
                _ => cut,
            };
            (row.status, Some(reason))
        } else {
            (row.status, row.probe.reason.clone())
        };
        let started = m
            .map(|m| m.started_at_ms)
            .unwrap_or(row.seen.mtime_ms - row.probe.duration_ms as i64);
        let encoding = row.probe.encoding.map(|e| match e {
            Encoding::Pcm16 => "pcm16",
            Encoding::Ulaw => "ulaw",
            Encoding::Alaw => "alaw",
        });
        let text = |v: Option<String>| Stored::Text(v);
        let int = |v: i64| Stored::Int(v);
        [
            text(Some(row.seen.rel.clone())),
            text(Some(self.node.clone())),
            text(Some(name.clone())),
            text(Some(row.probe.format.clone())),
            text(Some(status.to_string())),
            text(reason),
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
            // Quarantined: private with no participants, so no list or role sees it.
            int(m.map(|m| m.private).unwrap_or(i64::from(quarantined))),
            text(Some(
                m.map(|m| m.consent.clone())
                    .unwrap_or_else(|| super::Consent::Unknown.as_str().into()),
            )),
            Stored::MaybeInt(m.and_then(|m| m.asterisk_started_at_ms)),
            text(Some(
                self.new_compliance
                    .as_ref()
                    .map_or(super::Compliance::Permitted.as_str(), |f| f())
                    .to_string(),
            )),
        ]
    }

    /// Writes the rows in one transaction (a single update alone); returns the paths still
    /// being recorded.
    async fn write_rows(
        &self,
        conn: &mut sqlx::AnyConnection,
        rows: Vec<(Row, Option<CallMeta>)>,
    ) -> Result<Vec<String>, DbError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        self.count_write();
        let started = std::time::Instant::now();
        let growing: Vec<String> = rows
            .iter()
            .filter(|(row, _)| row.status == "recording")
            .map(|(row, _)| row.seen.rel.clone())
            .collect();
        let any_ready = rows.iter().any(|(row, _)| row.status == "ready");
        // One row rewritten with the same caller (a recording turning final): its UPDATE alone
        // is the whole write, no transaction around it.
        let mut written = false;
        if let [(row, meta)] = rows.as_slice() {
            if same_caller(row, meta.as_ref()) {
                let values = self.row_values(row, meta.as_ref());
                let updated: Option<(i64,)> = bind_stored(sqlx::query_as(&UPDATE_ROW), &values)
                    .fetch_optional(&mut *conn)
                    .await?;
                written = updated.is_some();
            }
        }
        if !written {
            let mut tx = sqlx::Connection::begin(conn).await?;
            for (row, meta) in rows {
                let m = meta.as_ref();
                let values = self.row_values(&row, m);
                // A file known to have a row is updated first (an upsert that turns into an update
                // still spends an id of the sequence, and a growing file is indexed more than once);
                // a new one is inserted first.
                let mut written = None;
                if !matches!(row.seen.before, Before::Nothing) {
                    let updated: Option<(i64,)> = bind_stored(sqlx::query_as(&UPDATE_ROW), &values)
                        .fetch_optional(&mut *tx)
                        .await?;
                    written = updated.map(|(id,)| (id, false));
                }
                if written.is_none() {
                    let inserted: Option<(i64,)> =
                        bind_stored(sqlx::query_as(&INSERT_ROW), &values)
                            .fetch_optional(&mut *tx)
                            .await?;
                    if let Some((id,)) = inserted {
                        if let Some(m) = m.filter(|m| {
                            m.node_type.as_deref() == Some(super::NodeType::Fallback.as_str())
                        }) {
                            self.state
                                .fallback_recordings_total
                                .fetch_add(1, Ordering::Relaxed);
                            self.state
                                .fallback_newest_ms
                                .fetch_max(m.started_at_ms, Ordering::Relaxed);
                        }
                        written = Some((id, true));
                    }
                }
                let (id, new_row) = match written {
                    Some(written) => written,
                    // Another writer (the watcher, a second instance) added it meanwhile.
                    None => (
                        bind_stored(sqlx::query_as(&UPDATE_ROW), &values)
                            .fetch_one(&mut *tx)
                            .await?
                            .0,
                        false,
                    ),
                };
                let caller_name = m.and_then(|m| m.caller_name.as_deref()).unwrap_or("");
                if new_row || !same_caller(&row, m) {
                    store_name_words(&mut tx, id, caller_name, new_row).await?;
                }
            }
            tx.commit().await?;
        }
        self.state.write_seconds.observe(started.elapsed());
        if any_ready {
            for notify in &self.ready_notify {
                notify.notify_one();
            }
        }
        Ok(growing)
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
    async fn index_paths_with(
        &self,
        held: &mut HeldConnection,
        paths: Vec<PathBuf>,
        mut calls: HashMap<String, CallMeta>,
    ) -> Result<Vec<String>, DbError> {
        // One connection for all the statements: each given back to the pool costs a check.
        let conn = held.get().await?;
        let mut seen = Vec::new();
        // A new folder's first files can be written before its watch is in place: index
        // whatever a folder event names.
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
        for path in expanded {
            let Ok(rel) = path.strip_prefix(&self.root) else {
                continue;
            };
            let rel = rel.to_string_lossy().replace('\\', "/");
            if is_sidecar(&path) && !in_hidden_folder(&rel) {
                let mtime = std::fs::metadata(&path).map(|m| mtime_ms(&m)).unwrap_or(0);
                self.import_sidecar(&rel, mtime).await?;
                continue;
            }
            if !is_recording_file(&path) || in_hidden_folder(&rel) {
                continue;
            }
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
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    let inside = path
                        .canonicalize()
                        .is_ok_and(|t| t.starts_with(self.root.canonicalize().unwrap_or_default()));
                    let target = std::fs::metadata(&path).ok();
                    let (size, mtime) = target
                        .map(|m| (m.len(), mtime_ms(&m)))
                        .unwrap_or((0, mtime_ms(&meta)));
                    if !unchanged(size, mtime) {
                        seen.push(Seen {
                            rel,
                            size,
                            mtime_ms: mtime,
                            escapes: !inside,
                            before,
                        });
                    }
                }
                Ok(meta) if meta.is_file() => {
                    if !unchanged(meta.len(), mtime_ms(&meta)) {
                        seen.push(Seen {
                            rel,
                            size: meta.len(),
                            mtime_ms: mtime_ms(&meta),
                            escapes: false,
                            before,
                        });
                    }
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let listed = known.as_ref().is_some_and(|(status, _, _, _)| {
                        !matches!(status.as_str(), "missing" | "not_recorded")
                    }) && !crate::archive::queue::kept_remotely(
                        &self.db,
                        &self.node,
                        std::slice::from_ref(&rel),
                    )
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
                Err(e) => {
                    tracing::warn!(path = %rel, error = %e, "cannot read a recording's metadata; left as it was");
                }
            }
        }
        if seen.is_empty() {
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
        self.write_rows(conn, rows).await
    }

    /// Removes the rows of recordings that never were (a cancelled lead-in).
    async fn forget(&self, paths: &[String]) -> Result<(), DbError> {
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
    async fn growing_paths(&self) -> Result<Vec<String>, DbError> {
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
                    Ok(()) => indexer.state.failing_since_ms.store(0, Ordering::Relaxed),
                    Err(e) => {
                        // The next try takes a connection the pool has checked.
                        conn.release();
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
    async fn settle_finished(
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
    async fn settle_growing(
        &self,
        conn: &mut HeldConnection,
        growing: &mut Growing,
    ) -> Result<(), DbError> {
        let settle_ms = self.settle.as_millis() as i64;
        let now = now_ms();
        let mut due = Vec::new();
        for (rel, entry) in growing.entries.iter_mut() {
            let path = self.root.join(rel);
            match std::fs::metadata(&path) {
                Ok(meta) => {
                    let (size, mtime) = (meta.len(), mtime_ms(&meta));
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

/// A recording ARI finished, and its call metadata as the finish left it.
type Finished = (String, Option<CallMeta>);

async fn recv_finished(rx: &mut Option<mpsc::Receiver<Finished>>) -> Option<Finished> {
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
struct Growing {
    entries: HashMap<String, GrowingEntry>,
}

struct GrowingEntry {
    written_at: std::time::Instant,
    written_size: u64,
}

impl GrowingEntry {
    fn now() -> GrowingEntry {
        GrowingEntry {
            written_at: std::time::Instant::now(),
            written_size: 0,
        }
    }
}

impl Growing {
    fn add(&mut self, rels: Vec<String>) {
        for rel in rels {
            self.entries.entry(rel).or_insert_with(GrowingEntry::now);
        }
    }
    /// The files of the recording named `name` that are growing.
    fn paths_of(&self, name: &str) -> Vec<String> {
        self.entries
            .keys()
            .filter(|rel| recording_name(rel) == name)
            .cloned()
            .collect()
    }

    fn remove(&mut self, rel: &str) {
        self.entries.remove(rel);
    }
    fn len(&self) -> usize {
        self.entries.len()
    }
    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    fn contains_path(&self, root: &Path, path: &Path) -> bool {
        path.strip_prefix(root)
            .map(|rel| {
                self.entries
                    .contains_key(&rel.to_string_lossy().replace('\\', "/"))
            })
            .unwrap_or(false)
    }
}

/// The time a file was last modified, for tests that age a file.
pub fn set_mtime(path: &Path, when: SystemTime) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new().append(true).open(path)?;
    file.set_modified(when)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The queries the indexer runs while calls are recorded find their rows through an index
    /// on SQLite without statistics (the service never runs ANALYZE): a plan that walks the
    /// table costs every call in proportion to the library's size.
    #[tokio::test]
    async fn per_call_queries_use_an_index() {
        let dir = tempfile::tempdir().expect("dir");
        let db = Database::open(&format!(
            "sqlite://{}/plan.db?mode=rwc",
            dir.path().display()
        ))
        .await
        .expect("database");
        // A library of one node's recordings, as the soak's: the planner's choice depends on it.
        for i in 0..500 {
            sqlx::query(
                "INSERT INTO recordings (path, node_id, name, format, status, size_bytes, mtime_ms, started_at_ms, indexed_at_ms) \
                 VALUES ($1, 'node', $2, 'wav', 'ready', 1, 1, $3, 1)",
            )
            .bind(format!("old/{i}.wav"))
            .bind(format!("old-{i}"))
            .bind(i64::from(i))
            .execute(&db.pool)
            .await
            .expect("row");
        }
        for (sql, index) in [
            (GROWING_ROWS, "recordings_status"),
            (KNOWN_ROW, "recordings_node_path"),
            (RECORDING_BY_NAME, "recordings_name"),
        ] {
            let explain = format!("EXPLAIN QUERY PLAN {sql}");
            let mut query = sqlx::query_as::<_, (i64, i64, i64, String)>(&explain);
            for value in ["a.wav", "node"].iter().take(sql.matches('$').count()) {
                query = query.bind(*value);
            }
            let plan = query.fetch_all(&db.pool).await.expect("plan");
            let steps: Vec<&str> = plan.iter().map(|(_, _, _, step)| step.as_str()).collect();
            assert!(
                steps.iter().any(|s| s.contains(index))
                    && !steps.iter().any(|s| s.starts_with("SCAN")),
                "{sql}: {steps:?}"
            );
        }
    }

    #[test]
    fn fallback_names_carry_the_dialled_number_the_caller_and_the_start() {
        assert_eq!(
            parse_fallback_name("fallback-100-5551001-1795528423.4986"),
            Some(FallbackName {
                dialled: "100".into(),
                caller: "5551001".into(),
                unique_id: "1795528423.4986".into(),
                started_at_ms: 1_795_528_423_000,
            })
        );
        // No caller ID: an empty caller.
        assert_eq!(
            parse_fallback_name("fallback-100--1795528423.1").map(|f| f.caller),
            Some(String::new())
        );
        for other in [
            "fallback-100-5551001",
            "fallback--5551001-1795528423.4986",
            "fallback-1x0-5551001-1795528423.4986",
            "fallback-100-5551001-sys-1795528423.4986",
            "transfer-20261130-140001-0a1b2c3d",
        ] {
            assert_eq!(parse_fallback_name(other), None, "{other}");
        }
    }

    #[test]
    fn call_recording_names_are_told_from_other_files() {
        for ours in [
            "transfer-20261130-140001-0a1b2c3d",
            "hunt-group-20261130-140001-ffffffff",
            "voicemail-200-20261130-140001-00000000",
        ] {
            assert!(made_by_a_call(ours), "{ours}");
        }
        for other in [
            "call",
            "mixmonitor-1701350000.123",
            "transfer-20261130-140001-0A1B2C3D",
            "transfer-2026113-140001-0a1b2c3d",
            "-20261130-140001-0a1b2c3d",
            "archive/transfer-20261130-140001-0a1b2c3d",
        ] {
            assert!(!made_by_a_call(other), "{other}");
        }
    }
}
