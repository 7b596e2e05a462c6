//! smoltcp as the sender: one `Interface` with N TCP sockets, driven on the simulator's clock
//! through a queue-backed `phy::Device`.

use std::collections::VecDeque;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SInstant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

use chimney::testkit::rng::Stream;

/// Packets between smoltcp and the simulator.
#[derive(Debug, Default)]
pub struct QueueDevice {
    /// Packets to deliver to smoltcp.
    pub rx: VecDeque<Vec<u8>>,
    /// Packets smoltcp sent.
    pub tx: VecDeque<Vec<u8>>,
    mtu: usize,
}

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

/// One sending connection.
pub struct Sender {
    /// smoltcp socket handle.
    pub handle: SocketHandle,
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
    /// Bytes received from the target.
    pub received: u64,
    /// The first wrong byte received, described.
    pub rx_mismatch: Option<String>,
    /// The host took the connection away (terminate, abort): whatever comes back later (a
    /// connection revived by a SYN cookie echoes from elsewhere in the stream) is not checked.
    pub ignore_rx: bool,
}

/// The smoltcp side: interface, device, sockets.
pub struct Peers {
    /// The device queues.
    pub dev: QueueDevice,
    iface: Interface,
    /// The sockets.
    pub sockets: SocketSet<'static>,
    /// The senders.
    pub senders: Vec<Sender>,
}

fn sinstant(ns: u64) -> SInstant {
    SInstant::from_micros((ns / 1000) as i64)
}

impl Peers {
    /// `n` senders of `bytes` each from `local` to `target`, seeded.
    pub fn new(
        seed: u64,
        local: IpAddress,
        target: (IpAddress, u16),
        specs: &[(u64, Option<u64>, usize, bool)],
        mtu: usize,
    ) -> Peers {
        let mut dev = QueueDevice { mtu, ..QueueDevice::default() };
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut dev, SInstant::from_micros(0));
        let prefix = if matches!(local, IpAddress::Ipv4(_)) { 24 } else { 64 };
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(local, prefix));
        });
        let mut sockets = SocketSet::new(Vec::new());
        let mut senders = Vec::new();
        for (i, &(total, reset_after, buf, echo)) in specs.iter().enumerate() {
            let rx = tcp::SocketBuffer::new(vec![0; if echo { 65536 } else { 4096 }]);
            let tx = tcp::SocketBuffer::new(vec![0; buf]);
            let mut s = tcp::Socket::new(rx, tx);
            s.set_nagle_enabled(false);
            if echo {
                // smoltcp's delayed ACK is not among the deadlines `poll_at` reports, so a
                // receiving peer would sit on its ACK until some other timer woke it (against
                // our Nagle, for seconds): it ACKs at once instead.
                s.set_ack_delay(None);
            }
            let port = 40000 + i as u16;
            let _ = s.connect(iface.context(), target, port);
            let handle = sockets.add(s);
            senders.push(Sender {
                handle,
                port,
                total,
                sent: 0,
                stream: Stream::new(seed ^ ((i as u64 + 1) << 40)),
                closed: false,
                reset_after,
                echo,
                received: 0,
                rx_mismatch: None,
                ignore_rx: false,
            });
        }
        Peers { dev, iface, sockets, senders }
    }

    /// Feeds the sockets and polls smoltcp at `now_ns`.
    pub fn poll(&mut self, now_ns: u64) {
        let now = sinstant(now_ns);
        let mut buf = [0u8; 16384];
        for s in &mut self.senders {
            let sock = self.sockets.get_mut::<tcp::Socket>(s.handle);
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
            if self.iface.poll(now, &mut self.dev, &mut self.sockets) == smoltcp::iface::PollResult::None {
                break;
            }
        }
    }

    /// When smoltcp next wants to be polled (ns).
    pub fn poll_at(&mut self, now_ns: u64) -> Option<u64> {
        self.iface.poll_at(sinstant(now_ns), &self.sockets).map(|t| (t.total_micros().max(0) as u64) * 1000)
    }

    /// The state of sender `i`.
    pub fn state(&self, i: usize) -> tcp::State {
        self.sockets.get::<tcp::Socket>(self.senders[i].handle).state()
    }
}
