//! `struct virtio_net_hdr` (10 bytes, the form a TUN device with `IFF_VNET_HDR` puts before
//! every packet): GSO super-packets and partial checksums from the local kernel.
//!
//! With `TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)` the kernel hands over up to
//! 64 KB of one TCP stream in one read: one IP and TCP header, `gso_size` the segment size
//! it would have cut it into, and a *partial* checksum (only the pseudo-header sum is in the
//! TCP checksum field: `NEEDS_CSUM`). Such a packet never crossed a wire, so its checksum is
//! not verified; every field of the header is checked against the packet instead, and a
//! header that lies is a counted drop ([`WireError::BadVnetHdr`]).

use super::{TcpChecksum, WireError};

/// Bytes of the header (without `num_buffers`: the TUN default).
pub const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum covers `csum_start..` and is not filled in.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the kernel already validated the checksum.
pub const F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_ECN` (or-ed into the type: the sender set CWR).
pub const GSO_ECN: u8 = 0x80;

/// A parsed `virtio_net_hdr` (fields in the host's byte order, as TUN writes them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// `F_NEEDS_CSUM`, `F_DATA_VALID`.
    pub flags: u8,
    /// `GSO_*`.
    pub gso_type: u8,
    /// Length of the headers (a hint: at most the packet).
    pub hdr_len: u16,
    /// Segment size the packet would be cut into.
    pub gso_size: u16,
    /// Where the checksummed range starts (the TCP header).
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start` (16 for TCP).
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Splits `buf` into the header and the IP packet after it.
    pub fn split(buf: &[u8]) -> Result<(VnetHdr, &[u8]), WireError> {
        if buf.len() < VNET_HDR_LEN {
            return Err(WireError::BadVnetHdr);
        }
        let u16_at = |i: usize| u16::from_ne_bytes([buf[i], buf[i + 1]]);
        let h = VnetHdr {
            flags: buf[0],
            gso_type: buf[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        };
        Ok((h, &buf[VNET_HDR_LEN..]))
    }

    /// The header of a packet with nothing to offload (what we put before packets we send).
    pub const NONE: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];

    /// The header of a super-packet we send (`packet`: one IP and TCP header, then the
    /// payload, its TCP checksum partial): the kernel cuts it into segments of `gso_size`
    /// payload bytes and completes each one's checksum.
    pub fn for_gso(packet: &[u8], gso_size: u16) -> [u8; VNET_HDR_LEN] {
        let v4 = packet.first().is_some_and(|b| b >> 4 == 4);
        let ip_hdr: u16 = if v4 { 20 } else { 40 };
        let tcp_hdr = packet.get(usize::from(ip_hdr) + 12).map_or(20, |b| u16::from(b >> 4) * 4);
        let mut h = [0u8; VNET_HDR_LEN];
        h[0] = F_NEEDS_CSUM;
        h[1] = if v4 { GSO_TCPV4 } else { GSO_TCPV6 };
        h[2..4].copy_from_slice(&(ip_hdr + tcp_hdr).to_ne_bytes());
        h[4..6].copy_from_slice(&gso_size.to_ne_bytes());
        h[6..8].copy_from_slice(&ip_hdr.to_ne_bytes());
        h[8..10].copy_from_slice(&16u16.to_ne_bytes());
        h
    }

    /// Checks the header against `packet` and says whether the TCP checksum still needs
    /// verifying (an ordinary packet) or must not be (partial, or validated by the kernel).
    pub fn check(&self, packet: &[u8]) -> Result<TcpChecksum, WireError> {
        self.check_prefix(packet, packet.len())
    }

    /// [`VnetHdr::check`] for a packet of `packet_len` bytes of which only the first ones
    /// (`prefix`, at least the IP header and 18 bytes of TCP) are at hand: the rest was read
    /// straight into a posted buffer.
    pub fn check_prefix(&self, prefix: &[u8], packet_len: usize) -> Result<TcpChecksum, WireError> {
        let packet = prefix;
        if self.flags & !(F_NEEDS_CSUM | F_DATA_VALID) != 0 {
            return Err(WireError::BadVnetHdr);
        }
        let version = packet.first().map(|b| b >> 4);
        let ip_hdr = match version {
            Some(4) => usize::from(packet[0] & 0x0F) * 4,
            Some(6) => 40,
            _ => return Err(WireError::BadVnetHdr),
        };
        let gso = self.gso_type & !GSO_ECN;
        match (gso, version) {
            (GSO_NONE, _) | (GSO_TCPV4, Some(4)) | (GSO_TCPV6, Some(6)) => {}
            _ => return Err(WireError::BadVnetHdr),
        }
        if gso != GSO_NONE {
            // A super-packet always carries a partial checksum and a segment size, and its
            // headers lie inside it.
            if self.flags & F_NEEDS_CSUM == 0 || self.gso_size == 0 || usize::from(self.hdr_len) > packet_len {
                return Err(WireError::BadVnetHdr);
            }
        } else if self.gso_size != 0 {
            return Err(WireError::BadVnetHdr);
        }
        let tcp = match version {
            Some(4) => packet.get(9) == Some(&6),
            _ => packet.get(6) == Some(&6),
        };
        if !tcp && gso == GSO_NONE {
            // Not TCP (a local UDP packet with a partial checksum, say): not ours to check;
            // the parser hands it to the host path.
            return Ok(TcpChecksum::Verify);
        }
        if self.flags & F_NEEDS_CSUM != 0 {
            // Only TCP's checksum, right after the IP header (no IPv6 extension headers).
            let start = usize::from(self.csum_start);
            if start != ip_hdr || self.csum_offset != 16 || start + 18 > packet_len {
                return Err(WireError::BadVnetHdr);
            }
            return Ok(TcpChecksum::VouchedByKernel);
        }
        Ok(if self.flags & F_DATA_VALID == 0 { TcpChecksum::Verify } else { TcpChecksum::VouchedByKernel })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(flags: u8, gso_type: u8, gso_size: u16, csum_start: u16, csum_offset: u16) -> VnetHdr {
        VnetHdr { flags, gso_type, hdr_len: 52, gso_size, csum_start, csum_offset }
    }

    fn v4(len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[9] = 6;
        p
    }

    #[test]
    fn headers_are_checked_against_the_packet() {
        let p4 = v4(2000);
        let mut p6 = vec![0u8; 2000];
        p6[0] = 0x60;
        p6[6] = 6;
        // Plain packets: verify unless the kernel validated.
        assert_eq!(hdr(0, GSO_NONE, 0, 0, 0).check(&p4), Ok(TcpChecksum::Verify));
        assert_eq!(hdr(F_DATA_VALID, GSO_NONE, 0, 0, 0).check(&p4), Ok(TcpChecksum::VouchedByKernel));
        // Partial checksum, TCP right after the IP header.
        assert_eq!(hdr(F_NEEDS_CSUM, GSO_NONE, 0, 20, 16).check(&p4), Ok(TcpChecksum::VouchedByKernel));
        assert_eq!(hdr(F_NEEDS_CSUM, GSO_TCPV4, 1448, 20, 16).check(&p4), Ok(TcpChecksum::VouchedByKernel));
        assert_eq!(hdr(F_NEEDS_CSUM, GSO_TCPV4 | GSO_ECN, 1448, 20, 16).check(&p4), Ok(TcpChecksum::VouchedByKernel));
        assert_eq!(hdr(F_NEEDS_CSUM, GSO_TCPV6, 1428, 40, 16).check(&p6), Ok(TcpChecksum::VouchedByKernel));
        // Lies.
        for (h, p) in [
            (hdr(0x10, GSO_NONE, 0, 0, 0), &p4),               // unknown flag
            (hdr(F_NEEDS_CSUM, 3, 1448, 20, 16), &p4),         // UDP GSO
            (hdr(F_NEEDS_CSUM, GSO_TCPV6, 1448, 20, 16), &p4), // v6 GSO on a v4 packet
            (hdr(0, GSO_TCPV4, 1448, 20, 16), &p4),            // GSO without partial csum
            (hdr(F_NEEDS_CSUM, GSO_TCPV4, 0, 20, 16), &p4),    // GSO size 0
            (hdr(F_NEEDS_CSUM, GSO_NONE, 0, 20, 6), &p4),      // UDP's checksum offset
            (hdr(F_NEEDS_CSUM, GSO_NONE, 0, 24, 16), &p4),     // not at the TCP header
            (hdr(F_NEEDS_CSUM, GSO_NONE, 0, 1990, 16), &p4),   // past the end
            (hdr(0, GSO_NONE, 1448, 0, 0), &p4),               // segment size without GSO
        ] {
            assert_eq!(h.check(p), Err(WireError::BadVnetHdr), "{h:?}");
        }
        // UDP with a partial checksum: not ours, left to the parser (NotTcp → host path).
        let mut udp = v4(200);
        udp[9] = 17;
        assert_eq!(hdr(F_NEEDS_CSUM, GSO_NONE, 0, 20, 6).check(&udp), Ok(TcpChecksum::Verify));
        let long = VnetHdr { hdr_len: 3000, ..hdr(F_NEEDS_CSUM, GSO_TCPV4, 1448, 20, 16) };
        assert_eq!(long.check(&p4), Err(WireError::BadVnetHdr));
        assert_eq!(hdr(0, GSO_NONE, 0, 0, 0).check(&[]), Err(WireError::BadVnetHdr));
    }

    #[test]
    fn split_reads_native_byte_order() {
        let mut b = vec![F_NEEDS_CSUM, GSO_TCPV4];
        for v in [54u16, 1448, 20, 16] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        b.extend_from_slice(&[0x45, 0]);
        let (h, rest) = VnetHdr::split(&b).unwrap();
        assert_eq!(h, VnetHdr { flags: 1, gso_type: 1, hdr_len: 54, gso_size: 1448, csum_start: 20, csum_offset: 16 });
        assert_eq!(rest, &[0x45, 0]);
        assert!(VnetHdr::split(&b[..9]).is_err());
    }
}
