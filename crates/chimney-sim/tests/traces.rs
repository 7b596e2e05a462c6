//! Contract traces of simulated runs (random host behaviours, indications, refusals,
//! re-offloads, resets, terminates) replay offline through the verifier with no violation,
//! with and without recorded bytes, and account for at least every byte the run delivered.

use std::sync::{Arc, Mutex};

use chimney::contract::replay::replay;
use chimney::contract::trace::TraceWriter;
use chimney_sim::scenario::{Knobs, Scenario};

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn simulated_runs_replay_clean() {
    let mut failed = Vec::new();
    for seed in 1..=40u64 {
        let bytes = seed % 2 == 0;
        let sc = Scenario::from_seed(seed, &Knobs::default());
        let buf = Buf::default();
        let w = TraceWriter::new(Box::new(buf.clone()), bytes, "sim test");
        let (rep, written) = chimney_sim::run_traced(&sc, false, &mut |_, _, _| {}, Some(w));
        let lines = written.expect("traced").expect("written");
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count() as u64, lines);
        match replay(&text) {
            Ok(r) if !r.violations.is_empty() => {
                failed.push(format!("seed {seed}: {} (live run: {} violations)", r.violations[0], rep.violations))
            }
            Ok(r) => {
                assert_eq!(r.content, bytes);
                assert!(
                    r.checked_bytes >= rep.bytes,
                    "seed {seed}: replay accounted {} of {} bytes",
                    r.checked_bytes,
                    rep.bytes
                );
            }
            Err(e) => failed.push(format!("seed {seed}: {e}")),
        }
    }
    assert!(failed.is_empty(), "\n{}", failed.join("\n"));
}
