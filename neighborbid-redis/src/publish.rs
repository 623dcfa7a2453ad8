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
        for event in events {
            if event.local && !self.config.fan_out_local {
                continue;
            }
            let payload = serde_json::to_vec(event).map_err(|e| NotifyError(e.into()))?;
            pipe.publish(self.config.channel(event.auction_id), payload)
                .ignore();
        }
        if pipe.is_empty() {
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

#[cfg(test)]
mod tests {
    use neighborbid_core::AuctionId;

    use super::*;

    fn event(local: bool) -> Event {
        Event {
            auction_id: AuctionId(1),
            seq: 1,
            at: Default::default(),
            local,
            public: Vec::new(),
            private: Vec::new(),
        }
    }

    /// Nothing listens on port 1: a notifier that tries to publish fails.
    fn unreachable(fan_out_local: bool) -> RedisNotifier {
        let mut config = RedisConfig::new("redis://127.0.0.1:1");
        config.fan_out_local = fan_out_local;
        config.timeout = std::time::Duration::from_secs(2);
        RedisNotifier::new(&config).expect("a well-formed URL")
    }

    #[tokio::test]
    async fn local_events_alone_never_reach_redis_unless_fanned_out() {
        let local = [event(true), event(true)];
        assert!(unreachable(false).notify(&local).await.is_ok());
        assert!(unreachable(false).notify(&[]).await.is_ok());
        assert!(unreachable(true).notify(&local).await.is_err());
        assert!(unreachable(false).notify(&[event(false)]).await.is_err());
    }

    #[tokio::test]
    async fn debug_shows_the_configuration() {
        let shown = format!("{:?}", unreachable(false));
        assert!(shown.starts_with("RedisNotifier"), "{shown}");
        assert!(shown.contains("redis://127.0.0.1:1"), "{shown}");
    }
}
