//! The contract trace's schema in code: every line as a typed record ([`Line`]), written by
//! one writer ([`Line::write`], used by the [`Tracer`](super::trace::Tracer)).
//! docs/trace-format.md describes the same records for people; a test checks it names every
//! kind.

use std::borrow::Cow;
use std::fmt::Write as _;

use super::trace::{event_name, id_str, Outcome, TraceEv};
use super::ConnId;
use crate::ndis::{NblId, NdisStatus, TcpConnectionState, TcpOffloadEvent};

/// A receive request as posted: its MDL sizes and used space, push mode and pre-fill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostedNbl {
    /// The NBL.
    pub id: NblId,
    /// Byte count of each MDL.
    pub mdls: Vec<usize>,
    /// `DataOffset`.
    pub offset: usize,
    /// `DataLength`.
    pub length: usize,
    /// `TcpReceiveNoPush`.
    pub no_push: bool,
    /// `TcpReceiveBytesTransferred` (host pre-fill).
    pub prefilled: usize,
}

/// A target NBL carrying data (an indication, BufferedData): its used space and, when the
/// trace records bytes, the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataNbl<'a> {
    /// The NBL.
    pub id: NblId,
    /// `DataOffset`.
    pub offset: usize,
    /// `DataLength`.
    pub length: usize,
    /// The used space's bytes (with `--trace-bytes`).
    pub data: Option<Cow<'a, [u8]>>,
}

/// A completed receive request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedNbl<'a> {
    /// The NBL.
    pub id: NblId,
    /// Its `Status`.
    pub status: NdisStatus,
    /// `TcpOffloadBytesTransferred`.
    pub bytes_transferred: usize,
    /// `DataOffset` after the completion (advanced by the bytes placed).
    pub offset: usize,
    /// `DataLength` after the completion.
    pub length: usize,
    /// `DataOffset` when it was posted (when the tracer saw the post).
    pub offset_before: Option<usize>,
    /// The bytes placed (with `--trace-bytes`).
    pub data: Option<Cow<'a, [u8]>>,
}

/// The `status` of a `ret` line: an NDIS status, or `ERROR` (an API misuse, with `error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetStatus {
    /// An NDIS status.
    Ndis(NdisStatus),
    /// The call was refused as a misuse.
    Error,
}

/// What a `ret` line carries (each field only where its call has it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ret<'a> {
    /// The call's status.
    pub status: Option<RetStatus>,
    /// The misuse, when `status` is `ERROR`.
    pub error: Option<String>,
    /// An indication's outcome.
    pub outcome: Option<Outcome>,
    /// Bytes consumed, with `PARTIALLY_ACCEPTED`.
    pub consumed: Option<usize>,
    /// A terminate's `RcvNxt`.
    pub rcv_nxt: Option<u32>,
    /// A terminate's TCP state (`Some(None)`: written as `null`).
    pub state: Option<Option<TcpConnectionState>>,
    /// A terminate's BufferedData.
    pub buffered: Option<Vec<DataNbl<'a>>>,
    /// An offload's host NBLs handed back.
    pub returned: Option<Vec<NblId>>,
}

/// One line of a contract trace.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Line<'a> {
    /// The first line: schema version, writer, whether bytes and push-timer state are recorded.
    Header {
        /// Schema version.
        version: u64,
        /// What wrote the trace.
        generator: Cow<'a, str>,
        /// Payload bytes recorded.
        bytes: bool,
        /// Push-timer state recorded.
        push_timer: bool,
    },
    /// MiniportInitiateOffload.
    Offload {
        /// Time (ns).
        t: u64,
        /// The connection.
        conn: ConnId,
        /// `RcvNxt`.
        rcv_nxt: u32,
        /// The TCP state, if given.
        state: Option<TcpConnectionState>,
        /// `InitialRcvWnd`.
        initial_rcv_wnd: u32,
        /// `RcvIndicationSize`.
        rcv_indication_size: u32,
        /// Local port.
        local_port: u16,
        /// Remote port.
        remote_port: u16,
        /// BufferedData handed over.
        buffered: Vec<DataNbl<'a>>,
    },
    /// MiniportTcpOffloadReceive.
    Post {
        /// Time (ns).
        t: u64,
        /// The connection.
        conn: ConnId,
        /// The requests, in order.
        nbls: Vec<PostedNbl>,
    },
    /// MiniportTcpOffloadReceiveReturn.
    Return {
        /// Time (ns).
        t: u64,
        /// The NBLs returned.
        nbls: Vec<NblId>,
    },
    /// MiniportTcpOffloadDisconnect.
    Disconnect {
        /// Time (ns).
        t: u64,
        /// The connection.
        conn: ConnId,
        /// Abortive (else graceful).
        abortive: bool,
    },
    /// MiniportTerminateOffload.
    Terminate {
        /// Time (ns).
        t: u64,
        /// The connection.
        conn: ConnId,
    },
    /// The target's timers ran.
    Timer {
        /// Time (ns).
        t: u64,
    },
    /// In-sequence bytes from the TCP layer.
    Data {
        /// Time (ns).
        t: u64,
        /// The connection.
        conn: ConnId,
        /// Bytes.
        len: usize,
        /// PSH.
        psh: bool,
        /// The bytes (with `--trace-bytes`).
        data: Option<Cow<'a, [u8]>>,
    },
    /// In-sequence FIN.
    Fin {
        /// Time (ns).
        t: u64,
        /// The connection.
        conn: ConnId,
    },
    /// Acceptable RST.
    Rst {
        /// Time (ns).
        t: u64,
        /// The connection.
        conn: ConnId,
    },
    /// An event the TCP layer raises itself.
    TcpEvent {
        /// Time (ns).
        t: u64,
        /// The connection.
        conn: ConnId,
        /// The event.
        event: TcpOffloadEvent,
    },
    /// NdisTcpOffloadReceiveComplete.
    Complete {
        /// Time (ns).
        t: u64,
        /// The connection.
        conn: ConnId,
        /// The completed requests, in order.
        nbls: Vec<CompletedNbl<'a>>,
    },
    /// NdisTcpOffloadReceiveHandler.
    Indicate {
        /// Time (ns).
        t: u64,
        /// The connection.
        conn: ConnId,
        /// The indication's status argument.
        status: NdisStatus,
        /// The indicated NBL(s).
        nbls: Vec<DataNbl<'a>>,
    },
    /// NdisTcpOffloadEventHandler.
    Event {
        /// Time (ns).
        t: u64,
        /// The connection.
        conn: ConnId,
        /// The event.
        event: TcpOffloadEvent,
    },
    /// A connection's push-timer deadline changed (`None`: stopped).
    PushTimer {
        /// The connection.
        conn: ConnId,
        /// The deadline (ns).
        due: Option<u64>,
    },
    /// The end of a call's scope, with its result.
    Ret(Ret<'a>),
}

/// A JSON string literal.
fn quote(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn hex(out: &mut String, bytes: &[u8]) {
    const D: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.push(D[usize::from(b >> 4)] as char);
        out.push(D[usize::from(b & 15)] as char);
    }
}

fn data_field(out: &mut String, data: &Option<Cow<'_, [u8]>>) {
    if let Some(d) = data {
        out.push_str(",\"data\":\"");
        hex(out, d);
        out.push('"');
    }
}

fn state_field(out: &mut String, s: Option<TcpConnectionState>) {
    match s {
        Some(s) => {
            let _ = write!(out, "{}", s as u32);
        }
        None => out.push_str("null"),
    }
}

fn list<T>(out: &mut String, items: &[T], mut one: impl FnMut(&mut String, &T)) {
    out.push('[');
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        one(out, x);
    }
    out.push(']');
}

fn ids(out: &mut String, ids: &[NblId]) {
    list(out, ids, |o, id| {
        let _ = write!(o, "\"{}\"", id_str(*id));
    });
}

fn data_nbls(out: &mut String, nbls: &[DataNbl<'_>]) {
    list(out, nbls, |o, n| {
        let _ = write!(o, "{{\"id\":\"{}\",\"offset\":{},\"length\":{}", id_str(n.id), n.offset, n.length);
        data_field(o, &n.data);
        o.push('}');
    });
}

fn event_fields(out: &mut String, event: TcpOffloadEvent, with_bytes: bool) {
    let _ = write!(out, ",\"event\":\"{}\"", event_name(event));
    match event {
        TcpOffloadEvent::Retrieve(r) => {
            let _ = write!(out, ",\"reason\":{}", r as u32);
        }
        TcpOffloadEvent::SendBacklogChange(b) if with_bytes => {
            let _ = write!(out, ",\"bytes\":{b}");
        }
        _ => {}
    }
}

impl Line<'_> {
    /// The kind of a line other than the header.
    pub fn kind(&self) -> Option<TraceEv> {
        Some(match self {
            Line::Header { .. } => return None,
            Line::Offload { .. } => TraceEv::Offload,
            Line::Post { .. } => TraceEv::Post,
            Line::Return { .. } => TraceEv::Return,
            Line::Disconnect { .. } => TraceEv::Disconnect,
            Line::Terminate { .. } => TraceEv::Terminate,
            Line::Timer { .. } => TraceEv::Timer,
            Line::Data { .. } => TraceEv::Data,
            Line::Fin { .. } => TraceEv::Fin,
            Line::Rst { .. } => TraceEv::Rst,
            Line::TcpEvent { .. } => TraceEv::TcpEvent,
            Line::Complete { .. } => TraceEv::Complete,
            Line::Indicate { .. } => TraceEv::Indicate,
            Line::Event { .. } => TraceEv::Event,
            Line::PushTimer { .. } => TraceEv::PushTimer,
            Line::Ret(_) => TraceEv::Ret,
        })
    }

    /// The connection the line names, if any.
    pub fn conn(&self) -> Option<ConnId> {
        match self {
            Line::Offload { conn, .. }
            | Line::Post { conn, .. }
            | Line::Disconnect { conn, .. }
            | Line::Terminate { conn, .. }
            | Line::Data { conn, .. }
            | Line::Fin { conn, .. }
            | Line::Rst { conn, .. }
            | Line::TcpEvent { conn, .. }
            | Line::Complete { conn, .. }
            | Line::Indicate { conn, .. }
            | Line::Event { conn, .. }
            | Line::PushTimer { conn, .. } => Some(*conn),
            _ => None,
        }
    }

    /// The line as JSON, without the newline: the one writer of the schema.
    pub fn write(&self, out: &mut String) {
        let (t, conn) = match self {
            Line::Offload { t, conn, .. }
            | Line::Post { t, conn, .. }
            | Line::Disconnect { t, conn, .. }
            | Line::Terminate { t, conn }
            | Line::Data { t, conn, .. }
            | Line::Fin { t, conn }
            | Line::Rst { t, conn }
            | Line::TcpEvent { t, conn, .. }
            | Line::Complete { t, conn, .. }
            | Line::Indicate { t, conn, .. }
            | Line::Event { t, conn, .. } => (Some(*t), Some(*conn)),
            Line::Return { t, .. } | Line::Timer { t } => (Some(*t), None),
            Line::Header { version, generator, bytes, push_timer } => {
                let _ = write!(out, "{{\"chimney_trace\":{version},\"generator\":");
                quote(out, generator);
                let _ = write!(out, ",\"bytes\":{bytes},\"push_timer\":{push_timer}}}");
                return;
            }
            Line::PushTimer { conn, due } => {
                let due = due.map_or("null".to_string(), |d| d.to_string());
                let _ = write!(out, "{{\"ev\":\"{}\",\"conn\":{},\"due\":{due}}}", TraceEv::PushTimer.name(), conn.0);
                return;
            }
            Line::Ret(r) => {
                let _ = write!(out, "{{\"ev\":\"{}\"", TraceEv::Ret.name());
                r.write(out);
                out.push('}');
                return;
            }
        };
        let kind = self.kind().expect("not the header");
        let _ = write!(out, "{{\"ev\":\"{}\"", kind.name());
        if let Some(t) = t {
            let _ = write!(out, ",\"t\":{t}");
        }
        if let Some(c) = conn {
            let _ = write!(out, ",\"conn\":{}", c.0);
        }
        match self {
            Line::Offload {
                rcv_nxt,
                state,
                initial_rcv_wnd,
                rcv_indication_size,
                local_port,
                remote_port,
                buffered,
                ..
            } => {
                let _ = write!(out, ",\"rcv_nxt\":{rcv_nxt},\"state\":");
                state_field(out, *state);
                let _ = write!(
                    out,
                    ",\"initial_rcv_wnd\":{initial_rcv_wnd},\"rcv_indication_size\":{rcv_indication_size},\"local_port\":{local_port},\"remote_port\":{remote_port},\"buffered\":"
                );
                data_nbls(out, buffered);
            }
            Line::Post { nbls, .. } => {
                out.push_str(",\"nbls\":");
                list(out, nbls, |o, n| {
                    let _ = write!(o, "{{\"id\":\"{}\",\"mdls\":", id_str(n.id));
                    list(o, &n.mdls, |o, m| {
                        let _ = write!(o, "{m}");
                    });
                    let _ = write!(
                        o,
                        ",\"offset\":{},\"length\":{},\"no_push\":{},\"prefilled\":{}}}",
                        n.offset, n.length, n.no_push, n.prefilled
                    );
                });
            }
            Line::Return { nbls, .. } => {
                out.push_str(",\"nbls\":");
                ids(out, nbls);
            }
            Line::Disconnect { abortive, .. } => {
                let _ = write!(out, ",\"kind\":\"{}\"", if *abortive { "abortive" } else { "graceful" });
            }
            Line::Data { len, psh, data, .. } => {
                let _ = write!(out, ",\"len\":{len},\"psh\":{psh}");
                data_field(out, data);
            }
            Line::TcpEvent { event, .. } => event_fields(out, *event, false),
            Line::Event { event, .. } => event_fields(out, *event, true),
            Line::Complete { nbls, .. } => {
                out.push_str(",\"nbls\":");
                list(out, nbls, |o, n| {
                    let _ = write!(
                        o,
                        "{{\"id\":\"{}\",\"status\":\"{}\",\"bytes_transferred\":{},\"offset\":{},\"length\":{}",
                        id_str(n.id),
                        n.status,
                        n.bytes_transferred,
                        n.offset,
                        n.length
                    );
                    if let Some(b) = n.offset_before {
                        let _ = write!(o, ",\"offset_before\":{b}");
                    }
                    data_field(o, &n.data);
                    o.push('}');
                });
            }
            Line::Indicate { status, nbls, .. } => {
                let _ = write!(out, ",\"status\":\"{status}\",\"nbls\":");
                data_nbls(out, nbls);
            }
            _ => {}
        }
        out.push('}');
    }
}

impl Ret<'_> {
    /// The fields after `"ev":"ret"`.
    fn write(&self, out: &mut String) {
        match self.status {
            Some(RetStatus::Ndis(s)) => {
                let _ = write!(out, ",\"status\":\"{s}\"");
            }
            Some(RetStatus::Error) => out.push_str(",\"status\":\"ERROR\""),
            None => {}
        }
        if let Some(e) = &self.error {
            out.push_str(",\"error\":");
            quote(out, e);
        }
        if let Some(o) = self.outcome {
            let _ = write!(out, ",\"outcome\":\"{}\"", o.name());
        }
        if let Some(c) = self.consumed {
            let _ = write!(out, ",\"consumed\":{c}");
        }
        if let Some(n) = self.rcv_nxt {
            let _ = write!(out, ",\"rcv_nxt\":{n}");
        }
        if let Some(s) = self.state {
            out.push_str(",\"state\":");
            state_field(out, s);
        }
        if let Some(b) = &self.buffered {
            out.push_str(",\"buffered\":");
            data_nbls(out, b);
        }
        if let Some(r) = &self.returned {
            out.push_str(",\"returned\":");
            ids(out, r);
        }
    }
}
