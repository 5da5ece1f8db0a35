//! The simulated Asterisk writes recordings as the real one does: WAV 8 kHz mono PCM16 whose
//! RIFF and data sizes stay 0 until the file is closed, raw mu-law for `.ulaw`, and the stop
//! conditions of a channel recording (hang-up, `#`, silence, maximum duration).

mod common;

use ari_recorder::ari::RecordRequest;
use ari_recorder::audio::g711::decode_ulaw;
use ari_recorder::sim::{Script, Step};
use common::{answered_caller, caller_in_bridge, listen_sim, start_sim, Collected};

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn pcm(bytes: &[u8]) -> Vec<i16> {
    bytes[44..]
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

async fn finished(events: &Collected, name: &str) -> serde_json::Value {
    events
        .wait_for("RecordingFinished", |e| {
            e.iter()
                .any(|e| e["type"] == "RecordingFinished" && e["recording"]["name"] == name)
        })
        .await;
    events
        .snapshot()
        .into_iter()
        .find(|e| e["type"] == "RecordingFinished" && e["recording"]["name"] == name)
        .expect("event")["recording"]
        .clone()
}

#[tokio::test]
async fn bridge_wav_has_zero_sizes_while_recording_and_real_sizes_after() {
    let t = start_sim(0.0).await;
    let client = t.client();
    let (events, _task) = listen_sim(&t.sim, "recorder").await;
    t.sim.define_party(
        "talker",
        Script::new("Alice", vec![Step::Answer, Step::Talk(60.0)]),
    );
    let (_, bridge) = caller_in_bridge(&t, "100", "Alice <5551001>", "talker").await;
    client
        .record_bridge(&bridge, &RecordRequest::new("call-1", "wav"))
        .await
        .expect("record");
    t.sim.advance(2.0);

    let path = t.recordings.join("call-1.wav");
    let partial = std::fs::read(&path).expect("file exists while recording");
    assert_eq!(&partial[0..4], b"RIFF");
    assert_eq!(u32_at(&partial, 4), 0, "RIFF size 0 while open");
    assert_eq!(u32_at(&partial, 40), 0, "data size 0 while open");
    assert_eq!(
        partial.len(),
        44 + 2 * 8000 * 2,
        "two seconds of PCM16 already on disk"
    );

    t.sim.advance(1.0);
    client.stop_recording("call-1").await.expect("stop");
    let done = finished(&events, "call-1").await;
    assert_eq!(done["duration"], 3);
    let bytes = std::fs::read(&path).expect("file");
    assert_eq!(u32_at(&bytes, 40) as usize, bytes.len() - 44);
    assert_eq!(u32_at(&bytes, 4) as usize, bytes.len() - 8);
    assert_eq!(u32_at(&bytes, 24), 8000, "8 kHz");
    let samples = pcm(&bytes);
    assert!(
        samples.iter().any(|s| s.unsigned_abs() > 1000),
        "the caller's voice is in the file"
    );
}

#[tokio::test]
async fn pause_drops_audio_and_mute_writes_silence() {
    let t = start_sim(0.0).await;
    let client = t.client();
    let (events, _task) = listen_sim(&t.sim, "recorder").await;
    t.sim.define_party(
        "tone",
        Script::new(
            "Bob",
            vec![
                Step::Answer,
                Step::Say("beep".into()),
                Step::Say("beep".into()),
                Step::Talk(60.0),
            ],
        ),
    );
    let (_, bridge) = caller_in_bridge(&t, "100", "Bob <5551002>", "tone").await;
    client
        .record_bridge(&bridge, &RecordRequest::new("pm", "wav"))
        .await
        .expect("record");
    t.sim.advance(1.0);
    client.pause_recording("pm").await.expect("pause");
    t.sim.advance(1.0);
    client.unpause_recording("pm").await.expect("unpause");
    client.mute_recording("pm").await.expect("mute");
    t.sim.advance(1.0);
    client.unmute_recording("pm").await.expect("unmute");
    t.sim.advance(1.0);
    client.stop_recording("pm").await.expect("stop");
    let done = finished(&events, "pm").await;
    assert_eq!(done["duration"], 3, "the paused second is not in the file");
    let samples = pcm(&std::fs::read(t.recordings.join("pm.wav")).expect("file"));
    assert_eq!(samples.len(), 3 * 8000);
    assert!(
        samples[8000..16000].iter().all(|s| *s == 0),
        "muted second is silence"
    );
    assert!(
        samples[16000..].iter().any(|s| *s != 0),
        "audio after unmute"
    );
}

async fn voicemail(
    behaviour: Script,
    request: RecordRequest,
    run_for: f64,
) -> (serde_json::Value, Vec<u8>) {
    let t = start_sim(0.0).await;
    let client = t.client();
    let (events, _task) = listen_sim(&t.sim, "recorder").await;
    t.sim.define_party("vm-caller", behaviour);
    let caller = answered_caller(&t, "300", "Bob <5551002>", "vm-caller").await;
    let name = request.name.clone();
    client
        .record_channel(&caller, &request)
        .await
        .expect("record");
    t.sim.advance(run_for);
    let done = finished(&events, &name).await;
    let bytes = std::fs::read(t.recordings.join(format!("{name}.ulaw"))).expect("file");
    (done, bytes)
}

#[tokio::test]
async fn voicemail_ulaw_ends_when_the_caller_hangs_up() {
    let script = Script::new("Bob", vec![Step::Answer, Step::Talk(4.0), Step::Hangup]);
    let mut request = RecordRequest::new("vm-hangup", "ulaw");
    request.max_duration_seconds = Some(60);
    let (done, bytes) = voicemail(script, request, 6.0).await;
    assert_eq!(done["duration"], 4);
    assert_eq!(bytes.len(), 4 * 8000, "raw mu-law: one byte a sample");
    assert!(bytes
        .iter()
        .map(|b| decode_ulaw(*b))
        .any(|s| s.unsigned_abs() > 1000));
}

#[tokio::test]
async fn voicemail_ends_on_hash_without_the_keypress() {
    let script = Script::new(
        "Ivan",
        vec![
            Step::Answer,
            Step::Talk(5.0),
            Step::Dtmf('#'),
            Step::Talk(5.0),
        ],
    );
    let mut request = RecordRequest::new("vm-hash", "ulaw");
    request.terminate_on = Some("#".into());
    let (done, bytes) = voicemail(script, request, 8.0).await;
    assert_eq!(
        done["duration"], 4,
        "the last half second (the keypress) is cut"
    );
    assert_eq!(bytes.len(), 4 * 8000 + 4000);
}

#[tokio::test]
async fn voicemail_from_a_caller_sending_nothing_stops_on_silence_with_an_empty_file() {
    let script = Script::new("Judy", vec![Step::Answer, Step::Wait(30.0)]);
    let mut request = RecordRequest::new("vm-silent", "ulaw");
    request.max_silence_seconds = Some(3);
    request.max_duration_seconds = Some(20);
    let (done, bytes) = voicemail(script, request, 5.0).await;
    assert_eq!(done["duration"], 0);
    assert_eq!(done["talking_duration"], 0);
    assert_eq!(done["silence_duration"], 0);
    assert!(bytes.is_empty());
}

#[tokio::test]
async fn voicemail_stops_at_max_duration() {
    let script = Script::new("Bob", vec![Step::Answer, Step::Talk(60.0)]);
    let mut request = RecordRequest::new("vm-max", "ulaw");
    request.max_duration_seconds = Some(3);
    let (done, bytes) = voicemail(script, request, 5.0).await;
    assert_eq!(done["duration"], 3);
    assert_eq!(bytes.len(), 3 * 8000);
}
