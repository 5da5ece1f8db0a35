//! The API's OpenAPI 3.1 description, served at `/api/openapi.json`. Written by hand beside the
//! handlers; `tests/service.rs` checks that every route the router serves is described.

use serde_json::{json, Value};

fn error_responses(codes: &[&str]) -> Value {
    let mut map = serde_json::Map::new();
    for code in codes {
        map.insert(
            code.to_string(),
            json!({"description": "JSON error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
        );
    }
    Value::Object(map)
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

fn id_param() -> Value {
    json!({"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}})
}

fn call_param() -> Value {
    json!({"name": "id", "in": "path", "required": true, "description": "the call id (its caller's channel id)", "schema": {"type": "string"}})
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

fn audio_op(summary: &str, attachment: bool) -> Value {
    json!({
        "summary": summary,
        "parameters": [
            id_param(),
            query("format", "wav (default: PCM WAV, transcoded when stored as mu-law/A-law), opus (Ogg Opus, RFC 7845) or mp3 (LAME, 32 kbit/s)", json!({"enum": ["wav", "opus", "mp3"]})),
            query("channels", "mixed (default: the bridge's recording) or dual (stereo, the caller left and the agent right, for a recording made with channels = \"dual\"; WAV only)", json!({"enum": ["mixed", "dual"]})),
            {"name": "Range", "in": "header", "required": false, "schema": {"type": "string"}, "description": "one `bytes=` range"}
        ],
        "responses": merge(json!({
            "200": {"description": if attachment { "the audio as an attachment (audio/wav)" } else { "the audio (audio/wav)" }, "content": {"audio/wav": {}}},
            "206": {"description": "the requested range", "content": {"audio/wav": {}}},
            "416": {"description": "range not satisfiable"},
        }), error_responses(&["401", "403", "404", "409"])),
    })
}

/// Open endpoints: no credentials.
fn open() -> Value {
    json!([])
}

/// Endpoints that also take a signed link instead of credentials.
fn media_security() -> Value {
    json!([{"bearer": []}, {"session": []}, {"signedLink": []}])
}

fn status_of(code: &str) -> Value {
    json!({"type": "object", "properties": {"allowed": {"type": "boolean"}, "reason": {"enum": [
        "missing_entitlement", "missing_consent", "compliance_policy", "media_unavailable",
        "role_restriction", "missing_scope", "private_recording"
    ]}}, "description": code})
}

/// Sign-in, administration, audit and signed links.
fn access_paths() -> Value {
    json!({
        "/api/session": {
            "get": {"summary": "the signed-in user, the session's CSRF token and what they may do", "responses": merge(json!({"200": {"description": "the session"}}), error_responses(&["401"]))},
            "post": {
                "summary": "sign in with a password: sets the HttpOnly SameSite=Strict session cookie and answers the CSRF token",
                "security": open(),
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["username", "password"], "properties": {"username": {"type": "string"}, "password": {"type": "string", "format": "password"}}}}}},
                "responses": merge(json!({"200": {"description": "signed in"}}), error_responses(&["400", "401", "429"]))
            },
            "delete": {"summary": "sign out: the session ends at once", "responses": merge(json!({"204": {"description": "signed out"}}), error_responses(&["401", "403"]))}
        },
        "/api/users": {
            "get": {"summary": "the users of the admin's tenant", "responses": merge(json!({"200": {"description": "users"}}), error_responses(&["401", "403"]))},
            "post": {
                "summary": "add a user to the admin's tenant",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["username", "password", "role"], "properties": {
                    "username": {"type": "string"}, "password": {"type": "string", "minLength": 10}, "role": {"enum": ["admin", "manager", "staff"]},
                    "projects": {"type": "array", "items": {"type": "string"}}, "extension": {"type": "string", "example": "PJSIP/201"}
                }}}}},
                "responses": merge(json!({"201": {"description": "created"}}), error_responses(&["400", "401", "403", "409"]))
            }
        },
        "/api/users/{id}": {"patch": {
            "summary": "change a user's role, projects or disabled flag",
            "parameters": [id_param()],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "properties": {
                "role": {"enum": ["admin", "manager", "staff"]}, "projects": {"type": "array", "items": {"type": "string"}}, "disabled": {"type": "boolean"}
            }}}}},
            "responses": merge(json!({"200": {"description": "the user"}}), error_responses(&["400", "401", "403", "404"]))
        }},
        "/api/tenant": {
            "get": {"summary": "the caller's tenant's entitlements", "responses": merge(json!({"200": {"description": "tenant"}}), error_responses(&["401"]))},
            "patch": {
                "summary": "set staff_playback and download_entitlement (admin)",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "properties": {"staff_playback": {"type": "boolean"}, "download_entitlement": {"type": "boolean"}}}}}},
                "responses": merge(json!({"200": {"description": "tenant"}}), error_responses(&["400", "401", "403"]))
            }
        },
        "/api/audit": {"get": {
            "summary": "the tenant's audit events, newest first (admin)",
            "parameters": [
                query("before", "sequence number: events older than it (next_before of the previous page)", json!({"type": "integer"})),
                query("limit", "1 to 1000 (100)", json!({"type": "integer"})),
                query("actor", "e.g. user:alice or token:3:alice", json!({"type": "string"})),
                query("action", "list, metadata, stream, peaks, download, link_create, delete, set_status, login, logout, flow_change, setting_change, role_change, user_create, call_place...", json!({"type": "string"})),
                query("recording", "recording id", json!({"type": "integer"})),
                query("outcome", "allowed or the refusal reason", json!({"type": "string"}))
            ],
            "responses": merge(json!({"200": {"description": "events and next_before"}}), error_responses(&["400", "401", "403"]))
        }},
        "/api/recordings/{id}/download-url": {"post": download_url_op(), "get": download_url_op()},
        "/api/recordings/{id}/play-url": {"post": {
            "summary": "a short-lived signed audio link for a player (reusable until it expires)",
            "parameters": [id_param()],
            "responses": merge(json!({"201": {"description": "{url, expires_at, expires_in, single_use}"}}), error_responses(&["401", "403", "404", "429"]))
        }}
    })
}

fn components() -> Value {
    json!({
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "an API token from `ari-recorder token create`, limited to its scopes: recordings:read, recordings:play, recordings:download, recordings:delete, flows:write, admin"},
            "session": {"type": "apiKey", "in": "cookie", "name": "ari_session", "description": "the browser session from POST /api/session; requests other than GET and HEAD must also send the session's token in the X-CSRF-Token header"},
            "signedLink": {"type": "apiKey", "in": "query", "name": "sig", "description": "a link from download-url or play-url: by, exp, nonce, kid and sig signed with HMAC-SHA256 over recording, action, principal, expiry and nonce"}
        },
        "schemas": {
            "Error": {"type": "object", "required": ["error", "message"], "properties": {"error": {"type": "string"}, "message": {"type": "string"}}},
            "Settings": {"type": "object", "properties": {
                "recording_enabled": {"type": "boolean", "description": "master switch: off, no call is recorded (voicemail still is)"},
                "record_inbound_calls": {"type": "boolean", "description": "what transfer, queue and hunt-group nodes without record_call do"},
                "record_outbound_calls": {"type": "boolean"},
                "record_from_dial": {"type": "boolean", "readOnly": true},
                "redaction_mode": {"enum": ["mute", "pause"], "readOnly": true},
                "default_compliance": {"enum": ["permitted", "unknown"], "readOnly": true},
                "recording_separation": {"enum": ["per_call", "per_segment"], "readOnly": true}
            }},
            "Recording": {"type": "object", "properties": {
                "id": {"type": "integer"}, "name": {"type": "string"}, "format": {"type": "string"},
                "status": {"enum": crate::library::RecordingStatus::names()},
                "reason": {"type": ["string", "null"]}, "duration_seconds": {"type": "number"}, "size_bytes": {"type": "integer"},
                "sha256": {"type": ["string", "null"]}, "started_at": {"type": "string", "format": "date-time"},
                "call_id": {"type": ["string", "null"]}, "tenant": {"type": "string"}, "project": {"type": "string"}, "flow": {"type": ["string", "null"]},
                "node": {"type": ["string", "null"]}, "node_type": {"type": ["string", "null"]}, "direction": {"type": ["string", "null"]},
                "caller": {"type": "object", "properties": {"name": {"type": ["string", "null"]}, "number": {"type": ["string", "null"]}}},
                "callee": {"type": ["string", "null"]}, "private": {"type": "boolean"},
                "consent": {"enum": crate::library::Consent::names()},
                "compliance": {"enum": crate::library::Compliance::names()},
                "deleted_at": {"type": ["string", "null"]}, "playable": {"type": "boolean"},
                "access": {"type": "object", "description": "what the asking user may do, and if not, why", "properties": {
                    "play": status_of("play"), "download": status_of("download"), "delete": status_of("delete"), "set_status": status_of("set consent and compliance")
                }},
                "links": {"type": "object", "description": "only the actions the asking user may take"}
            }}
        }
    })
}

/// The document.
pub fn document() -> Value {
    let mut document = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ari-recorder",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Call recording for Asterisk: call flows, the recordings library, operators' endpoints. Errors are JSON {\"error\": code, \"message\": reason}."
        },
        "paths": {
            "/healthz": {"get": {"summary": "the process is up", "security": open(), "responses": {"200": {"description": "ok"}}}},
            "/readyz": {"get": {"summary": "database open and recordings folder readable; ARI state and warnings (folders not writable, no dialplans folder) reported", "security": open(), "responses": {"200": {"description": "ready"}, "503": {"description": "not ready, with the reasons"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics: off unless METRICS_TOKEN (then Authorization: Bearer <token>) is set; with METRICS_ADDR they are served on that address instead", "security": open(), "responses": merge(json!({"200": {"description": "text exposition format"}}), error_responses(&["401", "404"]))}},
            "/api/openapi.json": {"get": {"summary": "this document", "security": open(), "responses": {"200": {"description": "OpenAPI 3.1"}}}},
            "/api/flows": {"get": {"summary": "the flows in the caller's scope and their nodes; the deployment settings for the operator's tenant (null for other tenants)", "responses": {"200": {"description": "flows"}}}},
            "/api/flows/{flow}/nodes/{node}": {"patch": {
                "summary": "turn record_call on or off for a transfer, queue or hunt_group node (written back to the file)",
                "parameters": [
                    {"name": "flow", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "node", "in": "path", "required": true, "schema": {"type": "string"}}
                ],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["record_call"], "properties": {"record_call": {"type": "boolean"}}, "additionalProperties": false}}}},
                "responses": merge(json!({"200": {"description": "the node"}}), error_responses(&["400", "404"]))
            }},
            "/api/settings": {
                "get": {"summary": "service-wide call settings (the operator's tenant only)", "responses": merge(json!({"200": {"description": "settings", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Settings"}}}}}), error_responses(&["403"]))},
                "patch": {
                    "summary": "change recording_enabled, record_inbound_calls and/or record_outbound_calls (editors of the operator's tenant; audited; written back to settings.toml with its comments)",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Settings"}}}},
                    "responses": merge(json!({"200": {"description": "settings"}}), error_responses(&["400", "403"]))
                }
            },
            "/api/calls": {
                "get": {"summary": "calls in progress the caller may see (tenant, projects, private calls to their participants), newest first, with their recording's state (recording, muted, paused)", "responses": merge(json!({"200": {"description": "{\"calls\": [...]}"}}), error_responses(&["401", "403"]))},
                "post": {
                "summary": "place a direct outbound call: ring `from`, then `to`, bridge them",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["from", "to"], "properties": {"from": {"type": "string", "example": "PJSIP/201"}, "to": {"type": "string", "example": "PJSIP/202"}}}}}},
                "responses": merge(json!({"202": {"description": "placed", "content": {"application/json": {"schema": {"type": "object", "properties": {"call_id": {"type": "string"}}}}}}}), error_responses(&["400"]))
            }},
            "/api/calls/{id}": {"get": {
                "summary": "a call and its segments on the call's timeline (Asterisk's clock): offset_seconds, in_call_audio, paused_seconds, and whether the asking user may play and download the whole call",
                "parameters": [call_param()],
                "responses": merge(json!({"200": {"description": "the call"}}), error_responses(&["401", "404"]))
            }},
            "/api/calls/{id}/audio": {"get": {
                "summary": "the call as one 8 kHz mono PCM WAV: segments at their offsets, silence between, overlaps mixed with clipping; built on first request and cached; exact ranges",
                "parameters": [call_param(), {"name": "Range", "in": "header", "required": false, "schema": {"type": "string"}, "description": "one `bytes=` range"}],
                "responses": merge(json!({"200": {"description": "audio/wav"}, "206": {"description": "a range"}}), error_responses(&["401", "403", "404", "409", "416"]))
            }},
            "/api/calls/{id}/download": {"get": {
                "summary": "the assembled call as an attachment (the right to download every segment)",
                "parameters": [call_param()],
                "responses": merge(json!({"200": {"description": "audio/wav attachment"}}), error_responses(&["401", "403", "404", "409"]))
            }},
            "/api/calls/{id}/peaks": {"get": {
                "summary": "min/max peaks of the assembled call",
                "parameters": [call_param(), query("points", "100, 200, 400, 800 (default), 1600 or 3200", json!({"type": "integer"}))],
                "responses": merge(json!({"200": {"description": "peaks: [[min, max], ...]"}}), error_responses(&["400", "401", "403", "404", "409"]))
            }},
            "/api/calls/{id}/recording/pause": {"post": {
                "summary": "redact the call's live recording from now (redaction_mode: mute writes silence, pause leaves the audio out); admins, managers and the agent on the call; audited, stored with the recording",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": merge(json!({"200": {"description": "the call"}}), error_responses(&["403", "404", "409", "502"]))
            }},
            "/api/calls/{id}/recording/resume": {"post": {
                "summary": "stop redacting the call's live recording",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": merge(json!({"200": {"description": "the call"}}), error_responses(&["403", "404", "409", "502"]))
            }},
            "/api/recordings": {"get": {
                "summary": "recordings, newest (or longest) first, keyset-paginated",
                "parameters": [
                    query("limit", "page size, 1 to 200 (50)", json!({"type": "integer", "minimum": 1, "maximum": 200})),
                    query("cursor", "next_cursor of the previous page", json!({"type": "string"})),
                    query("sort", "newest (default) or longest", json!({"enum": ["newest", "longest"]})),
                    query("group", "call: one row per call (`calls`: call_id, started_at, segment_count, duration_seconds, segments), newest call first; a file no call made is its own row", json!({"enum": ["call"]})),
                    query("caller", "caller number prefix", json!({"type": "string"})),
                    query("callee", "callee prefix", json!({"type": "string"})),
                    query("name", "words of the caller name: each word given must start one, any case", json!({"type": "string"})),
                    query("node_type", "", json!({"enum": crate::library::NodeType::names()})),
                    query("direction", "", json!({"enum": crate::library::Direction::names()})),
                    query("status", "", json!({"enum": crate::library::RecordingStatus::names()})),
                    query("format", "", json!({"enum": crate::library::RecordingFormat::names()})),
                    query("from", "started at or after (RFC 3339 or ms)", json!({"type": "string"})),
                    query("to", "started before (RFC 3339 or ms)", json!({"type": "string"})),
                    query("min_duration", "seconds", json!({"type": "number"}))
                ],
                "responses": merge(json!({"200": {"description": "a page", "content": {"application/json": {"schema": {"type": "object", "properties": {
                    "recordings": {"type": "array", "items": {"$ref": "#/components/schemas/Recording"}},
                    "next_cursor": {"type": ["string", "null"]}
                }}}}}}), error_responses(&["400"]))
            }},
            "/api/recordings/{id}": {
                "get": {"summary": "one recording, with what the asking user may do with it", "parameters": [id_param()], "responses": merge(json!({"200": {"description": "the recording", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Recording"}}}}}), error_responses(&["403", "404"]))},
                "patch": {
                    "summary": "set consent and compliance status (admin)",
                    "parameters": [id_param()],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "properties": {
                        "consent": {"enum": crate::library::Consent::names()},
                        "compliance": {"enum": crate::library::Compliance::names()}
                    }}}}},
                    "responses": merge(json!({"200": {"description": "the recording"}}), error_responses(&["400", "403", "404"]))
                },
                "delete": {
                    "summary": "delete in two steps: without `confirm` answers a token; with it removes the file and keeps a tombstone",
                    "parameters": [id_param(), query("confirm", "the token of the first step", json!({"type": "string"}))],
                    "responses": merge(json!({"202": {"description": "confirmation token"}, "200": {"description": "deleted: the tombstone"}}), error_responses(&["400", "404", "409", "410"]))
                }
            },
            "/api/recordings/{id}/audio": {"get": merge(audio_op("inline playback as PCM WAV (mu-law and A-law transcoded), exact ranges", false), json!({"security": media_security()}))},
            "/api/recordings/{id}/download": {"get": merge(audio_op("the same audio as an attachment (admin and manager, with the download entitlement)", true), json!({"security": media_security()}))},
            "/api/recordings/{id}/peaks": {"get": {
                "summary": "min/max peaks for a waveform (needs the right to play)",
                "parameters": [id_param(), query("points", "100, 200, 400, 800 (default), 1600 or 3200", json!({"type": "integer"})), query("channels", "dual: a waveform per party (`channels: {caller, agent}`)", json!({"enum": ["mixed", "dual"]}))],
                "responses": merge(json!({"200": {"description": "peaks: [[min, max], ...]"}}), error_responses(&["400", "401", "403", "404", "409"]))
            }},
            "/api/library/scan": {"get": {"summary": "state of the recordings folder scan (admins of the operator's tenant)", "responses": merge(json!({"200": {"description": "scan state"}}), error_responses(&["403"]))}}
        },
        "security": [{"bearer": []}, {"session": []}],
        "components": components()
    });
    if let (Some(paths), Value::Object(more)) = (document["paths"].as_object_mut(), access_paths())
    {
        paths.extend(more);
    }
    if let (Some(paths), Value::Object(more)) =
        (document["paths"].as_object_mut(), transcript_paths())
    {
        paths.extend(more);
    }
    document
}

/// The transcript routes (a document of their own: one `json!` that large hits the macro's
/// recursion limit).
fn transcript_paths() -> Value {
    json!({
            "/api/recordings/{id}/hold": {
                "put": {"summary": "place the recording on legal hold (admins; audited): it is deleted by nobody and purged by no retention rule until released", "parameters": [id_param()], "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["reason"], "properties": {"reason": {"type": "string", "maxLength": 200}}}}}}, "responses": merge(json!({"200": {"description": "{\"hold\": {reason, by, at}}"}}), error_responses(&["400", "401", "403", "404", "409"]))},
                "delete": {"summary": "release the hold (admins; audited)", "parameters": [id_param()], "responses": merge(json!({"200": {"description": "{\"hold\": null}"}}), error_responses(&["401", "403", "404"]))}
            },
            "/api/calls/{id}/hold": {
                "put": {"summary": "hold every recording of the call (admins of every segment; audited)", "parameters": [call_param()], "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["reason"], "properties": {"reason": {"type": "string"}}}}}}, "responses": merge(json!({"200": {"description": "{\"held\": [ids]}"}}), error_responses(&["400", "401", "403", "404"]))},
                "delete": {"summary": "release every recording of the call", "parameters": [call_param()], "responses": merge(json!({"200": {"description": "{\"released\": [ids]}"}}), error_responses(&["401", "403", "404"]))}
            },
            "/api/recordings/{id}/transcript": {
                "get": {"summary": "the recording's transcript: cues with start and end (seconds), speaker and text; needs the right to play it; audited", "parameters": [id_param()], "responses": merge(json!({"200": {"description": "{\"source\": \"api\" | \"sidecar\", \"cues\": [...]}"}}), error_responses(&["401", "403", "404"]))},
                "put": {
                    "summary": "attach a transcript, replacing any (admins; audited): WebVTT as text/vtt (speakers from <v Name> tags) or JSON [{start, end, speaker, text}] in seconds",
                    "parameters": [id_param()],
                    "requestBody": {"required": true, "content": {"text/vtt": {"schema": {"type": "string"}}, "application/json": {"schema": {"type": "array", "items": {"type": "object", "required": ["start", "end", "text"], "properties": {"start": {"type": "number"}, "end": {"type": "number"}, "speaker": {"type": "string"}, "text": {"type": "string"}}}}}}},
                    "responses": merge(json!({"200": {"description": "the stored cues"}}), error_responses(&["400", "401", "403", "404"]))
                },
                "delete": {"summary": "remove the transcript (admins; audited)", "parameters": [id_param()], "responses": merge(json!({"200": {"description": "{\"removed\": bool}"}}), error_responses(&["401", "403", "404"]))}
            }
    })
}

/// `download-url`, the same under POST and GET.
fn download_url_op() -> Value {
    json!({
        "summary": "a download link usable without credentials until it expires: single-use and served by this service, or (ARCHIVE_PRESIGNED_LINKS, once archived) a presigned bucket URL reusable until it expires",
        "parameters": [id_param(), query("expires_in", "seconds (3600), capped at link_max_seconds", json!({"type": "integer", "minimum": 1}))],
        "responses": merge(json!({"201": {"description": "{url, expires_at, expires_in, single_use, presigned}"}}), error_responses(&["400", "401", "403", "404", "429"]))
    })
}
