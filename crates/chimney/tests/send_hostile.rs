//! A hostile peer against the send half, strict verifier on: ACK division, ACKs of data never
//! sent, a window that stays shut, ACKs lost, reordered and duplicated, a reset mid-send. Sends
//! complete only for what the peer really acknowledged, the congestion window grows only with
//! acknowledged bytes, nothing panics and every NBL completes exactly once.

use std::net::SocketAddr;
use std::time::Duration;

use chimney::contract::{ConnId, Delivery, DeliveryConfig, OffloadTarget, Verifier, VerifierMode};
use chimney::engine::{Engine, EngineConfig};
use chimney::ndis::{Mdl, NblChain, NblId, NdisStatus, NetBuffer, NetBufferList, PoolTag};
use chimney::tcp::TcpDrop;
use chimney::testkit::host::SendRecorder;
use chimney::testkit::peer::Peer;
use chimney::testkit::rng::SplitMix64;
use chimney::wire::{self, flags};
use chimney::Instant;

const TARGET: &str = "198.18.0.1:5001";

/// Records every send completion.
type Host = SendRecorder;

struct Rig {
    e: Engine<Verifier<Delivery>>,
    host: Host,
    peer: Peer,
    conn: ConnId,
    now: Instant,
    base: u32,
    serial: u64,
}

impl Rig {
    fn new(port: u16) -> Rig {
        let target: SocketAddr = TARGET.parse().unwrap();
        let cfg = EngineConfig { listen: vec![target], ..EngineConfig::default() };
        let mut e = Engine::new(cfg, Verifier::new(Delivery::new(DeliveryConfig::default()), VerifierMode::Strict));
        let mut host = Host::default();
        let mut peer = Peer::new(target, SocketAddr::new([198, 18, 0, 2].into(), port), 77_000);
        peer.window = 0xFFFF;
        let conn = peer.handshake(Instant::ZERO, &mut e, &mut host).unwrap();
        let base = peer.iss.wrapping_add(1);
        Rig { e, host, peer, conn, now: Instant::ZERO, base, serial: 1000 }
    }

    /// Posts `n` NBLs of `size` bytes.
    fn send(&mut self, n: usize, size: usize) {
        let mut chain = NblChain::new();
        for k in 0..n {
            self.serial += 1;
            let nb = NetBuffer::new(vec![Mdl::from_bytes(vec![k as u8; size])]);
            chain.push_back(NetBufferList::new(NblId::new(PoolTag::Host, self.serial), nb));
        }
        self.e.send(self.now, self.conn, chain, &mut self.host).unwrap();
    }

    /// Packets the target sent: (offset of the first payload byte, payload length, flags).
    fn sent(&mut self) -> Vec<(u64, usize, wire::Flags)> {
        let mut out = Vec::new();
        let mut v = Vec::new();
        while self.e.poll_transmit(&mut out) {
            let s = wire::parse(&out).unwrap();
            v.push((u64::from(s.seq.0.wrapping_sub(self.base)), s.payload.len(), s.flags));
        }
        v
    }

    /// An ACK of stream offset `upto` with window `wnd`.
    fn ack(&mut self, upto: u64, wnd: u16) {
        self.peer.window = wnd;
        let ack = self.base.wrapping_add(upto as u32);
        let p = self.peer.segment_acking(self.peer.seq_at(0), ack, flags::ACK, &[]);
        self.e.handle_packet(self.now, &p, &mut self.host);
    }

    fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        while let Some(t) = self.e.poll_timeout() {
            if t > until {
                break;
            }
            self.now = t.max(self.now);
            self.e.handle_timeout(self.now, &mut self.host);
        }
        self.now = until;
    }

    fn acked_bytes(&self) -> usize {
        self.host.done.iter().filter(|d| d.1 == NdisStatus::Success).map(|d| d.2).sum()
    }
}

/// ACK division (RFC 3465 §2.3): the peer acknowledges each segment one byte at a time. The
/// congestion window grows by bytes acknowledged, not by ACKs counted: after the first flight
/// it is at most the initial window plus what was acknowledged.
#[test]
fn ack_division_does_not_inflate_the_window() {
    let mut r = Rig::new(41_000);
    r.send(1, 200_000);
    let first = r.sent();
    let flight: u64 = first.iter().map(|p| p.1 as u64).sum();
    let (iw, _, _) = r.e.conn(r.conn).unwrap().send_windows().unwrap();
    for b in 1..=2896u64 {
        r.ack(b, 0xFFFF);
    }
    let (cwnd, _, in_flight) = r.e.conn(r.conn).unwrap().send_windows().unwrap();
    assert!(flight <= u64::from(iw), "{flight} sent in the first flight, IW {iw}");
    assert!(cwnd <= iw + 2896, "2,896 bytes acknowledged in 1-byte ACKs grew cwnd from {iw} to {cwnd}");
    assert!(in_flight <= u64::from(cwnd), "{in_flight} in flight, cwnd {cwnd}");
    assert_eq!(r.acked_bytes(), 0, "nothing completes before the whole NBL is acknowledged");
}

/// Optimistic ACKs of data never sent are dropped (RFC 5961 §5), answered within the budget,
/// and complete nothing; the connection then goes on normally.
#[test]
fn acks_of_unsent_data_complete_nothing() {
    let mut r = Rig::new(41_001);
    r.send(4, 1000);
    let out = r.sent();
    let sent: u64 = out.iter().map(|p| p.1 as u64).sum();
    for k in 1..50u64 {
        r.ack(sent + k * 1000, 0xFFFF);
    }
    let _ = r.sent();
    let c = r.e.conn(r.conn).unwrap();
    assert_eq!(c.counters().dropped(TcpDrop::AckTooHigh), 49);
    assert!(r.host.done.is_empty(), "{:?}", r.host.done);
    r.ack(sent, 0xFFFF);
    // NBLs of 1,000 bytes: those wholly acknowledged complete, the one cut by the ACK waits.
    assert_eq!(r.acked_bytes() as u64, sent / 1000 * 1000);
    assert!(r.host.done.iter().all(|d| d.1 == NdisStatus::Success));
}

/// A window that stays shut: the persist timer probes with backoff for ten minutes of virtual
/// time without giving up while the peer answers, sends nothing into the window, then a reset
/// completes every send REQUEST_ABORTED, each NBL exactly once.
#[test]
fn zero_window_forever_then_reset() {
    let mut r = Rig::new(41_002);
    r.ack(0, 0);
    r.send(3, 5000);
    assert!(r.sent().iter().all(|p| p.1 == 0), "data went into a zero window");
    let mut probes = 0;
    for _ in 0..600 {
        r.advance(Duration::from_secs(1));
        for p in r.sent() {
            assert_eq!(p.1, 0, "data into a zero window");
            probes += 1;
            r.ack(0, 0);
        }
    }
    assert!((5..=40).contains(&probes), "{probes} probes in 10 minutes");
    assert!(!r.e.conn(r.conn).unwrap().is_stopped(), "an answering peer keeps the connection");
    let rst = r.peer.segment_acking(r.peer.seq_at(0), r.base, flags::RST | flags::ACK, &[]);
    r.e.handle_packet(r.now, &rst, &mut r.host);
    assert_eq!(r.host.done.len(), 3);
    assert!(r.host.done.iter().all(|d| d.1 == NdisStatus::RequestAborted && d.2 == 0));
}

/// The ACK path loses, reorders and duplicates ACKs (and the peer SACKs nothing): every byte
/// is delivered to the peer once it receives it in order, every NBL completes SUCCESS exactly
/// once, in order, with its own count.
#[test]
fn chaotic_ack_path() {
    for seed in 1..=20u64 {
        let mut r = Rig::new(41_100 + seed as u16);
        let mut rng = SplitMix64::new(seed);
        let sizes: Vec<usize> = (0..30).map(|_| 1 + rng.below(20_000) as usize).collect();
        let total: u64 = sizes.iter().map(|&s| s as u64).sum();
        for &s in &sizes {
            r.send(1, s);
        }
        let mut next = 0u64; // the peer's in-order point
        let mut have = std::collections::BTreeMap::new();
        let mut acks: Vec<(Instant, u64)> = Vec::new();
        for _ in 0..200_000 {
            for (off, len, _) in r.sent() {
                if len == 0 || rng.below(20) == 0 {
                    continue; // data lost on the way
                }
                have.insert(off, off + len as u64);
                while let Some((&a, &b)) = have.range(..=next).next_back() {
                    if b <= next {
                        have.remove(&a);
                        if have.range(..=next).next_back().is_none() {
                            break;
                        }
                        continue;
                    }
                    next = b;
                    have.remove(&a);
                }
                // The ACK may be lost, duplicated, or delayed (reordered).
                match rng.below(10) {
                    0 => {}
                    1 => {
                        acks.push((r.now + Duration::from_millis(rng.below(30)), next));
                        acks.push((r.now + Duration::from_millis(rng.below(30)), next));
                    }
                    _ => acks.push((r.now + Duration::from_millis(1 + rng.below(20)), next)),
                }
            }
            acks.sort();
            let due: Vec<u64> = acks.iter().filter(|(t, _)| *t <= r.now).map(|(_, a)| *a).collect();
            acks.retain(|(t, _)| *t > r.now);
            for a in due {
                r.ack(a, 0xFFFF);
            }
            if r.acked_bytes() as u64 == total {
                break;
            }
            let step = acks.first().map_or(Duration::from_millis(5), |(t, _)| t.saturating_duration_since(r.now));
            r.advance(step.max(Duration::from_micros(100)));
        }
        assert_eq!(r.acked_bytes() as u64, total, "seed {seed}: {} of {total} acknowledged", r.acked_bytes());
        assert_eq!(r.host.done.len(), sizes.len(), "seed {seed}");
        let ids: Vec<u64> = r.host.done.iter().map(|d| d.0 .0 & 0xFFFF_FFFF).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "seed {seed}: out of order: {ids:?}");
        for (d, &s) in r.host.done.iter().zip(&sizes) {
            assert_eq!((d.1, d.2), (NdisStatus::Success, s), "seed {seed}");
        }
    }
}
