//! `chimney connect`: the client role. The host stack connects out from the target's address
//! on a TUN device, offloads each established connection, and sends through the offloaded
//! send path (`--send N`, or `--echo-check N`: send N bytes of the seeded pattern and require
//! them back, byte for byte, from an echo server). Reports like `serve`.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use crate::args::{ImpairArgs, PolicyArgs};
use crate::serve::{Mode, ServeArgs};

/// `chimney connect` flags.
#[derive(clap::Args, Debug)]
pub struct ConnectArgs {
    /// The peer, e.g. 198.18.0.2:9000 (an address of the kernel side, where `nc -l` listens).
    pub peer: SocketAddr,
    /// TUN device to create.
    #[arg(long, default_value = "chim0")]
    pub tun: String,
    /// Address (CIDR) the kernel side of the TUN gets, e.g. 198.18.0.2/24 or fd00::2/64.
    #[arg(long)]
    pub local: crate::args::Cidr,
    /// The target's own address (default: the first address of --local's prefix that is not
    /// --local's, e.g. 198.18.0.1).
    #[arg(long)]
    pub from: Option<IpAddr>,
    /// Connections to open (from consecutive source ports from 40000).
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Send N bytes (suffixes: K, M, KiB, …) of the seeded pattern on each connection, then FIN.
    #[arg(long, value_name = "N", value_parser = crate::size::u64_bytes, conflicts_with = "echo_check")]
    pub send: Option<u64>,
    /// Send N bytes of the seeded pattern and require exactly them back (an echo server);
    /// each JSON line gains `exact`, and the exit status is 1 unless every one is.
    #[arg(long, value_name = "N", value_parser = crate::size::u64_bytes)]
    pub echo_check: Option<u64>,
    /// TUN MTU.
    #[arg(long, default_value_t = 1500)]
    pub mtu: u32,
    /// Seed of impairments.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub trace: crate::args::TraceArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub impair: ImpairArgs,
}

/// The first address of `local`'s prefix that is neither the network address nor `local`.
fn default_from(local: &crate::args::Cidr) -> Option<IpAddr> {
    match local.addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(local.prefix)).unwrap_or(0);
            let net = u32::from(a) & mask;
            (1..4).map(|k| net + k).find(|&x| x != u32::from(a)).map(|x| IpAddr::V4(x.into()))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(local.prefix)).unwrap_or(0);
            let net = u128::from(a) & mask;
            (1..4).map(|k| net + k).find(|&x| x != u128::from(a)).map(|x| IpAddr::V6(x.into()))
        }
    }
}

pub fn run(a: &ConnectArgs) -> ExitCode {
    let fail = |msg: String| crate::error::CliError::new("connect", msg).exit();
    let Some(from) = a.from.or_else(|| default_from(&a.local)) else {
        return fail(format!("--local {}/{}: no room for the target's address", a.local.addr, a.local.prefix));
    };
    if from.is_ipv4() != a.peer.is_ipv4() {
        return fail(format!("the target's address {from} and the peer {} are different address families", a.peer));
    }
    if a.connections == 0 || a.connections > 20_000 {
        return fail(format!("--connections must be 1..=20000, got {}", a.connections));
    }
    if let Err(e) = a.local.check_listen(SocketAddr::new(from, 1)) {
        return fail(e.replace("--listen", "--from"));
    }
    let bytes = a.send.or(a.echo_check);
    let serve = ServeArgs {
        tun: a.tun.clone(),
        local: a.local,
        listen: SocketAddr::new(from, 0),
        connections: a.connections,
        out: None,
        pcap: None,
        mtu: a.mtu,
        queues: 1,
        seed: a.seed,
        shutdown_drain_ms: 2000,
        echo: false,
        http: false,
        source: Some(bytes.unwrap_or(0)),
        trace: a.trace.clone(),
        policy: a.policy.clone(),
        impair: a.impair.clone(),
    };
    let connect = (0..a.connections).map(|i| (SocketAddr::new(from, 40_000 + i as u16), a.peer)).collect();
    if a.echo_check.is_some() && a.policy.hash == chimney::testkit::digest::HashKind::None {
        return fail("--echo-check compares digests: it needs a --hash other than none".into());
    }
    let expect = a.echo_check.map(|n| crate::report::hex(&crate::demo::source_digest(a.policy.hash, n)));
    crate::serve::run_as(&serve, &Mode { connect, expect })
}
