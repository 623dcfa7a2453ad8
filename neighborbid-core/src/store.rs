//! The storage traits every backend implements.
//!
//! A [`Store`] opens transactions. A transaction value implements four
//! traits, one per concern, so a backend can be built and tested a piece at
//! a time: [`AuctionStore`] and [`WalletLedger`] (what a command locks and
//! writes), [`Outbox`] (events after commit) and [`Queries`] (read-only
//! browsing). The engine drives a transaction through
//! load -> decide -> write -> [`Transaction::commit`]. Every decision about
//! an auction is written by one method,
//! [`Transaction::write_decisions`], whether it is one command's, a
//! coalesced batch of bids' or a settlement's. Dropping a transaction
//! without committing rolls it back, so a refused or failed command leaves
//! no trace.
//!
//! **Locking contract.** `lock_*` methods lock what they return until the
//! transaction ends (Postgres: `SELECT ... FOR UPDATE`; the memory store
//! validates at commit instead). The engine always locks one auction first,
//! then wallets in ascending user id, so no two transactions can wait on
//! each other in a cycle.
//!
//! **Retries.** A backend reports a failure caused by a concurrent
//! transaction (serialization failure, deadlock, lock timeout, a duplicate
//! idempotency key, a lost optimistic race) as
//! [`StoreErrorKind::Conflict`](crate::StoreErrorKind::Conflict); the engine
//! then retries the whole transaction.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

mod formats;

pub use formats::{StoredEvent, EVENT_FORMAT};

use crate::auction::{Auction, AuctionStatus, Bid, Region};
use crate::command::{IdempotencyKey, IdempotencyRecord, Receipt};
use crate::error::{Rejection, StoreError};
use crate::event::{Event, EventId};
use crate::ids::{AuctionId, UserId};
use crate::money::Money;
use crate::rules::{self, Decision, WalletDecision};
use crate::wallet::{Hold, LedgerEntry, Wallet};
use crate::Timestamp;

/// A window into a list, newest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// Items to skip.
    pub offset: u32,
    /// Items to return, at most [`Page::MAX_LIMIT`].
    pub limit: u32,
}

impl Page {
    /// The largest page.
    pub const MAX_LIMIT: u32 = 500;

    /// A page, its limit clamped to 1..=[`Page::MAX_LIMIT`].
    pub fn new(offset: u32, limit: u32) -> Page {
        Page {
            offset,
            limit: limit.clamp(1, Page::MAX_LIMIT),
        }
    }

    /// The first `limit` items.
    pub fn first(limit: u32) -> Page {
        Page::new(0, limit)
    }
}

impl Default for Page {
    fn default() -> Self {
        Page::first(50)
    }
}

/// What one [`Outbox::forget_events`] call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForgottenEvents {
    /// Outbox events deleted.
    pub events: u64,
    /// The last auction looked at: pass it as the next call's `after`.
    /// `None` when no auction was left to look at.
    pub last_auction: Option<AuctionId>,
}

/// Which kind of auction a listing wants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScopeFilter {
    /// National auctions.
    National,
    /// Local auctions, of one region or of any.
    Local {
        /// Only this region, when given.
        region: Option<Region>,
    },
}

/// Where an auction is in its life, as a browsing visitor sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Open, but bidding has not started yet.
    Scheduled,
    /// Taking bids now.
    Open,
    /// Past its end or closed (sold, unsold, bought, cancelled), settled or
    /// not.
    Ended,
}

impl Phase {
    /// The phase of `auction` at `now`.
    pub fn of(auction: &Auction, now: Timestamp) -> Phase {
        if auction.bidding.status != AuctionStatus::Open || auction.bidding.ends_at <= now {
            Phase::Ended
        } else if auction.starts_at > now {
            Phase::Scheduled
        } else {
            Phase::Open
        }
    }
}

/// The order of a listing. Ties go to the newer auction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuctionSort {
    /// Newest first.
    #[default]
    Newest,
    /// Lowest current price first.
    PriceAsc,
    /// Highest current price first.
    PriceDesc,
    /// Earliest end first.
    EndingSoonest,
}

impl AuctionSort {
    /// Orders two auctions. Backends sorting in Rust use this; SQL backends
    /// must agree with it.
    pub fn compare(self, a: &Auction, b: &Auction) -> std::cmp::Ordering {
        let newer = b.id.cmp(&a.id);
        match self {
            AuctionSort::Newest => newer,
            AuctionSort::PriceAsc => a
                .bidding
                .current_price
                .cmp(&b.bidding.current_price)
                .then(newer),
            AuctionSort::PriceDesc => b
                .bidding
                .current_price
                .cmp(&a.bidding.current_price)
                .then(newer),
            AuctionSort::EndingSoonest => a.bidding.ends_at.cmp(&b.bidding.ends_at).then(newer),
        }
    }
}

/// Which auctions a listing wants, and in what order; every field that is
/// set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuctionFilter {
    /// Only this status.
    pub status: Option<AuctionStatus>,
    /// Only this scope. A local region matches its sub-regions too (see
    /// [`Region::contains`]).
    pub scope: Option<ScopeFilter>,
    /// Only this seller's auctions.
    pub seller: Option<UserId>,
    /// Only auctions whose title or description contains this text,
    /// ignoring case.
    #[serde(default)]
    pub text: Option<String>,
    /// Only this category.
    #[serde(default)]
    pub category: Option<String>,
    /// Only auctions whose current price is at least this.
    #[serde(default)]
    pub min_price: Option<Money>,
    /// Only auctions whose current price is at most this.
    #[serde(default)]
    pub max_price: Option<Money>,
    /// Only auctions in this phase at `now`.
    #[serde(default)]
    pub phase: Option<Phase>,
    /// The moment `phase` is judged at; [`Engine::list_auctions`] sets it
    /// from its clock.
    ///
    /// [`Engine::list_auctions`]: crate::Engine::list_auctions
    #[serde(default)]
    pub now: Timestamp,
    /// The order.
    #[serde(default)]
    pub sort: AuctionSort,
}

impl AuctionFilter {
    /// Whether `auction` matches. Backends filtering in Rust use this;
    /// SQL backends must agree with it.
    pub fn matches(&self, auction: &Auction) -> bool {
        use crate::auction::Scope;
        let scope_ok = match (&self.scope, &auction.listing.scope) {
            (None, _) => true,
            (Some(ScopeFilter::National), Scope::National) => true,
            (Some(ScopeFilter::Local { region: None }), Scope::Local { .. }) => true,
            (Some(ScopeFilter::Local { region: Some(want) }), Scope::Local { region }) => {
                want.contains(region)
            }
            _ => false,
        };
        let text_ok = self.text.as_deref().is_none_or(|text| {
            let text = text.to_lowercase();
            auction.listing.title.to_lowercase().contains(&text)
                || auction.listing.description.to_lowercase().contains(&text)
        });
        scope_ok
            && text_ok
            && self
                .status
                .is_none_or(|status| status == auction.bidding.status)
            && self
                .seller
                .is_none_or(|seller| seller == auction.listing.seller)
            && self
                .category
                .as_ref()
                .is_none_or(|c| auction.listing.category.as_ref() == Some(c))
            && self
                .min_price
                .is_none_or(|min| auction.bidding.current_price >= min)
            && self
                .max_price
                .is_none_or(|max| auction.bidding.current_price <= max)
            && self
                .phase
                .is_none_or(|phase| phase == Phase::of(auction, self.now))
    }

    /// Refuses text that no auction can hold (control characters, which
    /// [`rules::create_auction`] keeps out): every store then answers the
    /// same, where Postgres would fail on a NUL.
    pub fn check(&self) -> Result<(), Rejection> {
        let region = match &self.scope {
            Some(ScopeFilter::Local {
                region: Some(region),
            }) => Some(region.as_str()),
            _ => None,
        };
        let texts = [self.text.as_deref(), self.category.as_deref(), region];
        if texts
            .into_iter()
            .flatten()
            .all(|text| rules::plain_text(text, &[]))
        {
            Ok(())
        } else {
            Err(Rejection::InvalidQuery {
                reason: "a filter may not hold control characters".to_owned(),
            })
        }
    }
}

/// A storage backend: opens transactions.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The transaction value; it owns its connection (or lock), so it may
    /// outlive the borrow that began it.
    type Tx: Transaction + 'static;

    /// Starts a transaction.
    async fn begin(&self) -> Result<Self::Tx, StoreError>;

    /// Starts a transaction that only reads, from one consistent snapshot.
    /// Backends may run it without taking write locks (SQLite does); the
    /// default is [`begin`](Store::begin).
    async fn begin_read(&self) -> Result<Self::Tx, StoreError> {
        self.begin().await
    }
}

/// A shared store (one engine and a relay on the same store, say).
#[async_trait]
impl<S: Store> Store for std::sync::Arc<S> {
    type Tx = S::Tx;

    async fn begin(&self) -> Result<S::Tx, StoreError> {
        (**self).begin().await
    }

    async fn begin_read(&self) -> Result<S::Tx, StoreError> {
        (**self).begin_read().await
    }
}

/// An open transaction. Dropping it without [`commit`](Transaction::commit)
/// rolls back everything it wrote.
#[async_trait]
pub trait Transaction: AuctionStore + WalletLedger + Outbox + Queries + Send + Sized {
    /// Makes every write of this transaction durable and visible at once.
    async fn commit(self) -> Result<(), StoreError>;

    /// The time to judge this transaction's decisions by, asked once it
    /// holds the locks they need: `None` (the default) for the engine's
    /// [`Clock`](crate::Clock). A store that several processes share may
    /// answer with its database's clock, so that every process decides
    /// alike whatever its own clock says; it should read it with the lock
    /// it took last rather than in a round trip of its own.
    async fn clock(&mut self) -> Result<Option<Timestamp>, StoreError> {
        Ok(None)
    }

    /// Undoes every write and releases every lock before returning.
    /// Dropping the transaction also rolls it back, but a backend may do
    /// that later (sqlx does on the connection's next use), so rows it
    /// locked can stay locked a moment longer.
    async fn rollback(self) -> Result<(), StoreError> {
        drop(self);
        Ok(())
    }

    /// Once `auction` is locked: its open holds (by user), and the wallets
    /// of `parties` and of every hold's owner, locked as
    /// [`lock_wallets`](WalletLedger::lock_wallets) locks them (see
    /// [`rules::wallets_to_lock`]). Backends may override this to do both
    /// in one round trip (each is time the auction stays locked); the
    /// result must be the same.
    async fn lock_parties(
        &mut self,
        auction: AuctionId,
        parties: &[UserId],
    ) -> Result<(Vec<Hold>, Vec<Wallet>), StoreError> {
        let holds = self.auction_holds(auction).await?;
        let wallets = self
            .lock_wallets(&rules::wallets_to_lock(&holds, parties))
            .await?;
        Ok((holds, wallets))
    }

    /// What a batch of bids reads once `auction` is locked: the idempotency
    /// record stored under each of `keys`, in their order, and what
    /// [`lock_parties`](Self::lock_parties) reads and locks for `bidders`.
    /// Backends may override this to do it in one round trip; the result
    /// must be the same.
    async fn batch_reads(
        &mut self,
        auction: AuctionId,
        keys: &[(UserId, &IdempotencyKey)],
        bidders: &[UserId],
    ) -> Result<BatchReads, StoreError> {
        let mut records = Vec::with_capacity(keys.len());
        for (user, key) in keys {
            records.push(self.load_idempotency(*user, key).await?);
        }
        let (holds, wallets) = self.lock_parties(auction, bidders).await?;
        Ok(BatchReads {
            holds,
            wallets,
            records,
        })
    }

    /// Writes consecutive decisions about one auction, the only way a
    /// decision is written (one command's, a batch of bids', a
    /// settlement's): every bid, history entry and event (the outbox), the
    /// last state of the auction and of each wallet and hold touched (see
    /// [`BatchWrites`]), and the idempotency `records` of keyed commands,
    /// each with its bid as stored ([`BatchRecord::with_bid`]). Returns the
    /// stored bids, one per decision, with the ids they got.
    ///
    /// A stored key already under `records` is a retryable conflict, here
    /// or at commit, as in [`save_idempotency`](AuctionStore::save_idempotency).
    async fn write_decisions(
        &mut self,
        decisions: &[Decision],
        records: &[BatchRecord<'_>],
    ) -> Result<Vec<Option<Bid>>, StoreError>;
}

/// What [`Transaction::batch_reads`] returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchReads {
    /// The auction's open holds, by user.
    pub holds: Vec<Hold>,
    /// The locked wallets, ascending by user.
    pub wallets: Vec<Wallet>,
    /// The record under each key asked for, in order.
    pub records: Vec<Option<IdempotencyRecord>>,
}

/// The idempotency record of a keyed command written with its decision
/// ([`Transaction::write_decisions`]). A bid's receipt names the bid of
/// decision `decision`, which has no id until the batch is written.
#[derive(Clone, Debug)]
pub struct BatchRecord<'a> {
    /// The decision of the batch the command led to.
    pub decision: usize,
    /// Who sent the command.
    pub user: UserId,
    /// The command's key.
    pub key: &'a IdempotencyKey,
    /// The record, its receipt's bid not yet stored (no id).
    pub record: IdempotencyRecord,
}

impl BatchRecord<'_> {
    /// The record with its receipt's bid as stored: `stored` holds the
    /// stored bids of the batch, one per decision.
    pub fn with_bid(&self, stored: &[Option<Bid>]) -> IdempotencyRecord {
        self.clone().into_stored(stored)
    }

    /// [`with_bid`](Self::with_bid), without a copy.
    pub fn into_stored(self, stored: &[Option<Bid>]) -> IdempotencyRecord {
        let mut record = self.record;
        if let Receipt::BidPlaced(receipt) = &mut record.receipt {
            receipt.bid = stored.get(self.decision).cloned().flatten();
        }
        record
    }
}

/// What consecutive decisions about one auction leave to write: the last
/// state of the auction and of each wallet and hold they touch, and every
/// bid, history entry and event, in order: what a backend's
/// [`Transaction::write_decisions`] writes.
#[derive(Clone, Debug)]
pub struct BatchWrites<'a> {
    /// The auction after the last decision.
    pub auction: &'a Auction,
    /// The bids recorded, in order (ascending `seq`).
    pub bids: Vec<&'a Bid>,
    /// The last state of each wallet touched, by ascending user.
    pub wallets: Vec<&'a Wallet>,
    /// Every history entry, in order.
    pub entries: Vec<&'a LedgerEntry>,
    /// The last amount of each hold touched (zero: closed), by key.
    pub holds: Vec<&'a Hold>,
    /// Every event, in order.
    pub events: Vec<&'a Event>,
}

impl<'a> BatchWrites<'a> {
    /// The writes of `decisions`; `None` when there are none.
    pub fn of(decisions: &'a [Decision]) -> Option<BatchWrites<'a>> {
        let last = decisions.last()?;
        let mut wallets = std::collections::BTreeMap::new();
        let mut holds = std::collections::BTreeMap::new();
        for decision in decisions {
            for wallet in &decision.wallets {
                wallets.insert(wallet.user, wallet);
            }
            for hold in &decision.holds {
                holds.insert((hold.auction_id, hold.user), hold);
            }
        }
        Some(BatchWrites {
            auction: &last.auction,
            bids: decisions.iter().filter_map(|d| d.bid.as_ref()).collect(),
            wallets: wallets.into_values().collect(),
            entries: decisions.iter().flat_map(|d| &d.entries).collect(),
            holds: holds.into_values().collect(),
            events: decisions.iter().map(|d| &d.event).collect(),
        })
    }
}

/// Auctions and idempotency records, as a command's transaction reads,
/// locks and writes them.
#[async_trait]
pub trait AuctionStore: Send {
    /// Inserts a new auction, assigning its id (the given id is ignored).
    async fn insert_auction(&mut self, auction: &Auction) -> Result<Auction, StoreError>;

    /// Locks and returns an auction.
    async fn lock_auction(&mut self, id: AuctionId) -> Result<Option<Auction>, StoreError>;

    /// Locks and returns the open auction ending first whose `ends_at` is
    /// at or before `now`, leaving out those in `skip` (auctions the closer
    /// has set aside) and those other transactions hold locked, so several
    /// closers can work side by side. `None` when there is none.
    async fn claim_due_auction(
        &mut self,
        now: Timestamp,
        skip: &[AuctionId],
    ) -> Result<Option<Auction>, StoreError>;

    /// The record stored under `(user, key)`, if any.
    async fn load_idempotency(
        &mut self,
        user: UserId,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// Stores a record under `(user, key)`. If a concurrent transaction
    /// stored one first, this (or the commit) fails with a conflict, and the
    /// engine's retry then finds that record.
    async fn save_idempotency(
        &mut self,
        user: UserId,
        key: &IdempotencyKey,
        record: &IdempotencyRecord,
    ) -> Result<(), StoreError>;

    /// Deletes at most `limit` idempotency records stored `age` or more ago
    /// and returns how many it deleted. Their age is measured by the
    /// store's own clock, the one that stamped them when they were stored
    /// (not the engine's [`Clock`](crate::Clock)). A request retried with
    /// a forgotten key is carried out again, as new.
    async fn forget_idempotency(
        &mut self,
        age: std::time::Duration,
        limit: u32,
    ) -> Result<u64, StoreError>;
}

/// Wallets, their history and escrow holds, as a command's transaction
/// locks and writes them.
#[async_trait]
pub trait WalletLedger: Send {
    /// Locks and returns the wallets of `users` (given ascending, without
    /// duplicates), in that order. A user without a wallet gets an empty
    /// one.
    async fn lock_wallets(&mut self, users: &[UserId]) -> Result<Vec<Wallet>, StoreError>;

    /// The open holds on an auction. The caller has locked the auction,
    /// which guards its holds.
    async fn auction_holds(&mut self, auction: AuctionId) -> Result<Vec<Hold>, StoreError>;

    /// Writes a decision about one locked wallet alone (a deposit's or a
    /// withdrawal's): its new balances and its history entry. Decisions
    /// about auctions go through [`Transaction::write_decisions`].
    async fn write_wallet_decision(&mut self, decision: &WalletDecision) -> Result<(), StoreError>;
}

/// The outbox: every event is written in the transaction of its change
/// (by [`Transaction::write_decisions`]) and read from here by clients
/// filling a gap and by the [`Relay`](crate::Relay), which hands it to the
/// notifier and marks it delivered.
#[async_trait]
pub trait Outbox: Send {
    /// An auction's events with `seq > after`, oldest first, at most `limit`.
    async fn events_after(
        &mut self,
        id: AuctionId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError>;

    /// Up to `limit` committed events not yet marked delivered whose time
    /// is at or before `before`, by auction and sequence number. Backends
    /// with row locks lock them until the transaction ends, skipping rows
    /// another transaction holds, so relays in several processes split the
    /// work instead of sending everything twice.
    async fn undelivered_events(
        &mut self,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError>;

    /// Marks events delivered at `at`. Unknown or already delivered events
    /// are left as they are.
    async fn mark_delivered(&mut self, events: &[EventId], at: Timestamp)
        -> Result<(), StoreError>;

    /// Deletes the outbox events of the first `limit` auctions with ids
    /// above `after` that closed at or before `closed_before`, keeping any
    /// event of theirs from after that time. Their bids, holds and ledger
    /// entries stay: the outbox only carries changes to the notifier and to
    /// clients filling a gap, and a long-closed auction needs neither. The
    /// database refuses to delete an open auction's events.
    async fn forget_events(
        &mut self,
        closed_before: Timestamp,
        after: AuctionId,
        limit: u32,
    ) -> Result<ForgottenEvents, StoreError>;
}

/// What browsing, pages and the API read. Nothing here locks or writes; a
/// backend may serve it from a read-only snapshot
/// ([`Store::begin_read`]).
#[async_trait]
pub trait Queries: Send {
    /// An auction, without locking it.
    async fn get_auction(&mut self, id: AuctionId) -> Result<Option<Auction>, StoreError>;

    /// Auctions matching `filter`, in its order.
    async fn list_auctions(
        &mut self,
        filter: &AuctionFilter,
        page: Page,
    ) -> Result<Vec<Auction>, StoreError>;

    /// How many auctions match `filter`.
    async fn count_auctions(&mut self, filter: &AuctionFilter) -> Result<u64, StoreError>;

    /// An auction's bids, newest first.
    async fn auction_bids(&mut self, id: AuctionId, page: Page) -> Result<Vec<Bid>, StoreError>;

    /// A user's bids on all auctions, newest first.
    async fn user_bids(&mut self, user: UserId, page: Page) -> Result<Vec<Bid>, StoreError>;

    /// A wallet, without locking it (empty for an unknown user).
    async fn get_wallet(&mut self, user: UserId) -> Result<Wallet, StoreError>;

    /// A wallet's history, newest first.
    async fn wallet_history(
        &mut self,
        user: UserId,
        page: Page,
    ) -> Result<Vec<LedgerEntry>, StoreError>;

    /// A user's open holds, by auction id.
    async fn user_holds(&mut self, user: UserId) -> Result<Vec<Hold>, StoreError>;
}
