//! [`FaultyStore`]: any store, with one failure injected on demand.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::rules::{Decision, WalletDecision};
use crate::store::{
    AuctionStore, BatchReads, BatchRecord, ForgottenEvents, Outbox, Queries, WalletLedger,
};
use crate::{
    Auction, AuctionFilter, AuctionId, Bid, Event, EventId, Hold, IdempotencyKey,
    IdempotencyRecord, LedgerEntry, Page, Store, StoreError, StoreErrorKind, Timestamp,
    Transaction, UserId, Wallet,
};

/// A step after which [`FaultyStore`] fails. The faults sit on the store
/// contract's own methods, so they strike each backend's production path
/// (Postgres's one-statement batch, say), not a test-only one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// After [`Transaction::lock_parties`] or [`Transaction::batch_reads`]:
    /// an auction command holds its locks and has written nothing.
    LockParties,
    /// After [`Transaction::write_decisions`]: every row of an auction
    /// command, a batch of bids or a settlement is written, with the
    /// idempotency records.
    WriteDecisions,
    /// After [`AuctionStore::insert_auction`].
    InsertAuction,
    /// After [`WalletLedger::write_wallet_decision`] (a deposit or a
    /// withdrawal).
    WriteWalletDecision,
    /// After [`AuctionStore::save_idempotency`] (a keyed command that
    /// writes no auction decision: a deposit, a withdrawal, a new auction).
    SaveIdempotency,
    /// Instead of [`Transaction::commit`]: the transaction is dropped.
    Commit,
    /// After [`Outbox::mark_delivered`] (a relay that sent events and
    /// died before recording it). No bid reaches it.
    MarkDelivered,
    /// Instead of [`Transaction::commit`]: the caller is told the
    /// connection was lost ([`StoreErrorKind::Unavailable`]) while the
    /// commit is still on its way; it lands when the test calls
    /// [`FaultSwitch::land_late_commits`]. This is how a COMMIT looks to its sender when the
    /// connection dies right after sending it: the client cannot know
    /// whether it happened, and the database holds the transaction's locks
    /// until it does.
    CommitLate,
}

impl Fault {
    /// Every fault a bid reaches, in that order (a settlement reaches the
    /// same).
    pub const ALL: [Fault; 3] = [Fault::LockParties, Fault::WriteDecisions, Fault::Commit];
}

/// Wraps a store and, once its [`FaultSwitch`] is armed, fails the next
/// transaction that reaches the armed write, right after the write went
/// through, as a dropped connection would. The error is not retryable, so
/// the engine gives up and the transaction must roll back without a trace.
/// [`FaultSwitch::conflict_commits`] makes commits conflict instead, which
/// the engine retries.
#[derive(Debug)]
pub struct FaultyStore<S> {
    inner: S,
    switch: FaultSwitch,
}

impl<S> FaultyStore<S> {
    /// `inner`, unarmed.
    pub fn new(inner: S) -> FaultyStore<S> {
        FaultyStore {
            inner,
            switch: FaultSwitch::default(),
        }
    }

    /// The switch that arms this store's faults.
    pub fn switch(&self) -> FaultSwitch {
        self.switch.clone()
    }
}

/// Arms the faults of a [`FaultyStore`]; clones share the switch.
#[derive(Clone, Default)]
pub struct FaultSwitch {
    armed: Arc<Mutex<Option<Fault>>>,
    late: Arc<Mutex<Vec<LateCommit>>>,
    conflicts: Arc<AtomicUsize>,
}

type LateCommit = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

impl fmt::Debug for FaultSwitch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultSwitch")
            .field("armed", &*self.lock())
            .field("conflicts", &self.conflicts_left())
            .finish_non_exhaustive()
    }
}

impl FaultSwitch {
    /// Arms a fault for the next transaction that reaches it.
    pub fn arm(&self, fault: Fault) {
        *self.lock() = Some(fault);
    }

    /// Makes the next `commits` commits fail with a retryable
    /// [`StoreErrorKind::Conflict`] after rolling back, as a transaction
    /// that lost a race or was chosen as a deadlock's victim does; the
    /// engine retries it. Independent of [`FaultSwitch::arm`].
    pub fn conflict_commits(&self, commits: usize) {
        self.conflicts.store(commits, Ordering::SeqCst);
    }

    /// How many of the conflicts asked of
    /// [`conflict_commits`](FaultSwitch::conflict_commits) are still to come.
    pub fn conflicts_left(&self) -> usize {
        self.conflicts.load(Ordering::SeqCst)
    }

    fn take_conflict(&self) -> bool {
        let left = |n: usize| n.checked_sub(1);
        self.conflicts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, left)
            .is_ok()
    }

    /// Whether the armed fault went off (or none was armed).
    pub fn fired(&self) -> bool {
        self.lock().is_none()
    }

    /// Lets the commits held by [`Fault::CommitLate`] go through; returns
    /// how many did.
    pub async fn land_late_commits(&self) -> Result<usize, StoreError> {
        let late = std::mem::take(&mut *self.late.lock().unwrap_or_else(|e| e.into_inner()));
        let count = late.len();
        for commit in late {
            commit.await?;
        }
        Ok(count)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Fault>> {
        self.armed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn trip(&self, at: Fault) -> Result<(), StoreError> {
        let mut armed = self.lock();
        if *armed == Some(at) {
            *armed = None;
            return Err(StoreError::new(
                StoreErrorKind::Other,
                format!("injected fault at {at:?}"),
            ));
        }
        Ok(())
    }
}

/// A transaction of a [`FaultyStore`].
#[derive(Debug)]
pub struct FaultyTx<T> {
    inner: T,
    switch: FaultSwitch,
}

impl<T> FaultyTx<T> {
    fn trip(&self, at: Fault) -> Result<(), StoreError> {
        self.switch.trip(at)
    }
}

#[async_trait]
impl<S: Store> Store for FaultyStore<S> {
    type Tx = FaultyTx<S::Tx>;

    async fn begin(&self) -> Result<Self::Tx, StoreError> {
        Ok(FaultyTx {
            inner: self.inner.begin().await?,
            switch: self.switch.clone(),
        })
    }

    async fn begin_read(&self) -> Result<Self::Tx, StoreError> {
        Ok(FaultyTx {
            inner: self.inner.begin_read().await?,
            switch: self.switch.clone(),
        })
    }
}

#[async_trait]
impl<T: Transaction + 'static> Transaction for FaultyTx<T> {
    async fn clock(&mut self) -> Result<Option<Timestamp>, StoreError> {
        self.inner.clock().await
    }

    async fn commit(self) -> Result<(), StoreError> {
        if self.switch.take_conflict() {
            self.inner.rollback().await?;
            return Err(StoreError::conflict(
                "injected conflict: the transaction was rolled back",
            ));
        }
        self.trip(Fault::Commit)?;
        if self.trip(Fault::CommitLate).is_err() {
            let inner = self.inner;
            let commit = Box::pin(async move { inner.commit().await });
            let mut late = self.switch.late.lock().unwrap_or_else(|e| e.into_inner());
            late.push(commit);
            return Err(StoreError::new(
                StoreErrorKind::Unavailable,
                "injected fault: the connection was lost after COMMIT was sent",
            ));
        }
        self.inner.commit().await
    }

    async fn rollback(self) -> Result<(), StoreError> {
        self.inner.rollback().await
    }

    async fn lock_parties(
        &mut self,
        auction: AuctionId,
        parties: &[UserId],
    ) -> Result<(Vec<Hold>, Vec<Wallet>), StoreError> {
        let locked = self.inner.lock_parties(auction, parties).await?;
        self.trip(Fault::LockParties)?;
        Ok(locked)
    }

    async fn batch_reads(
        &mut self,
        auction: AuctionId,
        keys: &[(UserId, &IdempotencyKey)],
        bidders: &[UserId],
    ) -> Result<BatchReads, StoreError> {
        let reads = self.inner.batch_reads(auction, keys, bidders).await?;
        self.trip(Fault::LockParties)?;
        Ok(reads)
    }

    async fn write_decisions(
        &mut self,
        decisions: &[Decision],
        records: &[BatchRecord<'_>],
    ) -> Result<Vec<Option<Bid>>, StoreError> {
        let bids = self.inner.write_decisions(decisions, records).await?;
        self.trip(Fault::WriteDecisions)?;
        Ok(bids)
    }
}

#[async_trait]
impl<T: Transaction> AuctionStore for FaultyTx<T> {
    async fn insert_auction(&mut self, auction: &Auction) -> Result<Auction, StoreError> {
        let auction = self.inner.insert_auction(auction).await?;
        self.trip(Fault::InsertAuction)?;
        Ok(auction)
    }

    async fn lock_auction(&mut self, id: AuctionId) -> Result<Option<Auction>, StoreError> {
        self.inner.lock_auction(id).await
    }

    async fn claim_due_auction(
        &mut self,
        now: Timestamp,
        skip: &[AuctionId],
    ) -> Result<Option<Auction>, StoreError> {
        self.inner.claim_due_auction(now, skip).await
    }

    async fn load_idempotency(
        &mut self,
        user: UserId,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.inner.load_idempotency(user, key).await
    }

    async fn save_idempotency(
        &mut self,
        user: UserId,
        key: &IdempotencyKey,
        record: &IdempotencyRecord,
    ) -> Result<(), StoreError> {
        self.inner.save_idempotency(user, key, record).await?;
        self.trip(Fault::SaveIdempotency)
    }

    async fn forget_idempotency(
        &mut self,
        age: std::time::Duration,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.inner.forget_idempotency(age, limit).await
    }
}

#[async_trait]
impl<T: Transaction> WalletLedger for FaultyTx<T> {
    async fn lock_wallets(&mut self, users: &[UserId]) -> Result<Vec<Wallet>, StoreError> {
        self.inner.lock_wallets(users).await
    }

    async fn auction_holds(&mut self, auction: AuctionId) -> Result<Vec<Hold>, StoreError> {
        self.inner.auction_holds(auction).await
    }

    async fn write_wallet_decision(&mut self, decision: &WalletDecision) -> Result<(), StoreError> {
        self.inner.write_wallet_decision(decision).await?;
        self.trip(Fault::WriteWalletDecision)
    }
}
#[async_trait]
impl<T: Transaction> Outbox for FaultyTx<T> {
    async fn events_after(
        &mut self,
        id: AuctionId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        self.inner.events_after(id, after, limit).await
    }

    async fn undelivered_events(
        &mut self,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        self.inner.undelivered_events(before, limit).await
    }

    async fn mark_delivered(
        &mut self,
        events: &[EventId],
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.inner.mark_delivered(events, at).await?;
        self.trip(Fault::MarkDelivered)
    }

    async fn forget_events(
        &mut self,
        closed_before: Timestamp,
        after: AuctionId,
        limit: u32,
    ) -> Result<ForgottenEvents, StoreError> {
        self.inner.forget_events(closed_before, after, limit).await
    }
}

#[async_trait]
impl<T: Transaction> Queries for FaultyTx<T> {
    async fn get_auction(&mut self, id: AuctionId) -> Result<Option<Auction>, StoreError> {
        self.inner.get_auction(id).await
    }

    async fn list_auctions(
        &mut self,
        filter: &AuctionFilter,
        page: Page,
    ) -> Result<Vec<Auction>, StoreError> {
        self.inner.list_auctions(filter, page).await
    }

    async fn count_auctions(&mut self, filter: &AuctionFilter) -> Result<u64, StoreError> {
        self.inner.count_auctions(filter).await
    }

    async fn auction_bids(&mut self, id: AuctionId, page: Page) -> Result<Vec<Bid>, StoreError> {
        self.inner.auction_bids(id, page).await
    }

    async fn user_bids(&mut self, user: UserId, page: Page) -> Result<Vec<Bid>, StoreError> {
        self.inner.user_bids(user, page).await
    }

    async fn get_wallet(&mut self, user: UserId) -> Result<Wallet, StoreError> {
        self.inner.get_wallet(user).await
    }

    async fn wallet_history(
        &mut self,
        user: UserId,
        page: Page,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        self.inner.wallet_history(user, page).await
    }

    async fn user_holds(&mut self, user: UserId) -> Result<Vec<Hold>, StoreError> {
        self.inner.user_holds(user).await
    }
}
