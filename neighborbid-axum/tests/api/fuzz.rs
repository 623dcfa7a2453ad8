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

/// WebSocket text frames: near misses of `bid` and `ping`, and any JSON.
fn client_message() -> impl Strategy<Value = String> {
    let kind = prop_oneof![
        Just("bid".to_owned()),
        Just("ping".to_owned()),
        Just("Bid".to_owned()),
        "[a-z]{0,6}",
    ];
    let near =
        (kind, amount_text(), json_value(), json_value()).prop_map(|(kind, amount, id, extra)| {
            json!({"type": kind, "amount": amount, "request_id": id, "extra": extra}).to_string()
        });
    prop_oneof![near, json_value().prop_map(|value| value.to_string())]
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
async fn random_websocket_messages_get_answers_and_keep_the_socket() {
    let server = TestServer::start().await;
    server.deposit("alice", "1000").await;
    let auction = server.create(json!({})).await;
    let mut socket = server.ws(auction, Some("alice")).await;
    socket.next_of("snapshot").await;
    for text in draw(client_message(), 300) {
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
        if answer["type"] == "error" {
            assert!(
                answer["code"].as_str().is_some_and(|code| !code.is_empty()),
                "{text:?}: {answer}"
            );
            assert_eq!(server.everything().await, before, "{text:?}");
        }
    }
    // Still open and answering.
    socket.send(json!({"type": "ping"})).await;
    socket.next_of("pong").await;
}
