//! Existing databases upgrade. Each fixture set names the schema version
//! its rows were written under (`<set>-schema.txt`); the tests migrate a
//! fresh database to that version only, load the set's rows, run the
//! store's own `migrate()` (every migration since), and then check that
//! the rows read back and that the engine carries on from them.

use std::path::PathBuf;

use chrono::TimeDelta;
use neighborbid_core::testkit::{money, Harness, ALICE, BOB};
use neighborbid_core::{
    AuctionFilter, AuctionStatus, Deposit, EngineError, IdempotencyKey, Money, Page, PlaceBid,
    Store,
};
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, Migrator};

use super::stored::{fixture, USERS};

/// The schema version the rows of `set` were written under.
pub(crate) fn schema_version(set: &str) -> i64 {
    let text = std::fs::read_to_string(fixture(set, "schema.txt")).expect("the set's schema");
    text.trim().parse().expect("a migration version")
}

/// The migrations of `database` (`"sqlite"`, `"postgres"`) up to
/// `version`, as that version of the code ran them.
pub(crate) async fn migrator_up_to(database: &str, version: i64) -> Migrator {
    Migrator::new(UpTo {
        dir: migrations(database),
        version,
    })
    .await
    .expect("the migrations")
}

/// The latest migration of `database`: the schema a bless run writes
/// its rows under.
pub(crate) async fn latest_version(database: &str) -> i64 {
    let migrator = Migrator::new(migrations(database))
        .await
        .expect("the migrations");
    migrator
        .iter()
        .map(|migration| migration.version)
        .max()
        .expect("a migration")
}

fn migrations(database: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(database)
}

/// A directory's migrations up to a version.
#[derive(Debug)]
struct UpTo {
    dir: PathBuf,
    version: i64,
}

/// What [`MigrationSource::resolve`] returns.
type Resolved = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Vec<Migration>, BoxDynError>> + Send>,
>;

impl MigrationSource<'static> for UpTo {
    fn resolve(self) -> Resolved {
        Box::pin(async move {
            let all = self.dir.resolve().await?;
            if !all
                .iter()
                .any(|migration| migration.version == self.version)
            {
                return Err(format!("no migration {}", self.version).into());
            }
            Ok(all
                .into_iter()
                .filter(|migration| migration.version <= self.version)
                .collect())
        })
    }
}

fn key(name: &str) -> Option<IdempotencyKey> {
    Some(IdempotencyKey::new(name).expect("a key"))
}

/// The sum of every user's balance and locked amount.
async fn total<S: Store>(h: &Harness<S>) -> Money {
    let mut total = Money::ZERO;
    for user in USERS {
        let wallet = h.wallet(user).await;
        total = [wallet.balance, wallet.locked]
            .into_iter()
            .try_fold(total, Money::checked_add)
            .expect("no overflow");
    }
    total
}

/// Carries on from the rows of a fixture set as users would: keyed
/// commands of the set answer their retries as they did (and refuse their
/// keys for anything else), the open auction takes a bid that continues
/// its sequence and settles to it, and the books balance throughout.
pub(crate) async fn carry_on<S: Store>(store: S) {
    let h = Harness::new(store);
    let engine = &h.engine;
    let books = total(&h).await;
    h.assert_books(&USERS, books).await;

    // A retried deposit replays its stored answer and moves nothing.
    let before = h.wallet(ALICE).await;
    let deposit = Deposit {
        user: ALICE,
        amount: "12.34".parse().expect("money"),
    };
    let replayed = engine.deposit(deposit.clone(), key("deposit")).await;
    let entry = replayed.expect("the first answer");
    assert_eq!((entry.user, entry.amount), (ALICE, deposit.amount));
    assert_eq!(h.wallet(ALICE).await, before, "a replay moves nothing");
    let reused = engine
        .deposit(
            Deposit {
                amount: money(1),
                ..deposit
            },
            key("deposit"),
        )
        .await;
    assert!(
        matches!(reused, Err(EngineError::IdempotencyConflict { .. })),
        "{reused:?}"
    );

    // The open auction, led by Alice, takes Bob's bid and settles to him.
    let open = engine
        .list_auctions(
            &AuctionFilter {
                status: Some(AuctionStatus::Open),
                ..AuctionFilter::default()
            },
            Page::default(),
        )
        .await
        .expect("open auctions");
    let [open] = open.as_slice() else {
        panic!("one open auction in the set: {open:?}");
    };
    h.clock.set(open.starts_at + TimeDelta::hours(3));
    let bid = PlaceBid::new(open.id, BOB, open.min_next_bid());
    let receipt = engine.place_bid(bid, None).await.expect("Bob's bid");
    assert!(receipt.leading, "{receipt:?}");
    assert_eq!(receipt.auction.bidding.seq, open.bidding.seq + 1);
    let released = before.locked.checked_sub(open.bidding.current_price);
    assert_eq!(
        Some(h.wallet(ALICE).await.locked),
        released,
        "Alice's hold is released"
    );
    h.assert_books(&USERS, books).await;

    h.clock.set(open.bidding.ends_at + TimeDelta::minutes(1));
    let closed = engine.close_due_auctions(10).await.expect("close");
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0].bidding.status, AuctionStatus::Sold);
    assert_eq!(closed[0].bidding.leader, Some(BOB));
    let events = h.outbox(open.id).await;
    let seqs: Vec<u64> = events.iter().map(|event| event.seq).collect();
    assert_eq!(seqs, (1..=open.bidding.seq + 2).collect::<Vec<_>>());
    h.assert_books(&USERS, books).await;
}
