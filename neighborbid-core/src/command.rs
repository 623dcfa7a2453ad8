//! Commands the engine executes, their receipts, and idempotency keys.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::auction::{Auction, Bid, Listing, Region};
use crate::ids::{AuctionId, UserId};
use crate::money::Money;
use crate::policy::{AuctionPolicy, Increment};
use crate::wallet::LedgerEntry;
use crate::Timestamp;

/// Put an auction up for sale. Its JSON is one flat object: the
/// listing's fields, `starts_at` and `ends_at`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateAuction {
    /// What is listed.
    #[serde(flatten)]
    pub listing: Listing,
    /// When bidding opens; `None` means now.
    pub starts_at: Option<Timestamp>,
    /// When bidding closes; after `starts_at` and in the future.
    pub ends_at: Timestamp,
}

impl CreateAuction {
    /// A national auction by `seller`, open from now until `ends_at`, with
    /// no description, category or details, bids rising by `increment`
    /// ([`Increment::fixed`] or [`Increment::percent`]), no reserve, a hard
    /// close and no buy-now. Set any other field on the result:
    ///
    /// ```
    /// use neighborbid_core::{CreateAuction, Increment, Money, Region, Scope, UserId};
    ///
    /// let ends_at = chrono::Utc::now() + chrono::TimeDelta::hours(2);
    /// let mut desk = CreateAuction::new(UserId(1), "Oak desk", Money::units(10_000), Increment::fixed(Money::units(500)), ends_at);
    /// desk.listing.scope = Scope::Local { region: Region::new("seoul/mapo/mangwon") };
    /// desk.listing.buy_now_price = Some(Money::units(50_000));
    /// ```
    pub fn new(
        seller: UserId,
        title: impl Into<String>,
        start_price: Money,
        increment: Increment,
        ends_at: Timestamp,
    ) -> CreateAuction {
        CreateAuction {
            listing: Listing::new(seller, title, start_price, AuctionPolicy::new(increment)),
            starts_at: None,
            ends_at,
        }
    }

    /// The command with its listing changed by `change`, for variations of
    /// one listing: `desk.clone().with_listing(|listing| listing.buy_now_price = None)`.
    pub fn with_listing(mut self, change: impl FnOnce(&mut Listing)) -> CreateAuction {
        change(&mut self.listing);
        self
    }

    /// The earliest `starts_at` or `ends_at` accepted: 1970-01-01T00:00:00Z.
    /// Dates outside [`EARLIEST`](Self::EARLIEST) to the end of 9999
    /// ([`latest`](Self::latest)) are refused (`invalid_auction`) by every store alike, before any
    /// database sees them (Postgres cannot store some of them).
    pub const EARLIEST: Timestamp = Timestamp::UNIX_EPOCH;

    /// The latest `starts_at` or `ends_at` accepted: the end of year 9999.
    pub fn latest() -> Timestamp {
        chrono::NaiveDate::from_ymd_opt(10_000, 1, 1)
            .and_then(|day| day.and_hms_opt(0, 0, 0))
            .map(|midnight| midnight.and_utc() - chrono::TimeDelta::microseconds(1))
            .expect("a valid date")
    }
}

/// Bid on an auction. [`PlaceBid::new`] builds the common case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceBid {
    /// The auction.
    pub auction_id: AuctionId,
    /// Who bids.
    pub bidder: UserId,
    /// The bidder's region as the host application knows it; local auctions
    /// admit bidders through the engine's region policy.
    pub bidder_region: Option<Region>,
    /// The bid: at least the auction's minimum next bid.
    pub amount: Money,
    /// A maximum (proxy) bid, at least `amount`: the engine raises this
    /// bidder's bid automatically, only as far as needed, up to it. The
    /// maximum is held in escrow while the bidder leads.
    #[serde(default)]
    pub max_amount: Option<Money>,
}

impl PlaceBid {
    /// `bidder` bids `amount` on `auction_id`, with no maximum and no
    /// region (set [`bidder_region`](Self::bidder_region) for local
    /// auctions, [`max_amount`](Self::max_amount) for a proxy bid).
    pub fn new(auction_id: AuctionId, bidder: UserId, amount: Money) -> PlaceBid {
        PlaceBid {
            auction_id,
            bidder,
            bidder_region: None,
            amount,
            max_amount: None,
        }
    }
}

/// Buy at the auction's buy-now price, ending it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuyNow {
    /// The auction.
    pub auction_id: AuctionId,
    /// Who buys.
    pub buyer: UserId,
    /// The buyer's region, as for [`PlaceBid::bidder_region`].
    pub buyer_region: Option<Region>,
}

/// The seller withdraws an auction that has no bid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelAuction {
    /// The auction.
    pub auction_id: AuctionId,
    /// Who asks; must be the seller.
    pub seller: UserId,
}

/// The seller ends a running auction now: it settles with the current
/// leader, or ends unsold without bids, as if its time had run out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndEarly {
    /// The auction.
    pub auction_id: AuctionId,
    /// Who asks; must be the seller.
    pub seller: UserId,
}

/// Add money to a wallet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deposit {
    /// Whose wallet.
    pub user: UserId,
    /// How much (positive).
    pub amount: Money,
}

/// Take available money out of a wallet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withdraw {
    /// Whose wallet.
    pub user: UserId,
    /// How much (positive, at most the available balance).
    pub amount: Money,
}

/// Any mutating command a user can send. Stored with its receipt under an
/// idempotency key, so a replay can be compared with the original.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// See [`CreateAuction`].
    CreateAuction(CreateAuction),
    /// See [`PlaceBid`].
    PlaceBid(PlaceBid),
    /// See [`BuyNow`].
    BuyNow(BuyNow),
    /// See [`CancelAuction`].
    CancelAuction(CancelAuction),
    /// See [`EndEarly`].
    EndEarly(EndEarly),
    /// See [`Deposit`].
    Deposit(Deposit),
    /// See [`Withdraw`].
    Withdraw(Withdraw),
}

impl Command {
    /// The user acting; idempotency keys are scoped to them.
    pub fn actor(&self) -> UserId {
        match self {
            Command::CreateAuction(c) => c.listing.seller,
            Command::PlaceBid(c) => c.bidder,
            Command::BuyNow(c) => c.buyer,
            Command::CancelAuction(c) => c.seller,
            Command::EndEarly(c) => c.seller,
            Command::Deposit(c) => c.user,
            Command::Withdraw(c) => c.user,
        }
    }
}

/// What a successful command returns. The same value is returned again for
/// a replay with the same idempotency key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Receipt {
    /// The auction as created.
    AuctionCreated(Auction),
    /// The accepted bid and the auction after it.
    BidPlaced(BidReceipt),
    /// The auction after the purchase.
    BoughtNow(Auction),
    /// The auction after cancelling.
    Cancelled(Auction),
    /// The auction after its seller ended it early.
    EndedEarly(Auction),
    /// The deposit's history entry.
    Deposited(LedgerEntry),
    /// The withdrawal's history entry.
    Withdrawn(LedgerEntry),
}

/// What a bid did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BidReceipt {
    /// The bid recorded by this change: the bidder's own; or, when a
    /// leader's higher maximum answered it (`leading` false), the leader's
    /// automatic bid; or none, when the leader only raised their maximum.
    pub bid: Option<Bid>,
    /// The auction after the bid.
    pub auction: Auction,
    /// Whether the bidder leads now. `Engine::place_bid` turns `false`
    /// into [`Rejection::OutbidByProxy`](crate::Rejection::OutbidByProxy).
    pub leading: bool,
}

/// A client-chosen key that makes a command safe to retry: the engine
/// executes a command at most once per `(user, key)`.
///
/// 1 to 255 visible ASCII characters (a UUID is a good choice).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdempotencyKey(String);

/// A malformed idempotency key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an idempotency key is 1 to 255 visible ASCII characters")]
pub struct InvalidIdempotencyKey;

impl IdempotencyKey {
    /// Longest key, in bytes.
    pub const MAX_LEN: usize = 255;

    /// Validates a key.
    pub fn new(key: impl Into<String>) -> Result<IdempotencyKey, InvalidIdempotencyKey> {
        let key = key.into();
        let visible = key.bytes().all(|b| b.is_ascii_graphic());
        if key.is_empty() || key.len() > Self::MAX_LEN || !visible {
            return Err(InvalidIdempotencyKey);
        }
        Ok(IdempotencyKey(key))
    }

    /// The key's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = InvalidIdempotencyKey;

    fn try_from(key: String) -> Result<Self, Self::Error> {
        IdempotencyKey::new(key)
    }
}

impl From<IdempotencyKey> for String {
    fn from(key: IdempotencyKey) -> String {
        key.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the store keeps under an idempotency key: the command as first
/// executed and its receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// The command as first executed.
    pub command: Command,
    /// Its receipt.
    pub receipt: Receipt,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_short_visible_ascii() {
        assert!(IdempotencyKey::new("0b7c-4f1e").is_ok());
        assert!(IdempotencyKey::new("x".repeat(255)).is_ok());
        for bad in [
            String::new(),
            "x".repeat(256),
            "a b".into(),
            "ключ".into(),
            "a\n".into(),
        ] {
            assert_eq!(IdempotencyKey::new(bad), Err(InvalidIdempotencyKey));
        }
    }

    #[test]
    fn keys_travel_as_their_text_and_are_checked_on_the_way_in() {
        let key = IdempotencyKey::new("0b7c-4f1e").expect("key");
        assert_eq!(key.to_string(), "0b7c-4f1e");
        assert_eq!(serde_json::to_string(&key).unwrap(), r#""0b7c-4f1e""#);
        assert_eq!(
            serde_json::from_str::<IdempotencyKey>(r#""0b7c-4f1e""#).unwrap(),
            key
        );
        assert!(serde_json::from_str::<IdempotencyKey>(r#""a b""#).is_err());
        assert_eq!(String::from(key), "0b7c-4f1e");
    }
}
