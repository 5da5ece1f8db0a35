//! Copies of recordings in an S3-compatible object store (the `ARCHIVE_*` settings).
//!
//! A recording that is final and hashed is queued in the database (`queue`), uploaded by the
//! `worker` (multipart when large, as ordered parts plus a manifest past `split_bytes`), read
//! back and checked against its size and SHA-256, and only then counted as stored. Verified
//! local copies go after `local_retention_days`; from then on playback, downloads, waveforms,
//! transcoding and call assembly read the bucket with Range requests (`ObjectBytes`), the same
//! bytes as from disk. The S3 protocol, signing included, is the `object_store` crate's.

pub mod calls;
mod objects;
pub mod queue;
pub mod worker;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

pub use crate::config::archive::{ArchiveSettings, MIN_SPLIT_BYTES};

/// Counters of what the archive did since start; the queue's own figures come from the
/// database, which every instance shares.
#[derive(Default)]
pub struct ArchiveStats {
    pub uploaded: AtomicU64,
    pub uploaded_bytes: AtomicU64,
    pub failures: AtomicU64,
    pub local_copies_removed: AtomicU64,
    pub objects_removed: AtomicU64,
    pub range_reads: AtomicU64,
}

/// The bucket, and how recordings are named in it.
pub struct Archive {
    store: AmazonS3,
    pub settings: ArchiveSettings,
    pub stats: ArchiveStats,
    /// Wakes the worker: a recording became final, or was deleted or purged.
    pub wake: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Mismatch(String),
    #[error("database: {0}")]
    Db(#[from] crate::db::DbError),
}

impl From<sqlx::Error> for ArchiveError {
    fn from(e: sqlx::Error) -> ArchiveError {
        ArchiveError::Db(e.into())
    }
}

impl Archive {
    /// A client of the configured store. `tls_ca_file` (PEM) is trusted besides the system's
    /// roots, for a self-hosted store with a private CA.
    pub fn connect(
        settings: ArchiveSettings,
        tls_ca_file: Option<&Path>,
    ) -> Result<Arc<Archive>, String> {
        let mut options = ClientOptions::new()
            .with_timeout(Duration::from_secs(60))
            .with_connect_timeout(Duration::from_secs(10));
        if let Some(path) = tls_ca_file {
            let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            for cert in object_store::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("{}: {e}", path.display()))?
            {
                options = options.with_root_certificate(cert);
            }
        }
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_access_key_id(&settings.access_key_id)
            .with_secret_access_key(&settings.secret_access_key)
            .with_virtual_hosted_style_request(settings.virtual_hosted)
            // The queue retries with its own backoff; a request that fails returns soon.
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(20),
                ..RetryConfig::default()
            })
            .with_client_options(options);
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(endpoint.as_str().trim_end_matches('/'))
                .with_allow_http(endpoint.scheme() == "http");
        }
        let store = builder.build().map_err(|e| e.to_string())?;
        Ok(Arc::new(Archive {
            store,
            settings,
            stats: ArchiveStats::default(),
            wake: Arc::new(tokio::sync::Notify::new()),
        }))
    }

    /// The key of a recording: prefix, tenant, the node whose folder held it (two nodes may
    /// hold the same path), then its path in that folder.
    pub fn object_key(&self, tenant: &str, node: &str, rel: &str) -> String {
        format!("{}{tenant}/{node}/{rel}", self.settings.prefix)
    }

    pub fn part_key(key: &str, part: u64) -> String {
        format!("{key}.part-{part:05}")
    }

    pub fn manifest_key(key: &str) -> String {
        format!("{key}.manifest.json")
    }

    /// A URL that fetches the object without credentials until `expires_in` passes.
    pub async fn presigned_get(&self, key: &str, expires_in: Duration) -> Result<String, String> {
        self.store
            .signed_url(reqwest::Method::GET, &ObjectPath::from(key), expires_in)
            .await
            .map(|url| url.to_string())
            .map_err(|e| e.to_string())
    }

    pub(crate) fn store(&self) -> &AmazonS3 {
        &self.store
    }
}

impl Archive {
    /// The queue's figures (shared by every instance) and this instance's counters, in the
    /// Prometheus text format.
    pub fn render_metrics(&self, summary: &queue::Summary, now_ms: i64, out: &mut String) {
        use std::fmt::Write;
        let oldest = summary
            .oldest_pending_queued_at_ms
            .map_or(0, |at| (now_ms - at).max(0) / 1000);
        for (name, help, value) in [
            (
                "archive_pending",
                "Recordings waiting to be uploaded to the archive.",
                summary.pending,
            ),
            (
                "archive_oldest_pending_age_seconds",
                "Age of the oldest upload still pending (0: none).",
                oldest,
            ),
            (
                "archive_failing",
                "Pending uploads that failed at least once.",
                summary.failing,
            ),
            (
                "archive_stored",
                "Recordings stored and verified in the archive.",
                summary.stored,
            ),
            (
                "archive_local_copies_removed",
                "Archived recordings whose local copy was removed.",
                summary.local_copies_removed,
            ),
            (
                "archive_removing",
                "Deleted or purged recordings whose objects are still to be removed.",
                summary.removing,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        let stats = &self.stats;
        for (name, help, value) in [
            (
                "archive_uploads_total",
                "Uploads verified by this instance.",
                &stats.uploaded,
            ),
            (
                "archive_uploaded_bytes_total",
                "Bytes uploaded and verified by this instance.",
                &stats.uploaded_bytes,
            ),
            (
                "archive_failures_total",
                "Failed archive attempts (each retried).",
                &stats.failures,
            ),
            (
                "archive_local_copies_removed_total",
                "Local copies this instance removed after their upload.",
                &stats.local_copies_removed,
            ),
            (
                "archive_objects_removed_total",
                "Recordings whose objects this instance removed from the bucket.",
                &stats.objects_removed,
            ),
            (
                "archive_range_reads_total",
                "Range requests to the bucket for audio no longer on disk.",
                &stats.range_reads,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
    }

    /// `/readyz`'s view: degraded (not failed) while uploads fail.
    pub fn readiness(summary: &queue::Summary, now_ms: i64) -> serde_json::Value {
        serde_json::json!({
            "status": if summary.failing > 0 { "degraded" } else { "ok" },
            "pending": summary.pending,
            "oldest_pending_seconds": summary
                .oldest_pending_queued_at_ms
                .map(|at| (now_ms - at).max(0) / 1000),
            "failing": summary.failing,
            "stored": summary.stored,
            "local_copies_removed": summary.local_copies_removed,
            "last_error": summary.last_error,
        })
    }
}

/// A stored recording read with Range requests: one object, or ordered parts of `part_bytes`.
#[derive(Debug, Clone)]
pub struct ObjectBytes {
    pub archive: Arc<Archive>,
    pub key: String,
    pub len: u64,
    pub parts: u64,
    pub part_bytes: u64,
}

impl ObjectBytes {
    /// The objects and ranges holding bytes `offset..offset + len`, in order.
    fn pieces(&self, offset: u64, len: u64) -> Vec<(String, std::ops::Range<u64>)> {
        let end = offset + len;
        if self.parts == 0 || self.part_bytes == 0 {
            return vec![(self.key.clone(), offset..end)];
        }
        let mut out = Vec::new();
        let mut pos = offset;
        while pos < end {
            let part = pos / self.part_bytes;
            let part_start = part * self.part_bytes;
            let upto = end.min(part_start + self.part_bytes);
            out.push((
                Archive::part_key(&self.key, part),
                pos - part_start..upto - part_start,
            ));
            pos = upto;
        }
        out
    }

    /// Fills `buf` from byte `offset` of the stored file. Called from blocking threads (as file
    /// reads are), so it waits on the runtime for the requests.
    pub fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        if offset + buf.len() as u64 > self.len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "read past the end of the stored recording",
            ));
        }
        let handle = tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
        let mut filled = 0usize;
        for (key, range) in self.pieces(offset, buf.len() as u64) {
            let want = (range.end - range.start) as usize;
            let bytes = handle
                .block_on(
                    self.archive
                        .store
                        .get_range(&ObjectPath::from(key.as_str()), range),
                )
                .map_err(std::io::Error::other)?;
            if bytes.len() != want {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "the bucket answered {} bytes of {want} for {key}",
                        bytes.len()
                    ),
                ));
            }
            buf[filled..filled + want].copy_from_slice(&bytes);
            filled += want;
            self.archive
                .stats
                .range_reads
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Where a recording's bytes are read from: its file, or the bucket once the local copy went;
/// either sealed (encrypted at rest), read through its keys.
#[derive(Debug, Clone)]
pub enum StoredAudio {
    File(PathBuf),
    Object(ObjectBytes),
    Sealed {
        inner: Box<StoredAudio>,
        keys: Arc<crate::encryption::Keyring>,
    },
}

/// An object read as a seekable stream, a Range request per read.
struct ObjectReader {
    object: ObjectBytes,
    pos: u64,
}

impl std::io::Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.object.len.saturating_sub(self.pos);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        self.object.read_exact_at(self.pos, &mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl std::io::Seek for ObjectReader {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        let target = match pos {
            std::io::SeekFrom::Start(n) => Some(n),
            std::io::SeekFrom::End(d) => self.object.len.checked_add_signed(d),
            std::io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        Ok(self.pos)
    }
}

/// Bytes fetched per Range request when reading a sealed object: four of age's chunks.
const SEALED_READ_AHEAD: usize = 4 * (64 * 1024 + 16);

impl StoredAudio {
    pub fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        match self {
            StoredAudio::File(path) => {
                let mut file = std::fs::File::open(path)?;
                file.seek(SeekFrom::Start(offset))?;
                file.read_exact(buf)
            }
            StoredAudio::Object(object) => object.read_exact_at(offset, buf),
            // Opened for each read: the header names the file key, then only the chunks under
            // the range are read and decrypted.
            StoredAudio::Sealed { inner, keys } => match inner.as_ref() {
                StoredAudio::File(path) => {
                    let mut plain = keys.open(std::fs::File::open(path)?)?;
                    plain.seek(SeekFrom::Start(offset))?;
                    plain.read_exact(buf)
                }
                StoredAudio::Object(object) => {
                    let reader = std::io::BufReader::with_capacity(
                        SEALED_READ_AHEAD,
                        ObjectReader {
                            object: object.clone(),
                            pos: 0,
                        },
                    );
                    let mut plain = keys.open(reader)?;
                    plain.seek(SeekFrom::Start(offset))?;
                    plain.read_exact(buf)
                }
                StoredAudio::Sealed { .. } => Err(std::io::Error::other("sealed twice")),
            },
        }
    }

    /// The local file, when the bytes are on disk.
    pub fn file(&self) -> Option<&Path> {
        match self {
            StoredAudio::File(path) => Some(path),
            StoredAudio::Object(_) => None,
            StoredAudio::Sealed { inner, .. } => inner.file(),
        }
    }

    /// These bytes, read through `keys` when they are sealed.
    pub fn sealed_if(self, sealed: bool, keys: Option<&Arc<crate::encryption::Keyring>>) -> Self {
        match keys {
            Some(keys) if sealed => StoredAudio::Sealed {
                inner: Box::new(self),
                keys: keys.clone(),
            },
            _ => self,
        }
    }
}

impl From<PathBuf> for StoredAudio {
    fn from(path: PathBuf) -> StoredAudio {
        StoredAudio::File(path)
    }
}

pub use crate::clock::backoff;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigError};

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(None, |k| map.get(k).cloned())
    }

    #[test]
    fn settings_refuse_plain_http_across_a_network_and_missing_credentials() {
        let base = [
            ("ARCHIVE_BUCKET", "calls"),
            ("ARCHIVE_ACCESS_KEY_ID", "id"),
            ("ARCHIVE_SECRET_ACCESS_KEY", "secret"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut all = base.to_vec();
            all.extend_from_slice(extra);
            config(&all)
        };
        assert!(with(&[("ARCHIVE_ENDPOINT", "http://127.0.0.1:9000")]).is_ok());
        assert!(with(&[("ARCHIVE_ENDPOINT", "https://s3.example.net")]).is_ok());
        let err = with(&[("ARCHIVE_ENDPOINT", "http://s3.example.net")])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("ARCHIVE_ENDPOINT"), "{err}");
        let err = config(&[("ARCHIVE_BUCKET", "calls")])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("ARCHIVE_SECRET_ACCESS_KEY"), "{err}");
        let err = with(&[("ARCHIVE_SPLIT_BYTES", "1000")])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("ARCHIVE_SPLIT_BYTES"), "{err}");
        let settings = ArchiveSettings::from_config(
            &with(&[("ARCHIVE_PREFIX", "/recordings/")]).expect("config"),
        )
        .expect("settings")
        .expect("an archive");
        assert_eq!(settings.prefix, "recordings/");
        assert!(!format!("{settings:?}").contains("secret"));
    }

    #[test]
    fn split_objects_are_read_across_their_parts() {
        let settings = ArchiveSettings::from_config(
            &config(&[
                ("ARCHIVE_BUCKET", "calls"),
                ("ARCHIVE_ENDPOINT", "http://127.0.0.1:1"),
                ("ARCHIVE_ACCESS_KEY_ID", "id"),
                ("ARCHIVE_SECRET_ACCESS_KEY", "secret"),
            ])
            .expect("config"),
        )
        .expect("settings")
        .expect("an archive");
        let archive = Archive::connect(settings, None).expect("client");
        let object = ObjectBytes {
            archive,
            key: "t/a.wav".into(),
            len: 250,
            parts: 3,
            part_bytes: 100,
        };
        assert_eq!(
            object.pieces(90, 120),
            vec![
                ("t/a.wav.part-00000".to_string(), 90..100),
                ("t/a.wav.part-00001".to_string(), 0..100),
                ("t/a.wav.part-00002".to_string(), 0..10),
            ]
        );
        assert_eq!(
            object.pieces(200, 50),
            vec![("t/a.wav.part-00002".to_string(), 0..50)]
        );
    }
}
