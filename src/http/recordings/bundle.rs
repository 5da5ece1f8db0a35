//! Selected recordings, or calls, as one ZIP streamed while it is made (no temporary file):
//! each recording's audio as its download would be (a PCM WAV named from its metadata), then
//! `manifest.json` with each file's metadata, size and the SHA-256 of the bytes in the archive.
//! Every recording is checked as a download would be before a byte is sent (one refusal
//! refuses the whole archive, with its reason) and audited as a download.

use super::*;

use async_zip::tokio::write::ZipFileWriter;
use async_zip::{Compression, ZipEntryBuilder};
use futures_util::io::AsyncWriteExt as _;
use sha2::Digest as _;

use crate::http::params::{BundleQuery, Params};

/// Bytes of audio read and written at a time.
const CHUNK: u64 = 256 * 1024;
/// The pipe between the archive being made and the answer.
const PIPE: usize = 256 * 1024;

/// One recording going into the archive.
struct Member {
    row: Recording,
    stream: WavStream,
    file: String,
}

/// Selected recordings or calls as a ZIP.
///
/// `ids` (recordings) or `calls` (each call's recordings), comma-separated, 500 recordings at
/// most. The same rules as each recording's download (role, the tenant's download entitlement,
/// consent, compliance, holds): one refusal refuses the whole archive. Each recording is
/// audited as a download. A call's rows without audio (not recorded, deleted) are named in the
/// manifest and left out.
#[utoipa::path(get, path = "/api/recordings/export.zip", tag = "recordings", operation_id = "export_recordings_zip", params(BundleQuery), responses(
    (status = 200, description = "a ZIP: each recording as WAV, then `manifest.json`", content_type = "application/zip"),
    (status = 400, description = "no ids or calls, too many, or a bad one", body = ErrorBody),
    crate::http::openapi::RecordingRefusals,
    (status = 409, description = "a selected recording has no audio (in progress, empty...)", body = ErrorBody),
))]
pub(in crate::http) async fn export_zip(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Params<BundleQuery>, ApiError>,
) -> Result<Response, ApiError> {
    let Params(query) = query?;
    let mut ids: Vec<String> = query.ids.iter().map(i64::to_string).collect();
    let mut left_out = Vec::new();
    for call in &query.calls {
        let rows = crate::library::recordings::of_call(&state.db.pool, call)
            .await
            .map_err(internal)?;
        let seen: Vec<&Recording> = rows
            .iter()
            .filter(|r| {
                decide(
                    &caller.principal,
                    caller.principal.settings,
                    &r.facts(),
                    Action::Read,
                )
                .is_ok()
            })
            .collect();
        if seen.is_empty() {
            let entry = caller.entry("download");
            return Err(caller.refuse(&state, entry, not_found()).await);
        }
        for row in seen {
            if row.status == crate::library::RecordingStatus::Ready {
                ids.push(row.id.to_string());
            } else {
                left_out.push(serde_json::json!({
                    "id": row.id, "call_id": row.call_id, "status": row.status.as_str(),
                    "reason": row.reason,
                }));
            }
        }
    }
    // Each recording once, in the order first asked for (a call's may repeat an id given).
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    if ids.len() > crate::http::params::BUNDLE_MAX {
        return Err(bad(
            "ids",
            format!(
                "at most {} recordings in one archive",
                crate::http::params::BUNDLE_MAX
            ),
        ));
    }
    // Every recording is checked before the answer starts.
    let mut members = Vec::with_capacity(ids.len());
    let mut entries = Vec::with_capacity(ids.len());
    for id in &ids {
        let (row, _, entry) = authorize(&state, &caller, id, Action::Download, "download").await?;
        let stream = match playable(&state, &row).await {
            Ok(stream) => stream,
            Err(e) => return Err(caller.refuse(&state, entry, e).await),
        };
        let file = format!("{}-{}", row.id, download_name(&row));
        members.push(Member { row, stream, file });
        entries.push(entry);
    }
    let count = members.len();
    for mut entry in entries {
        entry.detail = Some(format!("in a ZIP of {count} recordings"));
        audit::record(&state.db, &entry)
            .await
            .map_err(crate::http::audit_failed)?;
    }
    let (writer, reader) = tokio::io::duplex(PIPE);
    tokio::spawn(async move {
        if let Err(e) = write_zip(writer, members, left_out).await {
            // The answer is under way: it ends short (an unreadable archive), the log says why.
            tracing::warn!(error = %e, "the ZIP export stopped");
        }
    });
    let mut response = Body::from_stream(tokio_util::io::ReaderStream::new(reader)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"recordings.zip\""),
    );
    Ok(response)
}

async fn write_zip(
    writer: tokio::io::DuplexStream,
    members: Vec<Member>,
    left_out: Vec<serde_json::Value>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut zip = ZipFileWriter::with_tokio(writer);
    let mut manifest = Vec::with_capacity(members.len());
    for member in members {
        let builder = ZipEntryBuilder::new(member.file.clone().into(), Compression::Stored);
        let mut entry = zip.write_entry_stream(builder).await?;
        let mut hash = sha2::Sha256::new();
        let len = member.stream.len();
        let stream = Arc::new(member.stream);
        let mut at = 0;
        while at < len {
            let end = (at + CHUNK).min(len);
            let source = Arc::clone(&stream);
            let bytes = tokio::task::spawn_blocking(move || source.read_range(at, end)).await??;
            hash.update(&bytes);
            entry.write_all(&bytes).await?;
            at = end;
        }
        entry.close().await?;
        let row = &member.row;
        manifest.push(serde_json::json!({
            "file": member.file,
            "bytes": len,
            "sha256": hex::encode(hash.finalize()),
            "id": row.id,
            "name": row.name,
            "call_id": row.call_id,
            "linkedid": row.linkedid,
            "callee_channel": row.callee_channel,
            "started_at": rfc3339(row.started_at_ms),
            "duration_ms": row.duration_ms,
            "caller_name": row.caller_name,
            "caller_number": row.caller_number,
            "callee": row.callee,
            "direction": row.direction.map(|d| d.as_str()),
            "node_type": row.node_type.map(|n| n.as_str()),
            "flow": row.flow,
            "tenant": row.tenant,
            "project": row.project,
            "consent": row.consent.as_str(),
            "compliance": row.compliance.as_str(),
            "stored_format": row.format,
            "stored_sha256": row.sha256,
        }));
    }
    let manifest = serde_json::to_vec_pretty(&serde_json::json!({
        "recordings": manifest,
        "left_out": left_out,
    }))?;
    zip.write_entry_whole(
        ZipEntryBuilder::new("manifest.json".to_string().into(), Compression::Stored),
        &manifest,
    )
    .await?;
    zip.close().await?;
    Ok(())
}
