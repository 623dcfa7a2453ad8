//! Load tests for any store: many tasks bidding as fast as they can, then
//! a full check of the books. The caller picks the size: small in unit-test
//! runs, large against a real database.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::testkit::{money, Harness, SELLER};
use crate::{
    AuctionId, Bid, EngineError, Money, Notifier, Page, PlaceBid, Rejection, Store, UserId,
};

/// What a load test did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StressReport {
    /// Bids accepted.
    pub accepted: u64,
    /// Bids refused, by rejection code.
    pub rejected: BTreeMap<&'static str, u64>,
}

impl StressReport {
    fn merge(&mut self, other: StressReport) {
        self.accepted += other.accepted;
        for (code, count) in other.rejected {
            *self.rejected.entry(code).or_default() += count;
        }
    }
}

/// `tasks` bidders bid on one auction for `duration`, each as fast as it
/// can: the minimum it last saw, sometimes a few increments more, and after
/// a too-low refusal the minimum the refusal names. Then checks that
/// accepted bids only rose, bids and events have gapless sequence numbers,
/// only the leader holds escrow (the current price), and money is
/// conserved.
pub async fn hot_auction<S: Store>(store: S, tasks: usize, duration: Duration) -> StressReport {
    let h = Harness::new(store);
    let bidders = fund_bidders(&h, tasks, 100_000_000).await;
    let auction = h.create(h.national(10, 1)).await.id;
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = bidders
        .iter()
        .map(|&bidder| {
            let engine = h.engine.clone();
            tokio::spawn(async move {
                let mut report = StressReport::default();
                let mut next = money(10);
                while Instant::now() < deadline {
                    next = bid_once(&engine, auction, bidder, next, &mut report).await;
                }
                report
            })
        })
        .collect();
    let report = join(workers).await;
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

/// `tasks` tasks bid for `duration` on 16 auctions from 8 shared wallets,
/// each bid on a random auction from a random wallet, so every wallet is
/// active on several auctions at once (and concurrent bids lock
/// overlapping pairs of wallets, which only a fixed lock order keeps free
/// of deadlocks) and some bids outrun their wallet. Then checks every auction as [`hot_auction`] does, and that
/// money is conserved.
pub async fn many_auctions<S: Store>(store: S, tasks: usize, duration: Duration) -> StressReport {
    const FUNDS: u64 = 5_000;
    let h = Harness::new(store);
    let bidders = fund_bidders(&h, 8, FUNDS).await;
    let mut auctions = Vec::new();
    for _ in 0..16 {
        auctions.push(h.create(h.national(10, 1)).await.id);
    }
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = (0..tasks)
        .map(|_| {
            let (engine, bidders, auctions) = (h.engine.clone(), bidders.clone(), auctions.clone());
            tokio::spawn(async move {
                let mut report = StressReport::default();
                let mut seen: HashMap<AuctionId, Money> = HashMap::new();
                while Instant::now() < deadline {
                    let auction = auctions[fastrand::usize(..auctions.len())];
                    let bidder = bidders[fastrand::usize(..bidders.len())];
                    let next = seen.get(&auction).copied().unwrap_or(money(10));
                    let next = bid_once(&engine, auction, bidder, next, &mut report).await;
                    seen.insert(auction, next);
                }
                report
            })
        })
        .collect();
    let report = join(workers).await;
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

async fn fund_bidders<S: Store>(h: &Harness<S>, count: usize, units: u64) -> Vec<UserId> {
    let bidders: Vec<UserId> = (0..count as i64).map(|i| UserId(100 + i)).collect();
    for &bidder in &bidders {
        h.fund(bidder, units).await;
    }
    bidders
}

/// Places one bid of `next` (sometimes a few units more) and returns the
/// minimum to bid next time.
async fn bid_once<S: Store, N: Notifier>(
    engine: &crate::Engine<S, N>,
    auction: AuctionId,
    bidder: UserId,
    next: Money,
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
    match engine.place_bid(bid, None).await {
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

async fn join(workers: Vec<tokio::task::JoinHandle<StressReport>>) -> StressReport {
    let mut report = StressReport::default();
    for worker in workers {
        report.merge(worker.await.expect("a bidding task panicked"));
    }
    report
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
        (1..=state.seq).collect::<Vec<_>>(),
        "bid history and sequence numbers of {auction} agree"
    );
    assert_eq!(state.bid_count as usize, bids.len());
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
    match (bids.last(), state.leader) {
        (Some(last), Some(leader)) => {
            assert_eq!((last.bidder, last.amount), (leader, state.current_price));
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
