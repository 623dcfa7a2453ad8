//! Browsing: pages, filters, sorts and counts.

use super::*;

/// Lists come newest first and pages do not overlap.
pub async fn reads_are_paged_newest_first<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 10_000).await;
    let mut auctions = Vec::new();
    for _ in 0..3 {
        auctions.push(h.create(h.national(100, 10)).await.id);
    }
    for (i, auction) in auctions.iter().enumerate() {
        h.bid(*auction, ALICE, 100 + i as u64).await.expect("bid");
    }
    let bids = h
        .engine
        .user_bids(ALICE, Page::new(0, 2))
        .await
        .expect("bids");
    let seen: Vec<_> = bids.iter().map(|b| b.auction_id).collect();
    assert_eq!(seen, [auctions[2], auctions[1]]);
    let rest = h
        .engine
        .user_bids(ALICE, Page::new(2, 2))
        .await
        .expect("bids");
    assert_eq!(
        rest.iter().map(|b| b.auction_id).collect::<Vec<_>>(),
        [auctions[0]]
    );
    assert!(h
        .engine
        .user_bids(BOB, Page::default())
        .await
        .expect("none")
        .is_empty());

    let history = h
        .engine
        .wallet(ALICE, Page::new(1, 2))
        .await
        .expect("wallet")
        .history;
    let amounts: Vec<_> = history.iter().map(|e| e.amount).collect();
    assert_eq!(amounts, [money(101), money(100)]);
    let listed = h
        .engine
        .list_auctions(&AuctionFilter::default(), Page::new(1, 1))
        .await;
    assert_eq!(
        listed
            .expect("list")
            .iter()
            .map(|a| a.id)
            .collect::<Vec<_>>(),
        [auctions[1]]
    );
}

/// Browsing: text search ignoring case (wildcards taken literally),
/// category, region with its sub-regions, price range on the current price
/// (compared as decimals), phase, seller, every sort, paging and counts,
/// alone and combined; category and attributes round-trip.
pub async fn browsing_filters_sorts_and_counts<S: Store>(store: S) {
    let h = Harness::new(store);
    let now = h.now();
    let item = |title: &str, description: &str, category: &str, scope: Scope, start: &str| {
        national_auction(now, 1, 1).with_listing(|listing| {
            listing.title = title.into();
            listing.description = description.into();
            listing.category = Some(category.into());
            listing.scope = scope;
            listing.start_price = start.parse().expect("price");
        })
    };
    let local = |region: &str| Scope::Local {
        region: Region::new(region),
    };
    let hours = TimeDelta::hours;
    let mut desk = item(
        "Walnut desk",
        "solid wood",
        "furniture",
        local("seoul/mapo/mangwon"),
        "9",
    );
    desk.listing.attributes = [("condition", "a"), ("shipping", "buyer")]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    desk.ends_at = now + hours(4);
    let desk = h.create(desk).await;
    let mut chair = item(
        "Oak chair",
        "Matches the DESK",
        "furniture",
        local("seoul/mapo/hapjeong"),
        "10",
    );
    chair.ends_at = now + hours(1);
    let chair = h.create(chair).await;
    let mut camera = item(
        "Camera",
        "50mm lens",
        "electronics",
        local("seoul/gangnam/yeoksam"),
        "9.5",
    );
    camera.listing.seller = BOB;
    camera.ends_at = now + hours(3);
    let camera = h.create(camera).await;
    let mut bike = item("Bike 100%_off", "", "sports", Scope::National, "100.25");
    bike.ends_at = now + hours(2);
    let bike = h.create(bike).await;
    let mut lamp = item("Lamp", "", "furniture", Scope::National, "100.5");
    lamp.starts_at = Some(now + hours(1));
    lamp.ends_at = now + hours(5);
    let lamp = h.create(lamp).await;
    let mut rug = item("Rug", "", "home", Scope::National, "1000");
    rug.ends_at = now + hours(6);
    let rug = h.create(rug).await;
    h.engine
        .cancel_auction(
            CancelAuction {
                auction_id: rug.id,
                seller: SELLER,
            },
            None,
        )
        .await
        .expect("cancel");

    let fetched = h.auction(desk.id).await;
    assert_eq!(fetched, desk, "category and attributes round-trip");
    assert_eq!(fetched.listing.attributes["shipping"], "buyer");

    let ids = |filter: AuctionFilter, page: Page| {
        let engine = h.engine.clone();
        async move {
            let found = engine.list_auctions(&filter, page).await.expect("list");
            let count = engine.count_auctions(&filter).await.expect("count");
            (found.iter().map(|a| a.id).collect::<Vec<_>>(), count)
        }
    };
    let all = Page::default();
    let region = |name: &str| {
        Some(ScopeFilter::Local {
            region: Some(Region::new(name)),
        })
    };
    let price = |text: &str| Some(text.parse::<Money>().expect("price"));
    let cases: Vec<(&str, AuctionFilter, Vec<AuctionId>)> = vec![
        (
            "everything",
            AuctionFilter::default(),
            vec![rug.id, lamp.id, bike.id, camera.id, chair.id, desk.id],
        ),
        (
            "text in title or description, any case",
            AuctionFilter {
                text: Some("desk".into()),
                ..Default::default()
            },
            vec![chair.id, desk.id],
        ),
        (
            "% is literal",
            AuctionFilter {
                text: Some("100%".into()),
                ..Default::default()
            },
            vec![bike.id],
        ),
        (
            "_ is literal",
            AuctionFilter {
                text: Some("_".into()),
                ..Default::default()
            },
            vec![bike.id],
        ),
        (
            "category",
            AuctionFilter {
                category: Some("furniture".into()),
                ..Default::default()
            },
            vec![lamp.id, chair.id, desk.id],
        ),
        (
            "a district holds its neighbourhoods",
            AuctionFilter {
                scope: region("seoul/mapo"),
                ..Default::default()
            },
            vec![chair.id, desk.id],
        ),
        (
            "a city holds its districts",
            AuctionFilter {
                scope: region("seoul"),
                ..Default::default()
            },
            vec![camera.id, chair.id, desk.id],
        ),
        (
            "a neighbourhood",
            AuctionFilter {
                scope: region("seoul/mapo/mangwon"),
                ..Default::default()
            },
            vec![desk.id],
        ),
        (
            "a name prefix is not a parent",
            AuctionFilter {
                scope: region("seoul/map"),
                ..Default::default()
            },
            vec![],
        ),
        (
            "price range, bounds included, as decimals",
            AuctionFilter {
                min_price: price("9.50"),
                max_price: price("100.25"),
                ..Default::default()
            },
            vec![bike.id, camera.id, chair.id],
        ),
        (
            "scheduled",
            AuctionFilter {
                phase: Some(Phase::Scheduled),
                ..Default::default()
            },
            vec![lamp.id],
        ),
        (
            "open",
            AuctionFilter {
                phase: Some(Phase::Open),
                ..Default::default()
            },
            vec![bike.id, camera.id, chair.id, desk.id],
        ),
        (
            "ended",
            AuctionFilter {
                phase: Some(Phase::Ended),
                ..Default::default()
            },
            vec![rug.id],
        ),
        (
            "seller",
            AuctionFilter {
                seller: Some(BOB),
                ..Default::default()
            },
            vec![camera.id],
        ),
        (
            "combined: category, district and price",
            AuctionFilter {
                category: Some("furniture".into()),
                scope: region("seoul/mapo"),
                min_price: price("10"),
                ..Default::default()
            },
            vec![chair.id],
        ),
        (
            "combined: text and a sort",
            AuctionFilter {
                text: Some("DESK".into()),
                sort: AuctionSort::PriceDesc,
                ..Default::default()
            },
            vec![chair.id, desk.id],
        ),
        (
            "price ascending",
            AuctionFilter {
                sort: AuctionSort::PriceAsc,
                ..Default::default()
            },
            vec![desk.id, camera.id, chair.id, bike.id, lamp.id, rug.id],
        ),
        (
            "price descending",
            AuctionFilter {
                sort: AuctionSort::PriceDesc,
                ..Default::default()
            },
            vec![rug.id, lamp.id, bike.id, chair.id, camera.id, desk.id],
        ),
        (
            "ending soonest",
            AuctionFilter {
                sort: AuctionSort::EndingSoonest,
                ..Default::default()
            },
            vec![chair.id, bike.id, camera.id, desk.id, lamp.id, rug.id],
        ),
    ];
    for (case, filter, expected) in cases {
        let count = expected.len() as u64;
        assert_eq!(ids(filter, all).await, (expected, count), "{case}");
    }

    let by_price = AuctionFilter {
        sort: AuctionSort::PriceAsc,
        ..Default::default()
    };
    assert_eq!(
        ids(by_price.clone(), Page::new(2, 2)).await,
        (vec![chair.id, bike.id], 6),
        "a page of a sorted list; the count ignores paging"
    );
    // The current price counts, not the start price.
    h.fund(ALICE, 1_000).await;
    h.bid(bike.id, ALICE, 150).await.expect("bid");
    assert_eq!(
        ids(by_price, all).await.0,
        [desk.id, camera.id, chair.id, lamp.id, bike.id, rug.id]
    );
    // Phases follow the clock.
    h.clock.advance(hours(1));
    let open = AuctionFilter {
        phase: Some(Phase::Open),
        ..Default::default()
    };
    assert_eq!(
        ids(open, all).await.0,
        [lamp.id, bike.id, camera.id, desk.id]
    );
    let ended = AuctionFilter {
        phase: Some(Phase::Ended),
        ..Default::default()
    };
    assert_eq!(
        ids(ended, all).await.0,
        [rug.id, chair.id],
        "past its end, not yet settled"
    );
}
