//! Virtual time for the sans-IO core.
//!
//! The core never reads a clock: every entry point takes `now: Instant`, a count of
//! nanoseconds since an arbitrary origin chosen by the driver (the simulator's virtual clock,
//! or a monotonic clock in the Linux driver). That keeps runs deterministic and testable.

use core::num::NonZeroU64;
use core::ops::{Add, Sub};
use core::time::Duration;

/// A point in time, in nanoseconds since the driver's origin.
///
/// Stored as nanoseconds + 1 in a `NonZeroU64`, so `Option<Instant>` (every timer of a
/// connection) takes 8 bytes, not 16. The latest representable instant is `u64::MAX - 1` ns
/// (585 years); arithmetic saturates there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(NonZeroU64);

impl Default for Instant {
    fn default() -> Self {
        Instant::ZERO
    }
}

impl Instant {
    /// The origin of the driver's clock.
    pub const ZERO: Instant = Instant(NonZeroU64::MIN);

    /// An instant `nanos` nanoseconds after the origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        match NonZeroU64::new(nanos.saturating_add(1)) {
            Some(n) => Instant(n),
            None => Instant::ZERO,
        }
    }

    /// An instant `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Self {
        Instant::from_nanos(millis.saturating_mul(1_000_000))
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0.get() - 1
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.as_nanos().saturating_sub(earlier.as_nanos()))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Instant::from_nanos(self.as_nanos().saturating_add(nanos))
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, d: Duration) -> Instant {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Instant::from_nanos(self.as_nanos().saturating_sub(nanos))
    }
}

impl core::fmt::Display for Instant {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let n = self.as_nanos();
        write!(f, "{}.{:06}s", n / 1_000_000_000, (n % 1_000_000_000) / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Instant::from_millis(5);
        assert_eq!((t + Duration::from_millis(3)).as_nanos(), 8_000_000);
        assert_eq!(t - Duration::from_secs(1), Instant::ZERO);
        assert_eq!(Instant::from_nanos(u64::MAX) + Duration::from_secs(1), Instant::from_nanos(u64::MAX));
        assert_eq!(t.saturating_duration_since(Instant::from_millis(7)), Duration::ZERO);
        assert_eq!(t.to_string(), "0.005000s");
        assert_eq!(std::mem::size_of::<Option<Instant>>(), 8);
        assert!(Instant::ZERO < Instant::from_nanos(1));
        assert_eq!(Instant::from_nanos(7).as_nanos(), 7);
    }
}
