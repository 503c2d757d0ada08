//! Endpoint URLs: parsing (`http`/`https` only) and the address safety check
//! that keeps hookrelay from being used to reach loopback, private,
//! link-local (cloud metadata), CGNAT and other non-public addresses unless
//! `--allow-private-endpoints` is on. The decision is [`forbidden_network`],
//! a pure function over one table of ranges ([`SPECIAL_RANGES`]). It is made
//! when a subscription is created ([`EndpointUrl::check_reachable_safely`],
//! so a refusal is a 422 before anything is sent) and again for every
//! connection the delivery client opens, to whichever address it is about to
//! connect to (`delivery::sender`), since DNS answers and the option can
//! change.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use ipnet::IpNet;
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
            Some(Host::Ipv4(ip)) => check_address(IpAddr::V4(ip), &ip.to_string()),
            Some(Host::Ipv6(ip)) => check_address(IpAddr::V6(ip), &ip.to_string()),
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
                    check_address(addr.ip(), name)?;
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

/// Refuses `ip` (an address of the endpoint host `host`) when it is not a
/// public address. The one check every connection hookrelay makes passes
/// (see `delivery::sender`), and the one used when a subscription is created.
pub fn check_address(ip: IpAddr, host: &str) -> Result<(), EndpointError> {
    match forbidden_network(ip) {
        Some(forbidden) => Err(private_error(
            host,
            &format!("is the non-public address {ip} ({forbidden})"),
        )),
        None => Ok(()),
    }
}

/// One range of [`SPECIAL_RANGES`]: no webhook endpoint lives there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialRange {
    pub net: IpNet,
    /// What the registry calls it.
    pub name: &'static str,
    /// Where it is defined.
    pub rfc: &'static str,
}

impl std::fmt::Display for SpecialRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}, {}", self.net, self.name, self.rfc)
    }
}

/// Why an address is refused: the range it is in, or, for an IPv6 address
/// that stands for an IPv4 one, the range of that IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forbidden {
    pub range: &'static SpecialRange,
    /// The embedded IPv4 address that was judged instead of the IPv6 one.
    pub embedded: Option<Ipv4Addr>,
}

impl std::fmt::Display for Forbidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.embedded {
            Some(v4) => write!(f, "it stands for {v4}, in {}", self.range),
            None => write!(f, "in {}", self.range),
        }
    }
}

/// The refused ranges: every entry of the IANA IPv4 and IPv6 Special-Purpose
/// Address Registries that is not globally reachable, plus multicast and the
/// space IANA keeps reserved. An address in several ranges is reported as
/// the most specific one. Two blocks are refused whole although a few of
/// their entries are marked globally reachable (anycast relays and
/// identifiers, never a webhook receiver): 192.0.0.0/24 and 2001::/23.
/// Not refused, as globally reachable: 192.31.196.0/24 and 192.175.48.0/24
/// (AS112, RFC 7534/7535), 192.52.193.0/24 (AMT, RFC 7450), 2620:4f:8000::/48
/// (AS112), and 64:ff9b::/96 and 2002::/16, which are judged by the IPv4
/// address they embed (see [`forbidden_network`]).
#[rustfmt::skip]
const SPECIAL_RANGES_TEXT: &[(&str, &str, &str)] = &[
    // IPv4 (https://www.iana.org/assignments/iana-ipv4-special-registry)
    // RFC 791 §3.2; 0.0.0.0/32, "this host", is RFC 1122 §3.2.1.3.
    ("0.0.0.0/8", "\"this network\"", "RFC 791"),
    // RFC 1918.
    ("10.0.0.0/8", "private-use", "RFC 1918"),
    // RFC 6598: carrier-grade NAT.
    ("100.64.0.0/10", "shared address space", "RFC 6598"),
    // RFC 1122 §3.2.1.3.
    ("127.0.0.0/8", "loopback", "RFC 1122"),
    // RFC 3927; cloud metadata services answer on 169.254.169.254.
    ("169.254.0.0/16", "link-local", "RFC 3927"),
    // RFC 1918.
    ("172.16.0.0/12", "private-use", "RFC 1918"),
    // RFC 6890 §2.1; holds RFC 7335 (DS-Lite), RFC 7600, RFC 7723, RFC 8155
    // and RFC 8880 (NAT64 discovery) entries.
    ("192.0.0.0/24", "IETF protocol assignments", "RFC 6890"),
    // RFC 5737.
    ("192.0.2.0/24", "documentation (TEST-NET-1)", "RFC 5737"),
    // RFC 7526 (deprecated 6to4 relay anycast; 192.88.99.2 is RFC 6751's 6a44).
    ("192.88.99.0/24", "deprecated 6to4 relay anycast", "RFC 7526"),
    // RFC 1918.
    ("192.168.0.0/16", "private-use", "RFC 1918"),
    // RFC 2544.
    ("198.18.0.0/15", "benchmarking", "RFC 2544"),
    // RFC 5737.
    ("198.51.100.0/24", "documentation (TEST-NET-2)", "RFC 5737"),
    // RFC 5737.
    ("203.0.113.0/24", "documentation (TEST-NET-3)", "RFC 5737"),
    // RFC 5771 (IANA IPv4 Multicast Address Space registry).
    ("224.0.0.0/4", "multicast", "RFC 5771"),
    // RFC 1112 §4.
    ("240.0.0.0/4", "reserved", "RFC 1112"),
    // RFC 919 and RFC 8190.
    ("255.255.255.255/32", "limited broadcast", "RFC 919"),

    // IPv6 (https://www.iana.org/assignments/iana-ipv6-special-registry)
    // RFC 4291 §2.5.2.
    ("::/128", "unspecified", "RFC 4291"),
    // RFC 4291 §2.5.3.
    ("::1/128", "loopback", "RFC 4291"),
    // RFC 4291 §2.5.5.1: IPv4-compatible addresses, deprecated.
    ("::/96", "IPv4-compatible (deprecated)", "RFC 4291"),
    // RFC 4291 §2.5.5.2: never on the wire; write the IPv4 address itself.
    ("::ffff:0:0/96", "IPv4-mapped", "RFC 4291"),
    // RFC 8215: a network's own NAT64 prefix; it may embed any IPv4 address.
    ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation", "RFC 8215"),
    // RFC 6666.
    ("100::/64", "discard-only", "RFC 6666"),
    // RFC 9780.
    ("100:0:0:1::/64", "dummy IPv6 prefix", "RFC 9780"),
    // RFC 2928; holds ORCHID (RFC 4843, RFC 7343), AMT (RFC 7450), AS112
    // (RFC 7535), PCP/TURN/DNS-SD anycast (RFC 7723, RFC 8155, RFC 9665) and
    // drone tags (RFC 9374).
    ("2001::/23", "IETF protocol assignments", "RFC 2928"),
    // RFC 4380 and RFC 8190: Teredo; it embeds a server and a client IPv4.
    ("2001::/32", "Teredo", "RFC 4380"),
    // RFC 5180.
    ("2001:2::/48", "benchmarking", "RFC 5180"),
    // RFC 3849.
    ("2001:db8::/32", "documentation", "RFC 3849"),
    // RFC 9637.
    ("3fff::/20", "documentation", "RFC 9637"),
    // RFC 9602.
    ("5f00::/16", "segment routing (SRv6) SIDs", "RFC 9602"),
    // RFC 4193 and RFC 8190.
    ("fc00::/7", "unique-local", "RFC 4193"),
    // RFC 4291 §2.5.6.
    ("fe80::/10", "link-local", "RFC 4291"),
    // RFC 3879: site-local, deprecated.
    ("fec0::/10", "site-local (deprecated)", "RFC 3879"),
    // RFC 4291 §2.7.
    ("ff00::/8", "multicast", "RFC 4291"),
    // The rest of the IPv6 space outside 2000::/3 (global unicast) is
    // "Reserved by IETF" in the IANA IPv6 Address Space registry
    // (RFC 4291 §2.4), here in the fewest prefixes.
    ("::/3", "reserved by IETF", "RFC 4291"),
    ("4000::/2", "reserved by IETF", "RFC 4291"),
    ("8000::/2", "reserved by IETF", "RFC 4291"),
    ("c000::/3", "reserved by IETF", "RFC 4291"),
    ("e000::/4", "reserved by IETF", "RFC 4291"),
    ("f000::/5", "reserved by IETF", "RFC 4291"),
    ("f800::/6", "reserved by IETF", "RFC 4291"),
    ("fe00::/9", "reserved by IETF", "RFC 4291"),
];

/// [`SPECIAL_RANGES_TEXT`], parsed.
pub static SPECIAL_RANGES: LazyLock<Vec<SpecialRange>> = LazyLock::new(|| {
    SPECIAL_RANGES_TEXT
        .iter()
        .map(|&(net, name, rfc)| SpecialRange {
            net: net.parse().expect("a valid prefix"),
            name,
            rfc,
        })
        .collect()
});

/// Why `ip` is no webhook target, or `None` for a public address. The IPv6
/// forms that stand for an IPv4 address on the public internet, NAT64
/// `64:ff9b::/96` (RFC 6052) and 6to4 `2002::/16` (RFC 3056), are judged by
/// that IPv4 address; the other forms that embed one (IPv4-mapped and
/// -compatible, local-use NAT64, Teredo) are refused whole.
pub fn forbidden_network(ip: IpAddr) -> Option<Forbidden> {
    if let IpAddr::V6(v6) = ip
        && let Some(v4) = translated_ipv4(v6)
    {
        return range_of(IpAddr::V4(v4)).map(|range| Forbidden {
            range,
            embedded: Some(v4),
        });
    }
    range_of(ip).map(|range| Forbidden {
        range,
        embedded: None,
    })
}

/// The most specific range of the table holding `ip`.
fn range_of(ip: IpAddr) -> Option<&'static SpecialRange> {
    SPECIAL_RANGES
        .iter()
        .filter(|r| r.net.contains(&ip))
        .max_by_key(|r| r.net.prefix_len())
}

/// The IPv4 address a NAT64 (`64:ff9b::a.b.c.d`) or 6to4
/// (`2002:AABB:CCDD::/48`) address stands for.
fn translated_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let o = ip.octets();
    match ip.segments() {
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(Ipv4Addr::new(o[12], o[13], o[14], o[15])),
        [0x2002, ..] => Some(Ipv4Addr::new(o[2], o[3], o[4], o[5])),
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
    fn the_refusal_names_the_option_and_the_range() {
        let msg = check_address("10.1.2.3".parse().unwrap(), "10.1.2.3")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("--allow-private-endpoints"), "{msg}");
        assert!(msg.contains("10.0.0.0/8: private-use, RFC 1918"), "{msg}");
        let msg = check_address("64:ff9b::7f00:1".parse().unwrap(), "64:ff9b::7f00:1")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("stands for 127.0.0.1"), "{msg}");
    }

    /// The range that refuses `ip`.
    fn refusing_range(ip: &str) -> Option<IpNet> {
        forbidden_network(ip.parse().expect("an address")).map(|f| f.range.net)
    }

    fn net(text: &str) -> IpNet {
        text.parse().expect("a prefix")
    }

    /// One test per range of the table: an address in it is refused by it,
    /// and the table has no range without a test here.
    macro_rules! each_range_refuses {
        ($($test:ident: $ip:literal => $range:literal,)*) => {
            $(
                #[test]
                fn $test() {
                    assert_eq!(refusing_range($ip), Some(net($range)), "{}", $ip);
                }
            )*

            #[test]
            fn every_range_of_the_table_has_its_test() {
                let tested = [$(net($range)),*];
                for range in SPECIAL_RANGES.iter() {
                    assert!(tested.contains(&range.net), "{} has no test", range.net);
                }
                assert_eq!(tested.len(), SPECIAL_RANGES.len(), "a range is tested twice");
            }
        };
    }

    each_range_refuses! {
        this_network_is_refused: "0.1.2.3" => "0.0.0.0/8",
        private_use_10_is_refused: "10.255.0.1" => "10.0.0.0/8",
        shared_address_space_is_refused: "100.127.255.254" => "100.64.0.0/10",
        ipv4_loopback_is_refused: "127.0.0.2" => "127.0.0.0/8",
        ipv4_link_local_and_cloud_metadata_are_refused: "169.254.169.254" => "169.254.0.0/16",
        private_use_172_16_is_refused: "172.31.255.255" => "172.16.0.0/12",
        ietf_protocol_assignments_v4_are_refused: "192.0.0.171" => "192.0.0.0/24",
        test_net_1_is_refused: "192.0.2.7" => "192.0.2.0/24",
        the_deprecated_6to4_relay_anycast_is_refused: "192.88.99.1" => "192.88.99.0/24",
        private_use_192_168_is_refused: "192.168.1.1" => "192.168.0.0/16",
        ipv4_benchmarking_is_refused: "198.19.0.1" => "198.18.0.0/15",
        test_net_2_is_refused: "198.51.100.1" => "198.51.100.0/24",
        test_net_3_is_refused: "203.0.113.9" => "203.0.113.0/24",
        ipv4_multicast_is_refused: "239.255.255.250" => "224.0.0.0/4",
        ipv4_reserved_is_refused: "240.0.0.1" => "240.0.0.0/4",
        limited_broadcast_is_refused: "255.255.255.255" => "255.255.255.255/32",
        ipv6_unspecified_is_refused: "::" => "::/128",
        ipv6_loopback_is_refused: "::1" => "::1/128",
        ipv4_compatible_addresses_are_refused: "::8.8.8.8" => "::/96",
        ipv4_mapped_addresses_are_refused: "::ffff:8.8.8.8" => "::ffff:0:0/96",
        local_use_nat64_is_refused: "64:ff9b:1::808:808" => "64:ff9b:1::/48",
        discard_only_is_refused: "100::1" => "100::/64",
        the_dummy_ipv6_prefix_is_refused: "100:0:0:1::1" => "100:0:0:1::/64",
        ietf_protocol_assignments_v6_are_refused: "2001:1::1" => "2001::/23",
        teredo_is_refused: "2001:0:4136:e378:8000:63bf:3fff:fdd2" => "2001::/32",
        ipv6_benchmarking_is_refused: "2001:2::1" => "2001:2::/48",
        ipv6_documentation_2001_db8_is_refused: "2001:db8::1" => "2001:db8::/32",
        ipv6_documentation_3fff_is_refused: "3fff:fff::1" => "3fff::/20",
        srv6_sids_are_refused: "5f00::1" => "5f00::/16",
        unique_local_is_refused: "fd12:3456::1" => "fc00::/7",
        ipv6_link_local_is_refused: "fe80::1" => "fe80::/10",
        site_local_is_refused: "fec0::1" => "fec0::/10",
        ipv6_multicast_is_refused: "ff02::1" => "ff00::/8",
        reserved_below_global_unicast_is_refused: "1000::1" => "::/3",
        reserved_4000_is_refused: "4000::1" => "4000::/2",
        reserved_8000_is_refused: "8000::1" => "8000::/2",
        reserved_c000_is_refused: "c000::1" => "c000::/3",
        reserved_e000_is_refused: "e000::1" => "e000::/4",
        reserved_f000_is_refused: "f000::1" => "f000::/5",
        reserved_f800_is_refused: "f800::1" => "f800::/6",
        reserved_fe00_is_refused: "fe00::1" => "fe00::/9",
    }

    #[test]
    fn each_range_refuses_its_first_and_last_address_and_nothing_just_outside() {
        for range in SPECIAL_RANGES.iter() {
            for ip in [range.net.network(), range.net.broadcast()] {
                assert!(forbidden_network(ip).is_some(), "{ip} in {range}");
            }
        }
        for ip in [
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.88.98.255",
            "192.88.100.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2001:200::1",
            "2001:dba::1",
            "2003::1",
            "3ffe:ffff::1",
            "3fff:1000::1",
        ] {
            assert_eq!(refusing_range(ip), None, "{ip} is public");
        }
    }

    #[test]
    fn globally_reachable_registry_entries_pass() {
        for ip in [
            "192.31.196.1",
            "192.52.193.1",
            "192.175.48.1",
            "2620:4f:8000::1",
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
        ] {
            assert_eq!(refusing_range(ip), None, "{ip} is globally reachable");
        }
    }

    #[test]
    fn every_form_that_embeds_a_private_or_loopback_ipv4_is_refused() {
        for ip in [
            // IPv4-mapped, in each spelling.
            "::ffff:127.0.0.1",
            "::ffff:7f00:1",
            "0:0:0:0:0:ffff:7f00:0001",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            // IPv4-compatible.
            "::127.0.0.1",
            "::10.0.0.1",
            "::192.168.0.1",
            // NAT64, well-known prefix: judged by the embedded address.
            "64:ff9b::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "64:ff9b::169.254.169.254",
            // NAT64, local-use prefix: as a /96 and RFC 6052's /48 layout.
            "64:ff9b:1::127.0.0.1",
            "64:ff9b:1::10.0.0.1",
            "64:ff9b:1:7f00:0:100::",
            "64:ff9b:1:a00:0:100::",
            // 6to4: judged by the embedded address.
            "2002:7f00:1::",
            "2002:a00:1::1",
            "2002:c0a8:101::1",
            // Teredo: server 127.0.0.1; client 10.0.0.1 (obfuscated).
            "2001:0:7f00:1::1",
            "2001:0:4136:e378:8000:63bf:f5ff:fffe",
        ] {
            assert!(refusing_range(ip).is_some(), "{ip} should be refused");
        }
        assert_eq!(
            forbidden_network("2002:a00:1::1".parse().unwrap()).map(|f| f.embedded),
            Some(Some(Ipv4Addr::new(10, 0, 0, 1)))
        );
        assert_eq!(
            refusing_range("64:ff9b::127.0.0.1"),
            Some(net("127.0.0.0/8"))
        );
    }
}
