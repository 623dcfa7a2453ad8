//! Failures and races: injected faults leave no trace, conflicts are retried, every kind of command racing.

use super::*;

/// What a failed command must not change.
#[derive(Debug, PartialEq)]
struct Books {
    auction: crate::AuctionView,
    outbox: Vec<Event>,
    wallets: Vec<WalletView>,
    delivered: usize,
}

async fn books<S: Store>(h: &Harness<S>, auction: AuctionId, users: &[UserId]) -> Books {
    let mut wallets = Vec::new();
    for &user in users {
        wallets.push(h.wallet_view(user).await);
    }
    Books {
        auction: h
            .engine
            .auction(auction, Page::default())
            .await
            .expect("auction"),
        outbox: h.outbox(auction).await,
        wallets,
        delivered: h.notifier.events().len(),
    }
}

/// A store failure after any write of a bid, a deposit or a settlement
/// rolls the whole command back: same wallets and history, no bid, no
/// outbox row, no idempotency record, nothing delivered. The same request
/// then succeeds, once. (A failed settlement sets its auction aside for
/// the closer's next pass, which settles it.)
pub async fn failures_leave_no_trace<S: Store>(store: S) {
    let store = FaultyStore::new(store);
    let faulty = store.switch();
    // A settlement that failed is tried again on the closer's next pass.
    let h = Harness::configured(store, |config| {
        config.stuck_retry_delay = std::time::Duration::ZERO;
    });
    let parties = [ALICE, BOB, CAROL, SELLER];
    h.fund(ALICE, 500).await;
    h.fund(BOB, 500).await;
    let auction = h.create(h.national(100, 10)).await.id;
    h.bid(auction, ALICE, 100).await.expect("first bid");

    let injected = |result: Result<_, EngineError>, fault: Fault| match result {
        Err(EngineError::Store(error)) if error.kind() == StoreErrorKind::Other => {}
        other => panic!("{fault:?}: expected the injected failure, got {other:?}"),
    };
    let outbid = bid_of(auction, BOB, 110);
    for fault in Fault::ALL {
        let before = books(&h, auction, &parties).await;
        faulty.arm(fault);
        injected(
            h.engine
                .place_bid(outbid.clone(), key("bob-outbids"))
                .await
                .map(|_| ()),
            fault,
        );
        assert!(faulty.fired(), "a bid reaches {fault:?}");
        assert_eq!(books(&h, auction, &parties).await, before, "{fault:?}");
    }
    let receipt = h
        .engine
        .place_bid(outbid.clone(), key("bob-outbids"))
        .await
        .expect("the same request now succeeds");
    let replay = h.engine.place_bid(outbid, key("bob-outbids")).await;
    assert_eq!(replay.expect("replay"), receipt);
    assert_eq!(h.wallet(BOB).await.locked, money(110));
    assert_eq!(h.wallet(ALICE).await.locked, Money::ZERO);

    let deposit = Deposit {
        user: CAROL,
        amount: money(50),
    };
    for fault in [
        Fault::WriteWalletDecision,
        Fault::SaveIdempotency,
        Fault::Commit,
    ] {
        let before = books(&h, auction, &parties).await;
        faulty.arm(fault);
        let result = h
            .engine
            .deposit(deposit.clone(), key("carol-tops-up"))
            .await;
        injected(result.map(|_| ()), fault);
        assert!(faulty.fired(), "a deposit reaches {fault:?}");
        assert_eq!(books(&h, auction, &parties).await, before, "{fault:?}");
    }
    h.engine
        .deposit(deposit, key("carol-tops-up"))
        .await
        .expect("the deposit now succeeds");

    h.clock.advance(TimeDelta::hours(2));
    for fault in Fault::ALL {
        let before = books(&h, auction, &parties).await;
        faulty.arm(fault);
        // The closer sets the auction aside and goes on; the pass is fine.
        let closed = h.engine.close_due_auctions(10).await.expect("a pass");
        assert!(closed.is_empty(), "{fault:?}");
        assert!(faulty.fired(), "a settlement reaches {fault:?}");
        let stuck = h.engine.stuck_auctions();
        assert_eq!(stuck.len(), 1, "{fault:?}");
        assert!(stuck[0].error.contains("injected fault"), "{stuck:?}");
        assert_eq!(books(&h, auction, &parties).await, before, "{fault:?}");
    }
    let closed = h.engine.close_due_auctions(10).await.expect("close");
    assert_eq!(closed.len(), 1);
    assert!(h.engine.stuck_auctions().is_empty(), "settled at last");
    assert_eq!(h.wallet(SELLER).await.balance, money(110));
    h.assert_books(&parties, money(1_050)).await;
}

/// With coalescing off, every keyed command writes through the same
/// calls a batch does: a failure at any of them (a bid, a buy-now, a new
/// auction) rolls the command back with its idempotency record, and the
/// same request then succeeds once and replays.
pub async fn single_commands_fail_without_a_trace<S: Store>(store: S) {
    let store = FaultyStore::new(store);
    let faulty = store.switch();
    let h = Harness::configured(store, |config| config.coalesce_bids = false);
    let parties = [ALICE, BOB, SELLER];
    h.fund(ALICE, 500).await;
    h.fund(BOB, 500).await;
    let mut cmd = h.national(100, 10);
    cmd.listing.buy_now_price = Some(money(300));
    let auction = h.create(cmd.clone()).await.id;
    let injected = |result: Result<(), EngineError>, what: &str, fault: Fault| match result {
        Err(EngineError::Store(error)) if error.kind() == StoreErrorKind::Other => {}
        other => panic!("{what} at {fault:?}: expected the injected failure, got {other:?}"),
    };

    let bid = bid_of(auction, ALICE, 120);
    for fault in Fault::ALL {
        let before = books(&h, auction, &parties).await;
        faulty.arm(fault);
        let result = h.engine.place_bid(bid.clone(), key("alice-bids")).await;
        injected(result.map(|_| ()), "a bid", fault);
        assert!(faulty.fired(), "a bid reaches {fault:?}");
        assert_eq!(books(&h, auction, &parties).await, before, "{fault:?}");
    }
    let placed = h.engine.place_bid(bid.clone(), key("alice-bids")).await;
    let placed = placed.expect("the same bid now succeeds");
    assert!(
        placed.bid.as_ref().is_some_and(|bid| bid.id.0 > 0),
        "{placed:?}"
    );
    let replayed = h.engine.place_bid(bid, key("alice-bids")).await;
    assert_eq!(
        replayed.expect("replay"),
        placed,
        "the record names the stored bid"
    );

    let buy = BuyNow {
        auction_id: auction,
        buyer: BOB,
        buyer_region: None,
    };
    for fault in Fault::ALL {
        let before = books(&h, auction, &parties).await;
        faulty.arm(fault);
        let result = h.engine.buy_now(buy.clone(), key("bob-buys")).await;
        injected(result.map(|_| ()), "a buy-now", fault);
        assert!(faulty.fired(), "a buy-now reaches {fault:?}");
        assert_eq!(books(&h, auction, &parties).await, before, "{fault:?}");
    }
    let bought = h.engine.buy_now(buy.clone(), key("bob-buys")).await;
    let bought = bought.expect("the same buy-now now succeeds");
    assert_eq!(bought.bidding.status, AuctionStatus::BoughtNow);
    let replayed = h.engine.buy_now(buy, key("bob-buys")).await;
    assert_eq!(replayed.expect("replay"), bought);
    h.assert_books(&parties, money(1_000)).await;

    let listed = |h: &Harness<FaultyStore<S>>| {
        let engine = h.engine.clone();
        async move {
            let filter = AuctionFilter::default();
            engine.count_auctions(&filter).await.expect("count")
        }
    };
    for fault in [Fault::InsertAuction, Fault::SaveIdempotency, Fault::Commit] {
        let before = listed(&h).await;
        faulty.arm(fault);
        let result = h.engine.create_auction(cmd.clone(), key("list")).await;
        injected(result.map(|_| ()), "a new auction", fault);
        assert!(faulty.fired(), "a new auction reaches {fault:?}");
        assert_eq!(listed(&h).await, before, "{fault:?}");
    }
    let created = h.engine.create_auction(cmd.clone(), key("list")).await;
    let created = created.expect("the same listing now succeeds");
    let replayed = h.engine.create_auction(cmd, key("list")).await;
    assert_eq!(replayed.expect("replay"), created);
}

/// A command whose commit conflicts is retried in a fresh transaction, up
/// to [`RetryPolicy::max_attempts`] attempts in all, coalesced bids too:
/// one that conflicts on every attempt fails with the conflict and leaves
/// no trace, one that conflicts on all but the last succeeds once.
pub async fn conflicts_are_retried_up_to_the_limit<S: Store>(store: S) {
    let store = FaultyStore::new(store);
    let faulty = store.switch();
    let h = Harness::configured(store, |config| {
        config.retry = RetryPolicy {
            max_attempts: 3,
            base_delay: std::time::Duration::ZERO,
            max_delay: std::time::Duration::ZERO,
        };
    });
    let parties = [ALICE, BOB, SELLER];
    h.fund(ALICE, 500).await;
    let auction = h.create(h.national(100, 10)).await.id;
    let deposit = Deposit {
        user: BOB,
        amount: money(50),
    };
    let conflicted = |result: Result<(), EngineError>, what: &str| match result {
        Err(EngineError::Store(error)) if error.kind() == StoreErrorKind::Conflict => {}
        other => panic!("{what}: expected the conflict, got {other:?}"),
    };

    let before = books(&h, auction, &parties).await;
    faulty.conflict_commits(3);
    let result = h.engine.deposit(deposit.clone(), None).await;
    conflicted(result.map(drop), "a deposit");
    assert_eq!(faulty.conflicts_left(), 0, "a deposit tried three times");
    faulty.conflict_commits(3);
    conflicted(h.bid(auction, ALICE, 100).await.map(drop), "a bid");
    assert_eq!(faulty.conflicts_left(), 0, "a bid tried three times");
    assert_eq!(books(&h, auction, &parties).await, before);

    faulty.conflict_commits(2);
    h.engine
        .deposit(deposit, None)
        .await
        .expect("the third try");
    faulty.conflict_commits(2);
    h.bid(auction, ALICE, 100).await.expect("the third try");
    assert_eq!(h.wallet(BOB).await.balance, money(50));
    assert_eq!(h.wallet(ALICE).await.locked, money(100));
    assert_eq!(h.outbox(auction).await.len(), 1, "one bid, one event");
    h.assert_books(&parties, money(550)).await;
}

/// Every kind of command at once on the same auctions and wallets: bids
/// (some with a maximum), buy-nows, the seller cancelling and ending early,
/// deposits and withdrawals, and the closer while time passes. Whatever
/// wins each race, every auction ends closed once, its events gapless, no
/// hold is left, the seller holds exactly the prices paid, and the books
/// balance.
pub async fn mixed_commands_race<S: Store>(store: S) {
    let h = Harness::new(store);
    let bidders: Vec<UserId> = (10..16).map(UserId).collect();
    for &bidder in &bidders {
        h.fund(bidder, 1_000).await;
    }
    let funded = 1_000 * bidders.len() as i64;
    // Two with a buy-now price, one the seller cancels, one the seller
    // ends early, one that ends while the others run.
    let mut auctions = Vec::new();
    for n in 0..5 {
        let mut create = h.national(10, 5);
        if n < 2 {
            create.listing.buy_now_price = Some(money(300));
        }
        if n == 4 {
            create.ends_at = h.now() + TimeDelta::minutes(30);
        }
        auctions.push(h.create(create).await.id);
    }
    let mut bidding = Vec::new();
    for (task, &bidder) in bidders.iter().enumerate() {
        let (engine, auctions) = (h.engine.clone(), auctions.clone());
        bidding.push(tokio::spawn(async move {
            for round in 0..30 {
                let auction = auctions[(task + round) % auctions.len()];
                // Let the seller's cancellation race the first bids.
                if auction == auctions[2] && round < 8 {
                    continue;
                }
                if round == 15 && task < 2 {
                    let buy = BuyNow {
                        auction_id: auctions[task],
                        buyer: bidder,
                        buyer_region: None,
                    };
                    outcome(engine.buy_now(buy, None).await);
                    continue;
                }
                let view = engine.auction(auction, Page::first(1)).await;
                let amount = view.expect("auction").auction.min_next_bid();
                let extra = money(5 * (round as u64 % 3));
                let amount = amount.checked_add(extra).expect("amount");
                let bid = PlaceBid {
                    auction_id: auction,
                    bidder,
                    bidder_region: None,
                    amount,
                    max_amount: (round % 4 == 0)
                        .then(|| amount.checked_add(money(50)).expect("max")),
                };
                outcome(engine.place_bid(bid, None).await);
            }
        }));
    }
    let (engine, clock, seller_auctions) = (h.engine.clone(), h.clock.clone(), auctions.clone());
    let others = tokio::spawn(async move {
        let mut net = funded;
        for round in 0..20 {
            let user = UserId(10 + round % 6);
            let deposit = Deposit {
                user,
                amount: money(50),
            };
            net += 50 * i64::from(outcome(engine.deposit(deposit, None).await));
            let withdraw = Withdraw {
                user,
                amount: money(120),
            };
            net -= 120 * i64::from(outcome(engine.withdraw(withdraw, None).await));
            match round {
                5 => {
                    let cancel = CancelAuction {
                        auction_id: seller_auctions[2],
                        seller: SELLER,
                    };
                    outcome(engine.cancel_auction(cancel, None).await);
                }
                10 => {
                    let end = EndEarly {
                        auction_id: seller_auctions[3],
                        seller: SELLER,
                    };
                    outcome(engine.end_early(end, None).await);
                }
                12 => {
                    clock.advance(TimeDelta::minutes(45));
                    engine.close_due_auctions(10).await.expect("close");
                }
                _ => tokio::task::yield_now().await,
            }
        }
        net
    });
    for task in bidding {
        task.await.expect("a bidder");
    }
    let net = others.await.expect("the others");
    h.clock.advance(TimeDelta::hours(2));
    h.engine.close_due_auctions(10).await.expect("close");

    let (mut paid, mut bids) = (Money::ZERO, 0);
    for &id in &auctions {
        let view = h.engine.auction(id, Page::new(0, 500)).await.expect("view");
        bids += view.bids.len();
        let auction = view.auction;
        match auction.bidding.status {
            AuctionStatus::Open => panic!("auction {id} is still open"),
            AuctionStatus::Sold | AuctionStatus::BoughtNow => {
                assert!(auction.bidding.leader.is_some(), "{auction:?}");
                paid = paid
                    .checked_add(auction.bidding.current_price)
                    .expect("paid");
            }
            AuctionStatus::Unsold | AuctionStatus::Cancelled => {
                assert!(view.bids.is_empty(), "{auction:?}");
            }
        }
        let events = h.outbox(id).await;
        let seqs: Vec<u64> = events.iter().map(|event| event.seq).collect();
        assert_eq!(
            seqs,
            (1..=auction.bidding.seq).collect::<Vec<_>>(),
            "auction {id}"
        );
        // Each decision was timed under the auction's lock: in the order
        // of the decisions, times never go back.
        let times: Vec<Timestamp> = events.iter().map(|event| event.at).collect();
        assert!(
            times.windows(2).all(|pair| pair[0] <= pair[1]),
            "auction {id}: {times:?}"
        );
        let closing = |event: &&Event| {
            event.public.iter().any(|fact| {
                matches!(
                    fact,
                    PublicEvent::Sold { .. }
                        | PublicEvent::Unsold
                        | PublicEvent::BoughtNow { .. }
                        | PublicEvent::Cancelled
                )
            })
        };
        assert_eq!(events.iter().filter(closing).count(), 1, "auction {id}");
    }
    assert!(bids > 0, "no bid was accepted");
    for &bidder in &bidders {
        let wallet = h.wallet_view(bidder).await;
        assert!(wallet.holds.is_empty(), "{bidder} holds {:?}", wallet.holds);
    }
    assert_eq!(h.wallet(SELLER).await.balance, paid, "the seller's takings");
    let mut everyone = bidders;
    everyone.push(SELLER);
    let net = Money::units(u64::try_from(net).expect("more deposited than withdrawn"));
    h.assert_books(&everyone, net).await;
}
