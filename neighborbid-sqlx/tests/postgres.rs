//! `PgStore` on a real Postgres server: the conformance suite, the schema's
//! guards, lock timeouts and closers in two processes. Each test gets its
//! own database (see `neighborbid_sqlx::testing`).

mod common;

use common::{stored, upgrade};

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use neighborbid_core::store::{AuctionStore, Outbox, WalletLedger};
use neighborbid_core::testkit::{
    bid_of, money, Fault, FaultyStore, GatedStore, Harness, ALICE, BOB, CAROL, SELLER,
};
use neighborbid_core::{
    AuctionId, EndEarly, EngineError, Rejection, Store, StoreErrorKind, Transaction,
};
use neighborbid_sqlx::testing::TestDatabase;
use neighborbid_sqlx::PgStore;
use sqlx::{Connection, Executor};

/// A session of its own on the database at `url`, beside the store's pool.
async fn session(url: &str) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|error| panic!("a session on {url}: {error}"))
}

async fn fresh_store() -> (PgStore, TestDatabase) {
    let db = TestDatabase::create().await;
    (db.store().await, db)
}

neighborbid_core::conformance_tests!(fresh_store);

/// Rows written by earlier versions, in the schema of their day, upgrade
/// and read back as they did then (and as on SQLite), and the engine
/// carries on from them (see `common/stored.rs` and `common/upgrade.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_stored_by_an_earlier_version_still_read_back() {
    if stored::blessing() {
        let (store, db) = fresh_store().await;
        stored::write_every_kind(store.clone()).await;
        stored::bless(&store, "postgres", dump(db.url()).await).await;
    }
    for set in stored::sets() {
        let db = TestDatabase::create().await;
        let store = db.options().connect();
        let version = upgrade::schema_version(&set);
        let then = upgrade::migrator_up_to("postgres", version).await;
        then.run(store.pool()).await.expect("the schema of the set");
        session(db.url())
            .await
            .execute(sqlx::raw_sql(&stored::rows(&set, "postgres")))
            .await
            .unwrap_or_else(|error| panic!("set {set} loads into schema {version}: {error}"));
        store.migrate().await.expect("upgrade");
        stored::assert_reads_back(&store, &set).await;
        upgrade::carry_on(store).await;
    }
}

/// Every row of the database's tables as `INSERT` statements, one per line
/// (each row as JSON, which `json_populate_record` turns back into a row).
async fn dump(url: &str) -> String {
    let mut session = session(url).await;
    let mut sql = String::new();
    for table in common::stored::TABLES {
        let select = format!(
            "SELECT format('INSERT INTO {table} OVERRIDING SYSTEM VALUE SELECT * FROM json_populate_record(NULL::{table}, %L);', \
             row_to_json(t)::text) FROM {table} AS t ORDER BY t"
        );
        let lines: Vec<String> = sqlx::query_scalar(&select)
            .fetch_all(&mut session)
            .await
            .expect("rows");
        for line in lines {
            sql.push_str(&line);
            sql.push('\n');
        }
    }
    sql
}

/// A fresh store whose lock waits time out after 100 ms.
async fn impatient_store() -> (PgStore, TestDatabase) {
    let db = TestDatabase::create().await;
    let options = db.options().lock_timeout(Duration::from_millis(100));
    (db.store_with(options).await, db)
}

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
    let (store, _db) = impatient_store().await;
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
    assert_eq!(receipt.auction.bidding.current_price, money(100));
    assert!(
        store.conflicts().lock_timeouts >= 2,
        "the bid waited and retried"
    );
    release.await.expect("release");
}

/// A deadlock (which the engine's lock order keeps from happening) is a
/// retryable conflict, and counted: the load generator's "0 deadlocks"
/// comes from this counter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_is_a_counted_retryable_conflict() {
    let (store, _db) = fresh_store().await;
    let h = Harness::new(store.clone());
    let one = h.create(h.national(100, 10)).await.id;
    let other = h.create(h.national(100, 10)).await.id;

    // Each transaction holds one auction and then asks for the other's.
    let cross = |holds: AuctionId, wants: AuctionId| {
        let store = store.clone();
        let (held, go) = (
            tokio::sync::oneshot::channel(),
            tokio::sync::oneshot::channel(),
        );
        let task = tokio::spawn(async move {
            let mut tx = store.begin().await.expect("begin");
            tx.lock_auction(holds).await.expect("lock");
            held.0.send(()).expect("the test waits");
            go.1.await.expect("the test says go");
            let wanted = tx.lock_auction(wants).await;
            // The loser's locks go at once, so the winner is not left waiting.
            tx.rollback().await.expect("rollback");
            wanted.map(|_| ())
        });
        (held.1, go.0, task)
    };
    let (first_held, first_go, first) = cross(one, other);
    let (second_held, second_go, second) = cross(other, one);
    first_held.await.expect("first holds");
    second_held.await.expect("second holds");
    first_go.send(()).expect("first waits");
    second_go.send(()).expect("second waits");

    let outcomes = [first.await.expect("a task"), second.await.expect("a task")];
    let broken: Vec<_> = outcomes
        .iter()
        .filter_map(|outcome| outcome.as_ref().err())
        .collect();
    assert_eq!(
        broken.len(),
        1,
        "Postgres breaks one of the two: {outcomes:?}"
    );
    assert_eq!(broken[0].kind(), StoreErrorKind::Conflict, "{}", broken[0]);
    assert_eq!(store.conflicts().deadlocks, 1);
}

/// Where a host makes its database's transactions SERIALIZABLE by
/// default, Postgres refuses a transaction that would lock a row changed
/// since its snapshot: a retryable conflict, and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serialization_failures_are_counted_retryable_conflicts() {
    let db = TestDatabase::create().await;
    let mut admin = session(db.url()).await;
    let serializable = format!(
        "ALTER DATABASE \"{}\" SET default_transaction_isolation = 'serializable'",
        db.name()
    );
    admin.execute(serializable.as_str()).await.expect("alter");
    let store = db.store().await;
    let h = Harness::new(store.clone());
    h.fund(ALICE, 500).await;
    let auction = h.create(h.national(100, 10)).await.id;
    let other = h.create(h.national(100, 10)).await.id;

    let mut late = store.begin().await.expect("begin");
    late.lock_auction(other)
        .await
        .expect("the snapshot is taken");
    h.bid(auction, ALICE, 100)
        .await
        .expect("a bid changes the auction");
    let error = late
        .lock_auction(auction)
        .await
        .expect_err("changed since the snapshot");
    assert_eq!(error.kind(), StoreErrorKind::Conflict, "{error}");
    assert_eq!(store.conflicts().serialization_failures, 1);
}

/// A stale bid is refused on the auction alone: it never waits for a
/// wallet lock, so a busy wallet does not slow refusals on a hot auction.
/// Alone (without coalescing), and in a coalesced batch beside a bid that
/// wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_bids_are_refused_without_waiting_for_wallet_locks() {
    let (store, _db) = impatient_store().await;
    let alone = Harness::configured(store.clone(), |config| config.coalesce_bids = false);
    alone.fund(ALICE, 500).await;
    alone.fund(BOB, 500).await;
    alone.fund(CAROL, 500).await;
    let auction = alone.create(alone.national(100, 10)).await.id;
    alone.bid(auction, ALICE, 120).await.expect("Alice leads");

    // Another transaction holds Bob's wallet all along.
    let mut holder = store.begin().await.expect("begin");
    holder.lock_wallets(&[BOB]).await.expect("lock");
    let refused = alone.bid(auction, BOB, 110).await.expect_err("too low");
    assert!(too_low(&refused, 130), "{refused}");

    let gated = GatedStore::new(store.clone());
    let batched = Harness::configured(Arc::clone(&gated), |config| config.coalesce_bids = true);
    gated.close();
    let bid = |bidder, units| {
        let engine = batched.engine.clone();
        tokio::spawn(async move { engine.place_bid(bid_of(auction, bidder, units), None).await })
    };
    let opener = bid(ALICE, 130); // held at the gate: Bob and Carol queue
    while gated.waiting() == 0 {
        tokio::task::yield_now().await;
    }
    let mut later = Vec::new();
    // Carol's bid queues first, then Bob's, already stale: Alice will lead
    // at 130.
    for (bidder, units) in [(CAROL, 140), (BOB, 135)] {
        later.push(bid(bidder, units));
        while batched.engine.waiting_bids(auction) < later.len() {
            tokio::task::yield_now().await;
        }
    }
    let [carol, bob] = <[_; 2]>::try_from(later).expect("two bids");
    gated.open();
    opener.await.expect("a task").expect("Alice raises");
    carol.await.expect("a task").expect("Carol leads");
    let refused = bob.await.expect("a task").expect_err("too low");
    assert!(too_low(&refused, 150), "as of its turn: {refused}");
    assert_eq!(store.conflicts().lock_timeouts, 0, "a refusal waited");
    drop(holder);
}

fn too_low(refused: &EngineError, min: u64) -> bool {
    matches!(
        refused,
        EngineError::Rejected(Rejection::BidTooLow { min_next_bid }) if *min_next_bid == money(min)
    )
}

/// A refused command, and one that failed after taking its locks, release
/// their rows before the caller hears the answer. sqlx alone rolls a
/// dropped transaction back only once its connection is back in the pool,
/// from a task of its own, so another session (a closer's `SKIP LOCKED`,
/// say) could still find them locked.
#[tokio::test(flavor = "current_thread")]
async fn refused_and_failed_commands_release_their_locks_before_answering() {
    let (store, db) = fresh_store().await;
    let store = FaultyStore::new(store);
    let faults = store.switch();
    let h = Harness::new(store);
    h.fund(ALICE, 500).await;
    let auction = h.create(h.national(100, 10)).await.id;
    h.bid(auction, ALICE, 100).await.expect("Alice leads");
    let rows = [
        ("auctions", "id", auction.0),
        ("wallets", "user_id", ALICE.0),
        ("wallets", "user_id", SELLER.0),
    ];

    let by_bidder = EndEarly {
        auction_id: auction,
        seller: ALICE,
    };
    let refused = h.engine.end_early(by_bidder, None).await;
    assert!(
        matches!(refused, Err(EngineError::Rejected(Rejection::NotSeller))),
        "{refused:?}"
    );
    assert_eq!(held(db.url(), &rows), [] as [String; 0], "after a refusal");

    // A settlement that fails after claiming the auction and locking the
    // winner's and the seller's wallets.
    h.clock.advance(TimeDelta::hours(2));
    faults.arm(Fault::WriteDecisions);
    let passed = h.engine.close_due_auctions(10).await.expect("a pass");
    assert!(faults.fired() && passed.is_empty(), "{passed:?}");
    assert_eq!(h.engine.stuck_auctions().len(), 1, "set aside");
    assert_eq!(held(db.url(), &rows), [] as [String; 0], "after a failure");
}

/// A coalesced batch that fails rolls back before its bidders hear of it,
/// as single commands do: the auction and the wallets it locked are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_releases_its_locks_before_answering() {
    let (store, db) = fresh_store().await;
    let gated = GatedStore::new(store);
    let store = FaultyStore::new(Arc::clone(&gated));
    let faults = store.switch();
    let h = Harness::new(store);
    h.fund(ALICE, 500).await;
    h.fund(BOB, 500).await;
    let auction = h.create(h.national(100, 10)).await.id;
    h.bid(auction, ALICE, 100).await.expect("Alice leads");
    let rows = [
        ("auctions", "id", auction.0),
        ("wallets", "user_id", ALICE.0),
        ("wallets", "user_id", BOB.0),
    ];

    // A stale bid holds the auction's lane at the gate; Bob's winning bid
    // queues behind it and runs in the lane's next batch, which fails.
    gated.close();
    let place = |units| {
        let engine = h.engine.clone();
        tokio::spawn(async move { engine.place_bid(bid_of(auction, BOB, units), None).await })
    };
    let stale = place(100);
    while gated.waiting() != 1 {
        tokio::task::yield_now().await;
    }
    let batched = place(200);
    while h.engine.waiting_bids(auction) != 1 {
        tokio::task::yield_now().await;
    }
    faults.arm(Fault::WriteDecisions);
    gated.open();
    let stale = stale.await.expect("the stale bid");
    assert!(
        matches!(
            stale,
            Err(EngineError::Rejected(Rejection::BidTooLow { .. }))
        ),
        "{stale:?}"
    );
    let failed = batched.await.expect("the batched bid");
    assert!(faults.fired() && failed.is_err(), "{failed:?}");
    assert_eq!(held(db.url(), &rows), [] as [String; 0], "after the batch");
}

/// Which of `rows` (table, key column, key) another session finds locked,
/// asked from another thread while this one blocks: on a one-thread
/// runtime, no task of the pool can run before the answer.
fn held(url: &str, rows: &[(&str, &str, i64)]) -> Vec<String> {
    let url = url.to_owned();
    let queries: Vec<String> = rows
        .iter()
        .map(|(table, column, key)| {
            format!("SELECT 1 FROM {table} WHERE {column} = {key} FOR UPDATE NOWAIT")
        })
        .collect();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let mut other = session(&url).await;
            let mut locked = Vec::new();
            for sql in queries {
                if let Err(error) = other.execute(sql.as_str()).await {
                    locked.push(format!("{sql}: {error}"));
                }
            }
            locked
        })
    })
    .join()
    .expect("the other session")
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
    assert_eq!(first.wallet(SELLER).await.balance, money(sales));
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

/// The pool takes connections without a test ping (a round trip at the
/// start of every transaction), but tests one that sat idle for a second
/// or more: one the server cut off meanwhile is replaced, not handed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_off_while_idle_is_replaced() {
    let (db, h) = funded_alice_on_one_connection().await;
    cut_off_the_pools_connection(&db).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;

    h.fund(ALICE, 1).await;
    assert_eq!(h.wallet(ALICE).await.balance, money(101));
}

/// A connection cut off moments before it is taken (too soon for the
/// pool to test it) fails its `BEGIN`, which has done nothing yet: the
/// transaction begins again on a fresh connection, and the command
/// succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_off_just_before_use_is_replaced() {
    let (db, h) = funded_alice_on_one_connection().await;
    cut_off_the_pools_connection(&db).await;

    h.fund(ALICE, 1).await;
    assert_eq!(h.wallet(ALICE).await.balance, money(101));
}

/// A connection lost in the middle of a transaction is `Unavailable`
/// (HTTP answers a retryable 503), not an unexplained failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_mid_transaction_is_unavailable() {
    let db = TestDatabase::create().await;
    let store = db.store_with(db.options().max_connections(1)).await;
    let h = Harness::new(store.clone());
    let auction = h.create(h.national(100, 10)).await.id;

    let mut tx = store.begin().await.expect("begin");
    tx.lock_auction(auction).await.expect("lock");
    cut_off_the_pools_connection(&db).await;
    let error = tx
        .lock_auction(auction)
        .await
        .expect_err("the connection is gone");
    assert_eq!(error.kind(), StoreErrorKind::Unavailable, "{error}");
}

/// The `BEGIN` is begun again once only: with two dead connections in
/// the pool, only the test of an idle connection keeps the second from
/// being handed out too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_cut_off_while_idle_is_replaced() {
    let db = TestDatabase::create().await;
    let store = db.store_with(db.options().max_connections(2)).await;
    let (first, second) = tokio::join!(store.begin(), store.begin());
    first.expect("begin").commit().await.expect("commit");
    second.expect("begin").commit().await.expect("commit");
    assert_eq!(cut_off_the_pools_connections(&db).await, 2);
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let h = Harness::new(store);
    h.fund(ALICE, 1).await;
    assert_eq!(h.wallet(ALICE).await.balance, money(1));
}

/// A store whose pool holds one connection, used once (Alice funded with 100).
async fn funded_alice_on_one_connection() -> (TestDatabase, Harness<PgStore>) {
    let db = TestDatabase::create().await;
    let store = db.store_with(db.options().max_connections(1)).await;
    let h = Harness::new(store);
    h.fund(ALICE, 100).await;
    (db, h)
}

/// Terminates every other connection to `db` (the pool's one) and waits
/// until its backend is gone.
async fn cut_off_the_pools_connection(db: &TestDatabase) {
    assert_eq!(
        cut_off_the_pools_connections(db).await,
        1,
        "the pool's one connection is cut off"
    );
}

/// Terminates every other connection to `db`, waits until their backends
/// are gone, and says how many there were.
async fn cut_off_the_pools_connections(db: &TestDatabase) -> usize {
    let mut admin = session(db.url()).await;
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut admin)
    .await
    .expect("terminate");
    assert!(cut.iter().all(|&gone| gone), "every backend ended: {cut:?}");
    cut.len()
}

/// Each test's database is gone once its handle is dropped, even while a
/// pool still holds connections to it: test runs leave nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_database_is_dropped_with_its_handle() {
    let witness = TestDatabase::create().await;
    let mut admin = session(witness.url()).await;
    let db = TestDatabase::create().await;
    let name = db.name().to_owned();
    let store = db.store().await;
    Harness::new(store.clone()).fund(ALICE, 1).await;
    let count = "SELECT COUNT(*) FROM pg_database WHERE datname = $1";
    let exists = sqlx::query_scalar::<_, i64>(count).bind(&name);
    assert_eq!(exists.fetch_one(&mut admin).await.expect("count"), 1);

    drop(db);
    let exists = sqlx::query_scalar::<_, i64>(count).bind(&name);
    assert_eq!(exists.fetch_one(&mut admin).await.expect("count"), 0);
    drop(store);
}

/// Every command on an auction is timed once it holds the auction's lock:
/// one that waited for the lock until after the end is refused as late,
/// on every path (a bid alone, a bid in a batch, buy-now, ending early),
/// and one that got the lock before the end is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_waited_for_the_lock_past_the_end_is_late() {
    use neighborbid_core::{BuyNow, Receipt};

    let (store, _db) = fresh_store().await;
    let paths = ["bid", "batched bid", "buy-now", "end early", "bid in time"];
    for path in paths {
        let h = Harness::configured(store.clone(), |config| {
            config.coalesce_bids = path == "batched bid";
        });
        h.fund(ALICE, 1_000).await;
        let mut cmd = h.national(100, 10);
        cmd.listing.buy_now_price = Some(money(500));
        let auction = h.create(cmd).await;
        let ends_at = auction.bidding.ends_at;

        let mut holder = store.begin().await.expect("begin");
        holder.lock_auction(auction.id).await.expect("lock");
        let engine = h.engine.clone();
        let id = auction.id;
        let command = tokio::spawn(async move {
            match path {
                "buy-now" => {
                    let buy = BuyNow {
                        auction_id: id,
                        buyer: ALICE,
                        buyer_region: None,
                    };
                    engine.buy_now(buy, None).await.map(Receipt::BoughtNow)
                }
                "end early" => {
                    let end = EndEarly {
                        auction_id: id,
                        seller: SELLER,
                    };
                    engine.end_early(end, None).await.map(Receipt::EndedEarly)
                }
                _ => (engine.place_bid(bid_of(id, ALICE, 100), None).await).map(Receipt::BidPlaced),
            }
        });
        // The command waits for the lock while the end passes.
        tokio::time::sleep(Duration::from_millis(300)).await;
        if path != "bid in time" {
            h.clock.set(ends_at + TimeDelta::seconds(1));
        }
        holder.rollback().await.expect("release");
        let result = command.await.expect("the command's task");
        if path == "bid in time" {
            assert!(result.is_ok(), "{path}: {result:?}");
        } else {
            let late = matches!(
                result,
                Err(EngineError::Rejected(Rejection::AuctionEnded { .. }))
            );
            assert!(late, "{path}: {result:?}");
        }
        assert_eq!(
            h.auction(auction.id).await.bidding.bid_count,
            u32::from(path == "bid in time"),
            "{path}"
        );
    }
}

/// Two server processes whose own clocks are minutes apart, on one
/// database that times their decisions (`database_clock`): they accept,
/// extend and refuse bids alike, and the closer settles the auction at the
/// database's end, not at either process's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_whose_clocks_disagree_decide_by_the_database_clock() {
    use neighborbid_core::{AuctionStatus, ClosePolicy, CreateAuction, Increment};

    let db = TestDatabase::create().await;
    let options = || db.options().database_clock(true);
    let ahead = Harness::configured(db.store_with(options()).await, |config| {
        config.coalesce_bids = false;
    });
    let behind = Harness::configured(db.store_with(options()).await, |config| {
        config.coalesce_bids = true;
    });
    let start = chrono::Utc::now();
    ahead.clock.set(start + TimeDelta::minutes(5));
    behind.clock.set(start - TimeDelta::minutes(5));
    ahead.fund(ALICE, 1_000).await;
    behind.fund(BOB, 1_000).await;
    let ends_at = start + TimeDelta::seconds(3);
    let mut cmd = CreateAuction::new(
        SELLER,
        "Lamp",
        money(100),
        Increment::fixed(money(10)),
        ends_at,
    );
    cmd.listing.policy.close = ClosePolicy::Soft {
        window_secs: 2,
        extend_by_secs: 2,
        max_extensions: 1,
    };
    let auction = ahead.create(cmd).await;
    assert!(
        auction.starts_at < ends_at,
        "created at the database's time"
    );

    // By its own clock the auction ended minutes ago; by the database's
    // it runs, and the bid is outside the closing window.
    let first = ahead.bid(auction.id, ALICE, 100).await.expect("in time");
    assert_eq!(first.auction.bidding.extensions, 0);
    // Inside the window by the database's clock (by its own, minutes
    // before it): the bid extends the auction.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let second = behind.bid(auction.id, BOB, 110).await.expect("in time");
    assert_eq!(second.auction.bidding.extensions, 1, "{:?}", second.auction);
    let extended = second.auction.bidding.ends_at;
    assert!(extended > ends_at, "{extended} after {ends_at}");
    assert!(
        ahead
            .engine
            .close_due_auctions(10)
            .await
            .expect("close")
            .is_empty(),
        "not due by the database's clock"
    );

    let wait = (extended - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(200)).await;
    let late = behind.bid(auction.id, ALICE, 200).await;
    assert!(
        matches!(
            late,
            Err(EngineError::Rejected(Rejection::AuctionEnded { .. }))
        ),
        "ended by the database's clock: {late:?}"
    );
    let closed = ahead.engine.close_due_auctions(10).await.expect("close");
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].bidding.status, AuctionStatus::Sold);
    let closed_at = closed[0].bidding.closed_at.expect("closed");
    assert!(
        closed_at >= extended,
        "{closed_at} before the end {extended}"
    );
    assert!(closed_at < ahead.now(), "not the process's clock");
}
