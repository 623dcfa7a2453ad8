//! Idempotency: replays, concurrent retries, stored keys, forgetting old keys.

use super::*;

/// Idempotency records stored long enough ago are forgotten, in batches,
/// atomically, and younger ones kept; a request retried with a forgotten
/// key is carried out again, as new.
pub async fn old_idempotency_keys_are_forgotten<S: Store>(store: S) {
    use std::time::Duration;
    let h = Harness::new(store);
    let deposit = Deposit {
        user: ALICE,
        amount: money(100),
    };
    let mut entries = Vec::new();
    for name in ["a", "b", "c"] {
        let receipt = h.engine.deposit(deposit.clone(), key(name)).await;
        entries.push(receipt.expect("deposit"));
    }
    let hour = Duration::from_secs(3_600);
    let forgotten = h.engine.forget_idempotency(hour).await.expect("forget");
    assert_eq!(forgotten, 0, "none is an hour old");
    let replay = h.engine.deposit(deposit.clone(), key("a")).await;
    assert_eq!(replay.expect("replay"), entries[0]);

    // The stores stamp records in microseconds at most.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let young = Duration::from_millis(1);
    let store = h.engine.store();
    let forget = |limit| async move {
        let mut tx = store.begin().await.expect("begin");
        let forgotten = tx.forget_idempotency(young, limit).await.expect("forget");
        (tx, forgotten)
    };
    let (tx, forgotten) = forget(10).await;
    assert_eq!(forgotten, 3);
    tx.rollback().await.expect("rollback");
    let (tx, forgotten) = forget(2).await;
    assert_eq!(forgotten, 2, "all three kept by the rollback, two taken");
    tx.commit().await.expect("commit");
    let rest = h.engine.forget_idempotency(young).await.expect("forget");
    assert_eq!(rest, 1);

    // A forgotten key's request runs again, as new.
    let again = h.engine.deposit(deposit, key("a")).await.expect("again");
    assert_ne!(again, entries[0]);
    assert_eq!(h.wallet(ALICE).await.balance, money(400));
}

/// A replay with the same key returns the first receipt and changes
/// nothing; another command under the same key is a conflict; keys belong
/// to one user.
pub async fn idempotent_replays<S: Store>(store: S) {
    let h = Harness::new(store);
    let deposit = Deposit {
        user: ALICE,
        amount: money(500),
    };
    let first = h
        .engine
        .deposit(deposit.clone(), key("dep-1"))
        .await
        .expect("deposit");
    let replay = h
        .engine
        .deposit(deposit.clone(), key("dep-1"))
        .await
        .expect("replay");
    assert_eq!(first, replay);
    assert_eq!(h.wallet(ALICE).await.balance, money(500));
    let other = Deposit {
        user: ALICE,
        amount: money(501),
    };
    let conflict = h.engine.deposit(other, key("dep-1")).await;
    assert!(
        matches!(conflict, Err(EngineError::IdempotencyConflict { ref key }) if key.as_str() == "dep-1"),
        "{conflict:?}"
    );
    // The same key text from another user is another key.
    let bob = Deposit {
        user: BOB,
        amount: money(500),
    };
    h.engine
        .deposit(bob, key("dep-1"))
        .await
        .expect("bob's own key");

    let auction = h.create(h.national(100, 10)).await;
    let bid = bid_of(auction.id, ALICE, 150);
    let placed = h
        .engine
        .place_bid(bid.clone(), key("bid-1"))
        .await
        .expect("bid");
    h.bid(auction.id, BOB, 160).await.expect("bob outbids");
    let replayed = h
        .engine
        .place_bid(bid.clone(), key("bid-1"))
        .await
        .expect("replay");
    assert_eq!(placed, replayed, "a replay answers with the first receipt");
    let view = h
        .engine
        .auction(auction.id, Page::default())
        .await
        .expect("auction");
    assert_eq!(view.bids.len(), 2, "no second bid");
    assert_eq!(view.auction.bidding.leader, Some(BOB));
    let reused = PlaceBid {
        amount: money(170),
        ..bid
    };
    let conflict = h.engine.place_bid(reused, key("bid-1")).await;
    assert!(matches!(
        conflict,
        Err(EngineError::IdempotencyConflict { .. })
    ));

    // A refused command is not recorded: retrying it decides afresh.
    let withdraw = Withdraw {
        user: ALICE,
        amount: money(600),
    };
    let refused = h.engine.withdraw(withdraw.clone(), key("wd-1")).await;
    assert!(matches!(
        rejection(refused),
        Rejection::InsufficientFunds { .. }
    ));
    h.fund(ALICE, 100).await;
    h.engine
        .withdraw(withdraw, key("wd-1"))
        .await
        .expect("now covered");
    h.assert_books(&[ALICE, BOB, SELLER], money(500)).await;
}

/// The same key sent twice at once has exactly one effect, and both
/// callers get the same receipt.
pub async fn concurrent_idempotent_requests<S: Store>(store: S) {
    let h = Harness::new(store);
    for round in 0..20 {
        let deposit = Deposit {
            user: ALICE,
            amount: money(10),
        };
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let (engine, barrier, deposit) =
                    (h.engine.clone(), barrier.clone(), deposit.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    engine.deposit(deposit, key(&format!("same-{round}"))).await
                })
            })
            .collect();
        let mut receipts = Vec::new();
        for task in tasks {
            receipts.push(task.await.expect("task").expect("deposit"));
        }
        assert_eq!(receipts[0], receipts[1]);
        assert_eq!(h.wallet(ALICE).await.balance, money(10 * (round + 1)));
    }
}

/// A key already stored cannot be stored again: the second save, or its
/// commit, is a retryable conflict (the engine's retry then finds the
/// first record), and the first record stays. This is what makes two
/// requests with one key at once have one effect when their transactions
/// do not wait for each other.
pub async fn a_stored_key_is_not_stored_again<S: Store>(store: S) {
    let h = Harness::new(store);
    let deposit = Deposit {
        user: ALICE,
        amount: money(10),
    };
    let first = h
        .engine
        .deposit(deposit.clone(), key("once"))
        .await
        .expect("deposit");
    let once = key("once").expect("a key");
    let mut tx = h.engine.store().begin().await.expect("begin");
    let record = tx
        .load_idempotency(ALICE, &once)
        .await
        .expect("load")
        .expect("stored by the deposit");
    let stored = match tx.save_idempotency(ALICE, &once, &record).await {
        Ok(()) => tx.commit().await,
        Err(error) => {
            // It holds its connection (SQLite's one writer) until it ends.
            tx.rollback().await.expect("rollback");
            Err(error)
        }
    };
    let error = stored.expect_err("the key is taken");
    assert_eq!(error.kind(), StoreErrorKind::Conflict, "{error}");

    let replay = h.engine.deposit(deposit, Some(once)).await;
    assert_eq!(replay.expect("replay"), first, "the first record answers");
    assert_eq!(h.wallet(ALICE).await.balance, money(10));
}

/// A client lost the answer to its bid (the connection died after COMMIT
/// was sent) and sends it again while that commit is still on its way: the
/// retry gets the first attempt's answer, not a refusal caused by the
/// first attempt itself, and the bid happens once. Single commands and
/// coalesced batches alike.
pub async fn a_retry_during_its_lost_commit_gets_its_answer<S: Store>(store: S) {
    let store = Arc::new(FaultyStore::new(store));
    let switch = store.switch();
    for (round, coalesce_bids) in [false, true].into_iter().enumerate() {
        let h = Harness::configured(Arc::clone(&store), |config| {
            config.coalesce_bids = coalesce_bids;
        });
        h.fund(ALICE, 1_000).await;
        let auction = h.create(h.national(100, 10)).await;
        let bid = bid_of(auction.id, ALICE, 100);
        let key = key(&format!("lost-{coalesce_bids}"));

        switch.arm(Fault::CommitLate);
        let lost = h.engine.place_bid(bid.clone(), key.clone()).await;
        assert!(
            matches!(&lost, Err(EngineError::Store(error)) if error.kind() == StoreErrorKind::Unavailable),
            "the first answer is lost: {lost:?}"
        );
        let retry = tokio::spawn({
            let engine = h.engine.clone();
            async move { engine.place_bid(bid, key).await }
        });
        // Row-locking stores: the retry now waits for the auction the first
        // attempt still holds. Optimistic ones: the retry may have
        // committed first, and the late commit then fails as a conflict.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let landed = switch.land_late_commits().await;
        let answer = retry.await.expect("the retry").unwrap_or_else(|error| {
            panic!("the retry was refused ({error}); late commit: {landed:?}")
        });

        let view = h
            .engine
            .auction(auction.id, Page::first(10))
            .await
            .expect("the auction");
        assert_eq!(view.bids.len(), 1, "one bid, whichever attempt wrote it");
        assert_eq!(answer.bid.map(|bid| bid.id), Some(view.bids[0].id));
        assert_eq!(view.auction.bidding.leader, Some(ALICE));
        // Each round's bid holds 100, once.
        let holds = 100 * (round as u64 + 1);
        assert_eq!(h.wallet(ALICE).await.locked, money(holds));
    }
}
