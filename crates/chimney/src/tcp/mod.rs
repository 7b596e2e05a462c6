//! The TCP receive engine's building blocks: sequence arithmetic, reassembly, and the
//! per-connection receive state machine.

mod assembler;
mod budget;
mod conn;

pub use crate::wire::SeqNum;
pub use assembler::{Assembler, Insert};
pub use budget::ReplyBudget;
pub(crate) use conn::ConnContext;
pub use conn::{ConnCounters, Negotiated, TcpConfig, TcpConn, TcpDrop};
