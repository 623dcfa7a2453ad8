//! The bank test, for auctions: a crowd of careful clients (see [`load`])
//! uses the example server on Postgres while faults hit it, and after each
//! fault the books are checked against the money rules and against every
//! answer the crowd got ([`books`], [`outbox`]).
//!
//! - SIGKILL of the server at random moments, then a restart.
//! - Postgres going away under load (every connection cut and new ones
//!   refused for a while, through a proxy, as a restart looks from the
//!   server) and server connections killed with `pg_terminate_backend`.
//!
//! The CI run is short. A soak runs the same faults for longer and prints
//! its figures (README, "Faults and soak"):
//!
//! ```text
//! NEIGHBORBID_SOAK_SECONDS=600 cargo test --release -p neighborbid-server \
//!     --test faults -- --nocapture --test-threads 1
//! ```

#[path = "../common/process.rs"]
mod process;

mod books;
mod load;
mod outbox;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use load::{Crowd, Load, Log};
use neighborbid_core::testkit::TcpProxy;
use neighborbid_redis::testing::TestRedis;
use neighborbid_sqlx::testing::TestDatabase;
use outbox::Consumer;
use process::Process;
use serde_json::json;

/// How long faults go on: `rounds` in CI, or as many as fit in
/// `NEIGHBORBID_SOAK_SECONDS`.
struct Plan {
    rounds: usize,
    soak: Option<Duration>,
    started: Instant,
}

impl Plan {
    fn new(rounds: usize) -> Plan {
        let soak = std::env::var("NEIGHBORBID_SOAK_SECONDS")
            .ok()
            .map(|seconds| {
                let seconds = seconds
                    .parse()
                    .expect("NEIGHBORBID_SOAK_SECONDS is a number of seconds");
                Duration::from_secs(seconds)
            });
        Plan {
            rounds,
            soak,
            started: Instant::now(),
        }
    }

    fn another(&self, done: usize) -> bool {
        match self.soak {
            Some(soak) => self.started.elapsed() < soak,
            None => done < self.rounds,
        }
    }
}

/// What a run did and found, printed as one JSON object.
struct Report {
    test: &'static str,
    faults: BTreeMap<&'static str, u64>,
    violations: Vec<String>,
    started: Instant,
}

impl Report {
    fn new(test: &'static str) -> Report {
        Report {
            test,
            faults: BTreeMap::new(),
            violations: Vec::new(),
            started: Instant::now(),
        }
    }

    fn fault(&mut self, kind: &'static str) {
        *self.faults.entry(kind).or_default() += 1;
    }

    /// Adds findings, naming the round they came from.
    fn found(&mut self, round: usize, findings: Vec<String>) {
        let findings = findings
            .into_iter()
            .map(|finding| format!("round {round}: {finding}"));
        self.violations.extend(findings);
    }

    /// Prints the figures and fails on any violation.
    fn finish(mut self, log: &Log, extra: serde_json::Value) {
        self.violations.extend(log.violations.iter().cloned());
        let figures = json!({
            "test": self.test,
            "seconds": self.started.elapsed().as_secs_f64(),
            "operations": log.operations(),
            "answers": log.answers,
            "retried": log.retried,
            "faults": self.faults,
            "invariant_violations": self.violations.len(),
            "extra": extra,
        });
        println!("{figures}");
        assert!(
            self.violations.is_empty(),
            "{} violations:\n{}",
            self.violations.len(),
            self.violations.join("\n")
        );
    }
}

/// The address of the server process that is up now, for the crowd.
fn base(server: &Process) -> String {
    format!("http://{}", server.address)
}

/// A random time of load between faults.
async fn run_for(low_ms: u64, high_ms: u64) {
    tokio::time::sleep(Duration::from_millis(fastrand::u64(low_ms..high_ms))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing() {
    let db = TestDatabase::create().await;
    let redis = TestRedis::connect().await;
    let consumer = Consumer::start(&redis).await;
    let redis_url = redis.config().url.clone();
    let args = [
        "--database-url",
        db.url(),
        "--redis-url",
        &redis_url,
        "--redis-prefix",
        &redis.config().prefix,
        "--fan-out-local",
        "--rate-limit",
        "0",
        "--close-every-ms",
        "100",
    ];
    let spawn = || Process::spawn_with(&args, &[], "error");
    let mut server = spawn().await;
    let (address, addresses) = tokio::sync::watch::channel(base(&server));
    let crowd = Crowd {
        sellers: 3,
        bidders: 8,
    };
    let mut load = Load::start(addresses, crowd, false).await;
    let mut checker = books::connect(db.url()).await;
    let mut report = Report::new("sigkill");
    let plan = Plan::new(20);

    let mut round = 0;
    while plan.another(round) {
        round += 1;
        run_for(200, 1200).await;
        server.kill().await;
        report.fault("sigkill");
        // Clients keep knocking at the dead address for a moment.
        run_for(0, 300).await;
        server = spawn().await;
        address.send_replace(base(&server));
        // Requests cut off by the kill are answered by the new process.
        load.pause().await;
        let findings = audit(&mut checker, &load.log(), Some((&consumer, false))).await;
        report.found(round, findings);
        load.resume();
    }

    let log = load.stop().await;
    // The restarted relay sends what the killed ones committed but never
    // sent (after its grace period).
    let findings = audit(&mut checker, &log, Some((&consumer, true))).await;
    report.found(round, findings);
    server.terminate().await;
    let extra = json!({ "duplicate_deliveries_dropped": consumer.duplicates() });
    report.finish(&log, extra);
}

/// The checks after a fault, once the crowd's requests in flight have
/// their answers: the closer catches up, the books agree with `log`, and
/// with a consumer, the events delivered so far arrived (`true`: first
/// wait for every committed event to be delivered).
async fn audit(
    checker: &mut sqlx::PgConnection,
    log: &Log,
    consumer: Option<(&Consumer, bool)>,
) -> Vec<String> {
    let mut findings = books::await_settled(checker, Duration::from_secs(10)).await;
    findings.extend(books::check(checker, log).await);
    if let Some((consumer, all)) = consumer {
        let patience = Duration::from_secs(if all { 20 } else { 5 });
        findings.extend(consumer.check(checker, all, patience).await);
    }
    findings
}

/// How Postgres fails in [`postgres_outages_and_killed_connections_heal`].
#[derive(Clone, Copy)]
enum DbFault {
    /// Every connection cut, new ones refused for a while: a restart, as
    /// the server sees it.
    Outage,
    /// The server's backends killed by an administrator.
    TerminateBackends,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outages_and_killed_connections_heal() {
    let db = TestDatabase::create().await;
    let mut url = reqwest::Url::parse(db.url()).expect("a database URL");
    let target = format!(
        "{}:{}",
        url.host_str().expect("a database host"),
        url.port().unwrap_or(5432)
    );
    let proxy = TcpProxy::start(target).await;
    url.set_port(Some(proxy.address().port())).expect("a port");
    url.set_host(Some(&proxy.address().ip().to_string()))
        .expect("a host");
    let server = Process::spawn_with(
        &[
            "--database-url",
            url.as_str(),
            "--rate-limit",
            "0",
            "--close-every-ms",
            "100",
        ],
        &[],
        "error",
    )
    .await;
    let (_address, addresses) = tokio::sync::watch::channel(base(&server));
    let crowd = Crowd {
        sellers: 2,
        bidders: 6,
    };
    // The server must stay up: a request it drops is a violation.
    let mut load = Load::start(addresses, crowd, true).await;
    let mut checker = books::connect(db.url()).await;
    let mut report = Report::new("postgres");
    let plan = Plan::new(6);

    let mut round = 0;
    while plan.another(round) {
        round += 1;
        run_for(300, 1000).await;
        let fault = if round % 2 == 1 {
            DbFault::Outage
        } else {
            DbFault::TerminateBackends
        };
        match fault {
            DbFault::Outage => {
                proxy.cut();
                report.fault("outage");
                run_for(300, 1500).await;
                proxy.restore();
            }
            DbFault::TerminateBackends => {
                let killed = terminate_backends(&mut checker, db.name()).await;
                report.fault("terminate_backend");
                *report.faults.entry("backends_terminated").or_default() += killed;
            }
        }
        let mut findings = healthy_again(&server, Duration::from_secs(20)).await;
        load.pause().await;
        findings.extend(audit(&mut checker, &load.log(), None).await);
        report.found(round, findings);
        load.resume();
    }

    let log = load.stop().await;
    let findings = audit(&mut checker, &log, None).await;
    report.found(round, findings);
    let retried: u64 = log.retried.values().sum();
    server.terminate().await;
    report.finish(&log, json!({}));
    assert!(
        retried > 0,
        "the faults never reached a request: nothing was tested"
    );
}

/// Kills every connection to `database` except the checker's; returns how
/// many.
async fn terminate_backends(checker: &mut sqlx::PgConnection, database: &str) -> u64 {
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = $1 AND application_name <> $2 AND pid <> pg_backend_pid()",
    )
    .bind(database)
    .bind(books::CHECKER)
    .fetch_all(checker)
    .await
    .expect("pg_terminate_backend");
    killed.into_iter().filter(|killed| *killed).count() as u64
}

/// Waits until the server says it is healthy again, by itself.
async fn healthy_again(server: &Process, limit: Duration) -> Vec<String> {
    let started = Instant::now();
    let url = format!("{}/healthz", base(server));
    loop {
        let answer = reqwest::get(&url).await;
        if answer.is_ok_and(|answer| answer.status().is_success()) {
            return Vec::new();
        }
        if started.elapsed() > limit {
            return vec![format!("the server was not healthy again within {limit:?}")];
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
