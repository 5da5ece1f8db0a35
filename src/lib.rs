//! # ari-recorder
//!
//! A call-recording service for Asterisk: a Stasis application over ARI that runs call flows and
//! records what flow designers asked for, and a library that indexes and serves the recordings.
//!
//! ## The layers, from the ground up
//! A module imports only from the layers under it (checked by drawing the import graph with
//! `farm-studio look`: no circle, no import running up).
//!
//! 1. **Foundations**, no domain: [`clock`] (the service's time, moved on by tests), [`signing`]
//!    (HMAC keys with ids), [`tls`] (rustls settings), [`db`] (SQLite or PostgreSQL: connections,
//!    every table's migrations, whether writes go through), [`audio`] (G.711, WAV, Opus, MP3,
//!    generated speech), [`encryption`] (the age format recordings are sealed in), [`metrics`]
//!    (Prometheus), [`outbox`] (events other systems are told of, written in the transaction
//!    of the change that causes them, and their queued deliveries).
//! 2. **Asterisk's language and the recordings**: [`ari`] (resource models, every event, REST,
//!    the watched websocket), [`library`] (the recordings and call metadata it owns: probing,
//!    indexing the folder, search, transcripts), [`disk_space`] (the disks written during calls).
//! 3. **Who may do what, and the app's model of Asterisk**: [`access`] (users, tokens, sessions,
//!    signed links, the policy, the audit trail), [`sealing`] (recordings sealed in place),
//!    [`stasis`] (the app's calls, resynchronised after reconnects), [`sim`] (the simulated
//!    Asterisk of the tests and the demo), [`web`] (the page).
//! 4. **Calls and settings**: [`flows`] (definitions, the sans-IO call machine, the runtime),
//!    [`config`] (the TOML file and its environment overrides: data and its validation).
//! 5. **Storage over time and playback**: [`archive`] (the S3-compatible copy), [`retention`]
//!    (rules, holds, the purge), [`playback`] (streams, a call assembled, renderings),
//!    [`preflight`] (folders the service cannot write), [`webhooks`] (endpoints, signed
//!    deliveries of the outbox, where they may go), [`transcription`] (transcripts made after
//!    the call: the queue, the engines).
//! 6. **The outside**: [`http`] (the API and its OpenAPI document).
//! 7. **Wiring**: [`service`] (starts every task of `serve`); the binary's `main.rs` and `cli/`
//!    are the command line.
//!
//! docs/architecture.md walks every file.

// Production code answers bad input with an error, never a panic; tests may unwrap.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod access;
pub mod archive;
pub mod ari;
pub mod audio;
pub mod clock;
pub mod config;
pub mod db;
pub mod disk_space;
pub mod encryption;
pub mod flows;
pub mod http;
pub mod library;
pub mod metrics;
pub mod outbox;
pub mod playback;
pub mod preflight;
pub mod retention;
pub mod sealing;
pub mod service;
pub mod signing;
pub mod sim;
pub mod stasis;
pub mod tls;
pub mod transcription;
pub mod web;
pub mod webhooks;
