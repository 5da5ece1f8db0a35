//! Folding a principal's repeated audit events (see `audit::record`): the first
//! [`FOLD_AFTER`] identical events of a [`FOLD_WINDOW_MS`] window are written one by one, the
//! rest counted and written as one event when the window ends. The state behind it, in memory.

use std::collections::HashMap;
use std::sync::Mutex;

use super::audit::AuditEntry;

/// How long repeats of one foldable event are counted before the count is written.
pub const FOLD_WINDOW_MS: i64 = 60_000;
/// Identical events written one by one in a window before the rest are counted: what a person
/// does (a few plays of a recording, a player's handful of range requests) stays event by
/// event; a script's or a player's flood becomes one counted event.
pub const FOLD_AFTER: u64 = 50;

/// What makes two events the same for folding: everything but the time, and the detail only
/// when no recording is named (then the detail names the target: a call, a missing id). Range
/// requests of one recording are the same event whatever their range.
type FoldKey = (
    String,
    String,
    &'static str,
    Option<i64>,
    String,
    String,
    Option<String>,
);

/// Repeats of a foldable event in its window: the first `FOLD_AFTER` written, the rest counted.
struct Fold {
    first: AuditEntry,
    first_at_ms: i64,
    /// When the first counted (not written) repeat came, and the last.
    counted_from_ms: i64,
    last_at_ms: i64,
    written: u64,
    repeats: u64,
}

impl Fold {
    /// The event that stands for the repeats: the first's fields, the count and the span.
    fn summary(self) -> AuditEntry {
        let span = time_text;
        let mut entry = self.first;
        entry.detail = Some(format!(
            "{} more times from {} to {}{}",
            self.repeats,
            span(self.counted_from_ms),
            span(self.last_at_ms),
            entry
                .detail
                .as_deref()
                .map(|d| format!(" (first: {d})"))
                .unwrap_or_default()
        ));
        entry.foldable = false;
        entry
    }
}

/// A time in an event's detail, as the API writes times (RFC 3339, milliseconds, UTC).
pub(super) fn time_text(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn fold_key(entry: &AuditEntry) -> FoldKey {
    (
        entry.actor.clone(),
        entry.tenant.clone(),
        entry.action,
        entry.recording_id,
        entry.outcome.clone(),
        entry.client.clone(),
        entry
            .recording_id
            .is_none()
            .then(|| entry.detail.clone())
            .flatten(),
    )
}

/// What [`Folds::count`] decided for an event.
pub(super) enum Counted {
    /// Write it; first the count of the window it ended, if that window had repeats.
    Write { ended: Option<AuditEntry> },
    /// A repeat past `FOLD_AFTER`: counted, not written.
    Repeat,
}

/// The windows open now, by what makes events the same.
#[derive(Default)]
pub(super) struct Folds(Mutex<HashMap<FoldKey, Fold>>);

impl Folds {
    fn windows(&self) -> std::sync::MutexGuard<'_, HashMap<FoldKey, Fold>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts `entry` (foldable) at `now` (ms) into its window.
    pub(super) fn count(&self, entry: &AuditEntry, now: i64) -> Counted {
        let key = fold_key(entry);
        let mut windows = self.windows();
        if let Some(fold) = windows
            .get_mut(&key)
            .filter(|f| now - f.first_at_ms < FOLD_WINDOW_MS)
        {
            if fold.written < FOLD_AFTER {
                fold.written += 1;
                return Counted::Write { ended: None };
            }
            if fold.repeats == 0 {
                fold.counted_from_ms = now;
            }
            fold.repeats += 1;
            fold.last_at_ms = now;
            return Counted::Repeat;
        }
        let ended = windows
            .remove(&key)
            .filter(|f| f.repeats > 0)
            .map(Fold::summary);
        windows.insert(
            key,
            Fold {
                first: entry.clone(),
                first_at_ms: now,
                counted_from_ms: now,
                last_at_ms: now,
                written: 1,
                repeats: 0,
            },
        );
        Counted::Write { ended }
    }

    /// Closes the windows that have ended by `now` (every one when `all`); returns the counts
    /// to write.
    pub(super) fn ended(&self, now: i64, all: bool) -> Vec<AuditEntry> {
        let mut windows = self.windows();
        let keys: Vec<FoldKey> = windows
            .iter()
            .filter(|(_, f)| all || now - f.first_at_ms >= FOLD_WINDOW_MS)
            .map(|(k, _)| k.clone())
            .collect();
        keys.iter()
            .filter_map(|k| windows.remove(k))
            .filter(|f| f.repeats > 0)
            .map(Fold::summary)
            .collect()
    }
}
