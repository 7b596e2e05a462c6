//! The delivery algorithm of spec §5, for many connections: posted FIFO, buffered bytes,
//! push timer, indications, FIN/RST/abort, offload and terminate.
//!
//! One function per flowchart connector: `Delivery::fill` (connector A: copy into posted
//! requests, FIFO, buffered bytes first), the indication step of `Delivery::run` (connector
//! B), and the push-timer expiry in [`Delivery::handle_timeout`] (event C). Events A (post)
//! and B (in-sequence data) enter through [`OffloadTarget::receive`] and
//! [`ReceiveInput::receive_data`]. Every resolved ambiguity is named in
//! [`super::ambiguity`].
//!
//! Payload is copied once, from the caller's slice straight into the head request's MDLs.
//! Nothing on that path allocates: posted NBLs move between chains by relinking, indication
//! NBLs come from a preallocated pool that `receive_return` refills, and buffered bytes live in
//! a per-connection ring allocated the first time bytes must wait (then kept).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use super::ambiguity;
use super::send::SendQueue;
use super::{
    ApiMisuse, ConnId, IndicateReturn, InitiateFailed, InitiateOffload, NestedCalls, OffloadTarget, PostRejected,
    ProtocolHost, ReceiveInput, SendInput, SendStream,
};
use crate::ndis::{
    DisconnectKind, Mdl, NblChain, NblId, NdisStatus, NetBuffer, NetBufferList, PoolTag, TcpConnectionState,
    TcpDelegatedState, TcpOffloadEvent, TcpOffloadState,
};
use crate::time::Instant;

/// Send NBLs completed in one `NdisTcpOffloadSendComplete` at most (a trace line lists at
/// most `schema::MAX_NBLS`; hosts process batches of this size comfortably).
pub const MAX_SEND_COMPLETION_BATCH: usize = 1024;
/// `MiniportReserved` slot: payload bytes the target placed into a posted request so far.
const PLACED: usize = 0;
/// `MiniportReserved` slot: `TcpReceiveBytesTransferred` read at post time (spec §8 A7).
const PREFILLED: usize = 1;

/// Re-arms a target NBL's net buffer to hold exactly the first `len` bytes of `ring`
/// (`len` at most the chain's bytes): indications and terminate's BufferedData.
fn load_front(nb: &mut NetBuffer, ring: &VecDeque<u8>, extra: &[u8], len: usize) {
    let len = len.min(nb.chain_len());
    // Cannot fail: `len` fits the chain.
    let _reset: Result<(), _> = nb.reset_used_space(0, len);
    let (a, b) = ring.as_slices();
    let mut w = 0;
    for part in [a, b, extra] {
        if w >= len {
            break;
        }
        w += nb.write_used(w, &part[..part.len().min(len - w)]);
    }
}

/// Zero-byte requests completed per run at most: work per event stays bounded however many
/// the host keeps posted (the rest complete on the next event or kick).
const MAX_ZERO_PER_RUN: usize = 64;

/// Tunables of the delivery layer.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Push timer (TcpPushTicks at 1000 ticks/s; Windows default 500 ms).
    pub push_timeout: Duration,
    /// NBLs in the chimney indication pool (shared by all connections).
    pub indication_pool: usize,
    /// MDLs chained on each indication NBL.
    pub indication_mdls: usize,
    /// Bytes per indication MDL.
    pub indication_mdl_bytes: usize,
    /// Highest connection id accepted (ids index a table).
    pub max_conn_id: u32,
    /// Buffer cap used when the host's `InitialRcvWnd` is 0.
    pub rcv_wnd_if_unset: u32,
    /// Bytes `receive_data` accepts beyond the buffer cap: covers a peer that fills the last
    /// window-scale unit the engine advertised by rounding up (RFC 7323 §2.4).
    pub slack: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            push_timeout: Duration::from_millis(500),
            indication_pool: 64,
            indication_mdls: 4,
            indication_mdl_bytes: 16 * 1024,
            max_conn_id: 1 << 20,
            rcv_wnd_if_unset: 256 * 1024,
            slack: 1 << 14,
        }
    }
}

/// Counters of the delivery layer, all connections together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    /// NdisTcpOffloadReceiveComplete calls.
    pub completion_calls: u64,
    /// NBLs completed.
    pub completed_nbls: u64,
    /// Payload bytes placed into completed requests.
    pub completed_bytes: u64,
    /// NdisTcpOffloadReceiveHandler calls.
    pub indications: u64,
    /// Bytes consumed through indications.
    pub indicated_bytes: u64,
    /// Indications refused in whole or in part.
    pub indications_refused: u64,
    /// Event indications.
    pub events: u64,
    /// Times an indication waited because the pool was empty.
    pub pool_empty: u64,
    /// NBLs returned that did not come from this target (dropped).
    pub foreign_returns: u64,
    /// Posts made from inside an upcall for a connection that is not offloaded.
    pub rejected_nested_posts: u64,
    /// `send_complete` upcalls.
    pub send_completion_calls: u64,
    /// Send NBLs completed (any status).
    pub sends_completed: u64,
    /// Send bytes completed as acknowledged (`TcpOffloadBytesTransferred` summed).
    pub send_bytes_completed: u64,
    /// Disconnects completed.
    pub disconnects_completed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// TcpIndicateDisconnect made; every request now completes INVALID_STATE (R-FIN-3, A9).
    Disconnected,
    /// RST or abortive disconnect; every request completes REQUEST_ABORTED (R-RST-1, R-ABT-1).
    Aborted,
}

#[derive(Debug)]
struct Conn {
    phase: Phase,
    /// InitialRcvWnd: the bytes this connection may hold that no request has taken.
    rcv_buffer: usize,
    indication_size: usize,
    rcv_nxt: u32,
    posted: NblChain,
    posted_free: usize,
    buffered: VecDeque<u8>,
    /// Stream offset of the first byte not yet completed or accepted (the head request's start).
    consumed: u64,
    fed: u64,
    /// Stream offset just past the newest PSH (0 = none): spec §8 A22.
    psh_mark: u64,
    fin: bool,
    abort_event: bool,
    indicate_blocked: bool,
    push_deadline: Option<Instant>,
    push_fired: bool,
    timer_entry: Option<Instant>,
    kick: bool,
    busy: bool,
    waiting_pool: bool,
    /// The send half, allocated on the first send or disconnect (a receive-only connection
    /// never has one).
    send: Option<Box<SendSide>>,
}

/// Where a connection's send half stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendPhase {
    /// Sends are taken.
    Open,
    /// The host disconnected gracefully: no more sends; FIN after the queue.
    FinQueued,
    /// FIN acknowledged, disconnect completed.
    FinAcked,
    /// Reset, abortive disconnect or terminate: every send failed; nothing more is sent.
    Closed,
}

/// One connection's send half: the host's send NBLs as a stream, and its disconnect.
#[derive(Debug)]
struct SendSide {
    queue: SendQueue,
    phase: SendPhase,
    /// The graceful disconnect's NBL while its data is queued or its FIN unacknowledged (an
    /// NBL with data sits in `queue` until acknowledged; this holds its id).
    disconnect_id: Option<NblId>,
    /// The graceful disconnect's NBL once its data is acknowledged, waiting for the FIN's.
    disconnect_nbl: NblChain,
    /// A graceful disconnect was requested and not completed yet.
    disconnect_pending: bool,
    /// The host aborted: the engine owes the peer a RST.
    host_aborted: bool,
    /// The host disconnected gracefully (even if that failed): no more sends (R-DSC-6).
    graceful: bool,
}

impl SendSide {
    fn new() -> SendSide {
        SendSide {
            queue: SendQueue::new(),
            phase: SendPhase::Open,
            disconnect_id: None,
            disconnect_nbl: NblChain::new(),
            disconnect_pending: false,
            host_aborted: false,
            graceful: false,
        }
    }

    /// Moves the disconnect NBL, if `done` holds it (always last: nothing is posted after
    /// it), from `done` to `disconnect_nbl`.
    fn split_disconnect(&mut self, done: &mut NblChain) {
        let Some(id) = self.disconnect_id else { return };
        if done.back().is_some_and(|n| n.id() == id) {
            let mut last = done.pop_back_chain();
            self.disconnect_nbl.append(&mut last);
        }
    }
}

impl Conn {
    fn head_holds_data(&self) -> bool {
        // A zero-byte request has no room, so it is never "partially filled" (A8), whatever
        // the host claims to have pre-filled.
        self.posted.front().is_some_and(|h| {
            h.net_buffer().data_length() > 0 && (h.miniport_reserved[PLACED] > 0 || h.miniport_reserved[PREFILLED] > 0)
        })
    }

    /// Whether the head request holds bytes this target placed (not just host pre-fill).
    fn head_has_placed(&self) -> bool {
        self.posted.front().is_some_and(|h| h.miniport_reserved[PLACED] > 0)
    }

    fn head_is_partial_push(&self) -> bool {
        self.head_holds_data() && self.posted.front().is_some_and(|h| !h.tcp_receive_no_push())
    }
}

/// The chimney delivery layer: implements the target entry points for many connections and
/// calls the host's upcalls under the rules of spec §3–§6.
pub struct Delivery {
    cfg: DeliveryConfig,
    conns: Vec<Option<Box<Conn>>>,
    timers: BinaryHeap<Reverse<(Instant, u32)>>,
    pool: NblChain,
    pool_serial: u64,
    nested: NestedCalls,
    wake: VecDeque<ConnId>,
    pool_waiters: VecDeque<ConnId>,
    due_scratch: Vec<(Instant, u32)>,
    rejected: Vec<PostRejected>,
    /// Connections whose send stream grew or got a disconnect inside an upcall.
    send_ready: Vec<ConnId>,
    /// Disconnects the host made inside upcalls, for the engine to perform.
    nested_disconnects: Vec<(ConnId, DisconnectKind, NblChain)>,
    /// Sends made inside upcalls that could not be taken.
    rejected_sends: Vec<PostRejected>,
    stats: DeliveryStats,
}

impl Delivery {
    /// A delivery layer with its indication pool allocated.
    pub fn new(cfg: DeliveryConfig) -> Delivery {
        let mut d = Delivery {
            cfg,
            conns: Vec::new(),
            timers: BinaryHeap::new(),
            pool: NblChain::new(),
            pool_serial: 0,
            nested: NestedCalls::new(),
            wake: VecDeque::new(),
            pool_waiters: VecDeque::new(),
            due_scratch: Vec::new(),
            rejected: Vec::new(),
            send_ready: Vec::new(),
            nested_disconnects: Vec::new(),
            rejected_sends: Vec::new(),
            stats: DeliveryStats::default(),
        };
        for _ in 0..d.cfg.indication_pool {
            let nbl = d.new_target_nbl();
            d.pool.push_back(nbl);
        }
        d
    }

    fn new_target_nbl(&mut self) -> NetBufferList {
        self.pool_serial += 1;
        let mdls =
            (0..self.cfg.indication_mdls.max(1)).map(|_| Mdl::zeroed(self.cfg.indication_mdl_bytes.max(1))).collect();
        NetBufferList::new(NblId::new(PoolTag::Target, self.pool_serial), NetBuffer::new(mdls))
    }

    /// Counters so far.
    pub fn stats(&self) -> &DeliveryStats {
        &self.stats
    }

    /// Posts made from inside upcalls for connections that are not offloaded, handed back.
    pub fn take_rejected_posts(&mut self) -> Vec<PostRejected> {
        std::mem::take(&mut self.rejected)
    }

    /// Bytes held by the target for `conn` and not yet delivered (`ReceiveBacklogSize`).
    pub fn receive_backlog(&self, conn: ConnId) -> usize {
        self.conn(conn).map_or(0, |c| c.buffered.len())
    }

    /// A one-line summary of `conn`'s delivery state, for diagnosing a stuck run.
    pub fn describe(&self, conn: ConnId) -> String {
        match self.conn(conn) {
            None => format!("{conn}: not offloaded"),
            Some(c) => format!(
                "{conn}: {:?} fin={} buffered={} posted={} fed={} consumed={} blocked={} pool_wait={} push={:?} timer={:?} pool={}/{} waiters={:?}",
                c.phase,
                c.fin,
                c.buffered.len(),
                c.posted.len(),
                c.fed,
                c.consumed,
                c.indicate_blocked,
                c.waiting_pool,
                c.push_deadline,
                c.timer_entry,
                self.pool.len(),
                self.cfg.indication_pool,
                self.pool_waiters
            ),
        }
    }

    /// Bytes of one connection's delivery state (boxed), for memory accounting.
    pub fn conn_size() -> usize {
        std::mem::size_of::<Conn>()
    }

    /// Connections currently offloaded.
    pub fn connections(&self) -> usize {
        self.conns.iter().filter(|c| c.is_some()).count()
    }

    fn conn(&self, id: ConnId) -> Option<&Conn> {
        self.conns.get(id.0 as usize).and_then(|c| c.as_deref())
    }

    fn conn_mut(&mut self, id: ConnId) -> Result<&mut Conn, ApiMisuse> {
        self.conns.get_mut(id.0 as usize).and_then(|c| c.as_deref_mut()).ok_or(ApiMisuse::UnknownConnection(id))
    }

    /// Queues posted NBLs on `conn` (event A's bookkeeping; the caller runs the algorithm).
    fn post_into(conn: &mut Conn, mut nbls: NblChain) {
        for nbl in nbls.iter_mut() {
            // Read the host's slots before slot 0 is ever written (spec §2.5 aliasing).
            let prefilled = ambiguity::prefilled_bytes(nbl);
            nbl.miniport_reserved = [0, prefilled];
            conn.posted_free += nbl.net_buffer().data_length();
        }
        conn.posted.append(&mut nbls);
        // R-IND-7: any post, zero-byte included, re-enables indications.
        conn.indicate_blocked = false;
    }

    /// Unlinks the head request, writes Status / TcpOffloadBytesTransferred, advances its data
    /// start by the bytes placed (R-CMP-7) and links it to `done`.
    fn complete_head(conn: &mut Conn, status: NdisStatus, done: &mut NblChain) {
        let mut one = conn.posted.pop_front_chain();
        if let Some(nbl) = one.front_mut() {
            let placed = nbl.miniport_reserved[PLACED];
            let room = nbl.net_buffer().data_length();
            conn.posted_free -= room - placed;
            nbl.status = status;
            nbl.set_tcp_offload_bytes_transferred(placed);
            // Cannot fail: `placed <= DataLength` is kept by `fill`.
            let _advanced: Result<(), _> = nbl.net_buffer_mut().advance_data_start(placed);
            debug_assert!(_advanced.is_ok());
            nbl.miniport_reserved = [0, 0];
            conn.consumed += placed as u64;
        }
        done.append(&mut one);
    }

    /// Connector A (FILL): copies buffered bytes, then `new`, into posted requests in FIFO
    /// order and links every filled request to `done`. Returns how much of `new` it took.
    fn fill(conn: &mut Conn, new: &[u8], done: &mut NblChain, zero_done: &mut bool) -> usize {
        let mut took = 0;
        let mut zero_now = false;
        let mut zeros = 0usize;
        loop {
            let available = conn.buffered.len() + (new.len() - took);
            let Some(head) = conn.posted.front_mut() else {
                break;
            };
            let cap = head.net_buffer().data_length();
            if cap == 0 {
                if ambiguity::zero_byte_request_completes(available) && !*zero_done && zeros < MAX_ZERO_PER_RUN {
                    Self::complete_head(conn, NdisStatus::Success, done);
                    zero_now = true;
                    zeros += 1;
                    continue;
                }
                break;
            }
            let mut placed = head.miniport_reserved[PLACED];
            if placed < cap {
                if available == 0 {
                    break;
                }
                let nb = head.net_buffer_mut();
                let mut n = 0;
                if !conn.buffered.is_empty() {
                    let (a, b) = conn.buffered.as_slices();
                    n += nb.write_used(placed, a);
                    if placed + n < cap {
                        n += nb.write_used(placed + n, b);
                    }
                    conn.buffered.drain(..n);
                }
                if placed + n < cap && took < new.len() {
                    let m = nb.write_used(placed + n, &new[took..]);
                    took += m;
                    n += m;
                }
                placed += n;
                head.miniport_reserved[PLACED] = placed;
                conn.posted_free -= n;
            }
            if placed == cap {
                Self::complete_head(conn, NdisStatus::Success, done);
            } else {
                break;
            }
        }
        *zero_done |= zero_now;
        took
    }

    /// Completes every posted request with `status` (abort, disconnect, terminate paths).
    fn complete_all(conn: &mut Conn, status: NdisStatus, done: &mut NblChain) {
        while !conn.posted.is_empty() {
            Self::complete_head(conn, status, done);
        }
    }

    /// Handles what the host did inside an upcall: posts (in order) and returns.
    fn absorb_nested(&mut self, now: Instant, me: ConnId, conn: &mut Conn, nested: &mut NestedCalls) {
        for (target, nbls) in nested.drain_posts() {
            if target == me {
                Self::post_into(conn, nbls);
            } else if let Ok(other) = self.conn_mut(target) {
                Self::post_into(other, nbls);
                self.wake.push_back(target);
            } else {
                self.stats.rejected_nested_posts += 1;
                self.rejected.push(PostRejected { nbls, error: ApiMisuse::UnknownConnection(target) });
            }
        }
        for (target, nbls) in nested.drain_sends() {
            let r = if target == me {
                Self::post_send_into(conn, target, nbls)
            } else {
                match self.conn_mut(target) {
                    Ok(other) => Self::post_send_into(other, target, nbls),
                    Err(error) => Err(PostRejected { nbls, error }),
                }
            };
            match r {
                Ok(()) => {
                    if !self.send_ready.contains(&target) {
                        self.send_ready.push(target);
                    }
                    if target != me {
                        self.wake.push_back(target);
                    }
                }
                Err(rej) => {
                    self.stats.rejected_nested_posts += 1;
                    self.rejected_sends.push(rej);
                }
            }
        }
        self.nested_disconnects.extend(nested.drain_disconnects());
        let returned = nested.take_returns();
        if !returned.is_empty() {
            self.take_back(now, returned);
        }
    }

    /// Queues send NBLs on `conn` (R-SND-1, R-SND-2): refused after the host's graceful
    /// disconnect (R-DSC-6); taken, and failed on the next run, after a reset or abort.
    fn post_send_into(conn: &mut Conn, id: ConnId, nbls: NblChain) -> Result<(), PostRejected> {
        let side = conn.send.get_or_insert_with(|| Box::new(SendSide::new()));
        match side.phase {
            _ if side.graceful => Err(PostRejected { nbls, error: ApiMisuse::SendClosed(id) }),
            SendPhase::FinQueued | SendPhase::FinAcked => Err(PostRejected { nbls, error: ApiMisuse::SendClosed(id) }),
            SendPhase::Open | SendPhase::Closed => {
                side.queue.post(nbls);
                Ok(())
            }
        }
    }

    fn upcall_send_complete(
        &mut self,
        now: Instant,
        id: ConnId,
        conn: &mut Conn,
        mut done: NblChain,
        host: &mut dyn ProtocolHost,
    ) {
        // Batched, but at most `MAX_SEND_COMPLETION_BATCH` NBLs per upcall: one ACK of many
        // tiny sends would otherwise hand the host tens of thousands at once.
        while !done.is_empty() {
            let batch = done.split_front(MAX_SEND_COMPLETION_BATCH);
            self.stats.send_completion_calls += 1;
            self.stats.sends_completed += batch.len() as u64;
            self.stats.send_bytes_completed +=
                batch.iter().map(|n| n.tcp_offload_bytes_transferred() as u64).sum::<u64>();
            self.upcall(now, id, conn, |nested| host.send_complete(id, batch, nested));
        }
    }

    /// One upcall into the host for `conn`, marked busy while it runs (posts and sends made
    /// inside are queued in `NestedCalls`, never re-entered), then what the host did inside
    /// it is carried out. Returns the upcall's own result.
    fn upcall<R>(&mut self, now: Instant, id: ConnId, conn: &mut Conn, f: impl FnOnce(&mut NestedCalls) -> R) -> R {
        let mut nested = std::mem::take(&mut self.nested);
        conn.busy = true;
        let r = f(&mut nested);
        conn.busy = false;
        self.absorb_nested(now, id, conn, &mut nested);
        self.nested = nested;
        r
    }

    fn upcall_disconnect_complete(
        &mut self,
        now: Instant,
        id: ConnId,
        conn: &mut Conn,
        mut nbl: NblChain,
        status: NdisStatus,
        host: &mut dyn ProtocolHost,
    ) {
        self.stats.disconnects_completed += 1;
        if let Some(n) = nbl.front_mut() {
            n.status = status;
        }
        self.upcall(now, id, conn, |nested| host.disconnect_complete(id, nbl, status, nested));
    }

    /// The peer acknowledged the send stream up to `upto` (`posted + 1` covers our FIN):
    /// completes the NBLs that covers (SUCCESS, R-SND-6), then the graceful disconnect once
    /// its FIN is acknowledged (R-DSC-3). Loops over sends posted from inside the upcalls.
    fn send_progress(&mut self, now: Instant, id: ConnId, conn: &mut Conn, upto: u64, host: &mut dyn ProtocolHost) {
        loop {
            let Some(side) = conn.send.as_mut() else { return };
            if side.phase == SendPhase::Closed {
                return;
            }
            let mut done = side.queue.acknowledge(upto);
            side.split_disconnect(&mut done);
            if !done.is_empty() {
                self.upcall_send_complete(now, id, conn, done, host);
                continue;
            }
            let fin_acked = side.phase == SendPhase::FinQueued
                && side.queue.is_empty()
                && upto > side.queue.posted()
                && side.disconnect_pending;
            if fin_acked {
                side.phase = SendPhase::FinAcked;
                side.disconnect_pending = false;
                let nbl = side.disconnect_nbl.take();
                self.upcall_disconnect_complete(now, id, conn, nbl, NdisStatus::Success, host);
                continue;
            }
            return;
        }
    }

    /// Fails every outstanding send with `status` (at most one partial NBL, R-SND-8), then a
    /// pending graceful disconnect with the same status (A41); the send half is closed.
    /// Loops over sends posted from inside the upcalls.
    fn fail_sends(
        &mut self,
        now: Instant,
        id: ConnId,
        conn: &mut Conn,
        status: NdisStatus,
        host: &mut dyn ProtocolHost,
    ) {
        loop {
            let Some(side) = conn.send.as_mut() else { return };
            side.phase = SendPhase::Closed;
            let mut done = side.queue.fail_all(status);
            side.split_disconnect(&mut done);
            if !done.is_empty() {
                self.upcall_send_complete(now, id, conn, done, host);
                continue;
            }
            if side.disconnect_pending {
                side.disconnect_pending = false;
                let nbl = side.disconnect_nbl.take();
                self.upcall_disconnect_complete(now, id, conn, nbl, status, host);
                continue;
            }
            return;
        }
    }

    /// Whether the connection's send half holds something to fail.
    fn sends_to_fail(conn: &Conn) -> bool {
        conn.send.as_ref().is_some_and(|s| !s.queue.is_empty() || s.disconnect_pending)
    }

    /// Recycles returned target NBLs into the pool and wakes connections waiting for one.
    fn take_back(&mut self, _now: Instant, nbls: NblChain) {
        let mut nbls = nbls;
        while !nbls.is_empty() {
            let mut one = nbls.pop_front_chain();
            let ours = one.front().is_some_and(|n| n.id().pool() == Some(PoolTag::Target));
            if !ours {
                self.stats.foreign_returns += 1;
                continue;
            }
            if self.pool.len() < self.cfg.indication_pool {
                if let Some(n) = one.front_mut() {
                    n.status = NdisStatus::Success;
                    n.set_tcp_offload_bytes_transferred(0);
                }
                self.pool.append(&mut one);
            }
        }
        if !self.pool.is_empty() {
            // A waiter may be the connection whose upcall made this return (taken out of the
            // table while it runs): wake it all the same; `indicate_once` clears its flag.
            while let Some(id) = self.pool_waiters.pop_front() {
                if let Ok(c) = self.conn_mut(id) {
                    c.waiting_pool = false;
                }
                self.wake.push_back(id);
            }
        }
    }

    fn upcall_complete(
        &mut self,
        now: Instant,
        id: ConnId,
        conn: &mut Conn,
        done: NblChain,
        host: &mut dyn ProtocolHost,
    ) {
        self.stats.completion_calls += 1;
        self.stats.completed_nbls += done.len() as u64;
        self.stats.completed_bytes += done.iter().map(|n| n.tcp_offload_bytes_transferred() as u64).sum::<u64>();
        self.upcall(now, id, conn, |nested| host.receive_complete(id, done, nested));
    }

    fn upcall_event(
        &mut self,
        now: Instant,
        id: ConnId,
        conn: &mut Conn,
        event: TcpOffloadEvent,
        host: &mut dyn ProtocolHost,
    ) {
        self.stats.events += 1;
        self.upcall(now, id, conn, |nested| host.event_indicate(id, event, nested));
    }

    /// Connector B (INDICATE), one indication of the buffered bytes followed by `extra` (new
    /// bytes not buffered yet: indicated straight from the caller's slice, so an accepted
    /// indication costs one copy, not two). Returns `None` when the pool is empty, else
    /// whether the host refused some of the data (in whole or in part); `extra_used` says
    /// how much of `extra` was consumed.
    fn indicate_once(
        &mut self,
        now: Instant,
        id: ConnId,
        conn: &mut Conn,
        extra: &[u8],
        extra_used: &mut usize,
        host: &mut dyn ProtocolHost,
    ) -> Option<bool> {
        *extra_used = 0;
        let mut nbl = self.pool.pop_front_chain();
        let Some(n) = nbl.front_mut() else {
            self.stats.pool_empty += 1;
            if !conn.waiting_pool {
                conn.waiting_pool = true;
                self.pool_waiters.push_back(id);
            }
            return None;
        };
        conn.waiting_pool = false;
        let mut len = (conn.buffered.len() + extra.len()).min(n.net_buffer().chain_len());
        if conn.indication_size > 0 {
            len = len.min(conn.indication_size);
        }
        load_front(n.net_buffer_mut(), &conn.buffered, extra, len);
        n.status = NdisStatus::Success;
        n.set_tcp_offload_bytes_transferred(0);
        self.stats.indications += 1;
        let mut nested = std::mem::take(&mut self.nested);
        conn.busy = true;
        let outcome = host.receive_indicate(id, nbl, NdisStatus::Success, &mut nested);
        conn.busy = false;
        let consumed = match outcome {
            IndicateReturn::Success => len,
            IndicateReturn::NotAccepted(mut back) => {
                self.pool.append(&mut back);
                0
            }
            IndicateReturn::PartiallyAccepted { nbl: mut back, bytes_consumed } => {
                self.pool.append(&mut back);
                bytes_consumed.min(len)
            }
        };
        let from_ring = consumed.min(conn.buffered.len());
        conn.buffered.drain(..from_ring);
        *extra_used = consumed - from_ring;
        conn.consumed += consumed as u64;
        self.stats.indicated_bytes += consumed as u64;
        if consumed < len {
            // R-IND-7: no further indication until a post (posts made during this very
            // indication, absorbed next, lift the block again: flowchart 2 → FILL).
            self.stats.indications_refused += 1;
            conn.indicate_blocked = true;
        }
        self.absorb_nested(now, id, conn, &mut nested);
        self.nested = nested;
        Some(consumed < len)
    }

    /// Runs the algorithm for one connection until no rule asks for another upcall: FILL,
    /// completions, PSH/FIN/push-timer completion of the partial head, indications, events.
    /// `new` is freshly arrived in-sequence data (`arrived` restarts a running push timer).
    ///
    /// Every iteration either consumes data or is bounded per run (one round of zero-byte
    /// completions, one refused indication, one round of completions after disconnect or
    /// abort), so a host that re-posts from inside every upcall cannot keep one call busy
    /// forever; what such a host leaves pending is picked up by an immediate timer ("kick").
    fn run(&mut self, now: Instant, id: ConnId, host: &mut dyn ProtocolHost, new: &[u8], arrived: bool) {
        let Some(mut conn) = self.conns.get_mut(id.0 as usize).and_then(Option::take) else {
            return;
        };
        debug_assert!(!conn.busy, "R-CMP-5: delivery entered while an upcall is in progress");
        let mut new = new;
        // New bytes no request took, not yet copied into the ring: an indication may take
        // them straight from here; anything else buffers them first.
        let mut pending: &[u8] = &[];
        let mut zero_done = false;
        let mut refused = false;
        let mut closed_round = false;
        loop {
            if !pending.is_empty() {
                // Anything but an indication (a fill after a nested post, a completion) sees
                // the bytes in the ring, after the older ones.
                conn.buffered.extend(pending);
                pending = &[];
            }
            let mut done = NblChain::new();
            match conn.phase {
                Phase::Aborted => {
                    if conn.abort_event {
                        conn.abort_event = false;
                        self.upcall_event(now, id, &mut conn, TcpOffloadEvent::Abort, host);
                        continue;
                    }
                    if Self::sends_to_fail(&conn) {
                        // R-SND-8/9: after a reset or an abortive disconnect, every send fails.
                        self.fail_sends(now, id, &mut conn, ambiguity::STATUS_AFTER_ABORT, host);
                        continue;
                    }
                    if !closed_round {
                        Self::complete_all(&mut conn, ambiguity::STATUS_AFTER_ABORT, &mut done);
                        closed_round = true;
                    }
                }
                Phase::Disconnected => {
                    if !closed_round {
                        Self::complete_all(&mut conn, ambiguity::STATUS_AFTER_DISCONNECT, &mut done);
                        closed_round = true;
                    }
                }
                Phase::Open => {
                    let took = Self::fill(&mut conn, new, &mut done, &mut zero_done);
                    pending = &new[took..];
                    new = &[];
                    let pushed = ambiguity::push_applies(conn.psh_mark, conn.consumed) || conn.push_fired;
                    // FIN pushes placed bytes; a request holding only the host's pre-fill is
                    // not data of this stream and completes INVALID_STATE after the disconnect.
                    let fin_all_placed =
                        conn.fin && conn.buffered.is_empty() && pending.is_empty() && conn.head_has_placed();
                    if conn.head_holds_data() && ((conn.head_is_partial_push() && pushed) || fin_all_placed) {
                        Self::complete_head(&mut conn, NdisStatus::Success, &mut done);
                    }
                    conn.push_fired = false;
                    if !done.is_empty() {
                        // R-CMP-9: a completion stops the push timer; it restarts below for a
                        // new partially filled push request.
                        conn.push_deadline = None;
                    }
                }
            }
            if !done.is_empty() {
                self.upcall_complete(now, id, &mut conn, done, host);
                continue;
            }
            if conn.phase != Phase::Open {
                break;
            }
            if conn.fin && conn.buffered.is_empty() && pending.is_empty() && !conn.head_has_placed() {
                conn.phase = Phase::Disconnected;
                self.upcall_event(now, id, &mut conn, TcpOffloadEvent::Disconnect, host);
                continue;
            }
            // Connector B: indicate when no posted request can take data (zero-byte requests
            // hold none, A8) and no refusal is pending (R-IND-7).
            let waiting = !conn.buffered.is_empty() || !pending.is_empty();
            if conn.posted_free == 0 && waiting && ambiguity::indication_allowed(conn.indicate_blocked) && !refused {
                // At most one refused indication per run, whatever the host posted inside it
                // (a host that refuses and re-posts zero-byte requests would loop forever).
                let mut used = 0;
                let r = self.indicate_once(now, id, &mut conn, pending, &mut used, host);
                pending = &pending[used..];
                match r {
                    None => break,
                    Some(r) => refused |= r,
                }
                continue;
            }
            break;
        }
        conn.buffered.extend(pending);
        if conn.phase == Phase::Open && conn.head_is_partial_push() {
            if conn.push_deadline.is_none() || arrived {
                conn.push_deadline = Some(now + self.cfg.push_timeout);
            }
        } else {
            conn.push_deadline = None;
        }
        let data_waiting = !conn.buffered.is_empty() || !new.is_empty();
        let more = match conn.phase {
            Phase::Open => {
                let zero_head = conn.posted.front().is_some_and(|h| h.net_buffer().data_length() == 0);
                data_waiting
                    && ((zero_head && zero_done)
                        || (conn.posted_free == 0
                            && ambiguity::indication_allowed(conn.indicate_blocked)
                            && !conn.waiting_pool
                            && refused))
            }
            Phase::Disconnected | Phase::Aborted => !conn.posted.is_empty(),
        };
        if more && !conn.kick {
            conn.kick = true;
            self.timers.push(Reverse((now, id.0)));
        }
        // A wake-up that reached this connection while it was out of the table (its own
        // upcall returned indications) popped it from the waiters without clearing its
        // flag; left set, the next empty pool would never register it again.
        if conn.waiting_pool && !self.pool_waiters.contains(&id) {
            conn.waiting_pool = false;
        }
        self.schedule(id, &mut conn);
        self.conns[id.0 as usize] = Some(conn);
    }

    /// Makes sure the timer heap holds an entry no later than the connection's next deadline.
    fn schedule(&mut self, id: ConnId, conn: &mut Conn) {
        if let Some(d) = conn.push_deadline {
            if conn.timer_entry.is_none_or(|e| d < e) {
                conn.timer_entry = Some(d);
                self.timers.push(Reverse((d, id.0)));
            }
        }
    }

    /// Runs connections woken by nested posts on other connections or by pool refills.
    fn drive(&mut self, now: Instant, host: &mut dyn ProtocolHost) {
        while let Some(id) = self.wake.pop_front() {
            self.run(now, id, host, &[], false);
        }
    }
}

impl OffloadTarget for Delivery {
    fn receive(
        &mut self,
        now: Instant,
        id: ConnId,
        nbls: NblChain,
        host: &mut dyn ProtocolHost,
    ) -> Result<NdisStatus, PostRejected> {
        match self.conn_mut(id) {
            Ok(conn) => Self::post_into(conn, nbls),
            Err(error) => return Err(PostRejected { nbls, error }),
        }
        self.run(now, id, host, &[], false);
        self.drive(now, host);
        Ok(NdisStatus::Pending)
    }

    fn receive_return(&mut self, now: Instant, nbls: NblChain, host: &mut dyn ProtocolHost) -> NdisStatus {
        self.take_back(now, nbls);
        self.drive(now, host);
        NdisStatus::Success
    }

    fn disconnect(
        &mut self,
        now: Instant,
        id: ConnId,
        kind: DisconnectKind,
        nbl: NblChain,
        host: &mut dyn ProtocolHost,
    ) -> Result<NdisStatus, PostRejected> {
        let conn = match self.conn_mut(id) {
            Ok(c) => c,
            Err(error) => return Err(PostRejected { nbls: nbl, error }),
        };
        // R-DSC-1: one NBL with one NB; an abortive disconnect carries no data.
        let bad = nbl.len() > 1
            || nbl
                .front()
                .is_some_and(|n| n.net_buffer_count() > 1 || (kind == DisconnectKind::Abortive && n.data_length() > 0));
        if bad {
            return Err(PostRejected { nbls: nbl, error: ApiMisuse::BadDisconnectNbl(id) });
        }
        let side = conn.send.get_or_insert_with(|| Box::new(SendSide::new()));
        if kind == DisconnectKind::Graceful {
            if side.graceful {
                return Err(PostRejected { nbls: nbl, error: ApiMisuse::SendClosed(id) });
            }
            side.graceful = true;
            if conn.phase == Phase::Aborted || side.phase == SendPhase::Closed {
                // R-DSC-5: failed only because the connection was reset or aborted.
                let Some(mut conn) = self.conns.get_mut(id.0 as usize).and_then(Option::take) else {
                    return Ok(NdisStatus::Pending);
                };
                self.upcall_disconnect_complete(now, id, &mut conn, nbl, ambiguity::STATUS_AFTER_ABORT, host);
                self.conns[id.0 as usize] = Some(conn);
                // Requests posted inside that upcall complete REQUEST_ABORTED.
                self.run(now, id, host, &[], false);
                self.drive(now, host);
                return Ok(NdisStatus::Pending);
            }
            // R-DSC-2: its data after every earlier send, then FIN. The NBL rides in the
            // queue (so its bytes are read from its MDLs like any send) and is split out
            // when acknowledged.
            side.disconnect_id = nbl.front().map(|n| n.id());
            side.queue.post(nbl);
            side.phase = SendPhase::FinQueued;
            side.disconnect_pending = true;
            return Ok(NdisStatus::Pending);
        }
        // R-ABT-1 / R-DSC-4: stop receiving at once (indicated-but-unconsumed data
        // included), fail every send, then complete the disconnect: the engine sends the RST.
        let already = conn.phase == Phase::Aborted;
        side.host_aborted = true;
        conn.phase = Phase::Aborted;
        conn.buffered.clear();
        self.run(now, id, host, &[], false);
        if let Some(mut conn) = self.conns.get_mut(id.0 as usize).and_then(Option::take) {
            // Sends posted inside the upcalls above fail too, before the disconnect completes.
            self.fail_sends(now, id, &mut conn, ambiguity::STATUS_AFTER_ABORT, host);
            let status = if already { ambiguity::STATUS_AFTER_ABORT } else { NdisStatus::Success };
            self.upcall_disconnect_complete(now, id, &mut conn, nbl, status, host);
            self.conns[id.0 as usize] = Some(conn);
        }
        self.drive(now, host);
        Ok(NdisStatus::Pending)
    }

    fn send(
        &mut self,
        now: Instant,
        id: ConnId,
        nbls: NblChain,
        host: &mut dyn ProtocolHost,
    ) -> Result<NdisStatus, PostRejected> {
        let conn = match self.conn_mut(id) {
            Ok(c) => c,
            Err(error) => return Err(PostRejected { nbls, error }),
        };
        let aborted = conn.phase == Phase::Aborted;
        Self::post_send_into(conn, id, nbls)?;
        if aborted {
            // Taken (R-SND-1) and failed at once: the connection was reset.
            self.run(now, id, host, &[], false);
            self.drive(now, host);
        }
        Ok(NdisStatus::Pending)
    }

    fn terminate_offload(
        &mut self,
        now: Instant,
        id: ConnId,
        host: &mut dyn ProtocolHost,
    ) -> Result<TcpDelegatedState, ApiMisuse> {
        let mut conn =
            self.conns.get_mut(id.0 as usize).and_then(Option::take).ok_or(ApiMisuse::UnknownConnection(id))?;
        conn.push_deadline = None;
        // R-TRM-2: complete every outstanding request, including posts made meanwhile.
        while !conn.posted.is_empty() {
            let mut done = NblChain::new();
            while !conn.posted.is_empty() {
                // Only bytes this target placed make a request "hold data" here: a request
                // holding just the host's pre-fill completes UPLOAD_IN_PROGRESS (a host that
                // re-posts SUCCESS completions would otherwise keep the upload going forever).
                let status = if conn.head_has_placed() {
                    ambiguity::STATUS_AT_TERMINATE_WITH_DATA
                } else {
                    ambiguity::STATUS_AT_TERMINATE_EMPTY
                };
                Self::complete_head(&mut conn, status, &mut done);
            }
            self.upcall_complete(now, id, &mut conn, done, host);
            // R-SND-13: every outstanding send completes UPLOAD_IN_PROGRESS before the
            // terminate does (A43), including sends posted inside these upcalls.
            if Self::sends_to_fail(&conn) {
                self.fail_sends(now, id, &mut conn, NdisStatus::UploadInProgress, host);
            }
        }
        if Self::sends_to_fail(&conn) {
            self.fail_sends(now, id, &mut conn, NdisStatus::UploadInProgress, host);
        }
        // R-TRM-3: undelivered bytes go back as BufferedData ending right before RcvNxt.
        let mut buffered_data = NblChain::new();
        while !conn.buffered.is_empty() {
            let mut one = self.pool.pop_front_chain();
            if one.is_empty() {
                let nbl = self.new_target_nbl();
                one.push_back(nbl);
            }
            if let Some(n) = one.front_mut() {
                let len = conn.buffered.len().min(n.net_buffer().chain_len());
                load_front(n.net_buffer_mut(), &conn.buffered, &[], len);
                conn.buffered.drain(..len);
            }
            buffered_data.append(&mut one);
        }
        let state = match (conn.phase, conn.fin) {
            (Phase::Aborted, _) => TcpConnectionState::Closed,
            (_, true) => TcpConnectionState::CloseWait,
            _ => TcpConnectionState::Established,
        };
        self.drive(now, host);
        Ok(TcpDelegatedState {
            state: Some(state),
            rcv_nxt: conn.rcv_nxt,
            rcv_wnd: u32::try_from(conn.rcv_buffer).unwrap_or(u32::MAX),
            ts_recent: 0,
            buffered_data,
            snd_una: 0,
            snd_nxt: 0,
            send_data: NblChain::new(),
        })
    }

    fn handle_timeout(&mut self, now: Instant, host: &mut dyn ProtocolHost) {
        // Only what was due when the call began: a run may schedule a kick at `now` again (a
        // host that refuses and re-posts inside every indication), and that must wait for the
        // next call, or this call would never return.
        let mut due = std::mem::take(&mut self.due_scratch);
        while let Some(&Reverse((t, idx))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            due.push((t, idx));
        }
        for &(t, idx) in &due {
            let id = ConnId(idx);
            let Ok(conn) = self.conn_mut(id) else {
                continue;
            };
            if conn.timer_entry == Some(t) {
                conn.timer_entry = None;
            }
            let push_due = conn.push_deadline.is_some_and(|d| d <= now);
            if push_due {
                // Event C: complete the partially filled push request, if any (benign race
                // otherwise, spec §5.4).
                conn.push_deadline = None;
                conn.push_fired = true;
            }
            let kicked = std::mem::take(&mut conn.kick);
            if push_due || kicked {
                self.run(now, id, host, &[], false);
            } else if let Some(mut c) = self.conns[idx as usize].take() {
                self.schedule(id, &mut c);
                self.conns[idx as usize] = Some(c);
            }
        }
        due.clear();
        self.due_scratch = due;
        self.drive(now, host);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    fn push_timer(&self, conn: ConnId) -> Option<Instant> {
        self.conn(conn).and_then(|c| c.push_deadline)
    }
}

impl InitiateOffload for Delivery {
    fn initiate_offload(
        &mut self,
        now: Instant,
        id: ConnId,
        mut state: TcpOffloadState,
        _host: &mut dyn ProtocolHost,
    ) -> Result<NblChain, InitiateFailed> {
        let fail = |status, error, state| Err(InitiateFailed { status, error: Some(error), state: Box::new(state) });
        if id.0 > self.cfg.max_conn_id {
            return fail(
                NdisStatus::Failure,
                ApiMisuse::ConnIdOutOfRange { conn: id, max: self.cfg.max_conn_id },
                state,
            );
        }
        if self.conn(id).is_some() {
            return fail(NdisStatus::Failure, ApiMisuse::ConnectionExists(id), state);
        }
        let cap = match state.cached.initial_rcv_wnd {
            0 => self.cfg.rcv_wnd_if_unset,
            w => w,
        } as usize;
        let held: usize = state.delegated.buffered_data.iter().map(|n| n.net_buffer().data_length()).sum();
        if held > cap {
            // R-BUF-2: no room for the host's BufferedData.
            let e = ApiMisuse::WindowExceeded { conn: id, offered: held, space: cap };
            return fail(NdisStatus::OffloadTcpRcvBuffer, e, state);
        }
        // Allocated on first use, not at offload: an idle connection holds no ring (a million
        // of them would otherwise reserve a window each).
        let mut buffered = VecDeque::new();
        for nbl in state.delegated.buffered_data.iter() {
            let nb = nbl.net_buffer();
            for s in nb.slices(nb.data_offset(), nb.data_length()) {
                buffered.extend(s);
            }
        }
        let conn = Conn {
            phase: Phase::Open,
            rcv_buffer: cap,
            indication_size: state.cached.rcv_indication_size as usize,
            rcv_nxt: state.delegated.rcv_nxt,
            posted: NblChain::new(),
            posted_free: 0,
            buffered,
            consumed: 0,
            fed: held as u64,
            psh_mark: 0,
            fin: matches!(state.delegated.state, Some(TcpConnectionState::CloseWait)),
            abort_event: false,
            indicate_blocked: false,
            push_deadline: None,
            push_fired: false,
            timer_entry: None,
            kick: false,
            busy: false,
            waiting_pool: false,
            send: None,
        };
        let idx = id.0 as usize;
        if self.conns.len() <= idx {
            self.conns.resize_with(idx + 1, || None);
        }
        let mut conn = Box::new(conn);
        if !state.delegated.send_data.is_empty() {
            // R-SND-12: the host's send data is the target's now, first in the stream.
            let mut side = SendSide::new();
            side.queue.post(state.delegated.send_data.take());
            conn.send = Some(Box::new(side));
        }
        if held > 0 || conn.fin {
            // R-IND-11: nothing is indicated before this call returns; the buffered data is
            // offered on the next timer run (`poll_timeout` returns `now`).
            conn.kick = true;
            conn.timer_entry = Some(now);
            self.timers.push(Reverse((now, id.0)));
        }
        self.conns[idx] = Some(conn);
        Ok(state.delegated.buffered_data.take())
    }
}

impl ReceiveInput for Delivery {
    fn receive_data(
        &mut self,
        now: Instant,
        id: ConnId,
        data: &[u8],
        psh: bool,
        host: &mut dyn ProtocolHost,
    ) -> Result<(), ApiMisuse> {
        let space = self.receive_space(id);
        let conn = self.conn_mut(id)?;
        if conn.phase != Phase::Open || conn.fin {
            return Err(ApiMisuse::NotReceiving(id));
        }
        if data.len() > space {
            return Err(ApiMisuse::WindowExceeded { conn: id, offered: data.len(), space });
        }
        conn.fed += data.len() as u64;
        conn.rcv_nxt = conn.rcv_nxt.wrapping_add(data.len() as u32);
        if psh {
            conn.psh_mark = conn.fed;
        }
        self.run(now, id, host, data, !data.is_empty());
        self.drive(now, host);
        Ok(())
    }

    fn receive_fin(&mut self, now: Instant, id: ConnId, host: &mut dyn ProtocolHost) -> Result<(), ApiMisuse> {
        let conn = self.conn_mut(id)?;
        if conn.phase != Phase::Open || conn.fin {
            return Err(ApiMisuse::NotReceiving(id));
        }
        conn.fin = true;
        conn.rcv_nxt = conn.rcv_nxt.wrapping_add(1);
        self.run(now, id, host, &[], false);
        self.drive(now, host);
        Ok(())
    }

    fn receive_rst(&mut self, now: Instant, id: ConnId, host: &mut dyn ProtocolHost) -> Result<(), ApiMisuse> {
        let conn = self.conn_mut(id)?;
        if conn.phase == Phase::Aborted {
            return Err(ApiMisuse::NotReceiving(id));
        }
        conn.phase = Phase::Aborted;
        conn.abort_event = true;
        conn.buffered.clear();
        self.run(now, id, host, &[], false);
        self.drive(now, host);
        Ok(())
    }

    fn placement_room<'a>(&'a mut self, id: ConnId, max: usize, out: &mut [&'a mut [u8]]) -> usize {
        let Some(conn) = self.conns.get_mut(id.0 as usize).and_then(|c| c.as_deref_mut()) else {
            return 0;
        };
        if conn.phase != Phase::Open || conn.fin || conn.busy || !conn.buffered.is_empty() {
            return 0;
        }
        let (mut k, mut left) = (0, max);
        for nbl in conn.posted.iter_mut() {
            let cap = nbl.net_buffer().data_length();
            // `fill` completes a zero-byte request when data arrives: it stays the fill path's.
            if cap == 0 || left == 0 {
                break;
            }
            let placed = nbl.miniport_reserved[PLACED];
            for s in nbl.net_buffer_mut().used_slices_mut(placed, (cap - placed).min(left)) {
                let Some(slot) = out.get_mut(k) else {
                    return k;
                };
                left -= s.len();
                *slot = s;
                k += 1;
            }
        }
        k
    }

    fn placed_bytes(&self, id: ConnId, len: usize, f: &mut dyn FnMut(&[u8])) {
        let Some(conn) = self.conn(id) else { return };
        let mut left = len;
        for nbl in conn.posted.iter() {
            let nb = nbl.net_buffer();
            let placed = nbl.miniport_reserved[PLACED];
            let n = (nb.data_length() - placed).min(left);
            if nb.data_length() == 0 || n == 0 {
                break;
            }
            for s in nb.slices(nb.data_offset() + placed, n) {
                f(s);
            }
            left -= n;
        }
    }

    fn indicate_event(
        &mut self,
        now: Instant,
        id: ConnId,
        event: TcpOffloadEvent,
        host: &mut dyn ProtocolHost,
    ) -> Result<(), ApiMisuse> {
        let Some(mut conn) = self.conns.get_mut(id.0 as usize).and_then(Option::take) else {
            return Err(ApiMisuse::UnknownConnection(id));
        };
        self.upcall_event(now, id, &mut conn, event, host);
        self.conns[id.0 as usize] = Some(conn);
        // Posts made inside the upcall are queued: run the algorithm over them.
        self.run(now, id, host, &[], false);
        self.drive(now, host);
        Ok(())
    }

    fn receive_placed(
        &mut self,
        now: Instant,
        id: ConnId,
        len: usize,
        psh: bool,
        host: &mut dyn ProtocolHost,
    ) -> Result<(), ApiMisuse> {
        let conn = self.conn_mut(id)?;
        if conn.phase != Phase::Open || conn.fin {
            return Err(ApiMisuse::NotReceiving(id));
        }
        if !conn.buffered.is_empty() || conn.busy {
            return Err(ApiMisuse::PlacementBehindBuffered(id));
        }
        // The room `placement_room` offers, counted the same way.
        let mut room = 0;
        for nbl in conn.posted.iter() {
            let cap = nbl.net_buffer().data_length();
            if cap == 0 || room >= len {
                break;
            }
            room += cap - nbl.miniport_reserved[PLACED];
        }
        if len > room {
            return Err(ApiMisuse::WindowExceeded { conn: id, offered: len, space: room });
        }
        let mut left = len;
        for nbl in conn.posted.iter_mut() {
            if left == 0 {
                break;
            }
            let cap = nbl.net_buffer().data_length();
            let n = (cap - nbl.miniport_reserved[PLACED]).min(left);
            nbl.miniport_reserved[PLACED] += n;
            left -= n;
        }
        conn.posted_free -= len;
        conn.fed += len as u64;
        conn.rcv_nxt = conn.rcv_nxt.wrapping_add(len as u32);
        if psh {
            conn.psh_mark = conn.fed;
        }
        // `fill` completes the requests that are now full, in order, and the rest of the
        // algorithm runs as for copied bytes.
        self.run(now, id, host, &[], len > 0);
        self.drive(now, host);
        Ok(())
    }

    fn receive_window(&self, id: ConnId) -> usize {
        self.conn(id).map_or(0, |c| {
            if c.phase != Phase::Open || c.fin {
                0
            } else {
                c.rcv_buffer.saturating_sub(c.buffered.len())
            }
        })
    }

    fn receive_space(&self, id: ConnId) -> usize {
        self.conn(id).map_or(0, |c| {
            if c.phase != Phase::Open || c.fin {
                0
            } else {
                (c.rcv_buffer + self.cfg.slack).saturating_sub(c.buffered.len()) + c.posted_free
            }
        })
    }
}

impl SendInput for Delivery {
    fn send_stream(&self, id: ConnId) -> SendStream {
        self.conn(id).and_then(|c| c.send.as_deref()).map_or(SendStream::default(), |s| SendStream {
            acked: s.queue.acked(),
            posted: s.queue.posted(),
            fin: matches!(s.phase, SendPhase::FinQueued | SendPhase::FinAcked),
            closed: s.phase == SendPhase::Closed,
        })
    }

    fn send_bytes(&mut self, id: ConnId, from: u64, len: usize, f: &mut dyn FnMut(&[u8])) -> usize {
        let Some(s) = self.conn(id).and_then(|c| c.send.as_deref()) else { return 0 };
        let mut n = 0;
        for slice in s.queue.slices(from, len) {
            n += slice.len();
            f(slice);
        }
        n
    }

    fn send_nbl_end(&self, id: ConnId, start: u64, end: u64) -> Option<u64> {
        let s = self.conn(id).and_then(|c| c.send.as_deref())?;
        s.queue.nbl_ends(start).next().filter(|&e| e <= end)
    }

    fn send_acked(
        &mut self,
        now: Instant,
        id: ConnId,
        upto: u64,
        host: &mut dyn ProtocolHost,
    ) -> Result<(), ApiMisuse> {
        let Some(mut conn) = self.conns.get_mut(id.0 as usize).and_then(Option::take) else {
            return Err(ApiMisuse::UnknownConnection(id));
        };
        let posted_before = conn.posted.len();
        self.send_progress(now, id, &mut conn, upto, host);
        let posted = conn.posted.len() != posted_before;
        self.conns[id.0 as usize] = Some(conn);
        if posted {
            // The host posted receive requests inside a send completion: serve them now.
            self.run(now, id, host, &[], false);
        }
        self.drive(now, host);
        Ok(())
    }

    fn take_send_ready(&mut self, out: &mut Vec<ConnId>) {
        out.append(&mut self.send_ready);
    }

    fn take_nested_disconnects(&mut self, out: &mut Vec<(ConnId, DisconnectKind, NblChain)>) {
        out.append(&mut self.nested_disconnects);
    }

    fn take_rejected_sends(&mut self) -> Vec<PostRejected> {
        std::mem::take(&mut self.rejected_sends)
    }
}
