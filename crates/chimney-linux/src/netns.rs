//! Anonymous network namespaces: created by `unshare(CLONE_NEWNET)` in a helper thread and
//! kept alive by a descriptor of `/proc/thread-self/ns/net`. Threads join it with `setns`;
//! processes started from a joined thread (e.g. `ip`) inherit it.

use std::fs::File;
use std::os::fd::AsFd;
use std::process::Command;

use nix::sched::{setns, unshare, CloneFlags};

use crate::DriverError;

/// A network namespace this process created. Dropping the last descriptor (and the last
/// thread inside) lets the kernel delete it together with its devices.
#[derive(Debug)]
pub struct Netns {
    fd: File,
}

impl Netns {
    /// Creates a fresh namespace with loopback up and nothing else: no route out.
    pub fn create() -> Result<Netns, DriverError> {
        let fd = std::thread::spawn(|| -> Result<File, DriverError> {
            unshare(CloneFlags::CLONE_NEWNET).map_err(|e| {
                let detail = if e == nix::errno::Errno::EPERM {
                    "permission denied: creating a network namespace needs root (CAP_SYS_ADMIN)".to_string()
                } else {
                    e.to_string()
                };
                DriverError { step: "creating the network namespace", detail }
            })?;
            File::open("/proc/thread-self/ns/net").map_err(|e| DriverError::os("opening the namespace", e))
        })
        .join()
        .map_err(|_| DriverError {
            step: "creating the network namespace",
            detail: "helper thread panicked".into(),
        })??;
        let ns = Netns { fd };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A path naming this namespace for other processes (`ip link set … netns PATH`): our
    /// descriptor under `/proc/<pid>/fd`.
    pub fn path(&self) -> String {
        format!("/proc/{}/fd/{}", std::process::id(), std::os::fd::AsRawFd::as_raw_fd(&self.fd))
    }

    /// Moves the calling thread into this namespace.
    pub fn enter(&self) -> Result<(), DriverError> {
        setns(self.fd.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(|e| DriverError::os("entering the network namespace", e))
    }

    /// Runs `f` on a new thread inside the namespace and waits for its result.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, DriverError> {
        let fd = self.fd.try_clone().map_err(|e| DriverError::os("duplicating the namespace descriptor", e))?;
        std::thread::spawn(move || {
            setns(fd.as_fd(), CloneFlags::CLONE_NEWNET)
                .map_err(|e| DriverError::os("entering the network namespace", e))?;
            Ok(f())
        })
        .join()
        .map_err(|_| DriverError { step: "running in the namespace", detail: "thread panicked".into() })?
    }

    /// Spawns a thread inside the namespace (e.g. a kernel TCP client).
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<std::thread::JoinHandle<Result<T, DriverError>>, DriverError> {
        let fd = self.fd.try_clone().map_err(|e| DriverError::os("duplicating the namespace descriptor", e))?;
        Ok(std::thread::spawn(move || {
            setns(fd.as_fd(), CloneFlags::CLONE_NEWNET)
                .map_err(|e| DriverError::os("entering the network namespace", e))?;
            Ok(f())
        }))
    }

    /// Runs `ip ARGS…` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Result<(), DriverError> {
        let owned: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let out = self.run(move || Command::new("ip").args(&owned).output())?;
        match out {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(DriverError {
                step: "configuring the namespace",
                detail: format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim()),
            }),
            Err(e) => {
                Err(DriverError { step: "configuring the namespace", detail: format!("running ip (iproute2): {e}") })
            }
        }
    }
}
