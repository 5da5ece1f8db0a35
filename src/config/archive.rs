//! The archive's settings (`ARCHIVE_*`), read and checked from the configuration: data only,
//! used by `crate::archive`.

use std::time::Duration;

use super::{Config, ConfigError};

/// What `ARCHIVE_*` configure, checked.
#[derive(Clone)]
pub struct ArchiveSettings {
    pub bucket: String,
    pub endpoint: Option<url::Url>,
    pub region: String,
    pub prefix: String,
    pub virtual_hosted: bool,
    /// Read by the archive alone; never logged (see `Debug`).
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
    pub local_retention_days: u32,
    pub split_bytes: u64,
    pub retry_cap: Duration,
    pub presigned_links: bool,
    /// Encryption at rest is on: only sealed files may go up.
    pub sealed_only: bool,
}

impl std::fmt::Debug for ArchiveSettings {
    // The secret key never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveSettings")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint.as_ref().map(url::Url::as_str))
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    /// Read by the archive alone; never logged (see `Debug`).
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
}

/// The smallest `split_bytes`: parts are separate objects, but thousands of tiny ones help
/// nobody.
pub const MIN_SPLIT_BYTES: u64 = 64 * 1024;

impl ArchiveSettings {
    /// The archive the configuration asks for; `None` without a bucket.
    pub fn from_config(config: &Config) -> Result<Option<ArchiveSettings>, ConfigError> {
        if config.archive_bucket.is_empty() {
            return Ok(None);
        }
        let invalid = |key: &'static str, reason: String| ConfigError::Invalid { key, reason };
        let endpoint =
            if config.archive_endpoint.is_empty() {
                None
            } else {
                let url = url::Url::parse(&config.archive_endpoint).map_err(|e| {
                    invalid(
                        "ARCHIVE_ENDPOINT",
                        format!("{:?} is not a URL ({e})", config.archive_endpoint),
                    )
                })?;
                match url.scheme() {
                    "https" => {}
                    "http" if is_loopback(&url) => {}
                    "http" => return Err(invalid(
                        "ARCHIVE_ENDPOINT",
                        "plain http:// only to a loopback address; use https:// across a network"
                            .into(),
                    )),
                    other => {
                        return Err(invalid(
                            "ARCHIVE_ENDPOINT",
                            format!("scheme must be https (or http to loopback), not {other:?}"),
                        ))
                    }
                }
                Some(url)
            };
        let (access_key_id, secret_access_key) = match &config.archive_credentials_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    invalid(
                        "ARCHIVE_CREDENTIALS_FILE",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                let file: CredentialsFile = toml::from_str(&text).map_err(|e| {
                    invalid(
                        "ARCHIVE_CREDENTIALS_FILE",
                        format!("{}: {}", path.display(), e.message()),
                    )
                })?;
                (file.access_key_id, file.secret_access_key)
            }
            None => (
                config.archive_access_key_id.clone(),
                config.archive_secret_access_key.clone(),
            ),
        };
        if access_key_id.is_empty() || secret_access_key.is_empty() {
            return Err(invalid(
                "ARCHIVE_ACCESS_KEY_ID",
                "an archive needs ARCHIVE_ACCESS_KEY_ID and ARCHIVE_SECRET_ACCESS_KEY, or ARCHIVE_CREDENTIALS_FILE".into(),
            ));
        }
        if config.archive_split_bytes != 0 && config.archive_split_bytes < MIN_SPLIT_BYTES {
            return Err(invalid(
                "ARCHIVE_SPLIT_BYTES",
                format!("must be 0 (never split) or at least {MIN_SPLIT_BYTES}"),
            ));
        }
        if config.archive_retry_cap_seconds == 0 {
            return Err(invalid(
                "ARCHIVE_RETRY_CAP_SECONDS",
                "must be at least 1".into(),
            ));
        }
        let prefix = config.archive_prefix.trim_matches('/');
        Ok(Some(ArchiveSettings {
            bucket: config.archive_bucket.clone(),
            endpoint,
            region: config.archive_region.clone(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            virtual_hosted: config.archive_virtual_hosted,
            access_key_id,
            secret_access_key,
            local_retention_days: config.archive_local_retention_days,
            split_bytes: config.archive_split_bytes,
            retry_cap: Duration::from_secs(config.archive_retry_cap_seconds),
            presigned_links: config.archive_presigned_links,
            sealed_only: !config.encryption_keys.is_empty()
                || config.encryption_keys_file.is_some(),
        }))
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    }
}
