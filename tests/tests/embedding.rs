//! A host application as a new developer builds one from the docs: its own
//! axum routes and identity (a gateway's `X-User-Id` header), SQLite, the
//! API nested at `/api`, the engine's closer, and a live room, driven over
//! HTTP and WebSocket from listing to a settled sale. Public API only.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, State};
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use neighborbid_axum::{async_trait, Actor, Api, ApiError, Identity, SignedIn};
use neighborbid_core::{Deposit, Engine, Hub, Money, UserId};
use neighborbid_sqlx::SqliteStore;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Users as the gateway in front of the host names them.
struct GatewayHeader;

#[async_trait]
impl Identity for GatewayHeader {
    async fn identify(&self, request: &Parts) -> Result<Option<Actor>, ApiError> {
        let Some(value) = request.headers.get("x-user-id") else {
            return Ok(None);
        };
        let id = value.to_str().ok().and_then(|id| id.parse().ok());
        let user = id.ok_or_else(ApiError::unauthorized)?;
        Ok(Some(Actor {
            user: UserId(user),
            region: None,
        }))
    }
}

/// The host's state for its own routes.
#[derive(Clone)]
struct Host {
    engine: Engine<SqliteStore, Hub>,
    identity: Arc<dyn Identity>,
}

impl FromRef<Host> for Arc<dyn Identity> {
    fn from_ref(host: &Host) -> Self {
        host.identity.clone()
    }
}

/// The host's own route: a payment provider confirmed a top-up.
async fn top_up(
    State(host): State<Host>,
    SignedIn(me): SignedIn,
    Json(amount): Json<Money>,
) -> Result<Json<Value>, ApiError> {
    let deposit = Deposit {
        user: me.user,
        amount,
    };
    let entry = host.engine.deposit(deposit, None).await?;
    Ok(Json(json!({ "balance": entry.balance_after })))
}

const PATIENCE: Duration = Duration::from_secs(15);

type Room =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The room's next JSON message (pings skipped).
async fn next(room: &mut Room) -> Value {
    loop {
        let frame = tokio::time::timeout(PATIENCE, room.next())
            .await
            .expect("a message in time")
            .expect("the room is open")
            .expect("a frame");
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text).expect("JSON");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_app_lists_sells_and_settles_over_http_and_websocket() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(dir.path().join("host.db"))
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    let hub = Hub::default();
    let engine = Engine::new(store, hub.clone());
    let identity: Arc<dyn Identity> = Arc::new(GatewayHeader);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let shutdown = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };

    let api = Api::new(engine.clone(), hub, identity.clone());
    let app = Router::new()
        .route("/top-up", post(top_up))
        .route(
            "/hello",
            get(|SignedIn(me): SignedIn| async move { format!("hello {}", me.user) }),
        )
        .with_state(Host {
            engine: engine.clone(),
            identity,
        })
        .nest("/api", api.router_with_shutdown(shutdown(stopped.clone())));
    let closer = engine.clone();
    let closing = tokio::spawn({
        let stopped = shutdown(stopped.clone());
        async move { closer.run_closer(Duration::from_millis(50), stopped).await }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("an address");
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });

    let http = reqwest::Client::new();
    let base = format!("http://{address}");
    let call = |user: i64, path: &str, body: Option<Value>| {
        let mut request = match &body {
            Some(body) => http.post(format!("{base}{path}")).json(body),
            None => http.get(format!("{base}{path}")),
        };
        request = request.header("x-user-id", user.to_string());
        async move {
            let response = request.send().await.expect("an answer");
            let status = response.status().as_u16();
            let text = response.text().await.expect("a body");
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        }
    };
    let (seller, bidder) = (1, 2);

    assert_eq!(call(bidder, "/hello", None).await, (200, json!("hello 2")));
    let (status, balance) = call(bidder, "/top-up", Some(json!("500"))).await;
    assert_eq!((status, balance), (200, json!({"balance": "500"})));
    let ends_at = chrono::Utc::now() + chrono::TimeDelta::seconds(2);
    let listing = json!({"title": "Oak desk", "scope": {"kind": "national"}, "start_price": "100",
        "policy": {"increment": {"kind": "fixed", "unit": "10"}}, "ends_at": ends_at});
    let (status, auction) = call(seller, "/api/auctions", Some(listing)).await;
    assert_eq!(status, 201, "{auction}");
    let id = auction["id"].as_i64().expect("an id");

    let mut room = format!("ws://{address}/api/auctions/{id}/live")
        .into_client_request()
        .expect("a request");
    room.headers_mut()
        .insert("x-user-id", bidder.to_string().parse().expect("a header"));
    let (mut room, _) = tokio_tungstenite::connect_async(room)
        .await
        .expect("the room opens");
    assert_eq!(next(&mut room).await["type"], "snapshot");

    let (status, bid) = call(
        bidder,
        &format!("/api/auctions/{id}/bids"),
        Some(json!({"amount": "120"})),
    )
    .await;
    assert_eq!(status, 201, "{bid}");
    let placed = next(&mut room).await;
    assert_eq!(
        (placed["type"].as_str(), placed["seq"].as_u64()),
        (Some("event"), Some(1)),
        "{placed}"
    );

    // The closer settles the sale once the end passes, and the room hears it.
    let sold = next(&mut room).await;
    assert_eq!(
        (sold["type"].as_str(), sold["seq"].as_u64()),
        (Some("event"), Some(2)),
        "{sold}"
    );
    assert_eq!(sold["public"][0]["type"], "sold", "{sold}");
    assert_eq!(sold["public"][0]["price"], "120", "{sold}");
    let (_, wallet) = call(seller, "/api/me/wallet", None).await;
    assert_eq!(wallet["wallet"]["balance"], "120", "{wallet}");
    let (_, wallet) = call(bidder, "/api/me/wallet", None).await;
    assert_eq!(
        (
            wallet["wallet"]["balance"].as_str(),
            wallet["wallet"]["locked"].as_str()
        ),
        (Some("380"), Some("0"))
    );

    stop.send_replace(true);
    let close = tokio::time::timeout(PATIENCE, room.next())
        .await
        .expect("closed in time");
    assert!(matches!(close, Some(Ok(Message::Close(_)))), "{close:?}");
    tokio::time::timeout(PATIENCE, closing)
        .await
        .expect("the closer stops")
        .expect("closer");
    serving.abort();
}
