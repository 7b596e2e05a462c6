//! Anonymous network namespaces: created by `unshare(CLONE_NEWNET)` in a helper thread and
//! kept alive by a descriptor of `/proc/thread-self/ns/net`. Threads join it with `setns`;
//! processes started from a joined thread (e.g. `ip`) inherit it.

use std::fs::File;
use std::os::fd::AsFd;
use std::process::Command;

use nix::sched::{setns, unshare, CloneFlags};

use std::net::SocketAddr;

use crate::{DriverError, Tun};

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
                DriverError::new("creating the network namespace", detail)
            })?;
            File::open("/proc/thread-self/ns/net").map_err(|e| DriverError::os("opening the namespace", e))
        })
        .join()
        .map_err(|_| DriverError::new("creating the network namespace", "helper thread panicked"))??;
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
        .map_err(|_| DriverError::new("running in the namespace", "thread panicked"))?
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
        self.run(move || ip(&owned.iter().map(String::as_str).collect::<Vec<_>>()))?
    }

    /// The network `demo` and `bench` build inside the namespace: a TUN device `chim0` with
    /// `queues` queues (multi-queue when more than one), the kernel side at 198.18.0.2/24 or
    /// fd00::2/64 (only the family in use: an IPv4 run may have an MTU below IPv6's 1280), and
    /// the target's address (198.18.0.1:5001 or [fd00::1]:5001) for clients to connect to.
    pub fn tun_network(
        &self,
        ipv6: bool,
        mtu: u32,
        offload: bool,
        queues: usize,
    ) -> Result<(Vec<Tun>, SocketAddr), DriverError> {
        let tun = self.run(move || Tun::open_queues("chim0", offload, queues))??;
        let qlen = crate::defaults::TUN_QUEUE_LEN.to_string();
        self.ip(&["link", "set", "dev", "chim0", "mtu", &mtu.to_string(), "txqueuelen", &qlen, "up"])?;
        if ipv6 {
            self.ip(&["-6", "addr", "add", "fd00::2/64", "dev", "chim0", "nodad"])?;
        } else {
            self.ip(&["addr", "add", "198.18.0.2/24", "dev", "chim0"])?;
        }
        let target = if ipv6 {
            SocketAddr::new(std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1).into(), 5001)
        } else {
            SocketAddr::new(std::net::Ipv4Addr::new(198, 18, 0, 1).into(), 5001)
        };
        Ok((tun, target))
    }
}

/// Runs `ip ARGS…` (iproute2) in the calling thread's network namespace; its error output
/// becomes the error's detail.
pub fn ip(args: &[&str]) -> Result<(), DriverError> {
    match Command::new("ip").args(args).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(DriverError::new(
            "configuring the network",
            format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim()),
        )),
        Err(e) => Err(DriverError::new("configuring the network", format!("running ip (iproute2): {e}"))),
    }
}

/// Brings up TUN device `name` in the calling thread's namespace with MTU `mtu` and the
/// kernel-side address `cidr` (e.g. 198.18.0.2/24; IPv6 without duplicate address detection,
/// so it is usable at once).
pub fn configure_tun(name: &str, cidr: &str, mtu: u32) -> Result<(), DriverError> {
    let qlen = crate::defaults::TUN_QUEUE_LEN.to_string();
    ip(&["link", "set", "dev", name, "mtu", &mtu.to_string(), "txqueuelen", &qlen, "up"])?;
    let mut addr = vec!["addr", "add", cidr, "dev", name];
    if cidr.contains(':') {
        addr.push("nodad");
    }
    ip(&addr)
}

/// What the kernel counts on TUN device `name` (in the calling thread's namespace): its
/// transmit queue length and the packets it dropped on the way to the target because that
/// queue was full (`tx_dropped`). `None` when `ip` cannot say.
pub fn tun_queue_stats(name: &str) -> Option<TunQueueStats> {
    let o = Command::new("ip").args(["-j", "-s", "link", "show", "dev", name]).output().ok()?;
    if !o.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
    let link = v.get(0)?;
    Some(TunQueueStats {
        queue_len: link.get("txqlen").and_then(serde_json::Value::as_u64).unwrap_or(0),
        tx_dropped: link.pointer("/stats64/tx/dropped").and_then(serde_json::Value::as_u64)?,
    })
}

/// A TUN device's transmit queue, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TunQueueStats {
    /// `txqueuelen`.
    pub queue_len: u64,
    /// Packets dropped because the queue was full (the target did not read fast enough).
    pub tx_dropped: u64,
}
