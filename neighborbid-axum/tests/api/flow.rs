//! Whole scenarios: money, bids over both paths, watchers, idempotency,
//! caching, limits and policies.

use std::time::Duration;

use chrono::TimeDelta;
use neighborbid_axum::{ApiConfig, RateLimit};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{Answer, TestServer, WsClient};

fn bids(auction: i64) -> String {
    format!("/auctions/{auction}/bids")
}

#[tokio::test]
async fn deposit_create_bid_outbid_buy_now_and_settle_with_balances_over_the_api() {
    let server = TestServer::start().await;
    server.deposit("alice", "1000").await;
    server.deposit("bob", "1000").await;
    let auction = server.create(json!({})).await;

    let mut alice_ws = server.ws(auction, Some("alice")).await;
    let snapshot = alice_ws.next_of("snapshot").await;
    assert_eq!(
        (
            snapshot["seq"].as_u64(),
            snapshot["auction"]["min_next_bid"].as_str()
        ),
        (Some(0), Some("100"))
    );

    // Alice bids over HTTP...
    let first = server
        .post(&bids(auction), "alice", json!({"amount": "120"}))
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    assert_eq!(first.body["auction"]["current_price"], "120");
    let event = alice_ws.next_of("event").await;
    assert_eq!(event["seq"], 1);
    assert_eq!(event["public"][0]["type"], "bid_placed");
    assert_eq!(server.balance("alice").await, ("880".into(), "120".into()));

    // ...Bob over the WebSocket, and Alice hears she was outbid.
    let mut bob_ws = server.ws(auction, Some("bob")).await;
    assert_eq!(bob_ws.next_of("snapshot").await["seq"], 1);
    bob_ws
        .send(json!({"type": "bid", "amount": "130", "request_id": "bob-1"}))
        .await;
    let result = bob_ws.next_of("bid_result").await;
    assert_eq!(
        (result["request_id"].as_str(), result["seq"].as_u64()),
        (Some("bob-1"), Some(2))
    );
    assert_eq!(result["auction"]["current_price"], "130");
    let outbid = alice_ws.next_of("event").await;
    assert_eq!(outbid["seq"], 2);
    assert_eq!(outbid["private"][0]["event"]["type"], "outbid");
    assert_eq!(server.balance("alice").await, ("1000".into(), "0".into()));
    assert_eq!(server.balance("bob").await, ("870".into(), "130".into()));

    // Bob buys a second item outright.
    let second = server.create(json!({"buy_now_price": "300"})).await;
    let bought = server
        .post(&format!("/auctions/{second}/buy-now"), "bob", json!({}))
        .await;
    assert_eq!(bought.status, StatusCode::OK, "{bought:?}");
    assert_eq!(bought.body["status"], "bought_now");
    assert_eq!(server.balance("bob").await, ("570".into(), "130".into()));

    // The first auction ends; Bob wins and pays his bid.
    server.clock.advance(TimeDelta::hours(2));
    let closed = server.engine.close_due_auctions(10).await.expect("settles");
    assert_eq!(closed.len(), 1);
    let sold = bob_ws.event_of("sold").await;
    assert_eq!(
        sold["public"][0],
        json!({"type": "sold", "winner": 3, "price": "130"})
    );
    assert_eq!(
        sold["private"][0]["event"],
        json!({"type": "won", "price": "130"})
    );
    let detail = server.get(&format!("/auctions/{auction}"), None).await;
    assert_eq!(detail.body["auction"]["status"], "sold");
    assert_eq!(server.balance("bob").await, ("570".into(), "0".into()));
    assert_eq!(server.balance("alice").await, ("1000".into(), "0".into()));
    assert_eq!(server.balance("seller").await, ("430".into(), "0".into()));

    let mine = server.get("/me/bids", Some("bob")).await;
    assert_eq!(mine.body["items"].as_array().map(Vec::len), Some(1));
    let theirs = server.get("/me/auctions", Some("seller")).await;
    assert_eq!(theirs.body["items"].as_array().map(Vec::len), Some(2));
    let history = server.get("/me/wallet?limit=2", Some("bob")).await;
    assert_eq!(
        history.body["history"]["items"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(history.body["history"]["next_offset"], 2);
}

async fn events(client: &mut WsClient, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        out.push(client.next_of("event").await);
    }
    out
}

#[tokio::test]
async fn watchers_see_the_same_events_in_order_and_only_their_own_notices() {
    let server = TestServer::start().await;
    for user in ["alice", "bob", "carol"] {
        server.deposit(user, "1000").await;
    }
    let auction = server.create(json!({})).await;
    let mut first = server.ws(auction, None).await;
    let mut second = server.ws(auction, None).await;
    let mut carol = server.ws(auction, Some("carol")).await;
    let mut alice = server.ws(auction, Some("alice")).await;
    let mut bob = server.ws(auction, Some("bob")).await;
    for client in [&mut first, &mut second, &mut carol, &mut alice, &mut bob] {
        assert_eq!(client.next_of("snapshot").await["seq"], 0);
    }

    alice
        .send(json!({"type": "bid", "amount": "100", "request_id": "a1"}))
        .await;
    assert_eq!(alice.next_of("bid_result").await["request_id"], "a1");
    bob.send(json!({"type": "bid", "amount": "110", "request_id": "b1"}))
        .await;
    assert_eq!(bob.next_of("bid_result").await["request_id"], "b1");
    let http = server
        .post(&bids(auction), "alice", json!({"amount": "130"}))
        .await;
    assert_eq!(http.status, StatusCode::CREATED);
    bob.send(json!({"type": "bid", "amount": "140", "max_amount": "200", "request_id": "b2"}))
        .await;
    let with_max = bob.next_of("bid_result").await;
    assert_eq!(
        with_max["auction"]["max_bid"], "200",
        "the leader sees their maximum"
    );
    // Alice's bid is answered at once by Bob's maximum: the price rises,
    // she is told why, and only she is told.
    alice
        .send(json!({"type": "bid", "amount": "150", "request_id": "a2"}))
        .await;
    let refused = alice.next_of("error").await;
    assert_eq!(
        (
            refused["code"].as_str(),
            refused["request_id"].as_str(),
            refused["price"].as_str()
        ),
        (Some("outbid_by_proxy"), Some("a2"), Some("160"))
    );

    let seen = events(&mut first, 5).await;
    assert_eq!(
        seen,
        events(&mut second, 5).await,
        "both watchers see the same"
    );
    let seqs: Vec<u64> = seen.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert!(
        seen.iter().all(|e| e["private"] == json!([])),
        "anonymous: public only"
    );
    assert_eq!(
        seen[4]["public"][0]["auto"], true,
        "the proxy answer is marked"
    );
    for event in &seen {
        assert!(event["public"].to_string().contains("bid_placed"));
    }

    let carols = events(&mut carol, 5).await;
    assert!(
        carols.iter().all(|e| e["private"] == json!([])),
        "carol sees no one's notices"
    );
    let alices = events(&mut alice, 5).await;
    let outbid_at: Vec<u64> = alices
        .iter()
        .filter(|e| e["private"].as_array().is_some_and(|p| !p.is_empty()))
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    assert_eq!(
        outbid_at,
        [2, 4],
        "alice is told exactly when she stops leading"
    );
    let auction_now = server
        .get(&format!("/auctions/{auction}"), Some("alice"))
        .await;
    assert_eq!(
        auction_now.body["auction"]["max_bid"],
        Value::Null,
        "not hers to see"
    );
    assert!(
        first.quiet_for(Duration::from_millis(200)).await,
        "nothing more"
    );
}

#[tokio::test]
async fn replays_with_the_same_key_have_one_effect_and_the_same_response() {
    let server = TestServer::start().await;
    let deposit = |key: &'static str, amount: &'static str| {
        let server = &server;
        async move {
            server
                .call(
                    Method::POST,
                    "/me/wallet/deposits",
                    Some("alice"),
                    Some(key),
                    Some(json!({"amount": amount})),
                )
                .await
        }
    };
    let first = deposit("dep-1", "100").await;
    assert_eq!(first.status, StatusCode::CREATED);
    for _ in 0..3 {
        let again = deposit("dep-1", "100").await;
        assert_eq!((again.status, &again.body), (first.status, &first.body));
    }
    assert_eq!(server.balance("alice").await.0, "100");

    // Concurrently, too.
    let answers = futures_util::future::join_all((0..8).map(|_| deposit("dep-2", "50"))).await;
    assert!(answers
        .iter()
        .all(|a| a.status == StatusCode::CREATED && a.body == answers[0].body));
    assert_eq!(server.balance("alice").await.0, "150");

    // The same key for something else is refused, and changes nothing.
    let conflict = deposit("dep-1", "99").await;
    assert_eq!(
        (conflict.status, conflict.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_conflict")
    );
    assert_eq!(server.balance("alice").await.0, "150");

    // Bids and creations too.
    let auction = server.create(json!({})).await;
    let path = bids(auction);
    let bid = || {
        server.call(
            Method::POST,
            &path,
            Some("alice"),
            Some("bid-1"),
            Some(json!({"amount": "100"})),
        )
    };
    let (one, two) = tokio::join!(bid(), bid());
    assert_eq!((one.status, &one.body), (two.status, &two.body));
    let detail = server.get(&format!("/auctions/{auction}"), None).await;
    assert_eq!(detail.body["auction"]["bid_count"], 1);
    let body = json!({"title": "Lamp", "scope": {"kind": "national"}, "start_price": "5",
        "policy": {"increment": {"kind": "fixed", "unit": "1"}}, "ends_at": server.clock_now() + TimeDelta::hours(1)});
    let create = || {
        server.call(
            Method::POST,
            "/auctions",
            Some("seller"),
            Some("lamp"),
            Some(body.clone()),
        )
    };
    let (one, two) = tokio::join!(create(), create());
    assert_eq!(
        (one.status, one.body["id"].clone()),
        (two.status, two.body["id"].clone())
    );
    let listed = server.get("/me/auctions", Some("seller")).await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(2));

    // A WebSocket bid's request_id is its key: resending it bids once.
    let mut ws = server.ws(auction, Some("bob")).await;
    server.deposit("bob", "500").await;
    for _ in 0..2 {
        ws.send(json!({"type": "bid", "amount": "110", "request_id": "bob-bid"}))
            .await;
        assert_eq!(ws.next_of("bid_result").await["seq"], 2);
    }
    let detail = server.get(&format!("/auctions/{auction}"), None).await;
    assert_eq!(detail.body["auction"]["bid_count"], 2);
}

#[tokio::test]
async fn a_bidders_socket_bids_on_any_auction_and_hears_only_its_answers() {
    let server = TestServer::start().await;
    server.deposit("alice", "1000").await;
    server.deposit("bob", "1000").await;
    let lamp = server.create(json!({})).await;
    let chair = server.create(json!({})).await;
    let mut alice = server.bidder_ws("alice").await;

    let bid = |auction: i64, amount: &str, request: &str| json!({"type": "bid", "auction_id": auction, "amount": amount, "request_id": request});
    alice.send(bid(lamp, "120", "lamp-1")).await;
    let result = alice.answer().await;
    assert_eq!(
        (
            result["type"].as_str(),
            result["request_id"].as_str(),
            result["seq"].as_u64()
        ),
        (Some("bid_result"), Some("lamp-1"), Some(1)),
        "{result}"
    );
    assert_eq!(
        (
            &result["auction"]["id"],
            &result["auction"]["current_price"]
        ),
        (&json!(lamp), &json!("120"))
    );
    alice.send(bid(chair, "100", "chair-1")).await;
    let result = alice.answer().await;
    assert_eq!(
        (&result["auction"]["id"], &result["bid"]["amount"]),
        (&json!(chair), &json!("100")),
        "{result}"
    );
    assert_eq!(server.balance("alice").await, ("780".into(), "220".into()));

    // Bob outbids her on the lamp: a room would tell her, her bidder's
    // socket does not (it carries answers only).
    let outbid = server
        .post(&bids(lamp), "bob", json!({"amount": "130"}))
        .await;
    assert_eq!(outbid.status, StatusCode::CREATED, "{outbid:?}");
    assert!(alice.quiet_for(Duration::from_millis(300)).await);

    // A refusal names the minimum, and the request id is the idempotency
    // key: a resent bid is answered again and bids once.
    alice.send(bid(lamp, "130", "lamp-2")).await;
    let refused = alice.answer().await;
    assert_eq!(
        (
            refused["code"].as_str(),
            refused["min_next_bid"].as_str(),
            refused["request_id"].as_str(),
            refused["seq"].as_u64()
        ),
        (Some("bid_too_low"), Some("140"), Some("lamp-2"), Some(0))
    );
    for _ in 0..2 {
        alice.send(bid(lamp, "140", "lamp-3")).await;
        let result = alice.answer().await;
        assert_eq!(
            (result["request_id"].as_str(), result["seq"].as_u64()),
            (Some("lamp-3"), Some(3)),
            "{result}"
        );
    }
    let detail = server.get(&format!("/auctions/{lamp}"), None).await;
    assert_eq!(detail.body["auction"]["bid_count"], 3);
    assert_eq!(server.balance("alice").await, ("760".into(), "240".into()));
    alice.send(json!({"type": "ping"})).await;
    assert_eq!(alice.next_of("pong").await["seq"], 0);
}

#[tokio::test]
async fn an_unchanged_auction_answers_304_to_its_etag() {
    let server = TestServer::start().await;
    server.deposit("alice", "500").await;
    let auction = server.create(json!({})).await;
    let path = format!("/auctions/{auction}");
    let first = server.get(&path, Some("alice")).await;
    let etag = first.headers["etag"].to_str().expect("an ETag").to_owned();
    let conditional = |etag: String| {
        let request = server
            .http
            .get(format!("{}{path}", server.base))
            .bearer_auth("alice");
        async move {
            request
                .header("if-none-match", etag)
                .send()
                .await
                .expect("an answer")
        }
    };
    let unchanged = conditional(etag.clone()).await;
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(
        unchanged.headers()["etag"].to_str().ok(),
        Some(etag.as_str())
    );

    server
        .post(&bids(auction), "alice", json!({"amount": "100"}))
        .await;
    let changed = conditional(etag.clone()).await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert_ne!(changed.headers()["etag"].to_str().ok(), Some(etag.as_str()));
    // Another viewer sees another body (no maximum), so another tag.
    let other = server.get(&path, Some("bob")).await;
    assert_ne!(other.headers["etag"], changed.headers()["etag"]);
}

#[tokio::test]
async fn a_user_over_the_rate_limit_gets_429_on_both_paths() {
    let server = TestServer::with_config(ApiConfig {
        rate_limit: Some(RateLimit {
            per_second: 1,
            burst: 3,
        }),
        ..ApiConfig::default()
    })
    .await;
    // Ten quick deposits: the burst passes, then 429s that change nothing.
    let mut accepted = 0;
    let mut limited = None;
    for _ in 0..10 {
        let answer = server
            .post("/me/wallet/deposits", "alice", json!({"amount": "100"}))
            .await;
        match answer.status {
            StatusCode::CREATED => accepted += 1,
            _ => limited = Some(answer),
        }
    }
    let limited = limited.expect("some deposits were limited");
    assert_eq!(
        (limited.status, limited.code()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    assert_eq!(limited.headers["retry-after"], "1");
    assert!((3..10).contains(&accepted), "{accepted} accepted");
    assert_eq!(
        server.balance("alice").await.0,
        (accepted * 100).to_string(),
        "reads are never limited"
    );

    let auction = server.create(json!({})).await;
    let mut ws = server.ws(auction, Some("alice")).await;
    let mut codes = Vec::new();
    for n in 0..10 {
        let amount = (100 + 10 * n).to_string();
        ws.send(json!({"type": "bid", "amount": amount, "request_id": format!("bid-{n}")}))
            .await;
        let answer = ws.answer().await;
        codes.push(answer["code"].as_str().unwrap_or("ok").to_owned());
    }
    assert!(codes.iter().any(|code| code == "rate_limited"), "{codes:?}");
    // Others are not affected.
    server.deposit("bob", "500").await;
}

#[tokio::test]
async fn policies_are_created_and_shown_through_the_api() {
    let server = TestServer::start().await;
    server.deposit("alice", "1000").await;
    server.deposit("bob", "1000").await;
    let auction = server
        .create(json!({
            "start_price": "10",
            "buy_now_price": "500",
            "policy": {
                "increment": {"kind": "ladder", "bands": [{"from": "0", "step": "1"}, {"from": "50", "step": "5"}]},
                "reserve_price": "80",
                "close": {"kind": "soft", "window_secs": 300, "extend_by_secs": 600, "max_extensions": 2},
                "buy_now": "until_reserve_met"
            }
        }))
        .await;
    let path = format!("/auctions/{auction}");
    let as_seller = server.get(&path, Some("seller")).await.body["auction"].clone();
    assert_eq!(
        as_seller["policy"]["reserve_price"], "80",
        "the seller sees the reserve"
    );
    let as_alice = server.get(&path, Some("alice")).await.body["auction"].clone();
    assert_eq!(
        as_alice["policy"]["reserve_price"],
        Value::Null,
        "others do not"
    );
    assert_eq!(as_alice["policy"]["close"]["kind"], "soft");
    assert_eq!(
        (
            as_alice["has_reserve"].as_bool(),
            as_alice["reserve_met"].as_bool(),
            as_alice["buy_now_available"].as_bool()
        ),
        (Some(true), Some(false), Some(true)),
        "that a reserve exists is public, its amount is not"
    );

    // A maximum that reaches the reserve: the price jumps to it.
    let bid = server
        .post(
            &bids(auction),
            "alice",
            json!({"amount": "10", "max_amount": "90"}),
        )
        .await;
    assert_eq!(bid.status, StatusCode::CREATED, "{bid:?}");
    let seen = &bid.body["auction"];
    assert_eq!(
        (seen["current_price"].as_str(), seen["max_bid"].as_str()),
        (Some("80"), Some("90"))
    );
    assert_eq!(
        (
            seen["reserve_met"].as_bool(),
            seen["buy_now_available"].as_bool()
        ),
        (Some(true), Some(false))
    );
    assert_eq!(seen["min_next_bid"], "85", "the ladder's upper band");

    // A late bid extends the end.
    let end = server.clock_now() + TimeDelta::hours(1);
    server.clock.advance(TimeDelta::minutes(58));
    let late = server
        .post(&bids(auction), "bob", json!({"amount": "100"}))
        .await;
    assert_eq!(late.status, StatusCode::CREATED, "{late:?}");
    let extended = &late.body["auction"];
    assert_eq!(extended["extensions"], 1);
    let new_end: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(extended["ends_at"].clone()).expect("a time");
    assert!(new_end > end, "{new_end} after {end}");
}

/// Every browse parameter narrows or orders the list as documented, and a
/// seller's early end follows the API's setting.
#[tokio::test]
async fn browse_parameters_filter_and_sort_and_ending_early_follows_the_setting() {
    let server = TestServer::start().await;
    let now = server.clock_now();
    let hours = |n| now + TimeDelta::hours(n);
    let lamp = server
        .create(json!({"start_price": "10", "ends_at": hours(1)}))
        .await;
    let bike = server
        .create(json!({"start_price": "500", "ends_at": hours(3)}))
        .await;
    let chair = server
        .create(json!({"start_price": "50", "ends_at": hours(2),
            "scope": {"kind": "local", "region": "mangwon"}}))
        .await;
    let desk = server
        .create_as("alice", json!({"start_price": "100", "ends_at": hours(4)}))
        .await;
    let gone = server.create(json!({"ends_at": hours(5)})).await;
    let answer = server
        .post(&format!("/auctions/{gone}/cancel"), "seller", json!({}))
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let later = server
        .create(json!({"starts_at": now + TimeDelta::minutes(30), "ends_at": hours(6)}))
        .await;

    let long_text = |n| "a".repeat(n);
    let cases = [
        ("status=cancelled".to_owned(), vec![gone]),
        ("scope=local".to_owned(), vec![chair]),
        (
            "scope=national".to_owned(),
            vec![later, gone, desk, bike, lamp],
        ),
        ("seller=2".to_owned(), vec![desk]),
        (
            "min_price=100&max_price=499".to_owned(),
            vec![later, gone, desk],
        ),
        ("min_price=10&max_price=10".to_owned(), vec![lamp]),
        ("phase=scheduled".to_owned(), vec![later]),
        ("phase=open".to_owned(), vec![desk, chair, bike, lamp]),
        (
            "phase=open&sort=price_asc".to_owned(),
            vec![lamp, chair, desk, bike],
        ),
        (
            "phase=open&sort=price_desc".to_owned(),
            vec![bike, desk, chair, lamp],
        ),
        (
            "phase=open&sort=ending_soonest".to_owned(),
            vec![lamp, chair, bike, desk],
        ),
        (format!("q={}", long_text(200)), vec![]),
    ];
    for (query, expected) in cases {
        let answer = server.get(&format!("/auctions?{query}"), None).await;
        assert_eq!(answer.status, 200, "{query}: {answer:?}");
        let ids: Vec<i64> = answer.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|item| item["id"].as_i64().expect("an id"))
            .collect();
        assert_eq!(ids, expected, "{query}");
    }
    for (query, code) in [
        (
            "min_price=500&max_price=10".to_owned(),
            "invalid_price_range",
        ),
        (format!("q={}", long_text(201)), "invalid_query"),
    ] {
        let answer = server.get(&format!("/auctions?{query}"), None).await;
        assert_eq!(
            (answer.status.as_u16(), answer.code()),
            (400, code),
            "{query}"
        );
    }

    async fn end(server: &TestServer, id: i64) -> Answer {
        let path = format!("/auctions/{id}/end");
        server.post(&path, "seller", json!({})).await
    }
    // Bidding opened with the auction, at the clock's still moment.
    server.clock.advance(TimeDelta::minutes(1));
    let ended = end(&server, lamp).await;
    assert_eq!(ended.status, 200, "{ended:?}");
    let strict = TestServer::with_config(ApiConfig {
        rate_limit: None,
        end_early: false,
        ..ApiConfig::default()
    })
    .await;
    let auction = strict.create(json!({})).await;
    strict.clock.advance(TimeDelta::minutes(1));
    let refused = end(&strict, auction).await;
    assert_eq!(
        (refused.status.as_u16(), refused.code()),
        (403, "end_early_disabled")
    );
}
