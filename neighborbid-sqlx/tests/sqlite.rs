//! `SqliteStore` on a temporary file: the conformance suite, the schema's
//! guards, WAL mode, load, and two processes writing one file.

mod common;

use common::{stored, upgrade};

use std::time::Duration;

use neighborbid_core::testkit::{self, money, Harness, Load, ALICE};
use neighborbid_core::{Deposit, IdempotencyKey, Money, Store, StoreErrorKind, Transaction};
use neighborbid_sqlx::{SqliteStore, SqliteStoreOptions};
use sqlx::Executor;
use tempfile::TempDir;

async fn fresh_store() -> (SqliteStore, TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open(&dir).await;
    (store, dir)
}

async fn open(dir: &TempDir) -> SqliteStore {
    let store = SqliteStore::open(dir.path().join("neighborbid.db"))
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    store
}

neighborbid_core::conformance_tests!(fresh_store);

/// Rows written by earlier versions, in the schema of their day, upgrade
/// and read back as they did then, and the engine carries on from them
/// (see `common/stored.rs` and `common/upgrade.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_stored_by_an_earlier_version_still_read_back() {
    if stored::blessing() {
        let (store, _dir) = fresh_store().await;
        stored::write_every_kind(store.clone()).await;
        stored::bless(&store, "sqlite", dump(&store).await).await;
    }
    for set in stored::sets() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SqliteStore::open(dir.path().join("neighborbid.db"))
            .await
            .expect("open");
        let version = upgrade::schema_version(&set);
        let then = upgrade::migrator_up_to("sqlite", version).await;
        then.run(store.writer())
            .await
            .expect("the schema of the set");
        sqlx::raw_sql(&stored::rows(&set, "sqlite"))
            .execute(store.writer())
            .await
            .unwrap_or_else(|error| panic!("set {set} loads into schema {version}: {error}"));
        store.migrate().await.expect("upgrade");
        stored::assert_reads_back(&store, &set).await;
        upgrade::carry_on(store).await;
    }
}

/// The fixtures' reading may only gain fields: a changed, dropped or
/// extra value fails.
#[test]
fn an_older_reading_may_lack_only_fields_added_since() {
    let old = "[\n    Auction {\n        id: 1,\n        seq: 2,\n    },\n]";
    let now = |fields: &str| format!("[\n    Auction {{\n        id: 1,\n{fields}    }},\n]");
    let added = "        seq: 2,\n        photos: [\n            \"a.jpg\",\n        ],\n        kind: None,\n";
    assert_eq!(stored::reads_back_as(old, &now(added)), Ok(()));
    assert_eq!(
        stored::reads_back_as(old, &now("        seq: 2,\n")),
        Ok(())
    );
    for wrong in [
        "        seq: 3,\n",
        "",
        "        kind: None,\n        seq: 3,\n",
    ] {
        assert!(
            stored::reads_back_as(old, &now(wrong)).is_err(),
            "{wrong:?}"
        );
    }
    let extra_row = format!("{}\n    Auction {{\n    }},\n]", &old[..old.len() - 2]);
    assert!(stored::reads_back_as(old, &extra_row).is_err());
}

/// Every row of the store's tables as `INSERT` statements, one per line.
async fn dump(store: &SqliteStore) -> String {
    let mut sql = String::new();
    for table in stored::TABLES {
        let columns: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info(?1) ORDER BY cid")
                .bind(table)
                .fetch_all(store.writer())
                .await
                .expect("columns");
        let values: Vec<String> = columns.iter().map(|c| format!("quote({c})")).collect();
        let select = format!(
            "SELECT 'INSERT INTO {table} ({}) VALUES (' || {} || ');' FROM {table} ORDER BY rowid",
            columns.join(", "),
            values.join(" || ', ' || "),
        );
        let lines: Vec<String> = sqlx::query_scalar(&select)
            .fetch_all(store.writer())
            .await
            .expect("rows");
        for line in lines {
            sql.push_str(&line);
            sql.push('\n');
        }
    }
    sql
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_refuses_what_must_never_happen() {
    let (store, _dir) = fresh_store().await;
    common::seed_rows(store.clone()).await;
    for (sql, what) in common::REFUSED {
        let result = store.writer().execute(*sql).await;
        assert!(result.is_err(), "the database accepted {what}: {sql}");
    }
    let delivered = store
        .writer()
        .execute("UPDATE outbox SET delivered_at = 1")
        .await
        .expect("an event may be marked delivered");
    assert!(delivered.rows_affected() > 0);
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.writer())
        .await
        .expect("journal mode");
    assert_eq!(mode, "wal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_auction_with_16_bidders() {
    let (store, _dir) = fresh_store().await;
    let report = testkit::hot_auction(store, Load::new(16, Duration::from_secs(1))).await;
    assert!(report.accepted > 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_auctions_from_shared_wallets() {
    let (store, _dir) = fresh_store().await;
    let report = testkit::many_auctions(store, Load::new(16, Duration::from_secs(1))).await;
    assert!(report.accepted > 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_file() {
    let dir = tempfile::tempdir().expect("temporary directory");
    // Two stores with their own connections stand for two processes; only
    // BEGIN IMMEDIATE serializes them.
    let first = Harness::new(open(&dir).await);
    let second = Harness::new(open(&dir).await);
    let deposits: Vec<_> = (0..100)
        .map(|i| {
            let engine = if i % 2 == 0 {
                first.engine.clone()
            } else {
                second.engine.clone()
            };
            tokio::spawn(async move {
                let deposit = Deposit {
                    user: ALICE,
                    amount: money(1),
                };
                let key = IdempotencyKey::new(format!("deposit-{}", i % 50)).expect("key");
                engine.deposit(deposit, Some(key)).await
            })
        })
        .collect();
    for deposit in deposits {
        deposit.await.expect("task").expect("deposit");
    }
    let wallet = second.wallet(ALICE).await;
    assert_eq!(
        (wallet.balance, wallet.locked),
        (money(50), Money::ZERO),
        "50 distinct requests, each applied once, from both processes"
    );
}

/// Another process holding the file's write lock past the busy timeout
/// makes a transaction fail as a retryable conflict, counted; the engine
/// retries it until the lock is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_lock_held_past_the_busy_timeout_is_a_counted_conflict() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let holder_store = open(&dir).await;
    let impatient = SqliteStoreOptions::new(dir.path().join("neighborbid.db"))
        .busy_timeout(Duration::from_millis(50))
        .open()
        .await
        .expect("open");

    let holder = holder_store.begin().await.expect("begin");
    let error = impatient.begin().await.expect_err("the file is locked");
    assert_eq!(error.kind(), StoreErrorKind::Conflict, "{error}");
    assert_eq!(impatient.conflicts().lock_timeouts, 1);

    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        holder.rollback().await.expect("rollback");
    });
    let h = Harness::new(impatient.clone());
    h.fund(ALICE, 5).await;
    assert_eq!(h.wallet(ALICE).await.balance, money(5));
    assert!(
        impatient.conflicts().lock_timeouts >= 2,
        "the deposit waited"
    );
    release.await.expect("release");
}
