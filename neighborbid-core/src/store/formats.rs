//! Stored formats: how a store that serializes events keeps them (the SQL
//! stores' outbox), apart from how [`Event`] serializes for the API or
//! Redis. A wire format can change without touching rows already stored;
//! a stored format changes only by a new format number, and every number
//! ever written stays readable.

use serde::{Deserialize, Serialize};

use crate::error::{StoreError, StoreErrorKind};
use crate::event::{Event, PrivateEvent, PrivateNotice, PublicEvent};
use crate::ids::{AuctionId, UserId};
use crate::money::Money;
use crate::Timestamp;

/// An event as a store keeps it. Format 1 is the layout of the first
/// release's `Event` JSON; rows from before formats were numbered carry
/// no number and are format 1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    #[serde(default = "first_format")]
    format: u32,
    auction_id: i64,
    seq: u64,
    at: Timestamp,
    #[serde(default)]
    local: bool,
    public: Vec<StoredPublic>,
    private: Vec<StoredNotice>,
}

/// The format [`StoredEvent::from`] writes.
pub const EVENT_FORMAT: u32 = 1;

fn first_format() -> u32 {
    1
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StoredPublic {
    BidPlaced {
        bidder: i64,
        amount: Money,
        bid_count: u32,
        min_next_bid: Money,
        auto: bool,
    },
    ReserveMet {
        price: Money,
    },
    Extended {
        ends_at: Timestamp,
    },
    BuyNowWithdrawn,
    ReserveNotMet,
    Sold {
        winner: i64,
        price: Money,
    },
    Unsold,
    BoughtNow {
        buyer: i64,
        price: Money,
    },
    Cancelled,
    EndedEarly {
        ends_at: Timestamp,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct StoredNotice {
    user: i64,
    event: StoredPrivate,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StoredPrivate {
    Outbid { price: Money },
    Won { price: Money },
}

impl From<&Event> for StoredEvent {
    fn from(event: &Event) -> StoredEvent {
        StoredEvent {
            format: EVENT_FORMAT,
            auction_id: event.auction_id.0,
            seq: event.seq,
            at: event.at,
            local: event.local,
            public: event.public.iter().map(StoredPublic::from).collect(),
            private: event.private.iter().map(StoredNotice::from).collect(),
        }
    }
}

impl StoredEvent {
    /// The event, or a [`StoreErrorKind::Corrupt`] error for a format this
    /// version does not know (written by a newer one).
    pub fn into_event(self) -> Result<Event, StoreError> {
        if self.format != EVENT_FORMAT {
            return Err(StoreError::new(
                StoreErrorKind::Corrupt,
                format!("event format {} is not known to this version", self.format),
            ));
        }
        Ok(Event {
            auction_id: AuctionId(self.auction_id),
            seq: self.seq,
            at: self.at,
            local: self.local,
            public: self.public.into_iter().map(PublicEvent::from).collect(),
            private: self.private.into_iter().map(PrivateNotice::from).collect(),
        })
    }
}

impl From<&PublicEvent> for StoredPublic {
    fn from(event: &PublicEvent) -> StoredPublic {
        match *event {
            PublicEvent::BidPlaced {
                bidder,
                amount,
                bid_count,
                min_next_bid,
                auto,
            } => StoredPublic::BidPlaced {
                bidder: bidder.0,
                amount,
                bid_count,
                min_next_bid,
                auto,
            },
            PublicEvent::ReserveMet { price } => StoredPublic::ReserveMet { price },
            PublicEvent::Extended { ends_at } => StoredPublic::Extended { ends_at },
            PublicEvent::BuyNowWithdrawn => StoredPublic::BuyNowWithdrawn,
            PublicEvent::ReserveNotMet => StoredPublic::ReserveNotMet,
            PublicEvent::Sold { winner, price } => StoredPublic::Sold {
                winner: winner.0,
                price,
            },
            PublicEvent::Unsold => StoredPublic::Unsold,
            PublicEvent::BoughtNow { buyer, price } => StoredPublic::BoughtNow {
                buyer: buyer.0,
                price,
            },
            PublicEvent::Cancelled => StoredPublic::Cancelled,
            PublicEvent::EndedEarly { ends_at } => StoredPublic::EndedEarly { ends_at },
        }
    }
}

impl From<StoredPublic> for PublicEvent {
    fn from(event: StoredPublic) -> PublicEvent {
        match event {
            StoredPublic::BidPlaced {
                bidder,
                amount,
                bid_count,
                min_next_bid,
                auto,
            } => PublicEvent::BidPlaced {
                bidder: UserId(bidder),
                amount,
                bid_count,
                min_next_bid,
                auto,
            },
            StoredPublic::ReserveMet { price } => PublicEvent::ReserveMet { price },
            StoredPublic::Extended { ends_at } => PublicEvent::Extended { ends_at },
            StoredPublic::BuyNowWithdrawn => PublicEvent::BuyNowWithdrawn,
            StoredPublic::ReserveNotMet => PublicEvent::ReserveNotMet,
            StoredPublic::Sold { winner, price } => PublicEvent::Sold {
                winner: UserId(winner),
                price,
            },
            StoredPublic::Unsold => PublicEvent::Unsold,
            StoredPublic::BoughtNow { buyer, price } => PublicEvent::BoughtNow {
                buyer: UserId(buyer),
                price,
            },
            StoredPublic::Cancelled => PublicEvent::Cancelled,
            StoredPublic::EndedEarly { ends_at } => PublicEvent::EndedEarly { ends_at },
        }
    }
}

impl From<&PrivateNotice> for StoredNotice {
    fn from(notice: &PrivateNotice) -> StoredNotice {
        let event = match notice.event {
            PrivateEvent::Outbid { price } => StoredPrivate::Outbid { price },
            PrivateEvent::Won { price } => StoredPrivate::Won { price },
        };
        StoredNotice {
            user: notice.user.0,
            event,
        }
    }
}

impl From<StoredNotice> for PrivateNotice {
    fn from(notice: StoredNotice) -> PrivateNotice {
        let event = match notice.event {
            StoredPrivate::Outbid { price } => PrivateEvent::Outbid { price },
            StoredPrivate::Won { price } => PrivateEvent::Won { price },
        };
        PrivateNotice {
            user: UserId(notice.user),
            event,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind of event, as rows of the first release stored them
    /// (without a format number) and read back.
    #[test]
    fn events_stored_before_formats_were_numbered_read_as_format_1() {
        let row = r#"{"auction_id":1,"seq":3,"at":"2030-01-01T00:00:00Z","local":false,
            "public":[{"type":"bid_placed","bidder":3,"amount":"310","bid_count":3,"min_next_bid":"315","auto":false},
                      {"type":"reserve_met","price":"150"},{"type":"extended","ends_at":"2030-01-01T01:00:00Z"},
                      {"type":"buy_now_withdrawn"},{"type":"reserve_not_met"},{"type":"sold","winner":3,"price":"310"},
                      {"type":"unsold"},{"type":"bought_now","buyer":4,"price":"400"},{"type":"cancelled"},
                      {"type":"ended_early","ends_at":"2030-01-01T00:30:00Z"}],
            "private":[{"user":2,"event":{"type":"outbid","price":"310"}},{"user":3,"event":{"type":"won","price":"310"}}]}"#;
        let stored: StoredEvent = serde_json::from_str(row).expect("a format 1 row");
        let event = stored.clone().into_event().expect("format 1");
        assert_eq!(event.public.len(), 10);
        assert_eq!(event.private.len(), 2);
        assert_eq!(StoredEvent::from(&event), stored, "written back alike");
        let written = serde_json::to_value(StoredEvent::from(&event)).expect("json");
        assert_eq!(written["format"], 1);
    }

    #[test]
    fn a_format_this_version_does_not_know_is_corrupt_not_misread() {
        let row = r#"{"format":2,"auction_id":1,"seq":1,"at":"2030-01-01T00:00:00Z","public":[],"private":[]}"#;
        let stored: StoredEvent = serde_json::from_str(row).expect("the envelope");
        let error = stored.into_event().expect_err("format 2");
        assert_eq!(error.kind(), StoreErrorKind::Corrupt);
    }

    /// The wire's layout may change; the stored one does not follow it.
    #[test]
    fn the_stored_layout_is_its_own() {
        let event = Event {
            auction_id: AuctionId(9),
            seq: 1,
            at: Timestamp::UNIX_EPOCH,
            local: true,
            public: vec![PublicEvent::Cancelled],
            private: vec![],
        };
        let stored = serde_json::to_value(StoredEvent::from(&event)).expect("json");
        assert_eq!(
            stored,
            serde_json::json!({"format": 1, "auction_id": 9, "seq": 1, "at": "1970-01-01T00:00:00Z",
                               "local": true, "public": [{"type": "cancelled"}], "private": []})
        );
    }
}
