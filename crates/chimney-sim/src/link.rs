//! A simulated link: seeded impairments plus a bandwidth limit (serialisation delay).

use std::time::Duration;

use chimney::testkit::impair::{ImpairConfig, Impairment};
use chimney::Instant;

/// One direction of a link.
#[derive(Debug)]
pub struct Link {
    imp: Impairment,
    bits_per_sec: u64,
    free_at: Instant,
}

impl Link {
    /// A link with impairments `cfg`, `bits_per_sec` of bandwidth (0 = infinite), seeded.
    pub fn new(cfg: ImpairConfig, bits_per_sec: u64, seed: u64) -> Link {
        Link { imp: Impairment::new(cfg, seed), bits_per_sec, free_at: Instant::ZERO }
    }

    /// Sends a packet at `now`: it leaves after the link is free and its bits are out.
    pub fn send(&mut self, now: Instant, pkt: &[u8]) {
        let start = if self.free_at > now { self.free_at } else { now };
        let tx =
            Duration::from_nanos((pkt.len() as u64 * 8 * 1_000_000_000).checked_div(self.bits_per_sec).unwrap_or(0));
        self.free_at = start + tx;
        self.imp.push(self.free_at, pkt);
    }

    /// The next packet due at `now`.
    pub fn recv(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.imp.pop_due(now)
    }

    /// When the next packet is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.imp.next_due()
    }

    /// Impairment counters.
    pub fn stats(&self) -> &chimney::testkit::impair::ImpairStats {
        &self.imp.stats
    }
}
