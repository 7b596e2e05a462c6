//! Offload state and event vocabulary of the receive path (spec §0, §6).

use super::buffer::NblChain;

/// `TCP_OFFLOAD_CONNECTION_STATE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum TcpConnectionState {
    /// CLOSED.
    Closed = 0,
    /// LISTEN.
    Listen = 1,
    /// SYN_SENT.
    SynSent = 2,
    /// SYN_RCVD.
    SynRcvd = 3,
    /// ESTABLISHED.
    Established = 4,
    /// FIN_WAIT_1.
    FinWait1 = 5,
    /// FIN_WAIT_2.
    FinWait2 = 6,
    /// CLOSE_WAIT.
    CloseWait = 7,
    /// CLOSING.
    Closing = 8,
    /// LAST_ACK.
    LastAck = 9,
    /// TIME_WAIT.
    TimeWait = 10,
}

impl TcpConnectionState {
    /// The state with NDIS number `n` (trace files and the C ABI carry the number).
    pub fn from_code(n: u64) -> Option<TcpConnectionState> {
        use TcpConnectionState::*;
        [Closed, Listen, SynSent, SynRcvd, Established, FinWait1, FinWait2, CloseWait, Closing, LastAck, TimeWait]
            .into_iter()
            .find(|s| *s as u64 == n)
    }
}

/// `TCP_UPLOAD_REASON`: why the target asks the host to terminate (upload) a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum TcpUploadReason {
    /// Little traffic (optional).
    LowActivity = 1,
    /// Many drops (optional).
    HighDropRate = 2,
    /// Posted buffers too small (optional).
    SmallIo = 3,
    /// The application does not pre-post buffers (optional).
    NoBufferPreposting = 4,
    /// URG data received (mandatory).
    ReceivedUrgentData = 5,
    /// Many IP fragments (optional).
    HighFragmentation = 6,
    /// Many out-of-order packets (optional).
    HighOutOfOrderPackets = 7,
    /// A timer such as FIN_WAIT_2 or keep-alive expired (mandatory).
    TimeoutExpiration = 8,
    /// State invalidated (mandatory).
    InvalidState = 9,
    /// Generic request, e.g. TIME_WAIT or resource shortage (mandatory).
    UploadRequested = 10,
    /// The target lost state (mandatory).
    HardwareFailure = 11,
}

impl TcpUploadReason {
    /// The reason with NDIS number `n`.
    pub fn from_code(n: u64) -> Option<TcpUploadReason> {
        use TcpUploadReason::*;
        [
            LowActivity,
            HighDropRate,
            SmallIo,
            NoBufferPreposting,
            ReceivedUrgentData,
            HighFragmentation,
            HighOutOfOrderPackets,
            TimeoutExpiration,
            InvalidState,
            UploadRequested,
            HardwareFailure,
        ]
        .into_iter()
        .find(|r| *r as u64 == n)
    }

    /// Whether the host always uploads for this reason (spec §6.7).
    pub fn is_mandatory(self) -> bool {
        matches!(
            self,
            TcpUploadReason::ReceivedUrgentData
                | TcpUploadReason::TimeoutExpiration
                | TcpUploadReason::InvalidState
                | TcpUploadReason::UploadRequested
                | TcpUploadReason::HardwareFailure
        )
    }
}

/// An `NdisTcpOffloadEventHandler` event (`TCP_OFFLOAD_EVENT_TYPE` with its specific information).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TcpOffloadEvent {
    /// `TcpIndicateSendBacklogChange` (1): preferred send backlog in bytes.
    SendBacklogChange(u32),
    /// `TcpIndicateDisconnect` (2): in-sequence FIN received and all earlier data consumed.
    Disconnect,
    /// `TcpIndicateRetrieve` (3): the target requests an upload.
    Retrieve(TcpUploadReason),
    /// `TcpIndicateAbort` (4): acceptable RST received (or state lost).
    Abort,
}

impl TcpOffloadEvent {
    /// The `TCP_OFFLOAD_EVENT_TYPE` value.
    pub fn event_type(self) -> u32 {
        match self {
            TcpOffloadEvent::SendBacklogChange(_) => 1,
            TcpOffloadEvent::Disconnect => 2,
            TcpOffloadEvent::Retrieve(_) => 3,
            TcpOffloadEvent::Abort => 4,
        }
    }
}

/// `TCP_DISCONNECT_*` flags of MiniportTcpOffloadDisconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectKind {
    /// `TCP_DISCONNECT_GRACEFUL_CLOSE` (0x01): send FIN after pending data.
    Graceful = 0x01,
    /// `TCP_DISCONNECT_ABORTIVE_CLOSE` (0x02): send RST, stop receiving at once (R-ABT-1).
    Abortive = 0x02,
}

/// `TCP_FLAG_*` bits of `TCP_OFFLOAD_STATE_CONST.Flags`.
pub mod const_flags {
    /// Timestamps negotiated.
    pub const TIMESTAMP_ENABLED: u16 = 0x01;
    /// SACK negotiated.
    pub const SACK_ENABLED: u16 = 0x02;
    /// Window scaling negotiated.
    pub const WINDOW_SCALING_ENABLED: u16 = 0x04;
}

/// The receive-relevant part of `TCP_OFFLOAD_STATE_CONST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpConstState {
    /// `TCP_FLAG_*` (see [`const_flags`]).
    pub flags: u16,
    /// Remote port (host byte order in this model; spec §8 A30).
    pub remote_port: u16,
    /// Local port.
    pub local_port: u16,
    /// Our receive window scale (0..=14).
    pub rcv_wind_scale: u8,
    /// The peer's window scale.
    pub snd_wind_scale: u8,
    /// The peer's MSS.
    pub remote_mss: u16,
}

/// The receive-relevant part of `TCP_OFFLOAD_STATE_CACHED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpCachedState {
    /// `InitialRcvWnd` (= SO_RCVBUF): the window the host wants; also the target's buffer cap.
    pub initial_rcv_wnd: u32,
    /// `RcvIndicationSize`: preferred bytes per indication; 0 = as much as possible (R-IND-10).
    pub rcv_indication_size: u32,
}

/// The receive-relevant part of `TCP_OFFLOAD_STATE_DELEGATED`, both directions: the host fills
/// it at offload and the target writes it back at terminate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TcpDelegatedState {
    /// `State`.
    pub state: Option<TcpConnectionState>,
    /// `RcvNxt` (RCV.NXT).
    pub rcv_nxt: u32,
    /// `RcvWnd` (RCV.WND, bytes).
    pub rcv_wnd: u32,
    /// `TsRecent`.
    pub ts_recent: u32,
    /// `BufferedData`: received, ACKed, undelivered bytes, ending right before `rcv_nxt`
    /// (R-BUF-1 at offload, R-TRM-3 at terminate). One NB per NBL.
    pub buffered_data: NblChain,
    /// `SndUna` (SND.UNA): at offload, the sequence number of the first byte of `send_data`.
    pub snd_una: u32,
    /// `SndNxt` (SND.NXT): at offload, where new data goes; the bytes of `send_data` before
    /// it were sent and not acknowledged yet.
    pub snd_nxt: u32,
    /// `SendDataHead`…`SendDataTail`: send NBLs the host hands over at offload (sent but
    /// unacknowledged, then unsent), owned by the target from then on and completed like any
    /// send (R-SND-12). Chimney's terminate completes every outstanding send instead of
    /// returning it here, so it is empty at terminate (spec §8 A43).
    pub send_data: NblChain,
}

/// Everything the host hands the target for one TCP connection in MiniportInitiateOffload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TcpOffloadState {
    /// Constant variables.
    pub constant: TcpConstState,
    /// Cached variables.
    pub cached: TcpCachedState,
    /// Delegated variables (with `BufferedData`).
    pub delegated: TcpDelegatedState,
}
