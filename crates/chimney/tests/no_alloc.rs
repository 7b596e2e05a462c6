//! The delivery hot path does not allocate: with a counting global allocator, a steady stream
//! of in-order data into posted buffers (re-posted from inside completions, push and non-push,
//! PSH, push timers, indications with pool recycling) makes zero allocations after warm-up.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chimney::contract::InitiateOffload;
use chimney::contract::ReceiveInput;
use chimney::contract::{ConnId, Delivery, DeliveryConfig, IndicateReturn, NestedCalls, OffloadTarget, ProtocolHost};
use chimney::ndis::{
    Mdl, NblChain, NblId, NdisStatus, NetBuffer, NetBufferList, PoolTag, TcpOffloadEvent, TcpOffloadState,
};
use chimney::Instant;

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static COUNT: AtomicBool = AtomicBool::new(false);

// SAFETY: forwards every call to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNT.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNT.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Re-posts completions from inside them; accepts indications and returns them at once.
struct Host {
    held: NblChain,
}

impl ProtocolHost for Host {
    fn receive_complete(&mut self, conn: ConnId, mut nbls: NblChain, nested: &mut NestedCalls) {
        for n in nbls.iter_mut() {
            let len = n.net_buffer().chain_len();
            n.net_buffer_mut().reset_used_space(0, len).unwrap();
        }
        nested.post_receive(conn, nbls);
        nested.receive_return(self.held.take());
    }
    fn receive_indicate(&mut self, _: ConnId, mut nbl: NblChain, _: NdisStatus, _: &mut NestedCalls) -> IndicateReturn {
        self.held.append(&mut nbl);
        IndicateReturn::Success
    }
    fn event_indicate(&mut self, _: ConnId, _: TcpOffloadEvent, _: &mut NestedCalls) {}
}

fn post(id: u64, size: usize, no_push: bool) -> NetBufferList {
    let mut n = NetBufferList::new(NblId::new(PoolTag::Host, id), NetBuffer::new(vec![Mdl::zeroed(size / 2); 2]));
    n.set_tcp_receive_no_push(no_push);
    n
}

#[test]
fn steady_state_delivery_makes_no_allocation() {
    let mut d = Delivery::new(DeliveryConfig::default());
    let mut h = Host { held: NblChain::new() };
    let data: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
    let (push, nopush, ind) = (ConnId(0), ConnId(1), ConnId(2));
    let mut now = Instant::ZERO;
    for c in [push, nopush, ind] {
        d.initiate_offload(now, c, TcpOffloadState::default(), &mut h).unwrap();
    }
    let chain: NblChain = (0..3).map(|i| post(i, 100_000, false)).collect();
    d.receive(now, push, chain, &mut h).unwrap();
    let chain: NblChain = (3..6).map(|i| post(i, 64 * 1024, true)).collect();
    d.receive(now, nopush, chain, &mut h).unwrap();
    let round = |d: &mut Delivery, h: &mut Host, now: &mut Instant, i: usize| {
        let len = 1 + (i * 7919) % data.len();
        d.receive_data(*now, push, &data[..len], i.is_multiple_of(3), h).unwrap();
        d.receive_data(*now, nopush, &data[..len], i.is_multiple_of(2), h).unwrap();
        d.receive_data(*now, ind, &data[..len.min(60_000)], false, h).unwrap();
        *now = *now + Duration::from_millis(200);
        d.handle_timeout(*now, h);
    };
    for i in 0..200 {
        round(&mut d, &mut h, &mut now, i);
    }
    COUNT.store(true, Ordering::Relaxed);
    for i in 200..2200 {
        round(&mut d, &mut h, &mut now, i);
    }
    COUNT.store(false, Ordering::Relaxed);
    assert!(d.stats().completed_nbls > 1000 && d.stats().indications > 1000, "{:?}", d.stats());
    assert_eq!(ALLOCS.load(Ordering::Relaxed), 0, "allocations on the delivery hot path");
}
