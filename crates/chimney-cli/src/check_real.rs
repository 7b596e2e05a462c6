//! `chimney check --real`: the target behind chimney's TCP engine and verifier on a TUN
//! device, with Linux kernel TCP clients in a network namespace the run creates (as `demo`
//! does). A handful of fixed runs: both address families, many flows, a lossy, reordering
//! and duplicating link, clients that reset, a host that takes indications only. Each is
//! judged like a suite run: the verifier's violations, every stream exact, the ABI clean.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as WallClock};

use chimney::contract::trace::TraceWriter;
use chimney::engine::EngineConfig;
use chimney::tcp::TcpConfig;
use chimney::testkit::conformance::{Candidate, Outcome};
use chimney::testkit::host::AppPolicy;
use chimney::testkit::impair::ImpairConfig;
use chimney_linux::{ConnReport, Driver, DriverConfig, Netns};

use crate::demo::{client, join_clients, ClientCtl, Direction};

/// One real run: who connects, how much each sends, over what link, to what host.
pub struct RealRun {
    /// Its name in reports (`real NAME`) and the value of `--real-run`.
    pub name: &'static str,
    ipv6: bool,
    connections: usize,
    bytes: u64,
    /// Clients reset (SO_LINGER 0) after this many bytes instead of closing.
    reset_after: Option<u64>,
    /// Inbound impairment (loss, duplication, reordering) between the TUN and the engine.
    lossy: bool,
    /// The host never posts: everything is indicated.
    indications_only: bool,
}

/// Every real run, in the order `--real` runs them.
pub const REAL_RUNS: [RealRun; 5] = [
    RealRun {
        name: "ipv4",
        ipv6: false,
        connections: 4,
        bytes: 4 << 20,
        reset_after: None,
        lossy: false,
        indications_only: false,
    },
    RealRun {
        name: "ipv6",
        ipv6: true,
        connections: 4,
        bytes: 4 << 20,
        reset_after: None,
        lossy: false,
        indications_only: false,
    },
    RealRun {
        name: "many-flows",
        ipv6: false,
        connections: 32,
        bytes: 256 << 10,
        reset_after: None,
        lossy: false,
        indications_only: false,
    },
    RealRun {
        name: "lossy-link",
        ipv6: false,
        connections: 2,
        bytes: 1 << 20,
        reset_after: None,
        lossy: true,
        indications_only: false,
    },
    RealRun {
        name: "resets-and-indications",
        ipv6: false,
        connections: 4,
        bytes: 1 << 20,
        reset_after: Some(300 << 10),
        lossy: false,
        indications_only: true,
    },
];

/// The names of the real runs.
pub fn real_run_names() -> Vec<&'static str> {
    REAL_RUNS.iter().map(|r| r.name).collect()
}

/// How long one real run may take before it is stopped and failed.
const LIMIT: Duration = Duration::from_secs(90);

/// Runs `run` with a fresh target from `make`; `Err` when the run could not be set up at all
/// (no root, no namespace, no TUN): that is not the target's failure.
pub fn run_real<T: Candidate + 'static>(
    run: &RealRun,
    seed: u64,
    make: &dyn Fn() -> Result<T, String>,
    trace: Option<TraceWriter>,
) -> Result<Outcome, String> {
    let name = format!("real {}", run.name);
    chimney_linux::preflight().map_err(|e| e.to_string())?;
    let ns = Netns::create().map_err(|e| e.to_string())?;
    let mtu = 1500;
    let (mut tuns, target) = ns.tun_network(run.ipv6, mtu, !run.lossy, 1).map_err(|e| e.to_string())?;
    let tun = tuns.pop().ok_or("no TUN queue")?;
    let layer = match make() {
        Ok(t) => t,
        Err(e) => return Ok(Outcome { name, abi_errors: vec![e], ..Outcome::default() }),
    };
    let cfg = config(run, seed, target);
    let hash = cfg.hash;
    let mut d = Driver::with_target(tun, cfg, layer).map_err(|e| e.to_string())?;
    if let Some(w) = trace {
        d.set_trace(w);
    }
    let done = Arc::new(AtomicUsize::new(0));
    let ctls: Vec<Arc<ClientCtl>> = (0..run.connections).map(|_| Arc::default()).collect();
    let mut clients = Vec::new();
    for (i, ctl) in ctls.iter().enumerate() {
        let (bytes, reset, done, ctl) = (run.bytes, run.reset_after, Arc::clone(&done), Arc::clone(ctl));
        let seed = seed ^ ((i as u64 + 1) << 32);
        let h = ns
            .spawn(move || {
                let r = client(target, bytes, seed, reset, LIMIT, Direction::Recv, hash, &ctl);
                ctl.done.store(true, Ordering::SeqCst);
                done.fetch_add(1, Ordering::SeqCst);
                r
            })
            .map_err(|e| e.to_string())?;
        clients.push(h);
    }
    let mut reports: Vec<ConnReport> = Vec::new();
    let mut failures = Vec::new();
    let deadline = WallClock::now() + LIMIT;
    let mut stragglers = 0;
    let mut timed_out = false;
    while reports.len() < run.connections {
        d.step(Duration::from_millis(5)).map_err(|e| e.to_string())?;
        reports.extend(d.take_reports());
        if done.load(Ordering::SeqCst) == run.connections && d.live() == 0 && reports.len() < run.connections {
            stragglers += 1;
            if stragglers > 200 {
                break;
            }
        }
        if WallClock::now() > deadline {
            failures.push(format!(
                "not finished after {} s: {} of {} connections reported, {} offloaded",
                LIMIT.as_secs(),
                reports.len(),
                run.connections,
                d.live()
            ));
            d.shutdown();
            reports.extend(d.take_reports());
            for c in &ctls {
                c.cut();
            }
            timed_out = true;
            break;
        }
    }
    if let Some(Err(e)) = d.finish_trace() {
        failures.push(format!("writing the trace: {e}"));
    }
    let sent = join_clients(clients, target, timed_out);
    for s in &sent {
        if let Some(e) = &s.error {
            failures.push(format!("client {}: {e}", s.local));
            continue;
        }
        let Some(r) = reports.iter().find(|r| r.peer == s.local) else {
            failures.push(format!("client {}: its connection was never reported", s.local));
            continue;
        };
        if s.reset {
            // The client stopped at a reset: what arrived before it must be a prefix.
            if r.bytes > s.bytes {
                failures.push(format!("client {}: {} bytes received, only {} sent", s.local, r.bytes, s.bytes));
            }
        } else if r.bytes != s.bytes || r.digest != s.digest {
            failures.push(format!(
                "client {}: sent {} bytes ({}), the host received {} ({})",
                s.local,
                s.bytes,
                hex(&s.digest),
                r.bytes,
                r.digest_hex()
            ));
        }
    }
    Ok(Outcome { name, violations: d.violations(), failures, abi_errors: d.target().abi_errors() })
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The driver's configuration for `run`: built-in defaults, the run's link and host.
fn config(run: &RealRun, seed: u64, target: SocketAddr) -> DriverConfig {
    let base = DriverConfig::default();
    let impair = if run.lossy {
        ImpairConfig {
            loss: 0.02,
            dup: 0.01,
            reorder: 0.02,
            reorder_max: Duration::from_millis(5),
            ..ImpairConfig::default()
        }
    } else {
        ImpairConfig::default()
    };
    let policy =
        if run.indications_only { AppPolicy { keep_posted: 0, ..base.policy.clone() } } else { base.policy.clone() };
    DriverConfig {
        engine: EngineConfig {
            seed,
            listen: vec![target],
            prefixes: vec![chimney::wire::Prefix { addr: target.ip(), len: if run.ipv6 { 64 } else { 24 } }],
            tcp: TcpConfig { mss: chimney_linux::defaults::mss_for(1500, run.ipv6), ..base.engine.tcp.clone() },
            ..base.engine.clone()
        },
        policy,
        impair_in: impair,
        ..base
    }
}
