//! The archive against a real S3-compatible server: `s3s-fs` from crates.io, which
//! `scripts/test.sh` builds once into `target/tools` (S3S_FS_BIN). Uploads are read back and
//! verified, the queue survives a restart and a server that is down, verified local copies go
//! and the audio is then served from the bucket with the same bytes, split files, presigned
//! links, and removal from the bucket on delete and purge.

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::s3::{s3s_fs_bin, S3Server, ACCESS_KEY, BUCKET, SECRET_KEY};
use common::{
    database_url, eventually, send, start_service_with, start_sim, Db, TestService, TestSim,
};

/// A simulated Asterisk, a database of `db` and a running s3s-fs.
async fn with_a_bucket(db: Db) -> (TestSim, String, S3Server) {
    let bin = s3s_fs_bin();
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let mut s3 = S3Server::new(bin, t.dir.path());
    s3.start().await;
    (t, url, s3)
}

fn archive_settings(
    s3: &S3Server,
    extra: &[(&'static str, &'static str)],
) -> Vec<(String, String)> {
    let mut settings = vec![
        ("ARCHIVE_BUCKET".to_string(), BUCKET.to_string()),
        ("ARCHIVE_ENDPOINT".to_string(), s3.endpoint()),
        ("ARCHIVE_ACCESS_KEY_ID".to_string(), ACCESS_KEY.to_string()),
        (
            "ARCHIVE_SECRET_ACCESS_KEY".to_string(),
            SECRET_KEY.to_string(),
        ),
        ("ARCHIVE_RETRY_CAP_SECONDS".to_string(), "1".to_string()),
        ("ARCHIVE_LOCAL_RETENTION_DAYS".to_string(), "0".to_string()),
        ("NODE_ID".to_string(), "pbx-a".to_string()),
    ];
    for (k, v) in extra {
        settings.retain(|(key, _)| key != k);
        settings.push((k.to_string(), v.to_string()));
    }
    settings
}

async fn start(t: &TestSim, url: &str, settings: &[(String, String)]) -> TestService {
    let pairs: Vec<(&str, &str)> = settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    start_service_with(t, &[], url, &pairs).await
}

/// A final WAV of `seconds` (8 kHz, 16-bit, a ramp so every range differs), dated an hour ago.
fn put_long_wav(t: &TestSim, name: &str, seconds: u32) -> Vec<u8> {
    let samples: Vec<u8> = (0..8000 * seconds)
        .flat_map(|i| ((i as i16).wrapping_mul(13)).to_le_bytes())
        .collect();
    let mut wav = ari_recorder::audio::wav::header(samples.len() as u32).to_vec();
    wav.extend(samples);
    write_old(&t.recordings.join(format!("{name}.wav")), &wav);
    wav
}

fn write_old(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write");
    ari_recorder::library::index::set_mtime(
        path,
        std::time::SystemTime::now() - Duration::from_secs(3600),
    )
    .expect("mtime");
}

/// Recording ids by name, consent granted so they play.
async fn ids(s: &TestService, names: &[&str]) -> Vec<i64> {
    let mut out = Vec::new();
    for name in names {
        let (id,): (i64,) = sqlx::query_as(
            "UPDATE recordings SET consent = 'granted' WHERE name = $1 RETURNING id",
        )
        .bind(*name)
        .fetch_one(&s.svc.db.pool)
        .await
        .expect("recording row");
        out.push(id);
    }
    out
}

async fn summary(s: &TestService) -> ari_recorder::archive::queue::Summary {
    ari_recorder::archive::queue::summary(&s.svc.db)
        .await
        .expect("summary")
}

/// Polls the archive's queue until `done` holds (bounded).
async fn wait_archive(
    s: &TestService,
    what: &str,
    done: impl Fn(&ari_recorder::archive::queue::Summary) -> bool,
) {
    eventually(what, async || done(&summary(s).await)).await;
}

/// What a reviewer gets of a recording: the whole WAV, two ranges, its ETag, its waveform and
/// its MP3.
#[derive(Debug, PartialEq)]
struct Served {
    whole: Vec<u8>,
    head: Vec<u8>,
    middle: Vec<u8>,
    etag: String,
    peaks: serde_json::Value,
    mp3: Vec<u8>,
}

async fn served(s: &TestService, id: i64) -> Served {
    let client = common::bearer(&s.token);
    let audio = format!("{}/api/recordings/{id}/audio", s.base);
    let whole = send(client.get(&audio)).await;
    assert_eq!(
        whole.status,
        200,
        "{}",
        String::from_utf8_lossy(&whole.body)
    );
    let etag = whole.headers["etag"].to_str().expect("etag").to_string();
    let head = send(client.get(&audio).header("range", "bytes=0-99")).await;
    assert_eq!(head.status, 206);
    let len = whole.body.len();
    let middle = send(
        client
            .get(&audio)
            .header("range", format!("bytes={}-{}", len / 3, len / 3 + 70_001)),
    )
    .await;
    assert_eq!(middle.status, 206);
    let peaks = send(client.get(format!("{}/api/recordings/{id}/peaks", s.base))).await;
    assert_eq!(peaks.status, 200, "{}", peaks.error());
    let mp3 = send(client.get(format!("{audio}?format=mp3"))).await;
    assert_eq!(mp3.status, 200, "{}", mp3.error());
    Served {
        whole: whole.body,
        head: head.body,
        middle: middle.body,
        etag,
        peaks: peaks.json(),
        mp3: mp3.body,
    }
}

/// The bucket is down when the recordings become final: they wait in the queue (degraded,
/// not failed; nothing removed locally) through a restart of the service; once the bucket is
/// back they are uploaded, verified, their local copies removed, and the audio served from
/// the bucket is byte for byte what the disk gave.
async fn uploads_wait_for_the_bucket_then_play_from_it(db: Db) {
    let bin = s3s_fs_bin();
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let mut s3 = S3Server::new(bin, t.dir.path());
    let long = put_long_wav(&t, "alpha", 6);
    common::put_wav(&t, "bravo");
    let memo: Vec<u8> = (0..16_000u32).map(|i| (i % 251) as u8).collect();
    write_old(&t.recordings.join("memo.ulaw"), &memo);
    let settings = archive_settings(&s3, &[]);

    let s = start(&t, &url, &settings).await;
    common::wait_ready(&s.svc.db, 3).await;
    let recordings = ids(&s, &["alpha", "bravo", "memo"]).await;
    wait_archive(&s, "failed attempts", |q| q.pending == 3 && q.failing == 3).await;
    let ready = send(reqwest::Client::new().get(format!("{}/readyz", s.base))).await;
    assert_eq!(ready.status, 200);
    let ready = ready.json();
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["archive"]["pending"], 3, "{ready}");
    assert!(ready["archive"]["last_error"].is_string(), "{ready}");
    let metrics = common::metrics_text(&s.base).await;
    assert!(metrics.contains("archive_pending 3"), "{metrics}");
    // Nothing is removed before its upload is verified.
    for name in ["alpha.wav", "bravo.wav", "memo.ulaw"] {
        assert!(t.recordings.join(name).exists(), "{name} still on disk");
    }
    let mut from_disk = Vec::new();
    for id in &recordings {
        from_disk.push(served(&s, *id).await);
    }
    common::stop(s).await;

    // The queue outlives the process; the bucket comes back.
    s3.start().await;
    let s = start(&t, &url, &settings).await;
    wait_archive(&s, "uploads and local removals", |q| {
        q.stored == 3 && q.local_copies_removed == 3 && q.pending == 0
    })
    .await;
    for name in ["alpha.wav", "bravo.wav", "memo.ulaw"] {
        assert!(!t.recordings.join(name).exists(), "{name} left the disk");
    }
    assert_eq!(
        s3.object("default/pbx-a/alpha.wav").as_deref(),
        Some(long.as_slice()),
        "the object holds the file's bytes"
    );
    assert_eq!(
        s3.object("default/pbx-a/memo.ulaw").as_deref(),
        Some(memo.as_slice())
    );
    // A rescan does not take the removed copies for lost recordings.
    s.svc.indexer.full_scan().await.expect("scan");
    let (ready_rows,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM recordings WHERE status = 'ready'")
            .fetch_one(&s.svc.db.pool)
            .await
            .expect("count");
    assert_eq!(ready_rows, 3);
    for (id, disk) in recordings.iter().zip(&from_disk) {
        let bucket = served(&s, *id).await;
        assert_eq!(&bucket, disk, "recording {id} from the bucket");
    }
    let ready = send(reqwest::Client::new().get(format!("{}/readyz", s.base)))
        .await
        .json();
    assert_eq!(ready["status"], "ready", "{ready}");
    let metrics = common::metrics_text(&s.base).await;
    assert!(metrics.contains("archive_stored 3"), "{metrics}");
    assert!(
        !metrics.contains("archive_range_reads_total 0"),
        "{metrics}"
    );
    common::stop(s).await;
}

/// A file past `split_bytes` is stored as ordered parts and a manifest and served as one; a
/// whole file gets a presigned bucket link when asked for; delete and purge remove the objects.
async fn split_files_presigned_links_and_removal(db: Db) {
    let steps = common::Steps::new("split_files_presigned_links_and_removal");
    let (t, url, s3) = with_a_bucket(db).await;
    let long = put_long_wav(&t, "long", 10);
    let short = put_long_wav(&t, "short", 1);
    common::put_wav(&t, "old");
    let settings = archive_settings(
        &s3,
        &[
            ("ARCHIVE_SPLIT_BYTES", "65536"),
            ("ARCHIVE_PRESIGNED_LINKS", "true"),
            ("ARCHIVE_PREFIX", "pbx-1"),
        ],
    );
    let s = start(&t, &url, &settings).await;
    common::wait_ready(&s.svc.db, 3).await;
    let [long_id, short_id, old_id] = ids(&s, &["long", "short", "old"]).await[..] else {
        panic!("three recordings");
    };
    wait_archive(&s, "three stored", |q| {
        q.stored == 3 && q.local_copies_removed == 3
    })
    .await;
    let parts = long.len().div_ceil(65536);
    let keys = s3.keys();
    for part in 0..parts {
        assert!(
            keys.contains(&format!("pbx-1/default/pbx-a/long.wav.part-{part:05}")),
            "{keys:?}"
        );
    }
    assert!(keys.contains(&"pbx-1/default/pbx-a/long.wav.manifest.json".to_string()));
    assert!(keys.contains(&"pbx-1/default/pbx-a/short.wav".to_string()));
    let manifest: serde_json::Value = serde_json::from_slice(
        &s3.object("pbx-1/default/pbx-a/long.wav.manifest.json")
            .expect("manifest"),
    )
    .expect("manifest JSON");
    assert_eq!(manifest["size"], long.len() as u64);
    assert_eq!(manifest["parts"].as_array().map(Vec::len), Some(parts));
    let joined: Vec<u8> = (0..parts)
        .flat_map(|p| {
            s3.object(&format!("pbx-1/default/pbx-a/long.wav.part-{p:05}"))
                .expect("part")
        })
        .collect();
    assert_eq!(joined, long);

    steps.step("Served as one, a range across a part boundary included.");
    let client = common::bearer(&s.token);
    let audio = format!("{}/api/recordings/{long_id}/audio", s.base);
    let whole = send(client.get(&audio)).await;
    assert_eq!(whole.status, 200, "{}", whole.error());
    assert_eq!(whole.body, long, "a 16-bit WAV is served as stored");
    let across = send(client.get(&audio).header("range", "bytes=65000-66000")).await;
    assert_eq!(across.status, 206);
    assert_eq!(across.body, long[65000..=66000].to_vec());

    steps.step("A presigned link for a whole object, fetched without credentials; a split one gets the service's own single-use link.");
    let link = send(client.get(format!(
        "{}/api/recordings/{short_id}/download-url?expires_in=120",
        s.base
    )))
    .await;
    assert_eq!(link.status, 201, "{}", link.error());
    let link = link.json();
    assert_eq!(link["presigned"], true, "{link}");
    assert_eq!(link["single_use"], false);
    let url = link["url"].as_str().expect("url");
    assert!(url.starts_with(&s3.endpoint()), "{url}");
    let fetched = send(reqwest::Client::new().get(url)).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.body, short);
    let tampered = send(reqwest::Client::new().get(url.replace("short.wav", "long.wav"))).await;
    assert_eq!(tampered.status, 403, "a signature covers its key");
    let own = send(client.post(format!("{}/api/recordings/{long_id}/download-url", s.base)))
        .await
        .json();
    assert_eq!(own["presigned"], false, "{own}");
    assert!(own["url"]
        .as_str()
        .expect("url")
        .starts_with("/api/recordings/"));

    steps.step("Deleted by hand: the objects go.");
    let deleted = common::delete_confirmed(&client, &s.base, long_id).await;
    assert_eq!(deleted.status, 200, "{}", deleted.error());
    wait_archive(&s, "the deleted recording's objects removed", |q| {
        q.stored == 2 && q.removing == 0
    })
    .await;
    assert!(
        !s3.keys().iter().any(|k| k.contains("long.wav")),
        "{:?}",
        s3.keys()
    );

    steps.step("Purged by a retention rule: its object goes too.");
    sqlx::query("UPDATE recordings SET started_at_ms = started_at_ms - $1 WHERE id = $2")
        .bind(40i64 * 86_400_000)
        .bind(old_id)
        .execute(&s.svc.db.pool)
        .await
        .expect("age");
    ari_recorder::retention::set_rule(
        &s.svc.db,
        "default",
        ari_recorder::retention::Rule {
            calls_days: Some(30),
            ..Default::default()
        },
    )
    .await
    .expect("rule");
    let report = ari_recorder::retention::purge(
        &s.svc.db,
        &t.recordings,
        s.svc.indexer.node(),
        chrono::Utc::now().timestamp_millis(),
        false,
    )
    .await
    .expect("purge");
    assert_eq!(report.purged, 1);
    if let Some(archive) = &s.svc.archive {
        archive.wake.notify_one();
    }
    wait_archive(&s, "the purged recording's object removed", |q| {
        q.stored == 1 && q.removing == 0
    })
    .await;
    assert_eq!(s3.keys(), vec!["pbx-1/default/pbx-a/short.wav".to_string()]);
    common::stop(s).await;
}

/// A file past one request's size (8 MiB) goes up as a multipart upload, read back whole.
#[tokio::test]
#[ignore = "needs s3s-fs: scripts/test.sh builds it and runs it"]
async fn a_large_file_goes_up_as_a_multipart_upload() {
    let bin = s3s_fs_bin();
    let t = start_sim(0.0).await;
    let url = database_url(&t, Db::Sqlite).await;
    let mut s3 = S3Server::new(bin, t.dir.path());
    s3.start().await;
    // Ten minutes of 8 kHz 16-bit audio: 9.6 MB, two parts.
    let long = put_long_wav(&t, "ten-minutes", 600);
    let s = start(&t, &url, &archive_settings(&s3, &[])).await;
    common::wait_ready(&s.svc.db, 1).await;
    let [id] = ids(&s, &["ten-minutes"]).await[..] else {
        panic!("one recording");
    };
    wait_archive(&s, "the upload", |q| {
        q.stored == 1 && q.local_copies_removed == 1
    })
    .await;
    assert_eq!(
        s3.object("default/pbx-a/ten-minutes.wav")
            .map(|o| o == long),
        Some(true),
        "the object holds the file's bytes"
    );
    let client = common::bearer(&s.token);
    let tail = send(
        client
            .get(format!("{}/api/recordings/{id}/audio", s.base))
            .header("range", format!("bytes={}-", long.len() - 1000)),
    )
    .await;
    assert_eq!(tail.status, 206);
    assert_eq!(tail.body, long[long.len() - 1000..].to_vec());
    common::stop(s).await;
}

/// Two instances (two Asterisks, two recordings folders) on one PostgreSQL and one bucket: each
/// keeps the rows of its own folder (the same path on both is two recordings, and neither
/// marks the other's missing); a recording still only on the other node's disk answers 409
/// with Retry-After, then plays from the bucket once archived; a delete through one node
/// never touches its own file of the same path, and the owning node finishes the removal.
#[tokio::test]
#[ignore = "needs s3s-fs and PostgreSQL: scripts/test.sh provides both and runs it"]
async fn two_nodes_share_one_library() {
    let steps = common::Steps::new("two_nodes_share_one_library");
    let bin = s3s_fs_bin();
    let a = start_sim(0.0).await;
    let b = start_sim(0.0).await;
    let url = database_url(&a, Db::Postgres).await;
    let mut s3 = S3Server::new(bin, a.dir.path());
    let on_a = put_long_wav(&a, "same", 2);
    let on_b = put_long_wav(&b, "same", 3);
    common::put_wav(&a, "only-a");
    let node = |name: &'static str| {
        let mut settings = archive_settings(&s3, &[]);
        settings.retain(|(k, _)| k != "NODE_ID");
        settings.push(("NODE_ID".into(), name.into()));
        settings
    };
    let node_a = start(&a, &url, &node("pbx-a")).await;
    common::wait_ready(&node_a.svc.db, 2).await;
    let node_b = start(&b, &url, &node("pbx-b")).await;
    common::wait_ready(&node_b.svc.db, 3).await;
    steps.step("A's full scan again, with B's rows in the table: B's are not A's to mark missing.");
    common::stop(node_a).await;
    let node_a = start(&a, &url, &node("pbx-a")).await;
    node_a.svc.indexer.full_scan().await.expect("scan");
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT node_id, path, status FROM recordings ORDER BY node_id, path")
            .fetch_all(&node_a.svc.db.pool)
            .await
            .expect("rows");
    assert_eq!(
        rows,
        vec![
            ("pbx-a".into(), "only-a.wav".into(), "ready".into()),
            ("pbx-a".into(), "same.wav".into(), "ready".into()),
            ("pbx-b".into(), "same.wav".into(), "ready".into()),
        ]
    );
    let id_of = |node: &'static str, name: &'static str| {
        let db = node_a.svc.db.clone();
        async move {
            let (id,): (i64,) = sqlx::query_as(
                "UPDATE recordings SET consent = 'granted' WHERE node_id = $1 AND name = $2 RETURNING id",
            )
            .bind(node)
            .bind(name)
            .fetch_one(&db.pool)
            .await
            .expect("row");
            id
        }
    };
    let same_a = id_of("pbx-a", "same").await;
    let same_b = id_of("pbx-b", "same").await;
    let only_a = id_of("pbx-a", "only-a").await;

    steps.step("Listed once each, from either node.");
    for s in [&node_a, &node_b] {
        let list = send(common::bearer(&s.token).get(format!("{}/api/recordings", s.base)))
            .await
            .json();
        let mut ids: Vec<i64> = list["recordings"]
            .as_array()
            .expect("recordings")
            .iter()
            .filter_map(|r| r["id"].as_i64())
            .collect();
        ids.sort_unstable();
        let mut want = vec![same_a, same_b, only_a];
        want.sort_unstable();
        assert_eq!(ids, want, "{list}");
    }

    steps
        .step("Not archived yet (the bucket is down): the other node says so; the owner plays it.");
    let audio = |s: &TestService, id: i64| {
        let request = common::bearer(&s.token).get(format!("{}/api/recordings/{id}/audio", s.base));
        send(request)
    };
    let refused = audio(&node_b, same_a).await;
    assert_eq!(refused.status, 409, "{}", refused.error());
    assert_eq!(refused.json()["error"], "not_yet_archived");
    assert!(refused.headers.contains_key("retry-after"));
    assert_eq!(audio(&node_a, same_a).await.body, on_a);
    assert_eq!(audio(&node_b, same_b).await.body, on_b);

    steps.step(
        "A delete through B of A's `same.wav` leaves B's own `same.wav`; A finishes the removal.",
    );
    let client_b = common::bearer(&node_b.token);
    let deleted = common::delete_confirmed(&client_b, &node_b.base, same_a).await;
    assert_eq!(deleted.status, 200, "{}", deleted.error());
    assert!(b.recordings.join("same.wav").exists(), "B's own file stays");
    assert!(
        a.recordings.join("same.wav").exists(),
        "B cannot reach A's disk"
    );
    ari_recorder::retention::purge(
        &node_a.svc.db,
        &a.recordings,
        "pbx-a",
        chrono::Utc::now().timestamp_millis(),
        false,
    )
    .await
    .expect("purge");
    assert!(
        !a.recordings.join("same.wav").exists(),
        "A removed its file"
    );

    steps.step(
        "The bucket comes back: both nodes upload their own files; any node plays any recording.",
    );
    s3.start().await;
    wait_archive(&node_a, "both nodes' uploads", |q| {
        q.stored == 2 && q.local_copies_removed == 2 && q.pending == 0
    })
    .await;
    assert_eq!(
        s3.keys(),
        vec![
            "default/pbx-a/only-a.wav".to_string(),
            "default/pbx-b/same.wav".to_string()
        ]
    );
    let from_a = audio(&node_a, same_b).await;
    assert_eq!(from_a.status, 200, "{}", from_a.error());
    assert_eq!(from_a.body, on_b, "B's file, not A's of the same path");
    let from_b = audio(&node_b, only_a).await;
    assert_eq!(from_b.status, 200, "{}", from_b.error());
    common::stop(node_a).await;
    common::stop(node_b).await;
}

/// Whether any file under `dir` holds `pattern`.
fn found_in(dir: &Path, pattern: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|bytes| bytes.windows(pattern.len()).any(|w| w == pattern))
            {
                hits.push(path);
            }
        }
    }
    hits
}

/// What a call of both recordings gives: the assembled WAV.
async fn call_audio(s: &TestService) -> Vec<u8> {
    let client = common::bearer(&s.token);
    let audio = send(client.get(format!("{}/api/calls/enc-call/audio", s.base))).await;
    assert_eq!(audio.status, 200, "{}", audio.error());
    audio.body
}

/// An encrypted deployment: final recordings are sealed in place, reach the bucket sealed,
/// and serve the same bytes as in clear (whole, ranges, waveform, MP3, the assembled call),
/// with nothing in clear on disk, in the cache or in the bucket; `reencrypt` moves them all to
/// a new key, after which the old one is not needed.
async fn sealed_at_rest_on_disk_and_in_the_bucket(db: Db) {
    let (t, url, s3) = with_a_bucket(db).await;
    let long = put_long_wav(&t, "alpha", 6);
    let memo: Vec<u8> = (0..24_000u32).map(|i| (i * 7 % 251) as u8).collect();
    write_old(&t.recordings.join("memo.ulaw"), &memo);
    let patterns = [long[40_000..40_064].to_vec(), memo[9_000..9_064].to_vec()];
    let prepare = |s: &TestService| {
        let db = s.svc.db.clone();
        async move {
            sqlx::query("UPDATE recordings SET call_id = 'enc-call'")
                .execute(&db.pool)
                .await
                .expect("one call");
        }
    };

    // In clear first: what a reviewer gets.
    let plain = start_service_with(&t, &[], &url, &[("NODE_ID", "pbx-a")]).await;
    common::wait_ready(&plain.svc.db, 2).await;
    let recordings = ids(&plain, &["alpha", "memo"]).await;
    prepare(&plain).await;
    let mut in_clear = Vec::new();
    for id in &recordings {
        in_clear.push(served(&plain, *id).await);
    }
    let call_in_clear = call_audio(&plain).await;
    common::stop(plain).await;

    // Encryption on, with the archive keeping nothing locally.
    let (old_key, _) = ari_recorder::encryption::Keyring::generate();
    let mut settings = archive_settings(&s3, &[]);
    settings.push(("ENCRYPTION_KEYS".into(), old_key.clone()));
    let s = start(&t, &url, &settings).await;
    wait_archive(&s, "sealed uploads", |q| {
        q.stored == 2 && q.local_copies_removed == 2
    })
    .await;
    // The call's id was set by hand (no call metadata): a re-index of a sealed file drops it.
    prepare(&s).await;
    for (id, clear) in recordings.iter().zip(&in_clear) {
        assert_eq!(&served(&s, *id).await, clear, "recording {id} sealed");
    }
    assert_eq!(call_audio(&s).await, call_in_clear, "the call assembled");
    // The whole call's copy for download links goes up sealed, and its link serves it in clear.
    let sealed_link =
        send(common::bearer(&s.token).post(format!("{}/api/calls/enc-call/download-url", s.base)))
            .await;
    assert_eq!(sealed_link.status, 201, "{}", sealed_link.error());
    assert_eq!(sealed_link.json()["stored"], true);
    let copy = s3
        .keys()
        .into_iter()
        .find(|k| k.starts_with("default/calls/enc-call/"))
        .expect("the call's copy in the bucket");
    assert!(s3
        .object(&copy)
        .expect("copy")
        .starts_with(ari_recorder::encryption::MAGIC));
    let through_link = send(reqwest::Client::new().get(format!(
        "{}{}",
        s.base,
        sealed_link.json()["url"].as_str().expect("url")
    )))
    .await;
    assert_eq!(through_link.status, 200, "{}", through_link.error());
    assert_eq!(through_link.body, call_in_clear, "the sealed copy, opened");
    let bucket = s3.root.join(BUCKET);
    for pattern in &patterns {
        assert_eq!(found_in(&bucket, pattern), Vec::<PathBuf>::new());
        assert_eq!(found_in(&t.recordings, pattern), Vec::<PathBuf>::new());
        assert_eq!(
            found_in(&t.dir.path().join("cache"), pattern),
            Vec::<PathBuf>::new()
        );
    }
    let object = s3.object("default/pbx-a/alpha.wav").expect("object");
    assert!(object.starts_with(ari_recorder::encryption::MAGIC));
    common::stop(s).await;

    // A new key: `reencrypt` seals the bucket's objects again; the old key can then go.
    let (new_key, new_public) = ari_recorder::encryption::Keyring::generate();
    let output = Command::new(env!("CARGO_BIN_EXE_ari-recorder"))
        .arg("reencrypt")
        .envs(
            settings
                .iter()
                .filter(|(k, _)| k != "ENCRYPTION_KEYS")
                .cloned(),
        )
        .env("ENCRYPTION_KEYS", format!("{new_key},{old_key}"))
        .env("DATABASE_URL", &url)
        .env("RECORDINGS_DIR", &t.recordings)
        .env("CACHE_DIR", t.dir.path().join("cache"))
        .env("ARI_PASSWORD", common::PASSWORD)
        .output()
        .expect("reencrypt runs");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("2 sealed again in the bucket"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    // The call's copy is retired with the old key, not sealed again: made anew on the next link.
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("1 whole-call copies retired, 1 deleted"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(!s3.keys().iter().any(|k| k.contains("/calls/")));
    let new_only =
        ari_recorder::encryption::Keyring::parse(std::slice::from_ref(&new_key)).expect("key");
    let object = s3.object("default/pbx-a/alpha.wav").expect("object");
    let mut plain = Vec::new();
    std::io::Read::read_to_end(
        &mut new_only
            .open(std::io::Cursor::new(object))
            .expect("the new key opens it"),
        &mut plain,
    )
    .expect("decrypt");
    assert_eq!(plain, long);
    settings.retain(|(k, _)| k != "ENCRYPTION_KEYS");
    settings.push(("ENCRYPTION_KEYS".into(), new_key));
    let s = start(&t, &url, &settings).await;
    for (id, clear) in recordings.iter().zip(&in_clear) {
        assert_eq!(
            &served(&s, *id).await,
            clear,
            "recording {id} under the new key"
        );
    }
    let keys: Vec<(String, i64)> = ari_recorder::sealing::seals::count_by_key(&s.svc.db)
        .await
        .expect("seals");
    assert_eq!(keys, vec![(new_public, 2)]);
    common::stop(s).await;
}

/// Four instances (separate pools) claiming from one queue at once: every due upload of node
/// a is taken exactly once, and node b's upload by none of them (only its own node uploads a
/// file).
async fn instances_claiming_at_once_never_take_the_same_job(db: Db) {
    use ari_recorder::archive::queue;
    use ari_recorder::db::Database;
    const JOBS: i64 = 60;
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let first = Database::open(&url).await.expect("database");
    for i in 0..=JOBS {
        let node = if i == JOBS { "b" } else { "a" };
        sqlx::query(
            "INSERT INTO recordings (path, node_id, name, format, status, size_bytes, mtime_ms, duration_ms, encoding, sample_rate, data_offset, data_len, started_at_ms, indexed_at_ms, consent, sha256) \
             VALUES ($1, $2, $1, 'wav', 'ready', 144, 1, 1, 'pcm16', 8000, 44, 100, $3, 1, 'granted', 'abc')",
        )
        .bind(format!("r{i}.wav"))
        .bind(node)
        .bind(1_000 + i)
        .execute(&first.pool)
        .await
        .expect("insert");
    }
    let now = 1_000_000;
    let queued = queue::enqueue_ready(&first, "a", now, None, false)
        .await
        .expect("enqueue a")
        + queue::enqueue_ready(&first, "b", now, None, false)
            .await
            .expect("enqueue b");
    assert_eq!(queued, JOBS as u64 + 1);
    let mut instances = Vec::new();
    for _ in 0..4 {
        let db = Database::open(&url).await.expect("instance");
        instances.push(tokio::spawn(async move {
            let mut taken = Vec::new();
            while let Some(job) = queue::claim_next(&db, "a", now).await.expect("claim") {
                taken.push(job.path.expect("row"));
            }
            taken
        }));
    }
    let mut taken = Vec::new();
    for instance in instances {
        taken.extend(instance.await.expect("instance ran"));
    }
    taken.sort();
    let mut expected: Vec<String> = (0..JOBS).map(|i| format!("r{i}.wav")).collect();
    expected.sort();
    assert_eq!(
        taken, expected,
        "each of node a's jobs claimed exactly once"
    );
    // Claimed jobs wait out the lease; node b's job is still there for node b.
    assert!(queue::claim_next(&first, "a", now)
        .await
        .expect("claim")
        .is_none());
    let b = queue::claim_next(&first, "b", now).await.expect("claim b");
    assert_eq!(b.and_then(|job| job.path).as_deref(), Some("r60.wav"));
}

/// The bucket's whole-call copies, by key.
fn call_copies(s3: &S3Server) -> Vec<String> {
    s3.keys()
        .into_iter()
        .filter(|k| k.starts_with("default/calls/call-x/"))
        .collect()
}

async fn call_link(s: &TestService, query: &str) -> serde_json::Value {
    let client = common::bearer(&s.token);
    let made = send(client.get(format!("{}/api/calls/call-x/download-url{query}", s.base))).await;
    assert_eq!(made.status, 201, "{}", made.error());
    made.json()
}

async fn whole_call(s: &TestService) -> Vec<u8> {
    let client = common::bearer(&s.token);
    let got = send(client.get(format!("{}/api/calls/call-x/download", s.base))).await;
    assert_eq!(got.status, 200, "{}", got.error());
    got.body
}

/// A whole call's download link: the call is assembled once and kept in the bucket under the
/// tenant's prefix; later links reuse that object (a presigned URL where allowed, else the
/// service's single-use link served from it); deleting a segment retires the copy (its object
/// goes) and the next link stores the call as it is now.
async fn whole_call_links_are_kept_in_the_bucket(db: Db) {
    let steps = common::Steps::new("whole_call_links_are_kept_in_the_bucket");
    let (t, url, s3) = with_a_bucket(db).await;
    put_long_wav(&t, "first", 3);
    put_long_wav(&t, "second", 2);
    let settings = archive_settings(&s3, &[("ARCHIVE_PRESIGNED_LINKS", "true")]);
    let s = start(&t, &url, &settings).await;
    common::wait_ready(&s.svc.db, 2).await;
    let [_, second] = ids(&s, &["first", "second"]).await[..] else {
        panic!("two recordings");
    };
    wait_archive(&s, "both stored", |q| {
        q.stored == 2 && q.local_copies_removed == 2
    })
    .await;
    sqlx::query("UPDATE recordings SET call_id = 'call-x', started_at_ms = started_at_ms + CASE WHEN name = 'second' THEN 4000 ELSE 0 END")
        .execute(&s.svc.db.pool)
        .await
        .expect("one call");

    steps.step("The first link assembles the call, stores it in the bucket and presigns it.");
    let first_link = call_link(&s, "?expires_in=120").await;
    assert_eq!(first_link["presigned"], true, "{first_link}");
    assert_eq!(first_link["stored"], true);
    assert_eq!(first_link["single_use"], false);
    assert_eq!(first_link["expires_in"], 120);
    let copies = call_copies(&s3);
    assert_eq!(copies.len(), 1, "{:?}", s3.keys());
    let call = whole_call(&s).await;
    assert_eq!(&call[..4], b"RIFF");
    assert_eq!(s3.object(&copies[0]).as_deref(), Some(call.as_slice()));
    let presigned = first_link["url"].as_str().expect("url");
    assert!(presigned.starts_with(&s3.endpoint()), "{presigned}");
    let fetched = send(reqwest::Client::new().get(presigned)).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.body, call, "the presigned URL gives the whole call");

    steps.step("The next link reuses the stored object: nothing assembled or uploaded again.");
    let stored_at = |s: &TestService| {
        let db = s.svc.db.clone();
        async move {
            let rows: Vec<(String, i64)> =
                sqlx::query_as("SELECT object_key, stored_at_ms FROM call_objects")
                    .fetch_all(&db.pool)
                    .await
                    .expect("call objects");
            rows
        }
    };
    let before = stored_at(&s).await;
    let again = call_link(&s, "").await;
    assert_eq!(again["presigned"], true);
    assert_eq!(
        stored_at(&s).await,
        before,
        "the same object, not stored again"
    );
    assert_eq!(call_copies(&s3), copies);

    steps.step("A segment deleted: the copy is retired and its object goes; the next link stores the call as it is now.");
    let client = common::bearer(&s.token);
    let deleted = common::delete_confirmed(&client, &s.base, second).await;
    assert_eq!(deleted.status, 200, "{}", deleted.error());
    // The worker deletes the object, then forgets its row.
    eventually(
        "the retired copy deleted from the bucket and forgotten",
        async || {
            let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM call_objects")
                .fetch_one(&s.svc.db.pool)
                .await
                .expect("count");
            call_copies(&s3).is_empty() && rows == 0
        },
    )
    .await;
    let now_link = call_link(&s, "").await;
    assert_eq!(now_link["stored"], true);
    let now_copies = call_copies(&s3);
    assert_eq!(now_copies.len(), 1);
    assert_ne!(now_copies, copies, "a new version of the timeline");
    let shorter = whole_call(&s).await;
    assert!(shorter.len() < call.len(), "only the first segment now");
    assert_eq!(
        s3.object(&now_copies[0]).as_deref(),
        Some(shorter.as_slice())
    );
    common::stop(s).await;

    steps.step("Without presigned links: the service's single-use link, served from the bucket's copy by any instance.");
    let settings = archive_settings(&s3, &[]);
    let s = start(&t, &url, &settings).await;
    let own = call_link(&s, "").await;
    assert_eq!(own["presigned"], false, "{own}");
    assert_eq!(own["single_use"], true);
    assert_eq!(own["stored"], true);
    let own_url = format!("{}{}", s.base, own["url"].as_str().expect("url"));
    assert!(own_url.contains("/api/calls/call-x/download?"), "{own_url}");
    let anonymous = reqwest::Client::new();
    let got = send(anonymous.get(&own_url)).await;
    assert_eq!(got.status, 200, "{}", got.error());
    assert_eq!(got.body, shorter);
    assert!(got.headers["content-disposition"]
        .to_str()
        .expect("ascii")
        .starts_with("attachment"));
    let used = send(anonymous.get(&own_url)).await;
    assert_eq!((used.status, used.error().as_str()), (403, "link_used"));
    let (from_bucket,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM audit_events WHERE action = 'download' AND outcome = 'allowed' \
         AND detail LIKE '%signed link, the bucket''s copy%'",
    )
    .fetch_one(&s.svc.db.pool)
    .await
    .expect("audit");
    assert_eq!(from_bucket, 1, "served from the stored copy, audited once");
    assert_eq!(call_copies(&s3), now_copies, "still one version");
    common::stop(s).await;
}

on_both_databases!(
    instances_claiming_at_once_never_take_the_same_job,
    #[needs = "needs s3s-fs: scripts/test.sh builds it and runs it"]
    uploads_wait_for_the_bucket_then_play_from_it,
    #[needs = "needs s3s-fs: scripts/test.sh builds it and runs it"]
    split_files_presigned_links_and_removal,
    #[needs = "needs s3s-fs: scripts/test.sh builds it and runs it"]
    sealed_at_rest_on_disk_and_in_the_bucket,
    #[needs = "needs s3s-fs: scripts/test.sh builds it and runs it"]
    whole_call_links_are_kept_in_the_bucket,
);
