use chimney::contract::InitiateOffload;
use chimney::contract::{ConnId, Delivery, DeliveryConfig, ReceiveInput, Verifier, VerifierMode};
use chimney::ndis::{NdisStatus, TcpOffloadEvent, TcpOffloadState};
use chimney::testkit::host::{AppHost, AppPolicy};
use chimney::Instant;

#[test]
fn posted_buffers_receive_the_stream() {
    let mut t = Verifier::new(Delivery::new(DeliveryConfig::default()), VerifierMode::Strict);
    let mut h = AppHost::new();
    let c = ConnId(1);
    h.set_policy(c, AppPolicy { post_size: 1000, keep_posted: 2, ..AppPolicy::default() });
    let now = Instant::ZERO;
    t.initiate_offload(now, c, TcpOffloadState::default(), &mut h).unwrap();
    h.top_up(now, c, &mut t).unwrap();
    let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    for chunk in data.chunks(700) {
        t.receive_data(now, c, chunk, false, &mut h).unwrap();
    }
    t.receive_data(now, c, &[], true, &mut h).unwrap();
    t.receive_fin(now, c, &mut h).unwrap();
    let seen = h.conn(c);
    assert_eq!(seen.stream, data);
    assert_eq!(seen.events, vec![TcpOffloadEvent::Disconnect]);
    assert_eq!(seen.with_status(NdisStatus::InvalidState), 2);
    assert!(t.core().violations().is_empty());
}
