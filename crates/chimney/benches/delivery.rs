//! Delivery throughput next to memcpy, measured in the same run: 64 KiB in-order chunks into
//! 256 KiB posted buffers (re-posted from inside the completion), versus copying the same
//! chunks into a 256 KiB buffer. The goal is at least 0.9x memcpy.

use std::hint::black_box;

use chimney::contract::InitiateOffload;
use chimney::contract::ReceiveInput;
use chimney::contract::{ConnId, Delivery, DeliveryConfig, IndicateReturn, NestedCalls, OffloadTarget, ProtocolHost};
use chimney::ndis::{
    Mdl, NblChain, NblId, NdisStatus, NetBuffer, NetBufferList, PoolTag, TcpOffloadEvent, TcpOffloadState,
};
use chimney::Instant;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const CHUNK: usize = 64 * 1024;
const POST: usize = 256 * 1024;
const CHUNKS: usize = 64;

/// Re-arms each completed request and posts it again from inside the completion.
struct Repost;

impl ProtocolHost for Repost {
    fn receive_complete(&mut self, conn: ConnId, mut nbls: NblChain, nested: &mut NestedCalls) {
        for n in nbls.iter_mut() {
            let len = n.net_buffer().chain_len();
            n.net_buffer_mut().reset_used_space(0, len).unwrap();
        }
        nested.post_receive(conn, nbls);
    }
    fn receive_indicate(&mut self, _: ConnId, nbl: NblChain, _: NdisStatus, _: &mut NestedCalls) -> IndicateReturn {
        IndicateReturn::NotAccepted(nbl)
    }
    fn event_indicate(&mut self, _: ConnId, _: TcpOffloadEvent, _: &mut NestedCalls) {}
}

fn bench(c: &mut Criterion) {
    let data: Vec<u8> = (0..CHUNK).map(|i| (i * 7) as u8).collect();
    let mut g = c.benchmark_group("deliver_64k_into_256k");
    g.throughput(Throughput::Bytes((CHUNK * CHUNKS) as u64));

    g.bench_function(BenchmarkId::new("memcpy", "64KiB"), |b| {
        let mut dst = vec![0u8; POST];
        b.iter(|| {
            for i in 0..CHUNKS {
                let at = (i * CHUNK) % POST;
                dst[at..at + CHUNK].copy_from_slice(black_box(&data));
            }
            black_box(&dst);
        })
    });

    g.bench_function(BenchmarkId::new("delivery", "64KiB"), |b| {
        let mut d = Delivery::new(DeliveryConfig::default());
        let mut host = Repost;
        let conn = ConnId(0);
        let now = Instant::ZERO;
        d.initiate_offload(now, conn, TcpOffloadState::default(), &mut host).unwrap();
        let posts: NblChain = (0..2)
            .map(|i| {
                let mut n = NetBufferList::new(NblId::new(PoolTag::Host, i), NetBuffer::new(vec![Mdl::zeroed(POST)]));
                n.set_tcp_receive_no_push(true);
                n
            })
            .collect();
        d.receive(now, conn, posts, &mut host).unwrap();
        b.iter(|| {
            for _ in 0..CHUNKS {
                d.receive_data(now, conn, black_box(&data), false, &mut host).unwrap();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
