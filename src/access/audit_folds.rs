//! Folding repeated events (see `audit::record`): the first [`FOLD_AFTER`] events of one kind
//! in a [`FOLD_WINDOW_MS`] window go through, the rest are counted, and the count is handed back
//! when the window ends. Knows nothing of what an event is: `K` says which events are the same,
//! `T` is what is kept of the first.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

/// How long repeats of one foldable event are counted before the count is written.
pub const FOLD_WINDOW_MS: i64 = 60_000;
/// Identical events written one by one in a window before the rest are counted: what a person
/// does (a few plays of a recording, a player's handful of range requests) stays event by
/// event; a script's or a player's flood becomes one counted event.
pub const FOLD_AFTER: u64 = 50;

/// Repeats of an event in its window: the first `FOLD_AFTER` written, the rest counted.
struct Fold<T> {
    first: T,
    first_at_ms: i64,
    /// When the first counted (not written) repeat came, and the last.
    counted_from_ms: i64,
    last_at_ms: i64,
    written: u64,
    repeats: u64,
}

/// A window that ended with repeats counted in it.
pub(super) struct Ended<T> {
    /// The window's first event.
    pub first: T,
    pub repeats: u64,
    /// When the first and the last counted repeat came (ms since the epoch).
    pub from_ms: i64,
    pub to_ms: i64,
}

impl<T> Fold<T> {
    fn ended(self) -> Option<Ended<T>> {
        (self.repeats > 0).then_some(Ended {
            first: self.first,
            repeats: self.repeats,
            from_ms: self.counted_from_ms,
            to_ms: self.last_at_ms,
        })
    }
}

/// What [`Folds::count`] decided for an event.
pub(super) enum Counted<T> {
    /// Write it; first the count of the window it ended, if that window had repeats.
    Write { ended: Option<Ended<T>> },
    /// A repeat past `FOLD_AFTER`: counted, not written.
    Repeat,
}

/// The windows open now, by what makes events the same.
pub(super) struct Folds<K, T>(Mutex<HashMap<K, Fold<T>>>);

impl<K, T> Default for Folds<K, T> {
    fn default() -> Self {
        Folds(Mutex::new(HashMap::new()))
    }
}

impl<K: Hash + Eq + Clone, T: Clone> Folds<K, T> {
    fn windows(&self) -> std::sync::MutexGuard<'_, HashMap<K, Fold<T>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts the event `key` (kept as `first` when it opens a window) at `now` (ms).
    pub(super) fn count(&self, key: K, first: &T, now: i64) -> Counted<T> {
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
        let ended = windows.remove(&key).and_then(Fold::ended);
        windows.insert(
            key,
            Fold {
                first: first.clone(),
                first_at_ms: now,
                counted_from_ms: now,
                last_at_ms: now,
                written: 1,
                repeats: 0,
            },
        );
        Counted::Write { ended }
    }

    /// Closes the windows that have ended by `now` (every one when `all`); returns those with
    /// repeats counted.
    pub(super) fn ended(&self, now: i64, all: bool) -> Vec<Ended<T>> {
        let mut windows = self.windows();
        let keys: Vec<K> = windows
            .iter()
            .filter(|(_, f)| all || now - f.first_at_ms >= FOLD_WINDOW_MS)
            .map(|(k, _)| k.clone())
            .collect();
        keys.iter()
            .filter_map(|k| windows.remove(k))
            .filter_map(Fold::ended)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_first_fifty_repeats_are_counted_until_the_window_ends() {
        let folds: Folds<&str, u32> = Folds::default();
        for n in 0..FOLD_AFTER {
            assert!(matches!(
                folds.count("play", &1, n as i64),
                Counted::Write { ended: None }
            ));
        }
        for n in 0..10 {
            assert!(matches!(folds.count("play", &1, 100 + n), Counted::Repeat));
        }
        assert!(
            folds.ended(1_000, false).is_empty(),
            "the window is still open"
        );
        let ended = folds.ended(FOLD_WINDOW_MS, false);
        assert_eq!(ended.len(), 1);
        assert_eq!(
            (ended[0].repeats, ended[0].from_ms, ended[0].to_ms),
            (10, 100, 109)
        );
    }
}
