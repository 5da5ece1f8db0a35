//! The indexer's tests.

use super::*;

/// The queries the indexer runs while calls are recorded find their rows through an index
/// on SQLite without statistics (the service never runs ANALYZE): a plan that walks the
/// table costs every call in proportion to the library's size.
#[tokio::test]
async fn per_call_queries_use_an_index() {
    let dir = tempfile::tempdir().expect("dir");
    let db = Database::open(&format!(
        "sqlite://{}/plan.db?mode=rwc",
        dir.path().display()
    ))
    .await
    .expect("database");
    // A library of one node's recordings, as the soak's: the planner's choice depends on it.
    for i in 0..500 {
        sqlx::query(
            "INSERT INTO recordings (path, node_id, name, format, status, size_bytes, mtime_ms, started_at_ms, indexed_at_ms) \
             VALUES ($1, 'node', $2, 'wav', 'ready', 1, 1, $3, 1)",
        )
        .bind(format!("old/{i}.wav"))
        .bind(format!("old-{i}"))
        .bind(i64::from(i))
        .execute(&db.pool)
        .await
        .expect("row");
    }
    for (sql, index) in [
        (GROWING_ROWS, "recordings_status"),
        (KNOWN_ROW, "recordings_node_path"),
        (RECORDING_BY_NAME, "recordings_name"),
    ] {
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let mut query = sqlx::query_as::<_, (i64, i64, i64, String)>(&explain);
        for value in ["a.wav", "node"].iter().take(sql.matches('$').count()) {
            query = query.bind(*value);
        }
        let plan = query.fetch_all(&db.pool).await.expect("plan");
        let steps: Vec<&str> = plan.iter().map(|(_, _, _, step)| step.as_str()).collect();
        assert!(
            steps.iter().any(|s| s.contains(index)) && !steps.iter().any(|s| s.starts_with("SCAN")),
            "{sql}: {steps:?}"
        );
    }
}

#[test]
fn fallback_names_carry_the_dialled_number_the_caller_and_the_start() {
    assert_eq!(
        parse_fallback_name("fallback-100-5551001-1795528423.4986"),
        Some(FallbackName {
            dialled: "100".into(),
            caller: "5551001".into(),
            unique_id: "1795528423.4986".into(),
            started_at_ms: 1_795_528_423_000,
        })
    );
    // No caller ID: an empty caller.
    assert_eq!(
        parse_fallback_name("fallback-100--1795528423.1").map(|f| f.caller),
        Some(String::new())
    );
    for other in [
        "fallback-100-5551001",
        "fallback--5551001-1795528423.4986",
        "fallback-1x0-5551001-1795528423.4986",
        "fallback-100-5551001-sys-1795528423.4986",
        "transfer-20261130-140001-0a1b2c3d",
    ] {
        assert_eq!(parse_fallback_name(other), None, "{other}");
    }
}

#[test]
fn call_recording_names_are_told_from_other_files() {
    for ours in [
        "transfer-20261130-140001-0a1b2c3d",
        "hunt-group-20261130-140001-ffffffff",
        "voicemail-200-20261130-140001-00000000",
    ] {
        assert!(made_by_a_call(ours), "{ours}");
    }
    for other in [
        "call",
        "mixmonitor-1701350000.123",
        "transfer-20261130-140001-0A1B2C3D",
        "transfer-2026113-140001-0a1b2c3d",
        "-20261130-140001-0a1b2c3d",
        "archive/transfer-20261130-140001-0a1b2c3d",
    ] {
        assert!(!made_by_a_call(other), "{other}");
    }
}

/// A file seen by a walk or an event and gone before it is read (the archive removed the local
/// copy of a recording it holds, a delete) is not written as unreadable: its removal is handled
/// as such, where a copy kept elsewhere is not missing.
#[tokio::test]
async fn a_file_gone_before_it_is_read_is_not_unreadable() {
    let dir = tempfile::tempdir().expect("dir");
    let db = Database::open(&format!(
        "sqlite://{}/gone.db?mode=rwc",
        dir.path().display()
    ))
    .await
    .expect("database");
    let root = dir.path().join("recordings");
    std::fs::create_dir_all(&root).expect("folder");
    std::fs::write(root.join("broken.wav"), b"not a wav at all").expect("file");
    let indexer = Indexer::new(db, root, std::time::Duration::from_secs(1));
    let seen = |rel: &str| rows::Seen {
        rel: rel.into(),
        size: 16,
        mtime_ms: 0,
        escapes: false,
        before: rows::Before::Nothing,
    };
    let probed = indexer
        .probe_batch(
            vec![seen("gone.wav"), seen("broken.wav")],
            &std::collections::HashMap::new(),
        )
        .await;
    let kept: Vec<(&str, &str)> = probed
        .iter()
        .map(|(row, _)| (row.seen.rel.as_str(), row.status))
        .collect();
    assert_eq!(kept, [("broken.wav", "unreadable")]);
}
