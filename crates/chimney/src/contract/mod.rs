//! The chimney receive contract: the two interfaces, the delivery algorithm and its verifier.
//!
//! ```text
//!   engine (in-order bytes, PSH, FIN, RST)          host stack + application
//!            │ ReceiveInput                               │ OffloadTarget (posts, returns,
//!            ▼                                            ▼  initiate, terminate, timers)
//!   ┌──────────────────────── Verifier<T> (optional) ───────────────────────┐
//!   │  checks every call both ways against the rules catalogue (rules.rs)   │
//!   └───────────────────────────────────┬───────────────────────────────────┘
//!                                       ▼
//!                    Delivery: posted FIFO · buffered bytes · push timer
//!                                       │ ProtocolHost upcalls (+ NestedCalls)
//!                                       ▼
//!        receive_complete · receive_indicate · event_indicate  → host
//! ```
//!
//! Re-entrancy is made structural: every upcall receives a [`NestedCalls`] through which the
//! host may post receive requests or return indicated NBLs *during* the upcall. The target
//! queues those and processes them after the upcall returns, so it can never re-enter
//! `receive_complete` (R-CMP-6) and never loses or reorders a post (R-POST-3, R-POST-5).

pub mod ambiguity;
mod checked;
mod delivery;
pub mod replay;
pub mod rules;
pub mod schema;
pub mod send;
mod send_check;
pub mod trace;
mod verifier;

use crate::ndis::{DisconnectKind, NblChain, NdisStatus, TcpDelegatedState, TcpOffloadEvent, TcpOffloadState};
use crate::time::Instant;

pub use checked::CheckedDelivery;
pub use delivery::{Delivery, DeliveryConfig, DeliveryStats};
pub use rules::{Rule, RULES};
pub use verifier::{
    Verifier, VerifierCore, VerifierMode, VerifyingHost, Violation, DEFER_TOLERANCE, PUSH_EARLY_TOLERANCE,
    PUSH_LATE_TOLERANCE,
};

/// A connection as both sides name it: the host's `NdisOffloadHandle` and the target's
/// `MiniportOffloadContext` collapsed into one small dense id chosen by the host at offload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u32);

impl core::fmt::Display for ConnId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "conn:{}", self.0)
    }
}

/// Calls the host makes from *inside* an upcall. The target owns this queue and processes it
/// after the upcall returns: posts in the order made, after every earlier post.
#[derive(Debug, Default)]
pub struct NestedCalls {
    posts: Vec<(ConnId, NblChain)>,
    returns: NblChain,
    sends: Vec<(ConnId, NblChain)>,
    disconnects: Vec<(ConnId, DisconnectKind, NblChain)>,
}

impl NestedCalls {
    /// An empty queue.
    pub fn new() -> NestedCalls {
        NestedCalls::default()
    }

    /// MiniportTcpOffloadReceive from inside an upcall (returns PENDING by construction).
    pub fn post_receive(&mut self, conn: ConnId, nbls: NblChain) {
        if !nbls.is_empty() {
            self.posts.push((conn, nbls));
        }
    }

    /// MiniportTcpOffloadReceiveReturn from inside an upcall.
    pub fn receive_return(&mut self, mut nbls: NblChain) {
        self.returns.append(&mut nbls);
    }

    /// MiniportTcpOffloadSend from inside an upcall (R-SND-4: queued, sent after every earlier
    /// send of the connection, completed later, never from inside this upcall).
    pub fn post_send(&mut self, conn: ConnId, nbls: NblChain) {
        if !nbls.is_empty() {
            self.sends.push((conn, nbls));
        }
    }

    /// MiniportTcpOffloadDisconnect from inside an upcall (an echo host closes when the
    /// peer's FIN is indicated): queued after the sends made before it in this upcall.
    pub fn disconnect(&mut self, conn: ConnId, kind: DisconnectKind, nbl: NblChain) {
        self.disconnects.push((conn, kind, nbl));
    }

    /// Whether nothing was queued.
    pub fn is_empty(&self) -> bool {
        self.posts.is_empty() && self.returns.is_empty() && self.sends.is_empty() && self.disconnects.is_empty()
    }

    /// Drains the queued sends in the order made.
    pub fn drain_sends(&mut self) -> std::vec::Drain<'_, (ConnId, NblChain)> {
        self.sends.drain(..)
    }

    /// Drains the queued disconnects in the order made.
    pub fn drain_disconnects(&mut self) -> std::vec::Drain<'_, (ConnId, DisconnectKind, NblChain)> {
        self.disconnects.drain(..)
    }

    /// Drains the queued posts in the order made (keeps the allocation for reuse).
    pub fn drain_posts(&mut self) -> std::vec::Drain<'_, (ConnId, NblChain)> {
        self.posts.drain(..)
    }

    /// Takes the queued returns.
    pub fn take_returns(&mut self) -> NblChain {
        self.returns.take()
    }
}

/// What `NdisTcpOffloadReceiveHandler` returns (R-IND-5). Ownership follows the status: on
/// `Success` the host keeps the NBL until it returns it; otherwise it hands it back now.
#[derive(Debug)]
pub enum IndicateReturn {
    /// `NDIS_STATUS_SUCCESS`: everything consumed; the host keeps the NBL.
    Success,
    /// `NDIS_STATUS_OFFLOAD_DATA_NOT_ACCEPTED` (or `NDIS_STATUS_NOT_ACCEPTED`, spec §8 A2): nothing
    /// consumed; the NBL comes back.
    NotAccepted(NblChain),
    /// `NDIS_STATUS_OFFLOAD_DATA_PARTIALLY_ACCEPTED`: the first `bytes_consumed` bytes were
    /// consumed; the NBL comes back.
    PartiallyAccepted {
        /// The indicated NBL, handed back.
        nbl: NblChain,
        /// `*BytesConsumed`.
        bytes_consumed: usize,
    },
}

impl IndicateReturn {
    /// The NDIS status this outcome stands for.
    pub fn status(&self) -> NdisStatus {
        match self {
            IndicateReturn::Success => NdisStatus::Success,
            IndicateReturn::NotAccepted(_) => NdisStatus::OffloadDataNotAccepted,
            IndicateReturn::PartiallyAccepted { .. } => NdisStatus::OffloadDataPartiallyAccepted,
        }
    }
}

/// The upcalls an offload target makes into the host stack (NDIS_TCP_OFFLOAD_EVENT_HANDLERS
/// plus NdisTcpOffloadReceiveComplete). Per connection they are never concurrent or nested.
pub trait ProtocolHost {
    /// `NdisTcpOffloadReceiveComplete`: returns posted requests, FIFO, each with `Status`,
    /// `TcpOffloadBytesTransferred` and its data start advanced by the bytes placed.
    fn receive_complete(&mut self, conn: ConnId, nbls: NblChain, nested: &mut NestedCalls);

    /// `NdisTcpOffloadReceiveHandler`: offers data in one stand-alone target NBL.
    fn receive_indicate(
        &mut self,
        conn: ConnId,
        nbl: NblChain,
        status: NdisStatus,
        nested: &mut NestedCalls,
    ) -> IndicateReturn;

    /// `NdisTcpOffloadEventHandler`: disconnect, abort, retrieve (upload request), backlog.
    fn event_indicate(&mut self, conn: ConnId, event: TcpOffloadEvent, nested: &mut NestedCalls);

    /// `NdisTcpOffloadSendComplete`: returns send NBLs, FIFO per connection, each with
    /// `Status`, `TcpOffloadBytesTransferred` (its bytes the peer acknowledged) and every NB's
    /// data start advanced by its own acknowledged bytes. A host that never posts sends never
    /// gets one, hence the empty default.
    fn send_complete(&mut self, conn: ConnId, nbls: NblChain, nested: &mut NestedCalls) {
        let _ = (conn, nbls, nested);
    }

    /// `NdisTcpOffloadDisconnectComplete`: the disconnect NBL (empty when the host gave none)
    /// and the status: SUCCESS once the FIN (graceful) is acknowledged or the RST (abortive)
    /// sent; REQUEST_ABORTED or UPLOAD_IN_PROGRESS otherwise. Default: nothing to do, for a
    /// host that never disconnects.
    fn disconnect_complete(&mut self, conn: ConnId, nbl: NblChain, status: NdisStatus, nested: &mut NestedCalls) {
        let _ = (conn, nbl, status, nested);
    }
}

/// Host mistakes the target refuses with a clear error (never caused by packet bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiMisuse {
    /// No offloaded connection has this id.
    UnknownConnection(ConnId),
    /// The id is already offloaded.
    ConnectionExists(ConnId),
    /// The id is above the target's configured connection limit.
    ConnIdOutOfRange {
        /// The id offered.
        conn: ConnId,
        /// The limit.
        max: u32,
    },
    /// The feeding side offered more bytes than the target said it could hold.
    WindowExceeded {
        /// The connection.
        conn: ConnId,
        /// Bytes offered.
        offered: usize,
        /// Bytes the target could take.
        space: usize,
    },
    /// Data or FIN after FIN, or input after abort.
    NotReceiving(ConnId),
    /// A graceful disconnect asked of the delivery layer: sending FIN is the TCP engine's
    /// send side's job.
    GracefulDisconnectNeedsTcp(ConnId),
    /// Direct placement while earlier bytes wait in the target: those are delivered first.
    PlacementBehindBuffered(ConnId),
    /// This target does not implement direct placement ([`ReceiveInput::receive_placed`]).
    DirectPlacementUnsupported,
    /// This target takes no events from the TCP layer ([`ReceiveInput::indicate_event`]).
    TcpEventsUnsupported,
    /// The engine could not offload: no connection slot, or the delivery layer refused.
    OffloadRefused,
    /// Offline replay: the trace records that this call was refused.
    RefusedInTrace,
    /// This target takes no sends (a receive-only layer).
    SendUnsupported,
    /// A send after the host's graceful disconnect, or a second disconnect (R-DSC-6).
    SendClosed(ConnId),
    /// A disconnect NBL with more than one NB, or an abortive one carrying data (R-DSC-1).
    BadDisconnectNbl(ConnId),
    /// A foreign target (through the C ABI) answered with this status code instead of
    /// taking the call.
    TargetRefused(u32),
}

impl core::fmt::Display for ApiMisuse {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ApiMisuse::UnknownConnection(c) => write!(f, "{c} is not offloaded"),
            ApiMisuse::ConnectionExists(c) => write!(f, "{c} is already offloaded"),
            ApiMisuse::ConnIdOutOfRange { conn, max } => {
                write!(f, "{conn} is above the limit {max}")
            }
            ApiMisuse::WindowExceeded { conn, offered, space } => {
                write!(f, "{conn}: {offered} bytes offered, room for {space}")
            }
            ApiMisuse::NotReceiving(c) => {
                write!(f, "{c} no longer receives (FIN, RST or abort seen)")
            }
            ApiMisuse::GracefulDisconnectNeedsTcp(c) => {
                write!(f, "{c}: a graceful disconnect is sent by the TCP engine, not the delivery layer")
            }
            ApiMisuse::PlacementBehindBuffered(c) => write!(f, "{c}: direct placement behind buffered bytes"),
            ApiMisuse::DirectPlacementUnsupported => write!(f, "this target does not place directly"),
            ApiMisuse::TcpEventsUnsupported => write!(f, "this target takes no events from the TCP layer"),
            ApiMisuse::OffloadRefused => write!(f, "no connection slot, or the delivery layer refused the offload"),
            ApiMisuse::RefusedInTrace => write!(f, "refused in the trace"),
            ApiMisuse::SendUnsupported => write!(f, "this target takes no sends"),
            ApiMisuse::SendClosed(c) => write!(f, "{c}: the host already disconnected gracefully"),
            ApiMisuse::BadDisconnectNbl(c) => {
                write!(f, "{c}: a disconnect takes one NBL with one NB, and an abortive one no data")
            }
            ApiMisuse::TargetRefused(code) => write!(f, "the target answered status {code:#010x}"),
        }
    }
}

impl std::error::Error for ApiMisuse {}

/// A post the target could not take: the NBLs go back to the host with the reason.
#[derive(Debug)]
pub struct PostRejected {
    /// The posted NBLs, untouched.
    pub nbls: NblChain,
    /// Why.
    pub error: ApiMisuse,
}

/// An initiate-offload failure: the block-list status and the state handed back (the host
/// keeps its BufferedData NBLs).
#[derive(Debug)]
pub struct InitiateFailed {
    /// Block-list `Status`, e.g. `NDIS_STATUS_OFFLOAD_TCP_RCV_BUFFER`.
    pub status: NdisStatus,
    /// Why, in words.
    pub error: Option<ApiMisuse>,
    /// The state given, returned.
    pub state: Box<TcpOffloadState>,
}

/// The entry points a host calls on offloaded connections (spec §1.2), sans-IO: time is passed
/// in, and upcalls go to the `host` given with each call. The TCP [`Engine`](crate::Engine)
/// implements it too (it offloads the connections its own listener establishes); the delivery
/// layer and its wrappers also implement [`InitiateOffload`].
pub trait OffloadTarget {
    /// MiniportTcpOffloadReceive: posts receive requests; `Ok(Pending)` is the only correct
    /// result (R-POST-2). Completions may be made before this returns.
    fn receive(
        &mut self,
        now: Instant,
        conn: ConnId,
        nbls: NblChain,
        host: &mut dyn ProtocolHost,
    ) -> Result<NdisStatus, PostRejected>;

    /// MiniportTcpOffloadReceiveReturn: indicated (or terminate BufferedData) NBLs come back;
    /// always `Success` (R-RET-1).
    fn receive_return(&mut self, now: Instant, nbls: NblChain, host: &mut dyn ProtocolHost) -> NdisStatus;

    /// MiniportTcpOffloadDisconnect with its NBL (one NB: a graceful disconnect's final data,
    /// or nothing; an empty chain when the host gives no NBL). `Ok(Pending)`; completed later
    /// by `disconnect_complete` (R-DSC-1). A graceful disconnect sends the data, then FIN, and
    /// closes only the send half; an abortive one sends RST, fails every outstanding send and
    /// stops receiving (R-ABT-1, R-DSC-4).
    fn disconnect(
        &mut self,
        now: Instant,
        conn: ConnId,
        kind: DisconnectKind,
        nbl: NblChain,
        host: &mut dyn ProtocolHost,
    ) -> Result<NdisStatus, PostRejected>;

    /// MiniportTcpOffloadSend: posts send NBLs (any number of NBs and MDLs); `Ok(Pending)` is
    /// the only correct result (R-SND-1). They are sent FIFO straight from the host's MDLs
    /// and completed by `send_complete` once the peer acknowledged them.
    fn send(
        &mut self,
        now: Instant,
        conn: ConnId,
        nbls: NblChain,
        host: &mut dyn ProtocolHost,
    ) -> Result<NdisStatus, PostRejected> {
        let _ = (now, conn, host);
        Err(PostRejected { nbls, error: ApiMisuse::SendUnsupported })
    }

    /// MiniportTerminateOffload, completed synchronously: completes every outstanding request
    /// and returns the delegated state with undelivered data as `BufferedData` (R-TRM-2/3).
    fn terminate_offload(
        &mut self,
        now: Instant,
        conn: ConnId,
        host: &mut dyn ProtocolHost,
    ) -> Result<TcpDelegatedState, ApiMisuse>;

    /// Runs every timer due at `now` (push timers, deferred indications).
    fn handle_timeout(&mut self, now: Instant, host: &mut dyn ProtocolHost);

    /// When `handle_timeout` should next be called.
    fn poll_timeout(&self) -> Option<Instant>;

    /// The connection's push-timer deadline, `None` when not running (as a query reports −1).
    fn push_timer(&self, conn: ConnId) -> Option<Instant>;
}

/// MiniportInitiateOffload (spec §1.2, §6.3): handing an established connection, its state
/// and BufferedData to the target. Separate from [`OffloadTarget`] because a TCP engine that
/// establishes its connections itself does not take them from a host.
pub trait InitiateOffload: OffloadTarget {
    /// MiniportInitiateOffload for one TCP connection, completed synchronously (the return is
    /// NdisMInitiateOffloadComplete). The target copies `BufferedData` and hands the host's
    /// NBLs back in `Ok` (R-BUF-2).
    fn initiate_offload(
        &mut self,
        now: Instant,
        conn: ConnId,
        state: TcpOffloadState,
        host: &mut dyn ProtocolHost,
    ) -> Result<NblChain, InitiateFailed>;
}

/// What the TCP engine feeds the delivery layer: in-sequence bytes, FIN and RST.
pub trait ReceiveInput {
    /// In-sequence payload of one segment (or several coalesced) and its PSH bit.
    fn receive_data(
        &mut self,
        now: Instant,
        conn: ConnId,
        data: &[u8],
        psh: bool,
        host: &mut dyn ProtocolHost,
    ) -> Result<(), ApiMisuse>;

    /// In-sequence FIN: TcpIndicateDisconnect once all earlier data is consumed (R-FIN-1).
    fn receive_fin(&mut self, now: Instant, conn: ConnId, host: &mut dyn ProtocolHost) -> Result<(), ApiMisuse>;

    /// Acceptable RST: abort, complete requests with REQUEST_ABORTED (R-RST-1).
    fn receive_rst(&mut self, now: Instant, conn: ConnId, host: &mut dyn ProtocolHost) -> Result<(), ApiMisuse>;

    /// Bytes `receive_data` can take now (target buffer room plus free room in posted
    /// requests).
    fn receive_space(&self, conn: ConnId) -> usize;

    /// Direct placement (one copy, the kernel's): the writable room of the posted requests,
    /// FIFO, where the next in-sequence bytes would be placed, at most `max` bytes, as slices
    /// stored into `out` (returns how many). None when bytes cannot go straight there: bytes
    /// already waiting go first, a zero-byte request at the head decides alone, the
    /// connection no longer receives. A driver reads the next payload into this room and
    /// then calls [`ReceiveInput::receive_placed`].
    fn placement_room<'a>(&'a mut self, _conn: ConnId, _max: usize, _out: &mut [&'a mut [u8]]) -> usize {
        0
    }

    /// The first `len` bytes of the room [`ReceiveInput::placement_room`] offered hold the
    /// next in-sequence bytes: exactly [`ReceiveInput::receive_data`] with those bytes,
    /// without copying them.
    fn receive_placed(
        &mut self,
        _now: Instant,
        _conn: ConnId,
        _len: usize,
        _psh: bool,
        _host: &mut dyn ProtocolHost,
    ) -> Result<(), ApiMisuse> {
        Err(ApiMisuse::DirectPlacementUnsupported)
    }

    /// Shows the first `len` bytes of the placement room to `f` (the verifier reads what a
    /// driver placed).
    fn placed_bytes(&self, _conn: ConnId, _len: usize, _f: &mut dyn FnMut(&[u8])) {}

    /// An event the TCP layer itself raises (TcpIndicateRetrieve: an upload request),
    /// indicated through this layer so that it is serialized with the connection's other
    /// upcalls, checked and traced like them; the host's nested calls are taken as usual.
    fn indicate_event(
        &mut self,
        _now: Instant,
        _conn: ConnId,
        _event: TcpOffloadEvent,
        _host: &mut dyn ProtocolHost,
    ) -> Result<(), ApiMisuse> {
        Err(ApiMisuse::TcpEventsUnsupported)
    }

    /// Bytes the target can hold whatever the host posts: the basis of the advertised
    /// receive window. It shrinks only when in-order data arrives, so a window advertised
    /// from it never has to retract (spec §8 A34).
    fn receive_window(&self, conn: ConnId) -> usize;
}

/// The send stream of one connection as the TCP send side sees it, in stream offsets (bytes
/// since the connection's first send byte; u64, no wrap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SendStream {
    /// Bytes the peer acknowledged (what `send_acked` was last told).
    pub acked: u64,
    /// Bytes posted: sends, then a graceful disconnect's data.
    pub posted: u64,
    /// A graceful disconnect was requested: FIN goes right after offset `posted`.
    pub fin: bool,
    /// The send half is over (reset, abort, terminate): nothing more may be sent.
    pub closed: bool,
}

/// What the TCP engine asks of the layer that holds the host's send NBLs (the send half's
/// counterpart of [`ReceiveInput`]): the stream to segment, its bytes straight from the
/// host's MDLs, and the peer's acknowledgements, which complete the NBLs.
pub trait SendInput {
    /// The connection's send stream now (all zero for a layer without a send side).
    fn send_stream(&self, conn: ConnId) -> SendStream {
        let _ = conn;
        SendStream::default()
    }

    /// Shows `f` the stream's bytes from offset `from`, at most `len` of them, in order as
    /// slices of the host's MDLs (R-SND-2, R-SND-3: never copied here, never written).
    /// Returns the bytes shown (fewer when the stream holds fewer).
    fn send_bytes(&mut self, conn: ConnId, from: u64, len: usize, f: &mut dyn FnMut(&[u8])) -> usize {
        let _ = (conn, from, len, f);
        0
    }

    /// The end offset of the first send NBL that ends in `(start, end]`, if any: where PSH
    /// goes (R-SND-11: on the last segment of each NBL).
    fn send_nbl_end(&self, conn: ConnId, start: u64, end: u64) -> Option<u64> {
        let _ = (conn, start, end);
        None
    }

    /// The peer acknowledged the stream up to `upto` (`posted + 1` when it acknowledged our
    /// FIN too): completes what that covers, in order, through `send_complete` and
    /// `disconnect_complete`.
    fn send_acked(
        &mut self,
        now: Instant,
        conn: ConnId,
        upto: u64,
        host: &mut dyn ProtocolHost,
    ) -> Result<(), ApiMisuse> {
        let _ = (now, conn, upto, host);
        Err(ApiMisuse::SendUnsupported)
    }

    /// Connections whose send stream grew, or got a disconnect, from inside an upcall since
    /// the last call (the engine then transmits for them). Appends to `out`.
    fn take_send_ready(&mut self, out: &mut Vec<ConnId>) {
        let _ = out;
    }

    /// Disconnects the host made inside upcalls, in order, for the engine to perform (it
    /// sends the FIN or RST) through [`OffloadTarget::disconnect`]. Appends to `out`.
    fn take_nested_disconnects(&mut self, out: &mut Vec<(ConnId, DisconnectKind, NblChain)>) {
        let _ = out;
    }

    /// Sends made inside upcalls that could not be taken, handed back with the reason.
    fn take_rejected_sends(&mut self) -> Vec<PostRejected> {
        Vec::new()
    }
}
