//! The send half through the engine, with the strict verifier on: the host posts send NBLs
//! (several NBs and MDLs), a scripted peer acknowledges what arrives in order (dropping
//! some segments on the way), and the stream the peer reassembles must equal what was
//! posted, every NBL completing SUCCESS exactly once, then the graceful disconnect.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use chimney::contract::{Delivery, DeliveryConfig, OffloadTarget, Verifier, VerifierMode};
use chimney::engine::{Engine, EngineConfig};
use chimney::ndis::{DisconnectKind, Mdl, NblChain, NblId, NdisStatus, NetBuffer, NetBufferList, PoolTag};
use chimney::testkit::host::{AppHost, SendRecorder};
use chimney::testkit::peer::Peer;
use chimney::wire::{self, flags};
use chimney::Instant;

const TARGET: &str = "198.18.0.1:5001";

/// The application: receives nothing, records send and disconnect completions.
type Sender = SendRecorder;

fn pattern(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A send NBL with `nbs` NBs, each split over three MDLs.
fn send_nbl(id: u64, bytes: &[u8], nbs: usize) -> NetBufferList {
    let per = bytes.len().div_ceil(nbs).max(1);
    let mut list: Vec<NetBuffer> = bytes
        .chunks(per)
        .map(|c| {
            let a = c.len() / 3;
            let b = 2 * c.len() / 3;
            NetBuffer::new(vec![
                Mdl::from_bytes(c[..a].to_vec()),
                Mdl::from_bytes(c[a..b].to_vec()),
                Mdl::from_bytes(c[b..].to_vec()),
            ])
        })
        .collect();
    if list.is_empty() {
        list.push(NetBuffer::new(vec![Mdl::from_bytes(Vec::new())]));
    }
    let first = list.remove(0);
    NetBufferList::with_net_buffers(NblId::new(PoolTag::Host, id), first, list)
}

/// Transfers `total` bytes in NBLs of `nbl_size`, dropping every `drop_every`-th data
/// segment the first time it is sent (0: none), then closes gracefully. Returns what the
/// peer received and the host.
fn transfer(total: usize, nbl_size: usize, drop_every: usize) -> (Vec<u8>, Vec<u8>, Sender, u32) {
    let target: SocketAddr = TARGET.parse().unwrap();
    let cfg = EngineConfig { listen: vec![target], ..EngineConfig::default() };
    let mut e = Engine::new(cfg, Verifier::new(Delivery::new(DeliveryConfig::default()), VerifierMode::Strict));
    let mut host = Sender::default();
    let mut peer = Peer::new(target, SocketAddr::new([198, 18, 0, 2].into(), 40_000), 7_000);
    peer.window = 0xFFFF;
    let mut now = Instant::ZERO;
    let conn = peer.handshake(now, &mut e, &mut host).unwrap();
    let data = pattern(total, 3);
    let mut chain = NblChain::new();
    for (k, c) in data.chunks(nbl_size).enumerate() {
        chain.push_back(send_nbl(100 + k as u64, c, 1 + k % 3));
    }
    let nbls = chain.len();
    e.send(now, conn, chain, &mut host).unwrap();
    e.disconnect(now, conn, DisconnectKind::Graceful, NblChain::new(), &mut host).unwrap();
    // The peer: in-order reassembly, an ACK for every segment (SACK-less), FIN noted.
    let base = peer.iss.wrapping_add(1);
    let mut got: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut next = 0u64;
    let mut fin_at = None;
    let mut seen = 0usize;
    let mut stream = Vec::new();
    let mut out = Vec::new();
    for _ in 0..200_000 {
        let mut acks = Vec::new();
        let mut produced = false;
        while e.poll_transmit(&mut out) {
            produced = true;
            let Ok(s) = wire::parse(&out) else { continue };
            if s.payload.is_empty() && !s.has(flags::FIN) {
                continue;
            }
            seen += 1;
            let off = u64::from(s.seq.0.wrapping_sub(base));
            if drop_every > 0 && seen.is_multiple_of(drop_every) && off >= next {
                continue;
            }
            if !s.payload.is_empty() {
                got.entry(off).or_insert_with(|| s.payload.to_vec());
            }
            if s.has(flags::FIN) {
                fin_at = Some(off + s.payload.len() as u64);
            }
            while let Some((&o, _)) = got.range(..=next).next_back() {
                let b = got.remove(&o).unwrap();
                let end = o + b.len() as u64;
                if end > next {
                    stream.extend_from_slice(&b[(next - o) as usize..]);
                    next = end;
                }
                if got.range(..=next).next_back().is_none() {
                    break;
                }
            }
            let fin_in = fin_at == Some(next);
            let ack = base.wrapping_add(next as u32).wrapping_add(u32::from(fin_in));
            acks.push(peer.segment_acking(peer.seq_at(0), ack, flags::ACK, &[]));
        }
        for a in acks {
            e.handle_packet(now, &a, &mut host);
        }
        if host.disconnected.is_some() {
            break;
        }
        if !produced {
            match e.poll_timeout() {
                Some(t) => {
                    now = t.max(now + Duration::from_micros(1));
                    e.handle_timeout(now, &mut host);
                }
                None => break,
            }
        }
    }
    assert_eq!(host.done.len(), nbls, "every send NBL completed once");
    let retrans = e.conn(conn).map_or(0, |c| c.counters().retransmitted);
    (data, stream, host, retrans)
}

#[test]
fn bulk_send_arrives_exact_and_completes_in_order() {
    let (data, stream, host, _) = transfer(300_000, 7_000, 0);
    assert_eq!(stream.len(), data.len());
    assert!(stream == data, "the peer received what the host posted");
    let ids: Vec<u64> = host.done.iter().map(|(id, _, _)| id.0 & 0xFFFF_FFFF).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "completions in posting order");
    assert!(host.done.iter().all(|&(_, s, _)| s == NdisStatus::Success));
    assert_eq!(host.done.iter().map(|&(_, _, n)| n).sum::<usize>(), data.len());
    assert_eq!(host.disconnected, Some(NdisStatus::Success), "FIN acknowledged");
}

#[test]
fn lost_segments_are_retransmitted() {
    let (data, stream, host, retrans) = transfer(200_000, 10_000, 7);
    assert!(stream == data, "the peer received what the host posted, despite loss");
    assert!(retrans > 0, "losses were repaired by retransmission");
    assert_eq!(host.disconnected, Some(NdisStatus::Success));
}

#[test]
fn small_sends_and_empty_ones() {
    let (data, stream, host, _) = transfer(5_000, 1, 0);
    assert!(stream == data);
    assert_eq!(host.done.len(), 5_000);
}

/// An echo application (`SendPolicy::Echo`) on the engine: a scripted peer sends a stream and
/// its FIN; it must get the same stream back, then our FIN, with the verifier on.
#[test]
fn echo_returns_the_stream_then_closes() {
    // A send window the stream overfills: receiving stops and resumes as sends complete.
    for window in [1 << 20, 4096] {
        echo(window);
    }
}

fn echo(window: usize) {
    use chimney::testkit::host::{AppPolicy, SendPolicy};
    let target: SocketAddr = TARGET.parse().unwrap();
    let cfg = EngineConfig { listen: vec![target], ..EngineConfig::default() };
    let mut e = Engine::new(cfg, Verifier::new(Delivery::new(DeliveryConfig::default()), VerifierMode::Strict));
    let mut host = AppHost::new();
    let mut peer = Peer::new(target, SocketAddr::new([198, 18, 0, 2].into(), 40_001), 9_000);
    let mut now = Instant::ZERO;
    let conn = peer.handshake(now, &mut e, &mut host).unwrap();
    let policy = AppPolicy { send: SendPolicy::Echo, send_size: 3000, send_window: window, ..AppPolicy::default() };
    host.set_policy(conn, policy);
    host.top_up(now, conn, &mut e).unwrap();
    let data = pattern(60_000, 5);
    for (k, c) in data.chunks(1000).enumerate() {
        let seq = peer.seq_at(k as u64 * 1000);
        e.handle_packet(now, &peer.segment(seq, flags::ACK | flags::PSH, c), &mut host);
    }
    e.handle_packet(now, &peer.segment(peer.seq_at(data.len() as u64), flags::ACK | flags::FIN, &[]), &mut host);
    let base = peer.iss.wrapping_add(1);
    let mut echoed = Vec::new();
    let mut fin = false;
    let mut out = Vec::new();
    for _ in 0..100_000 {
        host.react(now, &mut e, &mut |_, _, _| {});
        let mut acks = Vec::new();
        let mut produced = false;
        while e.poll_transmit(&mut out) {
            produced = true;
            let Ok(s) = wire::parse(&out) else { continue };
            let off = u64::from(s.seq.0.wrapping_sub(base)) as usize;
            if off == echoed.len() && !s.payload.is_empty() {
                echoed.extend_from_slice(s.payload);
            }
            if s.has(flags::FIN) && off + s.payload.len() == echoed.len() {
                fin = true;
            }
            if !s.payload.is_empty() || s.has(flags::FIN) {
                let ack = base.wrapping_add(echoed.len() as u32).wrapping_add(u32::from(fin));
                acks.push(peer.segment_acking(peer.seq_at(data.len() as u64 + 1), ack, flags::ACK, &[]));
            }
        }
        for a in acks {
            e.handle_packet(now, &a, &mut host);
        }
        if fin && host.conn(conn).disconnect_status.is_some() {
            break;
        }
        if !produced {
            match e.poll_timeout() {
                Some(t) => {
                    now = t.max(now + Duration::from_micros(1));
                    e.handle_timeout(now, &mut host);
                }
                None => break,
            }
        }
    }
    assert_eq!(echoed.len(), data.len());
    assert!(echoed == data, "the echo is the stream");
    assert!(fin, "our FIN followed the echo");
    let c = host.conn(conn);
    assert_eq!(c.sent, data.len() as u64);
    assert_eq!(c.disconnect_status, Some(NdisStatus::Success));
    assert!(c.send_statuses.iter().all(|(st, _)| *st == NdisStatus::Success), "{:?}", c.send_statuses);
    assert_eq!(c.send_outstanding, 0);
}

/// Active open: the engine connects out (SYN with MSS, window scale, SACK-permitted and
/// timestamps), a scripted server answers SYN-ACK, the connection is offloaded, and a send
/// reaches the server. A reset SYN-SENT and an unanswered one are reported as failures.
#[test]
fn active_open_offloads_and_sends() {
    use chimney::engine::EngineEvent;
    let local: SocketAddr = "198.18.0.1:40000".parse().unwrap();
    let remote: SocketAddr = "198.18.0.2:9000".parse().unwrap();
    let mut e = Engine::new(
        EngineConfig::default(),
        Verifier::new(Delivery::new(DeliveryConfig::default()), VerifierMode::Strict),
    );
    let mut host = Sender::default();
    let now = Instant::ZERO;
    e.connect(now, local, remote).unwrap();
    assert!(e.connect(now, local, remote).is_err(), "a second open of the same tuple is refused");
    let mut out = Vec::new();
    assert!(e.poll_transmit(&mut out));
    let syn = wire::parse(&out).unwrap();
    assert!(syn.has(flags::SYN) && !syn.has(flags::ACK));
    assert!(syn.options.mss.is_some() && syn.options.window_scale.is_some() && syn.options.sack_permitted);
    let (iss, tsval) = (syn.seq.0, syn.options.timestamps.unwrap().0);
    // The server: `Peer` seen from the other side (its `irs` is our ISS).
    let mut server = Peer::new(local, remote, 50_000);
    server.iss = iss;
    server.tsecr = tsval;
    server.syn_options = chimney::wire::TcpOptions {
        mss: Some(1460),
        window_scale: Some(7),
        sack_permitted: true,
        sack: None,
        timestamps: Some((1000, tsval)),
    };
    let synack =
        server.segment_with(50_000, iss.wrapping_add(1), flags::SYN | flags::ACK, 0xFFFF, server.syn_options, &[]);
    e.handle_packet(now, &synack, &mut host);
    assert!(e.poll_transmit(&mut out));
    let ack = wire::parse(&out).unwrap();
    assert!(ack.has(flags::ACK) && !ack.has(flags::SYN));
    assert_eq!(ack.ack.0, 50_001);
    let conn = loop {
        match e.poll_event() {
            Some(EngineEvent::Offloaded { conn, remote: r, .. }) if r == remote => break conn,
            Some(_) => continue,
            None => panic!("not offloaded"),
        }
    };
    let data = pattern(5_000, 9);
    e.send(now, conn, NblChain::single(send_nbl(1, &data, 2)), &mut host).unwrap();
    let mut got = Vec::new();
    while e.poll_transmit(&mut out) {
        let s = wire::parse(&out).unwrap();
        got.extend_from_slice(s.payload);
    }
    assert!(got.len() < data.len(), "Nagle holds the last small segment while data is in flight");
    let ack = server.segment_acking(50_001, iss.wrapping_add(1 + got.len() as u32), flags::ACK, &[]);
    e.handle_packet(now, &ack, &mut host);
    while e.poll_transmit(&mut out) {
        let s = wire::parse(&out).unwrap();
        got.extend_from_slice(s.payload);
    }
    assert!(got == data, "the data went out after the handshake");
    // Failures: a RST answering our SYN, and silence.
    let other: SocketAddr = "198.18.0.2:9001".parse().unwrap();
    e.connect(now, local, other).unwrap();
    assert!(e.poll_transmit(&mut out));
    let syn = wire::parse(&out).unwrap();
    let rst = Peer::new(local, other, 1).segment_acking(0, syn.seq.0.wrapping_add(1), flags::RST | flags::ACK, &[]);
    e.handle_packet(now, &rst, &mut host);
    let silent: SocketAddr = "198.18.0.2:9002".parse().unwrap();
    e.connect(now, local, silent).unwrap();
    let mut syns = 0;
    let mut t = now;
    while let Some(d) = e.poll_timeout() {
        if d > now + Duration::from_secs(120) {
            break;
        }
        t = d.max(t);
        e.handle_timeout(t, &mut host);
        while e.poll_transmit(&mut out) {
            let s = wire::parse(&out).unwrap();
            if s.has(flags::SYN) && s.dst_port == 9002 {
                syns += 1;
            }
        }
    }
    assert_eq!(syns, 4, "the SYN, then three retransmissions");
    let mut failed = Vec::new();
    while let Some(ev) = e.poll_event() {
        if let EngineEvent::ConnectFailed { remote, reset, .. } = ev {
            failed.push((remote, reset));
        }
    }
    assert_eq!(failed, vec![(other, true), (silent, false)]);
}
