//! Wire formats: IPv4/IPv6 + TCP segments in and out.
//!
//! Parsing uses `etherparse` for the IP layer (IPv4 with IHL and total length, IPv6 with its
//! extension-header chain, fragment detection) and for the TCP header slice; options and
//! checksums are ours: etherparse's option iterator stops at the first unknown option, where
//! RFC 9293 says to skip it by its length, and verifying a checksum should not build a
//! header copy. Emitting is ours too (ACK/RST/FIN/SYN-ACK with options, IPv4 DF set and IP
//! IDs from the target's upper half, spec §7.3), into a caller's buffer, so nothing allocates.
//!
//! Guarantee: [`parse`] never panics on any input; every rejection is a [`WireError`] that a
//! drop counter can name.

pub mod addr;
mod checksum;
mod options;
mod seq;
pub mod vnet;

pub use addr::Prefix;
pub use checksum::{internet_checksum, pseudo_header_sum, Checksum};
pub use options::{SackBlocks, TcpOptions};
pub use seq::SeqNum;

use core::net::IpAddr;

use etherparse::{IpNumber, IpSlice, TcpSlice};

/// TCP flag bits (byte 13 of the header, the six classic ones), as a type: combine with `|`,
/// test with [`Flags::contains`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// No flag.
    pub const NONE: Flags = Flags(0);

    /// Whether every flag of `f` is set.
    pub fn contains(self, f: Flags) -> bool {
        self.0 & f.0 == f.0
    }

    /// Whether any flag of `f` is set.
    pub fn intersects(self, f: Flags) -> bool {
        self.0 & f.0 != 0
    }

    /// These flags without those of `f`.
    pub fn without(self, f: Flags) -> Flags {
        Flags(self.0 & !f.0)
    }

    /// The header byte.
    pub fn bits(self) -> u8 {
        self.0
    }
}

impl core::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, o: Flags) -> Flags {
        Flags(self.0 | o.0)
    }
}

impl core::ops::BitOrAssign for Flags {
    fn bitor_assign(&mut self, o: Flags) {
        self.0 |= o.0;
    }
}

impl core::fmt::Debug for Flags {
    /// `SYN|ACK`, as tcpdump would name them.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        const NAMES: [(Flags, &str); 6] = [
            (flags::FIN, "FIN"),
            (flags::SYN, "SYN"),
            (flags::RST, "RST"),
            (flags::PSH, "PSH"),
            (flags::ACK, "ACK"),
            (flags::URG, "URG"),
        ];
        let names: Vec<&str> = NAMES.iter().filter(|(b, _)| self.contains(*b)).map(|(_, n)| *n).collect();
        if names.is_empty() {
            write!(f, "{:#04x}", self.0)
        } else {
            write!(f, "{}", names.join("|"))
        }
    }
}

/// The TCP flags by name.
pub mod flags {
    use super::Flags;
    /// FIN.
    pub const FIN: Flags = Flags(0x01);
    /// SYN.
    pub const SYN: Flags = Flags(0x02);
    /// RST.
    pub const RST: Flags = Flags(0x04);
    /// PSH.
    pub const PSH: Flags = Flags(0x08);
    /// ACK.
    pub const ACK: Flags = Flags(0x10);
    /// URG.
    pub const URG: Flags = Flags(0x20);
}

/// Whether a packet's TCP checksum is to be verified, or is vouched for by the local kernel
/// (a GSO super-packet or a partial checksum read from a TUN with `virtio_net_hdr`, see
/// [`vnet::VnetHdr::check`]), where the bytes on the wire were never summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpChecksum {
    /// Verify it (every packet from a network).
    Verify,
    /// Do not: the local kernel vouches for the packet (and a partial checksum would fail).
    VouchedByKernel,
}

/// Why a packet was not accepted as a TCP segment. Each variant has a drop counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum WireError {
    /// Not a well-formed IPv4/IPv6 packet (short, bad version, lengths disagree).
    BadIp,
    /// IPv4 header checksum wrong.
    BadIpChecksum,
    /// IP payload is not TCP (nor an IP control message): handed to the host path.
    NotTcp,
    /// An ICMP, ICMPv6 or IGMP message: the host's business (e.g. the kernel's own IPv6
    /// router solicitations and MLD reports when the TUN link comes up), handed to the host
    /// path, never a drop.
    Control,
    /// An IP fragment: not processed by the target (spec §6.6), handed to the host path.
    Fragment,
    /// IPv4 options present: not processed by the target (spec §6.6), handed to the host path.
    Ipv4Options,
    /// TCP header short or data offset out of range.
    BadTcpHeader,
    /// TCP checksum wrong.
    BadTcpChecksum,
    /// A TCP option with a length that does not fit.
    BadTcpOption,
    /// Impossible flag combination (SYN+FIN, SYN+RST, no flags at all).
    BadFlags,
    /// An IPv6 routing header with segments left (RFC 8200 §4.4): the packet is not at its
    /// final destination yet (type 0 is deprecated, RFC 5095): not processed.
    Ipv6Routing,
    /// An IPv6 hop-by-hop or destination option we do not know whose action bits say
    /// "discard" (RFC 8200 §4.2).
    Ipv6OptionDiscard,
    /// A `virtio_net_hdr` that does not describe its packet (unknown flags or GSO type, GSO
    /// without a partial checksum, a checksum offset that is not TCP's, lengths past the end).
    BadVnetHdr,
    /// To or from an address that is not unicast (broadcast, the prefix's directed broadcast,
    /// multicast, unspecified, loopback, IPv4-mapped) or port 0: dropped without a reply, so
    /// the target is never a reflector ([`addr::is_martian`]).
    Martian,
}

impl WireError {
    /// Every reason, for counter tables.
    pub const ALL: [WireError; 14] = [
        WireError::BadIp,
        WireError::BadIpChecksum,
        WireError::NotTcp,
        WireError::Control,
        WireError::Fragment,
        WireError::Ipv4Options,
        WireError::BadTcpHeader,
        WireError::BadTcpChecksum,
        WireError::BadTcpOption,
        WireError::BadFlags,
        WireError::BadVnetHdr,
        WireError::Ipv6Routing,
        WireError::Ipv6OptionDiscard,
        WireError::Martian,
    ];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            WireError::BadIp => "bad_ip",
            WireError::BadIpChecksum => "bad_ip_checksum",
            WireError::NotTcp => "not_tcp",
            WireError::Control => "icmp_igmp",
            WireError::Fragment => "ip_fragment",
            WireError::Ipv4Options => "ipv4_options",
            WireError::BadTcpHeader => "bad_tcp_header",
            WireError::BadTcpChecksum => "bad_tcp_checksum",
            WireError::BadTcpOption => "bad_tcp_option",
            WireError::BadFlags => "bad_flags",
            WireError::BadVnetHdr => "bad_vnet_hdr",
            WireError::Ipv6Routing => "ipv6_routing",
            WireError::Ipv6OptionDiscard => "ipv6_option_discard",
            WireError::Martian => "martian",
        }
    }

    /// Whether the packet belongs on the host's ordinary path rather than being dropped.
    pub fn goes_to_host(self) -> bool {
        matches!(self, WireError::Fragment | WireError::Ipv4Options | WireError::NotTcp | WireError::Control)
    }

    /// The error for an IP payload of protocol `p` that is not TCP.
    fn not_tcp(p: IpNumber) -> WireError {
        if p == IpNumber::ICMP || p == IpNumber::IPV6_ICMP || p == IpNumber::IGMP {
            WireError::Control
        } else {
            WireError::NotTcp
        }
    }
}

/// A TCP segment with its IP addresses, borrowing its payload: what [`parse`] returns and
/// what [`Segment::emit`] writes (one representation both ways).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: SeqNum,
    /// Acknowledgment number (meaningful with ACK).
    pub ack: SeqNum,
    /// Flags.
    pub flags: Flags,
    /// Window field (unscaled on the wire).
    pub window: u16,
    /// Urgent pointer.
    pub urgent: u16,
    /// Options we understand.
    pub options: TcpOptions,
    /// Payload.
    pub payload: &'a [u8],
    /// IPv4 identification (0 for IPv6; the target sends 0x8000..=0xFFFF, spec §7.3).
    pub ip_id: u16,
}

/// The name the emitting side used; the same type as [`Segment`].
pub type SegmentRepr<'a> = Segment<'a>;

impl Segment<'static> {
    /// A segment without payload or options from `local` to `remote` (ACK, RST, FIN, SYN-ACK
    /// before its options): IP ID 0 (the host's), no urgent pointer. Set the other fields on
    /// the result.
    pub fn control(
        local: core::net::SocketAddr,
        remote: core::net::SocketAddr,
        seq: SeqNum,
        ack: SeqNum,
        flags: Flags,
        window: u16,
    ) -> Segment<'static> {
        Segment {
            src: local.ip(),
            dst: remote.ip(),
            src_port: local.port(),
            dst_port: remote.port(),
            seq,
            ack,
            flags,
            window,
            options: TcpOptions::default(),
            payload: &[],
            urgent: 0,
            ip_id: 0,
        }
    }
}

impl Segment<'_> {
    /// Whether flag `f` is set.
    pub fn has(&self, f: Flags) -> bool {
        self.flags.intersects(f)
    }

    /// Sequence space the segment occupies (payload + SYN + FIN).
    pub fn seq_len(&self) -> u32 {
        self.payload.len() as u32 + u32::from(self.has(flags::SYN)) + u32::from(self.has(flags::FIN))
    }
}

/// Parses an IPv4 or IPv6 packet carrying a TCP segment, verifying both checksums.
pub fn parse(packet: &[u8]) -> Result<Segment<'_>, WireError> {
    parse_with(packet, TcpChecksum::Verify)
}

/// Like [`parse`], optionally trusting the TCP checksum (a driver whose kernel already
/// verified it, e.g. `virtio_net_hdr` with `DATA_VALID`).
pub fn parse_with(packet: &[u8], checksum: TcpChecksum) -> Result<Segment<'_>, WireError> {
    let ip = IpSlice::from_slice(packet).map_err(|_| WireError::BadIp)?;
    let (src, dst, pseudo, ip_id) = match &ip {
        IpSlice::Ipv4(v4) => {
            let h = v4.header();
            // The header checksum first: a corrupted header is never handed to the host path.
            if internet_checksum(h.slice()) != 0 {
                return Err(WireError::BadIpChecksum);
            }
            if !h.options().is_empty() {
                return Err(WireError::Ipv4Options);
            }
            let (s, d) = (h.source(), h.destination());
            (IpAddr::from(s), IpAddr::from(d), PseudoAddrs::V4(s, d), h.identification())
        }
        IpSlice::Ipv6(v6) => {
            let h = v6.header();
            if h.payload_length() == 0 {
                // Without a Jumbo Payload option (RFC 2675: only for payloads over 65,535
                // bytes, which no link here carries) a zero payload length is an empty packet,
                // not "the rest of the frame": a segment behind it must not be processed.
                return Err(WireError::BadIp);
            }
            let (s, d) = (h.source(), h.destination());
            (IpAddr::from(s), IpAddr::from(d), PseudoAddrs::V6(s, d), 0)
        }
    };
    // The headers before a fragment header are in every fragment and must pass before the
    // fragment goes to the host for reassembly (those after it are checked in the
    // reassembled packet).
    let fragmenting = match &ip {
        IpSlice::Ipv4(_) => ip.is_fragmenting_payload(),
        IpSlice::Ipv6(_) => ipv6_extensions(packet)?,
    };
    if fragmenting {
        return Err(WireError::Fragment);
    }
    let payload = ip.payload();
    if payload.ip_number != IpNumber::TCP {
        return Err(WireError::not_tcp(payload.ip_number));
    }
    let bytes = payload.payload;
    let tcp = TcpSlice::from_slice(bytes).map_err(|_| WireError::BadTcpHeader)?;
    if checksum == TcpChecksum::Verify {
        let sum = match pseudo {
            PseudoAddrs::V4(s, d) => pseudo_header_sum(&s, &d, bytes.len()),
            PseudoAddrs::V6(s, d) => pseudo_header_sum(&s, &d, bytes.len()),
        };
        if Checksum::from_sum(sum).add_bytes(bytes).finish() != 0 {
            return Err(WireError::BadTcpChecksum);
        }
    }
    segment(src, dst, ip_id, bytes, tcp.options(), tcp.payload())
}

/// Walks an IPv6 packet's extension-header chain by RFC 8200 whatever the parser below did:
/// a routing header with segments left means the packet is not at its final destination
/// (§4.4; so the destination in the fixed header, used in the TCP checksum, is the final one,
/// §8.1), and an unknown option whose two high bits say "discard" discards the packet
/// (§4.2). Returns whether the packet is a fragment (offset or M set), whose later headers are
/// fragment data, checked once reassembled.
fn ipv6_extensions(p: &[u8]) -> Result<bool, WireError> {
    const HOP_BY_HOP: u8 = 0;
    const ROUTING: u8 = 43;
    const FRAGMENT: u8 = 44;
    const AUTH: u8 = 51;
    const DEST_OPTS: u8 = 60;
    let (mut next, mut at) = (*p.get(6).ok_or(WireError::BadIp)?, 40usize);
    loop {
        let h = p.get(at..at + 8).ok_or(WireError::BadIp)?;
        if next == FRAGMENT {
            // RFC 8200 §4.5: offset in the top 13 bits of bytes 2-3, M in the lowest (read
            // here: etherparse 0.19 reads them in IPv4's order). A real fragment: what follows
            // is fragment data, checked after reassembly; an atomic one is walked through.
            let word = u16::from_be_bytes([h[2], h[3]]);
            if word >> 3 != 0 || word & 1 != 0 {
                return Ok(true);
            }
        }
        let len = match next {
            HOP_BY_HOP | DEST_OPTS | ROUTING => (usize::from(h[1]) + 1) * 8,
            FRAGMENT => 8,
            AUTH => (usize::from(h[1]) + 2) * 4,
            _ => return Ok(false),
        };
        let body = p.get(at..at + len).ok_or(WireError::BadIp)?;
        match next {
            HOP_BY_HOP | DEST_OPTS => {
                let mut i = 2;
                while i < body.len() {
                    let kind = body[i];
                    if kind == 0 {
                        i += 1; // Pad1
                        continue;
                    }
                    let olen = usize::from(*body.get(i + 1).ok_or(WireError::BadIp)?);
                    // PadN (1) is the only multi-byte option we know; an unknown one is
                    // skipped when its action bits are 00 and discards the packet otherwise.
                    if kind != 1 && kind >> 6 != 0 {
                        return Err(WireError::Ipv6OptionDiscard);
                    }
                    i += 2 + olen;
                }
                if i > body.len() {
                    return Err(WireError::BadIp);
                }
            }
            ROUTING if h[3] != 0 => return Err(WireError::Ipv6Routing),
            _ => {}
        }
        next = h[0];
        at += len;
    }
}

/// The TCP part of a [`Segment`], from the header bytes (`tcp`), its options and payload.
fn segment<'a>(
    src: IpAddr,
    dst: IpAddr,
    ip_id: u16,
    tcp: &[u8],
    options: &[u8],
    payload: &'a [u8],
) -> Result<Segment<'a>, WireError> {
    let fl = Flags(tcp[13] & 0x3F);
    if fl == Flags::NONE || (fl.contains(flags::SYN) && fl.intersects(flags::FIN | flags::RST)) {
        return Err(WireError::BadFlags);
    }
    let options = TcpOptions::parse(options).map_err(|_| WireError::BadTcpOption)?;
    let u16_at = |i: usize| u16::from_be_bytes([tcp[i], tcp[i + 1]]);
    let u32_at = |i: usize| u32::from_be_bytes([tcp[i], tcp[i + 1], tcp[i + 2], tcp[i + 3]]);
    Ok(Segment {
        src,
        dst,
        src_port: u16_at(0),
        dst_port: u16_at(2),
        seq: SeqNum(u32_at(4)),
        ack: SeqNum(u32_at(8)),
        flags: fl,
        window: u16_at(14),
        urgent: u16_at(18),
        options,
        payload,
        ip_id,
    })
}

/// Bytes of the IP and TCP headers at the front of packet `p`, from the IPv4 IHL (or IPv6's
/// fixed 40 bytes) and the TCP data offset; `None` when the version is unknown or the packet
/// is too short to tell. It trusts the header fields: a driver uses it to predict where the
/// next packet's payload starts, and [`parse_headers`] checks that prediction.
pub fn headers_len(p: &[u8]) -> Option<usize> {
    let ip = match p.first().map(|b| b >> 4) {
        Some(4) => usize::from(p[0] & 0x0F) * 4,
        Some(6) => 40,
        _ => return None,
    };
    p.get(ip + 12).map(|b| ip + usize::from(b >> 4) * 4)
}

/// Parses the headers of a packet whose payload is somewhere else (read straight into a
/// posted buffer: direct placement). `head` holds exactly the IP and TCP headers; the packet
/// is `packet_len` bytes long. Returns the segment (with an empty payload) and the payload
/// length. The TCP checksum is not verified (only packets whose checksum the local kernel
/// vouches for are placed directly); every other check of [`parse_with`] is made, and a
/// header that does not end exactly where the payload starts is [`WireError::BadTcpHeader`].
pub fn parse_headers(head: &[u8], packet_len: usize) -> Result<(Segment<'static>, usize), WireError> {
    let (src, dst, ip_len, ip_id) = match head.first().map(|b| b >> 4) {
        Some(4) => {
            let h = etherparse::Ipv4HeaderSlice::from_slice(head).map_err(|_| WireError::BadIp)?;
            if usize::from(h.total_len()) != packet_len {
                return Err(WireError::BadIp);
            }
            if !h.options().is_empty() {
                return Err(WireError::Ipv4Options);
            }
            if internet_checksum(h.slice()) != 0 {
                return Err(WireError::BadIpChecksum);
            }
            if h.is_fragmenting_payload() {
                return Err(WireError::Fragment);
            }
            if h.protocol() != IpNumber::TCP {
                return Err(WireError::not_tcp(h.protocol()));
            }
            (IpAddr::from(h.source()), IpAddr::from(h.destination()), h.slice().len(), h.identification())
        }
        Some(6) => {
            let h = etherparse::Ipv6HeaderSlice::from_slice(head).map_err(|_| WireError::BadIp)?;
            if usize::from(h.payload_length()) + 40 != packet_len {
                return Err(WireError::BadIp);
            }
            if h.next_header() != IpNumber::TCP {
                // Extension headers (or not TCP): the ordinary parser decides.
                return Err(WireError::not_tcp(h.next_header()));
            }
            (IpAddr::from(h.source_addr()), IpAddr::from(h.destination_addr()), 40, 0)
        }
        _ => return Err(WireError::BadIp),
    };
    let tcp = etherparse::TcpHeaderSlice::from_slice(&head[ip_len..]).map_err(|_| WireError::BadTcpHeader)?;
    let hdr = tcp.slice();
    if ip_len + hdr.len() != head.len() || head.len() > packet_len {
        return Err(WireError::BadTcpHeader);
    }
    let seg = segment(src, dst, ip_id, hdr, &hdr[20..], &[])?;
    Ok((seg, packet_len - head.len()))
}

enum PseudoAddrs {
    V4([u8; 4], [u8; 4]),
    V6([u8; 16], [u8; 16]),
}

impl Segment<'_> {
    /// Bytes [`SegmentRepr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        let ip = if self.src.is_ipv4() { 20 } else { 40 };
        ip + 20 + self.options.encoded_len() + self.payload.len()
    }

    /// Writes the packet (IP header, TCP header with options, payload) into `out`, replacing
    /// its contents. Mixed address families are written as IPv6 with IPv4-mapped addresses.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let tcp_start = self.emit_headers(out, self.payload.len());
        out.extend_from_slice(self.payload);
        self.finish_checksum(out, tcp_start, false);
    }

    /// Like [`SegmentRepr::emit`], with a *partial* TCP checksum (CHECKSUM_PARTIAL): the
    /// checksum field holds only the folded pseudo-header sum, for the kernel to complete
    /// (and, for a GSO super-packet, to redo per segment). Written with a `virtio_net_hdr`
    /// that says `NEEDS_CSUM`. The payload is not read for a checksum: a super-packet costs
    /// one pass over its bytes (the copy), not two.
    pub fn emit_partial(&self, out: &mut Vec<u8>) {
        let tcp_start = self.emit_headers(out, self.payload.len());
        out.extend_from_slice(self.payload);
        self.finish_checksum(out, tcp_start, true);
    }

    /// Writes the packet with a payload of `payload_len` bytes that `fill` appends to `out`
    /// (gathered straight from where they live, with no staging copy; `self.payload` is
    /// ignored), then its checksum: full, or partial as in [`SegmentRepr::emit_partial`].
    /// `fill` returns how many bytes it appended; the headers are corrected if that is fewer.
    pub fn emit_gather(
        &self,
        out: &mut Vec<u8>,
        payload_len: usize,
        partial: bool,
        fill: &mut dyn FnMut(&mut Vec<u8>) -> usize,
    ) -> usize {
        let tcp_start = self.emit_headers(out, payload_len);
        out.reserve(payload_len);
        let n = fill(out);
        if n != payload_len {
            // A short read (the stream held less than it said): write the lengths it has.
            out.truncate(tcp_start + 20 + self.options.encoded_len() + n);
            let tcp_len = out.len() - tcp_start;
            if tcp_start == 20 {
                out[2..4].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
                out[10..12].copy_from_slice(&[0, 0]);
                let c = internet_checksum(&out[..20]);
                out[10..12].copy_from_slice(&c.to_be_bytes());
            } else {
                out[4..6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
            }
        }
        self.finish_checksum(out, tcp_start, partial);
        n
    }

    /// The IP and TCP headers (checksum field zero) for a payload of `payload_len` bytes;
    /// returns where the TCP header starts.
    fn emit_headers(&self, out: &mut Vec<u8>, payload_len: usize) -> usize {
        out.clear();
        let opt_len = self.options.encoded_len();
        let tcp_len = 20 + opt_len + payload_len;
        let tcp_start = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let total = (20 + tcp_len) as u16;
                out.extend_from_slice(&[0x45, 0]);
                out.extend_from_slice(&total.to_be_bytes());
                out.extend_from_slice(&self.ip_id.to_be_bytes());
                out.extend_from_slice(&[0x40, 0, 64, 6, 0, 0]);
                out.extend_from_slice(&s.octets());
                out.extend_from_slice(&d.octets());
                let c = internet_checksum(&out[..20]);
                out[10..12].copy_from_slice(&c.to_be_bytes());
                20
            }
            (s, d) => {
                let (s, d) = (v6(s), v6(d));
                out.extend_from_slice(&[0x60, 0, 0, 0]);
                out.extend_from_slice(&(tcp_len as u16).to_be_bytes());
                out.extend_from_slice(&[6, 64]);
                out.extend_from_slice(&s);
                out.extend_from_slice(&d);
                40
            }
        };
        out.extend_from_slice(&self.src_port.to_be_bytes());
        out.extend_from_slice(&self.dst_port.to_be_bytes());
        out.extend_from_slice(&self.seq.0.to_be_bytes());
        out.extend_from_slice(&self.ack.0.to_be_bytes());
        out.push((((20 + opt_len) / 4) as u8) << 4);
        out.push(self.flags.bits());
        out.extend_from_slice(&self.window.to_be_bytes());
        // Checksum (filled in later), then the urgent pointer.
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.urgent.to_be_bytes());
        self.options.emit(out);
        tcp_start
    }

    /// The TCP checksum of the segment at `out[tcp_start..]`: over all of it, or (`partial`)
    /// only the folded pseudo-header sum, which the kernel completes.
    fn finish_checksum(&self, out: &mut [u8], tcp_start: usize, partial: bool) {
        let tcp_len = out.len() - tcp_start;
        let sum = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => pseudo_header_sum(&s.octets(), &d.octets(), tcp_len),
            (s, d) => pseudo_header_sum(&v6(s), &v6(d), tcp_len),
        };
        let c = if partial {
            // `finish` complements the folded sum; the partial field is the folded sum itself.
            !Checksum::from_sum(sum).finish()
        } else {
            Checksum::from_sum(sum).add_bytes(&out[tcp_start..]).finish()
        };
        out[tcp_start + 16..tcp_start + 18].copy_from_slice(&c.to_be_bytes());
    }
}

fn v6(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repr(src: IpAddr, dst: IpAddr, payload: &[u8]) -> SegmentRepr<'_> {
        SegmentRepr {
            src,
            dst,
            src_port: 40000,
            dst_port: 5001,
            seq: SeqNum(0xFFFF_FFF0),
            ack: SeqNum(77),
            flags: flags::ACK | flags::PSH,
            window: 1234,
            options: TcpOptions { timestamps: Some((5, 6)), ..TcpOptions::default() },
            payload,
            urgent: 0,
            ip_id: 0x8001,
        }
    }

    #[test]
    fn a_gathered_payload_writes_the_same_packet() {
        let payload: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
        for (src, dst) in [("198.18.0.1", "198.18.0.2"), ("fd00::1", "fd00::2")] {
            let r = repr(src.parse().unwrap(), dst.parse().unwrap(), &payload);
            let gathered = |partial: bool, give: usize| {
                let mut out = Vec::new();
                let empty = SegmentRepr { payload: &[], ..r.clone() };
                let n = empty.emit_gather(&mut out, payload.len(), partial, &mut |o: &mut Vec<u8>| {
                    // In three pieces, as from three MDLs.
                    for part in payload[..give].chunks(1100) {
                        o.extend_from_slice(part);
                    }
                    give
                });
                assert_eq!(n, give);
                out
            };
            let (mut full, mut partial) = (Vec::new(), Vec::new());
            r.emit(&mut full);
            r.emit_partial(&mut partial);
            assert_eq!(gathered(false, payload.len()), full);
            assert_eq!(gathered(true, payload.len()), partial);
            assert!(parse(&full).is_ok());
            // A short read writes a shorter, still valid packet.
            let short = gathered(false, 1000);
            let s = parse(&short).expect("valid");
            assert_eq!(s.payload, &payload[..1000]);
        }
    }

    #[test]
    fn ipv6_payload_length_zero_is_not_the_rest_of_the_frame() {
        let r = repr("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap(), b"100 bytes of data?");
        let mut buf = Vec::new();
        r.emit(&mut buf);
        assert!(parse(&buf).is_ok());
        buf[4..6].copy_from_slice(&[0, 0]);
        assert_eq!(parse(&buf).unwrap_err(), WireError::BadIp);
        let h = buf.len() - 18;
        assert!(parse_headers(&buf[..h], buf.len()).is_err());
    }

    /// `buf` (an IPv6 TCP packet) with extension header `ext` (its first byte, the next
    /// header, is filled in) inserted after the fixed header.
    fn with_extension(buf: &[u8], kind: u8, mut ext: Vec<u8>) -> Vec<u8> {
        ext[0] = buf[6];
        let mut v = buf[..40].to_vec();
        v[6] = kind;
        let plen = u16::from_be_bytes([buf[4], buf[5]]) + ext.len() as u16;
        v[4..6].copy_from_slice(&plen.to_be_bytes());
        v.extend_from_slice(&ext);
        v.extend_from_slice(&buf[40..]);
        v
    }

    #[test]
    fn ipv6_extension_headers_are_walked_by_the_rfc() {
        let r = repr("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap(), b"payload");
        let mut buf = Vec::new();
        r.emit(&mut buf);
        // Destination options: PadN only, or an unknown option with action 00 (skip): processed.
        for opts in [[1u8, 4, 0, 0, 0, 0], [0x1E, 4, 1, 2, 3, 4]] {
            let p = with_extension(&buf, 60, [vec![0, 0], opts.to_vec()].concat());
            assert_eq!(parse(&p).map(|s| s.payload.to_vec()), Ok(b"payload".to_vec()), "{opts:?}");
        }
        // An unknown option whose action bits say discard (01, 10, 11), in destination or
        // hop-by-hop options: dropped.
        for (kind, t) in [(60u8, 0x5Eu8), (60, 0x80), (0, 0xC7)] {
            let p = with_extension(&buf, kind, vec![0, 0, t, 4, 0, 0, 0, 0]);
            assert_eq!(parse(&p).unwrap_err(), WireError::Ipv6OptionDiscard, "{kind} {t:#x}");
        }
        // A type 0 routing header with segments left: not at its final destination, dropped;
        // with none left (every segment visited) it is ignored and the segment processed.
        let routing = |left: u8| [vec![0, 2, 0, left, 0, 0, 0, 0], vec![0xFD; 16]].concat();
        assert_eq!(parse(&with_extension(&buf, 43, routing(1))).unwrap_err(), WireError::Ipv6Routing);
        assert!(parse(&with_extension(&buf, 43, routing(0))).is_ok());
        // The same in front of a fragment header: dropped, never handed to the host for
        // reassembly (which would strip them); a clean fragment does go to the host.
        let frag = |more: u8| vec![0, 0, 0, more, 0, 0, 0, 9];
        let fragmented = with_extension(&buf, 44, frag(1));
        assert_eq!(parse(&fragmented).unwrap_err(), WireError::Fragment);
        // The last fragment at offset 8 (M clear): a fragment too (the crate below reads
        // this header's fields in IPv4's order and would call it whole); an atomic fragment
        // (offset 0, M clear) is a whole packet.
        let last = with_extension(&buf, 44, vec![0, 0, 0, 0x40, 0, 0, 0, 9]);
        assert_eq!(parse(&last).unwrap_err(), WireError::Fragment);
        assert!(parse(&with_extension(&buf, 44, frag(0))).is_ok());
        let behind_routing = with_extension(&fragmented, 43, routing(1));
        assert_eq!(parse(&behind_routing).unwrap_err(), WireError::Ipv6Routing);
        let behind_option = with_extension(&fragmented, 60, vec![0, 0, 0x80, 4, 0, 0, 0, 0]);
        assert_eq!(parse(&behind_option).unwrap_err(), WireError::Ipv6OptionDiscard);
    }

    #[test]
    fn ipv4_options_with_a_bad_header_checksum_are_dropped() {
        let r = repr("198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap(), b"payload");
        let mut buf = Vec::new();
        r.emit(&mut buf);
        // Insert a 4-byte option (NOP NOP NOP EOL), fix lengths and the checksum.
        let mut p = buf[..20].to_vec();
        p[0] = 0x46;
        p.extend_from_slice(&[1, 1, 1, 0]);
        p.extend_from_slice(&buf[20..]);
        let total = (p.len() as u16).to_be_bytes();
        p[2..4].copy_from_slice(&total);
        p[10..12].copy_from_slice(&[0, 0]);
        let sum = internet_checksum(&p[..24]);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(parse(&p).unwrap_err(), WireError::Ipv4Options);
        p[8] ^= 1; // TTL changed in flight, checksum not
        assert_eq!(parse(&p).unwrap_err(), WireError::BadIpChecksum);
    }

    #[test]
    fn headers_len_of_short_or_unknown_packets_is_none() {
        assert_eq!(headers_len(&[]), None);
        assert_eq!(headers_len(&[0x45; 20]), None, "no TCP header behind the IPv4 header");
        assert_eq!(headers_len(&[0x75; 60]), None, "IP version 7");
    }

    #[test]
    fn headers_parse_like_the_whole_packet_and_must_end_at_the_payload() {
        for (s, d) in [
            ("198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap()),
            ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap()),
        ] {
            let r = repr(s, d, b"payload bytes");
            let mut buf = Vec::new();
            r.emit(&mut buf);
            let whole = parse(&buf).unwrap();
            let h = buf.len() - whole.payload.len();
            assert_eq!(headers_len(&buf), Some(h), "header length read from the packet");
            let (seg, plen) = parse_headers(&buf[..h], buf.len()).unwrap();
            assert_eq!(plen, 13);
            assert_eq!(Segment { payload: whole.payload, ..seg }, whole);
            // Predicted too long (payload bytes taken for headers) or too short, or a length
            // the IP header disagrees with: not a prediction that holds.
            assert_eq!(parse_headers(&buf[..h + 4], buf.len()).unwrap_err(), WireError::BadTcpHeader);
            assert!(parse_headers(&buf[..h - 4], buf.len()).is_err());
            assert_eq!(parse_headers(&buf[..h], buf.len() + 1).unwrap_err(), WireError::BadIp);
            assert!(parse_headers(&[], 0).is_err());
        }
    }

    #[test]
    fn emit_then_parse_round_trips_v4_and_v6() {
        for (s, d) in [
            ("198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap()),
            ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap()),
        ] {
            let r = repr(s, d, b"hello");
            let mut buf = Vec::new();
            r.emit(&mut buf);
            assert_eq!(buf.len(), r.buffer_len());
            let p = parse(&buf).unwrap();
            assert_eq!((p.src, p.dst, p.src_port, p.dst_port), (s, d, 40000, 5001));
            assert_eq!(
                (p.seq, p.ack, p.flags, p.window),
                (SeqNum(0xFFFF_FFF0), SeqNum(77), flags::ACK | flags::PSH, 1234)
            );
            assert_eq!(p.options.timestamps, Some((5, 6)));
            assert_eq!(p.payload, b"hello");
        }
    }

    #[test]
    fn corruption_and_truncation_are_counted_reasons_not_panics() {
        let r = repr("198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap(), b"data!");
        let mut buf = Vec::new();
        r.emit(&mut buf);
        let mut bad = buf.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(parse(&bad), Err(WireError::BadTcpChecksum));
        let mut bad = buf.clone();
        bad[8] ^= 1;
        assert_eq!(parse(&bad), Err(WireError::BadIpChecksum));
        for n in 0..buf.len() {
            let _ = parse(&buf[..n]);
        }
        let mut frag = buf.clone();
        frag[6] = 0x20; // MF
        frag[10] = 0;
        frag[11] = 0;
        let c = internet_checksum(&frag[..20]);
        frag[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(parse(&frag), Err(WireError::Fragment));
    }
}
