//! A consumer of the site's events on Redis that drops duplicates by
//! `(auction, seq)`, as the hub does: it must end up with every committed
//! event exactly once, whatever was killed between commit and delivery.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use neighborbid_core::store::StoredEvent;
use neighborbid_redis::testing::TestRedis;
use serde_json::Value;
use sqlx::postgres::PgConnection;
use sqlx::Row;

type EventKey = (i64, i64);

/// What the consumer got: each event once, and how often it came.
#[derive(Default)]
struct Received {
    events: BTreeMap<EventKey, (u64, Value)>,
}

/// Listens to every auction channel of the site's prefix.
pub(crate) struct Consumer {
    received: Arc<Mutex<Received>>,
    task: tokio::task::JoinHandle<()>,
}

impl Consumer {
    /// Subscribes before the site publishes anything.
    pub(crate) async fn start(redis: &TestRedis) -> Consumer {
        let mut pubsub = redis
            .client()
            .get_async_pubsub()
            .await
            .expect("a Redis subscription");
        pubsub
            .psubscribe(format!("{}:auction:*", redis.config().prefix))
            .await
            .expect("psubscribe");
        let received = Arc::new(Mutex::new(Received::default()));
        let sink = received.clone();
        let task = tokio::spawn(async move {
            let mut messages = pubsub.into_on_message();
            while let Some(message) = messages.next().await {
                let event: Value =
                    serde_json::from_slice(message.get_payload_bytes()).expect("a JSON event");
                let key = (
                    event["auction_id"].as_i64().expect("an auction id"),
                    event["seq"].as_i64().expect("a seq"),
                );
                let mut received = sink.lock().expect("received");
                received.events.entry(key).or_insert((0, event)).0 += 1;
            }
        });
        Consumer { received, task }
    }

    /// Events that came more than once (dropped as duplicates).
    pub(crate) fn duplicates(&self) -> u64 {
        let received = self.received.lock().expect("received");
        received.events.values().map(|(times, _)| times - 1).sum()
    }

    /// Checks that every event the outbox marks delivered reached the
    /// consumer, as committed; with `all`, first waits (up to `limit`) for
    /// the relay to deliver every committed event.
    pub(crate) async fn check(
        &self,
        db: &mut PgConnection,
        all: bool,
        limit: Duration,
    ) -> Vec<String> {
        let started = std::time::Instant::now();
        loop {
            let found = self.compare(db, all).await;
            if found.is_empty() || started.elapsed() > limit {
                return found;
            }
            // Published events may still be on their way.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn compare(&self, db: &mut PgConnection, all: bool) -> Vec<String> {
        let rows = sqlx::query(
            "SELECT auction_id, seq, payload, delivered_at IS NOT NULL AS delivered FROM outbox",
        )
        .fetch_all(db)
        .await
        .expect("the outbox");
        let received = self.received.lock().expect("received");
        let mut found = Vec::new();
        let mut committed = std::collections::BTreeSet::new();
        for row in rows {
            let key: EventKey = (row.get("auction_id"), row.get("seq"));
            committed.insert(key);
            let delivered: bool = row.get("delivered");
            if !delivered && all {
                found.push(format!("event {key:?} was never delivered"));
                continue;
            }
            match received.events.get(&key) {
                Some((_, event)) if *event == published(row.get("payload")) => {}
                Some((_, event)) => found.push(format!("event {key:?} arrived changed: {event}")),
                None if delivered => found.push(format!(
                    "event {key:?} is marked delivered but never arrived"
                )),
                None => {}
            }
        }
        let phantoms = received
            .events
            .keys()
            .filter(|key| !committed.contains(key));
        found.extend(phantoms.map(|key| format!("event {key:?} arrived but was never committed")));
        found
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A stored outbox payload as the relay publishes its event.
fn published(payload: Value) -> Value {
    let stored: StoredEvent = serde_json::from_value(payload).expect("a stored event");
    let event = stored.into_event().expect("a known format");
    serde_json::to_value(event).expect("an event's JSON")
}
