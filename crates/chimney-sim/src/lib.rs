//! # chimney-sim — deterministic simulation of the offload target
//!
//! ```text
//!   smoltcp Interface (N TCP senders, seeded) ◄──► Link ◄──► Engine<Verifier<Delivery>>
//!        ▲ virtual clock, one seeded RNG          loss/dup/reorder/        │
//!        ├── adversary (raw hostile packets) ──►  corrupt/delay/bandwidth   ▼
//!        └── hostile receiver (lying ACKs) ◄──►                AppHost with random policies
//! ```
//!
//! Discrete-event, one thread, no wall clock: one seed reproduces one whole run bit for bit
//! (a trace hash over every packet proves it). Each run checks: the strict contract verifier,
//! stream exactness per connection (SHA-256 of what smoltcp sent against what the application
//! received), every posted NBL completed exactly once (verifier at terminate), reassembly
//! memory within its cap, assembler work per packet bounded, no panic, and liveness (the
//! transfer ends within a virtual-time bound).

pub mod adversary;
pub mod link;
pub mod peer;
pub mod receiver;
pub mod scenario;

pub use scenario::{run, run_traced, run_with_tap, Scenario, Sim, SimReport, Step};
