//! `chimney`: the command-line front end of the chimney TCP offload target.

use std::process::ExitCode;
use std::time::Instant as WallClock;

use chimney::contract::RULES;
use chimney::demo::{self, DemoConfig};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "chimney", version, about = "A software TCP chimney offload target and its contract verifier")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the main job: deliver streams into posted buffers under the contract verifier.
    ///
    /// Until the TCP engine and TUN driver land this runs in memory: a host application with
    /// six posting policies and the delivery layer fed a seeded stream.
    Demo(DemoArgs),
    /// List every rule the contract verifier checks, one per line.
    Rules,
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Connections (each gets the next application policy in turn).
    #[arg(long, default_value_t = 6)]
    connections: u32,
    /// Stream bytes per connection.
    #[arg(long, default_value_t = 8 << 20)]
    bytes: u64,
    /// Largest chunk of in-sequence bytes fed at once.
    #[arg(long, default_value_t = 16 * 1024)]
    chunk: usize,
    /// Seed of the stream and schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Rules => {
            for r in RULES {
                println!("{:<10} {}", r.id, r.text);
            }
            ExitCode::SUCCESS
        }
        Command::Demo(a) => run_demo(&a),
    }
}

fn run_demo(a: &DemoArgs) -> ExitCode {
    if a.chunk == 0 || a.connections == 0 {
        eprintln!("chimney demo: --chunk and --connections must be at least 1");
        return ExitCode::from(2);
    }
    let cfg = DemoConfig { connections: a.connections, bytes: a.bytes, chunk: a.chunk, seed: a.seed };
    let t0 = WallClock::now();
    let r = demo::run(&cfg);
    let secs = t0.elapsed().as_secs_f64();
    if a.json {
        let conns: Vec<_> = r
            .conns
            .iter()
            .map(|c| {
                serde_json::json!({
                    "conn": c.conn.0, "policy": c.policy, "bytes": c.bytes, "exact": c.exact,
                    "completions": c.completions, "indications": c.indications, "refusals": c.refusals,
                })
            })
            .collect();
        let v = serde_json::json!({
            "mode": "in-memory",
            "ok": r.ok(),
            "seconds": secs,
            "checked_bytes": r.checked_bytes,
            "violations": r.violations.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
            "connections": conns,
        });
        println!("{v}");
    } else {
        println!("chimney demo (in memory: host application ⇄ delivery layer, contract verifier on)");
        println!(
            "{:<6} {:<42} {:>10} {:>6} {:>11} {:>11} {:>8}",
            "conn", "policy", "bytes", "exact", "completions", "indications", "refused"
        );
        for c in &r.conns {
            println!(
                "{:<6} {:<42} {:>10} {:>6} {:>11} {:>11} {:>8}",
                c.conn.0,
                c.policy,
                c.bytes,
                if c.exact { "yes" } else { "NO" },
                c.completions,
                c.indications,
                c.refusals
            );
        }
        let total: u64 = r.conns.iter().map(|c| c.bytes).sum();
        println!(
            "{} bytes in {:.3} s ({:.2} Gbit/s of delivery work), {} bytes checked by the verifier",
            total,
            secs,
            total as f64 * 8.0 / secs.max(1e-9) / 1e9,
            r.checked_bytes
        );
        if r.violations.is_empty() {
            println!("verifier: 0 violations ({} rules checked)", RULES.len());
        } else {
            println!("verifier: {} violations", r.violations.len());
            for v in r.violations.iter().take(20) {
                println!("  {v}");
            }
        }
    }
    if r.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
