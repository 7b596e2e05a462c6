//! `chimney sim` through the binary: the JSON summary, parallel sweeps equal to serial ones,
//! replay of a single seed, and clear errors for bad flags.

use std::process::Command;

use serde_json::Value;

fn sim(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chimney")).arg("sim").args(args).output().expect("run chimney");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let (code, out, err) = sim(&a);
    assert_eq!(code, 0, "chimney sim {args:?}: {out} {err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("no JSON ({e}): {out}"))
}

#[test]
fn a_parallel_sweep_equals_a_serial_one() {
    let serial = json(&["--seeds", "40..60", "--jobs", "1"]);
    let parallel = json(&["--seeds", "40..60", "--jobs", "3"]);
    assert_eq!(serial["seeds"], 20);
    assert_eq!(serial["failures"], 0, "{serial}");
    assert_eq!(serial["violations"], 0, "{serial}");
    assert!(serial["bytes"].as_u64().unwrap() > 0);
    for k in ["seeds", "failures", "violations", "bytes", "packets"] {
        assert_eq!(serial[k], parallel[k], "{k}: {serial} vs {parallel}");
    }
}

#[test]
fn one_seed_prints_its_trace_hash_and_replays_identically() {
    let a = json(&["--seed", "586"]);
    let b = json(&["--seed", "586"]);
    assert_eq!(a["trace_hash"].as_str().unwrap().len(), 16, "{a}");
    assert_eq!(a["trace_hash"], b["trace_hash"]);
    let (code, out, _) = sim(&["--seed", "586", "--log"]);
    assert_eq!(code, 0);
    assert!(out.contains("engine event Offloaded") && out.contains("> target"), "no event log");
}

#[test]
fn bad_flags_are_clear_errors() {
    for (args, want) in [
        (&["--seeds", "5..5"][..], "empty range"),
        (&["--seeds", "x..9"][..], "bad start"),
        (&["--seeds", "1..3", "--jobs", "0"][..], "--jobs"),
        (&["--seed", "1", "--max-loss", "1.5"][..], "--max-loss"),
    ] {
        let (code, _, err) = sim(args);
        assert_eq!(code, 2, "{args:?}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn logs_are_off_by_default_and_on_with_v() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_chimney")).args(args).env_remove("RUST_LOG").output().expect("run");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // Seed 1084: the sender's only RST is lost and keep-alive finds the dead peer.
    let (code, quiet) = run(&["sim", "--seed", "1084", "--no-echo"]);
    assert_eq!(code, Some(0));
    assert!(quiet.is_empty(), "{quiet}");
    let (code, loud) = run(&["-v", "sim", "--seed", "1084", "--no-echo"]);
    assert_eq!(code, Some(0));
    for what in ["offloaded", "keep-alive probe", "reset by the peer", "terminated"] {
        assert!(loud.contains(what), "{what} missing from:\n{loud}");
    }
    // stderr is a pipe here: plain text, no colour codes.
    assert!(!loud.contains('\x1b'), "colour codes written into a pipe:\n{loud}");
}
