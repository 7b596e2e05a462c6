//! `chimney bench http`: wrk against an HTTP/1.1 server, side by side in one run: (a) a
//! responder on Linux kernel sockets (`GET /N` answers N bytes, keep-alive, a thread per
//! connection, written here so that both sides do the same work) over a veth pair, and (b)
//! `serve --http` (chimney's send path, verifier on) over a TUN device; interleaved rounds,
//! median requests per second and the ratio.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant as WallClock};

use chimney_linux::{Driver, DriverError, Netns};

use super::common::median;

/// `chimney bench http` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct HttpArgs {
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 3)]
    pub duration: u64,
    /// wrk connections.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Response body bytes (`GET /N`).
    #[arg(long, default_value_t = 1000, value_parser = crate::size::u64_bytes)]
    pub size: u64,
    /// Rounds (each runs both servers once).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// wrk from the calling thread's namespace: requests per second and whether it saw no error.
fn wrk(url: &str, a: &HttpArgs) -> Result<(f64, bool), String> {
    let out = std::process::Command::new("wrk")
        .args(["-t2", &format!("-c{}", a.connections), &format!("-d{}s", a.duration), url])
        .output()
        .map_err(|e| format!("running wrk (apt-get install wrk): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or(format!("wrk printed no Requests/sec: {text}"))?;
    let clean = !text.contains("Socket errors") && !text.contains("Non-2xx");
    Ok((rps, clean && out.status.success()))
}

/// One kernel HTTP connection: answers every complete `GET /N` head with N pattern bytes.
fn serve_kernel_conn(mut c: TcpStream) {
    let _ = c.set_nodelay(true);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut body = Vec::new();
    loop {
        let n = match c.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = buf.drain(..end + 4).collect();
            let line = String::from_utf8_lossy(&head);
            let size: usize =
                line.split(' ').nth(1).and_then(|t| t.strip_prefix('/')).and_then(|t| t.parse().ok()).unwrap_or(0);
            if body.len() != size {
                body = vec![0u8; size];
                chimney::testkit::host::source_pattern(0, &mut body);
            }
            let hdr = format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {size}\r\nConnection: keep-alive\r\n\r\n");
            if c.write_all(hdr.as_bytes()).and_then(|_| c.write_all(&body)).is_err() {
                return;
            }
        }
    }
}

/// (a) wrk → a kernel responder over veth.
fn run_kernel(a: &HttpArgs) -> Result<(f64, bool), DriverError> {
    let (x, y) = super::common::veth_pair(1500)?;
    let addr: SocketAddr = "198.19.0.2:8080".parse().expect("address");
    let listener = y.run(move || TcpListener::bind(addr))?.map_err(|e| DriverError::os("binding the responder", e))?;
    listener.set_nonblocking(true).map_err(|e| DriverError::os("responder", e))?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let server = y.spawn(move || {
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            match listener.accept() {
                Ok((c, _)) => {
                    let _ = c.set_nonblocking(false);
                    std::thread::spawn(move || serve_kernel_conn(c));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    })?;
    let url = format!("http://{addr}/{}", a.size);
    let a2 = a.clone();
    let r = x.run(move || wrk(&url, &a2))?;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = server.join();
    r.map_err(|e| DriverError::new("benchmark", e))
}

/// (b) wrk → `serve --http` on a TUN device.
fn run_chimney(a: &HttpArgs) -> Result<(f64, bool), DriverError> {
    let ns = Netns::create()?;
    let (mut tuns, target) = ns.tun_network(false, 1500, true, 1)?;
    let tun = tuns.pop().ok_or(DriverError::new("creating the TUN device", "no queue"))?;
    let base = chimney_linux::DriverConfig::default();
    let policy =
        chimney::testkit::host::AppPolicy { send: chimney::testkit::host::SendPolicy::Http, ..base.policy.clone() };
    let cfg = chimney_linux::DriverConfig {
        engine: chimney::EngineConfig { seed: 1, listen: vec![target], ..base.engine.clone() },
        hash: chimney::testkit::digest::HashKind::None,
        policy,
        ..base
    };
    let mut driver = Driver::new(tun, cfg)?;
    let url = format!("http://{target}/{}", a.size);
    let a2 = a.clone();
    let client = ns.spawn(move || wrk(&url, &a2))?;
    let deadline = WallClock::now() + Duration::from_secs(a.duration + 30);
    while !client.is_finished() && WallClock::now() < deadline {
        driver.step(Duration::from_millis(5))?;
        let _ = driver.take_reports();
    }
    let r = client.join().map_err(|_| DriverError::new("benchmark", "wrk thread panicked"))??;
    let (rps, clean) = r.map_err(|e| DriverError::new("benchmark", e))?;
    Ok((rps, clean && driver.violations().is_empty()))
}

/// `chimney bench http`.
pub fn run(a: &HttpArgs) -> ExitCode {
    let fail = |msg: String| crate::error::CliError::new("bench http", msg).exit();
    if a.rounds == 0 || a.duration == 0 || a.connections == 0 {
        return fail("--rounds, --duration and --connections must be at least 1".into());
    }
    if let Err(e) = chimney_linux::preflight() {
        return fail(format!("{e} (the benchmark needs namespaces, TUN and veth)"));
    }
    let (mut k, mut c, mut ok) = (Vec::new(), Vec::new(), true);
    for round in 0..a.rounds {
        for (name, f) in [("kernel", run_kernel as fn(&HttpArgs) -> _), ("chimney", run_chimney)] {
            let (rps, clean) = match f(a) {
                Ok(x) => x,
                Err(e) => return fail(format!("{name}: {e}")),
            };
            ok &= clean;
            if !a.json {
                eprintln!(
                    "round {} {name:<8} {rps:>10.0} requests/s{}",
                    round + 1,
                    if clean { "" } else { "  ERRORS" }
                );
            }
            if name == "kernel" {
                k.push(rps)
            } else {
                c.push(rps)
            }
        }
    }
    let (km, cm) = (median(&k), median(&c));
    if a.json {
        println!(
            "{}",
            serde_json::json!({"size": a.size, "connections": a.connections, "duration": a.duration, "rounds": a.rounds,
                "kernel_rps": km, "chimney_rps": cm, "chimney_over_kernel": cm / km.max(1e-9), "ok": ok})
        );
    } else {
        println!(
            "chimney bench http: wrk -c{} for {} s, GET /{}, {} round(s), medians: kernel {km:.0} requests/s, chimney {cm:.0} requests/s, chimney/kernel {:.2}x",
            a.connections,
            a.duration,
            a.size,
            a.rounds,
            cm / km.max(1e-9)
        );
        println!("{}", if ok { "no errors, no violations" } else { "ERRORS OR VIOLATIONS" });
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
