//! The example server as a newcomer uses it: sign up, top up, create an
//! auction and bid (HTTP and WebSocket with the session cookie), the
//! closer settles it, log out; data survives a restart; `--demo` seeds.

mod access;
mod catalogue;
mod fuzz;
#[path = "../common/process.rs"]
mod process;

use std::time::Duration;

use futures_util::StreamExt;
use neighborbid_server::{start, Config, LocalArea, Server};
use process::Process;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

fn config(path: &std::path::Path, demo: bool) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("an address"),
        database_url: format!("sqlite://{}", path.display()),
        demo,
        session_hours: 24,
        close_every_ms: 50,
        log_json: false,
        redis_url: None,
        redis_prefix: "neighborbid".into(),
        fan_out_local: false,
        secure_cookies: false,
        rate_limit: 20,
        local_area: LocalArea::Neighbourhood,
        no_end_early: false,
        ending_soon_secs: 600,
        idempotency_secs: 86_400,
        keep_closed_events_secs: 0,
        images_dir: path.with_extension("images"),
        max_image_bytes: 2 * 1024 * 1024,
        ws_write_delay_ms: 0,
    }
}

const HOUR: chrono::TimeDelta = chrono::TimeDelta::hours(1);

struct Browser {
    base: String,
    client: Client,
}

impl Browser {
    fn new(server: &Server) -> Browser {
        Browser::at(server.address)
    }

    fn at(address: std::net::SocketAddr) -> Browser {
        Browser {
            base: format!("http://{address}"),
            client: Client::builder()
                .cookie_store(true)
                .build()
                .expect("a client"),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("an answer");
        let status = response.status();
        let text = response.text().await.expect("a body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn sign_up(&self, username: &str, region: &str) -> Value {
        let (status, body) = self
            .post(
                "/auth/signup",
                json!({"username": username, "password": "correct horse", "region": region}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    async fn top_up(&self, amount: &str) {
        let (status, body) = self
            .post("/api/me/wallet/deposits", json!({ "amount": amount }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    /// Puts up a national auction ending after `ends_in`; returns its id.
    async fn sell(&self, title: &str, start: &str, unit: &str, ends_in: chrono::TimeDelta) -> i64 {
        let ends_at = chrono::Utc::now() + ends_in;
        let (status, auction) = self
            .post(
                "/api/auctions",
                json!({"title": title, "scope": {"kind": "national"}, "start_price": start,
                "policy": {"increment": {"kind": "fixed", "unit": unit}}, "ends_at": ends_at}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{auction}");
        auction["id"].as_i64().expect("an id")
    }
}

async fn wait_for_status(browser: &Browser, auction: i64, wanted: &str) -> Value {
    for _ in 0..200 {
        let (_, body) = browser.get(&format!("/api/auctions/{auction}")).await;
        if body["auction"]["status"] == wanted {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("auction {auction} never became {wanted}");
}

#[tokio::test]
async fn a_newcomer_signs_up_tops_up_sells_bids_and_the_closer_settles() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("site.db");
    let server = start(config(&path, false))
        .await
        .expect("the server starts");
    let mina = Browser::new(&server);
    let jun = Browser::new(&server);

    let (status, page) = mina.get("/").await;
    assert_eq!(status, StatusCode::OK);
    let page = page.as_str().expect("HTML");
    for needle in [
        "<title>NeighborBid</title>",
        "/api/auctions",
        "/auth/",
        "/live",
        "min_next_bid",
        "buy-now",
    ] {
        assert!(page.contains(needle), "the page uses {needle}");
    }
    assert_eq!(
        mina.get("/healthz").await,
        (
            StatusCode::OK,
            json!({"status": "ok", "closer": {"stuck": []}})
        )
    );

    let signed_up = mina.sign_up("mina", "seoul/mapo/mangwon").await;
    assert!(
        !signed_up.to_string().contains("correct horse"),
        "no password in answers"
    );
    let mina_id = signed_up["account"]["id"].as_i64().expect("an id");
    let jun_signup = jun.sign_up("jun", "seoul/mapo/mangwon").await;
    let old_token = jun_signup["token"].as_str().expect("a token").to_owned();
    let bad = [
        (
            json!({"username": "mina", "password": "correct horse", "region": "seoul/mapo/mangwon"}),
            StatusCode::CONFLICT,
            "username_taken",
        ),
        (
            json!({"username": "x", "password": "correct horse", "region": "seoul/mapo/mangwon"}),
            StatusCode::BAD_REQUEST,
            "invalid_username",
        ),
        (
            json!({"username": "newbie", "password": "short", "region": "seoul/mapo/mangwon"}),
            StatusCode::BAD_REQUEST,
            "invalid_password",
        ),
        (
            json!({"username": "newbie", "password": "correct horse", "region": "atlantis"}),
            StatusCode::BAD_REQUEST,
            "invalid_region",
        ),
        (
            json!({"username": "newbie", "password": "correct horse", "admin": true}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
    ];
    for (body, status, code) in bad {
        let (got, answer) = Browser::new(&server).post("/auth/signup", body).await;
        assert_eq!((got, answer["code"].as_str()), (status, Some(code)));
    }
    let (status, wrong) = Browser::new(&server)
        .post(
            "/auth/login",
            json!({"username": "mina", "password": "wrong password"}),
        )
        .await;
    assert_eq!(
        (status, wrong["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_credentials"))
    );

    for browser in [&mina, &jun] {
        browser.top_up("50000").await;
    }
    let ends_in = chrono::TimeDelta::seconds(3);
    let auction = mina.sell("Rice cooker", "10000", "1000", ends_in).await;

    // Jun bids over the WebSocket, signed in by his session cookie.
    let mut socket = live(server.address, auction, &old_token).await;
    send_bid(&mut socket, "12000", "jun-1").await;
    let result = next_message(&mut socket, |m| m["type"] == "bid_result").await;
    assert_eq!(result["auction"]["current_price"], "12000");
    // Its event follows the answer (published while the socket's task was
    // busy answering).
    let event = next_message(&mut socket, |m| m["type"] == "event").await;
    assert_eq!(event["seq"], result["seq"]);
    let (status, own) = mina
        .post(
            &format!("/api/auctions/{auction}/bids"),
            json!({"amount": "13000"}),
        )
        .await;
    assert_eq!(
        (status, own["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("seller_cannot_bid"))
    );

    // The closer settles it after its end.
    let settled = wait_for_status(&jun, auction, "sold").await;
    assert_eq!(settled["auction"]["leader"], jun_signup["account"]["id"]);
    let (_, wallet) = mina.get("/api/me/wallet").await;
    assert_eq!(wallet["wallet"]["balance"], "62000");
    let (_, wallet) = jun.get("/api/me/wallet").await;
    assert_eq!(
        (
            wallet["wallet"]["balance"].as_str(),
            wallet["wallet"]["locked"].as_str()
        ),
        (Some("38000"), Some("0"))
    );

    let (_, metrics) = mina.get("/metrics").await;
    let metrics = metrics.as_str().expect("text");
    assert!(
        metrics.contains("neighborbid_bids_total{outcome=\"accepted\"} 1"),
        "{metrics}"
    );
    assert!(metrics
        .contains("neighborbid_bids_total{outcome=\"rejected\",code=\"seller_cannot_bid\"} 1"));
    assert!(metrics.contains("neighborbid_auctions_closed_total 1"));
    assert!(metrics.contains("neighborbid_websockets_open 1"));
    assert!(
        !metrics.contains("neighborbid_relay"),
        "no relay without Redis"
    );
    let delivered = metrics
        .lines()
        .find_map(|line| line.strip_prefix("neighborbid_events_delivered_total "))
        .and_then(|count| count.parse::<u64>().ok());
    assert!(
        delivered >= Some(1),
        "the bid's event was counted: {metrics}"
    );

    // Logging out ends the session everywhere it is used.
    let (status, _) = jun.post("/auth/logout", json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(jun.get("/auth/me").await.0, StatusCode::UNAUTHORIZED);
    let (status, expired) = Browser::new(&server)
        .client
        .get(format!("http://{}/api/me/wallet", server.address))
        .bearer_auth(&old_token)
        .send()
        .await
        .map(|r| (r.status(), r))
        .expect("an answer");
    let expired: Value = expired.json().await.expect("JSON");
    assert_eq!(
        (status, expired["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("session_expired"))
    );

    // Stopping closes the WebSocket with "going away"; the data stays.
    server.stop().await;
    let mut code = None;
    while let Ok(Some(frame)) = tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
        if let Ok(Message::Close(frame)) = frame {
            code = frame.map(|frame| frame.code);
            break;
        }
    }
    assert_eq!(code, Some(CloseCode::Away));
    let again = start(config(&path, false)).await.expect("restarts");
    let browser = Browser::new(&again);
    let (status, _) = browser
        .post(
            "/auth/login",
            json!({"username": "mina", "password": "correct horse"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, mine) = browser.get("/api/me/auctions").await;
    assert_eq!(mine["items"][0]["id"], auction);
    assert_eq!(mine["items"][0]["seller"], mina_id);
    again.stop().await;
}

#[tokio::test]
async fn demo_seeds_an_empty_database_once() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("demo.db");
    let server = start(config(&path, true))
        .await
        .expect("starts with --demo");
    let browser = Browser::new(&server);
    let (_, listed) = browser.get("/api/auctions?status=open").await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(4));
    let bids: Vec<&Value> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|a| &a["bid_count"])
        .collect();
    assert_eq!(
        bids.iter().filter(|count| **count == 1).count(),
        3,
        "{bids:?}"
    );
    let (status, _) = browser
        .post(
            "/auth/login",
            json!({"username": "mina", "password": "demo-password"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
    let again = start(config(&path, true)).await.expect("restarts");
    let (_, listed) = Browser::new(&again).get("/api/auctions").await;
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(4),
        "nothing added twice"
    );
    again.stop().await;
}

#[tokio::test]
async fn an_auction_the_closer_cannot_settle_is_reported_and_holds_up_no_other() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("site.db");
    let server = start(config(&path, false))
        .await
        .expect("the server starts");
    let (jun, seoyeon, mina) = (
        Browser::new(&server),
        Browser::new(&server),
        Browser::new(&server),
    );
    let jun_id = jun.sign_up("jun", "seoul/mapo/mangwon").await["account"]["id"].clone();
    seoyeon.sign_up("seoyeon", "seoul/mapo/mangwon").await;
    mina.sign_up("mina", "seoul/mapo/mangwon").await;
    jun.top_up("1").await;
    mina.top_up("1000").await;
    // Jun's wallet as no deposit could make it: too full to take a sale.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("the site's database");
    sqlx::query("UPDATE wallets SET balance = '1000000000000000000' WHERE user_id = ?1")
        .bind(jun_id.as_i64().expect("an id"))
        .execute(&db)
        .await
        .expect("update");
    let stuck = jun
        .sell("Desk", "100", "10", chrono::TimeDelta::seconds(2))
        .await;
    let other = seoyeon
        .sell("Lamp", "100", "10", chrono::TimeDelta::seconds(3))
        .await;
    for auction in [stuck, other] {
        let (status, body) = mina
            .post(
                &format!("/api/auctions/{auction}/bids"),
                json!({"amount": "100"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    wait_for_status(&mina, other, "sold").await;
    let (status, health) = mina.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    let listed = &health["closer"]["stuck"];
    assert_eq!(listed[0]["auction_id"], stuck, "{health}");
    assert!(listed[0]["failures"].as_u64() >= Some(1), "{health}");
    assert_eq!(listed[0]["error"], "wallet balance limit exceeded");
    let (_, auction) = mina.get(&format!("/api/auctions/{stuck}")).await;
    assert_eq!(auction["auction"]["status"], "open", "left as it was");
    let metrics = mina
        .client
        .get(format!("{}/metrics", mina.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("\nneighborbid_auctions_stuck 1\n"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn idempotency_keys_are_forgotten_after_the_configured_time() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = Config {
        idempotency_secs: 3,
        ..config(&dir.path().join("site.db"), false)
    };
    let server = start(config).await.expect("the server starts");
    let mina = Browser::new(&server);
    mina.sign_up("mina", "seoul/mapo/mangwon").await;
    let top_up = || async {
        let response = mina
            .client
            .post(format!("{}/api/me/wallet/deposits", mina.base))
            .header("Idempotency-Key", "top-up-1")
            .json(&json!({ "amount": "100" }))
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), StatusCode::CREATED);
        let entry: Value = response.json().await.expect("JSON");
        entry["balance_after"]
            .as_str()
            .expect("a balance")
            .to_owned()
    };
    assert_eq!(top_up().await, "100");
    assert_eq!(top_up().await, "100", "a retry within the time replays");
    // Carried out again once the key is forgotten: three seconds, and the
    // sweep's next pass.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while top_up().await == "100" {
        assert!(
            std::time::Instant::now() < deadline,
            "the key was never forgotten"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, wallet) = mina.get("/api/me/wallet").await;
    assert_eq!(wallet["wallet"]["balance"], "200", "{wallet}");
    server.stop().await;
}

#[tokio::test]
async fn closed_auctions_events_are_forgotten_after_the_configured_time() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("site.db");
    let config = Config {
        keep_closed_events_secs: 1,
        ..config(&path, false)
    };
    let server = start(config).await.expect("the server starts");
    let (seller, bidder) = (Browser::new(&server), Browser::new(&server));
    seller.sign_up("seller", "seoul/mapo/mangwon").await;
    bidder.sign_up("bidder", "seoul/mapo/mangwon").await;
    bidder.top_up("500").await;
    let ended = seller.sell("Desk", "100", "10", HOUR).await;
    let open = seller.sell("Lamp", "100", "10", HOUR).await;
    for id in [ended, open] {
        let (status, bid) = bidder
            .post(
                &format!("/api/auctions/{id}/bids"),
                json!({"amount": "100"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{bid}");
    }
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("the site's database");
    let events = |id: i64| {
        let db = db.clone();
        async move {
            let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE auction_id = ?")
                .bind(id)
                .fetch_one(&db)
                .await
                .expect("count");
            count
        }
    };
    assert_eq!(events(ended).await, 1, "the bid's event");
    let (status, body) = seller
        .post(&format!("/api/auctions/{ended}/end"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while events(ended).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the ended auction's events were never forgotten"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(events(open).await, 1, "an open auction keeps its events");
    let (_, auction) = seller.get(&format!("/api/auctions/{ended}")).await;
    assert_eq!(auction["auction"]["status"], "sold", "{auction}");
    assert_eq!(
        auction["bids"].as_array().map(Vec::len),
        Some(1),
        "{auction}"
    );
    db.close().await;
    server.stop().await;
}

#[tokio::test]
async fn on_postgres_accounts_and_bids_work_the_same() {
    let database = neighborbid_sqlx::testing::TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = Config {
        database_url: database.url().to_owned(),
        ..config(&dir.path().join("unused.db"), false)
    };
    let server = start(config).await.expect("starts on Postgres");
    let (seller, bidder) = (Browser::new(&server), Browser::new(&server));
    seller.sign_up("seller", "seoul/mapo/mangwon").await;
    bidder.sign_up("bidder", "seoul/mapo/hapjeong").await;
    bidder.top_up("500").await;
    let id = seller.sell("Desk", "100", "10", HOUR).await;
    let (status, bid) = bidder
        .post(
            &format!("/api/auctions/{id}/bids"),
            json!({"amount": "120"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{bid}");
    let (_, wallet) = bidder.get("/api/me/wallet").await;
    assert_eq!(
        (
            wallet["wallet"]["balance"].as_str(),
            wallet["wallet"]["locked"].as_str()
        ),
        (Some("380"), Some("120"))
    );
    let (status, _) = bidder.post("/auth/logout", json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(bidder.get("/auth/me").await.0, StatusCode::UNAUTHORIZED);
    // Text Postgres cannot hold (NUL) is refused before it reaches it.
    let (status, answer) = bidder
        .post(
            "/auth/login",
            json!({"username": "bid\u{0}der", "password": "correct horse"}),
        )
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_credentials"))
    );
    let (status, answer) = seller
        .post(
            &format!("/site/auctions/{id}/questions"),
            json!({"body": "nul\u{0}here"}),
        )
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_question"))
    );
    // Postgres times decisions; health shows this process's offset from it.
    let (_, health) = bidder.get("/healthz").await;
    let offset = health["clock_offset_ms"].as_i64().expect("an offset");
    assert!(offset.abs() < 5_000, "same machine, same clock: {health}");
    server.stop().await;
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// An auction's live socket on `address`, signed in with `token`, past its
/// snapshot.
async fn live(address: std::net::SocketAddr, auction: i64, token: &str) -> Socket {
    let url = format!("ws://{address}/api/auctions/{auction}/live");
    let mut request = url.into_client_request().expect("a request");
    let cookie = format!("nb_session={token}").parse().expect("a header");
    request.headers_mut().insert("cookie", cookie);
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connects");
    next_message(&mut socket, |message| message["type"] == "snapshot").await;
    socket
}

async fn send_bid(socket: &mut Socket, amount: &str, request_id: &str) {
    let bid = json!({"type": "bid", "amount": amount, "request_id": request_id});
    futures_util::SinkExt::send(socket, Message::Text(bid.to_string().into()))
        .await
        .expect("sent");
}

/// The next message that `wanted` accepts, skipping others.
async fn next_message(socket: &mut Socket, wanted: impl Fn(&Value) -> bool) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message within 10 s")
            .expect("the socket is open")
            .expect("a frame");
        if let Message::Text(text) = frame {
            let message: Value = serde_json::from_str(&text).expect("JSON");
            if wanted(&message) {
                return message;
            }
        }
    }
}

#[tokio::test]
async fn two_processes_on_postgres_and_redis_share_live_auctions() {
    let database = neighborbid_sqlx::testing::TestDatabase::create().await;
    let redis = neighborbid_redis::testing::TestRedis::connect().await;
    let env = [
        ("NEIGHBORBID_DATABASE_URL", database.url()),
        ("NEIGHBORBID_REDIS_URL", &redis.config().url),
        ("NEIGHBORBID_REDIS_PREFIX", &redis.config().prefix),
    ];
    let first = Process::spawn(&env).await;
    let second = Process::spawn(&env).await;

    let seller = Browser::at(first.address);
    seller.sign_up("seller", "seoul/mapo/mangwon").await;
    let (alice, bob) = (Browser::at(first.address), Browser::at(second.address));
    let alice_token = alice.sign_up("alice", "seoul/mapo/hapjeong").await["token"].clone();
    let bob_token = bob.sign_up("bob", "seoul/mapo/yeonnam").await["token"].clone();
    for bidder in [&alice, &bob] {
        bidder.top_up("1000").await;
    }
    let id = seller.sell("Turntable", "100", "10", HOUR).await;
    let token = |value: &Value| value.as_str().expect("a token").to_owned();
    let mut alice_socket = live(first.address, id, &token(&alice_token)).await;
    let mut bob_socket = live(second.address, id, &token(&bob_token)).await;
    redis
        .wait_for_subscribers(neighborbid_core::AuctionId(id), 2)
        .await;

    // Alice bids through process 1; Bob's page on process 2 shows it.
    let (status, bid) = alice
        .post(
            &format!("/api/auctions/{id}/bids"),
            json!({"amount": "120"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{bid}");
    let seen = next_message(&mut bob_socket, |m| m["type"] == "event").await;
    assert_eq!(
        (seen["seq"].as_u64(), seen["public"][0]["amount"].as_str()),
        (Some(1), Some("120"))
    );

    // Bob outbids over his socket on process 2; Alice, on process 1, is
    // told she was outbid.
    send_bid(&mut bob_socket, "130", "bob-1").await;
    let outbid = next_message(&mut alice_socket, |m| m["seq"] == 2).await;
    assert_eq!(outbid["type"], "event");
    assert_eq!(outbid["private"][0]["event"]["type"], "outbid");
    assert_eq!(outbid["private"][0]["event"]["price"], "130");

    let (_, health) = Browser::at(second.address).get("/healthz").await;
    assert_eq!(health["redis"], "connected");
    // Each process relayed its own bid's event right after its commit (the
    // count follows the publish, so it may lag the event a moment). The
    // recovery path may take one too if a stall held the marking past the
    // grace period, so only its presence is checked.
    for process in [&first, &second] {
        let relayed = [
            "neighborbid_relay_events_total{path=\"after_commit\"} 1",
            "neighborbid_relay_queue_full_total 0",
            "neighborbid_relay_failed_total 0",
            "neighborbid_redis_connected 1",
        ];
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let metrics = loop {
            let (_, metrics) = Browser::at(process.address).get("/metrics").await;
            let metrics = metrics.as_str().expect("text").to_owned();
            if relayed
                .iter()
                .all(|line| metrics.lines().any(|l| l == *line))
            {
                break metrics;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{relayed:?} in {metrics}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let recovery = "neighborbid_relay_events_total{path=\"recovery\"} ";
        assert!(
            metrics.lines().any(|l| l.starts_with(recovery)),
            "{metrics}"
        );
    }
    first.terminate().await;
    second.terminate().await;
}

#[tokio::test]
async fn sigterm_under_load_loses_no_acknowledged_bid() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("site.db");
    let url = format!("sqlite://{}", path.display());
    let server = Process::spawn(&[("NEIGHBORBID_DATABASE_URL", &url)]).await;
    let seller = Browser::at(server.address);
    seller.sign_up("seller", "seoul/mapo/mangwon").await;
    let id = seller.sell("Bicycle", "100", "1", HOUR).await;
    let mut bidders = Vec::new();
    for name in ["bidder1", "bidder2", "bidder3", "bidder4"] {
        let bidder = Browser::at(server.address);
        bidder.sign_up(name, "seoul/mapo/hapjeong").await;
        bidder.top_up("1000000").await;
        bidders.push(bidder);
    }

    // Each bidder bids the minimum it last saw until the server is gone,
    // keeping the id of every bid the server acknowledged.
    let bidding: Vec<_> = bidders
        .into_iter()
        .map(|bidder| {
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                let path = format!("{}/api/auctions/{id}", bidder.base);
                loop {
                    let Ok(response) = bidder.client.get(&path).send().await else {
                        return acknowledged;
                    };
                    let Ok(auction) = response.json::<Value>().await else {
                        return acknowledged;
                    };
                    let amount = auction["auction"]["min_next_bid"].clone();
                    let response = bidder
                        .client
                        .post(format!("{path}/bids"))
                        .json(&json!({ "amount": amount }))
                        .send()
                        .await;
                    let Ok(response) = response else {
                        return acknowledged;
                    };
                    if response.status() == StatusCode::CREATED {
                        let Ok(body) = response.json::<Value>().await else {
                            return acknowledged;
                        };
                        acknowledged.push(body["bid"]["id"].as_i64().expect("a bid id"));
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.terminate().await;
    let mut acknowledged = Vec::new();
    for task in bidding {
        acknowledged.extend(task.await.expect("a bidder"));
    }
    assert!(
        !acknowledged.is_empty(),
        "bids were acknowledged before the stop"
    );

    let restarted = start(config(&path, false)).await.expect("restarts");
    let (_, bids) = Browser::new(&restarted)
        .get(&format!("/api/auctions/{id}/bids?limit=500"))
        .await;
    let stored: Vec<i64> = bids["items"]
        .as_array()
        .expect("bids")
        .iter()
        .map(|bid| bid["id"].as_i64().expect("an id"))
        .collect();
    for bid in &acknowledged {
        assert!(stored.contains(bid), "acknowledged bid {bid} was lost");
    }
    println!(
        "{} bids acknowledged before SIGTERM, all stored",
        acknowledged.len()
    );
    restarted.stop().await;
}

#[tokio::test]
async fn the_session_cookie_is_http_only_and_secure_when_asked() {
    let dir = tempfile::tempdir().expect("a temp dir");
    for secure in [false, true] {
        let path = dir.path().join(format!("cookies-{secure}.db"));
        let server = start(Config {
            secure_cookies: secure,
            ..config(&path, false)
        })
        .await
        .expect("starts");
        let response = Client::new()
            .post(format!("http://{}/auth/signup", server.address))
            .json(&json!({"username": "mina", "password": "correct horse", "region": "seoul/mapo/mangwon"}))
            .send()
            .await
            .expect("an answer");
        let cookie = response.headers()["set-cookie"]
            .to_str()
            .expect("text")
            .to_owned();
        assert!(cookie.starts_with("nb_session="), "{cookie}");
        assert!(cookie.contains("; HttpOnly; SameSite=Lax"), "{cookie}");
        assert_eq!(cookie.ends_with("; Secure"), secure, "{cookie}");
        server.stop().await;
    }
}

#[tokio::test]
async fn the_page_cannot_be_framed_and_runs_only_its_own_script() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let server = start(config(&dir.path().join("site.db"), false))
        .await
        .expect("the server starts");
    let browser = Browser::new(&server);
    for path in ["/", "/healthz", "/api/auctions"] {
        let response = browser
            .client
            .get(format!("{}{path}", browser.base))
            .send()
            .await
            .expect("an answer");
        let header = |name: &str| {
            let value = response.headers().get(name);
            value
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let policy = header("content-security-policy");
        for directive in [
            "default-src 'none'",
            "frame-ancestors 'none'",
            "script-src 'sha256-",
            "connect-src 'self'",
        ] {
            assert!(policy.contains(directive), "{path}: {policy}");
        }
        assert!(!policy.contains("unsafe"), "{policy}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("referrer-policy"), "same-origin", "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
    }
    server.stop().await;
}

/// Password hashing runs beside the async workers: the site answers while
/// log-ins hash. Past five failures an account must wait (429 with
/// `Retry-After`), even with the right password; other accounts need not.
#[tokio::test]
async fn failed_log_ins_are_throttled_and_hashing_never_stalls_the_site() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let server = start(config(&dir.path().join("site.db"), false))
        .await
        .expect("the server starts");
    let (mina, jun) = (Browser::new(&server), Browser::new(&server));
    mina.sign_up("mina", "seoul/mapo/mangwon").await;
    jun.sign_up("jun", "seoul/mapo/mangwon").await;
    let log_in = |browser: &Browser, password: &str| {
        let request = browser
            .client
            .post(format!("{}/auth/login", browser.base))
            .json(&json!({"username": "mina", "password": password}));
        async move { request.send().await.expect("an answer") }
    };
    let guesses: Vec<_> = (0..5)
        .map(|n| tokio::spawn(log_in(&mina, &format!("wrong guess {n}"))))
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, _) = jun.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    let hashing = guesses.iter().filter(|guess| !guess.is_finished()).count();
    assert_eq!(
        hashing, 5,
        "the site answered while every guess was hashing"
    );
    for guess in guesses {
        let answer = guess.await.expect("the guess");
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    }

    let throttled = log_in(&mina, "correct horse").await;
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = throttled.headers()["retry-after"]
        .to_str()
        .expect("text")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let body: Value = throttled.json().await.expect("JSON");
    assert_eq!(body["code"], "too_many_attempts");
    let (status, _) = jun
        .post(
            "/auth/login",
            json!({"username": "jun", "password": "correct horse"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "another account is not held up");
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let (status, _) = mina
        .post(
            "/auth/login",
            json!({"username": "mina", "password": "correct horse"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "after the wait, the password works");
    server.stop().await;
}

#[tokio::test]
async fn a_refusal_before_the_body_is_read_announces_the_close() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let server = start(config(&dir.path().join("site.db"), false))
        .await
        .expect("the server starts");
    let browser = Browser::new(&server);
    let upload = |path: &str| {
        browser
            .client
            .post(format!("{}{path}", browser.base))
            .header("content-type", "image/png")
            .body(vec![0u8; 100_000])
            .send()
    };
    // The site's own route and the API's both say so.
    for path in ["/site/auctions/1/images", "/api/auctions/1/bids"] {
        let answer = upload(path).await.expect("an answer");
        assert!(answer.status().is_client_error(), "{path}");
        assert_eq!(answer.headers()["connection"], "close", "{path}");
    }
    let (status, _) = browser.get("/healthz").await;
    assert_eq!(status, StatusCode::OK, "a new connection serves on");
    server.stop().await;
}

#[tokio::test]
async fn a_log_written_to_a_file_or_pipe_has_no_colour_codes() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let url = format!("sqlite://{}", dir.path().join("site.db").display());
    let server = process::Process::spawn_with(&["--database-url", &url], &[], "info").await;
    let log = server.terminate_with_logs().await;
    assert!(log.contains("listening"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "escape sequences in the log: {log:?}"
    );
}
