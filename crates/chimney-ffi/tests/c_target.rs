//! The example C target (`examples/c-target/target.c`), compiled with the system's C compiler
//! and loaded through the ABI, passes the conformance suite; each deliberately faulty build
//! fails with its rule.

use std::path::{Path, PathBuf};
use std::process::Command;

use chimney::testkit::conformance::{run_interleaving, run_scenarios, Outcome};
use chimney_ffi::TargetLibrary;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds `examples/c-target/target.c` with `defines` into a shared library; fails the test
/// if no C compiler is installed (CI installs one).
fn build(name: &str, defines: &[&str]) -> PathBuf {
    let out = std::env::temp_dir().join(format!("chimney-ffi-test-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let so = out.join(format!("lib{name}.so"));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let mut cmd = Command::new(&cc);
    cmd.args(["-shared", "-fPIC", "-O1", "-g", "-Wall", "-Wextra", "-Werror"])
        .arg("-I")
        .arg(root().join("include"))
        .arg(root().join("examples/c-target/target.c"))
        .arg("-o")
        .arg(&so);
    for d in defines {
        cmd.arg(format!("-D{d}"));
    }
    let st = cmd.status().unwrap_or_else(|e| panic!("no C compiler `{cc}` ({e}): install one (apt install gcc)"));
    assert!(st.success(), "{cc} failed on target.c {defines:?}");
    so
}

fn load(so: &Path) -> TargetLibrary {
    TargetLibrary::load(so).unwrap_or_else(|e| panic!("{e}"))
}

fn report(outcomes: &[Outcome]) -> String {
    outcomes.iter().filter(|o| !o.ok()).map(Outcome::describe).collect::<Vec<_>>().join("\n")
}

#[test]
fn the_c_target_passes_the_suite() {
    let lib = load(&build("target", &[]));
    let make = || lib.instance(500).map_err(|e| e.to_string());
    let mut all = run_scenarios(&make, &|_| None);
    all.extend((1..=200).map(|s| run_interleaving(s, &make, None)));
    let bad = report(&all);
    assert!(bad.is_empty(), "{bad}");
}

/// Each deliberately faulty build (`-DFAULT_…` in target.c) fails the suite, and in every run
/// that fails, the first violation is its rule: what follows it is consequence.
#[test]
fn each_faulty_c_target_fails_with_its_rule() {
    // An indication while a request waits is R-IND-1, or R-DEL-1 when that request was
    // posted during an upcall: one family.
    let faults: [(&str, &[&str]); 6] = [
        ("FAULT_FIFO", &["R-CMP-1"]),
        ("FAULT_BYTE_COUNT", &["R-ACC-1"]),
        ("FAULT_REENTRANT", &["R-CMP-6"]),
        ("FAULT_INDICATE_WHILE_POSTED", &["R-IND-1", "R-DEL-1"]),
        ("FAULT_COMPLETE_AFTER_TERMINATE", &["R-CMP-2"]),
        ("FAULT_IGNORE_PSH", &["R-DEL-5"]),
    ];
    let mut wrong = Vec::new();
    for (define, rule) in faults {
        let lib = load(&build(&define.to_lowercase(), &[define]));
        let make = || lib.instance(500).map_err(|e| e.to_string());
        let mut all = run_scenarios(&make, &|_| None);
        all.extend((1..=200).map(|s| run_interleaving(s, &make, None)));
        let failed: Vec<&Outcome> = all.iter().filter(|o| !o.ok()).collect();
        if failed.is_empty() {
            wrong.push(format!("{define}: the suite passed"));
        }
        for o in failed {
            let first = o.violations.first().map(|v| v.rule.id);
            if !first.is_some_and(|f| rule.contains(&f)) || !o.abi_errors.is_empty() {
                wrong.push(format!(
                    "{define} in {}: first violation {first:?}, expected {rule:?}; {:?}",
                    o.name, o.abi_errors
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
