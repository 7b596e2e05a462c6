//! The host stack's passive open: SYN → SYN-ACK (MSS, window scale, SACK-permitted,
//! timestamps negotiated from what the peer offered) → ACK, then the state handed to the
//! offload (const / cached / delegated, spec §6.2). Data the host receives in order with the
//! handshake ACK is ACKed by the host and handed over as `BufferedData`; anything else it
//! received but did not ACK is forwarded to the offloaded connection (MiniportTcpOffloadForward).

use core::net::SocketAddr;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use super::syncookie::{self, CookieKeys, Decoded, SynCookies};
use super::{synack_options, tuple_hash, FourTuple};
use crate::ndis::{
    const_flags, Mdl, NblChain, NblId, NetBuffer, NetBufferList, PoolTag, TcpCachedState, TcpConnectionState,
    TcpConstState, TcpDelegatedState, TcpOffloadState,
};
use crate::tcp::{Negotiated, SeqNum, TcpConfig};
use crate::time::Instant;
use crate::wire::{flags, Segment, SegmentRepr, TcpOptions};

/// Passive-open limits.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Half-open connections kept at most (SYNs beyond are dropped and counted).
    pub max_embryos: usize,
    /// SYN-ACK retransmissions before a half-open connection is forgotten.
    pub synack_retries: u32,
    /// First SYN-ACK retransmission timeout.
    pub synack_rto: Duration,
    /// When SYNs are answered with a cookie instead of a half-open entry.
    pub syncookies: SynCookies,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            max_embryos: 1024,
            synack_retries: 3,
            synack_rto: Duration::from_secs(1),
            syncookies: SynCookies::Auto,
        }
    }
}

#[derive(Debug)]
struct Embryo {
    iss: SeqNum,
    rcv_nxt: SeqNum,
    peer: TcpOptions,
    ts_recent: Option<u32>,
    ts_offset: u32,
    retries: u32,
    rto_at: Instant,
    buffered: Vec<u8>,
    forward: Vec<Vec<u8>>,
    /// The largest window the peer advertised during the handshake (its SYN's is never
    /// scaled, RFC 7323 §2.2).
    max_snd_wnd: u32,
}

impl Embryo {
    /// The half-open connection a SYN opens with our ISS `iss`; `h` is the tuple's keyed
    /// hash (its high half is the timestamp offset). No retransmission scheduled yet.
    fn from_syn(seg: &Segment<'_>, iss: SeqNum, h: u64, now: Instant) -> Embryo {
        let mut peer = seg.options;
        peer.window_scale = peer.window_scale.map(|s| s.min(14));
        Embryo {
            iss,
            rcv_nxt: seg.seq.plus(1),
            peer,
            ts_recent: seg.options.timestamps.map(|(v, _)| v),
            ts_offset: (h >> 32) as u32,
            retries: 0,
            rto_at: now,
            buffered: Vec::new(),
            forward: Vec::new(),
            max_snd_wnd: 0,
        }
    }
}

/// An active open in SYN-SENT (RFC 9293 §3.10.7.3): our SYN and its retransmission.
#[derive(Debug)]
struct Connecting {
    iss: SeqNum,
    ts_offset: u32,
    retries: u32,
    rto_at: Instant,
}

/// A connection the handshake completed, ready to offload.
#[derive(Debug)]
pub(crate) struct Established {
    pub negotiated: Negotiated,
    pub peer: TcpOptions,
    pub buffered: Vec<u8>,
    pub forward: Vec<Vec<u8>>,
    pub serial: u64,
}

impl Established {
    /// The offload state tree for this connection (spec §6.2).
    pub fn offload_state(&self, cfg: &TcpConfig) -> TcpOffloadState {
        let n = &self.negotiated;
        let mut fl = 0;
        if n.ts_recent.is_some() {
            fl |= const_flags::TIMESTAMP_ENABLED;
        }
        if n.sack {
            fl |= const_flags::SACK_ENABLED;
        }
        if n.rcv_wscale.is_some() {
            fl |= const_flags::WINDOW_SCALING_ENABLED;
        }
        let mut buffered_data = NblChain::new();
        if !self.buffered.is_empty() {
            let nb = NetBuffer::new(vec![Mdl::from_bytes(self.buffered.clone())]);
            buffered_data.push_back(NetBufferList::new(NblId::new(PoolTag::Host, self.serial), nb));
        }
        TcpOffloadState {
            constant: TcpConstState {
                flags: fl,
                remote_port: n.remote.port(),
                local_port: n.local.port(),
                rcv_wind_scale: n.rcv_wscale.unwrap_or(0),
                snd_wind_scale: self.peer.window_scale.unwrap_or(0).min(14),
                remote_mss: n.peer_mss,
            },
            cached: TcpCachedState { initial_rcv_wnd: cfg.rcv_wnd, rcv_indication_size: cfg.rcv_indication_size },
            delegated: TcpDelegatedState {
                state: Some(TcpConnectionState::Established),
                rcv_nxt: n.rcv_nxt,
                rcv_wnd: n.rcv_adv.wrapping_sub(n.rcv_nxt),
                ts_recent: n.ts_recent.unwrap_or(0),
                buffered_data,
                snd_una: n.snd_nxt,
                snd_nxt: n.snd_nxt,
                send_data: NblChain::new(),
            },
        }
    }
}

/// What the listener did with a segment.
pub(crate) enum Outcome {
    Handled,
    /// Dropped without an answer, counted under this reason.
    Dropped(crate::tcp::TcpDrop),
    /// Not acceptable to the host stack: answer with RST.
    Refuse,
    Established(Box<Established>),
    /// An active open failed: the peer reset it.
    ConnectFailed,
}

pub(crate) struct Listener {
    cfg: ListenerConfig,
    keys: ahash::RandomState,
    cookies: CookieKeys,
    embryos: HashMap<FourTuple, Embryo, ahash::RandomState>,
    /// SYN-ACK retransmission deadlines, earliest first; an entry whose embryo is gone or
    /// has a later deadline is skipped when it comes up (no scan of the table per call: a
    /// full table is the normal state under a flood).
    timers: BinaryHeap<Reverse<(Instant, FourTuple)>>,
    /// Tuples that recently sent data no cookie could account for (their peers believe in a
    /// connection whose first segment was lost), and when: their bare ACKs get no RST.
    suspects: HashMap<FourTuple, Instant, ahash::RandomState>,
    serial: u64,
    /// When the last cookie went out: ACKs for no half-open are checked as cookies only
    /// within two cookie lifetimes of it (as Linux), so that a random ACK costs no hash.
    last_cookie: Option<Instant>,
    /// Active opens waiting for their SYN-ACK.
    connecting: HashMap<FourTuple, Connecting, ahash::RandomState>,
    /// Active opens that gave up (no answer after the retries), for the engine to report.
    pub connect_timeouts: Vec<FourTuple>,
    /// What the listener counted.
    pub counts: ListenerCounts,
}

/// What the listener counted (reported in `EngineStats`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerCounts {
    /// SYNs dropped because the half-open table was full and cookies are off.
    pub syn_overflow: u64,
    /// SYN-ACKs sent with a cookie instead of a half-open entry.
    pub cookies_sent: u64,
    /// ACKs whose cookie was genuine: connections rebuilt from it.
    pub cookies_valid: u64,
    /// ACKs checked as cookies that were not (answered with RST).
    pub cookies_invalid: u64,
    /// SYNs with another ISN for a half-open connection, answered with a challenge ACK.
    pub challenged: u64,
}

impl ListenerCounts {
    /// Adds another engine's counts (shards of one device report one total).
    pub fn merge(&mut self, o: &ListenerCounts) {
        self.syn_overflow += o.syn_overflow;
        self.cookies_sent += o.cookies_sent;
        self.cookies_valid += o.cookies_valid;
        self.cookies_invalid += o.cookies_invalid;
        self.challenged += o.challenged;
    }
}

/// How long after the last cookie ACKs for no half-open are checked as cookies.
const COOKIE_WINDOW: Duration = Duration::from_secs(128);
/// A tuple whose ACK no cookie accounts for is spared RSTs this long (a lost handshake ACK's
/// peer retransmits from ISN + 1 well within it), then reset; remembered at most
/// SUSPECT_FOR, at most MAX_SUSPECTS tuples.
const RECHECK: Duration = Duration::from_secs(3);
const SUSPECT_FOR: Duration = Duration::from_secs(64);
const MAX_SUSPECTS: usize = 4096;

fn ms(now: Instant) -> u32 {
    (now.as_nanos() / 1_000_000) as u32
}

impl Listener {
    pub fn new(cfg: ListenerConfig, seed: u64, secret: u64) -> Listener {
        // ISNs and timestamp offsets (RFC 6528) are keyed by the secret too: a seed anyone can
        // read must not predict them.
        let keys = ahash::RandomState::with_seeds(
            seed ^ 0x1234_5678 ^ secret,
            seed.rotate_left(7) ^ secret.rotate_left(13),
            seed.rotate_left(40),
            seed ^ 0xDEAD ^ secret.rotate_left(41),
        );
        let table =
            ahash::RandomState::with_seeds(seed.rotate_left(3), seed ^ 0xBEEF, seed.rotate_left(50), seed ^ 0xF00D);
        Listener {
            cfg,
            keys,
            cookies: CookieKeys::new(seed, secret),
            embryos: HashMap::with_hasher(table),
            timers: BinaryHeap::new(),
            suspects: HashMap::with_hasher(ahash::RandomState::with_seeds(seed ^ 5, seed ^ 6, seed ^ 7, seed ^ 8)),
            serial: 0,
            last_cookie: None,
            connecting: HashMap::with_hasher(ahash::RandomState::with_seeds(seed ^ 9, seed ^ 10, seed ^ 11, seed ^ 12)),
            connect_timeouts: Vec::new(),
            counts: ListenerCounts::default(),
        }
    }

    /// Whether an active open to this tuple is in progress.
    pub fn is_connecting(&self, key: &FourTuple) -> bool {
        self.connecting.contains_key(key)
    }

    /// The SYN of an active open.
    fn syn(key: FourTuple, c: &Connecting, now: Instant, cfg: &TcpConfig) -> SegmentRepr<'static> {
        let options = TcpOptions {
            mss: Some(cfg.mss),
            window_scale: Some(cfg.window_scale()),
            sack_permitted: true,
            sack: None,
            timestamps: Some((ms(now).wrapping_add(c.ts_offset), 0)),
        };
        let window = cfg.rcv_wnd.min(0xFFFF) as u16;
        SegmentRepr { options, ..SegmentRepr::control(key.0, key.1, c.iss, SeqNum(0), flags::SYN, window) }
    }

    /// Starts an active open from `key.0` to `key.1`: SYN now, retransmitted on the SYN-ACK
    /// timer; the SYN-ACK completes it like a passive open's ACK does.
    pub fn connect(&mut self, now: Instant, key: FourTuple, cfg: &TcpConfig, push: &mut dyn FnMut(&SegmentRepr<'_>)) {
        let h = tuple_hash(&self.keys, &key);
        let iss = SeqNum((h as u32).wrapping_add((now.as_nanos() / 4000) as u32));
        let c = Connecting { iss, ts_offset: (h >> 32) as u32, retries: 0, rto_at: now + self.cfg.synack_rto };
        push(&Self::syn(key, &c, now, cfg));
        self.timers.push(Reverse((c.rto_at, key)));
        self.connecting.insert(key, c);
    }

    /// A segment for an active open in SYN-SENT (RFC 9293 §3.10.7.3).
    fn on_syn_sent(
        &mut self,
        now: Instant,
        key: FourTuple,
        seg: &Segment<'_>,
        cfg: &TcpConfig,
        push: &mut dyn FnMut(&SegmentRepr<'_>),
    ) -> Outcome {
        let Some(c) = self.connecting.get(&key) else { return Outcome::Handled };
        let ack_ok = seg.has(flags::ACK) && seg.ack == c.iss.plus(1);
        if seg.has(flags::ACK) && !ack_ok {
            // An ACK of something we never sent: RST (unless it is one).
            if seg.has(flags::RST) {
                return Outcome::Dropped(crate::tcp::TcpDrop::RstOutOfWindow);
            }
            push(&reset_for(key.0, key.1, seg));
            return Outcome::Handled;
        }
        if seg.has(flags::RST) {
            if ack_ok {
                self.connecting.remove(&key);
                return Outcome::ConnectFailed;
            }
            return Outcome::Dropped(crate::tcp::TcpDrop::RstOutOfWindow);
        }
        if !seg.has(flags::SYN) || !ack_ok {
            // A bare SYN (simultaneous open) or a segment without ACK: not handled here.
            return Outcome::Dropped(crate::tcp::TcpDrop::NoAck);
        }
        let c = self.connecting.remove(&key).expect("present");
        let mut peer = seg.options;
        peer.window_scale = peer.window_scale.map(|s| s.min(14));
        let ts_recent = peer.timestamps.map(|(v, _)| v);
        let rcv_nxt = seg.seq.plus(1);
        let wscale = peer.window_scale.map(|_| cfg.window_scale());
        let unit = 1u32 << wscale.unwrap_or(0);
        let window = cfg.rcv_wnd.min(0xFFFF * unit);
        let rcv_adv = rcv_nxt.plus(window);
        // Our ACK completes the handshake (its window is scaled).
        let tsval = ms(now).wrapping_add(c.ts_offset);
        let options = TcpOptions { timestamps: ts_recent.map(|r| (tsval, r)), ..TcpOptions::default() };
        let field = (window / unit).min(0xFFFF) as u16;
        push(&SegmentRepr { options, ..SegmentRepr::control(key.0, key.1, c.iss.plus(1), rcv_nxt, flags::ACK, field) });
        self.serial += 1;
        let negotiated = Negotiated {
            local: key.0,
            remote: key.1,
            rcv_nxt: rcv_nxt.0,
            snd_nxt: c.iss.plus(1).0,
            snd_max: c.iss.plus(1).0,
            rcv_wscale: wscale,
            peer_mss: peer.mss.unwrap_or(536),
            snd_wscale: peer.window_scale,
            sack: peer.sack_permitted,
            ts_recent,
            ts_offset: c.ts_offset,
            rcv_adv: rcv_adv.0,
            // The SYN-ACK's window is never scaled (RFC 7323 §2.2).
            max_snd_wnd: u32::from(seg.window),
        };
        Outcome::Established(Box::new(Established {
            negotiated,
            peer,
            buffered: Vec::new(),
            forward: Vec::new(),
            serial: self.serial,
        }))
    }

    /// Half-open connections held now.
    pub fn half_open(&self) -> usize {
        self.embryos.len()
    }

    /// Bytes the half-open table holds (entries, control bytes, and what they point to).
    pub fn memory(&self) -> usize {
        let slot = core::mem::size_of::<(FourTuple, Embryo)>() + 1;
        let heap: usize = self
            .embryos
            .values()
            .map(|e| e.buffered.capacity() + e.forward.iter().map(|f| f.capacity() + 24).sum::<usize>())
            .sum();
        let timers = self.timers.capacity() * core::mem::size_of::<(Instant, FourTuple)>();
        let suspects = self.suspects.capacity() * (core::mem::size_of::<(FourTuple, Instant)>() + 1);
        self.embryos.capacity() * slot + heap + timers + suspects
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    fn synack(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        e: &Embryo,
        now: Instant,
        cfg: &TcpConfig,
    ) -> SegmentRepr<'static> {
        let tsval = ms(now).wrapping_add(e.ts_offset);
        let mut options = synack_options(cfg, &e.peer, tsval);
        if let (Some((_, _)), Some(r)) = (options.timestamps, e.ts_recent) {
            options.timestamps = Some((tsval, r));
        }
        let window = cfg.rcv_wnd.min(0xFFFF) as u16;
        SegmentRepr {
            options,
            ..SegmentRepr::control(local, remote, e.iss, e.rcv_nxt, flags::SYN | flags::ACK, window)
        }
    }

    /// The host's ACK in SYN-RECEIVED: SEQ = ISS + 1, acknowledging RCV.NXT.
    fn ack(local: SocketAddr, remote: SocketAddr, e: &Embryo, tsval: u32, window: u32) -> SegmentRepr<'static> {
        let options = TcpOptions { timestamps: e.ts_recent.map(|r| (tsval, r)), ..TcpOptions::default() };
        let window = window.min(0xFFFF) as u16;
        SegmentRepr { options, ..SegmentRepr::control(local, remote, e.iss.plus(1), e.rcv_nxt, flags::ACK, window) }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn on_segment(
        &mut self,
        now: Instant,
        (local, remote): FourTuple,
        seg: &Segment<'_>,
        raw: &[u8],
        cfg: &TcpConfig,
        budget: &mut crate::tcp::ReplyBudget,
        push: &mut dyn FnMut(&SegmentRepr<'_>),
    ) -> Outcome {
        let key = (local, remote);
        if self.connecting.contains_key(&key) {
            return self.on_syn_sent(now, key, seg, cfg, push);
        }
        if let Some(e) = self.embryos.get_mut(&key) {
            if seg.has(flags::RST) {
                // RFC 5961 §3 in SYN-RECEIVED: at RCV.NXT the half-open is gone; elsewhere in
                // the window a challenge ACK (within the engine's budget), which a peer that
                // really reset answers with an RST at RCV.NXT; outside, nothing.
                let wnd = cfg.rcv_wnd.min(0xFFFF);
                if seg.seq == e.rcv_nxt {
                    self.embryos.remove(&key);
                    return Outcome::Dropped(crate::tcp::TcpDrop::EmbryoReset);
                }
                if seg.seq.in_range(e.rcv_nxt, e.rcv_nxt.plus(wnd)) {
                    if budget.allow(now) {
                        let tsval = ms(now).wrapping_add(e.ts_offset);
                        // Not a SYN: its window is scaled when both offered scaling.
                        let shift = e.peer.window_scale.map_or(0, |_| cfg.window_scale());
                        push(&Self::ack(local, remote, e, tsval, wnd.div_ceil(1 << shift)));
                    }
                    return Outcome::Dropped(crate::tcp::TcpDrop::RstInWindow);
                }
                return Outcome::Dropped(crate::tcp::TcpDrop::RstOutOfWindow);
            }
            if seg.has(flags::SYN) && seg.has(flags::ACK) {
                // A SYN-ACK to our passive open is nonsense from the peer: ignored, and the
                // half-open is left as it is (a blind SYN-ACK must not end a handshake).
                return Outcome::Dropped(crate::tcp::TcpDrop::Syn);
            }
            if seg.has(flags::SYN) {
                if seg.seq.plus(1) == e.rcv_nxt {
                    // The same SYN again (our SYN-ACK was lost): answer again.
                    let r = self.synack(local, remote, self.embryos.get(&key).expect("present"), now, cfg);
                    push(&r);
                    return Outcome::Handled;
                }
                // A SYN with another ISN (RFC 5961 §4's challenge, applied here too): an ACK of
                // the old SYN, within the budget. A peer that really started over is in
                // SYN-SENT, finds that ACK unacceptable and answers with an RST at exactly our
                // RCV.NXT, which ends the half-open; its next SYN then opens a new one. The
                // two sequence spaces never mix, and a blind SYN on the tuple cannot end a
                // handshake in progress (replacing the half-open let it: simulator seed 108362).
                self.counts.challenged += 1;
                if budget.allow(now) {
                    let tsval = ms(now).wrapping_add(e.ts_offset);
                    let shift = e.peer.window_scale.map_or(0, |_| cfg.window_scale());
                    push(&Self::ack(local, remote, e, tsval, cfg.rcv_wnd.min(0xFFFF).div_ceil(1 << shift)));
                }
                return Outcome::Dropped(crate::tcp::TcpDrop::Syn);
            }
            if !seg.has(flags::ACK) {
                // RFC 9293 §3.10.7.4: no ACK bit in SYN-RECEIVED → drop.
                return Outcome::Handled;
            }
            if seg.ack != e.iss.plus(1) {
                return Outcome::Refuse;
            }
            let e = self.embryos.remove(&key).expect("present");
            return self.establish(now, key, e, seg, raw, cfg, push);
        }
        if seg.has(flags::ACK) && !seg.has(flags::SYN | flags::RST) {
            let checked = self.cookie_checked(now);
            if let Some(e) = self.cookie_ack(now, key, seg) {
                return self.establish(now, key, e, seg, raw, cfg, push);
            }
            if checked && self.spare_once(now, key) {
                // An ACK whose cookie fails while cookies are in use may come from a peer
                // whose handshake ACK (and first segment) were lost: its retransmission from
                // ISN + 1 will pass. An RST now (as Linux sends) would kill that connection, so
                // the first failure of a tuple is answered with silence; one still failing
                // after RECHECK (no valid cookie came meanwhile) gets its RST.
                return Outcome::Handled;
            }
            return Outcome::Refuse;
        }
        if seg.has(flags::SYN) && !seg.has(flags::ACK) {
            let full = self.embryos.len() >= self.cfg.max_embryos;
            match self.cfg.syncookies {
                SynCookies::Never if full => {
                    self.counts.syn_overflow += 1;
                    return Outcome::Handled;
                }
                SynCookies::Always => return self.cookie_synack(now, key, seg, cfg, push),
                SynCookies::Auto if full => return self.cookie_synack(now, key, seg, cfg, push),
                _ => {}
            }
            let h = tuple_hash(&self.keys, &key);
            // RFC 6528: a keyed hash of the tuple plus a 4 µs clock.
            let iss = SeqNum((h as u32).wrapping_add((now.as_nanos() / 4000) as u32));
            let e = Embryo {
                rto_at: now + self.cfg.synack_rto,
                // The SYN's window is never scaled (RFC 7323 §2.2).
                max_snd_wnd: u32::from(seg.window),
                ..Embryo::from_syn(seg, iss, h, now)
            };
            let r = self.synack(local, remote, &e, now, cfg);
            push(&r);
            self.timers.push(Reverse((e.rto_at, key)));
            self.embryos.insert(key, e);
            // Entries of replaced or completed half-opens wait in the heap until their time;
            // a stream of SYNs replacing one another must not grow it without bound.
            if self.timers.len() > 4 * self.cfg.max_embryos.max(16) {
                self.timers = self.embryos.iter().map(|(k, e)| Reverse((e.rto_at, *k))).collect();
            }
            return Outcome::Handled;
        }
        if !seg.has(flags::SYN | flags::ACK | flags::RST) {
            // LISTEN, RFC 9293 §3.10.7.2: a segment with neither SYN nor ACK (data alone, FIN
            // alone, FIN+PSH+URG) is dropped without an answer.
            return Outcome::Dropped(crate::tcp::TcpDrop::ListenNoSynNoAck);
        }
        Outcome::Refuse
    }

    /// The handshake ACK (or a cookie ACK) completes `e`: the connection to offload.
    #[allow(clippy::too_many_arguments)]
    fn establish(
        &mut self,
        now: Instant,
        (local, remote): FourTuple,
        mut e: Embryo,
        seg: &Segment<'_>,
        raw: &[u8],
        cfg: &TcpConfig,
        push: &mut dyn FnMut(&SegmentRepr<'_>),
    ) -> Outcome {
        if let (Some(_), Some((tsval, _))) = (e.ts_recent, seg.options.timestamps) {
            e.ts_recent = Some(tsval);
        }
        // The handshake ACK's window is scaled (RFC 7323 §2.2).
        let scaled = u32::from(seg.window) << e.peer.window_scale.unwrap_or(0).min(14);
        e.max_snd_wnd = e.max_snd_wnd.max(scaled);
        let in_order = seg.seq == e.rcv_nxt;
        let window = cfg.rcv_wnd.min(0xFFFF);
        let rcv_adv = e.rcv_nxt.plus(window);
        if in_order && !seg.payload.is_empty() && !seg.has(flags::FIN) && seg.payload.len() <= window as usize {
            // The host receives and ACKs this data; it becomes BufferedData (R-BUF-1).
            e.buffered.extend_from_slice(seg.payload);
            e.rcv_nxt = e.rcv_nxt.plus(seg.payload.len() as u32);
            let wscale = e.peer.window_scale.map(|_| cfg.window_scale()).unwrap_or(0);
            let wnd = rcv_adv.diff(e.rcv_nxt).max(0) as u32;
            let tsval = ms(now).wrapping_add(e.ts_offset);
            push(&Self::ack(local, remote, &e, tsval, wnd.div_ceil(1 << wscale)));
        } else if !seg.payload.is_empty() || seg.has(flags::FIN) {
            // Received but not ACKed by the host: forwarded after the offload (R-BUF-5).
            e.forward.push(raw.to_vec());
        }
        self.serial += 1;
        let negotiated = Negotiated {
            local,
            remote,
            rcv_nxt: e.rcv_nxt.0,
            snd_nxt: e.iss.plus(1).0,
            snd_max: e.iss.plus(1).0,
            rcv_wscale: e.peer.window_scale.map(|_| cfg.window_scale()),
            peer_mss: e.peer.mss.unwrap_or(536),
            snd_wscale: e.peer.window_scale,
            sack: e.peer.sack_permitted,
            ts_recent: e.ts_recent,
            ts_offset: e.ts_offset,
            rcv_adv: rcv_adv.0,
            max_snd_wnd: e.max_snd_wnd,
        };
        Outcome::Established(Box::new(Established {
            negotiated,
            peer: e.peer,
            buffered: e.buffered,
            forward: e.forward,
            serial: self.serial,
        }))
    }

    /// Whether an ACK from `key` that no cookie accounts for is spared its RST: yes the first
    /// time (the tuple is remembered), and while RECHECK has not passed since; after it the
    /// RST goes out and the tuple is forgotten. Bounded: a full table first forgets what
    /// expired, then spares nobody new (the RST goes out, as in Linux).
    fn spare_once(&mut self, now: Instant, key: FourTuple) -> bool {
        match self.suspects.get(&key) {
            Some(&t) if now < t + RECHECK => true,
            Some(&t) if now < t + SUSPECT_FOR => {
                self.suspects.remove(&key);
                false
            }
            _ => {
                if self.suspects.len() >= MAX_SUSPECTS {
                    self.suspects.retain(|_, t| now < *t + SUSPECT_FOR);
                    if self.suspects.len() >= MAX_SUSPECTS {
                        return false;
                    }
                }
                self.suspects.insert(key, now);
                true
            }
        }
    }

    /// Whether an ACK for no half-open connection is checked as a cookie at `now`.
    fn cookie_checked(&self, now: Instant) -> bool {
        let recent = self.last_cookie.is_some_and(|t| now.saturating_duration_since(t) < COOKIE_WINDOW);
        match self.cfg.syncookies {
            SynCookies::Never => false,
            SynCookies::Always => true,
            SynCookies::Auto => recent,
        }
    }

    /// An ACK for no half-open connection: if it carries a genuine, recent cookie, the
    /// half-open connection the cookie stands for (RFC 4987 §3.6).
    fn cookie_ack(&mut self, now: Instant, key: FourTuple, seg: &Segment<'_>) -> Option<Embryo> {
        if !self.cookie_checked(now) {
            return None;
        }
        let isn = SeqNum(seg.seq.0.wrapping_sub(1));
        let iss = SeqNum(seg.ack.0.wrapping_sub(1));
        let h = tuple_hash(&self.keys, &key);
        // TSecr echoes the TSval of our cookie SYN-ACK, whose low bits are the options. It is
        // not checked further (as Linux): a peer that echoes something else gets the options
        // those bits say, and since "no window scale" has its own code (0xF), our own scaling
        // always matches the SYN-ACK's, so the window we mean is the window the peer reads.
        let decoded = self
            .cookies
            .check(now, &key, isn, iss)
            .and_then(|mss| Decoded::new(mss, seg.options.timestamps.map(|(_, ecr)| ecr)));
        let Some(d) = decoded else {
            self.counts.cookies_invalid += 1;
            return None;
        };
        self.counts.cookies_valid += 1;
        let peer = TcpOptions {
            mss: Some(d.mss),
            window_scale: d.wscale,
            sack_permitted: d.sack,
            sack: None,
            timestamps: seg.options.timestamps,
        };
        // The ACK stands for the SYN here: its SEQ is ISN + 1. The SYN's window is not in the
        // cookie; the ACK's (scaled) is taken in `establish`.
        Some(Embryo { peer, rcv_nxt: seg.seq, ..Embryo::from_syn(seg, iss, h, now) })
    }

    /// Closes every half-open connection with an RST (SEQ = ISS + 1, RFC 9293 §3.10.7.4: the
    /// host stops listening, e.g. at shutdown): no peer is left waiting in SYN-SENT for a
    /// handshake nobody will finish. Returns how many.
    pub fn reset_all(&mut self, push: &mut dyn FnMut(&SegmentRepr<'_>)) -> usize {
        let n = self.embryos.len();
        let mut keys: Vec<FourTuple> = self.embryos.keys().copied().collect();
        keys.sort();
        for key in keys {
            let Some(e) = self.embryos.remove(&key) else { continue };
            push(&SegmentRepr::control(key.0, key.1, e.iss.plus(1), e.rcv_nxt, flags::RST | flags::ACK, 0));
        }
        self.timers.clear();
        n
    }

    /// Answers a SYN with a cookie SYN-ACK, keeping nothing.
    fn cookie_synack(
        &mut self,
        now: Instant,
        (local, remote): FourTuple,
        seg: &Segment<'_>,
        cfg: &TcpConfig,
        push: &mut dyn FnMut(&SegmentRepr<'_>),
    ) -> Outcome {
        let key = (local, remote);
        let h = tuple_hash(&self.keys, &key);
        let iss = self.cookies.iss(now, &key, seg.seq, seg.options.mss);
        let e = Embryo::from_syn(seg, iss, h, now);
        let peer = e.peer;
        let mut r = self.synack(local, remote, &e, now, cfg);
        // Without timestamps there is nowhere to keep window scale and SACK: both off.
        match r.options.timestamps.as_mut() {
            Some((tsval, _)) => *tsval = syncookie::encode_ts(*tsval, peer.window_scale, peer.sack_permitted),
            None => {
                r.options.window_scale = None;
                r.options.sack_permitted = false;
            }
        }
        push(&r);
        self.counts.cookies_sent += 1;
        self.last_cookie = Some(now);
        Outcome::Handled
    }

    pub fn on_timer(&mut self, now: Instant, cfg: &TcpConfig, push: &mut dyn FnMut(&SegmentRepr<'_>)) {
        while let Some(&Reverse((t, key))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            if let Some(c) = self.connecting.get_mut(&key) {
                if c.rto_at != t {
                    continue;
                }
                if c.retries >= self.cfg.synack_retries {
                    self.connecting.remove(&key);
                    self.connect_timeouts.push(key);
                    continue;
                }
                c.retries += 1;
                c.rto_at = now + self.cfg.synack_rto * (1 << c.retries.min(6));
                self.timers.push(Reverse((c.rto_at, key)));
                let r = Self::syn(key, self.connecting.get(&key).expect("present"), now, cfg);
                push(&r);
                continue;
            }
            let Some(e) = self.embryos.get_mut(&key) else { continue };
            if e.rto_at != t {
                continue;
            }
            if e.retries >= self.cfg.synack_retries {
                self.embryos.remove(&key);
                continue;
            }
            e.retries += 1;
            e.rto_at = now + self.cfg.synack_rto * (1 << e.retries.min(6));
            self.timers.push(Reverse((e.rto_at, key)));
            let r = self.synack(key.0, key.1, self.embryos.get(&key).expect("present"), now, cfg);
            push(&r);
        }
    }
}

/// The RST the host stack answers a segment for no connection with (RFC 9293 §3.10.7.1).
pub(crate) fn reset_for(local: SocketAddr, remote: SocketAddr, seg: &Segment<'_>) -> SegmentRepr<'static> {
    let (seq, ack, fl) = if seg.has(flags::ACK) {
        (seg.ack, SeqNum(0), flags::RST)
    } else {
        (SeqNum(0), seg.seq.plus(seg.seq_len()), flags::RST | flags::ACK)
    };
    SegmentRepr::control(local, remote, seq, ack, fl, 0)
}
