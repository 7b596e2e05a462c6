//! `chimney demo`: the main job. Creates a network namespace with a TUN device, runs the
//! offload target on it, and runs Linux kernel TCP clients inside the namespace that send
//! seeded pseudo-random streams; checks every stream byte for byte (SHA-256 of what was sent
//! against what the application received) and the verifier's verdict.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as WallClock};

use crate::shards::Shards;
use chimney::rng::SplitMix64;
use chimney_linux::{ConnReport, Netns, Tun};
use sha2::{Digest, Sha256};

use crate::args::{ImpairArgs, PolicyArgs};

/// `chimney demo` flags.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Concurrent connections.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Bytes each client sends.
    #[arg(long, default_value_t = 64 << 20)]
    pub bytes: u64,
    /// Use IPv6 (fd00::/8) instead of IPv4 (198.18.0.0/15).
    #[arg(long)]
    pub ipv6: bool,
    /// TUN MTU.
    #[arg(long, default_value_t = 1500)]
    pub mtu: u32,
    /// TUN queues (`IFF_MULTI_QUEUE`), one engine shard and thread each; the kernel steers
    /// every flow to one queue.
    #[arg(long, default_value_t = 1)]
    pub queues: usize,
    /// Seed of the streams and impairments.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Clients reset the connection (SO_LINGER 0) after this many bytes instead of closing.
    #[arg(long)]
    pub reset_after: Option<u64>,
    /// Run the old in-memory contract demonstration instead (no TCP, no TUN).
    #[arg(long)]
    pub in_memory: bool,
    /// Run the same transfer in the deterministic simulator (smoltcp senders) instead of on a
    /// TUN device; also what happens when a namespace or TUN cannot be made.
    #[arg(long)]
    pub sim: bool,
    /// Write every packet the target received and sent to FILE (pcap, raw IP).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<std::path::PathBuf>,
    /// Draw the busiest connection's time–sequence graph to FILE (SVG).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<std::path::PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub trace: crate::args::TraceArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub impair: ImpairArgs,
}

struct Sent {
    local: SocketAddr,
    bytes: u64,
    sha256: [u8; 32],
    reset: bool,
    error: Option<String>,
}

fn client(target: SocketAddr, bytes: u64, seed: u64, reset_after: Option<u64>) -> Sent {
    let mut sent = Sent { local: target, bytes: 0, sha256: [0; 32], reset: false, error: None };
    let mut s = match TcpStream::connect_timeout(&target, Duration::from_secs(10)) {
        Ok(s) => s,
        Err(e) => {
            sent.error = Some(format!("connect: {e}"));
            return sent;
        }
    };
    sent.local = s.local_addr().unwrap_or(target);
    let mut rng = SplitMix64::new(seed);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let limit = reset_after.unwrap_or(bytes).min(bytes);
    while sent.bytes < limit {
        let n = ((limit - sent.bytes) as usize).min(buf.len());
        rng.fill(&mut buf[..n]);
        if let Err(e) = s.write_all(&buf[..n]) {
            sent.error = Some(format!("write: {e}"));
            break;
        }
        h.update(&buf[..n]);
        sent.bytes += n as u64;
    }
    sent.sha256 = h.finalize().into();
    if reset_after.is_some() {
        // SO_LINGER 0: close sends RST.
        let linger = nix::libc::linger { l_onoff: 1, l_linger: 0 };
        let _ = nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::Linger, &linger);
        sent.reset = true;
        return sent;
    }
    let _ = s.shutdown(Shutdown::Write);
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut sink = [0u8; 1024];
    loop {
        match s.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                sent.error = Some(format!("waiting for the target's FIN: {e}"));
                break;
            }
        }
    }
    sent
}

/// Sets up the namespace and TUN, returning the target address clients connect to.
pub fn setup(ns: &Netns, ipv6: bool, mtu: u32, offload: bool) -> Result<(Tun, SocketAddr), chimney_linux::DriverError> {
    let (mut tuns, target) = setup_queues(ns, ipv6, mtu, offload, 1)?;
    let tun =
        tuns.pop().ok_or(chimney_linux::DriverError { step: "creating the TUN device", detail: "no queue".into() })?;
    Ok((tun, target))
}

/// Like [`setup`] with `queues` TUN queues (multi-queue when more than one).
pub fn setup_queues(
    ns: &Netns,
    ipv6: bool,
    mtu: u32,
    offload: bool,
    queues: usize,
) -> Result<(Vec<Tun>, SocketAddr), chimney_linux::DriverError> {
    let tun = ns.run(move || Tun::open_queues("chim0", offload, queues))??;
    ns.ip(&["link", "set", "dev", "chim0", "mtu", &mtu.to_string(), "up"])?;
    ns.ip(&["addr", "add", "198.18.0.2/24", "dev", "chim0"])?;
    ns.ip(&["-6", "addr", "add", "fd00::2/64", "dev", "chim0", "nodad"])?;
    let target: SocketAddr = if ipv6 { "[fd00::1]:5001".parse().unwrap() } else { "198.18.0.1:5001".parse().unwrap() };
    Ok((tun, target))
}

pub fn run(a: &DemoArgs) -> ExitCode {
    if a.in_memory {
        return crate::in_memory_demo(a.connections as u32, a.bytes, a.seed, a.json);
    }
    let fail = |msg: String| {
        eprintln!("chimney demo: {msg}");
        ExitCode::from(2)
    };
    if a.connections == 0 {
        return fail("--connections must be at least 1".into());
    }
    let (policy, impair) = match crate::args::parse_flags(&a.policy, &a.impair) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    if a.sim {
        return simulated(a);
    }
    if let Err(e) = chimney_linux::preflight() {
        eprintln!("chimney demo: {e}; running the same transfer in the simulator instead (--sim)");
        return simulated(a);
    }
    let ns = match Netns::create() {
        Ok(ns) => ns,
        Err(e) => return fail(e.to_string()),
    };
    if a.queues == 0 || a.queues > 64 {
        return fail(format!("--queues must be 1..=64, got {}", a.queues));
    }
    let offload = a.policy.offload_with(&impair);
    let (tuns, target) = match setup_queues(&ns, a.ipv6, a.mtu, offload, a.queues) {
        Ok(x) => x,
        Err(e) => return fail(e.to_string()),
    };
    let cfg = crate::args::driver_config(&a.policy, policy, impair, a.seed, target, a.mtu);
    let temp = std::env::temp_dir().join(format!("chimney-demo-{}.pcap", std::process::id()));
    let capture_path = a.pcap.clone().or_else(|| a.plot.as_ref().map(|_| temp.clone()));
    let capture = match capture_path.as_deref().map(crate::pcap::open).transpose() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let traces = match a.trace.open_shards(a.queues) {
        Ok(t) => crate::shards::ShardTraces::new(t),
        Err(e) => return fail(e),
    };
    let tap = capture.clone();
    let configure: crate::shards::Configure = Arc::new(move |i, d| {
        if let Some(c) = &tap {
            d.set_tap(crate::pcap::tap(c));
        }
        traces.give(i, d);
        Box::new(|_| {})
    });
    let mut shards = match Shards::start(tuns, &cfg, configure) {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    let done = Arc::new(AtomicUsize::new(0));
    let t0 = WallClock::now();
    let mut clients = Vec::new();
    for i in 0..a.connections {
        let (bytes, seed, reset, done) = (a.bytes, a.seed ^ ((i as u64 + 1) << 32), a.reset_after, Arc::clone(&done));
        match ns.spawn(move || {
            let r = client(target, bytes, seed, reset);
            done.fetch_add(1, Ordering::SeqCst);
            r
        }) {
            Ok(h) => clients.push(h),
            Err(e) => return fail(e.to_string()),
        }
    }
    let total = a.bytes * a.connections as u64;
    let bar = if a.json { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(total) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut reports: Vec<ConnReport> = Vec::new();
    let deadline = t0 + Duration::from_secs(a.timeout);
    let mut last_bar = WallClock::now();
    let mut stragglers = 0;
    while reports.len() < a.connections {
        if let Err(e) = shards.step(Duration::from_millis(5), &mut reports) {
            return fail(e.to_string());
        }
        if last_bar.elapsed() > Duration::from_millis(100) {
            bar.set_position(shards.bytes_received().min(total));
            last_bar = WallClock::now();
        }
        if done.load(Ordering::SeqCst) == a.connections && shards.live() == 0 && reports.len() < a.connections {
            // Every client finished; give stragglers (e.g. connect failures) a moment.
            stragglers += 1;
            if stragglers > 200 {
                break;
            }
        }
        if WallClock::now() > deadline {
            shards.shutdown(&mut reports);
            break;
        }
    }
    let wall = t0.elapsed();
    if let (Some(d), Some(path)) = (shards.single(), &a.trace.trace) {
        match d.finish_trace() {
            Some(Ok(n)) if !a.json => eprintln!("chimney demo: {n} trace lines written to {}", path.display()),
            Some(Err(e)) => return fail(format!("writing {}: {e}", path.display())),
            _ => {}
        }
    }
    let summary = match shards.finish(&mut reports) {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    if let (Some(c), Some(path)) = (&capture, &capture_path) {
        match crate::pcap::finish(c) {
            Ok(n) if !a.json && a.pcap.is_some() => {
                eprintln!("chimney demo: {n} packets written to {}", path.display())
            }
            Ok(_) => {}
            Err(e) => return fail(format!("writing {}: {e}", path.display())),
        }
        if let Some(svg) = &a.plot {
            let r = crate::plot::plot_file(path, svg, None, a.trace.trace.as_deref());
            if a.pcap.is_none() {
                let _ = std::fs::remove_file(path);
            }
            if let Err(e) = r {
                return fail(format!("plotting: {e}"));
            }
        }
    }
    bar.finish_and_clear();
    let sent: Vec<Sent> = clients
        .into_iter()
        .map(|h| {
            h.join().ok().and_then(|r| r.ok()).unwrap_or(Sent {
                local: target,
                bytes: 0,
                sha256: [0; 32],
                reset: false,
                error: Some("client thread failed".into()),
            })
        })
        .collect();
    crate::report::print_demo(a, &sent_views(&sent), &reports, &summary, wall)
}

/// What the report needs from a client.
pub struct SentView {
    /// The client's address (matches the report's peer).
    pub local: SocketAddr,
    /// Bytes written.
    pub bytes: u64,
    /// SHA-256 of them.
    pub sha256: [u8; 32],
    /// Whether it reset instead of closing.
    pub reset: bool,
    /// A client-side error.
    pub error: Option<String>,
}

fn sent_views(s: &[Sent]) -> Vec<SentView> {
    s.iter()
        .map(|x| SentView { local: x.local, bytes: x.bytes, sha256: x.sha256, reset: x.reset, error: x.error.clone() })
        .collect()
}

/// The demo's transfer in the deterministic simulator: smoltcp senders, clean links (or the
/// impairments given), the same verification.
fn simulated(a: &DemoArgs) -> ExitCode {
    use chimney_sim::scenario::{Knobs, Scenario};
    let knobs = Knobs { bytes: Some(a.bytes), connections: Some(a.connections), clean: true, ..Knobs::default() };
    let mut sc = Scenario::from_seed(a.seed, &knobs);
    sc.ipv6 = a.ipv6;
    sc.mtu = a.mtu as usize;
    sc.rcv_wnd = a.policy.rcv_wnd;
    if let Ok(p) = a.policy.policy() {
        sc.policies = vec![p; a.connections];
    }
    if let Ok(c) = a.impair.config() {
        sc.to_target = c.clone();
        sc.to_peer = c;
    }
    let t0 = WallClock::now();
    let rep = chimney_sim::run(&sc, false);
    let wall = t0.elapsed();
    let gbps = rep.bytes as f64 * 8.0 / rep.virtual_time.as_secs_f64().max(1e-9) / 1e9;
    if a.json {
        let v = serde_json::json!({
            "mode": "simulated",
            "ok": rep.ok(),
            "bytes": rep.bytes,
            "virtual_seconds": rep.virtual_time.as_secs_f64(),
            "wall_seconds": wall.as_secs_f64(),
            "gbps_virtual": gbps,
            "violations": rep.violations,
            "failures": rep.failures,
            "trace_hash": format!("{:016x}", rep.trace_hash),
        });
        println!("{v}");
    } else {
        println!("chimney demo (SIMULATED: smoltcp senders → simulated link → offload target, contract verifier on)");
        println!(
            "{} connection(s), {} bytes received in {:.3} s of virtual time ({:.3} s wall), {} packets",
            a.connections,
            rep.bytes,
            rep.virtual_time.as_secs_f64(),
            wall.as_secs_f64(),
            rep.packets
        );
        println!("verifier: {} violations", rep.violations);
        for f in &rep.failures {
            println!("  {f}");
        }
        println!("{}", if rep.ok() { "result: OK — every stream byte-exact (simulated)" } else { "result: FAILED" });
    }
    if rep.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
