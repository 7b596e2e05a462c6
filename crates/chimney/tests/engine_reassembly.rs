//! Engine-level properties: any permutation, duplication and overlap of a stream's segments
//! yields the exact stream under the strict verifier, reassembly memory stays within the
//! window, work per segment stays bounded, with and without direct placement; and arbitrary
//! bytes never panic the engine.

use std::net::SocketAddr;

use chimney::contract::{ConnId, Delivery, DeliveryConfig, Verifier, VerifierMode};
use chimney::engine::{Engine, EngineConfig};
use chimney::testkit::host::{AppHost, AppPolicy};
use chimney::testkit::peer::Peer as TestPeer;
use chimney::wire::{self, flags, TcpOptions};
use chimney::Instant;
use proptest::prelude::*;

struct Peer {
    engine: Engine<Verifier<Delivery>>,
    host: AppHost,
    /// The TCP peer (chimney's shared test peer): segments and the handshake.
    tcp: TestPeer,
    conn: ConnId,
}

fn seg(p: &Peer, seq: u32, fl: wire::Flags, payload: &[u8]) -> Vec<u8> {
    p.tcp.segment(seq, fl, payload)
}

fn connect(rcv_wnd: u32, ranges: usize, policy: AppPolicy, irs: u32) -> Peer {
    let local: SocketAddr = "198.18.0.1:5001".parse().unwrap();
    let remote: SocketAddr = "198.18.0.2:40000".parse().unwrap();
    let mut cfg = EngineConfig { listen: vec![local], ..EngineConfig::default() };
    cfg.tcp.rcv_wnd = rcv_wnd;
    cfg.tcp.max_ooo_ranges = ranges;
    let mut tcp = TestPeer::new(local, remote, irs);
    tcp.syn_options = TcpOptions { sack_permitted: true, ..TcpOptions::default() };
    let mut p = Peer {
        engine: Engine::new(cfg, Verifier::new(Delivery::new(DeliveryConfig::default()), VerifierMode::Strict)),
        host: AppHost::new(),
        tcp,
        conn: ConnId(0),
    };
    p.host.set_policy(ConnId(0), policy);
    p.conn = p.tcp.handshake(Instant::ZERO, &mut p.engine, &mut p.host).unwrap();
    p.host.top_up(Instant::ZERO, p.conn, &mut p.engine).unwrap();
    p
}

/// Feeds `pkt` as a driver does: with `direct`, the payload is first written into the
/// connection's placement room (what `readv` does, hit or miss) and offered with
/// `handle_placed`; when header prediction fails the packet goes the ordinary way, and the
/// bytes scribbled into the room must not show.
fn feed(p: &mut Peer, now: Instant, pkt: &[u8], direct: bool) -> bool {
    if direct {
        if let Ok(whole) = wire::parse(pkt) {
            let head_len = pkt.len() - whole.payload.len();
            let payload = whole.payload.to_vec();
            let mut room: [&mut [u8]; 16] = Default::default();
            let k = p.engine.placement_room(p.conn, 65536, &mut room);
            let mut off = 0;
            for s in room[..k].iter_mut() {
                let n = s.len().min(payload.len() - off);
                s[..n].copy_from_slice(&payload[off..off + n]);
                off += n;
            }
            if k > 0 && off == payload.len() {
                let (h, plen) = wire::parse_headers(&pkt[..head_len], pkt.len()).unwrap();
                assert_eq!(plen, payload.len());
                if p.engine.handle_placed(now, p.conn, &h, plen, pkt.len(), &mut p.host) {
                    return true;
                }
            }
        }
    }
    p.engine.handle_packet(now, pkt, &mut p.host);
    false
}

#[test]
fn in_order_segments_are_placed_directly_and_exactly() {
    for (mdls, post_size, keep) in [(1, 4000, 2), (3, 3000, 3), (4, 1000, 8), (2, 65536, 1)] {
        let policy = AppPolicy { keep_posted: keep, post_size, mdls, ..AppPolicy::default() };
        let irs = 4_294_967_000u32;
        let mut p = connect(65536, 8, policy, irs);
        let data: Vec<u8> = (0..200_000usize).map(|i| (i * 13 % 241) as u8).collect();
        let (mut at, mut placed, mut out) = (0usize, 0u64, Vec::new());
        let mut i = 0;
        while at < data.len() {
            let n = [1448usize, 700, 1, 2896][i % 4].min(data.len() - at);
            i += 1;
            let pkt = seg(&p, irs.wrapping_add(1).wrapping_add(at as u32), flags::ACK | flags::PSH, &data[at..at + n]);
            placed += u64::from(feed(&mut p, Instant::ZERO, &pkt, true));
            at += n;
            while p.engine.poll_transmit(&mut out) {}
            p.host.return_held(Instant::ZERO, &mut p.engine);
            p.host.top_up(Instant::ZERO, p.conn, &mut p.engine).unwrap();
        }
        p.engine.handle_timeout(Instant::from_millis(2000), &mut p.host);
        let mut got = p.host.conn(p.conn).stream;
        let d = chimney::contract::OffloadTarget::terminate_offload(
            &mut p.engine,
            Instant::from_millis(2000),
            p.conn,
            &mut p.host,
        )
        .unwrap();
        for n in d.buffered_data.iter() {
            n.net_buffer().copy_out(n.net_buffer().data_offset(), n.net_buffer().data_length(), &mut got);
        }
        assert!(got == data, "stream differs ({mdls} MDLs of {post_size})");
        assert_eq!(p.engine.stats().placed_packets, placed);
        assert!(placed * 10 >= i as u64 * 9, "only {placed} of {i} segments placed ({mdls} MDLs of {post_size})");
        assert!(p.engine.delivery().core().violations().is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_segment_order_yields_the_exact_stream(
        cuts in proptest::collection::vec(1usize..20_000, 0..60),
        extra in proptest::collection::vec((0usize..20_000, 1usize..3000), 0..30),
        order in any::<u64>(),
        irs in prop_oneof![Just(4_294_960_000u32), any::<u32>()],
        posting in any::<bool>(),
        direct in any::<bool>(),
    ) {
        let len = 20_000usize;
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let mut bounds: Vec<usize> = cuts.clone();
        bounds.push(0);
        bounds.push(len);
        bounds.sort_unstable();
        bounds.dedup();
        let mut segs: Vec<(usize, usize)> = bounds.windows(2).map(|w| (w[0], w[1])).collect();
        segs.extend(extra.iter().map(|&(s, l)| (s, (s + l).min(len))).filter(|(s, e)| s < e));
        let mut x = order | 1;
        for i in (1..segs.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            segs.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let policy = if posting {
            AppPolicy { keep_posted: 2, post_size: 3000, ..AppPolicy::default() }
        } else {
            AppPolicy { keep_posted: 0, ..AppPolicy::default() }
        };
        let wnd = 8192;
        let mut p = connect(wnd, 16, policy, irs);
        let mut out = Vec::new();
        let mut packets = 0u64;
        for _round in 0..40 {
            for &(s, e) in &segs {
                let pkt = seg(&p, irs.wrapping_add(1).wrapping_add(s as u32), flags::ACK, &data[s..e]);
                feed(&mut p, Instant::ZERO, &pkt, direct);
                packets += 1;
                while p.engine.poll_transmit(&mut out) {}
                let c = p.engine.conn(p.conn).unwrap();
                // The ring is the window plus one scale unit (1 byte here: no window scaling).
                prop_assert!(c.memory() <= wnd as usize + 1, "reassembly memory {} over the window", c.memory());
                prop_assert!(c.ooo().0 <= wnd as u64);
                p.host.return_held(Instant::ZERO, &mut p.engine);
                p.host.top_up(Instant::ZERO, p.conn, &mut p.engine).unwrap();
            }
            if p.engine.conn(p.conn).unwrap().rcv_nxt() == irs.wrapping_add(1).wrapping_add(len as u32) {
                break;
            }
            // The peer retransmits from RCV.NXT, as a real sender would after a timeout.
            let nxt = p.engine.conn(p.conn).unwrap().rcv_nxt().wrapping_sub(irs.wrapping_add(1)) as usize;
            segs.push((nxt, (nxt + 1460).min(len)));
        }
        // Let the push timer hand over a partial request, then upload: the rest comes back.
        p.engine.handle_timeout(Instant::from_millis(2000), &mut p.host);
        let mut got = p.host.conn(p.conn).stream;
        let d = chimney::contract::OffloadTarget::terminate_offload(&mut p.engine, Instant::from_millis(2000), p.conn, &mut p.host).unwrap();
        for n in d.buffered_data.iter() {
            n.net_buffer().copy_out(n.net_buffer().data_offset(), n.net_buffer().data_length(), &mut got);
        }
        prop_assert_eq!(got.len(), len);
        prop_assert!(got == data, "stream differs");
        let st = p.engine.stats();
        prop_assert!(st.work <= packets * 18, "assembler work {} for {} packets", st.work, packets);
        prop_assert!(p.engine.delivery().core().violations().is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 1..40),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..20),
    ) {
        let mut p = connect(65536, 8, AppPolicy::default(), 1000);
        let mut out = Vec::new();
        for (i, raw) in packets.iter().enumerate() {
            p.engine.handle_packet(Instant::from_millis(i as u64), raw, &mut p.host);
            // and a valid packet with a few flipped bytes
            let mut v = seg(&p, 1001 + i as u32 * 10, flags::ACK | flags::PSH, &raw[..raw.len().min(10)]);
            for &(at, b) in &flips {
                let n = v.len();
                v[at % n] ^= b;
            }
            p.engine.handle_packet(Instant::from_millis(i as u64), &v, &mut p.host);
            while p.engine.poll_transmit(&mut out) {}
        }
        p.engine.handle_timeout(Instant::from_millis(5000), &mut p.host);
        prop_assert!(p.engine.delivery().core().violations().is_empty());
    }
}
