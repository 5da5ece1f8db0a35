//! The library writer: recording rows, call metadata and calls' saved states, written in order by one task, retried while the database is away, drained at shutdown.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_util::task::TaskTracker;

use super::super::call::{RecordingStarted, RedactionSpan};
use super::now_ms;
use crate::db::Database;
use crate::db::HeldConnection;
use crate::library::calls;
use crate::library::index::FinishedNotifier;
use crate::metrics::Metrics;
use std::time::{Duration, Instant};

/// A library write, applied in order by the writer task.
#[derive(Debug, Clone, PartialEq)]
pub enum LibraryWrite {
    Started(Box<RecordingStarted>),
    NotRecorded(Box<RecordingStarted>, &'static str),
    Finished {
        name: String,
        duration: Option<i64>,
        /// Asterisk's clock when the file began (replaces our own guess of the start).
        started_at_ms: Option<i64>,
        at_ms: i64,
        /// Why it ended short, when it was cut (Asterisk restarted).
        cut: Option<String>,
    },
    /// A finished recording turned out cut short (Asterisk restarted): say why.
    Cut {
        name: String,
        cause: String,
    },
    Failed {
        name: String,
        cause: String,
        at_ms: i64,
    },
    /// An armed recording's other party answered: its callee, and where the lead-in ends.
    Answered {
        name: String,
        callee: String,
        at_ms: i64,
    },
    /// An armed recording nobody answered was discarded.
    Cancelled {
        name: String,
        at_ms: i64,
    },
    /// A redacted stretch of a recording.
    Redaction(Box<RedactionSpan>),
    /// A call's saved state (None: the call ended, forget it).
    CallState {
        call_id: String,
        /// The call as it serializes.
        state: Option<String>,
    },
    /// The last states of several calls, gathered by the writer and written together.
    CallStates(Vec<(String, Option<String>)>),
}

/// Library writes waiting for the writer; call tasks wait (briefly) when it is this far behind.
pub(super) const LIBRARY_QUEUE: usize = 8192;

/// What the call runtime tells the rest of the service: its costs, and which recordings ARI
/// finished (so the library row turns final at once).
pub struct LibraryLinks {
    pub metrics: Arc<Metrics>,
    pub finished: Option<FinishedNotifier>,
}

pub(super) struct Writer {
    /// Told when a write goes through after failures.
    pub(super) db: Database,
    pub(super) metrics: Arc<Metrics>,
    pub(super) finished: Option<FinishedNotifier>,
}

/// The first wait before a failed library write is tried again; it doubles up to
/// `WRITE_RETRY_MAX`.
pub(super) const WRITE_RETRY_FIRST: Duration = Duration::from_millis(100);

pub(super) const WRITE_RETRY_MAX: Duration = Duration::from_secs(5);

/// Tries of one write once the service is stopping: then the process is about to end.
pub(super) const WRITE_TRIES_AT_SHUTDOWN: u32 = 3;

impl Writer {
    /// Applies one write, retrying it (in order: later writes wait) while the database is
    /// unreachable or busy, so a call's metadata is not lost to a passing failure. Only a write
    /// the database refuses for good (a constraint) is dropped, logged.
    async fn apply(
        &self,
        conn: &mut HeldConnection,
        write: LibraryWrite,
        shutdown: &watch::Receiver<bool>,
    ) {
        // A recording's end is told to the indexer even when its write is dropped (without the
        // metadata then): the file's row turns final by what the file shows.
        let ended = match &write {
            LibraryWrite::Finished { name, .. } | LibraryWrite::Failed { name, .. } => {
                Some(name.clone())
            }
            _ => None,
        };
        let mut told = None;
        let mut wait = WRITE_RETRY_FIRST;
        let mut tries = 0;
        loop {
            let started = Instant::now();
            let result = match conn.get().await {
                Ok(c) => apply_write(c, &write).await,
                Err(e) => Err(e),
            };
            self.metrics.call_db_writes.observe(started.elapsed());
            tries += 1;
            match result {
                Ok(finished) => {
                    self.metrics.note_db_write_ok();
                    self.db.took_a_write();
                    told = finished;
                    // A call that ended may be told to webhooks (`call.ended`): look now.
                    if write.ends_a_call() {
                        crate::outbox::wake(&self.db);
                    }
                    break;
                }
                Err(e) if refused_for_good(&e) => {
                    tracing::error!(error = %e, write = write.kind(), "library write refused by the database: dropped");
                    break;
                }
                Err(e) if *shutdown.borrow() && tries >= WRITE_TRIES_AT_SHUTDOWN => {
                    tracing::error!(error = %e, write = write.kind(), "library write still failing at shutdown: given up");
                    break;
                }
                Err(e) => {
                    // The next try takes a fresh connection (this one may be left in a
                    // transaction).
                    conn.discard();
                    self.metrics.count_library_write_retry();
                    self.metrics.note_db_write_failed();
                    tracing::warn!(error = %e, write = write.kind(), retry_in_ms = wait.as_millis() as u64, "library write failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(WRITE_RETRY_MAX);
                }
            }
        }
        if let (Some(name), Some(notifier)) = (ended, &self.finished) {
            notifier.finished(&name, told);
        }
    }
}

/// Whether the database refused a write for a reason retrying cannot change.
pub(super) fn refused_for_good(error: &sqlx::Error) -> bool {
    use sqlx::error::ErrorKind;
    match error {
        sqlx::Error::Database(e) => matches!(
            e.kind(),
            ErrorKind::UniqueViolation
                | ErrorKind::ForeignKeyViolation
                | ErrorKind::NotNullViolation
                | ErrorKind::CheckViolation
        ),
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::TypeNotFound { .. } => true,
        _ => false,
    }
}

impl LibraryWrite {
    fn ends_a_call(&self) -> bool {
        match self {
            LibraryWrite::CallState { state, .. } => state.is_none(),
            LibraryWrite::CallStates(states) => states.iter().any(|(_, s)| s.is_none()),
            _ => false,
        }
    }

    /// The write's kind, for the log (never its contents: caller names and numbers).
    fn kind(&self) -> &'static str {
        match self {
            LibraryWrite::Started(_) => "recording_started",
            LibraryWrite::NotRecorded(..) => "not_recorded",
            LibraryWrite::Finished { .. } => "recording_finished",
            LibraryWrite::Cut { .. } => "recording_cut",
            LibraryWrite::Failed { .. } => "recording_failed",
            LibraryWrite::Answered { .. } => "answered",
            LibraryWrite::Cancelled { .. } => "cancelled",
            LibraryWrite::CallState { .. } | LibraryWrite::CallStates(_) => "call_state",
            LibraryWrite::Redaction(_) => "redaction",
        }
    }
}

/// A writer quiet this long gives its connection back to the pool.
pub(super) const WRITER_HOLDS_CONNECTION: Duration = Duration::from_secs(1);

/// Calls' saved states wait this long for later ones, then are written together: a call
/// changes state several times a second while it is set up, and only its last state matters.
/// A crash loses at most this much of a call's progress (the next start goes by what Asterisk
/// shows, as for a state still queued).
pub(super) const CALL_STATES_GATHER: Duration = Duration::from_millis(200);

/// The states gathered since the last write, the newest of each call.
#[derive(Default)]
pub(super) struct GatheredStates {
    pub(super) states: HashMap<String, Option<String>>,
    pub(super) due: Option<tokio::time::Instant>,
}

impl GatheredStates {
    fn add(&mut self, call_id: String, state: Option<String>) {
        self.states.insert(call_id, state);
        self.due
            .get_or_insert_with(|| tokio::time::Instant::now() + CALL_STATES_GATHER);
    }

    fn take(&mut self) -> Option<LibraryWrite> {
        self.due = None;
        (!self.states.is_empty()).then(|| {
            LibraryWrite::CallStates(std::mem::take(&mut self.states).into_iter().collect())
        })
    }
}

/// How long a stop waits for the calls' tasks to finish the step each is in. A step still
/// unfinished then (a REST request hanging) is not saved: the next start goes by what Asterisk
/// shows, as after a crash.
pub(super) const CALL_STEPS_AT_SHUTDOWN: Duration = Duration::from_secs(5);

/// Applies library writes in order (calls' states gathered, see [`CALL_STATES_GATHER`]); a
/// failed write is logged and the next one goes on. At shutdown it goes on receiving until the
/// calls' tasks have stopped, so the state of a step that was under way is written too.
pub(super) async fn library_writer(
    db: Database,
    mut writes: mpsc::Receiver<LibraryWrite>,
    writer: Writer,
    mut shutdown: watch::Receiver<bool>,
    call_tasks: TaskTracker,
) {
    let mut conn = HeldConnection::new(&db);
    let mut gathered = GatheredStates::default();
    let mut stopping: Option<tokio::time::Instant> = None;
    loop {
        // Due states are written first, even while other writes keep arriving.
        if gathered
            .due
            .is_some_and(|due| due <= tokio::time::Instant::now())
        {
            if let Some(states) = gathered.take() {
                writer.apply(&mut conn, states, &shutdown).await;
            }
        }
        let due = gathered.due;
        tokio::select! {
            biased;
            write = writes.recv() => match write {
                Some(LibraryWrite::CallState { call_id, state }) => gathered.add(call_id, state),
                Some(w) => writer.apply(&mut conn, w, &shutdown).await,
                None => break,
            },
            changed = shutdown.changed(), if stopping.is_none() => {
                // A dropped sender means nobody can stop us any more: treat it as a stop.
                if changed.is_err() || *shutdown.borrow() {
                    call_tasks.close();
                    stopping = Some(tokio::time::Instant::now() + CALL_STEPS_AT_SHUTDOWN);
                }
            }
            () = call_tasks.wait(), if stopping.is_some() => break,
            _ = tokio::time::sleep_until(stopping.unwrap_or_else(tokio::time::Instant::now)), if stopping.is_some() => {
                tracing::warn!(calls = call_tasks.len(), "calls still in a step at shutdown; their last step is not saved");
                break;
            }
            // Written at the top of the loop.
            _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {}
            _ = tokio::time::sleep(WRITER_HOLDS_CONNECTION), if conn.is_held() && due.is_none() => conn.release(),
        }
    }
    while let Ok(write) = writes.try_recv() {
        match write {
            LibraryWrite::CallState { call_id, state } => gathered.add(call_id, state),
            w => writer.apply(&mut conn, w, &shutdown).await,
        }
    }
    if let Some(states) = gathered.take() {
        writer.apply(&mut conn, states, &shutdown).await;
    }
}

/// Applies one write; for a recording that ended, its call metadata now (for the indexer).
pub(super) async fn apply_write(
    conn: &mut sqlx::AnyConnection,
    write: &LibraryWrite,
) -> Result<Option<calls::CallMeta>, sqlx::Error> {
    match write {
        LibraryWrite::Started(row) => calls::started(conn, row).await?,
        LibraryWrite::NotRecorded(row, switch) => {
            let reason = match *switch {
                "consent" => "the caller declined recording".to_string(),
                _ => format!("recording was off for this call ({switch} = false)"),
            };
            crate::library::index::add_not_recorded(conn, row, &reason).await?
        }
        LibraryWrite::Redaction(span) => {
            let redaction = calls::Redaction {
                recording_name: span.recording.clone(),
                mode: span.mode.as_str().to_string(),
                from_offset_ms: span.from_offset_ms,
                to_offset_ms: span.to_offset_ms,
                started_at_ms: span.started_at_ms,
                ended_at_ms: span.ended_at_ms,
                by_actor: span.by.clone(),
            };
            calls::add_redaction(conn, &redaction).await?
        }
        LibraryWrite::Answered {
            name,
            callee,
            at_ms,
        } => calls::answered(conn, name, callee, *at_ms).await?,
        LibraryWrite::Cancelled { name, at_ms } => calls::cancelled(conn, name, *at_ms).await?,
        LibraryWrite::CallState { call_id, state } => {
            save_states(conn, &[(call_id.clone(), state.clone())]).await?
        }
        LibraryWrite::CallStates(states) => save_states(conn, states).await?,
        LibraryWrite::Finished {
            name,
            duration,
            started_at_ms,
            at_ms,
            cut,
        } => {
            return calls::finished(
                conn,
                name,
                *duration,
                *started_at_ms,
                *at_ms,
                cut.as_deref(),
            )
            .await;
        }
        LibraryWrite::Cut { name, cause } => {
            calls::note_cut(&mut *conn, name, cause).await?;
            crate::library::index::note_cut(&mut *conn, name, cause).await?;
        }
        LibraryWrite::Failed { name, cause, at_ms } => {
            return calls::failed(conn, name, cause, *at_ms).await;
        }
    }
    Ok(None)
}

/// Saves calls' states; the calls that ended are told to the outbox (`call.ended`) in the
/// same transaction as their state's removal.
async fn save_states(
    conn: &mut sqlx::AnyConnection,
    states: &[(String, Option<String>)],
) -> Result<(), sqlx::Error> {
    let now = now_ms() as i64;
    let ended: Vec<&str> = states
        .iter()
        .filter(|(_, state)| state.is_none())
        .map(|(id, _)| id.as_str())
        .collect();
    if ended.is_empty() {
        return crate::flows::saved::save_all(conn, states, now).await;
    }
    let mut tx = sqlx::Connection::begin(conn).await?;
    crate::flows::saved::save_all(&mut tx, states, now).await?;
    for call in ended {
        let event = crate::outbox::Event::once(
            crate::outbox::EventKind::CallEnded,
            crate::outbox::Subject::Call(call),
            crate::clock::now_ms(),
        );
        crate::outbox::record(&mut tx, &event).await?;
    }
    tx.commit().await
}
