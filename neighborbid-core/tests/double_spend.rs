//! The double-spend test of NeighborBid's first version, with real OS threads: one wallet with
//! 10,000, two auctions, two simultaneous 10,000 bids. Exactly one may win,
//! every time.

use std::sync::{Arc, Barrier};
use std::thread;

use neighborbid_core::testkit::{money, Harness};
use neighborbid_core::{EngineError, MemoryStore, Money, PlaceBid, Rejection, UserId};

#[test]
fn one_wallet_two_auctions_two_threads() {
    const ROUNDS: usize = 300;
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    };
    for round in 0..ROUNDS {
        let h = Harness::new(MemoryStore::new());
        let spender = UserId(100);
        let auctions = runtime().block_on(async {
            h.fund(spender, 10_000).await;
            [
                h.create(h.national(10_000, 100)).await.id,
                h.create(h.national(10_000, 100)).await.id,
            ]
        });
        let barrier = Arc::new(Barrier::new(2));
        let threads: Vec<_> = auctions
            .into_iter()
            .map(|auction_id| {
                let (engine, barrier) = (h.engine.clone(), barrier.clone());
                thread::spawn(move || {
                    let bid = PlaceBid {
                        auction_id,
                        bidder: spender,
                        bidder_region: None,
                        amount: money(10_000),
                        max_amount: None,
                    };
                    let runtime = runtime();
                    barrier.wait();
                    runtime.block_on(engine.place_bid(bid, None))
                })
            })
            .collect();
        let results: Vec<_> = threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        let accepted = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(accepted, 1, "round {round}: {results:?}");
        let refused = results.iter().find_map(|r| r.as_ref().err());
        assert!(
            matches!(
                refused,
                Some(EngineError::Rejected(Rejection::InsufficientFunds { available, .. }))
                    if *available == Money::ZERO
            ),
            "round {round}: {refused:?}"
        );
        let wallet = runtime().block_on(h.wallet(spender));
        assert_eq!(
            (wallet.balance, wallet.locked),
            (Money::ZERO, money(10_000))
        );
    }
}
