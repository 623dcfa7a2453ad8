//! The conformance suite on the memory store, and the load tests at a
//! size that suits a unit-test run.

use std::time::Duration;

use neighborbid_core::testkit::{self, Load};
use neighborbid_core::MemoryStore;

async fn fresh_store() -> (MemoryStore, ()) {
    (MemoryStore::new(), ())
}

neighborbid_core::conformance_tests!(fresh_store);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_auction_under_load() {
    let report = testkit::hot_auction(
        MemoryStore::new(),
        Load::new(16, Duration::from_millis(500)),
    )
    .await;
    assert!(report.accepted > 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_auctions_under_load() {
    let report = testkit::many_auctions(
        MemoryStore::new(),
        Load::new(16, Duration::from_millis(500)),
    )
    .await;
    assert!(report.accepted > 0, "{report:?}");
}

/// The caller's work is really done: each bid costs a task at least that
/// much time, which bounds how many bids it can decide (the bound cannot
/// be reached by a slow machine, only overshot by a skipped wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_work_is_spent_after_every_answer() {
    let (tasks, duration, work) = (2, Duration::from_millis(200), Duration::from_millis(10));
    let load = Load {
        caller_work: work,
        ..Load::new(tasks, duration)
    };
    let report = testkit::hot_auction(MemoryStore::new(), load).await;
    let per_task = report.elapsed.as_micros() / work.as_micros() + 1;
    let most = tasks as u128 * per_task;
    assert!(report.decided() > 0, "{report:?}");
    assert!(
        u128::from(report.decided()) <= most,
        "{} bids decided in {:?}, at most {most} with {work:?} of work each",
        report.decided(),
        report.elapsed
    );
}

/// Two passes forgetting the same rows at once: the one that commits
/// second finds them gone and conflicts (the engine retries it), so each
/// pass counts only what it removed, as a database's `DELETE` does.
#[tokio::test]
async fn racing_forget_passes_count_each_row_once() {
    use neighborbid_core::store::{AuctionStore, Outbox};
    use neighborbid_core::testkit::{Harness, ALICE};
    use neighborbid_core::{AuctionId, Deposit, IdempotencyKey, MemoryTx, Money};
    use neighborbid_core::{Store, StoreErrorKind, Timestamp, Transaction};

    #[derive(Clone, Copy, Debug)]
    enum Rows {
        Events,
        Keys,
    }
    async fn forget(tx: &mut MemoryTx, rows: Rows, now: Timestamp) -> u64 {
        match rows {
            Rows::Events => {
                tx.forget_events(now, AuctionId(0), 10)
                    .await
                    .unwrap()
                    .events
            }
            Rows::Keys => tx
                .forget_idempotency(Duration::from_millis(1), 10)
                .await
                .unwrap(),
        }
    }

    let h = Harness::new(MemoryStore::new());
    let deposit = Deposit {
        user: ALICE,
        amount: Money::units(500),
    };
    let key = IdempotencyKey::new("a").expect("a key");
    h.engine.deposit(deposit, Some(key)).await.expect("deposit");
    let auction = h.create(h.national(100, 10)).await;
    h.bid(auction.id, ALICE, 100).await.expect("bid");
    h.clock.advance(chrono::TimeDelta::hours(2));
    h.engine.close_due_auctions(10).await.expect("close");
    let events = h.outbox(auction.id).await.len() as u64;
    assert!(events > 0);
    // The store stamps records in microseconds at most.
    tokio::time::sleep(Duration::from_millis(5)).await;

    let (store, now) = (h.engine.store(), h.now());
    for (rows, count) in [(Rows::Events, events), (Rows::Keys, 1)] {
        let (mut first, mut second) = (store.begin().await.unwrap(), store.begin().await.unwrap());
        assert_eq!(forget(&mut first, rows, now).await, count, "{rows:?}");
        assert_eq!(forget(&mut second, rows, now).await, count, "{rows:?}");
        first.commit().await.expect("the first pass");
        let error = second.commit().await.expect_err("its rows are gone");
        assert_eq!(error.kind(), StoreErrorKind::Conflict, "{rows:?}: {error}");
        // What the engine's retry of the second pass finds.
        let mut again = store.begin().await.unwrap();
        assert_eq!(forget(&mut again, rows, now).await, 0, "{rows:?}");
    }
}

/// The engine forgets old idempotency records a thousand per transaction
/// and goes on until a batch comes back short: one call forgets them all.
#[tokio::test]
async fn forgetting_keys_goes_on_past_one_batch() {
    use neighborbid_core::testkit::{Harness, ALICE};
    use neighborbid_core::{Deposit, IdempotencyKey, Money};

    let h = Harness::new(MemoryStore::new());
    for i in 0..2_500 {
        let deposit = Deposit {
            user: ALICE,
            amount: Money::units(1),
        };
        let key = IdempotencyKey::new(format!("deposit-{i}")).expect("a key");
        h.engine.deposit(deposit, Some(key)).await.expect("deposit");
    }
    // The store stamps records in microseconds at most.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let age = Duration::from_millis(1);
    assert_eq!(
        h.engine.forget_idempotency(age).await.expect("forget"),
        2_500
    );
    assert_eq!(h.engine.forget_idempotency(age).await.expect("forget"), 0);
}

/// A conflicting command waits out the retry policy's delay before each
/// retry (on tokio's paused clock, which skips over the waits).
#[tokio::test(start_paused = true)]
async fn retries_back_off() {
    use neighborbid_core::testkit::{FaultyStore, Harness, ALICE};
    use neighborbid_core::RetryPolicy;

    let store = FaultyStore::new(MemoryStore::new());
    let faulty = store.switch();
    let h = Harness::configured(store, |config| {
        config.retry = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(1),
        };
    });
    faulty.conflict_commits(2);
    let start = tokio::time::Instant::now();
    h.fund(ALICE, 5).await;
    // The first retry waits 5 to 10 ms, the second 10 to 20 ms.
    let waited = start.elapsed();
    let expected = Duration::from_millis(15)..=Duration::from_millis(30);
    assert!(expected.contains(&waited), "waited {waited:?}");
    assert_eq!(faulty.conflicts_left(), 0);
}

/// Every conformance behaviour defined in the testkit's modules is in the
/// list `conformance_tests!` runs, and the list names nothing else: a
/// behaviour cannot be written and then forgotten by the stores.
#[test]
fn the_suites_list_and_its_definitions_agree() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/testkit");
    let mut defined = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("the testkit's modules") {
        let text = std::fs::read_to_string(entry.expect("a module").path()).expect("text");
        for line in text.lines() {
            let behaviour = line
                .strip_prefix("pub async fn ")
                .and_then(|rest| rest.strip_suffix("<S: Store>(store: S) {"));
            defined.extend(behaviour.map(str::to_owned));
        }
    }
    let root = std::fs::read_to_string(dir.with_extension("rs")).expect("testkit.rs");
    let list = root
        .split_once("$crate::conformance_tests!(@each $factory;")
        .and_then(|(_, rest)| rest.split_once(");"))
        .expect("the macro's list")
        .0;
    let listed: std::collections::BTreeSet<String> = list
        .split(',')
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect();
    assert!(defined.len() > 30, "found the definitions: {defined:?}");
    assert_eq!(listed, defined);
}
