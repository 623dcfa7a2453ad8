//! Receiving other processes' events.

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use neighborbid_core::{AuctionId, Event, Hub};
use redis::aio::PubSubSink;
use redis::{Msg, RedisError};
use tokio::sync::watch;

use crate::RedisConfig;

/// One Redis connection per process that follows the auctions its
/// [`Hub`] has watchers for and hands their events to the hub.
///
/// It subscribes when a room opens and unsubscribes when it closes. When
/// the connection fails it reconnects with growing delays; once subscribed
/// again it calls [`Hub::resync_all`], because events published meanwhile
/// never reached it: watchers reload their snapshot, and anything the
/// outbox relay publishes late is dropped or ordered by the hub.
#[derive(Debug)]
pub struct Subscriber {
    client: redis::Client,
    config: RedisConfig,
    hub: Hub,
    connected: watch::Sender<bool>,
}

/// Why a connection ended.
#[derive(Debug)]
enum Lost {
    Redis(RedisError),
    Closed,
    TimedOut,
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::Redis(error) => error.fmt(f),
            Lost::Closed => f.write_str("the connection closed"),
            Lost::TimedOut => f.write_str("Redis did not answer in time"),
        }
    }
}

impl From<RedisError> for Lost {
    fn from(error: RedisError) -> Self {
        Lost::Redis(error)
    }
}

impl Subscriber {
    /// A subscriber feeding `hub` from the server in `config`. Only a
    /// malformed URL fails here; connecting happens in [`run`](Self::run).
    pub fn new(config: &RedisConfig, hub: Hub) -> Result<Subscriber, RedisError> {
        Ok(Subscriber {
            client: redis::Client::open(config.url.as_str())?,
            config: config.clone(),
            hub,
            connected: watch::Sender::new(false),
        })
    }

    /// Whether the subscriber is connected and follows the hub's rooms
    /// (for health checks, and for tests to wait on).
    pub fn connected(&self) -> watch::Receiver<bool> {
        self.connected.subscribe()
    }

    /// Receives events until `shutdown` completes, reconnecting whenever
    /// the connection fails.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut delay = self.config.reconnect_delay;
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                Err(lost) = self.session() => {
                    tracing::warn!(error = %lost, "Redis subscription lost; reconnecting");
                }
            }
            let was_connected = self.connected.send_replace(false);
            if was_connected {
                delay = self.config.reconnect_delay;
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(delay) => {}
            }
            delay = backoff(delay, self.config.max_reconnect_delay);
        }
    }

    /// One connection's life: connect, subscribe to the watched auctions,
    /// tell the rooms to resynchronize, then forward events until the
    /// connection fails.
    async fn session(&self) -> Result<Infallible, Lost> {
        let pubsub = self.timed(self.client.get_async_pubsub()).await?;
        let (mut sink, mut messages) = pubsub.split();
        let mut rooms = self.hub.rooms_changed();
        let mut subscribed = HashSet::new();
        self.follow_rooms(&mut sink, &mut rooms, &mut subscribed)
            .await?;
        tracing::info!("Redis subscription ready");
        self.hub.resync_all();
        self.connected.send_replace(true);
        let mut health = tokio::time::interval(self.config.health_check);
        health.tick().await;
        loop {
            tokio::select! {
                message = messages.next() => match message {
                    Some(message) => self.forward(&message),
                    None => return Err(Lost::Closed),
                },
                // The hub lives as long as we do, so this never fails.
                _ = rooms.changed() => {
                    self.follow_rooms(&mut sink, &mut rooms, &mut subscribed).await?;
                }
                _ = health.tick() => {
                    // A subscribed RESP2 connection answers PING with an array
                    // (`["pong", ""]`), an idle one with a string: any
                    // answer in time is alive.
                    self.timed(sink.ping::<redis::Value>()).await?;
                }
            }
        }
    }

    /// Subscribes to the auctions that gained watchers and unsubscribes
    /// from those that lost them.
    async fn follow_rooms(
        &self,
        sink: &mut PubSubSink,
        rooms: &mut watch::Receiver<()>,
        subscribed: &mut HashSet<AuctionId>,
    ) -> Result<(), Lost> {
        // Marked seen before reading: a room opening meanwhile marks it
        // changed again.
        rooms.borrow_and_update();
        let watched: HashSet<AuctionId> = self.hub.watched().into_iter().collect();
        let channels = |ids: Vec<AuctionId>| -> Vec<String> {
            ids.into_iter().map(|id| self.config.channel(id)).collect()
        };
        let new: Vec<AuctionId> = watched.difference(subscribed).copied().collect();
        let gone: Vec<AuctionId> = subscribed.difference(&watched).copied().collect();
        if !new.is_empty() {
            self.timed(sink.subscribe(channels(new))).await?;
        }
        if !gone.is_empty() {
            self.timed(sink.unsubscribe(channels(gone))).await?;
        }
        *subscribed = watched;
        Ok(())
    }

    fn forward(&self, message: &Msg) {
        match serde_json::from_slice::<Event>(message.get_payload_bytes()) {
            Ok(event) => self.hub.publish(&event),
            Err(error) => tracing::warn!(
                %error,
                channel = message.get_channel_name(),
                "dropped a malformed event from Redis"
            ),
        }
    }

    async fn timed<T>(
        &self,
        future: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, Lost> {
        match tokio::time::timeout(self.config.timeout, future).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(Lost::TimedOut),
        }
    }
}

/// The wait before the next reconnection: twice the last, up to `max`.
fn backoff(delay: Duration, max: Duration) -> Duration {
    (delay * 2).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnection_waits_double_up_to_the_maximum() {
        let max = Duration::from_secs(5);
        let mut delay = Duration::from_millis(100);
        let mut waits = Vec::new();
        for _ in 0..8 {
            delay = backoff(delay, max);
            waits.push(delay.as_millis());
        }
        assert_eq!(waits, [200, 400, 800, 1_600, 3_200, 5_000, 5_000, 5_000]);
    }

    #[test]
    fn a_lost_connection_says_why() {
        assert_eq!(Lost::Closed.to_string(), "the connection closed");
        assert_eq!(Lost::TimedOut.to_string(), "Redis did not answer in time");
    }
}
