//! Bid coalescing: one transaction for the bids that queue up on a hot
//! auction while its previous transaction is in flight.
//!
//! The first bid for an idle auction opens its lane and runs as a batch
//! of one in the caller's task (no hop, no channel: quiet auctions cost
//! one uncontended lock more than without coalescing). Bids that arrive
//! meanwhile queue; when that batch is done, a task drains the lane: each
//! round takes every bid queued so far, runs them as one batch and answers
//! each caller. The lane closes when a round finds it empty. A caller that
//! goes away (a closed HTTP connection) hands the lane to the task too, so
//! no bid is stranded.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

use super::batch::{self, Bids};
use super::decide::decision_time;
use super::{finish, invariant, Attempt, Engine};
use crate::command::{Command, IdempotencyKey, PlaceBid, Receipt};
use crate::error::{EngineError, StoreError};
use crate::ids::AuctionId;
use crate::notify::Notifier;
use crate::store::{AuctionStore, BatchReads, Store, Transaction};

/// The queued bids of every auction with a transaction in flight. An
/// auction has an entry exactly while a task drains it.
#[derive(Default)]
pub(super) struct Lanes {
    queues: Mutex<BTreeMap<AuctionId, Vec<Queued>>>,
}

impl Lanes {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<AuctionId, Vec<Queued>>> {
        // Nothing panics while holding the lock.
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Hands the lane on when the caller that opened it is done with its own
/// batch, or gone.
struct HandOff<'a, S: Store, N: Notifier> {
    engine: &'a Engine<S, N>,
    auction: AuctionId,
}

impl<S: Store, N: Notifier> Drop for HandOff<'_, S, N> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.engine.inner.lanes.lock().remove(&self.auction);
        } else {
            self.engine.close_or_drain(self.auction);
        }
    }
}

/// Closes a lane whose draining task panicked: its queued callers get an
/// error instead of waiting forever.
struct CloseOnPanic<'a>(&'a Lanes, AuctionId);

impl Drop for CloseOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.lock().remove(&self.1);
        }
    }
}

/// A bid waiting for its batch.
struct Queued {
    bid: PlaceBid,
    key: Option<IdempotencyKey>,
    answer: oneshot::Sender<Result<Receipt, EngineError>>,
}

impl<S: Store, N: Notifier> Engine<S, N> {
    /// Bids for `auction` waiting for the transaction in flight to finish
    /// (always 0 without [`coalesce_bids`](super::EngineConfig::coalesce_bids)).
    pub fn waiting_bids(&self, auction: AuctionId) -> usize {
        self.inner.lanes.lock().get(&auction).map_or(0, Vec::len)
    }

    pub(super) async fn place_bid_coalesced(
        &self,
        bid: PlaceBid,
        key: Option<IdempotencyKey>,
    ) -> Result<Receipt, EngineError> {
        let auction = bid.auction_id;
        // Queued (the answer to wait for), or the lane's opener.
        let queued = {
            let mut lanes = self.inner.lanes.lock();
            match lanes.get_mut(&auction) {
                Some(queue) => {
                    let (answer, answered) = oneshot::channel();
                    queue.push(Queued { bid, key, answer });
                    Ok(answered)
                }
                None => {
                    lanes.insert(auction, Vec::new());
                    Err((bid, key))
                }
            }
        };
        match queued {
            Ok(answered) => answered
                .await
                .unwrap_or_else(|_| Err(invariant("the bid's batch ended without an answer"))),
            Err((bid, key)) => {
                // An idle auction: this bid is a batch of one, run right
                // here with no task hop or channel; bids that queue
                // meanwhile go to a task after it (also if this caller
                // goes away mid-transaction).
                let _hand_off = HandOff {
                    engine: self,
                    auction,
                };
                let command = Command::PlaceBid(bid);
                self.retrying(|| self.attempt(&command, key.as_ref())).await
            }
        }
    }

    /// Closes the lane if nothing queued, or starts a task draining it.
    fn close_or_drain(&self, auction: AuctionId) {
        let mut lanes = self.inner.lanes.lock();
        if lanes.get(&auction).is_none_or(Vec::is_empty) {
            lanes.remove(&auction);
            return;
        }
        let engine = self.clone();
        tokio::spawn(async move {
            // A panic must not leave a lane that nobody drains.
            let _closed = CloseOnPanic(&engine.inner.lanes, auction);
            while engine.run_batch(auction).await {}
        });
    }

    /// Takes every bid queued for `auction` and runs them as one batch;
    /// `false` (and the lane closed) when none was queued.
    async fn run_batch(&self, auction: AuctionId) -> bool {
        let batch = {
            let mut lanes = self.inner.lanes.lock();
            match lanes.get_mut(&auction) {
                Some(queue) if !queue.is_empty() => std::mem::take(queue),
                _ => {
                    lanes.remove(&auction);
                    return false;
                }
            }
        };
        let bids: Vec<(PlaceBid, Option<IdempotencyKey>)> = batch
            .iter()
            .map(|queued| (queued.bid.clone(), queued.key.clone()))
            .collect();
        let answers = self.retrying(|| self.attempt_bids(auction, &bids)).await;
        match answers {
            Ok(answers) => {
                for (queued, answer) in batch.into_iter().zip(answers) {
                    let _ = queued.answer.send(answer);
                }
            }
            Err(error) => {
                for queued in batch {
                    let _ = queued.answer.send(Err(error_for_another_caller(&error)));
                }
            }
        }
        true
    }

    /// One transaction for a batch of bids on `auction_id`, in order.
    async fn attempt_bids(
        &self,
        auction_id: AuctionId,
        bids: &Bids,
    ) -> Attempt<Vec<Result<Receipt, EngineError>>> {
        let mut tx = self.inner.store.begin().await?;
        match self.batch_in(&mut tx, auction_id, bids).await {
            // Nothing written (every bid refused or replayed): dropping the
            // transaction rolls it back without a round trip here. A
            // backend may release the auction a moment later (sqlx does,
            // from its pool), but the lane's next batch waits for that lock
            // anyway, and rolling back here would add a round trip to the
            // hot auction's serial path.
            Ok((answers, events)) if events.is_empty() => Ok((answers, events)),
            // A failure rolls back before the batch's callers hear of it.
            result => finish(tx, result).await,
        }
    }

    /// [`attempt_bids`](Self::attempt_bids)'s work inside its transaction:
    /// load -> decide -> write; no events when it wrote nothing.
    async fn batch_in(
        &self,
        tx: &mut S::Tx,
        auction_id: AuctionId,
        bids: &Bids,
    ) -> Attempt<Vec<Result<Receipt, EngineError>>> {
        // The auction first, then the records: a request of this batch may
        // be the retry of one still committing (its answer was lost), which
        // holds the auction until it is done; its record is visible once
        // the lock is ours.
        let auction = tx.lock_auction(auction_id).await?;
        let now = decision_time(tx, &*self.inner.config.clock).await?;
        let stale = batch::stale(self.rules(), auction.as_ref(), bids, now);
        // The wallets of every hold's owner and of every bidder whose bid
        // is not stale, locked at once in ascending order (a replayed
        // bid's among them: harmless, and it saves a round trip to know
        // them first).
        let BatchReads {
            holds,
            wallets,
            records,
        } = tx
            .batch_reads(
                auction_id,
                &batch::keys(bids),
                &batch::bidders(bids, &stale),
            )
            .await?;
        let loaded = batch::Loaded {
            auction,
            holds,
            wallets,
            records,
            now,
        };
        let decided = batch::decide(self.rules(), bids, &stale, loaded)?;
        if decided.decisions.is_empty() {
            return Ok((decided.answers(Vec::new()), Vec::new()));
        }
        let stored = tx
            .write_decisions(&decided.decisions, &decided.records())
            .await?;
        let answers = decided.answers(stored);
        let events = decided
            .decisions
            .into_iter()
            .map(|decision| decision.event)
            .collect();
        Ok((answers, events))
    }
}

/// The same error for another caller of the batch (a store error's source
/// stays with the first).
pub(super) fn error_for_another_caller(error: &EngineError) -> EngineError {
    match error {
        EngineError::Rejected(rejection) => EngineError::Rejected(rejection.clone()),
        EngineError::IdempotencyConflict { key } => {
            EngineError::IdempotencyConflict { key: key.clone() }
        }
        EngineError::Store(error) => {
            EngineError::Store(StoreError::new(error.kind(), error.to_string()))
        }
        EngineError::Invariant(message) => EngineError::Invariant(message.clone()),
    }
}
