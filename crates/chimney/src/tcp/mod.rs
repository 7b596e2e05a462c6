//! The TCP receive engine's building blocks: sequence arithmetic, reassembly, and the
//! per-connection receive state machine.

pub mod assembler;
pub mod conn;
pub mod seq;

pub use assembler::{Assembler, Insert};
pub use conn::{ConnCounters, Cx, Layer, Negotiated, TcpConfig, TcpConn, TcpDrop};
pub use seq::SeqNum;
