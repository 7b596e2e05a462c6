//! The contract trace's schema in code: every line as a typed record ([`Line`]), written by
//! one writer ([`Line::write`], used by the [`Tracer`](super::trace::Tracer)).
//! docs/trace-format.md describes the same records for people; a test checks it names every
//! kind.

use std::borrow::Cow;
use std::fmt::Write as _;

use super::trace::{event_name, id_str, Outcome, TraceEv};
use super::ConnId;
use crate::ndis::{NblId, NdisStatus, TcpConnectionState, TcpOffloadEvent, TcpUploadReason};

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

/// One NB of a send NBL as posted: its MDL sizes, used space and (with bytes) the used
/// space's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendNb<'a> {
    /// Byte count of each MDL.
    pub mdls: Vec<usize>,
    /// `DataOffset`.
    pub offset: usize,
    /// `DataLength`.
    pub length: usize,
    /// The bytes to send (with `--trace-bytes`).
    pub data: Option<Cow<'a, [u8]>>,
}

/// A send NBL (or a disconnect's NBL) as the host posted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendNbl<'a> {
    /// The NBL.
    pub id: NblId,
    /// Its NBs, in order.
    pub nbs: Vec<SendNb<'a>>,
}

/// A completed send NBL: status, count and each NB's used space afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentNbl {
    /// The NBL.
    pub id: NblId,
    /// Its `Status`.
    pub status: NdisStatus,
    /// `TcpOffloadBytesTransferred`.
    pub bytes_transferred: usize,
    /// Each NB's (`DataOffset`, `DataLength`) after the completion.
    pub nbs: Vec<(usize, usize)>,
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

fn send_nbl(out: &mut String, n: &SendNbl<'_>) {
    let _ = write!(out, "{{\"id\":\"{}\",\"nbs\":", id_str(n.id));
    list(out, &n.nbs, |o, nb| {
        o.push_str("{\"mdls\":");
        list(o, &nb.mdls, |o, m| {
            let _ = write!(o, "{m}");
        });
        let _ = write!(o, ",\"offset\":{},\"length\":{}", nb.offset, nb.length);
        data_field(o, &nb.data);
        o.push('}');
    });
    out.push('}');
}

fn sent_nbl(out: &mut String, n: &SentNbl) {
    let _ = write!(
        out,
        "{{\"id\":\"{}\",\"status\":\"{}\",\"bytes_transferred\":{},\"nbs\":",
        id_str(n.id),
        n.status,
        n.bytes_transferred
    );
    list(out, &n.nbs, |o, (off, len)| {
        let _ = write!(o, "[{off},{len}]");
    });
    out.push('}');
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
        /// Its NBL (version 2; none in version 1).
        nbl: Option<SendNbl<'a>>,
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
    /// MiniportTcpOffloadSend (version 2).
    Send {
        /// Time (ns).
        t: u64,
        /// The connection.
        conn: ConnId,
        /// The send NBLs, in order.
        nbls: Vec<SendNbl<'a>>,
    },
    /// The TCP layer read send bytes to transmit (version 2).
    SendRead {
        /// Time (ns).
        t: u64,
        /// The connection.
        conn: ConnId,
        /// Stream offset of the first byte.
        at: u64,
        /// Bytes read.
        len: usize,
        /// The bytes (with `--trace-bytes`).
        data: Option<Cow<'a, [u8]>>,
    },
    /// The TCP layer: the peer acknowledged the send stream up to `upto` (version 2).
    SendAcked {
        /// Time (ns).
        t: u64,
        /// The connection.
        conn: ConnId,
        /// Stream offset acknowledged (one past the data when the FIN is too).
        upto: u64,
    },
    /// NdisTcpOffloadSendComplete (version 2).
    SendComplete {
        /// Time (ns).
        t: u64,
        /// The connection.
        conn: ConnId,
        /// The completed sends, in order.
        nbls: Vec<SentNbl>,
    },
    /// NdisTcpOffloadDisconnectComplete (version 2).
    DisconnectComplete {
        /// Time (ns).
        t: u64,
        /// The connection.
        conn: ConnId,
        /// The status.
        status: NdisStatus,
        /// The disconnect's NBL, if it had one, as it came back.
        nbl: Option<SentNbl>,
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
            Line::Send { .. } => TraceEv::Send,
            Line::SendRead { .. } => TraceEv::SendRead,
            Line::SendAcked { .. } => TraceEv::SendAcked,
            Line::SendComplete { .. } => TraceEv::SendComplete,
            Line::DisconnectComplete { .. } => TraceEv::DisconnectComplete,
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
            | Line::Send { conn, .. }
            | Line::SendRead { conn, .. }
            | Line::SendAcked { conn, .. }
            | Line::SendComplete { conn, .. }
            | Line::DisconnectComplete { conn, .. }
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
            | Line::Event { t, conn, .. }
            | Line::Send { t, conn, .. }
            | Line::SendRead { t, conn, .. }
            | Line::SendAcked { t, conn, .. }
            | Line::SendComplete { t, conn, .. }
            | Line::DisconnectComplete { t, conn, .. } => (Some(*t), Some(*conn)),
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
            Line::Disconnect { abortive, nbl, .. } => {
                let _ = write!(out, ",\"kind\":\"{}\"", if *abortive { "abortive" } else { "graceful" });
                if let Some(n) = nbl {
                    out.push_str(",\"nbl\":");
                    send_nbl(out, n);
                }
            }
            Line::Send { nbls, .. } => {
                out.push_str(",\"nbls\":");
                list(out, nbls, |o, n| send_nbl(o, n));
            }
            Line::SendRead { at, len, data, .. } => {
                let _ = write!(out, ",\"at\":{at},\"len\":{len}");
                data_field(out, data);
            }
            Line::SendAcked { upto, .. } => {
                let _ = write!(out, ",\"upto\":{upto}");
            }
            Line::SendComplete { nbls, .. } => {
                out.push_str(",\"nbls\":");
                list(out, nbls, sent_nbl);
            }
            Line::DisconnectComplete { status, nbl, .. } => {
                let _ = write!(out, ",\"status\":\"{status}\"");
                if let Some(n) = nbl {
                    out.push_str(",\"nbl\":");
                    sent_nbl(out, n);
                }
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

/// Most NBLs one line may list.
pub const MAX_NBLS: usize = 4096;
/// Largest buffer one line may describe (one NBL's MDLs, one event's bytes).
pub const MAX_BYTES: usize = 64 << 20;

/// Reads fields of one JSON line, with errors that name the line's kind and the field.
struct Fields<'v> {
    kind: &'v str,
    v: &'v serde_json::Value,
}

type Read<T> = Result<T, String>;

impl<'v> Fields<'v> {
    fn field(&self, obj: &'v serde_json::Value, k: &str) -> Read<&'v serde_json::Value> {
        obj.get(k).ok_or_else(|| format!("`{}`: field `{k}` missing", self.kind))
    }

    fn num(&self, obj: &serde_json::Value, k: &str) -> Read<u64> {
        let v = obj.get(k).ok_or_else(|| format!("`{}`: field `{k}` missing", self.kind))?;
        v.as_u64().ok_or_else(|| format!("`{}`: `{k}` must be a non-negative integer", self.kind))
    }

    fn size(&self, obj: &serde_json::Value, k: &str) -> Read<usize> {
        self.num(obj, k).map(|n| n as usize)
    }

    fn num32(&self, obj: &serde_json::Value, k: &str) -> Read<u32> {
        u32::try_from(self.num(obj, k)?).map_err(|_| format!("`{}`: `{k}` must fit 32 bits", self.kind))
    }

    /// An optional 32-bit field (absent or `null`: 0).
    fn opt32(&self, obj: &serde_json::Value, k: &str) -> Read<u32> {
        if obj.get(k).is_none_or(serde_json::Value::is_null) {
            return Ok(0);
        }
        self.num32(obj, k)
    }

    /// An optional flag (absent: false).
    fn flag(&self, obj: &serde_json::Value, k: &str) -> Read<bool> {
        match obj.get(k) {
            None => Ok(false),
            Some(v) => v.as_bool().ok_or_else(|| format!("`{}`: `{k}` must be true or false", self.kind)),
        }
    }

    fn text(&self, obj: &'v serde_json::Value, k: &str) -> Read<&'v str> {
        self.field(obj, k)?.as_str().ok_or_else(|| format!("`{}`: `{k}` must be a string", self.kind))
    }

    fn conn(&self) -> Read<ConnId> {
        let n = self.num(self.v, "conn")?;
        u32::try_from(n).map(ConnId).map_err(|_| "`conn` out of range".to_string())
    }

    fn t(&self) -> u64 {
        self.v.get("t").and_then(serde_json::Value::as_u64).unwrap_or(0)
    }

    fn id(&self, v: &serde_json::Value) -> Read<NblId> {
        v.as_str()
            .and_then(super::trace::parse_id)
            .ok_or_else(|| format!("bad NBL id {v} (expected \"h<n>\", \"t<n>\" or \"x<n>\")"))
    }

    fn list(&self, obj: &'v serde_json::Value, k: &str) -> Read<&'v Vec<serde_json::Value>> {
        match self.field(obj, k)?.as_array() {
            Some(a) if a.len() <= MAX_NBLS => Ok(a),
            Some(_) => Err(format!("`{}`: `{k}` lists more than {MAX_NBLS} entries", self.kind)),
            None => Err(format!("`{}`: `{k}` must be an array", self.kind)),
        }
    }

    /// A TCP state number, or `null`/absent for none.
    fn state(&self, obj: &serde_json::Value) -> Read<Option<TcpConnectionState>> {
        match obj.get("state") {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(TcpConnectionState::from_code)
                .map(Some)
                .ok_or_else(|| format!("unknown TCP state {v}")),
        }
    }

    fn status(&self, obj: &serde_json::Value) -> Read<NdisStatus> {
        let s = self.text(obj, "status")?;
        NdisStatus::ALL.iter().find(|x| x.to_string() == s).copied().ok_or_else(|| format!("unknown status {s:?}"))
    }

    /// `data` (hex) of `obj`, which must be `len` bytes when `len` is given; absent: `None`.
    fn data(&self, obj: &serde_json::Value, len: Option<usize>) -> Read<Option<Cow<'static, [u8]>>> {
        if let Some(len) = len.filter(|&l| l > MAX_BYTES) {
            return Err(format!("{len} bytes in one event: at most 64 MiB"));
        }
        let Some(d) = obj.get("data") else { return Ok(None) };
        let Some(h) = d.as_str().filter(|h| h.len() % 2 == 0 && h.is_ascii()) else {
            return Err("`data` must be a hex string".into());
        };
        let mut out = Vec::with_capacity(h.len() / 2);
        for i in (0..h.len()).step_by(2) {
            out.push(u8::from_str_radix(&h[i..i + 2], 16).map_err(|_| "`data` must be a hex string".to_string())?);
        }
        if let Some(len) = len.filter(|&l| l != out.len()) {
            return Err(format!("`data` holds {} bytes, {len} expected", out.len()));
        }
        Ok(Some(Cow::Owned(out)))
    }

    fn posted_nbl(&self, d: &serde_json::Value) -> Read<PostedNbl> {
        let id = self.id(self.field(d, "id")?)?;
        let mut mdls = Vec::new();
        let mut total = 0usize;
        for m in self.list(d, "mdls")? {
            match m.as_u64().and_then(|n| usize::try_from(n).ok()) {
                Some(n) if n <= MAX_BYTES - total => {
                    total += n;
                    mdls.push(n);
                }
                _ => return Err("`mdls` must list byte counts, at most 64 MiB in all".into()),
            }
        }
        Ok(PostedNbl {
            id,
            mdls,
            offset: self.size(d, "offset")?,
            length: self.size(d, "length")?,
            no_push: self.flag(d, "no_push")?,
            prefilled: d.get("prefilled").and_then(serde_json::Value::as_u64).unwrap_or(0) as usize,
        })
    }

    fn send_nbl(&self, d: &serde_json::Value) -> Read<SendNbl<'static>> {
        let id = self.id(self.field(d, "id")?)?;
        let mut nbs = Vec::new();
        let mut total = 0usize;
        for nb in self.list(d, "nbs")? {
            let mut mdls = Vec::new();
            for m in self.list(nb, "mdls")? {
                match m.as_u64().and_then(|n| usize::try_from(n).ok()) {
                    Some(n) if n <= MAX_BYTES - total => {
                        total += n;
                        mdls.push(n);
                    }
                    _ => return Err("`mdls` must list byte counts, at most 64 MiB in all".into()),
                }
            }
            let length = self.size(nb, "length")?;
            nbs.push(SendNb { mdls, offset: self.size(nb, "offset")?, length, data: self.data(nb, Some(length))? });
        }
        Ok(SendNbl { id, nbs })
    }

    fn sent_nbl(&self, d: &serde_json::Value) -> Read<SentNbl> {
        let id = self.id(self.field(d, "id")?)?;
        let mut nbs = Vec::new();
        for nb in self.list(d, "nbs")? {
            let pair = nb.as_array().filter(|a| a.len() == 2).and_then(|a| Some((a[0].as_u64()?, a[1].as_u64()?)));
            let Some((o, l)) = pair else { return Err("`nbs` lists [offset, length] pairs".into()) };
            nbs.push((o as usize, l as usize));
        }
        Ok(SentNbl { id, status: self.status(d)?, bytes_transferred: self.size(d, "bytes_transferred")?, nbs })
    }

    fn data_nbl(&self, d: &serde_json::Value) -> Read<DataNbl<'static>> {
        let id = self.id(self.field(d, "id")?)?;
        let offset = d.get("offset").and_then(serde_json::Value::as_u64).unwrap_or(0) as usize;
        let length = self.size(d, "length")?;
        if offset.saturating_add(length) > MAX_BYTES {
            return Err("offset + length over 64 MiB".into());
        }
        Ok(DataNbl { id, offset, length, data: self.data(d, Some(length))? })
    }

    fn data_nbls(&self, k: &str) -> Read<Vec<DataNbl<'static>>> {
        self.list(self.v, k)?.iter().map(|d| self.data_nbl(d)).collect()
    }

    fn event(&self) -> Read<TcpOffloadEvent> {
        Ok(match self.text(self.v, "event")? {
            "DISCONNECT" => TcpOffloadEvent::Disconnect,
            "ABORT" => TcpOffloadEvent::Abort,
            "RETRIEVE" => match TcpUploadReason::from_code(self.num(self.v, "reason")?) {
                Some(r) => TcpOffloadEvent::Retrieve(r),
                None => return Err("unknown upload reason".into()),
            },
            "SEND_BACKLOG_CHANGE" => TcpOffloadEvent::SendBacklogChange(self.num32(self.v, "bytes")?),
            other => return Err(format!("unknown event {other:?}")),
        })
    }
}

impl Line<'static> {
    /// Reads one trace line (a JSON object) into its record: the one reader of the schema
    /// (the replay and the plot use it). The header is read by its `chimney_trace` field;
    /// every other line by its `ev`. Errors name the field that is missing or wrong.
    pub fn read(v: &serde_json::Value) -> Result<Line<'static>, String> {
        if let Some(version) = v.get("chimney_trace") {
            return Ok(Line::Header {
                version: version.as_u64().unwrap_or(0),
                generator: Cow::Owned(v.get("generator").and_then(serde_json::Value::as_str).unwrap_or("").into()),
                bytes: v.get("bytes").and_then(serde_json::Value::as_bool).unwrap_or(false),
                push_timer: v.get("push_timer").and_then(serde_json::Value::as_bool).unwrap_or(false),
            });
        }
        let kind = v.get("ev").and_then(serde_json::Value::as_str).unwrap_or("");
        let f = Fields { kind, v };
        let ev = TraceEv::parse(kind).ok_or_else(|| format!("unknown event {kind:?}"))?;
        let t = f.t();
        Ok(match ev {
            TraceEv::Offload => {
                let buffered = if v.get("buffered").is_some() { f.data_nbls("buffered")? } else { Vec::new() };
                Line::Offload {
                    t,
                    conn: f.conn()?,
                    local_port: f.opt32(v, "local_port")? as u16,
                    remote_port: f.opt32(v, "remote_port")? as u16,
                    initial_rcv_wnd: f.num32(v, "initial_rcv_wnd")?,
                    rcv_indication_size: f.opt32(v, "rcv_indication_size")?,
                    state: f.state(v)?,
                    rcv_nxt: f.num32(v, "rcv_nxt")?,
                    buffered,
                }
            }
            TraceEv::Post => {
                let conn = f.conn()?;
                let nbls = f.list(v, "nbls")?.iter().map(|d| f.posted_nbl(d)).collect::<Read<_>>()?;
                Line::Post { t, conn, nbls }
            }
            TraceEv::Return => {
                Line::Return { t, nbls: f.list(v, "nbls")?.iter().map(|x| f.id(x)).collect::<Read<_>>()? }
            }
            TraceEv::Disconnect => {
                let abortive = match f.text(v, "kind")? {
                    "graceful" => false,
                    "abortive" => true,
                    k => return Err(format!("disconnect kind {k:?} (graceful or abortive)")),
                };
                let nbl = v.get("nbl").map(|d| f.send_nbl(d)).transpose()?;
                Line::Disconnect { t, conn: f.conn()?, abortive, nbl }
            }
            TraceEv::Send => {
                let conn = f.conn()?;
                let nbls = f.list(v, "nbls")?.iter().map(|d| f.send_nbl(d)).collect::<Read<_>>()?;
                Line::Send { t, conn, nbls }
            }
            TraceEv::SendRead => {
                let len = f.size(v, "len")?;
                Line::SendRead { t, conn: f.conn()?, at: f.num(v, "at")?, len, data: f.data(v, Some(len))? }
            }
            TraceEv::SendAcked => Line::SendAcked { t, conn: f.conn()?, upto: f.num(v, "upto")? },
            TraceEv::SendComplete => {
                let conn = f.conn()?;
                let nbls = f.list(v, "nbls")?.iter().map(|d| f.sent_nbl(d)).collect::<Read<_>>()?;
                Line::SendComplete { t, conn, nbls }
            }
            TraceEv::DisconnectComplete => {
                let nbl = v.get("nbl").filter(|n| !n.is_null()).map(|d| f.sent_nbl(d)).transpose()?;
                Line::DisconnectComplete { t, conn: f.conn()?, status: f.status(v)?, nbl }
            }
            TraceEv::Terminate => Line::Terminate { t, conn: f.conn()? },
            TraceEv::Timer => Line::Timer { t },
            TraceEv::Data => {
                let len = f.size(v, "len")?;
                let conn = f.conn()?;
                let data = f.data(v, Some(len))?;
                Line::Data { t, conn, len, psh: f.flag(v, "psh")?, data }
            }
            TraceEv::Fin => Line::Fin { t, conn: f.conn()? },
            TraceEv::Rst => Line::Rst { t, conn: f.conn()? },
            TraceEv::TcpEvent => {
                // The event itself is the upcall recorded inside; the line names the cause.
                let event = f.event().unwrap_or(TcpOffloadEvent::Retrieve(TcpUploadReason::UploadRequested));
                Line::TcpEvent { t, conn: f.conn()?, event }
            }
            TraceEv::Complete => {
                let conn = f.conn()?;
                let mut nbls = Vec::new();
                for d in f.list(v, "nbls")? {
                    let id = f.id(f.field(d, "id")?)?;
                    let (offset, length) = (f.size(d, "offset")?, f.size(d, "length")?);
                    let data = f.data(d, None)?;
                    nbls.push(CompletedNbl {
                        id,
                        status: f.status(d)?,
                        bytes_transferred: f.size(d, "bytes_transferred")?,
                        offset,
                        length,
                        offset_before: d.get("offset_before").and_then(serde_json::Value::as_u64).map(|n| n as usize),
                        data,
                    });
                }
                Line::Complete { t, conn, nbls }
            }
            TraceEv::Indicate => {
                let conn = f.conn()?;
                let nbls = f.data_nbls("nbls")?;
                Line::Indicate { t, conn, status: f.status(v)?, nbls }
            }
            TraceEv::Event => Line::Event { t, conn: f.conn()?, event: f.event()? },
            TraceEv::PushTimer => {
                Line::PushTimer { conn: f.conn()?, due: v.get("due").and_then(serde_json::Value::as_u64) }
            }
            TraceEv::Ret => {
                let status = match v.get("status").and_then(serde_json::Value::as_str) {
                    None => None,
                    Some("ERROR") => Some(RetStatus::Error),
                    Some(_) => Some(RetStatus::Ndis(f.status(v)?)),
                };
                let outcome = v.get("outcome").and_then(serde_json::Value::as_str);
                Line::Ret(Ret {
                    status,
                    error: v.get("error").and_then(serde_json::Value::as_str).map(str::to_string),
                    outcome: outcome.and_then(Outcome::parse),
                    consumed: v.get("consumed").map(|_| f.size(v, "consumed")).transpose()?,
                    rcv_nxt: v.get("rcv_nxt").map(|_| f.num32(v, "rcv_nxt")).transpose()?,
                    state: v.get("state").map(|_| f.state(v)).transpose()?,
                    buffered: v.get("buffered").map(|_| f.data_nbls("buffered")).transpose()?,
                    returned: v
                        .get("returned")
                        .map(|_| f.list(v, "returned")?.iter().map(|x| f.id(x)).collect::<Read<Vec<_>>>())
                        .transpose()?,
                })
            }
        })
    }
}
