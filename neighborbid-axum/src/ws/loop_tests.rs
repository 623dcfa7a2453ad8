//! The connection loop without a server: the client's side is a pair of
//! channels, as in axum's `testing-websockets` example.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::ws::Message;
use futures_util::{Sink, Stream};
use neighborbid_core::testkit::{fund, national_auction, ALICE};
use neighborbid_core::{Engine, Hub, MemoryStore};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{Connection, Room};
use crate::identity::Actor;
use crate::state::{AppState, Shared};
use crate::{ApiConfig, OpenCatalogue, StaticTokens};

/// The server's end of a socket whose client is the test.
struct Channels {
    from_client: mpsc::UnboundedReceiver<Result<Message, axum::Error>>,
    to_client: mpsc::UnboundedSender<Message>,
}

impl Stream for Channels {
    type Item = Result<Message, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.from_client.poll_recv(cx)
    }
}

impl Sink<Message> for Channels {
    type Error = axum::Error;

    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), axum::Error> {
        self.to_client.send(message).map_err(axum::Error::new)
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
        Poll::Ready(Ok(()))
    }
}

/// The test's end: what it sends, and what the server wrote.
struct Client {
    send: mpsc::UnboundedSender<Result<Message, axum::Error>>,
    received: mpsc::UnboundedReceiver<Message>,
}

impl Client {
    fn text(&self, value: Value) {
        let message = Message::Text(value.to_string().into());
        self.send.send(Ok(message)).expect("the connection reads");
    }

    /// The next message the server wrote (pings skipped).
    async fn next(&mut self) -> Message {
        loop {
            let wait = std::time::Duration::from_secs(10);
            let message = tokio::time::timeout(wait, self.received.recv())
                .await
                .expect("a message in time")
                .expect("the connection is open");
            if !matches!(message, Message::Ping(_)) {
                return message;
            }
        }
    }

    async fn json(&mut self) -> Value {
        match self.next().await {
            Message::Text(text) => serde_json::from_str(&text).expect("JSON"),
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// A room of auction 1 watched by Alice, on the memory store, run as a
/// task; the state's shutdown sender stays alive with it.
async fn room() -> (Client, Engine<MemoryStore, Hub>) {
    let hub = Hub::default();
    let engine = Engine::new(MemoryStore::new(), hub.clone());
    fund(&engine, &[ALICE], 1_000).await;
    let auction = national_auction(engine.now(), 100, 10);
    let auction = engine.create_auction(auction, None).await.expect("create");
    let (shutdown, stopping) = tokio::sync::watch::channel(false);
    let state = AppState(Arc::new(Shared {
        engine: Arc::new(engine.clone()),
        hub: hub.clone(),
        identity: Arc::new(StaticTokens::new()),
        config: ApiConfig::default(),
        limiter: crate::limit::Limiter::new(None),
        observer: Arc::new(crate::NoObserver),
        catalogue: Arc::new(OpenCatalogue),
        shutdown: stopping,
        rendered: super::Rendered::default(),
    }));
    let alice = Actor {
        user: ALICE,
        region: None,
    };
    let (send, from_client) = mpsc::unbounded_channel();
    let (to_client, received) = mpsc::unbounded_channel();
    let room = Room {
        auction: auction.id,
        watch: hub.watch(auction.id, Some(ALICE)),
    };
    let connection = Connection {
        state: state.clone(),
        viewer: Some(alice),
        socket: Channels {
            from_client,
            to_client,
        },
        room: Some(room),
        seq: 0,
        held: None,
        last_write: None,
        behind: false,
    };
    let first = engine
        .auction(auction.id, state.recent_bids())
        .await
        .expect("a view");
    tokio::spawn(async move {
        connection.run(Some(first)).await;
        drop(shutdown);
    });
    (Client { send, received }, engine)
}

#[tokio::test]
async fn a_room_sends_its_snapshot_answers_a_bid_and_relays_its_event() {
    let (mut client, _engine) = room().await;
    let snapshot = client.json().await;
    assert_eq!(
        (snapshot["type"].as_str(), snapshot["seq"].as_u64()),
        (Some("snapshot"), Some(0))
    );
    client.text(json!({"type": "ping"}));
    assert_eq!(client.json().await["type"], "pong");
    client.text(json!({"type": "bid", "amount": "100", "request_id": "r-1"}));
    // The answer and the event, in either order of arrival here.
    let (first, second) = (client.json().await, client.json().await);
    let mut kinds = [first["type"].clone(), second["type"].clone()];
    kinds.sort_by_key(|kind| kind.to_string());
    assert_eq!(
        kinds,
        [json!("bid_result"), json!("event")],
        "{first} {second}"
    );
    let result = if first["type"] == "bid_result" {
        first
    } else {
        second
    };
    assert_eq!(result["request_id"], "r-1");
    assert_eq!(result["auction"]["leader"], ALICE.0);
}

#[tokio::test]
async fn bad_messages_get_errors_and_a_binary_frame_closes_the_room() {
    let (mut client, _engine) = room().await;
    client.json().await; // the snapshot
    client
        .send
        .send(Ok(Message::Text("{not json".into())))
        .expect("sent");
    assert_eq!(client.json().await["code"], "invalid_message");
    client.text(json!({"type": "bid", "amount": "50", "request_id": "low"}));
    assert_eq!(client.json().await["code"], "bid_too_low");
    client
        .send
        .send(Ok(Message::Binary(vec![1, 2].into())))
        .expect("sent");
    match client.next().await {
        Message::Close(Some(frame)) => assert_eq!(frame.code, 1003),
        other => panic!("expected a close frame, got {other:?}"),
    }
}
