//! Load tests for any store: many tasks bidding as fast as they can, then
//! a full check of the books. The caller picks the size: small in unit-test
//! runs, large against a real database (the load generator in `benches/`).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::testkit::{money, Harness, SELLER};
use crate::{
    AuctionId, Bid, EngineError, IdempotencyKey, Money, Notifier, Page, PlaceBid, Rejection, Store,
    UserId,
};

/// How hard a load test pushes.
#[derive(Clone, Debug)]
pub struct Load {
    /// Concurrent bidding tasks.
    pub tasks: usize,
    /// How long they bid.
    pub duration: Duration,
    /// Auctions of [`many_auctions`].
    pub auctions: usize,
    /// Funded wallets [`many_auctions`] bids from, shared by the tasks.
    pub wallets: usize,
    /// [`EngineConfig::coalesce_bids`](crate::EngineConfig::coalesce_bids).
    pub coalesce_bids: bool,
    /// Whether each bid carries a fresh idempotency key, as API clients
    /// send them: the engine then also looks up and stores a record.
    pub keyed: bool,
    /// CPU time each task spends busy after each answer, before its next
    /// bid (none by default). It stands for a front end's work per bid
    /// (an HTTP server and its clients) on the same cores as the engine,
    /// to tell that work's cost from the front end's own.
    pub caller_work: Duration,
}

impl Load {
    /// `tasks` tasks for `duration`, on 16 auctions from 8 wallets, with
    /// coalescing.
    pub fn new(tasks: usize, duration: Duration) -> Load {
        Load {
            tasks,
            duration,
            auctions: 16,
            wallets: 8,
            coalesce_bids: true,
            keyed: false,
            caller_work: Duration::ZERO,
        }
    }
}

/// What a load test did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StressReport {
    /// Bids accepted.
    pub accepted: u64,
    /// Bids refused, by rejection code.
    pub rejected: BTreeMap<&'static str, u64>,
    /// How long each bid took, accepted or refused.
    pub latencies: Latencies,
    /// From the first bid to the last answer.
    pub elapsed: Duration,
}

impl StressReport {
    /// Bids decided (accepted and refused).
    pub fn decided(&self) -> u64 {
        self.accepted + self.rejected.values().sum::<u64>()
    }

    /// Decided bids per second.
    pub fn decided_per_second(&self) -> f64 {
        self.decided() as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// Accepted bids per second.
    pub fn accepted_per_second(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    fn merge(&mut self, other: StressReport) {
        self.accepted += other.accepted;
        for (code, count) in other.rejected {
            *self.rejected.entry(code).or_default() += count;
        }
        self.latencies.extend(other.latencies);
    }
}

/// Latency samples.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    /// Records one sample.
    pub fn record(&mut self, latency: Duration) {
        self.0.push(latency);
    }

    /// The `quantile` (0.0 to 1.0) of the samples; zero without samples.
    pub fn quantile(&self, quantile: f64) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let last = sorted.len().saturating_sub(1);
        let index = ((last as f64) * quantile.clamp(0.0, 1.0)).round() as usize;
        sorted.get(index).copied().unwrap_or_default()
    }

    /// Adds every sample of `other`.
    pub fn extend(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    /// How many samples there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `load.tasks` bidders bid on one auction for `load.duration`, each as
/// fast as it can: the minimum it last saw, sometimes a few increments
/// more, and after a too-low refusal the minimum the refusal names. Then
/// checks that accepted bids only rose, bids and events have gapless
/// sequence numbers, only the leader holds escrow (the current price), and
/// money is conserved.
pub async fn hot_auction<S: Store>(store: S, load: Load) -> StressReport {
    let h = harness(store, &load);
    let bidders = fund_bidders(&h, load.tasks, 100_000_000).await;
    let auction = h.create(h.national(10, 1)).await.id;
    let report = run(load.duration, bidders.len(), |task, deadline| {
        let (engine, bidder) = (h.engine.clone(), bidders[task]);
        let mut keys = Keys::new(load.keyed, task);
        async move {
            let mut report = StressReport::default();
            let mut next = money(10);
            while Instant::now() < deadline {
                let key = keys.next();
                next = bid_once(&engine, auction, bidder, next, key, &mut report).await;
                busy(load.caller_work);
            }
            report
        }
    })
    .await;
    let unexpected: Vec<_> = report
        .rejected
        .keys()
        .filter(|code| **code != "bid_too_low")
        .collect();
    assert!(
        unexpected.is_empty(),
        "on a hot auction with deep pockets only stale bids are refused: {report:?}"
    );
    let recorded = check_auction(&h, auction, &bidders).await;
    assert_eq!(
        recorded, report.accepted,
        "every accepted bid is recorded once"
    );
    check_books(&h, &bidders, 100_000_000).await;
    report
}

/// `load.tasks` tasks bid for `load.duration` on `load.auctions` auctions
/// from `load.wallets` shared wallets, each bid on a random auction from a
/// random wallet, so every wallet is active on several auctions at once
/// (and concurrent bids lock overlapping sets of wallets, which only a
/// fixed lock order keeps free of deadlocks) and some bids outrun their
/// wallet. Then checks every auction as [`hot_auction`] does, and that
/// money is conserved.
pub async fn many_auctions<S: Store>(store: S, load: Load) -> StressReport {
    const FUNDS: u64 = 5_000;
    let h = harness(store, &load);
    let bidders = fund_bidders(&h, load.wallets.max(1), FUNDS).await;
    let mut auctions = Vec::new();
    for _ in 0..load.auctions.max(1) {
        auctions.push(h.create(h.national(10, 1)).await.id);
    }
    let report = run(load.duration, load.tasks, |task, deadline| {
        let (engine, bidders, auctions) = (h.engine.clone(), bidders.clone(), auctions.clone());
        let mut keys = Keys::new(load.keyed, task);
        async move {
            let mut report = StressReport::default();
            let mut seen: HashMap<AuctionId, Money> = HashMap::new();
            while Instant::now() < deadline {
                let auction = auctions[fastrand::usize(..auctions.len())];
                let bidder = bidders[fastrand::usize(..bidders.len())];
                let next = seen.get(&auction).copied().unwrap_or(money(10));
                let key = keys.next();
                let next = bid_once(&engine, auction, bidder, next, key, &mut report).await;
                busy(load.caller_work);
                seen.insert(auction, next);
            }
            report
        }
    })
    .await;
    let mut recorded = 0;
    for &auction in &auctions {
        recorded += check_auction(&h, auction, &bidders).await;
    }
    assert_eq!(
        recorded, report.accepted,
        "every accepted bid is recorded once"
    );
    check_books(&h, &bidders, FUNDS).await;
    report
}

fn harness<S: Store>(store: S, load: &Load) -> Harness<S> {
    Harness::configured(store, |config| {
        config.coalesce_bids = load.coalesce_bids;
    })
}

/// Runs `tasks` workers until `duration` passes and merges their reports.
async fn run<W, F>(duration: Duration, tasks: usize, worker: W) -> StressReport
where
    W: Fn(usize, Instant) -> F,
    F: std::future::Future<Output = StressReport> + Send + 'static,
{
    let start = Instant::now();
    let deadline = start + duration;
    let workers: Vec<_> = (0..tasks)
        .map(|task| tokio::spawn(worker(task, deadline)))
        .collect();
    let mut report = StressReport::default();
    for worker in workers {
        report.merge(worker.await.expect("a bidding task panicked"));
    }
    report.elapsed = start.elapsed();
    report
}

async fn fund_bidders<S: Store>(h: &Harness<S>, count: usize, units: u64) -> Vec<UserId> {
    let bidders: Vec<UserId> = (0..count as i64).map(|i| UserId(100 + i)).collect();
    for &bidder in &bidders {
        h.fund(bidder, units).await;
    }
    bidders
}

/// A task's idempotency keys, when bids carry them: unique across tasks
/// (tasks may share a wallet).
struct Keys {
    task: Option<usize>,
    sent: u64,
}

impl Keys {
    fn new(keyed: bool, task: usize) -> Keys {
        Keys {
            task: keyed.then_some(task),
            sent: 0,
        }
    }

    fn next(&mut self) -> Option<IdempotencyKey> {
        let task = self.task?;
        self.sent += 1;
        IdempotencyKey::new(format!("{task}-{}", self.sent)).ok()
    }
}

/// Keeps the thread busy for `work`: on purpose, as a front end's work
/// would, it blocks the runtime's thread rather than yielding it.
fn busy(work: Duration) {
    let start = Instant::now();
    while start.elapsed() < work {
        std::hint::spin_loop();
    }
}

/// Places one bid of `next` (sometimes a few units more) and returns the
/// minimum to bid next time.
async fn bid_once<S: Store, N: Notifier>(
    engine: &crate::Engine<S, N>,
    auction: AuctionId,
    bidder: UserId,
    next: Money,
    key: Option<IdempotencyKey>,
    report: &mut StressReport,
) -> Money {
    let amount = next
        .checked_add(money(fastrand::u64(0..3)))
        .expect("small amounts");
    let bid = PlaceBid {
        auction_id: auction,
        bidder,
        bidder_region: None,
        amount,
        max_amount: None,
    };
    let started = Instant::now();
    let result = engine.place_bid(bid, key).await;
    report.latencies.record(started.elapsed());
    match result {
        Ok(receipt) => {
            report.accepted += 1;
            receipt.auction.min_next_bid()
        }
        Err(EngineError::Rejected(rejection)) => {
            *report.rejected.entry(rejection.code()).or_default() += 1;
            match rejection {
                Rejection::BidTooLow { min_next_bid } => min_next_bid,
                _ => next,
            }
        }
        Err(other) => panic!("bid of {bidder} on {auction} failed: {other}"),
    }
}

/// Checks one auction after a load test and returns how many bids it has.
async fn check_auction<S: Store>(h: &Harness<S>, auction: AuctionId, bidders: &[UserId]) -> u64 {
    let state = h.auction(auction).await;
    let bids = all_bids(h, auction).await;
    assert!(
        bids.windows(2).all(|pair| pair[0].amount < pair[1].amount),
        "accepted bids on {auction} only rise"
    );
    let bid_seqs: Vec<u64> = bids.iter().map(|bid| bid.seq).collect();
    assert_eq!(
        bid_seqs,
        (1..=state.bidding.seq).collect::<Vec<_>>(),
        "bid history and sequence numbers of {auction} agree"
    );
    assert_eq!(state.bidding.bid_count as usize, bids.len());
    let mut event_seqs: Vec<u64> = Vec::new();
    loop {
        let after = event_seqs.last().copied().unwrap_or(0);
        let events = h.engine.events_after(auction, after, 1_000).await;
        let events = events.expect("events");
        if events.is_empty() {
            break;
        }
        event_seqs.extend(events.iter().map(|event| event.seq));
    }
    assert_eq!(event_seqs, bid_seqs, "one event per bid, in order");

    let mut holds = Vec::new();
    for &bidder in bidders {
        let view = h.wallet_view(bidder).await;
        holds.extend(view.holds.into_iter().filter(|h| h.auction_id == auction));
    }
    match (bids.last(), state.bidding.leader) {
        (Some(last), Some(leader)) => {
            assert_eq!(
                (last.bidder, last.amount),
                (leader, state.bidding.current_price)
            );
            assert_eq!(holds.len(), 1, "only the leader of {auction} holds escrow");
            assert_eq!((holds[0].user, holds[0].amount), (leader, last.amount));
        }
        (None, None) => assert!(holds.is_empty()),
        other => panic!("leader and bids of {auction} disagree: {other:?}"),
    }
    bids.len() as u64
}

async fn all_bids<S: Store>(h: &Harness<S>, auction: AuctionId) -> Vec<Bid> {
    let mut bids = Vec::new();
    loop {
        let page = Page::new(bids.len() as u32, Page::MAX_LIMIT);
        let view = h.engine.auction(auction, page).await.expect("auction");
        if view.bids.is_empty() {
            break;
        }
        bids.extend(view.bids);
    }
    bids.reverse();
    bids
}

async fn check_books<S: Store>(h: &Harness<S>, bidders: &[UserId], units_each: u64) {
    let mut everyone = bidders.to_vec();
    everyone.push(SELLER);
    let total = units_each * bidders.len() as u64;
    h.assert_books(&everyone, money(total)).await;
}
