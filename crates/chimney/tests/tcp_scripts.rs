//! Scripted TCP scenarios in the spirit of packetdrill, run against the engine with the
//! contract verifier in strict mode. Each `tests/scripts/*.pkt` file is one scenario; see
//! `tests/scripts/README.md` for the language.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use chimney::contract::{ApiMisuse, ConnId, Delivery, DeliveryConfig, OffloadTarget, Verifier, VerifierMode};
use chimney::engine::{Engine, EngineConfig, EngineEvent, SynCookies};
use chimney::ndis::{DisconnectKind, TcpOffloadEvent, TcpUploadReason};
use chimney::tcp::TcpDrop;
use chimney::testkit::host::{AppHost, AppPolicy, IndicationPolicy};
use chimney::testkit::peer::Peer as TestPeer;
use chimney::wire::{self, flags, Flags, TcpOptions, WireError};
use chimney::Instant;

/// The canonical stream byte at offset `i` (data the peer sends).
fn byte(i: u64) -> u8 {
    (i.wrapping_mul(2654435761) >> 11) as u8
}

fn alt_byte(i: u64) -> u8 {
    !byte(i)
}

/// The canonical byte at offset `i` of what the host sends (`send` command).
fn sbyte(i: u64) -> u8 {
    (i.wrapping_mul(40503).wrapping_add(17) >> 5) as u8 ^ 0xA5
}

struct Run {
    name: String,
    engine: Engine<Verifier<Delivery>>,
    host: AppHost,
    now: Instant,
    local: SocketAddr,
    remote: SocketAddr,
    irs: u32,
    iss: Option<u32>,
    conn: Option<ConnId>,
    out: VecDeque<Vec<u8>>,
    events_seen: usize,
    line: usize,
    corrupt_next: bool,
    /// The TSval of the last packet we expected (`ecr *` on an inbound packet echoes it).
    last_tsval: u32,
    /// Bytes the host posted as sends so far (`send`).
    send_posted: u64,
    serial: u64,
}

#[derive(Debug, Default)]
struct Pkt {
    flags: Flags,
    seq: u32,
    end: u32,
    len: u32,
    ack: Option<u32>,
    win: Option<u32>,
    opts: Option<Vec<String>>,
    alt: Option<(u32, u32)>,
    /// Urgent pointer (`urg N`).
    urg: u16,
    /// Addresses other than the script's pair (`src A`, `sport P`, `dst A`, `dport P`).
    src: Option<std::net::IpAddr>,
    sport: Option<u16>,
    dst: Option<std::net::IpAddr>,
    dport: Option<u16>,
}

fn parse_flags(s: &str) -> Flags {
    let mut f = Flags::NONE;
    for c in s.chars() {
        f |= match c {
            'S' => flags::SYN,
            'F' => flags::FIN,
            'R' => flags::RST,
            'P' => flags::PSH,
            'U' => flags::URG,
            '.' => flags::ACK,
            _ => panic!("bad flag {c}"),
        };
    }
    f
}

fn parse_pkt(words: &[&str], rest_opts: Option<&str>) -> Pkt {
    let mut p = Pkt { flags: parse_flags(words[0]), ..Pkt::default() };
    let range = words[1];
    let (se, len) = range.split_once('(').expect("seq:end(len)");
    let (s, e) = se.split_once(':').expect("seq:end");
    p.seq = s.parse().expect("seq");
    p.end = e.parse().expect("end");
    p.len = len.trim_end_matches(')').parse().expect("len");
    let mut i = 2;
    while i < words.len() {
        match words[i] {
            "ack" => {
                p.ack = Some(words[i + 1].parse().expect("ack"));
                i += 2;
            }
            "win" => {
                p.win = if words[i + 1] == "*" { None } else { Some(words[i + 1].parse().expect("win")) };
                i += 2;
            }
            "alt" => {
                p.alt = Some((p.seq, p.end));
                if let Some((a, b)) = words.get(i + 1).and_then(|w| w.split_once(':')) {
                    if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                        p.alt = Some((a, b));
                        i += 1;
                    }
                }
                i += 1;
            }
            "urg" => {
                p.urg = words[i + 1].parse().expect("urgent pointer");
                i += 2;
            }
            "src" => {
                p.src = Some(words[i + 1].parse().expect("src address"));
                i += 2;
            }
            "dst" => {
                p.dst = Some(words[i + 1].parse().expect("dst address"));
                i += 2;
            }
            "sport" => {
                p.sport = Some(words[i + 1].parse().expect("sport"));
                i += 2;
            }
            "dport" => {
                p.dport = Some(words[i + 1].parse().expect("dport"));
                i += 2;
            }
            w => panic!("unknown packet word {w}"),
        }
    }
    p.opts = rest_opts.map(|o| o.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect());
    p
}

impl Run {
    fn new(name: &str, cfg_lines: &[(String, String)]) -> Run {
        let mut ecfg = EngineConfig::default();
        let mut dcfg = DeliveryConfig::default();
        let mut v6 = false;
        let mut irs = 1_000_000u32;
        for (k, v) in cfg_lines {
            match k.as_str() {
                "irs" => irs = v.parse().unwrap(),
                "wnd" => ecfg.tcp.rcv_wnd = v.parse().unwrap(),
                "mss" => ecfg.tcp.mss = v.parse().unwrap(),
                "ack_freq" => ecfg.tcp.ack_frequency = v.parse().unwrap(),
                "delack_ms" => ecfg.tcp.delayed_ack = Duration::from_millis(v.parse().unwrap()),
                "ooo_ranges" => ecfg.tcp.max_ooo_ranges = v.parse().unwrap(),
                "ind_size" => ecfg.tcp.rcv_indication_size = v.parse().unwrap(),
                "push_ms" => dcfg.push_timeout = Duration::from_millis(v.parse().unwrap()),
                "ka_ms" => ecfg.tcp.keepalive = Some(Duration::from_millis(v.parse().unwrap())),
                "ka_interval_ms" => ecfg.tcp.ka_interval = Duration::from_millis(v.parse().unwrap()),
                "ka_probes" => ecfg.tcp.ka_probe_count = v.parse().unwrap(),
                "challenge_ka_ms" => ecfg.tcp.challenge_keepalive = Duration::from_millis(v.parse().unwrap()),
                "defer_acks" => ecfg.tcp.defer_acks = v == "1",
                "v6" => v6 = v == "1",
                "syn_upload" => ecfg.tcp.syn_at_rcv_nxt_uploads = v == "1",
                "syncookies" => {
                    ecfg.listener.syncookies = match v.as_str() {
                        "always" => SynCookies::Always,
                        "never" => SynCookies::Never,
                        _ => SynCookies::Auto,
                    }
                }
                "max_embryos" => ecfg.listener.max_embryos = v.parse().unwrap(),
                "nagle" => ecfg.tcp.nagle = v == "1",
                "rto_min_ms" => ecfg.tcp.rto_min = Duration::from_millis(v.parse().unwrap()),
                "max_retrans" => ecfg.tcp.max_retransmits = v.parse().unwrap(),
                "cc" => {
                    ecfg.tcp.congestion = match v.as_str() {
                        "reno" => chimney::tcp::CongestionAlgorithm::NewReno,
                        _ => chimney::tcp::CongestionAlgorithm::Cubic,
                    }
                }
                "junk_per_sec" => ecfg.junk_replies_per_sec = v.parse().unwrap(),
                _ => panic!("{name}: unknown config {k}"),
            }
        }
        let (local, remote): (SocketAddr, SocketAddr) = if v6 {
            ("[fd00::1]:5001".parse().unwrap(), "[fd00::2]:40000".parse().unwrap())
        } else {
            ("198.18.0.1:5001".parse().unwrap(), "198.18.0.2:40000".parse().unwrap())
        };
        ecfg.listen = vec![local];
        ecfg.prefixes = vec![wire::Prefix { addr: local.ip(), len: if v6 { 64 } else { 24 } }];
        let push = dcfg.push_timeout;
        let delivery = Verifier::new(Delivery::new(dcfg), VerifierMode::Strict);
        delivery.core().set_push_timeout(Some(push));
        let mut host = AppHost::new();
        host.set_policy(ConnId(0), AppPolicy { keep_posted: 0, repost_in_completion: false, ..AppPolicy::default() });
        Run {
            name: name.to_string(),
            engine: Engine::new(ecfg, delivery),
            host,
            now: Instant::ZERO,
            local,
            remote,
            irs,
            iss: None,
            conn: None,
            out: VecDeque::new(),
            events_seen: 0,
            line: 0,
            corrupt_next: false,
            last_tsval: 0,
            send_posted: 0,
            serial: 0,
        }
    }

    fn fail(&self, msg: impl AsRef<str>) -> ! {
        panic!("{} line {}: {}", self.name, self.line, msg.as_ref());
    }

    fn drain(&mut self) {
        let mut buf = Vec::new();
        while self.engine.poll_transmit(&mut buf) {
            self.out.push_back(std::mem::take(&mut buf));
        }
        while let Some(ev) = self.engine.poll_event() {
            if let EngineEvent::Offloaded { conn, .. } = ev {
                self.conn = Some(conn);
                let p = self.host.policy(ConnId(0));
                self.host.set_policy(conn, p);
            }
        }
    }

    fn advance_to(&mut self, t: Instant) {
        if !self.out.is_empty() {
            let p = wire::parse(&self.out[0]).unwrap();
            self.fail(format!("unexpected packet before time advance: {}", describe(&p, self.iss, self.irs)));
        }
        while let Some(d) = self.engine.poll_timeout() {
            if d > t {
                break;
            }
            self.now = d.max(self.now);
            self.engine.handle_timeout(self.now, &mut self.host);
            self.drain();
        }
        self.now = t;
    }

    fn opts_in(&self, list: &[String]) -> TcpOptions {
        let mut o = TcpOptions::default();
        for item in list {
            let w: Vec<&str> = item.split_whitespace().collect();
            match w[0] {
                "mss" => o.mss = Some(w[1].parse().unwrap()),
                "wscale" => o.window_scale = Some(w[1].parse().unwrap()),
                "sackOK" => o.sack_permitted = true,
                "nop" => {}
                "TS" => {
                    let ecr = if w[4] == "*" { self.last_tsval } else { w[4].parse().unwrap_or(0) };
                    o.timestamps = Some((w[2].parse().unwrap(), ecr));
                }
                "sack" => {
                    // Blocks relative to our ISS, like outbound sequence numbers.
                    let iss = self.iss.unwrap_or(0);
                    let mut blocks = [(0u32, 0u32); 4];
                    for (k, b) in w[1..].iter().enumerate().take(4) {
                        let (l, r) = b.split_once(':').unwrap();
                        let (l, r): (u32, u32) = (l.parse().unwrap(), r.parse().unwrap());
                        blocks[k] = (iss.wrapping_add(l), iss.wrapping_add(r));
                    }
                    o.sack = Some((blocks, (w.len() - 1).min(4) as u8));
                }
                other => self.fail(format!("unknown inbound option {other}")),
            }
        }
        o
    }

    fn inject(&mut self, p: &Pkt) {
        if !self.out.is_empty() {
            let q = wire::parse(&self.out[0]).unwrap();
            self.fail(format!("unexpected packet before injection: {}", describe(&q, self.iss, self.irs)));
        }
        let iss = self.iss.unwrap_or(0);
        let payload: Vec<u8> = (0..p.len as u64)
            .map(|i| {
                let off = (p.seq as u64).wrapping_sub(1).wrapping_add(i);
                let rel = p.seq.wrapping_add(i as u32);
                if p.alt.is_some_and(|(a, b)| rel.wrapping_sub(a) < b.wrapping_sub(a)) {
                    alt_byte(off)
                } else {
                    byte(off)
                }
            })
            .collect();
        let opts = self.opts_in(p.opts.as_deref().unwrap_or(&[]));
        // chimney's shared test peer builds the segment (the script gives every field).
        let local = SocketAddr::new(p.dst.unwrap_or(self.local.ip()), p.dport.unwrap_or(self.local.port()));
        let remote = SocketAddr::new(p.src.unwrap_or(self.remote.ip()), p.sport.unwrap_or(self.remote.port()));
        let mut peer = TestPeer::new(local, remote, self.irs);
        peer.ip_id = 1;
        peer.urgent = p.urg;
        let mut buf = peer.segment_with(
            self.irs.wrapping_add(p.seq),
            p.ack.map_or(0, |a| iss.wrapping_add(a)),
            p.flags,
            p.win.unwrap_or(65535) as u16,
            opts,
            &payload,
        );
        if std::mem::take(&mut self.corrupt_next) {
            let n = buf.len();
            buf[n - 1] ^= 0x55;
        }
        self.engine.handle_packet(self.now, &buf, &mut self.host);
        self.drain();
    }

    fn expect(&mut self, p: &Pkt) {
        let Some(raw) = self.out.pop_front() else { self.fail("expected a packet, none was sent") };
        let s = wire::parse(&raw).unwrap_or_else(|e| self.fail(format!("sent an unparsable packet: {e:?}")));
        // Our ISN is learnt from the SYN-ACK to the script's peer; one to another address or
        // port (`sport`, `src`) is read relative to its own ISN.
        let to_main = SocketAddr::new(s.dst, s.dst_port) == self.remote;
        if s.has(flags::SYN) && self.iss.is_none() && to_main {
            self.iss = Some(s.seq.0);
        }
        let iss = if s.has(flags::SYN) && !to_main { s.seq.0 } else { self.iss.unwrap_or(0) };
        if let Some((v, _)) = s.options.timestamps {
            self.last_tsval = v;
        }
        let got = describe(&s, self.iss, self.irs);
        let rel_seq = s.seq.0.wrapping_sub(iss);
        let mut bad = Vec::new();
        if s.flags != p.flags {
            bad.push("flags");
        }
        if rel_seq != p.seq || s.payload.len() as u32 != p.len {
            bad.push("seq");
        }
        // Data the target sends is the host's send stream, byte for byte.
        let wrong =
            s.payload.iter().enumerate().any(|(i, &b)| b != sbyte(u64::from(rel_seq.wrapping_sub(1)) + i as u64));
        if wrong {
            bad.push("payload");
        }
        if let Some(a) = p.ack {
            if s.ack.0.wrapping_sub(self.irs) != a {
                bad.push("ack");
            }
        }
        if let Some(w) = p.win {
            if u32::from(s.window) != w {
                bad.push("win");
            }
        }
        if let Some(list) = &p.opts {
            for item in list {
                let w: Vec<&str> = item.split_whitespace().collect();
                let ok = match w[0] {
                    "mss" => s.options.mss.map(|m| m.to_string()) == Some(w[1].to_string()),
                    "wscale" => s.options.window_scale.is_some_and(|x| w[1] == "*" || x.to_string() == w[1]),
                    "sackOK" => s.options.sack_permitted,
                    "nop" => true,
                    "noTS" => s.options.timestamps.is_none(),
                    "nosack" => s.options.sack.is_none(),
                    "TS" => s.options.timestamps.is_some_and(|(v, e)| {
                        (w[2] == "*" || w[2] == v.to_string()) && (w[4] == "*" || w[4] == e.to_string())
                    }),
                    "sack" => {
                        let want: Vec<(u32, u32)> = w[1..]
                            .iter()
                            .map(|b| {
                                let (l, r) = b.split_once(':').unwrap();
                                (l.parse().unwrap(), r.parse().unwrap())
                            })
                            .collect();
                        let have: Vec<(u32, u32)> = s.options.sack.map_or(vec![], |(b, k)| {
                            b[..k as usize]
                                .iter()
                                .map(|(l, r)| (l.wrapping_sub(self.irs), r.wrapping_sub(self.irs)))
                                .collect()
                        });
                        have == want
                    }
                    other => self.fail(format!("unknown expected option {other}")),
                };
                if !ok {
                    bad.push("options");
                }
            }
        }
        if !bad.is_empty() {
            self.fail(format!("packet differs in {bad:?}: got {got}"));
        }
    }

    fn conn(&self) -> ConnId {
        self.conn.unwrap_or_else(|| self.fail("no offloaded connection"))
    }

    fn command(&mut self, w: &[&str]) {
        match w[0] {
            "post" => {
                let conn = self.conn();
                let size: usize = w[1].parse().unwrap();
                let mut count = 1;
                let mut p = AppPolicy { post_size: size, repost_in_completion: false, ..self.host.policy(conn) };
                for x in &w[2..] {
                    if let Some(k) = x.strip_prefix('x') {
                        count = k.parse().unwrap();
                    } else if *x == "nopush" {
                        p.no_push = true;
                    } else if *x == "repost" {
                        p.repost_in_completion = true;
                    } else if let Some(m) = x.strip_prefix("mdls=") {
                        p.mdls = m.parse().unwrap();
                    } else {
                        self.fail(format!("bad post word {x}"));
                    }
                }
                let chain = (0..count).map(|_| self.host.new_request(&p)).collect();
                p.keep_posted = count;
                self.host.set_policy(conn, p);
                self.engine.receive(self.now, conn, chain, &mut self.host).unwrap();
                self.drain();
            }
            "send" => {
                // `send N [xK]`: K send NBLs of N bytes of the send stream (two MDLs each).
                let conn = self.conn();
                let size: usize = w[1].parse().unwrap();
                let count: usize = w.get(2).and_then(|x| x.strip_prefix('x')).map_or(1, |k| k.parse().unwrap());
                let mut chain = chimney::ndis::NblChain::new();
                for _ in 0..count {
                    let bytes: Vec<u8> = (0..size as u64).map(|i| sbyte(self.send_posted + i)).collect();
                    self.send_posted += size as u64;
                    self.serial += 1;
                    let cut = bytes.len() / 2;
                    let nb = chimney::ndis::NetBuffer::new(vec![
                        chimney::ndis::Mdl::from_bytes(bytes[..cut].to_vec()),
                        chimney::ndis::Mdl::from_bytes(bytes[cut..].to_vec()),
                    ]);
                    let id = chimney::ndis::NblId::new(chimney::ndis::PoolTag::Host, (1 << 40) + self.serial);
                    chain.push_back(chimney::ndis::NetBufferList::new(id, nb));
                }
                self.engine.send(self.now, conn, chain, &mut self.host).unwrap();
                self.drain();
            }
            "app" => {
                let conn = self.conn.unwrap_or(ConnId(0));
                let mut p = self.host.policy(conn);
                p.indication = match w[1] {
                    "refuse" => IndicationPolicy::Refuse,
                    "accept" if w.len() > 2 => IndicationPolicy::AcceptUpTo(w[2].parse().unwrap()),
                    "accept" => IndicationPolicy::AcceptAll,
                    x => self.fail(format!("bad app policy {x}")),
                };
                self.host.set_policy(conn, p.clone());
                self.host.set_policy(ConnId(0), p);
            }
            "return" => {
                self.host.return_held(self.now, &mut self.engine);
                self.drain();
            }
            "disconnect" => {
                let kind = if w[1] == "abortive" { DisconnectKind::Abortive } else { DisconnectKind::Graceful };
                let c = self.conn();
                self.engine.disconnect(self.now, c, kind, chimney::ndis::NblChain::new(), &mut self.host).unwrap();
                self.drain();
            }
            "terminate" => {
                let c = self.conn();
                let d = self.engine.terminate_offload(self.now, c, &mut self.host).unwrap();
                if w.len() > 2 && w[1] == "rcvnxt" {
                    let want: u32 = w[2].parse().unwrap();
                    if d.rcv_nxt.wrapping_sub(self.irs) != want {
                        self.fail(format!("terminate RcvNxt {} (rel), want {want}", d.rcv_nxt.wrapping_sub(self.irs)));
                    }
                }
                self.host.hold(d.buffered_data);
                self.host.return_held(self.now, &mut self.engine);
                self.drain();
            }
            "reoffload" => {
                // Terminate, hand BufferedData to the application, offload again at once.
                let c = self.conn();
                let mut n = self.engine.negotiated(c).unwrap();
                let d = self.engine.terminate_offload(self.now, c, &mut self.host).unwrap();
                self.host.take_uploaded(c, d.buffered_data);
                self.host.return_held(self.now, &mut self.engine);
                n.rcv_nxt = d.rcv_nxt;
                n.rcv_adv = d.rcv_nxt.wrapping_add(d.rcv_wnd);
                n.ts_recent = n.ts_recent.map(|_| d.ts_recent);
                self.conn = None;
                match self.engine.reoffload(self.now, n.clone(), &mut self.host) {
                    Ok(id) => {
                        // The 4-tuple is offloaded now: a second re-offload is API misuse.
                        let again = self.engine.reoffload(self.now, n, &mut self.host);
                        if !matches!(again, Err(ApiMisuse::ConnectionExists(x)) if x == id) {
                            self.fail(format!("second re-offload of one 4-tuple: {again:?}"));
                        }
                    }
                    Err(e) => self.fail(format!("re-offload refused: {e}")),
                }
                self.drain();
            }
            "stop_listening" => {
                let want: usize = w[1].parse().unwrap();
                let n = self.engine.stop_listening();
                if n != want {
                    self.fail(format!("stop_listening reset {n} half-open connections, want {want}"));
                }
                self.drain();
            }
            "flush" => {
                self.engine.flush_acks(self.now, &mut self.host);
                self.drain();
            }
            "corrupt" => self.corrupt_next = true,
            "expect" => self.expect_cmd(&w[1..]),
            x => self.fail(format!("unknown command {x}")),
        }
    }

    fn expect_cmd(&mut self, w: &[&str]) {
        match w[0] {
            "sent" => {
                // Send bytes the peer acknowledged, completed to the host.
                let want: u64 = w[1].parse().unwrap();
                let got = self.conn.map_or(0, |c| self.host.conn(c).sent);
                if got != want {
                    self.fail(format!("sent (acknowledged, completed) {got} bytes, want {want}"));
                }
            }
            "send_status" => {
                let want: u64 = w[2].parse().unwrap();
                let status = match w[1] {
                    "success" => chimney::ndis::NdisStatus::Success,
                    "aborted" => chimney::ndis::NdisStatus::RequestAborted,
                    "upload" => chimney::ndis::NdisStatus::UploadInProgress,
                    x => self.fail(format!("bad send status {x}")),
                };
                let got = self.conn.map_or(0, |c| self.host.conn(c).sends_with_status(status));
                if got != want {
                    self.fail(format!("{got} send NBLs completed {}, want {want}", w[1]));
                }
            }
            "disconnect_status" => {
                let got = self.conn.and_then(|c| self.host.conn(c).disconnect_status);
                let want = match w[1] {
                    "success" => Some(chimney::ndis::NdisStatus::Success),
                    "aborted" => Some(chimney::ndis::NdisStatus::RequestAborted),
                    "none" => None,
                    x => self.fail(format!("bad disconnect status {x}")),
                };
                if got != want {
                    self.fail(format!("disconnect completed {got:?}, want {want:?}"));
                }
            }
            "delivered" => {
                let want: u64 = w[1].parse().unwrap();
                let got = self.conn.map_or(0, |c| self.host.conn(c).bytes);
                if got != want {
                    self.fail(format!("delivered {got} bytes, want {want}"));
                }
            }
            "event" => {
                let evs = self.conn.map(|c| self.host.conn(c).events).unwrap_or_default();
                let new = &evs[self.events_seen.min(evs.len())..];
                let want = match w[1] {
                    "none" => None,
                    "disconnect" => Some(TcpOffloadEvent::Disconnect),
                    "abort" => Some(TcpOffloadEvent::Abort),
                    "urgent" => Some(TcpOffloadEvent::Retrieve(TcpUploadReason::ReceivedUrgentData)),
                    "invalid" => Some(TcpOffloadEvent::Retrieve(TcpUploadReason::InvalidState)),
                    "upload" => Some(TcpOffloadEvent::Retrieve(TcpUploadReason::UploadRequested)),
                    "timeout" => Some(TcpOffloadEvent::Retrieve(TcpUploadReason::TimeoutExpiration)),
                    x => self.fail(format!("bad event {x}")),
                };
                match (want, new.first()) {
                    (None, None) => {}
                    (Some(w), Some(g)) if w == *g => self.events_seen += 1,
                    (w, g) => self.fail(format!("event {g:?}, want {w:?}")),
                }
            }
            "drop" => {
                let want: u64 = w[2].parse().unwrap();
                let d = TcpDrop::ALL.iter().find(|d| format!("{d:?}") == w[1]).unwrap_or_else(|| self.fail("bad drop"));
                let got = self.engine.stats().tcp_drops(*d);
                if got != want {
                    self.fail(format!("drop {} = {got}, want {want}", w[1]));
                }
            }
            "wire" => {
                let want: u64 = w[2].parse().unwrap();
                let e = WireError::ALL.iter().find(|e| e.name() == w[1]).unwrap_or_else(|| self.fail("bad wire"));
                let got = self.engine.stats().wire_drops(*e);
                if got != want {
                    self.fail(format!("wire {} = {got}, want {want}", w[1]));
                }
            }
            "ooo" => {
                let (bytes, ranges) = self.engine.conn(self.conn()).unwrap().ooo();
                let want: (u64, usize) = (w[1].parse().unwrap(), w[2].parse().unwrap());
                if (bytes, ranges) != want {
                    self.fail(format!("ooo ({bytes}, {ranges}), want {want:?}"));
                }
            }
            "defense" => {
                let want: u64 = w[2].parse().unwrap();
                let t = self.engine.stats().defense_table();
                let got = t.iter().find(|(k, _)| k == w[1]).map_or(0, |(_, n)| *n);
                if got != want {
                    self.fail(format!("defense {} = {got}, want {want} ({t:?})", w[1]));
                }
            }
            "suppressed" => {
                let want: u64 = w[2].parse().unwrap();
                let s = self.engine.stats();
                let got = match w[1] {
                    "conn" => s.replies_suppressed_conn,
                    "global" => s.replies_suppressed_global,
                    x => self.fail(format!("bad suppressed kind {x}")),
                };
                if got != want {
                    self.fail(format!("suppressed {} = {got}, want {want}", w[1]));
                }
            }
            "state" => {
                let s = self.engine.conn(self.conn()).map(|c| format!("{:?}", c.state())).unwrap_or("gone".into());
                if s != w[1] {
                    self.fail(format!("state {s}, want {}", w[1]));
                }
            }
            "offloaded" => {
                if self.conn.is_none() {
                    self.fail("no connection offloaded");
                }
            }
            x => self.fail(format!("bad expect {x}")),
        }
    }

    fn finish(&mut self) {
        if !self.out.is_empty() {
            let q = wire::parse(&self.out[0]).unwrap();
            self.fail(format!("unexpected packet at end: {}", describe(&q, self.iss, self.irs)));
        }
        // The application's stream is the canonical stream (first arrival wins).
        if let Some(c) = self.conn {
            let got = self.host.conn(c).stream;
            let want: Vec<u8> = (0..got.len() as u64).map(byte).collect();
            if got != want {
                let at = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(0);
                self.fail(format!("application stream differs at byte {at}"));
            }
        }
        let v = self.engine.delivery().core().violations();
        assert!(v.is_empty(), "{}: contract violations {v:?}", self.name);
    }
}

fn describe(s: &wire::Segment<'_>, iss: Option<u32>, irs: u32) -> String {
    let f = [
        (flags::SYN, 'S'),
        (flags::FIN, 'F'),
        (flags::RST, 'R'),
        (flags::PSH, 'P'),
        (flags::URG, 'U'),
        (flags::ACK, '.'),
    ]
    .iter()
    .filter(|(b, _)| s.flags.contains(*b))
    .map(|(_, c)| *c)
    .collect::<String>();
    let seq = s.seq.0.wrapping_sub(iss.unwrap_or(s.seq.0));
    format!(
        "{f} {seq}:{}({}) ack {} win {} {:?}",
        seq.wrapping_add(s.payload.len() as u32),
        s.payload.len(),
        s.ack.0.wrapping_sub(irs),
        s.window,
        s.options
    )
}

fn run_script(path: &Path) {
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let text = std::fs::read_to_string(path).unwrap();
    let cfg: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("config "))
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap_or((l, ""));
            (k.to_string(), v.trim().to_string())
        })
        .collect();
    let mut r = Run::new(&name, &cfg);
    // `handshake` expands to the standard passive open (all options); `handshake plain`
    // offers only MSS.
    let mut lines: Vec<(usize, String)> = Vec::new();
    for (i, l) in text.lines().enumerate() {
        match l.trim() {
            "handshake" => {
                for x in [
                    "< S 0:0(0) win 65535 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>",
                    "> S. 0:0(0) ack 1 win * <mss 1460,sackOK,TS val * ecr 100,wscale *>",
                    "< . 1:1(0) ack 1 win 502 <TS val 101 ecr 0>",
                    "expect offloaded",
                ] {
                    lines.push((i, x.to_string()));
                }
            }
            "handshake plain" => {
                for x in [
                    "< S 0:0(0) win 65535 <mss 1460>",
                    "> S. 0:0(0) ack 1 win * <mss 1460,noTS>",
                    "< . 1:1(0) ack 1 win 65535",
                    "expect offloaded",
                ] {
                    lines.push((i, x.to_string()));
                }
            }
            _ => lines.push((i, l.to_string())),
        }
    }
    for (i, raw) in lines.iter().map(|(i, l)| (*i, l.as_str())) {
        r.line = i + 1;
        let line = raw.split('#').next().unwrap().trim();
        if line.is_empty() || line.starts_with("config ") {
            continue;
        }
        let (body, opts) = split_opts(line);
        let mut words: Vec<&str> = body.split_whitespace().collect();
        if let Some(t) = words.first().and_then(|w| w.strip_prefix('+')) {
            let secs: f64 = t.parse().unwrap();
            let target = r.now + Duration::from_nanos((secs * 1e9).round() as u64);
            r.advance_to(target);
            words.remove(0);
        }
        if words.is_empty() {
            continue;
        }
        match words[0] {
            "<" => {
                let p = parse_pkt(&words[1..], opts.as_deref());
                r.inject(&p);
            }
            ">" if words.get(1) == Some(&"none") => {
                if !r.out.is_empty() {
                    let q = wire::parse(&r.out[0]).unwrap();
                    r.fail(format!("expected nothing, got {}", describe(&q, r.iss, r.irs)));
                }
            }
            ">" => {
                let p = parse_pkt(&words[1..], opts.as_deref());
                r.expect(&p);
            }
            _ => r.command(&words),
        }
    }
    r.finish();
}

/// Splits "… <opt,opt>" into the packet words and the option list.
fn split_opts(line: &str) -> (String, Option<String>) {
    // The direction marker is the first token; options start at the last '<'.
    let mut chars = line.trim_start();
    let mut prefix = String::new();
    if let Some(rest) = chars.strip_prefix('+') {
        let end = rest.find(' ').unwrap_or(rest.len());
        prefix = format!("+{} ", &rest[..end]);
        chars = rest[end..].trim_start();
    }
    let (dir, rest) = chars.split_at(chars.find(' ').unwrap_or(chars.len()));
    match rest.rfind('<') {
        Some(i) if dir == "<" || dir == ">" => {
            let opts = rest[i + 1..].trim().trim_end_matches('>').to_string();
            (format!("{prefix}{dir} {}", &rest[..i]), Some(opts))
        }
        _ => (line.to_string(), None),
    }
}

/// One test per script, named after its file, so that a failure names the scenario.
macro_rules! scripts {
    ($($name:ident => $file:literal,)*) => {
        $(
            #[test]
            fn $name() {
                run_script(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts").join($file));
            }
        )*

        /// Every `.pkt` file in tests/scripts has its test above (a new script without one
        /// fails here).
        #[test]
        fn every_script_has_a_test() {
            let listed: Vec<&str> = vec![$($file),*];
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts");
            let mut found: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".pkt"))
                .collect();
            found.sort();
            assert_eq!(found, listed, "add the new script to the scripts! list in tcp_scripts.rs");
        }
    };
}

scripts! {
    s01_handshake_options => "01_handshake_options.pkt",
    s02_in_order_delayed_ack => "02_in_order_delayed_ack.pkt",
    s03_handshake_plain => "03_handshake_plain.pkt",
    s04_ack_every_second_segment => "04_ack_every_second_segment.pkt",
    s05_delayed_ack_frequency_config => "05_delayed_ack_frequency_config.pkt",
    s06_reordered_sack_and_gap_fill => "06_reordered_sack_and_gap_fill.pkt",
    s07_duplicate_segment => "07_duplicate_segment.pkt",
    s08_overlap_old_bytes_lose => "08_overlap_old_bytes_lose.pkt",
    s09_tiny_segments => "09_tiny_segments.pkt",
    s10_window_fills_and_zero_window_probe => "10_window_fills_and_zero_window_probe.pkt",
    s11_window_scale_14 => "11_window_scale_14.pkt",
    s12_sequence_wrap => "12_sequence_wrap.pkt",
    s13_paws => "13_paws.pkt",
    s14_tsval_wrap => "14_tsval_wrap.pkt",
    s15_peer_omits_timestamps => "15_peer_omits_timestamps.pkt",
    s16_ts_recent_update_rule => "16_ts_recent_update_rule.pkt",
    s17_sack_blocks_most_recent_first => "17_sack_blocks_most_recent_first.pkt",
    s18_sack_four_blocks_without_timestamps => "18_sack_four_blocks_without_timestamps.pkt",
    s19_fin_in_order => "19_fin_in_order.pkt",
    s20_fin_with_data => "20_fin_with_data.pkt",
    s21_fin_out_of_order => "21_fin_out_of_order.pkt",
    s22_fin_beyond_window => "22_fin_beyond_window.pkt",
    s23_data_after_fin => "23_data_after_fin.pkt",
    s24_rst_exact => "24_rst_exact.pkt",
    s25_rst_in_window_challenge => "25_rst_in_window_challenge.pkt",
    s26_rst_out_of_window => "26_rst_out_of_window.pkt",
    s27_syn_on_established => "27_syn_on_established.pkt",
    s28_urgent_data => "28_urgent_data.pkt",
    s29_push_timer => "29_push_timer.pkt",
    s30_push_flag_completes => "30_push_flag_completes.pkt",
    s31_graceful_close_passive => "31_graceful_close_passive.pkt",
    s32_fin_retransmitted => "32_fin_retransmitted.pkt",
    s33_abortive_disconnect => "33_abortive_disconnect.pkt",
    s34_buffered_data_at_offload => "34_buffered_data_at_offload.pkt",
    s35_forwarded_segment => "35_forwarded_segment.pkt",
    s36_unknown_connection_rst => "36_unknown_connection_rst.pkt",
    s37_corrupt_checksum => "37_corrupt_checksum.pkt",
    s38_ipv6 => "38_ipv6.pkt",
    s39_ooo_range_cap => "39_ooo_range_cap.pkt",
    s40_segment_beyond_window_trimmed => "40_segment_beyond_window_trimmed.pkt",
    s41_ack_of_unsent_data => "41_ack_of_unsent_data.pkt",
    s42_no_ack_flag => "42_no_ack_flag.pkt",
    s43_handshake_retransmissions => "43_handshake_retransmissions.pkt",
    s44_window_update_after_consume => "44_window_update_after_consume.pkt",
    s45_ip_fragment_to_host => "45_ip_fragment_to_host.pkt",
    s46_duplicate_ooo_first_sack_block => "46_duplicate_ooo_first_sack_block.pkt",
    s47_fin_before_queued_data => "47_fin_before_queued_data.pkt",
    s48_window_without_scaling_no_ack_storm => "48_window_without_scaling_no_ack_storm.pkt",
    s49_keepalive_dead_peer => "49_keepalive_dead_peer.pkt",
    s50_keepalive_answered => "50_keepalive_answered.pkt",
    s51_challenge_arms_keepalive => "51_challenge_arms_keepalive.pkt",
    s52_challenge_keepalive_stopped => "52_challenge_keepalive_stopped.pkt",
    s53_window_update_repeated => "53_window_update_repeated.pkt",
    s54_reoffload => "54_reoffload.pkt",
    s55_blind_data_old_ack => "55_blind_data_old_ack.pkt",
    s56_ack_on_drain => "56_ack_on_drain.pkt",
    s57_listen_no_syn_no_ack => "57_listen_no_syn_no_ack.pkt",
    s58_listen_no_syn_no_ack_v6 => "58_listen_no_syn_no_ack_v6.pkt",
    s59_max_snd_wnd_from_handshake => "59_max_snd_wnd_from_handshake.pkt",
    s60_no_reflection => "60_no_reflection.pkt",
    s61_no_reflection_v6 => "61_no_reflection_v6.pkt",
    s62_syn_at_rcv_nxt_uploads_option => "62_syn_at_rcv_nxt_uploads_option.pkt",
    s63_junk_replies_spaced => "63_junk_replies_spaced.pkt",
    s64_syn_received_new_isn_and_rst => "64_syn_received_new_isn_and_rst.pkt",
    s65_syn_received_rst_at_rcv_nxt => "65_syn_received_rst_at_rcv_nxt.pkt",
    s66_syncookies_always => "66_syncookies_always.pkt",
    s67_syncookies_when_full => "67_syncookies_when_full.pkt",
    s68_reoffload_reopens_window => "68_reoffload_reopens_window.pkt",
    s69_syncookie_first_segment_lost => "69_syncookie_first_segment_lost.pkt",
    s70_stop_listening_resets_half_open => "70_stop_listening_resets_half_open.pkt",
    s71_urgent_already_taken => "71_urgent_already_taken.pkt",
    s72_syncookies_v6 => "72_syncookies_v6.pkt",
    s73_send_segments_psh_nagle => "73_send_segments_psh_nagle.pkt",
    s74_send_nodelay => "74_send_nodelay.pkt",
    s75_send_rto_backoff_then_upload => "75_send_rto_backoff_then_upload.pkt",
    s76_send_fast_retransmit_newreno => "76_send_fast_retransmit_newreno.pkt",
    s77_send_sack_recovery => "77_send_sack_recovery.pkt",
    s78_send_zero_window_persist => "78_send_zero_window_persist.pkt",
    s79_send_then_graceful_fin => "79_send_then_graceful_fin.pkt",
    s80_send_ack_of_unsent_data => "80_send_ack_of_unsent_data.pkt",
    s81_send_reset_mid_send => "81_send_reset_mid_send.pkt",
    s82_send_tail_loss_probe => "82_send_tail_loss_probe.pkt",
    s83_send_rtt_from_sack_without_timestamps => "83_send_rtt_from_sack_without_timestamps.pkt",
    s84_keepalive_waits_while_data_is_in_flight => "84_keepalive_waits_while_data_is_in_flight.pkt",
    s85_send_rack_lost_retransmission => "85_send_rack_lost_retransmission.pkt",
    s86_ack_on_drain_quarter_window => "86_ack_on_drain_quarter_window.pkt",
}
