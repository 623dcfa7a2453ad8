//! Rule decisions and the engine on the memory store, side by side.
//!
//! `cargo bench -p neighborbid-benches`. Compare the ratios within one run:
//! the machine is shared and noisy.

use chrono::{TimeDelta, Utc};
use criterion::{criterion_main, Criterion};
use neighborbid_core::rules::{self, AuctionState, Rules, SameRegion};
use neighborbid_core::{
    Auction, AuctionId, AuctionPolicy, CreateAuction, Currency, Deposit, Engine, EngineConfig,
    EngineError, Hold, Listing, MemoryStore, Money, NoopNotifier, PlaceBid, Rejection, UserId,
    Wallet,
};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// An auction created an hour ago, led by user 2 at 500 after 400 bids.
fn hot_auction() -> Auction {
    let now = Utc::now();
    let policy = AuctionPolicy::fixed(Money::units(1));
    let cmd = CreateAuction {
        listing: Listing::new(UserId(1), "bench", Money::units(100), policy),
        starts_at: None,
        ends_at: now + TimeDelta::hours(1),
    };
    let currency = Currency::default();
    let rules = Rules {
        currency: &currency,
        region_policy: &SameRegion,
    };
    let mut auction =
        rules::create_auction(rules, &cmd, now - TimeDelta::hours(1)).expect("a valid auction");
    auction.id = AuctionId(1);
    let bidding = &mut auction.bidding;
    bidding.current_price = Money::units(500);
    bidding.leader = Some(UserId(2));
    bidding.max_bid = Some(Money::units(500));
    bidding.reserve_met = true;
    bidding.bid_count = 400;
    bidding.seq = 400;
    auction
}

fn decide(c: &mut Criterion) {
    let auction = hot_auction();
    let holds = [Hold {
        auction_id: auction.id,
        user: UserId(2),
        amount: Money::units(500),
    }];
    let wallets = [
        Wallet {
            user: UserId(2),
            balance: Money::units(1_000),
            locked: Money::units(500),
        },
        Wallet {
            user: UserId(3),
            balance: Money::units(1_000),
            locked: Money::ZERO,
        },
    ];
    let currency = Currency::default();
    let rules = Rules {
        currency: &currency,
        region_policy: &SameRegion,
    };
    let now = Utc::now();
    let state = AuctionState {
        auction: &auction,
        holds: &holds,
        wallets: &wallets,
    };
    let accepted = PlaceBid {
        auction_id: auction.id,
        bidder: UserId(3),
        bidder_region: None,
        amount: Money::units(501),
        max_amount: None,
    };
    let stale = PlaceBid {
        amount: Money::units(450),
        ..accepted.clone()
    };
    c.bench_function("rules/place_bid accepted", |b| {
        b.iter(|| rules::place_bid(rules, state, &accepted, now))
    });
    c.bench_function("rules/place_bid too low", |b| {
        b.iter(|| rules::place_bid(rules, state, &stale, now))
    });
}

/// An engine on the memory store with `bidders` rich bidders (user ids
/// from 2) and `auctions` fresh auctions.
async fn engine_with(
    coalesce_bids: bool,
    bidders: i64,
    auctions: usize,
) -> (Engine<MemoryStore, NoopNotifier>, Vec<AuctionId>) {
    let config = EngineConfig {
        coalesce_bids,
        ..EngineConfig::default()
    };
    let engine = Engine::with_config(MemoryStore::new(), NoopNotifier, config);
    for user in (2..2 + bidders).map(UserId) {
        let amount = Money::units(1_000_000_000);
        engine
            .deposit(Deposit { user, amount }, None)
            .await
            .expect("deposit");
    }
    let mut ids = Vec::new();
    for _ in 0..auctions {
        let cmd = CreateAuction {
            listing: Listing::new(
                UserId(1),
                "hot",
                Money::units(1),
                AuctionPolicy::fixed(Money::units(1)),
            ),
            starts_at: None,
            ends_at: engine.now() + TimeDelta::days(1),
        };
        ids.push(engine.create_auction(cmd, None).await.expect("auction").id);
    }
    (engine, ids)
}

const BIDDERS: [UserId; 2] = [UserId(2), UserId(3)];

/// The `price`-th winning bid on `auction`, the two bidders in turn.
fn winning_bid(auction: AuctionId, price: u64) -> PlaceBid {
    PlaceBid {
        auction_id: auction,
        bidder: BIDDERS[(price % 2) as usize],
        bidder_region: None,
        amount: Money::units(price),
        max_amount: None,
    }
}

/// One hot auction, one thread, as the load generator's hot mode bids:
/// 64 bidders in turn, each bidding the minimum it last saw (from its own
/// receipt or from the refusal), so most bids are stale and refused.
/// Reported per decided bid, accepted or refused.
fn engine_hot_auction(c: &mut Criterion) {
    const HOT_BIDDERS: i64 = 64;
    let runtime = current_thread();
    for coalesce_bids in [false, true] {
        let (engine, auctions) = runtime.block_on(engine_with(coalesce_bids, HOT_BIDDERS, 1));
        let mut seen = vec![Money::units(1); HOT_BIDDERS as usize];
        let mut turn = 0;
        let name = format!("engine/memory hot auction, 64 bidders, coalescing {coalesce_bids}");
        c.bench_function(&name, |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iterations {
                        turn = (turn + 1) % seen.len();
                        let bid = PlaceBid {
                            auction_id: auctions[0],
                            bidder: UserId(2 + turn as i64),
                            bidder_region: None,
                            amount: seen[turn],
                            max_amount: None,
                        };
                        seen[turn] = match engine.place_bid(bid, None).await {
                            Ok(receipt) => receipt.auction.min_next_bid(),
                            Err(EngineError::Rejected(Rejection::BidTooLow { min_next_bid })) => {
                                min_next_bid
                            }
                            Err(error) => panic!("unexpected answer: {error}"),
                        };
                    }
                    start.elapsed()
                })
            })
        });
    }
}

/// One hot auction, one thread: every bid wins (the most work a bid does).
fn engine_hot_auction_every_bid_wins(c: &mut Criterion) {
    let runtime = current_thread();
    for coalesce_bids in [false, true] {
        let (engine, auctions) = runtime.block_on(engine_with(coalesce_bids, 2, 1));
        let mut price = 0u64;
        let name = format!("engine/memory hot auction, every bid wins, coalescing {coalesce_bids}");
        c.bench_function(&name, |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iterations {
                        price += 1;
                        let bid = winning_bid(auctions[0], price);
                        engine.place_bid(bid, None).await.expect("bid");
                    }
                    start.elapsed()
                })
            })
        });
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Many auctions, two threads, each thread bidding on its own half.
fn engine_many_auctions(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (engine, auctions) = runtime.block_on(engine_with(true, 2, 64));
    let prices = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    c.bench_function("engine/memory 64 auctions, 2 threads, per bid", |b| {
        b.iter_custom(|iterations| {
            let start = Instant::now();
            runtime.block_on(async {
                let halves = auctions.chunks(auctions.len() / 2).map(<[_]>::to_vec);
                let tasks: Vec<_> = halves
                    .map(|mine| {
                        let (engine, prices) = (engine.clone(), prices.clone());
                        tokio::spawn(async move {
                            for i in 0..iterations / 2 {
                                let auction = mine[i as usize % mine.len()];
                                // Rising prices across all auctions: every bid wins.
                                let price = prices.fetch_add(1, Ordering::Relaxed) + 1;
                                let bid = winning_bid(auction, price);
                                engine.place_bid(bid, None).await.expect("bid");
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.expect("bidding task");
                }
            });
            start.elapsed()
        })
    });
}

/// Every benchmark in this file (what `criterion_group!` would generate,
/// written out so it can carry a doc comment).
fn benches() {
    let mut criterion = Criterion::default().configure_from_args();
    decide(&mut criterion);
    engine_hot_auction(&mut criterion);
    engine_hot_auction_every_bid_wins(&mut criterion);
    engine_many_auctions(&mut criterion);
}

criterion_main!(benches);
