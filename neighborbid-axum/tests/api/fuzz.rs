//! Random input: amounts, request bodies and WebSocket messages drawn by
//! proptest. Nothing panics or answers 5xx; every input gets a typed error
//! (a 4xx with a `code`) or a valid result, and refused input changes
//! nothing. Case counts are sized for CI (a few seconds).

use neighborbid_core::Money;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::support::TestServer;

/// Strings that look like amounts, and some that do not.
fn amount_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[-+]?[0-9]{0,22}(\\.[0-9]{0,22})?([eE][-+]?[0-9]{1,3})?",
        "[0-9 ._,-]{0,12}",
        any::<String>(),
        Just("NaN".to_owned()),
        Just("١٢٣".to_owned()),
    ]
}

/// Any JSON value, nested a little.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|x| json!(x)),
        amount_text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Request bodies: near misses of the real shapes, any JSON, and raw text.
fn body() -> impl Strategy<Value = String> {
    let near = (json_value(), json_value(), amount_text()).prop_map(|(max, extra, amount)| {
        json!({"amount": amount, "max_amount": max, "start_price": extra}).to_string()
    });
    prop_oneof![
        near,
        json_value().prop_map(|value| value.to_string()),
        any::<String>(),
    ]
}

/// WebSocket messages: near misses of `bid` and `ping`, and any JSON. A
/// near miss's `auction_id`, when it has one, is `"this"` (the auction the
/// test bids on, filled in by [`for_auction`]), an unknown one, or anything.
fn client_message() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        Just("bid".to_owned()),
        Just("ping".to_owned()),
        Just("Bid".to_owned()),
        "[a-z]{0,6}",
    ];
    let auction = prop_oneof![Just(json!("this")), Just(json!(999)), json_value()];
    // Plausible amounts and request ids too, so that some bids are taken.
    let amount = prop_oneof![(100..400u32).prop_map(|n| n.to_string()), amount_text()];
    let request_id = prop_oneof!["[a-z0-9-]{1,12}".prop_map(Value::from), json_value()];
    let near = (
        kind,
        amount,
        request_id,
        prop::option::of(auction),
        prop::option::of(json_value()),
    )
        .prop_map(|(kind, amount, id, auction, extra)| {
            let mut message = json!({"type": kind, "amount": amount, "request_id": id});
            if let Some(auction) = auction {
                message["auction_id"] = auction;
            }
            if let Some(extra) = extra {
                message["extra"] = extra;
            }
            message
        });
    prop_oneof![near, json_value()]
}

/// `message` as sent to bid on `auction`.
fn for_auction(mut message: Value, auction: i64) -> String {
    if message.get("auction_id") == Some(&json!("this")) {
        message["auction_id"] = json!(auction);
    }
    message.to_string()
}

/// `count` values drawn from `strategy` (async tests cannot run inside
/// proptest's closure, so the cases are drawn first).
fn draw<S: Strategy>(strategy: S, count: usize) -> Vec<S::Value> {
    let mut runner = TestRunner::deterministic();
    (0..count)
        .map(|_| strategy.new_tree(&mut runner).expect("a value").current())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// An amount parses to a value within bounds that prints back to
    /// itself, or is refused with a typed error.
    #[test]
    fn amounts_parse_or_are_refused(text in amount_text()) {
        if let Ok(money) = text.parse::<Money>() {
            prop_assert!(money >= Money::ZERO && money <= Money::MAX);
            prop_assert_eq!(money.to_string().parse::<Money>().ok(), Some(money));
        }
    }
}

#[tokio::test]
async fn random_request_bodies_get_typed_answers_and_change_nothing_when_refused() {
    let server = TestServer::start().await;
    server.deposit("alice", "1000").await;
    let auction = server.create(json!({})).await;
    let routes = [
        format!("/auctions/{auction}/bids"),
        "/me/wallet/deposits".to_owned(),
        "/me/wallet/withdrawals".to_owned(),
        "/auctions".to_owned(),
    ];
    for (index, body) in draw(body(), 400).into_iter().enumerate() {
        let path = &routes[index % routes.len()];
        let before = server.everything().await;
        let response = server
            .http
            .request(Method::POST, format!("{}{path}", server.base))
            .bearer_auth("alice")
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("the server answers");
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert!(
            status.is_success() || status.is_client_error(),
            "{status} for {body:?} on {path}: {answer}"
        );
        if status.is_client_error() {
            assert!(
                answer["code"].as_str().is_some_and(|code| !code.is_empty()),
                "no code for {body:?} on {path}: {answer}"
            );
            assert_eq!(server.everything().await, before, "{body:?} on {path}");
        }
    }
}

#[tokio::test]
async fn random_websocket_messages_get_answers_and_keep_the_sockets() {
    let server = TestServer::start().await;
    server.deposit("alice", "1000").await;
    let auction = server.create(json!({})).await;
    let mut room = server.ws(auction, Some("alice")).await;
    room.next_of("snapshot").await;
    let mut bidder = server.bidder_ws("alice").await;
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for (n, message) in draw(client_message(), 400).into_iter().enumerate() {
        let socket = if n % 2 == 0 { &mut room } else { &mut bidder };
        let text = for_auction(message, auction);
        let before = server.everything().await;
        socket.send_raw(Message::Text(text.clone().into())).await;
        let answer = socket
            .take(|message| {
                matches!(
                    message["type"].as_str(),
                    Some("error" | "bid_result" | "pong")
                )
            })
            .await;
        let kind = answer["type"].as_str().unwrap_or_default().to_owned();
        if kind == "error" {
            assert!(
                answer["code"].as_str().is_some_and(|code| !code.is_empty()),
                "{text:?}: {answer}"
            );
            assert_eq!(server.everything().await, before, "{text:?}");
        }
        *kinds.entry(kind).or_default() += 1;
    }
    // The draws reach every kind of answer, bids taken among them.
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    // Both still open and answering.
    for socket in [&mut room, &mut bidder] {
        socket.send(json!({"type": "ping"})).await;
        socket.next_of("pong").await;
    }
}
