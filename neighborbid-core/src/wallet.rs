//! Wallets, escrow holds and the append-only history of money movements.
//!
//! Every movement is one [`LedgerEntry`] of a fixed [`EntryKind`]; the kind
//! alone decides how `balance` and `locked` change, in
//! [`EntryKind::apply`]. Money enters only by deposit and leaves only by
//! withdrawal; every other kind moves it between wallets or between
//! `balance` and `locked`, so `balance + locked` summed over all wallets
//! always equals deposits minus withdrawals.

use serde::{Deserialize, Serialize};

use crate::ids::{AuctionId, UserId};
use crate::money::Money;
use crate::Timestamp;

/// A user's money: `balance` is available, `locked` is held in escrow for
/// auctions the user currently leads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wallet {
    /// The owner.
    pub user: UserId,
    /// Available to bid, buy or withdraw.
    pub balance: Money,
    /// Held for leading bids; always the sum of the user's open [`Hold`]s.
    pub locked: Money,
}

impl Wallet {
    /// The most deposits may bring a wallet to, 10^15, counting what is
    /// locked. Only deposits are held to it: money moving between balance
    /// and escrow, or from one wallet to another (a refund, a release, a
    /// sale), is never refused for a limit, so a full wallet can always be
    /// outbid, bought out or paid.
    pub const LIMIT: Money = Money::const_units(1_000_000_000_000_000);

    /// A wallet with nothing in it. Every user has one implicitly.
    pub fn empty(user: UserId) -> Wallet {
        Wallet {
            user,
            balance: Money::ZERO,
            locked: Money::ZERO,
        }
    }
}

/// What a history entry did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Money in: balance up.
    Deposit,
    /// Money out: balance down.
    Withdrawal,
    /// A bid's escrow: balance down, locked up.
    BidHold,
    /// Escrow returned (outbid, bought out, cancelled): locked down, balance up.
    HoldRelease,
    /// The winner pays from escrow at settlement: locked down.
    SettlementDebit,
    /// The seller is paid at settlement: balance up.
    SaleCredit,
    /// The buyer pays a buy-now price from their balance: balance down.
    BuyNowDebit,
    /// The seller is paid a buy-now price: balance up.
    BuyNowCredit,
}

/// A movement that would break a wallet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// Not enough available balance.
    #[error("insufficient funds: {available} available")]
    Insufficient {
        /// The available balance before the movement.
        available: Money,
    },
    /// A deposit would bring `balance + locked` above [`Wallet::LIMIT`]
    /// (or, for any movement, an amount above [`Money::MAX`]).
    #[error("balance limit exceeded")]
    LimitExceeded,
    /// Escrow would go negative: the stored state is inconsistent (a bug or
    /// a damaged database, never a user error).
    #[error("escrow of user {user} would go negative")]
    Inconsistent {
        /// The wallet.
        user: UserId,
    },
}

impl EntryKind {
    /// The stable lowercase name (`"bid_hold"`), as stores write it.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Deposit => "deposit",
            EntryKind::Withdrawal => "withdrawal",
            EntryKind::BidHold => "bid_hold",
            EntryKind::HoldRelease => "hold_release",
            EntryKind::SettlementDebit => "settlement_debit",
            EntryKind::SaleCredit => "sale_credit",
            EntryKind::BuyNowDebit => "buy_now_debit",
            EntryKind::BuyNowCredit => "buy_now_credit",
        }
    }

    /// All kinds, for stores that map names back.
    pub const ALL: [EntryKind; 8] = [
        EntryKind::Deposit,
        EntryKind::Withdrawal,
        EntryKind::BidHold,
        EntryKind::HoldRelease,
        EntryKind::SettlementDebit,
        EntryKind::SaleCredit,
        EntryKind::BuyNowDebit,
        EntryKind::BuyNowCredit,
    ];

    /// Applies a movement of `amount` to `wallet`, or says why it cannot.
    pub fn apply(self, wallet: &mut Wallet, amount: Money) -> Result<(), LedgerError> {
        let user = wallet.user;
        let take_balance = |balance: Money| {
            balance
                .checked_sub(amount)
                .ok_or(LedgerError::Insufficient { available: balance })
        };
        let add = |to: Money| to.checked_add(amount).ok_or(LedgerError::LimitExceeded);
        let take_locked = |locked: Money| {
            locked
                .checked_sub(amount)
                .ok_or(LedgerError::Inconsistent { user })
        };
        let (balance, locked) = match self {
            EntryKind::Deposit => {
                let total = wallet.balance.checked_add(wallet.locked);
                match total.and_then(|total| total.checked_add(amount)) {
                    Some(total) if total <= Wallet::LIMIT => {}
                    _ => return Err(LedgerError::LimitExceeded),
                }
                (add(wallet.balance)?, wallet.locked)
            }
            EntryKind::SaleCredit | EntryKind::BuyNowCredit => {
                (add(wallet.balance)?, wallet.locked)
            }
            EntryKind::Withdrawal | EntryKind::BuyNowDebit => {
                (take_balance(wallet.balance)?, wallet.locked)
            }
            EntryKind::BidHold => (take_balance(wallet.balance)?, add(wallet.locked)?),
            EntryKind::HoldRelease => (add(wallet.balance)?, take_locked(wallet.locked)?),
            EntryKind::SettlementDebit => (wallet.balance, take_locked(wallet.locked)?),
        };
        wallet.balance = balance;
        wallet.locked = locked;
        Ok(())
    }

    /// How the movement changes the user's hold on the entry's auction:
    /// `Some(true)` adds, `Some(false)` subtracts, `None` leaves it alone.
    fn hold_effect(self) -> Option<bool> {
        match self {
            EntryKind::BidHold => Some(true),
            EntryKind::HoldRelease | EntryKind::SettlementDebit => Some(false),
            _ => None,
        }
    }
}

/// One line of a wallet's history. Never updated or deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Whose wallet.
    pub user: UserId,
    /// What happened.
    pub kind: EntryKind,
    /// How much moved (always positive).
    pub amount: Money,
    /// The auction it was for, if any.
    pub auction_id: Option<AuctionId>,
    /// `balance` right after this entry.
    pub balance_after: Money,
    /// `locked` right after this entry.
    pub locked_after: Money,
    /// Server time.
    pub at: Timestamp,
}

/// Money one user has in escrow for one auction. A wallet's `locked` is
/// the sum of its open holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The auction.
    pub auction_id: AuctionId,
    /// The user.
    pub user: UserId,
    /// How much is held; zero in a decision means the hold is closed.
    pub amount: Money,
}

/// Builds the postings of one decision: applies entries to the loaded
/// wallets and holds, in order, each entry recording the balance after it.
#[derive(Debug)]
pub(crate) struct Postings {
    at: Timestamp,
    // A decision touches a few wallets and holds: vectors searched in
    // order, no map nodes to allocate.
    wallets: Vec<Wallet>,
    holds: Vec<Hold>,
    touched_holds: Vec<(AuctionId, UserId)>,
    entries: Vec<LedgerEntry>,
}

impl Postings {
    pub(crate) fn new(at: Timestamp, wallets: &[Wallet], holds: &[Hold]) -> Postings {
        Postings {
            at,
            wallets: wallets.to_vec(),
            holds: holds.to_vec(),
            touched_holds: Vec::with_capacity(holds.len() + 1),
            entries: Vec::with_capacity(holds.len() + 2),
        }
    }

    /// The wallet as it stands after the postings so far.
    pub(crate) fn wallet(&self, user: UserId) -> Wallet {
        self.wallets
            .iter()
            .find(|w| w.user == user)
            .cloned()
            .unwrap_or_else(|| Wallet::empty(user))
    }

    fn hold_mut(&mut self, auction_id: AuctionId, user: UserId) -> &mut Money {
        let at = self
            .holds
            .iter()
            .position(|h| h.auction_id == auction_id && h.user == user);
        let at = at.unwrap_or_else(|| {
            self.holds.push(Hold {
                auction_id,
                user,
                amount: Money::ZERO,
            });
            self.holds.len() - 1
        });
        &mut self.holds[at].amount
    }

    pub(crate) fn post(
        &mut self,
        user: UserId,
        kind: EntryKind,
        amount: Money,
        auction_id: Option<AuctionId>,
    ) -> Result<(), LedgerError> {
        let mut wallet = self.wallet(user);
        kind.apply(&mut wallet, amount)?;
        if let (Some(add), Some(auction)) = (kind.hold_effect(), auction_id) {
            let held = self.hold_mut(auction, user);
            *held = if add {
                held.checked_add(amount).ok_or(LedgerError::LimitExceeded)?
            } else {
                held.checked_sub(amount)
                    .ok_or(LedgerError::Inconsistent { user })?
            };
            if !self.touched_holds.contains(&(auction, user)) {
                self.touched_holds.push((auction, user));
            }
        }
        self.entries.push(LedgerEntry {
            user,
            kind,
            amount,
            auction_id,
            balance_after: wallet.balance,
            locked_after: wallet.locked,
            at: self.at,
        });
        match self.wallets.iter_mut().find(|w| w.user == user) {
            Some(posted) => *posted = wallet,
            None => self.wallets.push(wallet),
        }
        Ok(())
    }

    /// Releases every open hold on `auction`, returning who was holding what.
    pub(crate) fn release_all(&mut self, auction: AuctionId) -> Result<Vec<Hold>, LedgerError> {
        let mut open: Vec<Hold> = self
            .holds
            .iter()
            .filter(|h| h.auction_id == auction && !h.amount.is_zero())
            .cloned()
            .collect();
        // Released in user order, whatever order the holds came in.
        open.sort_by_key(|h| h.user);
        for hold in &open {
            self.post(
                hold.user,
                EntryKind::HoldRelease,
                hold.amount,
                Some(auction),
            )?;
        }
        Ok(open)
    }

    /// The wallets touched (ascending), the entries (in posting order) and
    /// the holds touched (in the order first touched).
    pub(crate) fn finish(mut self) -> (Vec<Wallet>, Vec<LedgerEntry>, Vec<Hold>) {
        let entries = &self.entries;
        self.wallets
            .retain(|wallet| entries.iter().any(|entry| entry.user == wallet.user));
        self.wallets.sort_by_key(|wallet| wallet.user);
        let touched = &self.touched_holds;
        let first_touched = |hold: &Hold| {
            touched
                .iter()
                .position(|&(auction, user)| auction == hold.auction_id && user == hold.user)
        };
        self.holds.retain(|hold| first_touched(hold).is_some());
        self.holds.sort_by_key(|hold| first_touched(hold));
        (self.wallets, self.entries, self.holds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_moves_money_as_documented() {
        let start = || Wallet {
            user: UserId(1),
            balance: Money::units(100),
            locked: Money::units(50),
        };
        let after = |kind: EntryKind| {
            let mut wallet = start();
            kind.apply(&mut wallet, Money::units(10)).unwrap();
            (wallet.balance, wallet.locked)
        };
        let m = Money::units;
        assert_eq!(after(EntryKind::Deposit), (m(110), m(50)));
        assert_eq!(after(EntryKind::Withdrawal), (m(90), m(50)));
        assert_eq!(after(EntryKind::BidHold), (m(90), m(60)));
        assert_eq!(after(EntryKind::HoldRelease), (m(110), m(40)));
        assert_eq!(after(EntryKind::SettlementDebit), (m(100), m(40)));
        assert_eq!(after(EntryKind::SaleCredit), (m(110), m(50)));
        assert_eq!(after(EntryKind::BuyNowDebit), (m(90), m(50)));
        assert_eq!(after(EntryKind::BuyNowCredit), (m(110), m(50)));
    }

    #[test]
    fn kinds_are_stored_under_their_serde_names() {
        let names: std::collections::BTreeSet<_> =
            EntryKind::ALL.iter().map(|kind| kind.as_str()).collect();
        assert_eq!(names.len(), EntryKind::ALL.len(), "{names:?}");
        for kind in EntryKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
    }

    #[test]
    fn refuses_to_go_negative() {
        let mut wallet = Wallet::empty(UserId(7));
        assert_eq!(
            EntryKind::BidHold.apply(&mut wallet, Money::units(1)),
            Err(LedgerError::Insufficient {
                available: Money::ZERO
            })
        );
        assert_eq!(
            EntryKind::HoldRelease.apply(&mut wallet, Money::units(1)),
            Err(LedgerError::Inconsistent { user: UserId(7) })
        );
        assert_eq!(wallet, Wallet::empty(UserId(7)));
        wallet.balance = Money::MAX;
        assert_eq!(
            EntryKind::SaleCredit.apply(&mut wallet, Money::units(1)),
            Err(LedgerError::LimitExceeded)
        );
    }

    #[test]
    fn deposits_count_what_is_locked_and_nothing_else_is_limited() {
        let limit = Wallet::LIMIT;
        assert_eq!(limit.amount(), rust_decimal::Decimal::from(10u64.pow(15)));
        let one = Money::units(1);
        let mut full = Wallet {
            user: UserId(7),
            balance: limit.checked_sub(Money::units(100)).unwrap(),
            locked: Money::units(100),
        };
        assert_eq!(
            EntryKind::Deposit.apply(&mut full.clone(), one),
            Err(LedgerError::LimitExceeded),
            "the locked money counts"
        );
        // Releasing the hold, selling, being bought from: never refused.
        for kind in [
            EntryKind::HoldRelease,
            EntryKind::SaleCredit,
            EntryKind::BuyNowCredit,
        ] {
            let mut wallet = full.clone();
            assert_eq!(kind.apply(&mut wallet, one), Ok(()), "{kind:?}");
        }
        let mut paid = full.clone();
        EntryKind::SaleCredit
            .apply(&mut paid, Money::units(1_000_000_000_000))
            .unwrap();
        assert!(paid.balance > limit);
        // A wallet above the limit withdraws; once below, deposits again.
        EntryKind::Withdrawal
            .apply(&mut paid, Money::units(1_000_000_000_100))
            .unwrap();
        EntryKind::Deposit
            .apply(&mut paid, Money::units(100))
            .unwrap();
        assert_eq!(
            EntryKind::Deposit.apply(&mut full, Money::ZERO),
            Ok(()),
            "a full wallet is not over the limit"
        );
    }
}
