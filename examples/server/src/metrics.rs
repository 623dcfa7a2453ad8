//! Prometheus metrics (`GET /metrics`), fed by the API's [`Observer`] hooks.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use neighborbid_axum::Observer;
use neighborbid_core::RelayCounts;

/// Upper bounds of the bid latency histogram, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// Counters of the server's life.
#[derive(Debug, Default)]
pub struct Metrics {
    accepted: AtomicU64,
    rejected: Mutex<BTreeMap<String, u64>>,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_micros: AtomicU64,
    sockets: AtomicI64,
    events: AtomicU64,
    closed: AtomicU64,
}

impl Metrics {
    /// Counts auctions the closer settled.
    pub fn auctions_closed(&self, n: usize) {
        self.closed.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The metrics in Prometheus' text format, with the number of auctions
    /// the closer has set aside because it could not settle them.
    pub fn render(&self, stuck_auctions: usize) -> String {
        let mut out = String::new();
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let bids = "neighborbid_bids_total";
        header(&mut out, bids, "counter", "Bids decided, by outcome.");
        let accepted = load(&self.accepted);
        let _ = writeln!(out, "{bids}{{outcome=\"accepted\"}} {accepted}");
        let rejected = self.rejected.lock().unwrap_or_else(PoisonError::into_inner);
        for (code, n) in rejected.iter() {
            let _ = writeln!(out, "{bids}{{outcome=\"rejected\",code=\"{code}\"}} {n}");
        }
        drop(rejected);
        let latency = "neighborbid_bid_seconds";
        header(&mut out, latency, "histogram", "Time to decide a bid.");
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&self.latency_buckets) {
            cumulative += load(bucket);
            let _ = writeln!(out, "{latency}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = load(&self.latency_count);
        let _ = writeln!(out, "{latency}_bucket{{le=\"+Inf\"}} {count}");
        let seconds = load(&self.latency_micros) as f64 / 1e6;
        let _ = writeln!(out, "{latency}_sum {seconds}");
        let _ = writeln!(out, "{latency}_count {count}");
        let sockets = self.sockets.load(Ordering::Relaxed);
        let singles: [Single; 4] = [
            (
                "neighborbid_websockets_open",
                "gauge",
                "WebSockets open now.",
                &sockets,
            ),
            (
                "neighborbid_events_delivered_total",
                "counter",
                "Events sent to WebSocket clients.",
                &load(&self.events),
            ),
            (
                "neighborbid_auctions_closed_total",
                "counter",
                "Auctions the closer settled.",
                &load(&self.closed),
            ),
            (
                "neighborbid_auctions_stuck",
                "gauge",
                "Ended auctions the closer could not settle; it retries them with back-off.",
                &stuck_auctions,
            ),
        ];
        for metric in singles {
            single(&mut out, metric);
        }
        out
    }
}

/// Appends the Redis link's metrics to `out`: the outbox relay's counts
/// (a rising `queue_full` or `failed` means events reach other processes
/// late, by the recovery path) and whether the subscriber is connected.
pub fn render_redis(out: &mut String, relay: RelayCounts, connected: bool) {
    let events = "neighborbid_relay_events_total";
    let help = "Committed events the outbox relay sent to Redis, by path.";
    header(out, events, "counter", help);
    for (path, n) in [("after_commit", relay.sent), ("recovery", relay.recovered)] {
        let _ = writeln!(out, "{events}{{path=\"{path}\"}} {n}");
    }
    let singles: [Single; 3] = [
        (
            "neighborbid_relay_queue_full_total",
            "counter",
            "Committed events left to the recovery path because the relay's queue was full.",
            &relay.queue_full,
        ),
        (
            "neighborbid_relay_failed_total",
            "counter",
            "Events in sends to Redis that failed (each attempt counts; they stay in the outbox).",
            &relay.failed,
        ),
        (
            "neighborbid_redis_connected",
            "gauge",
            "Whether the Redis subscriber is connected (1) or not (0).",
            &u8::from(connected),
        ),
    ];
    for metric in singles {
        single(out, metric);
    }
}

/// Writes a metric's `HELP` and `TYPE` lines.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A metric with one value and no labels: name, type, help, value.
type Single<'a> = (&'a str, &'a str, &'a str, &'a dyn std::fmt::Display);

/// Writes a metric that has one value and no labels.
fn single(out: &mut String, (name, kind, help, value): Single) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

impl Observer for Metrics {
    fn bid_decided(&self, refused: Option<&str>, elapsed: Duration) {
        match refused {
            None => {
                self.accepted.fetch_add(1, Ordering::Relaxed);
            }
            Some(code) => {
                let mut rejected = self.rejected.lock().unwrap_or_else(PoisonError::into_inner);
                *rejected.entry(code.to_owned()).or_default() += 1;
            }
        }
        let seconds = elapsed.as_secs_f64();
        if let Some(index) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.latency_buckets[index].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn socket(&self, opened: bool) {
        self.sockets
            .fetch_add(if opened { 1 } else { -1 }, Ordering::Relaxed);
    }

    fn event_delivered(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }
}
