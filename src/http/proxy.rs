//! The client's address behind reverse proxies. The README recommends a TLS proxy in front;
//! without this every client would have the proxy's address, making the per-address rate
//! limits global and the audit log's client field useless. `Forwarded` (RFC 7239) or, failing
//! that, `X-Forwarded-For` is believed only when the connection comes from a configured proxy,
//! and only as far back as the chain stays among configured proxies: a client cannot forge its
//! address by sending the header itself.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

use super::AppState;

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
        let client = forwarded_client(&state.access.trusted_proxies, peer.ip(), request.headers());
        request.extensions_mut().insert(ClientAddress(client));
    }
    next.run(request).await
}

/// The rightmost address of the forwarding chain that is not a trusted proxy, starting from the
/// peer; the peer itself when it is not trusted.
pub fn forwarded_client(trusted: &[IpNet], peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    for hop in hops(headers).iter().rev() {
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

/// The chain's nodes, oldest first: `for=` of every `Forwarded` element, or else the entries of
/// `X-Forwarded-For`.
fn hops(headers: &HeaderMap) -> Vec<String> {
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
    let forwarded: Vec<String> = values("forwarded")
        .iter()
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (key, value) = pair.trim().split_once('=')?;
                key.eq_ignore_ascii_case("for")
                    .then(|| value.trim().trim_matches('"').to_string())
            })
        })
        .collect();
    if forwarded.is_empty() {
        values("x-forwarded-for")
    } else {
        forwarded
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

    #[test]
    fn headers_count_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let forged = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(
            forwarded_client(&trusted, ip("203.0.113.9"), &forged),
            ip("203.0.113.9")
        );
        assert_eq!(
            forwarded_client(&[], ip("10.0.0.1"), &forged),
            ip("10.0.0.1")
        );
        assert_eq!(
            forwarded_client(&trusted, ip("10.0.0.1"), &forged),
            ip("1.2.3.4")
        );
    }

    #[test]
    fn the_chain_is_followed_only_through_trusted_hops() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        // The client prepended a forged hop; the proxies appended the real one.
        let chain = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.1.1")]);
        assert_eq!(
            forwarded_client(&trusted, ip("10.0.0.1"), &chain),
            ip("198.51.100.7")
        );
        let rfc = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::7]:4711\";proto=https, for=10.2.2.2:80",
        )]);
        assert_eq!(
            forwarded_client(&trusted, ip("10.0.0.1"), &rfc),
            ip("2001:db8::7")
        );
        let unknown = headers(&[("forwarded", "for=unknown, for=10.2.2.2")]);
        assert_eq!(
            forwarded_client(&trusted, ip("10.0.0.1"), &unknown),
            ip("10.2.2.2")
        );
    }
}
