//! The C types of the ABI: views of NET_BUFFER_LIST / NET_BUFFER / MDL, the offload state, and
//! the two function tables (the target's entry points, the host's upcalls). `include/chimney.h`
//! is generated from this file by cbindgen; its comments are these doc comments.
//!
//! Ownership follows NDIS: whoever holds an NBL pointer owns the NBL and everything it points
//! to, until it hands it on.
//!
//! * A **posted receive request** is chimney's (the host's) memory. The target owns it from
//!   `receive` until it passes it to `receive_complete`; it may write the NBL's `status` and
//!   `info` slots, the NB's geometry (through `chimney_advance_data_start` or by hand) and
//!   the bytes its MDLs describe, and link NBLs through `next`. After the completion it must
//!   not touch it again.
//! * An **indicated NBL** is the target's memory. On `CHIMNEY_STATUS_SUCCESS` the host owns it
//!   until it hands it back through the target's `receive_return`; on a refusal the target
//!   owns it again when `receive_indicate` returns. The same goes for the BufferedData NBLs a
//!   target returns at terminate.
//! * **BufferedData at offload** is the host's: the target copies it during `initiate_offload`
//!   and keeps no pointer.
//!
//! Every call is made by one thread at a time, and every upcall must be made from inside an
//! entry point (work a target defers goes in `handle_timeout`, which chimney calls at the
//! deadline `poll_timeout` names). A host call made inside an upcall (a post from inside a
//! completion, a return from inside an indication) re-enters the target's entry point before
//! the upcall returns, as NDIS does: the target queues it and serves it after the upcall.

use std::ffi::{c_char, c_void};

/// The version of this ABI; a target's `abi_version` must equal it.
pub const CHIMNEY_ABI_VERSION: u32 = 1;

/// `NDIS_STATUS_SUCCESS`.
pub const CHIMNEY_STATUS_SUCCESS: u32 = 0x0000_0000;
/// `NDIS_STATUS_PENDING`: the only correct result of `receive`.
pub const CHIMNEY_STATUS_PENDING: u32 = 0x0000_0103;
/// `NDIS_STATUS_FAILURE`.
pub const CHIMNEY_STATUS_FAILURE: u32 = 0xC000_0001;
/// `NDIS_STATUS_RESOURCES`.
pub const CHIMNEY_STATUS_RESOURCES: u32 = 0xC000_009A;
/// `NDIS_STATUS_INVALID_STATE`: a receive posted after TcpIndicateDisconnect.
pub const CHIMNEY_STATUS_INVALID_STATE: u32 = 0xC000_0184;
/// `NDIS_STATUS_REQUEST_ABORTED`: receive completions after a RST or an abortive disconnect.
pub const CHIMNEY_STATUS_REQUEST_ABORTED: u32 = 0xC001_000C;
/// `NDIS_STATUS_UPLOAD_IN_PROGRESS`: requests completed by terminate or after an upload request.
pub const CHIMNEY_STATUS_UPLOAD_IN_PROGRESS: u32 = 0xC023_1001;
/// `NDIS_STATUS_OFFLOAD_DATA_NOT_ACCEPTED`: an indication refused, nothing consumed.
pub const CHIMNEY_STATUS_DATA_NOT_ACCEPTED: u32 = 0xC023_100E;
/// `NDIS_STATUS_OFFLOAD_DATA_PARTIALLY_ACCEPTED`: an indication partly consumed.
pub const CHIMNEY_STATUS_DATA_PARTIALLY_ACCEPTED: u32 = 0xC023_1010;

/// `TcpIndicateDisconnect`: the peer's FIN, every byte before it consumed.
pub const CHIMNEY_EVENT_DISCONNECT: u32 = 2;
/// `TcpIndicateRetrieve`: the target asks for an upload; the second argument is the
/// `TCP_UPLOAD_REASON`.
pub const CHIMNEY_EVENT_RETRIEVE: u32 = 3;
/// `TcpIndicateAbort`: an acceptable RST arrived.
pub const CHIMNEY_EVENT_ABORT: u32 = 4;

/// `TCP_OFFLOAD_CONNECTION_STATE` ESTABLISHED.
pub const CHIMNEY_TCP_ESTABLISHED: u32 = 4;
/// `TCP_OFFLOAD_CONNECTION_STATE` CLOSE_WAIT: the peer's FIN was received.
pub const CHIMNEY_TCP_CLOSE_WAIT: u32 = 7;

/// `NetBufferListInfo` slot of TcpOffloadBytesTransferred: bytes the target placed.
pub const CHIMNEY_INFO_BYTES_TRANSFERRED: usize = 0;
/// `NetBufferListInfo` slot of TcpReceiveNoPush: non-zero for a non-push request.
pub const CHIMNEY_INFO_RECEIVE_NO_PUSH: usize = 2;
/// `NetBufferListInfo` slot of TcpReceiveBytesTransferred: bytes the host pre-filled.
pub const CHIMNEY_INFO_RECEIVE_BYTES_TRANSFERRED: usize = 17;
/// Number of `NetBufferListInfo` slots.
pub const CHIMNEY_INFO_SLOTS: usize = 20;

/// `poll_timeout` / `push_timer` value meaning "none".
pub const CHIMNEY_NO_DEADLINE: u64 = u64::MAX;

/// An `MDL`: one piece of memory.
#[repr(C)]
#[derive(Debug)]
pub struct ChimneyMdl {
    /// The next MDL of the chain, or NULL.
    pub next: *mut ChimneyMdl,
    /// `MappedSystemVa`: the memory.
    pub mapped_system_va: *mut u8,
    /// `ByteCount`: its length.
    pub byte_count: u32,
}

/// A `NET_BUFFER`: an MDL chain and the used data space within it. Invariant: `data_offset` is
/// the bytes of the MDLs before `current_mdl` plus `current_mdl_offset`, and `data_offset +
/// data_length` is at most the chain's bytes.
#[repr(C)]
#[derive(Debug)]
pub struct ChimneyNetBuffer {
    /// The next NB of the NBL (always NULL on the receive path).
    pub next: *mut ChimneyNetBuffer,
    /// The first MDL.
    pub mdl_chain: *mut ChimneyMdl,
    /// `CurrentMdl`: the MDL holding the first byte of the data space.
    pub current_mdl: *mut ChimneyMdl,
    /// `CurrentMdlOffset`: where in it.
    pub current_mdl_offset: u32,
    /// `DataOffset`: bytes before the data space.
    pub data_offset: u32,
    /// `DataLength`: bytes of the data space (a posted request's capacity).
    pub data_length: u32,
}

/// A `NET_BUFFER_LIST`: one NB on the receive path.
#[repr(C)]
#[derive(Debug)]
pub struct ChimneyNetBufferList {
    /// `Next`: the next NBL of a chain, or NULL.
    pub next: *mut ChimneyNetBufferList,
    /// `FirstNetBuffer`.
    pub first_net_buffer: *mut ChimneyNetBuffer,
    /// `Status`, written by the target before completing.
    pub status: u32,
    /// `NetBufferListInfo` (see the `CHIMNEY_INFO_*` slots).
    pub info: [usize; CHIMNEY_INFO_SLOTS],
    /// `MiniportReserved`: the target's scratch while it owns the NBL (e.g. a FIFO link).
    pub miniport_reserved: [usize; 2],
    /// `ProtocolReserved`: the host's; the target leaves it alone.
    pub protocol_reserved: [usize; 4],
}

/// What `initiate_offload` hands over (the receive part of TCP_OFFLOAD_STATE_*).
#[repr(C)]
#[derive(Debug)]
pub struct ChimneyOffloadState {
    /// Local TCP port.
    pub local_port: u16,
    /// Remote TCP port.
    pub remote_port: u16,
    /// `InitialRcvWnd`: the receive buffer the host wants.
    pub initial_rcv_wnd: u32,
    /// `RcvIndicationSize`: bytes per indication when non-zero.
    pub rcv_indication_size: u32,
    /// `TCP_OFFLOAD_CONNECTION_STATE` (ESTABLISHED, or CLOSE_WAIT when the FIN came first).
    pub state: u32,
    /// `RcvNxt`.
    pub rcv_nxt: u32,
    /// `BufferedData`: the host's undelivered bytes, to copy during the call (may be NULL).
    pub buffered_data: *mut ChimneyNetBufferList,
}

/// What `terminate_offload` returns (the receive part of TCP_OFFLOAD_STATE_DELEGATED).
#[repr(C)]
#[derive(Debug)]
pub struct ChimneyDelegatedState {
    /// `TCP_OFFLOAD_CONNECTION_STATE` now.
    pub state: u32,
    /// `RcvNxt`: the next byte expected (counting a received FIN).
    pub rcv_nxt: u32,
    /// `BufferedData`: the target's NBLs holding every received byte not yet delivered, in
    /// order (NULL when none); the host returns them through `receive_return`.
    pub buffered_data: *mut ChimneyNetBufferList,
}

/// The upcalls chimney provides to a target (NDIS_TCP_OFFLOAD_EVENT_HANDLERS plus
/// NdisTcpOffloadReceiveComplete). Each takes `ctx` first. Per connection they are never
/// concurrent and never nested.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ChimneyHostOps {
    /// `CHIMNEY_ABI_VERSION`.
    pub abi_version: u32,
    /// Pass to every upcall.
    pub ctx: *mut c_void,
    /// `NdisTcpOffloadReceiveComplete`: returns posted requests, FIFO, linked through `next`,
    /// each with `status`, TcpOffloadBytesTransferred and its data start advanced by the bytes
    /// placed.
    pub receive_complete: extern "C" fn(ctx: *mut c_void, conn: u32, nbls: *mut ChimneyNetBufferList),
    /// `NdisTcpOffloadReceiveHandler`: offers the data of one stand-alone target NBL; returns
    /// SUCCESS (everything consumed, the host keeps the NBL), DATA_NOT_ACCEPTED or
    /// DATA_PARTIALLY_ACCEPTED (the NBL is the target's again); `*bytes_consumed` says how much
    /// was taken. `status` must be SUCCESS.
    pub receive_indicate: extern "C" fn(
        ctx: *mut c_void,
        conn: u32,
        nbl: *mut ChimneyNetBufferList,
        status: u32,
        bytes_consumed: *mut u32,
    ) -> u32,
    /// `NdisTcpOffloadEventHandler`: `event` is a `CHIMNEY_EVENT_*`; `specific` is the upload
    /// reason for `CHIMNEY_EVENT_RETRIEVE`, else 0.
    pub event_indicate: extern "C" fn(ctx: *mut c_void, conn: u32, event: u32, specific: u32),
}

/// The entry points a target implements. Times are nanoseconds from a fixed origin, never
/// decreasing. A connection is named by a small number chosen by the host.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ChimneyTargetOps {
    /// `CHIMNEY_ABI_VERSION`.
    pub abi_version: u32,
    /// A short name for reports (a NUL-terminated string the target keeps alive).
    pub name: *const c_char,
    /// Creates a target that makes its upcalls through `host` (valid until `destroy`).
    /// `push_time_ms` is the push timer (TcpPushTicks at 1 ms a tick). NULL on failure.
    pub create: extern "C" fn(host: *const ChimneyHostOps, push_time_ms: u32) -> *mut c_void,
    /// Frees the target. Every connection has been terminated.
    pub destroy: extern "C" fn(target: *mut c_void),
    /// `MiniportInitiateOffload`, completed synchronously: SUCCESS, or a failure status (the
    /// connection is then not offloaded).
    pub initiate_offload:
        extern "C" fn(target: *mut c_void, now: u64, conn: u32, state: *const ChimneyOffloadState) -> u32,
    /// `MiniportTcpOffloadReceive`: a chain of posted requests; returns PENDING.
    pub receive: extern "C" fn(target: *mut c_void, now: u64, conn: u32, nbls: *mut ChimneyNetBufferList) -> u32,
    /// `MiniportTcpOffloadReceiveReturn`: indicated (or terminate BufferedData) NBLs come back,
    /// possibly of several connections; returns SUCCESS.
    pub receive_return: extern "C" fn(target: *mut c_void, now: u64, nbls: *mut ChimneyNetBufferList) -> u32,
    /// `MiniportTerminateOffload`, completed synchronously: completes every outstanding
    /// request, fills `out`, forgets the connection; returns SUCCESS.
    pub terminate_offload:
        extern "C" fn(target: *mut c_void, now: u64, conn: u32, out: *mut ChimneyDelegatedState) -> u32,
    /// In-sequence payload of one segment and its PSH bit (at most `receive_space` bytes);
    /// returns SUCCESS.
    pub receive_data:
        extern "C" fn(target: *mut c_void, now: u64, conn: u32, data: *const u8, len: usize, psh: bool) -> u32,
    /// The in-sequence FIN; returns SUCCESS.
    pub receive_fin: extern "C" fn(target: *mut c_void, now: u64, conn: u32) -> u32,
    /// An acceptable RST; returns SUCCESS.
    pub receive_rst: extern "C" fn(target: *mut c_void, now: u64, conn: u32) -> u32,
    /// `MiniportTcpOffloadDisconnect` with `TCP_DISCONNECT_ABORTIVE_CLOSE`: stop receiving at
    /// once, complete every request REQUEST_ABORTED; returns SUCCESS.
    pub abortive_disconnect: extern "C" fn(target: *mut c_void, now: u64, conn: u32) -> u32,
    /// Bytes `receive_data` can take now on `conn`.
    pub receive_space: extern "C" fn(target: *mut c_void, conn: u32) -> usize,
    /// Runs whatever is due at `now` (push timers, deferred work).
    pub handle_timeout: extern "C" fn(target: *mut c_void, now: u64),
    /// When `handle_timeout` should next run, or `CHIMNEY_NO_DEADLINE`.
    pub poll_timeout: extern "C" fn(target: *mut c_void) -> u64,
    /// The connection's push-timer deadline, or `CHIMNEY_NO_DEADLINE` when it is not running.
    pub push_timer: extern "C" fn(target: *mut c_void, conn: u32) -> u64,
    /// An event the TCP layer raises (`CHIMNEY_EVENT_RETRIEVE` with its upload reason: urgent
    /// data, a timeout): the target indicates it through `event_indicate`, serialized with its
    /// other upcalls, and from then on follows the upload rules (posts made after a mandatory
    /// request complete UPLOAD_IN_PROGRESS with no data; after one for urgent data nothing new
    /// is delivered). May be NULL: chimney then indicates the event itself, unchecked.
    pub tcp_event: Option<extern "C" fn(target: *mut c_void, now: u64, conn: u32, event: u32, specific: u32) -> u32>,
}

/// The symbol a target library exports: returns its entry points (static, never freed).
pub const CHIMNEY_TARGET_SYMBOL: &[u8] = b"chimney_target_ops\0";

/// The signature of `CHIMNEY_TARGET_SYMBOL`.
pub type ChimneyTargetEntry = unsafe extern "C" fn() -> *const ChimneyTargetOps;
