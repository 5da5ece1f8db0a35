//! The database under every domain: opening SQLite or PostgreSQL, the migrations of all
//! tables, connections held across writes, and whether writes go through. It knows no domain:
//! each domain owns its tables through it, and what a layer above keeps with a handle (the
//! audit trail's keys and group writer) is attached to it by type.
//!
//! Queries are built at run time through `sqlx::Any` (never the compile-time macros), so one
//! binary serves SQLite and PostgreSQL; each backend has its own migrations folder because
//! their DDL differs.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("DATABASE_URL {0:?} names neither sqlite: nor postgres://")]
    UnknownBackend(String),
    #[error("cannot create the database folder {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the library database ({url}): {source}")]
    Open { url: String, source: sqlx::Error },
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        version: i64,
        name: &'static str,
        source: sqlx::Error,
    },
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    /// A group of audit events could not be appended (the reason is shared by each).
    #[error("audit write failed: {0}")]
    Audit(String),
    /// A value sealed at rest (a transcript, a talk timeline) could not be sealed or opened.
    #[error("sealed value: {0}")]
    Sealed(String),
}

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

/// Embedded so a deployed binary carries its schema.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "call_recordings",
        sqlite: include_str!("../migrations/sqlite/0001_call_recordings.sql"),
        postgres: include_str!("../migrations/postgres/0001_call_recordings.sql"),
    },
    Migration {
        version: 2,
        name: "recordings",
        sqlite: include_str!("../migrations/sqlite/0002_recordings.sql"),
        postgres: include_str!("../migrations/postgres/0002_recordings.sql"),
    },
    Migration {
        version: 3,
        name: "recording_words",
        sqlite: include_str!("../migrations/sqlite/0003_recording_words.sql"),
        postgres: include_str!("../migrations/postgres/0003_recording_words.sql"),
    },
    Migration {
        version: 4,
        name: "access",
        sqlite: include_str!("../migrations/sqlite/0004_access.sql"),
        postgres: include_str!("../migrations/postgres/0004_access.sql"),
    },
    Migration {
        version: 5,
        name: "active_calls",
        sqlite: include_str!("../migrations/sqlite/0005_active_calls.sql"),
        postgres: include_str!("../migrations/postgres/0005_active_calls.sql"),
    },
    Migration {
        version: 6,
        name: "call_endpoints",
        sqlite: include_str!("../migrations/sqlite/0006_call_endpoints.sql"),
        postgres: include_str!("../migrations/postgres/0006_call_endpoints.sql"),
    },
    Migration {
        version: 7,
        name: "session_idle",
        sqlite: include_str!("../migrations/sqlite/0007_session_idle.sql"),
        postgres: include_str!("../migrations/postgres/0007_session_idle.sql"),
    },
    Migration {
        version: 8,
        name: "audit_keys",
        sqlite: include_str!("../migrations/sqlite/0008_audit_keys.sql"),
        postgres: include_str!("../migrations/postgres/0008_audit_keys.sql"),
    },
    Migration {
        version: 9,
        name: "word_prefix",
        sqlite: include_str!("../migrations/sqlite/0009_word_prefix.sql"),
        postgres: include_str!("../migrations/postgres/0009_word_prefix.sql"),
    },
    Migration {
        version: 10,
        name: "recording_redactions",
        sqlite: include_str!("../migrations/sqlite/0010_recording_redactions.sql"),
        postgres: include_str!("../migrations/postgres/0010_recording_redactions.sql"),
    },
    Migration {
        version: 11,
        name: "recordings_by_call",
        sqlite: include_str!("../migrations/sqlite/0011_recordings_by_call.sql"),
        postgres: include_str!("../migrations/postgres/0011_recordings_by_call.sql"),
    },
    Migration {
        version: 12,
        name: "recording_transcripts",
        sqlite: include_str!("../migrations/sqlite/0012_recording_transcripts.sql"),
        postgres: include_str!("../migrations/postgres/0012_recording_transcripts.sql"),
    },
    Migration {
        version: 13,
        name: "retention_and_holds",
        sqlite: include_str!("../migrations/sqlite/0013_retention_and_holds.sql"),
        postgres: include_str!("../migrations/postgres/0013_retention_and_holds.sql"),
    },
    Migration {
        version: 14,
        name: "delete_confirmations",
        sqlite: include_str!("../migrations/sqlite/0014_delete_confirmations.sql"),
        postgres: include_str!("../migrations/postgres/0014_delete_confirmations.sql"),
    },
    Migration {
        version: 15,
        name: "archive",
        sqlite: include_str!("../migrations/sqlite/0015_archive.sql"),
        postgres: include_str!("../migrations/postgres/0015_archive.sql"),
    },
    Migration {
        version: 16,
        name: "recording_seals",
        sqlite: include_str!("../migrations/sqlite/0016_recording_seals.sql"),
        postgres: include_str!("../migrations/postgres/0016_recording_seals.sql"),
    },
    Migration {
        version: 17,
        name: "node_ids",
        sqlite: include_str!("../migrations/sqlite/0017_node_ids.sql"),
        postgres: include_str!("../migrations/postgres/0017_node_ids.sql"),
    },
    Migration {
        version: 18,
        name: "audit_anchoring",
        sqlite: include_str!("../migrations/sqlite/0018_audit_anchoring.sql"),
        postgres: include_str!("../migrations/postgres/0018_audit_anchoring.sql"),
    },
    Migration {
        version: 19,
        name: "user_names_per_tenant",
        sqlite: include_str!("../migrations/sqlite/0019_user_names_per_tenant.sql"),
        postgres: include_str!("../migrations/postgres/0019_user_names_per_tenant.sql"),
    },
    Migration {
        version: 20,
        name: "webhooks",
        sqlite: include_str!("../migrations/sqlite/0020_webhooks.sql"),
        postgres: include_str!("../migrations/postgres/0020_webhooks.sql"),
    },
    Migration {
        version: 21,
        name: "linkedid",
        sqlite: include_str!("../migrations/sqlite/0021_linkedid.sql"),
        postgres: include_str!("../migrations/postgres/0021_linkedid.sql"),
    },
    Migration {
        version: 22,
        name: "callee_channel",
        sqlite: include_str!("../migrations/sqlite/0022_callee_channel.sql"),
        postgres: include_str!("../migrations/postgres/0022_callee_channel.sql"),
    },
    Migration {
        version: 23,
        name: "call_objects",
        sqlite: include_str!("../migrations/sqlite/0023_call_objects.sql"),
        postgres: include_str!("../migrations/postgres/0023_call_objects.sql"),
    },
    Migration {
        version: 24,
        name: "transcription_jobs",
        sqlite: include_str!("../migrations/sqlite/0024_transcription_jobs.sql"),
        postgres: include_str!("../migrations/postgres/0024_transcription_jobs.sql"),
    },
    Migration {
        version: 25,
        name: "transcript_search",
        sqlite: include_str!("../migrations/sqlite/0025_transcript_search.sql"),
        postgres: include_str!("../migrations/postgres/0025_transcript_search.sql"),
    },
    Migration {
        version: 26,
        name: "recording_insights",
        sqlite: include_str!("../migrations/sqlite/0026_recording_insights.sql"),
        postgres: include_str!("../migrations/postgres/0026_recording_insights.sql"),
    },
    Migration {
        version: 27,
        name: "sealed_transcripts",
        sqlite: include_str!("../migrations/sqlite/0027_sealed_transcripts.sql"),
        postgres: include_str!("../migrations/postgres/0027_sealed_transcripts.sql"),
    },
    Migration {
        version: 28,
        name: "voicemail_heard",
        sqlite: include_str!("../migrations/sqlite/0028_voicemail_heard.sql"),
        postgres: include_str!("../migrations/postgres/0028_voicemail_heard.sql"),
    },
];

/// The PostgreSQL advisory lock instances take turns on to migrate (an arbitrary constant:
/// "ari-rec" in ASCII).
const MIGRATION_LOCK: i64 = 0x0061_7269_2d72_6563;

/// `$first, $first+1, ...`: `count` numbered parameters from `first`, for an `IN (...)` list.
pub fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How many migrations this binary carries.
pub fn migration_count() -> usize {
    MIGRATIONS.len()
}

/// A pooled connection idle this long is pinged before it is handed out again.
const PING_IDLE_AFTER: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Database {
    pub pool: AnyPool,
    pub backend: Backend,
    /// What the layers above keep with this handle and its clones, one value a type.
    attached: Arc<Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>>,
    /// When a write last failed after waiting on the database, and why; None once one went
    /// through. Shared by every handle of this database.
    write_failure: Arc<Mutex<Option<(i64, String)>>>,
}

impl Database {
    /// The value of type `T` kept with this handle (and its clones), made at first use.
    pub fn attached<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        let mut attached = self.attached.lock().unwrap_or_else(|p| p.into_inner());
        let value = attached
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(T::default()));
        match Arc::clone(value).downcast::<T>() {
            Ok(value) => value,
            // Unreachable: the entry of T's TypeId holds a T.
            Err(_) => Arc::new(T::default()),
        }
    }

    /// The same database as a handle of its own that keeps `value` and nothing else attached
    /// (its clones share them; the handle it was made from keeps its own).
    pub fn with_attached<T: Send + Sync + 'static>(self, value: T) -> Database {
        let mut attached: HashMap<TypeId, Arc<dyn Any + Send + Sync>> = HashMap::new();
        attached.insert(TypeId::of::<T>(), Arc::new(value));
        Database {
            attached: Arc::new(Mutex::new(attached)),
            ..self
        }
    }

    fn write_failure(&self) -> std::sync::MutexGuard<'_, Option<(i64, String)>> {
        self.write_failure.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the last write showed: Some when it failed after waiting on the database (its lock
    /// timeout, a connection), with when and why; None when it went through or failed at once.
    pub fn set_write_failure(&self, failure: Option<(i64, String)>) {
        *self.write_failure() = failure;
    }

    /// When a write last failed after a wait, and why, if none went through since.
    pub fn write_failed_lately(&self) -> Option<(i64, String)> {
        self.write_failure().clone()
    }

    /// A write went through: the database takes writes again (audited requests stop being
    /// refused at once after a failed audit write).
    pub fn took_a_write(&self) {
        if let Ok(mut failed) = self.write_failure.try_lock() {
            *failed = None;
        }
    }

    /// Opens (creating an SQLite file and its folder when needed) and migrates.
    pub async fn open(url: &str) -> Result<Database, DbError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(DbError::UnknownBackend(redact_url(url)));
        };
        if backend == Backend::Sqlite {
            if let Some(parent) = sqlite_file(url).and_then(|p| p.parent().map(PathBuf::from)) {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(&parent).map_err(|source| DbError::Folder {
                        path: parent.clone(),
                        source,
                    })?;
                }
            }
        }
        let mut options = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 10 })
            .acquire_timeout(Duration::from_secs(10))
            // sqlx pings every connection it hands out: a round trip on PostgreSQL before each
            // of a request's queries (three for a list page). A connection used within the
            // last seconds is known to be alive; one idle longer (the server may have
            // restarted) is still checked.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IDLE_AFTER {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            });
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL lets readers run beside the indexer's writes; NORMAL is durable
                    // across a process crash in WAL mode, which is what kill -9 tests.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    conn.execute("PRAGMA busy_timeout = 5000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(url).await.map_err(|source| DbError::Open {
            url: redact_url(url),
            source,
        })?;
        let db = Database {
            pool,
            backend,
            attached: Default::default(),
            write_failure: Default::default(),
        };
        db.migrate().await?;
        Ok(db)
    }

    /// Applies the migrations this database lacks, each in its own transaction. On PostgreSQL,
    /// several instances starting together take turns: each transaction first takes an advisory
    /// lock (released when it ends), then looks whether its migration is still to be applied.
    async fn migrate(&self) -> Result<(), DbError> {
        let postgres = self.backend == Backend::Postgres;
        let mut conn = self.pool.acquire().await?;
        begin_migration(&mut conn, postgres).await?;
        let created = sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL)",
        )
        .execute(&mut *conn)
        .await;
        end_migration(&mut conn, created.map(|_| ()).map_err(DbError::from)).await?;
        for migration in MIGRATIONS {
            begin_migration(&mut conn, postgres).await?;
            let result = async {
                let applied: Option<(i64,)> =
                    sqlx::query_as("SELECT version FROM schema_migrations WHERE version = $1")
                        .bind(migration.version)
                        .fetch_optional(&mut *conn)
                        .await?;
                if applied.is_some() {
                    return Ok(());
                }
                let fail = |source| DbError::Migration {
                    version: migration.version,
                    name: migration.name,
                    source,
                };
                let sql = match self.backend {
                    Backend::Sqlite => migration.sqlite,
                    Backend::Postgres => migration.postgres,
                };
                sqlx::raw_sql(sql).execute(&mut *conn).await.map_err(fail)?;
                sqlx::query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)")
                    .bind(migration.version)
                    .bind(migration.name)
                    .execute(&mut *conn)
                    .await
                    .map_err(fail)?;
                Ok(())
            }
            .await;
            end_migration(&mut conn, result).await?;
        }
        Ok(())
    }

    /// For `/readyz`: the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// One pooled connection kept by a task across a run of statements. sqlx checks every
/// connection given back to the pool with a round trip (and a task to run it), so a task that
/// writes several times a call (the call runtime's writer, the indexer) keeps its own while busy
/// and gives it back once quiet or after a failure (the pool then checks and replaces it).
pub struct HeldConnection {
    pool: AnyPool,
    conn: Option<sqlx::pool::PoolConnection<sqlx::Any>>,
}

impl HeldConnection {
    pub fn new(db: &Database) -> HeldConnection {
        HeldConnection {
            pool: db.pool.clone(),
            conn: None,
        }
    }

    /// The connection, taken from the pool when none is held.
    pub async fn get(&mut self) -> Result<&mut sqlx::AnyConnection, sqlx::Error> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => self.pool.acquire().await?,
        };
        Ok(&mut **self.conn.insert(conn))
    }

    pub fn is_held(&self) -> bool {
        self.conn.is_some()
    }

    /// Gives the connection back to the pool.
    pub fn release(&mut self) {
        self.conn = None;
    }

    /// Closes the connection after a failed write instead of giving it back: a SQLite `COMMIT`
    /// refused by a full disk leaves its transaction open (SQLite lets it be retried), and a
    /// pooled connection in an open transaction would hold the write lock and show the next
    /// user rows nobody else sees. Closing it rolls the transaction back.
    pub fn discard(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
        }
    }
}

/// Starts one migration step, holding the right to migrate until it ends: on PostgreSQL an
/// advisory lock taken in the transaction; on SQLite the write lock, taken at `BEGIN
/// IMMEDIATE` (waiting its turn under busy_timeout). A deferred SQLite transaction that read
/// first would fail at once with "database is locked" when another process migrated meanwhile.
async fn begin_migration(conn: &mut sqlx::AnyConnection, postgres: bool) -> Result<(), DbError> {
    if postgres {
        sqlx::raw_sql("BEGIN").execute(&mut *conn).await?;
        let locked = sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await;
        if let Err(e) = locked {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
            return Err(e.into());
        }
    } else {
        sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    }
    Ok(())
}

/// Commits the step when `result` is Ok, else rolls it back and returns the error.
async fn end_migration(
    conn: &mut sqlx::AnyConnection,
    result: Result<(), DbError>,
) -> Result<(), DbError> {
    match result {
        Ok(()) => {
            sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
            Ok(())
        }
        Err(e) => {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
            Err(e)
        }
    }
}

/// The file of a SQLite URL (`sqlite://path?mode=rwc`); None for memory or another database.
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    PathBuf::from_str(path).ok()
}

/// Removes the password from a URL such as `postgres://user:secret@host/db`.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => raw.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths_are_found() {
        assert_eq!(
            sqlite_file("sqlite://./data/x.db?mode=rwc"),
            Some(PathBuf::from("./data/x.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
    }

    /// Processes that open a new library at once (`serve` and `index`, a test and the service)
    /// migrate it once, none failing on the other's lock.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_opens_of_a_new_sqlite_library_all_succeed() {
        for round in 0..5 {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}/lib.db?mode=rwc", dir.path().display());
            let opens = (0..4).map(|_| Database::open(&url));
            for result in futures_util::future::join_all(opens).await {
                assert!(result.is_ok(), "round {round}: {:?}", result.err());
            }
        }
    }

    #[tokio::test]
    async fn sqlite_opens_migrates_twice_and_pings() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/sub/lib.db?mode=rwc", dir.path().display());
        let db = Database::open(&url).await.expect("opens");
        db.ping().await.expect("pings");
        drop(db);
        let again = Database::open(&url)
            .await
            .expect("re-opens without re-applying");
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM schema_migrations")
            .fetch_one(&again.pool)
            .await
            .expect("counts");
        assert_eq!(n, MIGRATIONS.len() as i64);
    }
}
