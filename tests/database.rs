//! The library database on both backends: real SQLite and real PostgreSQL (the test script
//! starts one and sets TEST_POSTGRES_URL).

use ari_recorder::access::audit::SealedAudit;
use ari_recorder::db::{Backend, Database};

#[derive(sqlx::FromRow, Debug, PartialEq)]
struct Row {
    recording_name: String,
    call_id: String,
    duration_seconds: Option<i64>,
}

async fn exercise(db: &Database) {
    db.ping().await.expect("ping");
    sqlx::query(
        "INSERT INTO call_recordings (recording_name, call_id, format, state, started_at_ms) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind("transfer-1a5138fb")
    .bind("1795300930.35")
    .bind("wav")
    .bind("recording")
    .bind(1_795_300_930_000i64)
    .execute(&db.pool)
    .await
    .expect("insert");
    sqlx::query(
        "UPDATE call_recordings SET state = $1, duration_seconds = $2 WHERE recording_name = $3",
    )
    .bind("done")
    .bind(16i64)
    .bind("transfer-1a5138fb")
    .execute(&db.pool)
    .await
    .expect("update");
    let row: Row = sqlx::query_as(
        "SELECT recording_name, call_id, duration_seconds FROM call_recordings WHERE recording_name = $1",
    )
    .bind("transfer-1a5138fb")
    .fetch_one(&db.pool)
    .await
    .expect("select");
    assert_eq!(
        row,
        Row {
            recording_name: "transfer-1a5138fb".into(),
            call_id: "1795300930.35".into(),
            duration_seconds: Some(16),
        }
    );
}

/// A new, empty database on the test PostgreSQL server, dropped by `drop`.
struct FreshPostgres {
    url: String,
    admin: sqlx::AnyPool,
    name: String,
}

impl FreshPostgres {
    async fn drop(self) {
        sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .execute(&self.admin)
            .await
            .expect("drop db");
    }
}

/// A new, empty PostgreSQL database on the test server (the tests that use it are ignored by
/// a plain `cargo test`; `scripts/test.sh` provides the server and runs them).
async fn fresh_postgres() -> FreshPostgres {
    let admin_url = std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("TEST_POSTGRES_URL is not set: this test needs PostgreSQL; run it through scripts/test.sh")
    });
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&admin_url)
        .await
        .expect("admin connection");
    let name = format!("ari_recorder_test_{}", fastrand::u64(..));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .expect("create db");
    let url = match admin_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("TEST_POSTGRES_URL has no database part"),
    };
    FreshPostgres { url, admin, name }
}

#[tokio::test]
async fn sqlite_backend_migrates_and_stores() {
    let dir = tempfile::tempdir().expect("dir");
    let db = Database::open(&format!(
        "sqlite://{}/data/lib.db?mode=rwc",
        dir.path().display()
    ))
    .await
    .expect("open");
    assert_eq!(db.backend, Backend::Sqlite);
    exercise(&db).await;
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(&db.pool)
        .await
        .expect("pragma");
    assert_eq!(mode, "wal");
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test.sh starts one and runs it"]
async fn postgres_backend_migrates_and_stores() {
    let fresh = fresh_postgres().await;
    let url = fresh.url.clone();
    let db = Database::open(&url).await.expect("open");
    assert_eq!(db.backend, Backend::Postgres);
    exercise(&db).await;
    // Opening again applies nothing twice.
    let again = Database::open(&url).await.expect("reopen");
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM schema_migrations")
        .fetch_one(&again.pool)
        .await
        .expect("count");
    assert_eq!(
        n,
        ari_recorder::db::migration_count() as i64,
        "every migration applied once"
    );
    db.pool.close().await;
    again.pool.close().await;
    fresh.drop().await;
}

/// Issue 15: several instances starting together on one PostgreSQL migrate it once: they take
/// turns on an advisory lock, and each finds the schema complete.
#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test.sh starts one and runs it"]
async fn instances_starting_together_on_postgresql_migrate_once() {
    let fresh = fresh_postgres().await;
    let url = fresh.url.clone();
    // Eight starts at once, each on a thread of its own, as separate processes would.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let starts: Vec<_> = (0..8)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                barrier.wait();
                runtime
                    .block_on(Database::open(&url))
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    for start in starts {
        start
            .join()
            .expect("thread")
            .expect("every instance starts");
    }
    let db = Database::open(&url).await.expect("open");
    let (applied,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM schema_migrations")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(applied as usize, ari_recorder::db::migration_count());
    db.pool.close().await;
    fresh.drop().await;
}

/// Issue 15: several instances (separate pools, on threads of their own, as separate processes
/// would be) write one audit chain at once, each from five requests at once (their events
/// appended in groups) and through actions' own transactions; it stays one unbroken chain and
/// every event has its own place in it.
async fn instances_write_one_audit_chain(url: String) {
    use ari_recorder::access::audit::{self, AuditEntry, AuditTx};
    Database::open(&url).await.expect("migrated");
    let writers: Vec<_> = (0..4)
        .map(|instance| {
            let url = url.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async move {
                    let db = Database::open(&url).await.expect("open");
                    let requests: Vec<_> = (0..5)
                        .map(|request| {
                            let db = db.clone();
                            tokio::spawn(async move {
                                let mut seqs = Vec::new();
                                for i in 0..5 {
                                    let entry = AuditEntry {
                                        detail: Some(format!(
                                            "instance {instance}, request {request}, event {i}"
                                        )),
                                        ..AuditEntry::new(
                                            format!("node:{instance}"),
                                            "default",
                                            "list",
                                        )
                                    };
                                    let seq = if i == 2 {
                                        // An action's own transaction, beside the groups.
                                        AuditTx::begin(&db)
                                            .await
                                            .expect("begin")
                                            .commit(&entry)
                                            .await
                                    } else {
                                        audit::record(&db, &entry).await
                                    };
                                    seqs.push(seq.expect("recorded"));
                                }
                                seqs
                            })
                        })
                        .collect();
                    let mut seqs = Vec::new();
                    for request in requests {
                        seqs.extend(request.await.expect("request"));
                    }
                    seqs
                })
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for writer in writers {
        seqs.extend(writer.join().expect("writer"));
    }
    seqs.sort();
    assert_eq!(
        seqs,
        (1..=100).collect::<Vec<i64>>(),
        "each event its own place"
    );
    let db = Database::open(&url).await.expect("open");
    let report = audit::verify(&db, None).await.expect("verify");
    assert_eq!((report.events, report.problem), (100, None));
}

/// A group of audit events that cannot be written fails each of its callers (none waits
/// forever, none is told its event is stored), and the events after it are written again once
/// the database is back.
async fn a_failed_audit_write_fails_each_caller_and_writing_resumes(url: String) {
    use ari_recorder::access::audit::{self, AuditEntry};
    let db = Database::open(&url).await.expect("open");
    let entry = AuditEntry::new("tester", "default", "list");
    assert_eq!(audit::record(&db, &entry).await.expect("first"), 1);
    sqlx::query("ALTER TABLE audit_head RENAME TO audit_head_away")
        .execute(&db.pool)
        .await
        .expect("take the head away");
    let failing: Vec<_> = (0..10)
        .map(|_| {
            let (db, entry) = (db.clone(), entry.clone());
            tokio::spawn(async move { audit::record(&db, &entry).await })
        })
        .collect();
    for caller in failing {
        let result = caller.await.expect("caller");
        assert!(result.is_err(), "stored without its chain: {result:?}");
    }
    sqlx::query("ALTER TABLE audit_head_away RENAME TO audit_head")
        .execute(&db.pool)
        .await
        .expect("head back");
    assert_eq!(audit::record(&db, &entry).await.expect("after"), 2);
    let report = audit::verify(&db, None).await.expect("verify");
    assert_eq!((report.events, report.problem), (2, None));
}

#[tokio::test]
async fn a_failed_audit_write_fails_each_caller_and_writing_resumes_on_sqlite() {
    let dir = tempfile::tempdir().expect("dir");
    a_failed_audit_write_fails_each_caller_and_writing_resumes(format!(
        "sqlite://{}/lib.db?mode=rwc",
        dir.path().display()
    ))
    .await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test.sh starts one and runs it"]
async fn a_failed_audit_write_fails_each_caller_and_writing_resumes_on_postgresql() {
    let fresh = fresh_postgres().await;
    a_failed_audit_write_fails_each_caller_and_writing_resumes(fresh.url.clone()).await;
    fresh.drop().await;
}

#[tokio::test]
async fn instances_write_one_audit_chain_on_sqlite() {
    let dir = tempfile::tempdir().expect("dir");
    instances_write_one_audit_chain(format!("sqlite://{}/lib.db?mode=rwc", dir.path().display()))
        .await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test.sh starts one and runs it"]
async fn instances_write_one_audit_chain_on_postgresql() {
    let fresh = fresh_postgres().await;
    instances_write_one_audit_chain(fresh.url.clone()).await;
    fresh.drop().await;
}

/// Two handles on one database with different audit keys, writing at once: each event is
/// sealed with the key of the handle it was recorded through (grouped writes never mix them).
#[tokio::test]
async fn handles_with_different_audit_keys_seal_their_own_events() {
    use ari_recorder::access::audit::{self, AuditEntry};
    use ari_recorder::signing::SigningKeys;
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}/lib.db?mode=rwc", dir.path().display());
    let keys = |first: &str| {
        let entries = [
            "a1:audit-key-a-for-this-test-0123456789",
            "b1:audit-key-b-for-this-test-0123456789",
        ];
        let mut entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        // The first entry is the one that seals.
        entries.sort_by_key(|e| !e.starts_with(first));
        SigningKeys::parse(&entries).expect("keys")
    };
    let a = Database::open(&url)
        .await
        .expect("open")
        .with_audit_keys(Some(keys("a1")));
    let b = a.clone().with_audit_keys(Some(keys("b1")));
    let writers: Vec<_> = (0..40)
        .map(|i| {
            let (db, actor) = if i % 2 == 0 {
                (a.clone(), "through-a")
            } else {
                (b.clone(), "through-b")
            };
            tokio::spawn(async move {
                audit::record(&db, &AuditEntry::new(actor, "default", "list")).await
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer").expect("recorded");
    }
    let sealed: Vec<(String, Option<String>, i64)> = sqlx::query_as(
        "SELECT actor, key_id, COUNT(*) FROM audit_events GROUP BY actor, key_id ORDER BY actor",
    )
    .fetch_all(&a.pool)
    .await
    .expect("events");
    assert_eq!(
        sealed,
        vec![
            ("through-a".to_string(), Some("a1".to_string()), 20),
            ("through-b".to_string(), Some("b1".to_string()), 20)
        ]
    );
    let report = audit::verify(&a, None).await.expect("verify");
    assert_eq!((report.events, report.problem), (40, None));
}

/// A caller name's search words: written with a new row, left alone when a re-index brings the
/// same name, replaced when the name changed.
async fn caller_name_words_follow_the_name(url: String) {
    use ari_recorder::library::index::store_name_words;
    let db = Database::open(&url).await.expect("open");
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO recordings (path, name, format, status, size_bytes, mtime_ms, duration_ms, encoding, sample_rate, data_offset, data_len, started_at_ms, indexed_at_ms) \
         VALUES ('a.wav', 'a', 'wav', 'ready', 144, 1, 1, 'pcm16', 8000, 44, 100, 1, 1) RETURNING id",
    )
    .fetch_one(&db.pool)
    .await
    .expect("row");
    let words = || async {
        let mut words: Vec<(String,)> =
            sqlx::query_as("SELECT word FROM recording_words WHERE recording_id = $1")
                .bind(id)
                .fetch_all(&db.pool)
                .await
                .expect("words");
        words.sort();
        words.into_iter().map(|(w,)| w).collect::<Vec<_>>()
    };
    let mut conn = db.pool.acquire().await.expect("connection");
    store_name_words(&mut conn, id, "Alice O'Brien-Smith", true)
        .await
        .expect("new row");
    assert_eq!(words().await, ["alice", "brien", "o", "smith"]);
    store_name_words(&mut conn, id, "alice smith O Brien", false)
        .await
        .expect("same words");
    assert_eq!(words().await, ["alice", "brien", "o", "smith"]);
    store_name_words(&mut conn, id, "Bob Smith", false)
        .await
        .expect("renamed");
    assert_eq!(words().await, ["bob", "smith"]);
    store_name_words(&mut conn, id, "", false)
        .await
        .expect("no name");
    assert!(words().await.is_empty());
}

#[tokio::test]
async fn caller_name_words_follow_the_name_on_sqlite() {
    let dir = tempfile::tempdir().expect("dir");
    caller_name_words_follow_the_name(format!("sqlite://{}/lib.db?mode=rwc", dir.path().display()))
        .await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test.sh starts one and runs it"]
async fn caller_name_words_follow_the_name_on_postgresql() {
    let fresh = fresh_postgres().await;
    caller_name_words_follow_the_name(fresh.url.clone()).await;
    fresh.drop().await;
}

/// Calls' states written together: the newest of each call saved in one statement, ended calls
/// removed in another, a later write replacing an earlier one.
async fn call_states_are_saved_together(url: String) {
    use ari_recorder::flows::saved::save_all;
    let db = Database::open(&url).await.expect("open");
    let mut conn = db.pool.acquire().await.expect("connection");
    let saved = || async {
        let mut rows: Vec<(String, String)> =
            sqlx::query_as("SELECT call_id, state FROM active_calls")
                .fetch_all(&db.pool)
                .await
                .expect("rows");
        rows.sort();
        rows
    };
    let s = |v: &str| Some(v.to_string());
    save_all(&mut conn, &[("a".into(), s("1")), ("b".into(), s("2"))], 1)
        .await
        .expect("first");
    assert_eq!(
        saved().await,
        [("a".into(), "1".into()), ("b".into(), "2".into())]
    );
    save_all(
        &mut conn,
        &[
            ("a".into(), s("3")),
            ("b".into(), None),
            ("c".into(), s("4")),
        ],
        2,
    )
    .await
    .expect("second");
    assert_eq!(
        saved().await,
        [("a".into(), "3".into()), ("c".into(), "4".into())]
    );
    // More calls than one statement's rows.
    let many: Vec<(String, Option<String>)> = (0..450).map(|i| (format!("m{i}"), s("x"))).collect();
    save_all(&mut conn, &many, 3).await.expect("many");
    assert_eq!(saved().await.len(), 452);
    let gone: Vec<(String, Option<String>)> = (0..450).map(|i| (format!("m{i}"), None)).collect();
    save_all(&mut conn, &gone, 4).await.expect("many gone");
    assert_eq!(saved().await.len(), 2);
}

#[tokio::test]
async fn call_states_are_saved_together_on_sqlite() {
    let dir = tempfile::tempdir().expect("dir");
    call_states_are_saved_together(format!("sqlite://{}/lib.db?mode=rwc", dir.path().display()))
        .await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test.sh starts one and runs it"]
async fn call_states_are_saved_together_on_postgresql() {
    let fresh = fresh_postgres().await;
    call_states_are_saved_together(fresh.url.clone()).await;
    fresh.drop().await;
}

/// A call bridged without recording is listed with its reason and metadata, once.
async fn a_call_not_recorded_is_listed_once(url: String) {
    use ari_recorder::library::calls::RecordingStarted;
    use ari_recorder::library::index::add_not_recorded;
    let db = Database::open(&url).await.expect("open");
    let row = RecordingStarted {
        recording_name: "call:1.1".into(),
        call_id: "1.1".into(),
        tenant: "acme".into(),
        project: "support".into(),
        private: false,
        consent: ari_recorder::library::Consent::Unknown,
        participants: "5551001,201".into(),
        flow: Some("desk".into()),
        node: Some("agent".into()),
        node_type: Some(ari_recorder::library::NodeType::Transfer),
        direction: ari_recorder::library::Direction::Inbound,
        caller_name: "Alice Smith".into(),
        caller_number: "5551001".into(),
        callee: "201".into(),
        format: Some(ari_recorder::library::RecordingFormat::Wav),
        started_at_ms: 1_700_000_000_000,
        linkedid: Some("1.0".into()),
        callee_channel: Some("1.2".into()),
    };
    let mut conn = db.pool.acquire().await.expect("connection");
    for _ in 0..2 {
        add_not_recorded(&mut conn, &row, "recording was off")
            .await
            .expect("listed");
    }
    type Listed = (String, String, String, String, i64, i64, String, String);
    let rows: Vec<Listed> = sqlx::query_as(
        "SELECT path, status, reason, tenant, started_at_ms, mtime_ms, participants, linkedid FROM recordings",
    )
    .fetch_all(&db.pool)
    .await
    .expect("rows");
    assert_eq!(
        rows,
        [(
            "call:1.1".into(),
            "not_recorded".into(),
            "recording was off".into(),
            "acme".into(),
            1_700_000_000_000,
            1_700_000_000_000,
            "5551001,201".into(),
            "1.0".into()
        )]
    );
    let (words,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM recording_words")
        .fetch_one(&db.pool)
        .await
        .expect("words");
    assert_eq!(words, 2, "alice, smith");
}

#[tokio::test]
async fn a_call_not_recorded_is_listed_once_on_sqlite() {
    let dir = tempfile::tempdir().expect("dir");
    a_call_not_recorded_is_listed_once(format!(
        "sqlite://{}/lib.db?mode=rwc",
        dir.path().display()
    ))
    .await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test.sh starts one and runs it"]
async fn a_call_not_recorded_is_listed_once_on_postgresql() {
    let fresh = fresh_postgres().await;
    a_call_not_recorded_is_listed_once(fresh.url.clone()).await;
    fresh.drop().await;
}
