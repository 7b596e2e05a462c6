//! What the benchmarks share: medians, a peer's segments built for the engine, and the
//! veth pair the kernel contenders run over.

use std::net::SocketAddr;

use chimney::testkit::peer::Peer;
use chimney::wire::TcpOptions;
use chimney_linux::{DriverError, Netns};

/// The benchmarks' TCP peer (chimney's shared test peer) at `remote`, for an engine at
/// `local`: a SYN with MSS 1460, window scale 7 and SACK permitted, a 4096-byte window;
/// timestamps when `tsval` is given (echo 1 after the SYN).
pub fn peer(local: SocketAddr, remote: SocketAddr, irs: u32, tsval: Option<u32>) -> Peer {
    let mut p = Peer::new(local, remote, irs);
    p.syn_options =
        TcpOptions { mss: Some(1460), window_scale: Some(7), sack_permitted: true, ..TcpOptions::default() };
    p.window = 4096;
    p.ip_id = 1;
    p.tsval = tsval;
    p.tsecr = 1;
    p
}

/// The median of the finite values (NaN when there are none).
pub fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Two fresh namespaces joined by a veth pair at `mtu`: 198.19.0.1 in the first, 198.19.0.2
/// in the second.
pub fn veth_pair(mtu: u32) -> Result<(Netns, Netns), DriverError> {
    let a = Netns::create()?;
    let b = Netns::create()?;
    let b_path = b.path();
    a.ip(&["link", "add", "bva", "type", "veth", "peer", "name", "bvb", "netns", &b_path])?;
    a.ip(&["addr", "add", "198.19.0.1/24", "dev", "bva"])?;
    a.ip(&["link", "set", "bva", "mtu", &mtu.to_string(), "up"])?;
    b.ip(&["addr", "add", "198.19.0.2/24", "dev", "bvb"])?;
    b.ip(&["link", "set", "bvb", "mtu", &mtu.to_string(), "up"])?;
    Ok((a, b))
}
