//! `include/chimney.h` is generated from `src/abi.rs` by cbindgen: this test fails when the
//! checked-in header is stale. `CHIMNEY_BLESS=1 cargo test -p chimney-ffi --test header`
//! rewrites it.

use std::path::PathBuf;

#[test]
fn the_checked_in_header_is_current() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/abi.rs"))
        .generate()
        .expect("cbindgen generates the header");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let fresh = String::from_utf8(fresh).expect("utf-8");
    let path = crate_dir.join("../../include/chimney.h");
    if std::env::var_os("CHIMNEY_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write include/chimney.h");
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == fresh,
        "include/chimney.h is stale: regenerate it with CHIMNEY_BLESS=1 cargo test -p chimney-ffi --test header"
    );
}
