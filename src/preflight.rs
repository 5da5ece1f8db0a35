//! What an operator should hear about on the first day rather than on the first delete: folders
//! the service must be able to write, and a dialplans folder that is not there.
//!
//! These are warnings, not refusals: a node that only serves the library has no flows, and a
//! read-only recordings volume still plays. `check`, the start-up log and `/readyz` say them.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{Access, AtFlags};

use crate::config::Config;

/// Why this process cannot create and remove files in `dir`, or `None` when it can. Asks the
/// kernel with the effective ids (as `open` and `unlink` will), so group membership, ACLs and
/// read-only mounts all count.
pub fn write_problem(dir: &Path) -> Option<String> {
    let metadata = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) => return Some(e.to_string()),
    };
    if !metadata.is_dir() {
        return Some("not a folder".into());
    }
    match rustix::fs::accessat(
        rustix::fs::CWD,
        dir,
        Access::WRITE_OK | Access::EXEC_OK,
        AtFlags::EACCESS,
    ) {
        Ok(()) => None,
        Err(e) => Some(format!(
            "{e} (the folder is owned by uid {} gid {} with mode {:o}; this service runs as uid {} gid {})",
            metadata.uid(),
            metadata.gid(),
            metadata.permissions().mode() & 0o7777,
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        )),
    }
}

/// Everything worth a warning about the folders of `config`, one sentence each.
pub fn folder_warnings(config: &Config) -> Vec<String> {
    folder_warnings_for(&config.recordings_dir, &config.dialplans_dir)
}

/// [`folder_warnings`] for the two folders themselves (the HTTP state has no `Config`).
pub fn folder_warnings_for(recordings_dir: &Path, dialplans_dir: &Path) -> Vec<String> {
    let mut warnings = Vec::new();
    // An unreadable recordings folder is an error reported elsewhere (/readyz, check).
    if recordings_dir.is_dir() {
        if let Some(problem) = write_problem(recordings_dir) {
            warnings.push(format!(
                "RECORDINGS_DIR {} is not writable by this service: deleting recordings will fail: {problem}; give the service's group write access to the folder (docs/asterisk.md: \"Folder permissions\")",
                recordings_dir.display()
            ));
        }
    }
    match std::fs::metadata(dialplans_dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => warnings.push(format!(
            "DIALPLANS_DIR {} does not exist: no call flows run (calls entering the app are hung up); this node serves the library only until the folder is created",
            dialplans_dir.display()
        )),
        Err(_) => {} // unreadable: the flow store refuses to start and says why
        Ok(_) => {
            if let Some(problem) = write_problem(dialplans_dir) {
                warnings.push(format!(
                    "DIALPLANS_DIR {} is not writable by this service: switching recording on or off from the page or the API will fail: {problem}",
                    dialplans_dir.display()
                ));
            }
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writable_folder_has_no_problem_and_a_file_is_not_a_folder() {
        let dir = tempfile::tempdir().expect("dir");
        assert_eq!(write_problem(dir.path()), None);
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").expect("write");
        assert_eq!(write_problem(&file).as_deref(), Some("not a folder"));
        assert!(write_problem(&dir.path().join("absent")).is_some());
    }

    #[test]
    fn a_missing_dialplans_folder_is_a_warning_naming_it() {
        let dir = tempfile::tempdir().expect("dir");
        let warnings = folder_warnings_for(dir.path(), &dir.path().join("dialplans"));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("dialplans does not exist"),
            "{warnings:?}"
        );
        assert!(warnings[0].contains("library only"), "{warnings:?}");
    }
}
