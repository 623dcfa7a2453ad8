//! The example server as a newcomer uses it: sign up, top up, create an
//! auction and bid (HTTP and WebSocket with the session cookie), the
//! closer settles it, log out; data survives a restart; `--demo` seeds.

use std::time::Duration;

use futures_util::StreamExt;
use neighborbid_server::{start, Config, Server};
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
    }
}

struct Browser {
    base: String,
    client: Client,
}

impl Browser {
    fn new(server: &Server) -> Browser {
        Browser {
            base: format!("http://{}", server.address),
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
        (StatusCode::OK, json!({"status": "ok"}))
    );

    let signed_up = mina.sign_up("mina", "mangwon").await;
    assert!(
        !signed_up.to_string().contains("correct horse"),
        "no password in answers"
    );
    let mina_id = signed_up["account"]["id"].as_i64().expect("an id");
    let jun_signup = jun.sign_up("jun", "mangwon").await;
    let old_token = jun_signup["token"].as_str().expect("a token").to_owned();
    let bad = [
        (
            json!({"username": "mina", "password": "correct horse", "region": "mangwon"}),
            StatusCode::CONFLICT,
            "username_taken",
        ),
        (
            json!({"username": "x", "password": "correct horse", "region": "mangwon"}),
            StatusCode::BAD_REQUEST,
            "invalid_username",
        ),
        (
            json!({"username": "newbie", "password": "short", "region": "mangwon"}),
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
        let (status, _) = browser
            .post("/api/me/wallet/deposits", json!({"amount": "50000"}))
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let ends_at = chrono::Utc::now() + chrono::TimeDelta::seconds(3);
    let (status, auction) = mina
        .post(
            "/api/auctions",
            json!({
                "title": "Rice cooker", "scope": {"kind": "national"}, "start_price": "10000",
                "policy": {"increment": {"kind": "fixed", "unit": "1000"}}, "ends_at": ends_at
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{auction}");
    let auction = auction["id"].as_i64().expect("an id");

    // Jun bids over the WebSocket, signed in by his session cookie.
    let url = format!("ws://{}/api/auctions/{auction}/live", server.address);
    let mut request = url.into_client_request().expect("a request");
    let cookie = format!("nb_session={old_token}").parse().expect("a header");
    request.headers_mut().insert("cookie", cookie);
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connects");
    let bid = json!({"type": "bid", "amount": "12000", "request_id": "jun-1"}).to_string();
    futures_util::SinkExt::send(&mut socket, Message::Text(bid.into()))
        .await
        .expect("sent");
    let mut result = Value::Null;
    while result["type"] != "bid_result" {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("in time");
        if let Some(Ok(Message::Text(text))) = frame {
            result = serde_json::from_str(&text).expect("JSON");
        }
    }
    assert_eq!(result["auction"]["current_price"], "12000");
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
async fn on_postgres_accounts_and_bids_work_the_same() {
    let database = neighborbid_sqlx::testing::TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = Config {
        database_url: database.url().to_owned(),
        ..config(&dir.path().join("unused.db"), false)
    };
    let server = start(config).await.expect("starts on Postgres");
    let (seller, bidder) = (Browser::new(&server), Browser::new(&server));
    seller.sign_up("seller", "mangwon").await;
    bidder.sign_up("bidder", "hapjeong").await;
    let (status, _) = bidder
        .post("/api/me/wallet/deposits", json!({"amount": "500"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let ends_at = chrono::Utc::now() + chrono::TimeDelta::hours(1);
    let (_, auction) = seller
        .post(
            "/api/auctions",
            json!({"title": "Desk", "scope": {"kind": "national"}, "start_price": "100",
            "policy": {"increment": {"kind": "fixed", "unit": "10"}}, "ends_at": ends_at}),
        )
        .await;
    let id = auction["id"].as_i64().expect("an id");
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
    server.stop().await;
}
