//! The recordings library: its database (SQLite by default, PostgreSQL when one machine is not
//! enough), the probe that reads each file, and the indexer that keeps the table in step with
//! the recordings folder.

pub mod calls;

pub mod index;
pub mod insights;
pub mod probe;
pub mod recordings;
pub mod search;
pub mod status;
pub mod transcripts;
pub mod voicemail;

pub use index::Indexer;
pub use status::{Compliance, Consent, Direction, NodeType, RecordingFormat, RecordingStatus};

/// The existing file `rel` of the recordings folder `root`, refusing anything that resolves
/// (through `..` or a symlink) outside it.
pub fn file_inside(root: &std::path::Path, rel: &str) -> Option<std::path::PathBuf> {
    let root = root.canonicalize().ok()?;
    let path = root.join(rel).canonicalize().ok()?;
    path.starts_with(&root).then_some(path)
}

/// Removes `rel` if it resolves inside `root` (the link itself for a symlink, never its
/// target); true when it is gone (or never was).
pub fn remove_inside(root: &std::path::Path, rel: &str) -> bool {
    let Ok(root) = root.canonicalize() else {
        return false;
    };
    let joined = root.join(rel);
    let (Some(name), Some(parent)) = (joined.file_name(), joined.parent()) else {
        return false;
    };
    let folder = match parent.canonicalize() {
        Ok(folder) => folder,
        // No such folder: no such file.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return true,
        Err(_) => return false,
    };
    if !folder.starts_with(&root) {
        return false;
    }
    match std::fs::remove_file(folder.join(name)) {
        Ok(()) => true,
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}
