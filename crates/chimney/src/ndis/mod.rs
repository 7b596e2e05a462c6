//! NDIS vocabulary: status codes, buffers, offload state and events, named as in the WDK so a
//! reader can map code to the contract specification (`docs/spec.md`).

mod buffer;
mod state;
mod status;

pub use buffer::{BufferError, Mdl, NblChain, NblId, NblInfoId, NetBuffer, NetBufferList, PoolTag};
pub use state::{
    const_flags, DisconnectKind, TcpCachedState, TcpConnectionState, TcpConstState, TcpDelegatedState, TcpOffloadEvent,
    TcpOffloadState, TcpUploadReason,
};
pub use status::NdisStatus;
