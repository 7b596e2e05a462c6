//! The host stack behind the offload target: what the host does with what the target hands
//! back. Sans-IO like the engine (fed `(now, packet)`, returning packets and verdicts); the
//! driver wires it in.
//!
//! * [`Defrag`]: IP fragments and IPv4 options never reach the target (spec §6.6); the host
//!   path reassembles fragments (IPv4 and IPv6, overlaps refused as RFC 5722 asks, bounded in
//!   datagrams, bytes and time) and strips IPv4 options, then forwards the plain segment to
//!   the offloaded connection — the connection is never uploaded for them.
//! * [`HostConn`]: a connection the target uploaded for urgent data, continued in software
//!   until the urgent byte has been taken, then offloaded again. The urgent byte is received
//!   the way Linux does by default (no `SO_OOBINLINE`, `tcp_stdurg` 0): out of band — the
//!   byte just before the urgent pointer is taken out of the stream and kept apart.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use chimney::tcp::Negotiated;
use chimney::wire::{flags, Segment, SegmentRepr, SeqNum, TcpOptions};
use chimney::Instant;
use etherparse::defrag::IpDefragBuf;
use etherparse::{IpFragOffset, IpNumber, IpSlice, Ipv6ExtensionSlice};

/// Datagrams being reassembled at most (a new one beyond is dropped and counted).
const MAX_DATAGRAMS: usize = 64;
/// How long an incomplete datagram is kept (RFC 8200 §4.5: 60 s; Linux: 30 s).
const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(30);

/// A datagram's identity: source, destination, IP id, IPv6 or not.
type FragKey = (IpAddr, IpAddr, u32, bool);

/// What the host path counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPathCounts {
    /// Datagrams reassembled from fragments and forwarded to the target.
    pub reassembled: u64,
    /// Fragments dropped: overlapping, malformed, over the bounds, or timed out.
    pub fragments_dropped: u64,
    /// Segments forwarded with their IPv4 options stripped.
    pub options_stripped: u64,
    /// Connections the host took over after an urgent-data upload.
    pub urgent_uploads: u64,
    /// Connections the host offloaded again after taking the urgent byte.
    pub reoffloads: u64,
}

impl HostPathCounts {
    /// Adds another shard's counts.
    pub fn merge(&mut self, o: &HostPathCounts) {
        self.reassembled += o.reassembled;
        self.fragments_dropped += o.fragments_dropped;
        self.options_stripped += o.options_stripped;
        self.urgent_uploads += o.urgent_uploads;
        self.reoffloads += o.reoffloads;
    }
}

struct Partial {
    buf: IpDefragBuf,
    /// The first fragment's IP header fields the rebuilt packet keeps (TTL or hop limit).
    ttl: u8,
    since: Instant,
}

/// IP reassembly and option stripping for packets the target does not process.
#[derive(Default)]
pub struct Defrag {
    partial: HashMap<FragKey, Partial>,
    /// Counters.
    pub counts: HostPathCounts,
}

impl Defrag {
    /// A fragment or a packet with IPv4 options: returns the plain IP packet to forward to
    /// the target when one is complete (a fragment completing its datagram, or any packet
    /// whose options were stripped).
    pub fn push(&mut self, now: Instant, packet: &[u8]) -> Option<Vec<u8>> {
        self.expire(now);
        let ip = IpSlice::from_slice(packet).ok()?;
        let (src, dst, key, offset, more, payload, proto, ttl) = match &ip {
            IpSlice::Ipv4(v4) => {
                let h = v4.header();
                let (src, dst) = (IpAddr::from(h.source()), IpAddr::from(h.destination()));
                let payload = v4.payload();
                if !h.is_fragmenting_payload() {
                    // Options only: forward the segment without them.
                    self.counts.options_stripped += 1;
                    return Some(rebuild(src, dst, payload.ip_number, h.ttl(), payload.payload));
                }
                let key = (src, dst, u32::from(h.identification()), false);
                (src, dst, key, h.fragments_offset(), h.more_fragments(), payload.payload, payload.ip_number, h.ttl())
            }
            IpSlice::Ipv6(v6) => {
                let h = v6.header();
                // The fragment header's fields read from its bytes (RFC 8200 §4.5: offset in
                // the top 13 bits of bytes 2-3, then 2 reserved bits and M): etherparse 0.19
                // reads them in IPv4's order (M first, offset last), so its accessors are wrong.
                let f = v6.extensions().clone().into_iter().find_map(|e| match e {
                    Ipv6ExtensionSlice::Fragment(f) => Some(f.slice()),
                    _ => None,
                })?;
                let word = u16::from_be_bytes([f[2], f[3]]);
                let identification = u32::from_be_bytes([f[4], f[5], f[6], f[7]]);
                let frag_offset = IpFragOffset::try_new(word >> 3).ok()?;
                let frag_more = word & 1 != 0;
                let (src, dst) = (IpAddr::from(h.source_addr()), IpAddr::from(h.destination_addr()));
                let payload = v6.payload();
                let key = (src, dst, identification, true);
                (src, dst, key, frag_offset, frag_more, payload.payload, payload.ip_number, h.hop_limit())
            }
        };
        if !self.partial.contains_key(&key) && self.partial.len() >= MAX_DATAGRAMS {
            self.counts.fragments_dropped += 1;
            return None;
        }
        let p = self.partial.entry(key).or_insert_with(|| Partial {
            buf: IpDefragBuf::new(proto, Vec::new(), Vec::new()),
            ttl,
            since: now,
        });
        let (start, end) = (offset.byte_offset(), offset.byte_offset().saturating_add(payload.len() as u16));
        // RFC 5722: a fragment overlapping another discards the whole datagram.
        let overlaps = p.buf.sections().iter().any(|r| start < r.end && r.start < end);
        if overlaps || p.buf.ip_number() != proto || p.buf.add(offset, more, payload).is_err() {
            self.partial.remove(&key);
            self.counts.fragments_dropped += 1;
            return None;
        }
        if !p.buf.is_complete() {
            return None;
        }
        let p = self.partial.remove(&key)?;
        let (data, _) = p.buf.take_bufs();
        self.counts.reassembled += 1;
        Some(rebuild(src, dst, proto, p.ttl, &data))
    }

    fn expire(&mut self, now: Instant) {
        let before = self.partial.len();
        self.partial.retain(|_, p| now.saturating_duration_since(p.since) < REASSEMBLY_TIMEOUT);
        self.counts.fragments_dropped += (before - self.partial.len()) as u64;
    }

    /// Datagrams waiting for fragments.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }
}

/// A plain IP packet (no options, no extension headers) around `payload`.
fn rebuild(src: IpAddr, dst: IpAddr, proto: IpNumber, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(40 + payload.len());
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = (20 + payload.len()) as u16;
            out.extend_from_slice(&[0x45, 0]);
            out.extend_from_slice(&total.to_be_bytes());
            out.extend_from_slice(&[0, 0, 0x40, 0, ttl, proto.0, 0, 0]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
            let sum = chimney::wire::internet_checksum(&out[..20]);
            out[10..12].copy_from_slice(&sum.to_be_bytes());
        }
        (s, d) => {
            let (s, d) = (v6(s), v6(d));
            out.extend_from_slice(&[0x60, 0, 0, 0]);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            out.extend_from_slice(&[proto.0, ttl]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
    }
    out.extend_from_slice(payload);
    out
}

fn v6(a: IpAddr) -> std::net::Ipv6Addr {
    match a {
        IpAddr::V6(a) => a,
        IpAddr::V4(a) => a.to_ipv6_mapped(),
    }
}

/// What a host-owned connection asks of its driver after a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostVerdict {
    /// Keep it in software.
    Continue,
    /// The urgent byte is taken: offload it again ([`HostConn::negotiated`]).
    Reoffload,
    /// The peer closed (FIN, answered with ours, and ours acknowledged).
    Fin,
    /// The peer reset it.
    Rst,
    /// The peer went silent ([`HOST_IDLE`]), or never acknowledged our FIN: reset.
    Timeout,
}

/// How long a connection in the host's hands may stay silent before the host resets it.
pub const HOST_IDLE: Duration = Duration::from_secs(60);
/// Our FIN's first retransmission timeout and retransmissions (doubling).
const FIN_RTO: Duration = Duration::from_secs(1);
const FIN_RETRIES: u32 = 5;

/// A connection the host continues in software after an urgent-data upload: a minimal
/// in-order receiver (out-of-order segments are answered with a duplicate ACK and left to
/// the peer's retransmission; the exception lasts one round trip).
#[derive(Debug, Clone)]
pub struct HostConn {
    n: Negotiated,
    rcv_nxt: SeqNum,
    edge: SeqNum,
    /// The urgent pointer the peer announced and we have not reached (the urgent byte is
    /// the one before it).
    urgent: Option<SeqNum>,
    /// Urgent bytes taken out of band, in order.
    pub oob: Vec<u8>,
    window: u32,
    /// When the peer was last heard from.
    heard: Instant,
    /// Our FIN (sent when the peer's arrived): its next retransmission and how many so far.
    fin: Option<(Instant, u32)>,
    /// In-order segments taken since the takeover without an urgent byte (a safety valve:
    /// an upload whose urgent byte never shows is offloaded again after a while).
    plain: u32,
}

/// In-order segments without the urgent byte after which the host offloads again anyway.
const PLAIN_LIMIT: u32 = 256;

impl HostConn {
    /// Takes over a connection the target uploaded: `n` from [`chimney::Engine::negotiated`]
    /// before the terminate, `rcv_nxt`, `rcv_wnd` and `ts_recent` from the delegated state;
    /// `window` is the receive buffer the host advertises meanwhile.
    pub fn new(now: Instant, n: Negotiated, rcv_nxt: u32, rcv_wnd: u32, ts_recent: u32, window: u32) -> HostConn {
        let mut n = n;
        n.ts_recent = n.ts_recent.map(|_| ts_recent);
        let rcv_nxt = SeqNum(rcv_nxt);
        HostConn {
            n,
            rcv_nxt,
            edge: rcv_nxt.plus(rcv_wnd),
            urgent: None,
            oob: Vec::new(),
            window,
            heard: now,
            fin: None,
            plain: 0,
        }
    }

    /// When [`HostConn::poll`] is next due.
    pub fn deadline(&self) -> Instant {
        match self.fin {
            Some((at, _)) => at.min(self.heard + HOST_IDLE),
            None => self.heard + HOST_IDLE,
        }
    }

    /// Timers: our FIN's retransmission; the end of a silent or never-acknowledged one (an
    /// RST goes to the peer).
    pub fn poll(&mut self, now: Instant, tx: &mut dyn FnMut(&SegmentRepr<'_>)) -> HostVerdict {
        if now >= self.heard + HOST_IDLE || self.fin.is_some_and(|(at, n)| now >= at && n >= FIN_RETRIES) {
            self.reset(tx);
            return HostVerdict::Timeout;
        }
        if let Some((at, n)) = self.fin {
            if now >= at {
                self.fin = Some((now + FIN_RTO * (2 << n), n + 1));
                self.n.snd_nxt = self.n.snd_nxt.wrapping_sub(1);
                self.ack(now, flags::FIN | flags::ACK, tx);
            }
        }
        HostVerdict::Continue
    }

    /// Sends an RST (the host gives the connection up: shutdown, timeout).
    pub fn reset(&mut self, tx: &mut dyn FnMut(&SegmentRepr<'_>)) {
        let (local, remote) = self.tuple();
        tx(&SegmentRepr::control(local, remote, SeqNum(self.n.snd_nxt), self.rcv_nxt, flags::RST | flags::ACK, 0));
    }

    /// Its 4-tuple (local, remote).
    pub fn tuple(&self) -> (SocketAddr, SocketAddr) {
        (self.n.local, self.n.remote)
    }

    /// The state to offload it with again.
    pub fn negotiated(&self) -> Negotiated {
        let mut n = self.n.clone();
        n.rcv_nxt = self.rcv_nxt.0;
        n.rcv_adv = self.edge.0;
        n
    }

    fn ack(&mut self, now: Instant, fl: chimney::wire::Flags, tx: &mut dyn FnMut(&SegmentRepr<'_>)) {
        let scale = self.n.rcv_wscale.unwrap_or(0);
        let edge = self.rcv_nxt.plus(self.window);
        if edge.gt(self.edge) {
            self.edge = edge;
        }
        let wnd = self.edge.diff(self.rcv_nxt).max(0) as u32;
        let tsval = ((now.as_nanos() / 1_000_000) as u32).wrapping_add(self.n.ts_offset);
        let seq = SeqNum(self.n.snd_nxt);
        let (local, remote) = self.tuple();
        let options = TcpOptions { timestamps: self.n.ts_recent.map(|r| (tsval, r)), ..TcpOptions::default() };
        let window = wnd.div_ceil(1 << scale).min(0xFFFF) as u16;
        tx(&SegmentRepr { options, ..SegmentRepr::control(local, remote, seq, self.rcv_nxt, fl, window) });
        if fl.contains(flags::FIN) {
            self.n.snd_nxt = seq.plus(1).0;
        }
    }

    /// One segment for this connection: in-order bytes go to `deliver` (the urgent byte to
    /// [`HostConn::oob`] instead), every segment is answered with an ACK.
    pub fn on_segment(
        &mut self,
        now: Instant,
        seg: &Segment<'_>,
        deliver: &mut dyn FnMut(&[u8]),
        tx: &mut dyn FnMut(&SegmentRepr<'_>),
    ) -> HostVerdict {
        if seg.has(flags::RST) {
            return if seg.seq == self.rcv_nxt { HostVerdict::Rst } else { HostVerdict::Continue };
        }
        self.heard = now;
        if self.fin.is_some() {
            // Both FINs are out: wait for the ACK of ours (answering anything else again).
            if seg.has(flags::ACK) && seg.ack.0 == self.n.snd_nxt {
                return HostVerdict::Fin;
            }
            self.n.snd_nxt = self.n.snd_nxt.wrapping_sub(1);
            self.ack(now, flags::FIN | flags::ACK, tx);
            return HostVerdict::Continue;
        }
        if seg.has(flags::SYN) || !seg.has(flags::ACK) {
            self.ack(now, flags::ACK, tx);
            return HostVerdict::Continue;
        }
        let len = seg.payload.len() as u32;
        let end = seg.seq.plus(len);
        // Only the next bytes are taken (trimmed at the front); anything else is answered.
        if seg.seq.gt(self.rcv_nxt) || (end.le(self.rcv_nxt) && !seg.has(flags::FIN)) {
            self.ack(now, flags::ACK, tx);
            return HostVerdict::Continue;
        }
        if let (Some(ts), Some((tsval, _))) = (self.n.ts_recent.as_mut(), seg.options.timestamps) {
            *ts = tsval;
        }
        if seg.has(flags::URG) {
            let up = seg.seq.plus(u32::from(seg.urgent));
            if up.gt(self.rcv_nxt) && self.urgent.is_none_or(|u| up.gt(u)) {
                self.urgent = Some(up);
            }
        }
        let skip = self.rcv_nxt.diff(seg.seq).max(0) as usize;
        let data = &seg.payload[skip.min(seg.payload.len())..];
        let start = self.rcv_nxt;
        // The urgent byte (just before the pointer) is taken out of band.
        match self.urgent.map(|u| u.diff(start) - 1) {
            Some(k) if k >= 0 && (k as usize) < data.len() => {
                let k = k as usize;
                deliver(&data[..k]);
                self.oob.push(data[k]);
                deliver(&data[k + 1..]);
                self.urgent = None;
            }
            _ => deliver(data),
        }
        self.rcv_nxt = start.plus(data.len() as u32);
        if seg.has(flags::FIN) && end == self.rcv_nxt {
            self.rcv_nxt = self.rcv_nxt.plus(1);
            // The application closes too: our FIN with the ACK of theirs, retransmitted until
            // acknowledged (a FIN never acknowledged is a timeout, not a clean close).
            self.ack(now, flags::FIN | flags::ACK, tx);
            self.fin = Some((now + FIN_RTO, 0));
            return HostVerdict::Continue;
        }
        self.ack(now, flags::ACK, tx);
        // A pointer at or before RCV.NXT with no byte left before it: nothing urgent remains.
        if self.urgent.is_some_and(|u| u.le(self.rcv_nxt)) {
            self.urgent = None;
        }
        // Offloaded again once the urgent byte is taken. Not before: the segment that made the
        // target upload may come back without URG (Linux marks a retransmission only when
        // the urgent point is within 64 KB of it), the pointer is then not known here, and an
        // early re-offload would upload again at the next marked segment.
        self.plain += 1;
        if self.urgent.is_none() && (!self.oob.is_empty() || self.plain >= PLAIN_LIMIT) {
            HostVerdict::Reoffload
        } else {
            HostVerdict::Continue
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chimney::testkit::peer::Peer;

    fn ip4(src: [u8; 4], dst: [u8; 4], id: u16, off8: u16, more: bool, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
        p.extend_from_slice(&id.to_be_bytes());
        let fl = (u16::from(more) << 13) | off8;
        p.extend_from_slice(&fl.to_be_bytes());
        p.extend_from_slice(&[64, 6, 0, 0]);
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        let sum = chimney::wire::internet_checksum(&p[..20]);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    fn segment() -> Vec<u8> {
        let peer = Peer::new("198.18.0.1:5001".parse().unwrap(), "198.18.0.2:4000".parse().unwrap(), 100);
        let data: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
        peer.segment(101, flags::ACK | flags::PSH, &data)
    }

    #[test]
    fn fragments_in_any_order_rebuild_the_segment() {
        let whole = segment();
        let tcp = &whole[20..];
        let (a, b, c) = (&tcp[..1000], &tcp[1000..2000], &tcp[2000..]);
        let mut d = Defrag::default();
        let t = Instant::ZERO;
        let (s, x) = ([198, 18, 0, 2], [198, 18, 0, 1]);
        assert!(d.push(t, &ip4(s, x, 7, 250, false, c)).is_none());
        assert!(d.push(t, &ip4(s, x, 7, 0, true, a)).is_none());
        let out = d.push(t, &ip4(s, x, 7, 125, true, b)).expect("complete");
        let seg = chimney::wire::parse(&out).expect("a valid segment, checksum included");
        assert_eq!(seg.payload, &whole[40..]);
        assert_eq!(d.counts.reassembled, 1);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn overlaps_bounds_and_timeouts_drop() {
        let whole = segment();
        let tcp = &whole[20..];
        let mut d = Defrag::default();
        let (s, x) = ([198, 18, 0, 2], [198, 18, 0, 1]);
        let t = Instant::ZERO;
        assert!(d.push(t, &ip4(s, x, 1, 0, true, &tcp[..1000])).is_none());
        // Overlapping the first: the datagram is gone.
        assert!(d.push(t, &ip4(s, x, 1, 100, true, &tcp[800..1600])).is_none());
        assert_eq!((d.pending(), d.counts.fragments_dropped), (0, 1));
        for id in 0..(MAX_DATAGRAMS as u16 + 10) {
            let _ = d.push(t, &ip4(s, x, 100 + id, 0, true, &tcp[..8]));
        }
        assert_eq!(d.pending(), MAX_DATAGRAMS);
        assert_eq!(d.counts.fragments_dropped, 11);
        let _ = d.push(t + REASSEMBLY_TIMEOUT, &ip4(s, x, 9, 0, true, &tcp[..8]));
        assert_eq!(d.pending(), 1, "the old ones expired");
    }

    /// An IPv6 fragment of `tcp` (the whole TCP segment) at byte `off`.
    fn ip6(off: usize, more: bool, tcp: &[u8], chunk: &[u8]) -> Vec<u8> {
        let _ = tcp;
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&((8 + chunk.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[44, 64]);
        p.extend_from_slice(&"fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&"fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        let fo = ((off / 8) as u16) << 3 | u16::from(more);
        p.extend_from_slice(&[6, 0]);
        p.extend_from_slice(&fo.to_be_bytes());
        p.extend_from_slice(&0xABCDu32.to_be_bytes());
        p.extend_from_slice(chunk);
        p
    }

    #[test]
    fn ipv6_fragments_rebuild_the_segment() {
        let peer = Peer::new("[fd00::1]:5001".parse().unwrap(), "[fd00::2]:4000".parse().unwrap(), 100);
        let data: Vec<u8> = (0..3000u32).map(|i| (i * 5) as u8).collect();
        let whole = peer.segment(101, flags::ACK | flags::PSH, &data);
        let tcp = &whole[40..];
        let mut d = Defrag::default();
        assert!(d.push(Instant::ZERO, &ip6(1504, false, tcp, &tcp[1504..])).is_none());
        let out = d.push(Instant::ZERO, &ip6(0, true, tcp, &tcp[..1504])).expect("complete");
        assert_eq!(chimney::wire::parse(&out).expect("valid").payload, &data[..]);
        assert_eq!(d.counts.reassembled, 1);
    }

    #[test]
    fn ipv4_options_are_stripped() {
        let whole = segment();
        let mut p = vec![0x46, 0];
        p.extend_from_slice(&((24 + whole.len() - 20) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 2, 198, 18, 0, 1, 1, 1, 1, 0]);
        let sum = chimney::wire::internet_checksum(&p[..24]);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        p.extend_from_slice(&whole[20..]);
        let mut d = Defrag::default();
        let out = d.push(Instant::ZERO, &p).expect("forwarded");
        assert_eq!(chimney::wire::parse(&out).unwrap().payload, &whole[40..]);
        assert_eq!(d.counts.options_stripped, 1);
    }

    fn negotiated() -> Negotiated {
        Negotiated {
            local: "198.18.0.1:5001".parse().unwrap(),
            remote: "198.18.0.2:4000".parse().unwrap(),
            rcv_nxt: 101,
            snd_nxt: 9001,
            snd_max: 9001,
            rcv_wscale: Some(2),
            peer_mss: 1460,
            snd_wscale: Some(2),
            sack: false,
            ts_recent: None,
            ts_offset: 0,
            rcv_adv: 101 + 65536,
            max_snd_wnd: 65535,
        }
    }

    #[test]
    fn the_urgent_byte_goes_out_of_band_then_reoffload() {
        let mut h = HostConn::new(Instant::ZERO, negotiated(), 101, 65536, 0, 65536);
        let mut peer = Peer::new("198.18.0.1:5001".parse().unwrap(), "198.18.0.2:4000".parse().unwrap(), 100);
        peer.iss = 9000;
        peer.urgent = 6; // "hello!" with '!' urgent
        let mut got = Vec::new();
        let mut sent = Vec::new();
        let seg = peer.segment(101, flags::ACK | flags::URG | flags::PSH, b"hello!world");
        let s = chimney::wire::parse(&seg).unwrap();
        let v = h.on_segment(Instant::ZERO, &s, &mut |d| got.extend_from_slice(d), &mut |r| sent.push(r.ack.0));
        assert_eq!(v, HostVerdict::Reoffload);
        assert_eq!(got, b"helloworld");
        assert_eq!(h.oob, b"!");
        assert_eq!(sent, vec![101 + 11]);
        assert_eq!(h.negotiated().rcv_nxt, 112);
    }

    #[test]
    fn our_fin_is_retransmitted_and_one_never_acknowledged_is_a_timeout() {
        let t0 = Instant::ZERO;
        let mut h = HostConn::new(t0, negotiated(), 101, 65536, 0, 65536);
        let mut peer = Peer::new("198.18.0.1:5001".parse().unwrap(), "198.18.0.2:4000".parse().unwrap(), 100);
        peer.iss = 9000;
        let mut sent: Vec<(u32, bool)> = Vec::new();
        let fin = peer.segment(101, flags::ACK | flags::FIN, b"bye");
        let v = h.on_segment(t0, &chimney::wire::parse(&fin).unwrap(), &mut |_| {}, &mut |r| {
            sent.push((r.seq.0, r.flags.contains(flags::FIN)))
        });
        assert_eq!(v, HostVerdict::Continue, "not over before our FIN is acknowledged");
        assert_eq!(sent, vec![(9001, true)]);
        // Unacknowledged: resent at 1, 3, 7, … s with the same sequence number, then given up.
        let mut verdict = HostVerdict::Continue;
        for _ in 0..10 {
            let t = h.deadline();
            verdict = h.poll(t, &mut |r| sent.push((r.seq.0, r.flags.contains(flags::FIN))));
            if verdict != HostVerdict::Continue {
                break;
            }
        }
        assert_eq!(verdict, HostVerdict::Timeout);
        assert!(sent[1..sent.len() - 1].iter().all(|&(s, f)| s == 9001 && f), "{sent:?}");
        assert_eq!(sent.len(), 1 + FIN_RETRIES as usize + 1, "retransmissions then an RST: {sent:?}");
        // Acknowledged in time instead: a clean close.
        let mut h = HostConn::new(t0, negotiated(), 101, 65536, 0, 65536);
        h.on_segment(t0, &chimney::wire::parse(&fin).unwrap(), &mut |_| {}, &mut |_| {});
        peer.iss = 9001;
        let ack = peer.segment(105, flags::ACK, b"");
        assert_eq!(h.on_segment(t0, &chimney::wire::parse(&ack).unwrap(), &mut |_| {}, &mut |_| {}), HostVerdict::Fin);
    }

    #[test]
    fn urgent_pointer_beyond_the_segment_waits_for_its_byte() {
        let mut h = HostConn::new(Instant::ZERO, negotiated(), 101, 65536, 0, 65536);
        let mut peer = Peer::new("198.18.0.1:5001".parse().unwrap(), "198.18.0.2:4000".parse().unwrap(), 100);
        peer.iss = 9000;
        peer.urgent = 20;
        let mut got = Vec::new();
        let s1 = peer.segment(101, flags::ACK | flags::URG, b"0123456789");
        let v = h.on_segment(
            Instant::ZERO,
            &chimney::wire::parse(&s1).unwrap(),
            &mut |d| got.extend_from_slice(d),
            &mut |_| {},
        );
        assert_eq!(v, HostVerdict::Continue);
        // Out of order: answered, not taken.
        let s3 = peer.segment(131, flags::ACK, b"zz");
        let v = h.on_segment(
            Instant::ZERO,
            &chimney::wire::parse(&s3).unwrap(),
            &mut |d| got.extend_from_slice(d),
            &mut |_| {},
        );
        assert_eq!(v, HostVerdict::Continue);
        peer.urgent = 10;
        let s2 = peer.segment(111, flags::ACK | flags::URG, b"abcdefghij");
        let v = h.on_segment(
            Instant::ZERO,
            &chimney::wire::parse(&s2).unwrap(),
            &mut |d| got.extend_from_slice(d),
            &mut |_| {},
        );
        assert_eq!(v, HostVerdict::Reoffload);
        assert_eq!(got, b"0123456789abcdefghi");
        assert_eq!(h.oob, b"j");
    }
}
