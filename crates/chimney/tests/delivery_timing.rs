//! When the delivery layer acts, under the strict verifier: the push timer (started by data,
//! restarted only by new data, placed or copied), the immediate timer ("kick") that picks up
//! what a bounded run left and is armed for nothing else, and the edges of direct placement
//! and of the send half that only a precise sequence of calls reaches. Mutation testing of
//! the layer found each of these unchecked.

use chimney::contract::{
    ApiMisuse, ConnId, Delivery, DeliveryConfig, InitiateOffload, OffloadTarget, ReceiveInput, SendInput, Verifier,
    VerifierMode,
};
use chimney::ndis::{
    DisconnectKind, Mdl, NblChain, NblId, NdisStatus, NetBuffer, NetBufferList, PoolTag, TcpCachedState,
    TcpOffloadState,
};
use chimney::testkit::host::{AppHost, AppPolicy, IndicationPolicy};
use chimney::Instant;
use core::time::Duration;

const C: ConnId = ConnId(4);
const T0: Instant = Instant::ZERO;

fn ms(n: u64) -> Instant {
    T0 + Duration::from_millis(n)
}

fn rig(policy: AppPolicy) -> (Verifier<Delivery>, AppHost) {
    let mut t = Verifier::new(Delivery::new(DeliveryConfig::default()), VerifierMode::Strict);
    let mut h = AppHost::new();
    h.set_policy(C, policy);
    let st = TcpOffloadState {
        cached: TcpCachedState { initial_rcv_wnd: 65536, rcv_indication_size: 0 },
        ..TcpOffloadState::default()
    };
    t.initiate_offload(T0, C, st, &mut h).unwrap();
    (t, h)
}

fn bytes(from: usize, n: usize) -> Vec<u8> {
    (from..from + n).map(|i| (i * 13 % 251) as u8).collect()
}

/// Requests of `size` bytes, `keep` of them, none re-posted from inside a completion.
fn posting(keep: usize, size: usize) -> AppPolicy {
    AppPolicy { keep_posted: keep, post_size: size, repost_in_completion: false, ..AppPolicy::default() }
}

/// Places `data` at the front of the posted room and tells the layer.
fn place(t: &mut Verifier<Delivery>, h: &mut AppHost, now: Instant, data: &[u8]) -> Result<(), ApiMisuse> {
    {
        let mut room: [&mut [u8]; 8] = Default::default();
        let k = t.placement_room(C, data.len(), &mut room);
        let mut at = 0;
        for s in room[..k].iter_mut() {
            let n = s.len();
            s.copy_from_slice(&data[at..at + n]);
            at += n;
        }
    }
    t.receive_placed(now, C, data.len(), false, h)
}

#[test]
fn a_post_does_not_restart_the_push_timer_new_data_does() {
    let (mut t, mut h) = rig(posting(1, 100));
    h.top_up(T0, C, &mut t).unwrap();
    let d = bytes(0, 10);
    t.receive_data(T0, C, &d, false, &mut h).unwrap();
    assert_eq!(t.push_timer(C), Some(ms(500)), "a partially filled request starts the timer");
    // A second request posted later changes nothing about the first one's deadline.
    h.set_policy(C, posting(2, 100));
    h.top_up(ms(300), C, &mut t).unwrap();
    assert_eq!(t.push_timer(C), Some(ms(500)), "a post is not data");
    t.handle_timeout(ms(499), &mut h);
    assert!(h.conn(C).stream.is_empty());
    t.handle_timeout(ms(500), &mut h);
    assert_eq!(h.conn(C).stream, d, "the timer completed the partial request on time");
    // New data in the next request starts it again, and more new data restarts it.
    t.receive_data(ms(600), C, &bytes(10, 5), false, &mut h).unwrap();
    assert_eq!(t.push_timer(C), Some(ms(1100)));
    t.receive_data(ms(700), C, &bytes(15, 5), false, &mut h).unwrap();
    assert_eq!(t.push_timer(C), Some(ms(1200)));
    t.handle_timeout(ms(1200), &mut h);
    assert_eq!(h.conn(C).stream, bytes(0, 20));
    t.terminate_offload(ms(1300), C, &mut h).unwrap();
}

#[test]
fn placed_bytes_restart_the_push_timer_and_an_empty_placement_does_not() {
    let (mut t, mut h) = rig(posting(1, 100));
    h.top_up(T0, C, &mut t).unwrap();
    place(&mut t, &mut h, T0, &bytes(0, 10)).unwrap();
    assert_eq!(t.push_timer(C), Some(ms(500)));
    place(&mut t, &mut h, ms(300), &[]).unwrap();
    assert_eq!(t.push_timer(C), Some(ms(500)), "nothing placed: the deadline stands");
    place(&mut t, &mut h, ms(400), &bytes(10, 10)).unwrap();
    assert_eq!(t.push_timer(C), Some(ms(900)), "placed bytes are new data");
    t.handle_timeout(ms(900), &mut h);
    assert_eq!(h.conn(C).stream, bytes(0, 20));
    t.terminate_offload(ms(1000), C, &mut h).unwrap();
}

#[test]
fn placement_is_bounded_by_the_room_exactly() {
    let (mut t, mut h) = rig(AppPolicy { no_push: true, ..posting(1, 100) });
    h.top_up(T0, C, &mut t).unwrap();
    h.set_policy(C, AppPolicy { no_push: true, ..posting(0, 100) });
    let mut room: [&mut [u8]; 4] = Default::default();
    assert_eq!(t.placement_room(C, 0, &mut room), 0, "no room asked, none offered");
    place(&mut t, &mut h, T0, &bytes(0, 50)).unwrap();
    let r = t.receive_placed(T0, C, 51, false, &mut h);
    assert!(matches!(r, Err(ApiMisuse::WindowExceeded { offered: 51, space: 50, .. })), "{r:?}");
    place(&mut t, &mut h, T0, &bytes(50, 50)).unwrap();
    assert_eq!(h.conn(C).stream, bytes(0, 100), "the exact rest of the room fills the request");
    t.terminate_offload(T0, C, &mut h).unwrap();
}

#[test]
fn a_zero_byte_head_hides_the_room_behind_it() {
    let (mut t, mut h) = rig(posting(0, 100));
    h.post_zero_byte(T0, C, &mut t).unwrap();
    h.set_policy(C, posting(2, 100));
    h.top_up(T0, C, &mut t).unwrap();
    let mut room: [&mut [u8]; 4] = Default::default();
    assert_eq!(t.placement_room(C, 100, &mut room), 0, "the zero-byte request is the fill path's");
    let r = t.receive_placed(T0, C, 1, false, &mut h);
    assert!(matches!(r, Err(ApiMisuse::WindowExceeded { space: 0, .. })), "{r:?}");
    // Copied data completes the zero-byte request and lands in the one behind it.
    t.receive_data(T0, C, &bytes(0, 100), false, &mut h).unwrap();
    assert_eq!(h.conn(C).stream, bytes(0, 100));
    t.terminate_offload(T0, C, &mut h).unwrap();
}

#[test]
fn no_placement_after_a_reset_or_behind_a_fin_that_waits() {
    let (mut t, mut h) = rig(posting(1, 100));
    h.top_up(T0, C, &mut t).unwrap();
    t.receive_rst(T0, C, &mut h).unwrap();
    let r = t.receive_placed(T0, C, 1, false, &mut h);
    assert!(matches!(r, Err(ApiMisuse::NotReceiving(_))), "{r:?}");

    // Refused bytes wait, and the FIN behind them: the stream is over for placement.
    let (mut t, mut h) = rig(AppPolicy { indication: IndicationPolicy::Refuse, ..posting(0, 100) });
    t.receive_data(T0, C, &bytes(0, 10), false, &mut h).unwrap();
    t.receive_fin(T0, C, &mut h).unwrap();
    let r = t.receive_placed(T0, C, 1, false, &mut h);
    assert!(matches!(r, Err(ApiMisuse::NotReceiving(_))), "{r:?}");
    let d = t.terminate_offload(T0, C, &mut h).unwrap();
    h.hold(d.buffered_data);
    h.return_held(T0, &mut t);
}

#[test]
fn a_refused_indication_arms_no_timer() {
    // Nothing posted: the refusal blocks indications until the host posts.
    let (mut t, mut h) = rig(AppPolicy { indication: IndicationPolicy::Refuse, ..posting(0, 100) });
    t.receive_data(T0, C, &bytes(0, 10), false, &mut h).unwrap();
    assert_eq!(h.conn(C).refusals, 1);
    assert_eq!(t.inner().stats().indications_refused, 1, "the refusal is counted");
    assert_eq!(t.poll_timeout(), None, "nothing to do until the host posts");
    // A zero-byte request completes on the waiting data, then the indication is refused.
    let (mut t, mut h) = rig(AppPolicy { indication: IndicationPolicy::Refuse, ..posting(1, 0) });
    h.top_up(T0, C, &mut t).unwrap();
    t.receive_data(T0, C, &bytes(0, 10), false, &mut h).unwrap();
    assert_eq!((h.conn(C).completions, h.conn(C).refusals), (1, 1));
    assert_eq!(t.poll_timeout(), None, "the refusal blocks indications: nothing to kick");
    t.handle_timeout(ms(1000), &mut h);
    assert_eq!((h.conn(C).completions, h.conn(C).refusals), (1, 1));
    // A post lifts the block: the request (the host's recycled zero-byte one) completes on
    // the waiting data, and the data is indicated again.
    h.top_up(ms(1000), C, &mut t).unwrap();
    assert_eq!((h.conn(C).completions, h.conn(C).refusals), (2, 2));
    let d = t.terminate_offload(ms(1000), C, &mut h).unwrap();
    assert_eq!(d.buffered_data.iter().map(|n| n.net_buffer().data_length()).sum::<usize>(), 10, "nothing lost");
    h.hold(d.buffered_data);
    h.return_held(ms(1000), &mut t);
}

#[test]
fn a_host_that_refuses_and_reposts_inside_every_upcall_is_served_once_per_timer_call() {
    // Zero-byte requests re-posted inside their completions, indications refused: every
    // run completes one round and hands the rest to an immediate timer.
    let p = AppPolicy { indication: IndicationPolicy::Refuse, repost_in_completion: true, ..posting(1, 0) };
    let (mut t, mut h) = rig(p);
    h.top_up(T0, C, &mut t).unwrap();
    t.receive_data(T0, C, &bytes(0, 10), false, &mut h).unwrap();
    let (c, r) = (h.conn(C).completions, h.conn(C).refusals);
    assert!(c >= 1 && r >= 1, "completions {c}, refusals {r}");
    assert_eq!(t.poll_timeout(), Some(T0), "data waits behind a fresh zero-byte request: kick");
    t.handle_timeout(T0, &mut h);
    assert!(h.conn(C).completions > c, "the kick told the host again");
    assert_eq!(t.poll_timeout(), Some(T0));
    t.terminate_offload(T0, C, &mut h).unwrap();

    // The same with the zero-byte request posted inside each refused indication.
    let p = AppPolicy { indication: IndicationPolicy::Refuse, post_in_indication: true, ..posting(0, 0) };
    let (mut t, mut h) = rig(p);
    t.receive_data(T0, C, &bytes(0, 10), false, &mut h).unwrap();
    let r = h.conn(C).refusals;
    assert!((1..=2).contains(&r), "one call, a bounded number of indications: {r}");
    assert_eq!(t.poll_timeout(), Some(T0));
    for _ in 0..3 {
        t.handle_timeout(T0, &mut h);
    }
    assert!(h.conn(C).refusals > r && h.conn(C).refusals <= r + 6, "{}", h.conn(C).refusals);
    let d = t.terminate_offload(T0, C, &mut h).unwrap();
    h.hold(d.buffered_data);
    h.return_held(T0, &mut t);
}

fn send_nbl(serial: u64, len: usize) -> NblChain {
    let id = NblId::new(PoolTag::Host, (1 << 40) + serial);
    NblChain::single(NetBufferList::with_net_buffers(
        id,
        NetBuffer::new(vec![Mdl::from_bytes(vec![5; len])]),
        Vec::new(),
    ))
}

#[test]
fn sends_after_a_reset_fail_at_once_and_after_its_disconnect_are_refused() {
    let (mut t, mut h) = rig(posting(0, 100));
    t.receive_rst(T0, C, &mut h).unwrap();
    assert_eq!(t.send(T0, C, send_nbl(1, 30), &mut h).unwrap(), NdisStatus::Pending);
    assert_eq!(h.conn(C).send_statuses, vec![(NdisStatus::RequestAborted, 1)], "failed within the call");
    t.disconnect(T0, C, DisconnectKind::Graceful, send_nbl(2, 0), &mut h).unwrap();
    assert_eq!(h.conn(C).disconnect_status, Some(NdisStatus::RequestAborted));
    let r = t.send(T0, C, send_nbl(3, 30), &mut h).unwrap_err();
    assert!(matches!(r.error, ApiMisuse::SendClosed(_)), "the host closed its half: {:?}", r.error);
}

#[test]
fn send_data_handed_over_at_offload_is_the_first_of_the_stream() {
    let mut t = Verifier::new(Delivery::new(DeliveryConfig::default()), VerifierMode::Strict);
    let mut h = AppHost::new();
    h.set_policy(C, posting(0, 100));
    let mut st = TcpOffloadState::default();
    st.delegated.send_data = send_nbl(4, 40);
    t.initiate_offload(T0, C, st, &mut h).unwrap();
    let s = t.send_stream(C);
    assert_eq!((s.acked, s.posted), (0, 40), "the delegated bytes are queued");
    t.send_acked(T0, C, 40, &mut h).unwrap();
    assert_eq!(h.conn(C).send_statuses, vec![(NdisStatus::Success, 1)]);
    // Nothing delegated: nothing queued.
    let (t, _h) = rig(posting(0, 100));
    assert_eq!(t.send_stream(C).posted, 0);
}

#[test]
fn a_zero_byte_request_reposted_inside_its_completion_arms_no_timer_once_the_data_is_taken() {
    // The zero-byte request completes on the data, the host posts another inside the
    // completion, and the data is then indicated and taken: nothing is left to do.
    let p = AppPolicy { repost_in_completion: true, ..posting(1, 0) };
    let (mut t, mut h) = rig(p);
    h.top_up(T0, C, &mut t).unwrap();
    t.receive_data(T0, C, &bytes(0, 10), false, &mut h).unwrap();
    assert_eq!((h.conn(C).completions, h.conn(C).indications), (1, 1));
    assert_eq!(h.conn(C).stream, bytes(0, 10));
    assert_eq!(t.poll_timeout(), None, "no data waits: no immediate timer");
    h.return_held(T0, &mut t);
    t.terminate_offload(T0, C, &mut h).unwrap();
}

#[test]
fn an_empty_indication_pool_is_counted_and_the_data_waits_for_a_return() {
    let cfg = DeliveryConfig { indication_pool: 1, ..DeliveryConfig::default() };
    let mut t = Verifier::new(Delivery::new(cfg), VerifierMode::Strict);
    let mut h = AppHost::new();
    let (a, b) = (ConnId(1), ConnId(2));
    for c in [a, b] {
        h.set_policy(c, posting(0, 0));
        t.initiate_offload(T0, c, TcpOffloadState::default(), &mut h).unwrap();
    }
    t.receive_data(T0, a, &bytes(0, 10), false, &mut h).unwrap();
    t.receive_data(T0, b, &bytes(10, 10), false, &mut h).unwrap();
    assert_eq!(h.conn(b).indications, 0, "the only indication NBL is with the host");
    assert_eq!(t.inner().stats().pool_empty, 1);
    // The host returns it: the waiting connection is indicated at once.
    h.return_held(T0, &mut t);
    assert_eq!(h.conn(b).stream, bytes(10, 10));
    h.return_held(T0, &mut t);
    for c in [a, b] {
        t.terminate_offload(T0, c, &mut h).unwrap();
    }
}

/// A host that, inside a completion on one connection, posts a send on another.
struct CrossSend {
    app: AppHost,
    to: ConnId,
    sent: bool,
}

impl chimney::contract::ProtocolHost for CrossSend {
    fn receive_complete(&mut self, conn: ConnId, nbls: NblChain, nested: &mut chimney::contract::NestedCalls) {
        if !self.sent {
            self.sent = true;
            nested.post_send(self.to, send_nbl(9, 20));
        }
        self.app.receive_complete(conn, nbls, nested)
    }
    fn receive_indicate(
        &mut self,
        conn: ConnId,
        nbl: NblChain,
        s: NdisStatus,
        n: &mut chimney::contract::NestedCalls,
    ) -> chimney::contract::IndicateReturn {
        self.app.receive_indicate(conn, nbl, s, n)
    }
    fn event_indicate(
        &mut self,
        conn: ConnId,
        e: chimney::ndis::TcpOffloadEvent,
        n: &mut chimney::contract::NestedCalls,
    ) {
        self.app.event_indicate(conn, e, n)
    }
    fn send_complete(&mut self, conn: ConnId, nbls: NblChain, n: &mut chimney::contract::NestedCalls) {
        self.app.send_complete(conn, nbls, n)
    }
}

#[test]
fn a_send_made_inside_an_upcall_on_a_reset_connection_fails_at_once() {
    let mut t = Verifier::new(Delivery::new(DeliveryConfig::default()), VerifierMode::Strict);
    let (a, b) = (ConnId(1), ConnId(2));
    let mut h = CrossSend { app: AppHost::new(), to: b, sent: false };
    for c in [a, b] {
        h.app.set_policy(c, AppPolicy { no_push: false, ..posting(1, 10) });
        t.initiate_offload(T0, c, TcpOffloadState::default(), &mut h).unwrap();
    }
    t.receive_rst(T0, b, &mut h).unwrap();
    h.app.top_up(T0, a, &mut t).unwrap();
    t.receive_data(T0, a, &bytes(0, 10), true, &mut h).unwrap();
    assert!(h.sent);
    assert_eq!(
        h.app.conn(b).send_statuses,
        vec![(NdisStatus::RequestAborted, 1)],
        "the reset connection's send failed within the call that took it"
    );
    for c in [a, b] {
        t.terminate_offload(T0, c, &mut h).unwrap();
    }
}

#[test]
fn placed_bytes_are_read_back_across_requests() {
    // The verifier reads what the driver placed through `placed_bytes`: a placement that
    // starts in a partly placed request and ends in the next is read from both.
    let (mut t, mut h) = rig(AppPolicy { no_push: true, ..posting(2, 100) });
    h.top_up(T0, C, &mut t).unwrap();
    h.set_policy(C, AppPolicy { no_push: true, ..posting(0, 100) });
    place(&mut t, &mut h, T0, &bytes(0, 50)).unwrap();
    place(&mut t, &mut h, T0, &bytes(50, 100)).unwrap();
    assert_eq!(h.conn(C).stream, bytes(0, 100), "the first request full, in order");
    t.terminate_offload(T0, C, &mut h).unwrap();
    assert_eq!(h.conn(C).stream, bytes(0, 150));
}

#[test]
fn a_second_fin_and_a_fin_after_a_reset_are_refused() {
    let (mut t, mut h) = rig(AppPolicy { indication: IndicationPolicy::Refuse, ..posting(0, 100) });
    t.receive_data(T0, C, &bytes(0, 10), false, &mut h).unwrap();
    t.receive_fin(T0, C, &mut h).unwrap();
    assert!(matches!(t.receive_fin(T0, C, &mut h), Err(ApiMisuse::NotReceiving(_))), "FIN twice");
    let d = t.terminate_offload(T0, C, &mut h).unwrap();
    h.hold(d.buffered_data);
    h.return_held(T0, &mut t);
    let (mut t, mut h) = rig(posting(0, 100));
    t.receive_rst(T0, C, &mut h).unwrap();
    assert!(matches!(t.receive_fin(T0, C, &mut h), Err(ApiMisuse::NotReceiving(_))), "FIN after RST");
}
