//! The I/O loop: a thin driver around the sans-IO engine. Read packets from the TUN (through
//! the inbound impairment), `handle_packet`; write `poll_transmit` packets (through the
//! outbound impairment); sleep in `poll` until the TUN is readable or `poll_timeout` is due;
//! react to the host events (disconnect → graceful close, abort/upload → terminate) and report
//! every connection that ends.

use std::collections::HashMap;
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::time::Duration;

use chimney::contract::trace::TraceWriter;
use chimney::contract::trace::Tracer;
use chimney::contract::{ConnId, Delivery, DeliveryConfig, OffloadTarget, ReceiveInput, Verifier, VerifierMode};
use chimney::engine::PacketOutcome;
use chimney::engine::{Engine, EngineConfig, EngineEvent, EngineStats};
use chimney::ndis::{DisconnectKind, NdisStatus, TcpOffloadEvent, TcpUploadReason};
use chimney::tcp::{TcpConfig, TcpDrop};
use chimney::testkit::conformance::Candidate;
use chimney::testkit::digest::HashKind;
use chimney::testkit::host::{AppHost, AppPolicy, HostEnd, IndicationPolicy};
use chimney::testkit::impair::{ImpairConfig, Impairment};
use chimney::wire::vnet::{VnetHdr, VNET_HDR_LEN};
use chimney::wire::{TcpChecksum, WireError};
use chimney::Instant;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::hoststack::HostVerdict;
use crate::{DriverError, Tun};

/// How the driver runs.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// The engine (listen addresses, TCP parameters, seed).
    pub engine: EngineConfig,
    /// The delivery layer.
    pub delivery: DeliveryConfig,
    /// The application policy of every connection.
    pub policy: AppPolicy,
    /// Slow consumer: the application takes nothing until the window is zero (or the peer
    /// has finished sending), waits this long, then resumes with `policy`.
    pub stall: Option<Duration>,
    /// Impairment of packets from the TUN to the engine.
    pub impair_in: ImpairConfig,
    /// Impairment of packets from the engine to the TUN.
    pub impair_out: ImpairConfig,
    /// Packets read per wake-up at most.
    pub batch: usize,
    /// The digest kept of every stream received and sent (reports carry it): XXH3-128 by
    /// default, which keeps up with the wire; benchmarks turn it off.
    pub hash: HashKind,
    /// Busy-poll: after a read that found packets, keep reading without sleeping in `poll`
    /// for this long (zero = always sleep when idle). Trades a core for wake-up latency.
    pub busy_poll: Duration,
    /// Direct placement: when the next packet is predicted to continue the stream of the
    /// connection that received the last one, `readv` its payload straight into that
    /// connection's posted buffers (the only copy is the kernel's). Needs the TUN's
    /// `virtio_net_hdr` (local, checksum-vouched packets) and no packet tap.
    pub direct_placement: bool,
    /// The host closes (or aborts) each connection first, after so many bytes or so long.
    pub host_close: Option<HostClose>,
    /// On [`Driver::shutdown`]: how long connections closed gracefully may take to finish
    /// before they are reset (zero: upload at once, without a word to the peers).
    pub shutdown_drain: Duration,
    /// Active opens the driver makes when it starts, (our end, the peer): `chimney connect`.
    pub connect: Vec<(SocketAddr, SocketAddr)>,
}

/// The host ends a connection before the peer does (`--close-after-*`, `--abort-after-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostClose {
    /// Graceful (our FIN; the peer may still send) or abortive (RST, requests aborted).
    pub kind: chimney::ndis::DisconnectKind,
    /// Once the application received this many bytes.
    pub after_bytes: Option<u64>,
    /// Once the connection has been offloaded this long.
    pub after: Option<Duration>,
}

/// What `chimney demo` runs with no flags ([`crate::defaults`]): ACK deferral, a 4 MiB window,
/// 4 × 256 KiB posted requests, the MSS of a 1500-byte IPv4 link, direct placement.
impl Default for DriverConfig {
    fn default() -> Self {
        use crate::defaults;
        let tcp = TcpConfig {
            rcv_wnd: defaults::RCV_WND,
            mss: defaults::mss_for(defaults::MTU, false),
            defer_acks: defaults::DEFER_ACKS,
            ..TcpConfig::default()
        };
        DriverConfig {
            engine: EngineConfig { tcp, ..EngineConfig::default() },
            delivery: DeliveryConfig::default(),
            policy: AppPolicy {
                keep_posted: defaults::POSTS,
                post_size: defaults::POST_SIZE,
                mdls: defaults::MDLS,
                grow: Some(chimney::testkit::host::PostGrowth {
                    post_after: defaults::POST_AFTER,
                    first_size: defaults::FIRST_POST_SIZE,
                }),
                ..AppPolicy::default()
            },
            stall: None,
            impair_in: ImpairConfig::default(),
            impair_out: ImpairConfig::default(),
            batch: defaults::READ_BATCH,
            hash: HashKind::default(),
            busy_poll: defaults::BUSY_POLL,
            direct_placement: true,
            host_close: None,
            shutdown_drain: Duration::ZERO,
            connect: Vec::new(),
        }
    }
}

/// What a driver (or several, one per TUN queue) reports at the end of a run.
#[derive(Debug, Clone, Default)]
pub struct DriverSummary {
    /// Every violation the verifier recorded.
    pub violations: Vec<chimney::contract::Violation>,
    /// Engine counters (summed over shards).
    pub stats: EngineStats,
    /// Packets the TUN would not take.
    pub tx_dropped: u64,
    /// Reads that were GSO super-packets.
    pub gso_packets: u64,
    /// Writes that were GSO super-packets (sends).
    pub gso_out: u64,
    /// Connections offloaded by each shard (one entry per TUN queue).
    pub per_queue_offloads: Vec<u64>,
    /// What the host stack behind the target did (reassembly, options, urgent uploads and
    /// re-offloads).
    pub host_path: crate::hoststack::HostPathCounts,
}

impl DriverSummary {
    /// Adds another shard's summary.
    pub fn merge(&mut self, o: DriverSummary) {
        self.per_queue_offloads.extend(o.per_queue_offloads);
        self.violations.extend(o.violations);
        self.stats.merge(&o.stats);
        self.tx_dropped += o.tx_dropped;
        self.gso_packets += o.gso_packets;
        self.gso_out += o.gso_out;
        self.host_path.merge(&o.host_path);
    }
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The peer closed with FIN and both sides finished.
    Fin,
    /// The peer reset the connection.
    Rst,
    /// The peer went silent: keep-alive (or FIN retransmission) gave up (TimeoutExpiration).
    Timeout,
    /// Anything else (upload for another reason, driver stop without a drain).
    Error,
    /// The host closed first (our FIN, acknowledged, then the peer's FIN).
    Closed,
    /// The host aborted (RST; outstanding requests REQUEST_ABORTED).
    Aborted,
    /// The host shut down (serve's SIGINT/SIGTERM): closed gracefully within the drain, or
    /// reset after it.
    Shutdown,
    /// An active open the peer answered with RST (connection refused).
    Refused,
    /// An active open no SYN-ACK answered.
    Unreachable,
}

impl EndReason {
    /// `fin`, `rst`, `timeout`, `error`, `closed`, `aborted`, `shutdown`, `refused` or
    /// `unreachable`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Fin => "fin",
            EndReason::Rst => "rst",
            EndReason::Timeout => "timeout",
            EndReason::Error => "error",
            EndReason::Closed => "closed",
            EndReason::Aborted => "aborted",
            EndReason::Shutdown => "shutdown",
            EndReason::Refused => "refused",
            EndReason::Unreachable => "unreachable",
        }
    }
}

/// One ended connection.
#[derive(Debug, Clone)]
pub struct ConnReport {
    /// Delivery-layer id (reused after the connection ends).
    pub conn: ConnId,
    /// The peer's address.
    pub peer: SocketAddr,
    /// Bytes the application received (completions, indications, BufferedData at upload).
    pub bytes: u64,
    /// The digest kept ([`DriverConfig::hash`]).
    pub hash: HashKind,
    /// The digest of those bytes (empty with [`HashKind::None`]).
    pub digest: Vec<u8>,
    /// How it ended.
    pub end: EndReason,
    /// Receive requests completed with data or SUCCESS.
    pub completions: u64,
    /// Completions with REQUEST_ABORTED.
    pub aborted: u64,
    /// Indications offered.
    pub indications: u64,
    /// Segments the target sent (ACKs, window updates, FIN).
    pub acks: u64,
    /// Segments or parts the connection dropped.
    pub drops: u64,
    /// Contract violations on this connection.
    pub violations: usize,
    /// Events seen, in order.
    pub events: Vec<TcpOffloadEvent>,
    /// From offload to end.
    pub duration: Duration,
    /// Urgent bytes received out of band (the host took them in software, as Linux does by
    /// default); not part of `bytes` or `digest`.
    pub oob: Vec<u8>,
    /// Times the host took the connection over (urgent data) and offloaded it again.
    pub reoffloads: u32,
    /// Send bytes the peer acknowledged (`serve --echo`, `--source`).
    pub sent: u64,
    /// The digest of the bytes the application posted as sends.
    pub sent_digest: Vec<u8>,
    /// Send NBLs completed.
    pub send_completions: u64,
    /// Send NBLs completed REQUEST_ABORTED or UPLOAD_IN_PROGRESS.
    pub send_aborted: u64,
}

struct Live {
    peer: SocketAddr,
    started: Instant,
    stalled_since: Option<Option<Instant>>,
    /// The host began the close (graceful or at shutdown): how the end is reported when the
    /// connection finishes cleanly.
    closing: Option<EndReason>,
    /// Urgent bytes the host took out of band.
    oob: Vec<u8>,
    /// Times the host took the connection over and offloaded it again.
    reoffloads: u32,
}

/// The driver: TUN + impairments + engine (+ verifier) + application. The delivery layer
/// is chimney's own by default; any [`Candidate`] (a foreign target loaded through the C
/// ABI, under `chimney check --real`) can take its place, behind the same verifier.
pub struct Driver<T: Candidate = Delivery> {
    tun: Tun,
    engine: Engine<Tracer<Verifier<T>>>,
    host: AppHost,
    cfg: DriverConfig,
    imp_in: Impairment,
    imp_out: Impairment,
    origin: std::time::Instant,
    live: HashMap<ConnId, Live>,
    reports: Vec<ConnReport>,
    buf: Vec<u8>,
    out: Vec<u8>,
    /// Packets the TUN would not take (queue full).
    pub tx_dropped: u64,
    /// Reads that were GSO super-packets (longer than any 1500-byte MTU packet).
    pub gso_packets: u64,
    /// Writes that were GSO super-packets.
    pub gso_out: u64,
    /// When a read last found a packet (busy-poll).
    last_rx: Option<Instant>,
    /// Sees every packet the engine receives and sends (captures).
    tap: Option<Tap>,
    /// Direct placement's prediction: the connection the next packet continues, the bytes
    /// of its `virtio_net_hdr`, IP and TCP headers, and the payload length of the last one.
    predict: Option<(ConnId, usize, usize)>,
    /// Told of every connection offloaded, with its peer (after the read batch in which it
    /// was offloaded: bytes of that batch may reach the sink first).
    on_offload: Option<OnOffload>,
    /// The host stack behind the target: fragments and IPv4 options.
    defrag: crate::hoststack::Defrag,
    /// Connections the host continues in software after an urgent-data upload, by 4-tuple,
    /// with their (held) id and record.
    hosted: HashMap<(SocketAddr, SocketAddr), (ConnId, crate::hoststack::HostConn, Live)>,
    /// Connections being offloaded again: their record, restored at the `Offloaded` event.
    reoffloading: HashMap<ConnId, Live>,
    /// Packets the host stack sends (ACKs of the software path).
    host_tx: Vec<Vec<u8>>,
}

/// Called with each newly offloaded connection and its peer (e.g. to open its stream file).
pub type OnOffload = Box<dyn FnMut(ConnId, SocketAddr) + Send>;

/// Posted-buffer slices one direct read may fill.
const ROOM_SLICES: usize = 16;

/// What a direct read did.
enum Direct {
    /// Nothing queued.
    Empty,
    /// The payload was placed and the engine took the segment.
    Placed,
    /// Prediction failed: the whole packet (with its `virtio_net_hdr`) is now in `buf[..n]`.
    Gathered(usize),
}

/// Which way a tapped packet went, seen from the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Handed to the engine (after inbound impairments).
    In,
    /// Sent by the engine (before outbound impairments).
    Out,
}

/// A packet observer: `(time since the driver started, direction, IP packet)`.
pub type Tap = Box<dyn FnMut(Instant, Direction, &[u8]) + Send>;

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

impl ConnReport {
    /// The report of an active open that never connected.
    fn failed_open(peer: SocketAddr, reset: bool, hash: HashKind) -> ConnReport {
        ConnReport {
            conn: ConnId(u32::MAX),
            peer,
            bytes: 0,
            hash,
            digest: hash.of(&[]),
            end: if reset { EndReason::Refused } else { EndReason::Unreachable },
            completions: 0,
            aborted: 0,
            indications: 0,
            acks: 0,
            drops: 0,
            violations: 0,
            events: Vec::new(),
            duration: Duration::ZERO,
            oob: Vec::new(),
            reoffloads: 0,
            sent: 0,
            sent_digest: hash.of(&[]),
            send_completions: 0,
            send_aborted: 0,
        }
    }

    /// The digest of what was received, lowercase hex.
    pub fn digest_hex(&self) -> String {
        hex(&self.digest)
    }

    /// The digest of what was sent, lowercase hex.
    pub fn sent_digest_hex(&self) -> String {
        hex(&self.sent_digest)
    }
}

impl Driver {
    /// A driver over `tun` with chimney's delivery layer; the verifier collects violations
    /// (reported per connection).
    pub fn new(tun: Tun, cfg: DriverConfig) -> Result<Driver, DriverError> {
        let layer = Delivery::new(cfg.delivery.clone());
        Driver::with_target(tun, cfg, layer)
    }
}

impl<T: Candidate> Driver<T> {
    /// A driver over `tun` with `target` as its delivery layer, behind the verifier.
    pub fn with_target(tun: Tun, cfg: DriverConfig, target: T) -> Result<Driver<T>, DriverError> {
        cfg.impair_in.validate().map_err(|d| DriverError::new("checking impairments", d))?;
        cfg.impair_out.validate().map_err(|d| DriverError::new("checking impairments", d))?;
        if tun.has_vnet_hdr() && !cfg.impair_in.is_passthrough() {
            // Partial checksums are not verified: corruption injected here would go unseen.
            return Err(DriverError::new(
                "checking impairments",
                "TUN offloads (GSO, partial checksums) cannot be combined with inbound impairments",
            ));
        }
        let seed = cfg.engine.seed;
        let mut ecfg = cfg.engine.clone();
        if tun.has_vnet_hdr() && cfg.impair_out.is_passthrough() && ecfg.tcp.gso_segs == 0 {
            // Sends go out as super-packets of up to 64 KB the kernel cuts (one write, many
            // segments); impairments work per packet, so not with them.
            ecfg.tcp.gso_segs = 44;
        }
        let mut verifier = Verifier::new(target, VerifierMode::Collect);
        let core = std::sync::Arc::clone(verifier.core());
        verifier.inner_mut().attach(&core);
        let mut engine = Engine::new(ecfg, Tracer::new(verifier, None));
        for &(local, remote) in &cfg.connect {
            // The SYN waits in the engine's queue for the first step.
            engine
                .connect(Instant::ZERO, local, remote)
                .map_err(|e| DriverError::new("connecting", format!("{local} to {remote}: {e}")))?;
        }
        let mut host = AppHost::new();
        host.record = false;
        host.hash = cfg.hash;
        // Data indicated before the driver sees a connection's offload follows its policy too
        // (an echo must echo the client's first flight).
        host.set_default_policy(match cfg.stall {
            Some(_) => AppPolicy { keep_posted: 0, indication: IndicationPolicy::Refuse, ..cfg.policy.clone() },
            None => cfg.policy.clone(),
        });
        Ok(Driver {
            tun,
            engine,
            host,
            imp_in: Impairment::new(cfg.impair_in.clone(), seed ^ 0x1111),
            imp_out: Impairment::new(cfg.impair_out.clone(), seed ^ 0x2222),
            cfg,
            origin: std::time::Instant::now(),
            live: HashMap::new(),
            reports: Vec::new(),
            // Room for a 64 KB packet even when the read also offers 64 KB of posted buffers
            // (the gathered packet must fit here).
            buf: vec![0; chimney::wire::vnet::VNET_HDR_LEN + 65536 + 512],
            out: Vec::new(),
            tx_dropped: 0,
            gso_packets: 0,
            gso_out: 0,
            last_rx: None,
            tap: None,
            predict: None,
            on_offload: None,
            defrag: crate::hoststack::Defrag::default(),
            hosted: HashMap::new(),
            reoffloading: HashMap::new(),
            host_tx: Vec::new(),
        })
    }

    fn now(&self) -> Instant {
        Instant::from_nanos(self.origin.elapsed().as_nanos() as u64)
    }

    /// Shows every packet the engine receives and sends to `tap` (e.g. a pcap writer).
    pub fn set_tap(&mut self, tap: Tap) {
        self.tap = Some(tap);
    }

    /// Writes every contract call to `w` (`--trace`): call before any connection is offloaded.
    pub fn set_trace(&mut self, w: TraceWriter) {
        self.engine.delivery_mut().set_writer(Some(w));
    }

    /// Stops tracing and flushes; the lines written, or the first write error.
    pub fn finish_trace(&mut self) -> Option<std::io::Result<u64>> {
        let mut w = self.engine.delivery_mut().set_writer(None)?;
        Some(w.finish().map(|()| w.lines()))
    }

    /// Streams every received chunk to `sink` (e.g. files), in stream order per connection.
    pub fn set_sink(&mut self, sink: chimney::testkit::host::Sink) {
        self.host.sink = Some(sink);
    }

    /// Calls `f` with each connection offloaded from now on and its peer, when the driver
    /// reacts to the engine's events after the read batch in which the offload happened: a
    /// sink must keep bytes that arrive for a connection it has not been told of yet.
    pub fn set_on_offload(&mut self, f: OnOffload) {
        self.on_offload = Some(f);
    }

    /// Connections currently offloaded.
    pub fn live(&self) -> usize {
        self.live.len()
    }

    /// Bytes received so far on live connections plus ended ones.
    pub fn bytes_received(&self) -> u64 {
        self.engine.stats().delivered_bytes
    }

    /// Engine counters.
    pub fn stats(&self) -> EngineStats {
        self.engine.stats()
    }

    /// The delivery layer under test (behind the verifier and the tracer).
    pub fn target(&self) -> &T {
        self.engine.delivery().inner().inner()
    }

    /// Every violation the verifier recorded.
    pub fn violations(&self) -> Vec<chimney::contract::Violation> {
        self.engine.delivery().inner().core().violations()
    }

    /// Violations, counters and TUN figures so far.
    pub fn summary(&self) -> DriverSummary {
        DriverSummary {
            violations: self.violations(),
            stats: self.stats(),
            tx_dropped: self.tx_dropped,
            gso_packets: self.gso_packets,
            gso_out: self.gso_out,
            per_queue_offloads: vec![self.stats().offloads],
            host_path: self.defrag.counts.clone(),
        }
    }

    /// Reports of connections that ended since the last call.
    pub fn take_reports(&mut self) -> Vec<ConnReport> {
        std::mem::take(&mut self.reports)
    }

    /// Runs one round: waits at most `max_wait` for work, then does all that is due.
    pub fn step(&mut self, max_wait: Duration) -> Result<(), DriverError> {
        let now = self.now();
        let hosted = self.hosted.values().map(|(_, hc, _)| hc.deadline()).min();
        let deadline =
            [self.engine.poll_timeout(), self.imp_in.next_due(), self.imp_out.next_due(), self.close_due(), hosted]
                .into_iter()
                .flatten()
                .min();
        let wait = deadline.map_or(max_wait, |d| d.saturating_duration_since(now).min(max_wait));
        let spinning = self.last_rx.is_some_and(|t| now.saturating_duration_since(t) < self.cfg.busy_poll);
        if !wait.is_zero() && !spinning {
            let mut fds = [PollFd::new(self.tun.fd(), PollFlags::POLLIN)];
            let ms = wait.as_millis().clamp(1, 1000) as u16;
            let _ = poll(&mut fds, PollTimeout::from(ms));
        }
        // Inbound. Packets that need the host stack (fragments, IPv4 options, connections
        // the host owns) are copied out of the read buffer and handled after it.
        let mut slow: Vec<(Vec<u8>, TcpChecksum, bool)> = Vec::new();
        let direct = self.cfg.direct_placement && self.tun.has_vnet_hdr() && self.tap.is_none();
        for _ in 0..self.cfg.batch.max(1) {
            let read = match self.predict.filter(|_| direct) {
                Some((conn, h, last)) => match self.recv_direct(conn, h, last)? {
                    Direct::Empty => None,
                    Direct::Placed => {
                        self.last_rx = Some(self.now());
                        continue;
                    }
                    Direct::Gathered(n) => Some(n),
                },
                None => self.tun.recv(&mut self.buf).map_err(|e| DriverError::os("reading the TUN device", e))?,
            };
            let Some(n) = read else { break };
            let now = self.now();
            self.last_rx = Some(now);
            if self.tun.has_vnet_hdr() {
                // A super-packet (or partial checksum) from the local kernel: the header is
                // checked against the packet; a lying one is a counted drop.
                let checked = VnetHdr::split(&self.buf[..n]).and_then(|(h, p)| h.check(p).map(|v| (p, v)));
                match checked {
                    Ok((p, verify)) => {
                        self.gso_packets += u64::from(p.len() > 1600);
                        if let Some(t) = self.tap.as_mut() {
                            t(now, Direction::In, p);
                        }
                        if !self.hosted.is_empty() {
                            // A connection of the host's own may be addressed: the slow path.
                            slow.push((p.to_vec(), verify, false));
                            continue;
                        }
                        let out = self.engine.handle_packet_with(now, p, verify, &mut self.host);
                        if let PacketOutcome::ToHost(WireError::Fragment | WireError::Ipv4Options) = out {
                            slow.push((p.to_vec(), verify, true));
                        }
                        // The next packet is predicted to continue this one's stream.
                        let h = chimney::wire::headers_len(p).unwrap_or(0);
                        self.predict = match out {
                            PacketOutcome::Offloaded(id) if direct && h > 0 && p.len() > h => {
                                Some((id, VNET_HDR_LEN + h, p.len() - h))
                            }
                            _ => self.predict,
                        };
                    }
                    Err(e) => self.engine.count_rejected(n, e),
                }
            } else if self.cfg.impair_in.is_passthrough() {
                if let Some(t) = self.tap.as_mut() {
                    t(now, Direction::In, &self.buf[..n]);
                }
                if self.hosted.is_empty() {
                    let out = self.engine.handle_packet(now, &self.buf[..n], &mut self.host);
                    if let PacketOutcome::ToHost(WireError::Fragment | WireError::Ipv4Options) = out {
                        slow.push((self.buf[..n].to_vec(), TcpChecksum::Verify, true));
                    }
                } else {
                    slow.push((self.buf[..n].to_vec(), TcpChecksum::Verify, false));
                }
            } else {
                self.imp_in.push(now, &self.buf[..n]);
            }
        }
        let now = self.now();
        for (p, verify, engine_saw) in slow.drain(..) {
            if engine_saw {
                self.host_path(now, &p);
            } else {
                self.ingest(now, &p, verify);
            }
        }
        while let Some(p) = self.imp_in.pop_due(now) {
            if let Some(t) = self.tap.as_mut() {
                t(now, Direction::In, &p);
            }
            self.ingest(now, &p, TcpChecksum::Verify);
        }
        // The read queue is drained (or the batch is done): one ACK per connection.
        self.engine.flush_acks(now, &mut self.host);
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now, &mut self.host);
        }
        self.react(now);
        if !self.hosted.is_empty() {
            self.host_timers(now);
        }
        // Outbound: the host stack's own packets, then the engine's.
        for p in std::mem::take(&mut self.host_tx) {
            if let Some(t) = self.tap.as_mut() {
                t(now, Direction::Out, &p);
            }
            if !self.tun.send(&p).map_err(|e| DriverError::os("writing the TUN device", e))? {
                self.tx_dropped += 1;
            }
        }
        while let Some(gso) = self.engine.poll_transmit_gso(&mut self.out) {
            if let Some(t) = self.tap.as_mut() {
                t(now, Direction::Out, &self.out);
            }
            if gso > 0 {
                if !self.tun.send_gso(&self.out, gso).map_err(|e| DriverError::os("writing the TUN device", e))? {
                    self.tx_dropped += 1;
                }
                self.gso_out += 1;
            } else if self.cfg.impair_out.is_passthrough() {
                if !self.tun.send(&self.out).map_err(|e| DriverError::os("writing the TUN device", e))? {
                    self.tx_dropped += 1;
                }
            } else {
                self.imp_out.push(now, &self.out);
            }
        }
        while let Some(p) = self.imp_out.pop_due(now) {
            if !self.tun.send(&p).map_err(|e| DriverError::os("writing the TUN device", e))? {
                self.tx_dropped += 1;
            }
        }
        Ok(())
    }

    /// Reads one packet with its first `h` bytes (the predicted headers) into `buf` and the
    /// rest straight into `conn`'s posted buffers, overflow back into `buf`. When the
    /// headers say it is `conn`'s next in-order segment, the engine takes it where it lies;
    /// otherwise the packet is gathered into `buf` for the ordinary path.
    fn recv_direct(&mut self, conn: ConnId, h: usize, last: usize) -> Result<Direct, DriverError> {
        let mut room: [&mut [u8]; ROOM_SLICES] = Default::default();
        let k = self.engine.placement_room(conn, 65536, &mut room);
        let room_len: usize = room[..k].iter().map(|s| s.len()).sum();
        if k == 0 || room_len < last {
            // No posted room, or less than a packet like the last one needs (it would not
            // fit and cost a copy back): read the ordinary way, keep predicting.
            return match self.tun.recv(&mut self.buf) {
                Ok(Some(n)) => Ok(Direct::Gathered(n)),
                Ok(None) => Ok(Direct::Empty),
                Err(e) => Err(DriverError::os("reading the TUN device", e)),
            };
        }
        let end = (self.buf.len() - room_len).max(h);
        let (head, rest) = self.buf[..end].split_at_mut(h);
        let (mut head, mut rest) = (Some(head), Some(rest));
        let mut slices = room[..k].iter_mut();
        let mut iov: [IoSliceMut<'_>; ROOM_SLICES + 2] = std::array::from_fn(|i| match i {
            0 => IoSliceMut::new(head.take().unwrap_or_default()),
            _ => match slices.next() {
                Some(s) => IoSliceMut::new(s),
                None => IoSliceMut::new(rest.take().unwrap_or_default()),
            },
        });
        let n = match self.tun.recv_vectored(&mut iov) {
            Ok(Some(n)) => n,
            Ok(None) => return Ok(Direct::Empty),
            Err(e) => return Err(DriverError::os("reading the TUN device", e)),
        };
        let payload = n.saturating_sub(h);
        let in_room = payload.min(room_len);
        let overflow = payload - in_room;
        if overflow == 0 && in_room > 0 {
            if let Some((seg, plen)) = Self::predicted_headers(&self.buf[..h], n) {
                if plen == in_room {
                    let now = self.now();
                    if self.engine.handle_placed(now, conn, &seg, plen, n - VNET_HDR_LEN, &mut self.host) {
                        self.gso_packets += u64::from(n - VNET_HDR_LEN > 1600);
                        self.predict = Some((conn, h, plen));
                        return Ok(Direct::Placed);
                    }
                }
            }
        }
        // Missed: gather the packet (the overflow moves up behind the bytes in the room).
        self.predict = None;
        self.buf.copy_within(h..h + overflow, h + in_room);
        let (buf, mut at) = (&mut self.buf, h);
        self.engine.delivery().placed_bytes(conn, in_room, &mut |s| {
            buf[at..at + s.len()].copy_from_slice(s);
            at += s.len();
        });
        // The bytes read into the room may belong to another connection: wipe them, so a
        // request completed partly filled never shows the application someone else's data.
        let mut room: [&mut [u8]; ROOM_SLICES] = Default::default();
        let k = self.engine.placement_room(conn, in_room, &mut room);
        for s in room[..k].iter_mut() {
            s.fill(0);
        }
        Ok(Direct::Gathered(n))
    }

    /// The segment in `head` (a `virtio_net_hdr` and exactly the IP and TCP headers) of an
    /// `n`-byte read, when the kernel vouches for its checksum; `None` sends it the
    /// ordinary way (which also counts whatever is wrong with it).
    fn predicted_headers(head: &[u8], n: usize) -> Option<(chimney::wire::Segment<'static>, usize)> {
        let (v, hdrs) = VnetHdr::split(head).ok()?;
        match v.check_prefix(hdrs, n - VNET_HDR_LEN) {
            Ok(chimney::wire::TcpChecksum::VouchedByKernel) => {}
            _ => return None,
        }
        chimney::wire::parse_headers(hdrs, n - VNET_HDR_LEN).ok()
    }

    fn react(&mut self, now: Instant) {
        while let Some(ev) = self.engine.poll_event() {
            if let EngineEvent::ConnectFailed { remote, reset, .. } = ev {
                self.reports.push(ConnReport::failed_open(remote, reset, self.host.hash));
                continue;
            }
            if let EngineEvent::Offloaded { conn, remote, .. } = ev {
                if let Some(l) = self.reoffloading.remove(&conn) {
                    // Offloaded again after the host's exception: same id, same record, same
                    // application policy; it posts again.
                    self.live.insert(conn, l);
                    let _ = self.host.top_up(now, conn, &mut self.engine);
                    // What the upload took back from the send path goes out again.
                    self.host.pump_sends(now, conn, &mut self.engine);
                    continue;
                }
                if let Some(f) = self.on_offload.as_mut() {
                    f(conn, remote);
                }
                let stalled = self.cfg.stall.map(|_| None);
                let policy = if stalled.is_some() {
                    AppPolicy { keep_posted: 0, indication: IndicationPolicy::Refuse, ..self.cfg.policy.clone() }
                } else {
                    self.cfg.policy.clone()
                };
                self.host.set_policy(conn, policy);
                self.live.insert(
                    conn,
                    Live {
                        peer: remote,
                        started: now,
                        stalled_since: stalled,
                        closing: None,
                        oob: Vec::new(),
                        reoffloads: 0,
                    },
                );
                let _ = self.host.top_up(now, conn, &mut self.engine);
                // A source starts sending at once.
                self.host.pump_sends(now, conn, &mut self.engine);
            }
        }
        // Slow consumers resume once the window has been zero (or the peer has finished
        // sending: a stream shorter than the window never closes it) for the stall time.
        if let Some(stall) = self.cfg.stall {
            let ids: Vec<ConnId> = self.live.keys().copied().collect();
            for id in ids {
                let zero = self
                    .engine
                    .conn(id)
                    .is_some_and(|c| c.rcv_wnd() == 0 || c.state() != chimney::ndis::TcpConnectionState::Established);
                let Some(l) = self.live.get_mut(&id) else { continue };
                match l.stalled_since {
                    Some(None) if zero => l.stalled_since = Some(Some(now)),
                    Some(Some(t)) if now >= t + stall => {
                        l.stalled_since = None;
                        self.host.set_policy(id, self.cfg.policy.clone());
                        let _ = self.host.top_up(now, id, &mut self.engine);
                        if self.cfg.policy.keep_posted == 0 {
                            // It refused indications while stalled and posts nothing: a
                            // zero-byte post asks for the kept data again.
                            let _ = self.host.post_zero_byte(now, id, &mut self.engine);
                        }
                    }
                    _ => {}
                }
            }
        }
        if self.host.holds_indications() {
            self.host.return_held(now, &mut self.engine);
        }
        let mut ended = Vec::new();
        self.host.react(now, &mut self.engine, &mut |conn, _, end| {
            if let Some(e) = end {
                ended.push((conn, e));
            }
        });
        for (conn, end) in ended {
            if end == HostEnd::Upload(TcpUploadReason::ReceivedUrgentData) && self.take_over(now, conn) {
                continue;
            }
            let closing = self.live.get(&conn).and_then(|l| l.closing);
            let end = match (end, closing) {
                (HostEnd::Fin, Some(why)) => why,
                (HostEnd::Fin, None) => EndReason::Fin,
                (HostEnd::Rst, _) => EndReason::Rst,
                (HostEnd::Timeout, _) => EndReason::Timeout,
                _ => EndReason::Error,
            };
            self.finish(now, conn, end);
        }
        self.host_close(now);
    }

    /// A packet through the host stack: a segment of a connection the host owns goes to it;
    /// anything else to the engine, and what the engine hands back (a fragment, IPv4
    /// options) is reassembled or stripped and forwarded to the engine again.
    fn ingest(&mut self, now: Instant, p: &[u8], verify: TcpChecksum) {
        if !self.hosted.is_empty() {
            if let Ok(seg) = chimney::wire::parse_with(p, verify) {
                let key = (SocketAddr::new(seg.dst, seg.dst_port), SocketAddr::new(seg.src, seg.src_port));
                if self.hosted.contains_key(&key) {
                    self.host_segment(now, key, &seg);
                    return;
                }
            }
        }
        let out = self.engine.handle_packet_with(now, p, verify, &mut self.host);
        if let PacketOutcome::ToHost(WireError::Fragment | WireError::Ipv4Options) = out {
            self.host_path(now, p);
        }
    }

    /// A packet the engine handed to the host path: reassembled (or its options stripped)
    /// and, once whole, fed in again.
    fn host_path(&mut self, now: Instant, p: &[u8]) {
        if let Some(whole) = self.defrag.push(now, p) {
            // A plain datagram now: it cannot come back here.
            self.ingest(now, &whole, TcpChecksum::Verify);
        }
    }

    /// The target uploaded `conn` for urgent data: the host continues it in software
    /// ([`crate::hoststack::HostConn`]) under the same id until the urgent byte is taken.
    fn take_over(&mut self, now: Instant, conn: ConnId) -> bool {
        let Some(n) = self.engine.negotiated(conn) else { return false };
        let Ok(d) = self.engine.terminate_offload(now, conn, &mut self.host) else { return false };
        self.host.take_uploaded(conn, d.buffered_data);
        self.host.return_held(now, &mut self.engine);
        let held = self.engine.hold_id(conn);
        let Some(live) = self.live.remove(&conn) else { return false };
        let hc =
            crate::hoststack::HostConn::new(now, n, d.rcv_nxt, d.rcv_wnd, d.ts_recent, self.cfg.engine.tcp.rcv_wnd);
        tracing::debug!(conn = %conn, rcv_nxt = d.rcv_nxt, "urgent data: the host continues the connection");
        self.defrag.counts.urgent_uploads += 1;
        if !held {
            // Cannot keep its id: end it as before.
            self.live.insert(conn, live);
            self.finish(now, conn, EndReason::Error);
            return true;
        }
        self.hosted.insert(hc.tuple(), (conn, hc, live));
        true
    }

    /// A segment for a connection the host owns.
    fn host_segment(&mut self, now: Instant, key: (SocketAddr, SocketAddr), seg: &chimney::wire::Segment<'_>) {
        let Some((conn, hc, _)) = self.hosted.get_mut(&key) else { return };
        let conn = *conn;
        let (host, tx) = (&mut self.host, &mut self.host_tx);
        let verdict = hc.on_segment(now, seg, &mut |d| host.receive_host_path(conn, d), &mut |r| {
            let mut b = Vec::new();
            r.emit(&mut b);
            tx.push(b);
        });
        self.host_verdict(now, key, verdict);
    }

    /// The host stack's timers for the connections it owns.
    fn host_timers(&mut self, now: Instant) {
        let due: Vec<_> = self.hosted.iter().filter(|(_, (_, hc, _))| hc.deadline() <= now).map(|(k, _)| *k).collect();
        for key in due {
            let Some((_, hc, _)) = self.hosted.get_mut(&key) else { continue };
            let tx = &mut self.host_tx;
            let verdict = hc.poll(now, &mut |r| {
                let mut b = Vec::new();
                r.emit(&mut b);
                tx.push(b);
            });
            self.host_verdict(now, key, verdict);
        }
    }

    /// Acts on what a host-owned connection asked for.
    fn host_verdict(&mut self, now: Instant, key: (SocketAddr, SocketAddr), verdict: crate::hoststack::HostVerdict) {
        if verdict == HostVerdict::Continue {
            return;
        }
        let Some((conn, hc, mut live)) = self.hosted.remove(&key) else { return };
        live.oob.extend_from_slice(&hc.oob);
        match verdict {
            HostVerdict::Reoffload => match self.engine.reoffload_as(now, conn, hc.negotiated(), &mut self.host) {
                Ok(_) => {
                    live.reoffloads += 1;
                    self.defrag.counts.reoffloads += 1;
                    tracing::debug!(conn = %conn, "urgent byte taken: offloaded again");
                    self.reoffloading.insert(conn, live);
                }
                Err(e) => {
                    tracing::warn!(conn = %conn, %e, "re-offload refused");
                    self.engine.release_id(conn);
                    self.live.insert(conn, live);
                    self.finish(now, conn, EndReason::Error);
                }
            },
            v => {
                self.engine.release_id(conn);
                self.live.insert(conn, live);
                let end = match v {
                    HostVerdict::Rst => EndReason::Rst,
                    HostVerdict::Timeout => EndReason::Timeout,
                    _ => EndReason::Fin,
                };
                self.finish(now, conn, end);
            }
        }
    }

    /// Ends the connections the host owns (driver stop).
    fn end_hosted(&mut self, now: Instant, why: EndReason) {
        let keys: Vec<_> = self.hosted.keys().copied().collect();
        for key in keys {
            if let Some((conn, mut hc, mut live)) = self.hosted.remove(&key) {
                // The peer is told: no connection of ours is left hanging.
                let tx = &mut self.host_tx;
                hc.reset(&mut |r| {
                    let mut b = Vec::new();
                    r.emit(&mut b);
                    tx.push(b);
                });
                live.oob.extend_from_slice(&hc.oob);
                self.engine.release_id(conn);
                self.live.insert(conn, live);
                self.finish(now, conn, why);
            }
        }
    }

    /// When the next `--close-after-ms` / `--abort-after-ms` falls due.
    fn close_due(&self) -> Option<Instant> {
        let after = self.cfg.host_close.and_then(|h| h.after)?;
        self.live.values().filter(|l| l.closing.is_none()).map(|l| l.started + after).min()
    }

    /// The host closes or aborts the connections whose time or byte count has come.
    fn host_close(&mut self, now: Instant) {
        let Some(h) = self.cfg.host_close else { return };
        let due: Vec<ConnId> = self
            .live
            .iter()
            .filter(|(_, l)| l.closing.is_none())
            .filter(|(id, l)| {
                h.after.is_some_and(|t| now >= l.started + t)
                    || h.after_bytes.is_some_and(|n| self.host.conn(**id).bytes >= n)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.close(
                now,
                id,
                h.kind,
                if h.kind == DisconnectKind::Graceful { EndReason::Closed } else { EndReason::Aborted },
            );
        }
    }

    /// The host disconnects `conn` (`why`: how its end is reported). Graceful: our FIN, the
    /// connection finishes when the peer's FIN comes (a peer that already sent its FIN gets
    /// the ordinary `fin`). Abortive: RST, and the connection is uploaded at once (no event
    /// follows an abortive disconnect, R-ABT-1).
    fn close(&mut self, now: Instant, conn: ConnId, kind: DisconnectKind, why: EndReason) {
        let Some(l) = self.live.get_mut(&conn) else { return };
        let first = self.engine.conn(conn).is_some_and(|c| c.state() == chimney::ndis::TcpConnectionState::Established);
        l.closing = Some(if first || kind == DisconnectKind::Abortive { why } else { EndReason::Fin });
        tracing::debug!(conn = %conn, ?kind, "host disconnect");
        let _ = self.engine.disconnect(now, conn, kind, chimney::ndis::NblChain::new(), &mut self.host);
        if kind == DisconnectKind::Abortive {
            self.host.return_held(now, &mut self.engine);
            self.finish(now, conn, why);
        }
    }

    /// Uploads `conn` and records its report.
    fn finish(&mut self, now: Instant, conn: ConnId, end: EndReason) {
        let Some(live) = self.live.remove(&conn) else { return };
        let (acks, drops) = self.engine.conn(conn).map_or((0, 0), |c| {
            (c.counters().out_segments, TcpDrop::ALL.iter().map(|&d| c.counters().dropped(d)).sum())
        });
        if let Ok(d) = self.engine.terminate_offload(now, conn, &mut self.host) {
            self.host.take_uploaded(conn, d.buffered_data);
        }
        self.host.return_held(now, &mut self.engine);
        let (hash, digest, sent_digest) = (self.host.hash, self.host.digest(conn), self.host.sent_digest(conn));
        let seen = self.host.forget(conn);
        let violations = self.violations().iter().filter(|v| v.conn == Some(conn)).count();
        self.reports.push(ConnReport {
            conn,
            peer: live.peer,
            bytes: seen.bytes,
            hash,
            digest,
            end,
            completions: seen.completions - seen.with_status(NdisStatus::RequestAborted),
            aborted: seen.with_status(NdisStatus::RequestAborted),
            indications: seen.indications,
            acks,
            drops,
            violations,
            events: seen.events,
            duration: now.saturating_duration_since(live.started),
            oob: live.oob,
            reoffloads: live.reoffloads,
            sent: seen.sent,
            sent_digest,
            send_completions: seen.send_statuses.iter().map(|(_, n)| n).sum(),
            send_aborted: seen.send_statuses.iter().filter(|(s, _)| *s != NdisStatus::Success).map(|(_, n)| n).sum(),
        });
    }

    /// Driver stop. With no [`DriverConfig::shutdown_drain`], every live connection is
    /// uploaded at once and reported with `end = error`. With one, the host stops listening
    /// (half-open connections get an RST), closes every connection gracefully, keeps running
    /// until they finish or the drain is over, then aborts (RST) what is left: no peer is left
    /// hanging. Each is reported with `end = shutdown`, except one whose peer had already
    /// closed (CLOSE-WAIT): its close is the peer's, `fin`.
    pub fn shutdown(&mut self) {
        let drain = self.cfg.shutdown_drain;
        let now = self.now();
        self.end_hosted(now, if drain.is_zero() { EndReason::Error } else { EndReason::Shutdown });
        if drain.is_zero() {
            let ids: Vec<ConnId> = self.live.keys().copied().collect();
            for id in ids {
                self.finish(now, id, EndReason::Error);
            }
            return;
        }
        let start = self.now();
        self.engine.stop_listening();
        let ids: Vec<ConnId> = self.live.iter().filter(|(_, l)| l.closing.is_none()).map(|(id, _)| *id).collect();
        for id in ids {
            self.close(start, id, DisconnectKind::Graceful, EndReason::Shutdown);
        }
        while !self.live.is_empty() && self.now().saturating_duration_since(start) < drain {
            if self.step(Duration::from_millis(10)).is_err() {
                break;
            }
        }
        let now = self.now();
        // Connections the host took over during the drain (urgent data) end here too.
        self.end_hosted(now, EndReason::Shutdown);
        let ids: Vec<ConnId> = self.live.keys().copied().collect();
        for id in ids {
            self.close(now, id, DisconnectKind::Abortive, EndReason::Shutdown);
        }
        // The RSTs go out before the device closes.
        let _ = self.step(Duration::ZERO);
    }
}
