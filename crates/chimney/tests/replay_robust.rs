//! `chimney verify` reads traces from anyone: any damage to a trace (lines dropped,
//! duplicated, moved; numbers, ids, statuses and kinds changed) ends in a report or a clear
//! error, never a panic or an unbounded allocation.

use chimney::contract::replay::replay;
use proptest::prelude::*;

const TRACES: [&str; 3] = [
    include_str!("../../../examples/traces/good-minimal.jsonl"),
    include_str!("../../../examples/traces/good-demo.jsonl"),
    include_str!("../../../examples/traces/faulty-indicate-while-posted.jsonl"),
];

const VALUES: [&str; 12] = [
    "0",
    "1",
    "7",
    "4294967295",
    "18446744073709551615",
    "-1",
    "null",
    "\"h1\"",
    "\"t1\"",
    "\"x\"",
    "[]",
    "\"NDIS_STATUS_PENDING\"",
];

fn mutate(v: &mut serde_json::Value, key_pick: usize, val: &str) {
    if let Some(m) = v.as_object_mut() {
        let keys: Vec<String> = m.keys().cloned().collect();
        if keys.is_empty() {
            return;
        }
        let k = &keys[key_pick % keys.len()];
        let new: serde_json::Value = serde_json::from_str(val).unwrap();
        // Sometimes into a nested NBL descriptor.
        if let Some(arr) = m.get_mut(k).and_then(|x| x.as_array_mut()) {
            if let Some(first) = arr.first_mut() {
                mutate(first, key_pick / 7, val);
                return;
            }
        }
        m.insert(k.clone(), new);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn damaged_traces_never_panic(
        which in 0usize..TRACES.len(),
        edits in proptest::collection::vec((0u8..4, any::<usize>(), any::<usize>(), 0usize..VALUES.len()), 1..8),
    ) {
        let mut lines: Vec<serde_json::Value> =
            TRACES[which].lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        for (op, a, b, val) in edits {
            let n = lines.len();
            if n < 2 {
                break;
            }
            let (i, j) = (1 + a % (n - 1), 1 + b % (n - 1));
            match op {
                0 => { lines.remove(i); }
                1 => { let l = lines[i].clone(); lines.insert(j, l); }
                2 => lines.swap(i, j),
                _ => mutate(&mut lines[i], b, VALUES[val]),
            }
        }
        let text: String = lines.iter().map(|l| l.to_string() + "\n").collect();
        let _ = replay(&text);
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        let _ = replay(&text);
        let _ = replay(&format!("{{\"chimney_trace\":1}}\n{text}"));
    }
}

#[test]
fn huge_sizes_are_refused_not_allocated() {
    let head = "{\"chimney_trace\":1}\n";
    for line in [
        "{\"ev\":\"data\",\"t\":1,\"conn\":1,\"len\":1000000000000}",
        "{\"ev\":\"post\",\"t\":1,\"conn\":1,\"nbls\":[{\"id\":\"h1\",\"mdls\":[60000000,60000000],\"offset\":0,\"length\":1}]}",
        "{\"ev\":\"offload\",\"t\":1,\"conn\":1,\"rcv_nxt\":1,\"initial_rcv_wnd\":1,\"buffered\":[{\"id\":\"h1\",\"offset\":18446744073709551615,\"length\":5}]}",
        "{\"ev\":\"post\",\"t\":1,\"conn\":1,\"nbls\":[{\"id\":\"h1\",\"mdls\":[1,18446744073709551615],\"offset\":0,\"length\":1}]}",
        "{\"ev\":\"offload\",\"t\":1,\"conn\":1,\"rcv_nxt\":1,\"initial_rcv_wnd\":1,\"buffered\":[{\"id\":\"h1\",\"length\":40000000},{\"id\":\"h2\",\"length\":40000000}]}",
    ] {
        let e = replay(&format!("{head}{line}\n")).expect_err(line);
        assert!(e.msg.contains("64 MiB"), "{e}");
    }
}

/// Many lines each within the per-line limit still cannot make the replay hold more than its
/// budget: fed-but-undelivered bytes and outstanding NBLs are bounded in all.
#[test]
fn many_small_lines_cannot_exhaust_memory() {
    let mut t = String::from("{\"chimney_trace\":1}\n");
    t.push_str("{\"ev\":\"offload\",\"t\":1,\"conn\":1,\"rcv_nxt\":1,\"initial_rcv_wnd\":65536,\"buffered\":[]}\n{\"ev\":\"ret\",\"status\":\"NDIS_STATUS_SUCCESS\"}\n");
    for _ in 0..40 {
        t.push_str("{\"ev\":\"data\",\"t\":2,\"conn\":1,\"len\":67108864}\n{\"ev\":\"ret\",\"status\":\"NDIS_STATUS_SUCCESS\"}\n");
    }
    let e = replay(&t).expect_err("refused");
    assert!(e.msg.contains("1 GiB"), "{e}");
    let mut t = String::from("{\"chimney_trace\":1}\n");
    t.push_str("{\"ev\":\"offload\",\"t\":1,\"conn\":1,\"rcv_nxt\":1,\"initial_rcv_wnd\":65536,\"buffered\":[]}\n{\"ev\":\"ret\",\"status\":\"NDIS_STATUS_SUCCESS\"}\n");
    for i in 0..40 {
        t.push_str(&format!("{{\"ev\":\"post\",\"t\":2,\"conn\":1,\"nbls\":[{{\"id\":\"h{i}\",\"mdls\":[60000000],\"offset\":0,\"length\":60000000}}]}}\n{{\"ev\":\"ret\",\"status\":\"NDIS_STATUS_PENDING\"}}\n"));
    }
    let e = replay(&t).expect_err("refused");
    assert!(e.msg.contains("1 GiB"), "{e}");
}
