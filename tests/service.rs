//! The service's operator endpoints over a real socket, and the binary's `check` command.

mod common;

use std::time::Duration;

use ari_recorder::config::Config;
use ari_recorder::service;
use common::{fast_timing, start_sim, wait_until, PASSWORD};
use tokio::sync::watch;

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let t = start_sim(0.0).await;
    let config = Config::load(None, |key| match key {
        "ARI_URL" => Some(t.sim.url()),
        "ARI_PASSWORD" => Some(PASSWORD.into()),
        "RECORDINGS_DIR" => Some(t.recordings.display().to_string()),
        "DATABASE_URL" => Some(format!(
            "sqlite://{}/lib.db?mode=rwc",
            t.dir.path().display()
        )),
        "HTTP_ADDR" => Some("127.0.0.1:0".into()),
        "METRICS_ADDR" => Some("127.0.0.1:0".into()),
        "CACHE_DIR" => Some(t.dir.path().join("cache").display().to_string()),
        _ => None,
    })
    .expect("config");
    let (stop, shutdown) = watch::channel(false);
    let svc = service::start(&config, fast_timing(), shutdown)
        .await
        .expect("service");
    let base = format!("http://{}", svc.http_addr);
    let metrics_base = format!("http://{}", svc.metrics_addr.expect("metrics address"));
    wait_until("ARI connected", || svc.metrics.ari_connected()).await;

    let (status, body) = get(&format!("{base}/healthz")).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(ready["ari"], "connected");

    t.sim
        .place_inbound_call("100", "Alice <5551001>", "silent")
        .expect("call");
    wait_until("the call in the app", || {
        svc.registry.lock().expect("lock").calls_active() == 1
    })
    .await;
    // Metrics live on their own address only.
    let (status, body) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("METRICS_ADDR"), "{body}");
    let (status, _) = get(&format!("{metrics_base}/healthz")).await;
    assert_eq!(status, 404, "the metrics address serves /metrics alone");
    let (_, metrics) = get(&format!("{metrics_base}/metrics")).await;
    assert!(metrics.contains("ari_connected 1\n"), "{metrics}");
    assert!(
        metrics.contains("ari_events_total{type=\"StasisStart\"} 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("calls_active 1\n"), "{metrics}");
    assert!(
        metrics.contains("http_requests_total{route=\"/healthz\",status=\"200\"} 1\n"),
        "{metrics}"
    );
    assert!(!metrics.contains(PASSWORD));

    // Every operation the document describes is served: asked without credentials, none
    // reaches the fallback or a method the path does not take.
    let (status, body) = get(&format!("{base}/api/openapi.json")).await;
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(doc, ari_recorder::http::openapi::document());
    let client = reqwest::Client::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let url = format!(
            "{base}{}",
            path.replace("{id}", "1")
                .replace("{flow}", "f")
                .replace("{node}", "n")
        );
        for method in item.as_object().expect("item").keys() {
            let method =
                reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let response = client
                .request(method.clone(), &url)
                .send()
                .await
                .expect("request");
            let status = response.status().as_u16();
            let body = response.text().await.expect("body");
            assert!(
                status != 405 && !body.contains("no such route"),
                "{method} {path}: {status} {body}"
            );
        }
    }

    // Asterisk goes away: the library stays ready, the ARI state says so.
    t.sim.drop_websockets();
    t.sim.stop();
    wait_until("ARI disconnected", || !svc.metrics.ari_connected()).await;
    let (status, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""ari":"disconnected""#), "{body}");

    // The recordings folder vanishes: not ready, with the reason.
    std::fs::remove_dir_all(&t.recordings).expect("remove");
    let (status, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("cannot read the recordings folder"), "{body}");

    let (status, body) = get(&format!("{base}/nope")).await;
    assert_eq!(status, 404);
    assert!(body.contains(r#""error":"not_found""#));
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(10), svc.join())
        .await
        .expect("graceful stop");
}

#[test]
fn check_names_the_bad_key_and_fails() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "ari_url = \"http://127.0.0.1:8088\"\nrecord_evrything = true\n",
    )
    .expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ari-recorder"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("record_evrything"), "{stderr}");
}

#[test]
fn check_accepts_a_valid_setup() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(dir.path().join("dialplans")).expect("dialplans");
    std::fs::create_dir_all(dir.path().join("recordings")).expect("recordings");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ari-recorder"))
        .arg("check")
        .env("DIALPLANS_DIR", dir.path().join("dialplans"))
        .env("RECORDINGS_DIR", dir.path().join("recordings"))
        .env("ARI_PASSWORD", "s3cret-value")
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !stdout.contains("s3cret-value"),
        "password never printed: {stdout}"
    );
}

#[test]
fn check_accepts_a_missing_dialplans_folder_with_a_warning() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(dir.path().join("recordings")).expect("recordings");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ari-recorder"))
        .arg("check")
        .env("DIALPLANS_DIR", dir.path().join("no-flows-here"))
        .env("RECORDINGS_DIR", dir.path().join("recordings"))
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "a library-only node passes: {stdout}"
    );
    assert!(stdout.contains("flows              0 in"), "{stdout}");
    assert!(
        stdout.contains("warning            DIALPLANS_DIR")
            && stdout.contains("no-flows-here does not exist"),
        "{stdout}"
    );
}

/// `check` run as a user who may read but not write the folders (nobody, when the tests run as
/// root; the folders made read-only otherwise).
#[test]
fn check_warns_that_delete_will_fail_when_the_recordings_folder_is_not_writable() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("dir");
    let recordings = dir.path().join("recordings");
    let dialplans = dir.path().join("dialplans");
    for folder in [&recordings, &dialplans] {
        std::fs::create_dir_all(folder).expect("folder");
    }
    let root = rustix::process::geteuid().is_root();
    let mut command = if root {
        // nobody must reach the folders: the temporary folder itself is private.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_ari-recorder"));
        c
    } else {
        for folder in [&recordings, &dialplans] {
            std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o555))
                .expect("chmod");
        }
        std::process::Command::new(env!("CARGO_BIN_EXE_ari-recorder"))
    };
    let output = command
        .arg("check")
        .env("DIALPLANS_DIR", &dialplans)
        .env("RECORDINGS_DIR", &recordings)
        .output()
        .expect("runs");
    for folder in [&recordings, &dialplans] {
        let _ = std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o755));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "warnings do not fail check: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("RECORDINGS_DIR")
            && stdout.contains("is not writable by this service: deleting recordings will fail"),
        "{stdout}"
    );
    assert!(
        stdout.contains("DIALPLANS_DIR") && stdout.contains("switching recording on or off"),
        "{stdout}"
    );
}

#[test]
fn check_reports_every_dialplan_problem_with_file_node_and_field() {
    let dir = tempfile::tempdir().expect("dir");
    let dialplans = dir.path().join("dialplans");
    std::fs::create_dir_all(&dialplans).expect("dialplans");
    std::fs::create_dir_all(dir.path().join("recordings")).expect("recordings");
    std::fs::write(
        dialplans.join("a.toml"),
        "[flow]\nnumbers = [\"1\"]\nstart = \"x\"\n[nodes.x]\ntype = \"transfer\"\n",
    )
    .expect("a");
    std::fs::write(
        dialplans.join("b.toml"),
        "[flow]\nnumbers = [\"2\"]\nstart = \"y\"\n[nodes.y]\ntype = \"hangup\"\nnext = \"z\"\n",
    )
    .expect("b");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ari-recorder"))
        .arg("check")
        .env("DIALPLANS_DIR", &dialplans)
        .env("RECORDINGS_DIR", dir.path().join("recordings"))
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("a.toml: node \"x\", field \"target\": missing"),
        "{stderr}"
    );
    assert!(
        stderr.contains("b.toml: node \"y\", field \"next\": unknown field"),
        "{stderr}"
    );
}

#[test]
fn index_command_scans_then_finds_everything_unchanged() {
    let dir = tempfile::tempdir().expect("dir");
    let recordings = dir.path().join("recordings");
    std::fs::create_dir_all(&recordings).expect("dir");
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/recordings");
    for entry in std::fs::read_dir(fixtures).expect("fixtures").flatten() {
        let target = recordings.join(entry.file_name());
        std::fs::copy(entry.path(), &target).expect("copy");
        ari_recorder::library::index::set_mtime(
            &target,
            std::time::SystemTime::now() - std::time::Duration::from_secs(3600),
        )
        .expect("mtime");
    }
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ari-recorder"))
            .arg("index")
            .env("RECORDINGS_DIR", &recordings)
            .env(
                "DATABASE_URL",
                format!("sqlite://{}/lib.db?mode=rwc", dir.path().display()),
            )
            .output()
            .expect("runs")
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("8 found, 8 probed, 0 unchanged"));
    let second = run();
    assert!(
        String::from_utf8_lossy(&second.stdout).contains("8 found, 0 probed, 8 unchanged"),
        "{}",
        String::from_utf8_lossy(&second.stdout)
    );
}

#[test]
fn openapi_describes_each_operation_its_security_and_the_value_lists() {
    let doc = ari_recorder::http::openapi::document();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 30, "{:?}", paths.keys());
    let mut operation_ids = std::collections::HashSet::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            let here = format!("{method} {path}");
            let id = op["operationId"].as_str().expect("operationId");
            assert!(operation_ids.insert(id), "{here}: operationId {id} taken");
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{here}: no summary"
            );
            assert!(op["tags"][0].is_string(), "{here}: no tag");
            let responses = op["responses"].as_object().expect("responses");
            assert!(!responses.is_empty(), "{here}: no responses");
            // Every error answer is the one JSON error shape.
            for (code, response) in responses {
                if code.as_str() >= "400" && path != "/readyz" {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/Error",
                        "{here} {code}"
                    );
                }
            }
            // Path parameters are described.
            for name in path.split('{').skip(1).filter_map(|p| p.split('}').next()) {
                let described = op["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["name"] == name && p["in"] == "path"));
                assert!(described, "{here}: {{{name}}} not described");
            }
        }
    }
    // The security schemes are described, open endpoints say they are open, and the media
    // endpoints take a signed link.
    let schemes = &doc["components"]["securitySchemes"];
    for scheme in ["bearer", "session", "signedLink"] {
        assert!(schemes[scheme].is_object(), "{scheme} missing");
    }
    let open = serde_json::json!([{}]);
    assert_eq!(doc["paths"]["/healthz"]["get"]["security"], open);
    assert_eq!(doc["paths"]["/api/session"]["post"]["security"], open);
    assert!(
        doc["paths"]["/api/recordings/{id}/audio"]["get"]["security"]
            .as_array()
            .expect("security")
            .contains(&serde_json::json!({"signedLink": []}))
    );
    assert!(doc["paths"]["/api/recordings/{id}/download-url"]["get"].is_object());
    assert!(doc["paths"]["/api/recordings/{id}/download-url"]["post"].is_object());
    // The lists are the types the API checks against, referred to where they are used.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["RecordingStatus"]["enum"],
        serde_json::json!(ari_recorder::library::RecordingStatus::names())
    );
    assert_eq!(
        schemas["Compliance"]["enum"],
        serde_json::json!(ari_recorder::library::Compliance::names())
    );
    assert_eq!(
        schemas["NodeType"]["enum"],
        serde_json::json!(ari_recorder::library::NodeType::names())
    );
    let list = &doc["paths"]["/api/recordings"]["get"]["parameters"];
    let status = list
        .as_array()
        .expect("parameters")
        .iter()
        .find(|p| p["name"] == "status")
        .expect("status parameter");
    assert!(
        status
            .to_string()
            .contains("#/components/schemas/RecordingStatus"),
        "{status}"
    );
    assert!(
        schemas["Recording"]["properties"]["consent"]
            .to_string()
            .contains("#/components/schemas/Consent"),
        "{}",
        schemas["Recording"]
    );
}

#[tokio::test]
async fn a_killed_index_loses_nothing_and_corrupts_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let recordings = dir.path().join("recordings");
    const FILES: usize = 8000;
    for i in 0..FILES {
        let sub = recordings.join(format!("{:02}", i % 50));
        std::fs::create_dir_all(&sub).expect("dir");
        let path = sub.join(format!("call-{i}.ulaw"));
        std::fs::write(&path, [0x7Fu8; 400]).expect("write");
        ari_recorder::library::index::set_mtime(
            &path,
            std::time::SystemTime::now() - Duration::from_secs(3600),
        )
        .expect("mtime");
    }
    let database = format!("sqlite://{}/lib.db?mode=rwc", dir.path().display());
    let index = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ari-recorder"))
            .arg("index")
            .env("RECORDINGS_DIR", &recordings)
            .env("DATABASE_URL", &database)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn")
    };
    // Killed (SIGKILL) once it has written its first rows, wherever that falls.
    let mut child = index();
    let db_file = dir.path().join("lib.db");
    let mut watcher = None;
    // Bounded (2 min): the first batch of 500 files may take long on a loaded machine (the
    // whole suite runs beside it).
    for _ in 0..24_000 {
        if watcher.is_none() && db_file.exists() {
            watcher = ari_recorder::db::Database::open(&database).await.ok();
        }
        if let Some(db) = &watcher {
            let count: Result<(i64,), _> = sqlx::query_as("SELECT COUNT(*) FROM recordings")
                .fetch_one(&db.pool)
                .await;
            if count.is_ok_and(|(n,)| n > 0) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().expect("kill -9");
    let _ = child.wait();
    drop(watcher);
    let db = ari_recorder::db::Database::open(&database)
        .await
        .expect("reopens");
    let (check,): (String,) = sqlx::query_as("PRAGMA integrity_check")
        .fetch_one(&db.pool)
        .await
        .expect("check");
    assert_eq!(check, "ok");
    let (partial,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM recordings")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert!(partial > 0, "killed after its first rows were written");
    let (torn,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM recordings WHERE sha256 IS NULL OR duration_ms <> 50")
            .fetch_one(&db.pool)
            .await
            .expect("count");
    assert_eq!(torn, 0, "every row written is whole");
    // The next run reconciles: everything indexed, once.
    let status = index().wait().expect("second run");
    assert!(status.success());
    let (all,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM recordings WHERE status = 'ready'")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(all as usize, FILES);
}
