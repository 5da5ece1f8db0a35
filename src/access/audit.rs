//! The audit log: append-only and hash-chained.
//!
//! An action and its event share one transaction: `AuditTx::begin` opens it and takes the
//! chain's head row first (a write, so SQLite takes its write lock at once and PostgreSQL
//! serializes writers on that row); the action does its writes on `conn()`; `commit` appends
//! the event after the head and commits both. No action is stored without its trace.
//!
//! Each event's hash covers the previous event's hash and every field, so editing or removing
//! an event breaks the chain from there; `verify` walks it. With `AUDIT_KEYS` the hash is an
//! HMAC-SHA256 under a key kept outside the database (its id stored with the event): someone
//! who can write the database but not read the key cannot recompute a consistent chain. With
//! `AUDIT_ANCHOR_FILE` the head is also written outside the database every minute, so cutting
//! events from the end (and rewriting the head row) is found too.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use hmac::Mac;
use sha2::{Digest, Sha256};
use sqlx::{Any, AnyConnection, Transaction};

use super::audit_folds::{Counted, Ended, Folds};
pub use super::audit_folds::{FOLD_AFTER, FOLD_WINDOW_MS};
use crate::clock::now_ms;
use crate::db::{Backend, Database, DbError};
use crate::signing::SigningKeys;

/// The keys that seal the audit chain (`AUDIT_KEYS`), kept with a database handle: every
/// audited write goes through one, so it carries them. None: events are chained unkeyed.
#[derive(Default)]
struct AuditSealing {
    keys: Option<std::sync::Arc<SigningKeys>>,
}

/// A database handle whose audit events are sealed with given keys.
pub trait SealedAudit {
    /// The same database as a handle of its own, sealing audit events with `keys`. It has its
    /// own group writer: events are sealed with the keys of the handle whose writer appends
    /// them, so handles with different keys never share one.
    fn with_audit_keys(self, keys: Option<SigningKeys>) -> Database;
    /// The keys this handle seals audit events with.
    fn audit_keys(&self) -> Option<std::sync::Arc<SigningKeys>>;
}

impl SealedAudit for Database {
    fn with_audit_keys(self, keys: Option<SigningKeys>) -> Database {
        self.with_attached(AuditSealing {
            keys: keys.map(std::sync::Arc::new),
        })
    }

    fn audit_keys(&self) -> Option<std::sync::Arc<SigningKeys>> {
        self.attached::<AuditSealing>().keys.clone()
    }
}

/// The audit events of a handle (and its clones) waiting to be appended together.
pub fn group_writer(db: &Database) -> std::sync::Arc<GroupWriter> {
    db.attached::<GroupWriter>()
}

/// Why the chain could not be checked or anchored.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("audit anchor file {path}: {source}")]
    Anchor {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    AnchorRequired(String),
}

/// The columns of a [`StoredEvent`], in a SELECT.
pub const EVENT_COLUMNS: &str =
    "seq, at_ms, actor, tenant, action, recording_id, outcome, client, detail, prev_hash, hash, key_id";

/// Which of a tenant's events to list, newest first (see [`list`]).
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub tenant: String,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub recording_id: Option<i64>,
    /// Only events before this sequence number (the previous page's `next_before`).
    pub before: Option<i64>,
    pub limit: i64,
}

/// Up to `filter.limit` events, newest first, and the `before` of the next page when there
/// are more.
pub async fn list(
    db: &Database,
    filter: &EventFilter,
) -> Result<(Vec<StoredEvent>, Option<i64>), sqlx::Error> {
    let mut sql = format!("SELECT {EVENT_COLUMNS} FROM audit_events WHERE tenant = $1");
    let mut n = 2;
    let texts = [
        ("actor", &filter.actor),
        ("action", &filter.action),
        ("outcome", &filter.outcome),
    ];
    for (column, value) in &texts {
        if value.is_some() {
            sql.push_str(&format!(" AND {column} = ${n}"));
            n += 1;
        }
    }
    let ints = [
        ("recording_id =", filter.recording_id),
        ("seq <", filter.before),
    ];
    for (condition, value) in &ints {
        if value.is_some() {
            sql.push_str(&format!(" AND {condition} ${n}"));
            n += 1;
        }
    }
    sql.push_str(&format!(" ORDER BY seq DESC LIMIT ${n}"));
    let mut query = sqlx::query_as::<_, StoredEvent>(&sql).bind(&filter.tenant);
    for value in texts.iter().filter_map(|(_, v)| v.as_ref()) {
        query = query.bind(value);
    }
    for value in ints.iter().filter_map(|(_, v)| *v) {
        query = query.bind(value);
    }
    let mut events = query.bind(filter.limit + 1).fetch_all(&db.pool).await?;
    let more = events.len() as i64 > filter.limit;
    events.truncate(usize::try_from(filter.limit).unwrap_or(0));
    let next = more.then(|| events.last().map(|e| e.seq)).flatten();
    Ok((events, next))
}

/// The hash before the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audited access. Never audio or transcript content: ids, names and outcomes only.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor: String,
    pub tenant: String,
    pub action: &'static str,
    pub recording_id: Option<i64>,
    /// `allowed`, or the denial reason.
    pub outcome: String,
    pub client: String,
    pub detail: Option<String>,
    /// A read or refusal of a signed-in principal: repeats of it within [`FOLD_WINDOW_MS`]
    /// are counted into one event instead of each written (see [`record`]).
    pub foldable: bool,
}

impl AuditEntry {
    pub fn new(actor: impl Into<String>, tenant: impl Into<String>, action: &'static str) -> Self {
        AuditEntry {
            actor: actor.into(),
            tenant: tenant.into(),
            action,
            recording_id: None,
            outcome: "allowed".into(),
            client: String::new(),
            detail: None,
            foldable: false,
        }
    }
}

/// `text` cut to `max` characters, marked with "…" when cut.
pub fn capped(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The hash of an event over the previous hash and each field (not its own `hash`),
/// length-prefixed so no two different events can hash the same text: HMAC-SHA256 under the
/// event's key when it names one, plain SHA-256 otherwise. None: the event names a key that is
/// not among `keys`.
pub fn event_hash(event: &StoredEvent, keys: Option<&SigningKeys>) -> Option<String> {
    let recording = event
        .recording_id
        .map(|r| r.to_string())
        .unwrap_or_default();
    let fields = [
        event.prev_hash.as_str(),
        &event.seq.to_string(),
        &event.at_ms.to_string(),
        &event.actor,
        &event.tenant,
        &event.action,
        &recording,
        &event.outcome,
        &event.client,
        event.detail.as_deref().unwrap_or("\u{0}"),
    ];
    let mut message = Vec::new();
    for field in fields {
        message.extend_from_slice(&(field.len() as u64).to_be_bytes());
        message.extend_from_slice(field.as_bytes());
    }
    match &event.key_id {
        None => Some(hex::encode(Sha256::digest(&message))),
        Some(id) => {
            let mut mac = keys?.mac(id)?;
            mac.update(b"ari-recorder audit v1\n");
            mac.update(&message);
            Some(hex::encode(mac.finalize().into_bytes()))
        }
    }
}

/// An open transaction holding the audit chain's head.
pub struct AuditTx {
    tx: Transaction<'static, Any>,
    writer: std::sync::Arc<GroupWriter>,
    keys: Option<std::sync::Arc<SigningKeys>>,
    postgres: bool,
    /// The chain's newest event (sequence number, hash), read while holding it.
    head: (i64, String),
}

impl AuditTx {
    pub async fn begin(db: &Database) -> Result<AuditTx, DbError> {
        let mut tx = db.pool.begin().await?;
        let head: (i64, String) =
            sqlx::query_as("UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, hash")
                .fetch_one(&mut *tx)
                .await?;
        Ok(AuditTx {
            tx,
            writer: group_writer(db),
            keys: db.audit_keys(),
            postgres: db.backend == Backend::Postgres,
            head,
        })
    }

    /// Where the action does its own writes.
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// Appends the event and commits it with whatever the action wrote. Returns its sequence
    /// number.
    pub async fn commit(self, entry: &AuditEntry) -> Result<i64, DbError> {
        let writer = self.writer.clone();
        let seqs = self.commit_all(std::slice::from_ref(entry)).await?;
        // An action that changed something: anchored at once (see `GroupWriter`).
        writer.security_event.notify_one();
        Ok(seqs.first().copied().unwrap_or_default())
    }

    /// Appends the events in order after the head, moves the head to the last and commits.
    /// Returns their sequence numbers.
    async fn commit_all(mut self, entries: &[AuditEntry]) -> Result<Vec<i64>, DbError> {
        let (mut seq, mut prev_hash) = std::mem::take(&mut self.head);
        let mut events = Vec::with_capacity(entries.len());
        for entry in entries {
            seq += 1;
            // Every field has a ceiling, whatever a caller put in it: an event never grows with
            // what an unauthenticated client sends.
            let mut event = StoredEvent {
                seq,
                at_ms: now_ms(),
                actor: capped(&entry.actor, 128),
                tenant: capped(&entry.tenant, 64),
                action: entry.action.to_string(),
                recording_id: entry.recording_id,
                outcome: capped(&entry.outcome, 64),
                client: capped(&entry.client, 64),
                detail: entry.detail.as_deref().map(|d| capped(d, 512)),
                prev_hash,
                key_id: self.keys.as_ref().map(|k| k.signing_id().to_string()),
                hash: String::new(),
            };
            // The signing key is one of the keys: the hash is always there.
            event.hash = event_hash(&event, self.keys.as_deref()).unwrap_or_default();
            prev_hash = event.hash.clone();
            events.push(event);
        }
        let Some(last) = events.last() else {
            self.tx.commit().await?;
            return Ok(Vec::new());
        };
        let fields = EVENT_COLUMNS.split(',').count();
        let rows = (0..events.len())
            .map(|i| {
                let params: Vec<String> = (1..=fields)
                    .map(|k| format!("${}", i * fields + k))
                    .collect();
                format!("({})", params.join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ");
        let insert = format!("INSERT INTO audit_events ({EVENT_COLUMNS}) VALUES {rows}");
        let head = events.len() * fields;
        // PostgreSQL appends and moves the head in one statement (a round trip less); SQLite
        // has no writes inside WITH.
        let sql = if self.postgres {
            format!(
                "WITH appended AS ({insert}) UPDATE audit_head SET seq = ${}, hash = ${} WHERE id = 1",
                head + 1,
                head + 2
            )
        } else {
            insert
        };
        let mut query = sqlx::query(&sql);
        for event in &events {
            query = query
                .bind(event.seq)
                .bind(event.at_ms)
                .bind(&event.actor)
                .bind(&event.tenant)
                .bind(&event.action)
                .bind(event.recording_id)
                .bind(&event.outcome)
                .bind(&event.client)
                .bind(&event.detail)
                .bind(&event.prev_hash)
                .bind(&event.hash)
                .bind(&event.key_id);
        }
        if self.postgres {
            query = query.bind(last.seq).bind(&last.hash);
        }
        query.execute(&mut *self.tx).await?;
        if !self.postgres {
            sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
                .bind(last.seq)
                .bind(&last.hash)
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await?;
        Ok(events.iter().map(|e| e.seq).collect())
    }
}

/// The most events one group write appends (a parameter per column each, well under every
/// backend's limit).
const MAX_GROUP: usize = 64;

/// Events that go with no other write (reads, denials), waiting to be appended together: while
/// one group is being written the next gathers, so under load one transaction (one turn at the
/// chain's head, one commit) carries many events. A caller is answered only once its event is
/// committed.
#[derive(Default)]
pub struct GroupWriter {
    queue: std::sync::Mutex<Group>,
    /// Foldable events written in the last window, with their repeats since.
    folds: Folds<FoldKey, AuditEntry>,
    /// Events appended, and repeats folded instead, since start (for `/metrics`).
    pub written: std::sync::atomic::AtomicU64,
    pub folded: std::sync::atomic::AtomicU64,
    /// Told when an action's event is committed (a delete, a hold, a consent or a grant): the
    /// anchor task writes the head outside the database at once, not at its next minute.
    pub security_event: tokio::sync::Notify,
}

/// How long audited requests are refused at once after a failed write that waited, before one
/// tries again.
const RETRY_AFTER_FAILURE_MS: i64 = 2_000;
/// A failed write that took this long waited on the database (its lock timeout, a connection).
const SLOW_FAILURE: std::time::Duration = std::time::Duration::from_secs(1);

type Waiter = tokio::sync::oneshot::Sender<Result<i64, String>>;

#[derive(Default)]
struct Group {
    waiting: Vec<(AuditEntry, Waiter)>,
    writing: bool,
}

impl GroupWriter {
    fn group(&self) -> std::sync::MutexGuard<'_, Group> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Marks the writer stopped if its task ends early (a runtime shutting down drops it
/// mid-write): the next event starts another, which writes what was left waiting.
struct Writing<'a> {
    writer: &'a GroupWriter,
    finished: bool,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.writer.group().writing = false;
        }
    }
}

/// Records an event that goes with no other write (a read, a denial), appended together with
/// the others waiting at that moment. Returns its sequence number once it is committed.
///
/// A foldable event (a signed-in principal's read or refusal) is written as usual for its
/// first [`FOLD_AFTER`] occurrences in a [`FOLD_WINDOW_MS`] window (the same actor, action,
/// recording, outcome and client); further repeats in the window (240 one-byte range requests,
/// a script polling one id) are counted, and the count is written as one event ("190 more
/// times from ... to ...") when the window ends ([`flush_folds`]) or the next repeat comes
/// after it. The log then grows with what people do, not with how many requests a player or a
/// script makes. Returns 0 for a repeat counted so.
pub async fn record(db: &Database, entry: &AuditEntry) -> Result<i64, DbError> {
    if entry.foldable {
        let writer = group_writer(db);
        match writer.folds.count(fold_key(entry), entry, now_ms()) {
            Counted::Repeat => {
                writer
                    .folded
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Ok(0);
            }
            Counted::Write { ended } => {
                if let Some(ended) = ended {
                    append(db, &summary(ended)).await?;
                }
            }
        }
    }
    append(db, entry).await
}

/// What makes two events the same for folding: everything but the time, and the detail only
/// when no recording is named (then the detail names the target: a call, a missing id). Range
/// requests of one recording are the same event whatever their range.
type FoldKey = (
    String,
    String,
    &'static str,
    Option<i64>,
    String,
    String,
    Option<String>,
);

fn fold_key(entry: &AuditEntry) -> FoldKey {
    (
        entry.actor.clone(),
        entry.tenant.clone(),
        entry.action,
        entry.recording_id,
        entry.outcome.clone(),
        entry.client.clone(),
        entry
            .recording_id
            .is_none()
            .then(|| entry.detail.clone())
            .flatten(),
    )
}

/// The event that stands for a window's repeats: the first's fields, the count and the span.
fn summary(ended: Ended<AuditEntry>) -> AuditEntry {
    let mut entry = ended.first;
    entry.detail = Some(format!(
        "{} more times from {} to {}{}",
        ended.repeats,
        time_text(ended.from_ms),
        time_text(ended.to_ms),
        entry
            .detail
            .as_deref()
            .map(|d| format!(" (first: {d})"))
            .unwrap_or_default()
    ));
    entry.foldable = false;
    entry
}

/// A time in an event's detail, as the API writes times (RFC 3339, milliseconds, UTC).
fn time_text(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Writes the counts of the folding windows that have ended (and forgets them); the service
/// calls it every few seconds and at shutdown (`final_flush`: every window, ended or not).
pub async fn flush_folds(db: &Database, final_flush: bool) -> Result<(), DbError> {
    for ended in group_writer(db).folds.ended(now_ms(), final_flush) {
        append(db, &summary(ended)).await?;
    }
    Ok(())
}

/// Appends one event with the group waiting now.
async fn append(db: &Database, entry: &AuditEntry) -> Result<i64, DbError> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let start = {
        let writer = group_writer(db);
        let mut group = writer.group();
        group.waiting.push((entry.clone(), sender));
        !std::mem::replace(&mut group.writing, true)
    };
    if start {
        // A task of its own: a caller that goes away (a client hanging up) does not strand
        // the events of the others.
        let db = db.clone();
        tokio::spawn(async move { write_groups(&db).await });
    }
    match receiver.await {
        Ok(Ok(seq)) => Ok(seq),
        Ok(Err(reason)) => Err(DbError::Audit(reason)),
        Err(_) => Err(DbError::Audit("the audit writer stopped".into())),
    }
}

/// Writes groups until none is waiting.
async fn write_groups(db: &Database) {
    let writer = group_writer(db);
    let mut writing = Writing {
        writer: &writer,
        finished: false,
    };
    loop {
        let group: Vec<(AuditEntry, Waiter)> = {
            let mut group = writer.group();
            let n = group.waiting.len().min(MAX_GROUP);
            if n == 0 {
                // Under the same lock an event is queued under: one queued after this starts
                // the next writer.
                group.writing = false;
                writing.finished = true;
                return;
            }
            group.waiting.drain(..n).collect()
        };
        let (entries, waiters): (Vec<AuditEntry>, Vec<Waiter>) = group.into_iter().unzip();
        let failed_lately = db.write_failed_lately();
        if let Some((at, reason)) =
            failed_lately.filter(|(at, _)| now_ms() - at < RETRY_AFTER_FAILURE_MS)
        {
            let reason = format!(
                "{reason} (at {}; tried again shortly)",
                crate::clock::rfc3339(at)
            );
            for waiter in waiters {
                let _ = waiter.send(Err(reason.clone()));
            }
            continue;
        }
        let began = std::time::Instant::now();
        let written = match AuditTx::begin(db).await {
            Ok(tx) => tx.commit_all(&entries).await,
            Err(e) => Err(e),
        };
        // Only a failure that cost a wait (a lock held, a database gone) is not tried again at
        // once: an instant one costs the next callers nothing.
        let waited = began.elapsed() >= SLOW_FAILURE;
        db.set_write_failure(
            written
                .as_ref()
                .err()
                .filter(|_| waited)
                .map(|e| (now_ms(), e.to_string())),
        );
        match written {
            Ok(seqs) => {
                writer
                    .written
                    .fetch_add(seqs.len() as u64, std::sync::atomic::Ordering::Relaxed);
                for (waiter, seq) in waiters.into_iter().zip(seqs) {
                    let _ = waiter.send(Ok(seq));
                }
            }
            Err(e) => {
                tracing::warn!(events = entries.len(), error = %e, "audit write failed");
                let reason = e.to_string();
                for waiter in waiters {
                    let _ = waiter.send(Err(reason.clone()));
                }
            }
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct StoredEvent {
    pub seq: i64,
    pub at_ms: i64,
    pub actor: String,
    pub tenant: String,
    pub action: String,
    pub recording_id: Option<i64>,
    pub outcome: String,
    pub client: String,
    pub detail: Option<String>,
    pub prev_hash: String,
    pub hash: String,
    /// The key that sealed it; None: chained with plain SHA-256.
    pub key_id: Option<String>,
}

/// What `audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub events: i64,
    pub head_hash: String,
    /// Events chained without a key (written before `AUDIT_KEYS` was set): they show edits
    /// only by someone without write access to the database.
    pub unsealed: i64,
    /// Heads found in the anchor file and checked against the chain.
    pub anchors: usize,
    /// The first break found, naming the event.
    pub problem: Option<String>,
}

/// Notes that this deployment anchors its chain outside the database (kept from the first
/// time): `verify` then refuses to run without the anchor file.
pub async fn note_anchoring(db: &Database) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE audit_head SET anchored_since_ms = $1 WHERE id = 1 AND anchored_since_ms IS NULL",
    )
    .bind(now_ms())
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Walks the whole chain in order, a page at a time, checking each event with the database
/// handle's audit keys, and every head anchored in `anchor_file` when there is one. A chain
/// whose deployment anchors it (see [`note_anchoring`]) is not checked without its anchors: the
/// file not given, or missing, is an error, since without it a cut tail reads as intact.
pub async fn verify(db: &Database, anchor_file: Option<&Path>) -> Result<Verification, AuditError> {
    let (anchored_since, head_seq): (Option<i64>, i64) =
        sqlx::query_as("SELECT anchored_since_ms, seq FROM audit_head WHERE id = 1")
            .fetch_one(&db.pool)
            .await?;
    if let Some(since) = anchored_since {
        match anchor_file {
            None => {
                return Err(AuditError::AnchorRequired(format!(
                    "this deployment anchors its audit chain outside the database (since {}): give its AUDIT_ANCHOR_FILE, or a cut tail would read as intact",
                    time_text(since)
                )))
            }
            Some(path) if head_seq > 0 && !path.exists() => {
                return Err(AuditError::AnchorRequired(format!(
                    "the anchor file {} is missing, but this deployment has anchored its chain since {}",
                    path.display(),
                    time_text(since)
                )))
            }
            Some(_) => {}
        }
    }
    const PAGE: i64 = 5000;
    let keys = db.audit_keys();
    let keys = keys.as_deref();
    let anchored = match anchor_file {
        Some(path) => read_anchors(path)?,
        None => BTreeMap::new(),
    };
    let mut expected_seq = 1;
    let mut prev = GENESIS.to_string();
    let mut problem = None;
    let mut unsealed = 0;
    let mut sealed_seen = false;
    let mut newest_sealed = false;
    'pages: loop {
        let page: Vec<StoredEvent> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM audit_events WHERE seq >= $1 ORDER BY seq LIMIT $2"
        ))
        .bind(expected_seq)
        .bind(PAGE)
        .fetch_all(&db.pool)
        .await?;
        let done = (page.len() as i64) < PAGE;
        for event in page {
            problem = check_event(&event, expected_seq, &prev, keys, sealed_seen);
            if let Some(anchor) = anchored.get(&event.seq) {
                if problem.is_none() && *anchor != event.hash {
                    problem = Some(format!(
                        "event {} is not the one anchored outside the database: the chain was rewritten",
                        event.seq
                    ));
                }
            }
            if problem.is_some() {
                break 'pages;
            }
            match event.key_id {
                Some(_) => sealed_seen = true,
                None => unsealed += 1,
            }
            newest_sealed = event.key_id.is_some();
            prev = event.hash;
            expected_seq += 1;
        }
        if done {
            break;
        }
    }
    let events = expected_seq - 1;
    if problem.is_none() && keys.is_some() && events > 0 && !newest_sealed {
        problem = Some(format!(
            "event {events}, the newest, is not sealed though AUDIT_KEYS is set: the chain was rewritten without the key (or the service has not run since the key was set: it seals an event when it starts)"
        ));
    }
    if problem.is_none() {
        if let Some((&seq, _)) = anchored.iter().next_back().filter(|(s, _)| **s > events) {
            problem = Some(format!(
                "event {seq} was anchored outside the database but the log ends at {events}: events were removed from the end"
            ));
        }
    }
    if problem.is_none() {
        let (head_seq, head_hash): (i64, String) =
            sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
                .fetch_one(&db.pool)
                .await?;
        if head_seq != events || head_hash != prev {
            problem = Some(format!(
                "the log ends at event {events} but its head says {head_seq}: events were removed from the end"
            ));
        }
    }
    Ok(Verification {
        events,
        head_hash: prev,
        unsealed,
        anchors: anchored.len(),
        problem,
    })
}

/// With audit keys, makes sure the newest event is sealed: the first start with a key writes
/// one sealed event, so `verify` can require the chain to end sealed (a chain rewritten
/// entirely without the key then fails).
pub async fn seal_from_here(db: &Database, tenant: &str) -> Result<(), AuditError> {
    let keys = db.audit_keys();
    let Some(keys) = keys.as_deref() else {
        return Ok(());
    };
    let newest: Option<(Option<String>,)> =
        sqlx::query_as("SELECT key_id FROM audit_events ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&db.pool)
            .await?;
    if matches!(newest, Some((Some(_),))) {
        return Ok(());
    }
    let entry = AuditEntry {
        detail: Some(format!(
            "audit events are sealed with key {} from here on",
            keys.signing_id()
        )),
        ..AuditEntry::new("service", tenant, "audit_sealing")
    };
    record(db, &entry).await?;
    Ok(())
}

/// What is wrong with `event` in its place in the chain, if anything.
fn check_event(
    event: &StoredEvent,
    expected_seq: i64,
    prev: &str,
    keys: Option<&SigningKeys>,
    sealed_seen: bool,
) -> Option<String> {
    if event.seq != expected_seq {
        return Some(format!(
            "event {expected_seq} is missing (the next stored is {})",
            event.seq
        ));
    }
    if event.prev_hash != prev {
        return Some(format!(
            "event {} does not follow event {}: the chain was cut or reordered",
            event.seq,
            event.seq - 1
        ));
    }
    if event.key_id.is_none() && sealed_seen {
        return Some(format!(
            "event {} is not sealed though earlier events are: it was rewritten without the key (or the service ran for a while without AUDIT_KEYS)",
            event.seq
        ));
    }
    match event_hash(event, keys) {
        None => Some(format!(
            "event {} is sealed with audit key {:?}, which is not among AUDIT_KEYS: it cannot be checked",
            event.seq,
            event.key_id.as_deref().unwrap_or_default()
        )),
        Some(hash) if hash != event.hash => Some(format!(
            "event {} was altered: its fields do not match its seal",
            event.seq
        )),
        Some(_) => None,
    }
}

/// Appends the chain's head to `path` when it moved since `last` (the sequence number anchored
/// last); returns the head's sequence number. Synced to disk: an anchor is only worth what
/// survives a crash.
pub async fn anchor_head(db: &Database, path: &Path, last: i64) -> Result<i64, AuditError> {
    let (seq, hash): (i64, String) =
        sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&db.pool)
            .await?;
    if seq == last || seq == 0 {
        return Ok(seq);
    }
    let line = format!("{} {seq} {hash}\n", now_ms());
    let target = path.to_path_buf();
    let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&target)?;
        file.write_all(line.as_bytes())?;
        file.sync_data()
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
    written.map_err(|source| AuditError::Anchor {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(seq)
}

/// The heads anchored in `path`: sequence number to hash. A missing file has none.
fn read_anchors(path: &Path) -> Result<BTreeMap<i64, String>, AuditError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(AuditError::Anchor {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut anchors = BTreeMap::new();
    // A torn last line (a crash mid-write) is skipped, not fatal.
    for line in text.lines() {
        let mut fields = line.split(' ');
        let (Some(_at), Some(seq), Some(hash)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if let (Ok(seq), true) = (seq.parse::<i64>(), hash.len() == 64) {
            anchors.insert(seq, hash.to_string());
        }
    }
    Ok(anchors)
}

#[cfg(test)]
mod tests;
