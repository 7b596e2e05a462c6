//! A TUN device (`IFF_TUN | IFF_NO_PI`): each read returns one IP packet, each write sends one.
//!
//! The one `unsafe` block is the `TUNSETIFF` ioctl (no safe wrapper exists in the crates we
//! use; `tun-rs` would hide it but brings an async runtime we do not need).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;

use crate::DriverError;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// An open TUN device; closing it deletes the device (it is not persistent).
#[derive(Debug)]
pub struct Tun {
    file: File,
    name: String,
}

#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

impl Tun {
    /// Creates TUN device `name` in the calling thread's network namespace, non-blocking.
    pub fn open(name: &str) -> Result<Tun, DriverError> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(DriverError {
                step: "creating the TUN device",
                detail: format!("bad interface name {name:?}"),
            });
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| DriverError::os("opening /dev/net/tun", e))?;
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
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
            return Err(DriverError { step: "creating the TUN device", detail });
        }
        Ok(Tun { file, name: name.to_string() })
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

    /// Writes one packet (a full queue drops it, as a NIC would).
    pub fn send(&mut self, pkt: &[u8]) -> io::Result<bool> {
        match self.file.write(pkt) {
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
