//! A scripted auction on the in-memory store: two bidders compete, the
//! auction ends, the winner pays the seller. Run it with
//! `cargo run -p neighborbid-quickstart`.

use chrono::TimeDelta;
use neighborbid_core::{
    AuctionPolicy, BroadcastNotifier, Clock, CreateAuction, Deposit, Engine, EngineConfig, Listing,
    ManualClock, MemoryStore, Money, Page, PlaceBid, SystemClock, UserId,
};
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A manual clock lets the script jump to the auction's end.
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let config = EngineConfig {
        clock: clock.clone(),
        ..EngineConfig::default()
    };
    let notifier = BroadcastNotifier::default();
    let mut events = notifier.subscribe();
    let engine = Engine::with_config(MemoryStore::new(), notifier, config);

    let (seller, mina, jun) = (UserId(1), UserId(2), UserId(3));
    for user in [mina, jun] {
        engine
            .deposit(
                Deposit {
                    user,
                    amount: Money::units(50_000),
                },
                None,
            )
            .await?;
    }
    let auction = engine
        .create_auction(
            CreateAuction {
                listing: Listing {
                    description: "Works, with a 50mm lens".into(),
                    ..Listing::new(
                        seller,
                        "Film camera",
                        Money::units(10_000),
                        AuctionPolicy::fixed(Money::units(1_000)),
                    )
                },
                starts_at: None,
                ends_at: engine.now() + TimeDelta::minutes(10),
            },
            None,
        )
        .await?;
    println!(
        "auction {} opened at {}",
        auction.id, auction.listing.start_price
    );

    for (bidder, amount) in [
        (mina, 10_000),
        (jun, 12_000),
        (mina, 11_000),
        (mina, 15_000),
    ] {
        let bid = PlaceBid {
            auction_id: auction.id,
            bidder,
            bidder_region: None,
            amount: Money::units(amount),
            max_amount: None,
        };
        match engine.place_bid(bid, None).await {
            Ok(receipt) => println!(
                "user {bidder} leads at {}; next bid at least {}",
                receipt.auction.bidding.current_price,
                receipt.auction.min_next_bid()
            ),
            Err(refused) => println!("user {bidder} bid {amount}: refused ({refused})"),
        }
    }

    clock.advance(TimeDelta::minutes(10));
    for closed in engine.close_due_auctions(100).await? {
        println!("auction {} closed: {}", closed.id, closed.bidding.status);
    }
    for user in [seller, mina, jun] {
        let wallet = engine.wallet(user, Page::first(1)).await?.wallet;
        println!(
            "user {user}: balance {} locked {}",
            wallet.balance, wallet.locked
        );
    }
    while let Ok(event) = events.try_recv() {
        println!("event #{}: {:?}", event.seq, event.public);
    }
    Ok(())
}
