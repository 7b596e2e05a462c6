//! # chimney — a software TCP chimney offload target, sans-IO core
//!
//! Windows' TCP chimney let a NIC take over established TCP connections: the host posts
//! receive buffers, the offload target terminates TCP and places in-order payload straight into
//! them, returning them FIFO with `NdisTcpOffloadReceiveComplete`, or indicates data when no
//! buffer is posted. This crate is that target's core, with no I/O, clock or threads:
//!
//! - [`ndis`]: the NDIS vocabulary (status codes, `NetBufferList` / `NetBuffer` / `Mdl`,
//!   offload state, events);
//! - [`contract`]: the two interfaces (target entry points, host upcalls), the delivery
//!   algorithm ([`contract::Delivery`]), the rule catalogue and the [`contract::Verifier`];
//! - [`host`]: a configurable host application (posting policies, indication policies) that
//!   records the stream it receives;
//! - [`time`]: the `Instant` every entry point takes.
//!
//! Drivers (TUN, simulator) and the CLI live in other crates and depend on this one.

#![warn(missing_docs)]

pub mod contract;
pub mod engine;
pub mod ndis;
pub mod tcp;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod time;
pub mod wire;

pub use time::Instant;
