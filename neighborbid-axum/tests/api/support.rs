//! A real server on port 0 and real HTTP and WebSocket clients.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures_util::{SinkExt, StreamExt};
use neighborbid_axum::{Actor, Api, ApiConfig, Shutdown, StaticTokens};
use neighborbid_core::{
    AuctionFilter, AuctionId, Currency, Engine, EngineConfig, Hub, ManualClock, MemoryStore, Page,
    Region, UserId,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

/// The users every test server knows: (token, id, region).
pub(crate) const USERS: [(&str, i64, &str); 4] = [
    ("seller", 1, "mangwon"),
    ("alice", 2, "mangwon"),
    ("bob", 3, "mangwon"),
    ("carol", 4, "hapjeong"),
];

pub(crate) struct TestServer {
    pub(crate) base: String,
    pub(crate) engine: Engine<MemoryStore, Hub>,
    pub(crate) hub: Hub,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) shutdown: Shutdown,
    pub(crate) http: reqwest::Client,
}

/// An API answer: status and JSON body (`Null` when empty).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: Value,
}

impl Answer {
    pub(crate) fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

impl TestServer {
    /// A server without rate limiting.
    pub(crate) async fn start() -> TestServer {
        TestServer::with_config(ApiConfig {
            rate_limit: None,
            ..ApiConfig::default()
        })
        .await
    }

    pub(crate) async fn with_config(config: ApiConfig) -> TestServer {
        TestServer::build(config, Currency::default()).await
    }

    /// A server without rate limiting whose engine uses `currency`.
    pub(crate) async fn with_currency(currency: Currency) -> TestServer {
        let config = ApiConfig {
            rate_limit: None,
            ..ApiConfig::default()
        };
        TestServer::build(config, currency).await
    }

    async fn build(config: ApiConfig, currency: Currency) -> TestServer {
        let hub = Hub::new(64);
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let engine = Engine::with_config(
            MemoryStore::new(),
            hub.clone(),
            EngineConfig {
                clock: clock.clone(),
                currency,
                ..EngineConfig::default()
            },
        );
        let tokens = StaticTokens::new();
        for (token, id, region) in USERS {
            let actor = Actor {
                user: UserId(id),
                region: Some(Region::new(region)),
            };
            tokens.insert(token, actor);
        }
        let mut api = Api::new(engine.clone(), hub.clone(), tokens).config(config);
        let shutdown = api.shutdown_handle();
        TestServer {
            base: serve(api.router()).await,
            engine,
            hub,
            clock,
            shutdown,
            http: reqwest::Client::new(),
        }
    }

    /// Sends a request with an optional bearer token, idempotency key and
    /// JSON body.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        answer(request.send().await.expect("the server answers")).await
    }

    pub(crate) async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.call(Method::GET, path, token, None, None).await
    }

    pub(crate) async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(token), None, Some(body))
            .await
    }

    /// Deposits `amount` for the user of `token`.
    pub(crate) async fn deposit(&self, token: &str, amount: &str) {
        let answer = self
            .post("/me/wallet/deposits", token, json!({ "amount": amount }))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    }

    /// A national auction by the seller, ending in an hour, with the
    /// fields of `extra` in place of the defaults.
    pub(crate) async fn create(&self, extra: Value) -> i64 {
        self.create_as("seller", extra).await
    }

    /// The same, listed by the user of `token`.
    pub(crate) async fn create_as(&self, token: &str, extra: Value) -> i64 {
        let mut body = json!({
            "title": "Vintage bicycle",
            "scope": {"kind": "national"},
            "start_price": "100",
            "policy": {"increment": {"kind": "fixed", "unit": "10"}},
            "ends_at": self.clock_now() + chrono::TimeDelta::hours(1),
        });
        for (field, value) in extra.as_object().expect("an object") {
            body[field] = value.clone();
        }
        let answer = self.post("/auctions", token, body).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        answer.body["id"].as_i64().expect("an id")
    }

    pub(crate) fn clock_now(&self) -> chrono::DateTime<Utc> {
        self.engine.now()
    }

    /// `(balance, locked)` of the user of `token`, over the API.
    pub(crate) async fn balance(&self, token: &str) -> (String, String) {
        let answer = self.get("/me/wallet", Some(token)).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        let wallet = &answer.body["wallet"];
        (
            wallet["balance"].as_str().expect("balance").to_owned(),
            wallet["locked"].as_str().expect("locked").to_owned(),
        )
    }

    /// Opens the auction's room as the user of `token` (or anonymously).
    pub(crate) async fn ws(&self, auction: i64, token: Option<&str>) -> WsClient {
        self.socket(&format!("/auctions/{auction}/live"), token)
            .await
    }

    /// Opens the bidder's socket of the user of `token`.
    pub(crate) async fn bidder_ws(&self, token: &str) -> WsClient {
        self.socket("/me/bids/live", Some(token)).await
    }

    /// The HTTP status of an anonymous WebSocket upgrade at `path` that the
    /// server refuses (it panics if the socket opens).
    pub(crate) async fn refused_upgrade(&self, path: &str) -> StatusCode {
        let url = format!("{}{path}", self.base.replacen("http", "ws", 1));
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status(),
            other => panic!("expected an HTTP refusal at {path}, got {other:?}"),
        }
    }

    /// Opens the WebSocket at `path` as the user of `token` (or
    /// anonymously).
    async fn socket(&self, path: &str, token: Option<&str>) -> WsClient {
        let url = format!("{}{path}", self.base.replacen("http", "ws", 1));
        let mut request = url.into_client_request().expect("a request");
        if let Some(token) = token {
            let value = format!("Bearer {token}").parse().expect("a header");
            request.headers_mut().insert("authorization", value);
        }
        WsClient::connect(request).await
    }

    /// Everything a request could change: wallets with their history and
    /// holds, auctions with their bids, and committed events.
    pub(crate) async fn everything(&self) -> Value {
        let mut wallets = Vec::new();
        for (_, id, _) in USERS {
            let view = self
                .engine
                .wallet(UserId(id), Page::first(500))
                .await
                .expect("wallet");
            wallets.push(serde_json::to_value(view).expect("json"));
        }
        let auctions = self
            .engine
            .list_auctions(&AuctionFilter::default(), Page::first(500))
            .await
            .expect("auctions");
        let mut rooms = Vec::new();
        for auction in auctions {
            let view = self
                .engine
                .auction(auction.id, Page::first(500))
                .await
                .expect("auction");
            let events = self
                .engine
                .events_after(AuctionId(auction.id.0), 0, 500)
                .await
                .expect("events");
            rooms.push(json!({ "view": view, "events": events }));
        }
        json!({ "wallets": wallets, "auctions": rooms })
    }
}

/// Serves `api` under `/api` on a port of its own and returns its base URL.
pub(crate) async fn serve(api: axum::Router) -> String {
    let app = axum::Router::new().nest("/api", api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a port");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/api")
}

pub(crate) async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
    };
    Answer {
        status,
        headers,
        body,
    }
}

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) struct WsClient {
    pub(crate) stream: Stream,
    /// Messages read while looking for another kind, in arrival order.
    pending: VecDeque<Value>,
}

/// What a test waits for at most.
pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

impl WsClient {
    /// Opens the WebSocket that `request` (a URL, or a request with
    /// headers) names.
    pub(crate) async fn connect(
        request: impl tokio_tungstenite::tungstenite::client::IntoClientRequest + Unpin,
    ) -> WsClient {
        let (stream, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("the WebSocket connects");
        WsClient {
            stream,
            pending: VecDeque::new(),
        }
    }

    /// The next JSON message from the socket (pings are answered and
    /// skipped).
    async fn read(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.stream.next())
                .await
                .expect("a message in time")
                .expect("the socket is open")
                .expect("a valid frame");
            match frame {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    }

    /// The first message that `wanted` accepts; the others stay queued for
    /// later searches.
    pub(crate) async fn take(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        if let Some(index) = self.pending.iter().position(&wanted) {
            return self.pending.remove(index).expect("present");
        }
        loop {
            let message = self.read().await;
            if wanted(&message) {
                return message;
            }
            self.pending.push_back(message);
        }
    }

    /// The next message of `kind`.
    pub(crate) async fn next_of(&mut self, kind: &str) -> Value {
        self.take(|message| message["type"] == kind).await
    }

    /// The next event whose first public fact is of `kind`.
    pub(crate) async fn event_of(&mut self, kind: &str) -> Value {
        self.take(|message| message["type"] == "event" && message["public"][0]["type"] == kind)
            .await
    }

    /// The answer to a bid: the next `bid_result` or `error`.
    pub(crate) async fn answer(&mut self) -> Value {
        self.take(|message| message["type"] == "bid_result" || message["type"] == "error")
            .await
    }

    /// Whether no message (other than pings) arrives within `wait`.
    pub(crate) async fn quiet_for(&mut self, wait: Duration) -> bool {
        if !self.pending.is_empty() {
            return false;
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return true,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(_) => return false,
            }
        }
    }

    pub(crate) async fn send(&mut self, message: Value) {
        self.send_raw(Message::Text(message.to_string().into()))
            .await;
    }

    pub(crate) async fn send_raw(&mut self, message: Message) {
        self.stream.send(message).await.expect("sent");
    }

    /// Reads until the server closes; returns the close code.
    pub(crate) async fn close_code(&mut self) -> Option<CloseCode> {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.stream.next())
                .await
                .expect("closed in time");
            match frame {
                Some(Ok(Message::Close(frame))) => return frame.map(|frame| frame.code),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }
}
