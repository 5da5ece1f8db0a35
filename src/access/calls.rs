//! Which endpoints a tenant may place direct calls between (`POST /api/calls`): an allow-list
//! per tenant, set by the operator. Without it an editor of one tenant could ring another
//! tenant's phones (and record the call into their own tenant) or dial a trunk through
//! `Local/...@outbound` (toll fraud).
//!
//! A pattern is an endpoint (`PJSIP/201`) or an endpoint with one `*` (`PJSIP/2*`,
//! `Local/*@internal`) and any number of `#`. The `*` stands for letters, digits and
//! `_ . + -` only: never `@` or `/`, so `Local/*@internal` cannot reach another context and
//! `PJSIP/2*` no other technology. A `#` stands for exactly one digit: `Local/2##@internal`
//! allows extensions 200 to 299 and no `+1900...` number, whatever the context would route.

use sqlx::AnyConnection;

/// Why a pattern was refused, for the operator's command line.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    let Some((tech, resource)) = pattern.split_once('/') else {
        return Err(format!(
            "{pattern:?}: an endpoint pattern is technology/resource (PJSIP/201, PJSIP/2*, Local/*@internal)"
        ));
    };
    if tech.is_empty() || resource.is_empty() || pattern.len() > 200 {
        return Err(format!(
            "{pattern:?}: technology and resource must not be empty"
        ));
    }
    if !tech.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!("{pattern:?}: the technology is letters and digits"));
    }
    if resource.matches('*').count() > 1 {
        return Err(format!("{pattern:?}: at most one *"));
    }
    if !resource
        .chars()
        .all(|c| wildcard_char(c) || matches!(c, '*' | '#' | '@' | '/'))
    {
        return Err(format!(
            "{pattern:?}: only letters, digits, _ . + - @ /, one * and # (one digit) are allowed"
        ));
    }
    Ok(())
}

fn wildcard_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-')
}

/// Whether `endpoint` matches one of `patterns`.
pub fn allows(patterns: &[String], endpoint: &str) -> bool {
    patterns
        .iter()
        .any(|pattern| matches(pattern.as_bytes(), endpoint.as_bytes()))
}

/// `#` is one digit; `*` (at most one, checked) any run of wildcard characters; the rest itself.
fn matches(pattern: &[u8], endpoint: &[u8]) -> bool {
    match pattern.split_first() {
        None => endpoint.is_empty(),
        Some((b'*', rest)) => (0..=endpoint.len())
            .take_while(|&n| n == 0 || wildcard_char(char::from(endpoint[n - 1])))
            .any(|n| matches(rest, &endpoint[n..])),
        Some((b'#', rest)) => endpoint
            .split_first()
            .is_some_and(|(c, tail)| c.is_ascii_digit() && matches(rest, tail)),
        Some((c, rest)) => endpoint
            .split_first()
            .is_some_and(|(e, tail)| e == c && matches(rest, tail)),
    }
}

/// The tenant's patterns, in order.
pub async fn endpoints(conn: &mut AnyConnection, tenant: &str) -> Result<Vec<String>, sqlx::Error> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT pattern FROM tenant_call_endpoints WHERE tenant = $1 ORDER BY pattern",
    )
    .bind(tenant)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(p,)| p).collect())
}

/// Replaces the tenant's patterns (checked by the caller with [`check_pattern`]).
pub async fn set_endpoints(
    conn: &mut AnyConnection,
    tenant: &str,
    patterns: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM tenant_call_endpoints WHERE tenant = $1")
        .bind(tenant)
        .execute(&mut *conn)
        .await?;
    for pattern in patterns {
        sqlx::query(
            "INSERT INTO tenant_call_endpoints (tenant, pattern) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(tenant)
        .bind(pattern)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(patterns: &[&str]) -> Vec<String> {
        patterns.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn a_wildcard_never_crosses_a_context_or_a_technology() {
        let acme = list(&["PJSIP/3*", "Local/*@internal", "PJSIP/reception"]);
        for allowed in [
            "PJSIP/301",
            "PJSIP/3",
            "Local/201@internal",
            "PJSIP/reception",
        ] {
            assert!(allows(&acme, allowed), "{allowed}");
        }
        for refused in [
            "PJSIP/201",
            "Local/1900555@outbound-trunk",
            "Local/201@internal@x",
            "Local/x@y@internal",
            "Local/201@outbound/internal",
            "IAX2/301",
            "PJSIP/301/sip:evil@example.com",
            "PJSIP/reception2",
        ] {
            assert!(!allows(&acme, refused), "{refused}");
        }
        assert!(!allows(&[], "PJSIP/201"), "no list, no calls");
    }

    /// Second probe, finding 13: `Local/*@internal` took `Local/+1900...@internal`. A `#`
    /// stands for one digit, so a tenant can be held to its extensions.
    #[test]
    fn a_digit_pattern_allows_extensions_and_no_trunk_number() {
        let acme = list(&["Local/2##@internal", "PJSIP/1#*"]);
        for allowed in [
            "Local/200@internal",
            "Local/299@internal",
            "PJSIP/10",
            "PJSIP/12a-b",
        ] {
            assert!(allows(&acme, allowed), "{allowed}");
        }
        for refused in [
            "Local/+19005551234@internal",
            "Local/2000@internal",
            "Local/20@internal",
            "Local/2a0@internal",
            "PJSIP/1",
            "PJSIP/1a-b",
            "PJSIP/a1",
        ] {
            assert!(!allows(&acme, refused), "{refused}");
        }
        assert_eq!(check_pattern("Local/2##@internal"), Ok(()));
    }

    #[test]
    fn patterns_are_checked() {
        for good in ["PJSIP/201", "PJSIP/2*", "Local/*@internal", "SIP/a.b-c+1"] {
            assert_eq!(check_pattern(good), Ok(()), "{good}");
        }
        for bad in [
            "PJSIP",
            "/201",
            "PJSIP/",
            "PJSIP/*1*",
            "PJ SIP/1",
            "PJSIP/2,3",
        ] {
            assert!(check_pattern(bad).is_err(), "{bad}");
        }
    }
}
