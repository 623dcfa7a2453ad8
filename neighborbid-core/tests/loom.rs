//! loom model of the memory store's concurrency: every interleaving of two
//! threads that bid the same wallet's whole balance on two auctions.
//!
//! Runs only under `--cfg loom` (`.ci/run` does this):
//! `RUSTFLAGS="--cfg loom" cargo test -p neighborbid-core --test loom --release`

#![cfg(loom)]

use chrono::{TimeDelta, TimeZone, Utc};
use loom::future::block_on;
use loom::sync::Arc;
use loom::thread;
use neighborbid_core::{
    AuctionPolicy, CreateAuction, Deposit, Engine, EngineConfig, EngineError, Listing, ManualClock,
    MemoryStore, Money, NoopNotifier, Page, PlaceBid, Rejection, RetryPolicy, UserId,
};

/// Stack for the model's bidding threads. loom runs each thread as a
/// coroutine on a 32 KiB stack by default, and the engine's futures are
/// large enough that a small change to them overflowed it; the futures
/// are also boxed so that they live on the heap, not that stack.
const THREAD_STACK: usize = 1 << 20;

fn engine() -> Engine<MemoryStore, NoopNotifier> {
    let start = Utc
        .with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
        .single()
        .expect("date");
    let config = EngineConfig {
        clock: std::sync::Arc::new(ManualClock::new(start)),
        // No sleeping inside the model: conflicts retry at once.
        retry: RetryPolicy {
            max_attempts: 50,
            base_delay: std::time::Duration::ZERO,
            max_delay: std::time::Duration::ZERO,
        },
        // The model explores the store's own concurrency; coalescing
        // hands bids to tokio tasks, which loom cannot schedule.
        coalesce_bids: false,
        ..EngineConfig::default()
    };
    Engine::with_config(MemoryStore::new(), NoopNotifier, config)
}

#[test]
fn two_threads_one_wallet_two_auctions() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(3);
    model.check(|| {
        let engine = engine();
        let spender = UserId(9);
        let auctions = block_on(Box::pin(async {
            let amount = Money::units(10_000);
            engine
                .deposit(
                    Deposit {
                        user: spender,
                        amount,
                    },
                    None,
                )
                .await
                .expect("deposit");
            let mut ids = Vec::new();
            for _ in 0..2 {
                let policy = AuctionPolicy::fixed(Money::units(1));
                let cmd = CreateAuction {
                    listing: Listing::new(UserId(1), "loom", amount, policy),
                    starts_at: None,
                    ends_at: engine.now() + TimeDelta::hours(1),
                };
                ids.push(engine.create_auction(cmd, None).await.expect("auction").id);
            }
            ids
        }));
        let engine = Arc::new(engine);
        let threads: Vec<_> = auctions
            .into_iter()
            .map(|auction_id| {
                let engine = engine.clone();
                thread::Builder::new()
                    .stack_size(THREAD_STACK)
                    .spawn(move || {
                        let bid = PlaceBid {
                            auction_id,
                            bidder: spender,
                            bidder_region: None,
                            amount: Money::units(10_000),
                            max_amount: None,
                        };
                        block_on(Box::pin(engine.place_bid(bid, None)))
                    })
                    .expect("spawn")
            })
            .collect();
        let results: Vec<_> = threads
            .into_iter()
            .map(|t| t.join().expect("join"))
            .collect();
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        assert!(results.iter().any(|r| matches!(
            r,
            Err(EngineError::Rejected(Rejection::InsufficientFunds { .. }))
        )));
        let wallet = block_on(Box::pin(engine.wallet(spender, Page::first(1)))).expect("wallet");
        assert_eq!(wallet.wallet.balance, Money::ZERO);
        assert_eq!(wallet.wallet.locked, Money::units(10_000));
        assert_eq!(wallet.holds.len(), 1);
    });
}
