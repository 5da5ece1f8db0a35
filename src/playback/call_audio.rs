//! Assembled call recordings, kept on disk: built on first request, reused after.
//!
//! A file is named by its call and by the key of its timeline (the segments' hashes, offsets and
//! pauses), so a changed segment gives a new name and the old file is removed when the new one
//! is built. Concurrent requests for one file share one build; builds run on blocking threads,
//! at most `parallel_builds` at a time. The folder is held under a byte budget: past it, the
//! files used longest ago go first (a hit touches its file). With encryption at rest, files
//! are sealed with a key that lives as long as the process (a cache need not outlive it): the
//! plaintext exists only while a file is being built.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use quick_cache::sync::Cache;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::assemble::{self, Segment};
use super::renderings::RenderError;
use super::serve::WavStream;
use crate::archive::StoredAudio;
use crate::encryption::Keyring;

pub struct CallAudio {
    dir: PathBuf,
    max_bytes: u64,
    /// Files known built, by name: samples per channel and bytes of WAV. The single-flight
    /// point for concurrent requests.
    built: Cache<String, (u64, u64)>,
    builds: Semaphore,
    builds_total: AtomicU64,
    hits_total: AtomicU64,
    /// Seals each file once built (encryption at rest).
    seal: Option<Arc<Keyring>>,
}

/// An assembled call (or a recording's stereo version) on disk.
#[derive(Debug, Clone)]
pub struct CallFile {
    pub path: PathBuf,
    /// Samples per channel.
    pub samples: u64,
    /// Bytes of the WAV file (sealed, the plaintext's).
    pub len: u64,
    seal: Option<Arc<Keyring>>,
}

impl CallFile {
    /// Where its WAV bytes are read from.
    pub fn source(&self) -> StoredAudio {
        StoredAudio::File(self.path.clone()).sealed_if(self.seal.is_some(), self.seal.as_ref())
    }

    /// Writes the WAV sealed with `keys` (the deployment's, not this cache's) to `to`, a copy
    /// that outlives the process; the copy's size. The plaintext never touches the disk.
    pub fn seal_copy(&self, keys: &Keyring, to: &Path) -> std::io::Result<u64> {
        let file = std::io::BufReader::new(std::fs::File::open(&self.path)?);
        let mut out = std::io::BufWriter::new(std::fs::File::create(to)?);
        match &self.seal {
            Some(own) => keys.seal(&mut own.open(file)?, &mut out)?,
            None => keys.seal(&mut { file }, &mut out)?,
        };
        let out = out
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)?;
        out.sync_all()?;
        Ok(out.metadata()?.len())
    }
}

/// What places one segment on a call's timeline: its file's hash, offset and pauses.
pub struct TimelinePart {
    pub sha256: String,
    pub offset: u64,
    pub gaps: Vec<(u64, u64)>,
}

/// The key of a call's timeline: changes when any segment's file, offset or pauses change.
pub fn timeline_key(parts: &[TimelinePart]) -> String {
    let mut hash = Sha256::new();
    for TimelinePart {
        sha256,
        offset,
        gaps,
    } in parts
    {
        hash.update(sha256.as_bytes());
        hash.update(offset.to_le_bytes());
        for (at, len) in gaps {
            hash.update(at.to_le_bytes());
            hash.update(len.to_le_bytes());
        }
        hash.update(b";");
    }
    hex::encode(&hash.finalize()[..16])
}

/// The part of a file name that says which call it belongs to (the id itself may hold any
/// character Asterisk allows).
fn call_prefix(call_id: &str) -> String {
    hex::encode(&Sha256::digest(call_id.as_bytes())[..8])
}

impl CallAudio {
    /// Uses (and creates) `dir`; at most `max_bytes` of assembled calls are kept.
    pub fn new(dir: PathBuf, max_bytes: u64, parallel_builds: usize) -> std::io::Result<Arc<Self>> {
        Self::with_seal(dir, max_bytes, parallel_builds, false)
    }

    /// The same, each file sealed at rest (`sealed`) with a key of this process.
    pub fn with_seal(
        dir: PathBuf,
        max_bytes: u64,
        parallel_builds: usize,
        sealed: bool,
    ) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)?.flatten() {
            // Half-written files of a build a crash interrupted; sealed, every file (an earlier
            // process's key went with it).
            if sealed || entry.file_name().to_string_lossy().contains(".part-") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Arc::new(CallAudio {
            dir,
            max_bytes,
            built: Cache::new(4096),
            builds: Semaphore::new(parallel_builds.max(1)),
            builds_total: AtomicU64::new(0),
            hits_total: AtomicU64::new(0),
            seal: sealed.then(|| Arc::new(Keyring::ephemeral())),
        }))
    }

    /// The call assembled from `segments`, built now if it is not on disk already.
    pub async fn get(
        self: &Arc<Self>,
        call_id: &str,
        timeline: &str,
        segments: Vec<Segment>,
    ) -> Result<CallFile, RenderError> {
        self.file(call_id, "call", timeline, move |path| {
            assemble::write_call(&segments, path)
        })
        .await
    }

    /// Recording `recording` of call `call_id` as stereo from its parties' own recordings
    /// (`key`: their hashes), built now if it is not on disk already.
    pub async fn stereo(
        self: &Arc<Self>,
        call_id: &str,
        recording: i64,
        key: &str,
        caller: WavStream,
        agent: WavStream,
    ) -> Result<CallFile, RenderError> {
        self.file(call_id, &format!("stereo{recording}"), key, move |path| {
            assemble::write_stereo(&caller, &agent, path)
        })
        .await
    }

    /// The file `<call>-<kind>-<key>.wav`, made by `make` if it is not on disk already.
    async fn file(
        self: &Arc<Self>,
        call_id: &str,
        kind: &str,
        key: &str,
        make: impl FnOnce(&Path) -> std::io::Result<u64> + Send + 'static,
    ) -> Result<CallFile, RenderError> {
        let family = format!("{}-{kind}-", call_prefix(call_id));
        let name = format!("{family}{key}.wav");
        let path = self.dir.join(&name);
        let seal = self.seal.clone();
        // The cache's files are looked at (and touched) on a blocking thread.
        let blocking = |look: fn(&Path) -> bool, path: &Path| {
            let path = path.to_path_buf();
            async move {
                tokio::task::spawn_blocking(move || look(&path))
                    .await
                    .unwrap_or(false)
            }
        };
        if let Some((samples, len)) = self.built.get(&name) {
            if blocking(touch, &path).await {
                self.hits_total.fetch_add(1, Ordering::Relaxed);
                return Ok(CallFile {
                    path,
                    samples,
                    len,
                    seal,
                });
            }
            // Evicted from disk meanwhile (or removed by hand): build it again.
            self.built.remove(&name);
        } else if let Some((samples, len)) = match seal {
            None => {
                let found = path.clone();
                tokio::task::spawn_blocking(move || on_disk(&found))
                    .await
                    .ok()
                    .flatten()
            }
            Some(_) => None,
        } {
            // Built by an earlier process.
            self.hits_total.fetch_add(1, Ordering::Relaxed);
            self.built.insert(name, (samples, len));
            blocking(touch, &path).await;
            return Ok(CallFile {
                path,
                samples,
                len,
                seal,
            });
        }
        let this = Arc::clone(self);
        // Its own task: the build finishes even if every requester hangs up.
        let task = tokio::spawn(async move {
            let key = name.clone();
            let (samples, len) = this
                .built
                .get_or_insert_async(&key, async {
                    let _slot = this
                        .builds
                        .acquire()
                        .await
                        .map_err(|e| RenderError::Job(e.to_string()))?;
                    this.builds_total.fetch_add(1, Ordering::Relaxed);
                    let builder = Arc::clone(&this);
                    tokio::task::spawn_blocking(move || builder.build(&family, &name, make))
                        .await
                        .map_err(|e| RenderError::Job(e.to_string()))?
                })
                .await?;
            Ok::<_, RenderError>(CallFile {
                path: this.dir.join(&key),
                samples,
                len,
                seal: this.seal.clone(),
            })
        });
        task.await.map_err(|e| RenderError::Job(e.to_string()))?
    }

    fn build(
        &self,
        family: &str,
        name: &str,
        make: impl FnOnce(&Path) -> std::io::Result<u64>,
    ) -> Result<(u64, u64), RenderError> {
        let path = self.dir.join(name);
        let partial = self
            .dir
            .join(format!("{name}.part-{:08x}", fastrand::u32(..)));
        let made = make(&partial).and_then(|samples| {
            let len = std::fs::metadata(&partial)?.len();
            if let Some(keys) = &self.seal {
                keys.seal_file(&partial)?;
            }
            Ok((samples, len))
        });
        let made = match made {
            Ok(made) => made,
            Err(e) => {
                // Nothing half-written is kept (a full disk refused it, say).
                let _ = std::fs::remove_file(&partial);
                return Err(RenderError::from(e));
            }
        };
        std::fs::rename(&partial, &path).map_err(RenderError::from)?;
        // Older versions of this file (a segment changed since) are of no further use.
        self.remove_matching(|file| file.starts_with(family) && file != name);
        self.hold_budget(name);
        Ok(made)
    }

    /// Removes every assembled file of a call (its recordings were deleted or purged).
    pub fn forget_call(&self, call_id: &str) {
        let prefix = call_prefix(call_id);
        self.remove_matching(|file| file.starts_with(&prefix));
    }

    fn remove_matching(&self, matches: impl Fn(&str) -> bool) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if file.ends_with(".wav") && matches(&file) {
                let _ = std::fs::remove_file(entry.path());
                self.built.remove(&file);
            }
        }
    }

    /// Removes the files used longest ago until the folder is within its budget (never `keep`,
    /// the file just built).
    fn hold_budget(&self, keep: &str) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, u64, String)> = entries
            .flatten()
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                let name = e.file_name().to_string_lossy().into_owned();
                let used = meta.modified().ok()?;
                name.ends_with(".wav").then_some((used, meta.len(), name))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, len, name) in files {
            if total <= self.max_bytes {
                break;
            }
            if name != keep && std::fs::remove_file(self.dir.join(&name)).is_ok() {
                self.built.remove(&name);
                total -= len;
            }
        }
    }

    /// Prometheus lines: builds and cache hits, and the bytes on disk.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "# HELP call_audio_builds_total Calls assembled into one recording (cache misses).\n# TYPE call_audio_builds_total counter\ncall_audio_builds_total {}",
            self.builds_total.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP call_audio_cache_hits_total Requests for a call's recording served from an assembled file.\n# TYPE call_audio_cache_hits_total counter\ncall_audio_cache_hits_total {}",
            self.hits_total.load(Ordering::Relaxed)
        );
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Marks a file used now (the budget removes the least recently used); false when it is gone.
fn touch(path: &Path) -> bool {
    std::fs::File::options()
        .append(true)
        .open(path)
        .and_then(|f| f.set_modified(std::time::SystemTime::now()))
        .is_ok()
}

/// The samples of a complete assembled file left by an earlier process.
fn on_disk(path: &Path) -> Option<(u64, u64)> {
    let reader = hound::WavReader::open(path).ok()?;
    let len = std::fs::metadata(path).ok()?.len();
    Some((u64::from(reader.duration()), len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{wav, Encoding};

    fn segment(dir: &Path, name: &str, value: i16, len: usize, offset: u64) -> Segment {
        let path = dir.join(name);
        let mut bytes = wav::header((len * 2) as u32).to_vec();
        bytes.extend(std::iter::repeat_n(value.to_le_bytes(), len).flatten());
        std::fs::write(&path, bytes).expect("write");
        let stream = WavStream {
            source: path.into(),
            encoding: Encoding::Pcm16,
            sample_rate: 8000,
            data_offset: wav::HEADER_LEN,
            data_len: len as u64 * 2,
        };
        Segment::new(stream, offset, &[])
    }

    #[tokio::test]
    async fn built_once_then_reused_and_replaced_when_the_timeline_changes() {
        let src = tempfile::tempdir().expect("dir");
        let cache_dir = tempfile::tempdir().expect("dir");
        let cache = CallAudio::new(cache_dir.path().join("calls"), 1 << 30, 2).expect("cache");
        let segments = vec![segment(src.path(), "a.wav", 5, 100, 0)];
        let first = cache
            .get("1.1", "k1", segments.clone())
            .await
            .expect("build");
        let again = cache.get("1.1", "k1", segments.clone()).await.expect("hit");
        assert_eq!(first.path, again.path);
        assert_eq!(first.samples, 100);
        assert_eq!(cache.builds_total.load(Ordering::Relaxed), 1);
        assert_eq!(cache.hits_total.load(Ordering::Relaxed), 1);
        // The served stream is the file: a 44-byte header and the samples.
        let len = std::fs::metadata(&first.path).expect("meta").len();
        assert_eq!(len, wav::HEADER_LEN + 200);
        let changed = cache.get("1.1", "k2", segments).await.expect("rebuild");
        assert_eq!(cache.builds_total.load(Ordering::Relaxed), 2);
        assert!(!first.path.exists(), "the old version is removed");
        cache.forget_call("1.1");
        assert!(!changed.path.exists());
    }

    #[tokio::test]
    async fn the_folder_is_held_to_its_budget_oldest_first() {
        let src = tempfile::tempdir().expect("dir");
        let cache_dir = tempfile::tempdir().expect("dir");
        // Room for two 1,044-byte files, not three.
        let cache = CallAudio::new(cache_dir.path().to_path_buf(), 2500, 1).expect("cache");
        let mut paths = Vec::new();
        for (age, call) in ["c1", "c2", "c3"].into_iter().enumerate() {
            let segments = vec![segment(src.path(), "a.wav", 1, 500, 0)];
            let path = cache.get(call, "k", segments).await.expect("build").path;
            // Used in this order, whatever the file system's clock resolution.
            let used = std::time::UNIX_EPOCH + std::time::Duration::from_secs(age as u64 + 1);
            std::fs::File::options()
                .append(true)
                .open(&path)
                .and_then(|f| f.set_modified(used))
                .expect("set mtime");
            paths.push(path);
        }
        assert!(!paths[0].exists());
        assert!(paths[1].exists() && paths[2].exists());
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_build() {
        let src = tempfile::tempdir().expect("dir");
        let cache_dir = tempfile::tempdir().expect("dir");
        let cache = CallAudio::new(cache_dir.path().to_path_buf(), 1 << 30, 2).expect("cache");
        let segments = vec![segment(src.path(), "a.wav", 3, 200_000, 0)];
        let requests: Vec<_> = (0..8)
            .map(|_| {
                let (cache, segments) = (Arc::clone(&cache), segments.clone());
                tokio::spawn(async move { cache.get("call", "k", segments).await })
            })
            .collect();
        for r in requests {
            r.await.expect("join").expect("built");
        }
        assert_eq!(cache.builds_total.load(Ordering::Relaxed), 1);
    }
}
