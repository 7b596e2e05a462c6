//! SYN cookies (RFC 4987 §3.6), encoded the way Linux does: when the half-open table is full
//! (or always, if configured) the host stack answers a SYN without remembering it; the ISS
//! of its SYN-ACK carries a keyed hash of the 4-tuple, a 64-second time counter and the
//! index of the peer's MSS in a small table, and — when the peer offered timestamps — the
//! low 6 bits of its TSval carry the peer's window scale and SACK-permitted (Linux's sixth
//! bit is ECN; our SYN-ACK never agrees to ECN, so it stays 0). The
//! peer's ACK echoes both (SEG.ACK − 1 and TSecr), and the connection is rebuilt from them.
//!
//! ```text
//! ISS = H1(tuple) + ISN_peer + (count << 24) + ((H2(tuple, count, ISN_peer) + mss_index) mod 2^24)
//! TSval = (clock & !0x3F) | sack << 4 | wscale   (wscale 0xF: none; bit 5, ECN, 0)
//! ```
//!
//! H1 and H2 are SipHash-2-4 under two secret keys drawn from the engine's seed and secret.
//! Unlike Linux, H2 also covers the peer's ISN: there a segment a few bytes past the first
//! (its handshake ACK lost) can pass as a cookie for another MSS index and open the
//! connection at the wrong sequence number, silently dropping the stream's first bytes (the
//! simulator's 1-byte segments found it); here any other ISN fails the 24-bit check.
//! A cookie is valid in the tick it was made and the next (64 to 128 s, as Linux's
//! `MAX_SYNCOOKIE_AGE`); the 24-bit check makes a blind guess succeed once in 2^24 tries.

use core::hash::{Hash, Hasher};

use siphasher::sip::SipHasher24;

use super::FourTuple;
use crate::time::Instant;
use crate::wire::SeqNum;

/// When the host stack answers a SYN with a cookie instead of a half-open entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SynCookies {
    /// Only when the half-open table is full (Linux's `tcp_syncookies = 1`).
    #[default]
    Auto,
    /// For every SYN: nothing is kept before the handshake completes (`tcp_syncookies = 2`).
    Always,
    /// Never: SYNs beyond the half-open table are dropped and counted.
    Never,
}

/// Peer MSS values a cookie can say, by address family (Linux's `msstab`, IPv6 less the 20
/// extra header bytes): the largest not above the peer's MSS is used.
const MSS_V4: [u16; 4] = [536, 1300, 1440, 1460];
const MSS_V6: [u16; 4] = [1220, 1420, 1440, 8940];

/// Seconds per counter tick.
const PERIOD_SECS: u64 = 64;
/// Ticks a cookie stays valid after the one it was made in (Linux's `MAX_SYNCOOKIE_AGE`
/// counts the same way: the current tick and the one before, 64 to 128 s).
const MAX_AGE: u32 = 1;
/// Low TSval bits that carry options.
pub(crate) const TS_BITS: u32 = 6;
const TS_MASK: u32 = (1 << TS_BITS) - 1;
const WSCALE_NONE: u32 = 0xF;

/// The two secret hash keys.
#[derive(Debug, Clone)]
pub(crate) struct CookieKeys {
    k1: (u64, u64),
    k2: (u64, u64),
}

/// What a valid cookie says about the peer's SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decoded {
    /// The peer's MSS (rounded down to the table).
    pub mss: u16,
    /// The peer's window scale, if it offered one (only with timestamps).
    pub wscale: Option<u8>,
    /// Whether it offered SACK (only with timestamps).
    pub sack: bool,
}

fn count(now: Instant) -> u32 {
    (now.as_nanos() / 1_000_000_000 / PERIOD_SECS) as u32
}

impl CookieKeys {
    pub fn new(seed: u64, secret: u64) -> CookieKeys {
        // Four independent-looking words from (seed, secret): SplitMix64 steps.
        let mut x = seed ^ secret.rotate_left(29) ^ 0x6A09_E667_F3BC_C908;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        CookieKeys { k1: (next(), next()), k2: (next(), next()) }
    }

    fn h(&self, k: (u64, u64), t: &FourTuple, c: Option<(u32, SeqNum)>) -> u32 {
        let mut h = SipHasher24::new_with_keys(k.0, k.1);
        t.0.ip().hash(&mut h);
        t.1.ip().hash(&mut h);
        h.write_u16(t.0.port());
        h.write_u16(t.1.port());
        if let Some((c, isn)) = c {
            h.write_u32(c);
            h.write_u32(isn.0);
        }
        h.finish() as u32
    }

    fn table(t: &FourTuple) -> &'static [u16; 4] {
        if t.0.is_ipv6() {
            &MSS_V6
        } else {
            &MSS_V4
        }
    }

    /// The ISS for a SYN from `t` with sequence number `isn` and MSS option `mss`.
    pub fn iss(&self, now: Instant, t: &FourTuple, isn: SeqNum, mss: Option<u16>) -> SeqNum {
        let table = Self::table(t);
        let peer_mss = mss.unwrap_or(536);
        let idx = table.iter().rposition(|&m| m <= peer_mss).unwrap_or(0) as u32;
        let c = count(now);
        let v = self
            .h(self.k1, t, None)
            .wrapping_add(isn.0)
            .wrapping_add(c << 24)
            .wrapping_add(self.h(self.k2, t, Some((c, isn))).wrapping_add(idx) & 0x00FF_FFFF);
        SeqNum(v)
    }

    /// The MSS index a cookie ACK from `t` carries (SEG.ACK − 1 = `cookie`, SEG.SEQ − 1 =
    /// `isn`), if the cookie is genuine and recent.
    pub fn check(&self, now: Instant, t: &FourTuple, isn: SeqNum, cookie: SeqNum) -> Option<u16> {
        let diff = cookie.0.wrapping_sub(self.h(self.k1, t, None)).wrapping_sub(isn.0);
        let now_c = count(now);
        // The counter's low 8 bits are in the cookie; recover the full tick.
        let c = now_c.wrapping_sub(now_c.wrapping_sub(diff >> 24) & 0xFF);
        if now_c.wrapping_sub(c) > MAX_AGE {
            return None;
        }
        let idx = diff.wrapping_sub(self.h(self.k2, t, Some((c, isn)))) & 0x00FF_FFFF;
        Self::table(t).get(idx as usize).copied()
    }
}

/// The TSval of a cookie SYN-ACK: the clock's value (`tsval`) with its low bits replaced by
/// the options, never above `tsval` (the connection's later TSvals must not go back).
pub(crate) fn encode_ts(tsval: u32, wscale: Option<u8>, sack: bool) -> u32 {
    let bits = wscale.map_or(WSCALE_NONE, |w| u32::from(w.min(14))) | (u32::from(sack) << 4);
    let v = (tsval & !TS_MASK) | bits;
    if v > tsval {
        v.wrapping_sub(1 << TS_BITS)
    } else {
        v
    }
}

/// The options a cookie ACK's TSecr carries (None: the bits are not a valid encoding).
pub(crate) fn decode_ts(tsecr: u32) -> Option<(Option<u8>, bool)> {
    let w = tsecr & 0xF;
    let wscale = match w {
        WSCALE_NONE => None,
        0..=14 => Some(w as u8),
        _ => return None,
    };
    Some((wscale, tsecr & 0x10 != 0))
}

impl Decoded {
    /// The decoded options of a cookie ACK: the MSS from the cookie, the rest from TSecr when
    /// timestamps are on (without them the peer gets no window scaling and no SACK, as in
    /// Linux).
    pub fn new(mss: u16, tsecr: Option<u32>) -> Option<Decoded> {
        match tsecr {
            Some(e) => decode_ts(e).map(|(wscale, sack)| Decoded { mss, wscale, sack }),
            None => Some(Decoded { mss, wscale: None, sack: false }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn tuple(port: u16) -> FourTuple {
        ("198.18.0.1:5001".parse().unwrap(), format!("198.18.0.2:{port}").parse().unwrap())
    }

    #[test]
    fn a_cookie_round_trips_and_expires() {
        let k = CookieKeys::new(1, 99);
        let t = tuple(40000);
        let t0 = Instant::ZERO + Duration::from_secs(1000);
        for (mss, want) in [(None, 536), (Some(1460), 1460), (Some(1400), 1300), (Some(9000), 1460), (Some(100), 536)] {
            let iss = k.iss(t0, &t, SeqNum(12345), mss);
            assert_eq!(k.check(t0, &t, SeqNum(12345), iss), Some(want));
            // t0 is 40 s into its tick: valid 80 s later (the next tick), not 130 s later.
            assert_eq!(k.check(t0 + Duration::from_secs(80), &t, SeqNum(12345), iss), Some(want));
            assert_eq!(k.check(t0 + Duration::from_secs(130), &t, SeqNum(12345), iss), None);
        }
    }

    #[test]
    fn forgeries_fail() {
        let k = CookieKeys::new(1, 99);
        let t = tuple(40000);
        let t0 = Instant::ZERO + Duration::from_secs(1000);
        let iss = k.iss(t0, &t, SeqNum(7), Some(1460));
        // Another tuple, another ISN (even one apart), another key: refused.
        assert_eq!(k.check(t0, &tuple(40001), SeqNum(7), iss), None);
        for isn in [6, 8, 9, 10, 7 + 100_000] {
            assert_eq!(k.check(t0, &t, SeqNum(isn), iss), None, "ISN {isn}");
        }
        // The segment two bytes into the stream, its handshake ACK lost: not a cookie.
        let low = k.iss(t0, &t, SeqNum(7), None);
        assert!((1..=3).all(|d| k.check(t0, &t, SeqNum(7 + d), low).is_none()));
        assert_eq!(CookieKeys::new(2, 99).check(t0, &t, SeqNum(7), iss), None);
        assert_eq!(CookieKeys::new(1, 98).check(t0, &t, SeqNum(7), iss), None);
        // The MSS index is added in (as Linux's): the next values up to index 3 are cookies
        // for a smaller MSS index; nothing else nearby is.
        let valid = (0..100_000u32).filter(|d| k.check(t0, &t, SeqNum(7), iss.plus(d + 1)).is_some()).count();
        assert_eq!(valid, 0, "1460 is index 3: no value above it checks");
        let low = k.iss(t0, &t, SeqNum(7), None);
        let valid = (0..100_000u32).filter(|d| k.check(t0, &t, SeqNum(7), low.plus(d + 1)).is_some()).count();
        assert_eq!(valid, 3);
    }

    #[test]
    fn ts_bits_round_trip_and_never_go_forward() {
        for tsval in [0u32, 63, 64, 1000, 0xFFFF_FFC0, u32::MAX] {
            for w in [None, Some(0), Some(7), Some(14)] {
                for sack in [false, true] {
                    let v = encode_ts(tsval, w, sack);
                    assert!(v <= tsval || tsval < 64, "{tsval} -> {v}");
                    assert!(tsval.wrapping_sub(v) < 64);
                    assert_eq!(decode_ts(v), Some((w, sack)));
                }
            }
        }
        assert_eq!(decode_ts(0x0E), Some((Some(14), false)));
        assert_eq!(decode_ts(0x0F), Some((None, false)));
    }
}
