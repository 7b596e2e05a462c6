//! Report lines written to standard output by a thread of their own: `serve` and `connect`
//! queue one JSON line per ended connection and go back to moving packets, and the lines
//! reach the reader as fast as it takes them. A reader that is slow, or not reading at all,
//! never stalls the data path; no line is dropped, and a queue that grows past a bound is
//! said on standard error.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

/// Lines queued beyond this are announced on standard error (once per crossing).
pub const WARN_PENDING: usize = 100_000;

/// A queue of lines in front of standard output, drained by a writer thread.
pub struct LineWriter {
    tx: Option<mpsc::Sender<String>>,
    pending: Arc<AtomicUsize>,
    writer: Option<JoinHandle<Option<std::io::Error>>>,
    warned: bool,
    who: &'static str,
}

impl LineWriter {
    /// Starts the writer thread on standard output; `who` names the command in warnings.
    pub fn stdout(who: &'static str) -> LineWriter {
        let (tx, rx) = mpsc::channel::<String>();
        let pending = Arc::new(AtomicUsize::new(0));
        let left = Arc::clone(&pending);
        let writer = std::thread::Builder::new()
            .name("report-lines".into())
            .spawn(move || {
                let out = std::io::stdout();
                let mut first_error = None;
                for line in rx {
                    if first_error.is_none() {
                        let mut o = out.lock();
                        // Flushed per line: a reader sees each connection as it ends.
                        if let Err(e) = writeln!(o, "{line}").and_then(|()| o.flush()) {
                            first_error = Some(e);
                        }
                    }
                    left.fetch_sub(1, Ordering::SeqCst);
                }
                first_error
            })
            .ok();
        LineWriter { tx: Some(tx), pending, writer, warned: false, who }
    }

    /// Queues `line` (without its newline); never blocks.
    pub fn line(&mut self, line: String) {
        let Some(tx) = &self.tx else { return };
        if self.writer.is_none() {
            // No thread could be started: write in place rather than lose the line.
            println!("{line}");
            return;
        }
        let n = self.pending.fetch_add(1, Ordering::SeqCst) + 1;
        if tx.send(line).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        if n > WARN_PENDING && !self.warned {
            self.warned = true;
            eprintln!(
                "chimney {}: {n} report lines wait for standard output (its reader is slow or gone); \
                 none is dropped, connections keep moving",
                self.who
            );
        } else if n <= WARN_PENDING / 2 {
            self.warned = false;
        }
    }

    /// Waits until every queued line is written; the first write error, if any.
    pub fn finish(mut self) -> Result<(), String> {
        self.tx.take();
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(Some(e))) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("writing the report: {e}")),
            Some(Err(_)) => Err("the report writer failed".into()),
            _ => Ok(()),
        }
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}
