//! Printing `demo` results: the table, JSON, and the exit status.

use chimney::testkit::digest::HashKind;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use chimney::engine::EngineStats;
use chimney_linux::{ConnReport, DriverSummary, EndReason};

/// What a demo client sent, as the report compares it with what the target received.
pub struct SentView {
    /// The client's address (matches the report's peer).
    pub local: SocketAddr,
    /// Bytes written.
    pub bytes: u64,
    /// Their digest (the run's `--hash`).
    pub digest: Vec<u8>,
    /// Whether it reset instead of closing.
    pub reset: bool,
    /// A client-side error.
    pub error: Option<String>,
    /// Bytes the kernel may have taken: `bytes` plus the chunk whose write failed (part of
    /// it can have been sent before the error).
    pub may_have_sent: u64,
    /// What the client read from the target (bytes, digest), when it read to the end.
    pub returned: Option<(u64, Vec<u8>)>,
    /// What it should have read (`--direction send` or `both`).
    pub expect_returned: Option<(u64, Vec<u8>)>,
}

/// TCP_OFFLOAD_STATS as a JSON object (field names as in the NDIS structure, snake_case).
pub fn tcp_stats_json(s: &EngineStats) -> serde_json::Value {
    let t = &s.tcp;
    serde_json::json!({
        "in_segments": t.in_segments,
        "out_segments": t.out_segments,
        "currently_established": t.currently_established,
        "reset_established": t.reset_established,
        "retransmitted_segments": t.retransmitted_segments,
        "in_errors": t.in_errors,
        "out_resets": t.out_resets,
    })
}

/// IP_OFFLOAD_STATS as a JSON object.
pub fn ip_stats_json(s: &EngineStats) -> serde_json::Value {
    let i = &s.ip;
    serde_json::json!({
        "in_receives": i.in_receives,
        "in_octets": i.in_octets,
        "in_delivers": i.in_delivers,
        "out_requests": i.out_requests,
        "out_octets": i.out_octets,
        "in_header_errors": i.in_header_errors,
        "in_truncated_packets": i.in_truncated_packets,
        "in_discards": i.in_discards,
        "out_discards": i.out_discards,
        "out_no_routes": i.out_no_routes,
    })
}

/// The offload statistics, two lines, for the table output.
pub fn print_stats(s: &EngineStats) {
    let (t, i) = (&s.tcp, &s.ip);
    println!(
        "TCP_OFFLOAD_STATS: in_segments={} out_segments={} retransmitted={} in_errors={} out_resets={} (keep-alive probes {}, window-update repeats {}, placed directly {})",
        t.in_segments, t.out_segments, t.retransmitted_segments, t.in_errors, t.out_resets, s.keepalive_probes, s.window_update_repeats, s.placed_packets
    );
    println!(
        "IP_OFFLOAD_STATS: in_receives={} in_octets={} in_delivers={} out_requests={} out_octets={} in_header_errors={} in_discards={}",
        i.in_receives, i.in_octets, i.in_delivers, i.out_requests, i.out_octets, i.in_header_errors, i.in_discards
    );
}

/// A `(name, count)` table as a JSON object.
pub fn table_json(t: Vec<(String, u64)>) -> serde_json::Value {
    t.into_iter().map(|(k, v)| (k, serde_json::json!(v))).collect::<serde_json::Map<_, _>>().into()
}

/// The drop table and the host-path table, one line each when not empty (table output).
pub fn print_tables(s: &EngineStats) {
    let line = |t: Vec<(String, u64)>| t.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
    let drops = s.drop_table();
    if !drops.is_empty() {
        println!("drops: {}", line(drops));
    }
    let defense = s.defense_table();
    if !defense.is_empty() {
        println!("defenses: {}", line(defense));
    }
    let host = s.host_path_table();
    if !host.is_empty() {
        println!("host path (not for the target, not dropped; icmp_igmp: e.g. the kernel's own IPv6 router solicitation): {}", line(host));
    }
}

/// What the host stack behind the target did, as JSON (`host_stack`).
pub fn host_stack_json(h: &chimney_linux::hoststack::HostPathCounts) -> serde_json::Value {
    serde_json::json!({
        "reassembled": h.reassembled,
        "fragments_dropped": h.fragments_dropped,
        "options_stripped": h.options_stripped,
        "urgent_uploads": h.urgent_uploads,
        "reoffloads": h.reoffloads,
    })
}

/// Bytes as lowercase hex (the out-of-band bytes in JSON).
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn gbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 * 8.0 / d.as_secs_f64().max(1e-9) / 1e9
}

/// Prints the demo summary and returns the exit status (1 on any mismatch or violation).
pub fn print_demo(
    json: bool,
    ipv6: bool,
    sent: &[SentView],
    reports: &[ConnReport],
    driver: &DriverSummary,
    wall: Duration,
    host_close: Option<chimney_linux::HostClose>,
) -> ExitCode {
    let aborts = host_close.is_some_and(|h| h.kind == chimney::ndis::DisconnectKind::Abortive);
    let violations = driver.violations.clone();
    let mut ok = violations.is_empty();
    let mut rows = Vec::new();
    for s in sent {
        let r = reports.iter().find(|r| r.peer == s.local);
        let (exact, why) = match (r, &s.error) {
            // The host aborted: the client's write or read fails with a reset, and what
            // arrived before it is a prefix of what was sent.
            (Some(r), _) if aborts && r.end == EndReason::Aborted => {
                let prefix = r.bytes <= s.bytes.max(s.may_have_sent) && r.violations == 0;
                let why = format!("received {} bytes, at most {} sent", r.bytes, s.bytes.max(s.may_have_sent));
                (prefix, if prefix { String::new() } else { why })
            }
            (_, Some(e)) if !s.reset => (false, e.clone()),
            (None, _) => (false, "no report from the target".to_string()),
            (Some(r), _) if s.reset => {
                let seen = r.end == EndReason::Rst && r.bytes <= s.bytes;
                (seen, if seen { String::new() } else { format!("reset not seen (end {})", r.end.as_str()) })
            }
            (Some(r), _) => {
                // A graceful host close lets the client finish: the whole stream, ended
                // `closed` (or `fin` when the client's FIN came first).
                let clean = r.end == EndReason::Fin || (host_close.is_some() && r.end == EndReason::Closed);
                let back = s.expect_returned.as_ref().is_none_or(|want| s.returned.as_ref() == Some(want));
                let same = r.digest == s.digest && r.bytes == s.bytes && clean && back;
                let why = if same {
                    String::new()
                } else if !back {
                    format!(
                        "read back {} bytes, {} expected ({})",
                        s.returned.as_ref().map_or(0, |(n, _)| *n),
                        s.expect_returned.as_ref().map_or(0, |(n, _)| *n),
                        if s.returned.as_ref().map(|(_, h)| h) == s.expect_returned.as_ref().map(|(_, h)| h) {
                            "same digest"
                        } else {
                            "digest differs"
                        }
                    )
                } else {
                    format!(
                        "sent {} bytes, received {} ({}, digest {})",
                        s.bytes,
                        r.bytes,
                        r.end.as_str(),
                        if r.digest == s.digest { "same" } else { "differs" }
                    )
                };
                (same, why)
            }
        };
        ok &= exact && r.is_none_or(|r| r.violations == 0);
        rows.push((s, r, exact, why));
    }
    let total: u64 = reports.iter().map(|r| r.bytes).sum();
    let stats = driver.stats.clone();
    if json {
        let conns: Vec<_> = rows
            .iter()
            .map(|(s, r, exact, why)| {
                serde_json::json!({
                    "peer": s.local.to_string(),
                    "sent": s.bytes,
                    "bytes": r.map_or(0, |r| r.bytes),
                    "target_sent": r.map_or(0, |r| r.sent),
                    "returned": s.returned.as_ref().map_or(0, |(n, _)| *n),
                    "seconds": r.map_or(0.0, |r| r.duration.as_secs_f64()),
                    "gbps": r.map_or(0.0, |r| gbps(r.bytes, r.duration)),
                    "completions": r.map_or(0, |r| r.completions),
                    "aborted": r.map_or(0, |r| r.aborted),
                    "indications": r.map_or(0, |r| r.indications),
                    "oob": r.map_or(String::new(), |r| hex(&r.oob)),
                    "reoffloads": r.map_or(0, |r| r.reoffloads),
                    "acks": r.map_or(0, |r| r.acks),
                    "drops": r.map_or(0, |r| r.drops),
                    "violations": r.map_or(0, |r| r.violations),
                    "end": r.map_or("error", |r| r.end.as_str()),
                    "hash": r.map_or("", |r| r.hash.name()),
                    "digest": r.map_or(String::new(), |r| r.digest_hex()),
                    "sha256": r.filter(|r| r.hash == HashKind::Sha256).map_or(String::new(), |r| r.digest_hex()),
                    "exact": exact,
                    "error": why,
                })
            })
            .collect();
        let v = serde_json::json!({
            "mode": "tun",
            "ok": ok,
            "seconds": wall.as_secs_f64(),
            "bytes": total,
            "gbps": gbps(total, wall),
            "connections": conns,
            "violations": violations.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
            "drops": table_json(stats.drop_table()),
            "host_path": table_json(stats.host_path_table()),
            "host_stack": host_stack_json(&driver.host_path),
            "defenses": table_json(stats.defense_table()),
            "tx_dropped": driver.tx_dropped,
            "gso_packets": driver.gso_packets,
            "gso_out": driver.gso_out,
            "placed_packets": stats.placed_packets,
            "per_queue_offloads": driver.per_queue_offloads,
            "tcp_offload_stats": tcp_stats_json(&stats),
            "ip_offload_stats": ip_stats_json(&stats),
        });
        println!("{v}");
    } else {
        println!(
            "chimney demo: {} Linux TCP connection(s) → TUN → offload target ({}), contract verifier on",
            sent.len(),
            if ipv6 { "IPv6" } else { "IPv4" }
        );
        println!(
            "{:<22} {:>11} {:>8} {:>7} {:>11} {:>11} {:>7} {:>6} {:>5} {:>4} {:>5}",
            "peer", "bytes", "time s", "Gbit/s", "completions", "indications", "ACKs", "drops", "viol", "end", "exact"
        );
        for (s, r, exact, why) in &rows {
            match r {
                Some(r) => println!(
                    "{:<22} {:>11} {:>8.3} {:>7.2} {:>11} {:>11} {:>7} {:>6} {:>5} {:>4} {:>5}",
                    s.local.to_string(),
                    r.bytes,
                    r.duration.as_secs_f64(),
                    gbps(r.bytes, r.duration),
                    r.completions + r.aborted,
                    r.indications,
                    r.acks,
                    r.drops,
                    r.violations,
                    r.end.as_str(),
                    if *exact { "yes" } else { "NO" }
                ),
                None => println!("{:<22} {why}", s.local.to_string()),
            }
            if !exact && r.is_some() {
                println!("    {why}");
            }
        }
        println!("{} bytes in {:.3} s: {:.2} Gbit/s overall", total, wall.as_secs_f64(), gbps(total, wall));
        print_tables(&stats);
        print_stats(&stats);
        if violations.is_empty() {
            println!("verifier: 0 violations ({} rules checked)", chimney::contract::RULES.len());
        } else {
            println!("verifier: {} violations", violations.len());
            for v in violations.iter().take(20) {
                println!("  {v}");
            }
        }
        println!("{}", if ok { "result: OK — every stream byte-exact" } else { "result: FAILED" });
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
