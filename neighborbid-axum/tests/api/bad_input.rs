//! Malformed and hostile requests: each gets its documented 4xx and code,
//! and the database is unchanged afterwards.

use chrono::TimeDelta;
use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{answer, serve, TestServer};

enum Body {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

struct Case {
    method: Method,
    path: String,
    token: Option<&'static str>,
    key: Option<String>,
    body: Body,
    status: u16,
    code: &'static str,
}

fn case(
    method: Method,
    path: impl Into<String>,
    token: Option<&'static str>,
    body: Body,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        method,
        path: path.into(),
        token,
        key: None,
        body,
        status,
        code,
    }
}

#[tokio::test]
async fn thirty_odd_bad_requests_get_their_4xx_and_change_nothing() {
    let server = TestServer::start().await;
    server.deposit("alice", "1000").await;
    server.deposit("seller", "1000").await;
    let national = server.create(json!({})).await;
    let local = server
        .create(json!({"scope": {"kind": "local", "region": "mangwon"}}))
        .await;
    let bid = format!("/auctions/{national}/bids");
    let ends_at = server.clock_now() + TimeDelta::hours(1);
    let auction = |extra: Value| {
        let mut body = json!({"title": "Lamp", "scope": {"kind": "national"}, "start_price": "5",
            "policy": {"increment": {"kind": "fixed", "unit": "1"}}, "ends_at": ends_at});
        for (field, value) in extra.as_object().expect("object") {
            body[field] = value.clone();
        }
        body
    };
    let mut without_policy = auction(json!({}));
    without_policy
        .as_object_mut()
        .expect("object")
        .remove("policy");
    let json_raw = |text: &str| Body::Raw("application/json", text.as_bytes().to_vec());
    let amount = |text: &str| Body::Json(json!({ "amount": text }));
    let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    let (post, get) = (Method::POST, Method::GET);
    let alice = Some("alice");

    #[rustfmt::skip]
    let mut cases = vec![
        case(post.clone(), &bid, alice, json_raw("{\"amount\":"), 400, "invalid_json"),
        case(post.clone(), &bid, alice, json_raw(&deep), 400, "invalid_body"),
        case(post.clone(), &bid, alice, Body::Raw("application/json", vec![b'"', 0xff, 0xfe, b'"']), 400, "invalid_json"),
        case(post.clone(), &bid, alice, Body::Json(json!({"amount": 120})), 400, "invalid_body"),
        case(post.clone(), &bid, alice, Body::Json(json!([1, 2])), 400, "invalid_body"),
        case(post.clone(), &bid, alice, amount("-5"), 400, "invalid_body"),
        case(post.clone(), &bid, alice, amount("NaN"), 400, "invalid_body"),
        case(post.clone(), &bid, alice, amount(""), 400, "invalid_body"),
        case(post.clone(), &bid, alice, amount("1e3"), 400, "invalid_body"),
        case(post.clone(), &bid, alice, amount("99999999999999999999999999999999"), 400, "invalid_body"),
        case(post.clone(), &bid, alice, amount("0"), 400, "invalid_amount"),
        case(post.clone(), &bid, alice, amount("100.001"), 400, "invalid_amount"),
        case(post.clone(), &bid, alice, Body::Json(json!({"amount": "120", "bidder": 3})), 400, "invalid_body"),
        case(post.clone(), &bid, alice, Body::Json(json!({})), 400, "invalid_body"),
        case(post.clone(), &bid, alice, Body::Json(json!({"amount": "150", "max_amount": "120"})), 400, "max_below_amount"),
        case(post.clone(), &bid, alice, Body::Raw("text/plain", b"{\"amount\":\"120\"}".to_vec()), 415, "unsupported_media_type"),
        case(post.clone(), &bid, alice, Body::Raw("application/json", vec![b' '; 20 * 1024]), 413, "payload_too_large"),
        case(post.clone(), &bid, None, amount("120"), 401, "unauthorized"),
        case(post.clone(), &bid, Some("forged-token"), amount("120"), 401, "unauthorized"),
        case(post.clone(), "/auctions/999/bids", alice, amount("120"), 404, "auction_not_found"),
        case(post.clone(), "/auctions/abc/bids", alice, amount("120"), 400, "invalid_path"),
        case(post.clone(), "/auctions/99999999999999999999/bids", alice, amount("120"), 400, "invalid_path"),
        case(post.clone(), &bid, Some("seller"), amount("120"), 403, "seller_cannot_bid"),
        case(post.clone(), format!("/auctions/{local}/bids"), Some("carol"), amount("120"), 403, "region_not_eligible"),
        case(post.clone(), &bid, alice, amount("50"), 422, "bid_too_low"),
        case(post.clone(), &bid, Some("bob"), amount("120"), 422, "insufficient_funds"),
        case(post.clone(), format!("/auctions/{national}/buy-now"), alice, Body::None, 422, "buy_now_unavailable"),
        case(post.clone(), format!("/auctions/{national}/cancel"), alice, Body::None, 403, "not_seller"),
        case(post.clone(), "/me/wallet/deposits", alice, amount("0"), 400, "invalid_amount"),
        case(post.clone(), "/me/wallet/deposits", alice, amount("-1"), 400, "invalid_body"),
        case(post.clone(), "/me/wallet/deposits", alice, amount("1000000000000001"), 400, "invalid_amount"),
        case(post.clone(), "/me/wallet/deposits", alice, amount("1000000000000000001"), 400, "invalid_body"),
        case(post.clone(), "/me/wallet/deposits", alice, Body::Json(json!({"amount": "5", "user": 3})), 400, "invalid_body"),
        case(post.clone(), "/me/wallet/withdrawals", alice, amount("5000"), 422, "insufficient_funds"),
        case(post.clone(), "/auctions", Some("seller"), Body::Json(auction( json!({"ends_at": server.clock_now() - TimeDelta::hours(1)}), )), 400, "invalid_auction"),
        case(post.clone(), "/auctions", Some("seller"), Body::Json(auction(json!({"title": ""}))), 400, "invalid_auction"),
        case(post.clone(), "/auctions", Some("seller"), Body::Json(auction(json!({"seller": 2}))), 400, "invalid_body"),
        case(post.clone(), "/auctions", Some("seller"), Body::Json(auction(json!({"start_price": "abc"}))), 400, "invalid_body"),
        case(post.clone(), "/auctions", Some("seller"), Body::Json(auction( json!({"policy": {"increment": {"kind": "percent", "percent": "0"}}}), )), 400, "invalid_auction"),
        case(post.clone(), "/auctions", Some("seller"), Body::Json(without_policy), 400, "invalid_body"),
        case(post.clone(), "/auctions", None, Body::Json(auction(json!({}))), 401, "unauthorized"),
        case(get.clone(), "/me/wallet", None, Body::None, 401, "unauthorized"),
        case(get.clone(), "/auctions?status=bogus", None, Body::None, 400, "invalid_query"),
        case(get.clone(), "/auctions?limit=-1", None, Body::None, 400, "invalid_query"),
        case(get.clone(), "/auctions?scope=national&region=mangwon", None, Body::None, 400, "invalid_query"),
        case(get.clone(), "/auctions?user=2", None, Body::None, 400, "invalid_query"),
        case(get.clone(), "/auctions?q=a%00b", None, Body::None, 400, "invalid_query"),
        case(post.clone(), "/auctions", Some("seller"), Body::Json(auction(json!({"title": "a\u{0}b"}))), 400, "invalid_auction"),
        case(get.clone(), format!("/auctions/{national}/live"), None, Body::None, 400, "not_websocket"),
        case(get.clone(), "/me/wallet/../../etc/passwd", alice, Body::None, 404, "not_found"),
        case(Method::DELETE, format!("/auctions/{national}"), alice, Body::None, 405, "method_not_allowed"),
    ];
    for key in ["has space", &"k".repeat(300)] {
        let mut bad_key = case(
            post.clone(),
            "/me/wallet/deposits",
            alice,
            amount("5"),
            400,
            "invalid_idempotency_key",
        );
        bad_key.key = Some(key.to_owned());
        cases.push(bad_key);
    }
    assert!(cases.len() >= 30);

    let before = server.everything().await;
    for case in cases {
        let mut request = server
            .http
            .request(case.method.clone(), format!("{}{}", server.base, case.path));
        if let Some(token) = case.token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = &case.key {
            request = request.header("Idempotency-Key", key);
        }
        request = match case.body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Raw(content_type, bytes) => {
                request.header(CONTENT_TYPE, content_type).body(bytes)
            }
        };
        let got = answer(request.send().await.expect("an answer")).await;
        let what = format!("{} {}", case.method, case.path);
        assert_eq!(
            (got.status.as_u16(), got.code()),
            (case.status, case.code),
            "{what}: {:?}",
            got.body
        );
        assert!(
            got.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: a message"
        );
    }
    assert_eq!(
        server.everything().await,
        before,
        "bad requests changed something"
    );
}

#[tokio::test]
async fn hostile_websocket_messages_get_errors_or_close_codes_and_change_nothing() {
    let server = TestServer::start().await;
    server.deposit("alice", "1000").await;
    let auction = server.create(json!({})).await;
    let before = server.everything().await;

    let mut ws = server.ws(auction, Some("alice")).await;
    ws.next_of("snapshot").await;
    let replies = [
        (json!({"type": "hack"}), "invalid_message"),
        (
            json!({"type": "bid", "amount": "-5", "request_id": "r"}),
            "invalid_message",
        ),
        (
            json!({"type": "bid", "amount": 120, "request_id": "r"}),
            "invalid_message",
        ),
        (
            json!({"type": "bid", "amount": "120", "request_id": "r", "bidder": 3}),
            "invalid_message",
        ),
        (json!({"type": "bid", "amount": "120"}), "invalid_message"),
        (
            json!({"type": "bid", "amount": "120", "request_id": ""}),
            "invalid_request_id",
        ),
        (
            json!({"type": "bid", "amount": "50", "request_id": "low"}),
            "bid_too_low",
        ),
        (
            json!({"type": "bid", "amount": "100.001", "request_id": "precise"}),
            "invalid_amount",
        ),
    ];
    for (message, code) in replies {
        ws.send(message.clone()).await;
        let error = ws.next_of("error").await;
        assert_eq!(error["code"], code, "{message}");
        assert!(error["seq"].is_u64() && error["server_now"].is_string());
    }
    ws.send_raw(Message::Text("{not json".into())).await;
    assert_eq!(ws.next_of("error").await["code"], "invalid_message");
    let limit = neighborbid_axum::WsConfig::default().max_message_bytes;
    ws.send_raw(Message::Text("x".repeat(limit).into())).await;
    let largest = ws.next_of("error").await;
    assert_eq!(largest["code"], "invalid_message", "read at the limit");
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.next_of("pong").await["seq"], 0, "still connected");

    let mut anonymous = server.ws(auction, None).await;
    anonymous
        .send(json!({"type": "bid", "amount": "120", "request_id": "anon"}))
        .await;
    assert_eq!(anonymous.next_of("error").await["code"], "unauthorized");

    ws.send_raw(Message::Binary(vec![1, 2, 3].into())).await;
    assert_eq!(ws.close_code().await, Some(CloseCode::Unsupported));
    let mut big = server.ws(auction, Some("alice")).await;
    big.send_raw(Message::Text("x".repeat(limit + 1).into()))
        .await;
    assert_eq!(big.close_code().await, Some(CloseCode::Size));
    // Beyond the largest frame read at all, the close code is the same.
    for size in [100 * 1024, 1024 * 1024] {
        let mut huge = server.ws(auction, Some("alice")).await;
        huge.send_raw(Message::Text("x".repeat(size).into())).await;
        assert_eq!(huge.close_code().await, Some(CloseCode::Size), "{size}");
    }

    // The room still works for others.
    anonymous.send(json!({"type": "ping"})).await;
    assert_eq!(anonymous.next_of("pong").await["type"], "pong");
    assert_eq!(server.everything().await, before);
}

#[tokio::test]
async fn bids_naming_the_wrong_auction_or_none_are_refused_and_change_nothing() {
    let server = TestServer::start().await;
    server.deposit("alice", "1000").await;
    let auction = server.create(json!({})).await;
    let other = server.create(json!({})).await;
    let before = server.everything().await;

    let status = server.refused_upgrade("/me/bids/live").await;
    assert_eq!(status, 401, "signed in only");

    let mut bidder = server.bidder_ws("alice").await;
    let mut room = server.ws(auction, Some("alice")).await;
    room.next_of("snapshot").await;
    // (in the room?, message, code)
    let cases = [
        (false, json!({"amount": "120"}), "invalid_message"),
        (
            false,
            json!({"auction_id": "lamp", "amount": "120"}),
            "invalid_message",
        ),
        (
            false,
            json!({"auction_id": 999, "amount": "120"}),
            "auction_not_found",
        ),
        (
            true,
            json!({"auction_id": other, "amount": "120"}),
            "invalid_message",
        ),
    ];
    for (n, (in_room, mut message, code)) in cases.into_iter().enumerate() {
        let socket = if in_room { &mut room } else { &mut bidder };
        message["type"] = json!("bid");
        message["request_id"] = json!(format!("r{n}"));
        socket.send(message.clone()).await;
        let error = socket.answer().await;
        assert_eq!(error["code"], code, "{message}: {error}");
    }
    assert_eq!(server.everything().await, before);

    // A room's bid may repeat the room's own auction.
    room.send(json!({"type": "bid", "auction_id": auction, "amount": "120", "request_id": "own"}))
        .await;
    assert_eq!(room.answer().await["type"], "bid_result");
}

/// A catalogue whose filter check panics on a category named `boom`.
struct PanickingCatalogue;

impl neighborbid_axum::Catalogue for PanickingCatalogue {
    fn check_filter(
        &self,
        filter: &neighborbid_core::AuctionFilter,
    ) -> Result<(), neighborbid_axum::ApiError> {
        assert_ne!(filter.category.as_deref(), Some("boom"), "a host bug");
        Ok(())
    }
}

#[tokio::test]
async fn a_panicking_handler_answers_500_internal_and_the_server_goes_on() {
    use neighborbid_axum::{Api, StaticTokens};
    use neighborbid_core::{Engine, Hub, MemoryStore};

    let hub = Hub::default();
    let engine = Engine::new(MemoryStore::new(), hub.clone());
    let api = Api::new(engine, hub, StaticTokens::new()).catalogue(PanickingCatalogue);
    let base = serve(api.router()).await;
    let http = reqwest::Client::new();

    let get = |query: &'static str| http.get(format!("{base}/auctions?{query}")).send();
    let panicked = answer(
        get("category=boom")
            .await
            .expect("an answer, not a dropped connection"),
    )
    .await;
    assert_eq!(panicked.status, 500, "{panicked:?}");
    assert_eq!(panicked.code(), "internal");
    assert_eq!(
        panicked.body["message"], "internal error",
        "no cause leaks out"
    );

    let fine = answer(
        get("category=books")
            .await
            .expect("the server still answers"),
    )
    .await;
    assert_eq!(fine.status, 200, "{fine:?}");
}
