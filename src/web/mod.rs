//! The recordings page: one HTML document, its ES modules (`app.js` the entry: sign-in, routing,
//! the list and a recording's panel; `api.js` the API client; `format.js` what every view
//! shares; `player.js` the waveform, audio and transcript; `calls.js` a call and the calls in
//! progress; `flows.js` the recording switches; `talk.js` the talk-time bars; `voicemail.js` the
//! mailboxes) and one stylesheet, compiled into the binary and served at `/` (no build step, no
//! external requests). The page talks to the same public API as any integration.
//!
//! Every answer carries a Content-Security-Policy that allows only this origin, and no Referer
//! leaves the page (signed audio links sit in URLs).

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::LazyLock;

const INDEX_HTML: &str = include_str!("index.html");

/// The page with the lists its choices offer: the same lists the API checks a value against.
static PAGE: LazyLock<String> =
    LazyLock::new(|| INDEX_HTML.replace("{{values}}", &page_values().to_string()));

fn page_values() -> serde_json::Value {
    use crate::library::{Compliance, Consent, Direction, NodeType, RecordingStatus};
    // A quarantined recording is listed to the tenant's admins only, with its reason: not a
    // status offered to everyone as a filter.
    let statuses: Vec<&str> = RecordingStatus::ALL
        .into_iter()
        .filter(|s| *s != RecordingStatus::Quarantined)
        .map(RecordingStatus::as_str)
        .collect();
    serde_json::json!({
        "node_type": NodeType::names(),
        "direction": Direction::names(),
        "status": statuses,
        "consent": Consent::names(),
        "webhook_events": crate::outbox::EventKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        "compliance": Compliance::names(),
    })
}
/// The page's ES modules, by file name under `/assets/`.
const MODULES: [(&str, &str); 9] = [
    ("app.js", include_str!("app.js")),
    ("api.js", include_str!("api.js")),
    ("format.js", include_str!("format.js")),
    ("player.js", include_str!("player.js")),
    ("calls.js", include_str!("calls.js")),
    ("flows.js", include_str!("flows.js")),
    ("webhooks.js", include_str!("webhooks.js")),
    ("talk.js", include_str!("talk.js")),
    ("voicemail.js", include_str!("voicemail.js")),
];
const APP_CSS: &str = include_str!("app.css");

pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     media-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// An asset; the security headers (this CSP among them) are added to every answer by the
/// router (`http::security_headers`).
fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The page changes with the binary; revalidate rather than run a stale script.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `/`, `/assets/<module>.js`, `/assets/app.css`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new()
        .route(
            "/",
            get(|| async { asset(PAGE.as_str(), "text/html; charset=utf-8") }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        );
    for (name, body) in MODULES {
        router = router.route(
            &format!("/assets/{name}"),
            get(move || async move { asset(body, "text/javascript; charset=utf-8") }),
        );
    }
    router
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_carries_the_lists_the_api_checks_against() {
        let start = PAGE.find(r#"id="values">"#).expect("values block") + r#"id="values">"#.len();
        let end = start + PAGE[start..].find("</script>").expect("end of block");
        let values: serde_json::Value = serde_json::from_str(&PAGE[start..end]).expect("JSON");
        assert_eq!(
            values["direction"],
            serde_json::json!(["inbound", "outbound"])
        );
        assert!(values["node_type"]
            .as_array()
            .expect("node types")
            .contains(&serde_json::json!("fallback")));
        assert!(!values["status"]
            .as_array()
            .expect("statuses")
            .contains(&serde_json::json!("quarantined")));
        assert!(values["compliance"]
            .as_array()
            .expect("compliance")
            .contains(&serde_json::json!("unknown")));
    }
}
