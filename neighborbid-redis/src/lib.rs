//! Live [`neighborbid_core`] events across server processes, over Redis
//! pub/sub, with nothing lost.
//!
//! Each process runs one engine with a local [`Hub`](neighborbid_core::Hub)
//! for its own WebSockets, and three pieces from here and core:
//!
//! - a [`Relay`](neighborbid_core::Relay) from the store's outbox to a
//!   [`RedisNotifier`], which publishes every committed event to its
//!   auction's channel. The engine's notifier is `(hub, relay.sender())`:
//!   local watchers get the event at once, and the relay publishes it
//!   without making the bid wait; events that could not be published (Redis
//!   down, the process killed after commit) are published later from the
//!   outbox.
//! - a [`Subscriber`]: one Redis connection per process, subscribed to the
//!   channels of the auctions the hub has watchers for, which hands other
//!   processes' events to the hub. It reconnects by itself, and then tells
//!   every room to resynchronize, since events may have passed meanwhile.
//! - the hub drops duplicates and puts events back in sequence order, so
//!   at-least-once delivery reaches each watcher exactly once.
//!
//! Local auctions' events stay in their process by default, as in the
//! first NeighborBid site (their pages poll); [`RedisConfig::fan_out_local`] sends
//! them too.
//!
//! ```no_run
//! use neighborbid_core::{Engine, Hub, MemoryStore, Relay, RelayConfig};
//! use neighborbid_redis::{RedisConfig, RedisNotifier, Subscriber};
//!
//! # async fn run() -> Result<(), redis::RedisError> {
//! let store = MemoryStore::new(); // in production, a PgStore shared by the processes
//! let redis = RedisConfig::new("redis://127.0.0.1:6379");
//! let hub = Hub::default();
//! let relay = Relay::new(store.clone(), RedisNotifier::new(&redis)?, RelayConfig::default());
//! let engine = Engine::new(store, (hub.clone(), relay.sender()));
//! tokio::spawn(relay.run(std::future::pending()));
//! tokio::spawn(Subscriber::new(&redis, hub.clone())?.run(std::future::pending()));
//! // Serve `engine` and `hub`, for example with neighborbid-axum.
//! # let _ = engine;
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use neighborbid_core::AuctionId;

mod publish;
mod subscribe;
#[cfg(feature = "testing")]
pub mod testing;

pub use publish::RedisNotifier;
pub use subscribe::Subscriber;

/// Where Redis is and how to use it.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// The server, as `redis://host:port/db`.
    pub url: String,
    /// Starts every channel name, so several deployments (or tests) can
    /// share one Redis.
    pub prefix: String,
    /// Publish local auctions' events too (default: no; watchers of a
    /// local auction then see only the events of their own process).
    pub fan_out_local: bool,
    /// Longest wait for a connection or a command.
    pub timeout: Duration,
    /// First wait before reconnecting; it doubles up to
    /// [`max_reconnect_delay`](RedisConfig::max_reconnect_delay).
    pub reconnect_delay: Duration,
    /// Longest wait between reconnection attempts.
    pub max_reconnect_delay: Duration,
    /// How often the subscriber checks that its connection is alive.
    pub health_check: Duration,
}

impl RedisConfig {
    /// The defaults for the server at `url`.
    pub fn new(url: impl Into<String>) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            prefix: "neighborbid".to_owned(),
            fan_out_local: false,
            timeout: Duration::from_secs(2),
            reconnect_delay: Duration::from_millis(100),
            max_reconnect_delay: Duration::from_secs(5),
            health_check: Duration::from_secs(5),
        }
    }

    /// The channel of `auction`'s events.
    pub fn channel(&self, auction: AuctionId) -> String {
        format!("{}:auction:{}", self.prefix, auction.0)
    }
}
