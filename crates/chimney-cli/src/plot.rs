//! `chimney plot FILE.pcap -o FILE.svg`: a tcptrace-style time–sequence graph of one
//! connection from a capture: the sender's data segments (retransmissions in red), the
//! receiver's ACK line, the advertised window's right edge and SACK ranges. Plain SVG (no
//! plotting crate: the picture is a few hundred lines and boxes; `plotters` would add a font
//! stack we do not need). Dense traces are binned per pixel column, so the file stays small.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chimney::contract::schema::Line;
use chimney::contract::trace::Outcome;
use chimney::wire::{self, flags};

/// `chimney plot` flags.
#[derive(clap::Args, Debug)]
pub struct PlotArgs {
    /// A pcap written by `--pcap` (raw IP) or any raw-IP / Ethernet pcap.
    pub pcap: PathBuf,
    /// Where to write the SVG.
    #[arg(short, long)]
    pub out: PathBuf,
    /// Which connection (0 = the first to open; default: the one carrying the most data).
    #[arg(long)]
    pub conn: Option<usize>,
    /// A contract trace of the same run (`--trace`): mark when each posted buffer was
    /// completed and each indication happened.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
}

/// One connection's events, times in seconds from the first packet, sequence numbers
/// relative to the sender's ISN + 1.
#[derive(Debug, Default)]
pub struct Trace {
    /// The sender (client) and receiver addresses.
    pub sender: Option<(SocketAddr, SocketAddr)>,
    /// (time, first byte, end) of each data segment, and whether it lies below the highest
    /// end seen before it (a retransmission, or an original that arrived out of order).
    pub data: Vec<(f64, u64, u64, bool)>,
    /// (time, ack, right window edge) of each receiver segment.
    pub acks: Vec<(f64, u64, u64)>,
    /// (time, left, right) of each SACK block.
    pub sacks: Vec<(f64, u64, u64)>,
    /// The sender's initial sequence number.
    pub isn: Option<u32>,
    /// When the sender's handshake ACK arrived (the moment the target offloads).
    pub handshake_ack: Option<f64>,
    /// From a contract trace: (time, stream offset reached) of each completed receive
    /// request that carried bytes.
    pub completions: Vec<(f64, u64)>,
    /// From a contract trace: (time, stream offset reached) of each indication (refused ones
    /// reach no further).
    pub indications: Vec<(f64, u64)>,
}

/// Reads the IP packets of a pcap (raw IP, or Ethernet with the header stripped).
fn packets(path: &Path) -> Result<Vec<(f64, Vec<u8>)>, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    let mut r = pcap_file::pcap::PcapReader::new(f).map_err(|e| format!("{}: not a pcap ({e})", path.display()))?;
    let eth = r.header().datalink == pcap_file::DataLink::ETHERNET;
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.map_err(|e| format!("{}: {e}", path.display()))?;
        let data = if eth { p.data.get(14..).unwrap_or(&[]).to_vec() } else { p.data.into_owned() };
        out.push((p.timestamp.as_secs_f64(), data));
    }
    Ok(out)
}

/// Extracts connection `which` (or the one with the most data) from a capture.
pub fn trace(path: &Path, which: Option<usize>) -> Result<Trace, String> {
    let pkts = packets(path)?;
    let t0 = pkts.first().map_or(0.0, |p| p.0);
    // Connections in order of their SYN; the SYN's sender is the data sender.
    let mut order: Vec<(SocketAddr, SocketAddr)> = Vec::new();
    let mut bytes: HashMap<(SocketAddr, SocketAddr), u64> = HashMap::new();
    for (_, p) in &pkts {
        let Ok(s) = wire::parse_with(p, wire::TcpChecksum::VouchedByKernel) else { continue };
        let key = (SocketAddr::new(s.src, s.src_port), SocketAddr::new(s.dst, s.dst_port));
        if s.has(flags::SYN) && !s.has(flags::ACK) && !order.contains(&key) {
            order.push(key);
        }
        *bytes.entry(key).or_default() += s.payload.len() as u64;
    }
    let key = match which {
        Some(i) => {
            *order.get(i).ok_or_else(|| format!("--conn {i}: the capture opens {} connection(s)", order.len()))?
        }
        None => *order
            .iter()
            .max_by_key(|k| bytes.get(k).copied().unwrap_or(0))
            .ok_or("no TCP connection opens (no SYN) in the capture")?,
    };
    // Time runs from this connection's SYN.
    let t0 = pkts
        .iter()
        .find(|(_, p)| {
            wire::parse_with(p, wire::TcpChecksum::VouchedByKernel).is_ok_and(|s| {
                s.has(flags::SYN) && (SocketAddr::new(s.src, s.src_port), SocketAddr::new(s.dst, s.dst_port)) == key
            })
        })
        .map_or(t0, |p| p.0);
    let mut t = Trace { sender: Some(key), ..Trace::default() };
    let (mut isn, mut snd_scale, mut rcv_scale, mut high) = (None::<u32>, None::<u8>, None::<u8>, 0u64);
    for (ts, p) in &pkts {
        let Ok(s) = wire::parse_with(p, wire::TcpChecksum::VouchedByKernel) else { continue };
        let src = SocketAddr::new(s.src, s.src_port);
        let dst = SocketAddr::new(s.dst, s.dst_port);
        let time = ts - t0;
        if (src, dst) == key {
            if s.has(flags::SYN) {
                isn = Some(s.seq.0);
                snd_scale = s.options.window_scale;
                continue;
            }
            let Some(i) = isn else { continue };
            t.isn = Some(i);
            t.handshake_ack.get_or_insert(time);
            let len = s.payload.len() as u64;
            if len == 0 {
                continue;
            }
            let rel = u64::from(s.seq.0.wrapping_sub(i.wrapping_add(1)));
            let end = rel + len;
            t.data.push((time, rel, end, end <= high));
            high = high.max(end);
        } else if (dst, src) == key {
            if s.has(flags::SYN) {
                rcv_scale = s.options.window_scale;
                continue;
            }
            let (Some(i), true) = (isn, s.has(flags::ACK)) else { continue };
            let base = i.wrapping_add(1);
            let ack = u64::from(s.ack.0.wrapping_sub(base));
            let scale = match (snd_scale, rcv_scale) {
                (Some(_), Some(r)) => r,
                _ => 0,
            };
            t.acks.push((time, ack, ack + (u64::from(s.window) << scale)));
            if let Some((blocks, n)) = s.options.sack {
                for &(l, r) in blocks.iter().take(usize::from(n)) {
                    t.sacks.push((time, u64::from(l.wrapping_sub(base)), u64::from(r.wrapping_sub(base))));
                }
            }
        }
    }
    if t.data.is_empty() {
        return Err("the connection carries no data".into());
    }
    Ok(t)
}

/// Adds the completions and indications of the plotted connection from a contract trace
/// (`--trace`): the trace's offload of the same ports is aligned with the handshake ACK in
/// the capture, and stream offsets are placed on the capture's sequence axis.
/// Returns whether the trace holds that connection's offload (a shard's trace may not).
pub fn add_contract(t: &mut Trace, path: &Path) -> Result<bool, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let (Some((sender, receiver)), Some(isn), Some(hs)) = (t.sender, t.isn, t.handshake_ack) else {
        return Ok(false);
    };
    // The offload followed: connection id, trace time of the offload, sequence offset of the
    // first stream byte it counts, bytes delivered since.
    struct Cur {
        conn: u64,
        t_off: f64,
        base: u64,
        delivered: u64,
    }
    let mut cur: Option<Cur> = None;
    let mut found = false;
    // Length of the indication whose `ret` (with its outcome) comes next, if it is ours.
    let mut awaiting: Option<u64> = None;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("{}: line {}: {e}", path.display(), i + 1))?;
        // The schema's one reader; a line it cannot read marks nothing.
        let Ok(l) = Line::read(&v) else { continue };
        if let Line::Offload { t: t_ns, conn, rcv_nxt, local_port, remote_port, buffered, .. } = &l {
            if (*remote_port, *local_port) == (sender.port(), receiver.port()) {
                let buffered: u64 = buffered.iter().map(|b| b.length as u64).sum();
                let rel = u64::from(rcv_nxt.wrapping_sub(isn.wrapping_add(1)));
                cur = Some(Cur {
                    conn: u64::from(conn.0),
                    t_off: *t_ns as f64 / 1e9,
                    base: rel.saturating_sub(buffered),
                    delivered: 0,
                });
                found = true;
                continue;
            }
        }
        let Some(c) = cur.as_mut() else { continue };
        if let Line::Ret(r) = &l {
            if let (Some(o), Some(len)) = (r.outcome, awaiting) {
                awaiting = None;
                c.delivered += match o {
                    Outcome::Success => len,
                    Outcome::PartiallyAccepted => r.consumed.unwrap_or(0) as u64,
                    Outcome::NotAccepted => 0,
                };
                if let Some(last) = t.indications.last_mut() {
                    last.1 = c.base + c.delivered;
                }
            }
            continue;
        }
        let ours = l.conn().map(|x| u64::from(x.0)) == Some(c.conn);
        let line_t = match &l {
            Line::Complete { t, .. } | Line::Indicate { t, .. } => Some(*t).filter(|&t| t > 0),
            _ => None,
        };
        let at = hs + (line_t.map_or(c.t_off, |n| n as f64 / 1e9) - c.t_off);
        match &l {
            Line::Complete { nbls, .. } if ours => {
                for n in nbls {
                    let b = n.bytes_transferred as u64;
                    if b > 0 {
                        c.delivered += b;
                        t.completions.push((at, c.base + c.delivered));
                    }
                }
            }
            Line::Indicate { nbls, .. } => {
                awaiting = None;
                if ours {
                    awaiting = Some(nbls.iter().map(|n| n.length as u64).sum());
                    t.indications.push((at, c.base + c.delivered));
                }
            }
            Line::Terminate { .. } if ours => cur = None,
            _ => {}
        }
    }
    Ok(found)
}

const W: f64 = 1100.0;
const H: f64 = 640.0;
const LEFT: f64 = 90.0;
const TOP: f64 = 40.0;
const PW: f64 = W - LEFT - 30.0;
const PH: f64 = H - TOP - 70.0;

fn nice_step(span: f64) -> f64 {
    let raw = span / 8.0;
    let mag = 10f64.powf(raw.max(1e-12).log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag)
}

/// Renders `t` as an SVG document.
pub fn svg(t: &Trace, title: &str) -> String {
    // From the first data segment (a handshake that took retries would squeeze the rest).
    let tmin = t.data.iter().map(|d| d.0).fold(f64::INFINITY, f64::min);
    let tmin = if tmin.is_finite() { tmin } else { 0.0 };
    let tmax = t.data.iter().map(|d| d.0).chain(t.acks.iter().map(|a| a.0)).fold(tmin + 1e-9, f64::max);
    let span = tmax - tmin;
    let smax = t.data.iter().map(|d| d.2).chain(t.acks.iter().map(|a| a.2)).max().unwrap_or(1).max(1) as f64;
    let x = |time: f64| LEFT + (time - tmin).max(0.0) / span * PW;
    let y = |seq: f64| TOP + PH - seq / smax * PH;
    let mut o = String::new();
    let _ = write!(
        o,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="{W}" height="{H}" fill="white"/>
<text x="{LEFT}" y="22" font-size="15">{}</text>
"##,
        escape(title)
    );
    // Axes and ticks.
    let _ = writeln!(
        o,
        r##"<g class="axes" stroke="#444" fill="none"><rect x="{LEFT}" y="{TOP}" width="{PW}" height="{PH}"/></g>"##
    );
    let ts = nice_step(span);
    let mut v = (tmin / ts).ceil() * ts;
    while v <= tmax + 1e-12 {
        let _ = writeln!(
            o,
            r##"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="#ddd"/><text x="{0:.1}" y="{3:.1}" text-anchor="middle">{4}</text>"##,
            x(v),
            TOP,
            TOP + PH,
            TOP + PH + 16.0,
            trim(v)
        );
        v += ts;
    }
    let ss = nice_step(smax);
    let mut v = 0.0;
    while v <= smax {
        let _ = writeln!(
            o,
            r##"<line x1="{0:.1}" y1="{1:.1}" x2="{2:.1}" y2="{1:.1}" stroke="#ddd"/><text x="{3:.1}" y="{4:.1}" text-anchor="end">{5}</text>"##,
            LEFT,
            y(v),
            LEFT + PW,
            LEFT - 6.0,
            y(v) + 4.0,
            bytes_label(v)
        );
        v += ss;
    }
    let _ = writeln!(o, r##"<text x="{}" y="{}" text-anchor="middle">time (s)</text>"##, LEFT + PW / 2.0, H - 28.0);
    let _ = writeln!(
        o,
        r##"<text x="18" y="{}" transform="rotate(-90 18 {})" text-anchor="middle">sequence offset</text>"##,
        TOP + PH / 2.0,
        TOP + PH / 2.0
    );
    // Window edge and ACK line: the last value per pixel column, as step lines.
    for (class, colour, pick) in [("window", "#e0a800", 2usize), ("ack", "#2ca02c", 1usize)] {
        let mut cols: Vec<(f64, f64)> = Vec::new();
        for a in &t.acks {
            let px = x(a.0).round();
            let val = if pick == 1 { a.1 } else { a.2 } as f64;
            match cols.last_mut() {
                Some(last) if last.0 == px => last.1 = val,
                _ => cols.push((px, val)),
            }
        }
        let mut d = String::new();
        for (i, (px, val)) in cols.iter().enumerate() {
            if i == 0 {
                let _ = write!(d, "M{px:.1},{:.1}", y(*val));
            } else {
                let _ = write!(d, " H{px:.1} V{:.1}", y(*val));
            }
        }
        let _ = writeln!(o, r##"<path class="{class}" d="{d}" stroke="{colour}" stroke-width="1.2" fill="none"/>"##);
    }
    // SACK blocks and data segments: one vertical bar per pixel column and kind.
    for (class, colour, items) in [
        ("sack", "#9467bd", t.sacks.iter().map(|s| (s.0, s.1, s.2, false)).collect::<Vec<_>>()),
        ("data", "#1f4e9c", t.data.iter().filter(|d| !d.3).copied().collect()),
        ("retransmission", "#d62728", t.data.iter().filter(|d| d.3).copied().collect()),
    ] {
        let mut bins: std::collections::BTreeMap<i64, (u64, u64)> = std::collections::BTreeMap::new();
        for (time, lo, hi, _) in items {
            let e = bins.entry(x(time).round() as i64).or_insert((lo, hi));
            e.0 = e.0.min(lo);
            e.1 = e.1.max(hi);
        }
        let _ = write!(o, r##"<g class="{class}" stroke="{colour}" stroke-width="1.5">"##);
        for (px, (lo, hi)) in bins {
            let (y1, y2) = (y(lo as f64), y(hi as f64).min(y(lo as f64) - 1.0));
            let _ = write!(o, r##"<line x1="{px}" y1="{y1:.1}" x2="{px}" y2="{y2:.1}"/>"##);
        }
        let _ = writeln!(o, "</g>");
    }
    // Contract events: a dot where a completion (black) or indication (orange) brought the
    // delivered stream, one per pixel column.
    for (class, colour, items) in [("completion", "#000000", &t.completions), ("indication", "#ff7f0e", &t.indications)]
    {
        if items.is_empty() {
            continue;
        }
        let mut bins: std::collections::BTreeMap<i64, u64> = std::collections::BTreeMap::new();
        for &(time, off) in items {
            let e = bins.entry(x(time).round() as i64).or_insert(off);
            *e = (*e).max(off);
        }
        let _ = write!(o, r##"<g class="{class}" fill="{colour}">"##);
        for (px, off) in bins {
            let _ = write!(o, r##"<circle cx="{px}" cy="{:.1}" r="2.2"/>"##, y(off as f64));
        }
        let _ = writeln!(o, "</g>");
    }
    // Legend.
    let mut legend = vec![
        ("data", "#1f4e9c"),
        ("retransmitted / late", "#d62728"),
        ("ACK", "#2ca02c"),
        ("window edge", "#e0a800"),
        ("SACK", "#9467bd"),
    ];
    if !t.completions.is_empty() {
        legend.push(("completed", "#000000"));
    }
    if !t.indications.is_empty() {
        legend.push(("indicated", "#ff7f0e"));
    }
    let mut lx = LEFT + 10.0;
    for (name, colour) in legend.iter() {
        let _ = writeln!(
            o,
            r##"<line x1="{lx}" y1="{0}" x2="{1}" y2="{0}" stroke="{colour}" stroke-width="3"/><text x="{2}" y="{3}">{name}</text>"##,
            H - 10.0,
            lx + 18.0,
            lx + 24.0,
            H - 6.0
        );
        // About 7 px per character at 12 px sans-serif, then a gap.
        lx += 24.0 + 7.0 * name.chars().count() as f64 + 22.0;
    }
    o.push_str("</svg>\n");
    o
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn bytes_label(v: f64) -> String {
    if v >= 1e6 {
        format!("{} MB", trim(v / 1e6))
    } else if v >= 1e3 {
        format!("{} kB", trim(v / 1e3))
    } else {
        format!("{v:.0}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Plots `pcap` into `out`.
/// With contract traces (one, or one per engine shard), marks the completions and
/// indications from the one that offloaded the plotted connection.
pub fn plot_file(pcap: &Path, out: &Path, conn: Option<usize>, contract: &[PathBuf]) -> Result<Trace, String> {
    let mut t = trace(pcap, conn)?;
    if !contract.is_empty() && t.sender.is_some() {
        let mut found = false;
        for c in contract {
            if add_contract(&mut t, c)? {
                found = true;
                break;
            }
        }
        if let (false, Some((sender, receiver))) = (found, t.sender) {
            let names: Vec<String> = contract.iter().map(|p| p.display().to_string()).collect();
            return Err(format!("no offload of {sender} → {receiver} in {}", names.join(", ")));
        }
    }
    let title = match t.sender {
        Some((a, b)) => format!(
            "{a} → {b}: {} data segments as the target received them, {} retransmitted or late",
            t.data.len(),
            t.data.iter().filter(|d| d.3).count()
        ),
        None => String::new(),
    };
    std::fs::write(out, svg(&t, &title)).map_err(|e| format!("writing {}: {e}", out.display()))?;
    Ok(t)
}

/// `chimney plot`.
pub fn run(a: &PlotArgs) -> ExitCode {
    let traces: Vec<PathBuf> = a.trace.iter().cloned().collect();
    match plot_file(&a.pcap, &a.out, a.conn, &traces) {
        Ok(t) => {
            eprintln!(
                "chimney plot: {} data segments, {} ACKs, {} SACK blocks, {} completions, {} indications → {}",
                t.data.len(),
                t.acks.len(),
                t.sacks.len(),
                t.completions.len(),
                t.indications.len(),
                a.out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => crate::error::CliError::new("plot", e).exit(),
    }
}
