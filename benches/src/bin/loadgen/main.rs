//! The load generator: N tasks bid as fast as they can, then the books
//! are checked. Prints one JSON object.
//!
//! ```sh
//! cargo run --release -p neighborbid-benches --bin loadgen -- --mode hot --tasks 64 --coalesce both
//! cargo run --release -p neighborbid-benches --bin loadgen -- --via both --watchers 200
//! ```
//!
//! `--via engine` (the default) calls the engine in process on a fresh
//! database: the database path alone. `--via http` starts the example
//! server in process on a fresh Postgres database (or uses `--target`, a
//! running server started with `--rate-limit 0`) and bids over HTTP while
//! `--watchers` WebSockets time every event; `--via both` runs the two side
//! by side and reports their ratio.
//!
//! `--coalesce both` runs without and then with bid coalescing, side by
//! side in one process, and reports the ratio (`--keys both` does the same
//! for in-process bids with and without idempotency keys); `--pgbench` also runs
//! `benches/pgbench/place_bid.sql` (one accepted bid's work as plain
//! statements) with the same number of clients and auctions, and reports
//! the engine's rate (the median round's) against it.
//! Compare figures only within one run on a shared machine; `--rounds 5`
//! repeats every run five times, one round after another, and reports
//! each ratio's median.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use neighborbid_core::testkit::{self, Latencies, Load, StressReport};
use neighborbid_core::{MemoryStore, Store};
use neighborbid_sqlx::testing::TestDatabase;
use serde_json::{json, Value};

mod http;

#[derive(Debug, Parser)]
#[command(about = "Bid as fast as possible through the engine and report")]
struct Args {
    /// `hot`: every task on one auction; `spread`: random auctions and
    /// wallets.
    #[arg(long, value_enum, default_value = "hot")]
    mode: Mode,
    /// Where the engine stores: a fresh Postgres database on the server
    /// `DATABASE_URL` names (dropped afterwards), a fresh SQLite file in a
    /// temporary directory, or memory.
    #[arg(long, value_enum, default_value = "postgres")]
    store: StoreKind,
    /// Concurrent bidding tasks.
    #[arg(long, default_value_t = 64)]
    tasks: usize,
    /// Seconds each run bids.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Auctions in `spread` mode.
    #[arg(long, default_value_t = 1000)]
    auctions: usize,
    /// Wallets in `spread` mode.
    #[arg(long, default_value_t = 64)]
    wallets: usize,
    /// Postgres connections.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// Bid coalescing: on, off, or both one after the other.
    #[arg(long, value_enum, default_value = "both")]
    coalesce: Setting,
    /// In process: each bid with a fresh idempotency key (as the API's
    /// clients send them), without, or both one after the other.
    #[arg(long, value_enum, default_value = "off")]
    keys: Setting,
    /// In process: microseconds of CPU each bidder spends busy after each
    /// answer, standing for an HTTP front end's work per bid (the server's
    /// and its clients') on the same cores.
    #[arg(long, default_value_t = 0)]
    caller_work_us: u64,
    /// Also measure the pgbench baseline (needs `pgbench` and `psql`).
    #[arg(long)]
    pgbench: bool,
    /// Rounds of every run asked for: the ratios are then each one's
    /// median over the rounds (each round's own under `rounds`).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Through the engine in process, over HTTP, or both.
    #[arg(long, value_enum, default_value = "engine")]
    via: Via,
    /// A running server (`http://host:port`) for `--via http`, instead of
    /// one started here.
    #[arg(long)]
    target: Option<String>,
    /// WebSocket watchers over HTTP (spread over the auctions).
    #[arg(long, default_value_t = 0)]
    watchers: usize,
    /// Over HTTP: bids per second from all bidders together, instead of as
    /// fast as they can (for fan-out at a steady rate).
    #[arg(long)]
    bid_rate: Option<f64>,
    /// Over HTTP: each bid as its own request (`http`), as a message on
    /// the live room socket of its auction (`ws`, one socket per auction
    /// the bidder bids on), or on the bidder's own socket (`bidder-ws`,
    /// one socket for every auction, answers only).
    #[arg(long, value_enum, default_value = "http")]
    bid_over: http::BidOver,
    /// A flag for the example server started here, as its command line
    /// takes it (`--server-arg=--ws-write-delay-ms=0`); repeatable.
    #[arg(
        long = "server-arg",
        allow_hyphen_values = true,
        conflicts_with = "target"
    )]
    server_args: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Via {
    Engine,
    Http,
    Both,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    Hot,
    Spread,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum StoreKind {
    Postgres,
    Sqlite,
    Memory,
}

/// A setting to run with, without, or both one after the other.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Setting {
    On,
    Off,
    Both,
}

impl Setting {
    fn values(self) -> Vec<bool> {
        match self {
            Setting::On => vec![true],
            Setting::Off => vec![false],
            Setting::Both => vec![false, true],
        }
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let mut rounds = Vec::new();
    for _ in 0..args.rounds.max(1) {
        rounds.push(round(&args).await);
    }
    // One round's ratios, or each ratio's median over the rounds: the
    // machine's speed drifts within minutes, and a round's runs are side
    // by side.
    let mut output = json!({});
    let names: BTreeSet<&str> = rounds
        .iter()
        .flat_map(|r| r.ratios.keys().copied())
        .collect();
    for name in names {
        let mut values: Vec<f64> = rounds
            .iter()
            .filter_map(|r| r.ratios.get(name).copied())
            .collect();
        if let Some(median) = median(&mut values) {
            output[name] = json!(median);
        }
    }
    if args.pgbench {
        let auctions = match args.mode {
            Mode::Hot => 1,
            Mode::Spread => args.auctions,
        };
        let tps = pgbench(args.tasks, args.seconds, auctions).await;
        output["pgbench_tps"] = json!(tps);
        let mut rates: Vec<f64> = rounds.iter().filter_map(|r| r.best).collect();
        if let Some(best) = median(&mut rates) {
            output["decided_per_second_to_pgbench_tps"] = json!(best / tps);
        }
    }
    let mut runs = Vec::new();
    for (index, round) in rounds.iter_mut().enumerate() {
        for mut run in std::mem::take(&mut round.runs) {
            run["round"] = json!(index + 1);
            runs.push(run);
        }
    }
    if rounds.len() > 1 {
        let rounds: Vec<Value> = rounds.iter().map(Round::figures).collect();
        output["rounds"] = json!(rounds);
    }
    output["runs"] = json!(runs);
    println!("{output:#}");
}

/// One round: its runs, the ratios between them (each when its two runs
/// ran) and its best in-process rate, which pgbench is compared with.
struct Round {
    runs: Vec<Value>,
    ratios: BTreeMap<&'static str, f64>,
    best: Option<f64>,
}

impl Round {
    /// The round's own figures, as reported under `rounds`.
    fn figures(&self) -> Value {
        let mut figures = json!(self.ratios);
        if let Some(best) = self.best {
            figures["best_engine_decided_per_second"] = json!(best);
        }
        figures
    }
}

/// The middle of `values` (the mean of the two middle ones when even).
fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() {
        0 => None,
        n if n % 2 == 1 => Some(values[middle]),
        _ => Some((values[middle - 1] + values[middle]) / 2.0),
    }
}

/// Every run asked for, one after the other, and their ratios.
async fn round(args: &Args) -> Round {
    let mut runs = Vec::new();
    if args.via != Via::Http {
        runs.extend(engine_runs(args).await);
    }
    if args.via != Via::Engine {
        runs.push(http_run(args).await);
    }
    let rate = |run: &Value| run["decided_per_second"].as_f64().unwrap_or(0.0);
    let ratio = |a: &Value, b: &Value| rate(a) / rate(b).max(f64::MIN_POSITIVE);
    // The in-process run with these settings; unkeyed unless only keyed ran.
    let engine = |coalesce: bool, keyed: Option<bool>| {
        let keyed = keyed.unwrap_or(!args.keys.values().contains(&false));
        runs.iter().find(|run| {
            run["via"] == "engine" && run["coalesce_bids"] == coalesce && run["keyed"] == keyed
        })
    };
    let mut ratios = BTreeMap::new();
    if let (Some(off), Some(on)) = (engine(false, None), engine(true, None)) {
        ratios.insert("coalescing_speedup", ratio(on, off));
    }
    if let (Some(keyed), Some(unkeyed)) = (engine(true, Some(true)), engine(true, Some(false))) {
        ratios.insert("keyed_to_unkeyed", ratio(keyed, unkeyed));
    }
    let best = engine(true, None).or(engine(false, None));
    let http = runs.iter().find(|run| run["via"] == "http");
    if let (Some(engine), Some(http)) = (best, http) {
        ratios.insert("http_to_engine", ratio(http, engine));
    }
    if let (Some(keyed), Some(http)) = (engine(true, Some(true)), http) {
        ratios.insert("http_to_keyed_engine", ratio(http, keyed));
    }
    let best = best.or(runs.first()).map(rate);
    Round { runs, ratios, best }
}

/// The in-process runs, one per coalescing and keys setting asked for.
async fn engine_runs(args: &Args) -> Vec<Value> {
    let settings = args.coalesce.values().into_iter().flat_map(|coalesce| {
        let keys = args.keys.values();
        keys.into_iter().map(move |keyed| (coalesce, keyed))
    });
    let mut runs = Vec::new();
    for (coalesce_bids, keyed) in settings {
        let load = Load {
            tasks: args.tasks,
            duration: Duration::from_secs(args.seconds),
            auctions: args.auctions,
            wallets: args.wallets,
            coalesce_bids,
            keyed,
            caller_work: Duration::from_micros(args.caller_work_us),
        };
        let mut summary = match args.store {
            StoreKind::Memory => {
                let report = run(MemoryStore::new(), args.mode, load.clone()).await;
                summary(args, &load, &report)
            }
            StoreKind::Sqlite => {
                let dir = std::env::temp_dir().join(format!(
                    "neighborbid-loadgen-{}-{}",
                    std::process::id(),
                    runs.len()
                ));
                std::fs::create_dir_all(&dir).expect("a temporary directory");
                let store = neighborbid_sqlx::SqliteStore::open(dir.join("loadgen.db"))
                    .await
                    .expect("open SQLite");
                store.migrate().await.expect("migrate");
                let report = run(store, args.mode, load.clone()).await;
                let _ = std::fs::remove_dir_all(&dir);
                summary(args, &load, &report)
            }
            StoreKind::Postgres => {
                let db = TestDatabase::create().await;
                // As in production: decisions timed by the database's clock.
                let options = (db.options().max_connections(args.connections)).database_clock(true);
                let store = db.store_with(options).await;
                let report = run(store.clone(), args.mode, load.clone()).await;
                let mut summary = summary(args, &load, &report);
                summary["deadlocks"] = json!(store.conflicts().deadlocks);
                summary
            }
        };
        summary["coalesce_bids"] = json!(coalesce_bids);
        summary["keyed"] = json!(keyed);
        summary["caller_work_us"] = json!(args.caller_work_us);
        runs.push(summary);
    }
    runs
}

/// One run over HTTP, against `--target` or a server started here on a
/// fresh Postgres database.
async fn http_run(args: &Args) -> Value {
    let load = |base: String| http::HttpLoad {
        base,
        hot: matches!(args.mode, Mode::Hot),
        bidders: args.tasks,
        auctions: args.auctions,
        watchers: args.watchers,
        duration: Duration::from_secs(args.seconds),
        bid_rate: args.bid_rate,
        bid_over: args.bid_over,
    };
    if let Some(target) = &args.target {
        return load(target.trim_end_matches('/').to_owned()).run().await;
    }
    let db = TestDatabase::create().await;
    let flags = [
        "neighborbid-server",
        "--listen",
        "127.0.0.1:0",
        "--rate-limit",
        "0",
        "--database-url",
        db.url(),
    ];
    let config = neighborbid_server::Config::try_parse_from(
        flags
            .into_iter()
            .chain(args.server_args.iter().map(String::as_str)),
    )
    .unwrap_or_else(|error| panic!("--server-arg: {error}"));
    // The server on its own runtime and threads, as in its own process:
    // its tasks do not queue behind the clients'.
    let (address_tx, address_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        runtime.block_on(async move {
            let server = neighborbid_server::start(config)
                .await
                .expect("the server starts");
            let _ = address_tx.send(server.address);
            let _ = stop_rx.await;
            server.stop().await;
        });
    });
    let address = address_rx.await.expect("the server's address");
    let mut summary = load(format!("http://{address}")).run().await;
    summary["server_args"] = json!(args.server_args);
    let _ = stop_tx.send(());
    tokio::task::spawn_blocking(move || serving.join().expect("the server thread"))
        .await
        .expect("joined");
    summary
}

/// p50, p99 and the maximum of `latencies`, in milliseconds.
fn milliseconds(latencies: &Latencies) -> Value {
    let ms = |quantile: f64| latencies.quantile(quantile).as_secs_f64() * 1000.0;
    json!({ "p50": ms(0.5), "p99": ms(0.99), "max": ms(1.0) })
}

/// Runs `benches/pgbench/place_bid.sql` on a fresh database with `clients`
/// clients for `seconds` over `auctions` auctions; returns its
/// transactions per second.
async fn pgbench(clients: usize, seconds: u64, auctions: usize) -> f64 {
    let db = TestDatabase::create().await;
    db.store().await; // migrated
    let scripts = concat!(env!("CARGO_MANIFEST_DIR"), "/pgbench");
    let setup = std::process::Command::new("psql")
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-v"])
        .arg(format!("auctions={auctions}"))
        .args(["-f", &format!("{scripts}/setup.sql"), db.url()])
        .status()
        .expect("psql runs");
    assert!(setup.success(), "pgbench set-up failed");
    let output = std::process::Command::new("pgbench")
        .args(["-n", "-M", "prepared", "-j", "2"])
        .arg(format!("-c{clients}"))
        .arg(format!("-T{seconds}"))
        .arg(format!("-Dauctions={auctions}"))
        .args(["-f", &format!("{scripts}/place_bid.sql"), db.url()])
        .output()
        .expect("pgbench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|tps| tps.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no tps from pgbench: {stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

async fn run<S: Store>(store: S, mode: Mode, load: Load) -> StressReport {
    match mode {
        Mode::Hot => testkit::hot_auction(store, load).await,
        Mode::Spread => testkit::many_auctions(store, load).await,
    }
}

fn summary(args: &Args, load: &Load, report: &StressReport) -> Value {
    json!({
        "via": "engine",
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "store": format!("{:?}", args.store).to_lowercase(),
        "tasks": load.tasks,
        "seconds": report.elapsed.as_secs_f64(),
        "decided": report.decided(),
        "accepted": report.accepted,
        "decided_per_second": report.decided_per_second(),
        "accepted_per_second": report.accepted_per_second(),
        "bid_latency_ms": milliseconds(&report.latencies),
        "rejected": report.rejected,
        // The load test checks the books and panics on any violation.
        "invariants": "ok",
    })
}
