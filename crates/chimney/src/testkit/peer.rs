//! One TCP peer for every harness that talks to an [`Engine`] in memory (the property tests,
//! the packet scripts, the fuzz target, the engine and scale benchmarks), as quinn's `Pair`
//! is for its tests: it builds the peer's segments, runs the handshake, and drives the
//! engine's timers for a bounded time.

use std::net::SocketAddr;

use crate::contract::{ConnId, InitiateOffload, ProtocolHost, ReceiveInput, SendInput};
use crate::engine::{Engine, EngineEvent};
use crate::time::Instant;
use crate::wire::{self, flags, Flags, SegmentRepr, SeqNum, TcpOptions};

/// The peer's side of one connection to an engine listening at `local`.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The engine's address (its listen address).
    pub local: SocketAddr,
    /// The peer's address.
    pub remote: SocketAddr,
    /// The peer's initial sequence number.
    pub irs: u32,
    /// The engine's initial sequence number, learnt from its SYN-ACK.
    pub iss: u32,
    /// The window the peer advertises.
    pub window: u16,
    /// Timestamps on every segment: `Some(tsval)`, else none.
    pub tsval: Option<u32>,
    /// The timestamp echo on segments after the SYN (the SYN echoes 0).
    pub tsecr: u32,
    /// Options on the peer's SYN.
    pub syn_options: TcpOptions,
    /// IP identification of the peer's packets.
    pub ip_id: u16,
    /// Urgent pointer of its segments with URG (offset from SEG.SEQ, pointing just past the
    /// urgent byte, as BSD and Linux send it).
    pub urgent: u16,
}

impl Peer {
    /// A peer at `remote` (ISN `irs`) for an engine at `local`: MSS 1460, SACK permitted, no
    /// window scaling, no timestamps, a 65535-byte window.
    pub fn new(local: SocketAddr, remote: SocketAddr, irs: u32) -> Peer {
        Peer {
            local,
            remote,
            irs,
            iss: 0,
            window: 65535,
            tsval: None,
            tsecr: 0,
            syn_options: TcpOptions { mss: Some(1460), sack_permitted: true, ..TcpOptions::default() },
            ip_id: 7,
            urgent: 0,
        }
    }

    /// The peer's segment `seq` with `flags` and `payload`, acknowledging `ack`.
    pub fn segment_acking(&self, seq: u32, ack: u32, fl: Flags, payload: &[u8]) -> Vec<u8> {
        let syn = fl.contains(flags::SYN);
        let mut options = if syn { self.syn_options } else { TcpOptions::default() };
        if let Some(ts) = self.tsval {
            options.timestamps = Some((ts, if syn { 0 } else { self.tsecr }));
        }
        self.segment_with(seq, ack, fl, self.window, options, payload)
    }

    /// The peer's segment with every field given (a script that sets options and window per
    /// segment).
    pub fn segment_with(
        &self,
        seq: u32,
        ack: u32,
        fl: Flags,
        window: u16,
        options: TcpOptions,
        payload: &[u8],
    ) -> Vec<u8> {
        let r = SegmentRepr {
            src: self.remote.ip(),
            dst: self.local.ip(),
            src_port: self.remote.port(),
            dst_port: self.local.port(),
            seq: SeqNum(seq),
            ack: SeqNum(ack),
            flags: fl,
            window,
            options,
            payload,
            urgent: if fl.contains(flags::URG) { self.urgent } else { 0 },
            ip_id: self.ip_id,
        };
        let mut v = Vec::new();
        r.emit(&mut v);
        v
    }

    /// The peer's segment `seq` with `flags` and `payload`, acknowledging the engine's SYN
    /// (`iss + 1`).
    pub fn segment(&self, seq: u32, fl: Flags, payload: &[u8]) -> Vec<u8> {
        self.segment_acking(seq, self.iss.wrapping_add(1), fl, payload)
    }

    /// The peer's stream byte at `offset` (0 = the first byte after the SYN) as a sequence
    /// number.
    pub fn seq_at(&self, offset: u64) -> u32 {
        self.irs.wrapping_add(1).wrapping_add(offset as u32)
    }

    /// SYN, the engine's SYN-ACK, ACK: returns the id of the offloaded connection. Packets the
    /// engine sends and engine events up to this connection's `Offloaded` are consumed (a
    /// harness that needs other connections' events polls them before the handshake).
    pub fn handshake<D: InitiateOffload + ReceiveInput + SendInput>(
        &mut self,
        now: Instant,
        engine: &mut Engine<D>,
        host: &mut dyn ProtocolHost,
    ) -> Result<ConnId, String> {
        engine.handle_packet(now, &self.segment_acking(self.irs, 0, flags::SYN, &[]), host);
        let mut out = Vec::new();
        let mut iss = None;
        while engine.poll_transmit(&mut out) {
            if let Ok(s) = wire::parse(&out) {
                if s.has(flags::SYN) && s.has(flags::ACK) && s.dst_port == self.remote.port() {
                    iss = Some(s.seq.0);
                    // Echo its TSval, as a real peer does (a cookie SYN-ACK's carries options).
                    if let Some((v, _)) = s.options.timestamps {
                        self.tsecr = v;
                    }
                }
            }
        }
        self.iss = iss.ok_or_else(|| format!("no SYN-ACK to {}", self.remote))?;
        engine.handle_packet(now, &self.segment(self.irs.wrapping_add(1), flags::ACK, &[]), host);
        while engine.poll_transmit(&mut out) {}
        while let Some(ev) = engine.poll_event() {
            if let EngineEvent::Offloaded { conn, remote, .. } = ev {
                if remote == self.remote {
                    return Ok(conn);
                }
            }
        }
        Err(format!("{} was not offloaded", self.remote))
    }
}

/// Runs the engine's timers from `now` until `until` (each due deadline in turn, at most
/// `max_steps` of them), handing every packet it sends to `sent`; returns the time of the
/// last timer it ran (`now` when none was due).
/// Bounded, so a timer that keeps rescheduling itself cannot hang a test.
pub fn drive<D: InitiateOffload + ReceiveInput + SendInput>(
    engine: &mut Engine<D>,
    host: &mut dyn ProtocolHost,
    now: Instant,
    until: Instant,
    max_steps: usize,
    sent: &mut dyn FnMut(&[u8]),
) -> Instant {
    let mut now = now;
    let mut out = Vec::new();
    for _ in 0..max_steps {
        while engine.poll_transmit(&mut out) {
            sent(&out);
        }
        match engine.poll_timeout() {
            Some(t) if t <= until => {
                now = t.max(now);
                engine.handle_timeout(now, host);
            }
            _ => break,
        }
    }
    while engine.poll_transmit(&mut out) {
        sent(&out);
    }
    now
}
