//! Transcripts made after the call: the queue, the offline engine (Debian's pocketsphinx, which
//! `scripts/test.sh` installs) on real speech (assets/speech, with its text), a call's
//! parties transcribed one by one, flows that opt out, transcripts attached by hand left alone,
//! a job a killed instance held finished once, and the OpenAI-compatible engine against a
//! server that implements that API and recognises the audio itself
//! (tests/support/openai_transcriptions.py).

#[macro_use]
mod common;

use std::path::Path;
use std::sync::Arc;

use ari_recorder::sim::{Script, Step};
use common::{
    bearer, caller, database_url, eventually, record_requests, send, start_service_with, start_sim,
    wait_until, Db, TestService, TestSim,
};

const NEEDS: &str =
    "needs pocketsphinx and pocketsphinx-en-us: scripts/test.sh installs them and runs it";

/// The engine's program and model, or a failure that names them (these tests are ignored
/// unless run through scripts/test.sh, which installs them).
fn pocketsphinx_here() {
    assert!(
        ari_recorder::config::transcription::pocketsphinx_installed(
            Path::new("pocketsphinx_continuous"),
            Path::new("/usr/share/pocketsphinx/model/en-us"),
        ),
        "{NEEDS}"
    );
}

/// A fixture's speech: its 8 kHz samples and the sentence said.
fn speech(name: &str) -> (Arc<[i16]>, String) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/speech");
    let mut reader = hound::WavReader::open(dir.join(format!("{name}.wav"))).expect("speech");
    let samples: Vec<i16> = reader
        .samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect();
    let text = std::fs::read_to_string(dir.join(format!("{name}.txt"))).expect("text");
    (samples.into(), text.trim().to_string())
}

/// Words, lower-cased, without punctuation.
fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric() || *c == '\'')
                .collect::<String>()
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Word error rate of `heard` against `said`: edits (Levenshtein over words) per word said.
fn word_error_rate(said: &str, heard: &str) -> f64 {
    let (a, b) = (words(said), words(heard));
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, wa) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, wb) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = (prev + usize::from(wa != wb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            prev = here;
        }
    }
    row[b.len()] as f64 / a.len().max(1) as f64
}

async fn start(t: &TestSim, flows: &[(&str, &str)], settings: &[(&str, &str)]) -> TestService {
    let url = format!("sqlite://{}/library.db?mode=rwc", t.dir.path().display());
    start_service_with(t, flows, &url, settings).await
}

/// The transcript of recording `id` through the API, once there is one.
async fn transcript(s: &TestService, id: i64) -> serde_json::Value {
    sqlx::query("UPDATE recordings SET consent = 'granted' WHERE id = $1")
        .bind(id)
        .execute(&s.svc.db.pool)
        .await
        .expect("consent");
    let admin = bearer(&s.token);
    let url = format!("{}/api/recordings/{id}/transcript", s.base);
    let mut found = serde_json::Value::Null;
    eventually("a transcript", async || {
        let answer = send(admin.get(&url)).await;
        if answer.status == 200 {
            found = answer.json();
        }
        answer.status == 200
    })
    .await;
    found
}

async fn job_state(s: &TestService, id: i64) -> Option<(String, Option<String>)> {
    ari_recorder::transcription::queue::state_of(&s.svc.db, id)
        .await
        .expect("job")
}

async fn only_recording(s: &TestService) -> i64 {
    let mut id = 0;
    eventually("one recording ready", async || {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT id FROM recordings WHERE status = 'ready' LIMIT 1")
                .fetch_optional(&s.svc.db.pool)
                .await
                .expect("row");
        id = row.map_or(0, |(id,)| id);
        id != 0
    })
    .await;
    sqlx::query("UPDATE recordings SET consent = 'granted'")
        .execute(&s.svc.db.pool)
        .await
        .expect("consent");
    id
}

fn cue_text(cues: &serde_json::Value, speaker: Option<&str>) -> String {
    cues.as_array()
        .expect("cues")
        .iter()
        .filter(|c| speaker.is_none_or(|s| c["speaker"].as_str().is_some_and(|x| x.starts_with(s))))
        .filter_map(|c| c["text"].as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

const DUAL: &str = r#"
[flow]
numbers = ["300"]
start = "desk"

[nodes.desk]
type = "transfer"
target = "PJSIP/agent-one"
record_call = true
channels = "dual"
"#;

/// A recorded call through the simulator, each party saying a known sentence: the recording is
/// transcribed party by party by the offline engine, each line carrying who said it, with the
/// words it hears (the bound of the word error rate is what this engine gets on this 8 kHz
/// speech, measured: docs/library.md, Transcripts).
#[tokio::test]
#[ignore = "needs pocketsphinx and pocketsphinx-en-us: scripts/test.sh installs them and runs it"]
async fn a_call_is_transcribed_party_by_party() {
    pocketsphinx_here();
    let t = start_sim(0.0).await;
    let s = start(
        &t,
        &[("dual.toml", DUAL)],
        &[("TRANSCRIPTION_ENGINE", "pocketsphinx")],
    )
    .await;
    let (caller_speech, caller_said) = speech("caller");
    let (agent_speech, agent_said) = speech("agent");
    t.sim.define_party(
        "PJSIP/agent-one",
        Script::new(
            "agent",
            vec![
                Step::Answer,
                Step::Wait(8.0),
                Step::Speak(agent_speech),
                Step::Wait(1.0),
                Step::Hangup,
            ],
        ),
    );
    caller(
        &t,
        "speaker",
        vec![
            Step::Answer,
            Step::Wait(1.0),
            Step::Speak(caller_speech),
            Step::Wait(30.0),
            Step::Hangup,
        ],
    );
    t.sim
        .place_inbound_call("300", "Dee <5552004>", "speaker")
        .expect("call");
    wait_until("the call recorded", || {
        t.sim.with_world(|w| w.counts().2) == 3
    })
    .await;
    t.sim.advance(15.0);
    let id = only_recording(&s).await;
    let found = transcript(&s, id).await;
    assert_eq!(found["source"], "pocketsphinx", "{found}");
    let cues = &found["cues"];
    let speakers: std::collections::BTreeSet<&str> = cues
        .as_array()
        .expect("cues")
        .iter()
        .filter_map(|c| c["speaker"].as_str())
        .collect();
    assert_eq!(
        speakers.into_iter().collect::<Vec<_>>(),
        ["Agent (PJSIP/agent-one)", "Caller (Dee)"],
        "{found}"
    );
    let heard_caller = cue_text(cues, Some("Caller"));
    let heard_agent = cue_text(cues, Some("Agent"));
    let (caller_wer, agent_wer) = (
        word_error_rate(&caller_said, &heard_caller),
        word_error_rate(&agent_said, &heard_agent),
    );
    println!("caller heard: {heard_caller:?} (WER {caller_wer:.2})");
    println!("agent heard: {heard_agent:?} (WER {agent_wer:.2})");
    for word in ["delivery", "damaged", "refund"] {
        assert!(
            words(&heard_caller).contains(&word.to_string()),
            "{word} in {heard_caller:?}"
        );
    }
    assert!(
        caller_wer <= 0.7,
        "caller WER {caller_wer:.2}: {heard_caller:?}"
    );
    assert!(
        agent_wer <= 0.9,
        "agent WER {agent_wer:.2}: {heard_agent:?}"
    );
    // The caller's words come while the caller speaks (1 s to 6 s into the call), the agent's
    // after 8 s: the lines keep the recording's time.
    for cue in cues.as_array().expect("cues") {
        let start = cue["start"].as_f64().expect("start");
        if cue["speaker"]
            .as_str()
            .is_some_and(|s| s.starts_with("Caller"))
        {
            assert!(start < 7.0, "{cue}");
        } else {
            assert!(start >= 7.5, "{cue}");
        }
    }
    assert_eq!(
        job_state(&s, id).await.map(|(state, _)| state).as_deref(),
        Some("done")
    );
    // Talk-time, from each party's audio: the caller's 5.1 s sentence and the agent's 3.6 s
    // one (each held 0.3 s past its last word), never at once, a silence between them.
    let admin = bearer(&s.token);
    let shown = send(admin.get(format!("{}/api/recordings/{id}", s.base)))
        .await
        .json();
    let talk = &shown["insights"];
    let seconds = |key: &str| talk[key].as_f64().unwrap_or(-1.0);
    assert!(
        (4.9..=5.8).contains(&seconds("caller_talk_seconds")),
        "{talk}"
    );
    assert!(
        (3.3..=4.4).contains(&seconds("agent_talk_seconds")),
        "{talk}"
    );
    assert_eq!(talk["crosstalk_count"], 0, "{talk}");
    assert!(seconds("longest_silence_seconds") >= 1.0, "{talk}");
    let share = talk["agent_share_percent"].as_i64().expect("share");
    assert!((35..=48).contains(&share), "{talk}");
    let listed = |query: String| {
        let admin = admin.clone();
        let base = s.base.clone();
        async move {
            let page = send(admin.get(format!("{base}/api/recordings?{query}"))).await;
            assert_eq!(page.status, 200, "{}", page.error());
            page.json()["recordings"].as_array().map_or(0, Vec::len)
        }
    };
    assert_eq!(listed(format!("min_agent_share={}", share)).await, 1);
    assert_eq!(listed(format!("min_agent_share={}", share + 1)).await, 0);
    assert_eq!(listed("min_silence=1".into()).await, 1);
    assert_eq!(listed("min_silence=60".into()).await, 0);
    let ready = send(reqwest::Client::new().get(format!("{}/readyz", s.base)))
        .await
        .json();
    assert_eq!(ready["transcription"]["engine"], "pocketsphinx");
    assert_eq!(ready["transcription"]["done"], 1);
    common::stop(s).await;
}

/// A flow of two desks: the caller speaks while the second is answered. With that desk
/// redacted (`pause_recording`), its recording is silence, so nothing said there is
/// transcribed; without, the same words are heard.
fn payment_flow(number: &str, redacted: bool) -> String {
    format!(
        r#"
[flow]
numbers = ["{number}"]
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
pause_recording = {redacted}
"#
    )
}

/// Places a call to `number`: the first desk's agent speaks, then the caller speaks (the card
/// details, say) while the second desk's agent listens. Returns the call's transcript, once
/// both segments' jobs are done.
async fn payment_call(t: &TestSim, s: &TestService, number: &str, calls_before: usize) -> String {
    let (caller_speech, _) = speech("caller");
    let (agent_speech, _) = speech("agent");
    t.sim.define_party(
        "PJSIP/agent-one",
        Script::new(
            "agent",
            vec![
                Step::Answer,
                Step::Speak(agent_speech),
                Step::Wait(0.5),
                Step::Hangup,
            ],
        ),
    );
    t.sim.define_party(
        "PJSIP/agent-two",
        Script::new("agent", vec![Step::Answer, Step::Wait(14.0), Step::Hangup]),
    );
    let script = format!("payer-{number}");
    caller(
        t,
        &script,
        vec![
            Step::Answer,
            Step::Wait(7.0),
            Step::Speak(caller_speech),
            Step::Wait(30.0),
            Step::Hangup,
        ],
    );
    t.sim
        .place_inbound_call(number, "Pat <5552005>", &script)
        .expect("call");
    let first = calls_before * 2 + 1;
    wait_until("the first desk recorded", || record_requests(t) == first).await;
    t.sim.advance(5.0);
    wait_until("the second desk recorded", || {
        record_requests(t) == first + 1
    })
    .await;
    t.sim.advance(20.0);
    // This call's two segments (the calls before it have theirs), both transcribed.
    let mut call = String::new();
    eventually("both segments transcribed", async || {
        let calls: Vec<(String, i64)> = sqlx::query_as(
            "SELECT r.call_id, SUM(CASE WHEN j.state = 'done' THEN 1 ELSE 0 END) FROM recordings r \
             LEFT JOIN transcription_jobs j ON j.recording_id = r.id \
             GROUP BY r.call_id ORDER BY MIN(r.id)",
        )
        .fetch_all(&s.svc.db.pool)
        .await
        .expect("jobs");
        match calls.get(calls_before) {
            Some((id, 2)) => {
                call = id.clone();
                true
            }
            _ => false,
        }
    })
    .await;
    sqlx::query("UPDATE recordings SET consent = 'granted'")
        .execute(&s.svc.db.pool)
        .await
        .expect("consent");
    let admin = bearer(&s.token);
    let answer = send(admin.get(format!("{}/api/calls/{call}/transcript", s.base))).await;
    assert_eq!(answer.status, 200, "{}", answer.error());
    let found = answer.json();
    assert_eq!(found["segments_transcribed"], 2, "{found}");
    cue_text(&found["cues"], None)
}

/// Redacted stretches are never transcribed: words said while the recording is redacted are
/// silence in the file, so the engine hears none of them; the same words in a call that is not
/// redacted are heard.
#[tokio::test]
#[ignore = "needs pocketsphinx and pocketsphinx-en-us: scripts/test.sh installs them and runs it"]
async fn words_said_while_redacted_are_never_transcribed() {
    pocketsphinx_here();
    let t = start_sim(0.0).await;
    let (redacted, heard) = (payment_flow("600", true), payment_flow("601", false));
    let s = start(
        &t,
        &[("redacted.toml", &redacted), ("heard.toml", &heard)],
        &[("TRANSCRIPTION_ENGINE", "pocketsphinx")],
    )
    .await;
    let caller_words = ["delivery", "damaged", "refund"];
    let redacted_text = payment_call(&t, &s, "600", 0).await;
    let heard_text = payment_call(&t, &s, "601", 1).await;
    println!("redacted call: {redacted_text:?}\nthe same call not redacted: {heard_text:?}");
    let said = |text: &str| {
        caller_words
            .iter()
            .filter(|w| words(text).contains(&w.to_string()))
            .count()
    };
    assert_eq!(said(&redacted_text), 0, "{redacted_text:?}");
    assert!(said(&heard_text) >= 2, "{heard_text:?}");
    common::stop(s).await;
}

/// A file dropped in the folder is transcribed as one voice; a job that a killed instance of
/// this node held is due again when the node starts, and done once.
#[tokio::test]
#[ignore = "needs pocketsphinx and pocketsphinx-en-us: scripts/test.sh installs them and runs it"]
async fn a_job_held_by_a_killed_instance_is_done_once_after_its_restart() {
    pocketsphinx_here();
    let t = start_sim(0.0).await;
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/speech/caller.wav"),
        t.recordings.join("memo.wav"),
    )
    .expect("copy");
    // First without an engine: the recording is indexed; its job is then taken by "the killed
    // instance" (this node, a lease far in the future).
    let s = start(&t, &[], &[("NODE_ID", "pbx-a")]).await;
    let id = only_recording(&s).await;
    ari_recorder::transcription::queue::enqueue_ready(&s.svc.db, 0, 1)
        .await
        .expect("queued");
    let held = ari_recorder::transcription::queue::claim_next(&s.svc.db, "pbx-a", 1)
        .await
        .expect("claim")
        .expect("the job");
    assert_eq!(held.recording_id, id);
    common::stop(s).await;
    let s = start(
        &t,
        &[],
        &[
            ("NODE_ID", "pbx-a"),
            ("TRANSCRIPTION_ENGINE", "pocketsphinx"),
        ],
    )
    .await;
    let found = transcript(&s, id).await;
    assert!(found["cues"]
        .as_array()
        .expect("cues")
        .iter()
        .all(|c| c["speaker"].is_null()));
    assert!(words(&cue_text(&found["cues"], None)).contains(&"delivery".to_string()));
    eventually("the job done", async || {
        job_state(&s, id).await.map(|(state, _)| state).as_deref() == Some("done")
    })
    .await;
    let (runs,): (i64,) =
        sqlx::query_as("SELECT attempts FROM transcription_jobs WHERE recording_id = $1")
            .bind(id)
            .fetch_one(&s.svc.db.pool)
            .await
            .expect("attempts");
    assert_eq!(runs, 2, "the killed attempt and the one that finished");
    let (events,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM webhook_events WHERE kind = 'transcript.ready' AND recording_id = $1",
    )
    .bind(id)
    .fetch_one(&s.svc.db.pool)
    .await
    .expect("events");
    assert!(events <= 1, "stored once");
    common::stop(s).await;
}

/// A flow that says `transcribe = false` is left alone, a transcript attached beside the file
/// is kept, and an engine that cannot run leaves the reason on the job (retried, never lost).
#[tokio::test]
async fn opted_out_flows_attached_transcripts_and_a_missing_engine() {
    let t = start_sim(0.0).await;
    let opted_out = DUAL.replace(
        "numbers = [\"300\"]",
        "numbers = [\"300\"]\ntranscribe = false",
    );
    let s = start(
        &t,
        &[("health.toml", &opted_out)],
        &[
            ("TRANSCRIPTION_ENGINE", "pocketsphinx"),
            ("POCKETSPHINX_BIN", "/nonexistent/pocketsphinx_continuous"),
        ],
    )
    .await;
    t.sim.define_party(
        "PJSIP/agent-one",
        Script::new("agent", vec![Step::Answer, Step::Wait(2.0), Step::Hangup]),
    );
    caller(
        &t,
        "patient",
        vec![Step::Answer, Step::Wait(30.0), Step::Hangup],
    );
    t.sim
        .place_inbound_call("300", "Pat <5550100>", "patient")
        .expect("call");
    wait_until("the call recorded", || {
        t.sim.with_world(|w| w.counts().2) == 3
    })
    .await;
    t.sim.advance(3.0);
    let call = only_recording(&s).await;
    eventually("the opted-out call skipped", async || {
        job_state(&s, call).await.map(|(state, _)| state).as_deref() == Some("skipped")
    })
    .await;
    let (_, reason) = job_state(&s, call).await.expect("job");
    assert_eq!(
        reason.as_deref(),
        Some("flow health is not transcribed (transcribe = false)")
    );

    // A memo with its own WebVTT: not queued, the sidecar kept.
    let (memo, _) = speech("caller");
    let wav = {
        let mut bytes = ari_recorder::audio::wav::header((memo.len() * 2) as u32).to_vec();
        bytes.extend(ari_recorder::audio::wav::pcm_bytes(&memo));
        bytes
    };
    let vtt = "WEBVTT\n\n00:00.500 --> 00:02.000\nwritten by hand\n";
    // And a plain one the missing program cannot transcribe. Dated an hour ago: final at once.
    for (name, bytes) in [
        ("memo.wav", wav.as_slice()),
        ("memo.vtt", vtt.as_bytes()),
        ("plain.wav", wav.as_slice()),
    ] {
        let path = t.recordings.join(name);
        std::fs::write(&path, bytes).expect("write");
        ari_recorder::library::index::set_mtime(
            &path,
            std::time::SystemTime::now() - std::time::Duration::from_secs(3600),
        )
        .expect("mtime");
    }
    let id_of = |name: &'static str| {
        let db = s.svc.db.clone();
        async move {
            let row: Option<(i64,)> =
                sqlx::query_as("SELECT id FROM recordings WHERE name = $1 AND status = 'ready'")
                    .bind(name)
                    .fetch_optional(&db.pool)
                    .await
                    .expect("row");
            row.map(|(id,)| id)
        }
    };
    let mut plain = None;
    eventually("the plain file's attempt failed", async || {
        plain = id_of("plain").await;
        match plain {
            Some(id) => job_state(&s, id)
                .await
                .and_then(|(_, reason)| reason)
                .is_some_and(|r| r.contains("cannot start /nonexistent/pocketsphinx_continuous")),
            None => false,
        }
    })
    .await;
    let plain = plain.expect("plain");
    assert_eq!(
        job_state(&s, plain)
            .await
            .map(|(state, _)| state)
            .as_deref(),
        Some("pending"),
        "retried later, not dropped"
    );
    let memo = id_of("memo").await.expect("memo");
    let kept = transcript(&s, memo).await;
    assert_eq!(kept["source"], "sidecar");
    assert_eq!(cue_text(&kept["cues"], None), "written by hand");
    // The file and its transcript arrive together: the memo may have been queued before the
    // sidecar was read (the engine then finds it attached and skips, or its transcript would be
    // refused); what holds is that no engine's transcript is kept.
    let memo_job = job_state(&s, memo).await;
    assert!(
        memo_job.as_ref().is_none_or(|(state, _)| state != "done"),
        "{memo_job:?}"
    );
    assert_eq!(transcript(&s, memo).await["source"], "sidecar");
    let metrics = common::metrics_text(&s.base).await;
    assert!(metrics.contains("transcription_pending "), "{metrics}");
    common::stop(s).await;
}

/// The OpenAI-compatible engine against a server that implements that API and recognises the
/// audio itself: the file goes as multipart with the model, the language and `verbose_json`,
/// the key as a bearer token; the answer's segments become the transcript.
#[tokio::test]
#[ignore = "needs pocketsphinx and pocketsphinx-en-us: scripts/test.sh installs them and runs it"]
async fn the_openai_compatible_engine_sends_the_audio_and_reads_the_segments() {
    pocketsphinx_here();
    let t = start_sim(0.0).await;
    let port = common::process::free_port();
    let log = t.dir.path().join("openai-requests.jsonl");
    let mut server = std::process::Command::new("/usr/bin/python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/openai_transcriptions.py"))
        .arg(port.to_string())
        .arg("test-key-0123456789")
        .arg(&log)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the server starts");
    wait_until("the server listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/speech/caller.wav"),
        t.recordings.join("memo.wav"),
    )
    .expect("copy");
    let url = format!("http://127.0.0.1:{port}");
    let s = start(
        &t,
        &[],
        &[
            ("TRANSCRIPTION_ENGINE", "openai"),
            ("TRANSCRIPTION_OPENAI_URL", &url),
            ("TRANSCRIPTION_OPENAI_KEY", "test-key-0123456789"),
            ("TRANSCRIPTION_OPENAI_MODEL", "whisper-large-v3"),
            ("TRANSCRIPTION_LANGUAGE", "en-GB"),
        ],
    )
    .await;
    let id = only_recording(&s).await;
    let found = transcript(&s, id).await;
    assert_eq!(found["source"], "openai");
    let (_, said) = speech("caller");
    let heard = cue_text(&found["cues"], None);
    assert!(words(&heard).contains(&"delivery".to_string()), "{heard}");
    assert!(word_error_rate(&said, &heard) <= 0.3, "{heard}");
    let sent: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&log)
            .expect("log")
            .lines()
            .next()
            .expect("a request"),
    )
    .expect("json");
    assert_eq!(sent["model"], serde_json::json!(["whisper-large-v3"]));
    assert_eq!(sent["language"], serde_json::json!(["en"]));
    assert_eq!(sent["response_format"], serde_json::json!(["verbose_json"]));
    assert_eq!(
        sent["timestamp_granularities[]"],
        serde_json::json!(["segment"])
    );
    assert_eq!(sent["file"], "audio.wav");
    common::stop(s).await;
    common::process::terminate(&mut server);
}

/// `?q=` finds recordings by what was said: every word, any case, through the full-text index
/// of each backend; only recordings the caller may play (a transcript is read where the audio
/// is), never another tenant's; each row says where (start, speaker, snippet); by call too.
async fn what_was_said_is_searchable_within_the_access_rules(db: Db) {
    use ari_recorder::library::transcripts::{self, Cue, Source};
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    for name in ["refund-call", "money-call", "other-tenant"] {
        common::put_wav(&t, name);
    }
    let s = start_service_with(&t, &[], &url, &[]).await;
    common::wait_ready(&s.svc.db, 3).await;
    let id_of = |name: &'static str| {
        let db = s.svc.db.clone();
        async move {
            let (id,): (i64,) = sqlx::query_as(
                "UPDATE recordings SET consent = 'granted', call_id = $1 WHERE name = $1 RETURNING id",
            )
            .bind(name)
            .fetch_one(&db.pool)
            .await
            .expect("row");
            id
        }
    };
    let (refund, money, other) = (
        id_of("refund-call").await,
        id_of("money-call").await,
        id_of("other-tenant").await,
    );
    sqlx::query("UPDATE recordings SET tenant = 'other' WHERE id = $1")
        .bind(other)
        .execute(&s.svc.db.pool)
        .await
        .expect("tenant");
    let cue = |start_ms: u64, speaker: &str, text: &str| Cue {
        start_ms,
        end_ms: start_ms + 1500,
        speaker: Some(speaker.into()),
        text: text.into(),
    };
    for (id, cues) in [
        (
            refund,
            vec![
                cue(0, "Agent", "Thank you for calling, how can I help?"),
                cue(
                    2500,
                    "Caller",
                    "The box was damaged. I would like a REFUND please.",
                ),
            ],
        ),
        (
            money,
            vec![cue(1000, "Caller", "Nothing about money here.")],
        ),
        (
            other,
            vec![cue(0, "Caller", "A refund for the other tenant.")],
        ),
    ] {
        transcripts::store(&s.svc.db, None, id, &cues, Source::Api, None, "test")
            .await
            .expect("stored");
    }
    let admin = bearer(&s.token);
    let search = |client: reqwest::Client, query: &'static str| {
        let base = s.base.clone();
        async move {
            let answer = send(client.get(format!("{base}/api/recordings?{query}"))).await;
            assert_eq!(answer.status, 200, "{query}: {}", answer.error());
            answer.json()
        }
    };
    let ids = |page: &serde_json::Value| -> Vec<i64> {
        page["recordings"]
            .as_array()
            .expect("rows")
            .iter()
            .filter_map(|r| r["id"].as_i64())
            .collect()
    };
    let found = search(admin.clone(), "q=refund").await;
    assert_eq!(ids(&found), [refund], "{found}");
    let said = &found["recordings"][0]["match"];
    assert_eq!(said["start_seconds"], 2.5);
    assert_eq!(said["speaker"], "Caller");
    assert!(said["snippet"]
        .as_str()
        .expect("snippet")
        .contains("REFUND"));
    assert_eq!(
        ids(&search(admin.clone(), "q=Damaged+refund").await),
        [refund]
    );
    assert_eq!(
        ids(&search(admin.clone(), "q=refund+money").await),
        Vec::<i64>::new()
    );
    assert_eq!(ids(&search(admin.clone(), "q=money").await), [money]);
    // A word that is a search operator is a word: nothing typed is query syntax.
    assert_eq!(
        ids(&search(admin.clone(), "q=NOT+money").await),
        Vec::<i64>::new()
    );
    // Without consent the audio may not be played, so its words are not searched either.
    sqlx::query("UPDATE recordings SET consent = 'unknown' WHERE id = $1")
        .bind(money)
        .execute(&s.svc.db.pool)
        .await
        .expect("consent");
    assert_eq!(
        ids(&search(admin.clone(), "q=money").await),
        Vec::<i64>::new()
    );
    assert!(ids(&search(admin.clone(), "limit=10").await).contains(&money));
    // The CSV export of a search of what was said holds only what the caller may play too.
    let csv = send(admin.get(format!("{}/api/recordings/export.csv?q=money", s.base))).await;
    assert_eq!(csv.status, 200);
    assert_eq!(
        String::from_utf8_lossy(&csv.body).lines().count(),
        1,
        "the header alone"
    );
    // Another tenant's admin finds only their own.
    let outsider = common::tenant_admin(&s.svc.db, "other").await;
    assert_eq!(ids(&search(outsider, "q=refund").await), [other]);
    // By call: the call with the segment, and where.
    let calls = search(admin.clone(), "group=call&q=refund").await;
    let listed = calls["calls"].as_array().expect("calls");
    assert_eq!(listed.len(), 1, "{calls}");
    assert_eq!(listed[0]["call_id"], "refund-call");
    assert_eq!(listed[0]["segments"][0]["match"]["start_seconds"], 2.5);
    for bad in [
        "q=a",
        "q=%21%21",
        "q=one+two+three+four+five+six+seven+eight+nine+ten+eleven",
    ] {
        let answer = send(admin.get(format!("{}/api/recordings?{bad}", s.base))).await;
        assert_eq!(
            (answer.status, answer.error().as_str()),
            (400, "bad_request"),
            "{bad}"
        );
    }
    // Deleted with its recording: its words go with it.
    let deleted = common::delete_confirmed(&admin, &s.base, refund).await;
    assert_eq!(deleted.status, 200, "{}", deleted.error());
    assert_eq!(
        ids(&search(admin.clone(), "q=refund").await),
        Vec::<i64>::new()
    );
    common::stop(s).await;
}

/// With `ENCRYPTION_KEYS`, transcripts and talk timelines are sealed in the database and the
/// search index holds keyed tokens, not words: one stored in clear before encryption was turned
/// on is sealed by the next start, one stored after is sealed at once, a key rotation seals
/// them again, and search, the transcript and the timeline read the same throughout.
async fn transcripts_and_talk_timelines_are_sealed_at_rest(db: Db) {
    use ari_recorder::audio::activity::{TalkTime, Timeline};
    use ari_recorder::encryption::Keyring;
    use ari_recorder::library::{insights, transcripts};
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    common::put_wav(&t, "sealed-call");
    let s = start_service_with(&t, &[], &url, &[]).await;
    common::wait_ready(&s.svc.db, 1).await;
    let (id,): (i64,) = sqlx::query_as(
        "UPDATE recordings SET consent = 'granted', call_id = name WHERE name = 'sealed-call' RETURNING id",
    )
    .fetch_one(&s.svc.db.pool)
    .await
    .expect("row");
    let said = vec![transcripts::Cue {
        start_ms: 1_000,
        end_ms: 3_000,
        speaker: Some("Caller".into()),
        text: "The parcel was damaged, a refund please.".into(),
    }];
    transcripts::store(
        &s.svc.db,
        None,
        id,
        &said,
        transcripts::Source::Api,
        None,
        "test",
    )
    .await
    .expect("stored");
    // What the database holds of the transcript and its words, as text.
    let stored = |db: ari_recorder::db::Database| async move {
        let (cues, sealed_by): (String, Option<String>) = sqlx::query_as(
            "SELECT cues, sealed_by FROM recording_transcripts WHERE recording_id = $1",
        )
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .expect("transcript");
        let index_sql = match db.backend {
            ari_recorder::db::Backend::Sqlite => {
                "SELECT text FROM transcript_search WHERE rowid = $1"
            }
            ari_recorder::db::Backend::Postgres => {
                "SELECT words::text FROM transcript_search WHERE recording_id = $1"
            }
        };
        let (words,): (String,) = sqlx::query_as(index_sql)
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .expect("words");
        (cues, sealed_by, words)
    };
    let (cues, sealed_by, words) = stored(s.svc.db.clone()).await;
    assert!(cues.contains("damaged") && words.contains("damaged"));
    assert_eq!(sealed_by, None);
    let found = |s: &TestService, query: &'static str| {
        let (admin, base) = (bearer(&s.token), s.base.clone());
        async move {
            let page = send(admin.get(format!("{base}/api/recordings?{query}"))).await;
            assert_eq!(page.status, 200, "{}", page.error());
            page.json()["recordings"]
                .as_array()
                .expect("rows")
                .iter()
                .filter_map(|r| r["id"].as_i64())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(found(&s, "q=damaged").await, [id]);
    common::stop(s).await;

    // Encryption turned on: the first look of the sealer seals what was stored in clear.
    let (old_key, _) = Keyring::generate();
    let old = Keyring::parse(std::slice::from_ref(&old_key)).expect("key");
    let s = start_service_with(&t, &[], &url, &[("ENCRYPTION_KEYS", old_key.as_str())]).await;
    let db = s.svc.db.clone();
    eventually("the transcript sealed", async || {
        stored(db.clone()).await.1 == Some(old.current_id())
    })
    .await;
    let (cues, _, words) = stored(s.svc.db.clone()).await;
    assert!(cues.starts_with("age:"), "{cues}");
    for word in ["damaged", "refund", "parcel"] {
        assert!(
            !cues.contains(word) && !words.contains(word),
            "{word}: {words}"
        );
    }
    assert_eq!(found(&s, "q=damaged+REFUND").await, [id]);
    assert_eq!(found(&s, "q=parcel").await, [id]);
    assert_eq!(found(&s, "q=invoice").await, Vec::<i64>::new());
    assert_eq!(
        cue_text(&transcript(&s, id).await["cues"], None),
        said[0].text
    );
    // A transcript attached now is sealed as it is stored.
    let admin = bearer(&s.token);
    let put = send(
        admin
            .put(format!("{}/api/recordings/{id}/transcript", s.base))
            .header("content-type", "application/json")
            .body(r#"[{"start": 0.5, "end": 2, "speaker": "Agent", "text": "Your invoice number is 7734."}]"#),
    )
    .await;
    assert!(put.status < 300, "{}", put.error());
    let (cues, sealed_by, words) = stored(s.svc.db.clone()).await;
    assert!(
        cues.starts_with("age:") && !words.contains("invoice"),
        "{words}"
    );
    assert_eq!(sealed_by, Some(old.current_id()));
    assert_eq!(found(&s, "q=invoice+7734").await, [id]);
    assert_eq!(found(&s, "q=damaged").await, Vec::<i64>::new());
    // A talk timeline is sealed too; the figures the list filters on stay readable.
    let mut timeline = Timeline::new();
    timeline.insert("caller".into(), vec![[1_000, 3_000]]);
    timeline.insert("agent".into(), vec![[4_000, 4_500]]);
    let talk = TalkTime {
        length_ms: 5_000,
        speech_ms: 2_500,
        caller_ms: Some(2_000),
        agent_ms: Some(500),
        silence_ms: 2_500,
        longest_silence_ms: 1_000,
        ..TalkTime::default()
    };
    assert!(insights::store(&s.svc.db, Some(&old), id, &talk, &timeline)
        .await
        .expect("figures"));
    let (raw,): (String,) =
        sqlx::query_as("SELECT timeline FROM recording_insights WHERE recording_id = $1")
            .bind(id)
            .fetch_one(&s.svc.db.pool)
            .await
            .expect("timeline");
    assert!(raw.starts_with("age:") && !raw.contains("4000"), "{raw}");
    let shown = send(admin.get(format!("{}/api/recordings/{id}", s.base)))
        .await
        .json();
    assert_eq!(
        shown["insights"]["timeline"],
        serde_json::json!({"caller": [[1.0, 3.0]], "agent": [[4.0, 4.5]]}),
        "{shown}"
    );
    assert_eq!(shown["insights"]["agent_share_percent"], 20);
    common::stop(s).await;

    // A new key: the start seals them again with it, and an old key's tokens are gone.
    let (new_key, _) = Keyring::generate();
    let rotated = Keyring::parse(&[new_key.clone(), old_key.clone()]).expect("keys");
    let both = format!("{new_key},{old_key}");
    let s = start_service_with(&t, &[], &url, &[("ENCRYPTION_KEYS", both.as_str())]).await;
    let db = s.svc.db.clone();
    eventually("the transcript sealed with the new key", async || {
        stored(db.clone()).await.1 == Some(rotated.current_id())
    })
    .await;
    let (timeline_key,): (Option<String>,) =
        sqlx::query_as("SELECT timeline_sealed_by FROM recording_insights WHERE recording_id = $1")
            .bind(id)
            .fetch_one(&s.svc.db.pool)
            .await
            .expect("timeline key");
    assert_eq!(timeline_key, Some(rotated.current_id()));
    let only_new = Keyring::parse(std::slice::from_ref(&new_key)).expect("key");
    let (_, _, words) = stored(s.svc.db.clone()).await;
    let under = |keys: &Keyring| {
        transcripts::said(&["invoice".to_string()], Some(keys))[0].forms[1].clone()
    };
    assert!(
        words.contains(&under(&only_new)) && !words.contains(&under(&old)),
        "{words}"
    );
    assert_eq!(found(&s, "q=invoice").await, [id]);
    common::stop(s).await;
}

on_both_databases!(
    what_was_said_is_searchable_within_the_access_rules,
    transcripts_and_talk_timelines_are_sealed_at_rest,
);

/// A call's transcript: each segment's lines on the call's timeline (the second segment's first
/// line where that segment starts in the call), refused as the audio is.
#[tokio::test]
async fn a_calls_transcript_follows_its_timeline() {
    use ari_recorder::library::transcripts::{self, Cue, Source};
    let t = start_sim(0.0).await;
    for name in ["desk-one", "desk-two"] {
        common::put_wav(&t, name);
    }
    let s = start(&t, &[], &[]).await;
    common::wait_ready(&s.svc.db, 2).await;
    let mut ids = Vec::new();
    for (name, start_ms) in [("desk-one", 1_000_000i64), ("desk-two", 1_007_500)] {
        let (id,): (i64,) = sqlx::query_as(
            "UPDATE recordings SET consent = 'granted', call_id = 'two-desks', started_at_ms = $1 \
             WHERE name = $2 RETURNING id",
        )
        .bind(start_ms)
        .bind(name)
        .fetch_one(&s.svc.db.pool)
        .await
        .expect("row");
        ids.push(id);
    }
    let line = |start_ms: u64, speaker: &str, text: &str| Cue {
        start_ms,
        end_ms: start_ms + 1000,
        speaker: Some(speaker.into()),
        text: text.into(),
    };
    transcripts::store(
        &s.svc.db,
        None,
        ids[0],
        &[
            line(500, "Agent", "First desk, hello."),
            line(3000, "Caller", "Please transfer me."),
        ],
        Source::Api,
        None,
        "test",
    )
    .await
    .expect("first");
    transcripts::store(
        &s.svc.db,
        None,
        ids[1],
        &[line(250, "Agent", "Second desk.")],
        Source::Api,
        None,
        "test",
    )
    .await
    .expect("second");
    let admin = bearer(&s.token);
    let url = format!("{}/api/calls/two-desks/transcript", s.base);
    let answer = send(admin.get(&url)).await;
    assert_eq!(answer.status, 200, "{}", answer.error());
    let body = answer.json();
    let lines: Vec<(f64, String)> = body["cues"]
        .as_array()
        .expect("cues")
        .iter()
        .map(|c| {
            (
                c["start"].as_f64().expect("start"),
                c["text"].as_str().expect("text").to_string(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            (0.5, "First desk, hello.".to_string()),
            (3.0, "Please transfer me.".to_string()),
            (7.75, "Second desk.".to_string()),
        ]
    );
    assert_eq!(body["segments_transcribed"], 2);
    let (reads,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM audit_events WHERE action = 'transcript' AND outcome = 'allowed'",
    )
    .fetch_one(&s.svc.db.pool)
    .await
    .expect("audit");
    assert_eq!(reads, 2, "each segment's transcript read is audited");
    // Without consent on one segment, the whole call's words are refused as its audio is.
    sqlx::query("UPDATE recordings SET consent = 'unknown' WHERE id = $1")
        .bind(ids[1])
        .execute(&s.svc.db.pool)
        .await
        .expect("consent");
    let refused = send(admin.get(&url)).await;
    assert_eq!(
        (refused.status, refused.error().as_str()),
        (403, "missing_consent")
    );
    common::stop(s).await;
}
