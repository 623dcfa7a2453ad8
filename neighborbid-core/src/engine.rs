//! The engine: load -> decide -> write -> commit -> notify.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::auction::{Auction, Bid};
use crate::clock::{Clock, SystemClock};
use crate::command::{
    BidReceipt, BuyNow, CancelAuction, Command, CreateAuction, Deposit, EndEarly, IdempotencyKey,
    PlaceBid, Receipt, Withdraw,
};
use crate::error::{EngineError, Rejection};
use crate::event::Event;
use crate::ids::AuctionId;
use crate::money::Currency;
use crate::notify::Notifier;
use crate::rules::{RegionPolicy, RuleError, Rules, SameRegion};
use crate::store::{AuctionStore, Outbox, Store, Transaction};
use crate::wallet::{Hold, LedgerEntry, Wallet};
use crate::Timestamp;

mod batch;
mod closer;
mod coalesce;
mod decide;
mod reads;

pub use closer::StuckAuction;

/// How the engine retries a transaction that lost to a concurrent one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Delay before the first retry; doubled for each further one. Zero
    /// retries at once (right for the memory store).
    pub base_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 20,
            base_delay: Duration::from_millis(2),
            max_delay: Duration::from_millis(200),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1-based): exponential,
    /// capped, with jitter in its upper half so retries spread out.
    pub fn delay(&self, retry: u32) -> Duration {
        let exponential = self
            .base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16));
        let capped = exponential.min(self.max_delay);
        capped / 2 + capped.mul_f64(fastrand::f64() / 2.0)
    }
}

/// The engine's settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Amount limits.
    pub currency: Currency,
    /// Who may bid on local auctions.
    pub region_policy: Arc<dyn RegionPolicy>,
    /// Server time.
    pub clock: Arc<dyn Clock>,
    /// Retries of conflicting transactions.
    pub retry: RetryPolicy,
    /// Decide the bids that arrive for an auction while a transaction for
    /// it is in flight together, in one transaction (see
    /// [`Engine::place_bid`]). Off: every bid has its own transaction.
    /// On, a busy auction's queue is drained by a task the engine spawns
    /// with `tokio::spawn`, so bids must be placed inside a tokio runtime
    /// (as the engine's retry delays already require).
    pub coalesce_bids: bool,
    /// How long the closer waits before trying again an auction it could
    /// not settle (doubling with each failure, at most ten minutes); the
    /// other due auctions settle meanwhile. See [`Engine::stuck_auctions`].
    pub stuck_retry_delay: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            currency: Currency::default(),
            region_policy: Arc::new(SameRegion),
            clock: Arc::new(SystemClock),
            retry: RetryPolicy::default(),
            coalesce_bids: true,
            stuck_retry_delay: Duration::from_secs(1),
        }
    }
}

/// An auction with its latest bids.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuctionView {
    /// The auction.
    pub auction: Auction,
    /// Its bids, newest first.
    pub bids: Vec<Bid>,
}

/// A wallet with its latest history and open holds.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WalletView {
    /// The wallet.
    pub wallet: Wallet,
    /// History entries, newest first.
    pub history: Vec<LedgerEntry>,
    /// Open escrow holds; their sum is `wallet.locked`.
    pub holds: Vec<Hold>,
}

/// The auction engine, generic over a [`Store`] and a [`Notifier`].
///
/// Cheap to clone (an `Arc` inside); share one per process.
pub struct Engine<S, N> {
    inner: Arc<Inner<S, N>>,
}

struct Inner<S, N> {
    store: S,
    notifier: N,
    config: EngineConfig,
    /// Bids waiting for their auction's transaction in flight.
    lanes: coalesce::Lanes,
    /// Auctions the closer could not settle.
    stuck: closer::SetAside,
}

impl<S, N> Clone for Engine<S, N> {
    fn clone(&self) -> Self {
        Engine {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// What one attempt produced: the result, and the events to publish after
/// commit (none for a replayed or auction-less command).
type Attempt<T> = Result<(T, Vec<Event>), EngineError>;

impl<S: Store, N: Notifier> Engine<S, N> {
    /// An engine with the default configuration.
    pub fn new(store: S, notifier: N) -> Self {
        Engine::with_config(store, notifier, EngineConfig::default())
    }

    /// An engine with `config`.
    pub fn with_config(store: S, notifier: N, config: EngineConfig) -> Self {
        Engine {
            inner: Arc::new(Inner {
                store,
                notifier,
                config,
                lanes: coalesce::Lanes::default(),
                stuck: closer::SetAside::default(),
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// The notifier.
    pub fn notifier(&self) -> &N {
        &self.inner.notifier
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Server time, as the engine sees it.
    pub fn now(&self) -> Timestamp {
        self.inner.config.clock.now()
    }

    fn rules(&self) -> Rules<'_> {
        Rules {
            currency: &self.inner.config.currency,
            region_policy: &*self.inner.config.region_policy,
        }
    }

    /// Puts an auction up for sale.
    pub async fn create_auction(
        &self,
        cmd: CreateAuction,
        key: Option<IdempotencyKey>,
    ) -> Result<Auction, EngineError> {
        match self.execute(Command::CreateAuction(cmd), key).await? {
            Receipt::AuctionCreated(auction) => Ok(auction),
            other => Err(mismatched(other)),
        }
    }

    /// Places a bid. A bid that a leader's higher maximum answers at once
    /// is written (the price rose) and returned as
    /// [`Rejection::OutbidByProxy`]; [`Engine::execute`] returns its
    /// receipt instead.
    ///
    /// With [`EngineConfig::coalesce_bids`] (the default), bids for an
    /// auction that arrive while a transaction for it is in flight wait,
    /// and the next transaction takes all of them: it locks the auction
    /// once, decides them in arrival order, writes them and commits once;
    /// each caller gets its own result. A hot auction then costs one
    /// transaction per batch instead of one per bid; bids for different
    /// auctions never wait for each other.
    pub async fn place_bid(
        &self,
        cmd: PlaceBid,
        key: Option<IdempotencyKey>,
    ) -> Result<BidReceipt, EngineError> {
        match self.execute(Command::PlaceBid(cmd), key).await? {
            Receipt::BidPlaced(receipt) if receipt.leading => Ok(receipt),
            // The bid was written (it pushed the price), but it lost at once.
            Receipt::BidPlaced(receipt) => Err(Rejection::OutbidByProxy {
                price: receipt.auction.bidding.current_price,
                min_next_bid: receipt.auction.min_next_bid(),
            }
            .into()),
            other => Err(mismatched(other)),
        }
    }

    /// Buys at the buy-now price, ending the auction.
    pub async fn buy_now(
        &self,
        cmd: BuyNow,
        key: Option<IdempotencyKey>,
    ) -> Result<Auction, EngineError> {
        match self.execute(Command::BuyNow(cmd), key).await? {
            Receipt::BoughtNow(auction) => Ok(auction),
            other => Err(mismatched(other)),
        }
    }

    /// Cancels an auction without bids (seller only).
    pub async fn cancel_auction(
        &self,
        cmd: CancelAuction,
        key: Option<IdempotencyKey>,
    ) -> Result<Auction, EngineError> {
        match self.execute(Command::CancelAuction(cmd), key).await? {
            Receipt::Cancelled(auction) => Ok(auction),
            other => Err(mismatched(other)),
        }
    }

    /// Ends a running auction now (seller only): it settles with the
    /// current leader, or ends unsold without bids.
    pub async fn end_early(
        &self,
        cmd: EndEarly,
        key: Option<IdempotencyKey>,
    ) -> Result<Auction, EngineError> {
        match self.execute(Command::EndEarly(cmd), key).await? {
            Receipt::EndedEarly(auction) => Ok(auction),
            other => Err(mismatched(other)),
        }
    }

    /// Adds money to a wallet.
    pub async fn deposit(
        &self,
        cmd: Deposit,
        key: Option<IdempotencyKey>,
    ) -> Result<LedgerEntry, EngineError> {
        match self.execute(Command::Deposit(cmd), key).await? {
            Receipt::Deposited(entry) => Ok(entry),
            other => Err(mismatched(other)),
        }
    }

    /// Takes available money out of a wallet.
    pub async fn withdraw(
        &self,
        cmd: Withdraw,
        key: Option<IdempotencyKey>,
    ) -> Result<LedgerEntry, EngineError> {
        match self.execute(Command::Withdraw(cmd), key).await? {
            Receipt::Withdrawn(entry) => Ok(entry),
            other => Err(mismatched(other)),
        }
    }

    /// Executes any command.
    ///
    /// With an idempotency key, the command runs at most once per
    /// `(actor, key)`: a replay with the same command returns the first
    /// receipt and changes nothing; a replay with a different command is
    /// [`EngineError::IdempotencyConflict`]. Only successes are recorded: a
    /// refused command leaves no trace, so retrying it decides afresh.
    pub async fn execute(
        &self,
        command: Command,
        key: Option<IdempotencyKey>,
    ) -> Result<Receipt, EngineError> {
        match command {
            Command::PlaceBid(bid) if self.inner.config.coalesce_bids => {
                self.place_bid_coalesced(bid, key).await
            }
            command => self.retrying(|| self.attempt(&command, key.as_ref())).await,
        }
    }

    /// Settles up to `max` auctions whose end has passed, each in its own
    /// transaction, and returns them as closed. Safe to run in several
    /// processes at once: each auction is settled exactly once.
    ///
    /// An auction that fails to settle for a reason of its own (anything
    /// but the store being unavailable or busy) is set aside: it is logged,
    /// listed by [`stuck_auctions`](Self::stuck_auctions), left open with
    /// its holds, and tried again after a growing delay, while the others
    /// settle. A store failure ends the pass with that error.
    pub async fn close_due_auctions(&self, max: usize) -> Result<Vec<Auction>, EngineError> {
        let stuck = &self.inner.stuck;
        let mut closed = Vec::new();
        let mut failed = Vec::new();
        while closed.len() < max {
            let mut skip = stuck.waiting(Instant::now());
            skip.extend(&failed);
            let claimed = Mutex::new(None);
            match self
                .retrying(|| self.attempt_close_next(&skip, &claimed))
                .await
            {
                Ok(Some(auction)) => {
                    stuck.settled(auction.id);
                    closed.push(auction);
                }
                Ok(None) => break,
                Err(error) => {
                    let claimed = claimed.into_inner().unwrap_or_else(|e| e.into_inner());
                    let Some(auction_id) = claimed.filter(|_| closer::sets_aside(&error)) else {
                        return Err(error);
                    };
                    let first_delay = self.inner.config.stuck_retry_delay;
                    let (failures, retry_in) =
                        stuck.failed(auction_id, &error, first_delay, Instant::now());
                    tracing::error!(
                        %auction_id, %error, failures, ?retry_in,
                        "the closer cannot settle this auction; settling the others"
                    );
                    failed.push(auction_id);
                }
            }
        }
        Ok(closed)
    }

    /// The auctions this process's closer could not settle and has set
    /// aside, by id (for health checks and metrics).
    pub fn stuck_auctions(&self) -> Vec<StuckAuction> {
        self.inner.stuck.list(Instant::now())
    }

    /// Forgets idempotency records stored `age` or more ago (by the store's
    /// clock), a thousand per transaction, and returns how many it forgot.
    /// A request retried with a forgotten key is carried out again, as
    /// new: keep keys longer than any client goes on retrying.
    pub async fn forget_idempotency(&self, age: Duration) -> Result<u64, EngineError> {
        const BATCH: u32 = 1_000;
        let mut forgotten = 0;
        loop {
            let batch = self
                .retrying(|| async {
                    let mut tx = self.inner.store.begin().await?;
                    let result = tx.forget_idempotency(age, BATCH).await;
                    let result = result.map(|n| (n, Vec::new())).map_err(Into::into);
                    finish(tx, result).await
                })
                .await?;
            forgotten += batch;
            if batch < u64::from(BATCH) {
                return Ok(forgotten);
            }
        }
    }

    /// Forgets the outbox events of auctions that closed `age` or more ago
    /// (by the engine's clock), a hundred auctions per transaction, and
    /// returns how many events it forgot. Nothing else of those auctions
    /// goes: their bids, holds and every wallet's history stay. Their events
    /// go whether or not a [`Relay`](crate::Relay) delivered them, so keep
    /// them longer than any notifier outage lasts; and
    /// [`Engine::events_after`] has nothing left to give for them.
    pub async fn forget_events(&self, age: Duration) -> Result<u64, EngineError> {
        const AUCTIONS: u32 = 100;
        let age = chrono::TimeDelta::from_std(age).unwrap_or(chrono::TimeDelta::MAX);
        let Some(closed_before) = self.now().checked_sub_signed(age) else {
            return Ok(0);
        };
        let (mut forgotten, mut after) = (0, AuctionId(0));
        loop {
            let done = self
                .retrying(|| async {
                    let mut tx = self.inner.store.begin().await?;
                    let result = tx.forget_events(closed_before, after, AUCTIONS).await;
                    let result = result.map(|done| (done, Vec::new())).map_err(Into::into);
                    finish(tx, result).await
                })
                .await?;
            forgotten += done.events;
            match done.last_auction {
                Some(last) => after = last,
                None => return Ok(forgotten),
            }
        }
    }

    /// Runs attempts until one succeeds or fails for good, then hands its
    /// event to the notifier: after commit, and a failure there changes
    /// nothing.
    async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T, EngineError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let policy = self.inner.config.retry;
        let mut tries = 1;
        loop {
            match attempt().await {
                Ok((value, events)) => {
                    self.publish(events).await;
                    return Ok(value);
                }
                Err(EngineError::Store(error))
                    if error.is_retryable() && tries < policy.max_attempts =>
                {
                    tracing::debug!(%error, tries, "retrying transaction after conflict");
                    let delay = policy.delay(tries);
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    tries += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn publish(&self, events: Vec<Event>) {
        let Some(first) = events.first() else {
            return;
        };
        if let Err(error) = self.inner.notifier.notify(&events).await {
            tracing::warn!(
                %error,
                auction_id = %first.auction_id,
                seq = first.seq,
                count = events.len(),
                "notifier failed; the events stay in the outbox"
            );
        }
    }
}

/// Finishes `tx` after `result`: commits what succeeded, and rolls back what
/// failed before anyone hears of it. A dropped transaction may keep its row
/// locks until its connection is next used (sqlx sends the `ROLLBACK`
/// later), and meanwhile the caller's next step (a retry, the closer's
/// `SKIP LOCKED`) would find the rows held.
async fn finish<T: Transaction, R>(
    tx: T,
    result: Result<R, EngineError>,
) -> Result<R, EngineError> {
    match result {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(error) => {
            if let Err(rollback) = tx.rollback().await {
                tracing::debug!(%rollback, %error, "rolling back a failed command failed");
            }
            Err(error)
        }
    }
}

fn invariant(message: &str) -> EngineError {
    EngineError::Invariant(message.to_owned())
}

fn mismatched(receipt: Receipt) -> EngineError {
    EngineError::Invariant(format!(
        "a command returned a receipt of another kind: {receipt:?}"
    ))
}

impl From<RuleError> for EngineError {
    fn from(error: RuleError) -> Self {
        match error {
            RuleError::Rejected(rejection) => EngineError::Rejected(rejection),
            RuleError::Inconsistent(message) => EngineError::Invariant(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_up_to_the_cap_with_jitter() {
        let ms = Duration::from_millis;
        let policy = RetryPolicy {
            max_attempts: 20,
            base_delay: ms(2),
            max_delay: ms(200),
        };
        for (retry, cap) in [(1, 2), (2, 4), (3, 8), (7, 128), (8, 200), (40, 200)] {
            let cap = ms(cap);
            let delays: Vec<_> = (0..200).map(|_| policy.delay(retry)).collect();
            let in_range = |delay: &Duration| (cap / 2..=cap).contains(delay);
            assert!(delays.iter().all(in_range), "retry {retry}: {delays:?}");
            // Jittered, not fixed: some fall in each half of the range.
            let middle = cap * 3 / 4;
            assert!(delays.iter().any(|&delay| delay < middle), "retry {retry}");
            assert!(delays.iter().any(|&delay| delay > middle), "retry {retry}");
        }
    }
}
