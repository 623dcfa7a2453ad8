//! The outbox relay: how committed events leave the process, none lost.
//!
//! Every event is written to the store's outbox in the transaction of its
//! change. A [`Relay`] hands outbox events to a [`Notifier`] (for example
//! `neighborbid_redis::RedisNotifier`) and then marks them delivered, on
//! two paths:
//!
//! - **After commit.** Give the engine [`Relay::sender`] (usually paired
//!   with a local [`Hub`](crate::Hub): `(hub, relay.sender())`). It queues
//!   each committed event without waiting, so a slow or unreachable
//!   notifier never delays a bid; the relay task sends the queue in batches
//!   and records what went out.
//! - **Recovery.** Every [`interval`](RelayConfig::interval) the relay
//!   looks for events older than [`grace`](RelayConfig::grace) that are
//!   still undelivered (the process died after commit, the queue was full,
//!   the notifier was down) and sends those. It also does so at start.
//!
//! Delivery is at least once: a crash between sending and marking sends
//! again. Consumers drop duplicates by `(auction_id, seq)`; the
//! [`Hub`](crate::Hub) does.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::TimeDelta;
use tokio::sync::mpsc;

use crate::clock::{Clock, SystemClock};
use crate::error::StoreError;
use crate::event::{Event, EventId};
use crate::notify::{Notifier, NotifyError};
use crate::store::{Outbox, Store, Transaction};

/// Delivered events remembered for marking at most; beyond this (the store
/// is failing) they are forgotten and the recovery path sends them again.
const MAX_UNMARKED: usize = 65_536;

/// How a [`Relay`] works.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Events the after-commit queue holds; when full, further events wait
    /// in the outbox for the recovery path.
    pub queue: usize,
    /// Queued events sent in one call to the notifier, at most.
    pub batch: usize,
    /// How often delivered events are marked and the outbox is searched.
    pub interval: Duration,
    /// How old an undelivered event must be before the recovery path sends
    /// it; younger ones are still on the after-commit path.
    pub grace: Duration,
    /// Outbox events read per recovery transaction, at most.
    pub scan_limit: u32,
    /// The time, to compare with events' times (the engine's clock).
    pub clock: Arc<dyn Clock>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            queue: 4096,
            batch: 256,
            interval: Duration::from_millis(500),
            grace: Duration::from_secs(2),
            scan_limit: 500,
            clock: Arc::new(SystemClock),
        }
    }
}

/// What a relay has done since it was made: from [`Relay::counts`] or
/// [`RelaySender::counts`], for a server's metrics. Sending is at least
/// once, so an event sent again after a failed marking counts again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayCounts {
    /// Events handed to the notifier right after their commit.
    pub sent: u64,
    /// Events the recovery path handed to the notifier: ones older than
    /// the grace period and still undelivered.
    pub recovered: u64,
    /// Events the after-commit queue had no room for; they wait in the
    /// outbox for the recovery path.
    pub queue_full: u64,
    /// Events in calls to the notifier that failed; they stay in the
    /// outbox, and each failed attempt counts.
    pub failed: u64,
}

/// The shared counters behind [`RelayCounts`].
#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    recovered: AtomicU64,
    queue_full: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, events: usize) {
        counter.fetch_add(events as u64, Ordering::Relaxed);
    }

    fn snapshot(&self) -> RelayCounts {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        RelayCounts {
            sent: load(&self.sent),
            recovered: load(&self.recovered),
            queue_full: load(&self.queue_full),
            failed: load(&self.failed),
        }
    }
}

/// Why a recovery pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Reading or marking the outbox failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The notifier refused the events; they stay undelivered.
    #[error(transparent)]
    Notify(#[from] NotifyError),
}

/// Sends outbox events to a notifier and marks them delivered. Run one per
/// process with [`Relay::run`].
pub struct Relay<S, N> {
    store: S,
    notifier: N,
    config: RelayConfig,
    queue: mpsc::Receiver<Event>,
    sender: RelaySender,
    /// Sent after commit, not yet marked in the store.
    unmarked: Vec<EventId>,
}

impl<S: Store, N: Notifier> Relay<S, N> {
    /// A relay from `store`'s outbox to `notifier`.
    pub fn new(store: S, notifier: N, config: RelayConfig) -> Self {
        let (queue_sender, queue) = mpsc::channel(config.queue.max(1));
        Relay {
            store,
            notifier,
            config,
            queue,
            sender: RelaySender {
                queue: queue_sender,
                counters: Arc::default(),
            },
            unmarked: Vec::new(),
        }
    }

    /// The notifier to give the engine: it queues events for this relay.
    pub fn sender(&self) -> RelaySender {
        self.sender.clone()
    }

    /// What this relay has done so far (its sender's counts too).
    pub fn counts(&self) -> RelayCounts {
        self.sender.counts()
    }

    /// Sends queued events, marks delivered ones and recovers undelivered
    /// ones until `shutdown` completes; then sends and marks what is still
    /// queued.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut tick = tokio::time::interval(self.config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(self.config.batch);
        loop {
            tokio::select! {
                // The tick first: a busy queue must not starve marking.
                biased;
                () = &mut shutdown => break,
                _ = tick.tick() => {
                    self.mark_sent().await;
                    if let Err(error) = self.deliver_undelivered().await {
                        tracing::warn!(%error, "outbox recovery failed; will retry");
                    }
                }
                _ = self.queue.recv_many(&mut batch, self.config.batch) => {
                    self.send(&mut batch).await;
                }
            }
        }
        while let Ok(event) = self.queue.try_recv() {
            batch.push(event);
        }
        self.send(&mut batch).await;
        self.mark_sent().await;
    }

    /// Sends every undelivered outbox event older than the grace period and
    /// marks it delivered, one transaction per
    /// [`scan_limit`](RelayConfig::scan_limit) events. Returns how many it
    /// sent.
    pub async fn deliver_undelivered(&self) -> Result<usize, RelayError> {
        let mut sent = 0;
        loop {
            let mut tx = self.store.begin().await?;
            match self.deliver_batch(&mut tx).await {
                Ok(0) => {
                    let _ = tx.rollback().await;
                    return Ok(sent);
                }
                Ok(count) => {
                    tx.commit().await?;
                    sent += count;
                    if count < self.config.scan_limit as usize {
                        return Ok(sent);
                    }
                }
                Err(error) => {
                    // Release the rows at once, for this relay's next pass
                    // or another process's relay.
                    let _ = tx.rollback().await;
                    return Err(error);
                }
            }
        }
    }

    /// Sends one batch of old undelivered events and marks them, in `tx`.
    async fn deliver_batch(&self, tx: &mut S::Tx) -> Result<usize, RelayError> {
        let now = self.config.clock.now();
        // A grace too long to represent leaves nothing old enough.
        let before = TimeDelta::from_std(self.config.grace)
            .ok()
            .and_then(|grace| now.checked_sub_signed(grace))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        let events = tx
            .undelivered_events(before, self.config.scan_limit)
            .await?;
        if events.is_empty() {
            return Ok(0);
        }
        let counters = &self.sender.counters;
        if let Err(error) = self.notifier.notify(&events).await {
            Counters::add(&counters.failed, events.len());
            return Err(error.into());
        }
        Counters::add(&counters.recovered, events.len());
        let ids: Vec<EventId> = events.iter().map(Event::id).collect();
        tx.mark_delivered(&ids, now).await?;
        Ok(events.len())
    }

    async fn send(&mut self, batch: &mut Vec<Event>) {
        if batch.is_empty() {
            return;
        }
        let counters = &self.sender.counters;
        match self.notifier.notify(batch).await {
            Ok(()) => {
                Counters::add(&counters.sent, batch.len());
                self.unmarked.extend(batch.iter().map(Event::id));
                if self.unmarked.len() >= self.config.batch * 4 {
                    self.mark_sent().await;
                }
            }
            Err(error) => {
                Counters::add(&counters.failed, batch.len());
                tracing::warn!(
                    %error,
                    events = batch.len(),
                    "sending events failed; they stay in the outbox for recovery"
                );
            }
        }
        batch.clear();
    }

    async fn mark_sent(&mut self) {
        if self.unmarked.is_empty() {
            return;
        }
        let result = async {
            let mut tx = self.store.begin().await?;
            let now = self.config.clock.now();
            match tx.mark_delivered(&self.unmarked, now).await {
                Ok(()) => tx.commit().await,
                Err(error) => {
                    let _ = tx.rollback().await;
                    Err(error)
                }
            }
        }
        .await;
        match result {
            Ok(()) => self.unmarked.clear(),
            Err(error) => {
                tracing::warn!(%error, "marking events delivered failed; will retry");
                if self.unmarked.len() > MAX_UNMARKED {
                    self.unmarked.clear();
                }
            }
        }
    }
}

/// The engine's side of a [`Relay`]: a [`Notifier`] that queues events for
/// the relay task and never waits. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RelaySender {
    queue: mpsc::Sender<Event>,
    counters: Arc<Counters>,
}

impl RelaySender {
    /// What the relay has done so far: the same as [`Relay::counts`], and
    /// still readable once the relay runs in its own task.
    pub fn counts(&self) -> RelayCounts {
        self.counters.snapshot()
    }
}

#[async_trait]
impl Notifier for RelaySender {
    async fn notify(&self, events: &[Event]) -> Result<(), NotifyError> {
        for event in events {
            match self.queue.try_send(event.clone()) {
                Ok(()) => {}
                // Still in the outbox: the relay sends it after the grace
                // period.
                Err(mpsc::error::TrySendError::Full(_)) => {
                    Counters::add(&self.counters.queue_full, 1);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    return Err(NotifyError("the relay is not running".into()));
                }
            }
        }
        Ok(())
    }
}
