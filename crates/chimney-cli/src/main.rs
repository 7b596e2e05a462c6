//! `chimney`: the command-line front end of the chimney TCP offload target.

use std::process::ExitCode;

mod args;
mod bench;
mod check;
mod check_real;
mod connect;
mod demo;
mod error;
mod lines;
mod pcap;
mod plot;
mod report;
mod serve;
mod sim;
mod size;
mod verify;

use chimney::contract::RULES;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "chimney", version, about = "A software TCP chimney offload target and its contract verifier")]
struct Cli {
    /// Log what the target does to stderr (-v: offloads, uploads, keep-alive; -vv: every
    /// drop and rejected packet). `RUST_LOG` (e.g. `chimney=debug`) overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

/// Logging is off unless asked for: `-v`, `-vv` or `RUST_LOG`.
fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => None,
        1 => Some("chimney=debug,chimney_linux=debug"),
        _ => Some("chimney=trace,chimney_linux=trace"),
    };
    let filter = match (std::env::var("RUST_LOG").ok(), level) {
        (Some(env), _) => tracing_subscriber::EnvFilter::new(env),
        (None, Some(l)) => tracing_subscriber::EnvFilter::new(l),
        (None, None) => return,
    };
    // Colour only on a terminal: a pipe or a file gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}

#[derive(Subcommand)]
enum Command {
    /// The main job: Linux kernel TCP clients send seeded streams through a TUN device in a
    /// network namespace we create to the offload target; every stream is checked byte for
    /// byte and by the contract verifier.
    Demo(demo::DemoArgs),
    /// Run the target as a server on a TUN device in the current network namespace: a sink,
    /// or with --echo / --source N a sender through the offloaded send path.
    Serve(serve::ServeArgs),
    /// The client role: connect out from the target on a TUN device (active open), offload
    /// the connection and send through it (--send N, --echo-check N).
    Connect(connect::ConnectArgs),
    /// Deterministic simulation: smoltcp senders, an adversary, random host behaviours.
    Sim(sim::SimArgs),
    /// List every rule the contract verifier checks, one per line.
    Rules,
    /// Benchmarks measured side by side in one run (medians, ratios).
    Bench(bench::BenchArgs),
    /// A time–sequence graph (SVG) of one connection in a pcap.
    Plot(plot::PlotArgs),
    /// Replay a contract trace (ours from `--trace`, or any target's in the documented format)
    /// through the verifier; report every violation by rule id.
    Verify(verify::VerifyArgs),
    /// Run the conformance suite against a target behind the verifier: a foreign one from a
    /// shared library (--target PATH.so, the C ABI of include/chimney.h) or chimney's own.
    Check(check::CheckArgs),
}

fn main() -> ExitCode {
    // A reader that goes away (`chimney serve | head`) ends us quietly, as it ends any
    // filter: the default SIGPIPE action, not a panic on the next write to standard output.
    // SAFETY: called first thing, before any thread exists; SIG_DFL installs no handler code.
    unsafe {
        let _ = nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl);
    }
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match cli.command {
        Command::Rules => {
            for r in RULES {
                println!("{:<10} {}", r.id, r.text);
            }
            ExitCode::SUCCESS
        }
        Command::Demo(a) => demo::run(&a),
        Command::Serve(a) => serve::run(&a),
        Command::Connect(a) => connect::run(&a),
        Command::Sim(a) => sim::run(&a),
        Command::Bench(a) => bench::run(&a),
        Command::Plot(a) => plot::run(&a),
        Command::Verify(a) => verify::run(&a),
        Command::Check(a) => check::run(&a),
    }
}
