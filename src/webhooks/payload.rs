//! What a receiver gets: `{"type", "timestamp", "data"}` as Standard Webhooks suggests. Ids,
//! metadata and API links; never audio, and a transcript's text only when the endpoint asks
//! for it and its tenant may download recordings. A private recording's callers are not named.

use serde_json::{json, Value};

use crate::clock::rfc3339;
use crate::db::{Database, DbError};
use crate::library::recordings::{self, Recording};
use crate::outbox::{Claimed, EventKind};

/// The JSON body of a delivery, built when it is sent (a retry tells the state of then).
pub async fn build(
    db: &Database,
    keys: Option<&crate::encryption::Keyring>,
    event: &Claimed,
    include_transcript: bool,
    public_url: &str,
) -> Result<Value, DbError> {
    let link = |path: String| format!("{}{path}", public_url.trim_end_matches('/'));
    let mut data = json!({});
    if let Some(id) = event.recording_id {
        let row = recordings::by_id(&db.pool, id).await?;
        data = match row {
            Some(row) => recording(&row, &link),
            None => json!({ "id": id, "status": "forgotten" }),
        };
    }
    if let Some(call) = &event.call_id {
        data["call_id"] = json!(call);
    }
    match EventKind::parse(&event.kind) {
        Some(EventKind::CallEnded) => {
            let call = event.call_id.clone().unwrap_or_default();
            let rows = recordings::of_call(&db.pool, &call).await?;
            let path: String = url::form_urlencoded::byte_serialize(call.as_bytes()).collect();
            data = json!({
                "call_id": call,
                "tenant": event.tenant,
                "segments": rows.iter().map(|r| recording(r, &link)).collect::<Vec<_>>(),
                "links": {
                    "call": link(format!("/api/calls/{path}")),
                    "download_url": link(format!("/api/calls/{path}/download-url")),
                },
            });
        }
        Some(EventKind::HoldPlaced | EventKind::HoldReleased) => {
            data["hold_reason"] = json!(event.detail);
        }
        Some(EventKind::ConsentChanged) => {
            data["consent_was"] = json!(event.detail);
        }
        Some(EventKind::TranscriptReady) => {
            if let Some(id) = event.recording_id {
                data["links"]["transcript"] =
                    json!(link(format!("/api/recordings/{id}/transcript")));
                if include_transcript && may_download(db, &event.tenant).await? {
                    if let Some(t) = crate::library::transcripts::load(db, keys, id).await? {
                        data["transcript"] = json!({
                            "source": t.source,
                            "cues": t.cues.iter().map(|c| json!({
                                "start_ms": c.start_ms, "end_ms": c.end_ms,
                                "speaker": c.speaker, "text": c.text,
                            })).collect::<Vec<_>>(),
                        });
                    }
                }
            }
        }
        _ => {}
    }
    if event.kind == "webhook.test" {
        data = json!({ "tenant": event.tenant, "message": "a test event from ari-recorder" });
    }
    Ok(json!({
        "type": event.kind,
        "timestamp": rfc3339(event.occurred_at_ms),
        "data": data,
    }))
}

async fn may_download(db: &Database, tenant: &str) -> Result<bool, DbError> {
    let mut conn = db.pool.acquire().await?;
    Ok(crate::access::accounts::tenant_settings(&mut conn, tenant)
        .await?
        .download_entitlement)
}

fn recording(row: &Recording, link: &dyn Fn(String) -> String) -> Value {
    let private = row.private != 0;
    let mut value = json!({
        "id": row.id,
        "name": row.name,
        "call_id": row.call_id,
        "linkedid": row.linkedid,
        "callee_channel": row.callee_channel,
        "tenant": row.tenant,
        "project": row.project,
        "status": row.status.as_str(),
        "reason": row.reason,
        "format": row.format,
        "duration_ms": row.duration_ms,
        "size_bytes": row.size_bytes,
        "sha256": row.sha256,
        "started_at": rfc3339(row.started_at_ms),
        "direction": row.direction.map(|d| d.as_str()),
        "node_type": row.node_type.map(|n| n.as_str()),
        "flow": row.flow,
        "consent": row.consent.as_str(),
        "compliance": row.compliance.as_str(),
        "private": private,
        "links": {
            "recording": link(format!("/api/recordings/{}", row.id)),
            "download_url": link(format!("/api/recordings/{}/download-url", row.id)),
        },
    });
    if !private {
        value["caller_name"] = json!(row.caller_name);
        value["caller_number"] = json!(row.caller_number);
        value["callee"] = json!(row.callee);
    }
    value
}
