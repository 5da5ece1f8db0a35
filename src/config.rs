//! Service configuration: one TOML file (`--config FILE`), every key overridable by an
//! environment variable of the same name in upper case (`ari_url` <- `ARI_URL`).
//!
//! Unknown keys and bad values are refused at start with a message that names the key, because a
//! typo in a recording service's config silently records nothing.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

// Database URLs are shown without their password; the database module owns the rule.
use crate::db::redact_url;

pub mod archive;
pub mod transcription;

/// Everything ari-recorder needs to run. See `ari-recorder.example.toml` for a commented copy.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Base URL of Asterisk's HTTP server (ARI lives under `/ari`).
    pub ari_url: String,
    /// ARI user from Asterisk's `ari.conf`.
    pub ari_username: String,
    /// Password of that ARI user. Never logged.
    pub ari_password: String,
    /// Name of the Stasis application (`Stasis(<app>,...)` in the dialplan).
    pub ari_app: String,
    /// Where Asterisk writes recordings (`/var/lib/asterisk/recording` in compose).
    pub recordings_dir: PathBuf,
    /// `sqlite://path?mode=rwc` (default) or `postgres://user:pass@host/db`. Never logged whole.
    pub database_url: String,
    /// Address of the HTTP API and page.
    pub http_addr: SocketAddr,
    /// Folder of call-flow definitions.
    pub dialplans_dir: PathBuf,
    /// Keys that sign short-lived links, `id:secret` (secret at least 32 characters). The first
    /// signs; all verify, so a key is rotated by adding a new one first and removing the old
    /// one after the longest link life. Empty: a random key per process. Never logged.
    pub link_signing_keys: Vec<String>,
    /// The longest life a download link may ask for (`expires_in` is capped to it).
    pub link_max_seconds: u64,
    /// Life of the web player's playback links.
    pub play_link_seconds: u64,
    /// Life of a browser session.
    pub session_seconds: u64,
    /// Signed-link requests allowed per user or token per minute.
    pub grants_per_minute: u32,
    /// Tenant and project of recordings found on disk without call metadata.
    pub default_tenant: String,
    pub default_project: String,
    /// Mark the session cookie `Secure` (browsers still send it to http://localhost).
    pub secure_cookies: bool,
    /// PEM certificates of a private CA trusted for `https://` ARI and, as `sslrootcert`,
    /// for PostgreSQL URLs with `sslmode=verify-ca` or `verify-full`.
    pub tls_ca_file: Option<PathBuf>,
    /// Reverse proxies (addresses or CIDR blocks) whose `Forwarded` / `X-Forwarded-For` name
    /// the client. From any other peer those headers are ignored.
    pub trusted_proxies: Vec<String>,
    /// Keys that seal the audit chain (HMAC-SHA256), `id:secret` (secret at least 32
    /// characters), kept outside the database: the first seals new events, all verify, so a key
    /// is rotated by adding a new one first and keeping the old one while its events are kept.
    /// Empty: events are chained with plain SHA-256 (a warning at start). Never logged.
    pub audit_keys: Vec<String>,
    /// A file (ideally on other storage than the database) the chain's head is appended to
    /// every minute it moves; `audit verify` checks the chain still holds every anchored head,
    /// so events cut from the end are found even by someone who rewrote the head row.
    pub audit_anchor_file: Option<PathBuf>,
    /// A second address that serves `/metrics` alone, unauthenticated (a scrape network or
    /// loopback). When set, the main address does not serve `/metrics`.
    pub metrics_addr: Option<SocketAddr>,
    /// Bearer token for `/metrics` on the main address (at least 32 characters). With neither
    /// this nor `metrics_addr`, `/metrics` is off. Never logged.
    pub metrics_token: String,
    /// A browser session unused this long ends (the absolute limit is `session_seconds`).
    pub session_idle_seconds: u64,
    /// Open HTTP connections at most; more wait in the kernel's queue until one closes.
    pub http_max_connections: u32,
    /// A client gets this long to send a request's headers (and an idle keep-alive connection
    /// this long to start its next request), and this long again for its body.
    pub http_read_timeout_seconds: u64,
    /// Folder of files the service can make again (assembled call recordings): never inside
    /// the recordings folder, which the library indexes.
    pub cache_dir: PathBuf,
    /// Bytes of assembled call recordings kept in `cache_dir`; past it the least recently used
    /// go (an hour-long call is 58 MB).
    pub call_audio_cache_bytes: u64,
    /// A folder written during calls (recordings, SQLite database, cache) with less free space
    /// than this is full: `/readyz` degraded, calls whose recording the full disk ended record
    /// again once it has this much.
    pub disk_reserve_bytes: u64,
    /// How often those folders' free space is read (also read whenever a recording ends).
    pub disk_check_seconds: u64,
    /// A call's recording whose metadata has not come after this long (lost in a crash) is
    /// filed as a private recording of the operator's tenant, seen by its admins.
    pub quarantine_grace_hours: u64,
    /// S3-compatible bucket recordings are copied to once final (empty: no archive).
    pub archive_bucket: String,
    /// The store's URL (`https://s3.eu-west-1.amazonaws.com`, `https://minio.example:9000`);
    /// plain `http://` only for a loopback address. Empty: AWS's endpoint for the region.
    pub archive_endpoint: String,
    pub archive_region: String,
    /// Prepended to every object's key (`recordings/`).
    pub archive_prefix: String,
    /// `bucket.host/key` requests instead of `host/bucket/key` (AWS; self-hosted stores
    /// usually want the default, path style).
    pub archive_virtual_hosted: bool,
    /// Credentials; or `archive_credentials_file`. Never logged.
    pub archive_access_key_id: String,
    pub archive_secret_access_key: String,
    /// A TOML file with `access_key_id` and `secret_access_key` (kept out of the main file).
    pub archive_credentials_file: Option<PathBuf>,
    /// Verified local copies are removed this many days after the upload (0: at once).
    pub archive_local_retention_days: u32,
    /// Files larger than this are stored as parts of this size plus a manifest (0: never).
    pub archive_split_bytes: u64,
    /// The longest wait between two attempts of a failing upload (backoff with full jitter).
    pub archive_retry_cap_seconds: u64,
    /// `download-url` answers with a presigned bucket URL instead of a single-use link.
    pub archive_presigned_links: bool,
    /// age identities (`AGE-SECRET-KEY-1...`) that seal final recordings at rest; the first
    /// seals, all open. Empty: recordings stay in clear. Never logged.
    pub encryption_keys: Vec<String>,
    /// A file of such identities, one a line (`#` comments), read at start; used when
    /// `encryption_keys` is empty.
    pub encryption_keys_file: Option<PathBuf>,
    /// This instance's name among several on one database: the rows of its recordings folder
    /// carry it. Empty: the host name.
    pub node_id: String,
    /// A call found in Asterisk after a restart with no saved state to resume it from (killed
    /// before its first step was saved): `false` (the default) leaves a conversation to
    /// Asterisk, unrecorded from then on, and ends it when a party leaves; `true` hangs it up.
    pub end_unresumable_calls: bool,
    /// The one forwarding header believed from `trusted_proxies`: `x-forwarded-for` (the
    /// default, what the shipped nginx settings write) or `forwarded` (RFC 7239). The other is
    /// ignored, so a client cannot slip its own address past a proxy that manages only one.
    pub forwarded_header: ForwardedHeader,
    /// Connections one client address may hold at once (trusted proxies excepted); kept below
    /// `http_max_connections` so no one client takes every slot.
    pub http_max_connections_per_client: u32,
    /// Requests one signed-in user (session or API token) may make a minute, in bursts up to
    /// the same number; past it 429 with Retry-After. Bounds what one credential costs the
    /// service and its audit log.
    pub api_requests_per_minute: u32,
    /// Keep the event types the app never uses (Asterisk's dialplan chatter) off the ARI
    /// websocket with `eventFilter`, set at every connection.
    pub ari_event_filter: bool,
    /// How people and receivers reach this service (`https://recorder.example.com`): the
    /// links in webhook payloads. Empty: the links are paths.
    pub public_url: String,
    /// Hosts webhooks may reach over plain `http://` (every other endpoint is `https://`).
    pub webhook_allow_http_hosts: Vec<String>,
    /// Networks (CIDR blocks or addresses) webhooks may reach although they are not public:
    /// loopback, private, link-local and metadata addresses are refused otherwise.
    pub webhook_allow_networks: Vec<String>,
    /// What transcribes final recordings: `auto` (the offline `pocketsphinx` engine when its
    /// program and model are installed, else none), `pocketsphinx`, `openai` (a server speaking
    /// the OpenAI-compatible `/v1/audio/transcriptions`) or `off`.
    pub transcription_engine: String,
    /// Recordings transcribed at once by this instance (each at low priority).
    pub transcription_workers: u32,
    /// The language of the calls unless their flow says otherwise (`en`, `de`, `pt-BR`).
    pub transcription_language: String,
    /// One recording's transcription is given up (and retried later) after this long.
    pub transcription_timeout_seconds: u64,
    /// The offline engine's program and its model folder (Debian's `pocketsphinx` and
    /// `pocketsphinx-en-us`).
    pub pocketsphinx_bin: PathBuf,
    pub pocketsphinx_model_dir: PathBuf,
    /// The OpenAI-compatible server (`https://whisper.example:8000`; plain `http://` only to
    /// loopback), the model it is asked for, and its API key (or a file holding it). Never logged.
    pub transcription_openai_url: String,
    pub transcription_openai_model: String,
    pub transcription_openai_key: String,
    pub transcription_openai_key_file: Option<PathBuf>,
}

/// Which forwarding header names the client behind a trusted proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    #[default]
    XForwardedFor,
    Forwarded,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ari_url: "http://127.0.0.1:8088".into(),
            ari_username: "recorder".into(),
            ari_password: String::new(),
            ari_app: "recorder".into(),
            recordings_dir: PathBuf::from("./recordings"),
            database_url: "sqlite://./data/ari-recorder.db?mode=rwc".into(),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            dialplans_dir: PathBuf::from("./dialplans"),
            link_signing_keys: Vec::new(),
            link_max_seconds: 86_400,
            play_link_seconds: 300,
            session_seconds: 8 * 3600,
            grants_per_minute: 30,
            default_tenant: "default".into(),
            default_project: "default".into(),
            secure_cookies: true,
            tls_ca_file: None,
            trusted_proxies: Vec::new(),
            audit_keys: Vec::new(),
            audit_anchor_file: None,
            metrics_addr: None,
            metrics_token: String::new(),
            session_idle_seconds: 1800,
            http_max_connections: 1024,
            http_read_timeout_seconds: 30,
            cache_dir: PathBuf::from("./data/cache"),
            call_audio_cache_bytes: 2 << 30,
            disk_reserve_bytes: 64 << 20,
            disk_check_seconds: 5,
            quarantine_grace_hours: 24,
            archive_bucket: String::new(),
            archive_endpoint: String::new(),
            archive_region: "us-east-1".into(),
            archive_prefix: String::new(),
            archive_virtual_hosted: false,
            archive_access_key_id: String::new(),
            archive_secret_access_key: String::new(),
            archive_credentials_file: None,
            archive_local_retention_days: 7,
            archive_split_bytes: 0,
            archive_retry_cap_seconds: 900,
            archive_presigned_links: false,
            encryption_keys: Vec::new(),
            encryption_keys_file: None,
            node_id: String::new(),
            end_unresumable_calls: false,
            forwarded_header: ForwardedHeader::XForwardedFor,
            http_max_connections_per_client: 64,
            api_requests_per_minute: 3000,
            ari_event_filter: true,
            public_url: String::new(),
            webhook_allow_http_hosts: Vec::new(),
            webhook_allow_networks: Vec::new(),
            transcription_engine: "auto".into(),
            transcription_workers: 1,
            transcription_language: "en".into(),
            transcription_timeout_seconds: 600,
            pocketsphinx_bin: PathBuf::from("pocketsphinx_continuous"),
            pocketsphinx_model_dir: PathBuf::from("/usr/share/pocketsphinx/model/en-us"),
            transcription_openai_url: String::new(),
            transcription_openai_model: "whisper-1".into(),
            transcription_openai_key: String::new(),
            transcription_openai_key_file: None,
        }
    }
}

/// The environment variables that override the file, in the order of the table in docs/configuration.md (a test holds the two together).
pub const ENV_KEYS: [&str; 63] = [
    "ARI_URL",
    "ARI_USERNAME",
    "ARI_PASSWORD",
    "ARI_APP",
    "RECORDINGS_DIR",
    "DATABASE_URL",
    "HTTP_ADDR",
    "DIALPLANS_DIR",
    "LINK_SIGNING_KEYS",
    "LINK_MAX_SECONDS",
    "PLAY_LINK_SECONDS",
    "SESSION_SECONDS",
    "GRANTS_PER_MINUTE",
    "DEFAULT_TENANT",
    "DEFAULT_PROJECT",
    "SECURE_COOKIES",
    "TLS_CA_FILE",
    "TRUSTED_PROXIES",
    "AUDIT_KEYS",
    "AUDIT_ANCHOR_FILE",
    "METRICS_ADDR",
    "METRICS_TOKEN",
    "SESSION_IDLE_SECONDS",
    "HTTP_MAX_CONNECTIONS",
    "HTTP_READ_TIMEOUT_SECONDS",
    "CACHE_DIR",
    "CALL_AUDIO_CACHE_BYTES",
    "ARCHIVE_BUCKET",
    "ARCHIVE_ENDPOINT",
    "ARCHIVE_REGION",
    "ARCHIVE_PREFIX",
    "ARCHIVE_VIRTUAL_HOSTED",
    "ARCHIVE_ACCESS_KEY_ID",
    "ARCHIVE_SECRET_ACCESS_KEY",
    "ARCHIVE_CREDENTIALS_FILE",
    "ARCHIVE_LOCAL_RETENTION_DAYS",
    "ARCHIVE_SPLIT_BYTES",
    "ARCHIVE_RETRY_CAP_SECONDS",
    "ARCHIVE_PRESIGNED_LINKS",
    "ENCRYPTION_KEYS",
    "ENCRYPTION_KEYS_FILE",
    "NODE_ID",
    "END_UNRESUMABLE_CALLS",
    "FORWARDED_HEADER",
    "HTTP_MAX_CONNECTIONS_PER_CLIENT",
    "API_REQUESTS_PER_MINUTE",
    "ARI_EVENT_FILTER",
    "DISK_RESERVE_BYTES",
    "DISK_CHECK_SECONDS",
    "QUARANTINE_GRACE_HOURS",
    "PUBLIC_URL",
    "WEBHOOK_ALLOW_HTTP_HOSTS",
    "WEBHOOK_ALLOW_NETWORKS",
    "TRANSCRIPTION_ENGINE",
    "TRANSCRIPTION_WORKERS",
    "TRANSCRIPTION_LANGUAGE",
    "TRANSCRIPTION_TIMEOUT_SECONDS",
    "POCKETSPHINX_BIN",
    "POCKETSPHINX_MODEL_DIR",
    "TRANSCRIPTION_OPENAI_URL",
    "TRANSCRIPTION_OPENAI_MODEL",
    "TRANSCRIPTION_OPENAI_KEY",
    "TRANSCRIPTION_OPENAI_KEY_FILE",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("configuration key {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl Config {
    /// Reads the file (when given), then applies environment overrides from `env`, then validates.
    /// `env` is a lookup so tests need not touch the process environment.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                toml::from_str::<Config>(&text).map_err(|e| ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: e.message().to_string() + &describe_span(&text, e.span()),
                })?
            }
            None => Config::default(),
        };
        for key in ENV_KEYS {
            if let Some(value) = env(key) {
                config.set(key, value)?;
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Loads from the real process environment.
    pub fn from_process(file: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load(file, |key| std::env::var(key).ok())
    }

    fn set(&mut self, key: &'static str, value: String) -> Result<(), ConfigError> {
        match key {
            "ARI_URL" => self.ari_url = value,
            "ARI_USERNAME" => self.ari_username = value,
            "ARI_PASSWORD" => self.ari_password = value,
            "ARI_APP" => self.ari_app = value,
            "RECORDINGS_DIR" => self.recordings_dir = PathBuf::from(value),
            "DATABASE_URL" => self.database_url = value,
            "HTTP_ADDR" => {
                self.http_addr = value.parse().map_err(|_| ConfigError::Invalid {
                    key,
                    reason: format!("{value:?} is not an address like 127.0.0.1:8080"),
                })?
            }
            "DIALPLANS_DIR" => self.dialplans_dir = PathBuf::from(value),
            "LINK_SIGNING_KEYS" => {
                self.link_signing_keys = value
                    .split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(String::from)
                    .collect()
            }
            "LINK_MAX_SECONDS" => self.link_max_seconds = number(key, &value)?,
            "PLAY_LINK_SECONDS" => self.play_link_seconds = number(key, &value)?,
            "SESSION_SECONDS" => self.session_seconds = number(key, &value)?,
            "GRANTS_PER_MINUTE" => self.grants_per_minute = number(key, &value)?,
            "DEFAULT_TENANT" => self.default_tenant = value,
            "DEFAULT_PROJECT" => self.default_project = value,
            "SECURE_COOKIES" => self.secure_cookies = boolean(key, &value)?,
            "TLS_CA_FILE" => {
                self.tls_ca_file = Some(PathBuf::from(value)).filter(|p| !p.as_os_str().is_empty())
            }
            "TRUSTED_PROXIES" => {
                self.trusted_proxies = value
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(String::from)
                    .collect()
            }
            "AUDIT_KEYS" => {
                self.audit_keys = value
                    .split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(String::from)
                    .collect()
            }
            "AUDIT_ANCHOR_FILE" => {
                self.audit_anchor_file =
                    Some(PathBuf::from(value)).filter(|p| !p.as_os_str().is_empty())
            }
            "METRICS_ADDR" if value.trim().is_empty() => self.metrics_addr = None,
            "METRICS_ADDR" => {
                self.metrics_addr = Some(value.parse().map_err(|_| ConfigError::Invalid {
                    key,
                    reason: format!("{value:?} is not an address like 127.0.0.1:9090"),
                })?)
            }
            "METRICS_TOKEN" => self.metrics_token = value,
            "SESSION_IDLE_SECONDS" => self.session_idle_seconds = number(key, &value)?,
            "HTTP_MAX_CONNECTIONS" => self.http_max_connections = number(key, &value)?,
            "HTTP_READ_TIMEOUT_SECONDS" => self.http_read_timeout_seconds = number(key, &value)?,
            "CACHE_DIR" => self.cache_dir = PathBuf::from(value),
            "CALL_AUDIO_CACHE_BYTES" => self.call_audio_cache_bytes = number(key, &value)?,
            "DISK_RESERVE_BYTES" => self.disk_reserve_bytes = number(key, &value)?,
            "QUARANTINE_GRACE_HOURS" => self.quarantine_grace_hours = number(key, &value)?,
            "DISK_CHECK_SECONDS" => self.disk_check_seconds = number::<u64>(key, &value)?.max(1),
            "ARCHIVE_BUCKET" => self.archive_bucket = value,
            "ARCHIVE_ENDPOINT" => self.archive_endpoint = value,
            "ARCHIVE_REGION" => self.archive_region = value,
            "ARCHIVE_PREFIX" => self.archive_prefix = value,
            "ARCHIVE_VIRTUAL_HOSTED" => self.archive_virtual_hosted = boolean(key, &value)?,
            "ARCHIVE_ACCESS_KEY_ID" => self.archive_access_key_id = value,
            "ARCHIVE_SECRET_ACCESS_KEY" => self.archive_secret_access_key = value,
            "ARCHIVE_CREDENTIALS_FILE" => {
                self.archive_credentials_file =
                    Some(PathBuf::from(value)).filter(|p| !p.as_os_str().is_empty())
            }
            "ARCHIVE_LOCAL_RETENTION_DAYS" => {
                self.archive_local_retention_days = number(key, &value)?
            }
            "ARCHIVE_SPLIT_BYTES" => self.archive_split_bytes = number(key, &value)?,
            "ARCHIVE_RETRY_CAP_SECONDS" => self.archive_retry_cap_seconds = number(key, &value)?,
            "ARCHIVE_PRESIGNED_LINKS" => self.archive_presigned_links = boolean(key, &value)?,
            "ENCRYPTION_KEYS" => {
                self.encryption_keys = value
                    .split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(String::from)
                    .collect()
            }
            "NODE_ID" => self.node_id = value,
            "END_UNRESUMABLE_CALLS" => self.end_unresumable_calls = boolean(key, &value)?,
            "API_REQUESTS_PER_MINUTE" => self.api_requests_per_minute = number(key, &value)?,
            "ARI_EVENT_FILTER" => self.ari_event_filter = boolean(key, &value)?,
            "PUBLIC_URL" => self.public_url = value.trim().to_string(),
            "WEBHOOK_ALLOW_HTTP_HOSTS" => self.webhook_allow_http_hosts = list(&value),
            "WEBHOOK_ALLOW_NETWORKS" => self.webhook_allow_networks = list(&value),
            "TRANSCRIPTION_ENGINE" => self.transcription_engine = value.trim().to_string(),
            "TRANSCRIPTION_WORKERS" => self.transcription_workers = number(key, &value)?,
            "TRANSCRIPTION_LANGUAGE" => self.transcription_language = value.trim().to_string(),
            "TRANSCRIPTION_TIMEOUT_SECONDS" => {
                self.transcription_timeout_seconds = number(key, &value)?
            }
            "POCKETSPHINX_BIN" => self.pocketsphinx_bin = PathBuf::from(value),
            "POCKETSPHINX_MODEL_DIR" => self.pocketsphinx_model_dir = PathBuf::from(value),
            "TRANSCRIPTION_OPENAI_URL" => self.transcription_openai_url = value.trim().to_string(),
            "TRANSCRIPTION_OPENAI_MODEL" => self.transcription_openai_model = value,
            "TRANSCRIPTION_OPENAI_KEY" => self.transcription_openai_key = value,
            "TRANSCRIPTION_OPENAI_KEY_FILE" => {
                self.transcription_openai_key_file =
                    Some(PathBuf::from(value)).filter(|p| !p.as_os_str().is_empty())
            }
            "HTTP_MAX_CONNECTIONS_PER_CLIENT" => {
                self.http_max_connections_per_client = number(key, &value)?
            }
            "FORWARDED_HEADER" => {
                self.forwarded_header = match value.trim().to_ascii_lowercase().as_str() {
                    "x-forwarded-for" => ForwardedHeader::XForwardedFor,
                    "forwarded" => ForwardedHeader::Forwarded,
                    _ => {
                        return Err(ConfigError::Invalid {
                            key,
                            reason: format!("{value:?} is not x-forwarded-for or forwarded"),
                        })
                    }
                }
            }
            "ENCRYPTION_KEYS_FILE" => {
                self.encryption_keys_file =
                    Some(PathBuf::from(value)).filter(|p| !p.as_os_str().is_empty())
            }
            _ => unreachable!("ENV_KEYS and set() list the same keys"),
        }
        Ok(())
    }

    /// `audit_keys` parsed; None when there are none.
    pub fn audit_signing_keys(&self) -> Result<Option<crate::signing::SigningKeys>, ConfigError> {
        if self.audit_keys.is_empty() {
            return Ok(None);
        }
        crate::signing::SigningKeys::parse(&self.audit_keys)
            .map(Some)
            .map_err(|reason| ConfigError::Invalid {
                key: "AUDIT_KEYS",
                reason,
            })
    }

    /// This instance's node id: `node_id`, else the host name.
    pub fn node(&self) -> String {
        if !self.node_id.is_empty() {
            return self.node_id.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "node".to_string())
    }

    /// The keys recordings are sealed with at rest; None when encryption is off.
    pub fn encryption_keyring(&self) -> Result<Option<crate::encryption::Keyring>, ConfigError> {
        let (key, secrets) = if !self.encryption_keys.is_empty() {
            ("ENCRYPTION_KEYS", self.encryption_keys.clone())
        } else if let Some(path) = &self.encryption_keys_file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
                key: "ENCRYPTION_KEYS_FILE",
                reason: format!("cannot read {}: {e}", path.display()),
            })?;
            let secrets: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from)
                .collect();
            ("ENCRYPTION_KEYS_FILE", secrets)
        } else {
            return Ok(None);
        };
        crate::encryption::Keyring::parse(&secrets)
            .map(Some)
            .map_err(|reason| ConfigError::Invalid { key, reason })
    }

    /// `webhook_allow_networks` parsed: an address is a block of one.
    pub fn webhook_networks(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        networks("WEBHOOK_ALLOW_NETWORKS", &self.webhook_allow_networks)
    }

    /// `trusted_proxies` parsed: an address is a block of one.
    pub fn trusted_proxy_nets(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        networks("TRUSTED_PROXIES", &self.trusted_proxies)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.trusted_proxy_nets()?;
        self.webhook_networks()?;
        if !self.public_url.is_empty() {
            let url = url::Url::parse(&self.public_url).map_err(|e| ConfigError::Invalid {
                key: "PUBLIC_URL",
                reason: format!("{:?} is not a URL ({e})", self.public_url),
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(ConfigError::Invalid {
                    key: "PUBLIC_URL",
                    reason: "must be an http:// or https:// URL".into(),
                });
            }
        }
        let url = url::Url::parse(&self.ari_url).map_err(|e| ConfigError::Invalid {
            key: "ARI_URL",
            reason: format!("{:?} is not a URL ({e})", self.ari_url),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError::Invalid {
                key: "ARI_URL",
                reason: format!("scheme must be http or https, not {:?}", url.scheme()),
            });
        }
        if self.ari_username.is_empty() {
            return Err(ConfigError::Invalid {
                key: "ARI_USERNAME",
                reason: "must not be empty".into(),
            });
        }
        let app_ok = !self.ari_app.is_empty()
            && self
                .ari_app
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !app_ok {
            return Err(ConfigError::Invalid {
                key: "ARI_APP",
                reason: format!("{:?} must be letters, digits, '-' or '_'", self.ari_app),
            });
        }
        if self.recordings_dir.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                key: "RECORDINGS_DIR",
                reason: "must not be empty".into(),
            });
        }
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            return Err(ConfigError::Invalid {
                key: "DATABASE_URL",
                reason: "must start with sqlite:, postgres:// or postgresql://".into(),
            });
        }
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        if absolute(&self.cache_dir).starts_with(absolute(&self.recordings_dir)) {
            return Err(ConfigError::Invalid {
                key: "CACHE_DIR",
                reason:
                    "must not be inside RECORDINGS_DIR (the library would index what it caches)"
                        .into(),
            });
        }
        self.audit_signing_keys()?;
        if !self.link_signing_keys.is_empty() {
            crate::access::links::LinkKeys::parse(&self.link_signing_keys).map_err(|reason| {
                ConfigError::Invalid {
                    key: "LINK_SIGNING_KEYS",
                    reason,
                }
            })?;
        }
        for (key, value) in [
            ("LINK_MAX_SECONDS", self.link_max_seconds),
            ("PLAY_LINK_SECONDS", self.play_link_seconds),
            ("SESSION_SECONDS", self.session_seconds),
            ("GRANTS_PER_MINUTE", u64::from(self.grants_per_minute)),
            ("SESSION_IDLE_SECONDS", self.session_idle_seconds),
            ("HTTP_MAX_CONNECTIONS", u64::from(self.http_max_connections)),
            (
                "HTTP_MAX_CONNECTIONS_PER_CLIENT",
                u64::from(self.http_max_connections_per_client),
            ),
            ("HTTP_READ_TIMEOUT_SECONDS", self.http_read_timeout_seconds),
            (
                "API_REQUESTS_PER_MINUTE",
                u64::from(self.api_requests_per_minute),
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    reason: "must be at least 1".into(),
                });
            }
        }
        for (key, value) in [
            ("DEFAULT_TENANT", &self.default_tenant),
            ("DEFAULT_PROJECT", &self.default_project),
        ] {
            if value.is_empty() || value.len() > 64 {
                return Err(ConfigError::Invalid {
                    key,
                    reason: "must be 1 to 64 characters".into(),
                });
            }
        }
        if !self.metrics_token.is_empty() && self.metrics_token.len() < 32 {
            return Err(ConfigError::Invalid {
                key: "METRICS_TOKEN",
                reason: "must be at least 32 characters (or empty: no token)".into(),
            });
        }
        if self
            .metrics_addr
            .is_some_and(|a| a == self.http_addr && a.port() != 0)
        {
            return Err(ConfigError::Invalid {
                key: "METRICS_ADDR",
                reason: "must differ from HTTP_ADDR".into(),
            });
        }
        if self.dialplans_dir.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                key: "DIALPLANS_DIR",
                reason: "must not be empty".into(),
            });
        }
        if !self.archive_bucket.is_empty() {
            archive::ArchiveSettings::from_config(self)?;
        }
        transcription::TranscriptionSettings::from_config(self)?;
        self.encryption_keyring()?;
        let node = self.node();
        if node.is_empty()
            || node.len() > 63
            || !node
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ConfigError::Invalid {
                key: "NODE_ID",
                reason: format!("{node:?} must be 1 to 63 letters, digits, '-', '_' or '.'"),
            });
        }
        if let Some(path) = &self.tls_ca_file {
            if let Err(e) = std::fs::metadata(path) {
                return Err(ConfigError::Invalid {
                    key: "TLS_CA_FILE",
                    reason: format!("cannot read {}: {e}", path.display()),
                });
            }
        }
        Ok(())
    }

    /// The database URL to connect with: a PostgreSQL URL that verifies the server
    /// (`sslmode=verify-ca` / `verify-full`) and names no `sslrootcert` gets `tls_ca_file`.
    pub fn database_connect_url(&self) -> String {
        let Some(ca) = &self.tls_ca_file else {
            return self.database_url.clone();
        };
        let Ok(mut url) = url::Url::parse(&self.database_url) else {
            return self.database_url.clone();
        };
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return self.database_url.clone();
        }
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let verifies = pairs
            .iter()
            .any(|(k, v)| k == "sslmode" && v.starts_with("verify"));
        if verifies && !pairs.iter().any(|(k, _)| k == "sslrootcert") {
            url.query_pairs_mut()
                .append_pair("sslrootcert", &ca.display().to_string());
        }
        url.to_string()
    }

    /// Why the database URL may travel in clear over a network, if it may: a PostgreSQL host
    /// other than loopback without `sslmode=require` or stricter.
    pub fn database_tls_warning(&self) -> Option<String> {
        let url = url::Url::parse(&self.database_url).ok()?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return None;
        }
        let host = url.host_str().unwrap_or("");
        if matches!(host, "127.0.0.1" | "::1" | "[::1]" | "localhost" | "") {
            return None;
        }
        let mode = url
            .query_pairs()
            .find(|(k, _)| k == "sslmode")
            .map(|(_, v)| v.into_owned());
        match mode.as_deref() {
            Some("require" | "verify-ca" | "verify-full") => None,
            other => Some(format!(
                "DATABASE_URL reaches {host} with sslmode={}: the connection may be unencrypted; use sslmode=verify-full (or require)",
                other.unwrap_or("prefer (the default)")
            )),
        }
    }
}

/// Secrets stay out of logs even when someone prints the whole config.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("ari_url", &self.ari_url)
            .field("ari_username", &self.ari_username)
            .field("ari_password", &"<redacted>")
            .field("ari_app", &self.ari_app)
            .field("recordings_dir", &self.recordings_dir)
            .field("database_url", &redact_url(&self.database_url))
            .field("http_addr", &self.http_addr)
            .field("dialplans_dir", &self.dialplans_dir)
            .field("link_signing_keys", &"<redacted>")
            .field("link_max_seconds", &self.link_max_seconds)
            .field("play_link_seconds", &self.play_link_seconds)
            .field("session_seconds", &self.session_seconds)
            .field("grants_per_minute", &self.grants_per_minute)
            .field("default_tenant", &self.default_tenant)
            .field("default_project", &self.default_project)
            .field("secure_cookies", &self.secure_cookies)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("audit_keys", &"<redacted>")
            .field("audit_anchor_file", &self.audit_anchor_file)
            .field("metrics_addr", &self.metrics_addr)
            .field("metrics_token", &"<redacted>")
            .field("session_idle_seconds", &self.session_idle_seconds)
            .field("http_max_connections", &self.http_max_connections)
            .field("http_read_timeout_seconds", &self.http_read_timeout_seconds)
            .field(
                "http_max_connections_per_client",
                &self.http_max_connections_per_client,
            )
            .field("forwarded_header", &self.forwarded_header)
            .field("api_requests_per_minute", &self.api_requests_per_minute)
            .field("ari_event_filter", &self.ari_event_filter)
            .field("public_url", &self.public_url)
            .field("webhook_allow_http_hosts", &self.webhook_allow_http_hosts)
            .field("webhook_allow_networks", &self.webhook_allow_networks)
            .field("end_unresumable_calls", &self.end_unresumable_calls)
            .finish()
    }
}

/// Addresses or CIDR blocks (an address is a block of one), named by `key` when one is not.
fn networks(key: &'static str, entries: &[String]) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    entries
        .iter()
        .map(|entry| {
            entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| ConfigError::Invalid {
                    key,
                    reason: format!("{entry:?} is not an address or a CIDR block like 10.0.0.0/8"),
                })
        })
        .collect()
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(String::from)
        .collect()
}

fn number<T: std::str::FromStr>(key: &'static str, value: &str) -> Result<T, ConfigError> {
    value.parse().map_err(|_| ConfigError::Invalid {
        key,
        reason: format!("{value:?} is not a whole number"),
    })
}

fn boolean(key: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ConfigError::Invalid {
            key,
            reason: format!("{value:?} is not true or false"),
        }),
    }
}

fn describe_span(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests;
