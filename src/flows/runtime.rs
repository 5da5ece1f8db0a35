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

use super::call::{AgentBook, Call, LiveCall, RedactRequest};
use super::originated::Originated;
use super::store::FlowStore;
use crate::ari::events::Event;
use crate::ari::models::Channel;
use crate::ari::AriClient;
use crate::clock::Clock;
use crate::db::Database;
use crate::metrics::Metrics;
use crate::stasis::{AppInput, Change};
use std::time::Instant;

mod call_task;
#[cfg(test)]
mod tests;
mod writer;

use call_task::*;
use writer::*;
pub use writer::{LibraryLinks, LibraryWrite};

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
    /// People may not pause this call's recording; the switch that says so.
    #[error("pausing this call's recording is turned off ({0})")]
    NotAllowed(&'static str),
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
    u64::try_from(crate::clock::now_ms()).unwrap_or(0)
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
                db: db.clone(),
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
            .seeded(fastrand::u64(1..))
            .in_scope(tenant, project)
            .recording_from_dial(settings.record_from_dial)
            .redacting_with(settings.redaction_mode)
            .redaction_by_people(settings.redaction_outbound_calls)
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
            .seeded(fastrand::u64(1..))
            .recording_from_dial(flows.settings.record_from_dial)
            .redacting_with(flows.settings.redaction_mode)
            .redaction_by_people(flows.settings.redaction_inbound_calls)
            .recording_switches(
                flows.settings.recording_enabled,
                flows.settings.record_inbound_calls,
            )
            .announcing(flows.settings.recording_announcement.clone())
            .with_channel_name(&channel.name)
            .with_linkedid_of(channel);
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
