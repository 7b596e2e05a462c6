//! The impairment layer: seeded loss, duplication, reordering (with a delay bound),
//! corruption and delay between a link and the engine, in either direction. `tc netem` is not
//! available on these machines; real-peer tests see loss through this.
//!
//! Sans-IO like the rest of the core: `push(now, packet)` decides each packet's fate,
//! `pop_due(now)` releases packets whose time has come, `next_due()` is the next deadline.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use crate::testkit::rng::SplitMix64;
use crate::time::Instant;

/// Impairment probabilities and delays.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImpairConfig {
    /// Probability a packet is dropped.
    pub loss: f64,
    /// Probability a packet is delivered twice.
    pub dup: f64,
    /// Probability a packet is held back by a random delay up to `reorder_max`.
    pub reorder: f64,
    /// Bound of the reordering delay.
    pub reorder_max: Duration,
    /// Probability one byte of the packet is flipped.
    pub corrupt: f64,
    /// Fixed delay added to every packet.
    pub delay: Duration,
}

impl ImpairConfig {
    /// Whether packets pass untouched (drivers skip the queue then).
    pub fn is_passthrough(&self) -> bool {
        self.loss <= 0.0 && self.dup <= 0.0 && self.reorder <= 0.0 && self.corrupt <= 0.0 && self.delay.is_zero()
    }

    /// Checks that probabilities lie in [0, 1].
    pub fn validate(&self) -> Result<(), String> {
        for (name, p) in [("loss", self.loss), ("dup", self.dup), ("reorder", self.reorder), ("corrupt", self.corrupt)]
        {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("--{name} must be a probability between 0 and 1, got {p}"));
            }
        }
        Ok(())
    }
}

/// Counters of what the layer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImpairStats {
    /// Packets offered.
    pub packets: u64,
    /// Dropped.
    pub lost: u64,
    /// Duplicated.
    pub duplicated: u64,
    /// Held back for reordering.
    pub reordered: u64,
    /// Corrupted.
    pub corrupted: u64,
}

/// One direction of impairment.
#[derive(Debug)]
pub struct Impairment {
    cfg: ImpairConfig,
    rng: SplitMix64,
    queue: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>,
    serial: u64,
    /// What happened so far.
    pub stats: ImpairStats,
}

impl Impairment {
    /// A layer with `cfg`, seeded.
    pub fn new(cfg: ImpairConfig, seed: u64) -> Impairment {
        Impairment {
            cfg,
            rng: SplitMix64::new(seed),
            queue: BinaryHeap::new(),
            serial: 0,
            stats: ImpairStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ImpairConfig {
        &self.cfg
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// Offers a packet at `now`.
    pub fn push(&mut self, now: Instant, packet: &[u8]) {
        self.stats.packets += 1;
        if self.chance(self.cfg.loss) {
            self.stats.lost += 1;
            return;
        }
        let copies = if self.chance(self.cfg.dup) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut p = packet.to_vec();
            if !p.is_empty() && self.chance(self.cfg.corrupt) {
                self.stats.corrupted += 1;
                let at = self.rng.below(p.len() as u64) as usize;
                p[at] ^= 1 << self.rng.below(8);
            }
            let mut at = now + self.cfg.delay;
            if self.chance(self.cfg.reorder) && !self.cfg.reorder_max.is_zero() {
                self.stats.reordered += 1;
                at = at + Duration::from_nanos(1 + self.rng.below(self.cfg.reorder_max.as_nanos() as u64));
            }
            self.serial += 1;
            self.queue.push(Reverse((at, self.serial, p)));
        }
    }

    /// The next packet due at or before `now`, in due order (ties in arrival order).
    pub fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.queue.peek().is_some_and(|Reverse((t, _, _))| *t <= now) {
            return self.queue.pop().map(|Reverse((_, _, p))| p);
        }
        None
    }

    /// When the next held packet is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Packets held.
    pub fn held(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passthrough_and_seeded_fates() {
        let mut i = Impairment::new(ImpairConfig::default(), 1);
        assert!(i.config().is_passthrough());
        i.push(Instant::ZERO, b"abc");
        assert_eq!(i.pop_due(Instant::ZERO).as_deref(), Some(&b"abc"[..]));
        let cfg = ImpairConfig {
            loss: 0.2,
            dup: 0.1,
            reorder: 0.3,
            reorder_max: Duration::from_millis(5),
            corrupt: 0.05,
            delay: Duration::from_millis(1),
        };
        let run = |seed| {
            let mut i = Impairment::new(cfg.clone(), seed);
            let mut out = Vec::new();
            for n in 0..1000u32 {
                i.push(Instant::from_millis(n as u64), &n.to_be_bytes());
                while let Some(p) = i.pop_due(Instant::from_millis(n as u64)) {
                    out.push(p);
                }
            }
            while let Some(t) = i.next_due() {
                while let Some(p) = i.pop_due(t) {
                    out.push(p);
                }
            }
            (out, i.stats.clone())
        };
        let (a, sa) = run(7);
        let (b, _) = run(7);
        assert_eq!(a, b, "same seed, same fates");
        assert!(sa.lost > 150 && sa.lost < 250, "{sa:?}");
        assert!(sa.duplicated > 50 && sa.reordered > 200 && sa.corrupted > 20, "{sa:?}");
        assert!(ImpairConfig { loss: 1.5, ..ImpairConfig::default() }.validate().is_err());
    }
}
