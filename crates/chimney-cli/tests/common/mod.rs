//! What the `chimney` binary's test files share: building the example C target.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds `source` into `lib{name}.so` in a directory of this test process, with the system's
/// C compiler (`$CC`, else `cc`) and `-D` each of `defines`; fails the test without one.
pub fn build(name: &str, source: &Path, defines: &[&str]) -> PathBuf {
    let out = std::env::temp_dir().join(format!("chimney-check-test-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let so = out.join(format!("lib{name}.so"));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let st = Command::new(&cc)
        .args(["-shared", "-fPIC", "-O1", "-g", "-Wall", "-Werror", "-I"])
        .arg(root().join("include"))
        .arg(source)
        .arg("-o")
        .arg(&so)
        .args(defines.iter().map(|d| format!("-D{d}")))
        .status()
        .unwrap_or_else(|e| panic!("no C compiler `{cc}` ({e}): install one (apt install gcc)"));
    assert!(st.success(), "{cc} failed");
    so
}

/// examples/c-target/target.c.
pub fn target_c() -> PathBuf {
    root().join("examples/c-target/target.c")
}
