//! Endpoint URLs: parsing (`http`/`https` only) and the address safety check
//! that keeps hookrelay from being used to reach loopback, private,
//! link-local (cloud metadata), CGNAT and other non-public addresses unless
//! `--allow-private-endpoints` is on. The check runs when a subscription is
//! created and again before each delivery, since DNS answers can change.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use url::{Host, Url};

/// Longest endpoint URL accepted.
pub const MAX_URL_LEN: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// The text is not an acceptable URL.
    #[error("{0}")]
    Invalid(String),
    /// The URL points at an address that is not allowed.
    #[error("{0}")]
    Private(String),
    /// The host name does not resolve.
    #[error("{0}")]
    Unresolvable(String),
}

/// A parsed, normalized endpoint URL (scheme http or https, a host, no
/// fragment).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointUrl(Url);

impl EndpointUrl {
    pub fn parse(text: &str) -> Result<EndpointUrl, EndpointError> {
        let text = text.trim();
        if text.len() > MAX_URL_LEN {
            return Err(EndpointError::Invalid(format!(
                "`endpoint` is longer than {MAX_URL_LEN} characters"
            )));
        }
        let mut url = Url::parse(text).map_err(|e| {
            EndpointError::Invalid(format!(
                "`endpoint` is not a valid URL ({e}); write it like https://example.com/webhooks"
            ))
        })?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(EndpointError::Invalid(format!(
                "`endpoint` must be an http or https URL, not `{}:`",
                url.scheme()
            )));
        }
        if url.host().is_none() {
            return Err(EndpointError::Invalid("`endpoint` has no host".into()));
        }
        url.set_fragment(None);
        Ok(EndpointUrl(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn url(&self) -> &Url {
        &self.0
    }

    /// Refuses the URL when its host is, or resolves to, a forbidden address.
    /// With `allow_private` nothing is checked (and nothing is resolved).
    pub async fn check_reachable_safely(&self, allow_private: bool) -> Result<(), EndpointError> {
        if allow_private {
            return Ok(());
        }
        let port = self.0.port_or_known_default().unwrap_or(443);
        match self.0.host() {
            Some(Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip), &ip.to_string()),
            Some(Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip), &ip.to_string()),
            Some(Host::Domain(name)) => {
                let lower = name.to_ascii_lowercase();
                let lower = lower.trim_end_matches('.');
                if lower == "localhost" || lower.ends_with(".localhost") {
                    return Err(private_error(name, "is a loopback name"));
                }
                let addrs = tokio::net::lookup_host((lower, port)).await.map_err(|e| {
                    EndpointError::Unresolvable(format!(
                        "the endpoint host `{name}` could not be resolved ({e}); check the URL"
                    ))
                })?;
                let mut any = false;
                for addr in addrs {
                    any = true;
                    check_ip(addr.ip(), name)?;
                }
                if !any {
                    return Err(EndpointError::Unresolvable(format!(
                        "the endpoint host `{name}` resolved to no address"
                    )));
                }
                Ok(())
            }
            None => Err(EndpointError::Invalid("`endpoint` has no host".into())),
        }
    }
}

/// Shows the URL without its password (for logs and operator views).
impl std::fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.password().is_some() {
            let mut shown = self.0.clone();
            let _ = shown.set_password(Some("***"));
            f.write_str(shown.as_str())
        } else {
            f.write_str(self.0.as_str())
        }
    }
}

fn private_error(host: &str, why: &str) -> EndpointError {
    EndpointError::Private(format!(
        "the endpoint host `{host}` {why}; hookrelay refuses loopback, private, link-local and other non-public addresses unless it is started with --allow-private-endpoints"
    ))
}

fn check_ip(ip: IpAddr, host: &str) -> Result<(), EndpointError> {
    match forbidden_network(ip) {
        Some(net) => Err(private_error(
            host,
            &format!("is the non-public address {ip} (in {net})"),
        )),
        None => Ok(()),
    }
}

fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> IpNet {
    IpNet::V4(Ipv4Net::new(Ipv4Addr::new(a, b, c, d), len).expect("valid prefix"))
}

fn v6(addr: &str, len: u8) -> IpNet {
    IpNet::V6(Ipv6Net::new(addr.parse().expect("valid address"), len).expect("valid prefix"))
}

/// Address ranges that are never valid webhook targets (IANA special-purpose
/// registries): unspecified, loopback, RFC 1918, CGNAT, link-local (cloud
/// metadata), documentation, benchmarking, multicast, reserved, unique-local.
static FORBIDDEN: LazyLock<Vec<IpNet>> = LazyLock::new(|| {
    vec![
        v4(0, 0, 0, 0, 8),
        v4(10, 0, 0, 0, 8),
        v4(100, 64, 0, 0, 10),
        v4(127, 0, 0, 0, 8),
        v4(169, 254, 0, 0, 16),
        v4(172, 16, 0, 0, 12),
        v4(192, 0, 0, 0, 24),
        v4(192, 0, 2, 0, 24),
        v4(192, 168, 0, 0, 16),
        v4(198, 18, 0, 0, 15),
        v4(198, 51, 100, 0, 24),
        v4(203, 0, 113, 0, 24),
        v4(224, 0, 0, 0, 4),
        v4(240, 0, 0, 0, 4),
        v6("::", 128),
        v6("::1", 128),
        v6("100::", 64),
        v6("2001:db8::", 32),
        v6("fc00::", 7),
        v6("fe80::", 10),
        v6("fec0::", 10),
        v6("ff00::", 8),
    ]
});

/// The forbidden network containing `ip`, if any. IPv6 forms that embed an
/// IPv4 address (mapped, compatible, NAT64, 6to4) are judged by that address.
pub fn forbidden_network(ip: IpAddr) -> Option<IpNet> {
    if let IpAddr::V6(v6addr) = ip
        && let Some(embedded) = embedded_ipv4(v6addr)
    {
        return forbidden_network(IpAddr::V4(embedded));
    }
    FORBIDDEN.iter().find(|net| net.contains(&ip)).copied()
}

fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated)
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(tail),
        // 64:ff9b::a.b.c.d (NAT64)
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        // 2002:AABB:CCDD::/48 (6to4)
        [0x2002, a, b, ..] => Some(Ipv4Addr::new(
            (a >> 8) as u8,
            a as u8,
            (b >> 8) as u8,
            b as u8,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> bool {
        let url = EndpointUrl::parse(url).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        matches!(
            rt.block_on(url.check_reachable_safely(false)),
            Err(EndpointError::Private(_))
        )
    }

    #[test]
    fn only_http_and_https_urls_are_endpoints() {
        assert!(EndpointUrl::parse("https://example.com/hook").is_ok());
        assert!(EndpointUrl::parse("http://example.com:8080/hook?x=1").is_ok());
        assert!(matches!(
            EndpointUrl::parse("ftp://example.com"),
            Err(EndpointError::Invalid(_))
        ));
        assert!(matches!(
            EndpointUrl::parse("not a url"),
            Err(EndpointError::Invalid(_))
        ));
        assert!(matches!(
            EndpointUrl::parse("mailto:a@b.c"),
            Err(EndpointError::Invalid(_))
        ));
    }

    #[test]
    fn non_public_addresses_are_refused_in_every_spelling() {
        for url in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://10.0.0.1/",
            "http://172.16.5.4/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://224.0.0.1/",
            "http://[::1]/",
            "http://[::]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[ff02::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[64:ff9b::10.0.0.1]/",
            "http://[2002:7f00:1::]/",
            "http://localhost:8080/",
            "http://api.localhost/",
        ] {
            assert!(refused(url), "{url} should be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for url in [
            "http://93.184.216.34/",
            "http://[2606:2800:220:1:248:1893:25c8:1946]/",
        ] {
            assert!(!refused(url), "{url} should pass");
        }
    }

    #[test]
    fn the_refusal_names_the_option() {
        let err = forbidden_network("10.1.2.3".parse().unwrap());
        assert!(err.is_some());
        let msg = check_ip("10.1.2.3".parse().unwrap(), "10.1.2.3")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("--allow-private-endpoints"), "{msg}");
    }
}
