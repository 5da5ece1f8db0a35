//! The watched ARI websocket: reconnects with resync after a dropped socket, detects a silent
//! dead one, survives unknown events, takes the app back after `ApplicationReplaced`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ari_recorder::ari::stream::{run_event_stream, Notice};
use ari_recorder::ari::{AriClient, RecordRequest};
use ari_recorder::metrics::Metrics;
use ari_recorder::stasis::{self, AppInput, Change, Registry};
use common::{fast_timing, start_sim, wait_until, PASSWORD, USER};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

/// The first item of `rx` that `pick` maps to Some, within 10 s.
async fn next_matching<I, T>(
    rx: &mut mpsc::Receiver<I>,
    what: &str,
    pick: impl Fn(I) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let item = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .unwrap_or_else(|| panic!("channel ended waiting for {what}"));
        if let Some(found) = pick(item) {
            return found;
        }
    }
}

async fn next_notice(
    rx: &mut mpsc::Receiver<Notice>,
    what: &str,
    pred: impl Fn(&Notice) -> bool,
) -> Notice {
    next_matching(rx, what, |n| pred(&n).then_some(n)).await
}

async fn next_change(
    rx: &mut mpsc::Receiver<AppInput>,
    what: &str,
    pred: impl Fn(&Change) -> bool,
) -> Change {
    next_matching(rx, what, |input| match input {
        AppInput::Change(c) if pred(&c) => Some(c),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn dropped_socket_reconnects_and_resync_recovers_what_was_missed() {
    let t = start_sim(0.0).await;
    let client = t.client();
    // The event stream and the Stasis runtime alone, without call flows, so the test drives
    // the call itself.
    let metrics = Arc::new(Metrics::default());
    let (stop, shutdown) = watch::channel(false);
    let (notice_tx, notice_rx) = mpsc::channel(ari_recorder::ari::stream::NOTICE_QUEUE);
    tokio::spawn(run_event_stream(
        client.clone(),
        "recorder".into(),
        fast_timing(),
        metrics.clone(),
        notice_tx,
        shutdown,
    ));
    let registry = Arc::new(Mutex::new(Registry::default()));
    let (input_tx, mut changes) = mpsc::channel(ari_recorder::ari::stream::NOTICE_QUEUE);
    tokio::spawn(stasis::run(
        client.clone(),
        "recorder".into(),
        registry.clone(),
        metrics.clone(),
        notice_rx,
        input_tx,
        stasis::StasisOptions::default(),
    ));
    wait_until("the app connected", || t.sim.app_connected("recorder")).await;

    t.sim
        .place_inbound_call("700", "Frank <5551006>", "silent")
        .expect("call");
    let started = next_change(&mut changes, "call start", |c| {
        matches!(
            c,
            Change::CallStarted {
                recovered: false,
                ..
            }
        )
    })
    .await;
    let Change::CallStarted { channel, args, .. } = started else {
        unreachable!()
    };
    let caller = channel.id.clone();
    assert_eq!(args, vec!["inbound".to_string(), "700".to_string()]);
    client.answer(&caller).await.expect("answer");
    let bridge = client.create_bridge("mixing", None).await.expect("bridge");
    client
        .add_channels(&bridge.id, &[&caller], None)
        .await
        .expect("add");
    client
        .record_bridge(&bridge.id, &RecordRequest::new("rec-away", "wav"))
        .await
        .expect("record");
    next_change(&mut changes, "recording start", |c| {
        matches!(c, Change::RecordingStarted { .. })
    })
    .await;

    // The socket drops; while away the caller is hung up and the recording ends with the bridge.
    t.sim.drop_websockets();
    client
        .hangup(&caller, None)
        .await
        .expect("hangup while away");
    client
        .destroy_bridge(&bridge.id)
        .await
        .expect("destroy while away");

    let ended = next_change(&mut changes, "recovered end", |c| {
        matches!(c, Change::CallEnded { .. })
    })
    .await;
    assert_eq!(
        ended,
        Change::CallEnded {
            channel_id: caller.clone(),
            recovered: true
        }
    );
    let finished = next_change(&mut changes, "recovered recording", |c| {
        matches!(c, Change::RecordingFinished { .. })
    })
    .await;
    assert!(
        matches!(
            &finished,
            Change::RecordingFinished {
                name,
                duration: None,
                recovered: true,
                ..
            } if name == "rec-away"
        ),
        "{finished:?}"
    );
    assert!(metrics.reconnects() >= 1);
    assert_eq!(registry.lock().expect("lock").calls_active(), 0);
    let _ = stop.send(true);
}

#[tokio::test]
async fn a_silent_dead_socket_is_detected_and_replaced() {
    let t = start_sim(0.0).await;
    let client = t.client();
    let metrics = Arc::new(Metrics::default());
    let (tx, mut rx) = mpsc::channel(ari_recorder::ari::stream::NOTICE_QUEUE);
    let (_stop, shutdown) = watch::channel(false);
    tokio::spawn(run_event_stream(
        client,
        "recorder".into(),
        fast_timing(),
        metrics.clone(),
        tx,
        shutdown,
    ));
    next_notice(&mut rx, "first connect", |n| {
        matches!(n, Notice::Connected { resync: false })
    })
    .await;
    t.sim.stall_websockets(Duration::from_secs(2));
    let lost = next_notice(&mut rx, "dead socket", |n| {
        matches!(n, Notice::Disconnected { .. })
    })
    .await;
    let Notice::Disconnected { reason } = lost else {
        unreachable!()
    };
    assert!(reason.contains("dead"), "{reason}");
    next_notice(&mut rx, "reconnect", |n| {
        matches!(n, Notice::Connected { resync: true })
    })
    .await;
    assert!(metrics.ari_connected());
}

#[tokio::test]
async fn application_replaced_is_reported_and_the_app_taken_back() {
    let t = start_sim(0.0).await;
    let metrics = Arc::new(Metrics::default());
    let (tx, mut rx) = mpsc::channel(ari_recorder::ari::stream::NOTICE_QUEUE);
    let (_stop, shutdown) = watch::channel(false);
    tokio::spawn(run_event_stream(
        t.client(),
        "recorder".into(),
        fast_timing(),
        metrics,
        tx,
        shutdown,
    ));
    next_notice(&mut rx, "connect", |n| {
        matches!(n, Notice::Connected { .. })
    })
    .await;
    let (_other, _task) = common::listen(&t.sim.url(), "recorder").await;
    next_notice(&mut rx, "replaced", |n| matches!(n, Notice::Replaced)).await;
    next_notice(&mut rx, "taken back", |n| {
        matches!(n, Notice::Connected { resync: true })
    })
    .await;
}

#[tokio::test]
async fn unknown_and_malformed_events_are_skipped_not_fatal() {
    // A bare websocket server standing in for a newer Asterisk that sends event types we lack.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut ws = tokio_tungstenite::accept_async(tcp)
            .await
            .expect("handshake");
        for frame in [
            r#"{"type":"ChannelQuantumEntangled","application":"recorder","timestamp":"2026-11-21T00:00:00.000+0000"}"#,
            "{not json",
            r#"{"type":"ApplicationRegistered","application":"recorder","timestamp":"2026-11-21T00:00:00.000+0000"}"#,
        ] {
            ws.send(Message::Text(frame.into())).await.expect("send");
        }
        while ws.next().await.is_some() {}
    });
    let client = AriClient::new(&format!("http://{addr}"), USER, PASSWORD).expect("client");
    let metrics = Arc::new(Metrics::default());
    let (tx, mut rx) = mpsc::channel(ari_recorder::ari::stream::NOTICE_QUEUE);
    let (_stop, shutdown) = watch::channel(false);
    tokio::spawn(run_event_stream(
        client,
        "recorder".into(),
        fast_timing(),
        metrics.clone(),
        tx,
        shutdown,
    ));
    let event = next_notice(&mut rx, "known event", |n| matches!(n, Notice::Event(_))).await;
    let Notice::Event(event) = event else {
        unreachable!()
    };
    assert_eq!(event.type_name(), "ApplicationRegistered");
    assert!(metrics
        .render()
        .contains("ari_events_total{type=\"Unknown\"} 1"));
}
