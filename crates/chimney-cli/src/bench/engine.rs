//! `chimney bench engine`: no I/O. One connection's pre-built segment trace (MSS 1448 and
//! 64 KB super-packets, in order and with 1 % of neighbours swapped) goes through
//! (a) the engine with the verifier into posted buffers (what ships), (b) the engine without
//! the verifier, (c) a plain memcpy of the same payload bytes, (d) smoltcp fed the same trace
//! through its `Device` trait with the application reading it out. Same run, interleaved,
//! medians of the rounds.

use std::hint::black_box;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant as WallClock};

use chimney::contract::{Delivery, DeliveryConfig, InitiateOffload, ReceiveInput, SendInput, Verifier, VerifierMode};
use chimney::engine::{Engine, EngineConfig};
use chimney::tcp::TcpConfig;
use chimney::testkit::host::{AppHost, AppPolicy};
use chimney::testkit::rng::SplitMix64;
use chimney::wire::{self, flags, Flags};
use chimney::Instant;

/// `chimney bench engine` flags.
#[derive(clap::Args, Debug)]
pub struct EngineArgs {
    /// Payload bytes per trace.
    #[arg(long, default_value_t = 64 << 20, value_parser = crate::size::u64_bytes)]
    pub bytes: u64,
    /// Rounds (medians are printed).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Only these traces (comma-separated: mss1448, mss1448_reorder1pct, mss1448_psh64k,
    /// gso64k, gso64k_reorder1pct); default all.
    #[arg(long, value_delimiter = ',')]
    pub trace: Vec<String>,
    /// Only these receivers (comma-separated: chimney, chimney_no_verifier, memcpy, smoltcp);
    /// default all. Ratios need chimney with memcpy or smoltcp.
    #[arg(long, value_delimiter = ',')]
    pub receiver: Vec<String>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

const PEER: &str = "198.18.0.2:40000";
const TARGET: &str = "198.18.0.1:5001";
const PEER_ISN: u32 = 0x1000_0000;
const HEADER: usize = 20 + 20 + 12;

/// A trace shape.
#[derive(Clone, Copy)]
struct Shape {
    name: &'static str,
    seg: usize,
    reorder: bool,
    /// PSH on every this many segments (1: every segment, the worst case: each one
    /// completes the head request and the host re-posts).
    psh_every: usize,
}

const SHAPES: [Shape; 5] = [
    Shape { name: "mss1448", seg: 1448, reorder: false, psh_every: 1 },
    Shape { name: "mss1448_reorder1pct", seg: 1448, reorder: true, psh_every: 1 },
    // What a Linux sender puts on the wire: PSH once per TSO burst (~64 KB, 45 segments).
    Shape { name: "mss1448_psh64k", seg: 1448, reorder: false, psh_every: 45 },
    Shape { name: "gso64k", seg: 65536 - HEADER - 16, reorder: false, psh_every: 1 },
    Shape { name: "gso64k_reorder1pct", seg: 65536 - HEADER - 16, reorder: true, psh_every: 1 },
];

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

fn packet(seq: u32, ack: u32, fl: Flags, tsval: u32, payload: &[u8]) -> Vec<u8> {
    super::common::peer(addr(TARGET), addr(PEER), PEER_ISN, Some(tsval)).segment_acking(seq, ack, fl, payload)
}

/// The data segments of one trace, acknowledging `iss + 1`; payload is the seeded stream.
fn trace(shape: Shape, bytes: u64, iss: u32) -> Vec<Vec<u8>> {
    let mut data = vec![0u8; shape.seg];
    let mut rng = SplitMix64::new(7);
    let mut out = Vec::new();
    let mut off = 0u64;
    let mut ts = 1000u32;
    while off < bytes {
        let n = ((bytes - off) as usize).min(shape.seg);
        rng.fill(&mut data[..n]);
        ts += 1;
        let seq = PEER_ISN.wrapping_add(1).wrapping_add(off as u32);
        let last = off + n as u64 >= bytes;
        let psh = if (out.len() + 1) % shape.psh_every == 0 || last { flags::PSH } else { Flags::NONE };
        out.push(packet(seq, iss.wrapping_add(1), flags::ACK | psh, ts, &data[..n]));
        off += n as u64;
    }
    if shape.reorder {
        let mut r = SplitMix64::new(11);
        let mut i = 0;
        while i + 1 < out.len() {
            if r.below(100) == 0 {
                out.swap(i, i + 1);
                i += 2;
            } else {
                i += 1;
            }
        }
    }
    out
}

/// One timed pass: (nanoseconds, payload bytes delivered).
type Pass = Result<(Duration, u64), String>;

fn chimney_pass<D: InitiateOffload + ReceiveInput + SendInput>(shape: Shape, bytes: u64, delivery: D) -> Pass {
    let tcp = TcpConfig { rcv_wnd: 4 << 20, defer_acks: true, max_ack_defer: 64, ..TcpConfig::default() };
    let mut engine =
        Engine::new(EngineConfig { seed: 1, listen: vec![addr(TARGET)], tcp, ..EngineConfig::default() }, delivery);
    let mut host = AppHost::new();
    host.record = false;
    let mut now = Instant::ZERO;
    let mut out = Vec::new();
    let mut peer = super::common::peer(addr(TARGET), addr(PEER), PEER_ISN, Some(999));
    let conn = peer.handshake(now, &mut engine, &mut host)?;
    let iss = peer.iss;
    host.set_policy(
        conn,
        AppPolicy { keep_posted: 4, post_size: 256 << 10, repost_in_completion: true, ..AppPolicy::default() },
    );
    host.top_up(now, conn, &mut engine).map_err(|e| format!("post: {e:?}"))?;
    let pkts = trace(shape, bytes, iss);
    let checksum = if shape.seg <= 1500 { wire::TcpChecksum::Verify } else { wire::TcpChecksum::VouchedByKernel };
    let t0 = WallClock::now();
    // As the TUN driver does: a read batch of up to 32 packets, then one ACK flush. The
    // first packet goes alone: the SYN-ACK offered only 64 KB (a window is never scaled in
    // a SYN), and its ACK opens the full window, as a real sender would wait for.
    let (first, rest) = pkts.split_at(1);
    for batch in std::iter::once(first).chain(rest.chunks(32)) {
        now = now + Duration::from_micros(1);
        for p in batch {
            engine.handle_packet_with(now, p, checksum, &mut host);
        }
        engine.flush_acks(now, &mut host);
        while engine.poll_transmit(&mut out) {}
        if engine.poll_timeout().is_some_and(|t| t <= now) {
            engine.handle_timeout(now, &mut host);
        }
    }
    let el = t0.elapsed();
    // `stats()` already sums the live connection's counters.
    Ok((el, engine.stats().delivered_bytes))
}

fn memcpy_pass(shape: Shape, bytes: u64) -> Pass {
    let pkts = trace(shape, bytes, 0);
    let mut ring = vec![0u8; 256 << 10];
    let mut at = 0usize;
    let mut total = 0u64;
    let t0 = WallClock::now();
    for p in &pkts {
        let payload = &p[HEADER..];
        if at + payload.len() > ring.len() {
            at = 0;
        }
        ring[at..at + payload.len()].copy_from_slice(payload);
        at += payload.len();
        total += payload.len() as u64;
        black_box(&ring);
    }
    Ok((t0.elapsed(), total))
}

/// smoltcp's view of the trace: packets handed out by reference (no copy), sends discarded.
struct TraceDev<'t> {
    pkts: &'t [Vec<u8>],
    next: usize,
    limit: usize,
    sent: Vec<Vec<u8>>,
}

struct TRx<'t>(&'t [u8]);
struct TTx<'a>(&'a mut Vec<Vec<u8>>);

impl smoltcp::phy::RxToken for TRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl smoltcp::phy::TxToken for TTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut v = vec![0; len];
        let r = f(&mut v);
        if self.0.len() < 4 {
            self.0.push(v);
        }
        r
    }
}

impl<'t> smoltcp::phy::Device for TraceDev<'t> {
    type RxToken<'a>
        = TRx<'t>
    where
        Self: 'a;
    type TxToken<'a>
        = TTx<'a>
    where
        Self: 'a;

    fn receive(&mut self, _t: smoltcp::time::Instant) -> Option<(TRx<'t>, TTx<'_>)> {
        if self.next >= self.limit.min(self.pkts.len()) {
            return None;
        }
        let p = &self.pkts[self.next];
        self.next += 1;
        Some((TRx(p), TTx(&mut self.sent)))
    }

    fn transmit(&mut self, _t: smoltcp::time::Instant) -> Option<TTx<'_>> {
        Some(TTx(&mut self.sent))
    }

    fn capabilities(&self) -> smoltcp::phy::DeviceCapabilities {
        let mut c = smoltcp::phy::DeviceCapabilities::default();
        c.medium = smoltcp::phy::Medium::Ip;
        c.max_transmission_unit = 65535;
        c
    }
}

fn smoltcp_pass(shape: Shape, bytes: u64) -> Pass {
    use smoltcp::iface::{Config, Interface, SocketSet};
    use smoltcp::socket::tcp;
    use smoltcp::time::Instant as SInstant;
    use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};
    let hs = [packet(PEER_ISN, 0, flags::SYN, 999, &[])];
    let mut dev = TraceDev { pkts: &hs, next: 0, limit: 1, sent: Vec::new() };
    let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut dev, SInstant::ZERO);
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::new(IpAddress::v4(198, 18, 0, 1), 24));
    });
    let mut sockets = SocketSet::new(Vec::new());
    // The same 4 MiB receive window as the engine gets (`rcv_wnd` above).
    let mut sock = tcp::Socket::new(tcp::SocketBuffer::new(vec![0; 4 << 20]), tcp::SocketBuffer::new(vec![0; 4096]));
    sock.listen(5001).map_err(|e| format!("listen: {e:?}"))?;
    let h = sockets.add(sock);
    iface.poll(SInstant::ZERO, &mut dev, &mut sockets);
    let synack = dev.sent.iter().find_map(|p| wire::parse(p).ok().filter(|s| s.has(flags::SYN)).map(|s| s.seq.0));
    let iss = synack.ok_or("smoltcp sent no SYN-ACK")?;
    let ack = [packet(PEER_ISN.wrapping_add(1), iss.wrapping_add(1), flags::ACK, 1000, &[])];
    let mut dev = TraceDev { pkts: &ack, next: 0, limit: 1, sent: Vec::new() };
    iface.poll(SInstant::from_micros(1), &mut dev, &mut sockets);
    let pkts = trace(shape, bytes, iss);
    let mut dev = TraceDev { pkts: &pkts, next: 0, limit: 0, sent: Vec::new() };
    let mut app = vec![0u8; 1 << 20];
    let mut got = 0u64;
    let chunk = if shape.seg > 1500 { 8 } else { 64 };
    let mut us = 2i64;
    let t0 = WallClock::now();
    while dev.next < pkts.len() {
        dev.limit = dev.next + chunk;
        dev.sent.clear();
        us += 1;
        iface.poll(SInstant::from_micros(us), &mut dev, &mut sockets);
        let s = sockets.get_mut::<tcp::Socket>(h);
        while let Ok(n) = s.recv_slice(&mut app) {
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        black_box(&app);
    }
    Ok((t0.elapsed(), got))
}

struct Row {
    shape: Shape,
    segments: usize,
    /// (name, ns per segment, GB/s) medians.
    cols: Vec<(&'static str, f64, f64)>,
}

/// `chimney bench engine`.
pub fn run(a: &EngineArgs) -> ExitCode {
    if a.rounds == 0 || a.bytes < 1 << 20 {
        return crate::error::CliError::new("bench engine", "--rounds must be at least 1 and --bytes at least 1048576")
            .exit();
    }
    let names = ["chimney", "chimney_no_verifier", "memcpy", "smoltcp"];
    for t in &a.trace {
        if !SHAPES.iter().any(|s| s.name == t) {
            return crate::error::CliError::new("bench engine", format!("--trace: unknown trace {t:?}")).exit();
        }
    }
    for r in &a.receiver {
        if !names.contains(&r.as_str()) {
            return crate::error::CliError::new("bench engine", format!("--receiver: unknown receiver {r:?}")).exit();
        }
    }
    let mut rows = Vec::new();
    let mut all_ok = true;
    for shape in SHAPES.into_iter().filter(|s| a.trace.is_empty() || a.trace.iter().any(|t| t == s.name)) {
        let segments = trace(shape, a.bytes, 0).len();
        let mut samples: Vec<Vec<(f64, f64)>> = vec![Vec::new(); names.len()];
        for _ in 0..a.rounds {
            for (i, name) in names.iter().enumerate() {
                if !a.receiver.is_empty() && !a.receiver.iter().any(|r| r == name) {
                    continue;
                }
                let r = match i {
                    0 => chimney_pass(
                        shape,
                        a.bytes,
                        Verifier::new(Delivery::new(DeliveryConfig::default()), VerifierMode::Collect),
                    ),
                    1 => chimney_pass(shape, a.bytes, Delivery::new(DeliveryConfig::default())),
                    2 => memcpy_pass(shape, a.bytes),
                    _ => smoltcp_pass(shape, a.bytes),
                };
                match r {
                    Ok((d, got)) => {
                        if got != a.bytes {
                            all_ok = false;
                            eprintln!("{} {name}: delivered {got} of {} bytes", shape.name, a.bytes);
                        }
                        let ns = d.as_nanos() as f64 / segments as f64;
                        samples[i].push((ns, a.bytes as f64 / d.as_secs_f64().max(1e-9) / 1e9));
                    }
                    Err(e) => {
                        return crate::error::CliError::new("bench engine", format!("{} {name}: {e}", shape.name))
                            .exit();
                    }
                }
            }
        }
        let cols = names
            .iter()
            .zip(&samples)
            .filter(|(_, v)| !v.is_empty())
            .map(|(n, v)| {
                let ns = super::common::median(&v.iter().map(|x| x.0).collect::<Vec<_>>());
                let gbs = super::common::median(&v.iter().map(|x| x.1).collect::<Vec<_>>());
                (*n, ns, gbs)
            })
            .collect();
        rows.push(Row { shape, segments, cols });
    }
    let get = |r: &Row, n: &str| r.cols.iter().find(|c| c.0 == n).map_or((f64::NAN, f64::NAN), |c| (c.1, c.2));
    if a.json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let mut m = serde_json::Map::new();
                m.insert("trace".into(), r.shape.name.into());
                m.insert("segment_bytes".into(), r.shape.seg.into());
                m.insert("segments".into(), r.segments.into());
                for (n, ns, gbs) in &r.cols {
                    m.insert(format!("{n}_ns_per_segment"), (*ns).into());
                    m.insert(format!("{n}_gb_per_s"), (*gbs).into());
                }
                let (c, m_) = (get(r, "chimney"), get(r, "memcpy"));
                m.insert("chimney_over_memcpy".into(), (c.1 / m_.1).into());
                m.insert("engine_ns_per_segment_excluding_copy".into(), (c.0 - m_.0).into());
                m.insert("chimney_over_smoltcp".into(), (c.1 / get(r, "smoltcp").1).into());
                serde_json::Value::Object(m)
            })
            .collect();
        println!("{}", serde_json::json!({ "bytes": a.bytes, "rounds": a.rounds, "ok": all_ok, "results": v }));
    } else {
        println!("chimney bench engine: {} payload bytes per trace, {} round(s), medians", a.bytes, a.rounds);
        for r in &rows {
            println!("{} ({} segments of {} bytes):", r.shape.name, r.segments, r.shape.seg);
            for (n, ns, gbs) in &r.cols {
                println!("  {n:<20} {ns:>9.1} ns/segment {gbs:>7.2} GB/s");
            }
            let (c, m) = (get(r, "chimney"), get(r, "memcpy"));
            println!(
                "  chimney/memcpy {:.2}x   engine work excluding the copy {:.1} ns/segment   chimney/smoltcp {:.2}x",
                c.1 / m.1,
                c.0 - m.0,
                c.1 / get(r, "smoltcp").1
            );
        }
        println!("{}", if all_ok { "every trace delivered exactly" } else { "SOME TRACES WERE NOT DELIVERED IN FULL" });
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
