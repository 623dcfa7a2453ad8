//! [`PgStore`]: Postgres, with row locks.
//!
//! A transaction locks the auction row (`SELECT ... FOR UPDATE`), then the
//! wallets in ascending user id, so no interleaving of commands can
//! deadlock. Every connection carries a `lock_timeout`; a lock wait that
//! runs out, a deadlock, a serialization failure or a duplicate idempotency
//! key is a retryable conflict, and the engine retries the whole
//! transaction with the same idempotency key. The closer claims due
//! auctions with `FOR UPDATE SKIP LOCKED`, so several processes can close
//! side by side.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use neighborbid_core::rules::{self, Decision};
use neighborbid_core::store::{AuctionStore, BatchReads, BatchRecord, BatchWrites, WalletLedger};
use neighborbid_core::{
    Auction, AuctionId, Bid, EventId, Hold, IdempotencyKey, IdempotencyRecord, Money, Store,
    StoreError, StoreErrorKind, Timestamp, Transaction, UserId, Wallet,
};
use rust_decimal::Decimal;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{Connection, Postgres, QueryBuilder, Row};

use crate::codec::{
    self, auction_columns, expect_one, micros, to_i64, Amount, Conflict, ConflictCounters,
    ConflictCounts,
};

type AuctionRow = codec::AuctionRow<Decimal, DateTime<Utc>>;

mod batch_sql;
mod options;
mod wallets;

use batch_sql::{write_batch, BATCH_READS, LOCK_PARTIES};

pub use options::PgStoreOptions;

impl codec::Browse for Postgres {
    const ILIKE: &'static str = "ILIKE";

    fn push_price(query: &mut QueryBuilder<'_, Self>, op: &str, amount: Money) {
        query.push(format!(" AND current_price {op} "));
        query.push_bind(amount.amount());
    }

    fn price_order(dir: &str) -> String {
        format!("current_price {dir}")
    }

    fn push_time(query: &mut QueryBuilder<'_, Self>, at: Timestamp) {
        query.push_bind(at);
    }
}
type BidRow = codec::BidRow<Decimal, DateTime<Utc>>;
type WalletRow = codec::WalletRow<Decimal>;
type EntryRow = codec::EntryRow<Decimal, DateTime<Utc>>;
type HoldRow = codec::HoldRow<Decimal>;

/// A [`Store`] on Postgres. Clones share the pool.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    counters: Arc<ConflictCounters>,
    database_clock: bool,
}

impl PgStore {
    /// A store on the server at `url` with default [`PgStoreOptions`].
    pub fn connect(url: &str) -> Result<PgStore, StoreError> {
        Ok(PgStoreOptions::new(url)?.connect())
    }

    /// Creates or updates the schema (idempotent; safe to run from several
    /// processes at once).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(codec::migration_failed)
    }

    /// The connection pool, for the embedder's own queries.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Conflicts seen (and retried) so far.
    pub fn conflicts(&self) -> ConflictCounts {
        self.counters.snapshot()
    }

    fn error(&self) -> impl Fn(sqlx::Error) -> StoreError + '_ {
        |error| pg_error(error, &self.counters)
    }

    /// Begins a transaction with `statement`, again on a fresh connection
    /// when the pool's connection turns out to be lost: the pool tests
    /// only connections idle for [`options::RETEST_IDLE`], and a failed `BEGIN` has
    /// done nothing, so beginning again is safe.
    async fn begin_with(&self, statement: &'static str) -> Result<PgTx, StoreError> {
        let tx = match self.pool.begin_with(statement).await {
            Err(error) if codec::connection_lost(&error) => {
                tracing::debug!(%error, "connection lost before BEGIN; beginning again");
                self.pool.begin_with(statement).await
            }
            tx => tx,
        };
        Ok(PgTx {
            tx: tx.map_err(self.error())?,
            counters: Arc::clone(&self.counters),
            database_clock: self.database_clock,
            locked_at: None,
        })
    }
}

fn pg_error(error: sqlx::Error, counters: &ConflictCounters) -> StoreError {
    codec::store_error(
        error,
        |code| match code {
            "40P01" => Some(Conflict::Deadlock),
            "55P03" => Some(Conflict::LockTimeout),
            "40001" => Some(Conflict::Serialization),
            "23505" => Some(Conflict::DuplicateKey),
            _ => None,
        },
        counters,
    )
}

#[async_trait]
impl Store for PgStore {
    type Tx = PgTx;

    async fn begin(&self) -> Result<PgTx, StoreError> {
        self.begin_with("BEGIN").await
    }

    async fn begin_read(&self) -> Result<PgTx, StoreError> {
        self.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
    }
}

/// A transaction on a [`PgStore`]; dropping it rolls back.
#[derive(Debug)]
pub struct PgTx {
    tx: sqlx::Transaction<'static, Postgres>,
    counters: Arc<ConflictCounters>,
    database_clock: bool,
    /// The database's clock when the last auction lock was taken.
    locked_at: Option<Timestamp>,
}

/// Wraps a statement that selects `auction_columns!()` `FOR UPDATE` so it
/// also reads the database's clock, after the row lock is held: a locking
/// subquery is run (and waits for its lock) before the outer select reads
/// `clock_timestamp()`.
macro_rules! with_clock {
    ($locking:expr) => {
        concat!(
            "SELECT locked.*, clock_timestamp() AS locked_at FROM (",
            $locking,
            ") AS locked"
        )
    };
}

impl PgTx {
    /// The auction a `with_clock!` statement locked, if any, keeping the
    /// database's time it read.
    async fn locked_auction(
        &mut self,
        query: Query<'_, Postgres, PgArguments>,
    ) -> Result<Option<Auction>, StoreError> {
        let row = query
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(self.error())?;
        let Some(row) = row else {
            return Ok(None);
        };
        let auction = <AuctionRow as sqlx::FromRow<_>>::from_row(&row).map_err(self.error())?;
        let at: Timestamp = row.try_get("locked_at").map_err(self.error())?;
        self.locked_at = Some(at);
        auction.into_auction().map(Some)
    }

    fn error(&self) -> impl Fn(sqlx::Error) -> StoreError {
        let counters = Arc::clone(&self.counters);
        move |error| pg_error(error, &counters)
    }
}

#[async_trait]
impl Transaction for PgTx {
    async fn commit(self) -> Result<(), StoreError> {
        let error = self.error();
        self.tx.commit().await.map_err(error)
    }

    /// The database's clock, with [`PgStoreOptions::database_clock`]: as
    /// read by the statement that locked the auction, or else (a deposit,
    /// a new auction) by a statement of its own.
    async fn clock(&mut self) -> Result<Option<Timestamp>, StoreError> {
        if !self.database_clock {
            return Ok(None);
        }
        if let Some(at) = self.locked_at {
            return Ok(Some(at));
        }
        let at: Timestamp = sqlx::query_scalar("SELECT clock_timestamp()")
            .fetch_one(&mut *self.tx)
            .await
            .map_err(self.error())?;
        Ok(Some(at))
    }

    async fn rollback(self) -> Result<(), StoreError> {
        let error = self.error();
        self.tx.rollback().await.map_err(error)
    }

    /// One query: the holds, the wallets locked, then one index probe
    /// per key whatever the table's statistics say (as a join, the cached
    /// plan of a young table scanned the whole, ever-growing table on
    /// every batch).
    async fn batch_reads(
        &mut self,
        auction: AuctionId,
        keys: &[(UserId, &IdempotencyKey)],
        bidders: &[UserId],
    ) -> Result<BatchReads, StoreError> {
        // Without keys, the query without the records: Postgres would plan
        // the combined one afresh every time (its estimate for an empty
        // array beats any cached plan).
        let sql = if keys.is_empty() {
            LOCK_PARTIES
        } else {
            BATCH_READS
        };
        let mut query = sqlx::query_as(sql)
            .bind(auction.0)
            .bind(bidders.iter().map(|user| user.0).collect::<Vec<i64>>());
        if !keys.is_empty() {
            query = query
                .bind(keys.iter().map(|(user, _)| user.0).collect::<Vec<i64>>())
                .bind(
                    keys.iter()
                        .map(|(_, key)| key.as_str())
                        .collect::<Vec<&str>>(),
                );
        }
        let rows: Vec<PartyRow> = query.fetch_all(&mut *self.tx).await.map_err(self.error())?;
        let mut reads = BatchReads::default();
        let mut found = Vec::new();
        for (part, user, a, b, key, record) in rows {
            match (part.as_str(), a, b, key, record) {
                ("hold", Some(amount), None, None, None) => reads.holds.push(Hold {
                    auction_id: auction,
                    user: UserId(user),
                    amount: amount.into_money()?,
                }),
                ("wallet", Some(balance), Some(locked), None, None) => reads.wallets.push(Wallet {
                    user: UserId(user),
                    balance: balance.into_money()?,
                    locked: locked.into_money()?,
                }),
                ("record", None, None, Some(key), Some(Json(record))) => {
                    found.push((user, key, record))
                }
                _ => return Err(StoreError::new(StoreErrorKind::Other, "a malformed row")),
            }
        }
        reads.holds.sort_by_key(|hold| hold.user);
        reads.wallets.sort_by_key(|wallet| wallet.user);
        let users = rules::wallets_to_lock(&reads.holds, bidders);
        if reads.wallets.len() != users.len() {
            // Some wallet does not exist yet (the query locks only
            // existing ones): created and locked as `lock_wallets` does.
            reads.wallets = self.lock_wallets(&users).await?;
        }
        reads.records = keys
            .iter()
            .map(|(user, key)| {
                found
                    .iter()
                    .find(|(id, name, _)| *id == user.0 && name == key.as_str())
                    .map(|(_, _, record)| record.clone())
            })
            .collect();
        Ok(reads)
    }

    async fn lock_parties(
        &mut self,
        auction: AuctionId,
        parties: &[UserId],
    ) -> Result<(Vec<Hold>, Vec<Wallet>), StoreError> {
        let reads = self.batch_reads(auction, &[], parties).await?;
        Ok((reads.holds, reads.wallets))
    }

    /// One statement whatever the batch holds: every row and the
    /// idempotency records (each round trip to the server is time the
    /// auction stays locked).
    async fn write_decisions(
        &mut self,
        decisions: &[Decision],
        records: &[BatchRecord<'_>],
    ) -> Result<Vec<Option<Bid>>, StoreError> {
        let Some(writes) = BatchWrites::of(decisions) else {
            return Ok(Vec::new());
        };
        // Each record's bid, by `seq`: the statement sets the id it gets.
        let records = records
            .iter()
            .map(|r| {
                let bid = decisions.get(r.decision).and_then(|d| d.bid.as_ref());
                Ok((r, bid.map(|bid| to_i64(bid.seq, "seq")).transpose()?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let (sql, arguments) = write_batch(&writes, &records)?.finish()?;
        let row = sqlx::query_with(&sql, arguments)
            .fetch_one(&mut *self.tx)
            .await
            .map_err(self.error())?;
        let BatchWrites {
            auction,
            bids,
            wallets,
            ..
        } = writes;
        let saved: i64 = row.try_get("auctions").map_err(self.error())?;
        expect_one(saved.unsigned_abs(), "auction", auction.id)?;
        let saved: i64 = row.try_get("wallets").map_err(self.error())?;
        if usize::try_from(saved).ok() != Some(wallets.len()) {
            let users: Vec<String> = wallets.iter().map(|w| w.user.to_string()).collect();
            return Err(StoreError::new(
                StoreErrorKind::Other,
                format!("a wallet of {} does not exist", users.join(", ")),
            ));
        }
        let ids: Vec<i64> = row.try_get("bid_ids").map_err(self.error())?;
        if ids.len() != bids.len() {
            return Err(StoreError::new(
                StoreErrorKind::Other,
                format!("{} bids written, {} ids back", bids.len(), ids.len()),
            ));
        }
        // Bids come back by `seq`, which rises with each decision.
        let mut ids = ids.into_iter();
        Ok(decisions
            .iter()
            .map(|decision| {
                let bid = decision.bid.as_ref()?;
                Some(Bid {
                    id: neighborbid_core::BidId(ids.next()?),
                    ..bid.clone()
                })
            })
            .collect())
    }
}

/// A row of [`LOCK_PARTIES`] or [`BATCH_READS`]: `part` says which of a
/// hold (user, amount), a wallet (user, balance, locked) or an idempotency
/// record (user, key, record) it is.
type PartyRow = (
    String,
    i64,
    Option<Decimal>,
    Option<Decimal>,
    Option<String>,
    Option<Json<IdempotencyRecord>>,
);

#[async_trait]
impl AuctionStore for PgTx {
    async fn insert_auction(&mut self, auction: &Auction) -> Result<Auction, StoreError> {
        self.insert_auction_row(auction).await
    }

    async fn lock_auction(&mut self, id: AuctionId) -> Result<Option<Auction>, StoreError> {
        let sql = with_clock!(concat!(
            "SELECT ",
            auction_columns!(),
            " FROM auctions WHERE id = $1 FOR UPDATE"
        ));
        self.locked_auction(sqlx::query(sql).bind(id.0)).await
    }

    async fn claim_due_auction(
        &mut self,
        now: Timestamp,
        skip: &[AuctionId],
    ) -> Result<Option<Auction>, StoreError> {
        // Due by the database's clock, unless the engine's decides.
        let now = (!self.database_clock).then_some(now);
        let sql = with_clock!(concat!(
            "SELECT ",
            auction_columns!(),
            " FROM auctions WHERE status = 'open' \
              AND ends_at <= COALESCE($1, clock_timestamp()) AND id <> ALL($2) \
              ORDER BY ends_at, id LIMIT 1 FOR UPDATE SKIP LOCKED"
        ));
        let ids: Vec<i64> = skip.iter().map(|id| id.0).collect();
        self.locked_auction(sqlx::query(sql).bind(now).bind(ids))
            .await
    }

    async fn load_idempotency(
        &mut self,
        user: UserId,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.load_record(user, key).await
    }

    async fn save_idempotency(
        &mut self,
        user: UserId,
        key: &IdempotencyKey,
        record: &IdempotencyRecord,
    ) -> Result<(), StoreError> {
        self.save_record(user, key, record).await
    }

    async fn forget_idempotency(&mut self, age: Duration, limit: u32) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM idempotency WHERE (user_id, key) IN ( \
                 SELECT user_id, key FROM idempotency \
                 WHERE created_at <= now() - $1 * interval '1 microsecond' LIMIT $2)",
        )
        .bind(micros(age))
        .bind(i64::from(limit))
        .execute(&mut *self.tx)
        .await
        .map_err(self.error())?;
        Ok(done.rows_affected())
    }
}
impl PgTx {
    /// [`Outbox::mark_delivered`](neighborbid_core::store::Outbox::mark_delivered)
    /// on this database.
    async fn mark_delivered_rows(
        &mut self,
        events: &[EventId],
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let auctions: Vec<i64> = events.iter().map(|id| id.auction_id.0).collect();
        let seqs = events
            .iter()
            .map(|id| to_i64(id.seq, "seq"))
            .collect::<Result<Vec<i64>, _>>()?;
        sqlx::query(
            "UPDATE outbox SET delivered_at = $1 \
             FROM UNNEST($2::BIGINT[], $3::BIGINT[]) AS marked (auction_id, seq) \
             WHERE outbox.auction_id = marked.auction_id AND outbox.seq = marked.seq \
             AND outbox.delivered_at IS NULL",
        )
        .bind(at)
        .bind(&auctions)
        .bind(&seqs)
        .execute(&mut *self.tx)
        .await
        .map_err(self.error())?;
        Ok(())
    }
}

/// How Postgres stores a time: as it is (`timestamptz`).
fn db_time(at: Timestamp) -> Timestamp {
    at
}

/// How Postgres stores an amount: as `NUMERIC`.
fn db_amount(amount: Money) -> Decimal {
    amount.amount()
}

// An auction's row, wallets, history and idempotency records: one
// implementation for both databases.
crate::codec::impl_auction_rows!(PgTx, Postgres, amount: db_amount, time: db_time);
crate::rows::impl_rows!(PgTx, amount: db_amount, time: db_time);

// The outbox: one implementation for both databases.
crate::outbox::impl_outbox!(PgTx, lock: " FOR UPDATE SKIP LOCKED", time: db_time);

// What browsing reads: one implementation for both databases.
crate::queries::impl_queries!(PgTx);
