//! A TUN device (`IFF_TUN | IFF_NO_PI`): each read returns one IP packet, each write sends one.
//!
//! With offloads ([`Tun::open_with`]) the device also has `IFF_VNET_HDR` and
//! `TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)`: every read starts with a
//! `virtio_net_hdr` and may carry a GSO super-packet of up to 64 KB with a partial checksum
//! (see `chimney::wire::vnet`); every write gets an all-zero header (nothing to offload).
//! Offloads are never enabled without the header: the kernel would then hand over 64 KB
//! packets with no segment size and no checksum.
//!
//! The two `unsafe` blocks are the `TUNSETIFF` and `TUNSETOFFLOAD` ioctls (no safe wrapper
//! exists in the crates we use; `tun-rs` would hide them but brings an async runtime we do not
//! need).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;

use crate::DriverError;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const IFF_VNET_HDR: libc::c_int = 0x4000;
const IFF_MULTI_QUEUE: libc::c_int = 0x0100;
const TUN_F_CSUM: libc::c_ulong = 0x01;
const TUN_F_TSO4: libc::c_ulong = 0x02;
const TUN_F_TSO6: libc::c_ulong = 0x04;

/// An open TUN device; closing it deletes the device (it is not persistent).
#[derive(Debug)]
pub struct Tun {
    file: File,
    name: String,
    vnet: bool,
}

#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

impl Tun {
    /// Creates TUN device `name` in the calling thread's network namespace, non-blocking,
    /// without offloads.
    pub fn open(name: &str) -> Result<Tun, DriverError> {
        Self::open_with(name, false)
    }

    /// Like [`Tun::open`]; with `offload`, reads carry a `virtio_net_hdr` and may be GSO
    /// super-packets with partial checksums (TSO4, TSO6, CSUM enabled).
    pub fn open_with(name: &str, offload: bool) -> Result<Tun, DriverError> {
        Self::open_queue(name, offload, false)
    }

    /// `queues` descriptors of one multi-queue TUN device (`IFF_MULTI_QUEUE`): the kernel
    /// steers each flow to one queue by its hash, so one engine per queue shares nothing.
    pub fn open_queues(name: &str, offload: bool, queues: usize) -> Result<Vec<Tun>, DriverError> {
        if queues <= 1 {
            return Ok(vec![Self::open_with(name, offload)?]);
        }
        (0..queues).map(|_| Self::open_queue(name, offload, true)).collect()
    }

    fn open_queue(name: &str, offload: bool, multi: bool) -> Result<Tun, DriverError> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(DriverError::new("creating the TUN device", format!("bad interface name {name:?}")));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| DriverError::os("opening /dev/net/tun", e))?;
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: (libc::IFF_TUN
                | libc::IFF_NO_PI
                | if offload { IFF_VNET_HDR } else { 0 }
                | if multi { IFF_MULTI_QUEUE } else { 0 }) as libc::c_short,
            _pad: [0; 22],
        };
        for (d, s) in req.name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        // SAFETY: `req` is a valid, initialised `struct ifreq` (name NUL-terminated: at most
        // IFNAMSIZ-1 bytes copied into a zeroed array; flags at offset 16; padded to 40 bytes),
        // it outlives the call, and the fd is an open /dev/net/tun descriptor.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReq) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            let detail = if e.raw_os_error() == Some(libc::EPERM) {
                "permission denied: creating a TUN device needs root (CAP_NET_ADMIN)".to_string()
            } else {
                e.to_string()
            };
            return Err(DriverError::new("creating the TUN device", detail));
        }
        if offload {
            let features = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
            // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned long of TUN_F_*
            // bits), reads no memory of ours, and the fd is the TUN device configured above
            // with IFF_VNET_HDR (so the kernel will describe every offloaded packet).
            let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETOFFLOAD as _, features) };
            if rc < 0 {
                return Err(DriverError::os("enabling TUN offloads", io::Error::last_os_error()));
            }
        }
        Ok(Tun { file, name: name.to_string(), vnet: offload })
    }

    /// Whether reads start with a `virtio_net_hdr` (offloads on).
    pub fn has_vnet_hdr(&self) -> bool {
        self.vnet
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one packet; `Ok(None)` when none is waiting.
    pub fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.file.read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads one packet scattered over `iov` (`readv`): direct placement puts the headers in
    /// one buffer and the payload straight into posted buffers. `None` when nothing is queued.
    pub fn recv_vectored(&mut self, iov: &mut [io::IoSliceMut<'_>]) -> io::Result<Option<usize>> {
        match self.file.read_vectored(iov) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes one packet (a full queue drops it, as a NIC would); with offloads on, behind an
    /// all-zero `virtio_net_hdr`, gathered by `writev` (no copy).
    pub fn send(&mut self, pkt: &[u8]) -> io::Result<bool> {
        let r = if self.vnet {
            let iov = [io::IoSlice::new(&chimney::wire::vnet::VnetHdr::NONE), io::IoSlice::new(pkt)];
            nix::sys::uio::writev(&self.file, &iov).map_err(io::Error::from)
        } else {
            self.file.write(pkt)
        };
        match r {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes a GSO super-packet (see [`chimney::wire::vnet::VnetHdr::for_gso`]): only on a
    /// device opened with offloads. False when the queue is full (the packet is dropped).
    pub fn send_gso(&mut self, pkt: &[u8], gso_size: u16) -> io::Result<bool> {
        if !self.vnet {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "GSO write on a TUN without offloads"));
        }
        let hdr = chimney::wire::vnet::VnetHdr::for_gso(pkt, gso_size);
        let iov = [io::IoSlice::new(&hdr), io::IoSlice::new(pkt)];
        match nix::sys::uio::writev(&self.file, &iov).map_err(io::Error::from) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The descriptor, for `poll`.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_layout_matches_the_kernel() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        assert!(Tun::open("").is_err());
        assert!(Tun::open("a-name-that-is-too-long").is_err());
    }
}
