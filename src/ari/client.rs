//! Typed REST client for the ARI operations the product uses.
//!
//! Every error carries the HTTP status and Asterisk's own message, so callers can tell a
//! 404 (gone), 409 (conflict), 422 (bad format) and 500 (Asterisk could not do it) apart.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use url::Url;

use super::models::*;
use crate::metrics::Metrics;

/// What went wrong talking to ARI.
#[derive(Debug, thiserror::Error)]
pub enum AriError {
    #[error("ARI refused the credentials of user {username:?} (401 on {operation}): check ARI_USERNAME and ARI_PASSWORD")]
    Unauthorized {
        operation: &'static str,
        username: String,
    },
    #[error("ARI {operation}: {status} {message}")]
    Status {
        operation: &'static str,
        status: StatusCode,
        message: String,
    },
    #[error("ARI {operation}: cannot reach Asterisk: {source}")]
    Transport {
        operation: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("ARI {operation}: unexpected answer: {reason}")]
    Decode {
        operation: &'static str,
        reason: String,
    },
}

impl AriError {
    /// The HTTP status Asterisk answered, when it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            AriError::Unauthorized { .. } => Some(StatusCode::UNAUTHORIZED),
            AriError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(StatusCode::NOT_FOUND)
    }
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(StatusCode::CONFLICT)
    }
    pub fn is_unprocessable(&self) -> bool {
        self.status() == Some(StatusCode::UNPROCESSABLE_ENTITY)
    }
    pub fn is_server_error(&self) -> bool {
        self.status().is_some_and(|s| s.is_server_error())
    }
    /// Asterisk's `message`, when it sent one.
    pub fn message(&self) -> Option<&str> {
        match self {
            AriError::Status { message, .. } => Some(message),
            _ => None,
        }
    }
}

pub type AriResult<T> = Result<T, AriError>;

/// `ifExists` of a record request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfExists {
    Fail,
    Overwrite,
    Append,
}

impl IfExists {
    pub fn as_str(self) -> &'static str {
        match self {
            IfExists::Fail => "fail",
            IfExists::Overwrite => "overwrite",
            IfExists::Append => "append",
        }
    }
    pub fn parse(text: &str) -> Option<IfExists> {
        match text {
            "fail" => Some(IfExists::Fail),
            "overwrite" => Some(IfExists::Overwrite),
            "append" => Some(IfExists::Append),
            _ => None,
        }
    }
}

/// Parameters of `POST /bridges/{id}/record` and `POST /channels/{id}/record`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRequest {
    /// Recording name, relative to Asterisk's recording folder; may contain `/` for sub-folders.
    pub name: String,
    /// `wav`, `ulaw`, `gsm`, ...
    pub format: String,
    pub max_duration_seconds: Option<u32>,
    pub max_silence_seconds: Option<u32>,
    pub if_exists: Option<IfExists>,
    pub beep: Option<bool>,
    /// `none`, `any`, `*`, `#`.
    pub terminate_on: Option<String>,
}

impl RecordRequest {
    pub fn new(name: impl Into<String>, format: impl Into<String>) -> RecordRequest {
        RecordRequest {
            name: name.into(),
            format: format.into(),
            max_duration_seconds: None,
            max_silence_seconds: None,
            if_exists: None,
            beep: None,
            terminate_on: None,
        }
    }

    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = vec![("name", self.name.clone()), ("format", self.format.clone())];
        if let Some(v) = self.max_duration_seconds {
            q.push(("maxDurationSeconds", v.to_string()));
        }
        if let Some(v) = self.max_silence_seconds {
            q.push(("maxSilenceSeconds", v.to_string()));
        }
        if let Some(v) = self.if_exists {
            q.push(("ifExists", v.as_str().to_string()));
        }
        if let Some(v) = self.beep {
            q.push(("beep", v.to_string()));
        }
        if let Some(v) = &self.terminate_on {
            q.push(("terminateOn", v.clone()));
        }
        q
    }
}

/// Parameters of `POST /channels` (originate).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginateRequest {
    pub endpoint: String,
    /// Into the Stasis app (`app`, `app_args`) or into the dialplan (`context`, `extension`).
    pub app: Option<String>,
    pub app_args: Option<String>,
    pub context: Option<String>,
    pub extension: Option<String>,
    pub priority: Option<i64>,
    /// `Name <number>`.
    pub caller_id: Option<String>,
    /// Ring timeout in seconds (Asterisk's default is 30).
    pub timeout: Option<u32>,
    pub channel_id: Option<String>,
    pub originator: Option<String>,
}

impl OriginateRequest {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = vec![("endpoint", self.endpoint.clone())];
        let optional = [
            ("app", &self.app),
            ("appArgs", &self.app_args),
            ("context", &self.context),
            ("extension", &self.extension),
            ("callerId", &self.caller_id),
            ("channelId", &self.channel_id),
            ("originator", &self.originator),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                q.push((key, value.clone()));
            }
        }
        if let Some(p) = self.priority {
            q.push(("priority", p.to_string()));
        }
        if let Some(t) = self.timeout {
            q.push(("timeout", t.to_string()));
        }
        q
    }
}

/// REST half of ARI. Cheap to clone; clones share one connection pool.
#[derive(Clone)]
pub struct AriClient {
    http: reqwest::Client,
    /// `http://host:8088/ari/`, always ending in a slash.
    base: Url,
    username: String,
    password: String,
    /// The TLS settings of `https://` and `wss://` connections.
    tls: Arc<rustls::ClientConfig>,
    /// Where REST latencies go, when someone watches.
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for AriClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AriClient")
            .field("base", &self.base.as_str())
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl AriClient {
    /// `ari_url` is Asterisk's HTTP root (`http://127.0.0.1:8088`); `/ari` is added here.
    /// `https://` URLs trust the Mozilla roots; see [`AriClient::with_tls`] for a private CA.
    pub fn new(
        ari_url: &str,
        username: &str,
        password: &str,
    ) -> Result<AriClient, url::ParseError> {
        let tls = crate::tls::client_config(None).map_err(|_| url::ParseError::EmptyHost)?;
        AriClient::with_tls(ari_url, username, password, tls)
    }

    /// As [`AriClient::new`], with the given TLS settings for `https://` and `wss://`.
    pub fn with_tls(
        ari_url: &str,
        username: &str,
        password: &str,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<AriClient, url::ParseError> {
        let mut base = Url::parse(ari_url)?;
        let path = base.path().trim_end_matches('/').to_string();
        base.set_path(&format!("{path}/ari/"));
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .use_preconfigured_tls(tls.as_ref().clone())
            // A plain-HTTP redirect must never take an https:// ARI URL out of TLS.
            .https_only(base.scheme() == "https")
            .build()
            .map_err(|_| url::ParseError::EmptyHost)?;
        Ok(AriClient {
            http,
            base,
            username: username.to_string(),
            password: password.to_string(),
            tls,
            metrics: None,
        })
    }

    /// REST round trips are timed into `metrics` (`ari_request_seconds`).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> AriClient {
        self.metrics = Some(metrics);
        self
    }

    pub(crate) fn tls(&self) -> Arc<rustls::ClientConfig> {
        Arc::clone(&self.tls)
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The websocket URL for `app`'s events (`ws://host:8088/ari/events?app=...`).
    pub fn events_url(&self, app: &str) -> Url {
        let mut url = self
            .base
            .join("events")
            .unwrap_or_else(|_| self.base.clone());
        let scheme = if self.base.scheme() == "https" {
            "wss"
        } else {
            "ws"
        };
        let _ = url.set_scheme(scheme);
        url.query_pairs_mut()
            .append_pair("app", app)
            .append_pair("subscribeAll", "false");
        url
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    pub(crate) fn password(&self) -> &str {
        &self.password
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            for s in segments {
                path.push(s);
            }
        }
        url
    }

    async fn send(
        &self,
        operation: &'static str,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> AriResult<reqwest::Response> {
        self.send_body(operation, method, segments, query, None)
            .await
    }

    /// The same with a JSON body (the few operations that take one, e.g. `eventFilter`).
    async fn send_body(
        &self,
        operation: &'static str,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> AriResult<reqwest::Response> {
        let started = std::time::Instant::now();
        let mut request = self
            .http
            .request(method, self.url(segments))
            .basic_auth(&self.username, Some(&self.password))
            .query(query);
        if let Some(body) = body {
            request = request.json(body);
        }
        let sent = request.send().await;
        if let Some(metrics) = &self.metrics {
            metrics.observe_ari(operation, started.elapsed());
        }
        let response = sent.map_err(|source| AriError::Transport { operation, source })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(AriError::Unauthorized {
                operation,
                username: self.username.clone(),
            });
        }
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.message)
            .unwrap_or(text);
        Err(AriError::Status {
            operation,
            status,
            message,
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> AriResult<T> {
        let response = self.send(operation, method, segments, query).await?;
        Self::decode(operation, response).await
    }

    /// A success answer's JSON body as `T`.
    async fn decode<T: DeserializeOwned>(
        operation: &'static str,
        response: reqwest::Response,
    ) -> AriResult<T> {
        let bytes = response
            .bytes()
            .await
            .map_err(|source| AriError::Transport { operation, source })?;
        serde_json::from_slice(&bytes).map_err(|e| AriError::Decode {
            operation,
            reason: e.to_string(),
        })
    }

    async fn void(
        &self,
        operation: &'static str,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> AriResult<()> {
        self.send(operation, method, segments, query)
            .await
            .map(drop)
    }

    // --- asterisk and applications ---

    pub async fn asterisk_info(&self) -> AriResult<AsteriskInfo> {
        self.json("asterisk info", Method::GET, &["asterisk", "info"], &[])
            .await
    }

    pub async fn applications(&self) -> AriResult<Vec<Application>> {
        self.json("list applications", Method::GET, &["applications"], &[])
            .await
    }

    pub async fn application(&self, name: &str) -> AriResult<Application> {
        self.json("get application", Method::GET, &["applications", name], &[])
            .await
    }

    /// `PUT /applications/{app}/eventFilter`: event types Asterisk does not send the app. Kept
    /// only while the app is registered (a start after it was gone finds no filter), so it is
    /// set after every connect.
    pub async fn set_event_filter(&self, app: &str, disallowed: &[&str]) -> AriResult<Application> {
        let body = serde_json::json!({
            "disallowed": disallowed
                .iter()
                .map(|kind| serde_json::json!({"type": kind}))
                .collect::<Vec<_>>(),
        });
        let operation = "set event filter";
        let response = self
            .send_body(
                operation,
                Method::PUT,
                &["applications", app, "eventFilter"],
                &[],
                Some(&body),
            )
            .await?;
        Self::decode(operation, response).await
    }

    // --- channels ---

    pub async fn channels(&self) -> AriResult<Vec<Channel>> {
        self.json("list channels", Method::GET, &["channels"], &[])
            .await
    }

    pub async fn channel(&self, id: &str) -> AriResult<Channel> {
        self.json("get channel", Method::GET, &["channels", id], &[])
            .await
    }

    pub async fn originate(&self, request: &OriginateRequest) -> AriResult<Channel> {
        self.json("originate", Method::POST, &["channels"], &request.query())
            .await
    }

    /// Hangs a channel up; `reason` is `normal`, `busy`, `congestion`, `no_answer`, ...
    pub async fn hangup(&self, id: &str, reason: Option<&str>) -> AriResult<()> {
        let query: Vec<(&str, String)> = reason
            .map(|r| ("reason", r.to_string()))
            .into_iter()
            .collect();
        self.void("hangup", Method::DELETE, &["channels", id], &query)
            .await
    }

    pub async fn answer(&self, id: &str) -> AriResult<()> {
        self.void("answer", Method::POST, &["channels", id, "answer"], &[])
            .await
    }

    pub async fn ring(&self, id: &str) -> AriResult<()> {
        self.void("ring", Method::POST, &["channels", id, "ring"], &[])
            .await
    }

    pub async fn ring_stop(&self, id: &str) -> AriResult<()> {
        self.void(
            "stop ringing",
            Method::DELETE,
            &["channels", id, "ring"],
            &[],
        )
        .await
    }

    pub async fn play_on_channel(
        &self,
        id: &str,
        media: &str,
        playback_id: Option<&str>,
    ) -> AriResult<Playback> {
        let mut query = vec![("media", media.to_string())];
        if let Some(p) = playback_id {
            query.push(("playbackId", p.to_string()));
        }
        self.json(
            "play on channel",
            Method::POST,
            &["channels", id, "play"],
            &query,
        )
        .await
    }

    /// `POST /channels/{id}/snoop`: a channel in `app` that listens to `id` (`spy` = `in`: what
    /// that party says), created under our own `snoop_id`.
    pub async fn snoop(
        &self,
        id: &str,
        spy: &str,
        app: &str,
        app_args: &str,
        snoop_id: Option<&str>,
    ) -> AriResult<Channel> {
        let mut query = vec![
            ("spy", spy.to_string()),
            ("app", app.to_string()),
            ("appArgs", app_args.to_string()),
        ];
        if let Some(id) = snoop_id {
            query.push(("snoopId", id.to_string()));
        }
        self.json("snoop", Method::POST, &["channels", id, "snoop"], &query)
            .await
    }

    pub async fn record_channel(
        &self,
        id: &str,
        request: &RecordRequest,
    ) -> AriResult<LiveRecording> {
        self.json(
            "record channel",
            Method::POST,
            &["channels", id, "record"],
            &request.query(),
        )
        .await
    }

    pub async fn channel_moh_start(&self, id: &str, class: Option<&str>) -> AriResult<()> {
        let query: Vec<(&str, String)> = class
            .map(|c| ("mohClass", c.to_string()))
            .into_iter()
            .collect();
        self.void(
            "start channel MOH",
            Method::POST,
            &["channels", id, "moh"],
            &query,
        )
        .await
    }

    pub async fn channel_moh_stop(&self, id: &str) -> AriResult<()> {
        self.void(
            "stop channel MOH",
            Method::DELETE,
            &["channels", id, "moh"],
            &[],
        )
        .await
    }

    pub async fn set_channel_var(&self, id: &str, variable: &str, value: &str) -> AriResult<()> {
        let query = [
            ("variable", variable.to_string()),
            ("value", value.to_string()),
        ];
        self.void(
            "set variable",
            Method::POST,
            &["channels", id, "variable"],
            &query,
        )
        .await
    }

    pub async fn get_channel_var(&self, id: &str, variable: &str) -> AriResult<Variable> {
        let query = [("variable", variable.to_string())];
        self.json(
            "get variable",
            Method::GET,
            &["channels", id, "variable"],
            &query,
        )
        .await
    }

    // --- bridges ---

    pub async fn bridges(&self) -> AriResult<Vec<Bridge>> {
        self.json("list bridges", Method::GET, &["bridges"], &[])
            .await
    }

    pub async fn bridge(&self, id: &str) -> AriResult<Bridge> {
        self.json("get bridge", Method::GET, &["bridges", id], &[])
            .await
    }

    /// `kind` is `mixing` or `holding` (comma-joined flags as Asterisk takes them).
    pub async fn create_bridge(&self, kind: &str, name: Option<&str>) -> AriResult<Bridge> {
        let mut query = vec![("type", kind.to_string())];
        if let Some(n) = name {
            query.push(("name", n.to_string()));
        }
        self.json("create bridge", Method::POST, &["bridges"], &query)
            .await
    }

    /// Creates a bridge with an ID of the caller's choosing, so events can be routed before the
    /// answer comes back.
    pub async fn create_bridge_with_id(
        &self,
        id: &str,
        kind: &str,
        name: Option<&str>,
    ) -> AriResult<Bridge> {
        let mut query = vec![("type", kind.to_string()), ("bridgeId", id.to_string())];
        if let Some(n) = name {
            query.push(("name", n.to_string()));
        }
        self.json("create bridge", Method::POST, &["bridges"], &query)
            .await
    }

    pub async fn destroy_bridge(&self, id: &str) -> AriResult<()> {
        self.void("destroy bridge", Method::DELETE, &["bridges", id], &[])
            .await
    }

    /// Adds channels; `role` is `participant` or `announcer` when given.
    pub async fn add_channels(
        &self,
        bridge: &str,
        channels: &[&str],
        role: Option<&str>,
    ) -> AriResult<()> {
        let mut query = vec![("channel", channels.join(","))];
        if let Some(r) = role {
            query.push(("role", r.to_string()));
        }
        self.void(
            "add channel",
            Method::POST,
            &["bridges", bridge, "addChannel"],
            &query,
        )
        .await
    }

    pub async fn remove_channels(&self, bridge: &str, channels: &[&str]) -> AriResult<()> {
        let query = [("channel", channels.join(","))];
        self.void(
            "remove channel",
            Method::POST,
            &["bridges", bridge, "removeChannel"],
            &query,
        )
        .await
    }

    pub async fn bridge_moh_start(&self, id: &str, class: Option<&str>) -> AriResult<()> {
        let query: Vec<(&str, String)> = class
            .map(|c| ("mohClass", c.to_string()))
            .into_iter()
            .collect();
        self.void(
            "start bridge MOH",
            Method::POST,
            &["bridges", id, "moh"],
            &query,
        )
        .await
    }

    pub async fn bridge_moh_stop(&self, id: &str) -> AriResult<()> {
        self.void(
            "stop bridge MOH",
            Method::DELETE,
            &["bridges", id, "moh"],
            &[],
        )
        .await
    }

    pub async fn play_on_bridge(&self, id: &str, media: &str) -> AriResult<Playback> {
        let query = [("media", media.to_string())];
        self.json(
            "play on bridge",
            Method::POST,
            &["bridges", id, "play"],
            &query,
        )
        .await
    }

    pub async fn record_bridge(
        &self,
        id: &str,
        request: &RecordRequest,
    ) -> AriResult<LiveRecording> {
        self.json(
            "record bridge",
            Method::POST,
            &["bridges", id, "record"],
            &request.query(),
        )
        .await
    }

    // --- live recordings ---

    pub async fn live_recording(&self, name: &str) -> AriResult<LiveRecording> {
        self.json(
            "get live recording",
            Method::GET,
            &["recordings", "live", name],
            &[],
        )
        .await
    }

    /// Stops and keeps the file (never `cancel`, which discards it).
    pub async fn stop_recording(&self, name: &str) -> AriResult<()> {
        self.void(
            "stop recording",
            Method::POST,
            &["recordings", "live", name, "stop"],
            &[],
        )
        .await
    }

    /// Stops and discards the file.
    pub async fn cancel_recording(&self, name: &str) -> AriResult<()> {
        self.void(
            "cancel recording",
            Method::DELETE,
            &["recordings", "live", name],
            &[],
        )
        .await
    }

    pub async fn pause_recording(&self, name: &str) -> AriResult<()> {
        self.void(
            "pause recording",
            Method::POST,
            &["recordings", "live", name, "pause"],
            &[],
        )
        .await
    }

    pub async fn unpause_recording(&self, name: &str) -> AriResult<()> {
        self.void(
            "unpause recording",
            Method::DELETE,
            &["recordings", "live", name, "pause"],
            &[],
        )
        .await
    }

    pub async fn mute_recording(&self, name: &str) -> AriResult<()> {
        self.void(
            "mute recording",
            Method::POST,
            &["recordings", "live", name, "mute"],
            &[],
        )
        .await
    }

    pub async fn unmute_recording(&self, name: &str) -> AriResult<()> {
        self.void(
            "unmute recording",
            Method::DELETE,
            &["recordings", "live", name, "mute"],
            &[],
        )
        .await
    }

    // --- stored recordings ---

    pub async fn stored_recordings(&self) -> AriResult<Vec<StoredRecording>> {
        self.json(
            "list stored recordings",
            Method::GET,
            &["recordings", "stored"],
            &[],
        )
        .await
    }

    pub async fn stored_recording(&self, name: &str) -> AriResult<StoredRecording> {
        self.json(
            "get stored recording",
            Method::GET,
            &["recordings", "stored", name],
            &[],
        )
        .await
    }

    /// The recording's bytes as Asterisk stores them.
    pub async fn stored_recording_file(&self, name: &str) -> AriResult<Vec<u8>> {
        let operation = "get stored recording file";
        let response = self
            .send(
                operation,
                Method::GET,
                &["recordings", "stored", name, "file"],
                &[],
            )
            .await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|source| AriError::Transport { operation, source })?;
        Ok(bytes.to_vec())
    }

    pub async fn copy_stored_recording(
        &self,
        name: &str,
        destination: &str,
    ) -> AriResult<StoredRecording> {
        let query = [("destinationRecordingName", destination.to_string())];
        self.json(
            "copy stored recording",
            Method::POST,
            &["recordings", "stored", name, "copy"],
            &query,
        )
        .await
    }

    pub async fn delete_stored_recording(&self, name: &str) -> AriResult<()> {
        self.void(
            "delete stored recording",
            Method::DELETE,
            &["recordings", "stored", name],
            &[],
        )
        .await
    }

    // --- playbacks ---

    pub async fn playback(&self, id: &str) -> AriResult<Playback> {
        self.json("get playback", Method::GET, &["playbacks", id], &[])
            .await
    }

    pub async fn stop_playback(&self, id: &str) -> AriResult<()> {
        self.void("stop playback", Method::DELETE, &["playbacks", id], &[])
            .await
    }
}
