//! Indexing the recordings folder into the `recordings` table.
//!
//! A full scan reconciles the table with the disk: new files are probed and added, changed ones
//! re-probed, vanished ones marked `missing`, and a tombstoned (deleted) file still on disk,
//! left by a crash between the two steps of a delete, is removed. Then a `notify` watcher keeps
//! the table current; a watcher overflow triggers a full rescan. Writes go in batches, each in
//! one transaction, so a kill at any moment leaves whole rows and the next start reconciles.
//!
//! A file is final when ARI said `RecordingFinished` for its name (the flow runtime tells the
//! watcher at once), or it was closed after writing, or it has not changed for `settle`; until
//! then it is listed as `recording` with the duration its size gives, rewritten at most every
//! [`GROWING_UPDATE`]. The watcher reacts only to events that change a file's content or
//! existence (never to opens and reads, its own probing included), and a file whose size and
//! mtime are unchanged is never probed again: at rest it costs nothing.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::calls::CallMeta;
use tokio::sync::mpsc;

use crate::clock::now_ms;
use crate::db::{Database, DbError};

mod names;
mod rows;
mod scan;
mod state;
#[cfg(test)]
mod tests;
mod watcher;

pub use names::*;
pub use rows::*;
pub use state::*;
pub use watcher::*;

/// Rows written per transaction.
const BATCH: usize = 500;
/// A growing recording's row is rewritten (its length) at most this often.
pub const GROWING_UPDATE: Duration = Duration::from_secs(5);
/// File events waiting for the watcher task; past this the watcher rescans instead.
const EVENT_QUEUE: usize = 4096;

pub struct Indexer {
    db: Database,
    root: PathBuf,
    settle: Duration,
    pub state: Arc<ScanState>,
    /// Tenant and project of files found without call metadata.
    default_scope: (String, String),
    /// Whose a dialled number is (the flow that answers it), for the dialplan fallback's
    /// recordings, which carry only the number.
    number_scope: Option<NumberScopeFn>,
    /// The compliance status of recordings new to the library (`default_compliance`).
    new_compliance: Option<Arc<dyn Fn() -> &'static str + Send + Sync>>,
    finished_tx: mpsc::Sender<Finished>,
    /// Taken by the watcher.
    finished_rx: std::sync::Mutex<Option<mpsc::Receiver<Finished>>>,
    /// Told when recordings become final (the sealer and the archive take them).
    ready_notify: Vec<Arc<tokio::sync::Notify>>,
    /// Opens recordings sealed at rest.
    keys: Option<Arc<crate::encryption::Keyring>>,
    /// This instance's node id: the rows of its recordings folder carry it.
    node: String,
    /// Knows which vanished files have a copy elsewhere (the archive's bucket).
    copies_elsewhere: Option<Arc<dyn CopiesElsewhere>>,
}

/// Which of the files gone from the recordings folder were removed on purpose because a copy is
/// kept elsewhere (the archive's bucket, once it held them): those are not missing. The archive
/// answers it from its own table.
pub trait CopiesElsewhere: Send + Sync {
    /// Of `paths` (files of node `node`'s folder), those kept elsewhere.
    fn kept_elsewhere<'a>(
        &'a self,
        db: &'a Database,
        node: &'a str,
        paths: &'a [String],
    ) -> futures_util::future::BoxFuture<'a, Result<HashSet<String>, DbError>>;
}

fn mtime_ms(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Indexer {
    pub fn new(db: Database, root: PathBuf, settle: Duration) -> Indexer {
        let (finished_tx, finished_rx) = mpsc::channel(EVENT_QUEUE);
        Indexer {
            db,
            root,
            settle,
            state: Arc::new(ScanState::default()),
            default_scope: ("default".into(), "default".into()),
            number_scope: None,
            new_compliance: None,
            finished_tx,
            finished_rx: std::sync::Mutex::new(Some(finished_rx)),
            ready_notify: Vec::new(),
            keys: None,
            node: DEFAULT_NODE.to_string(),
            copies_elsewhere: None,
        }
    }

    /// Vanished files are first asked about of `copies` (the archive): those it keeps are not
    /// missing.
    pub fn with_copies_elsewhere(mut self, copies: Arc<dyn CopiesElsewhere>) -> Indexer {
        self.copies_elsewhere = Some(copies);
        self
    }

    /// Of `paths`, gone from the folder, those kept elsewhere.
    async fn kept_elsewhere(&self, paths: &[String]) -> Result<HashSet<String>, DbError> {
        match &self.copies_elsewhere {
            Some(copies) if !paths.is_empty() => {
                copies.kept_elsewhere(&self.db, &self.node, paths).await
            }
            _ => Ok(HashSet::new()),
        }
    }

    /// The rows this indexer keeps are those of node `node` (its recordings folder's).
    pub fn with_node(mut self, node: &str) -> Indexer {
        self.node = node.to_string();
        self
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// `notify` is told each time recordings become final.
    pub fn with_ready_notify(mut self, notify: Arc<tokio::sync::Notify>) -> Indexer {
        self.ready_notify.push(notify);
        self
    }

    /// Recordings sealed at rest are read through `keys`.
    pub fn with_keys(mut self, keys: Option<Arc<crate::encryption::Keyring>>) -> Indexer {
        self.keys = keys;
        self
    }

    /// Files found on disk without call metadata belong to `tenant` and `project`.
    pub fn with_default_scope(mut self, tenant: &str, project: &str) -> Indexer {
        self.default_scope = (tenant.to_string(), project.to_string());
        self
    }

    /// Where new recordings' compliance status comes from (read at each new row, so a change
    /// of the setting applies to the next recording).
    pub fn with_new_compliance(
        mut self,
        status: Arc<dyn Fn() -> &'static str + Send + Sync>,
    ) -> Indexer {
        self.new_compliance = Some(status);
        self
    }

    /// How to find the tenant, project and privacy of a dialled number (the flows').
    pub fn with_number_scope(mut self, lookup: NumberScopeFn) -> Indexer {
        self.number_scope = Some(lookup);
        self
    }

    /// The call metadata of a recording Asterisk made through the dialplan fallback, read from
    /// its name: caller and dialled number, the call's start, the number's flow's scope.
    fn fallback_meta(&self, name: &str) -> Option<CallMeta> {
        let fallback = parse_fallback_name(name)?;
        let scope = self
            .number_scope
            .as_ref()
            .and_then(|lookup| lookup(&fallback.dialled));
        let (tenant, project, private, flow) = match scope {
            Some(s) => (s.tenant, s.project, s.private, Some(s.flow)),
            None => (
                self.default_scope.0.clone(),
                self.default_scope.1.clone(),
                false,
                None,
            ),
        };
        Some(CallMeta {
            recording_name: name.to_string(),
            call_id: fallback.unique_id.clone(),
            tenant,
            flow,
            node: None,
            node_type: Some(super::NodeType::Fallback),
            direction: super::Direction::Inbound,
            caller_name: None,
            caller_number: Some(fallback.caller.clone()).filter(|c| !c.is_empty()),
            callee: Some(fallback.dialled.clone()),
            // Final once MixMonitor stops writing (settled), like a file of unknown origin.
            state: "recording".into(),
            started_at_ms: fallback.started_at_ms,
            project,
            private: i64::from(private),
            consent: super::Consent::Unknown,
            participants: Some(format!("{},{}", fallback.caller, fallback.dialled)),
            // MixMonitor's start time comes from the file name, on Asterisk's clock.
            asterisk_started_at_ms: Some(fallback.started_at_ms),
            failure_cause: None,
            // MixMonitor in the fallback dialplan writes WAV.
            format: super::RecordingFormat::Wav.as_str().to_string(),
            duration_seconds: None,
            // Its call id is the caller channel's uniqueid, which the CDR carries as well.
            linkedid: None,
            callee_channel: None,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}
