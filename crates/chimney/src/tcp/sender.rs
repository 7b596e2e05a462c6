//! When the send side may put new data on the wire, and how much: sender-side silly window
//! syndrome avoidance and Nagle (RFC 9293 §3.8.6.2.1, RFC 896), PSH at the end of each host
//! send request, and the persist timer for a zero window (RFC 9293 §3.8.6.1, RFC 1122
//! §4.2.2.17).
//!
//! ```text
//!   D = unsent bytes, U = usable window (SND.UNA + SND.WND − SND.NXT), Eff.snd.MSS = MSS
//!   send min(D, U, MSS) when:  min(D, U) ≥ MSS                         (a full segment)
//!                          or  D ≤ U and (nothing in flight or no Nagle) (all that is left)
//!                          or  min(D, U) ≥ max window / 2                (a fair share)
//!                          or  the SWS override timer fired               (stuck too long)
//!   window 0 with data waiting: probe one byte after the RTO, doubling to 60 s
//! ```

use std::time::Duration;

/// What the send side knows when it considers sending new data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendState {
    /// Bytes posted and not yet sent (D).
    pub unsent: u64,
    /// SND.UNA + SND.WND − SND.NXT, floored at 0 (U), also bounded by the congestion window.
    pub usable: u64,
    /// The segment size (Eff.snd.MSS).
    pub mss: u64,
    /// The largest window the peer has offered.
    pub max_window: u64,
    /// Bytes sent and not acknowledged.
    pub in_flight: u64,
    /// Nagle's algorithm on (off is TCP_NODELAY).
    pub nagle: bool,
    /// The SWS override timer fired (a small segment has waited long enough).
    pub override_timer: bool,
}

/// How many new bytes to send now (one segment's worth at most), or 0 to wait.
pub fn next_segment(s: SendState) -> u64 {
    let n = s.unsent.min(s.usable);
    if n == 0 || s.mss == 0 {
        return 0;
    }
    let seg = n.min(s.mss);
    let full = n >= s.mss;
    let all_left = s.unsent <= s.usable && (s.in_flight == 0 || !s.nagle);
    let fair_share = s.max_window > 0 && n >= s.max_window / 2;
    if full || all_left || fair_share || s.override_timer {
        seg
    } else {
        0
    }
}

/// Whether a segment covering send-stream bytes [start, end) carries PSH: it holds the last
/// byte of a host send request (`nbl_ends`, ascending), or the last byte posted.
pub fn push(start: u64, end: u64, posted: u64, nbl_ends: impl IntoIterator<Item = u64>) -> bool {
    end == posted || nbl_ends.into_iter().take_while(|&e| e <= end).any(|e| e > start)
}

/// The persist timer: zero-window probes after the RTO, doubling up to a maximum.
#[derive(Debug, Clone)]
pub struct Persist {
    base: Duration,
    max: Duration,
    probes: u32,
}

impl Persist {
    /// Probes start after `rto` and back off up to `max` (RFC 1122: the interval grows
    /// exponentially; Linux caps it at 120 s, we at `max`).
    pub fn new(rto: Duration, max: Duration) -> Persist {
        Persist { base: rto, max, probes: 0 }
    }

    /// The wait before the next probe.
    pub fn interval(&self) -> Duration {
        (self.base * (1u32 << self.probes.min(16))).min(self.max)
    }

    /// A probe went out: the next one waits twice as long. Returns probes sent so far.
    pub fn probed(&mut self) -> u32 {
        self.probes += 1;
        self.probes
    }

    /// The window opened (or an ACK advanced): start over.
    pub fn reset(&mut self, rto: Duration) {
        self.base = rto;
        self.probes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(unsent: u64, usable: u64, in_flight: u64, nagle: bool) -> SendState {
        SendState { unsent, usable, mss: 1000, max_window: 64_000, in_flight, nagle, override_timer: false }
    }

    #[test]
    fn full_segments_go_small_ones_wait_under_nagle() {
        assert_eq!(next_segment(st(5000, 64_000, 3000, true)), 1000);
        // A small remainder with data in flight: Nagle holds it; without Nagle it goes.
        assert_eq!(next_segment(st(300, 64_000, 3000, true)), 0);
        assert_eq!(next_segment(st(300, 64_000, 3000, false)), 300);
        // Nothing in flight: it goes even under Nagle.
        assert_eq!(next_segment(st(300, 64_000, 0, true)), 300);
    }

    #[test]
    fn a_sliver_of_window_is_not_used_unless_it_is_a_fair_share_or_the_timer_fired() {
        // 200 bytes of window, 5000 to send: silly; wait.
        assert_eq!(next_segment(st(5000, 200, 1000, false)), 0);
        let mut s = st(5000, 200, 1000, false);
        s.override_timer = true;
        assert_eq!(next_segment(s), 200);
        // Half the peer's largest window is a fair share even below one MSS.
        let small = SendState { max_window: 300, ..st(5000, 200, 1000, true) };
        assert_eq!(next_segment(small), 200);
        assert_eq!(next_segment(st(0, 64_000, 0, false)), 0);
        assert_eq!(next_segment(st(100, 0, 0, false)), 0, "zero window: the persist timer's job");
    }

    #[test]
    fn psh_on_the_segment_that_ends_a_request() {
        let ends = [1000u64, 1500, 4000];
        assert!(push(0, 1000, 5000, ends));
        assert!(push(1000, 2000, 5000, ends), "1500 ends inside");
        assert!(!push(2000, 3000, 5000, ends));
        assert!(push(4500, 5000, 5000, ends), "the last byte posted");
    }

    #[test]
    fn persist_backs_off_to_its_cap_and_resets() {
        let mut p = Persist::new(Duration::from_millis(300), Duration::from_secs(60));
        let mut waits = Vec::new();
        for _ in 0..10 {
            waits.push(p.interval().as_millis());
            p.probed();
        }
        assert_eq!(waits, vec![300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 60000, 60000]);
        p.reset(Duration::from_millis(200));
        assert_eq!(p.interval(), Duration::from_millis(200));
    }
}
