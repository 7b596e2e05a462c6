//! `chimney bench`: speed measured side by side in one run, medians and ratios printed.
//!
//! * [`e2e`]: one Linux kernel TCP connection into (a) the Linux kernel over a veth pair
//!   between two namespaces, (b) chimney over a TUN device, (c) smoltcp over the same kind of
//!   TUN device; interleaved rounds at each MTU.
//! * [`engine`]: no I/O, pre-built segment traces through the engine, against memcpy and
//!   smoltcp.
//! * [`scale`]: no I/O, bytes per idle connection and ns per segment at 1 … 1 M connections.
//! * [`http`]: wrk against a kernel HTTP responder (veth) and `serve --http` (TUN).
//! * [`flows`]: thousands of concurrent short connections into a kernel server (veth) and
//!   `chimney serve` (TUN): total time, peak RSS, TUN drops, retransmissions.
//! * [`flood`]: no I/O, a spoofed SYN flood: SYNs per second absorbed per SYN-cookie mode,
//!   half-open memory, a legitimate client mid-flood.
//!
//! [`common`] holds what they share (medians, a peer's segments); nothing here imports back
//! from a child.

use std::process::ExitCode;

pub mod common;
pub mod e2e;
pub mod engine;
pub mod flood;
pub mod flows;
pub mod http;
pub mod scale;

/// `chimney bench` flags.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchCmd,
}

/// Which benchmark.
#[derive(clap::Subcommand, Debug)]
pub enum BenchCmd {
    /// End to end: kernel → kernel (veth), kernel → chimney (TUN), kernel → smoltcp (TUN).
    E2e(e2e::E2eArgs),
    /// No I/O: a pre-built segment trace through the engine into posted buffers, against
    /// memcpy of the same bytes and smoltcp fed the same trace.
    Engine(engine::EngineArgs),
    /// No I/O: 1, 1 k, 100 k, 1 M offloaded connections: bytes per idle connection and ns
    /// per segment at each size.
    Scale(scale::ScaleArgs),
    /// No I/O: a spoofed SYN flood on one core: SYNs per second absorbed with SYN cookies
    /// auto, always and never, half-open memory, and whether a client connects mid-flood.
    Flood(flood::FloodArgs),
    /// Thousands of concurrent short connections (default 2,000 × 64 KiB) into a kernel
    /// server over veth and `chimney serve` over TUN, side by side: total time and its ratio,
    /// serve's peak RSS, TUN drops, the senders' retransmissions.
    ///
    /// Reading the output: times are the clients' (first connect to last close), so for the
    /// time ratio lower is better. Retransmissions are the segments the senders sent again
    /// (`RetransSegs`), followed by the events behind them from `TcpExt`: a tail loss probe
    /// sends new data when it has some and the last segment again when not, so probes can
    /// outnumber the segments sent again. Peak RSS is serve's `VmHWM`, its fixed overhead
    /// included (per connection it looks larger at small counts). "placed" counts segments
    /// read straight into posted buffers: a stream shorter than the growth threshold (128 KiB)
    /// is indicated, never posted into, so short flows show none.
    Flows(flows::FlowsArgs),
    /// wrk against a kernel HTTP responder over veth and `serve --http` over TUN, side by
    /// side: requests per second and the ratio.
    Http(http::HttpArgs),
}

/// `chimney bench …`.
pub fn run(a: &BenchArgs) -> ExitCode {
    match &a.what {
        BenchCmd::E2e(e) => e2e::run(e),
        BenchCmd::Engine(e) => engine::run(e),
        BenchCmd::Scale(e) => scale::run(e),
        BenchCmd::Flood(e) => flood::run(e),
        BenchCmd::Http(e) => http::run(e),
        BenchCmd::Flows(e) => flows::run(e),
    }
}
