//! # ari-recorder
//!
//! A call-recording service for Asterisk: a Stasis application over ARI that runs call flows and
//! records what flow designers asked for, and a library that indexes and serves the recordings.
//!
//! ## Layout
//! - [`config`]: the TOML file and its environment overrides.
//! - [`ari`]: the ARI client: resource models, every event type, REST, the watched websocket.
//! - [`stasis`]: the app runtime: keeps a model of calls and resynchronises it after reconnects.
//! - [`flows`]: call flows: definitions, the per-call state machine, hot reload, the call driver.
//! - [`sim`]: the simulated Asterisk (tests and `demo`), faithful to the reference traces.
//! - [`audio`]: G.711, the WAV layout Asterisk writes, generated sounds.
//! - [`library`]: the recordings database (SQLite or PostgreSQL).
//! - [`access`]: users, tokens, sessions, signed links, the permission policy and the audit log.
//! - [`web`]: the recordings page served at `/`.
//! - [`http`]: the HTTP API; [`metrics`]: Prometheus metrics; [`service`]: wiring for `serve`.
//! - [`preflight`]: warnings about folders the service cannot write or that are missing.
//! - [`retention`]: retention rules per tenant, legal holds, the purge.
//! - [`signing`]: HMAC keys with ids, rotated (signed links, the audit chain's seal).
//! - [`tls`]: rustls settings for ARI over TLS and the simulated Asterisk's TLS listener.
//! - [`clock`]: the service's time (expiries, the call flows' timers), moved on by tests.

pub mod access;
pub mod archive;
pub mod ari;
pub mod audio;
pub mod clock;
pub mod config;
pub mod disk_space;
pub mod encryption;
pub mod flows;
pub mod http;
pub mod library;
pub mod metrics;
pub mod preflight;
pub mod retention;
pub mod service;
pub mod signing;
pub mod sim;
pub mod stasis;
pub mod tls;
pub mod web;
