//! What a recording costs CPU to render: its Ogg Opus and MP3 encodings and its waveform peaks.
//!
//! Each rendering is made once per (recording, file hash, kind) at a time: concurrent requests
//! for it wait for the one job and share its result. Jobs run on blocking threads, at most
//! `parallel_jobs` at once, and a job outlives the request that started it (a client that hangs
//! up does not waste the work). Results are kept in a cache bounded by bytes that evicts its
//! least useful entries (quick_cache's S3-FIFO) rather than clearing everything.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use quick_cache::sync::Cache;
use quick_cache::{OptionsBuilder, Weighter};
use tokio::sync::Semaphore;

use super::serve::WavStream;

/// The waveform sizes a client may ask for: a handful of cache entries per recording, not one
/// per pixel width.
pub const PEAK_POINTS: [u32; 6] = [100, 200, 400, 800, 1600, 3200];

/// Which rendering of a recording.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RenderKind {
    Opus,
    Mp3,
    Peaks(u32),
}

impl RenderKind {
    fn label(self) -> &'static str {
        match self {
            RenderKind::Opus => "opus",
            RenderKind::Mp3 => "mp3",
            RenderKind::Peaks(_) => "peaks",
        }
    }
}

/// One rendering of one version of a recording: a changed file (new hash) gets new ones.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct RenderKey {
    pub recording: i64,
    pub sha256: String,
    pub kind: RenderKind,
}

#[derive(Clone)]
enum Rendering {
    Opus(Arc<Vec<u8>>),
    Mp3(Arc<Vec<u8>>),
    Peaks(Arc<Vec<[i16; 2]>>),
}

/// Weighs cache entries by the bytes they hold.
#[derive(Clone)]
struct ByBytes;

impl Weighter<RenderKey, Rendering> for ByBytes {
    fn weight(&self, key: &RenderKey, value: &Rendering) -> u64 {
        let held = match value {
            Rendering::Opus(bytes) | Rendering::Mp3(bytes) => bytes.len(),
            Rendering::Peaks(peaks) => peaks.len() * 4,
        };
        (held + key.sha256.len() + std::mem::size_of::<RenderKey>()) as u64
    }
}

/// Why a rendering could not be made.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RenderError {
    /// The audio cannot be rendered (unsupported rate, unreadable file).
    #[error("{0}")]
    Audio(String),
    /// The cache's disk is full: nothing was kept, try later.
    #[error("the cache's disk is full: {0}")]
    NoSpace(String),
    /// The job did not finish (panicked or the runtime is stopping).
    #[error("rendering job failed: {0}")]
    Job(String),
}

impl From<std::io::Error> for RenderError {
    fn from(e: std::io::Error) -> RenderError {
        if e.kind() == std::io::ErrorKind::StorageFull {
            return RenderError::NoSpace(e.to_string());
        }
        RenderError::Audio(e.to_string())
    }
}

pub struct Renderings {
    cache: Cache<RenderKey, Rendering, ByBytes>,
    jobs: Semaphore,
    opus_made: AtomicU64,
    mp3_made: AtomicU64,
    peaks_made: AtomicU64,
}

impl Renderings {
    /// A cache of at most `cache_bytes`, and at most `parallel_jobs` renderings at a time.
    pub fn new(cache_bytes: u64, parallel_jobs: usize) -> Arc<Renderings> {
        let options = OptionsBuilder::new()
            .estimated_items_capacity(256)
            .weight_capacity(cache_bytes)
            // One shard holds the whole budget, so a long call's Opus still fits; renderings
            // are asked for a few times a second at most, so one lock is no contention.
            .shards(1)
            // Half the budget for renderings asked for once so far (quick_cache's default
            // keeps 3% for them, less than one long call's Opus): what a reviewer just opened
            // stays until they come back to it.
            .hot_allocation(0.5)
            .build();
        let cache = match options {
            Ok(options) => {
                Cache::with_options(options, ByBytes, Default::default(), Default::default())
            }
            // Only a zero item estimate is refused, and 256 is not zero.
            Err(_) => Cache::with_weighter(256, cache_bytes, ByBytes),
        };
        Arc::new(Renderings {
            cache,
            jobs: Semaphore::new(parallel_jobs.max(1)),
            opus_made: AtomicU64::new(0),
            mp3_made: AtomicU64::new(0),
            peaks_made: AtomicU64::new(0),
        })
    }

    /// The recording as Ogg Opus.
    pub async fn opus(
        self: &Arc<Self>,
        recording: i64,
        sha256: &str,
        stream: WavStream,
    ) -> Result<Arc<Vec<u8>>, RenderError> {
        self.encoded(recording, sha256, stream, RenderKind::Opus)
            .await
    }

    /// The recording as MP3.
    pub async fn mp3(
        self: &Arc<Self>,
        recording: i64,
        sha256: &str,
        stream: WavStream,
    ) -> Result<Arc<Vec<u8>>, RenderError> {
        self.encoded(recording, sha256, stream, RenderKind::Mp3)
            .await
    }

    /// The recording encoded as `kind` (Opus or MP3) from its decoded samples.
    async fn encoded(
        self: &Arc<Self>,
        recording: i64,
        sha256: &str,
        stream: WavStream,
        kind: RenderKind,
    ) -> Result<Arc<Vec<u8>>, RenderError> {
        let key = RenderKey {
            recording,
            sha256: sha256.to_string(),
            kind,
        };
        let made = self
            .render(key, move || {
                // The samples go to the encoder a chunk at a time: a 30-minute call is never
                // decoded whole into memory, only its (much smaller) encoding is kept.
                let audio = |e: &dyn std::fmt::Display| RenderError::Audio(e.to_string());
                match kind {
                    RenderKind::Mp3 => {
                        let mut encoder = crate::audio::mp3::Mp3Encoder::new(
                            stream.sample_rate,
                            stream.samples(),
                        )
                        .map_err(|e| audio(&e))?;
                        stream
                            .for_each_chunk(|chunk| encoder.push(chunk).map_err(|e| audio(&e)))?;
                        let bytes = encoder.finish().map_err(|e| audio(&e))?;
                        Ok(Rendering::Mp3(Arc::new(bytes)))
                    }
                    _ => {
                        let mut encoder = crate::audio::opus::OggOpusEncoder::new(
                            stream.sample_rate,
                            stream.samples(),
                        )
                        .map_err(|e| audio(&e))?;
                        stream
                            .for_each_chunk(|chunk| encoder.push(chunk).map_err(|e| audio(&e)))?;
                        let bytes = encoder.finish().map_err(|e| audio(&e))?;
                        Ok(Rendering::Opus(Arc::new(bytes)))
                    }
                }
            })
            .await?;
        match made {
            Rendering::Opus(bytes) | Rendering::Mp3(bytes) => Ok(bytes),
            Rendering::Peaks(_) => Err(RenderError::Job("a waveform cached as audio".into())),
        }
    }

    /// Min and max of each of `points` slices (one of [`PEAK_POINTS`]).
    pub async fn peaks(
        self: &Arc<Self>,
        recording: i64,
        sha256: &str,
        points: u32,
        stream: WavStream,
    ) -> Result<Arc<Vec<[i16; 2]>>, RenderError> {
        let key = RenderKey {
            recording,
            sha256: sha256.to_string(),
            kind: RenderKind::Peaks(points),
        };
        let made = self
            .render(key, move || {
                stream
                    .peaks(points as usize)
                    .map(|peaks| Rendering::Peaks(Arc::new(peaks)))
                    .map_err(|e| RenderError::Audio(e.to_string()))
            })
            .await?;
        match made {
            Rendering::Peaks(peaks) => Ok(peaks),
            _ => Err(RenderError::Job(
                "another rendering cached as a waveform".into(),
            )),
        }
    }

    /// The cached rendering, or the one job making it (started here when there is none).
    async fn render(
        self: &Arc<Self>,
        key: RenderKey,
        job: impl FnOnce() -> Result<Rendering, RenderError> + Send + 'static,
    ) -> Result<Rendering, RenderError> {
        if let Some(hit) = self.cache.get(&key) {
            return Ok(hit);
        }
        let renderings = Arc::clone(self);
        // Its own task: the job finishes and is cached even if every requester hangs up.
        let task = tokio::spawn(async move {
            let made = renderings.cache.get_or_insert_async(&key, async {
                let _slot = renderings
                    .jobs
                    .acquire()
                    .await
                    .map_err(|e| RenderError::Job(e.to_string()))?;
                let counter = match key.kind {
                    RenderKind::Opus => &renderings.opus_made,
                    RenderKind::Mp3 => &renderings.mp3_made,
                    RenderKind::Peaks(_) => &renderings.peaks_made,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    recording = key.recording,
                    kind = key.kind.label(),
                    "rendering"
                );
                tokio::task::spawn_blocking(job)
                    .await
                    .map_err(|e| RenderError::Job(e.to_string()))?
            });
            made.await
        });
        task.await.map_err(|e| RenderError::Job(e.to_string()))?
    }

    /// Drops every rendering of a recording (it was deleted).
    pub fn forget(&self, recording: i64) {
        self.cache.retain(|key, _| key.recording != recording);
    }

    /// Prometheus lines: renderings made by kind, and the cache's size.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "# HELP audio_renderings_total Opus encodings and waveforms computed (cache misses; concurrent requests for one share a job).\n# TYPE audio_renderings_total counter"
        );
        for (kind, counter) in [
            ("opus", &self.opus_made),
            ("mp3", &self.mp3_made),
            ("peaks", &self.peaks_made),
        ] {
            let _ = writeln!(
                out,
                "audio_renderings_total{{kind=\"{kind}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP audio_render_cache_bytes Bytes held by the renderings cache (bounded).\n# TYPE audio_render_cache_bytes gauge\naudio_render_cache_bytes {}",
            self.cache.weight()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::Encoding;

    fn stream_of(dir: &std::path::Path, name: &str, samples: u64) -> WavStream {
        let path = dir.join(name);
        let source: Vec<u8> = (0..samples).map(|i| (i * 31 % 253) as u8).collect();
        std::fs::write(&path, &source).expect("write");
        WavStream {
            source: path.into(),
            encoding: Encoding::Ulaw,
            sample_rate: 8000,
            data_offset: 0,
            data_len: samples,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_one_job_per_rendering() {
        let dir = tempfile::tempdir().expect("dir");
        let stream = stream_of(dir.path(), "a.ulaw", 80_000);
        let renderings = Renderings::new(64 << 20, 2);
        let requests: Vec<_> = (0..6)
            .map(|_| {
                let (renderings, stream) = (renderings.clone(), stream.clone());
                tokio::spawn(async move { renderings.opus(1, "h", stream).await })
            })
            .collect();
        let mut first = None;
        for request in requests {
            let bytes = request.await.expect("task").expect("opus");
            let first = first.get_or_insert_with(|| bytes.clone());
            assert!(Arc::ptr_eq(first, &bytes), "one encoding shared by all");
        }
        assert_eq!(renderings.opus_made.load(Ordering::Relaxed), 1);
        // A new version of the file is a new rendering.
        renderings
            .opus(1, "h2", stream.clone())
            .await
            .expect("opus");
        assert_eq!(renderings.opus_made.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn the_cache_stays_within_its_bytes_and_evicts_rather_than_clears() {
        let dir = tempfile::tempdir().expect("dir");
        // Each waveform of 3200 points weighs about 12.9 KB; 100 KB holds a handful.
        let renderings = Renderings::new(100_000, 2);
        for id in 0..40 {
            let stream = stream_of(dir.path(), &format!("{id}.ulaw"), 8_000);
            renderings
                .peaks(id, "h", 3200, stream)
                .await
                .expect("peaks");
            assert!(renderings.cache.weight() <= 100_000);
        }
        assert_eq!(renderings.peaks_made.load(Ordering::Relaxed), 40);
        assert!(renderings.cache.len() >= 5, "{}", renderings.cache.len());
        // The newest are kept: asking again costs nothing.
        let stream = stream_of(dir.path(), "39.ulaw", 8_000);
        renderings
            .peaks(39, "h", 3200, stream)
            .await
            .expect("peaks");
        assert_eq!(renderings.peaks_made.load(Ordering::Relaxed), 40);
    }
}
