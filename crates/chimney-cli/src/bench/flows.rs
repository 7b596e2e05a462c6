//! `chimney bench flows`: many concurrent short connections, side by side in one run. N Linux
//! clients connect at once, each sends the same `--bytes` and closes, and waits for the
//! server's close; into (a) a kernel server over a veth pair (epoll, a listen backlog that
//! holds every SYN), (b) `chimney serve` on a TUN device, run as a child process with its
//! defaults. Rounds interleave the two.
//!
//! Measured per run: the total time (first connect to last close, client side), each
//! connection's time, the senders' retransmissions (the client namespace's `RetransSegs`),
//! and for chimney its peak RSS (`VmHWM`), the packets the kernel dropped on the TUN's
//! transmit queue, the streams received exactly and the verifier's violations. Namespaces
//! are anonymous: the kernel removes them and their devices when the process exits.

use std::collections::HashMap;
use std::io::{BufRead, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as WallClock};

use chimney::testkit::digest::{HashKind, StreamDigest};
use chimney_linux::{DriverError, Netns};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrIn};

use super::common::median;

/// `chimney bench flows` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct FlowsArgs {
    /// Concurrent connections, comma-separated for several sizes.
    #[arg(long, value_delimiter = ',', default_values_t = vec![2000usize])]
    pub connections: Vec<usize>,
    /// Bytes each client sends.
    #[arg(long, default_value_t = 64 << 10, value_parser = crate::size::u64_bytes)]
    pub bytes: u64,
    /// Rounds (each runs the kernel and chimney once per size, interleaved).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Extra flags for `chimney serve` (e.g. "--posts 4 --post-size 256K" for the fixed
    /// policy), split at spaces.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub serve_flags: String,
    /// Write every line `chimney serve` printed (one JSON line per connection, the summary)
    /// to FILE, the last run's.
    #[arg(long, value_name = "FILE")]
    pub serve_log: Option<std::path::PathBuf>,
    /// Give up on one run after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Internal: run only the kernel server at ADDR (the benchmark starts it this way in its
    /// own namespace and process).
    #[arg(long, value_name = "ADDR", hide = true)]
    pub kernel_server: Option<SocketAddr>,
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
struct Run {
    seconds: f64,
    per_conn: Vec<f64>,
    /// Clients that sent everything and saw the server's close.
    done: usize,
    errors: Vec<String>,
    retrans: u64,
    /// The retransmissions by kind ([`RETRANS_KINDS`]).
    kinds: [u64; 4],
    /// chimney only.
    rss_bytes: Option<u64>,
    tun_dropped: Option<u64>,
    exact: usize,
    violations: u64,
    /// Segments whose payload was read straight into a posted buffer, of all segments in.
    placed: Option<(u64, u64)>,
}

impl Run {
    fn clean(&self, n: usize, chimney: bool) -> bool {
        self.done == n && self.errors.is_empty() && (!chimney || (self.exact == n && self.violations == 0))
    }
}

/// One client socket's progress.
enum Phase {
    Connecting,
    Sending(usize),
    Waiting,
    Done,
}

/// N clients at once from the calling thread's namespace to `target`: connect, send `data`,
/// shut down the write side, wait for the server's close. Non-blocking sockets on one epoll.
fn clients(target: SocketAddr, n: usize, data: &[u8], limit: Duration) -> Run {
    let mut run = Run::default();
    let SocketAddr::V4(v4) = target else {
        run.errors.push("IPv4 only".into());
        return run;
    };
    let epoll = match Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC) {
        Ok(e) => e,
        Err(e) => {
            run.errors.push(format!("epoll: {e}"));
            return run;
        }
    };
    let t0 = WallClock::now();
    let mut socks: Vec<(TcpStream, Phase, Option<f64>)> = Vec::with_capacity(n);
    for i in 0..n {
        let fd: OwnedFd = match socket::socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        ) {
            Ok(fd) => fd,
            Err(e) => {
                run.errors.push(format!("socket {i}: {e} (raise the open-file limit)"));
                break;
            }
        };
        match socket::connect(fd.as_raw_fd(), &SockaddrIn::from(v4)) {
            Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => {}
            Err(e) => {
                run.errors.push(format!("connect {i}: {e}"));
                continue;
            }
        }
        let s = TcpStream::from(fd);
        if let Err(e) = epoll.add(s.as_fd(), EpollEvent::new(EpollFlags::EPOLLOUT, socks.len() as u64)) {
            run.errors.push(format!("epoll add: {e}"));
            continue;
        }
        socks.push((s, Phase::Connecting, None));
    }
    let mut events = vec![EpollEvent::empty(); 1024];
    let mut sink = vec![0u8; 64 * 1024];
    let mut left = socks.len();
    while left > 0 && t0.elapsed() < limit {
        let k = match epoll.wait(&mut events, 100u16) {
            Ok(k) => k,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                run.errors.push(format!("epoll wait: {e}"));
                break;
            }
        };
        for ev in &events[..k] {
            let i = ev.data() as usize;
            let (s, phase, end) = &mut socks[i];
            loop {
                match phase {
                    Phase::Connecting => match s.take_error() {
                        Ok(None) => *phase = Phase::Sending(0),
                        Ok(Some(e)) | Err(e) => {
                            run.errors.push(format!("connect: {e}"));
                            *phase = Phase::Done;
                            left -= 1;
                            let _ = epoll.delete(s.as_fd());
                        }
                    },
                    Phase::Sending(at) => match s.write(&data[*at..]) {
                        Ok(w) => {
                            *at += w;
                            if *at == data.len() {
                                let _ = s.shutdown(Shutdown::Write);
                                *phase = Phase::Waiting;
                                let mut e = EpollEvent::new(EpollFlags::EPOLLIN, i as u64);
                                let _ = epoll.modify(s.as_fd(), &mut e);
                            }
                            continue;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(e) => {
                            run.errors.push(format!("write: {e}"));
                            *phase = Phase::Done;
                            left -= 1;
                            let _ = epoll.delete(s.as_fd());
                        }
                    },
                    Phase::Waiting => match s.read(&mut sink) {
                        Ok(0) => {
                            *end = Some(t0.elapsed().as_secs_f64());
                            *phase = Phase::Done;
                            left -= 1;
                            run.done += 1;
                            let _ = epoll.delete(s.as_fd());
                        }
                        Ok(_) => continue,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(e) => {
                            run.errors.push(format!("read: {e}"));
                            *phase = Phase::Done;
                            left -= 1;
                            let _ = epoll.delete(s.as_fd());
                        }
                    },
                    Phase::Done => {}
                }
                break;
            }
        }
    }
    if left > 0 {
        run.errors.push(format!("{left} of {n} connections not finished after {} s", limit.as_secs()));
    }
    run.per_conn = socks.iter().filter_map(|(_, _, e)| *e).collect();
    run.seconds = run.per_conn.iter().cloned().fold(0.0, f64::max);
    run
}

/// What the senders' retransmissions were, from the calling thread's namespace (`TcpExt`):
/// tail loss probes, SYNs sent again, retransmission timeouts, fast retransmits.
const RETRANS_KINDS: [&str; 4] = ["TCPLossProbes", "TCPSynRetrans", "TCPTimeouts", "TCPFastRetrans"];

fn retrans_kinds() -> [u64; 4] {
    let text = std::fs::read_to_string("/proc/thread-self/net/netstat").unwrap_or_default();
    let mut ext = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (ext.next(), ext.next()) else { return [0; 4] };
    let map: HashMap<&str, u64> = names
        .split_whitespace()
        .zip(values.split_whitespace())
        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
        .collect();
    RETRANS_KINDS.map(|k| map.get(k).copied().unwrap_or(0))
}

/// `RetransSegs` of the calling thread's network namespace.
fn retrans_segs() -> u64 {
    let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap_or_default();
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (Some(names), Some(values)) = (tcp.next(), tcp.next()) else { return 0 };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(k, _)| *k == "RetransSegs")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Raises this process's open-file limit to what `n` sockets need.
fn raise_nofile(n: usize) -> Result<(), String> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let want = (n + 1024) as u64;
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| e.to_string())?;
    if soft >= want {
        return Ok(());
    }
    if want <= hard {
        return setrlimit(Resource::RLIMIT_NOFILE, want, hard).map_err(|e| format!("raising the open-file limit: {e}"));
    }
    setrlimit(Resource::RLIMIT_NOFILE, want, want).map_err(|e| {
        format!("{n} connections need {want} open files; the hard limit is {hard} and raising it failed ({e})")
    })
}

/// Lets the namespace of the calling thread accept `n` SYNs at once (its own sysctls).
fn roomy_backlog(n: usize) {
    let v = (2 * n).max(4096).to_string();
    for k in ["/proc/sys/net/core/somaxconn", "/proc/sys/net/ipv4/tcp_max_syn_backlog"] {
        let _ = std::fs::write(k, &v);
    }
}

/// The kernel server of `bench flows` (run as a child process in its namespace, so that its
/// sockets count against its own open-file limit): listens on `addr` (a backlog that holds
/// `n` SYNs), reads every stream to its end, closes it; once `n` connections have ended,
/// prints `{"ended", "short"}` (streams that did not carry `expect` bytes) and exits.
pub fn kernel_server(addr: SocketAddr, n: usize, expect: u64) -> ExitCode {
    let fail = |msg: String| crate::error::CliError::new("bench flows (kernel server)", msg).exit();
    if let Err(e) = raise_nofile(n) {
        return fail(e);
    }
    roomy_backlog(n);
    let SocketAddr::V4(v4) = addr else { return fail("IPv4 only".into()) };
    let listener = match (|| -> nix::Result<OwnedFd> {
        let fd = socket::socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_NONBLOCK, None)?;
        socket::setsockopt(&fd, socket::sockopt::ReuseAddr, &true)?;
        socket::bind(fd.as_raw_fd(), &SockaddrIn::from(v4))?;
        // -1: the namespace's somaxconn, raised above for this run.
        socket::listen(&fd, socket::Backlog::MAXALLOWABLE)?;
        Ok(fd)
    })() {
        Ok(fd) => std::net::TcpListener::from(fd),
        Err(e) => return fail(format!("listening on {addr}: {e}")),
    };
    let epoll = match Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC) {
        Ok(e) => e,
        Err(e) => return fail(format!("epoll: {e}")),
    };
    if let Err(e) = epoll.add(listener.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, u64::MAX)) {
        return fail(format!("epoll: {e}"));
    }
    // Ready: the parent starts its clients once it reads this line.
    println!("listening");
    let _ = std::io::stdout().flush();
    let mut conns: HashMap<u64, (TcpStream, u64)> = HashMap::new();
    let (mut next, mut ended, mut short) = (0u64, 0usize, 0usize);
    let mut events = vec![EpollEvent::empty(); 1024];
    let mut buf = vec![0u8; 256 * 1024];
    while ended < n {
        let k = match epoll.wait(&mut events, 1000u16) {
            Ok(k) => k,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return fail(format!("epoll: {e}")),
        };
        for ev in &events[..k] {
            if ev.data() == u64::MAX {
                while let Ok((c, _)) = listener.accept() {
                    let _ = c.set_nonblocking(true);
                    if epoll.add(c.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, next)).is_ok() {
                        conns.insert(next, (c, 0));
                        next += 1;
                    }
                }
                continue;
            }
            let id = ev.data();
            let Some((c, got)) = conns.get_mut(&id) else { continue };
            loop {
                match c.read(&mut buf) {
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Ok(0) | Err(_) => {
                        short += usize::from(*got != expect);
                        let _ = epoll.delete(c.as_fd());
                        conns.remove(&id);
                        ended += 1;
                        break;
                    }
                    Ok(r) => *got += r as u64,
                }
            }
        }
    }
    println!("{}", serde_json::json!({"ended": ended, "short": short}));
    ExitCode::SUCCESS
}

/// (a) The clients into a kernel server over veth: `chimney bench flows --kernel-server`, a
/// child process in the other namespace ([`kernel_server`]).
fn run_kernel(n: usize, data: Arc<Vec<u8>>, limit: Duration) -> Result<Run, DriverError> {
    let (x, y) = super::common::veth_pair(1500)?;
    y.ip(&["link", "set", "lo", "up"])?;
    let addr: SocketAddr = "198.19.0.2:8080".parse().expect("address");
    let exe = std::env::current_exe().map_err(|e| DriverError::os("finding the chimney binary", e))?;
    let args = [
        "bench".to_string(),
        "flows".into(),
        "--kernel-server".into(),
        addr.to_string(),
        "--connections".into(),
        n.to_string(),
        "--bytes".into(),
        data.len().to_string(),
    ];
    let mut child = y
        .run(move || {
            Command::new(exe).args(&args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()
        })?
        .map_err(|e| DriverError::os("starting the kernel server", e))?;
    let mut out = std::io::BufReader::new(child.stdout.take().ok_or(DriverError::new("kernel server", "no stdout"))?);
    let mut line = String::new();
    if out.read_line(&mut line).map_err(|e| DriverError::os("kernel server", e))? == 0 || line.trim() != "listening" {
        let _ = child.wait();
        return Err(DriverError::new("starting the kernel server", format!("it said {:?}", line.trim())));
    }
    let (before, kinds) = (x.run(retrans_segs)?, x.run(retrans_kinds)?);
    let mut run = x.run(move || clients(addr, n, &data, limit))?;
    run.retrans = x.run(retrans_segs)?.saturating_sub(before);
    let after = x.run(retrans_kinds)?;
    run.kinds = std::array::from_fn(|i| after[i].saturating_sub(kinds[i]));
    line.clear();
    let deadline = WallClock::now() + Duration::from_secs(10);
    // The server ends once it has seen every connection end; one that never arrived (a
    // client that failed) leaves it waiting: stop it then.
    while child.try_wait().ok().flatten().is_none() && WallClock::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if child.try_wait().ok().flatten().is_none() {
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL);
        run.errors.push("the kernel server did not see every connection end".into());
    }
    let _ = child.wait();
    let _ = out.read_line(&mut line);
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap_or_default();
    let short = v["short"].as_u64().unwrap_or(0) as usize;
    if short > 0 {
        run.errors.push(format!("{short} streams arrived short at the kernel server"));
    }
    run.exact = run.done - short.min(run.done);
    Ok(run)
}

/// `VmHWM` (peak resident set) of process `pid`, bytes.
fn peak_rss(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 =
        s.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

/// (b) The clients into `chimney serve` (a child process, its defaults plus `flags`) on a
/// TUN device in their namespace.
fn run_chimney(
    n: usize,
    data: Arc<Vec<u8>>,
    flags: &[String],
    limit: Duration,
    log: Option<&std::path::Path>,
) -> Result<Run, DriverError> {
    let ns = Netns::create()?;
    ns.ip(&["link", "set", "lo", "up"])?;
    let exe = std::env::current_exe().map_err(|e| DriverError::os("finding the chimney binary", e))?;
    let mut args: Vec<String> = ["serve", "--tun", "chf0", "--local", "198.18.0.2/24", "--listen", "198.18.0.1:5001"]
        .into_iter()
        .map(String::from)
        .collect();
    args.extend(flags.iter().cloned());
    let mut child = ns
        .run(move || {
            Command::new(exe).args(&args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()
        })?
        .map_err(|e| DriverError::os("starting chimney serve", e))?;
    let pid = child.id();
    // Every line serve prints, read as it comes (serve never waits for us).
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let stdout = child.stdout.take().ok_or(DriverError::new("starting chimney serve", "no stdout"))?;
    let l2 = Arc::clone(&lines);
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            l2.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
    let mut ready = false;
    for _ in 0..200 {
        let up = ns.run(|| {
            Command::new("ip")
                .args(["-4", "addr", "show", "dev", "chf0"])
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default()
        })?;
        if String::from_utf8_lossy(&up).contains("198.18.0.2") {
            ready = true;
            break;
        }
        if let Ok(Some(st)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return Err(DriverError::new("starting chimney serve", format!("exited {st}: {}", err.trim())));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    if !ready {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
        return Err(DriverError::new("starting chimney serve", "its TUN device never came up"));
    }
    let target: SocketAddr = "198.18.0.1:5001".parse().expect("address");
    let (before, kinds) = (ns.run(retrans_segs)?, ns.run(retrans_kinds)?);
    let d2 = Arc::clone(&data);
    let mut run = ns.run(move || {
        roomy_backlog(n);
        clients(target, n, &d2, limit)
    })?;
    run.retrans = ns.run(retrans_segs)?.saturating_sub(before);
    let after = ns.run(retrans_kinds)?;
    run.kinds = std::array::from_fn(|i| after[i].saturating_sub(kinds[i]));
    // Every connection's line, then the peak while serve still runs, then its summary.
    let until = WallClock::now() + Duration::from_secs(30);
    let conn_lines =
        || lines.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|l| l.contains("\"peer\"")).count();
    while conn_lines() < run.done && WallClock::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    run.rss_bytes = peak_rss(pid);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
    let _ = child.wait();
    let _ = reader.join();
    if let Some(path) = log {
        let text = lines.lock().unwrap_or_else(|e| e.into_inner()).join("\n");
        std::fs::write(path, text + "\n").map_err(|e| DriverError::os("writing --serve-log", e))?;
    }
    let want = HashKind::default();
    let mut h = StreamDigest::default();
    h.update(want, &data);
    let digest: String = h.finish(want).iter().map(|b| format!("{b:02x}")).collect();
    for line in lines.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if let Some(s) = v.get("summary") {
            run.violations = s["violations"].as_u64().unwrap_or(0);
            run.tun_dropped = s["tun"]["kernel_tx_dropped"].as_u64();
            run.placed =
                s["direct_placement"]["placed_packets"].as_u64().zip(s["direct_placement"]["segments_in"].as_u64());
        } else if v["digest"] == digest.as_str() && v["end"] == "fin" {
            run.exact += 1;
        }
    }
    Ok(run)
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((s.len() - 1) as f64 * p).round() as usize]
}

/// `chimney bench flows`.
pub fn run(a: &FlowsArgs) -> ExitCode {
    if let Some(addr) = a.kernel_server {
        return kernel_server(addr, a.connections.first().copied().unwrap_or(1), a.bytes);
    }
    let fail = |msg: String| crate::error::CliError::new("bench flows", msg).exit();
    if a.rounds == 0 || a.connections.contains(&0) || a.bytes == 0 {
        return fail("--rounds, --connections and --bytes must be at least 1".into());
    }
    if let Err(e) = chimney_linux::preflight() {
        return fail(format!("{e} (the benchmark needs namespaces, TUN and veth)"));
    }
    let max = a.connections.iter().copied().max().unwrap_or(1);
    if let Err(e) = raise_nofile(max) {
        return fail(e);
    }
    let mut data = vec![0u8; a.bytes as usize];
    chimney::testkit::host::source_pattern(0, &mut data);
    let data = Arc::new(data);
    let flags: Vec<String> = a.serve_flags.split_whitespace().map(String::from).collect();
    let limit = Duration::from_secs(a.timeout.max(1));
    let mut results = Vec::new();
    let mut ok = true;
    for &n in &a.connections {
        let (mut k, mut c) = (Vec::new(), Vec::new());
        for round in 0..a.rounds {
            let kr = match run_kernel(n, Arc::clone(&data), limit) {
                Ok(r) => r,
                Err(e) => return fail(format!("kernel: {e}")),
            };
            let cr = match run_chimney(n, Arc::clone(&data), &flags, limit, a.serve_log.as_deref()) {
                Ok(r) => r,
                Err(e) => return fail(format!("chimney: {e}")),
            };
            for (name, r, chim) in [("kernel", &kr, false), ("chimney", &cr, true)] {
                ok &= r.clean(n, chim);
                if !a.json {
                    eprintln!(
                        "{n} × {} B round {} {name:<8} {:>7.3} s  per connection median {:.3} s p90 {:.3} s max {:.3} s  retrans {}{}{}{}{}",
                        a.bytes,
                        round + 1,
                        r.seconds,
                        pct(&r.per_conn, 0.5),
                        pct(&r.per_conn, 0.9),
                        pct(&r.per_conn, 1.0),
                        if r.retrans > 0 {
                            format!(
                                "{} ({})",
                                r.retrans,
                                RETRANS_KINDS
                                    .iter()
                                    .zip(r.kinds)
                                    .filter(|(_, n)| *n > 0)
                                    .map(|(k, n)| format!("{k} {n}"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        } else {
                            "0".into()
                        },
                        r.rss_bytes.map(|b| format!("  peak RSS {:.1} MB", b as f64 / 1e6)).unwrap_or_default(),
                        r.tun_dropped.map(|d| format!("  TUN drops {d}")).unwrap_or_default(),
                        r.placed.map(|(p, n)| format!("  placed {p} of {n} segments")).unwrap_or_default(),
                        if r.clean(n, chim) {
                            String::new()
                        } else {
                            format!(
                                "  ERRORS: {} done, {} exact, {} violations {:?}",
                                r.done,
                                r.exact,
                                r.violations,
                                r.errors.iter().take(3).collect::<Vec<_>>()
                            )
                        }
                    );
                }
            }
            k.push(kr);
            c.push(cr);
        }
        let med = |v: &[Run], f: &dyn Fn(&Run) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
        let (ks, cs) = (med(&k, &|r| r.seconds), med(&c, &|r| r.seconds));
        let rss = c.iter().filter_map(|r| r.rss_bytes).max().unwrap_or(0);
        let drops: u64 = c.iter().filter_map(|r| r.tun_dropped).sum();
        let (kre, cre): (u64, u64) = (k.iter().map(|r| r.retrans).sum(), c.iter().map(|r| r.retrans).sum());
        results.push(serde_json::json!({
            "connections": n, "bytes": a.bytes, "rounds": a.rounds,
            "kernel_seconds": ks, "chimney_seconds": cs, "chimney_over_kernel": cs / ks.max(1e-9),
            "kernel_per_conn_median": med(&k, &|r| pct(&r.per_conn, 0.5)),
            "kernel_per_conn_p90": med(&k, &|r| pct(&r.per_conn, 0.9)),
            "kernel_per_conn_max": med(&k, &|r| pct(&r.per_conn, 1.0)),
            "chimney_per_conn_max": med(&c, &|r| pct(&r.per_conn, 1.0)),
            "chimney_per_conn_median": med(&c, &|r| pct(&r.per_conn, 0.5)),
            "chimney_per_conn_p90": med(&c, &|r| pct(&r.per_conn, 0.9)),
            "chimney_peak_rss_bytes": rss, "chimney_rss_per_conn": rss as f64 / n as f64,
            "tun_tx_dropped": drops, "kernel_retrans": kre, "chimney_retrans": cre,
            "chimney_retrans_kinds": RETRANS_KINDS.iter().enumerate().map(|(i, k)| (k.to_string(), serde_json::Value::from(c.iter().map(|r| r.kinds[i]).sum::<u64>()))).collect::<serde_json::Map<String, serde_json::Value>>(),
            "chimney_placed_segments": c.iter().filter_map(|r| r.placed).map(|p| p.0).sum::<u64>(),
            "chimney_segments_in": c.iter().filter_map(|r| r.placed).map(|p| p.1).sum::<u64>(),
            "exact": c.iter().map(|r| r.exact).sum::<usize>(), "violations": c.iter().map(|r| r.violations).sum::<u64>(),
        }));
        if !a.json {
            println!(
                "chimney bench flows: {n} × {} B concurrent, {} round(s), medians: kernel {ks:.3} s, chimney {cs:.3} s, time chimney/kernel {:.2}x (lower is better); chimney peak RSS {:.1} MB (÷ connections, fixed overhead included: {:.0} KB), TUN drops {drops}, retransmitted segments kernel {kre} chimney {cre}",
                a.bytes,
                a.rounds,
                cs / ks.max(1e-9),
                rss as f64 / 1e6,
                rss as f64 / n as f64 / 1e3,
            );
        }
    }
    if a.json {
        println!("{}", serde_json::json!({"runs": results, "ok": ok}));
    } else {
        println!("{}", if ok { "every stream exact, no violations" } else { "ERRORS OR VIOLATIONS" });
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
