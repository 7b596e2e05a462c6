//! `chimney check` from the outside: the example C target (built here with the system's C
//! compiler) is conformant (exit 0), a faulty build fails with its rule (exit 1), a library
//! that is not a target is refused (exit 2), and ABI misuse from C (a NULL chain, an NBL that
//! is not chimney's, a request completed twice, a completion after terminate) is reported
//! with no memory error in chimney's own code (under Valgrind).

use std::process::Command;

mod common;
use common::{build, target_c};

fn check(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chimney")).arg("check").args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_example_target_is_conformant() {
    let so = build("good", &target_c(), &[]);
    let (code, out) = check(&["--target", so.to_str().unwrap(), "--seeds", "1..101", "--sim-seeds", "1..21", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(code, 0, "{out}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["seeds"], 100);
    assert_eq!(v["sim_seeds"], 20, "the simulator ran the C target behind chimney's TCP engine");
    assert!(v["scenarios"].as_u64().unwrap() >= 20);
}

#[test]
fn a_faulty_target_fails_with_its_rule_and_a_replay_command() {
    let so = build("fifo", &target_c(), &["FAULT_FIFO"]);
    let (code, out) = check(&["--target", so.to_str().unwrap(), "--seeds", "1..51", "--sim-seeds", "1..3", "--json"]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["rules"]["R-CMP-1"].as_u64().unwrap() > 0, "{out}");
    let replay = v["failures"][0]["replay"].as_str().unwrap();
    // The program as it was invoked, so that the command can be pasted as printed.
    let program = env!("CARGO_BIN_EXE_chimney");
    assert!(replay.starts_with(&format!("{program} check --target ")), "{replay}");
}

#[test]
fn a_runaway_that_a_broken_rule_explains_exits_1() {
    // The re-entrant build completes again inside the host's nested post until chimney stops
    // it (simulator seeds 8 and 9): the run broke R-CMP-6 first, so it is judged by the rule.
    let so = build("reentrant", &target_c(), &["FAULT_REENTRANT"]);
    let (code, out) = check(&["--target", so.to_str().unwrap(), "--seeds", "1..3", "--sim-seeds", "8..10", "--json"]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["rules"]["R-CMP-6"].as_u64().unwrap() > 0, "{out}");
    let runaway = v["failures"].as_array().unwrap().iter().any(|f| {
        f["abi_errors"].as_array().unwrap().iter().any(|e| e.as_str().unwrap().contains("runaway"))
            && f["rules"].as_array().unwrap().iter().any(|r| r == "R-CMP-6")
    });
    assert!(runaway, "the runaway is listed with the run that broke R-CMP-6: {out}");
}

#[test]
fn what_is_not_a_target_is_refused_with_exit_2() {
    let (code, _) = check(&["--target", "/nonexistent/libnothing.so"]);
    assert_eq!(code, 2);
    let dir = std::env::temp_dir().join(format!("chimney-check-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("empty.c");
    std::fs::write(&src, "int not_a_target(void) { return 0; }\n").unwrap();
    let so = build("empty", &src, &[]);
    let (code, _) = check(&["--target", so.to_str().unwrap()]);
    assert_eq!(code, 2, "a library without chimney_target_ops");
}

#[test]
fn abi_misuse_is_reported_without_a_memory_error() {
    let so = build("misuse", &target_c(), &["MISUSE"]);
    let valgrind = Command::new("valgrind").arg("--version").output();
    assert!(valgrind.is_ok(), "valgrind is needed for this test (apt install valgrind)");
    for scenario in ["fill completes every filled request", "terminate completes outstanding and hands data back"] {
        let out = Command::new("valgrind")
            .args(["-q", "--error-exitcode=99"])
            .arg(env!("CARGO_BIN_EXE_chimney"))
            .args(["check", "--target", so.to_str().unwrap(), "--scenario", scenario, "--json"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{scenario}: {stdout}\n{stderr}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let listed = v["failures"][0]["violations"].to_string();
        for what in ["NULL chain", "never posted", "completed a second time"] {
            assert!(listed.contains(what), "{scenario}: {what} not reported: {listed}");
        }
    }
}
