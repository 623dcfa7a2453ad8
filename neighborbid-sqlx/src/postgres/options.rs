//! [`PgStoreOptions`]: how a [`PgStore`] connects, locks and keeps time.

use super::*;

/// How long a pooled connection may sit idle before it is tested again
/// when taken.
pub(crate) const RETEST_IDLE: Duration = Duration::from_secs(1);

/// How to connect a [`PgStore`].
#[derive(Clone, Debug)]
pub struct PgStoreOptions {
    connect: PgConnectOptions,
    max_connections: u32,
    lock_timeout: Duration,
    acquire_timeout: Duration,
    database_clock: bool,
}

impl PgStoreOptions {
    /// Options for the server at `url` (`postgres://user@host:port/db`),
    /// with a pool of 10 connections and a 2 s lock timeout.
    pub fn new(url: &str) -> Result<PgStoreOptions, StoreError> {
        let connect: PgConnectOptions = url.parse().map_err(|error: sqlx::Error| {
            StoreError::new(StoreErrorKind::Other, format!("bad Postgres URL: {error}"))
                .with_source(error)
        })?;
        Ok(PgStoreOptions {
            connect,
            max_connections: 10,
            lock_timeout: Duration::from_secs(2),
            acquire_timeout: Duration::from_secs(10),
            database_clock: true,
        })
    }

    /// Whether decisions are timed by the database's clock (default: yes),
    /// read by the statement that locks the auction (or claims it for the
    /// closer), so every server process on the database decides alike
    /// whatever its own clock says. Off, the engine's
    /// [`Clock`](neighborbid_core::Clock) decides: for tests that move a
    /// manual clock.
    pub fn database_clock(mut self, on: bool) -> Self {
        self.database_clock = on;
        self
    }

    /// The most connections the pool opens.
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long a statement waits for a row lock before its transaction
    /// fails as a (retryable) conflict.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// How long a transaction waits for a free connection before failing
    /// as unavailable.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Opens the pool. Connections are made lazily; call
    /// [`PgStore::migrate`] to create or update the schema.
    pub fn connect(self) -> PgStore {
        let lock_timeout = format!("{}ms", self.lock_timeout.as_millis().max(1));
        let connect = self
            .connect
            .options([("lock_timeout", lock_timeout.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout)
            // sqlx pings a connection when it goes back to the pool (which
            // also sends a dropped transaction's rollback), and by default
            // again when it is taken: a round trip at the start of every
            // transaction. Only a connection idle long enough to have been
            // cut off is tested again.
            .test_before_acquire(false)
            .before_acquire(|connection, meta| {
                Box::pin(async move {
                    if meta.idle_for >= RETEST_IDLE {
                        connection.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(connect);
        PgStore {
            pool,
            counters: Arc::default(),
            database_clock: self.database_clock,
        }
    }
}
