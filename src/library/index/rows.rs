//! The `recordings` rows: how the indexer writes them, and the changes others make to them (purged, cut, rewritten, forgotten).

use std::path::Path;
use std::sync::atomic::Ordering;

use sqlx::Row as _;

use super::super::calls::{self, CallMeta, RecordingStarted};
use super::super::probe::Encoding;
use super::super::probe::Probe;
use super::names::{made_by_a_call, name_words, recording_name};
use super::{mtime_ms, now_ms, Indexer};
use crate::db::{Database, DbError};

/// Walks `root` without following symlinks out of it. Any folder that cannot be listed fails
/// the whole walk: a partial listing would look like vanished files.
/// Marks recording `id` purged by a retention rule (its audio is about to be removed): the row
/// stays, with the rule as its reason, so "no recording available: retention" is true. False
/// when it was not in a purgeable state any more (deleted, purged or held meanwhile).
pub async fn mark_purged(db: &Database, id: i64, reason: &str) -> Result<bool, DbError> {
    let mut tx = db.pool.begin().await?;
    let done = sqlx::query(
        "UPDATE recordings SET status = 'purged', reason = $1, indexed_at_ms = $2 \
         WHERE id = $3 AND status NOT IN ('deleted', 'purged', 'recording') \
         AND NOT EXISTS (SELECT 1 FROM recording_holds h WHERE h.recording_id = recordings.id)",
    )
    .bind(reason)
    .bind(now_ms())
    .bind(id)
    .execute(&mut *tx)
    .await?;
    let purged = done.rows_affected() > 0;
    if purged {
        let event = crate::outbox::Event::once(
            crate::outbox::EventKind::RecordingPurged,
            crate::outbox::Subject::Recording(id),
            now_ms(),
        );
        crate::outbox::record(&mut tx, &event).await?;
    }
    tx.commit().await?;
    Ok(purged)
}

/// Recording `name`, final, turned out cut short (Asterisk restarted under it): its row says
/// why. A row not final yet takes the reason from its call's metadata when it is indexed.
pub async fn note_cut(
    conn: impl sqlx::Executor<'_, Database = sqlx::Any>,
    name: &str,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE recordings SET reason = $1 WHERE name = $2 AND status = 'ready' AND reason IS NULL",
    )
    .bind(reason)
    .bind(name)
    .execute(conn)
    .await?;
    Ok(())
}

/// This node's recordings quarantined (a call's file whose metadata never came) since before
/// `before_ms`: name, format and when the file was last written.
pub async fn quarantined_before(
    db: &Database,
    node: &str,
    before_ms: i64,
) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT name, format, mtime_ms FROM recordings \
         WHERE status = 'quarantined' AND node_id = $1 AND mtime_ms < $2",
    )
    .bind(node)
    .bind(before_ms)
    .fetch_all(&db.pool)
    .await
}

/// The file of recording `id` was rewritten on purpose (sealed at rest): same audio, new size on
/// disk and the same modification time, so the indexer does not read it again.
pub async fn note_rewritten(
    db: &Database,
    id: i64,
    size: u64,
    mtime_ms: i64,
) -> Result<(), DbError> {
    sqlx::query("UPDATE recordings SET size_bytes = $1, mtime_ms = $2 WHERE id = $3")
        .bind(i64::try_from(size).unwrap_or(i64::MAX))
        .bind(mtime_ms)
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// A file's modification time as the library stores it.
pub fn file_mtime_ms(path: &Path) -> std::io::Result<i64> {
    std::fs::metadata(path).map(|m| mtime_ms(&m))
}

/// A recording being written, by name, of every node (the caller keeps its own node's): with
/// `node_id` in the WHERE clause, SQLite without statistics picks the (node_id, path) index and
/// walks the node's every row, milliseconds a call on a large library. A quarantined one too:
/// its file was indexed before the call's metadata could be written (the database was away),
/// and it turns final when the metadata comes.
pub(super) const RECORDING_BY_NAME: &str = "SELECT path, node_id FROM recordings \
     WHERE name = $1 AND status IN ('recording', 'quarantined')";

/// What the library holds for one file ($1, node $2): before it is probed again.
pub(super) const KNOWN_ROW: &str =
    "SELECT status, size_bytes, mtime_ms, caller_name FROM recordings WHERE path = $1 AND node_id = $2";

/// The rows still being recorded (of every node: filtered by the caller).
pub(super) const GROWING_ROWS: &str =
    "SELECT path, node_id FROM recordings WHERE status = 'recording'";

/// The node id of rows written before instances had one, and of a library used without one
/// (tests, tools): taken over by the first instance that starts (`adopt_unowned_rows`).
pub const DEFAULT_NODE: &str = "";

/// Gives rows of no node (a library from before node ids) to `node`; how many. An SQLite
/// library is one machine's: every row is this node's, even if the host was renamed (the node
/// id defaults to the host name, which a recreated container changes).
pub async fn adopt_unowned_rows(db: &Database, node: &str) -> Result<u64, DbError> {
    let sql = match db.backend {
        crate::db::Backend::Sqlite => "UPDATE recordings SET node_id = $1 WHERE node_id <> $1",
        crate::db::Backend::Postgres => "UPDATE recordings SET node_id = $1 WHERE node_id = ''",
    };
    let done = sqlx::query(sql).bind(node).execute(&db.pool).await?;
    Ok(done.rows_affected())
}

/// When `node` has no rows yet, the other nodes that have some (a few of them), for the warning
/// at start; empty otherwise. Index lookups only: cheap at any size.
pub async fn other_nodes_when_new(db: &Database, node: &str) -> Result<Vec<String>, DbError> {
    let mine: Option<(i64,)> =
        sqlx::query_as("SELECT id FROM recordings WHERE node_id = $1 LIMIT 1")
            .bind(node)
            .fetch_optional(&db.pool)
            .await?;
    if mine.is_some() {
        return Ok(Vec::new());
    }
    let others: Vec<(String,)> = sqlx::query_as(
        "SELECT DISTINCT node_id FROM (SELECT node_id FROM recordings WHERE node_id <> $1 LIMIT 1000) AS sample",
    )
    .bind(node)
    .fetch_all(&db.pool)
    .await?;
    Ok(others.into_iter().map(|(n,)| n).collect())
}

/// Forgets rows whose audio is gone (purged or deleted) altogether: the row and its name words.
pub async fn forget_rows(db: &Database, ids: &[i64]) -> Result<(), DbError> {
    let mut tx = db.pool.begin().await?;
    for id in ids {
        sqlx::query("DELETE FROM recording_words WHERE recording_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM recordings WHERE id = $1 AND status IN ('purged', 'deleted')")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// A row whose audio was removed on purpose (deleted by hand, purged by retention): its file is
/// never indexed again.
pub(super) fn gone_for_good(status: &str) -> bool {
    matches!(status, "deleted" | "purged")
}

/// The columns the indexer writes, in the order of its values.
pub(super) const ROW_COLUMNS: [&str; 34] = [
    "path",
    // The instance whose recordings folder holds the file: with several instances on one
    // database, a row is found by (node_id, path).
    "node_id",
    "name",
    "format",
    "status",
    "reason",
    "size_bytes",
    "mtime_ms",
    "duration_ms",
    "encoding",
    "sample_rate",
    "data_offset",
    "data_len",
    "sha256",
    "call_id",
    "tenant",
    "flow",
    "node",
    "node_type",
    "direction",
    "caller_name",
    "caller_number",
    "callee",
    "started_at_ms",
    "owner",
    "participants",
    "indexed_at_ms",
    "project",
    "private",
    "consent",
    "asterisk_started_at_ms",
    // Set when the row is made (the deployment's `default_compliance`); never changed by a
    // re-index, so an admin's decision stays.
    "compliance",
    "linkedid",
    "callee_channel",
];

/// A value the indexer writes.
pub(super) enum Stored {
    Text(Option<String>),
    Int(i64),
    MaybeInt(Option<i64>),
}

pub(super) fn bind_stored<'q>(
    mut query: sqlx::query::QueryAs<'q, sqlx::Any, (i64,), sqlx::any::AnyArguments<'q>>,
    values: &'q [Stored],
) -> sqlx::query::QueryAs<'q, sqlx::Any, (i64,), sqlx::any::AnyArguments<'q>> {
    for value in values {
        query = match value {
            Stored::Text(text) => query.bind(text.as_deref()),
            Stored::Int(int) => query.bind(*int),
            Stored::MaybeInt(int) => query.bind(*int),
        };
    }
    query
}

/// `UPDATE ... WHERE path = $1 AND node_id = $2`: every column but those two; consent an admin
/// or a flow set is kept (only `unknown` is replaced).
pub(super) static UPDATE_ROW: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let sets: Vec<String> = ROW_COLUMNS
        .iter()
        .enumerate()
        .skip(2)
        .map(|(i, column)| match *column {
            "consent" => format!(
                "consent = CASE WHEN consent = 'unknown' THEN ${} ELSE consent END",
                i + 1
            ),
            "compliance" => format!("compliance = COALESCE(compliance, ${})", i + 1),
            _ => format!("{column} = ${}", i + 1),
        })
        .collect();
    format!(
        "UPDATE recordings SET {} WHERE path = $1 AND node_id = $2 RETURNING id",
        sets.join(", ")
    )
});

pub(super) static INSERT_ROW: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let placeholders: Vec<String> = (1..=ROW_COLUMNS.len()).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO recordings ({}) VALUES ({}) ON CONFLICT (node_id, path) DO NOTHING RETURNING id",
        ROW_COLUMNS.join(", "),
        placeholders.join(", ")
    )
});

/// A call bridged without recording goes straight into the list (no file): its path is
/// `call:<id>`, which the indexer never treats as a file.
pub async fn add_not_recorded(
    conn: &mut sqlx::AnyConnection,
    row: &RecordingStarted,
    reason: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = sqlx::Connection::begin(conn).await?;
    // The row's values as `calls::bind_row` numbers them, the reason $19.
    let inserted = calls::bind_row(
        sqlx::query(
            "INSERT INTO recordings (path, name, format, status, reason, size_bytes, mtime_ms, call_id, tenant, project, \
             flow, node, node_type, direction, caller_name, caller_number, callee, started_at_ms, participants, private, \
             consent, indexed_at_ms, linkedid, callee_channel) \
             VALUES ($1, $1, $11, 'not_recorded', $19, 0, $12, $2, $3, $13, $4, $5, $6, $7, $8, $9, $10, $12, $16, $14, $15, $12, $17, $18) \
             ON CONFLICT (node_id, path) DO NOTHING RETURNING id",
        ),
        row,
    )
    .bind(reason)
    .fetch_optional(&mut *tx)
    .await?
    .map(|found| found.try_get::<i64, _>(0))
    .transpose()?;
    if let Some(id) = inserted {
        store_name_words(&mut tx, id, &row.caller_name, true).await?;
    }
    tx.commit().await
}

/// Stores the words of recording `id`'s caller name, for the name search. A row written again
/// (a growing file, then final) usually keeps its caller: its words are compared first and
/// left alone when they match, so a re-index costs one read instead of a delete and inserts.
pub async fn store_name_words(
    conn: &mut sqlx::AnyConnection,
    id: i64,
    caller_name: &str,
    new_row: bool,
) -> Result<(), sqlx::Error> {
    let words = name_words(caller_name);
    if !new_row {
        let mut stored: Vec<String> = sqlx::query_as::<_, (String,)>(
            "SELECT word FROM recording_words WHERE recording_id = $1",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|(word,)| word)
        .collect();
        stored.sort();
        if stored == words {
            return Ok(());
        }
        sqlx::query("DELETE FROM recording_words WHERE recording_id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    if words.is_empty() {
        return Ok(());
    }
    // One statement for all of them: $1 is the recording, $2... the words.
    let rows: Vec<String> = (0..words.len())
        .map(|i| format!("(${}, $1)", i + 2))
        .collect();
    let sql = format!(
        "INSERT INTO recording_words (word, recording_id) VALUES {} ON CONFLICT DO NOTHING",
        rows.join(", ")
    );
    let mut query = sqlx::query(&sql).bind(id);
    for word in &words {
        query = query.bind(word);
    }
    query.execute(&mut *conn).await?;
    Ok(())
}

impl Indexer {
    pub(super) fn count_write(&self) {
        self.state
            .write_transactions_total
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A file's row as the indexer writes it, in [`ROW_COLUMNS`] order.
    pub(super) fn row_values(
        &self,
        row: &Row,
        m: Option<&CallMeta>,
    ) -> [Stored; ROW_COLUMNS.len()] {
        let name = recording_name(&row.seen.rel);
        // A call's file whose metadata has not arrived (its write is being retried, or the
        // file appeared first): nobody sees it until the metadata says whose it is.
        let quarantined = m.is_none() && made_by_a_call(&name);
        let (status, reason) = if quarantined {
            (
                "quarantined",
                Some("a call's recording whose metadata has not reached the library yet: hidden until it does".to_string()),
            )
        } else if let Some(cut) = m
            .filter(|m| m.state == "done" && matches!(row.status, "ready" | "empty"))
            .and_then(|m| m.failure_cause.clone())
        {
            // Whole as a file, but short of its call: say why (Asterisk restarted, the disk
            // was full).
            let reason = match row.status {
                "empty" => format!("0 bytes: nothing was recorded; {cut}"),
                _ => cut,
            };
            (row.status, Some(reason))
        } else {
            (row.status, row.probe.reason.clone())
        };
        let started = m
            .map(|m| m.started_at_ms)
            .unwrap_or(row.seen.mtime_ms - row.probe.duration_ms as i64);
        let encoding = row.probe.encoding.map(|e| match e {
            Encoding::Pcm16 => "pcm16",
            Encoding::Ulaw => "ulaw",
            Encoding::Alaw => "alaw",
        });
        let text = |v: Option<String>| Stored::Text(v);
        let int = |v: i64| Stored::Int(v);
        [
            text(Some(row.seen.rel.clone())),
            text(Some(self.node.clone())),
            text(Some(name.clone())),
            text(Some(row.probe.format.clone())),
            text(Some(status.to_string())),
            text(reason),
            int(row.probe.size as i64),
            int(row.seen.mtime_ms),
            int(row.probe.duration_ms as i64),
            text(encoding.map(String::from)),
            int(i64::from(row.probe.sample_rate)),
            int(row.probe.data_offset as i64),
            int(row.probe.data_len as i64),
            text(row.probe.sha256.clone()),
            text(m.map(|m| m.call_id.clone())),
            text(Some(
                m.map(|m| m.tenant.clone())
                    .unwrap_or_else(|| self.default_scope.0.clone()),
            )),
            text(m.and_then(|m| m.flow.clone())),
            text(m.and_then(|m| m.node.clone())),
            text(m.and_then(|m| m.node_type).map(|t| t.as_str().to_string())),
            text(m.map(|m| m.direction.as_str().to_string())),
            text(m.and_then(|m| m.caller_name.clone())),
            text(m.and_then(|m| m.caller_number.clone())),
            text(m.and_then(|m| m.callee.clone())),
            int(started),
            text(m.and_then(|m| m.callee.clone())),
            text(m.map(|m| {
                m.participants.clone().unwrap_or_else(|| {
                    format!(
                        "{},{}",
                        m.caller_number.clone().unwrap_or_default(),
                        m.callee.clone().unwrap_or_default()
                    )
                })
            })),
            int(now_ms()),
            text(Some(
                m.map(|m| m.project.clone())
                    .unwrap_or_else(|| self.default_scope.1.clone()),
            )),
            // Quarantined: private with no participants, so no list or role sees it.
            int(m.map(|m| m.private).unwrap_or(i64::from(quarantined))),
            text(Some(
                m.map_or(crate::library::Consent::Unknown, |m| m.consent)
                    .as_str()
                    .to_string(),
            )),
            Stored::MaybeInt(m.and_then(|m| m.asterisk_started_at_ms)),
            text(Some(
                self.new_compliance
                    .as_ref()
                    .map_or(crate::library::Compliance::Permitted.as_str(), |f| f())
                    .to_string(),
            )),
            text(m.and_then(|m| m.linkedid.clone())),
            text(m.and_then(|m| m.callee_channel.clone())),
        ]
    }

    /// Writes the rows in one transaction (a single update alone); returns the paths still
    /// being recorded.
    pub(super) async fn write_rows(
        &self,
        conn: &mut sqlx::AnyConnection,
        rows: Vec<(Row, Option<CallMeta>)>,
    ) -> Result<Vec<String>, DbError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        self.count_write();
        let started = std::time::Instant::now();
        let growing: Vec<String> = rows
            .iter()
            .filter(|(row, _)| row.status == "recording")
            .map(|(row, _)| row.seen.rel.clone())
            .collect();
        let any_ready = rows.iter().any(|(row, _)| row.status == "ready");
        // One row rewritten with the same caller (a recording turning final): its UPDATE alone
        // is the whole write, no transaction around it.
        let mut written = false;
        let mut told = false;
        if let [(row, meta)] = rows.as_slice() {
            // A final row tells the outbox in its transaction (below).
            if same_caller(row, meta.as_ref()) && told_of(row).is_none() {
                let values = self.row_values(row, meta.as_ref());
                let updated: Option<(i64,)> = bind_stored(sqlx::query_as(&UPDATE_ROW), &values)
                    .fetch_optional(&mut *conn)
                    .await?;
                written = updated.is_some();
            }
        }
        if !written {
            let mut tx = sqlx::Connection::begin(conn).await?;
            for (row, meta) in rows {
                let m = meta.as_ref();
                let values = self.row_values(&row, m);
                // A file known to have a row is updated first (an upsert that turns into an update
                // still spends an id of the sequence, and a growing file is indexed more than once);
                // a new one is inserted first.
                let mut written = None;
                if !matches!(row.seen.before, Before::Nothing) {
                    let updated: Option<(i64,)> = bind_stored(sqlx::query_as(&UPDATE_ROW), &values)
                        .fetch_optional(&mut *tx)
                        .await?;
                    written = updated.map(|(id,)| (id, false));
                }
                if written.is_none() {
                    let inserted: Option<(i64,)> =
                        bind_stored(sqlx::query_as(&INSERT_ROW), &values)
                            .fetch_optional(&mut *tx)
                            .await?;
                    if let Some((id,)) = inserted {
                        if let Some(m) =
                            m.filter(|m| m.node_type == Some(crate::library::NodeType::Fallback))
                        {
                            self.state
                                .fallback_recordings_total
                                .fetch_add(1, Ordering::Relaxed);
                            self.state
                                .fallback_newest_ms
                                .fetch_max(m.started_at_ms, Ordering::Relaxed);
                        }
                        written = Some((id, true));
                    }
                }
                let (id, new_row) = match written {
                    Some(written) => written,
                    // Another writer (the watcher, a second instance) added it meanwhile.
                    None => (
                        bind_stored(sqlx::query_as(&UPDATE_ROW), &values)
                            .fetch_one(&mut *tx)
                            .await?
                            .0,
                        false,
                    ),
                };
                let caller_name = m.and_then(|m| m.caller_name.as_deref()).unwrap_or("");
                if new_row || !same_caller(&row, m) {
                    store_name_words(&mut tx, id, caller_name, new_row).await?;
                }
                if let Some(kind) = told_of(&row) {
                    let subject = crate::outbox::Subject::Recording(id);
                    let mut event = crate::outbox::Event::once(kind, subject, now_ms());
                    // A file rewritten with other audio is ready again.
                    if let Some(sha) = &row.probe.sha256 {
                        event = event.keyed(sha);
                    }
                    told |= crate::outbox::record(&mut tx, &event).await?;
                }
            }
            tx.commit().await?;
        }
        if told {
            crate::outbox::wake(&self.db);
        }
        self.state.write_seconds.observe(started.elapsed());
        if any_ready {
            for notify in &self.ready_notify {
                notify.notify_one();
            }
        }
        Ok(growing)
    }
}

/// One file seen on disk.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    /// Relative path with `/` separators.
    pub(super) rel: String,
    pub(super) size: u64,
    pub(super) mtime_ms: i64,
    /// A symlink whose target leaves the folder: never followed.
    pub(super) escapes: bool,
    pub(super) before: Before,
}

/// What other systems are told of a row written final: ready (hashed), or unusable.
fn told_of(row: &Row) -> Option<crate::outbox::EventKind> {
    use crate::outbox::EventKind;
    match row.status {
        "ready" if row.probe.sha256.is_some() => Some(EventKind::RecordingReady),
        "empty" | "unreadable" | "not_playable" => Some(EventKind::RecordingFailed),
        _ => None,
    }
}

/// Whether the row written for `row` keeps the caller name it had (its words stay as they are).
pub(super) fn same_caller(row: &Row, meta: Option<&CallMeta>) -> bool {
    let caller = meta.and_then(|m| m.caller_name.as_deref()).unwrap_or("");
    matches!(&row.seen.before, Before::Caller(before) if before.as_deref().unwrap_or("") == caller)
}

/// What the library held for a file when it was looked at.
#[derive(Debug, Clone, Default)]
pub(super) enum Before {
    /// Not looked up: written as if a row may exist.
    #[default]
    Unknown,
    /// No row: inserted straight away.
    Nothing,
    /// A row with this caller name: its name words stay when the name does.
    Caller(Option<String>),
}

/// A probed file ready to write.
pub(super) struct Row {
    pub(super) seen: Seen,
    pub(super) probe: Probe,
    pub(super) status: &'static str,
}
