//! Issue 15's test: three simulated Asterisks, each driven by its own ari-recorder process, on
//! one PostgreSQL and one S3-compatible server (s3s-fs). 300 calls across the three, one
//! instance killed mid-run and started again: every recording is listed exactly once by every
//! instance and plays from any of them, the survivors keep serving the killed node's archived
//! recordings, its calls in flight are finished when it comes back, and the one audit chain
//! they all wrote verifies.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ari_recorder::sim::{Script, Step};
use common::process::{free_port, wait_for};
use common::s3::{s3s_fs_bin, S3Server, ACCESS_KEY, BUCKET, SECRET_KEY};
use common::{send, start_sim, Db, TestSim};

const CALLS: usize = 300;
const KILL_AT: usize = 150;
const BACK_AT: usize = 240;

const FLOW: &str = "[flow]\nnumbers = [\"100\"]\nstart = \"greeting\"\n\
[nodes.greeting]\ntype = \"play_audio\"\nmedia = [\"sound:beep\"]\nrecording_notice = true\nnext = \"desk\"\n\
[nodes.desk]\ntype = \"transfer\"\ntarget = \"PJSIP/agent\"\nrecord_call = true\n";

/// One ari-recorder process.
struct Node {
    name: &'static str,
    child: Option<Child>,
    base: String,
    env: Vec<(String, String)>,
}

impl Node {
    fn spawn(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_ari-recorder"))
            .arg("serve")
            .envs(self.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ari-recorder starts");
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown, calls left as they were.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn node(name: &'static str, t: &TestSim, dir: &Path, db_url: &str, s3: &S3Server) -> Node {
    let port = free_port();
    let env = [
        ("ARI_URL", t.sim.url()),
        ("ARI_PASSWORD", common::PASSWORD.to_string()),
        ("RECORDINGS_DIR", t.recordings.display().to_string()),
        ("DATABASE_URL", db_url.to_string()),
        ("DIALPLANS_DIR", dir.join("dialplans").display().to_string()),
        (
            "CACHE_DIR",
            dir.join(format!("cache-{name}")).display().to_string(),
        ),
        ("HTTP_ADDR", format!("127.0.0.1:{port}")),
        ("METRICS_TOKEN", common::METRICS_TOKEN.to_string()),
        ("NODE_ID", name.to_string()),
        ("ARCHIVE_BUCKET", BUCKET.to_string()),
        ("ARCHIVE_ENDPOINT", s3.endpoint()),
        ("ARCHIVE_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
        ("ARCHIVE_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
        ("ARCHIVE_LOCAL_RETENTION_DAYS", "0".to_string()),
        ("ARCHIVE_RETRY_CAP_SECONDS", "1".to_string()),
        (
            "LINK_SIGNING_KEYS",
            "k1:scale-out-link-key-0123456789abcdef".to_string(),
        ),
        (
            "AUDIT_KEYS",
            "a1:scale-out-audit-key-0123456789abcdef".to_string(),
        ),
        ("RUST_LOG", "warn".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut node = Node {
        name,
        child: None,
        base: format!("http://127.0.0.1:{port}"),
        env,
    };
    node.spawn();
    node
}

async fn connected(t: &TestSim, n: &Node) {
    wait_for(&format!("{} connected", n.name), || async {
        t.sim.app_connected("recorder")
            && reqwest::get(format!("{}/readyz", n.base))
                .await
                .is_ok_and(|r| r.status().is_success())
    })
    .await;
}

/// Every recording id an instance lists, page by page.
async fn listed(client: &reqwest::Client, base: &str) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/recordings?limit=200");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page = send(client.get(url)).await;
        assert_eq!(page.status, 200, "{}", page.error());
        let page = page.json();
        ids.extend(
            page["recordings"]
                .as_array()
                .expect("recordings")
                .iter()
                .filter_map(|r| r["id"].as_i64()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return ids,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs s3s-fs and PostgreSQL: scripts/test.sh provides both and runs it"]
async fn three_nodes_one_library_survive_a_killed_instance() {
    let steps = common::Steps::new("three_nodes_one_library_survive_a_killed_instance");
    let bin = s3s_fs_bin();
    let sims = [
        start_sim(10.0).await,
        start_sim(10.0).await,
        start_sim(10.0).await,
    ];
    let db_url = common::database_url(&sims[0], Db::Postgres).await;
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(dir.path().join("dialplans")).expect("dialplans");
    std::fs::write(dir.path().join("dialplans/line.toml"), FLOW).expect("flow");
    let mut s3 = S3Server::new(bin, dir.path());
    s3.start().await;
    for t in &sims {
        t.sim.define_party(
            "caller",
            Script::new("caller", vec![Step::Answer, Step::Talk(3.0), Step::Hangup]),
        );
        t.sim.define_party(
            "PJSIP/agent",
            Script::new("agent", vec![Step::Answer, Step::Talk(60.0), Step::Hangup]),
        );
    }
    let names = ["pbx-a", "pbx-b", "pbx-c"];
    steps.step("One after the other: the first migrates the database.");
    let mut nodes = Vec::new();
    for (t, name) in sims.iter().zip(names) {
        let n = node(name, t, dir.path(), &db_url, &s3);
        connected(t, &n).await;
        nodes.push(n);
    }
    let db = ari_recorder::db::Database::open(&db_url)
        .await
        .expect("database");
    let token = common::bootstrap_admin(&db).await;
    let client = common::bearer(&token);
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            let (n,): (i64,) = sqlx::query_as(sql)
                .fetch_one(&db.pool)
                .await
                .expect("count");
            n
        }
    };

    let mut placed = [0usize; 3];
    for i in 0..CALLS {
        let up: Vec<usize> = if (KILL_AT..BACK_AT).contains(&i) {
            vec![0, 1]
        } else {
            vec![0, 1, 2]
        };
        let k = up[i % up.len()];
        sims[k]
            .sim
            .place_inbound_call("100", &format!("Caller {i} <555{i:04}>"), "caller")
            .expect("call placed");
        placed[k] += 1;
        tokio::time::sleep(Duration::from_millis(40)).await;
        if i + 1 == KILL_AT {
            // Some of C's recordings archived first: the others serve them while it is down.
            wait_for("C's first archived recordings", || async {
                count(
                    "SELECT COUNT(*) FROM recording_archive a JOIN recordings r ON r.id = a.recording_id \
                     WHERE r.node_id = 'pbx-c' AND a.local_removed_at_ms IS NOT NULL",
                )
                .await
                    >= 5
            })
            .await;
            nodes[2].kill();
            let (id,): (i64,) = sqlx::query_as(
                "SELECT r.id FROM recordings r JOIN recording_archive a ON a.recording_id = r.id \
                 WHERE r.node_id = 'pbx-c' AND a.local_removed_at_ms IS NOT NULL LIMIT 1",
            )
            .fetch_one(&db.pool)
            .await
            .expect("an archived recording of C");
            for n in &nodes[..2] {
                let audio = send(client.get(format!("{}/api/recordings/{id}/audio", n.base))).await;
                assert_eq!(
                    audio.status,
                    200,
                    "{} while C is down: {}",
                    n.name,
                    audio.error()
                );
            }
        }
        if i + 1 == BACK_AT {
            nodes[2].spawn();
            connected(&sims[2], &nodes[2]).await;
        }
    }

    steps.step("Every call ends; every recording is final and archived. A call's file whose metadata write died with the killed process stays quarantined (hidden rather than misfiled); on the other nodes a file indexed before its metadata was written is quarantined only until the metadata arrives.");
    let state = || async {
        (
            sims.iter().all(common::quiet),
            count(
                "SELECT COUNT(*) FROM recordings WHERE status = 'recording' \
                 OR (status = 'quarantined' AND node_id <> 'pbx-c')",
            )
            .await,
            count(
                "SELECT COUNT(*) FROM recordings r WHERE r.status = 'ready' AND NOT EXISTS \
                 (SELECT 1 FROM recording_archive a WHERE a.recording_id = r.id \
                  AND a.state = 'stored' AND a.local_removed_at_ms IS NOT NULL)",
            )
            .await,
        )
    };
    let mut settled = false;
    for _ in 0..1500 {
        if state().await == (true, 0, 0) {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !settled {
        // Recording, node, archive state, attempts, last error.
        type Stuck = (i64, String, Option<String>, Option<i64>, Option<String>);
        let stuck: Vec<Stuck> = sqlx::query_as(
            "SELECT r.id, r.node_id, a.state, a.attempts, a.last_error FROM recordings r \
             LEFT JOIN recording_archive a ON a.recording_id = r.id WHERE r.status = 'ready' \
             AND (a.state IS NULL OR a.state <> 'stored' OR a.local_removed_at_ms IS NULL)",
        )
        .fetch_all(&db.pool)
        .await
        .expect("stuck");
        panic!(
            "calls quiet, recordings still growing or quarantined on a live node, ready ones not archived: {:?}; not archived: {stuck:?}",
            state().await
        );
    }
    let quarantined: Vec<(String,)> =
        sqlx::query_as("SELECT node_id FROM recordings WHERE status = 'quarantined'")
            .fetch_all(&db.pool)
            .await
            .expect("quarantined");
    assert!(
        quarantined.iter().all(|(node,)| node == "pbx-c") && quarantined.len() <= 10,
        "only the killed node's calls in flight may lose their metadata: {quarantined:?}"
    );
    let ready: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, node_id FROM recordings WHERE status = 'ready' ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .expect("rows");
    let by_node: HashMap<&str, usize> = names
        .iter()
        .map(|n| (*n, ready.iter().filter(|(_, node)| node == n).count()))
        .collect();
    steps.step(
        "Each node recorded its calls (a few of C's in flight at the kill may end unrecorded).",
    );
    for (k, name) in names.iter().enumerate() {
        assert!(
            by_node[name] * 10 >= placed[k] * 9,
            "{name}: {} recordings of {} calls",
            by_node[name],
            placed[k]
        );
    }
    assert!(ready.len() * 10 >= CALLS * 9, "{} of {CALLS}", ready.len());

    steps.step("Listed exactly once, and the same, by every instance.");
    let all_ids: BTreeSet<i64> = ready.iter().map(|(id, _)| *id).collect();
    for n in &nodes {
        let ids = listed(&client, &n.base).await;
        let unique: BTreeSet<i64> = ids.iter().copied().collect();
        assert_eq!(
            unique.len(),
            ids.len(),
            "{} lists a recording twice",
            n.name
        );
        assert!(
            all_ids.is_subset(&unique),
            "{} misses {:?}",
            n.name,
            all_ids.difference(&unique).collect::<Vec<_>>()
        );
    }

    steps.step("Playable from any instance, the same bytes.");
    for (i, (id, _)) in ready.iter().enumerate() {
        let from_a = send(client.get(format!("{}/api/recordings/{id}/audio", nodes[0].base))).await;
        assert_eq!(from_a.status, 200, "recording {id}: {}", from_a.error());
        if i % 10 == 0 {
            for n in &nodes[1..] {
                let other = send(client.get(format!("{}/api/recordings/{id}/audio", n.base))).await;
                assert_eq!(other.body, from_a.body, "recording {id} from {}", n.name);
            }
        }
    }

    steps.step("One chain, written by three processes, verifies.");
    let verify = Command::new(env!("CARGO_BIN_EXE_ari-recorder"))
        .args(["audit", "verify"])
        .env("DATABASE_URL", &db_url)
        .env("ARI_PASSWORD", common::PASSWORD)
        .env("AUDIT_KEYS", "a1:scale-out-audit-key-0123456789abcdef")
        .output()
        .expect("audit verify runs");
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    drop(nodes);
}
