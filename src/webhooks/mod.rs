//! Webhooks: each tenant's endpoints (`endpoints.rs`), where they may point (`guard.rs`), how
//! deliveries are signed (`signature.rs`) and what they carry (`payload.rs`), and the task
//! that delivers the outbox (`crate::outbox`): at least once, retried with capped exponential
//! backoff and full jitter for up to three days, then marked failed; an endpoint that has failed
//! every delivery for three days is turned off and its admins told through the audit log.

pub mod endpoints;
pub mod guard;
pub mod payload;
pub mod signature;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::access::audit::{self, AuditEntry};
use crate::clock::now_ms;
use crate::db::{Database, DbError};
use crate::metrics::Metrics;
use crate::outbox::{self, Claimed, Settled};

pub use guard::Guard;

/// A claimed delivery is its instance's for this long; then another may try it.
pub const LEASE_MS: i64 = 60_000;
/// Deliveries are retried this long after their event, then marked failed.
pub const GIVE_UP_AFTER_MS: i64 = 3 * 24 * 3600 * 1000;
/// An endpoint whose every delivery has failed this long is turned off.
pub const DISABLE_AFTER_MS: i64 = 3 * 24 * 3600 * 1000;
/// The first retry waits up to this long; each next one up to twice as long, at most
/// [`RETRY_CAP_MS`] (full jitter: a random wait below the bound).
pub const RETRY_FIRST_MS: i64 = 5_000;
pub const RETRY_CAP_MS: i64 = 3_600_000;
/// A receiver gets this long to answer.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// At most this much of a receiver's answer is read (then the connection is dropped).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Deliveries sent at once by one instance.
const AT_ONCE: usize = 8;
/// How often the queue is looked at while endpoints exist (retries falling due, events another
/// instance queued: this instance's own wake it at once), and while none do.
const POLL_BUSY: Duration = Duration::from_secs(1);
const POLL_IDLE: Duration = Duration::from_secs(5);
/// The delivery log keeps this long.
const LOG_KEPT_MS: i64 = 30 * 24 * 3600 * 1000;

/// What the deliveries need to know of the deployment.
#[derive(Debug, Clone, Default)]
pub struct WebhookSettings {
    pub guard: Guard,
    /// How receivers reach this service (`https://recorder.example.com`): the links in
    /// payloads. Empty: links are paths.
    pub public_url: String,
}

impl WebhookSettings {
    pub fn from_config(config: &crate::config::Config) -> WebhookSettings {
        WebhookSettings {
            guard: Guard {
                http_hosts: config.webhook_allow_http_hosts.clone(),
                // Checked when the configuration was loaded.
                networks: config.webhook_networks().unwrap_or_default(),
            },
            public_url: config.public_url.clone(),
        }
    }
}

/// The delivering task's parts.
pub struct Deliverer {
    db: Database,
    http: reqwest::Client,
    settings: WebhookSettings,
    metrics: Arc<Metrics>,
    /// Opens sealed transcripts for endpoints that receive their text.
    keys: Option<Arc<crate::encryption::Keyring>>,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook HTTP client: {0}")]
    Client(String),
}

impl Deliverer {
    pub fn new(
        db: Database,
        settings: WebhookSettings,
        tls: Arc<rustls::ClientConfig>,
        metrics: Arc<Metrics>,
    ) -> Result<Deliverer, WebhookError> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls.as_ref().clone())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .dns_resolver(Arc::new(guard::CheckedResolver {
                guard: Arc::new(settings.guard.clone()),
            }))
            .user_agent(concat!("ari-recorder-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WebhookError::Client(e.to_string()))?;
        Ok(Deliverer {
            db,
            http,
            settings,
            metrics,
            keys: None,
        })
    }

    /// Opens sealed transcripts with `keys`.
    pub fn with_keys(mut self, keys: Option<Arc<crate::encryption::Keyring>>) -> Deliverer {
        self.keys = keys;
        self
    }

    /// Delivers until `shutdown` turns true (a delivery under way is finished first).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut last_forget = 0;
        let wake = self.db.attached::<outbox::Wake>();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let now = now_ms();
            if now - last_forget > 3600 * 1000 {
                last_forget = now;
                let before = now - LOG_KEPT_MS;
                if let Err(e) = outbox::forget_settled(&self.db, before).await {
                    tracing::warn!(error = %e, "forgetting old webhook deliveries failed");
                }
                if let Err(e) = endpoints::forget_attempts(&self.db, before).await {
                    tracing::warn!(error = %e, "forgetting old webhook attempts failed");
                }
            }
            let sent = match self.round().await {
                Ok(sent) => sent,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook deliveries: the queue could not be read");
                    0
                }
            };
            if sent > 0 {
                continue;
            }
            let wait = match self.any_endpoint().await {
                Ok(true) => POLL_BUSY,
                _ => POLL_IDLE,
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = wake.0.notified() => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    async fn any_endpoint(&self) -> Result<bool, DbError> {
        let any: Option<(i64,)> =
            sqlx::query_as("SELECT id FROM webhook_endpoints WHERE enabled = 1 LIMIT 1")
                .fetch_optional(&self.db.pool)
                .await?;
        Ok(any.is_some())
    }

    /// Claims due deliveries and sends them, a few at once; how many were sent.
    pub async fn round(&self) -> Result<usize, DbError> {
        let now = now_ms();
        if !outbox::any_due(&self.db, now).await? {
            return Ok(0);
        }
        let claimed = outbox::claim_due(&self.db, now, LEASE_MS, AT_ONCE as i64).await?;
        let count = claimed.len();
        futures_util::future::join_all(claimed.into_iter().map(|c| self.deliver(c))).await;
        Ok(count)
    }

    async fn deliver(&self, claimed: Claimed) {
        if let Err(e) = self.try_deliver(&claimed).await {
            // Left to its lease: tried again once the lease ends.
            tracing::warn!(error = %e, delivery = claimed.id, "webhook delivery not settled");
        }
    }

    async fn try_deliver(&self, claimed: &Claimed) -> Result<(), DbError> {
        let started_ms = now_ms();
        let Some(target) = endpoints::target(&self.db, claimed.endpoint_id, started_ms).await?
        else {
            return self
                .settle(
                    claimed,
                    None,
                    0,
                    Settled::Failed {
                        status: None,
                        error: "endpoint removed".into(),
                    },
                    None,
                )
                .await;
        };
        if !target.enabled {
            let failed = Settled::Failed {
                status: None,
                error: "endpoint turned off".into(),
            };
            return self.settle(claimed, None, 0, failed, None).await;
        }
        let body = payload::build(
            &self.db,
            self.keys.as_deref(),
            claimed,
            target.include_transcript,
            &self.settings.public_url,
        )
        .await?;
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let timestamp = started_ms / 1000;
        let signature = signature::header(&target.secrets, &claimed.message_id, timestamp, &body);
        let clock = Instant::now();
        let answer = self
            .send(
                &target.url,
                &claimed.message_id,
                timestamp,
                &signature,
                body,
            )
            .await;
        let latency_ms = clock.elapsed().as_millis() as i64;
        self.metrics.webhook_latency.observe(clock.elapsed());
        let now = now_ms();
        let (status, error) = match answer {
            Ok(status) if (200..300).contains(&status) => (Some(status), None),
            Ok(status) => (Some(status), Some(format!("answered HTTP {status}"))),
            Err(e) => (None, Some(e)),
        };
        let settled = match &error {
            None => Settled::Delivered {
                status: status.unwrap_or(200),
            },
            Some(error) if now - claimed.created_at_ms >= GIVE_UP_AFTER_MS => Settled::Failed {
                status,
                error: format!("{error}; given up after three days of attempts"),
            },
            Some(error) => Settled::Retry {
                status,
                error: error.clone(),
                next_at_ms: now + retry_wait_ms(claimed.attempts),
            },
        };
        let streak = match &settled {
            Settled::Delivered { .. } => None,
            _ => Some(target.failing_since_ms.unwrap_or(now)),
        };
        self.settle(
            claimed,
            status,
            latency_ms,
            settled,
            streak.map(|since| (since, target.tenant.clone())),
        )
        .await
    }

    /// Writes the outcome, the attempt and the endpoint's streak in one transaction; turns the
    /// endpoint off when its streak reached [`DISABLE_AFTER_MS`].
    async fn settle(
        &self,
        claimed: &Claimed,
        status: Option<i64>,
        latency_ms: i64,
        settled: Settled,
        failing: Option<(i64, String)>,
    ) -> Result<(), DbError> {
        let now = now_ms();
        let error = match &settled {
            Settled::Delivered { .. } => None,
            Settled::Retry { error, .. } | Settled::Failed { error, .. } => Some(error.clone()),
        };
        match &settled {
            Settled::Delivered { .. } => self.metrics.count_webhook("delivered"),
            Settled::Retry { .. } => self.metrics.count_webhook("retried"),
            Settled::Failed { .. } => self.metrics.count_webhook("failed"),
        }
        let mut tx = self.db.pool.begin().await?;
        outbox::settle(&mut tx, claimed.id, now, &settled).await?;
        endpoints::log_attempt(
            &mut tx,
            claimed.endpoint_id,
            &endpoints::Attempt {
                id: 0,
                delivery_id: claimed.id,
                at_ms: now,
                status,
                latency_ms,
                error: error.clone(),
            },
        )
        .await?;
        let mut turned_off = None;
        match &failing {
            None => endpoints::note_success(&mut tx, claimed.endpoint_id).await?,
            Some((since, tenant)) => {
                endpoints::note_failure(&mut tx, claimed.endpoint_id, *since).await?;
                if now - since >= DISABLE_AFTER_MS {
                    let reason = format!(
                        "turned off: every delivery failed for three days (last: {})",
                        error.as_deref().unwrap_or("no answer")
                    );
                    if endpoints::disable(&mut tx, claimed.endpoint_id, &reason).await? {
                        turned_off = Some((tenant.clone(), reason));
                    }
                }
            }
        }
        tx.commit().await?;
        if let Some((tenant, reason)) = turned_off {
            tracing::warn!(endpoint = claimed.endpoint_id, tenant = %tenant, "webhook endpoint turned off after failing for three days");
            // Its admins see it in their audit log (and on the endpoint).
            let mut entry = AuditEntry::new("service", tenant, "webhook_disabled");
            entry.detail = Some(format!("endpoint {}: {reason}", claimed.endpoint_id));
            audit::record(&self.db, &entry).await?;
        }
        Ok(())
    }

    /// Posts one delivery; the receiver's status, or why there was none. At most
    /// [`MAX_ANSWER_BYTES`] of the answer are read.
    async fn send(
        &self,
        url: &str,
        message_id: &str,
        timestamp: i64,
        signature: &str,
        body: Vec<u8>,
    ) -> Result<i64, String> {
        // Checked again at each send: the operator's exceptions may have narrowed since.
        let url = self.settings.guard.check_url(url)?;
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = i64::from(response.status().as_u16());
        let mut response = response;
        let mut read = 0usize;
        while let Ok(Some(chunk)) = response.chunk().await {
            read += chunk.len();
            if read >= MAX_ANSWER_BYTES {
                break;
            }
        }
        Ok(status)
    }
}

/// The reason of a failed request, with its causes (reqwest's own message is brief).
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "no answer within 10 s".to_string()
    } else if error.is_connect() {
        "could not connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Full jitter under a bound that doubles with each attempt, capped.
pub fn retry_wait_ms(attempts_before: i64) -> i64 {
    let bound = RETRY_FIRST_MS
        .saturating_mul(1i64 << attempts_before.clamp(0, 20))
        .min(RETRY_CAP_MS);
    // At least a second, so a receiver that is down is not hammered.
    fastrand::i64(1000.min(bound)..=bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_longer_each_time_up_to_the_cap() {
        for attempts in 0..40 {
            let bound = (RETRY_FIRST_MS << attempts.min(20)).min(RETRY_CAP_MS);
            for _ in 0..50 {
                let wait = retry_wait_ms(attempts);
                assert!((1000..=bound).contains(&wait), "{attempts}: {wait}");
            }
        }
    }
}
