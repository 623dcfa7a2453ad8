//! The closer: settlement once, closers racing, stuck auctions, the closer loop.

use super::*;
use crate::rules::WalletDecision;
use crate::LedgerEntry;

/// At its end the winner's escrow pays the seller, exactly once; an
/// auction without bids ends unsold; running auctions are left alone.
pub async fn settlement_pays_seller_once<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 500).await;
    h.fund(BOB, 500).await;
    let sold = h.create(h.national(100, 10)).await;
    let unsold = h.create(h.national(100, 10)).await;
    let mut later = h.national(100, 10);
    later.ends_at = h.now() + TimeDelta::hours(2);
    let later = h.create(later).await;
    h.bid(sold.id, ALICE, 120).await.expect("alice");
    h.bid(sold.id, BOB, 130).await.expect("bob");

    assert!(h
        .engine
        .close_due_auctions(10)
        .await
        .expect("close")
        .is_empty());
    h.clock.advance(TimeDelta::hours(1));
    let closed = h.engine.close_due_auctions(10).await.expect("close");
    let mut outcomes: Vec<_> = closed.iter().map(|a| (a.id, a.bidding.status)).collect();
    outcomes.sort_by_key(|(id, _)| *id);
    assert_eq!(
        outcomes,
        [
            (sold.id, AuctionStatus::Sold),
            (unsold.id, AuctionStatus::Unsold)
        ]
    );
    assert!(
        h.engine
            .close_due_auctions(10)
            .await
            .expect("again")
            .is_empty(),
        "exactly once"
    );
    assert_eq!(
        h.auction(later.id).await.bidding.status,
        AuctionStatus::Open
    );

    let bob = h.wallet_view(BOB).await;
    assert_eq!(
        (bob.wallet.balance, bob.wallet.locked),
        (money(370), Money::ZERO)
    );
    assert!(bob.holds.is_empty());
    assert_eq!(bob.history[0].kind, EntryKind::SettlementDebit);
    let seller = h.wallet_view(SELLER).await;
    assert_eq!(seller.wallet.balance, money(130));
    assert_eq!(seller.history.len(), 1);
    assert_eq!(seller.history[0].kind, EntryKind::SaleCredit);

    let events = h.outbox(sold.id).await;
    let last = events.last().expect("settlement event");
    assert_eq!(
        last.public,
        [PublicEvent::Sold {
            winner: BOB,
            price: money(130)
        }]
    );
    assert_eq!(
        last.notices_for(BOB).collect::<Vec<_>>(),
        [&PrivateEvent::Won { price: money(130) }]
    );
    let events = h.outbox(unsold.id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].public, [PublicEvent::Unsold]);
    h.assert_books(&[SELLER, ALICE, BOB], money(1_000)).await;
}

/// Two closers running at once on the same due auctions settle each one
/// exactly once, and a closer asked for at most `n` settles no more.
pub async fn closers_race<S: Store>(store: S) {
    let h = Harness::new(store);
    let bidders = [ALICE, BOB, CAROL];
    for bidder in bidders {
        h.fund(bidder, 10_000).await;
    }
    let mut auctions = Vec::new();
    let mut sales = Money::ZERO;
    for i in 0..12u64 {
        let auction = h.create(h.national(100, 10)).await.id;
        if i % 3 != 2 {
            h.bid(auction, bidders[(i % 3) as usize], 100 + i)
                .await
                .expect("bid");
            sales = sales.checked_add(money(100 + i)).expect("small");
        }
        auctions.push(auction);
    }
    h.clock.advance(TimeDelta::hours(2));
    let first = h.engine.close_due_auctions(2).await.expect("close two");
    let mut closed: Vec<_> = first.iter().map(|auction| auction.id).collect();
    assert_eq!(closed.len(), 2, "at most as many as asked");
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let closers: Vec<_> = (0..2)
        .map(|_| {
            let (engine, barrier) = (h.engine.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                engine.close_due_auctions(usize::MAX).await
            })
        })
        .collect();
    for closer in closers {
        let auctions = closer.await.expect("closer task").expect("close");
        closed.extend(auctions.into_iter().map(|auction| auction.id));
    }
    closed.sort();
    assert_eq!(closed, auctions, "every due auction closed by exactly one");
    for &auction in &auctions {
        let endings = h
            .outbox(auction)
            .await
            .iter()
            .flat_map(|event| &event.public)
            .filter(|public| matches!(public, PublicEvent::Sold { .. } | PublicEvent::Unsold))
            .count();
        assert_eq!(endings, 1, "{auction} settled once");
        assert!(!h.auction(auction).await.is_live(h.now()));
    }
    assert_eq!(
        h.wallet(SELLER).await.balance,
        sales,
        "the seller is paid once"
    );
    let mut everyone = bidders.to_vec();
    everyone.push(SELLER);
    h.assert_books(&everyone, money(30_000)).await;
    assert!(h
        .engine
        .close_due_auctions(10)
        .await
        .expect("nothing left")
        .is_empty());
}

/// An auction the closer cannot settle (here its seller's wallet, written
/// past the engine as a damaged database could hold it, cannot take the
/// price) is set aside, listed and retried after its delay, while every
/// other due auction settles; once it can be settled, it is.
pub async fn a_stuck_auction_holds_up_no_other<S: Store>(store: S) {
    let h = Harness::configured(store, |config| {
        config.stuck_retry_delay = std::time::Duration::from_millis(300);
        config.currency = crate::Currency::new(2, Money::MAX);
    });
    h.fund(ALICE, 1_000).await;
    h.fund(CAROL, 1).await;
    let mut tx = h.engine.store().begin().await.expect("begin");
    tx.lock_wallets(&[CAROL]).await.expect("lock");
    // A deposit no currency of the engine's would take: straight to the
    // store.
    let brim = WalletDecision {
        wallet: Wallet {
            user: CAROL,
            balance: Money::MAX,
            locked: Money::ZERO,
        },
        entry: LedgerEntry {
            user: CAROL,
            kind: EntryKind::Deposit,
            amount: Money::MAX.checked_sub(money(1)).expect("below MAX"),
            auction_id: None,
            balance_after: Money::MAX,
            locked_after: Money::ZERO,
            at: h.now(),
        },
    };
    tx.write_wallet_decision(&brim).await.expect("write");
    tx.commit().await.expect("commit");

    let mut cmd = h.national(100, 10);
    cmd.listing.seller = CAROL;
    cmd.ends_at = h.now() + TimeDelta::minutes(30);
    let stuck = h.create(cmd).await;
    let other = h.create(h.national(100, 10)).await;
    h.bid(stuck.id, ALICE, 100).await.expect("bid");
    h.bid(other.id, ALICE, 200).await.expect("bid");
    h.clock.advance(TimeDelta::hours(1));

    let closed = h
        .engine
        .close_due_auctions(10)
        .await
        .expect("the closer goes on");
    assert_eq!(closed.iter().map(|a| a.id).collect::<Vec<_>>(), [other.id]);
    let listed = h.engine.stuck_auctions();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].auction_id, listed[0].failures), (stuck.id, 1));
    assert!(listed[0].error.contains("balance limit"), "{listed:?}");
    assert!(listed[0].retry_in > std::time::Duration::ZERO);
    assert_eq!(
        h.auction(stuck.id).await.bidding.status,
        AuctionStatus::Open
    );
    assert_eq!(h.wallet(ALICE).await.locked, money(100), "its hold is kept");

    let again = h.engine.close_due_auctions(10).await.expect("close");
    assert!(again.is_empty());
    assert_eq!(
        h.engine.stuck_auctions()[0].failures,
        1,
        "not tried before its delay"
    );

    let withdraw = Withdraw {
        user: CAROL,
        amount: money(1_000),
    };
    h.engine.withdraw(withdraw, None).await.expect("withdraw");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let closed = h.engine.close_due_auctions(10).await.expect("close");
    assert_eq!(closed.iter().map(|a| a.id).collect::<Vec<_>>(), [stuck.id]);
    assert_eq!(closed[0].bidding.status, AuctionStatus::Sold);
    assert!(
        h.engine.stuck_auctions().is_empty(),
        "forgotten once settled"
    );
    assert_eq!(h.wallet(ALICE).await.locked, Money::ZERO);
}

/// [`Engine::run_closer`] settles an auction once its end passes, with
/// nobody calling the closer by hand, and returns once told to stop.
pub async fn the_closer_settles_auctions_as_they_end<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 500).await;
    let auction = h.create(h.national(100, 10)).await;
    h.bid(auction.id, ALICE, 120).await.expect("bid");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let engine = h.engine.clone();
    let closer = tokio::spawn(async move {
        let every = std::time::Duration::from_millis(10);
        engine
            .run_closer(every, async move {
                let _ = stopped.await;
            })
            .await;
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(
        h.auction(auction.id).await.bidding.status,
        AuctionStatus::Open
    );
    h.clock.advance(TimeDelta::hours(1));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while h.auction(auction.id).await.bidding.status == AuctionStatus::Open {
        assert!(std::time::Instant::now() < deadline, "never settled");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        h.auction(auction.id).await.bidding.status,
        AuctionStatus::Sold
    );
    assert_eq!(h.wallet(SELLER).await.balance, money(120));
    stop.send(()).expect("the closer runs");
    tokio::time::timeout(std::time::Duration::from_secs(10), closer)
        .await
        .expect("the closer stops when told")
        .expect("the closer task");
}
