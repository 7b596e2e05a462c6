//! The conformance suite: what `chimney check` runs against any target (chimney's own
//! `Delivery`, or a foreign one through the C ABI), always behind the verifier.
//!
//! * **Scenarios**: one drive per branch of the three delivery flowcharts and the FIN, RST,
//!   abort, terminate and offload paths (docs/spec.md §5, §6). The suite judges only what the
//!   contract says: no violation, every stream exact (delivered plus handed back at
//!   terminate), every posted request completed. How a target batches or splits is its own
//!   business.
//! * **Interleavings**: seeded random sequences of posts, data, push-timer firings,
//!   indication outcomes, posts from inside upcalls, returns, FIN, RST, abort and terminate,
//!   with the same judgement.
//!
//! A failure names its scenario or seed; the same run with a trace writer set records the
//! calls for `chimney verify`.

use std::sync::Arc;
use std::time::Duration;

use crate::contract::trace::{TraceWriter, Tracer};
use crate::contract::{
    ApiMisuse, ConnId, Delivery, InitiateFailed, InitiateOffload, OffloadTarget, PostRejected, ProtocolHost,
    ReceiveInput, SendInput, SendStream, Verifier, VerifierCore, VerifierMode, Violation,
};
use crate::ndis::{DisconnectKind, Mdl, NblChain, NblId, NdisStatus, NetBuffer, NetBufferList, PoolTag};
use crate::ndis::{TcpCachedState, TcpDelegatedState, TcpOffloadEvent, TcpOffloadState};
use crate::testkit::host::{AppHost, AppPolicy, IndicationPolicy};
use crate::testkit::rng::SplitMix64;
use crate::Instant;

/// A target the suite can run: the contract's entry points, plus hooks for targets that find
/// faults outside the calls (a foreign target's ABI layer) and for diagnostics.
pub trait Candidate: InitiateOffload + ReceiveInput + SendInput {
    /// Called once the verifier wraps the target: hand it the core, to report what the calls
    /// cannot carry (an NBL completed twice through the C ABI).
    fn attach(&mut self, core: &Arc<VerifierCore>) {
        let _ = core;
    }

    /// Misbehaviour at the ABI so far (the target cannot be judged while it happens).
    fn abi_errors(&self) -> Vec<String> {
        Vec::new()
    }

    /// Bytes the target holds for `conn` and has not delivered (0 when it cannot say).
    fn receive_backlog(&self, conn: ConnId) -> usize {
        let _ = conn;
        0
    }

    /// One line on `conn`'s state, for a stuck run's report.
    fn describe(&self, conn: ConnId) -> String {
        format!("{conn}")
    }
}

impl Candidate for Delivery {
    fn receive_backlog(&self, conn: ConnId) -> usize {
        Delivery::receive_backlog(self, conn)
    }

    fn describe(&self, conn: ConnId) -> String {
        Delivery::describe(self, conn)
    }
}

/// Any [`Candidate`] behind one type, for harnesses that pick the target at run time (the
/// simulator under `chimney check`): every call is forwarded.
pub struct Boxed(pub Box<dyn Candidate>);

impl Boxed {
    /// `t`, boxed.
    pub fn new(t: impl Candidate + 'static) -> Boxed {
        Boxed(Box::new(t))
    }
}

impl Candidate for Boxed {
    fn attach(&mut self, core: &Arc<VerifierCore>) {
        self.0.attach(core)
    }
    fn abi_errors(&self) -> Vec<String> {
        self.0.abi_errors()
    }
    fn receive_backlog(&self, conn: ConnId) -> usize {
        self.0.receive_backlog(conn)
    }
    fn describe(&self, conn: ConnId) -> String {
        self.0.describe(conn)
    }
}

impl OffloadTarget for Boxed {
    fn receive(
        &mut self,
        now: Instant,
        conn: ConnId,
        nbls: NblChain,
        host: &mut dyn ProtocolHost,
    ) -> Result<NdisStatus, PostRejected> {
        self.0.receive(now, conn, nbls, host)
    }
    fn receive_return(&mut self, now: Instant, nbls: NblChain, host: &mut dyn ProtocolHost) -> NdisStatus {
        self.0.receive_return(now, nbls, host)
    }
    fn disconnect(
        &mut self,
        now: Instant,
        conn: ConnId,
        kind: DisconnectKind,
        nbl: NblChain,
        host: &mut dyn ProtocolHost,
    ) -> Result<NdisStatus, PostRejected> {
        self.0.disconnect(now, conn, kind, nbl, host)
    }
    fn send(
        &mut self,
        now: Instant,
        conn: ConnId,
        nbls: NblChain,
        host: &mut dyn ProtocolHost,
    ) -> Result<NdisStatus, PostRejected> {
        self.0.send(now, conn, nbls, host)
    }
    fn terminate_offload(
        &mut self,
        now: Instant,
        conn: ConnId,
        host: &mut dyn ProtocolHost,
    ) -> Result<TcpDelegatedState, ApiMisuse> {
        self.0.terminate_offload(now, conn, host)
    }
    fn handle_timeout(&mut self, now: Instant, host: &mut dyn ProtocolHost) {
        self.0.handle_timeout(now, host)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.0.poll_timeout()
    }
    fn push_timer(&self, conn: ConnId) -> Option<Instant> {
        self.0.push_timer(conn)
    }
}

impl InitiateOffload for Boxed {
    fn initiate_offload(
        &mut self,
        now: Instant,
        conn: ConnId,
        state: TcpOffloadState,
        host: &mut dyn ProtocolHost,
    ) -> Result<NblChain, InitiateFailed> {
        self.0.initiate_offload(now, conn, state, host)
    }
}

impl ReceiveInput for Boxed {
    fn receive_data(
        &mut self,
        now: Instant,
        conn: ConnId,
        data: &[u8],
        psh: bool,
        host: &mut dyn ProtocolHost,
    ) -> Result<(), ApiMisuse> {
        self.0.receive_data(now, conn, data, psh, host)
    }
    fn receive_fin(&mut self, now: Instant, conn: ConnId, host: &mut dyn ProtocolHost) -> Result<(), ApiMisuse> {
        self.0.receive_fin(now, conn, host)
    }
    fn receive_rst(&mut self, now: Instant, conn: ConnId, host: &mut dyn ProtocolHost) -> Result<(), ApiMisuse> {
        self.0.receive_rst(now, conn, host)
    }
    fn receive_space(&self, conn: ConnId) -> usize {
        self.0.receive_space(conn)
    }
    fn placement_room<'a>(&'a mut self, conn: ConnId, max: usize, out: &mut [&'a mut [u8]]) -> usize {
        self.0.placement_room(conn, max, out)
    }
    fn receive_placed(
        &mut self,
        now: Instant,
        conn: ConnId,
        len: usize,
        psh: bool,
        host: &mut dyn ProtocolHost,
    ) -> Result<(), ApiMisuse> {
        self.0.receive_placed(now, conn, len, psh, host)
    }
    fn placed_bytes(&self, conn: ConnId, len: usize, f: &mut dyn FnMut(&[u8])) {
        self.0.placed_bytes(conn, len, f)
    }
    fn indicate_event(
        &mut self,
        now: Instant,
        conn: ConnId,
        event: TcpOffloadEvent,
        host: &mut dyn ProtocolHost,
    ) -> Result<(), ApiMisuse> {
        self.0.indicate_event(now, conn, event, host)
    }
    fn receive_window(&self, conn: ConnId) -> usize {
        self.0.receive_window(conn)
    }
}

impl SendInput for Boxed {
    fn send_stream(&self, conn: ConnId) -> SendStream {
        self.0.send_stream(conn)
    }
    fn send_bytes(&mut self, conn: ConnId, from: u64, len: usize, f: &mut dyn FnMut(&[u8])) -> usize {
        self.0.send_bytes(conn, from, len, f)
    }
    fn send_nbl_end(&self, conn: ConnId, start: u64, end: u64) -> Option<u64> {
        self.0.send_nbl_end(conn, start, end)
    }
    fn send_acked(
        &mut self,
        now: Instant,
        conn: ConnId,
        upto: u64,
        host: &mut dyn ProtocolHost,
    ) -> Result<(), ApiMisuse> {
        self.0.send_acked(now, conn, upto, host)
    }
    fn take_send_ready(&mut self, out: &mut Vec<ConnId>) {
        self.0.take_send_ready(out)
    }
    fn take_nested_disconnects(&mut self, out: &mut Vec<(ConnId, DisconnectKind, NblChain)>) {
        self.0.take_nested_disconnects(out)
    }
    fn take_rejected_sends(&mut self) -> Vec<PostRejected> {
        self.0.take_rejected_sends()
    }
}

/// What one scenario or seed came to.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The scenario's name, or `seed N`.
    pub name: String,
    /// Contract violations.
    pub violations: Vec<Violation>,
    /// Other failures: a stream not exact, a request never completed, a call refused.
    pub failures: Vec<String>,
    /// Misbehaviour at the ABI.
    pub abi_errors: Vec<String>,
}

impl Outcome {
    /// Nothing wrong.
    pub fn ok(&self) -> bool {
        self.violations.is_empty() && self.failures.is_empty() && self.abi_errors.is_empty()
    }

    /// The run's name and, one per line, what went wrong.
    pub fn describe(&self) -> String {
        let mut s = format!("{}:", self.name);
        for v in &self.violations {
            s += &format!("\n  {v}");
        }
        for f in self.failures.iter().chain(&self.abi_errors) {
            s += &format!("\n  {f}");
        }
        s
    }
}

const C: ConnId = ConnId(7);

/// One target under the verifier, the application on top, the stream fed so far.
struct Rig<T: Candidate> {
    t: Tracer<Verifier<T>>,
    core: Arc<VerifierCore>,
    h: AppHost,
    now: Instant,
    sent: Vec<u8>,
    /// Bytes of `sent` the stream may stop short of (after RST or abort).
    may_truncate: bool,
    failures: Vec<String>,
}

impl<T: Candidate> Rig<T> {
    fn new(target: T, trace: Option<TraceWriter>, policy: AppPolicy, indication_size: u32) -> Rig<T> {
        Self::with_state(target, trace, policy, indication_size, None)
    }

    fn with_state(
        target: T,
        trace: Option<TraceWriter>,
        policy: AppPolicy,
        indication_size: u32,
        buffered: Option<Vec<u8>>,
    ) -> Rig<T> {
        let mut v = Verifier::new(target, VerifierMode::Collect);
        let core = Arc::clone(v.core());
        v.inner_mut().attach(&core);
        let t = Tracer::new(v, trace);
        let mut h = AppHost::new();
        h.set_policy(C, policy);
        let mut r = Rig { t, core, h, now: Instant::ZERO, sent: Vec::new(), may_truncate: false, failures: Vec::new() };
        let mut state = TcpOffloadState {
            cached: TcpCachedState { initial_rcv_wnd: 64 * 1024, rcv_indication_size: indication_size },
            ..TcpOffloadState::default()
        };
        if let Some(b) = buffered {
            state.delegated.rcv_nxt = b.len() as u32;
            r.sent.extend_from_slice(&b);
            let nbl = NetBufferList::new(NblId::new(PoolTag::Host, 1 << 40), NetBuffer::new(vec![Mdl::from_bytes(b)]));
            state.delegated.buffered_data = NblChain::single(nbl);
        }
        if let Err(e) = r.t.initiate_offload(Instant::ZERO, C, state, &mut r.h) {
            r.failures.push(format!("initiate_offload refused: {:?}", e.status));
        }
        r
    }

    fn abi_errors(&self) -> Vec<String> {
        self.t.inner().inner().abi_errors()
    }

    fn post(&mut self) {
        if let Err(e) = self.h.top_up(self.now, C, &mut self.t) {
            self.failures.push(format!("post refused: {e:?}"));
        }
    }

    fn post_policy(&mut self, p: AppPolicy) {
        self.h.set_policy(C, p);
        let chain = self.h.top_up_chain(C);
        if let Err(e) = self.t.receive(self.now, C, chain, &mut self.h) {
            self.failures.push(format!("post refused: {}", e.error));
        }
    }

    fn feed(&mut self, n: usize, psh: bool) {
        let n = n.min(self.t.receive_space(C));
        let start = self.sent.len();
        let bytes: Vec<u8> = (start..start + n).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        self.sent.extend_from_slice(&bytes);
        if let Err(e) = self.t.receive_data(self.now, C, &bytes, psh, &mut self.h) {
            self.failures.push(format!("data refused: {e}"));
        }
    }

    fn fin(&mut self) {
        if let Err(e) = self.t.receive_fin(self.now, C, &mut self.h) {
            self.failures.push(format!("FIN refused: {e}"));
        }
    }

    fn rst(&mut self) {
        self.may_truncate = true;
        if let Err(e) = self.t.receive_rst(self.now, C, &mut self.h) {
            self.failures.push(format!("RST refused: {e}"));
        }
    }

    fn abort(&mut self) {
        self.may_truncate = true;
        if let Err(e) = self.t.disconnect(self.now, C, DisconnectKind::Abortive, NblChain::new(), &mut self.h) {
            self.failures.push(format!("abortive disconnect refused: {}", e.error));
        }
    }

    /// Moves time on by `ms`, running every timer due on the way.
    fn advance(&mut self, ms: u64) {
        let end = self.now + Duration::from_millis(ms);
        let mut guard = 0;
        while let Some(d) = self.t.poll_timeout().filter(|&d| d <= end) {
            self.now = d.max(self.now);
            self.t.handle_timeout(self.now, &mut self.h);
            guard += 1;
            if guard > 10_000 {
                self.failures.push("the target keeps asking for a timer call at the same time".into());
                break;
            }
        }
        self.now = end;
        self.t.handle_timeout(self.now, &mut self.h);
    }

    fn return_held(&mut self) {
        self.h.return_held(self.now, &mut self.t);
    }

    /// Terminates and judges: the stream exact (a prefix after RST or abort), every request
    /// back, no violation.
    fn finish(mut self, name: &str) -> Outcome {
        let mut got;
        self.advance(1);
        match self.t.terminate_offload(self.now, C, &mut self.h) {
            Ok(d) => {
                got = self.h.conn(C).stream;
                for n in d.buffered_data.iter() {
                    n.net_buffer().copy_out(n.net_buffer().data_offset(), n.net_buffer().data_length(), &mut got);
                }
                self.h.hold(d.buffered_data);
            }
            Err(e) => {
                got = self.h.conn(C).stream;
                self.failures.push(format!("terminate refused: {e}"));
            }
        }
        // The connection is gone: a timer call must not bring an upcall for it.
        self.now = self.now + Duration::from_millis(1);
        self.t.handle_timeout(self.now, &mut self.h);
        self.return_held();
        let exact = if self.may_truncate { self.sent.starts_with(&got) } else { got == self.sent };
        if !exact {
            self.failures.push(format!(
                "stream not exact: {} bytes delivered or handed back, {} fed{}",
                got.len(),
                self.sent.len(),
                if got.len() == self.sent.len() { " (contents differ)" } else { "" }
            ));
        }
        let out = self.h.conn(C).outstanding;
        if out != 0 {
            self.failures.push(format!("{out} posted request(s) never came back"));
        }
        let abi_errors = self.abi_errors();
        let Rig { t, core, failures, .. } = self;
        drop(t);
        Outcome { name: name.to_string(), violations: core.violations(), failures, abi_errors }
    }
}

fn quiet(size: usize, no_push: bool) -> AppPolicy {
    AppPolicy { keep_posted: 1, post_size: size, no_push, repost_in_completion: false, ..AppPolicy::default() }
}

/// A scenario: drives a rig built by the suite.
type Drive<T> = fn(&mut dyn FnMut(AppPolicy, u32) -> Rig<T>) -> Rig<T>;

/// The names of the scenarios, in order.
pub fn scenario_names() -> Vec<&'static str> {
    scenarios::<Delivery>().iter().map(|(n, _)| *n).collect()
}

#[allow(clippy::type_complexity)]
fn scenarios<T: Candidate + 'static>() -> Vec<(&'static str, Drive<T>)> {
    vec![
        ("post while busy is served after the call", |mk| {
            let mut r =
                mk(AppPolicy { keep_posted: 1, post_size: 100, repost_in_completion: true, ..AppPolicy::default() }, 0);
            r.post();
            r.feed(250, false);
            r
        }),
        ("post with nothing buffered only queues", |mk| {
            let mut r = mk(quiet(100, false), 0);
            r.post();
            r
        }),
        ("post with buffered data fills at once", |mk| {
            let mut r = mk(AppPolicy { indication: IndicationPolicy::Refuse, ..quiet(100, true) }, 0);
            r.feed(150, false);
            r.post_policy(quiet(100, true));
            r
        }),
        ("refused data stays buffered, newer data appended", |mk| {
            let mut r = mk(AppPolicy { indication: IndicationPolicy::Refuse, ..quiet(100, true) }, 0);
            r.feed(10, false);
            r.feed(20, true);
            r.post_policy(quiet(100, true));
            r
        }),
        ("nothing posted: indicate", |mk| {
            let mut r = mk(quiet(100, true), 0);
            r.feed(30, false);
            r
        }),
        ("fill completes every filled request", |mk| {
            let mut r = mk(AppPolicy { keep_posted: 3, ..quiet(100, true) }, 0);
            r.post();
            r.feed(300, false);
            r
        }),
        ("fill batches filled requests and a pushed partial", |mk| {
            let mut r = mk(AppPolicy { keep_posted: 3, ..quiet(100, false) }, 0);
            r.post();
            r.feed(250, true);
            r
        }),
        ("leftover after the requests is indicated", |mk| {
            let mut r = mk(quiet(100, true), 0);
            r.post();
            r.feed(180, false);
            r
        }),
        ("partial non-push request ignores PSH and the timer", |mk| {
            let mut r = mk(quiet(100, true), 0);
            r.post();
            r.feed(40, true);
            r.advance(2000);
            r.feed(60, false);
            r
        }),
        ("partial push request completes on PSH", |mk| {
            let mut r = mk(quiet(100, false), 0);
            r.post();
            r.feed(40, true);
            r
        }),
        ("partial push request completes on the push timer", |mk| {
            let mut r = mk(quiet(100, false), 0);
            r.post();
            r.feed(10, false);
            r.advance(499);
            r.advance(1);
            r.advance(600);
            r
        }),
        ("data while the push timer runs restarts it", |mk| {
            let mut r = mk(quiet(100, false), 0);
            r.post();
            r.feed(10, false);
            r.advance(300);
            r.feed(10, false);
            r.advance(300);
            r.advance(300);
            r
        }),
        ("prefilled push request starts the timer at post", |mk| {
            let mut r = mk(AppPolicy { prefilled: 5, ..quiet(100, false) }, 0);
            r.post();
            r.advance(500);
            r.advance(600);
            r
        }),
        ("accepted indication, requests posted inside are filled", |mk| {
            let p = AppPolicy { keep_posted: 0, post_size: 100, post_in_indication: true, ..quiet(100, true) };
            let mut r = mk(p, 16);
            r.feed(116, false);
            r
        }),
        ("indication size caps each indication", |mk| {
            let mut r = mk(quiet(100, true), 50);
            r.feed(120, false);
            r.advance(1);
            r
        }),
        ("refused indication, a post made inside fills", |mk| {
            let p = AppPolicy {
                keep_posted: 0,
                post_size: 100,
                post_in_indication: true,
                indication: IndicationPolicy::Refuse,
                ..quiet(100, true)
            };
            let mut r = mk(p, 0);
            r.feed(100, false);
            r
        }),
        ("refused indication keeps the data until a post", |mk| {
            let mut r = mk(AppPolicy { keep_posted: 0, indication: IndicationPolicy::Refuse, ..quiet(100, true) }, 0);
            r.feed(70, false);
            r.feed(30, false);
            r.post_policy(quiet(60, true));
            r.post_policy(quiet(60, true));
            r
        }),
        ("partially accepted indication keeps the rest", |mk| {
            let mut r =
                mk(AppPolicy { keep_posted: 0, indication: IndicationPolicy::AcceptUpTo(25), ..quiet(100, true) }, 0);
            r.feed(100, false);
            r.post_policy(quiet(75, true));
            r
        }),
        ("zero-byte post re-enables indication", |mk| {
            let mut r = mk(AppPolicy { keep_posted: 0, indication: IndicationPolicy::Refuse, ..quiet(100, true) }, 0);
            r.feed(50, false);
            r.h.set_policy(C, AppPolicy { keep_posted: 0, ..quiet(0, true) });
            r.post_policy(AppPolicy { keep_posted: 1, ..quiet(0, true) });
            r.advance(1);
            r
        }),
        ("zero-byte requests re-posted from every completion", |mk| {
            let p = AppPolicy { keep_posted: 1, post_size: 0, repost_in_completion: true, ..AppPolicy::default() };
            let mut r = mk(p, 0);
            r.post();
            r.feed(40, false);
            r.advance(1);
            r.h.set_policy(C, AppPolicy { repost_in_completion: false, ..quiet(0, true) });
            r.advance(1);
            r
        }),
        ("FIN completes the partial, disconnects, then INVALID_STATE", |mk| {
            let mut r = mk(AppPolicy { keep_posted: 2, ..quiet(100, true) }, 0);
            r.post();
            r.feed(30, false);
            r.fin();
            r.post_policy(quiet(100, true));
            r
        }),
        ("FIN waits for refused data to be consumed", |mk| {
            let mut r = mk(AppPolicy { keep_posted: 0, indication: IndicationPolicy::Refuse, ..quiet(100, true) }, 0);
            r.feed(40, false);
            r.fin();
            r.post_policy(quiet(100, true));
            r
        }),
        ("RST aborts with the bytes already placed", |mk| {
            let mut r = mk(AppPolicy { keep_posted: 2, ..quiet(100, true) }, 0);
            r.post();
            r.feed(30, false);
            r.rst();
            r.post_policy(quiet(100, true));
            r
        }),
        ("abortive disconnect completes everything aborted", |mk| {
            let mut r = mk(AppPolicy { keep_posted: 1, indication: IndicationPolicy::Refuse, ..quiet(100, true) }, 0);
            r.post();
            r.feed(150, false);
            r.abort();
            r.post_policy(quiet(100, true));
            r
        }),
        ("terminate completes outstanding and hands data back", |mk| {
            let mut r = mk(AppPolicy { keep_posted: 2, indication: IndicationPolicy::Refuse, ..quiet(100, true) }, 0);
            r.post();
            r.feed(230, false);
            r
        }),
        ("indication pool held by the host, returned later", |mk| {
            let hold = AppPolicy { keep_posted: 0, indication: IndicationPolicy::AcceptAll, ..quiet(100, true) };
            let mut r = mk(hold, 50);
            for _ in 0..40 {
                r.feed(70, false);
            }
            r.return_held();
            r.advance(1);
            r.return_held();
            r.advance(1);
            r
        }),
    ]
}

/// Runs every scenario against fresh targets from `make`; `trace(name)` may give a writer.
pub fn run_scenarios<T: Candidate + 'static>(
    make: &dyn Fn() -> Result<T, String>,
    trace: &dyn Fn(&str) -> Option<TraceWriter>,
) -> Vec<Outcome> {
    let mut out = Vec::new();
    for (name, drive) in scenarios::<T>() {
        out.push(run_one(name, drive, make, trace(name)));
    }
    out
}

/// Runs the scenario called `name` alone.
pub fn run_scenario<T: Candidate + 'static>(
    name: &str,
    make: &dyn Fn() -> Result<T, String>,
    trace: Option<TraceWriter>,
) -> Option<Outcome> {
    scenarios::<T>().into_iter().find(|(n, _)| *n == name).map(|(n, d)| run_one(n, d, make, trace))
}

fn run_one<T: Candidate + 'static>(
    name: &str,
    drive: Drive<T>,
    make: &dyn Fn() -> Result<T, String>,
    trace: Option<TraceWriter>,
) -> Outcome {
    let target = match make() {
        Ok(t) => t,
        Err(e) => return Outcome { name: name.into(), abi_errors: vec![e], ..Outcome::default() },
    };
    let mut slot = Some((target, trace));
    let mut mk = |p: AppPolicy, ind: u32| {
        let (t, tr) = slot.take().expect("one rig per scenario");
        Rig::new(t, tr, p, ind)
    };
    drive(&mut mk).finish(name)
}

/// One seeded random interleaving against a fresh target from `make`.
pub fn run_interleaving<T: Candidate + 'static>(
    seed: u64,
    make: &dyn Fn() -> Result<T, String>,
    trace: Option<TraceWriter>,
) -> Outcome {
    let name = format!("seed {seed}");
    let target = match make() {
        Ok(t) => t,
        Err(e) => return Outcome { name, abi_errors: vec![e], ..Outcome::default() },
    };
    let mut rng = SplitMix64::new(seed);
    let ind_size = [0u32, 0, 16, 1000][rng.below(4) as usize];
    let buffered = (rng.below(4) == 0).then(|| (0..rng.below(3000) + 1).map(|i| (i * 7) as u8).collect());
    let mut policy = AppPolicy { keep_posted: 0, post_size: 4096, ..AppPolicy::default() };
    let mut r = Rig::with_state(target, trace, policy.clone(), ind_size, buffered);
    let (mut fin, mut ended) = (false, false);
    let steps = 20 + rng.below(60);
    for _ in 0..steps {
        match rng.below(26) {
            0..=5 => {
                let size = match rng.below(3) {
                    0 => 0,
                    1 => 1 + rng.below(4095) as usize,
                    _ => 4096 + rng.below(1 << 18) as usize,
                };
                let p = AppPolicy {
                    post_size: size,
                    mdls: 1 + rng.below(4) as usize,
                    no_push: rng.below(2) == 0,
                    prefilled: if rng.below(3) == 0 { 1 + rng.below(99) as usize } else { 0 },
                    ..policy.clone()
                };
                let n = 1 + rng.below(3);
                let chain: NblChain = (0..n).map(|_| r.h.new_request(&p)).collect();
                if let Err(e) = r.t.receive(r.now, C, chain, &mut r.h) {
                    r.failures.push(format!("post refused: {}", e.error));
                }
            }
            6..=13 if !fin && !ended => {
                let len = 1 + rng.below(65536) as usize;
                r.feed(len, rng.below(2) == 0);
            }
            14..=15 => {
                let ms = rng.below(1200);
                r.advance(ms);
            }
            16..=17 => {
                policy.indication = match rng.below(3) {
                    0 => IndicationPolicy::AcceptAll,
                    1 => IndicationPolicy::AcceptUpTo(1 + rng.below(4999) as usize),
                    _ => IndicationPolicy::Refuse,
                };
                r.h.set_policy(C, policy.clone());
            }
            18 => {
                policy.repost_in_completion = rng.below(2) == 0;
                r.h.set_policy(C, policy.clone());
            }
            19 => {
                policy.post_in_indication = rng.below(2) == 0;
                r.h.set_policy(C, policy.clone());
            }
            20 => {
                policy.return_in_upcall = rng.below(2) == 0;
                r.h.set_policy(C, policy.clone());
            }
            21..=22 => r.return_held(),
            23 if !fin && !ended => {
                fin = true;
                r.fin();
            }
            24 if !ended => {
                ended = true;
                r.rst();
            }
            25 if !ended => {
                ended = true;
                r.abort();
            }
            _ => {}
        }
    }
    r.h.set_policy(C, AppPolicy { repost_in_completion: false, post_in_indication: false, ..policy });
    r.advance(2000);
    r.finish(&name)
}
