//! The WebSocket connection's life: heartbeats, idle clients, falling
//! behind, shutdown.

use std::time::Duration;

use neighborbid_axum::{ApiConfig, WsConfig, CLOSE_IDLE};
use neighborbid_core::{AuctionId, Event, PublicEvent};
use reqwest::StatusCode;
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::{TestServer, WsClient};

/// The API without rate limits, with these WebSocket settings.
fn with_ws(ws: WsConfig) -> ApiConfig {
    ApiConfig {
        rate_limit: None,
        ws,
        ..ApiConfig::default()
    }
}

fn quick_heartbeats() -> ApiConfig {
    with_ws(WsConfig {
        heartbeat: Duration::from_millis(50),
        idle_timeout: Duration::from_millis(300),
        ..WsConfig::default()
    })
}

#[tokio::test]
async fn a_silent_client_is_closed_and_a_live_one_is_kept() {
    let server = TestServer::with_config(quick_heartbeats()).await;
    let auction = server.create(json!({})).await;
    let mut silent = server.ws(auction, None).await;
    let mut silent_bidder = server.bidder_ws("alice").await;
    let mut live = server.ws(auction, None).await;
    // The live client reads (and so answers pings) for well past the
    // idle timeout; the silent one reads nothing meanwhile.
    assert_eq!(live.next_of("snapshot").await["seq"], 0);
    assert!(live.quiet_for(Duration::from_millis(900)).await);
    live.send(json!({"type": "ping"})).await;
    assert_eq!(live.next_of("pong").await["type"], "pong");
    assert_eq!(silent.close_code().await, Some(CloseCode::from(CLOSE_IDLE)));
    let closed = silent_bidder.close_code().await;
    assert_eq!(closed, Some(CloseCode::from(CLOSE_IDLE)));
}

#[tokio::test]
async fn a_client_that_missed_events_gets_a_fresh_snapshot() {
    let server = TestServer::start().await;
    server.deposit("alice", "1000").await;
    let auction = server.create(json!({})).await;
    let mut ws = server.ws(auction, None).await;
    assert_eq!(ws.next_of("snapshot").await["seq"], 0);
    server
        .post(
            &format!("/auctions/{auction}/bids"),
            "alice",
            json!({"amount": "100"}),
        )
        .await;
    assert_eq!(ws.next_of("event").await["seq"], 1);
    // What the Redis subscriber does after a reconnect.
    server.hub.resync_all();
    let snapshot = ws.next_of("snapshot").await;
    assert_eq!(
        (
            snapshot["seq"].as_u64(),
            snapshot["auction"]["current_price"].as_str()
        ),
        (Some(1), Some("100"))
    );
    assert!(snapshot["server_now"].is_string() && snapshot["ends_at"].is_string());
}

#[tokio::test]
async fn shutdown_closes_every_socket_with_going_away() {
    let server = TestServer::start().await;
    let auction = server.create(json!({})).await;
    let mut first = server.ws(auction, None).await;
    let mut second = server.ws(auction, Some("alice")).await;
    let mut bidder = server.bidder_ws("bob").await;
    first.next_of("snapshot").await;
    second.next_of("snapshot").await;
    bidder.send(json!({"type": "ping"})).await;
    bidder.next_of("pong").await;
    server.shutdown.trigger();
    assert_eq!(first.close_code().await, Some(CloseCode::Away));
    assert_eq!(second.close_code().await, Some(CloseCode::Away));
    assert_eq!(bidder.close_code().await, Some(CloseCode::Away));
}

#[tokio::test]
async fn unknown_auctions_are_refused_before_upgrading() {
    let server = TestServer::start().await;
    let status = server.refused_upgrade("/auctions/999/live").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_watcher_behind_gets_every_ready_event_in_order() {
    let server = TestServer::start().await;
    let auction = server.create(json!({})).await;
    let mut ws = server.ws(auction, None).await;
    assert_eq!(ws.next_of("snapshot").await["seq"], 0);
    // Published in one go, more than one write's batch: the connection
    // finds them all ready at once.
    for seq in 1..=60 {
        server.hub.publish(&public_event(auction, seq));
    }
    for seq in 1..=60 {
        assert_eq!(ws.next_of("event").await["seq"], seq);
    }
    assert!(
        ws.quiet_for(Duration::from_millis(100)).await,
        "nothing more, no snapshot"
    );
}

/// An event with no private notices, as another process might publish.
fn public_event(auction: i64, seq: u64) -> Event {
    Event {
        auction_id: AuctionId(auction),
        seq,
        at: chrono::Utc::now(),
        local: false,
        public: vec![PublicEvent::Unsold],
        private: Vec::new(),
    }
}

fn write_delay(delay: Duration) -> ApiConfig {
    with_ws(WsConfig {
        write_delay: delay,
        ..WsConfig::default()
    })
}

#[tokio::test]
async fn an_event_soon_after_a_write_waits_out_the_delay_then_goes_with_the_next() {
    let delay = Duration::from_millis(600);
    let server = TestServer::with_config(write_delay(delay)).await;
    let auction = server.create(json!({})).await;
    let mut ws = server.ws(auction, None).await;
    assert_eq!(ws.next_of("snapshot").await["seq"], 0);
    // Nothing written lately: the first event goes at once.
    server.hub.publish(&public_event(auction, 1));
    assert_eq!(ws.take(|_| true).await["seq"], 1);
    server.hub.publish(&public_event(auction, 2));
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.hub.publish(&public_event(auction, 3));
    assert!(
        ws.quiet_for(Duration::from_millis(300)).await,
        "an event right after a write waits"
    );
    assert_eq!(ws.take(|_| true).await["seq"], 2);
    assert_eq!(ws.take(|_| true).await["seq"], 3);
    // Once the delay has passed since that write, the next goes at once.
    tokio::time::sleep(delay).await;
    server.hub.publish(&public_event(auction, 4));
    let quiet_room = tokio::time::Instant::now();
    assert_eq!(ws.take(|_| true).await["seq"], 4);
    assert!(
        quiet_room.elapsed() < delay / 2,
        "a quiet room's event waited"
    );
}

#[tokio::test]
async fn events_beyond_one_write_do_not_wait_for_another_delay() {
    let delay = Duration::from_secs(1);
    let server = TestServer::with_config(write_delay(delay)).await;
    let auction = server.create(json!({})).await;
    let mut ws = server.ws(auction, None).await;
    assert_eq!(ws.next_of("snapshot").await["seq"], 0);
    server.hub.publish(&public_event(auction, 1));
    assert_eq!(ws.take(|_| true).await["seq"], 1);
    // More than one write takes (32 events), right after a write: all of
    // them have waited their delay once the hold ends.
    for seq in 2..=41 {
        server.hub.publish(&public_event(auction, seq));
    }
    assert_eq!(ws.take(|_| true).await["seq"], 2);
    let first_write_arrived = tokio::time::Instant::now();
    for seq in 3..=41 {
        assert_eq!(ws.take(|_| true).await["seq"], seq);
    }
    assert!(
        first_write_arrived.elapsed() < delay / 2,
        "the events after the first write were held again"
    );
}

/// A server with `delay`, and alice on an auction's socket after bob's
/// first bid on it reached her (at once: nothing had been written yet);
/// with the auction's bids path.
async fn alice_sees_bobs_first_bid(delay: Duration) -> (TestServer, WsClient, String) {
    let server = TestServer::with_config(write_delay(delay)).await;
    server.deposit("alice", "1000").await;
    server.deposit("bob", "1000").await;
    let auction = server.create(json!({})).await;
    let mut alice = server.ws(auction, Some("alice")).await;
    assert_eq!(alice.next_of("snapshot").await["seq"], 0);
    let path = format!("/auctions/{auction}/bids");
    server.post(&path, "bob", json!({"amount": "100"})).await;
    assert_eq!(alice.take(|_| true).await["seq"], 1, "nothing to wait for");
    (server, alice, path)
}

#[tokio::test]
async fn a_held_event_sent_early_with_an_answer_spaces_the_next_write() {
    let delay = Duration::from_secs(3);
    let (server, mut alice, path) = alice_sees_bobs_first_bid(delay).await;
    let first_write = tokio::time::Instant::now();
    server.post(&path, "bob", json!({"amount": "110"})).await;
    assert!(alice.quiet_for(Duration::from_secs(2)).await, "held");
    alice
        .send(json!({"type": "bid", "amount": "120", "request_id": "a1"}))
        .await;
    assert_eq!(alice.take(|_| true).await["seq"], 2);
    let answer = alice.take(|_| true).await;
    assert_eq!(
        (&answer["type"], &answer["seq"]),
        (&json!("bid_result"), &json!(3))
    );
    // Alice's bid's own event waits out the delay from the early write,
    // not from the first one.
    tokio::time::sleep_until(first_write + delay + Duration::from_millis(500)).await;
    assert!(
        alice.quiet_for(Duration::from_millis(300)).await,
        "the event after the early write waits its turn"
    );
    let event = alice.take(|_| true).await;
    assert_eq!(
        (&event["type"], &event["seq"]),
        (&json!("event"), &json!(3))
    );
}

#[tokio::test]
async fn an_answer_is_not_held_and_follows_the_events_held_before_it() {
    // Longer than a test waits for a message: an answer held with the
    // events would fail the test.
    let (server, mut alice, path) = alice_sees_bobs_first_bid(Duration::from_secs(60)).await;
    server.post(&path, "bob", json!({"amount": "110"})).await;
    assert!(
        alice.quiet_for(Duration::from_millis(500)).await,
        "bob's second bid's event is held"
    );
    alice
        .send(json!({"type": "bid", "amount": "120", "request_id": "a1"}))
        .await;
    let first = alice.take(|_| true).await;
    assert_eq!(
        (&first["type"], &first["seq"]),
        (&json!("event"), &json!(2))
    );
    let second = alice.take(|_| true).await;
    assert_eq!(
        (&second["type"], &second["seq"], &second["request_id"]),
        (&json!("bid_result"), &json!(3), &json!("a1"))
    );
}

/// A snapshot carries the auction's latest bids, as many as the API's
/// `recent_bids` setting says, newest first.
#[tokio::test]
async fn a_snapshot_shows_as_many_latest_bids_as_the_setting_says() {
    let server = TestServer::with_config(ApiConfig {
        rate_limit: None,
        recent_bids: 2,
        ..ApiConfig::default()
    })
    .await;
    server.deposit("alice", "1000").await;
    server.deposit("bob", "1000").await;
    let auction = server.create(json!({})).await;
    for (bidder, amount) in [("alice", "100"), ("bob", "110"), ("alice", "120")] {
        let path = format!("/auctions/{auction}/bids");
        let answer = server.post(&path, bidder, json!({"amount": amount})).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    }
    let mut ws = server.ws(auction, None).await;
    let snapshot = ws.next_of("snapshot").await;
    let amounts: Vec<&str> = snapshot["bids"]
        .as_array()
        .expect("bids")
        .iter()
        .map(|bid| bid["amount"].as_str().expect("an amount"))
        .collect();
    assert_eq!(amounts, ["120", "110"]);
}

/// Creates an auction on `engine` and opens its room on the API at `base`.
async fn watch_a_new_auction(
    engine: &neighborbid_core::Engine<neighborbid_core::MemoryStore, neighborbid_core::Hub>,
    base: &str,
) -> (neighborbid_core::AuctionId, WsClient) {
    let auction = neighborbid_core::testkit::national_auction(engine.now(), 100, 10);
    let auction = engine
        .create_auction(auction, None)
        .await
        .expect("create")
        .id;
    let url = format!("{}/auctions/{auction}/live", base.replacen("http", "ws", 1));
    (auction, WsClient::connect(url).await)
}

/// The API built exactly as the crate documentation shows, with no
/// shutdown handle taken: a room stays open after its snapshot and gets
/// the events of bids.
#[tokio::test]
async fn the_documented_minimal_set_up_keeps_rooms_open() {
    use neighborbid_axum::{Actor, Api, StaticTokens};
    use neighborbid_core::testkit::{self, bid_of, ALICE};
    use neighborbid_core::{Engine, Hub, MemoryStore, UserId};

    let hub = Hub::default();
    let engine = Engine::new(MemoryStore::new(), hub.clone());
    let tokens = StaticTokens::new();
    tokens.insert(
        "alice-token",
        Actor {
            user: UserId(1),
            region: None,
        },
    );

    let api = Api::new(engine.clone(), hub, tokens);
    let base = crate::support::serve(api.router()).await;

    testkit::fund(&engine, &[ALICE], 1_000).await;
    let (auction, mut room) = watch_a_new_auction(&engine, &base).await;
    assert_eq!(room.next_of("snapshot").await["seq"], 0);
    engine
        .place_bid(bid_of(auction, ALICE, 100), None)
        .await
        .expect("the bid");
    let event = room.next_of("event").await;
    assert_eq!(event["seq"], 1, "{event}");
}

/// `router_with_shutdown`: the rooms close with 1001 once the host's
/// signal completes, and not before.
#[tokio::test]
async fn rooms_close_when_the_hosts_shutdown_signal_completes() {
    use neighborbid_axum::{Api, StaticTokens};
    use neighborbid_core::{Engine, Hub, MemoryStore};

    let hub = Hub::default();
    let engine = Engine::new(MemoryStore::new(), hub.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let api = Api::new(engine.clone(), hub, StaticTokens::new());
    let router = api.router_with_shutdown(async move {
        let _ = stopped.await;
    });
    let base = crate::support::serve(router).await;
    let (_, mut room) = watch_a_new_auction(&engine, &base).await;
    room.next_of("snapshot").await;
    assert!(
        room.quiet_for(Duration::from_millis(200)).await,
        "open until told"
    );
    stop.send(()).expect("the router waits");
    assert_eq!(room.close_code().await, Some(CloseCode::Away));
}
