//! A real S3-compatible server for the tests: s3s-fs from crates.io, which `scripts/test.sh`
//! builds once into `target/tools` (S3S_FS_BIN).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::process::free_port;

pub const ACCESS_KEY: &str = "archive-test-key";
pub const SECRET_KEY: &str = "archive-test-secret-0123456789";
pub const BUCKET: &str = "recordings";

/// A running s3s-fs over a folder; stopped (killed) on drop.
pub struct S3Server {
    child: Option<Child>,
    bin: PathBuf,
    pub root: PathBuf,
    port: u16,
}

/// The s3s-fs server binary; a test that needs it fails without it (such tests are marked
/// ignored, and `scripts/test.sh` builds s3s-fs and runs them).
pub fn s3s_fs_bin() -> PathBuf {
    let bin = std::env::var_os("S3S_FS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/bin/s3s-fs"));
    assert!(
        bin.is_file(),
        "{} is missing: this test needs s3s-fs; run it through scripts/test.sh, which builds it",
        bin.display()
    );
    bin
}

impl S3Server {
    /// A server on a free port over a new folder holding the bucket; not started yet.
    pub fn new(bin: PathBuf, dir: &Path) -> S3Server {
        let root = dir.join("s3");
        std::fs::create_dir_all(root.join(BUCKET)).expect("bucket folder");
        S3Server {
            child: None,
            bin,
            root,
            port: free_port(),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn start(&mut self) {
        let child = Command::new(&self.bin)
            .args(["--host", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs starts");
        self.child = Some(child);
        for _ in 0..500 {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "s3s-fs exited ({status}) instead of listening on {}",
                    self.port
                );
            }
            // The port is below the ephemeral range (see `free_port`): whoever answers is s3s-fs.
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("s3s-fs never listened");
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The bytes of object `key` as the server keeps them.
    pub fn object(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.root.join(BUCKET).join(key)).ok()
    }

    /// Every object key in the bucket.
    pub fn keys(&self) -> Vec<String> {
        let mut out = Vec::new();
        let base = self.root.join(BUCKET);
        let mut stack = vec![base.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Ok(rel) = path.strip_prefix(&base) {
                    let rel = rel.to_string_lossy().to_string();
                    // The server's own bookkeeping beside the objects.
                    if !rel.starts_with('.') && !rel.contains("/.") && !rel.ends_with(".json.tmp") {
                        out.push(rel);
                    }
                }
            }
        }
        out.sort();
        out
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
