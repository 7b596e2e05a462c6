//! A hostile receiver: the send side's adversary. It connects to the target, whose
//! application sends it a seeded stream ([`SendPolicy::Source`](chimney::testkit::host::SendPolicy)),
//! and acknowledges that stream the ways an attacker or a broken stack would, a phase at a
//! time:
//!
//! ```text
//!   normal     one ACK per segment, SACK blocks for what arrived out of order
//!   division   an advance split into up to 8 ACKs (ACK division: cwnd must grow by bytes)
//!   storm      duplicate ACKs with lying SACK blocks (beyond what was sent, below the ACK,
//!              and over holes it never received: SACK reneging)
//!   unsent     ACKs of data never sent (RFC 5961 §5: dropped, nothing completed)
//!   optimistic an ACK of data sent but not received (at most once, 8 KiB: those bytes are
//!              lost to it, the rest is still checked)
//!   zero       a zero window for up to half a second (data refused, probes answered), then
//!              an update
//!   shrink     the right edge moved left
//!   stale      each ACK followed by an older one (reordering on the ACK path)
//! ```
//!
//! It checks what it receives: every byte equals the source pattern at its offset, nothing
//! lies beyond the right edge it ever advertised, and the stream ends with the target's FIN
//! after exactly the bytes the application sent. The simulator adds the congestion-window
//! bound (cwnd ≤ initial window + bytes acknowledged).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use chimney::testkit::host::source_pattern;
use chimney::testkit::rng::SplitMix64;
use chimney::wire::{self, flags, Flags, SegmentRepr, SeqNum, TcpOptions};
use chimney::Instant;

/// The ACK behaviour of the current phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Normal,
    Division,
    Storm,
    Unsent,
    Optimistic,
    Zero,
    Shrink,
    Stale,
}

const PHASES: [Phase; 8] = [
    Phase::Normal,
    Phase::Division,
    Phase::Storm,
    Phase::Unsent,
    Phase::Optimistic,
    Phase::Zero,
    Phase::Shrink,
    Phase::Stale,
];

/// Cumulative weights (out of 100) of [`PHASES`].
const PHASE_WEIGHTS: [u64; 8] = [50, 58, 66, 74, 80, 83, 91, 100];

/// The window it advertises when open (no window scaling: the field is the window).
const OPEN: u32 = 65_535;

/// The hostile receiver's state.
pub struct HostileReceiver {
    rng: SplitMix64,
    me: SocketAddr,
    target: SocketAddr,
    mss: u16,
    /// Bytes the target's application sends it.
    total: u64,
    isn: u32,
    /// The target's ISS, once its SYN-ACK arrived.
    iss: Option<u32>,
    ts: u32,
    /// The target's last TSval (echoed), once it sent one.
    ts_recent: Option<u32>,
    /// The target's stream as offsets (0 = its first data byte): everything below `rcv_nxt`
    /// arrived or was given up by an optimistic ACK; `ooo` holds what arrived above it.
    rcv_nxt: u64,
    ooo: BTreeMap<u64, u64>,
    /// Bytes acknowledged optimistically (never received).
    skipped: u64,
    /// The highest offset the target sent.
    snd_max: u64,
    /// Offset of the target's FIN.
    fin_at: Option<u64>,
    /// Its own FIN: when sent (for retransmission), and whether the target acknowledged it.
    fin_sent: Option<Instant>,
    fin_acked: bool,
    /// The window it advertises now, and the highest right edge it ever advertised.
    wnd: u32,
    max_edge: u64,
    phase: Phase,
    phase_until: Instant,
    optimistic_done: bool,
    /// Earlier (ACK, window) pairs, replayed in the stale phase.
    history: Vec<(u64, u32)>,
    out: Vec<Vec<u8>>,
    next: Instant,
    /// What it found wrong.
    pub failures: Vec<String>,
    /// Lying ACKs sent (unsent data, SACK beyond what was sent), for the report.
    pub lies: u64,
}

impl HostileReceiver {
    /// A receiver at `me` that will connect to `target` and expect `total` bytes.
    pub fn new(seed: u64, me: SocketAddr, target: SocketAddr, mss: u16, total: u64) -> HostileReceiver {
        let mut rng = SplitMix64::new(seed ^ 0x0ACC_ADD5);
        HostileReceiver {
            isn: rng.next_u64() as u32,
            ts: rng.next_u64() as u32,
            rng,
            me,
            target,
            mss,
            total,
            iss: None,
            ts_recent: None,
            rcv_nxt: 0,
            ooo: BTreeMap::new(),
            skipped: 0,
            snd_max: 0,
            fin_at: None,
            fin_sent: None,
            fin_acked: false,
            wnd: OPEN,
            max_edge: u64::from(OPEN),
            phase: Phase::Normal,
            phase_until: Instant::ZERO,
            optimistic_done: false,
            history: Vec::new(),
            out: Vec::new(),
            next: Instant::ZERO,
            failures: Vec::new(),
            lies: 0,
        }
    }

    /// Bytes the application is to send it.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes it holds in order (received, or given up by its optimistic ACK).
    pub fn received(&self) -> u64 {
        self.rcv_nxt
    }

    /// Bytes it gave up by acknowledging them before they arrived.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Whether the stream and both FINs are done.
    pub fn finished(&self) -> bool {
        self.fin_acked
    }

    /// When it next acts (retransmitting its SYN or FIN, ending a phase).
    pub fn next_due(&self) -> Option<Instant> {
        (!self.fin_acked).then_some(self.next)
    }

    fn seg(&mut self, ack: u64, wnd: u32, fl: Flags, sack: &[(u64, u64)]) -> Vec<u8> {
        let base = self.iss.map_or(0, |i| i.wrapping_add(1));
        // Its FIN takes one sequence number: ACKs after it come from one past it.
        let after_fin = self.fin_sent.is_some() && !fl.contains(flags::FIN);
        let seq = self.isn.wrapping_add(1).wrapping_add(u32::from(after_fin));
        self.ts = self.ts.wrapping_add(1);
        let mut blocks = [(0u32, 0u32); 4];
        let n = sack.len().min(3);
        for (b, &(l, r)) in blocks.iter_mut().zip(sack.iter().take(n)) {
            *b = (base.wrapping_add(l as u32), base.wrapping_add(r as u32));
        }
        let options = TcpOptions {
            timestamps: self.ts_recent.map(|r| (self.ts, r)),
            sack: (n > 0).then_some((blocks, n as u8)),
            ..TcpOptions::default()
        };
        self.packet(seq, base.wrapping_add(ack as u32), fl | flags::ACK, wnd.min(65_535) as u16, options)
    }

    /// One segment from it to the target, no payload.
    fn packet(&self, seq: u32, ack: u32, fl: Flags, window: u16, options: TcpOptions) -> Vec<u8> {
        let r = SegmentRepr {
            src: self.me.ip(),
            dst: self.target.ip(),
            src_port: self.me.port(),
            dst_port: self.target.port(),
            seq: SeqNum(seq),
            ack: SeqNum(ack),
            flags: fl,
            window,
            options,
            payload: &[],
            urgent: 0,
            ip_id: 11,
        };
        let mut v = Vec::new();
        r.emit(&mut v);
        v
    }

    /// An ACK of `ack` with window `wnd` and the SACK blocks of what it holds; remembers the
    /// right edge it advertised.
    fn ack(&mut self, ack: u64, wnd: u32) {
        self.max_edge = self.max_edge.max(ack + u64::from(wnd));
        if self.history.len() < 64 {
            self.history.push((ack, wnd));
        } else {
            let i = self.rng.below(64) as usize;
            self.history[i] = (ack, wnd);
        }
        let sack: Vec<(u64, u64)> = self.ooo.iter().rev().take(3).map(|(&l, &r)| (l, r)).collect();
        let v = self.seg(ack, wnd, flags::ACK, &sack);
        self.out.push(v);
    }

    /// The target's stream offset of sequence number `s` (None: before its first byte).
    fn offset(&self, s: SeqNum) -> Option<u64> {
        let d = s.0.wrapping_sub(self.iss?.wrapping_add(1));
        (d < 1 << 31).then_some(u64::from(d))
    }

    /// A packet from the target.
    pub fn on_packet(&mut self, now: Instant, p: &[u8]) {
        let Ok(s) = wire::parse(p) else { return };
        if self.fin_acked {
            // Closed: what the target (or the host stack after the upload) still says is late.
            return;
        }
        if s.has(flags::RST) {
            // After the whole stream and its FIN, the connection may already be the host
            // stack's (the target uploads in TIME-WAIT) and the ACK of our FIN lost: a reset
            // of the retransmitted FIN ends it. Before that, a reset is a failure.
            if self.fin_sent.is_none() || self.rcv_nxt != self.total {
                self.failures.push(format!("{now}: the target reset the connection"));
            }
            self.fin_acked = true;
            return;
        }
        if let Some((val, _)) = s.options.timestamps {
            self.ts_recent = Some(val);
        }
        if s.has(flags::SYN) {
            if s.has(flags::ACK) && s.ack.0 == self.isn.wrapping_add(1) {
                self.iss = Some(s.seq.0);
                // Complete the handshake.
                self.ack(0, self.wnd);
            }
            return;
        }
        if self.iss.is_none() {
            return;
        }
        if s.has(flags::ACK) && self.fin_sent.is_some() && s.ack.0 == self.isn.wrapping_add(2) {
            self.fin_acked = true;
        }
        let len = s.payload.len() as u64;
        let Some(off) = self.offset(s.seq) else {
            // Below its first byte: a zero-window probe at SND.UNA − 1 (answered), or junk.
            if len == 0 && !s.has(flags::FIN) {
                self.answer(now, self.rcv_nxt, 0, false);
            }
            return;
        };
        if len > 0 {
            let mut want = vec![0u8; s.payload.len()];
            source_pattern(off, &mut want);
            if want != s.payload {
                let at = want.iter().zip(s.payload).position(|(a, b)| a != b).unwrap_or(0);
                self.failures.push(format!("{now}: byte {} differs from what the application sent", off + at as u64));
            }
            if off + len > self.max_edge {
                self.failures.push(format!(
                    "{now}: data [{off}, {}) beyond the right edge it ever advertised ({})",
                    off + len,
                    self.max_edge
                ));
            }
            if off + len > self.total {
                self.failures.push(format!("{now}: data up to {} of a {}-byte stream", off + len, self.total));
            }
            self.snd_max = self.snd_max.max(off + len);
        }
        if s.has(flags::FIN) {
            let at = off + len;
            if at != self.total {
                self.failures.push(format!("{now}: FIN after {at} bytes of a {}-byte stream", self.total));
            }
            self.fin_at = Some(at);
        }
        // Take what fits (nothing while the window is shut: a full receiver drops it).
        let before = self.rcv_nxt;
        if len > 0 && self.wnd > 0 && off + len > self.rcv_nxt {
            let l = off.max(self.rcv_nxt);
            self.insert(l, off + len);
        }
        let advanced = self.rcv_nxt - before;
        let fin_in = self.fin_at.is_some_and(|f| f == self.rcv_nxt);
        // A pure ACK (of its SYN or FIN, a window update) needs no answer; data, a FIN and a
        // probe below RCV.NXT (keep-alive, zero-window) do.
        if len == 0 && !s.has(flags::FIN) && off >= self.rcv_nxt {
            return;
        }
        self.answer(now, before, advanced, fin_in);
    }

    fn insert(&mut self, l: u64, r: u64) {
        let (mut l, mut r) = (l, r);
        if let Some((&a, &b)) = self.ooo.range(..=l).next_back() {
            if b >= l {
                l = a;
                r = r.max(b);
                self.ooo.remove(&a);
            }
        }
        while let Some((&a, &b)) = self.ooo.range(l..=r).next() {
            self.ooo.remove(&a);
            r = r.max(b);
        }
        if l <= self.rcv_nxt {
            self.rcv_nxt = self.rcv_nxt.max(r);
        } else {
            self.ooo.insert(l, r);
        }
    }

    /// The ACKs the current phase sends for one segment.
    fn answer(&mut self, now: Instant, before: u64, advanced: u64, fin_in: bool) {
        let fin = u64::from(fin_in);
        let ack = self.rcv_nxt + fin;
        match self.phase {
            Phase::Division if advanced > 1 => {
                let k = advanced.min(8);
                for i in 1..=k {
                    self.ack(before + advanced * i / k + if i == k { fin } else { 0 }, self.wnd);
                }
            }
            Phase::Storm => {
                self.ack(ack, self.wnd);
                for _ in 0..4 {
                    let lie = match self.rng.below(3) {
                        0 => (self.snd_max + 100, self.snd_max + 5000),
                        1 => (self.rcv_nxt.saturating_sub(1000), self.rcv_nxt),
                        _ if self.snd_max > self.rcv_nxt + 2 => {
                            let a = self.rcv_nxt + 1 + self.rng.below(self.snd_max - self.rcv_nxt - 1);
                            (a, (a + 1 + self.rng.below(3000)).min(self.snd_max))
                        }
                        _ => (self.snd_max + 1, self.snd_max + 2),
                    };
                    self.lies += 1;
                    let v = self.seg(ack, self.wnd, flags::ACK, &[lie]);
                    self.out.push(v);
                }
            }
            Phase::Unsent => {
                // Beyond anything the target can have sent (the stream and its FIN): what it
                // sent and this receiver has not seen yet would make the lie true.
                let beyond = self.total + 2 + self.rng.below(1 << 20);
                self.lies += 1;
                let v = self.seg(beyond, self.wnd, flags::ACK, &[]);
                self.out.push(v);
                self.ack(ack, self.wnd);
            }
            Phase::Optimistic if !self.optimistic_done && self.snd_max > self.rcv_nxt && self.fin_at.is_none() => {
                self.optimistic_done = true;
                let to = self.snd_max.min(self.rcv_nxt + 8192);
                self.skipped += to - self.rcv_nxt - self.held_in(self.rcv_nxt, to);
                self.insert(self.rcv_nxt, to);
                self.ack(self.rcv_nxt, self.wnd);
            }
            Phase::Stale => {
                self.ack(ack, self.wnd);
                if !self.history.is_empty() {
                    let (a, w) = self.history[self.rng.below(self.history.len() as u64) as usize];
                    if a <= ack {
                        let v = self.seg(a, w, flags::ACK, &[]);
                        self.out.push(v);
                    }
                }
            }
            _ => self.ack(ack, self.wnd),
        }
        if fin_in && self.fin_sent.is_none() {
            // The stream is whole: close its side too.
            self.fin_sent = Some(now);
            let v = self.seg(ack, self.wnd, flags::FIN, &[]);
            self.out.push(v);
        }
    }

    /// Bytes of [l, r) it already holds above `rcv_nxt`.
    fn held_in(&self, l: u64, r: u64) -> u64 {
        self.ooo.iter().map(|(&a, &b)| b.min(r).saturating_sub(a.max(l))).sum()
    }

    /// Acts at `now`: its SYN, phase changes, its FIN again; returns packets for the target.
    pub fn poll(&mut self, now: Instant) -> Vec<Vec<u8>> {
        if now >= self.next && !self.fin_acked {
            self.next = now + Duration::from_millis(200);
            if self.iss.is_none() {
                let options = TcpOptions {
                    mss: Some(self.mss),
                    sack_permitted: true,
                    timestamps: Some((self.ts, 0)),
                    ..TcpOptions::default()
                };
                let v = self.packet(self.isn, 0, flags::SYN, OPEN as u16, options);
                self.out.push(v);
            } else if let Some(t) = self.fin_sent {
                if now >= t + Duration::from_millis(200) {
                    // Its FIN again, with backoff.
                    self.fin_sent = Some(now + now.saturating_duration_since(t));
                    let ack = self.rcv_nxt + 1;
                    let v = self.seg(ack, self.wnd, flags::FIN, &[]);
                    self.out.push(v);
                }
            }
        }
        if self.iss.is_some() && now >= self.phase_until {
            let was_zero = self.wnd == 0;
            // Half the time plain, a zero window rarely (it stops the transfer while it lasts).
            let x = self.rng.below(100);
            let at = PHASE_WEIGHTS.iter().position(|&w| x < w).unwrap_or(0);
            self.phase = PHASES[at];
            let ms = match self.phase {
                Phase::Zero => 20 + self.rng.below(500),
                _ => 10 + self.rng.below(50),
            };
            self.phase_until = now + Duration::from_millis(ms);
            self.wnd = match self.phase {
                Phase::Zero => 0,
                Phase::Shrink => (OPEN / 8).max(u32::from(self.mss)),
                _ => OPEN,
            };
            if was_zero && self.wnd > 0 {
                // The window opens again: say so (a real receiver's window update).
                let ack = self.rcv_nxt + u64::from(self.fin_at.is_some_and(|f| f == self.rcv_nxt));
                self.ack(ack, self.wnd);
            }
        }
        if self.iss.is_some() && !self.fin_acked {
            self.next = self.next.min(self.phase_until);
        }
        std::mem::take(&mut self.out)
    }

    /// Packets owed now (answers to what arrived).
    pub fn take_out(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.out)
    }
}
