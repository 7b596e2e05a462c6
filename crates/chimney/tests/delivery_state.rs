//! What the delivery layer reports about itself (backlog, connections, its one-line state) and
//! its bound on zero-byte completions per run, under the strict verifier.

use chimney::contract::{
    ConnId, Delivery, DeliveryConfig, IndicateReturn, InitiateOffload, NestedCalls, OffloadTarget, ProtocolHost,
    ReceiveInput, Verifier, VerifierMode,
};
use chimney::ndis::{NblChain, NdisStatus, TcpOffloadEvent, TcpOffloadState};
use chimney::testkit::host::{AppHost, AppPolicy, IndicationPolicy};
use chimney::Instant;

const C: ConnId = ConnId(3);
const T0: Instant = Instant::ZERO;

/// The application, and the size of every completion batch it got.
struct Counting {
    app: AppHost,
    batches: Vec<usize>,
}

impl ProtocolHost for Counting {
    fn receive_complete(&mut self, conn: ConnId, nbls: NblChain, nested: &mut NestedCalls) {
        self.batches.push(nbls.len());
        self.app.receive_complete(conn, nbls, nested)
    }
    fn receive_indicate(&mut self, conn: ConnId, nbl: NblChain, s: NdisStatus, n: &mut NestedCalls) -> IndicateReturn {
        self.app.receive_indicate(conn, nbl, s, n)
    }
    fn event_indicate(&mut self, conn: ConnId, e: TcpOffloadEvent, n: &mut NestedCalls) {
        self.app.event_indicate(conn, e, n)
    }
}

fn offloaded(policy: AppPolicy) -> (Verifier<Delivery>, Counting) {
    let mut t = Verifier::new(Delivery::new(DeliveryConfig::default()), VerifierMode::Strict);
    let mut h = Counting { app: AppHost::new(), batches: Vec::new() };
    h.app.set_policy(C, policy);
    t.initiate_offload(T0, C, TcpOffloadState::default(), &mut h).unwrap();
    (t, h)
}

#[test]
fn the_layer_reports_its_backlog_connections_and_state() {
    let refuse = AppPolicy { keep_posted: 0, indication: IndicationPolicy::Refuse, ..AppPolicy::default() };
    let (mut t, mut h) = offloaded(refuse);
    assert_eq!(t.inner().connections(), 1);
    assert_eq!(t.inner().receive_backlog(C), 0);
    t.receive_data(T0, C, &[7; 70], false, &mut h).unwrap();
    assert_eq!(t.inner().receive_backlog(C), 70, "refused bytes stay with the target");
    let line = t.inner().describe(C);
    assert!(line.contains("buffered=70") && line.contains("blocked=true"), "{line}");
    assert!(t.inner().describe(ConnId(9)).contains("not offloaded"));
    assert!(Delivery::conn_size() > 64, "a connection's state is more than a few words");
    let d = t.terminate_offload(T0, C, &mut h).unwrap();
    assert_eq!(d.buffered_data.iter().map(|n| n.net_buffer().data_length()).sum::<usize>(), 70);
    h.app.hold(d.buffered_data);
    h.app.return_held(T0, &mut t);
    assert_eq!(t.inner().connections(), 0);
    assert_eq!(t.inner().receive_backlog(C), 0);
}

#[test]
fn zero_byte_completions_per_run_are_bounded() {
    // 100 zero-byte requests wait; data arrives: one run completes 64 of them (then indicates
    // the data, since zero-byte requests hold no room); the next data completes the rest.
    let p = AppPolicy { keep_posted: 100, post_size: 0, ..AppPolicy::default() };
    let (mut t, mut h) = offloaded(p);
    h.app.top_up(T0, C, &mut t).unwrap();
    assert_eq!(t.core().outstanding(C), 100);
    h.app.set_policy(C, AppPolicy { keep_posted: 0, ..AppPolicy::default() });
    t.receive_data(T0, C, &[1; 10], false, &mut h).unwrap();
    assert_eq!(h.batches, vec![64], "one run completes at most 64 zero-byte requests");
    assert_eq!(h.app.conn(C).bytes, 10, "and the data is indicated in the same run");
    h.app.return_held(T0, &mut t);
    t.receive_data(T0, C, &[2; 10], false, &mut h).unwrap();
    assert_eq!(h.batches, vec![64, 36]);
    assert_eq!(t.core().outstanding(C), 0);
}

/// A host that, inside its first completion, posts on a connection that is not offloaded and
/// sends on one that is not either.
struct Stray {
    app: AppHost,
    done: bool,
}

impl ProtocolHost for Stray {
    fn receive_complete(&mut self, conn: ConnId, nbls: NblChain, nested: &mut NestedCalls) {
        if !self.done {
            self.done = true;
            let p = AppPolicy { post_size: 10, ..AppPolicy::default() };
            nested.post_receive(ConnId(42), NblChain::single(self.app.new_request(&p)));
            nested.post_receive(ConnId(43), NblChain::single(self.app.new_request(&p)));
        }
        self.app.receive_complete(conn, nbls, nested)
    }
    fn receive_indicate(&mut self, conn: ConnId, nbl: NblChain, s: NdisStatus, n: &mut NestedCalls) -> IndicateReturn {
        self.app.receive_indicate(conn, nbl, s, n)
    }
    fn event_indicate(&mut self, conn: ConnId, e: TcpOffloadEvent, n: &mut NestedCalls) {
        self.app.event_indicate(conn, e, n)
    }
}

#[test]
fn posts_made_inside_an_upcall_for_unknown_connections_are_handed_back_and_counted() {
    let mut t = Delivery::new(DeliveryConfig::default());
    let mut h = Stray { app: AppHost::new(), done: false };
    h.app.set_policy(C, AppPolicy { keep_posted: 1, post_size: 10, ..AppPolicy::default() });
    t.initiate_offload(T0, C, TcpOffloadState::default(), &mut h).unwrap();
    h.app.top_up(T0, C, &mut t).unwrap();
    t.receive_data(T0, C, &[5; 10], false, &mut h).unwrap();
    let back = t.take_rejected_posts();
    assert_eq!(back.len(), 2, "both stray posts come back");
    assert!(back.iter().all(|r| r.nbls.len() == 1));
    assert_eq!(t.stats().rejected_nested_posts, 2);
    assert_eq!(t.stats().completion_calls, 1);
    assert_eq!(t.stats().completed_bytes, 10);
    assert!(t.take_rejected_posts().is_empty(), "handed back once");
}

/// Every counter of `DeliveryStats` counts what it names (the CLI prints them and the
/// benchmarks read them).
#[test]
fn every_counter_counts() {
    use chimney::contract::SendInput;
    use chimney::ndis::{DisconnectKind, Mdl, NblId, NetBuffer, NetBufferList, PoolTag};
    let mut d = Delivery::new(DeliveryConfig::default());
    let mut h = AppHost::new();
    h.set_policy(C, AppPolicy { keep_posted: 2, post_size: 10, repost_in_completion: false, ..AppPolicy::default() });
    d.initiate_offload(T0, C, TcpOffloadState::default(), &mut h).unwrap();
    h.top_up(T0, C, &mut d).unwrap();
    h.set_policy(C, AppPolicy { keep_posted: 0, repost_in_completion: false, ..AppPolicy::default() });
    d.receive_data(T0, C, &[1; 15], true, &mut h).unwrap();
    let s = d.stats().clone();
    assert_eq!((s.completion_calls, s.completed_nbls, s.completed_bytes), (1, 2, 15));
    d.receive_data(T0, C, &[2; 7], false, &mut h).unwrap();
    assert_eq!((d.stats().indications, d.stats().indicated_bytes, d.stats().indications_refused), (1, 7, 0));
    let foreign = NetBufferList::new(NblId::new(PoolTag::Host, 999), NetBuffer::new(vec![Mdl::zeroed(4)]));
    d.receive_return(T0, NblChain::single(foreign), &mut h);
    assert_eq!(d.stats().foreign_returns, 1);
    let send = NetBufferList::new(NblId::new(PoolTag::Host, 1000), NetBuffer::new(vec![Mdl::from_bytes(vec![3; 20])]));
    d.send(T0, C, NblChain::single(send), &mut h).unwrap();
    d.send_acked(T0, C, 20, &mut h).unwrap();
    let s = d.stats().clone();
    assert_eq!((s.send_completion_calls, s.sends_completed, s.send_bytes_completed), (1, 1, 20));
    d.disconnect(T0, C, DisconnectKind::Graceful, NblChain::new(), &mut h).unwrap();
    d.send_acked(T0, C, 21, &mut h).unwrap();
    assert_eq!(d.stats().disconnects_completed, 1);
    h.return_held(T0, &mut d);
    d.receive_fin(T0, C, &mut h).unwrap();
    assert_eq!(d.stats().events, 1, "TcpIndicateDisconnect");
}

/// A host that sends on an unknown connection from inside its first completion, and posts a
/// receive request from inside its first send completion.
struct SendStray {
    app: AppHost,
    sent_stray: bool,
    posted_in_send: bool,
    completions: usize,
}

impl ProtocolHost for SendStray {
    fn receive_complete(&mut self, conn: ConnId, nbls: NblChain, nested: &mut NestedCalls) {
        self.completions += 1;
        if !self.sent_stray {
            self.sent_stray = true;
            let id = chimney::ndis::NblId::new(chimney::ndis::PoolTag::Host, 5000);
            let n = chimney::ndis::NetBufferList::new(
                id,
                chimney::ndis::NetBuffer::new(vec![chimney::ndis::Mdl::from_bytes(vec![1; 3])]),
            );
            nested.post_send(ConnId(42), NblChain::single(n));
        }
        self.app.receive_complete(conn, nbls, nested)
    }
    fn receive_indicate(&mut self, conn: ConnId, nbl: NblChain, s: NdisStatus, n: &mut NestedCalls) -> IndicateReturn {
        self.app.receive_indicate(conn, nbl, s, n)
    }
    fn event_indicate(&mut self, conn: ConnId, e: TcpOffloadEvent, n: &mut NestedCalls) {
        self.app.event_indicate(conn, e, n)
    }
    fn send_complete(&mut self, conn: ConnId, nbls: NblChain, nested: &mut NestedCalls) {
        if !self.posted_in_send {
            self.posted_in_send = true;
            let p = AppPolicy { post_size: 50, no_push: true, ..AppPolicy::default() };
            nested.post_receive(conn, NblChain::single(self.app.new_request(&p)));
        }
        self.app.send_complete(conn, nbls, nested)
    }
}

#[test]
fn nested_sends_to_unknown_connections_come_back_and_posts_inside_send_completions_are_served() {
    use chimney::contract::SendInput;
    use chimney::ndis::{Mdl, NblId, NetBuffer, NetBufferList, PoolTag};
    let mut d = Delivery::new(DeliveryConfig::default());
    let mut h = SendStray { app: AppHost::new(), sent_stray: false, posted_in_send: false, completions: 0 };
    let refuse = AppPolicy { keep_posted: 0, indication: IndicationPolicy::Refuse, ..AppPolicy::default() };
    h.app.set_policy(C, refuse);
    d.initiate_offload(T0, C, TcpOffloadState::default(), &mut h).unwrap();
    // 50 bytes wait, refused; a send completion brings a post, which takes them at once.
    d.receive_data(T0, C, &[4; 50], false, &mut h).unwrap();
    assert_eq!(d.receive_backlog(C), 50);
    let send = NetBufferList::new(NblId::new(PoolTag::Host, 6000), NetBuffer::new(vec![Mdl::from_bytes(vec![3; 8])]));
    d.send(T0, C, NblChain::single(send), &mut h).unwrap();
    d.send_acked(T0, C, 8, &mut h).unwrap();
    assert_eq!(h.completions, 1, "the request posted inside the send completion was filled at once");
    assert_eq!(d.receive_backlog(C), 0);
    // Inside that completion the host sent on a connection that does not exist.
    let back = d.take_rejected_sends();
    assert_eq!(back.len(), 1);
    assert!(matches!(back[0].error, chimney::contract::ApiMisuse::UnknownConnection(ConnId(42))));
    assert_eq!(d.stats().rejected_nested_posts, 1);
    assert!(d.take_rejected_sends().is_empty());
}
