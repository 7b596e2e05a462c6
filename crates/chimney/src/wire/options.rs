//! TCP options: MSS, window scale, SACK-permitted, SACK, timestamps; unknown options are
//! skipped by their length (RFC 9293 §3.2), malformed lengths are an error.

/// Up to four SACK blocks (left, right edges).
pub type SackBlocks = ([(u32, u32); 4], u8);

/// The options chimney reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpOptions {
    /// Maximum segment size (SYN only).
    pub mss: Option<u16>,
    /// Window scale shift (SYN only; values above 14 are clamped by the user, RFC 7323).
    pub window_scale: Option<u8>,
    /// SACK permitted (SYN only).
    pub sack_permitted: bool,
    /// SACK blocks and their count.
    pub sack: Option<SackBlocks>,
    /// Timestamps (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
}

/// A malformed option list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionError;

impl TcpOptions {
    /// Parses the option bytes of a TCP header.
    pub fn parse(mut b: &[u8]) -> Result<TcpOptions, OptionError> {
        let mut o = TcpOptions::default();
        // The layouts of nearly every data segment read at once: NOP, NOP, timestamps (RFC
        // 7323 Appendix A; Linux) or timestamps, NOP, NOP (ours).
        let ts = match b {
            [1, 1, 8, 10, v @ ..] | [8, 10, v @ .., 1, 1] if v.len() == 8 => Some(v),
            _ => None,
        };
        if let Some(v) = ts {
            o.timestamps =
                Some((u32::from_be_bytes([v[0], v[1], v[2], v[3]]), u32::from_be_bytes([v[4], v[5], v[6], v[7]])));
            return Ok(o);
        }
        while let Some(&kind) = b.first() {
            match kind {
                0 => break,
                1 => {
                    b = &b[1..];
                    continue;
                }
                _ => {}
            }
            let len = *b.get(1).ok_or(OptionError)? as usize;
            if len < 2 || len > b.len() {
                return Err(OptionError);
            }
            let body = &b[2..len];
            match (kind, body.len()) {
                (2, 2) => o.mss = Some(u16::from_be_bytes([body[0], body[1]])),
                (3, 1) => o.window_scale = Some(body[0]),
                (4, 0) => o.sack_permitted = true,
                (5, n) if n.is_multiple_of(8) && n > 0 && n <= 32 => {
                    let mut blocks = [(0u32, 0u32); 4];
                    for (i, c) in body.chunks_exact(8).enumerate() {
                        blocks[i] = (
                            u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                            u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
                        );
                    }
                    o.sack = Some((blocks, (n / 8) as u8));
                }
                (8, 8) => {
                    o.timestamps = Some((
                        u32::from_be_bytes([body[0], body[1], body[2], body[3]]),
                        u32::from_be_bytes([body[4], body[5], body[6], body[7]]),
                    ))
                }
                (2 | 3 | 4 | 5 | 8, _) => return Err(OptionError),
                _ => {} // unknown: skipped by length
            }
            b = &b[len..];
        }
        Ok(o)
    }

    /// Encoded length, padded to a multiple of 4.
    pub fn encoded_len(&self) -> usize {
        let mut n = 0;
        n += if self.mss.is_some() { 4 } else { 0 };
        n += if self.window_scale.is_some() { 3 } else { 0 };
        n += if self.sack_permitted { 2 } else { 0 };
        n += if self.timestamps.is_some() { 10 } else { 0 };
        n += self.sack.map_or(0, |(_, k)| 2 + 8 * k as usize);
        n.div_ceil(4) * 4
    }

    /// Appends the encoded options (NOP-padded to a multiple of 4).
    pub fn emit(&self, out: &mut Vec<u8>) {
        let start = out.len();
        if let Some(m) = self.mss {
            out.extend_from_slice(&[2, 4]);
            out.extend_from_slice(&m.to_be_bytes());
        }
        if self.sack_permitted {
            out.extend_from_slice(&[4, 2]);
        }
        if let Some((v, e)) = self.timestamps {
            out.extend_from_slice(&[8, 10]);
            out.extend_from_slice(&v.to_be_bytes());
            out.extend_from_slice(&e.to_be_bytes());
        }
        if let Some(s) = self.window_scale {
            out.extend_from_slice(&[3, 3, s]);
        }
        if let Some((blocks, k)) = self.sack {
            out.extend_from_slice(&[5, 2 + 8 * k]);
            for (l, r) in &blocks[..k as usize] {
                out.extend_from_slice(&l.to_be_bytes());
                out.extend_from_slice(&r.to_be_bytes());
            }
        }
        while !(out.len() - start).is_multiple_of(4) {
            out.push(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_skips_unknown_rejects_lying_lengths() {
        let raw = [2, 4, 5, 0xb4, 1, 3, 3, 7, 4, 2, 99, 4, 0xAA, 0xBB, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 0];
        let o = TcpOptions::parse(&raw).unwrap();
        assert_eq!(o.mss, Some(1460));
        assert_eq!(o.window_scale, Some(7));
        assert!(o.sack_permitted);
        assert_eq!(o.timestamps, Some((1, 2)));
        assert_eq!(TcpOptions::parse(&[2, 40, 0]), Err(OptionError));
        assert_eq!(TcpOptions::parse(&[8, 9, 0, 0, 0, 0, 0, 0, 0]), Err(OptionError));
        assert_eq!(TcpOptions::parse(&[99]), Err(OptionError));
        assert_eq!(TcpOptions::parse(&[99, 1]), Err(OptionError));
    }

    #[test]
    fn emit_round_trips_with_sack() {
        let o = TcpOptions {
            timestamps: Some((9, 8)),
            sack: Some(([(1, 2), (3, 4), (5, 6), (0, 0)], 3)),
            ..TcpOptions::default()
        };
        let mut v = Vec::new();
        o.emit(&mut v);
        assert_eq!(v.len(), o.encoded_len());
        assert!(v.len() <= 40);
        assert_eq!(TcpOptions::parse(&v).unwrap(), o);
    }

    /// The timestamp-only layouts taken at once agree with the general walk, and anything
    /// near them (another length, a trailing byte) still goes through it.
    #[test]
    fn timestamp_fast_path_agrees_with_the_walk() {
        let ts = [8, 10, 0, 0, 0, 7, 0x80, 0, 0, 1];
        let want = TcpOptions { timestamps: Some((7, 0x8000_0001)), ..TcpOptions::default() };
        let linux = [&[1u8, 1][..], &ts].concat();
        let ours = [&ts[..], &[1, 1]].concat();
        assert_eq!(TcpOptions::parse(&linux), Ok(want));
        assert_eq!(TcpOptions::parse(&ours), Ok(want));
        let mut v = Vec::new();
        want.emit(&mut v);
        assert_eq!(v, ours);
        // Not the fast path: a lying length inside the same shape is still refused.
        assert_eq!(TcpOptions::parse(&[1, 1, 8, 11, 0, 0, 0, 7, 0, 0, 0, 1]), Err(OptionError));
        // Timestamps then an EOL: the walk.
        assert_eq!(TcpOptions::parse(&[8, 10, 0, 0, 0, 7, 0x80, 0, 0, 1, 0, 0]), Ok(want));
    }
}
