//! The load generator over HTTP and WebSocket, against a running example
//! server: bidders post bids as fast as they can, watchers hold live
//! sockets and time each event from its commit to its arrival.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use neighborbid_core::testkit::Latencies;
use reqwest::{Client, StatusCode};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// What to run against the server at `base` (`http://host:port`).
pub(crate) struct HttpLoad {
    pub(crate) base: String,
    pub(crate) hot: bool,
    pub(crate) bidders: usize,
    pub(crate) auctions: usize,
    pub(crate) watchers: usize,
    pub(crate) duration: Duration,
    /// Bids per second from all bidders together; `None`: as fast as they
    /// can.
    pub(crate) bid_rate: Option<f64>,
    /// Bids as HTTP requests, or as messages on each bidder's WebSockets.
    pub(crate) bid_over: BidOver,
}

/// How bidders send their bids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum BidOver {
    /// `POST /api/auctions/{id}/bids`, one request per bid.
    Http,
    /// A `bid` message on the auction's live room socket, keyed by
    /// `request_id`; the bidder also reads the room's events.
    Ws,
    /// A `bid` message naming its auction on the bidder's own socket
    /// (`/api/me/bids/live`): answers only, one socket for every auction.
    BidderWs,
}

/// Auctions a WebSocket bidder holds a socket on in spread mode.
const SOCKETS_PER_BIDDER: usize = 8;

const DEPOSIT: u64 = 1_000_000_000;

/// One bidder's or watcher's findings.
#[derive(Default)]
struct Tally {
    accepted: u64,
    refused: BTreeMap<String, u64>,
    latencies: Latencies,
}

impl HttpLoad {
    /// Runs the load and returns its summary (the same fields as the
    /// in-process run, plus broadcast latency and watcher losses).
    pub(crate) async fn run(&self) -> Value {
        let client = Client::builder()
            .pool_max_idle_per_host(self.bidders.max(1))
            .build()
            .expect("an HTTP client");
        let prefix = format!("lg{:08x}", fastrand::u32(..));
        let seller = self.sign_up(&client, &format!("{prefix}seller")).await;
        let mut bidders = Vec::new();
        for index in 0..self.bidders {
            let token = self.sign_up(&client, &format!("{prefix}b{index}")).await;
            let (status, body) = self
                .post(
                    &client,
                    &token,
                    "/api/me/wallet/deposits",
                    json!({"amount": DEPOSIT.to_string()}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "deposit: {body}");
            bidders.push(token);
        }
        let count = if self.hot { 1 } else { self.auctions.max(1) };
        let mut auctions = Vec::new();
        let ends_at = chrono::Utc::now() + chrono::TimeDelta::hours(2);
        for _ in 0..count {
            let auction = json!({"title": "load", "scope": {"kind": "national"}, "start_price": "10",
                "policy": {"increment": {"kind": "fixed", "unit": "1"}}, "ends_at": ends_at});
            let (status, body) = self.post(&client, &seller, "/api/auctions", auction).await;
            assert_eq!(status, StatusCode::CREATED, "auction: {body}");
            auctions.push(body["id"].as_i64().expect("an auction id"));
        }

        let lost = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (ready, mut connected) = tokio::sync::mpsc::channel(self.watchers.max(1));
        let rss_before = resident_bytes();
        let mut watchers = Vec::new();
        for index in 0..self.watchers {
            let url = format!(
                "{}/api/auctions/{}/live",
                self.base.replacen("http", "ws", 1),
                auctions[index % auctions.len()]
            );
            let (stopped, lost, ready) = (stopped.clone(), lost.clone(), ready.clone());
            watchers.push(tokio::spawn(watch(url, stopped, lost, ready)));
        }
        drop(ready);
        // Every watcher has its snapshot (or failed) before bidding starts.
        while connected.recv().await.is_some() {}
        let rss_per_watcher = rss_before.zip(resident_bytes()).map(|(before, after)| {
            after.saturating_sub(before) as f64 / self.watchers.max(1) as f64 / 1024.0
        });

        let mut channels = Vec::new();
        for token in &bidders {
            channels.push(match self.bid_over {
                BidOver::Http => Channel::Http {
                    client: client.clone(),
                    base: self.base.clone(),
                    token: token.clone(),
                    auctions: auctions.clone(),
                },
                BidOver::Ws => {
                    let mine =
                        fastrand::choose_multiple(auctions.iter().copied(), SOCKETS_PER_BIDDER);
                    Channel::ws(&self.base, token, mine).await
                }
                BidOver::BidderWs => Channel::BidderWs {
                    socket: Box::new(
                        connect(&format!("{}/api/me/bids/live", self.base), token).await,
                    ),
                    auctions: auctions.clone(),
                    sent: 0,
                },
            });
        }
        let pace = self
            .bid_rate
            .map(|rate| Duration::from_secs_f64(self.bidders as f64 / rate.max(0.001)));
        let start = Instant::now();
        let deadline = start + self.duration;
        let tasks: Vec<_> = channels
            .into_iter()
            .map(|channel| tokio::spawn(bid(channel, deadline, pace)))
            .collect();
        let mut bids = Tally::default();
        for task in tasks {
            let tally = task.await.expect("a bidder");
            bids.accepted += tally.accepted;
            for (code, count) in tally.refused {
                *bids.refused.entry(code).or_default() += count;
            }
            bids.latencies.extend(tally.latencies);
        }
        let elapsed = start.elapsed();
        // Let the last events arrive, then close the sockets.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = stop.send(true);
        let mut broadcast = Latencies::default();
        for watcher in watchers {
            broadcast.extend(watcher.await.expect("a watcher"));
        }

        let conserved = self.books_balance(&client, &bidders, &seller).await;
        let mut broadcast_ms = crate::milliseconds(&broadcast);
        broadcast_ms["deliveries"] = json!(broadcast.len());
        let decided = bids.accepted + bids.refused.values().sum::<u64>();
        json!({
            "via": "http",
            "bid_over": clap::ValueEnum::to_possible_value(&self.bid_over)
                .map(|value| value.get_name().to_owned()),
            "mode": if self.hot { "hot" } else { "spread" },
            "tasks": self.bidders,
            "watchers": self.watchers,
            "seconds": elapsed.as_secs_f64(),
            "decided": decided,
            "accepted": bids.accepted,
            "decided_per_second": decided as f64 / elapsed.as_secs_f64(),
            "accepted_per_second": bids.accepted as f64 / elapsed.as_secs_f64(),
            "bid_latency_ms": crate::milliseconds(&bids.latencies),
            "broadcast_latency_ms": broadcast_ms,
            "watchers_disconnected": lost.load(Ordering::SeqCst),
            // This process's growth while the watchers connected: the
            // server's side and, here, the clients' too (an upper bound).
            "rss_kib_per_idle_watcher": rss_per_watcher,
            "rejected": bids.refused,
            "invariants": if conserved { "ok" } else { "VIOLATED" },
        })
    }

    async fn sign_up(&self, client: &Client, username: &str) -> String {
        // Any neighbourhood the example site knows: every auction is national.
        let region = neighborbid_server::catalogue::neighbourhoods().swap_remove(0);
        let body = json!({"username": username, "password": "load generator", "region": region});
        let response = client
            .post(format!("{}/auth/signup", self.base))
            .json(&body)
            .send()
            .await
            .expect("the server answers");
        let body: Value = response.json().await.expect("JSON");
        body["token"]
            .as_str()
            .unwrap_or_else(|| panic!("sign-up failed: {body}"))
            .to_owned()
    }

    async fn post(
        &self,
        client: &Client,
        token: &str,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let response = client
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("the server answers");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Every bidder's balance plus escrow is what they deposited, escrow
    /// equals their open holds, and the seller has nothing yet.
    async fn books_balance(&self, client: &Client, bidders: &[String], seller: &str) -> bool {
        let mut total = Decimal::ZERO;
        let mut consistent = true;
        for token in bidders.iter().chain([&seller.to_owned()]) {
            let wallet: Value = client
                .get(format!("{}/api/me/wallet?limit=1", self.base))
                .bearer_auth(token)
                .send()
                .await
                .expect("the server answers")
                .json()
                .await
                .expect("JSON");
            let amount =
                |value: &Value| value.as_str().and_then(|text| text.parse::<Decimal>().ok());
            let (Some(balance), Some(locked)) = (
                amount(&wallet["wallet"]["balance"]),
                amount(&wallet["wallet"]["locked"]),
            ) else {
                return false;
            };
            let holds: Option<Decimal> = wallet["holds"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|hold| amount(&hold["amount"]))
                .sum();
            consistent &=
                holds == Some(locked) && !balance.is_sign_negative() && !locked.is_sign_negative();
            total += balance + locked;
        }
        consistent && total == Decimal::from(DEPOSIT) * Decimal::from(bidders.len())
    }
}

/// A bidder's way to the server.
enum Channel {
    Http {
        client: Client,
        base: String,
        token: String,
        auctions: Vec<i64>,
    },
    Ws {
        /// One live socket per auction.
        sockets: Vec<(i64, Socket)>,
        /// The latest minimum each socket named: in its snapshot, in the
        /// room's events, in an answer.
        seen: BTreeMap<i64, u64>,
        sent: u64,
    },
    BidderWs {
        /// The bidder's socket, for bids on any auction (boxed: a socket
        /// is large beside the other variants).
        socket: Box<Socket>,
        auctions: Vec<i64>,
        sent: u64,
    },
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What the server said to a bid: accepted or not, and the body (the same
/// fields over HTTP and WebSocket); `Err` when the connection failed.
type Answer = Result<(bool, Reply), ()>;

/// The fields of a message (an answer, a snapshot, an event) the bidders
/// read; the rest is skipped unparsed, so the client spends little of the
/// machine's CPU.
#[derive(Debug, Default, Deserialize)]
struct Reply {
    #[serde(rename = "type", default)]
    kind: String,
    request_id: Option<String>,
    code: Option<String>,
    /// A too-low refusal's minimum.
    min_next_bid: Option<String>,
    /// An answer's or a snapshot's auction.
    auction: Option<ReplyAuction>,
    /// An event's changes (a new bid names the minimum after it).
    #[serde(default)]
    public: Vec<ReplyChange>,
}

#[derive(Debug, Deserialize)]
struct ReplyAuction {
    min_next_bid: String,
}

#[derive(Debug, Deserialize)]
struct ReplyChange {
    min_next_bid: Option<String>,
}

impl Reply {
    /// The minimum next bid the message names, if any.
    fn min_next(&self) -> Option<u64> {
        let auction = self.auction.as_ref().map(|auction| &auction.min_next_bid);
        let change = self
            .public
            .iter()
            .rev()
            .find_map(|c| c.min_next_bid.as_ref());
        auction
            .or(self.min_next_bid.as_ref())
            .or(change)?
            .parse()
            .ok()
    }
}

impl Channel {
    /// Opens a signed-in live socket on each of `auctions`.
    async fn ws(base: &str, token: &str, auctions: Vec<i64>) -> Channel {
        let mut sockets = Vec::new();
        let mut seen = BTreeMap::new();
        for auction in auctions {
            let mut socket = connect(&format!("{base}/api/auctions/{auction}/live"), token).await;
            let snapshot = next_message(&mut socket).await.expect("a snapshot");
            if let Some(min) = snapshot.min_next() {
                seen.insert(auction, min);
            }
            sockets.push((auction, socket));
        }
        Channel::Ws {
            sockets,
            seen,
            sent: 0,
        }
    }

    fn auctions(&self) -> Vec<i64> {
        match self {
            Channel::Http { auctions, .. } => auctions.clone(),
            Channel::Ws { sockets, .. } => sockets.iter().map(|(id, _)| *id).collect(),
            Channel::BidderWs { auctions, .. } => auctions.clone(),
        }
    }

    /// The latest minimum the room of `auctions[index]` named: read from
    /// the socket's pending events without waiting (none over HTTP).
    fn seen(&mut self, index: usize) -> Option<u64> {
        let Channel::Ws { sockets, seen, .. } = self else {
            return None;
        };
        let (auction, socket) = &mut sockets[index];
        while let Some(Some(message)) = next_message(socket).now_or_never() {
            if let Some(min) = message.min_next() {
                seen.insert(*auction, min);
            }
        }
        seen.get(auction).copied()
    }

    async fn place(&mut self, index: usize, amount: u64) -> Answer {
        match self {
            Channel::Http {
                client,
                base,
                token,
                auctions,
            } => {
                let response = client
                    .post(format!("{base}/api/auctions/{}/bids", auctions[index]))
                    .bearer_auth(&*token)
                    .json(&json!({ "amount": amount.to_string() }))
                    .send()
                    .await
                    .map_err(|_| ())?;
                let accepted = response.status() == StatusCode::CREATED;
                Ok((accepted, response.json().await.unwrap_or_default()))
            }
            Channel::Ws {
                sockets,
                seen,
                sent,
            } => {
                *sent += 1;
                let (auction, socket) = &mut sockets[index];
                // Events for the room arrive in between.
                send_bid(socket, None, amount, *sent, |message| {
                    if let Some(min) = message.min_next() {
                        seen.insert(*auction, min);
                    }
                })
                .await
            }
            Channel::BidderWs {
                socket,
                auctions,
                sent,
            } => {
                *sent += 1;
                send_bid(socket, Some(auctions[index]), amount, *sent, |_| {}).await
            }
        }
    }
}

/// Opens the WebSocket at `url` (`http://...`) signed in with `token`.
async fn connect(url: &str, token: &str) -> Socket {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = url.replacen("http", "ws", 1);
    let mut request = url.into_client_request().expect("a WebSocket URL");
    let bearer = format!("Bearer {token}").parse().expect("a header value");
    request.headers_mut().insert("authorization", bearer);
    let (socket, _) =
        tokio_tungstenite::connect_async_with_config(request, Some(small_buffers()), true)
            .await
            .expect("the bidder's socket opens");
    socket
}

/// Small socket buffers, as the server's. The defaults would dwarf what
/// is measured: a watcher's memory, and a bidder's CPU (tungstenite zeroes
/// its whole 128 KiB read buffer on every read).
fn small_buffers() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// Sends a `bid` of `amount` (on `auction`, on a bidder's socket) as
/// request `number` and waits for its answer: the message that names the
/// request; `other` sees the rest.
async fn send_bid(
    socket: &mut Socket,
    auction: Option<i64>,
    amount: u64,
    number: u64,
    mut other: impl FnMut(Reply),
) -> Answer {
    let request_id = number.to_string();
    // Written by hand, not through a JSON value: the client's CPU is the
    // server's to share.
    let auction = auction.map_or(String::new(), |id| format!(r#""auction_id":{id},"#));
    let message =
        format!(r#"{{"type":"bid",{auction}"amount":"{amount}","request_id":"{request_id}"}}"#);
    socket
        .send(Message::Text(message.into()))
        .await
        .map_err(|_| ())?;
    loop {
        let message = next_message(socket).await.ok_or(())?;
        if message.request_id.as_ref() == Some(&request_id) {
            return Ok((message.kind == "bid_result", message));
        }
        other(message);
    }
}

/// The next message on `socket`, the fields a bidder reads.
async fn next_message(socket: &mut Socket) -> Option<Reply> {
    loop {
        match socket.next().await? {
            Ok(Message::Text(text)) => return serde_json::from_str(&text).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Bids until `deadline`: the minimum last seen, sometimes a few units
/// more, and after a too-low refusal the minimum it names; at most one bid
/// every `pace` when given.
async fn bid(mut channel: Channel, deadline: Instant, pace: Option<Duration>) -> Tally {
    let mut tally = Tally::default();
    let auctions = channel.auctions();
    let mut next = BTreeMap::new();
    let mut ticks = pace.map(|pace| {
        let mut ticks = tokio::time::interval(pace);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks
    });
    while Instant::now() < deadline {
        if let Some(ticks) = &mut ticks {
            ticks.tick().await;
        }
        let index = fastrand::usize(..auctions.len());
        let auction = auctions[index];
        let known = next.get(&auction).copied().max(channel.seen(index));
        let amount = known.unwrap_or(10) + fastrand::u64(0..3);
        let started = Instant::now();
        let Ok((accepted, body)) = channel.place(index, amount).await else {
            *tally.refused.entry("connection_failed".into()).or_default() += 1;
            continue;
        };
        tally.latencies.record(started.elapsed());
        if let Some(min) = body.min_next() {
            next.insert(auction, min);
        }
        if accepted {
            tally.accepted += 1;
        } else {
            let code = body.code.unwrap_or_else(|| "unreadable".into());
            *tally.refused.entry(code).or_default() += 1;
        }
    }
    tally
}

/// Watches one auction until told to stop; returns the time from each
/// event's commit (`at`) to its arrival.
async fn watch(
    url: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
    lost: Arc<AtomicUsize>,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Latencies {
    let mut latencies = Latencies::default();
    let connected =
        tokio_tungstenite::connect_async_with_config(&url, Some(small_buffers()), false).await;
    let Ok((mut socket, _)) = connected else {
        lost.fetch_add(1, Ordering::SeqCst);
        return latencies;
    };
    // Dropped once the snapshot has come: the socket is fully open.
    let mut ready = Some(ready);
    loop {
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return latencies,
            frame = socket.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    ready.take(); // the snapshot came: connected
                    let stamp: Stamp = serde_json::from_str(&text).unwrap_or_default();
                    if stamp.kind == "event" {
                        if let Some(at) = stamp.at {
                            latencies.record((chrono::Utc::now() - at).to_std().unwrap_or_default());
                        }
                    }
                }
                Some(Ok(_)) => {}
                _ => {
                    lost.fetch_add(1, Ordering::SeqCst);
                    return latencies;
                }
            }
        }
    }
}

/// What a watcher reads of a message: its type and commit time.
#[derive(Default, Deserialize)]
struct Stamp<'a> {
    #[serde(rename = "type", default)]
    kind: &'a str,
    at: Option<chrono::DateTime<chrono::Utc>>,
}

/// This process's resident memory (Linux), in bytes.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
