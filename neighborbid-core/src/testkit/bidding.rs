//! Listing and bidding: auctions stored as created, the bidding rules through a store, buy-now, cancelling, ending early, policies and proxy bids.

use super::*;

/// An auction reads back exactly as created, and listings filter it.
pub async fn auction_round_trip<S: Store>(store: S) {
    let h = Harness::new(store);
    let mut cmd = h.national(100, 10);
    cmd.listing.buy_now_price = Some("999.99".parse().expect("money"));
    cmd.listing.description = "multi-line\ndescription — with ünïcode".into();
    let national = h.create(cmd).await;
    assert_ne!(national.id, AuctionId::UNASSIGNED);
    assert_eq!(
        (
            national.bidding.status,
            national.bidding.current_price,
            national.bidding.leader,
            national.bidding.seq
        ),
        (AuctionStatus::Open, money(100), None, 0)
    );
    assert_eq!(national.min_next_bid(), money(100));

    let mut cmd = h.national(5, 1);
    cmd.listing.seller = BOB;
    cmd.listing.scope = Scope::Local {
        region: Region::new("mangwon"),
    };
    cmd.starts_at = Some(h.now() + TimeDelta::minutes(10));
    let local = h.create(cmd).await;

    assert_eq!(h.auction(national.id).await, national);
    assert_eq!(h.auction(local.id).await, local);

    let list = |filter: AuctionFilter| {
        let engine = h.engine.clone();
        async move {
            let found = engine
                .list_auctions(&filter, Page::default())
                .await
                .expect("list");
            found.into_iter().map(|a| a.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(AuctionFilter::default()).await,
        [local.id, national.id]
    );
    let national_only = AuctionFilter {
        scope: Some(ScopeFilter::National),
        ..Default::default()
    };
    assert_eq!(list(national_only).await, [national.id]);
    let in_region = |name: &str| AuctionFilter {
        scope: Some(ScopeFilter::Local {
            region: Some(Region::new(name)),
        }),
        ..Default::default()
    };
    assert_eq!(list(in_region("mangwon")).await, [local.id]);
    assert!(list(in_region("hapjeong")).await.is_empty());
    let sold = AuctionFilter {
        status: Some(AuctionStatus::Sold),
        ..Default::default()
    };
    assert!(list(sold).await.is_empty());
    let mine = h
        .engine
        .user_auctions(BOB, Page::default())
        .await
        .expect("mine");
    assert_eq!(mine, [local]);
}

/// A refused auction stores nothing, and a description keeps its line
/// breaks through the store. (Which auctions are refused, and why, is the
/// rules' business: `rules::create_auction`'s unit tests.)
pub async fn invalid_auctions_are_not_stored<S: Store>(store: S) {
    let h = Harness::new(store);
    let base = h.national(100, 10);
    let refused = [
        base.clone()
            .with_listing(|listing| listing.title = "a\0b".into()),
        CreateAuction {
            starts_at: Some(CreateAuction::EARLIEST - TimeDelta::microseconds(1)),
            ..base.clone()
        },
        base.clone()
            .with_listing(|listing| listing.start_price = Money::ZERO),
    ];
    for cmd in refused {
        let result = h.engine.create_auction(cmd.clone(), None).await;
        assert!(
            matches!(result, Err(EngineError::Rejected(_))),
            "{cmd:?}: {result:?}"
        );
    }
    let all = h
        .engine
        .list_auctions(&AuctionFilter::default(), Page::default())
        .await;
    assert!(all.expect("list").is_empty());

    // A description keeps its line breaks and tabs.
    let description = "Two lines:\n\tindented\r\n";
    let kept = h
        .create(
            base.clone()
                .with_listing(|listing| listing.description = description.into()),
        )
        .await;
    let view = h
        .engine
        .auction(kept.id, Page::first(1))
        .await
        .expect("view");
    assert_eq!(view.auction.listing.description, description);

    // A filter no auction can match is refused too, not sent to the store.
    let filters = [
        AuctionFilter {
            text: Some("a\0".into()),
            ..AuctionFilter::default()
        },
        AuctionFilter {
            category: Some("\0".into()),
            ..AuctionFilter::default()
        },
        AuctionFilter {
            scope: Some(ScopeFilter::Local {
                region: Some(Region::new("seoul\0")),
            }),
            ..AuctionFilter::default()
        },
    ];
    for filter in filters {
        let listed = h.engine.list_auctions(&filter, Page::default()).await;
        assert_eq!(rejection(listed).code(), "invalid_query", "{filter:?}");
        let counted = h.engine.count_auctions(&filter).await;
        assert_eq!(rejection(counted).code(), "invalid_query", "{filter:?}");
    }
}

/// The first bid must reach the start price; each later one must beat the
/// current price by a bid unit. A low bid says what the minimum is.
pub async fn first_bid_and_minimum_increment<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 1_000).await;
    h.fund(BOB, 1_000).await;
    let auction = h.create(h.national(100, 10)).await;

    let low = h.bid(auction.id, ALICE, 99).await;
    assert_eq!(
        rejection(low),
        Rejection::BidTooLow {
            min_next_bid: money(100)
        }
    );
    let first = h
        .bid(auction.id, ALICE, 100)
        .await
        .expect("first bid at start price");
    assert_eq!(first.auction.min_next_bid(), money(110));
    let first_bid = first.bid.clone().expect("recorded");
    assert_eq!((first_bid.seq, first_bid.auto), (1, false));

    let low = h.bid(auction.id, BOB, 109).await;
    assert_eq!(
        rejection(low),
        Rejection::BidTooLow {
            min_next_bid: money(110)
        }
    );
    let second = h.bid(auction.id, BOB, 110).await.expect("bid at minimum");
    assert_eq!(
        (
            second.auction.bidding.current_price,
            second.auction.bidding.leader,
            second.auction.bidding.bid_count
        ),
        (money(110), Some(BOB), 2)
    );
    assert_ne!(Some(first_bid.id), second.bid.map(|bid| bid.id));
}

/// Outbidding returns the previous leader's escrow in the same transaction
/// and tells them privately.
pub async fn outbid_releases_previous_hold<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 500).await;
    h.fund(BOB, 500).await;
    let auction = h.create(h.national(100, 10)).await;
    h.bid(auction.id, ALICE, 120).await.expect("alice bids");
    let alice = h.wallet(ALICE).await;
    assert_eq!((alice.balance, alice.locked), (money(380), money(120)));

    h.bid(auction.id, BOB, 130).await.expect("bob outbids");
    let alice = h.wallet_view(ALICE).await;
    assert_eq!(
        (alice.wallet.balance, alice.wallet.locked),
        (money(500), Money::ZERO)
    );
    assert!(alice.holds.is_empty());
    let kinds: Vec<_> = alice.history.iter().map(|e| (e.kind, e.amount)).collect();
    assert_eq!(
        kinds,
        [
            (EntryKind::HoldRelease, money(120)),
            (EntryKind::BidHold, money(120)),
            (EntryKind::Deposit, money(500)),
        ]
    );
    let bob = h.wallet_view(BOB).await;
    assert_eq!(
        (bob.wallet.balance, bob.wallet.locked),
        (money(370), money(130))
    );
    assert_eq!(bob.holds.len(), 1);
    assert_eq!(
        (bob.holds[0].auction_id, bob.holds[0].amount),
        (auction.id, money(130))
    );

    let events = h.notifier.events();
    let last = events.last().expect("events");
    assert_eq!(last.seq, 2);
    assert_eq!(
        last.notices_for(ALICE).collect::<Vec<_>>(),
        [&PrivateEvent::Outbid { price: money(130) }]
    );
    assert_eq!(last.notices_for(BOB).count(), 0);
    assert!(matches!(
        last.public.as_slice(),
        [PublicEvent::BidPlaced { bidder, amount, bid_count: 2, .. }]
            if *bidder == BOB && *amount == money(130)
    ));
    h.assert_books(&[ALICE, BOB, SELLER], money(1_000)).await;
}

/// A leader bidding again replaces their own bid: the old hold is released
/// and the new one placed, so only the difference must be available, and
/// no outbid notice is sent to them.
pub async fn leader_raises_own_bid<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 200).await;
    let auction = h.create(h.national(100, 10)).await;
    h.bid(auction.id, ALICE, 120).await.expect("first");
    // 80 available, 200 needed: fine, because the 120 held comes back first.
    let raised = h.bid(auction.id, ALICE, 200).await.expect("raise");
    assert_eq!(
        (
            raised.auction.bidding.current_price,
            raised.auction.bidding.leader
        ),
        (money(200), Some(ALICE))
    );
    let view = h.wallet_view(ALICE).await;
    assert_eq!(
        (view.wallet.balance, view.wallet.locked),
        (Money::ZERO, money(200))
    );
    assert_eq!(view.holds.len(), 1, "one hold, not two");
    assert_eq!(view.holds[0].amount, money(200));
    let last = h.notifier.events().pop().expect("event");
    assert!(last.private.is_empty(), "no outbid notice to oneself");
    let too_much = h.bid(auction.id, ALICE, 210).await;
    assert_eq!(
        rejection(too_much),
        Rejection::InsufficientFunds {
            available: money(200),
            required: money(210)
        }
    );
    h.assert_books(&[ALICE], money(200)).await;
}

/// Bids are taken only while the auction is open, started and before its
/// end, even when the closer has not run yet.
pub async fn bids_only_while_live<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 1_000).await;
    let missing = h.bid(AuctionId(999_999), ALICE, 100).await;
    assert_eq!(
        rejection(missing),
        Rejection::AuctionNotFound {
            auction_id: AuctionId(999_999)
        }
    );

    let mut cmd = h.national(100, 10);
    let starts_at = h.now() + TimeDelta::minutes(30);
    cmd.starts_at = Some(starts_at);
    let scheduled = h.create(cmd).await;
    assert_eq!(
        rejection(h.bid(scheduled.id, ALICE, 100).await),
        Rejection::AuctionNotStarted { starts_at }
    );

    let running = h.create(h.national(100, 10)).await;
    h.clock.advance(TimeDelta::minutes(30));
    h.bid(scheduled.id, ALICE, 100).await.expect("open now");
    h.clock.advance(TimeDelta::minutes(30));
    // Exactly at ends_at: over, though nobody closed it.
    assert_eq!(
        rejection(h.bid(running.id, ALICE, 100).await),
        Rejection::AuctionEnded {
            ended_at: running.bidding.ends_at
        }
    );
    h.engine.close_due_auctions(10).await.expect("close");
    let closed_at = h
        .auction(running.id)
        .await
        .bidding
        .closed_at
        .expect("closed_at");
    assert_eq!(
        rejection(h.bid(running.id, ALICE, 100).await),
        Rejection::AuctionEnded {
            ended_at: closed_at
        }
    );

    let cancelled = h.create(h.national(100, 10)).await;
    let cancel = CancelAuction {
        auction_id: cancelled.id,
        seller: SELLER,
    };
    h.engine.cancel_auction(cancel, None).await.expect("cancel");
    assert_eq!(
        rejection(h.bid(cancelled.id, ALICE, 100).await),
        Rejection::AuctionCancelled
    );
}

/// The seller cannot bid or buy; local auctions admit only their region.
pub async fn seller_and_region_rules<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(SELLER, 1_000).await;
    h.fund(ALICE, 1_000).await;
    let mut cmd = h.national(100, 10);
    cmd.listing.scope = Scope::Local {
        region: Region::new("mangwon"),
    };
    cmd.listing.buy_now_price = Some(money(500));
    let local = h.create(cmd).await;
    assert_eq!(
        rejection(h.bid(local.id, SELLER, 100).await),
        Rejection::SellerCannotBid
    );
    let buy = BuyNow {
        auction_id: local.id,
        buyer: SELLER,
        buyer_region: None,
    };
    assert_eq!(
        rejection(h.engine.buy_now(buy, None).await),
        Rejection::SellerCannotBid
    );

    let bid_from = |region: Option<&str>| PlaceBid {
        auction_id: local.id,
        bidder: ALICE,
        bidder_region: region.map(Region::new),
        amount: money(100),
        max_amount: None,
    };
    let not_eligible = Rejection::RegionNotEligible {
        region: Region::new("mangwon"),
    };
    for region in [None, Some("hapjeong")] {
        let result = h.engine.place_bid(bid_from(region), None).await;
        assert_eq!(rejection(result), not_eligible);
    }
    let buy = BuyNow {
        auction_id: local.id,
        buyer: ALICE,
        buyer_region: Some(Region::new("hapjeong")),
    };
    assert_eq!(rejection(h.engine.buy_now(buy, None).await), not_eligible);
    h.engine
        .place_bid(bid_from(Some("mangwon")), None)
        .await
        .expect("a neighbour may bid");

    let national = h.create(h.national(100, 10)).await;
    h.bid(national.id, ALICE, 100)
        .await
        .expect("anyone may bid nationally");
    let local_flags = |events: Vec<Event>| events.iter().map(|e| e.local).collect::<Vec<_>>();
    assert_eq!(
        local_flags(h.outbox(local.id).await),
        [true],
        "events say their auction is local"
    );
    assert_eq!(local_flags(h.outbox(national.id).await), [false]);
}

/// Buy-now refunds the leader, debits the buyer, pays the seller and ends
/// the auction.
pub async fn buy_now_ends_auction<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 1_000).await;
    h.fund(BOB, 1_000).await;
    h.fund(CAROL, 100).await;
    let without = h.create(h.national(100, 10)).await;
    let buy = |auction: AuctionId, buyer: UserId| BuyNow {
        auction_id: auction,
        buyer,
        buyer_region: None,
    };
    let result = h.engine.buy_now(buy(without.id, BOB), None).await;
    assert_eq!(rejection(result), Rejection::BuyNowUnavailable);

    let mut cmd = h.national(100, 10);
    cmd.listing.buy_now_price = Some(money(300));
    let auction = h.create(cmd).await;
    h.bid(auction.id, ALICE, 150).await.expect("alice leads");
    let poor = h.engine.buy_now(buy(auction.id, CAROL), None).await;
    assert_eq!(
        rejection(poor),
        Rejection::InsufficientFunds {
            available: money(100),
            required: money(300)
        }
    );
    assert_eq!(h.auction(auction.id).await.bidding.leader, Some(ALICE));

    let bought = h
        .engine
        .buy_now(buy(auction.id, BOB), None)
        .await
        .expect("buy now");
    assert_eq!(
        (
            bought.bidding.status,
            bought.bidding.leader,
            bought.bidding.current_price
        ),
        (AuctionStatus::BoughtNow, Some(BOB), money(300))
    );
    assert_eq!(bought.bidding.closed_at, Some(h.now()));
    let alice = h.wallet(ALICE).await;
    assert_eq!((alice.balance, alice.locked), (money(1_000), Money::ZERO));
    let bob = h.wallet(BOB).await;
    assert_eq!((bob.balance, bob.locked), (money(700), Money::ZERO));
    assert_eq!(h.wallet(SELLER).await.balance, money(300));
    let event = h.notifier.events().pop().expect("event");
    assert_eq!(
        event.public,
        [PublicEvent::BoughtNow {
            buyer: BOB,
            price: money(300)
        }]
    );
    assert_eq!(
        event.notices_for(ALICE).collect::<Vec<_>>(),
        [&PrivateEvent::Outbid { price: money(300) }]
    );
    assert_eq!(
        event.notices_for(BOB).collect::<Vec<_>>(),
        [&PrivateEvent::Won { price: money(300) }]
    );
    let again = h.engine.buy_now(buy(auction.id, ALICE), None).await;
    assert!(matches!(rejection(again), Rejection::AuctionEnded { .. }));
    assert!(matches!(
        rejection(h.bid(auction.id, ALICE, 400).await),
        Rejection::AuctionEnded { .. }
    ));

    // Once bidding reaches the buy-now price, buy-now is gone.
    let mut cmd = h.national(100, 10);
    cmd.listing.buy_now_price = Some(money(200));
    let passed = h.create(cmd).await;
    h.bid(passed.id, ALICE, 200)
        .await
        .expect("bid at buy-now price");
    let late = h.engine.buy_now(buy(passed.id, BOB), None).await;
    assert_eq!(rejection(late), Rejection::BuyNowUnavailable);
    h.assert_books(&[SELLER, ALICE, BOB, CAROL], money(2_100))
        .await;
}

/// Only the seller can cancel, only without bids and before the end.
pub async fn cancel_rules<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 500).await;
    let cancel = |auction: AuctionId, seller: UserId| CancelAuction {
        auction_id: auction,
        seller,
    };
    let with_bid = h.create(h.national(100, 10)).await;
    h.bid(with_bid.id, ALICE, 100).await.expect("bid");
    let result = h
        .engine
        .cancel_auction(cancel(with_bid.id, SELLER), None)
        .await;
    assert_eq!(rejection(result), Rejection::HasBids);

    let auction = h.create(h.national(100, 10)).await;
    let result = h
        .engine
        .cancel_auction(cancel(auction.id, ALICE), None)
        .await;
    assert_eq!(rejection(result), Rejection::NotSeller);
    let cancelled = h
        .engine
        .cancel_auction(cancel(auction.id, SELLER), None)
        .await
        .expect("cancel");
    assert_eq!(
        (cancelled.bidding.status, cancelled.bidding.seq),
        (AuctionStatus::Cancelled, 1)
    );
    let events = h.outbox(auction.id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].public, [PublicEvent::Cancelled]);
    let again = h
        .engine
        .cancel_auction(cancel(auction.id, SELLER), None)
        .await;
    assert_eq!(rejection(again), Rejection::AuctionCancelled);

    let ended = h.create(h.national(100, 10)).await;
    h.clock.advance(TimeDelta::hours(1));
    let late = h
        .engine
        .cancel_auction(cancel(ended.id, SELLER), None)
        .await;
    assert_eq!(
        rejection(late),
        Rejection::AuctionEnded {
            ended_at: ended.bidding.ends_at
        }
    );
    h.engine.close_due_auctions(10).await.expect("close");
    assert_eq!(
        h.auction(ended.id).await.bidding.status,
        AuctionStatus::Unsold
    );
}

/// The seller may end a running auction early: it settles with the leader
/// (or unsold), the end moves to now, and the history records it.
pub async fn seller_ends_early<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 500).await;
    h.fund(BOB, 500).await;
    let end = |auction_id, seller| EndEarly { auction_id, seller };
    let sold = h.create(h.national(100, 10)).await;
    h.bid(sold.id, ALICE, 120).await.expect("alice");
    h.bid(sold.id, BOB, 130).await.expect("bob");
    let by_bidder = h.engine.end_early(end(sold.id, BOB), None).await;
    assert_eq!(rejection(by_bidder), Rejection::NotSeller);

    h.clock.advance(TimeDelta::minutes(10));
    let key = IdempotencyKey::new("end-1").expect("key");
    let ended = h
        .engine
        .end_early(end(sold.id, SELLER), Some(key.clone()))
        .await
        .expect("end early");
    assert_eq!(
        (
            ended.bidding.status,
            ended.bidding.ends_at,
            ended.bidding.closed_at
        ),
        (AuctionStatus::Sold, h.now(), Some(h.now()))
    );
    let replay = h.engine.end_early(end(sold.id, SELLER), Some(key)).await;
    assert_eq!(replay.expect("replay"), ended, "a replay answers the same");
    let last = h.outbox(sold.id).await.pop().expect("event");
    assert_eq!(
        last.public,
        [
            PublicEvent::EndedEarly { ends_at: h.now() },
            PublicEvent::Sold {
                winner: BOB,
                price: money(130)
            }
        ]
    );
    assert_eq!(h.wallet(BOB).await.balance, money(370));
    assert_eq!(h.wallet(ALICE).await.balance, money(500));
    assert_eq!(h.wallet(SELLER).await.balance, money(130));
    let again = h.engine.end_early(end(sold.id, SELLER), None).await;
    assert_eq!(rejection(again).code(), "auction_ended");

    let quiet = h.create(h.national(100, 10)).await;
    let too_soon = h.engine.end_early(end(quiet.id, SELLER), None).await;
    assert_eq!(
        rejection(too_soon).code(),
        "auction_not_started",
        "before bidding starts, the seller cancels instead"
    );
    h.clock.advance(TimeDelta::seconds(1));
    let unsold = h
        .engine
        .end_early(end(quiet.id, SELLER), None)
        .await
        .expect("end early");
    assert_eq!(unsold.bidding.status, AuctionStatus::Unsold);
    let events = h.outbox(quiet.id).await;
    assert_eq!(
        events[0].public,
        [
            PublicEvent::EndedEarly { ends_at: h.now() },
            PublicEvent::Unsold
        ]
    );

    let late = h.create(h.national(100, 10)).await;
    h.clock.advance(TimeDelta::hours(1));
    let result = h.engine.end_early(end(late.id, SELLER), None).await;
    assert_eq!(
        rejection(result),
        Rejection::AuctionEnded {
            ended_at: late.bidding.ends_at
        },
        "past its end it is the closer's"
    );
    // The refusal released the auction's row before answering, so the
    // closer (which skips locked rows) takes it at once.
    let closed = h.engine.close_due_auctions(10).await.expect("close");
    assert_eq!(closed.len(), 1);
    h.assert_books(&[SELLER, ALICE, BOB], money(1_000)).await;
}
