//! `chimney bench flood`: a spoofed SYN flood through one engine on one core (no I/O): SYNs
//! per second absorbed (each answered with a SYN-ACK or, with cookies off, dropped once the
//! half-open table is full), the half-open table's memory during the flood, and whether a
//! legitimate client that arrives in the middle of it connects on its first SYN. The three
//! `--syncookies` modes run side by side, interleaved round by round.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant as WallClock};

use chimney::contract::{Delivery, DeliveryConfig};
use chimney::engine::{Engine, EngineConfig, ListenerConfig, SynCookies};
use chimney::testkit::rng::SplitMix64;
use chimney::wire::{flags, TcpOptions};
use chimney::Instant;

use super::common::median;

/// `chimney bench flood` flags.
#[derive(clap::Args, Debug)]
pub struct FloodArgs {
    /// Spoofed SYNs per round.
    #[arg(long, default_value_t = 1_000_000)]
    pub syns: u32,
    /// Rounds per mode (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

const TARGET: &str = "198.18.0.1:5001";

/// `n` SYNs from random unicast sources in 10.0.0.0/8, options as Linux sends them.
fn build(n: u32, seed: u64) -> Vec<Vec<u8>> {
    let target: SocketAddr = TARGET.parse().expect("address");
    let mut r = SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            let x = r.next_u64();
            let src = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(0x0A00_0000 | (x as u32 & 0x00FF_FFFF))),
                1024 + ((x >> 32) as u16 % 60_000),
            );
            let mut p = super::common::peer(target, src, (x >> 20) as u32, Some((x >> 7) as u32));
            p.syn_options =
                TcpOptions { mss: Some(1460), sack_permitted: true, window_scale: Some(7), ..TcpOptions::default() };
            p.segment_acking((x >> 20) as u32, 0, flags::SYN, &[])
        })
        .collect()
}

struct Round {
    syns_per_sec: f64,
    half_open: usize,
    half_open_bytes: usize,
    legit_first_syn: bool,
    answered: u64,
}

fn round(mode: SynCookies, pkts: &[Vec<u8>]) -> Round {
    let target: SocketAddr = TARGET.parse().expect("address");
    let cfg = EngineConfig {
        listen: vec![target],
        listener: ListenerConfig { syncookies: mode, ..ListenerConfig::default() },
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(cfg, Delivery::new(DeliveryConfig::default()));
    let mut host = chimney::testkit::host::AppHost::new();
    let mut out = Vec::new();
    let mut answered = 0u64;
    let now = Instant::ZERO + Duration::from_secs(10);
    let half = pkts.len() / 2;
    let t0 = WallClock::now();
    for p in &pkts[..half] {
        engine.handle_packet(now, p, &mut host);
        while engine.poll_transmit(&mut out) {
            answered += 1;
        }
    }
    let mid = t0.elapsed();
    // The legitimate client, mid-flood (not timed).
    let legit = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)), 40_000);
    let mut peer = super::common::peer(target, legit, 5555, Some(1));
    let legit_first_syn = peer.handshake(now, &mut engine, &mut host).is_ok();
    let (half_open, half_open_bytes) = engine.half_open();
    let t1 = WallClock::now();
    for p in &pkts[half..] {
        engine.handle_packet(now, p, &mut host);
        while engine.poll_transmit(&mut out) {
            answered += 1;
        }
    }
    let took = mid + t1.elapsed();
    Round {
        syns_per_sec: pkts.len() as f64 / took.as_secs_f64().max(1e-9),
        half_open,
        half_open_bytes,
        legit_first_syn,
        answered,
    }
}

/// `chimney bench flood`.
pub fn run(a: &FloodArgs) -> ExitCode {
    if a.syns < 2 || a.rounds == 0 {
        eprintln!("chimney bench flood: --syns must be at least 2 and --rounds at least 1");
        return ExitCode::from(2);
    }
    let pkts = build(a.syns, 77);
    let modes = [("auto", SynCookies::Auto), ("always", SynCookies::Always), ("never", SynCookies::Never)];
    let mut results: Vec<Vec<Round>> = modes.iter().map(|_| Vec::new()).collect();
    for _ in 0..a.rounds {
        for (i, (_, m)) in modes.iter().enumerate() {
            results[i].push(round(*m, &pkts));
        }
    }
    let summary: Vec<serde_json::Value> = modes
        .iter()
        .zip(&results)
        .map(|((name, _), rs)| {
            let rate = median(&rs.iter().map(|r| r.syns_per_sec).collect::<Vec<_>>());
            let last = rs.last().expect("rounds ≥ 1");
            serde_json::json!({
                "syncookies": name,
                "syns_per_sec": rate,
                "answered": last.answered,
                "half_open": last.half_open,
                "half_open_bytes": last.half_open_bytes,
                "legit_connected_on_first_syn": rs.iter().all(|r| r.legit_first_syn),
            })
        })
        .collect();
    if a.json {
        println!("{}", serde_json::json!({ "syns": a.syns, "rounds": a.rounds, "modes": summary }));
    } else {
        println!("SYN flood: {} spoofed SYNs per round, {} rounds per mode, one core, no I/O", a.syns, a.rounds);
        println!(
            "{:<8} {:>14} {:>10} {:>10} {:>14} {:>22}",
            "cookies", "SYN/s (median)", "answered", "half-open", "half-open MiB", "client on first SYN"
        );
        let base = summary[0]["syns_per_sec"].as_f64().unwrap_or(f64::NAN);
        for s in &summary {
            let rate = s["syns_per_sec"].as_f64().unwrap_or(f64::NAN);
            println!(
                "{:<8} {:>14.0} {:>10} {:>10} {:>14.2} {:>22}   ({:.2}x auto)",
                s["syncookies"].as_str().unwrap_or(""),
                rate,
                s["answered"].as_u64().unwrap_or(0),
                s["half_open"].as_u64().unwrap_or(0),
                s["half_open_bytes"].as_f64().unwrap_or(0.0) / 1048576.0,
                if s["legit_connected_on_first_syn"] == true { "yes" } else { "no" },
                rate / base
            );
        }
    }
    ExitCode::SUCCESS
}
