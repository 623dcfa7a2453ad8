//! `--demo`: users, wallets, auctions and a few bids, so a newcomer sees a
//! living site at once.

use std::error::Error;

use chrono::TimeDelta;
use neighborbid_core::{
    AuctionPolicy, BuyNowPolicy, ClosePolicy, CreateAuction, Deposit, Engine, Increment, Listing,
    Money, Notifier, PlaceBid, Region, Scope, Store, UserId,
};

use crate::accounts::{Accounts, Credentials};
use crate::catalogue;

/// Every demo user's password.
pub(crate) const DEMO_PASSWORD: &str = "demo-password";

pub(crate) async fn demo<S: Store, N: Notifier>(
    engine: &Engine<S, N>,
    accounts: &Accounts,
) -> Result<(), Box<dyn Error + Send + Sync>> {
    if accounts.count().await? > 0 {
        tracing::info!("the database already has users; --demo adds nothing");
        return Ok(());
    }
    let mut users = Vec::new();
    for (name, region) in [
        ("mina", "seoul/mapo/mangwon"),
        ("jun", "seoul/mapo/mangwon"),
        ("seoyeon", "seoul/mapo/hapjeong"),
        ("minho", "seoul/mapo/yeonnam"),
    ] {
        let credentials = Credentials {
            username: name.into(),
            password: DEMO_PASSWORD.into(),
            region: Some(region.into()),
        };
        let (account, _) = accounts
            .sign_up(&credentials)
            .await
            .map_err(|e| e.body().message.clone())?;
        let user = UserId(account.id);
        engine
            .deposit(
                Deposit {
                    user,
                    amount: Money::units(500_000),
                },
                None,
            )
            .await?;
        users.push((user, Region::new(region)));
    }
    let now = engine.now();
    // (title, scope, start, increment, buy-now, hours, seller, bidder) with
    // users by index: mina and jun live in mangwon, seoyeon in hapjeong.
    let mangwon = || Scope::Local {
        region: Region::new("seoul/mapo/mangwon"),
    };
    let hapjeong = || Scope::Local {
        region: Region::new("seoul/mapo/hapjeong"),
    };
    let fixed = |unit| Increment::Fixed {
        unit: Money::units(unit),
    };
    let items = [
        (
            "Film camera (Pentax K1000)",
            ("electronics", "a"),
            Scope::National,
            30_000,
            Increment::ebay_ladder(),
            Some(180_000),
            2,
            0,
            Some(1),
        ),
        (
            "Road bike, 54 cm",
            ("sports", "b"),
            Scope::National,
            150_000,
            fixed(5_000),
            None,
            26,
            1,
            Some(3),
        ),
        (
            "Rice cooker, barely used",
            ("home", "s"),
            mangwon(),
            10_000,
            fixed(1_000),
            Some(40_000),
            5,
            0,
            Some(1),
        ),
        (
            "Potted monstera",
            ("other", "new"),
            hapjeong(),
            5_000,
            fixed(500),
            None,
            50,
            2,
            None,
        ),
    ];
    for (title, (category, condition), scope, start, increment, buy_now, hours, seller, bidder) in
        items
    {
        let policy = AuctionPolicy {
            increment,
            reserve_price: title.starts_with("Road").then(|| Money::units(200_000)),
            close: ClosePolicy::Soft {
                window_secs: 120,
                extend_by_secs: 120,
                max_extensions: 10,
            },
            buy_now: BuyNowPolicy::Always,
        };
        let listing = Listing {
            description: "A demo item: bid away.".into(),
            category: Some(category.into()),
            attributes: [
                (catalogue::CONDITION.to_owned(), condition.to_owned()),
                (catalogue::SHIPPING_PAYER.to_owned(), "buyer".to_owned()),
            ]
            .into(),
            scope,
            buy_now_price: buy_now.map(Money::units),
            ..Listing::new(users[seller].0, title, Money::units(start), policy)
        };
        let auction = engine
            .create_auction(
                CreateAuction {
                    listing,
                    starts_at: None,
                    ends_at: now + TimeDelta::hours(hours),
                },
                None,
            )
            .await?;
        if let Some(bidder) = bidder {
            let (bidder, region) = users[bidder].clone();
            let bid = PlaceBid {
                auction_id: auction.id,
                bidder,
                bidder_region: Some(region),
                amount: auction.min_next_bid(),
                max_amount: None,
            };
            engine.place_bid(bid, None).await?;
        }
    }
    tracing::info!(
        users = "mina, jun, seoyeon, minho",
        password = DEMO_PASSWORD,
        "demo data created"
    );
    Ok(())
}
