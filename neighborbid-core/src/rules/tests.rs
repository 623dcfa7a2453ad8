//! Each rule and each rejection, on plain values.

use chrono::{TimeDelta, TimeZone, Utc};

use super::*;
use crate::event::PrivateEvent;
use crate::policy::AuctionPolicy;

pub(crate) const SELLER: UserId = UserId(1);
pub(crate) const ALICE: UserId = UserId(2);
pub(crate) const BOB: UserId = UserId(3);

fn m(units: u64) -> Money {
    Money::units(units)
}

fn t0() -> Timestamp {
    Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0)
        .single()
        .expect("date")
}

fn rules_with(currency: &Currency) -> Rules<'_> {
    Rules {
        currency,
        region_policy: &SameRegion,
    }
}

/// [`listing`] with a buy-now price of 500, as created at [`t0`]: open
/// from then for an hour, no bid.
fn auction() -> Auction {
    let currency = Currency::default();
    let cmd = listing().with_listing(|listing| listing.buy_now_price = Some(m(500)));
    let mut auction = create_auction(rules_with(&currency), &cmd, t0()).expect("valid");
    auction.id = AuctionId(7);
    auction
}

fn wallet(user: UserId, balance: u64, locked: u64) -> Wallet {
    Wallet {
        user,
        balance: m(balance),
        locked: m(locked),
    }
}

/// The auction after ALICE's accepted bid of 150, with her hold.
pub(crate) fn led_by_alice() -> (Auction, Vec<Hold>) {
    let auction = {
        let mut auction = auction();
        auction.bidding.current_price = m(150);
        auction.bidding.leader = Some(ALICE);
        auction.bidding.max_bid = Some(m(150));
        auction.bidding.reserve_met = true;
        auction.bidding.bid_count = 1;
        auction.bidding.seq = 1;
        auction
    };
    let holds = vec![Hold {
        auction_id: auction.id,
        user: ALICE,
        amount: m(150),
    }];
    (auction, holds)
}

fn bid(bidder: UserId, amount: u64) -> PlaceBid {
    PlaceBid {
        auction_id: AuctionId(7),
        bidder,
        bidder_region: None,
        amount: m(amount),
        max_amount: None,
    }
}

fn rejected<T: std::fmt::Debug>(result: Result<T, RuleError>) -> Rejection {
    match result {
        Err(RuleError::Rejected(rejection)) => rejection,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn place(
    auction: &Auction,
    holds: &[Hold],
    wallets: &[Wallet],
    cmd: &PlaceBid,
    now: Timestamp,
) -> Result<Decision, RuleError> {
    let currency = Currency::default();
    let state = AuctionState {
        auction,
        holds,
        wallets,
    };
    place_bid(rules_with(&currency), state, cmd, now)
}

#[test]
fn first_bid_needs_the_start_price() {
    let a = auction();
    let wallets = [wallet(ALICE, 1_000, 0)];
    let low = place(&a, &[], &wallets, &bid(ALICE, 99), t0());
    assert_eq!(
        rejected(low),
        Rejection::BidTooLow {
            min_next_bid: m(100)
        }
    );
    let d = place(&a, &[], &wallets, &bid(ALICE, 100), t0()).expect("accepted");
    assert_eq!(
        (
            d.auction.bidding.current_price,
            d.auction.bidding.leader,
            d.auction.bidding.seq
        ),
        (m(100), Some(ALICE), 1)
    );
    assert_eq!(d.wallets, [wallet(ALICE, 900, 100)]);
    assert_eq!(
        d.holds,
        [Hold {
            auction_id: a.id,
            user: ALICE,
            amount: m(100)
        }]
    );
    assert_eq!(d.entries.len(), 1);
    assert_eq!(
        (d.entries[0].kind, d.entries[0].balance_after),
        (EntryKind::BidHold, m(900))
    );
    let bid = d.bid.expect("bid");
    assert_eq!((bid.amount, bid.seq, bid.placed_at), (m(100), 1, t0()));
    assert_eq!((d.event.seq, d.event.at), (1, t0()));
}

#[test]
fn later_bids_need_current_price_plus_unit_and_release_the_leader() {
    let (a, holds) = led_by_alice();
    let wallets = [wallet(ALICE, 850, 150), wallet(BOB, 1_000, 0)];
    let low = place(&a, &holds, &wallets, &bid(BOB, 159), t0());
    assert_eq!(
        rejected(low),
        Rejection::BidTooLow {
            min_next_bid: m(160)
        }
    );
    let d = place(&a, &holds, &wallets, &bid(BOB, 160), t0()).expect("accepted");
    assert_eq!(d.wallets, [wallet(ALICE, 1_000, 0), wallet(BOB, 840, 160)]);
    assert_eq!(
        d.holds,
        [
            Hold {
                auction_id: a.id,
                user: ALICE,
                amount: Money::ZERO
            },
            Hold {
                auction_id: a.id,
                user: BOB,
                amount: m(160)
            },
        ]
    );
    let kinds: Vec<_> = d.entries.iter().map(|e| (e.user, e.kind)).collect();
    assert_eq!(
        kinds,
        [(ALICE, EntryKind::HoldRelease), (BOB, EntryKind::BidHold)]
    );
    assert_eq!(
        d.event.private,
        [PrivateNotice {
            user: ALICE,
            event: PrivateEvent::Outbid { price: m(160) }
        }]
    );
    assert_eq!(d.auction.min_next_bid(), m(170));
}

#[test]
fn a_leader_bidding_again_replaces_their_hold() {
    let (a, holds) = led_by_alice();
    let wallets = [wallet(ALICE, 50, 150)];
    let d = place(&a, &holds, &wallets, &bid(ALICE, 200), t0()).expect("raise");
    assert_eq!(d.wallets, [wallet(ALICE, 0, 200)]);
    assert_eq!(
        d.holds,
        [Hold {
            auction_id: a.id,
            user: ALICE,
            amount: m(200)
        }]
    );
    assert!(d.event.private.is_empty());
    let short = place(&a, &holds, &wallets, &bid(ALICE, 210), t0());
    assert_eq!(
        rejected(short),
        Rejection::InsufficientFunds {
            available: m(200),
            required: m(210)
        }
    );
}

#[test]
fn bids_outside_the_window_or_on_closed_auctions_are_refused() {
    let a = auction();
    let wallets = [wallet(ALICE, 1_000, 0)];
    let early = place(
        &a,
        &[],
        &wallets,
        &bid(ALICE, 100),
        t0() - TimeDelta::seconds(1),
    );
    assert_eq!(
        rejected(early),
        Rejection::AuctionNotStarted { starts_at: t0() }
    );
    let late = place(&a, &[], &wallets, &bid(ALICE, 100), a.bidding.ends_at);
    assert_eq!(
        rejected(late),
        Rejection::AuctionEnded {
            ended_at: a.bidding.ends_at
        }
    );
    let cancelled = {
        let mut auction = auction();
        auction.bidding.status = AuctionStatus::Cancelled;
        auction
    };
    let result = place(&cancelled, &[], &wallets, &bid(ALICE, 100), t0());
    assert_eq!(rejected(result), Rejection::AuctionCancelled);
    let closed_at = t0() + TimeDelta::minutes(5);
    for status in [
        AuctionStatus::Sold,
        AuctionStatus::Unsold,
        AuctionStatus::BoughtNow,
    ] {
        let closed = {
            let mut auction = auction();
            auction.bidding.status = status;
            auction.bidding.closed_at = Some(closed_at);
            auction
        };
        let result = place(&closed, &[], &wallets, &bid(ALICE, 100), t0());
        assert_eq!(
            rejected(result),
            Rejection::AuctionEnded {
                ended_at: closed_at
            }
        );
    }
}

#[test]
fn sellers_and_foreign_regions_cannot_bid() {
    let wallets = [wallet(SELLER, 1_000, 0), wallet(ALICE, 1_000, 0)];
    let a = auction();
    let own = place(&a, &[], &wallets, &bid(SELLER, 100), t0());
    assert_eq!(rejected(own), Rejection::SellerCannotBid);
    let region = Region::new("mangwon");
    let local = {
        let mut auction = auction();
        auction.listing.scope = Scope::Local {
            region: region.clone(),
        };
        auction
    };
    for from in [None, Some(Region::new("hapjeong"))] {
        let cmd = PlaceBid {
            bidder_region: from,
            ..bid(ALICE, 100)
        };
        let result = place(&local, &[], &wallets, &cmd, t0());
        assert_eq!(
            rejected(result),
            Rejection::RegionNotEligible {
                region: region.clone()
            }
        );
    }
    let neighbour = PlaceBid {
        bidder_region: Some(region),
        ..bid(ALICE, 100)
    };
    assert!(place(&local, &[], &wallets, &neighbour, t0()).is_ok());
}

#[derive(Debug)]
struct Anyone;

impl RegionPolicy for Anyone {
    fn admits(&self, _: &Region, _: Option<&Region>) -> bool {
        true
    }
}

#[test]
fn the_region_policy_is_replaceable() {
    let local = {
        let mut auction = auction();
        auction.listing.scope = Scope::Local {
            region: Region::new("mangwon"),
        };
        auction
    };
    let currency = Currency::default();
    let rules = Rules {
        currency: &currency,
        region_policy: &Anyone,
    };
    let wallets = [wallet(ALICE, 1_000, 0)];
    let state = AuctionState {
        auction: &local,
        holds: &[],
        wallets: &wallets,
    };
    assert!(place_bid(rules, state, &bid(ALICE, 100), t0()).is_ok());
}

#[test]
fn bad_bid_amounts_are_refused_before_anything_else() {
    let a = {
        let mut auction = auction();
        auction.bidding.status = AuctionStatus::Cancelled;
        auction
    };
    let wallets = [wallet(ALICE, 1_000, 0)];
    let zero = PlaceBid {
        amount: Money::ZERO,
        ..bid(ALICE, 0)
    };
    let result = place(&a, &[], &wallets, &zero, t0());
    assert_eq!(
        rejected(result),
        Rejection::InvalidAmount {
            field: "amount",
            reason: crate::MoneyError::Zero
        }
    );
    let precise = PlaceBid {
        amount: "100.001".parse().expect("money"),
        ..bid(ALICE, 0)
    };
    let result = place(&a, &[], &wallets, &precise, t0());
    assert_eq!(rejected(result).code(), "invalid_amount");
}

#[test]
fn insufficient_balance_is_refused() {
    let a = auction();
    let result = place(&a, &[], &[wallet(ALICE, 99, 0)], &bid(ALICE, 100), t0());
    assert_eq!(
        rejected(result),
        Rejection::InsufficientFunds {
            available: m(99),
            required: m(100)
        }
    );
}

fn buy(
    a: &Auction,
    holds: &[Hold],
    wallets: &[Wallet],
    buyer: UserId,
) -> Result<Decision, RuleError> {
    let currency = Currency::default();
    let state = AuctionState {
        auction: a,
        holds,
        wallets,
    };
    let cmd = BuyNow {
        auction_id: a.id,
        buyer,
        buyer_region: None,
    };
    buy_now(rules_with(&currency), state, &cmd, t0())
}

#[test]
fn buy_now_releases_the_leader_and_pays_the_seller() {
    let (a, holds) = led_by_alice();
    let wallets = [
        wallet(SELLER, 0, 0),
        wallet(ALICE, 850, 150),
        wallet(BOB, 600, 0),
    ];
    let d = buy(&a, &holds, &wallets, BOB).expect("bought");
    assert_eq!(
        d.wallets,
        [
            wallet(SELLER, 500, 0),
            wallet(ALICE, 1_000, 0),
            wallet(BOB, 100, 0)
        ]
    );
    assert_eq!(
        (
            d.auction.bidding.status,
            d.auction.bidding.leader,
            d.auction.bidding.closed_at
        ),
        (AuctionStatus::BoughtNow, Some(BOB), Some(t0()))
    );
    let kinds: Vec<_> = d.entries.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EntryKind::HoldRelease,
            EntryKind::BuyNowDebit,
            EntryKind::BuyNowCredit
        ]
    );
    assert_eq!(
        d.event.public,
        [PublicEvent::BoughtNow {
            buyer: BOB,
            price: m(500)
        }]
    );
    // The leader may buy too: their own hold comes back first.
    let wallets = [wallet(SELLER, 0, 0), wallet(ALICE, 350, 150)];
    let d = buy(&a, &holds, &wallets, ALICE).expect("leader buys");
    assert_eq!(d.wallets, [wallet(SELLER, 500, 0), wallet(ALICE, 0, 0)]);
    assert_eq!(
        d.event.notices_for(ALICE).collect::<Vec<_>>(),
        [&PrivateEvent::Won { price: m(500) }]
    );
}

#[test]
fn buy_now_refusals() {
    let wallets = [wallet(SELLER, 0, 0), wallet(BOB, 100, 0)];
    let none = {
        let mut auction = auction();
        auction.listing.buy_now_price = None;
        auction
    };
    assert_eq!(
        rejected(buy(&none, &[], &wallets, BOB)),
        Rejection::BuyNowUnavailable
    );
    let passed = {
        let mut auction = auction();
        auction.bidding.current_price = m(500);
        auction.bidding.leader = Some(ALICE);
        auction
    };
    assert_eq!(
        rejected(buy(&passed, &[], &wallets, BOB)),
        Rejection::BuyNowUnavailable
    );
    assert_eq!(
        rejected(buy(&auction(), &[], &wallets, BOB)),
        Rejection::InsufficientFunds {
            available: m(100),
            required: m(500)
        }
    );
    assert_eq!(
        rejected(buy(&auction(), &[], &wallets, SELLER)),
        Rejection::SellerCannotBid
    );
}

#[test]
fn settlement_pays_the_seller_from_the_winners_hold() {
    let (a, holds) = led_by_alice();
    let wallets = [wallet(SELLER, 0, 0), wallet(ALICE, 850, 150)];
    let state = AuctionState {
        auction: &a,
        holds: &holds,
        wallets: &wallets,
    };
    assert_eq!(
        settle(state, a.bidding.ends_at - TimeDelta::microseconds(1)),
        Ok(None),
        "not due yet"
    );
    let d = settle(state, a.bidding.ends_at)
        .expect("settles")
        .expect("due");
    assert_eq!(d.wallets, [wallet(SELLER, 150, 0), wallet(ALICE, 850, 0)]);
    assert_eq!(
        d.holds,
        [Hold {
            auction_id: a.id,
            user: ALICE,
            amount: Money::ZERO
        }]
    );
    assert_eq!(
        (d.auction.bidding.status, d.auction.bidding.seq),
        (AuctionStatus::Sold, 2)
    );
    assert_eq!(
        d.event.public,
        [PublicEvent::Sold {
            winner: ALICE,
            price: m(150)
        }]
    );

    let sold = d.auction;
    let state = AuctionState {
        auction: &sold,
        holds: &[],
        wallets: &wallets,
    };
    assert_eq!(
        settle(state, sold.bidding.ends_at),
        Ok(None),
        "settled once"
    );
}

#[test]
fn settlement_without_bids_is_unsold_and_a_broken_hold_is_an_invariant_error() {
    let a = auction();
    let state = AuctionState {
        auction: &a,
        holds: &[],
        wallets: &[],
    };
    let d = settle(state, a.bidding.ends_at).expect("ok").expect("due");
    assert_eq!(d.auction.bidding.status, AuctionStatus::Unsold);
    assert!(d.entries.is_empty());

    let (a, _) = led_by_alice();
    let wallets = [wallet(SELLER, 0, 0), wallet(ALICE, 1_000, 0)];
    let state = AuctionState {
        auction: &a,
        holds: &[],
        wallets: &wallets,
    };
    assert!(matches!(
        settle(state, a.bidding.ends_at),
        Err(RuleError::Inconsistent(_))
    ));
}

#[test]
fn cancel_rules() {
    let a = auction();
    let by = |seller| CancelAuction {
        auction_id: a.id,
        seller,
    };
    let state = AuctionState {
        auction: &a,
        holds: &[],
        wallets: &[],
    };
    assert_eq!(
        rejected(cancel(state, &by(ALICE), t0())),
        Rejection::NotSeller
    );
    let d = cancel(state, &by(SELLER), t0()).expect("cancelled");
    assert_eq!(
        (d.auction.bidding.status, d.event.public.clone()),
        (AuctionStatus::Cancelled, vec![PublicEvent::Cancelled])
    );
    assert_eq!(
        rejected(cancel(state, &by(SELLER), a.bidding.ends_at)),
        Rejection::AuctionEnded {
            ended_at: a.bidding.ends_at
        }
    );
    let (led, holds) = led_by_alice();
    let state = AuctionState {
        auction: &led,
        holds: &holds,
        wallets: &[],
    };
    assert_eq!(
        rejected(cancel(state, &by(SELLER), t0())),
        Rejection::HasBids
    );
}

/// A valid listing at [`t0`]: a desk from 100, by 10, for an hour.
fn listing() -> CreateAuction {
    CreateAuction {
        listing: Listing::new(SELLER, "Desk", m(100), AuctionPolicy::fixed(m(10))),
        starts_at: None,
        ends_at: t0() + TimeDelta::hours(1),
    }
}

#[test]
fn auctions_are_validated_on_creation() {
    let currency = Currency::default();
    let rules = rules_with(&currency);
    let cmd = CreateAuction {
        ends_at: t0() + TimeDelta::hours(1) + TimeDelta::nanoseconds(1_500),
        ..listing().with_listing(|listing| listing.title = "  Desk  ".into())
    };
    let a = create_auction(rules, &cmd, t0()).expect("valid");
    assert_eq!(
        (a.listing.title.as_str(), a.starts_at, a.bidding.seq),
        ("Desk", t0(), 0)
    );
    assert_eq!(
        a.bidding.ends_at,
        t0() + TimeDelta::hours(1) + TimeDelta::microseconds(1),
        "kept to the microsecond"
    );
    let long = cmd
        .clone()
        .with_listing(|listing| listing.description = "x".repeat(10_001));
    assert_eq!(
        create_auction(rules, &long, t0()).map_err(|r| r.code()),
        Err("invalid_auction")
    );
    let precise = cmd.with_listing(|listing| {
        listing.policy = AuctionPolicy::fixed("0.001".parse().expect("money"))
    });
    assert_eq!(
        create_auction(rules, &precise, t0()).map_err(|r| r.code()),
        Err("invalid_amount")
    );
}

#[test]
fn malformed_auctions_are_refused_with_a_reason() {
    let currency = Currency::default();
    let rules = rules_with(&currency);
    let now = t0();
    let base = listing();
    let cases: Vec<(CreateAuction, &str)> = vec![
        (
            base.clone()
                .with_listing(|listing| listing.title = "   ".into()),
            "invalid_auction",
        ),
        (
            base.clone()
                .with_listing(|listing| listing.title = "x".repeat(201)),
            "invalid_auction",
        ),
        (
            CreateAuction {
                ends_at: now,
                ..base.clone()
            },
            "invalid_auction",
        ),
        (
            CreateAuction {
                starts_at: Some(now + TimeDelta::hours(2)),
                ..base.clone()
            },
            "invalid_auction",
        ),
        (
            base.clone()
                .with_listing(|listing| listing.start_price = Money::ZERO),
            "invalid_amount",
        ),
        (
            base.clone()
                .with_listing(|listing| listing.policy = AuctionPolicy::fixed(Money::ZERO)),
            "invalid_amount",
        ),
        (
            base.clone()
                .with_listing(|listing| listing.buy_now_price = Some(m(99))),
            "invalid_auction",
        ),
        (
            base.clone().with_listing(|listing| {
                listing.scope = Scope::Local {
                    region: Region::new(""),
                }
            }),
            "invalid_auction",
        ),
    ];
    // Dates no database need hold (Postgres refuses years before 4713 BC),
    // and the first ones past each end of the documented range.
    let year = |year: i32| {
        Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0)
            .single()
            .expect("a date")
    };
    let mut cases = cases;
    for starts_at in [
        year(-5000),
        year(-262_143),
        CreateAuction::EARLIEST - TimeDelta::microseconds(1),
    ] {
        let cmd = CreateAuction {
            starts_at: Some(starts_at),
            ..base.clone()
        };
        cases.push((cmd, "invalid_auction"));
    }
    for ends_at in [
        year(262_142),
        CreateAuction::latest() + TimeDelta::microseconds(1),
    ] {
        cases.push((
            CreateAuction {
                ends_at,
                ..base.clone()
            },
            "invalid_auction",
        ));
    }
    // Control characters, which Postgres cannot store (NUL) or no field
    // needs: refused alike by every store.
    let attribute = |value: &str| [("condition".to_owned(), value.to_owned())].into();
    let controls: Vec<(CreateAuction, &str)> = vec![
        (
            base.clone()
                .with_listing(|listing| listing.title = "a\0b".into()),
            "invalid_auction",
        ),
        (
            base.clone()
                .with_listing(|listing| listing.title = "line\nbreak".into()),
            "invalid_auction",
        ),
        (
            base.clone()
                .with_listing(|listing| listing.description = "fine\nbut\0not".into()),
            "invalid_auction",
        ),
        (
            base.clone()
                .with_listing(|listing| listing.category = Some("bell\u{7}".into())),
            "invalid_auction",
        ),
        (
            base.clone()
                .with_listing(|listing| listing.attributes = attribute("\0")),
            "invalid_auction",
        ),
        (
            base.clone().with_listing(|listing| {
                listing.scope = Scope::Local {
                    region: Region::new("seoul\0"),
                }
            }),
            "invalid_auction",
        ),
    ];
    for (cmd, code) in cases.into_iter().chain(controls) {
        let refused = create_auction(rules, &cmd, now).map_err(|rejection| rejection.code());
        assert_eq!(refused.map(|_| ()), Err(code), "{cmd:?}");
    }
}

#[test]
fn deposits_and_withdrawals() {
    let currency = Currency::default();
    let rules = rules_with(&currency);
    let w = wallet(ALICE, 100, 40);
    let d = deposit(
        rules,
        &w,
        &Deposit {
            user: ALICE,
            amount: m(5),
        },
        t0(),
    )
    .expect("deposit");
    assert_eq!(
        (d.wallet, d.entry.balance_after, d.entry.locked_after),
        (wallet(ALICE, 105, 40), m(105), m(40))
    );
    let d = withdraw(
        rules,
        &w,
        &Withdraw {
            user: ALICE,
            amount: m(100),
        },
        t0(),
    )
    .expect("withdraw");
    assert_eq!(d.wallet, wallet(ALICE, 0, 40));
    let over = withdraw(
        rules,
        &w,
        &Withdraw {
            user: ALICE,
            amount: m(101),
        },
        t0(),
    );
    assert_eq!(
        rejected(over),
        Rejection::InsufficientFunds {
            available: m(100),
            required: m(101)
        }
    );
    let full = wallet(ALICE, 0, 0);
    let big = Currency::new(2, Wallet::LIMIT);
    let full = Wallet {
        balance: Wallet::LIMIT,
        ..full
    };
    let over = deposit(
        rules_with(&big),
        &full,
        &Deposit {
            user: ALICE,
            amount: m(1),
        },
        t0(),
    );
    assert_eq!(rejected(over), Rejection::BalanceLimit);
}

#[test]
fn wallets_are_locked_in_ascending_order_and_only_when_needed() {
    let (a, holds) = led_by_alice();
    assert_eq!(
        wallets_to_lock(&holds, &AuctionAction::Bid(BOB).parties(&a)),
        [ALICE, BOB]
    );
    assert_eq!(
        wallets_to_lock(&holds, &AuctionAction::Bid(ALICE).parties(&a)),
        [ALICE]
    );
    assert_eq!(
        wallets_to_lock(&holds, &AuctionAction::BuyNow(BOB).parties(&a)),
        [SELLER, ALICE, BOB]
    );
    assert_eq!(
        wallets_to_lock(&holds, &AuctionAction::Settle.parties(&a)),
        [SELLER, ALICE]
    );
    assert_eq!(
        wallets_to_lock(&[], &AuctionAction::Cancel.parties(&a)),
        Vec::<UserId>::new()
    );
}

/// Policies beyond a fixed unit and a hard close: worked examples on a small simulation that
/// applies each decision like a store would.
mod policies {
    use super::*;
    use crate::event::PublicEvent;
    use crate::policy::{BuyNowPolicy, ClosePolicy, Increment};

    const CAROL: UserId = UserId(4);

    struct Sim {
        auction: Auction,
        holds: Vec<Hold>,
        wallets: Vec<Wallet>,
    }

    impl Sim {
        fn new(policy: AuctionPolicy, start: &str, buy_now: Option<u64>) -> Sim {
            Sim {
                auction: {
                    let mut auction = auction();
                    auction.listing.policy = policy;
                    auction.listing.start_price = start.parse().expect("price");
                    auction.listing.buy_now_price = buy_now.map(m);
                    auction.bidding.current_price = start.parse().expect("price");
                    auction
                },
                holds: Vec::new(),
                wallets: [SELLER, ALICE, BOB, CAROL]
                    .map(|user| wallet(user, 10_000, 0))
                    .to_vec(),
            }
        }

        fn state(&self) -> AuctionState<'_> {
            AuctionState {
                auction: &self.auction,
                holds: &self.holds,
                wallets: &self.wallets,
            }
        }

        fn apply(&mut self, d: &Decision) {
            self.auction = d.auction.clone();
            for w in &d.wallets {
                if let Some(slot) = self.wallets.iter_mut().find(|x| x.user == w.user) {
                    *slot = w.clone();
                }
            }
            for hold in &d.holds {
                self.holds.retain(|h| h.user != hold.user);
                if !hold.amount.is_zero() {
                    self.holds.push(hold.clone());
                }
            }
        }

        fn bid(
            &mut self,
            who: UserId,
            amount: &str,
            max: Option<&str>,
            at: Timestamp,
        ) -> Result<Decision, RuleError> {
            let cmd = PlaceBid {
                amount: amount.parse().expect("amount"),
                max_amount: max.map(|max| max.parse().expect("max")),
                ..bid(who, 1)
            };
            let currency = Currency::default();
            let d = place_bid(rules_with(&currency), self.state(), &cmd, at)?;
            self.apply(&d);
            Ok(d)
        }

        fn held(&self, user: UserId) -> Money {
            self.holds
                .iter()
                .find(|h| h.user == user)
                .map_or(Money::ZERO, |h| h.amount)
        }

        fn price(&self) -> (Money, Option<UserId>) {
            (
                self.auction.bidding.current_price,
                self.auction.bidding.leader,
            )
        }
    }

    fn d(text: &str) -> Money {
        text.parse().expect("amount")
    }

    #[test]
    fn proxy_bids_only_as_much_as_needed() {
        let mut sim = Sim::new(AuctionPolicy::fixed(m(1)), "10", None);
        sim.bid(ALICE, "10", Some("50"), t0()).expect("first");
        assert_eq!(sim.price(), (m(10), Some(ALICE)));
        assert_eq!(sim.held(ALICE), m(50), "escrow holds the maximum");

        // B bids 30: A's maximum answers at 31, A still leads.
        let answered = sim.bid(BOB, "30", None, t0()).expect("written");
        assert_eq!(sim.price(), (m(31), Some(ALICE)));
        let auto = answered.bid.expect("the leader's automatic bid");
        assert_eq!((auto.bidder, auto.amount, auto.auto), (ALICE, m(31), true));
        assert!(answered.wallets.is_empty(), "a losing bid moves no money");
        assert!(answered.event.private.is_empty(), "A never stopped leading");

        // An equal maximum: the earlier one leads, at that maximum.
        sim.bid(BOB, "50", None, t0()).expect("written");
        assert_eq!(sim.price(), (m(50), Some(ALICE)));

        // B's higher maximum takes the lead one increment above A's.
        let taken = sim.bid(BOB, "51", Some("80"), t0()).expect("leads");
        assert_eq!(sim.price(), (m(51), Some(BOB)));
        assert_eq!((sim.held(ALICE), sim.held(BOB)), (Money::ZERO, m(80)));
        assert_eq!(
            taken.event.notices_for(ALICE).collect::<Vec<_>>(),
            [&PrivateEvent::Outbid { price: m(51) }]
        );

        // The leader raising their maximum does not raise the price.
        let raised = sim.bid(BOB, "52", Some("100"), t0()).expect("raised");
        assert_eq!(sim.price(), (m(51), Some(BOB)));
        assert_eq!((raised.bid, sim.held(BOB)), (None, m(100)));
        assert_eq!(
            rejected(sim.bid(BOB, "52", Some("90"), t0())),
            Rejection::MaxNotRaised { max: m(100) }
        );

        // A challenger needs the funds for their maximum even when losing.
        sim.wallets[3] = wallet(CAROL, 60, 0);
        assert!(matches!(
            rejected(sim.bid(CAROL, "60", Some("70"), t0())),
            Rejection::InsufficientFunds { .. }
        ));
        assert_eq!(
            rejected(sim.bid(CAROL, "60", Some("59"), t0())),
            Rejection::MaxBelowAmount
        );
    }

    #[test]
    fn increments_follow_the_ladder_across_bands_and_percentages() {
        let ladder = AuctionPolicy {
            increment: Increment::ebay_ladder(),
            ..AuctionPolicy::fixed(m(1))
        };
        let mut sim = Sim::new(ladder, "4.75", None);
        sim.bid(ALICE, "4.75", None, t0()).expect("first");
        assert_eq!(sim.auction.min_next_bid(), d("5.00"), "4.75 + 0.25");
        assert!(sim.bid(BOB, "4.99", None, t0()).is_err());
        sim.bid(BOB, "5.00", None, t0())
            .expect("crosses into the 5 band");
        assert_eq!(sim.auction.min_next_bid(), d("5.50"), "5.00 + 0.50");

        let percent = AuctionPolicy {
            increment: Increment::Percent {
                percent: rust_decimal::Decimal::new(5, 0),
                scale: 2,
            },
            ..AuctionPolicy::fixed(m(1))
        };
        let mut sim = Sim::new(percent, "33.33", None);
        sim.bid(ALICE, "33.33", None, t0()).expect("first");
        assert_eq!(sim.auction.min_next_bid(), d("35.00"), "33.33 + 1.67");
    }

    #[test]
    fn reserve_jumps_the_price_and_decides_the_sale() {
        let reserve = AuctionPolicy {
            reserve_price: Some(m(200)),
            ..AuctionPolicy::fixed(m(10))
        };
        let mut sim = Sim::new(reserve.clone(), "100", None);
        let below = sim.bid(ALICE, "100", Some("150"), t0()).expect("first");
        assert!(!sim.auction.bidding.reserve_met);
        assert!(!below
            .event
            .public
            .iter()
            .any(|e| matches!(e, PublicEvent::ReserveMet { .. })));
        let met = sim.bid(BOB, "110", Some("250"), t0()).expect("leads");
        assert_eq!(sim.price(), (m(200), Some(BOB)), "160 jumps to the reserve");
        assert!(met
            .event
            .public
            .contains(&PublicEvent::ReserveMet { price: m(200) }));

        let end = sim.auction.bidding.ends_at;
        let sold = settle(sim.state(), end).expect("settle").expect("due");
        assert_eq!(sold.auction.bidding.status, AuctionStatus::Sold);
        let bob = sold.wallets.iter().find(|w| w.user == BOB).expect("bob");
        assert_eq!((bob.balance, bob.locked), (m(9_800), Money::ZERO));

        // Below the reserve at the end: unsold, everything released.
        let mut sim = Sim::new(reserve, "100", None);
        sim.bid(ALICE, "100", Some("150"), t0()).expect("first");
        let unsold = settle(sim.state(), end).expect("settle").expect("due");
        assert_eq!(unsold.auction.bidding.status, AuctionStatus::Unsold);
        assert_eq!(
            unsold.event.public,
            [PublicEvent::ReserveNotMet, PublicEvent::Unsold]
        );
        assert_eq!(unsold.wallets, [wallet(ALICE, 10_000, 0)]);
    }

    #[test]
    fn soft_close_extends_at_the_window_edge_up_to_the_cap() {
        let soft = AuctionPolicy {
            close: ClosePolicy::Soft {
                window_secs: 60,
                extend_by_secs: 120,
                max_extensions: 2,
            },
            ..AuctionPolicy::fixed(m(1))
        };
        let mut sim = Sim::new(soft, "10", None);
        let end = sim.auction.bidding.ends_at;
        sim.bid(ALICE, "10", None, end - TimeDelta::seconds(61))
            .expect("outside the window");
        assert_eq!(
            (sim.auction.bidding.ends_at, sim.auction.bidding.extensions),
            (end, 0)
        );

        let at = end - TimeDelta::seconds(60);
        let first = sim.bid(BOB, "11", None, at).expect("at the edge");
        let new_end = at + TimeDelta::seconds(120);
        assert_eq!(
            (sim.auction.bidding.ends_at, sim.auction.bidding.extensions),
            (new_end, 1)
        );
        assert!(first
            .event
            .public
            .contains(&PublicEvent::Extended { ends_at: new_end }));

        let at = new_end - TimeDelta::seconds(1);
        sim.bid(ALICE, "12", None, at).expect("second extension");
        assert_eq!(sim.auction.bidding.extensions, 2);
        let capped_end = sim.auction.bidding.ends_at;
        let at = capped_end - TimeDelta::seconds(1);
        sim.bid(BOB, "13", None, at).expect("no more extensions");
        assert_eq!(
            (sim.auction.bidding.ends_at, sim.auction.bidding.extensions),
            (capped_end, 2)
        );
        assert!(matches!(
            rejected(sim.bid(ALICE, "14", None, capped_end)),
            Rejection::AuctionEnded { .. }
        ));

        // An extension never moves the end earlier.
        let short = AuctionPolicy {
            close: ClosePolicy::Soft {
                window_secs: 120,
                extend_by_secs: 30,
                max_extensions: 5,
            },
            ..AuctionPolicy::fixed(m(1))
        };
        let mut sim = Sim::new(short, "10", None);
        sim.bid(ALICE, "10", None, end - TimeDelta::seconds(100))
            .expect("in the window");
        assert_eq!(sim.auction.bidding.ends_at, end);
    }

    #[test]
    fn buy_now_disappears_as_its_policy_says() {
        let until_first = AuctionPolicy {
            buy_now: BuyNowPolicy::UntilFirstBid,
            ..AuctionPolicy::fixed(m(10))
        };
        let mut sim = Sim::new(until_first, "100", Some(500));
        assert!(sim.auction.buy_now_available());
        let first = sim.bid(ALICE, "100", None, t0()).expect("first");
        assert!(first.event.public.contains(&PublicEvent::BuyNowWithdrawn));
        let cmd = BuyNow {
            auction_id: AuctionId(7),
            buyer: BOB,
            buyer_region: None,
        };
        let currency = Currency::default();
        assert_eq!(
            rejected(buy_now(rules_with(&currency), sim.state(), &cmd, t0())),
            Rejection::BuyNowUnavailable
        );

        let until_reserve = AuctionPolicy {
            buy_now: BuyNowPolicy::UntilReserveMet,
            reserve_price: Some(m(200)),
            ..AuctionPolicy::fixed(m(10))
        };
        let mut sim = Sim::new(until_reserve, "100", Some(500));
        let below = sim
            .bid(ALICE, "150", None, t0())
            .expect("below the reserve");
        assert!(sim.auction.buy_now_available());
        assert!(!below.event.public.contains(&PublicEvent::BuyNowWithdrawn));
        let met = sim.bid(BOB, "200", None, t0()).expect("meets the reserve");
        assert!(!sim.auction.buy_now_available());
        assert!(met.event.public.contains(&PublicEvent::BuyNowWithdrawn));

        // The default: until bidding reaches the buy-now price.
        let mut sim = Sim::new(AuctionPolicy::fixed(m(10)), "100", Some(500));
        sim.bid(ALICE, "490", None, t0()).expect("below");
        assert!(sim.auction.buy_now_available());
        let reached = sim.bid(BOB, "500", None, t0()).expect("reaches it");
        assert!(reached.event.public.contains(&PublicEvent::BuyNowWithdrawn));
    }
}

#[test]
fn is_live_and_is_due_agree_with_the_rules() {
    let a = auction();
    let micro = TimeDelta::microseconds(1);
    let times = [
        a.starts_at - micro,
        a.starts_at,
        a.bidding.ends_at - micro,
        a.bidding.ends_at,
        a.bidding.ends_at + micro,
    ];
    for status in AuctionStatus::ALL {
        let a = {
            let mut auction = a.clone();
            auction.bidding.status = status;
            auction
        };
        for now in times {
            let takes_bids = check_live(&a, now).is_ok();
            assert_eq!(a.is_live(now), takes_bids, "{status:?} at {now}");
            let due = status == AuctionStatus::Open && now >= a.bidding.ends_at;
            assert_eq!(a.is_due(now), due, "{status:?} at {now}");
        }
    }
    assert!(auction().is_live(t0()), "the fixture is live at its start");
}

#[test]
fn same_area_admits_the_first_parts_of_the_path() {
    let auction_region = Region::new("seoul/mapo/mangwon");
    let admits = |depth, user: Option<&str>| {
        let user = user.map(Region::new);
        SameArea { depth }.admits(&auction_region, user.as_ref())
    };
    assert!(admits(2, Some("seoul/mapo/hapjeong")));
    assert!(admits(2, Some("seoul/mapo")));
    assert!(!admits(2, Some("seoul/gangnam/yeoksam")));
    assert!(!admits(2, Some("seoul/mapogu")));
    assert!(!admits(2, None), "an unknown region is not admitted");
    assert!(admits(3, Some("seoul/mapo/mangwon")));
    assert!(!admits(3, Some("seoul/mapo/hapjeong")));
    assert!(admits(0, Some("seoul/gangnam")), "depth 0 counts as 1");
    assert!(!admits(0, Some("busan/haeundae")));
}

#[test]
fn full_wallets_are_outbid_bought_out_and_paid() {
    // Every wallet holds exactly what deposits may bring it to.
    let full = |user: UserId, locked: u64| Wallet {
        user,
        balance: Wallet::LIMIT.checked_sub(m(locked)).expect("below"),
        locked: m(locked),
    };
    let (a, holds) = led_by_alice();
    let wallets = [full(SELLER, 0), full(ALICE, 150), full(BOB, 0)];
    let outbid = place(&a, &holds, &wallets, &bid(BOB, 160), t0()).expect("outbid");
    assert_eq!(outbid.wallets[0].balance, Wallet::LIMIT, "Alice refunded");
    let bought = buy(&a, &holds, &wallets, BOB).expect("bought out");
    let seller = &bought.wallets[0];
    assert_eq!(seller.balance, Wallet::LIMIT.checked_add(m(500)).unwrap());
    let state = AuctionState {
        auction: &a,
        holds: &holds,
        wallets: &wallets,
    };
    let settled = settle(state, a.bidding.ends_at)
        .expect("settles")
        .expect("due");
    assert_eq!(
        settled.wallets[0].balance,
        Wallet::LIMIT.checked_add(m(150)).unwrap(),
        "the seller is paid above the deposit limit"
    );
}

#[test]
fn dates_at_the_ends_of_the_range_are_accepted() {
    let currency = Currency::default();
    let unit = crate::policy::Increment::fixed(m(10));
    let mut cmd = CreateAuction::new(SELLER, "Clock", m(100), unit, CreateAuction::latest());
    cmd.starts_at = Some(CreateAuction::EARLIEST);
    let auction = create_auction(rules_with(&currency), &cmd, t0()).expect("in range");
    assert_eq!(auction.starts_at, CreateAuction::EARLIEST);
    assert_eq!(
        auction.bidding.ends_at.to_rfc3339(),
        "9999-12-31T23:59:59.999999+00:00"
    );
}
