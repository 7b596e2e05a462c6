//! `chimney serve`: the target as a sink server on a TUN device in the current network
//! namespace (start it under `ip netns exec`). One JSON line per connection that ends, a
//! `{"summary": …}` line at exit.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as WallClock};

use chimney::contract::ConnId;
use chimney_linux::{ConnReport, DriverSummary, Tun};

use crate::shards::Shards;

use crate::args::{ImpairArgs, PolicyArgs};

/// `chimney serve` flags.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// TUN device to create.
    #[arg(long, default_value = "chim0")]
    pub tun: String,
    /// Address (CIDR) the kernel side of the TUN gets, e.g. 198.18.0.2/24 or fd00::2/64.
    #[arg(long)]
    pub local: String,
    /// Address and port the target listens on (inside --local's prefix), e.g. 198.18.0.1:5001.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Exit after this many connections have ended (0 = run until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub connections: usize,
    /// Write each connection's stream to DIR/<peer>.bin.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write every packet the target received and sent to FILE (pcap, raw IP).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// TUN MTU.
    #[arg(long, default_value_t = 1500)]
    pub mtu: u32,
    /// TUN queues: a multi-queue device with one engine shard per queue on its own thread
    /// (the kernel steers each flow to one queue).
    #[arg(long, default_value_t = 1)]
    pub queues: usize,
    /// Seed of impairments and ISNs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub trace: crate::args::TraceArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub impair: ImpairArgs,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn ip(args: &[&str]) -> Result<(), String> {
    let o = Command::new("ip").args(args).output().map_err(|e| format!("running ip (iproute2): {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim()))
    }
}

fn json_line(r: &ConnReport) -> serde_json::Value {
    serde_json::json!({
        "peer": r.peer.to_string(),
        "bytes": r.bytes,
        "sha256": r.sha256_hex(),
        "end": r.end.as_str(),
        "completions": r.completions,
        "aborted": r.aborted,
        "indications": r.indications,
        "acks": r.acks,
        "drops": r.drops,
        "violations": r.violations,
        "seconds": r.duration.as_secs_f64(),
        "gbps": r.bytes as f64 * 8.0 / r.duration.as_secs_f64().max(1e-9) / 1e9,
    })
}

/// The connections that ended: each printed as a JSON line, then summed.
#[derive(Default)]
struct Tally {
    ended: usize,
    bytes: u64,
    violations: usize,
    ends: HashMap<&'static str, usize>,
}

impl Tally {
    fn add(&mut self, r: &ConnReport) {
        println!("{}", json_line(r));
        self.ended += 1;
        self.bytes += r.bytes;
        self.violations += r.violations;
        *self.ends.entry(r.end.as_str()).or_default() += 1;
    }
}

pub fn run(a: &ServeArgs) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("chimney serve: {msg}");
        ExitCode::from(2)
    };
    let (policy, impair) = match crate::args::parse_flags(&a.policy, &a.impair) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    if let Err(e) = chimney_linux::preflight() {
        return fail(e.to_string());
    }
    if a.queues == 0 || a.queues > 64 {
        return fail(format!("--queues must be 1..=64, got {}", a.queues));
    }
    let tuns = match Tun::open_queues(&a.tun, a.policy.offload_with(&impair), a.queues) {
        Ok(t) => t,
        Err(e) => return fail(e.to_string()),
    };
    let v6 = a.local.contains(':');
    let mut setup = vec![
        vec![
            "link".to_string(),
            "set".into(),
            "dev".into(),
            a.tun.clone(),
            "mtu".into(),
            a.mtu.to_string(),
            "up".into(),
        ],
        vec!["addr".into(), "add".into(), a.local.clone(), "dev".into(), a.tun.clone()],
    ];
    if v6 {
        setup[1].push("nodad".into());
    }
    for cmd in &setup {
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        if let Err(e) = ip(&args) {
            return fail(e);
        }
    }
    if let Some(dir) = &a.out {
        if let Err(e) = std::fs::create_dir_all(dir) {
            return fail(format!("creating {}: {e}", dir.display()));
        }
    }
    let cfg = crate::args::driver_config(&a.policy, policy, impair, a.seed, a.listen, a.mtu);
    let capture = match a.pcap.as_deref().map(crate::pcap::open).transpose() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let traces = match a.trace.open_shards(a.queues) {
        Ok(t) => crate::shards::ShardTraces::new(t),
        Err(e) => return fail(e),
    };
    // Streams to files, opened when a connection's first bytes arrive, closed by the shard
    // that served it when the connection ends (connection ids are per shard).
    let serial = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (out, tap) = (a.out.clone(), capture.clone());
    let configure: crate::shards::Configure = Arc::new(move |i, driver| {
        if let Some(c) = &tap {
            driver.set_tap(crate::pcap::tap(c));
        }
        traces.give(i, driver);
        let Some(dir) = out.clone() else {
            return Box::new(|_| {});
        };
        let files: Arc<Mutex<HashMap<ConnId, File>>> = Arc::new(Mutex::new(HashMap::new()));
        let (sink_files, serial) = (Arc::clone(&files), Arc::clone(&serial));
        driver.set_sink(Box::new(move |conn, bytes| {
            let mut map = sink_files.lock().unwrap_or_else(|e| e.into_inner());
            let f = map.entry(conn).or_insert_with(|| {
                let n = serial.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                File::create(dir.join(format!("conn-{n}.bin")))
                    .unwrap_or_else(|_| File::create("/dev/null").expect("/dev/null"))
            });
            let _ = f.write_all(bytes);
        }));
        Box::new(move |r: &ConnReport| {
            files.lock().unwrap_or_else(|e| e.into_inner()).remove(&r.conn);
        })
    });
    let mut shards = match Shards::start(tuns, &cfg, configure) {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    let handler = nix::sys::signal::SigHandler::Handler(on_signal);
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        let _ = nix::sys::signal::signal(nix::sys::signal::Signal::SIGINT, handler);
        let _ = nix::sys::signal::signal(nix::sys::signal::Signal::SIGTERM, handler);
    }
    eprintln!("chimney serve: listening on {} via {} ({}); Ctrl-C to stop", a.listen, a.tun, a.local);
    let t0 = WallClock::now();
    let mut tally = Tally::default();
    let mut reports = Vec::new();
    loop {
        if let Err(e) = shards.step(Duration::from_millis(20), &mut reports) {
            eprintln!("chimney serve: {e}");
            break;
        }
        for r in reports.drain(..) {
            tally.add(&r);
        }
        if STOP.load(Ordering::SeqCst) || (a.connections > 0 && tally.ended >= a.connections) {
            break;
        }
    }
    shards.shutdown(&mut reports);
    if let (Some(d), Some(path)) = (shards.single(), &a.trace.trace) {
        if let Some(Err(e)) = d.finish_trace() {
            eprintln!("chimney serve: writing {}: {e}", path.display());
        }
    }
    let summary = match shards.finish(&mut reports) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chimney serve: {e}");
            DriverSummary::default()
        }
    };
    for r in reports.drain(..) {
        tally.add(&r);
    }
    let all = summary.violations.len();
    let Tally { ended, bytes, violations, ends } = tally;
    if let (Some(c), Some(path)) = (&capture, &a.pcap) {
        if let Err(e) = crate::pcap::finish(c) {
            eprintln!("chimney serve: writing {}: {e}", path.display());
        }
    }
    println!(
        "{}",
        serde_json::json!({"summary": {
            "connections": ended, "bytes": bytes, "seconds": t0.elapsed().as_secs_f64(),
            "violations": all.max(violations), "ends": ends,
            "drops": summary.stats.drop_table().into_iter().map(|(k, v)| (k, serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
            "tcp_offload_stats": crate::report::tcp_stats_json(&summary.stats),
            "ip_offload_stats": crate::report::ip_stats_json(&summary.stats),
            "per_queue_offloads": summary.per_queue_offloads,
        }})
    );
    if all == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
