//! One deliberately faulty target per rule the verifier checks, and a test asserting the
//! verifier reports exactly that rule. The faulty targets are the correct `Delivery` behind a
//! small fault layer that breaks one thing (rewrites a completion, steals a post, lies about a
//! timer, ...). A verifier that never fires fails every test here.

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier, Mutex};

use chimney::contract::replay;
use chimney::contract::trace::{TraceWriter, Tracer};
use chimney::contract::VerifyingHost;
use chimney::contract::{
    ApiMisuse, ConnId, Delivery, DeliveryConfig, IndicateReturn, InitiateFailed, InitiateOffload, NestedCalls,
    OffloadTarget, PostRejected, ProtocolHost, ReceiveInput, SendInput, SendStream, Verifier, VerifierMode, RULES,
};
use chimney::ndis::{
    DisconnectKind, Mdl, NblChain, NblId, NdisStatus, NetBuffer, NetBufferList, PoolTag, TcpDelegatedState,
    TcpOffloadEvent, TcpOffloadState,
};
use chimney::testkit::host::{AppHost, AppPolicy, IndicationPolicy};
use chimney::Instant;

const C: ConnId = ConnId(1);
const T0: Instant = Instant::ZERO;

fn ms(n: u64) -> std::time::Duration {
    std::time::Duration::from_millis(n)
}

/// State the fault layer keeps: the fed stream (to fabricate wrong-but-plausible bytes), posts
/// it stole from the real target, completions it withheld.
#[derive(Default)]
struct Shared {
    stream: Vec<u8>,
    stolen: NblChain,
    stash: NblChain,
    indicated: Option<NetBufferList>,
    count: usize,
}

type CompleteFn = Box<dyn FnMut(&mut Shared, ConnId, NblChain, &mut dyn ProtocolHost, &mut NestedCalls)>;
type IndicateFn = Box<
    dyn FnMut(&mut Shared, ConnId, NblChain, NdisStatus, &mut dyn ProtocolHost, &mut NestedCalls) -> IndicateReturn,
>;
type TerminateFn = Box<dyn FnMut(&mut TcpDelegatedState)>;
/// A scenario: drives a faulty target and returns the rules the verifier reported.
type Scenario = fn() -> Vec<&'static str>;
type EventFn = Box<dyn FnMut(&mut Shared, ConnId, TcpOffloadEvent, &mut dyn ProtocolHost, &mut NestedCalls)>;
type SendDoneFn = Box<dyn FnMut(&mut Shared, ConnId, NblChain, &mut dyn ProtocolHost, &mut NestedCalls)>;
type DiscDoneFn = Box<dyn FnMut(&mut Shared, ConnId, NblChain, NdisStatus, &mut dyn ProtocolHost, &mut NestedCalls)>;

#[derive(Default)]
struct Faults {
    complete: Option<CompleteFn>,
    indicate: Option<IndicateFn>,
    event: Option<EventFn>,
    post_status: Option<NdisStatus>,
    return_status: Option<NdisStatus>,
    steal_last_post: bool,
    terminate: Option<TerminateFn>,
    timer_lies: bool,
    upcall_in_initiate: bool,
    disconnect_before_fin: bool,
    send_complete: Option<SendDoneFn>,
    disconnect_complete: Option<DiscDoneFn>,
    send_status: Option<NdisStatus>,
    disconnect_status: Option<NdisStatus>,
    /// Takes a send refused because the host disconnected (and never completes it).
    take_closed_sends: bool,
    /// Reads one byte past what it was asked (beyond the posted stream).
    read_extra: bool,
    /// Shows the TCP layer a changed first byte.
    read_flip: bool,
    /// Tells the inner target more was acknowledged than was.
    ack_extra: u64,
    /// Hands the offload's send data back.
    return_send_data: bool,
    /// Takes data the real target refused because the stream had ended (FIN, RST, abort).
    accept_after_end: bool,
    /// Refuses every post as if the connection were unknown.
    refuse_posts: bool,
    /// Runs its timers this much ahead of the clock (a push timer that fires early).
    timers_ahead: Option<std::time::Duration>,
    /// Never runs its timers (a push timer that never fires).
    timers_dead: bool,
    /// Completes a zero-byte request at once, when it is posted.
    zero_at_post: bool,
    /// Hands the data to the real target (which delivers it), then reports it refused.
    refuse_after_delivery: bool,
    /// Hands the stashed completions to the host from the first timer call at or after this
    /// time: a target completing from its own context, later.
    release_stash_at: Option<Instant>,
}

struct FaultHost<'a> {
    f: &'a mut Faults,
    s: &'a mut Shared,
    host: &'a mut dyn ProtocolHost,
}

impl ProtocolHost for FaultHost<'_> {
    fn receive_complete(&mut self, conn: ConnId, nbls: NblChain, nested: &mut NestedCalls) {
        match self.f.complete.as_mut() {
            Some(f) => f(self.s, conn, nbls, self.host, nested),
            None => self.host.receive_complete(conn, nbls, nested),
        }
    }
    fn receive_indicate(
        &mut self,
        conn: ConnId,
        nbl: NblChain,
        st: NdisStatus,
        nested: &mut NestedCalls,
    ) -> IndicateReturn {
        match self.f.indicate.as_mut() {
            Some(f) => f(self.s, conn, nbl, st, self.host, nested),
            None => self.host.receive_indicate(conn, nbl, st, nested),
        }
    }
    fn event_indicate(&mut self, conn: ConnId, ev: TcpOffloadEvent, nested: &mut NestedCalls) {
        match self.f.event.as_mut() {
            Some(f) => f(self.s, conn, ev, self.host, nested),
            None => self.host.event_indicate(conn, ev, nested),
        }
    }
    fn send_complete(&mut self, conn: ConnId, nbls: NblChain, nested: &mut NestedCalls) {
        match self.f.send_complete.as_mut() {
            Some(f) => f(self.s, conn, nbls, self.host, nested),
            None => self.host.send_complete(conn, nbls, nested),
        }
    }
    fn disconnect_complete(&mut self, conn: ConnId, nbl: NblChain, st: NdisStatus, nested: &mut NestedCalls) {
        match self.f.disconnect_complete.as_mut() {
            Some(f) => f(self.s, conn, nbl, st, self.host, nested),
            None => self.host.disconnect_complete(conn, nbl, st, nested),
        }
    }
}

struct Faulty {
    inner: Delivery,
    f: Faults,
    s: Shared,
}

macro_rules! fh {
    ($self:ident, $host:ident) => {
        &mut FaultHost { f: &mut $self.f, s: &mut $self.s, host: $host }
    };
}

impl OffloadTarget for Faulty {
    fn receive(
        &mut self,
        now: Instant,
        conn: ConnId,
        mut nbls: NblChain,
        host: &mut dyn ProtocolHost,
    ) -> Result<NdisStatus, PostRejected> {
        if self.f.refuse_posts {
            return Err(PostRejected { nbls, error: ApiMisuse::UnknownConnection(conn) });
        }
        if self.f.zero_at_post && nbls.iter().all(|n| n.net_buffer().data_length() == 0) {
            for n in nbls.iter_mut() {
                n.status = NdisStatus::Success;
                n.set_tcp_offload_bytes_transferred(0);
            }
            host.receive_complete(conn, nbls, &mut NestedCalls::new());
            return Ok(NdisStatus::Pending);
        }
        if self.f.steal_last_post {
            let keep = nbls.len() - 1;
            let mut tail = nbls.split_front(keep);
            std::mem::swap(&mut tail, &mut nbls);
            self.s.stolen.append(&mut tail);
        }
        let r = if nbls.is_empty() {
            Ok(NdisStatus::Pending)
        } else {
            self.inner.receive(now, conn, nbls, fh!(self, host))
        };
        match (r, self.f.post_status) {
            (Ok(_), Some(s)) => Ok(s),
            (r, _) => r,
        }
    }
    fn receive_return(&mut self, now: Instant, nbls: NblChain, host: &mut dyn ProtocolHost) -> NdisStatus {
        let s = self.inner.receive_return(now, nbls, fh!(self, host));
        self.f.return_status.unwrap_or(s)
    }
    fn disconnect(
        &mut self,
        now: Instant,
        c: ConnId,
        k: DisconnectKind,
        nbl: NblChain,
        host: &mut dyn ProtocolHost,
    ) -> Result<NdisStatus, PostRejected> {
        let r = self.inner.disconnect(now, c, k, nbl, fh!(self, host));
        match (r, self.f.disconnect_status) {
            (Ok(_), Some(s)) => Ok(s),
            (r, _) => r,
        }
    }
    fn send(
        &mut self,
        now: Instant,
        c: ConnId,
        nbls: NblChain,
        host: &mut dyn ProtocolHost,
    ) -> Result<NdisStatus, PostRejected> {
        match self.inner.send(now, c, nbls, fh!(self, host)) {
            Err(mut rej) if self.f.take_closed_sends && matches!(rej.error, ApiMisuse::SendClosed(_)) => {
                self.s.stolen.append(&mut rej.nbls);
                Ok(NdisStatus::Pending)
            }
            Ok(s) => Ok(self.f.send_status.unwrap_or(s)),
            r => r,
        }
    }
    fn terminate_offload(
        &mut self,
        now: Instant,
        conn: ConnId,
        host: &mut dyn ProtocolHost,
    ) -> Result<TcpDelegatedState, ApiMisuse> {
        let mut r = self.inner.terminate_offload(now, conn, fh!(self, host));
        if let (Ok(d), Some(f)) = (r.as_mut(), self.f.terminate.as_mut()) {
            f(d);
        }
        r
    }
    fn handle_timeout(&mut self, now: Instant, host: &mut dyn ProtocolHost) {
        if self.f.timers_dead {
            return;
        }
        let now = self.f.timers_ahead.map_or(now, |d| now + d);
        if self.f.release_stash_at.is_some_and(|t| now >= t) && !self.s.stash.is_empty() {
            let mut nested = NestedCalls::new();
            host.receive_complete(C, self.s.stash.take(), &mut nested);
        }
        self.inner.handle_timeout(now, fh!(self, host))
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }
    fn push_timer(&self, conn: ConnId) -> Option<Instant> {
        let t = self.inner.push_timer(conn);
        if self.f.timer_lies {
            t.or(Some(Instant::from_millis(500)))
        } else {
            t
        }
    }
}

impl InitiateOffload for Faulty {
    fn initiate_offload(
        &mut self,
        now: Instant,
        conn: ConnId,
        state: TcpOffloadState,
        host: &mut dyn ProtocolHost,
    ) -> Result<NblChain, InitiateFailed> {
        for nbl in state.delegated.buffered_data.iter() {
            let nb = nbl.net_buffer();
            nb.copy_out(nb.data_offset(), nb.data_length(), &mut self.s.stream);
        }
        if self.f.upcall_in_initiate {
            host.event_indicate(conn, TcpOffloadEvent::SendBacklogChange(1), &mut NestedCalls::new());
        }
        let mut state = state;
        let keep = if self.f.return_send_data { state.delegated.send_data.take() } else { NblChain::new() };
        let mut r = self.inner.initiate_offload(now, conn, state, fh!(self, host));
        if let Ok(back) = r.as_mut() {
            let mut keep = keep;
            back.append(&mut keep);
        }
        r
    }
}

impl SendInput for Faulty {
    fn send_stream(&self, c: ConnId) -> SendStream {
        self.inner.send_stream(c)
    }
    fn send_bytes(&mut self, c: ConnId, from: u64, len: usize, f: &mut dyn FnMut(&[u8])) -> usize {
        let flip = self.f.read_flip;
        let mut first = true;
        let n = self.inner.send_bytes(c, from, len, &mut |b: &[u8]| {
            if flip && first && !b.is_empty() {
                let mut v = b.to_vec();
                v[0] ^= 0xFF;
                f(&v);
            } else {
                f(b);
            }
            first = false;
        });
        if self.f.read_extra {
            f(&[0]);
            return n + 1;
        }
        n
    }
    fn send_nbl_end(&self, c: ConnId, start: u64, end: u64) -> Option<u64> {
        self.inner.send_nbl_end(c, start, end)
    }
    fn send_acked(&mut self, now: Instant, c: ConnId, upto: u64, host: &mut dyn ProtocolHost) -> Result<(), ApiMisuse> {
        let upto = upto + self.f.ack_extra;
        self.inner.send_acked(now, c, upto, fh!(self, host))
    }
}

impl ReceiveInput for Faulty {
    fn receive_data(
        &mut self,
        now: Instant,
        c: ConnId,
        d: &[u8],
        psh: bool,
        host: &mut dyn ProtocolHost,
    ) -> Result<(), ApiMisuse> {
        self.s.stream.extend_from_slice(d);
        match self.inner.receive_data(now, c, d, psh, fh!(self, host)) {
            Err(ApiMisuse::NotReceiving(_)) if self.f.accept_after_end => Ok(()),
            Ok(()) if self.f.refuse_after_delivery => {
                self.f.refuse_after_delivery = false;
                Err(ApiMisuse::WindowExceeded { conn: c, offered: d.len(), space: 0 })
            }
            r => r,
        }
    }
    fn receive_fin(&mut self, now: Instant, c: ConnId, host: &mut dyn ProtocolHost) -> Result<(), ApiMisuse> {
        if self.f.disconnect_before_fin {
            host.event_indicate(c, TcpOffloadEvent::Disconnect, &mut NestedCalls::new());
        }
        self.inner.receive_fin(now, c, fh!(self, host))
    }
    fn receive_rst(&mut self, now: Instant, c: ConnId, host: &mut dyn ProtocolHost) -> Result<(), ApiMisuse> {
        self.inner.receive_rst(now, c, fh!(self, host))
    }
    fn indicate_event(
        &mut self,
        now: Instant,
        c: ConnId,
        event: TcpOffloadEvent,
        host: &mut dyn ProtocolHost,
    ) -> Result<(), ApiMisuse> {
        self.inner.indicate_event(now, c, event, fh!(self, host))
    }
    fn receive_space(&self, c: ConnId) -> usize {
        self.inner.receive_space(c)
    }
    fn receive_window(&self, c: ConnId) -> usize {
        self.inner.receive_window(c)
    }
}

struct Rig {
    t: Tracer<Verifier<Faulty>>,
    h: AppHost,
    trace: SharedBuf,
}

/// Where a rig's contract trace goes (the trace is replayed offline after each scenario).
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

thread_local! {
    /// Rules the offline replay of the last rig's trace reported (or its replay error).
    static REPLAYED: std::cell::RefCell<Option<Result<Vec<&'static str>, String>>> = const { std::cell::RefCell::new(None) };
    /// The last rig's trace.
    static TRACE_TEXT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

impl Rig {
    fn new(f: Faults, policy: AppPolicy) -> Rig {
        Self::with_config(f, policy, DeliveryConfig::default(), TcpOffloadState::default())
    }

    fn with_config(f: Faults, policy: AppPolicy, cfg: DeliveryConfig, state: TcpOffloadState) -> Rig {
        let inner = Delivery::new(cfg);
        let trace = SharedBuf::default();
        let w = TraceWriter::new(Box::new(trace.clone()), true, "faulty_targets");
        let mut t =
            Tracer::new(Verifier::new(Faulty { inner, f, s: Shared::default() }, VerifierMode::Collect), Some(w));
        let mut h = AppHost::new();
        h.set_policy(C, policy);
        t.initiate_offload(T0, C, state, &mut h).expect("offload");
        Rig { t, h, trace }
    }

    fn post(&mut self, sizes: &[usize], no_push: bool) {
        let chain: NblChain = sizes.iter().map(|&n| req(n, no_push)).collect();
        self.t.receive(T0, C, chain, &mut self.h).expect("post");
    }

    /// Posts one send NBL per entry, each with that many bytes of pattern `seed`.
    fn send(&mut self, sizes: &[usize], seed: u8) -> Vec<NblId> {
        let chain: NblChain = sizes.iter().map(|&n| send_req(&data(n, seed))).collect();
        let ids = chain.iter().map(|n| n.id()).collect();
        self.t.send(T0, C, chain, &mut self.h).expect("send");
        ids
    }

    fn ack(&mut self, upto: u64) {
        self.t.send_acked(T0, C, upto, &mut self.h).expect("send_acked");
    }

    fn read(&mut self, at: u64, len: usize) -> usize {
        self.t.send_bytes(C, at, len, &mut |_| {})
    }

    fn disconnect(&mut self, kind: DisconnectKind, bytes: &[u8]) {
        let _ = self.t.disconnect(T0, C, kind, NblChain::single(send_req(bytes)), &mut self.h);
    }

    fn feed(&mut self, bytes: &[u8], psh: bool) {
        self.t.receive_data(T0, C, bytes, psh, &mut self.h).expect("feed");
    }

    /// The rules the live verifier reported; the offline replay of the trace is stored for
    /// `traces_replay_to_the_same_rules`.
    fn broken(&self) -> Vec<&'static str> {
        // The run ends here: what the target still owes is reported (live and replayed).
        self.t.inner().finish();
        let text = String::from_utf8(self.trace.0.lock().unwrap().clone()).unwrap();
        let replayed = replay::replay(&text).map(|r| r.broken_rules()).map_err(|e| e.to_string());
        REPLAYED.with(|c| *c.borrow_mut() = Some(replayed));
        TRACE_TEXT.with(|c| *c.borrow_mut() = Some(text));
        self.t.inner().core().broken_rules()
    }
}

static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1 << 20);

fn req(size: usize, no_push: bool) -> NetBufferList {
    let id = NblId::new(PoolTag::Host, SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let mut n = NetBufferList::new(id, NetBuffer::new(vec![Mdl::zeroed(size)]));
    n.set_tcp_receive_no_push(no_push);
    n
}

/// A send NBL holding `bytes` in two MDLs.
fn send_req(bytes: &[u8]) -> NetBufferList {
    let id = NblId::new(PoolTag::Host, SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let cut = bytes.len() / 2;
    let nb = NetBuffer::new(vec![Mdl::from_bytes(bytes[..cut].to_vec()), Mdl::from_bytes(bytes[cut..].to_vec())]);
    NetBufferList::new(id, nb)
}

fn send_done_with(f: impl FnMut(&mut Shared, &mut NblChain) + 'static) -> Option<SendDoneFn> {
    let mut f = f;
    Some(Box::new(move |s, conn, mut nbls, host, nested| {
        f(s, &mut nbls);
        if !nbls.is_empty() {
            host.send_complete(conn, nbls, nested)
        }
    }))
}

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn quiet() -> AppPolicy {
    AppPolicy { keep_posted: 0, repost_in_completion: false, ..AppPolicy::default() }
}

/// The bytes a completed NBL carries (just before its data start).
fn placed(nbl: &NetBufferList) -> Vec<u8> {
    let nb = nbl.net_buffer();
    let b = nbl.tcp_offload_bytes_transferred();
    let mut v = Vec::new();
    nb.copy_out(nb.data_offset() - b, b, &mut v);
    v
}

/// Overwrites the bytes a completed NBL carries.
fn overwrite(nbl: &mut NetBufferList, bytes: &[u8]) {
    let b = nbl.tcp_offload_bytes_transferred();
    let nb = nbl.net_buffer_mut();
    nb.retreat_data_start(b).unwrap();
    nb.write_used(0, bytes);
    nb.advance_data_start(b).unwrap();
}

/// Re-places the bytes of a completion chain so NBL i carries `counts[i]` bytes.
fn redistribute(chain: &mut NblChain, counts: &[usize]) {
    let mut all = Vec::new();
    for n in chain.iter_mut() {
        all.extend(placed(n));
        let b = n.tcp_offload_bytes_transferred();
        n.net_buffer_mut().retreat_data_start(b).unwrap();
    }
    let mut at = 0;
    for (n, &k) in chain.iter_mut().zip(counts) {
        n.net_buffer_mut().write_used(0, &all[at..at + k]);
        n.net_buffer_mut().advance_data_start(k).unwrap();
        n.set_tcp_offload_bytes_transferred(k);
        at += k;
    }
}

/// Makes an empty completed NBL carry `bytes` (placed at its data start, which advances).
fn fill(nbl: &mut NetBufferList, bytes: &[u8]) {
    nbl.net_buffer_mut().write_used(0, bytes);
    nbl.net_buffer_mut().advance_data_start(bytes.len()).unwrap();
    nbl.set_tcp_offload_bytes_transferred(bytes.len());
}

/// Completes every NBL with `status` instead of the one the real target wrote.
fn complete_with_status(status: NdisStatus) -> Option<CompleteFn> {
    complete_with(move |_, nbls| {
        for n in nbls.iter_mut() {
            n.status = status;
        }
    })
}

fn complete_with(f: impl FnMut(&mut Shared, &mut NblChain) + 'static) -> Option<CompleteFn> {
    let mut f = f;
    Some(Box::new(move |s, conn, mut nbls, host, nested| {
        f(s, &mut nbls);
        if !nbls.is_empty() {
            host.receive_complete(conn, nbls, nested)
        }
    }))
}

// ---- one scenario per rule ---------------------------------------------------------------

fn r_post_2() -> Vec<&'static str> {
    let mut r = Rig::new(Faults { post_status: Some(NdisStatus::Success), ..Faults::default() }, quiet());
    r.post(&[100], false);
    r.feed(&data(100, 1), false);
    r.broken()
}

fn r_post_2_twice() -> Vec<&'static str> {
    // Completes the same NBL a second time.
    let f = complete_with(|s, nbls| {
        if s.count == 0 {
            s.stash = nbls.iter().cloned().collect();
        } else {
            nbls.append(&mut s.stash);
        }
        s.count += 1;
    });
    let mut r = Rig::new(Faults { complete: f, ..Faults::default() }, quiet());
    r.post(&[100, 100], false);
    r.feed(&data(100, 1), false);
    r.feed(&data(100, 2), false);
    r.broken()
}

fn r_post_3() -> Vec<&'static str> {
    let f = complete_with(|_, nbls| {
        if nbls.len() == 2 {
            redistribute(nbls, &[60, 90]);
        }
    });
    let mut r = Rig::new(Faults { complete: f, ..Faults::default() }, quiet());
    r.post(&[100, 100], false);
    r.feed(&data(150, 1), true);
    r.broken()
}

fn r_post_10() -> Vec<&'static str> {
    let f = complete_with(|_, nbls| {
        for n in nbls.iter_mut() {
            if n.net_buffer().chain_len() == 0 {
                n.set_tcp_offload_bytes_transferred(5);
            }
        }
    });
    let mut r = Rig::new(Faults { complete: f, ..Faults::default() }, quiet());
    r.post(&[0], false);
    r.feed(&data(50, 1), false);
    r.broken()
}

fn r_cmp_1() -> Vec<&'static str> {
    // [zero-byte, 100] completed as [100, zero-byte]: the stream stays right, the order does not.
    let f = complete_with(|_, nbls| {
        if nbls.len() == 2 {
            let mut first = nbls.pop_front_chain();
            nbls.append(&mut first);
        }
    });
    let mut r = Rig::new(Faults { complete: f, ..Faults::default() }, quiet());
    r.post(&[0, 100], false);
    r.feed(&data(100, 1), false);
    r.broken()
}

fn r_cmp_2() -> Vec<&'static str> {
    let f: Option<CompleteFn> = Some(Box::new(|_, conn, nbls, host, nested| {
        host.receive_complete(conn, NblChain::new(), nested);
        host.receive_complete(conn, nbls, nested);
    }));
    let mut r = Rig::new(Faults { complete: f, ..Faults::default() }, quiet());
    r.post(&[100], false);
    r.feed(&data(100, 1), false);
    r.broken()
}

fn r_cmp_3() -> Vec<&'static str> {
    // A filled (non-push) request is withheld instead of completed.
    let f = complete_with(|s, nbls| s.stash.append(nbls));
    let mut r = Rig::new(Faults { complete: f, ..Faults::default() }, quiet());
    r.post(&[100], true);
    r.feed(&data(100, 1), false);
    r.broken()
}

fn r_cmp_4() -> Vec<&'static str> {
    // A stolen, still empty request is completed SUCCESS along with a full one.
    let f = complete_with(|s, nbls| {
        let mut b = s.stolen.take();
        for n in b.iter_mut() {
            n.status = NdisStatus::Success;
            n.set_tcp_offload_bytes_transferred(0);
        }
        nbls.append(&mut b);
    });
    let mut r = Rig::new(Faults { complete: f, steal_last_post: true, ..Faults::default() }, quiet());
    r.post(&[100, 100], false);
    r.feed(&data(100, 1), false);
    r.broken()
}

fn r_cmp_5() -> Vec<&'static str> {
    // A multi-threaded target: two threads make upcalls on one connection at the same time.
    let mut t = Verifier::new(Delivery::new(DeliveryConfig::default()), VerifierMode::Collect);
    let mut h = AppHost::new();
    t.initiate_offload(T0, C, TcpOffloadState::default(), &mut h).unwrap();
    let core = Arc::clone(t.core());
    let barrier = Arc::new(Barrier::new(2));
    struct Waiting(Arc<Barrier>);
    impl ProtocolHost for Waiting {
        fn receive_complete(&mut self, _: ConnId, _: NblChain, _: &mut NestedCalls) {}
        fn receive_indicate(&mut self, _: ConnId, n: NblChain, _: NdisStatus, _: &mut NestedCalls) -> IndicateReturn {
            IndicateReturn::NotAccepted(n)
        }
        fn event_indicate(&mut self, _: ConnId, _: TcpOffloadEvent, _: &mut NestedCalls) {
            self.0.wait();
            self.0.wait();
        }
    }
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let core = Arc::clone(&core);
            let b = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut host = Waiting(b);
                let mut vh = VerifyingHost::new(&core, &mut host);
                vh.event_indicate(C, TcpOffloadEvent::SendBacklogChange(1), &mut NestedCalls::new());
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    core.broken_rules()
}

fn r_cmp_6() -> Vec<&'static str> {
    // A C-style target that completes synchronously inside the post the host makes from its
    // completion routine: ReceiveComplete re-entered.
    let mut t = Verifier::new(Delivery::new(DeliveryConfig::default()), VerifierMode::Collect);
    let mut h = AppHost::new();
    h.set_policy(C, quiet());
    t.initiate_offload(T0, C, TcpOffloadState::default(), &mut h).unwrap();
    let z = req(0, false);
    let mut z_done = z.clone();
    z_done.set_tcp_offload_bytes_transferred(0);
    t.receive(T0, C, [req(100, false), z].into_iter().collect(), &mut h).unwrap();
    struct Reenter {
        core: Arc<chimney::contract::VerifierCore>,
        z: Option<NetBufferList>,
        app: AppHost,
    }
    impl ProtocolHost for Reenter {
        fn receive_complete(&mut self, conn: ConnId, nbls: NblChain, nested: &mut NestedCalls) {
            self.app.receive_complete(conn, nbls, nested);
            if let Some(z) = self.z.take() {
                let core = Arc::clone(&self.core);
                let mut app = AppHost::new();
                VerifyingHost::new(&core, &mut app).receive_complete(conn, NblChain::single(z), nested);
            }
        }
        fn receive_indicate(
            &mut self,
            c: ConnId,
            n: NblChain,
            s: NdisStatus,
            nested: &mut NestedCalls,
        ) -> IndicateReturn {
            self.app.receive_indicate(c, n, s, nested)
        }
        fn event_indicate(&mut self, c: ConnId, e: TcpOffloadEvent, nested: &mut NestedCalls) {
            self.app.event_indicate(c, e, nested)
        }
    }
    let mut host = Reenter { core: Arc::clone(t.core()), z: Some(z_done), app: h };
    t.receive_data(T0, C, &data(100, 1), false, &mut host).unwrap();
    t.core().broken_rules()
}

fn r_cmp_7() -> Vec<&'static str> {
    let mut r = Rig::new(Faults { complete: complete_with_status(NdisStatus::Pending), ..Faults::default() }, quiet());
    r.post(&[100], false);
    r.feed(&data(100, 1), false);
    r.broken()
}

fn r_cmp_9() -> Vec<&'static str> {
    let mut r = Rig::new(Faults { timer_lies: true, ..Faults::default() }, quiet());
    r.post(&[100], false);
    r.feed(&data(100, 1), false);
    r.broken()
}

fn r_acc_1() -> Vec<&'static str> {
    let f = complete_with(|_, nbls| {
        for n in nbls.iter_mut() {
            let b = n.tcp_offload_bytes_transferred();
            n.set_tcp_offload_bytes_transferred(b - 1);
        }
    });
    let mut r = Rig::new(Faults { complete: f, ..Faults::default() }, quiet());
    r.post(&[100], false);
    r.feed(&data(100, 1), false);
    r.broken()
}

fn r_acc_2() -> Vec<&'static str> {
    // The same bytes delivered twice: a stolen request gets a copy of a completed one's data.
    let f = complete_with(|s, nbls| {
        let copy = nbls.front().map(placed).unwrap_or_default();
        let mut b = s.stolen.take();
        for n in b.iter_mut() {
            n.net_buffer_mut().write_used(0, &copy);
            n.net_buffer_mut().advance_data_start(copy.len()).unwrap();
            n.set_tcp_offload_bytes_transferred(copy.len());
            n.status = NdisStatus::Success;
        }
        nbls.append(&mut b);
    });
    let mut r = Rig::new(Faults { complete: f, steal_last_post: true, ..Faults::default() }, quiet());
    r.post(&[100, 100], false);
    r.feed(&data(100, 1), false);
    r.broken()
}

fn r_acc_3() -> Vec<&'static str> {
    let f = complete_with(|_, nbls| {
        if let Some(n) = nbls.front_mut() {
            let mut p = placed(n);
            p[7] ^= 0x40;
            overwrite(n, &p);
        }
    });
    let mut r = Rig::new(Faults { complete: f, ..Faults::default() }, quiet());
    r.post(&[100], false);
    r.feed(&data(100, 1), false);
    r.broken()
}

fn r_ind_1() -> Vec<&'static str> {
    // The target "loses" a post and indicates while the host still has it outstanding.
    let mut r = Rig::new(Faults { steal_last_post: true, ..Faults::default() }, quiet());
    r.post(&[100], false);
    r.feed(&data(50, 1), false);
    r.broken()
}

fn r_ind_3() -> Vec<&'static str> {
    let f: Option<IndicateFn> = Some(Box::new(|_, conn, mut nbl, st, host, nested| {
        nbl.push_back(req(10, false));
        host.receive_indicate(conn, nbl, st, nested)
    }));
    let mut r = Rig::new(Faults { indicate: f, ..Faults::default() }, quiet());
    r.feed(&data(50, 1), false);
    r.broken()
}

fn r_ind_4() -> Vec<&'static str> {
    let f: Option<IndicateFn> =
        Some(Box::new(|_, conn, nbl, _, host, nested| host.receive_indicate(conn, nbl, NdisStatus::Failure, nested)));
    let mut r = Rig::new(Faults { indicate: f, ..Faults::default() }, quiet());
    r.feed(&data(50, 1), false);
    r.broken()
}

fn r_ind_5() -> Vec<&'static str> {
    // The second indication reuses the first NBL, which the host still owns.
    let f: Option<IndicateFn> = Some(Box::new(|s, conn, mut nbl, st, host, nested| {
        match s.indicated.take() {
            None => s.indicated = nbl.front().cloned(),
            Some(mut old) => {
                old.set_net_buffer(nbl.front().unwrap().net_buffer().clone());
                nbl = NblChain::single(old);
            }
        }
        host.receive_indicate(conn, nbl, st, nested)
    }));
    let mut r = Rig::new(Faults { indicate: f, ..Faults::default() }, quiet());
    r.feed(&data(50, 1), false);
    r.feed(&data(50, 2), false);
    r.broken()
}

fn r_ind_6() -> Vec<&'static str> {
    // Refused data is dropped: the next completion carries newer bytes.
    let f = complete_with(|s, nbls| {
        if let Some(n) = nbls.front_mut() {
            let b = n.tcp_offload_bytes_transferred();
            let fake = s.stream[100..100 + b].to_vec();
            overwrite(n, &fake);
        }
    });
    let policy = AppPolicy { indication: IndicationPolicy::Refuse, ..quiet() };
    let mut r = Rig::new(Faults { complete: f, ..Faults::default() }, policy);
    r.feed(&data(100, 1), false);
    r.feed(&data(200, 2), false);
    r.post(&[150], true);
    r.broken()
}

fn r_ind_7() -> Vec<&'static str> {
    let f: Option<IndicateFn> =
        Some(Box::new(|_, conn, nbl, st, host, nested| match host.receive_indicate(conn, nbl, st, nested) {
            IndicateReturn::NotAccepted(back) => host.receive_indicate(conn, back, st, nested),
            other => other,
        }));
    let policy = AppPolicy { indication: IndicationPolicy::Refuse, ..quiet() };
    let mut r = Rig::new(Faults { indicate: f, ..Faults::default() }, policy);
    r.feed(&data(50, 1), false);
    r.broken()
}

fn r_ind_11() -> Vec<&'static str> {
    let r = Rig::new(Faults { upcall_in_initiate: true, ..Faults::default() }, quiet());
    r.broken()
}

fn r_ret_1() -> Vec<&'static str> {
    let mut r = Rig::new(Faults { return_status: Some(NdisStatus::Failure), ..Faults::default() }, quiet());
    r.feed(&data(50, 1), false);
    r.h.return_held(T0, &mut r.t);
    r.broken()
}

fn r_del_1() -> Vec<&'static str> {
    // Indicates the rest again although the host posted a request during the indication.
    let f: Option<IndicateFn> = Some(Box::new(|_, conn, nbl, st, host, nested| {
        let IndicateReturn::PartiallyAccepted { mut nbl, bytes_consumed: k } =
            host.receive_indicate(conn, nbl, st, nested)
        else {
            panic!("scenario expects a partial acceptance");
        };
        nbl.front_mut().unwrap().net_buffer_mut().advance_data_start(k).unwrap();
        let (mut back, k2) = match host.receive_indicate(conn, nbl, st, nested) {
            IndicateReturn::PartiallyAccepted { nbl, bytes_consumed } => (nbl, bytes_consumed),
            _ => panic!("scenario expects a partial acceptance"),
        };
        back.front_mut().unwrap().net_buffer_mut().retreat_data_start(k).unwrap();
        IndicateReturn::PartiallyAccepted { nbl: back, bytes_consumed: k + k2 }
    }));
    let policy =
        AppPolicy { indication: IndicationPolicy::AcceptUpTo(10), post_in_indication: true, post_size: 100, ..quiet() };
    let mut r = Rig::new(Faults { indicate: f, ..Faults::default() }, policy);
    r.feed(&data(50, 1), false);
    r.broken()
}

fn r_del_3() -> Vec<&'static str> {
    // With the indication pool empty, newer bytes are placed before older buffered ones.
    let f = complete_with(|s, nbls| {
        if let Some(n) = nbls.front_mut() {
            let fake = s.stream[200..300].to_vec();
            overwrite(n, &fake);
        }
    });
    let cfg = DeliveryConfig { indication_pool: 1, ..DeliveryConfig::default() };
    let mut r = Rig::with_config(Faults { complete: f, ..Faults::default() }, quiet(), cfg, TcpOffloadState::default());
    r.feed(&data(100, 1), false);
    r.feed(&data(100, 2), false);
    r.feed(&data(100, 3), false);
    r.post(&[100], true);
    r.broken()
}

fn r_del_5() -> Vec<&'static str> {
    // A partially filled push request is not completed on PSH (withheld).
    let f = complete_with(|s, nbls| s.stash.append(nbls));
    let mut r = Rig::new(Faults { complete: f, ..Faults::default() }, quiet());
    r.post(&[100], false);
    r.feed(&data(50, 1), true);
    r.broken()
}

fn r_fin_1() -> Vec<&'static str> {
    let policy = AppPolicy { indication: IndicationPolicy::Refuse, ..quiet() };
    let mut r = Rig::new(Faults { disconnect_before_fin: true, ..Faults::default() }, policy);
    r.feed(&data(100, 1), false);
    r.t.receive_fin(T0, C, &mut r.h).unwrap();
    r.broken()
}

fn r_fin_3() -> Vec<&'static str> {
    let f = complete_with(|_, nbls| {
        for n in nbls.iter_mut() {
            if n.status == NdisStatus::InvalidState {
                n.status = NdisStatus::Success;
            }
        }
    });
    let mut r = Rig::new(Faults { complete: f, ..Faults::default() }, quiet());
    r.t.receive_fin(T0, C, &mut r.h).unwrap();
    r.post(&[100], false);
    r.broken()
}

fn r_rst_1() -> Vec<&'static str> {
    let f: Option<EventFn> = Some(Box::new(|_, conn, ev, host, nested| {
        if ev != TcpOffloadEvent::Abort {
            host.event_indicate(conn, ev, nested)
        }
    }));
    let mut r = Rig::new(Faults { event: f, ..Faults::default() }, quiet());
    r.post(&[100], false);
    r.feed(&data(50, 1), false);
    r.t.receive_rst(T0, C, &mut r.h).unwrap();
    r.broken()
}

fn r_abt_1() -> Vec<&'static str> {
    let f = complete_with(|_, nbls| {
        for n in nbls.iter_mut() {
            if n.status == NdisStatus::RequestAborted {
                n.status = NdisStatus::Success;
            }
        }
    });
    let mut r = Rig::new(Faults { complete: f, ..Faults::default() }, quiet());
    r.post(&[100], true);
    r.feed(&data(50, 1), false);
    r.t.disconnect(T0, C, DisconnectKind::Abortive, NblChain::new(), &mut r.h).unwrap();
    r.broken()
}

fn r_trm_2() -> Vec<&'static str> {
    let f = complete_with(|s, nbls| s.stash.append(nbls));
    let mut r = Rig::new(Faults { complete: f, ..Faults::default() }, quiet());
    r.post(&[100], false);
    r.t.terminate_offload(T0, C, &mut r.h).unwrap();
    r.broken()
}

fn r_trm_3() -> Vec<&'static str> {
    let t: TerminateFn = Box::new(|d: &mut TcpDelegatedState| {
        let n = d.buffered_data.len();
        d.buffered_data = d.buffered_data.split_front(n - 1);
    });
    let policy = AppPolicy { indication: IndicationPolicy::Refuse, ..quiet() };
    let mut r = Rig::new(Faults { terminate: Some(t), ..Faults::default() }, policy);
    r.feed(&data(100, 1), false);
    r.t.terminate_offload(T0, C, &mut r.h).unwrap();
    r.broken()
}

fn r_buf_1() -> Vec<&'static str> {
    let t: TerminateFn = Box::new(|d: &mut TcpDelegatedState| d.rcv_nxt = d.rcv_nxt.wrapping_add(100));
    let mut state = TcpOffloadState::default();
    state.delegated.rcv_nxt = 5000;
    let mut bd = NetBufferList::new(NblId::new(PoolTag::Host, 9), NetBuffer::new(vec![Mdl::from_bytes(data(100, 9))]));
    bd.status = NdisStatus::Success;
    state.delegated.buffered_data = NblChain::single(bd);
    let mut r =
        Rig::with_config(Faults { terminate: Some(t), ..Faults::default() }, quiet(), DeliveryConfig::default(), state);
    r.post(&[100], false);
    r.feed(&data(30, 1), true);
    r.t.terminate_offload(T0, C, &mut r.h).unwrap();
    r.broken()
}

fn r_buf_3() -> Vec<&'static str> {
    // Offload-time BufferedData skipped: the first completion carries newer bytes.
    let f = complete_with(|s, nbls| {
        if let Some(n) = nbls.front_mut() {
            let fake = s.stream[100..200].to_vec();
            overwrite(n, &fake);
        }
    });
    let mut state = TcpOffloadState::default();
    let bd = NetBufferList::new(NblId::new(PoolTag::Host, 9), NetBuffer::new(vec![Mdl::from_bytes(data(100, 9))]));
    state.delegated.buffered_data = NblChain::single(bd);
    let policy = AppPolicy { indication: IndicationPolicy::Refuse, ..quiet() };
    let mut r = Rig::with_config(Faults { complete: f, ..Faults::default() }, policy, DeliveryConfig::default(), state);
    r.feed(&data(100, 1), false);
    r.post(&[100], true);
    r.broken()
}

/// Data taken after the FIN: the stream had ended (R-ACC-3).
fn r_acc_3_after_fin() -> Vec<&'static str> {
    let mut r = Rig::new(Faults { accept_after_end: true, ..Faults::default() }, quiet());
    r.post(&[100], false);
    r.feed(&data(50, 1), true);
    r.t.receive_fin(T0, C, &mut r.h).unwrap();
    r.feed(&data(10, 2), false);
    r.broken()
}

/// Data taken after the RST (R-RST-1: nothing is processed after it).
fn r_rst_1_data_after() -> Vec<&'static str> {
    let mut r = Rig::new(Faults { accept_after_end: true, ..Faults::default() }, quiet());
    r.post(&[100], false);
    r.feed(&data(50, 1), false);
    r.t.receive_rst(T0, C, &mut r.h).unwrap();
    r.feed(&data(10, 2), false);
    r.broken()
}

/// After the RST, a request posted later completes carrying the data an indication had left
/// unconsumed (R-RST-1: nothing else is delivered).
fn r_rst_1_buffered_after() -> Vec<&'static str> {
    let f = complete_with(|s, nbls| {
        if let Some(n) = nbls.front_mut() {
            if n.status == NdisStatus::RequestAborted && n.tcp_offload_bytes_transferred() == 0 {
                fill(n, &s.stream[..40]);
            }
        }
    });
    let policy = AppPolicy { indication: IndicationPolicy::Refuse, ..quiet() };
    let mut r = Rig::new(Faults { complete: f, ..Faults::default() }, policy);
    r.feed(&data(40, 1), false);
    r.t.receive_rst(T0, C, &mut r.h).unwrap();
    r.post(&[100], false);
    r.broken()
}

/// After the host's abortive disconnect, data the indication left unconsumed is delivered
/// into a request posted later (R-ABT-1).
fn r_abt_1_buffered_after() -> Vec<&'static str> {
    let f = complete_with(|s, nbls| {
        if let Some(n) = nbls.front_mut() {
            if n.tcp_offload_bytes_transferred() == 0 && n.net_buffer().data_length() >= 40 {
                fill(n, &s.stream[..40]);
            }
        }
    });
    let policy = AppPolicy { indication: IndicationPolicy::Refuse, ..quiet() };
    let mut r = Rig::new(Faults { complete: f, ..Faults::default() }, policy);
    r.feed(&data(40, 1), false);
    r.t.disconnect(T0, C, DisconnectKind::Abortive, NblChain::new(), &mut r.h).unwrap();
    r.post(&[100], false);
    r.broken()
}

/// A legal post on an offloaded connection refused: the host's buffers would never come back.
fn r_post_2_refused() -> Vec<&'static str> {
    let mut r = Rig::new(Faults { refuse_posts: true, ..Faults::default() }, quiet());
    let _ = r.t.receive(T0, C, NblChain::single(req(100, false)), &mut r.h);
    r.broken()
}

/// A data batch delivered, then reported refused; the TCP layer retransmits it, and the same
/// bytes are delivered again (R-ACC-2).
fn r_acc_2_refused_delivered() -> Vec<&'static str> {
    let mut r = Rig::new(Faults { refuse_after_delivery: true, ..Faults::default() }, quiet());
    r.post(&[50, 50], false);
    let d = data(50, 1);
    assert!(r.t.receive_data(T0, C, &d, true, &mut r.h).is_err());
    r.feed(&d, true);
    r.broken()
}

/// An indication shows wrong bytes and the host refuses it: the bytes are still compared
/// (R-ACC-3).
fn r_acc_3_refused_indication() -> Vec<&'static str> {
    let f: Option<IndicateFn> = Some(Box::new(|_, conn, mut nbl, st, host, nested| {
        if let Some(n) = nbl.front_mut() {
            let nb = n.net_buffer_mut();
            let mut first = Vec::new();
            nb.copy_out(nb.data_offset(), 1, &mut first);
            let at = nb.data_offset();
            nb.retreat_data_start(0).unwrap();
            nb.write_used(at - nb.data_offset(), &[first[0] ^ 0xFF]);
        }
        host.receive_indicate(conn, nbl, st, nested)
    }));
    let policy = AppPolicy { indication: IndicationPolicy::Refuse, ..quiet() };
    let mut r = Rig::new(Faults { indicate: f, ..Faults::default() }, policy);
    r.feed(&data(50, 1), false);
    r.broken()
}

thread_local! {
    /// The NBL the faulty target last indicated (for a terminate that hands it back).
    static LAST_INDICATED: std::cell::Cell<Option<NblId>> = const { std::cell::Cell::new(None) };
}

/// Terminate hands back, as BufferedData, the NBL the host accepted in an indication and
/// still holds (R-TRM-3).
fn r_trm_3_host_owned() -> Vec<&'static str> {
    let f: Option<IndicateFn> = Some(Box::new(|_, conn, nbl, st, host, nested| {
        LAST_INDICATED.with(|c| c.set(nbl.front().map(|n| n.id())));
        host.receive_indicate(conn, nbl, st, nested)
    }));
    let t: TerminateFn = Box::new(|d: &mut TcpDelegatedState| {
        if let Some(id) = LAST_INDICATED.with(|c| c.get()) {
            let mut n = NetBufferList::new(id, NetBuffer::new(vec![Mdl::from_bytes(Vec::new())]));
            n.status = NdisStatus::Success;
            d.buffered_data.push_back(n);
        }
    });
    let policy = AppPolicy { return_in_upcall: false, ..quiet() };
    let mut r = Rig::new(Faults { indicate: f, terminate: Some(t), ..Faults::default() }, policy);
    r.feed(&data(50, 1), false);
    r.t.terminate_offload(T0, C, &mut r.h).unwrap();
    r.broken()
}

/// After the peer's FIN, terminate writes ESTABLISHED into the delegated state (R-TRM-2).
fn r_trm_2_state_after_fin() -> Vec<&'static str> {
    let t: TerminateFn =
        Box::new(|d: &mut TcpDelegatedState| d.state = Some(chimney::ndis::TcpConnectionState::Established));
    let mut r = Rig::new(Faults { terminate: Some(t), ..Faults::default() }, quiet());
    r.post(&[100], false);
    r.feed(&data(50, 1), true);
    r.t.receive_fin(T0, C, &mut r.h).unwrap();
    r.t.terminate_offload(T0, C, &mut r.h).unwrap();
    r.broken()
}

/// A push completes a partially filled request with only part of the bytes waiting for it
/// (R-CMP-3: a partial completion takes every byte it can).
/// A filled request completed from the target's own context, but later than a worker would:
/// still owed at a timer call 400 ms on (R-CMP-3), paid at one a second on.
fn r_cmp_3_deferred_too_long() -> Vec<&'static str> {
    let f = complete_with(|s, nbls| s.stash.append(nbls));
    let release = Some(T0 + ms(1000));
    let mut r = Rig::new(Faults { complete: f, release_stash_at: release, ..Faults::default() }, quiet());
    r.post(&[100], true);
    r.feed(&data(100, 1), false);
    r.t.handle_timeout(T0 + ms(400), &mut r.h);
    r.t.handle_timeout(T0 + ms(1000), &mut r.h);
    r.broken()
}

/// Data arrives with nothing posted and the target never indicates it: it tells itself the
/// host refused (R-DEL-2, judged when the run ends).
fn r_del_2() -> Vec<&'static str> {
    let f: Option<IndicateFn> = Some(Box::new(|_, _, nbl, _, _, _| IndicateReturn::NotAccepted(nbl)));
    let mut r = Rig::new(Faults { indicate: f, ..Faults::default() }, quiet());
    r.feed(&data(50, 1), false);
    r.broken()
}

/// A zero-byte request kept although data arrived (the host refuses the indication that
/// follows, so the bytes wait): never completed (R-POST-10).
fn r_post_10_never_completed() -> Vec<&'static str> {
    let f = complete_with(|s, nbls| s.stash.append(nbls));
    let policy = AppPolicy { indication: IndicationPolicy::Refuse, ..quiet() };
    let mut r = Rig::new(Faults { complete: f, ..Faults::default() }, policy);
    r.post(&[0], false);
    r.feed(&data(50, 1), false);
    r.broken()
}

fn r_cmp_3_partial_leaves_data() -> Vec<&'static str> {
    let f = complete_with(|_, nbls| {
        if let Some(n) = nbls.front_mut() {
            let b = n.tcp_offload_bytes_transferred();
            n.net_buffer_mut().retreat_data_start(40).unwrap();
            n.set_tcp_offload_bytes_transferred(b - 40);
        }
    });
    let mut r = Rig::new(Faults { complete: f, ..Faults::default() }, quiet());
    r.post(&[150], false);
    r.feed(&data(100, 1), true);
    r.broken()
}

use chimney::ndis::TcpUploadReason;

/// An upload requested in CLOSE_WAIT (R-FIN-4).
fn r_fin_4() -> Vec<&'static str> {
    let mut r = Rig::new(Faults::default(), quiet());
    r.post(&[100], false);
    r.feed(&data(50, 1), true);
    r.t.receive_fin(T0, C, &mut r.h).unwrap();
    r.t.indicate_event(T0, C, TcpOffloadEvent::Retrieve(TcpUploadReason::UploadRequested), &mut r.h).unwrap();
    r.broken()
}

/// After the target asked for an upload, a request posted later is filled and completed
/// SUCCESS (R-TRM-7: UPLOAD_IN_PROGRESS, no data).
fn r_trm_7() -> Vec<&'static str> {
    let mut r = Rig::new(Faults::default(), quiet());
    r.t.indicate_event(T0, C, TcpOffloadEvent::Retrieve(TcpUploadReason::UploadRequested), &mut r.h).unwrap();
    r.post(&[100], false);
    r.feed(&data(50, 1), true);
    r.broken()
}

/// TcpIndicateAbort with no RST and no hardware failure (R-TRM-8).
fn r_trm_8() -> Vec<&'static str> {
    let mut r = Rig::new(Faults::default(), quiet());
    r.t.indicate_event(T0, C, TcpOffloadEvent::Abort, &mut r.h).unwrap();
    r.broken()
}

/// Data taken and delivered after the upload request for urgent data (R-URG-1).
fn r_urg_1() -> Vec<&'static str> {
    let mut r = Rig::new(Faults::default(), quiet());
    r.post(&[100], false);
    r.t.indicate_event(T0, C, TcpOffloadEvent::Retrieve(TcpUploadReason::ReceivedUrgentData), &mut r.h).unwrap();
    r.feed(&data(50, 1), true);
    r.broken()
}

/// The push timer completes a partially filled request 100 ms after the data, when its push
/// time is 500 ms (R-CMP-4).
fn r_cmp_4_push_timer_early() -> Vec<&'static str> {
    let mut r =
        Rig::new(Faults { timers_ahead: Some(std::time::Duration::from_millis(400)), ..Faults::default() }, quiet());
    r.post(&[100], false);
    r.feed(&data(50, 1), false);
    r.t.handle_timeout(T0 + std::time::Duration::from_millis(100), &mut r.h);
    r.broken()
}

/// The push timer never fires: the partially filled request is still outstanding 1.6 s after
/// the data (R-CMP-4: overdue past the 500 ms push time and the 1 s tolerance).
fn r_cmp_4_push_timer_overdue() -> Vec<&'static str> {
    let mut r = Rig::new(Faults { timers_dead: true, ..Faults::default() }, quiet());
    r.post(&[100], false);
    r.feed(&data(50, 1), false);
    r.t.handle_timeout(T0 + std::time::Duration::from_millis(1600), &mut r.h);
    r.broken()
}

/// A zero-byte request completed when it is posted, with no data available (R-POST-10).
fn r_post_10_too_early() -> Vec<&'static str> {
    let mut r = Rig::new(Faults { zero_at_post: true, ..Faults::default() }, quiet());
    r.post(&[0], false);
    r.broken()
}

/// Every checked rule, the scenario that breaks it.
fn table() -> Vec<(&'static str, Scenario)> {
    vec![
        ("R-POST-2", r_post_2),
        ("R-POST-2", r_post_2_twice),
        ("R-POST-3", r_post_3),
        ("R-POST-10", r_post_10),
        ("R-CMP-1", r_cmp_1),
        ("R-CMP-2", r_cmp_2),
        ("R-CMP-3", r_cmp_3),
        ("R-CMP-4", r_cmp_4),
        ("R-CMP-5", r_cmp_5),
        ("R-CMP-6", r_cmp_6),
        ("R-CMP-7", r_cmp_7),
        ("R-CMP-9", r_cmp_9),
        ("R-ACC-1", r_acc_1),
        ("R-ACC-2", r_acc_2),
        ("R-ACC-3", r_acc_3),
        ("R-IND-1", r_ind_1),
        ("R-IND-3", r_ind_3),
        ("R-IND-4", r_ind_4),
        ("R-IND-5", r_ind_5),
        ("R-IND-6", r_ind_6),
        ("R-IND-7", r_ind_7),
        ("R-IND-11", r_ind_11),
        ("R-RET-1", r_ret_1),
        ("R-DEL-1", r_del_1),
        ("R-DEL-3", r_del_3),
        ("R-DEL-5", r_del_5),
        ("R-FIN-1", r_fin_1),
        ("R-FIN-3", r_fin_3),
        ("R-RST-1", r_rst_1),
        ("R-ABT-1", r_abt_1),
        ("R-TRM-2", r_trm_2),
        ("R-TRM-3", r_trm_3),
        ("R-BUF-1", r_buf_1),
        ("R-ACC-3", r_acc_3_after_fin),
        ("R-POST-2", r_post_2_refused),
        ("R-CMP-4", r_cmp_4_push_timer_early),
        ("R-POST-10", r_post_10_too_early),
        ("R-CMP-4", r_cmp_4_push_timer_overdue),
        ("R-FIN-4", r_fin_4),
        ("R-TRM-7", r_trm_7),
        ("R-TRM-8", r_trm_8),
        ("R-URG-1", r_urg_1),
        ("R-ACC-3", r_acc_3_refused_indication),
        ("R-TRM-3", r_trm_3_host_owned),
        ("R-TRM-2", r_trm_2_state_after_fin),
        ("R-CMP-3", r_cmp_3_partial_leaves_data),
        ("R-CMP-3", r_cmp_3_deferred_too_long),
        ("R-DEL-2", r_del_2),
        ("R-POST-10", r_post_10_never_completed),
        ("R-ACC-2", r_acc_2_refused_delivered),
        ("R-RST-1", r_rst_1_data_after),
        ("R-RST-1", r_rst_1_buffered_after),
        ("R-ABT-1", r_abt_1_buffered_after),
        ("R-BUF-3", r_buf_3),
        ("R-SND-1", r_snd_1),
        ("R-SND-2", r_snd_2),
        ("R-SND-3", r_snd_3),
        ("R-SND-5", r_snd_5),
        ("R-SND-6", r_snd_6),
        ("R-SND-7", r_snd_7),
        ("R-SND-8", r_snd_8),
        ("R-SND-9", r_snd_9),
        ("R-SND-10", r_snd_10),
        ("R-SND-12", r_snd_12),
        ("R-SND-13", r_snd_13),
        ("R-SND-14", r_snd_14),
        ("R-DSC-1", r_dsc_1),
        ("R-DSC-3", r_dsc_3),
        ("R-DSC-4", r_dsc_4),
        ("R-DSC-5", r_dsc_5),
        ("R-DSC-6", r_dsc_6),
    ]
}

// ---- the send half ------------------------------------------------------------------------

fn r_snd_1() -> Vec<&'static str> {
    let mut r = Rig::new(Faults { send_status: Some(NdisStatus::Success), ..Faults::default() }, quiet());
    r.send(&[100], 1);
    r.broken()
}

fn r_snd_2() -> Vec<&'static str> {
    let mut r = Rig::new(Faults { read_extra: true, ..Faults::default() }, quiet());
    r.send(&[100], 1);
    r.read(0, 100);
    r.broken()
}

fn r_snd_3() -> Vec<&'static str> {
    let mut r = Rig::new(Faults { read_flip: true, ..Faults::default() }, quiet());
    r.send(&[100], 1);
    r.read(0, 100);
    r.broken()
}

fn r_snd_5() -> Vec<&'static str> {
    // Two sends completed in the wrong order.
    let f = send_done_with(|_, nbls| {
        if nbls.len() == 2 {
            let mut first = nbls.pop_front_chain();
            nbls.append(&mut first);
        }
    });
    let mut r = Rig::new(Faults { send_complete: f, ..Faults::default() }, quiet());
    r.send(&[100, 100], 1);
    r.ack(200);
    r.broken()
}

fn r_snd_6() -> Vec<&'static str> {
    // The target believes 40 more bytes were acknowledged than the peer acknowledged.
    let mut r = Rig::new(Faults { ack_extra: 40, ..Faults::default() }, quiet());
    r.send(&[100], 1);
    r.ack(60);
    r.broken()
}

fn r_snd_7() -> Vec<&'static str> {
    let f = send_done_with(|_, nbls| {
        for n in nbls.iter_mut() {
            n.set_tcp_offload_bytes_transferred(n.tcp_offload_bytes_transferred() - 1);
        }
    });
    let mut r = Rig::new(Faults { send_complete: f, ..Faults::default() }, quiet());
    r.send(&[100], 1);
    r.ack(100);
    r.broken()
}

fn r_snd_8() -> Vec<&'static str> {
    // After a reset, the second send (nothing of it acknowledged) claims bytes.
    let f = send_done_with(|_, nbls| {
        if nbls.len() == 2 {
            if let Some(n) = nbls.back_mut() {
                n.set_tcp_offload_bytes_transferred(10);
                n.net_buffer_mut().advance_data_start(10).unwrap();
            }
        }
    });
    let mut r = Rig::new(Faults { send_complete: f, ..Faults::default() }, quiet());
    r.send(&[100, 100], 1);
    r.ack(50);
    r.t.receive_rst(T0, C, &mut r.h).unwrap();
    r.broken()
}

fn r_snd_9() -> Vec<&'static str> {
    // A reset's failures reported as UPLOAD_IN_PROGRESS.
    let f = send_done_with(|_, nbls| {
        for n in nbls.iter_mut() {
            n.status = NdisStatus::UploadInProgress;
        }
    });
    let mut r = Rig::new(Faults { send_complete: f, ..Faults::default() }, quiet());
    r.send(&[100], 1);
    r.t.receive_rst(T0, C, &mut r.h).unwrap();
    r.broken()
}

fn r_snd_10() -> Vec<&'static str> {
    // A C-style target that completes a send inside the receive completion it is making.
    let mut t = Verifier::new(Delivery::new(DeliveryConfig::default()), VerifierMode::Collect);
    let mut h = AppHost::new();
    h.set_policy(C, quiet());
    t.initiate_offload(T0, C, TcpOffloadState::default(), &mut h).unwrap();
    let s = send_req(&data(10, 1));
    let mut s_done = s.clone();
    s_done.net_buffer_mut().advance_data_start(10).unwrap();
    s_done.set_tcp_offload_bytes_transferred(10);
    t.send(T0, C, NblChain::single(s), &mut h).unwrap();
    t.receive(T0, C, NblChain::single(req(100, false)), &mut h).unwrap();
    struct Nest {
        core: Arc<chimney::contract::VerifierCore>,
        s: Option<NetBufferList>,
        app: AppHost,
    }
    impl ProtocolHost for Nest {
        fn receive_complete(&mut self, conn: ConnId, nbls: NblChain, nested: &mut NestedCalls) {
            self.app.receive_complete(conn, nbls, nested);
            if let Some(s) = self.s.take() {
                let core = Arc::clone(&self.core);
                let mut app = AppHost::new();
                VerifyingHost::new(&core, &mut app).send_complete(conn, NblChain::single(s), nested);
            }
        }
        fn receive_indicate(
            &mut self,
            c: ConnId,
            n: NblChain,
            s: NdisStatus,
            nested: &mut NestedCalls,
        ) -> IndicateReturn {
            self.app.receive_indicate(c, n, s, nested)
        }
        fn event_indicate(&mut self, c: ConnId, e: TcpOffloadEvent, nested: &mut NestedCalls) {
            self.app.event_indicate(c, e, nested)
        }
    }
    // The peer acknowledged the send (the completion is legal but for where it is made).
    let mut host = Nest { core: Arc::clone(t.core()), s: Some(s_done), app: h };
    t.inner_mut().send_acked(T0, C, 10, &mut host).unwrap_or(());
    let core = Arc::clone(t.core());
    // Tell the verifier about the acknowledgement the inner target was given directly.
    let mut noop = AppHost::new();
    let _ = &mut noop;
    let mut fresh = send_req(&data(1, 2));
    fresh.set_tcp_offload_bytes_transferred(0);
    t.receive_data(T0, C, &data(100, 1), true, &mut host).unwrap();
    core.broken_rules().into_iter().filter(|r| *r != "R-SND-5" && *r != "R-SND-6").collect()
}

fn r_snd_12() -> Vec<&'static str> {
    let mut state = TcpOffloadState::default();
    state.delegated.send_data = NblChain::single(send_req(&data(50, 3)));
    let r = Rig::with_config(
        Faults { return_send_data: true, ..Faults::default() },
        quiet(),
        DeliveryConfig::default(),
        state,
    );
    r.t.inner().core().broken_rules()
}

fn r_snd_13() -> Vec<&'static str> {
    // The completion made during terminate never reaches the host.
    let f = send_done_with(|s, nbls| s.stash.append(nbls));
    let mut r = Rig::new(Faults { send_complete: f, ..Faults::default() }, quiet());
    r.send(&[100], 1);
    r.t.terminate_offload(T0, C, &mut r.h).unwrap();
    r.broken()
}

fn r_snd_14() -> Vec<&'static str> {
    // A send completed after terminate completed.
    let f = send_done_with(|s, nbls| s.stash.append(nbls));
    let mut r = Rig::new(Faults { send_complete: f, ..Faults::default() }, quiet());
    r.send(&[100], 1);
    r.t.terminate_offload(T0, C, &mut r.h).unwrap();
    let late = r.t.inner_mut().inner_mut().s.stash.take();
    let core = Arc::clone(r.t.inner().core());
    let before: BTreeSet<&str> = core.broken_rules().into_iter().collect();
    let mut app = AppHost::new();
    VerifyingHost::new(&core, &mut app).send_complete(C, late, &mut NestedCalls::new());
    core.broken_rules().into_iter().filter(|r| !before.contains(r)).collect()
}

fn r_dsc_1() -> Vec<&'static str> {
    let mut r = Rig::new(Faults { disconnect_status: Some(NdisStatus::Success), ..Faults::default() }, quiet());
    r.disconnect(DisconnectKind::Graceful, &[]);
    r.broken()
}

fn r_dsc_3() -> Vec<&'static str> {
    // The FIN taken as acknowledged with the last data byte.
    let mut r = Rig::new(Faults { ack_extra: 1, ..Faults::default() }, quiet());
    r.send(&[100], 1);
    r.disconnect(DisconnectKind::Graceful, &[]);
    r.ack(100);
    r.broken()
}

fn r_dsc_4() -> Vec<&'static str> {
    // The abortive disconnect completes before the sends it aborted.
    let sd: Option<SendDoneFn> = Some(Box::new(|s, _conn, mut nbls, _host, _nested| s.stash.append(&mut nbls)));
    let dd: Option<DiscDoneFn> = Some(Box::new(|s, conn, nbl, st, host, nested| {
        host.disconnect_complete(conn, nbl, st, nested);
        let late = s.stash.take();
        if !late.is_empty() {
            host.send_complete(conn, late, nested);
        }
    }));
    let mut r = Rig::new(Faults { send_complete: sd, disconnect_complete: dd, ..Faults::default() }, quiet());
    r.send(&[100], 1);
    r.disconnect(DisconnectKind::Abortive, &[]);
    r.broken()
}

fn r_dsc_5() -> Vec<&'static str> {
    // DisconnectComplete without the disconnect's NBL.
    let dd: Option<DiscDoneFn> =
        Some(Box::new(|_, conn, _nbl, st, host, nested| host.disconnect_complete(conn, NblChain::new(), st, nested)));
    let mut r = Rig::new(Faults { disconnect_complete: dd, ..Faults::default() }, quiet());
    r.disconnect(DisconnectKind::Abortive, &[]);
    r.broken()
}

fn r_dsc_6() -> Vec<&'static str> {
    let mut r = Rig::new(Faults { take_closed_sends: true, ..Faults::default() }, quiet());
    r.disconnect(DisconnectKind::Graceful, &[]);
    r.send(&[10], 1);
    r.broken()
}

#[test]
fn each_faulty_target_breaks_exactly_its_rule() {
    let mut failures = Vec::new();
    for (rule, scenario) in table() {
        let got = scenario();
        if got != vec![rule] {
            failures.push(format!("{rule}: verifier reported {got:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Every faulty target's contract trace, replayed offline (`chimney verify`), reports the same
/// rules as the live verifier. Two scenarios drive the verifier without a rig (concurrent and
/// re-entered upcalls, which a sequential trace cannot show) and are not traced.
#[test]
fn traces_replay_to_the_same_rules() {
    let mut failures = Vec::new();
    let mut replayed = 0;
    for (rule, scenario) in table() {
        REPLAYED.with(|c| *c.borrow_mut() = None);
        let live = scenario();
        match REPLAYED.with(|c| c.borrow_mut().take()) {
            None => {}
            Some(Ok(offline)) => {
                replayed += 1;
                if offline != live {
                    failures.push(format!("{rule}: live {live:?}, replayed {offline:?}"));
                }
            }
            Some(Err(e)) => failures.push(format!("{rule}: replay failed: {e}")),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    // Five drive the verifier around the tracer: concurrent and re-entered upcalls (R-CMP-5,
    // R-CMP-6, R-SND-10), which a sequential trace cannot show, an upcall after the
    // connection's trace ended (R-SND-14), and send data handed back at offload (R-SND-12).
    assert!(replayed >= table().len() - 5, "only {replayed} scenarios were traced");
}

#[test]
fn every_checked_rule_has_a_faulty_target() {
    let tested: BTreeSet<&str> = table().iter().map(|(r, _)| *r).collect();
    let checked: BTreeSet<&str> = RULES.iter().map(|r| r.id).collect();
    assert_eq!(tested, checked);
}

#[test]
fn the_correct_target_breaks_no_rule_in_the_same_scenarios() {
    // The same drives without faults: nothing reported, so each negative test above is
    // caused by its fault and not by the scenario.
    let mut r = Rig::new(Faults::default(), quiet());
    r.post(&[0, 100, 100], false);
    r.feed(&data(150, 1), true);
    r.feed(&data(10, 2), false);
    r.t.receive_fin(T0, C, &mut r.h).unwrap();
    r.t.terminate_offload(T0, C, &mut r.h).unwrap();
    assert_eq!(r.broken(), Vec::<&str>::new());
    assert_eq!(REPLAYED.with(|c| c.borrow_mut().take()), Some(Ok(Vec::new())), "its trace replays clean");
}

/// Without recorded bytes a trace still proves counts, order, ownership and statuses; it
/// never reports a rule the live verifier did not.
#[test]
fn traces_without_bytes_report_no_false_violations() {
    for (rule, scenario) in table() {
        TRACE_TEXT.with(|c| *c.borrow_mut() = None);
        let live = scenario();
        let Some(text) = TRACE_TEXT.with(|c| c.borrow_mut().take()) else { continue };
        let stripped: String = text
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                strip_data(&mut v);
                if v.get("chimney_trace").is_some() {
                    v["bytes"] = false.into();
                }
                v.to_string() + "\n"
            })
            .collect();
        let offline = replay::replay(&stripped).unwrap_or_else(|e| panic!("{rule}: {e}")).broken_rules();
        assert!(offline.iter().all(|r| live.contains(r)), "{rule}: live {live:?}, without bytes {offline:?}");
    }
}

fn strip_data(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.remove("data");
            m.values_mut().for_each(strip_data);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_data),
        _ => {}
    }
}

/// Offload in CLOSE_WAIT: the FIN arrived before the offload and the delegated RcvNxt already
/// counts it; terminate returns that RcvNxt plus the bytes fed since (none here: the peer
/// sends nothing after its FIN).
fn legal_offload_in_close_wait() -> Vec<&'static str> {
    let mut state = TcpOffloadState::default();
    state.delegated.rcv_nxt = 5001;
    state.delegated.state = Some(chimney::ndis::TcpConnectionState::CloseWait);
    let mut bd = NetBufferList::new(NblId::new(PoolTag::Host, 9), NetBuffer::new(vec![Mdl::from_bytes(data(100, 9))]));
    bd.status = NdisStatus::Success;
    state.delegated.buffered_data = NblChain::single(bd);
    let mut r = Rig::with_config(Faults::default(), quiet(), DeliveryConfig::default(), state);
    r.post(&[100], false);
    r.t.terminate_offload(T0, C, &mut r.h).unwrap();
    r.broken()
}

/// After the RST, the bytes already placed in the outstanding request complete with it
/// (REQUEST_ABORTED, their count), then nothing more.
fn legal_placed_bytes_complete_after_rst() -> Vec<&'static str> {
    let mut r = Rig::new(Faults::default(), quiet());
    r.post(&[100], true);
    r.feed(&data(50, 1), false);
    r.t.receive_rst(T0, C, &mut r.h).unwrap();
    r.post(&[100], false);
    r.t.terminate_offload(T0, C, &mut r.h).unwrap();
    r.broken()
}

/// A request posted after the target asked for an upload completes UPLOAD_IN_PROGRESS (here
/// at terminate), as prescribed.
fn legal_upload_in_progress_after_upload_request() -> Vec<&'static str> {
    let mut r = Rig::new(Faults::default(), quiet());
    r.t.indicate_event(T0, C, TcpOffloadEvent::Retrieve(TcpUploadReason::UploadRequested), &mut r.h).unwrap();
    r.post(&[100], false);
    r.t.terminate_offload(T0, C, &mut r.h).unwrap();
    r.broken()
}

/// The hardware-failure path: TcpIndicateRetrieve(HardwareFailure), TcpIndicateAbort, and at
/// terminate the outstanding request completes REQUEST_ABORTED.
fn legal_hardware_failure_path() -> Vec<&'static str> {
    let f = complete_with(|_, nbls| {
        for n in nbls.iter_mut() {
            if n.status == NdisStatus::UploadInProgress {
                n.status = NdisStatus::RequestAborted;
            }
        }
    });
    let ev: Option<EventFn> = Some(Box::new(|_, conn, ev, host, nested| {
        // A target that lost its state says so, then aborts; nothing else.
        if ev == TcpOffloadEvent::Abort {
            host.event_indicate(conn, TcpOffloadEvent::Retrieve(TcpUploadReason::HardwareFailure), nested);
        }
        host.event_indicate(conn, ev, nested)
    }));
    let mut r = Rig::new(Faults { complete: f, event: ev, ..Faults::default() }, quiet());
    r.t.indicate_event(T0, C, TcpOffloadEvent::Abort, &mut r.h).unwrap();
    r.post(&[100], false);
    r.t.terminate_offload(T0, C, &mut r.h).unwrap();
    r.broken()
}

/// REQUEST_ABORTED for an error while processing receive data (which the calls do not show):
/// the request completes with the bytes it holds.
fn legal_request_aborted_on_processing_error() -> Vec<&'static str> {
    let f = complete_with_status(NdisStatus::RequestAborted);
    let mut r = Rig::new(Faults { complete: f, ..Faults::default() }, quiet());
    r.post(&[100], false);
    r.feed(&data(100, 1), false);
    r.broken()
}

/// The push timer restarted by new data fires its push time after the last data, not the
/// first.
fn legal_push_timer_restarted_by_data() -> Vec<&'static str> {
    let mut r = Rig::new(Faults::default(), quiet());
    r.post(&[100], false);
    r.feed(&data(20, 1), false);
    r.t.receive_data(T0 + ms(300), C, &data(20, 2), false, &mut r.h).unwrap();
    r.t.handle_timeout(T0 + ms(500), &mut r.h);
    r.t.handle_timeout(T0 + ms(800), &mut r.h);
    // A later request's timer fired late, within the tolerance.
    r.post(&[100], false);
    r.t.receive_data(T0 + ms(900), C, &data(20, 3), false, &mut r.h).unwrap();
    r.t.handle_timeout(T0 + ms(2300), &mut r.h);
    r.broken()
}

/// Legal behaviours the verifier once flagged, or could: each must report nothing, live and
/// replayed.
/// A filled request completed from the target's own context 100 ms later (a worker, here its
/// timer call), as the contract advises: nothing owed too long.
fn legal_completion_deferred_to_a_worker() -> Vec<&'static str> {
    let f = complete_with(|s, nbls| s.stash.append(nbls));
    let release = Some(T0 + ms(100));
    let mut r = Rig::new(Faults { complete: f, release_stash_at: release, ..Faults::default() }, quiet());
    r.post(&[100, 100], true);
    r.feed(&data(150, 1), false);
    r.t.handle_timeout(T0 + ms(100), &mut r.h);
    r.feed(&data(50, 2), false);
    r.t.handle_timeout(T0 + ms(200), &mut r.h);
    r.t.terminate_offload(T0 + ms(300), C, &mut r.h).unwrap();
    r.broken()
}

fn legal_table() -> Vec<(&'static str, Scenario)> {
    vec![
        ("the push timer restarted by data", legal_push_timer_restarted_by_data),
        ("UPLOAD_IN_PROGRESS for a post after an upload request", legal_upload_in_progress_after_upload_request),
        ("the hardware-failure path", legal_hardware_failure_path),
        ("REQUEST_ABORTED on a processing error", legal_request_aborted_on_processing_error),
        ("offload in CLOSE_WAIT, then terminate", legal_offload_in_close_wait),
        ("completion deferred to a worker", legal_completion_deferred_to_a_worker),
        ("bytes placed before a RST complete with it", legal_placed_bytes_complete_after_rst),
    ]
}

#[test]
fn legal_behaviours_break_no_rule() {
    let mut failures = Vec::new();
    for (what, scenario) in legal_table() {
        REPLAYED.with(|c| *c.borrow_mut() = None);
        let live = scenario();
        if !live.is_empty() {
            failures.push(format!("{what}: live verifier reported {live:?}"));
        }
        match REPLAYED.with(|c| c.borrow_mut().take()) {
            Some(Ok(offline)) if offline.is_empty() => {}
            other => failures.push(format!("{what}: replay gave {other:?}")),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Where the contract leaves a point open, a target that departs from chimney's own choice
/// gets a note, not a violation: a push timer started at offload with nothing posted (the
/// contract states it without condition), and PSH on data that was buffered left unhonoured
/// (A22).
#[test]
fn chimney_choices_are_notes_not_violations() {
    // A push timer running since the offload.
    let mut r = Rig::new(Faults { timer_lies: true, ..Faults::default() }, quiet());
    r.t.handle_timeout(T0, &mut r.h);
    assert_eq!(r.broken(), Vec::<&str>::new());
    let notes: Vec<&str> = r.t.inner().core().notes().iter().map(|v| v.rule.id).collect();
    assert!(notes.contains(&"R-CMP-9"), "{notes:?}");

    // PSH on refused, buffered data: the request filled from the buffer is held.
    let f = complete_with(|s, nbls| s.stash.append(nbls));
    let policy = AppPolicy { indication: IndicationPolicy::Refuse, ..quiet() };
    let mut r = Rig::new(Faults { complete: f, timer_lies: true, ..Faults::default() }, policy);
    r.feed(&data(50, 1), true);
    r.post(&[100], false);
    assert_eq!(r.broken(), Vec::<&str>::new());
    let notes: Vec<&str> = r.t.inner().core().notes().iter().map(|v| v.rule.id).collect();
    assert!(notes.contains(&"R-DEL-5"), "{notes:?}");
}
