//! The typed ARI client against the simulated Asterisk: every operation the product uses, and
//! errors that keep their HTTP status and Asterisk's message.

mod common;

use ari_recorder::ari::{AriClient, IfExists, OriginateRequest, RecordRequest};
use ari_recorder::sim::{Script, Step};
use common::{caller_in_bridge, listen_sim, start_sim};

fn agent(endpoint: &str) -> OriginateRequest {
    OriginateRequest {
        endpoint: endpoint.into(),
        app: Some("recorder".into()),
        app_args: Some("agent".into()),
        timeout: Some(20),
        ..OriginateRequest::default()
    }
}

#[tokio::test]
async fn every_operation_round_trips_through_the_client() {
    let t = start_sim(0.0).await;
    let client = t.client();
    let (events, _task) = listen_sim(&t.sim, "recorder").await;

    let info = client.asterisk_info().await.expect("info");
    assert!(info.system.expect("system").version.starts_with("22"));

    // A call from the network enters the app.
    t.sim
        .place_inbound_call("100", "Alice <5551001>", "talk")
        .expect("call placed");
    events
        .wait_for("StasisStart", |e| {
            e.iter().any(|e| e["type"] == "StasisStart")
        })
        .await;
    let caller = events.snapshot()[0]["channel"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(
        client.channels().await.expect("channels").len(),
        2,
        "both Local halves listed"
    );
    let apps = client.applications().await.expect("applications");
    assert_eq!(apps[0].channel_ids, vec![caller.clone()]);
    assert_eq!(
        client.application("recorder").await.expect("app").name,
        "recorder"
    );

    client.ring(&caller).await.expect("ring");
    client.ring_stop(&caller).await.expect("ring stop");
    client.answer(&caller).await.expect("answer");
    assert_eq!(client.channel(&caller).await.expect("channel").state, "Up");
    client
        .set_channel_var(&caller, "CALL_FLOW", "support")
        .await
        .expect("set var");
    assert_eq!(
        client
            .get_channel_var(&caller, "CALL_FLOW")
            .await
            .expect("get var")
            .value,
        "support"
    );
    client
        .channel_moh_start(&caller, Some("default"))
        .await
        .expect("moh");
    client.channel_moh_stop(&caller).await.expect("moh stop");
    let playback = client
        .play_on_channel(&caller, "sound:hello-world", None)
        .await
        .expect("play");
    assert_eq!(playback.state, "queued");
    assert_eq!(
        client
            .playback(&playback.id)
            .await
            .expect("playback")
            .media_uri,
        "sound:hello-world"
    );
    client
        .stop_playback(&playback.id)
        .await
        .expect("stop playback");

    // Bridge the caller with an agent and record the bridge.
    let bridge = client
        .create_bridge("mixing", Some("transfer-100"))
        .await
        .expect("bridge");
    assert_eq!(bridge.bridge_type, "mixing");
    client
        .add_channels(&bridge.id, &[&caller], None)
        .await
        .expect("add caller");
    let agent_leg = client
        .originate(&agent("Local/201@agents"))
        .await
        .expect("originate");
    assert_eq!(agent_leg.state, "Down");
    events
        .wait_for("agent StasisStart", |e| {
            e.iter()
                .any(|e| e["type"] == "StasisStart" && e["channel"]["id"] == agent_leg.id.as_str())
        })
        .await;
    client
        .add_channels(&bridge.id, &[&agent_leg.id], Some("participant"))
        .await
        .expect("add agent");
    assert_eq!(
        client
            .bridge(&bridge.id)
            .await
            .expect("bridge")
            .channels
            .len(),
        2
    );
    assert_eq!(client.bridges().await.expect("bridges").len(), 1);
    client
        .bridge_moh_start(&bridge.id, None)
        .await
        .expect("bridge moh");
    client
        .bridge_moh_stop(&bridge.id)
        .await
        .expect("bridge moh stop");
    client
        .play_on_bridge(&bridge.id, "sound:beep")
        .await
        .expect("bridge play");

    let mut request = RecordRequest::new("calls/transfer-1", "wav");
    request.if_exists = Some(IfExists::Fail);
    let live = client
        .record_bridge(&bridge.id, &request)
        .await
        .expect("record");
    assert_eq!(live.state, "queued");
    assert_eq!(live.target_uri, format!("bridge:{}", bridge.id));
    t.sim.advance(1.0);
    client
        .pause_recording("calls/transfer-1")
        .await
        .expect("pause");
    assert_eq!(
        client
            .live_recording("calls/transfer-1")
            .await
            .expect("live")
            .state,
        "paused"
    );
    client
        .unpause_recording("calls/transfer-1")
        .await
        .expect("unpause");
    client
        .mute_recording("calls/transfer-1")
        .await
        .expect("mute");
    client
        .unmute_recording("calls/transfer-1")
        .await
        .expect("unmute");
    t.sim.advance(1.0);
    client
        .stop_recording("calls/transfer-1")
        .await
        .expect("stop");
    events
        .wait_for("RecordingFinished", |e| {
            e.iter().any(|e| e["type"] == "RecordingFinished")
        })
        .await;

    // Stored recordings, in a sub-folder as ARI names allow.
    let stored = client.stored_recordings().await.expect("stored");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].name, "calls/transfer-1");
    assert_eq!(
        client
            .stored_recording("calls/transfer-1")
            .await
            .expect("get")
            .format,
        "wav"
    );
    let bytes = client
        .stored_recording_file("calls/transfer-1")
        .await
        .expect("file");
    assert_eq!(&bytes[0..4], b"RIFF");
    let data_len = u32::from_le_bytes([bytes[40], bytes[41], bytes[42], bytes[43]]);
    assert_eq!(
        data_len as usize,
        bytes.len() - 44,
        "closed file has its sizes"
    );
    let copy = client
        .copy_stored_recording("calls/transfer-1", "copy-1")
        .await
        .expect("copy");
    assert_eq!(copy.name, "copy-1");
    client
        .delete_stored_recording("copy-1")
        .await
        .expect("delete");

    // A record on another live name that is then cancelled leaves no file.
    let voicemail = client.remove_channels(&bridge.id, &[&caller]).await;
    voicemail.expect("remove caller");
    let mut vm = RecordRequest::new("vm-1", "ulaw");
    vm.beep = Some(true);
    vm.terminate_on = Some("#".into());
    vm.max_silence_seconds = Some(10);
    client
        .record_channel(&caller, &vm)
        .await
        .expect("channel record");
    client.cancel_recording("vm-1").await.expect("cancel");
    assert!(!t.recordings.join("vm-1.ulaw").exists());

    client
        .hangup(&agent_leg.id, Some("normal"))
        .await
        .expect("hangup agent");
    client.hangup(&caller, None).await.expect("hangup caller");
    client.destroy_bridge(&bridge.id).await.expect("destroy");
    assert!(client.channels().await.expect("channels").is_empty());
}

#[tokio::test]
async fn errors_keep_status_and_asterisk_message() {
    let t = start_sim(0.0).await;
    let client = t.client();
    let missing = client.bridge("nope").await.expect_err("404");
    assert!(missing.is_not_found());
    assert_eq!(missing.message(), Some("Bridge not found"));
    assert!(client
        .channel("does-not-exist")
        .await
        .expect_err("404")
        .is_not_found());
    assert!(client
        .stop_recording("nothing")
        .await
        .expect_err("404")
        .is_not_found());
    assert!(client
        .stored_recording("does-not-exist")
        .await
        .expect_err("404")
        .is_not_found());

    let (caller, bridge) = caller_in_bridge(&t, "600", "Eve <5551005>", "silent").await;
    let mp3 = client
        .record_bridge(&bridge, &RecordRequest::new("bad", "mp3"))
        .await
        .expect_err("422");
    assert!(mp3.is_unprocessable(), "{mp3}");
    client
        .record_bridge(&bridge, &RecordRequest::new("dup", "wav"))
        .await
        .expect("first");
    let mut again = RecordRequest::new("dup", "wav");
    again.if_exists = Some(IfExists::Fail);
    let dup = client
        .record_bridge(&bridge, &again)
        .await
        .expect_err("409");
    assert!(dup.is_conflict());
    assert_eq!(
        dup.message(),
        Some("Recording 'dup' already exists and can not be overwritten")
    );
    let escape = client
        .record_channel(&caller, &RecordRequest::new("../escape", "wav"))
        .await
        .expect_err("500");
    assert!(escape.is_server_error());
    assert!(
        !t.dir.path().join("escape.wav").exists(),
        "nothing written outside the folder"
    );
}

#[tokio::test]
async fn missing_recordings_folder_answers_500_and_records_nothing() {
    let t = start_sim(0.0).await;
    std::fs::remove_dir_all(&t.recordings).expect("remove");
    let client = t.client();
    let (_, bridge) = caller_in_bridge(&t, "100", "Alice <5551001>", "talk").await;
    let err = client
        .record_bridge(&bridge, &RecordRequest::new("r", "wav"))
        .await
        .expect_err("500");
    assert_eq!(err.status().map(|s| s.as_u16()), Some(500));
    assert!(!t.recordings.exists());
}

#[tokio::test]
async fn wrong_password_is_a_401_that_names_ari_username() {
    let t = start_sim(0.0).await;
    let client = AriClient::new(&t.sim.url(), "recorder", "wrong").expect("client");
    let err = client.asterisk_info().await.expect_err("401");
    assert_eq!(err.status().map(|s| s.as_u16()), Some(401));
    let text = err.to_string();
    assert!(
        text.contains("ARI_USERNAME") && text.contains("recorder"),
        "{text}"
    );
    assert!(!text.contains("wrong"), "password not echoed: {text}");
}

#[tokio::test]
async fn record_failed_can_follow_a_201() {
    let t = start_sim(0.0).await;
    let client = t.client();
    let (events, _task) = listen_sim(&t.sim, "recorder").await;
    let (_, bridge) = caller_in_bridge(&t, "100", "Alice <5551001>", "silent").await;
    t.sim.fail_next_record("Simulated disk failure");
    let live = client
        .record_bridge(&bridge, &RecordRequest::new("doomed", "wav"))
        .await
        .expect("201");
    assert_eq!(live.state, "queued");
    events
        .wait_for("RecordingFailed", |e| {
            e.iter().any(|e| e["type"] == "RecordingFailed")
        })
        .await;
    let failed = events
        .snapshot()
        .into_iter()
        .find(|e| e["type"] == "RecordingFailed")
        .expect("event");
    assert_eq!(failed["recording"]["cause"], "Simulated disk failure");
    assert_eq!(failed["recording"]["state"], "failed");
}

#[tokio::test]
async fn scripted_parties_ring_busy_and_time_out() {
    let t = start_sim(0.0).await;
    let client = t.client();
    let (events, _task) = listen_sim(&t.sim, "recorder").await;
    t.sim.define_party(
        "PJSIP/late",
        Script::new(
            "late",
            vec![Step::Ring(2.0), Step::Answer, Step::Talk(1.0), Step::Hangup],
        ),
    );
    let late = client
        .originate(&agent("PJSIP/late"))
        .await
        .expect("originate");
    let busy = client
        .originate(&agent("Local/busy@agents"))
        .await
        .expect("originate busy");
    let never = client
        .originate(&OriginateRequest {
            timeout: Some(3),
            ..agent("Local/noanswer@agents")
        })
        .await
        .expect("originate");
    t.sim.advance(2.5);
    events
        .wait_for("late answer", |e| {
            e.iter()
                .any(|e| e["type"] == "StasisStart" && e["channel"]["id"] == late.id.as_str())
        })
        .await;
    t.sim.advance(2.0);
    events
        .wait_for("no answer", |e| {
            e.iter().any(|e| {
                e["type"] == "Dial"
                    && e["dialstatus"] == "NOANSWER"
                    && e["peer"]["id"] == never.id.as_str()
            })
        })
        .await;
    let all = events.snapshot();
    assert!(all.iter().any(|e| e["type"] == "Dial"
        && e["dialstatus"] == "BUSY"
        && e["peer"]["id"] == busy.id.as_str()));
    assert!(
        all.iter()
            .any(|e| e["type"] == "StasisEnd" && e["channel"]["id"] == late.id.as_str()),
        "late party hung up after talking"
    );
    assert!(!all
        .iter()
        .any(|e| e["type"] == "StasisStart" && e["channel"]["id"] == never.id.as_str()));
}

/// `eventFilter` keeps the event types an app does not use off its websocket (the service
/// drops Asterisk's dialplan chatter so), as long as the connection lasts.
#[tokio::test]
async fn an_event_filter_keeps_disallowed_types_off_the_websocket() {
    let t = start_sim(0.0).await;
    let client = t.client();
    let (events, _task) = listen_sim(&t.sim, "recorder").await;
    let app = client
        .set_event_filter("recorder", &["ChannelStateChange", "Dial"])
        .await
        .expect("filter");
    assert_eq!(
        app.events_disallowed,
        vec![
            serde_json::json!({"type": "ChannelStateChange"}),
            serde_json::json!({"type": "Dial"})
        ]
    );
    let refused = client.set_event_filter("nosuchapp", &[]).await;
    assert!(refused.is_err_and(|e| e.is_not_found()));
    t.sim
        .place_inbound_call("100", "Alice <5551001>", "talk")
        .expect("call placed");
    events
        .wait_for("StasisStart", |e| {
            e.iter().any(|e| e["type"] == "StasisStart")
        })
        .await;
    let caller = events.snapshot()[0]["channel"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    client.answer(&caller).await.expect("answer");
    client.hangup(&caller, None).await.expect("hang up");
    events
        .wait_for("StasisEnd", |e| e.iter().any(|e| e["type"] == "StasisEnd"))
        .await;
    assert!(
        !events.types().iter().any(|t| t == "ChannelStateChange"),
        "{:?}",
        events.types()
    );
}
