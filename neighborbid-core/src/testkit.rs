//! The conformance suite every store runs against itself (feature `testkit`).
//!
//! Each behaviour is one `pub async fn name<S: Store>(store: S)` that panics
//! on failure. [`conformance_tests!`](crate::conformance_tests) turns the
//! whole list into `#[tokio::test]`s for a store factory. The factory
//! returns the store and a guard that lives until the test ends (a
//! temporary database that its `Drop` removes, say; `()` when there is
//! nothing to clean up):
//!
//! ```
//! async fn fresh_store() -> (neighborbid_core::MemoryStore, ()) {
//!     (neighborbid_core::MemoryStore::new(), ())
//! }
//! neighborbid_core::conformance_tests!(fresh_store);
//! # fn main() {}
//! ```
//!
//! The calling crate needs `tokio` with the `macros` and `rt-multi-thread`
//! features among its dev-dependencies.
//!
//! Beyond the suite: [`FaultyStore`] injects a failure or retryable
//! conflicts into any store, and
//! [`hot_auction`] and [`many_auctions`] are load tests whose size the
//! caller picks.

mod bidding;
mod browsing;
mod closing;
mod faulty;
mod gated;
mod idempotency;
mod outbox;
mod policies;
// tokio has no sockets under loom.
#[cfg(not(loom))]
mod proxy;
mod races;
mod stress;
mod wallets;

pub use faulty::{Fault, FaultSwitch, FaultyStore, FaultyTx};
pub use gated::GatedStore;
#[cfg(not(loom))]
pub use proxy::TcpProxy;
pub use stress::{hot_auction, many_auctions, Latencies, Load, StressReport};

pub use bidding::*;
pub use browsing::*;
pub use closing::*;
pub use idempotency::*;
pub use outbox::*;
pub use policies::*;
pub use races::*;
pub use wallets::*;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{TimeDelta, TimeZone, Utc};

use crate::store::{AuctionStore, WalletLedger};
use crate::{
    Auction, AuctionFilter, AuctionId, AuctionPolicy, AuctionSort, AuctionStatus, BidReceipt,
    BuyNow, CancelAuction, CreateAuction, Delivery, Deposit, EndEarly, Engine, EngineConfig,
    EngineError, EntryKind, Event, EventId, Hub, IdempotencyKey, Listing, ManualClock, Money,
    MoneyError, Notifier, NotifyError, Page, Phase, PlaceBid, PrivateEvent, PublicEvent, Region,
    Rejection, Relay, RelayConfig, RelayCounts, RetryPolicy, Scope, ScopeFilter, Store,
    StoreErrorKind, Timestamp, Transaction, UserId, Wallet, WalletView, Watch, Withdraw,
};

/// Generates one `#[tokio::test]` per conformance behaviour for a store
/// factory: the path of an `async fn() -> (S, G)` returning a fresh store
/// and a guard dropped when the test ends.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path) => {
        $crate::conformance_tests!(@each $factory;
            deposit_and_withdraw,
            auction_round_trip,
            invalid_auctions_are_not_stored,
            first_bid_and_minimum_increment,
            outbid_releases_previous_hold,
            leader_raises_own_bid,
            insufficient_funds_leave_no_trace,
            bids_only_while_live,
            seller_and_region_rules,
            buy_now_ends_auction,
            settlement_pays_seller_once,
            cancel_rules,
            idempotent_replays,
            old_idempotency_keys_are_forgotten,
            closed_auctions_events_are_forgotten,
            concurrent_idempotent_requests,
            a_stored_key_is_not_stored_again,
            a_retry_during_its_lost_commit_gets_its_answer,
            events_have_gapless_sequence,
            notifier_failure_keeps_commit,
            outbox_lists_undelivered_events,
            relay_recovers_unsent_events,
            relay_sends_after_commit_and_marks,
            relay_counts_a_full_queue_and_failed_sends,
            coalesced_bids_share_one_transaction,
            reads_are_paged_newest_first,
            double_spend_across_auctions,
            concurrent_bidding_conserves_money,
            failures_leave_no_trace,
            single_commands_fail_without_a_trace,
            conflicts_are_retried_up_to_the_limit,
            closers_race,
            policies_round_trip,
            proxy_bids_through_the_store,
            browsing_filters_sorts_and_counts,
            seller_ends_early,
            mixed_commands_race,
            full_wallets_keep_the_market_moving,
            a_stuck_auction_holds_up_no_other,
            the_closer_settles_auctions_as_they_end,
        );
    };
    (@each $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, guard) = $factory().await;
                $crate::testkit::$name(store).await;
                drop(guard);
            }
        )*
    };
}

/// A notifier that records every event, and can be told to fail.
#[derive(Debug, Default)]
pub struct RecordingNotifier {
    events: Mutex<Vec<Event>>,
    failing: AtomicBool,
}

impl RecordingNotifier {
    /// Every event delivered so far, in delivery order.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Makes every later delivery fail (without recording) or succeed.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn notify(&self, events: &[Event]) -> Result<(), NotifyError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(NotifyError("the test notifier is failing".into()));
        }
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(events);
        Ok(())
    }
}

/// An engine on a test store with a manual clock and a recording notifier,
/// and shorthands for the commands the suite uses.
pub struct Harness<S> {
    /// The engine.
    pub engine: Engine<S, Arc<RecordingNotifier>>,
    /// Its clock (starts at 2030-01-01T00:00:00Z).
    pub clock: Arc<ManualClock>,
    /// What the engine delivered.
    pub notifier: Arc<RecordingNotifier>,
}

/// The seller in the suite's scenarios.
pub const SELLER: UserId = UserId(1);
/// A bidder.
pub const ALICE: UserId = UserId(2);
/// Another bidder.
pub const BOB: UserId = UserId(3);
/// A third bidder.
pub const CAROL: UserId = UserId(4);

/// Shorthand for whole amounts.
pub fn money(units: u64) -> Money {
    Money::units(units)
}

/// A national auction by [`SELLER`] starting at `start`, rising by `unit`,
/// ending an hour after `now`.
pub fn national_auction(now: Timestamp, start: u64, unit: u64) -> CreateAuction {
    let mut listing = Listing::new(
        SELLER,
        "Limited edition sneakers",
        money(start),
        AuctionPolicy::fixed(money(unit)),
    );
    listing.description = "Size 270, unworn".into();
    CreateAuction {
        listing,
        starts_at: None,
        ends_at: now + TimeDelta::hours(1),
    }
}

/// Deposits `units` into each of `users`' wallets through `engine`.
pub async fn fund<S: Store, N: Notifier>(engine: &Engine<S, N>, users: &[UserId], units: u64) {
    for &user in users {
        let deposit = Deposit {
            user,
            amount: money(units),
        };
        engine.deposit(deposit, None).await.expect("deposit");
    }
}

impl<S: Store> Harness<S> {
    /// A harness on `store`.
    pub fn new(store: S) -> Harness<S> {
        Harness::configured(store, |_| {})
    }

    /// A harness on `store` whose engine configuration `configure` adjusts
    /// (the clock is the harness's own).
    pub fn configured(store: S, configure: impl FnOnce(&mut EngineConfig)) -> Harness<S> {
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
                .single()
                .expect("a valid date"),
        ));
        let notifier = Arc::new(RecordingNotifier::default());
        let mut config = EngineConfig {
            retry: RetryPolicy {
                max_attempts: 100,
                ..RetryPolicy::default()
            },
            ..EngineConfig::default()
        };
        configure(&mut config);
        config.clock = clock.clone();
        Harness {
            engine: Engine::with_config(store, notifier.clone(), config),
            clock,
            notifier,
        }
    }

    /// The engine's current time.
    pub fn now(&self) -> Timestamp {
        self.engine.now()
    }

    /// Deposits `units` into `user`'s wallet.
    pub async fn fund(&self, user: UserId, units: u64) {
        fund(&self.engine, &[user], units).await;
    }

    /// A national auction by [`SELLER`] ending in an hour.
    pub fn national(&self, start: u64, unit: u64) -> CreateAuction {
        national_auction(self.now(), start, unit)
    }

    /// Creates an auction.
    pub async fn create(&self, cmd: CreateAuction) -> Auction {
        self.engine
            .create_auction(cmd, None)
            .await
            .expect("create auction")
    }

    /// `bidder` (of no region) bids `units` on `auction`.
    pub async fn bid(
        &self,
        auction: AuctionId,
        bidder: UserId,
        units: u64,
    ) -> Result<BidReceipt, EngineError> {
        self.engine
            .place_bid(bid_of(auction, bidder, units), None)
            .await
    }

    /// A wallet.
    pub async fn wallet(&self, user: UserId) -> Wallet {
        self.engine
            .wallet(user, Page::first(1))
            .await
            .expect("wallet")
            .wallet
    }

    /// A wallet with its latest history (first page) and open holds.
    pub async fn wallet_view(&self, user: UserId) -> WalletView {
        self.engine
            .wallet(user, Page::default())
            .await
            .expect("wallet")
    }

    /// Every committed event of an auction, from the store's outbox.
    pub async fn outbox(&self, auction: AuctionId) -> Vec<Event> {
        self.engine
            .events_after(auction, 0, 10_000)
            .await
            .expect("events")
    }

    /// The events of an auction the notifier received, in delivery order.
    pub fn delivered(&self, auction: AuctionId) -> Vec<Event> {
        self.notifier
            .events()
            .into_iter()
            .filter(|event| event.auction_id == auction)
            .collect()
    }

    /// An auction.
    pub async fn auction(&self, id: AuctionId) -> Auction {
        self.engine
            .auction(id, Page::first(1))
            .await
            .expect("auction")
            .auction
    }

    /// Asserts the books of `users`: `balance + locked` sums to
    /// `net_deposits`, and each wallet's `locked` is the sum of its holds.
    pub async fn assert_books(&self, users: &[UserId], net_deposits: Money) {
        assert_books(&self.engine, users, net_deposits).await;
    }
}

/// Asserts the books of `users` (who must be every user with money): the
/// sum of `balance + locked` is `net_deposits` (deposits minus
/// withdrawals), and each wallet's `locked` equals the sum of its open holds.
pub async fn assert_books<S: Store, N: Notifier>(
    engine: &Engine<S, N>,
    users: &[UserId],
    net_deposits: Money,
) {
    let mut total = Money::ZERO;
    for &user in users {
        let view = engine.wallet(user, Page::first(1)).await.expect("wallet");
        let held = view
            .holds
            .iter()
            .try_fold(Money::ZERO, |sum, hold| sum.checked_add(hold.amount))
            .expect("holds overflow");
        assert_eq!(
            view.wallet.locked, held,
            "locked of {user} is not the sum of its holds"
        );
        total = total
            .checked_add(view.wallet.balance)
            .and_then(|t| t.checked_add(view.wallet.locked))
            .expect("total overflow");
    }
    assert_eq!(total, net_deposits, "money was created or destroyed");
}

/// Whether a command was carried out (`false`: refused by a rule); any
/// other error fails the test.
fn outcome<T>(result: Result<T, EngineError>) -> bool {
    match result {
        Ok(_) => true,
        Err(EngineError::Rejected(_)) => false,
        Err(other) => panic!("unexpected {other:?}"),
    }
}

fn rejection<T: std::fmt::Debug>(result: Result<T, EngineError>) -> Rejection {
    match result {
        Err(EngineError::Rejected(rejection)) => rejection,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn key(text: &str) -> Option<IdempotencyKey> {
    Some(IdempotencyKey::new(text).expect("valid key"))
}

/// A plain bid of `units` by `bidder` (of no region).
/// `bidder` (of no region) bids `units` on `auction`, without a maximum.
pub fn bid_of(auction: AuctionId, bidder: UserId, units: u64) -> PlaceBid {
    PlaceBid {
        auction_id: auction,
        bidder,
        bidder_region: None,
        amount: money(units),
        max_amount: None,
    }
}
