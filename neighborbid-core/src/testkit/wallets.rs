//! Wallets: deposits, withdrawals, escrow, the deposit limit, double spends.

use super::*;

/// Deposits and withdrawals move the balance and write history with the
/// balance after each entry; bad amounts and overdrafts change nothing.
pub async fn deposit_and_withdraw<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 100).await;
    let entry = h
        .engine
        .withdraw(
            Withdraw {
                user: ALICE,
                amount: money(30),
            },
            None,
        )
        .await
        .expect("withdraw");
    assert_eq!(
        (entry.kind, entry.balance_after),
        (EntryKind::Withdrawal, money(70))
    );

    let overdraft = h
        .engine
        .withdraw(
            Withdraw {
                user: ALICE,
                amount: money(71),
            },
            None,
        )
        .await;
    assert_eq!(
        rejection(overdraft),
        Rejection::InsufficientFunds {
            available: money(70),
            required: money(71)
        }
    );
    let bad_amounts = [
        (Money::ZERO, MoneyError::Zero),
        (
            "0.001".parse().expect("money"),
            MoneyError::TooPrecise { max_scale: 2 },
        ),
        (
            money(1_000_000_000_001),
            MoneyError::TooLarge {
                max: money(1_000_000_000_000),
            },
        ),
    ];
    for (amount, reason) in bad_amounts {
        let result = h
            .engine
            .deposit(
                Deposit {
                    user: ALICE,
                    amount,
                },
                None,
            )
            .await;
        assert_eq!(
            rejection(result),
            Rejection::InvalidAmount {
                field: "amount",
                reason
            }
        );
    }

    let view = h.wallet_view(ALICE).await;
    assert_eq!(
        (view.wallet.balance, view.wallet.locked),
        (money(70), Money::ZERO)
    );
    let kinds: Vec<_> = view
        .history
        .iter()
        .map(|e| (e.kind, e.amount, e.balance_after))
        .collect();
    assert_eq!(
        kinds,
        [
            (EntryKind::Withdrawal, money(30), money(70)),
            (EntryKind::Deposit, money(100), money(100)),
        ]
    );
    assert_eq!(
        h.wallet(BOB).await,
        Wallet::empty(BOB),
        "unknown users have empty wallets"
    );
    h.assert_books(&[ALICE], money(70)).await;
}

/// A bid the bidder cannot cover changes nothing at all.
pub async fn insufficient_funds_leave_no_trace<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 500).await;
    h.fund(BOB, 50).await;
    let auction = h.create(h.national(100, 10)).await;
    h.bid(auction.id, ALICE, 120).await.expect("alice bids");
    let before = (
        h.auction(auction.id).await,
        h.wallet(ALICE).await,
        h.wallet(BOB).await,
    );
    let events_before = h.notifier.events().len();

    let result = h.bid(auction.id, BOB, 130).await;
    assert_eq!(
        rejection(result),
        Rejection::InsufficientFunds {
            available: money(50),
            required: money(130)
        }
    );
    let after = (
        h.auction(auction.id).await,
        h.wallet(ALICE).await,
        h.wallet(BOB).await,
    );
    assert_eq!(before, after);
    assert_eq!(h.notifier.events().len(), events_before);
    let view = h
        .engine
        .auction(auction.id, Page::default())
        .await
        .expect("auction");
    assert_eq!(view.bids.len(), 1);
    let stored = h.outbox(auction.id).await;
    assert_eq!(stored.len(), 1);
    let bob = h.wallet_view(BOB).await;
    assert_eq!(bob.history.len(), 1, "only the deposit");
}

/// The double-spend test of NeighborBid's first version: one wallet with 10,000 bids 10,000 on
/// two auctions at the same moment; exactly one bid wins, every time.
pub async fn double_spend_across_auctions<S: Store>(store: S) {
    let h = Harness::new(store);
    const ROUNDS: u64 = 100;
    for round in 0..ROUNDS {
        let spender = UserId(1_000 + round as i64);
        h.fund(spender, 10_000).await;
        let first = h.create(h.national(10_000, 100)).await;
        let second = h.create(h.national(10_000, 100)).await;
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let tasks: Vec<_> = [first.id, second.id]
            .into_iter()
            .map(|auction| {
                let (engine, barrier) = (h.engine.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let bid = bid_of(auction, spender, 10_000);
                    engine.place_bid(bid, None).await
                })
            })
            .collect();
        let mut accepted = 0;
        for task in tasks {
            match task.await.expect("task") {
                Ok(_) => accepted += 1,
                Err(EngineError::Rejected(Rejection::InsufficientFunds { available, .. })) => {
                    assert_eq!(available, Money::ZERO);
                }
                Err(other) => panic!("round {round}: unexpected {other:?}"),
            }
        }
        assert_eq!(accepted, 1, "round {round}: exactly one bid may win");
        let wallet = h.wallet(spender).await;
        assert_eq!(
            (wallet.balance, wallet.locked),
            (Money::ZERO, money(10_000))
        );
    }
}

/// Many tasks bidding on a few auctions from shared wallets: every accepted
/// bid beats the one before, and money is conserved.
pub async fn concurrent_bidding_conserves_money<S: Store>(store: S) {
    let h = Harness::new(store);
    let bidders: Vec<UserId> = (10..16).map(UserId).collect();
    for &bidder in &bidders {
        h.fund(bidder, 2_000).await;
    }
    let mut auctions = Vec::new();
    for _ in 0..3 {
        auctions.push(h.create(h.national(10, 1)).await.id);
    }
    let tasks: Vec<_> = (0..8u64)
        .map(|task| {
            let (engine, bidders, auctions) = (h.engine.clone(), bidders.clone(), auctions.clone());
            tokio::spawn(async move {
                let mut accepted = 0;
                for i in 0..25u64 {
                    let auction = auctions[((task + i) % 3) as usize];
                    let bidder = bidders[((task * 7 + i) % 6) as usize];
                    let view = engine.auction(auction, Page::first(1)).await.expect("view");
                    let bid = PlaceBid {
                        auction_id: auction,
                        bidder,
                        bidder_region: None,
                        amount: view.auction.min_next_bid(),
                        max_amount: None,
                    };
                    accepted += usize::from(outcome(engine.place_bid(bid, None).await));
                }
                accepted
            })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        accepted += task.await.expect("task");
    }
    assert!(accepted > 0);
    let mut recorded = 0;
    for &auction in &auctions {
        let view = h
            .engine
            .auction(auction, Page::new(0, 500))
            .await
            .expect("view");
        recorded += view.bids.len();
        let amounts: Vec<Money> = view.bids.iter().rev().map(|b| b.amount).collect();
        assert!(
            amounts.windows(2).all(|w| w[0] < w[1]),
            "accepted bids only rise"
        );
        let seqs: Vec<u64> = view.bids.iter().rev().map(|b| b.seq).collect();
        assert_eq!(seqs, (1..=view.auction.bidding.seq).collect::<Vec<_>>());
        let holds: Vec<_> = {
            let mut all = Vec::new();
            for &bidder in &bidders {
                let view = h
                    .engine
                    .wallet(bidder, Page::first(1))
                    .await
                    .expect("wallet");
                all.extend(
                    view.holds
                        .into_iter()
                        .filter(|hold| hold.auction_id == auction),
                );
            }
            all
        };
        match view.auction.bidding.leader {
            Some(leader) => {
                assert_eq!(holds.len(), 1);
                assert_eq!(
                    (holds[0].user, holds[0].amount),
                    (leader, view.auction.bidding.current_price)
                );
            }
            None => assert!(holds.is_empty()),
        }
    }
    assert_eq!(recorded, accepted);
    let mut everyone = bidders.clone();
    everyone.push(SELLER);
    h.assert_books(&everyone, money(12_000)).await;
}

/// Wallets filled to [`Wallet::LIMIT`] by deposits are still outbid,
/// bought out and paid: only deposits are held to the limit, counting what
/// is locked, so no refund, release or sale is ever refused for it.
pub async fn full_wallets_keep_the_market_moving<S: Store>(store: S) {
    let limit = Wallet::LIMIT;
    let h = Harness::configured(store, |config| {
        config.currency = crate::Currency::new(2, limit);
    });
    let plus = |amount: Money, units: u64| amount.checked_add(money(units)).expect("sum");
    let deposit = |user: UserId, amount: Money| h.engine.deposit(Deposit { user, amount }, None);
    for user in [SELLER, ALICE, BOB] {
        deposit(user, limit).await.expect("filled to the limit");
    }
    let auction = h.create(h.national(100, 10)).await;
    h.bid(auction.id, ALICE, 100)
        .await
        .expect("a full wallet bids");
    let more = deposit(ALICE, money(1)).await;
    assert_eq!(
        rejection(more),
        Rejection::BalanceLimit,
        "locked money counts"
    );
    h.bid(auction.id, BOB, 110)
        .await
        .expect("a full leader is outbid");
    assert_eq!(h.wallet(ALICE).await.balance, limit, "refunded in full");

    let mut cmd = h.national(100, 10);
    cmd.listing.buy_now_price = Some(money(500));
    let bought = h.create(cmd).await;
    h.bid(bought.id, ALICE, 100).await.expect("alice leads");
    let buy = BuyNow {
        auction_id: bought.id,
        buyer: BOB,
        buyer_region: None,
    };
    h.engine
        .buy_now(buy, None)
        .await
        .expect("a full leader is bought out");
    assert_eq!(h.wallet(ALICE).await.balance, limit);

    h.clock.advance(TimeDelta::hours(1));
    let closed = h.engine.close_due_auctions(10).await.expect("close");
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].bidding.status, AuctionStatus::Sold);
    assert!(h.engine.stuck_auctions().is_empty());
    let seller = h.wallet(SELLER).await;
    assert_eq!(seller.balance, plus(limit, 610), "a full seller is paid");
    let more = deposit(SELLER, money(1)).await;
    assert_eq!(rejection(more), Rejection::BalanceLimit);
    let total = plus(limit, 0)
        .checked_add(limit)
        .and_then(|sum| sum.checked_add(limit))
        .expect("sum");
    h.assert_books(&[SELLER, ALICE, BOB], total).await;
}
