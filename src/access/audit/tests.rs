//! The audit chain's tests: appending, verifying, anchoring, folding.
use super::*;

#[test]
fn every_field_changes_the_hash() {
    let base = StoredEvent {
        seq: 1,
        at_ms: 5,
        actor: "user:a".into(),
        tenant: "t".into(),
        action: "stream".into(),
        recording_id: Some(3),
        outcome: "allowed".into(),
        client: "ip".into(),
        detail: None,
        prev_hash: GENESIS.into(),
        hash: String::new(),
        key_id: None,
    };
    let reference = event_hash(&base, None).expect("unkeyed");
    let variants = [
        StoredEvent {
            prev_hash: "1".into(),
            ..base.clone()
        },
        StoredEvent {
            seq: 2,
            ..base.clone()
        },
        StoredEvent {
            at_ms: 6,
            ..base.clone()
        },
        StoredEvent {
            actor: "user:b".into(),
            ..base.clone()
        },
        StoredEvent {
            tenant: "u".into(),
            ..base.clone()
        },
        StoredEvent {
            action: "download".into(),
            ..base.clone()
        },
        StoredEvent {
            recording_id: None,
            ..base.clone()
        },
        StoredEvent {
            outcome: "denied".into(),
            ..base.clone()
        },
        StoredEvent {
            client: "ip2".into(),
            ..base.clone()
        },
        StoredEvent {
            detail: Some(String::new()),
            ..base.clone()
        },
        // Moving text between fields must not keep the hash.
        StoredEvent {
            actor: "user:at".into(),
            tenant: String::new(),
            ..base.clone()
        },
    ];
    for (i, v) in variants.iter().enumerate() {
        assert_ne!(
            reference,
            event_hash(v, None).expect("unkeyed"),
            "variant {i}"
        );
    }
    // The stored hash itself is not an input.
    assert_eq!(
        Some(reference.clone()),
        event_hash(
            &StoredEvent {
                hash: "x".into(),
                ..base.clone()
            },
            None
        )
    );
    // Sealed: the key decides the hash, and an unknown key gives none.
    let keys = SigningKeys::parse(&["a:0123456789abcdef0123456789abcdef".into()]).expect("key");
    let other = SigningKeys::parse(&["a:fedcba9876543210fedcba9876543210".into()]).expect("key");
    let sealed = StoredEvent {
        key_id: Some("a".into()),
        ..base.clone()
    };
    let seal = event_hash(&sealed, Some(&keys)).expect("known key");
    assert_ne!(seal, reference);
    assert_ne!(Some(seal), event_hash(&sealed, Some(&other)));
    assert_eq!(event_hash(&sealed, None), None);
}
