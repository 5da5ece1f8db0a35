//! The Stasis application's runtime: it takes the event stream's notices, keeps a model of the
//! app's channels, bridges and live recordings, and after every reconnect resynchronises that
//! model from REST, because Asterisk drops events while the app is away.
//!
//! [`Registry`] is sans-IO (events and snapshots in, [`Change`]s out) so it is unit-tested
//! without a socket; [`run`] is the thin task that feeds it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::ari::events::Event;
use crate::ari::models::{Bridge, Channel, LiveRecording, StoredRecording};
use crate::ari::stream::Notice;
use crate::ari::{AriClient, AriError};
use crate::metrics::Metrics;

/// Something that happened to the app's calls or recordings, seen live or recovered from REST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    CallStarted {
        /// The channel as the event or REST showed it (state, caller).
        channel: Box<Channel>,
        args: Vec<String>,
        recovered: bool,
    },
    CallEnded {
        channel_id: String,
        recovered: bool,
    },
    /// A bridge of the app that REST shows and no event announced (found after a restart or
    /// created while the websocket was away).
    BridgeFound {
        bridge_id: String,
    },
    RecordingStarted {
        name: String,
        target_uri: String,
    },
    RecordingFinished {
        name: String,
        duration: Option<i64>,
        /// When Asterisk started writing the file, by its own clock (`RecordingStarted`'s
        /// timestamp, ms since the epoch): where the file's first sample lies on the call's
        /// timeline. None when the start was not seen (it began while we were away).
        started_at_ms: Option<i64>,
        recovered: bool,
        /// Why the recording ended before its call did, when it was cut short ("Asterisk
        /// restarted while recording"). None: it ended as recordings do.
        cut: Option<String>,
    },
    RecordingFailed {
        name: String,
        cause: String,
        recovered: bool,
    },
    /// A recording reported finished in the moments before the connection dropped, by an
    /// Asterisk found restarted at the reconnect: its end was the restart's (`core restart now`
    /// hangs every channel up, and the recordings' ends reach the app before the socket
    /// closes), so it is short of its call.
    RecordingCut {
        name: String,
        cause: String,
    },
    /// A resync from REST is complete: every change it found was reported before this.
    Resynced,
}

/// What the Stasis runtime hands on: every event as it came, and the changes it derived (live
/// or recovered from REST after a reconnect).
#[derive(Debug)]
pub enum AppInput {
    Event(Box<Event>),
    Change(Change),
}

/// What REST says after a reconnect.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Channels currently in the app (`/applications/{app}` ids resolved through `/channels`).
    pub channels: Vec<Channel>,
    pub bridges: Vec<Bridge>,
    /// Each recording the registry believed live, and what `/recordings/live/{name}` said
    /// (`None`: 404, it is no longer live).
    pub live: Vec<(String, Option<LiveRecording>)>,
    pub stored: Vec<StoredRecording>,
    /// When Asterisk started (`/asterisk/info` `status.startup_time`): a new value after a
    /// reconnect means Asterisk restarted meanwhile. None when it could not be read.
    pub asterisk_started: Option<String>,
}

/// Why recordings that ended while Asterisk restarted are short.
pub const CUT_BY_ASTERISK_RESTART: &str =
    "cut short: Asterisk restarted while recording (the call was cut there too)";

#[derive(Debug, Default)]
pub struct Registry {
    /// Channels in the app, by id.
    channels: BTreeMap<String, Channel>,
    bridges: BTreeSet<String>,
    live: BTreeMap<String, LiveRecording>,
    /// Asterisk's timestamp of each live recording's `RecordingStarted`.
    started_at: BTreeMap<String, i64>,
    /// When the Asterisk the app last resynchronised with started.
    asterisk_started: Option<String>,
    /// Recordings reported finished lately, and when (kept `RECENT_FINISHED`).
    recently_finished: std::collections::VecDeque<(String, std::time::Instant)>,
    /// When the connection to Asterisk last dropped.
    disconnected_at: Option<std::time::Instant>,
}

/// How long finished recordings are remembered, and how long before a dropped connection a
/// recording's end counts as the end an Asterisk restart caused.
const RECENT_FINISHED: std::time::Duration = std::time::Duration::from_secs(30);
const ENDED_BY_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(5);

/// An ARI event timestamp (`2026-11-21T23:19:37.870+0000`) in ms since the epoch.
pub fn event_time_ms(timestamp: &str) -> Option<i64> {
    chrono::DateTime::parse_from_str(timestamp, "%Y-%m-%dT%H:%M:%S%.f%z")
        .ok()
        .map(|t| t.timestamp_millis())
}

impl Registry {
    pub fn calls_active(&self) -> usize {
        self.channels.len()
    }

    pub fn live_recordings(&self) -> Vec<String> {
        self.live.keys().cloned().collect()
    }

    /// Applies one live event.
    pub fn apply(&mut self, event: &Event) -> Vec<Change> {
        let mut changes = Vec::new();
        match event {
            Event::StasisStart(e) => {
                self.channels
                    .insert(e.channel.id.clone(), e.channel.clone());
                changes.push(Change::CallStarted {
                    channel: Box::new(e.channel.clone()),
                    args: e.args.clone(),
                    recovered: false,
                });
            }
            Event::StasisEnd(e) if self.channels.remove(&e.channel.id).is_some() => {
                changes.push(Change::CallEnded {
                    channel_id: e.channel.id.clone(),
                    recovered: false,
                });
            }
            Event::ChannelStateChange(e) => {
                if let Some(c) = self.channels.get_mut(&e.channel.id) {
                    *c = e.channel.clone();
                }
            }
            Event::ChannelEnteredBridge(e) => {
                self.bridges.insert(e.bridge.id.clone());
            }
            Event::BridgeDestroyed(e) => {
                self.bridges.remove(&e.bridge.id);
            }
            Event::RecordingStarted(e) => {
                self.live
                    .insert(e.recording.name.clone(), e.recording.clone());
                if let Some(at) = event_time_ms(&e.timestamp) {
                    self.started_at.insert(e.recording.name.clone(), at);
                }
                changes.push(Change::RecordingStarted {
                    name: e.recording.name.clone(),
                    target_uri: e.recording.target_uri.clone(),
                });
            }
            Event::RecordingFinished(e) => {
                self.live.remove(&e.recording.name);
                let now = std::time::Instant::now();
                self.recently_finished
                    .retain(|(_, at)| now.duration_since(*at) < RECENT_FINISHED);
                self.recently_finished
                    .push_back((e.recording.name.clone(), now));
                changes.push(Change::RecordingFinished {
                    name: e.recording.name.clone(),
                    duration: e.recording.duration,
                    started_at_ms: self.started_at.remove(&e.recording.name),
                    recovered: false,
                    cut: None,
                });
            }
            Event::RecordingFailed(e) => {
                self.live.remove(&e.recording.name);
                self.started_at.remove(&e.recording.name);
                changes.push(Change::RecordingFailed {
                    name: e.recording.name.clone(),
                    cause: e
                        .recording
                        .cause
                        .clone()
                        .unwrap_or_else(|| "unknown".into()),
                    recovered: false,
                });
            }
            _ => {}
        }
        changes
    }

    /// The connection to Asterisk dropped (now).
    pub fn disconnected(&mut self) {
        self.disconnected_at = Some(std::time::Instant::now());
    }

    /// Replaces the model with what REST shows, reporting what was missed while away.
    pub fn reconcile(&mut self, snapshot: &Snapshot) -> Vec<Change> {
        let mut changes = Vec::new();
        // Asterisk restarted while the app was away: what was live then was cut short.
        let restarted = matches!(
            (&self.asterisk_started, &snapshot.asterisk_started),
            (Some(before), Some(now)) if before != now
        );
        if snapshot.asterisk_started.is_some() {
            self.asterisk_started = snapshot.asterisk_started.clone();
        }
        if restarted {
            if let Some(dropped) = self.disconnected_at {
                for (name, at) in std::mem::take(&mut self.recently_finished) {
                    if dropped.saturating_duration_since(at) <= ENDED_BY_SHUTDOWN {
                        changes.push(Change::RecordingCut {
                            name,
                            cause: CUT_BY_ASTERISK_RESTART.into(),
                        });
                    }
                }
            }
        }
        let present: BTreeMap<&str, &Channel> = snapshot
            .channels
            .iter()
            .map(|c| (c.id.as_str(), c))
            .collect();
        let gone: Vec<String> = self
            .channels
            .keys()
            .filter(|id| !present.contains_key(id.as_str()))
            .cloned()
            .collect();
        for id in gone {
            self.channels.remove(&id);
            changes.push(Change::CallEnded {
                channel_id: id,
                recovered: true,
            });
        }
        for (id, channel) in present {
            if !self.channels.contains_key(id) {
                self.channels.insert(id.to_string(), channel.clone());
                changes.push(Change::CallStarted {
                    channel: Box::new(channel.clone()),
                    args: stasis_args(channel),
                    recovered: true,
                });
            } else {
                self.channels.insert(id.to_string(), channel.clone());
            }
        }
        for bridge in &snapshot.bridges {
            if !self.bridges.contains(&bridge.id) {
                changes.push(Change::BridgeFound {
                    bridge_id: bridge.id.clone(),
                });
            }
        }
        self.bridges = snapshot.bridges.iter().map(|b| b.id.clone()).collect();
        for (name, live) in &snapshot.live {
            match live {
                Some(recording)
                    if matches!(recording.state.as_str(), "queued" | "recording" | "paused") =>
                {
                    self.live.insert(name.clone(), recording.clone());
                }
                _ => {
                    if self.live.remove(name).is_none() {
                        continue;
                    }
                    let started_at_ms = self.started_at.remove(name);
                    if snapshot.stored.iter().any(|s| &s.name == name) {
                        changes.push(Change::RecordingFinished {
                            name: name.clone(),
                            duration: None,
                            started_at_ms,
                            recovered: true,
                            cut: restarted.then(|| CUT_BY_ASTERISK_RESTART.to_string()),
                        });
                    } else {
                        changes.push(Change::RecordingFailed {
                            name: name.clone(),
                            cause: if restarted {
                                "Asterisk restarted while recording and did not store it".into()
                            } else {
                                "ended while disconnected from Asterisk and not stored".into()
                            },
                            recovered: true,
                        });
                    }
                }
            }
        }
        changes
    }
}

/// The `Stasis(app,args...)` arguments a channel entered with, read back from its dialplan
/// location (what REST offers for a call found after a reconnect).
fn stasis_args(channel: &Channel) -> Vec<String> {
    if channel.dialplan.app_name != "Stasis" {
        return vec![];
    }
    channel
        .dialplan
        .app_data
        .split(',')
        .skip(1)
        .map(str::to_string)
        .collect()
}

/// Whether REST shows `channel` in Stasis for `app`: its dialplan location is the `Stasis`
/// application with `app` as its first argument. That holds for a caller that ran
/// `Stasis(app,...)`, for a channel originated into the app (`app_gone` trace: the agent's `;1`
/// half reads `Stasis` / `recorder,agent,<bridge>`) and for a snoop created into it
/// (`snoop_dual`: `recorder,snoop,caller,<id>`), and for neither the `;2` half of a Local channel
/// the app originated (it reads `Playback` / `tt-monkeys`) nor a recording's `Recorder/` channel.
pub fn in_stasis_of(channel: &Channel, app: &str) -> bool {
    let dialplan = &channel.dialplan;
    dialplan.app_name == "Stasis" && dialplan.app_data.split(',').next().map(str::trim) == Some(app)
}

/// Event types the app never acts on, kept off its websocket (`ARI_EVENT_FILTER`): Asterisk's
/// dialplan chatter, several a channel (a Local channel's both halves each set variables and run
/// dialplan applications), parsed and dropped for nothing.
pub const UNUSED_EVENTS: &[&str] = &[
    "ChannelVarset",
    "ChannelDialplan",
    "ChannelCallerId",
    "ChannelConnectedLine",
];

/// Fetches a [`Snapshot`] for `app`.
pub async fn snapshot(
    client: &AriClient,
    app: &str,
    live_names: &[String],
) -> Result<Snapshot, AriError> {
    let application = match client.application(app).await {
        Ok(a) => Some(a),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e),
    };
    let subscribed: BTreeSet<String> = application
        .as_ref()
        .map(|a| a.channel_ids.iter().cloned().collect())
        .unwrap_or_default();
    // The app is subscribed to more than its calls: Asterisk also lists the `;2` half of every
    // Local channel the app originated (it runs dialplan and never enters Stasis). Only a
    // channel in Stasis for this app is a call; the rest is never ours to end.
    let channels = client
        .channels()
        .await?
        .into_iter()
        .filter(|c| subscribed.contains(&c.id) && in_stasis_of(c, app))
        .collect();
    let bridge_ids: BTreeSet<String> = application
        .map(|a| a.bridge_ids.into_iter().collect())
        .unwrap_or_default();
    let bridges = client
        .bridges()
        .await?
        .into_iter()
        .filter(|b| bridge_ids.contains(&b.id))
        .collect();
    let mut live = Vec::new();
    for name in live_names {
        match client.live_recording(name).await {
            Ok(r) => live.push((name.clone(), Some(r))),
            Err(e) if e.is_not_found() => live.push((name.clone(), None)),
            Err(e) => return Err(e),
        }
    }
    let stored = client.stored_recordings().await?;
    let asterisk_started = match client.asterisk_info().await {
        Ok(info) => info.status.map(|s| s.startup_time),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read when Asterisk started");
            None
        }
    };
    Ok(Snapshot {
        channels,
        bridges,
        live,
        stored,
        asterisk_started,
    })
}

/// How the Stasis runtime runs.
#[derive(Debug, Default, Clone)]
pub struct StasisOptions {
    /// Keep the events the app never uses off the websocket (`ARI_EVENT_FILTER`).
    pub event_filter: bool,
    /// The recordings disk's free space, read as each recording ends: one ended while it was
    /// full was cut by it (Asterisk stops at the first write that fails and says no more).
    pub disk: Option<Arc<crate::disk_space::DiskSpace>>,
}

/// Marks the recordings that ended because the recordings disk was full, reading it now (on a
/// blocking thread: a network volume can be slow to answer), before the event goes on (so the
/// flows read the same state as they pass it to the call).
async fn note_full_disk(
    disk: &Arc<crate::disk_space::DiskSpace>,
    event: &Event,
    changes: &mut [Change],
) {
    if !matches!(
        event,
        Event::RecordingFinished(_) | Event::RecordingFailed(_)
    ) {
        return;
    }
    let disk = Arc::clone(disk);
    let exhausted = tokio::task::spawn_blocking(move || disk.recordings_exhausted())
        .await
        .unwrap_or(false);
    for change in changes {
        if let Change::RecordingFinished {
            cut: cut @ None,
            recovered: false,
            ..
        } = change
        {
            if exhausted {
                *cut = Some(crate::disk_space::CUT_BY_FULL_DISK.to_string());
            }
        }
    }
}

/// Drives the registry from the stream's notices until the stream ends. Events and the
/// changes derived from them go to `output`, in order (the call flows listen there).
pub async fn run(
    client: AriClient,
    app: String,
    registry: Arc<Mutex<Registry>>,
    metrics: Arc<Metrics>,
    mut notices: mpsc::Receiver<Notice>,
    output: mpsc::Sender<AppInput>,
    options: StasisOptions,
) {
    while let Some(notice) = notices.recv().await {
        if options.event_filter && matches!(notice, Notice::Connected { .. }) {
            // Asterisk forgets the filter once the app is gone: set at every connection.
            if let Err(e) = client.set_event_filter(&app, UNUSED_EVENTS).await {
                tracing::warn!(error = %e, "cannot set the app's event filter; every event type will be sent");
            }
        }
        let produced = match notice {
            Notice::Event(event) => {
                let mut changes = lock(&registry).apply(&event);
                if let Some(disk) = &options.disk {
                    note_full_disk(disk, &event, &mut changes).await;
                }
                let _ = output.send(AppInput::Event(event)).await;
                changes
            }
            Notice::Connected { resync: false } => {
                // First connection: calls already in the app (ari-recorder restarted) are found too.
                resync(&client, &app, &registry).await
            }
            Notice::Connected { resync: true } => resync(&client, &app, &registry).await,
            Notice::Disconnected { .. } => {
                lock(&registry).disconnected();
                vec![]
            }
            Notice::Replaced => vec![],
        };
        for change in &produced {
            match change {
                Change::RecordingStarted { .. } => metrics.count_recording_started(),
                Change::RecordingFinished { cut, .. } => {
                    metrics.count_recording_finished();
                    match cut.as_deref() {
                        Some(CUT_BY_ASTERISK_RESTART) => {
                            metrics.count_recording_cut_by_asterisk_restart()
                        }
                        Some(_) => metrics.count_recording_cut_by_full_disk(),
                        None => {}
                    }
                }
                Change::RecordingCut { .. } => metrics.count_recording_cut_by_asterisk_restart(),
                Change::RecordingFailed { .. } => metrics.count_recording_failed(),
                _ => {}
            }
        }
        metrics.set_calls_active(lock(&registry).calls_active());
        for change in produced {
            let _ = output.send(AppInput::Change(change)).await;
        }
    }
}

async fn resync(client: &AriClient, app: &str, registry: &Arc<Mutex<Registry>>) -> Vec<Change> {
    let live_names = lock(registry).live_recordings();
    match snapshot(client, app, &live_names).await {
        Ok(snapshot) => {
            let mut changes = lock(registry).reconcile(&snapshot);
            tracing::info!(recovered = changes.len(), "resynchronised from ARI REST");
            changes.push(Change::Resynced);
            changes
        }
        Err(e) => {
            tracing::warn!(error = %e, "resync from ARI REST failed; state may be stale until the next reconnect");
            vec![]
        }
    }
}

fn lock(registry: &Arc<Mutex<Registry>>) -> std::sync::MutexGuard<'_, Registry> {
    registry.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ari::events::{RecordingStarted, StasisStart};

    #[test]
    fn event_timestamps_are_read_to_the_millisecond() {
        assert_eq!(
            event_time_ms("2026-11-21T23:19:37.870+0000"),
            Some(1_795_303_177_870)
        );
        assert_eq!(event_time_ms(""), None);
    }
    use crate::ari::models::{CallerId, DialplanCep};

    fn channel(id: &str) -> Channel {
        Channel {
            id: id.into(),
            name: format!("Local/100@inbound-00000001;2 {id}"),
            state: "Up".into(),
            protocol_id: String::new(),
            caller: CallerId::default(),
            connected: CallerId::default(),
            accountcode: String::new(),
            dialplan: DialplanCep {
                context: "inbound".into(),
                exten: "100".into(),
                priority: 2,
                app_name: "Stasis".into(),
                app_data: "recorder,inbound,100".into(),
            },
            creationtime: String::new(),
            language: "en".into(),
            channelvars: None,
            caller_rdnis: None,
            tenantid: None,
        }
    }

    fn start(id: &str) -> Event {
        Event::StasisStart(StasisStart {
            args: vec!["inbound".into(), "100".into()],
            channel: channel(id),
            replace_channel: None,
            timestamp: String::new(),
            application: "recorder".into(),
            asterisk_id: None,
        })
    }

    fn recording(name: &str, state: &str) -> LiveRecording {
        LiveRecording {
            name: name.into(),
            format: "wav".into(),
            state: state.into(),
            target_uri: "bridge:b1".into(),
            duration: None,
            talking_duration: None,
            silence_duration: None,
            cause: None,
        }
    }

    #[test]
    fn reconcile_reports_calls_and_recordings_missed_while_away() {
        let mut registry = Registry::default();
        registry.apply(&start("1.1"));
        registry.apply(&start("1.2"));
        registry.apply(&Event::RecordingStarted(RecordingStarted {
            recording: recording("rec-a", "recording"),
            timestamp: String::new(),
            application: "recorder".into(),
            asterisk_id: None,
        }));
        registry.apply(&Event::RecordingStarted(RecordingStarted {
            recording: recording("rec-b", "recording"),
            timestamp: String::new(),
            application: "recorder".into(),
            asterisk_id: None,
        }));
        // While away: 1.1 hung up, 1.3 arrived, rec-a finished and was stored, rec-b still live.
        let snapshot = Snapshot {
            channels: vec![channel("1.2"), channel("1.3")],
            bridges: vec![],
            live: vec![
                ("rec-a".into(), None),
                ("rec-b".into(), Some(recording("rec-b", "recording"))),
            ],
            stored: vec![StoredRecording {
                name: "rec-a".into(),
                format: "wav".into(),
            }],
            asterisk_started: None,
        };
        let changes = registry.reconcile(&snapshot);
        assert!(changes.contains(&Change::CallEnded {
            channel_id: "1.1".into(),
            recovered: true
        }));
        assert!(changes.contains(&Change::CallStarted {
            channel: Box::new(channel("1.3")),
            args: vec!["inbound".into(), "100".into()],
            recovered: true
        }));
        assert!(changes.contains(&Change::RecordingFinished {
            name: "rec-a".into(),
            duration: None,
            started_at_ms: None,
            recovered: true,
            cut: None,
        }));
        assert_eq!(changes.len(), 3, "{changes:?}");
        assert_eq!(registry.calls_active(), 2);
        assert_eq!(registry.live_recordings(), vec!["rec-b".to_string()]);
    }

    /// Asterisk restarted while the app was away (its start time changed): a recording that was
    /// live is finished with the reason it is short.
    #[test]
    fn a_recording_cut_by_an_asterisk_restart_says_so() {
        let mut registry = Registry::default();
        let at = |started: &str| Snapshot {
            asterisk_started: Some(started.into()),
            ..Snapshot::default()
        };
        assert!(registry
            .reconcile(&at("2026-12-07T09:00:00.000+0000"))
            .is_empty());
        registry.apply(&Event::RecordingStarted(RecordingStarted {
            recording: recording("rec-c", "recording"),
            timestamp: String::new(),
            application: "recorder".into(),
            asterisk_id: None,
        }));
        let mut after = at("2026-12-07T09:05:00.000+0000");
        after.live = vec![("rec-c".into(), None)];
        after.stored = vec![StoredRecording {
            name: "rec-c".into(),
            format: "wav".into(),
        }];
        let changes = registry.reconcile(&after);
        assert!(
            matches!(&changes[..], [Change::RecordingFinished { cut: Some(why), .. }] if why == CUT_BY_ASTERISK_RESTART),
            "{changes:?}"
        );
    }

    /// `core restart now` on a real Asterisk: the recordings' ends reach the app just before
    /// the socket closes; the reconnect finds Asterisk restarted and says they were cut.
    #[test]
    fn recordings_ended_just_before_a_restart_are_said_cut() {
        use crate::ari::events::RecordingFinished;
        let mut registry = Registry::default();
        let at = |started: &str| Snapshot {
            asterisk_started: Some(started.into()),
            ..Snapshot::default()
        };
        registry.reconcile(&at("2026-12-07T09:00:00.000+0000"));
        registry.apply(&Event::RecordingFinished(RecordingFinished {
            recording: recording("rec-d", "done"),
            timestamp: String::new(),
            application: "recorder".into(),
            asterisk_id: None,
        }));
        registry.disconnected();
        let changes = registry.reconcile(&at("2026-12-07T09:05:00.000+0000"));
        assert!(
            matches!(&changes[..], [Change::RecordingCut { name, .. }] if name == "rec-d"),
            "{changes:?}"
        );
        // The same Asterisk after a mere reconnect: nothing was cut.
        let mut registry = Registry::default();
        registry.reconcile(&at("2026-12-07T09:00:00.000+0000"));
        registry.apply(&Event::RecordingFinished(RecordingFinished {
            recording: recording("rec-e", "done"),
            timestamp: String::new(),
            application: "recorder".into(),
            asterisk_id: None,
        }));
        registry.disconnected();
        assert!(registry
            .reconcile(&at("2026-12-07T09:00:00.000+0000"))
            .is_empty());
    }

    #[test]
    fn a_live_recording_that_vanished_without_a_file_is_failed() {
        let mut registry = Registry::default();
        registry.apply(&Event::RecordingStarted(RecordingStarted {
            recording: recording("rec-x", "recording"),
            timestamp: String::new(),
            application: "recorder".into(),
            asterisk_id: None,
        }));
        let changes = registry.reconcile(&Snapshot {
            live: vec![("rec-x".into(), None)],
            ..Snapshot::default()
        });
        assert!(matches!(&changes[..], [Change::RecordingFailed { name, .. }] if name == "rec-x"));
    }
}
