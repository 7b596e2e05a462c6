//! `chimney bench e2e`: one Linux kernel TCP connection into (a) the Linux kernel over a veth
//! pair between two namespaces, (b) chimney over a TUN device, (c) smoltcp over the same kind
//! of TUN device, busy-polling with a 1 MiB socket buffer; interleaved for several rounds, at each
//! MTU. Gbit/s is receiver-side (first byte to FIN); CPU is the receiving thread's.
//!
//! Namespaces are anonymous (the kernel removes them, and every device in them, when the
//! process exits, even on failure).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant as WallClock};

use chimney::testkit::rng::SplitMix64;
use chimney_linux::{Driver, DriverError, EndReason, Netns, Tun};

use super::common::{median, veth_pair};

/// `chimney bench e2e` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct E2eArgs {
    /// Bytes per connection.
    #[arg(long, default_value_t = 1 << 30, value_parser = crate::size::u64_bytes)]
    pub bytes: u64,
    /// Rounds (each runs every receiver once per MTU, interleaved).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// MTUs, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1500u32, 65535])]
    pub mtu: Vec<u32>,
    /// Receivers to run, comma-separated: kernel, chimney, smoltcp, and chimney-copy
    /// (chimney without direct placement: the target copies each payload itself); and the
    /// path users run, with an `iperf` 2 client as the sender: kernel-iperf (a kernel
    /// `iperf -s` over veth) and serve (chimney as `serve` runs it, defaults and stream
    /// digest included). Gbit/s is then iperf's own report.
    #[arg(long, value_delimiter = ',', default_values_t = vec!["kernel".to_string(), "chimney".to_string(), "smoltcp".to_string()])]
    pub only: Vec<String>,
    /// chimney's busy-poll window, µs (smoltcp always busy-polls; 0 = chimney sleeps in poll
    /// whenever its queue is empty).
    #[arg(long, default_value_t = 0)]
    pub busy_poll_us: u64,
    /// Pin the receiving thread to CPU 0 and the sending thread to CPU 1 (all receivers
    /// alike).
    #[arg(long)]
    pub pin: bool,
    /// Which way: `recv` (a kernel sender into each receiver) or `send` (the kernel over veth,
    /// and chimney's send path over TUN, each sending into a kernel receiver; smoltcp is not
    /// run). Gbit/s is the kernel receiver's, CPU the sending thread's.
    #[arg(long, value_enum, default_value_t = BenchDirection::Recv)]
    pub direction: BenchDirection,
    /// Concurrent flows (kernel and chimney receivers only): `--bytes` is split across them;
    /// Gbit/s is the aggregate, from the senders' start to the last receiver's end; CPU is
    /// the machine's only.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// TUN queues for chimney with `--connections`: a multi-queue device with one engine
    /// shard per queue on its own thread, as `serve --queues` runs it.
    #[arg(long, default_value_t = 1)]
    pub queues: usize,
    /// The `iperf` client (kernel-iperf and serve) without TCP window scaling
    /// (`net.ipv4.tcp_window_scaling=0` in its own namespace): a 64 KB window, where every
    /// microsecond an ACK waits is throughput lost.
    #[arg(long)]
    pub no_wscale: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// `bench e2e --direction`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchDirection {
    /// Into the receiver under test.
    Recv,
    /// Out of the sender under test.
    Send,
}

/// One measured transfer.
#[derive(Debug, Clone, Copy)]
struct Sample {
    gbps: f64,
    cpu_per_gib: f64,
    ok: bool,
    /// Busy CPU seconds of the whole machine (every core: sender, receiver, softirq) per
    /// GiB, over the run (set-up included: a few milliseconds).
    machine_per_gib: f64,
}

/// Busy CPU time of the whole machine so far, from `/proc/stat` (user, nice, system, irq,
/// softirq and steal ticks of all cores; idle and iowait left out).
fn machine_busy() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else { return Duration::ZERO };
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else { return Duration::ZERO };
    let t: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: u64 = [0usize, 1, 2, 5, 6, 7].iter().filter_map(|&i| t.get(i)).sum();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100).max(1) as u64;
    Duration::from_nanos(busy * 1_000_000_000 / hz)
}

/// Pins the calling thread to `cpu` (modulo the CPUs there are), when `pin` is on: the
/// receiver on one core, the sender on the other, in every mode alike, so the scheduler
/// does not put both on one core for part of a run.
fn pin_to(pin: bool, cpu: usize) {
    if !pin {
        return;
    }
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu % n).is_ok() {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

fn thread_cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32))
        .unwrap_or_default()
}

fn sample(bytes: u64, wall: Duration, cpu: Duration, ok: bool) -> Sample {
    let secs = wall.as_secs_f64().max(1e-9);
    Sample {
        gbps: bytes as f64 * 8.0 / secs / 1e9,
        cpu_per_gib: cpu.as_secs_f64() / (bytes.max(1) as f64 / (1u64 << 30) as f64),
        ok,
        machine_per_gib: 0.0,
    }
}

/// The sender every receiver faces: a kernel TCP socket writing one seeded 1 MiB pattern
/// over and over (no per-byte work on the sending core), then FIN, then waiting for the
/// receiver's FIN.
fn kernel_sender(target: SocketAddr, bytes: u64, pin: bool) -> Result<u64, String> {
    pin_to(pin, 1);
    let mut s = connect_retry(target)?;
    write_pattern(&mut s, bytes).map(|(sent, _)| sent)
}

/// Writes `bytes` of one seeded 1 MiB pattern, over and over, then FIN, then waits (30 s at
/// most) for the receiver's FIN: the bytes written and this thread's CPU for the writing.
fn write_pattern(s: &mut TcpStream, bytes: u64) -> Result<(u64, Duration), String> {
    let mut pattern = vec![0u8; 1 << 20];
    SplitMix64::new(0xBE7C).fill(&mut pattern);
    let cpu0 = thread_cpu();
    let mut sent = 0u64;
    while sent < bytes {
        let n = ((bytes - sent) as usize).min(pattern.len());
        s.write_all(&pattern[..n]).map_err(|e| format!("write: {e}"))?;
        sent += n as u64;
    }
    s.shutdown(Shutdown::Write).map_err(|e| format!("shutdown: {e}"))?;
    let cpu = thread_cpu() - cpu0;
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut sink = [0u8; 64];
    while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
    Ok((sent, cpu))
}

/// An `iperf` 2 client sending `bytes` to `target` from the calling thread's namespace;
/// returns the bits per second it reports (its CSV line's last field).
fn iperf_client(target: SocketAddr, bytes: u64, no_wscale: bool) -> Result<f64, String> {
    if no_wscale {
        // Per namespace: the calling thread is in the client's own.
        std::fs::write("/proc/sys/net/ipv4/tcp_window_scaling", "0")
            .map_err(|e| format!("turning window scaling off in the client's namespace: {e}"))?;
    }
    let mut last = String::new();
    // The server may not be listening yet: a refused connect prints nothing; try again.
    for _ in 0..50 {
        let out = std::process::Command::new("iperf")
            .args(["-c", &target.ip().to_string(), "-p", &target.port().to_string(), "-n", &bytes.to_string()])
            .args(["-y", "C"])
            .output()
            .map_err(|e| format!("running iperf (apt-get install iperf): {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(bps) = text.lines().rev().find_map(|l| l.rsplit(',').next()?.trim().parse::<f64>().ok()) {
            return Ok(bps);
        }
        last = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("iperf reported no rate: {}", last.trim()))
}

/// CPU time of process `pid` so far (user + system, from `/proc/PID/stat`).
fn process_cpu(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return Duration::ZERO };
    // The fields after the command name (which may hold spaces) start at its closing ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // After ')': state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime
    let ticks = f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100).max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

/// `kernel-iperf`: an `iperf` 2 client into a kernel `iperf -s` over veth (the kernel's side
/// of what a user runs). Gbit/s is the client's report; CPU the server process's.
fn run_kernel_iperf(bytes: u64, mtu: u32, no_wscale: bool) -> Result<Sample, DriverError> {
    let (a, b) = veth_pair(mtu)?;
    let target: SocketAddr = "198.19.0.2:5001".parse().expect("address");
    let mut server = b
        .run(|| {
            std::process::Command::new("iperf")
                .args(["-s", "-p", "5001"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
        })?
        .map_err(|e| DriverError::os("starting iperf -s (apt-get install iperf)", e))?;
    let r = a.run(move || iperf_client(target, bytes, no_wscale));
    let cpu = process_cpu(server.id());
    // Ours to end: the server we started, by its PID.
    let _ = server.kill();
    let _ = server.wait();
    let bps = r?.map_err(|e| DriverError::new("benchmark transfer", e))?;
    let secs = bytes as f64 * 8.0 / bps.max(1.0);
    Ok(sample(bytes, Duration::from_secs_f64(secs), cpu, true))
}

/// chimney on a TUN in a fresh namespace: the shipped driver defaults for a link of `mtu`,
/// listening on the namespace's target address, changed by `tweak`.
fn chimney_driver(
    mtu: u32,
    tweak: impl FnOnce(chimney_linux::DriverConfig) -> chimney_linux::DriverConfig,
) -> Result<(Netns, Driver, SocketAddr), DriverError> {
    let ns = Netns::create()?;
    let (mut tuns, target) = ns.tun_network(false, mtu, true, 1)?;
    let tun = tuns.pop().ok_or(DriverError::new("creating the TUN device", "no queue"))?;
    let base = chimney_linux::DriverConfig::default();
    let tcp = chimney::tcp::TcpConfig { mss: chimney_linux::defaults::mss_for(mtu, false), ..base.engine.tcp.clone() };
    let cfg = chimney_linux::DriverConfig {
        engine: chimney::EngineConfig { seed: 1, listen: vec![target], tcp, ..base.engine.clone() },
        ..base
    };
    let driver = Driver::new(tun, tweak(cfg))?;
    Ok((ns, driver, target))
}

/// `serve`: the same `iperf` 2 client into chimney as `serve` runs it, with its defaults (the
/// stream digest included). Gbit/s is the client's report; CPU the driver thread's.
fn run_serve(bytes: u64, mtu: u32, no_wscale: bool) -> Result<Sample, DriverError> {
    let (ns, mut driver, target) = chimney_driver(mtu, |c| c)?;
    let tx = ns.spawn(move || iperf_client(target, bytes, no_wscale))?;
    let (reports, cpu) = drive_to_first_report(&mut driver)?;
    let bps = join(tx)?;
    let r = reports.first().ok_or(DriverError::new("benchmark", "no connection ended"))?;
    // iperf 2 sends a small header before its payload.
    let ok = r.end == EndReason::Fin && r.bytes >= bytes && r.violations == 0 && driver.violations().is_empty();
    let secs = bytes as f64 * 8.0 / bps.max(1.0);
    Ok(sample(bytes, Duration::from_secs_f64(secs), cpu, ok))
}

/// `n` kernel senders at once into `target`, `bytes` in all: the total they wrote, and the wall
/// time from their start to the last one's end (its receiver's FIN).
fn kernel_senders(target: SocketAddr, bytes: u64, n: usize) -> Result<(u64, Duration), String> {
    let t0 = WallClock::now();
    let each = bytes / n as u64;
    let senders: Vec<_> = (0..n).map(|_| std::thread::spawn(move || kernel_sender(target, each, false))).collect();
    let mut sent = 0;
    for h in senders {
        sent += h.join().map_err(|_| "a sender panicked".to_string())??;
    }
    Ok((sent, t0.elapsed()))
}

/// `--connections N`, kernel → kernel over veth: N senders, a reader thread per accepted
/// connection.
fn run_kernel_flows(bytes: u64, mtu: u32, n: usize) -> Result<Sample, DriverError> {
    let (a, b) = veth_pair(mtu)?;
    let target: SocketAddr = "198.19.0.2:5001".parse().expect("address");
    let listener = b.run(move || TcpListener::bind(target))?.map_err(|e| DriverError::os("binding the receiver", e))?;
    let rx = b.spawn(move || -> Result<u64, String> {
        let mut readers = Vec::new();
        for _ in 0..n {
            let (mut c, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
            readers.push(std::thread::spawn(move || read_to_eof(&mut c).map(|(got, _)| got)));
        }
        let mut got = 0;
        for r in readers {
            got += r.join().map_err(|_| "a reader panicked".to_string())??;
        }
        Ok(got)
    })?;
    let tx = a.spawn(move || kernel_senders(target, bytes, n))?;
    let (sent, wall) = join(tx)?;
    let got = join(rx)?;
    Ok(sample(got, wall, Duration::ZERO, got == sent && sent == bytes / n as u64 * n as u64))
}

/// `--connections N --queues Q`, kernel → chimney over a Q-queue TUN, one engine shard per
/// queue (the shipped defaults, hashing off).
fn run_chimney_flows(bytes: u64, mtu: u32, n: usize, queues: usize) -> Result<Sample, DriverError> {
    let ns = Netns::create()?;
    let (tuns, target) = ns.tun_network(false, mtu, true, queues)?;
    let base = chimney_linux::DriverConfig::default();
    let tcp = chimney::tcp::TcpConfig { mss: chimney_linux::defaults::mss_for(mtu, false), ..base.engine.tcp.clone() };
    let cfg = chimney_linux::DriverConfig {
        engine: chimney::EngineConfig { seed: 1, listen: vec![target], tcp, ..base.engine.clone() },
        hash: chimney::testkit::digest::HashKind::None,
        ..base
    };
    let configure: chimney_linux::Configure = std::sync::Arc::new(|_, _| Box::new(|_| {}));
    let mut shards = chimney_linux::Shards::start(tuns, &cfg, configure)?;
    let tx = ns.spawn(move || kernel_senders(target, bytes, n))?;
    let deadline = WallClock::now() + Duration::from_secs(600);
    let mut reports = Vec::new();
    while reports.len() < n && WallClock::now() < deadline {
        shards.step(Duration::from_millis(5), &mut reports)?;
    }
    let (sent, wall) = join(tx)?;
    let (_, err) = shards.finish(&mut reports);
    if let Some(e) = err {
        return Err(e);
    }
    let got: u64 = reports.iter().map(|r| r.bytes).sum();
    let ok = reports.len() == n
        && reports.iter().all(|r| r.end == EndReason::Fin && r.violations == 0)
        && got == sent
        && sent == bytes / n as u64 * n as u64;
    Ok(sample(got, wall, Duration::ZERO, ok))
}

fn connect_retry(target: SocketAddr) -> Result<TcpStream, String> {
    let mut last = String::new();
    for _ in 0..100 {
        match TcpStream::connect_timeout(&target, Duration::from_secs(5)) {
            Ok(s) => return Ok(s),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("connect {target}: {last}"))
}

/// (a) kernel → kernel over a veth pair between two fresh namespaces.
fn run_kernel(bytes: u64, mtu: u32, pin: bool) -> Result<Sample, DriverError> {
    let (a, b) = veth_pair(mtu)?;
    let target: SocketAddr = "198.19.0.2:5001".parse().expect("address");
    let listener = b.run(move || TcpListener::bind(target))?.map_err(|e| DriverError::os("binding the receiver", e))?;
    let rx = b.spawn(move || -> Result<(u64, Duration, Duration), String> {
        pin_to(pin, 0);
        let (mut c, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
        let cpu0 = thread_cpu();
        let (n, wall) = read_to_eof(&mut c)?;
        let cpu = thread_cpu() - cpu0;
        drop(c);
        Ok((n, wall, cpu))
    })?;
    let tx = a.spawn(move || kernel_sender(target, bytes, pin))?;
    let sent = join(tx)?;
    let (n, wall, cpu) = join(rx)?;
    Ok(sample(n, wall, cpu, n == sent && n == bytes))
}

fn join<T>(h: std::thread::JoinHandle<Result<Result<T, String>, DriverError>>) -> Result<T, DriverError> {
    h.join()
        .map_err(|_| DriverError::new("benchmark", "thread panicked"))??
        .map_err(|e| DriverError::new("benchmark transfer", e))
}

/// (b) kernel → chimney over TUN: the demo's driver with default policy (posted buffers),
/// verifier on, hashing off.
fn run_chimney(bytes: u64, mtu: u32, busy_poll_us: u64, pin: bool, direct: bool) -> Result<Sample, DriverError> {
    // The shipped defaults (what `demo` runs), for this link, hashing off.
    let (ns, mut driver, target) = chimney_driver(mtu, |c| chimney_linux::DriverConfig {
        busy_poll: Duration::from_micros(busy_poll_us),
        direct_placement: direct,
        hash: chimney::testkit::digest::HashKind::None,
        ..c
    })?;
    let tx = ns.spawn(move || kernel_sender(target, bytes, pin))?;
    pin_to(pin, 0);
    let (reports, cpu) = drive_to_first_report(&mut driver)?;
    let sent = join(tx)?;
    let r = reports.first().ok_or(DriverError::new("benchmark", "no connection ended"))?;
    let ok = r.end == EndReason::Fin && r.bytes == sent && r.violations == 0 && driver.violations().is_empty();
    Ok(sample(r.bytes, r.duration, cpu, ok))
}

/// Runs the driver until a connection ends (10 minutes at most): the reports, and the CPU
/// this thread spent.
fn drive_to_first_report(driver: &mut Driver) -> Result<(Vec<chimney_linux::ConnReport>, Duration), DriverError> {
    let cpu0 = thread_cpu();
    let deadline = WallClock::now() + Duration::from_secs(600);
    let mut reports = Vec::new();
    while reports.is_empty() && WallClock::now() < deadline {
        driver.step(Duration::from_millis(5))?;
        reports.extend(driver.take_reports());
    }
    Ok((reports, thread_cpu() - cpu0))
}

/// A kernel TCP receiver: connects to `target`, reads to the end; (bytes, wall from the first
/// byte to EOF).
fn kernel_reader(target: SocketAddr, pin: bool) -> Result<(u64, Duration), String> {
    pin_to(pin, 1);
    let mut s = connect_retry(target)?;
    let _ = s.shutdown(Shutdown::Write);
    read_to_eof(&mut s)
}

/// Reads `s` to its end: the bytes, and the wall time from the first read's return to EOF.
fn read_to_eof(s: &mut impl Read) -> Result<(u64, Duration), String> {
    let mut buf = vec![0u8; 1 << 20];
    let (mut n, mut t0) = (0u64, None);
    loop {
        let k = s.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if t0.is_none() {
            t0 = Some(WallClock::now());
        }
        if k == 0 {
            break;
        }
        n += k as u64;
    }
    Ok((n, t0.map_or(Duration::ZERO, |t: WallClock| t.elapsed())))
}

/// `--direction send`, kernel → kernel over veth: the accepted socket sends (its thread's CPU
/// is measured), a kernel reader in the other namespace receives.
fn run_kernel_send(bytes: u64, mtu: u32, pin: bool) -> Result<Sample, DriverError> {
    let (a, b) = veth_pair(mtu)?;
    let target: SocketAddr = "198.19.0.2:5001".parse().expect("address");
    let listener = b.run(move || TcpListener::bind(target))?.map_err(|e| DriverError::os("binding the sender", e))?;
    let tx = b.spawn(move || -> Result<(u64, Duration), String> {
        pin_to(pin, 0);
        let (mut c, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
        write_pattern(&mut c, bytes)
    })?;
    let rx = a.spawn(move || kernel_reader(target, pin))?;
    let (n, wall) = join(rx)?;
    let (sent, cpu) = join(tx)?;
    Ok(sample(n, wall, cpu, n == sent && n == bytes))
}

/// `--direction send`, chimney → kernel over TUN: `serve --source` (the shipped defaults,
/// verifier on, GSO writes) into a kernel reader; the driver thread's CPU is measured.
fn run_chimney_send(bytes: u64, mtu: u32, busy_poll_us: u64, pin: bool) -> Result<Sample, DriverError> {
    let (ns, mut driver, target) = chimney_driver(mtu, |c| {
        let policy = chimney::testkit::host::AppPolicy {
            send: chimney::testkit::host::SendPolicy::Source(bytes),
            ..c.policy.clone()
        };
        chimney_linux::DriverConfig {
            busy_poll: Duration::from_micros(busy_poll_us),
            hash: chimney::testkit::digest::HashKind::None,
            policy,
            ..c
        }
    })?;
    let rx = ns.spawn(move || kernel_reader(target, pin))?;
    pin_to(pin, 0);
    let (reports, cpu) = drive_to_first_report(&mut driver)?;
    let (n, wall) = join(rx)?;
    let r = reports.first().ok_or(DriverError::new("benchmark", "no connection ended"))?;
    let ok =
        r.end == EndReason::Fin && r.sent == bytes && n == bytes && r.violations == 0 && driver.violations().is_empty();
    Ok(sample(n, wall, cpu, ok))
}

/// (c) kernel → smoltcp over TUN, busy-polling, 1 MiB socket buffer, the application reading
/// every byte into its own buffer.
fn run_smoltcp(bytes: u64, mtu: u32, pin: bool) -> Result<Sample, DriverError> {
    use smoltcp::iface::{Config, Interface, SocketSet};
    use smoltcp::socket::tcp;
    use smoltcp::time::Instant as SInstant;
    use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};
    let ns = Netns::create()?;
    // smoltcp reads plain packets: no virtio_net_hdr, no GSO.
    let (mut tuns, target) = ns.tun_network(false, mtu, false, 1)?;
    let tun = tuns.pop().ok_or(DriverError::new("creating the TUN device", "no queue"))?;
    let mut dev = TunDevice { tun, mtu: mtu as usize, buf: vec![0; 65536 + 64] };
    let t0 = WallClock::now();
    let now = || SInstant::from_micros(t0.elapsed().as_micros() as i64);
    let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut dev, now());
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::new(IpAddress::v4(198, 18, 0, 1), 24));
    });
    let mut sockets = SocketSet::new(Vec::new());
    let rxb = tcp::SocketBuffer::new(vec![0; 1 << 20]);
    let txb = tcp::SocketBuffer::new(vec![0; 4096]);
    let mut sock = tcp::Socket::new(rxb, txb);
    sock.listen(5001).map_err(|e| DriverError::new("smoltcp listen", format!("{e:?}")))?;
    let h = sockets.add(sock);
    let tx = ns.spawn(move || kernel_sender(target, bytes, pin))?;
    pin_to(pin, 0);
    let mut app = vec![0u8; 1 << 20];
    let (mut got, mut first, mut closed) = (0u64, None, false);
    let cpu0 = thread_cpu();
    let deadline = WallClock::now() + Duration::from_secs(600);
    while WallClock::now() < deadline {
        iface.poll(now(), &mut dev, &mut sockets);
        let s = sockets.get_mut::<tcp::Socket>(h);
        while s.can_recv() {
            match s.recv_slice(&mut app) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if first.is_none() {
                        first = Some(WallClock::now());
                    }
                    got += n as u64;
                }
            }
        }
        if got > 0 && !s.may_recv() {
            if !closed {
                s.close();
                closed = true;
            }
            if matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait | tcp::State::LastAck) {
                iface.poll(now(), &mut dev, &mut sockets);
                break;
            }
        }
    }
    let wall = first.map_or(Duration::ZERO, |t| t.elapsed());
    let cpu = thread_cpu() - cpu0;
    // Let the sender see our FIN (or time out) before the namespace goes.
    for _ in 0..200 {
        iface.poll(now(), &mut dev, &mut sockets);
        if tx.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let sent = join(tx)?;
    Ok(sample(got, wall, cpu, got == sent && got == bytes))
}

/// smoltcp's view of our TUN: one packet per token, non-blocking.
struct TunDevice {
    tun: Tun,
    mtu: usize,
    buf: Vec<u8>,
}

struct SRx(Vec<u8>);
struct STx<'a>(&'a mut Tun);

impl smoltcp::phy::RxToken for SRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl smoltcp::phy::TxToken for STx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut v = vec![0; len];
        let r = f(&mut v);
        let _ = self.0.send(&v);
        r
    }
}

impl smoltcp::phy::Device for TunDevice {
    type RxToken<'a> = SRx;
    type TxToken<'a> = STx<'a>;

    fn receive(&mut self, _t: smoltcp::time::Instant) -> Option<(SRx, STx<'_>)> {
        match self.tun.recv(&mut self.buf) {
            Ok(Some(n)) => Some((SRx(self.buf[..n].to_vec()), STx(&mut self.tun))),
            _ => None,
        }
    }

    fn transmit(&mut self, _t: smoltcp::time::Instant) -> Option<STx<'_>> {
        Some(STx(&mut self.tun))
    }

    fn capabilities(&self) -> smoltcp::phy::DeviceCapabilities {
        let mut c = smoltcp::phy::DeviceCapabilities::default();
        c.medium = smoltcp::phy::Medium::Ip;
        c.max_transmission_unit = self.mtu;
        c
    }
}

/// `chimney bench e2e`.
pub fn run(a: &E2eArgs) -> ExitCode {
    let fail = |msg: String| crate::error::CliError::new("bench e2e", msg).exit();
    for w in &a.only {
        if !["kernel", "chimney", "chimney-copy", "smoltcp", "kernel-iperf", "serve"].contains(&w.as_str()) {
            return fail(format!(
                "--only: unknown receiver {w:?} (kernel, chimney, chimney-copy, smoltcp, kernel-iperf, serve)"
            ));
        }
    }
    if a.rounds == 0 || a.bytes == 0 {
        return fail("--rounds and --bytes must be at least 1".into());
    }
    if a.no_wscale && a.only.iter().any(|w| w != "kernel-iperf" && w != "serve") {
        return fail("--no-wscale applies to the iperf receivers: use --only kernel-iperf,serve".into());
    }
    if a.connections == 0 || a.connections > 1024 || a.queues == 0 || a.queues > 64 {
        return fail("--connections must be 1..=1024 and --queues 1..=64".into());
    }
    let flows = a.connections > 1 || a.queues > 1;
    let default_only = a.only == ["kernel", "chimney", "smoltcp"];
    if flows
        && (a.direction == BenchDirection::Send
            || (!default_only && a.only.iter().any(|w| w != "kernel" && w != "chimney")))
    {
        return fail("--connections and --queues run the receive direction with kernel and chimney only".into());
    }
    if a.direction == BenchDirection::Send && a.only.iter().any(|w| w != "kernel" && w != "chimney") {
        if a.only == ["kernel", "chimney", "smoltcp"] {
            // The default receiver list: smoltcp has no send side here.
        } else {
            return fail("--direction send runs kernel and chimney only".into());
        }
    }
    let only: Vec<String> = if a.direction == BenchDirection::Send || flows {
        a.only.iter().filter(|w| *w == "kernel" || *w == "chimney").cloned().collect()
    } else {
        a.only.clone()
    };
    let a = &E2eArgs { only, ..a.clone() };
    if let Some(m) = a.mtu.iter().find(|&&m| !(576..=65535).contains(&m)) {
        return fail(format!("--mtu {m}: must be 576..=65535"));
    }
    if let Err(e) = chimney_linux::preflight() {
        return fail(format!("{e} (the benchmark needs namespaces and TUN devices)"));
    }
    let mut results: Vec<(u32, String, Vec<Sample>)> = Vec::new();
    for &mtu in &a.mtu {
        for w in &a.only {
            results.push((mtu, w.clone(), Vec::new()));
        }
    }
    for round in 0..a.rounds {
        for &mtu in &a.mtu {
            for w in &a.only {
                let send = a.direction == BenchDirection::Send;
                let busy0 = machine_busy();
                let r = match w.as_str() {
                    "kernel" if flows => run_kernel_flows(a.bytes, mtu, a.connections),
                    "chimney" if flows => run_chimney_flows(a.bytes, mtu, a.connections, a.queues),
                    "kernel" if send => run_kernel_send(a.bytes, mtu, a.pin),
                    "chimney" if send => run_chimney_send(a.bytes, mtu, a.busy_poll_us, a.pin),
                    "kernel" => run_kernel(a.bytes, mtu, a.pin),
                    "chimney" => run_chimney(a.bytes, mtu, a.busy_poll_us, a.pin, true),
                    "chimney-copy" => run_chimney(a.bytes, mtu, a.busy_poll_us, a.pin, false),
                    "kernel-iperf" => run_kernel_iperf(a.bytes, mtu, a.no_wscale),
                    "serve" => run_serve(a.bytes, mtu, a.no_wscale),
                    _ => run_smoltcp(a.bytes, mtu, a.pin),
                };
                let mut s = match r {
                    Ok(s) => s,
                    Err(e) => return fail(format!("{w} at MTU {mtu}: {e}")),
                };
                s.machine_per_gib =
                    (machine_busy() - busy0).as_secs_f64() / (a.bytes.max(1) as f64 / (1u64 << 30) as f64);
                if !a.json {
                    eprintln!(
                        "round {} MTU {mtu:>5} {w:<8} {:>7.2} Gbit/s {:>6.3} CPU s/GiB {:>6.3} machine CPU s/GiB{}",
                        round + 1,
                        s.gbps,
                        s.cpu_per_gib,
                        s.machine_per_gib,
                        if s.ok { "" } else { "  TRANSFER NOT VERIFIED" }
                    );
                }
                if let Some(slot) = results.iter_mut().find(|(m, n, _)| *m == mtu && n == w) {
                    slot.2.push(s);
                }
            }
        }
    }
    let med = |mtu: u32, w: &str| -> Option<(f64, f64, f64)> {
        results.iter().find(|(m, n, _)| *m == mtu && n == w).map(|(_, _, v)| {
            (
                median(&v.iter().map(|s| s.gbps).collect::<Vec<_>>()),
                median(&v.iter().map(|s| s.cpu_per_gib).collect::<Vec<_>>()),
                median(&v.iter().map(|s| s.machine_per_gib).collect::<Vec<_>>()),
            )
        })
    };
    let all_ok = results.iter().all(|(_, _, v)| v.iter().all(|s| s.ok));
    let mut rows = Vec::new();
    for &mtu in &a.mtu {
        let mut row = serde_json::Map::new();
        row.insert("mtu".into(), mtu.into());
        for w in &a.only {
            if let Some((g, c, m)) = med(mtu, w) {
                row.insert(format!("{w}_gbps"), g.into());
                row.insert(format!("{w}_cpu_s_per_gib"), c.into());
                row.insert(format!("{w}_machine_cpu_s_per_gib"), m.into());
            }
        }
        let c = med(mtu, "chimney").map(|x| x.0);
        if let (Some(c), Some(k)) = (c, med(mtu, "kernel").map(|x| x.0)) {
            row.insert("chimney_over_kernel".into(), (c / k).into());
        }
        if let (Some(c), Some(s)) = (c, med(mtu, "smoltcp").map(|x| x.0)) {
            row.insert("chimney_over_smoltcp".into(), (c / s).into());
        }
        if let (Some(c), Some(s)) = (c, med(mtu, "chimney-copy").map(|x| x.0)) {
            row.insert("direct_over_copy".into(), (c / s).into());
        }
        if let (Some(c), Some(k)) = (med(mtu, "serve").map(|x| x.0), med(mtu, "kernel-iperf").map(|x| x.0)) {
            row.insert("serve_over_kernel_iperf".into(), (c / k).into());
        }
        rows.push(serde_json::Value::Object(row));
    }
    if a.json {
        let dir = if a.direction == BenchDirection::Send { "send" } else { "recv" };
        let v = serde_json::json!({
            "bytes": a.bytes,
            "rounds": a.rounds,
            "direction": dir,
            "connections": a.connections,
            "queues": a.queues,
            "no_wscale": a.no_wscale,
            "ok": all_ok,
            "results": rows,
        });
        println!("{v}");
    } else {
        let what = if a.direction == BenchDirection::Send {
            "each sender into one kernel TCP receiver (CPU: the sending thread's)".to_string()
        } else if flows {
            format!(
                "{} kernel TCP connections at once into each receiver, chimney on {} queue(s) (aggregate; CPU: the machine's)",
                a.connections, a.queues
            )
        } else {
            "one kernel TCP connection into each receiver (CPU: the receiving thread's)".to_string()
        };
        println!("chimney bench e2e: {what}, {} bytes, {} round(s), medians", a.bytes, a.rounds);
        for r in &rows {
            let f = |k: &str| r.get(k).and_then(|v| v.as_f64());
            let mut line = format!("MTU {:>5}:", r["mtu"]);
            for w in &a.only {
                if let (Some(g), Some(c)) = (f(&format!("{w}_gbps")), f(&format!("{w}_cpu_s_per_gib"))) {
                    let m = f(&format!("{w}_machine_cpu_s_per_gib")).unwrap_or(0.0);
                    line += &format!("  {w} {g:.2} Gbit/s ({c:.2} CPU s/GiB, machine {m:.2})");
                }
            }
            if let Some(x) = f("chimney_over_kernel") {
                line += &format!("  chimney/kernel {x:.2}x");
            }
            if let Some(x) = f("chimney_over_smoltcp") {
                line += &format!("  chimney/smoltcp {x:.2}x");
            }
            if let Some(x) = f("direct_over_copy") {
                line += &format!("  direct/copy {x:.2}x");
            }
            if let Some(x) = f("serve_over_kernel_iperf") {
                line += &format!("  serve/kernel-iperf {x:.2}x");
            }
            println!("{line}");
        }
        println!("{}", if all_ok { "every transfer verified" } else { "SOME TRANSFERS WERE NOT VERIFIED" });
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
