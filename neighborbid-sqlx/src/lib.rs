//! Postgres and SQLite stores for [`neighborbid_core`].
//!
//! - [`PgStore`]: Postgres for servers, several processes on one database.
//!   Commands lock the auction row, then wallets in ascending user id
//!   (`SELECT ... FOR UPDATE`), so they never deadlock; lock waits are
//!   bounded by a `lock_timeout` and retried by the engine; the closer
//!   claims due auctions with `FOR UPDATE SKIP LOCKED`.
//! - [`SqliteStore`]: the embedded default, one file in WAL mode, writers
//!   serialized by `BEGIN IMMEDIATE`.
//!
//! Both keep money as exact decimals, and their schemas refuse what must
//! never happen whatever the code does: negative balances or holds,
//! a second record under one idempotency key, rows pointing at nothing,
//! changes to history. Every event is written to an `outbox` table in the
//! transaction of its change. Both pass the same conformance suite as
//! [`neighborbid_core::MemoryStore`].
//!
//! ```no_run
//! use neighborbid_core::{BroadcastNotifier, Deposit, Engine, Money, UserId};
//! use neighborbid_sqlx::SqliteStore;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = SqliteStore::open("neighborbid.db").await?;
//! store.migrate().await?;
//! let engine = Engine::new(store, BroadcastNotifier::default());
//! engine
//!     .deposit(Deposit { user: UserId(7), amount: Money::units(100) }, None)
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! For Postgres, `PgStore::connect("postgres://user@host/db")?` (or
//! [`PgStoreOptions`] for pool size and lock timeout), then `migrate()`.

mod codec;
mod outbox;
mod postgres;
mod queries;
mod rows;
mod sqlite;
mod statement;
#[cfg(feature = "testing")]
pub mod testing;

pub use codec::{into_store_error, ConflictCounts};
pub use postgres::{PgStore, PgStoreOptions, PgTx};
pub use sqlite::{SqliteStore, SqliteStoreOptions, SqliteTx};
