//! The ARI client: typed resource models, every event type, the REST client and the watched
//! event websocket.

pub mod client;
pub mod events;
pub mod models;
pub mod stream;

pub use client::{AriClient, AriError, AriResult, IfExists, OriginateRequest, RecordRequest};
pub use events::Event;
