//! An in-memory run of the contract: a host application posting buffers (under several
//! policies) and the delivery layer fed a seeded pseudo-random stream, all under the verifier.
//! `chimney demo --in-memory` prints its report; the TCP-terminating main job builds on it.

use crate::contract::InitiateOffload;
use crate::contract::{
    ConnId, Delivery, DeliveryConfig, OffloadTarget, ReceiveInput, Verifier, VerifierMode, Violation,
};
use crate::ndis::{NdisStatus, TcpCachedState, TcpOffloadState};
use crate::testkit::host::{AppHost, AppPolicy, IndicationPolicy};
use crate::testkit::rng::SplitMix64;
use crate::time::Instant;

/// What the demo runs.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Connections, each with a different application policy.
    pub connections: u32,
    /// Stream bytes per connection.
    pub bytes: u64,
    /// Largest in-sequence chunk fed at once.
    pub chunk: usize,
    /// Seed of the stream and the schedule.
    pub seed: u64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig { connections: 6, bytes: 4 << 20, chunk: 16 * 1024, seed: 1 }
    }
}

/// One connection's outcome.
#[derive(Debug, Clone)]
pub struct DemoConn {
    /// The connection.
    pub conn: ConnId,
    /// The policy's name.
    pub policy: &'static str,
    /// Bytes the application received.
    pub bytes: u64,
    /// Whether the received stream equals the sent one, byte for byte.
    pub exact: bool,
    /// Completed receive requests.
    pub completions: u64,
    /// Indications offered.
    pub indications: u64,
    /// Indications refused in whole or part.
    pub refusals: u64,
}

/// The whole run's outcome.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// Per connection.
    pub conns: Vec<DemoConn>,
    /// Every contract violation the verifier found.
    pub violations: Vec<Violation>,
    /// Stream bytes the verifier compared.
    pub checked_bytes: u64,
}

impl DemoReport {
    /// Whether every stream is exact and no rule was broken.
    pub fn ok(&self) -> bool {
        self.violations.is_empty() && self.conns.iter().all(|c| c.exact)
    }
}

/// The application policies the demo cycles through, with names for the report.
pub fn demo_policies() -> Vec<(&'static str, AppPolicy, u32)> {
    let d = AppPolicy::default;
    vec![
        ("push, re-post in completion", AppPolicy { post_size: 64 * 1024, keep_posted: 4, ..d() }, 0),
        ("non-push, 3 MDLs", AppPolicy { post_size: 96 * 1024, mdls: 3, no_push: true, keep_posted: 2, ..d() }, 0),
        ("indications only", AppPolicy { keep_posted: 0, ..d() }, 0),
        (
            "indicate-and-post, RcvIndicationSize 256",
            AppPolicy {
                keep_posted: 0,
                post_size: 8 * 1024,
                post_in_indication: true,
                indication: IndicationPolicy::AcceptUpTo(100),
                ..d()
            },
            256,
        ),
        (
            "slow consumer: refuses, then posts",
            AppPolicy { keep_posted: 0, indication: IndicationPolicy::Refuse, ..d() },
            0,
        ),
        ("zero-byte posts + indications", AppPolicy { keep_posted: 1, post_size: 0, ..d() }, 0),
    ]
}

/// Runs the in-memory demonstration under a collecting verifier.
pub fn run(cfg: &DemoConfig) -> DemoReport {
    let mut target = Verifier::new(Delivery::new(DeliveryConfig::default()), VerifierMode::Collect);
    let mut host = AppHost::new();
    let policies = demo_policies();
    let mut rng = SplitMix64::new(cfg.seed);
    let mut now = Instant::ZERO;
    let n = cfg.connections.max(1);
    let mut streams: Vec<Vec<u8>> = Vec::new();
    let mut sent = vec![0usize; n as usize];
    for i in 0..n {
        let conn = ConnId(i);
        let (_, policy, ind) = &policies[i as usize % policies.len()];
        host.set_policy(conn, policy.clone());
        let mut s = vec![0u8; cfg.bytes as usize];
        rng.fill(&mut s);
        streams.push(s);
        let state = TcpOffloadState {
            cached: TcpCachedState { initial_rcv_wnd: 256 * 1024, rcv_indication_size: *ind },
            ..TcpOffloadState::default()
        };
        // A connection the host has not written off cannot fail to offload here.
        let _ = target.initiate_offload(now, conn, state, &mut host);
        let _ = host.top_up(now, conn, &mut target);
    }
    let mut live: Vec<u32> = (0..n).collect();
    while !live.is_empty() {
        now = now + std::time::Duration::from_micros(100);
        if target.poll_timeout().is_some_and(|t| t <= now) {
            target.handle_timeout(now, &mut host);
        }
        let pick = rng.below(live.len() as u64) as usize;
        let i = live[pick];
        let conn = ConnId(i);
        let s = &streams[i as usize];
        let space = target.receive_space(conn);
        if space == 0 {
            // The application catches up: returns indication NBLs and posts two buffers.
            host.return_held(now, &mut target);
            let mut p = host.policy(conn);
            let keep = p.keep_posted;
            p.keep_posted = keep.max(2);
            if p.post_size == 0 {
                p.post_size = 64 * 1024;
            }
            host.set_policy(conn, p.clone());
            let _ = host.top_up(now, conn, &mut target);
            p.keep_posted = keep;
            host.set_policy(conn, policies[i as usize % policies.len()].1.clone());
            continue;
        }
        let len = (1 + rng.below(cfg.chunk as u64) as usize).min(space).min(s.len() - sent[i as usize]);
        let psh = rng.below(4) == 0;
        let from = sent[i as usize];
        let _ = target.receive_data(now, conn, &s[from..from + len], psh, &mut host);
        sent[i as usize] += len;
        if rng.below(8) == 0 {
            host.return_held(now, &mut target);
            let _ = host.top_up(now, conn, &mut target);
        }
        if sent[i as usize] == s.len() {
            let _ = target.receive_fin(now, conn, &mut host);
            live.swap_remove(pick);
        }
    }
    // Let push timers run out, then upload every connection: whatever was not consumed comes
    // back as BufferedData, which the application takes as the end of its stream.
    now = now + std::time::Duration::from_secs(1);
    target.handle_timeout(now, &mut host);
    let mut conns = Vec::new();
    for i in 0..n {
        let conn = ConnId(i);
        host.return_held(now, &mut target);
        if let Ok(mut d) = target.terminate_offload(now, conn, &mut host) {
            let mut tail = Vec::new();
            for nbl in d.buffered_data.iter() {
                let nb = nbl.net_buffer();
                nb.copy_out(nb.data_offset(), nb.data_length(), &mut tail);
            }
            host.hold(d.buffered_data.take());
            let seen = host.conn(conn);
            let mut got = seen.stream.clone();
            got.extend_from_slice(&tail);
            conns.push(DemoConn {
                conn,
                policy: policies[i as usize % policies.len()].0,
                bytes: got.len() as u64,
                exact: got == streams[i as usize],
                completions: seen.completions - seen.with_status(NdisStatus::InvalidState),
                indications: seen.indications,
                refusals: seen.refusals,
            });
        }
        host.return_held(now, &mut target);
    }
    DemoReport { conns, violations: target.core().violations(), checked_bytes: target.core().checked_bytes() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_is_exact_and_clean() {
        let r = run(&DemoConfig { bytes: 300_000, ..DemoConfig::default() });
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.conns.len(), 6);
        for c in &r.conns {
            assert!(c.exact, "{c:?}");
            assert_eq!(c.bytes, 300_000);
        }
        assert!(r.conns[2].indications > 0 && r.conns[2].completions == 0);
        assert!(r.conns[4].refusals > 0);
    }
}
