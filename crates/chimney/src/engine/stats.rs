//! TCP_OFFLOAD_STATS and IP_OFFLOAD_STATS (spec §7.8) plus per-reason drop counters.

use crate::tcp::{ConnCounters, TcpDrop};
use crate::wire::WireError;

/// `TCP_OFFLOAD_STATS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcpOffloadStats {
    /// Segments received on offloaded connections.
    pub in_segments: u64,
    /// Segments sent.
    pub out_segments: u64,
    /// Connections in ESTABLISHED or CLOSE-WAIT.
    pub currently_established: u32,
    /// Connections reset from ESTABLISHED/CLOSE-WAIT.
    pub reset_established: u32,
    /// Segments retransmitted.
    pub retransmitted_segments: u32,
    /// Segments received in error.
    pub in_errors: u32,
    /// RSTs sent.
    pub out_resets: u32,
}

/// `IP_OFFLOAD_STATS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpOffloadStats {
    /// Packets received.
    pub in_receives: u64,
    /// Bytes received.
    pub in_octets: u64,
    /// Packets handed to TCP.
    pub in_delivers: u64,
    /// Packets sent.
    pub out_requests: u64,
    /// Bytes sent.
    pub out_octets: u64,
    /// Header errors.
    pub in_header_errors: u32,
    /// Truncated packets.
    pub in_truncated_packets: u32,
    /// Packets discarded.
    pub in_discards: u32,
    /// Packets not sent.
    pub out_discards: u32,
    /// No route.
    pub out_no_routes: u32,
}

/// Everything the engine counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// TCP_OFFLOAD_STATS.
    pub tcp: TcpOffloadStats,
    /// IP_OFFLOAD_STATS.
    pub ip: IpOffloadStats,
    /// Packets rejected by the wire parser, by reason ([`WireError::ALL`] order).
    pub wire: [u64; WireError::ALL.len()],
    /// Segments (or parts) not used by connections, by reason ([`TcpDrop::ALL`] order).
    pub drops: [u64; TcpDrop::ALL.len()],
    /// Connections offloaded.
    pub offloads: u64,
    /// Handshakes that could not be offloaded (table full, delivery refused).
    pub offload_failures: u64,
    /// In-order payload bytes delivered.
    pub delivered_bytes: u64,
    /// Assembler work units.
    pub work: u64,
    /// Keep-alive probes sent.
    pub keepalive_probes: u64,
    /// Window updates repeated because no data followed them.
    pub window_update_repeats: u64,
    /// Packets whose payload the driver read straight into a posted buffer (direct
    /// placement: no copy by the target).
    pub placed_packets: u64,
    /// Replies to junk a connection did not send because it had replied to junk less than
    /// its interval ago (RFC 5961 §7).
    pub replies_suppressed_conn: u64,
    /// Replies to junk not sent because the engine's per-second budget was spent.
    pub replies_suppressed_global: u64,
    /// The passive open's counters: SYN overflow, SYN cookies sent, valid and invalid,
    /// SYNs with another ISN challenged in SYN-RECEIVED.
    pub listener: super::ListenerCounts,
}

impl EngineStats {
    pub(crate) fn count_wire(&mut self, e: WireError) {
        if let Some(i) = WireError::ALL.iter().position(|&w| w == e) {
            self.wire[i] += 1;
        }
        match e {
            WireError::BadIp | WireError::BadIpChecksum => self.ip.in_header_errors += 1,
            WireError::BadTcpHeader | WireError::BadTcpChecksum | WireError::BadTcpOption | WireError::BadFlags => {
                self.tcp.in_errors += 1
            }
            // Handed to the host's ordinary path: not discarded.
            _ if e.goes_to_host() => {}
            _ => self.ip.in_discards += 1,
        }
    }

    /// A segment dropped outside any connection (by the listener).
    pub(crate) fn count_drop(&mut self, d: TcpDrop) {
        if let Some(i) = TcpDrop::ALL.iter().position(|&x| x == d) {
            self.drops[i] += 1;
        }
    }

    pub(crate) fn add_conn(&mut self, c: &ConnCounters) {
        self.tcp.in_segments += c.in_segments;
        self.tcp.out_segments += c.out_segments;
        self.tcp.retransmitted_segments += c.retransmitted;
        self.tcp.out_resets += c.out_resets;
        for (a, b) in self.drops.iter_mut().zip(c.drops().iter()) {
            *a += u64::from(*b);
        }
        self.delivered_bytes += c.delivered_bytes;
        self.work += c.work;
        self.keepalive_probes += u64::from(c.keepalive_probes);
        self.window_update_repeats += u64::from(c.window_update_repeats);
    }

    /// Adds another engine's counters (shards of one device report one total).
    pub fn merge(&mut self, o: &EngineStats) {
        let (t, u) = (&mut self.tcp, &o.tcp);
        t.in_segments += u.in_segments;
        t.out_segments += u.out_segments;
        t.currently_established += u.currently_established;
        t.reset_established += u.reset_established;
        t.retransmitted_segments += u.retransmitted_segments;
        t.in_errors += u.in_errors;
        t.out_resets += u.out_resets;
        let (i, j) = (&mut self.ip, &o.ip);
        i.in_receives += j.in_receives;
        i.in_octets += j.in_octets;
        i.in_delivers += j.in_delivers;
        i.out_requests += j.out_requests;
        i.out_octets += j.out_octets;
        i.in_header_errors += j.in_header_errors;
        i.in_truncated_packets += j.in_truncated_packets;
        i.in_discards += j.in_discards;
        i.out_discards += j.out_discards;
        i.out_no_routes += j.out_no_routes;
        for (a, b) in self.wire.iter_mut().zip(o.wire.iter()) {
            *a += b;
        }
        for (a, b) in self.drops.iter_mut().zip(o.drops.iter()) {
            *a += b;
        }
        self.offloads += o.offloads;
        self.offload_failures += o.offload_failures;
        self.delivered_bytes += o.delivered_bytes;
        self.work += o.work;
        self.keepalive_probes += o.keepalive_probes;
        self.window_update_repeats += o.window_update_repeats;
        self.placed_packets += o.placed_packets;
        self.replies_suppressed_conn += o.replies_suppressed_conn;
        self.replies_suppressed_global += o.replies_suppressed_global;
        self.listener.merge(&o.listener);
    }

    /// The defences' counters by name: SYN overflow, SYN cookies, challenged SYN-RECEIVED SYNs, replies
    /// to junk suppressed (for reports; zero entries left out).
    pub fn defense_table(&self) -> Vec<(String, u64)> {
        let l = &self.listener;
        [
            ("syn_overflow", l.syn_overflow),
            ("syncookies_sent", l.cookies_sent),
            ("syncookies_valid", l.cookies_valid),
            ("syncookies_invalid", l.cookies_invalid),
            ("syn_received_challenged", l.challenged),
            ("replies_suppressed_conn", self.replies_suppressed_conn),
            ("replies_suppressed_global", self.replies_suppressed_global),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| (k.to_string(), n))
        .collect()
    }

    /// Wire drops for `e`.
    pub fn wire_drops(&self, e: WireError) -> u64 {
        WireError::ALL.iter().position(|&w| w == e).map_or(0, |i| self.wire[i])
    }

    /// TCP drops for `d`.
    pub fn tcp_drops(&self, d: TcpDrop) -> u64 {
        TcpDrop::ALL.iter().position(|&w| w == d).map_or(0, |i| self.drops[i])
    }

    /// `(name, count)` for every non-zero drop counter (packets handed to the host path are
    /// not drops: see [`EngineStats::host_path_table`]).
    pub fn drop_table(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = Vec::new();
        for (e, n) in WireError::ALL.iter().zip(self.wire.iter()) {
            if *n > 0 && !e.goes_to_host() {
                v.push((e.name().to_string(), *n));
            }
        }
        for (d, n) in TcpDrop::ALL.iter().zip(self.drops.iter()) {
            if *n > 0 {
                v.push((format!("{d:?}"), *n));
            }
        }
        v
    }

    /// `(name, count)` for every kind of packet the target handed to the host's ordinary path
    /// (IP fragments, IPv4 options, ICMP/IGMP, other protocols).
    pub fn host_path_table(&self) -> Vec<(String, u64)> {
        WireError::ALL
            .iter()
            .zip(self.wire.iter())
            .filter(|(e, n)| **n > 0 && e.goes_to_host())
            .map(|(e, n)| (e.name().to_string(), *n))
            .collect()
    }
}
