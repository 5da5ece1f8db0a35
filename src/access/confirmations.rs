//! Delete confirmations: step one of a delete issues a token bound to one recording, valid for
//! a short while and used once; step two redeems it. In the database (as the token's SHA-256),
//! so the two steps may reach different instances. Owns `delete_confirmations`.

use super::{random_secret, sha256_hex};
use crate::db::{Database, DbError};

/// A new token for deleting `recording`, valid until `now_ms + ttl_ms`. Expired tokens go.
pub async fn issue(
    db: &Database,
    recording: i64,
    now_ms: i64,
    ttl_ms: i64,
) -> Result<String, DbError> {
    sqlx::query("DELETE FROM delete_confirmations WHERE expires_at_ms <= $1")
        .bind(now_ms)
        .execute(&db.pool)
        .await?;
    let token = random_secret();
    sqlx::query(
        "INSERT INTO delete_confirmations (token_hash, recording_id, expires_at_ms) VALUES ($1, $2, $3)",
    )
    .bind(sha256_hex(&token))
    .bind(recording)
    .bind(now_ms + ttl_ms)
    .execute(&db.pool)
    .await?;
    Ok(token)
}

/// Spends `token` for `recording`, or says why it cannot be used. A token tried on another
/// recording is spent too.
pub async fn redeem(
    db: &Database,
    token: &str,
    recording: i64,
    now_ms: i64,
) -> Result<Result<(), &'static str>, DbError> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "DELETE FROM delete_confirmations WHERE token_hash = $1 RETURNING recording_id, expires_at_ms",
    )
    .bind(sha256_hex(token))
    .fetch_optional(&db.pool)
    .await?;
    Ok(match row {
        None => Err("unknown or already used confirmation token"),
        Some((bound, _)) if bound != recording => Err("this token confirms another recording"),
        Some((_, expires)) if expires <= now_ms => {
            Err("the confirmation expired: ask for a new one")
        }
        Some(_) => Ok(()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn confirmations_are_bound_single_use_and_expire_across_handles() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}/lib.db?mode=rwc", dir.path().display());
        // Two handles: the two steps may reach two instances.
        let (a, b) = (
            Database::open(&url).await.expect("a"),
            Database::open(&url).await.expect("b"),
        );
        let ttl = 120_000;
        let token = issue(&a, 7, 0, ttl).await.expect("issue");
        assert_eq!(
            redeem(&b, &token, 8, 0).await.expect("db"),
            Err("this token confirms another recording")
        );
        assert_eq!(
            redeem(&b, &token, 7, 0).await.expect("db"),
            Err("unknown or already used confirmation token"),
            "a token tried on the wrong recording is spent"
        );
        let token = issue(&a, 7, 0, ttl).await.expect("issue");
        assert_eq!(
            redeem(&b, &token, 7, ttl).await.expect("db"),
            Err("the confirmation expired: ask for a new one")
        );
        let token = issue(&a, 7, 0, ttl).await.expect("issue");
        assert_eq!(redeem(&b, &token, 7, ttl - 1).await.expect("db"), Ok(()));
        assert!(
            redeem(&a, &token, 7, 0).await.expect("db").is_err(),
            "single use"
        );
        let (stored,): (String,) = sqlx::query_as("SELECT token_hash FROM delete_confirmations")
            .fetch_one(&a.pool)
            .await
            .unwrap_or(("none".into(),));
        assert_ne!(stored, token, "never stored in clear");
    }
}
