//! `chimney verify`: the shipped example traces report exactly their rules; a trace written
//! by `chimney sim --trace` verifies clean; malformed traces are clear errors (exit 2) that
//! name the line.

use std::path::{Path, PathBuf};
use std::process::Command;

fn chimney(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chimney")).args(args).output().expect("run chimney");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/traces")
}

fn verify_json(path: &Path) -> (i32, serde_json::Value) {
    let (code, out, err) = chimney(&["verify", "--json", path.to_str().unwrap()]);
    let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{path:?}: {e}: {out} {err}"));
    (code, v)
}

#[test]
fn example_traces_report_exactly_their_rules() {
    let expected = [
        ("good-minimal.jsonl", None),
        ("good-demo.jsonl", None),
        ("faulty-fifo.jsonl", Some("R-CMP-1")),
        ("faulty-byte-count.jsonl", Some("R-ACC-1")),
        ("faulty-advance-past-end.jsonl", Some("R-ACC-1")),
        ("faulty-nested-completion.jsonl", Some("R-CMP-5")),
        ("faulty-content.jsonl", Some("R-ACC-3")),
        ("faulty-indicate-while-posted.jsonl", Some("R-IND-1")),
        ("faulty-no-disconnect.jsonl", Some("R-FIN-1")),
        ("faulty-return-unowned.jsonl", Some("R-RET-1")),
    ];
    let shipped = std::fs::read_dir(examples())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "jsonl"));
    assert_eq!(shipped.count(), expected.len(), "every shipped trace is listed here");
    for (file, rule) in expected {
        let (code, v) = verify_json(&examples().join(file));
        let rules: Vec<&str> = v["rules"].as_object().unwrap().keys().map(String::as_str).collect();
        match rule {
            None => {
                assert_eq!((code, v["ok"].as_bool()), (0, Some(true)), "{file}: {v}");
                assert!(v["checked_bytes"].as_u64().unwrap() > 0, "{file}: {v}");
            }
            Some(r) => {
                assert_eq!(code, 1, "{file}: {v}");
                assert_eq!(rules, vec![r], "{file}: {v}");
                let first = &v["violations"][0];
                assert_eq!(first["rule"], r);
                assert!(!first["detail"].as_str().unwrap().is_empty());
            }
        }
    }
    // `-` reads standard input.
    let mut child = Command::new(env!("CARGO_BIN_EXE_chimney"))
        .args(["verify", "--json", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let text = std::fs::read(examples().join("faulty-no-disconnect.jsonl")).unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &text).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rules"]["R-FIN-1"], 1, "{v}");
    // The human-readable report names the rule and its text.
    let (code, out, _) = chimney(&["verify", examples().join("faulty-fifo.jsonl").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.contains("R-CMP-1") && out.contains("FIFO"), "{out}");
}

/// A version 2 trace keeps version 2's shape: the nested completion that version 3 reports
/// as R-CMP-5 is an unreadable line there (exit 2, naming the line).
#[test]
fn nested_upcalls_are_version_3_only() {
    let text = std::fs::read_to_string(examples().join("faulty-nested-completion.jsonl")).unwrap();
    let path = std::env::temp_dir().join(format!("chimney-nested-v2-{}.jsonl", std::process::id()));
    std::fs::write(&path, text.replacen("\"chimney_trace\":3", "\"chimney_trace\":2", 1)).unwrap();
    let (code, _, err) = chimney(&["verify", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("line 9") && err.contains("inside a call made from an upcall"), "{err}");
}

#[test]
fn sim_trace_verifies_clean_with_and_without_bytes() {
    for (seed, bytes) in [(3u64, false), (11, true)] {
        let path = std::env::temp_dir().join(format!("chimney-trace-{}-{seed}.jsonl", std::process::id()));
        let mut args =
            vec!["sim".to_string(), "--seed".into(), seed.to_string(), "--trace".into(), path.display().to_string()];
        if bytes {
            args.push("--trace-bytes".into());
        }
        let out = Command::new(env!("CARGO_BIN_EXE_chimney")).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let (code, v) = verify_json(&path);
        assert_eq!(code, 0, "seed {seed}: {v}");
        assert_eq!(v["content_checked"], bytes);
        assert!(v["connections"].as_u64().unwrap() >= 1 && v["calls"].as_u64().unwrap() > 5, "{v}");
        let _ = std::fs::remove_file(&path);
    }
    // One seed only: a sweep cannot share one trace file.
    let (code, _, err) = chimney(&["sim", "--seeds", "1..3", "--trace", "/tmp/never-written.jsonl"]);
    assert_eq!(code, 2);
    assert!(err.contains("one seed"), "{err}");
    let (code, _, err) = chimney(&["sim", "--seed", "1", "--trace-bytes"]);
    assert_eq!(code, 2, "--trace-bytes needs --trace: {err}");
}

#[test]
fn malformed_traces_are_clear_errors() {
    let dir = std::env::temp_dir();
    let good = std::fs::read_to_string(examples().join("good-minimal.jsonl")).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "empty trace"),
        ("{\"ev\":\"post\"}\n".into(), "not a chimney trace"),
        ("{\"chimney_trace\":99}\n".into(), "version 99"),
        (format!("{}\nnot json\n", lines[0]), "line 2: not JSON"),
        (format!("{}\n{}\n", lines[0], lines[1]), "line 2: the trace ends inside a call"),
        (format!("{}\n{{\"ev\":\"complete\",\"conn\":1,\"nbls\":[]}}\n", lines[0]), "line 2: `complete` outside any call"),
        (format!("{}\n{{\"ev\":\"post\",\"t\":1,\"conn\":1,\"nbls\":[{{\"id\":\"q7\",\"mdls\":[1],\"offset\":0,\"length\":1}}]}}\n", lines[0]), "line 2: bad NBL id"),
        (format!("{}\n{{\"ev\":\"data\",\"t\":1,\"conn\":1,\"len\":2,\"data\":\"zz\"}}\n", lines[0]), "line 2: `data` must be a hex string"),
        (format!("{}\n{{\"ev\":\"offload\",\"t\":1,\"conn\":1}}\n", lines[0]), "field `initial_rcv_wnd` missing"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let path = dir.join(format!("chimney-bad-trace-{}-{i}.jsonl", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let (code, _, err) = chimney(&["verify", path.to_str().unwrap()]);
        assert_eq!(code, 2, "case {i}: {err}");
        assert!(err.contains(want), "case {i}: want {want:?}, got {err}");
        let _ = std::fs::remove_file(&path);
    }
    let (code, _, err) = chimney(&["verify", "/nonexistent/trace.jsonl"]);
    assert_eq!(code, 2);
    assert!(err.contains("reading /nonexistent/trace.jsonl"), "{err}");
}
