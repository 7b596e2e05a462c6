//! `chimney sim`: deterministic simulation runs (one seed, or a sweep), their invariants, a
//! replay command for every failing seed, and the event log on request.

use std::process::ExitCode;
use std::time::Instant as WallClock;

use std::sync::atomic::{AtomicU64, Ordering};

use chimney_sim::scenario::{Knobs, Scenario};
use chimney_sim::SimReport;

/// `chimney sim` flags.
#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// One seed to run.
    #[arg(long, conflicts_with = "seeds")]
    pub seed: Option<u64>,
    /// A range of seeds, `A..B` (B excluded).
    #[arg(long)]
    pub seeds: Option<String>,
    /// Bytes each connection sends (default: drawn from the seed; suffixes K, M, G, …).
    #[arg(long, value_parser = crate::size::u64_bytes)]
    pub bytes: Option<u64>,
    /// Connections per run (default: drawn from the seed).
    #[arg(long)]
    pub connections: Option<usize>,
    /// Largest loss probability drawn for the links.
    #[arg(long)]
    pub max_loss: Option<f64>,
    /// Always run the scripted adversary.
    #[arg(long, conflicts_with = "no_adversary")]
    pub adversary: bool,
    /// Never run the adversary.
    #[arg(long)]
    pub no_adversary: bool,
    /// Clean links, plain application policies, no adversary: a plain transfer.
    #[arg(long)]
    pub clean: bool,
    /// No application echoes: data goes one way, as before the send path (the regression
    /// seeds named in the tests were found that way).
    #[arg(long)]
    pub no_echo: bool,
    /// The senders' smoltcp release, `0.14` or `0.12` (default: 0.14 with `--clean`, 0.12
    /// otherwise: 0.14's loss recovery stalls when segments are dropped).
    #[arg(long, value_name = "RELEASE")]
    pub smoltcp: Option<chimney_sim::peer::Release>,
    /// Print the event log of the run (single seed).
    #[arg(long)]
    pub log: bool,
    /// Print one JSON object: {"seeds", "failures", "violations", "bytes", …}.
    #[arg(long)]
    pub json: bool,
    /// Write every packet the target received and sent to FILE (pcap, raw IP; one seed).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<std::path::PathBuf>,
    /// Draw the busiest connection's time–sequence graph to FILE (SVG; one seed).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<std::path::PathBuf>,
    /// Worker threads for a sweep (default: the machine's cores). Each seed is still one
    /// single-threaded, deterministic run; only whole seeds are spread over threads.
    #[arg(long)]
    pub jobs: Option<usize>,
    #[command(flatten)]
    pub trace: crate::args::TraceArgs,
}

impl SimArgs {
    /// The knobs these flags describe.
    pub fn knobs(&self) -> Knobs {
        Knobs {
            bytes: self.bytes,
            connections: self.connections,
            max_loss: self.max_loss,
            adversary: if self.adversary {
                Some(true)
            } else if self.no_adversary {
                Some(false)
            } else {
                None
            },
            clean: self.clean,
            echo: if self.no_echo { Some(false) } else { None },
            smoltcp: self.smoltcp,
        }
    }

    fn flags(&self) -> String {
        let mut f = String::new();
        if let Some(b) = self.bytes {
            f += &format!(" --bytes {b}");
        }
        if let Some(c) = self.connections {
            f += &format!(" --connections {c}");
        }
        if let Some(l) = self.max_loss {
            f += &format!(" --max-loss {l}");
        }
        if self.adversary {
            f += " --adversary";
        }
        if self.no_adversary {
            f += " --no-adversary";
        }
        if self.clean {
            f += " --clean";
        }
        if self.no_echo {
            f += " --no-echo";
        }
        if let Some(r) = self.smoltcp {
            f += &format!(" --smoltcp {r}");
        }
        f
    }
}

/// One seed (`None` = it panicked); with `log`, prints the scenario and its event log.
fn run_seed(seed: u64, knobs: &Knobs, log: bool) -> (u64, Option<SimReport>) {
    let sc = Scenario::from_seed(seed, knobs);
    let rep = std::panic::catch_unwind(|| chimney_sim::run(&sc, log)).ok();
    if let (true, Some(r)) = (log, rep.as_ref()) {
        println!("{sc:#?}");
        for l in &r.log {
            println!("{l}");
        }
    }
    (
        seed,
        rep.map(|mut r| {
            r.log = Vec::new();
            r
        }),
    )
}

/// Runs scenario `sc` with every packet the target received and sent written to `pcap` and
/// every contract call to the trace file, when asked for (`sim --seed` and `demo --sim`).
/// A file that cannot be opened is an error; failed writes come back with the report.
pub fn run_recorded(
    sc: &Scenario,
    log: bool,
    pcap: Option<&std::path::Path>,
    trace: &crate::args::TraceArgs,
) -> Result<(SimReport, Vec<String>), String> {
    let cap = pcap.map(crate::pcap::open).transpose()?;
    let writer = trace.open()?;
    let mut tap = |t, _inbound, p: &[u8]| {
        if let Some(c) = &cap {
            c.lock().unwrap_or_else(|e| e.into_inner()).write(t, p)
        }
    };
    let (rep, written) = chimney_sim::run_traced(sc, log, &mut tap, writer);
    let mut errors = Vec::new();
    if let (Some(Err(e)), Some(p)) = (written, &trace.trace) {
        errors.push(format!("writing {}: {e}", p.display()));
    }
    if let (Some(c), Some(path)) = (&cap, pcap) {
        if let Err(e) = crate::pcap::finish(c) {
            errors.push(format!("writing {}: {e}", path.display()));
        }
    }
    Ok((rep, errors))
}

/// One seed, recorded ([`run_recorded`]); with `log`, prints the scenario and its event log.
fn captured(
    seed: u64,
    knobs: &Knobs,
    log: bool,
    path: Option<&std::path::Path>,
    trace: &crate::args::TraceArgs,
) -> Result<(u64, Option<SimReport>), String> {
    let sc = Scenario::from_seed(seed, knobs);
    let (rep, errors) = run_recorded(&sc, log, path, trace)?;
    if log {
        println!("{sc:#?}");
        for l in &rep.log {
            println!("{l}");
        }
    }
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok((seed, Some(rep))),
    }
}

/// Runs every seed of `range` on `jobs` threads (seeds handed out one at a time), results in
/// seed order.
fn sweep(range: std::ops::Range<u64>, knobs: &Knobs, jobs: usize) -> Vec<(u64, Option<SimReport>)> {
    let next = AtomicU64::new(range.start);
    let mut all: Vec<(u64, Option<SimReport>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..jobs.max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let seed = next.fetch_add(1, Ordering::Relaxed);
                        if seed >= range.end {
                            break;
                        }
                        mine.push(run_seed(seed, knobs, false));
                    }
                    mine
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap_or_default()).collect()
    });
    all.sort_by_key(|(seed, _)| *seed);
    all
}

pub(crate) fn parse_range(s: &str) -> Result<std::ops::Range<u64>, String> {
    let (a, b) = s.split_once("..").ok_or_else(|| format!("--seeds wants A..B, got {s:?}"))?;
    let a: u64 = a.trim().parse().map_err(|_| format!("--seeds: bad start {a:?}"))?;
    let b: u64 = b.trim().parse().map_err(|_| format!("--seeds: bad end {b:?}"))?;
    if b <= a {
        return Err(format!("--seeds: empty range {s}"));
    }
    Ok(a..b)
}

pub fn run(a: &SimArgs) -> ExitCode {
    let range = match (&a.seeds, a.seed) {
        (Some(r), _) => match parse_range(r) {
            Ok(r) => r,
            Err(e) => {
                return crate::error::CliError::new("sim", e).exit();
            }
        },
        (None, Some(s)) => s..s + 1,
        (None, None) => 1..2,
    };
    if let Some(l) = a.max_loss {
        if !(0.0..=1.0).contains(&l) {
            return crate::error::CliError::new("sim", format!("--max-loss must be a probability, got {l}")).exit();
        }
    }
    let knobs = a.knobs();
    let single = range.end - range.start == 1;
    let jobs = match a.jobs {
        Some(0) => {
            return crate::error::CliError::new("sim", "--jobs must be at least 1").exit();
        }
        Some(j) => j,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let t0 = WallClock::now();
    if (a.pcap.is_some() || a.plot.is_some() || a.trace.trace.is_some()) && !single {
        return crate::error::CliError::new("sim", "--pcap, --plot and --trace record one seed (--seed S)").exit();
    }
    let temp = std::env::temp_dir().join(format!("chimney-sim-{}.pcap", std::process::id()));
    let capture = a.pcap.clone().or_else(|| a.plot.as_ref().map(|_| temp.clone()));
    let outcomes = if capture.is_some() || a.trace.trace.is_some() {
        let r = captured(range.start, &knobs, a.log, capture.as_deref(), &a.trace).and_then(|o| {
            match (&a.plot, &capture) {
                (Some(svg), Some(path)) => crate::plot::plot_file(path, svg, None, &a.trace.paths(1)).map(|_| o),
                _ => Ok(o),
            }
        });
        if a.pcap.is_none() {
            let _ = std::fs::remove_file(&temp);
        }
        match r {
            Ok(o) => vec![o],
            Err(e) => {
                return crate::error::CliError::new("sim", e).exit();
            }
        }
    } else if single {
        vec![run_seed(range.start, &knobs, a.log)]
    } else {
        sweep(range.clone(), &knobs, jobs)
    };
    let (mut failures, mut violations, mut bytes, mut packets) = (Vec::new(), 0usize, 0u64, 0u64);
    let mut reoffloads = 0u64;
    let mut drops: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    let mut host_path: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    let mut last_hash = 0;
    for (seed, rep) in outcomes {
        let rep = match rep {
            Some(r) => r,
            None => {
                failures.push((seed, vec!["panic".to_string()]));
                continue;
            }
        };
        violations += rep.violations;
        bytes += rep.bytes;
        packets += rep.packets;
        reoffloads += rep.reoffloads;
        for (k, n) in &rep.drops {
            *drops.entry(k.clone()).or_default() += n;
        }
        for (k, n) in &rep.host_path {
            *host_path.entry(k.clone()).or_default() += n;
        }
        last_hash = rep.trace_hash;
        if !rep.ok() {
            failures.push((seed, rep.failures.clone()));
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let seeds = range.end - range.start;
    if a.json {
        let v = serde_json::json!({
            "seeds": seeds,
            "failures": failures.len(),
            "violations": violations,
            "bytes": bytes,
            "packets": packets,
            "reoffloads": reoffloads,
            "drops": drops,
            "host_path": host_path,
            "seconds": secs,
            "failing_seeds": failures.iter().map(|(s, _)| *s).take(100).collect::<Vec<_>>(),
            "trace_hash": if single { format!("{last_hash:016x}") } else { String::new() },
        });
        println!("{v}");
    } else {
        println!(
            "chimney sim: {seeds} seed(s) {}..{} in {secs:.1} s: {} failure(s), {violations} contract violation(s), {bytes} stream bytes, {packets} packets",
            range.start,
            range.end,
            failures.len()
        );
        if single {
            println!("trace hash {last_hash:016x}");
        }
        for (seed, why) in failures.iter().take(20) {
            println!("seed {seed} FAILED: {}", why.join("; "));
            println!("  replay: chimney sim --seed {seed}{} --log", a.flags());
        }
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
