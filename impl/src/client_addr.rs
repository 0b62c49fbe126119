//! Who is calling: the client's address behind the proxies this deployment trusts.
//!
//! `X-Forwarded-For` is believed only as far as it was written by a trusted proxy
//! (`TRUSTED_PROXIES`): walking it from the right, each hop appended by a trusted address
//! is skipped, and the first untrusted one is the client. Without trusted proxies the
//! socket peer is the client, whatever the header says, so a caller cannot pick the
//! address its limits are counted under. The same address is what WeChat Pay gets as
//! `spbill_create_ip`.

use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Comma-separated CIDRs (a bare address is a /32 or /128).
    pub fn parse(s: &str) -> Result<Self, String> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<IpNet>()
                    .or_else(|_| p.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{p:?} is not a CIDR or an address"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address, given the socket peer and every `X-Forwarded-For` header
    /// value in the order received.
    pub fn client_ip<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl IntoIterator<Item = &'a str>,
    ) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<&str> = forwarded_for
            .into_iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            // A hop that is not an address was not written by a proxy we trust: stop at
            // the last one that was.
            let Ok(ip) = hop.parse::<IpAddr>().map(canonical) else {
                return client;
            };
            client = ip;
            if !self.trusts(ip) {
                return ip;
            }
        }
        client
    }
}

/// IPv4 addresses arriving as IPv4-mapped IPv6 (a dual-stack listener) compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn the_header_counts_only_behind_trusted_proxies() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_ip(ip("203.0.113.9"), ["1.2.3.4"]),
            ip("203.0.113.9")
        );

        let t = TrustedProxies::parse("10.0.0.0/8, 192.168.1.7").expect("parse");
        // Not from a trusted proxy: the header is the caller's own words.
        assert_eq!(
            t.client_ip(ip("203.0.113.9"), ["1.2.3.4"]),
            ip("203.0.113.9")
        );
        // From the proxy: the rightmost untrusted hop, whatever the client prepended.
        assert_eq!(
            t.client_ip(ip("10.1.1.1"), ["6.6.6.6, 198.51.100.2", "10.2.2.2"]),
            ip("198.51.100.2")
        );
        assert_eq!(
            t.client_ip(ip("192.168.1.7"), ["198.51.100.3"]),
            ip("198.51.100.3")
        );
        // Only trusted hops: the leftmost of them.
        assert_eq!(t.client_ip(ip("10.1.1.1"), ["10.3.3.3"]), ip("10.3.3.3"));
        // No header, or garbage where an address should be.
        assert_eq!(t.client_ip(ip("10.1.1.1"), []), ip("10.1.1.1"));
        assert_eq!(
            t.client_ip(ip("10.1.1.1"), ["198.51.100.4, junk"]),
            ip("10.1.1.1")
        );
        assert_eq!(
            t.client_ip(ip("::ffff:10.1.1.1"), ["198.51.100.5"]),
            ip("198.51.100.5")
        );
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/8,,x"] {
            assert!(TrustedProxies::parse(bad).is_err(), "{bad}");
        }
    }
}
