//! The client's address behind reverse proxies. docs/operations.md recommends a TLS proxy in front;
//! without this every client would have the proxy's address, making the per-address rate
//! limits global and the audit log's client field useless. One header, the one the operator
//! names (`X-Forwarded-For` by default, or `Forwarded` of RFC 7239), is believed, only when the
//! connection comes from a configured proxy, and only as far back as the chain stays among
//! configured proxies: a client cannot forge its address by sending the header itself, nor by
//! sending the other header, which a proxy that manages one passes through untouched.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

use super::AppState;
use crate::config::ForwardedHeader;

/// The address a request is attributed to (rate limits, audit), set by [`resolve_client`].
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub IpAddr);

/// Middleware: puts the request's [`ClientAddress`] into its extensions.
pub async fn resolve_client(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
        let client = forwarded_client(
            &state.access.trusted_proxies,
            state.access.forwarded_header,
            peer.ip(),
            request.headers(),
        );
        request.extensions_mut().insert(ClientAddress(client));
    }
    next.run(request).await
}

/// The rightmost address of the forwarding chain that is not a trusted proxy, starting from the
/// peer; the peer itself when it is not trusted.
pub fn forwarded_client(
    trusted: &[IpNet],
    believed: ForwardedHeader,
    peer: IpAddr,
    headers: &HeaderMap,
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    for hop in hops(headers, believed).iter().rev() {
        if !is_trusted(&client) {
            break;
        }
        match parse_node(hop) {
            Some(ip) => client = ip,
            // "unknown" or an obfuscated name: the last proxy that knew is as far as we see.
            None => break,
        }
    }
    client
}

/// The chain's nodes, oldest first: `for=` of every `Forwarded` element, or the entries of
/// `X-Forwarded-For`, whichever header is believed.
fn hops(headers: &HeaderMap, believed: ForwardedHeader) -> Vec<String> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    match believed {
        ForwardedHeader::XForwardedFor => values("x-forwarded-for"),
        ForwardedHeader::Forwarded => values("forwarded")
            .iter()
            .map(|element| {
                element
                    .split(';')
                    .find_map(|pair| {
                        let (key, value) = pair.trim().split_once('=')?;
                        key.eq_ignore_ascii_case("for")
                            .then(|| value.trim().trim_matches('"').to_string())
                    })
                    // An element without `for=` is a hop that did not say: it stops the chain.
                    .unwrap_or_else(|| "unknown".into())
            })
            .collect(),
    }
}

/// `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]:4711` or `2001:db8::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    node.parse::<SocketAddr>().ok().map(|s| s.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().expect("header"));
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    use ForwardedHeader::{Forwarded, XForwardedFor};

    #[test]
    fn headers_count_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let forged = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(
            forwarded_client(&trusted, XForwardedFor, ip("203.0.113.9"), &forged),
            ip("203.0.113.9")
        );
        assert_eq!(
            forwarded_client(&[], XForwardedFor, ip("10.0.0.1"), &forged),
            ip("10.0.0.1")
        );
        assert_eq!(
            forwarded_client(&trusted, XForwardedFor, ip("10.0.0.1"), &forged),
            ip("1.2.3.4")
        );
    }

    #[test]
    fn the_chain_is_followed_only_through_trusted_hops() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        // The client prepended a forged hop; the proxies appended the real one.
        let chain = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.1.1")]);
        assert_eq!(
            forwarded_client(&trusted, XForwardedFor, ip("10.0.0.1"), &chain),
            ip("198.51.100.7")
        );
        let rfc = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::7]:4711\";proto=https, for=10.2.2.2:80",
        )]);
        assert_eq!(
            forwarded_client(&trusted, Forwarded, ip("10.0.0.1"), &rfc),
            ip("2001:db8::7")
        );
        let unknown = headers(&[("forwarded", "for=unknown, for=10.2.2.2")]);
        assert_eq!(
            forwarded_client(&trusted, Forwarded, ip("10.0.0.1"), &unknown),
            ip("10.2.2.2")
        );
    }

    /// Second probe, finding 2: behind a proxy that manages only `X-Forwarded-For`, a client's
    /// own `Forwarded` header chose its address (and so its sign-in rate limit).
    #[test]
    fn only_the_header_the_operator_names_is_believed() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let both = headers(&[
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(
            forwarded_client(&trusted, XForwardedFor, ip("10.0.0.1"), &both),
            ip("198.51.100.7")
        );
        assert_eq!(
            forwarded_client(&trusted, Forwarded, ip("10.0.0.1"), &both),
            ip("6.6.6.6")
        );
        // Only the unmanaged header present: the proxy itself is the client.
        let forged = headers(&[("forwarded", "for=6.6.6.6")]);
        assert_eq!(
            forwarded_client(&trusted, XForwardedFor, ip("10.0.0.1"), &forged),
            ip("10.0.0.1")
        );
    }
}
