//! Per-auction rooms for live watchers (WebSockets, server-sent events).
//!
//! A [`Hub`] is a [`Notifier`]: give it (or a clone) to the engine, and
//! every committed event reaches the [`Watch`]es of its auction. Another
//! process's events reach it through [`Hub::publish`] (the Redis subscriber
//! does that).
//!
//! Each room buffers a bounded number of events, shared by its watchers. A
//! watcher that falls further behind is not waited for: it gets
//! [`Delivery::Resync`] and should reload the auction, then call
//! [`Watch::resume_after`]. So a slow or stuck watcher never slows bidders
//! or the other watchers, and memory stays bounded.
//!
//! Events of one auction may reach the hub out of order (two commits
//! notify concurrently) or twice (an at-least-once relay). A room puts
//! them back in sequence order and drops duplicates; a watcher sees every
//! sequence number once, in order, or a [`Delivery::Resync`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use crate::event::Event;
use crate::ids::{AuctionId, UserId};
use crate::notify::{Notifier, NotifyError};

/// Out-of-order events a room holds while it waits for a missing one;
/// beyond this it gives up on the missing event and tells watchers to
/// resynchronize.
const MAX_PENDING: usize = 64;

/// How long a room waits for a missing event (a notifier that never ran,
/// because the task was cancelled after commit, say) before it gives up and
/// tells watchers to resynchronize.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// Live rooms, one per watched auction. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Hub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    capacity: usize,
    rooms: Mutex<HashMap<AuctionId, Room>>,
    /// Told whenever a room opens or closes.
    changes: watch::Sender<()>,
}

#[derive(Debug)]
struct Room {
    sender: broadcast::Sender<Message>,
    /// The last sequence number sent to the room.
    last: Option<u64>,
    /// Events that arrived before their predecessor, by sequence number.
    pending: BTreeMap<u64, Arc<Event>>,
    /// Since when the room has been waiting for a missing event.
    waiting_since: Option<Instant>,
}

impl Room {
    fn publish(&mut self, event: &Event) {
        match self.last {
            Some(last) if event.seq <= last => {} // a duplicate or a stale straggler
            Some(last) if event.seq > last + 1 => {
                self.pending.insert(event.seq, Arc::new(event.clone()));
                self.waiting_since.get_or_insert_with(Instant::now);
                if self.pending.len() > MAX_PENDING {
                    self.skip_missing();
                }
            }
            _ => {
                self.send(Arc::new(event.clone()));
                let mut next_seq = event.seq + 1;
                while let Some(next) = self.pending.remove(&next_seq) {
                    self.send(next);
                    next_seq += 1;
                }
                if self.pending.is_empty() {
                    self.waiting_since = None;
                }
            }
        }
    }

    /// Gives up on the missing events: watchers resynchronize, and the
    /// room goes on with the events it holds.
    fn skip_missing(&mut self) {
        let _ = self.sender.send(Message::Gap);
        for (_, event) in std::mem::take(&mut self.pending) {
            self.send(event);
        }
        self.waiting_since = None;
    }

    fn send(&mut self, event: Arc<Event>) {
        self.last = Some(event.seq);
        let _ = self.sender.send(Message::Event(event));
    }
}

#[derive(Clone, Debug)]
enum Message {
    Event(Arc<Event>),
    /// Events may have been missed: watchers must reload.
    Gap,
}

/// What a [`Watch`] receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The next event, as the watcher may see it (public facts and their
    /// own private notices).
    Event(Event),
    /// Events were missed (the watcher fell behind, or the hub lost
    /// contact with another process): reload the auction and call
    /// [`Watch::resume_after`] with its sequence number.
    Resync,
}

impl Hub {
    /// A hub whose rooms buffer up to `capacity` events for their slowest
    /// watcher.
    pub fn new(capacity: usize) -> Hub {
        Hub {
            inner: Arc::new(Inner {
                capacity: capacity.max(1),
                rooms: Mutex::new(HashMap::new()),
                changes: watch::Sender::new(()),
            }),
        }
    }

    /// Starts watching `auction` as `viewer` (`None`: anonymous, public
    /// events only). Watch before loading the snapshot you show, then
    /// [`resume_after`](Watch::resume_after) its sequence number, so no
    /// event falls between the two.
    pub fn watch(&self, auction: AuctionId, viewer: Option<UserId>) -> Watch {
        let mut rooms = self.rooms();
        let room = rooms.entry(auction).or_insert_with(|| {
            self.inner.changes.send_replace(());
            Room {
                sender: broadcast::channel(self.inner.capacity).0,
                last: None,
                pending: BTreeMap::new(),
                waiting_since: None,
            }
        });
        Watch {
            hub: self.clone(),
            auction,
            viewer,
            receiver: Some(room.sender.subscribe()),
            last: None,
        }
    }

    /// Hands a committed event to its auction's watchers (nothing happens
    /// when nobody watches it).
    pub fn publish(&self, event: &Event) {
        if let Some(room) = self.rooms().get_mut(&event.auction_id) {
            room.publish(event);
        }
    }

    /// Tells every watcher that events may have been missed (for example,
    /// while the connection to other processes was down).
    pub fn resync_all(&self) {
        for room in self.rooms().values_mut() {
            room.last = None;
            room.pending.clear();
            room.waiting_since = None;
            let _ = room.sender.send(Message::Gap);
        }
    }

    /// The auctions that have watchers now.
    pub fn watched(&self) -> Vec<AuctionId> {
        self.rooms().keys().copied().collect()
    }

    /// Changes whenever a room opens or closes, so a subscriber to other
    /// processes can follow [`watched`](Hub::watched).
    pub fn rooms_changed(&self) -> watch::Receiver<()> {
        self.inner.changes.subscribe()
    }

    /// How many watchers `auction` has.
    pub fn watchers(&self, auction: AuctionId) -> usize {
        self.rooms()
            .get(&auction)
            .map_or(0, |room| room.sender.receiver_count())
    }

    /// When the room of `auction` gives up on the event it is missing.
    fn deadline(&self, auction: AuctionId) -> Option<Instant> {
        let rooms = self.rooms();
        let since = rooms.get(&auction)?.waiting_since?;
        Some(since + MAX_WAIT)
    }

    fn give_up_waiting(&self, auction: AuctionId) {
        if let Some(room) = self.rooms().get_mut(&auction) {
            if room
                .waiting_since
                .is_some_and(|since| since.elapsed() >= MAX_WAIT)
            {
                room.skip_missing();
            }
        }
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<AuctionId, Room>> {
        // No code panics while holding the lock, and rooms stay consistent
        // even if one did: keep serving.
        self.inner
            .rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for Hub {
    /// Rooms buffering 256 events.
    fn default() -> Self {
        Hub::new(256)
    }
}

#[async_trait]
impl Notifier for Hub {
    async fn notify(&self, events: &[Event]) -> Result<(), NotifyError> {
        for event in events {
            self.publish(event);
        }
        Ok(())
    }
}

/// One watcher of one auction. Dropping it leaves the room (and removes
/// the room when it was the last watcher).
#[derive(Debug)]
pub struct Watch {
    hub: Hub,
    auction: AuctionId,
    viewer: Option<UserId>,
    receiver: Option<broadcast::Receiver<Message>>,
    /// The last sequence number this watcher has (from an event or a
    /// snapshot).
    last: Option<u64>,
}

impl Watch {
    /// The auction watched.
    pub fn auction(&self) -> AuctionId {
        self.auction
    }

    /// Skips events up to `seq`: the watcher has a snapshot that includes
    /// them.
    pub fn resume_after(&mut self, seq: u64) {
        self.last = Some(seq);
    }

    /// The next delivery, in sequence order.
    pub async fn next(&mut self) -> Delivery {
        loop {
            if let Some(delivery) = self.try_next() {
                return delivery;
            }
            // The room's lock is taken only when there is nothing to read.
            let deadline = self.hub.deadline(self.auction);
            let receiver = self.receiver.as_mut().expect("present until drop");
            let received = match deadline {
                None => receiver.recv().await,
                Some(deadline) => tokio::select! {
                    received = receiver.recv() => received,
                    () = tokio::time::sleep_until(deadline) => {
                        self.hub.give_up_waiting(self.auction);
                        continue;
                    }
                },
            };
            if let Some(delivery) = self.accept(received) {
                return delivery;
            }
        }
    }

    /// The next delivery if one is ready now, without waiting. A connection
    /// that fell behind can send every ready event and flush once.
    pub fn try_next(&mut self) -> Option<Delivery> {
        loop {
            let receiver = self.receiver.as_mut().expect("present until drop");
            let received = match receiver.try_recv() {
                Ok(message) => Ok(message),
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Lagged(skipped)) => Err(RecvError::Lagged(skipped)),
                Err(TryRecvError::Closed) => Err(RecvError::Closed),
            };
            if let Some(delivery) = self.accept(received) {
                return Some(delivery);
            }
        }
    }

    /// What a message from the room means to this watcher: `None` for an
    /// event it already has.
    fn accept(&mut self, received: Result<Message, RecvError>) -> Option<Delivery> {
        let message = match received {
            Ok(message) => message,
            Err(RecvError::Lagged(_)) => {
                // Skip what is still buffered: the reload covers it, and
                // reading it could only lag again.
                let receiver = self.receiver.as_mut().expect("present until drop");
                *receiver = receiver.resubscribe();
                Message::Gap
            }
            // The sender lives in the room, which lives while we do.
            Err(RecvError::Closed) => Message::Gap,
        };
        let event = match message {
            Message::Gap => {
                self.last = None;
                return Some(Delivery::Resync);
            }
            Message::Event(event) => event,
        };
        match self.last {
            Some(last) if event.seq <= last => None,
            Some(last) if event.seq > last + 1 => {
                self.last = None;
                Some(Delivery::Resync)
            }
            _ => {
                self.last = Some(event.seq);
                Some(Delivery::Event(event.view_for(self.viewer)))
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        drop(self.receiver.take());
        let mut rooms = self.hub.rooms();
        if rooms
            .get(&self.auction)
            .is_some_and(|room| room.sender.receiver_count() == 0)
        {
            rooms.remove(&self.auction);
            self.hub.inner.changes.send_replace(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{PrivateEvent, PrivateNotice, PublicEvent};
    use crate::money::Money;

    fn event(seq: u64) -> Event {
        Event {
            auction_id: AuctionId(1),
            seq,
            at: chrono::DateTime::UNIX_EPOCH,
            local: false,
            public: vec![PublicEvent::Unsold],
            private: vec![PrivateNotice {
                user: UserId(7),
                event: PrivateEvent::Outbid {
                    price: Money::units(1),
                },
            }],
        }
    }

    async fn seqs(watch: &mut Watch, n: usize) -> Vec<Option<u64>> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(match watch.next().await {
                Delivery::Event(event) => Some(event.seq),
                Delivery::Resync => None,
            });
        }
        out
    }

    #[tokio::test]
    async fn events_arrive_in_order_once_with_private_notices_for_their_user() {
        let hub = Hub::new(16);
        let mut anonymous = hub.watch(AuctionId(1), None);
        let mut user = hub.watch(AuctionId(1), Some(UserId(7)));
        let mut elsewhere = hub.watch(AuctionId(2), None);
        for seq in [1, 5, 4, 3, 2, 2, 5, 1] {
            hub.publish(&event(seq));
        }
        for (watch, notices) in [(&mut anonymous, 0), (&mut user, 1)] {
            for seq in 1..=5 {
                let Delivery::Event(event) = watch.next().await else {
                    panic!("event {seq} expected")
                };
                assert_eq!((event.seq, event.private.len()), (seq, notices));
            }
        }
        // The duplicates and stragglers were dropped, not queued.
        hub.publish(&event(6));
        assert_eq!(seqs(&mut anonymous, 1).await, [Some(6)]);
        hub.publish(&Event {
            auction_id: AuctionId(2),
            ..event(1)
        });
        assert_eq!(seqs(&mut elsewhere, 1).await, [Some(1)]);
    }

    #[tokio::test]
    async fn a_slow_watcher_is_told_to_resync_instead_of_slowing_the_room() {
        let hub = Hub::new(4);
        let mut slow = hub.watch(AuctionId(1), None);
        let mut fast = hub.watch(AuctionId(1), None);
        for seq in 1..=10 {
            hub.publish(&event(seq));
            assert_eq!(seqs(&mut fast, 1).await, [Some(seq)]);
        }
        assert_eq!(slow.next().await, Delivery::Resync);
        // After reloading a snapshot at 10, it goes on from there.
        slow.resume_after(10);
        hub.publish(&event(11));
        assert_eq!(seqs(&mut slow, 1).await, [Some(11)]);
    }

    #[tokio::test]
    async fn snapshot_overlap_is_skipped_and_gaps_resync() {
        let hub = Hub::new(2 * MAX_PENDING);
        let mut watch = hub.watch(AuctionId(1), None);
        for seq in 1..=3 {
            hub.publish(&event(seq));
        }
        watch.resume_after(2);
        assert_eq!(seqs(&mut watch, 1).await, [Some(3)]);

        // A missing event that never comes: the room holds MAX_PENDING
        // events behind it, and with one more gives up on it and watchers
        // resync.
        let last_held = 4 + MAX_PENDING as u64;
        for seq in 5..=last_held {
            hub.publish(&event(seq));
        }
        assert_eq!(watch.try_next(), None, "still waiting for 4");
        hub.publish(&event(last_held + 1));
        assert_eq!(seqs(&mut watch, 2).await, [None, Some(5)]);

        let mut fresh = hub.watch(AuctionId(1), None);
        hub.resync_all();
        assert_eq!(fresh.next().await, Delivery::Resync);
    }

    #[test]
    fn ready_deliveries_are_taken_without_waiting() {
        let hub = Hub::new(4);
        let mut watch = hub.watch(AuctionId(1), None);
        assert_eq!(watch.try_next(), None);
        for seq in 1..=3 {
            hub.publish(&event(seq));
        }
        watch.resume_after(1);
        let ready: Vec<_> = std::iter::from_fn(|| watch.try_next())
            .map(|delivery| match delivery {
                Delivery::Event(event) => Some(event.seq),
                Delivery::Resync => None,
            })
            .collect();
        assert_eq!(ready, [Some(2), Some(3)], "the snapshot's events skipped");
        for seq in 4..=9 {
            hub.publish(&event(seq));
        }
        assert_eq!(watch.try_next(), Some(Delivery::Resync), "fell behind");
        assert_eq!(watch.try_next(), None, "the buffered backlog is skipped");
    }

    #[tokio::test(start_paused = true)]
    async fn a_room_waits_a_bounded_time_for_a_missing_event() {
        let hub = Hub::default();
        let mut watch = hub.watch(AuctionId(1), None);
        hub.publish(&event(1));
        hub.publish(&event(3)); // 2 was committed but never published
        let start = Instant::now();
        assert_eq!(seqs(&mut watch, 3).await, [Some(1), None, Some(3)]);
        assert_eq!(start.elapsed(), MAX_WAIT);

        hub.publish(&event(5));
        tokio::time::advance(MAX_WAIT / 2).await;
        hub.publish(&event(4)); // late, but in time
        assert_eq!(seqs(&mut watch, 2).await, [Some(4), Some(5)]);
        assert_eq!(start.elapsed(), MAX_WAIT + MAX_WAIT / 2);
    }

    #[tokio::test]
    async fn rooms_close_with_their_last_watcher() {
        let hub = Hub::default();
        let first = hub.watch(AuctionId(1), None);
        let second = hub.watch(AuctionId(1), None);
        assert_eq!(hub.watchers(AuctionId(1)), 2);
        drop(first);
        assert_eq!(hub.watched(), [AuctionId(1)]);
        drop(second);
        assert!(hub.watched().is_empty());
        hub.publish(&event(1)); // nobody watches: nothing to do
    }

    #[tokio::test]
    async fn opening_and_closing_rooms_is_announced() {
        let hub = Hub::default();
        let mut changes = hub.rooms_changed();
        assert!(!changes.has_changed().unwrap());
        let watch = hub.watch(AuctionId(1), None);
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        let second = hub.watch(AuctionId(1), None);
        assert!(!changes.has_changed().unwrap(), "the room was open already");
        drop((watch, second));
        assert!(changes.has_changed().unwrap());
    }
}
