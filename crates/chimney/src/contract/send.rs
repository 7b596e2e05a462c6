//! The send half's queue: the send requests (NBLs) the host posted on one connection, in
//! FIFO order, as one byte stream the TCP send side segments straight from the host's MDLs,
//! and their completion as the peer acknowledges it.
//!
//! ```text
//!   stream offset:  0 ─────────────── acked ──────────────────── posted
//!                   │ completed NBLs │ front NBL (partly acked) … │
//!                   └─ gone (SUCCESS) └── kept: retransmission and unsent bytes
//! ```
//!
//! Offsets count bytes since the connection's first send byte (u64: no wrap), so the TCP
//! side maps SND.UNA and SND.NXT onto them and this queue never sees sequence numbers. What
//! it guarantees (docs/spec.md §7.3, A39–A40):
//! * bytes are read in posting order: NBLs in chain order, chains in call order, each NB
//!   from its data start for its data length through its MDL chain, never written;
//! * an NBL completes SUCCESS only when every byte of it is acknowledged, with
//!   `TcpOffloadBytesTransferred` = its length and its data start advanced by as much;
//!   completions come in posting order, each NBL exactly once;
//! * on failure (reset, abort, upload) every outstanding NBL completes with the status: the
//!   front one with the bytes acknowledged of it (at most one partial NBL), every later one
//!   with none.
//! * at terminate the outstanding NBLs can instead go back uncompleted, in order, starting at
//!   the first unacknowledged byte ([`SendQueue::hand_back`]); send data the host hands over
//!   at offload is simply posted first.

use std::collections::VecDeque;

use crate::ndis::{NblChain, NdisStatus, NetBufferList};

/// One posted send NBL and how much of it the peer acknowledged.
#[derive(Debug)]
struct Pending {
    nbl: NetBufferList,
    /// Its bytes (its NBs' data lengths at posting).
    len: usize,
    /// Its bytes acknowledged so far (only the front NBL has any that is not complete).
    acked: usize,
}

/// A connection's posted sends, FIFO, with the acknowledged and posted stream offsets.
#[derive(Debug, Default)]
pub struct SendQueue {
    pending: VecDeque<Pending>,
    /// Stream offset of the first byte of the front pending NBL.
    front: u64,
    /// Bytes acknowledged since the first send byte.
    acked: u64,
    /// Bytes posted since the first send byte.
    posted: u64,
}

impl SendQueue {
    /// An empty queue.
    pub fn new() -> SendQueue {
        SendQueue::default()
    }

    /// Appends the NBLs of a send call, in chain order (MiniportTcpOffloadSend).
    pub fn post(&mut self, chain: NblChain) {
        for nbl in chain {
            let len = nbl.data_length();
            self.posted += len as u64;
            self.pending.push_back(Pending { nbl, len, acked: 0 });
        }
    }

    /// Bytes posted since the first send byte: the stream offset just past the queue.
    pub fn posted(&self) -> u64 {
        self.posted
    }

    /// Bytes acknowledged since the first send byte.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Bytes posted and not yet acknowledged (in flight or unsent).
    pub fn outstanding(&self) -> u64 {
        self.posted - self.acked
    }

    /// NBLs not yet completed.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no NBL waits for completion.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The bytes of the stream from offset `from` for at most `len` bytes, as slices of the
    /// host's MDLs in order (what a segment carries; nothing is copied here). Bytes already
    /// acknowledged or not yet posted are not there: the range is clipped to
    /// `acked..posted`.
    pub fn slices(&self, from: u64, len: usize) -> impl Iterator<Item = &[u8]> + '_ {
        let from = from.max(self.acked);
        let end = from.saturating_add(len as u64).min(self.posted);
        let mut at = self.front;
        self.pending
            .iter()
            .filter_map(move |p| {
                let (start, stop) = (at, at + p.len as u64);
                at = stop;
                if stop <= from || start >= end || p.len == 0 {
                    return None;
                }
                let lo = (from.max(start) - start) as usize;
                let hi = (end.min(stop) - start) as usize;
                // The NBL's bytes [lo, hi) across its NBs, in order.
                let mut nb_at = 0usize;
                Some(p.nbl.net_buffers().filter_map(move |nb| {
                    let (a, b) = (nb_at, nb_at + nb.data_length());
                    nb_at = b;
                    (b > lo && a < hi && b > a).then(|| {
                        let (x, y) = (lo.max(a) - a, hi.min(b) - a);
                        nb.slices(nb.data_offset() + x, y - x)
                    })
                }))
            })
            .flatten()
            .flatten()
    }

    /// The stream offsets at which posted NBLs end, from `from` on (the TCP side sets PSH on
    /// the segment that carries an NBL's last byte).
    pub fn nbl_ends(&self, from: u64) -> impl Iterator<Item = u64> + '_ {
        let mut at = self.front;
        self.pending.iter().filter_map(move |p| {
            at += p.len as u64;
            (at > from && p.len > 0).then_some(at)
        })
    }

    /// The peer acknowledged the stream up to offset `upto` (clipped to what was posted; an
    /// offset at or below what was already acknowledged changes nothing). Returns the NBLs
    /// this completes, in order, each with status SUCCESS, `TcpOffloadBytesTransferred` =
    /// its length and its data start advanced by it; an empty NBL completes once every byte
    /// before it is acknowledged.
    pub fn acknowledge(&mut self, upto: u64) -> NblChain {
        let upto = upto.min(self.posted);
        if upto > self.acked {
            self.acked = upto;
        }
        let mut done = NblChain::new();
        while let Some(p) = self.pending.front_mut() {
            let end = self.front + p.len as u64;
            if end > self.acked {
                p.acked = (self.acked - self.front) as usize;
                break;
            }
            let mut p = self.pending.pop_front().expect("front exists");
            self.front = end;
            let len = p.len;
            finish(&mut p, len, NdisStatus::Success);
            done.push_back(p.nbl);
        }
        done
    }

    /// Completes every outstanding NBL with `status` (REQUEST_ABORTED after a reset or an
    /// abortive disconnect, UPLOAD_IN_PROGRESS while the connection is being terminated): the
    /// front one with the bytes acknowledged of it, every later one with none (at most one
    /// partial NBL). The queue is empty afterwards; its offsets stay.
    pub fn fail_all(&mut self, status: NdisStatus) -> NblChain {
        let mut done = NblChain::new();
        let mut first = true;
        while let Some(mut p) = self.pending.pop_front() {
            let acked = if first { p.acked } else { 0 };
            first = false;
            finish(&mut p, acked, status);
            done.push_back(p.nbl);
        }
        self.front = self.posted;
        done
    }
}

impl SendQueue {
    /// Terminate, the other way out (R-SND-13): the outstanding NBLs go back to the host
    /// uncompleted, in their original order, for it to send itself. The front one's NBs are
    /// advanced past its acknowledged bytes, so the data start of the returned chain is the
    /// first unacknowledged byte (SND.UNA); nothing else is touched. The queue is empty
    /// afterwards.
    pub fn hand_back(&mut self) -> NblChain {
        let mut out = NblChain::new();
        let mut first = true;
        while let Some(mut p) = self.pending.pop_front() {
            if first {
                let mut left = p.acked;
                for nb in p.nbl.net_buffers_mut() {
                    let n = left.min(nb.data_length());
                    // Within the NB's data by construction.
                    let _ = nb.advance_data_start(n);
                    left -= n;
                }
            }
            first = false;
            out.push_back(p.nbl);
        }
        self.front = self.posted;
        out
    }
}

/// Sets an NBL's completion fields: status, bytes transferred, and each NB's data start
/// advanced by exactly its own acknowledged bytes (the first NBs wholly, then part of one).
fn finish(p: &mut Pending, acked: usize, status: NdisStatus) {
    p.nbl.status = status;
    p.nbl.set_tcp_offload_bytes_transferred(acked);
    let mut left = acked;
    for nb in p.nbl.net_buffers_mut() {
        let n = left.min(nb.data_length());
        // Within the NB's data by construction (n <= its data length).
        let _ = nb.advance_data_start(n);
        left -= n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ndis::{Mdl, NblId, NetBuffer, PoolTag};
    use proptest::prelude::*;

    /// A send NBL of `mdls` MDLs holding `bytes`, its data starting `skip` bytes in.
    fn nbl(serial: u64, bytes: &[u8], mdls: usize, skip: usize) -> NetBufferList {
        let mut all = vec![0xEE; skip];
        all.extend_from_slice(bytes);
        let per = all.len().div_ceil(mdls.max(1)).max(1);
        let chain: Vec<Mdl> = all.chunks(per).map(|c| Mdl::from_bytes(c.to_vec())).collect();
        let chain = if chain.is_empty() { vec![Mdl::from_bytes(Vec::new())] } else { chain };
        let mut nb = NetBuffer::new(chain);
        nb.advance_data_start(skip).unwrap();
        NetBufferList::new(NblId::new(PoolTag::Host, serial), nb)
    }

    /// A send NBL of several NBs, one per part.
    fn multi(serial: u64, parts: &[&[u8]]) -> NetBufferList {
        let mut nbs: Vec<NetBuffer> = parts.iter().map(|p| NetBuffer::new(vec![Mdl::from_bytes(p.to_vec())])).collect();
        let first = nbs.remove(0);
        NetBufferList::with_net_buffers(NblId::new(PoolTag::Host, serial), first, nbs)
    }

    #[test]
    fn several_nbs_per_nbl_read_in_order_and_advance_each_by_its_own_bytes() {
        let mut q = SendQueue::new();
        q.post(NblChain::single(multi(1, &[b"abc", b"", b"defgh", b"ij"])));
        assert_eq!(q.posted(), 10);
        assert_eq!(collect(&q, 2, 5), b"cdefg");
        assert!(q.acknowledge(6).is_empty());
        let failed = q.fail_all(NdisStatus::UploadInProgress);
        let n = failed.front().unwrap();
        assert_eq!(n.tcp_offload_bytes_transferred(), 6);
        let left: Vec<usize> = n.net_buffers().map(|nb| nb.data_length()).collect();
        assert_eq!(left, vec![0, 0, 2, 2], "3 + 0 + 3 of 5 acknowledged");
    }

    #[test]
    fn hand_back_returns_outstanding_nbls_from_the_first_unacknowledged_byte() {
        let mut q = SendQueue::new();
        q.post([nbl(1, b"0123456789", 2, 0), nbl(2, b"abcdef", 1, 0), nbl(3, b"XYZ", 1, 0)].into_iter().collect());
        assert_eq!(q.acknowledge(13).len(), 1);
        let back = q.hand_back();
        assert!(q.is_empty());
        let rest: Vec<Vec<u8>> = back
            .iter()
            .map(|n| {
                let mut v = Vec::new();
                n.net_buffer().copy_out(n.net_buffer().data_offset(), n.data_length(), &mut v);
                v
            })
            .collect();
        assert_eq!(rest, vec![b"def".to_vec(), b"XYZ".to_vec()], "SND.UNA onwards, in order");
        assert!(back.iter().all(|n| n.tcp_offload_bytes_transferred() == 0), "not completed");
    }

    fn collect(q: &SendQueue, from: u64, len: usize) -> Vec<u8> {
        q.slices(from, len).flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn bytes_come_out_in_posting_order_and_complete_on_ack() {
        let mut q = SendQueue::new();
        q.post([nbl(1, b"hello ", 2, 3), nbl(2, b"", 1, 0)].into_iter().collect());
        q.post(NblChain::single(nbl(3, b"world", 3, 0)));
        assert_eq!(q.posted(), 11);
        assert_eq!(collect(&q, 0, 100), b"hello world");
        assert_eq!(collect(&q, 4, 4), b"o wo");
        assert_eq!(q.nbl_ends(0).collect::<Vec<_>>(), vec![6, 11]);
        // Part of the first: nothing completes.
        assert!(q.acknowledge(3).is_empty());
        assert_eq!(collect(&q, 0, 100), b"lo world", "acknowledged bytes are gone from view");
        // The first and the empty one behind it complete together.
        let done = q.acknowledge(6);
        let v: Vec<_> = done.iter().map(|n| (n.id(), n.status, n.tcp_offload_bytes_transferred())).collect();
        assert_eq!(
            v,
            vec![
                (NblId::new(PoolTag::Host, 1), NdisStatus::Success, 6),
                (NblId::new(PoolTag::Host, 2), NdisStatus::Success, 0)
            ]
        );
        assert_eq!(done.front().unwrap().net_buffer().data_length(), 0, "data start advanced by 6");
        assert_eq!(q.acknowledge(100).len(), 1, "clipped to what was posted");
        assert!(q.is_empty());
        assert_eq!(q.acked(), 11);
    }

    #[test]
    fn failure_leaves_at_most_one_partial_nbl() {
        let mut q = SendQueue::new();
        q.post([nbl(1, &[1; 10], 1, 0), nbl(2, &[2; 10], 1, 0), nbl(3, &[3; 10], 1, 0)].into_iter().collect());
        let done = q.acknowledge(14);
        assert_eq!(done.len(), 1);
        let failed = q.fail_all(NdisStatus::RequestAborted);
        let v: Vec<_> = failed.iter().map(|n| (n.status, n.tcp_offload_bytes_transferred())).collect();
        assert_eq!(v, vec![(NdisStatus::RequestAborted, 4), (NdisStatus::RequestAborted, 0)]);
        assert_eq!(failed.front().unwrap().net_buffer().data_length(), 6, "advanced by its 4 acknowledged bytes");
        assert!(q.is_empty() && q.fail_all(NdisStatus::RequestAborted).is_empty());
    }

    proptest! {
        /// Any posts (sizes, MDL splits, data starts, empty NBLs) and any acknowledgements:
        /// the stream read is the bytes posted; every NBL completes exactly once, in order,
        /// SUCCESS with its full length exactly when the acknowledgement covers it; a final
        /// failure completes the rest with at most one partial.
        #[test]
        fn every_nbl_completes_once_in_order(
            posts in proptest::collection::vec(proptest::collection::vec((0usize..300, 1usize..4, 0usize..5), 1..4), 1..6),
            acks in proptest::collection::vec(0u64..2000, 0..12),
        ) {
            let mut q = SendQueue::new();
            let mut stream = Vec::new();
            let mut lens = Vec::new();
            let mut serial = 0u64;
            for call in &posts {
                let mut chain = NblChain::new();
                for &(len, mdls, skip) in call {
                    let bytes: Vec<u8> = (0..len).map(|i| (stream.len() + i) as u8 ^ 0x5A).collect();
                    stream.extend_from_slice(&bytes);
                    // Three "MDLs" here means three NBs of one MDL each instead.
                    if mdls == 3 {
                        let (k, j) = (len / 3, 2 * len / 3);
                        chain.push_back(multi(serial, &[&bytes[..k], &bytes[k..j], &bytes[j..]]));
                    } else {
                        chain.push_back(nbl(serial, &bytes, mdls, skip));
                    }
                    lens.push(len);
                    serial += 1;
                }
                q.post(chain);
            }
            prop_assert_eq!(collect(&q, 0, usize::MAX), stream.clone());
            let mut completed: Vec<(u64, NdisStatus, usize)> = Vec::new();
            let mut acks = acks;
            acks.sort_unstable();
            for a in acks {
                for n in q.acknowledge(a) {
                    completed.push((n.id().0, n.status, n.tcp_offload_bytes_transferred()));
                }
                // Whatever is still queued reads as the stream from the acknowledged point.
                let rest = collect(&q, 0, usize::MAX);
                prop_assert_eq!(&rest[..], &stream[q.acked() as usize..]);
            }
            let acked = q.acked();
            for n in q.fail_all(NdisStatus::RequestAborted) {
                completed.push((n.id().0, n.status, n.tcp_offload_bytes_transferred()));
            }
            prop_assert_eq!(completed.len(), lens.len());
            let mut end = 0u64;
            let mut partials = 0;
            for (i, (id, status, n)) in completed.iter().enumerate() {
                prop_assert_eq!(*id, NblId::new(PoolTag::Host, i as u64).0, "in posting order, once each");
                let start = end;
                end += lens[i] as u64;
                if end <= acked && *status == NdisStatus::Success {
                    prop_assert_eq!(*n, lens[i]);
                } else {
                    prop_assert_eq!(*status, NdisStatus::RequestAborted);
                    prop_assert!(end > acked || lens[i] == 0 && start == acked);
                    let want = acked.saturating_sub(start).min(lens[i] as u64) as usize;
                    prop_assert_eq!(*n, if partials == 0 { want } else { 0 });
                    if *n > 0 {
                        partials += 1;
                    }
                }
            }
            prop_assert!(partials <= 1);
        }
    }
}
