//! Free space of the folders written during calls: the recordings folder (Asterisk ends a
//! recording at its first failed write and says only `RecordingFinished`), the library's SQLite
//! database and the renderings cache. Read with `statvfs` every few seconds and at once when a
//! recording ends; a folder is full when its free space is under the reserve.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// Why a recording that ended while its disk was full is short.
pub const CUT_BY_FULL_DISK: &str =
    "cut short: the recordings disk was full (Asterisk stops recording at the first write that fails)";

/// Free bytes under which a disk is taken to have refused Asterisk's writes.
const EXHAUSTED: u64 = 1 << 20;

/// A folder whose free space is watched.
#[derive(Debug)]
struct Folder {
    /// What it holds, as metrics and `/readyz` name it: `recordings`, `database`, `cache`.
    role: &'static str,
    path: PathBuf,
    free_bytes: AtomicU64,
    /// When it was first seen full in the current stretch (ms since 1970), 0 while it has room.
    full_since_ms: AtomicI64,
    /// Why the last reading failed (the folder missing, say); 0 readings failed: empty.
    unreadable: std::sync::Mutex<Option<String>>,
}

/// The watched folders. Shared; cheap to read.
#[derive(Debug)]
pub struct DiskSpace {
    folders: Vec<Folder>,
    reserve_bytes: u64,
    /// Whether the recordings folder has room: calls waiting to record again listen to it.
    recordings_room: watch::Sender<bool>,
}

impl DiskSpace {
    /// Watches the recordings folder, the SQLite database's folder (none for PostgreSQL) and
    /// the cache; a folder with fewer than `reserve_bytes` free is full.
    pub fn new(
        recordings: PathBuf,
        database: Option<PathBuf>,
        cache: PathBuf,
        reserve_bytes: u64,
    ) -> Arc<DiskSpace> {
        let mut folders = vec![Folder::new("recordings", recordings)];
        if let Some(db) = database {
            folders.push(Folder::new("database", db));
        }
        folders.push(Folder::new("cache", cache));
        let space = Arc::new(DiskSpace {
            folders,
            reserve_bytes,
            recordings_room: watch::channel(true).0,
        });
        space.check();
        space
    }

    /// Reads every folder's free space now; returns whether the recordings folder has room.
    pub fn check(&self) -> bool {
        let now = crate::clock::now_ms();
        for folder in &self.folders[1..] {
            folder.read(self.reserve_bytes, now);
        }
        self.check_recordings()
    }

    /// Reads the recordings folder's free space now (the one a recording's end asks about);
    /// returns whether it has room.
    fn check_recordings(&self) -> bool {
        self.folders[0].read(self.reserve_bytes, crate::clock::now_ms());
        let room = self.folders[0].full_since_ms.load(Ordering::Relaxed) == 0;
        self.recordings_room.send_if_modified(|was| {
            let changed = *was != room;
            *was = room;
            changed
        });
        room
    }

    /// Whether the recordings folder is out of space now (read again): a recording that ends
    /// then was cut by it. Under the reserve is not enough (Asterisk writes on until the disk
    /// refuses): under 1 MiB, or the reserve when that is smaller.
    pub fn recordings_exhausted(&self) -> bool {
        self.check_recordings();
        self.folders[0].free_bytes.load(Ordering::Relaxed) < self.reserve_bytes.min(EXHAUSTED)
    }

    /// Whether the recordings folder has room, as last read.
    pub fn recordings_room(&self) -> bool {
        *self.recordings_room.borrow()
    }

    /// Told each time the recordings folder turns full or has room again.
    pub fn watch_recordings(&self) -> watch::Receiver<bool> {
        self.recordings_room.subscribe()
    }

    /// Whether some folder is full now (`/readyz` is degraded).
    pub fn any_full(&self) -> bool {
        self.folders
            .iter()
            .any(|f| f.full_since_ms.load(Ordering::Relaxed) != 0)
    }

    /// `/readyz`'s `disk_space`: `ok` or why not, by folder.
    pub fn readiness(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for folder in &self.folders {
            let since = folder.full_since_ms.load(Ordering::Relaxed);
            let free = folder.free_bytes.load(Ordering::Relaxed);
            let unreadable = folder
                .unreadable
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let text = match (since, unreadable) {
                (_, Some(why)) => format!("free space not known: {why}"),
                (0, None) => "ok".to_string(),
                (since, None) => format!(
                    "full since {}: {free} bytes free, under the reserve of {}",
                    crate::clock::rfc3339(since),
                    self.reserve_bytes
                ),
            };
            out.insert(folder.role.to_string(), serde_json::Value::String(text));
        }
        serde_json::Value::Object(out)
    }

    /// `disk_free_bytes` and `disk_full` by folder.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        crate::metrics::header(
            out,
            "disk_free_bytes",
            "gauge",
            "Free bytes (for this service's user) on the disk of each folder written during calls.",
        );
        for f in &self.folders {
            let _ = writeln!(
                out,
                "disk_free_bytes{{folder=\"{}\"}} {}",
                f.role,
                f.free_bytes.load(Ordering::Relaxed)
            );
        }
        crate::metrics::header(
            out,
            "disk_full",
            "gauge",
            "1 while the folder's disk has less free space than DISK_RESERVE_BYTES.",
        );
        for f in &self.folders {
            let full = f.full_since_ms.load(Ordering::Relaxed) != 0;
            let _ = writeln!(out, "disk_full{{folder=\"{}\"}} {}", f.role, u8::from(full));
        }
    }

    /// Reads the folders every `every` until `shutdown`.
    pub fn spawn(self: &Arc<Self>, every: Duration, mut shutdown: watch::Receiver<bool>) {
        let space = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.changed() => return,
                }
                let had_room = space.recordings_room();
                // statvfs on a blocking thread: a network volume can be slow to answer.
                let checked = Arc::clone(&space);
                let Ok(room) = tokio::task::spawn_blocking(move || checked.check()).await else {
                    continue;
                };
                if had_room && !room {
                    tracing::warn!(
                        "the recordings disk is full: recordings stop until it has room again"
                    );
                } else if !had_room && room {
                    tracing::info!("the recordings disk has room again: calls record again");
                }
            }
        });
    }
}

impl Folder {
    fn new(role: &'static str, path: PathBuf) -> Folder {
        Folder {
            role,
            path,
            free_bytes: AtomicU64::new(0),
            full_since_ms: AtomicI64::new(0),
            unreadable: std::sync::Mutex::new(None),
        }
    }

    fn read(&self, reserve: u64, now_ms: i64) {
        let stat = match rustix::fs::statvfs(&self.path) {
            Ok(stat) => stat,
            Err(e) => {
                // A folder not made yet (the cache before its first file) is not full.
                *self.unreadable.lock().unwrap_or_else(|p| p.into_inner()) =
                    (e != rustix::io::Errno::NOENT).then(|| e.to_string());
                return;
            }
        };
        *self.unreadable.lock().unwrap_or_else(|p| p.into_inner()) = None;
        // What an unprivileged writer (Asterisk, this service) can still use.
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        self.free_bytes.store(free, Ordering::Relaxed);
        if free < reserve {
            let _ = self.full_since_ms.compare_exchange(
                0,
                now_ms,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        } else {
            self.full_since_ms.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_under_the_reserve_is_full_and_remembered() {
        let dir = tempfile::tempdir().expect("dir");
        let roomy = DiskSpace::new(dir.path().into(), None, dir.path().join("cache"), 0);
        assert!(roomy.check());
        assert!(!roomy.any_full());
        assert_eq!(roomy.readiness()["recordings"], "ok");
        assert_eq!(
            roomy.readiness()["cache"],
            "ok",
            "a cache not made yet is not full"
        );
        let full = DiskSpace::new(dir.path().into(), None, dir.path().join("cache"), u64::MAX);
        let mut told = full.watch_recordings();
        assert!(!full.check());
        assert!(!*told.borrow_and_update());
        assert!(
            !full.recordings_exhausted(),
            "under the reserve, but not out of space"
        );
        assert!(full.any_full());
        assert!(full.readiness()["recordings"]
            .as_str()
            .is_some_and(|t| t.starts_with("full since")));
        let mut text = String::new();
        full.render_metrics(&mut text);
        assert!(
            text.contains("disk_full{folder=\"recordings\"} 1"),
            "{text}"
        );
    }
}
