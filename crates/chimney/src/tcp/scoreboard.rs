//! The send side's SACK scoreboard (RFC 6675): what the peer holds above the cumulative
//! acknowledgement, which holes are lost, what to retransmit next, and how many bytes are
//! in the network ("pipe"). Offsets are the send stream's (u64 bytes since the first send
//! byte, as [`crate::contract::send::SendQueue`]), so no sequence arithmetic lives here.
//!
//! ```text
//!   una ──hole──[sacked]──hole──[sacked][sacked]── nxt
//!   IsLost(hole): ≥ DupThresh SACKed blocks above it, or > (DupThresh − 1)·SMSS SACKed bytes
//!   pipe = Σ holes: (not lost ? len : 0) + (retransmitted part ≤ HighRxt)
//!   NextSeg: the first lost hole above HighRxt, at most SMSS of it
//!   RACK-lost (RFC 8985): ranges whose latest transmission is lost, even below HighRxt
//!            (a lost retransmission): sent first, counted 0 in pipe
//! ```

use std::collections::BTreeMap;

/// RFC 6675's DupThresh.
pub const DUP_THRESH: u64 = 3;

/// What one acknowledgement changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AckChange {
    /// Bytes newly covered by the cumulative acknowledgement.
    pub acked: u64,
    /// Bytes newly SACKed (above it).
    pub sacked: u64,
}

/// A connection's scoreboard.
#[derive(Debug, Clone, Default)]
pub struct Scoreboard {
    una: u64,
    nxt: u64,
    /// SACKed ranges above `una`, maximal and disjoint: start → end.
    sacked: BTreeMap<u64, u64>,
    /// The highest offset retransmitted in this recovery (RFC 6675 HighRxt), exclusive.
    high_rxt: u64,
    /// Ranges RACK found lost and not sent again yet: start → end, disjoint.
    rack_lost: BTreeMap<u64, u64>,
}

impl Scoreboard {
    /// An empty scoreboard.
    pub fn new() -> Scoreboard {
        Scoreboard::default()
    }

    /// The cumulative acknowledgement (SND.UNA as an offset).
    pub fn una(&self) -> u64 {
        self.una
    }

    /// One past the highest byte sent.
    pub fn nxt(&self) -> u64 {
        self.nxt
    }

    /// Bytes sent up to `end` (exclusive; only ever grows).
    pub fn on_send(&mut self, end: u64) {
        self.nxt = self.nxt.max(end);
    }

    /// An acknowledgement: cumulative up to `cum`, with SACK blocks (start, end) in any
    /// order. Blocks below `cum` (D-SACK) or beyond what was sent are clipped away: a peer
    /// cannot SACK what was never sent, nor move anything backwards.
    pub fn on_ack(&mut self, cum: u64, blocks: &[(u64, u64)]) -> AckChange {
        let mut change = AckChange::default();
        let cum = cum.min(self.nxt);
        if cum > self.una {
            // Bytes newly acknowledged that were not SACKed before.
            let sacked_below = self.sacked_in(self.una, cum);
            change.acked = cum - self.una - sacked_below;
            self.una = cum;
            // Drop SACK state below the new una.
            let below: Vec<u64> = self.sacked.range(..cum).map(|(s, _)| *s).collect();
            for s in below {
                let e = self.sacked.remove(&s).expect("present");
                if e > cum {
                    self.sacked.insert(cum, e);
                }
            }
            self.high_rxt = self.high_rxt.max(self.una);
            remove_range(&mut self.rack_lost, 0, cum);
        }
        for &(s, e) in blocks {
            let (s, e) = (s.max(self.una), e.min(self.nxt));
            if s >= e {
                continue;
            }
            change.sacked += (e - s) - self.sacked_in(s, e);
            self.insert(s, e);
        }
        change
    }

    /// SACKed bytes within [s, e).
    fn sacked_in(&self, s: u64, e: u64) -> u64 {
        let mut n = 0;
        // A range starting before `s` may reach into it.
        if let Some((_, &b)) = self.sacked.range(..s).next_back() {
            if b > s {
                n += b.min(e) - s;
            }
        }
        for (&a, &b) in self.sacked.range(s..e) {
            n += b.min(e) - a;
        }
        n
    }

    fn insert(&mut self, mut s: u64, mut e: u64) {
        if let Some((&a, &b)) = self.sacked.range(..=s).next_back() {
            if b >= s {
                s = a;
                e = e.max(b);
                self.sacked.remove(&a);
            }
        }
        let inside: Vec<(u64, u64)> = self.sacked.range(s..=e).map(|(a, b)| (*a, *b)).collect();
        for (a, b) in inside {
            self.sacked.remove(&a);
            e = e.max(b);
        }
        self.sacked.insert(s, e);
    }

    /// Whether anything is SACKed (recovery needs SACK information).
    pub fn has_sacks(&self) -> bool {
        !self.sacked.is_empty()
    }

    /// The holes (unSACKed ranges) in [una, nxt), in order.
    pub fn holes(&self) -> Vec<(u64, u64)> {
        let mut v = Vec::new();
        let mut at = self.una;
        for (&a, &b) in &self.sacked {
            if a > at {
                v.push((at, a));
            }
            at = at.max(b);
        }
        if at < self.nxt {
            v.push((at, self.nxt));
        }
        v
    }

    /// RFC 6675 IsLost for the bytes at `at`: DupThresh discontiguous SACKed blocks above
    /// it, or more than (DupThresh − 1)·SMSS SACKed bytes above it.
    pub fn is_lost(&self, at: u64, smss: u64) -> bool {
        let (mut blocks, mut bytes) = (0u64, 0u64);
        for (&a, &b) in self.sacked.range(at..) {
            blocks += 1;
            bytes += b - a;
            if blocks >= DUP_THRESH || bytes > (DUP_THRESH - 1) * smss {
                return true;
            }
        }
        false
    }

    /// RFC 6675 SetPipe: bytes presumed in the network. Bytes RACK found lost count
    /// nothing (neither their first transmission nor a retransmission is out there).
    pub fn pipe(&self, smss: u64) -> u64 {
        self.holes()
            .into_iter()
            .map(|(a, b)| {
                let lost = self.is_lost(a, smss);
                let retransmitted = self.high_rxt.clamp(a, b) - a;
                let rack = overlap(&self.rack_lost, a, b);
                let rack_rxt = overlap(&self.rack_lost, a, self.high_rxt.clamp(a, b));
                (if lost { 0 } else { b - a - rack }) + retransmitted - rack_rxt
            })
            .sum()
    }

    /// RFC 6675 NextSeg rule 1: RACK-lost bytes first, then the first lost, not yet
    /// retransmitted bytes (at most `smss` of them), if any. (New data, rule 2, is the
    /// caller's choice when this is `None`.)
    pub fn next_lost(&self, smss: u64) -> Option<(u64, u64)> {
        let holes = self.holes();
        for (&la, &lb) in &self.rack_lost {
            for &(a, b) in &holes {
                let (x, y) = (a.max(la), b.min(lb));
                if x < y {
                    return Some((x, y.min(x + smss)));
                }
            }
        }
        holes.into_iter().find_map(|(a, b)| {
            let a = a.max(self.high_rxt);
            (a < b && self.is_lost(a, smss)).then(|| (a, b.min(a + smss)))
        })
    }

    /// RACK (RFC 8985 §6.2) found the latest transmission of [s, e) lost: send it again,
    /// even if it lies below HighRxt.
    pub fn mark_lost(&mut self, s: u64, e: u64) {
        let (s, e) = (s.max(self.una), e.min(self.nxt));
        if s >= e {
            return;
        }
        remove_range(&mut self.rack_lost, s, e);
        let (mut s, mut e) = (s, e);
        if let Some((&a, &b)) = self.rack_lost.range(..s).next_back() {
            if b == s {
                self.rack_lost.remove(&a);
                s = a;
            }
        }
        if let Some(b) = self.rack_lost.remove(&e) {
            e = b;
        }
        self.rack_lost.insert(s, e);
    }

    /// Whether RACK has lost ranges waiting to be sent again.
    pub fn has_rack_lost(&self) -> bool {
        !self.rack_lost.is_empty()
    }

    /// Records a retransmission of [s, e) (moves HighRxt; no longer RACK-lost).
    pub fn on_retransmit(&mut self, s: u64, e: u64) {
        self.high_rxt = self.high_rxt.max(e);
        remove_range(&mut self.rack_lost, s, e);
    }

    /// Forgets what the peer SACKed (RFC 6675 §5.1: after a retransmission timeout the
    /// scoreboard may be reneged) and resets HighRxt.
    pub fn on_timeout(&mut self) {
        self.sacked.clear();
        self.rack_lost.clear();
        self.high_rxt = self.una;
    }
}

/// Bytes of the disjoint ranges `m` within [s, e).
fn overlap(m: &BTreeMap<u64, u64>, s: u64, e: u64) -> u64 {
    if s >= e {
        return 0;
    }
    let mut n = 0;
    if let Some((_, &b)) = m.range(..s).next_back() {
        n += b.min(e).saturating_sub(s);
    }
    for (&a, &b) in m.range(s..e) {
        n += b.min(e) - a;
    }
    n
}

/// Removes [s, e) from the disjoint ranges `m`, splitting a range that straddles an end.
fn remove_range(m: &mut BTreeMap<u64, u64>, s: u64, e: u64) {
    if s >= e {
        return;
    }
    if let Some((&a, &b)) = m.range(..s).next_back() {
        if b > s {
            m.insert(a, s);
            if b > e {
                m.insert(e, b);
            }
        }
    }
    while let Some((&a, &b)) = m.range(s..e).next() {
        m.remove(&a);
        if b > e {
            m.insert(e, b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const M: u64 = 1000;

    #[test]
    fn one_lost_segment_then_three_sacks() {
        let mut s = Scoreboard::new();
        s.on_send(10 * M);
        assert_eq!(s.on_ack(M, &[]), AckChange { acked: M, sacked: 0 });
        // Segment 2 lost; 3, 4, 5 SACKed one by one.
        s.on_ack(M, &[(2 * M, 3 * M)]);
        assert!(!s.is_lost(M, M));
        s.on_ack(M, &[(2 * M, 4 * M)]);
        assert!(!s.is_lost(M, M), "2·SMSS SACKed: not yet");
        let c = s.on_ack(M, &[(2 * M, 5 * M)]);
        assert_eq!(c.sacked, M);
        assert!(s.is_lost(M, M), "more than (DupThresh − 1)·SMSS above it");
        assert_eq!(s.next_lost(M), Some((M, 2 * M)));
        // pipe: the lost hole counts 0, the tail hole [5, 10) counts 5.
        assert_eq!(s.pipe(M), 5 * M);
        s.on_retransmit(M, 2 * M);
        assert_eq!(s.next_lost(M), None, "retransmitted once per recovery");
        assert_eq!(s.pipe(M), 6 * M, "the retransmission is in flight");
        // The retransmission arrives: the cumulative ACK jumps over the SACKed bytes.
        assert_eq!(s.on_ack(5 * M, &[]), AckChange { acked: M, sacked: 0 });
        assert!(!s.has_sacks());
    }

    #[test]
    fn a_rack_lost_retransmission_is_sent_again_and_leaves_the_pipe() {
        let mut s = Scoreboard::new();
        s.on_send(10 * M);
        s.on_ack(0, &[(M, 5 * M)]);
        assert_eq!(s.next_lost(M), Some((0, M)));
        s.on_retransmit(0, M);
        assert_eq!(s.next_lost(M), None);
        assert_eq!(s.pipe(M), 6 * M, "the tail [5, 10) and the retransmission");
        // RACK: the retransmission is lost too, and so is [5, 7).
        s.mark_lost(0, M);
        s.mark_lost(5 * M, 7 * M);
        assert!(s.has_rack_lost());
        assert_eq!(s.pipe(M), 3 * M);
        assert_eq!(s.next_lost(M), Some((0, M)), "below HighRxt, sent again");
        s.on_retransmit(0, M);
        assert_eq!(s.next_lost(M), Some((5 * M, 6 * M)));
        s.on_retransmit(5 * M, 6 * M);
        // The peer SACKs [6, 7) meanwhile: nothing of it is resent.
        s.on_ack(0, &[(6 * M, 7 * M)]);
        assert_eq!(s.next_lost(M), None);
        s.on_ack(10 * M, &[]);
        assert!(!s.has_rack_lost());
    }

    #[test]
    fn lies_are_clipped() {
        let mut s = Scoreboard::new();
        s.on_send(5 * M);
        // SACK beyond what was sent, D-SACK below una, a cumulative ACK of unsent data.
        s.on_ack(M, &[(4 * M, 9 * M), (0, M)]);
        assert_eq!(s.holes(), vec![(M, 4 * M)]);
        s.on_ack(100 * M, &[]);
        assert_eq!(s.una(), 5 * M);
        assert!(s.holes().is_empty());
    }

    proptest! {
        /// Any SACK blocks and cumulative ACKs: holes and SACKed ranges partition [una, nxt);
        /// every byte is counted once as acked or SACKed; nothing moves backwards.
        #[test]
        fn scoreboard_stays_a_partition(
            sent in 1u64..50,
            acks in proptest::collection::vec((0u64..60, proptest::collection::vec((0u64..60, 0u64..8), 0..4)), 1..20),
        ) {
            let mut s = Scoreboard::new();
            s.on_send(sent * M);
            let mut covered = vec![false; sent as usize];
            let (mut acked, mut sacked) = (0u64, 0u64);
            for (cum, blocks) in acks {
                let blocks: Vec<(u64, u64)> = blocks.iter().map(|&(a, l)| (a * M, (a + l) * M)).collect();
                let before = s.una();
                let c = s.on_ack(cum * M, &blocks);
                prop_assert!(s.una() >= before);
                acked += c.acked;
                sacked += c.sacked;
                for (i, seg) in covered.iter_mut().enumerate() {
                    let at = i as u64 * M;
                    if at < s.una() || blocks.iter().any(|&(a, b)| a.max(before) <= at && at < b && at < sent * M) {
                        *seg = true;
                    }
                }
                let holes: u64 = s.holes().iter().map(|(a, b)| b - a).sum();
                let sacked_now: u64 = covered.iter().enumerate().filter(|(i, c)| **c && *i as u64 * M >= s.una()).count() as u64 * M;
                prop_assert_eq!(holes + sacked_now + s.una(), sent * M);
                prop_assert!(s.pipe(M) <= sent * M - s.una());
            }
            // Every covered byte was counted exactly once, as acked or as SACKed first.
            prop_assert_eq!(acked + sacked, covered.iter().filter(|c| **c).count() as u64 * M);
        }
    }
}
