//! Operator metrics in Prometheus text format (`GET /metrics`).
//!
//! A handful of counters, gauges and histograms kept with atomics; labelled ones sit behind a
//! mutex held only for an increment, never across an await.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms' buckets: 0.5 ms to 10 s.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A Prometheus histogram of durations with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations at or under each bound (not cumulative; summed when rendered), then +Inf.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let slot = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Writes the series of `name` with `labels` (`key="value"` pairs, or empty).
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.counts[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

/// Writes a metric's HELP and TYPE lines.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[derive(Default)]
pub struct Metrics {
    ari_connected: AtomicBool,
    ari_reconnects: AtomicU64,
    events_by_type: Mutex<BTreeMap<&'static str, u64>>,
    calls_active: AtomicI64,
    recordings_started: AtomicU64,
    recordings_finished: AtomicU64,
    recordings_failed: AtomicU64,
    http_requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// From the answering party's StasisStart to its record request leaving (beside its add).
    pub record_request_delay: Histogram,
    /// From Asterisk stamping an event to the app reading it.
    pub event_lag: Histogram,
    /// ARI REST round trips, by operation.
    ari_requests: Mutex<BTreeMap<&'static str, Arc<Histogram>>>,
    /// Database write transactions of the call runtime (call state, recording metadata).
    pub call_db_writes: Histogram,
    /// Refused unauthenticated attempts past their address's rate, answered 429 unaudited.
    audit_suppressed: AtomicU64,
    http_connections_open: AtomicI64,
    library_write_retries: AtomicU64,
    calls_left_to_asterisk: AtomicU64,
    http_connections_refused: AtomicU64,
    requests_rate_limited: AtomicU64,
    /// When the library's writes (call metadata, indexing) started failing; 0 while they work.
    db_writes_failing_since_ms: AtomicI64,
    recordings_cut_by_asterisk_restart: AtomicU64,
    recordings_cut_by_full_disk: AtomicU64,
    recordings_resumed_after_full_disk: AtomicU64,
    /// Webhook delivery attempts by outcome (delivered, retried, failed).
    webhook_attempts: Mutex<BTreeMap<&'static str, u64>>,
    /// From a webhook's request leaving to the receiver's answer.
    pub webhook_latency: Histogram,
}

impl Metrics {
    pub fn set_ari_connected(&self, up: bool) {
        self.ari_connected.store(up, Ordering::Relaxed);
    }
    pub fn ari_connected(&self) -> bool {
        self.ari_connected.load(Ordering::Relaxed)
    }
    pub fn count_reconnect(&self) {
        self.ari_reconnects.fetch_add(1, Ordering::Relaxed);
    }
    pub fn reconnects(&self) -> u64 {
        self.ari_reconnects.load(Ordering::Relaxed)
    }
    pub fn count_event(&self, kind: &'static str) {
        if let Ok(mut map) = self.events_by_type.lock() {
            *map.entry(kind).or_default() += 1;
        }
    }
    pub fn set_calls_active(&self, n: usize) {
        self.calls_active
            .store(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
    }
    pub fn count_recording_started(&self) {
        self.recordings_started.fetch_add(1, Ordering::Relaxed);
    }
    pub fn count_recording_finished(&self) {
        self.recordings_finished.fetch_add(1, Ordering::Relaxed);
    }
    pub fn count_recording_failed(&self) {
        self.recordings_failed.fetch_add(1, Ordering::Relaxed);
    }
    pub fn count_audit_suppressed(&self) {
        self.audit_suppressed.fetch_add(1, Ordering::Relaxed);
    }
    pub fn count_library_write_retry(&self) {
        self.library_write_retries.fetch_add(1, Ordering::Relaxed);
    }
    pub fn count_call_left_to_asterisk(&self) {
        self.calls_left_to_asterisk.fetch_add(1, Ordering::Relaxed);
    }
    pub fn count_recording_cut_by_full_disk(&self) {
        self.recordings_cut_by_full_disk
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_recording_resumed_after_full_disk(&self) {
        self.recordings_resumed_after_full_disk
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_webhook(&self, outcome: &'static str) {
        if let Ok(mut map) = self.webhook_attempts.lock() {
            *map.entry(outcome).or_insert(0) += 1;
        }
    }

    pub fn count_recording_cut_by_asterisk_restart(&self) {
        self.recordings_cut_by_asterisk_restart
            .fetch_add(1, Ordering::Relaxed);
    }
    /// A library write (call metadata, a file's row) failed and will be tried again.
    pub fn note_db_write_failed(&self) {
        let now = crate::clock::now_ms();
        let _ = self.db_writes_failing_since_ms.compare_exchange(
            0,
            now,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
    /// A library write went through: the database takes writes again.
    pub fn note_db_write_ok(&self) {
        self.db_writes_failing_since_ms.store(0, Ordering::Relaxed);
    }
    /// Since when library writes fail (ms since the epoch), if they do.
    pub fn db_writes_failing_since(&self) -> Option<i64> {
        Some(self.db_writes_failing_since_ms.load(Ordering::Relaxed)).filter(|&ms| ms > 0)
    }
    pub fn count_request_rate_limited(&self) {
        self.requests_rate_limited.fetch_add(1, Ordering::Relaxed);
    }
    pub fn count_http_connection_refused(&self) {
        self.http_connections_refused
            .fetch_add(1, Ordering::Relaxed);
    }
    pub fn http_connections_refused(&self) -> u64 {
        self.http_connections_refused.load(Ordering::Relaxed)
    }
    pub fn calls_left_to_asterisk(&self) -> u64 {
        self.calls_left_to_asterisk.load(Ordering::Relaxed)
    }
    pub fn library_write_retries(&self) -> u64 {
        self.library_write_retries.load(Ordering::Relaxed)
    }
    /// One HTTP connection more (`+1`) or fewer (`-1`).
    pub fn add_http_connections(&self, delta: i64) {
        self.http_connections_open
            .fetch_add(delta, Ordering::Relaxed);
    }
    pub fn http_connections_open(&self) -> i64 {
        self.http_connections_open.load(Ordering::Relaxed)
    }
    pub fn count_http(&self, route: &str, status: u16) {
        if let Ok(mut map) = self.http_requests.lock() {
            *map.entry((route.to_string(), status)).or_default() += 1;
        }
    }

    pub fn observe_ari(&self, operation: &'static str, elapsed: Duration) {
        let histogram = match self.ari_requests.lock() {
            Ok(mut map) => Arc::clone(map.entry(operation).or_default()),
            Err(_) => return,
        };
        histogram.observe(elapsed);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, value: i64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        gauge(
            &mut out,
            "ari_connected",
            "1 while the ARI event websocket is open.",
            i64::from(self.ari_connected()),
        );
        counter(
            &mut out,
            "ari_reconnects_total",
            "Reconnect attempts of the ARI websocket.",
            self.reconnects(),
        );
        let _ = writeln!(
            out,
            "# HELP ari_events_total ARI events received, by type.\n# TYPE ari_events_total counter"
        );
        if let Ok(map) = self.events_by_type.lock() {
            for (kind, n) in map.iter() {
                let _ = writeln!(out, "ari_events_total{{type=\"{kind}\"}} {n}");
            }
        }
        counter(
            &mut out,
            "audit_events_suppressed_total",
            "Refused sign-ins and signed links from an address past its failure rate: answered 429, not audited one by one.",
            self.audit_suppressed.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "library_write_retries_total",
            "Call metadata writes that failed and were tried again (the database was away or busy).",
            self.library_write_retries(),
        );
        counter(
            &mut out,
            "calls_left_to_asterisk_total",
            "Conversations a start found in Asterisk with no saved state to resume them from, left to Asterisk instead of cut (ended when a party leaves).",
            self.calls_left_to_asterisk(),
        );
        counter(
            &mut out,
            "recordings_cut_by_asterisk_restart_total",
            "Recordings found ended, and short, after Asterisk restarted while they ran: indexed with that reason.",
            self.recordings_cut_by_asterisk_restart
                .load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "recordings_cut_by_full_disk_total",
            "Recordings Asterisk ended early because the recordings disk was full: indexed with that reason.",
            self.recordings_cut_by_full_disk.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "recordings_resumed_after_full_disk_total",
            "Calls recorded again (a new segment) once the full recordings disk had room.",
            self.recordings_resumed_after_full_disk
                .load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "database_writes_failing",
            "1 while the library's writes (call metadata, indexing) fail and are being retried.",
            i64::from(self.db_writes_failing_since().is_some()),
        );
        counter(
            &mut out,
            "requests_rate_limited_total",
            "Requests of signed-in users past API_REQUESTS_PER_MINUTE: answered 429, not audited one by one.",
            self.requests_rate_limited.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "http_connections_refused_total",
            "Connections closed at once because their client address already held http_max_connections_per_client.",
            self.http_connections_refused(),
        );
        gauge(
            &mut out,
            "http_connections_open",
            "HTTP connections open on the main address now (capped by http_max_connections).",
            self.http_connections_open(),
        );
        gauge(
            &mut out,
            "calls_active",
            "Calls in the Stasis application now.",
            self.calls_active.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP recordings_total Recordings by outcome.\n# TYPE recordings_total counter"
        );
        for (outcome, value) in [
            ("started", &self.recordings_started),
            ("finished", &self.recordings_finished),
            ("failed", &self.recordings_failed),
        ] {
            let _ = writeln!(
                out,
                "recordings_total{{outcome=\"{outcome}\"}} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP http_requests_total HTTP requests served, by route and status.\n# TYPE http_requests_total counter"
        );
        if let Ok(map) = self.http_requests.lock() {
            for ((route, status), n) in map.iter() {
                let route = route.replace('\\', "\\\\").replace('"', "\\\"");
                let _ = writeln!(
                    out,
                    "http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        header(
            &mut out,
            "record_request_delay_seconds",
            "histogram",
            "From the answering party's StasisStart to the record request leaving for Asterisk (beside the party's add to the bridge).",
        );
        self.record_request_delay
            .render(&mut out, "record_request_delay_seconds", "");
        header(
            &mut out,
            "ari_event_lag_seconds",
            "histogram",
            "From Asterisk stamping an event to ari-recorder reading it off the websocket.",
        );
        self.event_lag.render(&mut out, "ari_event_lag_seconds", "");
        header(
            &mut out,
            "ari_request_seconds",
            "histogram",
            "ARI REST round trips, by operation.",
        );
        let ari: Vec<(&'static str, Arc<Histogram>)> = match self.ari_requests.lock() {
            Ok(map) => map.iter().map(|(k, v)| (*k, Arc::clone(v))).collect(),
            Err(_) => Vec::new(),
        };
        for (operation, histogram) in ari {
            histogram.render(
                &mut out,
                "ari_request_seconds",
                &format!("operation=\"{operation}\""),
            );
        }
        header(
            &mut out,
            "calls_db_write_seconds",
            "histogram",
            "Database write transactions of the call runtime (call state, recording metadata).",
        );
        self.call_db_writes
            .render(&mut out, "calls_db_write_seconds", "");
        header(
            &mut out,
            "webhook_attempts_total",
            "counter",
            "Webhook delivery attempts, by outcome: delivered, retried (a failure tried again later), failed (given up).",
        );
        if let Ok(map) = self.webhook_attempts.lock() {
            for (outcome, n) in map.iter() {
                let _ = writeln!(out, "webhook_attempts_total{{outcome=\"{outcome}\"}} {n}");
            }
        }
        header(
            &mut out,
            "webhook_delivery_seconds",
            "histogram",
            "From a webhook's request leaving to the receiver's answer (or the timeout).",
        );
        self.webhook_latency
            .render(&mut out, "webhook_delivery_seconds", "");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels() {
        let m = Metrics::default();
        m.set_ari_connected(true);
        m.count_event("StasisStart");
        m.count_event("StasisStart");
        m.count_recording_failed();
        m.count_http("/healthz", 200);
        let text = m.render();
        assert!(text.contains("ari_connected 1\n"), "{text}");
        assert!(
            text.contains("ari_events_total{type=\"StasisStart\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("recordings_total{outcome=\"failed\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("http_requests_total{route=\"/healthz\",status=\"200\"} 1\n"),
            "{text}"
        );
    }
}
