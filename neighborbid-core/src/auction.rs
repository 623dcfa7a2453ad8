//! Auctions and bids.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::{AuctionId, BidId, UserId};
use crate::money::Money;
use crate::policy::{AuctionPolicy, BuyNowPolicy};
use crate::Timestamp;

/// A neighbourhood, as the host application names it (`"seoul/mapo/mangwon"`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Region(pub String);

impl Region {
    /// A region from its name.
    pub fn new(name: impl Into<String>) -> Region {
        Region(name.into())
    }

    /// The region's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `other` is this region or lies inside it: names are paths
    /// from the widest area down, `/`-separated, so `"seoul/mapo"` contains
    /// `"seoul/mapo/mangwon"` but not `"seoul/mapogu"`.
    pub fn contains(&self, other: &Region) -> bool {
        other
            .0
            .strip_prefix(&self.0)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// The region made of the first `depth` parts of this one's path (all
    /// of it when it has fewer): `"seoul/mapo/mangwon"` at depth 2 is
    /// `"seoul/mapo"`.
    pub fn ancestor(&self, depth: usize) -> Region {
        let end = self
            .0
            .match_indices('/')
            .nth(depth.saturating_sub(1))
            .map_or(self.0.len(), |(at, _)| at);
        Region(if depth == 0 {
            String::new()
        } else {
            self.0[..end].to_owned()
        })
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Item details by name, in name order.
pub type Attributes = std::collections::BTreeMap<String, String>;

/// Who may bid, and how the auction is delivered to watchers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scope {
    /// A neighbourhood auction: only users the [`RegionPolicy`] admits may
    /// bid or buy.
    ///
    /// [`RegionPolicy`]: crate::rules::RegionPolicy
    Local {
        /// The auction's neighbourhood.
        region: Region,
    },
    /// A national live auction, open to everyone.
    National,
}

/// Where an auction is in its life. Only `Open` auctions change; the others
/// are final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuctionStatus {
    /// Created and not yet closed. Bids are accepted between `starts_at`
    /// and `ends_at`; after `ends_at` it waits for the closer.
    Open,
    /// Closed with a winner, who paid the final price.
    Sold,
    /// Closed without bids.
    Unsold,
    /// Ended early by a buy-now purchase.
    BoughtNow,
    /// Withdrawn by its seller before any bid.
    Cancelled,
}

impl AuctionStatus {
    /// All statuses.
    pub const ALL: [AuctionStatus; 5] = [
        AuctionStatus::Open,
        AuctionStatus::Sold,
        AuctionStatus::Unsold,
        AuctionStatus::BoughtNow,
        AuctionStatus::Cancelled,
    ];

    /// The stable lowercase name (`"bought_now"`), as stores write it.
    pub fn as_str(self) -> &'static str {
        match self {
            AuctionStatus::Open => "open",
            AuctionStatus::Sold => "sold",
            AuctionStatus::Unsold => "unsold",
            AuctionStatus::BoughtNow => "bought_now",
            AuctionStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for AuctionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown status name.
#[derive(Debug, thiserror::Error)]
#[error("unknown auction status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for AuctionStatus {
    type Err = UnknownStatus;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        AuctionStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == name)
            .ok_or_else(|| UnknownStatus(name.to_owned()))
    }
}

/// What a seller lists: fixed when the auction is created, shared by
/// [`CreateAuction`](crate::CreateAuction) and [`Auction`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// Who sells; receives the final price.
    pub seller: UserId,
    /// 1 to [`Listing::MAX_TITLE`] characters, none of them control
    /// characters (see [`rules::plain_text`](crate::rules::plain_text); the
    /// same holds for the category, attributes and a local region).
    pub title: String,
    /// Up to [`Listing::MAX_DESCRIPTION`] characters; of the control
    /// characters only line breaks and tabs.
    pub description: String,
    /// The host application's category name, if it uses categories: up to
    /// [`Listing::MAX_LABEL`] characters.
    #[serde(default)]
    pub category: Option<String>,
    /// Item details the host application defines (condition, who pays
    /// shipping, ...), kept and shown as given: at most
    /// [`Listing::MAX_ATTRIBUTES`], names and values of 1 to
    /// [`Listing::MAX_LABEL`] characters.
    #[serde(default)]
    pub attributes: Attributes,
    /// Local (one neighbourhood) or national.
    pub scope: Scope,
    /// The lowest acceptable first bid (positive).
    pub start_price: Money,
    /// Increment, reserve, close and buy-now rules
    /// ([`AuctionPolicy::fixed`] for a fixed bid unit, no reserve and a
    /// hard close). The reserve price is secret: show auctions to others
    /// through [`Auction::redacted_for`].
    pub policy: AuctionPolicy,
    /// Price at which anyone eligible may end the auction at once; at least
    /// the start price.
    pub buy_now_price: Option<Money>,
}

impl Listing {
    /// A national listing by `seller` starting at `start_price`, with no
    /// description, category, details or buy-now price. Set any other
    /// field on the result; building listings this way keeps code
    /// compiling when `Listing` gains a field.
    pub fn new(
        seller: UserId,
        title: impl Into<String>,
        start_price: Money,
        policy: AuctionPolicy,
    ) -> Listing {
        Listing {
            seller,
            title: title.into(),
            description: String::new(),
            category: None,
            attributes: Attributes::default(),
            scope: Scope::National,
            start_price,
            policy,
            buy_now_price: None,
        }
    }

    /// Longest title, in characters.
    pub const MAX_TITLE: usize = 200;
    /// Longest description, in characters.
    pub const MAX_DESCRIPTION: usize = 10_000;
    /// Longest category, attribute name or attribute value, in characters.
    pub const MAX_LABEL: usize = 100;
    /// Most attributes.
    pub const MAX_ATTRIBUTES: usize = 20;
}

/// Where bidding stands: what every change of an auction may rewrite (and
/// all a store writes for a bid).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bidding {
    /// Bids are accepted until just before this moment: the listed end,
    /// moved by a soft close's extensions or an early end.
    pub ends_at: Timestamp,
    /// Where the auction is in its life.
    pub status: AuctionStatus,
    /// The leading bid, or the start price while there is no bid.
    pub current_price: Money,
    /// The leading bidder, if any.
    pub leader: Option<UserId>,
    /// The leader's maximum (proxy) bid, held in escrow; the price rises
    /// up to it automatically. Secret to the leader.
    pub max_bid: Option<Money>,
    /// Whether the highest maximum has reached the reserve price (with no
    /// reserve: whether there is a bid). Stored rather than derived: a view
    /// redacted for others hides the reserve and the maximum it follows
    /// from, yet still shows whether the reserve is met.
    pub reserve_met: bool,
    /// How often late bids extended the end (soft close).
    pub extensions: u32,
    /// Bids accepted so far.
    pub bid_count: u32,
    /// Sequence number of the last change: 0 at creation, +1 per change.
    /// Every event of this auction carries the number of its change.
    pub seq: u64,
    /// When it was settled, bought or cancelled.
    pub closed_at: Option<Timestamp>,
}

/// An auction: its listing, fixed at creation, and where its bidding
/// stands. Its JSON is one flat object of all their fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auction {
    /// Its id ([`AuctionId::UNASSIGNED`] until the store inserts it).
    pub id: AuctionId,
    /// What the seller listed.
    #[serde(flatten)]
    pub listing: Listing,
    /// Bids are accepted from this moment on.
    pub starts_at: Timestamp,
    /// When it was created.
    pub created_at: Timestamp,
    /// Where bidding stands.
    #[serde(flatten)]
    pub bidding: Bidding,
}

impl Auction {
    /// The smallest bid the auction accepts now: the start price for the
    /// first bid, then the current price plus one increment.
    pub fn min_next_bid(&self) -> Money {
        match self.bidding.leader {
            None => self.listing.start_price,
            // Saturates at MAX: a bid above MAX cannot exist, so nothing can
            // win against a leader at MAX anyway.
            Some(_) => self
                .listing
                .policy
                .increment
                .above(self.bidding.current_price),
        }
    }

    /// Whether buy-now is offered: the auction is open, has a buy-now
    /// price that bidding has not reached, and its [`BuyNowPolicy`] still
    /// allows it.
    pub fn buy_now_available(&self) -> bool {
        let Some(price) = self.listing.buy_now_price else {
            return false;
        };
        let bidding = &self.bidding;
        let reached = bidding.leader.is_some() && bidding.current_price >= price;
        let allowed = match self.listing.policy.buy_now {
            BuyNowPolicy::Always => true,
            BuyNowPolicy::UntilFirstBid => bidding.leader.is_none(),
            BuyNowPolicy::UntilReserveMet => !bidding.reserve_met,
        };
        bidding.status == AuctionStatus::Open && !reached && allowed
    }

    /// The auction as `viewer` may see it: the reserve price only for the
    /// seller, the leader's maximum only for the leader.
    pub fn redacted_for(&self, viewer: Option<UserId>) -> Auction {
        let mut seen = self.clone();
        if viewer != Some(self.listing.seller) {
            seen.listing.policy.reserve_price = None;
        }
        if viewer.is_none() || viewer != self.bidding.leader {
            seen.bidding.max_bid = None;
        }
        seen
    }

    /// Whether the auction takes bids at `now`: open, started, not past its end.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.bidding.status == AuctionStatus::Open
            && self.starts_at <= now
            && now < self.bidding.ends_at
    }

    /// Whether the closer should settle it at `now`.
    pub fn is_due(&self, now: Timestamp) -> bool {
        self.bidding.status == AuctionStatus::Open && self.bidding.ends_at <= now
    }
}

/// An accepted bid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bid {
    /// Its id ([`BidId::UNASSIGNED`] until the store inserts it).
    pub id: BidId,
    /// The auction bid on.
    pub auction_id: AuctionId,
    /// Who bid.
    pub bidder: UserId,
    /// How much.
    pub amount: Money,
    /// Server time of acceptance.
    pub placed_at: Timestamp,
    /// The auction's sequence number of this bid's change.
    pub seq: u64,
    /// Placed by the engine for the leader, up to their maximum, in answer
    /// to a lower challenger.
    pub auto: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::tests::{led_by_alice, ALICE, BOB, SELLER};

    #[test]
    fn regions_are_paths_from_the_widest_area() {
        let home = Region::new("seoul/mapo/mangwon");
        let at = |depth| home.ancestor(depth).to_string();
        assert_eq!(
            [at(0), at(1), at(2), at(3), at(9)],
            [
                "",
                "seoul",
                "seoul/mapo",
                "seoul/mapo/mangwon",
                "seoul/mapo/mangwon"
            ]
        );
        let mapo = Region::new("seoul/mapo");
        assert!(mapo.contains(&home));
        assert!(mapo.contains(&mapo));
        assert!(!mapo.contains(&Region::new("seoul/mapogu")));
        assert!(!home.contains(&mapo));
    }

    #[test]
    fn statuses_are_stored_under_their_serde_names() {
        for status in AuctionStatus::ALL {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{status}\""));
            assert_eq!(status.as_str().parse::<AuctionStatus>().ok(), Some(status));
        }
        assert!("closed".parse::<AuctionStatus>().is_err());
    }

    #[test]
    fn only_the_seller_sees_the_reserve_and_only_the_leader_their_maximum() {
        let (mut led, _) = led_by_alice();
        led.listing.policy.reserve_price = Some(Money::units(120));
        led.bidding.max_bid = Some(Money::units(300));
        let seen = |viewer| {
            let seen = led.redacted_for(viewer);
            let mut restored = seen.clone();
            restored.listing.policy = led.listing.policy.clone();
            restored.bidding.max_bid = led.bidding.max_bid;
            assert_eq!(restored, led, "only the secrets change for {viewer:?}");
            (seen.listing.policy.reserve_price, seen.bidding.max_bid)
        };
        let (reserve, max) = (Some(Money::units(120)), Some(Money::units(300)));
        assert_eq!(seen(Some(SELLER)), (reserve, None));
        assert_eq!(seen(Some(ALICE)), (None, max));
        assert_eq!(seen(Some(BOB)), (None, None));
        assert_eq!(seen(None), (None, None));
    }
}
