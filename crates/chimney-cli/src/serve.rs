//! `chimney serve`: the target as a sink server on a TUN device in the current network
//! namespace (start it under `ip netns exec`). One JSON line per connection that ends, a
//! `{"summary": …}` line at exit.

use chimney::testkit::digest::HashKind;
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as WallClock};

use chimney::contract::ConnId;
use chimney_linux::{ConnReport, ShardTraces, Shards, Tun};

use crate::args::{ImpairArgs, PolicyArgs};

/// `chimney serve` flags.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// TUN device to create.
    #[arg(long, default_value = "chim0")]
    pub tun: String,
    /// Address (CIDR) the kernel side of the TUN gets, e.g. 198.18.0.2/24 or fd00::2/64.
    #[arg(long)]
    pub local: crate::args::Cidr,
    /// Address and port the target listens on (inside --local's prefix, same family, not
    /// --local's own address), e.g. 198.18.0.1:5001.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Exit after this many connections have ended (0 = run until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub connections: usize,
    /// Write each connection's stream to DIR/ADDRESS_PORT.bin, named after the peer (e.g.
    /// 198.18.0.2_40120.bin, fd00::2_40120.bin; a later connection from the same address and
    /// port gets ADDRESS_PORT.1.bin, …). An empty connection leaves an empty file; the file
    /// name is in the connection's JSON line (`file`). serve refuses to start when DIR cannot
    /// be written, and stops with an error naming the file when a write fails.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Write every packet the target received and sent to FILE (pcap, raw IP).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// TUN MTU (576..=65535 for IPv4, 1280..=65535 for IPv6).
    #[arg(long, default_value_t = 1500)]
    pub mtu: u32,
    /// TUN queues: a multi-queue device with one engine shard per queue on its own thread
    /// (the kernel steers each flow to one queue).
    #[arg(long, default_value_t = 1)]
    pub queues: usize,
    /// Seed of impairments (ISNs and SYN cookies also mix in a secret from the OS).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// On SIGINT/SIGTERM (or once --connections ended): stop listening (half-open
    /// connections get an RST), close every connection gracefully, wait this many ms for them
    /// to finish, then reset the rest. Their `end` is `shutdown`.
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    pub shutdown_drain_ms: u64,
    /// Echo: every byte received is sent back through the send path; after the peer's FIN,
    /// the rest, then our FIN.
    #[arg(long, conflicts_with_all = ["source", "http"])]
    pub echo: bool,
    /// A minimal HTTP/1.1 server: `GET /N` answers N bytes of the seeded pattern; keep-alive,
    /// pipelining; other requests get 400/404/405 and a close.
    #[arg(long, conflicts_with = "source")]
    pub http: bool,
    /// Send N bytes (suffixes: K, M, KiB, …) of a seeded pattern to each client, then FIN.
    #[arg(long, value_name = "N", value_parser = crate::size::u64_bytes)]
    pub source: Option<u64>,
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

/// `--out DIR`: one file per connection, named after its peer, shared by the shards.
#[derive(Default)]
struct OutDir {
    dir: PathBuf,
    /// File name of each ended connection's stream, by peer, until its JSON line is printed.
    names: HashMap<SocketAddr, String>,
    /// The first write error (serve stops on it).
    error: Option<String>,
}

/// One shard's open stream files (connection ids are per shard).
#[derive(Default)]
struct ShardFiles {
    open: HashMap<ConnId, StreamFile>,
}

/// One connection's stream file; bytes that arrive before the offload is seen wait in
/// `pending`.
#[derive(Default)]
struct StreamFile {
    file: Option<(File, String)>,
    pending: Vec<u8>,
    failed: bool,
}

impl OutDir {
    /// Checks that `dir` exists (creating it) and takes a file: serve refuses to start
    /// otherwise.
    fn check(dir: &std::path::Path) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("--out {}: {e}", dir.display()))?;
        let probe = dir.join(format!(".chimney-write-test-{}", std::process::id()));
        let r = File::create(&probe).and_then(|mut f| f.write_all(b"x"));
        let _ = std::fs::remove_file(&probe);
        r.map_err(|e| format!("--out {} is not writable: {e}", dir.display()))
    }

    /// Creates the stream file for `peer`: ADDRESS_PORT.bin, or ADDRESS_PORT.N.bin when that
    /// name is taken (never overwriting a stream).
    fn create(&mut self, peer: SocketAddr) -> Result<(File, String), String> {
        let base = format!("{}_{}", peer.ip(), peer.port());
        for n in 0..10_000u32 {
            let name = if n == 0 { format!("{base}.bin") } else { format!("{base}.{n}.bin") };
            match File::options().write(true).create_new(true).open(self.dir.join(&name)) {
                Ok(f) => return Ok((f, name)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(format!("creating {}: {e}", self.dir.join(&name).display())),
            }
        }
        Err(format!("creating {}: 10,000 files for this peer already", self.dir.join(base).display()))
    }

    fn fail(&mut self, e: String) {
        self.error.get_or_insert(e);
    }
}

impl StreamFile {
    /// Writes `bytes` (or keeps them until the file is open); the first error goes to `out`.
    fn write(&mut self, bytes: &[u8], out: &Mutex<OutDir>) {
        if self.failed {
            return;
        }
        let Some((f, name)) = self.file.as_mut() else {
            self.pending.extend_from_slice(bytes);
            return;
        };
        if let Err(e) = f.write_all(bytes) {
            self.failed = true;
            let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
            let path = o.dir.join(&*name);
            o.fail(format!("writing {}: {e}", path.display()));
        }
    }

    /// Opens the file for `peer` and writes what was pending.
    fn open(&mut self, peer: SocketAddr, out: &Mutex<OutDir>) {
        if self.file.is_some() || self.failed {
            return;
        }
        let created = out.lock().unwrap_or_else(|e| e.into_inner()).create(peer);
        match created {
            Ok(f) => {
                self.file = Some(f);
                let pending = std::mem::take(&mut self.pending);
                self.write(&pending, out);
            }
            Err(e) => {
                self.failed = true;
                out.lock().unwrap_or_else(|e| e.into_inner()).fail(e);
            }
        }
    }
}

/// Sets up `--out` on one shard's driver: a file per connection opened at its offload,
/// written by the sink, closed (and its name recorded for the JSON line) when it ends.
fn stream_to_files(out: &Arc<Mutex<OutDir>>, driver: &mut chimney_linux::Driver) -> chimney_linux::ReportHook {
    let files: Arc<Mutex<ShardFiles>> = Arc::default();
    let (f1, o1) = (Arc::clone(&files), Arc::clone(out));
    driver.set_on_offload(Box::new(move |conn, peer| {
        f1.lock().unwrap_or_else(|e| e.into_inner()).open.entry(conn).or_default().open(peer, &o1);
    }));
    let (f2, o2) = (Arc::clone(&files), Arc::clone(out));
    driver.set_sink(Box::new(move |conn, bytes| {
        f2.lock().unwrap_or_else(|e| e.into_inner()).open.entry(conn).or_default().write(bytes, &o2);
    }));
    let o3 = Arc::clone(out);
    Box::new(move |r: &ConnReport| {
        let Some(mut sf) = files.lock().unwrap_or_else(|e| e.into_inner()).open.remove(&r.conn) else { return };
        sf.open(r.peer, &o3);
        if let Some((_file, name)) = sf.file.take() {
            o3.lock().unwrap_or_else(|e| e.into_inner()).names.insert(r.peer, name);
        }
    })
}

fn json_line(r: &ConnReport, file: Option<String>) -> serde_json::Value {
    let mut v = serde_json::json!({
        "peer": r.peer.to_string(),
        "bytes": r.bytes,
        "hash": r.hash.name(),
        "digest": r.digest_hex(),
        "sent": r.sent,
        "sent_digest": r.sent_digest_hex(),
        "send_completions": r.send_completions,
        "send_aborted": r.send_aborted,
        "end": r.end.as_str(),
        "completions": r.completions,
        "aborted": r.aborted,
        "indications": r.indications,
        "oob": crate::report::hex(&r.oob),
        "reoffloads": r.reoffloads,
        "acks": r.acks,
        "drops": r.drops,
        "violations": r.violations,
        "seconds": r.duration.as_secs_f64(),
        "gbps": r.bytes as f64 * 8.0 / r.duration.as_secs_f64().max(1e-9) / 1e9,
    });
    if r.hash == HashKind::Sha256 {
        // The field names from before `--hash`, for scripts that read them.
        v["sha256"] = r.digest_hex().into();
        v["sent_sha256"] = r.sent_digest_hex().into();
    }
    if let Some(f) = file {
        v["file"] = f.into();
    }
    v
}

/// The connections that ended: each printed as a JSON line (queued to the writer thread, so
/// that a slow reader of standard output never stalls the data path), then summed.
struct Tally {
    lines: crate::lines::LineWriter,
    ended: usize,
    bytes: u64,
    violations: usize,
    ends: HashMap<&'static str, usize>,
    /// `connect --echo-check`: the digest of what every connection must receive.
    expect: Option<String>,
    /// Connections that did not receive it (or did not end with FIN), and, for `connect`,
    /// ones that never connected.
    inexact: usize,
    /// `connect`: a refused or unreachable peer is a failure.
    client: bool,
}

impl Tally {
    fn add(&mut self, r: &ConnReport, out: Option<&Mutex<OutDir>>) {
        let file = out.and_then(|o| o.lock().unwrap_or_else(|e| e.into_inner()).names.remove(&r.peer));
        let mut line = json_line(r, file);
        if let Some(want) = &self.expect {
            let exact = r.digest_hex() == *want && r.end.as_str() == "fin";
            line["exact"] = exact.into();
            self.inexact += usize::from(!exact);
        } else if self.client && matches!(r.end.as_str(), "refused" | "unreachable") {
            self.inexact += 1;
        }
        self.lines.line(line.to_string());
        self.ended += 1;
        self.bytes += r.bytes;
        self.violations += r.violations;
        *self.ends.entry(r.end.as_str()).or_default() += 1;
    }
}

pub fn run(a: &ServeArgs) -> ExitCode {
    run_as(a, &Mode::default())
}

/// What `chimney connect` adds to a serve run.
#[derive(Default)]
pub struct Mode {
    /// Active opens made at the start (our end, the peer); no listening.
    pub connect: Vec<(SocketAddr, SocketAddr)>,
    /// The SHA-256 (hex) each connection must receive (`--echo-check`).
    pub expect: Option<String>,
}

/// serve's run, or connect's (`mode`).
pub fn run_as(a: &ServeArgs, mode: &Mode) -> ExitCode {
    let what = if mode.connect.is_empty() { "serve" } else { "connect" };
    let fail = |msg: String| crate::error::CliError::new(what, msg).exit();
    let (mut policy, impair) = match crate::args::parse_flags(&a.policy, &a.impair) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    if a.echo {
        policy.send = chimney::testkit::host::SendPolicy::Echo;
    } else if a.http {
        policy.send = chimney::testkit::host::SendPolicy::Http;
    } else if let Some(n) = a.source {
        policy.send = chimney::testkit::host::SendPolicy::Source(n);
    }
    if mode.connect.is_empty() {
        if let Err(e) = a.local.check_listen(a.listen) {
            return fail(e);
        }
    }
    if let Err(e) = crate::args::check_mtu(a.mtu, a.listen.is_ipv6()) {
        return fail(e);
    }
    if a.queues == 0 || a.queues > 64 {
        return fail(format!("--queues must be 1..=64, got {}", a.queues));
    }
    if let Some(dir) = &a.out {
        if let Err(e) = OutDir::check(dir) {
            return fail(e);
        }
    }
    if let Err(e) = chimney_linux::preflight() {
        return fail(e.to_string());
    }
    let tuns = match Tun::open_queues(&a.tun, a.policy.offload_with(&impair), a.queues) {
        Ok(t) => t,
        Err(e) => return fail(e.to_string()),
    };
    let local = format!("{}/{}", a.local.addr, a.local.prefix);
    if let Err(e) = chimney_linux::configure_tun(&a.tun, &local, a.mtu) {
        return fail(e.to_string());
    }
    let mut cfg = crate::args::driver_config(
        &a.policy,
        policy,
        impair,
        a.seed,
        a.listen,
        chimney::wire::Prefix { addr: a.local.addr, len: a.local.prefix },
        a.mtu,
    );
    cfg.shutdown_drain = Duration::from_millis(a.shutdown_drain_ms.max(1));
    if !mode.connect.is_empty() {
        // Only the active opens: nothing is accepted.
        cfg.engine.listen.clear();
        cfg.connect = mode.connect.clone();
    }
    let capture = match a.pcap.as_deref().map(crate::pcap::open).transpose() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let traces = match a.trace.open_shards(a.queues) {
        Ok(t) => ShardTraces::new(t),
        Err(e) => return fail(e),
    };
    // Streams to files, opened when a connection is offloaded, closed by the shard that
    // served it when the connection ends (connection ids are per shard).
    let out: Option<Arc<Mutex<OutDir>>> =
        a.out.clone().map(|dir| Arc::new(Mutex::new(OutDir { dir, ..OutDir::default() })));
    let (files, tap) = (out.clone(), capture.clone());
    let configure: chimney_linux::Configure = Arc::new(move |i, driver| {
        if let Some(c) = &tap {
            driver.set_tap(crate::pcap::tap(c));
        }
        traces.give(i, driver);
        match &files {
            Some(o) => stream_to_files(o, driver),
            None => Box::new(|_| {}),
        }
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
    if mode.connect.is_empty() {
        eprintln!("chimney serve: listening on {} via {} ({local}); Ctrl-C to stop", a.listen, a.tun);
    } else {
        eprintln!(
            "chimney connect: {} connection(s) to {} via {} ({local})",
            mode.connect.len(),
            mode.connect[0].1,
            a.tun
        );
    }
    let t0 = WallClock::now();
    let mut tally = Tally {
        lines: crate::lines::LineWriter::stdout(what),
        ended: 0,
        bytes: 0,
        violations: 0,
        ends: HashMap::new(),
        expect: mode.expect.clone(),
        inexact: 0,
        client: !mode.connect.is_empty(),
    };
    let mut reports = Vec::new();
    let mut failed: Option<String> = None;
    let out_error = || out.as_ref().and_then(|o| o.lock().unwrap_or_else(|e| e.into_inner()).error.clone());
    loop {
        if let Err(e) = shards.step(Duration::from_millis(20), &mut reports) {
            failed = Some(e.to_string());
            break;
        }
        for r in reports.drain(..) {
            tally.add(&r, out.as_deref());
        }
        if let Some(e) = out_error() {
            failed = Some(e);
            break;
        }
        if STOP.load(Ordering::SeqCst) || (a.connections > 0 && tally.ended >= a.connections) {
            break;
        }
    }
    shards.shutdown(&mut reports);
    // Everything that went wrong with what the user asked to keep (streams, trace, pcap):
    // reported after the summary, and the exit status says so.
    let mut errors: Vec<String> = failed.into_iter().collect();
    if let (Some(d), Some(path)) = (shards.single(), &a.trace.trace) {
        if let Some(Err(e)) = d.finish_trace() {
            errors.push(format!("writing {}: {e}", path.display()));
        }
    }
    // Read while the device exists (it goes with the last queue, when the shards finish).
    let tun = chimney_linux::tun_queue_stats(&a.tun);
    let (summary, shard_error) = shards.finish(&mut reports);
    errors.extend(shard_error.map(|e| e.to_string()));
    for r in reports.drain(..) {
        tally.add(&r, out.as_deref());
    }
    if let Some(e) = out_error() {
        if !errors.contains(&e) {
            errors.push(e);
        }
    }
    let all = summary.violations.len();
    let Tally { mut lines, ended, bytes, violations, ends, inexact, .. } = tally;
    if let (Some(c), Some(path)) = (&capture, &a.pcap) {
        if let Err(e) = crate::pcap::finish(c) {
            errors.push(format!("writing {}: {e}", path.display()));
        }
    }
    lines.line(
        serde_json::json!({"summary": {
            "connections": ended, "bytes": bytes, "seconds": t0.elapsed().as_secs_f64(),
            "violations": all.max(violations), "ends": ends,
            "drops": crate::report::table_json(summary.stats.drop_table()),
            "host_path": crate::report::table_json(summary.stats.host_path_table()),
            "host_stack": crate::report::host_stack_json(&summary.host_path),
            "defenses": crate::report::table_json(summary.stats.defense_table()),
            "tcp_offload_stats": crate::report::tcp_stats_json(&summary.stats),
            "ip_offload_stats": crate::report::ip_stats_json(&summary.stats),
            "per_queue_offloads": summary.per_queue_offloads,
            "direct_placement": {
                "placed_packets": summary.stats.placed_packets,
                "segments_in": summary.stats.tcp.in_segments,
            },
            "tun": {
                "name": a.tun,
                "queue_len": tun.map(|t| t.queue_len),
                "kernel_tx_dropped": tun.map(|t| t.tx_dropped),
                "write_dropped": summary.tx_dropped,
            },
        }})
        .to_string(),
    );
    if let Err(e) = lines.finish() {
        errors.push(e);
    }
    if let Some(code) = crate::error::exit_all(what, errors) {
        code
    } else if all == 0 && inexact == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
