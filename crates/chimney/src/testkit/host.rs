//! A configurable host application: the "host stack + application" side of the contract.
//!
//! [`AppHost`] implements [`ProtocolHost`] with per-connection policies (how many receive
//! requests it keeps posted, their sizes and MDL counts, push or non-push, pre-filled bytes,
//! zero-byte posts, re-posting from inside completions and indications, accepting, partly
//! accepting or refusing indications) and records the stream it receives. Tests, the demo and
//! later the simulator drive targets with it.

use std::collections::HashMap as StdHashMap;

/// The host's maps, keyed by its own small ids: ahash with fixed keys (nothing here is keyed
/// by a peer), far cheaper than SipHash, which was a tenth of the engine benchmark's time.
type HashMap<K, V> = StdHashMap<K, V, std::hash::BuildHasherDefault<ahash::AHasher>>;

use super::digest::{HashKind, StreamDigest};

use crate::contract::{ConnId, IndicateReturn, NestedCalls, OffloadTarget, ProtocolHost};
use crate::ndis::{
    DisconnectKind, Mdl, NblChain, NblId, NdisStatus, NetBuffer, NetBufferList, PoolTag, TcpOffloadEvent,
    TcpUploadReason,
};
use crate::time::Instant;

/// A consumer of received bytes, called per chunk in stream order.
pub type Sink = Box<dyn FnMut(ConnId, &[u8]) + Send>;

/// How a connection ended, as the host application saw it ([`AppHost::react`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostEnd {
    /// The peer's FIN arrived (TcpIndicateDisconnect), then the target asked to upload.
    Fin,
    /// The peer reset the connection (TcpIndicateAbort).
    Rst,
    /// The peer went silent: keep-alive or retransmission gave up (TimeoutExpiration).
    Timeout,
    /// The target asked to upload for another reason.
    Upload(TcpUploadReason),
}

/// What the application does with an indication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndicationPolicy {
    /// Consume everything (SUCCESS); keep the NBL until returned.
    AcceptAll,
    /// Consume at most this many bytes (PARTIALLY_ACCEPTED when fewer than offered).
    AcceptUpTo(usize),
    /// Consume nothing (DATA_NOT_ACCEPTED).
    Refuse,
}

/// What the application sends on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SendPolicy {
    /// Nothing (a receive-only application).
    #[default]
    None,
    /// Every byte received is sent back (an echo server); on the peer's FIN, the rest, then
    /// a graceful disconnect.
    Echo,
    /// This many bytes of [`source_pattern`], then a graceful disconnect.
    Source(u64),
    /// A minimal HTTP/1.1 server: `GET /N` is answered with N bytes of [`source_pattern`];
    /// keep-alive (HTTP/1.1's default, HTTP/1.0 on request), pipelined requests answered in
    /// order, `Connection: close` honoured; anything else gets 400, 404 or 405 and a close.
    Http,
}

/// The most bytes of request head the HTTP server keeps (a longer head is answered 431).
const HTTP_MAX_HEAD: usize = 16 * 1024;

/// What an HTTP connection has to send, in order: response heads, bodies (made lazily from
/// the pattern), and the close after a response that ends the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HttpOut {
    Bytes(Vec<u8>),
    Pattern { at: u64, left: u64 },
    Close,
}

/// One parsed request head: what to answer, and whether the connection stays open.
fn http_answer(head: &[u8]) -> (Vec<HttpOut>, bool) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let request = lines.next().unwrap_or("");
    let mut parts = request.split(' ');
    let (method, target, version) =
        (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut close = version != "HTTP/1.1";
    for l in lines {
        let Some((k, v)) = l.split_once(':') else { continue };
        if k.trim().eq_ignore_ascii_case("connection") {
            let v = v.trim().to_ascii_lowercase();
            if v.contains("close") {
                close = true;
            } else if v.contains("keep-alive") {
                close = false;
            }
        }
    }
    let reply = |code: &str, body: &str| {
        let head = format!(
            "HTTP/1.1 {code}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        (vec![HttpOut::Bytes(head.into_bytes()), HttpOut::Close], false)
    };
    if !version.starts_with("HTTP/1.") || target.is_empty() || parts.next().is_some() {
        return reply("400 Bad Request", "bad request\n");
    }
    if method != "GET" && method != "HEAD" {
        return reply("405 Method Not Allowed", "GET /N answers N bytes\n");
    }
    let Some(n) = target.strip_prefix('/').and_then(|t| t.parse::<u64>().ok()) else {
        return reply("404 Not Found", "GET /N answers N bytes\n");
    };
    let conn = if close { "close" } else { "keep-alive" };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {n}\r\nConnection: {conn}\r\n\r\n"
    );
    let mut out = vec![HttpOut::Bytes(head.into_bytes())];
    if method == "GET" && n > 0 {
        out.push(HttpOut::Pattern { at: 0, left: n });
    }
    if close {
        out.push(HttpOut::Close);
    }
    (out, !close)
}

/// Byte `offset` of the stream `serve --source` sends and `connect --echo-check` expects:
/// a simple seeded sequence both ends can produce without coordination.
pub fn source_pattern(offset: u64, out: &mut [u8]) {
    // Eight bytes per multiply: byte `o` is byte `o % 8` (little-endian) of word `o / 8`.
    let word = |w: u64| (w.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5DEE_CE66_D1CE_4E5B).to_le_bytes();
    // The head up to a word boundary, then whole words (the compiler vectorises this loop:
    // the pattern costs about what a copy does), then the tail.
    let k = (offset % 8) as usize;
    let head = if k == 0 { 0 } else { (8 - k).min(out.len()) };
    if head > 0 {
        out[..head].copy_from_slice(&word(offset / 8)[k..k + head]);
    }
    let mut w = (offset + head as u64) / 8;
    let mut words = out[head..].chunks_exact_mut(8);
    for c in &mut words {
        c.copy_from_slice(&word(w));
        w += 1;
    }
    let tail = words.into_remainder();
    let n = tail.len();
    tail.copy_from_slice(&word(w)[..n]);
}

/// `bytes` as `n` MDLs of uneven sizes (each cut off the tail: one copy of what is cut), or
/// with `n == 0` as two below 4 KiB and one above. No MDL is empty.
fn split_mdls(mut bytes: Vec<u8>, n: usize) -> Vec<Mdl> {
    let n = match n {
        0 if bytes.len() < 4096 => 2,
        0 => 1,
        n => n,
    }
    .min(bytes.len().max(1));
    let mut tails = Vec::with_capacity(n);
    for k in (1..n).rev() {
        // Cut points at the squares of k/n: short MDLs at the head, long ones at the tail.
        let at = (bytes.len() * k * k / (n * n)).max(k).min(bytes.len() - 1);
        if at == 0 || at >= bytes.len() {
            continue;
        }
        tails.push(Mdl::from_bytes(bytes.split_off(at)));
    }
    let mut mdls = vec![Mdl::from_bytes(bytes)];
    mdls.extend(tails.into_iter().rev());
    mdls
}

/// Bytes of idle receive requests the application keeps for reuse at most; beyond, a
/// completed request is freed.
pub const IDLE_BYTES: usize = 64 << 20;

/// Send NBLs an application posts in one call at most (well inside what a trace line may
/// list, `contract::schema::MAX_NBLS`).
const MAX_SENDS_PER_CALL: usize = 1024;

/// How an application posts and consumes on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPolicy {
    /// Receive requests kept outstanding (0 = never post: indications only).
    pub keep_posted: usize,
    /// Bytes per receive request (0 = zero-byte requests).
    pub post_size: usize,
    /// MDLs per request (1..=4 typical); the bytes are split across them.
    pub mdls: usize,
    /// Non-push mode (`TcpReceiveNoPush`).
    pub no_push: bool,
    /// Bytes the host claims to have pre-filled (`TcpReceiveBytesTransferred`, A7).
    pub prefilled: usize,
    /// Re-post a completed request from inside `receive_complete` (the seed's re-entrancy case).
    pub repost_in_completion: bool,
    /// After each indication, post one request from inside it (indicate-and-post).
    pub post_in_indication: bool,
    /// What to do with indications.
    pub indication: IndicationPolicy,
    /// Return accepted indication NBLs from inside the next upcall rather than at top level.
    pub return_in_upcall: bool,
    /// What the application sends.
    pub send: SendPolicy,
    /// Bytes per send NBL.
    pub send_size: usize,
    /// MDLs per send NBL (0: two below 4 KiB, so the send path always crosses an MDL
    /// boundary somewhere, and one above); the bytes are split unevenly across them.
    pub send_mdls: usize,
    /// Send bytes posted and not yet completed at most: an echo application stops taking
    /// data beyond it, so a peer that does not read closes its own window (backpressure).
    pub send_window: usize,
    /// Posted buffers that follow demand: `None` is the fixed policy (`keep_posted` requests
    /// of `post_size` from the start); with it those two are the most a connection gets.
    pub grow: Option<PostGrowth>,
}

/// How posted buffers follow a connection's demand, the way Linux autotunes a socket's
/// receive buffer: a connection starts with no buffer of its own (what arrives is indicated
/// into the target's shared pool and consumed there), gets requests once it has shown it
/// carries more than a short exchange, and larger ones each time a request comes back full
/// (the buffers, not PSH or the timer, set the pace). Thousands of short connections then
/// cost no posted memory at all, and a bulk one reaches the full size within a few requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostGrowth {
    /// Bytes a connection takes through indications before it posts requests.
    pub post_after: u64,
    /// Size of its first requests; doubled each time one comes back full, up to `post_size`.
    pub first_size: usize,
}

impl Default for AppPolicy {
    fn default() -> Self {
        AppPolicy {
            keep_posted: 4,
            post_size: 64 * 1024,
            mdls: 1,
            no_push: false,
            prefilled: 0,
            repost_in_completion: true,
            post_in_indication: false,
            indication: IndicationPolicy::AcceptAll,
            return_in_upcall: false,
            send: SendPolicy::None,
            send_size: 64 * 1024,
            send_mdls: 0,
            send_window: 1 << 20,
            grow: None,
        }
    }
}

/// What the application saw on one connection.
#[derive(Debug, Clone, Default)]
pub struct AppConn {
    /// Digest of the received stream (in the host's [`AppHost::hash`]).
    pub digest: StreamDigest,
    /// The received stream, in order (when recording).
    pub stream: Vec<u8>,
    /// Bytes received (completions + consumed indications).
    pub bytes: u64,
    /// Completed NBLs.
    pub completions: u64,
    /// Completed NBLs by status.
    pub statuses: Vec<(NdisStatus, u64)>,
    /// Indications offered.
    pub indications: u64,
    /// Indications refused in whole or part.
    pub refusals: u64,
    /// Events seen, in order.
    pub events: Vec<TcpOffloadEvent>,
    /// Requests posted and not yet completed.
    pub outstanding: usize,
    /// Send bytes the peer acknowledged (TcpOffloadBytesTransferred of completed sends).
    pub sent: u64,
    /// Digest of the bytes posted as sends, in order.
    pub sent_digest: StreamDigest,
    /// Send bytes posted.
    pub send_posted: u64,
    /// Send bytes posted and not completed.
    pub send_outstanding: u64,
    /// Send NBLs completed, by status.
    pub send_statuses: Vec<(NdisStatus, u64)>,
    /// Received bytes waiting to be echoed.
    pub to_echo: Vec<u8>,
    /// HTTP: request bytes not yet parsed.
    http_in: Vec<u8>,
    /// HTTP: what is to be sent, in order.
    http_out: std::collections::VecDeque<HttpOut>,
    /// HTTP: requests answered.
    pub http_requests: u64,
    /// HTTP: no more requests are read (a close was answered, or the head was bad).
    http_done: bool,
    /// Bytes of sends completed UPLOAD_IN_PROGRESS that the peer never acknowledged, by their
    /// offset in what the application sends: sent again first, lowest offset first, once the
    /// connection is offloaded again (a resent NBL may itself come back: its bytes go back
    /// in their place, not behind newer ones).
    resend: std::collections::BTreeMap<u64, Vec<u8>>,
    /// Where each outstanding send NBL's bytes start in what the application sends.
    send_at: HashMap<NblId, u64>,
    /// The application will disconnect once everything it has to send is posted.
    pub closing: bool,
    /// A graceful disconnect was posted.
    pub disconnect_posted: bool,
    /// How the disconnect completed.
    pub disconnect_status: Option<NdisStatus>,
    /// With a growing policy ([`PostGrowth`]): the size of the requests posted now (0 before
    /// the first).
    pub post_size_now: usize,
}

impl core::fmt::Debug for AppHost {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AppHost").field("conns", &self.conns.len()).field("record", &self.record).finish()
    }
}

impl AppConn {
    fn count_status(&mut self, s: NdisStatus) {
        match self.statuses.iter_mut().find(|(k, _)| *k == s) {
            Some((_, n)) => *n += 1,
            None => self.statuses.push((s, 1)),
        }
    }

    /// Completions seen with status `s`.
    pub fn with_status(&self, s: NdisStatus) -> u64 {
        self.statuses.iter().find(|(k, _)| *k == s).map_or(0, |(_, n)| *n)
    }

    /// Send completions seen with status `s`.
    pub fn sends_with_status(&self, s: NdisStatus) -> u64 {
        self.send_statuses.iter().find(|(k, _)| *k == s).map_or(0, |(_, n)| *n)
    }
}

/// The host application: policies and records per connection, plus its NBL allocator.
#[derive(Default)]
pub struct AppHost {
    policies: HashMap<ConnId, AppPolicy>,
    /// The policy of a connection that has none set (yet): data indicated before the driver
    /// saw the offload follows it too.
    default_policy: AppPolicy,
    conns: HashMap<ConnId, AppConn>,
    /// Whether to keep the received bytes (tests) or only count them.
    pub record: bool,
    /// The digest kept of each stream received and sent ([`HashKind::None`]: none).
    pub hash: HashKind,
    /// Called with every chunk of received bytes, in stream order (e.g. to write a file).
    pub sink: Option<Sink>,
    serial: u64,
    held: NblChain,
    /// Completed requests not posted again, by (bytes, MDLs), shared by every connection:
    /// re-armed for the next post without being cleared (a placement writes only what it
    /// fills), up to [`IDLE_BYTES`] in all.
    idle: HashMap<(usize, usize), NblChain>,
    idle_bytes: usize,
    events: std::collections::VecDeque<(ConnId, TcpOffloadEvent)>,
}

impl AppHost {
    /// A host that records received streams (and keeps no digest).
    pub fn new() -> AppHost {
        AppHost { record: true, hash: HashKind::None, ..AppHost::default() }
    }

    /// Sets the policy of `conn`.
    pub fn set_policy(&mut self, conn: ConnId, policy: AppPolicy) {
        self.policies.insert(conn, policy);
        self.conns.entry(conn).or_default();
    }

    /// The policy of `conn` (the default policy if unset).
    pub fn policy(&self, conn: ConnId) -> AppPolicy {
        self.policy_ref(conn).clone()
    }

    fn policy_ref(&self, conn: ConnId) -> &AppPolicy {
        self.policies.get(&conn).unwrap_or(&self.default_policy)
    }

    /// The policy of every connection without one of its own (e.g. before the driver has
    /// seen its offload: an indication can come first).
    pub fn set_default_policy(&mut self, policy: AppPolicy) {
        self.default_policy = policy;
    }

    /// What the application saw on `conn`.
    pub fn conn(&self, conn: ConnId) -> AppConn {
        self.conns.get(&conn).cloned().unwrap_or_default()
    }

    /// Allocates a new receive request under `policy` (host pool ids).
    pub fn new_request(&mut self, policy: &AppPolicy) -> NetBufferList {
        self.request_of(policy.post_size, policy)
    }

    /// A receive request of `size` bytes under `policy`: an idle one of that shape, re-armed,
    /// or a new one.
    fn request_of(&mut self, size: usize, policy: &AppPolicy) -> NetBufferList {
        let mdls = policy.mdls.max(1);
        if let Some(mut n) = self.idle.get_mut(&(size, mdls)).and_then(|c| c.pop_front()) {
            self.idle_bytes -= size;
            Self::arm(&mut n, policy);
            return n;
        }
        self.serial += 1;
        let id = NblId::new(PoolTag::Host, self.serial);
        let base = size / mdls;
        let sizes: Vec<usize> = (0..mdls).map(|i| if i == 0 { base + size % mdls } else { base }).collect();
        let mut nbl = NetBufferList::new(id, NetBuffer::new(sizes.iter().map(|&n| Mdl::zeroed(n)).collect()));
        Self::arm(&mut nbl, policy);
        nbl
    }

    /// Re-arms a completed NBL for another post: whole chain as free room, slots rewritten.
    fn arm(nbl: &mut NetBufferList, policy: &AppPolicy) {
        let len = nbl.net_buffer().chain_len();
        let _: Result<(), _> = nbl.net_buffer_mut().reset_used_space(0, len);
        nbl.status = NdisStatus::Success;
        nbl.set_tcp_offload_bytes_transferred(0);
        nbl.set_tcp_receive_no_push(policy.no_push);
        nbl.set_tcp_receive_bytes_transferred(policy.prefilled);
    }

    /// Requests `conn` keeps posted now and their size: the policy's, or with [`PostGrowth`]
    /// none until the connection has taken `post_after` bytes, then `keep_posted` of the size
    /// it has grown to.
    fn wanted(&self, conn: ConnId, policy: &AppPolicy) -> (usize, usize) {
        let Some(g) = policy.grow else {
            return (policy.keep_posted, policy.post_size);
        };
        let c = self.conns.get(&conn);
        if c.map_or(0, |c| c.bytes) < g.post_after && c.map_or(0, |c| c.post_size_now) == 0 {
            return (0, 0);
        }
        let now = c.map_or(0, |c| c.post_size_now).max(g.first_size).min(policy.post_size);
        (policy.keep_posted, now)
    }

    /// Bytes of completed requests kept for reuse (by any connection).
    pub fn idle_bytes(&self) -> usize {
        self.idle_bytes
    }

    /// Keeps a completed request for reuse (any connection's), unless the idle ones already
    /// hold [`IDLE_BYTES`].
    fn put_idle(&mut self, mut nbls: NblChain) {
        while let Some(n) = nbls.pop_front() {
            let key = (n.net_buffer().chain_len(), n.net_buffer().mdl_chain().len());
            if self.idle_bytes + key.0 <= IDLE_BYTES {
                self.idle_bytes += key.0;
                self.idle.entry(key).or_default().push_back(n);
            }
        }
    }

    /// Builds the requests needed to bring `conn` back to the number it keeps posted.
    pub fn top_up_chain(&mut self, conn: ConnId) -> NblChain {
        let policy = self.policy(conn);
        let (keep, size) = self.wanted(conn, &policy);
        let outstanding = self.conns.get(&conn).map_or(0, |c| c.outstanding);
        let mut chain = NblChain::new();
        for _ in outstanding..keep {
            chain.push_back(self.request_of(size, &policy));
        }
        let c = self.conns.entry(conn).or_default();
        c.outstanding += chain.len();
        if policy.grow.is_some() && !chain.is_empty() {
            c.post_size_now = size;
        }
        chain
    }

    /// Posts up to `keep_posted` requests on `conn` through `target` (top level).
    pub fn top_up(
        &mut self,
        now: Instant,
        conn: ConnId,
        target: &mut dyn OffloadTarget,
    ) -> Result<(), crate::contract::ApiMisuse> {
        let chain = self.top_up_chain(conn);
        if chain.is_empty() {
            return Ok(());
        }
        match target.receive(now, conn, chain, self) {
            Ok(_) => Ok(()),
            Err(rej) => {
                self.conns.entry(conn).or_default().outstanding -= rej.nbls.len();
                Err(rej.error)
            }
        }
    }

    /// Posts one zero-byte request on `conn` (top level): Winsock's "tell me when there is
    /// data". An application that refused an indication and posts nothing else gets the
    /// kept data indicated again this way (a post re-enables indications).
    pub fn post_zero_byte(
        &mut self,
        now: Instant,
        conn: ConnId,
        target: &mut dyn OffloadTarget,
    ) -> Result<(), crate::contract::ApiMisuse> {
        let policy = AppPolicy { post_size: 0, mdls: 1, ..self.policy(conn) };
        let mut chain = NblChain::new();
        chain.push_back(self.new_request(&policy));
        self.conns.entry(conn).or_default().outstanding += 1;
        match target.receive(now, conn, chain, self) {
            Ok(_) => Ok(()),
            Err(rej) => {
                self.conns.entry(conn).or_default().outstanding -= rej.nbls.len();
                Err(rej.error)
            }
        }
    }

    /// Takes the accepted indication NBLs the application holds (for a caller that returns
    /// them itself, e.g. through a wrapping host).
    pub fn take_held(&mut self) -> NblChain {
        self.held.take()
    }

    /// Returns every accepted indication NBL held by the application (top level).
    pub fn return_held(&mut self, now: Instant, target: &mut dyn OffloadTarget) {
        let held = self.held.take();
        if !held.is_empty() {
            target.receive_return(now, held, self);
        }
    }

    /// Consumes the BufferedData handed back by a terminate as the end of `conn`'s stream
    /// (the host copies it to the application) and keeps the NBLs to return them.
    pub fn take_uploaded(&mut self, conn: ConnId, nbls: NblChain) {
        for n in nbls.iter() {
            let nb = n.net_buffer();
            self.take_bytes(conn, nb, nb.data_offset(), nb.data_length());
        }
        self.hold(nbls);
    }

    /// Hands `nbls` (e.g. BufferedData from a terminate) to the application's held set, to be
    /// returned with [`AppHost::return_held`].
    pub fn hold(&mut self, mut nbls: NblChain) {
        self.held.append(&mut nbls);
    }

    fn take_bytes(&mut self, conn: ConnId, nb: &NetBuffer, start: usize, len: usize) {
        let (record, hash) = (self.record, self.hash);
        let send = self.policy_ref(conn).send;
        let c = self.conns.entry(conn).or_default();
        match send {
            SendPolicy::Echo => nb.copy_out(start, len, &mut c.to_echo),
            SendPolicy::Http if !c.http_done => {
                nb.copy_out(start, len, &mut c.http_in);
                Self::http_parse(c);
            }
            _ => {}
        }
        c.bytes += len as u64;
        if record {
            nb.copy_out(start, len, &mut c.stream);
        }
        if hash != HashKind::None || self.sink.is_some() {
            for s in nb.slices(start, len) {
                c.digest.update(hash, s);
                if let Some(sink) = self.sink.as_mut() {
                    sink(conn, s);
                }
            }
        }
    }

    /// Bytes the host stack received for `conn` itself while the connection was uploaded
    /// (the software path behind the target): counted, hashed and passed to the sink like
    /// delivered bytes.
    pub fn receive_host_path(&mut self, conn: ConnId, bytes: &[u8]) {
        let (record, hash) = (self.record, self.hash);
        let send = self.policy_ref(conn).send;
        let c = self.conns.entry(conn).or_default();
        match send {
            SendPolicy::Echo => c.to_echo.extend_from_slice(bytes),
            SendPolicy::Http if !c.http_done => {
                c.http_in.extend_from_slice(bytes);
                Self::http_parse(c);
            }
            _ => {}
        }
        c.bytes += bytes.len() as u64;
        if record {
            c.stream.extend_from_slice(bytes);
        }
        c.digest.update(hash, bytes);
        if let Some(sink) = self.sink.as_mut() {
            sink(conn, bytes);
        }
    }

    /// Events indicated since the last call, in order (drivers react to them).
    pub fn take_event(&mut self) -> Option<(ConnId, TcpOffloadEvent)> {
        self.events.pop_front()
    }

    /// The host application's reaction to the events the target raised since the last call,
    /// written once for the Linux driver and the simulator: TcpIndicateDisconnect (the peer's
    /// FIN) is answered with a graceful disconnect; TcpIndicateAbort and upload requests end
    /// the connection. `seen` is called with every event, and with how the connection ended
    /// when it did (the caller then terminates it).
    pub fn react(
        &mut self,
        now: Instant,
        target: &mut dyn OffloadTarget,
        seen: &mut dyn FnMut(ConnId, TcpOffloadEvent, Option<HostEnd>),
    ) {
        while let Some((conn, ev)) = self.take_event() {
            let end = match ev {
                TcpOffloadEvent::Disconnect => {
                    if self.policy(conn).send == SendPolicy::None {
                        let _ = target.disconnect(now, conn, DisconnectKind::Graceful, NblChain::new(), self);
                    } else {
                        // The rest of what it sends, then FIN.
                        self.conns.entry(conn).or_default().closing = true;
                        self.pump_sends(now, conn, target);
                    }
                    None
                }
                TcpOffloadEvent::Abort => Some(HostEnd::Rst),
                TcpOffloadEvent::Retrieve(why) => {
                    let fin = self.conns.get(&conn).is_some_and(|c| c.events.contains(&TcpOffloadEvent::Disconnect));
                    Some(match (fin, why) {
                        // Our FIN was never acknowledged: not a clean close, whoever began it.
                        (_, TcpUploadReason::TimeoutExpiration) => HostEnd::Timeout,
                        (true, _) => HostEnd::Fin,
                        (false, why) => HostEnd::Upload(why),
                    })
                }
                _ => None,
            };
            seen(conn, ev, end);
        }
    }

    /// Whether the application holds indicated NBLs it has not returned.
    pub fn holds_indications(&self) -> bool {
        !self.held.is_empty()
    }

    /// The digest ([`AppHost::hash`]) of everything received on `conn` so far.
    pub fn digest(&self, conn: ConnId) -> Vec<u8> {
        self.conns.get(&conn).map_or_else(|| self.hash.of(&[]), |c| c.digest.finish(self.hash))
    }

    /// Gives a connection back the record [`AppHost::forget`] returned (a host that offloads
    /// it again: what it still has to send goes on).
    pub fn restore(&mut self, conn: ConnId, record: AppConn) {
        self.conns.insert(conn, record);
    }

    /// Forgets a connection's record (after it ended), returning it.
    pub fn forget(&mut self, conn: ConnId) -> AppConn {
        self.policies.remove(&conn);
        self.conns.remove(&conn).unwrap_or_default()
    }
}

/// An application ([`AppHost`] for everything received) that records every send completion
/// (id, status, bytes transferred) and the disconnect's status instead of acting on them:
/// what tests of the send path assert on.
#[derive(Default)]
pub struct SendRecorder {
    /// The receiving application.
    pub app: AppHost,
    /// Every send NBL completed, in completion order.
    pub done: Vec<(NblId, NdisStatus, usize)>,
    /// How the disconnect completed, once it did.
    pub disconnected: Option<NdisStatus>,
}

impl ProtocolHost for SendRecorder {
    fn receive_complete(&mut self, c: ConnId, n: NblChain, nested: &mut NestedCalls) {
        self.app.receive_complete(c, n, nested)
    }
    fn receive_indicate(&mut self, c: ConnId, n: NblChain, s: NdisStatus, nested: &mut NestedCalls) -> IndicateReturn {
        self.app.receive_indicate(c, n, s, nested)
    }
    fn event_indicate(&mut self, c: ConnId, e: crate::ndis::TcpOffloadEvent, nested: &mut NestedCalls) {
        self.app.event_indicate(c, e, nested)
    }
    fn send_complete(&mut self, _c: ConnId, nbls: NblChain, _nested: &mut NestedCalls) {
        for n in nbls.iter() {
            self.done.push((n.id(), n.status, n.tcp_offload_bytes_transferred()));
        }
    }
    fn disconnect_complete(&mut self, _c: ConnId, _nbl: NblChain, status: NdisStatus, _nested: &mut NestedCalls) {
        self.disconnected = Some(status);
    }
}

impl ProtocolHost for AppHost {
    fn receive_complete(&mut self, conn: ConnId, nbls: NblChain, nested: &mut NestedCalls) {
        let policy = self.policy(conn);
        let mut nbls = nbls;
        let mut repost = NblChain::new();
        while !nbls.is_empty() {
            let mut one = nbls.pop_front_chain();
            let Some(nbl) = one.front_mut() else { break };
            let n = nbl.tcp_offload_bytes_transferred().min(nbl.net_buffer().data_offset());
            let start = nbl.net_buffer().data_offset() - n;
            let status = nbl.status;
            self.take_bytes(conn, nbl.net_buffer(), start, n);
            let cap = nbl.net_buffer().chain_len();
            let c = self.conns.entry(conn).or_default();
            c.completions += 1;
            c.outstanding = c.outstanding.saturating_sub(1);
            c.count_status(status);
            let live = status == NdisStatus::Success;
            if policy.grow.is_some() && live && n == cap && cap > 0 {
                // Came back full: the buffers set the pace. Larger ones from now on.
                c.post_size_now = (cap * 2).min(policy.post_size);
            }
            let room = !Self::send_full(c, &policy);
            let (keep, size) = self.wanted(conn, &policy);
            if policy.repost_in_completion && live && keep > 0 && room {
                if policy.grow.is_none() || size == cap {
                    Self::arm(nbl, &policy);
                    repost.append(&mut one);
                } else {
                    self.put_idle(one);
                    repost.push_back(self.request_of(size, &policy));
                }
                self.conns.entry(conn).or_default().outstanding += 1;
            } else {
                self.put_idle(one);
            }
        }
        nested.post_receive(conn, repost);
        if policy.return_in_upcall {
            nested.receive_return(self.held.take());
        }
        self.queue_sends(conn, nested);
    }

    fn receive_indicate(
        &mut self,
        conn: ConnId,
        nbl: NblChain,
        _status: NdisStatus,
        nested: &mut NestedCalls,
    ) -> IndicateReturn {
        let policy = self.policy(conn);
        let Some(first) = nbl.front() else {
            return IndicateReturn::NotAccepted(nbl);
        };
        let nb = first.net_buffer();
        let len = nb.data_length();
        let full = self.conns.get(&conn).is_some_and(|c| Self::send_full(c, &policy));
        let take = match policy.indication {
            // An echo application with its send window full takes nothing more for now.
            _ if full => 0,
            IndicationPolicy::AcceptAll => len,
            IndicationPolicy::AcceptUpTo(k) => k.min(len),
            IndicationPolicy::Refuse => 0,
        };
        self.take_bytes(conn, nb, nb.data_offset(), take);
        let c = self.conns.entry(conn).or_default();
        c.indications += 1;
        if take < len {
            c.refusals += 1;
        }
        if policy.post_in_indication {
            let chain = self.top_up_chain_min_one(conn, &policy);
            nested.post_receive(conn, chain);
        } else if let (Some(g), false) = (policy.grow, full) {
            // Enough taken through indications, or an indication not taken whole (the
            // application wants its own buffers: a refusal blocks indications until it
            // posts): the connection gets requests of its own. Not while an echo's send
            // window is full: that refusal is backpressure, lifted when sends complete.
            let c = self.conns.entry(conn).or_default();
            if take < len && c.post_size_now == 0 {
                c.post_size_now = g.first_size;
            }
            let chain = self.top_up_chain(conn);
            nested.post_receive(conn, chain);
        }
        if policy.return_in_upcall {
            nested.receive_return(self.held.take());
        }
        self.queue_sends(conn, nested);
        if take == len {
            self.held.append(&mut { nbl });
            IndicateReturn::Success
        } else if take == 0 {
            IndicateReturn::NotAccepted(nbl)
        } else {
            IndicateReturn::PartiallyAccepted { nbl, bytes_consumed: take }
        }
    }

    fn event_indicate(&mut self, conn: ConnId, event: TcpOffloadEvent, nested: &mut NestedCalls) {
        self.conns.entry(conn).or_default().events.push(event);
        self.events.push_back((conn, event));
        if self.policy(conn).return_in_upcall {
            nested.receive_return(self.held.take());
        }
    }

    fn send_complete(&mut self, conn: ConnId, nbls: NblChain, nested: &mut NestedCalls) {
        let policy = self.policy(conn);
        let c = self.conns.entry(conn).or_default();
        let was_full = Self::send_full(c, &policy);
        for n in nbls.iter() {
            let acked = n.tcp_offload_bytes_transferred() as u64;
            let left: u64 = n.net_buffers().map(|nb| nb.data_length() as u64).sum();
            c.sent += acked;
            c.send_outstanding = c.send_outstanding.saturating_sub(acked + left);
            let at = c.send_at.remove(&n.id());
            if n.status == NdisStatus::UploadInProgress {
                // The connection is being uploaded: the host stack owns what the peer has not
                // acknowledged and sends it again (after the connection is offloaded again).
                let mut back = Vec::new();
                for nb in n.net_buffers() {
                    nb.copy_out(nb.data_offset(), nb.data_length(), &mut back);
                }
                if let (Some(at), false) = (at, back.is_empty()) {
                    c.resend.insert(at + acked, back);
                }
            }
            match c.send_statuses.iter_mut().find(|(k, _)| *k == n.status) {
                Some((_, k)) => *k += 1,
                None => c.send_statuses.push((n.status, 1)),
            }
        }
        let live = nbls.iter().all(|n| n.status == NdisStatus::Success);
        drop(nbls);
        if live && was_full && !Self::send_full(self.conns.entry(conn).or_default(), &policy) {
            // Room again: take data again. A post also re-enables indications; an application
            // that only takes indications posts a zero-byte request for that (Winsock's "tell
            // me when there is data").
            let chain = if policy.keep_posted == 0 {
                let zero = AppPolicy { post_size: 0, mdls: 1, ..policy.clone() };
                let nbl = self.new_request(&zero);
                self.conns.entry(conn).or_default().outstanding += 1;
                NblChain::single(nbl)
            } else {
                self.top_up_chain_min_one(conn, &policy)
            };
            nested.post_receive(conn, chain);
        }
        if live {
            self.queue_sends(conn, nested);
        }
    }

    fn disconnect_complete(&mut self, conn: ConnId, _nbl: NblChain, status: NdisStatus, _nested: &mut NestedCalls) {
        let c = self.conns.entry(conn).or_default();
        c.disconnect_status = Some(status);
        if status == NdisStatus::UploadInProgress {
            // The FIN was not acknowledged before the upload: disconnect again once offloaded.
            c.disconnect_posted = false;
        }
    }
}

impl AppHost {
    /// Answers every complete request head in `c.http_in`, in order (pipelining).
    fn http_parse(c: &mut AppConn) {
        while !c.http_done {
            let Some(end) = c.http_in.windows(4).position(|w| w == b"\r\n\r\n") else {
                if c.http_in.len() > HTTP_MAX_HEAD {
                    let body = "request head too large\n";
                    let head = format!(
                        "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    c.http_out.push_back(HttpOut::Bytes(head.into_bytes()));
                    c.http_out.push_back(HttpOut::Close);
                    c.http_done = true;
                    c.http_in.clear();
                }
                return;
            };
            let head: Vec<u8> = c.http_in.drain(..end + 4).collect();
            let (out, keep) = http_answer(&head[..end]);
            c.http_out.extend(out);
            c.http_requests += 1;
            if !keep {
                c.http_done = true;
                c.http_in.clear();
            }
        }
    }

    /// Whether an echo application holds as much unsent and unacknowledged data as it allows.
    fn send_full(c: &AppConn, policy: &AppPolicy) -> bool {
        policy.send == SendPolicy::Echo && c.send_outstanding as usize + c.to_echo.len() >= policy.send_window.max(1)
    }

    /// The send NBLs the application has ready for `conn` now (echoed bytes, or the next part
    /// of its source stream), within its send window; and whether it should now disconnect.
    fn next_sends(&mut self, conn: ConnId) -> (NblChain, bool) {
        // A receiving-only application with nothing to send again: the common case, asked
        // after every completion.
        if self.policy_ref(conn).send == SendPolicy::None && self.conns.get(&conn).is_none_or(|c| c.resend.is_empty()) {
            return (NblChain::new(), false);
        }
        let policy = self.policy(conn);
        let hash = self.hash;
        let size = policy.send_size.max(1);
        let mut chain = NblChain::new();
        loop {
            let c = self.conns.entry(conn).or_default();
            if c.disconnect_posted || c.send_outstanding as usize >= policy.send_window.max(size) {
                break;
            }
            if chain.len() >= MAX_SENDS_PER_CALL {
                // The rest goes with a later call (a completion makes room): tiny sends in a
                // large window would otherwise make one call of a hundred thousand NBLs.
                break;
            }
            if let Some(mut first) = c.resend.first_entry() {
                // Not hashed again: these bytes were counted when first posted.
                let at = *first.key();
                let bytes = if first.get().len() > size {
                    let rest = first.get_mut().split_off(size);
                    let head = std::mem::replace(first.get_mut(), rest);
                    let rest = first.remove();
                    c.resend.insert(at + size as u64, rest);
                    head
                } else {
                    first.remove()
                };
                c.send_outstanding += bytes.len() as u64;
                self.serial += 1;
                let id = NblId::new(PoolTag::Host, self.serial);
                c.send_at.insert(id, at);
                let nb = NetBuffer::new(vec![Mdl::from_bytes(bytes)]);
                chain.push_back(NetBufferList::new(id, nb));
                continue;
            }
            let bytes: Vec<u8> = match policy.send {
                SendPolicy::None => break,
                SendPolicy::Echo => {
                    if c.to_echo.is_empty() {
                        break;
                    }
                    let n = c.to_echo.len().min(size);
                    c.to_echo.drain(..n).collect()
                }
                SendPolicy::Http => {
                    let Some(front) = c.http_out.front_mut() else { break };
                    match front {
                        HttpOut::Bytes(b) => {
                            let v = std::mem::take(b);
                            c.http_out.pop_front();
                            v
                        }
                        HttpOut::Pattern { at, left } => {
                            let n = (*left).min(size as u64) as usize;
                            let mut v = vec![0; n];
                            source_pattern(*at, &mut v);
                            *at += n as u64;
                            *left -= n as u64;
                            if *left == 0 {
                                c.http_out.pop_front();
                            }
                            v
                        }
                        HttpOut::Close => {
                            c.http_out.clear();
                            c.closing = true;
                            break;
                        }
                    }
                }
                SendPolicy::Source(total) => {
                    let n = (total - c.send_posted.min(total)).min(size as u64) as usize;
                    if n == 0 {
                        c.closing = true;
                        break;
                    }
                    let mut v = vec![0; n];
                    source_pattern(c.send_posted, &mut v);
                    v
                }
            };
            c.sent_digest.update(hash, &bytes);
            let at = c.send_posted;
            c.send_posted += bytes.len() as u64;
            c.send_outstanding += bytes.len() as u64;
            self.serial += 1;
            let mdls = split_mdls(bytes, policy.send_mdls);
            let id = NblId::new(PoolTag::Host, self.serial);
            c.send_at.insert(id, at);
            chain.push_back(NetBufferList::new(id, NetBuffer::new(mdls)));
        }
        let c = self.conns.entry(conn).or_default();
        let source_done = matches!(policy.send, SendPolicy::Source(t) if c.send_posted >= t) && c.resend.is_empty();
        let echo_done = policy.send == SendPolicy::Echo && c.to_echo.is_empty() && c.resend.is_empty();
        let http_done = policy.send == SendPolicy::Http && c.http_out.is_empty() && c.resend.is_empty();
        let disconnect = c.closing && !c.disconnect_posted && (source_done || echo_done || http_done);
        if disconnect {
            c.disconnect_posted = true;
        }
        (chain, disconnect)
    }

    /// Posts what is ready to send from inside an upcall (and the disconnect after it).
    fn queue_sends(&mut self, conn: ConnId, nested: &mut NestedCalls) {
        let (chain, disconnect) = self.next_sends(conn);
        nested.post_send(conn, chain);
        if disconnect {
            nested.disconnect(conn, DisconnectKind::Graceful, NblChain::new());
        }
    }

    /// Posts what is ready to send on `conn` (top level): a source's first data, echoed bytes
    /// the host path received, the rest and the disconnect after the peer's FIN.
    pub fn pump_sends(&mut self, now: Instant, conn: ConnId, target: &mut dyn OffloadTarget) {
        let (chain, disconnect) = self.next_sends(conn);
        if !chain.is_empty() {
            if let Err(rej) = target.send(now, conn, chain, self) {
                // Refused (the connection is going away): the bytes are still to be sent,
                // in their place.
                let c = self.conns.entry(conn).or_default();
                for n in rej.nbls.iter() {
                    let mut back = Vec::new();
                    for nb in n.net_buffers() {
                        nb.copy_out(nb.data_offset(), nb.data_length(), &mut back);
                    }
                    c.send_outstanding = c.send_outstanding.saturating_sub(back.len() as u64);
                    if let (Some(at), false) = (c.send_at.remove(&n.id()), back.is_empty()) {
                        c.resend.insert(at, back);
                    }
                }
            }
        }
        if disconnect {
            let _ = target.disconnect(now, conn, DisconnectKind::Graceful, NblChain::new(), self);
        }
    }

    /// The digest ([`AppHost::hash`]) of everything posted as sends on `conn` so far.
    pub fn sent_digest(&self, conn: ConnId) -> Vec<u8> {
        self.conns.get(&conn).map_or_else(|| self.hash.of(&[]), |c| c.sent_digest.finish(self.hash))
    }
}

impl AppHost {
    /// Indicate-and-post: one request after the indication, unless the application already
    /// has more than it asked to keep (an application that posted without bound would make
    /// every delivery pass walk an ever longer queue).
    fn top_up_chain_min_one(&mut self, conn: ConnId, policy: &AppPolicy) -> NblChain {
        let chain = self.top_up_chain(conn);
        if !chain.is_empty() {
            return chain;
        }
        let outstanding = self.conns.get(&conn).map_or(0, |c| c.outstanding);
        if outstanding > policy.keep_posted {
            return NblChain::new();
        }
        let nbl = self.new_request(policy);
        self.conns.entry(conn).or_default().outstanding += 1;
        NblChain::single(nbl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_pattern_is_the_same_at_any_offset_and_length() {
        let byte =
            |o: u64| (((o / 8).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5DEE_CE66_D1CE_4E5B) >> (8 * (o % 8))) as u8;
        for start in [0u64, 1, 7, 8, 13, 1 << 40] {
            for len in [0usize, 1, 5, 8, 9, 100, 4099] {
                let mut v = vec![0u8; len];
                source_pattern(start, &mut v);
                let want: Vec<u8> = (0..len as u64).map(|i| byte(start + i)).collect();
                assert_eq!(v, want, "offset {start}, {len} bytes");
            }
        }
    }

    #[test]
    fn send_mdls_split_unevenly_and_keep_every_byte() {
        for (len, n) in [(1usize, 0usize), (100, 0), (5000, 0), (10, 8), (7, 8), (100_000, 5), (3, 3)] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mdls = split_mdls(bytes.clone(), n);
            let want = match n {
                0 if len < 4096 => 2.min(len),
                0 => 1,
                n => n.min(len),
            };
            assert_eq!(mdls.len(), want, "{len} bytes, {n} MDLs");
            assert!(mdls.iter().all(|m| m.byte_count() > 0));
            let joined: Vec<u8> = mdls.iter().flat_map(|m| m.bytes().to_vec()).collect();
            assert_eq!(joined, bytes);
        }
    }

    fn answer(c: &mut AppConn, bytes: &[u8]) {
        c.http_in.extend_from_slice(bytes);
        AppHost::http_parse(c);
    }

    #[test]
    fn http_pipelined_requests_are_answered_in_order() {
        let mut c = AppConn::default();
        answer(&mut c, b"GET /3 HTTP/1.1\r\nHost: x\r\n\r\nGET /0 HTTP/1.1\r\n\r\nGET /2 HT");
        assert_eq!(c.http_requests, 2);
        assert!(
            matches!(&c.http_out[0], HttpOut::Bytes(h) if h.starts_with(b"HTTP/1.1 200 OK") && h.windows(17).any(|w| w == b"Content-Length: 3"))
        );
        assert_eq!(c.http_out[1], HttpOut::Pattern { at: 0, left: 3 });
        assert!(matches!(&c.http_out[2], HttpOut::Bytes(h) if h.windows(17).any(|w| w == b"Content-Length: 0")));
        // The third arrives in pieces.
        answer(&mut c, b"TP/1.1\r\nConnection: close\r\n\r\nGET /9 HTTP/1.1\r\n\r\n");
        assert_eq!(c.http_requests, 3, "nothing is read after a close");
        assert_eq!(c.http_out.back(), Some(&HttpOut::Close));
        assert!(c.http_done);
    }

    #[test]
    fn http_errors_close() {
        for (req, code) in [
            (&b"GET /x HTTP/1.1\r\n\r\n"[..], &b"404"[..]),
            (b"POST /1 HTTP/1.1\r\n\r\n", b"405"),
            (b"hello\r\n\r\n", b"400"),
        ] {
            let mut c = AppConn::default();
            answer(&mut c, req);
            assert!(matches!(&c.http_out[0], HttpOut::Bytes(h) if h.windows(3).any(|w| w == code)), "{req:?}");
            assert_eq!(c.http_out.back(), Some(&HttpOut::Close));
        }
        // HTTP/1.0 closes unless asked to keep the connection.
        let mut c = AppConn::default();
        answer(&mut c, b"GET /1 HTTP/1.0\r\n\r\n");
        assert_eq!(c.http_out.back(), Some(&HttpOut::Close));
        let mut c = AppConn::default();
        answer(&mut c, b"GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_ne!(c.http_out.back(), Some(&HttpOut::Close));
        // A head that never ends is refused, not kept.
        let mut c = AppConn::default();
        answer(&mut c, &vec![b'a'; HTTP_MAX_HEAD + 1]);
        assert!(matches!(&c.http_out[0], HttpOut::Bytes(h) if h.windows(3).any(|w| w == b"431")));
        assert!(c.http_in.is_empty());
    }
}
