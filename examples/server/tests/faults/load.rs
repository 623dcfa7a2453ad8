//! Random concurrent users of the site, as careful clients: every change
//! carries its own `Idempotency-Key`, and a request that fails on the way
//! (connection refused or reset, timeout, 503) is sent again with the same
//! key, against whichever server process is up now, until it gets a
//! definite answer. The log keeps those answers: what the site told its
//! users it did, which the books must match exactly.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tokio::sync::{watch, OwnedRwLockWriteGuard, RwLock};
use tokio::task::JoinHandle;

/// Who uses the site: sellers put up and cancel auctions; bidders top up,
/// withdraw, bid (sometimes with a maximum) and buy now. The first seller
/// first fills their wallet to the deposit limit, so each sale pays a full
/// wallet (which must never hold up the closer).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Crowd {
    pub(crate) sellers: usize,
    pub(crate) bidders: usize,
}

/// What one user was told the site did (definite answers only).
#[derive(Clone, Debug, Default)]
pub(crate) struct Account {
    /// Amounts of acknowledged deposits.
    pub(crate) deposits: Vec<Decimal>,
    /// Amounts of acknowledged withdrawals.
    pub(crate) withdrawals: Vec<Decimal>,
    /// Ids of the bids the answers said were recorded as this user's.
    pub(crate) bids: Vec<i64>,
    /// Auctions this user created.
    pub(crate) created: Vec<i64>,
    /// Auctions this user cancelled.
    pub(crate) cancelled: Vec<i64>,
    /// Auctions this user bought now.
    pub(crate) bought: Vec<i64>,
    /// Keys of requests that changed something (what the site must have
    /// recorded for replay, once each).
    pub(crate) effective_keys: Vec<String>,
}

/// Every definite answer, and what it took to get them.
#[derive(Clone, Debug, Default)]
pub(crate) struct Log {
    /// By user id.
    pub(crate) accounts: BTreeMap<i64, Account>,
    /// `outbid_by_proxy` answers: each recorded one automatic bid.
    pub(crate) proxy_answers: u64,
    /// Definite answers by operation and outcome (`bid 201`,
    /// `bid bid_too_low`, ...).
    pub(crate) answers: BTreeMap<String, u64>,
    /// Attempts that got no definite answer, by cause (`transport`,
    /// `unavailable`, `busy`, ...); each was sent again.
    pub(crate) retried: BTreeMap<String, u64>,
    /// Answers a correct site never gives these requests.
    pub(crate) violations: Vec<String>,
    /// Each key's request and its definite answer, to explain a finding
    /// (shared, not copied with the log: it grows through a soak).
    pub(crate) by_key: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Log {
    /// How many logical requests got a definite answer.
    pub(crate) fn operations(&self) -> u64 {
        self.answers.values().sum()
    }
}

/// The running crowd.
pub(crate) struct Load {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
    paused: Option<OwnedRwLockWriteGuard<()>>,
}

struct Shared {
    client: Client,
    /// `http://host:port` of the server process that is up now.
    base: watch::Receiver<String>,
    /// Held for reading by each user while a request is in flight and
    /// until its answer is logged; [`Load::pause`] takes it for writing.
    gate: Arc<RwLock<()>>,
    stop: AtomicBool,
    /// Whether a transport failure is a violation (the server is meant to
    /// stay up) rather than expected (it is being killed).
    server_stays_up: bool,
    log: Mutex<Log>,
    /// Auctions open for bidding, as far as the crowd knows.
    listed: Mutex<Vec<Listed>>,
    next_key: AtomicU64,
}

#[derive(Clone, Copy, Debug)]
struct Listed {
    id: i64,
    seller: i64,
    ends_at: chrono::DateTime<chrono::Utc>,
    buy_now: bool,
}

struct User {
    id: i64,
    token: String,
}

impl Load {
    /// Signs the crowd up on the server `base` names and starts it.
    pub(crate) async fn start(
        base: watch::Receiver<String>,
        crowd: Crowd,
        server_stays_up: bool,
    ) -> Load {
        let client = Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        let prefix = format!("f{:06x}", fastrand::u32(..0xff_ffff));
        let shared = Arc::new(Shared {
            client,
            base,
            gate: Arc::new(RwLock::new(())),
            stop: AtomicBool::new(false),
            server_stays_up,
            log: Mutex::default(),
            listed: Mutex::default(),
            next_key: AtomicU64::new(0),
        });
        // Sign-ups hash passwords (slow on purpose): all at once.
        let sign_ups: Vec<_> = (0..crowd.sellers + crowd.bidders)
            .map(|index| {
                let (shared, username) = (shared.clone(), format!("{prefix}u{index}"));
                tokio::spawn(async move { shared.sign_up(&username).await })
            })
            .collect();
        let mut users = Vec::new();
        for sign_up in sign_ups {
            users.push(sign_up.await.expect("a sign-up"));
        }
        let bidders = users.split_off(crowd.sellers);
        if let Some(full) = users.first() {
            shared.fill(full).await;
        }
        let mut tasks = Vec::new();
        for seller in users {
            tasks.push(tokio::spawn(shared.clone().sell(seller)));
        }
        for bidder in bidders {
            tasks.push(tokio::spawn(shared.clone().bid(bidder)));
        }
        Load {
            shared,
            tasks,
            paused: None,
        }
    }

    /// Waits until every request in flight has its definite answer and
    /// holds new ones back, so the books can be compared with the log.
    pub(crate) async fn pause(&mut self) {
        if self.paused.is_none() {
            self.paused = Some(self.shared.gate.clone().write_owned().await);
        }
    }

    /// Lets the crowd go on.
    pub(crate) fn resume(&mut self) {
        self.paused = None;
    }

    /// A copy of the log so far.
    pub(crate) fn log(&self) -> Log {
        self.shared.log.lock().expect("the log").clone()
    }

    /// Stops the crowd once its requests in flight have their answers.
    pub(crate) async fn stop(mut self) -> Log {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.resume();
        for task in std::mem::take(&mut self.tasks) {
            task.await.expect("a user of the crowd panicked");
        }
        self.log()
    }
}

/// A definite answer.
struct Answer {
    status: StatusCode,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    fn decimal(&self, pointer: &str) -> Option<Decimal> {
        self.body.pointer(pointer)?.as_str()?.parse().ok()
    }
}

impl Shared {
    async fn sign_up(&self, username: &str) -> User {
        let body =
            json!({"username": username, "password": "crash test", "region": "seoul/mapo/mangwon"});
        let answer = self
            .send(Method::POST, "/auth/signup", None, None, Some(body))
            .await;
        assert_eq!(
            answer.status,
            StatusCode::CREATED,
            "sign-up: {}",
            answer.body
        );
        User {
            id: answer.body["account"]["id"].as_i64().expect("an id"),
            token: answer.body["token"].as_str().expect("a token").to_owned(),
        }
    }

    /// Deposits the largest amount a deposit may carry, four at a time,
    /// until `me`'s wallet refuses more (`balance_limit`).
    async fn fill(self: &Arc<Self>, me: &User) {
        let full = Arc::new(AtomicBool::new(false));
        let depositors: Vec<_> = (0..4)
            .map(|_| {
                let (shared, full) = (self.clone(), full.clone());
                let me = User {
                    id: me.id,
                    token: me.token.clone(),
                };
                tokio::spawn(async move {
                    let amount = Decimal::from(1_000_000_000_000u64);
                    while !full.load(Ordering::SeqCst) {
                        let body = json!({ "amount": amount.to_string() });
                        let path = "/api/me/wallet/deposits";
                        let answer = shared.change(&me, "fill", path, Some(body)).await;
                        match answer.status {
                            StatusCode::CREATED => {
                                shared.record(&me, |account| account.deposits.push(amount))
                            }
                            _ if answer.code() == "balance_limit" => {
                                full.store(true, Ordering::SeqCst)
                            }
                            status => panic!("filling a wallet: {status} {}", answer.body),
                        }
                    }
                })
            })
            .collect();
        for depositor in depositors {
            depositor.await.expect("a depositor");
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// A little pause between one user's requests, so a 2-core machine
    /// also runs the server and the database.
    async fn think(&self) {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(1..8))).await;
    }

    async fn sell(self: Arc<Self>, me: User) {
        while !self.stopped() {
            // Held until the answer is logged, so a paused crowd's log is
            // complete.
            let turn = self.gate.read().await;
            let open = self.listed_by(me.id);
            let roll = fastrand::u8(..10);
            if open.len() < 3 || roll == 0 {
                let lasts = chrono::TimeDelta::milliseconds(fastrand::i64(1_000..6_000));
                let buy_now = fastrand::bool();
                let mut body = json!({"title": "crash test", "scope": {"kind": "national"},
                    "start_price": "10", "policy": {"increment": {"kind": "fixed", "unit": "1"}},
                    "ends_at": chrono::Utc::now() + lasts});
                if buy_now {
                    body["buy_now_price"] = json!("60");
                }
                let answer = self
                    .change(&me, "create", "/api/auctions", Some(body))
                    .await;
                if answer.status == StatusCode::CREATED {
                    let auction = &answer.body;
                    let id = auction["id"].as_i64().expect("an auction id");
                    let ends_at = auction["ends_at"].as_str().and_then(|at| at.parse().ok());
                    self.record(&me, |account| account.created.push(id));
                    self.listed.lock().expect("listed").push(Listed {
                        id,
                        seller: me.id,
                        ends_at: ends_at.expect("an end time"),
                        buy_now,
                    });
                }
            } else if let Some(auction) = pick(&open).filter(|_| roll < 3) {
                let path = format!("/api/auctions/{}/cancel", auction.id);
                let answer = self.change(&me, "cancel", &path, None).await;
                if answer.status == StatusCode::OK {
                    self.record(&me, |account| account.cancelled.push(auction.id));
                    self.unlist(auction.id);
                }
            }
            drop(turn);
            self.think().await;
        }
    }

    async fn bid(self: Arc<Self>, me: User) {
        let mut next: BTreeMap<i64, Decimal> = BTreeMap::new();
        while !self.stopped() {
            let turn = self.gate.read().await;
            let roll = fastrand::u8(..100);
            if roll < 10 {
                let amount = Decimal::new(fastrand::i64(5_000..50_000), 2);
                let body = json!({ "amount": amount.to_string() });
                let answer = self
                    .change(&me, "deposit", "/api/me/wallet/deposits", Some(body))
                    .await;
                if answer.status == StatusCode::CREATED {
                    self.record(&me, |account| account.deposits.push(amount));
                }
            } else if roll < 15 {
                let amount = Decimal::new(fastrand::i64(100..10_000), 2);
                let body = json!({ "amount": amount.to_string() });
                let answer = self
                    .change(&me, "withdraw", "/api/me/wallet/withdrawals", Some(body))
                    .await;
                if answer.status == StatusCode::CREATED {
                    self.record(&me, |account| account.withdrawals.push(amount));
                }
            } else if let Some(auction) = pick(&self.open_auctions()) {
                if roll < 18 && auction.buy_now {
                    let path = format!("/api/auctions/{}/buy-now", auction.id);
                    let answer = self.change(&me, "buy-now", &path, None).await;
                    if answer.status == StatusCode::OK {
                        self.record(&me, |account| account.bought.push(auction.id));
                        self.unlist(auction.id);
                    }
                } else {
                    let known = next.get(&auction.id).copied().unwrap_or(Decimal::TEN);
                    let amount = known + Decimal::from(fastrand::u8(..3));
                    let mut body = json!({ "amount": amount.to_string() });
                    if fastrand::u8(..5) == 0 {
                        let max = amount + Decimal::from(fastrand::u8(1..20));
                        body["max_amount"] = json!(max.to_string());
                    }
                    let path = format!("/api/auctions/{}/bids", auction.id);
                    let answer = self.change(&me, "bid", &path, Some(body)).await;
                    let min = answer
                        .decimal("/auction/min_next_bid")
                        .or_else(|| answer.decimal("/min_next_bid"));
                    if let Some(min) = min {
                        next.insert(auction.id, min);
                    }
                    if answer.status == StatusCode::CREATED {
                        if let Some(bid) = answer.body["bid"]["id"].as_i64() {
                            self.record(&me, |account| account.bids.push(bid));
                        }
                    }
                    if answer.code() == "outbid_by_proxy" {
                        self.log.lock().expect("the log").proxy_answers += 1;
                    }
                }
            }
            drop(turn);
            self.think().await;
        }
    }

    /// One logical change by `me`, under a key of its own, sent until it
    /// gets a definite answer; the answer is logged.
    async fn change(&self, me: &User, operation: &str, path: &str, body: Option<Value>) -> Answer {
        let key = format!("k{}", self.next_key.fetch_add(1, Ordering::Relaxed));
        let answer = self
            .send(
                Method::POST,
                path,
                Some(&me.token),
                Some(&key),
                body.clone(),
            )
            .await;
        let outcome = if answer.status.is_success() {
            answer.status.as_str().to_owned()
        } else {
            answer.code().to_owned()
        };
        let mut log = self.log.lock().expect("the log");
        *log.answers
            .entry(format!("{operation} {outcome}"))
            .or_default() += 1;
        let told = format!(
            "user {}: {operation} {path} {body:?}: {} {}",
            me.id, answer.status, answer.body
        );
        log.by_key
            .lock()
            .expect("answers by key")
            .insert(key.clone(), told);
        // Refusals leave no trace; everything else is kept for replay.
        if answer.status.is_success() || outcome == "outbid_by_proxy" {
            let account = log.accounts.entry(me.id).or_default();
            account.effective_keys.push(key);
        } else if answer.status != StatusCode::UNPROCESSABLE_ENTITY
            // A retried auction whose chosen end passed meanwhile.
            && outcome != "invalid_auction"
        {
            log.violations.push(format!(
                "{operation} {path} answered {}: {}",
                answer.status, answer.body
            ));
        }
        answer
    }

    /// Sends until a definite answer: anything but a transport failure, a
    /// timeout or a 5xx.
    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut delay = Duration::from_millis(10);
        loop {
            let base = self.base.borrow().clone();
            let mut request = self.client.request(method.clone(), format!("{base}{path}"));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(key) = key {
                request = request.header("Idempotency-Key", key);
            }
            if let Some(body) = &body {
                request = request.json(body);
            }
            let cause = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    match response.json::<Value>().await {
                        Ok(body) if !status.is_server_error() => return Answer { status, body },
                        Ok(body) => {
                            let code = body["code"].as_str().unwrap_or("").to_owned();
                            if status != StatusCode::SERVICE_UNAVAILABLE {
                                self.violation(format!("{path} answered {status}: {body}"));
                            }
                            code
                        }
                        // The process died while sending the body.
                        Err(_) => "transport".to_owned(),
                    }
                }
                Err(error) => {
                    if self.server_stays_up {
                        self.violation(format!("{path}: the server went away: {error}"));
                    }
                    "transport".to_owned()
                }
            };
            *self
                .log
                .lock()
                .expect("the log")
                .retried
                .entry(cause)
                .or_default() += 1;
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(200));
        }
    }

    fn violation(&self, violation: String) {
        self.log.lock().expect("the log").violations.push(violation);
    }

    fn record(&self, me: &User, change: impl FnOnce(&mut Account)) {
        change(
            self.log
                .lock()
                .expect("the log")
                .accounts
                .entry(me.id)
                .or_default(),
        );
    }

    fn open_auctions(&self) -> Vec<Listed> {
        let now = chrono::Utc::now();
        let mut listed = self.listed.lock().expect("listed");
        listed.retain(|auction| auction.ends_at > now);
        listed.clone()
    }

    fn listed_by(&self, seller: i64) -> Vec<Listed> {
        let mut open = self.open_auctions();
        open.retain(|auction| auction.seller == seller);
        open
    }

    fn unlist(&self, auction: i64) {
        self.listed
            .lock()
            .expect("listed")
            .retain(|listed| listed.id != auction);
    }
}

fn pick(auctions: &[Listed]) -> Option<Listed> {
    (!auctions.is_empty()).then(|| auctions[fastrand::usize(..auctions.len())])
}
