//! Where the contract is silent or contradicts itself (spec §8), we decide here, once.
//!
//! Every decision the delivery layer, the verifier or the replay branches on is a named
//! constant or function in this module, with the ambiguity id it resolves, and they use it
//! from here. Decisions that shape the code without a branch of their own (A14: terminate
//! returns undelivered data as BufferedData; A21: the push timer tracks the head request
//! only; A24: a top-level post may complete requests before it returns) are stated in
//! docs/spec.md §8 and cited where they apply.

use crate::ndis::{NdisStatus, NetBufferList};

/// **A2.** The indication remarks say `NDIS_STATUS_NOT_ACCEPTED`, the return table says
/// `NDIS_STATUS_OFFLOAD_DATA_NOT_ACCEPTED`. Our host API returns an enum
/// ([`super::IndicateReturn`]) whose refusal maps to the latter; both codes count as refusal.
pub fn is_refusal(status: NdisStatus) -> bool {
    matches!(status, NdisStatus::OffloadDataNotAccepted | NdisStatus::NotAccepted)
}

/// **A7.** `TcpReceiveBytesTransferred` = bytes the host placed before posting. We read them as
/// lying *before* `DataOffset` (the host advanced past them), so the used data space is exactly
/// the free room, the target writes at `DataOffset` as always, and `TcpOffloadBytesTransferred`
/// counts only the target's bytes (R-ACC-1 holds unchanged). A push-mode request with
/// pre-filled bytes counts as partially filled, so its push timer runs from the moment it
/// heads the queue (= post time when the queue is empty, R-POST-8). Read before slot 0 is
/// written (spec §2.5 aliasing).
pub fn prefilled_bytes(nbl: &NetBufferList) -> usize {
    nbl.tcp_receive_bytes_transferred()
}

/// **A8.** A zero-byte request is completed (SUCCESS, 0 bytes) when it reaches the head of the
/// FIFO *and data is available* (buffered or arriving) — the Winsock meaning of a zero-byte
/// receive, "tell me when there is data". It consumes nothing; the data then goes to the next
/// request or, with none, to an indication, which its post has re-enabled (R-IND-7). Outstanding
/// zero-byte requests are also completed by disconnect, abort and terminate like any other.
pub fn zero_byte_request_completes(bytes_available: usize) -> bool {
    bytes_available > 0
}

/// **A9.** Requests still outstanding when TcpIndicateDisconnect is made (necessarily empty:
/// the disconnect waits until all data is consumed, and FIN completes a partially filled
/// request of either mode first) are completed like later posts: `NDIS_STATUS_INVALID_STATE`,
/// 0 bytes, right after the disconnect event returns.
pub const STATUS_AFTER_DISCONNECT: NdisStatus = NdisStatus::InvalidState;

/// **A11.** At terminate, empty outstanding requests complete with
/// `NDIS_STATUS_UPLOAD_IN_PROGRESS` and 0 bytes (the status the upload pages use for I/O during
/// an upload).
pub const STATUS_AT_TERMINATE_EMPTY: NdisStatus = NdisStatus::UploadInProgress;

/// **A11.** A request that already holds bytes the target placed (not just host pre-fill)
/// at terminate completes with
/// `NDIS_STATUS_SUCCESS` and its byte count, as a push would: a failure status could make a
/// host discard bytes that are delivered nowhere else. (A6: SUCCESS with a partial count is
/// already the push-completion meaning.)
pub const STATUS_AT_TERMINATE_WITH_DATA: NdisStatus = NdisStatus::Success;

/// **A10.** After an acceptable RST every outstanding receive request completes with
/// `NDIS_STATUS_REQUEST_ABORTED` (the FIN/RST page's "REQUEST_ABORT"), carrying the bytes already
/// placed; TcpIndicateAbort comes first. Host abortive disconnect (R-ABT-1) does the same
/// without the event.
pub const STATUS_AFTER_ABORT: NdisStatus = NdisStatus::RequestAborted;

/// **A22.** PSH is remembered as a stream offset (the end of the newest PSH segment). A partially
/// filled push-mode request is completed when it holds a byte before that mark — also when
/// the bytes reached it from buffered data on a later post.
pub fn push_applies(psh_mark: u64, head_start: u64) -> bool {
    psh_mark > head_start
}

/// **A35** (flowchart 1, "buffered not empty → append, no indication"). That branch assumes
/// buffered data exists only after a refusal. Offload-time `BufferedData` has not been refused,
/// so we track the refusal itself (`blocked_by_refusal`: set by a refusal, cleared by any
/// post) and indicate buffered data whenever it is not blocked; BufferedData is offered on the
/// first timer run after the offload completes (R-IND-11).
pub fn indication_allowed(blocked_by_refusal: bool) -> bool {
    !blocked_by_refusal
}
