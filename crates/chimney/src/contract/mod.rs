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
pub mod trace;
mod verifier;

use crate::ndis::{DisconnectKind, NblChain, NdisStatus, TcpDelegatedState, TcpOffloadEvent, TcpOffloadState};
use crate::time::Instant;

pub use checked::CheckedDelivery;
pub use delivery::{Delivery, DeliveryConfig, DeliveryStats};
pub use rules::{Rule, RULES};
pub use verifier::{Verifier, VerifierCore, VerifierMode, VerifyingHost, Violation};

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

    /// Whether nothing was queued.
    pub fn is_empty(&self) -> bool {
        self.posts.is_empty() && self.returns.is_empty()
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
    pub state: TcpOffloadState,
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

    /// MiniportTcpOffloadDisconnect. The delivery layer handles `Abortive` (R-ABT-1).
    fn disconnect(
        &mut self,
        now: Instant,
        conn: ConnId,
        kind: DisconnectKind,
        host: &mut dyn ProtocolHost,
    ) -> Result<(), ApiMisuse>;

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
