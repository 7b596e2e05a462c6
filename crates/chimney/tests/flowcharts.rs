//! Table-driven tests for every branch of the three delivery flowcharts (spec §5), run
//! against `Delivery` under the strict verifier. Each row names the branch it drives.

use std::time::Duration;

use chimney::contract::InitiateOffload;
use chimney::contract::{ConnId, Delivery, DeliveryConfig, IndicateReturn, NestedCalls, OffloadTarget, ProtocolHost};
use chimney::contract::{ReceiveInput, Verifier, VerifierMode};
use chimney::ndis::{NblChain, NdisStatus, TcpCachedState, TcpOffloadEvent, TcpOffloadState};
use chimney::testkit::host::{AppHost, AppPolicy, IndicationPolicy};
use chimney::Instant;

const C: ConnId = ConnId(7);

/// One upcall as the host saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Up {
    /// A completion: (status, bytes) per NBL.
    Complete(Vec<(NdisStatus, usize)>),
    /// An indication of n bytes.
    Indicate(usize),
    Event(TcpOffloadEvent),
}

/// Records upcalls, then lets the application react.
struct Log {
    app: AppHost,
    ups: Vec<Up>,
}

impl ProtocolHost for Log {
    fn receive_complete(&mut self, conn: ConnId, nbls: NblChain, nested: &mut NestedCalls) {
        self.ups.push(Up::Complete(nbls.iter().map(|n| (n.status, n.tcp_offload_bytes_transferred())).collect()));
        self.app.receive_complete(conn, nbls, nested)
    }
    fn receive_indicate(
        &mut self,
        conn: ConnId,
        nbl: NblChain,
        s: NdisStatus,
        nested: &mut NestedCalls,
    ) -> IndicateReturn {
        self.ups.push(Up::Indicate(nbl.front().map_or(0, |n| n.net_buffer().data_length())));
        self.app.receive_indicate(conn, nbl, s, nested)
    }
    fn event_indicate(&mut self, conn: ConnId, e: TcpOffloadEvent, nested: &mut NestedCalls) {
        self.ups.push(Up::Event(e));
        self.app.event_indicate(conn, e, nested)
    }
}

struct Rig {
    t: Verifier<Delivery>,
    h: Log,
    now: Instant,
    sent: Vec<u8>,
}

impl Rig {
    fn new(policy: AppPolicy) -> Rig {
        Self::with(policy, 0)
    }

    fn with(policy: AppPolicy, indication_size: u32) -> Rig {
        Self::with_pool(policy, indication_size, DeliveryConfig::default().indication_pool)
    }

    fn with_pool(policy: AppPolicy, indication_size: u32, pool: usize) -> Rig {
        let cfg = DeliveryConfig { indication_pool: pool, ..DeliveryConfig::default() };
        let mut t = Verifier::new(Delivery::new(cfg), VerifierMode::Strict);
        let mut app = AppHost::new();
        app.set_policy(C, policy);
        let mut h = Log { app, ups: Vec::new() };
        let state = TcpOffloadState {
            cached: TcpCachedState { initial_rcv_wnd: 64 * 1024, rcv_indication_size: indication_size },
            ..TcpOffloadState::default()
        };
        t.initiate_offload(Instant::ZERO, C, state, &mut h).unwrap();
        Rig { t, h, now: Instant::ZERO, sent: Vec::new() }
    }

    fn post(&mut self) {
        self.h.app.top_up(self.now, C, &mut self.t).unwrap();
    }

    fn post_policy(&mut self, p: AppPolicy) {
        self.h.app.set_policy(C, p);
        let chain = self.h.app.top_up_chain(C);
        self.t.receive(self.now, C, chain, &mut self.h).unwrap();
    }

    fn feed(&mut self, n: usize, psh: bool) {
        let start = self.sent.len();
        let bytes: Vec<u8> = (start..start + n).map(|i| (i * 13 % 251) as u8).collect();
        self.sent.extend_from_slice(&bytes);
        self.t.receive_data(self.now, C, &bytes, psh, &mut self.h).unwrap();
    }

    fn advance(&mut self, ms: u64) {
        self.now = self.now + Duration::from_millis(ms);
        self.t.handle_timeout(self.now, &mut self.h);
    }

    fn take(&mut self) -> Vec<Up> {
        std::mem::take(&mut self.h.ups)
    }

    fn timer(&self) -> Option<Instant> {
        self.t.push_timer(C)
    }

    fn finish(mut self) {
        // Every stream ends exact: delivered + handed back == sent.
        let d = self.t.terminate_offload(self.now, C, &mut self.h).unwrap();
        let mut got = self.h.app.conn(C).stream;
        for n in d.buffered_data.iter() {
            n.net_buffer().copy_out(n.net_buffer().data_offset(), n.net_buffer().data_length(), &mut got);
        }
        assert_eq!(got, self.sent, "stream not exact");
        assert!(self.t.core().violations().is_empty());
    }
}

fn quiet(size: usize, no_push: bool) -> AppPolicy {
    AppPolicy { keep_posted: 1, post_size: size, no_push, repost_in_completion: false, ..AppPolicy::default() }
}

fn ok(n: usize) -> (NdisStatus, usize) {
    (NdisStatus::Success, n)
}

// ---- flowchart 1, event A: receive requests posted ------------------------------------------

fn a_post_while_busy_is_processed_after_the_call() {
    // The host re-posts from inside the completion; the target completes that request only
    // in a later, separate call (never nested).
    let mut r =
        Rig::new(AppPolicy { keep_posted: 1, post_size: 100, repost_in_completion: true, ..AppPolicy::default() });
    r.post();
    r.feed(250, false);
    assert_eq!(r.take(), vec![Up::Complete(vec![ok(100)]), Up::Complete(vec![ok(100)])]);
    r.finish();
}

fn a_post_with_nothing_buffered_only_queues() {
    let mut r = Rig::new(quiet(100, false));
    r.post();
    assert_eq!(r.take(), vec![]);
    assert_eq!(r.t.core().outstanding(C), 1);
    r.finish();
}

fn a_post_with_buffered_data_fills_at_once() {
    let mut r = Rig::new(AppPolicy { indication: IndicationPolicy::Refuse, ..quiet(100, true) });
    r.feed(150, false);
    assert_eq!(r.take(), vec![Up::Indicate(150)]);
    r.post_policy(quiet(100, true));
    // The post lifted the refusal: the leftover may be indicated again (R-IND-7).
    assert_eq!(r.take(), vec![Up::Complete(vec![ok(100)]), Up::Indicate(50)]);
    r.finish();
}

// ---- flowchart 1, event B: in-sequence data -------------------------------------------------

fn b_no_post_and_refused_data_buffered_is_appended_silently() {
    let mut r = Rig::new(AppPolicy { indication: IndicationPolicy::Refuse, ..quiet(100, true) });
    r.feed(10, false);
    r.feed(20, true);
    assert_eq!(r.take(), vec![Up::Indicate(10)]);
    r.finish();
}

fn b_no_post_and_nothing_buffered_indicates() {
    let mut r = Rig::new(quiet(100, true));
    r.feed(30, false);
    assert_eq!(r.take(), vec![Up::Indicate(30)]);
    r.finish();
}

// ---- FILL -------------------------------------------------------------------------------------

fn fill_completes_every_filled_request_in_one_call() {
    let mut r = Rig::new(AppPolicy { keep_posted: 3, ..quiet(100, true) });
    r.post();
    r.feed(300, false);
    assert_eq!(r.take(), vec![Up::Complete(vec![ok(100), ok(100), ok(100)])]);
    r.finish();
}

fn fill_batches_filled_requests_plus_one_pushed_partial_last() {
    let mut r = Rig::new(AppPolicy { keep_posted: 3, ..quiet(100, false) });
    r.post();
    r.feed(250, true);
    assert_eq!(r.take(), vec![Up::Complete(vec![ok(100), ok(100), ok(50)])]);
    r.finish();
}

fn fill_leftover_after_requests_run_out_is_indicated() {
    let mut r = Rig::new(quiet(100, true));
    r.post();
    r.feed(180, false);
    assert_eq!(r.take(), vec![Up::Complete(vec![ok(100)]), Up::Indicate(80)]);
    r.finish();
}

fn fill_with_no_partial_request_just_returns() {
    let mut r = Rig::new(quiet(100, false));
    r.post();
    r.feed(100, false);
    assert_eq!(r.take(), vec![Up::Complete(vec![ok(100)])]);
    assert_eq!(r.timer(), None);
    r.finish();
}

fn fill_partial_non_push_request_ignores_psh() {
    let mut r = Rig::new(quiet(100, true));
    r.post();
    r.feed(40, true);
    assert_eq!(r.take(), vec![]);
    assert_eq!(r.timer(), None);
    r.advance(2000);
    assert_eq!(r.take(), vec![]);
    r.feed(60, false);
    assert_eq!(r.take(), vec![Up::Complete(vec![ok(100)])]);
    r.finish();
}

fn fill_partial_push_request_completes_on_psh() {
    let mut r = Rig::new(quiet(100, false));
    r.post();
    r.feed(40, true);
    assert_eq!(r.take(), vec![Up::Complete(vec![ok(40)])]);
    assert_eq!(r.timer(), None);
    r.finish();
}

fn fill_partial_push_request_without_psh_starts_the_timer() {
    let mut r = Rig::new(quiet(100, false));
    r.post();
    r.feed(40, false);
    assert_eq!(r.take(), vec![]);
    assert_eq!(r.timer(), Some(Instant::from_millis(500)));
    r.finish();
}

fn fill_data_while_the_timer_runs_restarts_it() {
    let mut r = Rig::new(quiet(100, false));
    r.post();
    r.feed(10, false);
    r.advance(300);
    r.feed(10, false);
    assert_eq!(r.timer(), Some(Instant::from_millis(800)));
    r.advance(300);
    assert_eq!(r.take(), vec![]);
    r.advance(200);
    assert_eq!(r.take(), vec![Up::Complete(vec![ok(20)])]);
    r.finish();
}

// ---- flowchart 2: INDICATE ----------------------------------------------------------------------

fn ind_accepted_with_no_more_data_returns() {
    let mut r = Rig::new(quiet(100, true));
    r.feed(64, false);
    assert_eq!(r.take(), vec![Up::Indicate(64)]);
    assert_eq!(r.h.app.conn(C).bytes, 64);
    r.finish();
}

fn ind_accepted_then_requests_posted_inside_are_filled() {
    let p = AppPolicy { keep_posted: 0, post_size: 100, post_in_indication: true, ..quiet(100, true) };
    let mut r = Rig::with(p, 16);
    r.feed(116, false);
    assert_eq!(r.take(), vec![Up::Indicate(16), Up::Complete(vec![ok(100)])]);
    r.finish();
}

fn ind_accepted_and_more_data_indicates_the_next_chunk() {
    let mut r = Rig::with(quiet(100, true), 50);
    r.feed(120, false);
    assert_eq!(r.take(), vec![Up::Indicate(50), Up::Indicate(50), Up::Indicate(20)]);
    r.finish();
}

fn ind_refused_with_a_post_made_inside_fills_it() {
    let p = AppPolicy {
        keep_posted: 0,
        post_size: 100,
        post_in_indication: true,
        indication: IndicationPolicy::Refuse,
        ..quiet(100, true)
    };
    let mut r = Rig::new(p);
    r.feed(100, false);
    assert_eq!(r.take(), vec![Up::Indicate(100), Up::Complete(vec![ok(100)])]);
    r.finish();
}

fn ind_refused_with_no_post_keeps_the_data_until_a_post() {
    let mut r = Rig::new(AppPolicy { keep_posted: 0, indication: IndicationPolicy::Refuse, ..quiet(100, true) });
    r.feed(70, false);
    r.feed(30, false);
    assert_eq!(r.take(), vec![Up::Indicate(70)]);
    r.post_policy(quiet(60, true));
    // Buffered bytes fill the request; the rest may be indicated again after the post.
    assert_eq!(r.take(), vec![Up::Complete(vec![ok(60)]), Up::Indicate(40)]);
    r.finish();
}

fn ind_partially_accepted_keeps_the_rest() {
    let mut r =
        Rig::new(AppPolicy { keep_posted: 0, indication: IndicationPolicy::AcceptUpTo(25), ..quiet(100, true) });
    r.feed(100, false);
    assert_eq!(r.take(), vec![Up::Indicate(100)]);
    assert_eq!(r.h.app.conn(C).bytes, 25);
    r.post_policy(quiet(75, true));
    assert_eq!(r.take(), vec![Up::Complete(vec![ok(75)])]);
    r.finish();
}

fn ind_zero_byte_post_reenables_indication() {
    let mut r = Rig::new(AppPolicy { keep_posted: 0, indication: IndicationPolicy::Refuse, ..quiet(100, true) });
    r.feed(50, false);
    r.take();
    r.h.app.set_policy(C, AppPolicy { keep_posted: 0, ..quiet(0, true) });
    r.post_policy(AppPolicy { keep_posted: 1, ..quiet(0, true) });
    assert_eq!(r.take(), vec![Up::Complete(vec![ok(0)]), Up::Indicate(50)]);
    r.finish();
}

// ---- flowchart 3: push timer -------------------------------------------------------------------

fn timer_with_no_partial_request_does_nothing() {
    let mut r = Rig::new(quiet(100, false));
    r.post();
    r.feed(100, false);
    r.take();
    r.advance(1000);
    assert_eq!(r.take(), vec![]);
    r.finish();
}

fn timer_with_a_partial_non_push_request_does_nothing() {
    let mut r = Rig::new(quiet(100, true));
    r.post();
    r.feed(10, false);
    r.advance(1000);
    assert_eq!(r.take(), vec![]);
    r.finish();
}

fn timer_completes_a_partial_push_request() {
    let mut r = Rig::new(quiet(100, false));
    r.post();
    r.feed(10, false);
    r.advance(499);
    assert_eq!(r.take(), vec![]);
    r.advance(1);
    assert_eq!(r.take(), vec![Up::Complete(vec![ok(10)])]);
    assert_eq!(r.timer(), None);
    r.finish();
}

fn timer_starts_at_post_for_a_prefilled_push_request() {
    let mut r = Rig::new(AppPolicy { prefilled: 5, ..quiet(100, false) });
    r.post();
    assert_eq!(r.timer(), Some(Instant::from_millis(500)));
    r.advance(500);
    assert_eq!(r.take(), vec![Up::Complete(vec![ok(0)])]);
    r.finish();
}

// ---- FIN, RST, abort, terminate, offload ----------------------------------------------------------

fn fin_completes_the_partial_then_disconnects_then_invalid_state() {
    let mut r = Rig::new(AppPolicy { keep_posted: 2, ..quiet(100, true) });
    r.post();
    r.feed(30, false);
    r.t.receive_fin(r.now, C, &mut r.h).unwrap();
    assert_eq!(
        r.take(),
        vec![
            Up::Complete(vec![ok(30)]),
            Up::Event(TcpOffloadEvent::Disconnect),
            Up::Complete(vec![(NdisStatus::InvalidState, 0)])
        ]
    );
    r.post_policy(quiet(100, true));
    assert_eq!(r.take(), vec![Up::Complete(vec![(NdisStatus::InvalidState, 0)])]);
    r.finish();
}

fn fin_waits_for_refused_data_to_be_consumed() {
    let mut r = Rig::new(AppPolicy { keep_posted: 0, indication: IndicationPolicy::Refuse, ..quiet(100, true) });
    r.feed(40, false);
    r.t.receive_fin(r.now, C, &mut r.h).unwrap();
    assert_eq!(r.take(), vec![Up::Indicate(40)]);
    r.post_policy(quiet(100, true));
    assert_eq!(r.take(), vec![Up::Complete(vec![ok(40)]), Up::Event(TcpOffloadEvent::Disconnect)]);
    r.finish();
}

fn rst_aborts_with_the_bytes_already_placed() {
    let mut r = Rig::new(AppPolicy { keep_posted: 2, ..quiet(100, true) });
    r.post();
    r.feed(30, false);
    r.sent.truncate(30);
    r.t.receive_rst(r.now, C, &mut r.h).unwrap();
    assert_eq!(
        r.take(),
        vec![
            Up::Event(TcpOffloadEvent::Abort),
            Up::Complete(vec![(NdisStatus::RequestAborted, 30), (NdisStatus::RequestAborted, 0)])
        ]
    );
    r.post_policy(quiet(100, true));
    assert_eq!(r.take(), vec![Up::Complete(vec![(NdisStatus::RequestAborted, 0)])]);
    r.finish();
}

fn abortive_disconnect_completes_everything_aborted() {
    let mut r = Rig::new(AppPolicy { keep_posted: 1, indication: IndicationPolicy::Refuse, ..quiet(100, true) });
    r.post();
    r.feed(150, false);
    r.take();
    r.t.disconnect(r.now, C, chimney::ndis::DisconnectKind::Abortive, chimney::ndis::NblChain::new(), &mut r.h)
        .unwrap();
    r.sent.truncate(100);
    r.post_policy(quiet(100, true));
    assert_eq!(r.take(), vec![Up::Complete(vec![(NdisStatus::RequestAborted, 0)])]);
    r.finish();
}

fn terminate_completes_outstanding_and_returns_buffered_data() {
    let mut r = Rig::new(AppPolicy { keep_posted: 2, ..quiet(100, true) });
    r.post();
    r.feed(30, false);
    let d = r.t.terminate_offload(r.now, C, &mut r.h).unwrap();
    assert_eq!(r.take(), vec![Up::Complete(vec![(NdisStatus::Success, 30), (NdisStatus::UploadInProgress, 0)])]);
    assert_eq!(d.rcv_nxt, 30);
    assert!(d.buffered_data.is_empty());
    assert!(r.t.core().violations().is_empty());
}

fn offload_buffered_data_is_delivered_first_and_indicated_after_offload() {
    use chimney::ndis::{Mdl, NblId, NetBuffer, NetBufferList, PoolTag};
    let mut t = Verifier::new(Delivery::new(DeliveryConfig::default()), VerifierMode::Strict);
    let mut app = AppHost::new();
    app.set_policy(C, quiet(100, true));
    let mut h = Log { app, ups: Vec::new() };
    let mut state = TcpOffloadState::default();
    state.delegated.rcv_nxt = 1000;
    let first: Vec<u8> = (0..40u8).collect();
    let nbl = NetBufferList::new(NblId::new(PoolTag::Host, 77), NetBuffer::new(vec![Mdl::from_bytes(first.clone())]));
    state.delegated.buffered_data = NblChain::single(nbl);
    let back = t.initiate_offload(Instant::ZERO, C, state, &mut h).unwrap();
    assert_eq!(back.len(), 1, "host NBLs handed back");
    assert!(h.ups.is_empty(), "nothing indicated during the offload (R-IND-11)");
    assert_eq!(t.poll_timeout(), Some(Instant::ZERO));
    t.handle_timeout(Instant::ZERO, &mut h);
    assert_eq!(h.ups, vec![Up::Indicate(40)]);
    assert_eq!(h.app.conn(C).stream, first);
    let d = t.terminate_offload(Instant::ZERO, C, &mut h).unwrap();
    assert_eq!(d.rcv_nxt, 1000);
}

fn ind_pool_refilled_inside_its_own_upcall_still_wakes_later() {
    // One indication NBL. The host holds what it accepts and, later, returns it from inside
    // a completion on this very connection (the wake-up reaches the connection while it is
    // out of the table); after that the connection still indicates, waits for the pool
    // again, and is woken when the NBL comes back at top level.
    let hold = AppPolicy { keep_posted: 0, indication: IndicationPolicy::AcceptAll, ..quiet(100, true) };
    let mut r = Rig::with_pool(hold.clone(), 50, 1);
    r.feed(120, false);
    assert_eq!(r.take(), vec![Up::Indicate(50)]); // pool empty now: 70 bytes wait
    let p = AppPolicy { return_in_upcall: true, repost_in_completion: true, ..quiet(70, true) };
    r.post_policy(p.clone());
    assert_eq!(r.take(), vec![Up::Complete(vec![ok(70)])]); // returned + re-posted inside
    r.post_policy(AppPolicy { repost_in_completion: false, keep_posted: 0, ..p });
    r.feed(70, false);
    assert_eq!(r.take(), vec![Up::Complete(vec![ok(70)])]);
    r.feed(100, false);
    assert_eq!(r.take(), vec![Up::Indicate(50)]); // holds it: pool empty again, 50 wait
    let held = r.h.app.take_held();
    r.t.receive_return(r.now, held, &mut r.h);
    assert_eq!(r.take(), vec![Up::Indicate(50)], "the waiting connection was not woken");
    r.finish();
}

/// One `#[test]` per row, named after the branch it drives.
macro_rules! rows {
    ($($f:ident),* $(,)?) => {
        mod branch {
            $( #[test] fn $f() { super::$f() } )*
        }
    };
}

rows![
    a_post_while_busy_is_processed_after_the_call,
    a_post_with_nothing_buffered_only_queues,
    a_post_with_buffered_data_fills_at_once,
    b_no_post_and_refused_data_buffered_is_appended_silently,
    b_no_post_and_nothing_buffered_indicates,
    fill_completes_every_filled_request_in_one_call,
    fill_batches_filled_requests_plus_one_pushed_partial_last,
    fill_leftover_after_requests_run_out_is_indicated,
    fill_with_no_partial_request_just_returns,
    fill_partial_non_push_request_ignores_psh,
    fill_partial_push_request_completes_on_psh,
    fill_partial_push_request_without_psh_starts_the_timer,
    fill_data_while_the_timer_runs_restarts_it,
    ind_accepted_with_no_more_data_returns,
    ind_accepted_then_requests_posted_inside_are_filled,
    ind_accepted_and_more_data_indicates_the_next_chunk,
    ind_refused_with_a_post_made_inside_fills_it,
    ind_refused_with_no_post_keeps_the_data_until_a_post,
    ind_partially_accepted_keeps_the_rest,
    ind_zero_byte_post_reenables_indication,
    timer_with_no_partial_request_does_nothing,
    timer_with_a_partial_non_push_request_does_nothing,
    timer_completes_a_partial_push_request,
    timer_starts_at_post_for_a_prefilled_push_request,
    fin_completes_the_partial_then_disconnects_then_invalid_state,
    fin_waits_for_refused_data_to_be_consumed,
    rst_aborts_with_the_bytes_already_placed,
    abortive_disconnect_completes_everything_aborted,
    terminate_completes_outstanding_and_returns_buffered_data,
    offload_buffered_data_is_delivered_first_and_indicated_after_offload,
    ind_pool_refilled_inside_its_own_upcall_still_wakes_later,
];
