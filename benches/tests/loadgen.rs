//! The load generator itself works: a one-second run of each path (in
//! process and over HTTP, on fresh Postgres databases) decides bids, keeps
//! the books and reports what the README promises. Figures are not judged
//! here; they belong to the benchmark runs.

use std::process::Command;

use serde_json::Value;

fn loadgen(args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .expect("the load generator runs");
    assert!(
        output.status.success(),
        "loadgen {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON object")
}

/// Bids decided by `run`, after checking the fields every run reports;
/// refusals may only have the `expected` codes.
fn decided(run: &Value, expected: &[&str]) -> u64 {
    assert_eq!(run["invariants"], "ok", "{run:#}");
    for field in ["p50", "p99", "max"] {
        assert!(run["bid_latency_ms"][field].is_number(), "{run:#}");
    }
    let accepted = run["accepted"].as_u64().expect("accepted");
    let refused: u64 = run["rejected"]
        .as_object()
        .expect("refusals by code")
        .iter()
        .map(|(code, count)| {
            // Any other code means the generator or the server is broken.
            assert!(expected.contains(&code.as_str()), "{code}: {run:#}");
            count.as_u64().expect("a count")
        })
        .sum();
    assert_eq!(run["decided"].as_u64(), Some(accepted + refused), "{run:#}");
    assert!(accepted > 0, "no bid was accepted: {run:#}");
    accepted + refused
}

#[test]
fn hot_auction_in_process_and_over_http_with_watchers() {
    let report = loadgen(&[
        "--mode",
        "hot",
        "--via",
        "both",
        "--coalesce",
        "on",
        "--tasks",
        "4",
        "--seconds",
        "1",
        "--watchers",
        "3",
    ]);
    let runs = report["runs"].as_array().expect("runs");
    let via = |name: &str| {
        runs.iter()
            .find(|run| run["via"] == name)
            .unwrap_or_else(|| panic!("no {name} run: {report:#}"))
    };
    // Stale bids on a hot auction are refused as too low, and only that.
    decided(via("engine"), &["bid_too_low"]);
    let http = via("http");
    decided(http, &["bid_too_low"]);
    assert_eq!(http["watchers_disconnected"], 0, "{http:#}");
    let deliveries = http["broadcast_latency_ms"]["deliveries"].as_u64();
    assert!(
        deliveries.is_some_and(|n| n > 0),
        "no watcher saw an event: {http:#}"
    );
    assert!(report["http_to_engine"]
        .as_f64()
        .is_some_and(|ratio| ratio > 0.0));
}

/// Bids as messages on the bidders' live sockets (answered between the
/// room's events) or on their own sockets (answers only), keyed by
/// `request_id`. In spread mode a bidder holds several room sockets. The
/// server holds each room event up to 5 ms for the events after it
/// (`--ws-write-delay-ms`), and the watchers still get them.
#[test]
fn bids_over_websockets_in_both_modes() {
    let ways = ["ws", "bidder-ws"]
        .into_iter()
        .flat_map(|bid_over| ["hot", "spread"].map(|mode| (bid_over, mode)));
    for (bid_over, mode) in ways {
        let report = loadgen(&[
            "--mode",
            mode,
            "--via",
            "http",
            "--bid-over",
            bid_over,
            "--auctions",
            "3",
            "--tasks",
            "4",
            "--seconds",
            "1",
            "--watchers",
            "2",
            "--server-arg=--ws-write-delay-ms=5",
        ]);
        let run = &report["runs"][0];
        assert_eq!(run["bid_over"], bid_over, "{report:#}");
        assert_eq!(run["mode"], mode, "{report:#}");
        assert_eq!(run["server_args"][0], "--ws-write-delay-ms=5", "{run:#}");
        // Deposits are large: only stale bids are refused.
        decided(run, &["bid_too_low"]);
        assert_eq!(run["watchers_disconnected"], 0, "{run:#}");
        let deliveries = run["broadcast_latency_ms"]["deliveries"].as_u64();
        assert!(
            deliveries.is_some_and(|n| n > 0),
            "no watcher saw an event: {run:#}"
        );
    }
}

/// Two rounds: every run twice, each ratio the median of the rounds', and
/// each round's own figures.
#[test]
fn spread_over_auctions_on_the_memory_store_with_and_without_coalescing() {
    let report = loadgen(&[
        "--mode",
        "spread",
        "--store",
        "memory",
        "--coalesce",
        "both",
        "--auctions",
        "20",
        "--tasks",
        "4",
        "--seconds",
        "1",
        "--rounds",
        "2",
    ]);
    let runs = report["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 4, "{report:#}");
    for (run, round) in runs.iter().zip([1, 1, 2, 2]) {
        assert_eq!(run["round"], round, "{report:#}");
        // Wallets spread over many auctions run out of free money too.
        decided(run, &["bid_too_low", "insufficient_funds"]);
    }
    let speedup = |value: &Value| value["coalescing_speedup"].as_f64().expect("a ratio");
    let rounds = report["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 2, "{report:#}");
    let median = (speedup(&rounds[0]) + speedup(&rounds[1])) / 2.0;
    assert!(speedup(&report) > 0.0, "{report:#}");
    assert!((speedup(&report) - median).abs() < 1e-9, "{report:#}");
    // Each round's best in-process rate (what pgbench is compared with)
    // is its coalescing run's.
    for (figures, round) in rounds.iter().zip([1, 2]) {
        let coalesced = runs
            .iter()
            .find(|run| run["round"] == round && run["coalesce_bids"] == true)
            .expect("the round's coalescing run");
        let best = &figures["best_engine_decided_per_second"];
        assert_eq!(*best, coalesced["decided_per_second"], "{report:#}");
    }
}

#[test]
fn caller_work_bounds_what_each_bidder_decides() {
    let report = loadgen(&[
        "--store",
        "memory",
        "--coalesce",
        "on",
        "--tasks",
        "2",
        "--seconds",
        "1",
        "--caller-work-us",
        "1000",
    ]);
    let run = &report["runs"][0];
    assert_eq!(run["caller_work_us"], 1000, "{report:#}");
    let decided = decided(run, &["bid_too_low"]);
    // Each bid costs its bidder at least a millisecond after its answer
    // (the memory store alone decides hundreds of thousands a second).
    let seconds = run["seconds"].as_f64().expect("seconds");
    let most = 2.0 * (seconds * 1000.0 + 1.0);
    assert!(decided as f64 <= most, "{decided} > {most}: {report:#}");
}
