//! `PgStore` on a real Postgres server: the conformance suite, the schema's
//! guards, lock timeouts and closers in two processes. Each test gets its
//! own database (see `neighborbid_sqlx::testing`).

mod common;

use std::time::Duration;

use chrono::TimeDelta;
use neighborbid_core::testkit::{money, Harness, ALICE, BOB};
use neighborbid_core::{
    AuctionId, AuctionStore, EngineError, Rejection, Store, StoreErrorKind, Transaction,
    WalletLedger,
};
use neighborbid_sqlx::testing::TestDatabase;
use neighborbid_sqlx::PgStore;
use sqlx::Executor;

async fn fresh_store() -> (PgStore, TestDatabase) {
    let db = TestDatabase::create().await;
    (db.store().await, db)
}

neighborbid_core::conformance_tests!(fresh_store);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_refuses_what_must_never_happen() {
    let (store, _db) = fresh_store().await;
    common::seed_rows(store.clone()).await;
    for (sql, what) in common::REFUSED {
        let result = store.pool().execute(*sql).await;
        assert!(result.is_err(), "the database accepted {what}: {sql}");
    }
    let delivered = store
        .pool()
        .execute("UPDATE outbox SET delivered_at = now()")
        .await
        .expect("an event may be marked delivered");
    assert!(delivered.rows_affected() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_waits_time_out_as_retryable_conflicts() {
    let db = TestDatabase::create().await;
    let store = db
        .store_with(db.options().lock_timeout(Duration::from_millis(100)))
        .await;
    let h = Harness::new(store.clone());
    h.fund(ALICE, 500).await;
    let auction = h.create(h.national(100, 10)).await.id;

    let mut holder = store.begin().await.expect("begin");
    holder.lock_auction(auction).await.expect("lock");
    let mut waiter = store.begin().await.expect("begin");
    let error = waiter
        .lock_auction(auction)
        .await
        .expect_err("the lock is taken");
    assert_eq!(error.kind(), StoreErrorKind::Conflict, "{error}");
    assert_eq!(store.conflicts().lock_timeouts, 1);
    drop(waiter);

    // The engine retries a timed-out wait until the lock is free.
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(350)).await;
        drop(holder);
    });
    let receipt = h.bid(auction, ALICE, 100).await.expect("bid after retries");
    assert_eq!(receipt.auction.current_price, money(100));
    assert!(
        store.conflicts().lock_timeouts >= 2,
        "the bid waited and retried"
    );
    release.await.expect("release");
}

/// A stale bid is refused on the auction alone: it never waits for a
/// wallet lock, so a busy wallet does not slow refusals on a hot auction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_bids_are_refused_without_waiting_for_wallet_locks() {
    let db = TestDatabase::create().await;
    let store = db
        .store_with(db.options().lock_timeout(Duration::from_millis(100)))
        .await;
    let h = Harness::configured(store.clone(), |config| config.coalesce_bids = false);
    h.fund(ALICE, 500).await;
    h.fund(BOB, 500).await;
    let auction = h.create(h.national(100, 10)).await.id;
    h.bid(auction, ALICE, 120).await.expect("Alice leads");

    // Another transaction holds both wallets this bid would lock.
    let mut holder = store.begin().await.expect("begin");
    holder.lock_wallets(&[ALICE, BOB]).await.expect("lock");
    let refused = h.bid(auction, BOB, 110).await.expect_err("too low");
    assert!(
        matches!(
            refused,
            EngineError::Rejected(Rejection::BidTooLow { min_next_bid }) if min_next_bid == money(130)
        ),
        "{refused}"
    );
    assert_eq!(store.conflicts().lock_timeouts, 0, "the refusal waited");
    drop(holder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closers_in_two_processes_settle_each_auction_once() {
    let db = TestDatabase::create().await;
    // Two stores with their own pools stand for two server processes.
    let first = Harness::new(db.store().await);
    let second = Harness::new(db.store().await);
    first.fund(ALICE, 10_000).await;
    first.fund(BOB, 10_000).await;
    let mut auctions = Vec::new();
    for i in 0..20u64 {
        let auction = first.create(first.national(100, 10)).await.id;
        let bidder = if i % 2 == 0 { ALICE } else { BOB };
        first.bid(auction, bidder, 100 + i).await.expect("bid");
        auctions.push(auction);
    }
    for h in [&first, &second] {
        h.clock.advance(TimeDelta::hours(2));
    }
    let (a, b) = tokio::join!(
        first.engine.close_due_auctions(usize::MAX),
        second.engine.close_due_auctions(usize::MAX)
    );
    let (a, b) = (a.expect("first closer"), b.expect("second closer"));
    let mut closed: Vec<AuctionId> = a.iter().chain(&b).map(|auction| auction.id).collect();
    closed.sort();
    assert_eq!(
        closed, auctions,
        "each auction closed by exactly one closer"
    );
    let sales: u64 = (0..20u64).map(|i| 100 + i).sum();
    assert_eq!(
        first
            .wallet(neighborbid_core::testkit::SELLER)
            .await
            .balance,
        money(sales)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_in_two_processes_take_disjoint_outbox_events() {
    let (store, _db) = fresh_store().await;
    let h = Harness::new(store.clone());
    h.fund(ALICE, 10_000).await;
    let auction = h.create(h.national(100, 10)).await.id;
    for i in 0..5 {
        h.bid(auction, ALICE, 100 + 10 * i).await.expect("bid");
    }
    let later = h.now() + TimeDelta::days(1);
    let seqs = |events: Vec<neighborbid_core::Event>| -> Vec<u64> {
        events.iter().map(|event| event.seq).collect()
    };
    let mut first = store.begin().await.expect("begin");
    let mut second = store.begin().await.expect("begin");
    let taken = first.undelivered_events(later, 2).await.expect("first");
    let rest = second.undelivered_events(later, 100).await.expect("second");
    assert_eq!(seqs(taken), [1, 2]);
    assert_eq!(
        seqs(rest),
        [3, 4, 5],
        "rows the first relay holds are skipped"
    );
    first.rollback().await.expect("rollback"); // it failed before marking
    let mut third = store.begin().await.expect("begin");
    let again = third.undelivered_events(later, 100).await.expect("third");
    assert_eq!(seqs(again), [1, 2], "released rows are taken again");
    drop(second); // held its rows until here
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_unavailable_not_a_conflict() {
    let store = neighborbid_sqlx::PgStoreOptions::new("postgres://nobody@127.0.0.1:1/none")
        .expect("url")
        .acquire_timeout(Duration::from_millis(500))
        .connect();
    let error = store.begin().await.expect_err("nothing listens there");
    assert_eq!(error.kind(), StoreErrorKind::Unavailable, "{error}");
    let h = Harness::new(store);
    match h.bid(AuctionId(1), ALICE, 1).await {
        Err(EngineError::Store(error)) => assert!(!error.is_retryable()),
        other => panic!("expected a store error, got {other:?}"),
    }
}
