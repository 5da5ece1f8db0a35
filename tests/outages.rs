//! What operators' infrastructure does to the service, and what it must survive: the library's
//! database going away (PostgreSQL refusing connections, SQLite held by another writer) while
//! calls are recorded, and Asterisk restarting under the calls.

mod common;

use std::time::Duration;

use ari_recorder::sim::{Script, Step};
use common::{caller, database_url, send, start_service_with, start_sim, Db, TestService};

const SUPPORT: &str = r#"
[flow]
numbers = ["100"]
start = "desk"
[nodes.desk]
type = "transfer"
target = "Local/agent-short@agents"
ring_timeout = 5
record_call = true
"#;

/// Keeps the service's database from taking writes until released: another writer holds
/// SQLite's write lock; PostgreSQL refuses the database's connections and drops the open ones.
enum Hold {
    Sqlite(sqlx::SqliteConnection),
    Postgres { admin: sqlx::AnyPool, name: String },
}

impl Hold {
    async fn start(db: Db, url: &str) -> Hold {
        use sqlx::Connection;
        match db {
            Db::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(url)
                    .await
                    .expect("second writer");
                sqlx::raw_sql("BEGIN IMMEDIATE")
                    .execute(&mut conn)
                    .await
                    .expect("write lock");
                Hold::Sqlite(conn)
            }
            Db::Postgres => {
                let admin_url = common::required_env("TEST_POSTGRES_URL", "a PostgreSQL server");
                let admin = sqlx::AnyPool::connect(&admin_url).await.expect("admin");
                let name = url.rsplit('/').next().expect("database name").to_string();
                sqlx::raw_sql(&format!(
                    "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
                     SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = '{name}' AND pid <> pg_backend_pid()"
                ))
                .execute(&admin)
                .await
                .expect("stop the database");
                Hold::Postgres { admin, name }
            }
        }
    }

    async fn release(self) {
        match self {
            Hold::Sqlite(mut conn) => {
                sqlx::raw_sql("ROLLBACK")
                    .execute(&mut conn)
                    .await
                    .expect("release");
            }
            Hold::Postgres { admin, name } => {
                sqlx::raw_sql(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
                    .execute(&admin)
                    .await
                    .expect("start the database");
            }
        }
    }
}

async fn readiness(s: &TestService) -> serde_json::Value {
    send(reqwest::Client::new().get(format!("{}/readyz", s.base)))
        .await
        .json()
}

/// Waits (bounded: 60 s, the retries wait up to 5 s each) until `condition` holds.
async fn eventually<F, Fut>(what: &str, condition: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never: {what}");
}

/// Calls recorded while the database takes no writes go on, nothing is lost or written twice,
/// and every recording is in the library (with its call's metadata) soon after the database
/// is back. Meanwhile `/readyz` says the writes fail, and reads that must be audited are
/// refused with 503, not 500.
async fn recordings_made_while_the_database_is_away_are_in_the_library_when_it_returns(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let s = start_service_with(&t, &[("support.toml", SUPPORT)], &url, &[]).await;
    caller(
        &t,
        "talker",
        vec![Step::Answer, Step::Talk(60.0), Step::Hangup],
    );
    t.sim.define_party(
        "Local/agent-short@agents",
        Script::new("agent", vec![Step::Answer, Step::Talk(6.0), Step::Hangup]),
    );
    let hold = Hold::start(db, &url).await;
    for i in 0..5 {
        t.sim
            .place_inbound_call("100", &format!("Caller {i} <555300{i}>"), "talker")
            .expect("call");
    }
    common::wait_until("five recordings running in Asterisk", || {
        t.sim.with_world(|w| w.counts().2) == 5
    })
    .await;
    // The agents hang up after 6 s: the calls end, their recordings finish, in Asterisk.
    t.sim.advance(8.0);
    common::wait_until("every call over in Asterisk", || common::quiet(&t)).await;
    eventually("/readyz says the writes fail", || async {
        let ready = readiness(&s).await;
        // Degraded (reads go on, SQLite) or not ready (the database refuses us, PostgreSQL).
        ready["status"] != "ready"
            && ready["database_writes"]
                .as_str()
                .is_some_and(|w| w.starts_with("failing since"))
    })
    .await;
    let list = send(common::authed().get(format!("{}/api/recordings", s.base))).await;
    // SQLite: who is asking is read, the access cannot be audited; PostgreSQL: nothing is read.
    assert_eq!(list.status, 503, "{:?}", list.json());
    assert!(
        ["audit_unavailable", "database_unavailable"].contains(&list.error().as_str()),
        "a read that cannot be audited is refused, and says why: {:?}",
        list.json()
    );
    assert!(list.headers.contains_key("retry-after"));

    hold.release().await;
    eventually(
        "every recording in the library, final, with its call",
        || async {
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT r.status, COUNT(c.recording_name) FROM recordings r \
             LEFT JOIN call_recordings c ON c.recording_name = r.name \
             WHERE r.name LIKE 'transfer-%' GROUP BY r.name, r.status",
            )
            .fetch_all(&s.svc.db.pool)
            .await
            .unwrap_or_default();
            rows.len() == 5
                && rows
                    .iter()
                    .all(|(status, calls)| status == "ready" && *calls == 1)
        },
    )
    .await;
    let (calls,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM call_recordings")
        .fetch_one(&s.svc.db.pool)
        .await
        .expect("count");
    assert_eq!(calls, 5, "nothing written twice");
    eventually("/readyz ready again", || async {
        readiness(&s).await["status"] == "ready"
    })
    .await;
    let list = send(common::authed().get(format!("{}/api/recordings", s.base))).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json()["recordings"].as_array().map(Vec::len), Some(5));
    let _ = s.stop.send(true);
}

on_both_databases!(recordings_made_while_the_database_is_away_are_in_the_library_when_it_returns,);

/// Asterisk restarts (`core restart now`) under a recorded call: the call is gone with it, and
/// its recording, whole as a file but short of the call, is listed with the reason and counted
/// (it was listed `ready` with no reason).
#[tokio::test]
async fn a_recording_cut_by_an_asterisk_restart_is_listed_with_the_reason() {
    let t = start_sim(0.0).await;
    let url = database_url(&t, Db::Sqlite).await;
    let s = start_service_with(&t, &[("support.toml", SUPPORT)], &url, &[]).await;
    caller(
        &t,
        "talker",
        vec![Step::Answer, Step::Talk(60.0), Step::Hangup],
    );
    t.sim.define_party(
        "Local/agent-short@agents",
        Script::new("agent", vec![Step::Answer, Step::Talk(30.0), Step::Hangup]),
    );
    t.sim
        .place_inbound_call("100", "Ivy <5553009>", "talker")
        .expect("call");
    common::wait_recording(&t, &s, "recording", 1).await;
    t.sim.advance(4.0);
    t.sim.restart();
    t.sim.drop_websockets();
    eventually("the cut recording listed with its reason", || async {
        let list = send(common::authed().get(format!("{}/api/recordings", s.base))).await;
        list.json()["recordings"].as_array().is_some_and(|rows| {
            rows.iter().any(|r| {
                r["status"] == "ready"
                    && r["reason"]
                        .as_str()
                        .is_some_and(|why| why.contains("Asterisk restarted"))
            })
        })
    })
    .await;
    let metrics = common::metrics_text(&s.base).await;
    assert!(
        metrics.contains("recordings_cut_by_asterisk_restart_total 1"),
        "{metrics}"
    );
    let _ = s.stop.send(true);
}
