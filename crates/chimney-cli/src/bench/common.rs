//! What the benchmarks share: medians, and a peer's segments built for the engine.

use std::net::SocketAddr;

/// A peer's TCP segment for the no-I/O benchmarks: window 4096; with `syn`, the options a
/// Linux peer offers (MSS 1460, window scale 7, SACK permitted); timestamps when `tsval` is
/// given (echoing 0 on a SYN, 1 after).
#[allow(clippy::too_many_arguments)]
pub fn peer_segment(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
    syn: bool,
    tsval: Option<u32>,
) -> Vec<u8> {
    let mut options = chimney::wire::TcpOptions {
        timestamps: tsval.map(|v| (v, u32::from(!syn))),
        ..chimney::wire::TcpOptions::default()
    };
    if syn {
        options.mss = Some(1460);
        options.window_scale = Some(7);
        options.sack_permitted = true;
    }
    let r = chimney::wire::SegmentRepr {
        src: src.ip(),
        dst: dst.ip(),
        src_port: src.port(),
        dst_port: dst.port(),
        seq,
        ack,
        flags,
        window: 4096,
        options,
        payload,
        ip_id: 1,
    };
    let mut v = Vec::new();
    r.emit(&mut v);
    v
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
