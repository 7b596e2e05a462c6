//! `chimney check`: runs the conformance suite against a target behind the verifier: a
//! foreign one from a shared library (`--target PATH.so`, the C ABI of include/chimney.h),
//! or chimney's own delivery layer. Every flowchart scenario, then seeded random
//! interleavings; each failure is listed by rule id with the command that replays it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant as WallClock;

use chimney::contract::trace::TraceWriter;
use chimney::contract::{Delivery, DeliveryConfig};
use chimney::testkit::conformance::{self, Candidate, Outcome};
use chimney_ffi::TargetLibrary;

/// `chimney check` flags.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The target: a shared library exporting `chimney_target_ops` (include/chimney.h).
    /// Without it, chimney's own delivery layer is checked.
    #[arg(long)]
    pub target: Option<PathBuf>,
    /// Seeds of the random interleavings, A..B (B excluded).
    #[arg(long, default_value = "1..201")]
    pub seeds: String,
    /// Seeds of the simulator sweep, A..B: smoltcp senders through chimney's TCP engine into
    /// the target, an adversary, random host behaviours, impaired links (data one way: the
    /// ABI carries the receive half).
    #[arg(long, default_value = "1..101")]
    pub sim_seeds: String,
    /// Run only this interleaving seed (and no scenario): to replay a failure.
    #[arg(long, conflicts_with = "scenario")]
    pub seed: Option<u64>,
    /// Run only this simulator seed: to replay a failure.
    #[arg(long, conflicts_with_all = ["scenario", "seed"])]
    pub sim_seed: Option<u64>,
    /// Run only the scenario with this name (and no seed).
    #[arg(long)]
    pub scenario: Option<String>,
    /// Write the contract trace of every failure (with --seed or --scenario: of that run)
    /// into this directory, one file per run, for `chimney verify`.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    pub json: bool,
    /// Also run the target on real Linux peers: kernel TCP clients in a network namespace,
    /// over a TUN device (root), as `chimney demo` does: IPv4 and IPv6, many flows, a lossy
    /// link, resets, a host that only takes indications.
    #[arg(long)]
    pub real: bool,
    /// Run only the real run with this name (see --list): to replay a failure.
    #[arg(long, conflicts_with_all = ["scenario", "seed", "sim_seed"])]
    pub real_run: Option<String>,
    /// List the scenarios (and the real runs) and exit.
    #[arg(long)]
    pub list: bool,
}

/// What to run.
enum Plan {
    Scenarios(Vec<String>),
    Seeds(std::ops::Range<u64>),
    Sim(std::ops::Range<u64>),
    Real(Vec<&'static str>),
}

/// Exit status: 0 conformant, 1 violations or failures, 2 the target could not be loaded or
/// misbehaved at the ABI in a run that broke no rule (one that did is judged by its rules).
pub fn run(a: &CheckArgs) -> ExitCode {
    if a.list {
        for n in conformance::scenario_names() {
            println!("{n}");
        }
        for n in crate::check_real::real_run_names() {
            println!("real: {n} (--real-run {n})");
        }
        return ExitCode::SUCCESS;
    }
    let (seeds, sim_seeds) = match (crate::sim::parse_range(&a.seeds), crate::sim::parse_range(&a.sim_seeds)) {
        (Ok(r), Ok(s)) => (r, s),
        (Err(e), _) | (_, Err(e)) => return crate::error::CliError::new("check", e).exit(),
    };
    let mut plans = Vec::new();
    if let Some(n) = &a.real_run {
        match crate::check_real::real_run_names().into_iter().find(|r| r == n) {
            Some(r) => plans.push(Plan::Real(vec![r])),
            None => {
                return crate::error::CliError::new(
                    "check",
                    format!("no real run {n:?} (chimney check --list names them)"),
                )
                .exit()
            }
        }
    } else if let Some(s) = a.sim_seed {
        plans.push(Plan::Sim(s..s + 1));
    } else {
        match (&a.scenario, a.seed) {
            (Some(name), _) => {
                if !conformance::scenario_names().contains(&name.as_str()) {
                    return crate::error::CliError::new(
                        "check",
                        format!("no scenario {name:?} (chimney check --list names them)"),
                    )
                    .exit();
                }
                plans.push(Plan::Scenarios(vec![name.clone()]));
            }
            (None, Some(s)) => plans.push(Plan::Seeds(s..s + 1)),
            (None, None) => {
                plans.push(Plan::Scenarios(conformance::scenario_names().into_iter().map(String::from).collect()));
                plans.push(Plan::Seeds(seeds));
                plans.push(Plan::Sim(sim_seeds));
                if a.real {
                    plans.push(Plan::Real(crate::check_real::real_run_names()));
                }
            }
        }
    }
    if plans.iter().any(|p| matches!(p, Plan::Real(_))) {
        if let Err(e) = chimney_linux::preflight() {
            return crate::error::CliError::new("check", format!("--real needs root: {e}")).exit();
        }
    }
    if let Some(dir) = &a.trace {
        if let Err(e) = std::fs::create_dir_all(dir) {
            return crate::error::CliError::new("check", format!("creating {}: {e}", dir.display())).exit();
        }
    }
    let single = a.seed.is_some() || a.scenario.is_some() || a.sim_seed.is_some() || a.real_run.is_some();
    match &a.target {
        Some(path) => {
            let lib = match TargetLibrary::load(path) {
                Ok(l) => l,
                Err(e) => {
                    if a.json {
                        // Scripts that read the JSON get the failure in it too.
                        println!(
                            "{}",
                            serde_json::json!({"ok": false, "target": path.display().to_string(), "error": e.to_string()})
                        );
                    }
                    return crate::error::CliError::new("check", e).exit();
                }
            };
            let name = format!("{} ({})", lib.name(), path.display());
            let make = move || lib.instance(500).map_err(|e| e.to_string());
            suite(a, &name, &plans, single, &make)
        }
        None => {
            let make = || Ok(Delivery::new(DeliveryConfig::default()));
            suite(a, "chimney's delivery layer (built in)", &plans, single, &make)
        }
    }
}

/// Failing runs of a whole suite traced with `--trace` at most (the rest: replay one with its
/// flag and `--trace`).
const MAX_TRACED: usize = 10;

/// How this program was invoked (argv[0]), for replay commands a user can paste.
fn program() -> String {
    std::env::args().next().filter(|p| !p.is_empty()).unwrap_or_else(|| "chimney".into())
}

fn trace_to(dir: &Path, run: &str) -> Option<(PathBuf, TraceWriter)> {
    let file = dir.join(format!("{}.jsonl", run.replace(|c: char| !c.is_ascii_alphanumeric(), "-")));
    let f = std::fs::File::create(&file).ok()?;
    let w = TraceWriter::new(Box::new(std::io::BufWriter::new(f)), true, "chimney check");
    Some((file, w))
}

fn suite<T: Candidate + 'static>(
    a: &CheckArgs,
    target: &str,
    plans: &[Plan],
    single: bool,
    make: &dyn Fn() -> Result<T, String>,
) -> ExitCode {
    let start = WallClock::now();
    let mut outcomes: Vec<(Outcome, String)> = Vec::new();
    let (mut scenarios, mut seeds, mut sims, mut reals) = (0usize, 0usize, 0usize, 0usize);
    let target_flag = a.target.as_ref().map(|p| format!(" --target {}", p.display())).unwrap_or_default();
    let prog = program();
    // A run, traced when asked: everything with --seed/--scenario, else failures again.
    // Without --seed/--scenario/…, failures are traced again for `chimney verify`, the first
    // MAX_TRACED of them: a simulator seed's trace can reach gigabytes.
    let traced_failures = std::cell::Cell::new(0usize);
    let run_one = |what: &Replay| -> (Outcome, Option<PathBuf>) {
        let traced = |dir: &Path| trace_to(dir, &what.file_stem());
        let go = |w: Option<TraceWriter>| match what {
            Replay::Scenario(n) => conformance::run_scenario(n, make, w).unwrap_or_default(),
            Replay::Seed(s) => conformance::run_interleaving(*s, make, w),
            Replay::Sim(s) => sim_run(*s, make, w),
            Replay::Real(n) => real_run(n, make, w),
        };
        match (&a.trace, single) {
            (Some(dir), true) => {
                let (file, w) = traced(dir).map_or((None, None), |(f, w)| (Some(f), Some(w)));
                (go(w), file)
            }
            (Some(dir), false) => {
                let o = go(None);
                if o.ok() || traced_failures.get() >= MAX_TRACED {
                    return (o, None);
                }
                traced_failures.set(traced_failures.get() + 1);
                let (file, w) = traced(dir).map_or((None, None), |(f, w)| (Some(f), Some(w)));
                let _ = go(w);
                (o, file)
            }
            (None, _) => (go(None), None),
        }
    };
    for p in plans {
        let runs: Vec<Replay> = match p {
            Plan::Scenarios(names) => names.iter().map(|n| Replay::Scenario(n.clone())).collect(),
            Plan::Seeds(r) => r.clone().map(Replay::Seed).collect(),
            Plan::Sim(r) => r.clone().map(Replay::Sim).collect(),
            Plan::Real(names) => names.iter().map(|n| Replay::Real(n)).collect(),
        };
        for what in runs {
            match what {
                Replay::Scenario(_) => scenarios += 1,
                Replay::Seed(_) => seeds += 1,
                Replay::Sim(_) => sims += 1,
                Replay::Real(_) => reals += 1,
            }
            let (o, file) = run_one(&what);
            let mut replay = format!("{prog} check{target_flag} {}", what.flag());
            if let Some(f) = file {
                replay = format!(
                    "{replay} --trace {}; {prog} verify {}",
                    f.parent().map_or(f.clone(), |d| d.to_path_buf()).display(),
                    f.display()
                );
            }
            outcomes.push((o, replay));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let failed: Vec<&(Outcome, String)> = outcomes.iter().filter(|(o, _)| !o.ok()).collect();
    // ABI trouble that a broken rule explains (a re-entrant target running away) is judged by
    // the rule; only a run that could not be judged at all makes the exit 2.
    let abi = failed.iter().any(|(o, _)| !o.abi_errors.is_empty() && o.violations.is_empty());
    let mut by_rule: BTreeMap<&str, usize> = BTreeMap::new();
    for (o, _) in &failed {
        for v in &o.violations {
            *by_rule.entry(v.rule.id).or_insert(0) += 1;
        }
    }
    if a.json {
        let list: Vec<serde_json::Value> = failed
            .iter()
            .map(|(o, replay)| {
                serde_json::json!({
                    "run": o.name,
                    "rules": o.violations.iter().map(|v| v.rule.id).collect::<std::collections::BTreeSet<_>>(),
                    "violations": o.violations.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
                    "failures": o.failures,
                    "abi_errors": o.abi_errors,
                    "replay": replay,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "ok": failed.is_empty(),
                "target": target,
                "scenarios": scenarios,
                "seeds": seeds,
                "sim_seeds": sims,
                "real_runs": reals,
                "failed": failed.len(),
                "rules": by_rule,
                "failures": list,
                "seconds": secs,
            })
        );
    } else {
        println!("chimney check: {target}");
        let real = if reals > 0 { format!(", {reals} real run(s)") } else { String::new() };
        println!(
            "  {scenarios} scenario(s), {seeds} interleaving seed(s), {sims} simulator seed(s){real} in {secs:.1} s"
        );
        // The few kinds first (real runs, scenarios), then seeds: a long list of failing
        // seeds does not hide a failing real run.
        let mut shown: Vec<&&(Outcome, String)> = failed.iter().collect();
        shown.sort_by_key(|(o, _)| match o.name.split(' ').next() {
            Some("real") => 0,
            Some("seed") => 2,
            Some("sim") => 3,
            _ => 1,
        });
        for (o, replay) in shown.into_iter().take(20) {
            println!("FAILED {}", o.name);
            for v in o.violations.iter().take(5) {
                println!("  {v}");
            }
            if o.violations.len() > 5 {
                println!("  … {} more violation(s)", o.violations.len() - 5);
            }
            for f in o.failures.iter().take(3) {
                println!("  {f}");
            }
            for e in &o.abi_errors {
                println!("  ABI: {e}");
            }
            println!("  replay: {replay}");
        }
        if failed.len() > 20 {
            println!("… {} more failed run(s) (--json lists every one)", failed.len() - 20);
        }
        for (rule, n) in &by_rule {
            println!("  {rule:<10} ×{n}");
        }
        if failed.is_empty() {
            println!("conformant: no violation, every stream exact, every request back");
        } else {
            println!("{} of {} run(s) failed", failed.len(), outcomes.len());
        }
    }
    if a.trace.is_some() && !single && traced_failures.get() >= MAX_TRACED && failed.len() > MAX_TRACED {
        eprintln!(
            "chimney check: traces written for the first {MAX_TRACED} failures only (a trace can be large); replay another with its flag and --trace"
        );
    }
    if abi {
        ExitCode::from(2)
    } else if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// One simulator seed with a fresh target from `make`, data one way (echo and the send-side
/// adversary need the send half, which the ABI does not carry).
fn sim_run<T: Candidate + 'static>(
    seed: u64,
    make: &dyn Fn() -> Result<T, String>,
    trace: Option<TraceWriter>,
) -> Outcome {
    let name = format!("sim seed {seed}");
    let target = match make() {
        Ok(t) => t,
        Err(e) => return Outcome { name, abi_errors: vec![e], ..Outcome::default() },
    };
    let knobs = chimney_sim::scenario::Knobs { echo: Some(false), ..Default::default() };
    let sc = chimney_sim::Scenario::from_seed(seed, &knobs);
    let rep = chimney_sim::scenario::run_target(&sc, conformance::Boxed::new(target), trace);
    let (abi, failures): (Vec<String>, Vec<String>) =
        rep.failures.into_iter().filter(|f| !f.starts_with("contract: ")).partition(|f| f.starts_with("ABI: "));
    Outcome { name, violations: rep.contract, failures, abi_errors: abi }
}

/// One real run with a fresh target from `make`; a run that could not be set up (the
/// namespace or TUN failed after the privilege check passed) is a failure of the run.
fn real_run<T: Candidate + 'static>(
    name: &str,
    make: &dyn Fn() -> Result<T, String>,
    trace: Option<TraceWriter>,
) -> Outcome {
    let Some(run) = crate::check_real::REAL_RUNS.iter().find(|r| r.name == name) else {
        return Outcome { name: format!("real {name}"), failures: vec!["no such run".into()], ..Outcome::default() };
    };
    crate::check_real::run_real(run, 1, make, trace).unwrap_or_else(|e| Outcome {
        name: format!("real {name}"),
        failures: vec![format!("could not set the run up: {e}")],
        ..Outcome::default()
    })
}

/// One run, as `chimney check` flags name it.
enum Replay {
    Scenario(String),
    Seed(u64),
    Sim(u64),
    Real(&'static str),
}

impl Replay {
    fn flag(&self) -> String {
        match self {
            Replay::Scenario(n) => format!("--scenario {n:?}"),
            Replay::Seed(s) => format!("--seed {s}"),
            Replay::Sim(s) => format!("--sim-seed {s}"),
            Replay::Real(n) => format!("--real-run {n}"),
        }
    }

    fn file_stem(&self) -> String {
        match self {
            Replay::Scenario(n) => format!("scenario-{n}"),
            Replay::Seed(s) => format!("seed-{s}"),
            Replay::Sim(s) => format!("sim-seed-{s}"),
            Replay::Real(n) => format!("real-{n}"),
        }
    }
}
