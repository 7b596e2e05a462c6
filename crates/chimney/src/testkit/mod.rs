//! Test support, behind the `testkit` feature: what drivers, the simulator, benchmarks and
//! tests need around the core, and an embedder does not.
//!
//! - [`host`]: [`host::AppHost`], a configurable host application (posting and indication
//!   policies) that records or digests the stream it receives and sends;
//! - [`digest`]: those digests (SHA-256, BLAKE3, XXH3) and their names;
//! - [`impair`]: seeded loss, duplication, reordering, corruption and delay between a link
//!   and the engine;
//! - [`rng`]: the small deterministic generators (`SplitMix64`) behind seeds;
//! - [`demo`]: the in-memory contract demonstration (host ⇄ delivery layer, no TCP);
//! - [`conformance`]: the suite `chimney check` runs against any target behind the verifier;
//! - [`peer`]: a TCP peer that builds segments, handshakes with an engine and drives its
//!   timers, for every in-memory harness.

pub mod conformance;
pub mod demo;
pub mod digest;
pub mod host;
pub mod impair;
pub mod peer;
pub mod rng;
