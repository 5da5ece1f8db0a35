//! Searches of the library: the recordings someone may see, filtered, in keyset pages, one
//! recording a row or grouped by call. The HTTP layer parses a request into a [`Viewer`] and a
//! [`Filter`]; the SQL is built here, and only here, with every value bound.

use super::recordings::{Recording, COLUMNS};
use super::transcripts::Said;
use super::{Direction, NodeType, RecordingFormat, RecordingStatus};
use crate::db::{Backend, Database};

/// Words of a caller-name search at most: each is one more index range to intersect.
pub const MAX_NAME_WORDS: usize = 5;

/// Who is searching: only their tenant's recordings, of their projects (none listed: all), and
/// of the private ones only those a given identity (user name, extension) was on.
pub struct Viewer<'a> {
    pub tenant: &'a str,
    pub projects: &'a [String],
    pub identities: Vec<&'a str>,
    /// An admin of the whole tenant: also sees the private recordings nobody was on (a call's
    /// file whose metadata never came, quarantined or filed), as the access policy lets them.
    pub sees_unclaimed: bool,
}

/// What is searched for; every field narrows the list. Values are checked by the caller
/// (lengths, the lists above); they are bound, never spliced into the SQL.
#[derive(Default)]
pub struct Filter {
    /// The caller's number starts with this.
    pub caller_number_prefix: Option<String>,
    /// The callee starts with this.
    pub callee_prefix: Option<String>,
    /// Each word starts a word of the caller's name.
    pub name_words: Vec<String>,
    pub node_type: Option<NodeType>,
    pub direction: Option<Direction>,
    pub status: Option<RecordingStatus>,
    pub format: Option<RecordingFormat>,
    /// Started at or after (ms since 1970).
    pub from_ms: Option<i64>,
    /// Started before (ms since 1970).
    pub to_ms: Option<i64>,
    pub min_duration_ms: Option<i64>,
    /// Asterisk's linkedid of the call (joins with CDR and CEL records).
    pub linkedid: Option<String>,
    /// A channel's uniqueid: the caller's (the call's id) or the answering party's.
    pub channel: Option<String>,
    /// Words said in the transcript, every one of them (lower-case, as
    /// `transcripts::search_words` makes them), each with the forms the index may hold it in.
    pub said: Vec<Said>,
    /// Talk-time figures: the longest silence at least (ms); the agent's share of the talking
    /// at least (percent).
    pub min_silence_ms: Option<i64>,
    pub min_agent_share: Option<i64>,
}

impl Filter {
    /// The words of its transcript search.
    pub fn said_words(&self) -> Vec<String> {
        self.said.iter().map(|s| s.word.clone()).collect()
    }

    /// Whether it asks what the audio holds (words said, talk-time): its answers are then only
    /// recordings the caller may play.
    pub fn reads_audio(&self) -> bool {
        !self.said.is_empty() || self.min_silence_ms.is_some() || self.min_agent_share.is_some()
    }
}

/// On SQLite, a transcript search that more transcripts than this match walks the newest
/// recordings asking the full-text index about each (the first page is found after a few rows);
/// with fewer matches, they are gathered first.
const COMMON_MATCHES: i64 = 5_000;

/// Whether a transcript search matches many transcripts (SQLite: its matches counted up to the
/// threshold, which costs at most that many index entries); PostgreSQL's planner weighs this
/// itself.
async fn said_is_common(db: &Database, said: &[Said]) -> Result<bool, sqlx::Error> {
    if said.is_empty() || db.backend != Backend::Sqlite {
        return Ok(false);
    }
    let (matches,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM (SELECT rowid FROM transcript_search WHERE transcript_search MATCH $1 LIMIT $2)",
    )
    .bind(fts_query(said))
    .bind(COMMON_MATCHES + 1)
    .fetch_one(&db.pool)
    .await?;
    Ok(matches > COMMON_MATCHES)
}

/// The FTS5 query of `said`: each form a quoted term (nothing typed is read as query syntax),
/// any form of a word, every word required.
fn fts_query(said: &[Said]) -> String {
    said.iter()
        .map(|s| {
            let forms = s
                .forms
                .iter()
                .map(|f| format!("\"{}\"", f.replace('"', "\"\"")))
                .collect::<Vec<_>>()
                .join(" OR ");
            format!("({forms})")
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// Words of a transcript search at most.
pub const MAX_SAID_WORDS: usize = 10;

/// The order of the ungrouped list.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Sort {
    Newest,
    Longest,
}

/// One page of rows, and whether more follow.
pub struct Page<T> {
    pub rows: Vec<T>,
    pub more: bool,
}

/// A call of the grouped list: its key (the call id, or `file:<id>` for a file no call made),
/// its newest recording's start, how many of its recordings match, and their total length.
pub struct CallGroup {
    pub key: String,
    pub newest_ms: i64,
    pub segments: i64,
    pub duration_ms: i64,
}

/// The grouping key of a row: its call, or the file itself for one no call made.
const CALL_KEY: &str = "COALESCE(call_id, 'file:' || CAST(id AS TEXT))";

/// A value bound into a dynamically built query.
#[derive(Clone)]
enum Bind {
    Text(String),
    Int(i64),
}

/// The WHERE clauses of a search and their values, numbered `$1`, `$2`... in order.
#[derive(Clone, Default)]
struct Clauses {
    sql: Vec<String>,
    binds: Vec<Bind>,
}

impl Clauses {
    /// Binds `value` as the next numbered parameter and names it (`$n`).
    fn param(&mut self, value: Bind) -> String {
        self.binds.push(value);
        format!("${}", self.binds.len())
    }

    fn text(&mut self, value: impl Into<String>) -> String {
        self.param(Bind::Text(value.into()))
    }

    fn int(&mut self, value: i64) -> String {
        self.param(Bind::Int(value))
    }

    fn push(&mut self, clause: String) {
        self.sql.push(clause);
    }

    fn where_sql(&self) -> String {
        if self.sql.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.sql.join(" AND "))
        }
    }

    fn bind_all<'q, O>(
        &self,
        mut query: sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments<'q>> {
        for bind in &self.binds {
            query = match bind {
                Bind::Text(t) => query.bind(t.clone()),
                Bind::Int(i) => query.bind(*i),
            };
        }
        query
    }

    /// What `viewer` may see and what `filter` asks for.
    fn of(backend: Backend, viewer: &Viewer<'_>, filter: &Filter, said_common: bool) -> Clauses {
        let mut c = Clauses::default();
        let p = c.text(viewer.tenant);
        c.push(format!("tenant = {p}"));
        if !viewer.projects.is_empty() {
            let list: Vec<String> = viewer.projects.iter().map(|p| c.text(p)).collect();
            c.push(format!("project IN ({})", list.join(", ")));
        }
        // The same exact, case-sensitive comparison as the policy's `is_participant` (LIKE is
        // case-insensitive on SQLite: `pjsip/203` would have matched `PJSIP/203`).
        let own: Vec<String> = viewer
            .identities
            .iter()
            .map(|identity| {
                let p = c.text(format!(",{identity},"));
                participant_is(backend, &p)
            })
            .collect();
        let mut visible = vec!["private = 0".to_string()];
        visible.extend(own);
        if viewer.sees_unclaimed {
            visible.push("participants IS NULL OR participants = ''".into());
        }
        if visible.len() == 1 {
            c.push("private = 0".into());
        } else {
            c.push(format!("({})", visible.join(" OR ")));
        }
        // Prefix matches are range scans on their indexes.
        for (value, column) in [
            (&filter.caller_number_prefix, "caller_number"),
            (&filter.callee_prefix, "callee"),
        ] {
            if let Some(v) = value {
                let p = c.text(like_literal(v) + "%");
                c.push(format!("{column} LIKE {p} ESCAPE '\\'"));
            }
        }
        for word in &filter.name_words {
            let clause = word_prefix_clause(backend, word, &mut c);
            c.push(format!(
                "id IN (SELECT recording_id FROM recording_words WHERE {clause})"
            ));
        }
        for (value, column) in [
            (filter.node_type.map(NodeType::as_str), "node_type"),
            (filter.direction.map(Direction::as_str), "direction"),
            (filter.status.map(RecordingStatus::as_str), "status"),
            (filter.format.map(RecordingFormat::as_str), "format"),
            (filter.linkedid.as_deref(), "linkedid"),
        ] {
            if let Some(v) = value {
                let p = c.text(v.to_string());
                c.push(format!("{column} = {p}"));
            }
        }
        if !filter.said.is_empty() {
            let clause = said_clause(backend, &filter.said, said_common, &mut c);
            c.push(clause);
        }
        for (value, column) in [
            (filter.min_silence_ms, "longest_silence_ms"),
            (filter.min_agent_share, "agent_share"),
        ] {
            if let Some(v) = value {
                let p = c.int(v);
                c.push(format!(
                    "id IN (SELECT recording_id FROM recording_insights WHERE {column} >= {p})"
                ));
            }
        }
        if let Some(channel) = &filter.channel {
            let p = c.text(channel.clone());
            c.push(format!("(call_id = {p} OR callee_channel = {p})"));
        }
        for (value, clause) in [
            (filter.from_ms, "started_at_ms >="),
            (filter.to_ms, "started_at_ms <"),
            (filter.min_duration_ms, "duration_ms >="),
        ] {
            if let Some(v) = value {
                let p = c.int(v);
                c.push(format!("{clause} {p}"));
            }
        }
        c
    }
}

/// SQL: the recording's transcript holds every word of `said` (its full-text index: FTS5 on
/// SQLite, a GIN-indexed tsvector on PostgreSQL). Each word is a quoted term, so nothing typed
/// is read as the index's query syntax.
fn said_clause(backend: Backend, said: &[Said], common: bool, c: &mut Clauses) -> String {
    match backend {
        Backend::Sqlite => {
            let p = c.text(fts_query(said));
            if common {
                // Asked of each row in list order: the index seeks the row in the word's list.
                format!(
                    "EXISTS (SELECT 1 FROM transcript_search WHERE transcript_search MATCH {p} AND rowid = recordings.id)"
                )
            } else {
                format!(
                    "id IN (SELECT rowid FROM transcript_search WHERE transcript_search MATCH {p})"
                )
            }
        }
        Backend::Postgres => {
            let words = said
                .iter()
                .map(|s| {
                    let forms = s
                        .forms
                        .iter()
                        .map(|f| format!("plainto_tsquery('simple', {})", c.text(f.clone())))
                        .collect::<Vec<_>>()
                        .join(" || ");
                    format!("({forms})")
                })
                .collect::<Vec<_>>()
                .join(" && ");
            format!("id IN (SELECT recording_id FROM transcript_search WHERE words @@ ({words}))")
        }
    }
}

/// SQL: the recording's participants include the identity bound at `param` as `,identity,`.
/// Exact and case-sensitive on both backends, as the policy's `is_participant` compares.
fn participant_is(backend: Backend, param: &str) -> String {
    let position = match backend {
        Backend::Sqlite => "instr",
        Backend::Postgres => "strpos",
    };
    format!("{position}(',' || COALESCE(participants, '') || ',', {param}) > 0")
}

/// `recording_words` rows whose word starts with `prefix`, as a range scan of an index: on
/// SQLite a byte range on the primary key (its LIKE is case-insensitive and scans every row),
/// on PostgreSQL LIKE on the `text_pattern_ops` index.
fn word_prefix_clause(backend: Backend, prefix: &str, c: &mut Clauses) -> String {
    match backend {
        Backend::Sqlite => {
            let low = c.text(prefix);
            // Every word starting with `prefix` sorts below prefix + the last code point.
            let high = c.text(format!("{prefix}{}", char::MAX));
            format!("word >= {low} AND word < {high}")
        }
        Backend::Postgres => {
            let p = c.text(like_literal(prefix) + "%");
            format!("word LIKE {p} ESCAPE '\\'")
        }
    }
}

/// A LIKE pattern matching `value` anywhere as a literal.
fn like_literal(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// One page of the recordings `viewer` may see that match `filter`, in `sort` order, after the
/// row `after` (its sort key and id) when given.
pub async fn recordings(
    db: &Database,
    viewer: &Viewer<'_>,
    filter: &Filter,
    sort: Sort,
    after: Option<(i64, i64)>,
    limit: i64,
) -> Result<Page<Recording>, sqlx::Error> {
    let common = said_is_common(db, &filter.said).await?;
    let mut c = Clauses::of(db.backend, viewer, filter, common);
    let (key_column, order) = match sort {
        Sort::Newest => ("started_at_ms", "started_at_ms DESC, id DESC"),
        Sort::Longest => ("duration_ms", "duration_ms DESC, id DESC"),
    };
    if let Some((key, id)) = after {
        let (pk, pid) = (c.int(key), c.int(id));
        // Keyset: strictly after the last row of the previous page. A row-value comparison is
        // one range seek on the (key, id) index, whatever the depth.
        c.push(format!("({key_column}, id) < ({pk}, {pid})"));
    }
    let where_sql = c.where_sql();
    let limit_param = c.int(limit + 1);
    let sql = format!(
        "SELECT {COLUMNS} FROM recordings {where_sql} ORDER BY {order} LIMIT {limit_param}"
    );
    let mut rows = c
        .bind_all(sqlx::query_as::<_, Recording>(&sql))
        .fetch_all(&db.pool)
        .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit.max(0) as usize);
    Ok(Page { rows, more })
}

/// The row's sort key in `sort` order (what a cursor after it holds).
pub fn sort_key(row: &Recording, sort: Sort) -> i64 {
    match sort {
        Sort::Newest => row.started_at_ms,
        Sort::Longest => row.duration_ms,
    }
}

/// One page of the calls `viewer` may see with recordings matching `filter`, newest call first
/// (by its newest matching recording), after the call `after` (its newest start and key) when
/// given; with the page's matching recordings, oldest first. Each page groups the filtered rows
/// of the viewer's scope, so its cost grows with them (a time range narrows it).
pub async fn calls(
    db: &Database,
    viewer: &Viewer<'_>,
    filter: &Filter,
    after: Option<(i64, String)>,
    limit: i64,
) -> Result<(Page<CallGroup>, Vec<Recording>), sqlx::Error> {
    let common = said_is_common(db, &filter.said).await?;
    let filters = Clauses::of(db.backend, viewer, filter, common);
    let where_sql = filters.where_sql();
    let mut c = filters.clone();
    let mut having = String::new();
    if let Some((newest, key)) = after {
        let (pn, pk) = (c.int(newest), c.text(key));
        having = format!(
            "HAVING MAX(started_at_ms) < {pn} OR (MAX(started_at_ms) = {pn} AND {CALL_KEY} < {pk})"
        );
    }
    let pl = c.int(limit + 1);
    let sql = format!(
        "SELECT {CALL_KEY} AS call_key, CAST(MAX(started_at_ms) AS BIGINT) AS newest, \
         CAST(COUNT(*) AS BIGINT) AS segments, CAST(SUM(duration_ms) AS BIGINT) AS duration \
         FROM recordings {where_sql} GROUP BY {CALL_KEY} {having} \
         ORDER BY newest DESC, call_key DESC LIMIT {pl}"
    );
    let mut groups: Vec<CallGroup> = c
        .bind_all(sqlx::query_as::<_, (String, i64, i64, i64)>(&sql))
        .fetch_all(&db.pool)
        .await?
        .into_iter()
        .map(|(key, newest_ms, segments, duration_ms)| CallGroup {
            key,
            newest_ms,
            segments,
            duration_ms,
        })
        .collect();
    let more = groups.len() as i64 > limit;
    groups.truncate(limit.max(0) as usize);
    // The page's recordings, by the same filters.
    let mut rows = Vec::new();
    if !groups.is_empty() {
        let mut c = filters;
        let keys: Vec<String> = groups.iter().map(|g| c.text(g.key.clone())).collect();
        let sql = format!(
            "SELECT {COLUMNS} FROM recordings {where_sql} AND {CALL_KEY} IN ({}) \
             ORDER BY COALESCE(asterisk_started_at_ms, started_at_ms), id",
            keys.join(", ")
        );
        rows = c
            .bind_all(sqlx::query_as::<_, Recording>(&sql))
            .fetch_all(&db.pool)
            .await?;
    }
    Ok((Page { rows: groups, more }, rows))
}

/// The grouping key of `row` in [`calls`].
pub fn call_key(row: &Recording) -> String {
    match &row.call_id {
        Some(call) => call.clone(),
        None => format!("file:{}", row.id),
    }
}

/// How many of `tenant`'s private recordings `identity` was on: what giving someone that
/// extension would open to them.
pub async fn private_recordings_on(
    db: &Database,
    tenant: &str,
    identity: &str,
) -> Result<i64, sqlx::Error> {
    let (count,): (i64,) = sqlx::query_as(&format!(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM recordings WHERE tenant = $1 AND private <> 0 AND {}",
        participant_is(db.backend, "$2")
    ))
    .bind(tenant)
    .bind(format!(",{identity},"))
    .fetch_one(&db.pool)
    .await?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finding 13: on SQLite a caller-name word search was `LIKE`, which SQLite cannot answer
    /// from an index (it is case-insensitive): every row of `recording_words` was read.
    #[tokio::test]
    async fn word_searches_are_index_range_scans() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}/plan.db?mode=rwc", dir.path().display());
        let db = Database::open(&url).await.expect("db");
        for (word, id) in [("alice", 1), ("alicia", 2), ("bob", 3), ("al", 4)] {
            sqlx::query("INSERT INTO recording_words (word, recording_id) VALUES ($1, $2)")
                .bind(word)
                .bind(id)
                .execute(&db.pool)
                .await
                .expect("insert");
        }
        let mut c = Clauses::default();
        let clause = word_prefix_clause(db.backend, "ali", &mut c);
        let sql = format!(
            "SELECT recording_id FROM recording_words WHERE {clause} ORDER BY recording_id"
        );
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let found: Vec<i64> = c
            .bind_all(sqlx::query_as::<_, (i64,)>(&sql))
            .fetch_all(&db.pool)
            .await
            .expect("search")
            .into_iter()
            .map(|(id,)| id)
            .collect();
        assert_eq!(found, vec![1, 2]);
        let plan: Vec<String> = c
            .bind_all(sqlx::query_as::<_, (i64, i64, i64, String)>(&explain))
            .fetch_all(&db.pool)
            .await
            .expect("plan")
            .into_iter()
            .map(|row| row.3)
            .collect();
        assert!(
            plan.iter()
                .any(|step| step.starts_with("SEARCH recording_words"))
                && !plan
                    .iter()
                    .any(|step| step.starts_with("SCAN recording_words")),
            "{plan:?}"
        );
    }

    /// Both SQLite forms of a transcript search find the same rows, and the walk of the newest
    /// rows is chosen only when every word is in more transcripts than the threshold.
    #[tokio::test]
    async fn transcript_searches_find_the_same_rows_either_way() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}/said.db?mode=rwc", dir.path().display());
        let db = Database::open(&url).await.expect("db");
        for (id, text) in [
            (1, "a refund please"),
            (2, "no money"),
            (3, "refund the parcel"),
        ] {
            sqlx::query("INSERT INTO recordings (id, path, name, format, status, size_bytes, mtime_ms, duration_ms, sample_rate, data_offset, data_len, started_at_ms, indexed_at_ms) VALUES ($1, $2, $2, 'wav', 'ready', 0, 0, 0, 8000, 44, 0, $1, 0)")
                .bind(id)
                .bind(format!("r{id}"))
                .execute(&db.pool)
                .await
                .expect("row");
            sqlx::query("INSERT INTO transcript_search (rowid, text) VALUES ($1, $2)")
                .bind(id)
                .bind(text)
                .execute(&db.pool)
                .await
                .expect("words");
        }
        let said = crate::library::transcripts::said(&["refund".to_string()], None);
        let mut found = Vec::new();
        for common in [false, true] {
            let mut c = Clauses::default();
            let clause = said_clause(Backend::Sqlite, &said, common, &mut c);
            let sql = format!("SELECT id FROM recordings WHERE {clause} ORDER BY id");
            let ids: Vec<i64> = c
                .bind_all(sqlx::query_as::<_, (i64,)>(&sql))
                .fetch_all(&db.pool)
                .await
                .expect("search")
                .into_iter()
                .map(|(id,)| id)
                .collect();
            found.push(ids);
        }
        assert_eq!(found, vec![vec![1, 3], vec![1, 3]]);
        // Two transcripts say it: far below the threshold; a word said nowhere matches nothing.
        assert!(!said_is_common(&db, &said).await.expect("counts"));
        let nowhere = crate::library::transcripts::said(&["nowhere".to_string()], None);
        assert!(!said_is_common(&db, &nowhere).await.expect("counts"));
    }

    #[test]
    fn values_are_bound_never_spliced() {
        let projects = vec!["sales".to_string()];
        let viewer = Viewer {
            tenant: "acme'; DROP TABLE recordings; --",
            projects: &projects,
            identities: vec!["alice", "201"],
            sees_unclaimed: false,
        };
        let filter = Filter {
            caller_number_prefix: Some("55%_".into()),
            name_words: vec!["bo".into()],
            status: Some(RecordingStatus::Ready),
            from_ms: Some(1),
            ..Filter::default()
        };
        let c = Clauses::of(Backend::Sqlite, &viewer, &filter, false);
        let sql = c.where_sql();
        assert!(!sql.contains("DROP") && !sql.contains("55"), "{sql}");
        // tenant, project, two identities, the prefix, the word's two bounds, status, from.
        assert_eq!(c.binds.len(), 9);
        assert!(
            matches!(&c.binds[4], Bind::Text(t) if t == "55\\%\\_%"),
            "a LIKE prefix is escaped"
        );
    }
}
