//! `PgStore` under load, with real concurrent connections: 32 tasks on one
//! hot auction, and 32 tasks on many auctions from shared wallets without a
//! single deadlock. Kept apart from the suite so each runs alone.

use std::time::Duration;

use neighborbid_core::testkit::{self, Load};
use neighborbid_sqlx::testing::TestDatabase;
use sqlx::Row;

const TASKS: usize = 32;
const DURATION: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_auction_with_32_bidders() {
    let db = TestDatabase::create().await;
    let store = db.store_with(db.options().max_connections(32)).await;
    // Keyed, as API clients bid: coalesced batches also store records.
    let load = Load {
        keyed: true,
        ..Load::new(TASKS, DURATION)
    };
    let report = testkit::hot_auction(store.clone(), load).await;
    println!(
        "hot auction on Postgres: {report:?}, {:?}",
        store.conflicts()
    );
    assert!(report.accepted > 0, "{report:?}");
    assert_eq!(store.conflicts().deadlocks, 0);
    let records: i64 = sqlx::query("SELECT count(*) FROM idempotency")
        .fetch_one(store.pool())
        .await
        .expect("the idempotency table")
        .get(0);
    assert_eq!(
        u64::try_from(records).ok(),
        Some(report.accepted),
        "one record per accepted bid (refusals store none)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_auctions_and_wallets_never_deadlock() {
    let db = TestDatabase::create().await;
    let store = db.store_with(db.options().max_connections(32)).await;
    let report = testkit::many_auctions(store.clone(), Load::new(TASKS, DURATION)).await;
    println!(
        "many auctions on Postgres: {report:?}, {:?}",
        store.conflicts()
    );
    assert!(report.accepted > 0, "{report:?}");
    assert_eq!(
        store.conflicts().deadlocks,
        0,
        "40P01 seen by the store: the lock order was broken"
    );
    // The server's own count for this database agrees.
    let deadlocks: i64 =
        sqlx::query("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
            .fetch_one(store.pool())
            .await
            .expect("pg_stat_database")
            .get(0);
    assert_eq!(deadlocks, 0, "40P01 counted by Postgres");
}
