//! Flags as a user types them, without root: byte sizes with suffixes, contradictory or
//! out-of-range values refused in one line, `serve`'s addresses and `--out` checked before
//! anything starts, and `demo --sim` honouring `--pcap`, `--plot` and `--trace` (and refusing
//! what the simulator cannot do).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn chimney(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chimney")).args(args).output().expect("run chimney");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `args`, expects exit 2 and an error on stderr mentioning each of `words`.
fn refused(args: &[&str], words: &[&str]) {
    let (code, out, err) = chimney(args);
    assert_eq!(code, 2, "{args:?} was accepted: {out} {err}");
    for w in words {
        assert!(err.contains(w), "{args:?}: '{w}' not in the error: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("chimney-cli-flags-{}-{name}", std::process::id()))
}

#[test]
fn byte_counts_take_suffixes() {
    for (flag, bytes) in [("64K", 65536u64), ("1M", 1 << 20), ("100KB", 100_000), ("96KiB", 98304)] {
        let (code, out, err) =
            chimney(&["sim", "--seed", "3", "--clean", "--connections", "1", "--bytes", flag, "--json"]);
        assert_eq!(code, 0, "{flag}: {out} {err}");
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["bytes"].as_u64(), Some(bytes), "{flag}: {v}");
    }
    refused(&["demo", "--bytes", "1X"], &["--bytes", "'1X'", "suffix"]);
    refused(&["demo", "--bytes", "1.5G"], &["whole numbers"]);
    refused(&["demo", "--post-size", "2G"], &["--post-size", "1 GiB"]);
    refused(&["demo", "--rcv-wnd", "5G"], &["--rcv-wnd"]);
}

/// `sim --smoltcp` picks the senders' release; both carry seed 101's lossy run, verified
/// (0.14 gets through this one; see docs/testing.md for the seeds where it stalls).
#[test]
fn sim_runs_either_smoltcp_release() {
    let mut hashes = Vec::new();
    for release in ["0.14", "0.12"] {
        let (code, out, err) = chimney(&["sim", "--seed", "101", "--smoltcp", release, "--json"]);
        assert_eq!(code, 0, "smoltcp {release}: {out}{err}");
        assert!(out.contains("\"failures\":0") && out.contains("\"violations\":0"), "smoltcp {release}: {out}");
        hashes.push(out.split("\"trace_hash\":").nth(1).map(str::to_owned));
    }
    // Two different loss recoveries: the runs differ.
    assert!(hashes[0].is_some() && hashes[0] != hashes[1], "{hashes:?}");
}

#[test]
fn out_of_range_and_contradictory_flags_are_refused() {
    refused(&["demo", "--timeout", "0"], &["--timeout", "at least 1 second"]);
    refused(&["demo", "--mtu", "1000", "--ipv6"], &["--mtu 1000", "IPv6", "1280"]);
    refused(&["demo", "--mtu", "500"], &["--mtu 500", "IPv4", "576"]);
    refused(&["demo", "--indications-only", "--indicate-and-post"], &["--indications-only", "--indicate-and-post"]);
    refused(&["demo", "--indications-only", "--posts", "2"], &["--indications-only", "--posts"]);
    refused(&["demo", "--connections", "0"], &["--connections"]);
    refused(&["demo", "--queues", "0"], &["--queues"]);
    refused(&["sim", "--seed", "1", "--smoltcp", "0.13"], &["0.13", "0.14 or 0.12"]);
}

#[test]
fn serve_checks_listen_against_local() {
    fn serve<'a>(local: &'a str, listen: &'a str) -> Vec<&'a str> {
        vec!["serve", "--tun", "chx0", "--local", local, "--listen", listen]
    }
    for (local, listen, word) in [
        ("198.18.0.2/24", "10.0.0.1:5001", "outside"),
        ("198.18.0.2/24", "[fd00::1]:5001", "families"),
        ("fd00::2/64", "198.18.0.1:5001", "families"),
        ("198.18.0.2/24", "198.18.0.1:0", "port 0"),
        ("198.18.0.2/0", "198.18.0.1:5001", "prefix"),
        ("fd00::2/0", "[fd00::1]:5001", "prefix"),
        ("198.18.0.2/24", "198.18.0.2:5001", "own address"),
        ("198.18.0.2/24", "198.18.0.255:5001", "broadcast"),
        ("198.18.0.2/24", "198.18.0.0:5001", "network"),
        ("fd00::2/64", "[ff02::1]:5001", "unicast"),
        ("198.18.0.2", "198.18.0.1:5001", "ADDRESS/PREFIX"),
        ("198.18.0.2/33", "198.18.0.1:5001", "prefix"),
    ] {
        refused(&serve(local, listen), &[word]);
        let (_, _, err) = chimney(&serve(local, listen));
        if !err.starts_with("error: invalid value") {
            // Ours (clap's parse errors add a usage hint).
            assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        }
    }
    refused(&[&serve("fd00::2/64", "[fd00::1]:5001")[..], &["--mtu", "1000"]].concat(), &["--mtu", "IPv6"]);
    // A directory serve cannot write to: refused before anything starts.
    refused(
        &[&serve("198.18.0.2/24", "198.18.0.1:5001")[..], &["--out", "/proc"]].concat(),
        &["--out /proc", "not writable"],
    );
    refused(&[&serve("198.18.0.2/24", "198.18.0.1:5001")[..], &["--out", "/etc/hostname/x"]].concat(), &["--out"]);
}

/// `demo --sim`: the simulator honours `--pcap`, `--plot` and `--trace` (the trace verifies
/// offline, the plot is drawn from both) and refuses the flags it cannot honour.
#[test]
fn simulated_demo_records_what_was_asked() {
    let (pcap, svg, trace) = (temp("sim.pcap"), temp("sim.svg"), temp("sim.jsonl"));
    let (code, out, err) = chimney(&[
        "demo",
        "--sim",
        "--connections",
        "2",
        "--bytes",
        "300K",
        "--pcap",
        pcap.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("SIMULATED") && out.contains("result: OK"), "{out}");
    assert!(std::fs::metadata(&pcap).unwrap().len() > 300_000, "the pcap holds both streams");
    // The graph is drawn from the capture, with the contract trace's completions marked.
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.contains("<svg") && plot.contains("completion"), "{plot:.300}");
    let (code, out, err) = chimney(&["verify", "--json", trace.to_str().unwrap()]);
    assert_eq!(code, 0, "{out} {err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["connections"], 2, "{v}");
    assert!(v["checked_bytes"].as_u64().unwrap() >= 600 * 1024, "{v}");
    for f in [&pcap, &svg, &trace] {
        let _ = std::fs::remove_file(f);
    }
    for (flag, value) in [("--queues", "2"), ("--timeout", "5"), ("--stall-ms", "10"), ("--busy-poll-us", "5")] {
        refused(&["demo", "--sim", flag, value], &["simulator", flag]);
    }
    refused(&["demo", "--sim", "--no-direct"], &["simulator", "--no-direct"]);
}

/// A reader that closes its end early (`chimney rules | head -1`) ends the program quietly,
/// with SIGPIPE's default action, never a panic message.
#[test]
fn a_closed_stdout_pipe_is_no_panic() {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} rules | head -c 1 >/dev/null; {} rules | true",
            env!("CARGO_BIN_EXE_chimney"),
            env!("CARGO_BIN_EXE_chimney")
        ))
        .output()
        .expect("sh");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{err}");
}
