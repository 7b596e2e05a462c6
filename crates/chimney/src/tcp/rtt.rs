//! The send side's retransmission timer (RFC 6298): SRTT, RTTVAR and RTO from RTT samples,
//! Karn's rule (no sample from a retransmitted segment, unless timestamps disambiguate it,
//! RFC 7323 §4), exponential backoff on expiry, and the bounds.
//!
//! ```text
//!   first sample R:   SRTT = R, RTTVAR = R/2
//!   later samples:    RTTVAR = 3/4·RTTVAR + 1/4·|SRTT − R|,  SRTT = 7/8·SRTT + 1/8·R
//!   RTO = SRTT + max(G, 4·RTTVAR), clamped to [min, max]; 1 s before any sample
//!   expiry:           RTO = min(2·RTO, max) until the next sample
//! ```

use std::time::Duration;

/// RFC 6298 estimator for one connection.
#[derive(Debug, Clone)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
    /// Backoff shifts applied since the last sample.
    backoff: u32,
    min: Duration,
    max: Duration,
    /// Clock granularity G.
    granularity: Duration,
}

impl RttEstimator {
    /// Initial RTO before any sample (RFC 6298 §2.1: 1 s).
    pub const INITIAL_RTO: Duration = Duration::from_secs(1);

    /// An estimator with RTO bounds `min` (RFC 6298 says 1 s; Linux uses 200 ms) and `max`
    /// (at least 60 s), and clock granularity `granularity`.
    pub fn new(min: Duration, max: Duration, granularity: Duration) -> RttEstimator {
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            rto: Self::INITIAL_RTO.clamp(min, max),
            backoff: 0,
            min,
            max,
            granularity,
        }
    }

    /// The smoothed RTT, once there is a sample.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// RTTVAR.
    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }

    /// The current RTO, backoff included.
    pub fn rto(&self) -> Duration {
        self.rto
    }

    /// A round-trip sample `r`. Callers apply Karn's rule: no sample from a segment that was
    /// retransmitted, unless its timestamp echo says which transmission it answers. A sample
    /// ends any backoff (RFC 6298 §5.7: the RTO is recomputed from it).
    pub fn sample(&mut self, r: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(r);
                self.rttvar = self.rttvar * 3 / 4 + diff / 4;
                self.srtt = Some(srtt * 7 / 8 + r / 8);
            }
        }
        self.backoff = 0;
        let srtt = self.srtt.unwrap_or(r);
        self.rto = (srtt + self.granularity.max(self.rttvar * 4)).clamp(self.min, self.max);
    }

    /// The retransmission timer expired: RTO doubles (RFC 6298 §5.5), up to the maximum.
    /// Returns how many times in a row it has backed off.
    pub fn back_off(&mut self) -> u32 {
        self.backoff += 1;
        self.rto = (self.rto * 2).min(self.max);
        self.backoff
    }

    /// Consecutive expiries since the last sample.
    pub fn backoffs(&self) -> u32 {
        self.backoff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn est() -> RttEstimator {
        RttEstimator::new(ms(200), Duration::from_secs(120), ms(1))
    }

    #[test]
    fn first_sample_then_smoothing_by_the_rfc() {
        let mut e = est();
        assert_eq!(e.rto(), Duration::from_secs(1), "before any sample");
        e.sample(ms(100));
        assert_eq!((e.srtt(), e.rttvar()), (Some(ms(100)), ms(50)));
        assert_eq!(e.rto(), ms(300), "SRTT + 4·RTTVAR");
        e.sample(ms(200));
        // RTTVAR = 3/4·50 + 1/4·100 = 62.5; SRTT = 7/8·100 + 1/8·200 = 112.5
        assert_eq!(e.rttvar(), Duration::from_micros(62_500));
        assert_eq!(e.srtt(), Some(Duration::from_micros(112_500)));
        assert_eq!(e.rto(), Duration::from_micros(112_500 + 250_000));
    }

    #[test]
    fn bounds_and_granularity() {
        let mut e = est();
        e.sample(Duration::from_micros(10));
        assert_eq!(e.rto(), ms(200), "never below the minimum");
        let mut g = RttEstimator::new(Duration::ZERO, Duration::from_secs(60), ms(10));
        for _ in 0..50 {
            g.sample(ms(50));
        }
        assert_eq!(g.rto(), ms(60), "a steady RTT leaves SRTT + G");
    }

    #[test]
    fn backoff_doubles_to_the_maximum_and_a_sample_ends_it() {
        let mut e = est();
        e.sample(ms(100));
        let mut last = e.rto();
        for i in 1..=12 {
            assert_eq!(e.back_off(), i);
            assert_eq!(e.rto(), (last * 2).min(Duration::from_secs(120)));
            last = e.rto();
        }
        assert_eq!(e.rto(), Duration::from_secs(120));
        e.sample(ms(100));
        assert_eq!(e.backoffs(), 0);
        assert!(e.rto() < Duration::from_secs(1));
    }
}
