//! The runtime's tests.

use super::*;
use crate::ari::RecordRequest;
use crate::flows::call::{Command, Output};

fn add(bridge: &str) -> Command {
    Command::AddChannels {
        bridge: bridge.into(),
        channels: vec!["c1_L2".into()],
    }
}

fn record(bridge: &str) -> Output {
    Output::Command(Command::RecordBridge {
        bridge: bridge.into(),
        request: RecordRequest::new("transfer-1", "wav"),
    })
}

#[test]
fn the_record_request_of_the_same_bridge_goes_beside_the_add() {
    let mut queue: std::collections::VecDeque<Output> =
        vec![record("c1_B1"), Output::Finished].into();
    let (notes, beside) = record_beside(&add("c1_B1"), &mut queue).expect("beside");
    assert!(notes.is_empty());
    assert!(matches!(beside, Command::RecordBridge { bridge, .. } if bridge == "c1_B1"));
    assert!(
        matches!(queue.front(), Some(Output::Finished)),
        "the rest stays"
    );
}

#[test]
fn anything_else_between_or_another_bridge_keeps_the_order() {
    let between = Output::Timer {
        key: 1,
        after: std::time::Duration::from_secs(1),
    };
    for queue in [vec![between, record("c1_B1")], vec![record("c1_B2")]] {
        let mut queue: std::collections::VecDeque<Output> = queue.into();
        let before = queue.len();
        assert!(record_beside(&add("c1_B1"), &mut queue).is_none());
        assert_eq!(queue.len(), before, "nothing taken");
    }
    let mut queue: std::collections::VecDeque<Output> = vec![record("c1_B1")].into();
    let hangup = Command::Hangup {
        channel: "c1".into(),
    };
    assert!(record_beside(&hangup, &mut queue).is_none());
}
