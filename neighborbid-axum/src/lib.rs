//! # neighborbid-axum
//!
//! The NeighborBid engine as an HTTP + WebSocket API: an [`axum::Router`]
//! the host application mounts. Identity comes from the host through
//! [`Identity`]; live events come from a [`Hub`] that the engine's notifier
//! feeds (the hub itself, or the Redis subscriber of `neighborbid-redis`).
//!
//! HTTP and WebSocket run the same engine commands, with the same error
//! codes (see [`error`]). Mutating requests take an `Idempotency-Key`
//! header (a WebSocket bid's `request_id` plays that part): a retry returns
//! the first response and changes nothing. The API describes itself at
//! `GET /openapi.json`.
//!
//! ```no_run
//! use neighborbid_axum::{Actor, Api, StaticTokens};
//! use neighborbid_core::{Engine, Hub, MemoryStore, UserId};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let hub = Hub::default();
//! let engine = Engine::new(MemoryStore::new(), hub.clone());
//! let tokens = StaticTokens::new();
//! tokens.insert("alice-token", Actor { user: UserId(1), region: None });
//!
//! let api = Api::new(engine, hub, tokens);
//! let app = axum::Router::new().nest("/api", api.router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! Live rooms stay open until their clients leave. For a graceful
//! shutdown that closes them (code 1001), build the routes with
//! [`Api::router_with_shutdown`] and the future that stops the server.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::routing::{get, post};
use axum::Router;
use neighborbid_core::{Engine, Hub, Notifier, Store};

mod catalogue;
mod connection;
pub mod error;
pub mod extract;
mod http;
mod identity;
mod limit;
mod openapi;
mod service;
mod state;
pub mod wire;
mod ws;

/// The attribute an [`Identity`] implementation needs (`#[async_trait]`),
/// re-exported so hosts need not depend on `async-trait` themselves.
pub use async_trait::async_trait;
pub use catalogue::{Catalogue, OpenCatalogue};
pub use connection::close_if_body_unread;
pub use error::{catch_panics, ApiError, ErrorBody};
pub use http::WalletBody;
pub use identity::{bearer_token, Actor, Identity, MaybeSignedIn, SignedIn, StaticTokens};
pub use limit::RateLimit;
pub use openapi::openapi;
pub use ws::CLOSE_IDLE;

/// The API's settings.
#[derive(Clone, Copy, Debug)]
pub struct ApiConfig {
    /// Largest request body, in bytes (default 16 KiB); larger gets 413.
    pub body_limit: usize,
    /// Mutating requests per user; `None` turns limiting off.
    pub rate_limit: Option<RateLimit>,
    /// Bids in an auction's detail and WebSocket snapshot (default 20).
    pub recent_bids: u32,
    /// WebSocket settings.
    pub ws: WsConfig,
    /// Whether sellers may end their running auctions early
    /// (`POST /auctions/{id}/end`; default true, as NeighborBid's first version allowed).
    /// Off, the route answers 403 `end_early_disabled`.
    pub end_early: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            body_limit: 16 * 1024,
            rate_limit: Some(RateLimit::default()),
            recent_bids: 20,
            ws: WsConfig::default(),
            end_early: true,
        }
    }
}

/// WebSocket settings.
#[derive(Clone, Copy, Debug)]
pub struct WsConfig {
    /// How often the server pings (default 15 s).
    pub heartbeat: Duration,
    /// A client silent this long (no frame, no pong) is closed with
    /// [`CLOSE_IDLE`] (default 45 s).
    pub idle_timeout: Duration,
    /// Largest client message, in bytes (default 4 KiB); larger is closed
    /// with 1009.
    pub max_message_bytes: usize,
    /// Largest frame the socket reads at all (default 64 KiB); beyond it
    /// the body is not read, and the socket is closed with 1009 too.
    pub max_frame_bytes: usize,
    /// A send that takes longer drops the client (default 10 s).
    pub send_timeout: Duration,
    /// The socket's read buffer, and how much it buffers before writing
    /// (default 4 KiB). Both are per connection, so they decide what an
    /// idle watcher costs; the library defaults (128 KiB each) would make
    /// 2,000 watchers cost hundreds of megabytes.
    pub buffer_bytes: usize,
    /// The least time between two writes of a room's events to one socket
    /// (default 0: each event at once). An event that comes sooner after
    /// the last write waits out the rest, and the events after it join its
    /// write; one that comes later goes at once, so a quiet room's watchers
    /// never wait. With thousands of watchers and many events a second,
    /// much of a delivery's cost is the task's wake-up and the system
    /// call, which the events of one write share (20 ms cut the server's
    /// CPU per delivery by about a quarter in the fan-out benchmark).
    /// Answers, pings and snapshots never wait: a held event goes out just
    /// before them. An event waits at most once: a watcher with more ready
    /// than one write takes (32 events) gets the rest at once.
    pub write_delay: Duration,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            heartbeat: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(45),
            max_message_bytes: 4 * 1024,
            max_frame_bytes: 64 * 1024,
            send_timeout: Duration::from_secs(10),
            buffer_bytes: 4 * 1024,
            write_delay: Duration::ZERO,
        }
    }
}

/// Hooks for metrics, called as things happen (default: nothing).
pub trait Observer: Send + Sync + 'static {
    /// A bid, over HTTP or a WebSocket, was decided: `refused` is `None`
    /// when it was accepted, else the error code; `elapsed` runs from the
    /// request to the decision.
    fn bid_decided(&self, refused: Option<&str>, elapsed: Duration) {
        let _ = (refused, elapsed);
    }

    /// A WebSocket opened (`true`) or closed (`false`).
    fn socket(&self, opened: bool) {
        let _ = opened;
    }

    /// An event went out to a WebSocket client.
    fn event_delivered(&self) {}
}

struct NoObserver;

impl Observer for NoObserver {}

/// Builds the router.
pub struct Api<S, N, I> {
    engine: Engine<S, N>,
    hub: Hub,
    identity: I,
    config: ApiConfig,
    observer: Arc<dyn Observer>,
    catalogue: Arc<dyn Catalogue>,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

/// Closes every WebSocket of the router (code 1001) when triggered, for a
/// graceful shutdown (HTTP requests in flight are the server's to finish).
#[derive(Clone, Debug)]
pub struct Shutdown(Arc<tokio::sync::watch::Sender<bool>>);

impl Shutdown {
    /// Closes the WebSockets.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

impl<S: Store, N: Notifier, I: Identity> Api<S, N, I> {
    /// An API over `engine`, with live rooms from `hub` (which the
    /// engine's notifier must feed) and users from `identity`.
    pub fn new(engine: Engine<S, N>, hub: Hub, identity: I) -> Self {
        Api {
            engine,
            hub,
            identity,
            config: ApiConfig::default(),
            observer: Arc::new(NoObserver),
            catalogue: Arc::new(OpenCatalogue),
            shutdown: tokio::sync::watch::channel(false).1,
        }
    }

    /// Checks listings and filters against the host's `catalogue`.
    pub fn catalogue(mut self, catalogue: impl Catalogue) -> Self {
        self.catalogue = Arc::new(catalogue);
        self
    }

    /// Reports bids, sockets and deliveries to `observer`.
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// Replaces the settings.
    pub fn config(mut self, config: ApiConfig) -> Self {
        self.config = config;
        self
    }

    /// A handle that closes the router's WebSockets when triggered. Not
    /// needed: without one (or once it is dropped untriggered) the sockets
    /// stay open until their clients leave. See also
    /// [`router_with_shutdown`](Self::router_with_shutdown).
    pub fn shutdown_handle(&mut self) -> Shutdown {
        let (sender, receiver) = tokio::sync::watch::channel(false);
        self.shutdown = receiver;
        Shutdown(Arc::new(sender))
    }

    /// The routes, whose WebSockets close (code 1001) once `signal`
    /// completes: pass the future that ends the host's server, such as
    /// the one given to axum's `with_graceful_shutdown`. Call it inside a
    /// tokio runtime (it spawns a task that waits for `signal`).
    pub fn router_with_shutdown(
        mut self,
        signal: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Router {
        let handle = self.shutdown_handle();
        tokio::spawn(async move {
            signal.await;
            handle.trigger();
        });
        self.router()
    }

    /// The routes, relative to where the host nests them.
    pub fn router(self) -> Router {
        // Rendered once: each request then shares the bytes.
        let document = axum::body::Bytes::from(
            openapi(&self.engine.config().currency, &self.config).to_string(),
        );
        let state = state::AppState(Arc::new(state::Shared {
            engine: Arc::new(self.engine),
            hub: self.hub,
            identity: Arc::new(self.identity),
            limiter: limit::Limiter::new(self.config.rate_limit),
            config: self.config,
            observer: self.observer,
            catalogue: self.catalogue,
            shutdown: self.shutdown,
            rendered: ws::Rendered::default(),
        }));
        Router::new()
            .route(
                "/auctions",
                get(http::list_auctions).post(http::create_auction),
            )
            .route("/auctions/{id}", get(http::get_auction))
            .route(
                "/auctions/{id}/bids",
                get(http::auction_bids).post(http::place_bid),
            )
            .route("/auctions/{id}/buy-now", post(http::buy_now))
            .route("/auctions/{id}/cancel", post(http::cancel))
            .route("/auctions/{id}/end", post(http::end_early))
            .route("/auctions/{id}/live", get(ws::live))
            .route("/me/wallet", get(http::my_wallet))
            .route("/me/wallet/deposits", post(http::deposit))
            .route("/me/wallet/withdrawals", post(http::withdraw))
            .route("/me/bids", get(http::my_bids))
            .route("/me/bids/live", get(ws::bidder))
            .route("/me/auctions", get(http::my_auctions))
            .route(
                "/openapi.json",
                get(|| async move { ([(header::CONTENT_TYPE, "application/json")], document) }),
            )
            .fallback(|| async { ApiError::not_found() })
            .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
            .layer(DefaultBodyLimit::max(self.config.body_limit))
            .layer(axum::middleware::from_fn(close_if_body_unread))
            .layer(catch_panics())
            .with_state(state)
    }
}
