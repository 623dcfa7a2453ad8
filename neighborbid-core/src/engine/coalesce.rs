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

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

use super::{bid_receipt, decision_time, finish, invariant, replay, Attempt, Engine};
use crate::command::{Command, IdempotencyKey, IdempotencyRecord, PlaceBid, Receipt};
use crate::error::{EngineError, Rejection, StoreError};
use crate::ids::{AuctionId, UserId};
use crate::notify::Notifier;
use crate::rules::{self, AuctionState, RuleError};
use crate::store::{AuctionStore, BatchReads, BatchRecord, Store, Transaction};

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

/// What a batch decided for one of its bids.
enum Outcome {
    /// Answered without deciding: a replay, or a refusal.
    Done(Box<Result<Receipt, EngineError>>),
    /// Accepted: the index of its decision.
    Decided(usize),
    /// The same key and bid as an earlier bid of the batch: its answer.
    SameAs(usize),
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
        bids: &[(PlaceBid, Option<IdempotencyKey>)],
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

    /// [`attempt_bids`](Self::attempt_bids)'s work inside its transaction;
    /// no events when it wrote nothing.
    async fn batch_in(
        &self,
        tx: &mut S::Tx,
        auction_id: AuctionId,
        bids: &[(PlaceBid, Option<IdempotencyKey>)],
    ) -> Attempt<Vec<Result<Receipt, EngineError>>> {
        // The auction first, then the records: a request of this batch may
        // be the retry of one still committing (its answer was lost), which
        // holds the auction until it is done; its record is visible once
        // the lock is ours.
        let locked = tx.lock_auction(auction_id).await?;
        let now = decision_time(tx, &*self.inner.config.clock).await?;
        // Refused on the auction as locked, so refused whatever the batch
        // does before it: the minimum next bid never falls and an ended
        // auction stays ended. Such stale bids lock no wallet.
        let stale: Vec<bool> = bids
            .iter()
            .map(|(bid, _)| {
                locked.as_ref().is_none_or(|auction| {
                    rules::check_bid(self.rules(), auction, bid, now).is_err()
                })
            })
            .collect();
        let bidders: Vec<UserId> = bids
            .iter()
            .zip(&stale)
            .filter(|(_, stale)| !**stale)
            .map(|((bid, _), _)| bid.bidder)
            .collect();
        let keys: Vec<(UserId, &IdempotencyKey)> = bids
            .iter()
            .filter_map(|(bid, key)| Some((bid.bidder, key.as_ref()?)))
            .collect();
        // The wallets of every hold's owner and of every bidder whose bid
        // is not stale, locked at once in ascending order (a replayed
        // bid's among them: harmless, and it saves a round trip to know
        // them first). Updated in place bid after bid.
        let BatchReads {
            mut holds,
            mut wallets,
            records,
        } = tx.batch_reads(auction_id, &keys, &bidders).await?;
        let mut records = records.into_iter();
        let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(bids.len());
        for (bid, key) in bids {
            let mut outcome = None;
            if let Some(key) = key {
                if let Some(record) = records.next().flatten() {
                    let command = Command::PlaceBid(bid.clone());
                    outcome = Some(Outcome::Done(Box::new(replay(record, &command, key))));
                }
            }
            outcomes.push(outcome);
        }
        let Some(mut auction) = locked else {
            let missing = || Err(Rejection::AuctionNotFound { auction_id }.into());
            let answers = outcomes
                .into_iter()
                .map(|outcome| match outcome {
                    Some(Outcome::Done(answer)) => *answer,
                    _ => missing(),
                })
                .collect();
            return Ok((answers, Vec::new()));
        };

        let mut decisions = Vec::new();
        let mut keyed: HashMap<(UserId, &IdempotencyKey), usize> = HashMap::new();
        for (index, (bid, key)) in bids.iter().enumerate() {
            if outcomes[index].is_some() {
                continue;
            }
            if let Some(key) = key {
                if let Some(&first) = keyed.get(&(bid.bidder, key)) {
                    outcomes[index] = Some(if bids[first].0 == *bid {
                        Outcome::SameAs(first)
                    } else {
                        let conflict = EngineError::IdempotencyConflict { key: key.clone() };
                        Outcome::Done(Box::new(Err(conflict)))
                    });
                    continue;
                }
            }
            if stale[index] {
                // Answered as of its turn, with the minimum it names then.
                let Err(rejection) = rules::check_bid(self.rules(), &auction, bid, now) else {
                    return Err(invariant("a stale bid of the batch became a winning one"));
                };
                outcomes[index] = Some(Outcome::Done(Box::new(Err(rejection.into()))));
                continue;
            }
            let state = AuctionState {
                auction: &auction,
                holds: &holds,
                wallets: &wallets,
            };
            match rules::place_bid(self.rules(), state, bid, now) {
                Ok(decision) => {
                    auction = decision.auction.clone();
                    for wallet in &decision.wallets {
                        match wallets.binary_search_by_key(&wallet.user, |w| w.user) {
                            Ok(index) => wallets[index] = wallet.clone(),
                            Err(index) => wallets.insert(index, wallet.clone()),
                        }
                    }
                    for hold in &decision.holds {
                        holds.retain(|open| open.user != hold.user);
                        if !hold.amount.is_zero() {
                            holds.push(hold.clone());
                        }
                    }
                    if let Some(key) = key {
                        keyed.insert((bid.bidder, key), index);
                    }
                    outcomes[index] = Some(Outcome::Decided(decisions.len()));
                    decisions.push(decision);
                }
                Err(RuleError::Rejected(rejection)) => {
                    outcomes[index] = Some(Outcome::Done(Box::new(Err(rejection.into()))));
                }
                // Stored state is damaged: write nothing at all.
                Err(error @ RuleError::Inconsistent(_)) => return Err(error.into()),
            }
        }

        if decisions.is_empty() {
            let answers = (0..bids.len())
                .map(|index| answer(&outcomes, &[], index))
                .collect();
            return Ok((answers, Vec::new()));
        }
        // The bid each decision came from, in order.
        let decided: Vec<&PlaceBid> = bids
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| matches!(outcome, Some(Outcome::Decided(_))))
            .map(|((bid, _), _)| bid)
            .collect();
        // Written with the batch: a keyed bid's record names its bid, which
        // gets its id in the same write.
        let records: Vec<BatchRecord> = bids
            .iter()
            .zip(&outcomes)
            .filter_map(|((bid, key), outcome)| match (key, outcome) {
                (Some(key), Some(Outcome::Decided(index))) => {
                    let decision = &decisions[*index];
                    Some(BatchRecord {
                        decision: *index,
                        user: bid.bidder,
                        key,
                        record: IdempotencyRecord {
                            command: Command::PlaceBid(bid.clone()),
                            receipt: bid_receipt(decision, bid.bidder, decision.bid.clone()),
                        },
                    })
                }
                _ => None,
            })
            .collect();
        let stored = tx.write_decisions(&decisions, &records).await?;
        let receipts: Vec<Receipt> = decisions
            .iter()
            .zip(stored)
            .zip(decided)
            .map(|((decision, stored), bid)| bid_receipt(decision, bid.bidder, stored))
            .collect();

        let answers: Vec<Result<Receipt, EngineError>> = (0..bids.len())
            .map(|index| answer(&outcomes, &receipts, index))
            .collect();
        let events = decisions
            .into_iter()
            .map(|decision| decision.event)
            .collect();
        Ok((answers, events))
    }
}

/// The answer for bid `index` once the batch committed.
fn answer(
    outcomes: &[Option<Outcome>],
    receipts: &[Receipt],
    index: usize,
) -> Result<Receipt, EngineError> {
    match &outcomes[index] {
        Some(Outcome::Done(answer)) => match answer.as_ref() {
            Ok(receipt) => Ok(receipt.clone()),
            Err(error) => Err(error_for_another_caller(error)),
        },
        Some(Outcome::Decided(decision)) => Ok(receipts[*decision].clone()),
        Some(Outcome::SameAs(first)) => answer(outcomes, receipts, *first),
        None => Err(invariant("a bid of the batch was never decided")),
    }
}

/// The same error for another caller of the batch (a store error's source
/// stays with the first).
fn error_for_another_caller(error: &EngineError) -> EngineError {
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
