//! The example's account system: users with argon2-hashed passwords and a
//! neighbourhood, and sessions (a random token in a cookie or a bearer
//! header; only its SHA-256 is stored). Plugged into the API through
//! [`Identity`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use async_trait::async_trait;
use axum::http::header::COOKIE;
use axum::http::request::Parts;
use axum::http::StatusCode;
use neighborbid_axum::{bearer_token, Actor, ApiError, Identity};
use neighborbid_core::{EngineError, Region, UserId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use tokio::sync::Semaphore;

use crate::throttle::LoginThrottle;

/// The session cookie's name.
pub const COOKIE_NAME: &str = "nb_session";

/// Accounts and sessions, in the server's database (SQLite or Postgres:
/// the SQL below is the common subset, times are Unix seconds).
#[derive(Clone, Debug)]
pub struct Accounts {
    pool: AnyPool,
    session_ttl: Duration,
    /// Password hashes computed at once, each on the blocking pool: argon2
    /// on the async workers stalled every other request.
    hashing: Arc<Semaphore>,
    throttle: Arc<LoginThrottle>,
}

/// Password hashes computed at once (argon2's default parameters take
/// tens of milliseconds of CPU each).
const HASHING_AT_ONCE: usize = 2;

/// Runs `work` (a password hash) on the blocking pool, at most
/// [`HASHING_AT_ONCE`] at a time.
async fn hashed<T: Send + 'static>(
    hashing: &Semaphore,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let _permit = hashing.acquire().await.map_err(internal)?;
    tokio::task::spawn_blocking(work).await.map_err(internal)
}

/// A signed-up user, as the API shows them (never the password).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The user id (also the wallet's).
    pub id: i64,
    /// The login name.
    pub username: String,
    /// Their neighbourhood's path (`seoul/mapo/mangwon`).
    pub region: String,
}

/// 3 to 32 lowercase letters, digits, `_` and `-`.
fn valid_username(name: &str) -> bool {
    (3..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Sign-up and log-in requests.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// 3 to 32 characters: lowercase letters, digits, `_` and `-`.
    pub username: String,
    /// 8 to 128 characters.
    pub password: String,
    /// For sign-up: one of the [`neighbourhoods`](crate::catalogue::neighbourhoods).
    #[serde(default)]
    pub region: Option<String>,
}

fn bad(code: &str, message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

fn internal(error: impl std::fmt::Display) -> ApiError {
    tracing::error!(%error, "accounts");
    ApiError::internal()
}

/// A failed query: 503 `unavailable` (retry) when the database is out of
/// reach, as for the engine's own queries; 500 otherwise.
pub(crate) fn database(error: sqlx::Error) -> ApiError {
    ApiError::from(EngineError::Store(neighborbid_sqlx::into_store_error(
        error,
    )))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    // Every request hashes its session token: no `format!` per byte.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    text
}

fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// An account from a row with `id`, `username` and `region`.
fn account(row: &AnyRow) -> Result<Account, ApiError> {
    Ok(Account {
        id: row.try_get("id").map_err(database)?,
        username: row.try_get("username").map_err(database)?,
        region: row.try_get("region").map_err(database)?,
    })
}

/// Unix seconds, as the site's tables keep times.
pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Accounts {
    /// Connects to `url` (`sqlite://...` or `postgres://...`) and creates
    /// the tables if needed.
    pub async fn open(url: &str, session_ttl: Duration) -> Result<Accounts, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let url = match url.strip_prefix("sqlite://") {
            Some(path) => format!("sqlite://{path}?mode=rwc"),
            None => url.to_owned(),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            // As the engine's pool: a request waits at most this long for
            // a connection while the database is out of reach, then gets
            // 503 `unavailable`.
            .acquire_timeout(Duration::from_secs(10))
            .connect(&url)
            .await?;
        let id = if url.starts_with("sqlite") {
            "INTEGER PRIMARY KEY AUTOINCREMENT"
        } else {
            "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
        };
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS accounts (
                id {id},
                username TEXT NOT NULL UNIQUE,
                password_hash TEXT NOT NULL,
                region TEXT NOT NULL,
                created_at BIGINT NOT NULL)"
        ))
        .execute(&pool)
        .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS sessions (
                token_hash TEXT PRIMARY KEY,
                account_id BIGINT NOT NULL REFERENCES accounts (id),
                expires_at BIGINT NOT NULL)",
        )
        .execute(&pool)
        .await?;
        crate::community::create_tables(&pool, id).await?;
        crate::images::create_table(&pool).await?;
        Ok(Accounts {
            pool,
            session_ttl,
            hashing: Arc::new(Semaphore::new(HASHING_AT_ONCE)),
            throttle: Arc::default(),
        })
    }

    /// The pool the site's own tables live in.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// An account by id.
    pub async fn find(&self, id: i64) -> Result<Option<Account>, ApiError> {
        let row = sqlx::query("SELECT id, username, region FROM accounts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(database)?;
        row.as_ref().map(account).transpose()
    }

    /// Creates an account and returns it with a new session token.
    pub async fn sign_up(&self, credentials: &Credentials) -> Result<(Account, String), ApiError> {
        let username = credentials.username.as_str();
        if !valid_username(username) {
            return Err(bad(
                "invalid_username",
                "a username is 3 to 32 lowercase letters, digits, _ or -",
            ));
        }
        if !(8..=128).contains(&credentials.password.chars().count()) {
            return Err(bad("invalid_password", "a password is 8 to 128 characters"));
        }
        let region = credentials.region.as_deref().unwrap_or_default();
        let neighbourhoods = crate::catalogue::neighbourhoods();
        if !neighbourhoods.iter().any(|hood| hood == region) {
            return Err(
                bad("invalid_region", "choose one of the listed neighbourhoods")
                    .with("regions", neighbourhoods),
            );
        }
        let salt = SaltString::generate(&mut OsRng);
        let password = credentials.password.clone();
        let hash = hashed(&self.hashing, move || {
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|hash| hash.to_string())
        })
        .await?
        .map_err(internal)?;
        let inserted = sqlx::query(
            "INSERT INTO accounts (username, password_hash, region, created_at)
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(username)
        .bind(hash)
        .bind(region)
        .bind(now())
        .fetch_one(&self.pool)
        .await;
        let id: i64 = match inserted {
            Ok(row) => row.try_get("id").map_err(database)?,
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "username_taken",
                    "that username is taken",
                ))
            }
            Err(error) => return Err(database(error)),
        };
        let account = Account {
            id,
            username: username.to_owned(),
            region: region.to_owned(),
        };
        let token = self.start_session(id).await?;
        Ok((account, token))
    }

    /// Checks a password and returns the account with a new session token.
    /// Unknown user and wrong password get the same answer, and count as a
    /// failure of the account and of `client`: past a few, a log-in is
    /// refused with 429 `too_many_attempts` and `Retry-After`, without
    /// checking the password.
    pub async fn log_in(
        &self,
        credentials: &Credentials,
        client: IpAddr,
    ) -> Result<(Account, String), ApiError> {
        let username = credentials.username.as_str();
        if let Some(wait) = self.throttle.wait(username, client, Instant::now()) {
            tracing::warn!(username, %client, ?wait, "log-in throttled after failures");
            let seconds = wait.as_secs() + 1;
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                format!("too many failed log-ins: try again in {seconds} s"),
            )
            .with("retry_after_seconds", seconds));
        }
        let result = self.check_password(credentials).await;
        match &result {
            Ok(_) => self.throttle.succeeded(username),
            Err(error) if error.code() == "invalid_credentials" => {
                self.throttle.failed(username, client, Instant::now());
            }
            Err(_) => {}
        }
        result
    }

    async fn check_password(
        &self,
        credentials: &Credentials,
    ) -> Result<(Account, String), ApiError> {
        let refused = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "wrong username or password",
            )
        };
        // No account has such a name, and Postgres cannot even compare one
        // holding NUL.
        if !valid_username(&credentials.username) {
            return Err(refused());
        }
        let row = sqlx::query(
            "SELECT id, username, password_hash, region FROM accounts WHERE username = $1",
        )
        .bind(&credentials.username)
        .fetch_optional(&self.pool)
        .await
        .map_err(database)?;
        let row = row.ok_or_else(refused)?;
        let stored: String = row.try_get("password_hash").map_err(database)?;
        let password = credentials.password.clone();
        // A stored hash that does not parse is the server's fault; a
        // password that does not match it, the caller's.
        let matches = hashed(&self.hashing, move || {
            let hash = PasswordHash::new(&stored)?;
            let verified = Argon2::default().verify_password(password.as_bytes(), &hash);
            Ok::<_, argon2::password_hash::Error>(verified.is_ok())
        })
        .await?
        .map_err(internal)?;
        if !matches {
            return Err(refused());
        }
        let account = account(&row)?;
        let token = self.start_session(account.id).await?;
        Ok((account, token))
    }

    /// Ends the session of `token` (unknown tokens are ignored).
    pub async fn log_out(&self, token: &str) -> Result<(), ApiError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(hash_token(token))
            .execute(&self.pool)
            .await
            .map_err(database)?;
        Ok(())
    }

    /// The account of a live session.
    pub async fn session(&self, token: &str) -> Result<Option<Account>, ApiError> {
        let row = sqlx::query(
            "SELECT a.id, a.username, a.region FROM sessions s
             JOIN accounts a ON a.id = s.account_id
             WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(hash_token(token))
        .bind(now())
        .fetch_optional(&self.pool)
        .await
        .map_err(database)?;
        row.as_ref().map(account).transpose()
    }

    /// This process's clock minus the database's (Postgres only): how far
    /// off its own idea of time is from the one decisions follow.
    pub async fn clock_offset(&self) -> Result<chrono::TimeDelta, sqlx::Error> {
        let database: i64 = sqlx::query_scalar(
            "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)",
        )
        .fetch_one(&self.pool)
        .await?;
        let process = chrono::Utc::now().timestamp_micros();
        Ok(chrono::TimeDelta::microseconds(process - database))
    }

    /// How many accounts exist.
    pub async fn count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query("SELECT COUNT(*) AS n FROM accounts")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")
    }

    /// How long a session lives.
    pub fn session_ttl(&self) -> Duration {
        self.session_ttl
    }

    async fn start_session(&self, account: i64) -> Result<String, ApiError> {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        let token = hex(&bytes);
        let ttl = i64::try_from(self.session_ttl.as_secs()).unwrap_or(i64::MAX / 2);
        // Expired sessions of anyone go now: the table never grows unbounded.
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now())
            .execute(&self.pool)
            .await
            .map_err(database)?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, account_id, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(hash_token(&token))
        .bind(account)
        .bind(now() + ttl)
        .execute(&self.pool)
        .await
        .map_err(database)?;
        Ok(token)
    }
}

/// The session token of a request: the cookie, else a bearer token.
pub fn session_token(request: &Parts) -> Option<&str> {
    let cookie = request
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE_NAME)?.strip_prefix('='));
    cookie.or_else(|| bearer_token(request))
}

#[async_trait]
impl Identity for Accounts {
    async fn identify(&self, request: &Parts) -> Result<Option<Actor>, ApiError> {
        let Some(token) = session_token(request) else {
            return Ok(None);
        };
        match self.session(token).await? {
            Some(account) => Ok(Some(Actor {
                user: UserId(account.id),
                region: Some(Region::new(account.region)),
            })),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "session_expired",
                "your session ended; log in again",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_spells_each_byte_as_two_lowercase_digits() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff, 0x10]), "000fa5ff10");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn usernames_are_3_to_32_lowercase_letters_digits_underscores_and_dashes() {
        let longest = "x".repeat(32);
        for good in ["bob", "a_b-c", "user42", "_-_", longest.as_str()] {
            assert!(valid_username(good), "{good}");
        }
        let too_long = "x".repeat(33);
        for bad in ["ab", too_long.as_str(), "Bob", "a b", "a.b", "이웃님"] {
            assert!(!valid_username(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_session_ends_when_its_time_is_up() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("accounts.db").display());
        let accounts = Accounts::open(&url, Duration::from_secs(2))
            .await
            .expect("open");
        let credentials = Credentials {
            username: "alice".into(),
            password: "correct horse".into(),
            region: Some("seoul/mapo/mangwon".into()),
        };
        let (account, token) = accounts.sign_up(&credentials).await.expect("sign up");
        let live = accounts.session(&token).await.expect("look up");
        assert_eq!(live.map(|found| found.id), Some(account.id));
        // Times are whole seconds, so two of them: the look-up above cannot
        // fall past its end, and this one falls past it for sure.
        tokio::time::sleep(Duration::from_millis(3_100)).await;
        let gone = accounts.session(&token).await.expect("look up");
        assert!(gone.is_none(), "{gone:?}");
    }
}
