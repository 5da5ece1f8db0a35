//! Nodes that play and listen: play_audio, voicemail, consent; the hop limit; a caller hanging
//! up in any state.

use super::recording::recorded_row;
use super::*;
use crate::library::Consent;

/// A play_audio node plays its prompts in order, each once the one before has finished, then
/// goes to `next`.
#[test]
fn play_audio_plays_each_prompt_in_turn_then_goes_on() {
    let (mut call, mut agents, out) = started(
        "[flow]\nnumbers = [\"100\"]\nstart = \"hello\"\n[nodes.hello]\ntype = \"play_audio\"\nmedia = [\"sound:hello-world\", \"sound:vm-goodbye\"]\nnext = \"desk\"\n[nodes.desk]\ntype = \"transfer\"\ntarget = \"PJSIP/201\"\n",
    );
    let first = plays(&out);
    assert_eq!(first.len(), 1, "one prompt at a time: {out:?}");
    assert_eq!(first[0].1, "sound:hello-world");
    assert!(originated(&out).is_empty());
    // Another playback finishing changes nothing.
    assert!(call
        .handle(Input::Event(&playback_finished("other")), 50, &mut agents)
        .is_empty());
    let out = call.handle(
        Input::Event(&playback_finished(&first[0].0)),
        100,
        &mut agents,
    );
    let second = plays(&out);
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].1, "sound:vm-goodbye");
    // A prompt Asterisk refuses to play is passed over like one that finished.
    let out = call.handle(
        Input::Failed {
            command: Command::Play {
                channel: "c1".into(),
                playback: second[0].0.clone(),
                media: second[0].1.clone(),
            },
            status: Some(404),
            message: "Media not found".into(),
        },
        200,
        &mut agents,
    );
    let legs = originated(&out);
    assert_eq!(legs.len(), 1, "{out:?}");
    assert_eq!(legs[0].1, "PJSIP/201");
}

/// A flow that loops on itself is ended at the hop limit, not followed for ever.
#[test]
fn a_flow_that_loops_is_ended_at_the_hop_limit() {
    let (mut call, mut agents, mut out) = started(
        "[flow]\nnumbers = [\"100\"]\nstart = \"again\"\n[nodes.again]\ntype = \"play_audio\"\nmedia = [\"sound:beep\"]\nnext = \"again\"\n",
    );
    let mut played = 0;
    while let Some((playback, _)) = plays(&out).pop() {
        played += 1;
        assert!(played <= MAX_HOPS as usize, "followed past the hop limit");
        out = call.handle(
            Input::Event(&playback_finished(&playback)),
            played as u64,
            &mut agents,
        );
    }
    assert_eq!(played, MAX_HOPS as usize);
    assert!(hung_up(&out, "c1"), "{out:?}");
    assert_eq!(out.last(), Some(&Output::Finished));
}

/// Voicemail: the greeting, then the caller's channel recorded as mu-law with the node's stop
/// conditions (length, silence, `#`); the message finishing ends the call. The row is written
/// before the record request, so `RecordingFinished` always finds it.
#[test]
fn voicemail_greets_records_with_its_stop_conditions_and_ends_when_the_message_does() {
    let (mut call, mut agents, out) = started(
        "[flow]\nnumbers = [\"600\"]\nstart = \"vm\"\n[nodes.vm]\ntype = \"voicemail\"\nmailbox = \"sales\"\ngreeting = \"sound:vm-intro\"\nmax_duration = 90\nmax_silence = 4\n",
    );
    let greeting = plays(&out);
    assert_eq!(greeting.len(), 1);
    assert_eq!(greeting[0].1, "sound:vm-intro");
    let out = call.handle(
        Input::Event(&playback_finished(&greeting[0].0)),
        3_000,
        &mut agents,
    );
    let row_at = out
        .iter()
        .position(|o| matches!(o, Output::RecordingStarted(_)))
        .expect("row");
    let (request_at, request) = out
        .iter()
        .enumerate()
        .find_map(|(i, o)| match o {
            Output::Command(Command::RecordChannel { channel, request }) if channel == "c1" => {
                Some((i, request.clone()))
            }
            _ => None,
        })
        .expect("the caller's channel recorded");
    assert!(row_at < request_at);
    assert_eq!(request.format, "ulaw");
    assert_eq!(request.max_duration_seconds, Some(90));
    assert_eq!(request.max_silence_seconds, Some(4));
    assert_eq!(request.terminate_on.as_deref(), Some("#"));
    assert!(request.name.starts_with("voicemail-sales-"));
    let out = call.handle(
        Input::Event(&recording_finished(&request.name, "channel:c1")),
        20_000,
        &mut agents,
    );
    assert!(hung_up(&out, "c1"), "{out:?}");
    assert!(!commands(&out).iter().any(|c| matches!(
        c,
        Command::StopRecording { .. } | Command::CancelRecording { .. }
    )));
    assert_eq!(out.last(), Some(&Output::Finished));
}

/// A caller hanging up while leaving a message keeps it: Asterisk finishes the recording
/// itself, so nothing stops or cancels it.
#[test]
fn a_caller_hanging_up_during_a_message_keeps_it() {
    let (mut call, mut agents, out) = started(
        "[flow]\nnumbers = [\"600\"]\nstart = \"vm\"\n[nodes.vm]\ntype = \"voicemail\"\nmailbox = \"sales\"\n",
    );
    assert!(commands(&out)
        .iter()
        .any(|c| matches!(c, Command::RecordChannel { .. })));
    let out = call.handle(Input::Event(&stasis_end("c1")), 5_000, &mut agents);
    assert!(!commands(&out).iter().any(|c| matches!(
        c,
        Command::StopRecording { .. } | Command::CancelRecording { .. }
    )));
    assert_eq!(out.last(), Some(&Output::Finished));
}

/// A consent node: the grant key sends the caller on with consent granted on the recordings;
/// no key at all, after its retries, counts as `on_timeout` says (here declined: the call is
/// not recorded).
#[test]
fn a_consent_node_records_the_callers_answer_or_its_silence() {
    let text = "[flow]\nnumbers = [\"100\"]\nstart = \"ask\"\n[nodes.ask]\ntype = \"consent\"\nmedia = [\"sound:consent\"]\ntimeout = 5\nretries = 1\non_timeout = \"declined\"\nnext = \"desk\"\n[nodes.desk]\ntype = \"transfer\"\ntarget = \"PJSIP/201\"\nrecord_call = true\n";
    // Pressed 1 while the prompt played.
    let mut agents = AgentBook::default();
    let mut call = Call::inbound("c1", "Alice", "5551001", flow_of(text));
    let out = call.handle(Input::Start, 0, &mut agents);
    let prompt = plays(&out);
    assert_eq!(prompt.len(), 1);
    call.handle(Input::Event(&dtmf("c1", "1")), 500, &mut agents);
    let out = call.handle(
        Input::Event(&playback_finished(&prompt[0].0)),
        1_000,
        &mut agents,
    );
    let legs = originated(&out);
    assert_eq!(legs.len(), 1, "on to the desk: {out:?}");
    let out = call.handle(Input::Event(&stasis_start(&legs[0].0)), 2_000, &mut agents);
    let row = recorded_row(&out).expect("recorded");
    assert_eq!(row.consent, crate::library::Consent::Granted);

    // Silence: asked twice (one retry), then declined, and the desk's call is recorded so.
    let mut agents = AgentBook::default();
    let mut call = Call::inbound("c2", "Bob", "5551002", flow_of(text));
    let mut out = call.handle(Input::Start, 0, &mut agents);
    let mut asked = 0;
    let mut now = 0;
    while let Some((playback, _)) = plays(&out).pop() {
        asked += 1;
        now += 1_000;
        out = call.handle(
            Input::Event(&playback_finished(&playback)),
            now,
            &mut agents,
        );
        let timer = out.iter().find_map(|o| match o {
            Output::Timer { key, after } if *after == Duration::from_secs(5) => Some(*key),
            _ => None,
        });
        let Some(timer) = timer else { break };
        now += 5_000;
        out = call.handle(Input::Timer(timer), now, &mut agents);
    }
    assert_eq!(asked, 2);
    let legs = originated(&out);
    assert_eq!(legs.len(), 1, "{out:?}");
    let out = call.handle(
        Input::Event(&stasis_start(&legs[0].0)),
        now + 1_000,
        &mut agents,
    );
    // Declined: the call is bridged but not recorded, and listed as such with the reason.
    assert!(!out.iter().any(|o| matches!(o, Output::RecordingStarted(_))));
    let not_recorded = out.iter().find_map(|o| match o {
        Output::NotRecorded(row, switch) => Some((row.consent, *switch)),
        _ => None,
    });
    assert_eq!(
        not_recorded,
        Some((crate::library::Consent::Denied, "consent")),
        "{out:?}"
    );
}

/// The caller hanging up in any state ends the call cleanly: whatever rings is hung up,
/// whatever records is stopped (never discarded), every bridge is destroyed, no agent stays
/// busy.
#[test]
fn a_caller_hanging_up_in_any_state_leaves_nothing_behind() {
    let text = "[flow]\nnumbers = [\"100\"]\nstart = \"hello\"\n[nodes.hello]\ntype = \"play_audio\"\nmedia = [\"sound:hello-world\"]\nnext = \"q\"\n[nodes.q]\ntype = \"queue\"\nagents = [\"PJSIP/201\"]\nmax_wait = 60\nrecord_call = true\n";
    // Each state, reached by the inputs after Start (a function of the outputs so far).
    type Step = fn(&mut Call, &mut AgentBook, &[Output]) -> Vec<Output>;
    let greeting: Step = |_, _, out| out.to_vec();
    let queued: Step = |call, agents, out| {
        let (playback, _) = plays(out).pop().expect("greeting");
        call.handle(Input::Event(&playback_finished(&playback)), 1_000, agents)
    };
    let bridged: Step = |call, agents, out| {
        let (playback, _) = plays(out).pop().expect("greeting");
        let out = call.handle(Input::Event(&playback_finished(&playback)), 1_000, agents);
        let (leg, _) = originated(&out).pop().expect("agent rung");
        call.handle(Input::Event(&stasis_start(&leg)), 2_000, agents)
    };
    for (state, step) in [
        ("greeting", greeting),
        ("queued", queued),
        ("bridged", bridged),
    ] {
        let mut agents = AgentBook::default();
        let mut call = Call::inbound("c1", "Alice", "5551001", flow_of(text));
        let started = call.handle(Input::Start, 0, &mut agents);
        let reached = step(&mut call, &mut agents, &started);
        let recording = call.recording().map(String::from);
        let out = call.handle(Input::Event(&stasis_end("c1")), 5_000, &mut agents);
        let cmds = commands(&out);
        assert_eq!(out.last(), Some(&Output::Finished), "{state}: {out:?}");
        assert!(!agents.is_busy("PJSIP/201"), "{state}: agent still busy");
        if state != "greeting" {
            assert!(
                cmds.iter()
                    .any(|c| matches!(c, Command::DestroyBridge { .. })),
                "{state}: bridges left: {out:?}"
            );
        }
        for (leg, _) in originated(&reached) {
            assert!(hung_up(&out, &leg), "{state}: {leg} left up: {out:?}");
        }
        if let Some(name) = recording {
            assert!(
                cmds.iter()
                    .any(|c| matches!(c, Command::StopRecording { name: n } if *n == name)),
                "{state}: recording not stopped: {out:?}"
            );
        }
        assert!(!cmds
            .iter()
            .any(|c| matches!(c, Command::CancelRecording { .. })));
        // Events after the end change nothing.
        assert!(call
            .handle(Input::Event(&stasis_end("c1")), 6_000, &mut agents)
            .is_empty());
    }
}

/// The consent a voicemail message is stored with, for a voicemail node with these extra lines.
fn voicemail_consent(extra: &str) -> Consent {
    let (mut call, mut agents, out) = started(&format!(
        "[flow]\nnumbers = [\"600\"]\nstart = \"vm\"\n[nodes.vm]\ntype = \"voicemail\"\nmailbox = \"sales\"\ngreeting = \"sound:vm-intro\"\n{extra}"
    ));
    let greeting = plays(&out);
    let out = call.handle(
        Input::Event(&playback_finished(&greeting[0].0)),
        3_000,
        &mut agents,
    );
    recorded_row(&out).expect("the message's row").consent
}

/// A message left after a greeting that says it is recorded is consent by conduct (`implied`);
/// after a greeting that does not say so, the consent stays unknown.
#[test]
fn a_greeting_that_discloses_recording_makes_the_message_implied_consent() {
    assert_eq!(
        voicemail_consent("greeting_discloses_recording = true\n"),
        Consent::Implied
    );
    assert_eq!(voicemail_consent(""), Consent::Unknown);
}
