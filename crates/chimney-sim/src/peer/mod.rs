//! smoltcp as the sender: one `Interface` with N TCP sockets, driven on the simulator's clock
//! through a queue-backed `phy::Device`.
//!
//! Two smoltcp releases are built in ([`Release`]): the current one (0.14) and 0.12. 0.14
//! sends a single segment on fast retransmit and has no partial-ACK recovery, and whenever the
//! target drops a segment it can stall in ways that are its own:
//! - a lost FIN is never sent again once three duplicate ACKs arrive while only the FIN is
//!   outstanding (the fast retransmit has nothing to send and leaves the retransmission timer
//!   idle);
//! - after a burst loss it repairs one segment per backed-off timeout.
//!
//! So clean runs use 0.14 and every other run 0.12, which goes back N on every retransmission
//! and does not stall. docs/simulation.md has the detail.

use std::collections::VecDeque;
use std::net::IpAddr;

use chimney::testkit::rng::Stream;

mod v0_14 {
    use ::smoltcp as net;
    include!("stack.rs");
}

mod v0_12 {
    use ::smoltcp012 as net;
    include!("stack.rs");
}

/// Which smoltcp release the senders run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Release {
    /// smoltcp 0.14, the current release: clean runs.
    #[default]
    V0_14,
    /// smoltcp 0.12: every run where the target may drop a segment.
    V0_12,
}

impl std::fmt::Display for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Release::V0_14 => "0.14",
            Release::V0_12 => "0.12",
        })
    }
}

impl std::str::FromStr for Release {
    type Err = String;
    fn from_str(s: &str) -> Result<Release, String> {
        match s {
            "0.14" => Ok(Release::V0_14),
            "0.12" => Ok(Release::V0_12),
            _ => Err(format!("unknown smoltcp release {s:?}: expected 0.14 or 0.12")),
        }
    }
}

/// A sender's TCP state, whichever release runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum PeerState {
    Closed,
    Listen,
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
}

/// Packets between smoltcp and the simulator.
#[derive(Debug, Default)]
pub struct QueueDevice {
    /// Packets to deliver to smoltcp.
    pub rx: VecDeque<Vec<u8>>,
    /// Packets smoltcp sent.
    pub tx: VecDeque<Vec<u8>>,
    mtu: usize,
}

/// One sending connection.
pub struct Sender {
    /// Local port (identifies the connection at the target).
    pub port: u16,
    /// Bytes to send in all.
    pub total: u64,
    /// Bytes queued into the socket so far.
    pub sent: u64,
    /// The bytes this sender sends (seekable, so the receiver checks without storing).
    pub stream: Stream,
    /// Whether `close()` was called.
    pub closed: bool,
    /// Abort (RST) after this many bytes instead of closing.
    pub reset_after: Option<u64>,
    /// The target echoes: what comes back must be this sender's own stream.
    pub echo: bool,
    /// Send buffer of the socket, bytes.
    pub send_buffer: usize,
    /// Bytes received from the target.
    pub received: u64,
    /// The first wrong byte received, described.
    pub rx_mismatch: Option<String>,
    /// The host took the connection away (terminate, abort): whatever comes back later (a
    /// connection revived by a SYN cookie echoes from elsewhere in the stream) is not checked.
    pub ignore_rx: bool,
}

enum Stacks {
    V0_14(v0_14::Stack),
    V0_12(v0_12::Stack),
}

/// The smoltcp side: device, the release's interface and sockets, the senders.
pub struct Peers {
    /// The device queues.
    pub dev: QueueDevice,
    stack: Stacks,
    /// The senders.
    pub senders: Vec<Sender>,
}

impl Peers {
    /// One sender per `(bytes, reset_after, send_buffer, echo)` in `specs`, from `local` to
    /// `target`, on smoltcp `release`, seeded.
    pub fn new(
        release: Release,
        seed: u64,
        local: IpAddr,
        target: (IpAddr, u16),
        specs: &[(u64, Option<u64>, usize, bool)],
        mtu: usize,
    ) -> Peers {
        let mut dev = QueueDevice { mtu, ..QueueDevice::default() };
        let senders: Vec<Sender> = specs
            .iter()
            .enumerate()
            .map(|(i, &(total, reset_after, send_buffer, echo))| Sender {
                port: 40000 + i as u16,
                total,
                sent: 0,
                stream: Stream::new(seed ^ ((i as u64 + 1) << 40)),
                closed: false,
                reset_after,
                echo,
                send_buffer,
                received: 0,
                rx_mismatch: None,
                ignore_rx: false,
            })
            .collect();
        let stack = match release {
            Release::V0_14 => Stacks::V0_14(v0_14::Stack::new(seed, &mut dev, local, target, &senders)),
            Release::V0_12 => Stacks::V0_12(v0_12::Stack::new(seed, &mut dev, local, target, &senders)),
        };
        Peers { dev, stack, senders }
    }

    /// Feeds the sockets and polls smoltcp at `now_ns`.
    pub fn poll(&mut self, now_ns: u64) {
        match &mut self.stack {
            Stacks::V0_14(s) => s.poll(now_ns, &mut self.dev, &mut self.senders),
            Stacks::V0_12(s) => s.poll(now_ns, &mut self.dev, &mut self.senders),
        }
    }

    /// When smoltcp next wants to be polled (ns).
    pub fn poll_at(&mut self, now_ns: u64) -> Option<u64> {
        match &mut self.stack {
            Stacks::V0_14(s) => s.poll_at(now_ns),
            Stacks::V0_12(s) => s.poll_at(now_ns),
        }
    }

    /// The state of sender `i`.
    pub fn state(&self, i: usize) -> PeerState {
        match &self.stack {
            Stacks::V0_14(s) => s.state(i),
            Stacks::V0_12(s) => s.state(i),
        }
    }
}
