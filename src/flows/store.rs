//! The flows in force: loaded from `dialplans/`, hot-reloaded when a file changes, edited from
//! the HTTP API.
//!
//! A broken edit is refused and logged with its reasons; the last good version of that file
//! keeps running. Edits are written back atomically (temp file, fsync, rename) with `toml_edit`,
//! so comments and layout survive. New flows apply to new calls only: a call keeps the `Flow`
//! it started with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use notify::Watcher;
use tokio::sync::{mpsc, watch};

use super::definition::{
    assemble, parse_flow, parse_settings, read_folder, Flow, FlowError, FlowSet, Settings,
    SETTINGS_FILE,
};

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("no flow named {0:?}")]
    NoFlow(String),
    #[error("flow {flow:?} has no node {node:?}")]
    NoNode { flow: String, node: String },
    #[error("node {node:?} is a {kind} node, which has no record_call")]
    NotRecordable { node: String, kind: &'static str },
    #[error("the edited file would be invalid: {0}")]
    Invalid(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub struct FlowStore {
    dir: PathBuf,
    current: RwLock<Arc<FlowSet>>,
    last_good: Mutex<BTreeMap<PathBuf, Flow>>,
    last_settings: Mutex<Settings>,
    /// Serialises edits so two PATCHes never interleave their read-modify-write.
    edit: Mutex<()>,
    /// Reloads since start (tests wait on it; a quiet folder keeps it still).
    reloads: AtomicU64,
    /// Reloads that refused a file's new version (the last good one kept running).
    refusals: AtomicU64,
}

impl FlowStore {
    /// Loads the folder. Files with problems are left out and their problems returned (the
    /// service logs them and starts with the good ones). A folder that does not exist gives no
    /// flows (a node that only serves the library); [`FlowStore::watch`] loads it once it appears.
    pub fn load(dir: &Path) -> Result<(FlowStore, Vec<FlowError>), FlowError> {
        let store = FlowStore {
            dir: dir.to_path_buf(),
            current: RwLock::new(Arc::new(FlowSet::default())),
            last_good: Mutex::new(BTreeMap::new()),
            last_settings: Mutex::new(Settings::default()),
            edit: Mutex::new(()),
            reloads: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
        };
        if !folder_missing(dir) {
            read_folder(dir)?;
        }
        let problems = store.reload();
        Ok((store, problems))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The flows in force now.
    pub fn current(&self) -> Arc<FlowSet> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many times the folder was read since start.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// How many reloads refused something since start.
    pub fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }

    /// Re-reads the folder; returns the problems of files whose new version was refused.
    pub fn reload(&self) -> Vec<FlowError> {
        self.reloads.fetch_add(1, Ordering::Relaxed);
        if folder_missing(&self.dir) {
            // Not written yet: nothing to run, nothing to complain about (start-up warned).
            return Vec::new();
        }
        let read = match read_folder(&self.dir) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "dialplans folder unreadable; keeping the flows in force");
                return vec![e];
            }
        };
        let mut problems = Vec::new();
        let mut last_good = self.last_good.lock().unwrap_or_else(|p| p.into_inner());
        let mut next: BTreeMap<PathBuf, Flow> = BTreeMap::new();
        for (path, result) in read.flows {
            match result {
                Ok(flow) => {
                    next.insert(path, flow);
                }
                Err(errors) => {
                    if let Some(old) = last_good.get(&path) {
                        next.insert(path.clone(), old.clone());
                    }
                    problems.extend(errors);
                }
            }
        }
        let mut settings = self.last_settings.lock().unwrap_or_else(|p| p.into_inner());
        match read.settings {
            Some(Ok(s)) => *settings = s,
            Some(Err(errors)) => problems.extend(errors),
            None => *settings = Settings::default(),
        }
        let (set, clashes) = assemble(next.values().cloned().collect(), settings.clone());
        problems.extend(clashes);
        for p in &problems {
            tracing::error!(problem = %p, "dialplan refused; the last good version keeps running");
        }
        if !problems.is_empty() {
            self.refusals.fetch_add(1, Ordering::Relaxed);
        }
        *last_good = next;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        problems
    }

    fn flow_path(&self, flow: &str) -> Result<PathBuf, EditError> {
        self.current()
            .flows
            .get(flow)
            .map(|f| f.file.clone())
            .ok_or_else(|| EditError::NoFlow(flow.to_string()))
    }

    /// Turns recording on or off for one node; applies to the next call.
    pub fn set_record_call(&self, flow: &str, node: &str, record: bool) -> Result<(), EditError> {
        let _guard = self.edit.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.current();
        let Some(f) = current.flows.get(flow) else {
            return Err(EditError::NoFlow(flow.to_string()));
        };
        let Some(n) = f.nodes.get(node) else {
            return Err(EditError::NoNode {
                flow: flow.to_string(),
                node: node.to_string(),
            });
        };
        if !n.kind.has_record_switch() {
            return Err(EditError::NotRecordable {
                node: node.to_string(),
                kind: n.kind.type_name(),
            });
        }
        let path = self.flow_path(flow)?;
        let text = std::fs::read_to_string(&path).map_err(|source| EditError::Write {
            path: path.clone(),
            source,
        })?;
        let mut doc: toml_edit::DocumentMut = text
            .parse()
            .map_err(|e: toml_edit::TomlError| EditError::Invalid(e.to_string()))?;
        let Some(table) = doc
            .get_mut("nodes")
            .and_then(|n| n.get_mut(node))
            .and_then(|t| t.as_table_like_mut())
        else {
            return Err(EditError::NoNode {
                flow: flow.to_string(),
                node: node.to_string(),
            });
        };
        set_bool(table, "record_call", record);
        let new_text = doc.to_string();
        parse_flow(&path, &new_text).map_err(refused)?;
        write_atomically(&path, &new_text)?;
        self.reload();
        Ok(())
    }

    pub fn settings(&self) -> Settings {
        self.current().settings.clone()
    }

    /// Changes `record_outbound_calls`; applies to the next call.
    pub fn set_record_outbound_calls(&self, record: bool) -> Result<Settings, EditError> {
        self.set_switches(&[("record_outbound_calls", record)])
    }

    /// Changes recording switches of `settings.toml` (`recording_enabled`,
    /// `record_inbound_calls`, `record_outbound_calls`), comments kept; applies to the next
    /// call.
    pub fn set_switches(&self, switches: &[(&str, bool)]) -> Result<Settings, EditError> {
        let _guard = self.edit.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.dir.join(SETTINGS_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                "# Service-wide call settings (edited by the API too; comments are kept).\n"
                    .to_string()
            }
            Err(source) => return Err(EditError::Write { path, source }),
        };
        let mut doc: toml_edit::DocumentMut = text
            .parse()
            .map_err(|e: toml_edit::TomlError| EditError::Invalid(e.to_string()))?;
        for (key, on) in switches {
            set_bool(doc.as_table_mut(), key, *on);
        }
        let new_text = doc.to_string();
        let settings = parse_settings(&path, &new_text).map_err(refused)?;
        write_atomically(&path, &new_text)?;
        self.reload();
        Ok(settings)
    }

    /// Watches the folder and reloads on change until `shutdown`. A folder that does not exist
    /// yet is looked for every [`MISSING_FOLDER_POLL`], then loaded and watched.
    pub fn watch(
        self: &Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<tokio::task::JoinHandle<()>, notify::Error> {
        // One pending signal is enough: a reload reads the whole folder.
        let (tx, mut rx) = mpsc::channel(1);
        let mut watcher =
            crate::library::index::content_watcher(move |event: notify::Result<notify::Event>| {
                // Our own reads of the folder must not trigger the next reload.
                let relevant = match &event {
                    Ok(event) => crate::library::index::changes_content(&event.kind),
                    Err(_) => true,
                };
                if relevant {
                    let _ = tx.try_send(());
                }
            })?;
        let missing = folder_missing(&self.dir);
        if !missing {
            watcher.watch(&self.dir, notify::RecursiveMode::NonRecursive)?;
        }
        let store = Arc::clone(self);
        Ok(tokio::spawn(async move {
            let mut watcher = watcher;
            if missing {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(MISSING_FOLDER_POLL) => {}
                        _ = shutdown.wait_for(|stop| *stop) => return,
                    }
                    let dir = store.dir.clone();
                    if tokio::task::spawn_blocking(move || folder_missing(&dir))
                        .await
                        .unwrap_or(true)
                    {
                        continue;
                    }
                    if let Err(e) = watcher.watch(&store.dir, notify::RecursiveMode::NonRecursive) {
                        tracing::error!(error = %e, dir = %store.dir.display(), "cannot watch the new dialplans folder; its flows load but edits on disk need a restart");
                    }
                    let problems = reload_off_thread(&store).await;
                    tracing::info!(
                        flows = store.current().flows.len(),
                        refused = problems.len(),
                        "dialplans folder appeared; flows loaded"
                    );
                    break;
                }
            }
            // A folder shared between nodes (NFS, a cluster file system) changes without local
            // events when another machine writes: its listing is compared now and then too.
            let mut seen = fingerprint_off_thread(&store.dir).await;
            loop {
                let polled = tokio::select! {
                    got = rx.recv() => if got.is_none() { return } else { false },
                    _ = tokio::time::sleep(SHARED_FOLDER_POLL) => true,
                    _ = shutdown.wait_for(|stop| *stop) => return,
                };
                if polled && fingerprint_off_thread(&store.dir).await == seen {
                    continue;
                }
                // Editors write in several steps: let them finish, then read once.
                tokio::time::sleep(Duration::from_millis(150)).await;
                while rx.try_recv().is_ok() {}
                seen = fingerprint_off_thread(&store.dir).await;
                let problems = reload_off_thread(&store).await;
                tracing::info!(
                    flows = store.current().flows.len(),
                    refused = problems.len(),
                    "dialplans reloaded"
                );
            }
        }))
    }
}

/// [`FlowStore::reload`] on a blocking thread (it reads the folder's files).
async fn reload_off_thread(store: &Arc<FlowStore>) -> Vec<FlowError> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || store.reload())
        .await
        .unwrap_or_default()
}

/// [`folder_fingerprint`] on a blocking thread (a shared folder can be slow to list).
async fn fingerprint_off_thread(dir: &Path) -> u64 {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || folder_fingerprint(&dir))
        .await
        .unwrap_or_default()
}

/// How often a dialplans folder that does not exist yet is looked for (a stat: free).
pub const MISSING_FOLDER_POLL: Duration = Duration::from_secs(5);

/// How often the dialplans folder's listing is compared for changes no event told of.
pub const SHARED_FOLDER_POLL: Duration = Duration::from_secs(10);

/// Names, sizes and modification times of the folder's files: a `stat` each.
fn folder_fingerprint(dir: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut entries: Vec<(std::ffi::OsString, u64, Option<std::time::SystemTime>)> =
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((e.file_name(), meta.len(), meta.modified().ok()))
            })
            .collect();
    entries.sort();
    let mut hash = std::collections::hash_map::DefaultHasher::new();
    entries.hash(&mut hash);
    hash.finish()
}

fn folder_missing(dir: &Path) -> bool {
    matches!(std::fs::metadata(dir), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// Sets `key` to `value` in a TOML table, keeping the comment that may follow the old value.
fn set_bool(table: &mut dyn toml_edit::TableLike, key: &str, value: bool) {
    match table.get_mut(key).and_then(|v| v.as_value_mut()) {
        Some(old) => {
            let decor = old.decor().clone();
            *old = toml_edit::Value::from(value);
            *old.decor_mut() = decor;
        }
        None => {
            table.insert(key, toml_edit::value(value));
        }
    }
}

/// All problems of a refused edit in one message.
fn refused(errors: Vec<FlowError>) -> EditError {
    EditError::Invalid(
        errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// Temp file in the same folder, fsync, rename over, fsync the folder: a crash leaves the old
/// file or the new one, never half of either.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), EditError> {
    use std::io::Write;
    let fail = |source| EditError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{:08x}.tmp", fastrand::u32(..)));
    let mut file = std::fs::File::create(&tmp).map_err(fail)?;
    file.write_all(text.as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    drop(file);
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e));
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOW: &str = r#"# Support line: callers reach the desk.
[flow]
numbers = ["100"]
start = "desk"

[nodes.desk]
type = "transfer"
target = "Local/201@agents"
record_call = false # flip with PATCH /api/flows/support/nodes/desk
"#;

    fn folder() -> (tempfile::TempDir, FlowStore) {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("support.toml"), FLOW).expect("write");
        let (store, problems) = FlowStore::load(dir.path()).expect("load");
        assert!(problems.is_empty(), "{problems:?}");
        (dir, store)
    }

    #[test]
    fn record_call_edit_keeps_comments_and_applies() {
        let (dir, store) = folder();
        store
            .set_record_call("support", "desk", true)
            .expect("edit");
        let text = std::fs::read_to_string(dir.path().join("support.toml")).expect("read");
        assert!(
            text.contains("# Support line: callers reach the desk."),
            "{text}"
        );
        assert!(
            text.contains("record_call = true # flip with PATCH"),
            "{text}"
        );
        assert_eq!(
            store.current().flows["support"].nodes["desk"]
                .kind
                .record_call(),
            Some(true)
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn a_broken_edit_is_refused_and_the_last_good_flow_keeps_running() {
        let (dir, store) = folder();
        std::fs::write(
            dir.path().join("support.toml"),
            FLOW.replace("type = \"transfer\"", "type = \"teleport\""),
        )
        .expect("write");
        let problems = store.reload();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0]
                .to_string()
                .contains("node \"desk\", field \"type\""),
            "{}",
            problems[0]
        );
        assert!(
            store.current().flow_for_number("100").is_some(),
            "last good version still in force"
        );
    }

    #[test]
    fn settings_are_created_and_toggled() {
        let (dir, store) = folder();
        assert!(!store.settings().record_outbound_calls);
        store.set_record_outbound_calls(true).expect("set");
        assert!(store.settings().record_outbound_calls);
        let text = std::fs::read_to_string(dir.path().join(SETTINGS_FILE)).expect("read");
        assert!(text.contains("record_outbound_calls = true"), "{text}");
    }

    #[test]
    fn edits_are_refused_for_nodes_without_record_call() {
        let (dir, store) = folder();
        std::fs::write(
            dir.path().join("hello.toml"),
            "[flow]\nnumbers = [\"200\"]\nstart = \"hi\"\n[nodes.hi]\ntype = \"play_audio\"\nmedia = [\"sound:hello-world\"]\n",
        )
        .expect("write");
        store.reload();
        let err = store
            .set_record_call("hello", "hi", true)
            .expect_err("not recordable");
        assert!(err.to_string().contains("play_audio node"), "{err}");
        assert!(matches!(
            store.set_record_call("nope", "x", true),
            Err(EditError::NoFlow(_))
        ));
    }

    #[test]
    fn the_folder_fingerprint_changes_with_any_file_and_only_then() {
        let (dir, _store) = folder();
        let empty = folder_fingerprint(dir.path());
        assert_eq!(folder_fingerprint(dir.path()), empty);
        std::fs::write(dir.path().join("a.toml"), "x = 1\n").expect("write");
        let one = folder_fingerprint(dir.path());
        assert_ne!(one, empty);
        assert_eq!(folder_fingerprint(dir.path()), one);
        // Another machine's edit of the same size shows by its modification time.
        let file = dir.path().join("a.toml");
        std::fs::write(&file, "x = 2\n").expect("write");
        crate::library::index::set_mtime(
            &file,
            std::time::SystemTime::now() + Duration::from_secs(60),
        )
        .expect("mtime");
        assert_ne!(folder_fingerprint(dir.path()), one);
    }
}
