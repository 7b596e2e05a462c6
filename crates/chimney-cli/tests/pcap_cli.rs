//! `--pcap` on `chimney sim` (no root needed): a valid pcap of raw IP packets, handshake
//! first, both directions present; bad combinations are clear errors.

use std::process::Command;

#[test]
fn sim_writes_a_pcap_of_both_directions() {
    let path = std::env::temp_dir().join(format!("chimney-sim-{}.pcap", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_chimney"))
        .args(["sim", "--seed", "3", "--clean", "--pcap"])
        .arg(&path)
        .output()
        .expect("run chimney");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let f = std::fs::File::open(&path).expect("pcap written");
    let mut r = pcap_file::pcap::PcapReader::new(f).expect("a pcap header");
    assert_eq!(r.header().datalink, pcap_file::DataLink::RAW);
    let (mut to_target, mut from_target, mut first) = (0, 0, None);
    while let Some(p) = r.next_packet() {
        let p = p.expect("a packet");
        // IPv4 or IPv6 destination port / source port of the TCP header.
        let ip = if p.data[0] >> 4 == 4 { 20 } else { 40 };
        let (sport, dport) =
            (u16::from_be_bytes([p.data[ip], p.data[ip + 1]]), u16::from_be_bytes([p.data[ip + 2], p.data[ip + 3]]));
        first.get_or_insert(p.data[ip + 13]);
        to_target += usize::from(dport == 5001);
        from_target += usize::from(sport == 5001);
    }
    assert_eq!(first, Some(0x02), "the first packet is a SYN");
    assert!(to_target > 10 && from_target > 10, "{to_target} in, {from_target} out");
    let _ = std::fs::remove_file(&path);
    let bad = Command::new(env!("CARGO_BIN_EXE_chimney"))
        .args(["sim", "--seeds", "1..3", "--pcap", "/tmp/x.pcap"])
        .output()
        .expect("run chimney");
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn plots_are_svg_with_every_element() {
    let svg = std::env::temp_dir().join(format!("chimney-plot-{}.svg", std::process::id()));
    // Seed 5, one lossy connection: retransmissions and SACK blocks appear.
    let out = Command::new(env!("CARGO_BIN_EXE_chimney"))
        .args(["sim", "--seed", "5", "--connections", "1", "--bytes", "400000", "--no-adversary", "--plot"])
        .arg(&svg)
        .output()
        .expect("run chimney");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&svg).expect("svg written");
    assert!(text.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\"") && text.trim_end().ends_with("</svg>"));
    assert_eq!(text.matches("<svg").count(), 1);
    for class in ["data", "retransmission", "ack", "window", "sack", "axes"] {
        assert!(text.contains(&format!("class=\"{class}\"")), "no {class} element");
    }
    // Every element that opens a group closes it.
    assert_eq!(text.matches("<g ").count(), text.matches("</g>").count());
    let _ = std::fs::remove_file(&svg);
    let bad = Command::new(env!("CARGO_BIN_EXE_chimney"))
        .args(["plot", "/nonexistent.pcap", "-o", "/tmp/x.svg"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("opening /nonexistent.pcap"));
}

/// With the run's contract trace, the plot marks completions and indications; without it,
/// none; a trace of another run is a clear error.
#[test]
fn plot_marks_contract_events_from_a_trace() {
    let dir = std::env::temp_dir();
    let id = std::process::id();
    let (pcap, trace, svg) =
        (dir.join(format!("cp-{id}.pcap")), dir.join(format!("cp-{id}.jsonl")), dir.join(format!("cp-{id}.svg")));
    let out = Command::new(env!("CARGO_BIN_EXE_chimney"))
        .args(["sim", "--seed", "5", "--connections", "1", "--bytes", "400000", "--no-adversary", "--pcap"])
        .arg(&pcap)
        .arg("--trace")
        .arg(&trace)
        .output()
        .expect("run chimney");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let plot = |with_trace: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_chimney"));
        c.arg("plot").arg(&pcap).arg("-o").arg(&svg);
        if with_trace {
            c.arg("--trace").arg(&trace);
        }
        let out = c.output().expect("run");
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        (std::fs::read_to_string(&svg).unwrap(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (text, err) = plot(true);
    let marks = text.matches("<circle").count();
    assert!(text.contains("class=\"completion\"") || text.contains("class=\"indication\""), "{err}");
    assert!(marks > 10, "{marks} marks: {err}");
    assert!(err.contains("completions") && err.contains("indications"), "{err}");
    assert_eq!(text.matches("<g ").count(), text.matches("</g>").count());
    let (text, _) = plot(false);
    assert_eq!(text.matches("<circle").count(), 0);
    // A trace of another run (no offload of these ports) is a clear error.
    std::fs::write(&trace, "{\"chimney_trace\":1}\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_chimney"))
        .arg("plot")
        .arg(&pcap)
        .arg("-o")
        .arg(&svg)
        .arg("--trace")
        .arg(&trace)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no offload of"), "{}", String::from_utf8_lossy(&out.stderr));
    for p in [pcap, trace, svg] {
        let _ = std::fs::remove_file(p);
    }
}
