//! Drives calls: routes each ARI event to its call's task (one task per call), executes the
//! commands a call returns, keeps its timers, and writes recording rows to the library.
//!
//! The dispatcher never waits on REST or the database: commands run in the call tasks, library
//! writes in a writer task of their own.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::task::TaskTracker;

use super::call::{
    Adoption, AgentBook, Call, Command, Input, LiveCall, Output, RecordingRow, RedactMode,
    RedactRequest, RedactionSpan,
};
use super::originated::Originated;
use super::store::FlowStore;
use crate::ari::events::Event;
use crate::ari::models::Channel;
use crate::ari::{AriClient, AriError, OriginateRequest};
use crate::clock::Clock;
use crate::library::calls;
use crate::library::db::HeldConnection;
use crate::library::index::FinishedNotifier;
use crate::library::Database;
use crate::metrics::Metrics;
use crate::stasis::{AppInput, Change};
use std::time::{Duration, Instant};

/// A library write, applied in order by the writer task.
#[derive(Debug, Clone, PartialEq)]
pub enum LibraryWrite {
    Started(Box<RecordingRow>),
    NotRecorded(Box<RecordingRow>, &'static str),
    Finished {
        name: String,
        duration: Option<i64>,
        /// Asterisk's clock when the file began (replaces our own guess of the start).
        started_at_ms: Option<i64>,
        at_ms: i64,
        /// Why it ended short, when it was cut (Asterisk restarted).
        cut: Option<String>,
    },
    /// A finished recording turned out cut short (Asterisk restarted): say why.
    Cut {
        name: String,
        cause: String,
    },
    Failed {
        name: String,
        cause: String,
        at_ms: i64,
    },
    /// An armed recording's other party answered: its callee, and where the lead-in ends.
    Answered {
        name: String,
        callee: String,
        at_ms: i64,
    },
    /// An armed recording nobody answered was discarded.
    Cancelled {
        name: String,
        at_ms: i64,
    },
    /// A redacted stretch of a recording.
    Redaction(Box<RedactionSpan>),
    /// A call's saved state (None: the call ended, forget it).
    CallState {
        call_id: String,
        /// The call as it serializes.
        state: Option<String>,
    },
    /// The last states of several calls, gathered by the writer and written together.
    CallStates(Vec<(String, Option<String>)>),
}

/// Library writes waiting for the writer; call tasks wait (briefly) when it is this far behind.
const LIBRARY_QUEUE: usize = 8192;

enum CallMsg {
    /// An event and when the dispatcher received it.
    Event(Arc<Event>, Instant),
    Gone(String),
    Timer(u64),
    /// Whether the recordings disk has room now.
    RecordingsDisk(bool),
    /// Redact the call's recording (or stop); the answer says how it is recorded after.
    Redact(
        RedactRequest,
        oneshot::Sender<Result<LiveCall, RedactError>>,
    ),
}

/// Why a redaction request was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedactError {
    #[error("no such call in progress")]
    NoCall,
    #[error("the call is not being recorded now")]
    NotRecording,
    #[error("Asterisk refused to change the recording")]
    Refused,
}

struct Inner {
    client: AriClient,
    app: String,
    store: Arc<FlowStore>,
    agents: Mutex<AgentBook>,
    calls: Mutex<HashMap<String, mpsc::UnboundedSender<CallMsg>>>,
    /// Channels the calls originated, by Asterisk's ids (see [`Originated`]).
    originated: Mutex<Originated<mpsc::UnboundedSender<CallMsg>>>,
    /// What each call in progress looks like to the live-calls API, refreshed at each step.
    live: Mutex<HashMap<String, LiveCall>>,
    library: mpsc::Sender<LibraryWrite>,
    metrics: Arc<Metrics>,
    db: Database,
    /// Calls saved by an earlier run, waiting for the first resync to be taken over. Their
    /// senders are in `calls` from the start, so no event of theirs is lost or mistaken.
    pending: Mutex<Vec<(Call, mpsc::UnboundedReceiver<CallMsg>)>>,
    /// Call tasks stop (leaving their calls to Asterisk and the next start) when it turns true.
    shutdown: watch::Receiver<bool>,
    /// What the calls' timers run on (a test moves it on instead of waiting).
    clock: Clock,
    /// The calls' tasks: at shutdown the writer waits for them to finish the step they are in
    /// (and send its state) before it writes the last states and stops.
    call_tasks: TaskTracker,
    /// A call found with no saved state is hung up (`true`) or, when it is a conversation,
    /// left to Asterisk (`false`, the default: see [`FlowRuntime::end_unresumable_calls`]).
    end_unresumable: AtomicBool,
    /// Bridges of an earlier run holding a conversation no saved call owns, left to Asterisk:
    /// when a party leaves one, the rest is ended and the bridge destroyed.
    left_to_asterisk: Mutex<HashSet<String>>,
    /// The recordings disk's free space (see [`FlowRuntime::watch_disk`]).
    disk: std::sync::OnceLock<Arc<crate::disk_space::DiskSpace>>,
}

/// Handle to the running flows; cheap to clone.
#[derive(Clone)]
pub struct FlowRuntime {
    inner: Arc<Inner>,
}

pub fn now_ms() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
}

impl FlowRuntime {
    /// Starts the library writer too; it drains what is queued when `shutdown` turns true, so
    /// a clean stop loses no row. Returns the writer's handle for the service to wait on.
    pub fn new(
        client: AriClient,
        app: String,
        store: Arc<FlowStore>,
        db: Database,
        library: LibraryLinks,
        shutdown: watch::Receiver<bool>,
        clock: Clock,
    ) -> (FlowRuntime, tokio::task::JoinHandle<()>) {
        let LibraryLinks { metrics, finished } = library;
        let (library, writes) = mpsc::channel(LIBRARY_QUEUE);
        let call_tasks = TaskTracker::new();
        let writer = tokio::spawn(library_writer(
            db.clone(),
            writes,
            Writer {
                metrics: Arc::clone(&metrics),
                finished,
            },
            shutdown.clone(),
            call_tasks.clone(),
        ));
        let runtime = FlowRuntime {
            inner: Arc::new(Inner {
                client,
                app,
                store,
                agents: Mutex::new(AgentBook::default()),
                calls: Mutex::new(HashMap::new()),
                originated: Mutex::new(Originated::default()),
                live: Mutex::new(HashMap::new()),
                library,
                metrics,
                db,
                pending: Mutex::new(Vec::new()),
                shutdown,
                clock,
                call_tasks,
                end_unresumable: AtomicBool::new(false),
                left_to_asterisk: Mutex::new(HashSet::new()),
                disk: std::sync::OnceLock::new(),
            }),
        };
        (runtime, writer)
    }

    /// What a restart does with a call it finds in Asterisk but cannot resume (no saved state:
    /// killed before the call's first step was saved). `false` (the default) leaves a
    /// conversation (a channel bridged with another party) to Asterisk, its bridge recording
    /// going on, and ends it when a party leaves; `true` hangs every such call up at once. A channel
    /// alone in the app with no state is ended either way: nobody would ever hear from it.
    pub fn end_unresumable_calls(&self, end: bool) {
        self.inner.end_unresumable.store(end, Ordering::Relaxed);
    }

    /// Calls whose recording the full recordings disk ended record again once it has room:
    /// the runtime tells each call whether it has room before its recording's end reaches it,
    /// and every call when that turns (both from [`FlowRuntime::run`]'s one task, reading the
    /// state as it sends, so no call keeps waiting on a turn it missed).
    pub fn watch_disk(&self, disk: Arc<crate::disk_space::DiskSpace>) {
        let _ = self.inner.disk.set(disk);
    }

    pub fn store(&self) -> &Arc<FlowStore> {
        &self.inner.store
    }

    /// Calls being driven now.
    pub fn calls_in_progress(&self) -> usize {
        self.inner
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// The calls in progress as the live-calls API shows them.
    pub fn live_calls(&self) -> Vec<LiveCall> {
        let mut calls: Vec<LiveCall> = self
            .inner
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        calls.sort_by(|a, b| b.started_at_ms.cmp(&a.started_at_ms).then(a.id.cmp(&b.id)));
        calls
    }

    pub fn live_call(&self, id: &str) -> Option<LiveCall> {
        self.inner
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Redacts (or stops redacting) a call's live recording, with the deployment's mode.
    pub async fn redact(&self, id: &str, on: bool, by: &str) -> Result<LiveCall, RedactError> {
        let sender = route(&self.inner, id).ok_or(RedactError::NoCall)?;
        let request = RedactRequest {
            on,
            mode: self.inner.store.settings().redaction_mode,
            by: by.to_string(),
        };
        let (tx, rx) = oneshot::channel();
        sender
            .send(CallMsg::Redact(request, tx))
            .map_err(|_| RedactError::NoCall)?;
        rx.await.map_err(|_| RedactError::NoCall)?
    }

    /// `POST /api/calls`: rings `from`, then `to`, bridges them, records per the setting.
    /// The recordings belong to `tenant` and `project` (the caller's).
    pub fn place_outbound(&self, from: &str, to: &str, tenant: &str, project: &str) -> String {
        let id = format!("out{:016x}", fastrand::u64(..));
        let settings = self.inner.store.settings();
        let call = Call::outbound(&id, from, to, settings.record_outbound_calls)
            .in_scope(tenant, project)
            .recording_from_dial(settings.record_from_dial)
            .redacting_with(settings.redaction_mode)
            .recording_switches(settings.recording_enabled, settings.record_inbound_calls);
        spawn_call(self.inner.clone(), call);
        id
    }

    /// Consumes the Stasis runtime's inputs until they end. Calls saved by an earlier run are
    /// loaded first and taken over after the first resync from REST.
    pub async fn run(self, mut inputs: mpsc::Receiver<AppInput>) {
        self.load_saved_calls().await;
        let mut disk_turns = self.inner.disk.get().map(|d| d.watch_recordings());
        loop {
            let turned = async {
                match disk_turns.as_mut() {
                    Some(turns) => turns.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(AppInput::Event(event)) => self.dispatch(Arc::from(event)),
                    Some(AppInput::Change(change)) => self.on_change(&change).await,
                    None => return,
                },
                still = turned => {
                    if still {
                        self.tell_every_call_the_disk_room();
                    } else {
                        disk_turns = None;
                    }
                }
            }
        }
    }

    fn tell_every_call_the_disk_room(&self) {
        let Some(disk) = self.inner.disk.get() else {
            return;
        };
        let room = disk.recordings_room();
        let calls = self.inner.calls.lock().unwrap_or_else(|p| p.into_inner());
        for tx in calls.values() {
            let _ = tx.send(CallMsg::RecordingsDisk(room));
        }
    }

    async fn load_saved_calls(&self) {
        let saved = match super::saved::load_all(&self.inner.db).await {
            Ok(saved) => saved,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the saved calls; calls in progress will not be resumed");
                return;
            }
        };
        if saved.is_empty() {
            return;
        }
        tracing::info!(
            calls = saved.len(),
            "calls saved by the previous run: taking them over after the first resync"
        );
        let mut calls = self.inner.calls.lock().unwrap_or_else(|p| p.into_inner());
        let mut originated = self
            .inner
            .originated
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
        for state in saved {
            let (tx, rx) = mpsc::unbounded_channel();
            for (_, id) in state.originated() {
                originated.adopt(id, tx.clone());
            }
            calls.insert(state.id.clone(), tx);
            pending.push((state, rx));
        }
    }

    async fn on_change(&self, change: &Change) {
        let inner = &self.inner;
        match change {
            Change::Resynced => {
                let pending =
                    std::mem::take(&mut *inner.pending.lock().unwrap_or_else(|p| p.into_inner()));
                if pending.is_empty() {
                    return;
                }
                // One list for every call taken over: a lookup by id makes Asterisk lock every
                // channel in turn, a list is read from its snapshot cache.
                let present: Option<Arc<BTreeSet<String>>> = match inner.client.channels().await {
                    Ok(channels) => Some(Arc::new(channels.into_iter().map(|c| c.id).collect())),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot list Asterisk's channels; assuming the saved calls' channels are up");
                        None
                    }
                };
                for (state, rx) in pending {
                    inner
                        .call_tasks
                        .spawn(adopt_call(inner.clone(), state, present.clone(), rx));
                }
            }
            Change::CallEnded {
                channel_id,
                recovered: true,
            } => {
                if let Some(tx) = route(inner, channel_id) {
                    let _ = tx.send(CallMsg::Gone(channel_id.clone()));
                }
            }
            // In the app with no call of ours: after a restart of ari-recorder, or a caller who
            // arrived while the websocket was connecting. A caller not yet answered gets its
            // flow; anything else is ended cleanly.
            Change::CallStarted {
                channel,
                args,
                recovered: true,
            } if route(inner, &channel.id).is_none() => {
                if args.first().map(String::as_str) == Some("inbound") && channel.state != "Up" {
                    start_inbound(
                        inner,
                        channel,
                        args.get(1).map(String::as_str).unwrap_or(""),
                    );
                } else {
                    tokio::spawn(unresumable_call(inner.clone(), channel.clone()));
                }
            }
            // A bridge no call of ours owns (left by a previous run): destroyed, which also
            // closes any recording on it, unless it holds a conversation left to Asterisk.
            Change::BridgeFound { bridge_id } if route(inner, bridge_id).is_none() => {
                tokio::spawn(unowned_bridge(inner.clone(), bridge_id.clone()));
            }
            // Library updates come from the changes, live or recovered after a reconnect:
            // one path for both.
            Change::RecordingFinished {
                name,
                duration,
                started_at_ms,
                cut,
                ..
            } => {
                let _ = inner
                    .library
                    .send(LibraryWrite::Finished {
                        name: name.clone(),
                        duration: *duration,
                        started_at_ms: *started_at_ms,
                        at_ms: now_ms() as i64,
                        cut: cut.clone(),
                    })
                    .await;
            }
            Change::RecordingCut { name, cause } => {
                let _ = inner
                    .library
                    .send(LibraryWrite::Cut {
                        name: name.clone(),
                        cause: cause.clone(),
                    })
                    .await;
            }
            Change::RecordingFailed { name, cause, .. } => {
                let _ = inner
                    .library
                    .send(LibraryWrite::Failed {
                        name: name.clone(),
                        cause: cause.clone(),
                        at_ms: now_ms() as i64,
                    })
                    .await;
            }
            _ => {}
        }
    }

    fn dispatch(&self, event: Arc<Event>) {
        let inner = &self.inner;
        let subject = subject_of(&event);
        let Some(subject) = subject else { return };
        if let Some(tx) = route(inner, &subject) {
            if let (Some(disk), Event::RecordingFinished(_) | Event::RecordingFailed(_)) =
                (inner.disk.get(), &*event)
            {
                // What the disk is like as the recording ends (read by the Stasis runtime then).
                let _ = tx.send(CallMsg::RecordingsDisk(disk.recordings_room()));
            }
            let _ = tx.send(CallMsg::Event(event, Instant::now()));
            return;
        }
        let inbound = matches!(&*event, Event::StasisStart(e) if e.args.first().map(String::as_str) == Some("inbound"));
        // The dialplan half of a Local channel a call originated (`...;2`, subscribed with
        // the `;1` half, never in Stasis) belongs to no call: not kept waiting for an answer.
        let dialplan_half = event.channel().is_some_and(|c| {
            c.name.starts_with("Local/")
                && c.name.ends_with(";2")
                && c.dialplan.app_name != "Stasis"
        });
        if !inbound && !dialplan_half {
            // Perhaps a channel whose originate request is not answered yet: checked and kept
            // under one lock, so the answer cannot slip in between.
            let mut originated = inner.originated.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(tx) = originated.owner(&subject) {
                let _ = tx.send(CallMsg::Event(event, Instant::now()));
                return;
            }
            match originated.park(&subject, event) {
                None => return,
                Some(unclaimed) => {
                    drop(originated);
                    for event in unclaimed {
                        nobodys(inner, &event);
                    }
                    return;
                }
            }
        }
        nobodys(inner, &event);
    }
}

/// A channel in the app that no saved call owns (see [`FlowRuntime::end_unresumable_calls`]).
async fn unresumable_call(inner: Arc<Inner>, channel: Box<Channel>) {
    let in_conversation = match inner.client.bridges().await {
        Ok(bridges) => bridges
            .into_iter()
            .find(|b| b.channels.iter().any(|c| c == &channel.id) && b.channels.len() >= 2)
            .map(|b| b.id),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list Asterisk's bridges; taking the call for a conversation");
            Some(String::new())
        }
    };
    match in_conversation {
        Some(bridge) if !inner.end_unresumable.load(Ordering::Relaxed) => {
            tracing::warn!(channel = %channel.id, bridge = %bridge, "call found in Asterisk with no saved state to resume it from; leaving the conversation to Asterisk (its bridge recording, if any, goes on)");
            leave_to_asterisk(&inner, bridge);
        }
        _ => {
            tracing::warn!(channel = %channel.id, "call found in Asterisk with no saved state to resume it from; ending it");
            let _ = inner.client.hangup(by_name_if_known(&channel), None).await;
        }
    }
}

/// A bridge of an earlier run that no saved call owns: destroyed, unless it holds a
/// conversation (two parties or more) and unresumable calls are left to Asterisk.
async fn unowned_bridge(inner: Arc<Inner>, bridge_id: String) {
    let conversation = match inner.client.bridge(&bridge_id).await {
        Ok(bridge) => bridge.channels.len() >= 2,
        Err(e) if e.is_not_found() => return,
        Err(_) => true,
    };
    if conversation && !inner.end_unresumable.load(Ordering::Relaxed) {
        tracing::warn!(bridge = %bridge_id, "bridge found in Asterisk that no call in progress owns, with a conversation in it; leaving it to Asterisk");
        leave_to_asterisk(&inner, bridge_id);
        return;
    }
    tracing::warn!(bridge = %bridge_id, "bridge found in Asterisk that no call in progress owns; destroying it");
    let _ = inner.client.destroy_bridge(&bridge_id).await;
}

/// Notes a conversation left to Asterisk, counted once whichever of its channels or its bridge
/// is found first.
fn leave_to_asterisk(inner: &Inner, bridge: String) {
    if bridge.is_empty() || lock(&inner.left_to_asterisk).insert(bridge) {
        inner.metrics.count_call_left_to_asterisk();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// An event no call of this run claims: a new caller gets a flow; a leg whose call is over
/// (answered too late) is hung up; a party leaving a conversation left to Asterisk ends it;
/// anything else is nobody's business.
fn nobodys(inner: &Arc<Inner>, event: &Event) {
    if let Event::ChannelLeftBridge(e) = event {
        let left_to_asterisk = lock(&inner.left_to_asterisk).contains(&e.bridge.id);
        if left_to_asterisk && e.bridge.channels.len() < 2 {
            lock(&inner.left_to_asterisk).remove(&e.bridge.id);
            tracing::info!(bridge = %e.bridge.id, "a party left a conversation left to Asterisk; ending it");
            for channel in &e.bridge.channels {
                hang_up(inner, channel, None);
            }
            let client = inner.client.clone();
            let id = e.bridge.id.clone();
            tokio::spawn(async move {
                let _ = client.destroy_bridge(&id).await;
            });
        }
        return;
    }
    if let Event::StasisStart(e) = event {
        match e.args.first().map(String::as_str) {
            Some("inbound") => start_inbound(
                inner,
                &e.channel,
                e.args.get(1).map(String::as_str).unwrap_or(""),
            ),
            _ => hang_up(inner, by_name_if_known(&e.channel), None),
        }
    }
}

/// A channel's name when Asterisk gave it (hung up by name: see `Call::channel_names`).
fn by_name_if_known(channel: &Channel) -> &str {
    if channel.name.is_empty() {
        &channel.id
    } else {
        &channel.name
    }
}

/// Starts the flow for a caller who dialled `number`, or hangs up when no flow has it.
fn start_inbound(inner: &Arc<Inner>, channel: &Channel, number: &str) {
    let flows = inner.store.current();
    match flows.flow_for_number(number) {
        Some(flow) => {
            let call = Call::inbound(
                &channel.id,
                &channel.caller.name,
                &channel.caller.number,
                flow,
            )
            .recording_from_dial(flows.settings.record_from_dial)
            .redacting_with(flows.settings.redaction_mode)
            .recording_switches(
                flows.settings.recording_enabled,
                flows.settings.record_inbound_calls,
            )
            .announcing(flows.settings.recording_announcement.clone())
            .with_channel_name(&channel.name);
            spawn_call(inner.clone(), call);
        }
        None => {
            tracing::warn!(number = %number, "no flow for the dialled number; hanging up");
            hang_up(inner, &channel.id, Some("unallocated"));
        }
    }
}

fn hang_up(inner: &Inner, channel: &str, reason: Option<&'static str>) {
    let client = inner.client.clone();
    let id = channel.to_string();
    tokio::spawn(async move {
        let _ = client.hangup(&id, reason).await;
    });
}

/// The ID an event is routed by: its channel, the dialled peer, the playback, the recording's
/// target, or the bridge.
fn subject_of(event: &Event) -> Option<String> {
    match event {
        Event::PlaybackStarted(e) => Some(e.playback.id.clone()),
        Event::PlaybackFinished(e) => Some(e.playback.id.clone()),
        Event::PlaybackContinuing(e) => Some(e.playback.id.clone()),
        Event::BridgeDestroyed(e) => Some(e.bridge.id.clone()),
        other => {
            if let Some(r) = other.recording() {
                return r.target_uri.split_once(':').map(|(_, id)| id.to_string());
            }
            other.channel().map(|c| c.id.clone())
        }
    }
}

/// The call owning `id`: the caller channel is the call's ID; what the call created is
/// `<call id>_<kind><n>`, except the channels it originated, which go by Asterisk's ids (see
/// [`Originated`]).
fn route(inner: &Inner, id: &str) -> Option<mpsc::UnboundedSender<CallMsg>> {
    {
        let calls = inner.calls.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = calls.get(id) {
            return Some(tx.clone());
        }
        if let Some(tx) = id.rsplit_once('_').and_then(|(owner, _)| calls.get(owner)) {
            return Some(tx.clone());
        }
    }
    inner
        .originated
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .owner(id)
}

fn spawn_call(inner: Arc<Inner>, call: Call) {
    let (tx, rx) = mpsc::unbounded_channel();
    inner
        .calls
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(call.id.clone(), tx.clone());
    let tasks = inner.call_tasks.clone();
    tasks.spawn(drive_call(inner, call, tx, rx, None));
}

/// Takes over a call saved by an earlier run: asks Asterisk what is left of it (its channels,
/// its recording, its prompt), then drives it on from its saved state.
async fn adopt_call(
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
    let call = saved.resume(flow);
    drive_call(inner, call, tx, rx, Some(adoption)).await;
}

async fn drive_call(
    inner: Arc<Inner>,
    mut call: Call,
    tx: mpsc::UnboundedSender<CallMsg>,
    mut rx: mpsc::UnboundedReceiver<CallMsg>,
    adopted: Option<Adoption>,
) {
    let id = call.id.clone();
    let mut shutdown = inner.shutdown.clone();
    let mut saved = SavedState::default();
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
fn in_call_names(call: &Call, event: &Arc<Event>) -> Arc<Event> {
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
fn call_name_of<'a>(call: &'a Call, id: &'a str) -> &'a str {
    call.originated()
        .find(|(_, asterisk)| *asterisk == id)
        .map_or(id, |(name, _)| name)
}

/// Carries out a redaction request on the call's task, where its state lives.
async fn redact_call(
    inner: &Arc<Inner>,
    call: &mut Call,
    tx: &mpsc::UnboundedSender<CallMsg>,
    request: RedactRequest,
) -> Result<LiveCall, RedactError> {
    if call.live_recording().is_none() {
        return Err(RedactError::NotRecording);
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
fn show_live(inner: &Inner, call: &Call, shown: Option<u64>) -> Option<u64> {
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
struct SavedState {
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

fn handle(inner: &Inner, call: &mut Call, input: Input<'_>) -> Vec<Output> {
    let mut agents = inner.agents.lock().unwrap_or_else(|p| p.into_inner());
    let now_ms = u64::try_from(inner.clock.now_ms()).unwrap_or(0);
    call.handle(input, now_ms, &mut agents)
}

/// Runs outputs in order; a refused command is fed back to the call at once.
async fn execute(
    inner: &Arc<Inner>,
    call: &mut Call,
    tx: &mpsc::UnboundedSender<CallMsg>,
    outputs: Vec<Output>,
) {
    execute_after(inner, call, tx, outputs, None).await
}

/// [`execute`] for outputs of an event received at `received` (for the record-request delay).
async fn execute_after(
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
fn record_beside(
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
fn failure(call: &Call, command: Command, e: &AriError) -> Input<'static> {
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
fn originate_answered(
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
async fn run_command(
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

/// What the call runtime tells the rest of the service: its costs, and which recordings ARI
/// finished (so the library row turns final at once).
pub struct LibraryLinks {
    pub metrics: Arc<Metrics>,
    pub finished: Option<FinishedNotifier>,
}

struct Writer {
    metrics: Arc<Metrics>,
    finished: Option<FinishedNotifier>,
}

/// The first wait before a failed library write is tried again; it doubles up to
/// `WRITE_RETRY_MAX`.
const WRITE_RETRY_FIRST: Duration = Duration::from_millis(100);
const WRITE_RETRY_MAX: Duration = Duration::from_secs(5);
/// Tries of one write once the service is stopping: then the process is about to end.
const WRITE_TRIES_AT_SHUTDOWN: u32 = 3;

impl Writer {
    /// Applies one write, retrying it (in order: later writes wait) while the database is
    /// unreachable or busy, so a call's metadata is not lost to a passing failure. Only a write
    /// the database refuses for good (a constraint) is dropped, logged.
    async fn apply(
        &self,
        conn: &mut HeldConnection,
        write: LibraryWrite,
        shutdown: &watch::Receiver<bool>,
    ) {
        // A recording's end is told to the indexer even when its write is dropped (without the
        // metadata then): the file's row turns final by what the file shows.
        let ended = match &write {
            LibraryWrite::Finished { name, .. } | LibraryWrite::Failed { name, .. } => {
                Some(name.clone())
            }
            _ => None,
        };
        let mut told = None;
        let mut wait = WRITE_RETRY_FIRST;
        let mut tries = 0;
        loop {
            let started = Instant::now();
            let result = match conn.get().await {
                Ok(c) => apply_write(c, &write).await,
                Err(e) => Err(e),
            };
            self.metrics.call_db_writes.observe(started.elapsed());
            tries += 1;
            match result {
                Ok(finished) => {
                    self.metrics.note_db_write_ok();
                    told = finished;
                    break;
                }
                Err(e) if refused_for_good(&e) => {
                    tracing::error!(error = %e, write = write.kind(), "library write refused by the database: dropped");
                    break;
                }
                Err(e) if *shutdown.borrow() && tries >= WRITE_TRIES_AT_SHUTDOWN => {
                    tracing::error!(error = %e, write = write.kind(), "library write still failing at shutdown: given up");
                    break;
                }
                Err(e) => {
                    // The next try takes a connection the pool has checked.
                    conn.release();
                    self.metrics.count_library_write_retry();
                    self.metrics.note_db_write_failed();
                    tracing::warn!(error = %e, write = write.kind(), retry_in_ms = wait.as_millis() as u64, "library write failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(WRITE_RETRY_MAX);
                }
            }
        }
        if let (Some(name), Some(notifier)) = (ended, &self.finished) {
            notifier.finished(&name, told);
        }
    }
}

/// Whether the database refused a write for a reason retrying cannot change.
fn refused_for_good(error: &sqlx::Error) -> bool {
    use sqlx::error::ErrorKind;
    match error {
        sqlx::Error::Database(e) => matches!(
            e.kind(),
            ErrorKind::UniqueViolation
                | ErrorKind::ForeignKeyViolation
                | ErrorKind::NotNullViolation
                | ErrorKind::CheckViolation
        ),
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::TypeNotFound { .. } => true,
        _ => false,
    }
}

impl LibraryWrite {
    /// The write's kind, for the log (never its contents: caller names and numbers).
    fn kind(&self) -> &'static str {
        match self {
            LibraryWrite::Started(_) => "recording_started",
            LibraryWrite::NotRecorded(..) => "not_recorded",
            LibraryWrite::Finished { .. } => "recording_finished",
            LibraryWrite::Cut { .. } => "recording_cut",
            LibraryWrite::Failed { .. } => "recording_failed",
            LibraryWrite::Answered { .. } => "answered",
            LibraryWrite::Cancelled { .. } => "cancelled",
            LibraryWrite::CallState { .. } | LibraryWrite::CallStates(_) => "call_state",
            LibraryWrite::Redaction(_) => "redaction",
        }
    }
}

/// A writer quiet this long gives its connection back to the pool.
const WRITER_HOLDS_CONNECTION: Duration = Duration::from_secs(1);

/// Calls' saved states wait this long for later ones, then are written together: a call
/// changes state several times a second while it is set up, and only its last state matters.
/// A crash loses at most this much of a call's progress (the next start goes by what Asterisk
/// shows, as for a state still queued).
const CALL_STATES_GATHER: Duration = Duration::from_millis(200);

/// The states gathered since the last write, the newest of each call.
#[derive(Default)]
struct GatheredStates {
    states: HashMap<String, Option<String>>,
    due: Option<tokio::time::Instant>,
}

impl GatheredStates {
    fn add(&mut self, call_id: String, state: Option<String>) {
        self.states.insert(call_id, state);
        self.due
            .get_or_insert_with(|| tokio::time::Instant::now() + CALL_STATES_GATHER);
    }

    fn take(&mut self) -> Option<LibraryWrite> {
        self.due = None;
        (!self.states.is_empty()).then(|| {
            LibraryWrite::CallStates(std::mem::take(&mut self.states).into_iter().collect())
        })
    }
}

/// How long a stop waits for the calls' tasks to finish the step each is in. A step still
/// unfinished then (a REST request hanging) is not saved: the next start goes by what Asterisk
/// shows, as after a crash.
const CALL_STEPS_AT_SHUTDOWN: Duration = Duration::from_secs(5);

/// Applies library writes in order (calls' states gathered, see [`CALL_STATES_GATHER`]); a
/// failed write is logged and the next one goes on. At shutdown it goes on receiving until the
/// calls' tasks have stopped, so the state of a step that was under way is written too.
async fn library_writer(
    db: Database,
    mut writes: mpsc::Receiver<LibraryWrite>,
    writer: Writer,
    mut shutdown: watch::Receiver<bool>,
    call_tasks: TaskTracker,
) {
    let mut conn = HeldConnection::new(&db);
    let mut gathered = GatheredStates::default();
    let mut stopping: Option<tokio::time::Instant> = None;
    loop {
        // Due states are written first, even while other writes keep arriving.
        if gathered
            .due
            .is_some_and(|due| due <= tokio::time::Instant::now())
        {
            if let Some(states) = gathered.take() {
                writer.apply(&mut conn, states, &shutdown).await;
            }
        }
        let due = gathered.due;
        tokio::select! {
            biased;
            write = writes.recv() => match write {
                Some(LibraryWrite::CallState { call_id, state }) => gathered.add(call_id, state),
                Some(w) => writer.apply(&mut conn, w, &shutdown).await,
                None => break,
            },
            changed = shutdown.changed(), if stopping.is_none() => {
                // A dropped sender means nobody can stop us any more: treat it as a stop.
                if changed.is_err() || *shutdown.borrow() {
                    call_tasks.close();
                    stopping = Some(tokio::time::Instant::now() + CALL_STEPS_AT_SHUTDOWN);
                }
            }
            () = call_tasks.wait(), if stopping.is_some() => break,
            _ = tokio::time::sleep_until(stopping.unwrap_or_else(tokio::time::Instant::now)), if stopping.is_some() => {
                tracing::warn!(calls = call_tasks.len(), "calls still in a step at shutdown; their last step is not saved");
                break;
            }
            // Written at the top of the loop.
            _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {}
            _ = tokio::time::sleep(WRITER_HOLDS_CONNECTION), if conn.is_held() && due.is_none() => conn.release(),
        }
    }
    while let Ok(write) = writes.try_recv() {
        match write {
            LibraryWrite::CallState { call_id, state } => gathered.add(call_id, state),
            w => writer.apply(&mut conn, w, &shutdown).await,
        }
    }
    if let Some(states) = gathered.take() {
        writer.apply(&mut conn, states, &shutdown).await;
    }
}

/// Applies one write; for a recording that ended, its call metadata now (for the indexer).
async fn apply_write(
    conn: &mut sqlx::AnyConnection,
    write: &LibraryWrite,
) -> Result<Option<calls::CallMeta>, sqlx::Error> {
    match write {
        LibraryWrite::Started(row) => calls::started(conn, row).await?,
        LibraryWrite::NotRecorded(row, switch) => {
            let reason = match *switch {
                "consent" => "the caller declined recording".to_string(),
                _ => format!("recording was off for this call ({switch} = false)"),
            };
            crate::library::index::add_not_recorded(conn, row, &reason).await?
        }
        LibraryWrite::Redaction(span) => {
            let redaction = calls::Redaction {
                recording_name: span.recording.clone(),
                mode: span.mode.as_str().to_string(),
                from_offset_ms: span.from_offset_ms,
                to_offset_ms: span.to_offset_ms,
                started_at_ms: span.started_at_ms,
                ended_at_ms: span.ended_at_ms,
                by_actor: span.by.clone(),
            };
            calls::add_redaction(conn, &redaction).await?
        }
        LibraryWrite::Answered {
            name,
            callee,
            at_ms,
        } => calls::answered(conn, name, callee, *at_ms).await?,
        LibraryWrite::Cancelled { name, at_ms } => calls::cancelled(conn, name, *at_ms).await?,
        LibraryWrite::CallState { call_id, state } => {
            super::saved::save_all(conn, &[(call_id.clone(), state.clone())], now_ms() as i64)
                .await?
        }
        LibraryWrite::CallStates(states) => {
            super::saved::save_all(conn, states, now_ms() as i64).await?
        }
        LibraryWrite::Finished {
            name,
            duration,
            started_at_ms,
            at_ms,
            cut,
        } => {
            return calls::finished(
                conn,
                name,
                *duration,
                *started_at_ms,
                *at_ms,
                cut.as_deref(),
            )
            .await;
        }
        LibraryWrite::Cut { name, cause } => {
            calls::note_cut(&mut *conn, name, cause).await?;
            crate::library::index::note_cut(&mut *conn, name, cause).await?;
        }
        LibraryWrite::Failed { name, cause, at_ms } => {
            return calls::failed(conn, name, cause, *at_ms).await;
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ari::RecordRequest;

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
}
