//! The send side's congestion control: CUBIC (RFC 9438) by default, NewReno (RFC 5681, RFC
//! 6582) selectable. Sans-IO like the rest: fed acknowledged bytes, losses, timeouts and the
//! clock; answers the congestion window in bytes. The loss-recovery machinery (SACK
//! scoreboard, RACK-TLP) decides *when* a loss happened; this decides how much may fly.
//!
//! ```text
//!   slow start      cwnd < ssthresh: cwnd += min(acked, SMSS) per ACK (RFC 3465 L = 1)
//!   avoidance       NewReno: +SMSS per cwnd acknowledged;  CUBIC: toward
//!                   W(t) = C·(t − K)³ + W_max (C = 0.4, K = ∛(W_max·(1−β)/C)), never below
//!                   the Reno-friendly estimate
//!   loss (recovery) NewReno: ssthresh = max(flight/2, 2·SMSS); CUBIC: ssthresh = cwnd·β
//!                   (β = 0.7, fast convergence); cwnd = ssthresh
//!   timeout         ssthresh as on loss, cwnd = 1·SMSS (the loss window)
//! ```

use std::time::Duration;

use crate::time::Instant;

/// Which algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CongestionAlgorithm {
    /// RFC 9438 (Linux's default).
    #[default]
    Cubic,
    /// RFC 5681 / RFC 6582.
    NewReno,
}

const CUBIC_C: f64 = 0.4;
const CUBIC_BETA: f64 = 0.7;

/// A connection's congestion state.
#[derive(Debug, Clone)]
pub struct Congestion {
    algo: CongestionAlgorithm,
    smss: u32,
    cwnd: u32,
    ssthresh: u32,
    /// Bytes acknowledged in congestion avoidance not yet turned into window (NewReno, and
    /// CUBIC's Reno-friendly estimate).
    acked_in_ca: u32,
    /// CUBIC: the window before the last reduction (segments), the one before that (fast
    /// convergence), when this avoidance epoch began, K, and the Reno-friendly estimate.
    w_max: f64,
    w_last_max: f64,
    epoch: Option<Instant>,
    k: f64,
    w_est: f64,
}

impl Congestion {
    /// The initial window (RFC 6928): min(10·SMSS, max(2·SMSS, 14,600 bytes)).
    pub fn initial_window(smss: u32) -> u32 {
        (10 * smss).min((2 * smss).max(14_600))
    }

    /// A connection sending segments of `smss` bytes.
    pub fn new(algo: CongestionAlgorithm, smss: u32) -> Congestion {
        let smss = smss.max(1);
        Congestion {
            algo,
            smss,
            cwnd: Self::initial_window(smss),
            ssthresh: u32::MAX,
            acked_in_ca: 0,
            w_max: 0.0,
            w_last_max: 0.0,
            epoch: None,
            k: 0.0,
            w_est: 0.0,
        }
    }

    /// The congestion window, bytes.
    pub fn cwnd(&self) -> u32 {
        self.cwnd
    }

    /// The slow-start threshold, bytes (`u32::MAX` until the first loss).
    pub fn ssthresh(&self) -> u32 {
        self.ssthresh
    }

    /// Whether in slow start.
    pub fn in_slow_start(&self) -> bool {
        self.cwnd < self.ssthresh
    }

    /// `acked` new bytes were acknowledged at `now` (not during loss recovery); `srtt` is
    /// the smoothed RTT when known (CUBIC's Reno-friendly region needs it).
    pub fn on_ack(&mut self, now: Instant, acked: u32, srtt: Option<Duration>) {
        if acked == 0 {
            return;
        }
        if self.in_slow_start() {
            self.cwnd = self.cwnd.saturating_add(acked.min(self.smss)).min(self.ssthresh.max(self.cwnd));
            if !self.in_slow_start() {
                self.epoch = None;
            }
            return;
        }
        match self.algo {
            CongestionAlgorithm::NewReno => {
                self.acked_in_ca = self.acked_in_ca.saturating_add(acked);
                while self.acked_in_ca >= self.cwnd {
                    self.acked_in_ca -= self.cwnd;
                    self.cwnd = self.cwnd.saturating_add(self.smss);
                }
            }
            CongestionAlgorithm::Cubic => self.cubic_ack(now, acked, srtt),
        }
    }

    fn cubic_ack(&mut self, now: Instant, acked: u32, srtt: Option<Duration>) {
        let smss = f64::from(self.smss);
        let cwnd_seg = f64::from(self.cwnd) / smss;
        let epoch = *self.epoch.get_or_insert_with(|| {
            // A new avoidance epoch (RFC 9438 §4.2): from where we are now.
            if self.w_max < cwnd_seg {
                self.w_max = cwnd_seg;
                self.k = 0.0;
            } else {
                self.k = ((self.w_max - cwnd_seg) / CUBIC_C).cbrt();
            }
            self.w_est = cwnd_seg;
            now
        });
        let rtt = srtt.unwrap_or(Duration::from_millis(100)).as_secs_f64();
        let t = now.saturating_duration_since(epoch).as_secs_f64() + rtt;
        let w_cubic = CUBIC_C * (t - self.k).powi(3) + self.w_max;
        // Reno-friendly estimate (RFC 9438 §4.3): α = 3(1−β)/(1+β) per RTT.
        let alpha = 3.0 * (1.0 - CUBIC_BETA) / (1.0 + CUBIC_BETA);
        self.w_est += alpha * (f64::from(acked) / smss) / cwnd_seg;
        let target = w_cubic.max(self.w_est).min(1.5 * cwnd_seg);
        if target > cwnd_seg {
            // (target − cwnd)/cwnd segments per segment acknowledged (§4.4).
            let inc = (target - cwnd_seg) / cwnd_seg * (f64::from(acked) / smss) * smss;
            self.cwnd = self.cwnd.saturating_add(inc.max(0.0) as u32).max(self.cwnd);
        }
    }

    /// A loss detected by acknowledgements (duplicate ACKs, SACK, RACK): the window to use
    /// through recovery. `flight` is the bytes in flight when it was detected.
    pub fn on_loss(&mut self, flight: u32) {
        match self.algo {
            CongestionAlgorithm::NewReno => {
                self.ssthresh = (flight / 2).max(2 * self.smss);
            }
            CongestionAlgorithm::Cubic => {
                let cwnd_seg = f64::from(self.cwnd) / f64::from(self.smss);
                // Fast convergence (§4.7): release bandwidth when the maximum fell.
                self.w_max = if cwnd_seg < self.w_last_max { cwnd_seg * (1.0 + CUBIC_BETA) / 2.0 } else { cwnd_seg };
                self.w_last_max = cwnd_seg;
                self.ssthresh = ((f64::from(self.cwnd) * CUBIC_BETA) as u32).max(2 * self.smss);
            }
        }
        self.cwnd = self.ssthresh;
        self.acked_in_ca = 0;
        self.epoch = None;
    }

    /// The retransmission timer expired (RFC 5681 §3.1, RFC 9438 §4.8): ssthresh as on a loss,
    /// the window down to one segment.
    pub fn on_timeout(&mut self, flight: u32) {
        self.on_loss(flight);
        self.cwnd = self.smss;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMSS: u32 = 1000;

    /// Acknowledges one window's worth, segment by segment, over one RTT; returns the time.
    fn one_rtt(c: &mut Congestion, now: Instant, rtt: Duration) -> Instant {
        let segs = c.cwnd() / SMSS;
        for _ in 0..segs {
            c.on_ack(now, SMSS, Some(rtt));
        }
        now + rtt
    }

    #[test]
    fn initial_window_by_rfc_6928() {
        assert_eq!(Congestion::initial_window(1460), 14_600);
        assert_eq!(Congestion::initial_window(536), 5_360);
        assert_eq!(Congestion::initial_window(9000), 18_000);
    }

    #[test]
    fn slow_start_doubles_per_rtt_then_newreno_adds_a_segment_per_rtt() {
        let mut c = Congestion::new(CongestionAlgorithm::NewReno, SMSS);
        let rtt = Duration::from_millis(50);
        let mut now = Instant::ZERO;
        assert_eq!(c.cwnd(), 10 * SMSS);
        now = one_rtt(&mut c, now, rtt);
        assert_eq!(c.cwnd(), 20 * SMSS);
        c.on_loss(c.cwnd());
        assert_eq!((c.cwnd(), c.ssthresh()), (10 * SMSS, 10 * SMSS));
        for i in 1..=5 {
            now = one_rtt(&mut c, now, rtt);
            assert_eq!(c.cwnd(), (10 + i) * SMSS, "one SMSS per RTT in avoidance");
        }
        c.on_timeout(c.cwnd());
        assert_eq!((c.cwnd(), c.ssthresh()), (SMSS, 15 * SMSS / 2));
    }

    #[test]
    fn cubic_reduces_by_beta_and_climbs_back_to_w_max_around_k() {
        let mut c = Congestion::new(CongestionAlgorithm::Cubic, SMSS);
        // A long RTT: with a short one the Reno-friendly estimate (RFC 9438 §4.3) outgrows
        // the cubic curve, as it should.
        let rtt = Duration::from_millis(200);
        let mut now = Instant::ZERO;
        for _ in 0..4 {
            now = one_rtt(&mut c, now, rtt);
        }
        let before = c.cwnd();
        assert_eq!(before, 160 * SMSS);
        c.on_loss(before);
        assert_eq!(c.cwnd(), 112 * SMSS, "β = 0.7");
        // K = ∛(160·0.3/0.4) ≈ 4.93 s: concave growth back to W_max.
        let k = Duration::from_secs_f64((160.0 * 0.3 / 0.4f64).cbrt());
        let mut at_k = 0;
        let start = now;
        while now < start + k + Duration::from_millis(500) {
            now = one_rtt(&mut c, now, rtt);
            if at_k == 0 && now >= start + k {
                at_k = c.cwnd();
            }
        }
        let w_max = 160 * SMSS;
        assert!(at_k > w_max * 95 / 100 && at_k < w_max * 105 / 100, "{at_k} at K, W_max {w_max}");
        assert!(c.cwnd() >= at_k, "convex growth beyond W_max");
        // Fast convergence: a second loss below the old maximum lowers W_max further.
        c.on_loss(c.cwnd());
        let cw = c.cwnd();
        c.on_loss(cw);
        assert!(c.cwnd() < cw);
        c.on_timeout(c.cwnd());
        assert_eq!(c.cwnd(), SMSS);
    }

    #[test]
    fn cubic_grows_at_least_renos_friendly_rate_at_short_rtts() {
        // At 5 ms the cubic curve is flat for seconds: the Reno-friendly estimate (α =
        // 3(1−β)/(1+β) ≈ 0.53 segment per RTT from 0.7·W_max) carries the window.
        let rtt = Duration::from_millis(5);
        let mut c = Congestion::new(CongestionAlgorithm::Cubic, SMSS);
        let mut now = Instant::ZERO;
        for _ in 0..4 {
            now = one_rtt(&mut c, now, rtt);
        }
        c.on_loss(c.cwnd());
        assert_eq!(c.cwnd(), 112 * SMSS);
        for _ in 0..100 {
            now = one_rtt(&mut c, now, rtt);
        }
        assert!(c.cwnd() >= (112 + 50) * SMSS, "{}", c.cwnd());
        assert!(c.cwnd() <= (112 + 60) * SMSS, "{}", c.cwnd());
    }

    #[test]
    fn windows_never_shrink_on_acks_nor_overflow() {
        for algo in [CongestionAlgorithm::Cubic, CongestionAlgorithm::NewReno] {
            let mut c = Congestion::new(algo, SMSS);
            let mut now = Instant::ZERO;
            let mut last = c.cwnd();
            for i in 0..100_000u32 {
                if i % 997 == 0 {
                    c.on_loss(c.cwnd());
                    last = c.cwnd();
                }
                now = now + Duration::from_millis(1);
                c.on_ack(now, SMSS * (1 + i % 3), Some(Duration::from_millis(10)));
                assert!(c.cwnd() >= last, "{algo:?}");
                last = c.cwnd();
            }
        }
    }
}
