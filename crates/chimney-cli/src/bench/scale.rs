//! `chimney bench scale`: 1, 1 k, 100 k and 1 M offloaded connections in one engine (no I/O):
//! the memory each idle connection costs (resident-set growth while offloading them, divided
//! by their number; no posted buffers) and the engine's time per data segment when segments
//! land on random connections at that size.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant as WallClock};

use chimney::contract::{ConnId, Delivery, DeliveryConfig, IndicateReturn, NestedCalls, ProtocolHost};
use chimney::engine::{Engine, EngineConfig};
use chimney::ndis::{NblChain, NdisStatus, TcpOffloadEvent};
use chimney::tcp::TcpConfig;
use chimney::testkit::rng::SplitMix64;
use chimney::wire::{flags, Flags};
use chimney::Instant;

/// `chimney bench scale` flags.
#[derive(clap::Args, Debug)]
pub struct ScaleArgs {
    /// Connection counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1u32, 1000, 100_000, 1_000_000])]
    pub connections: Vec<u32>,
    /// Data segments timed at each size (to random connections).
    #[arg(long, default_value_t = 200_000)]
    pub segments: u32,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// The host side: takes every indication (returns the NBL at once), posts nothing, so what
/// is measured is the target's own state.
struct Sink {
    held: NblChain,
}

impl ProtocolHost for Sink {
    fn receive_complete(&mut self, _c: ConnId, _n: NblChain, _nested: &mut NestedCalls) {}
    fn receive_indicate(
        &mut self,
        _c: ConnId,
        nbl: NblChain,
        _s: NdisStatus,
        nested: &mut NestedCalls,
    ) -> IndicateReturn {
        nested.receive_return(std::mem::take(&mut self.held));
        self.held = nbl;
        IndicateReturn::Success
    }
    fn event_indicate(&mut self, _c: ConnId, _e: TcpOffloadEvent, _nested: &mut NestedCalls) {}
}

fn rss_bytes() -> u64 {
    // statm: size resident shared … in pages.
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .unwrap_or(0);
    pages * 4096
}

fn peer(i: u32) -> SocketAddr {
    // 198.18.0.0/15 minus the target's /24, 50,000 ports each.
    let host = 256 + i / 50_000;
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + host);
    SocketAddr::new(IpAddr::V4(ip), 10_000 + (i % 50_000) as u16)
}

fn seg(src: SocketAddr, dst: SocketAddr, seq: u32, ack: u32, fl: Flags, payload: &[u8]) -> Vec<u8> {
    super::common::peer(dst, src, 1000, None).segment_acking(seq, ack, fl, payload)
}

struct Point {
    connections: u32,
    bytes_per_conn: f64,
    ns_per_segment: f64,
    offload_us_per_conn: f64,
}

fn measure(n: u32, segments: u32) -> Result<Point, String> {
    let target: SocketAddr = "198.18.0.1:5001".parse().map_err(|_| "address")?;
    let tcp = TcpConfig { rcv_wnd: 64 << 10, ..TcpConfig::default() };
    let cfg = EngineConfig { seed: 3, listen: vec![target], tcp, max_connections: n.max(1), ..EngineConfig::default() };
    let dcfg = DeliveryConfig { max_conn_id: n.max(1), ..DeliveryConfig::default() };
    let mut engine = Engine::new(cfg, Delivery::new(dcfg));
    let mut host = Sink { held: NblChain::new() };
    // After the engine's fixed allocations (indication pool, tables): what remains is per
    // connection.
    let rss0 = rss_bytes();
    let now = Instant::ZERO;
    let mut out = Vec::new();
    let mut iss = vec![0u32; n as usize];
    let t0 = WallClock::now();
    for i in 0..n {
        let p = peer(i);
        let mut peer = super::common::peer(target, p, 1000, None);
        peer.handshake(now, &mut engine, &mut host).map_err(|e| format!("connection {i}: {e}"))?;
        iss[i as usize] = peer.iss;
    }
    let offload_time = t0.elapsed();
    let rss1 = rss_bytes();
    if engine.delivery().connections() != n as usize {
        return Err(format!("{} of {n} connections offloaded", engine.delivery().connections()));
    }
    // Segments to random connections, each continuing its own stream.
    let mut r = SplitMix64::new(9);
    let payload = vec![0x5Au8; 1448];
    let mut next = vec![1001u32; n as usize];
    let mut pkts = Vec::with_capacity(segments as usize);
    for _ in 0..segments {
        let i = r.below(u64::from(n)) as u32;
        let s = next[i as usize];
        next[i as usize] = s.wrapping_add(payload.len() as u32);
        pkts.push(seg(peer(i), target, s, iss[i as usize].wrapping_add(1), flags::ACK | flags::PSH, &payload));
    }
    let mut now = now;
    let t1 = WallClock::now();
    for batch in pkts.chunks(32) {
        now = now + Duration::from_micros(1);
        for p in batch {
            engine.handle_packet(now, p, &mut host);
        }
        engine.flush_acks(now, &mut host);
        while engine.poll_transmit(&mut out) {}
        if engine.poll_timeout().is_some_and(|t| t <= now) {
            engine.handle_timeout(now, &mut host);
        }
    }
    let el = t1.elapsed();
    let delivered = engine.stats().delivered_bytes;
    if delivered != u64::from(segments) * payload.len() as u64 {
        return Err(format!("delivered {delivered} bytes, sent {}", u64::from(segments) * payload.len() as u64));
    }
    drop(pkts);
    Ok(Point {
        connections: n,
        bytes_per_conn: rss1.saturating_sub(rss0) as f64 / f64::from(n.max(1)),
        ns_per_segment: el.as_nanos() as f64 / f64::from(segments.max(1)),
        offload_us_per_conn: offload_time.as_secs_f64() * 1e6 / f64::from(n.max(1)),
    })
}

fn in_child(n: u32, segments: u32) -> Result<Point, String> {
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let out = std::process::Command::new(exe)
        .args(["bench", "scale", "--json", "--connections", &n.to_string(), "--segments", &segments.to_string()])
        .output()
        .map_err(|e| format!("running the measurement: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim())
        .map_err(|e| format!("{e}: {text} {}", String::from_utf8_lossy(&out.stderr).trim()))?;
    let r = &v["results"][0];
    let f = |k: &str| r[k].as_f64().ok_or_else(|| format!("no {k} in {v}"));
    Ok(Point {
        connections: n,
        bytes_per_conn: f("bytes_per_connection")?,
        ns_per_segment: f("ns_per_segment")?,
        offload_us_per_conn: f("offload_us_per_connection")?,
    })
}

/// `chimney bench scale`.
pub fn run(a: &ScaleArgs) -> ExitCode {
    if a.connections.iter().any(|&n| n == 0 || n > 2_000_000) || a.segments == 0 {
        return crate::error::CliError::new(
            "bench scale",
            "--connections must be 1..=2000000 each, --segments at least 1",
        )
        .exit();
    }
    let mut pts = Vec::new();
    for &n in &a.connections {
        // Each size in a fresh process: freed memory stays resident, so sizes measured one
        // after another in one process would hide each other's growth.
        let r = if a.connections.len() == 1 { measure(n, a.segments) } else { in_child(n, a.segments) };
        match r {
            Ok(p) => pts.push(p),
            Err(e) => {
                eprintln!("chimney bench scale: {n} connections: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let base = pts.first().map_or(f64::NAN, |p| p.ns_per_segment);
    if a.json {
        let v: Vec<serde_json::Value> = pts
            .iter()
            .map(|p| {
                serde_json::json!({
                    "connections": p.connections,
                    "bytes_per_connection": p.bytes_per_conn,
                    "ns_per_segment": p.ns_per_segment,
                    "ns_per_segment_over_first": p.ns_per_segment / base,
                    "offload_us_per_connection": p.offload_us_per_conn,
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "segments": a.segments, "results": v }));
    } else {
        println!("chimney bench scale: idle offloaded connections (no posted buffers), {} segments timed", a.segments);
        for p in &pts {
            println!(
                "{:>9} connections: {:>8.0} bytes/connection (RSS growth)  {:>7.1} ns/segment ({:.2}x the first)  {:.2} µs/offload",
                p.connections,
                p.bytes_per_conn,
                p.ns_per_segment,
                p.ns_per_segment / base,
                p.offload_us_per_conn
            );
        }
        println!(
            "struct sizes: TcpConn {} B, Delivery connection {} B (plus table entries and boxes)",
            std::mem::size_of::<chimney::tcp::TcpConn>(),
            chimney::contract::Delivery::conn_size()
        );
    }
    ExitCode::SUCCESS
}
