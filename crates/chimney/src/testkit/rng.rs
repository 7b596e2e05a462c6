//! Seeded randomness for drivers, impairments and generated streams (the core itself takes
//! seeds, never entropy).

/// A small, fast, seeded generator (SplitMix64) for stream bytes and choices.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// A seekable pseudo-random byte stream: byte `i` depends only on the key and `i`, so a
/// receiver can check any chunk at any offset without storing what was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream {
    key: u64,
}

impl Stream {
    /// The stream for `key`.
    pub fn new(key: u64) -> Stream {
        Stream { key }
    }

    fn word(&self, i: u64) -> u64 {
        SplitMix64::new(self.key ^ i.wrapping_mul(0xD6E8_FEB8_6659_FD93)).next_u64()
    }

    /// Writes bytes `[offset, offset + buf.len())` into `buf`.
    pub fn fill_at(&self, offset: u64, buf: &mut [u8]) {
        let mut i = 0usize;
        while i < buf.len() {
            let pos = offset + i as u64;
            let w = self.word(pos / 8).to_le_bytes();
            let from = (pos % 8) as usize;
            let n = (8 - from).min(buf.len() - i);
            buf[i..i + n].copy_from_slice(&w[from..from + n]);
            i += n;
        }
    }

    /// Whether `chunk` equals the stream at `offset`.
    pub fn matches(&self, offset: u64, chunk: &[u8]) -> bool {
        let mut tmp = [0u8; 4096];
        let mut at = 0usize;
        while at < chunk.len() {
            let n = (chunk.len() - at).min(tmp.len());
            self.fill_at(offset + at as u64, &mut tmp[..n]);
            if tmp[..n] != chunk[at..at + n] {
                return false;
            }
            at += n;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_is_seekable() {
        let s = Stream::new(42);
        let mut whole = vec![0u8; 1000];
        s.fill_at(0, &mut whole);
        let mut part = vec![0u8; 77];
        s.fill_at(333, &mut part);
        assert_eq!(&whole[333..410], &part[..]);
        assert!(s.matches(333, &part));
        assert!(!s.matches(334, &part));
    }
}
