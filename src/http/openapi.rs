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

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

fn audio_op(summary: &str, attachment: bool) -> Value {
    json!({
        "summary": summary,
        "parameters": [
            id_param(),
            query("format", "wav (default: PCM WAV, transcoded when stored as mu-law/A-law) or opus (Ogg Opus, RFC 7845)", json!({"enum": ["wav", "opus"]})),
            {"name": "Range", "in": "header", "required": false, "schema": {"type": "string"}, "description": "one `bytes=` range"}
        ],
        "responses": merge(json!({
            "200": {"description": if attachment { "the audio as an attachment (audio/wav)" } else { "the audio (audio/wav)" }, "content": {"audio/wav": {}}},
            "206": {"description": "the requested range", "content": {"audio/wav": {}}},
            "416": {"description": "range not satisfiable"},
        }), error_responses(&["404", "409"])),
    })
}

/// The document.
pub fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ari-recorder",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Call recording for Asterisk: call flows, the recordings library, operators' endpoints. Errors are JSON {\"error\": code, \"message\": reason}."
        },
        "paths": {
            "/healthz": {"get": {"summary": "the process is up", "responses": {"200": {"description": "ok"}}}},
            "/readyz": {"get": {"summary": "database open and recordings folder readable; ARI state reported", "responses": {"200": {"description": "ready"}, "503": {"description": "not ready, with the reasons"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text exposition format"}}}},
            "/api/openapi.json": {"get": {"summary": "this document", "responses": {"200": {"description": "OpenAPI 3.1"}}}},
            "/api/flows": {"get": {"summary": "every flow, its nodes and the settings", "responses": {"200": {"description": "flows"}}}},
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
                "get": {"summary": "service-wide call settings", "responses": {"200": {"description": "settings", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Settings"}}}}}},
                "patch": {
                    "summary": "change record_outbound_calls",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Settings"}}}},
                    "responses": merge(json!({"200": {"description": "settings"}}), error_responses(&["400"]))
                }
            },
            "/api/calls": {"post": {
                "summary": "place a direct outbound call: ring `from`, then `to`, bridge them",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["from", "to"], "properties": {"from": {"type": "string", "example": "PJSIP/201"}, "to": {"type": "string", "example": "PJSIP/202"}}}}}},
                "responses": merge(json!({"202": {"description": "placed", "content": {"application/json": {"schema": {"type": "object", "properties": {"call_id": {"type": "string"}}}}}}}), error_responses(&["400"]))
            }},
            "/api/recordings": {"get": {
                "summary": "recordings, newest (or longest) first, keyset-paginated",
                "parameters": [
                    query("limit", "page size, 1 to 200 (50)", json!({"type": "integer", "minimum": 1, "maximum": 200})),
                    query("cursor", "next_cursor of the previous page", json!({"type": "string"})),
                    query("sort", "newest (default) or longest", json!({"enum": ["newest", "longest"]})),
                    query("caller", "caller number prefix", json!({"type": "string"})),
                    query("callee", "callee prefix", json!({"type": "string"})),
                    query("name", "words of the caller name: each word given must start one, any case", json!({"type": "string"})),
                    query("node_type", "", json!({"enum": ["transfer", "queue", "hunt_group", "voicemail", "outbound"]})),
                    query("direction", "", json!({"enum": ["inbound", "outbound"]})),
                    query("status", "", json!({"enum": ["recording", "ready", "empty", "unreadable", "not_playable", "missing", "deleted"]})),
                    query("format", "", json!({"enum": ["wav", "wav16", "WAV", "ulaw", "alaw", "sln", "gsm", "g722"]})),
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
                "get": {"summary": "one recording", "parameters": [id_param()], "responses": merge(json!({"200": {"description": "the recording", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Recording"}}}}}), error_responses(&["404"]))},
                "delete": {
                    "summary": "delete in two steps: without `confirm` answers a token; with it removes the file and keeps a tombstone",
                    "parameters": [id_param(), query("confirm", "the token of the first step", json!({"type": "string"}))],
                    "responses": merge(json!({"202": {"description": "confirmation token"}, "200": {"description": "deleted: the tombstone"}}), error_responses(&["400", "404", "409", "410"]))
                }
            },
            "/api/recordings/{id}/audio": {"get": audio_op("inline playback as PCM WAV (mu-law and A-law transcoded), exact ranges", false)},
            "/api/recordings/{id}/download": {"get": audio_op("the same audio as an attachment", true)},
            "/api/recordings/{id}/peaks": {"get": {
                "summary": "min/max peaks for a waveform",
                "parameters": [id_param(), query("points", "1 to 10000 (800)", json!({"type": "integer"}))],
                "responses": merge(json!({"200": {"description": "peaks: [[min, max], ...]"}}), error_responses(&["400", "404", "409"]))
            }},
            "/api/library/scan": {"get": {"summary": "state of the recordings folder scan", "responses": {"200": {"description": "scan state"}}}}
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error", "message"], "properties": {"error": {"type": "string"}, "message": {"type": "string"}}},
            "Settings": {"type": "object", "properties": {"record_outbound_calls": {"type": "boolean"}}},
            "Recording": {"type": "object", "properties": {
                "id": {"type": "integer"}, "name": {"type": "string"}, "format": {"type": "string"},
                "status": {"enum": ["recording", "ready", "empty", "unreadable", "not_playable", "missing", "deleted"]},
                "reason": {"type": ["string", "null"]}, "duration_seconds": {"type": "number"}, "size_bytes": {"type": "integer"},
                "sha256": {"type": ["string", "null"]}, "started_at": {"type": "string", "format": "date-time"},
                "call_id": {"type": ["string", "null"]}, "tenant": {"type": "string"}, "flow": {"type": ["string", "null"]},
                "node": {"type": ["string", "null"]}, "node_type": {"type": ["string", "null"]}, "direction": {"type": ["string", "null"]},
                "caller": {"type": "object", "properties": {"name": {"type": ["string", "null"]}, "number": {"type": ["string", "null"]}}},
                "callee": {"type": ["string", "null"]}, "private": {"type": "boolean"},
                "consent": {"enum": ["granted", "denied", "unknown"]},
                "compliance": {"enum": ["permitted", "denied", "missing_evidence", "policy_blocked"]},
                "deleted_at": {"type": ["string", "null"]}, "playable": {"type": "boolean"}, "links": {"type": "object"}
            }}
        }}
    })
}
