//! The contract API fed arbitrary call sequences (posts of any shape, in-order data, PSH,
//! timers, indication policies, nested posts and returns, FIN, RST, abort, terminate; sends
//! of any shape, reads of the send stream, acknowledgements, graceful disconnects) under the
//! strict verifier: any violation panics, so the fuzzer reports it.
#![no_main]
use std::time::Duration;

use chimney::contract::{ConnId, Delivery, DeliveryConfig, InitiateOffload, OffloadTarget, ReceiveInput, SendInput, Verifier, VerifierMode};
use chimney::testkit::host::{AppHost, AppPolicy, IndicationPolicy};
use chimney::ndis::{DisconnectKind, Mdl, NblChain, NblId, NetBuffer, NetBufferList, PoolTag, TcpOffloadState};
use chimney::Instant;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let c = ConnId(1);
    let cfg = DeliveryConfig { indication_pool: 1 + data.first().copied().unwrap_or(0) as usize % 4, ..DeliveryConfig::default() };
    let mut t = Verifier::new(Delivery::new(cfg), VerifierMode::Strict);
    let mut h = AppHost::new();
    h.record = false;
    let mut p = AppPolicy { keep_posted: 0, ..AppPolicy::default() };
    h.set_policy(c, p.clone());
    let mut st = TcpOffloadState::default();
    st.cached.initial_rcv_wnd = 65536;
    if t.initiate_offload(Instant::ZERO, c, st, &mut h).is_err() {
        return;
    }
    let mut now = Instant::ZERO;
    let (mut fin, mut dead) = (false, false);
    let (mut serial, mut acked) = (1u64 << 40, 0u64);
    for op in data.chunks(3) {
        let (a, b) = (op[0], *op.get(1).unwrap_or(&0));
        let n = *op.get(2).unwrap_or(&1) as usize;
        match a % 16 {
            0 => {
                let q = AppPolicy { post_size: n * (1 + b as usize % 64), mdls: 1 + b as usize % 4, no_push: b & 1 == 1, prefilled: (b as usize >> 6) % 3, ..p.clone() };
                let chain: NblChain = (0..1 + b as usize % 3).map(|_| h.new_request(&q)).collect();
                let _ = t.receive(now, c, chain, &mut h);
            }
            1 | 2 if !fin && !dead => {
                let len = (n * (1 + b as usize)).min(t.receive_space(c));
                let bytes = vec![b; len];
                let _ = t.receive_data(now, c, &bytes, a & 16 != 0, &mut h);
            }
            3 => {
                now = now + Duration::from_millis(u64::from(b) * 4);
                t.handle_timeout(now, &mut h);
            }
            4 => p.indication = [IndicationPolicy::AcceptAll, IndicationPolicy::AcceptUpTo(1 + n), IndicationPolicy::Refuse][b as usize % 3],
            5 => p.repost_in_completion = b & 1 == 1,
            6 => p.post_in_indication = b & 1 == 1,
            7 => p.return_in_upcall = b & 1 == 1,
            8 => h.return_held(now, &mut t),
            9 if !fin && !dead => {
                fin = true;
                let _ = t.receive_fin(now, c, &mut h);
            }
            10 if !dead && b % 8 == 0 => {
                dead = true;
                let _ = t.receive_rst(now, c, &mut h);
            }
            11 if !dead && b % 8 == 0 => {
                dead = true;
                let _ = t.disconnect(now, c, DisconnectKind::Abortive, NblChain::new(), &mut h);
            }
            12 => {
                // Send NBLs of 1–3 NBs, each of 1–4 MDLs, any sizes (zero included).
                let mut chain = NblChain::new();
                for k in 0..1 + b as usize % 3 {
                    let nbs: Vec<NetBuffer> = (0..1 + (b as usize >> 2) % 3)
                        .map(|j| {
                            let mdls = (0..1 + (n + j) % 4).map(|m| Mdl::from_bytes(vec![b ^ m as u8; (n * (m + 1) + k) % 300])).collect();
                            NetBuffer::new(mdls)
                        })
                        .collect();
                    serial += 1;
                    let mut nbs = nbs.into_iter();
                    let first = nbs.next().expect("one at least");
                    chain.push_back(NetBufferList::with_net_buffers(NblId::new(PoolTag::Host, serial), first, nbs.collect()));
                }
                let _ = t.send(now, c, chain, &mut h);
            }
            13 => {
                let s = t.send_stream(c);
                let upto = (acked + n as u64 * (1 + b as u64)).min(s.posted + u64::from(s.fin));
                if upto > acked {
                    acked = upto;
                    let _ = t.send_acked(now, c, upto, &mut h);
                }
            }
            14 => {
                let s = t.send_stream(c);
                let from = s.acked + u64::from(b);
                let _ = t.send_bytes(c, from, n * 7, &mut |_| {});
            }
            15 if b % 4 == 0 => {
                serial += 1;
                let nbl = NetBufferList::new(NblId::new(PoolTag::Host, serial), NetBuffer::new(vec![Mdl::from_bytes(vec![b; n % 50])]));
                let _ = t.disconnect(now, c, DisconnectKind::Graceful, NblChain::single(nbl), &mut h);
            }
            _ => {}
        }
        h.set_policy(c, p.clone());
    }
    if let Ok(d) = t.terminate_offload(now, c, &mut h) {
        h.hold(d.buffered_data);
    }
    h.return_held(now, &mut t);
    assert_eq!(t.core().outstanding(c), 0);
});
