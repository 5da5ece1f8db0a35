//! # ari-recorder
//!
//! A call-recording service for Asterisk: a Stasis application over ARI that runs call flows and
//! records what flow designers asked for, and a library that indexes and serves the recordings.
//!
//! ## The layers, from the ground up
//! A module imports only from the layers under it (the import graph is drawn with
//! `farm-studio look`; the few imports still running up are #32's to remove).
//!
//! 1. **Foundations**, no domain: [`clock`] (the service's time, moved on by tests),
//!    [`signing`] (HMAC keys with ids), [`tls`] (rustls settings), [`metrics`] (Prometheus).
//! 2. **Settings and Asterisk's language**: [`config`] (the TOML file and its environment
//!    overrides, data only: each domain reads its section), [`ari`] (resource models, every
//!    event, REST, the watched websocket), [`library`] (the database, and the recordings and
//!    call metadata it owns: indexing, search, transcripts).
//! 3. **Who may do what**: [`access`] (users, tokens, sessions, signed links, the policy, the
//!    audit log), [`encryption`] (age at rest), [`preflight`] (folders the service cannot write).
//! 4. **Where recordings live**: [`archive`] (the S3-compatible copy), [`disk_space`] (the disks
//!    written during calls).
//! 5. **Audio and the app**: [`audio`] (G.711, WAV, Opus, MP3, waveforms, a call assembled),
//!    [`stasis`] (the app's model of its calls, resynchronised after reconnects).
//! 6. **Calls**: [`flows`] (definitions, the sans-IO call machine, the runtime), [`retention`]
//!    (rules, holds, the purge), [`sim`] (the simulated Asterisk, for tests and the demo).
//! 7. **The outside**: [`http`] (the API and its OpenAPI document), [`web`] (the page).
//! 8. **Wiring**: [`service`] (starts every task of `serve`); the binary's `main.rs` is the CLI.
//!
//! docs/architecture.md walks every file.

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
