//! One simulated run: a scenario drawn from a seed, the event loop, and the invariants.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chimney::contract::trace::TraceWriter;
use chimney::contract::trace::Tracer;
use chimney::contract::{ConnId, Delivery, DeliveryConfig, OffloadTarget, SendInput, Verifier, VerifierMode};
use chimney::engine::{Engine, EngineConfig, EngineEvent};
use chimney::ndis::{DisconnectKind, TcpConnectionState, TcpOffloadEvent};
use chimney::tcp::TcpConfig;
use chimney::testkit::conformance::{Boxed, Candidate};
use chimney::testkit::host::{AppHost, AppPolicy, HostEnd, IndicationPolicy};
use chimney::testkit::impair::ImpairConfig;
use chimney::testkit::rng::{SplitMix64, Stream};
use chimney::Instant;

use crate::adversary::Adversary;
use crate::link::Link;
use crate::peer::{PeerState, Peers, Release};
use crate::receiver::HostileReceiver;

/// What the host does to a connection besides consuming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostAction {
    /// Nothing special.
    None,
    /// Terminate (upload) once this many bytes arrived.
    TerminateAt(u64),
    /// Abortive disconnect once this many bytes arrived.
    AbortAt(u64),
    /// Terminate (upload) once this many bytes arrived, take the BufferedData, and offload
    /// the connection again at once: the transfer must still complete exactly.
    ReoffloadAt(u64),
}

/// Everything one run does, drawn from a seed (or set by flags).
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The seed.
    pub seed: u64,
    /// Bytes per sender.
    pub bytes: Vec<u64>,
    /// Sender resets (RST) after this many bytes.
    pub resets: Vec<Option<u64>>,
    /// Application policy per connection.
    pub policies: Vec<AppPolicy>,
    /// Host action per connection.
    pub actions: Vec<HostAction>,
    /// Impairments towards the target.
    pub to_target: ImpairConfig,
    /// Impairments towards the peers.
    pub to_peer: ImpairConfig,
    /// Link bandwidth, bits/s.
    pub bandwidth: u64,
    /// Receive buffer per connection.
    pub rcv_wnd: u32,
    /// Reassembly range cap.
    pub max_ooo_ranges: usize,
    /// RcvIndicationSize.
    pub rcv_indication_size: u32,
    /// Indication pool size.
    pub indication_pool: usize,
    /// IPv6 instead of IPv4.
    pub ipv6: bool,
    /// Run the scripted adversary too.
    pub adversary: bool,
    /// MTU of the link.
    pub mtu: usize,
    /// ACK on queue drain (`TcpConfig::defer_acks`).
    pub defer_acks: bool,
    /// Half-open table size (small on some seeds, so that the adversary's SYN floods fill it
    /// and the senders' handshakes complete through SYN cookies).
    pub max_embryos: usize,
    /// SYN-cookie mode.
    pub syncookies: chimney::engine::SynCookies,
    /// Connections whose application echoes what it receives through the send path (the
    /// peer checks what comes back).
    pub echo: Vec<bool>,
    /// The send side's adversary: a hostile receiver the application sends a stream to.
    pub hostile: Option<HostileSpec>,
    /// The smoltcp release the senders run.
    pub smoltcp: Release,
}

/// The hostile receiver's run: how much the application sends it, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostileSpec {
    /// Bytes of the source stream.
    pub bytes: u64,
    /// Bytes per send NBL.
    pub send_size: usize,
    /// MDLs per send NBL (0: the application's default).
    pub send_mdls: usize,
    /// Bytes the application keeps posted and unacknowledged at most.
    pub send_window: usize,
}

/// Flags that constrain scenarios drawn from seeds.
#[derive(Debug, Clone, Default)]
pub struct Knobs {
    /// Fixed bytes per connection.
    pub bytes: Option<u64>,
    /// Fixed number of connections.
    pub connections: Option<usize>,
    /// Largest loss probability drawn (default 0.05).
    pub max_loss: Option<f64>,
    /// Force the adversary on (Some(true)) or off (Some(false)).
    pub adversary: Option<bool>,
    /// Only smoltcp senders with plain application policies and a clean link.
    pub clean: bool,
    /// Force echoing applications off (`Some(false)`): data one way only.
    pub echo: Option<bool>,
    /// Force the senders' smoltcp release (default: 0.14 on clean runs, 0.12 on every run
    /// where the target may drop a segment).
    pub smoltcp: Option<Release>,
}

fn random_policy(r: &mut SplitMix64) -> AppPolicy {
    let size = match r.below(4) {
        0 => 0,
        1 => 1 + r.below(4096) as usize,
        2 => 4096 + r.below(64 * 1024) as usize,
        _ => 64 * 1024 + r.below(1 << 20) as usize,
    };
    let indication = match r.below(4) {
        0 | 1 => IndicationPolicy::AcceptAll,
        // Partial acceptance of at least 256 bytes: smaller only slows the run down.
        2 => IndicationPolicy::AcceptUpTo(256 + r.below(3000) as usize),
        _ => IndicationPolicy::Refuse,
    };
    let p = AppPolicy {
        keep_posted: r.below(5) as usize,
        post_size: size,
        mdls: 1 + r.below(4) as usize,
        no_push: r.below(3) == 0,
        prefilled: if r.below(8) == 0 { 1 + r.below(100) as usize } else { 0 },
        repost_in_completion: r.below(4) != 0,
        post_in_indication: r.below(4) == 0,
        indication,
        return_in_upcall: r.below(3) == 0,
        ..AppPolicy::default()
    };
    // Posts that follow demand on about a third of the policies, decided from what was drawn
    // (no further draw: every seed's other choices stay as they were).
    let grow = (size % 3 == 0 && size >= 64 && p.keep_posted > 0).then(|| chimney::testkit::host::PostGrowth {
        post_after: size as u64 / 2,
        first_size: (size / 8).max(p.mdls).max(1),
    });
    AppPolicy { grow, ..p }
}

impl Scenario {
    /// The scenario of `seed` under `knobs`.
    pub fn from_seed(seed: u64, knobs: &Knobs) -> Scenario {
        let mut r = SplitMix64::new(seed ^ 0x5EED_5EED);
        let n = knobs.connections.unwrap_or(1 + r.below(4) as usize);
        let max_loss = knobs.max_loss.unwrap_or(0.05);
        let imp = |r: &mut SplitMix64| {
            if knobs.clean {
                return ImpairConfig::default();
            }
            let f = |r: &mut SplitMix64, p: f64| (r.below(1000) as f64 / 1000.0) * p;
            ImpairConfig {
                loss: f(r, max_loss),
                dup: f(r, 0.03),
                reorder: f(r, 0.1),
                reorder_max: Duration::from_micros(100 + r.below(5000)),
                corrupt: f(r, 0.01),
                delay: Duration::from_micros(50 + r.below(2000)),
            }
        };
        let to_target = imp(&mut r);
        let to_peer = imp(&mut r);
        let mut bytes = Vec::new();
        let mut resets = Vec::new();
        let mut policies = Vec::new();
        let mut actions = Vec::new();
        for _ in 0..n {
            let b = knobs.bytes.unwrap_or(match r.below(3) {
                0 => 1 + r.below(4096),
                1 => 4096 + r.below(200_000),
                _ => 200_000 + r.below(1_000_000),
            });
            bytes.push(b);
            resets.push(if !knobs.clean && r.below(10) == 0 { Some(r.below(b + 1)) } else { None });
            policies.push(if knobs.clean { AppPolicy::default() } else { random_policy(&mut r) });
            actions.push(match (knobs.clean, r.below(12)) {
                (false, 0) => HostAction::TerminateAt(r.below(b + 1)),
                (false, 1) => HostAction::AbortAt(r.below(b + 1)),
                _ => HostAction::None,
            });
        }
        // Drawn from a stream of its own, so adding this left every other draw of a seed
        // (and the seeds named by regression tests) unchanged.
        let mut r2 = SplitMix64::new(seed ^ 0x0FF1_0AD0);
        let defer_acks = r2.below(2) == 0;
        for (a, &b) in actions.iter_mut().zip(&bytes) {
            if !knobs.clean && *a == HostAction::None && r2.below(8) == 0 {
                *a = HostAction::ReoffloadAt(r2.below(b + 1));
            }
        }
        // Another stream of its own for the defences' knobs.
        let mut r3 = SplitMix64::new(seed ^ 0x5EED_C00C);
        let max_embryos = if r3.below(3) == 0 { 4 + r3.below(12) as usize } else { 1024 };
        let syncookies = match r3.below(6) {
            0 => chimney::engine::SynCookies::Always,
            _ => chimney::engine::SynCookies::Auto,
        };
        // And one for the send side: half the connections echo, with their own send sizes
        // and windows (a small window makes the application stop taking data).
        let mut r4 = SplitMix64::new(seed ^ 0xEC40_5E4D);
        let mut echo = Vec::new();
        for (i, p) in policies.iter_mut().enumerate() {
            let on = !knobs.clean && knobs.echo != Some(false) && r4.below(2) == 0;
            echo.push(on);
            if on {
                p.send = chimney::testkit::host::SendPolicy::Echo;
                // At least 4 KiB in flight: stop-and-wait with tiny sends would only measure
                // the round trip against the run's liveness bound.
                p.send_size = [100, 1448, 4096, 65536][r4.below(4) as usize];
                p.send_window = [4096, 65536, 1 << 20][r4.below(3) as usize];
                // Sends of many MDLs; tiny sends (7 bytes: thousands of NBLs, Nagle joining
                // them) on the smaller streams; huge ones (1 MiB NBLs).
                p.send_mdls = [0, 0, 1, 3, 8][r4.below(5) as usize];
                match r4.below(8) {
                    0 if bytes[i] <= 256 * 1024 => p.send_size = 7,
                    1 => p.send_size = 1 << 20,
                    _ => {}
                }
            }
        }
        // The send side's adversary on a third of the seeds (not in the one-way runs that
        // predate the send path, nor when the adversary is forced off).
        let mut r5 = SplitMix64::new(seed ^ 0x4057_11E5);
        let hostile_on = !knobs.clean
            && knobs.echo != Some(false)
            && knobs.adversary != Some(false)
            && (knobs.adversary == Some(true) || r5.below(3) == 0);
        let hostile = hostile_on.then(|| HostileSpec {
            bytes: 20_000 + r5.below(300_000),
            send_size: [7, 100, 1448, 4096, 65536, 1 << 20][r5.below(6) as usize],
            send_mdls: [0, 1, 3, 8][r5.below(4) as usize],
            send_window: [4096, 65536, 1 << 20][r5.below(3) as usize],
        });
        // The current smoltcp on clean runs; 0.12 wherever the target may drop a segment
        // (loss, corruption, reordering past the out-of-order cap, the adversary), because
        // 0.14's own recovery stalls there (see `peer`).
        let smoltcp = knobs.smoltcp.unwrap_or(if knobs.clean { Release::V0_14 } else { Release::V0_12 });
        Scenario {
            smoltcp,
            max_embryos,
            syncookies,
            echo,
            hostile,
            seed,
            bytes,
            resets,
            policies,
            actions,
            to_target,
            to_peer,
            bandwidth: [0, 100_000_000, 1_000_000_000, 10_000_000_000][r.below(4) as usize],
            rcv_wnd: 0,
            max_ooo_ranges: [4, 16, 64][r.below(3) as usize],
            rcv_indication_size: if r.below(4) == 0 { 256 + r.below(2000) as u32 } else { 0 },
            indication_pool: [1, 4, 64][r.below(3) as usize],
            ipv6: r.below(2) == 0,
            adversary: knobs.adversary.unwrap_or(!knobs.clean && r.below(3) == 0),
            mtu: [576, 1500, 9000][r.below(3) as usize],
            defer_acks,
        }
        .with_window(&mut r)
    }

    /// A receive buffer of at least four segments (a window below one MSS only measures the
    /// sender's silly-window timer).
    fn with_window(mut self, r: &mut SplitMix64) -> Scenario {
        let choices: Vec<u32> =
            [8192u32, 65536, 262_144, 1 << 20].into_iter().filter(|&w| w as usize >= 4 * self.mtu).collect();
        self.rcv_wnd = choices[r.below(choices.len() as u64) as usize];
        self
    }
}

/// The outcome of one run.
#[derive(Debug, Clone, Default)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Invariants broken (empty = pass).
    pub failures: Vec<String>,
    /// Contract violations (also listed in failures).
    pub violations: usize,
    /// The violations themselves.
    pub contract: Vec<chimney::contract::Violation>,
    /// Stream bytes the applications received.
    pub bytes: u64,
    /// Virtual time the run took.
    pub virtual_time: Duration,
    /// Packets exchanged.
    pub packets: u64,
    /// Hash over every packet and its time: equal for equal seeds.
    pub trace_hash: u64,
    /// Connections terminated and offloaded again mid-stream.
    pub reoffloads: u64,
    /// The engine's non-zero drop counters by reason (what the run exercised).
    pub drops: Vec<(String, u64)>,
    /// Packets handed to the host path by kind (fragments, IPv4 options, ICMP, other
    /// protocols): not drops.
    pub host_path: Vec<(String, u64)>,
    /// Replies to junk the engine sent in all, and the most in one second.
    pub junk_replies: (u64, u32),
    /// The event log, when asked for.
    pub log: Vec<String>,
}

impl SimReport {
    /// Whether every invariant held.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

#[derive(Default)]
struct Check {
    stream: Option<Stream>,
    offset: u64,
    mismatch: Option<u64>,
    detail: String,
    /// Bytes received before the simulator learned which stream this connection carries.
    early: Vec<u8>,
}

impl Check {
    fn verify(&mut self, at: u64, bytes: &[u8]) {
        let Some(s) = self.stream else { return };
        if self.mismatch.is_none() && !s.matches(at, bytes) {
            let mut want = vec![0u8; bytes.len().min(8)];
            s.fill_at(at, &mut want);
            let i = (0..bytes.len()).find(|&i| {
                let mut b = [0u8];
                s.fill_at(at + i as u64, &mut b);
                b[0] != bytes[i]
            });
            self.mismatch = Some(at + i.unwrap_or(0) as u64);
            self.detail = format!(
                "chunk of {} at {at}: got {:02x?} want {:02x?}",
                bytes.len(),
                &bytes[..bytes.len().min(8)],
                want
            );
        }
    }

    fn set_stream(&mut self, s: Stream) {
        self.stream = Some(s);
        let early = std::mem::take(&mut self.early);
        self.verify(0, &early);
    }
}

struct Live {
    sender: usize,
    saw_fin: bool,
    zero_since: Option<Instant>,
    reoffloaded: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Fin,
    Rst,
    Host,
}

fn fnv(h: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *h ^= u64::from(b);
        *h = h.wrapping_mul(0x0100_0000_01b3);
    }
}

/// Runs `sc`; `log` keeps a line per packet.
pub fn run(sc: &Scenario, log: bool) -> SimReport {
    run_with_tap(sc, log, &mut |_, _, _| {})
}

/// Like [`run`], showing `tap` every packet the engine receives (`true`) and sends (`false`)
/// with its virtual time (e.g. to write a pcap).
pub fn run_with_tap(sc: &Scenario, log: bool, tap: &mut dyn FnMut(Instant, bool, &[u8])) -> SimReport {
    run_traced(sc, log, tap, None).0
}

/// Like [`run_with_tap`], also writing every contract call to `trace` (see
/// `chimney::contract::trace`); returns the trace's line count or its write error.
/// Runs `sc` with `target` as the delivery layer (a foreign target under `chimney check`).
pub fn run_target(sc: &Scenario, target: Boxed, trace: Option<TraceWriter>) -> SimReport {
    let mut sim = Sim::with_target(sc, false, trace, target);
    sim.drive(&mut |_, _, _| {});
    sim.invariants();
    sim.finish().0
}

pub fn run_traced(
    sc: &Scenario,
    log: bool,
    tap: &mut dyn FnMut(Instant, bool, &[u8]),
    trace: Option<TraceWriter>,
) -> (SimReport, Option<std::io::Result<u64>>) {
    let mut sim = Sim::new(sc, log, trace);
    sim.drive(tap);
    sim.invariants();
    sim.finish()
}

/// Whether a run goes on after a [`Sim::step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// More to do.
    Continue,
    /// Every sender (and the adversary) finished.
    Done,
    /// The run cannot finish (liveness bound, livelock): the failure is in the report.
    Stuck,
}

/// One simulated run in progress: the engine under the verifier, the application, the
/// smoltcp senders, the adversary and the two links, on a virtual clock. [`Sim::step`] runs
/// one round (deliver, react, transmit, advance the clock), [`Sim::drive`] steps until the
/// run ends, [`Sim::invariants`] checks what must hold at the end, [`Sim::finish`] hands back
/// the report.
pub struct Sim<'a> {
    sc: &'a Scenario,
    log: bool,
    rep: SimReport,
    adv_ip: IpAddr,
    engine: Engine<Tracer<Verifier<Boxed>>>,
    /// Stream checks per connection, fed by the application's sink.
    checks: Arc<Mutex<HashMap<ConnId, Check>>>,
    host: AppHost,
    peers: Peers,
    adversary: Option<Adversary>,
    up: Link,
    down: Link,
    /// The liveness bound of this run (virtual time).
    bound: Duration,
    live: HashMap<ConnId, Live>,
    /// Connections being re-offloaded, by peer port: their stream check, liveness and policy.
    back: HashMap<u16, (Check, Live, AppPolicy, chimney::testkit::host::AppConn)>,
    reoffload: Vec<ConnId>,
    ends: Vec<Option<(End, u64)>>,
    offloaded: Vec<bool>,
    adv_conn: Option<ConnId>,
    adv_end: Option<End>,
    adv_got: u64,
    hostile: Option<HostileReceiver>,
    hostile_ip: IpAddr,
    hostile_conn: Option<ConnId>,
    hostile_end: Option<End>,
    now: Instant,
    packets_in: u64,
    out: Vec<u8>,
    iterations: u64,
}

impl<'a> Sim<'a> {
    /// Sets up scenario `sc` (`log`: keep a line per packet and event; `trace`: write every
    /// contract call).
    pub fn new(sc: &'a Scenario, log: bool, trace: Option<TraceWriter>) -> Sim<'a> {
        let delivery =
            Delivery::new(DeliveryConfig { indication_pool: sc.indication_pool, ..DeliveryConfig::default() });
        Self::with_target(sc, log, trace, Boxed::new(delivery))
    }

    /// Like [`Sim::new`] with `target` as the delivery layer behind the verifier (a foreign
    /// target under `chimney check`).
    pub fn with_target(sc: &'a Scenario, log: bool, trace: Option<TraceWriter>, layer: Boxed) -> Sim<'a> {
        let rep = SimReport { seed: sc.seed, trace_hash: 0xcbf2_9ce4_8422_2325, ..SimReport::default() };
        let (target_ip, peer_ip, adv_ip, hostile_ip): (IpAddr, IpAddr, IpAddr, IpAddr) = if sc.ipv6 {
            (
                "fd00::1".parse().unwrap(),
                "fd00::2".parse().unwrap(),
                "fd00::3".parse().unwrap(),
                "fd00::4".parse().unwrap(),
            )
        } else {
            (
                "198.18.0.1".parse().unwrap(),
                "198.18.0.2".parse().unwrap(),
                "198.18.0.3".parse().unwrap(),
                "198.18.0.4".parse().unwrap(),
            )
        };
        let target = SocketAddr::new(target_ip, 5001);
        let ip_hdr = if sc.ipv6 { 60 } else { 40 };
        let tcp = TcpConfig {
            rcv_wnd: sc.rcv_wnd,
            max_ooo_ranges: sc.max_ooo_ranges,
            rcv_indication_size: sc.rcv_indication_size,
            mss: (sc.mtu - ip_hdr) as u16,
            // Keep-alive notices a sender whose only RST was lost (10 s idle, 5 probes 1 s apart).
            keepalive: Some(Duration::from_secs(10)),
            // Eight retransmissions (about 50 s from a 200 ms RTO), not Windows' five (about
            // 12 s): links here lose up to 5 % each way, and smoltcp answers a retransmission
            // of data it already has at most once a second (a rate-limited challenge ACK), so
            // a short streak of lost answers would end the connection (seed 1027).
            max_retransmits: 8,
            ka_probe_count: 5,
            challenge_keepalive: Duration::from_secs(20),
            // ACK on drain (what the TUN driver runs) on half the seeds, per-segment ACKs on the rest.
            defer_acks: sc.defer_acks,
            ..TcpConfig::default()
        };
        let engine = Engine::new(
            EngineConfig {
                seed: sc.seed,
                listen: vec![target],
                tcp,
                prefixes: vec![Self::prefix(sc)],
                listener: chimney::engine::ListenerConfig {
                    max_embryos: sc.max_embryos,
                    syncookies: sc.syncookies,
                    ..chimney::engine::ListenerConfig::default()
                },
                ..EngineConfig::default()
            },
            {
                let mut v = Verifier::new(layer, VerifierMode::Collect);
                let core = std::sync::Arc::clone(v.core());
                v.inner_mut().attach(&core);
                Tracer::new(v, trace)
            },
        );
        let checks: Arc<Mutex<HashMap<ConnId, Check>>> = Arc::new(Mutex::new(HashMap::new()));
        let mut host = AppHost::new();
        host.record = false;
        {
            let checks = Arc::clone(&checks);
            host.sink = Some(Box::new(move |conn, bytes| {
                let mut m = checks.lock().unwrap_or_else(|e| e.into_inner());
                let c = m.entry(conn).or_default();
                if c.stream.is_none() {
                    c.early.extend_from_slice(bytes);
                } else {
                    let at = c.offset;
                    c.verify(at, bytes);
                }
                c.offset += bytes.len() as u64;
            }));
        }
        let specs: Vec<(u64, Option<u64>, usize, bool)> = sc
            .bytes
            .iter()
            .zip(&sc.resets)
            .enumerate()
            .map(|(i, (&b, &r))| (b, r, 64 * 1024, sc.echo.get(i).copied().unwrap_or(false)))
            .collect();
        let peers = Peers::new(sc.smoltcp, sc.seed, peer_ip, (target_ip, 5001), &specs, sc.mtu);
        let adversary =
            sc.adversary.then(|| Adversary::new(sc.seed, SocketAddr::new(adv_ip, 6000), target, sc.mtu - ip_hdr));
        let hostile = sc.hostile.map(|h| {
            let mss = (sc.mtu - ip_hdr) as u16;
            HostileReceiver::new(sc.seed, SocketAddr::new(hostile_ip, 7000), target, mss, h.bytes)
        });
        let total: u64 = sc.bytes.iter().sum::<u64>() + sc.hostile.map_or(0, |h| h.bytes);
        // Liveness: at least 64 KB/s of goodput (losses cost smoltcp whole retransmission
        // timeouts), plus 20x the serialisation time, plus 60 s.
        // Above 1 % loss smoltcp (no SACK recovery, its retransmission timeout backing off to
        // 10 s) gets five times as long: the run must still finish, but its speed measures the
        // sender, not us (seeds 2528, 20710).
        let lossy = sc.to_target.loss.max(sc.to_peer.loss) > 0.01;
        let bound = (Duration::from_secs(60)
            + Duration::from_millis(total / 64)
            + Duration::from_nanos(
                (u128::from(total) * 8 * 20 * 1_000_000_000)
                    .checked_div(u128::from(sc.bandwidth))
                    .map_or(0, |n| u64::try_from(n).unwrap_or(u64::MAX)),
            ))
            * if lossy { 5 } else { 1 };
        Sim {
            sc,
            log,
            rep,
            adv_ip,
            engine,
            checks,
            host,
            peers,
            adversary,
            up: Link::new(sc.to_target.clone(), sc.bandwidth, sc.seed ^ 1),
            down: Link::new(sc.to_peer.clone(), sc.bandwidth, sc.seed ^ 2),
            bound,
            live: HashMap::new(),
            back: HashMap::new(),
            reoffload: Vec::new(),
            ends: vec![None; sc.bytes.len()],
            offloaded: vec![false; sc.bytes.len()],
            adv_conn: None,
            adv_end: None,
            adv_got: 0,
            hostile,
            hostile_ip,
            hostile_conn: None,
            hostile_end: None,
            now: Instant::ZERO,
            packets_in: 0,
            out: Vec::new(),
            iterations: 0,
        }
    }

    /// Steps until the run ends.
    pub fn drive(&mut self, tap: &mut dyn FnMut(Instant, bool, &[u8])) {
        while self.step(tap) == Step::Continue {}
    }

    /// One round: packets to the target, the engine's timers and events, the application's
    /// reactions and actions, packets to the peers; then the clock moves to the next thing due.
    pub fn step(&mut self, tap: &mut dyn FnMut(Instant, bool, &[u8])) -> Step {
        self.iterations += 1;
        if self.iterations > 20_000_000 {
            self.rep.failures.push("livelock: too many iterations".into());
            return Step::Stuck;
        }
        self.deliver_to_target(tap);
        self.check_cwnd();
        let now = self.now;
        self.engine.flush_acks(now, &mut self.host);
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now, &mut self.host);
        }
        self.engine_events();
        if self.host.holds_indications() {
            self.host.return_held(now, &mut self.engine);
        }
        let mut finish = self.host_reactions();
        self.host_actions(&mut finish);
        self.reoffloads();
        self.end_connections(finish);
        self.deliver_to_peers(tap);
        if self.done() {
            return Step::Done;
        }
        if now.saturating_duration_since(Instant::ZERO) > self.bound {
            self.liveness_failure();
            return Step::Stuck;
        }
        self.advance_clock();
        Step::Continue
    }

    /// Everything the senders and the adversary send, through the link, into the engine.
    fn deliver_to_target(&mut self, tap: &mut dyn FnMut(Instant, bool, &[u8])) {
        let now = self.now;
        self.peers.poll(now.as_nanos());
        while let Some(p) = self.peers.dev.tx.pop_front() {
            fnv(&mut self.rep.trace_hash, &now.as_nanos().to_le_bytes());
            fnv(&mut self.rep.trace_hash, &p);
            self.up.send(now, &p);
        }
        if let Some(a) = self.adversary.as_mut() {
            for p in a.poll(now, &self.peers) {
                fnv(&mut self.rep.trace_hash, &p);
                self.up.send(now, &p);
            }
        }
        if let Some(h) = self.hostile.as_mut() {
            for p in h.poll(now) {
                fnv(&mut self.rep.trace_hash, &p);
                self.up.send(now, &p);
            }
        }
        while let Some(p) = self.up.recv(now) {
            self.rep.packets += 1;
            self.packets_in += 1;
            if self.log {
                self.rep.log.push(format!("{now} > target {}", describe(&p)));
            }
            tap(now, true, &p);
            if let chimney::engine::PacketOutcome::Offloaded(id) = self.engine.handle_packet(now, &p, &mut self.host) {
                if let Some(c) = self.engine.conn(id) {
                    if c.memory() > self.sc.rcv_wnd as usize + (1 << 14) {
                        self.rep.failures.push(format!("{id}: reassembly memory {} over the cap", c.memory()));
                    }
                }
            }
            // The application learns of a new connection before its next packet, as a host
            // stack's accept does (an indication of that packet follows its policy).
            self.engine_events();
        }
    }

    /// Engine events: each offloaded connection gets its application policy and stream check
    /// (or continues its stream after a re-offload) and its first posts.
    fn engine_events(&mut self) {
        let now = self.now;
        while let Some(ev) = self.engine.poll_event() {
            if self.log {
                self.rep.log.push(format!("{now} engine event {ev:?}"));
            }
            let EngineEvent::Offloaded { conn, remote, .. } = ev else { continue };
            if remote.ip() == self.hostile_ip {
                self.hostile_conn = Some(conn);
                if let Some(h) = self.sc.hostile {
                    let policy = AppPolicy {
                        send: chimney::testkit::host::SendPolicy::Source(h.bytes),
                        send_size: h.send_size,
                        send_mdls: h.send_mdls,
                        send_window: h.send_window,
                        ..AppPolicy::default()
                    };
                    self.host.set_policy(conn, policy);
                }
            } else if remote.ip() == self.adv_ip {
                self.adv_conn = Some(conn);
                self.host.set_policy(conn, AppPolicy::default());
                if let Some(key) = self.adversary.as_ref().map(|a| a.stream) {
                    self.checks.lock().unwrap_or_else(|e| e.into_inner()).entry(conn).or_default().set_stream(key);
                }
            } else if let Some(i) = self.peers.senders.iter().position(|s| s.port == remote.port()) {
                self.host.set_policy(conn, self.sc.policies[i].clone());
                if let Some((check, l, policy, record)) = self.back.remove(&remote.port()) {
                    // A re-offload: the same stream continues on this id, and what the
                    // application still has to send (the upload took it back) goes on.
                    self.host.restore(conn, record);
                    self.host.set_policy(conn, policy);
                    self.live.insert(conn, l);
                    // Bytes delivered before this event was seen continue the stream.
                    let mut m = self.checks.lock().unwrap_or_else(|e| e.into_inner());
                    let early = m.remove(&conn).map(|c| c.early).unwrap_or_default();
                    let mut check = check;
                    let at = check.offset;
                    check.verify(at, &early);
                    check.offset += early.len() as u64;
                    m.insert(conn, check);
                } else {
                    self.offloaded[i] = true;
                    self.live.insert(conn, Live { sender: i, saw_fin: false, zero_since: None, reoffloaded: false });
                    let stream = self.peers.senders[i].stream;
                    self.checks.lock().unwrap_or_else(|e| e.into_inner()).entry(conn).or_default().set_stream(stream);
                }
            }
            let _ = self.host.top_up(now, conn, &mut self.engine);
            self.host.pump_sends(now, conn, &mut self.engine);
        }
    }

    /// The application's reaction to the target's events (shared with the Linux driver):
    /// which connections ended, and how.
    fn host_reactions(&mut self) -> Vec<(ConnId, End)> {
        let mut finish = Vec::new();
        let Sim { host, engine, live, rep, log, adv_conn, hostile_conn, now, .. } = self;
        let (now, adv_conn, hostile_conn, log) = (*now, *adv_conn, *hostile_conn, *log);
        host.react(now, engine, &mut |conn, ev, end| {
            if log {
                rep.log.push(format!("{now} host event {conn} {ev:?}"));
            }
            // A FIN seen before a re-offload still counts (the host forgets the connection's
            // record when it takes it back); the adversary's connection ends by an upload once
            // its stream is done.
            if ev == TcpOffloadEvent::Disconnect {
                if let Some(l) = live.get_mut(&conn) {
                    l.saw_fin = true;
                }
            }
            let fin_before = live.get(&conn).is_some_and(|l| l.saw_fin);
            match end {
                Some(HostEnd::Rst) => finish.push((conn, End::Rst)),
                Some(HostEnd::Fin) => finish.push((conn, End::Fin)),
                Some(_) if fin_before || Some(conn) == adv_conn || Some(conn) == hostile_conn => {
                    finish.push((conn, End::Fin))
                }
                Some(_) => finish.push((conn, End::Host)),
                None => {}
            }
        });
        finish
    }

    /// Host actions (terminate, abort, re-offload at a byte count) and slow consumers waking up.
    fn host_actions(&mut self, finish: &mut Vec<(ConnId, End)>) {
        let now = self.now;
        let ids: Vec<ConnId> = self.live.keys().copied().collect();
        for id in ids {
            let got = self.checks.lock().unwrap_or_else(|e| e.into_inner()).get(&id).map_or(0, |c| c.offset);
            let Some(l) = self.live.get_mut(&id) else { continue };
            match self.sc.actions[l.sender] {
                HostAction::TerminateAt(n) if got >= n => finish.push((id, End::Host)),
                HostAction::AbortAt(n) if got >= n => {
                    let _ = self.engine.disconnect(
                        now,
                        id,
                        DisconnectKind::Abortive,
                        chimney::ndis::NblChain::new(),
                        &mut self.host,
                    );
                    finish.push((id, End::Host));
                }
                HostAction::ReoffloadAt(n) if got >= n && !l.reoffloaded => {
                    l.reoffloaded = true;
                    self.reoffload.push(id);
                }
                _ => {}
            }
            // A slow consumer: data waiting in the target (refused, or a closed window) for
            // 20 ms wakes the application up.
            let zero = self.engine.conn(id).is_some_and(|c| c.rcv_wnd() == 0)
                || self.engine.delivery().inner().inner().receive_backlog(id) > 0;
            match (zero, l.zero_since) {
                (true, None) => l.zero_since = Some(now),
                (true, Some(t)) if now >= t + Duration::from_millis(20) => {
                    // The application catches up: posts two buffers, takes indications again.
                    l.zero_since = None;
                    let p = AppPolicy {
                        keep_posted: 2,
                        post_size: 65536,
                        indication: IndicationPolicy::AcceptAll,
                        ..self.host.policy(id)
                    };
                    self.host.set_policy(id, p);
                    let _ = self.host.top_up(now, id, &mut self.engine);
                }
                (false, _) => l.zero_since = None,
                _ => {}
            }
        }
    }

    /// Invariant: ACK division and optimistic ACKs cannot inflate the congestion window
    /// of the hostile receiver's connection: it never exceeds the initial window plus the
    /// bytes acknowledged (slow start adds at most what each ACK covers).
    fn check_cwnd(&mut self) {
        let Some(id) = self.hostile_conn else { return };
        let Some((cwnd, _, _)) = self.engine.conn(id).and_then(|c| c.send_windows()) else { return };
        let acked = self.engine.delivery().send_stream(id).acked;
        let iw = u64::from(chimney::tcp::Congestion::initial_window(self.sc.mtu as u32));
        if u64::from(cwnd) > iw + acked {
            self.rep.failures.push(format!(
                "{}: hostile receiver's cwnd {cwnd} over the initial window {iw} + {acked} bytes acknowledged",
                self.now
            ));
            self.hostile_conn = None;
        }
    }

    /// Terminates and offloads again the connections whose action says so.
    fn reoffloads(&mut self) {
        let now = self.now;
        for id in std::mem::take(&mut self.reoffload) {
            // Only a connection still receiving normally is given back.
            let ok =
                self.engine.conn(id).is_some_and(|c| c.state() == TcpConnectionState::Established && !c.is_stopped());
            let Some(mut n) = self.engine.negotiated(id).filter(|_| ok) else { continue };
            let Ok(d) = self.engine.terminate_offload(now, id, &mut self.host) else { continue };
            if self.log {
                self.rep.log.push(format!("{now} re-offload {id}: rcv_nxt {} wnd {}", d.rcv_nxt, d.rcv_wnd));
            }
            // The host stack owned the connection meanwhile: BufferedData is the application's.
            self.host.take_uploaded(id, d.buffered_data);
            self.host.return_held(now, &mut self.engine);
            n.rcv_nxt = d.rcv_nxt;
            n.rcv_adv = d.rcv_nxt.wrapping_add(d.rcv_wnd);
            n.ts_recent = n.ts_recent.map(|_| d.ts_recent);
            let check = self.checks.lock().unwrap_or_else(|e| e.into_inner()).remove(&id).unwrap_or_default();
            let (Some(l), policy) = (self.live.remove(&id), self.host.policy(id)) else { continue };
            let record = self.host.forget(id);
            self.back.insert(n.remote.port(), (check, l, policy, record));
            match self.engine.reoffload(now, n, &mut self.host) {
                Ok(_) => self.rep.reoffloads += 1,
                Err(e) => self.rep.failures.push(format!("{id}: re-offload refused: {e}")),
            }
            // The application takes the connection back (its record, its policy) before any
            // of its data can be indicated.
            self.engine_events();
        }
    }

    /// Terminates the connections that ended and settles their stream checks.
    fn end_connections(&mut self, finish: Vec<(ConnId, End)>) {
        let now = self.now;
        for (conn, end) in finish {
            let Some(l) = self.live.remove(&conn) else {
                if Some(conn) == self.hostile_conn && self.hostile_end.is_none() {
                    self.hostile_end = Some(end);
                    if let Ok(d) = self.engine.terminate_offload(now, conn, &mut self.host) {
                        self.host.take_uploaded(conn, d.buffered_data);
                    }
                    self.host.return_held(now, &mut self.engine);
                    self.checks.lock().unwrap_or_else(|e| e.into_inner()).remove(&conn);
                    self.host.forget(conn);
                }
                if Some(conn) == self.adv_conn && self.adv_end.is_none() {
                    self.adv_end = Some(end);
                    if let Ok(d) = self.engine.terminate_offload(now, conn, &mut self.host) {
                        self.host.take_uploaded(conn, d.buffered_data);
                    }
                    self.host.return_held(now, &mut self.engine);
                    let c = self.checks.lock().unwrap_or_else(|e| e.into_inner()).remove(&conn).unwrap_or_default();
                    if let Some(at) = c.mismatch {
                        self.rep.failures.push(format!("adversary: stream differs at byte {at} ({})", c.detail));
                    }
                    self.adv_got = c.offset;
                    self.host.forget(conn);
                }
                continue;
            };
            if let Ok(d) = self.engine.terminate_offload(now, conn, &mut self.host) {
                self.host.take_uploaded(conn, d.buffered_data);
            }
            self.host.return_held(now, &mut self.engine);
            // The id may be reused by the next connection: settle this one's check now.
            let c = self.checks.lock().unwrap_or_else(|e| e.into_inner()).remove(&conn).unwrap_or_default();
            if let Some(at) = c.mismatch {
                self.rep.failures.push(format!(
                    "sender {}: stream differs from what was sent at byte {at} ({})",
                    l.sender, c.detail
                ));
            }
            // A sender's port may see several incarnations (a SYN cookie revives it, a blind
            // SYN on its port after its reset opens another): what arrived is the most any
            // of them delivered.
            let before = self.ends[l.sender].map_or(0, |(_, got)| got);
            self.ends[l.sender] = Some((end, c.offset.max(before)));
            if end == End::Host {
                // The host took the connection away: what its peer receives from now on
                // (a connection revived from a SYN cookie echoes from elsewhere in the
                // stream) is no longer this connection's echo.
                self.peers.senders[l.sender].ignore_rx = true;
            }
            self.host.forget(conn);
        }
    }

    /// The simulated network the target is on: 198.18.0.0/24 or fd00::/64.
    fn prefix(sc: &Scenario) -> chimney::wire::Prefix {
        let addr = if sc.ipv6 { "fd00::1".parse() } else { "198.18.0.1".parse() };
        chimney::wire::Prefix { addr: addr.expect("address"), len: if sc.ipv6 { 64 } else { 24 } }
    }

    /// Everything the engine sends, through the link, to the senders and the adversary.
    fn deliver_to_peers(&mut self, tap: &mut dyn FnMut(Instant, bool, &[u8])) {
        let now = self.now;
        let prefix = [Self::prefix(self.sc)];
        while self.engine.poll_transmit(&mut self.out) {
            // Invariant: no reply to a martian. Nothing goes to or from a non-unicast address
            // or port 0, whatever the adversary sent.
            if let Ok(s) = chimney::wire::parse_with(&self.out, chimney::wire::TcpChecksum::VouchedByKernel) {
                if chimney::wire::addr::is_martian(s.src, s.src_port, s.dst, s.dst_port, &prefix) {
                    self.rep.failures.push(format!(
                        "{now}: sent to or from a martian: {}:{} -> {}:{}",
                        s.src, s.src_port, s.dst, s.dst_port
                    ));
                }
            }
            tap(now, false, &self.out);
            fnv(&mut self.rep.trace_hash, &now.as_nanos().to_le_bytes());
            fnv(&mut self.rep.trace_hash, &self.out);
            self.down.send(now, &self.out);
        }
        while let Some(p) = self.down.recv(now) {
            self.rep.packets += 1;
            if self.log {
                self.rep.log.push(format!("{now} < target {}", describe(&p)));
            }
            let dst = chimney::wire::parse_with(&p, chimney::wire::TcpChecksum::VouchedByKernel).map(|s| s.dst);
            let to_adv = dst.is_ok_and(|d| d == self.adv_ip);
            if dst.is_ok_and(|d| d == self.hostile_ip) {
                if let Some(h) = self.hostile.as_mut() {
                    h.on_packet(now, &p);
                    for q in h.take_out() {
                        fnv(&mut self.rep.trace_hash, &q);
                        self.up.send(now, &q);
                    }
                }
            } else if to_adv {
                if let Some(a) = self.adversary.as_mut() {
                    a.on_packet(now, &p);
                }
            } else {
                if let Some(a) = self.adversary.as_mut() {
                    a.observe(&p);
                }
                self.peers.dev.rx.push_back(p);
            }
        }
    }

    /// Done when every sender is closed at both ends and the target reported it.
    fn done(&self) -> bool {
        let sc = self.sc;
        let senders_done = (0..self.peers.senders.len()).all(|i| {
            let st = self.peers.state(i);
            // A sender that reset during its handshake was never offloaded: nothing to end.
            let reset_unoffloaded = !self.offloaded[i]
                && sc.resets[i].is_some()
                && self.peers.senders[i].closed
                && matches!(st, PeerState::Closed)
                && !self.live.values().any(|l| l.sender == i);
            reset_unoffloaded
                || self.ends[i].is_some() && matches!(st, PeerState::Closed | PeerState::TimeWait)
                || (self.ends[i].is_some() && self.peers.senders[i].closed && sc.resets[i].is_some())
                || (self.ends[i].is_some()
                    && matches!(sc.actions[i], HostAction::TerminateAt(_) | HostAction::AbortAt(_)))
        });
        let adv_done = self.adversary.as_ref().is_none_or(|a| a.finished() && self.adv_end.is_some());
        let hostile_done = self.hostile.as_ref().is_none_or(|h| h.finished() && self.hostile_end.is_some());
        senders_done && adv_done && hostile_done
    }

    /// Records why the run did not finish within its bound, per unfinished connection.
    fn liveness_failure(&mut self) {
        let mut why = String::new();
        for (id, l) in &self.live {
            let tcp = self.engine.conn(*id).map(|c| format!("{:?} wnd={}", c.state(), c.rcv_wnd()));
            let app = self.host.conn(*id);
            let sending = self.engine.delivery().send_stream(*id);
            why += &format!(
                "; sender {} {:?} {:?} | {} | app: echo {} resend {} out {} closing {} disconnect {:?}/{:?} | stream {:?} tx {:?}",
                l.sender,
                self.peers.state(l.sender),
                tcp,
                self.engine.delivery().inner().inner().describe(*id),
                app.to_echo.len(),
                app.send_posted,
                app.send_outstanding,
                app.closing,
                app.disconnect_posted,
                app.disconnect_status,
                sending,
                self.engine.conn(*id).map(|c| c.describe_send()),
            );
        }
        if let (Some(h), id) = (self.hostile.as_ref(), self.hostile_conn) {
            why += &format!(
                "; hostile receiver: {} of {} bytes, finished {}, end {:?} | tx {:?}",
                h.received(),
                h.total(),
                h.finished(),
                self.hostile_end,
                id.and_then(|id| self.engine.conn(id).map(|c| c.describe_send())),
            );
        }
        self.rep.failures.push(format!("liveness: not finished after {:?} of virtual time{why}", self.bound));
    }

    /// Moves the clock to the next thing due (at least a microsecond on).
    fn advance_clock(&mut self) {
        let now = self.now;
        let next = [
            // smoltcp may keep asking to be polled "now" (e.g. data queued against a zero
            // window); it was just polled, so look again in a millisecond.
            self.peers.poll_at(now.as_nanos()).map(Instant::from_nanos).map(|t| {
                if t > now {
                    t
                } else {
                    now + Duration::from_millis(1)
                }
            }),
            self.engine.poll_timeout(),
            self.up.next_due(),
            self.down.next_due(),
            self.adversary.as_ref().and_then(|a| a.next_due()),
            self.hostile.as_ref().and_then(|h| h.next_due()),
            self.live.values().filter_map(|l| l.zero_since).map(|t| t + Duration::from_millis(20)).min(),
            // An application holding indicated NBLs returns them shortly (the pool may be
            // waiting for them).
            self.host.holds_indications().then(|| now + Duration::from_micros(100)),
            // Packets handed to the peers are read at their next poll: make it soon (a peer
            // that receives data would otherwise ACK only when some other timer came due).
            (!self.peers.dev.rx.is_empty()).then(|| now + Duration::from_micros(1)),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(now + Duration::from_millis(10));
        self.now = if next > now { next } else { now + Duration::from_micros(1) };
    }

    /// What must hold at the end of a run: no contract violation, every sender's stream
    /// received exactly (as far as its scenario allows), the adversary's stream whole,
    /// assembler work bounded.
    pub fn invariants(&mut self) {
        let sc = self.sc;
        let rep = &mut self.rep;
        self.engine.delivery().inner().finish();
        let violations = self.engine.delivery().inner().core().violations();
        for e in self.engine.delivery().inner().inner().abi_errors() {
            rep.failures.push(format!("ABI: {e}"));
        }
        rep.contract = violations.clone();
        rep.violations = violations.len();
        for v in violations.iter().take(5) {
            rep.failures.push(format!("contract: {v}"));
        }
        let checks = self.checks.lock().unwrap_or_else(|e| e.into_inner());
        for (i, s) in self.peers.senders.iter().enumerate() {
            let Some((end, got)) = self.ends[i] else {
                if !self.offloaded[i] && sc.resets[i].is_some() {
                    continue;
                }
                if !rep.failures.iter().any(|f| f.starts_with("liveness")) {
                    rep.failures.push(format!("sender {i}: connection never ended at the target"));
                }
                continue;
            };
            rep.bytes += got;
            let normal =
                sc.resets[i].is_none() && matches!(sc.actions[i], HostAction::None | HostAction::ReoffloadAt(_));
            if normal && (end != End::Fin || got != s.total) {
                rep.failures.push(format!("sender {i}: received {got} of {} bytes, end {end:?}", s.total));
            }
            if got > s.sent {
                rep.failures.push(format!("sender {i}: received {got} bytes, only {} sent", s.sent));
            }
            // The send direction: an echo returns exactly what arrived (all of it on a normal
            // end, a prefix otherwise); nothing else ever comes back.
            if let Some(m) = &s.rx_mismatch {
                rep.failures.push(format!("sender {i}: {m}"));
            }
            if s.received > got && !s.ignore_rx {
                rep.failures.push(format!("sender {i}: {} bytes came back, only {got} arrived", s.received));
            }
            if normal && s.echo && s.received != s.total {
                rep.failures.push(format!("sender {i}: echo returned {} of {} bytes", s.received, s.total));
            }
        }
        for (conn, c) in checks.iter() {
            if let Some(at) = c.mismatch {
                rep.failures.push(format!("{conn}: stream differs from what was sent at byte {at} ({})", c.detail));
            }
        }
        if let Some(a) = self.adversary.as_ref() {
            if self.adv_end != Some(End::Fin) {
                rep.failures.push(format!("adversary connection did not end cleanly: {:?}", self.adv_end));
            } else if self.adv_got != a.stream_len() {
                rep.failures.push(format!("adversary stream: {} of {} bytes delivered", self.adv_got, a.stream_len()));
            }
        }
        if let Some(h) = self.hostile.as_ref() {
            for f in h.failures.iter().take(5) {
                rep.failures.push(format!("hostile receiver: {f}"));
            }
            if self.hostile_end != Some(End::Fin) {
                rep.failures.push(format!("hostile receiver's connection did not end cleanly: {:?}", self.hostile_end));
            } else if h.received() != h.total() {
                rep.failures.push(format!("hostile receiver: {} of {} bytes", h.received(), h.total()));
            }
        }
        let st = self.engine.stats();
        rep.drops = st.drop_table();
        rep.host_path = st.host_path_table();
        // Invariant: replies to junk within the rate budget (RFC 5961 §7): no second of virtual
        // time carried more than the largest allowance the budget can draw.
        let limit = u64::from(self.engine.junk_budget().limit());
        let peak = self.engine.junk_budget().peak();
        if limit > 0 && u64::from(peak) > limit * 3 / 2 {
            rep.failures.push(format!("{peak} replies to junk in one second, over the budget ({limit}/s)"));
        }
        rep.junk_replies = (self.engine.junk_budget().sent(), peak);
        let bound_work = self.packets_in.max(1) * (sc.max_ooo_ranges as u64 + 2);
        if st.work > bound_work {
            rep.failures.push(format!("assembler work {} over the bound {bound_work}", st.work));
        }
    }

    /// The report, and the trace's line count (or its write error) when tracing.
    pub fn finish(mut self) -> (SimReport, Option<std::io::Result<u64>>) {
        self.rep.virtual_time = self.now.saturating_duration_since(Instant::ZERO);
        let trace = self.engine.delivery_mut().set_writer(None).map(|mut w| w.finish().map(|()| w.lines()));
        (self.rep, trace)
    }
}

fn describe(p: &[u8]) -> String {
    match chimney::wire::parse_with(p, chimney::wire::TcpChecksum::VouchedByKernel) {
        Ok(s) => format!(
            "{}:{} → {}:{} flags {:#04x} seq {} ack {} win {} len {}",
            s.src,
            s.src_port,
            s.dst,
            s.dst_port,
            s.flags.bits(),
            s.seq.0,
            s.ack.0,
            s.window,
            s.payload.len()
        ),
        Err(e) => format!("{} bytes unparsable ({})", p.len(), e.name()),
    }
}
