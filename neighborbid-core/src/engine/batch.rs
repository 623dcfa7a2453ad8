//! Deciding a coalesced batch of bids on one auction: pure, no I/O. The
//! transaction around it (load, write, commit) is in `coalesce.rs`.
//!
//! Each bid of the batch gets an [`Outcome`]: a replay of its stored
//! answer, a refusal, the same answer as an identical keyed bid earlier in
//! the batch, or a decision. Accepted bids are decided one after another on
//! the state the previous one left, exactly as if they had come one by one.

use std::collections::HashMap;

use super::decide::{bid_receipt, replay};
use crate::auction::{Auction, Bid};
use crate::command::{Command, IdempotencyKey, IdempotencyRecord, PlaceBid, Receipt};
use crate::error::{EngineError, Rejection};
use crate::ids::UserId;
use crate::rules::{self, AuctionState, Decision, RuleError, Rules};
use crate::store::BatchRecord;
use crate::wallet::{Hold, Wallet};
use crate::Timestamp;

/// A batch's bids, each with its idempotency key if it has one.
pub(super) type Bids = [(PlaceBid, Option<IdempotencyKey>)];

/// What a batch decided for one of its bids.
enum Outcome {
    /// Answered without deciding: a replay, or a refusal.
    Done(Box<Result<Receipt, EngineError>>),
    /// Accepted: the index of its decision.
    Decided(usize),
    /// The same key and bid as an earlier bid of the batch: its answer.
    SameAs(usize),
}

/// The batch as decided: an outcome per bid and the decisions to write.
pub(super) struct Decided<'b> {
    bids: &'b Bids,
    outcomes: Vec<Outcome>,
    /// The accepted bids' decisions, in order.
    pub(super) decisions: Vec<Decision>,
}

/// Which bids are refused on the auction as locked, and so refused whatever
/// the batch does before them: the minimum next bid never falls and an
/// ended auction stays ended. Such stale bids lock no wallet. Every bid is
/// stale when the auction does not exist.
pub(super) fn stale(
    rules: Rules<'_>,
    locked: Option<&Auction>,
    bids: &Bids,
    now: Timestamp,
) -> Vec<bool> {
    bids.iter()
        .map(|(bid, _)| {
            locked.is_none_or(|auction| rules::check_bid(rules, auction, bid, now).is_err())
        })
        .collect()
}

/// The wallets the batch locks besides every hold's owner's: the bidders
/// of bids that are not stale.
pub(super) fn bidders(bids: &Bids, stale: &[bool]) -> Vec<UserId> {
    bids.iter()
        .zip(stale)
        .filter(|(_, stale)| !**stale)
        .map(|((bid, _), _)| bid.bidder)
        .collect()
}

/// The keyed bids' (user, key), whose stored records the batch reads.
pub(super) fn keys(bids: &Bids) -> Vec<(UserId, &IdempotencyKey)> {
    bids.iter()
        .filter_map(|(bid, key)| Some((bid.bidder, key.as_ref()?)))
        .collect()
}

/// What the batch loaded once the auction was locked.
pub(super) struct Loaded {
    /// The auction, if it exists.
    pub(super) auction: Option<Auction>,
    /// Its open holds.
    pub(super) holds: Vec<Hold>,
    /// The locked wallets, ascending by user.
    pub(super) wallets: Vec<Wallet>,
    /// The record stored under each key of [`keys`], in order.
    pub(super) records: Vec<Option<IdempotencyRecord>>,
    /// The time of the batch, read under the auction's lock.
    pub(super) now: Timestamp,
}

/// Decides every bid of `bids` on `loaded`, in order. An error (stored state
/// that breaks an invariant) means the batch writes nothing.
pub(super) fn decide<'b>(
    rules: Rules<'_>,
    bids: &'b Bids,
    stale: &[bool],
    loaded: Loaded,
) -> Result<Decided<'b>, EngineError> {
    let Loaded {
        auction,
        mut holds,
        mut wallets,
        records,
        now,
    } = loaded;
    let mut outcomes = replays(bids, records);
    let Some(mut auction) = auction else {
        let outcomes = outcomes
            .into_iter()
            .zip(bids)
            .map(|(outcome, (bid, _))| {
                let missing = Rejection::AuctionNotFound {
                    auction_id: bid.auction_id,
                };
                outcome.unwrap_or_else(|| refused(missing))
            })
            .collect();
        return Ok(Decided {
            bids,
            outcomes,
            decisions: Vec::new(),
        });
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
            let Err(rejection) = rules::check_bid(rules, &auction, bid, now) else {
                return Err(super::invariant(
                    "a stale bid of the batch became a winning one",
                ));
            };
            outcomes[index] = Some(refused(rejection));
            continue;
        }
        let state = AuctionState {
            auction: &auction,
            holds: &holds,
            wallets: &wallets,
        };
        match rules::place_bid(rules, state, bid, now) {
            Ok(decision) => {
                auction = decision.auction.clone();
                apply(&decision, &mut holds, &mut wallets);
                if let Some(key) = key {
                    keyed.insert((bid.bidder, key), index);
                }
                outcomes[index] = Some(Outcome::Decided(decisions.len()));
                decisions.push(decision);
            }
            Err(RuleError::Rejected(rejection)) => outcomes[index] = Some(refused(rejection)),
            // Stored state is damaged: write nothing at all.
            Err(error @ RuleError::Inconsistent(_)) => return Err(error.into()),
        }
    }
    let outcomes = outcomes
        .into_iter()
        .map(|outcome| {
            outcome.ok_or_else(|| super::invariant("a bid of the batch was never decided"))
        })
        .collect::<Result<_, _>>()?;
    Ok(Decided {
        bids,
        outcomes,
        decisions,
    })
}

/// The keyed bids whose record is stored: answered by replaying it.
fn replays(bids: &Bids, records: Vec<Option<IdempotencyRecord>>) -> Vec<Option<Outcome>> {
    let mut records = records.into_iter();
    bids.iter()
        .map(|(bid, key)| {
            let key = key.as_ref()?;
            let record = records.next().flatten()?;
            let command = Command::PlaceBid(bid.clone());
            Some(Outcome::Done(Box::new(replay(record, &command, key))))
        })
        .collect()
}

fn refused(rejection: Rejection) -> Outcome {
    Outcome::Done(Box::new(Err(rejection.into())))
}

/// Carries `decision`'s wallets and holds into the batch's state, for the
/// next bid to be decided on.
fn apply(decision: &Decision, holds: &mut Vec<Hold>, wallets: &mut Vec<Wallet>) {
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
}

impl Decided<'_> {
    /// The idempotency records of the accepted keyed bids, written with the
    /// batch: each names its bid, which gets its id in the same write.
    pub(super) fn records(&self) -> Vec<BatchRecord<'_>> {
        self.bids
            .iter()
            .zip(&self.outcomes)
            .filter_map(|((bid, key), outcome)| match (key, outcome) {
                (Some(key), Outcome::Decided(index)) => {
                    let decision = &self.decisions[*index];
                    Some(BatchRecord {
                        decision: *index,
                        user: bid.bidder,
                        key,
                        record: IdempotencyRecord {
                            command: Command::PlaceBid(bid.clone()),
                            receipt: bid_receipt(
                                decision.auction.clone(),
                                bid.bidder,
                                decision.bid.clone(),
                            ),
                        },
                    })
                }
                _ => None,
            })
            .collect()
    }

    /// Every bid's answer, once the decisions are written: `stored` holds
    /// the stored bid of each decision.
    pub(super) fn answers(&self, stored: Vec<Option<Bid>>) -> Vec<Result<Receipt, EngineError>> {
        let bidders = self
            .bids
            .iter()
            .zip(&self.outcomes)
            .filter(|(_, outcome)| matches!(outcome, Outcome::Decided(_)))
            .map(|((bid, _), _)| bid.bidder);
        let receipts: Vec<Receipt> = self
            .decisions
            .iter()
            .zip(stored)
            .zip(bidders)
            .map(|((decision, stored), bidder)| {
                bid_receipt(decision.auction.clone(), bidder, stored)
            })
            .collect();
        (0..self.bids.len())
            .map(|index| self.answer(&receipts, index))
            .collect()
    }

    fn answer(&self, receipts: &[Receipt], index: usize) -> Result<Receipt, EngineError> {
        match &self.outcomes[index] {
            Outcome::Done(answer) => match answer.as_ref() {
                Ok(receipt) => Ok(receipt.clone()),
                Err(error) => Err(super::coalesce::error_for_another_caller(error)),
            },
            Outcome::Decided(decision) => Ok(receipts[*decision].clone()),
            Outcome::SameAs(first) => self.answer(receipts, *first),
        }
    }
}
