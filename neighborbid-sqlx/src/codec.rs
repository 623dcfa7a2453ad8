//! What both backends share: rows as they come out of SQL, their conversion
//! into core types, and the mapping of database errors onto
//! [`StoreError`] kinds.
//!
//! The two schemas hold the same columns in different types: Postgres keeps
//! amounts as `NUMERIC` and times as `TIMESTAMPTZ`, SQLite as decimal text
//! and microseconds. The row types are generic over those two column types
//! ([`Amount`], [`Instant`]) so one conversion serves both.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use neighborbid_core::{
    AuctionFilter, AuctionId, AuctionSort, Bid, BidId, EntryKind, Hold, LedgerEntry, Money, Page,
    StoreError, StoreErrorKind, Timestamp, UserId, Wallet,
};
use rust_decimal::Decimal;
use sqlx::{Database, Encode, QueryBuilder, Type};

pub(crate) mod auction;

pub(crate) use auction::{auction_columns, impl_auction_rows, AuctionRow};

/// How a backend stores an amount.
pub(crate) trait Amount {
    fn into_money(self) -> Result<Money, StoreError>;
}

impl Amount for Decimal {
    fn into_money(self) -> Result<Money, StoreError> {
        Money::new(self).map_err(|error| corrupt(format!("amount {self}: {error}")))
    }
}

impl Amount for String {
    fn into_money(self) -> Result<Money, StoreError> {
        self.parse()
            .map_err(|error| corrupt(format!("amount {self:?}: {error}")))
    }
}

/// How a backend stores a point in time.
pub(crate) trait Instant {
    fn into_timestamp(self) -> Result<Timestamp, StoreError>;
}

impl Instant for DateTime<Utc> {
    fn into_timestamp(self) -> Result<Timestamp, StoreError> {
        Ok(self)
    }
}

impl Instant for i64 {
    fn into_timestamp(self) -> Result<Timestamp, StoreError> {
        DateTime::from_timestamp_micros(self)
            .ok_or_else(|| corrupt(format!("time {self} is out of range")))
    }
}

fn corrupt(message: String) -> StoreError {
    StoreError::new(StoreErrorKind::Corrupt, message)
}

fn count<T: TryFrom<i64>>(value: i64, column: &str) -> Result<T, StoreError> {
    T::try_from(value).map_err(|_| corrupt(format!("{column} {value} is out of range")))
}

/// What differs between the backends' SQL when browsing auctions: how
/// amounts and times compare. Amounts compare exactly as decimals in both.
pub(crate) trait Browse: Database {
    /// Case-insensitive `LIKE` (on SQLite, for ASCII letters).
    const ILIKE: &'static str;
    /// Pushes `current_price <op> amount`.
    fn push_price(query: &mut QueryBuilder<'_, Self>, op: &str, amount: Money);
    /// `current_price` ordered ascending or descending (`dir`).
    fn price_order(dir: &str) -> String;
    /// Pushes a time parameter.
    fn push_time(query: &mut QueryBuilder<'_, Self>, at: Timestamp);
}

/// The `SELECT` of one page of the auctions `filter` matches, in its order.
pub(crate) fn list_auctions<'q, DB: Browse>(
    filter: &AuctionFilter,
    page: Page,
) -> QueryBuilder<'q, DB>
where
    for<'a> String: Encode<'a, DB> + Type<DB>,
    for<'a> i64: Encode<'a, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new(concat!("SELECT ", auction_columns!(), " FROM auctions"));
    push_filter(&mut query, filter);
    push_order(&mut query, filter.sort);
    let (limit, offset) = limit(page);
    query.push(" LIMIT ").push_bind(limit);
    query.push(" OFFSET ").push_bind(offset);
    query
}

/// The `SELECT COUNT(*)` of the auctions `filter` matches.
pub(crate) fn count_auctions<'q, DB: Browse>(filter: &AuctionFilter) -> QueryBuilder<'q, DB>
where
    for<'a> String: Encode<'a, DB> + Type<DB>,
    for<'a> i64: Encode<'a, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new("SELECT COUNT(*) FROM auctions");
    push_filter(&mut query, filter);
    query
}

/// A page's limit and offset, as SQL takes them.
pub(crate) fn limit(page: Page) -> (i64, i64) {
    (i64::from(page.limit), i64::from(page.offset))
}

/// Pushes ` WHERE ...` for `filter`, agreeing with [`AuctionFilter::matches`].
fn push_filter<DB: Browse>(query: &mut QueryBuilder<'_, DB>, filter: &AuctionFilter)
where
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    use neighborbid_core::{Phase, ScopeFilter};
    query.push(" WHERE 1 = 1");
    if let Some(status) = filter.status {
        query
            .push(" AND status = ")
            .push_bind(status.as_str().to_owned());
    }
    match &filter.scope {
        None => {}
        Some(ScopeFilter::National) => {
            query.push(" AND scope = 'national'");
        }
        Some(ScopeFilter::Local { region }) => {
            query.push(" AND scope = 'local'");
            if let Some(region) = region {
                query
                    .push(" AND (region = ")
                    .push_bind(region.as_str().to_owned());
                query.push(" OR region LIKE ");
                query.push_bind(format!("{}/%", escape_like(region.as_str())));
                query.push(" ESCAPE '\\')");
            }
        }
    }
    if let Some(seller) = filter.seller {
        query.push(" AND seller = ").push_bind(seller.0);
    }
    if let Some(text) = &filter.text {
        let pattern = format!("%{}%", escape_like(text));
        query.push(format!(" AND (title {} ", DB::ILIKE));
        query.push_bind(pattern.clone());
        query.push(format!(" ESCAPE '\\' OR description {} ", DB::ILIKE));
        query.push_bind(pattern).push(" ESCAPE '\\')");
    }
    if let Some(category) = &filter.category {
        query.push(" AND category = ").push_bind(category.clone());
    }
    if let Some(min) = filter.min_price {
        DB::push_price(query, ">=", min);
    }
    if let Some(max) = filter.max_price {
        DB::push_price(query, "<=", max);
    }
    let now = filter.now;
    match filter.phase {
        None => {}
        Some(Phase::Scheduled) => {
            query.push(" AND status = 'open' AND starts_at > ");
            DB::push_time(query, now);
            query.push(" AND ends_at > ");
            DB::push_time(query, now);
        }
        Some(Phase::Open) => {
            query.push(" AND status = 'open' AND starts_at <= ");
            DB::push_time(query, now);
            query.push(" AND ends_at > ");
            DB::push_time(query, now);
        }
        Some(Phase::Ended) => {
            query.push(" AND (status <> 'open' OR ends_at <= ");
            DB::push_time(query, now);
            query.push(")");
        }
    }
}

/// Pushes ` ORDER BY ...`, agreeing with [`AuctionSort::compare`].
fn push_order<DB: Browse>(query: &mut QueryBuilder<'_, DB>, sort: AuctionSort) {
    let first = match sort {
        AuctionSort::Newest => String::new(),
        AuctionSort::PriceAsc => DB::price_order("ASC") + ", ",
        AuctionSort::PriceDesc => DB::price_order("DESC") + ", ",
        AuctionSort::EndingSoonest => "ends_at ASC, ".to_owned(),
    };
    query.push(format!(" ORDER BY {first}id DESC"));
}

/// `text` with `LIKE`'s wildcards and escape character escaped by `\`.
fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The columns of `bids` that [`BidRow`] reads.
macro_rules! bid_columns {
    () => {
        "id, auction_id, bidder, amount, placed_at, seq, auto"
    };
}
pub(crate) use bid_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct BidRow<M, T> {
    id: i64,
    auction_id: i64,
    bidder: i64,
    amount: M,
    placed_at: T,
    seq: i64,
    auto: bool,
}

impl<M: Amount, T: Instant> BidRow<M, T> {
    pub(crate) fn into_bid(self) -> Result<Bid, StoreError> {
        Ok(Bid {
            id: BidId(self.id),
            auction_id: AuctionId(self.auction_id),
            bidder: UserId(self.bidder),
            amount: self.amount.into_money()?,
            placed_at: self.placed_at.into_timestamp()?,
            seq: count(self.seq, "seq")?,
            auto: self.auto,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct WalletRow<M> {
    user_id: i64,
    balance: M,
    locked: M,
}

impl<M: Amount> WalletRow<M> {
    pub(crate) fn into_wallet(self) -> Result<Wallet, StoreError> {
        Ok(Wallet {
            user: UserId(self.user_id),
            balance: self.balance.into_money()?,
            locked: self.locked.into_money()?,
        })
    }
}

/// The columns of `ledger_entries` that [`EntryRow`] reads.
macro_rules! entry_columns {
    () => {
        "user_id, kind, amount, auction_id, balance_after, locked_after, at"
    };
}
pub(crate) use entry_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct EntryRow<M, T> {
    user_id: i64,
    kind: String,
    amount: M,
    auction_id: Option<i64>,
    balance_after: M,
    locked_after: M,
    at: T,
}

impl<M: Amount, T: Instant> EntryRow<M, T> {
    pub(crate) fn into_entry(self) -> Result<LedgerEntry, StoreError> {
        let kind = EntryKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == self.kind)
            .ok_or_else(|| corrupt(format!("unknown entry kind {:?}", self.kind)))?;
        Ok(LedgerEntry {
            user: UserId(self.user_id),
            kind,
            amount: self.amount.into_money()?,
            auction_id: self.auction_id.map(AuctionId),
            balance_after: self.balance_after.into_money()?,
            locked_after: self.locked_after.into_money()?,
            at: self.at.into_timestamp()?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct HoldRow<M> {
    auction_id: i64,
    user_id: i64,
    amount: M,
}

impl<M: Amount> HoldRow<M> {
    pub(crate) fn into_hold(self) -> Result<Hold, StoreError> {
        Ok(Hold {
            auction_id: AuctionId(self.auction_id),
            user: UserId(self.user_id),
            amount: self.amount.into_money()?,
        })
    }
}

/// Converts every row, failing on the first that does not convert.
pub(crate) fn convert<R, T>(
    rows: Vec<R>,
    into: impl Fn(R) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    rows.into_iter().map(into).collect()
}

/// A sequence number or count as the `BIGINT` it is stored in.
pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        StoreError::new(
            StoreErrorKind::Other,
            format!("{what} {value} does not fit a BIGINT"),
        )
    })
}

/// An age in microseconds, for SQL. Ages beyond a thousand years count
/// as a thousand: older timestamps than that would overflow Postgres's.
pub(crate) fn micros(age: std::time::Duration) -> i64 {
    const MILLENNIUM: i64 = 1_000 * 366 * 24 * 3_600 * 1_000_000;
    i64::try_from(age.as_micros()).map_or(MILLENNIUM, |micros| micros.min(MILLENNIUM))
}

/// A migration's failure as the stores report it.
pub(crate) fn migration_failed(error: sqlx::migrate::MigrateError) -> StoreError {
    StoreError::new(StoreErrorKind::Other, format!("migration failed: {error}")).with_source(error)
}

/// Checks that an `UPDATE` of a locked row found it.
pub(crate) fn expect_one(
    rows: u64,
    what: &str,
    id: impl std::fmt::Display,
) -> Result<(), StoreError> {
    if rows == 1 {
        Ok(())
    } else {
        Err(StoreError::new(
            StoreErrorKind::Other,
            format!("{what} {id} does not exist"),
        ))
    }
}

/// Conflicts with concurrent transactions that a store has seen (and the
/// engine retried), by cause. Read with `conflicts()` on a store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConflictCounts {
    /// Deadlocks the database broke (Postgres `40P01`). The lock order
    /// should keep this at zero.
    pub deadlocks: u64,
    /// Waits for a lock that ran past the lock timeout (`55P03`; SQLite:
    /// busy).
    pub lock_timeouts: u64,
    /// Serialization failures (`40001`).
    pub serialization_failures: u64,
    /// Duplicate keys: two requests with one idempotency key at once.
    pub duplicate_keys: u64,
}

#[derive(Debug, Default)]
pub(crate) struct ConflictCounters {
    deadlocks: AtomicU64,
    lock_timeouts: AtomicU64,
    serialization_failures: AtomicU64,
    duplicate_keys: AtomicU64,
}

impl ConflictCounters {
    pub(crate) fn snapshot(&self) -> ConflictCounts {
        ConflictCounts {
            deadlocks: self.deadlocks.load(Ordering::Relaxed),
            lock_timeouts: self.lock_timeouts.load(Ordering::Relaxed),
            serialization_failures: self.serialization_failures.load(Ordering::Relaxed),
            duplicate_keys: self.duplicate_keys.load(Ordering::Relaxed),
        }
    }

    fn bump(&self, conflict: Conflict) {
        let counter = match conflict {
            Conflict::Deadlock => &self.deadlocks,
            Conflict::LockTimeout => &self.lock_timeouts,
            Conflict::Serialization => &self.serialization_failures,
            Conflict::DuplicateKey => &self.duplicate_keys,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A failure caused by a concurrent transaction.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Conflict {
    Deadlock,
    LockTimeout,
    Serialization,
    DuplicateKey,
}

/// Converts a sqlx error from an application's own queries on the same
/// database (its accounts table, say) into core's error, as the stores do:
/// a lost connection or a database shutting down is
/// [`StoreErrorKind::Unavailable`], which HTTP answers with a retryable
/// 503 rather than a 500.
pub fn into_store_error(error: sqlx::Error) -> StoreError {
    store_error(error, |_| None, &ConflictCounters::default())
}

/// Converts a sqlx error: `conflict` names the database's codes for
/// failures a retry can cure (they differ between backends), which become
/// [`StoreErrorKind::Conflict`] and are counted.
pub(crate) fn store_error(
    error: sqlx::Error,
    conflict: impl Fn(&str) -> Option<Conflict>,
    counters: &ConflictCounters,
) -> StoreError {
    use sqlx::Error;
    let kind = match &error {
        _ if connection_lost(&error) => StoreErrorKind::Unavailable,
        Error::Database(db) => match db.code().as_deref().and_then(&conflict) {
            Some(cause) => {
                counters.bump(cause);
                StoreErrorKind::Conflict
            }
            None => StoreErrorKind::Other,
        },
        Error::Tls(_) | Error::PoolTimedOut | Error::PoolClosed | Error::WorkerCrashed => {
            StoreErrorKind::Unavailable
        }
        Error::ColumnDecode { .. } | Error::Decode(_) | Error::ColumnNotFound(_) => {
            StoreErrorKind::Corrupt
        }
        _ => StoreErrorKind::Other,
    };
    StoreError::new(kind, error.to_string()).with_source(error)
}

/// Whether `error` says the connection itself is gone (I/O, a broken
/// exchange, or the server ending it: Postgres classes 08 and 57P), not
/// that a pool had none to give or that a statement failed.
pub(crate) fn connection_lost(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn ages_are_microseconds_up_to_a_thousand_years() {
        assert_eq!(micros(Duration::from_micros(1_500)), 1_500);
        assert_eq!(micros(Duration::from_secs(3_600)), 3_600_000_000);
        let millennium = 1_000 * 366 * 86_400 * 1_000_000;
        assert_eq!(
            micros(Duration::from_secs(1_000 * 366 * 86_400)),
            millennium
        );
        assert_eq!(
            micros(Duration::from_secs(2_000 * 366 * 86_400)),
            millennium
        );
        assert_eq!(micros(Duration::MAX), millennium);
    }

    #[test]
    fn an_update_must_find_exactly_its_row() {
        assert!(expect_one(1, "auction", 7).is_ok());
        for rows in [0, 2] {
            let error = expect_one(rows, "auction", 7).expect_err("not one row");
            assert_eq!(error.kind(), StoreErrorKind::Other);
            assert!(error.to_string().contains("auction 7"), "{error}");
        }
    }

    #[test]
    fn sqlx_errors_keep_their_meaning() {
        let kind = |error| into_store_error(error).kind();
        let io = || std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(kind(sqlx::Error::Io(io())), StoreErrorKind::Unavailable);
        assert_eq!(
            kind(sqlx::Error::Protocol("unexpected message".into())),
            StoreErrorKind::Unavailable
        );
        assert_eq!(kind(sqlx::Error::PoolTimedOut), StoreErrorKind::Unavailable);
        assert_eq!(kind(sqlx::Error::PoolClosed), StoreErrorKind::Unavailable);
        assert_eq!(
            kind(sqlx::Error::ColumnNotFound("balance".into())),
            StoreErrorKind::Corrupt
        );
        assert_eq!(
            kind(sqlx::Error::Decode("not a number".into())),
            StoreErrorKind::Corrupt
        );
        assert_eq!(kind(sqlx::Error::RowNotFound), StoreErrorKind::Other);
    }
}
