//! The JSON bodies and WebSocket messages of the API. Amounts are decimal
//! strings (`"12.50"`), times RFC 3339 strings in UTC.

use neighborbid_core::{
    Attributes, Auction, AuctionId, AuctionPolicy, AuctionSort, AuctionStatus, Bid, BidReceipt,
    Event, Money, Phase, Region, Timestamp, UserId,
};
use serde::{Deserialize, Serialize};

use crate::error::ErrorBody;

/// `POST /auctions`: the seller is the signed-in user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAuctionRequest {
    /// 1 to 200 characters.
    pub title: String,
    /// Up to 10,000 characters.
    #[serde(default)]
    pub description: String,
    /// A category, if the site uses them.
    #[serde(default)]
    pub category: Option<String>,
    /// Item details by name (condition, who pays shipping, ...).
    #[serde(default)]
    pub attributes: Attributes,
    /// `{"kind": "national"}` or `{"kind": "local", "region": "..."}`; a
    /// local auction without a region is in the seller's.
    pub scope: ScopeRequest,
    /// The lowest first bid.
    pub start_price: Money,
    /// Increment, reserve, close and buy-now rules.
    pub policy: AuctionPolicy,
    /// An instant price, at least the start price.
    #[serde(default)]
    pub buy_now_price: Option<Money>,
    /// When bidding opens (default: now).
    #[serde(default)]
    pub starts_at: Option<Timestamp>,
    /// When bidding closes.
    pub ends_at: Timestamp,
}

/// The scope of a new auction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScopeRequest {
    /// Open to everyone.
    National,
    /// One neighbourhood's.
    Local {
        /// The neighbourhood (default: the seller's).
        #[serde(default)]
        region: Option<Region>,
    },
}

/// `POST /auctions/{id}/bids`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BidRequest {
    /// The bid, at least the auction's `min_next_bid`.
    pub amount: Money,
    /// A maximum: the engine bids for you up to it, only as far as needed.
    #[serde(default)]
    pub max_amount: Option<Money>,
}

/// `POST /me/wallet/deposits` and `/me/wallet/withdrawals`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmountRequest {
    /// How much (positive).
    pub amount: Money,
}

/// An auction as the caller may see it (the reserve only for its seller,
/// the maximum only for its leader), with what a bidding client needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuctionBody {
    /// The auction; `ends_at` is the current end (after extensions).
    #[serde(flatten)]
    pub auction: Auction,
    /// The smallest bid accepted now.
    pub min_next_bid: Money,
    /// Whether buy-now is offered now.
    pub buy_now_available: bool,
    /// Whether the auction has a hidden reserve (its amount stays hidden);
    /// `reserve_met` says whether bidding reached it.
    pub has_reserve: bool,
}

impl AuctionBody {
    /// `auction` as `viewer` may see it.
    pub fn new(auction: &Auction, viewer: Option<UserId>) -> AuctionBody {
        AuctionBody {
            auction: auction.redacted_for(viewer),
            min_next_bid: auction.min_next_bid(),
            buy_now_available: auction.buy_now_available(),
            has_reserve: auction.listing.policy.reserve_price.is_some(),
        }
    }
}

/// `GET /auctions/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuctionDetail {
    /// The auction.
    pub auction: AuctionBody,
    /// Its latest bids, newest first.
    pub bids: Vec<Bid>,
    /// Server time, for countdowns.
    pub server_now: Timestamp,
}

/// What a bid did (`POST /auctions/{id}/bids`, and a WebSocket bid).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BidBody {
    /// The bid recorded; none when a leader only raised their maximum.
    pub bid: Option<Bid>,
    /// The auction after it.
    pub auction: AuctionBody,
}

impl BidBody {
    /// The body for `receipt`, seen by its bidder.
    pub fn new(receipt: &BidReceipt, bidder: UserId) -> BidBody {
        BidBody {
            bid: receipt.bid.clone(),
            auction: AuctionBody::new(&receipt.auction, Some(bidder)),
        }
    }
}

/// One page of a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageBody<T> {
    /// The items, newest first.
    pub items: Vec<T>,
    /// Items skipped.
    pub offset: u32,
    /// The page size asked for.
    pub limit: u32,
    /// The offset of the next page, when there may be one.
    pub next_offset: Option<u32>,
    /// How many items the whole list holds, where the route counts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

impl<T> PageBody<T> {
    /// A page of `items` fetched at `page`.
    pub fn new(items: Vec<T>, page: neighborbid_core::Page) -> PageBody<T> {
        let full = items.len() >= page.limit as usize;
        PageBody {
            items,
            offset: page.offset,
            limit: page.limit,
            next_offset: full.then(|| page.offset.saturating_add(page.limit)),
            total: None,
        }
    }

    /// A page of a list of `total` items.
    pub fn counted(items: Vec<T>, page: neighborbid_core::Page, total: u64) -> PageBody<T> {
        let next = page.offset.saturating_add(page.limit);
        PageBody {
            next_offset: (u64::from(next) < total).then_some(next),
            total: Some(total),
            ..PageBody::new(items, page)
        }
    }
}

/// `?offset=&limit=` of a list (limit 1 to 500, default 50).
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    #[serde(default)]
    pub(crate) offset: Option<u32>,
    #[serde(default)]
    pub(crate) limit: Option<u32>,
}

impl PageQuery {
    pub(crate) fn page(self) -> neighborbid_core::Page {
        let default = neighborbid_core::Page::default();
        neighborbid_core::Page::new(
            self.offset.unwrap_or(0),
            self.limit.unwrap_or(default.limit),
        )
    }
}

/// `GET /auctions?scope=&region=&status=&seller=&q=&category=&min_price=&max_price=&phase=&sort=&offset=&limit=`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    #[serde(default)]
    pub(crate) scope: Option<ScopeParam>,
    #[serde(default)]
    pub(crate) region: Option<Region>,
    #[serde(default)]
    pub(crate) status: Option<AuctionStatus>,
    #[serde(default)]
    pub(crate) seller: Option<UserId>,
    /// Text in the title or description.
    #[serde(default)]
    pub(crate) q: Option<String>,
    #[serde(default)]
    pub(crate) category: Option<String>,
    /// Amounts as text: parsed by the route for a clear error.
    #[serde(default)]
    pub(crate) min_price: Option<String>,
    #[serde(default)]
    pub(crate) max_price: Option<String>,
    #[serde(default)]
    pub(crate) phase: Option<Phase>,
    #[serde(default)]
    pub(crate) sort: Option<AuctionSort>,
    #[serde(default)]
    pub(crate) offset: Option<u32>,
    #[serde(default)]
    pub(crate) limit: Option<u32>,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ScopeParam {
    National,
    Local,
}

/// What the server sends on a WebSocket. Every message carries the
/// auction's sequence number as this connection knows it and the server's
/// time. A bidder's socket follows no auction: it sends only `bid_result`,
/// `error` (with `seq` 0) and `pong` (`seq` 0).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The whole state: on connect, and instead of a backlog after falling
    /// behind.
    Snapshot {
        /// The auction's sequence number.
        seq: u64,
        /// Server time.
        server_now: Timestamp,
        /// The current end (also in `auction`), for the countdown.
        ends_at: Timestamp,
        /// The auction.
        auction: AuctionBody,
        /// Its latest bids, newest first.
        bids: Vec<Bid>,
    },
    /// A committed change; `seq` follows the previous message's by one.
    Event {
        /// Server time.
        server_now: Timestamp,
        /// The change, with your private notices only.
        #[serde(flatten)]
        event: Event,
    },
    /// Your bid's result.
    BidResult {
        /// The auction's sequence number after the bid.
        seq: u64,
        /// Server time.
        server_now: Timestamp,
        /// The `request_id` you sent.
        request_id: String,
        /// What the bid did.
        #[serde(flatten)]
        result: BidBody,
    },
    /// Your message failed; same codes as HTTP.
    Error {
        /// The last sequence number sent on this connection.
        seq: u64,
        /// Server time.
        server_now: Timestamp,
        /// The `request_id` of the failed message, when it had one.
        request_id: Option<String>,
        /// Code, message and details.
        #[serde(flatten)]
        error: ErrorBody,
    },
    /// The answer to a `ping` message.
    Pong {
        /// The last sequence number sent on this connection.
        seq: u64,
        /// Server time.
        server_now: Timestamp,
    },
}

/// What a client may send on a WebSocket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Bid (signed-in users): on a room's auction, or on a bidder's socket
    /// on the auction it names.
    Bid {
        /// The auction: required on a bidder's socket; in a room, absent
        /// or the room's own.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        auction_id: Option<AuctionId>,
        /// The bid.
        amount: Money,
        /// A maximum (proxy) bid.
        #[serde(default)]
        max_amount: Option<Money>,
        /// Your id for this bid: the result carries it, and it is the
        /// bid's idempotency key, so resending it never bids twice.
        request_id: String,
    },
    /// Asks for a `pong` (an application-level heartbeat for clients
    /// that cannot send WebSocket pings).
    Ping,
}

#[cfg(test)]
mod tests {
    use super::*;
    use neighborbid_core::Page;

    #[test]
    fn a_counted_page_knows_whether_another_follows() {
        let page = Page {
            offset: 2,
            limit: 2,
        };
        let counted = |total| PageBody::counted(vec![1, 2], page, total);
        assert_eq!((counted(4).next_offset, counted(4).total), (None, Some(4)));
        assert_eq!(
            (counted(5).next_offset, counted(5).total),
            (Some(4), Some(5))
        );
        // Uncounted, a full page may have a next one.
        assert_eq!(PageBody::new(vec![1, 2], page).next_offset, Some(4));
    }
}
