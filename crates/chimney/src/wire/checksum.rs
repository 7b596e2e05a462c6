//! The Internet checksum (RFC 1071), summed 32 bits at a time into a 64-bit accumulator.

/// A running one's-complement sum.
#[derive(Debug, Clone, Copy, Default)]
pub struct Checksum {
    sum: u64,
    odd: bool,
}

impl Checksum {
    /// A sum starting from a partial (e.g. pseudo-header) sum.
    pub fn from_sum(sum: u64) -> Checksum {
        Checksum { sum, odd: false }
    }

    /// Adds bytes (big-endian 16-bit words; an odd trailing byte is padded).
    pub fn add_bytes(mut self, mut bytes: &[u8]) -> Checksum {
        if self.odd && !bytes.is_empty() {
            self.sum += u64::from(bytes[0]);
            bytes = &bytes[1..];
            self.odd = false;
        }
        let mut chunks = bytes.chunks_exact(4);
        for c in &mut chunks {
            self.sum += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
        }
        let rest = chunks.remainder();
        let mut i = 0;
        while i + 1 < rest.len() {
            self.sum += u64::from(u16::from_be_bytes([rest[i], rest[i + 1]]));
            i += 2;
        }
        if i < rest.len() {
            self.sum += u64::from(rest[i]) << 8;
            self.odd = true;
        }
        self
    }

    /// The folded one's-complement of the sum (0 when verifying a correct packet).
    pub fn finish(self) -> u16 {
        let mut s = self.sum;
        while s >> 16 != 0 {
            s = (s & 0xFFFF) + (s >> 16);
        }
        !(s as u16)
    }
}

/// Checksum of `bytes` alone.
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    Checksum::default().add_bytes(bytes).finish()
}

/// Sum of the TCP pseudo-header for addresses of 4 or 16 bytes.
pub fn pseudo_header_sum(src: &[u8], dst: &[u8], tcp_len: usize) -> u64 {
    let c = Checksum::default().add_bytes(src).add_bytes(dst);
    c.sum + 6 + (tcp_len as u64 & 0xFFFF) + ((tcp_len as u64) >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example_and_split_sums_agree() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(internet_checksum(&data), !0xddf2);
        let odd = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        for split in 0..odd.len() {
            let a = Checksum::default().add_bytes(&odd[..split]).add_bytes(&odd[split..]).finish();
            assert_eq!(a, internet_checksum(&odd), "split at {split}");
        }
    }
}
