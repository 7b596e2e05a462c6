//! The TCP receive engine's building blocks: sequence arithmetic, reassembly, and the
//! per-connection receive state machine.

pub mod assembler;
pub mod seq;

pub use assembler::{Assembler, Insert};
pub use seq::SeqNum;
