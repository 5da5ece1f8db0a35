//! What the indexer has done and is doing (for `/metrics`, `/readyz` and `ari-recorder index`), and how it retries.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::super::calls::CallMeta;
use crate::db::DbError;

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

    pub(super) fn set_walk_error(&self, error: Option<String>) {
        *self
            .last_walk_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = error;
    }
}

/// What a failed indexing batch left to do, and how long to wait before trying it again.
pub(super) struct Retry {
    pub(super) paths: HashSet<PathBuf>,
    pub(super) done: Vec<(String, Option<CallMeta>)>,
    pub(super) tick: bool,
    pub(super) wait: Duration,
}

/// The first wait before a failed indexing batch is tried again; it doubles up to
/// `INDEX_RETRY_MAX`.
pub(super) const INDEX_RETRY_FIRST: Duration = Duration::from_millis(250);

pub(super) const INDEX_RETRY_MAX: Duration = Duration::from_secs(5);

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

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanReport {
    pub found: u64,
    pub probed: u64,
    pub missing: u64,
    pub unchanged: u64,
}
