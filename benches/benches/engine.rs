//! Rule decisions and the engine on the memory store, side by side.
//!
//! `cargo bench -p neighborbid-benches`. Compare the ratios within one run:
//! the machine is shared and noisy.

use chrono::{TimeDelta, Utc};
use criterion::{criterion_main, Criterion};
use neighborbid_core::rules::{self, AuctionState, Rules, SameRegion};
use neighborbid_core::{
    Auction, AuctionId, AuctionPolicy, AuctionStatus, CreateAuction, Currency, Deposit, Engine,
    Hold, MemoryStore, Money, NoopNotifier, PlaceBid, Scope, UserId, Wallet,
};

fn hot_auction() -> Auction {
    let now = Utc::now();
    Auction {
        id: AuctionId(1),
        seller: UserId(1),
        title: "bench".into(),
        description: String::new(),
        scope: Scope::National,
        start_price: Money::units(100),
        policy: AuctionPolicy::fixed(Money::units(1)),
        buy_now_price: None,
        starts_at: now - TimeDelta::hours(1),
        ends_at: now + TimeDelta::hours(1),
        status: AuctionStatus::Open,
        current_price: Money::units(500),
        leader: Some(UserId(2)),
        max_bid: Some(Money::units(500)),
        reserve_met: true,
        extensions: 0,
        bid_count: 400,
        seq: 400,
        created_at: now - TimeDelta::hours(1),
        closed_at: None,
    }
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

fn engine_hot_auction(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let engine = Engine::new(MemoryStore::new(), NoopNotifier);
    let bidders = [UserId(2), UserId(3)];
    let auction = runtime.block_on(async {
        for user in bidders {
            let amount = Money::units(1_000_000_000);
            engine
                .deposit(Deposit { user, amount }, None)
                .await
                .expect("deposit");
        }
        let cmd = CreateAuction {
            seller: UserId(1),
            title: "hot".into(),
            description: String::new(),
            scope: Scope::National,
            start_price: Money::units(1),
            policy: AuctionPolicy::fixed(Money::units(1)),
            buy_now_price: None,
            starts_at: None,
            ends_at: engine.now() + TimeDelta::days(1),
        };
        engine.create_auction(cmd, None).await.expect("auction")
    });
    let mut price = 0u64;
    c.bench_function("engine/memory hot auction bid", |b| {
        b.iter(|| {
            price += 1;
            let bid = PlaceBid {
                auction_id: auction.id,
                bidder: bidders[(price % 2) as usize],
                bidder_region: None,
                amount: Money::units(price),
                max_amount: None,
            };
            runtime.block_on(engine.place_bid(bid, None)).expect("bid")
        })
    });
}

/// Every benchmark in this file (what `criterion_group!` would generate,
/// written out so it can carry a doc comment).
fn benches() {
    let mut criterion = Criterion::default().configure_from_args();
    decide(&mut criterion);
    engine_hot_auction(&mut criterion);
}

criterion_main!(benches);
