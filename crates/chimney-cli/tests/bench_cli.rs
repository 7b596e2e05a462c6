//! The benchmark commands run and verify what they move (figures are not asserted: the
//! machine is shared; BENCHMARKS.md holds measured tables). `bench e2e` needs root and TUN.

use std::process::Command;

use serde_json::Value;

fn bench(args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chimney")).arg("bench").args(args).arg("--json").output().expect("run");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let v = serde_json::from_str(text.trim()).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), v, err)
}

#[test]
fn engine_bench_delivers_every_trace_exactly() {
    let (code, v, err) = bench(&["engine", "--bytes", "1048576", "--rounds", "1"]);
    assert_eq!(code, 0, "{v} {err}");
    assert_eq!(v["ok"], true);
    let rows = v["results"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["trace"].as_str().unwrap()).collect();
    assert_eq!(names, ["mss1448", "mss1448_reorder1pct", "mss1448_psh64k", "gso64k", "gso64k_reorder1pct"]);
    for r in rows {
        for k in ["chimney_ns_per_segment", "memcpy_gb_per_s", "smoltcp_gb_per_s", "chimney_over_memcpy"] {
            assert!(r[k].as_f64().is_some_and(|x| x > 0.0), "{k} in {r}");
        }
    }
}

#[test]
fn scale_bench_offloads_every_connection() {
    let (code, v, err) = bench(&["scale", "--connections", "1,500", "--segments", "2000"]);
    assert_eq!(code, 0, "{v} {err}");
    let rows = v["results"].as_array().unwrap();
    assert_eq!(rows.iter().map(|r| r["connections"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 500]);
    assert!(rows[1]["bytes_per_connection"].as_f64().unwrap() > 0.0, "{v}");
}

#[test]
fn bench_flags_are_checked() {
    let (code, _, err) = bench(&["engine", "--trace", "nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown trace"), "{err}");
    let (code, _, err) = bench(&["e2e", "--only", "nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown receiver"), "{err}");
    let (code, _, err) = bench(&["scale", "--connections", "0"]);
    assert_eq!(code, 2, "{err}");
}
