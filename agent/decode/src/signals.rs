//! Known encrypted-DNS (DoH/DoT/DoQ) endpoints: a connection to one of them means the names
//! this host resolves over it are invisible to DNS capture — a signal on its own.
//!
//! Names match at label boundaries (`dns.google` matches `dns.google` and `x.dns.google`, not
//! `evildns.google`). IPs are the providers' published anycast resolver addresses. DoT (853)
//! and DoQ (853/UDP) to any address is reported as well, since those ports mean encrypted DNS.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Resolver names (suffixes at label boundaries) and their provider.
const NAMES: &[(&str, &str)] = &[
    ("cloudflare-dns.com", "Cloudflare"),
    ("one.one.one.one", "Cloudflare"),
    ("1dot1dot1dot1.cloudflare-dns.com", "Cloudflare"),
    ("dns.google", "Google"),
    ("dns.google.com", "Google"),
    ("8888.google", "Google"),
    ("dns.quad9.net", "Quad9"),
    ("dns9.quad9.net", "Quad9"),
    ("dns10.quad9.net", "Quad9"),
    ("dns11.quad9.net", "Quad9"),
    ("dns.nextdns.io", "NextDNS"),
    ("nextdns.io", "NextDNS"),
    ("dns.adguard.com", "AdGuard"),
    ("dns.adguard-dns.com", "AdGuard"),
    ("dns-family.adguard.com", "AdGuard"),
    ("unfiltered.adguard-dns.com", "AdGuard"),
    ("mozilla.cloudflare-dns.com", "Mozilla (Cloudflare)"),
    ("doh.xfinity.com", "Comcast"),
    ("dns.opendns.com", "Cisco OpenDNS"),
    ("doh.opendns.com", "Cisco OpenDNS"),
    ("doh.cleanbrowsing.org", "CleanBrowsing"),
    ("dns.controld.com", "Control D"),
    ("freedns.controld.com", "Control D"),
    ("doh.mullvad.net", "Mullvad"),
    ("dns.mullvad.net", "Mullvad"),
    ("doh.dns.sb", "DNS.SB"),
    ("dns.twnic.tw", "TWNIC"),
    ("doh.libredns.gr", "LibreDNS"),
    ("dns.alidns.com", "AliDNS"),
    ("doh.pub", "DNSPod"),
    ("dns.pub", "DNSPod"),
];

/// Published resolver addresses and their provider.
const IPS: &[(IpAddr, &str)] = &[
    (v4(1, 1, 1, 1), "Cloudflare"),
    (v4(1, 0, 0, 1), "Cloudflare"),
    (v4(1, 1, 1, 2), "Cloudflare"),
    (v4(1, 0, 0, 2), "Cloudflare"),
    (v4(1, 1, 1, 3), "Cloudflare"),
    (v4(1, 0, 0, 3), "Cloudflare"),
    (v6(0x2606, 0x4700, 0x4700, 0x1111), "Cloudflare"),
    (v6(0x2606, 0x4700, 0x4700, 0x1001), "Cloudflare"),
    (v4(8, 8, 8, 8), "Google"),
    (v4(8, 8, 4, 4), "Google"),
    (v6(0x2001, 0x4860, 0x4860, 0x8888), "Google"),
    (v6(0x2001, 0x4860, 0x4860, 0x8844), "Google"),
    (v4(9, 9, 9, 9), "Quad9"),
    (v4(149, 112, 112, 112), "Quad9"),
    (v4(9, 9, 9, 10), "Quad9"),
    (v4(9, 9, 9, 11), "Quad9"),
    (v6(0x2620, 0x00fe, 0, 0xfe), "Quad9"),
    (v6(0x2620, 0x00fe, 0, 0x09), "Quad9"),
    (v4(94, 140, 14, 14), "AdGuard"),
    (v4(94, 140, 15, 15), "AdGuard"),
    (v4(94, 140, 14, 140), "AdGuard"),
    (v4(94, 140, 14, 141), "AdGuard"),
    (v4(45, 90, 28, 0), "NextDNS"),
    (v4(45, 90, 30, 0), "NextDNS"),
    (v4(208, 67, 222, 222), "Cisco OpenDNS"),
    (v4(208, 67, 220, 220), "Cisco OpenDNS"),
    (v4(76, 76, 2, 0), "Control D"),
    (v4(76, 76, 10, 0), "Control D"),
    (v4(194, 242, 2, 2), "Mullvad"),
    (v4(185, 228, 168, 9), "CleanBrowsing"),
    (v4(223, 5, 5, 5), "AliDNS"),
    (v4(223, 6, 6, 6), "AliDNS"),
    (v4(1, 12, 12, 12), "DNSPod"),
    (v4(120, 53, 53, 53), "DNSPod"),
];

const fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

const fn v6(a: u16, b: u16, c: u16, d: u16) -> IpAddr {
    // The resolvers' addresses are ::a:b:c:d-shaped prefixes with short tails:
    // 2606:4700:4700::1111 etc.
    IpAddr::V6(Ipv6Addr::new(a, b, c, 0, 0, 0, 0, d))
}

/// Port of DNS over TLS / DNS over QUIC.
pub const DOT_PORT: u16 = 853;

/// Whether this (name, ip, port) is a known encrypted-DNS endpoint; the provider when so.
/// `name` is an SNI or a resolved name; `ip`/`port` the destination.
pub fn encrypted_dns_endpoint(
    name: Option<&str>,
    ip: Option<IpAddr>,
    port: u16,
) -> Option<&'static str> {
    if let Some(n) = name {
        let n = n.trim_end_matches('.');
        for (suffix, provider) in NAMES {
            if label_suffix(n, suffix) {
                return Some(provider);
            }
        }
    }
    if let Some(ip) = ip
        && matches!(port, 443 | DOT_PORT)
        && let Some((_, provider)) = IPS.iter().find(|(a, _)| *a == ip)
    {
        return Some(provider);
    }
    if port == DOT_PORT {
        return Some("DNS over TLS/QUIC (port 853)");
    }
    None
}

/// `name` equals `suffix` or ends with `.suffix` (ASCII case-insensitive).
fn label_suffix(name: &str, suffix: &str) -> bool {
    if name.len() == suffix.len() {
        return name.eq_ignore_ascii_case(suffix);
    }
    name.len() > suffix.len()
        && name.is_char_boundary(name.len() - suffix.len())
        && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_at_label_boundaries() {
        assert_eq!(
            encrypted_dns_endpoint(Some("dns.google"), None, 443),
            Some("Google")
        );
        assert_eq!(
            encrypted_dns_endpoint(Some("mozilla.cloudflare-dns.com"), None, 443),
            Some("Cloudflare")
        );
        assert_eq!(
            encrypted_dns_endpoint(Some("evildns.google"), None, 443),
            None
        );
        assert_eq!(
            encrypted_dns_endpoint(Some("DNS.Quad9.NET."), None, 443),
            Some("Quad9")
        );
        assert_eq!(
            encrypted_dns_endpoint(Some("api.openai.com"), None, 443),
            None
        );
    }

    #[test]
    fn ips_and_ports() {
        assert_eq!(
            encrypted_dns_endpoint(None, Some(v4(1, 1, 1, 1)), 443),
            Some("Cloudflare")
        );
        assert_eq!(
            encrypted_dns_endpoint(None, "2606:4700:4700::1111".parse().ok(), 443),
            Some("Cloudflare")
        );
        // Plain DNS to 8.8.8.8 is not encrypted DNS.
        assert_eq!(encrypted_dns_endpoint(None, Some(v4(8, 8, 8, 8)), 53), None);
        assert!(encrypted_dns_endpoint(None, Some(v4(192, 0, 2, 1)), 853).is_some());
        assert_eq!(
            encrypted_dns_endpoint(None, Some(v4(192, 0, 2, 1)), 443),
            None
        );
    }
}
