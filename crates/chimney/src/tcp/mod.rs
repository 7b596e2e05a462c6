//! The TCP receive engine's building blocks: sequence arithmetic, reassembly, and the
//! per-connection receive state machine.

mod assembler;
mod budget;
mod cc;
mod conn;
mod rack;
mod rtt;
mod scoreboard;
pub mod sender;

pub use crate::wire::SeqNum;
pub use assembler::{Assembler, Insert};
pub use budget::ReplyBudget;
pub use cc::{Congestion, CongestionAlgorithm};
pub(crate) use conn::{ConnContext, Endpoints, Gather};
pub use conn::{ConnCounters, Negotiated, TcpConfig, TcpConn, TcpDrop};
pub use rack::Rack;
pub use rtt::RttEstimator;
pub use scoreboard::{AckChange, Scoreboard, DUP_THRESH};
