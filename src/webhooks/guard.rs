//! Where webhooks may go: no server-side request forgery. `https://` only (plain `http://` only
//! to hosts the operator lists), and never to loopback, private, link-local, shared, reserved or
//! cloud-metadata addresses unless the operator allows their network. The host is resolved by
//! [`CheckedResolver`], which hands the HTTP client only the addresses it checked, so a name
//! that changes its answer between the check and the connection (DNS rebinding) reaches nothing
//! it should not.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// The operator's exceptions.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    /// Hosts (names or addresses) that may be reached over plain `http://`.
    pub http_hosts: Vec<String>,
    /// Networks allowed although not public (an intranet's receivers, loopback in tests).
    pub networks: Vec<IpNet>,
}

impl Guard {
    /// Checks an endpoint's URL as written: scheme, host, no credentials; a literal address
    /// is checked here (the resolver is not asked for one).
    pub fn check_url(&self, raw: &str) -> Result<url::Url, String> {
        let url = url::Url::parse(raw.trim()).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(format!("{}:// is not https://", url.scheme()));
        }
        let host = match url.host() {
            Some(url::Host::Domain(name)) => name.to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err("the URL names no host".into()),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "credentials in the URL are not allowed: receivers verify the signature".into(),
            );
        }
        match url.scheme() {
            "https" => {}
            "http" if self.http_hosts.iter().any(|h| h.eq_ignore_ascii_case(&host)) => {}
            "http" => {
                return Err(format!(
                    "plain http:// is allowed only to the hosts in WEBHOOK_ALLOW_HTTP_HOSTS; {host} is not one"
                ))
            }
            other => return Err(format!("{other}:// is not https://")),
        }
        if url.fragment().is_some() {
            return Err("a URL with a #fragment is not an endpoint".into());
        }
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal {
            if !self.address_allowed(ip) {
                return Err(format!(
                    "{ip} is not a public address (WEBHOOK_ALLOW_NETWORKS lists exceptions)"
                ));
            }
        }
        Ok(url)
    }

    /// A public unicast address, or one in a network the operator allows.
    pub fn address_allowed(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            // An IPv4-mapped IPv6 address is the IPv4 address.
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        is_public(ip) || self.networks.iter().any(|n| n.contains(&ip))
    }
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => public_v6(v6),
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, _, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        // 169.254/16, cloud metadata (169.254.169.254) among it
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // shared address space (carrier-grade NAT)
        || (a == 100 && (64..128).contains(&b))
        // benchmarking
        || (a == 198 && (b == 18 || b == 19))
        // IETF protocol assignments
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        // reserved
        || a >= 240)
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // unique local (fc00::/7), AWS's metadata fd00:ec2::254 among it
        || (first & 0xfe00) == 0xfc00
        // link-local fe80::/10
        || (first & 0xffc0) == 0xfe80
        // documentation 2001:db8::/32
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        // NAT64 and discard prefixes reach what their embedded address does
        || first == 0x0064
        || first == 0x0100)
}

/// Resolves a host and keeps only the addresses the guard allows; the HTTP client connects
/// to nothing else.
pub struct CheckedResolver {
    pub guard: Arc<Guard>,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = Arc::clone(&self.guard);
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| guard.address_allowed(a.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(format!(
                    "{host} resolves to no address webhooks may reach ({} found, none public or allowed)",
                    found.len()
                )
                .into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> Guard {
        Guard::default()
    }

    #[test]
    fn only_https_reaches_public_addresses() {
        let g = strict();
        assert!(g.check_url("https://hooks.example.com/in").is_ok());
        assert!(g.check_url("http://hooks.example.com/in").is_err());
        assert!(g.check_url("ftp://hooks.example.com/in").is_err());
        assert!(g.check_url("https://user:pw@hooks.example.com/").is_err());
        for blocked in [
            "https://127.0.0.1/",
            "https://10.1.2.3/",
            "https://172.16.0.1/",
            "https://192.168.1.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://[::1]/",
            "https://[fe80::1]/",
            "https://[fd00:ec2::254]/",
            "https://[::ffff:127.0.0.1]/",
        ] {
            assert!(g.check_url(blocked).is_err(), "{blocked} allowed");
        }
        assert!(g.check_url("https://93.184.216.34/").is_ok());
        assert!(g.check_url("https://[2606:2800:220:1::1]/").is_ok());
    }

    #[test]
    fn the_operators_exceptions_open_what_they_name() {
        let g = Guard {
            http_hosts: vec!["127.0.0.1".into()],
            networks: vec!["127.0.0.0/8".parse().unwrap()],
        };
        assert!(g.check_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(g.check_url("http://10.0.0.1/hook").is_err());
        assert!(g.check_url("https://10.0.0.1/hook").is_err());
        assert!(g.address_allowed("127.0.0.2".parse().unwrap()));
        assert!(!g.address_allowed("169.254.169.254".parse().unwrap()));
    }
}
