//! The contract trace: every call across the receive contract, both ways, as JSON lines
//! (schema: `docs/trace-format.md`, version [`TRACE_VERSION`]).
//!
//! [`Tracer`] wraps a target exactly as the verifier does and writes what crosses it; the
//! upcalls it makes go through a tracing host wrapper, so the trace nests the way the calls
//! did: every upcall line sits inside the call (or engine input, or timer) that caused it,
//! and calls the host made from inside an upcall sit inside that upcall. Each scope ends with
//! a `ret` line carrying the result. [`super::replay`] reads such a trace back through the
//! verifier, which is how a target written by anyone is checked offline.
//!
//! ```text
//!   host ──► Tracer<T> ──► T          every call:   {"ev":"post",...}
//!   host ◄── TracingHost ◄── T           nested:      {"ev":"complete",...} ... {"ev":"ret"}
//!                                      result:      {"ev":"ret","status":...}
//! ```

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};

use super::schema::{CompletedNbl, DataNbl, Line, PostedNbl, Ret, RetStatus, SendNb, SendNbl, SentNbl};
use super::{
    ApiMisuse, ConnId, IndicateReturn, InitiateFailed, InitiateOffload, NestedCalls, OffloadTarget, PostRejected,
    ProtocolHost, ReceiveInput, SendInput, SendStream,
};
use crate::ndis::{
    DisconnectKind, NblChain, NblId, NdisStatus, NetBufferList, PoolTag, TcpDelegatedState, TcpOffloadEvent,
    TcpOffloadState,
};
use crate::time::Instant;

/// The schema version this code writes and reads.
pub const TRACE_VERSION: u64 = 3;

/// The kinds of trace line (their `ev` field), named in one place: the tracer writes these
/// names, the replay and the plot read them, and docs/trace-format.md describes each (a test
/// checks that it names them all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TraceEv {
    /// MiniportInitiateOffload.
    Offload,
    /// MiniportTcpOffloadReceive (a post of receive requests).
    Post,
    /// MiniportTcpOffloadReceiveReturn.
    Return,
    /// MiniportTcpOffloadDisconnect.
    Disconnect,
    /// MiniportTerminateOffload.
    Terminate,
    /// The target's timers ran.
    Timer,
    /// In-sequence bytes from the TCP layer.
    Data,
    /// In-sequence FIN from the TCP layer.
    Fin,
    /// Acceptable RST from the TCP layer.
    Rst,
    /// An event the TCP layer raises itself (an upload request).
    TcpEvent,
    /// NdisTcpOffloadReceiveComplete.
    Complete,
    /// NdisTcpOffloadReceiveHandler.
    Indicate,
    /// NdisTcpOffloadEventHandler.
    Event,
    /// A connection's push-timer deadline changed.
    PushTimer,
    /// The end of a call's scope, with its result.
    Ret,
    /// MiniportTcpOffloadSend.
    Send,
    /// The TCP layer read send bytes to transmit.
    SendRead,
    /// The TCP layer: the peer acknowledged send bytes.
    SendAcked,
    /// NdisTcpOffloadSendComplete.
    SendComplete,
    /// NdisTcpOffloadDisconnectComplete.
    DisconnectComplete,
}

impl TraceEv {
    /// Every kind.
    pub const ALL: [TraceEv; 20] = [
        TraceEv::Offload,
        TraceEv::Post,
        TraceEv::Return,
        TraceEv::Disconnect,
        TraceEv::Terminate,
        TraceEv::Timer,
        TraceEv::Data,
        TraceEv::Fin,
        TraceEv::Rst,
        TraceEv::TcpEvent,
        TraceEv::Complete,
        TraceEv::Indicate,
        TraceEv::Event,
        TraceEv::PushTimer,
        TraceEv::Ret,
        TraceEv::Send,
        TraceEv::SendRead,
        TraceEv::SendAcked,
        TraceEv::SendComplete,
        TraceEv::DisconnectComplete,
    ];

    /// The `ev` value.
    pub fn name(self) -> &'static str {
        match self {
            TraceEv::Offload => "offload",
            TraceEv::Post => "post",
            TraceEv::Return => "return",
            TraceEv::Disconnect => "disconnect",
            TraceEv::Terminate => "terminate",
            TraceEv::Timer => "timer",
            TraceEv::Data => "data",
            TraceEv::Fin => "fin",
            TraceEv::Rst => "rst",
            TraceEv::TcpEvent => "tcp_event",
            TraceEv::Complete => "complete",
            TraceEv::Indicate => "indicate",
            TraceEv::Event => "event",
            TraceEv::PushTimer => "push_timer",
            TraceEv::Ret => "ret",
            TraceEv::Send => "send",
            TraceEv::SendRead => "send_read",
            TraceEv::SendAcked => "send_acked",
            TraceEv::SendComplete => "send_complete",
            TraceEv::DisconnectComplete => "disconnect_complete",
        }
    }

    /// The kind an `ev` value names.
    pub fn parse(s: &str) -> Option<TraceEv> {
        TraceEv::ALL.into_iter().find(|e| e.name() == s)
    }
}

/// What the host did with an indication (the `outcome` of its `ret`), named in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything consumed.
    Success,
    /// Nothing consumed (`OFFLOAD_DATA_NOT_ACCEPTED` is read as the same, spec §8 A2).
    NotAccepted,
    /// The first `consumed` bytes consumed.
    PartiallyAccepted,
}

impl Outcome {
    /// The `outcome` value.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Success => "SUCCESS",
            Outcome::NotAccepted => "NOT_ACCEPTED",
            Outcome::PartiallyAccepted => "PARTIALLY_ACCEPTED",
        }
    }

    /// The outcome an `outcome` value names; both spellings of a refusal are one
    /// ([`super::ambiguity::is_refusal`], A2).
    pub fn parse(s: &str) -> Option<Outcome> {
        let refusal = |status| super::ambiguity::is_refusal(status).then_some(Outcome::NotAccepted);
        match s {
            "SUCCESS" => Some(Outcome::Success),
            "PARTIALLY_ACCEPTED" => Some(Outcome::PartiallyAccepted),
            "NOT_ACCEPTED" => refusal(NdisStatus::NotAccepted),
            "OFFLOAD_DATA_NOT_ACCEPTED" => refusal(NdisStatus::OffloadDataNotAccepted),
            _ => None,
        }
    }
}

/// An NBL id as the trace writes it: `h<serial>` (host pool), `t<serial>` (target pool),
/// `x<raw>` (anything else).
pub fn id_str(id: NblId) -> String {
    match id.pool() {
        Some(PoolTag::Host) => format!("h{}", id.0 & 0xFFFF_FFFF_FFFF),
        Some(PoolTag::Target) => format!("t{}", id.0 & 0xFFFF_FFFF_FFFF),
        None => format!("x{}", id.0),
    }
}

/// Parses [`id_str`]'s forms back.
pub fn parse_id(s: &str) -> Option<NblId> {
    let (tag, n) = s.split_at_checked(1)?;
    let n: u64 = n.parse().ok()?;
    let serial = (n < 1 << 48).then_some(n);
    match tag {
        "h" => Some(NblId::new(PoolTag::Host, serial?)),
        "t" => Some(NblId::new(PoolTag::Target, serial?)),
        "x" => Some(NblId(n)),
        _ => None,
    }
}

/// The event name of an upcall event, as the trace writes it.
pub fn event_name(e: TcpOffloadEvent) -> &'static str {
    match e {
        TcpOffloadEvent::SendBacklogChange(_) => "SEND_BACKLOG_CHANGE",
        TcpOffloadEvent::Disconnect => "DISCONNECT",
        TcpOffloadEvent::Retrieve(_) => "RETRIEVE",
        TcpOffloadEvent::Abort => "ABORT",
    }
}

/// Writes trace lines; owned by a [`Tracer`]. Every line is a [`Line`] record, written by
/// [`Line::write`].
pub struct TraceWriter {
    w: Box<dyn Write + Send>,
    bytes: bool,
    error: Option<io::Error>,
    /// Push-timer deadline of every offloaded connection, as last written.
    timers: BTreeMap<ConnId, Option<Instant>>,
    /// Data offset of every posted NBL at post time (completions carry the bytes after it).
    posted_at: HashMap<NblId, usize>,
    /// Time of the call in progress (upcalls carry it).
    now: Instant,
    /// A `timer` scope opened but not written yet: written only if something happens in it
    /// (or at once while a push timer runs).
    lazy: Option<String>,
    lines: u64,
    /// Connections named since the last timer sync (their push timers may have changed);
    /// `all_touched` after a timer call, which may touch any.
    touched: Vec<ConnId>,
    all_touched: bool,
    /// When the last timer call with nothing in it was written anyway (see
    /// [`IDLE_TIMER_LINE`]).
    last_idle_timer: Option<Instant>,
}

/// A timer call in which nothing happens is still written if this long has passed since the
/// last such line: the replay then judges what a target owes at about the times the live
/// verifier did (obligations fall due after [`super::DEFER_TOLERANCE`]), for at most
/// ten lines a second.
pub const IDLE_TIMER_LINE: std::time::Duration = std::time::Duration::from_millis(100);

impl TraceWriter {
    /// A writer to `w`; `bytes` also records payload bytes (hex), making the trace as large
    /// as the stream but letting the replay compare content too.
    pub fn new(w: Box<dyn Write + Send>, bytes: bool, generator: &str) -> TraceWriter {
        let mut t = TraceWriter {
            w,
            bytes,
            error: None,
            timers: BTreeMap::new(),
            posted_at: HashMap::new(),
            now: Instant::ZERO,
            lazy: None,
            lines: 0,
            touched: Vec::new(),
            all_touched: false,
            last_idle_timer: None,
        };
        let header = Line::Header { version: TRACE_VERSION, generator: generator.into(), bytes, push_timer: true };
        t.line(Self::text(&header));
        t
    }

    /// Lines written so far (the header included).
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Flushes; returns the first write error, if any happened.
    pub fn finish(&mut self) -> io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.w.flush()
    }

    fn text(l: &Line<'_>) -> String {
        let mut s = String::new();
        l.write(&mut s);
        s
    }

    fn line(&mut self, s: String) {
        if let Some(open) = self.lazy.take() {
            self.raw(open);
        }
        self.raw(s);
    }

    fn raw(&mut self, mut s: String) {
        if self.error.is_some() {
            return;
        }
        s.push('\n');
        self.lines += 1;
        if let Err(e) = self.w.write_all(s.as_bytes()) {
            self.error = Some(e);
        }
    }

    /// The time of the call in progress, as the trace writes it.
    fn t(&self) -> u64 {
        self.now.as_nanos()
    }

    /// Writes a call or upcall line; its connection's push timer is synced afterwards.
    fn call(&mut self, l: &Line<'_>) {
        if let Some(c) = l.conn() {
            if !self.touched.contains(&c) {
                self.touched.push(c);
            }
        }
        self.line(Self::text(l));
    }

    /// A posted request as the trace records it (its data start is remembered: the
    /// completion carries the bytes after it).
    fn posted(&mut self, nbl: &NetBufferList) -> PostedNbl {
        let nb = nbl.net_buffer();
        self.posted_at.insert(nbl.id(), nb.data_offset());
        PostedNbl {
            id: nbl.id(),
            mdls: nb.mdl_chain().iter().map(|m| m.byte_count()).collect(),
            offset: nb.data_offset(),
            length: nb.data_length(),
            no_push: nbl.tcp_receive_no_push(),
            prefilled: nbl.tcp_receive_bytes_transferred(),
        }
    }

    /// A target-owned NBL (indication, BufferedData): id, used space, bytes if recorded.
    fn data_nbl(&self, nbl: &NetBufferList) -> DataNbl<'static> {
        let nb = nbl.net_buffer();
        let data = self.bytes.then(|| {
            let mut v = Vec::with_capacity(nb.data_length());
            nb.copy_out(nb.data_offset(), nb.data_length(), &mut v);
            Cow::Owned(v)
        });
        DataNbl { id: nbl.id(), offset: nb.data_offset(), length: nb.data_length(), data }
    }

    fn data_nbls(&self, nbls: &NblChain) -> Vec<DataNbl<'static>> {
        nbls.iter().map(|n| self.data_nbl(n)).collect()
    }

    fn post(&mut self, conn: ConnId, nbls: &NblChain) {
        let posted = nbls.iter().map(|n| self.posted(n)).collect();
        self.call(&Line::Post { t: self.t(), conn, nbls: posted });
    }

    /// A send (or disconnect) NBL as posted, bytes included when recorded.
    fn send_rec(&self, nbl: &NetBufferList) -> SendNbl<'static> {
        let nbs = nbl
            .net_buffers()
            .map(|nb| {
                let data = self.bytes.then(|| {
                    let mut v = Vec::with_capacity(nb.data_length());
                    nb.copy_out(nb.data_offset(), nb.data_length(), &mut v);
                    Cow::Owned(v)
                });
                SendNb {
                    mdls: nb.mdl_chain().iter().map(|m| m.byte_count()).collect(),
                    offset: nb.data_offset(),
                    length: nb.data_length(),
                    data,
                }
            })
            .collect();
        SendNbl { id: nbl.id(), nbs }
    }

    /// A completed send NBL: status, count, each NB's used space.
    fn sent_rec(nbl: &NetBufferList) -> SentNbl {
        SentNbl {
            id: nbl.id(),
            status: nbl.status,
            bytes_transferred: nbl.tcp_offload_bytes_transferred(),
            nbs: nbl.net_buffers().map(|nb| (nb.data_offset(), nb.data_length())).collect(),
        }
    }

    fn send(&mut self, conn: ConnId, nbls: &NblChain) {
        let recs = nbls.iter().map(|n| self.send_rec(n)).collect();
        self.call(&Line::Send { t: self.t(), conn, nbls: recs });
    }

    fn ids(nbls: &NblChain) -> Vec<NblId> {
        nbls.iter().map(|n| n.id()).collect()
    }

    fn ret(&mut self, r: Ret<'_>) {
        if self.lazy.take().is_some() {
            // A timer call during which nothing happened: neither line is written.
            return;
        }
        self.line(Self::text(&Line::Ret(r)));
    }

    fn status(s: NdisStatus) -> Ret<'static> {
        Ret { status: Some(RetStatus::Ndis(s)), ..Ret::default() }
    }

    fn error(e: &ApiMisuse) -> Ret<'static> {
        Ret { status: Some(RetStatus::Error), error: Some(e.to_string()), ..Ret::default() }
    }

    /// Writes a `push_timer` line for every connection named since the last sync (every
    /// connection after a timer call) whose push timer changed.
    fn sync_timers(&mut self, target: &dyn OffloadTarget) {
        let conns: Vec<ConnId> = if std::mem::take(&mut self.all_touched) {
            self.touched.clear();
            self.timers.keys().copied().collect()
        } else {
            std::mem::take(&mut self.touched)
        };
        for c in conns {
            if !self.timers.contains_key(&c) {
                continue;
            }
            let t = target.push_timer(c);
            if self.timers.get(&c) != Some(&t) {
                self.timers.insert(c, t);
                self.line(Self::text(&Line::PushTimer { conn: c, due: t.map(Instant::as_nanos) }));
            }
        }
    }

    /// Writes the host's nested calls of one upcall and forwards them.
    fn nested(&mut self, mine: &mut NestedCalls, theirs: &mut NestedCalls) {
        for (conn, nbls) in mine.drain_posts() {
            self.post(conn, &nbls);
            self.ret(Self::status(NdisStatus::Pending));
            theirs.post_receive(conn, nbls);
        }
        let returns = mine.take_returns();
        if !returns.is_empty() {
            self.call(&Line::Return { t: self.t(), nbls: Self::ids(&returns) });
            self.ret(Self::status(NdisStatus::Success));
            theirs.receive_return(returns);
        }
        for (conn, nbls) in mine.drain_sends() {
            self.send(conn, &nbls);
            self.ret(Self::status(NdisStatus::Pending));
            theirs.post_send(conn, nbls);
        }
        // Performed later as an ordinary call (traced then).
        for (conn, kind, nbl) in mine.drain_disconnects() {
            theirs.disconnect(conn, kind, nbl);
        }
    }
}

/// The host half of the tracer: writes every upcall, then forwards it.
struct TracingHost<'a> {
    out: &'a mut TraceWriter,
    host: &'a mut dyn ProtocolHost,
    scratch: NestedCalls,
}

impl ProtocolHost for TracingHost<'_> {
    fn receive_complete(&mut self, conn: ConnId, nbls: NblChain, nested: &mut NestedCalls) {
        let mut done = Vec::with_capacity(nbls.len());
        for nbl in nbls.iter() {
            let nb = nbl.net_buffer();
            let from = self.out.posted_at.remove(&nbl.id());
            let data = self.out.bytes.then(|| {
                // From the data start at post (or, for an NBL never posted, back by the count
                // claimed) to the advanced data start.
                let claimed = nb.data_offset().saturating_sub(nbl.tcp_offload_bytes_transferred());
                let from = from.unwrap_or(claimed).min(nb.data_offset());
                let mut v = Vec::new();
                nb.copy_out(from, nb.data_offset() - from, &mut v);
                Cow::Owned(v)
            });
            done.push(CompletedNbl {
                id: nbl.id(),
                status: nbl.status,
                bytes_transferred: nbl.tcp_offload_bytes_transferred(),
                offset: nb.data_offset(),
                length: nb.data_length(),
                offset_before: from,
                data,
            });
        }
        self.out.call(&Line::Complete { t: self.out.t(), conn, nbls: done });
        self.host.receive_complete(conn, nbls, &mut self.scratch);
        self.out.nested(&mut self.scratch, nested);
        self.out.ret(Ret::default());
    }

    fn receive_indicate(
        &mut self,
        conn: ConnId,
        nbl: NblChain,
        status: NdisStatus,
        nested: &mut NestedCalls,
    ) -> IndicateReturn {
        let nbls = self.out.data_nbls(&nbl);
        self.out.call(&Line::Indicate { t: self.out.t(), conn, status, nbls });
        let r = self.host.receive_indicate(conn, nbl, status, &mut self.scratch);
        self.out.nested(&mut self.scratch, nested);
        let ret = match &r {
            IndicateReturn::Success => Ret { outcome: Some(Outcome::Success), ..Ret::default() },
            IndicateReturn::NotAccepted(_) => Ret { outcome: Some(Outcome::NotAccepted), ..Ret::default() },
            IndicateReturn::PartiallyAccepted { bytes_consumed, .. } => {
                Ret { outcome: Some(Outcome::PartiallyAccepted), consumed: Some(*bytes_consumed), ..Ret::default() }
            }
        };
        self.out.ret(ret);
        r
    }

    fn event_indicate(&mut self, conn: ConnId, event: TcpOffloadEvent, nested: &mut NestedCalls) {
        self.out.call(&Line::Event { t: self.out.t(), conn, event });
        self.host.event_indicate(conn, event, &mut self.scratch);
        self.out.nested(&mut self.scratch, nested);
        self.out.ret(Ret::default());
    }

    fn send_complete(&mut self, conn: ConnId, nbls: NblChain, nested: &mut NestedCalls) {
        let done = nbls.iter().map(TraceWriter::sent_rec).collect();
        self.out.call(&Line::SendComplete { t: self.out.t(), conn, nbls: done });
        self.host.send_complete(conn, nbls, &mut self.scratch);
        self.out.nested(&mut self.scratch, nested);
        self.out.ret(Ret::default());
    }

    fn disconnect_complete(&mut self, conn: ConnId, nbl: NblChain, status: NdisStatus, nested: &mut NestedCalls) {
        let rec = nbl.front().map(TraceWriter::sent_rec);
        self.out.call(&Line::DisconnectComplete { t: self.out.t(), conn, status, nbl: rec });
        self.host.disconnect_complete(conn, nbl, status, &mut self.scratch);
        self.out.nested(&mut self.scratch, nested);
        self.out.ret(Ret::default());
    }
}

/// A target whose contract calls are written to a trace (when a writer is given; otherwise
/// every call passes straight through).
pub struct Tracer<T> {
    inner: T,
    out: Option<TraceWriter>,
}

impl<T> Tracer<T> {
    /// Wraps `inner`; `out = None` traces nothing.
    pub fn new(inner: T, out: Option<TraceWriter>) -> Tracer<T> {
        Tracer { inner, out }
    }

    /// The wrapped target.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// The wrapped target, writable (calls made on it directly are not traced).
    pub fn inner_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// The writer, if tracing.
    pub fn writer(&mut self) -> Option<&mut TraceWriter> {
        self.out.as_mut()
    }

    /// Starts (or, with `None`, stops) tracing. Start before the first offload: a trace
    /// begun mid-connection cannot be replayed.
    pub fn set_writer(&mut self, out: Option<TraceWriter>) -> Option<TraceWriter> {
        std::mem::replace(&mut self.out, out)
    }
}

/// Runs one traced call: `open` writes its line, `call` makes it through a tracing host,
/// push timers are synced, `close` writes the `ret` line from the result.
macro_rules! traced {
    ($self:ident, $host:ident, $now:ident, |$out:ident| $open:block, |$h:ident| $call:expr, |$r:ident, $o:ident| $close:expr) => {{
        let Some($out) = $self.out.as_mut() else {
            let $h: &mut dyn ProtocolHost = $host;
            return $call;
        };
        $out.now = $now;
        $open;
        let mut th = TracingHost { out: $out, host: $host, scratch: NestedCalls::new() };
        let $h: &mut dyn ProtocolHost = &mut th;
        let $r = $call;
        let $o = $self.out.as_mut().expect("checked above");
        $o.sync_timers(&$self.inner);
        let ret: Ret<'_> = $close;
        $o.ret(ret);
        $r
    }};
}

impl<T: OffloadTarget> OffloadTarget for Tracer<T> {
    fn receive(
        &mut self,
        now: Instant,
        conn: ConnId,
        nbls: NblChain,
        host: &mut dyn ProtocolHost,
    ) -> Result<NdisStatus, PostRejected> {
        traced!(
            self,
            host,
            now,
            |out| { out.post(conn, &nbls) },
            |h| self.inner.receive(now, conn, nbls, h),
            |r, _o| match &r {
                Ok(s) => TraceWriter::status(*s),
                Err(rej) => TraceWriter::error(&rej.error),
            }
        )
    }

    fn receive_return(&mut self, now: Instant, nbls: NblChain, host: &mut dyn ProtocolHost) -> NdisStatus {
        traced!(
            self,
            host,
            now,
            |out| { out.call(&Line::Return { t: out.t(), nbls: TraceWriter::ids(&nbls) }) },
            |h| self.inner.receive_return(now, nbls, h),
            |r, _o| TraceWriter::status(r)
        )
    }

    fn disconnect(
        &mut self,
        now: Instant,
        conn: ConnId,
        kind: DisconnectKind,
        nbl: NblChain,
        host: &mut dyn ProtocolHost,
    ) -> Result<NdisStatus, PostRejected> {
        traced!(
            self,
            host,
            now,
            |out| {
                let rec = nbl.front().map(|n| out.send_rec(n));
                out.call(&Line::Disconnect { t: out.t(), conn, abortive: kind == DisconnectKind::Abortive, nbl: rec })
            },
            |h| self.inner.disconnect(now, conn, kind, nbl, h),
            |r, _o| match &r {
                Ok(s) => TraceWriter::status(*s),
                Err(rej) => TraceWriter::error(&rej.error),
            }
        )
    }

    fn send(
        &mut self,
        now: Instant,
        conn: ConnId,
        nbls: NblChain,
        host: &mut dyn ProtocolHost,
    ) -> Result<NdisStatus, PostRejected> {
        traced!(self, host, now, |out| { out.send(conn, &nbls) }, |h| self.inner.send(now, conn, nbls, h), |r, _o| {
            match &r {
                Ok(s) => TraceWriter::status(*s),
                Err(rej) => TraceWriter::error(&rej.error),
            }
        })
    }

    fn terminate_offload(
        &mut self,
        now: Instant,
        conn: ConnId,
        host: &mut dyn ProtocolHost,
    ) -> Result<TcpDelegatedState, ApiMisuse> {
        traced!(
            self,
            host,
            now,
            |out| { out.call(&Line::Terminate { t: out.t(), conn }) },
            |h| self.inner.terminate_offload(now, conn, h),
            |r, out| match &r {
                Ok(d) => {
                    out.timers.remove(&conn);
                    Ret {
                        rcv_nxt: Some(d.rcv_nxt),
                        state: Some(d.state),
                        buffered: Some(out.data_nbls(&d.buffered_data)),
                        ..TraceWriter::status(NdisStatus::Success)
                    }
                }
                Err(e) => TraceWriter::error(e),
            }
        )
    }

    fn handle_timeout(&mut self, now: Instant, host: &mut dyn ProtocolHost) {
        traced!(
            self,
            host,
            now,
            |out| {
                // Written only if something happens in it, or while a push timer runs: the
                // replay then sees the time of a timer call that should have fired it.
                let text = TraceWriter::text(&Line::Timer { t: out.t() });
                let idle_due = out.last_idle_timer.is_none_or(|l| now.saturating_duration_since(l) >= IDLE_TIMER_LINE);
                if out.timers.values().any(Option::is_some) {
                    out.line(text);
                } else if idle_due {
                    out.last_idle_timer = Some(now);
                    out.line(text);
                } else {
                    out.lazy = Some(text);
                }
                out.all_touched = true;
            },
            |h| self.inner.handle_timeout(now, h),
            |_r, _o| Ret::default()
        )
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }

    fn push_timer(&self, conn: ConnId) -> Option<Instant> {
        self.inner.push_timer(conn)
    }
}

impl<T: InitiateOffload> InitiateOffload for Tracer<T> {
    fn initiate_offload(
        &mut self,
        now: Instant,
        conn: ConnId,
        state: TcpOffloadState,
        host: &mut dyn ProtocolHost,
    ) -> Result<NblChain, InitiateFailed> {
        traced!(
            self,
            host,
            now,
            |out| {
                // Followed from now on: a push timer armed during the offload is written
                // inside it.
                out.timers.insert(conn, None);
                let d = &state.delegated;
                let line = Line::Offload {
                    t: out.t(),
                    conn,
                    rcv_nxt: d.rcv_nxt,
                    state: d.state,
                    initial_rcv_wnd: state.cached.initial_rcv_wnd,
                    rcv_indication_size: state.cached.rcv_indication_size,
                    local_port: state.constant.local_port,
                    remote_port: state.constant.remote_port,
                    buffered: out.data_nbls(&d.buffered_data),
                };
                out.call(&line);
            },
            |h| self.inner.initiate_offload(now, conn, state, h),
            |r, o| match &r {
                Ok(back) => Ret { returned: Some(TraceWriter::ids(back)), ..TraceWriter::status(NdisStatus::Success) },
                Err(e) => {
                    o.timers.remove(&conn);
                    TraceWriter::status(e.status)
                }
            }
        )
    }
}

impl<T: OffloadTarget + ReceiveInput> Tracer<T> {
    /// Writes an engine input's line (`data`, `fin`, `rst`, `tcp_event`) at `now`.
    fn open_input(out: &mut TraceWriter, now: Instant, line: impl FnOnce(u64) -> Line<'static>) {
        out.now = now;
        out.call(&line(out.t()));
    }
}

fn input_ret(r: &Result<(), ApiMisuse>) -> Ret<'static> {
    match r {
        Ok(()) => TraceWriter::status(NdisStatus::Success),
        Err(e) => TraceWriter::error(e),
    }
}

impl<T: OffloadTarget + ReceiveInput> ReceiveInput for Tracer<T> {
    fn receive_data(
        &mut self,
        now: Instant,
        conn: ConnId,
        data: &[u8],
        psh: bool,
        host: &mut dyn ProtocolHost,
    ) -> Result<(), ApiMisuse> {
        traced!(
            self,
            host,
            now,
            |out| {
                out.now = now;
                let bytes = out.bytes.then_some(Cow::Borrowed(data));
                out.call(&Line::Data { t: out.t(), conn, len: data.len(), psh, data: bytes });
            },
            |h| self.inner.receive_data(now, conn, data, psh, h),
            |r, _o| input_ret(&r)
        )
    }

    fn receive_placed(
        &mut self,
        now: Instant,
        conn: ConnId,
        len: usize,
        psh: bool,
        host: &mut dyn ProtocolHost,
    ) -> Result<(), ApiMisuse> {
        traced!(
            self,
            host,
            now,
            |out| {
                // The same event as copied bytes: the contract does not see how they arrived.
                let mut v = Vec::new();
                if out.bytes {
                    self.inner.placed_bytes(conn, len, &mut |s| v.extend_from_slice(s));
                }
                let data = out.bytes.then_some(Cow::Owned(v));
                Self::open_input(out, now, |t| Line::Data { t, conn, len, psh, data });
            },
            |h| self.inner.receive_placed(now, conn, len, psh, h),
            |r, _o| input_ret(&r)
        )
    }

    fn indicate_event(
        &mut self,
        now: Instant,
        conn: ConnId,
        event: TcpOffloadEvent,
        host: &mut dyn ProtocolHost,
    ) -> Result<(), ApiMisuse> {
        traced!(
            self,
            host,
            now,
            |out| { Self::open_input(out, now, |t| Line::TcpEvent { t, conn, event }) },
            |h| self.inner.indicate_event(now, conn, event, h),
            |r, _o| input_ret(&r)
        )
    }

    fn receive_fin(&mut self, now: Instant, conn: ConnId, host: &mut dyn ProtocolHost) -> Result<(), ApiMisuse> {
        traced!(
            self,
            host,
            now,
            |out| { Self::open_input(out, now, |t| Line::Fin { t, conn }) },
            |h| self.inner.receive_fin(now, conn, h),
            |r, _o| input_ret(&r)
        )
    }

    fn receive_rst(&mut self, now: Instant, conn: ConnId, host: &mut dyn ProtocolHost) -> Result<(), ApiMisuse> {
        traced!(
            self,
            host,
            now,
            |out| { Self::open_input(out, now, |t| Line::Rst { t, conn }) },
            |h| self.inner.receive_rst(now, conn, h),
            |r, _o| input_ret(&r)
        )
    }

    fn placement_room<'a>(&'a mut self, conn: ConnId, max: usize, out: &mut [&'a mut [u8]]) -> usize {
        self.inner.placement_room(conn, max, out)
    }

    fn placed_bytes(&self, conn: ConnId, len: usize, f: &mut dyn FnMut(&[u8])) {
        self.inner.placed_bytes(conn, len, f)
    }

    fn receive_space(&self, conn: ConnId) -> usize {
        self.inner.receive_space(conn)
    }

    fn receive_window(&self, conn: ConnId) -> usize {
        self.inner.receive_window(conn)
    }
}

impl<T: OffloadTarget + SendInput> SendInput for Tracer<T> {
    fn send_stream(&self, conn: ConnId) -> SendStream {
        self.inner.send_stream(conn)
    }

    fn send_bytes(&mut self, conn: ConnId, from: u64, len: usize, f: &mut dyn FnMut(&[u8])) -> usize {
        let Some(out) = self.out.as_mut() else {
            return self.inner.send_bytes(conn, from, len, f);
        };
        let mut copy = Vec::new();
        let bytes = out.bytes;
        let n = self.inner.send_bytes(conn, from, len, &mut |b: &[u8]| {
            if bytes {
                copy.extend_from_slice(b);
            }
            f(b)
        });
        let data = bytes.then_some(Cow::Owned(copy));
        out.call(&Line::SendRead { t: out.t(), conn, at: from, len: n, data });
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
        traced!(
            self,
            host,
            now,
            |out| { out.call(&Line::SendAcked { t: out.t(), conn, upto }) },
            |h| self.inner.send_acked(now, conn, upto, h),
            |r, _o| match &r {
                Ok(()) => TraceWriter::status(NdisStatus::Success),
                Err(e) => TraceWriter::error(e),
            }
        )
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
