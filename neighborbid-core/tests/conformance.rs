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
