//! An offloaded connection fed arbitrary segment sequences (sequence numbers relative to
//! RCV.NXT, flags, lengths, options, time steps): never a panic, never a contract violation,
//! reassembly memory within the window plus one scale unit.
#![no_main]
use std::net::SocketAddr;

use chimney::contract::{ConnId, Delivery, DeliveryConfig, Verifier, VerifierMode};
use chimney::engine::{Engine, EngineConfig};
use chimney::testkit::host::AppHost;
use chimney::testkit::peer::Peer;
use chimney::wire::{flags, Flags, SegmentRepr, SeqNum, TcpOptions};
use chimney::Instant;
use libfuzzer_sys::fuzz_target;

fn pkt(src: SocketAddr, dst: SocketAddr, seq: u32, ack: u32, fl: Flags, opts: TcpOptions, payload: &[u8]) -> Vec<u8> {
    let r = SegmentRepr {
        src: src.ip(),
        dst: dst.ip(),
        src_port: src.port(),
        dst_port: dst.port(),
        seq: SeqNum(seq),
        ack: SeqNum(ack),
        flags: fl,
        window: 65535,
        options: opts,
        payload,
        urgent: 0,
        ip_id: 1,
    };
    let mut v = Vec::new();
    r.emit(&mut v);
    v
}

fuzz_target!(|data: &[u8]| {
    let local: SocketAddr = "198.18.0.1:5001".parse().unwrap();
    let remote: SocketAddr = "198.18.0.2:40000".parse().unwrap();
    let mut cfg = EngineConfig { listen: vec![local], ..EngineConfig::default() };
    cfg.tcp.rcv_wnd = 16384;
    cfg.tcp.max_ooo_ranges = 8;
    let mut e = Engine::new(cfg, Verifier::new(Delivery::new(DeliveryConfig::default()), VerifierMode::Strict));
    let mut h = AppHost::new();
    h.record = false;
    let irs = 1000u32;
    let mut peer = Peer::new(local, remote, irs);
    peer.syn_options = TcpOptions { mss: Some(1460), sack_permitted: true, window_scale: Some(7), timestamps: Some((1, 0)), sack: None };
    let Ok(conn) = peer.handshake(Instant::ZERO, &mut e, &mut h) else { return };
    let iss = peer.iss;
    let mut out = Vec::new();
    let _ = h.top_up(Instant::ZERO, conn, &mut e);
    let mut now = 0u64;
    let mut ts = 2u32;
    for chunk in data.chunks(8) {
        if chunk.len() < 8 {
            break;
        }
        let rel = u16::from_le_bytes([chunk[0], chunk[1]]) as u32;
        let len = (chunk[2] as usize) * 8;
        let fl = Flags(chunk[3] & 0x3F) | flags::ACK;
        let fl = if fl.contains(flags::SYN) { fl.without(flags::FIN | flags::RST) } else { fl };
        ts = ts.wrapping_add(u32::from(chunk[4] & 3)).wrapping_sub(u32::from(chunk[4] >> 7));
        let opts = TcpOptions { timestamps: (chunk[5] & 1 == 1).then_some((ts, 0)), ..TcpOptions::default() };
        let payload = vec![chunk[6]; len];
        let seq = irs.wrapping_add(1).wrapping_add(rel.wrapping_mul(64));
        let ack = iss.wrapping_add(1).wrapping_add(u32::from(chunk[7] & 3)).wrapping_sub(1);
        now += u64::from(chunk[7] >> 2) * 1_000_000;
        e.handle_packet(Instant::from_nanos(now), &pkt(remote, local, seq, ack, fl, opts, &payload), &mut h);
        if e.poll_timeout().is_some_and(|t| t.as_nanos() <= now) {
            e.handle_timeout(Instant::from_nanos(now), &mut h);
        }
        while e.poll_transmit(&mut out) {}
        if let Some(c) = e.conn(conn) {
            assert!(c.memory() <= 16384 + 128);
        }
        h.return_held(Instant::from_nanos(now), &mut e);
        let _ = h.top_up(Instant::from_nanos(now), conn, &mut e);
    }
    let _ = chimney::contract::OffloadTarget::terminate_offload(&mut e, Instant::from_nanos(now), conn, &mut h);
    let _ = ConnId(0);
});
