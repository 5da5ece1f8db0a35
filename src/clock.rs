//! The service's time: what links, sessions and API tokens expire by, and what the call flows'
//! timers (a queue's `max_wait`, a hunt group's ring time, a voicemail's length) run on. The wall
//! clock plus an offset a test moves forward to see an expiry or a timeout happen without
//! waiting for it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// Milliseconds since 1970 by the wall clock: when something happened, as it is stored. Expiries
/// and timers go by a [`Clock`], which tests move on.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `ms` since 1970 as RFC 3339 in UTC with milliseconds, as the API writes times.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The capped exponential backoff with full jitter before attempt `attempts + 1`: uniform in
/// `0..=min(cap, 1 s * 2^attempts)`, so instances that failed together do not retry together.
pub fn backoff(attempts: u32, cap: Duration) -> Duration {
    let ceiling = Duration::from_secs(1)
        .saturating_mul(2u32.saturating_pow(attempts.min(30)))
        .min(cap);
    let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(fastrand::u64(0..=ms))
}

/// Cheap to clone; clones share one offset.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
    /// Wakes the sleeps when the clock is moved on, so they see their deadline passed.
    moved: Arc<Notify>,
}

impl Clock {
    /// Milliseconds since 1970.
    pub fn now_ms(&self) -> i64 {
        now_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Seconds since 1970 (what signed links carry).
    pub fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Moves the clock on by `by` (tests: expiry without a wall-clock wait).
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(by, Ordering::Relaxed);
        self.moved.notify_waiters();
    }

    /// Ends once `after` has passed on this clock: by the wall clock, or sooner when the clock
    /// is moved on past the deadline. The deadline is taken now, not when the sleep is first
    /// polled, so a move made in between counts.
    pub fn sleep(&self, after: Duration) -> impl std::future::Future<Output = ()> + Send + 'static {
        let after_ms = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
        let due = self.now_ms().saturating_add(after_ms);
        let clock = self.clone();
        async move { clock.sleep_until(due).await }
    }

    async fn sleep_until(&self, due_ms: i64) {
        loop {
            // Registered before the deadline is checked: a move in between is not missed.
            let moved = self.moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            let left = due_ms.saturating_sub(self.now_ms());
            if left <= 0 {
                return;
            }
            let left = Duration::from_millis(u64::try_from(left).unwrap_or(u64::MAX));
            tokio::select! {
                () = tokio::time::sleep(left) => {}
                () = moved => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_below_a_doubling_ceiling_and_the_cap() {
        let cap = Duration::from_secs(60);
        for attempts in 0..40 {
            let ceiling = Duration::from_secs(1u64 << attempts.min(6)).min(cap);
            for _ in 0..50 {
                assert!(backoff(attempts, cap) <= ceiling);
            }
        }
        // Full jitter: not every wait is the ceiling.
        let waits: std::collections::HashSet<Duration> =
            (0..50).map(|_| backoff(10, cap)).collect();
        assert!(waits.len() > 10);
    }

    #[test]
    fn clones_move_together() {
        let clock = Clock::default();
        let other = clock.clone();
        let before = other.now_ms();
        clock.advance(Duration::from_secs(3600));
        assert!(other.now_ms() >= before + 3_600_000);
        assert_eq!(other.now_secs(), other.now_ms().div_euclid(1000));
    }

    #[tokio::test]
    async fn a_sleep_ends_when_the_clock_is_moved_past_it() {
        let clock = Clock::default();
        // The deadline is taken here, before the task first runs.
        let sleeping = tokio::spawn(clock.sleep(Duration::from_secs(3600)));
        // Moved short of the deadline: still asleep.
        clock.advance(Duration::from_secs(1800));
        // The test runtime has one thread: this lets the sleep run and wait again.
        tokio::task::yield_now().await;
        assert!(!sleeping.is_finished());
        clock.advance(Duration::from_secs(1800));
        sleeping.await.expect("the sleep ends");
    }

    #[tokio::test]
    async fn a_sleep_of_nothing_returns_at_once() {
        Clock::default().sleep(Duration::ZERO).await;
    }
}
