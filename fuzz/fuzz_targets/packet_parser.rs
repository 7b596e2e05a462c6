//! Arbitrary bytes through the wire parser: never a panic; whatever parses re-emits to a
//! packet that parses to the same segment.
#![no_main]
use chimney::wire::{self, SegmentRepr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = wire::parse(data) else { return };
    assert!(s.payload.len() <= data.len());
    let r = SegmentRepr {
        src: s.src,
        dst: s.dst,
        src_port: s.src_port,
        dst_port: s.dst_port,
        seq: s.seq,
        ack: s.ack,
        flags: s.flags,
        window: s.window,
        options: s.options,
        payload: s.payload,
        urgent: 0,
        ip_id: 1,
    };
    let mut out = Vec::new();
    r.emit(&mut out);
    let again = wire::parse(&out).expect("emitted packets parse");
    assert_eq!((again.seq, again.ack, again.flags, again.window), (s.seq, s.ack, s.flags, s.window));
    assert_eq!(again.payload, s.payload);
});
