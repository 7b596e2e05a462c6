fn main() {
    let args: Vec<u64> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let clean = std::env::var("CLEAN").is_ok();
    for seed in args[0]..args[1] {
        let sc = chimney_sim::scenario::Scenario::from_seed(
            seed,
            &chimney_sim::scenario::Knobs { clean, ..Default::default() },
        );
        let t = std::time::Instant::now();
        let r = chimney_sim::run(&sc, false);
        println!(
            "seed {seed}: ok={} {:?} virt={:?} pkts={} bytes={} wall={:?} {:?}",
            r.ok(),
            r.failures.first(),
            r.virtual_time,
            r.packets,
            r.bytes,
            t.elapsed(),
            (sc.bytes.len(), sc.rcv_wnd, sc.bandwidth, sc.mtu, sc.adversary)
        );
    }
}
