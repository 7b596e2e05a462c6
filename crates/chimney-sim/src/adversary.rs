//! A scripted adversary: it owns one connection of its own to the target and sends a
//! canonical stream in hostile ways — floods of tiny non-adjacent segments (SegmentSmack),
//! overlapping retransmissions with different bytes over data already delivered, holes kept
//! open, sequence numbers and TSvals about to wrap, window probes, lying lengths — and fires
//! blind RSTs and SYNs at random sequence numbers. The target must deliver exactly the
//! canonical stream and stay within its bounds.

use std::net::SocketAddr;
use std::time::Duration;

use chimney::testkit::rng::{SplitMix64, Stream};
use chimney::wire::{self, flags, Flags, SegmentRepr, SeqNum, TcpOptions};
use chimney::Instant;

use crate::peer::Peers;

/// The adversary's state.
pub struct Adversary {
    rng: SplitMix64,
    me: SocketAddr,
    target: SocketAddr,
    mss: usize,
    /// Its canonical stream.
    pub stream: Stream,
    len: u64,
    isn: u32,
    iss: Option<u32>,
    acked: u64,
    fin_acked: bool,
    ts: u32,
    next: Instant,
    phase: u32,
    step: u64,
    ack_fin: Option<u32>,
    /// The target's window scale and last advertised window to it (bytes).
    wscale: u8,
    wnd: u64,
    /// What it saw of the target's connections to the smoltcp senders, by peer port: the
    /// target's SEQ and ACK (RCV.NXT) and window field — an attacker that knows where the
    /// window is, but not an acceptable ACK.
    seen: std::collections::BTreeMap<u16, (u32, u32, u16)>,
    /// Whether it opened with a SYN of another ISN first (then changed its mind: the target
    /// must replace that half-open, never mix the two sequence spaces).
    stale_syn_sent: bool,
    /// Whether the target acknowledged anything in its sequence space (the connection exists).
    established: bool,
    /// An RST owed to an unacceptable ACK received in SYN-SENT (its sequence number).
    owed_rst: Option<u32>,
}

impl Adversary {
    /// An adversary at `me` attacking `target`.
    pub fn new(seed: u64, me: SocketAddr, target: SocketAddr, mss: usize) -> Adversary {
        let mut rng = SplitMix64::new(seed ^ 0xADAD);
        let mut len = 2000 + rng.below(60_000);
        // Low MSS on a quarter of the runs (tiny segments all the way), with a shorter stream.
        let mss = match rng.below(8) {
            0 => 16,
            1 => 64,
            _ => mss.max(64),
        };
        if mss < 128 {
            len = len.min(mss as u64 * 300);
        }
        Adversary {
            isn: u32::MAX - rng.below(3000) as u32,
            ts: u32::MAX - rng.below(500) as u32,
            stream: Stream::new(seed ^ 0xBADD),
            rng,
            me,
            target,
            mss,
            len,
            iss: None,
            acked: 0,
            fin_acked: false,
            next: Instant::ZERO,
            phase: 0,
            step: 0,
            ack_fin: None,
            wscale: 0,
            wnd: 0,
            seen: std::collections::BTreeMap::new(),
            stale_syn_sent: false,
            established: false,
            owed_rst: None,
        }
    }

    /// Watches a packet the target sent to a smoltcp sender (checksums verified).
    pub fn observe(&mut self, p: &[u8]) {
        if let Ok(s) = wire::parse(p) {
            if s.has(flags::ACK) && !s.has(flags::SYN) {
                self.seen.insert(s.dst_port, (s.seq.0, s.ack.0, s.window));
            }
        }
    }

    /// Bytes of its stream.
    pub fn stream_len(&self) -> u64 {
        self.len
    }

    /// Whether its stream and FIN were acknowledged and the target's FIN answered.
    pub fn finished(&self) -> bool {
        self.fin_acked && self.ack_fin.is_none()
    }

    /// When it next acts.
    pub fn next_due(&self) -> Option<Instant> {
        (!self.fin_acked || self.ack_fin.is_some()).then_some(self.next)
    }

    /// Reads the target's answers (ACKs) to learn how far it got.
    pub fn on_packet(&mut self, _now: Instant, p: &[u8]) {
        // Checksums verified: a corrupted ACK must not make it believe more was received.
        let Ok(s) = wire::parse(p) else { return };
        if s.has(flags::RST) && !self.established && self.iss.is_some_and(|i| s.seq.0 == i.wrapping_add(1)) {
            // Refused before the connection was made: its abandoned SYN (duplicated or
            // reordered by the link) replaced the half-open its ACK was for. Start over.
            self.iss = None;
            self.step = 0;
            return;
        }
        if self.iss.is_none() && s.has(flags::ACK) && !s.has(flags::SYN | flags::RST) {
            // SYN-SENT, an ACK that does not acknowledge our SYN (the target's challenge of
            // our second SYN): RFC 9293 answers with an RST at SEG.ACK, which ends the
            // half-open of the abandoned SYN; our SYN goes again.
            if s.ack.0 != self.isn.wrapping_add(1) {
                self.owed_rst = Some(s.ack.0);
            }
            return;
        }
        if s.has(flags::SYN) && s.has(flags::ACK) {
            // The answer to the abandoned SYN is not the connection's.
            if s.ack.0 != self.isn.wrapping_add(1) {
                return;
            }
            self.iss = Some(s.seq.0);
            self.wscale = s.options.window_scale.unwrap_or(0).min(14);
            return;
        }
        if s.has(flags::ACK) {
            self.wnd = u64::from(s.window) << self.wscale;
            self.established |=
                s.ack.0 != 0 && s.ack.0.wrapping_sub(self.isn) >= 1 && s.ack.0.wrapping_sub(self.isn) < 1 << 30;
        }
        if s.has(flags::FIN) {
            self.ack_fin = Some(s.seq.0.wrapping_add(1));
        }
        if s.has(flags::ACK) && self.iss.is_some() {
            let off = s.ack.0.wrapping_sub(self.isn.wrapping_add(1)) as u64;
            if off <= self.len && off > self.acked {
                self.acked = off;
            }
            if off == self.len + 1 {
                self.acked = self.len;
                self.fin_acked = true;
            }
        }
    }

    /// The smoltcp senders' address (the adversary's, minus one).
    fn peer_ip(&self) -> std::net::IpAddr {
        match self.me.ip() {
            std::net::IpAddr::V4(a) => std::net::IpAddr::V4(std::net::Ipv4Addr::from(u32::from(a) - 1)),
            std::net::IpAddr::V6(a) => std::net::IpAddr::V6(std::net::Ipv6Addr::from(u128::from(a) - 1)),
        }
    }

    /// A random unicast source outside the simulated network: 10.0.0.0/8 or fd01::/64.
    fn spoofed(&self, x: u64) -> std::net::IpAddr {
        match self.me.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::from(0x0A00_0000 | (x as u32 & 0x00FF_FFFF)).into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::from((0xfd01u128 << 112) | u128::from(x >> 8)).into(),
        }
    }

    /// A source and destination of which one is not unicast (or a port is 0).
    fn martian(&self, x: u64, k: u64) -> ((std::net::IpAddr, u16), SocketAddr) {
        let v4 = self.me.is_ipv4();
        let bad: &[&str] = if v4 {
            &["255.255.255.255", "198.18.0.255", "198.18.0.0", "224.0.0.1", "127.0.0.1", "0.0.0.0"]
        } else {
            &["ff02::1", "::1", "::", "::ffff:198.18.0.2", "ff05::2"]
        };
        let b: std::net::IpAddr = bad[(x % bad.len() as u64) as usize].parse().expect("address");
        let good = self.spoofed(x);
        match k % 4 {
            0 => ((b, 4000), self.target),
            1 => ((good, 4000), SocketAddr::new(b, self.target.port())),
            2 => ((good, 0), self.target),
            _ => ((good, 4000), SocketAddr::new(self.target.ip(), 0)),
        }
    }

    /// A segment from `src:sport` to `dst` with no options.
    fn raw(&self, src: std::net::IpAddr, sport: u16, dst: SocketAddr, seq: u32, fl: Flags, payload: &[u8]) -> Vec<u8> {
        let r = SegmentRepr {
            src,
            dst: dst.ip(),
            src_port: sport,
            dst_port: dst.port(),
            seq: SeqNum(seq),
            ack: SeqNum(0),
            flags: fl,
            window: 1024,
            options: TcpOptions { mss: fl.contains(flags::SYN).then_some(1460), ..TcpOptions::default() },
            payload,
            urgent: 0,
            ip_id: 9,
        };
        let mut v = Vec::new();
        r.emit(&mut v);
        v
    }

    fn seg(&mut self, off: u64, len: usize, fl: Flags, alt: bool) -> Vec<u8> {
        let mut payload = vec![0u8; len];
        self.stream.fill_at(off, &mut payload);
        if alt {
            for b in &mut payload {
                *b = !*b;
            }
        }
        self.ts = self.ts.wrapping_add(1);
        let r = SegmentRepr {
            src: self.me.ip(),
            dst: self.target.ip(),
            src_port: self.me.port(),
            dst_port: self.target.port(),
            seq: SeqNum(self.isn.wrapping_add(1).wrapping_add(off as u32)),
            ack: SeqNum(self.iss.map_or(0, |i| i.wrapping_add(1))),
            flags: fl,
            window: 65535,
            options: TcpOptions { timestamps: Some((self.ts, 0)), ..TcpOptions::default() },
            payload: &payload,
            urgent: 0,
            ip_id: 9,
        };
        let mut v = Vec::new();
        r.emit(&mut v);
        v
    }

    /// Acts at `now`: returns packets to send towards the target.
    pub fn poll(&mut self, now: Instant, peers: &Peers) -> Vec<Vec<u8>> {
        if now < self.next {
            return Vec::new();
        }
        if self.fin_acked {
            // Answer the target's FIN, then stay quiet.
            if let Some(ack) = self.ack_fin.take() {
                let mut v = self.seg(self.len + 1, 0, flags::ACK, false);
                let ip = if self.me.is_ipv4() { 20 } else { 40 };
                v[ip + 8..ip + 12].copy_from_slice(&ack.to_be_bytes());
                // Fix the checksum after editing the ACK field.
                v[ip + 16] = 0;
                v[ip + 17] = 0;
                let sum =
                    wire::pseudo_header_sum(&addr_bytes(self.me.ip()), &addr_bytes(self.target.ip()), v.len() - ip);
                let c = wire::Checksum::from_sum(sum).add_bytes(&v[ip..]).finish();
                v[ip + 16..ip + 18].copy_from_slice(&c.to_be_bytes());
                return vec![v];
            }
            return Vec::new();
        }
        self.next = now + Duration::from_millis(1 + self.rng.below(5));
        let mut out = Vec::new();
        if let Some(seq) = self.owed_rst.take() {
            out.push(self.raw(self.me.ip(), self.me.port(), self.target, seq, flags::RST, &[]));
        }
        if self.iss.is_none() {
            // First a SYN with an ISN it then abandons (SYN-RECEIVED sees a new ISN next).
            let isn = if self.stale_syn_sent { self.isn } else { self.isn.wrapping_sub(1_000_000) };
            self.stale_syn_sent = true;
            let r = SegmentRepr {
                src: self.me.ip(),
                dst: self.target.ip(),
                src_port: self.me.port(),
                dst_port: self.target.port(),
                seq: SeqNum(isn),
                ack: SeqNum(0),
                flags: flags::SYN,
                window: 65535,
                options: TcpOptions {
                    mss: Some(self.mss as u16),
                    window_scale: Some(7),
                    sack_permitted: true,
                    timestamps: Some((self.ts, 0)),
                    ..TcpOptions::default()
                },
                payload: &[],
                urgent: 0,
                ip_id: 9,
            };
            let mut v = Vec::new();
            r.emit(&mut v);
            out.push(v);
            return out;
        }
        if self.step == 0 {
            // Complete the handshake.
            out.push(self.seg(0, 0, flags::ACK, false));
        }
        self.step += 1;
        let base = self.acked;
        let mss = self.mss as u64;
        match self.phase {
            // SegmentSmack: tiny segments at every other position ahead of RCV.NXT.
            0 => {
                for k in 0..64u64 {
                    let off = base + 2 + k * 2;
                    if off < self.len {
                        out.push(self.seg(off, 1, flags::ACK, false));
                    }
                }
            }
            // Overlapping retransmission with different bytes over delivered data.
            1 if base > 0 => {
                let from = self.rng.below(base);
                let l = (base - from).min(mss) as usize;
                out.push(self.seg(from, l, flags::ACK, true));
            }
            // A hole kept open: data far ahead.
            2 => {
                let off = (base + mss * 3).min(self.len.saturating_sub(1));
                let l = (self.len - off).min(mss) as usize;
                out.push(self.seg(off, l, flags::ACK | flags::PSH, false));
            }
            // Lying lengths: a data offset past the packet, a truncated copy, garbage.
            3 => {
                let mut v = self.seg(base, 10.min((self.len - base) as usize), flags::ACK, false);
                let ip = if self.me.is_ipv4() { 20 } else { 40 };
                if v.len() > ip + 12 {
                    v[ip + 12] = 0xF0;
                }
                out.push(v);
                let mut t = self.seg(base, 100.min((self.len - base) as usize), flags::ACK, false);
                t.truncate(t.len() / 2);
                out.push(t);
                let mut g = vec![0u8; 40];
                self.rng.fill(&mut g);
                out.push(g);
            }
            // Blind RST / SYN at random sequence numbers against every smoltcp connection.
            4 => {
                for s in &peers.senders {
                    let seq = self.rng.next_u64() as u32;
                    let fl = if self.rng.below(2) == 0 { flags::RST } else { flags::SYN };
                    let peer_ip = self.peer_ip();
                    let r = SegmentRepr {
                        src: peer_ip,
                        dst: self.target.ip(),
                        src_port: s.port,
                        dst_port: self.target.port(),
                        seq: SeqNum(seq),
                        ack: SeqNum(0),
                        flags: fl,
                        window: 0,
                        options: TcpOptions::default(),
                        payload: &[],
                        urgent: 0,
                        ip_id: 9,
                    };
                    let mut v = Vec::new();
                    r.emit(&mut v);
                    out.push(v);
                }
            }
            // Window probes and the right edge: a zero-length probe, a segment straddling the
            // edge (only its in-window part may be taken), one just beyond it.
            5 => {
                out.push(self.seg(base, 0, flags::ACK, false));
                let edge = base + self.wnd;
                if edge >= 4 && edge - 4 < self.len {
                    let l = (self.len - (edge - 4)).min(8) as usize;
                    out.push(self.seg(edge - 4, l, flags::ACK, false));
                }
                if edge < self.len {
                    out.push(self.seg(edge, 1, flags::ACK, false));
                }
            }
            // Blind data injection into every smoltcp connection at offsets around its window,
            // with the right SEQ but an ACK half the sequence space away (RFC 5961 §5): the
            // garbage must never reach a stream.
            6 => {
                let seen: Vec<(u16, (u32, u32, u16))> = self.seen.iter().map(|(k, v)| (*k, *v)).collect();
                for (port, (seq, ack, win)) in seen {
                    let wnd = u32::from(win).max(1) << 7;
                    let at =
                        [ack.wrapping_sub(10), ack, ack.wrapping_add(wnd / 2), ack.wrapping_add(wnd.saturating_sub(1))];
                    let pick = at[self.rng.below(4) as usize];
                    let mut junk = vec![0u8; 1 + self.rng.below(mss.min(512)) as usize];
                    self.rng.fill(&mut junk);
                    let r = SegmentRepr {
                        src: self.peer_ip(),
                        dst: self.target.ip(),
                        src_port: port,
                        dst_port: self.target.port(),
                        seq: SeqNum(pick),
                        ack: SeqNum(seq.wrapping_add(1 << 31)),
                        flags: flags::ACK | flags::PSH,
                        window: 65535,
                        options: TcpOptions::default(),
                        payload: &junk,
                        urgent: 0,
                        ip_id: 9,
                    };
                    let mut v = Vec::new();
                    r.emit(&mut v);
                    out.push(v);
                }
            }
            // A spoofed SYN flood from random unicast sources (with a small half-open table the
            // senders' handshakes then complete through SYN cookies), segments from and to
            // addresses that must never be answered, and a SYN at RCV.NXT (with and without
            // payload) against every smoltcp connection: a challenge ACK at most, never an
            // upload or an end.
            7 => {
                for _ in 0..(8 + self.rng.below(120)) {
                    let x = self.rng.next_u64();
                    let src = self.spoofed(x);
                    out.push(self.raw(src, 1024 + (x >> 48) as u16 % 60_000, self.target, x as u32, flags::SYN, &[]));
                }
                for k in 0..6u64 {
                    let x = self.rng.next_u64();
                    let (src, dst) = self.martian(x, k);
                    let fl = if k % 2 == 0 { flags::SYN } else { flags::ACK };
                    out.push(self.raw(src.0, src.1, dst, x as u32, fl, &[]));
                }
                let seen: Vec<(u16, u32)> = self.seen.iter().map(|(k, v)| (*k, v.1)).collect();
                for (port, rcv_nxt) in seen {
                    let payload: &[u8] = if self.rng.below(2) == 0 { &[] } else { b"syn-data" };
                    out.push(self.raw(self.peer_ip(), port, self.target, rcv_nxt, flags::SYN, payload));
                }
            }
            _ => {}
        }
        // Then progress: the next in-order segment (a real sender's retransmission).
        if base < self.len {
            let l = (self.len - base).min(mss) as usize;
            out.push(self.seg(base, l, flags::ACK, false));
        } else {
            out.push(self.seg(self.len, 0, flags::ACK | flags::FIN, false));
        }
        self.phase = (self.phase + 1) % 8;
        out
    }
}

fn addr_bytes(a: std::net::IpAddr) -> Vec<u8> {
    match a {
        std::net::IpAddr::V4(a) => a.octets().to_vec(),
        std::net::IpAddr::V6(a) => a.octets().to_vec(),
    }
}
