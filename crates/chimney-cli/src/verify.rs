//! `chimney verify FILE`: replays a contract trace (written by `--trace`, or by any other
//! offload target in the documented format) through the verifier and reports every
//! violation by rule id.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use chimney::contract::replay::{replay_reader, ReplayReport};

/// `chimney verify` flags.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// The trace: JSON lines, docs/trace-format.md (`-` reads standard input).
    pub file: PathBuf,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    pub json: bool,
    /// Violations listed in full at most (the counts per rule are always complete).
    #[arg(long, default_value_t = 50)]
    pub max_listed: usize,
}

/// Exit status: 0 no violation, 1 violations, 2 the trace could not be read or replayed.
pub fn run(a: &VerifyArgs) -> ExitCode {
    // Read line by line: a trace of a long run is never held whole.
    let input: Box<dyn std::io::BufRead> = if a.file.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        match std::fs::File::open(&a.file) {
            Ok(f) => Box::new(std::io::BufReader::with_capacity(1 << 20, f)),
            Err(e) => {
                return crate::error::CliError::new("verify", format!("reading {}: {e}", a.file.display())).exit();
            }
        }
    };
    let r = match replay_reader(input) {
        Ok(r) => r,
        Err(e) => {
            if a.json {
                println!("{}", serde_json::json!({ "ok": false, "error": e.to_string(), "line": e.line }));
            } else {
                return crate::error::CliError::new("verify", format!("{}: {e}", a.file.display())).exit();
            }
            return ExitCode::from(2);
        }
    };
    if a.json {
        println!("{}", to_json(&r));
    } else {
        print_report(a, &r);
    }
    if r.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn per_rule(r: &ReplayReport) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for v in &r.violations {
        *m.entry(v.rule.id).or_insert(0) += 1;
    }
    m
}

fn to_json(r: &ReplayReport) -> serde_json::Value {
    serde_json::json!({
        "ok": r.violations.is_empty(),
        "lines": r.lines,
        "calls": r.calls,
        "connections": r.connections,
        "checked_bytes": r.checked_bytes,
        "content_checked": r.content,
        "push_timer_checked": r.push_timer,
        "rules": per_rule(r),
        "violations": r.violations.iter().map(violation_json).collect::<Vec<_>>(),
        "notes": r.notes.iter().map(violation_json).collect::<Vec<_>>(),
    })
}

/// One violation (or note) as JSON: rule id, connection, NBL, what was seen.
fn violation_json(v: &chimney::contract::Violation) -> serde_json::Value {
    serde_json::json!({
        "rule": v.rule.id,
        "conn": v.conn.map(|c| c.0),
        "nbl": v.nbl.map(chimney::contract::trace::id_str),
        "detail": v.detail,
    })
}

fn print_report(a: &VerifyArgs, r: &ReplayReport) {
    println!(
        "chimney verify {}: {} lines, {} calls, {} connection(s), {} stream bytes accounted",
        a.file.display(),
        r.lines,
        r.calls,
        r.connections,
        r.checked_bytes
    );
    if !r.content {
        println!(
            "  (the trace has no payload bytes: counts, order, statuses and ownership are checked, content is not)"
        );
    }
    if !r.push_timer {
        println!("  (the trace has no push-timer lines: R-CMP-9 is not checked)");
    }
    if !r.notes.is_empty() {
        println!(
            "verifier: {} note(s): chimney's own choices on points the contract leaves open, not violations",
            r.notes.len()
        );
        for v in r.notes.iter().take(a.max_listed) {
            println!("  note {v}");
        }
    }
    if r.violations.is_empty() {
        println!("verifier: 0 violations ({} rules)", chimney::contract::RULES.len());
        return;
    }
    println!("verifier: {} violation(s)", r.violations.len());
    for (rule, n) in per_rule(r) {
        let text = chimney::contract::RULES.iter().find(|x| x.id == rule).map_or("", |x| x.text);
        println!("  {rule:<10} ×{n:<5} {text}");
    }
    for v in r.violations.iter().take(a.max_listed) {
        println!("  {v}");
    }
    if r.violations.len() > a.max_listed {
        println!("  … {} more", r.violations.len() - a.max_listed);
    }
}
