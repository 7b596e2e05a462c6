//! The digests applications keep of what they received and sent, so that a run proves its
//! streams without storing them: XXH3-128 (`xxhsum -H2`; tens of GB/s a core, the default,
//! so that the digest never caps the receive path; not cryptographic), BLAKE3 (`b3sum`;
//! SIMD, cryptographic, a few GB/s), SHA-256 (`sha256sum`; the slowest) or none.

use sha2::Digest;

/// Which digest a run keeps (`--hash`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashKind {
    /// SHA-256.
    Sha256,
    /// BLAKE3 (256-bit).
    Blake3,
    /// XXH3, 128-bit.
    #[default]
    Xxh3,
    /// No digest (benchmarks).
    None,
}

impl HashKind {
    /// Every kind, in the order the help lists them.
    pub const ALL: [HashKind; 4] = [HashKind::Sha256, HashKind::Blake3, HashKind::Xxh3, HashKind::None];

    /// The name used on the command line and in JSON (`"hash"`).
    pub fn name(self) -> &'static str {
        match self {
            HashKind::Sha256 => "sha256",
            HashKind::Blake3 => "blake3",
            HashKind::Xxh3 => "xxh3",
            HashKind::None => "none",
        }
    }

    /// The kind named `s`, if any.
    pub fn from_name(s: &str) -> Option<HashKind> {
        HashKind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// The digest of `bytes`.
    pub fn of(self, bytes: &[u8]) -> Vec<u8> {
        let mut d = StreamDigest::default();
        d.update(self, bytes);
        d.finish(self)
    }
}

impl std::fmt::Display for HashKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A running digest of one stream; created on the first bytes, in the kind given then.
#[derive(Clone, Default)]
pub struct StreamDigest(State);

#[derive(Clone, Default)]
enum State {
    #[default]
    Empty,
    Sha256(sha2::Sha256),
    Blake3(Box<blake3::Hasher>),
    Xxh3(Box<xxhash_rust::xxh3::Xxh3>),
}

impl std::fmt::Debug for StreamDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let k = match self.0 {
            State::Empty => "empty",
            State::Sha256(_) => "sha256",
            State::Blake3(_) => "blake3",
            State::Xxh3(_) => "xxh3",
        };
        write!(f, "StreamDigest({k})")
    }
}

impl StreamDigest {
    /// Adds `bytes` (nothing happens for [`HashKind::None`]).
    pub fn update(&mut self, kind: HashKind, bytes: &[u8]) {
        if let State::Empty = self.0 {
            self.0 = match kind {
                HashKind::Sha256 => State::Sha256(sha2::Sha256::new()),
                HashKind::Blake3 => State::Blake3(Box::default()),
                HashKind::Xxh3 => State::Xxh3(Box::default()),
                HashKind::None => return,
            };
        }
        match &mut self.0 {
            State::Empty => {}
            State::Sha256(h) => h.update(bytes),
            State::Blake3(h) => {
                h.update(bytes);
            }
            State::Xxh3(h) => h.update(bytes),
        }
    }

    /// The digest so far (of the empty stream if nothing was added), in `kind`; empty for
    /// [`HashKind::None`].
    pub fn finish(&self, kind: HashKind) -> Vec<u8> {
        match (&self.0, kind) {
            (_, HashKind::None) => Vec::new(),
            (State::Sha256(h), _) => h.clone().finalize().to_vec(),
            (State::Blake3(h), _) => h.finalize().as_bytes().to_vec(),
            (State::Xxh3(h), _) => h.digest128().to_be_bytes().to_vec(),
            (State::Empty, HashKind::Sha256) => sha2::Sha256::new().finalize().to_vec(),
            (State::Empty, HashKind::Blake3) => blake3::Hasher::new().finalize().as_bytes().to_vec(),
            (State::Empty, HashKind::Xxh3) => xxhash_rust::xxh3::xxh3_128(&[]).to_be_bytes().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn known_answers_in_pieces_or_whole() {
        // sha256sum, b3sum and `xxhsum -H2` of "abc" (the last printed big-endian, as here).
        let want = [
            (HashKind::Sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            (HashKind::Blake3, "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"),
            (HashKind::Xxh3, "06b05ab6733a618578af5f94892f3950"),
        ];
        for (k, hexd) in want {
            assert_eq!(hex(&k.of(b"abc")), hexd, "{k}");
            let mut d = StreamDigest::default();
            d.update(k, b"a");
            d.update(k, b"");
            d.update(k, b"bc");
            assert_eq!(hex(&d.finish(k)), hexd, "{k} in pieces");
            assert_eq!(StreamDigest::default().finish(k), k.of(b""), "{k}: nothing added");
        }
        assert!(HashKind::None.of(b"abc").is_empty());
        for k in HashKind::ALL {
            assert_eq!(HashKind::from_name(k.name()), Some(k));
        }
        assert_eq!(HashKind::from_name("md5"), None);
    }
}
