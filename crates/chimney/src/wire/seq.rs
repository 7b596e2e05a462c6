//! Sequence-number arithmetic modulo 2^32 (RFC 9293 §3.4). `SeqNum` deliberately has no
//! `PartialOrd`: comparisons are only meaningful within 2^31 of each other.

/// A TCP sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNum(pub u32);

impl SeqNum {
    /// `self + n` modulo 2^32.
    pub fn plus(self, n: u32) -> SeqNum {
        SeqNum(self.0.wrapping_add(n))
    }

    /// Signed distance `self - other`.
    pub fn diff(self, other: SeqNum) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    /// `self < other`.
    pub fn lt(self, other: SeqNum) -> bool {
        self.diff(other) < 0
    }

    /// `self <= other`.
    pub fn le(self, other: SeqNum) -> bool {
        self.diff(other) <= 0
    }

    /// `self > other`.
    pub fn gt(self, other: SeqNum) -> bool {
        self.diff(other) > 0
    }

    /// `self >= other`.
    pub fn ge(self, other: SeqNum) -> bool {
        self.diff(other) >= 0
    }

    /// `lo <= self < hi` in sequence space.
    pub fn in_range(self, lo: SeqNum, hi: SeqNum) -> bool {
        lo.le(self) && self.lt(hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wraps() {
        let a = SeqNum(u32::MAX - 5);
        let b = a.plus(10);
        assert_eq!(b, SeqNum(4));
        assert!(a.lt(b) && b.gt(a) && b.diff(a) == 10);
        assert!(SeqNum(4).in_range(a, SeqNum(5)));
        assert!(!SeqNum(5).in_range(a, SeqNum(5)));
    }

    proptest! {
        #[test]
        fn order_laws_within_half_the_space(x: u32, d in 1u32..(1 << 31)) {
            let a = SeqNum(x);
            let b = a.plus(d);
            prop_assert!(a.lt(b));
            prop_assert!(!b.lt(a));
            prop_assert!(a.le(a) && a.ge(a) && !a.lt(a));
            prop_assert_eq!(b.diff(a), d as i32);
        }
    }
}
