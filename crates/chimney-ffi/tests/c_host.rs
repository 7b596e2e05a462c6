//! A C host (`examples/c-host/host.c`) drives chimney's own delivery layer through the header:
//! posts, a re-post from inside a completion, data with PSH, FIN, a post after the disconnect
//! indication, terminate. The host is compiled here as a library and handed the table
//! `chimney_target_ops()` returns.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn a_c_host_drives_chimneys_target() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::env::temp_dir().join(format!("chimney-c-host-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let so = out.join("libchost.so");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let st = Command::new(&cc)
        .args(["-shared", "-fPIC", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-DCHIMNEY_HOST_NO_MAIN", "-I"])
        .arg(root.join("include"))
        .arg(root.join("examples/c-host/host.c"))
        .arg("-o")
        .arg(&so)
        .status()
        .unwrap_or_else(|e| panic!("no C compiler `{cc}` ({e}): install one (apt install gcc)"));
    assert!(st.success(), "{cc} failed on host.c");
    // SAFETY: the library just built from examples/c-host/host.c; `run_host` has this
    // signature there.
    let rc = unsafe {
        let lib = libloading::Library::new(&so).unwrap();
        let run: libloading::Symbol<'_, unsafe extern "C" fn(*const chimney_ffi::abi::ChimneyTargetOps) -> i32> =
            lib.get(b"run_host\0").unwrap();
        run(chimney_ffi::chimney_target_ops())
    };
    assert_eq!(rc, 0, "the C host did not get its stream back (see its output above)");
}

/// chimney's own target through the ABI round trip (exported to C, loaded back as a foreign
/// target) passes the conformance suite.
#[test]
fn chimney_through_its_own_abi_passes_the_suite() {
    use chimney::testkit::conformance::{run_interleaving, run_scenarios, Outcome};
    // SAFETY: the table chimney itself exports, static for the program's life.
    let lib = unsafe { chimney_ffi::TargetLibrary::from_table(chimney_ffi::chimney_target_ops()) }.unwrap();
    let make = || lib.instance(500).map_err(|e| e.to_string());
    let mut all = run_scenarios(&make, &|_| None);
    all.extend((1..=200).map(|s| run_interleaving(s, &make, None)));
    let bad: Vec<String> = all.iter().filter(|o| !o.ok()).map(Outcome::describe).collect();
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
