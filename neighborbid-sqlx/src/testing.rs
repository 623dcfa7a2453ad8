//! A fresh, migrated Postgres database per test (feature `testing`).
//!
//! [`TestDatabase::create`] makes a database with a unique name on the
//! server that `DATABASE_URL` names (any database on it; the user must be
//! allowed to create databases), and dropping the value drops the
//! database. With the `testcontainers` feature it starts a Postgres
//! container instead (once per test process) and needs a Docker daemon.
//! When there is no server to use, the test fails and says how to provide
//! one; it is never skipped.

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Executor};

use crate::{PgStore, PgStoreOptions};

const HOW_TO: &str = "The Postgres tests need a server where they may create and drop \
    databases. Set DATABASE_URL=postgres://USER[:PASSWORD]@HOST:PORT/DATABASE (this \
    repository's .cargo/config.toml defaults it to postgres://postgres@127.0.0.1:5432/test), \
    or run the tests with `--features neighborbid-sqlx/testcontainers` and a running Docker \
    daemon.";

/// A database that exists until this value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    admin: PgConnectOptions,
}

impl TestDatabase {
    /// Creates an empty database with a unique name.
    ///
    /// # Panics
    ///
    /// When no Postgres server can be reached, with a message that says
    /// how to provide one.
    pub async fn create() -> TestDatabase {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let server = server_url();
        let admin: PgConnectOptions = server
            .parse()
            .unwrap_or_else(|error| panic!("bad DATABASE_URL {server:?}: {error}\n{HOW_TO}"));
        let name = format!(
            "neighborbid_test_{}_{}_{:08x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            fastrand::u32(..)
        );
        let mut connection = PgConnection::connect_with(&admin)
            .await
            .unwrap_or_else(|error| panic!("cannot reach Postgres at {server}: {error}\n{HOW_TO}"));
        connection
            .execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
            .unwrap_or_else(|error| panic!("cannot create a test database: {error}\n{HOW_TO}"));
        let _ = connection.close().await;
        TestDatabase {
            url: with_database(&server, &name),
            name,
            admin,
        }
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Options for a store on this database, to adjust before connecting.
    /// Decisions are timed by the engine's clock (a test's manual clock),
    /// not the database's: set [`PgStoreOptions::database_clock`] to test
    /// that.
    pub fn options(&self) -> PgStoreOptions {
        PgStoreOptions::new(&self.url)
            .expect("the test database URL parses")
            .database_clock(false)
    }

    /// A migrated store with the default options.
    pub async fn store(&self) -> PgStore {
        self.store_with(self.options()).await
    }

    /// A migrated store with `options`.
    pub async fn store_with(&self, options: PgStoreOptions) -> PgStore {
        let store = options.connect();
        store
            .migrate()
            .await
            .unwrap_or_else(|error| panic!("migrating {}: {error}", self.name));
        store
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs outside any async context we could borrow, so the
        // cleanup gets its own thread and runtime. FORCE ends connections
        // that pools of the finished test still hold.
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut connection = admin.connect().await?;
                connection
                    .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                    .await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            tracing::warn!(database = %self.name, "could not drop a test database");
        }
    }
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

#[cfg(not(feature = "testcontainers"))]
fn server_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!("DATABASE_URL is not set.\n{HOW_TO}"),
    }
}

#[cfg(feature = "testcontainers")]
fn server_url() -> String {
    use std::sync::OnceLock;
    use testcontainers_modules::postgres::Postgres;
    use testcontainers_modules::testcontainers::runners::SyncRunner;
    use testcontainers_modules::testcontainers::ImageExt;

    static SERVER: OnceLock<Result<String, String>> = OnceLock::new();
    let server = SERVER.get_or_init(|| {
        // The blocking runner brings its own runtime, which must not start
        // inside the test's.
        std::thread::spawn(|| {
            let container = Postgres::default()
                .with_tag("16-alpine")
                .start()
                .map_err(|error| error.to_string())?;
            let host = container.get_host().map_err(|error| error.to_string())?;
            let port = container
                .get_host_port_ipv4(5432)
                .map_err(|error| error.to_string())?;
            // The container serves every test of this process; it goes
            // away with the process.
            std::mem::forget(container);
            Ok(format!(
                "postgres://postgres:postgres@{host}:{port}/postgres"
            ))
        })
        .join()
        .unwrap_or_else(|_| Err("starting the container panicked".to_owned()))
    });
    match server {
        Ok(url) => url.clone(),
        Err(error) => panic!("cannot start Postgres in Docker: {error}\n{HOW_TO}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_of_a_url() {
        assert_eq!(
            with_database("postgres://u@h:5432/test", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
    }
}
