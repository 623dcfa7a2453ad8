//! The example NeighborBid site: the engine on SQLite (default) or
//! Postgres, the HTTP + WebSocket API under `/api`, accounts with
//! sessions, a closer that settles ended auctions, a web page at `/`,
//! `/healthz` and Prometheus `/metrics`.
//!
//! `main.rs` parses flags and calls [`start`]; tests call it too.

use std::error::Error;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::extract::{ConnectInfo, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use neighborbid_axum::extract::Body;
use neighborbid_axum::{
    catch_panics, close_if_body_unread, Api, ApiConfig, ApiError, RateLimit, Shutdown, WsConfig,
};
use neighborbid_core::rules::SameArea;
use neighborbid_core::{
    Engine, EngineConfig, EngineError, Hub, Notifier, Page, Relay, RelayConfig, RelaySender, Store,
};
use neighborbid_redis::{RedisConfig, RedisNotifier, Subscriber};
use neighborbid_sqlx::{PgStore, SqliteStore};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

pub mod accounts;
pub mod catalogue;
mod community;
mod images;
pub mod metrics;
mod security;
mod seed;
mod throttle;

use accounts::{session_token, Accounts, Credentials, COOKIE_NAME};
use metrics::Metrics;

/// The longest a login may last, in hours (ten years).
const MAX_SESSION_HOURS: u64 = 87_600;

/// The server's settings, from flags or the environment.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "neighborbid-server",
    version,
    about = "The NeighborBid auction site"
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "NEIGHBORBID_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// `sqlite://FILE` (embedded, the default) or `postgres://...` (several
    /// server processes may share it).
    #[arg(
        long,
        env = "NEIGHBORBID_DATABASE_URL",
        default_value = "sqlite://neighborbid.db"
    )]
    pub database_url: String,
    /// `redis://...`: share live auction rooms with the other server
    /// processes on the same Redis and Postgres (events go out through the
    /// outbox relay, so none is lost). Without it, rooms are in-process.
    #[arg(long, env = "NEIGHBORBID_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Starts the Redis channel names, so several sites can share a Redis.
    #[arg(long, env = "NEIGHBORBID_REDIS_PREFIX", default_value = "neighborbid")]
    pub redis_prefix: String,
    /// Send local auctions' events across processes too (by default only
    /// national ones go through Redis: local pages poll).
    #[arg(long)]
    pub fan_out_local: bool,
    /// Fill an empty database with demo users, wallets and auctions.
    #[arg(long)]
    pub demo: bool,
    /// How long a login lasts, in hours (1 to 87,600: ten years).
    #[arg(long, default_value_t = 24,
        value_parser = clap::value_parser!(u64).range(1..=MAX_SESSION_HOURS))]
    pub session_hours: u64,
    /// How often the closer looks for ended auctions, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub close_every_ms: u64,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    pub log_json: bool,
    /// Requests a user may send per second (bursts of twice as many); 0
    /// turns the limit off, for load tests.
    #[arg(long, env = "NEIGHBORBID_RATE_LIMIT", default_value_t = 20)]
    pub rate_limit: u32,
    /// Mark the session cookie `Secure`: set it when browsers reach the
    /// site over HTTPS (a TLS proxy in front), so the cookie never travels
    /// in clear text.
    #[arg(long, env = "NEIGHBORBID_SECURE_COOKIES")]
    pub secure_cookies: bool,
    /// Who may bid on a local auction: people of its `neighbourhood` (the
    /// first NeighborBid), of its `district`, or of its `city`.
    #[arg(long, env = "NEIGHBORBID_LOCAL_AREA", value_enum, default_value_t = LocalArea::Neighbourhood)]
    pub local_area: LocalArea,
    /// Do not let sellers end their auctions early.
    #[arg(long, env = "NEIGHBORBID_NO_END_EARLY")]
    pub no_end_early: bool,
    /// How long before a watched auction's end its watchers get an "ending
    /// soon" notice, in seconds (at most 31,536,000: a year).
    #[arg(long, env = "NEIGHBORBID_ENDING_SOON_SECS", default_value_t = 600,
        value_parser = clap::value_parser!(u64).range(..=31_536_000))]
    pub ending_soon_secs: u64,
    /// How long a request's idempotency key (an `Idempotency-Key` header, a
    /// WebSocket bid's `request_id`) is remembered, in seconds; a retry
    /// after that is carried out as a new request. 0 remembers them
    /// forever (the table then only grows).
    #[arg(long, env = "NEIGHBORBID_IDEMPOTENCY_SECS", default_value_t = 86_400)]
    pub idempotency_secs: u64,
    /// How long a closed auction's events stay in the outbox after it
    /// closed, in seconds; then they are deleted (its bids, wallets and
    /// history stay). 0, the default, keeps them forever.
    #[arg(long, env = "NEIGHBORBID_KEEP_CLOSED_EVENTS_SECS", default_value_t = 0)]
    pub keep_closed_events_secs: u64,
    /// Where uploaded photos are stored.
    #[arg(
        long,
        env = "NEIGHBORBID_IMAGES_DIR",
        default_value = "neighborbid-images"
    )]
    pub images_dir: std::path::PathBuf,
    /// Largest photo upload, in bytes.
    #[arg(long, env = "NEIGHBORBID_MAX_IMAGE_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_image_bytes: usize,
    /// The least time, in milliseconds, between two writes of a live
    /// room's events to one socket (0: each event at once); events that
    /// come sooner wait and share a write. Costs watchers of a busy room up
    /// to that much latency (a quiet room's events still go at once);
    /// saves the server part of each delivery's cost when events come fast,
    /// so that one server carries thousands of watchers of a hot auction.
    #[arg(long, env = "NEIGHBORBID_WS_WRITE_DELAY_MS", default_value_t = 30)]
    pub ws_write_delay_ms: u64,
}

/// How far from a local auction its bidders may live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LocalArea {
    /// The same neighbourhood (`seoul/mapo/mangwon`).
    Neighbourhood,
    /// The same district (`seoul/mapo`).
    District,
    /// The same city (`seoul`).
    City,
}

impl LocalArea {
    /// The engine's region policy for it: regions are city/district/neighbourhood paths.
    fn policy(self) -> SameArea {
        let depth = match self {
            LocalArea::City => 1,
            LocalArea::District => 2,
            LocalArea::Neighbourhood => 3,
        };
        SameArea { depth }
    }
}

/// A running server.
pub struct Server {
    /// Where it listens.
    pub address: SocketAddr,
    stop: Stop,
    sockets: Shutdown,
    tasks: Vec<JoinHandle<()>>,
    /// Stopped after `tasks`: it delivers what the requests committed.
    relaying: Option<Relaying>,
}

type Stop = tokio::sync::watch::Sender<bool>;

impl Server {
    /// Graceful shutdown: WebSockets get a close frame, in-flight requests
    /// finish, the closer stops between auctions, then the relay sends
    /// what they committed.
    pub async fn stop(self) {
        self.sockets.trigger();
        self.stop.send_replace(true);
        for task in self.tasks {
            let _ = task.await;
        }
        if let Some(relaying) = self.relaying {
            relaying.stop().await;
        }
    }
}

/// Completes once `stop` says so.
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Opens the database, builds the site and starts serving.
pub async fn start(config: Config) -> Result<Server, Box<dyn Error + Send + Sync>> {
    // A Config built in code skips the command line's range.
    let ttl = Duration::from_secs(config.session_hours.clamp(1, MAX_SESSION_HOURS) * 3600);
    let accounts = Accounts::open(&config.database_url, ttl).await?;
    let url = config.database_url.clone();
    if is_postgres(&url) {
        let store = PgStore::connect(&url)?;
        store.migrate().await?;
        serve(store, accounts, config).await
    } else {
        let path = url.strip_prefix("sqlite://").unwrap_or(&url);
        let store = SqliteStore::open(path).await?;
        store.migrate().await?;
        serve(store, accounts, config).await
    }
}

/// Whether `url` names a Postgres database (else an SQLite file).
fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The engine's notifier: the hub alone, or the hub and the Redis relay.
type Notify = Arc<dyn Notifier>;

/// What the site's own routes share.
pub(crate) struct Site<S> {
    pub(crate) engine: Engine<S, Notify>,
    pub(crate) accounts: Accounts,
    pub(crate) images: images::ImageStore,
    metrics: Arc<Metrics>,
    /// The Redis link's state, when rooms are shared through Redis.
    redis: Option<RedisLink>,
    secure_cookies: bool,
    /// Postgres times decisions by its own clock: health shows how far
    /// this process's is from it.
    database_clock: bool,
}

/// The running Redis relay and subscriber.
struct Relaying {
    stop: Stop,
    tasks: Vec<JoinHandle<()>>,
    link: RedisLink,
}

/// What the health check and the metrics read of the Redis link.
#[derive(Clone)]
struct RedisLink {
    /// Whether the subscriber is connected.
    connected: tokio::sync::watch::Receiver<bool>,
    /// The relay's counts.
    relay: RelaySender,
}

impl Relaying {
    /// Sends what is queued, marks it, and disconnects.
    async fn stop(self) {
        self.stop.send_replace(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Sends committed events to Redis through the outbox relay, and other
/// processes' events from Redis to `hub`.
fn relay_through_redis<S: Store + Clone>(
    url: &str,
    config: &Config,
    store: &S,
    hub: &Hub,
) -> Result<(Notify, Relaying), Box<dyn Error + Send + Sync>> {
    let mut redis = RedisConfig::new(url);
    redis.prefix = config.redis_prefix.clone();
    redis.fan_out_local = config.fan_out_local;
    let relay = Relay::new(
        store.clone(),
        RedisNotifier::new(&redis)?,
        RelayConfig::default(),
    );
    let notifier: Notify = Arc::new((hub.clone(), relay.sender()));
    let subscriber = Subscriber::new(&redis, hub.clone())?;
    let link = RedisLink {
        connected: subscriber.connected(),
        relay: relay.sender(),
    };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let tasks = vec![
        tokio::spawn(relay.run(stopped(stop_rx.clone()))),
        tokio::spawn(subscriber.run(stopped(stop_rx))),
    ];
    tracing::info!(redis = %redacted(url), prefix = %redis.prefix, "rooms shared through Redis");
    Ok((notifier, Relaying { stop, tasks, link }))
}

async fn serve<S: Store + Clone>(
    store: S,
    accounts: Accounts,
    config: Config,
) -> Result<Server, Box<dyn Error + Send + Sync>> {
    let hub = Hub::default();
    let (notifier, relaying) = match &config.redis_url {
        Some(url) => {
            let (notifier, relaying) = relay_through_redis(url, &config, &store, &hub)?;
            (notifier, Some(relaying))
        }
        None => (Arc::new(hub.clone()) as Notify, None),
    };
    let engine_config = EngineConfig {
        region_policy: Arc::new(config.local_area.policy()),
        ..EngineConfig::default()
    };
    let engine = Engine::with_config(store, notifier, engine_config);
    let metrics = Arc::new(Metrics::default());
    if config.demo {
        seed::demo(&engine, &accounts).await?;
    }
    let rate_limit = (config.rate_limit > 0).then(|| RateLimit {
        per_second: config.rate_limit,
        burst: config.rate_limit.saturating_mul(2),
    });
    let api_config = ApiConfig {
        rate_limit,
        end_early: !config.no_end_early,
        ws: WsConfig {
            write_delay: Duration::from_millis(config.ws_write_delay_ms),
            ..WsConfig::default()
        },
        ..ApiConfig::default()
    };
    let mut api = Api::new(engine.clone(), hub, accounts.clone())
        .config(api_config)
        .catalogue(catalogue::SiteCatalogue)
        .observer(metrics.clone());
    let sockets = api.shutdown_handle();
    let site = Arc::new(Site {
        engine: engine.clone(),
        accounts: accounts.clone(),
        images: images::ImageStore {
            dir: config.images_dir.clone(),
            max_bytes: config.max_image_bytes,
        },
        metrics: metrics.clone(),
        redis: relaying.as_ref().map(|relaying| relaying.link.clone()),
        secure_cookies: config.secure_cookies,
        database_clock: is_postgres(&config.database_url),
    });
    let app = Router::new()
        .route("/", get(|| async { Html(security::PAGE) }))
        .route("/auth/signup", post(sign_up::<S>))
        .route("/auth/login", post(log_in::<S>))
        .route("/auth/logout", post(log_out::<S>))
        .route("/auth/me", get(me::<S>))
        .route("/healthz", get(health::<S>))
        .route("/metrics", get(render_metrics::<S>))
        .route("/site/catalogue", get(catalogue_body))
        .route(
            "/site/auctions/{id}/questions",
            get(community::questions::<S>).post(community::ask::<S>),
        )
        .route("/site/questions/{id}/answer", post(community::answer::<S>))
        .route("/site/watchlist", get(community::watchlist::<S>))
        .route(
            "/site/watchlist/{id}",
            put(community::watch::<S>).delete(community::unwatch::<S>),
        )
        .route("/site/notices", get(community::notices::<S>))
        .route("/site/sellers/{id}", get(community::seller::<S>))
        .route("/site/users/{id}", get(community::user::<S>))
        .route(
            "/site/auctions/{id}/images",
            get(images::images::<S>)
                .post(images::upload::<S>)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/images/{name}", get(images::serve::<S>))
        // The site's own paths answer as the API does: JSON with a code.
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(axum::middleware::from_fn(close_if_body_unread))
        .layer(catch_panics())
        .with_state(site)
        .nest("/api", api.router())
        .layer(axum::middleware::map_response(security::headers));

    // Small WebSocket frames each way: without TCP_NODELAY, Nagle and
    // delayed ACKs hold an answer back up to 40 ms.
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let address = listener.local_addr()?;
    let listener = listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set");
        }
    });
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let http_stopped = stopped(stop_rx.clone());
    let http = tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(http_stopped)
            .await
        {
            tracing::error!(%error, "server failed");
        }
    });
    let mut tasks = Vec::new();
    if config.idempotency_secs > 0 {
        let (engine, keep) = (engine.clone(), Duration::from_secs(config.idempotency_secs));
        tasks.push(tokio::spawn(sweep(
            "old idempotency keys",
            (keep / 2).min(Duration::from_secs(60)),
            move || {
                let engine = engine.clone();
                async move { engine.forget_idempotency(keep).await }
            },
            stop_rx.clone(),
        )));
    }
    if config.keep_closed_events_secs > 0 {
        let keep = Duration::from_secs(config.keep_closed_events_secs);
        let engine = engine.clone();
        // A pass reads every auction's row: hourly at most.
        tasks.push(tokio::spawn(sweep(
            "closed auctions' events",
            (keep / 2).min(Duration::from_secs(3_600)),
            move || {
                let engine = engine.clone();
                async move { engine.forget_events(keep).await }
            },
            stop_rx.clone(),
        )));
    }
    let closer = tokio::spawn(close_auctions(
        engine,
        accounts,
        metrics,
        Closing {
            every: Duration::from_millis(config.close_every_ms.max(10)),
            ending_soon: Duration::from_secs(config.ending_soon_secs),
        },
        stop_rx,
    ));
    tracing::info!(%address, database = %redacted(&config.database_url), "listening");
    Ok(Server {
        address,
        stop,
        sockets,
        tasks: [http, closer].into_iter().chain(tasks).collect(),
        relaying,
    })
}

/// The database URL without its password, for the log.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// How often the closer runs, and when watchers hear "ending soon".
struct Closing {
    every: Duration,
    ending_soon: Duration,
}

/// Runs `pass` (which forgets something and says how many) at once and
/// then every `every`, until told to stop.
async fn sweep<F, Fut>(
    what: &'static str,
    every: Duration,
    mut pass: F,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, EngineError>>,
{
    loop {
        // A long first pass (a backlog) must not hold up shutdown; a batch
        // cut short rolls back.
        let forgotten = tokio::select! {
            forgotten = pass() => forgotten,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        match forgotten {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "forgot {what}"),
            Err(error) => tracing::warn!(%error, "forgetting {what} failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

/// Settles ended auctions (the engine's closer) and sends watchlist
/// notices beside it, until told to stop. Safe to run in several
/// processes at once on Postgres.
async fn close_auctions<S: Store>(
    engine: Engine<S, Notify>,
    accounts: Accounts,
    metrics: Arc<Metrics>,
    closing: Closing,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let notices = async {
        let mut stop = stop.clone();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(closing.every) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
            let pool = accounts.pool();
            if let Err(error) =
                community::send_watch_notices(&engine, pool, closing.ending_soon).await
            {
                tracing::warn!(%error, "watch notices failed; retrying");
            }
        }
    };
    let closer = engine.run_closer_with(closing.every, stopped(stop.clone()), |closed| {
        metrics.auctions_closed(closed.len());
    });
    tokio::join!(notices, closer);
}

impl<S> Site<S> {
    /// The session cookie (`Secure` when the site is served over TLS).
    fn session_cookie(&self, token: &str, max_age: Duration) -> HeaderValue {
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        let cookie = format!(
            "{COOKIE_NAME}={token}; HttpOnly; SameSite=Lax; Path=/; Max-Age={}{secure}",
            max_age.as_secs()
        );
        HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    fn signed_in(&self, account: accounts::Account, token: String, status: StatusCode) -> Response {
        let cookie = self.session_cookie(&token, self.accounts.session_ttl());
        let body = Json(json!({ "account": account, "token": token }));
        (status, [(SET_COOKIE, cookie)], body).into_response()
    }
}

async fn sign_up<S: Store>(
    State(site): State<Arc<Site<S>>>,
    Body(credentials): Body<Credentials>,
) -> Result<Response, ApiError> {
    let (account, token) = site.accounts.sign_up(&credentials).await?;
    tracing::info!(user = account.id, username = %account.username, "signed up");
    Ok(site.signed_in(account, token, StatusCode::CREATED))
}

async fn log_in<S: Store>(
    State(site): State<Arc<Site<S>>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Body(credentials): Body<Credentials>,
) -> Result<Response, ApiError> {
    let (account, token) = site.accounts.log_in(&credentials, client.ip()).await?;
    Ok(site.signed_in(account, token, StatusCode::OK))
}

async fn log_out<S: Store>(
    State(site): State<Arc<Site<S>>>,
    parts: Parts,
) -> Result<Response, ApiError> {
    if let Some(token) = session_token(&parts) {
        site.accounts.log_out(token).await?;
    }
    let cookie = site.session_cookie("", Duration::ZERO);
    Ok((StatusCode::NO_CONTENT, [(SET_COOKIE, cookie)]).into_response())
}

async fn me<S: Store>(
    State(site): State<Arc<Site<S>>>,
    parts: Parts,
) -> Result<Response, ApiError> {
    let token = session_token(&parts).ok_or_else(ApiError::unauthorized)?;
    let account = site
        .accounts
        .session(token)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    Ok(Json(account).into_response())
}

async fn health<S: Store>(State(site): State<Arc<Site<S>>>) -> Response {
    let database = site
        .engine
        .list_auctions(&Default::default(), Page::first(1))
        .await;
    let accounts = site.accounts.count().await;
    match (database, accounts) {
        (Ok(_), Ok(_)) => {
            // Auctions this process's closer could not settle: the others
            // settle meanwhile, and these are retried with back-off.
            let stuck: Vec<Value> = (site.engine.stuck_auctions().iter())
                .map(|stuck| {
                    json!({
                        "auction_id": stuck.auction_id,
                        "failures": stuck.failures,
                        "error": stuck.error,
                        "retry_in_ms": u64::try_from(stuck.retry_in.as_millis()).unwrap_or(u64::MAX),
                    })
                })
                .collect();
            let mut body = json!({ "status": "ok", "closer": { "stuck": stuck } });
            if site.database_clock {
                // Decisions follow the database's clock; a process whose
                // own is off only shows it here.
                if let Ok(offset) = site.accounts.clock_offset().await {
                    body["clock_offset_ms"] = offset.num_milliseconds().into();
                }
            }
            // Bids go on while Redis is down (events wait in the outbox),
            // so the node stays healthy; the field says whether its rooms
            // are shared right now.
            if let Some(redis) = &site.redis {
                let state = if *redis.connected.borrow() {
                    "connected"
                } else {
                    "disconnected"
                };
                body["redis"] = state.into();
            }
            (StatusCode::OK, Json(body)).into_response()
        }
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable" })),
        )
            .into_response(),
    }
}

/// `GET /site/catalogue`: regions, categories and item details to choose from.
async fn catalogue_body() -> Response {
    let pairs = |list: &[(&str, &str)]| {
        list.iter()
            .map(|(id, name)| json!({ "id": id, "name": name }))
            .collect::<Vec<_>>()
    };
    Json(json!({
        "regions": catalogue::regions(),
        "categories": pairs(&catalogue::CATEGORIES),
        "conditions": pairs(&catalogue::CONDITIONS),
        "shipping": pairs(&catalogue::SHIPPING),
    }))
    .into_response()
}

async fn render_metrics<S: Store>(State(site): State<Arc<Site<S>>>) -> Response {
    let headers = [
        (CONTENT_TYPE, "text/plain; version=0.0.4"),
        (CACHE_CONTROL, "no-store"),
    ];
    let mut body = site.metrics.render(site.engine.stuck_auctions().len());
    if let Some(redis) = &site.redis {
        metrics::render_redis(&mut body, redis.relay.counts(), *redis.connected.borrow());
    }
    (headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Config;

    #[test]
    fn durations_beyond_their_range_are_refused_at_start() {
        let parse =
            |args: &[&str]| Config::try_parse_from([&["neighborbid-server"], args].concat());
        assert_eq!(parse(&[]).expect("the defaults").session_hours, 24);
        assert_eq!(
            parse(&["--session-hours", "87600", "--ending-soon-secs", "31536000"])
                .map(|config| (config.session_hours, config.ending_soon_secs))
                .expect("the largest"),
            (87_600, 31_536_000)
        );
        for bad in [
            ["--session-hours", "0"],
            ["--session-hours", "87601"],
            // Hours as seconds would overflow.
            ["--session-hours", "18446744073709551615"],
            ["--ending-soon-secs", "31536001"],
        ] {
            let error = parse(&bad).expect_err("out of range");
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{bad:?}: {error}"
            );
        }
    }
}
