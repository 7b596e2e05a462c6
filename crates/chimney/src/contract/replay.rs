//! Offline verification: a contract trace ([`super::trace`], `docs/trace-format.md`) read
//! back through the verifier.
//!
//! The trace is turned back into calls. A replay target stands in for the traced target: when
//! the verifier forwards a call to it, it performs the upcalls recorded inside that call and
//! returns the recorded result. A replay host stands in for the host: inside each upcall it
//! makes the nested calls recorded there and returns the recorded outcome. NBLs are rebuilt
//! from the trace (ids, MDL layout, used space, statuses, byte counts; bytes when the trace
//! has them, zeros otherwise), so the verifier sees exactly what crossed the interface and
//! checks every rule it checks live. Without recorded bytes, content is not compared (only
//! counts, order and ownership); without push-timer lines, R-CMP-9 is skipped.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use serde_json::Value;

use super::schema::{DataNbl, Line, PostedNbl, RetStatus, SendNbl, SentNbl, MAX_BYTES};
use super::trace::{Outcome, TraceEv, TRACE_VERSION};
use super::{
    ApiMisuse, ConnId, IndicateReturn, InitiateFailed, InitiateOffload, NestedCalls, OffloadTarget, PostRejected,
    ProtocolHost, ReceiveInput, SendInput, Verifier, VerifierMode, Violation,
};
use crate::ndis::{
    DisconnectKind, Mdl, NblChain, NblId, NdisStatus, NetBuffer, NetBufferList, TcpCachedState, TcpConstState,
    TcpDelegatedState, TcpOffloadEvent, TcpOffloadState, TcpUploadReason,
};
use crate::time::Instant;

/// A trace that cannot be replayed: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub msg: String,
}

impl core::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "line {}: {}", self.line, self.msg)
    }
}

impl std::error::Error for ReplayError {}

/// What a replay found.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    /// Lines read (the header included).
    pub lines: usize,
    /// Top-level calls replayed (host calls, engine inputs, timers).
    pub calls: u64,
    /// Connections offloaded in the trace.
    pub connections: usize,
    /// Stream bytes the verifier accounted for.
    pub checked_bytes: u64,
    /// Whether the trace records payload bytes (content compared).
    pub content: bool,
    /// Whether the trace records push-timer state (R-CMP-9 checked).
    pub push_timer: bool,
    /// Every violation, in order.
    pub violations: Vec<Violation>,
    /// Notes: where the target departs from chimney's own choice on a point the contract
    /// leaves open (not violations).
    pub notes: Vec<Violation>,
}

impl ReplayReport {
    /// The distinct rule ids broken, sorted.
    pub fn broken_rules(&self) -> Vec<&'static str> {
        let mut ids: Vec<_> = self.violations.iter().map(|v| v.rule.id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

struct Ev {
    line: usize,
    v: Value,
}

type R<T> = Result<T, ReplayError>;

/// Most bytes the replay holds at once: NBLs posted and not completed, NBLs the host holds,
/// and stream bytes fed but not delivered.
const MAX_LIVE: usize = 1 << 30;

impl Ev {
    fn kind(&self) -> &str {
        self.v.get("ev").and_then(Value::as_str).unwrap_or("")
    }

    /// The line's kind, when it names one.
    fn ev(&self) -> Option<TraceEv> {
        TraceEv::parse(self.kind())
    }

    fn err<T>(&self, msg: impl Into<String>) -> R<T> {
        Err(ReplayError { line: self.line, msg: msg.into() })
    }

    /// The line as its typed record (the schema's one reader).
    fn read(&self) -> R<Line<'static>> {
        Line::read(&self.v).map_err(|msg| ReplayError { line: self.line, msg })
    }

    /// Adds an NBL's bytes to what this line describes (at most [`MAX_BYTES`] in all).
    fn budget(&self, used: &mut usize, nbl: &NetBufferList) -> R<()> {
        *used = used.saturating_add(nbl.net_buffer().chain_len());
        if *used > MAX_BYTES {
            return self.err(format!("`{}` describes more than 64 MiB of buffers", self.kind()));
        }
        Ok(())
    }

    /// A host NBL as posted.
    fn host_nbl(&self, d: &PostedNbl) -> R<NetBufferList> {
        let mdls = d.mdls.iter().map(|&n| Mdl::zeroed(n)).collect();
        let Ok(nb) = NetBuffer::with_used_space(mdls, d.offset, d.length) else {
            return self.err(format!(
                "{}: used space {}+{} lies outside its MDLs",
                super::trace::id_str(d.id),
                d.offset,
                d.length
            ));
        };
        let mut nbl = NetBufferList::new(d.id, nb);
        nbl.set_tcp_receive_no_push(d.no_push);
        nbl.set_tcp_receive_bytes_transferred(d.prefilled);
        Ok(nbl)
    }

    /// A host send NBL as posted (zeros where the trace has no bytes).
    fn send_nbl(&self, d: &SendNbl<'_>) -> R<NetBufferList> {
        let mut nbs = Vec::new();
        for nb in &d.nbs {
            let mdls = nb.mdls.iter().map(|&n| Mdl::zeroed(n)).collect();
            let Ok(mut b) = NetBuffer::with_used_space(mdls, nb.offset, nb.length) else {
                return self.err(format!(
                    "{}: used space {}+{} lies outside its MDLs",
                    super::trace::id_str(d.id),
                    nb.offset,
                    nb.length
                ));
            };
            if let Some(data) = &nb.data {
                b.write_used(0, data);
            }
            nbs.push(b);
        }
        if nbs.is_empty() {
            nbs.push(NetBuffer::with_used_space(vec![Mdl::zeroed(0)], 0, 0).expect("empty"));
        }
        let first = nbs.remove(0);
        Ok(NetBufferList::with_net_buffers(d.id, first, nbs))
    }

    /// A target NBL carrying data (zeros where the trace has no bytes).
    fn target_nbl(d: &DataNbl<'_>) -> NetBufferList {
        let mut bytes = vec![0; d.offset];
        match &d.data {
            Some(b) => bytes.extend_from_slice(b),
            None => bytes.resize(d.offset + d.length, 0),
        }
        let nb = NetBuffer::with_used_space(vec![Mdl::from_bytes(bytes)], d.offset, d.length).expect("sized to fit");
        NetBufferList::new(d.id, nb)
    }

    /// Target NBLs of a line, within the line's budget.
    fn target_chain(&self, nbls: &[DataNbl<'_>]) -> R<NblChain> {
        let (mut chain, mut used) = (NblChain::new(), 0);
        for d in nbls {
            let n = Self::target_nbl(d);
            self.budget(&mut used, &n)?;
            chain.push_back(n);
        }
        Ok(chain)
    }
}

/// The trace's lines, read one at a time (a long trace is never held whole).
type Lines = Box<dyn Iterator<Item = std::io::Result<String>>>;

#[derive(Default)]
struct Script {
    src: Option<Lines>,
    /// Number of the last line read.
    line_no: usize,
    err: Option<ReplayError>,
    /// Host NBLs the target holds (posted, not completed), by id.
    posted: HashMap<NblId, NetBufferList>,
    /// Target NBLs the host holds (accepted indications, BufferedData), by id.
    held: HashMap<NblId, NetBufferList>,
    timers: HashMap<ConnId, Option<Instant>>,
    conns: HashSet<ConnId>,
    /// Offloads that succeeded (connections, counting a reused id once per connection).
    offloads: usize,
    now: Option<Instant>,
    /// Bytes of the NBLs in `posted` and `held`.
    nbl_bytes: usize,
    /// Stream bytes fed per offloaded connection, their sum, and the bytes delivered on
    /// connections since terminated: what the verifier holds undelivered is bounded with them.
    fed: HashMap<ConnId, u64>,
    fed_live: u64,
    delivered_gone: u64,
    /// The bytes of the `send_read` line being replayed (None: not recorded).
    read_data: Option<Vec<u8>>,
    /// The trace's schema version.
    version: u64,
    /// Faults seen while reading a line that the verifier cannot see in the NBLs it is
    /// handed (a field no `NetBuffer` can hold), reported after the line.
    flagged: Vec<super::Violation>,
    /// A line read ahead and put back (the next `next` returns it).
    peeked: Option<Ev>,
    /// The verifier's core: upcalls nested inside a host call made from an upcall (version 3)
    /// go through it again, so that it sees the nesting.
    core: Option<Arc<super::VerifierCore>>,
}

impl Script {
    fn next(&mut self) -> Option<Ev> {
        if self.err.is_some() {
            return None;
        }
        if let Some(ev) = self.peeked.take() {
            return Some(ev);
        }
        loop {
            let line = match self.src.as_mut()?.next() {
                None => {
                    self.src = None;
                    return None;
                }
                Some(Err(e)) => {
                    let line = self.line_no + 1;
                    self.fail(ReplayError { line, msg: format!("reading the trace: {e}") });
                    return None;
                }
                Some(Ok(l)) => l,
            };
            self.line_no += 1;
            if line.trim().is_empty() {
                continue;
            }
            let line_no = self.line_no;
            let v: Value = match serde_json::from_str(&line) {
                Ok(v @ Value::Object(_)) => v,
                Ok(_) => {
                    self.fail(ReplayError { line: line_no, msg: "each line must be a JSON object".into() });
                    return None;
                }
                Err(e) => {
                    self.fail(ReplayError { line: line_no, msg: format!("not JSON: {e}") });
                    return None;
                }
            };
            if let Some(t) = v.get("t").and_then(Value::as_u64) {
                self.now = Some(Instant::from_nanos(t));
            }
            return Some(Ev { line: line_no, v });
        }
    }

    /// The next line inside an open call: the end of the trace there is an error.
    fn next_inside(&mut self) -> Option<Ev> {
        let ev = self.next();
        if ev.is_none() && self.err.is_none() {
            let line = self.line_no.max(1);
            self.fail(ReplayError { line, msg: "the trace ends inside a call: its `ret` line is missing".into() });
        }
        ev
    }

    fn fail(&mut self, e: ReplayError) {
        if self.err.is_none() {
            self.err = Some(e);
        }
    }

    fn ok<T>(&mut self, r: R<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.fail(e);
                None
            }
        }
    }

    /// Takes `n` more bytes of NBLs into the replay's keeping (posted or held).
    fn keep(&mut self, line: usize, n: usize) -> Option<()> {
        if self.nbl_bytes.saturating_add(n) > MAX_LIVE {
            self.fail(ReplayError { line, msg: "more than 1 GiB of NBLs outstanding at once".into() });
            return None;
        }
        self.nbl_bytes += n;
        Some(())
    }

    fn post_keep(&mut self, line: usize, nbl: NetBufferList) -> Option<()> {
        self.keep(line, nbl.net_buffer().chain_len())?;
        if let Some(old) = self.posted.insert(nbl.id(), nbl) {
            self.nbl_bytes -= old.net_buffer().chain_len();
        }
        Some(())
    }

    fn posted_take(&mut self, id: NblId) -> Option<NetBufferList> {
        let n = self.posted.remove(&id)?;
        self.nbl_bytes -= n.net_buffer().chain_len();
        Some(n)
    }

    fn set_timer(&mut self, ev: &Ev) {
        match ev.read() {
            Ok(Line::PushTimer { conn, due }) => {
                self.timers.insert(conn, due.map(Instant::from_nanos));
            }
            Ok(_) => {}
            Err(e) => self.fail(e),
        }
    }

    /// A `post` line's connection and NBLs.
    fn post_chain(&mut self, ev: &Ev) -> Option<(ConnId, NblChain)> {
        let r = (|| {
            let Line::Post { conn, nbls, .. } = ev.read()? else { return ev.err("not a `post`") };
            let (mut chain, mut used) = (NblChain::new(), 0);
            for d in &nbls {
                let n = ev.host_nbl(d)?;
                ev.budget(&mut used, &n)?;
                chain.push_back(n);
            }
            Ok((conn, chain))
        })();
        self.ok(r)
    }

    /// A `send` line's connection and NBLs.
    fn send_chain(&mut self, ev: &Ev) -> Option<(ConnId, NblChain)> {
        let r = (|| {
            let Line::Send { conn, nbls, .. } = ev.read()? else { return ev.err("not a `send`") };
            let (mut chain, mut used) = (NblChain::new(), 0);
            for d in &nbls {
                let n = ev.send_nbl(d)?;
                ev.budget(&mut used, &n)?;
                chain.push_back(n);
            }
            Ok((conn, chain))
        })();
        self.ok(r)
    }

    /// A completed send NBL rebuilt from the one posted (a stand-in if never posted).
    fn sent_back(&mut self, d: &SentNbl) -> NetBufferList {
        let mut nbl = self.posted_take(d.id).unwrap_or_else(|| {
            NetBufferList::new(d.id, NetBuffer::with_used_space(vec![Mdl::zeroed(0)], 0, 0).expect("empty"))
        });
        for (nb, &(off, len)) in nbl.net_buffers_mut().zip(&d.nbs) {
            if nb.reset_used_space(off, len).is_err() {
                // Outside its MDLs: left as posted; the verifier sees the count disagree.
            }
        }
        nbl.status = d.status;
        nbl.set_tcp_offload_bytes_transferred(d.bytes_transferred);
        nbl
    }

    /// The NBLs a `return` line names, from what the host holds (an id it does not hold
    /// becomes an empty stand-in, which the verifier reports).
    fn returned(&mut self, ev: &Ev) -> Option<NblChain> {
        let ids = match ev.read() {
            Ok(Line::Return { nbls, .. }) => nbls,
            Ok(_) => return None,
            Err(e) => {
                self.fail(e);
                return None;
            }
        };
        let mut chain = NblChain::new();
        for id in ids {
            let nbl =
                self.held.remove(&id).inspect(|n| self.nbl_bytes -= n.net_buffer().chain_len()).unwrap_or_else(|| {
                    NetBufferList::new(id, NetBuffer::with_used_space(vec![Mdl::zeroed(0)], 0, 0).expect("empty"))
                });
            chain.push_back(nbl);
        }
        Some(chain)
    }

    /// A `complete` line's chain: the posted NBLs by id with what the target wrote into
    /// them (ids never posted become stand-ins of the described size).
    fn completion(&mut self, ev: &Ev) -> Option<(ConnId, NblChain)> {
        let r = (|| {
            let Line::Complete { conn, nbls, .. } = ev.read()? else { return ev.err("not a `complete`") };
            let mut chain = NblChain::new();
            for d in &nbls {
                let (id, off, len) = (d.id, d.offset, d.length);
                let mut nbl = match self.posted_take(id) {
                    Some(n) => n,
                    None if off.saturating_add(len) > MAX_BYTES => {
                        return ev.err("a completed NBL never posted, over 64 MiB");
                    }
                    None => {
                        let nb =
                            NetBuffer::with_used_space(vec![Mdl::zeroed(off.saturating_add(len).min(MAX_BYTES))], 0, 0);
                        NetBufferList::new(id, nb.expect("empty used space"))
                    }
                };
                // A data start (or a length) past the end of the request's MDLs is a fault of
                // the target's, not an unreadable trace: the NBL goes on clamped to its MDLs
                // (the recorded bytes ending at the clamped data start) and the fault is
                // reported under R-ACC-1, as its fields cannot describe the advance it claims.
                let cap = nbl.net_buffer().chain_len();
                let (off_c, len_c) = (off.min(cap), len.min(cap - off.min(cap)));
                if (off_c, len_c) != (off, len) {
                    self.flagged.push(super::Violation {
                        rule: &super::rules::R_ACC_1,
                        conn: Some(conn),
                        nbl: Some(id),
                        detail: format!(
                            "completed with DataOffset {off} and DataLength {len}: past the end of its {cap} bytes of MDLs (line {})",
                            ev.line
                        ),
                    });
                }
                if let Some(placed) = &d.data {
                    // The bytes placed: they end at the advanced data start.
                    let nb = nbl.net_buffer_mut();
                    let n = placed.len().min(off_c);
                    if nb.reset_used_space(off_c - n, n).is_ok() {
                        nb.write_used(0, &placed[placed.len() - n..]);
                    }
                }
                if nbl.net_buffer_mut().reset_used_space(off_c, len_c).is_err() {
                    return ev.err(format!(
                        "completion of {}: used space {off}+{len} lies outside its MDLs",
                        super::trace::id_str(id)
                    ));
                }
                nbl.status = d.status;
                nbl.set_tcp_offload_bytes_transferred(d.bytes_transferred);
                chain.push_back(nbl);
            }
            Ok((conn, chain))
        })();
        self.ok(r)
    }

    fn indication(&mut self, ev: &Ev) -> Option<(ConnId, NblChain, NdisStatus)> {
        let r = (|| {
            let Line::Indicate { conn, status, nbls, .. } = ev.read()? else { return ev.err("not an `indicate`") };
            Ok((conn, ev.target_chain(&nbls)?, status))
        })();
        self.ok(r)
    }

    fn event(&mut self, ev: &Ev) -> Option<(ConnId, TcpOffloadEvent)> {
        let r = match ev.read() {
            Ok(Line::Event { conn, event, .. }) => Ok((conn, event)),
            Ok(_) => ev.err("not an `event`"),
            Err(e) => Err(e),
        };
        self.ok(r)
    }

    fn hold(&mut self, line: usize, mut chain: NblChain) {
        while let Some(n) = chain.pop_front() {
            if self.keep(line, n.net_buffer().chain_len()).is_none() {
                return;
            }
            if let Some(old) = self.held.insert(n.id(), n) {
                self.nbl_bytes -= old.net_buffer().chain_len();
            }
        }
    }

    /// Checks that feeding `len` more bytes to `conn` keeps what the verifier holds
    /// undelivered within bounds; counts them.
    fn feed(&mut self, line: usize, conn: ConnId, len: usize, delivered_total: u64) -> Option<()> {
        let undelivered = self.fed_live.saturating_sub(delivered_total.saturating_sub(self.delivered_gone));
        if undelivered.saturating_add(len as u64) > MAX_LIVE as u64 {
            self.fail(ReplayError { line, msg: "more than 1 GiB fed and not delivered".into() });
            return None;
        }
        *self.fed.entry(conn).or_default() += len as u64;
        self.fed_live += len as u64;
        Some(())
    }

    /// A connection leaves: what it was fed and what it delivered no longer count.
    fn gone(&mut self, conn: ConnId, delivered: u64) {
        if let Some(f) = self.fed.remove(&conn) {
            self.fed_live -= f;
            self.delivered_gone += delivered;
        }
    }
}

type Shared = Rc<RefCell<Script>>;

/// Stands in for the traced target.
struct ReplayTarget {
    s: Shared,
}

impl ReplayTarget {
    /// Performs the upcalls recorded inside the call in progress; returns its `ret` line.
    fn run_scope(&mut self, host: &mut dyn ProtocolHost) -> Option<Ev> {
        loop {
            let ev = self.s.borrow_mut().next_inside()?;
            match ev.ev() {
                Some(TraceEv::Ret) => return Some(ev),
                Some(TraceEv::PushTimer) => self.s.borrow_mut().set_timer(&ev),
                Some(TraceEv::Complete) => {
                    let (conn, chain) = self.s.borrow_mut().completion(&ev)?;
                    let mut nested = NestedCalls::new();
                    host.receive_complete(conn, chain, &mut nested);
                    self.absorb(nested);
                }
                Some(TraceEv::Indicate) => {
                    let (conn, chain, status) = self.s.borrow_mut().indication(&ev)?;
                    let mut nested = NestedCalls::new();
                    let _back = host.receive_indicate(conn, chain, status, &mut nested);
                    self.absorb(nested);
                }
                Some(TraceEv::Event) => {
                    let (conn, e) = self.s.borrow_mut().event(&ev)?;
                    let mut nested = NestedCalls::new();
                    host.event_indicate(conn, e, &mut nested);
                    self.absorb(nested);
                }
                Some(TraceEv::SendComplete) => {
                    let line = ev.read();
                    let Some(Line::SendComplete { conn, nbls, .. }) = self.s.borrow_mut().ok(line) else { return None };
                    let chain: NblChain = nbls.iter().map(|d| self.s.borrow_mut().sent_back(d)).collect();
                    let mut nested = NestedCalls::new();
                    host.send_complete(conn, chain, &mut nested);
                    self.absorb(nested);
                }
                Some(TraceEv::DisconnectComplete) => {
                    let line = ev.read();
                    let Some(Line::DisconnectComplete { conn, status, nbl, .. }) = self.s.borrow_mut().ok(line) else {
                        return None;
                    };
                    let chain: NblChain = nbl.iter().map(|d| self.s.borrow_mut().sent_back(d)).collect();
                    let mut nested = NestedCalls::new();
                    host.disconnect_complete(conn, chain, status, &mut nested);
                    self.absorb(nested);
                }
                _ => {
                    let msg = format!(
                        "`{}` inside a call into the target (expected an upcall, push_timer or ret)",
                        ev.kind()
                    );
                    self.s.borrow_mut().fail(ReplayError { line: ev.line, msg });
                    return None;
                }
            }
        }
    }

    /// Takes what the host did inside an upcall: posted NBLs are now the target's.
    fn absorb(&mut self, mut nested: NestedCalls) {
        let mut s = self.s.borrow_mut();
        let line = s.line_no;
        let mut posts: Vec<_> = nested.drain_posts().collect();
        posts.extend(nested.drain_sends());
        for (_, mut chain) in posts {
            while let Some(n) = chain.pop_front() {
                if s.post_keep(line, n).is_none() {
                    return;
                }
            }
        }
        drop(nested.take_returns());
    }

    fn ret_status(&mut self, ret: &Option<Ev>) -> Option<Result<NdisStatus, String>> {
        let ev = ret.as_ref()?;
        match ev.read() {
            Ok(Line::Ret(r)) => match r.status {
                Some(RetStatus::Error) => Some(Err(r.error.unwrap_or_default())),
                Some(RetStatus::Ndis(s)) => Some(Ok(s)),
                None => Some(Ok(NdisStatus::Success)),
            },
            Ok(_) => Some(Ok(NdisStatus::Success)),
            Err(e) => {
                self.s.borrow_mut().fail(e);
                None
            }
        }
    }
}

impl OffloadTarget for ReplayTarget {
    fn receive(
        &mut self,
        _now: Instant,
        _conn: ConnId,
        mut nbls: NblChain,
        host: &mut dyn ProtocolHost,
    ) -> Result<NdisStatus, PostRejected> {
        let mut ids = Vec::new();
        {
            let mut s = self.s.borrow_mut();
            let line = s.line_no;
            while let Some(n) = nbls.pop_front() {
                ids.push(n.id());
                if s.post_keep(line, n).is_none() {
                    break;
                }
            }
        }
        let ret = self.run_scope(host);
        match self.ret_status(&ret) {
            Some(Ok(status)) => Ok(status),
            Some(Err(_)) => {
                let mut s = self.s.borrow_mut();
                let back = ids.iter().filter_map(|&id| s.posted_take(id)).collect();
                Err(PostRejected { nbls: back, error: ApiMisuse::RefusedInTrace })
            }
            None => Ok(NdisStatus::Pending),
        }
    }

    fn receive_return(&mut self, _now: Instant, nbls: NblChain, host: &mut dyn ProtocolHost) -> NdisStatus {
        drop(nbls);
        let ret = self.run_scope(host);
        match self.ret_status(&ret) {
            Some(Ok(s)) => s,
            Some(Err(_)) => NdisStatus::Failure,
            None => NdisStatus::Success,
        }
    }

    fn disconnect(
        &mut self,
        _now: Instant,
        _conn: ConnId,
        _kind: DisconnectKind,
        nbl: NblChain,
        host: &mut dyn ProtocolHost,
    ) -> Result<NdisStatus, PostRejected> {
        let ids: Vec<NblId> = nbl.iter().map(|n| n.id()).collect();
        {
            let mut s = self.s.borrow_mut();
            let line = s.line_no;
            for n in nbl {
                if s.post_keep(line, n).is_none() {
                    break;
                }
            }
        }
        let ret = self.run_scope(host);
        match self.ret_status(&ret) {
            // Version 1 traces write SUCCESS for a disconnect taken.
            Some(Ok(NdisStatus::Success)) if self.s.borrow().version == 1 => Ok(NdisStatus::Pending),
            Some(Ok(st)) => Ok(st),
            None => Ok(NdisStatus::Pending),
            _ => {
                let back = ids.iter().filter_map(|&id| self.s.borrow_mut().posted_take(id)).collect();
                Err(PostRejected { nbls: back, error: ApiMisuse::RefusedInTrace })
            }
        }
    }

    fn send(
        &mut self,
        _now: Instant,
        conn: ConnId,
        nbls: NblChain,
        host: &mut dyn ProtocolHost,
    ) -> Result<NdisStatus, PostRejected> {
        let ids: Vec<NblId> = nbls.iter().map(|n| n.id()).collect();
        {
            let mut s = self.s.borrow_mut();
            let line = s.line_no;
            for n in nbls {
                if s.post_keep(line, n).is_none() {
                    break;
                }
            }
        }
        let ret = self.run_scope(host);
        match self.ret_status(&ret) {
            Some(Ok(st)) => Ok(st),
            Some(Err(msg)) => {
                let back = ids.iter().filter_map(|&id| self.s.borrow_mut().posted_take(id)).collect();
                // The refusal's words say why (`ApiMisuse`'s text).
                let closed = msg == ApiMisuse::SendClosed(conn).to_string();
                let error = if closed { ApiMisuse::SendClosed(conn) } else { ApiMisuse::RefusedInTrace };
                Err(PostRejected { nbls: back, error })
            }
            None => Ok(NdisStatus::Pending),
        }
    }

    fn terminate_offload(
        &mut self,
        _now: Instant,
        conn: ConnId,
        host: &mut dyn ProtocolHost,
    ) -> Result<TcpDelegatedState, ApiMisuse> {
        let ret = self.run_scope(host);
        let Some(Ok(NdisStatus::Success)) = self.ret_status(&ret) else {
            return Err(ApiMisuse::UnknownConnection(conn));
        };
        let ev = ret.expect("status came from it");
        let r = (|| {
            let Line::Ret(r) = ev.read()? else { return ev.err("not a `ret`") };
            let buffered = ev.target_chain(r.buffered.as_deref().unwrap_or(&[]))?;
            let Some(rcv_nxt) = r.rcv_nxt else { return ev.err("`ret`: field `rcv_nxt` missing") };
            Ok(TcpDelegatedState {
                state: r.state.flatten(),
                rcv_nxt,
                buffered_data: buffered,
                ..TcpDelegatedState::default()
            })
        })();
        self.s.borrow_mut().ok(r).ok_or(ApiMisuse::UnknownConnection(conn))
    }

    fn handle_timeout(&mut self, _now: Instant, host: &mut dyn ProtocolHost) {
        let _ = self.run_scope(host);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    fn push_timer(&self, conn: ConnId) -> Option<Instant> {
        self.s.borrow().timers.get(&conn).copied().flatten()
    }
}

impl InitiateOffload for ReplayTarget {
    fn initiate_offload(
        &mut self,
        _now: Instant,
        conn: ConnId,
        state: TcpOffloadState,
        host: &mut dyn ProtocolHost,
    ) -> Result<NblChain, InitiateFailed> {
        let ret = self.run_scope(host);
        match self.ret_status(&ret) {
            Some(Ok(NdisStatus::Success)) => {
                let mut st = self.s.borrow_mut();
                st.conns.insert(conn);
                // Every offload counts: an id is reused once its connection has ended.
                st.offloads += 1;
                drop(st);
                Ok(state.delegated.buffered_data)
            }
            Some(Ok(status)) => Err(InitiateFailed { status, error: None, state: Box::new(state) }),
            _ => Err(InitiateFailed { status: NdisStatus::Failure, error: None, state: Box::new(state) }),
        }
    }
}

impl ReplayTarget {
    fn input_result(&mut self, conn: ConnId, host: &mut dyn ProtocolHost) -> Result<(), ApiMisuse> {
        let ret = self.run_scope(host);
        match self.ret_status(&ret) {
            Some(Ok(NdisStatus::Success)) | None => Ok(()),
            _ => Err(ApiMisuse::NotReceiving(conn)),
        }
    }
}

impl ReceiveInput for ReplayTarget {
    fn receive_data(
        &mut self,
        _now: Instant,
        conn: ConnId,
        _data: &[u8],
        _psh: bool,
        host: &mut dyn ProtocolHost,
    ) -> Result<(), ApiMisuse> {
        self.input_result(conn, host)
    }

    fn receive_fin(&mut self, _now: Instant, conn: ConnId, host: &mut dyn ProtocolHost) -> Result<(), ApiMisuse> {
        self.input_result(conn, host)
    }

    fn receive_rst(&mut self, _now: Instant, conn: ConnId, host: &mut dyn ProtocolHost) -> Result<(), ApiMisuse> {
        self.input_result(conn, host)
    }

    fn indicate_event(
        &mut self,
        _now: Instant,
        conn: ConnId,
        _event: TcpOffloadEvent,
        host: &mut dyn ProtocolHost,
    ) -> Result<(), ApiMisuse> {
        self.input_result(conn, host)
    }

    fn receive_space(&self, _conn: ConnId) -> usize {
        usize::MAX / 2
    }

    fn receive_window(&self, _conn: ConnId) -> usize {
        usize::MAX / 2
    }
}

/// Stands in for the host.
struct ReplayHost {
    s: Shared,
}

impl ReplayHost {
    /// Makes the host calls recorded inside the upcall in progress; returns its `ret` line.
    fn run_upcall(&mut self, nested: &mut NestedCalls) -> Option<Ev> {
        loop {
            let ev = self.s.borrow_mut().next_inside()?;
            match ev.ev() {
                Some(TraceEv::Ret) => return Some(ev),
                Some(TraceEv::PushTimer) => self.s.borrow_mut().set_timer(&ev),
                Some(TraceEv::Post) => {
                    let (conn, chain) = self.s.borrow_mut().post_chain(&ev)?;
                    nested.post_receive(conn, chain);
                    self.close_nested()?;
                }
                Some(TraceEv::Return) => {
                    let chain = self.s.borrow_mut().returned(&ev)?;
                    nested.receive_return(chain);
                    self.close_nested()?;
                }
                Some(TraceEv::Send) => {
                    let (conn, chain) = self.s.borrow_mut().send_chain(&ev)?;
                    nested.post_send(conn, chain);
                    self.close_nested()?;
                }
                _ => {
                    let msg = format!("`{}` inside an upcall (expected post, return, send or ret)", ev.kind());
                    self.s.borrow_mut().fail(ReplayError { line: ev.line, msg });
                    return None;
                }
            }
        }
    }

    /// The `ret` of a call made from inside an upcall. From version 3 the target's upcalls
    /// may sit inside it (a target that completes synchronously inside the host's nested
    /// post): they are replayed through the verifier again, which sees them nested in the
    /// upcall in progress (R-CMP-5, R-CMP-6). Before, nothing may happen inside it.
    fn close_nested(&mut self) -> Option<()> {
        let ev = self.s.borrow_mut().next_inside()?;
        if ev.ev() == Some(TraceEv::Ret) {
            return Some(());
        }
        let upcall = matches!(
            ev.ev(),
            Some(
                TraceEv::Complete
                    | TraceEv::Indicate
                    | TraceEv::Event
                    | TraceEv::SendComplete
                    | TraceEv::DisconnectComplete
                    | TraceEv::PushTimer
            )
        );
        let (core, v3) = {
            let s = self.s.borrow();
            (s.core.clone(), s.version >= 3)
        };
        if let (true, true, Some(core)) = (upcall, v3, core) {
            self.s.borrow_mut().peeked = Some(ev);
            let mut host = ReplayHost { s: self.s.clone() };
            let mut target = ReplayTarget { s: self.s.clone() };
            return target.run_scope(&mut super::VerifyingHost::new(&core, &mut host)).map(|_| ());
        }
        let msg = format!("`{}` inside a call made from an upcall (expected its ret)", ev.kind());
        self.s.borrow_mut().fail(ReplayError { line: ev.line, msg });
        None
    }
}

impl ProtocolHost for ReplayHost {
    fn receive_complete(&mut self, _conn: ConnId, nbls: NblChain, nested: &mut NestedCalls) {
        drop(nbls);
        let _ = self.run_upcall(nested);
    }

    fn receive_indicate(
        &mut self,
        _conn: ConnId,
        nbl: NblChain,
        _status: NdisStatus,
        nested: &mut NestedCalls,
    ) -> IndicateReturn {
        let Some(ret) = self.run_upcall(nested) else {
            return IndicateReturn::NotAccepted(nbl);
        };
        // Both spellings of a refusal count (A2: Outcome::parse).
        let r = match ret.read() {
            Ok(Line::Ret(r)) => r,
            Ok(_) => return IndicateReturn::NotAccepted(nbl),
            Err(e) => {
                self.s.borrow_mut().fail(e);
                return IndicateReturn::NotAccepted(nbl);
            }
        };
        match r.outcome {
            Some(Outcome::Success) => {
                self.s.borrow_mut().hold(ret.line, nbl);
                IndicateReturn::Success
            }
            Some(Outcome::PartiallyAccepted) => {
                let c = r.consumed.ok_or(ReplayError { line: ret.line, msg: "`ret`: field `consumed` missing".into() });
                match self.s.borrow_mut().ok(c) {
                    Some(bytes_consumed) => IndicateReturn::PartiallyAccepted { nbl, bytes_consumed },
                    None => IndicateReturn::NotAccepted(nbl),
                }
            }
            Some(Outcome::NotAccepted) => IndicateReturn::NotAccepted(nbl),
            _ => {
                let msg = "an indication's ret needs `outcome`: SUCCESS, NOT_ACCEPTED or PARTIALLY_ACCEPTED".into();
                self.s.borrow_mut().fail(ReplayError { line: ret.line, msg });
                IndicateReturn::NotAccepted(nbl)
            }
        }
    }

    fn event_indicate(&mut self, _conn: ConnId, _event: TcpOffloadEvent, nested: &mut NestedCalls) {
        let _ = self.run_upcall(nested);
    }

    fn send_complete(&mut self, _conn: ConnId, nbls: NblChain, nested: &mut NestedCalls) {
        drop(nbls);
        let _ = self.run_upcall(nested);
    }

    fn disconnect_complete(&mut self, _conn: ConnId, nbl: NblChain, _status: NdisStatus, nested: &mut NestedCalls) {
        drop(nbl);
        let _ = self.run_upcall(nested);
    }
}

impl SendInput for ReplayTarget {
    fn send_bytes(&mut self, _conn: ConnId, _from: u64, _len: usize, f: &mut dyn FnMut(&[u8])) -> usize {
        match self.s.borrow_mut().read_data.take() {
            Some(d) => {
                f(&d);
                d.len()
            }
            None => 0,
        }
    }

    fn send_acked(
        &mut self,
        _now: Instant,
        conn: ConnId,
        _upto: u64,
        host: &mut dyn ProtocolHost,
    ) -> Result<(), ApiMisuse> {
        self.input_result(conn, host)
    }
}

/// Replays the trace in `text` (JSON lines) through the verifier.
pub fn replay(text: &str) -> Result<ReplayReport, ReplayError> {
    let lines: Vec<std::io::Result<String>> = text.lines().map(|l| Ok(l.to_string())).collect();
    replay_lines(Box::new(lines.into_iter()))
}

/// Replays a trace read line by line from `r` (a file, standard input): a long trace is
/// never held in memory whole.
pub fn replay_reader(r: impl std::io::BufRead + 'static) -> Result<ReplayReport, ReplayError> {
    replay_lines(Box::new(r.lines()))
}

fn replay_lines(src: Lines) -> Result<ReplayReport, ReplayError> {
    let s: Shared = Rc::new(RefCell::new(Script { src: Some(src), ..Script::default() }));
    let head = s.borrow_mut().next();
    if let Some(e) = s.borrow().err.clone() {
        return Err(e);
    }
    let Some(head) = head else {
        return Err(ReplayError { line: 1, msg: "empty trace".into() });
    };
    let version = head.v.get("chimney_trace").and_then(Value::as_u64);
    match version {
        Some(1..=TRACE_VERSION) => {}
        Some(v) => {
            return Err(ReplayError {
                line: head.line,
                msg: format!("trace version {v}; this chimney reads versions 1 to {TRACE_VERSION}"),
            })
        }
        None => {
            return Err(ReplayError {
                line: head.line,
                msg: format!("not a chimney trace: the first line must be {{\"chimney_trace\":{TRACE_VERSION},...}}"),
            })
        }
    }
    let version = version.unwrap_or(TRACE_VERSION);
    s.borrow_mut().version = version;
    let content = head.v.get("bytes").and_then(Value::as_bool).unwrap_or(false);
    let push_timer = head.v.get("push_timer").and_then(Value::as_bool).unwrap_or(false);
    let mut v = Verifier::new(ReplayTarget { s: s.clone() }, VerifierMode::Collect);
    s.borrow_mut().core = Some(Arc::clone(v.core()));
    v.core().set_push_timer_unknown(!push_timer);
    // The target's push time (TcpPushTicks), when not the default 500 ms; null: unknown.
    match head.v.get("push_ms") {
        Some(Value::Null) => v.core().set_push_timeout(None),
        Some(ms) => v.core().set_push_timeout(ms.as_u64().map(std::time::Duration::from_millis)),
        None => {}
    }
    // Version 1 traces model no disconnect NBL and no disconnect completion.
    v.core().set_untracked_disconnects(version == 1);
    let mut host = ReplayHost { s: s.clone() };
    let mut calls = 0u64;
    loop {
        let next = s.borrow_mut().next();
        let Some(ev) = next else { break };
        let now = s.borrow().now.unwrap_or(Instant::ZERO);
        calls += 1;
        match ev.ev() {
            Some(TraceEv::PushTimer) => {
                calls -= 1;
                s.borrow_mut().set_timer(&ev);
            }
            Some(TraceEv::Ret) => {
                s.borrow_mut().fail(ReplayError { line: ev.line, msg: "`ret` with no call open".into() })
            }
            Some(TraceEv::Complete | TraceEv::Indicate | TraceEv::Event) => s.borrow_mut().fail(ReplayError {
                line: ev.line,
                msg: format!(
                    "`{}` outside any call: every upcall sits inside the call, input (data/fin/rst) or timer that caused it",
                    ev.kind()
                ),
            }),
            Some(_) => {
                let line = s.borrow_mut().ok(ev.read());
                match line {
                    Some(Line::Offload {
                        conn,
                        rcv_nxt,
                        state,
                        initial_rcv_wnd,
                        rcv_indication_size,
                        local_port,
                        remote_port,
                        buffered,
                        ..
                    }) => {
                        let r = ev.target_chain(&buffered).map(|chain| {
                            // BufferedData at offload comes from the host.
                            let mut host_owned = NblChain::new();
                            for n in chain.iter() {
                                let id = n.id();
                                let id = if id.pool() == Some(crate::ndis::PoolTag::Target) {
                                    NblId::new(crate::ndis::PoolTag::Host, id.0 & 0xFFFF_FFFF_FFFF)
                                } else {
                                    id
                                };
                                host_owned.push_back(NetBufferList::new(id, n.net_buffer().clone()));
                            }
                            TcpOffloadState {
                                constant: TcpConstState { local_port, remote_port, ..TcpConstState::default() },
                                cached: TcpCachedState { initial_rcv_wnd, rcv_indication_size },
                                delegated: TcpDelegatedState {
                                    state,
                                    rcv_nxt,
                                    buffered_data: host_owned,
                                    ..TcpDelegatedState::default()
                                },
                            }
                        });
                        let state = s.borrow_mut().ok(r);
                        if let Some(state) = state {
                            let held: usize =
                                state.delegated.buffered_data.iter().map(|n| n.net_buffer().data_length()).sum();
                            let checked = v.core().checked_bytes();
                            let delivered = v.core().delivered(conn);
                            // A re-offload under the same id starts a new stream.
                            s.borrow_mut().gone(conn, delivered);
                            if s.borrow_mut().feed(ev.line, conn, held, checked).is_some() {
                                let _ = v.initiate_offload(now, conn, state, &mut host);
                            }
                        }
                    }
                    Some(Line::Post { .. }) => {
                        let posted = s.borrow_mut().post_chain(&ev);
                        if let Some((conn, chain)) = posted {
                            let _ = v.receive(now, conn, chain, &mut host);
                        }
                    }
                    Some(Line::Return { .. }) => {
                        let chain = s.borrow_mut().returned(&ev);
                        if let Some(chain) = chain {
                            let _ = v.receive_return(now, chain, &mut host);
                        }
                    }
                    Some(Line::Disconnect { conn, abortive, nbl, .. }) => {
                        let kind = if abortive { DisconnectKind::Abortive } else { DisconnectKind::Graceful };
                        let built = nbl.map(|d| ev.send_nbl(&d)).transpose();
                        let built = s.borrow_mut().ok(built);
                        if let Some(one) = built {
                            let chain: NblChain = one.into_iter().collect();
                            let _ = v.disconnect(now, conn, kind, chain, &mut host);
                        }
                    }
                    Some(Line::Send { .. }) => {
                        let sent = s.borrow_mut().send_chain(&ev);
                        if let Some((conn, chain)) = sent {
                            let _ = v.send(now, conn, chain, &mut host);
                        }
                    }
                    Some(Line::SendAcked { conn, upto, .. }) => {
                        let _ = v.send_acked(now, conn, upto, &mut host);
                    }
                    Some(Line::SendRead { conn, at, len, data, .. }) => {
                        calls -= 1;
                        let has = data.is_some();
                        s.borrow_mut().read_data = data.map(|d| d.into_owned());
                        if has {
                            let _ = v.send_bytes(conn, at, len, &mut |_| {});
                        }
                    }
                    Some(Line::Terminate { conn, .. }) => {
                        let delivered = v.core().delivered(conn);
                        if let Ok(d) = v.terminate_offload(now, conn, &mut host) {
                            let mut sc = s.borrow_mut();
                            sc.gone(conn, delivered);
                            sc.hold(ev.line, d.buffered_data);
                        }
                    }
                    Some(Line::Timer { .. }) => v.handle_timeout(now, &mut host),
                    Some(Line::TcpEvent { conn, .. }) => {
                        // The event itself is the upcall recorded inside; the scope names the cause.
                        let e = TcpOffloadEvent::Retrieve(TcpUploadReason::UploadRequested);
                        let _ = v.indicate_event(now, conn, e, &mut host);
                    }
                    Some(Line::Data { conn, len, psh, data, .. }) => {
                        let bytes = data.map_or_else(|| vec![0; len], |d| d.into_owned());
                        let checked = v.core().checked_bytes();
                        if s.borrow_mut().feed(ev.line, conn, bytes.len(), checked).is_some() {
                            let _ = v.receive_data(now, conn, &bytes, psh, &mut host);
                        }
                    }
                    Some(Line::Fin { conn, .. }) => {
                        let _ = v.receive_fin(now, conn, &mut host);
                    }
                    Some(Line::Rst { conn, .. }) => {
                        let _ = v.receive_rst(now, conn, &mut host);
                    }
                    _ => {}
                }
            }
            None => s.borrow_mut().fail(ReplayError { line: ev.line, msg: format!("unknown event {:?}", ev.kind()) }),
        }
        let err = s.borrow().err.clone();
        if let Some(e) = err {
            return Err(e);
        }
        let flagged = std::mem::take(&mut s.borrow_mut().flagged);
        for f in flagged {
            v.core().report_external(f);
        }
    }
    if let Some(e) = s.borrow().err.clone() {
        return Err(e);
    }
    // The trace ended: what a connection still owes, it never paid.
    v.finish();
    let (connections, lines) = (s.borrow().offloads, s.borrow().line_no);
    Ok(ReplayReport {
        lines,
        calls,
        connections,
        checked_bytes: v.core().checked_bytes(),
        content,
        push_timer,
        violations: v.core().violations(),
        notes: v.core().notes(),
    })
}
