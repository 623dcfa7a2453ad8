//! Publishing committed events.

use async_trait::async_trait;
use neighborbid_core::{Event, Notifier, NotifyError};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::RedisConfig;

/// A [`Notifier`] that publishes each event, as JSON, to its auction's
/// channel ([`RedisConfig::channel`]). Give it to a
/// [`Relay`](neighborbid_core::Relay) rather than to the engine directly:
/// the relay keeps bids from waiting on Redis and republishes what failed.
///
/// Cheap to clone; clones share one connection, which reconnects by itself.
#[derive(Clone)]
pub struct RedisNotifier {
    connection: ConnectionManager,
    config: RedisConfig,
}

impl RedisNotifier {
    /// A notifier for the server in `config`. It connects on first use, so
    /// a process can start while Redis is down; only a malformed URL fails
    /// here.
    pub fn new(config: &RedisConfig) -> Result<RedisNotifier, redis::RedisError> {
        let client = redis::Client::open(config.url.as_str())?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_min_delay(config.reconnect_delay)
            .set_max_delay(config.max_reconnect_delay);
        Ok(RedisNotifier {
            connection: ConnectionManager::new_lazy_with_config(client, manager)?,
            config: config.clone(),
        })
    }
}

impl std::fmt::Debug for RedisNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisNotifier")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Notifier for RedisNotifier {
    async fn notify(&self, events: &[Event]) -> Result<(), NotifyError> {
        let mut pipe = redis::pipe();
        let mut published = 0;
        for event in events {
            if event.local && !self.config.fan_out_local {
                continue;
            }
            let payload = serde_json::to_vec(event).map_err(|e| NotifyError(e.into()))?;
            pipe.publish(self.config.channel(event.auction_id), payload)
                .ignore();
            published += 1;
        }
        if published == 0 {
            return Ok(());
        }
        let mut connection = self.connection.clone();
        // One round trip for the whole batch, bounded even while Redis is
        // unreachable.
        tokio::time::timeout(self.config.timeout, pipe.query_async::<()>(&mut connection))
            .await
            .map_err(|elapsed| NotifyError(Box::new(elapsed)))?
            .map_err(|e| NotifyError(e.into()))
    }
}
