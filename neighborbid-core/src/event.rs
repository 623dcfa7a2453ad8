//! Events: what watchers and users are told after a change commits.
//!
//! Every change of an auction raises its sequence number by one and produces
//! exactly one [`Event`] with that number. The event holds the public facts
//! everyone in the auction's room may see and the private notices meant for
//! single users. A consumer therefore sees every sequence number of an
//! auction exactly once whoever it is, drops duplicates by
//! `(auction_id, seq)` and detects gaps.

use serde::{Deserialize, Serialize};

use crate::ids::{AuctionId, UserId};
use crate::money::Money;
use crate::Timestamp;

/// One committed change of one auction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The auction.
    pub auction_id: AuctionId,
    /// The auction's sequence number after this change (1, 2, 3, ...).
    pub seq: u64,
    /// Server time of the change.
    pub at: Timestamp,
    /// The auction is local ([`Scope::Local`](crate::Scope::Local)).
    /// Cross-process fan-out may leave local auctions out, as NeighborBid's first version did
    /// did (`neighborbid-redis` does by default).
    #[serde(default)]
    pub local: bool,
    /// What everyone watching the auction may see.
    pub public: Vec<PublicEvent>,
    /// What only one user may see each.
    pub private: Vec<PrivateNotice>,
}

/// Names one event: its auction and sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventId {
    /// The auction.
    pub auction_id: AuctionId,
    /// The sequence number.
    pub seq: u64,
}

impl Event {
    /// Which event this is.
    pub fn id(&self) -> EventId {
        EventId {
            auction_id: self.auction_id,
            seq: self.seq,
        }
    }

    /// The private notices addressed to `user`.
    pub fn notices_for(&self, user: UserId) -> impl Iterator<Item = &PrivateEvent> {
        self.private
            .iter()
            .filter(move |notice| notice.user == user)
            .map(|notice| &notice.event)
    }

    /// This event as `viewer` may see it: the public part, plus the private
    /// notices addressed to them (none for an anonymous viewer).
    pub fn view_for(&self, viewer: Option<UserId>) -> Event {
        Event {
            private: self
                .private
                .iter()
                .filter(|notice| Some(notice.user) == viewer)
                .cloned()
                .collect(),
            ..self.clone()
        }
    }
}

/// A public fact about an auction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PublicEvent {
    /// The price rose: a bid leads, or the leader's maximum answered a
    /// lower challenger (`auto`).
    BidPlaced {
        /// Who leads.
        bidder: UserId,
        /// The new price.
        amount: Money,
        /// Bids recorded so far, this one included.
        bid_count: u32,
        /// The smallest next bid.
        min_next_bid: Money,
        /// Placed by the engine from the leader's maximum.
        auto: bool,
    },
    /// The highest maximum reached the hidden reserve; the price jumped to
    /// at least the reserve.
    ReserveMet {
        /// The price now.
        price: Money,
    },
    /// A late bid moved the end (soft close).
    Extended {
        /// The new end.
        ends_at: Timestamp,
    },
    /// Buy-now is no longer offered.
    BuyNowWithdrawn,
    /// The auction ended below its reserve; it closes unsold.
    ReserveNotMet,
    /// The auction closed with a winner.
    Sold {
        /// Who won.
        winner: UserId,
        /// What they paid.
        price: Money,
    },
    /// The auction closed without a sale (no bids, or the reserve not met).
    Unsold,
    /// Someone bought the item at the buy-now price, ending the auction.
    BoughtNow {
        /// Who bought.
        buyer: UserId,
        /// What they paid.
        price: Money,
    },
    /// The seller withdrew the auction before any bid.
    Cancelled,
    /// The seller ended the auction before its time; the outcome (`Sold`
    /// or `Unsold`) follows in the same change.
    EndedEarly {
        /// The new end: the moment it was ended.
        ends_at: Timestamp,
    },
}

/// A notice for one user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateNotice {
    /// Who may see it.
    pub user: UserId,
    /// What it says.
    pub event: PrivateEvent,
}

/// What a private notice says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PrivateEvent {
    /// You no longer lead; your escrow was returned to your balance.
    /// The public event of the same change says whether bidding goes on.
    Outbid {
        /// The price now (the new bid or the buy-now price).
        price: Money,
    },
    /// You won (at settlement, or by buying now) and paid `price`.
    Won {
        /// What you paid.
        price: Money,
    },
}
