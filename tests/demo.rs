//! The README's first command: `ari-recorder demo` (what `scripts/demo.sh` runs), started as a
//! user would start it, on a free port, from an empty folder that is not the checkout: it must
//! bring its own sample flows and keys, say nothing alarming, produce a recording of every kind
//! and serve the page.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Stops the demo with SIGTERM (as Ctrl-C or systemd would) if the test ends early.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn terminate(child: &Child) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a child has a pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
}

/// The session cookie of a signed-in demo user.
async fn sign_in(http: &reqwest::Client, base: &str, user: &str) -> String {
    let response = http
        .post(format!("{base}/api/session"))
        .json(&serde_json::json!({"username": user, "password": "ari-recorder-demo"}))
        .send()
        .await
        .expect("sign in");
    assert_eq!(
        response.status(),
        200,
        "{user} signs in with the README's password"
    );
    let cookie = response
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie");
    cookie.split(';').next().expect("name=value").to_string()
}

#[tokio::test]
async fn the_demo_records_every_kind_of_call_and_serves_the_page() {
    let data = tempfile::tempdir().expect("data folder");
    let elsewhere = tempfile::tempdir().expect("an empty folder to start from");
    let mut command = Command::new(env!("CARGO_BIN_EXE_ari-recorder"));
    command
        .args(["demo", "--call-every", "0.5", "--data"])
        .arg(data.path())
        // Not the checkout: the binary alone must give the whole demo.
        .current_dir(elsewhere.path())
        .env("HTTP_ADDR", "127.0.0.1:0")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        // Kept for the failure message: why the demo did not stop cleanly, if it did not.
        .stderr(Stdio::from(
            std::fs::File::create(data.path().join("demo.log")).expect("log file"),
        ));
    for key in [
        "DATABASE_URL",
        "DIALPLANS_DIR",
        "RECORDINGS_DIR",
        "ARI_URL",
        "LINK_SIGNING_KEYS",
        "AUDIT_KEYS",
    ] {
        command.env_remove(key);
    }
    let mut demo = Demo(command.spawn().expect("the demo starts"));
    let stdout = demo.0.stdout.take().expect("stdout");
    // The first line names the page's address (the port the system gave).
    let base = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines
            .next()
            .expect("the demo prints its address")
            .expect("utf-8");
        // Keep draining so the demo never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        first
    })
    .await
    .expect("reader");
    let base = base
        .split("library at ")
        .nth(1)
        .and_then(|rest| rest.split('/').nth(2))
        .map(|host| format!("http://{}", host.replace("localhost", "127.0.0.1")))
        .unwrap_or_else(|| panic!("no address in {base:?}"));

    let http = reqwest::Client::new();
    let page = http.get(format!("{base}/")).send().await.expect("page");
    assert_eq!(page.status(), 200);
    // Started: nothing that reads like something went wrong (the demo made its own keys,
    // kept beside its flows so a restart keeps links working, and carried its own flows).
    let start_log = std::fs::read_to_string(data.path().join("demo.log")).unwrap_or_default();
    assert!(
        !start_log.contains("WARN") && !start_log.contains("ERROR"),
        "the demo printed warnings at start:\n{start_log}"
    );
    let html = page.text().await.expect("html");
    assert!(html.contains("<script type=\"module\""), "{html}");

    let cookie = sign_in(&http, &base, "admin").await;
    // Every kind the README promises: a bridged transfer, a queue and a hunt-group call (WAV),
    // a voicemail message (mu-law), each finished and indexed, and a direct outbound call,
    // recorded or listed as not recorded as the sample settings say.
    let settings: toml::Table = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dialplans/settings.toml"),
    )
    .expect("sample settings")
    .parse()
    .expect("toml");
    let outbound = match settings.get("record_outbound_calls") {
        Some(toml::Value::Boolean(true)) => ("wav", "ready"),
        _ => ("none", "not_recorded"),
    };
    let wanted = [
        ("transfer", ("wav", "ready")),
        ("queue", ("wav", "ready")),
        ("hunt_group", ("wav", "ready")),
        ("voicemail", ("ulaw", "ready")),
        ("outbound", outbound),
    ];
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut seen: Vec<serde_json::Value>;
    loop {
        let list: serde_json::Value = http
            .get(format!("{base}/api/recordings?limit=200"))
            .header(reqwest::header::COOKIE, &cookie)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        seen = list["recordings"].as_array().cloned().unwrap_or_default();
        let missing: Vec<_> = wanted
            .iter()
            .filter(|(kind, (format, status))| {
                !seen.iter().any(|r| {
                    let matches_kind = if *kind == "outbound" {
                        r["direction"] == "outbound"
                    } else {
                        r["node_type"] == *kind && r["direction"] == "inbound"
                    };
                    matches_kind && r["format"] == *format && r["status"] == *status
                })
            })
            .collect();
        // The billing line asked for consent and the demo's caller pressed 1.
        let billing = seen
            .iter()
            .any(|r| r["flow"] == "billing" && r["consent"] == "granted" && r["status"] == "ready");
        if missing.is_empty() && billing {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no finished recording of {missing:?} (billing with consent: {billing}) after 3 minutes of demo calls: {seen:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The prompts are never recorded: every row is a call's.
    assert!(seen.iter().all(|r| r["call_id"].is_string()), "{seen:#?}");
    // The support line announces recording, so its calls play for the demo's staff user.
    let supported = seen
        .iter()
        .find(|r| r["flow"] == "support" && r["node_type"] == "transfer" && r["status"] == "ready")
        .expect("a support-line recording");
    let staff = sign_in(&http, &base, "staff").await;
    let id = supported["id"].as_i64().expect("id");
    let audio = http
        .get(format!("{base}/api/recordings/{id}/audio"))
        .header(reqwest::header::COOKIE, &staff)
        .header(reqwest::header::RANGE, "bytes=0-43")
        .send()
        .await
        .expect("audio");
    assert_eq!(audio.status(), 206);
    assert_eq!(&audio.bytes().await.expect("bytes")[..4], b"RIFF");

    // The demo transcribes its calls with the offline engine (scripts/test.sh and
    // scripts/demo.sh install it): the voicemail caller's sentence is found by what was said.
    let transcribing = ari_recorder::config::transcription::pocketsphinx_installed(
        std::path::Path::new("pocketsphinx_continuous"),
        std::path::Path::new("/usr/share/pocketsphinx/model/en-us"),
    );
    assert!(
        transcribing || std::env::var_os("CI").is_none(),
        "pocketsphinx and pocketsphinx-en-us are missing: scripts/test.sh installs them"
    );
    if transcribing {
        // The sample voicemail flow asks no consent: an admin records it, as on a real line,
        // so the messages may be played and their words searched.
        let db = ari_recorder::db::Database::open(&format!(
            "sqlite://{}/library.db",
            data.path().display()
        ))
        .await
        .expect("the demo's database");
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            sqlx::query("UPDATE recordings SET consent = 'granted' WHERE node_type = 'voicemail'")
                .execute(&db.pool)
                .await
                .expect("consent");
            let found: serde_json::Value = http
                .get(format!("{base}/api/recordings?q=delivery"))
                .header(reqwest::header::COOKIE, &cookie)
                .send()
                .await
                .expect("search")
                .json()
                .await
                .expect("json");
            let rows = found["recordings"].as_array().cloned().unwrap_or_default();
            if let Some(message) = rows.iter().find(|r| r["node_type"] == "voicemail") {
                assert!(message["match"]["snippet"].is_string(), "{message}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no voicemail found by what its caller said after 4 minutes: {found}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    terminate(&demo.0);
    let status = tokio::task::spawn_blocking(move || demo.0.wait())
        .await
        .expect("waiter")
        .expect("the demo exits");
    let log = std::fs::read_to_string(data.path().join("demo.log")).unwrap_or_default();
    assert!(
        status.success(),
        "the demo stops cleanly on SIGTERM: {status}; its log:\n{log}"
    );
    assert!(!log.contains("ERROR"), "the demo printed errors:\n{log}");
    assert!(data.path().join("keys.toml").exists());
    assert!(data.path().join("dialplans/support.toml").exists());
    assert!(!elsewhere.path().join("dialplans").exists());
}
