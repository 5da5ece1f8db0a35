//! Short-lived links:
//! `/api/recordings/{id}/{audio|download}?by=..&iat_ms=..&exp=..&nonce=..&kid=..&sig=..` (and a
//! whole call's `/api/calls/{id}/download?...`) where `sig` is HMAC-SHA256 over the recording
//! (or call), the action, the principal, the issue time, the expiry and a nonce. The issue time lets links made before a user was disabled stay refused
//! after the user is enabled again. Any changed field breaks the signature. Keys carry ids so they can be rotated: the
//! first configured key signs, every configured key verifies.

use std::collections::HashMap;

use hmac::Mac;
use sqlx::AnyConnection;

pub use crate::signing::SigningKeys as LinkKeys;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAction {
    /// Inline playback; reusable until it expires (a player makes many range requests).
    Audio,
    /// An attachment; single use.
    Download,
}

impl LinkAction {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkAction::Audio => "audio",
            LinkAction::Download => "download",
        }
    }

    /// What the policy must allow for these bytes.
    pub fn policy_action(self) -> super::policy::Action {
        match self {
            LinkAction::Audio => super::policy::Action::Play,
            LinkAction::Download => super::policy::Action::Download,
        }
    }

    /// How the audit log names serving them.
    pub fn audit_action(self) -> &'static str {
        match self {
            LinkAction::Audio => "stream",
            LinkAction::Download => "download",
        }
    }
}

/// What a link is to: one recording, or a whole call (its id as Asterisk gave it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkTarget {
    Recording(i64),
    Call(String),
}

/// What a link allows, and to whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub target: LinkTarget,
    pub action: LinkAction,
    /// `u<user id>` or `t<token id>`.
    pub subject: String,
    /// Unix milliseconds: a link made in the same second as a user's disabling is still told
    /// apart.
    pub issued_ms: i64,
    /// Unix seconds.
    pub expires: i64,
    pub nonce: String,
}

fn message(grant: &Grant) -> String {
    // A call's link is signed under its own heading: no call id can pass for a recording's.
    let (heading, target) = match &grant.target {
        LinkTarget::Recording(id) => ("ari-recorder link v2", id.to_string()),
        LinkTarget::Call(id) => ("ari-recorder call link v1", id.clone()),
    };
    format!(
        "{heading}\n{target}\n{}\n{}\n{}\n{}\n{}",
        grant.action.as_str(),
        grant.subject,
        grant.issued_ms,
        grant.expires,
        grant.nonce
    )
}

/// The query string of a signed link for `grant`.
pub fn sign(keys: &LinkKeys, grant: &Grant) -> String {
    let kid = keys.signing_id();
    let sig = keys
        .mac(kid)
        .map(|mut mac| {
            mac.update(message(grant).as_bytes());
            hex::encode(mac.finalize().into_bytes())
        })
        .unwrap_or_default();
    format!(
        "by={}&iat_ms={}&exp={}&nonce={}&kid={kid}&sig={sig}",
        grant.subject, grant.issued_ms, grant.expires, grant.nonce
    )
}

/// Why a link was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    Malformed,
    UnknownKey,
    Tampered,
    Expired,
    Used,
}

impl LinkError {
    pub fn reason(self) -> &'static str {
        match self {
            LinkError::Malformed => "link_malformed",
            LinkError::UnknownKey => "link_key_retired",
            LinkError::Tampered => "link_tampered",
            LinkError::Expired => "link_expired",
            LinkError::Used => "link_used",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            LinkError::Malformed => "the link is incomplete",
            LinkError::UnknownKey => "the link was signed with a key that is no longer accepted",
            LinkError::Tampered => "the link's signature does not match: it was altered",
            LinkError::Expired => "the link has expired: ask for a new one",
            LinkError::Used => "this download link was already used: ask for a new one",
        }
    }
}

/// Whether the query carries a signed link at all.
pub fn is_link(query: &HashMap<String, String>) -> bool {
    query.contains_key("sig")
}

/// Checks a link for `target` and `action` at `now` (unix seconds). The signature is checked
/// before the expiry, so a link whose expiry was pushed back reads as tampered.
pub fn verify(
    keys: &LinkKeys,
    target: LinkTarget,
    action: LinkAction,
    query: &HashMap<String, String>,
    now: i64,
) -> Result<Grant, LinkError> {
    let field = |name: &str| query.get(name).ok_or(LinkError::Malformed);
    // Shape first: nothing unchecked reaches the audit log or the MAC.
    if !well_formed(query) {
        return Err(LinkError::Malformed);
    }
    // "exp=0100" parses like "exp=100" but was not what was signed.
    let canonical = |name: &str| -> Result<i64, LinkError> {
        let text = field(name)?;
        let value: i64 = text.parse().map_err(|_| LinkError::Tampered)?;
        if value.to_string() != *text {
            return Err(LinkError::Tampered);
        }
        Ok(value)
    };
    let grant = Grant {
        target,
        action,
        subject: field("by")?.clone(),
        issued_ms: canonical("iat_ms")?,
        expires: canonical("exp")?,
        nonce: field("nonce")?.clone(),
    };
    let mut mac = keys.mac(field("kid")?).ok_or(LinkError::UnknownKey)?;
    let sig = decode_hex(field("sig")?).ok_or(LinkError::Tampered)?;
    mac.update(message(&grant).as_bytes());
    // Constant-time comparison.
    mac.verify_slice(&sig).map_err(|_| LinkError::Tampered)?;
    if grant.expires <= now {
        return Err(LinkError::Expired);
    }
    Ok(grant)
}

/// Whether `by` names a principal (`u<digits>` or `t<digits>`).
pub fn valid_subject(by: &str) -> bool {
    let digits = by.strip_prefix('u').or_else(|| by.strip_prefix('t'));
    digits.is_some_and(|d| (1..=19).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Every field of a link has the shape [`sign`] gives it.
fn well_formed(query: &HashMap<String, String>) -> bool {
    let is_hex = |t: &str| t.bytes().all(|b| b.is_ascii_hexdigit());
    let get = |name: &str| query.get(name).map(String::as_str).unwrap_or_default();
    let is_number = |t: &str| (1..=19).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit());
    let (by, exp, nonce, kid, sig) = (get("by"), get("exp"), get("nonce"), get("kid"), get("sig"));
    valid_subject(by)
        && is_number(get("iat_ms"))
        && is_number(exp)
        && (1..=64).contains(&nonce.len())
        && is_hex(nonce)
        && (1..=64).contains(&kid.len())
        && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && sig.len() == 64
        && is_hex(sig)
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Spends a single-use link's `nonce` (the `used_grants` table is this module's): false when it
/// was spent before. Run in the transaction of the download's audit event. Spent nonces are
/// kept only until their link (`expires_at_ms`) would have expired anyway.
pub async fn spend(
    conn: &mut AnyConnection,
    nonce: &str,
    expires_at_ms: i64,
    now: i64,
) -> Result<bool, sqlx::Error> {
    sqlx::query("DELETE FROM used_grants WHERE expires_at_ms < $1")
        .bind(now)
        .execute(&mut *conn)
        .await?;
    let spent = sqlx::query(
        "INSERT INTO used_grants (nonce, used_at_ms, expires_at_ms) VALUES ($1, $2, $3) ON CONFLICT (nonce) DO NOTHING",
    )
    .bind(nonce)
    .bind(now)
    .bind(expires_at_ms)
    .execute(&mut *conn)
    .await?;
    Ok(spent.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(text: &str) -> HashMap<String, String> {
        url::form_urlencoded::parse(text.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    fn keys(entries: &[&str]) -> LinkKeys {
        LinkKeys::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("valid keys")
    }

    const K1: &str = "k1:0123456789abcdef0123456789abcdef";
    const K2: &str = "k2:fedcba9876543210fedcba9876543210";

    fn grant() -> Grant {
        Grant {
            target: LinkTarget::Recording(7),
            action: LinkAction::Download,
            subject: "u3".into(),
            issued_ms: 900_000,
            expires: 1_000,
            nonce: "abc".into(),
        }
    }

    #[test]
    fn a_signed_link_verifies_until_it_expires() {
        let k = keys(&[K1]);
        let q = query(&sign(&k, &grant()));
        assert_eq!(
            verify(&k, LinkTarget::Recording(7), LinkAction::Download, &q, 999),
            Ok(grant())
        );
        assert_eq!(
            verify(
                &k,
                LinkTarget::Recording(7),
                LinkAction::Download,
                &q,
                1_000
            ),
            Err(LinkError::Expired)
        );
    }

    #[test]
    fn every_signed_field_is_covered() {
        let k = keys(&[K1]);
        let signed = sign(&k, &grant());
        assert_eq!(
            verify(
                &k,
                LinkTarget::Recording(8),
                LinkAction::Download,
                &query(&signed),
                0
            ),
            Err(LinkError::Tampered),
            "recording"
        );
        assert_eq!(
            verify(
                &k,
                LinkTarget::Recording(7),
                LinkAction::Audio,
                &query(&signed),
                0
            ),
            Err(LinkError::Tampered),
            "action"
        );
        for (from, to) in [
            ("by=u3", "by=u4"),
            ("iat_ms=900000", "iat_ms=900001"),
            ("iat_ms=900000", "iat_ms=0900000"),
            ("exp=1000", "exp=9000"),
            ("exp=1000", "exp=01000"),
            ("nonce=abc", "nonce=abd"),
        ] {
            let changed = signed.replace(from, to);
            assert_eq!(
                verify(
                    &k,
                    LinkTarget::Recording(7),
                    LinkAction::Download,
                    &query(&changed),
                    0
                ),
                Err(LinkError::Tampered),
                "{from} -> {to}"
            );
        }
        let sig_pos = signed.find("sig=").expect("sig") + 4;
        let mut flipped = signed.clone().into_bytes();
        flipped[sig_pos] = if flipped[sig_pos] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).expect("ascii");
        assert_eq!(
            verify(
                &k,
                LinkTarget::Recording(7),
                LinkAction::Download,
                &query(&flipped),
                0
            ),
            Err(LinkError::Tampered)
        );
        assert_eq!(
            verify(
                &k,
                LinkTarget::Recording(7),
                LinkAction::Download,
                &query("by=u3&exp=1000"),
                0
            ),
            Err(LinkError::Malformed)
        );
        // Fields of the wrong shape are malformed before any signature is computed.
        let long_by = format!("by={}", "x".repeat(60_000));
        for (from, to) in [
            ("by=u3", long_by.as_str()),
            ("by=u3", "by=u"),
            ("by=u3", "by=admin"),
            ("exp=1000", "exp=-1"),
            ("iat_ms=900000&", ""),
            ("nonce=abc", "nonce=zz"),
            ("kid=k1", "kid=k1%0A"),
        ] {
            let changed = signed.replace(from, to);
            assert_eq!(
                verify(
                    &k,
                    LinkTarget::Recording(7),
                    LinkAction::Download,
                    &query(&changed),
                    0
                ),
                Err(LinkError::Malformed),
                "{from} -> {to}"
            );
        }
        assert!(valid_subject("u1") && valid_subject("t42") && !valid_subject("u1x"));
    }

    #[test]
    fn rotation_keeps_old_links_until_their_key_is_removed() {
        let old = keys(&[K1]);
        let link = query(&sign(&old, &grant()));
        let rotated = keys(&[K2, K1]);
        assert_eq!(
            verify(
                &rotated,
                LinkTarget::Recording(7),
                LinkAction::Download,
                &link,
                0
            ),
            Ok(grant())
        );
        let new_link = sign(&rotated, &grant());
        assert!(new_link.contains("kid=k2"), "{new_link}");
        let retired = keys(&[K2]);
        assert_eq!(
            verify(
                &retired,
                LinkTarget::Recording(7),
                LinkAction::Download,
                &link,
                0
            ),
            Err(LinkError::UnknownKey)
        );
        // A key id pointed at a different secret does not verify.
        let swapped = keys(&["k1:another-secret-of-at-least-32-chars!!"]);
        assert_eq!(
            verify(
                &swapped,
                LinkTarget::Recording(7),
                LinkAction::Download,
                &link,
                0
            ),
            Err(LinkError::Tampered)
        );
    }

    #[test]
    fn bad_key_lists_are_refused() {
        for bad in [
            vec![],
            vec!["nocolon".to_string()],
            vec!["k:short".to_string()],
            vec![K1.to_string(), K1.to_string()],
        ] {
            assert!(LinkKeys::parse(&bad).is_err(), "{bad:?}");
        }
        assert!(!format!("{:?}", keys(&[K1])).contains("0123456789abcdef"));
    }
    #[test]
    fn a_call_link_holds_for_its_call_only() {
        let k = keys(&[K1]);
        let grant = Grant {
            target: LinkTarget::Call("1764518400.7".into()),
            ..grant()
        };
        let q = query(&sign(&k, &grant));
        assert_eq!(
            verify(
                &k,
                LinkTarget::Call("1764518400.7".into()),
                LinkAction::Download,
                &q,
                0
            ),
            Ok(grant)
        );
        for other in [
            LinkTarget::Call("1764518400.8".into()),
            LinkTarget::Recording(7),
        ] {
            assert_eq!(
                verify(&k, other, LinkAction::Download, &q, 0),
                Err(LinkError::Tampered)
            );
        }
    }
}
