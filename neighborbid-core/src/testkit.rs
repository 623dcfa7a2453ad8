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

mod faulty;
mod gated;
// tokio has no sockets under loom.
#[cfg(not(loom))]
mod proxy;
mod stress;

pub use faulty::{Fault, FaultSwitch, FaultyStore, FaultyTx};
pub use gated::GatedStore;
#[cfg(not(loom))]
pub use proxy::TcpProxy;
pub use stress::{hot_auction, many_auctions, Latencies, Load, StressReport};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{TimeDelta, TimeZone, Utc};

use crate::{
    Auction, AuctionFilter, AuctionId, AuctionPolicy, AuctionSort, AuctionStatus, AuctionStore,
    BidReceipt, BuyNow, CancelAuction, CreateAuction, Delivery, Deposit, EndEarly, Engine,
    EngineConfig, EngineError, EntryKind, Event, EventId, Hub, IdempotencyKey, ManualClock, Money,
    MoneyError, Notifier, NotifyError, Page, Phase, PlaceBid, PrivateEvent, PublicEvent, Region,
    Rejection, Relay, RelayConfig, RelayCounts, RetryPolicy, Scope, ScopeFilter, Store,
    StoreErrorKind, Timestamp, Transaction, UserId, Wallet, WalletLedger, WalletView, Watch,
    Withdraw,
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
    CreateAuction {
        seller: SELLER,
        title: "Limited edition sneakers".into(),
        description: "Size 270, unworn".into(),
        category: None,
        attributes: Default::default(),
        scope: Scope::National,
        start_price: money(start),
        policy: AuctionPolicy::fixed(money(unit)),
        buy_now_price: None,
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

/// Deposits and withdrawals move the balance and write history with the
/// balance after each entry; bad amounts and overdrafts change nothing.
pub async fn deposit_and_withdraw<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 100).await;
    let entry = h
        .engine
        .withdraw(
            Withdraw {
                user: ALICE,
                amount: money(30),
            },
            None,
        )
        .await
        .expect("withdraw");
    assert_eq!(
        (entry.kind, entry.balance_after),
        (EntryKind::Withdrawal, money(70))
    );

    let overdraft = h
        .engine
        .withdraw(
            Withdraw {
                user: ALICE,
                amount: money(71),
            },
            None,
        )
        .await;
    assert_eq!(
        rejection(overdraft),
        Rejection::InsufficientFunds {
            available: money(70),
            required: money(71)
        }
    );
    let bad_amounts = [
        (Money::ZERO, MoneyError::Zero),
        (
            "0.001".parse().expect("money"),
            MoneyError::TooPrecise { max_scale: 2 },
        ),
        (
            money(1_000_000_000_001),
            MoneyError::TooLarge {
                max: money(1_000_000_000_000),
            },
        ),
    ];
    for (amount, reason) in bad_amounts {
        let result = h
            .engine
            .deposit(
                Deposit {
                    user: ALICE,
                    amount,
                },
                None,
            )
            .await;
        assert_eq!(
            rejection(result),
            Rejection::InvalidAmount {
                field: "amount",
                reason
            }
        );
    }

    let view = h.wallet_view(ALICE).await;
    assert_eq!(
        (view.wallet.balance, view.wallet.locked),
        (money(70), Money::ZERO)
    );
    let kinds: Vec<_> = view
        .history
        .iter()
        .map(|e| (e.kind, e.amount, e.balance_after))
        .collect();
    assert_eq!(
        kinds,
        [
            (EntryKind::Withdrawal, money(30), money(70)),
            (EntryKind::Deposit, money(100), money(100)),
        ]
    );
    assert_eq!(
        h.wallet(BOB).await,
        Wallet::empty(BOB),
        "unknown users have empty wallets"
    );
    h.assert_books(&[ALICE], money(70)).await;
}

/// An auction reads back exactly as created, and listings filter it.
pub async fn auction_round_trip<S: Store>(store: S) {
    let h = Harness::new(store);
    let mut cmd = h.national(100, 10);
    cmd.buy_now_price = Some("999.99".parse().expect("money"));
    cmd.description = "multi-line\ndescription — with ünïcode".into();
    let national = h.create(cmd).await;
    assert_ne!(national.id, AuctionId::UNASSIGNED);
    assert_eq!(
        (
            national.status,
            national.current_price,
            national.leader,
            national.seq
        ),
        (AuctionStatus::Open, money(100), None, 0)
    );
    assert_eq!(national.min_next_bid(), money(100));

    let mut cmd = h.national(5, 1);
    cmd.seller = BOB;
    cmd.scope = Scope::Local {
        region: Region::new("mangwon"),
    };
    cmd.starts_at = Some(h.now() + TimeDelta::minutes(10));
    let local = h.create(cmd).await;

    assert_eq!(h.auction(national.id).await, national);
    assert_eq!(h.auction(local.id).await, local);

    let list = |filter: AuctionFilter| {
        let engine = h.engine.clone();
        async move {
            let found = engine
                .list_auctions(&filter, Page::default())
                .await
                .expect("list");
            found.into_iter().map(|a| a.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(AuctionFilter::default()).await,
        [local.id, national.id]
    );
    let national_only = AuctionFilter {
        scope: Some(ScopeFilter::National),
        ..Default::default()
    };
    assert_eq!(list(national_only).await, [national.id]);
    let in_region = |name: &str| AuctionFilter {
        scope: Some(ScopeFilter::Local {
            region: Some(Region::new(name)),
        }),
        ..Default::default()
    };
    assert_eq!(list(in_region("mangwon")).await, [local.id]);
    assert!(list(in_region("hapjeong")).await.is_empty());
    let sold = AuctionFilter {
        status: Some(AuctionStatus::Sold),
        ..Default::default()
    };
    assert!(list(sold).await.is_empty());
    let mine = h
        .engine
        .user_auctions(BOB, Page::default())
        .await
        .expect("mine");
    assert_eq!(mine, [local]);
}

/// Malformed auctions are refused with a reason, and nothing is stored.
pub async fn invalid_auctions_are_not_stored<S: Store>(store: S) {
    let h = Harness::new(store);
    let base = h.national(100, 10);
    let now = h.now();
    let cases: Vec<(CreateAuction, &str)> = vec![
        (
            CreateAuction {
                title: "   ".into(),
                ..base.clone()
            },
            "invalid_auction",
        ),
        (
            CreateAuction {
                title: "x".repeat(201),
                ..base.clone()
            },
            "invalid_auction",
        ),
        (
            CreateAuction {
                ends_at: now,
                ..base.clone()
            },
            "invalid_auction",
        ),
        (
            CreateAuction {
                starts_at: Some(now + TimeDelta::hours(2)),
                ..base.clone()
            },
            "invalid_auction",
        ),
        (
            CreateAuction {
                start_price: Money::ZERO,
                ..base.clone()
            },
            "invalid_amount",
        ),
        (
            CreateAuction {
                policy: AuctionPolicy::fixed(Money::ZERO),
                ..base.clone()
            },
            "invalid_amount",
        ),
        (
            CreateAuction {
                buy_now_price: Some(money(99)),
                ..base.clone()
            },
            "invalid_auction",
        ),
        (
            CreateAuction {
                scope: Scope::Local {
                    region: Region::new(""),
                },
                ..base.clone()
            },
            "invalid_auction",
        ),
    ];
    // Dates no database need hold (Postgres refuses years before 4713 BC),
    // and the first ones past each end of the documented range.
    let year = |year: i32| {
        Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0)
            .single()
            .expect("a date")
    };
    let mut cases = cases;
    for starts_at in [
        year(-5000),
        year(-262_143),
        CreateAuction::EARLIEST - TimeDelta::microseconds(1),
    ] {
        let cmd = CreateAuction {
            starts_at: Some(starts_at),
            ..base.clone()
        };
        cases.push((cmd, "invalid_auction"));
    }
    for ends_at in [
        year(262_142),
        CreateAuction::latest() + TimeDelta::microseconds(1),
    ] {
        cases.push((
            CreateAuction {
                ends_at,
                ..base.clone()
            },
            "invalid_auction",
        ));
    }
    // Control characters, which Postgres cannot store (NUL) or no field
    // needs: refused alike by every store.
    let attribute = |value: &str| [("condition".to_owned(), value.to_owned())].into();
    let controls: Vec<(CreateAuction, &str)> = vec![
        (
            CreateAuction {
                title: "a\0b".into(),
                ..base.clone()
            },
            "invalid_auction",
        ),
        (
            CreateAuction {
                title: "line\nbreak".into(),
                ..base.clone()
            },
            "invalid_auction",
        ),
        (
            CreateAuction {
                description: "fine\nbut\0not".into(),
                ..base.clone()
            },
            "invalid_auction",
        ),
        (
            CreateAuction {
                category: Some("bell\u{7}".into()),
                ..base.clone()
            },
            "invalid_auction",
        ),
        (
            CreateAuction {
                attributes: attribute("\0"),
                ..base.clone()
            },
            "invalid_auction",
        ),
        (
            CreateAuction {
                scope: Scope::Local {
                    region: Region::new("seoul\0"),
                },
                ..base.clone()
            },
            "invalid_auction",
        ),
    ];
    for (cmd, code) in cases.into_iter().chain(controls) {
        let result = h.engine.create_auction(cmd.clone(), None).await;
        assert_eq!(rejection(result).code(), code, "{cmd:?}");
    }
    let all = h
        .engine
        .list_auctions(&AuctionFilter::default(), Page::default())
        .await;
    assert!(all.expect("list").is_empty());

    // A description keeps its line breaks and tabs.
    let description = "Two lines:\n\tindented\r\n";
    let kept = h
        .create(CreateAuction {
            description: description.into(),
            ..base.clone()
        })
        .await;
    let view = h
        .engine
        .auction(kept.id, Page::first(1))
        .await
        .expect("view");
    assert_eq!(view.auction.description, description);

    // A filter no auction can match is refused too, not sent to the store.
    let filters = [
        AuctionFilter {
            text: Some("a\0".into()),
            ..AuctionFilter::default()
        },
        AuctionFilter {
            category: Some("\0".into()),
            ..AuctionFilter::default()
        },
        AuctionFilter {
            scope: Some(ScopeFilter::Local {
                region: Some(Region::new("seoul\0")),
            }),
            ..AuctionFilter::default()
        },
    ];
    for filter in filters {
        let listed = h.engine.list_auctions(&filter, Page::default()).await;
        assert_eq!(rejection(listed).code(), "invalid_query", "{filter:?}");
        let counted = h.engine.count_auctions(&filter).await;
        assert_eq!(rejection(counted).code(), "invalid_query", "{filter:?}");
    }
}

/// The first bid must reach the start price; each later one must beat the
/// current price by a bid unit. A low bid says what the minimum is.
pub async fn first_bid_and_minimum_increment<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 1_000).await;
    h.fund(BOB, 1_000).await;
    let auction = h.create(h.national(100, 10)).await;

    let low = h.bid(auction.id, ALICE, 99).await;
    assert_eq!(
        rejection(low),
        Rejection::BidTooLow {
            min_next_bid: money(100)
        }
    );
    let first = h
        .bid(auction.id, ALICE, 100)
        .await
        .expect("first bid at start price");
    assert_eq!(first.auction.min_next_bid(), money(110));
    let first_bid = first.bid.clone().expect("recorded");
    assert_eq!((first_bid.seq, first_bid.auto), (1, false));

    let low = h.bid(auction.id, BOB, 109).await;
    assert_eq!(
        rejection(low),
        Rejection::BidTooLow {
            min_next_bid: money(110)
        }
    );
    let second = h.bid(auction.id, BOB, 110).await.expect("bid at minimum");
    assert_eq!(
        (
            second.auction.current_price,
            second.auction.leader,
            second.auction.bid_count
        ),
        (money(110), Some(BOB), 2)
    );
    assert_ne!(Some(first_bid.id), second.bid.map(|bid| bid.id));
}

/// Outbidding returns the previous leader's escrow in the same transaction
/// and tells them privately.
pub async fn outbid_releases_previous_hold<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 500).await;
    h.fund(BOB, 500).await;
    let auction = h.create(h.national(100, 10)).await;
    h.bid(auction.id, ALICE, 120).await.expect("alice bids");
    let alice = h.wallet(ALICE).await;
    assert_eq!((alice.balance, alice.locked), (money(380), money(120)));

    h.bid(auction.id, BOB, 130).await.expect("bob outbids");
    let alice = h.wallet_view(ALICE).await;
    assert_eq!(
        (alice.wallet.balance, alice.wallet.locked),
        (money(500), Money::ZERO)
    );
    assert!(alice.holds.is_empty());
    let kinds: Vec<_> = alice.history.iter().map(|e| (e.kind, e.amount)).collect();
    assert_eq!(
        kinds,
        [
            (EntryKind::HoldRelease, money(120)),
            (EntryKind::BidHold, money(120)),
            (EntryKind::Deposit, money(500)),
        ]
    );
    let bob = h.wallet_view(BOB).await;
    assert_eq!(
        (bob.wallet.balance, bob.wallet.locked),
        (money(370), money(130))
    );
    assert_eq!(bob.holds.len(), 1);
    assert_eq!(
        (bob.holds[0].auction_id, bob.holds[0].amount),
        (auction.id, money(130))
    );

    let events = h.notifier.events();
    let last = events.last().expect("events");
    assert_eq!(last.seq, 2);
    assert_eq!(
        last.notices_for(ALICE).collect::<Vec<_>>(),
        [&PrivateEvent::Outbid { price: money(130) }]
    );
    assert_eq!(last.notices_for(BOB).count(), 0);
    assert!(matches!(
        last.public.as_slice(),
        [PublicEvent::BidPlaced { bidder, amount, bid_count: 2, .. }]
            if *bidder == BOB && *amount == money(130)
    ));
    h.assert_books(&[ALICE, BOB, SELLER], money(1_000)).await;
}

/// A leader bidding again replaces their own bid: the old hold is released
/// and the new one placed, so only the difference must be available, and
/// no outbid notice is sent to them.
pub async fn leader_raises_own_bid<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 200).await;
    let auction = h.create(h.national(100, 10)).await;
    h.bid(auction.id, ALICE, 120).await.expect("first");
    // 80 available, 200 needed: fine, because the 120 held comes back first.
    let raised = h.bid(auction.id, ALICE, 200).await.expect("raise");
    assert_eq!(
        (raised.auction.current_price, raised.auction.leader),
        (money(200), Some(ALICE))
    );
    let view = h.wallet_view(ALICE).await;
    assert_eq!(
        (view.wallet.balance, view.wallet.locked),
        (Money::ZERO, money(200))
    );
    assert_eq!(view.holds.len(), 1, "one hold, not two");
    assert_eq!(view.holds[0].amount, money(200));
    let last = h.notifier.events().pop().expect("event");
    assert!(last.private.is_empty(), "no outbid notice to oneself");
    let too_much = h.bid(auction.id, ALICE, 210).await;
    assert_eq!(
        rejection(too_much),
        Rejection::InsufficientFunds {
            available: money(200),
            required: money(210)
        }
    );
    h.assert_books(&[ALICE], money(200)).await;
}

/// A bid the bidder cannot cover changes nothing at all.
pub async fn insufficient_funds_leave_no_trace<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 500).await;
    h.fund(BOB, 50).await;
    let auction = h.create(h.national(100, 10)).await;
    h.bid(auction.id, ALICE, 120).await.expect("alice bids");
    let before = (
        h.auction(auction.id).await,
        h.wallet(ALICE).await,
        h.wallet(BOB).await,
    );
    let events_before = h.notifier.events().len();

    let result = h.bid(auction.id, BOB, 130).await;
    assert_eq!(
        rejection(result),
        Rejection::InsufficientFunds {
            available: money(50),
            required: money(130)
        }
    );
    let after = (
        h.auction(auction.id).await,
        h.wallet(ALICE).await,
        h.wallet(BOB).await,
    );
    assert_eq!(before, after);
    assert_eq!(h.notifier.events().len(), events_before);
    let view = h
        .engine
        .auction(auction.id, Page::default())
        .await
        .expect("auction");
    assert_eq!(view.bids.len(), 1);
    let stored = h.outbox(auction.id).await;
    assert_eq!(stored.len(), 1);
    let bob = h.wallet_view(BOB).await;
    assert_eq!(bob.history.len(), 1, "only the deposit");
}

/// Bids are taken only while the auction is open, started and before its
/// end, even when the closer has not run yet.
pub async fn bids_only_while_live<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 1_000).await;
    let missing = h.bid(AuctionId(999_999), ALICE, 100).await;
    assert_eq!(
        rejection(missing),
        Rejection::AuctionNotFound {
            auction_id: AuctionId(999_999)
        }
    );

    let mut cmd = h.national(100, 10);
    let starts_at = h.now() + TimeDelta::minutes(30);
    cmd.starts_at = Some(starts_at);
    let scheduled = h.create(cmd).await;
    assert_eq!(
        rejection(h.bid(scheduled.id, ALICE, 100).await),
        Rejection::AuctionNotStarted { starts_at }
    );

    let running = h.create(h.national(100, 10)).await;
    h.clock.advance(TimeDelta::minutes(30));
    h.bid(scheduled.id, ALICE, 100).await.expect("open now");
    h.clock.advance(TimeDelta::minutes(30));
    // Exactly at ends_at: over, though nobody closed it.
    assert_eq!(
        rejection(h.bid(running.id, ALICE, 100).await),
        Rejection::AuctionEnded {
            ended_at: running.ends_at
        }
    );
    h.engine.close_due_auctions(10).await.expect("close");
    let closed_at = h.auction(running.id).await.closed_at.expect("closed_at");
    assert_eq!(
        rejection(h.bid(running.id, ALICE, 100).await),
        Rejection::AuctionEnded {
            ended_at: closed_at
        }
    );

    let cancelled = h.create(h.national(100, 10)).await;
    let cancel = CancelAuction {
        auction_id: cancelled.id,
        seller: SELLER,
    };
    h.engine.cancel_auction(cancel, None).await.expect("cancel");
    assert_eq!(
        rejection(h.bid(cancelled.id, ALICE, 100).await),
        Rejection::AuctionCancelled
    );
}

/// The seller cannot bid or buy; local auctions admit only their region.
pub async fn seller_and_region_rules<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(SELLER, 1_000).await;
    h.fund(ALICE, 1_000).await;
    let mut cmd = h.national(100, 10);
    cmd.scope = Scope::Local {
        region: Region::new("mangwon"),
    };
    cmd.buy_now_price = Some(money(500));
    let local = h.create(cmd).await;
    assert_eq!(
        rejection(h.bid(local.id, SELLER, 100).await),
        Rejection::SellerCannotBid
    );
    let buy = BuyNow {
        auction_id: local.id,
        buyer: SELLER,
        buyer_region: None,
    };
    assert_eq!(
        rejection(h.engine.buy_now(buy, None).await),
        Rejection::SellerCannotBid
    );

    let bid_from = |region: Option<&str>| PlaceBid {
        auction_id: local.id,
        bidder: ALICE,
        bidder_region: region.map(Region::new),
        amount: money(100),
        max_amount: None,
    };
    let not_eligible = Rejection::RegionNotEligible {
        region: Region::new("mangwon"),
    };
    for region in [None, Some("hapjeong")] {
        let result = h.engine.place_bid(bid_from(region), None).await;
        assert_eq!(rejection(result), not_eligible);
    }
    let buy = BuyNow {
        auction_id: local.id,
        buyer: ALICE,
        buyer_region: Some(Region::new("hapjeong")),
    };
    assert_eq!(rejection(h.engine.buy_now(buy, None).await), not_eligible);
    h.engine
        .place_bid(bid_from(Some("mangwon")), None)
        .await
        .expect("a neighbour may bid");

    let national = h.create(h.national(100, 10)).await;
    h.bid(national.id, ALICE, 100)
        .await
        .expect("anyone may bid nationally");
    let local_flags = |events: Vec<Event>| events.iter().map(|e| e.local).collect::<Vec<_>>();
    assert_eq!(
        local_flags(h.outbox(local.id).await),
        [true],
        "events say their auction is local"
    );
    assert_eq!(local_flags(h.outbox(national.id).await), [false]);
}

/// Buy-now refunds the leader, debits the buyer, pays the seller and ends
/// the auction.
pub async fn buy_now_ends_auction<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 1_000).await;
    h.fund(BOB, 1_000).await;
    h.fund(CAROL, 100).await;
    let without = h.create(h.national(100, 10)).await;
    let buy = |auction: AuctionId, buyer: UserId| BuyNow {
        auction_id: auction,
        buyer,
        buyer_region: None,
    };
    let result = h.engine.buy_now(buy(without.id, BOB), None).await;
    assert_eq!(rejection(result), Rejection::BuyNowUnavailable);

    let mut cmd = h.national(100, 10);
    cmd.buy_now_price = Some(money(300));
    let auction = h.create(cmd).await;
    h.bid(auction.id, ALICE, 150).await.expect("alice leads");
    let poor = h.engine.buy_now(buy(auction.id, CAROL), None).await;
    assert_eq!(
        rejection(poor),
        Rejection::InsufficientFunds {
            available: money(100),
            required: money(300)
        }
    );
    assert_eq!(h.auction(auction.id).await.leader, Some(ALICE));

    let bought = h
        .engine
        .buy_now(buy(auction.id, BOB), None)
        .await
        .expect("buy now");
    assert_eq!(
        (bought.status, bought.leader, bought.current_price),
        (AuctionStatus::BoughtNow, Some(BOB), money(300))
    );
    assert_eq!(bought.closed_at, Some(h.now()));
    let alice = h.wallet(ALICE).await;
    assert_eq!((alice.balance, alice.locked), (money(1_000), Money::ZERO));
    let bob = h.wallet(BOB).await;
    assert_eq!((bob.balance, bob.locked), (money(700), Money::ZERO));
    assert_eq!(h.wallet(SELLER).await.balance, money(300));
    let event = h.notifier.events().pop().expect("event");
    assert_eq!(
        event.public,
        [PublicEvent::BoughtNow {
            buyer: BOB,
            price: money(300)
        }]
    );
    assert_eq!(
        event.notices_for(ALICE).collect::<Vec<_>>(),
        [&PrivateEvent::Outbid { price: money(300) }]
    );
    assert_eq!(
        event.notices_for(BOB).collect::<Vec<_>>(),
        [&PrivateEvent::Won { price: money(300) }]
    );
    let again = h.engine.buy_now(buy(auction.id, ALICE), None).await;
    assert!(matches!(rejection(again), Rejection::AuctionEnded { .. }));
    assert!(matches!(
        rejection(h.bid(auction.id, ALICE, 400).await),
        Rejection::AuctionEnded { .. }
    ));

    // Once bidding reaches the buy-now price, buy-now is gone.
    let mut cmd = h.national(100, 10);
    cmd.buy_now_price = Some(money(200));
    let passed = h.create(cmd).await;
    h.bid(passed.id, ALICE, 200)
        .await
        .expect("bid at buy-now price");
    let late = h.engine.buy_now(buy(passed.id, BOB), None).await;
    assert_eq!(rejection(late), Rejection::BuyNowUnavailable);
    h.assert_books(&[SELLER, ALICE, BOB, CAROL], money(2_100))
        .await;
}

/// At its end the winner's escrow pays the seller, exactly once; an
/// auction without bids ends unsold; running auctions are left alone.
pub async fn settlement_pays_seller_once<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 500).await;
    h.fund(BOB, 500).await;
    let sold = h.create(h.national(100, 10)).await;
    let unsold = h.create(h.national(100, 10)).await;
    let mut later = h.national(100, 10);
    later.ends_at = h.now() + TimeDelta::hours(2);
    let later = h.create(later).await;
    h.bid(sold.id, ALICE, 120).await.expect("alice");
    h.bid(sold.id, BOB, 130).await.expect("bob");

    assert!(h
        .engine
        .close_due_auctions(10)
        .await
        .expect("close")
        .is_empty());
    h.clock.advance(TimeDelta::hours(1));
    let closed = h.engine.close_due_auctions(10).await.expect("close");
    let mut outcomes: Vec<_> = closed.iter().map(|a| (a.id, a.status)).collect();
    outcomes.sort_by_key(|(id, _)| *id);
    assert_eq!(
        outcomes,
        [
            (sold.id, AuctionStatus::Sold),
            (unsold.id, AuctionStatus::Unsold)
        ]
    );
    assert!(
        h.engine
            .close_due_auctions(10)
            .await
            .expect("again")
            .is_empty(),
        "exactly once"
    );
    assert_eq!(h.auction(later.id).await.status, AuctionStatus::Open);

    let bob = h.wallet_view(BOB).await;
    assert_eq!(
        (bob.wallet.balance, bob.wallet.locked),
        (money(370), Money::ZERO)
    );
    assert!(bob.holds.is_empty());
    assert_eq!(bob.history[0].kind, EntryKind::SettlementDebit);
    let seller = h.wallet_view(SELLER).await;
    assert_eq!(seller.wallet.balance, money(130));
    assert_eq!(seller.history.len(), 1);
    assert_eq!(seller.history[0].kind, EntryKind::SaleCredit);

    let events = h.outbox(sold.id).await;
    let last = events.last().expect("settlement event");
    assert_eq!(
        last.public,
        [PublicEvent::Sold {
            winner: BOB,
            price: money(130)
        }]
    );
    assert_eq!(
        last.notices_for(BOB).collect::<Vec<_>>(),
        [&PrivateEvent::Won { price: money(130) }]
    );
    let events = h.outbox(unsold.id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].public, [PublicEvent::Unsold]);
    h.assert_books(&[SELLER, ALICE, BOB], money(1_000)).await;
}

/// Only the seller can cancel, only without bids and before the end.
pub async fn cancel_rules<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 500).await;
    let cancel = |auction: AuctionId, seller: UserId| CancelAuction {
        auction_id: auction,
        seller,
    };
    let with_bid = h.create(h.national(100, 10)).await;
    h.bid(with_bid.id, ALICE, 100).await.expect("bid");
    let result = h
        .engine
        .cancel_auction(cancel(with_bid.id, SELLER), None)
        .await;
    assert_eq!(rejection(result), Rejection::HasBids);

    let auction = h.create(h.national(100, 10)).await;
    let result = h
        .engine
        .cancel_auction(cancel(auction.id, ALICE), None)
        .await;
    assert_eq!(rejection(result), Rejection::NotSeller);
    let cancelled = h
        .engine
        .cancel_auction(cancel(auction.id, SELLER), None)
        .await
        .expect("cancel");
    assert_eq!(
        (cancelled.status, cancelled.seq),
        (AuctionStatus::Cancelled, 1)
    );
    let events = h.outbox(auction.id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].public, [PublicEvent::Cancelled]);
    let again = h
        .engine
        .cancel_auction(cancel(auction.id, SELLER), None)
        .await;
    assert_eq!(rejection(again), Rejection::AuctionCancelled);

    let ended = h.create(h.national(100, 10)).await;
    h.clock.advance(TimeDelta::hours(1));
    let late = h
        .engine
        .cancel_auction(cancel(ended.id, SELLER), None)
        .await;
    assert_eq!(
        rejection(late),
        Rejection::AuctionEnded {
            ended_at: ended.ends_at
        }
    );
    h.engine.close_due_auctions(10).await.expect("close");
    assert_eq!(h.auction(ended.id).await.status, AuctionStatus::Unsold);
}

/// Idempotency records stored long enough ago are forgotten, in batches,
/// atomically, and younger ones kept; a request retried with a forgotten
/// key is carried out again, as new.
pub async fn old_idempotency_keys_are_forgotten<S: Store>(store: S) {
    use std::time::Duration;
    let h = Harness::new(store);
    let deposit = Deposit {
        user: ALICE,
        amount: money(100),
    };
    let mut entries = Vec::new();
    for name in ["a", "b", "c"] {
        let receipt = h.engine.deposit(deposit.clone(), key(name)).await;
        entries.push(receipt.expect("deposit"));
    }
    let hour = Duration::from_secs(3_600);
    let forgotten = h.engine.forget_idempotency(hour).await.expect("forget");
    assert_eq!(forgotten, 0, "none is an hour old");
    let replay = h.engine.deposit(deposit.clone(), key("a")).await;
    assert_eq!(replay.expect("replay"), entries[0]);

    // The stores stamp records in microseconds at most.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let young = Duration::from_millis(1);
    let store = h.engine.store();
    let forget = |limit| async move {
        let mut tx = store.begin().await.expect("begin");
        let forgotten = tx.forget_idempotency(young, limit).await.expect("forget");
        (tx, forgotten)
    };
    let (tx, forgotten) = forget(10).await;
    assert_eq!(forgotten, 3);
    tx.rollback().await.expect("rollback");
    let (tx, forgotten) = forget(2).await;
    assert_eq!(forgotten, 2, "all three kept by the rollback, two taken");
    tx.commit().await.expect("commit");
    let rest = h.engine.forget_idempotency(young).await.expect("forget");
    assert_eq!(rest, 1);

    // A forgotten key's request runs again, as new.
    let again = h.engine.deposit(deposit, key("a")).await.expect("again");
    assert_ne!(again, entries[0]);
    assert_eq!(h.wallet(ALICE).await.balance, money(400));
}

/// The outbox events of auctions closed long enough ago are forgotten,
/// atomically, auction by auction; open auctions and recently closed ones
/// keep theirs, and the auctions, bids and money stay as they were.
pub async fn closed_auctions_events_are_forgotten<S: Store>(store: S) {
    use std::time::Duration;
    let h = Harness::new(store);
    h.fund(ALICE, 1_000).await;
    let mut old = Vec::new();
    for units in [100, 200] {
        let auction = h.create(h.national(units, 10)).await;
        h.bid(auction.id, ALICE, units).await.expect("bid");
        old.push(auction.id);
    }
    let cancelled = h.create(h.national(50, 10)).await;
    let cancel = CancelAuction {
        auction_id: cancelled.id,
        seller: SELLER,
    };
    h.engine.cancel_auction(cancel, None).await.expect("cancel");
    old.push(cancelled.id);
    h.clock.advance(TimeDelta::hours(2));
    assert_eq!(
        h.engine.close_due_auctions(10).await.expect("close").len(),
        2
    );
    let closed_at = h.now();
    // Bid on at `closed_at` as well: one stays open, one closes a day later.
    let open = CreateAuction {
        ends_at: h.now() + TimeDelta::days(30),
        ..h.national(100, 10)
    };
    let open = h.create(open).await;
    let recent = h.create(h.national(100, 10)).await;
    for id in [open.id, recent.id] {
        h.bid(id, ALICE, 100).await.expect("bid");
    }
    let open_events = h.outbox(open.id).await;
    let mut old_events = Vec::new();
    for id in &old {
        old_events.push(h.outbox(*id).await);
    }
    assert!(old_events.iter().all(|events| !events.is_empty()));
    let day = Duration::from_secs(86_400);
    assert_eq!(h.engine.forget_events(day).await.expect("forget"), 0);

    h.clock.advance(TimeDelta::days(1));
    assert_eq!(
        h.engine.close_due_auctions(10).await.expect("close").len(),
        1
    );
    let recent_events = h.outbox(recent.id).await;
    let books = (h.wallet(ALICE).await, h.wallet(SELLER).await);

    // One auction a transaction: rolled back, nothing goes.
    let store = h.engine.store();
    let mut tx = store.begin().await.expect("begin");
    let first = tx.forget_events(closed_at, AuctionId(0), 1).await;
    let first = first.expect("forget");
    assert_eq!(first.last_auction, Some(old[0]));
    assert_eq!(first.events, old_events[0].len() as u64);
    tx.rollback().await.expect("rollback");
    assert_eq!(h.outbox(old[0]).await, old_events[0]);

    let forgotten = h.engine.forget_events(day).await.expect("forget");
    let expected: usize = old_events.iter().map(Vec::len).sum();
    assert_eq!(forgotten, expected as u64);
    for id in &old {
        assert_eq!(h.outbox(*id).await, Vec::new(), "auction {id}");
    }
    assert_eq!(h.outbox(open.id).await, open_events, "an open auction's");
    assert_eq!(h.outbox(recent.id).await, recent_events, "closed since");
    let sold = h
        .engine
        .auction(old[1], Page::first(10))
        .await
        .expect("auction");
    assert_eq!(sold.auction.status, AuctionStatus::Sold);
    assert_eq!(sold.bids.len(), 1, "bids stay");
    assert_eq!((h.wallet(ALICE).await, h.wallet(SELLER).await), books);
    let undelivered = {
        let mut tx = store.begin().await.expect("begin");
        tx.undelivered_events(h.now(), 1_000)
            .await
            .expect("undelivered")
    };
    assert!(undelivered
        .iter()
        .all(|event| !old.contains(&event.auction_id)));
    assert_eq!(h.engine.forget_events(day).await.expect("again"), 0);
}

/// A replay with the same key returns the first receipt and changes
/// nothing; another command under the same key is a conflict; keys belong
/// to one user.
pub async fn idempotent_replays<S: Store>(store: S) {
    let h = Harness::new(store);
    let deposit = Deposit {
        user: ALICE,
        amount: money(500),
    };
    let first = h
        .engine
        .deposit(deposit.clone(), key("dep-1"))
        .await
        .expect("deposit");
    let replay = h
        .engine
        .deposit(deposit.clone(), key("dep-1"))
        .await
        .expect("replay");
    assert_eq!(first, replay);
    assert_eq!(h.wallet(ALICE).await.balance, money(500));
    let other = Deposit {
        user: ALICE,
        amount: money(501),
    };
    let conflict = h.engine.deposit(other, key("dep-1")).await;
    assert!(
        matches!(conflict, Err(EngineError::IdempotencyConflict { ref key }) if key.as_str() == "dep-1"),
        "{conflict:?}"
    );
    // The same key text from another user is another key.
    let bob = Deposit {
        user: BOB,
        amount: money(500),
    };
    h.engine
        .deposit(bob, key("dep-1"))
        .await
        .expect("bob's own key");

    let auction = h.create(h.national(100, 10)).await;
    let bid = bid_of(auction.id, ALICE, 150);
    let placed = h
        .engine
        .place_bid(bid.clone(), key("bid-1"))
        .await
        .expect("bid");
    h.bid(auction.id, BOB, 160).await.expect("bob outbids");
    let replayed = h
        .engine
        .place_bid(bid.clone(), key("bid-1"))
        .await
        .expect("replay");
    assert_eq!(placed, replayed, "a replay answers with the first receipt");
    let view = h
        .engine
        .auction(auction.id, Page::default())
        .await
        .expect("auction");
    assert_eq!(view.bids.len(), 2, "no second bid");
    assert_eq!(view.auction.leader, Some(BOB));
    let reused = PlaceBid {
        amount: money(170),
        ..bid
    };
    let conflict = h.engine.place_bid(reused, key("bid-1")).await;
    assert!(matches!(
        conflict,
        Err(EngineError::IdempotencyConflict { .. })
    ));

    // A refused command is not recorded: retrying it decides afresh.
    let withdraw = Withdraw {
        user: ALICE,
        amount: money(600),
    };
    let refused = h.engine.withdraw(withdraw.clone(), key("wd-1")).await;
    assert!(matches!(
        rejection(refused),
        Rejection::InsufficientFunds { .. }
    ));
    h.fund(ALICE, 100).await;
    h.engine
        .withdraw(withdraw, key("wd-1"))
        .await
        .expect("now covered");
    h.assert_books(&[ALICE, BOB, SELLER], money(500)).await;
}

/// The same key sent twice at once has exactly one effect, and both
/// callers get the same receipt.
pub async fn concurrent_idempotent_requests<S: Store>(store: S) {
    let h = Harness::new(store);
    for round in 0..20 {
        let deposit = Deposit {
            user: ALICE,
            amount: money(10),
        };
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let (engine, barrier, deposit) =
                    (h.engine.clone(), barrier.clone(), deposit.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    engine.deposit(deposit, key(&format!("same-{round}"))).await
                })
            })
            .collect();
        let mut receipts = Vec::new();
        for task in tasks {
            receipts.push(task.await.expect("task").expect("deposit"));
        }
        assert_eq!(receipts[0], receipts[1]);
        assert_eq!(h.wallet(ALICE).await.balance, money(10 * (round + 1)));
    }
}

/// A key already stored cannot be stored again: the second save, or its
/// commit, is a retryable conflict (the engine's retry then finds the
/// first record), and the first record stays. This is what makes two
/// requests with one key at once have one effect when their transactions
/// do not wait for each other.
pub async fn a_stored_key_is_not_stored_again<S: Store>(store: S) {
    let h = Harness::new(store);
    let deposit = Deposit {
        user: ALICE,
        amount: money(10),
    };
    let first = h
        .engine
        .deposit(deposit.clone(), key("once"))
        .await
        .expect("deposit");
    let once = key("once").expect("a key");
    let mut tx = h.engine.store().begin().await.expect("begin");
    let record = tx
        .load_idempotency(ALICE, &once)
        .await
        .expect("load")
        .expect("stored by the deposit");
    let stored = match tx.save_idempotency(ALICE, &once, &record).await {
        Ok(()) => tx.commit().await,
        Err(error) => {
            // It holds its connection (SQLite's one writer) until it ends.
            tx.rollback().await.expect("rollback");
            Err(error)
        }
    };
    let error = stored.expect_err("the key is taken");
    assert_eq!(error.kind(), StoreErrorKind::Conflict, "{error}");

    let replay = h.engine.deposit(deposit, Some(once)).await;
    assert_eq!(replay.expect("replay"), first, "the first record answers");
    assert_eq!(h.wallet(ALICE).await.balance, money(10));
}

/// A client lost the answer to its bid (the connection died after COMMIT
/// was sent) and sends it again while that commit is still on its way: the
/// retry gets the first attempt's answer, not a refusal caused by the
/// first attempt itself, and the bid happens once. Single commands and
/// coalesced batches alike.
pub async fn a_retry_during_its_lost_commit_gets_its_answer<S: Store>(store: S) {
    let store = Arc::new(FaultyStore::new(store));
    let switch = store.switch();
    for (round, coalesce_bids) in [false, true].into_iter().enumerate() {
        let h = Harness::configured(Arc::clone(&store), |config| {
            config.coalesce_bids = coalesce_bids;
        });
        h.fund(ALICE, 1_000).await;
        let auction = h.create(h.national(100, 10)).await;
        let bid = bid_of(auction.id, ALICE, 100);
        let key = key(&format!("lost-{coalesce_bids}"));

        switch.arm(Fault::CommitLate);
        let lost = h.engine.place_bid(bid.clone(), key.clone()).await;
        assert!(
            matches!(&lost, Err(EngineError::Store(error)) if error.kind() == StoreErrorKind::Unavailable),
            "the first answer is lost: {lost:?}"
        );
        let retry = tokio::spawn({
            let engine = h.engine.clone();
            async move { engine.place_bid(bid, key).await }
        });
        // Row-locking stores: the retry now waits for the auction the first
        // attempt still holds. Optimistic ones: the retry may have
        // committed first, and the late commit then fails as a conflict.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let landed = switch.land_late_commits().await;
        let answer = retry.await.expect("the retry").unwrap_or_else(|error| {
            panic!("the retry was refused ({error}); late commit: {landed:?}")
        });

        let view = h
            .engine
            .auction(auction.id, Page::first(10))
            .await
            .expect("the auction");
        assert_eq!(view.bids.len(), 1, "one bid, whichever attempt wrote it");
        assert_eq!(answer.bid.map(|bid| bid.id), Some(view.bids[0].id));
        assert_eq!(view.auction.leader, Some(ALICE));
        // Each round's bid holds 100, once.
        let holds = 100 * (round as u64 + 1);
        assert_eq!(h.wallet(ALICE).await.locked, money(holds));
    }
}

/// Every change of an auction has the next sequence number, in the outbox
/// and at the notifier, with no gaps.
pub async fn events_have_gapless_sequence<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 10_000).await;
    h.fund(BOB, 10_000).await;
    let auction = h.create(h.national(100, 10)).await;
    let other = h.create(h.national(100, 10)).await;
    for (i, bidder) in [ALICE, BOB, ALICE, BOB, BOB].into_iter().enumerate() {
        h.bid(auction.id, bidder, 100 + 10 * i as u64)
            .await
            .expect("bid");
        // Refused bids and other auctions' bids take no number.
        assert!(h.bid(auction.id, bidder, 1).await.is_err());
        h.bid(other.id, bidder, 100 + 10 * i as u64)
            .await
            .expect("other");
    }
    h.clock.advance(TimeDelta::hours(1));
    h.engine.close_due_auctions(10).await.expect("close");

    let stored = h
        .engine
        .events_after(auction.id, 0, 1_000)
        .await
        .expect("events");
    let seqs: Vec<u64> = stored.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=6).collect::<Vec<_>>());
    assert_eq!(h.auction(auction.id).await.seq, 6);
    assert_eq!(
        h.delivered(auction.id),
        stored,
        "the notifier got exactly what was committed, in order"
    );
    let tail = h
        .engine
        .events_after(auction.id, 4, 1_000)
        .await
        .expect("tail");
    assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), [5, 6]);
    let bids = h
        .engine
        .auction(auction.id, Page::default())
        .await
        .expect("view")
        .bids;
    let bid_seqs: Vec<u64> = bids.iter().rev().map(|b| b.seq).collect();
    assert_eq!(
        bid_seqs,
        [1, 2, 3, 4, 5],
        "bids carry the number of their change"
    );
}

/// A failing notifier never undoes a committed change.
pub async fn notifier_failure_keeps_commit<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 500).await;
    let auction = h.create(h.national(100, 10)).await;
    h.notifier.set_failing(true);
    let receipt = h.bid(auction.id, ALICE, 100).await.expect("the bid stands");
    assert_eq!(h.auction(auction.id).await, receipt.auction);
    assert_eq!(h.wallet(ALICE).await.locked, money(100));
    assert!(h.notifier.events().is_empty());
    let outbox = h.outbox(auction.id).await;
    assert_eq!(outbox.len(), 1, "the event waits in the outbox");
}

/// The outbox lists committed events by auction and sequence number, up to
/// a time, until a committed transaction marks them delivered.
pub async fn outbox_lists_undelivered_events<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 1_000).await;
    let first = h.create(h.national(100, 10)).await;
    let second = h.create(h.national(100, 10)).await;
    h.bid(second.id, ALICE, 100).await.expect("bid");
    h.clock.advance(TimeDelta::seconds(10));
    let later = h.now();
    h.bid(first.id, ALICE, 100).await.expect("bid");
    h.bid(first.id, ALICE, 110).await.expect("raise");

    let undelivered = |before: Timestamp, limit: u32| {
        let store = h.engine.store();
        async move {
            let mut tx = store.begin().await.expect("begin");
            let events = tx
                .undelivered_events(before, limit)
                .await
                .expect("undelivered");
            // The rows are locked (SKIP LOCKED on Postgres): a dropped
            // transaction may release them only after the next read.
            tx.rollback().await.expect("rollback");
            events.iter().map(Event::id).collect::<Vec<_>>()
        }
    };
    let id = |auction: &Auction, seq| EventId {
        auction_id: auction.id,
        seq,
    };
    let all = vec![id(&first, 1), id(&first, 2), id(&second, 1)];
    assert_eq!(undelivered(later, 100).await, all);
    assert_eq!(undelivered(later, 2).await, all[..2]);
    assert_eq!(
        undelivered(later - TimeDelta::seconds(1), 100).await,
        [id(&second, 1)],
        "younger events are left out"
    );

    let mark = |events: Vec<EventId>, commit: bool| {
        let store = h.engine.store();
        let now = h.now();
        async move {
            let mut tx = store.begin().await.expect("begin");
            tx.mark_delivered(&events, now).await.expect("mark");
            if commit {
                tx.commit().await.expect("commit");
            } else {
                tx.rollback().await.expect("rollback");
            }
        }
    };
    mark(all.clone(), false).await;
    assert_eq!(
        undelivered(later, 100).await,
        all,
        "a rollback marks nothing"
    );
    let unknown = EventId {
        auction_id: AuctionId(i64::MAX),
        seq: 1,
    };
    mark(vec![id(&first, 1), unknown], true).await;
    assert_eq!(undelivered(later, 100).await, all[1..]);
    mark(all.clone(), true).await;
    assert!(undelivered(later, 100).await.is_empty());
    assert_eq!(
        h.outbox(first.id).await.len(),
        2,
        "delivered events stay readable"
    );
}

/// Events committed but never sent (the process died after commit) are
/// sent by a relay, once each to a consumer that drops duplicates, even when
/// the relay dies between sending and marking them.
pub async fn relay_recovers_unsent_events<S: Store>(store: S) {
    let store = Arc::new(FaultyStore::new(store));
    let switch = store.switch();
    let h = Harness::new(Arc::clone(&store));
    h.notifier.set_failing(true); // nothing leaves the dying process
    h.fund(ALICE, 1_000).await;
    h.fund(BOB, 1_000).await;
    let auction = h.create(h.national(100, 10)).await;
    for (bidder, amount) in [(ALICE, 100), (BOB, 110), (ALICE, 120)] {
        h.bid(auction.id, bidder, amount).await.expect("bid");
    }

    let hub = Hub::new(64);
    let mut consumer = hub.watch(auction.id, None);
    let sent = Arc::new(RecordingNotifier::default());
    let config = RelayConfig {
        grace: std::time::Duration::ZERO,
        clock: h.clock.clone(),
        ..RelayConfig::default()
    };
    let relay = Relay::new(store, (Arc::clone(&sent), hub.clone()), config);
    assert_eq!(relay.deliver_undelivered().await.expect("relay"), 3);
    assert_eq!(relay.deliver_undelivered().await.expect("again"), 0);
    assert_eq!(next_seqs(&mut consumer, 3).await, [1, 2, 3]);

    for (bidder, amount) in [(BOB, 130), (ALICE, 140)] {
        h.bid(auction.id, bidder, amount).await.expect("bid");
    }
    switch.arm(Fault::MarkDelivered);
    assert!(
        relay.deliver_undelivered().await.is_err(),
        "sent, then died before marking"
    );
    assert_eq!(relay.deliver_undelivered().await.expect("restart"), 2);
    assert_eq!(relay.deliver_undelivered().await.expect("done"), 0);
    let seqs: Vec<u64> = sent.events().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 4, 5], "at least once");
    assert_eq!(next_seqs(&mut consumer, 2).await, [4, 5]);
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(50), consumer.next())
            .await
            .is_err(),
        "the consumer applied nothing twice"
    );
    assert_eq!(sent.events()[..5], h.outbox(auction.id).await);
    let recovered = 3 + 2 + 2; // the first two resent after the failed marking
    assert_eq!(
        relay.counts(),
        RelayCounts {
            recovered,
            ..RelayCounts::default()
        }
    );
}

/// An engine whose notifier is a relay's sender: committed events go out
/// once, without waiting for the recovery path, and are marked delivered.
pub async fn relay_sends_after_commit_and_marks<S: Store>(store: S) {
    let store = Arc::new(store);
    let h = Harness::new(Arc::clone(&store));
    h.fund(ALICE, 1_000).await;
    let auction = h.create(h.national(100, 10)).await;
    let hub = Hub::new(64);
    let mut consumer = hub.watch(auction.id, None);
    let sent = Arc::new(RecordingNotifier::default());
    let config = RelayConfig {
        // The recovery path must not pick the events up: only sending
        // after commit can deliver them in this test.
        grace: std::time::Duration::from_secs(3600),
        interval: std::time::Duration::from_millis(10),
        clock: h.clock.clone(),
        ..RelayConfig::default()
    };
    let relay = Relay::new(Arc::clone(&store), (Arc::clone(&sent), hub.clone()), config);
    let sender = relay.sender();
    let engine = Engine::with_config(
        Arc::clone(&store),
        sender.clone(),
        h.engine.config().clone(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(relay.run(async {
        let _ = stopped.await;
    }));
    for amount in [100, 110, 120] {
        let bid = bid_of(auction.id, ALICE, amount);
        engine.place_bid(bid, None).await.expect("bid");
    }
    assert_eq!(next_seqs(&mut consumer, 3).await, [1, 2, 3]);
    let _ = stop.send(());
    task.await.expect("the relay stops");
    assert_eq!(sent.events(), h.outbox(auction.id).await, "each sent once");
    let mut tx = store.begin().await.expect("begin");
    let left = tx
        .undelivered_events(h.now() + TimeDelta::days(1), 100)
        .await
        .expect("undelivered");
    assert!(left.is_empty(), "all marked delivered: {left:?}");
    let counts = RelayCounts {
        sent: 3,
        ..RelayCounts::default()
    };
    assert_eq!(sender.counts(), counts, "read from the engine's side");
}

/// A relay counts the events its queue had no room for and those the
/// notifier refused; its recovery path then sends them all.
pub async fn relay_counts_a_full_queue_and_failed_sends<S: Store>(store: S) {
    let store = Arc::new(store);
    let h = Harness::new(Arc::clone(&store));
    h.fund(ALICE, 1_000).await;
    let auction = h.create(h.national(100, 10)).await;
    let sent = Arc::new(RecordingNotifier::default());
    let config = RelayConfig {
        queue: 1,
        grace: std::time::Duration::ZERO,
        clock: h.clock.clone(),
        ..RelayConfig::default()
    };
    let relay = Relay::new(Arc::clone(&store), Arc::clone(&sent), config);
    let engine = Engine::with_config(
        Arc::clone(&store),
        relay.sender(),
        h.engine.config().clone(),
    );
    for amount in [100, 110, 120] {
        let bid = bid_of(auction.id, ALICE, amount);
        engine.place_bid(bid, None).await.expect("bid");
    }
    // The relay is not running: the first event waits in its queue.
    let full = RelayCounts {
        queue_full: 2,
        ..RelayCounts::default()
    };
    assert_eq!(relay.counts(), full);

    sent.set_failing(true);
    assert!(relay.deliver_undelivered().await.is_err(), "refused");
    let failed = RelayCounts { failed: 3, ..full };
    assert_eq!(relay.counts(), failed);
    sent.set_failing(false);
    assert_eq!(relay.deliver_undelivered().await.expect("recovery"), 3);
    let recovered = RelayCounts {
        recovered: 3,
        ..failed
    };
    assert_eq!(relay.counts(), recovered);
    assert_eq!(sent.events(), h.outbox(auction.id).await);
}

/// Bids that arrive while their auction's transaction is in flight are
/// decided together in the next one, in arrival order, each with the
/// answer it would have had alone: refusals, replays and key conflicts
/// included.
pub async fn coalesced_bids_share_one_transaction<S: Store>(store: S) {
    let store = GatedStore::new(store);
    let h = Harness::new(Arc::clone(&store));
    for user in [ALICE, BOB, CAROL] {
        h.fund(user, 1_000).await;
    }
    let auction = h.create(h.national(100, 10)).await;
    let begun = store.begun();
    let key = |key: &str| Some(IdempotencyKey::new(key).expect("a key"));
    let plan = [
        (ALICE, 100, key("a-1")), // alone: held at the gate
        (BOB, 110, None),         // from here on, one batch
        (CAROL, 110, None),       // too low once Bob leads
        (CAROL, 120, key("c-1")),
        (CAROL, 120, key("c-1")), // the same request again
        (CAROL, 150, key("c-1")), // the key for another bid
        (ALICE, 100, key("a-1")), // the first request again: from the store
        (ALICE, 130, key("a-2")), // a new key of hers
        (BOB, 140, key("a-1")),   // the same key text, Bob's own
    ];
    store.close();
    let mut tasks = Vec::new();
    for (queued, (bidder, units, key)) in plan.into_iter().enumerate() {
        let engine = h.engine.clone();
        let bid = bid_of(auction.id, bidder, units);
        tasks.push(tokio::spawn(
            async move { engine.place_bid(bid, key).await },
        ));
        let arrived = || match queued {
            0 => store.waiting() == 1,
            _ => h.engine.waiting_bids(auction.id) == queued,
        };
        while !arrived() {
            tokio::task::yield_now().await;
        }
    }
    store.open();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("a bid task"));
    }

    assert_eq!(store.begun() - begun, 2, "one transaction per batch");
    for (index, units) in [(0, 100), (1, 110), (3, 120), (7, 130), (8, 140)] {
        let price = results[index]
            .as_ref()
            .ok()
            .map(|r| r.auction.current_price);
        assert_eq!(
            price,
            Some(money(units)),
            "bid {index}: {:?}",
            results[index]
        );
    }
    assert_eq!(
        results[2].as_ref().err().and_then(EngineError::rejection),
        Some(&Rejection::BidTooLow {
            min_next_bid: money(120)
        })
    );
    assert_eq!(
        results[4].as_ref().ok(),
        results[3].as_ref().ok(),
        "a replay"
    );
    assert!(matches!(
        results[5],
        Err(EngineError::IdempotencyConflict { .. })
    ));
    assert_eq!(
        results[6].as_ref().ok(),
        results[0].as_ref().ok(),
        "a replay of a committed bid"
    );
    let amounts: Vec<(u64, Money)> = h
        .delivered(auction.id)
        .iter()
        .map(|event| match &event.public[0] {
            PublicEvent::BidPlaced { amount, .. } => (event.seq, *amount),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        amounts,
        [
            (1, money(100)),
            (2, money(110)),
            (3, money(120)),
            (4, money(130)),
            (5, money(140))
        ]
    );
    assert_eq!(h.delivered(auction.id), h.outbox(auction.id).await);
    assert_eq!(h.wallet(BOB).await.locked, money(140));
    for user in [ALICE, CAROL] {
        assert_eq!(h.wallet(user).await.locked, Money::ZERO);
    }
    h.assert_books(&[SELLER, ALICE, BOB, CAROL], money(3_000))
        .await;
    // The replayed key answers later too, from the store.
    let again = h
        .engine
        .place_bid(bid_of(auction.id, CAROL, 120), key("c-1"))
        .await;
    assert_eq!(again.ok(), results[3].as_ref().ok().cloned());
}

async fn next_seqs(watch: &mut Watch, n: usize) -> Vec<u64> {
    let mut seqs = Vec::new();
    for _ in 0..n {
        let delivery = tokio::time::timeout(std::time::Duration::from_secs(10), watch.next())
            .await
            .expect("an event within 10 s");
        match delivery {
            Delivery::Event(event) => seqs.push(event.seq),
            Delivery::Resync => panic!("unexpected resync after {seqs:?}"),
        }
    }
    seqs
}

/// Lists come newest first and pages do not overlap.
pub async fn reads_are_paged_newest_first<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 10_000).await;
    let mut auctions = Vec::new();
    for _ in 0..3 {
        auctions.push(h.create(h.national(100, 10)).await.id);
    }
    for (i, auction) in auctions.iter().enumerate() {
        h.bid(*auction, ALICE, 100 + i as u64).await.expect("bid");
    }
    let bids = h
        .engine
        .user_bids(ALICE, Page::new(0, 2))
        .await
        .expect("bids");
    let seen: Vec<_> = bids.iter().map(|b| b.auction_id).collect();
    assert_eq!(seen, [auctions[2], auctions[1]]);
    let rest = h
        .engine
        .user_bids(ALICE, Page::new(2, 2))
        .await
        .expect("bids");
    assert_eq!(
        rest.iter().map(|b| b.auction_id).collect::<Vec<_>>(),
        [auctions[0]]
    );
    assert!(h
        .engine
        .user_bids(BOB, Page::default())
        .await
        .expect("none")
        .is_empty());

    let history = h
        .engine
        .wallet(ALICE, Page::new(1, 2))
        .await
        .expect("wallet")
        .history;
    let amounts: Vec<_> = history.iter().map(|e| e.amount).collect();
    assert_eq!(amounts, [money(101), money(100)]);
    let listed = h
        .engine
        .list_auctions(&AuctionFilter::default(), Page::new(1, 1))
        .await;
    assert_eq!(
        listed
            .expect("list")
            .iter()
            .map(|a| a.id)
            .collect::<Vec<_>>(),
        [auctions[1]]
    );
}

/// The double-spend test of NeighborBid's first version: one wallet with 10,000 bids 10,000 on
/// two auctions at the same moment; exactly one bid wins, every time.
pub async fn double_spend_across_auctions<S: Store>(store: S) {
    let h = Harness::new(store);
    const ROUNDS: u64 = 100;
    for round in 0..ROUNDS {
        let spender = UserId(1_000 + round as i64);
        h.fund(spender, 10_000).await;
        let first = h.create(h.national(10_000, 100)).await;
        let second = h.create(h.national(10_000, 100)).await;
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let tasks: Vec<_> = [first.id, second.id]
            .into_iter()
            .map(|auction| {
                let (engine, barrier) = (h.engine.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let bid = bid_of(auction, spender, 10_000);
                    engine.place_bid(bid, None).await
                })
            })
            .collect();
        let mut accepted = 0;
        for task in tasks {
            match task.await.expect("task") {
                Ok(_) => accepted += 1,
                Err(EngineError::Rejected(Rejection::InsufficientFunds { available, .. })) => {
                    assert_eq!(available, Money::ZERO);
                }
                Err(other) => panic!("round {round}: unexpected {other:?}"),
            }
        }
        assert_eq!(accepted, 1, "round {round}: exactly one bid may win");
        let wallet = h.wallet(spender).await;
        assert_eq!(
            (wallet.balance, wallet.locked),
            (Money::ZERO, money(10_000))
        );
    }
}

/// Many tasks bidding on a few auctions from shared wallets: every accepted
/// bid beats the one before, and money is conserved.
pub async fn concurrent_bidding_conserves_money<S: Store>(store: S) {
    let h = Harness::new(store);
    let bidders: Vec<UserId> = (10..16).map(UserId).collect();
    for &bidder in &bidders {
        h.fund(bidder, 2_000).await;
    }
    let mut auctions = Vec::new();
    for _ in 0..3 {
        auctions.push(h.create(h.national(10, 1)).await.id);
    }
    let tasks: Vec<_> = (0..8u64)
        .map(|task| {
            let (engine, bidders, auctions) = (h.engine.clone(), bidders.clone(), auctions.clone());
            tokio::spawn(async move {
                let mut accepted = 0;
                for i in 0..25u64 {
                    let auction = auctions[((task + i) % 3) as usize];
                    let bidder = bidders[((task * 7 + i) % 6) as usize];
                    let view = engine.auction(auction, Page::first(1)).await.expect("view");
                    let bid = PlaceBid {
                        auction_id: auction,
                        bidder,
                        bidder_region: None,
                        amount: view.auction.min_next_bid(),
                        max_amount: None,
                    };
                    accepted += usize::from(outcome(engine.place_bid(bid, None).await));
                }
                accepted
            })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        accepted += task.await.expect("task");
    }
    assert!(accepted > 0);
    let mut recorded = 0;
    for &auction in &auctions {
        let view = h
            .engine
            .auction(auction, Page::new(0, 500))
            .await
            .expect("view");
        recorded += view.bids.len();
        let amounts: Vec<Money> = view.bids.iter().rev().map(|b| b.amount).collect();
        assert!(
            amounts.windows(2).all(|w| w[0] < w[1]),
            "accepted bids only rise"
        );
        let seqs: Vec<u64> = view.bids.iter().rev().map(|b| b.seq).collect();
        assert_eq!(seqs, (1..=view.auction.seq).collect::<Vec<_>>());
        let holds: Vec<_> = {
            let mut all = Vec::new();
            for &bidder in &bidders {
                let view = h
                    .engine
                    .wallet(bidder, Page::first(1))
                    .await
                    .expect("wallet");
                all.extend(
                    view.holds
                        .into_iter()
                        .filter(|hold| hold.auction_id == auction),
                );
            }
            all
        };
        match view.auction.leader {
            Some(leader) => {
                assert_eq!(holds.len(), 1);
                assert_eq!(
                    (holds[0].user, holds[0].amount),
                    (leader, view.auction.current_price)
                );
            }
            None => assert!(holds.is_empty()),
        }
    }
    assert_eq!(recorded, accepted);
    let mut everyone = bidders.clone();
    everyone.push(SELLER);
    h.assert_books(&everyone, money(12_000)).await;
}

/// What a failed command must not change.
#[derive(Debug, PartialEq)]
struct Books {
    auction: crate::AuctionView,
    outbox: Vec<Event>,
    wallets: Vec<WalletView>,
    delivered: usize,
}

async fn books<S: Store>(h: &Harness<S>, auction: AuctionId, users: &[UserId]) -> Books {
    let mut wallets = Vec::new();
    for &user in users {
        wallets.push(h.wallet_view(user).await);
    }
    Books {
        auction: h
            .engine
            .auction(auction, Page::default())
            .await
            .expect("auction"),
        outbox: h.outbox(auction).await,
        wallets,
        delivered: h.notifier.events().len(),
    }
}

/// A store failure after any write of a bid, a deposit or a settlement
/// rolls the whole command back: same wallets and history, no bid, no
/// outbox row, no idempotency record, nothing delivered. The same request
/// then succeeds, once. (A failed settlement sets its auction aside for
/// the closer's next pass, which settles it.)
pub async fn failures_leave_no_trace<S: Store>(store: S) {
    let store = FaultyStore::new(store);
    let faulty = store.switch();
    // A settlement that failed is tried again on the closer's next pass.
    let h = Harness::configured(store, |config| {
        config.stuck_retry_delay = std::time::Duration::ZERO;
    });
    let parties = [ALICE, BOB, CAROL, SELLER];
    h.fund(ALICE, 500).await;
    h.fund(BOB, 500).await;
    let auction = h.create(h.national(100, 10)).await.id;
    h.bid(auction, ALICE, 100).await.expect("first bid");

    let injected = |result: Result<_, EngineError>, fault: Fault| match result {
        Err(EngineError::Store(error)) if error.kind() == StoreErrorKind::Other => {}
        other => panic!("{fault:?}: expected the injected failure, got {other:?}"),
    };
    let outbid = bid_of(auction, BOB, 110);
    for fault in Fault::ALL {
        let before = books(&h, auction, &parties).await;
        faulty.arm(fault);
        injected(
            h.engine
                .place_bid(outbid.clone(), key("bob-outbids"))
                .await
                .map(|_| ()),
            fault,
        );
        assert!(faulty.fired(), "a bid reaches {fault:?}");
        assert_eq!(books(&h, auction, &parties).await, before, "{fault:?}");
    }
    let receipt = h
        .engine
        .place_bid(outbid.clone(), key("bob-outbids"))
        .await
        .expect("the same request now succeeds");
    let replay = h.engine.place_bid(outbid, key("bob-outbids")).await;
    assert_eq!(replay.expect("replay"), receipt);
    assert_eq!(h.wallet(BOB).await.locked, money(110));
    assert_eq!(h.wallet(ALICE).await.locked, Money::ZERO);

    let deposit = Deposit {
        user: CAROL,
        amount: money(50),
    };
    for fault in [
        Fault::SaveWallet,
        Fault::AppendEntry,
        Fault::SaveIdempotency,
        Fault::Commit,
    ] {
        let before = books(&h, auction, &parties).await;
        faulty.arm(fault);
        let result = h
            .engine
            .deposit(deposit.clone(), key("carol-tops-up"))
            .await;
        injected(result.map(|_| ()), fault);
        assert!(faulty.fired(), "a deposit reaches {fault:?}");
        assert_eq!(books(&h, auction, &parties).await, before, "{fault:?}");
    }
    h.engine
        .deposit(deposit, key("carol-tops-up"))
        .await
        .expect("the deposit now succeeds");

    h.clock.advance(TimeDelta::hours(2));
    for fault in [
        Fault::UpdateAuction,
        Fault::SaveWallet,
        Fault::AppendEntry,
        Fault::SetHold,
        Fault::AppendEvent,
        Fault::Commit,
    ] {
        let before = books(&h, auction, &parties).await;
        faulty.arm(fault);
        // The closer sets the auction aside and goes on; the pass is fine.
        let closed = h.engine.close_due_auctions(10).await.expect("a pass");
        assert!(closed.is_empty(), "{fault:?}");
        assert!(faulty.fired(), "a settlement reaches {fault:?}");
        let stuck = h.engine.stuck_auctions();
        assert_eq!(stuck.len(), 1, "{fault:?}");
        assert!(stuck[0].error.contains("injected fault"), "{stuck:?}");
        assert_eq!(books(&h, auction, &parties).await, before, "{fault:?}");
    }
    let closed = h.engine.close_due_auctions(10).await.expect("close");
    assert_eq!(closed.len(), 1);
    assert!(h.engine.stuck_auctions().is_empty(), "settled at last");
    assert_eq!(h.wallet(SELLER).await.balance, money(110));
    h.assert_books(&parties, money(1_050)).await;
}

/// A command whose commit conflicts is retried in a fresh transaction, up
/// to [`RetryPolicy::max_attempts`] attempts in all, coalesced bids too:
/// one that conflicts on every attempt fails with the conflict and leaves
/// no trace, one that conflicts on all but the last succeeds once.
pub async fn conflicts_are_retried_up_to_the_limit<S: Store>(store: S) {
    let store = FaultyStore::new(store);
    let faulty = store.switch();
    let h = Harness::configured(store, |config| {
        config.retry = RetryPolicy {
            max_attempts: 3,
            base_delay: std::time::Duration::ZERO,
            max_delay: std::time::Duration::ZERO,
        };
    });
    let parties = [ALICE, BOB, SELLER];
    h.fund(ALICE, 500).await;
    let auction = h.create(h.national(100, 10)).await.id;
    let deposit = Deposit {
        user: BOB,
        amount: money(50),
    };
    let conflicted = |result: Result<(), EngineError>, what: &str| match result {
        Err(EngineError::Store(error)) if error.kind() == StoreErrorKind::Conflict => {}
        other => panic!("{what}: expected the conflict, got {other:?}"),
    };

    let before = books(&h, auction, &parties).await;
    faulty.conflict_commits(3);
    let result = h.engine.deposit(deposit.clone(), None).await;
    conflicted(result.map(drop), "a deposit");
    assert_eq!(faulty.conflicts_left(), 0, "a deposit tried three times");
    faulty.conflict_commits(3);
    conflicted(h.bid(auction, ALICE, 100).await.map(drop), "a bid");
    assert_eq!(faulty.conflicts_left(), 0, "a bid tried three times");
    assert_eq!(books(&h, auction, &parties).await, before);

    faulty.conflict_commits(2);
    h.engine
        .deposit(deposit, None)
        .await
        .expect("the third try");
    faulty.conflict_commits(2);
    h.bid(auction, ALICE, 100).await.expect("the third try");
    assert_eq!(h.wallet(BOB).await.balance, money(50));
    assert_eq!(h.wallet(ALICE).await.locked, money(100));
    assert_eq!(h.outbox(auction).await.len(), 1, "one bid, one event");
    h.assert_books(&parties, money(550)).await;
}

/// Two closers running at once on the same due auctions settle each one
/// exactly once, and a closer asked for at most `n` settles no more.
pub async fn closers_race<S: Store>(store: S) {
    let h = Harness::new(store);
    let bidders = [ALICE, BOB, CAROL];
    for bidder in bidders {
        h.fund(bidder, 10_000).await;
    }
    let mut auctions = Vec::new();
    let mut sales = Money::ZERO;
    for i in 0..12u64 {
        let auction = h.create(h.national(100, 10)).await.id;
        if i % 3 != 2 {
            h.bid(auction, bidders[(i % 3) as usize], 100 + i)
                .await
                .expect("bid");
            sales = sales.checked_add(money(100 + i)).expect("small");
        }
        auctions.push(auction);
    }
    h.clock.advance(TimeDelta::hours(2));
    let first = h.engine.close_due_auctions(2).await.expect("close two");
    let mut closed: Vec<_> = first.iter().map(|auction| auction.id).collect();
    assert_eq!(closed.len(), 2, "at most as many as asked");
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let closers: Vec<_> = (0..2)
        .map(|_| {
            let (engine, barrier) = (h.engine.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                engine.close_due_auctions(usize::MAX).await
            })
        })
        .collect();
    for closer in closers {
        let auctions = closer.await.expect("closer task").expect("close");
        closed.extend(auctions.into_iter().map(|auction| auction.id));
    }
    closed.sort();
    assert_eq!(closed, auctions, "every due auction closed by exactly one");
    for &auction in &auctions {
        let endings = h
            .outbox(auction)
            .await
            .iter()
            .flat_map(|event| &event.public)
            .filter(|public| matches!(public, PublicEvent::Sold { .. } | PublicEvent::Unsold))
            .count();
        assert_eq!(endings, 1, "{auction} settled once");
        assert!(!h.auction(auction).await.is_live(h.now()));
    }
    assert_eq!(
        h.wallet(SELLER).await.balance,
        sales,
        "the seller is paid once"
    );
    let mut everyone = bidders.to_vec();
    everyone.push(SELLER);
    h.assert_books(&everyone, money(30_000)).await;
    assert!(h
        .engine
        .close_due_auctions(10)
        .await
        .expect("nothing left")
        .is_empty());
}

/// Every policy is stored and read back exactly, with the state it drives
/// (maximum, reserve met, extensions, the extended end).
pub async fn policies_round_trip<S: Store>(store: S) {
    use crate::{Band, BuyNowPolicy, ClosePolicy, Increment};
    let h = Harness::new(store);
    let percent = Increment::Percent {
        percent: "2.5".parse().expect("decimal"),
        scale: 2,
    };
    let custom_ladder = Increment::Ladder {
        bands: vec![
            Band {
                from: Money::ZERO,
                step: "0.10".parse().expect("amount"),
            },
            Band {
                from: money(10),
                step: "1.50".parse().expect("amount"),
            },
        ],
    };
    let policies = [
        AuctionPolicy::fixed(money(10)),
        AuctionPolicy {
            increment: Increment::ebay_ladder(),
            reserve_price: Some("250.50".parse().expect("amount")),
            close: ClosePolicy::Soft {
                window_secs: 300,
                extend_by_secs: 600,
                max_extensions: 7,
            },
            buy_now: BuyNowPolicy::UntilReserveMet,
        },
        AuctionPolicy {
            increment: percent,
            buy_now: BuyNowPolicy::UntilFirstBid,
            ..AuctionPolicy::fixed(money(1))
        },
        AuctionPolicy {
            increment: custom_ladder,
            ..AuctionPolicy::fixed(money(1))
        },
    ];
    h.fund(ALICE, 10_000).await;
    for policy in policies {
        let created = h
            .create(CreateAuction {
                policy: policy.clone(),
                buy_now_price: Some(money(900)),
                ..h.national(100, 1)
            })
            .await;
        assert_eq!(created.policy, policy);
        assert_eq!(h.auction(created.id).await, created, "{policy:?}");
        let bid = PlaceBid {
            max_amount: Some(money(300)),
            ..bid_of(created.id, ALICE, 100)
        };
        let receipt = h.engine.place_bid(bid, None).await.expect("bid");
        assert_eq!(h.auction(created.id).await, receipt.auction, "{policy:?}");
    }

    // A soft close: the extended end is stored, and the closer waits for it.
    let soft = h
        .create(CreateAuction {
            policy: AuctionPolicy {
                close: ClosePolicy::Soft {
                    window_secs: 60,
                    extend_by_secs: 120,
                    max_extensions: 3,
                },
                ..AuctionPolicy::fixed(money(1))
            },
            ..h.national(100, 1)
        })
        .await;
    h.clock.set(soft.ends_at - TimeDelta::seconds(30));
    let extended = h.bid(soft.id, ALICE, 100).await.expect("late bid");
    assert_eq!(extended.auction.extensions, 1);
    assert_eq!(extended.auction.ends_at, h.now() + TimeDelta::seconds(120));
    assert_eq!(h.auction(soft.id).await, extended.auction);
    h.clock.set(soft.ends_at);
    let closed = h.engine.close_due_auctions(100).await.expect("close");
    assert!(
        closed.iter().all(|auction| auction.id != soft.id),
        "the closer reads the current end, not the original"
    );
    h.clock.set(extended.auction.ends_at);
    let closed = h.engine.close_due_auctions(100).await.expect("close");
    assert!(closed.iter().any(|auction| auction.id == soft.id));
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

/// A proxy contest through the engine and the store: the leader's maximum
/// answers a lower bid (which is written, and refused to its bidder, also
/// on replay), escrow holds the maximum, and settlement charges only the
/// final price.
pub async fn proxy_bids_through_the_store<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 1_000).await;
    h.fund(BOB, 1_000).await;
    let auction = h.create(h.national(10, 1)).await.id;
    let alice = PlaceBid {
        max_amount: Some(money(50)),
        ..bid_of(auction, ALICE, 10)
    };
    h.engine.place_bid(alice, None).await.expect("alice leads");
    assert_eq!(h.wallet(ALICE).await.locked, money(50));

    let bob = bid_of(auction, BOB, 30);
    let answered = h.engine.place_bid(bob.clone(), key("bob-30")).await;
    let expected = Rejection::OutbidByProxy {
        price: money(31),
        min_next_bid: money(32),
    };
    assert_eq!(rejection(answered), expected);
    let replay = h.engine.place_bid(bob, key("bob-30")).await;
    assert_eq!(rejection(replay), expected, "a replay answers the same");
    let state = h.auction(auction).await;
    assert_eq!(
        (state.current_price, state.leader, state.max_bid, state.seq),
        (money(31), Some(ALICE), Some(money(50)), 2)
    );
    let history = h
        .engine
        .auction(auction, Page::default())
        .await
        .expect("view")
        .bids;
    assert_eq!(
        history
            .iter()
            .map(|bid| (bid.bidder, bid.amount, bid.auto))
            .collect::<Vec<_>>(),
        [(ALICE, money(31), true), (ALICE, money(10), false)]
    );
    assert_eq!(h.wallet(BOB).await.locked, Money::ZERO);
    assert_eq!(
        h.delivered(auction).len(),
        2,
        "the automatic raise was announced"
    );

    h.clock.advance(TimeDelta::hours(2));
    h.engine.close_due_auctions(10).await.expect("close");
    let alice = h.wallet(ALICE).await;
    assert_eq!((alice.balance, alice.locked), (money(969), Money::ZERO));
    assert_eq!(h.wallet(SELLER).await.balance, money(31));
    h.assert_books(&[ALICE, BOB, SELLER], money(2_000)).await;
}

/// Browsing: text search ignoring case (wildcards taken literally),
/// category, region with its sub-regions, price range on the current price
/// (compared as decimals), phase, seller, every sort, paging and counts,
/// alone and combined; category and attributes round-trip.
pub async fn browsing_filters_sorts_and_counts<S: Store>(store: S) {
    let h = Harness::new(store);
    let now = h.now();
    let item =
        |title: &str, description: &str, category: &str, scope: Scope, start: &str| CreateAuction {
            title: title.into(),
            description: description.into(),
            category: Some(category.into()),
            scope,
            start_price: start.parse().expect("price"),
            ..national_auction(now, 1, 1)
        };
    let local = |region: &str| Scope::Local {
        region: Region::new(region),
    };
    let hours = TimeDelta::hours;
    let mut desk = item(
        "Walnut desk",
        "solid wood",
        "furniture",
        local("seoul/mapo/mangwon"),
        "9",
    );
    desk.attributes = [("condition", "a"), ("shipping", "buyer")]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    desk.ends_at = now + hours(4);
    let desk = h.create(desk).await;
    let mut chair = item(
        "Oak chair",
        "Matches the DESK",
        "furniture",
        local("seoul/mapo/hapjeong"),
        "10",
    );
    chair.ends_at = now + hours(1);
    let chair = h.create(chair).await;
    let mut camera = item(
        "Camera",
        "50mm lens",
        "electronics",
        local("seoul/gangnam/yeoksam"),
        "9.5",
    );
    camera.seller = BOB;
    camera.ends_at = now + hours(3);
    let camera = h.create(camera).await;
    let mut bike = item("Bike 100%_off", "", "sports", Scope::National, "100.25");
    bike.ends_at = now + hours(2);
    let bike = h.create(bike).await;
    let mut lamp = item("Lamp", "", "furniture", Scope::National, "100.5");
    lamp.starts_at = Some(now + hours(1));
    lamp.ends_at = now + hours(5);
    let lamp = h.create(lamp).await;
    let mut rug = item("Rug", "", "home", Scope::National, "1000");
    rug.ends_at = now + hours(6);
    let rug = h.create(rug).await;
    h.engine
        .cancel_auction(
            CancelAuction {
                auction_id: rug.id,
                seller: SELLER,
            },
            None,
        )
        .await
        .expect("cancel");

    let fetched = h.auction(desk.id).await;
    assert_eq!(fetched, desk, "category and attributes round-trip");
    assert_eq!(fetched.attributes["shipping"], "buyer");

    let ids = |filter: AuctionFilter, page: Page| {
        let engine = h.engine.clone();
        async move {
            let found = engine.list_auctions(&filter, page).await.expect("list");
            let count = engine.count_auctions(&filter).await.expect("count");
            (found.iter().map(|a| a.id).collect::<Vec<_>>(), count)
        }
    };
    let all = Page::default();
    let region = |name: &str| {
        Some(ScopeFilter::Local {
            region: Some(Region::new(name)),
        })
    };
    let price = |text: &str| Some(text.parse::<Money>().expect("price"));
    let cases: Vec<(&str, AuctionFilter, Vec<AuctionId>)> = vec![
        (
            "everything",
            AuctionFilter::default(),
            vec![rug.id, lamp.id, bike.id, camera.id, chair.id, desk.id],
        ),
        (
            "text in title or description, any case",
            AuctionFilter {
                text: Some("desk".into()),
                ..Default::default()
            },
            vec![chair.id, desk.id],
        ),
        (
            "% is literal",
            AuctionFilter {
                text: Some("100%".into()),
                ..Default::default()
            },
            vec![bike.id],
        ),
        (
            "_ is literal",
            AuctionFilter {
                text: Some("_".into()),
                ..Default::default()
            },
            vec![bike.id],
        ),
        (
            "category",
            AuctionFilter {
                category: Some("furniture".into()),
                ..Default::default()
            },
            vec![lamp.id, chair.id, desk.id],
        ),
        (
            "a district holds its neighbourhoods",
            AuctionFilter {
                scope: region("seoul/mapo"),
                ..Default::default()
            },
            vec![chair.id, desk.id],
        ),
        (
            "a city holds its districts",
            AuctionFilter {
                scope: region("seoul"),
                ..Default::default()
            },
            vec![camera.id, chair.id, desk.id],
        ),
        (
            "a neighbourhood",
            AuctionFilter {
                scope: region("seoul/mapo/mangwon"),
                ..Default::default()
            },
            vec![desk.id],
        ),
        (
            "a name prefix is not a parent",
            AuctionFilter {
                scope: region("seoul/map"),
                ..Default::default()
            },
            vec![],
        ),
        (
            "price range, bounds included, as decimals",
            AuctionFilter {
                min_price: price("9.50"),
                max_price: price("100.25"),
                ..Default::default()
            },
            vec![bike.id, camera.id, chair.id],
        ),
        (
            "scheduled",
            AuctionFilter {
                phase: Some(Phase::Scheduled),
                ..Default::default()
            },
            vec![lamp.id],
        ),
        (
            "open",
            AuctionFilter {
                phase: Some(Phase::Open),
                ..Default::default()
            },
            vec![bike.id, camera.id, chair.id, desk.id],
        ),
        (
            "ended",
            AuctionFilter {
                phase: Some(Phase::Ended),
                ..Default::default()
            },
            vec![rug.id],
        ),
        (
            "seller",
            AuctionFilter {
                seller: Some(BOB),
                ..Default::default()
            },
            vec![camera.id],
        ),
        (
            "combined: category, district and price",
            AuctionFilter {
                category: Some("furniture".into()),
                scope: region("seoul/mapo"),
                min_price: price("10"),
                ..Default::default()
            },
            vec![chair.id],
        ),
        (
            "combined: text and a sort",
            AuctionFilter {
                text: Some("DESK".into()),
                sort: AuctionSort::PriceDesc,
                ..Default::default()
            },
            vec![chair.id, desk.id],
        ),
        (
            "price ascending",
            AuctionFilter {
                sort: AuctionSort::PriceAsc,
                ..Default::default()
            },
            vec![desk.id, camera.id, chair.id, bike.id, lamp.id, rug.id],
        ),
        (
            "price descending",
            AuctionFilter {
                sort: AuctionSort::PriceDesc,
                ..Default::default()
            },
            vec![rug.id, lamp.id, bike.id, chair.id, camera.id, desk.id],
        ),
        (
            "ending soonest",
            AuctionFilter {
                sort: AuctionSort::EndingSoonest,
                ..Default::default()
            },
            vec![chair.id, bike.id, camera.id, desk.id, lamp.id, rug.id],
        ),
    ];
    for (case, filter, expected) in cases {
        let count = expected.len() as u64;
        assert_eq!(ids(filter, all).await, (expected, count), "{case}");
    }

    let by_price = AuctionFilter {
        sort: AuctionSort::PriceAsc,
        ..Default::default()
    };
    assert_eq!(
        ids(by_price.clone(), Page::new(2, 2)).await,
        (vec![chair.id, bike.id], 6),
        "a page of a sorted list; the count ignores paging"
    );
    // The current price counts, not the start price.
    h.fund(ALICE, 1_000).await;
    h.bid(bike.id, ALICE, 150).await.expect("bid");
    assert_eq!(
        ids(by_price, all).await.0,
        [desk.id, camera.id, chair.id, lamp.id, bike.id, rug.id]
    );
    // Phases follow the clock.
    h.clock.advance(hours(1));
    let open = AuctionFilter {
        phase: Some(Phase::Open),
        ..Default::default()
    };
    assert_eq!(
        ids(open, all).await.0,
        [lamp.id, bike.id, camera.id, desk.id]
    );
    let ended = AuctionFilter {
        phase: Some(Phase::Ended),
        ..Default::default()
    };
    assert_eq!(
        ids(ended, all).await.0,
        [rug.id, chair.id],
        "past its end, not yet settled"
    );
}

/// The seller may end a running auction early: it settles with the leader
/// (or unsold), the end moves to now, and the history records it.
pub async fn seller_ends_early<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 500).await;
    h.fund(BOB, 500).await;
    let end = |auction_id, seller| EndEarly { auction_id, seller };
    let sold = h.create(h.national(100, 10)).await;
    h.bid(sold.id, ALICE, 120).await.expect("alice");
    h.bid(sold.id, BOB, 130).await.expect("bob");
    let by_bidder = h.engine.end_early(end(sold.id, BOB), None).await;
    assert_eq!(rejection(by_bidder), Rejection::NotSeller);

    h.clock.advance(TimeDelta::minutes(10));
    let key = IdempotencyKey::new("end-1").expect("key");
    let ended = h
        .engine
        .end_early(end(sold.id, SELLER), Some(key.clone()))
        .await
        .expect("end early");
    assert_eq!(
        (ended.status, ended.ends_at, ended.closed_at),
        (AuctionStatus::Sold, h.now(), Some(h.now()))
    );
    let replay = h.engine.end_early(end(sold.id, SELLER), Some(key)).await;
    assert_eq!(replay.expect("replay"), ended, "a replay answers the same");
    let last = h.outbox(sold.id).await.pop().expect("event");
    assert_eq!(
        last.public,
        [
            PublicEvent::EndedEarly { ends_at: h.now() },
            PublicEvent::Sold {
                winner: BOB,
                price: money(130)
            }
        ]
    );
    assert_eq!(h.wallet(BOB).await.balance, money(370));
    assert_eq!(h.wallet(ALICE).await.balance, money(500));
    assert_eq!(h.wallet(SELLER).await.balance, money(130));
    let again = h.engine.end_early(end(sold.id, SELLER), None).await;
    assert_eq!(rejection(again).code(), "auction_ended");

    let quiet = h.create(h.national(100, 10)).await;
    let too_soon = h.engine.end_early(end(quiet.id, SELLER), None).await;
    assert_eq!(
        rejection(too_soon).code(),
        "auction_not_started",
        "before bidding starts, the seller cancels instead"
    );
    h.clock.advance(TimeDelta::seconds(1));
    let unsold = h
        .engine
        .end_early(end(quiet.id, SELLER), None)
        .await
        .expect("end early");
    assert_eq!(unsold.status, AuctionStatus::Unsold);
    let events = h.outbox(quiet.id).await;
    assert_eq!(
        events[0].public,
        [
            PublicEvent::EndedEarly { ends_at: h.now() },
            PublicEvent::Unsold
        ]
    );

    let late = h.create(h.national(100, 10)).await;
    h.clock.advance(TimeDelta::hours(1));
    let result = h.engine.end_early(end(late.id, SELLER), None).await;
    assert_eq!(
        rejection(result),
        Rejection::AuctionEnded {
            ended_at: late.ends_at
        },
        "past its end it is the closer's"
    );
    // The refusal released the auction's row before answering, so the
    // closer (which skips locked rows) takes it at once.
    let closed = h.engine.close_due_auctions(10).await.expect("close");
    assert_eq!(closed.len(), 1);
    h.assert_books(&[SELLER, ALICE, BOB], money(1_000)).await;
}

/// Every kind of command at once on the same auctions and wallets: bids
/// (some with a maximum), buy-nows, the seller cancelling and ending early,
/// deposits and withdrawals, and the closer while time passes. Whatever
/// wins each race, every auction ends closed once, its events gapless, no
/// hold is left, the seller holds exactly the prices paid, and the books
/// balance.
pub async fn mixed_commands_race<S: Store>(store: S) {
    let h = Harness::new(store);
    let bidders: Vec<UserId> = (10..16).map(UserId).collect();
    for &bidder in &bidders {
        h.fund(bidder, 1_000).await;
    }
    let funded = 1_000 * bidders.len() as i64;
    // Two with a buy-now price, one the seller cancels, one the seller
    // ends early, one that ends while the others run.
    let mut auctions = Vec::new();
    for n in 0..5 {
        let mut create = h.national(10, 5);
        if n < 2 {
            create.buy_now_price = Some(money(300));
        }
        if n == 4 {
            create.ends_at = h.now() + TimeDelta::minutes(30);
        }
        auctions.push(h.create(create).await.id);
    }
    let mut bidding = Vec::new();
    for (task, &bidder) in bidders.iter().enumerate() {
        let (engine, auctions) = (h.engine.clone(), auctions.clone());
        bidding.push(tokio::spawn(async move {
            for round in 0..30 {
                let auction = auctions[(task + round) % auctions.len()];
                // Let the seller's cancellation race the first bids.
                if auction == auctions[2] && round < 8 {
                    continue;
                }
                if round == 15 && task < 2 {
                    let buy = BuyNow {
                        auction_id: auctions[task],
                        buyer: bidder,
                        buyer_region: None,
                    };
                    outcome(engine.buy_now(buy, None).await);
                    continue;
                }
                let view = engine.auction(auction, Page::first(1)).await;
                let amount = view.expect("auction").auction.min_next_bid();
                let extra = money(5 * (round as u64 % 3));
                let amount = amount.checked_add(extra).expect("amount");
                let bid = PlaceBid {
                    auction_id: auction,
                    bidder,
                    bidder_region: None,
                    amount,
                    max_amount: (round % 4 == 0)
                        .then(|| amount.checked_add(money(50)).expect("max")),
                };
                outcome(engine.place_bid(bid, None).await);
            }
        }));
    }
    let (engine, clock, seller_auctions) = (h.engine.clone(), h.clock.clone(), auctions.clone());
    let others = tokio::spawn(async move {
        let mut net = funded;
        for round in 0..20 {
            let user = UserId(10 + round % 6);
            let deposit = Deposit {
                user,
                amount: money(50),
            };
            net += 50 * i64::from(outcome(engine.deposit(deposit, None).await));
            let withdraw = Withdraw {
                user,
                amount: money(120),
            };
            net -= 120 * i64::from(outcome(engine.withdraw(withdraw, None).await));
            match round {
                5 => {
                    let cancel = CancelAuction {
                        auction_id: seller_auctions[2],
                        seller: SELLER,
                    };
                    outcome(engine.cancel_auction(cancel, None).await);
                }
                10 => {
                    let end = EndEarly {
                        auction_id: seller_auctions[3],
                        seller: SELLER,
                    };
                    outcome(engine.end_early(end, None).await);
                }
                12 => {
                    clock.advance(TimeDelta::minutes(45));
                    engine.close_due_auctions(10).await.expect("close");
                }
                _ => tokio::task::yield_now().await,
            }
        }
        net
    });
    for task in bidding {
        task.await.expect("a bidder");
    }
    let net = others.await.expect("the others");
    h.clock.advance(TimeDelta::hours(2));
    h.engine.close_due_auctions(10).await.expect("close");

    let (mut paid, mut bids) = (Money::ZERO, 0);
    for &id in &auctions {
        let view = h.engine.auction(id, Page::new(0, 500)).await.expect("view");
        bids += view.bids.len();
        let auction = view.auction;
        match auction.status {
            AuctionStatus::Open => panic!("auction {id} is still open"),
            AuctionStatus::Sold | AuctionStatus::BoughtNow => {
                assert!(auction.leader.is_some(), "{auction:?}");
                paid = paid.checked_add(auction.current_price).expect("paid");
            }
            AuctionStatus::Unsold | AuctionStatus::Cancelled => {
                assert!(view.bids.is_empty(), "{auction:?}");
            }
        }
        let events = h.outbox(id).await;
        let seqs: Vec<u64> = events.iter().map(|event| event.seq).collect();
        assert_eq!(seqs, (1..=auction.seq).collect::<Vec<_>>(), "auction {id}");
        // Each decision was timed under the auction's lock: in the order
        // of the decisions, times never go back.
        let times: Vec<Timestamp> = events.iter().map(|event| event.at).collect();
        assert!(
            times.windows(2).all(|pair| pair[0] <= pair[1]),
            "auction {id}: {times:?}"
        );
        let closing = |event: &&Event| {
            event.public.iter().any(|fact| {
                matches!(
                    fact,
                    PublicEvent::Sold { .. }
                        | PublicEvent::Unsold
                        | PublicEvent::BoughtNow { .. }
                        | PublicEvent::Cancelled
                )
            })
        };
        assert_eq!(events.iter().filter(closing).count(), 1, "auction {id}");
    }
    assert!(bids > 0, "no bid was accepted");
    for &bidder in &bidders {
        let wallet = h.wallet_view(bidder).await;
        assert!(wallet.holds.is_empty(), "{bidder} holds {:?}", wallet.holds);
    }
    assert_eq!(h.wallet(SELLER).await.balance, paid, "the seller's takings");
    let mut everyone = bidders;
    everyone.push(SELLER);
    let net = Money::units(u64::try_from(net).expect("more deposited than withdrawn"));
    h.assert_books(&everyone, net).await;
}

/// Wallets filled to [`Wallet::LIMIT`] by deposits are still outbid,
/// bought out and paid: only deposits are held to the limit, counting what
/// is locked, so no refund, release or sale is ever refused for it.
pub async fn full_wallets_keep_the_market_moving<S: Store>(store: S) {
    let limit = Wallet::LIMIT;
    let h = Harness::configured(store, |config| {
        config.currency = crate::Currency::new(2, limit);
    });
    let plus = |amount: Money, units: u64| amount.checked_add(money(units)).expect("sum");
    let deposit = |user: UserId, amount: Money| h.engine.deposit(Deposit { user, amount }, None);
    for user in [SELLER, ALICE, BOB] {
        deposit(user, limit).await.expect("filled to the limit");
    }
    let auction = h.create(h.national(100, 10)).await;
    h.bid(auction.id, ALICE, 100)
        .await
        .expect("a full wallet bids");
    let more = deposit(ALICE, money(1)).await;
    assert_eq!(
        rejection(more),
        Rejection::BalanceLimit,
        "locked money counts"
    );
    h.bid(auction.id, BOB, 110)
        .await
        .expect("a full leader is outbid");
    assert_eq!(h.wallet(ALICE).await.balance, limit, "refunded in full");

    let mut cmd = h.national(100, 10);
    cmd.buy_now_price = Some(money(500));
    let bought = h.create(cmd).await;
    h.bid(bought.id, ALICE, 100).await.expect("alice leads");
    let buy = BuyNow {
        auction_id: bought.id,
        buyer: BOB,
        buyer_region: None,
    };
    h.engine
        .buy_now(buy, None)
        .await
        .expect("a full leader is bought out");
    assert_eq!(h.wallet(ALICE).await.balance, limit);

    h.clock.advance(TimeDelta::hours(1));
    let closed = h.engine.close_due_auctions(10).await.expect("close");
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].status, AuctionStatus::Sold);
    assert!(h.engine.stuck_auctions().is_empty());
    let seller = h.wallet(SELLER).await;
    assert_eq!(seller.balance, plus(limit, 610), "a full seller is paid");
    let more = deposit(SELLER, money(1)).await;
    assert_eq!(rejection(more), Rejection::BalanceLimit);
    let total = plus(limit, 0)
        .checked_add(limit)
        .and_then(|sum| sum.checked_add(limit))
        .expect("sum");
    h.assert_books(&[SELLER, ALICE, BOB], total).await;
}

/// An auction the closer cannot settle (here its seller's wallet, written
/// past the engine as a damaged database could hold it, cannot take the
/// price) is set aside, listed and retried after its delay, while every
/// other due auction settles; once it can be settled, it is.
pub async fn a_stuck_auction_holds_up_no_other<S: Store>(store: S) {
    let h = Harness::configured(store, |config| {
        config.stuck_retry_delay = std::time::Duration::from_millis(300);
        config.currency = crate::Currency::new(2, Money::MAX);
    });
    h.fund(ALICE, 1_000).await;
    h.fund(CAROL, 1).await;
    let mut tx = h.engine.store().begin().await.expect("begin");
    tx.lock_wallets(&[CAROL]).await.expect("lock");
    let brim = Wallet {
        user: CAROL,
        balance: Money::MAX,
        locked: Money::ZERO,
    };
    tx.save_wallet(&brim).await.expect("save");
    tx.commit().await.expect("commit");

    let mut cmd = h.national(100, 10);
    cmd.seller = CAROL;
    cmd.ends_at = h.now() + TimeDelta::minutes(30);
    let stuck = h.create(cmd).await;
    let other = h.create(h.national(100, 10)).await;
    h.bid(stuck.id, ALICE, 100).await.expect("bid");
    h.bid(other.id, ALICE, 200).await.expect("bid");
    h.clock.advance(TimeDelta::hours(1));

    let closed = h
        .engine
        .close_due_auctions(10)
        .await
        .expect("the closer goes on");
    assert_eq!(closed.iter().map(|a| a.id).collect::<Vec<_>>(), [other.id]);
    let listed = h.engine.stuck_auctions();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].auction_id, listed[0].failures), (stuck.id, 1));
    assert!(listed[0].error.contains("balance limit"), "{listed:?}");
    assert!(listed[0].retry_in > std::time::Duration::ZERO);
    assert_eq!(h.auction(stuck.id).await.status, AuctionStatus::Open);
    assert_eq!(h.wallet(ALICE).await.locked, money(100), "its hold is kept");

    let again = h.engine.close_due_auctions(10).await.expect("close");
    assert!(again.is_empty());
    assert_eq!(
        h.engine.stuck_auctions()[0].failures,
        1,
        "not tried before its delay"
    );

    let withdraw = Withdraw {
        user: CAROL,
        amount: money(1_000),
    };
    h.engine.withdraw(withdraw, None).await.expect("withdraw");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let closed = h.engine.close_due_auctions(10).await.expect("close");
    assert_eq!(closed.iter().map(|a| a.id).collect::<Vec<_>>(), [stuck.id]);
    assert_eq!(closed[0].status, AuctionStatus::Sold);
    assert!(
        h.engine.stuck_auctions().is_empty(),
        "forgotten once settled"
    );
    assert_eq!(h.wallet(ALICE).await.locked, Money::ZERO);
}

/// [`Engine::run_closer`] settles an auction once its end passes, with
/// nobody calling the closer by hand, and returns once told to stop.
pub async fn the_closer_settles_auctions_as_they_end<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 500).await;
    let auction = h.create(h.national(100, 10)).await;
    h.bid(auction.id, ALICE, 120).await.expect("bid");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let engine = h.engine.clone();
    let closer = tokio::spawn(async move {
        let every = std::time::Duration::from_millis(10);
        engine
            .run_closer(every, async move {
                let _ = stopped.await;
            })
            .await;
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(h.auction(auction.id).await.status, AuctionStatus::Open);
    h.clock.advance(TimeDelta::hours(1));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while h.auction(auction.id).await.status == AuctionStatus::Open {
        assert!(std::time::Instant::now() < deadline, "never settled");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(h.auction(auction.id).await.status, AuctionStatus::Sold);
    assert_eq!(h.wallet(SELLER).await.balance, money(120));
    stop.send(()).expect("the closer runs");
    tokio::time::timeout(std::time::Duration::from_secs(10), closer)
        .await
        .expect("the closer stops when told")
        .expect("the closer task");
}
