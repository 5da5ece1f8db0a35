//! Issue 13: one recording per call. A call that passes through several recorded segments is
//! served as one WAV on the call's timeline (Asterisk's clock), built once and reused, rebuilt
//! when a segment changes, refused while the call goes on, and guarded like its segments.

mod common;

use ari_recorder::access::Scope;
use ari_recorder::sim::{Script, Step};
use common::{
    bearer, bootstrap_admin, caller, eventually, metrics_text, quiet, record_requests, send,
    start_service, start_sim, stop, user_token, wait_rows, wait_until, TestSim,
};

/// Two agents one after the other: the first hangs up and the caller goes on to the second.
const TWO_AGENTS: &str = r#"
[flow]
numbers = ["100"]
start = "desk"

[nodes.desk]
type = "transfer"
target = "PJSIP/agent-one"
record_call = true
on_agent_hangup = "second"

[nodes.second]
type = "transfer"
target = "PJSIP/agent-two"
record_call = true
"#;

fn quiet_agent(t: &TestSim, endpoint: &str, seconds: f64) {
    t.sim.define_party(
        endpoint,
        Script::new(
            "agent",
            vec![Step::Answer, Step::Wait(seconds), Step::Hangup],
        ),
    );
}

/// Index of the first sample at or after `from` louder than a whisper.
fn first_loud(samples: &[i16], from: usize) -> Option<usize> {
    samples[from..]
        .iter()
        .position(|s| s.unsigned_abs() > 1000)
        .map(|i| i + from)
}

fn wav_samples(bytes: &[u8]) -> Vec<i16> {
    bytes[44..]
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

async fn ready_segments(s: &common::TestService, n: i64) {
    eventually(&format!("{n} segments ready"), async || {
        let (ready,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM recordings WHERE status = 'ready'")
                .fetch_one(&s.svc.db.pool)
                .await
                .expect("count");
        ready == n
    })
    .await;
}

/// After a call: everything torn down, its `n` segments finished, indexed and playable (the
/// caller's consent recorded, as an admin would).
async fn settle_with_consent(t: &TestSim, s: &common::TestService, n: usize) {
    wait_until("call over", || quiet(t)).await;
    wait_rows(&s.svc.db, "segments finished", n, |r| r.state == "done").await;
    ready_segments(s, n as i64).await;
    sqlx::query("UPDATE recordings SET consent = 'granted'")
        .execute(&s.svc.db.pool)
        .await
        .expect("consent");
}

/// The call's id: its caller's channel in the app, once its first row reached the library
/// (the library's writer commits it beside the record request, not before it).
async fn call_id(s: &common::TestService) -> String {
    let mut id = None;
    eventually("a recorded call in the library", async || {
        id = common::recording_rows(&s.svc.db)
            .await
            .into_iter()
            .next()
            .map(|row| row.call_id);
        id.is_some()
    })
    .await;
    id.unwrap_or_default()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(-1.0)
}

#[tokio::test]
async fn a_call_through_two_agents_is_one_recording_with_the_callers_tones_in_place() {
    let steps = common::Steps::new(
        "a_call_through_two_agents_is_one_recording_with_the_callers_tones_in_place",
    );
    let t = start_sim(0.0).await;
    let s = start_service(&t, &[("desk.toml", TWO_AGENTS)]).await;
    let admin = bearer(&bootstrap_admin(&s.svc.db).await);
    quiet_agent(&t, "PJSIP/agent-one", 3.0);
    quiet_agent(&t, "PJSIP/agent-two", 3.0);
    steps.step("Two beeps 3.75 s apart on the caller's own clock: one in each segment.");
    caller(
        &t,
        "beeper",
        vec![
            Step::Answer,
            Step::Wait(1.0),
            Step::Say("beep".into()),
            Step::Wait(3.5),
            Step::Say("beep".into()),
            Step::Wait(30.0),
            Step::Hangup,
        ],
    );
    t.sim
        .place_inbound_call("100", "Bea <5552001>", "beeper")
        .expect("call");
    wait_until("first segment recording", || record_requests(&t) == 1).await;
    let call = format!("{}/api/calls/{}", s.base, call_id(&s).await);

    steps.step("While the call goes on there is no call recording yet: come back later.");
    let early = send(admin.get(format!("{call}/audio"))).await;
    assert_eq!((early.status, early.error().as_str()), (409, "in_progress"));
    assert_eq!(
        early
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );

    steps.step("The first agent hangs up at 3 s; the caller is put through to the second.");
    t.sim.advance(3.1);
    wait_until("second segment recording", || {
        record_requests(&t) == 2 && t.sim.with_world(|w| w.counts().2) == 1
    })
    .await;
    t.sim.advance(4.0);
    settle_with_consent(&t, &s, 2).await;

    let meta = send(admin.get(&call)).await;
    assert_eq!(meta.status, 200, "{:?}", meta.json());
    let meta = meta.json();
    assert_eq!(meta["segment_count"], 2, "{meta}");
    assert_eq!(meta["separation"], "per_call", "the default");
    let segments = meta["segments"].as_array().expect("segments");
    assert_eq!(segments[0]["node"], "desk");
    assert_eq!(segments[1]["node"], "second");
    assert_eq!(segments[0]["offset_seconds"], 0.0);
    steps.step(
        "The second segment began when the first agent had gone, 3.1 s of Asterisk's clock later.",
    );
    let offset = segments[1]["offset_seconds"].as_f64().expect("offset");
    assert!((offset - 3.1).abs() <= 0.02, "offset {offset}");
    assert_eq!(meta["access"]["play"]["allowed"], true, "{meta}");

    let audio = send(admin.get(format!("{call}/audio"))).await;
    assert_eq!(audio.status, 200, "{:?}", audio.json());
    assert_eq!(
        audio
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("audio/wav")
    );
    let samples = wav_samples(&audio.body);
    let second_len = segments[1]["duration_seconds"].as_f64().expect("duration");
    let expected = (offset + second_len) * 8000.0;
    assert!(
        (samples.len() as f64 - expected).abs() <= 160.0,
        "{} samples, expected {expected}",
        samples.len()
    );
    let beep1 = first_loud(&samples, 0).expect("first beep");
    let beep2 = first_loud(&samples, beep1 + 4000).expect("second beep");
    assert!(
        (beep1 as i64 - 8000).abs() <= 160,
        "first beep at sample {beep1}"
    );
    steps.step(
        "3.75 s apart on the caller's clock, so 30,000 samples apart in the call (+/- 20 ms).",
    );
    assert!(
        (beep2 as i64 - beep1 as i64 - 30_000).abs() <= 160,
        "beeps {beep1} and {beep2}"
    );

    steps.step("Exact ranges, as for a recording's own audio.");
    let part = send(
        admin
            .get(format!("{call}/audio"))
            .header("Range", "bytes=44-1043"),
    )
    .await;
    assert_eq!(part.status, 206);
    assert_eq!(part.body, audio.body[44..1044]);

    steps.step("Later requests (the range above, this one) are served from the assembled file.");
    let again = send(admin.get(format!("{call}/audio"))).await;
    assert_eq!(again.body, audio.body);
    let metrics = metrics_text(&s.base).await;
    assert_eq!(metric(&metrics, "call_audio_builds_total"), 1.0);
    assert_eq!(metric(&metrics, "call_audio_cache_hits_total"), 2.0);

    steps.step(
        "A segment changes on disk: the next request builds the call again, with the new audio.",
    );
    let (name, old_sha): (String, String) =
        sqlx::query_as("SELECT path, sha256 FROM recordings WHERE node = 'desk'")
            .fetch_one(&s.svc.db.pool)
            .await
            .expect("first segment");
    let file = t.recordings.join(&name);
    let mut bytes = std::fs::read(&file).expect("segment");
    bytes[44..].fill(0);
    std::fs::write(&file, &bytes).expect("rewrite");
    eventually("the changed segment indexed again", async || {
        let (sha,): (Option<String>,) =
            sqlx::query_as("SELECT sha256 FROM recordings WHERE node = 'desk'")
                .fetch_one(&s.svc.db.pool)
                .await
                .expect("sha");
        sha.as_deref().is_some_and(|s| s != old_sha)
    })
    .await;
    let rebuilt = send(admin.get(format!("{call}/audio"))).await;
    let rebuilt = wav_samples(&rebuilt.body);
    assert_eq!(rebuilt.len(), samples.len());
    let beep = first_loud(&rebuilt, 0).expect("the second beep is left");
    assert_eq!(beep, beep2, "the first segment is silent now");
    let metrics = metrics_text(&s.base).await;
    assert_eq!(metric(&metrics, "call_audio_builds_total"), 2.0);

    steps.step("Audited as plays of each segment.");
    let (plays,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM audit_events WHERE action = 'play' AND detail LIKE 'call %' AND outcome = 'allowed'",
    )
    .fetch_one(&s.svc.db.pool)
    .await
    .expect("audit");
    assert_eq!(plays, 2 * 4, "two segments for each of four answers");
    stop(s).await;
}

/// A queue's agent hangs up, the caller goes to a busy desk and leaves a voicemail: the WAV of
/// the queue segment and the mu-law message are one recording, the message at its offset.
#[tokio::test]
async fn queue_then_voicemail_assemble_wav_and_ulaw_on_one_timeline() {
    let t = start_sim(0.0).await;
    let flow = r#"
[flow]
numbers = ["200"]
start = "q"

[nodes.q]
type = "queue"
agents = ["PJSIP/agent-one"]
record_call = true
on_agent_hangup = "desk"

[nodes.desk]
type = "transfer"
target = "PJSIP/busy"
record_call = true
on_failure = "vm"

[nodes.vm]
type = "voicemail"
mailbox = "sales"
beep = false
max_duration = 60
max_silence = 30
"#;
    let s = start_service(&t, &[("sales.toml", flow)]).await;
    let admin = bearer(&bootstrap_admin(&s.svc.db).await);
    quiet_agent(&t, "PJSIP/agent-one", 2.0);
    caller(
        &t,
        "talker",
        vec![Step::Answer, Step::Talk(8.0), Step::Hangup],
    );
    t.sim
        .place_inbound_call("200", "Vic <5552002>", "talker")
        .expect("call");
    wait_until("queue segment recording", || record_requests(&t) == 1).await;
    t.sim.advance(2.1);
    wait_until("voicemail recording", || {
        record_requests(&t) == 2 && t.sim.with_world(|w| w.counts().2) == 1
    })
    .await;
    t.sim.advance(8.0);
    settle_with_consent(&t, &s, 2).await;
    let call = format!("{}/api/calls/{}", s.base, call_id(&s).await);
    let meta = send(admin.get(&call)).await.json();
    let segments = meta["segments"].as_array().cloned().expect("segments");
    assert_eq!(
        segments
            .iter()
            .map(|s| s["format"].clone())
            .collect::<Vec<_>>(),
        vec!["wav", "ulaw"],
        "{meta}"
    );
    let offset = segments[1]["offset_seconds"].as_f64().expect("offset");
    let audio = send(admin.get(format!("{call}/audio"))).await;
    assert_eq!(audio.status, 200, "{:?}", audio.json());
    let samples = wav_samples(&audio.body);
    // The message, decoded, lies exactly at its offset.
    let (path,): (String,) = sqlx::query_as("SELECT path FROM recordings WHERE format = 'ulaw'")
        .fetch_one(&s.svc.db.pool)
        .await
        .expect("voicemail");
    let message: Vec<i16> = std::fs::read(t.recordings.join(path))
        .expect("message")
        .into_iter()
        .map(ari_recorder::audio::g711::decode_ulaw)
        .collect();
    let at = (offset * 8000.0).round() as usize;
    assert_eq!(samples.len(), at + message.len());
    assert_eq!(&samples[at..], &message[..]);
    stop(s).await;
}

/// Call audio is guarded like its segments: another tenant does not see the call, staff (who
/// never download) may not download it, and a refusal is audited.
#[tokio::test]
async fn call_audio_follows_the_segments_access_rules() {
    let t = start_sim(0.0).await;
    let s = start_service(&t, &[("desk.toml", TWO_AGENTS)]).await;
    bootstrap_admin(&s.svc.db).await;
    quiet_agent(&t, "PJSIP/agent-one", 1.0);
    quiet_agent(&t, "PJSIP/agent-two", 1.0);
    t.sim
        .place_inbound_call("100", "Al <5552003>", "talk")
        .expect("call");
    wait_until("first segment", || record_requests(&t) == 1).await;
    t.sim.advance(1.1);
    wait_until("second segment", || record_requests(&t) == 2).await;
    t.sim.advance(2.0);
    settle_with_consent(&t, &s, 2).await;
    let call = format!("{}/api/calls/{}", s.base, call_id(&s).await);
    let staff = bearer(
        &user_token(
            &s.svc.db,
            "sam",
            "staff",
            "default",
            &[],
            None,
            &[
                Scope::RecordingsRead,
                Scope::RecordingsPlay,
                Scope::RecordingsDownload,
            ],
        )
        .await,
    );
    let outsider = common::tenant_admin(&s.svc.db, "other").await;
    let shown = send(staff.get(&call)).await;
    assert_eq!(shown.status, 200);
    assert_eq!(shown.json()["access"]["play"]["allowed"], true);
    assert_eq!(
        shown.json()["access"]["download"]["reason"],
        "role_restriction",
        "staff never download"
    );
    assert_eq!(send(staff.get(format!("{call}/audio"))).await.status, 200);
    let refused = send(staff.get(format!("{call}/download"))).await;
    assert_eq!(
        (refused.status, refused.error().as_str()),
        (403, "role_restriction")
    );
    for path in ["", "/audio", "/download", "/peaks"] {
        let hidden = send(outsider.get(format!("{call}{path}"))).await;
        assert_eq!(
            (hidden.status, hidden.error().as_str()),
            (404, "not_found"),
            "{path}"
        );
    }
    let (refusals,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM audit_events WHERE action = 'download' AND outcome = 'role_restriction'",
    )
    .fetch_one(&s.svc.db.pool)
    .await
    .expect("audit");
    assert_eq!(refusals, 1);

    // A download link to the whole call follows the same rules; without a bucket it is the
    // service's own single-use link, signed for this call only.
    let staff_link = send(staff.post(format!("{call}/download-url"))).await;
    assert_eq!(
        (staff_link.status, staff_link.error().as_str()),
        (403, "role_restriction")
    );
    let hidden = send(outsider.post(format!("{call}/download-url"))).await;
    assert_eq!((hidden.status, hidden.error().as_str()), (404, "not_found"));
    let admin = bearer(&s.token);
    let made = send(admin.post(format!("{call}/download-url?expires_in=60"))).await;
    assert_eq!(made.status, 201, "{}", made.error());
    let link = made.json();
    assert_eq!(
        (&link["single_use"], &link["presigned"], &link["stored"]),
        (&true.into(), &false.into(), &false.into()),
        "{link}"
    );
    assert_eq!(link["expires_in"], 60);
    let url = format!("{}{}", s.base, link["url"].as_str().expect("url"));
    let anonymous = reqwest::Client::new();
    let whole = send(admin.get(format!("{call}/download"))).await;
    let got = send(anonymous.get(&url)).await;
    assert_eq!(got.status, 200, "{}", got.error());
    assert_eq!(
        got.body, whole.body,
        "the link gives the call as /download does"
    );
    assert!(got.headers["content-disposition"]
        .to_str()
        .expect("ascii")
        .starts_with("attachment"));
    let again = send(anonymous.get(&url)).await;
    assert_eq!((again.status, again.error().as_str()), (403, "link_used"));
    let fresh = send(admin.post(format!("{call}/download-url")))
        .await
        .json();
    let query = fresh["url"]
        .as_str()
        .and_then(|u| u.split_once('?'))
        .map(|(_, q)| q.to_string())
        .expect("query");
    let (first_id,): (i64,) = sqlx::query_as("SELECT MIN(id) FROM recordings")
        .fetch_one(&s.svc.db.pool)
        .await
        .expect("a recording");
    for elsewhere in [
        format!("{}/api/calls/another-call/download?{query}", s.base),
        format!("{}/api/recordings/{first_id}/download?{query}", s.base),
    ] {
        let tampered = send(anonymous.get(&elsewhere)).await;
        assert_eq!(
            (tampered.status, tampered.error().as_str()),
            (403, "link_tampered"),
            "{elsewhere}"
        );
    }
    let used = format!("{}{}", s.base, fresh["url"].as_str().expect("url"));
    assert_eq!(
        send(anonymous.get(&used)).await.status,
        200,
        "tampering spent nothing"
    );
    stop(s).await;
}

/// Dual-channel: a node with `channels = "dual"` records each party through a `spy=in` snoop
/// beside the bridge; the recording is then also served in stereo, the caller's beep on the
/// left only and the agent's on the right only, with a waveform per channel. The parties'
/// files are never listed as recordings of their own, and go when the recording is deleted.
#[tokio::test]
async fn a_dual_channel_call_is_served_in_stereo_caller_left_agent_right() {
    let steps =
        common::Steps::new("a_dual_channel_call_is_served_in_stereo_caller_left_agent_right");
    let t = start_sim(0.0).await;
    let flow = r#"
[flow]
numbers = ["300"]
start = "desk"

[nodes.desk]
type = "transfer"
target = "PJSIP/agent-one"
record_call = true
channels = "dual"
"#;
    let s = start_service(&t, &[("dual.toml", flow)]).await;
    let admin = bearer(&bootstrap_admin(&s.svc.db).await);
    t.sim.define_party(
        "PJSIP/agent-one",
        Script::new(
            "agent",
            vec![
                Step::Answer,
                Step::Wait(3.0),
                Step::Say("beep".into()),
                Step::Wait(1.0),
                Step::Hangup,
            ],
        ),
    );
    caller(
        &t,
        "beeper",
        vec![
            Step::Answer,
            Step::Wait(1.0),
            Step::Say("beep".into()),
            Step::Wait(30.0),
            Step::Hangup,
        ],
    );
    t.sim
        .place_inbound_call("300", "Dee <5552004>", "beeper")
        .expect("call");
    steps.step("The bridge, then each party through its snoop.");
    wait_until("three recordings", || {
        record_requests(&t) == 3 && t.sim.with_world(|w| w.counts().2) == 3
    })
    .await;
    let snoops: Vec<String> = t
        .sim
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/snoop"))
        .map(|r| r.query.clone())
        .collect();
    assert_eq!(snoops.len(), 2, "{snoops:?}");
    assert!(
        snoops
            .iter()
            .all(|q| q.contains("spy=in") && !q.contains("snoopId")),
        "{snoops:?}"
    );
    t.sim.advance(5.0);
    settle_with_consent(&t, &s, 1).await;
    let list = send(admin.get(format!("{}/api/recordings", s.base)))
        .await
        .json();
    let rows = list["recordings"].as_array().cloned().expect("rows");
    assert_eq!(
        rows.len(),
        1,
        "the parties' own files are not recordings: {list}"
    );
    let id = rows[0]["id"].as_i64().expect("id");
    let base = format!("{}/api/recordings/{id}", s.base);
    assert_eq!(send(admin.get(&base)).await.json()["dual_channel"], true);

    let stereo = send(admin.get(format!("{base}/audio?channels=dual"))).await;
    assert_eq!(stereo.status, 200, "{:?}", stereo.json());
    let mut reader = hound::WavReader::new(std::io::Cursor::new(stereo.body.clone())).expect("wav");
    assert_eq!(reader.spec().channels, 2);
    let samples: Vec<i16> = reader
        .samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect();
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
    let caller_beep = first_loud(&left, 0).expect("the caller's beep, left");
    let agent_beep = first_loud(&right, 0).expect("the agent's beep, right");
    assert!(
        (caller_beep as i64 - 8000).abs() <= 160,
        "caller at {caller_beep}"
    );
    assert!(
        (agent_beep as i64 - 24_000).abs() <= 160,
        "agent at {agent_beep}"
    );
    steps.step("Each side holds its party only.");
    assert!(right[caller_beep..caller_beep + 1600]
        .iter()
        .all(|s| *s == 0));
    assert!(left[agent_beep..agent_beep + 1600].iter().all(|s| *s == 0));
    steps.step("The mix (the default) holds both.");
    let mixed = wav_samples(&send(admin.get(format!("{base}/audio"))).await.body);
    assert!(first_loud(&mixed, 0).is_some_and(|at| (at as i64 - 8000).abs() <= 160));
    assert!(first_loud(&mixed, 16_000).is_some_and(|at| (at as i64 - 24_000).abs() <= 160));

    let peaks = send(admin.get(format!("{base}/peaks?channels=dual&points=100"))).await;
    let peaks = peaks.json();
    assert_eq!(
        peaks["channels"]["caller"].as_array().map(Vec::len),
        Some(100)
    );
    assert_eq!(
        peaks["channels"]["agent"].as_array().map(Vec::len),
        Some(100)
    );
    let download = send(admin.get(format!("{base}/download?channels=dual"))).await;
    assert_eq!(download.status, 200);
    let disposition = download
        .headers
        .get("content-disposition")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(
        disposition.starts_with("attachment") && disposition.contains("-stereo.wav"),
        "{disposition}"
    );
    let wrong = send(admin.get(format!("{base}/audio?channels=quad"))).await;
    assert_eq!((wrong.status, wrong.error().as_str()), (400, "bad_request"));

    steps.step("Deleting the recording removes each party's file too.");
    let parties = t.recordings.join(".channels");
    assert_eq!(std::fs::read_dir(&parties).expect("parties").count(), 2);
    let step = send(admin.delete(&base)).await.json();
    let token = step["confirm_token"].as_str().expect("token").to_string();
    let deleted = send(admin.delete(format!("{base}?confirm={token}"))).await;
    assert_eq!(deleted.status, 200);
    assert_eq!(std::fs::read_dir(&parties).expect("parties").count(), 0);
    stop(s).await;
}

/// Issue 12: a node with `pause_recording = true` (a payment desk) has its segment redacted
/// from its first moment to its last, stored as a stretch by the node; the segments before and
/// after it are recorded as usual.
#[tokio::test]
async fn a_payment_desk_with_pause_recording_is_silent_in_the_call() {
    let t = start_sim(0.0).await;
    let flow = r#"
[flow]
numbers = ["600"]
start = "desk"

[nodes.desk]
type = "transfer"
target = "PJSIP/agent-one"
record_call = true
on_agent_hangup = "payment"

[nodes.payment]
type = "transfer"
target = "PJSIP/agent-two"
record_call = true
pause_recording = true
"#;
    let s = start_service(&t, &[("billing.toml", flow)]).await;
    let admin = bearer(&bootstrap_admin(&s.svc.db).await);
    for agent in ["PJSIP/agent-one", "PJSIP/agent-two"] {
        t.sim.define_party(
            agent,
            Script::new(
                "agent",
                vec![
                    Step::Answer,
                    Step::Say("beep".into()),
                    Step::Wait(2.0),
                    Step::Hangup,
                ],
            ),
        );
    }
    t.sim
        .place_inbound_call("600", "Pat <5552005>", "silent")
        .expect("call");
    wait_until("the desk recording", || record_requests(&t) == 1).await;
    t.sim.advance(2.5);
    wait_until("the payment desk recording, muted", || {
        record_requests(&t) == 2
            && s.svc
                .flows
                .live_calls()
                .first()
                .is_some_and(|c| c.recording_state == Some("muted"))
    })
    .await;
    t.sim.advance(3.0);
    settle_with_consent(&t, &s, 2).await;
    let ids: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, node FROM recordings ORDER BY started_at_ms")
            .fetch_all(&s.svc.db.pool)
            .await
            .expect("ids");
    let base = |id: i64| format!("{}/api/recordings/{id}", s.base);
    let desk = wav_samples(
        &send(admin.get(format!("{}/audio", base(ids[0].0))))
            .await
            .body,
    );
    assert!(
        first_loud(&desk, 0).is_some(),
        "the desk's beep is recorded"
    );
    let payment = wav_samples(
        &send(admin.get(format!("{}/audio", base(ids[1].0))))
            .await
            .body,
    );
    assert!(
        !payment.is_empty() && payment.iter().all(|s| *s == 0),
        "the payment desk is silence"
    );
    let redactions = send(admin.get(base(ids[1].0))).await.json()["redactions"].clone();
    assert_eq!(redactions[0]["by"], "node:payment", "{redactions}");
    assert_eq!(redactions[0]["mode"], "mute");
    assert_eq!(redactions[0]["from_seconds"], 0.0, "{redactions}");
    // The call shows each segment's stretches too (the page places them on the call).
    let call = send(admin.get(format!("{}/api/calls/{}", s.base, call_id(&s).await)))
        .await
        .json();
    assert_eq!(
        call["segments"][1]["redactions"][0]["by"], "node:payment",
        "{call}"
    );
    assert_eq!(call["segments"][0]["redactions"], serde_json::json!([]));
    stop(s).await;
}
