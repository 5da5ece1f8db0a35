//! The recordings library: its database (SQLite by default, PostgreSQL when one machine is not
//! enough), the probe that reads each file, and the indexer that keeps the table in step with
//! the recordings folder.

pub mod calls;
pub mod db;
pub mod index;
pub mod probe;
pub mod recordings;
pub mod search;
pub mod status;
pub mod transcripts;

pub use db::{Backend, Database, DbError};
pub use index::Indexer;
pub use status::{Compliance, Consent, Direction, NodeType, RecordingFormat, RecordingStatus};

/// The existing file `rel` of the recordings folder `root`, refusing anything that resolves
/// (through `..` or a symlink) outside it.
pub fn file_inside(root: &std::path::Path, rel: &str) -> Option<std::path::PathBuf> {
    let root = root.canonicalize().ok()?;
    let path = root.join(rel).canonicalize().ok()?;
    path.starts_with(&root).then_some(path)
}
