//! Flags shared by `demo` and `serve`: application policy and impairments.

use std::net::SocketAddr;
use std::time::Duration;

use chimney::engine::EngineConfig;
use chimney::tcp::TcpConfig;
use chimney_linux::{defaults, DriverConfig};

use chimney::testkit::digest::HashKind;
use chimney::testkit::host::{AppPolicy, IndicationPolicy};
use chimney::testkit::impair::ImpairConfig;

/// How the host application on each connection posts and consumes.
#[derive(clap::Args, Debug, Clone)]
pub struct PolicyArgs {
    /// Receive requests kept posted per connection (0 = indications only). Without --posts
    /// and --post-size, posts follow demand: a connection's first 128 KiB are indicated,
    /// then it keeps up to 4 requests posted, starting at 64 KiB and doubling each time one
    /// comes back full, up to 256 KiB. With either, the fixed policy: every connection posts
    /// this many (default 4) of --post-size from the start (for measurements that need every
    /// connection alike, e.g. `bench flows --serve-flags "--posts 4"`).
    #[arg(long)]
    pub posts: Option<usize>,
    /// Bytes per receive request (suffixes: K, M, KiB, MB, …); sets the fixed policy (see
    /// --posts; default 256 KiB).
    #[arg(long, value_parser = crate::size::usize_bytes)]
    pub post_size: Option<usize>,
    /// MDLs per receive request (the bytes are split across them).
    #[arg(long, default_value_t = defaults::MDLS)]
    pub mdls: usize,
    /// Post non-push requests (completed only when full, or at FIN/upload).
    #[arg(long)]
    pub no_push: bool,
    /// Post nothing: every byte reaches the application through indications.
    #[arg(long, conflicts_with_all = ["indicate_and_post", "posts", "post_size", "mdls", "no_push"])]
    pub indications_only: bool,
    /// Indicate-and-post: indications of RcvIndicationSize bytes, a request posted inside each.
    #[arg(long, conflicts_with = "posts")]
    pub indicate_and_post: bool,
    /// RcvIndicationSize, bytes (0 = as much as possible).
    #[arg(long, default_value_t = 0, value_parser = crate::size::u32_bytes)]
    pub rcv_indication_size: u32,
    /// Slow consumer: take nothing until the receive window is zero (or the peer has finished
    /// sending), wait this many ms, resume.
    #[arg(long)]
    pub stall_ms: Option<u64>,
    /// Re-post from the driver instead of from inside the completion.
    #[arg(long)]
    pub no_repost_in_completion: bool,
    /// Receive buffer per connection (InitialRcvWnd), bytes (suffixes: K, M, KiB, …).
    #[arg(long, default_value_t = defaults::RCV_WND, value_parser = crate::size::u32_bytes)]
    pub rcv_wnd: u32,
    /// Keep-alive: probe a connection idle this many seconds (KaTimeout; 0 = off), then every
    /// second, and upload it after 10 unanswered probes.
    #[arg(long, default_value_t = 0)]
    pub keepalive: u64,
    /// Do not enable TUN offloads (virtio_net_hdr, GSO super-packets of up to 64 KB, partial
    /// checksums): read one wire-sized packet at a time. Impairments turn offloads off too.
    #[arg(long)]
    pub no_offload: bool,
    /// Busy-poll for this many microseconds after packets arrived instead of sleeping in poll
    /// (0 = sleep whenever idle).
    #[arg(long, default_value_t = 0)]
    pub busy_poll_us: u64,
    /// Turn off direct placement (reading a predicted in-order payload with readv straight
    /// into the posted buffer): the target then copies every payload once itself.
    #[arg(long)]
    pub no_direct: bool,
    /// SYN cookies (RFC 4987): `auto` answers SYNs with a cookie only when the half-open
    /// table (1,024 entries) is full, `always` for every SYN, `never` drops SYNs beyond it.
    #[arg(long, value_enum, default_value_t = SynCookiesArg::Auto)]
    pub syncookies: SynCookiesArg,
    /// The digest of each connection's received and sent streams in its JSON line (`hash`,
    /// `digest`, `sent_digest`; with sha256 also `sha256`, `sent_sha256`): xxh3 (XXH3-128,
    /// `xxhsum -H2`; keeps up with the wire, not cryptographic), blake3 (`b3sum`), sha256
    /// (`sha256sum`; the slowest) or none.
    #[arg(long, default_value = "xxh3", value_parser = parse_hash)]
    pub hash: HashKind,
    /// The host closes each connection first, gracefully, once the application received N
    /// bytes: our FIN (FIN-WAIT-1/2, then TIME-WAIT or CLOSING); the peer may still send.
    /// The connection's `end` is `closed`.
    #[arg(long, value_name = "N", value_parser = crate::size::u64_bytes)]
    pub close_after_bytes: Option<u64>,
    /// The host closes each connection gracefully this many ms after its offload.
    #[arg(long, value_name = "MS")]
    pub close_after_ms: Option<u64>,
    /// The host aborts each connection once the application received N bytes: RST, posted
    /// requests complete REQUEST_ABORTED. The connection's `end` is `aborted`.
    #[arg(long, value_name = "N", value_parser = crate::size::u64_bytes, conflicts_with_all = ["close_after_bytes", "close_after_ms"])]
    pub abort_after_bytes: Option<u64>,
    /// The host aborts each connection this many ms after its offload.
    #[arg(long, value_name = "MS", conflicts_with_all = ["close_after_bytes", "close_after_ms"])]
    pub abort_after_ms: Option<u64>,
}

/// `--syncookies`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynCookiesArg {
    /// Only when the half-open table is full.
    Auto,
    /// For every SYN: nothing is kept before the handshake completes.
    Always,
    /// Never: SYNs beyond the half-open table are dropped and counted.
    Never,
}

impl From<SynCookiesArg> for chimney::engine::SynCookies {
    fn from(a: SynCookiesArg) -> Self {
        match a {
            SynCookiesArg::Auto => chimney::engine::SynCookies::Auto,
            SynCookiesArg::Always => chimney::engine::SynCookies::Always,
            SynCookiesArg::Never => chimney::engine::SynCookies::Never,
        }
    }
}

/// 64 bits from the OS's randomness (std seeds its hasher keys from it): the secret of ISNs
/// and SYN cookies on a real network, where a seed anyone can read must not predict them.
fn os_secret() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(0x005E_C2E7_u64)
}

impl PolicyArgs {
    /// The host-first close these flags ask for, if any.
    pub fn host_close(&self) -> Option<chimney_linux::HostClose> {
        use chimney::ndis::DisconnectKind;
        let ms = |m: Option<u64>| m.map(Duration::from_millis);
        if self.abort_after_bytes.is_some() || self.abort_after_ms.is_some() {
            return Some(chimney_linux::HostClose {
                kind: DisconnectKind::Abortive,
                after_bytes: self.abort_after_bytes,
                after: ms(self.abort_after_ms),
            });
        }
        (self.close_after_bytes.is_some() || self.close_after_ms.is_some()).then(|| chimney_linux::HostClose {
            kind: DisconnectKind::Graceful,
            after_bytes: self.close_after_bytes,
            after: ms(self.close_after_ms),
        })
    }

    /// The application policy these flags describe.
    pub fn policy(&self) -> Result<AppPolicy, String> {
        if self.mdls == 0 || self.mdls > 64 {
            return Err(format!("--mdls must be 1..=64, got {}", self.mdls));
        }
        let post_size = self.post_size.unwrap_or(defaults::POST_SIZE);
        if post_size > 1 << 30 {
            return Err(format!("--post-size must be at most 1 GiB (1073741824), got {post_size}"));
        }
        if self.rcv_wnd < 4096 {
            return Err(format!("--rcv-wnd must be at least 4096, got {}", self.rcv_wnd));
        }
        let fixed = self.posts.is_some() || self.post_size.is_some();
        let mut p = AppPolicy {
            keep_posted: self.posts.unwrap_or(defaults::POSTS),
            post_size,
            grow: (!fixed).then_some(chimney::testkit::host::PostGrowth {
                post_after: defaults::POST_AFTER,
                first_size: defaults::FIRST_POST_SIZE,
            }),
            mdls: self.mdls,
            no_push: self.no_push,
            repost_in_completion: !self.no_repost_in_completion,
            ..AppPolicy::default()
        };
        if self.indications_only {
            p.keep_posted = 0;
            p.grow = None;
        }
        if self.indicate_and_post {
            p.keep_posted = 0;
            p.grow = None;
            p.post_in_indication = true;
            p.indication = IndicationPolicy::AcceptUpTo(self.rcv_indication_size.max(64) as usize);
        }
        Ok(p)
    }

    /// Whether to open the TUN with offloads, given the impairments (which need every
    /// checksum verified).
    pub fn offload_with(&self, impair: &ImpairConfig) -> bool {
        !self.no_offload && impair.is_passthrough()
    }

    /// The slow-consumer stall, if any.
    pub fn stall(&self) -> Option<Duration> {
        self.stall_ms.map(Duration::from_millis)
    }

    /// RcvIndicationSize for the engine's offload state.
    pub fn indication_size(&self) -> u32 {
        if self.indicate_and_post && self.rcv_indication_size == 0 {
            256
        } else {
            self.rcv_indication_size
        }
    }
}

/// Seeded impairments applied in both directions between the TUN and the engine.
#[derive(clap::Args, Debug, Clone)]
pub struct ImpairArgs {
    /// Probability of dropping a packet.
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Probability of duplicating a packet.
    #[arg(long, default_value_t = 0.0)]
    pub dup: f64,
    /// Probability of delaying a packet by up to --reorder-ms (reordering it).
    #[arg(long, default_value_t = 0.0)]
    pub reorder: f64,
    /// Reordering delay bound, ms.
    #[arg(long, default_value_t = 5)]
    pub reorder_ms: u64,
    /// Probability of flipping one bit of a packet.
    #[arg(long, default_value_t = 0.0)]
    pub corrupt: f64,
    /// Fixed delay added to every packet, ms.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
}

impl ImpairArgs {
    /// The impairment these flags describe (validated).
    pub fn config(&self) -> Result<ImpairConfig, String> {
        let c = ImpairConfig {
            loss: self.loss,
            dup: self.dup,
            reorder: self.reorder,
            reorder_max: Duration::from_millis(self.reorder_ms),
            corrupt: self.corrupt,
            delay: Duration::from_millis(self.delay_ms),
        };
        c.validate()?;
        Ok(c)
    }
}

/// The driver configuration `demo` and `serve` share: the engine listening on `listen` on the
/// network `prefix` (whose broadcast addresses it never answers), MSS
/// from `mtu` and the address family, the application policy and impairments from the flags.
pub fn driver_config(
    p: &PolicyArgs,
    app: AppPolicy,
    impair: ImpairConfig,
    seed: u64,
    listen: SocketAddr,
    prefix: chimney::wire::Prefix,
    mtu: u32,
) -> DriverConfig {
    let base = DriverConfig::default();
    let tcp = TcpConfig {
        rcv_wnd: p.rcv_wnd,
        rcv_indication_size: p.indication_size(),
        mss: defaults::mss_for(mtu, listen.is_ipv6()),
        keepalive: (p.keepalive > 0).then(|| Duration::from_secs(p.keepalive)),
        ..base.engine.tcp.clone()
    };
    let listener = chimney::engine::ListenerConfig { syncookies: p.syncookies.into(), ..base.engine.listener.clone() };
    DriverConfig {
        engine: EngineConfig {
            seed,
            secret: os_secret(),
            listen: vec![listen],
            tcp,
            prefixes: vec![prefix],
            listener,
            ..base.engine.clone()
        },
        policy: app,
        stall: p.stall(),
        impair_in: impair.clone(),
        impair_out: impair,
        busy_poll: Duration::from_micros(p.busy_poll_us),
        direct_placement: !p.no_direct,
        host_close: p.host_close(),
        hash: p.hash,
        ..base
    }
}

/// `--hash`: one of the digest names.
fn parse_hash(s: &str) -> Result<HashKind, String> {
    HashKind::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = HashKind::ALL.iter().map(|k| k.name()).collect();
        format!("unknown digest {s:?} (one of: {})", names.join(", "))
    })
}

/// Validates the application-policy and impairment flags together (`demo`, `serve`).
pub fn parse_flags(p: &PolicyArgs, i: &ImpairArgs) -> Result<(AppPolicy, ImpairConfig), String> {
    Ok((p.policy()?, i.config()?))
}

/// `--trace FILE` / `--trace-bytes`: the contract trace (docs/trace-format.md).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TraceArgs {
    /// Write every contract call (posts, completions, indications and their outcomes,
    /// returns, events, offload, terminate, engine inputs) to FILE as JSON lines; check it
    /// later with `chimney verify FILE`. With several engine shards (`--queues N` on demo and
    /// serve), one file per shard: FILE.0, FILE.1, …
    #[arg(long, value_name = "FILE")]
    pub trace: Option<std::path::PathBuf>,
    /// Also record payload bytes in the trace (hex: the trace grows as large as the stream
    /// twice over), so that `chimney verify` compares content too.
    #[arg(long, requires = "trace")]
    pub trace_bytes: bool,
}

impl TraceArgs {
    /// Opens the trace file, if one was asked for.
    pub fn open(&self) -> Result<Option<chimney::contract::trace::TraceWriter>, String> {
        match &self.trace {
            Some(path) => self.open_at(path).map(Some),
            None => Ok(None),
        }
    }

    /// One trace writer per engine shard: FILE with one queue, FILE.0, FILE.1, … with several;
    /// `None`s without `--trace`.
    pub fn open_shards(&self, queues: usize) -> Result<Vec<Option<chimney::contract::trace::TraceWriter>>, String> {
        if queues <= 1 {
            return Ok(vec![self.open()?]);
        }
        (0..queues).map(|i| self.shard_path(i).map(|p| self.open_at(&p)).transpose()).collect()
    }

    /// The trace file of queue `i` of several: `FILE.i` (each engine shard has its own
    /// connection ids, so each writes its own trace).
    pub fn shard_path(&self, i: usize) -> Option<std::path::PathBuf> {
        self.trace.as_ref().map(|p| {
            let mut s = p.clone().into_os_string();
            s.push(format!(".{i}"));
            s.into()
        })
    }

    /// The trace files a run with `queues` engine shards writes (none without `--trace`).
    pub fn paths(&self, queues: usize) -> Vec<std::path::PathBuf> {
        match (&self.trace, queues) {
            (None, _) => Vec::new(),
            (Some(p), 0 | 1) => vec![p.clone()],
            _ => (0..queues).filter_map(|i| self.shard_path(i)).collect(),
        }
    }

    /// Opens a trace writer at `path` (with `--trace-bytes` if given).
    pub fn open_at(&self, path: &std::path::Path) -> Result<chimney::contract::trace::TraceWriter, String> {
        let f = std::fs::File::create(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        let generator = format!("chimney {}", env!("CARGO_PKG_VERSION"));
        Ok(chimney::contract::trace::TraceWriter::new(
            Box::new(std::io::BufWriter::with_capacity(1 << 20, f)),
            self.trace_bytes,
            &generator,
        ))
    }
}

/// Checks a TUN MTU for the address family in use: IPv4 needs 576 (the engine's smallest MSS,
/// 536, plus headers), IPv6 its minimum link MTU of 1280 (RFC 8200 §5).
pub fn check_mtu(mtu: u32, ipv6: bool) -> Result<(), String> {
    let (min, family) = if ipv6 { (1280, "IPv6") } else { (576, "IPv4") };
    if mtu < min || mtu > 65535 {
        return Err(format!("--mtu {mtu}: {family} needs {min}..=65535"));
    }
    Ok(())
}

/// An address with a prefix length (`--local 198.18.0.2/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The address.
    pub addr: std::net::IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (a, p) = s.split_once('/').ok_or_else(|| format!("'{s}' is not ADDRESS/PREFIX (e.g. 198.18.0.2/24)"))?;
        let addr: std::net::IpAddr = a.parse().map_err(|_| format!("'{a}' is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 =
            p.parse().ok().filter(|n| *n <= max).ok_or_else(|| format!("'/{p}': the prefix must be 0..={max}"))?;
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    /// The address as a number (IPv4 in the low 32 bits) and its bit width.
    fn bits(ip: std::net::IpAddr) -> (u128, u32) {
        match ip {
            std::net::IpAddr::V4(v) => (u128::from(u32::from(v)), 32),
            std::net::IpAddr::V6(v) => (u128::from(v), 128),
        }
    }

    /// Whether `ip` lies inside this prefix.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ((a, w), (b, _)) = (Self::bits(self.addr), Self::bits(ip));
        if self.addr.is_ipv4() != ip.is_ipv4() {
            return false;
        }
        let host_bits = w - u32::from(self.prefix);
        host_bits >= w || (a >> host_bits) == (b >> host_bits)
    }

    /// Checks that the target can be reached at `listen` through a TUN whose kernel side has
    /// this address: same family, a real prefix, a non-zero port, inside the prefix, not the
    /// kernel's own address, and (IPv4) not the network or broadcast address.
    pub fn check_listen(&self, listen: SocketAddr) -> Result<(), String> {
        let (l, local) = (listen.ip(), self.addr);
        if l.is_ipv4() != local.is_ipv4() {
            return Err(format!(
                "--listen {listen} and --local {local}/{} are different address families",
                self.prefix
            ));
        }
        if listen.port() == 0 {
            return Err(format!("--listen {listen}: port 0 cannot be connected to; give a port"));
        }
        let max = if local.is_ipv4() { 32 } else { 128 };
        if self.prefix == 0 || self.prefix >= max - u8::from(local.is_ipv4()) {
            return Err(format!(
                "--local {local}/{}: the prefix must leave room for the target's address (1..={})",
                self.prefix,
                max - 1 - u8::from(local.is_ipv4())
            ));
        }
        if l.is_unspecified() || l.is_multicast() || l.is_loopback() {
            return Err(format!("--listen {l}: the target needs a unicast address inside --local's prefix"));
        }
        if !self.contains(l) {
            return Err(format!(
                "--listen {l} is outside --local {local}/{}: the kernel would not route it to the TUN",
                self.prefix
            ));
        }
        if l == local {
            return Err(format!(
                "--listen {l} is the kernel's own address (--local): give the target another address in the prefix"
            ));
        }
        if let (std::net::IpAddr::V4(v), std::net::IpAddr::V4(_)) = (l, local) {
            let host = u32::from(v) & (u32::MAX >> self.prefix);
            if host == 0 || host == u32::MAX >> self.prefix {
                return Err(format!(
                    "--listen {l} is the network or broadcast address of --local's prefix /{}",
                    self.prefix
                ));
            }
        }
        Ok(())
    }
}
