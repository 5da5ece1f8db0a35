//! The recordings library with real files: scanning (the real Asterisk files, crashed and bad
//! files), reconciliation, the watcher, and every endpoint: list with keyset pagination and
//! filters, metadata, audio with exact ranges on stored and transcoded audio, download, peaks,
//! two-step delete, path traversal.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use ari_recorder::library::index::set_mtime;
use common::{
    database_url, eventually, start_service_on, start_sim, wait_until, Db, TestService, TestSim,
};
use serde_json::Value;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/recordings")
        .join(name)
}

/// Files dated an hour ago are final (not being written).
fn put(t: &TestSim, rel: &str, bytes: &[u8]) {
    let path = t.recordings.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("dir");
    }
    std::fs::write(&path, bytes).expect("write");
    set_mtime(&path, SystemTime::now() - Duration::from_secs(3600)).expect("mtime");
}

fn put_fixture(t: &TestSim, rel: &str, fixture_name: &str) {
    put(
        t,
        rel,
        &std::fs::read(fixture(fixture_name)).expect("fixture"),
    );
}

async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = common::authed().get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.bytes().await.expect("body").to_vec(),
    )
}

async fn json(url: &str) -> (u16, Value) {
    let (status, _, body) = get(url, &[]).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn scanned(s: &TestService, at_least: u64) {
    eventually("the scan completed", async || {
        let (_, state) = json(&format!("{}/api/library/scan", s.base)).await;
        state["scans_completed"].as_u64().unwrap_or(0) >= at_least
    })
    .await;
}

/// Files found on disk carry no consent: these tests play them, so an admin grants it.
async fn grant_consent_to_all(s: &TestService) {
    sqlx::query("UPDATE recordings SET consent = 'granted'")
        .execute(&s.svc.db.pool)
        .await
        .expect("consent");
}

async fn all(s: &TestService, query: &str) -> Vec<Value> {
    let (status, page) = json(&format!("{}/api/recordings?limit=200&{query}", s.base)).await;
    assert_eq!(status, 200, "{page}");
    page["recordings"].as_array().cloned().unwrap_or_default()
}

fn by_name<'a>(list: &'a [Value], name: &str) -> &'a Value {
    list.iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed"))
}

/// An independent mu-law decoder (the classic bit-twiddling form) to check ours against.
fn reference_ulaw(u: u8) -> i16 {
    let u = !u as i32;
    let t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4);
    (if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 }) as i16
}

async fn scan_indexes_real_and_bad_files_with_status_and_reason(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    put_fixture(&t, "transfer-1a5138fb.wav", "transfer-1a5138fb.wav");
    put_fixture(
        &t,
        "crashed/inprogress-90df1d87.wav",
        "inprogress-90df1d87.partial.wav",
    );
    put_fixture(&t, "voicemail-b97ae5ca.ulaw", "voicemail-b97ae5ca.ulaw");
    put_fixture(&t, "vmsilence-cec16dce.ulaw", "vmsilence-cec16dce.ulaw");
    put(&t, "header-only.wav", &ari_recorder::audio::wav::header(0));
    put(&t, "not-audio.wav", b"<html>this is not audio</html>");
    put(
        &t,
        "truncated.wav",
        &ari_recorder::audio::wav::header(0)[..30],
    );
    put(&t, "old.gsm", &[0u8; 330]);
    put(&t, "notes.txt", b"not a recording");
    let outside = t.dir.path().join("secret.wav");
    std::fs::copy(fixture("queue-447a786b.wav"), &outside).expect("copy");
    std::os::unix::fs::symlink(&outside, t.recordings.join("escape.wav")).expect("symlink");
    let s = start_service_on(&t, &[], &url).await;
    scanned(&s, 1).await;
    grant_consent_to_all(&s).await;
    let list = all(&s, "").await;
    assert_eq!(list.len(), 9, "{list:#?}");
    let ready = by_name(&list, "transfer-1a5138fb");
    assert_eq!(
        (ready["status"].as_str(), ready["duration_seconds"].as_f64()),
        (Some("ready"), Some(16.2))
    );
    assert_eq!(ready["sha256"].as_str().map(str::len), Some(64));
    let crashed = by_name(&list, "crashed/inprogress-90df1d87");
    assert_eq!(crashed["status"], "ready");
    assert!(
        crashed["reason"]
            .as_str()
            .unwrap_or("")
            .contains("sizes were 0"),
        "{crashed}"
    );
    assert_eq!(crashed["duration_seconds"].as_f64(), Some(2.048));
    assert_eq!(
        by_name(&list, "voicemail-b97ae5ca")["duration_seconds"].as_f64(),
        Some(24.174)
    );
    assert_eq!(by_name(&list, "vmsilence-cec16dce")["status"], "empty");
    assert_eq!(by_name(&list, "header-only")["status"], "empty");
    assert_eq!(by_name(&list, "not-audio")["status"], "unreadable");
    assert_eq!(by_name(&list, "truncated")["status"], "unreadable");
    assert_eq!(by_name(&list, "old")["status"], "not_playable");
    let escape = by_name(&list, "escape");
    assert_eq!(escape["status"], "unreadable");
    assert!(
        escape["reason"].as_str().unwrap_or("").contains("outside"),
        "{escape}"
    );
    let (status, _, _) = get(
        &format!("{}/api/recordings/{}/audio", s.base, escape["id"]),
        &[],
    )
    .await;
    assert_eq!(status, 404, "a symlink out of the folder is never served");
    let _ = s.stop.send(true);
}

async fn reconcile_after_files_vanish_or_appear_while_stopped_and_the_watcher_keeps_up(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    put_fixture(&t, "a.wav", "queue-447a786b.wav");
    put_fixture(&t, "b.ulaw", "voicemail-b97ae5ca.ulaw");
    let s = start_service_on(&t, &[], &url).await;
    scanned(&s, 1).await;
    assert_eq!(all(&s, "").await.len(), 2);
    let _ = s.stop.send(true);
    s.svc.join().await;

    std::fs::remove_file(t.recordings.join("a.wav")).expect("remove");
    put_fixture(&t, "c.wav", "hunt-ed927e64.wav");
    let s = start_service_on(&t, &[], &url).await;
    scanned(&s, 1).await;
    let list = all(&s, "").await;
    assert_eq!(by_name(&list, "a")["status"], "missing");
    assert_eq!(by_name(&list, "c")["status"], "ready");

    // A file being written appears: listed as recording (not hashed on every change), then
    // final, with its hash, once it stops changing.
    let growing = t.recordings.join("live/d.wav");
    std::fs::create_dir_all(growing.parent().expect("parent")).expect("dir");
    std::fs::write(
        &growing,
        std::fs::read(fixture("inprogress-90df1d87.partial.wav")).expect("fixture"),
    )
    .expect("write");
    let url = format!("{}/api/recordings?limit=200", s.base);
    eventually("the growing file listed as recording", async || {
        let (_, page) = json(&url).await;
        page["recordings"].as_array().is_some_and(|l| {
            l.iter().any(|r| {
                r["name"] == "live/d" && r["status"] == "recording" && r["sha256"].is_null()
            })
        })
    })
    .await;
    eventually("the file listed ready once final", async || {
        let (_, page) = json(&url).await;
        page["recordings"].as_array().is_some_and(|l| {
            l.iter()
                .any(|r| r["name"] == "live/d" && r["status"] == "ready" && r["sha256"].is_string())
        })
    })
    .await;
    let _ = s.stop.send(true);
}

async fn list_pages_with_keyset_cursors_and_filters(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    for i in 0..7 {
        put_fixture(&t, &format!("q{i}.wav"), "queue-447a786b.wav");
    }
    put_fixture(&t, "long.wav", "transfer-1a5138fb.wav");
    put_fixture(&t, "vm.ulaw", "voicemail-b97ae5ca.ulaw");
    let s = start_service_on(&t, &[], &url).await;
    scanned(&s, 1).await;
    let mut seen = Vec::new();
    let mut url = format!("{}/api/recordings?limit=2", s.base);
    loop {
        let (status, page) = json(&url).await;
        assert_eq!(status, 200, "{page}");
        let rows = page["recordings"].as_array().cloned().unwrap_or_default();
        assert!(rows.len() <= 2);
        seen.extend(rows.iter().map(|r| r["id"].as_i64().unwrap_or(0)));
        match page["next_cursor"].as_str() {
            Some(c) => url = format!("{}/api/recordings?limit=2&cursor={c}", s.base),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        (seen.len(), unique.len()),
        (9, 9),
        "every row exactly once: {seen:?}"
    );

    let longest = all(&s, "sort=longest").await;
    assert_eq!(longest[0]["name"], "vm");
    assert_eq!(longest[1]["name"], "long");
    assert_eq!(all(&s, "format=ulaw").await.len(), 1);
    assert_eq!(all(&s, "min_duration=10").await.len(), 2);
    assert_eq!(all(&s, "status=ready&format=wav").await.len(), 8);
    // A cursor of one sort order is refused by the other, and bad parameters are named.
    let (_, page) = json(&format!("{}/api/recordings?limit=1", s.base)).await;
    let cursor = page["next_cursor"].as_str().expect("cursor").to_string();
    for (query, param) in [
        (format!("sort=longest&cursor={cursor}"), "cursor"),
        ("limit=500".into(), "limit"),
        ("status=great".into(), "status"),
        ("from=yesterday".into(), "from"),
        ("colour=red".into(), "colour"),
    ] {
        let (status, body) = json(&format!("{}/api/recordings?{query}", s.base)).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"], "bad_request");
        assert!(
            body["message"].as_str().unwrap_or("").starts_with(param),
            "{body}"
        );
    }
    let _ = s.stop.send(true);
}

async fn audio_ranges_are_exact_on_stored_and_transcoded_audio(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    put_fixture(&t, "call.wav", "queue-447a786b.wav");
    put_fixture(&t, "vm.ulaw", "voicemail-b97ae5ca.ulaw");
    put_fixture(&t, "crashed.wav", "inprogress-90df1d87.partial.wav");
    let s = start_service_on(&t, &[], &url).await;
    scanned(&s, 1).await;
    grant_consent_to_all(&s).await;
    let list = all(&s, "").await;

    // WAV: served byte for byte.
    let wav = by_name(&list, "call");
    let url = format!("{}/api/recordings/{}/audio", s.base, wav["id"]);
    let (status, headers, body) = get(&url, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        std::fs::read(fixture("queue-447a786b.wav")).expect("fixture")
    );
    assert_eq!(headers["content-type"], "audio/wav");
    assert_eq!(headers["accept-ranges"], "bytes");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let etag = headers["etag"].to_str().expect("etag").to_string();
    // Safari's probe.
    let (status, headers, part) = get(&url, &[("range", "bytes=0-1")]).await;
    assert_eq!((status, part.as_slice()), (206, b"RI".as_slice()));
    assert_eq!(
        headers["content-range"],
        format!("bytes 0-1/{}", body.len()).as_str()
    );
    let (status, _, tail) = get(&url, &[("range", "bytes=-100")]).await;
    assert_eq!((status, tail.as_slice()), (206, &body[body.len() - 100..]));
    let (status, headers, _) = get(&url, &[("range", &format!("bytes={}-", body.len()))]).await;
    assert_eq!(status, 416);
    assert_eq!(
        headers["content-range"],
        format!("bytes */{}", body.len()).as_str()
    );
    let (status, _, whole) =
        get(&url, &[("range", "bytes=10-20"), ("if-range", "\"stale\"")]).await;
    assert_eq!(
        (status, whole.len()),
        (200, body.len()),
        "a stale If-Range gets the whole file"
    );
    let (status, _, _) = get(&url, &[("range", "bytes=10-20"), ("if-range", &etag)]).await;
    assert_eq!(status, 206);

    // A crashed WAV (sizes 0) is served with a correct header.
    let crashed = by_name(&list, "crashed");
    let (_, _, fixed) = get(
        &format!("{}/api/recordings/{}/audio", s.base, crashed["id"]),
        &[],
    )
    .await;
    assert_eq!(
        u32::from_le_bytes([fixed[40], fixed[41], fixed[42], fixed[43]]) as usize,
        fixed.len() - 44
    );

    // mu-law: transcoded to PCM WAV, sample for sample against a reference decoder, and every
    // range equals the same bytes of the whole stream.
    let vm = by_name(&list, "vm");
    let url = format!("{}/api/recordings/{}/audio", s.base, vm["id"]);
    let (_, _, whole) = get(&url, &[]).await;
    let source = std::fs::read(fixture("voicemail-b97ae5ca.ulaw")).expect("fixture");
    assert_eq!(whole.len(), 44 + source.len() * 2);
    for (i, byte) in source.iter().enumerate() {
        assert_eq!(
            i16::from_le_bytes([whole[44 + 2 * i], whole[45 + 2 * i]]),
            reference_ulaw(*byte),
            "sample {i}"
        );
    }
    for (start, end) in [
        (0u64, 1u64),
        (0, 43),
        (43, 44),
        (44, 45),
        (45, 46),
        (45, 1000),
        (100_001, 200_000),
        (whole.len() as u64 - 1, whole.len() as u64 - 1),
    ] {
        let (status, _, part) = get(&url, &[("range", &format!("bytes={start}-{end}"))]).await;
        assert_eq!(status, 206);
        assert_eq!(part, whole[start as usize..=end as usize], "{start}-{end}");
    }
    let _ = s.stop.send(true);
}

async fn download_peaks_and_two_step_delete(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    put_fixture(&t, "call.wav", "hunt-ed927e64.wav");
    let s = start_service_on(&t, &[], &url).await;
    scanned(&s, 1).await;
    grant_consent_to_all(&s).await;
    let id = all(&s, "").await[0]["id"].as_i64().expect("id");
    let (status, headers, body) =
        get(&format!("{}/api/recordings/{id}/download", s.base), &[]).await;
    assert_eq!(status, 200);
    let disposition = headers["content-disposition"].to_str().expect("header");
    assert!(
        disposition.starts_with("attachment; filename=\"")
            && disposition.ends_with(&format!("-{id}.wav\"")),
        "{disposition}"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(body.len() > 44);

    // Ogg Opus on request, ranges included.
    let (status, headers, ogg) = get(
        &format!("{}/api/recordings/{id}/audio?format=opus", s.base),
        &[],
    )
    .await;
    assert_eq!((status, &ogg[0..4]), (200, b"OggS".as_slice()));
    assert_eq!(headers["content-type"], "audio/ogg");
    assert!(
        ogg.len() * 4 < body.len(),
        "far smaller than the WAV: {} vs {}",
        ogg.len(),
        body.len()
    );
    let (status, _, head) = get(
        &format!("{}/api/recordings/{id}/audio?format=opus", s.base),
        &[("range", "bytes=28-35")],
    )
    .await;
    assert_eq!((status, head.as_slice()), (206, b"OpusHead".as_slice()));
    let (_, headers, _) = get(
        &format!("{}/api/recordings/{id}/download?format=opus", s.base),
        &[],
    )
    .await;
    assert!(headers["content-disposition"]
        .to_str()
        .unwrap_or("")
        .ends_with(".opus\""));
    let (status, body) = json(&format!("{}/api/recordings/{id}/audio?format=flac", s.base)).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("bad_request")));
    assert!(body["message"]
        .as_str()
        .unwrap_or("")
        .contains("wav, opus or mp3"));

    let (status, peaks) = json(&format!("{}/api/recordings/{id}/peaks?points=100", s.base)).await;
    assert_eq!(status, 200);
    let points = peaks["peaks"].as_array().expect("peaks");
    assert_eq!(points.len(), 100);
    assert!(
        points.iter().any(|p| p[1].as_i64().unwrap_or(0) > 1000),
        "the agent's voice shows"
    );
    let (status, _) = json(&format!("{}/api/recordings/{id}/peaks?points=0", s.base)).await;
    assert_eq!(status, 400);

    let client = common::authed();
    let first = client
        .delete(format!("{}/api/recordings/{id}", s.base))
        .send()
        .await
        .expect("delete");
    assert_eq!(first.status().as_u16(), 202);
    let first: Value = first.json().await.expect("json");
    assert_eq!(first["recording"]["name"], "call");
    assert!(
        t.recordings.join("call.wav").exists(),
        "nothing deleted before confirmation"
    );
    let wrong = client
        .delete(format!("{}/api/recordings/{id}?confirm=nope", s.base))
        .send()
        .await
        .expect("delete");
    assert_eq!(wrong.status().as_u16(), 400);
    let token = first["confirm_token"].as_str().expect("token");
    let done = client
        .delete(format!("{}/api/recordings/{id}?confirm={token}", s.base))
        .send()
        .await
        .expect("delete");
    assert_eq!(done.status().as_u16(), 200);
    let done: Value = done.json().await.expect("json");
    assert_eq!(done["status"], "deleted");
    assert!(done["deleted_at"].is_string());
    assert!(!t.recordings.join("call.wav").exists());
    let again = client
        .delete(format!("{}/api/recordings/{id}?confirm={token}", s.base))
        .send()
        .await
        .expect("delete");
    assert_eq!(again.status().as_u16(), 410);
    let (status, body) = json(&format!("{}/api/recordings/{id}/audio", s.base)).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("no_audio")));
    let _ = s.stop.send(true);
}

async fn a_tombstone_left_by_a_crash_mid_delete_is_finished_by_the_next_scan(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    put_fixture(&t, "call.wav", "queue-447a786b.wav");
    let s = start_service_on(&t, &[], &url).await;
    scanned(&s, 1).await;
    sqlx::query(
        "UPDATE recordings SET status = 'deleted', deleted_at_ms = 1 WHERE path = 'call.wav'",
    )
    .execute(&s.svc.db.pool)
    .await
    .expect("tombstone");
    let _ = s.stop.send(true);
    s.svc.join().await;
    assert!(t.recordings.join("call.wav").exists());
    let s = start_service_on(&t, &[], &url).await;
    scanned(&s, 1).await;
    assert!(
        !t.recordings.join("call.wav").exists(),
        "the deletion was completed"
    );
    assert_eq!(all(&s, "").await[0]["status"], "deleted");
    let _ = s.stop.send(true);
}

async fn paths_never_leave_the_recordings_folder(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let secret = t.dir.path().join("library.db-secret.wav");
    std::fs::copy(fixture("queue-447a786b.wav"), &secret).expect("copy");
    let s = start_service_on(&t, &[], &url).await;
    scanned(&s, 1).await;
    // A row of this node whose path escapes (as a tampered database would hold) is never
    // served.
    sqlx::query(
        "INSERT INTO recordings (path, node_id, name, format, status, size_bytes, mtime_ms, duration_ms, encoding, sample_rate, data_offset, data_len, started_at_ms, indexed_at_ms, consent) \
         VALUES ('../library.db-secret.wav', $1, 'x', 'wav', 'ready', 1, 1, 1, 'pcm16', 8000, 44, 100, 1, 1, 'granted')",
    )
    .bind(s.svc.indexer.node())
    .execute(&s.svc.db.pool)
    .await
    .expect("insert");
    let id = all(&s, "").await[0]["id"].as_i64().expect("id");
    let (status, _, _) = get(&format!("{}/api/recordings/{id}/audio", s.base), &[]).await;
    assert_eq!(status, 404);
    for path in ["..%2F..%2Fetc%2Fpasswd", "1%2F..%2F2", "-1", "99999"] {
        let (status, _, body) = get(&format!("{}/api/recordings/{path}/audio", s.base), &[]).await;
        assert_eq!(status, 404, "{path}: {}", String::from_utf8_lossy(&body));
    }
    let _ = s.stop.send(true);
}

async fn calls_recorded_by_the_flows_appear_with_their_metadata(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let flow = "[flow]\nnumbers = [\"100\"]\nstart = \"desk\"\n[nodes.desk]\ntype = \"transfer\"\ntarget = \"PJSIP/201\"\nrecord_call = true\n";
    let s = start_service_on(&t, &[("support.toml", flow)], &url).await;
    scanned(&s, 1).await;
    t.sim
        .place_inbound_call("100", "Alice Smith <5551001>", "talk")
        .expect("call");
    let url = format!("{}/api/recordings?caller=555", s.base);
    eventually("the live call listed as recording", async || {
        let (_, page) = json(&url).await;
        page["recordings"]
            .as_array()
            .is_some_and(|l| l.len() == 1 && l[0]["status"] == "recording")
    })
    .await;
    t.sim.advance(16.5);
    eventually("the call listed ready", async || {
        let (_, page) = json(&url).await;
        page["recordings"]
            .as_array()
            .is_some_and(|l| l.len() == 1 && l[0]["status"] == "ready")
    })
    .await;
    let (_, page) = json(&url).await;
    let r = &page["recordings"][0];
    assert_eq!(
        (
            r["caller"]["name"].as_str(),
            r["callee"].as_str(),
            r["node_type"].as_str()
        ),
        (Some("Alice Smith"), Some("PJSIP/201"), Some("transfer"))
    );
    assert_eq!(r["duration_seconds"].as_f64(), Some(16.5));
    assert_eq!(
        all(&s, "name=ali").await.len(),
        1,
        "a word of the caller name, any case"
    );
    assert_eq!(
        all(&s, "name=SMI").await.len(),
        1,
        "any word, not only the first"
    );
    assert_eq!(
        all(&s, "name=smith%20al").await.len(),
        1,
        "every word typed must match"
    );
    assert_eq!(
        all(&s, "name=lic").await.len(),
        0,
        "words are matched from their start"
    );
    let (status, _) = json(&format!("{}/api/recordings?name=%20%21", s.base)).await;
    assert_eq!(status, 400);
    assert_eq!(all(&s, "node_type=voicemail").await.len(), 0);
    wait_until("over", || t.sim.with_world(|w| w.counts()) == (0, 0, 0)).await;
    let _ = s.stop.send(true);
}

/// The flow decides a recording's project and privacy, and marks consent when the caller heard
/// a recording notice; the library applies them: a private call is its participants' only.
async fn flows_give_recordings_their_project_consent_and_privacy(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let flow = "[flow]\nnumbers = [\"100\"]\nstart = \"notice\"\nproject = \"board\"\nprivate = true\n\
        [nodes.notice]\ntype = \"play_audio\"\nmedia = [\"sound:hello-world\"]\nrecording_notice = true\nnext = \"desk\"\n\
        [nodes.desk]\ntype = \"transfer\"\ntarget = \"PJSIP/201\"\nrecord_call = true\n";
    let s = start_service_on(&t, &[("board.toml", flow)], &url).await;
    scanned(&s, 1).await;
    t.sim
        .place_inbound_call("100", "Alice Smith <5551001>", "talk")
        .expect("call");
    let mut row = None;
    for _ in 0..500 {
        t.sim.advance(0.1);
        let found: Option<(String, i64, String, Option<String>)> =
            sqlx::query_as("SELECT project, private, consent, participants FROM recordings")
                .fetch_optional(&s.svc.db.pool)
                .await
                .expect("query");
        if found.is_some() {
            row = found;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (project, private, consent, participants) = row.expect("the call was recorded");
    assert_eq!(
        (project.as_str(), private, consent.as_str()),
        ("board", 1, "granted")
    );
    assert_eq!(participants.as_deref(), Some("5551001,PJSIP/201"));
    // The admin of the tenant is not on the call: the recording is not theirs to see.
    assert_eq!(all(&s, "").await.len(), 0);
    let agent = common::user_token(
        &s.svc.db,
        "agent-201",
        "staff",
        "default",
        &["board"],
        Some("PJSIP/201"),
        &[ari_recorder::access::Scope::RecordingsRead],
    )
    .await;
    let page: Value = common::bearer(&agent)
        .get(format!("{}/api/recordings", s.base))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(
        page["recordings"].as_array().map(Vec::len),
        Some(1),
        "{page}"
    );
    assert_eq!(page["recordings"][0]["consent"], "granted");
    t.sim.advance(30.0);
    wait_until("over", || t.sim.with_world(|w| w.counts()) == (0, 0, 0)).await;
    let _ = s.stop.send(true);
}

/// A file re-indexed many times (as one being written is) keeps its id, and the next file gets
/// the next id: ids stay dense and stable.
async fn reindexing_keeps_ids_stable_and_dense(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let database = ari_recorder::db::Database::open(&url).await.expect("db");
    let indexer = ari_recorder::library::Indexer::new(
        database.clone(),
        t.recordings.clone(),
        Duration::from_secs(3),
    );
    let header = ari_recorder::audio::wav::header(0);
    for grown in 1..=4usize {
        let mut bytes = header.to_vec();
        bytes.extend(std::iter::repeat_n(0u8, grown * 1600));
        put(&t, "growing.wav", &bytes);
        set_mtime(
            &t.recordings.join("growing.wav"),
            SystemTime::now() - Duration::from_secs(3600 - grown as u64),
        )
        .expect("mtime");
        indexer.full_scan().await.expect("scan");
    }
    put_fixture(&t, "next.wav", "transfer-1a5138fb.wav");
    indexer.full_scan().await.expect("scan");
    let ids: Vec<(String, i64)> = sqlx::query_as("SELECT name, id FROM recordings ORDER BY id")
        .fetch_all(&database.pool)
        .await
        .expect("ids");
    let (first, second) = (ids[0].1, ids[1].1);
    assert_eq!(ids[0].0, "growing");
    assert_eq!(second, first + 1, "{ids:?}");
}

/// The list as CSV: every matching recording the caller may see, whatever the page size, the
/// same rows the list gives for the same filters; parameters the export does not take are named;
/// one audit event for the whole export.
async fn the_list_exports_as_csv_with_its_filters(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    for i in 0..7 {
        put_fixture(&t, &format!("q{i}.wav"), "queue-447a786b.wav");
    }
    put_fixture(&t, "long.wav", "transfer-1a5138fb.wav");
    put_fixture(&t, "vm.ulaw", "voicemail-b97ae5ca.ulaw");
    let s = start_service_on(&t, &[], &url).await;
    scanned(&s, 1).await;
    let audits_before = audit_events(&s, "export").await;
    for filter in ["", "format=wav", "sort=longest&min_duration=10"] {
        let (status, headers, body) = get(
            &format!("{}/api/recordings/export.csv?{filter}", s.base),
            &[],
        )
        .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
        assert!(headers["content-disposition"]
            .to_str()
            .unwrap_or_default()
            .starts_with("attachment"));
        let mut reader = csv::Reader::from_reader(body.as_slice());
        let columns = reader.headers().expect("header").clone();
        assert_eq!(&columns[0], "id");
        assert_eq!(&columns[1], "name");
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
        let listed = all(&s, filter).await;
        let exported: Vec<(String, String)> = rows
            .iter()
            .map(|r| (r[0].to_string(), r[1].to_string()))
            .collect();
        let expected: Vec<(String, String)> = listed
            .iter()
            .map(|r| {
                (
                    r["id"].to_string(),
                    r["name"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        assert_eq!(
            exported, expected,
            "{filter}: the list's rows, in its order"
        );
    }
    assert_eq!(
        audit_events(&s, "export").await,
        audits_before + 3,
        "one event an export"
    );
    for (query, param) in [
        ("group=call", "group"),
        ("limit=5", "limit"),
        ("status=great", "status"),
    ] {
        let (status, _, body) = get(
            &format!("{}/api/recordings/export.csv?{query}", s.base),
            &[],
        )
        .await;
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["message"].as_str().unwrap_or("").starts_with(param),
            "{query}: {body}"
        );
    }
    let _ = s.stop.send(true);
}

/// Selected recordings as one ZIP: each as its download would be (the mu-law voicemail as PCM
/// WAV), then a manifest whose SHA-256 matches each file's bytes in the archive; each audited
/// as a download; staff are refused the whole archive.
async fn selected_recordings_download_as_one_zip_with_a_manifest(db: Db) {
    use futures_util::io::AsyncReadExt as _;
    use sha2::Digest as _;
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    put_fixture(&t, "one.wav", "queue-447a786b.wav");
    put_fixture(&t, "two.wav", "transfer-1a5138fb.wav");
    put_fixture(&t, "vm.ulaw", "voicemail-b97ae5ca.ulaw");
    let s = start_service_on(&t, &[], &url).await;
    scanned(&s, 1).await;
    let ids: Vec<(i64, String)> = sqlx::query_as(
        "UPDATE recordings SET consent = 'granted' WHERE status = 'ready' RETURNING id, name",
    )
    .fetch_all(&s.svc.db.pool)
    .await
    .expect("consent");
    assert_eq!(ids.len(), 3, "{ids:?}");
    let list: Vec<String> = ids.iter().map(|(id, _)| id.to_string()).collect();
    let downloads_before = audit_events(&s, "download").await;
    // An id named twice is one file.
    let (status, headers, body) = get(
        &format!(
            "{}/api/recordings/export.zip?ids={},{}",
            s.base,
            list.join(","),
            list[0]
        ),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["content-type"], "application/zip");
    assert!(headers["content-disposition"]
        .to_str()
        .unwrap_or_default()
        .starts_with("attachment"));
    let zip = async_zip::base::read::mem::ZipFileReader::new(body)
        .await
        .expect("a readable ZIP");
    let mut files = std::collections::HashMap::new();
    for index in 0..zip.file().entries().len() {
        let name = zip.file().entries()[index]
            .filename()
            .as_str()
            .expect("name")
            .to_string();
        let mut bytes = Vec::new();
        zip.reader_with_entry(index)
            .await
            .expect("entry")
            .read_to_end(&mut bytes)
            .await
            .expect("read");
        files.insert(name, bytes);
    }
    assert_eq!(files.len(), 4, "{:?}", files.keys().collect::<Vec<_>>());
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).expect("manifest");
    let listed = manifest["recordings"].as_array().expect("recordings");
    assert_eq!(listed.len(), 3);
    for entry in listed {
        let file = entry["file"].as_str().expect("file");
        let bytes = &files[file];
        assert_eq!(entry["bytes"].as_u64(), Some(bytes.len() as u64));
        assert_eq!(
            entry["sha256"].as_str(),
            Some(hex::encode(sha2::Sha256::digest(bytes)).as_str()),
            "{file}"
        );
        assert_eq!(&bytes[0..4], b"RIFF", "{file} is a WAV");
        assert!(file.ends_with(".wav"), "{file}");
    }
    assert_eq!(
        audit_events(&s, "download").await,
        downloads_before + 3,
        "each recording audited as a download"
    );
    // Staff never download: the whole archive is refused, nothing streamed.
    let staff = common::bearer(
        &common::user_token(
            &s.svc.db,
            "reviewer",
            "staff",
            "default",
            &[],
            None,
            &[
                ari_recorder::access::Scope::RecordingsRead,
                ari_recorder::access::Scope::RecordingsDownload,
            ],
        )
        .await,
    );
    let refused = common::send(staff.get(format!(
        "{}/api/recordings/export.zip?ids={}",
        s.base, list[0]
    )))
    .await;
    assert_eq!(refused.status, 403, "{:?}", refused.json());
    for (query, param) in [("", "ids"), ("ids=x", "ids"), ("name=a", "name")] {
        let (status, _, body) = get(
            &format!("{}/api/recordings/export.zip?{query}", s.base),
            &[],
        )
        .await;
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["message"].as_str().unwrap_or("").starts_with(param),
            "{query}: {body}"
        );
    }
    let _ = s.stop.send(true);
}

/// The audit events of `action` so far.
async fn audit_events(s: &TestService, action: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events WHERE action = $1")
        .bind(action)
        .fetch_one(&s.svc.db.pool)
        .await
        .expect("count");
    n
}

on_both_databases!(
    selected_recordings_download_as_one_zip_with_a_manifest,
    the_list_exports_as_csv_with_its_filters,
    reindexing_keeps_ids_stable_and_dense,
    flows_give_recordings_their_project_consent_and_privacy,
    scan_indexes_real_and_bad_files_with_status_and_reason,
    reconcile_after_files_vanish_or_appear_while_stopped_and_the_watcher_keeps_up,
    list_pages_with_keyset_cursors_and_filters,
    audio_ranges_are_exact_on_stored_and_transcoded_audio,
    download_peaks_and_two_step_delete,
    a_tombstone_left_by_a_crash_mid_delete_is_finished_by_the_next_scan,
    paths_never_leave_the_recordings_folder,
    calls_recorded_by_the_flows_appear_with_their_metadata,
);
