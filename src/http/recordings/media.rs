//! A recording's bytes: inline audio with exact ranges, downloads, Opus, the stereo version,
//! waveforms. Signed links to them are `links.rs`'s.

use super::*;

/// The audio of a row, or why there is none: its file, or once the archive removed the local
/// copy, its object in the bucket.
pub(in crate::http) async fn playable(
    state: &AppState,
    row: &Recording,
) -> Result<WavStream, ApiError> {
    playable_in(&state.db, &state.library, row).await
}

/// [`playable`] from the database and the library themselves (for work outside a request).
async fn playable_in(
    db: &crate::db::Database,
    library: &Arc<Library>,
    row: &Recording,
) -> Result<WavStream, ApiError> {
    match row.status.as_str() {
        "ready" => {}
        "recording" => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "in_progress",
                "the call is still being recorded",
            ));
        }
        other => {
            let reason = row.reason.clone().unwrap_or_else(|| other.to_string());
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no_audio",
                format!("no audio: {reason}"),
            ));
        }
    }
    let keys = library.keys.as_ref();
    // The file, and whether it is sealed, found on a blocking thread.
    let local = if library.holds(row) {
        let (library, rel) = (Arc::clone(library), row.path.clone());
        tokio::task::spawn_blocking(move || {
            library
                .file(&rel)
                .map(|file| crate::encryption::is_sealed_file(&file).map(|sealed| (file, sealed)))
                .transpose()
        })
        .await
        .map_err(internal)?
        .map_err(internal)?
    } else {
        None
    };
    let source = match local {
        Some((file, sealed)) => {
            if sealed && keys.is_none() {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no_audio",
                    "no audio: the file is sealed at rest and no key is configured",
                ));
            }
            StoredAudio::File(file).sealed_if(sealed, keys)
        }
        None => match archived(db, library, row).await? {
            Some(source) => source,
            None if !library.holds(row) => return Err(on_other_node(library, row)),
            None => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no_audio",
                    "no audio: the file is gone or outside the recordings folder",
                ))
            }
        },
    };
    row.stream(source).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_audio",
            "no audio: format not playable",
        )
    })
}

/// A recording still only on another node's disk: served once it is archived (the documented
/// choice: no proxying between nodes).
fn on_other_node(library: &Library, row: &Recording) -> ApiError {
    match &library.archive {
        Some(_) => ApiError::new(
            StatusCode::CONFLICT,
            "not_yet_archived",
            format!(
                "the recording is on node {}'s disk and not archived yet: try again shortly, or on that node",
                row.node_id
            ),
        )
        .retry_after(30),
        None => ApiError::new(
            StatusCode::CONFLICT,
            "on_other_node",
            format!(
                "the recording is on node {}'s disk: ask that node, or configure an archive so any node serves it",
                row.node_id
            ),
        ),
    }
}

/// The row's verified copy in the archive's bucket, if it has one.
async fn archived(
    db: &crate::db::Database,
    library: &Library,
    row: &Recording,
) -> Result<Option<StoredAudio>, ApiError> {
    let Some(archive) = library.archive.clone() else {
        return Ok(None);
    };
    let Some(stored) = crate::archive::queue::stored(db, row.id)
        .await
        .map_err(internal)?
    else {
        return Ok(None);
    };
    if stored.sha256.as_str() != row.sha256.as_deref().unwrap_or("") {
        // The bucket holds another version of the file than the library describes.
        return Ok(None);
    }
    let keys = library.keys.as_ref();
    if stored.sealed != 0 && keys.is_none() {
        return Ok(None);
    }
    Ok(Some(
        StoredAudio::Object(ObjectBytes {
            archive,
            key: stored.object_key,
            len: u64::try_from(stored.size_bytes).unwrap_or(0),
            parts: u64::try_from(stored.parts).unwrap_or(0),
            part_bytes: u64::try_from(stored.part_bytes).unwrap_or(0),
        })
        .sealed_if(stored.sealed != 0, keys),
    ))
}

/// The library's audio as the transcription worker reads it: as playback does, from disk or
/// the bucket, sealed or not.
pub struct LibraryAudio {
    pub db: crate::db::Database,
    pub library: Arc<Library>,
}

impl crate::transcription::RecordingAudio for LibraryAudio {
    async fn audio(&self, row: &Recording) -> Result<WavStream, String> {
        playable_in(&self.db, &self.library, row)
            .await
            .map_err(|e| e.message)
    }

    async fn parties(&self, row: &Recording) -> Option<[WavStream; 2]> {
        party_streams(&self.library, row).await
    }
}

/// Each party of a dual-channel recording on its own (`.channels/<name>-caller.wav` and
/// `-agent.wav`, recorded through snoops), when both are there and playable; probed on a
/// blocking thread.
pub(in crate::http) async fn party_streams(
    library: &Arc<Library>,
    row: &Recording,
) -> Option<[WavStream; 2]> {
    if !library.holds(row) {
        return None;
    }
    let (library, name) = (Arc::clone(library), row.name.clone());
    tokio::task::spawn_blocking(move || party_streams_now(&library, &name))
        .await
        .ok()
        .flatten()
}

fn party_streams_now(library: &Library, name: &str) -> Option<[WavStream; 2]> {
    let stream = |role: &str| {
        let rel = format!("{}/{name}-{role}.wav", crate::audio::PARTY_FOLDER);
        let path = library.file(&rel)?;
        let probe = crate::library::probe::probe_sealed(&path, false, library.keys.as_deref());
        if probe.status != crate::library::probe::Status::Ready {
            return None;
        }
        let sealed = crate::encryption::is_sealed_file(&path).ok()?;
        Some(WavStream {
            source: StoredAudio::File(path).sealed_if(sealed, library.keys.as_ref()),
            encoding: probe.encoding?,
            sample_rate: probe.sample_rate,
            data_offset: probe.data_offset,
            data_len: probe.data_len,
        })
    };
    Some([stream("caller")?, stream("agent")?])
}

/// A key for a stereo version: the recording's hash and its parties' files as they are now.
pub(in crate::http) async fn stereo_key(row: &Recording, parties: &[WavStream; 2]) -> String {
    use sha2::Digest;
    let files: Vec<Option<PathBuf>> = parties
        .iter()
        .map(|p| p.source.file().map(PathBuf::from))
        .collect();
    let times = tokio::task::spawn_blocking(move || {
        files
            .iter()
            .map(|file| {
                file.as_ref()
                    .and_then(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let mut hash = sha2::Sha256::new();
    hash.update(row.sha256.as_deref().unwrap_or("").as_bytes());
    for (i, party) in parties.iter().enumerate() {
        hash.update(party.data_len.to_le_bytes());
        let modified = times.get(i).copied().flatten();
        if let Some(modified) = modified {
            let ms = modified
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            hash.update(ms.to_le_bytes());
        }
    }
    hash.finalize()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(in crate::http) fn no_dual_channel() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_audio",
        "no audio: this recording was not recorded dual-channel (channels = \"dual\" on its node)",
    )
}

/// What an audio answer serves ranges of: the WAV stream, or an encoded file held in memory.
pub(in crate::http) enum AudioBody {
    Wav(WavStream),
    Ogg(Arc<Vec<u8>>),
    Mp3(Arc<Vec<u8>>),
    /// A WAV file served as it is (a recording's stereo version).
    File {
        source: StoredAudio,
        len: u64,
    },
}

impl AudioBody {
    fn len(&self) -> u64 {
        match self {
            AudioBody::Wav(w) => w.len(),
            AudioBody::Ogg(b) | AudioBody::Mp3(b) => b.len() as u64,
            AudioBody::File { len, .. } => *len,
        }
    }

    fn read_range(&self, start: u64, end: u64) -> std::io::Result<Vec<u8>> {
        match self {
            AudioBody::Wav(w) => w.read_range(start, end),
            AudioBody::Ogg(b) | AudioBody::Mp3(b) => {
                let end = end.min(b.len() as u64) as usize;
                Ok(b.get(start as usize..end).unwrap_or(&[]).to_vec())
            }
            AudioBody::File { source, len } => {
                let end = end.min(*len);
                if start >= end {
                    return Ok(Vec::new());
                }
                let mut out = vec![0u8; (end - start) as usize];
                source.read_exact_at(start, &mut out)?;
                Ok(out)
            }
        }
    }

    fn content_type(&self) -> &'static str {
        match self {
            AudioBody::Wav(_) | AudioBody::File { .. } => "audio/wav",
            AudioBody::Ogg(_) => "audio/ogg",
            AudioBody::Mp3(_) => "audio/mpeg",
        }
    }
}

/// Bytes `start..end` of `source`, read a chunk at a time as the client takes them, so a long
/// recording starts at once and never sits whole in memory.
pub(in crate::http) fn chunked_body(source: Arc<AudioBody>, start: u64, end: u64) -> Body {
    const CHUNK: u64 = 256 * 1024;
    let chunks = futures_util::stream::unfold(start, move |pos| {
        let source = source.clone();
        async move {
            if pos >= end {
                return None;
            }
            let upto = (pos + CHUNK).min(end);
            let read = tokio::task::spawn_blocking(move || source.read_range(pos, upto)).await;
            let item = match read {
                Ok(Ok(bytes)) => Ok(bytes),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(std::io::Error::other(e)),
            };
            // After an error the stream ends (the client sees a short body).
            let next = if item.is_ok() { upto } else { end };
            Some((item, next))
        }
    });
    Body::from_stream(chunks)
}

pub(in crate::http) fn serve(
    stream: AudioBody,
    etag: String,
    asked: &RangeHeader,
    attachment: Option<String>,
) -> Result<Response, ApiError> {
    let len = stream.len();
    let content_type = stream.content_type();
    let range = parse_range(asked.range.as_deref(), len);
    // A range made for another version of the file must not be stitched onto this one.
    let if_range_stale = asked.if_range.as_deref().is_some_and(|v| v != etag);
    let range = if if_range_stale {
        RangeRequest::Full
    } else {
        range
    };
    let mut response = match range {
        RangeRequest::Unsatisfiable => {
            let mut r = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "bad_range",
                format!("the stream is {len} bytes long"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
        RangeRequest::Full => {
            (StatusCode::OK, chunked_body(Arc::new(stream), 0, len)).into_response()
        }
        RangeRequest::Part { start, end } => {
            let body = chunked_body(Arc::new(stream), start, end + 1);
            let mut r = (StatusCode::PARTIAL_CONTENT, body).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            r
        }
    };
    let served = match range {
        RangeRequest::Part { start, end } => end + 1 - start,
        _ => len,
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(served));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Some(name) = attachment {
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    } else {
        h.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("inline"),
        );
    }
    Ok(response)
}

pub(in crate::http) fn etag(row: &Recording) -> String {
    format!(
        "\"{}\"",
        row.sha256
            .as_deref()
            .map(|h| &h[..h.len().min(32)])
            .unwrap_or("none")
    )
}

/// Inline playback, exact ranges.
///
/// PCM WAV by default (mu-law and A-law transcoded), or Ogg Opus or MP3. By a signed-in user
/// with the right to play, or through a play link.
#[utoipa::path(get, path = "/api/recordings/{id}/audio", tag = "recordings", operation_id = "recording_audio",
    params(RecordingId, AudioQuery, RangeHeader),
    security(("bearer" = []), ("session" = []), ("signedLink" = [])),
    responses(
    (status = 200, description = "the audio", content_type = "audio/wav"),
    (status = 206, description = "the requested range", content_type = "audio/wav"),
    crate::http::openapi::RecordingRefusals,
    (status = 409, description = "no playable audio", body = ErrorBody),
    (status = 416, description = "range not satisfiable", body = ErrorBody),
))]
pub(in crate::http) async fn audio(
    State(state): State<AppState>,
    request: MediaRequest,
) -> Result<Response, ApiError> {
    audio_response(&state, request, LinkAction::Audio).await
}

/// The same audio as an attachment.
///
/// Admins and managers, with the tenant's download entitlement; or through a download link.
#[utoipa::path(get, path = "/api/recordings/{id}/download", tag = "recordings", operation_id = "recording_download",
    params(RecordingId, AudioQuery, RangeHeader),
    security(("bearer" = []), ("session" = []), ("signedLink" = [])),
    responses(
    (status = 200, description = "the audio, `Content-Disposition: attachment`", content_type = "audio/wav"),
    (status = 206, description = "the requested range", content_type = "audio/wav"),
    crate::http::openapi::RecordingRefusals,
    (status = 409, description = "no playable audio", body = ErrorBody),
    (status = 416, description = "range not satisfiable", body = ErrorBody),
))]
pub(in crate::http) async fn download(
    State(state): State<AppState>,
    request: MediaRequest,
) -> Result<Response, ApiError> {
    audio_response(&state, request, LinkAction::Download).await
}

/// A request for a recording's bytes, by a signed-in caller or through a signed link.
pub(in crate::http) struct MediaRequest {
    pub(in crate::http) id: String,
    pub(in crate::http) query: HashMap<String, String>,
    pub(in crate::http) client: String,
    pub(in crate::http) caller: Option<Caller>,
    pub(in crate::http) audio: AudioQuery,
    pub(in crate::http) range: RangeHeader,
}

impl FromRequestParts<AppState> for MediaRequest {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<MediaRequest, Response> {
        use axum::extract::OptionalFromRequestParts;
        let Path(RecordingId { id }) =
            <Path<RecordingId> as FromRequestParts<AppState>>::from_request_parts(parts, state)
                .await
                .map_err(IntoResponse::into_response)?;
        let Query(query) =
            <Query<HashMap<String, String>> as FromRequestParts<AppState>>::from_request_parts(
                parts, state,
            )
            .await
            .map_err(IntoResponse::into_response)?;
        let ConnectInfoOrUnknown(client) =
            <ConnectInfoOrUnknown as FromRequestParts<AppState>>::from_request_parts(parts, state)
                .await
                .map_err(|never| match never {})?;
        let caller =
            <Caller as OptionalFromRequestParts<AppState>>::from_request_parts(parts, state)
                .await?;
        let audio = AudioQuery::from_query(&query).map_err(IntoResponse::into_response)?;
        Ok(MediaRequest {
            id,
            query,
            client,
            caller,
            audio,
            range: RangeHeader::from_headers(&parts.headers),
        })
    }
}

/// The audio of a recording, inline or as an attachment named from its metadata. Audited
/// before a byte is sent; a single-use download link is spent in the same transaction.
pub(in crate::http) async fn audio_response(
    state: &AppState,
    mut request: MediaRequest,
    action: LinkAction,
) -> Result<Response, ApiError> {
    let attachment = action == LinkAction::Download;
    let AudioQuery { format, dual } = request.audio;
    let (opus, mp3) = (format == AudioFormat::Opus, format == AudioFormat::Mp3);
    let (caller, grant) = if links::is_link(&request.query) {
        let (caller, grant) = link_caller(state, &request, action).await?;
        (caller, Some(grant))
    } else {
        match request.caller.take() {
            Some(caller) => (caller, None),
            None => {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "sign in, send an API token, or use a signed link",
                ))
            }
        }
    };
    let (row, _, mut entry) = authorize(
        state,
        &caller,
        &request.id,
        action.policy_action(),
        action.audit_action(),
    )
    .await?;
    let stream = match playable(state, &row).await {
        Ok(stream) => stream,
        Err(e) => return Err(caller.refuse(state, entry, e).await),
    };
    let range = request.range.detail();
    let parties = if dual {
        match party_streams(&state.library, &row).await {
            Some(parties) => Some(parties),
            None => return Err(caller.refuse(state, entry, no_dual_channel()).await),
        }
    } else {
        None
    };
    entry.detail = Some(
        [
            grant.as_ref().map(|_| "signed link".to_string()),
            opus.then(|| "opus".to_string()),
            mp3.then(|| "mp3".to_string()),
            dual.then(|| "dual-channel".to_string()),
            range,
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", "),
    )
    .filter(|d| !d.is_empty());
    if let Some(grant) = grant.as_ref().filter(|_| attachment) {
        // A single-use download link is spent in the transaction of its event.
        let mut tx = AuditTx::begin(&state.db).await.map_err(internal)?;
        let spent = links::spend(
            tx.conn(),
            &grant.nonce,
            grant.expires.saturating_mul(1000),
            state.access.clock.now_ms(),
        )
        .await
        .map_err(internal)?;
        if !spent {
            drop(tx);
            return Err(caller
                .refuse(state, entry, link_refused(links::LinkError::Used))
                .await);
        }
        tx.commit(&entry).await.map_err(internal)?;
    } else {
        audit::record(&state.db, &entry).await.map_err(internal)?;
    }
    let mut tag = etag(&row);
    let mut name = attachment.then(|| download_name(&row));
    let body = if opus {
        tag = format!("\"{}-opus\"", tag.trim_matches('"'));
        name = name.map(|n| n.replace(".wav", ".opus"));
        AudioBody::Ogg(encoded_file(&state.library, &row, stream, false).await?)
    } else if mp3 {
        tag = format!("\"{}-mp3\"", tag.trim_matches('"'));
        name = name.map(|n| n.replace(".wav", ".mp3"));
        AudioBody::Mp3(encoded_file(&state.library, &row, stream, true).await?)
    } else if let Some(parties) = parties {
        let key = stereo_key(&row, &parties).await;
        tag = format!("\"{}-dual-{key}\"", tag.trim_matches('"'));
        name = name.map(|n| n.replace(".wav", "-stereo.wav"));
        let [caller_side, agent_side] = parties;
        let call = row
            .call_id
            .clone()
            .unwrap_or_else(|| format!("file:{}", row.id));
        let file = state
            .library
            .call_audio
            .stereo(&call, row.id, &key, caller_side, agent_side)
            .await
            .map_err(internal)?;
        AudioBody::File {
            len: file.len,
            source: file.source(),
        }
    } else {
        AudioBody::Wav(stream)
    };
    serve(body, tag, &request.range, name)
}

/// The recording as Ogg Opus or (`mp3`) MP3, encoded once per file version and kept in memory.
pub(in crate::http) async fn encoded_file(
    library: &Library,
    row: &Recording,
    stream: WavStream,
    mp3: bool,
) -> Result<Arc<Vec<u8>>, ApiError> {
    let sha256 = row.sha256.as_deref().unwrap_or_default();
    let renderings = &library.renderings;
    let (made, format) = if mp3 {
        (renderings.mp3(row.id, sha256, stream).await, "MP3")
    } else {
        (renderings.opus(row.id, sha256, stream).await, "Opus")
    };
    made.map_err(|e| match e {
        RenderError::Audio(reason) => ApiError::new(
            StatusCode::NOT_FOUND,
            "no_audio",
            format!("no {format} audio: {reason}"),
        ),
        RenderError::NoSpace(reason) => ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "cache_full",
            format!("the audio cannot be prepared now: {reason}"),
        )
        .retry_after(60),
        RenderError::Job(_) => internal(e),
    })
}

/// A download name from metadata only: date, node type and caller digits, never raw input.
/// The caller's number in a file name: its digits only, at most 20.
pub(in crate::http) fn caller_digits(row: &Recording) -> String {
    row.caller_number
        .as_deref()
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_digit())
        .take(20)
        .collect()
}

pub(in crate::http) fn download_name(row: &Recording) -> String {
    let when = chrono::DateTime::from_timestamp_millis(row.started_at_ms)
        .map(|t| t.format("%Y%m%d-%H%M%S").to_string())
        .unwrap_or_else(|| "recording".into());
    let kind: String = row
        .node_type
        .map_or("recording", crate::library::NodeType::as_str)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let caller = caller_digits(row);
    if caller.is_empty() {
        format!("{when}-{kind}-{}.wav", row.id)
    } else {
        format!("{when}-{kind}-{caller}-{}.wav", row.id)
    }
}

/// Min/max peaks for a waveform (needs the right to play).
#[utoipa::path(get, path = "/api/recordings/{id}/peaks", tag = "recordings", operation_id = "recording_peaks",
    params(RecordingId, PeakPoints, PeakChannels),
    responses(
    (status = 200, description = "`{\"peaks\": [[min, max], ...]}`"),
    (status = 400, description = "a number of points not offered", body = ErrorBody),
    crate::http::openapi::RecordingRefusals,
    (status = 409, description = "no playable audio, or no party recordings for dual", body = ErrorBody),
))]
pub(in crate::http) async fn peaks(
    State(state): State<AppState>,
    caller: Caller,
    Path(RecordingId { id }): Path<RecordingId>,
    Params(PeakPoints { points }): Params<PeakPoints>,
    Params(PeakChannels { dual }): Params<PeakChannels>,
) -> Result<Response, ApiError> {
    let (row, _, entry) = authorize(&state, &caller, &id, Action::Play, "peaks").await?;
    let stream = match playable(&state, &row).await {
        Ok(stream) => stream,
        Err(e) => return Err(caller.refuse(&state, entry, e).await),
    };
    if dual {
        // Each party's waveform from its own recording: the caller's and the agent's.
        let Some([caller_side, agent_side]) = party_streams(&state.library, &row).await else {
            return Err(caller.refuse(&state, entry, no_dual_channel()).await);
        };
        audit::record(&state.db, &entry).await.map_err(internal)?;
        let sha = row.sha256.as_deref().unwrap_or_default();
        let renderings = &state.library.renderings;
        let caller_peaks = renderings
            .peaks(row.id, &format!("{sha}-caller"), points, caller_side)
            .await
            .map_err(internal)?;
        let agent_peaks = renderings
            .peaks(row.id, &format!("{sha}-agent"), points, agent_side)
            .await
            .map_err(internal)?;
        let pairs = |p: &[[i16; 2]]| p.iter().map(|[lo, hi]| [*lo, *hi]).collect::<Vec<_>>();
        return Ok(Json(serde_json::json!({
            "id": row.id,
            "points": points,
            "duration_seconds": row.duration_ms as f64 / 1000.0,
            "channels": {"caller": pairs(&caller_peaks), "agent": pairs(&agent_peaks)},
        }))
        .into_response());
    }
    audit::record(&state.db, &entry).await.map_err(internal)?;
    let peaks = state
        .library
        .renderings
        .peaks(
            row.id,
            row.sha256.as_deref().unwrap_or_default(),
            points,
            stream,
        )
        .await
        .map_err(internal)?;
    Ok(Json(serde_json::json!({
        "id": row.id,
        "points": points,
        "duration_seconds": row.duration_ms as f64 / 1000.0,
        "peaks": peaks.iter().map(|[lo, hi]| [*lo, *hi]).collect::<Vec<_>>(),
    }))
    .into_response())
}
