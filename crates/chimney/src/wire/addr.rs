//! Which addresses a TCP segment may come from or go to. TCP is unicast: a segment to or from
//! a broadcast, multicast, unspecified or loopback address, or to or from port 0, is a
//! "martian" (RFC 1122 §3.2.1.3 and §4.2.3.10, RFC 4291 §2.5.5.2 and §2.7). Answering one
//! with a SYN-ACK or RST would reflect traffic at a whole subnet or forge a source that
//! cannot exist, so the engine drops such input without a reply and counts it.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address prefix the target is on (its TUN network): its IPv4 directed broadcast and
/// network addresses are not unicast (RFC 919, RFC 922).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    /// Any address inside the prefix.
    pub addr: IpAddr,
    /// Prefix length in bits.
    pub len: u8,
}

impl Prefix {
    /// Whether `a` is this IPv4 prefix's network or directed broadcast address (never for
    /// /31 and /32, which have neither, RFC 3021, nor for IPv6, which has no broadcast).
    pub fn is_broadcast_or_network(&self, a: IpAddr) -> bool {
        let (IpAddr::V4(p), IpAddr::V4(a)) = (self.addr, a) else { return false };
        if self.len == 0 || self.len >= 31 {
            return false;
        }
        let mask = u32::MAX << (32 - u32::from(self.len));
        let (p, a) = (u32::from(p), u32::from(a));
        let host = a & !mask;
        a & mask == p & mask && (host == 0 || host == !mask)
    }
}

/// Whether an IPv4 address can be a TCP endpoint: not "this network" (0/8), loopback
/// (127/8), multicast (224/4), reserved (240/4) or the limited broadcast.
fn v4_unicast(a: Ipv4Addr) -> bool {
    let o = a.octets();
    !(o[0] == 0 || o[0] == 127 || o[0] >= 224)
}

/// Whether an IPv6 address can be a TCP endpoint on the wire: not unspecified, loopback,
/// multicast, or IPv4-mapped (RFC 4291 §2.5.5.2: such addresses never appear in a packet).
fn v6_unicast(a: Ipv6Addr) -> bool {
    !(a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.to_ipv4_mapped().is_some())
}

/// Whether `a` can be a TCP endpoint, given the prefixes the target is on.
pub fn is_unicast(a: IpAddr, prefixes: &[Prefix]) -> bool {
    let class_ok = match a {
        IpAddr::V4(v4) => v4_unicast(v4),
        IpAddr::V6(v6) => v6_unicast(v6),
    };
    class_ok && !prefixes.iter().any(|p| p.is_broadcast_or_network(a))
}

/// Whether a segment from `src:src_port` to `dst:dst_port` must be dropped unanswered: either
/// end is not a unicast address, or a port is 0.
pub fn is_martian(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16, prefixes: &[Prefix]) -> bool {
    src_port == 0 || dst_port == 0 || !is_unicast(src, prefixes) || !is_unicast(dst, prefixes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_classes() {
        let net = [Prefix { addr: v4("198.18.0.1"), len: 24 }];
        for bad in ["0.0.0.0", "0.1.2.3", "127.0.0.1", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255"] {
            assert!(!is_unicast(v4(bad), &net), "{bad}");
        }
        // The prefix's directed broadcast and network address; another /24's are unicast
        // here (we cannot know its length).
        assert!(!is_unicast(v4("198.18.0.255"), &net));
        assert!(!is_unicast(v4("198.18.0.0"), &net));
        assert!(is_unicast(v4("198.18.1.255"), &net));
        for good in ["198.18.0.2", "198.18.0.254", "10.0.0.1", "223.255.255.254"] {
            assert!(is_unicast(v4(good), &net), "{good}");
        }
        // /31 and /32 have no broadcast address (RFC 3021).
        let p31 = [Prefix { addr: v4("198.18.0.0"), len: 31 }];
        assert!(is_unicast(v4("198.18.0.0"), &p31) && is_unicast(v4("198.18.0.1"), &p31));
    }

    #[test]
    fn ipv6_classes() {
        for bad in ["::", "::1", "ff02::1", "ff05::2", "::ffff:198.18.0.1"] {
            assert!(!is_unicast(v4(bad), &[]), "{bad}");
        }
        for good in ["fd00::1", "fe80::1", "2001:db8::1"] {
            assert!(is_unicast(v4(good), &[]), "{good}");
        }
        // No broadcast in IPv6: a prefix changes nothing.
        let p = [Prefix { addr: v4("fd00::1"), len: 64 }];
        assert!(is_unicast(v4("fd00::ffff:ffff:ffff:ffff"), &p));
    }

    #[test]
    fn ports() {
        let (a, b) = (v4("198.18.0.1"), v4("198.18.0.2"));
        assert!(is_martian(a, 0, b, 80, &[]));
        assert!(is_martian(a, 1234, b, 0, &[]));
        assert!(!is_martian(a, 1234, b, 80, &[]));
        assert!(is_martian(v4("224.0.0.1"), 1234, b, 80, &[]));
        assert!(is_martian(a, 1234, v4("255.255.255.255"), 80, &[]));
    }
}
