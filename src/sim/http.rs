//! The simulated Asterisk's HTTP face: ARI REST under `/ari`, the event websocket at
//! `/ari/events`, Basic auth or `api_key`, and a small control API under `/__sim` that tests,
//! the demo and other tools use to place calls and inject faults.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use super::party::{Script, Step};
use super::world::{SimError, SimResult, World};

/// Shared by every handler.
#[derive(Clone)]
pub struct SimState {
    pub world: Arc<Mutex<World>>,
    pub username: String,
    pub password: String,
    /// The app named in the simulated dialplan's `Stasis(<app>,inbound,${EXTEN})`.
    pub dialplan_app: String,
    /// While set and in the future, websockets neither read nor write (a stalled peer).
    pub stalled_until: Arc<Mutex<Option<Instant>>>,
    /// Every ARI request received, in order, so tests can assert what the app asked for.
    pub requests: Arc<Mutex<Vec<SimRequest>>>,
    /// How long an add to a bridge takes to be done and answered (a loaded Asterisk takes
    /// hundreds of milliseconds); none: at once.
    pub add_delay: Arc<Mutex<Option<Duration>>>,
    /// Requests whose path ends with this wait unanswered (a test holds a call in mid-step).
    pub held_requests: Arc<watch::Sender<Option<String>>>,
}

/// One ARI request as received (path relative to `/ari`, query string as sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    /// When it arrived (for latency benchmarks).
    pub at: std::time::Instant,
    /// When its answer left (none while it is in progress).
    pub answered: Option<std::time::Instant>,
}

type Q = Query<HashMap<String, String>>;

impl IntoResponse for SimError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(serde_json::json!({ "message": self.message }))).into_response()
    }
}

fn ok_json<T: Serialize>(result: SimResult<T>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

fn created_json<T: Serialize>(result: SimResult<T>) -> Response {
    match result {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

fn no_content(result: SimResult<()>) -> Response {
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

impl SimState {
    fn with<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        let mut world = self
            .world
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut world)
    }
}

fn param<'a>(q: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    q.get(key).map(String::as_str)
}

fn param_u32(q: &HashMap<String, String>, key: &str) -> SimResult<Option<u32>> {
    match q.get(key) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| SimError {
            status: 400,
            message: format!("{key}: invalid integer"),
        }),
    }
}

fn param_bool(q: &HashMap<String, String>, key: &str) -> SimResult<Option<bool>> {
    match q.get(key).map(String::as_str) {
        None => Ok(None),
        Some("true") | Some("yes") | Some("1") => Ok(Some(true)),
        Some("false") | Some("no") | Some("0") => Ok(Some(false)),
        Some(_) => Err(SimError {
            status: 400,
            message: format!("{key}: invalid boolean"),
        }),
    }
}

pub fn router(state: SimState) -> Router {
    let ari = Router::new()
        .route("/asterisk/info", get(asterisk_info))
        .route("/applications", get(applications))
        .route("/applications/{name}", get(application))
        .route("/applications/{name}/eventFilter", put(event_filter))
        .route("/channels", get(channels).post(originate))
        .route("/channels/{id}", get(channel).delete(hangup))
        .route("/channels/{id}/answer", post(answer))
        .route("/channels/{id}/ring", post(ring).delete(ring))
        .route(
            "/channels/{id}/moh",
            post(channel_moh_start).delete(channel_moh_stop),
        )
        .route("/channels/{id}/play", post(channel_play))
        .route("/channels/{id}/record", post(channel_record))
        .route("/channels/{id}/snoop", post(snoop))
        .route("/channels/{id}/variable", get(get_var).post(set_var))
        .route("/bridges", get(bridges).post(create_bridge))
        .route("/bridges/{id}", get(bridge).delete(destroy_bridge))
        .route("/bridges/{id}/addChannel", post(add_channel))
        .route("/bridges/{id}/removeChannel", post(remove_channel))
        .route(
            "/bridges/{id}/moh",
            post(bridge_moh_start).delete(bridge_moh_stop),
        )
        .route("/bridges/{id}/play", post(bridge_play))
        .route("/bridges/{id}/record", post(bridge_record))
        .route("/recordings/live/{name}", get(live).delete(cancel))
        .route("/recordings/live/{name}/stop", post(stop))
        .route("/recordings/live/{name}/pause", post(pause).delete(unpause))
        .route("/recordings/live/{name}/mute", post(mute).delete(unmute))
        .route("/recordings/stored", get(stored_list))
        .route(
            "/recordings/stored/{name}",
            get(stored_get).delete(stored_delete),
        )
        .route("/recordings/stored/{name}/file", get(stored_file))
        .route("/recordings/stored/{name}/copy", post(stored_copy))
        .route("/playbacks/{id}", get(playback).delete(playback_stop))
        .route("/events", get(events))
        .fallback(|| async {
            SimError {
                status: 404,
                message: "Not found".into(),
            }
        })
        .layer(middleware::from_fn_with_state(state.clone(), require_auth))
        .layer(middleware::from_fn_with_state(state.clone(), log_request));
    Router::new()
        .nest("/ari", ari)
        .route("/__sim/call", post(control_call))
        .route("/__sim/drop", post(control_drop))
        .route("/__sim/stall", post(control_stall))
        .route("/__sim/restart", post(control_restart))
        .route("/__sim/fail-next-record", post(control_fail_next_record))
        .with_state(state)
}

async fn log_request(State(state): State<SimState>, request: Request, next: Next) -> Response {
    let entry = SimRequest {
        method: request.method().to_string(),
        path: request.uri().path().to_string(),
        query: request.uri().query().unwrap_or("").to_string(),
        at: std::time::Instant::now(),
        answered: None,
    };
    let index = {
        let mut requests = state.requests.lock().unwrap_or_else(|p| p.into_inner());
        requests.push(entry);
        requests.len() - 1
    };
    let path = request.uri().path().to_string();
    let _ = state
        .held_requests
        .subscribe()
        .wait_for(|held| held.as_deref().is_none_or(|suffix| !path.ends_with(suffix)))
        .await;
    let response = next.run(request).await;
    if let Some(entry) = state
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_mut(index)
    {
        entry.answered = Some(std::time::Instant::now());
    }
    response
}

/// Basic auth or `api_key=user:password`, as Asterisk accepts; 401 otherwise.
async fn require_auth(State(state): State<SimState>, request: Request, next: Next) -> Response {
    let expected = format!("{}:{}", state.username, state.password);
    let from_header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .is_some_and(|d| d == expected.as_bytes());
    let from_query = request
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .any(|(k, v)| k == "api_key" && v == expected.as_str())
        })
        .unwrap_or(false);
    if from_header || from_query {
        next.run(request).await
    } else {
        SimError {
            status: 401,
            message: "Authentication required".into(),
        }
        .into_response()
    }
}

async fn asterisk_info(State(s): State<SimState>) -> Response {
    Json(s.with(|w| w.asterisk_info())).into_response()
}
async fn applications(State(s): State<SimState>) -> Response {
    Json(s.with(|w| w.applications())).into_response()
}
async fn application(State(s): State<SimState>, Path(name): Path<String>) -> Response {
    ok_json(s.with(|w| w.application(&name)))
}
async fn event_filter(
    State(s): State<SimState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    // An empty body clears both lists; a body that is not JSON is a bad format.
    let filter = if body.is_empty() {
        Ok(serde_json::json!({}))
    } else {
        serde_json::from_slice::<serde_json::Value>(&body)
    };
    match filter {
        Ok(filter) => ok_json(s.with(|w| w.set_event_filter(&name, &filter))),
        Err(_) => ok_json(super::world::fail::<()>(400, "Invalid format definition")),
    }
}
async fn channels(State(s): State<SimState>) -> Response {
    Json(s.with(|w| w.channels())).into_response()
}
async fn channel(State(s): State<SimState>, Path(id): Path<String>) -> Response {
    ok_json(s.with(|w| w.channel(&id)))
}
async fn originate(State(s): State<SimState>, Query(q): Q) -> Response {
    let timeout = match param_u32(&q, "timeout") {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let app = s.dialplan_app.clone();
    ok_json(s.with(|w| {
        w.originate(
            param(&q, "endpoint").unwrap_or(""),
            param(&q, "app"),
            param(&q, "appArgs"),
            param(&q, "context"),
            param(&q, "extension"),
            param(&q, "callerId"),
            timeout,
            param(&q, "channelId"),
            &app,
        )
    }))
}
async fn hangup(State(s): State<SimState>, Path(id): Path<String>, Query(q): Q) -> Response {
    no_content(s.with(|w| w.hangup(&id, param(&q, "reason"))))
}
async fn snoop(State(s): State<SimState>, Path(id): Path<String>, Query(q): Q) -> Response {
    ok_json(s.with(|w| {
        w.snoop(
            &id,
            param(&q, "spy"),
            param(&q, "whisper"),
            param(&q, "app"),
            param(&q, "appArgs"),
            param(&q, "snoopId"),
        )
    }))
}
async fn answer(State(s): State<SimState>, Path(id): Path<String>) -> Response {
    no_content(s.with(|w| w.answer(&id)))
}
async fn ring(State(s): State<SimState>, Path(id): Path<String>) -> Response {
    no_content(s.with(|w| w.ring(&id)))
}
async fn channel_moh_start(State(s): State<SimState>, Path(id): Path<String>) -> Response {
    no_content(s.with(|w| w.channel_moh(&id, true)))
}
async fn channel_moh_stop(State(s): State<SimState>, Path(id): Path<String>) -> Response {
    no_content(s.with(|w| w.channel_moh(&id, false)))
}
async fn channel_play(State(s): State<SimState>, Path(id): Path<String>, Query(q): Q) -> Response {
    created_json(s.with(|w| {
        w.play(
            &id,
            false,
            param(&q, "media").unwrap_or(""),
            param(&q, "playbackId"),
        )
    }))
}
async fn bridge_play(State(s): State<SimState>, Path(id): Path<String>, Query(q): Q) -> Response {
    created_json(s.with(|w| {
        w.play(
            &id,
            true,
            param(&q, "media").unwrap_or(""),
            param(&q, "playbackId"),
        )
    }))
}
async fn channel_record(
    State(s): State<SimState>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Response {
    record(s, id, false, q)
}
async fn bridge_record(State(s): State<SimState>, Path(id): Path<String>, Query(q): Q) -> Response {
    record(s, id, true, q)
}
fn record(s: SimState, target: String, on_bridge: bool, q: HashMap<String, String>) -> Response {
    let parsed = (|| -> SimResult<_> {
        Ok((
            param_u32(&q, "maxDurationSeconds")?,
            param_u32(&q, "maxSilenceSeconds")?,
            param_bool(&q, "beep")?,
        ))
    })();
    let (max_duration, max_silence, beep) = match parsed {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    created_json(s.with(|w| {
        w.record(
            &target,
            on_bridge,
            param(&q, "name").unwrap_or(""),
            param(&q, "format").unwrap_or(""),
            max_duration,
            max_silence,
            param(&q, "ifExists"),
            beep,
            param(&q, "terminateOn"),
        )
    }))
}
async fn get_var(State(s): State<SimState>, Path(id): Path<String>, Query(q): Q) -> Response {
    ok_json(s.with(|w| w.get_var(&id, param(&q, "variable").unwrap_or(""))))
}
async fn set_var(State(s): State<SimState>, Path(id): Path<String>, Query(q): Q) -> Response {
    no_content(s.with(|w| {
        w.set_var(
            &id,
            param(&q, "variable").unwrap_or(""),
            param(&q, "value").unwrap_or(""),
        )
    }))
}
async fn bridges(State(s): State<SimState>) -> Response {
    Json(s.with(|w| w.bridges())).into_response()
}
async fn bridge(State(s): State<SimState>, Path(id): Path<String>) -> Response {
    ok_json(s.with(|w| w.bridge(&id)))
}
async fn create_bridge(State(s): State<SimState>, Query(q): Q) -> Response {
    let app = s.dialplan_app.clone();
    ok_json(s.with(|w| {
        w.create_bridge(
            param(&q, "type"),
            param(&q, "name"),
            param(&q, "bridgeId"),
            &app,
        )
    }))
}
async fn destroy_bridge(State(s): State<SimState>, Path(id): Path<String>) -> Response {
    no_content(s.with(|w| w.destroy_bridge(&id)))
}
fn channel_list(q: &HashMap<String, String>) -> Vec<&str> {
    param(q, "channel")
        .map(|c| c.split(',').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default()
}
async fn add_channel(State(s): State<SimState>, Path(id): Path<String>, Query(q): Q) -> Response {
    let list = channel_list(&q);
    if list.is_empty() {
        return SimError {
            status: 400,
            message: "channel: parameter is required".into(),
        }
        .into_response();
    }
    let delay = *s.add_delay.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    no_content(s.with(|w| w.add_channels(&id, &list)))
}
async fn remove_channel(
    State(s): State<SimState>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Response {
    let list = channel_list(&q);
    if list.is_empty() {
        return SimError {
            status: 400,
            message: "channel: parameter is required".into(),
        }
        .into_response();
    }
    no_content(s.with(|w| w.remove_channels(&id, &list)))
}
async fn bridge_moh_start(State(s): State<SimState>, Path(id): Path<String>) -> Response {
    no_content(s.with(|w| w.bridge_moh(&id, true)))
}
async fn bridge_moh_stop(State(s): State<SimState>, Path(id): Path<String>) -> Response {
    no_content(s.with(|w| w.bridge_moh(&id, false)))
}
async fn live(State(s): State<SimState>, Path(name): Path<String>) -> Response {
    ok_json(s.with(|w| w.live_recording(&name)))
}
async fn cancel(State(s): State<SimState>, Path(name): Path<String>) -> Response {
    no_content(s.with(|w| w.cancel_recording(&name)))
}
async fn stop(State(s): State<SimState>, Path(name): Path<String>) -> Response {
    no_content(s.with(|w| w.stop_recording(&name)))
}
async fn pause(State(s): State<SimState>, Path(name): Path<String>) -> Response {
    no_content(s.with(|w| w.pause_recording(&name, true)))
}
async fn unpause(State(s): State<SimState>, Path(name): Path<String>) -> Response {
    no_content(s.with(|w| w.pause_recording(&name, false)))
}
async fn mute(State(s): State<SimState>, Path(name): Path<String>) -> Response {
    no_content(s.with(|w| w.mute_recording(&name, true)))
}
async fn unmute(State(s): State<SimState>, Path(name): Path<String>) -> Response {
    no_content(s.with(|w| w.mute_recording(&name, false)))
}
async fn stored_list(State(s): State<SimState>) -> Response {
    Json(s.with(|w| w.stored_recordings())).into_response()
}
async fn stored_get(State(s): State<SimState>, Path(name): Path<String>) -> Response {
    ok_json(s.with(|w| w.stored_recording(&name)))
}
async fn stored_delete(State(s): State<SimState>, Path(name): Path<String>) -> Response {
    no_content(s.with(|w| w.delete_stored(&name)))
}
async fn stored_file(State(s): State<SimState>, Path(name): Path<String>) -> Response {
    match s.with(|w| w.stored_file(&name)) {
        Ok((bytes, content_type)) => {
            let mut headers = HeaderMap::new();
            if let Ok(v) = content_type.parse() {
                headers.insert(header::CONTENT_TYPE, v);
            }
            (headers, bytes).into_response()
        }
        Err(e) => e.into_response(),
    }
}
async fn stored_copy(State(s): State<SimState>, Path(name): Path<String>, Query(q): Q) -> Response {
    let Some(destination) = param(&q, "destinationRecordingName") else {
        return SimError {
            status: 400,
            message: "destinationRecordingName: parameter is required".into(),
        }
        .into_response();
    };
    ok_json(s.with(|w| w.copy_stored(&name, destination)))
}
async fn playback(State(s): State<SimState>, Path(id): Path<String>) -> Response {
    ok_json(s.with(|w| w.playback(&id)))
}
async fn playback_stop(State(s): State<SimState>, Path(id): Path<String>) -> Response {
    no_content(s.with(|w| w.stop_playback(&id)))
}

async fn events(State(s): State<SimState>, ws: WebSocketUpgrade, Query(q): Q) -> Response {
    let Some(app) = param(&q, "app").map(str::to_string) else {
        return SimError {
            status: 400,
            message: "app: parameter is required".into(),
        }
        .into_response();
    };
    ws.on_upgrade(move |socket| serve_events(s, app, socket))
}

async fn serve_events(state: SimState, app: String, mut socket: WebSocket) {
    let (id, mut rx) = state.with(|w| w.connect_app(&app));
    let mut recheck = tokio::time::interval(Duration::from_millis(20));
    loop {
        let stall = *state
            .stalled_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(until) = stall {
            if until > Instant::now() {
                // A stalled peer: reads nothing, answers no ping, sends nothing.
                tokio::time::sleep_until(until).await;
                continue;
            }
        }
        tokio::select! {
            message = rx.recv() => match message {
                Some(text) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                // Replaced by another websocket, or dropped by a fault.
                None => break,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            _ = recheck.tick() => {}
        }
    }
    let _ = socket.send(Message::Close(None)).await;
    state.with(|w| w.disconnect_app(&app, id));
}

// ---------------------------------------------------------------- control API

#[derive(serde::Deserialize)]
struct CallRequest {
    /// Dialled number: the call enters `Stasis(app,inbound,<exten>)`.
    exten: String,
    /// `Name <number>`.
    caller_id: Option<String>,
    /// A built-in caller behaviour (`talk`, `talkhash`, `silent`) ...
    behaviour: Option<String>,
    /// ... or talk for this many seconds, then hang up.
    talk_seconds: Option<f64>,
}

async fn control_call(State(s): State<SimState>, Json(request): Json<CallRequest>) -> Response {
    let app = s.dialplan_app.clone();
    ok_json(s.with(|w| {
        let behaviour = match request.talk_seconds {
            Some(secs) => {
                let name = format!("talk-{}", secs);
                w.define_party(
                    &name,
                    Script::new(
                        request.caller_id.as_deref().unwrap_or("caller"),
                        vec![Step::Answer, Step::Talk(secs), Step::Hangup],
                    ),
                );
                name
            }
            None => request.behaviour.clone().unwrap_or_else(|| "talk".into()),
        };
        w.originate(
            &format!("Local/{}@inbound", request.exten),
            None,
            None,
            Some("caller-sim"),
            Some(&behaviour),
            request.caller_id.as_deref(),
            Some(30),
            None,
            &app,
        )
    }))
}

async fn control_drop(State(s): State<SimState>) -> Response {
    s.with(|w| w.drop_connections());
    StatusCode::NO_CONTENT.into_response()
}

async fn control_stall(State(s): State<SimState>, Query(q): Q) -> Response {
    let seconds: f64 = param(&q, "seconds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(15.0);
    *s.stalled_until.lock().unwrap_or_else(|p| p.into_inner()) =
        Some(Instant::now() + Duration::from_secs_f64(seconds.clamp(0.0, 3600.0)));
    StatusCode::NO_CONTENT.into_response()
}

async fn control_restart(State(s): State<SimState>) -> Response {
    s.with(|w| w.restart());
    StatusCode::NO_CONTENT.into_response()
}

async fn control_fail_next_record(State(s): State<SimState>, Query(q): Q) -> Response {
    let cause = param(&q, "cause")
        .unwrap_or("Simulated failure")
        .to_string();
    s.with(|w| w.fail_next_record(&cause));
    StatusCode::NO_CONTENT.into_response()
}
