//! # chimney — a software TCP chimney offload target, sans-IO core
//!
//! Windows' TCP chimney let a NIC take over established TCP connections: the host posts
//! receive buffers, the offload target terminates TCP and places in-order payload straight into
//! them, returning them FIFO with `NdisTcpOffloadReceiveComplete`, or indicates data when no
//! buffer is posted. This crate is that target's core, with no I/O, clock or threads: every
//! entry point takes the time ([`Instant`]) and the host to call back; packets to send and the
//! next timer deadline are polled. The contract it implements is docs/spec.md in the
//! repository.
//!
//! The modules, from the wire up (`time` is used by all; `tcp` hands in-order bytes to the
//! `contract` layer's interfaces, and the `engine` ties the two together):
//!
//! - [`wire`]: IPv4/IPv6 + TCP parsing and emission, checksums, `virtio_net_hdr`;
//! - [`ndis`]: the NDIS vocabulary (status codes, [`ndis::NetBufferList`] /
//!   [`ndis::NetBuffer`] / [`ndis::Mdl`], offload state, events);
//! - [`tcp`]: one offloaded connection's receive-side TCP (sequence space, reassembly,
//!   ACKs, window, timestamps, keep-alive);
//! - [`contract`]: the interfaces ([`OffloadTarget`] and [`InitiateOffload`] for the host's
//!   calls, [`ProtocolHost`] for the upcalls, [`ReceiveInput`] for the TCP layer's input), the delivery layer ([`Delivery`]), the rule catalogue, the
//!   [`Verifier`] that checks every rule on every call, the contract trace and its offline
//!   [`replay`](contract::replay::replay);
//! - [`engine`]: the [`Engine`] that terminates TCP for many connections (listener, table,
//!   timers) and feeds the delivery layer;
//! - [`time`]: the [`Instant`] every entry point takes;
//! - `testkit` (feature `testkit`): a configurable host application, impairments, seeded
//!   generators and the in-memory demo, for drivers, the simulator and tests.
//!
//! Drivers (TUN, simulator) and the CLI live in other crates and depend on this one.
//!
//! ## Example: post a buffer, feed in-order data, get the completion, read the verdict
//!
//! ```
//! use chimney::contract::{ConnId, IndicateReturn, NestedCalls};
//! use chimney::ndis::{Mdl, NblChain, NblId, NdisStatus, NetBuffer, NetBufferList, PoolTag};
//! use chimney::ndis::{TcpOffloadEvent, TcpOffloadState};
//! use chimney::{Delivery, DeliveryConfig, InitiateOffload, Instant, OffloadTarget, ProtocolHost, ReceiveInput};
//! use chimney::{Verifier, VerifierMode};
//!
//! /// A host that keeps the bytes of every completed request.
//! #[derive(Default)]
//! struct Host {
//!     got: Vec<u8>,
//! }
//!
//! impl ProtocolHost for Host {
//!     fn receive_complete(&mut self, _: ConnId, nbls: NblChain, _: &mut NestedCalls) {
//!         for nbl in nbls.iter() {
//!             assert_eq!(nbl.status, NdisStatus::Success);
//!             let n = nbl.tcp_offload_bytes_transferred();
//!             // The data start was advanced past the bytes placed: they lie before it.
//!             let start = nbl.net_buffer().data_offset() - n;
//!             nbl.net_buffer().slices(start, n).for_each(|s| self.got.extend_from_slice(s));
//!         }
//!     }
//!     fn receive_indicate(&mut self, _: ConnId, nbl: NblChain, _: NdisStatus, _: &mut NestedCalls) -> IndicateReturn {
//!         IndicateReturn::NotAccepted(nbl) // this host only posts
//!     }
//!     fn event_indicate(&mut self, _: ConnId, _: TcpOffloadEvent, _: &mut NestedCalls) {}
//! }
//!
//! let now = Instant::ZERO;
//! let conn = ConnId(1);
//! // The delivery layer behind the verifier: every call both ways is checked.
//! let mut target = Verifier::new(Delivery::new(DeliveryConfig::default()), VerifierMode::Collect);
//! let mut host = Host::default();
//! target.initiate_offload(now, conn, TcpOffloadState::default(), &mut host).unwrap();
//!
//! // Post one receive request: a 4 KiB buffer in one MDL, all of it free room.
//! let mut chain = NblChain::new();
//! chain.push_back(NetBufferList::new(NblId::new(PoolTag::Host, 1), NetBuffer::new(vec![Mdl::zeroed(4096)])));
//! assert_eq!(target.receive(now, conn, chain, &mut host).unwrap(), NdisStatus::Pending);
//!
//! // The TCP layer feeds in-order payload; PSH completes the partly filled request.
//! target.receive_data(now, conn, b"hello, ", false, &mut host).unwrap();
//! target.receive_data(now, conn, b"chimney", true, &mut host).unwrap();
//! assert_eq!(host.got, b"hello, chimney");
//!
//! // Nothing broke a rule of the contract.
//! assert!(target.core().violations().is_empty());
//! ```
//!
//! The [`Engine`] does the same from packets: `handle_packet(now, packet, host)`, then
//! `poll_transmit` for the ACKs and `poll_timeout` / `handle_timeout` for its timers.

#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod contract;
pub mod engine;
pub mod ndis;
pub mod tcp;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod time;
pub mod wire;

pub use contract::{
    ConnId, Delivery, DeliveryConfig, InitiateOffload, OffloadTarget, ProtocolHost, ReceiveInput, Verifier,
    VerifierMode, Violation,
};
pub use engine::{Engine, EngineConfig, EngineEvent, EngineStats, PacketOutcome};
pub use time::Instant;
