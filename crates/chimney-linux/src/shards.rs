//! Engine shards: one driver per TUN queue, share-nothing (`--queues N` on `demo` and
//! `serve`). With one queue the driver runs on the calling thread; with several, each runs on
//! a thread of its own and reports come back over a channel.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::{ConnReport, Driver, DriverError, DriverSummary, Tun};
use chimney::contract::trace::TraceWriter;

/// What runs on each report in the shard's own thread (e.g. closing that connection's file).
pub type ReportHook = Box<dyn FnMut(&ConnReport) + Send>;

/// Sets up one shard's driver (tap, sink) given its index; returns its report hook.
pub type Configure = Arc<dyn Fn(usize, &mut Driver) -> ReportHook + Send + Sync>;

/// The contract-trace writers of the shards, handed out by index as each shard starts.
pub struct ShardTraces(std::sync::Mutex<Vec<Option<TraceWriter>>>);

impl ShardTraces {
    /// Writers by shard index (`None`: that shard is not traced).
    pub fn new(w: Vec<Option<TraceWriter>>) -> ShardTraces {
        ShardTraces(std::sync::Mutex::new(w))
    }

    /// Starts shard `i`'s trace on its driver, if it has one.
    pub fn give(&self, i: usize, d: &mut Driver) {
        let w = self.0.lock().unwrap_or_else(|e| e.into_inner()).get_mut(i).and_then(Option::take);
        if let Some(w) = w {
            d.set_trace(w);
        }
    }
}

/// One driver on the calling thread, or one per TUN queue on threads of their own (each owns
/// its engine, verifier and application: nothing is shared but the report channel).
pub enum Shards {
    /// One driver on the calling thread, with its report hook.
    One(Box<Driver>, ReportHook),
    /// One driver per queue, each on its own thread.
    Many {
        workers: Vec<std::thread::JoinHandle<Result<DriverSummary, DriverError>>>,
        reports: std::sync::mpsc::Receiver<ConnReport>,
        stop: Arc<std::sync::atomic::AtomicBool>,
        live: Arc<AtomicUsize>,
        bytes: Arc<std::sync::atomic::AtomicU64>,
    },
}

impl Shards {
    /// One driver per queue in `tuns` (on this thread when there is one), each set up by
    /// `configure(shard index, driver)`.
    pub fn start(tuns: Vec<Tun>, cfg: &crate::DriverConfig, configure: Configure) -> Result<Shards, DriverError> {
        if tuns.len() == 1 {
            let tun = tuns.into_iter().next().ok_or(DriverError::new("starting the driver", "no TUN queue"))?;
            let mut d = Driver::new(tun, cfg.clone())?;
            let hook = configure(0, &mut d);
            return Ok(Shards::One(Box::new(d), hook));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let live = Arc::new(AtomicUsize::new(0));
        let bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut workers = Vec::new();
        for (i, tun) in tuns.into_iter().enumerate() {
            let mut cfg = cfg.clone();
            cfg.engine.seed ^= (i as u64 + 1) << 48;
            let (tx, stop, live, bytes) = (tx.clone(), Arc::clone(&stop), Arc::clone(&live), Arc::clone(&bytes));
            let configure = Arc::clone(&configure);
            workers.push(std::thread::spawn(move || -> Result<DriverSummary, DriverError> {
                let mut d = Driver::new(tun, cfg)?;
                let mut hook = configure(i, &mut d);
                let (mut my_live, mut my_bytes) = (0usize, 0u64);
                while !stop.load(Ordering::SeqCst) {
                    d.step(Duration::from_millis(5))?;
                    for r in d.take_reports() {
                        hook(&r);
                        let _ = tx.send(r);
                    }
                    // Publish this shard's figures as differences to the shared totals.
                    let (l, b) = (d.live(), d.bytes_received());
                    live.fetch_add(l, Ordering::SeqCst);
                    live.fetch_sub(my_live, Ordering::SeqCst);
                    bytes.fetch_add(b - my_bytes, Ordering::SeqCst);
                    (my_live, my_bytes) = (l, b);
                }
                d.shutdown();
                for r in d.take_reports() {
                    hook(&r);
                    let _ = tx.send(r);
                }
                if let Some(Err(e)) = d.finish_trace() {
                    return Err(DriverError::os("writing the contract trace", e));
                }
                live.fetch_sub(my_live, Ordering::SeqCst);
                Ok(d.summary())
            }));
        }
        Ok(Shards::Many { workers, reports: rx, stop, live, bytes })
    }

    /// Runs one round (one shard) or waits up to `wait` for reports (several).
    pub fn step(&mut self, wait: Duration, out: &mut Vec<ConnReport>) -> Result<(), DriverError> {
        match self {
            Shards::One(d, hook) => {
                d.step(wait)?;
                for r in d.take_reports() {
                    hook(&r);
                    out.push(r);
                }
            }
            Shards::Many { reports, .. } => {
                if let Ok(r) = reports.recv_timeout(wait) {
                    out.push(r);
                }
                out.extend(reports.try_iter());
            }
        }
        Ok(())
    }

    /// The single driver, when there is one (tracing needs it).
    pub fn single(&mut self) -> Option<&mut Driver> {
        match self {
            Shards::One(d, _) => Some(d),
            Shards::Many { .. } => None,
        }
    }

    /// Connections offloaded now, all shards.
    pub fn live(&self) -> usize {
        match self {
            Shards::One(d, _) => d.live(),
            Shards::Many { live, .. } => live.load(Ordering::SeqCst),
        }
    }

    /// Bytes received so far, all shards.
    pub fn bytes_received(&self) -> u64 {
        match self {
            Shards::One(d, _) => d.bytes_received(),
            Shards::Many { bytes, .. } => bytes.load(Ordering::SeqCst),
        }
    }

    /// Uploads every live connection of a single driver (several shards do so when
    /// [`Shards::finish`] stops them).
    pub fn shutdown(&mut self, out: &mut Vec<ConnReport>) {
        if let Shards::One(d, hook) = self {
            d.shutdown();
            for r in d.take_reports() {
                hook(&r);
                out.push(r);
            }
        }
    }

    /// Stops the shards and sums what they report, with the first shard error if one failed
    /// (the others' figures and reports are kept).
    pub fn finish(self, out: &mut Vec<ConnReport>) -> (DriverSummary, Option<DriverError>) {
        match self {
            Shards::One(d, _) => (d.summary(), None),
            Shards::Many { workers, reports, stop, .. } => {
                stop.store(true, Ordering::SeqCst);
                // Every shard is joined and every report drained, even when one failed: the
                // others' connections must still be reported. The first error is returned.
                let mut sum = DriverSummary::default();
                let mut first_error = None;
                for w in workers {
                    match w.join() {
                        Ok(Ok(s)) => sum.merge(s),
                        Ok(Err(e)) => {
                            first_error.get_or_insert(e);
                        }
                        Err(_) => {
                            first_error.get_or_insert(DriverError::new("running a queue's driver", "thread panicked"));
                        }
                    }
                }
                out.extend(reports.try_iter());
                (sum, first_error)
            }
        }
    }
}
