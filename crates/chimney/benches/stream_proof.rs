//! Two ways a verifier can prove that the delivered stream is the fed one, on MSS segments
//! (1448 bytes, completions every 45 of them, as a Linux sender's PSH per TSO burst makes
//! them), each on top of the placement copy every receiver makes:
//! - `copy_compare`: keep a copy of the fed bytes, compare the delivered buffer with it at
//!   completion (what the verifier does);
//! - `xxh3_digests`: a streaming XXH3-128 of the fed bytes and one of the delivered bytes,
//!   compared at completion (no copy kept, one read of each side).
//!
//! `placement` alone is the baseline. On the machine in BENCHMARKS.md the digests cost two
//! to three times what the copy and compare cost: hashing is slower than moving cache-hot
//! bytes, so the verifier keeps its copy.

use std::collections::VecDeque;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const SEG: usize = 1448;
const PER_COMPLETION: usize = 45;
const SEGS: usize = PER_COMPLETION * 64;

fn bench(c: &mut Criterion) {
    let stream: Vec<u8> = (0..SEG * 64).map(|i| (i * 7 + i / 13) as u8).collect();
    let seg = |i: usize| &stream[(i % 64) * SEG..(i % 64 + 1) * SEG];
    let mut buf = vec![0u8; SEG * PER_COMPLETION * 4];
    let mut g = c.benchmark_group("stream_proof_mss");
    g.throughput(Throughput::Bytes((SEG * SEGS) as u64));
    g.bench_function("placement", |b| {
        b.iter(|| {
            let mut at = 0;
            for i in 0..SEGS {
                if at + SEG > buf.len() {
                    at = 0;
                }
                buf[at..at + SEG].copy_from_slice(seg(i));
                at += SEG;
            }
            black_box(&buf);
        })
    });
    let mut dq: VecDeque<u8> = VecDeque::with_capacity(SEG * PER_COMPLETION * 2);
    g.bench_function("copy_compare", |b| {
        b.iter(|| {
            let (mut at, mut ok) = (0, true);
            for i in 0..SEGS {
                if at + SEG > buf.len() {
                    at = 0;
                }
                buf[at..at + SEG].copy_from_slice(seg(i));
                dq.extend(seg(i));
                at += SEG;
                if i % PER_COMPLETION == PER_COMPLETION - 1 {
                    let start = at - PER_COMPLETION * SEG;
                    let (x, y) = dq.as_slices();
                    ok &= buf[start..start + x.len()] == *x && buf[start + x.len()..at] == *y;
                    dq.clear();
                }
            }
            assert!(ok);
        })
    });
    g.bench_function("xxh3_digests", |b| {
        b.iter(|| {
            let mut fed = xxhash_rust::xxh3::Xxh3::new();
            let mut del = xxhash_rust::xxh3::Xxh3::new();
            let (mut at, mut ok) = (0, true);
            for i in 0..SEGS {
                if at + SEG > buf.len() {
                    at = 0;
                }
                buf[at..at + SEG].copy_from_slice(seg(i));
                fed.update(seg(i));
                at += SEG;
                if i % PER_COMPLETION == PER_COMPLETION - 1 {
                    del.update(&buf[at - PER_COMPLETION * SEG..at]);
                    ok &= fed.digest128() == del.digest128();
                }
            }
            assert!(ok);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
