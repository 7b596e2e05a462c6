//! The delivery layer's edges that the flowchart tests do not reach, each under the strict
//! verifier: direct placement (room offered, bytes counted as placed, refused behind buffered
//! data, after FIN, at a zero-byte head), the windows it reports, the offload's refusals,
//! malformed and repeated disconnects, the state after a reset. Mutation testing found each
//! of these unchecked.

use chimney::contract::{
    ApiMisuse, ConnId, Delivery, DeliveryConfig, InitiateOffload, OffloadTarget, ReceiveInput, Verifier, VerifierMode,
};
use chimney::ndis::{
    DisconnectKind, Mdl, NblChain, NblId, NdisStatus, NetBuffer, NetBufferList, PoolTag, TcpCachedState,
    TcpConnectionState, TcpOffloadState,
};
use chimney::testkit::host::{AppHost, AppPolicy, IndicationPolicy};
use chimney::Instant;

const C: ConnId = ConnId(5);
const T0: Instant = Instant::ZERO;

fn rig(policy: AppPolicy, wnd: u32) -> (Verifier<Delivery>, AppHost) {
    let mut t = Verifier::new(Delivery::new(DeliveryConfig::default()), VerifierMode::Strict);
    let mut h = AppHost::new();
    h.set_policy(C, policy);
    let st = TcpOffloadState {
        cached: TcpCachedState { initial_rcv_wnd: wnd, rcv_indication_size: 0 },
        ..TcpOffloadState::default()
    };
    t.initiate_offload(T0, C, st, &mut h).unwrap();
    (t, h)
}

fn pattern(from: usize, n: usize) -> Vec<u8> {
    (from..from + n).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn direct_placement_fills_the_posted_requests_in_order() {
    let p = AppPolicy {
        keep_posted: 3,
        post_size: 100,
        mdls: 2,
        no_push: true,
        repost_in_completion: false,
        ..AppPolicy::default()
    };
    let (mut t, mut h) = rig(p.clone(), 65536);
    h.top_up(T0, C, &mut t).unwrap();
    h.set_policy(C, AppPolicy { keep_posted: 0, ..p });
    let bytes = pattern(0, 250);
    {
        let mut room: [&mut [u8]; 8] = Default::default();
        let k = t.placement_room(C, 250, &mut room);
        let lens: Vec<usize> = room[..k].iter().map(|s| s.len()).collect();
        assert_eq!(lens, vec![50, 50, 50, 50, 50], "two MDLs per request, the third request half");
        let mut at = 0;
        for s in room[..k].iter_mut() {
            let n = s.len();
            s.copy_from_slice(&bytes[at..at + n]);
            at += n;
        }
    }
    let space = t.receive_space(C);
    assert!(matches!(
        t.receive_placed(T0, C, 301, false, &mut h),
        Err(ApiMisuse::WindowExceeded { offered: 301, space: 300, .. })
    ));
    t.receive_placed(T0, C, 250, false, &mut h).unwrap();
    assert_eq!(h.conn(C).stream, bytes[..200], "the two full requests completed, in order");
    assert_eq!(t.receive_space(C), space - 250);
    // The rest of the room, then the terminate completes the partial request.
    let mut room: [&mut [u8]; 4] = Default::default();
    assert_eq!(t.placement_room(C, 1000, &mut room), 1);
    assert_eq!(room[0].len(), 50);
    let d = t.terminate_offload(T0, C, &mut h).unwrap();
    assert!(d.buffered_data.is_empty());
    assert_eq!(h.conn(C).stream, bytes);
}

#[test]
fn no_placement_behind_waiting_bytes_at_a_zero_byte_head_or_after_fin() {
    let refuse = AppPolicy { keep_posted: 0, indication: IndicationPolicy::Refuse, ..AppPolicy::default() };
    let (mut t, mut h) = rig(refuse, 65536);
    t.receive_data(T0, C, &pattern(0, 10), false, &mut h).unwrap();
    let mut room: [&mut [u8]; 4] = Default::default();
    assert_eq!(t.placement_room(C, 100, &mut room), 0);
    assert!(matches!(t.receive_placed(T0, C, 1, false, &mut h), Err(ApiMisuse::PlacementBehindBuffered(_))));

    let zero = AppPolicy { keep_posted: 1, post_size: 0, repost_in_completion: false, ..AppPolicy::default() };
    let (mut t, mut h) = rig(zero, 65536);
    h.top_up(T0, C, &mut t).unwrap();
    let mut room: [&mut [u8]; 4] = Default::default();
    assert_eq!(t.placement_room(C, 100, &mut room), 0, "a zero-byte request offers no room");
    let mut room: [&mut [u8]; 4] = Default::default();
    assert_eq!(t.placement_room(ConnId(77), 100, &mut room), 0, "nor does an unknown connection");

    let p = AppPolicy { keep_posted: 1, post_size: 100, repost_in_completion: false, ..AppPolicy::default() };
    let (mut t, mut h) = rig(p, 65536);
    h.top_up(T0, C, &mut t).unwrap();
    t.receive_fin(T0, C, &mut h).unwrap();
    let mut room: [&mut [u8]; 4] = Default::default();
    assert_eq!(t.placement_room(C, 100, &mut room), 0);
    assert!(matches!(t.receive_placed(T0, C, 1, false, &mut h), Err(ApiMisuse::NotReceiving(_))));
    assert_eq!((t.receive_window(C), t.receive_space(C)), (0, 0), "no window after the FIN");
}

#[test]
fn the_windows_follow_the_buffer_and_the_posts() {
    let refuse = AppPolicy { keep_posted: 0, indication: IndicationPolicy::Refuse, ..AppPolicy::default() };
    let (mut t, mut h) = rig(refuse, 4096);
    assert_eq!(t.receive_window(C), 4096);
    let slack = DeliveryConfig::default().slack;
    assert_eq!(t.receive_space(C), 4096 + slack);
    t.receive_data(T0, C, &pattern(0, 1000), false, &mut h).unwrap();
    assert_eq!(t.receive_window(C), 3096, "refused bytes held shrink the window");
    assert_eq!(t.receive_space(C), 3096 + slack);
    h.set_policy(
        C,
        AppPolicy {
            keep_posted: 2,
            post_size: 2000,
            no_push: true,
            repost_in_completion: false,
            ..AppPolicy::default()
        },
    );
    h.top_up(T0, C, &mut t).unwrap();
    // The 1000 bytes went into the first request; 1000 + 2000 bytes of room remain posted.
    assert_eq!(t.receive_window(C), 4096);
    assert_eq!(t.receive_space(C), 4096 + slack + 3000);
    t.receive_rst(T0, C, &mut h).unwrap();
    assert_eq!((t.receive_window(C), t.receive_space(C)), (0, 0), "no window after a reset");
    let d = t.terminate_offload(T0, C, &mut h).unwrap();
    assert_eq!(d.state, Some(TcpConnectionState::Closed), "after a reset the connection is closed");
}

#[test]
fn an_offload_without_room_for_its_buffered_data_fails() {
    let mut t = Verifier::new(Delivery::new(DeliveryConfig::default()), VerifierMode::Strict);
    let mut h = AppHost::new();
    let mut st = TcpOffloadState {
        cached: TcpCachedState { initial_rcv_wnd: 100, rcv_indication_size: 0 },
        ..TcpOffloadState::default()
    };
    let nbl =
        NetBufferList::new(NblId::new(PoolTag::Host, 1 << 30), NetBuffer::new(vec![Mdl::from_bytes(vec![1; 101])]));
    st.delegated.buffered_data = NblChain::single(nbl);
    let e = t.initiate_offload(T0, C, st, &mut h).unwrap_err();
    assert_eq!(e.status, NdisStatus::OffloadTcpRcvBuffer);
    assert_eq!(e.state.delegated.buffered_data.len(), 1, "the host's NBLs come back");
    // Exactly as much as the buffer holds is fine.
    let mut st = TcpOffloadState {
        cached: TcpCachedState { initial_rcv_wnd: 100, rcv_indication_size: 0 },
        ..TcpOffloadState::default()
    };
    let nbl =
        NetBufferList::new(NblId::new(PoolTag::Host, 1 << 31), NetBuffer::new(vec![Mdl::from_bytes(vec![1; 100])]));
    st.delegated.buffered_data = NblChain::single(nbl);
    assert_eq!(t.initiate_offload(T0, C, st, &mut h).unwrap().len(), 1);
    let max = DeliveryConfig::default().max_conn_id;
    let e = t.initiate_offload(T0, ConnId(max + 1), TcpOffloadState::default(), &mut h).unwrap_err();
    assert!(matches!(e.error, Some(ApiMisuse::ConnIdOutOfRange { .. })));
    assert!(
        t.initiate_offload(T0, ConnId(max), TcpOffloadState::default(), &mut h).is_ok(),
        "the limit itself is allowed"
    );
}

fn nbl(serial: u64, nbs: usize, bytes: usize) -> NetBufferList {
    let id = NblId::new(PoolTag::Host, (1 << 32) + serial);
    let first = NetBuffer::new(vec![Mdl::from_bytes(vec![9; bytes])]);
    let rest = (1..nbs).map(|_| NetBuffer::new(vec![Mdl::from_bytes(vec![9; bytes])])).collect();
    NetBufferList::with_net_buffers(id, first, rest)
}

#[test]
fn malformed_and_repeated_disconnects_are_refused() {
    let (mut t, mut h) = rig(AppPolicy { keep_posted: 0, ..AppPolicy::default() }, 65536);
    let two: NblChain = [nbl(1, 1, 0), nbl(2, 1, 0)].into_iter().collect();
    let r = t.disconnect(T0, C, DisconnectKind::Graceful, two, &mut h).unwrap_err();
    assert!(matches!(r.error, ApiMisuse::BadDisconnectNbl(_)) && r.nbls.len() == 2, "two NBLs");
    let r = t.disconnect(T0, C, DisconnectKind::Graceful, NblChain::single(nbl(3, 2, 1)), &mut h).unwrap_err();
    assert!(matches!(r.error, ApiMisuse::BadDisconnectNbl(_)), "two NBs");
    let r = t.disconnect(T0, C, DisconnectKind::Abortive, NblChain::single(nbl(4, 1, 5)), &mut h).unwrap_err();
    assert!(matches!(r.error, ApiMisuse::BadDisconnectNbl(_)), "an abortive disconnect with data");
    t.disconnect(T0, C, DisconnectKind::Graceful, NblChain::single(nbl(5, 1, 0)), &mut h).unwrap();
    let r = t.disconnect(T0, C, DisconnectKind::Graceful, NblChain::single(nbl(6, 1, 0)), &mut h).unwrap_err();
    assert!(matches!(r.error, ApiMisuse::SendClosed(_)), "a second graceful disconnect");
    let r = t.send(T0, C, NblChain::single(nbl(7, 1, 3)), &mut h).unwrap_err();
    assert!(matches!(r.error, ApiMisuse::SendClosed(_)), "a send after the graceful disconnect");
    let r = t.disconnect(T0, ConnId(99), DisconnectKind::Abortive, NblChain::new(), &mut h).unwrap_err();
    assert!(matches!(r.error, ApiMisuse::UnknownConnection(_)));
}

#[test]
fn a_graceful_disconnect_after_a_reset_fails_at_once() {
    let (mut t, mut h) = rig(AppPolicy { keep_posted: 0, ..AppPolicy::default() }, 65536);
    t.receive_rst(T0, C, &mut h).unwrap();
    t.disconnect(T0, C, DisconnectKind::Graceful, NblChain::single(nbl(8, 1, 0)), &mut h).unwrap();
    assert_eq!(h.conn(C).disconnect_status, Some(NdisStatus::RequestAborted));
    // An abortive one after the reset completes REQUEST_ABORTED too (the connection was gone).
    let (mut t, mut h) = rig(AppPolicy { keep_posted: 0, ..AppPolicy::default() }, 65536);
    t.disconnect(T0, C, DisconnectKind::Abortive, NblChain::new(), &mut h).unwrap();
    assert_eq!(h.conn(C).disconnect_status, Some(NdisStatus::Success));
}
