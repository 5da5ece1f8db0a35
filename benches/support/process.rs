//! What the benchmarks that run other processes share: a free port, and waiting for a state
//! another process reaches.

use std::time::Duration;

/// A port on 127.0.0.1 nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
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
