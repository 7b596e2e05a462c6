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

/// A spoofed SYN from `src`, port `port`, to the target.
fn spoofed_syn(src: std::net::IpAddr, port: u16, isn: u32) -> Vec<u8> {
    let mut p = Peer::new(TARGET.parse().unwrap(), SocketAddr::new(src, port), isn);
    p.tsval = Some(isn);
    p.segment_acking(isn, 0, flags::SYN, &[])
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// RFC 4987 §3.6: during a flood of 50,000 spoofed SYNs the half-open table stays at its
/// bound (memory ≤ 4 MiB), the rest are answered with cookies, and a legitimate client that
/// arrives in the middle of it connects on its first SYN and delivers its stream.
#[test]
fn syn_flood_legitimate_client_connects_on_first_syn() {
    let mut e = engine(base());
    let mut host = AppHost::new();
    let mut rng = Rng(42);
    let t0 = Instant::ZERO + Duration::from_secs(5);
    let flood = |e: &mut Engine<_>, host: &mut AppHost, rng: &mut Rng, n: usize, now| {
        for _ in 0..n {
            let r = rng.next();
            // Random unicast sources in 10.0.0.0/8.
            let src = std::net::Ipv4Addr::from(0x0A00_0000 | (r as u32 & 0x00FF_FFFF));
            e.handle_packet(now, &spoofed_syn(src.into(), 1024 + (r >> 40) as u16 % 60000, (r >> 8) as u32), host);
        }
        drain(e).len()
    };
    assert_eq!(flood(&mut e, &mut host, &mut rng, 25_000, t0), 25_000, "every SYN gets one SYN-ACK");
    let mut legit = peer(1);
    legit.tsval = Some(777);
    let conn = legit.handshake(t0, &mut e, &mut host).expect("the client connects on its first SYN");
    assert_eq!(flood(&mut e, &mut host, &mut rng, 25_000, t0 + Duration::from_millis(10)), 25_000);
    let s = e.stats();
    let (held, bytes) = e.half_open();
    assert_eq!(held, 1024, "the table stays at its bound");
    assert!(bytes <= 4 << 20, "half-open memory {bytes} B");
    assert!(s.listener.cookies_sent >= 48_000, "{:?}", s.listener);
    assert_eq!(s.listener.cookies_valid, 1);
    assert_eq!(s.listener.syn_overflow, 0);
    // The legitimate stream arrives exact, under the verifier.
    host.set_policy(conn, chimney::testkit::host::AppPolicy { keep_posted: 2, post_size: 4096, ..Default::default() });
    host.top_up(t0, conn, &mut e).unwrap();
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 13) as u8).collect();
    e.handle_packet(t0, &legit.segment(legit.seq_at(0), flags::ACK | flags::PSH, &data), &mut host);
    assert_eq!(host.conn(conn).stream, data);
    assert!(e.delivery().core().violations().is_empty());
}

/// With cookies off the same flood locks the client out: its SYN is dropped and counted
/// (the behaviour cookies exist to prevent).
#[test]
fn syn_flood_without_cookies_drops_the_client() {
    let mut cfg = base();
    cfg.listener.syncookies = chimney::engine::SynCookies::Never;
    let mut e = engine(cfg);
    let mut host = AppHost::new();
    let t0 = Instant::ZERO + Duration::from_secs(5);
    for i in 0..5000u32 {
        let src = std::net::Ipv4Addr::from(0x0A00_0000 | i);
        e.handle_packet(t0, &spoofed_syn(src.into(), 2000, i), &mut host);
    }
    drain(&mut e);
    assert!(peer(1).handshake(t0, &mut e, &mut host).is_err());
    assert_eq!(e.stats().listener.syn_overflow, 5000 - 1024 + 1);
}

/// No reflection under a flood from every kind of source: whatever arrives (random IPv4
/// sources and destinations, broadcast, multicast, loopback, port 0), nothing is ever sent
/// to or from a non-unicast address or port 0.
#[test]
fn nothing_is_sent_to_or_from_a_martian() {
    let mut e = engine(base());
    let mut host = AppHost::new();
    let mut rng = Rng(7);
    let t0 = Instant::ZERO + Duration::from_secs(5);
    let prefixes = base().prefixes;
    let specials = ["255.255.255.255", "198.18.0.255", "198.18.0.0", "224.0.0.1", "127.0.0.1", "0.0.0.0", "240.1.1.1"];
    let mut sent = 0;
    for i in 0..20_000u64 {
        let r = rng.next();
        let pick = |x: u64| -> std::net::IpAddr {
            if x.is_multiple_of(3) {
                specials[(x / 3) as usize % specials.len()].parse().unwrap()
            } else {
                std::net::Ipv4Addr::from((x >> 16) as u32).into()
            }
        };
        let src = pick(r);
        let dst = if i % 2 == 0 { "198.18.0.1".parse().unwrap() } else { pick(r.rotate_left(21)) };
        let sport = if r.is_multiple_of(7) { 0 } else { (r >> 48) as u16 };
        let dport = if r.is_multiple_of(11) { 0 } else { 5001 };
        let fl = [flags::SYN, flags::ACK, flags::ACK | flags::PSH, flags::FIN | flags::ACK][(r >> 5) as usize % 4];
        let p = Peer::new(SocketAddr::new(dst, dport), SocketAddr::new(src, sport), r as u32);
        e.handle_packet(t0, &p.segment_acking(r as u32, (r >> 32) as u32, fl, b"x"), &mut host);
        for pkt in drain(&mut e) {
            let s = wire::parse(&pkt).unwrap();
            assert!(
                !wire::addr::is_martian(s.src, s.src_port, s.dst, s.dst_port, &prefixes),
                "sent {}:{} -> {}:{}",
                s.src,
                s.src_port,
                s.dst,
                s.dst_port
            );
            sent += 1;
        }
    }
    assert!(sent > 1000, "the unicast part of the flood is still answered ({sent})");
    assert!(e.stats().wire_drops(wire::WireError::Martian) > 5000);
}

/// SYNs with new ISNs for a tuple in SYN-RECEIVED (a blind attacker who knows the tuple)
/// never replace the half-open: each draws a challenge ACK within the budget, the table stays
/// at one entry, and the real handshake still completes.
#[test]
fn new_isn_syns_do_not_replace_a_half_open() {
    let mut e = engine(base());
    let mut host = AppHost::new();
    let t0 = Instant::ZERO + Duration::from_secs(5);
    let mut p = peer(1);
    e.handle_packet(t0, &p.segment_acking(p.irs, 0, flags::SYN, &[]), &mut host);
    let iss = wire::parse(&drain(&mut e)[0]).unwrap().seq.0;
    let src: std::net::IpAddr = "198.18.0.2".parse().unwrap();
    let mut answered = 0;
    for i in 0..100_000u32 {
        e.handle_packet(t0, &spoofed_syn(src, 10_001, i.wrapping_mul(7919)), &mut host);
        answered += drain(&mut e).len();
    }
    let (held, bytes) = e.half_open();
    assert_eq!(held, 1);
    assert!(bytes < 1 << 20, "{bytes} B for one half-open");
    assert_eq!(e.stats().listener.challenged, 100_000);
    assert!(answered <= 1500, "{answered} challenge ACKs: the budget bounds them");
    p.iss = iss;
    e.handle_packet(t0, &p.segment(p.irs.wrapping_add(1), flags::ACK, &[]), &mut host);
    drain(&mut e);
    assert!(matches!(e.poll_event(), Some(chimney::engine::EngineEvent::Offloaded { .. })));
}
