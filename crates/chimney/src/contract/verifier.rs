//! The contract verifier: a wrapper that sits between any target and any host, implements both
//! interfaces, forwards every call and checks it against [`super::rules::RULES`].
//!
//! ```text
//!   host ──post/return/initiate/terminate/timeout──► Verifier<T> ──► T (any target)
//!   host ◄──complete/indicate/event── VerifyingHost ◄──────────────── T
//!                        both halves share one VerifierCore (Mutex, per-connection state)
//! ```
//!
//! The checks live in [`VerifierCore`], whose methods take `&self` and keep per-connection
//! state behind a mutex (never held across a call into the host or target), so a target that
//! calls upcalls from several threads is checked too: overlapping upcalls on one connection
//! are caught by an in-flight flag, not by the borrow checker.
//!
//! The verifier also checks the stream: every byte delivered (completions plus consumed
//! indications, in delivery order) is compared with the bytes fed to the target.

use std::collections::VecDeque;

/// Maps keyed by ids: ahash with fixed seeds (fast, and the same iteration order every run).
type HashMap<K, V> = std::collections::HashMap<K, V, FixedState>;
type HashSet<K> = std::collections::HashSet<K, FixedState>;

/// `ahash` with fixed seeds as a `BuildHasher` that is `Default`.
#[derive(Clone, Copy, Default)]
struct FixedState;

impl std::hash::BuildHasher for FixedState {
    type Hasher = ahash::AHasher;
    fn build_hasher(&self) -> ahash::AHasher {
        ahash::RandomState::with_seeds(0x243F_6A88, 0x85A3_08D3, 0x1319_8A2E, 0x0370_7344).build_hasher()
    }
}
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::ThreadId;

use super::ambiguity;
use super::rules::{self, Rule};
use super::send_check::{Finding, SendCheck};
use super::{
    ApiMisuse, ConnId, IndicateReturn, InitiateFailed, InitiateOffload, NestedCalls, OffloadTarget, PostRejected,
    ProtocolHost, ReceiveInput, SendInput, SendStream,
};
use crate::ndis::{
    DisconnectKind, NblChain, NblId, NdisStatus, NetBufferList, PoolTag, TcpDelegatedState, TcpOffloadEvent,
    TcpOffloadState,
};
use crate::time::Instant;

/// Value the verifier writes into slot 0 of every posted NBL: a target that completes without
/// writing TcpOffloadBytesTransferred leaves it there (R-CMP-7).
const UNWRITTEN: usize = usize::MAX;

/// What to do on a violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifierMode {
    /// Panic with the violation on the first one (tests).
    Strict,
    /// Record every violation; read them with [`VerifierCore::violations`].
    Collect,
}

/// One broken rule: which, where, and a one-line explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The rule broken.
    pub rule: &'static Rule,
    /// The connection, when the call names one.
    pub conn: Option<ConnId>,
    /// The NBL involved, if any.
    pub nbl: Option<NblId>,
    /// What was seen.
    pub detail: String,
}

impl core::fmt::Display for Violation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.rule.id)?;
        if let Some(c) = self.conn {
            write!(f, " {c}")?;
        }
        if let Some(n) = self.nbl {
            write!(f, " {n}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upcall {
    Complete,
    Indicate,
    Event,
    SendComplete,
    DisconnectComplete,
}

#[derive(Debug, Clone)]
struct PostRec {
    /// This post's number on its connection: an NBL posted again is a new request, with
    /// new obligations.
    seq: u64,
    /// Posted after the target requested an upload (R-TRM-7).
    after_upload: bool,
    /// Bytes fed when it was posted, and whether some were waiting (a zero-byte request
    /// completes only once data was available, R-POST-10).
    fed_at_post: u64,
    waiting_at_post: bool,
    id: NblId,
    cap: usize,
    offset0: usize,
    no_push: bool,
    prefilled: usize,
    nested: bool,
    after_disconnect: bool,
}

#[derive(Debug, Default)]
struct ConnCheck {
    offloaded: bool,
    upcall: Option<(Upcall, ThreadId)>,
    outstanding: VecDeque<PostRec>,
    pending: VecDeque<u8>,
    fed: u64,
    delivered: u64,
    psh_mark: u64,
    last_chunk_start: u64,
    offload_buffered_end: u64,
    refused_end: u64,
    rcv_nxt_offload: u32,
    fin: bool,
    /// Offloaded in CLOSE_WAIT: the FIN came before the offload, and the delegated RcvNxt
    /// already counts it.
    fin_at_offload: bool,
    /// After an acceptable RST or an abortive disconnect: the bytes that may still be
    /// delivered, those the outstanding requests could hold when it came (placed before it;
    /// nothing else is delivered: R-RST-1, R-ABT-1).
    end_allowance: Option<u64>,
    /// Something was posted since the offload.
    posted_since_offload: bool,
    /// When the push timer was last started or restarted, as the contract has it: by data
    /// received, by a post that starts it, by a completion leaving data for the next
    /// request (None: nothing for it to time).
    push_ref: Option<Instant>,
    /// The push timer start an overdue report was made for (one report per start).
    push_overdue_for: Option<Instant>,
    /// The target requested an upload (TcpIndicateRetrieve), and why.
    upload_requested: Option<crate::ndis::TcpUploadReason>,
    /// A stream mismatch was reported: the refused-indication comparison stands down, since
    /// what it would find is this fault again.
    stream_broken: bool,
    rst: bool,
    abortive: bool,
    terminating: bool,
    disconnect_indicated: bool,
    abort_indicated: bool,
    refused_since_post: bool,
    /// The send half (R-SND-*, R-DSC-*).
    send: SendCheck,
    /// What the target owes the host on this connection, since when (obligations that a
    /// target may meet from a worker after the call returns).
    owed: Vec<Owed>,
    /// Requests posted so far (numbers them, [`PostRec::seq`]).
    posts: u64,
    /// The offload's RcvIndicationSize was non-zero: a target may keep the rest of a capped
    /// indication for the host's post (R-IND-10).
    capped_indications: bool,
}

/// Something the target owes after a call returned: a completion, an indication, an event.
/// The contract advises deferring upcalls to a worker, so an obligation is a violation only
/// once it has stood [`DEFER_TOLERANCE`] at a timer call, or at terminate, or when the run
/// ends.
#[derive(Debug, Clone)]
struct Owed {
    rule: &'static Rule,
    nbl: Option<NblId>,
    /// Which obligation: the request it concerns ([`PostRec::seq`]), or for one that concerns
    /// no request the bytes delivered when it arose (progress makes it a new one).
    key: u64,
    detail: String,
    /// When it was first seen owed.
    since: Instant,
    /// Reported already (once per obligation).
    reported: bool,
    /// A departure from chimney's own choice where the contract leaves the point open: a note.
    note: bool,
}

/// When obligations are judged: at a call's end (recorded only), after a timer call or at
/// terminate (those older than [`DEFER_TOLERANCE`]), or at the end of the run (all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Judge {
    Record,
    Due,
    End,
}

#[derive(Debug, Default)]
struct CoreState {
    conns: HashMap<ConnId, ConnCheck>,
    terminated: HashSet<ConnId>,
    host_owned: HashSet<NblId>,
    touched: Vec<ConnId>,
    in_timeout: bool,
    violations: Vec<Violation>,
    notes: Vec<Violation>,
    checked_bytes: u64,
    /// The target's push timer cannot be asked (an offline trace without timer lines):
    /// R-CMP-9 and the terminate timer check are skipped.
    push_timer_unknown: bool,
    /// Disconnects complete nothing ([`VerifierCore::set_untracked_disconnects`]).
    untracked_disconnects: bool,
    /// The time of the call in progress (the last `now` a call brought).
    now: Instant,
    /// The target's push time (TcpPushTicks; 500 ms unless set): the push timer may not
    /// complete a request earlier than this after it was started or restarted.
    push_timeout: Option<std::time::Duration>,
}

/// How much earlier than its push time a push timer may fire (timer granularity: one tick).
pub const PUSH_EARLY_TOLERANCE: std::time::Duration = std::time::Duration::from_millis(1);

/// How much later than its push time a push timer may fire: a target completes from a worker
/// or a timer wheel, and a driver's timer call comes when its thread gets the CPU.
pub const PUSH_LATE_TOLERANCE: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a target may owe an upcall after the call that made it due returned: the contract
/// advises completing from a worker (a DPC) rather than inside the host's call, and a worker
/// runs within milliseconds; a quarter second leaves room for a loaded machine and stays
/// below the push time, the contract's own measure of holding data too long.
pub const DEFER_TOLERANCE: std::time::Duration = std::time::Duration::from_millis(250);

/// Per-call accumulator of violations (and of notes: departures from chimney's own choices
/// where the contract leaves the point open), reported when the lock is released.
#[derive(Default)]
struct Found {
    v: Vec<Violation>,
    notes: Vec<Violation>,
}

impl Found {
    fn add(&mut self, rule: &'static Rule, conn: Option<ConnId>, nbl: Option<NblId>, detail: impl Into<String>) {
        self.v.push(Violation { rule, conn, nbl, detail: detail.into() });
    }

    /// A note, not a violation: the target departs from chimney's own choice on a point the
    /// contract leaves open or states without condition.
    fn note(&mut self, rule: &'static Rule, conn: Option<ConnId>, nbl: Option<NblId>, detail: impl Into<String>) {
        self.notes.push(Violation { rule, conn, nbl, detail: detail.into() });
    }
}

/// The verifier's state and checks, shareable across threads.
#[derive(Debug)]
pub struct VerifierCore {
    mode: VerifierMode,
    state: Mutex<CoreState>,
}

/// Whether `dq` holds `bytes` at position `at` (false when they would run past its end).
pub(super) fn deque_eq_at(dq: &VecDeque<u8>, at: usize, bytes: &[u8]) -> bool {
    if at + bytes.len() > dq.len() {
        return false;
    }
    let (a, b) = dq.as_slices();
    let mut pos = at;
    let mut rest = bytes;
    for seg in [a, b] {
        if rest.is_empty() {
            break;
        }
        if pos >= seg.len() {
            pos -= seg.len();
            continue;
        }
        let n = (seg.len() - pos).min(rest.len());
        if seg[pos..pos + n] != rest[..n] {
            return false;
        }
        rest = &rest[n..];
        pos = 0;
    }
    rest.is_empty()
}

fn nbl_bytes(nbl: &NetBufferList, start: usize, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    nbl.net_buffer().copy_out(start, len, &mut v);
    v
}

impl ConnCheck {
    /// Starts the after-the-end budget (RST or abortive disconnect): the undelivered bytes
    /// the outstanding requests could hold.
    fn end_stream(&mut self) {
        let room: u64 = self.outstanding.iter().map(|r| r.cap as u64).sum();
        let can = room.min(self.pending.len() as u64);
        self.end_allowance = Some(self.end_allowance.map_or(can, |a| a.min(can)));
    }
}

impl VerifierCore {
    /// A verifier core in `mode`.
    pub fn new(mode: VerifierMode) -> VerifierCore {
        let state = CoreState { push_timeout: Some(std::time::Duration::from_millis(500)), ..CoreState::default() };
        VerifierCore { mode, state: Mutex::new(state) }
    }

    fn lock(&self) -> MutexGuard<'_, CoreState> {
        // A panicking strict check never holds the lock; recover from poisoning anyway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn report(&self, found: Found) {
        if !found.notes.is_empty() {
            self.lock().notes.extend(found.notes);
        }
        if found.v.is_empty() {
            return;
        }
        if self.mode == VerifierMode::Strict {
            let first = &found.v[0];
            self.lock().violations.extend(found.v.iter().cloned());
            panic!("contract violation: {first}");
        }
        self.lock().violations.extend(found.v);
    }

    /// After a timer call: a partially filled push-mode request still outstanding more than its
    /// push time plus [`PUSH_LATE_TOLERANCE`] after the timer last started is overdue (R-CMP-4),
    /// reported once per start.
    fn check_push_overdue(&self, now: Instant) {
        let mut f = Found::default();
        {
            let mut st = self.lock();
            let Some(push) = st.push_timeout else { return };
            for (&conn, c) in st.conns.iter_mut() {
                let head_partial_push = c.outstanding.front().is_some_and(|h| {
                    !h.no_push && h.cap > 0 && (!c.pending.is_empty() || h.prefilled > 0) && (c.pending.len() < h.cap)
                });
                let Some(r) = c.push_ref.filter(|_| head_partial_push && c.offloaded && !c.terminating) else {
                    continue;
                };
                if c.rst || c.abortive || c.fin || c.push_overdue_for == Some(r) {
                    continue;
                }
                if now > r + push + PUSH_LATE_TOLERANCE {
                    c.push_overdue_for = Some(r);
                    f.add(
                        &rules::R_CMP_4,
                        Some(conn),
                        c.outstanding.front().map(|h| h.id),
                        format!(
                            "push timer overdue: a partially filled push request outstanding {} ms after the timer started ({} ms push time)",
                            now.saturating_duration_since(r).as_millis(),
                            push.as_millis()
                        ),
                    );
                }
            }
        }
        self.report(f);
    }

    /// The target's push time, when not the default 500 ms (TcpPushTicks); `None` turns the
    /// push-time check off.
    pub fn set_push_timeout(&self, push: Option<std::time::Duration>) {
        self.lock().push_timeout = push;
    }

    /// Reports a violation found outside the calls the verifier sees (a trace's replay
    /// reading a field no `NetBuffer` can hold).
    pub fn report_external(&self, v: Violation) {
        self.report(Found { v: vec![v], notes: Vec::new() });
    }

    /// Skips the checks that need the target's push-timer state (R-CMP-9, the timer part of
    /// R-TRM-2): for replaying a trace that does not record it.
    pub fn set_push_timer_unknown(&self, unknown: bool) {
        self.lock().push_timer_unknown = unknown;
    }

    /// Disconnects are not expected to complete (a version 1 trace, which models neither the
    /// disconnect NBL nor its completion): R-DSC-1/3/4/5 and the disconnect part of R-SND-13
    /// are skipped.
    pub fn set_untracked_disconnects(&self, untracked: bool) {
        self.lock().untracked_disconnects = untracked;
    }

    /// Every violation recorded so far.
    pub fn violations(&self) -> Vec<Violation> {
        self.lock().violations.clone()
    }

    /// Every note so far: where the target departs from chimney's own choice on a point the
    /// contract leaves open (docs/spec.md §9), reported but not a violation.
    pub fn notes(&self) -> Vec<Violation> {
        self.lock().notes.clone()
    }

    /// The distinct rule ids broken so far, sorted.
    pub fn broken_rules(&self) -> Vec<&'static str> {
        let mut ids: Vec<_> = self.lock().violations.iter().map(|v| v.rule.id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Stream bytes compared against the fed stream so far.
    pub fn checked_bytes(&self) -> u64 {
        self.lock().checked_bytes
    }

    /// Bytes delivered on `conn` (completions plus consumed indications).
    pub fn delivered(&self, conn: ConnId) -> u64 {
        self.lock().conns.get(&conn).map_or(0, |c| c.delivered)
    }

    /// Bytes fed to `conn` and not yet delivered (completed or consumed by an indication):
    /// what the target holds, whatever the target is.
    pub fn undelivered(&self, conn: ConnId) -> usize {
        self.lock().conns.get(&conn).map_or(0, |c| c.pending.len())
    }

    /// Posted NBLs of `conn` not yet completed.
    pub fn outstanding(&self, conn: ConnId) -> usize {
        self.lock().conns.get(&conn).map_or(0, |c| c.outstanding.len())
    }

    // ---- host → target side -------------------------------------------------------------

    fn touch(st: &mut CoreState, conn: ConnId) {
        if !st.touched.contains(&conn) {
            st.touched.push(conn);
        }
    }

    /// Records posted NBLs and poisons Status / slot 0 so unwritten fields are visible.
    fn record_posts(st: &mut CoreState, conn: ConnId, nbls: &mut NblChain, nested: bool) {
        Self::touch(st, conn);
        let now = st.now;
        let Some(c) = st.conns.get_mut(&conn) else {
            return;
        };
        // A post starts the push timer when none runs (its bytes, waiting or prefilled, go
        // into it now); it does not restart a running one.
        c.posted_since_offload = true;
        let running = c.outstanding.front().is_some_and(|h| !h.no_push && h.cap > 0)
            && (!c.pending.is_empty() || c.outstanding.front().is_some_and(|h| h.prefilled > 0));
        if !running {
            c.push_ref = Some(now);
        }
        for nbl in nbls.iter_mut() {
            let nb = nbl.net_buffer();
            let (fed_at_post, waiting_at_post) = (c.fed, !c.pending.is_empty());
            c.posts += 1;
            c.outstanding.push_back(PostRec {
                seq: c.posts,
                fed_at_post,
                waiting_at_post,
                // Only a mandatory upload stops the connection: after an optional one the host
                // may decline and the target carries on.
                after_upload: c.upload_requested.is_some_and(|r| r.is_mandatory()),
                id: nbl.id(),
                cap: nb.data_length(),
                offset0: nb.data_offset(),
                no_push: nbl.tcp_receive_no_push(),
                prefilled: nbl.tcp_receive_bytes_transferred(),
                nested,
                after_disconnect: c.disconnect_indicated,
            });
            nbl.status = NdisStatus::Pending;
            nbl.set_tcp_offload_bytes_transferred(UNWRITTEN);
        }
        if !nbls.is_empty() {
            c.refused_since_post = false;
        }
    }

    fn unrecord_posts(&self, conn: ConnId, nbls: &NblChain) {
        let mut st = self.lock();
        if let Some(c) = st.conns.get_mut(&conn) {
            let ids: HashSet<NblId> = nbls.iter().map(|n| n.id()).collect();
            c.outstanding.retain(|r| !ids.contains(&r.id));
        }
    }

    fn record_returns(st: &mut CoreState, nbls: &NblChain, f: &mut Found) {
        for nbl in nbls.iter() {
            if !st.host_owned.remove(&nbl.id()) {
                f.add(&rules::R_RET_1, None, Some(nbl.id()), "host returned an NBL it does not own");
            }
        }
    }

    fn begin_initiate(&self, conn: ConnId, state: &TcpOffloadState) {
        let mut st = self.lock();
        st.terminated.remove(&conn);
        let mut c = ConnCheck::default();
        for nbl in state.delegated.buffered_data.iter() {
            let nb = nbl.net_buffer();
            for s in nb.slices(nb.data_offset(), nb.data_length()) {
                c.pending.extend(s);
            }
        }
        c.fed = c.pending.len() as u64;
        c.offload_buffered_end = c.fed;
        c.rcv_nxt_offload = state.delegated.rcv_nxt;
        c.fin = matches!(state.delegated.state, Some(crate::ndis::TcpConnectionState::CloseWait));
        c.fin_at_offload = c.fin;
        c.capped_indications = state.cached.rcv_indication_size != 0;
        c.send.on_offload_data(&state.delegated.send_data);
        st.conns.insert(conn, c);
    }

    fn end_initiate(&self, conn: ConnId, ok: bool) {
        let mut st = self.lock();
        if ok {
            if let Some(c) = st.conns.get_mut(&conn) {
                c.offloaded = true;
            }
        } else {
            st.conns.remove(&conn);
        }
    }

    /// Checks every connection touched by the call that just returned, now that the target
    /// is quiescent: records what it owes now (a target may pay from a worker), and after a
    /// timer call (`judge` [`Judge::Due`]) reports what has been owed too long.
    fn quiescent(&self, push_timer: &dyn Fn(ConnId) -> Option<Instant>, judge: Judge) {
        let mut f = Found::default();
        {
            let mut st = self.lock();
            // Reuse the list's allocation: this runs after every call into the target.
            let mut touched = std::mem::take(&mut st.touched);
            let timer_known = !st.push_timer_unknown;
            let (now, any_host_owned) = (st.now, !st.host_owned.is_empty());
            for &conn in &touched {
                let Some(c) = st.conns.get_mut(&conn) else {
                    continue;
                };
                if !c.offloaded {
                    continue;
                }
                let timer = if timer_known { Some(push_timer(conn)) } else { None };
                Self::settle(conn, c, timer, now, any_host_owned, judge, &mut f);
            }
            touched.clear();
            if st.touched.is_empty() {
                st.touched = touched;
            }
        }
        self.report(f);
    }

    /// Judges what `conn` owes at `now`: before its terminate ([`Judge::Due`]) or when the run
    /// ends ([`Judge::End`]).
    fn judge_conn(&self, conn: ConnId, timer: Option<Instant>, judge: Judge) {
        let mut f = Found::default();
        {
            let mut st = self.lock();
            let (now, any_host_owned) = (st.now, !st.host_owned.is_empty());
            let timer = if st.push_timer_unknown { None } else { Some(timer) };
            if let Some(c) = st.conns.get_mut(&conn).filter(|c| c.offloaded) {
                Self::settle(conn, c, timer, now, any_host_owned, judge, &mut f);
            }
        }
        self.report(f);
    }

    /// The run is over: whatever a connection still owes (a completion, an indication, an
    /// event) it will never pay, and is reported whatever its age.
    pub fn finish(&self, push_timer: &dyn Fn(ConnId) -> Option<Instant>) {
        let conns: Vec<ConnId> = {
            let mut v: Vec<ConnId> = self.lock().conns.keys().copied().collect();
            v.sort_unstable();
            v
        };
        for conn in conns {
            self.judge_conn(conn, push_timer(conn), Judge::End);
        }
    }

    /// Updates `c.owed` with what the state owes now (an obligation keeps the time it was
    /// first seen; one no longer owed is paid) and reports those `judge` finds overdue.
    fn settle(
        conn: ConnId,
        c: &mut ConnCheck,
        timer: Option<Option<Instant>>,
        now: Instant,
        any_host_owned: bool,
        judge: Judge,
        f: &mut Found,
    ) {
        if c.upcall.is_some() {
            // An upcall runs on another thread: the state is moving; judge it later.
            return;
        }
        let mut owed = Vec::new();
        Self::owed_now(c, timer, any_host_owned, &mut owed);
        // An obligation is the same one while it concerns the same request; one about no
        // request (an indication, an event) is the same while nothing more was delivered.
        let delivered = c.delivered;
        let owed: Vec<_> = owed
            .into_iter()
            .map(|(rule, rec, what, note)| (rule, rec.map(|r| r.id), rec.map_or(delivered, |r| r.seq), what, note))
            .collect();
        let old = std::mem::take(&mut c.owed);
        for (rule, nbl, key, detail, note) in owed {
            let prev = old.iter().find(|o| std::ptr::eq(o.rule, rule) && o.key == key && o.note == note);
            let (since, reported) = prev.map_or((now, false), |o| (o.since, o.reported));
            c.owed.push(Owed { rule, nbl, key, detail, since, reported, note });
        }
        let due = |o: &Owed| match judge {
            Judge::Record => false,
            Judge::Due => now.saturating_duration_since(o.since) > DEFER_TOLERANCE,
            Judge::End => true,
        };
        for o in c.owed.iter_mut().filter(|o| !o.reported) {
            if !due(o) {
                continue;
            }
            o.reported = true;
            let age = now.saturating_duration_since(o.since).as_millis();
            let detail = match judge {
                Judge::End => format!("{}; still owed when the run ended ({age} ms)", o.detail),
                _ => format!("{}; owed for {age} ms", o.detail),
            };
            if o.note {
                f.note(o.rule, Some(conn), o.nbl, detail);
            } else {
                f.add(o.rule, Some(conn), o.nbl, detail);
            }
        }
    }

    /// What the target owes on `c` now that no call is running: `(rule, nbl, what, note)`.
    /// `timer`: the push-timer deadline, `None` when it cannot be known.
    fn owed_now<'c>(
        c: &'c ConnCheck,
        timer: Option<Option<Instant>>,
        any_host_owned: bool,
        out: &mut Vec<(&'static Rule, Option<&'c PostRec>, String, bool)>,
    ) {
        let mut add = |rule: &'static Rule, rec: Option<&'c PostRec>, what: String| out.push((rule, rec, what, false));
        let pending = c.pending.len();
        let head = c.outstanding.front();
        if c.rst && (!c.abort_indicated || head.is_some()) {
            let what = if c.abort_indicated { "a request is still outstanding" } else { "no TcpIndicateAbort" };
            add(&rules::R_RST_1, head, format!("after RST: {what}"));
            return;
        }
        if c.abortive {
            if let Some(h) = head {
                add(&rules::R_ABT_1, Some(h), "request still outstanding after abortive disconnect".into());
            }
            return;
        }
        if c.rst {
            return;
        }
        if c.disconnect_indicated {
            if let Some(h) = head {
                add(&rules::R_FIN_3, Some(h), "request outstanding after TcpIndicateDisconnect".into());
            }
            return;
        }
        let open = !c.terminating;
        // A mandatory upload request stops the connection: what it would owe, it hands back.
        let stopped = c.upload_requested.is_some_and(|r| r.is_mandatory());
        if let (Some(h), true) = (head, open) {
            if h.cap == 0 && pending > 0 && !stopped {
                add(
                    &rules::R_POST_10,
                    Some(h),
                    format!("zero-byte request left outstanding while {pending} bytes are available"),
                );
                return;
            }
            if h.cap > 0 && pending >= h.cap {
                add(
                    &rules::R_CMP_3,
                    Some(h),
                    format!("{pending} bytes available for a {}-byte request left outstanding", h.cap),
                );
                return;
            }
            if h.cap > 0 && pending > 0 && !h.no_push && c.psh_mark > c.delivered {
                // PSH on data that was buffered (handed over at offload, or refused by an
                // indication) is chimney's choice to honour (A22): a note, not a violation.
                if c.psh_mark <= c.refused_end.max(c.offload_buffered_end) {
                    out.push((
                        &rules::R_DEL_5,
                        Some(h),
                        "PSH on buffered data not honoured (A22: chimney's choice)".into(),
                        true,
                    ));
                } else {
                    out.push((
                        &rules::R_DEL_5,
                        Some(h),
                        "partially filled push-mode request not completed after PSH".into(),
                        false,
                    ));
                    return;
                }
            }
            if h.cap > 0 && pending > 0 && c.fin {
                out.push((
                    &rules::R_FIN_1,
                    Some(h),
                    "partially filled request held after FIN: data never consumed".into(),
                    false,
                ));
                return;
            }
        }
        if open && c.fin && pending == 0 {
            out.push((
                &rules::R_FIN_1,
                None,
                "FIN received and all data consumed, but no TcpIndicateDisconnect".into(),
                false,
            ));
            return;
        }
        // Data waiting with nothing posted is indicated, unless a refusal blocks indications
        // (R-IND-7), an upload is under way, or the host holds indicated NBLs (the target's
        // pool may be empty until it returns them).
        if open
            && head.is_none()
            && pending > 0
            && !c.refused_since_post
            && c.upload_requested.is_none()
            && !c.stream_broken
        {
            if !any_host_owned {
                // With RcvIndicationSize set, a target may keep the rest of a capped
                // indication for the host's post (R-IND-10); chimney indicates on.
                out.push((
                    &rules::R_DEL_2,
                    None,
                    format!("{pending} bytes waiting with nothing posted, never indicated"),
                    c.capped_indications,
                ));
            }
            return;
        }
        let expect_timer = open && head.is_some_and(|h| h.cap > 0 && !h.no_push && (pending > 0 || h.prefilled > 0));
        let Some(timer) = timer else { return };
        match (expect_timer, timer) {
            // The contract says the target starts its push timer after the offload, without a
            // condition; chimney starts it only for a partially filled push request: a timer
            // running before anything was posted is a note.
            (false, Some(t)) if !c.posted_since_offload => out.push((
                &rules::R_CMP_9,
                None,
                format!("push timer running (due {t}) since the offload, before any post (chimney's choice: none)"),
                true,
            )),
            (false, Some(t)) => out.push((
                &rules::R_CMP_9,
                None,
                format!("push timer running (due {t}) with no partially filled push request"),
                false,
            )),
            (true, None) => out.push((
                &rules::R_CMP_9,
                head,
                "partially filled push-mode request without a push timer".into(),
                false,
            )),
            _ => {}
        }
    }

    // ---- stream ---------------------------------------------------------------------------

    /// Compares `bytes`, just delivered, with the fed stream; attributes a mismatch.
    fn deliver(st: &mut CoreState, conn: ConnId, nbl: NblId, bytes: &[u8], f: &mut Found) {
        let Some(c) = st.conns.get_mut(&conn) else {
            return;
        };
        let len = bytes.len();
        if len == 0 {
            return;
        }
        st.checked_bytes += len as u64;
        if let Some(a) = c.end_allowance {
            if len as u64 > a {
                let (rule, what) = if c.rst {
                    (&rules::R_RST_1, "the RST")
                } else if c.abortive {
                    (&rules::R_ABT_1, "the abortive disconnect")
                } else {
                    (&rules::R_URG_1, "the upload request for urgent data")
                };
                f.add(
                    rule,
                    Some(conn),
                    Some(nbl),
                    format!("{len} bytes delivered after {what}; the requests outstanding then could hold {a}"),
                );
            }
            c.end_allowance = Some(a.saturating_sub(len as u64));
        }
        if len > c.pending.len() {
            f.add(
                &rules::R_ACC_2,
                Some(conn),
                Some(nbl),
                format!(
                    "{len} bytes delivered at stream offset {}, only {} received and undelivered",
                    c.delivered,
                    c.pending.len()
                ),
            );
            c.delivered += c.pending.len() as u64;
            c.pending.clear();
            return;
        }
        if deque_eq_at(&c.pending, 0, bytes) {
            c.pending.drain(..len);
            c.delivered += len as u64;
            return;
        }
        // A mismatch: did the target skip older data it should have delivered first? Either
        // way the stream is known broken: later comparisons would only echo this one.
        c.stream_broken = true;
        let candidates = [
            (c.offload_buffered_end, &rules::R_BUF_3, "skipped offload BufferedData"),
            (c.refused_end, &rules::R_IND_6, "skipped data refused by an indication"),
            (c.last_chunk_start, &rules::R_DEL_3, "skipped older buffered data"),
        ];
        for (end, rule, what) in candidates {
            if end > c.delivered {
                let skip = (end - c.delivered) as usize;
                if deque_eq_at(&c.pending, skip, bytes) {
                    f.add(
                        rule,
                        Some(conn),
                        Some(nbl),
                        format!("{what}: {skip} bytes at stream offset {}", c.delivered),
                    );
                    c.pending.drain(..skip + len);
                    c.delivered += (skip + len) as u64;
                    return;
                }
            }
        }
        let first = (0..len).find(|&i| c.pending[i] != bytes[i]).unwrap_or(0);
        f.add(
            &rules::R_ACC_3,
            Some(conn),
            Some(nbl),
            format!(
                "byte {} of the stream differs (delivered {:#04x}, sent {:#04x})",
                c.delivered + first as u64,
                bytes[first],
                c.pending[first]
            ),
        );
        c.pending.drain(..len);
        c.delivered += len as u64;
    }

    /// Runs a send-side check on `conn`'s model and files its findings.
    fn with_send(&self, conn: ConnId, f: &mut Found, check: impl FnOnce(&mut SendCheck, &mut Vec<Finding>)) {
        let mut st = self.lock();
        Self::touch(&mut st, conn);
        let Some(c) = st.conns.get_mut(&conn) else { return };
        let mut found = Vec::new();
        check(&mut c.send, &mut found);
        for (rule, nbl, why) in found {
            f.add(rule, Some(conn), nbl, why);
        }
    }

    // ---- target → host side ---------------------------------------------------------------

    fn enter(&self, conn: ConnId, kind: Upcall, f: &mut Found) {
        let mut st = self.lock();
        Self::touch(&mut st, conn);
        let terminated = st.terminated.contains(&conn);
        let Some(c) = st.conns.get_mut(&conn) else {
            let why =
                if terminated { "upcall after terminate completed" } else { "upcall on a connection never offloaded" };
            let send_side = matches!(kind, Upcall::SendComplete | Upcall::DisconnectComplete);
            let rule = match (terminated, send_side) {
                (true, true) => &rules::R_SND_14,
                (true, false) => &rules::R_TRM_2,
                (false, _) => &rules::R_IND_11,
            };
            f.add(rule, Some(conn), None, why);
            return;
        };
        if !c.offloaded {
            f.add(&rules::R_IND_11, Some(conn), None, format!("{kind:?} upcall before the offload completed"));
        }
        let me = std::thread::current().id();
        if let Some((running, tid)) = c.upcall {
            if tid == me && running == Upcall::Complete && kind == Upcall::Complete {
                f.add(&rules::R_CMP_6, Some(conn), None, "ReceiveComplete re-entered from inside ReceiveComplete");
            } else if matches!(kind, Upcall::SendComplete | Upcall::DisconnectComplete)
                || matches!(running, Upcall::SendComplete | Upcall::DisconnectComplete)
            {
                let how = if tid == me { "nested in" } else { "concurrent with" };
                f.add(&rules::R_SND_10, Some(conn), None, format!("{kind:?} upcall {how} a {running:?} upcall"));
            } else {
                let how = if tid == me { "nested in" } else { "concurrent with" };
                f.add(&rules::R_CMP_5, Some(conn), None, format!("{kind:?} upcall {how} a {running:?} upcall"));
            }
        }
        c.upcall = Some((kind, me));
    }

    fn exit(&self, conn: ConnId) {
        if let Some(c) = self.lock().conns.get_mut(&conn) {
            c.upcall = None;
        }
    }

    fn check_completion(&self, conn: ConnId, nbls: &NblChain, f: &mut Found) {
        let mut st = self.lock();
        let id = Some(conn);
        if nbls.is_empty() {
            f.add(&rules::R_CMP_2, id, None, "ReceiveComplete with an empty chain");
            return;
        }
        let in_timeout = st.in_timeout;
        let (now, push_timeout) = (st.now, st.push_timeout);
        // Out of FIFO order (R-CMP-1): the bytes still waiting belong to older requests, so
        // the partial-completion check below stands down.
        let mut fifo_broken = false;
        // First pass: match every NBL with its post and work out the bytes it carries.
        let mut items: Vec<(Option<PostRec>, usize, &NetBufferList)> = Vec::with_capacity(nbls.len());
        for nbl in nbls.iter() {
            let nid = nbl.id();
            let rec = {
                let Some(c) = st.conns.get_mut(&conn) else {
                    return;
                };
                match c.outstanding.iter().position(|r| r.id == nid) {
                    Some(0) => c.outstanding.pop_front(),
                    Some(p) => {
                        f.add(
                            &rules::R_CMP_1,
                            id,
                            Some(nid),
                            format!("completed while {p} older request(s) are outstanding"),
                        );
                        fifo_broken = true;
                        c.outstanding.remove(p)
                    }
                    None => None,
                }
            };
            let Some(rec) = rec else {
                let elsewhere = st.conns.iter_mut().find_map(|(k, c)| {
                    c.outstanding.iter().position(|r| r.id == nid).map(|p| {
                        c.outstanding.remove(p);
                        *k
                    })
                });
                match elsewhere {
                    Some(other) => f.add(&rules::R_CMP_2, id, Some(nid), format!("NBL was posted on {other}")),
                    None => f.add(
                        &rules::R_POST_2,
                        id,
                        Some(nid),
                        "completed an NBL that is not outstanding (never posted, or completed twice)",
                    ),
                }
                items.push((None, 0, nbl));
                continue;
            };
            let nb = nbl.net_buffer();
            let slot = nbl.tcp_offload_bytes_transferred();
            let adv_off = nb.data_offset().wrapping_sub(rec.offset0);
            let adv_len = rec.cap.wrapping_sub(nb.data_length());
            if nbl.status == NdisStatus::Pending || slot == UNWRITTEN {
                let what = if slot == UNWRITTEN { "TcpOffloadBytesTransferred" } else { "Status" };
                f.add(&rules::R_CMP_7, id, Some(nid), format!("{what} not written before completion"));
            } else if rec.cap == 0 && slot != 0 {
                f.add(&rules::R_POST_10, id, Some(nid), format!("zero-byte request completed with {slot} bytes"));
            } else if slot != adv_off || slot != adv_len || adv_off > rec.cap {
                f.add(
                    &rules::R_ACC_1,
                    id,
                    Some(nid),
                    format!(
                        "TcpOffloadBytesTransferred {slot}, DataOffset advanced {adv_off}, DataLength shrank {adv_len}"
                    ),
                );
            }
            let bytes = if adv_off <= rec.cap { adv_off } else { 0 };
            items.push((Some(rec), bytes, nbl));
        }
        // Second pass: statuses, chain shape, stream.
        let n = items.len();
        for i in 0..n {
            let (Some(rec), b, nbl) = &items[i] else {
                continue;
            };
            let (b, nid) = (*b, nbl.id());
            let mut leaves_data = false;
            let Some(c) = st.conns.get(&conn) else { return };
            let status = nbl.status;
            let has_room = b < rec.cap;
            let mut status_ok = true;
            let mut bad = |rule: &'static Rule, why: String| {
                f.add(rule, id, Some(nid), why);
                status_ok = false;
            };
            let aborted = c.rst || c.abortive;
            let hw_failure = c.upload_requested == Some(crate::ndis::TcpUploadReason::HardwareFailure);
            if c.rst && status != ambiguity::STATUS_AFTER_ABORT {
                bad(&rules::R_RST_1, format!("{status} after RST"));
            } else if c.abortive && status != ambiguity::STATUS_AFTER_ABORT {
                bad(&rules::R_ABT_1, format!("{status} after abortive disconnect"));
            } else if aborted {
                // REQUEST_ABORTED after RST or abort: legal whatever happened before.
            } else if rec.after_upload
                && !((status == NdisStatus::UploadInProgress
                    || status == NdisStatus::RequestAborted && hw_failure
                    || status == ambiguity::STATUS_AFTER_DISCONNECT && c.disconnect_indicated)
                    && b == 0)
            {
                bad(&rules::R_TRM_7, format!("posted after the upload request, completed {status} with {b} bytes"));
            } else if rec.after_disconnect && (status != ambiguity::STATUS_AFTER_DISCONNECT || b != 0) {
                bad(&rules::R_FIN_3, format!("posted after TcpIndicateDisconnect, completed {status} with {b} bytes"));
            } else if c.terminating
                && !(status == ambiguity::STATUS_AT_TERMINATE_EMPTY && b == 0
                    || status == ambiguity::STATUS_AT_TERMINATE_WITH_DATA && (b > 0 || rec.cap == 0)
                    || status == NdisStatus::RequestAborted && hw_failure)
            {
                bad(&rules::R_TRM_2, format!("{status} with {b} bytes during terminate"));
            } else {
                match status {
                    NdisStatus::Success if c.disconnect_indicated => {
                        bad(&rules::R_CMP_7, "SUCCESS after TcpIndicateDisconnect (INVALID_STATE expected, A9)".into())
                    }
                    NdisStatus::Success => {}
                    NdisStatus::InvalidState if !c.disconnect_indicated => {
                        bad(&rules::R_CMP_7, "INVALID_STATE without TcpIndicateDisconnect".into())
                    }
                    NdisStatus::UploadInProgress if !c.terminating && c.upload_requested.is_none() => {
                        bad(&rules::R_CMP_7, "UPLOAD_IN_PROGRESS while no upload is in progress".into())
                    }
                    // REQUEST_ABORTED without a RST or an abort: the contract's status for an
                    // error while processing receive data, which the calls do not show (A47).
                    NdisStatus::InvalidState | NdisStatus::UploadInProgress | NdisStatus::RequestAborted => {}
                    other => bad(&rules::R_CMP_7, format!("{other} is not a receive completion status")),
                }
            }
            let normal = status_ok && status == NdisStatus::Success && !c.terminating && !c.disconnect_indicated;
            if normal && has_room && rec.cap > 0 {
                let later_data = items[i + 1..].iter().any(|(_, lb, _)| *lb > 0);
                let fin_push = c.fin && b == c.pending.len();
                if i + 1 < n && later_data {
                    f.add(
                        &rules::R_POST_3,
                        id,
                        Some(nid),
                        format!("{} bytes of room left while a later request got data", rec.cap - b),
                    );
                } else if i + 1 < n {
                    f.add(&rules::R_CMP_3, id, Some(nid), "partially filled request is not the last of its completion");
                } else if fin_push {
                } else if rec.no_push {
                    f.add(
                        &rules::R_DEL_5,
                        id,
                        Some(nid),
                        format!("non-push request completed with {b} of {} bytes", rec.cap),
                    );
                } else if b == 0 && rec.prefilled == 0 {
                    f.add(&rules::R_CMP_4, id, Some(nid), "empty request completed SUCCESS");
                } else if !(in_timeout || c.psh_mark > c.delivered) {
                    f.add(
                        &rules::R_CMP_4,
                        id,
                        Some(nid),
                        "partially filled push request completed without PSH or push timer",
                    );
                } else if let (true, Some(r), Some(push)) = (c.psh_mark <= c.delivered, c.push_ref, push_timeout) {
                    // By the push timer: not before its push time since it last started.
                    let due = r + push;
                    if now + PUSH_EARLY_TOLERANCE < due {
                        f.add(
                            &rules::R_CMP_4,
                            id,
                            Some(nid),
                            format!(
                                "completed by the push timer {} ms after it (re)started, before its {} ms",
                                now.saturating_duration_since(r).as_millis(),
                                push.as_millis()
                            ),
                        );
                    }
                }
                if i + 1 == n && c.pending.len() > b && !fifo_broken {
                    // Received, undelivered bytes it had room for: a partial completion takes
                    // every byte it can.
                    f.add(
                        &rules::R_CMP_3,
                        id,
                        Some(nid),
                        format!(
                            "completed with {b} of {} bytes while {} more received bytes were waiting",
                            rec.cap,
                            c.pending.len() - b
                        ),
                    );
                    // The target thinks those bytes delivered: what it owes next is this fault.
                    leaves_data = true;
                }
            }
            if c.disconnect_indicated && b > 0 {
                f.add(&rules::R_FIN_1, id, Some(nid), "data completed after TcpIndicateDisconnect");
            }
            // Data was available to it if some waited when it was posted or came after.
            let data_seen = rec.waiting_at_post || c.fed > rec.fed_at_post;
            if rec.cap == 0
                && status == NdisStatus::Success
                && !data_seen
                && !(c.fin || aborted || c.terminating || c.disconnect_indicated || c.upload_requested.is_some())
            {
                f.add(&rules::R_POST_10, id, Some(nid), "zero-byte request completed with no data available");
            }
            if leaves_data {
                if let Some(c) = st.conns.get_mut(&conn) {
                    c.stream_broken = true;
                }
            }
            // Bytes placed in one MDL (the usual case) are compared where they lie.
            let mut parts = nbl.net_buffer().slices(rec.offset0, b);
            match (parts.next(), parts.next()) {
                (Some(one), None) if one.len() == b => Self::deliver(&mut st, conn, nid, one, f),
                _ => Self::deliver(&mut st, conn, nid, &nbl_bytes(nbl, rec.offset0, b), f),
            }
        }
        // A completion stops the push timer; the bytes still waiting go into the next
        // request now, which starts it again.
        if let Some(c) = st.conns.get_mut(&conn) {
            c.push_ref = (!c.pending.is_empty()).then_some(now);
        }
    }

    fn check_indication(
        &self,
        conn: ConnId,
        nbl: &NblChain,
        status: NdisStatus,
        f: &mut Found,
    ) -> Option<(NblId, Vec<u8>)> {
        let st = self.lock();
        let id = Some(conn);
        let Some(first) = nbl.front() else {
            f.add(&rules::R_IND_3, id, None, "indication without an NBL");
            return None;
        };
        let nid = first.id();
        let nb = first.net_buffer();
        if nbl.len() != 1 {
            f.add(
                &rules::R_IND_3,
                id,
                Some(nid),
                format!("indication chain of {} NBLs (must be stand-alone)", nbl.len()),
            );
        } else if nid.pool() != Some(PoolTag::Target) {
            f.add(&rules::R_IND_3, id, Some(nid), "indicated NBL is not from the target's pool");
        } else if nb.data_length() == 0 {
            f.add(&rules::R_IND_3, id, Some(nid), "indication of zero bytes");
        }
        if status != NdisStatus::Success {
            f.add(&rules::R_IND_4, id, Some(nid), format!("indication Status {status}"));
        }
        if st.host_owned.contains(&nid) {
            f.add(&rules::R_IND_5, id, Some(nid), "indicated an NBL the host still owns");
        }
        let c = st.conns.get(&conn)?;
        if c.rst {
            f.add(&rules::R_RST_1, id, Some(nid), "indication after RST");
        } else if c.abortive {
            f.add(&rules::R_ABT_1, id, Some(nid), "indication after abortive disconnect");
        } else if c.disconnect_indicated {
            f.add(&rules::R_FIN_1, id, Some(nid), "indication after TcpIndicateDisconnect");
        } else if c.refused_since_post {
            f.add(&rules::R_IND_7, id, Some(nid), "indication after a refusal with no post since");
        } else if let Some(r) = c.outstanding.iter().find(|r| r.cap > 0) {
            // Zero-byte requests hold no data and do not count (A8).
            if r.nested {
                f.add(
                    &rules::R_DEL_1,
                    id,
                    Some(r.id),
                    "indicated while a request posted during an upcall is outstanding",
                );
            } else {
                f.add(&rules::R_IND_1, id, Some(r.id), "indicated while a posted request is outstanding");
            }
        }
        Some((nid, nbl_bytes(first, nb.data_offset(), nb.data_length())))
    }

    fn apply_indication(&self, conn: ConnId, nid: NblId, data: &[u8], outcome: &IndicateReturn, f: &mut Found) {
        let mut st = self.lock();
        let len = data.len();
        let consumed = match outcome {
            IndicateReturn::Success => {
                st.host_owned.insert(nid);
                len
            }
            IndicateReturn::NotAccepted(_) => 0,
            IndicateReturn::PartiallyAccepted { bytes_consumed, .. } => {
                if *bytes_consumed == 0 || *bytes_consumed >= len {
                    f.add(
                        &rules::R_IND_5,
                        Some(conn),
                        Some(nid),
                        format!("host: PARTIALLY_ACCEPTED with BytesConsumed {bytes_consumed} of {len}"),
                    );
                }
                (*bytes_consumed).min(len)
            }
        };
        match outcome {
            IndicateReturn::NotAccepted(back) | IndicateReturn::PartiallyAccepted { nbl: back, .. } => {
                if back.len() != 1 || back.front().map(|n| n.id()) != Some(nid) {
                    f.add(
                        &rules::R_IND_5,
                        Some(conn),
                        Some(nid),
                        "host: refused indication did not hand back the indicated NBL",
                    );
                }
            }
            IndicateReturn::Success => {}
        }
        // The bytes the host did not take are compared too: an indication shows the next
        // undelivered bytes, whatever the host does with them.
        if consumed < len {
            if let Some(c) = st.conns.get(&conn).filter(|c| !c.stream_broken) {
                let head_ok = deque_eq_at(&c.pending, 0, &data[..consumed]);
                if head_ok && !deque_eq_at(&c.pending, 0, data) {
                    f.add(
                        &rules::R_ACC_3,
                        Some(conn),
                        Some(nid),
                        format!(
                            "the {} indicated bytes the host did not take differ from the stream at offset {}",
                            len - consumed,
                            c.delivered + consumed as u64
                        ),
                    );
                }
            }
        }
        Self::deliver(&mut st, conn, nid, &data[..consumed], f);
        if consumed < len {
            if let Some(c) = st.conns.get_mut(&conn) {
                c.refused_since_post = true;
                c.refused_end = c.delivered + (len - consumed) as u64;
            }
        }
    }

    fn check_event(&self, conn: ConnId, event: TcpOffloadEvent, f: &mut Found) {
        let mut st = self.lock();
        let st = &mut *st;
        let Some(c) = st.conns.get_mut(&conn) else {
            return;
        };
        match event {
            TcpOffloadEvent::Disconnect => {
                let why = if !c.fin {
                    Some("TcpIndicateDisconnect without FIN".to_string())
                } else if c.disconnect_indicated {
                    Some("TcpIndicateDisconnect twice".to_string())
                } else if !c.pending.is_empty() {
                    Some(format!("TcpIndicateDisconnect with {} bytes not consumed", c.pending.len()))
                } else {
                    None
                };
                if let Some(why) = why {
                    f.add(&rules::R_FIN_1, Some(conn), None, why);
                }
                c.disconnect_indicated = true;
            }
            TcpOffloadEvent::Abort => {
                let hw = c.upload_requested == Some(crate::ndis::TcpUploadReason::HardwareFailure);
                if !c.rst && !hw {
                    f.add(
                        &rules::R_TRM_8,
                        Some(conn),
                        None,
                        "TcpIndicateAbort with no acceptable RST and no hardware failure indicated",
                    );
                }
                c.abort_indicated = true;
            }
            TcpOffloadEvent::Retrieve(reason) => {
                use crate::ndis::TcpUploadReason as U;
                // Half-closed: the peer's FIN taken (CLOSE_WAIT) or ours sent (FIN_WAIT_1/2),
                // not both, and no reset.
                let half_closed = (c.fin != c.send.closed_for_sends()) && !c.rst && !c.abortive;
                // Urgent data, a timeout, an invalid state or a hardware failure force an
                // upload whatever the state (§6.6, R-TRM-8); the rest may not come half-closed.
                let allowed = matches!(
                    reason,
                    U::ReceivedUrgentData | U::TimeoutExpiration | U::InvalidState | U::HardwareFailure
                );
                if half_closed && !allowed {
                    f.add(
                        &rules::R_FIN_4,
                        Some(conn),
                        None,
                        format!("upload requested ({reason:?}) while half-closed"),
                    );
                }
                if reason == U::ReceivedUrgentData {
                    c.end_stream();
                }
                c.upload_requested = Some(reason);
                c.send.uploading = true;
            }
            TcpOffloadEvent::SendBacklogChange(_) => {}
        }
    }

    /// Takes the host's nested calls, records them, and forwards them to the target's queue.
    fn forward_nested(&self, mine: &mut NestedCalls, theirs: &mut NestedCalls, f: &mut Found) {
        let mut st = self.lock();
        for (conn, mut nbls) in mine.drain_posts() {
            Self::record_posts(&mut st, conn, &mut nbls, true);
            theirs.post_receive(conn, nbls);
        }
        for (conn, nbls) in mine.drain_sends() {
            Self::touch(&mut st, conn);
            // A nested send after a graceful disconnect is the host's mistake: not recorded,
            // so a target that takes and completes it is caught (R-SND-5).
            if let Some(c) = st.conns.get_mut(&conn).filter(|c| !c.send.closed_for_sends()) {
                let mut found = Vec::new();
                c.send.on_send(&nbls, &mut found);
                for (rule, nbl, why) in found {
                    f.add(rule, Some(conn), nbl, why);
                }
            }
            theirs.post_send(conn, nbls);
        }
        for (conn, kind, nbl) in mine.drain_disconnects() {
            // Recorded when the engine makes the call.
            theirs.disconnect(conn, kind, nbl);
        }
        let returns = mine.take_returns();
        Self::record_returns(&mut st, &returns, f);
        theirs.receive_return(returns);
    }
}

/// The host half of the verifier: wraps the real host, checks every upcall, forwards it.
pub struct VerifyingHost<'a> {
    core: &'a VerifierCore,
    host: &'a mut dyn ProtocolHost,
    scratch: NestedCalls,
}

impl<'a> VerifyingHost<'a> {
    /// Wraps `host` so that every upcall a target makes into it is checked by `core`.
    pub fn new(core: &'a VerifierCore, host: &'a mut dyn ProtocolHost) -> VerifyingHost<'a> {
        VerifyingHost { core, host, scratch: NestedCalls::new() }
    }
}

impl ProtocolHost for VerifyingHost<'_> {
    fn receive_complete(&mut self, conn: ConnId, nbls: NblChain, nested: &mut NestedCalls) {
        let mut f = Found::default();
        self.core.enter(conn, Upcall::Complete, &mut f);
        self.core.check_completion(conn, &nbls, &mut f);
        self.core.report(f);
        self.host.receive_complete(conn, nbls, &mut self.scratch);
        let mut f = Found::default();
        self.core.exit(conn);
        self.core.forward_nested(&mut self.scratch, nested, &mut f);
        self.core.report(f);
    }

    fn receive_indicate(
        &mut self,
        conn: ConnId,
        nbl: NblChain,
        status: NdisStatus,
        nested: &mut NestedCalls,
    ) -> IndicateReturn {
        let mut f = Found::default();
        self.core.enter(conn, Upcall::Indicate, &mut f);
        let seen = self.core.check_indication(conn, &nbl, status, &mut f);
        self.core.report(f);
        let outcome = self.host.receive_indicate(conn, nbl, status, &mut self.scratch);
        let mut f = Found::default();
        self.core.exit(conn);
        if let Some((nid, data)) = seen {
            self.core.apply_indication(conn, nid, &data, &outcome, &mut f);
        }
        self.core.forward_nested(&mut self.scratch, nested, &mut f);
        self.core.report(f);
        outcome
    }

    fn event_indicate(&mut self, conn: ConnId, event: TcpOffloadEvent, nested: &mut NestedCalls) {
        let mut f = Found::default();
        self.core.enter(conn, Upcall::Event, &mut f);
        self.core.check_event(conn, event, &mut f);
        self.core.report(f);
        self.host.event_indicate(conn, event, &mut self.scratch);
        let mut f = Found::default();
        self.core.exit(conn);
        self.core.forward_nested(&mut self.scratch, nested, &mut f);
        self.core.report(f);
    }

    fn send_complete(&mut self, conn: ConnId, nbls: NblChain, nested: &mut NestedCalls) {
        let mut f = Found::default();
        self.core.enter(conn, Upcall::SendComplete, &mut f);
        self.core.with_send(conn, &mut f, |s, found| s.on_send_complete(&nbls, found));
        self.core.report(f);
        self.host.send_complete(conn, nbls, &mut self.scratch);
        let mut f = Found::default();
        self.core.exit(conn);
        self.core.forward_nested(&mut self.scratch, nested, &mut f);
        self.core.report(f);
    }

    fn disconnect_complete(&mut self, conn: ConnId, nbl: NblChain, status: NdisStatus, nested: &mut NestedCalls) {
        let mut f = Found::default();
        self.core.enter(conn, Upcall::DisconnectComplete, &mut f);
        self.core.with_send(conn, &mut f, |s, found| s.on_disconnect_complete(&nbl, status, found));
        self.core.report(f);
        self.host.disconnect_complete(conn, nbl, status, &mut self.scratch);
        let mut f = Found::default();
        self.core.exit(conn);
        self.core.forward_nested(&mut self.scratch, nested, &mut f);
        self.core.report(f);
    }
}

/// A target wrapped by the verifier: implements the same interfaces, forwards every call to
/// `T`, and checks both directions.
pub struct Verifier<T> {
    inner: T,
    core: Arc<VerifierCore>,
}

impl<T> Verifier<T> {
    /// Wraps `inner` with a fresh core in `mode`.
    pub fn new(inner: T, mode: VerifierMode) -> Verifier<T> {
        Verifier { inner, core: Arc::new(VerifierCore::new(mode)) }
    }

    /// The shared checking core (violations, counters).
    pub fn core(&self) -> &Arc<VerifierCore> {
        &self.core
    }

    /// The wrapped target.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// The wrapped target, writable (calls made on it directly are not checked).
    pub fn inner_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T: OffloadTarget> Verifier<T> {
    fn after(&self) {
        let inner = &self.inner;
        self.core.quiescent(&|c| inner.push_timer(c), Judge::Record);
    }

    /// The run is over: reports what any connection still owes ([`VerifierCore::finish`]).
    pub fn finish(&self) {
        let inner = &self.inner;
        self.core.finish(&|c| inner.push_timer(c));
    }
}

impl<T: OffloadTarget> OffloadTarget for Verifier<T> {
    fn receive(
        &mut self,
        now: Instant,
        conn: ConnId,
        mut nbls: NblChain,
        host: &mut dyn ProtocolHost,
    ) -> Result<NdisStatus, PostRejected> {
        self.core.lock().now = now;
        let legal = Self::record(&self.core, conn, &mut nbls);
        let r = self.inner.receive(now, conn, nbls, &mut VerifyingHost::new(&self.core, host));
        match &r {
            Ok(NdisStatus::Pending) => {}
            Ok(other) => {
                let mut f = Found::default();
                f.add(&rules::R_POST_2, Some(conn), None, format!("MiniportTcpOffloadReceive returned {other}"));
                self.core.report(f);
            }
            Err(rej) => {
                self.core.unrecord_posts(conn, &rej.nbls);
                if legal {
                    // A legal post refused would never be completed: the host's buffers lost.
                    let mut f = Found::default();
                    f.add(
                        &rules::R_POST_2,
                        Some(conn),
                        rej.nbls.front().map(|n| n.id()),
                        format!("a legal post on an offloaded connection refused ({})", rej.error),
                    );
                    self.core.report(f);
                }
            }
        }
        self.after();
        r
    }

    fn receive_return(&mut self, now: Instant, nbls: NblChain, host: &mut dyn ProtocolHost) -> NdisStatus {
        let mut f = Found::default();
        Self::record_returns(&self.core, &nbls, &mut f);
        let s = self.inner.receive_return(now, nbls, &mut VerifyingHost::new(&self.core, host));
        if s != NdisStatus::Success {
            f.add(&rules::R_RET_1, None, None, format!("MiniportTcpOffloadReceiveReturn returned {s}"));
        }
        self.core.report(f);
        self.after();
        s
    }

    fn disconnect(
        &mut self,
        now: Instant,
        conn: ConnId,
        kind: DisconnectKind,
        nbl: NblChain,
        host: &mut dyn ProtocolHost,
    ) -> Result<NdisStatus, PostRejected> {
        let recorded = {
            let mut st = self.core.lock();
            VerifierCore::touch(&mut st, conn);
            let untracked = st.untracked_disconnects;
            st.conns.get_mut(&conn).map(|c| {
                if untracked {
                    c.send.reset |= kind == DisconnectKind::Abortive;
                    c.abortive |= kind == DisconnectKind::Abortive;
                    return None;
                }
                if kind == DisconnectKind::Abortive {
                    // Undelivered bytes stay in `pending`: bytes already placed in the head
                    // request may still be completed (REQUEST_ABORTED with a count); the rest
                    // is discarded and never required.
                    c.abortive = true;
                    c.end_stream();
                }
                Some(c.send.on_disconnect(kind, &nbl))
            })
        };
        let r = self.inner.disconnect(now, conn, kind, nbl, &mut VerifyingHost::new(&self.core, host));
        if let Some(Some(recorded)) = recorded {
            let mut f = Found::default();
            let result = r.as_ref().map(|s| *s).map_err(|_| ());
            self.core.with_send(conn, &mut f, |s, found| s.on_disconnect_done(kind, recorded, result, found));
            self.core.report(f);
        }
        self.after();
        r
    }

    fn send(
        &mut self,
        now: Instant,
        conn: ConnId,
        nbls: NblChain,
        host: &mut dyn ProtocolHost,
    ) -> Result<NdisStatus, PostRejected> {
        let mut f = Found::default();
        self.core.with_send(conn, &mut f, |s, found| s.on_send(&nbls, found));
        self.core.report(f);
        let r = self.inner.send(now, conn, nbls, &mut VerifyingHost::new(&self.core, host));
        let mut f = Found::default();
        match &r {
            Ok(st) => self.core.with_send(conn, &mut f, |s, found| s.on_send_done(Some(*st), found)),
            Err(rej) => {
                let closed = matches!(rej.error, ApiMisuse::SendClosed(_));
                let known = !matches!(rej.error, ApiMisuse::UnknownConnection(_));
                self.core.with_send(conn, &mut f, |s, found| {
                    if known {
                        s.on_send_refused(&rej.nbls, closed, found);
                    }
                    s.on_send_done(None, found);
                });
            }
        }
        self.core.report(f);
        self.after();
        r
    }

    fn terminate_offload(
        &mut self,
        now: Instant,
        conn: ConnId,
        host: &mut dyn ProtocolHost,
    ) -> Result<TcpDelegatedState, ApiMisuse> {
        // What the connection has owed too long is due before the terminate supersedes it.
        self.core.lock().now = now;
        self.core.judge_conn(conn, self.inner.push_timer(conn), Judge::Due);
        if let Some(c) = self.core.lock().conns.get_mut(&conn) {
            c.terminating = true;
            c.send.uploading = true;
        }
        let r = self.inner.terminate_offload(now, conn, &mut VerifyingHost::new(&self.core, host));
        let mut f = Found::default();
        if let Ok(d) = &r {
            let timer = self.inner.push_timer(conn);
            let mut st = self.core.lock();
            if let Some(c) = st.conns.remove(&conn) {
                let id = Some(conn);
                if let Some(h) = c.outstanding.front() {
                    f.add(
                        &rules::R_TRM_2,
                        id,
                        Some(h.id),
                        format!("{} request(s) outstanding at terminate completion", c.outstanding.len()),
                    );
                }
                if c.upcall.is_some() {
                    f.add(&rules::R_TRM_2, id, None, "terminate completed while an upcall is in progress");
                }
                let mut found = Vec::new();
                c.send.on_terminated(&mut found);
                for (rule, nbl, why) in found {
                    f.add(rule, id, nbl, why);
                }
                if timer.is_some() && !st.push_timer_unknown {
                    f.add(&rules::R_TRM_2, id, None, "push timer still running after terminate");
                }
                let mut returned = Vec::new();
                for nbl in d.buffered_data.iter() {
                    if nbl.id().pool() != Some(PoolTag::Target) {
                        f.add(&rules::R_TRM_3, id, Some(nbl.id()), "BufferedData NBL not from the target's pool");
                    }
                    if !st.host_owned.insert(nbl.id()) {
                        f.add(
                            &rules::R_TRM_3,
                            id,
                            Some(nbl.id()),
                            "BufferedData NBL is one the host still owns (indicated and not returned)",
                        );
                    }
                    let nb = nbl.net_buffer();
                    nb.copy_out(nb.data_offset(), nb.data_length(), &mut returned);
                }
                let expect: Vec<u8> = c.pending.iter().copied().collect();
                let aborted = c.rst || c.abortive;
                if !aborted && returned == expect {
                    // The undelivered bytes, compared and handed back: accounted for.
                    st.checked_bytes += returned.len() as u64;
                }
                if (!aborted && returned != expect) || (aborted && !returned.is_empty()) {
                    f.add(
                        &rules::R_TRM_3,
                        id,
                        None,
                        format!(
                            "BufferedData holds {} bytes, {} undelivered bytes expected (or contents differ)",
                            returned.len(),
                            expect.len()
                        ),
                    );
                }
                let after_offload = c.fed - c.offload_buffered_end;
                let fin_after = c.fin && !c.fin_at_offload;
                let want = c.rcv_nxt_offload.wrapping_add(after_offload as u32).wrapping_add(u32::from(fin_after));
                if !c.rst && !c.abortive && d.rcv_nxt != want {
                    f.add(&rules::R_BUF_1, id, None, format!("RcvNxt {} returned, {want} expected", d.rcv_nxt));
                }
                // The delegated TCP state agrees with the FIN: received (CLOSE_WAIT and what
                // follows it) or not (no state that has one).
                if let (false, Some(s)) = (c.rst || c.abortive, d.state) {
                    use crate::ndis::TcpConnectionState as S;
                    let fin_state = matches!(s, S::CloseWait | S::LastAck | S::Closing | S::TimeWait);
                    let open_state = matches!(s, S::Established | S::FinWait1 | S::FinWait2);
                    if c.fin && open_state {
                        f.add(&rules::R_TRM_2, id, None, format!("delegated state {s:?} after the peer's FIN"));
                    } else if !c.fin && fin_state {
                        f.add(&rules::R_TRM_2, id, None, format!("delegated state {s:?} with no FIN received"));
                    }
                }
                st.terminated.insert(conn);
            }
        }
        self.core.report(f);
        self.after();
        r
    }

    fn handle_timeout(&mut self, now: Instant, host: &mut dyn ProtocolHost) {
        {
            let mut st = self.core.lock();
            st.in_timeout = true;
            st.now = now;
        }
        self.inner.handle_timeout(now, &mut VerifyingHost::new(&self.core, host));
        // What the timer call left outstanding (a call that comes late is the driver's
        // doing, and the target fires then).
        self.core.check_push_overdue(now);
        let mut st = self.core.lock();
        st.in_timeout = false;
        // Every connection is judged (each once: the list is rebuilt, not searched, so a
        // timer call stays linear in the connections).
        let mut touched = std::mem::take(&mut st.touched);
        touched.clear();
        touched.extend(st.conns.keys().copied());
        st.touched = touched;
        drop(st);
        // The target had its timer call: what it has owed too long is now a violation.
        let inner = &self.inner;
        self.core.quiescent(&|c| inner.push_timer(c), Judge::Due);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }

    fn push_timer(&self, conn: ConnId) -> Option<Instant> {
        self.inner.push_timer(conn)
    }
}

impl<T: InitiateOffload> InitiateOffload for Verifier<T> {
    fn initiate_offload(
        &mut self,
        now: Instant,
        conn: ConnId,
        state: TcpOffloadState,
        host: &mut dyn ProtocolHost,
    ) -> Result<NblChain, InitiateFailed> {
        self.core.begin_initiate(conn, &state);
        let send_ids: Vec<NblId> = state.delegated.send_data.iter().map(|n| n.id()).collect();
        let r = self.inner.initiate_offload(now, conn, state, &mut VerifyingHost::new(&self.core, host));
        if let Ok(back) = &r {
            let mut f = Found::default();
            for n in back.iter().filter(|n| send_ids.contains(&n.id())) {
                f.add(&rules::R_SND_12, Some(conn), Some(n.id()), "send data handed back by the offload");
            }
            self.core.report(f);
        }
        self.core.end_initiate(conn, r.is_ok());
        self.after();
        r
    }
}

impl<T> Verifier<T> {
    /// Records a top-level post; returns whether the host's post was legal (the connection
    /// offloaded and not terminated, every NBL new to the target), so that refusing it is
    /// the target's fault.
    fn record(core: &VerifierCore, conn: ConnId, nbls: &mut NblChain) -> bool {
        let mut st = core.lock();
        let terminated = st.terminated.contains(&conn);
        let legal = !terminated
            && st
                .conns
                .get(&conn)
                .is_some_and(|c| c.offloaded && nbls.iter().all(|n| c.outstanding.iter().all(|r| r.id != n.id())))
            && nbls.iter().map(|n| n.id()).collect::<HashSet<_>>().len() == nbls.len()
            && !nbls.is_empty();
        VerifierCore::record_posts(&mut st, conn, nbls, false);
        legal
    }

    fn record_returns(core: &VerifierCore, nbls: &NblChain, f: &mut Found) {
        let mut st = core.lock();
        VerifierCore::record_returns(&mut st, nbls, f);
    }
}

/// What `note_data` changed, to undo when the target refuses the bytes.
type SavedFeed = Option<(u64, u64, u64, usize, Option<Instant>)>;

impl<T: OffloadTarget + ReceiveInput> Verifier<T> {
    /// Records `len` in-sequence bytes (appended to the expected stream by `bytes`) before
    /// the target sees them.
    fn note_data(
        &self,
        now: Instant,
        conn: ConnId,
        len: usize,
        psh: bool,
        bytes: &mut dyn FnMut(&mut VecDeque<u8>),
    ) -> SavedFeed {
        let mut st = self.core.lock();
        st.now = now;
        VerifierCore::touch(&mut st, conn);
        st.conns.get_mut(&conn).map(|c| {
            let saved = (c.fed, c.psh_mark, c.last_chunk_start, c.pending.len(), c.push_ref);
            c.last_chunk_start = c.fed;
            bytes(&mut c.pending);
            c.fed += len as u64;
            if len > 0 {
                // Data received starts the push timer, or restarts it if it runs.
                c.push_ref = Some(now);
            }
            if psh {
                c.psh_mark = c.fed;
            }
            saved
        })
    }

    /// Undoes `note_data` when the target refused the bytes, then checks what happened.
    fn undo_data_on_error(&mut self, conn: ConnId, saved: SavedFeed, failed: bool) {
        if failed {
            let mut f = Found::default();
            if let (Some((fed, psh_mark, lcs, plen, push_ref)), Some(c)) =
                (saved, self.core.lock().conns.get_mut(&conn))
            {
                c.push_ref = push_ref;
                // What the call delivered came off the front of `pending`: the older bytes
                // first, then (a fault) bytes of the batch the target refused.
                let before = fed - plen as u64;
                let refused_delivered = c.delivered.saturating_sub(fed);
                if refused_delivered > 0 {
                    f.add(
                        &rules::R_ACC_2,
                        Some(conn),
                        None,
                        format!(
                            "{refused_delivered} bytes of a batch the target refused were delivered (a retransmission would deliver them again)"
                        ),
                    );
                    // They were delivered: they stay fed, so a second delivery is caught.
                    c.fed = c.delivered;
                    c.pending.clear();
                } else {
                    (c.fed, c.psh_mark, c.last_chunk_start) = (fed, psh_mark, lcs);
                    let keep = (fed - c.delivered.max(before)) as usize;
                    c.pending.truncate(keep);
                }
            }
            self.core.report(f);
        } else if let Some((fed, ..)) = saved {
            // Bytes taken after the stream ended: after the FIN there is no stream to take
            // them into; after a RST or an abortive disconnect nothing is processed.
            let mut f = Found::default();
            if let Some(c) = self.core.lock().conns.get(&conn).filter(|c| c.fed > fed) {
                let n = c.fed - fed;
                if c.rst {
                    f.add(&rules::R_RST_1, Some(conn), None, format!("{n} bytes of data accepted after the RST"));
                } else if c.abortive {
                    f.add(
                        &rules::R_ABT_1,
                        Some(conn),
                        None,
                        format!("{n} bytes of data accepted after the abortive disconnect"),
                    );
                } else if c.upload_requested == Some(crate::ndis::TcpUploadReason::ReceivedUrgentData) {
                    f.add(
                        &rules::R_URG_1,
                        Some(conn),
                        None,
                        format!("{n} bytes of data accepted after the upload request for urgent data"),
                    );
                } else if c.fin {
                    f.add(
                        &rules::R_ACC_3,
                        Some(conn),
                        None,
                        format!("{n} bytes of data accepted after the FIN: the stream had ended"),
                    );
                }
            }
            self.core.report(f);
        }
        self.after();
    }
}

impl<T: OffloadTarget + ReceiveInput> ReceiveInput for Verifier<T> {
    fn receive_data(
        &mut self,
        now: Instant,
        conn: ConnId,
        data: &[u8],
        psh: bool,
        host: &mut dyn ProtocolHost,
    ) -> Result<(), ApiMisuse> {
        let saved = self.note_data(now, conn, data.len(), psh, &mut |p| p.extend(data));
        let r = self.inner.receive_data(now, conn, data, psh, &mut VerifyingHost::new(&self.core, host));
        self.undo_data_on_error(conn, saved, r.is_err());
        r
    }

    fn placement_room<'a>(&'a mut self, conn: ConnId, max: usize, out: &mut [&'a mut [u8]]) -> usize {
        self.inner.placement_room(conn, max, out)
    }

    fn indicate_event(
        &mut self,
        now: Instant,
        conn: ConnId,
        event: TcpOffloadEvent,
        host: &mut dyn ProtocolHost,
    ) -> Result<(), ApiMisuse> {
        VerifierCore::touch(&mut self.core.lock(), conn);
        let r = self.inner.indicate_event(now, conn, event, &mut VerifyingHost::new(&self.core, host));
        self.after();
        r
    }

    fn placed_bytes(&self, conn: ConnId, len: usize, f: &mut dyn FnMut(&[u8])) {
        self.inner.placed_bytes(conn, len, f)
    }

    fn receive_placed(
        &mut self,
        now: Instant,
        conn: ConnId,
        len: usize,
        psh: bool,
        host: &mut dyn ProtocolHost,
    ) -> Result<(), ApiMisuse> {
        // The stream is what the driver put into the room; the completions must then show
        // exactly those bytes, in the requests and order the rules demand.
        let inner = &self.inner;
        let saved = self.note_data(now, conn, len, psh, &mut |p| inner.placed_bytes(conn, len, &mut |s| p.extend(s)));
        let r = self.inner.receive_placed(now, conn, len, psh, &mut VerifyingHost::new(&self.core, host));
        self.undo_data_on_error(conn, saved, r.is_err());
        r
    }

    fn receive_fin(&mut self, now: Instant, conn: ConnId, host: &mut dyn ProtocolHost) -> Result<(), ApiMisuse> {
        let was = {
            let mut st = self.core.lock();
            VerifierCore::touch(&mut st, conn);
            st.conns.get_mut(&conn).map(|c| std::mem::replace(&mut c.fin, true))
        };
        let r = self.inner.receive_fin(now, conn, &mut VerifyingHost::new(&self.core, host));
        if r.is_err() {
            if let (Some(was), Some(c)) = (was, self.core.lock().conns.get_mut(&conn)) {
                c.fin = was;
            }
        }
        self.after();
        r
    }

    fn receive_rst(&mut self, now: Instant, conn: ConnId, host: &mut dyn ProtocolHost) -> Result<(), ApiMisuse> {
        {
            let mut st = self.core.lock();
            VerifierCore::touch(&mut st, conn);
            if let Some(c) = st.conns.get_mut(&conn) {
                c.rst = true;
                c.send.reset = true;
                c.end_stream();
            }
        }
        let r = self.inner.receive_rst(now, conn, &mut VerifyingHost::new(&self.core, host));
        self.after();
        r
    }

    fn receive_space(&self, conn: ConnId) -> usize {
        self.inner.receive_space(conn)
    }

    fn receive_window(&self, conn: ConnId) -> usize {
        self.inner.receive_window(conn)
    }
}

impl<T: OffloadTarget + SendInput> SendInput for Verifier<T> {
    fn send_stream(&self, conn: ConnId) -> SendStream {
        self.inner.send_stream(conn)
    }

    fn send_bytes(&mut self, conn: ConnId, from: u64, len: usize, f: &mut dyn FnMut(&[u8])) -> usize {
        let mut found = Found::default();
        let mut at = from;
        let n = self.inner.send_bytes(conn, from, len, &mut |b: &[u8]| {
            let st = at;
            self.core.with_send(conn, &mut found, |s, v| s.on_read(st, b, v));
            at += b.len() as u64;
            f(b)
        });
        self.core.report(found);
        n
    }

    fn send_nbl_end(&self, conn: ConnId, start: u64, end: u64) -> Option<u64> {
        self.inner.send_nbl_end(conn, start, end)
    }

    fn send_acked(
        &mut self,
        now: Instant,
        conn: ConnId,
        upto: u64,
        host: &mut dyn ProtocolHost,
    ) -> Result<(), ApiMisuse> {
        let mut f = Found::default();
        self.core.with_send(conn, &mut f, |s, _| s.on_acked(upto));
        let r = self.inner.send_acked(now, conn, upto, &mut VerifyingHost::new(&self.core, host));
        self.core.report(f);
        self.after();
        r
    }

    fn take_send_ready(&mut self, out: &mut Vec<ConnId>) {
        self.inner.take_send_ready(out)
    }

    fn take_nested_disconnects(&mut self, out: &mut Vec<(ConnId, DisconnectKind, NblChain)>) {
        self.inner.take_nested_disconnects(out)
    }

    fn take_rejected_sends(&mut self) -> Vec<PostRejected> {
        self.inner.take_rejected_sends()
    }
}
