//! Call flows against the simulated Asterisk: every node type with `record_call` on and off,
//! failure edges, hang-ups, queue strategies, hunt modes, outbound calls, hot reload, failed
//! recordings and a dropped ARI socket. Simulated time moves only when a test advances it.

#[path = "../common/mod.rs"]
mod common;
mod consent;
mod failures;
mod hunt;
mod policy;
mod queue;
mod redaction;
mod transfer;
mod voicemail;

use ari_recorder::sim::{Script, Step};
use common::{
    caller, quiet, recording_rows, start_service, start_sim, stop, wait_recording, wait_rows,
    wait_until, TestSim,
};

fn transfer_flow(target: &str, record: bool) -> String {
    format!(
        r#"
[flow]
numbers = ["100"]
start = "desk"
tenant = "acme"

[nodes.desk]
type = "transfer"
target = "{target}"
ring_timeout = 5
record_call = {record}
on_failure = "sorry"

[nodes.sorry]
type = "play_audio"
media = ["sound:vm-goodbye"]
"#
    )
}

fn record_requests(t: &TestSim) -> Vec<String> {
    t.sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/record"))
        .map(|r| format!("{}?{}", r.path, r.query))
        .collect()
}

async fn api(
    method: reqwest::Method,
    url: String,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    api_with(common::authed(), method, url, body).await
}

async fn api_with(
    client: reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = client
        .request(method, url)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (
        status,
        response.json().await.unwrap_or(serde_json::Value::Null),
    )
}

/// The `not_recorded` row of a bridged call and its reason, once listed.
async fn not_recorded_reason(s: &common::TestService) -> String {
    for _ in 0..1000 {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT reason FROM recordings WHERE status = 'not_recorded'")
                .fetch_optional(&s.svc.db.pool)
                .await
                .expect("row");
        if let Some((reason,)) = row {
            return reason;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no not_recorded row");
}
