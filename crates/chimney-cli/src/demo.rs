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

use chimney::testkit::digest::{HashKind, StreamDigest};
use chimney::testkit::rng::SplitMix64;
use chimney_linux::{ConnReport, Netns, ShardTraces, Shards};

use crate::args::{ImpairArgs, PolicyArgs};
use crate::report::SentView;

/// `chimney demo` flags.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Concurrent connections.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Bytes each client sends (suffixes: K, M, G, KiB, MiB, GiB = powers of 1024; KB, MB, GB = of 1000).
    #[arg(long, default_value_t = 64 << 20, value_parser = crate::size::u64_bytes)]
    pub bytes: u64,
    /// Use IPv6 (fd00::/8) instead of IPv4 (198.18.0.0/15).
    #[arg(long)]
    pub ipv6: bool,
    /// TUN MTU (576..=65535 for IPv4, 1280..=65535 with --ipv6).
    #[arg(long, default_value_t = 1500)]
    pub mtu: u32,
    /// TUN queues (`IFF_MULTI_QUEUE`), one engine shard and thread each; the kernel steers
    /// every flow to one queue.
    #[arg(long, default_value_t = 1)]
    pub queues: usize,
    /// Seed of the streams and impairments.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Give up after this many seconds (default 600): the run stops, says what was still
    /// running, and exits 1.
    #[arg(long, value_name = "SECS", value_parser = crate::size::positive_secs)]
    pub timeout: Option<u64>,
    /// Clients reset the connection (SO_LINGER 0) after this many bytes instead of closing.
    #[arg(long, value_parser = crate::size::u64_bytes)]
    pub reset_after: Option<u64>,
    /// Which way the data goes: `recv` (clients send, the target receives), `send` (the
    /// target sends --bytes of a seeded pattern, clients check it), `both` (clients send and
    /// read back what the target echoes through its send path). Default: both, or recv with
    /// --close-after-*, --abort-after-* and --reset-after (which end one direction early).
    #[arg(long, value_enum)]
    pub direction: Option<Direction>,
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

/// `demo --direction`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Clients send; the target receives.
    Recv,
    /// The target sends; clients receive.
    Send,
    /// Clients send; the target echoes every byte back.
    Both,
}

impl DemoArgs {
    /// The direction asked for, or the default for the other flags.
    pub fn direction(&self) -> Direction {
        self.direction.unwrap_or(if self.policy.host_close().is_some() || self.reset_after.is_some() {
            Direction::Recv
        } else {
            Direction::Both
        })
    }
}

/// The digest (`kind`) of the first `n` bytes of the pattern the target sends
/// (`--direction send`, `serve --source`).
pub fn source_digest(kind: HashKind, n: u64) -> Vec<u8> {
    let mut h = StreamDigest::default();
    let mut buf = vec![0u8; 1 << 16];
    let mut at = 0;
    while at < n {
        let k = (n - at).min(buf.len() as u64) as usize;
        chimney::testkit::host::source_pattern(at, &mut buf[..k]);
        h.update(kind, &buf[..k]);
        at += k as u64;
    }
    h.finish(kind)
}

/// How long a run may take without `--timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// A client as the main thread sees it while it runs: its socket (so that a timeout can shut
/// it down and unblock a write), its progress, and whether it is done.
#[derive(Default)]
pub(crate) struct ClientCtl {
    stream: std::sync::Mutex<Option<TcpStream>>,
    sent: std::sync::atomic::AtomicU64,
    local: std::sync::Mutex<Option<SocketAddr>>,
    /// Every byte written (it may still wait for the target's FIN).
    sent_all: std::sync::atomic::AtomicBool,
    pub(crate) done: std::sync::atomic::AtomicBool,
}

impl ClientCtl {
    /// Drops the timeout's copy of the socket, so that the client's close really closes it.
    fn release(&self) {
        self.stream.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Shuts the client's socket down both ways: a blocked write or read returns at once.
    pub(crate) fn cut(&self) {
        if let Some(s) = self.stream.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// One Linux client: connects to `target`, sends `bytes` of a seeded stream (resetting after
/// `reset_after`), and reads back what the target sends; what it sent and saw.
#[allow(clippy::too_many_arguments)]
pub(crate) fn client(
    target: SocketAddr,
    bytes: u64,
    seed: u64,
    reset_after: Option<u64>,
    limit_connect: Duration,
    direction: Direction,
    hash: HashKind,
    ctl: &ClientCtl,
) -> SentView {
    let mut sent = SentView {
        local: target,
        bytes: 0,
        digest: Vec::new(),
        reset: false,
        error: None,
        may_have_sent: 0,
        returned: None,
        expect_returned: None,
    };
    let mut s = match TcpStream::connect_timeout(&target, limit_connect.min(Duration::from_secs(10))) {
        Ok(s) => s,
        Err(e) => {
            sent.error = Some(format!("connect: {e}"));
            return sent;
        }
    };
    sent.local = s.local_addr().unwrap_or(target);
    *ctl.local.lock().unwrap_or_else(|e| e.into_inner()) = Some(sent.local);
    *ctl.stream.lock().unwrap_or_else(|e| e.into_inner()) = s.try_clone().ok();
    // What comes back is read on its own thread while this one writes (an echo needs both
    // at once); in `recv` it is only the wait for the target's FIN.
    let reader = s.try_clone().map(|mut r| {
        std::thread::spawn(move || {
            let _ = r.set_read_timeout(Some(Duration::from_secs(30)));
            let mut h = StreamDigest::default();
            let mut n = 0u64;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match r.read(&mut buf) {
                    Ok(0) => return Ok((n, h.finish(hash))),
                    Ok(k) => {
                        h.update(hash, &buf[..k]);
                        n += k as u64;
                    }
                    Err(e) => return Err(format!("reading what the target sends: {e}")),
                }
            }
        })
    });
    let mut rng = SplitMix64::new(seed);
    let mut h = StreamDigest::default();
    let mut buf = vec![0u8; 64 * 1024];
    let to_send = if direction == Direction::Send { 0 } else { bytes };
    let limit = reset_after.unwrap_or(to_send).min(to_send);
    while sent.bytes < limit {
        let n = ((limit - sent.bytes) as usize).min(buf.len());
        rng.fill(&mut buf[..n]);
        if let Err(e) = s.write_all(&buf[..n]) {
            sent.error = Some(format!("write: {e}"));
            sent.may_have_sent = sent.bytes + n as u64;
            break;
        }
        h.update(hash, &buf[..n]);
        sent.bytes += n as u64;
        ctl.sent.store(sent.bytes, Ordering::Relaxed);
    }
    sent.digest = h.finish(hash);
    ctl.sent_all.store(true, Ordering::SeqCst);
    if reset_after.is_some() {
        // SO_LINGER 0: close sends RST.
        let linger = nix::libc::linger { l_onoff: 1, l_linger: 0 };
        let _ = nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::Linger, &linger);
        sent.reset = true;
        // The socket closes (and resets) only once the timeout's and the reader's copies of
        // it are gone too.
        ctl.release();
        let _ = s.shutdown(Shutdown::Read);
        return sent;
    }
    let _ = s.shutdown(Shutdown::Write);
    sent.expect_returned = match direction {
        Direction::Recv => None,
        Direction::Send => Some((bytes, source_digest(hash, bytes))),
        Direction::Both => Some((sent.bytes, sent.digest.clone())),
    };
    match reader.map_err(|e| e.to_string()).and_then(|t| t.join().map_err(|_| "reader failed".to_string())) {
        Ok(Ok(back)) => sent.returned = Some(back),
        Ok(Err(e)) | Err(e) => {
            if sent.error.is_none() {
                sent.error = Some(e);
            }
        }
    }
    ctl.release();
    sent
}

/// Checks the flags that do not depend on where the transfer runs.
fn check(a: &DemoArgs) -> Result<(), String> {
    if a.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    if a.queues == 0 || a.queues > 64 {
        return Err(format!("--queues must be 1..=64, got {}", a.queues));
    }
    crate::args::check_mtu(a.mtu, a.ipv6)
}

pub fn run(a: &DemoArgs) -> ExitCode {
    if a.in_memory {
        return in_memory(a.connections as u32, a.bytes, a.seed, a.json);
    }
    let fail = |msg: String| crate::error::CliError::new("demo", msg).exit();
    if let Err(e) = check(a) {
        return fail(e);
    }
    let (mut policy, impair) = match crate::args::parse_flags(&a.policy, &a.impair) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let direction = a.direction();
    policy.send = match direction {
        Direction::Recv => chimney::testkit::host::SendPolicy::None,
        Direction::Send => chimney::testkit::host::SendPolicy::Source(a.bytes),
        Direction::Both => chimney::testkit::host::SendPolicy::Echo,
    };
    if a.sim {
        return simulated(a);
    }
    if let Err(e) = chimney_linux::preflight() {
        if let Err(why) = sim_can_honour(a) {
            return fail(format!("{e}; the simulator (the fallback without root) {why}"));
        }
        eprintln!("chimney demo: {e}; running the same transfer in the simulator instead (--sim)");
        return simulated(a);
    }
    let ns = match Netns::create() {
        Ok(ns) => ns,
        Err(e) => return fail(e.to_string()),
    };
    let offload = a.policy.offload_with(&impair);
    let (tuns, target) = match ns.tun_network(a.ipv6, a.mtu, offload, a.queues) {
        Ok(x) => x,
        Err(e) => return fail(e.to_string()),
    };
    let cfg = crate::args::driver_config(
        &a.policy,
        policy,
        impair,
        a.seed,
        target,
        // The network `tun_network` built: 198.18.0.0/24 or fd00::/64.
        chimney::wire::Prefix { addr: target.ip(), len: if a.ipv6 { 64 } else { 24 } },
        a.mtu,
    );
    let temp = std::env::temp_dir().join(format!("chimney-demo-{}.pcap", std::process::id()));
    let capture_path = a.pcap.clone().or_else(|| a.plot.as_ref().map(|_| temp.clone()));
    let capture = match capture_path.as_deref().map(crate::pcap::open).transpose() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let traces = match a.trace.open_shards(a.queues) {
        Ok(t) => ShardTraces::new(t),
        Err(e) => return fail(e),
    };
    let tap = capture.clone();
    let configure: chimney_linux::Configure = Arc::new(move |i, d| {
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
    let timeout = a.timeout.map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let done = Arc::new(AtomicUsize::new(0));
    let t0 = WallClock::now();
    let deadline = t0 + timeout;
    let mut clients = Vec::new();
    let ctls: Vec<Arc<ClientCtl>> = (0..a.connections).map(|_| Arc::default()).collect();
    for (i, ctl) in ctls.iter().enumerate() {
        let (bytes, seed, reset, done) = (a.bytes, a.seed ^ ((i as u64 + 1) << 32), a.reset_after, Arc::clone(&done));
        let (ctl, hash) = (Arc::clone(ctl), a.policy.hash);
        match ns.spawn(move || {
            let r = client(target, bytes, seed, reset, timeout, direction, hash, &ctl);
            ctl.done.store(true, Ordering::SeqCst);
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
    let mut last_bar = WallClock::now();
    let mut stragglers = 0;
    let mut timed_out = None;
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
            // Say what was still running, then stop it: the target uploads what it holds and
            // every client's socket is shut down, so a client blocked in a write returns.
            timed_out = Some(still_running(&ctls, a.bytes, shards.live()));
            shards.shutdown(&mut reports);
            for c in &ctls {
                c.cut();
            }
            break;
        }
    }
    let wall = t0.elapsed();
    bar.finish_and_clear();
    // Problems after the transfer (writing the trace, pcap or plot) are reported after the
    // result table, never instead of it.
    let mut after: Vec<String> = Vec::new();
    if let (Some(d), Some(path)) = (shards.single(), &a.trace.trace) {
        match d.finish_trace() {
            Some(Ok(n)) if !a.json => eprintln!("chimney demo: {n} trace lines written to {}", path.display()),
            Some(Err(e)) => after.push(format!("writing {}: {e}", path.display())),
            _ => {}
        }
    }
    let (summary, shard_error) = shards.finish(&mut reports);
    after.extend(shard_error.map(|e| e.to_string()));
    if let (Some(c), Some(path)) = (&capture, &capture_path) {
        match crate::pcap::finish(c) {
            Ok(n) if !a.json && a.pcap.is_some() => {
                eprintln!("chimney demo: {n} packets written to {}", path.display())
            }
            Ok(_) => {}
            Err(e) => after.push(format!("writing {}: {e}", path.display())),
        }
        if let Some(svg) = &a.plot {
            match crate::plot::plot_file(path, svg, None, &a.trace.paths(a.queues)) {
                Ok(_) if !a.json => eprintln!("chimney demo: plot written to {}", svg.display()),
                Ok(_) => {}
                Err(e) => after.push(format!("plotting: {e}")),
            }
            if a.pcap.is_none() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
    let sent: Vec<SentView> = join_clients(clients, target, timed_out.is_some());
    let code = crate::report::print_demo(a.json, a.ipv6, &sent, &reports, &summary, wall, a.policy.host_close());
    // Everything that went wrong after the transfer, after the result table.
    let after = crate::error::exit_all("demo", after);
    if let Some(why) = timed_out {
        eprintln!("chimney demo: timed out after {} s: {why}", timeout.as_secs());
        return after.unwrap_or(ExitCode::FAILURE);
    }
    after.unwrap_or(code)
}

/// What was still running at a timeout: the clients still sending (with their progress) and
/// the connections the target still had offloaded.
fn still_running(ctls: &[Arc<ClientCtl>], bytes: u64, offloaded: usize) -> String {
    let who = |c: &ClientCtl| {
        c.local.lock().unwrap_or_else(|e| e.into_inner()).map_or("(connecting)".to_string(), |l| l.to_string())
    };
    let busy: Vec<String> = ctls
        .iter()
        .filter(|c| !c.sent_all.load(Ordering::SeqCst))
        .map(|c| format!("{} at {} of {bytes} bytes", who(c), c.sent.load(Ordering::Relaxed)))
        .collect();
    let waiting: Vec<String> = ctls
        .iter()
        .filter(|c| c.sent_all.load(Ordering::SeqCst) && !c.done.load(Ordering::SeqCst))
        .map(|c| who(c))
        .collect();
    let mut clients = if busy.is_empty() {
        "every client had finished sending".to_string()
    } else {
        format!("{} of {} client(s) still sending ({})", busy.len(), ctls.len(), busy.join("; "))
    };
    if !waiting.is_empty() {
        clients += &format!("; {} waiting for the target's FIN ({})", waiting.len(), waiting.join(", "));
    }
    format!("{clients}; {offloaded} connection(s) still offloaded in the target (uploaded now)")
}

/// Joins the client threads. After a timeout (their sockets were shut down) one that does not
/// return within 2 s is reported as failed rather than waited for; otherwise each is waited
/// for (a client waits at most 30 s for the target's FIN).
/// Waits for every client (a short while only after a timeout) and collects what each saw.
pub(crate) fn join_clients(
    clients: Vec<std::thread::JoinHandle<Result<SentView, chimney_linux::DriverError>>>,
    target: SocketAddr,
    timed_out: bool,
) -> Vec<SentView> {
    let failed = |why: &str| SentView {
        local: target,
        bytes: 0,
        digest: Vec::new(),
        reset: false,
        error: Some(why.into()),
        may_have_sent: 0,
        returned: None,
        expect_returned: None,
    };
    let give_up = WallClock::now() + if timed_out { Duration::from_secs(2) } else { Duration::from_secs(3600) };
    clients
        .into_iter()
        .map(|h| {
            while !h.is_finished() && WallClock::now() < give_up {
                std::thread::sleep(Duration::from_millis(5));
            }
            if h.is_finished() {
                match h.join() {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => failed(&format!("client could not enter the namespace: {e}")),
                    Err(_) => failed("client thread failed"),
                }
            } else {
                failed("client still blocked after the timeout")
            }
        })
        .collect()
}

/// Whether the simulator can run this demo as asked: `Err` names the flags it cannot honour.
fn sim_can_honour(a: &DemoArgs) -> Result<(), String> {
    let p = &a.policy;
    let mut no = Vec::new();
    if matches!(a.direction, Some(Direction::Send | Direction::Both)) {
        no.push("--direction send/both (its peers only send; without the flag it runs recv)");
    }
    if a.queues > 1 {
        no.push("--queues (one engine)");
    }
    if a.timeout.is_some() {
        no.push("--timeout (virtual time)");
    }
    if p.stall_ms.is_some() {
        no.push("--stall-ms");
    }
    if p.keepalive > 0 {
        no.push("--keepalive");
    }
    if p.no_offload {
        no.push("--no-offload (no TUN)");
    }
    if p.no_direct {
        no.push("--no-direct (no TUN)");
    }
    if p.busy_poll_us > 0 {
        no.push("--busy-poll-us (no TUN)");
    }
    if p.host_close().is_some() {
        no.push("--close-after-*/--abort-after-* (the simulator's host does not close first)");
    }
    if p.syncookies != crate::args::SynCookiesArg::Auto {
        no.push("--syncookies (the simulator draws its own)");
    }
    if no.is_empty() {
        Ok(())
    } else {
        Err(format!("cannot honour {}", no.join(", ")))
    }
}

/// The demo's transfer in the deterministic simulator: smoltcp senders, clean links (or the
/// impairments given), the same verification; `--pcap`, `--plot` and `--trace` as on a TUN.
fn simulated(a: &DemoArgs) -> ExitCode {
    use chimney_sim::scenario::{Knobs, Scenario};
    if let Err(why) = sim_can_honour(a) {
        return crate::error::CliError::new("demo", format!("the simulator {why}; run as root for a real transfer"))
            .exit();
    }
    let knobs = Knobs { bytes: Some(a.bytes), connections: Some(a.connections), clean: true, ..Knobs::default() };
    let mut sc = Scenario::from_seed(a.seed, &knobs);
    sc.ipv6 = a.ipv6;
    sc.mtu = a.mtu as usize;
    sc.rcv_wnd = a.policy.rcv_wnd;
    sc.rcv_indication_size = a.policy.indication_size();
    sc.resets = vec![a.reset_after.filter(|&r| r < a.bytes); a.connections];
    if let Ok(p) = a.policy.policy() {
        sc.policies = vec![p; a.connections];
    }
    if let Ok(c) = a.impair.config() {
        sc.to_target = c.clone();
        sc.to_peer = c;
    }
    let fail = |msg: String| crate::error::CliError::new("demo", msg).exit();
    let temp = std::env::temp_dir().join(format!("chimney-demo-sim-{}.pcap", std::process::id()));
    let capture_path = a.pcap.clone().or_else(|| a.plot.as_ref().map(|_| temp.clone()));
    let t0 = WallClock::now();
    let (rep, mut after) = match crate::sim::run_recorded(&sc, false, capture_path.as_deref(), &a.trace) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let wall = t0.elapsed();
    if let Some(path) = &capture_path {
        if let Some(svg) = &a.plot {
            if let Err(e) = crate::plot::plot_file(path, svg, None, &a.trace.paths(1)) {
                after.push(format!("plotting: {e}"));
            }
            if a.pcap.is_none() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
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
    if let Some(code) = crate::error::exit_all("demo", after) {
        code
    } else if rep.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The in-memory contract demonstration (`chimney demo --in-memory`): no TCP, no TUN.
fn in_memory(connections: u32, bytes: u64, seed: u64, json: bool) -> ExitCode {
    let cfg = chimney::testkit::demo::DemoConfig {
        connections: connections.max(1),
        bytes: bytes.min(64 << 20),
        chunk: 16 * 1024,
        seed,
    };
    let a = InMemory { json };
    let t0 = WallClock::now();
    let r = chimney::testkit::demo::run(&cfg);
    let secs = t0.elapsed().as_secs_f64();
    if a.json {
        let conns: Vec<_> = r
            .conns
            .iter()
            .map(|c| {
                serde_json::json!({
                    "conn": c.conn.0, "policy": c.policy, "bytes": c.bytes, "exact": c.exact,
                    "completions": c.completions, "indications": c.indications, "refusals": c.refusals,
                })
            })
            .collect();
        let v = serde_json::json!({
            "mode": "in-memory",
            "ok": r.ok(),
            "seconds": secs,
            "checked_bytes": r.checked_bytes,
            "violations": r.violations.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
            "connections": conns,
        });
        println!("{v}");
    } else {
        println!("chimney demo (in memory: host application ⇄ delivery layer, contract verifier on)");
        println!(
            "{:<6} {:<42} {:>10} {:>6} {:>11} {:>11} {:>8}",
            "conn", "policy", "bytes", "exact", "completions", "indications", "refused"
        );
        for c in &r.conns {
            println!(
                "{:<6} {:<42} {:>10} {:>6} {:>11} {:>11} {:>8}",
                c.conn.0,
                c.policy,
                c.bytes,
                if c.exact { "yes" } else { "NO" },
                c.completions,
                c.indications,
                c.refusals
            );
        }
        let total: u64 = r.conns.iter().map(|c| c.bytes).sum();
        println!(
            "{} bytes in {:.3} s ({:.2} Gbit/s of delivery work), {} bytes checked by the verifier",
            total,
            secs,
            total as f64 * 8.0 / secs.max(1e-9) / 1e9,
            r.checked_bytes
        );
        if r.violations.is_empty() {
            println!("verifier: 0 violations ({} rules checked)", chimney::contract::RULES.len());
        } else {
            println!("verifier: {} violations", r.violations.len());
            for v in r.violations.iter().take(20) {
                println!("  {v}");
            }
        }
    }
    if r.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

struct InMemory {
    json: bool,
}
