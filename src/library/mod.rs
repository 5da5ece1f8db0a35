//! The recordings library: its database (SQLite by default, PostgreSQL when one machine is not
//! enough), the probe that reads each file, and the indexer that keeps the table in step with
//! the recordings folder.

pub mod db;
pub mod index;
pub mod probe;
pub mod status;
pub mod transcripts;

pub use db::{Backend, Database, DbError};
pub use index::Indexer;
pub use status::RecordingStatus;
