//! Real peers: Linux kernel TCP clients → TUN → offload target, through the `chimney`
//! binary, as root. Each test creates its own anonymous network namespace (the kernel removes
//! it with the process). Without root or /dev/net/tun the tests say so and pass, unless
//! `CHIMNEY_REQUIRE_REAL=1` (set by `.ci/run`) makes that a failure.

use std::process::Command;

use serde_json::Value;

fn can_run() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let tun = std::path::Path::new("/dev/net/tun").exists();
    if root && tun {
        return true;
    }
    let why = if root { "/dev/net/tun is missing" } else { "not root" };
    if std::env::var("CHIMNEY_REQUIRE_REAL").is_ok_and(|v| v == "1") {
        panic!("real-peer tests required but {why}");
    }
    eprintln!("real-peer test skipped: {why}");
    false
}

fn demo(args: &[&str]) -> (i32, Value) {
    let out =
        Command::new(env!("CARGO_BIN_EXE_chimney")).arg("demo").arg("--json").args(args).output().expect("run chimney");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}) from chimney demo {args:?}: stdout {text} stderr {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

/// Runs a demo and asserts: exit 0, every connection exact, zero violations.
fn exact(args: &[&str], connections: usize, bytes: u64) -> Value {
    let (code, v) = demo(args);
    assert_eq!(v["ok"], true, "{args:?}: {v}");
    assert_eq!(code, 0, "{args:?}: {v}");
    assert_eq!(v["violations"].as_array().map(Vec::len), Some(0), "{v}");
    let conns = v["connections"].as_array().expect("connections");
    assert_eq!(conns.len(), connections);
    for c in conns {
        assert_eq!(c["exact"], true, "{c}");
        assert_eq!(c["bytes"].as_u64(), Some(bytes), "{c}");
        assert_eq!(c["end"], "fin", "{c}");
        assert_eq!(c["violations"].as_u64(), Some(0), "{c}");
    }
    v
}

#[test]
fn ipv4_1mib_and_256mib() {
    if !can_run() {
        return;
    }
    exact(&["--connections", "1", "--bytes", "1048576"], 1, 1 << 20);
    exact(&["--connections", "1", "--bytes", "268435456", "--seed", "2"], 1, 256 << 20);
}

/// TUN offloads: the kernel hands over GSO super-packets (IPv4 and IPv6) and the streams stay
/// exact; `--no-offload` reads wire-sized packets only.
#[test]
fn gso_super_packets_and_no_offload() {
    if !can_run() {
        return;
    }
    for v6 in [false, true] {
        let mut args = vec!["--connections", "2", "--bytes", "33554432"];
        if v6 {
            args.push("--ipv6");
        }
        let v = exact(&args, 2, 32 << 20);
        assert!(v["gso_packets"].as_u64().unwrap() > 0, "no super-packet arrived: {v}");
        // TCP_OFFLOAD_STATS / IP_OFFLOAD_STATS at exit: every payload byte came in as an octet.
        assert!(v["tcp_offload_stats"]["in_segments"].as_u64().unwrap() > 0, "{v}");
        assert!(v["ip_offload_stats"]["in_octets"].as_u64().unwrap() >= 2 * (32 << 20), "{v}");
        assert_eq!(v["drops"].get("bad_vnet_hdr"), None, "{v}");
    }
    let v = exact(&["--connections", "1", "--bytes", "8388608", "--no-offload"], 1, 8 << 20);
    assert_eq!(v["gso_packets"], 0, "{v}");
    assert_eq!(v["placed_packets"], 0, "direct placement needs the vnet header: {v}");
}

/// Direct placement: one connection's in-order payload is read straight into its posted
/// buffers (v4 and v6, several MDLs per request), streams exact under the verifier; off with
/// `--no-direct`.
#[test]
fn direct_placement_into_posted_buffers() {
    if !can_run() {
        return;
    }
    for extra in [&["--mdls", "3"][..], &["--ipv6", "--post-size", "20000"][..]] {
        let mut args = vec!["--connections", "1", "--bytes", "67108864"];
        args.extend_from_slice(extra);
        let v = exact(&args, 1, 64 << 20);
        let (placed, segs) =
            (v["placed_packets"].as_u64().unwrap(), v["tcp_offload_stats"]["in_segments"].as_u64().unwrap());
        assert!(placed * 2 > segs, "{placed} of {segs} segments placed directly: {v}");
    }
    let v = exact(&["--connections", "1", "--bytes", "8388608", "--no-direct"], 1, 8 << 20);
    assert_eq!(v["placed_packets"], 0, "{v}");
}

/// `--trace` on a real transfer (indications refused by a stalled application, loss), then
/// `chimney verify` on the file: the offline replay agrees with the live verifier; with two
/// queues, one trace per shard.
#[test]
fn demo_trace_verifies_offline() {
    if !can_run() {
        return;
    }
    let path = std::env::temp_dir().join(format!("chimney-demo-trace-{}.jsonl", std::process::id()));
    let p = path.to_str().unwrap();
    for extra in [&["--trace-bytes", "--loss", "0.01"][..], &["--stall-ms", "200", "--rcv-wnd", "65536"][..]] {
        let mut args = vec!["--connections", "2", "--bytes", "1048576", "--trace", p];
        args.extend_from_slice(extra);
        exact(&args, 2, 1 << 20);
        let out =
            std::process::Command::new(env!("CARGO_BIN_EXE_chimney")).args(["verify", "--json", p]).output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(0), "{extra:?}: {v}");
        assert_eq!(v["connections"], 2, "{v}");
        assert!(v["checked_bytes"].as_u64().unwrap() >= 2 << 20, "{v}");
    }
    let _ = std::fs::remove_file(&path);
    // Several queues: one trace per engine shard (FILE.0, FILE.1), each verifying clean, the
    // connections split between them.
    exact(&["--queues", "2", "--connections", "6", "--bytes", "1048576", "--trace", p], 6, 1 << 20);
    let mut total = 0;
    for i in 0..2 {
        let f = format!("{p}.{i}");
        let out =
            std::process::Command::new(env!("CARGO_BIN_EXE_chimney")).args(["verify", "--json", &f]).output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(0), "{f}: {v}");
        total += v["connections"].as_u64().unwrap();
        let _ = std::fs::remove_file(&f);
    }
    assert_eq!(total, 6);
}

/// Multi-queue TUN: one engine per queue on its own thread; the kernel spreads the flows and
/// every stream stays exact.
#[test]
fn multi_queue_shards() {
    if !can_run() {
        return;
    }
    let v = exact(&["--queues", "2", "--connections", "12", "--bytes", "4194304"], 12, 4 << 20);
    let per: Vec<u64> = v["per_queue_offloads"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
    assert_eq!(per.len(), 2, "{v}");
    assert_eq!(per.iter().sum::<u64>(), 12, "{v}");
    let out = Command::new(env!("CARGO_BIN_EXE_chimney")).args(["demo", "--queues", "0"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--queues"));
}

#[test]
fn ipv6_64mib() {
    if !can_run() {
        return;
    }
    exact(&["--ipv6", "--connections", "2", "--bytes", "67108864"], 2, 64 << 20);
}

#[test]
fn one_percent_loss_with_reordering_and_duplication_v4_and_v6() {
    if !can_run() {
        return;
    }
    let imp = ["--loss", "0.01", "--reorder", "0.01", "--dup", "0.01"];
    let v = exact(&[&imp[..], &["--connections", "2", "--bytes", "8388608"]].concat(), 2, 8 << 20);
    assert!(v["drops"].as_object().is_some_and(|d| !d.is_empty()), "impairment had no visible effect: {v}");
    exact(&[&imp[..], &["--ipv6", "--connections", "1", "--bytes", "4194304"]].concat(), 1, 4 << 20);
}

#[test]
fn five_percent_loss_with_reordering_and_duplication() {
    if !can_run() {
        return;
    }
    let args = ["--loss", "0.05", "--reorder", "0.02", "--dup", "0.02", "--connections", "1", "--bytes", "1048576"];
    exact(&args, 1, 1 << 20);
    exact(&[&args[..], &["--ipv6", "--seed", "9"]].concat(), 1, 1 << 20);
}

#[test]
fn sixty_four_concurrent_connections() {
    if !can_run() {
        return;
    }
    exact(&["--connections", "64", "--bytes", "1048576"], 64, 1 << 20);
}

#[test]
fn half_close_then_target_closes() {
    if !can_run() {
        return;
    }
    // Every client shuts down its sending half and keeps reading until the target's FIN:
    // the target indicates the disconnect, the host closes, both FINs are ACKed.
    let v = exact(&["--connections", "2", "--bytes", "100000", "--no-push", "--post-size", "65536"], 2, 100_000);
    for c in v["connections"].as_array().unwrap() {
        assert!(c["completions"].as_u64().unwrap() >= 2, "{c}");
    }
}

#[test]
fn client_reset_mid_stream_aborts_outstanding_requests() {
    if !can_run() {
        return;
    }
    let (code, v) = demo(&["--connections", "2", "--bytes", "8388608", "--reset-after", "2000000"]);
    assert_eq!(code, 0, "{v}");
    for c in v["connections"].as_array().unwrap() {
        assert_eq!(c["end"], "rst", "{c}");
        assert!(c["aborted"].as_u64().unwrap() >= 1, "no request came back REQUEST_ABORTED: {c}");
        assert!(c["bytes"].as_u64().unwrap() <= 2_000_000);
        assert_eq!(c["violations"].as_u64(), Some(0));
    }
}

#[test]
fn application_that_never_posts() {
    if !can_run() {
        return;
    }
    let v = exact(&["--indications-only", "--connections", "2", "--bytes", "16777216"], 2, 16 << 20);
    for c in v["connections"].as_array().unwrap() {
        assert_eq!(c["completions"].as_u64(), Some(0), "{c}");
        assert!(c["indications"].as_u64().unwrap() > 0, "{c}");
    }
}

#[test]
fn stalled_application_resumes_after_zero_window() {
    if !can_run() {
        return;
    }
    // The application takes nothing until the window is zero, waits 300 ms (Linux probes the
    // zero window), then posts: the window reopens and nothing is lost.
    exact(&["--stall-ms", "300", "--rcv-wnd", "65536", "--connections", "1", "--bytes", "4194304"], 1, 4 << 20);
    // A stream shorter than the window never closes it: the application resumes once the
    // peer has finished sending (the demo once waited for its timeout here).
    let t0 = std::time::Instant::now();
    exact(&["--stall-ms", "200", "--connections", "2", "--bytes", "1048576"], 2, 1 << 20);
    assert!(t0.elapsed() < std::time::Duration::from_secs(60), "took {:?}", t0.elapsed());
}

#[test]
fn indicate_and_post_multi_mdl_non_push() {
    if !can_run() {
        return;
    }
    exact(
        &["--indicate-and-post", "--rcv-indication-size", "128", "--connections", "1", "--bytes", "2097152"],
        1,
        2 << 20,
    );
    exact(&["--mdls", "3", "--no-push", "--connections", "2", "--bytes", "4194304"], 2, 4 << 20);
}

#[test]
fn serve_with_a_python_client_and_nc() {
    if !can_run() {
        return;
    }
    // `chimney serve` in a fresh namespace (unshare), a Python socket client sending 3 MB,
    // and nc (when installed) sending a file; one JSON line per connection, then a summary.
    let bin = env!("CARGO_BIN_EXE_chimney");
    let nc = Command::new("sh").args(["-c", "command -v nc"]).output().map(|o| o.status.success()).unwrap_or(false);
    let n = if nc { 2 } else { 1 };
    let script = format!(
        r#"{bin} serve --tun chs0 --local 198.18.0.2/24 --listen 198.18.0.1:5001 --connections {n} > /tmp/chimney-serve-$$.out &
pid=$!
sleep 0.5
python3 -c '
import socket, hashlib
s = socket.create_connection(("198.18.0.1", 5001))
data = bytes((i * 7) % 251 for i in range(3000000))
s.sendall(data); s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
print("PY", hashlib.sha256(data).hexdigest())
'
if [ {n} = 2 ]; then head -c 1000000 /dev/zero | nc -N 198.18.0.1 5001 || head -c 1000000 /dev/zero | nc -q 1 198.18.0.1 5001; fi
wait $pid
echo EXIT $?
cat /tmp/chimney-serve-$$.out; rm -f /tmp/chimney-serve-$$.out
"#
    );
    let out = Command::new("unshare")
        .args(["--net", "sh", "-c", &format!("ip link set lo up; {script}")])
        .output()
        .expect("unshare");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("EXIT 0"), "serve failed: {text} {}", String::from_utf8_lossy(&out.stderr));
    let py = text.lines().find_map(|l| l.strip_prefix("PY ")).expect("python client ran").to_string();
    let lines: Vec<Value> =
        text.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    let conns: Vec<&Value> = lines.iter().filter(|v| v.get("peer").is_some()).collect();
    assert_eq!(conns.len(), n, "{text}");
    assert!(conns.iter().any(|c| c["sha256"] == py.as_str() && c["bytes"] == 3_000_000), "{text}");
    for c in &conns {
        assert_eq!(c["end"], "fin", "{c}");
        assert_eq!(c["violations"], 0);
    }
    if nc {
        assert!(conns.iter().any(|c| c["bytes"] == 1_000_000), "{text}");
    }
    let summary = lines.iter().find_map(|v| v.get("summary")).expect("summary line");
    assert_eq!(summary["connections"].as_u64(), Some(n as u64));
    assert_eq!(summary["violations"].as_u64(), Some(0));
}

#[test]
fn serve_with_iperf2_client() {
    if !can_run() {
        return;
    }
    let has = Command::new("sh")
        .args(["-c", "iperf -v 2>&1 | grep -q 'iperf version 2'"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !has {
        if std::env::var("CHIMNEY_REQUIRE_REAL").is_ok_and(|v| v == "1") {
            panic!("iperf (version 2) is required by CI but not installed");
        }
        eprintln!("iperf2 not installed: skipped");
        return;
    }
    let bin = env!("CARGO_BIN_EXE_chimney");
    let script = format!(
        r#"ip link set lo up
{bin} serve --tun chi0 --local 198.18.0.2/24 --listen 198.18.0.1:5001 --connections 1 > /tmp/chimney-iperf-$$.out &
pid=$!
sleep 0.5
timeout 60 iperf -c 198.18.0.1 -p 5001 -n 20M > /dev/null 2>&1
wait $pid
echo EXIT $?
cat /tmp/chimney-iperf-$$.out; rm -f /tmp/chimney-iperf-$$.out
"#
    );
    let out = Command::new("unshare").args(["--net", "sh", "-c", &script]).output().expect("unshare");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("EXIT 0"), "serve failed: {text}");
    let conns: Vec<Value> = text
        .lines()
        .filter(|l| l.starts_with("{\""))
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &Value| v.get("peer").is_some())
        .collect();
    assert_eq!(conns.len(), 1, "{text}");
    // iperf2 opens with a small header then 20 MiB of payload.
    assert!(conns[0]["bytes"].as_u64().unwrap() >= 20 << 20, "{text}");
    assert_eq!(conns[0]["violations"], 0);
    assert_eq!(conns[0]["end"], "fin");
}

#[test]
fn without_root_the_demo_says_so_and_runs_simulated() {
    if !can_run() {
        return;
    }
    // Drop root with setpriv: one line says why, then the same transfer runs simulated.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_chimney"),
            "demo",
            "--bytes",
            "200000",
        ])
        .output()
        .expect("setpriv (util-linux)");
    let err = String::from_utf8_lossy(&out.stderr);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("needs root") && err.contains("simulator"), "{err}");
    assert!(text.contains("SIMULATED") && text.contains("result: OK"), "{text}");
    assert_eq!(out.status.code(), Some(0), "{text}");
}

/// `serve --queues 2`: a multi-queue TUN with one shard per queue; eight clients with
/// distinct streams; every stream lands whole in its own file; the summary counts them all.
#[test]
fn serve_with_two_queues_writes_every_stream() {
    if !can_run() {
        return;
    }
    let bin = env!("CARGO_BIN_EXE_chimney");
    let dir = std::env::temp_dir().join(format!("chimney-out-q-{}", std::process::id()));
    let script = format!(
        r#"ip link set lo up
{bin} serve --tun chq0 --local 198.18.0.2/24 --listen 198.18.0.1:5001 --queues 2 --connections 8 --out {d} > {d}.json &
pid=$!
sleep 0.5
python3 -c '
import socket, threading
def send(i):
    s = socket.create_connection(("198.18.0.1", 5001))
    s.sendall(bytes([i]) * 1000 + bytes(range(256)) * (500 + i)); s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
ts = [threading.Thread(target=send, args=(i,)) for i in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
'
wait $pid
echo EXIT $?
"#,
        d = dir.display()
    );
    let out = Command::new("unshare").args(["--net", "sh", "-c", &script]).output().expect("unshare");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("EXIT 0"), "{text} {}", String::from_utf8_lossy(&out.stderr));
    let mut got: Vec<Vec<u8>> =
        std::fs::read_dir(&dir).unwrap().map(|e| std::fs::read(e.unwrap().path()).unwrap()).collect();
    got.sort_by_key(|v| v[0]);
    let want: Vec<Vec<u8>> = (0..8u8)
        .map(|i| {
            let mut v = vec![i; 1000];
            v.extend((0..500 + usize::from(i)).flat_map(|_| 0..=255u8));
            v
        })
        .collect();
    assert_eq!(got.len(), 8, "one file per connection");
    assert!(got == want, "every stream whole, in its own file");
    let json = std::fs::read_to_string(format!("{}.json", dir.display())).unwrap();
    let summary: Value = json
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v.get("summary").is_some())
        .unwrap();
    assert_eq!(summary["summary"]["connections"], 8, "{json}");
    assert_eq!(summary["summary"]["violations"], 0, "{json}");
    assert_eq!(summary["summary"]["per_queue_offloads"].as_array().map(Vec::len), Some(2), "{json}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(format!("{}.json", dir.display()));
}

#[test]
fn serve_writes_streams_to_out_dir() {
    if !can_run() {
        return;
    }
    let bin = env!("CARGO_BIN_EXE_chimney");
    let dir = std::env::temp_dir().join(format!("chimney-out-{}", std::process::id()));
    let script = format!(
        r#"ip link set lo up
{bin} serve --tun cho0 --local fd00::2/64 --listen [fd00::1]:5001 --connections 1 --out {d} > {d}.json &
pid=$!
sleep 0.5
python3 -c '
import socket
s = socket.create_connection(("fd00::1", 5001))
s.sendall(bytes(range(256)) * 4000); s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
'
wait $pid
echo EXIT $?
"#,
        d = dir.display()
    );
    let out = Command::new("unshare").args(["--net", "sh", "-c", &script]).output().expect("unshare");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("EXIT 0"), "{text} {}", String::from_utf8_lossy(&out.stderr));
    let written = std::fs::read(dir.join("conn-1.bin")).expect("stream file");
    let want: Vec<u8> = (0..4000).flat_map(|_| 0..=255u8).collect();
    assert_eq!(written, want);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(format!("{}.json", dir.display()));
}

/// `chimney bench e2e` at a small size: all three receivers move every byte at both MTUs.
#[test]
fn e2e_bench_smoke() {
    if !can_run() {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_chimney"))
        .args(["bench", "e2e", "--bytes", "8388608", "--rounds", "1", "--json"])
        .output()
        .expect("run chimney");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("{e}: {text} {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(out.status.code(), Some(0));
    for r in v["results"].as_array().unwrap() {
        for k in ["kernel_gbps", "chimney_gbps", "smoltcp_gbps", "chimney_over_kernel", "chimney_over_smoltcp"] {
            assert!(r[k].as_f64().is_some_and(|x| x > 0.0), "{k} in {r}");
        }
    }
}

fn tshark_available() -> bool {
    let ok = Command::new("tshark").arg("-v").output().is_ok_and(|o| o.status.success());
    if !ok && std::env::var("CHIMNEY_REQUIRE_REAL").is_ok_and(|v| v == "1") {
        panic!("tshark is required (CI installs it) but missing");
    }
    ok
}

/// `tshark` over a capture: its expert summary, and the window scale factors it computed.
fn tshark(file: &std::path::Path) -> (String, Vec<String>) {
    let expert = Command::new("tshark").arg("-r").arg(file).args(["-q", "-z", "expert"]).output().expect("tshark");
    let scales = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-Y", "tcp.srcport == 5001", "-T", "fields", "-e", "tcp.window_size_scalefactor"])
        .output()
        .expect("tshark");
    (
        String::from_utf8_lossy(&expert.stdout).into_owned(),
        String::from_utf8_lossy(&scales.stdout).lines().map(str::to_string).collect(),
    )
}

/// `--pcap` captures read by tshark: a lossless transfer shows no missing segment on the
/// target's side and window scaling is recognised; an impaired transfer is captured too
/// (with the retransmissions tshark should see).
#[test]
fn pcap_captures_pass_tshark_tcp_analysis() {
    if !can_run() || !tshark_available() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("chimney-pcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let clean = dir.join("clean.pcap");
    exact(&["--connections", "2", "--bytes", "4194304", "--pcap", clean.to_str().unwrap()], 2, 4 << 20);
    let (expert, scales) = tshark(&clean);
    assert!(expert.contains("Connection establish request"), "tshark saw no handshake: {expert}");
    for bad in
        ["ACKed segment that wasn't captured", "Previous segment(s) not captured", "previous segment not captured"]
    {
        assert!(!expert.contains(bad), "{bad} in a lossless capture:\n{expert}");
    }
    // The target offers window scale 2^n (n ≥ 1 for a 4 MiB buffer); tshark applies it.
    assert!(scales.iter().any(|s| s.parse::<i64>().is_ok_and(|f| f > 1)), "window scaling not recognised: {scales:?}");
    let lossy = dir.join("lossy.pcap");
    let args = ["--connections", "1", "--bytes", "2097152", "--loss", "0.02", "--reorder", "0.02"];
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["--pcap", lossy.to_str().unwrap()]);
    exact(&a, 1, 2 << 20);
    let (expert, _) = tshark(&lossy);
    assert!(expert.contains("Connection establish request"), "{expert}");
    assert!(
        expert.contains("retransmission") || expert.contains("Out-Of-Order") || expert.contains("Dup ACK"),
        "{expert}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
