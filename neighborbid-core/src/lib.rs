//! # neighborbid-core
//!
//! The NeighborBid auction engine: bidding with escrow, refunds of the
//! outbid leader, buy-now, settlement, idempotent commands, and events that
//! go out only after the change committed. Backends plug in through the
//! traits of [`store`] ([`Store`], [`Transaction`] and one trait per
//! concern); delivery through [`Notifier`]. This crate knows no database, broker or web framework:
//! `neighborbid-sqlx`, `neighborbid-redis` and `neighborbid-axum` adapt it.
//!
//! Every command runs as **load -> decide -> write -> commit -> notify**:
//! the [`Engine`] locks the auction, then the wallets involved in ascending
//! id order, asks a pure function in [`rules`] for a decision, writes it in
//! the same transaction, commits, and only then hands the event to the
//! notifier. A refused command changes nothing; a notifier failure never
//! undoes a commit.
//!
//! ## Embedding
//!
//! ```
//! use chrono::{TimeDelta, Utc};
//! use neighborbid_core::{
//!     AuctionPolicy, BroadcastNotifier, CreateAuction, Deposit, Engine, Listing, MemoryStore,
//!     Money, PlaceBid, PublicEvent, Scope, UserId,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), neighborbid_core::EngineError> {
//! let notifier = BroadcastNotifier::default();
//! let mut events = notifier.subscribe();
//! let engine = Engine::new(MemoryStore::new(), notifier);
//!
//! let (seller, alice) = (UserId(1), UserId(2));
//! let auction = engine
//!     .create_auction(
//!         CreateAuction {
//!             listing: Listing {
//!                 description: "Barely ridden".into(),
//!                 scope: Scope::National, // or Scope::Local { region }
//!                 ..Listing::new(
//!                     seller,
//!                     "Vintage bicycle",
//!                     Money::units(100),
//!                     AuctionPolicy::fixed(Money::units(10)),
//!                 )
//!             },
//!             starts_at: None,
//!             ends_at: Utc::now() + TimeDelta::hours(1),
//!         },
//!         None,
//!     )
//!     .await?;
//!
//! engine.deposit(Deposit { user: alice, amount: Money::units(500) }, None).await?;
//! let receipt = engine
//!     .place_bid(
//!         PlaceBid {
//!             auction_id: auction.id,
//!             bidder: alice,
//!             bidder_region: None,
//!             amount: Money::units(120),
//!             max_amount: None, // or Some(max): the engine bids for alice up to it
//!         },
//!         None,
//!     )
//!     .await?;
//! assert_eq!(receipt.auction.bidding.current_price, Money::units(120));
//!
//! // The bid is held in escrow...
//! let wallet = engine.wallet(alice, Default::default()).await?.wallet;
//! assert_eq!((wallet.balance, wallet.locked), (Money::units(380), Money::units(120)));
//!
//! // ...and watchers heard about it after the commit.
//! let event = events.recv().await.expect("an event");
//! assert_eq!(event.seq, 1);
//! assert!(matches!(
//!     event.public[0],
//!     PublicEvent::BidPlaced { bidder, min_next_bid, .. }
//!         if bidder == alice && min_next_bid == Money::units(130)
//! ));
//! # Ok(())
//! # }
//! ```
//!
//! ## Delivering events
//!
//! A [`Hub`] is a notifier with per-auction rooms for live watchers
//! (WebSockets): bounded, ordered, duplicates dropped. A [`Relay`] takes
//! events from the store's outbox to any notifier and marks them
//! delivered, so a process that dies after commit loses none;
//! `neighborbid-redis` gives it a Redis publisher, and a subscriber that
//! feeds other processes' events into the local hub.
//!
//! ## Stores
//!
//! [`MemoryStore`] is a real, thread-safe backend for embedding, tests and
//! simulation. With the `testkit` feature, `testkit` holds the conformance
//! suite every store runs against itself: in a test file, give
//! `conformance_tests!` the path of an `async fn` that returns a fresh
//! store (and a guard that cleans up after the test), and it generates one
//! `#[tokio::test]` per behaviour.

mod auction;
mod clock;
mod command;
mod engine;
mod error;
mod event;
mod hub;
mod ids;
mod memory;
pub mod money;
mod notify;
mod policy;
mod relay;
pub mod rules;
pub mod store;
mod wallet;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use auction::{
    Attributes, Auction, AuctionStatus, Bid, Bidding, Listing, Region, Scope, UnknownStatus,
};
pub use clock::{to_micros, Clock, ManualClock, SystemClock, Timestamp};
pub use command::{
    BidReceipt, BuyNow, CancelAuction, Command, CreateAuction, Deposit, EndEarly, IdempotencyKey,
    IdempotencyRecord, InvalidIdempotencyKey, PlaceBid, Receipt, Withdraw,
};
pub use engine::{AuctionView, Engine, EngineConfig, RetryPolicy, StuckAuction, WalletView};
pub use error::{EngineError, Rejection, StoreError, StoreErrorKind};
pub use event::{Event, EventId, PrivateEvent, PrivateNotice, PublicEvent};
pub use hub::{Delivery, Hub, Watch};
pub use ids::{AuctionId, BidId, UserId};
pub use memory::{MemoryStore, MemoryTx};
pub use money::{Currency, CurrencyCode, Money, MoneyError};
pub use notify::{BroadcastNotifier, NoopNotifier, Notifier, NotifyError};
pub use policy::{AuctionPolicy, Band, BuyNowPolicy, ClosePolicy, Increment};
pub use relay::{Relay, RelayConfig, RelayCounts, RelayError, RelaySender};
pub use store::{AuctionFilter, AuctionSort, Page, Phase, ScopeFilter, Store, Transaction};
pub use wallet::{EntryKind, Hold, LedgerEntry, LedgerError, Wallet};
