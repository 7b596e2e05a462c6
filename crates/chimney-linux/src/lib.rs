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

pub mod defaults;
pub mod driver;
pub mod hoststack;
pub mod netns;
pub mod shards;
pub mod tun;

pub use driver::{ConnReport, Direction, Driver, DriverConfig, DriverSummary, EndReason, HostClose, OnOffload, Tap};
pub use netns::{configure_tun, ip, tun_queue_stats, Netns, TunQueueStats};
pub use shards::{Configure, ReportHook, ShardTraces, Shards};
pub use tun::Tun;

/// A driver error: which step failed and why, in one line; the underlying error (an OS error,
/// say) stays reachable through [`std::error::Error::source`].
#[derive(Debug)]
pub struct DriverError {
    /// The step, e.g. "creating the network namespace".
    pub step: &'static str,
    /// What to do about it, or the OS error.
    pub detail: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl core::fmt::Display for DriverError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.step, self.detail)
    }
}

impl std::error::Error for DriverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl DriverError {
    /// An error of our own during `step`, with what to do about it.
    pub fn new(step: &'static str, detail: impl Into<String>) -> DriverError {
        DriverError { step, detail: detail.into(), source: None }
    }

    /// An error from the OS (or another error) during `step`; it stays the `source()`.
    pub fn os(step: &'static str, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> DriverError {
        let e = e.into();
        DriverError { step, detail: e.to_string(), source: Some(e) }
    }
}

/// Checks what the real-peer mode needs (root, `/dev/net/tun`) and says what is missing.
pub fn preflight() -> Result<(), DriverError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(DriverError::new(
            "checking privileges",
            "creating a network namespace and a TUN device needs root (run as root)",
        ));
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Err(DriverError::new(
            "checking /dev/net/tun",
            "the TUN driver is missing (modprobe tun, or give the container /dev/net/tun)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::DriverError;
    use std::error::Error;

    #[test]
    fn an_os_error_stays_the_source() {
        let e = DriverError::os("reading the TUN device", std::io::Error::from_raw_os_error(11));
        let src = e.source().expect("source kept");
        assert!(src.downcast_ref::<std::io::Error>().is_some_and(|io| io.raw_os_error() == Some(11)));
        assert!(e.to_string().starts_with("reading the TUN device: "), "{e}");
        assert!(DriverError::new("checking", "what to do").source().is_none());
    }
}
