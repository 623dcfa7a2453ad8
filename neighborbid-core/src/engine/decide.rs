//! One command in its transaction: load -> decide -> write. Every command
//! but a coalesced batch of bids (`batch.rs`) runs this way, and an
//! auction command's decision is written as a batch of one, with its
//! idempotency record, by the same store call a batch uses.

use crate::auction::{Auction, Bid};
use crate::clock::Clock;
use crate::command::{BidReceipt, Command, IdempotencyKey, IdempotencyRecord, Receipt};
use crate::error::{EngineError, Rejection};
use crate::event::Event;
use crate::ids::{AuctionId, UserId};
use crate::notify::Notifier;
use crate::rules::{self, AuctionAction, AuctionState, Decision, RuleError};
use crate::store::{AuctionStore, BatchReads, BatchRecord, Store, Transaction, WalletLedger};
use crate::wallet::Wallet;
use crate::Timestamp;

use super::{finish, invariant, Attempt, Engine};

impl<S: Store, N: Notifier> Engine<S, N> {
    /// One attempt at `command` in a transaction of its own, committed if
    /// it succeeds and rolled back if not.
    pub(super) async fn attempt(
        &self,
        command: &Command,
        key: Option<&IdempotencyKey>,
    ) -> Attempt<Receipt> {
        let mut tx = self.inner.store.begin().await?;
        let result = self.attempt_in(&mut tx, command, key).await;
        finish(tx, result).await
    }

    /// [`attempt`](Self::attempt)'s work inside its transaction.
    async fn attempt_in(
        &self,
        tx: &mut S::Tx,
        command: &Command,
        key: Option<&IdempotencyKey>,
    ) -> Attempt<Receipt> {
        let actor = command.actor();
        // An auction command reads its record once it holds the auction,
        // with the wallets it locks (one round trip); the others first.
        if let Some(key) = key.filter(|_| !on_an_auction(command)) {
            if let Some(record) = tx.load_idempotency(actor, key).await? {
                return replay(record, command, key).map(|receipt| (receipt, Vec::new()));
            }
        }
        let (receipt, event) = match self.decide(tx, command, key).await {
            Err(EngineError::Rejected(rejection)) => {
                // The same request may have been in flight when this one
                // looked (a client retrying after a lost answer, its
                // first COMMIT still on the way). It held the locks this
                // one waited for, so its record is visible by now; a
                // refusal must not hide that it happened.
                if let Some(key) = key {
                    if let Some(record) = tx.load_idempotency(actor, key).await? {
                        return replay(record, command, key).map(|receipt| (receipt, Vec::new()));
                    }
                }
                return Err(rejection.into());
            }
            decided => decided?,
        };
        Ok((receipt, event.into_iter().collect()))
    }

    /// Decides `command` under the locks it needs and writes the result,
    /// with its idempotency record when it has a `key`.
    async fn decide(
        &self,
        tx: &mut S::Tx,
        command: &Command,
        key: Option<&IdempotencyKey>,
    ) -> Result<(Receipt, Option<Event>), EngineError> {
        // Every command reads the time once it holds its locks: an
        // auction's (in `lock_and_decide`), or a wallet's.
        let clock = &*self.inner.config.clock;
        let rules = self.rules();
        let stored = key.map(|key| (command.actor(), key));
        let receipt = match command {
            Command::CreateAuction(cmd) => {
                let auction = rules::create_auction(rules, cmd, decision_time(tx, clock).await?)?;
                Receipt::AuctionCreated(tx.insert_auction(&auction).await?)
            }
            Command::Deposit(cmd) => {
                let wallet = lock_wallet(tx, cmd.user).await?;
                let now = decision_time(tx, clock).await?;
                let decision = rules::deposit(rules, &wallet, cmd, now)?;
                tx.write_wallet_decision(&decision).await?;
                Receipt::Deposited(decision.entry)
            }
            Command::Withdraw(cmd) => {
                let wallet = lock_wallet(tx, cmd.user).await?;
                let now = decision_time(tx, clock).await?;
                let decision = rules::withdraw(rules, &wallet, cmd, now)?;
                tx.write_wallet_decision(&decision).await?;
                Receipt::Withdrawn(decision.entry)
            }
            Command::PlaceBid(cmd) => {
                let action = AuctionAction::Bid(cmd.bidder);
                let check = |auction: &Auction, now| rules::check_bid(rules, auction, cmd, now);
                let decide = |state: AuctionState<'_>, now: Timestamp| {
                    rules::place_bid(rules, state, cmd, now)
                };
                let outcome =
                    lock_and_decide(tx, cmd.auction_id, action, clock, check, decide, stored)
                        .await?;
                let receipt = |auction, bid| bid_receipt(auction, cmd.bidder, bid);
                return write_decision(tx, outcome, command, key, receipt).await;
            }
            Command::BuyNow(cmd) => {
                let action = AuctionAction::BuyNow(cmd.buyer);
                let decide = |state: AuctionState<'_>, now: Timestamp| {
                    rules::buy_now(rules, state, cmd, now)
                };
                let outcome =
                    lock_and_decide(tx, cmd.auction_id, action, clock, no_check, decide, stored)
                        .await?;
                let receipt = |auction, _| Receipt::BoughtNow(auction);
                return write_decision(tx, outcome, command, key, receipt).await;
            }
            Command::CancelAuction(cmd) => {
                let action = AuctionAction::Cancel;
                let decide =
                    |state: AuctionState<'_>, now: Timestamp| rules::cancel(state, cmd, now);
                let outcome =
                    lock_and_decide(tx, cmd.auction_id, action, clock, no_check, decide, stored)
                        .await?;
                let receipt = |auction, _| Receipt::Cancelled(auction);
                return write_decision(tx, outcome, command, key, receipt).await;
            }
            Command::EndEarly(cmd) => {
                let action = AuctionAction::Settle;
                let decide =
                    |state: AuctionState<'_>, now: Timestamp| rules::end_early(state, cmd, now);
                let outcome =
                    lock_and_decide(tx, cmd.auction_id, action, clock, no_check, decide, stored)
                        .await?;
                let receipt = |auction, _| Receipt::EndedEarly(auction);
                return write_decision(tx, outcome, command, key, receipt).await;
            }
        };
        // Not an auction command: its rows are written, its record follows.
        if let Some(key) = key {
            let record = IdempotencyRecord {
                command: command.clone(),
                receipt: receipt.clone(),
            };
            tx.save_idempotency(command.actor(), key, &record).await?;
        }
        Ok((receipt, None))
    }
}

/// What an auction command came to under the auction's lock.
enum Outcome {
    /// A decision to write.
    Decided(Decision),
    /// The record stored under the command's key: it was carried out
    /// before (a retry whose first answer was lost).
    Stored(IdempotencyRecord),
}

/// Whether `command` is decided under an auction's lock.
fn on_an_auction(command: &Command) -> bool {
    matches!(
        command,
        Command::PlaceBid(_)
            | Command::BuyNow(_)
            | Command::CancelAuction(_)
            | Command::EndEarly(_)
    )
}

/// Locks the auction, reads the time from `clock` (so a command that
/// waited for the lock is judged when it got it, after every decision
/// committed before it), asks `check` (refusals that need no wallet), locks
/// the wallets the action touches (ascending) and reads the record `stored`
/// under (user, key) in the same round trip, and decides, unless a record
/// was there. A request still committing holds the auction until it is
/// done, so its record is visible once the lock is ours; a refusal makes
/// the caller look for the record again (a retry of a command that went
/// through is refused on the state it left).
async fn lock_and_decide<T: Transaction>(
    tx: &mut T,
    auction_id: AuctionId,
    action: AuctionAction,
    clock: &dyn Clock,
    check: impl FnOnce(&Auction, Timestamp) -> Result<(), Rejection>,
    decide: impl FnOnce(AuctionState<'_>, Timestamp) -> Result<Decision, RuleError>,
    stored: Option<(UserId, &IdempotencyKey)>,
) -> Result<Outcome, EngineError> {
    let auction = tx
        .lock_auction(auction_id)
        .await?
        .ok_or(Rejection::AuctionNotFound { auction_id })?;
    let now = decision_time(tx, clock).await?;
    check(&auction, now)?;
    let parties = action.parties(&auction);
    let BatchReads {
        holds,
        wallets,
        records,
    } = tx
        .batch_reads(auction.id, stored.as_slice(), &parties)
        .await?;
    if let Some(record) = records.into_iter().flatten().next() {
        return Ok(Outcome::Stored(record));
    }
    let state = AuctionState {
        auction: &auction,
        holds: &holds,
        wallets: &wallets,
    };
    Ok(Outcome::Decided(decide(state, now)?))
}

/// Writes one command's decision as a batch of one, with the command's
/// idempotency record when it has a `key`, or answers with the record
/// stored before; `receipt` makes the receipt from the auction as decided
/// and its bid. Returns the receipt, its bid as stored (with its id), and
/// the decision's event.
async fn write_decision<T: Transaction>(
    tx: &mut T,
    outcome: Outcome,
    command: &Command,
    key: Option<&IdempotencyKey>,
    receipt: impl Fn(Auction, Option<Bid>) -> Receipt,
) -> Result<(Receipt, Option<Event>), EngineError> {
    let decision = match (outcome, key) {
        (Outcome::Decided(decision), _) => decision,
        (Outcome::Stored(record), Some(key)) => return Ok((replay(record, command, key)?, None)),
        (Outcome::Stored(_), None) => return Err(invariant("a record found without a key")),
    };
    let record = key.map(|key| BatchRecord {
        decision: 0,
        user: command.actor(),
        key,
        record: IdempotencyRecord {
            command: command.clone(),
            receipt: receipt(decision.auction.clone(), decision.bid.clone()),
        },
    });
    let stored = tx
        .write_decisions(std::slice::from_ref(&decision), record.as_slice())
        .await?;
    let receipt = match record {
        Some(record) => record.into_stored(&stored).receipt,
        None => receipt(decision.auction, stored.into_iter().next().flatten()),
    };
    Ok((receipt, Some(decision.event)))
}

/// The receipt of a bid by `bidder` that left `auction` so; `bid` as
/// stored.
pub(super) fn bid_receipt(auction: Auction, bidder: UserId, bid: Option<Bid>) -> Receipt {
    Receipt::BidPlaced(BidReceipt {
        bid,
        leading: auction.bidding.leader == Some(bidder),
        auction,
    })
}

/// The time to judge a decision by, once `tx` holds its locks: the
/// store's clock where it keeps one (see [`Transaction::clock`]), else the
/// engine's.
pub(super) async fn decision_time<T: Transaction>(
    tx: &mut T,
    clock: &dyn Clock,
) -> Result<Timestamp, EngineError> {
    Ok(tx.clock().await?.unwrap_or_else(|| clock.now()))
}

fn no_check(_: &Auction, _: Timestamp) -> Result<(), Rejection> {
    Ok(())
}

async fn lock_wallet<T: Transaction>(tx: &mut T, user: UserId) -> Result<Wallet, EngineError> {
    tx.lock_wallets(&[user])
        .await?
        .pop()
        .ok_or_else(|| invariant("the store returned no wallet"))
}

/// The answer to a request whose key has a stored record: the first
/// receipt if it is the same command, a conflict otherwise.
pub(super) fn replay(
    record: IdempotencyRecord,
    command: &Command,
    key: &IdempotencyKey,
) -> Result<Receipt, EngineError> {
    if record.command == *command {
        Ok(record.receipt)
    } else {
        Err(EngineError::IdempotencyConflict { key: key.clone() })
    }
}
