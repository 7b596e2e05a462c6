//! Property test: random interleavings of posts, data, push-timer firings, indication
//! outcomes, posts from inside completions and indications, returns, FIN, RST and terminate.
//! Invariants: the verifier stays clean, the stream is exact, every posted NBL is completed
//! exactly once.

use std::time::Duration;

use chimney::contract::InitiateOffload;
use chimney::contract::{ConnId, Delivery, DeliveryConfig, OffloadTarget, ReceiveInput, Verifier, VerifierMode};
use chimney::ndis::{NblChain, TcpCachedState, TcpOffloadState};
use chimney::testkit::host::{AppHost, AppPolicy, IndicationPolicy};
use chimney::Instant;
use proptest::prelude::*;

const C: ConnId = ConnId(3);

#[derive(Debug, Clone)]
enum Op {
    Post { size: usize, mdls: usize, no_push: bool, prefilled: usize, count: usize },
    Data { len: usize, psh: bool },
    Advance { ms: u64 },
    Indications(IndicationPolicy),
    RepostInCompletion(bool),
    PostInIndication(bool),
    ReturnInUpcall(bool),
    Return,
    Fin,
    Rst,
    Abort,
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![Just(0usize), 1usize..4096, 4096usize..(1 << 20)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (size(), 1usize..=4, any::<bool>(), prop_oneof![Just(0usize), 1usize..100], 1usize..=3)
            .prop_map(|(size, mdls, no_push, prefilled, count)| Op::Post { size, mdls, no_push, prefilled, count }),
        8 => (1usize..=65536, any::<bool>()).prop_map(|(len, psh)| Op::Data { len, psh }),
        2 => (0u64..1200).prop_map(|ms| Op::Advance { ms }),
        2 => prop_oneof![
            Just(IndicationPolicy::AcceptAll),
            (1usize..5000).prop_map(IndicationPolicy::AcceptUpTo),
            Just(IndicationPolicy::Refuse)
        ].prop_map(Op::Indications),
        1 => any::<bool>().prop_map(Op::RepostInCompletion),
        1 => any::<bool>().prop_map(Op::PostInIndication),
        1 => any::<bool>().prop_map(Op::ReturnInUpcall),
        2 => Just(Op::Return),
        1 => Just(Op::Fin),
        1 => Just(Op::Rst),
        1 => Just(Op::Abort),
    ]
}

fn run(ops: &[Op], rcv_indication_size: u32, pool: usize) -> Result<(), TestCaseError> {
    let cfg = DeliveryConfig { indication_pool: pool, ..DeliveryConfig::default() };
    let mut t = Verifier::new(Delivery::new(cfg), VerifierMode::Collect);
    let mut h = AppHost::new();
    let mut policy = AppPolicy { keep_posted: 0, post_size: 4096, ..AppPolicy::default() };
    h.set_policy(C, policy.clone());
    let state = TcpOffloadState {
        cached: TcpCachedState { initial_rcv_wnd: 256 * 1024, rcv_indication_size },
        ..TcpOffloadState::default()
    };
    t.initiate_offload(Instant::ZERO, C, state, &mut h).unwrap();
    let mut now = Instant::ZERO;
    let mut sent: Vec<u8> = Vec::new();
    let (mut fin, mut aborted) = (false, false);
    let mut posted = 0u64;
    for op in ops {
        match op.clone() {
            Op::Post { size, mdls, no_push, prefilled, count } => {
                let p = AppPolicy { post_size: size, mdls, no_push, prefilled, ..policy.clone() };
                let chain: NblChain = (0..count).map(|_| h.new_request(&p)).collect();
                posted += count as u64;
                t.receive(now, C, chain, &mut h).unwrap();
            }
            Op::Data { len, psh } if !fin && !aborted => {
                let len = len.min(t.receive_space(C));
                let start = sent.len();
                sent.extend((start..start + len).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
                t.receive_data(now, C, &sent[start..], psh, &mut h).unwrap();
            }
            Op::Data { .. } => {}
            Op::Advance { ms } => {
                now = now + Duration::from_millis(ms);
                while t.poll_timeout().is_some_and(|d| d <= now) {
                    t.handle_timeout(now, &mut h);
                }
            }
            Op::Indications(i) => policy.indication = i,
            Op::RepostInCompletion(b) => policy.repost_in_completion = b,
            Op::PostInIndication(b) => policy.post_in_indication = b,
            Op::ReturnInUpcall(b) => policy.return_in_upcall = b,
            Op::Return => h.return_held(now, &mut t),
            Op::Fin if !fin && !aborted => {
                fin = true;
                t.receive_fin(now, C, &mut h).unwrap();
            }
            Op::Rst | Op::Abort if !aborted => {
                aborted = true;
                if matches!(op, Op::Rst) {
                    t.receive_rst(now, C, &mut h).unwrap();
                } else {
                    t.disconnect(
                        now,
                        C,
                        chimney::ndis::DisconnectKind::Abortive,
                        chimney::ndis::NblChain::new(),
                        &mut h,
                    )
                    .unwrap();
                }
            }
            Op::Fin | Op::Rst | Op::Abort => {}
        }
        if !matches!(op, Op::Post { .. }) {
            h.set_policy(C, policy.clone());
        }
    }
    // End: drain timers, upload, return everything.
    now = now + Duration::from_secs(2);
    t.handle_timeout(now, &mut h);
    let d = t.terminate_offload(now, C, &mut h).unwrap();
    let mut got = h.conn(C).stream;
    for n in d.buffered_data.iter() {
        n.net_buffer().copy_out(n.net_buffer().data_offset(), n.net_buffer().data_length(), &mut got);
    }
    h.hold(d.buffered_data);
    h.return_held(now, &mut t);
    let v = t.core().violations();
    prop_assert!(
        v.is_empty(),
        "violations: {}",
        v.iter().take(5).map(|v| v.to_string()).collect::<Vec<_>>().join("; ")
    );
    if aborted {
        prop_assert!(sent.starts_with(&got), "delivered bytes are not a prefix of the stream after abort");
    } else {
        prop_assert_eq!(got.len(), sent.len());
        prop_assert!(got == sent, "stream differs");
    }
    prop_assert_eq!(t.core().outstanding(C), 0);
    let seen = h.conn(C);
    prop_assert_eq!(seen.outstanding, 0, "the application still waits for posted NBLs");
    prop_assert!(seen.completions >= posted, "{} completions for {} top-level posts", seen.completions, posted);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_interleavings_keep_every_rule(
        ops in proptest::collection::vec(op(), 1..60),
        ind in prop_oneof![Just(0u32), 1u32..2000],
        pool in prop_oneof![Just(1usize), 2usize..8, Just(64usize)],
    ) {
        run(&ops, ind, pool)?;
    }
}
