//! The shipped defaults, in one place: what `chimney demo` and `chimney serve` run with no
//! flags. [`DriverConfig::default()`](crate::DriverConfig) is built from them, and the CLI's
//! flag defaults name them, so that the two cannot drift apart.
//!
//! The core's own defaults ([`chimney::tcp::TcpConfig::default`],
//! [`chimney::DeliveryConfig::default`]) are an embedder's starting point (no ACK deferral,
//! a 1 MiB window); the product's choices are these.

use std::time::Duration;

/// Receive requests the application keeps posted per connection (at most, while posts
/// follow demand).
pub const POSTS: usize = 4;
/// Bytes per posted receive request (at most, while posts follow demand).
pub const POST_SIZE: usize = 256 * 1024;
/// Posts follow demand: a connection's first this many bytes are indicated (no posted
/// buffer of its own: thousands of short connections cost no posted memory)…
pub const POST_AFTER: u64 = 128 * 1024;
/// …then it posts requests of this size, doubled each time one comes back full, up to
/// [`POST_SIZE`].
pub const FIRST_POST_SIZE: usize = 64 * 1024;
/// MDLs per posted request.
pub const MDLS: usize = 1;
/// Receive buffer per connection (InitialRcvWnd): the window the target advertises.
pub const RCV_WND: u32 = 4 << 20;
/// TUN MTU.
pub const MTU: u32 = 1500;
/// ACK on queue drain (one ACK per connection per batch of reads, deferred up to a quarter
/// of the window): what keeps a sender's pace at 10+ Gbit/s.
pub const DEFER_ACKS: bool = true;
/// Packets read from the TUN per wake-up at most.
pub const READ_BATCH: usize = 64;
/// The TUN device's transmit queue (`txqueuelen`: packets the kernel holds for the target
/// to read). The kernel's default of 500 drops under the first flights of a few hundred
/// connections opening at once (ten segments each); 16,384 still dropped 115,000 packets of
/// 10,000 connections' first flights (`bench flows`); 65,536 holds them while the reader
/// drains the queue, and costs kernel memory only while packets wait.
pub const TUN_QUEUE_LEN: u32 = 65_536;
/// Busy-polling after a read that found packets (zero: sleep whenever idle).
pub const BUSY_POLL: Duration = Duration::ZERO;

/// The MSS for a link of `mtu` bytes: the MTU less the IP (20 or 40 bytes) and TCP (20)
/// headers, within 536..=65000.
pub fn mss_for(mtu: u32, ipv6: bool) -> u16 {
    let headers = if ipv6 { 60 } else { 40 };
    mtu.saturating_sub(headers).clamp(536, 65_000) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mss_follows_mtu_and_family() {
        assert_eq!(mss_for(1500, false), 1460);
        assert_eq!(mss_for(1500, true), 1440);
        assert_eq!(mss_for(65535, false), 65000);
        assert_eq!(mss_for(576, false), 536);
    }

    #[test]
    fn the_driver_default_is_the_product_default() {
        let d = crate::DriverConfig::default();
        assert_eq!(d.engine.tcp.rcv_wnd, RCV_WND);
        assert_eq!(d.engine.tcp.mss, mss_for(MTU, false));
        assert_eq!(d.engine.tcp.defer_acks, DEFER_ACKS);
        assert_eq!((d.policy.keep_posted, d.policy.post_size, d.policy.mdls), (POSTS, POST_SIZE, MDLS));
        let g = d.policy.grow.expect("posts follow demand by default");
        assert_eq!((g.post_after, g.first_size), (POST_AFTER, FIRST_POST_SIZE));
        assert_eq!(d.batch, READ_BATCH);
    }
}
