//! `EngineConfig::coalesce_bids` turns coalescing off: then every bid
//! waits for a transaction of its own. (With it on, the conformance test
//! `coalesced_bids_share_one_transaction` shows the batches, on every
//! store.)

use std::sync::Arc;

use neighborbid_core::testkit::{self, bid_of, GatedStore, ALICE, BOB, CAROL};
use neighborbid_core::{Engine, EngineConfig, MemoryStore, NoopNotifier};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_coalescing_every_bid_has_its_own_transaction() {
    let store = GatedStore::new(MemoryStore::new());
    let config = EngineConfig {
        coalesce_bids: false,
        ..EngineConfig::default()
    };
    let engine = Engine::with_config(Arc::clone(&store), NoopNotifier, config);
    testkit::fund(&engine, &[ALICE, BOB, CAROL], 1_000).await;
    let auction = testkit::national_auction(engine.now(), 100, 10);
    let auction = engine
        .create_auction(auction, None)
        .await
        .expect("create")
        .id;

    store.close();
    let tasks: Vec<_> = [(ALICE, 100), (BOB, 200), (CAROL, 300)]
        .into_iter()
        .map(|(bidder, units)| {
            let engine = engine.clone();
            tokio::spawn(
                async move { engine.place_bid(bid_of(auction, bidder, units), None).await },
            )
        })
        .collect();
    while store.waiting() < 3 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        engine.waiting_bids(auction),
        0,
        "nothing queues in the engine"
    );
    store.open();
    for task in tasks {
        let result = task.await.expect("a bid task");
        assert!(
            result.is_ok() || result.as_ref().is_err_and(|e| e.rejection().is_some()),
            "{result:?}"
        );
    }
}
