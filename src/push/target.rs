//! The SSRF guard of push subscriptions: which target addresses an
//! outgoing request may reach. Private, loopback, link-local, unspecified
//! and other non-public ranges are refused unless the subscription allows
//! private targets. The check runs on the addresses a host name resolves to
//! at connect time (a resolver plugged into the HTTP client), so a name
//! that resolves somewhere private, or is re-pointed there later, is
//! refused too; an address written in the URL is checked before sending,
//! since the client doesn't resolve those.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// True for addresses a push may only reach with `allow_private_targets`.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private_v4(v4);
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                // NAT64 (64:ff9b::/96) and IPv4-compatible (::a.b.c.d)
                // addresses reach the IPv4 address they embed.
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] && is_private_v4(embedded_v4(v6)))
                || (s[0..6] == [0; 6] && is_private_v4(embedded_v4(v6)))
        }
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Ipv4Addr {
    let o = v6.octets();
    Ipv4Addr::new(o[12], o[13], o[14], o[15])
}

fn is_private_v4(v4: Ipv4Addr) -> bool {
    let o = v4.octets();
    v4.is_private()
        || v4.is_loopback()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || o[0] == 0 // "this network"
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // shared address space 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || o[0] >= 240 // reserved
}

/// A subscription URL: http or https, with a host, without credentials
/// (they would show in every API answer; the secret authenticates).
pub fn parse_url(url: &str) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{url:?} must be an http:// or https:// URL"));
    }
    if parsed.host().is_none() {
        return Err(format!("{url:?} has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("the URL must not carry credentials".into());
    }
    Ok(parsed)
}

/// Refuse a URL whose host is a private address literal (host names are
/// checked when they resolve, by `GuardedResolver`).
pub fn check_literal(url: &Url, allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    if is_private(ip) {
        return Err(refusal(&ip.to_string()));
    }
    Ok(())
}

fn refusal(what: &str) -> String {
    format!(
        "target {what} is a private, loopback or link-local address; \
         set allow_private_targets to push there"
    )
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

/// Resolves like the system resolver, then drops private addresses; a
/// name left with none fails to connect, with the reason.
#[derive(Debug, Default, Clone, Copy)]
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|a| !is_private(a.ip()))
                .collect();
            if public.is_empty() {
                let shown: Vec<String> = resolved.iter().map(|a| a.ip().to_string()).collect();
                return Err(
                    Box::new(Refused(refusal(&format!("{host} ({})", shown.join(", ")))))
                        as Box<dyn std::error::Error + Send + Sync>,
                );
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_private_covers_loopback_private_link_local_and_mapped() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip} allowed");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip} refused");
        }
    }

    #[test]
    fn check_literal_refuses_private_literals_unless_allowed() {
        let url = parse_url("http://127.0.0.1:9/hook").unwrap();
        assert!(check_literal(&url, false)
            .unwrap_err()
            .contains("127.0.0.1"));
        check_literal(&url, true).unwrap();
        let v6 = parse_url("http://[::1]/hook").unwrap();
        assert!(check_literal(&v6, false).is_err());
        check_literal(&parse_url("https://hooks.example.com/x").unwrap(), false).unwrap();
    }

    #[test]
    fn parse_url_refuses_other_schemes_and_credentials() {
        for bad in ["ftp://x/y", "not a url", "https://user:pw@example.com/"] {
            assert!(parse_url(bad).is_err(), "{bad} accepted");
        }
    }
}
