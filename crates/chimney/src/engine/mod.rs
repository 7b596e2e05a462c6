//! The sans-IO engine: demultiplexes packets to offloaded connections, runs the host stack's
//! passive open (SYN → SYN-ACK → ACK) and offloads each established connection to the
//! delivery layer, and queues what must be sent.
//!
//! Methods come in four kinds (as quinn-proto's `Connection`): `handle_*` feed inputs
//! (`handle_packet(now, bytes)`, `handle_timeout(now)`); host calls (`receive`,
//! `receive_return`, `disconnect`, `terminate_offload`: the [`OffloadTarget`] entry points);
//! `poll_*` drain outputs (`poll_transmit`, `poll_event`, `poll_timeout`); getters (`stats`).
//! After any `handle_*` or host call, drain `poll_transmit` and `poll_event`, then sleep until
//! `poll_timeout`.

mod listener;
mod stats;
mod syncookie;
mod table;

use core::net::SocketAddr;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

pub use listener::{ListenerConfig, ListenerCounts};
pub use stats::{EngineStats, IpOffloadStats, TcpOffloadStats};
pub use syncookie::SynCookies;

use crate::contract::{
    ApiMisuse, ConnId, InitiateOffload, OffloadTarget, PostRejected, ProtocolHost, ReceiveInput, SendInput,
};
use crate::ndis::{DisconnectKind, NblChain, NdisStatus, TcpConnectionState, TcpDelegatedState};
use crate::tcp::{ConnContext, Endpoints, Negotiated, TcpConfig, TcpConn};
use crate::time::Instant;
use crate::wire::{self, flags, SegmentRepr, TcpOptions, WireError};

/// A connection's 4-tuple (local, remote).
pub type FourTuple = (SocketAddr, SocketAddr);

/// Engine configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Seed of every random choice (ISNs, hash keys, timestamp offsets).
    pub seed: u64,
    /// A secret mixed into the keys of ISNs and SYN cookies. A driver facing a real network
    /// draws it from the OS (else anyone who knows the seed could predict ISNs and forge
    /// cookies); simulations leave it 0 to stay deterministic.
    pub secret: u64,
    /// Addresses the host stack listens on (an unspecified IP matches any).
    pub listen: Vec<SocketAddr>,
    /// TCP receive parameters.
    pub tcp: TcpConfig,
    /// Passive-open parameters.
    pub listener: ListenerConfig,
    /// Offloaded connections at most.
    pub max_connections: u32,
    /// The prefixes the target is on: segments to or from their IPv4 directed broadcast
    /// and network addresses are dropped unanswered, like every other non-unicast address.
    pub prefixes: Vec<wire::Prefix>,
    /// Replies to junk (challenge ACKs, ACKs answering unacceptable segments and bad ACKs)
    /// the whole engine sends per second, on average (RFC 5961 §7; 0: unlimited). Each
    /// connection also spaces its own ([`TcpConfig::junk_reply_interval`]).
    pub junk_replies_per_sec: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            seed: 1,
            secret: 0,
            listen: Vec::new(),
            tcp: TcpConfig::default(),
            listener: ListenerConfig::default(),
            max_connections: 1 << 16,
            prefixes: Vec::new(),
            junk_replies_per_sec: 1000,
        }
    }
}

/// What the engine tells its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineEvent {
    /// A connection completed its handshake and was offloaded: the application may post.
    Offloaded {
        /// Its id.
        conn: ConnId,
        /// Our end.
        local: SocketAddr,
        /// The peer.
        remote: SocketAddr,
    },
    /// The host terminated (uploaded) a connection; its id is free again.
    Terminated {
        /// Its id.
        conn: ConnId,
    },
    /// An active open ([`Engine::connect`]) failed.
    ConnectFailed {
        /// Our end.
        local: SocketAddr,
        /// The peer.
        remote: SocketAddr,
        /// The peer reset it (else no SYN-ACK came after the retries).
        reset: bool,
    },
}

/// What became of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PacketOutcome {
    /// Processed by an offloaded connection.
    Offloaded(ConnId),
    /// Processed by the host stack (handshake, RST for unknown connections).
    Host,
    /// Not for the target: a fragment, IPv4 options, not TCP (spec §6.6), counted.
    ToHost(WireError),
    /// Dropped and counted.
    Dropped(WireError),
}

/// The offload engine over a delivery layer `D` (usually `Verifier<Delivery>`).
pub struct Engine<D> {
    cfg: EngineConfig,
    delivery: D,
    table: table::ConnTable,
    /// Connections inline, indexed by id (no box: one cache miss less per packet and no
    /// allocator header per connection).
    conns: Vec<Option<TcpConn>>,
    free_ids: Vec<u32>,
    /// Ids of connections the host uploaded and keeps for a re-offload ([`Engine::hold_id`]).
    held_ids: Vec<u32>,
    next_id: u32,
    listener: listener::Listener,
    timers: BinaryHeap<Reverse<(Instant, u32)>>,
    /// Connections with a deferred ACK (`TcpConfig::defer_acks`).
    ack_list: Vec<ConnId>,
    /// Packets to send, each with its GSO segment size (0: an ordinary packet).
    tx: VecDeque<(Vec<u8>, u16)>,
    spare: Vec<Vec<u8>>,
    events: VecDeque<EngineEvent>,
    window_watch: Vec<ConnId>,
    /// The engine-wide allowance of replies to junk.
    budget: crate::tcp::ReplyBudget,
    /// Connections whose send stream grew inside an upcall (reused list).
    send_ready: Vec<ConnId>,
    /// Sends and disconnects made inside upcalls that could not be taken, handed back.
    rejected: Vec<PostRejected>,
    stats: EngineStats,
}

fn tx_push(tx: &mut VecDeque<(Vec<u8>, u16)>, spare: &mut Vec<Vec<u8>>, stats: &mut EngineStats, r: &SegmentRepr<'_>) {
    tx_push_gso(tx, spare, stats, r, 0, None);
}

/// Queues `r` (its payload gathered by `gather` when given); with `gso` > 0 as a super-packet
/// of segments of `gso` payload bytes, with a partial checksum (the driver writes it with a
/// `virtio_net_hdr` and the kernel cuts it).
fn tx_push_gso(
    tx: &mut VecDeque<(Vec<u8>, u16)>,
    spare: &mut Vec<Vec<u8>>,
    stats: &mut EngineStats,
    r: &SegmentRepr<'_>,
    gso: u16,
    gather: Option<crate::tcp::Gather<'_>>,
) {
    let mut buf = spare.pop().unwrap_or_default();
    let payload = match gather {
        Some(g) => r.emit_gather(&mut buf, g.len, gso > 0, g.fill),
        None if gso > 0 => {
            r.emit_partial(&mut buf);
            r.payload.len()
        }
        None => {
            r.emit(&mut buf);
            r.payload.len()
        }
    };
    let segs = if gso > 0 { payload.div_ceil(usize::from(gso)).max(1) as u64 } else { 1 };
    stats.ip.out_requests += segs;
    stats.ip.out_octets += buf.len() as u64;
    tx.push_back((buf, gso));
}

impl<D: InitiateOffload + ReceiveInput + SendInput> Engine<D> {
    /// An engine listening on `cfg.listen`, delivering through `delivery`.
    pub fn new(cfg: EngineConfig, delivery: D) -> Engine<D> {
        let s = cfg.seed;
        let hasher = ahash::RandomState::with_seeds(s, s.rotate_left(17) ^ 0x9E37, s.rotate_left(31) ^ 0x85EB, !s);
        let listener = listener::Listener::new(cfg.listener.clone(), s, cfg.secret);
        let budget = crate::tcp::ReplyBudget::new(cfg.junk_replies_per_sec, s.rotate_left(23) ^ 0x5DEE_CE66);
        Engine {
            budget,
            cfg,
            delivery,
            table: table::ConnTable::new(hasher),
            conns: Vec::new(),
            free_ids: Vec::new(),
            held_ids: Vec::new(),
            next_id: 0,
            listener,
            timers: BinaryHeap::new(),
            ack_list: Vec::new(),
            tx: VecDeque::new(),
            spare: Vec::new(),
            events: VecDeque::new(),
            window_watch: Vec::new(),
            send_ready: Vec::new(),
            rejected: Vec::new(),
            stats: EngineStats::default(),
        }
    }

    /// The delivery layer.
    pub fn delivery(&self) -> &D {
        &self.delivery
    }

    /// The delivery layer, writable.
    pub fn delivery_mut(&mut self) -> &mut D {
        &mut self.delivery
    }

    /// Counters (TCP_OFFLOAD_STATS, IP_OFFLOAD_STATS, drop reasons), summed over live and
    /// closed connections.
    pub fn stats(&self) -> EngineStats {
        let mut s = self.stats.clone();
        s.replies_suppressed_conn = self.budget.suppressed_conn;
        s.replies_suppressed_global = self.budget.suppressed_global;
        s.listener = self.listener.counts.clone();
        for c in self.conns.iter().flatten() {
            s.add_conn(&c.counters);
        }
        s.tcp.currently_established = self
            .conns
            .iter()
            .flatten()
            .filter(|c| matches!(c.state, TcpConnectionState::Established | TcpConnectionState::CloseWait))
            .count() as u32;
        s
    }

    /// The connection's TCP state, for tests and reports.
    pub fn conn(&self, id: ConnId) -> Option<&TcpConn> {
        self.conns.get(id.0 as usize).and_then(|c| c.as_ref())
    }

    /// The next packet to send, swapped into `out` (its old buffer is kept for reuse).
    #[must_use]
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        self.poll_transmit_gso(out).is_some()
    }

    /// [`Engine::poll_transmit`] that also says how the packet is to be written: `Some(0)`
    /// as it is, `Some(n)` as a GSO super-packet of `n`-byte segments with a partial TCP
    /// checksum (only with [`TcpConfig::gso_segs`] above 1: a driver that sets it writes
    /// these with a `virtio_net_hdr`, see [`crate::wire::vnet::VnetHdr::for_gso`]).
    #[must_use]
    pub fn poll_transmit_gso(&mut self, out: &mut Vec<u8>) -> Option<u16> {
        let (mut p, gso) = self.tx.pop_front()?;
        std::mem::swap(out, &mut p);
        if p.capacity() > 0 && self.spare.len() < 256 {
            self.spare.push(p);
        }
        Some(gso)
    }

    /// The next event for the driver.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<EngineEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` is next due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mine = self.timers.peek().map(|Reverse((t, _))| *t);
        [mine, self.delivery.poll_timeout(), self.listener.poll_timeout()].into_iter().flatten().min()
    }

    fn schedule(timers: &mut BinaryHeap<Reverse<(Instant, u32)>>, c: &TcpConn) {
        if let Some(t) = c.next_deadline() {
            timers.push(Reverse((t, c.id.0)));
        }
    }

    fn reschedule(&mut self, id: ConnId) {
        if let Some(t) = self.conn(id).and_then(|c| c.next_deadline()) {
            self.timers.push(Reverse((t, id.0)));
        }
    }

    /// Runs `f` on connection `id` with a context; reschedules its timers afterwards.
    fn with_conn<R>(
        &mut self,
        id: ConnId,
        host: &mut dyn ProtocolHost,
        f: impl FnOnce(&mut TcpConn, &mut ConnContext<'_>) -> R,
    ) -> Option<R> {
        let conn = self.conns.get_mut(id.0 as usize)?.as_mut()?;
        let before = conn.next_deadline();
        let (tx, spare, stats) = (&mut self.tx, &mut self.spare, &mut self.stats);
        let mut push =
            |r: &SegmentRepr<'_>, gso: u16, g: Option<crate::tcp::Gather<'_>>| tx_push_gso(tx, spare, stats, r, gso, g);
        let mut cx = ConnContext {
            delivery: &mut self.delivery,
            host,
            tx: &mut push,
            cfg: &self.cfg.tcp,
            budget: &mut self.budget,
        };
        let r = f(conn, &mut cx);
        let after = conn.next_deadline();
        if after.is_some() && (before.is_none() || after < before) {
            Self::schedule(&mut self.timers, conn);
        }
        if conn.ack_pending && !conn.on_ack_list {
            conn.on_ack_list = true;
            self.ack_list.push(id);
        }
        // A flag on the connection, not a scan of the list: this runs for every packet.
        if !conn.on_window_watch && conn.rcv_wnd() < conn.max_window(&self.cfg.tcp) / 2 {
            conn.on_window_watch = true;
            self.window_watch.push(id);
        }
        Some(r)
    }

    fn tuple_in(conns: &[Option<TcpConn>], id: u32) -> Option<&Endpoints> {
        conns.get(id as usize).and_then(|c| c.as_ref()).map(|c| c.endpoints())
    }

    /// The connection offloaded under a 4-tuple.
    fn lookup(&self, key: &FourTuple) -> Option<ConnId> {
        self.lookup_ends(&Endpoints::new(key.0, key.1))
    }

    /// The connection offloaded under `key`.
    fn lookup_ends(&self, key: &Endpoints) -> Option<ConnId> {
        self.table.get(key, |i| Self::tuple_in(&self.conns, i))
    }

    /// The key of a received segment's connection (ours is its destination).
    fn segment_key(seg: &wire::Segment<'_>) -> Endpoints {
        Endpoints::from_parts(seg.dst, seg.dst_port, seg.src, seg.src_port)
    }

    /// Feeds one received IP packet.
    pub fn handle_packet(&mut self, now: Instant, packet: &[u8], host: &mut dyn ProtocolHost) -> PacketOutcome {
        self.handle_packet_with(now, packet, wire::TcpChecksum::Verify, host)
    }

    /// Like [`Engine::handle_packet`], saying whether the TCP checksum is to be verified: not
    /// for a GSO super-packet or partial checksum the local kernel vouches for
    /// ([`wire::vnet::VnetHdr::check`] decides). Everything else is checked.
    pub fn handle_packet_with(
        &mut self,
        now: Instant,
        packet: &[u8],
        checksum: wire::TcpChecksum,
        host: &mut dyn ProtocolHost,
    ) -> PacketOutcome {
        self.stats.ip.in_receives += 1;
        self.stats.ip.in_octets += packet.len() as u64;
        let seg = match wire::parse_with(packet, checksum) {
            Ok(s) => s,
            Err(e) => {
                tracing::trace!(len = packet.len(), reason = e.name(), "packet not parsed");
                self.stats.count_wire(e);
                return if e.goes_to_host() { PacketOutcome::ToHost(e) } else { PacketOutcome::Dropped(e) };
            }
        };
        self.stats.ip.in_delivers += 1;
        if let Some(id) = self.lookup_ends(&Self::segment_key(&seg)) {
            self.with_conn(id, host, |c, cx| c.on_segment(now, &seg, cx));
            self.pump(now, host);
            return PacketOutcome::Offloaded(id);
        }
        self.host_path(now, &seg, packet, host);
        PacketOutcome::Host
    }

    /// Direct placement, step 1: the room of `conn`'s posted requests where its next
    /// in-order bytes go (see [`ReceiveInput::placement_room`]). A driver reads the next
    /// packet's payload there when it predicts the packet continues `conn`'s stream.
    pub fn placement_room<'a>(&'a mut self, conn: ConnId, max: usize, out: &mut [&'a mut [u8]]) -> usize {
        self.delivery.placement_room(conn, max, out)
    }

    /// Direct placement, step 2: a packet of `packet_len` bytes whose headers are `seg`
    /// ([`wire::parse_headers`]) and whose `payload_len` bytes the driver read into the front
    /// of [`Engine::placement_room`]`(conn)`. True: taken, exactly as [`Engine::handle_packet`]
    /// would have taken it. False: nothing changed (another connection, or header prediction
    /// failed: out of order, flags, no room); the driver feeds the packet whole instead.
    pub fn handle_placed(
        &mut self,
        now: Instant,
        conn: ConnId,
        seg: &wire::Segment<'_>,
        payload_len: usize,
        packet_len: usize,
        host: &mut dyn ProtocolHost,
    ) -> bool {
        if self.lookup_ends(&Self::segment_key(seg)) != Some(conn) {
            return false;
        }
        // `on_placed` checks the prediction itself and changes nothing when it fails.
        let taken = self.with_conn(conn, host, |c, cx| c.on_placed(now, seg, payload_len, cx)).unwrap_or(false);
        if taken {
            self.stats.ip.in_receives += 1;
            self.stats.ip.in_octets += packet_len as u64;
            self.stats.ip.in_delivers += 1;
            self.stats.placed_packets += 1;
        }
        taken
    }

    /// Counts a packet the driver rejected before parsing (e.g. a lying `virtio_net_hdr`).
    pub fn count_rejected(&mut self, packet_len: usize, e: WireError) {
        tracing::trace!(len = packet_len, reason = e.name(), "packet rejected by the driver");
        self.stats.ip.in_receives += 1;
        self.stats.ip.in_octets += packet_len as u64;
        self.stats.count_wire(e);
    }

    /// Segments for no offloaded connection: the host stack's listener and closed ports.
    fn host_path(&mut self, now: Instant, seg: &wire::Segment<'_>, raw: &[u8], host: &mut dyn ProtocolHost) {
        let local = SocketAddr::new(seg.dst, seg.dst_port);
        let remote = SocketAddr::new(seg.src, seg.src_port);
        // Only here: an offloaded connection was made by a handshake that passed this check.
        if wire::addr::is_martian(seg.src, seg.src_port, seg.dst, seg.dst_port, &self.cfg.prefixes) {
            tracing::trace!(src = %remote, dst = %local, "martian segment dropped");
            self.stats.count_wire(WireError::Martian);
            return;
        }
        let listening = self.listener.is_connecting(&(local, remote))
            || self
                .cfg
                .listen
                .iter()
                .any(|l| l.port() == local.port() && (l.ip().is_unspecified() || l.ip() == local.ip()));
        let (tx, spare, stats) = (&mut self.tx, &mut self.spare, &mut self.stats);
        let mut push = |r: &SegmentRepr<'_>| tx_push(tx, spare, stats, r);
        let out = if listening {
            self.listener.on_segment(now, (local, remote), seg, raw, &self.cfg.tcp, &mut self.budget, &mut push)
        } else {
            listener::Outcome::Refuse
        };
        match out {
            listener::Outcome::Handled => {}
            listener::Outcome::Dropped(d) => {
                tracing::trace!(remote = %remote, reason = ?d, "segment for the listener dropped");
                self.stats.count_drop(d);
            }
            listener::Outcome::Refuse => {
                if !seg.has(flags::RST) {
                    push(&listener::reset_for(local, remote, seg));
                    self.stats.tcp.out_resets += 1;
                }
            }
            listener::Outcome::Established(n) => {
                let _ = self.offload(now, *n, None, host);
            }
            listener::Outcome::ConnectFailed => {
                tracing::debug!(remote = %remote, "active open reset by the peer");
                self.events.push_back(EngineEvent::ConnectFailed { local, remote, reset: true });
            }
        }
    }

    /// Active open: the host stack connects from `local` to `remote` (SYN now, retransmitted
    /// with backoff); once the SYN-ACK arrives the connection is offloaded like a passive
    /// one (`EngineEvent::Offloaded`), or `EngineEvent::ConnectFailed` says why not.
    pub fn connect(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr) -> Result<(), ApiMisuse> {
        let key = (local, remote);
        let martian = wire::addr::is_martian(local.ip(), local.port(), remote.ip(), remote.port(), &self.cfg.prefixes);
        if martian || local.is_ipv6() != remote.is_ipv6() {
            return Err(ApiMisuse::OffloadRefused);
        }
        if self.lookup(&key).is_some() || self.listener.is_connecting(&key) {
            return Err(ApiMisuse::OffloadRefused);
        }
        let (tx, spare, stats) = (&mut self.tx, &mut self.spare, &mut self.stats);
        let mut push = |r: &SegmentRepr<'_>| tx_push(tx, spare, stats, r);
        self.listener.connect(now, key, &self.cfg.tcp, &mut push);
        Ok(())
    }

    /// Offloads an established connection again after the host uploaded it (terminate,
    /// inspect, give back): `n` is what [`Engine::negotiated`] returned before the terminate,
    /// with RCV.NXT, the window edge and TS.Recent taken from the returned delegated state.
    /// Bytes the terminate handed back as BufferedData belong to the host by then. Fails
    /// (and the peer gets an RST, as for any handshake that cannot be offloaded) when no
    /// connection slot is free or the delivery layer refuses; a 4-tuple that is still
    /// offloaded is refused without touching it.
    pub fn reoffload(&mut self, now: Instant, n: Negotiated, host: &mut dyn ProtocolHost) -> Result<ConnId, ApiMisuse> {
        if let Some(id) = self.lookup(&(n.local, n.remote)) {
            return Err(ApiMisuse::ConnectionExists(id));
        }
        let e = listener::Established {
            negotiated: n,
            peer: TcpOptions::default(),
            buffered: Vec::new(),
            forward: Vec::new(),
            // No BufferedData, so no host NBL is built from this serial.
            serial: 0,
        };
        let id = self.offload(now, e, None, host).ok_or(ApiMisuse::OffloadRefused)?;
        // The delegated RcvWnd may be closed (the old delivery layer was full) while the new
        // one holds nothing: announce the room now. Through `with_conn`, so that a window
        // still below half goes on `window_watch`: `offload` alone never put it there, and a
        // window re-offloaded at 0 stayed 0 whatever the host posted (simulator seed 104990).
        self.with_conn(id, host, |c, cx| c.maybe_window_update(now, cx));
        Ok(id)
    }

    /// Keeps the id of a connection just terminated for its re-offload ([`Engine::reoffload_as`]):
    /// no new connection takes it meanwhile, so everything the host keys by it (its
    /// application record, a file) carries over. False when `id` is not free.
    pub fn hold_id(&mut self, id: ConnId) -> bool {
        match self.free_ids.iter().rposition(|&i| i == id.0) {
            Some(k) => {
                self.free_ids.remove(k);
                self.held_ids.push(id.0);
                true
            }
            None => false,
        }
    }

    /// Gives a held id back (the host ended the connection instead of re-offloading it).
    pub fn release_id(&mut self, id: ConnId) {
        if let Some(k) = self.held_ids.iter().position(|&i| i == id.0) {
            self.held_ids.remove(k);
            self.free_ids.push(id.0);
        }
    }

    /// [`Engine::reoffload`] under the id [`Engine::hold_id`] kept. Fails with
    /// `UnknownConnection` when that id is not held.
    pub fn reoffload_as(
        &mut self,
        now: Instant,
        id: ConnId,
        n: Negotiated,
        host: &mut dyn ProtocolHost,
    ) -> Result<ConnId, ApiMisuse> {
        if let Some(other) = self.lookup(&(n.local, n.remote)) {
            return Err(ApiMisuse::ConnectionExists(other));
        }
        let k = self.held_ids.iter().position(|&i| i == id.0).ok_or(ApiMisuse::UnknownConnection(id))?;
        self.held_ids.remove(k);
        let e = listener::Established {
            negotiated: n,
            peer: TcpOptions::default(),
            buffered: Vec::new(),
            forward: Vec::new(),
            serial: 0,
        };
        let id = self.offload(now, e, Some(id), host).ok_or(ApiMisuse::OffloadRefused)?;
        self.with_conn(id, host, |c, cx| c.maybe_window_update(now, cx));
        Ok(id)
    }

    /// The negotiated state of an offloaded connection, for a host that will terminate and
    /// re-offload it ([`Engine::reoffload`]).
    pub fn negotiated(&self, id: ConnId) -> Option<Negotiated> {
        self.conn(id).map(TcpConn::negotiated)
    }

    fn offload(
        &mut self,
        now: Instant,
        n: listener::Established,
        held: Option<ConnId>,
        host: &mut dyn ProtocolHost,
    ) -> Option<ConnId> {
        let id = match held.or_else(|| self.free_ids.pop().map(ConnId)) {
            Some(i) => i,
            None if self.next_id < self.cfg.max_connections => {
                self.next_id += 1;
                ConnId(self.next_id - 1)
            }
            None => {
                self.refuse_offload(&n);
                return None;
            }
        };
        let state = n.offload_state(&self.cfg.tcp);
        match self.delivery.initiate_offload(now, id, state, host) {
            Ok(_host_nbls) => {}
            Err(_) => {
                self.free_ids.push(id.0);
                self.refuse_offload(&n);
                return None;
            }
        }
        let conn = TcpConn::new(now, id, &n.negotiated, &self.cfg.tcp);
        let idx = id.0 as usize;
        if self.conns.len() <= idx {
            self.conns.resize_with(idx + 1, || None);
        }
        // Timers that start at offload (keep-alive) need a heap entry from the start.
        Self::schedule(&mut self.timers, &conn);
        self.conns[idx] = Some(conn);
        let conns = &self.conns;
        self.table.insert(&Endpoints::new(n.negotiated.local, n.negotiated.remote), id, |i| Self::tuple_in(conns, i));
        self.stats.offloads += 1;
        tracing::debug!(conn = %id, local = %n.negotiated.local, remote = %n.negotiated.remote, "offloaded");
        self.events.push_back(EngineEvent::Offloaded {
            conn: id,
            local: n.negotiated.local,
            remote: n.negotiated.remote,
        });
        // Segments the host received but did not ACK: MiniportTcpOffloadForward.
        for pkt in n.forward {
            if let Ok(seg) = wire::parse_with(&pkt, wire::TcpChecksum::VouchedByKernel) {
                self.with_conn(id, host, |c, cx| c.on_segment(now, &seg, cx));
            }
        }
        Some(id)
    }

    /// A handshake that cannot be offloaded (no connection slot, delivery refused): the host
    /// stack has nowhere to keep it, so the peer gets an RST rather than silence.
    fn refuse_offload(&mut self, n: &listener::Established) {
        tracing::warn!(remote = %n.negotiated.remote, "offload refused (no slot or delivery refused): RST");
        self.stats.offload_failures += 1;
        self.stats.tcp.out_resets += 1;
        let (seq, ack) = (wire::SeqNum(n.negotiated.snd_nxt), wire::SeqNum(n.negotiated.rcv_nxt));
        let r = SegmentRepr::control(n.negotiated.local, n.negotiated.remote, seq, ack, flags::RST | flags::ACK, 0);
        tx_push(&mut self.tx, &mut self.spare, &mut self.stats, &r);
    }

    /// Runs every timer due at `now`: delayed ACKs, FIN retransmission, push timers,
    /// SYN-ACK retransmission.
    pub fn handle_timeout(&mut self, now: Instant, host: &mut dyn ProtocolHost) {
        while let Some(&Reverse((t, idx))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            let id = ConnId(idx);
            let due = self.conn(id).and_then(|c| c.next_deadline());
            match due {
                Some(d) if d <= now => {
                    self.with_conn(id, host, |c, cx| c.on_timer(now, cx));
                    self.reschedule(id);
                }
                Some(_) => self.reschedule(id),
                None => {}
            }
        }
        if self.delivery.poll_timeout().is_some_and(|t| t <= now) {
            self.delivery.handle_timeout(now, host);
            self.window_updates(now, host);
        }
        self.pump(now, host);
        let (tx, spare, stats) = (&mut self.tx, &mut self.spare, &mut self.stats);
        let mut push = |r: &SegmentRepr<'_>| tx_push(tx, spare, stats, r);
        self.listener.on_timer(now, &self.cfg.tcp, &mut push);
        for (local, remote) in std::mem::take(&mut self.listener.connect_timeouts) {
            self.events.push_back(EngineEvent::ConnectFailed { local, remote, reset: false });
        }
    }

    /// What the host did inside upcalls on the send side: transmits for connections whose
    /// send stream grew, and performs the disconnects it asked for (after the sends it made
    /// before them). Runs until nothing new was queued.
    fn pump(&mut self, now: Instant, host: &mut dyn ProtocolHost) {
        for _ in 0..64 {
            let mut ready = std::mem::take(&mut self.send_ready);
            self.delivery.take_send_ready(&mut ready);
            let mut discs = Vec::new();
            self.delivery.take_nested_disconnects(&mut discs);
            if ready.is_empty() && discs.is_empty() {
                self.send_ready = ready;
                return;
            }
            for &id in &ready {
                self.with_conn(id, host, |c, cx| c.transmit(now, cx));
            }
            ready.clear();
            self.send_ready = ready;
            for (conn, kind, nbl) in discs {
                if let Err(rej) = self.disconnect_now(now, conn, kind, nbl, host) {
                    self.rejected.push(rej);
                }
            }
        }
    }

    /// Sends and disconnects the host made inside upcalls that could not be taken (unknown
    /// connection, a send after its graceful disconnect), handed back with the reason.
    pub fn take_rejected(&mut self) -> Vec<PostRejected> {
        let mut v = std::mem::take(&mut self.rejected);
        v.extend(self.delivery.take_rejected_sends());
        v
    }

    fn disconnect_now(
        &mut self,
        now: Instant,
        conn: ConnId,
        kind: DisconnectKind,
        nbl: NblChain,
        host: &mut dyn ProtocolHost,
    ) -> Result<NdisStatus, PostRejected> {
        if self.conn(conn).is_none() {
            return Err(PostRejected { nbls: nbl, error: ApiMisuse::UnknownConnection(conn) });
        }
        let r = self.delivery.disconnect(now, conn, kind, nbl, host)?;
        match kind {
            // R-DSC-2: data, then FIN, as the window allows.
            DisconnectKind::Graceful => self.with_conn(conn, host, |c, cx| c.transmit(now, cx)),
            // R-DSC-4: the delivery layer failed the sends and stopped receiving; RST now.
            DisconnectKind::Abortive => self.with_conn(conn, host, |c, cx| {
                if !c.is_stopped() {
                    c.abort(now, cx)
                }
            }),
        };
        Ok(r)
    }

    /// Sends the ACKs [`TcpConfig::defer_acks`] held back (one per connection, carrying the
    /// newest RCV.NXT and window). Drivers call it when their read queue is empty, before
    /// [`Engine::poll_transmit`]; without `defer_acks` there is never anything to flush.
    pub fn flush_acks(&mut self, now: Instant, host: &mut dyn ProtocolHost) {
        if self.ack_list.is_empty() {
            return;
        }
        let list = std::mem::take(&mut self.ack_list);
        for &id in &list {
            self.with_conn(id, host, |c, cx| {
                c.on_ack_list = false;
                c.flush_ack(now, cx);
            });
        }
        // Keep the allocation for the next round.
        let mut list = list;
        list.clear();
        if self.ack_list.is_empty() {
            self.ack_list = list;
        }
    }

    /// Sends window updates for connections whose window had closed below half and has
    /// now reopened (the host posted or consumed).
    fn window_updates(&mut self, now: Instant, host: &mut dyn ProtocolHost) {
        let watch = std::mem::take(&mut self.window_watch);
        for id in watch {
            let still = self.with_conn(id, host, |c, cx| {
                c.maybe_window_update(now, cx);
                let still = c.rcv_wnd() < c.max_window(cx.cfg) / 2 && !c.is_stopped();
                c.on_window_watch = still;
                still
            });
            // `with_conn` does not re-add a connection whose flag `still` left set.
            if still == Some(true) {
                self.window_watch.push(id);
            }
        }
    }

    /// Stops listening: every half-open connection (SYN-RECEIVED) is closed with an RST, and
    /// from now on a SYN draws an RST as on a closed port; offloaded connections are not
    /// touched (the host closes them). For a host shutting down. Returns the half-open
    /// connections reset.
    pub fn stop_listening(&mut self) -> usize {
        self.cfg.listen.clear();
        let (tx, spare, stats) = (&mut self.tx, &mut self.spare, &mut self.stats);
        let mut push = |r: &SegmentRepr<'_>| {
            stats.tcp.out_resets += 1;
            tx_push(tx, spare, stats, r)
        };
        self.listener.reset_all(&mut push)
    }

    /// The engine-wide budget of replies to junk, with what it allowed (for invariants).
    pub fn junk_budget(&self) -> &crate::tcp::ReplyBudget {
        &self.budget
    }

    /// Half-open connections held now, and the bytes their table takes (bounded by
    /// [`ListenerConfig::max_embryos`] whatever the SYN rate: beyond it, SYN cookies).
    pub fn half_open(&self) -> (usize, usize) {
        (self.listener.half_open(), self.listener.memory())
    }

    /// The wire address of an offloaded connection.
    pub fn tuple(&self, id: ConnId) -> Option<FourTuple> {
        self.conn(id).map(|c| (c.local(), c.remote()))
    }
}

impl<D: InitiateOffload + ReceiveInput + SendInput> OffloadTarget for Engine<D> {
    fn receive(
        &mut self,
        now: Instant,
        conn: ConnId,
        nbls: NblChain,
        host: &mut dyn ProtocolHost,
    ) -> Result<NdisStatus, PostRejected> {
        let r = self.delivery.receive(now, conn, nbls, host);
        self.window_updates(now, host);
        self.pump(now, host);
        r
    }

    fn receive_return(&mut self, now: Instant, nbls: NblChain, host: &mut dyn ProtocolHost) -> NdisStatus {
        let r = self.delivery.receive_return(now, nbls, host);
        self.window_updates(now, host);
        self.pump(now, host);
        r
    }

    fn disconnect(
        &mut self,
        now: Instant,
        conn: ConnId,
        kind: DisconnectKind,
        nbl: NblChain,
        host: &mut dyn ProtocolHost,
    ) -> Result<NdisStatus, PostRejected> {
        let r = self.disconnect_now(now, conn, kind, nbl, host);
        self.pump(now, host);
        r
    }

    fn send(
        &mut self,
        now: Instant,
        conn: ConnId,
        nbls: NblChain,
        host: &mut dyn ProtocolHost,
    ) -> Result<NdisStatus, PostRejected> {
        if self.conn(conn).is_none() {
            return Err(PostRejected { nbls, error: ApiMisuse::UnknownConnection(conn) });
        }
        let r = self.delivery.send(now, conn, nbls, host)?;
        self.with_conn(conn, host, |c, cx| c.transmit(now, cx));
        self.pump(now, host);
        Ok(r)
    }

    fn terminate_offload(
        &mut self,
        now: Instant,
        conn: ConnId,
        host: &mut dyn ProtocolHost,
    ) -> Result<TcpDelegatedState, ApiMisuse> {
        // R-TRM-2: an ACK that is due goes out before the state leaves.
        self.with_conn(conn, host, |c, cx| {
            if c.ack_due() && !c.is_stopped() && c.state != TcpConnectionState::Closed {
                c.send_ack(now, cx);
            }
        })
        .ok_or(ApiMisuse::UnknownConnection(conn))?;
        let c = self.conns.get_mut(conn.0 as usize).and_then(Option::take).ok_or(ApiMisuse::UnknownConnection(conn))?;
        let mut d = match self.delivery.terminate_offload(now, conn, host) {
            Ok(d) => d,
            Err(e) => {
                self.conns[conn.0 as usize] = Some(c);
                return Err(e);
            }
        };
        d.state = Some(c.state);
        d.rcv_nxt = c.rcv_nxt();
        // Unacknowledged send bytes went back to the host in their NBLs: it sends them again
        // from SND.UNA (spec §8 A43).
        d.snd_una = c.snd_una();
        d.snd_nxt = c.snd_una();
        d.rcv_wnd = c.rcv_wnd();
        d.ts_recent = c.ts_recent().unwrap_or(0);
        self.table.remove(c.endpoints(), conn);
        self.stats.add_conn(&c.counters);
        self.free_ids.push(conn.0);
        self.window_watch.retain(|&w| w != conn);
        tracing::debug!(conn = %conn, state = ?d.state, rcv_nxt = d.rcv_nxt, "terminated");
        self.events.push_back(EngineEvent::Terminated { conn });
        Ok(d)
    }

    fn handle_timeout(&mut self, now: Instant, host: &mut dyn ProtocolHost) {
        Engine::handle_timeout(self, now, host)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Engine::poll_timeout(self)
    }

    fn push_timer(&self, conn: ConnId) -> Option<Instant> {
        self.delivery.push_timer(conn)
    }
}

/// Hashes a 4-tuple with a keyed hasher (for ISNs).
pub(crate) fn tuple_hash(state: &ahash::RandomState, t: &FourTuple) -> u64 {
    state.hash_one(t)
}

/// Options the host stack puts on its SYN-ACK.
pub(crate) fn synack_options(cfg: &TcpConfig, peer: &TcpOptions, tsval: u32) -> TcpOptions {
    TcpOptions {
        mss: Some(cfg.mss),
        window_scale: peer.window_scale.map(|_| cfg.window_scale()),
        sack_permitted: peer.sack_permitted,
        sack: None,
        timestamps: peer.timestamps.map(|(v, _)| (tsval, v)),
    }
}
