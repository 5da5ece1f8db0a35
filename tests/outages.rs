//! What operators' infrastructure does to the service, and what it must survive: the library's
//! database going away (PostgreSQL refusing connections, SQLite held by another writer) while
//! calls are recorded, and Asterisk restarting under the calls.

mod common;

use std::time::Duration;

use ari_recorder::sim::{Script, Step};
use common::{
    caller, database_url, eventually, send, start_service_with, start_sim, Db, TestService,
};

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
    Postgres {
        admin: sqlx::AnyPool,
        name: String,
    },
    /// SQLite's disk is full.
    FullDisk(SmallDisk),
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

    /// Lets writes through again; a full disk is handed back, to stay mounted until the end.
    async fn release(self) -> Option<SmallDisk> {
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
            Hold::FullDisk(disk) => {
                disk.empty();
                return Some(disk);
            }
        }
        None
    }
}

/// The callers (`talker`) talk for `caller_talks` seconds, the support line's agent answers and
/// talks for `agent_talks` (then hangs up, ending the call).
fn talker_and_agent(t: &common::TestSim, caller_talks: f64, agent_talks: f64) {
    caller(
        t,
        "talker",
        vec![Step::Answer, Step::Talk(caller_talks), Step::Hangup],
    );
    t.sim.define_party(
        "Local/agent-short@agents",
        Script::new(
            "agent",
            vec![Step::Answer, Step::Talk(agent_talks), Step::Hangup],
        ),
    );
}

async fn readiness(s: &TestService) -> serde_json::Value {
    send(reqwest::Client::new().get(format!("{}/readyz", s.base)))
        .await
        .json()
}

/// Calls recorded while the database takes no writes go on, nothing is lost or written twice,
/// and every recording is in the library (with its call's metadata) soon after the database
/// is back. Meanwhile `/readyz` says the writes fail, and reads that must be audited are
/// refused with 503, not 500.
async fn recordings_made_while_the_database_is_away_are_in_the_library_when_it_returns(db: Db) {
    recorded_while_the_database_takes_no_writes(db, false).await;
}

on_both_databases!(
    recordings_made_while_the_database_is_away_are_in_the_library_when_it_returns,
    a_recording_whose_call_metadata_never_comes_is_shown_to_admins_then_filed,
);

/// The same when SQLite's disk is full (the library's own database filling up): the writes
/// fail, are kept and retried, and no row is written half or twice.
#[tokio::test]
async fn recordings_made_while_the_database_disk_is_full_are_in_the_library_when_it_has_room() {
    recorded_while_the_database_takes_no_writes(Db::Sqlite, true).await;
}

async fn recorded_while_the_database_takes_no_writes(db: Db, full_disk: bool) {
    let t = start_sim(0.0).await;
    let (url, disk) = if full_disk {
        let folder = t.dir.path().join("database");
        let disk = SmallDisk::mount(&folder, 8 << 20);
        let url = format!("sqlite://{}/library.db?mode=rwc", folder.display());
        (url, Some(disk))
    } else {
        (database_url(&t, db).await, None)
    };
    // The small disk is "full" only under 64 KiB (the default reserve is bigger than it).
    let reserve = [("DISK_RESERVE_BYTES", "65536")];
    let s = start_service_with(&t, &[("support.toml", SUPPORT)], &url, &reserve).await;
    talker_and_agent(&t, 60.0, 6.0);
    let hold = match disk {
        Some(disk) => {
            disk.fill(0);
            Hold::FullDisk(disk)
        }
        None => Hold::start(db, &url).await,
    };
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

    let _mounted = hold.release().await;
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

/// Asterisk restarts (`core restart now`) under a recorded call: the call is gone with it, and
/// its recording, whole as a file but short of the call, is listed with the reason and counted
/// (it was listed `ready` with no reason).
#[tokio::test]
async fn a_recording_cut_by_an_asterisk_restart_is_listed_with_the_reason() {
    let t = start_sim(0.0).await;
    let url = database_url(&t, Db::Sqlite).await;
    let s = start_service_with(&t, &[("support.toml", SUPPORT)], &url, &[]).await;
    talker_and_agent(&t, 60.0, 30.0);
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

/// Status and reason of every recording in the library.
async fn library_rows(s: &TestService) -> Vec<(String, Option<String>)> {
    sqlx::query_as("SELECT status, reason FROM recordings ORDER BY name")
        .fetch_all(&s.svc.db.pool)
        .await
        .unwrap_or_default()
}

/// A small tmpfs mounted on a folder: a real disk that fills up. Mounting needs root, as the
/// project's test script runs; unmounted when dropped.
struct SmallDisk {
    dir: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(dir: &std::path::Path, bytes: u64) -> SmallDisk {
        std::fs::create_dir_all(dir).expect("mount point");
        let mounted = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes},mode=0777"),
                "tmpfs",
            ])
            .arg(dir)
            .status();
        assert!(
            mounted.is_ok_and(|s| s.success()),
            "this test mounts a small tmpfs to fill it: run it as root (scripts/test.sh does)"
        );
        SmallDisk {
            dir: dir.to_path_buf(),
        }
    }

    fn free(&self) -> u64 {
        let stat = rustix::fs::statvfs(&self.dir).expect("statvfs");
        stat.f_bavail * stat.f_frsize
    }

    /// Fills the disk until `leave` bytes are free; the filler goes when `empty` is called.
    fn fill(&self, leave: u64) {
        let take = self.free().saturating_sub(leave);
        let filler = std::fs::File::create(self.dir.join("filler")).expect("filler");
        use std::io::Write;
        let mut filler = std::io::BufWriter::new(filler);
        let chunk = vec![0u8; 4096];
        let mut written = 0;
        while written < take {
            let n = chunk.len().min((take - written) as usize);
            if filler.write_all(&chunk[..n]).is_err() {
                break;
            }
            written += n as u64;
        }
        let _ = filler.flush();
    }

    fn empty(&self) {
        std::fs::remove_file(self.dir.join("filler")).expect("filler removed");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

/// The recordings disk fills during calls: Asterisk ends each recording at the first write
/// that fails (a short file, or an empty one when the disk was already full) and the calls go
/// on. Both are listed with the reason, `/readyz` and the metrics say the disk is full, and
/// once it has room the calls are recorded again, as new segments of the same calls.
#[tokio::test]
async fn a_full_recordings_disk_is_reported_and_recording_resumes_when_it_has_room() {
    let t = start_sim(0.0).await;
    let disk = SmallDisk::mount(&t.recordings, 4 << 20);
    let url = database_url(&t, Db::Sqlite).await;
    let s = start_service_with(
        &t,
        &[("support.toml", SUPPORT)],
        &url,
        &[("DISK_RESERVE_BYTES", "16384"), ("DISK_CHECK_SECONDS", "1")],
    )
    .await;
    talker_and_agent(&t, 120.0, 40.0);
    // About 4 s of audio (8 kHz, 16 bits) fit before the disk is full.
    disk.fill(64 << 10);
    t.sim
        .place_inbound_call("100", "Jo <5553101>", "talker")
        .expect("call");
    common::wait_recording(&t, &s, "recording", 1).await;
    t.sim.advance(10.0);
    common::wait_until("the first recording ended by the full disk", || {
        t.sim.with_world(|w| w.counts().2) == 0
    })
    .await;
    // A call arriving now: its recording gets nothing on disk at all.
    t.sim
        .place_inbound_call("100", "Kim <5553102>", "talker")
        .expect("call");
    common::wait_until("the second call bridged and recording", || {
        t.sim.with_world(|w| w.counts().1) == 2 && t.sim.with_world(|w| w.counts().2) == 1
    })
    .await;
    t.sim.advance(1.0);
    common::wait_until("its recording ended at its first write", || {
        t.sim.with_world(|w| w.counts().2) == 0
    })
    .await;
    eventually("/readyz says the recordings disk is full", || async {
        let ready = readiness(&s).await;
        ready["status"] == "degraded"
            && ready["disk_space"]["recordings"]
                .as_str()
                .is_some_and(|d| d.starts_with("full since"))
    })
    .await;
    eventually("both cut recordings listed with the reason", || async {
        let rows = library_rows(&s).await;
        let cut: Vec<_> = rows
            .iter()
            .filter(|(_, reason)| {
                reason
                    .as_deref()
                    .is_some_and(|why| why.contains("recordings disk was full"))
            })
            .collect();
        cut.len() == 2
            && cut.iter().any(|(status, _)| status == "ready")
            && cut.iter().any(|(status, _)| status == "empty")
    })
    .await;
    assert_eq!(
        t.sim.with_world(|w| w.counts().0),
        8,
        "both calls go on (caller, agent: two Local channels each)"
    );
    let metrics = common::metrics_text(&s.base).await;
    assert!(
        metrics.contains("disk_full{folder=\"recordings\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("recordings_cut_by_full_disk_total 2"),
        "{metrics}"
    );

    disk.empty();
    common::wait_until("both calls recorded again", || {
        t.sim.with_world(|w| w.counts().2) == 2
    })
    .await;
    // The agents hang up (40 s into their calls): the calls and their second segments end.
    t.sim.advance(40.0);
    common::wait_until("every call over in Asterisk", || common::quiet(&t)).await;
    eventually("the resumed segments in the library, whole", || async {
        let rows = library_rows(&s).await;
        rows.len() == 4
            && rows
                .iter()
                .filter(|(status, reason)| status == "ready" && reason.is_none())
                .count()
                == 2
    })
    .await;
    let (calls,): (i64,) = sqlx::query_as("SELECT COUNT(DISTINCT call_id) FROM call_recordings")
        .fetch_one(&s.svc.db.pool)
        .await
        .expect("count");
    assert_eq!(calls, 2, "the new segments belong to the same two calls");
    eventually("/readyz ready again", || async {
        readiness(&s).await["status"] == "ready"
    })
    .await;
    let metrics = common::metrics_text(&s.base).await;
    assert!(
        metrics.contains("recordings_resumed_after_full_disk_total 2"),
        "{metrics}"
    );
    let _ = s.stop.send(true);
}

/// The cache's disk is full when a call's audio must be assembled: a clear 507 the player can
/// retry, nothing half-written left in the cache, and the audio served once there is room.
#[tokio::test]
async fn a_full_cache_disk_answers_a_clear_error_and_keeps_nothing_half_written() {
    let t = start_sim(0.0).await;
    let cache = SmallDisk::mount(&t.dir.path().join("cache"), 1 << 20);
    let url = database_url(&t, Db::Sqlite).await;
    let s = start_service_with(&t, &[("support.toml", SUPPORT)], &url, &[]).await;
    talker_and_agent(&t, 20.0, 6.0);
    t.sim
        .place_inbound_call("100", "Lee <5553201>", "talker")
        .expect("call");
    common::wait_recording(&t, &s, "recording", 1).await;
    t.sim.advance(8.0);
    common::wait_until("the call over in Asterisk", || common::quiet(&t)).await;
    common::wait_ready(&s.svc.db, 1).await;
    // The caller's consent, as an admin would record it (the flow asks none).
    sqlx::query("UPDATE recordings SET consent = 'granted'")
        .execute(&s.svc.db.pool)
        .await
        .expect("consent");
    let (call,): (String,) = sqlx::query_as("SELECT call_id FROM call_recordings")
        .fetch_one(&s.svc.db.pool)
        .await
        .expect("call");
    cache.fill(0);
    let audio = format!("{}/api/calls/{call}/audio", s.base);
    let refused = send(common::authed().get(&audio)).await;
    assert_eq!(refused.status, 507, "{:?}", refused.json());
    assert_eq!(refused.error(), "cache_full");
    assert!(refused.headers.contains_key("retry-after"));
    let left: Vec<_> = std::fs::read_dir(t.dir.path().join("cache").join("calls"))
        .expect("cache folder")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "nothing half-written kept: {left:?}");
    cache.empty();
    let served = send(common::authed().get(&audio)).await;
    assert_eq!(served.status, 200);
    let _ = s.stop.send(true);
}

/// A call's recording whose metadata never comes (lost in a crash) is not invisible to everyone:
/// quarantined, the operator's admins see it listed with the reason (nobody else does), and
/// after the grace period it is filed as a private recording of the operator's tenant.
async fn a_recording_whose_call_metadata_never_comes_is_shown_to_admins_then_filed(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let s = start_service_with(&t, &[], &url, &[("QUARANTINE_GRACE_HOURS", "24")]).await;
    let manager = common::bearer(
        &common::user_token(
            &s.svc.db,
            "mia",
            "manager",
            "default",
            &[],
            Some("201"),
            &ari_recorder::access::Scope::ALL,
        )
        .await,
    );
    // Named as the flows name a call's recording, with no call metadata behind it.
    common::put_wav(&t, "transfer-20261201-101500-0badc0de");
    let listed = |client: reqwest::Client| {
        let base = s.base.clone();
        async move {
            let list = send(client.get(format!("{base}/api/recordings"))).await;
            assert_eq!(list.status, 200, "{:?}", list.json());
            list.json()["recordings"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        }
    };
    eventually(
        "quarantined, listed to the admin with the reason",
        || async {
            listed(common::authed()).await.iter().any(|r| {
                r["status"] == "quarantined"
                    && r["reason"]
                        .as_str()
                        .is_some_and(|why| why.contains("metadata has not reached"))
            })
        },
    )
    .await;
    assert!(
        listed(manager.clone()).await.is_empty(),
        "a manager does not see it"
    );
    // A day later it is filed: final, private to the operator's tenant's admins.
    s.svc.clock.advance(Duration::from_secs(25 * 3600));
    eventually("filed with the reason", || async {
        listed(common::authed()).await.iter().any(|r| {
            r["status"] == "ready"
                && r["reason"]
                    .as_str()
                    .is_some_and(|why| why.contains("never reached the library"))
        })
    })
    .await;
    let (tenant, private, node_type): (String, i64, Option<String>) =
        sqlx::query_as("SELECT tenant, private, node_type FROM recordings")
            .fetch_one(&s.svc.db.pool)
            .await
            .expect("row");
    assert_eq!(
        (tenant.as_str(), private, node_type.as_deref()),
        ("default", 1, Some("transfer"))
    );
    assert!(
        listed(manager).await.is_empty(),
        "still private: the manager does not see it"
    );
    let _ = s.stop.send(true);
}
