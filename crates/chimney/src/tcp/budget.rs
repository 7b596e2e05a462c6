//! The engine-wide budget for replies to junk (RFC 5961 §7): ACKs that answer unacceptable
//! segments, bad ACKs and SYNs on synchronized connections. Each connection also spaces its
//! own such replies ([`TcpConfig::junk_reply_interval`](super::TcpConfig)); this budget bounds
//! their sum, so that a flood spread over many connections (or spoofed at one) cannot turn the
//! target into an ACK generator.
//!
//! As Linux after CVE-2016-5696, the per-second allowance is drawn at random around the
//! configured limit each second: a fixed global counter is a side channel through which an
//! off-path attacker learns whether a guessed 4-tuple exists (its probes and a known
//! connection's replies would share a countable budget).

use crate::time::Instant;

/// A per-second allowance of junk replies, shared by every connection of one engine.
#[derive(Debug, Clone)]
pub struct ReplyBudget {
    /// Mean replies per second (0: unlimited).
    limit: u32,
    /// Start of the current one-second window.
    window: Option<Instant>,
    /// Replies still allowed in this window.
    left: u32,
    rng: u64,
    /// Replies allowed in the current window so far, in all, and the most in any window.
    in_window: u32,
    sent: u64,
    peak: u32,
    /// Replies suppressed because a connection replied to junk less than its interval ago.
    pub suppressed_conn: u64,
    /// Replies suppressed because the engine's budget for this second was spent.
    pub suppressed_global: u64,
}

impl ReplyBudget {
    /// A budget of about `limit` replies per second (0: unlimited), its draws seeded.
    pub fn new(limit: u32, seed: u64) -> ReplyBudget {
        ReplyBudget {
            limit,
            window: None,
            left: 0,
            rng: seed | 1,
            in_window: 0,
            sent: 0,
            peak: 0,
            suppressed_conn: 0,
            suppressed_global: 0,
        }
    }

    fn next(&mut self) -> u64 {
        // xorshift64*: enough to blur the allowance; not a secret.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Whether one more reply may go out at `now` (and takes it from the allowance).
    pub fn allow(&mut self, now: Instant) -> bool {
        if self.limit == 0 {
            self.sent += 1;
            return true;
        }
        let fresh = self.window.is_none_or(|w| now.saturating_duration_since(w).as_secs() >= 1);
        if fresh {
            self.window = Some(now);
            // Uniform in [limit/2, limit*3/2).
            let half = u64::from(self.limit / 2).max(1);
            self.left = (half + self.next() % (2 * half)) as u32;
            self.in_window = 0;
        }
        if self.left == 0 {
            self.suppressed_global += 1;
            return false;
        }
        self.left -= 1;
        self.sent += 1;
        self.in_window += 1;
        self.peak = self.peak.max(self.in_window);
        true
    }

    /// Replies to junk sent in all.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// The most replies to junk sent within one budget window (one second).
    pub fn peak(&self) -> u32 {
        self.peak
    }

    /// The configured mean per second (0: unlimited).
    pub fn limit(&self) -> u32 {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allowance_is_bounded_and_refills_each_second() {
        let mut b = ReplyBudget::new(1000, 7);
        let t0 = Instant::ZERO + Duration::from_millis(5);
        let n = (0..10_000).filter(|_| b.allow(t0)).count();
        assert!((500..1500).contains(&n), "{n}");
        assert_eq!(b.suppressed_global, 10_000 - n as u64);
        // Still the same second: nothing more.
        assert!(!b.allow(t0 + Duration::from_millis(999)));
        // A new second: a new allowance, drawn again.
        let m = (0..10_000).filter(|_| b.allow(t0 + Duration::from_secs(1))).count();
        assert!((500..1500).contains(&m), "{m}");
    }

    #[test]
    fn zero_is_unlimited() {
        let mut b = ReplyBudget::new(0, 7);
        assert!((0..100_000).all(|_| b.allow(Instant::ZERO)));
        assert_eq!(b.suppressed_global, 0);
    }
}
