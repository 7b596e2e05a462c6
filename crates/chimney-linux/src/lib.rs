//! # chimney-linux — the offload target on a real Linux TUN device
//!
//! ```text
//!   kernel TCP client threads ──(setns)──► network namespace created by us
//!        │ connect 198.18.0.1:5001                       (lo up, chim0 198.18.0.2/24,
//!        ▼                                                fd00::2/64, no route out)
//!   kernel TCP/IP ──► chim0 (TUN, IFF_NO_PI) ──fd──► Driver: read → impair → Engine
//!                                               ◄──fd── write ◄── impair ◄── poll_transmit
//! ```
//!
//! [`Netns`] makes an anonymous network namespace (unshare in a helper thread, kept alive by
//! a file descriptor); the kernel removes it, and the TUN device in it, when the process exits —
//! on success, error, Ctrl-C or even SIGKILL — so nothing can leak. [`Tun`] opens a TUN device.
//! [`Driver`] is the thin I/O loop around the sans-IO [`chimney::engine::Engine`];
//! [`Shards`] runs one driver per TUN queue (on the calling thread when there is one).

pub mod driver;
pub mod netns;
pub mod shards;
pub mod tun;

pub use driver::{ConnReport, Direction, Driver, DriverConfig, DriverSummary, EndReason, OnOffload, Tap};
pub use netns::{configure_tun, ip, Netns};
pub use shards::{Configure, ReportHook, ShardTraces, Shards};
pub use tun::Tun;

/// A driver error: which step failed and why, in one line.
#[derive(Debug)]
pub struct DriverError {
    /// The step, e.g. "creating the network namespace".
    pub step: &'static str,
    /// What to do about it, or the OS error.
    pub detail: String,
}

impl core::fmt::Display for DriverError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.step, self.detail)
    }
}

impl std::error::Error for DriverError {}

impl DriverError {
    /// An error from the OS (or any displayable cause) during `step`.
    pub fn os(step: &'static str, e: impl core::fmt::Display) -> DriverError {
        DriverError { step, detail: e.to_string() }
    }
}

/// Checks what the real-peer mode needs (root, `/dev/net/tun`) and says what is missing.
pub fn preflight() -> Result<(), DriverError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(DriverError {
            step: "checking privileges",
            detail: "creating a network namespace and a TUN device needs root (run with sudo)".into(),
        });
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Err(DriverError {
            step: "checking /dev/net/tun",
            detail: "the TUN driver is missing (modprobe tun, or give the container /dev/net/tun)".into(),
        });
    }
    Ok(())
}
