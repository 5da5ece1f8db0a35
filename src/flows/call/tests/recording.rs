//! Recording: when it is asked for, armed at dial, refused, off; redaction in both modes and
//! dual-channel snoops; the names drawn from the call's seed.

use super::*;

pub(super) fn spans(out: &[Output]) -> Vec<(RedactMode, i64, i64, String)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Redacted(span) => Some((
                span.mode,
                span.from_offset_ms,
                span.to_offset_ms,
                span.by.clone(),
            )),
            _ => None,
        })
        .collect()
}

pub(super) fn redact(on: bool, mode: RedactMode) -> Input<'static> {
    Input::Redact(RedactRequest {
        on,
        mode,
        by: "user:agent".into(),
    })
}

/// A muted stretch lies where it was in the file; a paused one leaves no audio, so it is a
/// point and later offsets shrink by the paused time; a recording ending under a
/// redaction closes it.
#[test]
fn redactions_are_placed_in_the_file_as_each_mode_leaves_it() {
    let mut agents = AgentBook::default();
    let mut call = Call::inbound("c1", "Alice", "5551001", flow(true));
    call.handle(Input::Start, 0, &mut agents);
    // The recording is asked for as the agent is added, at 20 ms: offsets count from then.
    call.handle(Input::Event(&stasis_start("c1_L2")), 20, &mut agents);
    let (name, _) = call.live_recording().expect("recording");
    let name = name.to_string();

    let out = call.handle(redact(true, RedactMode::Mute), 1_020, &mut agents);
    assert!(matches!(
        commands(&out)[..],
        [Command::RedactRecording {
            mode: RedactMode::Mute,
            on: true,
            ..
        }]
    ));
    assert_eq!(call.live_view().recording_state, Some("muted"));
    // Asking again changes nothing.
    assert!(call
        .handle(redact(true, RedactMode::Mute), 1_500, &mut agents)
        .is_empty());
    let out = call.handle(redact(false, RedactMode::Mute), 3_020, &mut agents);
    assert_eq!(
        spans(&out),
        [(RedactMode::Mute, 1_000, 3_000, "user:agent".into())]
    );

    call.handle(redact(true, RedactMode::Pause), 4_020, &mut agents);
    assert_eq!(call.live_view().recording_state, Some("paused"));
    let out = call.handle(redact(false, RedactMode::Pause), 5_020, &mut agents);
    assert_eq!(
        spans(&out),
        [(RedactMode::Pause, 4_000, 4_000, "user:agent".into())]
    );
    call.handle(redact(true, RedactMode::Pause), 6_020, &mut agents);
    let out = call.handle(redact(false, RedactMode::Pause), 7_020, &mut agents);
    assert_eq!(
        spans(&out),
        [(RedactMode::Pause, 5_000, 5_000, "user:agent".into())]
    );

    // Refused by Asterisk: not redacted after all.
    call.handle(redact(true, RedactMode::Mute), 7_500, &mut agents);
    call.handle(
        Input::Failed {
            command: Command::RedactRecording {
                name: name.clone(),
                mode: RedactMode::Mute,
                on: true,
            },
            status: Some(404),
            message: "Recording not found".into(),
        },
        7_510,
        &mut agents,
    );
    assert_eq!(call.live_view().recording_state, Some("recording"));

    // The agent hangs up while muted: the stretch ends with the recording.
    call.handle(redact(true, RedactMode::Mute), 8_020, &mut agents);
    let out = call.handle(Input::Event(&stasis_end("c1_L2")), 9_020, &mut agents);
    assert_eq!(
        spans(&out),
        [(RedactMode::Mute, 6_000, 7_000, "user:agent".into())]
    );
    assert!(commands(&out)
        .iter()
        .any(|c| matches!(c, Command::StopRecording { name: n } if *n == name)));
}

#[test]
fn a_dual_channel_node_snoops_each_party_redacts_all_three_and_ends_the_snoops() {
    let text = "[flow]\nnumbers = [\"100\"]\nstart = \"desk\"\n[nodes.desk]\ntype = \"transfer\"\ntarget = \"PJSIP/201\"\nrecord_call = true\nchannels = \"dual\"\non_agent_hangup = \"desk\"\n";
    let (mut call, mut agents, out) = bridged(text);
    let name = call.recording().expect("bridge recording").to_string();
    let cmds = commands(&out);
    let snoops: Vec<(&str, &str)> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::Snoop { channel, role, .. } => Some((channel.as_str(), *role)),
            _ => None,
        })
        .collect();
    assert_eq!(snoops, [("c1", "caller"), ("c1_L2", "agent")]);
    let recorded: Vec<&str> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::RecordChannel { request, .. } => Some(request.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        recorded,
        [
            format!(".channels/{name}-caller").as_str(),
            format!(".channels/{name}-agent").as_str()
        ]
    );

    // A pause redacts the bridge's recording and each party's.
    let out = call.handle(
        Input::Redact(RedactRequest {
            on: true,
            mode: RedactMode::Mute,
            by: "user:agent".into(),
        }),
        1_000,
        &mut agents,
    );
    let redacted = commands(&out)
        .iter()
        .filter(|c| matches!(c, Command::RedactRecording { on: true, .. }))
        .count();
    assert_eq!(redacted, 3);

    // The agent leaves and the caller goes on: the caller's snoop is hung up with the segment.
    let out = call.handle(Input::Event(&stasis_end("c1_L2")), 3_000, &mut agents);
    let hung: Vec<&str> = commands(&out)
        .iter()
        .filter_map(|c| match c {
            Command::Hangup { channel } => Some(channel.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        hung.contains(&"c1_S3") && hung.contains(&"c1_S4"),
        "{hung:?}"
    );
}

#[test]
fn a_node_with_pause_recording_redacts_its_segment_from_the_start() {
    let text = "[flow]\nnumbers = [\"100\"]\nstart = \"pay\"\n[nodes.pay]\ntype = \"transfer\"\ntarget = \"PJSIP/201\"\nrecord_call = true\npause_recording = true\n";
    let (mut call, mut agents, _) = bridged(text);
    let name = call.recording().expect("recording").to_string();
    let started = Event::RecordingStarted(crate::ari::events::RecordingStarted {
        recording: crate::ari::models::LiveRecording {
            name: name.clone(),
            format: "wav".into(),
            state: "recording".into(),
            target_uri: "bridge:c1_B1".into(),
            duration: None,
            talking_duration: None,
            silence_duration: None,
            cause: None,
        },
        timestamp: String::new(),
        application: "recorder".into(),
        asterisk_id: None,
    });
    let out = call.handle(Input::Event(&started), 30, &mut agents);
    assert!(commands(&out).iter().any(|c| matches!(c,
        Command::RedactRecording { name: n, on: true, mode: RedactMode::Mute } if *n == name)));
    assert_eq!(call.live_view().recording_state, Some("muted"));
    // The segment ends: its stretch is stored, by the node.
    let out = call.handle(Input::Event(&stasis_end("c1_L2")), 5_030, &mut agents);
    assert_eq!(
        spans(&out),
        [(RedactMode::Mute, 0, 5_000, "node:pay".into())]
    );
}

#[test]
fn recording_from_dial_arms_at_dial_marks_the_answer_and_hangs_up_by_name() {
    let mut agents = AgentBook::default();
    let mut call = Call::inbound("c1", "Alice", "5551001", flow(true))
        .recording_from_dial(true)
        .with_channel_name("Local/100@inbound-00000001;2");
    let out = call.handle(Input::Start, 0, &mut agents);
    let cmds = commands(&out);
    // Originate first (ringing overlaps the record request), then the recording.
    let originate = cmds
        .iter()
        .position(|c| matches!(c, Command::Originate { .. }))
        .expect("originate");
    let record = cmds
        .iter()
        .position(|c| matches!(c, Command::RecordBridge { bridge, .. } if bridge == "c1_B1"))
        .expect("armed at dial");
    assert!(originate < record);
    let name = call.recording().expect("recording").to_string();

    let out = call.handle(Input::Event(&stasis_start("c1_L2")), 1500, &mut agents);
    assert!(out.iter().any(|o| matches!(o,
        Output::RecordingAnswered { name: n, callee, at_ms: 1500 } if *n == name && callee == "PJSIP/201")));
    // Both in the bridge: no second recording.
    let out = call.handle(
        Input::Event(&entered("c1_B1", &["c1", "c1_L2"], "c1_L2")),
        1510,
        &mut agents,
    );
    assert!(!commands(&out)
        .iter()
        .any(|c| matches!(c, Command::RecordBridge { .. })));

    // The agent hangs up: the caller is hung up by name, not by id.
    let out = call.handle(Input::Event(&stasis_end("c1_L2")), 9000, &mut agents);
    let cmds = commands(&out);
    assert!(matches!(cmds[0], Command::StopRecording { name: n } if *n == name));
    assert!(cmds.iter().any(
        |c| matches!(c, Command::Hangup { channel } if channel == "Local/100@inbound-00000001;2")
    ));
}

#[test]
fn a_recording_armed_at_dial_that_nobody_answers_is_cancelled() {
    let mut agents = AgentBook::default();
    let mut call = Call::inbound("c1", "Alice", "5551001", flow(true)).recording_from_dial(true);
    call.handle(Input::Start, 0, &mut agents);
    let name = call.recording().expect("armed").to_string();
    let busy = Event::Dial(crate::ari::events::Dial {
        peer: channel("c1_L2"),
        caller: None,
        forwarded: None,
        forward: None,
        dialstring: None,
        dialstatus: "BUSY".into(),
        timestamp: String::new(),
        application: "recorder".into(),
        asterisk_id: None,
    });
    let out = call.handle(Input::Event(&busy), 500, &mut agents);
    let cancelled = out
        .iter()
        .position(|o| matches!(o, Output::RecordingCancelled { name: n } if *n == name))
        .expect("library told");
    let command = out
        .iter()
        .position(
            |o| matches!(o, Output::Command(Command::CancelRecording { name: n }) if *n == name),
        )
        .expect("discarded in Asterisk");
    assert!(
        cancelled < command,
        "the library hears it before the file goes"
    );
    assert!(call.recording().is_none());
}

#[test]
fn record_call_off_never_asks_for_a_recording() {
    let mut agents = AgentBook::default();
    let mut call = Call::inbound("c1", "Alice", "5551001", flow(false));
    let mut all = call.handle(Input::Start, 0, &mut agents);
    all.extend(call.handle(Input::Event(&stasis_start("c1_L2")), 1, &mut agents));
    all.extend(call.handle(
        Input::Event(&entered("c1_B1", &["c1", "c1_L2"], "c1_L2")),
        2,
        &mut agents,
    ));
    all.extend(call.handle(Input::Event(&stasis_end("c1")), 3, &mut agents));
    assert!(!all.iter().any(|o| matches!(
        o,
        Output::RecordingStarted(_) | Output::Command(Command::RecordBridge { .. })
    )));
    assert!(call.is_finished());
}

/// The row of the recording `out` starts.
pub(super) fn recorded_row(out: &[Output]) -> Option<Box<RecordingStarted>> {
    out.iter().find_map(|o| match o {
        Output::RecordingStarted(row) => Some(row.clone()),
        _ => None,
    })
}

/// A record request Asterisk refuses is stored as failed, with the reason; the call itself
/// goes on bridged.
#[test]
fn a_refused_record_request_is_stored_as_failed_and_the_call_goes_on() {
    let (mut call, mut agents, out) = bridged(
        "[flow]\nnumbers = [\"100\"]\nstart = \"desk\"\n[nodes.desk]\ntype = \"transfer\"\ntarget = \"PJSIP/201\"\nrecord_call = true\n",
    );
    let record = commands(&out)
        .into_iter()
        .find(|c| matches!(c, Command::RecordBridge { .. }))
        .cloned()
        .expect("record request");
    let Command::RecordBridge { request, .. } = &record else {
        unreachable!()
    };
    let name = request.name.clone();
    let out = call.handle(
        Input::Failed {
            command: record,
            status: Some(409),
            message: "Recording already in progress".into(),
        },
        100,
        &mut agents,
    );
    assert!(
        out.contains(&Output::RecordingRefused {
            name,
            cause: "409 Recording already in progress".into()
        }),
        "{out:?}"
    );
    assert!(!call.is_finished());
    assert!(!hung_up(&out, "c1"));
}

/// The name of the recording a transfer asks for once its agent answers, for a call seeded so.
pub(super) fn recording_name_with_seed(seed: u64) -> String {
    let mut agents = AgentBook::default();
    let mut call = Call::inbound("c1", "Alice", "5551001", flow(true)).seeded(seed);
    call.handle(Input::Start, 0, &mut agents);
    let out = call.handle(Input::Event(&stasis_start("c1_L2")), 10, &mut agents);
    commands(&out)
        .iter()
        .find_map(|c| match c {
            Command::RecordBridge { request, .. } => Some(request.name.clone()),
            _ => None,
        })
        .expect("a recording asked for")
}

/// The machine draws its randomness from its own seed, not from the world: the same seed names
/// the recording alike, another seed differently (the runtime seeds each call on its own).
#[test]
fn a_calls_recording_names_come_from_its_seed() {
    let name = recording_name_with_seed(7);
    assert!(name.starts_with("transfer-19700101-000000-"), "{name}");
    assert_eq!(name, recording_name_with_seed(7));
    assert_ne!(name, recording_name_with_seed(8));
}
