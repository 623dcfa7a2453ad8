//! The load generator over HTTP and WebSocket, against a running example
//! server: bidders post bids as fast as they can, watchers hold live
//! sockets and time each event from its commit to its arrival.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use neighborbid_core::testkit::Latencies;
use reqwest::{Client, StatusCode};
use rust_decimal::Decimal;
use serde_json::{json, Value};
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
}

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

        let start = Instant::now();
        let deadline = start + self.duration;
        let tasks: Vec<_> = bidders
            .iter()
            .map(|token| {
                let (client, token, auctions) = (client.clone(), token.clone(), auctions.clone());
                let base = self.base.clone();
                let pace = self
                    .bid_rate
                    .map(|rate| Duration::from_secs_f64(self.bidders as f64 / rate.max(0.001)));
                tokio::spawn(
                    async move { bid(&client, &base, &token, &auctions, deadline, pace).await },
                )
            })
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

/// Bids until `deadline`: the minimum last seen, sometimes a few units
/// more, and after a too-low refusal the minimum it names; at most one bid
/// every `pace` when given.
async fn bid(
    client: &Client,
    base: &str,
    token: &str,
    auctions: &[i64],
    deadline: Instant,
    pace: Option<Duration>,
) -> Tally {
    let mut tally = Tally::default();
    let mut next: BTreeMap<i64, u64> = BTreeMap::new();
    let mut ticks = pace.map(|pace| {
        let mut ticks = tokio::time::interval(pace);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks
    });
    while Instant::now() < deadline {
        if let Some(ticks) = &mut ticks {
            ticks.tick().await;
        }
        let auction = auctions[fastrand::usize(..auctions.len())];
        let amount = next.get(&auction).copied().unwrap_or(10) + fastrand::u64(0..3);
        let started = Instant::now();
        let response = client
            .post(format!("{base}/api/auctions/{auction}/bids"))
            .bearer_auth(token)
            .json(&json!({ "amount": amount.to_string() }))
            .send()
            .await;
        let Ok(response) = response else {
            *tally.refused.entry("connection_failed".into()).or_default() += 1;
            continue;
        };
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        tally.latencies.record(started.elapsed());
        let min_next = |value: &Value| value.as_str().and_then(|text| text.parse::<u64>().ok());
        if status == StatusCode::CREATED {
            tally.accepted += 1;
            if let Some(min) = min_next(&body["auction"]["min_next_bid"]) {
                next.insert(auction, min);
            }
        } else {
            let code = body["code"].as_str().unwrap_or("unreadable").to_owned();
            if let Some(min) = min_next(&body["min_next_bid"]) {
                next.insert(auction, min);
            }
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
    // Small buffers, as the server's: the defaults (128 KiB) would dwarf
    // what is measured.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let connected = tokio_tungstenite::connect_async_with_config(&url, Some(config), false).await;
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
                    let message: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    if message["type"] == "event" {
                        let at = message["at"].as_str().and_then(|at| at.parse::<chrono::DateTime<chrono::Utc>>().ok());
                        if let Some(at) = at {
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

/// This process's resident memory (Linux), in bytes.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
