//! Seed sweeps: every invariant on every run, and determinism (same seed, same trace).

use chimney_sim::scenario::{Knobs, Scenario};

fn sweep(range: std::ops::Range<u64>, knobs: &Knobs) {
    let mut failed = Vec::new();
    for seed in range {
        let sc = Scenario::from_seed(seed, knobs);
        let r = std::panic::catch_unwind(|| chimney_sim::run(&sc, false));
        match r {
            Ok(rep) if rep.ok() => {}
            Ok(rep) => failed.push(format!("seed {seed}: {}", rep.failures.join("; "))),
            Err(_) => failed.push(format!("seed {seed}: panic")),
        }
    }
    assert!(failed.is_empty(), "{} failing seeds:\n{}", failed.len(), failed.join("\n"));
}

#[test]
fn clean_transfers() {
    sweep(0..20, &Knobs { clean: true, ..Knobs::default() });
}

#[test]
fn hostile_schedules() {
    sweep(0..200, &Knobs::default());
}

#[test]
fn same_seed_same_trace() {
    for seed in [3u64, 77, 1234] {
        let sc = Scenario::from_seed(seed, &Knobs::default());
        let a = chimney_sim::run(&sc, false);
        let b = chimney_sim::run(&sc, false);
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}");
        assert_eq!(a.packets, b.packets);
    }
}
