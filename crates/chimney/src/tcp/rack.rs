//! RACK-TLP loss detection (RFC 8985) for the send side: a segment is lost when a segment
//! sent after it was delivered and a reordering window has passed since it was sent (time,
//! not duplicate-ACK counting, so a lost retransmission or a lost tail is found too); a tail
//! loss probe re-sends the last segment when the ACK clock stops.
//!
//! ```text
//!   on delivery of a segment sent at t:  RACK.xmit_ts = max(RACK.xmit_ts, t), RACK.rtt = now − t
//!   reo_wnd = min_rtt / 4 (×2 per D-SACK round, at most SRTT)
//!   lost(seg)  ⇔  seg.xmit_ts < RACK.xmit_ts  and  now ≥ seg.xmit_ts + RACK.rtt + reo_wnd
//!   PTO = 2·SRTT (+ max ACK delay when one segment is in flight), capped by the RTO
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use crate::time::Instant;

/// One transmitted segment (offsets of the send stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    end: u64,
    xmit: Instant,
    retransmitted: bool,
}

/// RACK state for one connection.
#[derive(Debug, Clone, Default)]
pub struct Rack {
    /// Segments in flight, by start offset.
    sent: BTreeMap<u64, Sent>,
    /// Send time of the most recently sent segment known delivered.
    xmit_ts: Option<Instant>,
    /// RTT of that delivery.
    rtt: Duration,
    min_rtt: Option<Duration>,
    /// Reordering window multiplier (RFC 8985 §6.2: grows with D-SACKs).
    reo_mult: u32,
}

impl Rack {
    /// Nothing sent yet.
    pub fn new() -> Rack {
        Rack { reo_mult: 1, ..Rack::default() }
    }

    /// [start, end) was (re)transmitted at `now`. What it overlaps of earlier transmissions
    /// (a retransmitted part of a larger write) is replaced; the rest of those keep their
    /// send times.
    pub fn on_send(&mut self, now: Instant, start: u64, end: u64, retransmitted: bool) {
        if start >= end {
            return;
        }
        // The entry starting before `start` that reaches into it: keep its head.
        if let Some((&s, &seg)) = self.sent.range(..start).next_back() {
            if seg.end > start {
                self.sent.insert(s, Sent { end: start, ..seg });
                if seg.end > end {
                    self.sent.insert(end, Sent { end: seg.end, ..seg });
                }
            }
        }
        // Entries starting inside [start, end): drop them, keep a tail that reaches past it.
        while let Some((&s, &seg)) = self.sent.range(start..end).next() {
            self.sent.remove(&s);
            if seg.end > end {
                self.sent.insert(end, Sent { end: seg.end, ..seg });
            }
        }
        self.sent.insert(start, Sent { end, xmit: now, retransmitted });
    }

    /// Everything below `una` is delivered (the cumulative acknowledgement) at `now`.
    pub fn on_acked(&mut self, now: Instant, una: u64) {
        while let Some(entry) = self.sent.first_entry() {
            let seg = *entry.get();
            if seg.end > una {
                break;
            }
            entry.remove();
            self.delivered(now, seg, false);
        }
    }

    /// [start, end) is delivered (cumulatively acknowledged or SACKed) at `now`. Karn: a
    /// retransmitted segment gives no RTT unless `ts_says_latest` (its timestamp echo shows
    /// it answers the latest transmission).
    pub fn on_delivered(&mut self, now: Instant, start: u64, end: u64, ts_says_latest: bool) {
        while let Some((&s, &seg)) = self.sent.range(start..end).next() {
            if seg.end > end {
                break;
            }
            self.sent.remove(&s);
            self.delivered(now, seg, ts_says_latest);
        }
    }

    fn delivered(&mut self, now: Instant, seg: Sent, ts_says_latest: bool) {
        if seg.retransmitted && !ts_says_latest {
            return;
        }
        let rtt = now.saturating_duration_since(seg.xmit);
        self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
        if self.xmit_ts.is_none_or(|t| seg.xmit >= t) {
            self.xmit_ts = Some(seg.xmit);
            self.rtt = rtt;
        }
    }

    /// Forgets every segment in flight (a retransmission timeout: all of it is sent again).
    pub fn clear_in_flight(&mut self) {
        self.sent.clear();
    }

    /// A D-SACK arrived (a retransmission was spurious): widen the reordering window.
    pub fn on_dsack(&mut self) {
        self.reo_mult = (self.reo_mult + 1).min(16);
    }

    /// The reordering window, given the smoothed RTT.
    pub fn reo_wnd(&self, srtt: Duration) -> Duration {
        (self.min_rtt.unwrap_or(Duration::ZERO) / 4 * self.reo_mult).min(srtt)
    }

    /// The segments lost at `now` (their ranges, in order, removed from the in-flight set:
    /// the caller retransmits them and reports them with `on_send`), and when to look again
    /// for those that are not lost yet but may be (the RACK reordering timer).
    pub fn detect_lost(&mut self, now: Instant, srtt: Duration) -> (Vec<(u64, u64)>, Option<Instant>) {
        let Some(latest) = self.xmit_ts else { return (Vec::new(), None) };
        let wait = self.rtt + self.reo_wnd(srtt);
        let mut lost = Vec::new();
        let mut timer: Option<Instant> = None;
        for (&s, seg) in &self.sent {
            if seg.xmit >= latest {
                continue;
            }
            let due = seg.xmit + wait;
            if now >= due {
                lost.push((s, seg.end));
            } else {
                timer = Some(timer.map_or(due, |t| t.min(due)));
            }
        }
        for (s, _) in &lost {
            self.sent.remove(s);
        }
        (lost, timer)
    }

    /// When a tail loss probe is due, if data is in flight: 2·SRTT after the last send, plus
    /// `max_ack_delay` with a single segment in flight, no later than `rto`.
    pub fn probe_timeout(&self, srtt: Duration, max_ack_delay: Duration, rto: Duration) -> Option<Instant> {
        let last = self.sent.values().map(|s| s.xmit).max()?;
        let mut pto = srtt * 2;
        if self.sent.len() == 1 {
            pto += max_ack_delay;
        }
        Some(last + pto.min(rto))
    }

    /// Segments in flight.
    pub fn in_flight(&self) -> usize {
        self.sent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_later_delivery_marks_the_earlier_segment_lost_after_the_window() {
        let mut r = Rack::new();
        let t0 = Instant::ZERO;
        for i in 0..4u64 {
            r.on_send(t0 + ms(i), i * 1000, (i + 1) * 1000, false);
        }
        // Segment 0 lost; 1 delivered 100 ms after it was sent.
        r.on_delivered(t0 + ms(101), 1000, 2000, false);
        let srtt = ms(100);
        // reo_wnd = min_rtt/4 = 25 ms: segment 0 (sent at 0) is lost at 0 + 100 + 25.
        let (lost, timer) = r.detect_lost(t0 + ms(110), srtt);
        assert!(lost.is_empty());
        assert_eq!(timer, Some(t0 + ms(125)));
        let (lost, _) = r.detect_lost(t0 + ms(125), srtt);
        assert_eq!(lost, vec![(0, 1000)]);
        // Segments sent after the delivered one are not judged by it.
        assert_eq!(r.in_flight(), 2);
    }

    #[test]
    fn a_retransmitted_part_of_a_large_write_keeps_the_rest_of_it() {
        let mut r = Rack::new();
        let t0 = Instant::ZERO;
        r.on_send(t0, 0, 10_000, false);
        r.on_send(t0 + ms(50), 3000, 4000, true);
        assert_eq!(r.in_flight(), 3);
        // The head [0, 3000) and the tail [4000, 10000) keep t0; delivered, they time 100 ms.
        r.on_delivered(t0 + ms(100), 4000, 10_000, false);
        assert_eq!(r.in_flight(), 2);
        assert_eq!(r.reo_wnd(ms(1000)), ms(25));
        // The retransmission [3000, 4000) was sent after the delivered tail: not judged lost;
        // the head was sent with it, not before it: not lost either.
        let (lost, timer) = r.detect_lost(t0 + ms(500), ms(100));
        assert!(lost.is_empty());
        assert_eq!(timer, None);
        // A later write delivered makes both lost; the cumulative ACK removes them.
        r.on_send(t0 + ms(60), 10_000, 11_000, false);
        r.on_delivered(t0 + ms(160), 10_000, 11_000, false);
        let (lost, _) = r.detect_lost(t0 + ms(500), ms(100));
        assert_eq!(lost, vec![(0, 3000), (3000, 4000)]);
        r.on_send(t0 + ms(500), 0, 4000, true);
        r.on_acked(t0 + ms(600), 4000);
        assert_eq!(r.in_flight(), 0);
    }

    #[test]
    fn karn_and_tail_probe() {
        let mut r = Rack::new();
        let t0 = Instant::ZERO;
        r.on_send(t0, 0, 1000, true);
        r.on_delivered(t0 + ms(5), 0, 1000, false);
        assert_eq!(r.reo_wnd(ms(100)), Duration::ZERO, "no sample from an ambiguous retransmission");
        r.on_send(t0 + ms(10), 1000, 2000, false);
        assert_eq!(r.probe_timeout(ms(40), ms(25), ms(500)), Some(t0 + ms(10 + 80 + 25)));
        r.on_send(t0 + ms(11), 2000, 3000, false);
        assert_eq!(r.probe_timeout(ms(40), ms(25), ms(500)), Some(t0 + ms(11 + 80)));
        assert_eq!(r.probe_timeout(ms(400), ms(25), ms(500)), Some(t0 + ms(11 + 500)), "capped by the RTO");
        r.on_dsack();
        r.on_delivered(t0 + ms(111), 2000, 3000, false);
        assert_eq!(r.reo_wnd(ms(1000)), ms(100) / 4 * 2);
    }
}
