//! Out-of-order reassembly with bounded memory.
//!
//! Bytes that arrive beyond RCV.NXT are written into a ring at their stream offset modulo the
//! ring's length; a set of maximal present ranges (a `BTreeMap`, O(log n) per segment) records what is
//! there. Policy: **first arrival wins** — a byte already queued is never overwritten; a later
//! segment only fills holes. Bounds: bytes are bounded by the window (nothing outside it is
//! stored) and ranges by `max_ranges` (a segment that would create one more range than that is
//! dropped and counted; the segment at RCV.NXT never goes through here, so it is always
//! admitted). SACK blocks are reported most recently changed first (RFC 2018).
//!
//! The ring is as long as what is queued spans, not the window: it is allocated on the first
//! out-of-order segment at the next power of two above that span (at least
//! [`MIN_RING`] bytes) and doubled, its ranges laid out again, when a segment lands beyond it,
//! up to the window. A connection that sees a hole of one segment under a 4 MiB window holds
//! a few KiB, not 4 MiB: ten thousand connections with a loss each stay within the bytes
//! actually in flight.

use std::collections::BTreeMap;

/// The smallest ring allocated (bytes).
pub const MIN_RING: usize = 4096;

/// Reassembly state of one connection. Offsets are absolute stream offsets (u64).
#[derive(Debug)]
pub struct Assembler {
    ring: Vec<u8>,
    ring_size: usize,
    ranges: BTreeMap<u64, u64>,
    max_ranges: usize,
    recent: [u64; 4],
    recent_len: usize,
    bytes: u64,
    /// Work units spent (ranges visited), for the per-segment CPU bound checks.
    pub work: u64,
}

/// Result of offering a segment to the assembler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// Stored (possibly only its holes): how many new bytes.
    Stored(usize),
    /// Every byte was already queued.
    Duplicate,
    /// Refused: it would exceed the range cap.
    TooManyRanges,
}

impl Assembler {
    /// An empty assembler for a window of `ring_size` bytes and at most `max_ranges` ranges.
    pub fn new(ring_size: usize, max_ranges: usize) -> Assembler {
        Assembler {
            ring: Vec::new(),
            ring_size: ring_size.max(1),
            ranges: BTreeMap::new(),
            max_ranges: max_ranges.max(1),
            recent: [0; 4],
            recent_len: 0,
            bytes: 0,
            work: 0,
        }
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Bytes queued.
    pub fn queued_bytes(&self) -> u64 {
        self.bytes
    }

    /// Ranges queued.
    pub fn ranges(&self) -> usize {
        self.ranges.len()
    }

    /// Memory held (the ring, once allocated).
    pub fn memory(&self) -> usize {
        self.ring.capacity()
    }

    /// Start of the first queued range.
    pub fn first_start(&self) -> Option<u64> {
        self.ranges.keys().next().copied()
    }

    /// Offers `data` at stream offset `start`; the caller guarantees
    /// `rcv_nxt < start` and `start + len <= rcv_nxt + ring_size` (inside the window).
    pub fn insert(&mut self, start: u64, data: &[u8]) -> Insert {
        let end = start + data.len() as u64;
        if data.is_empty() {
            return Insert::Duplicate;
        }
        // Ranges touching [start, end] (overlapping or adjacent) merge with it.
        let lo = self.ranges.range(..=start).next_back().filter(|(_, &e)| e >= start).map(|(&s, _)| s);
        let from = lo.unwrap_or(start);
        let touching: Vec<(u64, u64)> = self.ranges.range(from..=end).map(|(&s, &e)| (s, e)).collect();
        self.work += 1 + touching.len() as u64;
        if touching.is_empty() && self.ranges.len() >= self.max_ranges {
            return Insert::TooManyRanges;
        }
        self.room_for(start, end);
        // Write only the holes: first arrival wins.
        let mut cursor = start;
        let mut new = 0usize;
        for &(s, e) in &touching {
            if s > cursor {
                new += self.write(cursor, &data[(cursor - start) as usize..(s.min(end) - start) as usize]);
            }
            cursor = cursor.max(e);
        }
        if cursor < end {
            new += self.write(cursor, &data[(cursor - start) as usize..]);
        }
        if new == 0 {
            // RFC 2018 §4: the first SACK block reports the block holding this segment.
            if let Some((s0, _)) = self.range_of(start) {
                self.touch(s0);
            }
            return Insert::Duplicate;
        }
        let merged_start = touching.first().map_or(start, |&(s, _)| s.min(start));
        let merged_end = touching.last().map_or(end, |&(_, e)| e.max(end));
        for (s, _) in &touching {
            self.ranges.remove(s);
        }
        self.ranges.insert(merged_start, merged_end);
        self.bytes += new as u64;
        self.touch(merged_start);
        Insert::Stored(new)
    }

    /// Makes the ring long enough for everything queued and `[start, end)`: allocated, or
    /// doubled (up to the window) with every queued range copied to its new place.
    fn room_for(&mut self, start: u64, end: u64) {
        let lo = self.ranges.keys().next().map_or(start, |&s| s.min(start));
        // Ranges are disjoint and sorted: the last one ends last.
        let hi = self.ranges.values().next_back().map_or(end, |&e| e.max(end));
        let span = (hi - lo) as usize;
        let old = self.ring.len();
        if span <= old {
            return;
        }
        let len = span.max(MIN_RING).next_power_of_two().min(self.ring_size).max(span.min(self.ring_size));
        let mut ring = vec![0; len];
        for (&s, &e) in &self.ranges {
            let mut at = s;
            while at < e {
                let (op, np) = ((at % old as u64) as usize, (at % len as u64) as usize);
                let n = ((e - at) as usize).min(old - op).min(len - np);
                ring[np..np + n].copy_from_slice(&self.ring[op..op + n]);
                at += n as u64;
            }
        }
        self.ring = ring;
    }

    fn write(&mut self, at: u64, bytes: &[u8]) -> usize {
        let size = self.ring.len();
        let pos = (at % size as u64) as usize;
        let first = bytes.len().min(size - pos);
        self.ring[pos..pos + first].copy_from_slice(&bytes[..first]);
        self.ring[..bytes.len() - first].copy_from_slice(&bytes[first..]);
        bytes.len()
    }

    fn touch(&mut self, start: u64) {
        let mut list = [start, 0, 0, 0];
        let mut n = 1;
        for &r in &self.recent[..self.recent_len] {
            if n < 4 && self.range_of(r).is_some_and(|(s, _)| s != start) && !list[..n].contains(&r) {
                list[n] = r;
                n += 1;
            }
        }
        self.recent = list;
        self.recent_len = n;
    }

    fn range_of(&self, off: u64) -> Option<(u64, u64)> {
        self.ranges.range(..=off).next_back().filter(|(_, &e)| off < e).map(|(&s, &e)| (s, e))
    }

    /// The queued range starting at or covering `at`, if its first byte is at or before `at`.
    pub fn range_at(&self, at: u64) -> Option<(u64, u64)> {
        self.range_of(at)
    }

    /// Removes the first `len` bytes of the range starting at `start` (the first range) and
    /// hands them to `f` in at most two slices; the rest of the range stays queued.
    pub fn take_front(&mut self, start: u64, len: u64, mut f: impl FnMut(&[u8])) {
        let Some(&e) = self.ranges.get(&start) else { return };
        let len = len.min(e - start);
        self.ranges.remove(&start);
        if start + len < e {
            self.ranges.insert(start + len, e);
            for r in self.recent.iter_mut().take(self.recent_len) {
                if *r == start {
                    *r = start + len;
                }
            }
        }
        let n = len as usize;
        let size = self.ring.len();
        let pos = (start % size as u64) as usize;
        let first = n.min(size - pos);
        f(&self.ring[pos..pos + first]);
        if first < n {
            f(&self.ring[..n - first]);
        }
        self.bytes -= len;
        if self.ranges.is_empty() {
            self.recent_len = 0;
        }
    }

    /// Drops everything queued at or beyond `from` (data after a FIN).
    pub fn discard_from(&mut self, from: u64) {
        let later: Vec<(u64, u64)> = self.ranges.range(..).filter(|(_, &e)| e > from).map(|(&s, &e)| (s, e)).collect();
        for (s, e) in later {
            self.ranges.remove(&s);
            if s < from {
                self.ranges.insert(s, from);
                self.bytes -= e - from;
            } else {
                self.bytes -= e - s;
            }
        }
        if self.ranges.is_empty() {
            self.recent_len = 0;
        }
    }

    /// Drops everything queued below `upto` (bytes RCV.NXT has passed).
    pub fn discard_below(&mut self, upto: u64) {
        while let Some((&s, &e)) = self.ranges.iter().next() {
            if s >= upto {
                break;
            }
            self.ranges.remove(&s);
            if e > upto {
                self.ranges.insert(upto, e);
                self.bytes -= upto - s;
            } else {
                self.bytes -= e - s;
            }
        }
    }

    /// SACK blocks as stream offsets, most recently changed first, at most `max`.
    pub fn sack_blocks(&self, max: usize) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.recent[..self.recent_len].iter().filter_map(|&r| self.range_of(r)).take(max)
    }

    /// Frees the ring (nothing queued).
    pub fn shrink(&mut self) {
        if self.ranges.is_empty() {
            self.ring = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stream(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 253) as u8).collect()
    }

    #[test]
    fn first_arrival_wins_and_ranges_merge() {
        let mut a = Assembler::new(1000, 8);
        assert_eq!(a.insert(10, &[1; 10]), Insert::Stored(10));
        assert_eq!(a.insert(15, &[2; 10]), Insert::Stored(5));
        assert_eq!(a.insert(12, &[3; 3]), Insert::Duplicate);
        assert_eq!(a.ranges(), 1);
        let mut got = Vec::new();
        a.take_front(10, 15, |s| got.extend_from_slice(s));
        assert_eq!(got, [[1u8; 10].as_slice(), &[2; 5]].concat());
        assert!(a.is_empty());
    }

    #[test]
    fn range_cap_refuses_new_ranges_only() {
        let mut a = Assembler::new(1000, 2);
        assert_eq!(a.insert(10, &[1]), Insert::Stored(1));
        assert_eq!(a.insert(20, &[1]), Insert::Stored(1));
        assert_eq!(a.insert(30, &[1]), Insert::TooManyRanges);
        assert_eq!(a.insert(11, &[1, 1]), Insert::Stored(2));
        let sack: Vec<_> = a.sack_blocks(3).collect();
        assert_eq!(sack, vec![(10, 13), (20, 21)]);
    }

    #[test]
    fn the_ring_follows_what_is_queued_not_the_window() {
        let mut a = Assembler::new(4 << 20, 64);
        let d = stream(200_000);
        assert_eq!(a.insert(1448, &d[1448..2896]), Insert::Stored(1448));
        assert_eq!(a.memory(), MIN_RING, "one segment past a hole: the smallest ring");
        assert_eq!(a.insert(100_000, &d[100_000..101_448]), Insert::Stored(1448));
        assert_eq!(a.memory(), 131_072, "grown to the span, laid out again");
        let mut got = Vec::new();
        a.take_front(1448, 1448, |s| got.extend_from_slice(s));
        assert_eq!(got, &d[1448..2896], "the first range survived the move");
        got.clear();
        a.take_front(100_000, 1448, |s| got.extend_from_slice(s));
        assert_eq!(got, &d[100_000..101_448]);
    }

    proptest! {
        /// Any permutation, duplication and overlap of a stream's segments reassembles to the
        /// exact stream, and memory never exceeds the window.
        #[test]
        fn reassembly_is_exact(
            cuts in proptest::collection::vec((0usize..3000, 1usize..400), 1..80),
            seed: u64,
            scale in 1usize..=16,
        ) {
            // Scaled up, the window is many times the smallest ring: the ring grows, its
            // ranges laid out again, while segments keep arriving.
            let (win, total) = (4096 * scale, 3000 * scale);
            let cuts: Vec<(usize, usize)> = cuts.iter().map(|&(s, l)| (s * scale, l * scale)).collect();
            let data = stream(total);
            let mut a = Assembler::new(win, 64);
            let mut out: Vec<u8> = Vec::new();
            let mut segs: Vec<(usize, usize)> = cuts.iter().map(|&(s, l)| (s, (s + l).min(total))).collect();
            segs.push((0, 1));
            // shuffle deterministically
            let mut x = seed | 1;
            for i in (1..segs.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                segs.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let mut rounds = 0;
            while out.len() < total && rounds < 50 {
                rounds += 1;
                for &(s, e) in &segs {
                    let nxt = out.len();
                    if e <= nxt { continue; }
                    let s2 = s.max(nxt);
                    let e2 = e.min(nxt + win);
                    if s2 >= e2 { continue; }
                    if s2 == nxt {
                        // in order: deliver, then drain contiguous ranges
                        let mut cur = nxt as u64;
                        while cur < e2 as u64 {
                            if let Some((rs, re)) = a.range_at(cur) {
                                prop_assert_eq!(rs, cur);
                                a.take_front(rs, re - rs, |b| out.extend_from_slice(b));
                                cur = re;
                            } else {
                                let stop = a.first_start().map_or(e2 as u64, |f| f.min(e2 as u64));
                                out.extend_from_slice(&data[cur as usize..stop as usize]);
                                cur = stop;
                            }
                        }
                        a.discard_below(cur);
                        while let Some(f) = a.first_start() {
                            if f != out.len() as u64 { break; }
                            let (rs, re) = a.range_at(f).unwrap();
                            a.take_front(rs, re - rs, |b| out.extend_from_slice(b));
                        }
                    } else {
                        let _ = a.insert(s2 as u64, &data[s2..e2]);
                    }
                    prop_assert!(a.memory() <= win);
                    prop_assert!(a.queued_bytes() <= win as u64);
                }
                segs.push((out.len(), (out.len() + 100 * scale).min(total)));
            }
            prop_assert_eq!(&out[..], &data[..out.len()]);
            prop_assert_eq!(out.len(), total);
        }
    }
}
