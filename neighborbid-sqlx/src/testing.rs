//! A fresh, migrated Postgres database per test (feature `testing`).
//!
//! [`TestDatabase::create`] makes a database with a unique name on the
//! server that `DATABASE_URL` names (any database on it; the user must be
//! allowed to create databases), and dropping the value drops the
//! database. With the `testcontainers` feature it starts a Postgres
//! container instead (once per test process; the image and network come
//! from environment variables, see `docs/testing.md`) and needs a Docker
//! daemon.
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

    static SERVER: OnceLock<Result<String, String>> = OnceLock::new();
    let server = SERVER.get_or_init(|| {
        // The blocking runner brings its own runtime, which must not start
        // inside the test's.
        std::thread::spawn(container::start)
            .join()
            .unwrap_or_else(|_| Err("starting the container panicked".to_owned()))
    });
    match server {
        Ok(url) => url.clone(),
        Err(error) => panic!("cannot start Postgres in Docker: {error}\n{HOW_TO}"),
    }
}

/// The Postgres container of a test process (feature `testcontainers`).
///
/// Which image: `NEIGHBORBID_PG_IMAGE` and `NEIGHBORBID_PG_TAG` (default
/// the official `postgres:16-alpine`, as a user with Docker Hub gets it).
/// `NEIGHBORBID_PG_HOST_NETWORK=1` runs it on the host's network, on the
/// port `NEIGHBORBID_PG_PORT` names (default: a free one), passed to the
/// image as `PGPORT`; otherwise its port 5432 is published. Either way the
/// container is ready once a connection succeeds, whatever the image logs.
/// It carries the label `neighborbid-test` and serves every test of the
/// process; `.ci/docker stop` removes it.
#[cfg(feature = "testcontainers")]
mod container {
    use std::time::{Duration, Instant};

    use testcontainers_modules::testcontainers::core::IntoContainerPort;
    use testcontainers_modules::testcontainers::runners::SyncRunner;
    use testcontainers_modules::testcontainers::{GenericImage, ImageExt};

    fn setting(name: &str, default: &str) -> String {
        std::env::var(name)
            .ok()
            .filter(|value| !value.trim().is_empty())
            .unwrap_or_else(|| default.to_owned())
    }

    pub(super) fn start() -> Result<String, String> {
        let image = setting("NEIGHBORBID_PG_IMAGE", "postgres");
        let tag = setting("NEIGHBORBID_PG_TAG", "16-alpine");
        let host_network = matches!(
            setting("NEIGHBORBID_PG_HOST_NETWORK", "0").as_str(),
            "1" | "true" | "yes"
        );
        let request = GenericImage::new(image, tag)
            .with_exposed_port(5432.tcp())
            .with_env_var("POSTGRES_HOST_AUTH_METHOD", "trust")
            .with_label("neighborbid-test", "postgres");
        let (container, host, port) = if host_network {
            let port = match std::env::var("NEIGHBORBID_PG_PORT") {
                Ok(port) => port
                    .parse::<u16>()
                    .map_err(|error| format!("NEIGHBORBID_PG_PORT: {error}"))?,
                Err(_) => free_port()?,
            };
            let request = request
                .with_network("host")
                .with_env_var("PGPORT", port.to_string());
            let container = request.start().map_err(|error| error.to_string())?;
            (container, "127.0.0.1".to_owned(), port)
        } else {
            let container = request.start().map_err(|error| error.to_string())?;
            let host = container.get_host().map_err(|error| error.to_string())?;
            let port = container
                .get_host_port_ipv4(5432)
                .map_err(|error| error.to_string())?;
            (container, host.to_string(), port)
        };
        let url = format!("postgres://postgres@{host}:{port}/postgres");
        ready(&url, Duration::from_secs(60))?;
        // The container serves every test of this process; `.ci/docker
        // stop` (or `docker rm -f` on the label) removes it afterwards.
        std::mem::forget(container);
        Ok(url)
    }

    /// A port nothing listens on now.
    fn free_port() -> Result<u16, String> {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").map_err(|error| error.to_string())?;
        let port = listener
            .local_addr()
            .map_err(|error| error.to_string())?
            .port();
        Ok(port)
    }

    /// Waits until a connection to `url` succeeds.
    fn ready(url: &str, patience: Duration) -> Result<(), String> {
        use sqlx::Connection;

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| error.to_string())?;
        let deadline = Instant::now() + patience;
        loop {
            match runtime.block_on(sqlx::PgConnection::connect(url)) {
                Ok(connection) => {
                    let _ = runtime.block_on(connection.close());
                    return Ok(());
                }
                Err(error) if Instant::now() > deadline => {
                    return Err(format!(
                        "Postgres at {url} never accepted a connection: {error}"
                    ))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
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
