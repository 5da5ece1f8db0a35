//! What the benchmarks that run other processes share: a free port, and waiting for a state
//! another process reaches.

use std::time::Duration;

/// A port on 127.0.0.1 nothing listens on now, for a server another process binds later. It
/// is taken below the kernel's ephemeral range: a socket bound to port 0 meanwhile (this
/// process's own servers, a simulated Asterisk, any client) cannot be given it, as it could a
/// port the kernel handed out and took back. Successive calls walk on from a start that differs
/// from process to process, so two servers of one run never share one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let ephemeral_from = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let lowest = 10_000.min(ephemeral_from / 2);
    let span = u64::from(ephemeral_from - lowest);
    let start = u64::from(std::process::id()).wrapping_mul(7919)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()));
    for _ in 0..span {
        let offset = start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = lowest + u16::try_from(offset).unwrap_or(0);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below {ephemeral_from}");
}

/// Polls `done` (bounded: one minute) for state another process reaches.
#[allow(dead_code)] // not every benchmark waits on another process
pub async fn wait_for<F, Fut>(what: &str, done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..3000 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Stops `child` with SIGTERM and waits for it. A server with workers of its own (nginx) then
/// stops them too; SIGKILL to its master would leave them running, orphaned.
#[allow(dead_code)]
pub fn terminate(child: &mut std::process::Child) {
    let asked = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .is_ok_and(|s| s.success());
    if !asked {
        let _ = child.kill();
    }
    let _ = child.wait();
}
