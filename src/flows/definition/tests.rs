//! The flow files' tests.

use super::*;
use std::path::{Path, PathBuf};

fn parse(text: &str) -> Result<Flow, Vec<FlowError>> {
    parse_flow(Path::new("dialplans/support.toml"), text)
}

const GOOD: &str = r#"
[flow]
numbers = ["100"]
start = "hello"

[nodes.hello]
type = "play_audio"
media = ["sound:hello-world"]
next = "desk"

[nodes.desk]
type = "transfer"
target = "Local/201@agents"
record_call = true
on_failure = "vm"

[nodes.vm]
type = "voicemail"
mailbox = "support"
"#;

#[test]
fn a_good_flow_parses_with_defaults() {
    let flow = parse(GOOD).expect("valid");
    assert_eq!(flow.name, "support");
    assert_eq!(flow.tenant, "default");
    assert_eq!(flow.nodes["desk"].kind.record_call(), Some(true));
    match &flow.nodes["vm"].kind {
        NodeKind::Voicemail {
            beep,
            max_duration,
            max_silence,
            ..
        } => {
            assert!(*beep);
            assert_eq!((*max_duration, *max_silence), (120, 10));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_consent_node_needs_its_edges_and_two_different_keys() {
    let node = |extra: &str| {
        format!(
            "[flow]\nnumbers = [\"100\"]\nstart = \"ask\"\n[nodes.ask]\ntype = \"consent\"\nmedia = [\"sound:hello-world\"]\n{extra}\n[nodes.desk]\ntype = \"hangup\"\n"
        )
    };
    let flow = parse(&node("next = \"desk\"")).expect("valid");
    match &flow.nodes["ask"].kind {
        NodeKind::Consent {
            grant_key,
            decline_key,
            timeout,
            retries,
            grant_on_timeout,
            ..
        } => assert_eq!(
            (
                grant_key.as_str(),
                decline_key.as_str(),
                *timeout,
                *retries,
                *grant_on_timeout
            ),
            ("1", "2", 5, 2, false)
        ),
        other => panic!("{other:?}"),
    }
    for (extra, field) in [
        ("on_granted = \"desk\"", "next"),
        ("next = \"desk\"\ngrant_key = \"2\"", "decline_key"),
        ("next = \"desk\"\ngrant_key = \"12\"", "grant_key"),
        ("next = \"desk\"\non_timeout = \"maybe\"", "on_timeout"),
        ("next = \"nowhere\"", "next"),
    ] {
        let errors = parse(&node(extra)).expect_err(extra);
        assert!(
            errors.iter().any(|e| e.field.as_deref() == Some(field)),
            "{extra}: {errors:?}"
        );
    }
}

#[test]
fn feature_codes_come_in_pairs_of_keypad_keys() {
    let with =
        |extra: &str| GOOD.replace("start = \"hello\"", &format!("start = \"hello\"\n{extra}"));
    let flow = parse(&with("pause_code = \"*1\"\nresume_code = \"*2\"")).expect("valid");
    assert_eq!(
        flow.feature_codes,
        Some(FeatureCodes {
            pause: "*1".into(),
            resume: "*2".into(),
            leg: FeatureLeg::Agent
        })
    );
    for (extra, field) in [
        ("pause_code = \"*1\"", "resume_code"),
        ("pause_code = \"*1\"\nresume_code = \"*1\"", "resume_code"),
        ("pause_code = \"12345\"\nresume_code = \"*2\"", "pause_code"),
        (
            "pause_code = \"*1\"\nresume_code = \"*2\"\nfeature_code_leg = \"both\"",
            "feature_code_leg",
        ),
    ] {
        let errors = parse(&with(extra)).expect_err(extra);
        assert!(
            errors.iter().any(|e| e.field.as_deref() == Some(field)),
            "{extra}: {errors:?}"
        );
    }
}

#[test]
fn recording_separation_is_one_of_two_named_values() {
    let file = Path::new("settings.toml");
    let default = parse_settings(file, "").expect("empty settings");
    assert_eq!(default.recording_separation, RecordingSeparation::PerCall);
    let set = parse_settings(file, "recording_separation = \"per_segment\"\n").expect("valid");
    assert_eq!(set.recording_separation, RecordingSeparation::PerSegment);
    let errors = parse_settings(file, "recording_separation = \"stereo\"\n").expect_err("bad");
    assert_eq!(errors[0].field.as_deref(), Some("recording_separation"));
}

#[test]
fn on_agent_hangup_must_name_a_node_and_may_loop_back() {
    let flow = |edge: &str| {
        format!("[flow]\nnumbers = [\"100\"]\nstart = \"desk\"\n[nodes.desk]\ntype = \"transfer\"\ntarget = \"PJSIP/201\"\non_agent_hangup = \"{edge}\"\n")
    };
    // Back to the same desk after each agent: a loop, but one that waits on people.
    parse_flow(Path::new("desk.toml"), &flow("desk")).expect("a desk that loops back");
    let errors = parse_flow(Path::new("desk.toml"), &flow("nowhere")).expect_err("dangling");
    assert_eq!(
        errors[0].field.as_deref(),
        Some("on_agent_hangup"),
        "{errors:?}"
    );
}

#[test]
fn errors_name_file_node_and_field_and_all_are_reported() {
    let text = r#"
[flow]
numbers = ["100"]
start = "desk"

[nodes.desk]
type = "transfer"
on_failure = "nowhere"

[nodes.odd]
type = "conference"

[nodes.loud]
type = "play_audio"
media = ["http://x"]
"#;
    let errors = parse(text).expect_err("invalid");
    let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    let joined = shown.join("\n");
    assert!(
        joined.contains(r#"dialplans/support.toml: node "desk", field "target": missing"#),
        "{joined}"
    );
    assert!(
        joined.contains(r#"node "desk", field "on_failure": points to node "nowhere""#),
        "{joined}"
    );
    assert!(
        joined.contains(r#"node "odd", field "type": unknown node type "conference""#),
        "{joined}"
    );
    assert!(joined.contains(r#"node "loud", field "media""#), "{joined}");
    assert_eq!(errors.len(), 4, "{joined}");
}

#[test]
fn a_cycle_without_a_wait_is_refused_but_one_through_a_prompt_is_fine() {
    let spin = r#"
[flow]
numbers = ["1"]
start = "a"
[nodes.a]
type = "transfer"
target = "PJSIP/a"
on_failure = "b"
[nodes.b]
type = "hunt_group"
members = ["PJSIP/b"]
on_failure = "a"
"#;
    let errors = parse(spin).expect_err("spins");
    assert!(
        errors[0]
            .message
            .contains("cycle without a wait: a -> b -> a"),
        "{errors:?}"
    );
    let waits = spin.replace("on_failure = \"a\"", "on_failure = \"sorry\"")
        + "[nodes.sorry]\ntype = \"play_audio\"\nmedia = [\"sound:vm-goodbye\"]\nnext = \"a\"\n";
    parse(&waits).expect("a prompt on the loop is a wait");
}

#[test]
fn duplicate_numbers_across_files_are_refused() {
    let a = parse(GOOD).expect("valid");
    let mut b = parse(GOOD).expect("valid");
    b.name = "other".into();
    b.file = PathBuf::from("dialplans/other.toml");
    let (set, errors) = assemble(vec![a, b], Settings::default());
    assert_eq!(set.flows.len(), 1);
    assert_eq!(
        errors[0].to_string(),
        r#"dialplans/other.toml, field "numbers": number "100" is already used by flow "support""#
    );
}

#[test]
fn syntax_errors_give_the_line() {
    let errors = parse("[flow]\nnumbers = [\n").expect_err("broken");
    assert!(errors[0].message.starts_with("line "), "{errors:?}");
}

/// `greeting_discloses_recording` speaks of a greeting: without one it is refused, naming the
/// node and the field.
#[test]
fn a_voicemail_disclosing_recording_needs_its_greeting() {
    let flow = |extra: &str| {
        format!("[flow]\nnumbers = [\"600\"]\nstart = \"vm\"\n[nodes.vm]\ntype = \"voicemail\"\nmailbox = \"sales\"\n{extra}greeting_discloses_recording = true\n")
    };
    parse_flow(
        Path::new("vm.toml"),
        &flow("greeting = \"sound:vm-intro\"\n"),
    )
    .expect("a greeting that discloses");
    let errors = parse_flow(Path::new("vm.toml"), &flow("")).expect_err("no greeting");
    assert_eq!(
        (errors[0].node.as_deref(), errors[0].field.as_deref()),
        (Some("vm"), Some("greeting_discloses_recording")),
        "{errors:?}"
    );
}

#[test]
fn redaction_is_said_by_the_flow_and_by_nodes_that_bridge() {
    let flow = parse(&GOOD.replace("start = \"hello\"", "start = \"hello\"\nredaction = false"))
        .expect("valid");
    assert_eq!(flow.redaction, Some(false));
    assert!(flow.node_redaction.is_empty());
    let flow = parse(&GOOD.replace("record_call = true", "record_call = true\nredaction = true"))
        .expect("valid");
    assert_eq!(
        (flow.redaction, flow.node_redaction.get("desk")),
        (None, Some(&true))
    );
    // A prompt bridges nothing: there is nothing to pause.
    let errors = parse(&GOOD.replace("next = \"desk\"", "next = \"desk\"\nredaction = false"))
        .expect_err("not on a prompt");
    assert_eq!(errors[0].node.as_deref(), Some("hello"));
    assert_eq!(errors[0].field.as_deref(), Some("redaction"));
    let errors = parse(&GOOD.replace(
        "record_call = true",
        "record_call = true\nredaction = \"no\"",
    ))
    .expect_err("a boolean");
    assert!(errors[0].message.contains("true or false"), "{errors:?}");
}
