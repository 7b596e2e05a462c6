//! A hostile network against the engine, below the packet scripts' one-connection view:
//! floods over many connections and many spoofed sources, with the contract verifier on.

use std::net::SocketAddr;
use std::time::Duration;

use chimney::contract::{Delivery, DeliveryConfig, Verifier, VerifierMode};
use chimney::engine::{Engine, EngineConfig};
use chimney::testkit::host::AppHost;
use chimney::testkit::peer::Peer;
use chimney::wire::{self, flags};
use chimney::Instant;

const TARGET: &str = "198.18.0.1:5001";

fn engine(cfg: EngineConfig) -> Engine<Verifier<Delivery>> {
    Engine::new(cfg, Verifier::new(Delivery::new(DeliveryConfig::default()), VerifierMode::Strict))
}

fn base() -> EngineConfig {
    let target: SocketAddr = TARGET.parse().unwrap();
    EngineConfig {
        listen: vec![target],
        prefixes: vec![wire::Prefix { addr: target.ip(), len: 24 }],
        ..EngineConfig::default()
    }
}

fn drain(e: &mut Engine<Verifier<Delivery>>) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    let mut out = Vec::new();
    while e.poll_transmit(&mut out) {
        v.push(std::mem::take(&mut out));
    }
    v
}

fn peer(i: u32) -> Peer {
    let remote = SocketAddr::new([198, 18, 0, 2].into(), 10_000 + i as u16);
    Peer::new(TARGET.parse().unwrap(), remote, 1_000 * i)
}

/// RFC 5961 §7: junk spread over many connections (each within its own interval) is still
/// bounded by the engine's per-second budget; the rest is counted, and the next second
/// brings a new allowance.
#[test]
fn junk_replies_bounded_by_the_engine_budget() {
    let mut e = engine(EngineConfig { junk_replies_per_sec: 20, ..base() });
    let mut host = AppHost::new();
    let t0 = Instant::ZERO + Duration::from_secs(1);
    let mut peers: Vec<Peer> = (0..200).map(peer).collect();
    for p in &mut peers {
        p.handshake(t0, &mut e, &mut host).unwrap();
    }
    drain(&mut e);
    let junk = |e: &mut Engine<_>, host: &mut AppHost, peers: &[Peer], now| {
        for p in peers {
            // A pure ACK far outside the window.
            let seg = p.segment(p.seq_at(1 << 30), flags::ACK, &[]);
            e.handle_packet(now, &seg, host);
        }
        drain(e).len() as u64
    };
    let sent = junk(&mut e, &mut host, &peers, t0);
    assert!((10..30).contains(&sent), "{sent} replies for 200 junk segments, budget 20/s");
    let s = e.stats();
    assert_eq!(s.replies_suppressed_global, 200 - sent);
    assert_eq!(s.replies_suppressed_conn, 0);
    // Within the same second, the connections that replied are spaced, the others out of budget.
    let again = junk(&mut e, &mut host, &peers, t0 + Duration::from_millis(600));
    assert_eq!(again, 0);
    let later = junk(&mut e, &mut host, &peers, t0 + Duration::from_millis(1100));
    assert!((10..30).contains(&later), "{later}");
    assert!(e.delivery().core().violations().is_empty());
}

/// With the budget off (0) every connection answers its first junk segment.
#[test]
fn zero_budget_means_unlimited() {
    let mut e = engine(EngineConfig { junk_replies_per_sec: 0, ..base() });
    let mut host = AppHost::new();
    let t0 = Instant::ZERO + Duration::from_secs(1);
    let mut peers: Vec<Peer> = (0..50).map(peer).collect();
    for p in &mut peers {
        p.handshake(t0, &mut e, &mut host).unwrap();
    }
    drain(&mut e);
    for p in &peers {
        e.handle_packet(t0, &p.segment(p.seq_at(1 << 30), flags::ACK, &[]), &mut host);
    }
    assert_eq!(drain(&mut e).len(), 50);
    assert_eq!(e.stats().replies_suppressed_global, 0);
}
