//! A call's task: it feeds the call machine its events and timers, runs the commands it returns against ARI, and saves its state.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::super::call::{
    Adoption, Call, Command, Input, LiveCall, Output, RedactMode, RedactRequest,
};
use super::writer::LibraryWrite;
use super::{nobodys, now_ms, CallMsg, Inner, RedactError};
use crate::ari::events::Event;
use crate::ari::{AriError, OriginateRequest};
use std::time::Instant;

/// Takes over a call saved by an earlier run: asks Asterisk what is left of it (its channels,
/// its recording, its prompt), then drives it on from its saved state.
pub(super) async fn adopt_call(
    inner: Arc<Inner>,
    saved: Call,
    present: Option<Arc<BTreeSet<String>>>,
    rx: mpsc::UnboundedReceiver<CallMsg>,
) {
    let client = &inner.client;
    let mut adoption = Adoption {
        // Unknown (the list failed): assume present; its end will be heard.
        channels: saved
            .channels()
            .into_iter()
            .filter(|c| {
                present
                    .as_ref()
                    .is_none_or(|p| p.contains(saved.asterisk_id(c)))
            })
            .collect(),
        ..Adoption::default()
    };
    if let Some(name) = saved.recording() {
        let live = match client.live_recording(name).await {
            Ok(r) => Some(matches!(
                r.state.as_str(),
                "queued" | "recording" | "paused"
            )),
            Err(e) if e.is_not_found() => Some(false),
            Err(_) => None,
        };
        if live == Some(false) {
            adoption.recording_over = true;
            // Ended while nobody listened: the library learns it as the event would have told.
            let write = if client.stored_recording(name).await.is_ok() {
                LibraryWrite::Finished {
                    name: name.to_string(),
                    duration: None,
                    started_at_ms: None,
                    at_ms: now_ms() as i64,
                    cut: None,
                }
            } else {
                LibraryWrite::Failed {
                    name: name.to_string(),
                    cause: "ended while ari-recorder was restarting and not stored".into(),
                    at_ms: now_ms() as i64,
                }
            };
            let _ = inner.library.send(write).await;
        }
    }
    if let Some(playback) = saved.playback() {
        adoption.playback_over = client
            .playback(playback)
            .await
            .is_err_and(|e| e.is_not_found());
    }
    let flow = saved
        .flow_name()
        .and_then(|name| inner.store.current().flows.get(name).cloned());
    if saved.flow_name().is_some() && flow.is_none() {
        tracing::warn!(call = %saved.id, flow = ?saved.flow_name(), "the call's flow is gone; it ends at its next step");
    }
    tracing::info!(
        call = %saved.id,
        channels = adoption.channels.len(),
        recording_over = adoption.recording_over,
        "call taken over from the previous run"
    );
    let tx = inner
        .calls
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&saved.id)
        .cloned();
    let Some(tx) = tx else { return };
    let mut call = saved.resume(flow);
    if !call.is_seeded() {
        // Saved before calls had their own randomness.
        call = call.seeded(fastrand::u64(1..));
    }
    drive_call(inner, call, tx, rx, Some(adoption)).await;
}

pub(super) async fn drive_call(
    inner: Arc<Inner>,
    mut call: Call,
    tx: mpsc::UnboundedSender<CallMsg>,
    mut rx: mpsc::UnboundedReceiver<CallMsg>,
    adopted: Option<Adoption>,
) {
    let id = call.id.clone();
    let mut shutdown = inner.shutdown.clone();
    let mut saved = SavedState::default();
    if let (Some(_), Some(disk)) = (&adopted, inner.disk.get()) {
        // A call saved while waiting for the recordings disk to have room hears how it is now:
        // this run tells calls only when it turns.
        let _ = tx.send(CallMsg::RecordingsDisk(disk.recordings_room()));
    }
    let first = match &adopted {
        Some(adoption) => {
            // What was saved is the baseline: only a change is written again.
            saved.last = Some(call.saved_digest());
            saved.written = true;
            Input::Adopted(adoption)
        }
        None => {
            tracing::info!(call = %id, "call started");
            Input::Start
        }
    };
    let outputs = handle(&inner, &mut call, first);
    execute(&inner, &mut call, &tx, outputs).await;
    saved.save(&inner, &mut call).await;
    let mut shown = show_live(&inner, &call, None);
    while !call.is_finished() {
        let msg = tokio::select! {
            msg = rx.recv() => msg,
            // Stopping: the call stays up in Asterisk, saved, for the next start to take over.
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let Some(msg) = msg else { break };
        let mut received = None;
        let outputs = match &msg {
            CallMsg::Event(event, at) => {
                received = Some(*at);
                let event = in_call_names(&call, event);
                handle(&inner, &mut call, Input::Event(&event))
            }
            CallMsg::Gone(channel) => {
                let channel = call_name_of(&call, channel).to_string();
                handle(&inner, &mut call, Input::ChannelGone(channel))
            }
            CallMsg::Timer(key) => handle(&inner, &mut call, Input::Timer(*key)),
            CallMsg::RecordingsDisk(room) => {
                handle(&inner, &mut call, Input::RecordingsDisk { room: *room })
            }
            CallMsg::Redact(..) => Vec::new(),
        };
        execute_after(&inner, &mut call, &tx, outputs, received).await;
        if let CallMsg::Redact(request, reply) = msg {
            let answer = redact_call(&inner, &mut call, &tx, request).await;
            let _ = reply.send(answer);
        }
        saved.save(&inner, &mut call).await;
        shown = show_live(&inner, &call, shown);
    }
    inner
        .calls
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id);
    inner
        .originated
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .forget(call.originated().map(|(_, id)| id));
    inner
        .live
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id);
    tracing::info!(call = %id, "call ended");
}

/// `event` with the channels the call originated under the call's names for them.
pub(super) fn in_call_names(call: &Call, event: &Arc<Event>) -> Arc<Event> {
    let mut originated = call.originated().peekable();
    if originated.peek().is_none() {
        return Arc::clone(event);
    }
    let mut renamed = Event::clone(event);
    for (name, id) in originated {
        renamed.rename_channel(id, name);
    }
    Arc::new(renamed)
}

/// The call's name for Asterisk's channel `id`.
pub(super) fn call_name_of<'a>(call: &'a Call, id: &'a str) -> &'a str {
    call.originated()
        .find(|(_, asterisk)| *asterisk == id)
        .map_or(id, |(name, _)| name)
}

/// Carries out a redaction request on the call's task, where its state lives.
pub(super) async fn redact_call(
    inner: &Arc<Inner>,
    call: &mut Call,
    tx: &mpsc::UnboundedSender<CallMsg>,
    request: RedactRequest,
) -> Result<LiveCall, RedactError> {
    if call.live_recording().is_none() {
        return Err(RedactError::NotRecording);
    }
    if let Some(switch) = call.redaction_refused_by().filter(|_| request.on) {
        return Err(RedactError::NotAllowed(switch));
    }
    let want_on = request.on;
    let outputs = handle(inner, call, Input::Redact(request));
    execute(inner, call, tx, outputs).await;
    match call.live_recording() {
        None => Err(RedactError::NotRecording),
        Some((_, mode)) if mode.is_some() == want_on => Ok(call.live_view()),
        // Asterisk refused the mute or pause: the recording goes on as it was.
        Some(_) => Err(RedactError::Refused),
    }
}

/// Refreshes what the live-calls API shows of `call` when it changed since `shown` (the
/// fingerprint shown last); returns the fingerprint shown now.
pub(super) fn show_live(inner: &Inner, call: &Call, shown: Option<u64>) -> Option<u64> {
    let now = call.live_fingerprint();
    if shown == Some(now) {
        return shown;
    }
    let mut live = inner.live.lock().unwrap_or_else(|p| p.into_inner());
    if call.is_finished() {
        live.remove(&call.id);
    } else {
        live.insert(call.id.clone(), call.live_view());
    }
    Some(now)
}

/// What was last saved of a call, so a state is written only when it changed (timers alone
/// moving are not worth a write: the next change carries them).
#[derive(Default)]
pub(super) struct SavedState {
    last: Option<u64>,
    written: bool,
}

impl SavedState {
    async fn save(&mut self, inner: &Inner, call: &mut Call) {
        if call.is_finished() {
            if self.written {
                self.written = false;
                let _ = inner
                    .library
                    .send(LibraryWrite::CallState {
                        call_id: call.id.clone(),
                        state: None,
                    })
                    .await;
            }
            return;
        }
        let key = call.saved_digest();
        if self.last == Some(key) {
            return;
        }
        let state = call.saved();
        self.last = Some(key);
        self.written = true;
        let _ = inner
            .library
            .send(LibraryWrite::CallState {
                call_id: call.id.clone(),
                state: Some(state),
            })
            .await;
    }
}

pub(super) fn handle(inner: &Inner, call: &mut Call, input: Input<'_>) -> Vec<Output> {
    let mut agents = inner.agents.lock().unwrap_or_else(|p| p.into_inner());
    let now_ms = u64::try_from(inner.clock.now_ms()).unwrap_or(0);
    call.handle(input, now_ms, &mut agents)
}

/// Runs outputs in order; a refused command is fed back to the call at once.
pub(super) async fn execute(
    inner: &Arc<Inner>,
    call: &mut Call,
    tx: &mpsc::UnboundedSender<CallMsg>,
    outputs: Vec<Output>,
) {
    execute_after(inner, call, tx, outputs, None).await
}

/// [`execute`] for outputs of an event received at `received` (for the record-request delay).
pub(super) async fn execute_after(
    inner: &Arc<Inner>,
    call: &mut Call,
    tx: &mpsc::UnboundedSender<CallMsg>,
    outputs: Vec<Output>,
    received: Option<Instant>,
) {
    let mut queue: std::collections::VecDeque<Output> = outputs.into();
    while let Some(output) = queue.pop_front() {
        match output {
            Output::Command(command) => {
                if matches!(command, Command::Originate { .. } | Command::Snoop { .. }) {
                    inner
                        .originated
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .requesting();
                }
                // The recording is asked for beside the add, not after it: under load Asterisk
                // takes hundreds of milliseconds to answer an add, and the recording then
                // misses the answering party's first words. It may start a moment before the
                // party is in (a fraction of a second of the caller alone).
                let beside = record_beside(&command, &mut queue);
                let records = matches!(command, Command::RecordBridge { .. }) || beside.is_some();
                if let (true, Some(at)) = (records, received) {
                    inner.metrics.record_request_delay.observe(at.elapsed());
                }
                if let Some((notes, record)) = beside {
                    // The library knows of the recording before its file can appear.
                    for noted in notes {
                        if let Output::RecordingStarted(row) = noted {
                            let _ = inner.library.send(LibraryWrite::Started(row)).await;
                        }
                    }
                    let (added, recorded) = tokio::join!(
                        run_command(inner, call, &command),
                        run_command(inner, call, &record)
                    );
                    for (command, result) in [(command, added), (record, recorded)] {
                        if let Err(e) = result {
                            let failed = failure(call, command, &e);
                            queue.extend(handle(inner, call, failed));
                        }
                    }
                    continue;
                }
                let result = run_command(inner, call, &command).await;
                if let Command::Originate { channel, .. } | Command::Snoop { snoop: channel, .. } =
                    &command
                {
                    let asterisk_id = result.as_ref().ok().and_then(Option::as_deref);
                    originate_answered(inner, call, tx, channel, asterisk_id);
                }
                if let Err(e) = result {
                    let failed = failure(call, command, &e);
                    queue.extend(handle(inner, call, failed));
                }
            }
            Output::Timer { key, after } => {
                let tx = tx.clone();
                // The deadline is taken now, in the order of the outputs.
                let due = inner.clock.sleep(after);
                tokio::spawn(async move {
                    due.await;
                    let _ = tx.send(CallMsg::Timer(key));
                });
            }
            Output::RecordingStarted(row) => {
                let _ = inner.library.send(LibraryWrite::Started(row)).await;
            }
            Output::NotRecorded(row, switch) => {
                let _ = inner
                    .library
                    .send(LibraryWrite::NotRecorded(row, switch))
                    .await;
            }
            Output::Redacted(span) => {
                let _ = inner.library.send(LibraryWrite::Redaction(span)).await;
            }
            Output::RecordingAnswered {
                name,
                callee,
                at_ms,
            } => {
                let _ = inner
                    .library
                    .send(LibraryWrite::Answered {
                        name,
                        callee,
                        at_ms,
                    })
                    .await;
            }
            Output::RecordingCancelled { name } => {
                let _ = inner
                    .library
                    .send(LibraryWrite::Cancelled {
                        name,
                        at_ms: now_ms() as i64,
                    })
                    .await;
            }
            Output::RecordingRefused { name, cause } => {
                let _ = inner
                    .library
                    .send(LibraryWrite::Failed {
                        name,
                        cause,
                        at_ms: now_ms() as i64,
                    })
                    .await;
            }
            Output::RecordingResumed => {
                inner.metrics.count_recording_resumed_after_full_disk();
                tracing::info!(call = %call.id, "the recordings disk has room again: recording the call again");
            }
            Output::Finished => {}
        }
    }
}

/// The record request to send beside `command` when it adds parties to the bridge recorded:
/// the queue's next command, with the recording rows noted before it (nothing else may come
/// between them).
pub(super) fn record_beside(
    command: &Command,
    queue: &mut std::collections::VecDeque<Output>,
) -> Option<(Vec<Output>, Command)> {
    let Command::AddChannels { bridge, .. } = command else {
        return None;
    };
    let next = queue
        .iter()
        .position(|o| !matches!(o, Output::RecordingStarted(_)))?;
    match queue.get(next) {
        Some(Output::Command(Command::RecordBridge {
            bridge: recorded, ..
        })) if recorded == bridge => {}
        _ => return None,
    }
    let mut notes = Vec::new();
    for output in queue.drain(..=next) {
        match output {
            Output::Command(record) => return Some((notes, record)),
            noted => notes.push(noted),
        }
    }
    None
}

/// What the call hears of a command Asterisk refused (logged unless it is a clean-up of
/// something already gone).
pub(super) fn failure(call: &Call, command: Command, e: &AriError) -> Input<'static> {
    if !e.is_not_found()
        || !matches!(
            command,
            Command::Hangup { .. }
                | Command::DestroyBridge { .. }
                | Command::StopRecording { .. }
                | Command::CancelRecording { .. }
                | Command::BridgeMoh { .. }
        )
    {
        tracing::warn!(call = %call.id, error = %e, "ARI command failed");
    }
    Input::Failed {
        command,
        status: e.status().map(|s| s.as_u16()),
        message: e
            .message()
            .map(str::to_string)
            .unwrap_or_else(|| e.to_string()),
    }
}

/// Asterisk answered the originate request of the call's `channel` with its id (or refused
/// it): events read about the channel meanwhile go to the call, first.
pub(super) fn originate_answered(
    inner: &Arc<Inner>,
    call: &mut Call,
    tx: &mpsc::UnboundedSender<CallMsg>,
    channel: &str,
    asterisk_id: Option<&str>,
) {
    let mut originated = inner.originated.lock().unwrap_or_else(|p| p.into_inner());
    let unclaimed = match asterisk_id {
        Some(id) => {
            call.channel_originated(channel, id);
            let (parked, unclaimed) = originated.answered(id, tx.clone());
            for event in parked {
                let _ = tx.send(CallMsg::Event(event, Instant::now()));
            }
            unclaimed
        }
        None => originated.refused(),
    };
    drop(originated);
    for event in unclaimed {
        nobodys(inner, &event);
    }
}

/// Runs `command` against Asterisk, naming the channels the call originated by Asterisk's
/// ids; an originate answers the new channel's id.
pub(super) async fn run_command(
    inner: &Inner,
    call: &Call,
    command: &Command,
) -> Result<Option<String>, AriError> {
    let c = &inner.client;
    let id = |channel: &'_ str| call.asterisk_id(channel).to_string();
    match command {
        Command::RedactRecording { name, mode, on } => match (mode, on) {
            (RedactMode::Mute, true) => c.mute_recording(name).await,
            (RedactMode::Mute, false) => c.unmute_recording(name).await,
            (RedactMode::Pause, true) => c.pause_recording(name).await,
            (RedactMode::Pause, false) => c.unpause_recording(name).await,
        },
        Command::Answer { channel } => c.answer(&id(channel)).await,
        Command::Hangup { channel } => c.hangup(&id(channel), None).await,
        Command::CreateBridge { bridge, kind, name } => c
            .create_bridge_with_id(bridge, kind, Some(name))
            .await
            .map(drop),
        Command::AddChannels { bridge, channels } => {
            let ids: Vec<String> = channels.iter().map(|channel| id(channel)).collect();
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            c.add_channels(bridge, &ids, None).await
        }
        Command::RemoveChannel { bridge, channel } => {
            c.remove_channels(bridge, &[&id(channel)]).await
        }
        Command::DestroyBridge { bridge } => c.destroy_bridge(bridge).await,
        Command::BridgeMoh {
            bridge,
            class,
            on: true,
        } => c.bridge_moh_start(bridge, Some(class)).await,
        Command::BridgeMoh {
            bridge, on: false, ..
        } => c.bridge_moh_stop(bridge).await,
        // No `channelId`: see `Originated` for what a chosen one costs Asterisk.
        Command::Originate {
            channel: _,
            endpoint,
            caller_id,
            timeout,
            app_args,
        } => {
            return c
                .originate(&OriginateRequest {
                    endpoint: endpoint.clone(),
                    app: Some(inner.app.clone()),
                    app_args: Some(app_args.clone()),
                    caller_id: caller_id.clone(),
                    timeout: Some(*timeout),
                    ..OriginateRequest::default()
                })
                .await
                .map(|channel| Some(channel.id))
        }
        Command::Play {
            channel,
            playback,
            media,
        } => c
            .play_on_channel(&id(channel), media, Some(playback))
            .await
            .map(drop),
        Command::RecordBridge { bridge, request } => {
            c.record_bridge(bridge, request).await.map(drop)
        }
        // A snoop is a channel too: its id is Asterisk's choice, like an originated leg's.
        Command::Snoop {
            channel,
            snoop: _,
            role,
        } => {
            return c
                .snoop(
                    &id(channel),
                    "in",
                    &inner.app,
                    &format!("snoop,{role},{channel}"),
                    None,
                )
                .await
                .map(|snoop| Some(snoop.id))
        }
        Command::RecordChannel { channel, request } => {
            c.record_channel(&id(channel), request).await.map(drop)
        }
        Command::StopRecording { name } => c.stop_recording(name).await,
        Command::CancelRecording { name } => match c.cancel_recording(name).await {
            // It ended already (the caller left and the bridge emptied): discard the file.
            Err(e) if e.is_not_found() => match c.delete_stored_recording(name).await {
                Err(e) if e.is_not_found() => Ok(()),
                other => other,
            },
            other => other,
        },
    }
    .map(|()| None)
}
