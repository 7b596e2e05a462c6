//! The delivery stack drivers and the simulator run, named: the [`Delivery`] layer behind the
//! [`Verifier`] (every call checked) behind the [`Tracer`] (every call written, when asked),
//! with the accessors callers need, so that nobody reaches through the wrappers.

use super::trace::{TraceWriter, Tracer};
use super::{ConnId, Delivery, DeliveryConfig, Verifier, VerifierMode, Violation};

/// The checked (and optionally traced) delivery layer.
pub type CheckedDelivery = Tracer<Verifier<Delivery>>;

impl Tracer<Verifier<Delivery>> {
    /// A delivery layer configured by `cfg`, checked in `mode`, traced to `trace` if given.
    pub fn checked(cfg: DeliveryConfig, mode: VerifierMode, trace: Option<TraceWriter>) -> CheckedDelivery {
        Tracer::new(Verifier::new(Delivery::new(cfg), mode), trace)
    }

    /// The delivery layer itself.
    pub fn layer(&self) -> &Delivery {
        self.inner().inner()
    }

    /// Every violation the verifier recorded so far.
    pub fn violations(&self) -> Vec<Violation> {
        self.inner().core().violations()
    }

    /// The run is over: reports what any connection still owes the host (a completion, an
    /// indication, an event) as a violation.
    pub fn finish_checks(&self) {
        self.inner().finish();
    }

    /// Bytes `conn` holds that no request or indication has taken yet.
    pub fn receive_backlog(&self, conn: ConnId) -> usize {
        self.layer().receive_backlog(conn)
    }

    /// One line on `conn`'s delivery state (buffered bytes, posted requests, waiters).
    pub fn describe(&self, conn: ConnId) -> String {
        self.layer().describe(conn)
    }
}
