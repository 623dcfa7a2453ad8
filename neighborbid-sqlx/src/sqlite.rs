//! [`SqliteStore`]: the embedded default, one database file, no server.
//!
//! The file runs in WAL mode, so reads never wait for the writer. SQLite
//! has one writer at a time, and the store makes that explicit: every
//! writing transaction runs on the store's single writer connection (taken
//! in arrival order, so waiting costs no polling) and starts with `BEGIN
//! IMMEDIATE`, which takes the write lock up front and also serializes
//! writers in other processes on the same file. Holding the write lock for
//! the whole transaction gives what Postgres gets from row locks: no
//! transaction decides on rows another one is changing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use neighborbid_core::rules::{Decision, WalletDecision};
use neighborbid_core::store::{AuctionStore, BatchRecord, Queries, WalletLedger};
use neighborbid_core::{
    Auction, AuctionId, Bid, EventId, Hold, IdempotencyKey, IdempotencyRecord, Money, Store,
    StoreError, Timestamp, Transaction, UserId, Wallet,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::types::Json;
use sqlx::{QueryBuilder, Sqlite};

mod writes;

use crate::codec::{
    self, auction_columns, micros, to_i64, Conflict, ConflictCounters, ConflictCounts,
};

type AuctionRow = codec::AuctionRow<String, i64>;

/// Amounts are decimal text, so they compare as the pair (digits before
/// the point, text without trailing fractional zeros): exact, no floats.
const PRICE_DIGITS: &str = "(CASE WHEN instr(current_price, '.') > 0 \
     THEN instr(current_price, '.') - 1 ELSE length(current_price) END)";
const PRICE_TEXT: &str = "(CASE WHEN instr(current_price, '.') > 0 \
     THEN rtrim(rtrim(current_price, '0'), '.') ELSE current_price END)";

impl codec::Browse for Sqlite {
    const ILIKE: &'static str = "LIKE";

    fn push_price(query: &mut QueryBuilder<'_, Self>, op: &str, amount: Money) {
        let text = amount.amount().normalize().to_string();
        let integer_digits = text.find('.').unwrap_or(text.len());
        query.push(format!(" AND ({PRICE_DIGITS}, {PRICE_TEXT}) {op} ("));
        query.push_bind(i64::try_from(integer_digits).unwrap_or(i64::MAX));
        query.push(", ").push_bind(text).push(")");
    }

    fn price_order(dir: &str) -> String {
        format!("{PRICE_DIGITS} {dir}, {PRICE_TEXT} {dir}")
    }

    fn push_time(query: &mut QueryBuilder<'_, Self>, at: Timestamp) {
        query.push_bind(at.timestamp_micros());
    }
}
type BidRow = codec::BidRow<String, i64>;
type WalletRow = codec::WalletRow<String>;
type EntryRow = codec::EntryRow<String, i64>;
type HoldRow = codec::HoldRow<String>;

/// How to open a [`SqliteStore`].
#[derive(Clone, Debug)]
pub struct SqliteStoreOptions {
    path: PathBuf,
    readers: u32,
    busy_timeout: Duration,
    synchronous: SqliteSynchronous,
}

impl SqliteStoreOptions {
    /// Options for the database file at `path` (created if missing), with
    /// four reader connections, a 5 s wait for other processes' writes,
    /// and every commit synced to disk.
    pub fn new(path: impl AsRef<Path>) -> SqliteStoreOptions {
        SqliteStoreOptions {
            path: path.as_ref().to_owned(),
            readers: 4,
            busy_timeout: Duration::from_secs(5),
            synchronous: SqliteSynchronous::Full,
        }
    }

    /// Connections for reads (the writer has its own).
    pub fn readers(mut self, readers: u32) -> Self {
        self.readers = readers.max(1);
        self
    }

    /// How long a transaction waits for another process holding the write
    /// lock before failing as a (retryable) conflict.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Syncs the write-ahead log at checkpoints only instead of at every
    /// commit: faster, but a power cut (not a process crash) may lose the
    /// latest commits.
    pub fn relaxed_durability(mut self) -> Self {
        self.synchronous = SqliteSynchronous::Normal;
        self
    }

    /// Opens the database file, creating it if missing. Call
    /// [`SqliteStore::migrate`] to create or update the schema.
    pub async fn open(self) -> Result<SqliteStore, StoreError> {
        let counters = Arc::<ConflictCounters>::default();
        let connect = SqliteConnectOptions::new()
            .filename(&self.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(self.synchronous)
            .busy_timeout(self.busy_timeout)
            .foreign_keys(true);
        let error = |error| sqlite_error(error, &counters);
        // The writer connects first: it creates the file and switches it
        // to WAL before any reader opens it.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(connect.clone())
            .await
            .map_err(error)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(self.readers)
            .connect_with(connect)
            .await
            .map_err(error)?;
        Ok(SqliteStore {
            writer,
            reader,
            counters,
        })
    }
}

/// A [`Store`] on an SQLite file. Clones share the connections.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    counters: Arc<ConflictCounters>,
}

impl SqliteStore {
    /// Opens the database file at `path` with default
    /// [`SqliteStoreOptions`].
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        SqliteStoreOptions::new(path).open().await
    }

    /// Creates or updates the schema (idempotent).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.writer)
            .await
            .map_err(codec::migration_failed)
    }

    /// The writer's pool (one connection), for the embedder's own writes.
    pub fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// Conflicts seen (and retried) so far: waits for other processes'
    /// writes that ran out.
    pub fn conflicts(&self) -> ConflictCounts {
        self.counters.snapshot()
    }

    fn error(&self) -> impl Fn(sqlx::Error) -> StoreError + '_ {
        |error| sqlite_error(error, &self.counters)
    }
}

/// SQLite's extended result codes for failures a retry can cure.
fn sqlite_error(error: sqlx::Error, counters: &ConflictCounters) -> StoreError {
    codec::store_error(
        error,
        |code| match code {
            // SQLITE_BUSY, SQLITE_BUSY_RECOVERY, SQLITE_LOCKED
            "5" | "261" | "6" => Some(Conflict::LockTimeout),
            // SQLITE_BUSY_SNAPSHOT: a deferred transaction read old rows
            "517" => Some(Conflict::Serialization),
            // SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_UNIQUE
            "1555" | "2067" => Some(Conflict::DuplicateKey),
            _ => None,
        },
        counters,
    )
}

#[async_trait]
impl Store for SqliteStore {
    type Tx = SqliteTx;

    async fn begin(&self) -> Result<SqliteTx, StoreError> {
        let tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(self.error())?;
        Ok(SqliteTx {
            tx,
            counters: Arc::clone(&self.counters),
        })
    }

    async fn begin_read(&self) -> Result<SqliteTx, StoreError> {
        Ok(SqliteTx {
            tx: self.reader.begin().await.map_err(self.error())?,
            counters: Arc::clone(&self.counters),
        })
    }
}

/// A transaction on a [`SqliteStore`]; dropping it rolls back.
#[derive(Debug)]
pub struct SqliteTx {
    tx: sqlx::Transaction<'static, Sqlite>,
    counters: Arc<ConflictCounters>,
}

impl SqliteTx {
    fn error(&self) -> impl Fn(sqlx::Error) -> StoreError {
        let counters = Arc::clone(&self.counters);
        move |error| sqlite_error(error, &counters)
    }
}

/// A list of user ids as the JSON array `json_each` reads.
fn id_array(users: &[UserId]) -> String {
    let ids: Vec<i64> = users.iter().map(|user| user.0).collect();
    serde_json::to_string(&ids).unwrap_or_else(|_| "[]".to_owned())
}

#[async_trait]
impl Transaction for SqliteTx {
    async fn commit(self) -> Result<(), StoreError> {
        let error = self.error();
        self.tx.commit().await.map_err(error)
    }

    async fn rollback(self) -> Result<(), StoreError> {
        let error = self.error();
        self.tx.rollback().await.map_err(error)
    }

    async fn write_decisions(
        &mut self,
        decisions: &[Decision],
        records: &[BatchRecord<'_>],
    ) -> Result<Vec<Option<Bid>>, StoreError> {
        self.write_batch(decisions, records).await
    }
}

#[async_trait]
impl AuctionStore for SqliteTx {
    async fn insert_auction(&mut self, auction: &Auction) -> Result<Auction, StoreError> {
        self.insert_auction_row(auction).await
    }

    async fn lock_auction(&mut self, id: AuctionId) -> Result<Option<Auction>, StoreError> {
        // The transaction holds the database's write lock: reading is
        // locking.
        self.get_auction(id).await
    }

    async fn claim_due_auction(
        &mut self,
        now: Timestamp,
        skip: &[AuctionId],
    ) -> Result<Option<Auction>, StoreError> {
        // A JSON array of ids, which `json_each` reads as rows.
        let skip: Vec<String> = skip.iter().map(|id| id.0.to_string()).collect();
        sqlx::query_as::<_, AuctionRow>(concat!(
            "SELECT ",
            auction_columns!(),
            " FROM auctions WHERE status = 'open' AND ends_at <= ?1 \
              AND id NOT IN (SELECT value FROM json_each(?2)) \
              ORDER BY ends_at, id LIMIT 1"
        ))
        .bind(now.timestamp_micros())
        .bind(format!("[{}]", skip.join(",")))
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(self.error())?
        .map(AuctionRow::into_auction)
        .transpose()
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
        // `created_at` is in microseconds, as the table's default writes it.
        let done = sqlx::query(
            "DELETE FROM idempotency WHERE rowid IN ( \
                 SELECT rowid FROM idempotency \
                 WHERE created_at <= CAST(unixepoch('subsec') * 1000000 AS INTEGER) - ?1 \
                 LIMIT ?2)",
        )
        .bind(micros(age))
        .bind(i64::from(limit))
        .execute(&mut *self.tx)
        .await
        .map_err(self.error())?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl WalletLedger for SqliteTx {
    async fn lock_wallets(&mut self, users: &[UserId]) -> Result<Vec<Wallet>, StoreError> {
        let ids = id_array(users);
        sqlx::query(
            "INSERT INTO wallets (user_id) SELECT value FROM json_each(?1) WHERE true \
             ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(&ids)
        .execute(&mut *self.tx)
        .await
        .map_err(self.error())?;
        let rows = sqlx::query_as::<_, WalletRow>(
            "SELECT user_id, balance, locked FROM wallets \
             WHERE user_id IN (SELECT value FROM json_each(?1)) ORDER BY user_id",
        )
        .bind(&ids)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(self.error())?;
        codec::convert(rows, WalletRow::into_wallet)
    }

    async fn auction_holds(&mut self, auction: AuctionId) -> Result<Vec<Hold>, StoreError> {
        self.hold_rows(auction).await
    }

    async fn write_wallet_decision(&mut self, decision: &WalletDecision) -> Result<(), StoreError> {
        self.write_wallet_rows(decision).await
    }
}

impl SqliteTx {
    /// [`Outbox::mark_delivered`](neighborbid_core::store::Outbox::mark_delivered)
    /// on this database.
    async fn mark_delivered_rows(
        &mut self,
        events: &[EventId],
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let pairs = events
            .iter()
            .map(|id| Ok((id.auction_id.0, to_i64(id.seq, "seq")?)))
            .collect::<Result<Vec<(i64, i64)>, StoreError>>()?;
        sqlx::query(
            "UPDATE outbox SET delivered_at = ?1 WHERE delivered_at IS NULL AND (auction_id, seq) \
             IN (SELECT value ->> 0, value ->> 1 FROM json_each(?2))",
        )
        .bind(at.timestamp_micros())
        .bind(Json(pairs))
        .execute(&mut *self.tx)
        .await
        .map_err(self.error())?;
        Ok(())
    }
}

/// How SQLite stores a time: microseconds since 1970.
fn db_time(at: Timestamp) -> i64 {
    at.timestamp_micros()
}

/// How SQLite stores an amount: decimal text.
fn db_amount(amount: Money) -> String {
    amount.to_string()
}

// An auction's row, wallets, history and idempotency records: one
// implementation for both databases.
crate::codec::impl_auction_rows!(SqliteTx, Sqlite, amount: db_amount, time: db_time);
crate::rows::impl_rows!(SqliteTx, amount: db_amount, time: db_time);

// The outbox: one implementation for both databases.
crate::outbox::impl_outbox!(SqliteTx, lock: "", time: db_time);

// What browsing reads: one implementation for both databases.
crate::queries::impl_queries!(SqliteTx);
