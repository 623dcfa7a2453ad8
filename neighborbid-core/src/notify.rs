//! Delivering events after commit.
//!
//! The engine calls [`Notifier::notify`] only after the change committed,
//! and a notifier failure never undoes it: the event is in the store's
//! outbox, where a relay (see `neighborbid-redis`) can deliver it later.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::event::Event;

/// A failed delivery.
#[derive(Debug, thiserror::Error)]
#[error("notification failed: {0}")]
pub struct NotifyError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// Receives committed events.
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// Delivers the events of one commit, in sequence order.
    async fn notify(&self, events: &[Event]) -> Result<(), NotifyError>;
}

#[async_trait]
impl<N: Notifier + ?Sized> Notifier for Arc<N> {
    async fn notify(&self, events: &[Event]) -> Result<(), NotifyError> {
        (**self).notify(events).await
    }
}

/// Both notifiers, in order: `(hub, relay.sender())` serves local
/// watchers at once and sends events on to other processes. Fails when
/// either fails (after trying both).
#[async_trait]
impl<A: Notifier, B: Notifier> Notifier for (A, B) {
    async fn notify(&self, events: &[Event]) -> Result<(), NotifyError> {
        let first = self.0.notify(events).await;
        let second = self.1.notify(events).await;
        first.and(second)
    }
}

/// Drops every event (the outbox still has them).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopNotifier;

#[async_trait]
impl Notifier for NoopNotifier {
    async fn notify(&self, _events: &[Event]) -> Result<(), NotifyError> {
        Ok(())
    }
}

/// In-process fan-out over a [`tokio::sync::broadcast`] channel: the
/// embedded default. A receiver that falls more than `capacity` events
/// behind gets [`broadcast::error::RecvError::Lagged`] and should reload
/// the state it shows.
#[derive(Clone, Debug)]
pub struct BroadcastNotifier {
    sender: broadcast::Sender<Event>,
}

impl BroadcastNotifier {
    /// A notifier whose receivers buffer up to `capacity` events each.
    pub fn new(capacity: usize) -> BroadcastNotifier {
        let (sender, _) = broadcast::channel(capacity.max(1));
        BroadcastNotifier { sender }
    }

    /// A receiver of every event committed from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }
}

impl Default for BroadcastNotifier {
    fn default() -> Self {
        BroadcastNotifier::new(1024)
    }
}

#[async_trait]
impl Notifier for BroadcastNotifier {
    async fn notify(&self, events: &[Event]) -> Result<(), NotifyError> {
        for event in events {
            // No receiver is not an error: nobody is watching.
            let _ = self.sender.send(event.clone());
        }
        Ok(())
    }
}
