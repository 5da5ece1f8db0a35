//! Delete in two steps, and what goes with a recording.

use super::*;

/// Delete a recording in two steps.
///
/// Without `confirm`, answers a token bound to this recording; with it, removes the file and
/// keeps the row as a tombstone. A held recording is deleted by nobody.
#[utoipa::path(delete, path = "/api/recordings/{id}", tag = "recordings", operation_id = "delete_recording",
    params(RecordingId, DeleteConfirmation),
    responses(
    (status = 202, description = "the first step: `{confirm_token, expires_in_seconds, recording, confirm_with}`"),
    (status = 200, description = "deleted: the tombstone", body = RecordingView),
    (status = 400, description = "a token of another recording, spent or expired", body = ErrorBody),
    crate::http::openapi::RecordingRefusals,
    (status = 409, description = "on legal hold, or still being recorded", body = ErrorBody),
    (status = 410, description = "already deleted", body = ErrorBody),
))]
pub(in crate::http) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(RecordingId { id }): Path<RecordingId>,
    Params(DeleteConfirmation { confirm }): Params<DeleteConfirmation>,
) -> Result<Response, ApiError> {
    let (row, tenant, mut entry) =
        authorize(&state, &caller, &id, Action::Delete, "delete").await?;
    if let Some(reason) = &row.hold_reason {
        let error = ApiError::new(
            StatusCode::CONFLICT,
            "on_hold",
            format!("the recording is on legal hold ({reason}): an admin must release it first"),
        );
        return Err(caller.refuse(&state, entry, error).await);
    }
    if row.status == crate::library::RecordingStatus::Deleted {
        let error = ApiError::new(
            StatusCode::GONE,
            "deleted",
            "the recording was already deleted",
        );
        return Err(caller.refuse(&state, entry, error).await);
    }
    if row.status == crate::library::RecordingStatus::Recording {
        let error = ApiError::new(
            StatusCode::CONFLICT,
            "in_progress",
            "the call is still being recorded",
        );
        return Err(caller.refuse(&state, entry, error).await);
    }
    let Some(token) = confirm.as_ref() else {
        entry.detail = Some("confirmation issued".into());
        audit::record(&state.db, &entry).await.map_err(internal)?;
        let token = crate::access::confirmations::issue(
            &state.db,
            row.id,
            state.access.clock.now_ms(),
            CONFIRM_TTL.as_millis() as i64,
        )
        .await
        .map_err(internal)?;
        return Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({
                "confirm_token": token,
                "expires_in_seconds": CONFIRM_TTL.as_secs(),
                "recording": { "id": row.id, "name": row.name },
                "confirm_with": format!("DELETE /api/recordings/{}?confirm={token}", row.id),
            })),
        )
            .into_response());
    };
    let redeemed =
        crate::access::confirmations::redeem(&state.db, token, row.id, state.access.clock.now_ms())
            .await
            .map_err(internal)?;
    if let Err(reason) = redeemed {
        return Err(caller.refuse(&state, entry, bad("confirm", reason)).await);
    }
    entry.detail = Some("deleted".into());
    let mut tx = AuditTx::begin(&state.db).await.map_err(internal)?;
    let deleted_at = crate::clock::now_ms();
    crate::library::recordings::mark_deleted(
        tx.conn(),
        row.id,
        deleted_at,
        &caller.principal.actor(),
    )
    .await
    .map_err(internal)?;
    let event = crate::outbox::Event::once(
        crate::outbox::EventKind::RecordingDeleted,
        crate::outbox::Subject::Recording(row.id),
        deleted_at,
    );
    crate::outbox::record(tx.conn(), &event)
        .await
        .map_err(internal)?;
    tx.commit(&entry).await.map_err(internal)?;
    // Its copy in the archive's bucket goes too (retried while the bucket is away).
    crate::archive::queue::queue_removal(&state.db, row.id, crate::clock::now_ms())
        .await
        .map_err(internal)?;
    if let Some(archive) = &state.library.archive {
        archive.wake.notify_one();
    }
    // Another node's files are removed by that node's indexer (a deleted row's file is
    // finished off at its next look).
    let here = state.library.holds(&row);
    // The file, each party's own recording (dual-channel) and a sidecar transcript are
    // removed on a blocking thread (paths resolved, checked and unlinked there).
    let files = if here {
        let sidecar = std::path::Path::new(&row.path)
            .with_extension("vtt")
            .to_string_lossy()
            .into_owned();
        let parties = ["caller", "agent"]
            .map(|role| format!("{}/{}-{role}.wav", crate::audio::PARTY_FOLDER, row.name));
        let library = Arc::clone(&state.library);
        let (id, path) = (row.id, row.path.clone());
        Some(tokio::task::spawn_blocking(move || {
            if let Some(file) = library.entry(&path) {
                if let Err(e) = std::fs::remove_file(&file) {
                    tracing::warn!(recording = id, error = %e, "file not removed; the next scan retries");
                }
            }
            parties.into_iter().chain(std::iter::once(sidecar)).for_each(|rel| {
                if let Some(file) = library.entry(&rel) {
                    match std::fs::remove_file(&file) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            tracing::warn!(recording = id, error = %e, "a file of the recording not removed")
                        }
                    }
                }
            });
        }))
    } else {
        None
    };
    if let Some(removed) = files {
        removed.await.map_err(internal)?;
    }
    // Its transcript holds its words, its figures who talked when, a voicemail's mark who
    // listened: they go too.
    crate::library::transcripts::remove(&state.db, row.id)
        .await
        .map_err(internal)?;
    crate::library::insights::remove(&state.db, row.id)
        .await
        .map_err(internal)?;
    crate::library::voicemail::mark_new(&state.db, row.id)
        .await
        .map_err(internal)?;
    // Deleted audio leaves no rendering of itself in memory either.
    state.library.renderings.forget(row.id);
    if let Some(call_id) = &row.call_id {
        // The assembled call held this recording's audio (its files removed off the async
        // threads).
        let (call_audio, call_id) = (Arc::clone(&state.library.call_audio), call_id.clone());
        tokio::task::spawn_blocking(move || call_audio.forget_call(&call_id))
            .await
            .map_err(internal)?;
    }
    let row = fetch(&state.db, row.id).await?.ok_or_else(not_found)?;
    Ok(Json(row.json(&caller.principal, tenant)).into_response())
}
