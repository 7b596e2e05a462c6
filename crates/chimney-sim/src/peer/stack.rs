// One smoltcp release as the sender stack: an `Interface` with N TCP sockets on the
// simulator's clock, through the queue-backed device. `peer/mod.rs` includes this file once
// per release, in a module where `net` names that release, so that both run the very same
// driving code. (Included, not a module of its own: rustfmt does not see it; run
// `rustfmt --edition 2021 crates/chimney-sim/src/peer/stack.rs` after editing.)

use std::collections::VecDeque;
use std::net::IpAddr;

use net::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use net::phy::{self, DeviceCapabilities, Medium};
use net::socket::tcp;
use net::time::Instant as SInstant;
use net::wire::{HardwareAddress, IpAddress, IpCidr};

use crate::peer::{PeerState, QueueDevice, Sender};

/// Receive token.
pub struct Rx(Vec<u8>);
/// Transmit token.
pub struct Tx<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut v = vec![0; len];
        let r = f(&mut v);
        self.0.push_back(v);
        r
    }
}

impl phy::Device for QueueDevice {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _t: SInstant) -> Option<(Rx, Tx<'_>)> {
        let p = self.rx.pop_front()?;
        Some((Rx(p), Tx(&mut self.tx)))
    }

    fn transmit(&mut self, _t: SInstant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ip;
        c.max_transmission_unit = self.mtu;
        c
    }
}

/// This release's interface and sockets, one socket per sender (same index).
pub struct Stack {
    iface: Interface,
    sockets: SocketSet<'static>,
    handles: Vec<SocketHandle>,
}

fn sinstant(ns: u64) -> SInstant {
    SInstant::from_micros((ns / 1000) as i64)
}

fn ip(a: IpAddr) -> IpAddress {
    match a {
        IpAddr::V4(v) => IpAddress::Ipv4(v),
        IpAddr::V6(v) => IpAddress::Ipv6(v),
    }
}

impl Stack {
    /// One socket per sender, connecting from `local` to `target`, seeded.
    pub fn new(seed: u64, dev: &mut QueueDevice, local: IpAddr, target: (IpAddr, u16), senders: &[Sender]) -> Stack {
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = seed;
        let mut iface = Interface::new(config, dev, SInstant::from_micros(0));
        let prefix = if local.is_ipv4() { 24 } else { 64 };
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(ip(local), prefix));
        });
        let mut sockets = SocketSet::new(Vec::new());
        let mut handles = Vec::new();
        for s in senders {
            let rx = tcp::SocketBuffer::new(vec![0; if s.echo { 65536 } else { 4096 }]);
            let tx = tcp::SocketBuffer::new(vec![0; s.send_buffer]);
            let mut sock = tcp::Socket::new(rx, tx);
            sock.set_nagle_enabled(false);
            if s.echo {
                // smoltcp's delayed ACK is not among the deadlines `poll_at` reports, so a
                // receiving peer would sit on its ACK until some other timer woke it (against
                // our Nagle, for seconds): it ACKs at once instead.
                sock.set_ack_delay(None);
            }
            let _ = sock.connect(iface.context(), (ip(target.0), target.1), s.port);
            handles.push(sockets.add(sock));
        }
        Stack { iface, sockets, handles }
    }

    /// Feeds the sockets, checks what they received, and polls smoltcp at `now_ns`.
    pub fn poll(&mut self, now_ns: u64, dev: &mut QueueDevice, senders: &mut [Sender]) {
        let now = sinstant(now_ns);
        let mut buf = [0u8; 16384];
        for (s, &h) in senders.iter_mut().zip(&self.handles) {
            let sock = self.sockets.get_mut::<tcp::Socket>(h);
            // What the target sends: an echo of this sender's own stream, or nothing.
            while sock.can_recv() {
                let (stream, at, echo, ignore) = (s.stream, s.received, s.echo, s.ignore_rx);
                let mut wrong = None;
                let got = sock.recv(|buf| {
                    if ignore {
                    } else if !echo {
                        wrong = Some(format!("{} unexpected bytes from the target at {at}", buf.len()));
                    } else if !stream.matches(at, buf) {
                        wrong = Some(format!("echo of {} bytes at {at} differs from the stream", buf.len()));
                    }
                    (buf.len(), buf.len())
                });
                match got {
                    Ok(n) if n > 0 => s.received += n as u64,
                    _ => break,
                }
                if s.rx_mismatch.is_none() {
                    s.rx_mismatch = wrong;
                }
            }
            let limit = s.reset_after.unwrap_or(s.total).min(s.total);
            while s.sent < limit && sock.can_send() {
                let n = ((limit - s.sent) as usize).min(buf.len());
                let room = sock.send_capacity() - sock.send_queue();
                let n = n.min(room);
                if n == 0 {
                    break;
                }
                s.stream.fill_at(s.sent, &mut buf[..n]);
                let k = sock.send_slice(&buf[..n]).unwrap_or(0);
                s.sent += k as u64;
            }
            if s.sent == limit && !s.closed && sock.send_queue() == 0 && sock.may_send() {
                s.closed = true;
                if s.reset_after.is_some() {
                    sock.abort();
                } else {
                    sock.close();
                }
            }
        }
        // smoltcp sends at most one segment per socket per poll: poll until it is idle.
        for _ in 0..4096 {
            if self.iface.poll(now, dev, &mut self.sockets) == PollResult::None {
                break;
            }
        }
    }

    /// When smoltcp next wants to be polled (ns).
    pub fn poll_at(&mut self, now_ns: u64) -> Option<u64> {
        self.iface.poll_at(sinstant(now_ns), &self.sockets).map(|t| (t.total_micros().max(0) as u64) * 1000)
    }

    /// The TCP state of sender `i`.
    pub fn state(&self, i: usize) -> PeerState {
        use tcp::State as S;
        match self.sockets.get::<tcp::Socket>(self.handles[i]).state() {
            S::Closed => PeerState::Closed,
            S::Listen => PeerState::Listen,
            S::SynSent => PeerState::SynSent,
            S::SynReceived => PeerState::SynReceived,
            S::Established => PeerState::Established,
            S::FinWait1 => PeerState::FinWait1,
            S::FinWait2 => PeerState::FinWait2,
            S::CloseWait => PeerState::CloseWait,
            S::Closing => PeerState::Closing,
            S::LastAck => PeerState::LastAck,
            S::TimeWait => PeerState::TimeWait,
        }
    }
}
