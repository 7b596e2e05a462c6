//! Posted buffers that follow demand ([`PostGrowth`]), under the strict verifier: a short
//! connection never gets a posted buffer (its bytes are indicated and consumed from the
//! target's pool), a bulk one gets requests after its first bytes and larger ones each time
//! one comes back full, up to the policy's size; completed requests are reused by the next
//! connection instead of allocated again.

use chimney::contract::{
    ConnId, Delivery, DeliveryConfig, InitiateOffload, OffloadTarget, ReceiveInput, Verifier, VerifierMode,
};
use chimney::ndis::TcpOffloadState;
use chimney::testkit::host::{AppHost, AppPolicy, PostGrowth};
use chimney::Instant;

const T0: Instant = Instant::ZERO;

fn growing() -> AppPolicy {
    AppPolicy {
        keep_posted: 4,
        post_size: 256 << 10,
        grow: Some(PostGrowth { post_after: 128 << 10, first_size: 64 << 10 }),
        ..AppPolicy::default()
    }
}

fn bytes(from: usize, n: usize) -> Vec<u8> {
    (from..from + n).map(|i| (i * 31 % 253) as u8).collect()
}

/// Feeds `total` bytes in `seg`-byte segments (PSH on every eighth) to `c`.
fn feed(t: &mut Verifier<Delivery>, h: &mut AppHost, c: ConnId, total: usize, seg: usize) -> Vec<u8> {
    let data = bytes(0, total);
    for (i, chunk) in data.chunks(seg).enumerate() {
        t.receive_data(T0, c, chunk, i % 8 == 7, h).unwrap();
        h.return_held(T0, t);
    }
    data
}

#[test]
fn a_short_connection_never_posts_a_bulk_one_grows_to_the_full_size() {
    let mut t = Verifier::new(Delivery::new(DeliveryConfig::default()), VerifierMode::Strict);
    let mut h = AppHost::new();
    let (short, bulk) = (ConnId(1), ConnId(2));
    for c in [short, bulk] {
        h.set_policy(c, growing());
        t.initiate_offload(T0, c, TcpOffloadState::default(), &mut h).unwrap();
        h.top_up(T0, c, &mut t).unwrap();
    }
    let d = feed(&mut t, &mut h, short, 64 << 10, 1448);
    let s = h.conn(short);
    assert_eq!(s.stream, d);
    assert_eq!((s.completions, s.outstanding, s.post_size_now), (0, 0, 0), "no posted buffer: {s:?}");
    assert!(s.indications > 0);

    let d = feed(&mut t, &mut h, bulk, 4 << 20, 16 << 10);
    t.receive_fin(T0, bulk, &mut h).unwrap();
    let b = h.conn(bulk);
    assert_eq!(b.stream, d, "the stream exact across indications and posts");
    assert_eq!(b.post_size_now, 256 << 10, "grew to the policy's size");
    assert!(b.completions >= 12, "most of 4 MiB through posted requests: {}", b.completions);
    assert!(b.indications < 40, "indications only at the start: {}", b.indications);
    for c in [short, bulk] {
        t.terminate_offload(T0, c, &mut h).unwrap();
        h.forget(c);
    }
    assert!(t.inner().stats().indications > 0);
}

#[test]
fn completed_requests_are_reused_by_the_next_connection() {
    let mut t = Verifier::new(Delivery::new(DeliveryConfig::default()), VerifierMode::Strict);
    let mut h = AppHost::new();
    let fixed = AppPolicy { keep_posted: 2, post_size: 32 << 10, repost_in_completion: false, ..AppPolicy::default() };
    let (a, b) = (ConnId(1), ConnId(2));
    h.set_policy(a, fixed.clone());
    t.initiate_offload(T0, a, TcpOffloadState::default(), &mut h).unwrap();
    h.top_up(T0, a, &mut t).unwrap();
    feed(&mut t, &mut h, a, 64 << 10, 8 << 10);
    assert_eq!(h.idle_bytes(), 64 << 10, "both requests came back full and wait for reuse");
    t.terminate_offload(T0, a, &mut h).unwrap();
    h.forget(a);
    h.set_policy(b, fixed);
    t.initiate_offload(T0, b, TcpOffloadState::default(), &mut h).unwrap();
    h.top_up(T0, b, &mut t).unwrap();
    assert_eq!(h.idle_bytes(), 0, "the next connection posted them again");
    let d = feed(&mut t, &mut h, b, 64 << 10, 8 << 10);
    assert_eq!(h.conn(b).stream, d, "reused buffers carry only the new stream");
    t.terminate_offload(T0, b, &mut h).unwrap();
}

#[test]
fn an_echo_with_its_send_window_full_posts_nothing() {
    // The refusal of an echo whose sends are not acknowledged is backpressure: it must not
    // start posts (they would take data the echo cannot send back).
    use chimney::testkit::host::SendPolicy;
    let mut t = Verifier::new(Delivery::new(DeliveryConfig::default()), VerifierMode::Strict);
    let mut h = AppHost::new();
    let c = ConnId(3);
    h.set_policy(c, AppPolicy { send: SendPolicy::Echo, send_window: 4096, ..growing() });
    t.initiate_offload(T0, c, TcpOffloadState::default(), &mut h).unwrap();
    t.receive_data(T0, c, &bytes(0, 8192), false, &mut h).unwrap();
    h.return_held(T0, &mut t);
    assert_eq!(h.conn(c).bytes, 8192, "taken while the window had room");
    t.receive_data(T0, c, &bytes(8192, 1000), false, &mut h).unwrap();
    let s = h.conn(c);
    assert_eq!((s.bytes, s.refusals), (8192, 1), "refused: the echo's sends are outstanding");
    assert_eq!((s.outstanding, s.post_size_now), (0, 0), "and no request posted: {s:?}");
    let d = t.terminate_offload(T0, c, &mut h).unwrap();
    h.hold(d.buffered_data);
    h.return_held(T0, &mut t);
}
