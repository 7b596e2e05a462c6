//! [`ForeignTarget`]: a target written in C (or anything with a C ABI) behind chimney's Rust
//! contract traits, so that the verifier, the simulator and the drivers run it exactly as
//! they run chimney's own `Delivery`.
//!
//! ```text
//!   chimney host ──Rust calls──► Verifier ──► ForeignTarget ──C entry points──► target (.so)
//!   chimney host ◄─────────────  Verifier ◄── trampolines  ◄──C upcalls─────────  target
//! ```
//!
//! Posted requests are handed to C as views ([`ChimneyNetBufferList`] and friends) that
//! chimney allocates and whose MDLs point into the Rust NBL's own memory, so the target places
//! bytes straight into the host's buffer. When the target completes a view, the trampoline
//! finds it by address in its table (it never reads through a pointer it did not hand out),
//! copies status, info slots and geometry back into the Rust NBL and passes that on. Anything
//! that is not a live view (a NULL, an NBL the target never got, one completed twice) is
//! reported to the verifier as a violation and dropped.
//!
//! Indicated NBLs are the target's memory: the trampoline reads them (the target vouches for
//! its own pointers), copies the bytes into a Rust NBL whose id stands for the address, and
//! hands the same address back through `receive_return`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::{c_void, CStr};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::Path;
use std::ptr::{self, NonNull};
use std::sync::{Arc, Mutex};

use chimney::contract::rules::{self, Rule};
use chimney::contract::{
    ApiMisuse, ConnId, IndicateReturn, InitiateFailed, InitiateOffload, NestedCalls, OffloadTarget, PostRejected,
    ProtocolHost, ReceiveInput, SendInput, SendStream, VerifierCore, Violation,
};
use chimney::ndis::{
    DisconnectKind, Mdl, NblChain, NblId, NdisStatus, NetBuffer, NetBufferList, PoolTag, TcpConnectionState,
    TcpDelegatedState, TcpOffloadEvent, TcpOffloadState, TcpUploadReason,
};
use chimney::Instant;

use crate::abi::*;

/// BufferedData a terminate may hand back, at most (far above any receive window).
const MAX_BUFFERED_DATA: usize = 1 << 28;

/// Longest MDL or NBL chain the trampolines walk in a target's memory (a cycle stops here).
const MAX_CHAIN: usize = 1 << 16;

/// Why a foreign target could not be used: exit status 2 of `chimney check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError(pub String);

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LoadError {}

/// A loaded target library: its entry points, kept loaded while any target made from it lives.
#[derive(Clone)]
pub struct TargetLibrary {
    ops: ChimneyTargetOps,
    name: String,
    _lib: Option<Arc<libloading::Library>>,
}

impl core::fmt::Debug for TargetLibrary {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "TargetLibrary({})", self.name)
    }
}

impl TargetLibrary {
    /// Loads the shared library at `path` and reads its `chimney_target_ops` table.
    pub fn load(path: &Path) -> Result<TargetLibrary, LoadError> {
        // SAFETY: loading a library runs its initialisers; the user asked for this one to be
        // checked, which is running its code.
        let lib = unsafe { libloading::Library::new(path) }
            .map_err(|e| LoadError(format!("cannot load {}: {e}", path.display())))?;
        // SAFETY: the symbol is declared by the ABI with this signature (include/chimney.h).
        let entry: libloading::Symbol<'_, ChimneyTargetEntry> = unsafe { lib.get(CHIMNEY_TARGET_SYMBOL) }
            .map_err(|e| LoadError(format!("{}: no `chimney_target_ops` symbol ({e})", path.display())))?;
        // SAFETY: calling the entry point the ABI defines; it returns a pointer to a static table.
        let ops = unsafe { entry() };
        // SAFETY: `from_table` checks for NULL and reads the table the target exports.
        let mut t = unsafe { Self::from_table(ops) }?;
        t._lib = Some(Arc::new(lib));
        Ok(t)
    }

    /// Entry points linked into this program (a target compiled in, a test).
    ///
    /// # Safety
    /// `ops` is NULL or points to a valid, immutable table whose function pointers stay
    /// callable for the life of the program.
    pub unsafe fn from_table(ops: *const ChimneyTargetOps) -> Result<TargetLibrary, LoadError> {
        if ops.is_null() {
            return Err(LoadError("chimney_target_ops() returned NULL".into()));
        }
        // SAFETY: non-NULL, and valid by this function's contract.
        let ops = unsafe { ptr::read(ops) };
        if ops.abi_version != CHIMNEY_ABI_VERSION {
            return Err(LoadError(format!(
                "the target speaks ABI version {}; this chimney speaks {CHIMNEY_ABI_VERSION}",
                ops.abi_version
            )));
        }
        let name = if ops.name.is_null() {
            "unnamed target".to_string()
        } else {
            // SAFETY: a NUL-terminated string the target keeps alive (ABI contract).
            unsafe { CStr::from_ptr(ops.name) }.to_string_lossy().into_owned()
        };
        Ok(TargetLibrary { ops, name, _lib: None })
    }

    /// The target's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A fresh target instance with push time `push_ms`.
    pub fn instance(&self, push_ms: u32) -> Result<ForeignTarget, LoadError> {
        ForeignTarget::new(self.clone(), push_ms)
    }
}

/// A heap value at a fixed address that C holds pointers into. Unlike a `Box`, moving the
/// handle asserts nothing about the pointee, so those pointers stay valid; every access goes
/// through the one raw pointer.
pub(crate) struct Pinned<T>(NonNull<T>);

impl<T> Pinned<T> {
    pub(crate) fn new(v: T) -> Pinned<T> {
        Pinned(NonNull::from(Box::leak(Box::new(v))))
    }

    pub(crate) fn as_ptr(&self) -> *mut T {
        self.0.as_ptr()
    }
}

impl<T> std::ops::Deref for Pinned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: allocated by `new` and freed only in `drop`; C writes into it only inside
        // the calls that hand it the pointer, never while this reference is in use.
        unsafe { self.0.as_ref() }
    }
}

impl<T> Drop for Pinned<T> {
    fn drop(&mut self) {
        // SAFETY: allocated by `Box` in `new`, dropped once.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// A posted request handed to C: the Rust NBL (whose MDL memory the view points into) and the
/// view itself, at a stable heap address.
struct Posted {
    conn: ConnId,
    nbl: NetBufferList,
    view: Pinned<View>,
}

/// The C structs of one NBL: the NBL, its NB and its MDLs.
pub(crate) struct View {
    nbl: ChimneyNetBufferList,
    nb: ChimneyNetBuffer,
    mdls: Vec<ChimneyMdl>,
}

impl View {
    /// A view of `nbl` whose MDLs point into `nbl`'s memory (which must then stay put and
    /// untouched until the view is dropped).
    pub(crate) fn of(nbl: &mut NetBufferList) -> Pinned<View> {
        let mut info = [0; CHIMNEY_INFO_SLOTS];
        info[CHIMNEY_INFO_BYTES_TRANSFERRED] = nbl.tcp_offload_bytes_transferred();
        info[CHIMNEY_INFO_RECEIVE_NO_PUSH] = usize::from(nbl.tcp_receive_no_push());
        info[CHIMNEY_INFO_RECEIVE_BYTES_TRANSFERRED] = nbl.tcp_receive_bytes_transferred();
        let (status, miniport_reserved, protocol_reserved) =
            (nbl.status.code(), nbl.miniport_reserved, nbl.protocol_reserved);
        let nb = nbl.net_buffer_mut();
        let (off, len, cur, cur_off) = (nb.data_offset(), nb.data_length(), nb.current_mdl(), nb.current_mdl_offset());
        let mut mdls: Vec<ChimneyMdl> = nb
            .mdl_chain_mut()
            .iter_mut()
            .map(|m| ChimneyMdl {
                next: ptr::null_mut(),
                byte_count: m.byte_count() as u32,
                mapped_system_va: m.bytes_mut().as_mut_ptr(),
            })
            .collect();
        // Links through raw pointers only: the vector's buffer does not move after this.
        let n = mdls.len();
        let base = mdls.as_mut_ptr();
        for i in 0..n.saturating_sub(1) {
            // SAFETY: i + 1 < n: both within the vector's buffer.
            unsafe { (*base.add(i)).next = base.add(i + 1) };
        }
        let v = Pinned::new(View {
            nbl: ChimneyNetBufferList {
                next: ptr::null_mut(),
                first_net_buffer: ptr::null_mut(),
                status,
                info,
                miniport_reserved,
                protocol_reserved,
            },
            nb: ChimneyNetBuffer {
                next: ptr::null_mut(),
                mdl_chain: if n == 0 { ptr::null_mut() } else { base },
                // SAFETY: `cur` < n whenever the chain is not empty (NetBuffer's invariant).
                current_mdl: if cur < n { unsafe { base.add(cur) } } else { ptr::null_mut() },
                current_mdl_offset: cur_off as u32,
                data_offset: off as u32,
                data_length: len as u32,
            },
            mdls,
        });
        let p = v.as_ptr();
        // SAFETY: `p` is the view just allocated; its NB is a field of it.
        unsafe { (*p).nbl.first_net_buffer = ptr::addr_of_mut!((*p).nb) };
        v
    }

    /// Views of `nbls`, linked through `next` in order; `keep` stores each (its C NBL, the Rust
    /// NBL whose memory it shows, the view). Returns the head (NULL for an empty chain).
    pub(crate) fn chain(
        nbls: NblChain,
        mut keep: impl FnMut(*mut ChimneyNetBufferList, NetBufferList, Pinned<View>),
    ) -> *mut ChimneyNetBufferList {
        let (mut head, mut prev): (*mut ChimneyNetBufferList, *mut ChimneyNetBufferList) =
            (ptr::null_mut(), ptr::null_mut());
        let mut chain = nbls;
        while let Some(mut n) = chain.pop_front() {
            let view = View::of(&mut n);
            let p = View::nbl_ptr(&view);
            if prev.is_null() {
                head = p;
            } else {
                // SAFETY: `prev` is the NBL of the previous view, kept alive by `keep`.
                unsafe { (*prev).next = p };
            }
            prev = p;
            keep(p, n, view);
        }
        head
    }

    /// The C NBL of a pinned view.
    pub(crate) fn nbl_ptr(v: &Pinned<View>) -> *mut ChimneyNetBufferList {
        // SAFETY: a field address of a live allocation.
        unsafe { ptr::addr_of_mut!((*v.as_ptr()).nbl) }
    }
}

/// The trampolines' state, at a stable address handed to C as the host context.
struct Ctx {
    lib: TargetLibrary,
    target: Cell<*mut c_void>,
    /// The host of the entry point in progress; `None` between calls. Lifetime-erased: only
    /// read while that call's frame (which holds the `&mut`) is live.
    host: Cell<Option<NonNull<dyn ProtocolHost>>>,
    now: Cell<u64>,
    t: RefCell<Tables>,
    /// A panic caught in a trampoline (it may not unwind through C), re-raised when the entry
    /// point returns.
    panic: RefCell<Option<Box<dyn std::any::Any + Send>>>,
    /// Upcalls in progress, one inside the other (a target that completes from inside the
    /// post it got inside a completion nests them).
    depth: Cell<usize>,
    /// Host calls made inside upcalls nested deeper than [`MAX_NESTING`], served when the
    /// outermost upcall returns instead of at once.
    deferred: RefCell<Vec<NestedCalls>>,
    /// Connections with an upcall in progress from the target's point of view (until the
    /// trampoline returns to it, host calls made inside included), and which kind.
    in_upcall: RefCell<Vec<(ConnId, &'static str)>>,
    /// Upcalls made within the entry point in progress.
    upcalls: Cell<u64>,
    /// The target ran away (see [`MAX_UPCALLS_PER_CALL`]): upcalls are no longer passed on.
    runaway: Cell<bool>,
}

/// Marks an upcall in progress on a connection for as long as the trampoline runs; a second
/// upcall on the same connection meanwhile is nested (R-CMP-5), and when the first is a
/// completion whose host re-posted, re-entered (R-CMP-6).
struct UpcallGuard<'a> {
    ctx: &'a Ctx,
}

impl<'a> UpcallGuard<'a> {
    fn enter(ctx: &'a Ctx, conn: ConnId, kind: &'static str) -> UpcallGuard<'a> {
        let outer = ctx.in_upcall.borrow().iter().find(|(c, _)| *c == conn).map(|(_, k)| *k);
        if let Some(outer) = outer {
            let rule = if outer == "NdisTcpOffloadReceiveComplete" { &rules::R_CMP_6 } else { &rules::R_CMP_5 };
            ctx.report(
                rule,
                Some(conn),
                None,
                format!("{kind} made while the target's {outer} on this connection had not returned (from inside a call the host made within it)"),
            );
        }
        ctx.in_upcall.borrow_mut().push((conn, kind));
        ctx.depth.set(ctx.depth.get() + 1);
        UpcallGuard { ctx }
    }
}

impl Drop for UpcallGuard<'_> {
    fn drop(&mut self) {
        self.ctx.in_upcall.borrow_mut().pop();
        self.ctx.depth.set(self.ctx.depth.get() - 1);
    }
}

/// Upcalls nested deeper than this no longer re-enter the target at once: a target that
/// completes from inside every post would otherwise recurse until the stack overflows (the
/// verifier has reported the nesting by then, R-CMP-5/R-CMP-6).
const MAX_NESTING: usize = 8;

/// Upcalls one entry point may make (every call the host makes inside them included) before
/// the target is judged runaway: a target that answers each re-post with another completion
/// never returns. Far above what one call can legitimately need (a 64 KiB segment into 1-byte
/// requests re-posted from each completion: 65,536).
const MAX_UPCALLS_PER_CALL: u64 = 1_000_000;

/// Host calls waiting for the outermost upcall to return, at most.
const MAX_DEFERRED: usize = 10_000;

#[derive(Default)]
struct Tables {
    posted: HashMap<usize, Posted>,
    /// Target NBL address → its id, and back, for NBLs the host holds.
    target_ids: HashMap<usize, NblId>,
    target_addr: HashMap<NblId, usize>,
    serial: u64,
    aborted: std::collections::HashSet<ConnId>,
    /// The send half chimney plays for a receive-only target: a graceful disconnect is a bare
    /// FIN the TCP engine sends; its NBL completes when the FIN is acknowledged.
    fins: HashMap<ConnId, Fin>,
    /// Connections whose FIN was just asked for (the engine transmits it).
    send_ready: Vec<ConnId>,
    /// Disconnects the host made inside upcalls, for the engine to perform.
    nested_disconnects: Vec<(ConnId, DisconnectKind, NblChain)>,
    /// Sends the host made inside upcalls: ABI version 1 carries no send half.
    rejected_sends: Vec<PostRejected>,
    reporter: Option<Arc<VerifierCore>>,
    /// Violations found with no verifier to report them to.
    unreported: Vec<Violation>,
    /// Misbehaviour at the ABI itself (an upcall outside any call, an unknown event).
    abi_errors: Vec<String>,
    /// Views of the latest completed requests, kept allocated: a target that touches one
    /// after completing it writes into chimney's quarantine, not into reused memory, and a
    /// second completion of one is named as such.
    quarantine: std::collections::VecDeque<Pinned<View>>,
}

/// A graceful disconnect in progress.
struct Fin {
    /// The disconnect's NBL until it is completed (the entry stays: the FIN stays sent).
    nbl: Option<NblChain>,
    /// What the peer acknowledged (1 once it acknowledged the FIN).
    acked: u64,
}

/// Completed views kept in quarantine.
const QUARANTINE: usize = 4096;

impl Tables {
    fn quarantined(&self, addr: usize) -> bool {
        self.quarantine.iter().any(|v| View::nbl_ptr(v) as usize == addr)
    }
}

/// The host contexts alive now: a trampoline checks its `ctx` argument against this list
/// before using it.
static LIVE: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// A foreign target as a Rust [`OffloadTarget`], [`InitiateOffload`] and [`ReceiveInput`].
pub struct ForeignTarget {
    ctx: Pinned<Ctx>,
    /// The upcall table the target was created with: it must outlive the target (freed
    /// after `destroy`).
    _host_ops: Pinned<ChimneyHostOps>,
}

impl core::fmt::Debug for ForeignTarget {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "ForeignTarget({})", self.ctx.lib.name)
    }
}

impl ForeignTarget {
    fn new(lib: TargetLibrary, push_ms: u32) -> Result<ForeignTarget, LoadError> {
        let ctx = Pinned::new(Ctx {
            lib,
            target: Cell::new(ptr::null_mut()),
            host: Cell::new(None),
            now: Cell::new(0),
            t: RefCell::new(Tables::default()),
            panic: RefCell::new(None),
            depth: Cell::new(0),
            deferred: RefCell::new(Vec::new()),
            in_upcall: RefCell::new(Vec::new()),
            upcalls: Cell::new(0),
            runaway: Cell::new(false),
        });
        let ctx_ptr = ctx.as_ptr() as *mut c_void;
        let host_ops = Pinned::new(ChimneyHostOps {
            abi_version: CHIMNEY_ABI_VERSION,
            ctx: ctx_ptr,
            receive_complete: tramp_receive_complete,
            receive_indicate: tramp_receive_indicate,
            event_indicate: tramp_event_indicate,
        });
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).push(ctx_ptr as usize);
        let target = (ctx.lib.ops.create)(host_ops.as_ptr(), push_ms);
        let me = ForeignTarget { ctx, _host_ops: host_ops };
        if target.is_null() {
            return Err(LoadError(format!("{}: create() returned NULL", me.ctx.lib.name)));
        }
        me.ctx.target.set(target);
        Ok(me)
    }

    /// Reports what the trampolines find (an NBL completed twice, one never posted) to
    /// `core`, the verifier wrapped around this target.
    pub fn set_reporter(&mut self, core: Arc<VerifierCore>) {
        let mut t = self.ctx.t.borrow_mut();
        for v in t.unreported.drain(..) {
            core.report_external(v);
        }
        t.reporter = Some(core);
    }

    /// Misbehaviour at the ABI so far (an upcall made outside any entry point, an unknown
    /// event code): the target cannot be judged by the contract while these happen.
    pub fn abi_errors(&self) -> Vec<String> {
        self.ctx.t.borrow().abi_errors.clone()
    }

    /// Violations found with no reporter set.
    pub fn unreported(&self) -> Vec<Violation> {
        self.ctx.t.borrow().unreported.clone()
    }

    /// The target's name.
    pub fn name(&self) -> &str {
        &self.ctx.lib.name
    }

    fn ops(&self) -> &ChimneyTargetOps {
        &self.ctx.lib.ops
    }

    /// Runs `f` (a call into C) with `host` as the host of the upcalls it makes.
    fn with_host<R>(&self, now: Instant, host: &mut dyn ProtocolHost, f: impl FnOnce(*mut c_void) -> R) -> R {
        let r = self.ctx.enter(now.as_nanos(), host, || f(self.ctx.target.get()));
        self.ctx.rethrow();
        r
    }
}

impl Drop for ForeignTarget {
    fn drop(&mut self) {
        let target = self.ctx.target.replace(ptr::null_mut());
        if !target.is_null() {
            (self.ops().destroy)(target);
        }
        let me = self.ctx.as_ptr() as usize;
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).retain(|&c| c != me);
    }
}

impl Ctx {
    /// Posts `nbls` to C (also used for posts the host makes inside an upcall).
    fn post(&self, conn: ConnId, nbls: NblChain) -> Result<NdisStatus, PostRejected> {
        let (head, ids) = self.hand_out(conn, nbls);
        let r = (self.lib.ops.receive)(self.target.get(), self.now.get(), conn.0, head);
        match r {
            CHIMNEY_STATUS_PENDING => Ok(NdisStatus::Pending),
            other => {
                // The requests still in the table were not taken: they go back to the host.
                let back = self.take_back(&ids);
                match NdisStatus::from_code(other) {
                    Some(s) if back.is_empty() => Ok(s),
                    _ => Err(PostRejected { nbls: back, error: ApiMisuse::TargetRefused(other) }),
                }
            }
        }
    }

    fn enter<R>(&self, now: u64, host: &mut dyn ProtocolHost, f: impl FnOnce() -> R) -> R {
        // SAFETY: the erased pointer is only dereferenced by trampolines running inside `f`,
        // while this frame holds the `&mut` borrow; it is cleared before returning.
        let erased: NonNull<dyn ProtocolHost> = unsafe {
            std::mem::transmute::<NonNull<dyn ProtocolHost + '_>, NonNull<dyn ProtocolHost + 'static>>(NonNull::from(
                host,
            ))
        };
        let prev = self.host.replace(Some(erased));
        if prev.is_none() {
            self.upcalls.set(0);
        }
        self.now.set(now.max(self.now.get()));
        let r = f();
        self.host.set(prev);
        r
    }

    fn rethrow(&self) {
        if let Some(p) = self.panic.borrow_mut().take() {
            resume_unwind(p);
        }
    }

    fn report(&self, rule: &'static Rule, conn: Option<ConnId>, nbl: Option<NblId>, detail: String) {
        let v = Violation { rule, conn, nbl, detail };
        let reporter = self.t.borrow().reporter.clone();
        match reporter {
            Some(core) => core.report_external(v),
            None => self.t.borrow_mut().unreported.push(v),
        }
    }

    fn abi_error(&self, what: String) {
        self.t.borrow_mut().abi_errors.push(what);
    }

    /// The target is judged runaway: said once, and nothing more is passed to the host.
    fn run_away(&self, why: String) {
        if !self.runaway.replace(true) {
            self.abi_error(format!("runaway target: {why}"));
            self.deferred.borrow_mut().clear();
        }
    }

    /// Counts an upcall; false once the target has run away.
    fn may_upcall(&self) -> bool {
        let n = self.upcalls.get() + 1;
        self.upcalls.set(n);
        if n > MAX_UPCALLS_PER_CALL {
            self.run_away(format!("more than {MAX_UPCALLS_PER_CALL} upcalls within one call"));
        }
        !self.runaway.get()
    }

    /// Makes views of `nbls`, linked in order, records them; returns the head and their
    /// addresses.
    fn hand_out(&self, conn: ConnId, nbls: NblChain) -> (*mut ChimneyNetBufferList, Vec<usize>) {
        let mut t = self.t.borrow_mut();
        let mut addrs = Vec::with_capacity(nbls.len());
        let head = View::chain(nbls, |p, nbl, view| {
            addrs.push(p as usize);
            t.posted.insert(p as usize, Posted { conn, nbl, view });
        });
        (head, addrs)
    }

    /// Takes the views at `addrs` still in the table back into a Rust chain (a post refused).
    fn take_back(&self, addrs: &[usize]) -> NblChain {
        let mut t = self.t.borrow_mut();
        let mut out = NblChain::new();
        for a in addrs {
            if let Some(p) = t.posted.remove(a) {
                out.push_back(p.nbl);
            }
        }
        out
    }

    /// The Rust NBL behind a completed view, with what the target wrote copied in; the view
    /// goes to quarantine.
    fn settle(&self, conn: ConnId, p: Posted) -> NetBufferList {
        let (nbl, view) = self.settle_view(conn, p);
        let mut t = self.t.borrow_mut();
        if t.quarantine.len() == QUARANTINE {
            t.quarantine.pop_front();
        }
        t.quarantine.push_back(view);
        nbl
    }

    fn settle_view(&self, conn: ConnId, p: Posted) -> (NetBufferList, Pinned<View>) {
        let Posted { conn: posted_on, mut nbl, view } = p;
        let id = nbl.id();
        let v = &view.nbl;
        match NdisStatus::from_code(v.status) {
            Some(s) => nbl.status = s,
            None => {
                self.report(&rules::R_CMP_7, Some(conn), Some(id), format!("unknown status code {:#010x}", v.status));
                nbl.status = NdisStatus::Failure;
            }
        }
        nbl.set_tcp_offload_bytes_transferred(v.info[CHIMNEY_INFO_BYTES_TRANSFERRED]);
        nbl.miniport_reserved = v.miniport_reserved;
        nbl.protocol_reserved = v.protocol_reserved;
        if !ptr::eq(v.first_net_buffer, ptr::addr_of!(view.nb)) {
            self.report(&rules::R_ACC_1, Some(conn), Some(id), "FirstNetBuffer was replaced".into());
        }
        // The geometry: CurrentMdl / CurrentMdlOffset must agree with DataOffset.
        let nb = &view.nb;
        let mut before = 0usize;
        let mut found = false;
        for m in &view.mdls {
            if ptr::eq(m, nb.current_mdl) {
                found = before + nb.current_mdl_offset as usize == nb.data_offset as usize;
                break;
            }
            before += m.byte_count as usize;
        }
        let at_end = nb.current_mdl.is_null() && nb.data_length == 0;
        if !found && !at_end {
            self.report(
                &rules::R_ACC_1,
                Some(conn),
                Some(id),
                format!(
                    "CurrentMdl/CurrentMdlOffset ({}) disagree with DataOffset {}",
                    nb.current_mdl_offset, nb.data_offset
                ),
            );
        }
        if let Err(e) = nbl.net_buffer_mut().reset_used_space(nb.data_offset as usize, nb.data_length as usize) {
            self.report(&rules::R_ACC_1, Some(conn), Some(id), format!("data space outside the MDLs ({e})"));
        }
        let _ = posted_on;
        (nbl, view)
    }

    /// Reads a target NBL (its own memory) into a Rust NBL of the target pool with a stable
    /// id for its address, or reports why it cannot.
    fn read_target_nbl(
        &self,
        conn: Option<ConnId>,
        p: *mut ChimneyNetBufferList,
        rule: &'static Rule,
    ) -> Option<NetBufferList> {
        if p.is_null() {
            self.report(rule, conn, None, "a NULL NBL".into());
            return None;
        }
        if self.t.borrow().posted.contains_key(&(p as usize)) {
            self.report(rule, conn, None, "a posted request used as the target's own NBL".into());
            return None;
        }
        // SAFETY: a non-NULL NBL pointer from the target, which vouches for its own memory
        // (ABI contract); chimney's own views were excluded above.
        let nbl = unsafe { &*p };
        if nbl.first_net_buffer.is_null() {
            self.report(rule, conn, None, "an NBL without a NET_BUFFER".into());
            return None;
        }
        // SAFETY: as above, the target's NET_BUFFER.
        let nb = unsafe { &*nbl.first_net_buffer };
        let (off, len) = (nb.data_offset as usize, nb.data_length as usize);
        let mut bytes = Vec::with_capacity(len);
        let mut skip = off;
        let mut m = nb.mdl_chain;
        let mut steps = 0;
        while !m.is_null() && bytes.len() < len && steps < MAX_CHAIN {
            // SAFETY: an MDL of the target's chain.
            let mdl = unsafe { &*m };
            let n = mdl.byte_count as usize;
            if skip >= n {
                skip -= n;
            } else if !mdl.mapped_system_va.is_null() {
                let take = (n - skip).min(len - bytes.len());
                // SAFETY: the MDL describes `byte_count` readable bytes at `mapped_system_va`.
                let s = unsafe { std::slice::from_raw_parts(mdl.mapped_system_va.add(skip), take) };
                bytes.extend_from_slice(s);
                skip = 0;
            }
            m = mdl.next;
            steps += 1;
        }
        if bytes.len() < len {
            self.report(rule, conn, None, format!("DataOffset {off} + DataLength {len} run past the MDL chain"));
            return None;
        }
        let mut t = self.t.borrow_mut();
        let id = match t.target_ids.get(&(p as usize)) {
            Some(&id) => id,
            None => {
                t.serial += 1;
                let id = NblId::new(PoolTag::Target, t.serial);
                t.target_ids.insert(p as usize, id);
                id
            }
        };
        let mut out = NetBufferList::new(id, NetBuffer::new(vec![Mdl::from_bytes(bytes)]));
        out.status = NdisStatus::from_code(nbl.status).unwrap_or(NdisStatus::Failure);
        Some(out)
    }

    /// Serves the host calls made inside an upcall: they re-enter the target now, before the
    /// upcall returns to it (as NDIS does), in the order made.
    fn serve_nested(&self, nested: &mut NestedCalls) {
        if self.runaway.get() {
            return;
        }
        if self.depth.get() > MAX_NESTING {
            let mut d = self.deferred.borrow_mut();
            if d.len() >= MAX_DEFERRED {
                drop(d);
                self.run_away(format!(
                    "more than {MAX_DEFERRED} host calls wait behind upcalls nested {MAX_NESTING} deep"
                ));
                return;
            }
            d.push(std::mem::take(nested));
            return;
        }
        self.serve_nested_now(nested);
        if self.depth.get() <= 1 {
            loop {
                let more = std::mem::take(&mut *self.deferred.borrow_mut());
                if more.is_empty() {
                    break;
                }
                for mut n in more {
                    self.serve_nested_now(&mut n);
                }
            }
        }
    }

    fn serve_nested_now(&self, nested: &mut NestedCalls) {
        let posts: Vec<(ConnId, NblChain)> = nested.drain_posts().collect();
        for (conn, nbls) in posts {
            if let Err(rej) = self.post(conn, nbls) {
                self.report(
                    &rules::R_POST_2,
                    Some(conn),
                    rej.nbls.front().map(|n| n.id()),
                    format!("a post made inside an upcall refused ({})", rej.error),
                );
            }
        }
        let returns = nested.take_returns();
        if !returns.is_empty() {
            self.return_to_target(returns);
        }
        let mut t = self.t.borrow_mut();
        for (_, nbls) in nested.drain_sends() {
            t.rejected_sends.push(PostRejected { nbls, error: ApiMisuse::SendUnsupported });
        }
        t.nested_disconnects.extend(nested.drain_disconnects());
    }

    /// Completes `conn`'s graceful disconnect, if one is pending, with `status`.
    /// Made inside an entry point (the host is the call's).
    fn end_fin(&self, conn: ConnId, status: NdisStatus) {
        let nbl = self.t.borrow_mut().fins.get_mut(&conn).and_then(|f| f.nbl.take());
        if let Some(nbl) = nbl {
            let mut nested = NestedCalls::new();
            upcall(self, "NdisTcpOffloadDisconnectComplete", (), |h| {
                h.disconnect_complete(conn, nbl, status, &mut nested)
            });
            self.serve_nested(&mut nested);
        }
    }

    /// Hands host-held target NBLs back through `receive_return`.
    fn return_to_target(&self, nbls: NblChain) -> u32 {
        let mut addrs = Vec::new();
        {
            let mut t = self.t.borrow_mut();
            for n in nbls.iter() {
                if let Some(a) = t.target_addr.remove(&n.id()) {
                    addrs.push(a);
                }
            }
        }
        if addrs.is_empty() {
            return CHIMNEY_STATUS_SUCCESS;
        }
        for w in addrs.windows(2) {
            // SAFETY: target NBLs the host owns until this call: the host links them (NDIS).
            unsafe { (*(w[0] as *mut ChimneyNetBufferList)).next = w[1] as *mut ChimneyNetBufferList };
        }
        let last = *addrs.last().unwrap_or(&0);
        // SAFETY: as above.
        unsafe { (*(last as *mut ChimneyNetBufferList)).next = ptr::null_mut() };
        (self.lib.ops.receive_return)(self.target.get(), self.now.get(), addrs[0] as *mut ChimneyNetBufferList)
    }
}

/// The context of a trampoline call, if `ctx` is a live one and a call is in progress.
fn live_ctx<'a>(ctx: *mut c_void) -> Option<&'a Ctx> {
    let ok = LIVE.lock().unwrap_or_else(|e| e.into_inner()).contains(&(ctx as usize));
    // SAFETY: `ctx` is the address of a `Ctx` that is still alive (registered until its
    // target is dropped, and only dropped after `destroy`).
    ok.then(|| unsafe { &*(ctx as *const Ctx) })
}

/// Runs `f` with the call's host, catching a panic (it may not unwind into C).
fn upcall<R>(ctx: &Ctx, what: &str, fallback: R, f: impl FnOnce(&mut dyn ProtocolHost) -> R) -> R {
    if !ctx.may_upcall() {
        return fallback;
    }
    let Some(mut host) = ctx.host.get() else {
        ctx.abi_error(format!("{what} made outside any entry point (upcalls are made from inside a call)"));
        return fallback;
    };
    // Nested upcalls (a completion inside an indication) reuse the same host pointer; the
    // verifier behind it reports the nesting (R-CMP-5).
    let r = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: set by `Ctx::enter` from a `&mut` held by a live frame below us.
        f(unsafe { host.as_mut() })
    }));
    match r {
        Ok(v) => v,
        Err(p) => {
            *ctx.panic.borrow_mut() = Some(p);
            fallback
        }
    }
}

extern "C" fn tramp_receive_complete(ctx: *mut c_void, conn: u32, nbls: *mut ChimneyNetBufferList) {
    let Some(ctx) = live_ctx(ctx) else { return };
    let conn = ConnId(conn);
    let _g = UpcallGuard::enter(ctx, conn, "NdisTcpOffloadReceiveComplete");
    let mut chain = NblChain::new();
    let mut p = nbls;
    let mut steps = 0;
    while !p.is_null() && steps < MAX_CHAIN {
        let entry = ctx.t.borrow_mut().posted.remove(&(p as usize));
        let Some(entry) = entry else {
            let (own, done) = {
                let t = ctx.t.borrow();
                (t.target_ids.contains_key(&(p as usize)), t.quarantined(p as usize))
            };
            let what = if own {
                "an NBL of the target's own pool completed as a request"
            } else if done {
                "a request completed a second time"
            } else {
                "an NBL chimney never posted"
            };
            ctx.report(&rules::R_CMP_2, Some(conn), None, format!("{what} (at {p:p})"));
            break;
        };
        let next = entry.view.nbl.next;
        chain.push_back(ctx.settle(conn, entry));
        p = next;
        steps += 1;
    }
    if chain.is_empty() && nbls.is_null() {
        ctx.report(&rules::R_CMP_2, Some(conn), None, "NdisTcpOffloadReceiveComplete with a NULL chain".into());
        return;
    }
    if chain.is_empty() {
        return;
    }
    let mut nested = NestedCalls::new();
    upcall(ctx, "NdisTcpOffloadReceiveComplete", (), |h| h.receive_complete(conn, chain, &mut nested));
    ctx.serve_nested(&mut nested);
}

extern "C" fn tramp_receive_indicate(
    ctx: *mut c_void,
    conn: u32,
    nbl: *mut ChimneyNetBufferList,
    status: u32,
    bytes_consumed: *mut u32,
) -> u32 {
    let Some(ctx) = live_ctx(ctx) else { return CHIMNEY_STATUS_DATA_NOT_ACCEPTED };
    let conn = ConnId(conn);
    let _g = UpcallGuard::enter(ctx, conn, "NdisTcpOffloadReceiveHandler");
    let Some(rust) = ctx.read_target_nbl(Some(conn), nbl, &rules::R_IND_3) else {
        return CHIMNEY_STATUS_DATA_NOT_ACCEPTED;
    };
    // SAFETY: `nbl` was read above: a valid target NBL.
    if !unsafe { (*nbl).next }.is_null() {
        ctx.report(&rules::R_IND_3, Some(conn), Some(rust.id()), "an indication's Next is not NULL".into());
    }
    if bytes_consumed.is_null() {
        ctx.report(&rules::R_IND_5, Some(conn), Some(rust.id()), "BytesConsumed is NULL".into());
        return CHIMNEY_STATUS_DATA_NOT_ACCEPTED;
    }
    let (id, len) = (rust.id(), rust.net_buffer().data_length());
    let st = NdisStatus::from_code(status).unwrap_or(NdisStatus::Failure);
    let mut nested = NestedCalls::new();
    let r = upcall(ctx, "NdisTcpOffloadReceiveHandler", None, |h| {
        Some(h.receive_indicate(conn, NblChain::single(rust), st, &mut nested))
    });
    let (code, consumed) = match r {
        Some(IndicateReturn::Success) => {
            let mut t = ctx.t.borrow_mut();
            t.target_addr.insert(id, nbl as usize);
            (CHIMNEY_STATUS_SUCCESS, len)
        }
        Some(IndicateReturn::PartiallyAccepted { bytes_consumed: k, .. }) => {
            (CHIMNEY_STATUS_DATA_PARTIALLY_ACCEPTED, k)
        }
        Some(IndicateReturn::NotAccepted(_)) | None => (CHIMNEY_STATUS_DATA_NOT_ACCEPTED, 0),
    };
    // SAFETY: the target's non-NULL out pointer.
    unsafe { *bytes_consumed = consumed as u32 };
    ctx.serve_nested(&mut nested);
    code
}

extern "C" fn tramp_event_indicate(ctx: *mut c_void, conn: u32, event: u32, specific: u32) {
    let Some(ctx) = live_ctx(ctx) else { return };
    let conn = ConnId(conn);
    let _g = UpcallGuard::enter(ctx, conn, "NdisTcpOffloadEventHandler");
    let ev = match event {
        1 => TcpOffloadEvent::SendBacklogChange(specific),
        CHIMNEY_EVENT_DISCONNECT => TcpOffloadEvent::Disconnect,
        CHIMNEY_EVENT_ABORT => TcpOffloadEvent::Abort,
        CHIMNEY_EVENT_RETRIEVE => match TcpUploadReason::from_code(u64::from(specific)) {
            Some(r) => TcpOffloadEvent::Retrieve(r),
            None => {
                ctx.abi_error(format!("{conn}: TcpIndicateRetrieve with unknown reason {specific}"));
                return;
            }
        },
        other => {
            ctx.abi_error(format!("{conn}: unknown event {other}"));
            return;
        }
    };
    let mut nested = NestedCalls::new();
    upcall(ctx, "NdisTcpOffloadEventHandler", (), |h| h.event_indicate(conn, ev, &mut nested));
    ctx.serve_nested(&mut nested);
}

/// The `specific` argument of an event as the ABI carries it: the upload reason, the backlog.
pub(crate) fn event_specific(event: TcpOffloadEvent) -> u32 {
    match event {
        TcpOffloadEvent::Retrieve(r) => r as u32,
        TcpOffloadEvent::SendBacklogChange(n) => n,
        _ => 0,
    }
}

fn deadline(v: u64) -> Option<Instant> {
    (v != CHIMNEY_NO_DEADLINE).then(|| Instant::from_nanos(v))
}

fn status_result(conn: ConnId, code: u32) -> Result<(), ApiMisuse> {
    match code {
        CHIMNEY_STATUS_SUCCESS => Ok(()),
        CHIMNEY_STATUS_INVALID_STATE => Err(ApiMisuse::NotReceiving(conn)),
        other => Err(ApiMisuse::TargetRefused(other)),
    }
}

impl OffloadTarget for ForeignTarget {
    fn receive(
        &mut self,
        now: Instant,
        conn: ConnId,
        nbls: NblChain,
        host: &mut dyn ProtocolHost,
    ) -> Result<NdisStatus, PostRejected> {
        self.with_host(now, host, |_| self.ctx.post(conn, nbls))
    }

    fn receive_return(&mut self, now: Instant, nbls: NblChain, host: &mut dyn ProtocolHost) -> NdisStatus {
        let code = self.with_host(now, host, |_| self.ctx.return_to_target(nbls));
        NdisStatus::from_code(code).unwrap_or(NdisStatus::Failure)
    }

    fn disconnect(
        &mut self,
        now: Instant,
        conn: ConnId,
        kind: DisconnectKind,
        nbl: NblChain,
        host: &mut dyn ProtocolHost,
    ) -> Result<NdisStatus, PostRejected> {
        if kind == DisconnectKind::Graceful {
            // No data: this ABI has no send half. A bare FIN is the TCP engine's to send.
            if nbl.iter().any(|n| n.data_length() > 0) {
                return Err(PostRejected { nbls: nbl, error: ApiMisuse::SendUnsupported });
            }
            if self.ctx.t.borrow().fins.contains_key(&conn) {
                return Err(PostRejected { nbls: nbl, error: ApiMisuse::SendClosed(conn) });
            }
            if self.ctx.t.borrow().aborted.contains(&conn) {
                let mut nested = NestedCalls::new();
                host.disconnect_complete(conn, nbl, NdisStatus::RequestAborted, &mut nested);
                self.with_host(now, host, |_| self.ctx.serve_nested(&mut nested));
                return Ok(NdisStatus::Pending);
            }
            let mut t = self.ctx.t.borrow_mut();
            t.fins.insert(conn, Fin { nbl: Some(nbl), acked: 0 });
            t.send_ready.push(conn);
            return Ok(NdisStatus::Pending);
        }
        let already = self.ctx.t.borrow().aborted.contains(&conn);
        let ops = *self.ops();
        let code = self.with_host(now, host, |t| (ops.abortive_disconnect)(t, now.as_nanos(), conn.0));
        if let Err(error) = status_result(conn, code) {
            return Err(PostRejected { nbls: nbl, error });
        }
        self.ctx.t.borrow_mut().aborted.insert(conn);
        self.with_host(now, host, |_| self.ctx.end_fin(conn, NdisStatus::RequestAborted));
        // The RST is the TCP engine's: the disconnect completes once the target stopped.
        let status = if already { NdisStatus::RequestAborted } else { NdisStatus::Success };
        let mut nested = NestedCalls::new();
        host.disconnect_complete(conn, nbl, status, &mut nested);
        self.with_host(now, host, |_| self.ctx.serve_nested(&mut nested));
        Ok(NdisStatus::Pending)
    }

    fn terminate_offload(
        &mut self,
        now: Instant,
        conn: ConnId,
        host: &mut dyn ProtocolHost,
    ) -> Result<TcpDelegatedState, ApiMisuse> {
        // The send half ends first: a pending graceful disconnect completes UPLOAD_IN_PROGRESS.
        self.with_host(now, host, |_| self.ctx.end_fin(conn, NdisStatus::UploadInProgress));
        let mut out = ChimneyDelegatedState { state: 0, rcv_nxt: 0, buffered_data: ptr::null_mut() };
        let ops = *self.ops();
        let code = self.with_host(now, host, |t| (ops.terminate_offload)(t, now.as_nanos(), conn.0, &mut out));
        status_result(conn, code)?;
        let mut buffered = NblChain::new();
        let mut p = out.buffered_data;
        let mut seen = std::collections::HashSet::new();
        let mut bytes = 0usize;
        while !p.is_null() {
            if !seen.insert(p as usize) || bytes > MAX_BUFFERED_DATA {
                self.ctx.report(
                    &rules::R_TRM_3,
                    Some(conn),
                    None,
                    format!("BufferedData loops or runs past {MAX_BUFFERED_DATA} bytes"),
                );
                break;
            }
            let Some(n) = self.ctx.read_target_nbl(Some(conn), p, &rules::R_TRM_3) else { break };
            bytes += n.net_buffer().data_length();
            self.ctx.t.borrow_mut().target_addr.insert(n.id(), p as usize);
            buffered.push_back(n);
            // SAFETY: read above: a valid target NBL.
            p = unsafe { (*p).next };
        }
        {
            let mut t = self.ctx.t.borrow_mut();
            t.aborted.remove(&conn);
            t.fins.remove(&conn);
        }
        Ok(TcpDelegatedState {
            state: TcpConnectionState::from_code(u64::from(out.state)),
            rcv_nxt: out.rcv_nxt,
            buffered_data: buffered,
            ..TcpDelegatedState::default()
        })
    }

    fn handle_timeout(&mut self, now: Instant, host: &mut dyn ProtocolHost) {
        let ops = *self.ops();
        self.with_host(now, host, |t| (ops.handle_timeout)(t, now.as_nanos()));
    }

    fn poll_timeout(&self) -> Option<Instant> {
        deadline((self.ops().poll_timeout)(self.ctx.target.get()))
    }

    fn push_timer(&self, conn: ConnId) -> Option<Instant> {
        deadline((self.ops().push_timer)(self.ctx.target.get(), conn.0))
    }
}

impl InitiateOffload for ForeignTarget {
    fn initiate_offload(
        &mut self,
        now: Instant,
        conn: ConnId,
        mut state: TcpOffloadState,
        host: &mut dyn ProtocolHost,
    ) -> Result<NblChain, InitiateFailed> {
        // BufferedData is the host's: viewed for the call, taken back after it.
        let buffered = state.delegated.buffered_data.take();
        let (head, addrs) = self.ctx.hand_out(conn, buffered);
        let c = ChimneyOffloadState {
            local_port: state.constant.local_port,
            remote_port: state.constant.remote_port,
            initial_rcv_wnd: state.cached.initial_rcv_wnd,
            rcv_indication_size: state.cached.rcv_indication_size,
            state: state.delegated.state.map_or(CHIMNEY_TCP_ESTABLISHED, |s| s as u32),
            rcv_nxt: state.delegated.rcv_nxt,
            buffered_data: head,
        };
        let ops = *self.ops();
        let code = self.with_host(now, host, |t| (ops.initiate_offload)(t, now.as_nanos(), conn.0, &c));
        let back = self.ctx.take_back(&addrs);
        if code == CHIMNEY_STATUS_SUCCESS {
            let mut t = self.ctx.t.borrow_mut();
            t.aborted.remove(&conn);
            t.fins.remove(&conn);
            return Ok(back);
        }
        state.delegated.buffered_data = back;
        Err(InitiateFailed {
            status: NdisStatus::from_code(code).unwrap_or(NdisStatus::Failure),
            error: Some(ApiMisuse::TargetRefused(code)),
            state: Box::new(state),
        })
    }
}

impl ReceiveInput for ForeignTarget {
    fn receive_data(
        &mut self,
        now: Instant,
        conn: ConnId,
        data: &[u8],
        psh: bool,
        host: &mut dyn ProtocolHost,
    ) -> Result<(), ApiMisuse> {
        let ops = *self.ops();
        let code = self
            .with_host(now, host, |t| (ops.receive_data)(t, now.as_nanos(), conn.0, data.as_ptr(), data.len(), psh));
        status_result(conn, code)
    }

    fn receive_fin(&mut self, now: Instant, conn: ConnId, host: &mut dyn ProtocolHost) -> Result<(), ApiMisuse> {
        let ops = *self.ops();
        let code = self.with_host(now, host, |t| (ops.receive_fin)(t, now.as_nanos(), conn.0));
        status_result(conn, code)
    }

    fn receive_rst(&mut self, now: Instant, conn: ConnId, host: &mut dyn ProtocolHost) -> Result<(), ApiMisuse> {
        let ops = *self.ops();
        let code = self.with_host(now, host, |t| (ops.receive_rst)(t, now.as_nanos(), conn.0));
        self.ctx.t.borrow_mut().aborted.insert(conn);
        self.with_host(now, host, |_| self.ctx.end_fin(conn, NdisStatus::RequestAborted));
        status_result(conn, code)
    }

    fn receive_space(&self, conn: ConnId) -> usize {
        (self.ops().receive_space)(self.ctx.target.get(), conn.0)
    }

    fn receive_window(&self, conn: ConnId) -> usize {
        self.receive_space(conn)
    }

    fn indicate_event(
        &mut self,
        now: Instant,
        conn: ConnId,
        event: TcpOffloadEvent,
        host: &mut dyn ProtocolHost,
    ) -> Result<(), ApiMisuse> {
        let Some(entry) = self.ops().tcp_event else {
            return Err(ApiMisuse::TcpEventsUnsupported);
        };
        let specific = event_specific(event);
        let code = self.with_host(now, host, |t| entry(t, now.as_nanos(), conn.0, event.event_type(), specific));
        status_result(conn, code)
    }
}

/// The send half chimney plays for a receive-only target: no data, a graceful disconnect's
/// FIN (sent by the TCP engine), completed when the peer acknowledges it.
impl SendInput for ForeignTarget {
    fn send_stream(&self, conn: ConnId) -> SendStream {
        let t = self.ctx.t.borrow();
        let fin = t.fins.get(&conn);
        SendStream {
            acked: fin.map_or(0, |f| f.acked),
            posted: 0,
            fin: fin.is_some(),
            closed: t.aborted.contains(&conn),
        }
    }

    fn send_acked(
        &mut self,
        now: Instant,
        conn: ConnId,
        upto: u64,
        host: &mut dyn ProtocolHost,
    ) -> Result<(), ApiMisuse> {
        let done = match self.ctx.t.borrow_mut().fins.get_mut(&conn) {
            Some(f) => {
                f.acked = f.acked.max(upto);
                upto >= 1
            }
            None => false,
        };
        if done {
            self.with_host(now, host, |_| self.ctx.end_fin(conn, NdisStatus::Success));
        }
        Ok(())
    }

    fn take_send_ready(&mut self, out: &mut Vec<ConnId>) {
        out.append(&mut self.ctx.t.borrow_mut().send_ready);
    }

    fn take_nested_disconnects(&mut self, out: &mut Vec<(ConnId, DisconnectKind, NblChain)>) {
        out.append(&mut self.ctx.t.borrow_mut().nested_disconnects);
    }

    fn take_rejected_sends(&mut self) -> Vec<PostRejected> {
        std::mem::take(&mut self.ctx.t.borrow_mut().rejected_sends)
    }
}

impl chimney::testkit::conformance::Candidate for ForeignTarget {
    fn attach(&mut self, core: &Arc<VerifierCore>) {
        self.set_reporter(Arc::clone(core));
    }

    fn abi_errors(&self) -> Vec<String> {
        ForeignTarget::abi_errors(self)
    }

    /// What the verifier counts as fed and not delivered: the target cannot be asked.
    fn receive_backlog(&self, conn: ConnId) -> usize {
        self.ctx.t.borrow().reporter.as_ref().map_or(0, |c| c.undelivered(conn))
    }
}
