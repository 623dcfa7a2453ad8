//! Policies through a store: every policy round-trips, and proxy (maximum) bids play out as the rules say.

use super::*;

/// Every policy is stored and read back exactly, with the state it drives
/// (maximum, reserve met, extensions, the extended end).
pub async fn policies_round_trip<S: Store>(store: S) {
    use crate::{Band, BuyNowPolicy, ClosePolicy, Increment};
    let h = Harness::new(store);
    let percent = Increment::Percent {
        percent: "2.5".parse().expect("decimal"),
        scale: 2,
    };
    let custom_ladder = Increment::Ladder {
        bands: vec![
            Band {
                from: Money::ZERO,
                step: "0.10".parse().expect("amount"),
            },
            Band {
                from: money(10),
                step: "1.50".parse().expect("amount"),
            },
        ],
    };
    let policies = [
        AuctionPolicy::fixed(money(10)),
        AuctionPolicy {
            increment: Increment::ebay_ladder(),
            reserve_price: Some("250.50".parse().expect("amount")),
            close: ClosePolicy::Soft {
                window_secs: 300,
                extend_by_secs: 600,
                max_extensions: 7,
            },
            buy_now: BuyNowPolicy::UntilReserveMet,
        },
        AuctionPolicy {
            increment: percent,
            buy_now: BuyNowPolicy::UntilFirstBid,
            ..AuctionPolicy::fixed(money(1))
        },
        AuctionPolicy {
            increment: custom_ladder,
            ..AuctionPolicy::fixed(money(1))
        },
    ];
    h.fund(ALICE, 10_000).await;
    for policy in policies {
        let created = h
            .create(h.national(100, 1).with_listing(|listing| {
                listing.policy = policy.clone();
                listing.buy_now_price = Some(money(900));
            }))
            .await;
        assert_eq!(created.listing.policy, policy);
        assert_eq!(h.auction(created.id).await, created, "{policy:?}");
        let bid = PlaceBid {
            max_amount: Some(money(300)),
            ..bid_of(created.id, ALICE, 100)
        };
        let receipt = h.engine.place_bid(bid, None).await.expect("bid");
        assert_eq!(h.auction(created.id).await, receipt.auction, "{policy:?}");
    }

    // A soft close: the extended end is stored, and the closer waits for it.
    let soft = h
        .create(h.national(100, 1).with_listing(|listing| {
            listing.policy = AuctionPolicy {
                close: ClosePolicy::Soft {
                    window_secs: 60,
                    extend_by_secs: 120,
                    max_extensions: 3,
                },
                ..AuctionPolicy::fixed(money(1))
            }
        }))
        .await;
    h.clock.set(soft.bidding.ends_at - TimeDelta::seconds(30));
    let extended = h.bid(soft.id, ALICE, 100).await.expect("late bid");
    assert_eq!(extended.auction.bidding.extensions, 1);
    assert_eq!(
        extended.auction.bidding.ends_at,
        h.now() + TimeDelta::seconds(120)
    );
    assert_eq!(h.auction(soft.id).await, extended.auction);
    h.clock.set(soft.bidding.ends_at);
    let closed = h.engine.close_due_auctions(100).await.expect("close");
    assert!(
        closed.iter().all(|auction| auction.id != soft.id),
        "the closer reads the current end, not the original"
    );
    h.clock.set(extended.auction.bidding.ends_at);
    let closed = h.engine.close_due_auctions(100).await.expect("close");
    assert!(closed.iter().any(|auction| auction.id == soft.id));
}

/// A proxy contest through the engine and the store: the leader's maximum
/// answers a lower bid (which is written, and refused to its bidder, also
/// on replay), escrow holds the maximum, and settlement charges only the
/// final price.
pub async fn proxy_bids_through_the_store<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 1_000).await;
    h.fund(BOB, 1_000).await;
    let auction = h.create(h.national(10, 1)).await.id;
    let alice = PlaceBid {
        max_amount: Some(money(50)),
        ..bid_of(auction, ALICE, 10)
    };
    h.engine.place_bid(alice, None).await.expect("alice leads");
    assert_eq!(h.wallet(ALICE).await.locked, money(50));

    let bob = bid_of(auction, BOB, 30);
    let answered = h.engine.place_bid(bob.clone(), key("bob-30")).await;
    let expected = Rejection::OutbidByProxy {
        price: money(31),
        min_next_bid: money(32),
    };
    assert_eq!(rejection(answered), expected);
    let replay = h.engine.place_bid(bob, key("bob-30")).await;
    assert_eq!(rejection(replay), expected, "a replay answers the same");
    let state = h.auction(auction).await;
    assert_eq!(
        (
            state.bidding.current_price,
            state.bidding.leader,
            state.bidding.max_bid,
            state.bidding.seq
        ),
        (money(31), Some(ALICE), Some(money(50)), 2)
    );
    let history = h
        .engine
        .auction(auction, Page::default())
        .await
        .expect("view")
        .bids;
    assert_eq!(
        history
            .iter()
            .map(|bid| (bid.bidder, bid.amount, bid.auto))
            .collect::<Vec<_>>(),
        [(ALICE, money(31), true), (ALICE, money(10), false)]
    );
    assert_eq!(h.wallet(BOB).await.locked, Money::ZERO);
    assert_eq!(
        h.delivered(auction).len(),
        2,
        "the automatic raise was announced"
    );

    h.clock.advance(TimeDelta::hours(2));
    h.engine.close_due_auctions(10).await.expect("close");
    let alice = h.wallet(ALICE).await;
    assert_eq!((alice.balance, alice.locked), (money(969), Money::ZERO));
    assert_eq!(h.wallet(SELLER).await.balance, money(31));
    h.assert_books(&[ALICE, BOB, SELLER], money(2_000)).await;
}
