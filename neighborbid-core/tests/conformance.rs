//! The conformance suite on the memory store, and the load tests at a
//! size that suits a unit-test run.

use std::time::Duration;

use neighborbid_core::testkit::{self, Load};
use neighborbid_core::MemoryStore;

async fn fresh_store() -> (MemoryStore, ()) {
    (MemoryStore::new(), ())
}

neighborbid_core::conformance_tests!(fresh_store);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_auction_under_load() {
    let report = testkit::hot_auction(
        MemoryStore::new(),
        Load::new(16, Duration::from_millis(500)),
    )
    .await;
    assert!(report.accepted > 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_auctions_under_load() {
    let report = testkit::many_auctions(
        MemoryStore::new(),
        Load::new(16, Duration::from_millis(500)),
    )
    .await;
    assert!(report.accepted > 0, "{report:?}");
}

/// The caller's work is really done: each bid costs a task at least that
/// much time, which bounds how many bids it can decide (the bound cannot
/// be reached by a slow machine, only overshot by a skipped wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_work_is_spent_after_every_answer() {
    let (tasks, duration, work) = (2, Duration::from_millis(200), Duration::from_millis(10));
    let load = Load {
        caller_work: work,
        ..Load::new(tasks, duration)
    };
    let report = testkit::hot_auction(MemoryStore::new(), load).await;
    let per_task = report.elapsed.as_micros() / work.as_micros() + 1;
    let most = tasks as u128 * per_task;
    assert!(report.decided() > 0, "{report:?}");
    assert!(
        u128::from(report.decided()) <= most,
        "{} bids decided in {:?}, at most {most} with {work:?} of work each",
        report.decided(),
        report.elapsed
    );
}
