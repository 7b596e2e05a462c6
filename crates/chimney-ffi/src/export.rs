//! The other direction: chimney's own delivery layer as a C target. `libchimney_ffi` exports
//! `chimney_target_ops()`, so a C host drives chimney through the same header a foreign
//! target implements (`examples/c-host/`), and `chimney check --target libchimney_ffi.so`
//! checks chimney itself through the ABI round trip.
//!
//! ```text
//!   C host ──ChimneyTargetOps──► Exported ──Rust calls──► Delivery
//!   C host ◄──ChimneyHostOps──── CHost    ◄──upcalls───── Delivery
//! ```
//!
//! The host's posted NBLs are its memory: chimney places into a Rust copy of each request and
//! copies the placed bytes into the host's MDLs when it completes it. Indicated and
//! BufferedData NBLs are chimney's, lent to the host as views until `receive_return`. A call
//! the host makes from inside an upcall is queued as the Rust `NestedCalls` are.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::c_void;
use std::ptr;
use std::time::Duration;

use chimney::contract::{
    ConnId, Delivery, DeliveryConfig, IndicateReturn, InitiateOffload, NestedCalls, OffloadTarget, ProtocolHost,
    ReceiveInput,
};
use chimney::ndis::{
    DisconnectKind, Mdl, NblChain, NblId, NdisStatus, NetBuffer, NetBufferList, PoolTag, TcpCachedState,
    TcpConnectionState, TcpConstState, TcpDelegatedState, TcpOffloadEvent, TcpOffloadState, TcpUploadReason,
};
use chimney::Instant;

use crate::abi::*;
use crate::foreign::{event_specific, Pinned, View};

/// chimney's delivery layer behind the C entry points.
struct Exported {
    host: ChimneyHostOps,
    d: RefCell<Delivery>,
    /// Posted requests: the host's C NBL for each Rust copy, and where its data started.
    posted: RefCell<HashMap<NblId, (*mut ChimneyNetBufferList, usize)>>,
    /// chimney's NBLs the host holds (indicated, BufferedData), by the address of their view.
    lent: RefCell<HashMap<usize, (NetBufferList, Pinned<View>)>>,
    /// The `NestedCalls` of the upcall in progress: host calls made inside it go there.
    nested: Cell<*mut NestedCalls>,
    serial: Cell<u64>,
}

/// Walks a C MDL chain: `f(bytes)` for each MDL, at most `MAX` of them.
fn mdls(mut m: *mut ChimneyMdl, mut f: impl FnMut(&mut ChimneyMdl)) {
    let mut n = 0;
    while !m.is_null() && n < 1 << 16 {
        // SAFETY: the host's MDL chain, valid while it hands the NBL to chimney (ABI contract).
        let mdl = unsafe { &mut *m };
        f(mdl);
        m = mdl.next;
        n += 1;
    }
}

impl Exported {
    fn next_id(&self) -> NblId {
        self.serial.set(self.serial.get() + 1);
        NblId::new(PoolTag::Host, self.serial.get())
    }

    /// A Rust copy of the host's posted NBL `p` (sizes, geometry, info slots), recorded.
    fn take_post(&self, p: *mut ChimneyNetBufferList) -> Option<NetBufferList> {
        // SAFETY: a posted NBL the host hands over (ABI contract); NULL was checked.
        let c = unsafe { &*p };
        if c.first_net_buffer.is_null() {
            return None;
        }
        // SAFETY: as above.
        let nb = unsafe { &*c.first_net_buffer };
        let mut sizes = Vec::new();
        mdls(nb.mdl_chain, |m| sizes.push(Mdl::zeroed(m.byte_count as usize)));
        let rust_nb = NetBuffer::with_used_space(sizes, nb.data_offset as usize, nb.data_length as usize).ok()?;
        let id = self.next_id();
        let mut n = NetBufferList::new(id, rust_nb);
        n.set_tcp_receive_no_push(c.info[CHIMNEY_INFO_RECEIVE_NO_PUSH] != 0);
        n.set_tcp_receive_bytes_transferred(c.info[CHIMNEY_INFO_RECEIVE_BYTES_TRANSFERRED]);
        n.status = NdisStatus::from_code(c.status).unwrap_or(NdisStatus::Pending);
        self.posted.borrow_mut().insert(id, (p, nb.data_offset as usize));
        Some(n)
    }

    /// The host's chain `nbls` as Rust copies (a NULL chain is empty).
    fn take_posts(&self, mut p: *mut ChimneyNetBufferList) -> NblChain {
        let mut chain = NblChain::new();
        let mut n = 0;
        while !p.is_null() && n < 1 << 16 {
            // SAFETY: the host's NBL (ABI contract).
            let next = unsafe { (*p).next };
            if let Some(r) = self.take_post(p) {
                chain.push_back(r);
            }
            p = next;
            n += 1;
        }
        chain
    }

    /// Writes a completed Rust request back into the host's NBL: the placed bytes, status,
    /// byte count and the advanced data start. Returns the host's NBL.
    fn give_back(&self, n: &NetBufferList) -> Option<*mut ChimneyNetBufferList> {
        let (p, offset0) = self.posted.borrow_mut().remove(&n.id())?;
        // SAFETY: the host's NBL, which chimney owns until this completion (ABI contract).
        let c = unsafe { &mut *p };
        let rnb = n.net_buffer();
        let placed = rnb.data_offset().saturating_sub(offset0);
        let mut bytes = Vec::with_capacity(placed);
        rnb.copy_out(offset0, placed, &mut bytes);
        if !c.first_net_buffer.is_null() {
            // SAFETY: as above.
            let nb = unsafe { &mut *c.first_net_buffer };
            let (mut skip, mut src) = (offset0, &bytes[..]);
            mdls(nb.mdl_chain, |m| {
                let len = m.byte_count as usize;
                if skip >= len {
                    skip -= len;
                    return;
                }
                let k = (len - skip).min(src.len());
                if k > 0 && !m.mapped_system_va.is_null() {
                    // SAFETY: the MDL describes `byte_count` writable bytes of the host's buffer.
                    unsafe { ptr::copy_nonoverlapping(src.as_ptr(), m.mapped_system_va.add(skip), k) };
                }
                src = &src[k..];
                skip = 0;
            });
            // The geometry follows the Rust request's.
            nb.data_offset = rnb.data_offset() as u32;
            nb.data_length = rnb.data_length() as u32;
            let (mut cur, mut i) = (nb.mdl_chain, 0);
            while i < rnb.current_mdl() && !cur.is_null() {
                // SAFETY: the host's MDL chain.
                cur = unsafe { (*cur).next };
                i += 1;
            }
            nb.current_mdl = cur;
            nb.current_mdl_offset = rnb.current_mdl_offset() as u32;
        }
        c.status = n.status.code();
        c.info[CHIMNEY_INFO_BYTES_TRANSFERRED] = n.tcp_offload_bytes_transferred();
        c.next = ptr::null_mut();
        Some(p)
    }

    /// Lends chimney's NBLs to the host as a chain of views.
    fn lend(&self, nbls: NblChain) -> *mut ChimneyNetBufferList {
        let mut lent = self.lent.borrow_mut();
        View::chain(nbls, |p, n, view| {
            lent.insert(p as usize, (n, view));
        })
    }

    /// chimney's NBLs the host hands back (a chain of lent views); others are ignored.
    fn take_lent(&self, mut p: *mut ChimneyNetBufferList) -> NblChain {
        let mut out = NblChain::new();
        while !p.is_null() {
            let Some((n, view)) = self.lent.borrow_mut().remove(&(p as usize)) else { break };
            // SAFETY: a view chimney allocated, found in its table.
            p = unsafe { (*View::nbl_ptr(&view)).next };
            out.push_back(n);
        }
        out
    }

    /// Runs `f` on the delivery layer with the C host as its host; `None` when the host calls
    /// in from inside an upcall on an entry point that cannot be queued.
    fn with<R>(&self, f: impl FnOnce(&mut Delivery, &mut CHost<'_>) -> R) -> Option<R> {
        let mut d = self.d.try_borrow_mut().ok()?;
        let mut h = CHost { ex: self };
        Some(f(&mut d, &mut h))
    }
}

/// The C host as chimney's `ProtocolHost`.
struct CHost<'a> {
    ex: &'a Exported,
}

impl CHost<'_> {
    fn upcall<R>(&self, nested: &mut NestedCalls, f: impl FnOnce() -> R) -> R {
        let prev = self.ex.nested.replace(nested);
        let r = f();
        self.ex.nested.set(prev);
        r
    }
}

impl ProtocolHost for CHost<'_> {
    fn receive_complete(&mut self, conn: ConnId, nbls: NblChain, nested: &mut NestedCalls) {
        let mut head: *mut ChimneyNetBufferList = ptr::null_mut();
        let mut prev: *mut ChimneyNetBufferList = ptr::null_mut();
        for n in nbls.iter() {
            let Some(p) = self.ex.give_back(n) else { continue };
            if prev.is_null() {
                head = p;
            } else {
                // SAFETY: the host's NBL just completed.
                unsafe { (*prev).next = p };
            }
            prev = p;
        }
        if head.is_null() {
            return;
        }
        let h = self.ex.host;
        self.upcall(nested, || (h.receive_complete)(h.ctx, conn.0, head));
    }

    fn receive_indicate(
        &mut self,
        conn: ConnId,
        nbl: NblChain,
        status: NdisStatus,
        nested: &mut NestedCalls,
    ) -> IndicateReturn {
        let len = nbl.front().map_or(0, |n| n.net_buffer().data_length());
        let p = self.ex.lend(nbl);
        let mut consumed = 0u32;
        let h = self.ex.host;
        let r = self.upcall(nested, || (h.receive_indicate)(h.ctx, conn.0, p, status.code(), &mut consumed));
        if r == CHIMNEY_STATUS_SUCCESS {
            return IndicateReturn::Success;
        }
        let back = self.ex.take_lent(p);
        let k = (consumed as usize).min(len);
        if r == CHIMNEY_STATUS_DATA_PARTIALLY_ACCEPTED && k > 0 && k < len {
            IndicateReturn::PartiallyAccepted { nbl: back, bytes_consumed: k }
        } else {
            IndicateReturn::NotAccepted(back)
        }
    }

    fn event_indicate(&mut self, conn: ConnId, event: TcpOffloadEvent, nested: &mut NestedCalls) {
        let specific = event_specific(event);
        let h = self.ex.host;
        self.upcall(nested, || (h.event_indicate)(h.ctx, conn.0, event.event_type(), specific));
    }
}

fn ex<'a>(t: *mut c_void) -> Option<&'a Exported> {
    // SAFETY: `t` is what `create` returned (ABI contract); NULL is refused.
    (!t.is_null()).then(|| unsafe { &*(t as *const Exported) })
}

fn at(now: u64) -> Instant {
    Instant::from_nanos(now)
}

fn code<E>(r: Option<Result<(), E>>) -> u32 {
    match r {
        Some(Ok(())) => CHIMNEY_STATUS_SUCCESS,
        Some(Err(_)) => CHIMNEY_STATUS_INVALID_STATE,
        None => CHIMNEY_STATUS_FAILURE,
    }
}

extern "C" fn create(host: *const ChimneyHostOps, push_time_ms: u32) -> *mut c_void {
    if host.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: the host's table, valid until `destroy` (ABI contract).
    let host = unsafe { *host };
    if host.abi_version != CHIMNEY_ABI_VERSION {
        return ptr::null_mut();
    }
    let cfg =
        DeliveryConfig { push_timeout: Duration::from_millis(u64::from(push_time_ms)), ..DeliveryConfig::default() };
    let e = Box::new(Exported {
        host,
        d: RefCell::new(Delivery::new(cfg)),
        posted: RefCell::new(HashMap::new()),
        lent: RefCell::new(HashMap::new()),
        nested: Cell::new(ptr::null_mut()),
        serial: Cell::new(0),
    });
    Box::into_raw(e) as *mut c_void
}

extern "C" fn destroy(t: *mut c_void) {
    if !t.is_null() {
        // SAFETY: made by `create`, destroyed once (ABI contract).
        drop(unsafe { Box::from_raw(t as *mut Exported) });
    }
}

extern "C" fn initiate_offload(t: *mut c_void, now: u64, conn: u32, s: *const ChimneyOffloadState) -> u32 {
    let (Some(e), false) = (ex(t), s.is_null()) else { return CHIMNEY_STATUS_FAILURE };
    // SAFETY: the host's state for this call (ABI contract).
    let s = unsafe { &*s };
    // BufferedData: copied now, the host keeps its NBLs.
    let mut buffered = NblChain::new();
    let mut p = s.buffered_data;
    while !p.is_null() {
        // SAFETY: the host's BufferedData chain.
        let c = unsafe { &*p };
        if !c.first_net_buffer.is_null() {
            // SAFETY: as above.
            let nb = unsafe { &*c.first_net_buffer };
            let (mut skip, mut left) = (nb.data_offset as usize, nb.data_length as usize);
            let mut bytes = Vec::with_capacity(left);
            mdls(nb.mdl_chain, |m| {
                let len = m.byte_count as usize;
                if skip >= len {
                    skip -= len;
                    return;
                }
                let k = (len - skip).min(left);
                if k > 0 && !m.mapped_system_va.is_null() {
                    // SAFETY: the MDL's readable bytes.
                    bytes.extend_from_slice(unsafe { std::slice::from_raw_parts(m.mapped_system_va.add(skip), k) });
                }
                left -= k;
                skip = 0;
            });
            buffered.push_back(NetBufferList::new(e.next_id(), NetBuffer::new(vec![Mdl::from_bytes(bytes)])));
        }
        p = c.next;
    }
    let state = TcpOffloadState {
        constant: TcpConstState { local_port: s.local_port, remote_port: s.remote_port, ..TcpConstState::default() },
        cached: TcpCachedState { initial_rcv_wnd: s.initial_rcv_wnd, rcv_indication_size: s.rcv_indication_size },
        delegated: TcpDelegatedState {
            state: TcpConnectionState::from_code(u64::from(s.state)),
            rcv_nxt: s.rcv_nxt,
            buffered_data: buffered,
            ..TcpDelegatedState::default()
        },
    };
    match e.with(|d, h| d.initiate_offload(at(now), ConnId(conn), state, h)) {
        Some(Ok(_)) => CHIMNEY_STATUS_SUCCESS,
        Some(Err(f)) => f.status.code(),
        None => CHIMNEY_STATUS_FAILURE,
    }
}

extern "C" fn receive(t: *mut c_void, now: u64, conn: u32, nbls: *mut ChimneyNetBufferList) -> u32 {
    let Some(e) = ex(t) else { return CHIMNEY_STATUS_FAILURE };
    let chain = e.take_posts(nbls);
    let nested = e.nested.get();
    if !nested.is_null() {
        // From inside an upcall: queued, served after it returns (R-POST-5).
        // SAFETY: the upcall in progress set it, and it lives until that upcall returns.
        unsafe { (*nested).post_receive(ConnId(conn), chain) };
        return CHIMNEY_STATUS_PENDING;
    }
    match e.with(|d, h| d.receive(at(now), ConnId(conn), chain, h)) {
        Some(Ok(s)) => s.code(),
        Some(Err(rej)) => {
            // Refused: the host's NBLs are its own again.
            for n in rej.nbls.iter() {
                e.posted.borrow_mut().remove(&n.id());
            }
            CHIMNEY_STATUS_INVALID_STATE
        }
        None => CHIMNEY_STATUS_FAILURE,
    }
}

extern "C" fn receive_return(t: *mut c_void, now: u64, nbls: *mut ChimneyNetBufferList) -> u32 {
    let Some(e) = ex(t) else { return CHIMNEY_STATUS_FAILURE };
    let chain = e.take_lent(nbls);
    let nested = e.nested.get();
    if !nested.is_null() {
        // SAFETY: as in `receive`.
        unsafe { (*nested).receive_return(chain) };
        return CHIMNEY_STATUS_SUCCESS;
    }
    e.with(|d, h| d.receive_return(at(now), chain, h).code()).unwrap_or(CHIMNEY_STATUS_FAILURE)
}

extern "C" fn terminate_offload(t: *mut c_void, now: u64, conn: u32, out: *mut ChimneyDelegatedState) -> u32 {
    let (Some(e), false) = (ex(t), out.is_null()) else { return CHIMNEY_STATUS_FAILURE };
    match e.with(|d, h| d.terminate_offload(at(now), ConnId(conn), h)) {
        Some(Ok(state)) => {
            let head = e.lend(state.buffered_data);
            // SAFETY: the host's out parameter.
            let out = unsafe { &mut *out };
            out.state = state.state.map_or(0, |s| s as u32);
            out.rcv_nxt = state.rcv_nxt;
            out.buffered_data = head;
            CHIMNEY_STATUS_SUCCESS
        }
        Some(Err(_)) => CHIMNEY_STATUS_INVALID_STATE,
        None => CHIMNEY_STATUS_FAILURE,
    }
}

extern "C" fn receive_data(t: *mut c_void, now: u64, conn: u32, data: *const u8, len: usize, psh: bool) -> u32 {
    let Some(e) = ex(t) else { return CHIMNEY_STATUS_FAILURE };
    let bytes = if len == 0 || data.is_null() {
        &[][..]
    } else {
        // SAFETY: `len` readable bytes at `data` (ABI contract).
        unsafe { std::slice::from_raw_parts(data, len) }
    };
    code(e.with(|d, h| d.receive_data(at(now), ConnId(conn), bytes, psh, h)))
}

extern "C" fn receive_fin(t: *mut c_void, now: u64, conn: u32) -> u32 {
    let Some(e) = ex(t) else { return CHIMNEY_STATUS_FAILURE };
    code(e.with(|d, h| d.receive_fin(at(now), ConnId(conn), h)))
}

extern "C" fn receive_rst(t: *mut c_void, now: u64, conn: u32) -> u32 {
    let Some(e) = ex(t) else { return CHIMNEY_STATUS_FAILURE };
    code(e.with(|d, h| d.receive_rst(at(now), ConnId(conn), h)))
}

extern "C" fn abortive_disconnect(t: *mut c_void, now: u64, conn: u32) -> u32 {
    let Some(e) = ex(t) else { return CHIMNEY_STATUS_FAILURE };
    let r = e.with(|d, h| d.disconnect(at(now), ConnId(conn), DisconnectKind::Abortive, NblChain::new(), h));
    code(r.map(|r| r.map(|_| ()).map_err(|_| ())))
}

extern "C" fn receive_space(t: *mut c_void, conn: u32) -> usize {
    ex(t).and_then(|e| e.d.try_borrow().ok().map(|d| d.receive_space(ConnId(conn)))).unwrap_or(0)
}

extern "C" fn handle_timeout(t: *mut c_void, now: u64) {
    if let Some(e) = ex(t) {
        e.with(|d, h| d.handle_timeout(at(now), h));
    }
}

extern "C" fn poll_timeout(t: *mut c_void) -> u64 {
    ex(t)
        .and_then(|e| e.d.try_borrow().ok().and_then(|d| d.poll_timeout()))
        .map_or(CHIMNEY_NO_DEADLINE, Instant::as_nanos)
}

extern "C" fn push_timer(t: *mut c_void, conn: u32) -> u64 {
    ex(t)
        .and_then(|e| e.d.try_borrow().ok().and_then(|d| d.push_timer(ConnId(conn))))
        .map_or(CHIMNEY_NO_DEADLINE, Instant::as_nanos)
}

extern "C" fn tcp_event(t: *mut c_void, now: u64, conn: u32, event: u32, specific: u32) -> u32 {
    let Some(e) = ex(t) else { return CHIMNEY_STATUS_FAILURE };
    let ev = match event {
        CHIMNEY_EVENT_RETRIEVE => match TcpUploadReason::from_code(u64::from(specific)) {
            Some(r) => TcpOffloadEvent::Retrieve(r),
            None => return CHIMNEY_STATUS_FAILURE,
        },
        CHIMNEY_EVENT_DISCONNECT => TcpOffloadEvent::Disconnect,
        CHIMNEY_EVENT_ABORT => TcpOffloadEvent::Abort,
        _ => return CHIMNEY_STATUS_FAILURE,
    };
    code(e.with(|d, h| d.indicate_event(at(now), ConnId(conn), ev, h)))
}

/// The table, shareable: its one pointer is to a static string.
struct Table(ChimneyTargetOps);

// SAFETY: the table is immutable; its `name` points to a static, immutable string.
unsafe impl Sync for Table {}

/// chimney's delivery layer as a C target.
static OPS: Table = Table(ChimneyTargetOps {
    abi_version: CHIMNEY_ABI_VERSION,
    name: c"chimney".as_ptr(),
    create,
    destroy,
    initiate_offload,
    receive,
    receive_return,
    terminate_offload,
    receive_data,
    receive_fin,
    receive_rst,
    abortive_disconnect,
    receive_space,
    handle_timeout,
    poll_timeout,
    push_timer,
    tcp_event: Some(tcp_event),
});

/// The entry point a target library exports: here, chimney's own delivery layer, for C hosts
/// (and for checking chimney through the ABI round trip).
#[no_mangle]
pub extern "C" fn chimney_target_ops() -> *const ChimneyTargetOps {
    &OPS.0
}
