//! One offloaded TCP connection: the receive state machine (RFC 9293 §3.10.7 with RFC 7323
//! timestamps/PAWS, RFC 2018 SACK, RFC 5961 blind-attack mitigations) and the small part of
//! the send side needed to close (our FIN, retransmitted until ACKed; RST on abortive close).
//!
//! In-order bytes go straight from the packet to the delivery layer
//! ([`crate::contract::ReceiveInput`]); out-of-order bytes wait in the [`Assembler`].

use core::net::{IpAddr, SocketAddr};
use std::time::Duration;

mod tx;

use super::assembler::{Assembler, Insert};
use super::cc::{Congestion, CongestionAlgorithm};
use super::rack::Rack;
use super::rtt::RttEstimator;
use super::scoreboard::Scoreboard;
use super::sender::Persist;
use crate::contract::{ConnId, NestedCalls, OffloadTarget, ProtocolHost, ReceiveInput, SendInput};
use crate::ndis::{TcpConnectionState, TcpOffloadEvent, TcpUploadReason};
use crate::time::Instant;
use crate::wire::SeqNum;
use crate::wire::{flags, Segment, SegmentRepr, TcpOptions};

/// The delivery layer as the engine drives it.
pub(crate) trait Layer: OffloadTarget + ReceiveInput + SendInput {}
impl<T: OffloadTarget + ReceiveInput + SendInput> Layer for T {}

/// Receive-path parameters (NDIS_TCP_CONNECTION_OFFLOAD_PARAMETERS and cached state).
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// MSS we advertise.
    pub mss: u16,
    /// `TcpAckFrequency`: full-sized segments before an ACK is due at once.
    pub ack_frequency: u32,
    /// `TcpDelayedAckTicks`: longest an ACK waits.
    pub delayed_ack: Duration,
    /// `InitialRcvWnd`: receive buffer per connection (also the reassembly ring size).
    pub rcv_wnd: u32,
    /// `RcvIndicationSize` given to the delivery layer.
    pub rcv_indication_size: u32,
    /// Out-of-order ranges kept at most per connection.
    pub max_ooo_ranges: usize,
    /// First retransmission timeout of our FIN / SYN-ACK.
    pub rto: Duration,
    /// Retransmissions before giving up (`TcpMaximumRetransmissions`).
    pub max_retransmits: u32,
    /// Minimum spacing of challenge ACKs for in-window SYNs (R-SYN-1: 3 s).
    pub syn_challenge_interval: Duration,
    /// Minimum spacing of one connection's other replies to junk: ACKs answering a pure
    /// (payload-free) out-of-window or PAWS-failing segment, a SYN outside the window, an ACK
    /// of unsent or too old data (RFC 5961 §7; Linux's `tcp_invalid_ratelimit`, 500 ms).
    /// Segments carrying data are always answered (a retransmission needs its duplicate ACK),
    /// within the engine's budget ([`crate::EngineConfig::junk_replies_per_sec`]).
    pub junk_reply_interval: Duration,
    /// A SYN exactly at RCV.NXT on a synchronized connection: `false` (default) answers it
    /// with a challenge ACK like any in-window SYN (RFC 5961 §4: a blind attacker who hit
    /// RCV.NXT must not end the connection); `true` requests an upload (InvalidState), as the
    /// chimney contract's R-SYN-1 literally says (spec §6.5 records the choice).
    pub syn_at_rcv_nxt_uploads: bool,
    /// `KaTimeout` with `TCP_FLAG_KEEP_ALIVE_ENABLED`: idle time before the first keep-alive
    /// probe; `None` = keep-alive off (it still runs after a challenge ACK, R-RST-2).
    pub keepalive: Option<Duration>,
    /// `KaInterval`: time between unanswered probes (1 s when the host gives zero).
    pub ka_interval: Duration,
    /// `KaProbeCount`: unanswered probes before the connection is uploaded closed (10).
    pub ka_probe_count: u8,
    /// Delay of the keep-alive armed by a challenge ACK (R-RST-2: 5 minutes).
    pub challenge_keepalive: Duration,
    /// ACK on queue drain: an ACK that `ack_frequency` makes due waits for
    /// [`Engine::flush_acks`](crate::engine::Engine::flush_acks) (the driver calls it when
    /// its read queue is empty), so a burst of segments costs one ACK, not one per two.
    pub defer_acks: bool,
    /// With `defer_acks`, an ACK goes out without waiting for the drain after a quarter of
    /// the window in full-sized segments; when that quarter is below this many segments (a
    /// small window, e.g. 64 KB from a peer without window scaling), after an eighth instead.
    pub max_ack_defer: u32,
    /// Nagle's algorithm on the send side (RFC 896; off is TCP_NODELAY).
    pub nagle: bool,
    /// Congestion control of the send side.
    pub congestion: CongestionAlgorithm,
    /// The smallest retransmission timeout (RFC 6298 says 1 s; Linux and chimney 200 ms).
    pub rto_min: Duration,
    /// Full-sized segments one write may carry as a GSO super-packet (at most 64 KB in all;
    /// 0 or 1: every segment is its own packet). Only for a driver that writes
    /// [`crate::engine::Engine::poll_transmit_gso`] packets with a `virtio_net_hdr`.
    pub gso_segs: u16,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            mss: 1460,
            ack_frequency: 2,
            delayed_ack: Duration::from_millis(40),
            rcv_wnd: 1 << 20,
            rcv_indication_size: 0,
            max_ooo_ranges: 64,
            rto: Duration::from_secs(1),
            max_retransmits: 5,
            syn_challenge_interval: Duration::from_secs(3),
            junk_reply_interval: Duration::from_millis(500),
            syn_at_rcv_nxt_uploads: false,
            keepalive: None,
            ka_interval: Duration::from_secs(1),
            ka_probe_count: 10,
            challenge_keepalive: Duration::from_secs(300),
            defer_acks: false,
            max_ack_defer: 16,
            nagle: true,
            congestion: CongestionAlgorithm::Cubic,
            rto_min: Duration::from_millis(200),
            gso_segs: 0,
        }
    }
}

impl TcpConfig {
    /// The smallest window-scale shift that lets `rcv_wnd` be advertised (RFC 7323, ≤ 14).
    pub fn window_scale(&self) -> u8 {
        let mut s = 0u8;
        while s < 14 && (self.rcv_wnd >> s) > 0xFFFF {
            s += 1;
        }
        s
    }
}

/// How long an emptied reassembly ring is kept before it is freed.
const RING_IDLE: Duration = Duration::from_secs(1);

/// Why a segment (or part of it) was not used. Each has a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum TcpDrop {
    /// Outside the receive window (answered with an ACK).
    OutOfWindow,
    /// PAWS: TSval older than TS.Recent (answered with an ACK).
    Paws,
    /// RST not exactly at RCV.NXT but in the window (challenge ACK).
    RstInWindow,
    /// RST outside the window.
    RstOutOfWindow,
    /// SYN on a synchronized connection (challenge ACK or upload).
    Syn,
    /// No ACK bit.
    NoAck,
    /// ACK of data never sent.
    AckTooHigh,
    /// ACK older than SND.UNA − MAX.SND.WND (RFC 5961 §5: blind data injection).
    AckTooOld,
    /// Data or FIN after the peer's FIN.
    AfterFin,
    /// Out-of-order segment refused by the range cap.
    OooRangesFull,
    /// Out-of-order bytes that were all already queued.
    OooDuplicate,
    /// In-order bytes beyond what the delivery layer could take.
    WindowOverrun,
    /// Segment received after an upload was requested (URG, SYN) or after abort.
    Stopped,
    /// A segment with neither SYN nor ACK (nor RST) for a listening port: dropped silently,
    /// no RST (RFC 9293 §3.10.7.2, "any other control or text-bearing segment").
    ListenNoSynNoAck,
    /// An RST at RCV.NXT for a half-open connection (SYN-RECEIVED): the half-open is gone.
    EmbryoReset,
}

impl TcpDrop {
    /// Every reason, for counter tables.
    pub const ALL: [TcpDrop; 15] = [
        TcpDrop::OutOfWindow,
        TcpDrop::Paws,
        TcpDrop::RstInWindow,
        TcpDrop::RstOutOfWindow,
        TcpDrop::Syn,
        TcpDrop::NoAck,
        TcpDrop::AckTooHigh,
        TcpDrop::AckTooOld,
        TcpDrop::AfterFin,
        TcpDrop::OooRangesFull,
        TcpDrop::OooDuplicate,
        TcpDrop::WindowOverrun,
        TcpDrop::Stopped,
        TcpDrop::ListenNoSynNoAck,
        TcpDrop::EmbryoReset,
    ];
}

/// Counters the connection updates (summed by the engine into TCP_OFFLOAD_STATS).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnCounters {
    /// Segments received.
    pub in_segments: u64,
    /// Segments sent.
    pub out_segments: u64,
    /// Retransmitted segments (data and FIN).
    pub retransmitted: u32,
    /// Tail loss probes sent.
    pub tail_probes: u32,
    /// Times RACK (RFC 8985) found segments lost by time: lost retransmissions and tails
    /// that duplicate-ACK counting misses.
    pub rack_losses: u32,
    /// Payload bytes sent (retransmissions included).
    pub sent_bytes: u64,
    /// Zero-window probes sent.
    pub window_probes: u32,
    /// RSTs sent.
    pub out_resets: u32,
    /// Keep-alive probes sent.
    pub keepalive_probes: u32,
    /// Window updates repeated because no data followed them.
    pub window_update_repeats: u32,
    /// In-order payload bytes handed to the delivery layer.
    pub delivered_bytes: u64,
    /// Drops by reason (u32: per connection; the engine sums them into u64 totals), boxed on
    /// the first drop: most connections never drop anything, and an idle connection's size
    /// matters at a million of them.
    drops: Option<Box<[u32; TcpDrop::ALL.len()]>>,
    /// Assembler work units (ranges visited), for the work-per-segment bound.
    pub work: u64,
}

impl ConnCounters {
    fn drop(&mut self, why: TcpDrop) {
        tracing::trace!(?why, "segment dropped");
        let i = TcpDrop::ALL.iter().position(|&d| d == why).unwrap_or(0);
        let drops = self.drops.get_or_insert_with(|| Box::new([0; TcpDrop::ALL.len()]));
        drops[i] = drops[i].saturating_add(1);
    }

    /// Drops counted for `why`.
    pub fn dropped(&self, why: TcpDrop) -> u64 {
        let i = TcpDrop::ALL.iter().position(|&d| d == why);
        match (i, self.drops.as_deref()) {
            (Some(i), Some(d)) => u64::from(d[i]),
            _ => 0,
        }
    }

    /// Drops by reason, in [`TcpDrop::ALL`] order (all zero when nothing was dropped).
    pub fn drops(&self) -> [u32; TcpDrop::ALL.len()] {
        self.drops.as_deref().copied().unwrap_or([0; TcpDrop::ALL.len()])
    }
}

/// A data segment's payload, read from the host's send stream straight into the packet
/// being written (no staging copy): `len` bytes, which `fill` appends and counts.
pub(crate) struct Gather<'b> {
    /// Payload bytes.
    pub len: usize,
    /// Appends them to the packet; returns how many it appended.
    pub fill: &'b mut dyn FnMut(&mut Vec<u8>) -> usize,
}

/// What the connection needs from its surroundings while it handles an input.
pub(crate) struct ConnContext<'a> {
    /// The delivery layer (possibly wrapped by the verifier).
    pub delivery: &'a mut dyn Layer,
    /// The host stack receiving upcalls.
    pub host: &'a mut dyn ProtocolHost,
    /// Where packets to send go, with their GSO segment size (0: an ordinary packet) and,
    /// for a data segment, the payload gathered straight from the host's MDLs.
    pub tx: &'a mut dyn FnMut(&SegmentRepr<'_>, u16, Option<Gather<'_>>),
    /// Engine configuration.
    pub cfg: &'a TcpConfig,
    /// The engine's allowance of replies to junk (RFC 5961 §7).
    pub budget: &'a mut super::ReplyBudget,
}

/// A connection's two addresses in 38 bytes (two `SocketAddr`s take 64): at a million
/// connections the difference is 26 MB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Endpoints {
    local_ip: [u8; 16],
    remote_ip: [u8; 16],
    local_port: u16,
    remote_port: u16,
    v6: bool,
}

impl Endpoints {
    pub(crate) fn new(local: SocketAddr, remote: SocketAddr) -> Endpoints {
        Endpoints::from_parts(local.ip(), local.port(), remote.ip(), remote.port())
    }

    /// The key of a segment's connection straight from its header fields (no `SocketAddr`
    /// built on the per-packet path).
    pub(crate) fn from_parts(local_ip: IpAddr, local_port: u16, remote_ip: IpAddr, remote_port: u16) -> Endpoints {
        let bytes = |a: IpAddr| match a {
            IpAddr::V4(v4) => {
                let mut b = [0; 16];
                b[..4].copy_from_slice(&v4.octets());
                b
            }
            IpAddr::V6(v6) => v6.octets(),
        };
        Endpoints {
            local_ip: bytes(local_ip),
            remote_ip: bytes(remote_ip),
            local_port,
            remote_port,
            v6: local_ip.is_ipv6(),
        }
    }

    pub(crate) fn ip(&self, local: bool) -> IpAddr {
        let b = if local { &self.local_ip } else { &self.remote_ip };
        if self.v6 {
            IpAddr::from(*b)
        } else {
            IpAddr::from([b[0], b[1], b[2], b[3]])
        }
    }
}

/// Three word writes (the addresses as two 128-bit words, the ports as one): a keyed hasher
/// mixes these in a few instructions, where hashing two `SocketAddr`s field by field cost
/// ~200 instructions a packet.
impl core::hash::Hash for Endpoints {
    fn hash<H: core::hash::Hasher>(&self, h: &mut H) {
        h.write_u128(u128::from_ne_bytes(self.local_ip));
        h.write_u128(u128::from_ne_bytes(self.remote_ip));
        h.write_u32(u32::from(self.local_port) << 16 | u32::from(self.remote_port));
    }
}

/// The send half's state, allocated on the first send or disconnect (a connection that only
/// receives never has one). Everything is in send-stream offsets (bytes since the first send
/// byte); [`TxState::base`] maps them to sequence numbers, in one place.
#[derive(Debug)]
struct TxState {
    /// Sequence number of stream offset 0.
    base: SeqNum,
    /// SND.UNA as an offset (the FIN, once acknowledged, is not counted here).
    una: u64,
    /// Next offset to send: SND.NXT (moves back to `una` on a timeout, go-back-N).
    nxt: u64,
    /// Highest offset sent + 1: SND.MAX.
    max: u64,
    /// Our FIN went out (at offset `posted`), at least once since the last timeout.
    fin_out: bool,
    /// Our FIN was ever sent (SND.MAX covers it).
    fin_sent: bool,
    /// Our FIN is acknowledged.
    fin_acked: bool,
    cc: Congestion,
    rtt: RttEstimator,
    sb: Scoreboard,
    rto_at: Option<Instant>,
    persist: Persist,
    persist_at: Option<Instant>,
    /// Zero-window probes not answered by any ACK.
    probes_unanswered: u32,
    dupacks: u32,
    /// Loss recovery until SND.UNA reaches this offset (RFC 6582 "recover").
    recover: Option<u64>,
    /// The recovery began with a timeout (slow start, go-back-N), not with duplicate ACKs.
    rto_recovery: bool,
    /// Tail loss probe deadline (RFC 8985 §7): two smoothed RTTs after the last send, so that
    /// a lost tail is found without waiting for the retransmission timeout.
    tlp_at: Option<Instant>,
    /// A probe is out and not answered yet (one per tail).
    tlp_out: bool,
    /// RACK (RFC 8985): what is in flight and when it went out, for time-based loss
    /// detection (a lost retransmission or a lost tail is found without the RTO).
    rack: Rack,
    /// The RACK reordering timer: when a segment not yet judged lost may be.
    rack_at: Option<Instant>,
    /// Karn: the one timed segment (RTT without timestamps).
    rtt_probe: Option<RttProbe>,
    /// Consecutive retransmission timeouts.
    retries: u32,
}

/// The segment timed for an RTT sample when timestamps are off (RFC 6298 §3, Karn's rule).
#[derive(Debug, Clone, Copy)]
struct RttProbe {
    /// Its stream offsets [start, end).
    start: u64,
    end: u64,
    /// When it went out (once: a retransmission of it ends the probe).
    sent: Instant,
    /// Nothing before it was sent again, so the cumulative ACK that covers it answers its own
    /// arrival. After a retransmission of an earlier hole that ACK may answer the hole's
    /// repair instead; then only a SACK block covering the segment is a sample.
    cum_ok: bool,
}

/// Timestamp state (RFC 7323).
#[derive(Debug, Clone, Copy)]
struct Ts {
    recent: u32,
    offset: u32,
}

/// Everything the host negotiated before the offload.
#[derive(Debug, Clone)]
pub struct Negotiated {
    /// Our address and port.
    pub local: SocketAddr,
    /// The peer's address and port.
    pub remote: SocketAddr,
    /// RCV.NXT at offload (after any BufferedData).
    pub rcv_nxt: u32,
    /// Our next sequence number (ISS + 1; after an upload, SND.UNA: the host sends the
    /// unacknowledged bytes again from there).
    pub snd_nxt: u32,
    /// The highest sequence number sent so far (SND.MAX): ACKs up to it are acceptable even
    /// before this incarnation has sent that far again (0 or `snd_nxt`: nothing beyond).
    pub snd_max: u32,
    /// Our window scale, if scaling was negotiated.
    pub rcv_wscale: Option<u8>,
    /// The peer's MSS.
    pub peer_mss: u16,
    /// The peer's window scale, if scaling was negotiated (for RFC 5961 §5's MAX.SND.WND).
    pub snd_wscale: Option<u8>,
    /// SACK permitted by both.
    pub sack: bool,
    /// TS.Recent if timestamps were negotiated.
    pub ts_recent: Option<u32>,
    /// Our TSval offset (TSval = ms clock + offset).
    pub ts_offset: u32,
    /// The window right edge the host advertised last.
    pub rcv_adv: u32,
    /// The largest window the peer has advertised so far (scaled): MAX.SND.WND of RFC 5961
    /// §5, which bounds how old an acceptable ACK may be. From the handshake at offload.
    pub max_snd_wnd: u32,
}

/// One offloaded connection.
#[derive(Debug)]
pub struct TcpConn {
    /// Delivery-layer id.
    pub(crate) id: ConnId,
    /// Our address and port and the peer's, compact ([`TcpConn::local`], [`TcpConn::remote`]).
    ends: Endpoints,
    /// RFC 9293 state.
    pub(crate) state: TcpConnectionState,
    rcv_nxt: SeqNum,
    rcv_nxt64: u64,
    rcv_adv: SeqNum,
    rcv_wscale: u8,
    snd_una: SeqNum,
    snd_nxt: SeqNum,
    /// MAX.SND.WND: the largest window the peer advertised (RFC 5961 §5 ACK check).
    max_snd_wnd: u32,
    snd_wscale: u8,
    peer_mss: u16,
    sack: bool,
    ts: Option<Ts>,
    /// Out-of-order reassembly, allocated on the first out-of-order segment and freed when it
    /// has been empty for [`RING_IDLE`] (an in-order connection never has one).
    asm: Option<Box<Assembler>>,
    ooo_fin: Option<SeqNum>,
    last_ack_sent: SeqNum,
    unacked: u32,
    delack_at: Option<Instant>,
    rst_challenged: bool,
    last_syn_challenge: Option<Instant>,
    /// When this connection last replied to junk ([`TcpConfig::junk_reply_interval`]).
    last_junk_reply: Option<Instant>,
    /// The send half, once the host sent or disconnected (boxed: most connections are idle
    /// or receiving, and an idle connection's size matters at a million of them).
    tx: Option<Box<TxState>>,
    /// SND.WND (scaled) and the segment that set it (SND.WL1, SND.WL2; RFC 9293 §3.10.7.4).
    snd_wnd: u32,
    snd_wl1: SeqNum,
    snd_wl2: SeqNum,
    /// Keep-alive deadline: the idle timer, a probe, or R-RST-2's 5-minute timer.
    ka_at: Option<Instant>,
    /// Keep-alive probes sent and not answered yet.
    ka_probes: u8,
    /// When to repeat a window update that reopened a closed window (no data since).
    window_update_at: Option<Instant>,
    /// Window-update repeats sent.
    wu_tries: u8,
    /// When to free the (empty) reassembly ring.
    ring_release_at: Option<Instant>,
    /// An ACK is due at the next [`Engine::flush_acks`](crate::engine::Engine::flush_acks).
    pub(crate) ack_pending: bool,
    /// Whether the engine's flush list holds this connection.
    pub(crate) on_ack_list: bool,
    stopped: bool,
    ip_id: u16,
    /// Counters.
    pub(crate) counters: ConnCounters,
    /// Whether the engine's window-update list holds this connection.
    pub(crate) on_window_watch: bool,
}

impl TcpConn {
    /// The delivery-layer id of this connection.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The TCP state (ESTABLISHED, CLOSE-WAIT, …).
    pub fn state(&self) -> TcpConnectionState {
        self.state
    }

    /// What this connection counted (segments in and out, drops by reason, …).
    pub fn counters(&self) -> &ConnCounters {
        &self.counters
    }

    /// State for a connection the host just offloaded at `now`.
    pub fn new(now: Instant, id: ConnId, n: &Negotiated, cfg: &TcpConfig) -> TcpConn {
        TcpConn {
            id,
            ends: Endpoints::new(n.local, n.remote),
            state: TcpConnectionState::Established,
            rcv_nxt: SeqNum(n.rcv_nxt),
            rcv_nxt64: 0,
            rcv_adv: SeqNum(n.rcv_adv),
            rcv_wscale: n.rcv_wscale.unwrap_or(0),
            snd_una: SeqNum(n.snd_nxt),
            // SND.MAX: an ACK of what a previous incarnation sent is acceptable.
            snd_nxt: if SeqNum(n.snd_max).gt(SeqNum(n.snd_nxt)) { SeqNum(n.snd_max) } else { SeqNum(n.snd_nxt) },
            // RFC 5961 §5: the largest window the peer advertised, from its handshake on (a
            // start at zero refused a legitimate ACK just after the offload); it grows with
            // every window the peer advertises.
            max_snd_wnd: n.max_snd_wnd,
            snd_wscale: n.snd_wscale.unwrap_or(0).min(14),
            peer_mss: n.peer_mss,
            sack: n.sack,
            ts: n.ts_recent.map(|recent| Ts { recent, offset: n.ts_offset }),
            asm: None,
            ooo_fin: None,
            last_ack_sent: SeqNum(n.rcv_nxt),
            unacked: 0,
            delack_at: None,
            rst_challenged: false,
            last_syn_challenge: None,
            last_junk_reply: None,
            tx: None,
            snd_wnd: n.max_snd_wnd,
            snd_wl1: SeqNum(n.rcv_nxt.wrapping_sub(1)),
            snd_wl2: SeqNum(n.snd_nxt),
            ka_at: cfg.keepalive.map(|idle| now + idle),
            ka_probes: 0,
            window_update_at: None,
            wu_tries: 0,
            ring_release_at: None,
            ack_pending: false,
            on_ack_list: false,
            stopped: false,
            ip_id: 0x8000 | (id.0 as u16 & 0x7FFF),
            counters: ConnCounters::default(),
            on_window_watch: false,
        }
    }

    /// Both ends, compact: the connection table's key.
    pub(crate) fn endpoints(&self) -> &Endpoints {
        &self.ends
    }

    /// Our address and port.
    pub fn local(&self) -> SocketAddr {
        SocketAddr::new(self.ends.ip(true), self.ends.local_port)
    }

    /// The peer's address and port.
    pub fn remote(&self) -> SocketAddr {
        SocketAddr::new(self.ends.ip(false), self.ends.remote_port)
    }

    /// The connection's negotiated state as it stands now: what a host that uploaded it
    /// would hand back to offload it again (RCV.NXT, the advertised right edge, TS.Recent
    /// and our TSval offset, so nothing the peer saw moves backwards). SND.NXT is SND.UNA:
    /// bytes sent and not acknowledged go back to the host in their NBLs at terminate
    /// (UPLOAD_IN_PROGRESS, spec §8 A43), and it sends them again. A window scale of 0 reads
    /// back as "not negotiated", which receives identically.
    pub fn negotiated(&self) -> Negotiated {
        Negotiated {
            local: self.local(),
            remote: self.remote(),
            rcv_nxt: self.rcv_nxt.0,
            snd_nxt: self.snd_una.0,
            snd_max: self.snd_nxt.0,
            rcv_wscale: (self.rcv_wscale > 0).then_some(self.rcv_wscale),
            peer_mss: self.peer_mss,
            snd_wscale: Some(self.snd_wscale),
            sack: self.sack,
            ts_recent: self.ts.map(|t| t.recent),
            ts_offset: self.ts.map_or(0, |t| t.offset),
            rcv_adv: self.rcv_adv.0,
            max_snd_wnd: self.max_snd_wnd,
        }
    }

    /// SND.UNA.
    pub fn snd_una(&self) -> u32 {
        self.snd_una.0
    }

    /// RCV.NXT.
    pub fn rcv_nxt(&self) -> u32 {
        self.rcv_nxt.0
    }

    /// The receive window currently advertised (bytes from RCV.NXT to the right edge).
    pub fn rcv_wnd(&self) -> u32 {
        self.rcv_adv.diff(self.rcv_nxt).max(0) as u32
    }

    /// The peer's MSS.
    pub fn peer_mss(&self) -> u16 {
        self.peer_mss
    }

    /// The largest window this connection can advertise (64 KiB without window scaling).
    pub fn max_window(&self, cfg: &TcpConfig) -> u32 {
        cfg.rcv_wnd.min(0xFFFF << self.rcv_wscale)
    }

    /// TS.Recent, if timestamps are on.
    pub fn ts_recent(&self) -> Option<u32> {
        self.ts.map(|t| t.recent)
    }

    fn ooo_empty(&self) -> bool {
        self.asm.as_ref().is_none_or(|a| a.is_empty())
    }

    /// Bytes queued out of order, and their ranges.
    pub fn ooo(&self) -> (u64, usize) {
        self.asm.as_ref().map_or((0, 0), |a| (a.queued_bytes(), a.ranges()))
    }

    /// Memory this connection holds beyond its fixed state (the reassembly ring).
    pub fn memory(&self) -> usize {
        self.asm.as_ref().map_or(0, |a| a.memory())
    }

    /// The earliest timer of this connection.
    pub fn next_deadline(&self) -> Option<Instant> {
        // Asked after every segment: a branch-light minimum (the iterator chain it replaced
        // cost ~200 instructions a segment).
        fn min(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
            match (a, b) {
                (Some(x), Some(y)) => Some(if y < x { y } else { x }),
                (x, None) => x,
                (None, y) => y,
            }
        }
        let mut at = min(min(self.delack_at, self.ka_at), min(self.window_update_at, self.ring_release_at));
        if let Some(t) = self.tx.as_deref() {
            at = min(at, min(min(t.rto_at, t.persist_at), min(t.tlp_at, t.rack_at)));
        }
        at
    }

    /// Whether an ACK is owed (delayed or deferred).
    pub fn ack_due(&self) -> bool {
        self.delack_at.is_some() || self.ack_pending
    }

    /// Whether the connection stopped processing (upload requested or aborted).
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    fn tsval(&self, now: Instant) -> u32 {
        ((now.as_nanos() / 1_000_000) as u32).wrapping_add(self.ts.map_or(0, |t| t.offset))
    }

    fn emit(&mut self, now: Instant, cx: &mut ConnContext<'_>, seq: SeqNum, fl: crate::wire::Flags) {
        self.emit_seg(now, cx, seq, fl, None, 0);
    }

    /// Sends one segment (the ACK fields, window and options filled in) whose payload, if
    /// any, is the send stream's bytes [off, off + len), read from the host's MDLs into the
    /// packet; with `gso` > 0, a super-packet the kernel cuts into segments of `gso` bytes.
    /// Returns the payload bytes written.
    fn emit_seg(
        &mut self,
        now: Instant,
        cx: &mut ConnContext<'_>,
        seq: SeqNum,
        fl: crate::wire::Flags,
        stream: Option<(u64, usize)>,
        gso: u16,
    ) -> usize {
        let mut options = TcpOptions::default();
        if let Some(ts) = self.ts {
            options.timestamps = Some((self.tsval(now), ts.recent));
        }
        if let Some(asm) = self.asm.as_ref().filter(|a| self.sack && fl.contains(flags::ACK) && !a.is_empty()) {
            let max = if self.ts.is_some() { 3 } else { 4 };
            let mut blocks = [(0u32, 0u32); 4];
            let mut k = 0;
            for (s, e) in asm.sack_blocks(max) {
                let l = self.rcv_nxt.plus((s - self.rcv_nxt64) as u32);
                blocks[k] = (l.0, l.plus((e - s) as u32).0);
                k += 1;
            }
            if k > 0 {
                options.sack = Some((blocks, k as u8));
            }
        }
        let window = if fl.contains(flags::RST) { 0 } else { self.window_field() };
        let repr = SegmentRepr {
            src: self.ends.ip(true),
            dst: self.ends.ip(false),
            src_port: self.ends.local_port,
            dst_port: self.ends.remote_port,
            seq,
            ack: if fl.contains(flags::ACK) { self.rcv_nxt } else { SeqNum(0) },
            flags: fl,
            window,
            options,
            payload: &[],
            urgent: 0,
            ip_id: self.ip_id,
        };
        let len = stream.map_or(0, |(_, len)| len);
        // The kernel numbers a super-packet's segments on from its IP ID.
        let segs = if gso > 0 { len.div_ceil(usize::from(gso)).max(1) } else { 1 };
        self.ip_id = 0x8000 | (self.ip_id.wrapping_add(segs as u16) & 0x7FFF);
        let mut written = 0;
        match stream {
            Some((off, len)) => {
                let (id, delivery) = (self.id, &mut *cx.delivery);
                let mut fill =
                    |out: &mut Vec<u8>| delivery.send_bytes(id, off, len, &mut |b: &[u8]| out.extend_from_slice(b));
                let mut counted = |out: &mut Vec<u8>| {
                    let n = fill(out);
                    written = n;
                    n
                };
                (cx.tx)(&repr, gso, Some(Gather { len, fill: &mut counted }));
            }
            None => (cx.tx)(&repr, gso, None),
        }
        self.counters.out_segments += segs as u64;
        if fl.contains(flags::ACK) {
            self.last_ack_sent = self.rcv_nxt;
            self.unacked = 0;
            self.delack_at = None;
            self.ack_pending = false;
        }
        written
    }

    /// The window field for the next segment: the distance to the right edge rounded *up* to
    /// the scale unit, so the edge the peer sees never moves left; that edge is remembered
    /// (RFC 7323 §2.4). The overshoot (< one unit) is covered by the reassembly ring, which
    /// is one unit larger than the buffer, and by the delivery layer's slack.
    fn window_field(&mut self) -> u16 {
        let unit = 1u32 << self.rcv_wscale;
        let wnd = self.rcv_adv.diff(self.rcv_nxt).max(0) as u32;
        let field = wnd.div_ceil(unit).min(0xFFFF);
        self.rcv_adv = self.rcv_nxt.plus(field * unit);
        field as u16
    }

    /// Moves the advertised right edge forward when the delivery layer has room, with
    /// receiver-side SWS avoidance (RFC 9293 §3.8.6.2.2): only by at least min(buffer/2, MSS).
    /// Never retracts. Returns whether the edge moved.
    ///
    /// A window that reopens from below one segment, by whatever ACK carries it, is
    /// announced again with backoff until data arrives (`window_update_at`): if that ACK is lost, a
    /// sender without a persist timer (smoltcp has none) would wait forever.
    fn update_window(&mut self, now: Instant, cx: &mut ConnContext<'_>) -> bool {
        let before = self.rcv_wnd();
        let moved = self.move_edge(cx);
        if moved && before < u32::from(self.peer_mss) && self.window_update_at.is_none() && self.can_receive() {
            self.wu_tries = 0;
            self.window_update_at = Some(now + cx.cfg.rto);
        }
        moved
    }

    fn move_edge(&mut self, cx: &mut ConnContext<'_>) -> bool {
        let unit = 1u32 << self.rcv_wscale;
        let max_wnd = 0xFFFF * unit;
        // Never more than the configured window: the reassembly ring is sized from it, and a
        // delivery layer (a foreign one) may report more room than that.
        let space = (cx.delivery.receive_window(self.id).min(1 << 30) as u32).min(max_wnd).min(cx.cfg.rcv_wnd.max(1));
        let right = self.rcv_nxt.plus(space);
        let grow = right.diff(self.rcv_adv);
        let threshold = (cx.cfg.rcv_wnd / 2).min(u32::from(cx.cfg.mss)).min(max_wnd / 2).max(1) as i32;
        if grow >= threshold || (grow > 0 && self.rcv_adv.diff(self.rcv_nxt) <= 0 && space as i32 >= threshold) {
            self.rcv_adv = right;
            return true;
        }
        false
    }

    /// Sends the ACK that [`TcpConfig::defer_acks`] held back, if it is still due.
    pub(crate) fn flush_ack(&mut self, now: Instant, cx: &mut ConnContext<'_>) {
        if self.ack_pending && !self.stopped {
            self.send_ack(now, cx);
        }
        self.ack_pending = false;
    }

    /// Sends an ACK now (window recomputed).
    pub(crate) fn send_ack(&mut self, now: Instant, cx: &mut ConnContext<'_>) {
        self.update_window(now, cx);
        let seq = self.snd_nxt;
        self.emit(now, cx, seq, flags::ACK);
    }

    /// An ACK answering junk (RFC 5961 §7): suppressed, and counted, when this connection
    /// replied to junk less than `junk_reply_interval` ago (only if `spaced`: segments with
    /// data are always answered) or when the engine's budget for this second is spent.
    /// Returns whether it went out.
    fn reply_to_junk(&mut self, now: Instant, cx: &mut ConnContext<'_>, spaced: bool) -> bool {
        if spaced && self.last_junk_reply.is_some_and(|t| now < t + cx.cfg.junk_reply_interval) {
            cx.budget.suppressed_conn += 1;
            return false;
        }
        if !cx.budget.allow(now) {
            return false;
        }
        if spaced {
            self.last_junk_reply = Some(now);
        }
        self.send_ack(now, cx);
        true
    }

    /// After the host posted or consumed: sends a window update if the window opened enough.
    pub(crate) fn maybe_window_update(&mut self, now: Instant, cx: &mut ConnContext<'_>) {
        if !self.stopped && self.can_receive() && self.update_window(now, cx) {
            let seq = self.snd_nxt;
            self.emit(now, cx, seq, flags::ACK);
        }
    }

    fn can_receive(&self) -> bool {
        matches!(
            self.state,
            TcpConnectionState::Established | TcpConnectionState::FinWait1 | TcpConnectionState::FinWait2
        )
    }

    fn upload(&mut self, now: Instant, cx: &mut ConnContext<'_>, reason: TcpUploadReason) {
        tracing::debug!(conn = %self.id, ?reason, state = ?self.state, "upload requested");
        self.stopped = true;
        self.delack_at = None;
        self.stop_rto();
        self.ka_at = None;
        self.window_update_at = None;
        host_event(now, cx, self.id, TcpOffloadEvent::Retrieve(reason));
    }

    /// Handles one segment addressed to this connection.
    pub(crate) fn on_segment(&mut self, now: Instant, seg: &Segment<'_>, cx: &mut ConnContext<'_>) {
        if self.accept(now, seg, seg.payload.len(), cx) {
            self.on_data(now, seg.seq, seg.payload, seg.has(flags::PSH), seg.has(flags::FIN), cx);
        }
    }

    /// Header prediction (the fast path of BSD's `tcp_input`): whether a segment with these
    /// headers and `len` payload bytes would be taken whole by `TcpConn::on_segment` as the
    /// next in-order bytes, with nothing to do but deliver them and decide about an ACK.
    pub fn predicts(&self, seg: &Segment<'_>, len: usize) -> bool {
        let ack = seg.ack;
        let paws_ok = match (self.ts, seg.options.timestamps) {
            (Some(ts), Some((tsval, _))) => (tsval.wrapping_sub(ts.recent) as i32) >= 0,
            _ => true,
        };
        !self.stopped
            && self.can_receive()
            && seg.flags.without(flags::ACK | flags::PSH) == crate::wire::Flags::NONE
            && seg.has(flags::ACK)
            && seg.seq == self.rcv_nxt
            && len > 0
            && len <= self.rcv_adv.diff(self.rcv_nxt).max(0) as usize
            && self.ooo_empty()
            && self.ooo_fin.is_none()
            && !ack.gt(self.snd_nxt)
            && !ack.lt(SeqNum(self.snd_una.0.wrapping_sub(self.max_snd_wnd)))
            && paws_ok
    }

    /// A segment whose `len` payload bytes the driver already read into the placement room
    /// of the delivery layer ([`crate::contract::ReceiveInput::placement_room`]). Returns
    /// false, having changed nothing, when [`TcpConn::predicts`] does not hold: the caller
    /// then feeds the whole packet through [`TcpConn::on_segment`].
    pub(crate) fn on_placed(&mut self, now: Instant, seg: &Segment<'_>, len: usize, cx: &mut ConnContext<'_>) -> bool {
        if !self.predicts(seg, len) {
            return false;
        }
        let taken = self.accept(now, seg, len, cx);
        debug_assert!(taken, "predicted segments pass every check");
        self.window_update_at = None;
        if cx.delivery.receive_placed(now, self.id, len, seg.has(flags::PSH), cx.host).is_err() {
            // The driver placed more than the room it was offered: dropped, not ACKed.
            self.counters.drop(TcpDrop::WindowOverrun);
            return true;
        }
        self.advance(len as u64);
        self.ack_after_data(now, len, cx);
        true
    }

    /// Every check and the ACK processing of RFC 9293 §3.10.7.4 for a segment carrying
    /// `payload_len` bytes; true when its data (or FIN) is to be processed.
    fn accept(&mut self, now: Instant, seg: &Segment<'_>, payload_len: usize, cx: &mut ConnContext<'_>) -> bool {
        self.counters.in_segments += 1;
        if self.stopped || self.state == TcpConnectionState::Closed {
            self.counters.drop(TcpDrop::Stopped);
            return false;
        }
        let seq = seg.seq;
        let wnd = self.rcv_wnd();
        let in_window = |s: SeqNum| s.in_range(self.rcv_nxt, self.rcv_nxt.plus(wnd));
        // RFC 5961 §3: RST exactly at RCV.NXT resets; in the window earns one challenge ACK.
        if seg.has(flags::RST) {
            if seq == self.rcv_nxt {
                tracing::debug!(conn = %self.id, "reset by the peer");
                self.stopped = true;
                self.state = TcpConnectionState::Closed;
                self.delack_at = None;
                self.stop_rto();
                self.ka_at = None;
                self.window_update_at = None;
                let _ = cx.delivery.receive_rst(now, self.id, cx.host);
            } else if wnd > 0 && in_window(seq) {
                self.counters.drop(TcpDrop::RstInWindow);
                // One challenge until an acceptable segment arrives; one the budget
                // suppressed leaves the next RST its chance.
                if !self.rst_challenged && cx.budget.allow(now) {
                    self.rst_challenged = true;
                    self.send_ack(now, cx);
                    self.arm_challenge_keepalive(now, cx);
                }
            } else {
                self.counters.drop(TcpDrop::RstOutOfWindow);
            }
            return false;
        }
        // RFC 7323 §5: PAWS.
        if let (Some(ts), Some((tsval, _))) = (self.ts, seg.options.timestamps) {
            if (tsval.wrapping_sub(ts.recent) as i32) < 0 {
                self.counters.drop(TcpDrop::Paws);
                self.reply_to_junk(now, cx, payload_len == 0);
                return false;
            }
        }
        // RFC 5961 §4 / R-SYN-1: a SYN never opens, resets or (by default) uploads a
        // synchronized connection; in the window (RCV.NXT included) it earns a challenge ACK
        // at most every 3 s, outside it an ACK within the junk-reply limits.
        if seg.has(flags::SYN) {
            self.counters.drop(TcpDrop::Syn);
            if seq == self.rcv_nxt && cx.cfg.syn_at_rcv_nxt_uploads {
                self.upload(now, cx, TcpUploadReason::InvalidState);
            } else if seq == self.rcv_nxt || in_window(seq) {
                let due = self.last_syn_challenge.is_none_or(|t| now >= t + cx.cfg.syn_challenge_interval);
                if !due {
                    cx.budget.suppressed_conn += 1;
                } else if cx.budget.allow(now) {
                    self.last_syn_challenge = Some(now);
                    self.send_ack(now, cx);
                    self.arm_challenge_keepalive(now, cx);
                }
            } else {
                self.reply_to_junk(now, cx, true);
            }
            return false;
        }
        // RFC 9293 §3.10.7.4, first check: acceptability.
        let seg_len = payload_len as u32 + u32::from(seg.has(flags::SYN)) + u32::from(seg.has(flags::FIN));
        let acceptable = match (seg_len, wnd) {
            (0, 0) => seq == self.rcv_nxt,
            // A pure ACK exactly at the right edge is taken, as Linux does (`tcp_sequence`): a
            // peer that filled our window and lost that data sends its ACKs from there, and
            // dropping them would leave its ACKs of our data unread for good.
            (0, _) => in_window(seq) || seq == self.rcv_nxt.plus(wnd),
            (_, 0) => false,
            (n, _) => in_window(seq) || in_window(seq.plus(n - 1)),
        };
        if !acceptable {
            self.counters.drop(TcpDrop::OutOfWindow);
            // A pure ACK out of the window is spaced (it is how ACK loops and blind floods
            // look); one with data is a retransmission or a zero-window probe: answered.
            self.reply_to_junk(now, cx, seg_len == 0);
            return false;
        }
        self.rst_challenged = false;
        // The peer is alive: restart the idle timer (or stop a challenge-armed one).
        self.ka_probes = 0;
        self.ka_at = cx.cfg.keepalive.map(|idle| now + idle);
        if !seg.has(flags::ACK) {
            self.counters.drop(TcpDrop::NoAck);
            return false;
        }
        let ack = seg.ack;
        if ack.gt(self.snd_nxt) {
            self.counters.drop(TcpDrop::AckTooHigh);
            self.reply_to_junk(now, cx, true);
            return false;
        }
        // RFC 5961 §5.2: an ACK below SND.UNA − MAX.SND.WND is a blind injection attempt.
        if ack.lt(SeqNum(self.snd_una.0.wrapping_sub(self.max_snd_wnd))) {
            self.counters.drop(TcpDrop::AckTooOld);
            self.reply_to_junk(now, cx, true);
            return false;
        }
        self.max_snd_wnd = self.max_snd_wnd.max(u32::from(seg.window) << self.snd_wscale);
        // RFC 7323 §4.3: TS.Recent update, before the ACK is processed (what that sends echoes
        // this segment's TSval).
        if let (Some(ts), Some((tsval, _))) = (self.ts.as_mut(), seg.options.timestamps) {
            if seq.le(self.last_ack_sent) {
                ts.recent = tsval;
            }
        }
        self.on_ack(now, seg, payload_len, cx);
        if self.stopped {
            return false;
        }
        // spec §6.6: urgent data means upload; nothing after it is processed here. An urgent
        // pointer at or before RCV.NXT (BSD and Linux: it points just past the urgent byte)
        // points at urgent data the host already took, e.g. a segment sent before the peer
        // saw our ACK of it: nothing urgent is left.
        if seg.has(flags::URG) && seq.plus(u32::from(seg.urgent)).gt(self.rcv_nxt) {
            self.upload(now, cx, TcpUploadReason::ReceivedUrgentData);
            return false;
        }

        if payload_len == 0 && !seg.has(flags::FIN) {
            return false;
        }
        if !self.can_receive() {
            self.counters.drop(TcpDrop::AfterFin);
            self.reply_to_junk(now, cx, false);
            return false;
        }
        true
    }

    fn on_data(&mut self, now: Instant, seq: SeqNum, payload: &[u8], psh: bool, fin: bool, cx: &mut ConnContext<'_>) {
        // Data (even a retransmission) means the sender saw a window: stop re-announcing it.
        self.window_update_at = None;
        let mut start = seq;
        let mut data = payload;
        let mut fin = fin;
        if start.lt(self.rcv_nxt) {
            let cut = self.rcv_nxt.diff(start) as usize;
            if cut > data.len() {
                fin = false;
            }
            data = &data[cut.min(data.len())..];
            start = self.rcv_nxt;
        }
        let room = self.rcv_adv.diff(start).max(0) as usize;
        if data.len() > room {
            data = &data[..room];
            fin = false;
        }
        // Nothing exists beyond a FIN already seen: clip, and ignore a conflicting FIN.
        if let Some(f) = self.ooo_fin {
            let lim = f.diff(start).max(0) as usize;
            if data.len() > lim {
                self.counters.drop(TcpDrop::AfterFin);
                data = &data[..lim];
            }
            fin = fin && start.plus(data.len() as u32) == f;
        }
        if fin {
            // Queued bytes beyond this FIN are not data.
            let fin_off = self.rcv_nxt64 + start.diff(self.rcv_nxt) as u64 + data.len() as u64;
            if let Some(a) = self.asm.as_mut() {
                a.discard_from(fin_off);
            }
        }
        if start == self.rcv_nxt {
            let gap_fill = !self.ooo_empty();
            let complete = self.deliver_in_order(now, data, psh, cx);
            let fin_now = complete && (fin || self.ooo_fin == Some(self.rcv_nxt));
            if fin_now {
                self.on_fin(now, cx);
            } else if gap_fill || !self.ooo_empty() {
                self.send_ack(now, cx);
            } else if !data.is_empty() {
                self.ack_after_data(now, data.len(), cx);
            }
        } else {
            let off = self.rcv_nxt64 + start.diff(self.rcv_nxt) as u64;
            if !data.is_empty() {
                let ring = cx.cfg.rcv_wnd.max(1) as usize + (1usize << self.rcv_wscale);
                let asm = self.asm.get_or_insert_with(|| Box::new(Assembler::new(ring, cx.cfg.max_ooo_ranges)));
                let before = asm.work;
                let r = asm.insert(off, data);
                self.counters.work += asm.work - before;
                match r {
                    Insert::Stored(_) => {}
                    Insert::Duplicate => self.counters.drop(TcpDrop::OooDuplicate),
                    Insert::TooManyRanges => self.counters.drop(TcpDrop::OooRangesFull),
                }
            }
            if fin {
                self.ooo_fin = Some(start.plus(data.len() as u32));
            }
            // Out-of-order data: ACK at once (with SACK), RFC 5681 §4.2.
            self.send_ack(now, cx);
        }
    }

    /// The ACK decision after `len` in-order bytes that left nothing queued out of order.
    fn ack_after_data(&mut self, now: Instant, len: usize, cx: &mut ConnContext<'_>) {
        // A GSO super-packet counts as the segments it carries (full segments carry up to 40
        // bytes of options less than the MSS).
        let full = usize::from(cx.cfg.mss.saturating_sub(40).max(1));
        self.unacked += (len / full).max(1) as u32;
        if self.unacked >= cx.cfg.ack_frequency {
            // Deferred up to a quarter of the window: every ACK written costs the reader's core the sender's ACK processing, and
            // a read batch of super-packets would otherwise write one ACK per 64 KB that the
            // next one supersedes. A window too small for that (a peer without window
            // scaling: 64 KB) is ACKed every eighth of it instead, for the sender stops once
            // it has sent the window, and every microsecond its ACK waits is throughput lost.
            let segs = self.max_window(cx.cfg) / u32::from(cx.cfg.mss.max(1));
            let limit = if segs / 4 >= cx.cfg.max_ack_defer { segs / 4 } else { (segs / 8).max(cx.cfg.ack_frequency) };
            if cx.cfg.defer_acks && self.unacked < limit {
                self.ack_pending = true;
                // A driver that never flushes still ACKs within the delayed-ACK time.
                if self.delack_at.is_none() {
                    self.delack_at = Some(now + cx.cfg.delayed_ack);
                }
            } else {
                self.send_ack(now, cx);
            }
        } else if self.delack_at.is_none() {
            self.delack_at = Some(now + cx.cfg.delayed_ack);
        }
    }

    /// Feeds in-order bytes (interleaving queued out-of-order ranges, whose bytes win where
    /// they overlap) and then every range that became contiguous. Returns false when the
    /// delivery layer ran out of room (the rest is dropped, not ACKed).
    fn deliver_in_order(&mut self, now: Instant, data: &[u8], psh: bool, cx: &mut ConnContext<'_>) -> bool {
        let mut cur = 0usize;
        loop {
            if let Some((s, e)) = self.asm.as_ref().and_then(|a| a.range_at(self.rcv_nxt64)) {
                debug_assert_eq!(s, self.rcv_nxt64);
                // Never drop bytes that were SACKed: take what the delivery layer can hold
                // and leave the rest queued.
                let room = cx.delivery.receive_space(self.id) as u64;
                let take = (e - s).min(room);
                let mut ok = true;
                let id = self.id;
                let mut fed = 0u64;
                let delivery = &mut *cx.delivery;
                let host = &mut *cx.host;
                if let Some(asm) = self.asm.as_mut().filter(|_| take > 0) {
                    asm.take_front(s, take, |bytes| {
                        if ok && delivery.receive_data(now, id, bytes, psh, host).is_ok() {
                            fed += bytes.len() as u64;
                        } else {
                            ok = false;
                        }
                    });
                }
                self.advance(fed);
                if !ok || take < e - s {
                    self.counters.drop(TcpDrop::WindowOverrun);
                    return false;
                }
                cur += (e - s) as usize;
                continue;
            }
            if cur >= data.len() {
                break;
            }
            let first = self.asm.as_ref().and_then(|a| a.first_start());
            let limit = first.map_or(data.len(), |f| cur + (f - self.rcv_nxt64) as usize);
            let chunk = &data[cur..limit.min(data.len())];
            let space = cx.delivery.receive_space(self.id);
            let take = chunk.len().min(space);
            if take > 0 {
                if cx.delivery.receive_data(now, self.id, &chunk[..take], psh, cx.host).is_err() {
                    self.counters.drop(TcpDrop::WindowOverrun);
                    return false;
                }
                self.advance(take as u64);
            }
            if take < chunk.len() {
                self.counters.drop(TcpDrop::WindowOverrun);
                return false;
            }
            cur += chunk.len();
        }
        if let Some(a) = self.asm.as_mut() {
            a.discard_below(self.rcv_nxt64);
        }
        if self.asm.as_ref().is_some_and(|a| a.is_empty()) && self.ring_release_at.is_none() {
            // Keep the ring a while: freeing and re-zeroing a window-sized buffer on every
            // reordering event cost ~150 µs each (bench engine, 1 % reordering).
            self.ring_release_at = Some(now + RING_IDLE);
        }
        true
    }

    fn advance(&mut self, n: u64) {
        self.rcv_nxt = self.rcv_nxt.plus(n as u32);
        self.rcv_nxt64 += n;
        self.counters.delivered_bytes += n;
    }

    fn on_fin(&mut self, now: Instant, cx: &mut ConnContext<'_>) {
        self.rcv_nxt = self.rcv_nxt.plus(1);
        self.ooo_fin = None;
        // Nothing after the FIN is data: forget anything queued beyond it.
        self.asm = None;
        self.state = match self.state {
            TcpConnectionState::Established => TcpConnectionState::CloseWait,
            TcpConnectionState::FinWait1 => TcpConnectionState::Closing,
            TcpConnectionState::FinWait2 => TcpConnectionState::TimeWait,
            s => s,
        };
        self.send_ack(now, cx);
        let _ = cx.delivery.receive_fin(now, self.id, cx.host);
        if self.state == TcpConnectionState::TimeWait {
            self.upload(now, cx, TcpUploadReason::UploadRequested);
        }
    }

    /// Stops the send side's timers (the connection stopped).
    fn stop_rto(&mut self) {
        if let Some(t) = self.tx.as_mut() {
            t.rto_at = None;
            t.persist_at = None;
            t.tlp_at = None;
            t.rack_at = None;
        }
    }

    /// Our FIN was acknowledged: the state moves on (RFC 9293 §3.10.7.4).
    fn on_fin_acked(&mut self, now: Instant, cx: &mut ConnContext<'_>) {
        self.state = match self.state {
            TcpConnectionState::FinWait1 => TcpConnectionState::FinWait2,
            TcpConnectionState::Closing => TcpConnectionState::TimeWait,
            TcpConnectionState::LastAck => TcpConnectionState::Closed,
            s => s,
        };
        if matches!(self.state, TcpConnectionState::TimeWait | TcpConnectionState::Closed) {
            self.upload(now, cx, TcpUploadReason::UploadRequested);
        }
    }

    /// Host abortive disconnect: send RST and stop (R-ABT-1).
    pub(crate) fn abort(&mut self, now: Instant, cx: &mut ConnContext<'_>) {
        let seq = self.snd_nxt;
        self.emit(now, cx, seq, flags::RST | flags::ACK);
        self.counters.out_resets += 1;
        self.stopped = true;
        self.state = TcpConnectionState::Closed;
        self.delack_at = None;
        self.stop_rto();
        self.ka_at = None;
        self.window_update_at = None;
    }

    /// R-RST-2 / R-SYN-1: after a challenge ACK, keep-alive fires within 5 minutes even when
    /// the host did not enable it, so a peer whose reset was lost is eventually noticed.
    fn arm_challenge_keepalive(&mut self, now: Instant, cx: &mut ConnContext<'_>) {
        let at = now + cx.cfg.challenge_keepalive;
        if self.ka_probes == 0 {
            self.ka_at = Some(self.ka_at.map_or(at, |t| t.min(at)));
        }
    }

    /// Keep-alive expiry: one more probe (SEG.SEQ = SND.NXT − 1, which the peer must answer
    /// with an ACK, or a RST if it lost the connection), or, after `KaProbeCount` unanswered
    /// probes, upload in CLOSED state (TimeoutExpiration).
    fn on_keepalive(&mut self, now: Instant, cx: &mut ConnContext<'_>) {
        let count = if cx.cfg.ka_probe_count == 0 { 10 } else { cx.cfg.ka_probe_count };
        if self.ka_probes >= count {
            self.ka_at = None;
            self.state = TcpConnectionState::Closed;
            self.upload(now, cx, TcpUploadReason::TimeoutExpiration);
            return;
        }
        self.ka_probes += 1;
        self.counters.keepalive_probes += 1;
        tracing::debug!(conn = %self.id, probe = self.ka_probes, "keep-alive probe");
        // An idle peer may be sitting on a zero window it got from a stale, reordered ACK
        // (same SEQ and ACK as our later update, so RFC 9293's SND.WL1/WL2 rule lets it win)
        // and, without a persist timer, never ask again: re-announce an open window in an
        // ordinary ACK first. The probe itself (SEG.SEQ = SND.NXT − 1) is unacceptable to the
        // peer, which ignores its window. Found by simulator seed 21223.
        // The window as it stands now: room may have opened with no segment to carry it (a
        // sender without a persist timer, smoltcp, would never ask).
        self.update_window(now, cx);
        if self.can_receive() && self.rcv_wnd() >= u32::from(self.peer_mss) {
            let seq = self.snd_nxt;
            self.emit(now, cx, seq, flags::ACK);
        }
        let seq = SeqNum(self.snd_nxt.0.wrapping_sub(1));
        self.emit(now, cx, seq, flags::ACK);
        let interval = if cx.cfg.ka_interval.is_zero() { Duration::from_secs(1) } else { cx.cfg.ka_interval };
        self.ka_at = Some(now + interval);
    }

    /// Runs the connection's timers due at `now`.
    pub(crate) fn on_timer(&mut self, now: Instant, cx: &mut ConnContext<'_>) {
        if self.delack_at.is_some_and(|t| t <= now) {
            self.delack_at = None;
            self.send_ack(now, cx);
        }
        if self.ring_release_at.is_some_and(|t| t <= now) {
            self.ring_release_at = None;
            if self.ooo_empty() {
                self.asm = None;
            }
        }
        if self.window_update_at.is_some_and(|t| t <= now) {
            self.wu_tries += 1;
            self.window_update_at = (self.wu_tries < 6).then(|| now + cx.cfg.rto * (1 << self.wu_tries));
            self.counters.window_update_repeats += 1;
            tracing::debug!(conn = %self.id, tries = self.wu_tries, "window update repeated");
            self.send_ack(now, cx);
        }
        if self.ka_at.is_some_and(|t| t <= now) && !self.stopped {
            if self.send_outstanding() != (0, false) {
                // Data or our FIN is in flight: the retransmission timer is watching the peer
                // (and uploads when it gives up); the idle timer starts over (as Linux does).
                let idle = cx.cfg.keepalive.unwrap_or(cx.cfg.challenge_keepalive);
                self.ka_at = Some(now + idle);
            } else {
                self.on_keepalive(now, cx);
            }
            if self.stopped {
                return;
            }
        }
        if self.tx.as_ref().is_some_and(|t| t.rto_at.is_some_and(|d| d <= now)) {
            self.on_rto(now, cx);
        }
        if self.tx.as_ref().is_some_and(|t| t.persist_at.is_some_and(|d| d <= now)) {
            self.on_persist(now, cx);
        }
        if self.tx.as_ref().is_some_and(|t| t.tlp_at.is_some_and(|d| d <= now)) {
            self.on_tlp(now, cx);
        }
        if self.tx.as_ref().is_some_and(|t| t.rack_at.is_some_and(|d| d <= now)) {
            self.on_rack_timer(now, cx);
        }
    }
}

/// An event the engine itself indicates (upload requests), through the delivery layer (which
/// serializes it with the connection's other upcalls; the verifier and the tracer see it).
/// A layer without that entry point gets the upcall directly: the host may post or return from
/// inside it; those calls are made on the delivery layer right after it returns.
pub(crate) fn host_event(now: Instant, cx: &mut ConnContext<'_>, id: ConnId, event: TcpOffloadEvent) {
    if cx.delivery.indicate_event(now, id, event, cx.host).is_ok() {
        return;
    }
    let mut nested = NestedCalls::new();
    cx.host.event_indicate(id, event, &mut nested);
    for (conn, nbls) in nested.drain_posts() {
        let _ = cx.delivery.receive(now, conn, nbls, cx.host);
    }
    let returns = nested.take_returns();
    if !returns.is_empty() {
        cx.delivery.receive_return(now, returns, cx.host);
    }
}
