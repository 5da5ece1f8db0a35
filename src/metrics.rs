//! Operator metrics in Prometheus text format (`GET /metrics`).
//!
//! A handful of counters and gauges kept with atomics; labelled counters sit behind a mutex held
//! only for an increment, never across an await.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

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
    pub fn count_http(&self, route: &str, status: u16) {
        if let Ok(mut map) = self.http_requests.lock() {
            *map.entry((route.to_string(), status)).or_default() += 1;
        }
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
