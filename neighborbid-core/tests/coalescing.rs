//! `EngineConfig::coalesce_bids` turns coalescing off: then every bid
//! waits for a transaction of its own. (With it on, the conformance test
//! `coalesced_bids_share_one_transaction` shows the batches, on every
//! store.)

use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use neighborbid_core::testkit::{bid_of, money, GatedStore, ALICE, BOB, CAROL, SELLER};
use neighborbid_core::{
    AuctionPolicy, CreateAuction, Deposit, Engine, EngineConfig, MemoryStore, NoopNotifier, Scope,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_coalescing_every_bid_has_its_own_transaction() {
    let store = GatedStore::new(MemoryStore::new());
    let config = EngineConfig {
        coalesce_bids: false,
        ..EngineConfig::default()
    };
    let engine = Engine::with_config(Arc::clone(&store), NoopNotifier, config);
    for user in [ALICE, BOB, CAROL] {
        let deposit = Deposit {
            user,
            amount: money(1_000),
        };
        engine.deposit(deposit, None).await.expect("deposit");
    }
    let auction = CreateAuction {
        seller: SELLER,
        title: "Lamp".into(),
        description: String::new(),
        scope: Scope::National,
        start_price: money(100),
        policy: AuctionPolicy::fixed(money(10)),
        buy_now_price: None,
        starts_at: None,
        ends_at: Utc::now() + TimeDelta::hours(1),
    };
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
