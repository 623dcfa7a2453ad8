//! Errors: rejections (the command is not allowed; nothing changed) are kept
//! apart from infrastructure failures (the store failed; keep the source).

use std::error::Error as StdError;
use std::fmt;

use crate::auction::Region;
use crate::command::IdempotencyKey;
use crate::ids::AuctionId;
use crate::money::{Money, MoneyError};
use crate::Timestamp;

/// Why a command was refused. Nothing was changed.
///
/// Each variant has a stable machine name, [`Rejection::code`], and carries
/// what a client needs to act on it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// No such auction.
    #[error("auction {auction_id} not found")]
    AuctionNotFound {
        /// The id asked for.
        auction_id: AuctionId,
    },
    /// Bidding has not opened yet.
    #[error("auction opens at {starts_at}")]
    AuctionNotStarted {
        /// When it opens.
        starts_at: Timestamp,
    },
    /// Bidding is over (the closer may not have settled it yet).
    #[error("auction ended at {ended_at}")]
    AuctionEnded {
        /// When it ended.
        ended_at: Timestamp,
    },
    /// The seller withdrew the auction.
    #[error("auction was cancelled")]
    AuctionCancelled,
    /// The bid is below the minimum.
    #[error("bid too low: at least {min_next_bid} is required")]
    BidTooLow {
        /// The smallest bid accepted now.
        min_next_bid: Money,
    },
    /// Sellers cannot bid on or buy their own auction.
    #[error("the seller cannot bid on their own auction")]
    SellerCannotBid,
    /// A local auction whose region does not admit this user.
    #[error("this auction is only for users of {region}")]
    RegionNotEligible {
        /// The auction's region.
        region: Region,
    },
    /// Not enough available balance.
    #[error("insufficient funds: {required} required, {available} available")]
    InsufficientFunds {
        /// Available balance.
        available: Money,
        /// What the command needs.
        required: Money,
    },
    /// The wallet's balance would exceed the largest amount representable.
    #[error("wallet balance limit exceeded")]
    BalanceLimit,
    /// An amount is malformed or out of range for the currency.
    #[error("invalid {field}: {reason}")]
    InvalidAmount {
        /// Which amount.
        field: &'static str,
        /// What is wrong with it.
        reason: MoneyError,
    },
    /// The auction to create is malformed.
    #[error("invalid auction: {reason}")]
    InvalidAuction {
        /// What is wrong.
        reason: String,
    },
    /// A listing's filter is malformed.
    #[error("invalid filter: {reason}")]
    InvalidQuery {
        /// What is wrong.
        reason: String,
    },
    /// Only the seller may do this.
    #[error("only the seller may do this")]
    NotSeller,
    /// An auction with bids cannot be cancelled.
    #[error("an auction with bids cannot be cancelled")]
    HasBids,
    /// The auction has no buy-now price, or bidding has passed it.
    #[error("buy now is not available on this auction")]
    BuyNowUnavailable,
    /// A maximum below the bid's own amount.
    #[error("max_amount must be at least amount")]
    MaxBelowAmount,
    /// The leader sent a maximum that does not raise their own.
    #[error("your maximum is already {max}")]
    MaxNotRaised {
        /// The leader's maximum.
        max: Money,
    },
    /// The leader's earlier, higher (or equal) maximum answered the bid:
    /// the price rose, but the bidder does not lead.
    #[error("outbid at once by the leader's maximum: the price is now {price}")]
    OutbidByProxy {
        /// The price after the leader's automatic bid.
        price: Money,
        /// The lowest bid that may now lead.
        min_next_bid: Money,
    },
}

impl Rejection {
    /// A stable, machine-readable name (`"bid_too_low"`), for APIs.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::AuctionNotFound { .. } => "auction_not_found",
            Rejection::AuctionNotStarted { .. } => "auction_not_started",
            Rejection::AuctionEnded { .. } => "auction_ended",
            Rejection::AuctionCancelled => "auction_cancelled",
            Rejection::BidTooLow { .. } => "bid_too_low",
            Rejection::SellerCannotBid => "seller_cannot_bid",
            Rejection::RegionNotEligible { .. } => "region_not_eligible",
            Rejection::InsufficientFunds { .. } => "insufficient_funds",
            Rejection::BalanceLimit => "balance_limit",
            Rejection::InvalidAmount { .. } => "invalid_amount",
            Rejection::InvalidAuction { .. } => "invalid_auction",
            Rejection::InvalidQuery { .. } => "invalid_query",
            Rejection::NotSeller => "not_seller",
            Rejection::HasBids => "has_bids",
            Rejection::BuyNowUnavailable => "buy_now_unavailable",
            Rejection::MaxBelowAmount => "max_below_amount",
            Rejection::MaxNotRaised { .. } => "max_not_raised",
            Rejection::OutbidByProxy { .. } => "outbid_by_proxy",
        }
    }
}

/// How a store failed, which decides whether the engine retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// A concurrent transaction got in the way (serialization failure,
    /// deadlock, lock timeout, a lost optimistic race, a duplicate
    /// idempotency key). Retrying the whole transaction is safe.
    Conflict,
    /// The backend cannot be reached or is shutting down.
    Unavailable,
    /// Stored data could not be read back into domain types.
    Corrupt,
    /// Anything else.
    Other,
}

/// A failure of the storage backend. Adapters convert their own errors into
/// this type, keeping the original as the source.
#[derive(Debug)]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl StoreError {
    /// A new error of `kind`.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> StoreError {
        StoreError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// A retryable conflict with a concurrent transaction.
    pub fn conflict(message: impl Into<String>) -> StoreError {
        StoreError::new(StoreErrorKind::Conflict, message)
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> StoreError {
        self.source = Some(Box::new(source));
        self
    }

    /// How it failed.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// Whether the engine may retry the whole transaction.
    pub fn is_retryable(&self) -> bool {
        self.kind == StoreErrorKind::Conflict
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store error ({:?}): {}", self.kind, self.message)
    }
}

impl StdError for StoreError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn StdError + 'static))
    }
}

/// What can go wrong running a command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The command is not allowed; nothing changed.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The idempotency key was used before with different parameters.
    #[error("idempotency key {key} was already used for a different request")]
    IdempotencyConflict {
        /// The reused key.
        key: IdempotencyKey,
    },
    /// The store failed (after retries, for retryable failures); nothing
    /// changed unless the failure was in the commit itself.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored state broke an invariant (a bug or a damaged database).
    #[error("invariant broken: {0}")]
    Invariant(String),
}

impl EngineError {
    /// The rejection, if the command was refused.
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            EngineError::Rejected(rejection) => Some(rejection),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_keep_their_source_and_say_if_retryable() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let error = StoreError::new(StoreErrorKind::Unavailable, "connection lost").with_source(io);
        assert!(!error.is_retryable());
        assert_eq!(
            error.source().map(ToString::to_string).as_deref(),
            Some("reset by peer")
        );
        assert!(StoreError::conflict("deadlock").is_retryable());
        let engine: EngineError = error.into();
        assert!(engine.rejection().is_none());
    }

    #[test]
    fn rejections_have_stable_codes_and_say_what_to_do() {
        let low = Rejection::BidTooLow {
            min_next_bid: Money::units(130),
        };
        assert_eq!(low.code(), "bid_too_low");
        assert_eq!(low.to_string(), "bid too low: at least 130 is required");
        let engine = EngineError::from(low.clone());
        assert_eq!(engine.rejection(), Some(&low));
    }
}
