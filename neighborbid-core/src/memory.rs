//! [`MemoryStore`]: a real, thread-safe, transactional store in memory.
//!
//! Transactions are optimistic: a transaction reads committed rows, buffers
//! its writes, and at commit checks under one short lock that no row it
//! locked changed since it read it. If one did, the commit fails with a
//! [`StoreErrorKind::Conflict`](crate::StoreErrorKind::Conflict) and the
//! engine retries, so the outcome is the same as with Postgres row locks:
//! every committed transaction saw the state it changed. Dropping a
//! transaction discards its writes. The shared lock is never held across an
//! `await`, so any async runtime can drive it.
//!
//! The store also checks the locking contract: writing an auction or a
//! wallet that the transaction did not lock is an error.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::auction::{Auction, Bid};
use crate::command::{IdempotencyKey, IdempotencyRecord};
use crate::error::{StoreError, StoreErrorKind};
use crate::event::{Event, EventId};
use crate::ids::{AuctionId, BidId, UserId};
use crate::money::Money;
use crate::rules::{Decision, WalletDecision};
use crate::store::{
    AuctionFilter, AuctionStore, BatchRecord, ForgottenEvents, Outbox, Page, Queries, Store,
    Transaction, WalletLedger,
};
use crate::wallet::{Hold, LedgerEntry, Wallet};
use crate::Timestamp;

#[cfg(loom)]
use loom::sync::{Arc, Mutex, MutexGuard};
#[cfg(not(loom))]
use std::sync::{Arc, Mutex, MutexGuard};

/// An in-memory store. Clones share the same data.
#[derive(Clone, Debug)]
pub struct MemoryStore {
    shared: Arc<Mutex<State>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore {
            shared: Arc::new(Mutex::new(State::default())),
        }
    }
}

fn lock(shared: &Mutex<State>) -> MutexGuard<'_, State> {
    // State is only changed inside `commit`, which cannot panic halfway
    // through a change; a poisoned lock still guards consistent data.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug, Default)]
struct State {
    last_auction_id: i64,
    last_bid_id: i64,
    /// Bumped by every commit that changes rows; versions come from it.
    commits: u64,
    // Keyed by ids: B-trees compare integers where a hash map would run
    // SipHash on every access of a bid's path.
    auctions: BTreeMap<AuctionId, Versioned<Auction>>,
    wallets: BTreeMap<UserId, Versioned<Wallet>>,
    bids: BTreeMap<AuctionId, Vec<Bid>>,
    bids_by_user: BTreeMap<UserId, Vec<(AuctionId, usize)>>,
    history: BTreeMap<UserId, Vec<LedgerEntry>>,
    holds_by_auction: BTreeMap<AuctionId, BTreeMap<UserId, Money>>,
    holds_by_user: BTreeMap<(UserId, AuctionId), Money>,
    events: BTreeMap<AuctionId, Vec<Event>>,
    undelivered: BTreeSet<EventId>,
    // Client-chosen keys: the randomly seeded hasher resists collisions.
    // Each record with the time of its commit.
    idempotency: HashMap<(UserId, IdempotencyKey), (IdempotencyRecord, Instant)>,
    /// Emptied row sets of finished transactions, for the next ones.
    spare_rows: Vec<Rows>,
}

#[derive(Debug)]
struct Versioned<T> {
    version: u64,
    value: T,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Row {
    Auction(AuctionId),
    Wallet(UserId),
}

impl State {
    /// The version of a row; 0 when it does not exist.
    fn version(&self, row: Row) -> u64 {
        match row {
            Row::Auction(id) => self.auctions.get(&id).map_or(0, |r| r.version),
            Row::Wallet(user) => self.wallets.get(&user).map_or(0, |r| r.version),
        }
    }

    fn set_hold(&mut self, hold: &Hold) {
        let by_auction = self.holds_by_auction.entry(hold.auction_id).or_default();
        let key = (hold.user, hold.auction_id);
        if hold.amount.is_zero() {
            by_auction.remove(&hold.user);
            self.holds_by_user.remove(&key);
        } else {
            by_auction.insert(hold.user, hold.amount);
            self.holds_by_user.insert(key, hold.amount);
        }
    }
}

/// A transaction on a [`MemoryStore`].
#[derive(Debug)]
pub struct MemoryTx {
    shared: Arc<Mutex<State>>,
    rows: Rows,
}

/// What a transaction locked and wrote. A transaction touches a handful of
/// rows: vectors searched in order beat maps here, and the emptied vectors
/// go back to the store for the next transaction instead of being
/// allocated afresh for each.
#[derive(Debug, Default)]
struct Rows {
    /// Rows this transaction locked, with the version it saw.
    locked: Vec<(Row, u64)>,
    auctions: Vec<Auction>,
    wallets: Vec<Wallet>,
    bids: Vec<Bid>,
    entries: Vec<LedgerEntry>,
    holds: Vec<Hold>,
    events: Vec<Event>,
    delivered: Vec<EventId>,
    idempotency: Vec<(UserId, IdempotencyKey, IdempotencyRecord)>,
    /// Idempotency records to delete, with the time they were stored.
    forgotten: Vec<((UserId, IdempotencyKey), Instant)>,
    /// Outbox events to delete.
    forgotten_events: Vec<EventId>,
}

impl Rows {
    /// Spare sets kept by a store: one per transaction in flight at once,
    /// up to this many.
    const SPARE: usize = 16;

    fn clear(&mut self) {
        self.locked.clear();
        self.auctions.clear();
        self.wallets.clear();
        self.bids.clear();
        self.entries.clear();
        self.holds.clear();
        self.events.clear();
        self.delivered.clear();
        self.idempotency.clear();
        self.forgotten.clear();
        self.forgotten_events.clear();
    }
}

impl Drop for MemoryTx {
    fn drop(&mut self) {
        let mut rows = std::mem::take(&mut self.rows);
        rows.clear();
        let mut state = lock(&self.shared);
        if state.spare_rows.len() < Rows::SPARE {
            state.spare_rows.push(rows);
        }
    }
}

impl MemoryTx {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.shared)
    }

    /// The shared state, provided no row this transaction locked has
    /// changed since: a transaction never decides on a mix of old and new
    /// rows, it fails with a conflict and is retried instead.
    fn consistent<'s>(
        &self,
        shared: &'s Mutex<State>,
    ) -> Result<MutexGuard<'s, State>, StoreError> {
        let state = lock(shared);
        match self.changed_row(&state) {
            Some(row) => Err(StoreError::conflict(format!(
                "{row:?} changed since this transaction locked it"
            ))),
            None => Ok(state),
        }
    }

    fn changed_row(&self, state: &State) -> Option<Row> {
        self.rows
            .locked
            .iter()
            .find(|(row, seen)| state.version(*row) != *seen)
            .map(|(row, _)| *row)
    }

    fn remember(&mut self, row: Row, version: u64) {
        if !self.is_locked(row) {
            self.rows.locked.push((row, version));
        }
    }

    fn is_locked(&self, row: Row) -> bool {
        self.rows.locked.iter().any(|(locked, _)| *locked == row)
    }

    fn require_locked(&self, row: Row) -> Result<(), StoreError> {
        if self.is_locked(row) {
            Ok(())
        } else {
            Err(StoreError::new(
                StoreErrorKind::Other,
                format!("{row:?} written without being locked in this transaction"),
            ))
        }
    }
}

/// The writes, without a boxed future each: a decision's rows are written
/// in one call ([`MemoryTx::write`]).
impl MemoryTx {
    fn buffer_auction(&mut self, auction: Auction) {
        match self.rows.auctions.iter_mut().find(|a| a.id == auction.id) {
            Some(buffered) => *buffered = auction,
            None => self.rows.auctions.push(auction),
        }
    }

    fn put_auction(&mut self, auction: &Auction) -> Result<(), StoreError> {
        self.require_locked(Row::Auction(auction.id))?;
        self.buffer_auction(auction.clone());
        Ok(())
    }

    fn put_bid(&mut self, bid: &Bid) -> Result<Bid, StoreError> {
        self.require_locked(Row::Auction(bid.auction_id))?;
        let id = {
            let mut state = self.state();
            state.last_bid_id += 1;
            BidId(state.last_bid_id)
        };
        let bid = Bid { id, ..bid.clone() };
        self.rows.bids.push(bid.clone());
        Ok(bid)
    }

    fn put_event(&mut self, event: &Event) -> Result<(), StoreError> {
        self.require_locked(Row::Auction(event.auction_id))?;
        self.rows.events.push(event.clone());
        Ok(())
    }

    fn put_wallet(&mut self, wallet: &Wallet) -> Result<(), StoreError> {
        self.require_locked(Row::Wallet(wallet.user))?;
        match self.rows.wallets.iter_mut().find(|w| w.user == wallet.user) {
            Some(buffered) => *buffered = wallet.clone(),
            None => self.rows.wallets.push(wallet.clone()),
        }
        Ok(())
    }

    fn put_entry(&mut self, entry: &LedgerEntry) -> Result<(), StoreError> {
        self.require_locked(Row::Wallet(entry.user))?;
        self.rows.entries.push(entry.clone());
        Ok(())
    }

    fn put_hold(&mut self, hold: &Hold) -> Result<(), StoreError> {
        self.require_locked(Row::Auction(hold.auction_id))?;
        self.require_locked(Row::Wallet(hold.user))?;
        self.rows.holds.push(hold.clone());
        Ok(())
    }

    /// Every row of `decision`, as [`Transaction::write_decisions`] writes
    /// them; later decisions overwrite the auction, wallets and holds.
    fn write(&mut self, decision: &Decision) -> Result<Option<Bid>, StoreError> {
        self.put_auction(&decision.auction)?;
        let bid = decision
            .bid
            .as_ref()
            .map(|bid| self.put_bid(bid))
            .transpose()?;
        for wallet in &decision.wallets {
            self.put_wallet(wallet)?;
        }
        for entry in &decision.entries {
            self.put_entry(entry)?;
        }
        for hold in &decision.holds {
            self.put_hold(hold)?;
        }
        self.put_event(&decision.event)?;
        Ok(bid)
    }
}

#[async_trait]
impl Store for MemoryStore {
    type Tx = MemoryTx;

    async fn begin(&self) -> Result<MemoryTx, StoreError> {
        let rows = lock(&self.shared).spare_rows.pop().unwrap_or_default();
        Ok(MemoryTx {
            shared: Arc::clone(&self.shared),
            rows,
        })
    }
}

#[async_trait]
impl Transaction for MemoryTx {
    async fn write_decisions(
        &mut self,
        decisions: &[Decision],
        records: &[BatchRecord<'_>],
    ) -> Result<Vec<Option<Bid>>, StoreError> {
        let bids = decisions
            .iter()
            .map(|decision| self.write(decision))
            .collect::<Result<Vec<_>, _>>()?;
        for record in records {
            let key = record.key.clone();
            let stored = record.with_bid(&bids);
            self.rows.idempotency.push((record.user, key, stored));
        }
        Ok(bids)
    }

    async fn commit(mut self) -> Result<(), StoreError> {
        let mut state = self.consistent(&self.shared)?;
        for (user, key, _) in &self.rows.idempotency {
            if state.idempotency.contains_key(&(*user, key.clone())) {
                return Err(StoreError::conflict(format!(
                    "idempotency key {key} of user {user} was stored concurrently"
                )));
            }
        }
        // A concurrent pass forgot some of the same rows first: retrying
        // recounts, so each pass reports only what it removed (as a
        // database's DELETE does).
        let forgotten_key = self.rows.forgotten.iter().find(|(key, stored)| {
            state
                .idempotency
                .get(key)
                .is_none_or(|(_, at)| at != stored)
        });
        if let Some(((user, key), _)) = forgotten_key {
            return Err(StoreError::conflict(format!(
                "idempotency key {key} of user {user} was forgotten or stored again concurrently"
            )));
        }
        let gone: BTreeSet<EventId> = self.rows.forgotten_events.drain(..).collect();
        let emptied: BTreeSet<AuctionId> = gone.iter().map(|id| id.auction_id).collect();
        let mut present = 0;
        for &auction in &emptied {
            let events = state.events.get(&auction).map(Vec::as_slice);
            let events = events.unwrap_or_default().iter();
            present += events.filter(|event| gone.contains(&event.id())).count();
        }
        if present != gone.len() {
            return Err(StoreError::conflict("events were forgotten concurrently"));
        }
        // Validated: from here on nothing can fail.
        state.commits += 1;
        let version = state.commits;
        for auction in self.rows.auctions.drain(..) {
            state.auctions.insert(
                auction.id,
                Versioned {
                    version,
                    value: auction,
                },
            );
        }
        for wallet in self.rows.wallets.drain(..) {
            state.wallets.insert(
                wallet.user,
                Versioned {
                    version,
                    value: wallet,
                },
            );
        }
        for bid in self.rows.bids.drain(..) {
            let list = state.bids.entry(bid.auction_id).or_default();
            list.push(bid.clone());
            let index = list.len() - 1;
            state
                .bids_by_user
                .entry(bid.bidder)
                .or_default()
                .push((bid.auction_id, index));
        }
        for entry in self.rows.entries.drain(..) {
            state.history.entry(entry.user).or_default().push(entry);
        }
        for hold in &self.rows.holds {
            state.set_hold(hold);
        }
        for event in self.rows.events.drain(..) {
            state.undelivered.insert(event.id());
            state
                .events
                .entry(event.auction_id)
                .or_default()
                .push(event);
        }
        for (key, _) in self.rows.forgotten.drain(..) {
            state.idempotency.remove(&key);
        }
        if !self.rows.idempotency.is_empty() {
            // Read once, and only by commits that store a record.
            let now = Instant::now();
            for (user, key, record) in self.rows.idempotency.drain(..) {
                state.idempotency.insert((user, key), (record, now));
            }
        }
        for id in &self.rows.delivered {
            state.undelivered.remove(id);
        }
        for auction in emptied {
            if let Some(events) = state.events.get_mut(&auction) {
                events.retain(|event| !gone.contains(&event.id()));
            }
        }
        for id in &gone {
            state.undelivered.remove(id);
        }
        Ok(())
    }
}

#[async_trait]
impl AuctionStore for MemoryTx {
    async fn insert_auction(&mut self, auction: &Auction) -> Result<Auction, StoreError> {
        let id = {
            let mut state = self.state();
            state.last_auction_id += 1;
            AuctionId(state.last_auction_id)
        };
        let auction = Auction {
            id,
            ..auction.clone()
        };
        self.remember(Row::Auction(id), 0);
        self.buffer_auction(auction.clone());
        Ok(auction)
    }

    async fn lock_auction(&mut self, id: AuctionId) -> Result<Option<Auction>, StoreError> {
        if let Some(auction) = self.rows.auctions.iter().find(|a| a.id == id) {
            return Ok(Some(auction.clone()));
        }
        let shared = Arc::clone(&self.shared);
        let state = self.consistent(&shared)?;
        Ok(state.auctions.get(&id).map(|row| {
            self.remember(Row::Auction(id), row.version);
            row.value.clone()
        }))
    }

    async fn claim_due_auction(
        &mut self,
        now: Timestamp,
        skip: &[AuctionId],
    ) -> Result<Option<Auction>, StoreError> {
        let shared = Arc::clone(&self.shared);
        let state = self.consistent(&shared)?;
        let due = state
            .auctions
            .values()
            .filter(|row| row.value.is_due(now) && !skip.contains(&row.value.id))
            .min_by_key(|row| (row.value.bidding.ends_at, row.value.id));
        Ok(due.map(|row| {
            self.remember(Row::Auction(row.value.id), row.version);
            row.value.clone()
        }))
    }

    async fn load_idempotency(
        &mut self,
        user: UserId,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let state = self.state();
        let stored = state.idempotency.get(&(user, key.clone()));
        Ok(stored.map(|(record, _)| record.clone()))
    }

    async fn save_idempotency(
        &mut self,
        user: UserId,
        key: &IdempotencyKey,
        record: &IdempotencyRecord,
    ) -> Result<(), StoreError> {
        self.rows
            .idempotency
            .push((user, key.clone(), record.clone()));
        Ok(())
    }

    async fn forget_idempotency(&mut self, age: Duration, limit: u32) -> Result<u64, StoreError> {
        let old: Vec<_> = {
            let state = self.state();
            let now = Instant::now();
            state
                .idempotency
                .iter()
                .filter(|(_, (_, stored))| now.saturating_duration_since(*stored) >= age)
                .map(|(key, (_, stored))| (key.clone(), *stored))
                .take(limit as usize)
                .collect()
        };
        let forgotten = old.len() as u64;
        self.rows.forgotten.extend(old);
        Ok(forgotten)
    }
}

#[async_trait]
impl WalletLedger for MemoryTx {
    async fn lock_wallets(&mut self, users: &[UserId]) -> Result<Vec<Wallet>, StoreError> {
        let shared = Arc::clone(&self.shared);
        let state = self.consistent(&shared)?;
        let mut wallets = Vec::with_capacity(users.len());
        for &user in users {
            if let Some(wallet) = self.rows.wallets.iter().find(|w| w.user == user) {
                wallets.push(wallet.clone());
                continue;
            }
            let (version, wallet) = match state.wallets.get(&user) {
                Some(row) => (row.version, row.value.clone()),
                None => (0, Wallet::empty(user)),
            };
            self.remember(Row::Wallet(user), version);
            wallets.push(wallet);
        }
        Ok(wallets)
    }

    async fn auction_holds(&mut self, auction: AuctionId) -> Result<Vec<Hold>, StoreError> {
        self.require_locked(Row::Auction(auction))?;
        let shared = Arc::clone(&self.shared);
        let mut holds: Vec<Hold> = self
            .consistent(&shared)?
            .holds_by_auction
            .get(&auction)
            .into_iter()
            .flatten()
            .map(|(&user, &amount)| Hold {
                auction_id: auction,
                user,
                amount,
            })
            .collect();
        // This transaction's own changes, in order, over the committed ones.
        for hold in self
            .rows
            .holds
            .iter()
            .filter(|hold| hold.auction_id == auction)
        {
            match holds.iter_mut().find(|open| open.user == hold.user) {
                Some(open) => open.amount = hold.amount,
                None => holds.push(hold.clone()),
            }
        }
        holds.retain(|hold| !hold.amount.is_zero());
        holds.sort_by_key(|hold| hold.user);
        Ok(holds)
    }

    async fn write_wallet_decision(&mut self, decision: &WalletDecision) -> Result<(), StoreError> {
        self.put_wallet(&decision.wallet)?;
        self.put_entry(&decision.entry)
    }
}
#[async_trait]
impl Outbox for MemoryTx {
    async fn events_after(
        &mut self,
        id: AuctionId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let state = self.state();
        let events = state.events.get(&id).map(Vec::as_slice).unwrap_or_default();
        Ok(events
            .iter()
            .filter(|event| event.seq > after)
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn undelivered_events(
        &mut self,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let state = self.state();
        let stored = |id: &EventId| {
            let events = state.events.get(&id.auction_id)?;
            let index = events
                .binary_search_by_key(&id.seq, |event| event.seq)
                .ok()?;
            Some(&events[index])
        };
        Ok(state
            .undelivered
            .iter()
            .filter_map(stored)
            .filter(|event| event.at <= before)
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn mark_delivered(
        &mut self,
        events: &[EventId],
        _at: Timestamp,
    ) -> Result<(), StoreError> {
        self.rows.delivered.extend_from_slice(events);
        Ok(())
    }

    async fn forget_events(
        &mut self,
        closed_before: Timestamp,
        after: AuctionId,
        limit: u32,
    ) -> Result<ForgottenEvents, StoreError> {
        let mut done = ForgottenEvents::default();
        let gone: Vec<EventId> = {
            let state = self.state();
            let closed = state
                .auctions
                .range((Bound::Excluded(after), Bound::Unbounded))
                .filter(|(_, row)| {
                    row.value
                        .bidding
                        .closed_at
                        .is_some_and(|at| at <= closed_before)
                })
                .take(limit as usize);
            let mut gone = Vec::new();
            for (id, _) in closed {
                done.last_auction = Some(*id);
                let events = state.events.get(id).map(Vec::as_slice).unwrap_or_default();
                let old = events.iter().filter(|event| event.at <= closed_before);
                gone.extend(old.map(Event::id));
            }
            gone
        };
        done.events = gone.len() as u64;
        self.rows.forgotten_events.extend(gone);
        Ok(done)
    }
}

#[async_trait]
impl Queries for MemoryTx {
    async fn get_auction(&mut self, id: AuctionId) -> Result<Option<Auction>, StoreError> {
        Ok(self.state().auctions.get(&id).map(|row| row.value.clone()))
    }

    async fn list_auctions(
        &mut self,
        filter: &AuctionFilter,
        page: Page,
    ) -> Result<Vec<Auction>, StoreError> {
        let state = self.state();
        let mut found: Vec<&Auction> = state
            .auctions
            .values()
            .rev()
            .map(|row| &row.value)
            .filter(|auction| filter.matches(auction))
            .collect();
        found.sort_by(|a, b| filter.sort.compare(a, b));
        Ok(paged(found.into_iter(), page))
    }

    async fn count_auctions(&mut self, filter: &AuctionFilter) -> Result<u64, StoreError> {
        let state = self.state();
        let matching = state
            .auctions
            .values()
            .filter(|row| filter.matches(&row.value));
        Ok(matching.count() as u64)
    }

    async fn auction_bids(&mut self, id: AuctionId, page: Page) -> Result<Vec<Bid>, StoreError> {
        let state = self.state();
        let bids = state.bids.get(&id).map(Vec::as_slice).unwrap_or_default();
        Ok(paged(bids.iter().rev(), page))
    }

    async fn user_bids(&mut self, user: UserId, page: Page) -> Result<Vec<Bid>, StoreError> {
        let state = self.state();
        let refs = state
            .bids_by_user
            .get(&user)
            .map(Vec::as_slice)
            .unwrap_or_default();
        Ok(paged(
            refs.iter()
                .rev()
                .map(|(auction, index)| &state.bids[auction][*index]),
            page,
        ))
    }

    async fn get_wallet(&mut self, user: UserId) -> Result<Wallet, StoreError> {
        Ok(self
            .state()
            .wallets
            .get(&user)
            .map_or_else(|| Wallet::empty(user), |row| row.value.clone()))
    }

    async fn wallet_history(
        &mut self,
        user: UserId,
        page: Page,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let state = self.state();
        let history = state
            .history
            .get(&user)
            .map(Vec::as_slice)
            .unwrap_or_default();
        Ok(paged(history.iter().rev(), page))
    }

    async fn user_holds(&mut self, user: UserId) -> Result<Vec<Hold>, StoreError> {
        let state = self.state();
        Ok(state
            .holds_by_user
            .range((user, AuctionId(i64::MIN))..=(user, AuctionId(i64::MAX)))
            .map(|(&(user, auction_id), &amount)| Hold {
                auction_id,
                user,
                amount,
            })
            .collect())
    }
}

fn paged<'a, T: Clone + 'a>(items: impl Iterator<Item = &'a T>, page: Page) -> Vec<T> {
    items
        .skip(page.offset as usize)
        .take(page.limit as usize)
        .cloned()
        .collect()
}
