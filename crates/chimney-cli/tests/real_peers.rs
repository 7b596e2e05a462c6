//! Real peers: Linux kernel TCP clients → TUN → offload target, through the `chimney`
//! binary, as root. Each test creates its own anonymous network namespace (the kernel removes
//! it with the process).
//!
//! Every test here is in `needs_root`: without root, /dev/net/tun or a tool it uses (nc,
//! iperf 2, tshark, python3, unshare, setpriv) it fails and says what is missing. It never
//! passes silently. `scripts/test.sh` run as root installs the tools first; run as non-root
//! it skips this module by name (`--skip needs_root::`) and lists what it skipped.

use std::process::Command;

use serde_json::Value;

mod common;

/// Fails the test unless it runs as root with /dev/net/tun.
fn need_root() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let tun = std::path::Path::new("/dev/net/tun").exists();
    let why = match (root, tun) {
        (true, true) => return,
        (false, _) => "root (network namespaces and TUN devices)",
        (true, false) => "/dev/net/tun (mknod /dev/net/tun c 10 200)",
    };
    panic!("this real-peer test needs {why}; `bash scripts/test.sh` as non-root skips these tests and lists them");
}

/// Runs `script` with `sh` in a network namespace of its own (and a mount namespace too
/// with `mount`), which the kernel removes with the shell; fails the test without unshare.
fn in_new_netns(script: &str, mount: bool) -> std::process::Output {
    need_tool("unshare --version", "unshare (apt-get install util-linux)");
    let ns: &[&str] = if mount { &["--net", "--mount"] } else { &["--net"] };
    Command::new("unshare").args(ns).args(["sh", "-c", script]).output().expect("unshare")
}

/// Fails the test unless `sh -c check` succeeds: the tool is installed.
fn need_tool(check: &str, what: &str) {
    let ok = Command::new("sh").args(["-c", &format!("{check} >/dev/null 2>&1")]).status().is_ok_and(|s| s.success());
    assert!(ok, "this real-peer test needs {what}; `bash scripts/test.sh` as root installs it");
}

mod needs_root {
    use super::*;

    fn demo(args: &[&str]) -> (i32, Value) {
        let out = Command::new(env!("CARGO_BIN_EXE_chimney"))
            .arg("demo")
            .arg("--json")
            .args(args)
            .output()
            .expect("run chimney");
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
            // The default direction is `both`: the stream came back, echoed.
            if !args.contains(&"--direction") && !args.iter().any(|a| a.starts_with("--reset") || a.contains("-after-"))
            {
                assert_eq!(c["returned"].as_u64(), Some(bytes), "{c}");
            }
            assert_eq!(c["end"], "fin", "{c}");
            assert_eq!(c["violations"].as_u64(), Some(0), "{c}");
        }
        v
    }

    /// Echo of 256 MiB, byte-exact both ways, over IPv4 and IPv6, clean and with 2 % loss in
    /// both directions (the demo's own impairment layer): every client reads back exactly
    /// what it sent, through the offloaded send path, with zero violations.
    #[test]
    fn echo_256mib_clean_and_with_loss_v4_v6() {
        need_root();
        for extra in [&["--ipv6"][..], &["--loss", "0.02"][..], &["--loss", "0.02", "--ipv6"][..]] {
            let mut args = vec!["--connections", "1", "--bytes", "268435456"];
            args.extend_from_slice(extra);
            let v = exact(&args, 1, 256 << 20);
            let c = &v["connections"][0];
            assert_eq!(c["returned"].as_u64(), Some(256 << 20), "{extra:?}: {c}");
            assert_eq!(c["target_sent"].as_u64(), Some(256 << 20), "{extra:?}: {c}");
        }
    }

    /// `demo --direction`: `both` (the default: every client reads back its own stream,
    /// echoed through the send path), `send` (the target sends the seeded pattern; clients
    /// check it), `recv` (nothing comes back). v4 and v6.
    #[test]
    fn demo_directions() {
        need_root();
        for (dir, v6) in [("both", false), ("both", true), ("send", false), ("send", true), ("recv", false)] {
            let mut args = vec!["--connections", "2", "--bytes", "33554432", "--direction", dir];
            if v6 {
                args.push("--ipv6");
            }
            let (code, v) = demo(&args);
            assert_eq!((code, &v["ok"]), (0, &Value::Bool(true)), "{args:?}: {v}");
            for c in v["connections"].as_array().unwrap() {
                assert_eq!(c["exact"], true, "{c}");
                assert_eq!(c["violations"], 0, "{c}");
                let (sent, back) = (c["sent"].as_u64().unwrap(), c["returned"].as_u64().unwrap());
                match dir {
                    "both" => assert!(sent == 32 << 20 && back == 32 << 20 && c["target_sent"] == back, "{c}"),
                    "send" => assert!(sent == 0 && back == 32 << 20 && c["target_sent"] == back, "{c}"),
                    _ => assert!(sent == 32 << 20 && back == 0 && c["target_sent"] == 0, "{c}"),
                }
            }
        }
    }

    #[test]
    fn ipv4_1mib_and_256mib() {
        need_root();
        let v = exact(&["--connections", "1", "--bytes", "1048576"], 1, 1 << 20);
        // The kernel's own housekeeping on the TUN (IPv6 router solicitations, MLD) goes to
        // the host path: it is named there and never counted as a drop.
        let drops = v["drops"].as_object().unwrap();
        assert!(!drops.contains_key("not_tcp") && !drops.contains_key("icmp_igmp"), "{v}");
        assert!(v["host_path"].as_object().unwrap().keys().all(|k| k == "icmp_igmp"), "{v}");
        exact(&["--connections", "1", "--bytes", "268435456", "--seed", "2"], 1, 256 << 20);
    }

    /// TUN offloads: the kernel hands over GSO super-packets (IPv4 and IPv6) and the streams stay
    /// exact; `--no-offload` reads wire-sized packets only.
    #[test]
    fn gso_super_packets_and_no_offload() {
        need_root();
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
        need_root();
        for extra in [&["--mdls", "3"][..], &["--ipv6", "--post-size", "20000"][..]] {
            // Receive only: an echo's ACK segments would count against the placed share.
            let mut args = vec!["--connections", "1", "--bytes", "67108864", "--direction", "recv"];
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
        need_root();
        let path = std::env::temp_dir().join(format!("chimney-demo-trace-{}.jsonl", std::process::id()));
        let p = path.to_str().unwrap();
        for extra in [&["--trace-bytes", "--loss", "0.01"][..], &["--stall-ms", "200", "--rcv-wnd", "65536"][..]] {
            let mut args = vec!["--connections", "2", "--bytes", "1048576", "--trace", p];
            args.extend_from_slice(extra);
            exact(&args, 2, 1 << 20);
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_chimney"))
                .args(["verify", "--json", p])
                .output()
                .unwrap();
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
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_chimney"))
                .args(["verify", "--json", &f])
                .output()
                .unwrap();
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
        need_root();
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
        need_root();
        exact(&["--ipv6", "--connections", "2", "--bytes", "67108864"], 2, 64 << 20);
    }

    #[test]
    fn one_percent_loss_with_reordering_and_duplication_v4_and_v6() {
        need_root();
        let imp = ["--loss", "0.01", "--reorder", "0.01", "--dup", "0.01"];
        let v = exact(&[&imp[..], &["--connections", "2", "--bytes", "8388608"]].concat(), 2, 8 << 20);
        assert!(v["drops"].as_object().is_some_and(|d| !d.is_empty()), "impairment had no visible effect: {v}");
        exact(&[&imp[..], &["--ipv6", "--connections", "1", "--bytes", "4194304"]].concat(), 1, 4 << 20);
    }

    #[test]
    fn five_percent_loss_with_reordering_and_duplication() {
        need_root();
        let args = ["--loss", "0.05", "--reorder", "0.02", "--dup", "0.02", "--connections", "1", "--bytes", "1048576"];
        exact(&args, 1, 1 << 20);
        exact(&[&args[..], &["--ipv6", "--seed", "9"]].concat(), 1, 1 << 20);
    }

    #[test]
    fn sixty_four_concurrent_connections() {
        need_root();
        exact(&["--connections", "64", "--bytes", "1048576"], 64, 1 << 20);
    }

    #[test]
    fn half_close_then_target_closes() {
        need_root();
        // Every client shuts down its sending half and keeps reading until the target's FIN:
        // the target indicates the disconnect, the host closes, both FINs are ACKed.
        let v = exact(&["--connections", "2", "--bytes", "100000", "--no-push", "--post-size", "65536"], 2, 100_000);
        for c in v["connections"].as_array().unwrap() {
            assert!(c["completions"].as_u64().unwrap() >= 2, "{c}");
        }
    }

    #[test]
    fn client_reset_mid_stream_aborts_outstanding_requests() {
        need_root();
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
        need_root();
        let v = exact(
            &["--indications-only", "--connections", "2", "--bytes", "16777216", "--direction", "recv"],
            2,
            16 << 20,
        );
        for c in v["connections"].as_array().unwrap() {
            assert_eq!(c["completions"].as_u64(), Some(0), "{c}");
            assert!(c["indications"].as_u64().unwrap() > 0, "{c}");
        }
    }

    #[test]
    fn stalled_application_resumes_after_zero_window() {
        need_root();
        // The application takes nothing until the window is zero, waits 300 ms (Linux probes the
        // zero window), then posts: the window reopens and nothing is lost.
        exact(&["--stall-ms", "300", "--rcv-wnd", "65536", "--connections", "1", "--bytes", "4194304"], 1, 4 << 20);
        // A stream shorter than the window never closes it: the application resumes once the
        // peer has finished sending (the demo once waited for its timeout here).
        let t0 = std::time::Instant::now();
        exact(&["--stall-ms", "200", "--connections", "2", "--bytes", "1048576"], 2, 1 << 20);
        // An application that posts nothing refuses indications while stalled; it then posts a
        // zero-byte request, which re-enables them (it once hung until the timeout).
        for extra in ["--indications-only", "--posts=0"] {
            exact(&["--stall-ms", "300", extra, "--connections", "1", "--bytes", "4194304"], 1, 4 << 20);
        }
        assert!(t0.elapsed() < std::time::Duration::from_secs(60), "took {:?}", t0.elapsed());
    }

    #[test]
    fn indicate_and_post_multi_mdl_non_push() {
        need_root();
        exact(
            &["--indicate-and-post", "--rcv-indication-size", "128", "--connections", "1", "--bytes", "2097152"],
            1,
            2 << 20,
        );
        exact(&["--mdls", "3", "--no-push", "--connections", "2", "--bytes", "4194304"], 2, 4 << 20);
    }

    #[test]
    fn serve_with_a_python_client_and_nc() {
        need_root();
        need_tool("python3 -V", "python3");
        // `chimney serve` in a fresh namespace (unshare), a Python socket client sending 3 MB,
        // and nc sending a file; one JSON line per connection, then a summary.
        let bin = env!("CARGO_BIN_EXE_chimney");
        need_tool("command -v nc", "nc (apt-get install netcat-openbsd)");
        let n = 2;
        let script = format!(
            r#"{bin} serve --tun chs0 --local 198.18.0.2/24 --listen 198.18.0.1:5001 --connections {n} --hash sha256 > /tmp/chimney-serve-$$.out &
pid=$!
for i in $(seq 200); do ip -o addr show dev chs0 scope global 2>/dev/null | grep -q . && break; sleep 0.05; done
python3 -c '
import socket, hashlib
s = socket.create_connection(("198.18.0.1", 5001))
data = bytes((i * 7) % 251 for i in range(3000000))
s.sendall(data); s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
print("PY", hashlib.sha256(data).hexdigest())
'
head -c 1000000 /dev/zero | nc -N 198.18.0.1 5001 || head -c 1000000 /dev/zero | nc -q 1 198.18.0.1 5001
wait $pid
echo EXIT $?
cat /tmp/chimney-serve-$$.out; rm -f /tmp/chimney-serve-$$.out
"#
        );
        let out = in_new_netns(&format!("ip link set lo up; {script}"), false);
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
        assert!(conns.iter().any(|c| c["bytes"] == 1_000_000), "{text}");
        let summary = lines.iter().find_map(|v| v.get("summary")).expect("summary line");
        assert_eq!(summary["connections"].as_u64(), Some(n as u64));
        assert_eq!(summary["violations"].as_u64(), Some(0));
    }

    #[test]
    fn serve_with_iperf2_client() {
        need_root();
        need_tool("iperf -v 2>&1 | grep -q 'iperf version 2'", "iperf version 2 (apt-get install iperf)");
        let bin = env!("CARGO_BIN_EXE_chimney");
        let script = format!(
            r#"ip link set lo up
{bin} serve --tun chi0 --local 198.18.0.2/24 --listen 198.18.0.1:5001 --connections 1 > /tmp/chimney-iperf-$$.out &
pid=$!
for i in $(seq 200); do ip -o addr show dev chi0 scope global 2>/dev/null | grep -q . && break; sleep 0.05; done
timeout 60 iperf -c 198.18.0.1 -p 5001 -n 20M > /dev/null 2>&1
wait $pid
echo EXIT $?
cat /tmp/chimney-iperf-$$.out; rm -f /tmp/chimney-iperf-$$.out
"#
        );
        let out = in_new_netns(&script, false);
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
        need_root();
        need_tool("setpriv --version", "setpriv (apt-get install util-linux)");
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
        // What only a TUN can do is refused in the fallback, not silently ignored.
        let out = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                env!("CARGO_BIN_EXE_chimney"),
                "demo",
                "--queues",
                "2",
            ])
            .output()
            .expect("setpriv (util-linux)");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("needs root") && err.contains("--queues"), "{err}");
    }

    /// `serve --queues 2`: a multi-queue TUN with one shard per queue; eight clients with
    /// distinct streams; every stream lands whole in its own file; the summary counts them all.
    #[test]
    fn serve_with_two_queues_writes_every_stream() {
        need_root();
        need_tool("python3 -V", "python3");
        let bin = env!("CARGO_BIN_EXE_chimney");
        let dir = std::env::temp_dir().join(format!("chimney-out-q-{}", std::process::id()));
        let script = format!(
            r#"ip link set lo up
{bin} serve --tun chq0 --local 198.18.0.2/24 --listen 198.18.0.1:5001 --queues 2 --connections 8 --out {d} > {d}.json &
pid=$!
for i in $(seq 200); do ip -o addr show dev chq0 scope global 2>/dev/null | grep -q . && break; sleep 0.05; done
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
        let out = in_new_netns(&script, false);
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
        need_root();
        need_tool("python3 -V", "python3");
        let bin = env!("CARGO_BIN_EXE_chimney");
        let dir = std::env::temp_dir().join(format!("chimney-out-{}", std::process::id()));
        let script = format!(
            r#"ip link set lo up
{bin} serve --tun cho0 --local fd00::2/64 --listen [fd00::1]:5001 --connections 2 --out {d} > {d}.json &
pid=$!
for i in $(seq 200); do ip -o addr show dev cho0 scope global 2>/dev/null | grep -q . && break; sleep 0.05; done
python3 -c '
import socket
s = socket.create_connection(("fd00::1", 5001))
print("PEER", s.getsockname()[0], s.getsockname()[1])
s.sendall(bytes(range(256)) * 4000); s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
s = socket.create_connection(("fd00::1", 5001))
print("EMPTY", s.getsockname()[0], s.getsockname()[1])
s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
'
wait $pid
echo EXIT $?
"#,
            d = dir.display()
        );
        let out = in_new_netns(&script, false);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("EXIT 0"), "{text} {}", String::from_utf8_lossy(&out.stderr));
        // Files are named after the peer (ADDRESS_PORT.bin), the JSON line names the file,
        // and an empty connection leaves an empty file.
        let name = |tag: &str| {
            let l = text.lines().find_map(|l| l.strip_prefix(tag)).expect("client ran");
            let (ip, port) = l.trim().split_once(' ').unwrap();
            format!("{ip}_{port}.bin")
        };
        let (full, empty) = (name("PEER "), name("EMPTY "));
        let written = std::fs::read(dir.join(&full)).expect("stream file named after the peer");
        let want: Vec<u8> = (0..4000).flat_map(|_| 0..=255u8).collect();
        assert_eq!(written, want);
        assert_eq!(std::fs::read(dir.join(&empty)).expect("an empty file for an empty connection"), b"");
        let json = std::fs::read_to_string(format!("{}.json", dir.display())).unwrap();
        for f in [&full, &empty] {
            assert!(json.lines().any(|l| l.contains(&format!("\"file\":\"{f}\""))), "{f} not in {json}");
        }
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(format!("{}.json", dir.display()));
    }

    /// `chimney bench e2e` at a small size: all three receivers move every byte at both MTUs.
    #[test]
    fn e2e_bench_smoke() {
        need_root();
        let v = bench_e2e_json(&["--bytes", "8388608", "--rounds", "1"]);
        for r in v["results"].as_array().unwrap() {
            for k in ["kernel_gbps", "chimney_gbps", "smoltcp_gbps", "chimney_over_kernel", "chimney_over_smoltcp"] {
                assert!(r[k].as_f64().is_some_and(|x| x > 0.0), "{k} in {r}");
            }
        }
    }

    /// `chimney bench e2e ARGS --json`, which must succeed with every transfer verified.
    fn bench_e2e_json(args: &[&str]) -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_chimney"))
            .args(["bench", "e2e"])
            .args(args)
            .arg("--json")
            .output()
            .expect("run chimney");
        let text = String::from_utf8_lossy(&out.stdout);
        let v: Value = serde_json::from_str(text.trim())
            .unwrap_or_else(|e| panic!("{e}: {text} {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(v["ok"], true, "{v}");
        assert_eq!(out.status.code(), Some(0));
        v
    }

    /// `bench e2e --connections 4 --queues 2`: four kernel flows at once into the kernel over
    /// veth and into chimney on a two-queue TUN (one engine shard per queue); aggregate rates
    /// and machine CPU come out, every flow verified.
    #[test]
    fn e2e_bench_many_flows() {
        need_root();
        let v = bench_e2e_json(&[
            "--bytes",
            "32M",
            "--rounds",
            "1",
            "--mtu",
            "1500",
            "--connections",
            "4",
            "--queues",
            "2",
        ]);
        assert_eq!(v["connections"], 4, "{v}");
        let r = &v["results"][0];
        for k in ["kernel_gbps", "chimney_gbps", "chimney_over_kernel", "chimney_machine_cpu_s_per_gib"] {
            assert!(r[k].as_f64().is_some_and(|x| x > 0.0), "{k} in {r}");
        }
        assert!(r.get("smoltcp_gbps").is_none(), "{r}");
    }

    /// `bench e2e --only kernel-iperf,serve`: an iperf 2 client into a kernel `iperf -s` and
    /// into chimney as `serve` runs it (digest on); both rates, both machine CPU figures and
    /// their ratio come out, and every transfer is verified.
    #[test]
    fn e2e_bench_serve_against_kernel_iperf() {
        need_root();
        need_tool("iperf -v 2>&1 | grep -q 'iperf version 2'", "iperf version 2 (apt-get install iperf)");
        let v = bench_e2e_json(&["--bytes", "16M", "--rounds", "1", "--mtu", "1500", "--only", "kernel-iperf,serve"]);
        let r = &v["results"][0];
        for k in [
            "kernel-iperf_gbps",
            "serve_gbps",
            "serve_over_kernel_iperf",
            "kernel-iperf_machine_cpu_s_per_gib",
            "serve_machine_cpu_s_per_gib",
        ] {
            assert!(r[k].as_f64().is_some_and(|x| x > 0.0), "{k} in {r}");
        }
        // The same with the client's window scaling off (a 64 KB window): still verified.
        let v = bench_e2e_json(&[
            "--bytes",
            "16M",
            "--rounds",
            "1",
            "--mtu",
            "1500",
            "--only",
            "kernel-iperf,serve",
            "--no-wscale",
        ]);
        assert_eq!(v["no_wscale"], true, "{v}");
        assert!(v["results"][0]["serve_over_kernel_iperf"].as_f64().is_some_and(|x| x > 0.0), "{v}");
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
        need_root();
        need_tool("tshark -v", "tshark (apt-get install tshark)");
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
        assert!(
            scales.iter().any(|s| s.parse::<i64>().is_ok_and(|f| f > 1)),
            "window scaling not recognised: {scales:?}"
        );
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

    /// `--timeout`: a run that cannot finish ends within a second or two of it (clients
    /// blocked in a write included), exits 1 and says what was still running.
    #[test]
    fn timeout_ends_the_run_and_names_what_was_running() {
        need_root();
        for extra in [&["--bytes", "100G"][..], &["--stall-ms", "3000", "--indications-only"][..]] {
            let t0 = std::time::Instant::now();
            let out = Command::new(env!("CARGO_BIN_EXE_chimney"))
                .args(["demo", "--timeout", "1", "--connections", "1"])
                .args(extra)
                .output()
                .expect("run chimney");
            let took = t0.elapsed();
            let (text, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert_eq!(out.status.code(), Some(1), "{extra:?}: {text} {err}");
            assert!(err.contains("timed out after 1 s") && err.contains("still sending"), "{err}");
            assert!(text.contains("result: FAILED"), "the result table is printed: {text}");
            // A liveness bound, not a speed figure: the bug was a run that never ended.
            assert!(took < std::time::Duration::from_secs(30), "{extra:?} took {took:?}");
        }
    }

    /// An IPv4 run with an MTU below IPv6's minimum works (only the family in use is set up).
    #[test]
    fn ipv4_with_a_small_mtu() {
        need_root();
        exact(&["--mtu", "1000", "--connections", "1", "--bytes", "2M"], 1, 2 << 20);
    }

    /// `--queues 2 --trace F --plot S`: the plot finds the shard trace (F.0 or F.1) that
    /// offloaded the plotted connection; the result table comes first whatever happens.
    #[test]
    fn queues_with_trace_and_plot() {
        need_root();
        let base = std::env::temp_dir().join(format!("chimney-qplot-{}", std::process::id()));
        let (trace, svg) = (base.with_extension("jsonl"), base.with_extension("svg"));
        let out = Command::new(env!("CARGO_BIN_EXE_chimney"))
            .args(["demo", "--queues", "2", "--connections", "4", "--bytes", "1M", "--trace"])
            .arg(&trace)
            .arg("--plot")
            .arg(&svg)
            .output()
            .expect("run chimney");
        let (text, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{text} {err}");
        assert!(text.contains("result: OK"), "{text}");
        let plot = std::fs::read_to_string(&svg).expect("plot written");
        assert!(plot.contains("<svg") && plot.contains("completion"), "{:.300}", plot);
        let _ = std::fs::remove_file(&svg);
        for i in 0..2 {
            let _ = std::fs::remove_file(format!("{}.{i}", trace.display()));
        }
    }

    /// The README's `serve` block, run as written (with this build's binary): both transfers
    /// end, serve exits 0, and no namespace is left behind; and when serve fails at once (a
    /// binary that exits), the block fails and still removes its namespace.
    #[test]
    fn readme_serve_snippet_runs_and_cleans_up() {
        need_root();
        need_tool("command -v nc", "nc (apt-get install netcat-openbsd)");
        need_tool("iperf -v 2>&1 | grep -q 'iperf version 2'", "iperf version 2 (apt-get install iperf)");
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
        let at = readme.find("### `serve` with nc or iperf").expect("README section");
        let block = readme[at..].split("```sh\n").nth(1).and_then(|b| b.split("\n```").next()).expect("sh block");
        assert!(!block.contains("sudo"), "{block}");
        let namespaces = || {
            let o = Command::new("ip").args(["netns", "list"]).output().unwrap();
            let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with("chimney-try-"))
                .map(str::to_string)
                .collect();
            v.sort();
            v
        };
        let before = namespaces();
        let script = block.replace("./target/release/chimney", env!("CARGO_BIN_EXE_chimney"));
        let out = Command::new("bash").args(["-c", &script]).output().expect("bash");
        let (text, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{text}\n{err}");
        let conns: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("peer").is_some())
            .collect();
        assert_eq!(conns.len(), 2, "{text}");
        assert!(conns.iter().all(|c| c["end"] == "fin" && c["violations"] == 0), "{text}");
        assert!(conns.iter().any(|c| c["bytes"] == 100u64 << 20), "{text}");
        assert_eq!(namespaces(), before, "the block left a namespace behind");
        // serve failing at once: the block fails, and its namespace is removed all the same.
        let failing = block.replace("./target/release/chimney serve", "false");
        let out = Command::new("bash").args(["-c", &failing]).output().expect("bash");
        assert_ne!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(namespaces(), before, "a failed run left its namespace behind");
    }

    /// `serve --out`: a failed write (a full file system) stops serve with an error naming
    /// the file and a non-zero exit; nothing is lost silently.
    #[test]
    fn serve_out_write_failure_is_an_error_naming_the_file() {
        need_root();
        need_tool("python3 -V", "python3");
        let bin = env!("CARGO_BIN_EXE_chimney");
        let script = format!(
            r#"ip link set lo up
d=$(mktemp -d)
mount -t tmpfs -o size=256k tmpfs "$d"
{bin} serve --tun chw0 --local 198.18.0.2/24 --listen 198.18.0.1:5001 --connections 1 --out "$d" > /dev/null 2> "$d.err" &
pid=$!
for i in $(seq 200); do ip -o addr show dev chw0 scope global 2>/dev/null | grep -q . && break; sleep 0.05; done
python3 -c '
import socket
s = socket.create_connection(("198.18.0.1", 5001))
s.settimeout(5)
try:
    s.sendall(bytes(1000000)); s.shutdown(socket.SHUT_WR); s.recv(1)
except OSError:
    pass
'
wait $pid
echo EXIT $?
cat "$d.err"
umount "$d"; rm -rf "$d" "$d.err"
"#
        );
        let out = in_new_netns(&script, true);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("EXIT 2"), "{text} {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("writing ") && text.contains("198.18.0.2_") && text.contains(".bin"), "{text}");
        assert!(text.contains("No space left"), "{text}");
    }

    /// RFC 4987 and no reflection, against a real Linux client: a raw-socket flooder inside
    /// the test's namespace sends 50,000 spoofed SYNs (and 2,000 segments from or to
    /// broadcast, multicast, loopback addresses or port 0) at `serve` while a Python client
    /// connects, then a second one after the flood. Each connects on its first SYN (one SYN
    /// per client in the capture) and its stream arrives exact; SYN cookies answered the
    /// flood; the capture holds no packet of the target's to or from a non-unicast address or
    /// port 0 (the flooder's packets have TTL 7, everything else is the target's or the
    /// client's), and the martians were counted.
    #[test]
    fn serve_under_a_spoofed_syn_flood() {
        need_root();
        need_tool("python3 -V", "python3");
        need_tool("tshark -v", "tshark (apt-get install tshark)");
        let bin = env!("CARGO_BIN_EXE_chimney");
        let flooder = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/synflood.py");
        let pcap = std::env::temp_dir().join(format!("chimney-flood-{}.pcap", std::process::id()));
        let script = format!(
            r#"ip link set lo up
{bin} serve --tun chf0 --local 198.18.0.2/24 --listen 198.18.0.1:5001 --connections 2 --pcap {pcap} --hash sha256 > {pcap}.out &
pid=$!
for i in $(seq 200); do ip -o addr show dev chf0 scope global 2>/dev/null | grep -q . && break; sleep 0.05; done
ip link set chf0 txqueuelen 20000
python3 {flooder} 198.18.0.1 5001 50000 --martians 2000 &
fpid=$!
sleep 0.3
client() {{
python3 -c '
import socket, hashlib
s = socket.create_connection(("198.18.0.1", 5001))
data = bytes((i * 7) % 251 for i in range(1000000))
s.sendall(data); s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
print("PY", hashlib.sha256(data).hexdigest())
'
}}
client
wait $fpid
client
wait $pid
echo EXIT $?
# The clients' kernel's own count: SYNs it had to send again (0: each connected on its first).
awk '/^TcpExt:/ {{ n++; if (n == 1) split($0, h); else for (i = 2; i <= NF; i++) if (h[i] == "TCPSynRetrans") print "SYNRETRANS", $i }}' /proc/net/netstat
cat {pcap}.out; rm -f {pcap}.out
"#,
            pcap = pcap.display()
        );
        let out = in_new_netns(&script, false);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("EXIT 0"), "serve failed: {text} {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("SENT 52000"), "the flood did not go out whole: {text}");
        let lines: Vec<Value> =
            text.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
        let conns: Vec<&Value> = lines.iter().filter(|v| v.get("peer").is_some()).collect();
        assert_eq!(conns.len(), 2, "{text}");
        let want = text.lines().find_map(|l| l.strip_prefix("PY ")).expect("client ran").trim().to_string();
        for c in &conns {
            assert_eq!(c["bytes"], 1_000_000, "{c}");
            assert_eq!(c["sha256"], want.as_str(), "{c}");
            assert_eq!(c["end"], "fin", "{c}");
            assert_eq!(c["violations"], 0, "{c}");
        }
        let summary = lines.iter().find_map(|v| v.get("summary")).expect("summary line");
        assert!(summary["defenses"]["syncookies_sent"].as_u64().unwrap_or(0) > 40_000, "{summary}");
        // The second client connects after the flood, its table still full: by cookie. The
        // first may have found room before the table filled.
        let valid = summary["defenses"]["syncookies_valid"].as_u64().unwrap_or(0);
        assert!((1..=2).contains(&valid), "{summary}");
        let retrans = text.lines().find_map(|l| l.strip_prefix("SYNRETRANS ")).expect("TcpExt counters");
        assert_eq!(retrans.trim(), "0", "a client had to send its SYN again");
        // The kernel's TUN queue may drop a few packets of a burst this fast, never many.
        let martians = summary["drops"]["martian"].as_u64().unwrap_or(0);
        assert!((1800..=2000).contains(&martians), "{summary}");
        // The capture: TTL, source, destination, ports, flags of every IPv4 packet.
        let fields = Command::new("tshark")
            .arg("-r")
            .arg(&pcap)
            .args(["-Y", "ip", "-T", "fields"])
            .args(["-e", "ip.ttl", "-e", "ip.src", "-e", "ip.dst", "-e", "tcp.srcport", "-e", "tcp.dstport"])
            .args(["-e", "tcp.flags.syn", "-e", "tcp.flags.ack"])
            .output()
            .expect("tshark");
        let _ = std::fs::remove_file(&pcap);
        let table = String::from_utf8_lossy(&fields.stdout);
        let prefix = [chimney::wire::Prefix { addr: "198.18.0.2".parse().unwrap(), len: 24 }];
        let (mut client_syns, mut ours) = (0, 0);
        for row in table.lines() {
            let f: Vec<&str> = row.split('\t').collect();
            if f.len() < 7 || f[0] == "7" {
                continue;
            }
            ours += 1;
            let (src, dst) = (f[1].parse().unwrap(), f[2].parse().unwrap());
            let (sport, dport) = (f[3].parse().unwrap_or(0), f[4].parse().unwrap_or(0));
            assert!(!chimney::wire::addr::is_martian(src, sport, dst, dport, &prefix), "reflected: {row}");
            let syn_only = matches!(f[5], "1" | "True") && matches!(f[6], "0" | "False");
            if syn_only && f[1] == "198.18.0.2" {
                client_syns += 1;
            }
        }
        assert!(ours > 40_000, "{ours} packets of the target's and the client's in the capture");
        assert_eq!(client_syns, 2, "each client connects on its first SYN");
    }

    /// The host closes first: `--close-after-bytes` / `--close-after-ms` send our FIN mid-
    /// stream (FIN-WAIT-1/2, then TIME-WAIT); the Linux client, half-closed, still sends its
    /// whole stream, which arrives exact, and each connection ends `closed` (IPv4 and IPv6).
    #[test]
    fn host_closes_first() {
        need_root();
        for args in [
            &["--connections", "2", "--bytes", "8388608", "--close-after-bytes", "1048576"][..],
            &["--connections", "2", "--bytes", "67108864", "--close-after-ms", "10", "--ipv6"][..],
        ] {
            let (code, v) = demo(args);
            assert_eq!(code, 0, "{args:?}: {v}");
            for c in v["connections"].as_array().unwrap() {
                assert_eq!(c["exact"], true, "{c}");
                assert_eq!(c["end"], "closed", "{args:?}: {c}");
                assert_eq!(c["violations"].as_u64(), Some(0), "{c}");
            }
        }
    }

    /// The host aborts: `--abort-after-bytes` / `--abort-after-ms` send an RST mid-stream;
    /// outstanding requests complete REQUEST_ABORTED, the client's write fails, and what
    /// arrived is at least the threshold and less than the stream (`end` = `aborted`).
    #[test]
    fn host_aborts() {
        need_root();
        for (args, floor) in [
            (&["--connections", "2", "--bytes", "67108864", "--abort-after-bytes", "1048576"][..], 1u64 << 20),
            (&["--connections", "1", "--bytes", "1073741824", "--abort-after-ms", "20", "--ipv6"][..], 1),
        ] {
            let (code, v) = demo(args);
            assert_eq!(code, 0, "{args:?}: {v}");
            for c in v["connections"].as_array().unwrap() {
                assert_eq!(c["end"], "aborted", "{args:?}: {c}");
                let b = c["bytes"].as_u64().unwrap();
                assert!(b >= floor && b < 1 << 30, "{c}");
                assert!(c["aborted"].as_u64().unwrap() >= 1, "no request came back REQUEST_ABORTED: {c}");
                assert_eq!(c["violations"].as_u64(), Some(0), "{c}");
            }
            assert!(v["tcp_offload_stats"]["out_resets"].as_u64().unwrap() >= 1, "{v}");
        }
    }

    /// SIGTERM: serve stops listening, closes every connection gracefully and resets what is
    /// left after the drain, so no peer hangs. A client that closes after our FIN ends
    /// cleanly; one that keeps sending is reset after the drain; both are reported
    /// `shutdown` and serve exits 0.
    #[test]
    fn serve_sigterm_closes_then_resets() {
        need_root();
        need_tool("python3 -V", "python3");
        let bin = env!("CARGO_BIN_EXE_chimney");
        let script = format!(
            r#"ip link set lo up
{bin} serve --tun chq0 --local 198.18.0.2/24 --listen 198.18.0.1:5001 --shutdown-drain-ms 1500 > /tmp/chimney-sig-$$.out &
pid=$!
for i in $(seq 200); do ip -o addr show dev chq0 scope global 2>/dev/null | grep -q . && break; sleep 0.05; done
python3 -c '
import socket, time
a = socket.create_connection(("198.18.0.1", 5001))
b = socket.create_connection(("198.18.0.1", 5001))
a.sendall(b"x" * 100000); b.sendall(b"y" * 50000)
print("READY", flush=True)
t = time.time()
print("A", "EOF" if a.recv(10) == b"" else "DATA", flush=True)
a.close()
try:
    while time.time() - t < 20:
        b.send(b"z" * 1000); time.sleep(0.05)
    print("B NEVER RESET")
except OSError as e:
    print("B RESET", e.errno)
' &
cpid=$!
sleep 1
kill -TERM $pid
wait $pid
echo EXIT $?
wait $cpid
cat /tmp/chimney-sig-$$.out; rm -f /tmp/chimney-sig-$$.out
"#
        );
        let out = in_new_netns(&script, false);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("EXIT 0"), "{text} {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("A EOF"), "the client never saw our FIN: {text}");
        assert!(text.contains("B RESET"), "the client that kept sending was not reset: {text}");
        let lines: Vec<Value> =
            text.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
        let conns: Vec<&Value> = lines.iter().filter(|v| v.get("peer").is_some()).collect();
        assert_eq!(conns.len(), 2, "{text}");
        for c in &conns {
            assert_eq!(c["end"], "shutdown", "{c}");
            assert_eq!(c["violations"], 0, "{c}");
        }
        assert!(conns.iter().any(|c| c["bytes"] == 100_000), "{text}");
    }

    /// `serve --echo` with a Linux client (v4 and v6, with and without the target's own
    /// loss in both directions): the client writes a seeded stream and reads it back
    /// concurrently; what comes back is byte-exact, serve's `sent` equals `bytes`, the hashes
    /// agree, every send completed SUCCESS, no violation, and the connection ends with FINs.
    #[test]
    fn serve_echo_round_trip() {
        need_root();
        need_tool("python3 -V", "python3");
        let bin = env!("CARGO_BIN_EXE_chimney");
        for (local, listen, host, extra, size) in [
            ("198.18.0.2/24", "198.18.0.1:5001", "198.18.0.1", "", 64u64 << 20),
            ("fd00::2/64", "[fd00::1]:5001", "fd00::1", "", 64 << 20),
            ("198.18.0.2/24", "198.18.0.1:5001", "198.18.0.1", "--loss 0.02", 16 << 20),
        ] {
            let script = format!(
                r#"ip link set lo up
{bin} serve --tun cec0 --local {local} --listen {listen} --connections 1 --echo --hash sha256 {extra} > /tmp/chimney-echo-$$.out &
pid=$!
for i in $(seq 200); do ip -o addr show dev cec0 scope global 2>/dev/null | grep -q . && break; sleep 0.05; done
python3 -c '
import socket, hashlib, threading, random
n = {size}
rnd = random.Random(7)
data = bytes(rnd.getrandbits(8) for _ in range(1 << 20))
s = socket.create_connection(("{host}", 5001))
h_out = hashlib.sha256()
def writer():
    left = n
    while left:
        k = min(left, len(data))
        s.sendall(data[:k]); h_out.update(data[:k]); left -= k
    s.shutdown(socket.SHUT_WR)
t = threading.Thread(target=writer); t.start()
h_in = hashlib.sha256(); got = 0
while True:
    b = s.recv(1 << 20)
    if not b: break
    h_in.update(b); got += len(b)
t.join()
print("ECHO", got, h_out.hexdigest(), h_in.hexdigest(), flush=True)
'
wait $pid
echo EXIT $?
cat /tmp/chimney-echo-$$.out; rm -f /tmp/chimney-echo-$$.out
"#
            );
            let out = in_new_netns(&script, false);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(text.contains("EXIT 0"), "serve failed: {text} {}", String::from_utf8_lossy(&out.stderr));
            let echo = text.lines().find(|l| l.starts_with("ECHO")).expect("the client finished");
            let f: Vec<&str> = echo.split_whitespace().collect();
            assert_eq!(f[1].parse::<u64>().unwrap(), size, "{listen} {extra}: {text}");
            assert_eq!(f[2], f[3], "{listen} {extra}: the echo differs");
            let lines: Vec<Value> =
                text.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
            let c = lines.iter().find(|v| v.get("peer").is_some()).expect("a connection line");
            assert_eq!(c["bytes"].as_u64(), Some(size), "{c}");
            assert_eq!(c["sent"].as_u64(), Some(size), "{c}");
            assert_eq!(c["sha256"], c["sent_sha256"], "{c}");
            assert_eq!(c["sha256"].as_str(), Some(f[2]), "{c}");
            assert_eq!(c["send_aborted"], 0, "{c}");
            assert_eq!(c["violations"], 0, "{c}");
            assert_eq!(c["end"], "fin", "{c}");
        }
    }

    /// Real applications on the send path, unmodified: `nc` reads `serve --source N` to the
    /// end; `chimney connect --send N` writes to `nc -l`; `chimney connect --echo-check N`
    /// gets its stream back from a Linux echo server. Byte-exact, zero violations, FIN ends.
    #[test]
    fn send_path_with_nc_and_connect() {
        need_root();
        need_tool("nc -h", "nc (netcat-openbsd)");
        need_tool("python3 -V", "python3");
        let bin = env!("CARGO_BIN_EXE_chimney");
        let script = format!(
            r#"ip link set lo up
{bin} serve --tun cnc0 --local 198.18.0.2/24 --listen 198.18.0.1:5001 --connections 1 --source 16M --hash sha256 > /tmp/chimney-src-$$.out &
pid=$!
for i in $(seq 200); do ip -o addr show dev cnc0 scope global 2>/dev/null | grep -q . && break; sleep 0.05; done
timeout 30 nc 198.18.0.1 5001 < /dev/null | sha256sum | sed "s/^/NC_GOT /"
wait $pid; echo "SOURCE_EXIT $?"
cat /tmp/chimney-src-$$.out
timeout 30 nc -l 9000 | sha256sum | sed "s/^/NCL_GOT /" &
for i in $(seq 100); do ss -ltn | grep -q ':9000 ' && break; sleep 0.05; done
{bin} connect 198.18.0.2:9000 --tun cnc1 --local 198.18.0.2/24 --send 8M --hash sha256; echo "SEND_EXIT $?"
wait
timeout 30 python3 -c '
import socket
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("", 9001)); l.listen(1)
c, _ = l.accept()
while True:
    b = c.recv(1 << 16)
    if not b: break
    c.sendall(b)
c.close()
' &
for i in $(seq 100); do ss -ltn | grep -q ':9001 ' && break; sleep 0.05; done
{bin} connect 198.18.0.2:9001 --tun cnc2 --local 198.18.0.2/24 --echo-check 16M; echo "ECHO_EXIT $?"
wait
{bin} connect 198.18.0.2:9009 --tun cnc3 --local 198.18.0.2/24 --send 1K; echo "REFUSED_EXIT $?"
rm -f /tmp/chimney-src-$$.out
"#
        );
        let out = in_new_netns(&script, false);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        let lines: Vec<Value> =
            text.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
        let conns: Vec<&Value> = lines.iter().filter(|v| v.get("peer").is_some()).collect();
        assert_eq!(conns.len(), 4, "{text} {err}");
        // serve --source 16M into nc.
        assert!(text.contains("SOURCE_EXIT 0"), "{text} {err}");
        let got = text.lines().find_map(|l| l.strip_prefix("NC_GOT ")).expect("nc ran");
        assert_eq!(conns[0]["sent"].as_u64(), Some(16 << 20), "{}", conns[0]);
        assert_eq!(got.split_whitespace().next(), conns[0]["sent_sha256"].as_str(), "nc received what serve sent");
        // connect --send 8M into nc -l.
        assert!(text.contains("SEND_EXIT 0"), "{text} {err}");
        let got = text.lines().find_map(|l| l.strip_prefix("NCL_GOT ")).expect("nc -l ran");
        assert_eq!(conns[1]["sent"].as_u64(), Some(8 << 20), "{}", conns[1]);
        assert_eq!(got.split_whitespace().next(), conns[1]["sent_sha256"].as_str(), "nc -l received what connect sent");
        // connect --echo-check 16M against an echo server.
        assert!(text.contains("ECHO_EXIT 0"), "{text} {err}");
        assert_eq!(conns[2]["exact"], true, "{}", conns[2]);
        assert_eq!(conns[2]["bytes"].as_u64(), Some(16 << 20), "{}", conns[2]);
        // Nothing listens on 9009: refused, exit 1.
        assert!(text.contains("REFUSED_EXIT 1"), "{text} {err}");
        assert_eq!(conns[3]["end"], "refused", "{}", conns[3]);
        for c in &conns[..3] {
            assert_eq!(c["violations"], 0, "{c}");
            assert_eq!(c["send_aborted"], 0, "{c}");
            assert_eq!(c["end"], "fin", "{c}");
        }
    }

    /// Unmodified iperf 2 on the send path: `iperf -R` (the server sends) against
    /// `serve --source`, and `iperf --full-duplex` against `serve --echo`. iperf reports the
    /// bytes it received; serve reports them acknowledged, with no violation.
    #[test]
    fn iperf2_reverse_and_full_duplex() {
        need_root();
        need_tool("iperf -v 2>&1 | grep -q 'iperf version 2'", "iperf (version 2)");
        let bin = env!("CARGO_BIN_EXE_chimney");
        let script = format!(
            r#"ip link set lo up
{bin} serve --tun cip0 --local 198.18.0.2/24 --listen 198.18.0.1:5001 --connections 1 --source 64M > /tmp/chimney-ipr-$$.out &
pid=$!
for i in $(seq 200); do ip -o addr show dev cip0 scope global 2>/dev/null | grep -q . && break; sleep 0.05; done
timeout 30 iperf -c 198.18.0.1 -p 5001 -R -t 30 -f b 2>&1 | sed "s/^/REVERSE /"
wait $pid; echo "REVERSE_EXIT $?"
cat /tmp/chimney-ipr-$$.out
{bin} serve --tun cip1 --local 198.18.0.2/24 --listen 198.18.0.1:5001 --connections 1 --echo > /tmp/chimney-ipr-$$.out &
pid=$!
for i in $(seq 200); do ip -o addr show dev cip1 scope global 2>/dev/null | grep -q . && break; sleep 0.05; done
timeout 30 iperf -c 198.18.0.1 -p 5001 --full-duplex -t 1 -f b 2>&1 | sed "s/^/DUPLEX /"
wait $pid; echo "DUPLEX_EXIT $?"
cat /tmp/chimney-ipr-$$.out; rm -f /tmp/chimney-ipr-$$.out
"#
        );
        let out = in_new_netns(&script, false);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(text.contains("REVERSE_EXIT 0") && text.contains("DUPLEX_EXIT 0"), "{text}");
        let lines: Vec<Value> =
            text.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
        let conns: Vec<&Value> = lines.iter().filter(|v| v.get("peer").is_some()).collect();
        assert_eq!(conns.len(), 2, "{text}");
        // -R: iperf read all 64 MiB the source sent (its `Transfer` column, in bytes).
        let rev = text.lines().rfind(|l| l.starts_with("REVERSE") && l.contains("sec")).expect("iperf -R ran");
        assert!(rev.contains(&(64u64 << 20).to_string()), "iperf -R: {rev}");
        assert_eq!(conns[0]["sent"].as_u64(), Some(64 << 20), "{}", conns[0]);
        // --full-duplex: what serve received it sent back, all acknowledged.
        assert!(conns[1]["bytes"].as_u64().unwrap() > 0, "{}", conns[1]);
        assert_eq!(conns[1]["sent"], conns[1]["bytes"], "{}", conns[1]);
        // The default digest (XXH3-128): what came back is what was sent.
        assert_eq!(conns[1]["hash"], "xxh3", "{}", conns[1]);
        assert_eq!(conns[1]["sent_digest"], conns[1]["digest"], "{}", conns[1]);
        for c in &conns {
            assert_eq!(c["violations"], 0, "{c}");
            assert_eq!(c["send_aborted"], 0, "{c}");
        }
    }

    /// `serve --http` with unmodified HTTP clients: curl fetches `GET /N` (the body is the
    /// seeded pattern, checked by its SHA-256 against chimney's own), gets 404 for a bad path;
    /// wrk and ab (keep-alive) run without errors. Zero violations in every connection.
    #[test]
    fn http_with_curl_wrk_and_ab() {
        need_root();
        need_tool("curl -V", "curl");
        need_tool("wrk -v 2>&1 | grep -q wrk", "wrk");
        need_tool("ab -V", "ab (apache2-utils)");
        let bin = env!("CARGO_BIN_EXE_chimney");
        let script = format!(
            r#"ip link set lo up
{bin} serve --tun cht0 --local 198.18.0.2/24 --listen 198.18.0.1:8080 --http > /tmp/chimney-http-$$.out &
pid=$!
for i in $(seq 200); do ip -o addr show dev cht0 scope global 2>/dev/null | grep -q . && break; sleep 0.05; done
curl -s http://198.18.0.1:8080/3000000 | sha256sum | sed "s/^/CURL_BODY /"
curl -s -o /dev/null -w "CURL_404 %{{http_code}}\n" http://198.18.0.1:8080/nothing
curl -s -o /dev/null -o /dev/null -w "CURL_KEEP %{{http_code}} %{{num_connects}}\n" http://198.18.0.1:8080/10 http://198.18.0.1:8080/20
timeout 20 wrk -t2 -c8 -d1s http://198.18.0.1:8080/1000 2>&1 | sed "s/^/WRK /"
timeout 20 ab -n 1000 -c 4 -k http://198.18.0.1:8080/100 2>&1 | sed "s/^/AB /"
kill -INT $pid; wait $pid; echo "SERVE_EXIT $?"
cat /tmp/chimney-http-$$.out; rm -f /tmp/chimney-http-$$.out
"#
        );
        let out = in_new_netns(&script, false);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(text.contains("SERVE_EXIT 0"), "{text}");
        let body = text.lines().find_map(|l| l.strip_prefix("CURL_BODY ")).expect("curl ran");
        let mut want = vec![0u8; 3_000_000];
        chimney::testkit::host::source_pattern(0, &mut want);
        let want = {
            use std::fmt::Write;
            let d = <sha2::Sha256 as sha2::Digest>::digest(&want);
            d.iter().fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })
        };
        assert_eq!(body.split_whitespace().next(), Some(want.as_str()), "the body is the pattern");
        assert!(text.contains("CURL_404 404"), "{text}");
        // Two requests on one kept-alive connection.
        assert!(text.lines().any(|l| l.starts_with("CURL_KEEP 200")), "{text}");
        let wrk = text.lines().find(|l| l.starts_with("WRK") && l.contains("requests in")).expect("wrk ran");
        let n: u64 = wrk.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(n > 100, "{wrk}");
        assert!(!text.contains("Socket errors") && !text.contains("Non-2xx"), "{text}");
        assert!(text.contains("AB Complete requests:      1000"), "{text}");
        assert!(text.contains("AB Failed requests:        0"), "{text}");
        let lines: Vec<Value> =
            text.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
        let summary = lines.iter().find_map(|v| v.get("summary")).expect("summary");
        assert_eq!(summary["violations"], 0, "{summary}");
        for c in lines.iter().filter(|v| v.get("peer").is_some()) {
            assert_eq!(c["violations"], 0, "{c}");
            // wrk resets its connections at the end: a response in flight is aborted then.
            assert!(c["send_aborted"] == 0 || c["end"] == "rst", "{c}");
        }
    }

    /// Runs `serve` for one connection in a fresh namespace with `setup` after it started and
    /// `client` (Python) as the peer; returns serve's connection line and summary.
    fn serve_one(tun: &str, setup: &str, client: &str) -> (Value, Value, String) {
        need_root();
        need_tool("python3 -V", "python3");
        let bin = env!("CARGO_BIN_EXE_chimney");
        let script = format!(
            r#"ip link set lo up
{bin} serve --tun {tun} --local 198.18.0.2/24 --listen 198.18.0.1:5001 --connections 1 --hash sha256 > /tmp/chimney-one-$$.out &
pid=$!
for i in $(seq 200); do ip -o addr show dev {tun} scope global 2>/dev/null | grep -q . && break; sleep 0.05; done
{setup}
python3 -c '{client}'
wait $pid
echo EXIT $?
cat /tmp/chimney-one-$$.out; rm -f /tmp/chimney-one-$$.out
"#
        );
        let out = in_new_netns(&script, false);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(text.contains("EXIT 0"), "serve failed: {text} {}", String::from_utf8_lossy(&out.stderr));
        let lines: Vec<Value> =
            text.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
        let conn = lines.iter().find(|v| v.get("peer").is_some()).expect("a connection line").clone();
        let summary = lines.iter().find_map(|v| v.get("summary")).expect("summary").clone();
        (conn, summary, text)
    }

    /// Urgent data: a Linux client sends one byte with MSG_OOB mid-stream. The target uploads
    /// the connection (ReceivedUrgentData), the host continues it in software, takes the urgent
    /// byte out of band (Linux's default), and offloads it again; the in-band stream arrives
    /// exact, the urgent byte is reported apart, one upload and one re-offload are counted.
    #[test]
    fn urgent_data_mid_stream_is_taken_by_the_host_and_reoffloaded() {
        let client = r#"
import socket, hashlib
s = socket.create_connection(("198.18.0.1", 5001))
a = bytes((i * 7) % 251 for i in range(500000)); b = bytes((i * 11) % 253 for i in range(500000))
s.sendall(a); s.send(b"!", socket.MSG_OOB); s.sendall(b)
s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
print("PY", hashlib.sha256(a + b).hexdigest())
"#;
        let (c, summary, text) = serve_one("chu0", "", client);
        let py = text.lines().find_map(|l| l.strip_prefix("PY ")).expect("client ran");
        assert_eq!(c["sha256"], py, "{c}");
        assert_eq!(c["bytes"], 1_000_000, "{c}");
        assert_eq!(c["oob"], "21", "the urgent byte '!' out of band: {c}");
        assert_eq!(c["end"], "fin", "{c}");
        assert_eq!(c["reoffloads"], 1, "{c}");
        assert_eq!(c["violations"], 0, "{c}");
        assert_eq!(summary["host_stack"]["urgent_uploads"], 1, "{summary}");
        assert_eq!(summary["host_stack"]["reoffloads"], 1, "{summary}");
    }

    /// IP fragments: the client's path fragments every segment (the device MTU drops to 700
    /// under a route locked at 1500, the socket does not set DF). Fragments never reach the
    /// target (spec §6.6): the host path reassembles them and forwards the segments to the
    /// offloaded connection, which is never uploaded; the stream arrives exact.
    #[test]
    fn fragmented_path_reassembled_by_the_host_and_forwarded() {
        let setup = "ip link set chv0 mtu 700; ip route replace 198.18.0.0/24 dev chv0 mtu lock 1500";
        let client = r#"
import socket, hashlib
s = socket.socket()
s.setsockopt(socket.IPPROTO_IP, 10, 5)  # IP_MTU_DISCOVER: IP_PMTUDISC_OMIT (no DF, interface MTU)
s.connect(("198.18.0.1", 5001))
a = bytes((i * 7) % 251 for i in range(1000000))
s.sendall(a); s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
print("PY", hashlib.sha256(a).hexdigest())
"#;
        let (c, summary, text) = serve_one("chv0", setup, client);
        let py = text.lines().find_map(|l| l.strip_prefix("PY ")).expect("client ran");
        assert_eq!(c["sha256"], py, "{c}");
        assert_eq!(c["end"], "fin", "{c}");
        assert_eq!(c["violations"], 0, "{c}");
        assert!(summary["host_stack"]["reassembled"].as_u64().unwrap() > 500, "{summary}");
        assert_eq!(summary["host_stack"]["fragments_dropped"], 0, "{summary}");
        assert!(summary["host_path"]["ip_fragment"].as_u64().unwrap() > 1000, "{summary}");
    }

    fn check(args: &[&str]) -> (i32, Value) {
        need_root();
        let out = Command::new(env!("CARGO_BIN_EXE_chimney")).arg("check").args(args).arg("--json").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let v = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("check printed no JSON ({e}): {text}\n{}", String::from_utf8_lossy(&out.stderr))
        });
        (out.status.code().unwrap_or(-1), v)
    }

    /// `chimney check --real`: the example C target behind chimney's TCP engine on a TUN
    /// device, with Linux clients (IPv4, IPv6, 32 flows, a lossy link, resets, indications
    /// only): conformant. A build that miscounts bytes fails on real peers with R-ACC-1.
    #[test]
    fn check_real_runs_a_foreign_target_with_linux_peers() {
        let good = common::build("good", &common::target_c(), &[]);
        let (code, v) =
            check(&["--target", good.to_str().unwrap(), "--real", "--seeds", "1..3", "--sim-seeds", "1..3"]);
        assert_eq!(code, 0, "{v}");
        assert_eq!(v["real_runs"], 5, "{v}");
        assert_eq!(v["ok"], true, "{v}");
        let bad = common::build("bytecount", &common::target_c(), &["FAULT_BYTE_COUNT"]);
        let (code, v) = check(&["--target", bad.to_str().unwrap(), "--real-run", "ipv4"]);
        assert_eq!(code, 1, "{v}");
        assert_eq!((v["real_runs"].as_u64(), v["scenarios"].as_u64()), (Some(1), Some(0)), "{v}");
        assert!(v["rules"]["R-ACC-1"].as_u64().unwrap() > 0, "{v}");
        let replay = v["failures"][0]["replay"].as_str().unwrap();
        assert!(replay.ends_with("--real-run ipv4"), "{replay}");
    }

    /// A reader of serve's standard output that reads nothing until the end: 400 connections
    /// (about 200 KB of report lines, three times a pipe's buffer) still come and go at full
    /// pace, and then every line is there. serve also reports its TUN's transmit queue: the
    /// length chimney set and no packet dropped on the way to the target.
    #[test]
    fn serve_never_stalls_on_a_slow_reader_of_its_reports() {
        need_root();
        need_tool("python3 -V", "python3");
        let bin = env!("CARGO_BIN_EXE_chimney");
        let script = format!(
            r#"
import subprocess, socket, threading, time, json
p = subprocess.Popen(["{bin}", "serve", "--tun", "chr0", "--local", "198.18.0.2/24",
                      "--listen", "198.18.0.1:5001", "--connections", "400"],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
for _ in range(100):
    if subprocess.run(["ip", "addr", "show", "dev", "chr0"], capture_output=True).stdout.count(b"198.18.0.2"):
        break
    time.sleep(0.05)
ok = [0]
lock = threading.Lock()
def one(i):
    try:
        s = socket.create_connection(("198.18.0.1", 5001), timeout=20)
        s.sendall(bytes([i % 251]) * 2000); s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
        with lock: ok[0] += 1
    except Exception as e:
        print("CLIENT", i, e)
t0 = time.time()
for batch in range(4):
    ts = [threading.Thread(target=one, args=(batch * 100 + i,)) for i in range(100)]
    [t.start() for t in ts]; [t.join() for t in ts]
print("CLIENTS", ok[0], round(time.time() - t0, 2))
out, err = p.communicate(timeout=60)
print("EXIT", p.returncode)
lines = out.decode().splitlines()
print("LINES", len(lines))
print("LAST", lines[-1] if lines else "")
print("STDERR", err.decode().replace("\n", " | "))
"#
        );
        let out = in_new_netns(&format!("ip link set lo up; python3 -c '{}'", script.replace('\'', "'\\''")), false);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).unwrap_or_else(|| panic!("{k}: {text}"));
        let clients: Vec<&str> = field("CLIENTS ").split(' ').collect();
        assert_eq!(clients[0], "400", "every client finished while nobody read serve's output: {text}");
        assert_eq!(field("EXIT "), "0", "{text}");
        assert_eq!(field("LINES "), "401", "400 connection lines and the summary: {text}");
        let summary: Value = serde_json::from_str(field("LAST ")).unwrap();
        let s = &summary["summary"];
        assert_eq!(s["connections"], 400, "{s}");
        assert_eq!(s["violations"], 0, "{s}");
        assert_eq!(s["tun"]["name"], "chr0", "{s}");
        assert_eq!(s["tun"]["queue_len"], 65536, "{s}");
        assert_eq!(s["tun"]["kernel_tx_dropped"], 0, "{s}");
    }

    /// 2,000 Linux connections at once into `chimney serve` (its defaults: posts follow
    /// demand), each sending 64 KiB and closing, side by side with a kernel server over veth
    /// (`bench flows`): every stream exact, no violation, no packet dropped on the TUN's
    /// queue; the figures (times, peak RSS, retransmissions) are reported, not asserted.
    #[test]
    fn two_thousand_concurrent_connections() {
        need_root();
        let out = Command::new(env!("CARGO_BIN_EXE_chimney"))
            .args(["bench", "flows", "--connections", "2000", "--rounds", "1", "--json"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_str(&text).unwrap();
        let r = &v["runs"][0];
        assert_eq!(r["connections"], 2000, "{r}");
        assert_eq!(r["exact"], 2000, "every stream byte-exact: {r}");
        assert_eq!(r["violations"], 0, "{r}");
        assert_eq!(r["tun_tx_dropped"], 0, "{r}");
        assert!(r["chimney_peak_rss_bytes"].as_u64().unwrap() > 0, "{r}");
        eprintln!("bench flows: {r}");
    }
}
