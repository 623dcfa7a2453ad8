//! Random sequences of every command (several users and auctions under
//! every policy, good and bad amounts, maximum bids, reused idempotency keys,
//! time passing), checking the books and the bidding invariants after every
//! step.

use std::collections::HashMap;

use chrono::TimeDelta;
use neighborbid_core::testkit::Harness;
use neighborbid_core::{
    Auction, AuctionFilter, AuctionId, AuctionPolicy, AuctionStatus, BuyNow, BuyNowPolicy,
    CancelAuction, ClosePolicy, Command, CreateAuction, Deposit, EngineError, Hold, IdempotencyKey,
    Increment, Listing, MemoryStore, Money, Page, PlaceBid, Receipt, Region, Scope, UserId,
    Withdraw,
};
use proptest::prelude::*;
use rust_decimal::Decimal;

const USERS: usize = 4;

#[derive(Clone, Debug)]
enum Op {
    Deposit {
        user: usize,
        amount: String,
        key: Option<u8>,
    },
    Withdraw {
        user: usize,
        amount: String,
        key: Option<u8>,
    },
    Create {
        seller: usize,
        local: bool,
        start: u64,
        policy: AuctionPolicy,
        buy_now: Option<u64>,
        minutes: i64,
        key: Option<u8>,
    },
    Bid {
        user: usize,
        auction: usize,
        amount: BidAmount,
        max: Option<MaxBid>,
        home: bool,
        key: Option<u8>,
    },
    BuyNow {
        user: usize,
        auction: usize,
        home: bool,
        key: Option<u8>,
    },
    Cancel {
        user: usize,
        auction: usize,
        key: Option<u8>,
    },
    Advance {
        minutes: i64,
    },
    Close,
    /// The client retries its previous command with the same key.
    Retry,
}

/// How much to bid: literal text, or relative to what the auction asks now
/// (so that most bids are live ones).
#[derive(Clone, Debug)]
enum BidAmount {
    Text(String),
    AboveMin(u64),
}

/// A maximum to bid with.
#[derive(Clone, Debug)]
enum MaxBid {
    /// Units above the amount (0: a maximum equal to it).
    Above(u64),
    /// Exactly the highest maximum so far: a tie, which the earlier wins.
    Tie,
}

fn amount() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (1u64..150).prop_map(|units| units.to_string()),
        2 => (1u64..40_000).prop_map(|cents| format!("{}.{:02}", cents / 100, cents % 100)),
        1 => prop::sample::select(vec![
            "0", "-5", "1.005", "1e3", "abc", "", "99999999999999999999", "1000000000001",
            "0.00",
        ])
        .prop_map(str::to_owned),
    ]
}

fn policy() -> impl Strategy<Value = AuctionPolicy> {
    let increment = prop_oneof![
        3 => (1u64..10).prop_map(|unit| Increment::Fixed { unit: Money::units(unit) }),
        1 => Just(Increment::ebay_ladder()),
        1 => (1i64..30).prop_map(|percent| Increment::Percent { percent: Decimal::new(percent, 0), scale: 2 }),
    ];
    let close = prop_oneof![
        1 => Just(ClosePolicy::Hard),
        1 => (60u32..1_800, 60u32..900, 0u32..4).prop_map(|(window_secs, extend_by_secs, max_extensions)| {
            ClosePolicy::Soft { window_secs, extend_by_secs, max_extensions }
        }),
    ];
    let buy_now = prop::sample::select(vec![
        BuyNowPolicy::Always,
        BuyNowPolicy::UntilFirstBid,
        BuyNowPolicy::UntilReserveMet,
    ]);
    (
        increment,
        prop::option::weighted(0.4, 20u64..200),
        close,
        buy_now,
    )
        .prop_map(|(increment, reserve, close, buy_now)| AuctionPolicy {
            increment,
            reserve_price: reserve.map(Money::units),
            close,
            buy_now,
        })
}

fn bid_amount() -> impl Strategy<Value = BidAmount> {
    prop_oneof![
        1 => amount().prop_map(BidAmount::Text),
        2 => prop_oneof![3 => Just(0u64), 1 => 1u64..30].prop_map(BidAmount::AboveMin),
    ]
}

fn max_bid() -> impl Strategy<Value = Option<MaxBid>> {
    prop_oneof![
        3 => Just(None),
        2 => (0u64..80).prop_map(|units| Some(MaxBid::Above(units))),
        1 => Just(Some(MaxBid::Tie)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let user = 0..USERS;
    let auction = 0usize..8;
    let key = prop::option::weighted(0.3, 0u8..3);
    prop_oneof![
        3 => (user.clone(), prop_oneof![amount(), (100u64..1_000).prop_map(|u| u.to_string())], key.clone())
            .prop_map(|(user, amount, key)| Op::Deposit { user, amount, key }),
        1 => (user.clone(), amount(), key.clone())
            .prop_map(|(user, amount, key)| Op::Withdraw { user, amount, key }),
        2 => (user.clone(), any::<bool>(), 1u64..50, policy(), prop::option::of(50u64..300), 1i64..120, key.clone())
            .prop_map(|(seller, local, start, policy, buy_now, minutes, key)| Op::Create {
                seller, local, start, policy, buy_now, minutes, key,
            }),
        8 => (user.clone(), auction.clone(), bid_amount(), max_bid(), prop::bool::weighted(0.9), key.clone())
            .prop_map(|(user, auction, amount, max, home, key)| Op::Bid { user, auction, amount, max, home, key }),
        1 => (user.clone(), auction.clone(), prop::bool::weighted(0.9), key.clone())
            .prop_map(|(user, auction, home, key)| Op::BuyNow { user, auction, home, key }),
        1 => (user, auction, key).prop_map(|(user, auction, key)| Op::Cancel { user, auction, key }),
        1 => (0i64..60).prop_map(|minutes| Op::Advance { minutes }),
        1 => Just(Op::Close),
        2 => Just(Op::Retry),
    ]
}

fn user_id(index: usize) -> UserId {
    UserId(index as i64 + 1)
}

fn home(index: usize) -> Region {
    Region::new(format!("region-{}", index % 2))
}

/// The test's own account of what happened, to check the store against.
#[derive(Default)]
struct Model {
    net_deposits: Money,
    auctions: Vec<AuctionId>,
    /// First success per (user, key): the command and its receipt.
    keys: HashMap<(UserId, u8), (Command, Receipt)>,
    /// The last command sent, with its key.
    last: Option<(Command, Option<u8>)>,
    /// Per auction, the highest maximum offered by an accepted bid and who
    /// offered it first: the one who must lead, and win.
    best: HashMap<AuctionId, (UserId, Money)>,
}

/// Everything observable, to show a refused command changed nothing.
#[derive(Debug, PartialEq)]
struct Snapshot {
    wallets: Vec<(Money, Money, usize)>,
    auctions: Vec<(Auction, usize, usize)>,
}

async fn snapshot(h: &Harness<MemoryStore>, model: &Model) -> Snapshot {
    let mut wallets = Vec::new();
    for user in (0..USERS).map(user_id) {
        let view = h
            .engine
            .wallet(user, Page::first(500))
            .await
            .expect("wallet");
        wallets.push((view.wallet.balance, view.wallet.locked, view.history.len()));
    }
    let mut auctions = Vec::new();
    for &id in &model.auctions {
        let view = h
            .engine
            .auction(id, Page::first(500))
            .await
            .expect("auction");
        let events = h.outbox(id).await.len();
        auctions.push((view.auction, view.bids.len(), events));
    }
    Snapshot { wallets, auctions }
}

async fn check_invariants(h: &Harness<MemoryStore>, model: &Model) {
    let users: Vec<UserId> = (0..USERS).map(user_id).collect();
    // Conservation, and locked == sum of holds, for every wallet.
    h.assert_books(&users, model.net_deposits).await;

    let mut holds: Vec<Hold> = Vec::new();
    for &user in &users {
        let view = h.engine.wallet(user, Page::first(1)).await.expect("wallet");
        assert!(
            view.wallet.balance.amount() >= 0.into() && view.wallet.locked.amount() >= 0.into()
        );
        holds.extend(view.holds);
    }
    let all = h
        .engine
        .list_auctions(&AuctionFilter::default(), Page::first(500))
        .await
        .expect("list");
    assert_eq!(all.len(), model.auctions.len());
    for auction in all {
        let on_auction: Vec<(UserId, Money)> = holds
            .iter()
            .filter(|hold| hold.auction_id == auction.id)
            .map(|hold| (hold.user, hold.amount))
            .collect();
        match (auction.bidding.status, auction.bidding.leader) {
            (AuctionStatus::Open, Some(leader)) => {
                let max = auction.bidding.max_bid.expect("a leader has a maximum");
                assert_eq!(
                    on_auction,
                    [(leader, max)],
                    "one leader, holding its maximum"
                );
                assert!(
                    auction.bidding.current_price <= max,
                    "price above the maximum: {auction:?}"
                );
            }
            _ => assert!(on_auction.is_empty(), "no escrow on {auction:?}"),
        }
        check_bidding(model, &auction);
        let events = h.outbox(auction.id).await;
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (1..=auction.bidding.seq).collect::<Vec<_>>(),
            "gapless sequence"
        );
        assert!(
            events.windows(2).all(|pair| pair[0].at <= pair[1].at),
            "decision times never go back within an auction"
        );
        assert_eq!(
            h.delivered(auction.id),
            events,
            "delivered exactly what was committed"
        );
    }
}

/// The leader (and winner) had the highest maximum, earliest on ties; the
/// reserve decided the sale; nothing settled before its current end.
fn check_bidding(model: &Model, auction: &Auction) {
    let best = model.best.get(&auction.id);
    match auction.bidding.status {
        AuctionStatus::Open | AuctionStatus::Sold => {
            assert_eq!(
                auction.bidding.leader.zip(auction.bidding.max_bid),
                best.copied(),
                "the highest maximum leads: {auction:?}"
            );
        }
        _ => {}
    }
    if matches!(
        auction.bidding.status,
        AuctionStatus::Sold | AuctionStatus::Unsold
    ) {
        let closed_at = auction
            .bidding
            .closed_at
            .expect("settled auctions have a close time");
        assert!(
            closed_at >= auction.bidding.ends_at,
            "settled before its end: {auction:?}"
        );
        let reserve_met = match (best, auction.listing.policy.reserve_price) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some((_, max)), Some(reserve)) => *max >= reserve,
        };
        assert_eq!(
            auction.bidding.status == AuctionStatus::Sold,
            reserve_met,
            "{auction:?}"
        );
    }
}

async fn command(
    h: &Harness<MemoryStore>,
    model: &Model,
    op: &Op,
) -> Result<Option<Command>, String> {
    let parse = |text: &str| text.parse::<Money>().map_err(|e| format!("{text:?}: {e}"));
    // Index 7 stands for an auction that does not exist.
    let auction = |index: usize| match model.auctions.len() {
        0 => AuctionId(999),
        _ if index == 7 => AuctionId(999),
        n => model.auctions[index % n],
    };
    let region =
        |user: usize, at_home: bool| Some(if at_home { home(user) } else { home(user + 1) });
    Ok(Some(match op {
        Op::Deposit { user, amount, .. } => Command::Deposit(Deposit {
            user: user_id(*user),
            amount: parse(amount)?,
        }),
        Op::Withdraw { user, amount, .. } => Command::Withdraw(Withdraw {
            user: user_id(*user),
            amount: parse(amount)?,
        }),
        Op::Create {
            seller,
            local,
            start,
            policy,
            buy_now,
            minutes,
            ..
        } => {
            let mut listing = Listing::new(
                user_id(*seller),
                "item",
                Money::units(*start),
                policy.clone(),
            );
            if *local {
                listing.scope = Scope::Local {
                    region: home(*seller),
                };
            }
            listing.buy_now_price = buy_now.map(Money::units);
            Command::CreateAuction(CreateAuction {
                listing,
                starts_at: None,
                ends_at: h.now() + TimeDelta::minutes(*minutes),
            })
        }
        Op::Bid {
            user,
            auction: index,
            amount,
            max,
            home: at_home,
            ..
        } => {
            let auction_id = auction(*index);
            let amount = match amount {
                BidAmount::Text(text) => parse(text)?,
                BidAmount::AboveMin(units) => {
                    match h.engine.auction(auction_id, Page::first(1)).await {
                        Ok(view) => view
                            .auction
                            .min_next_bid()
                            .checked_add(Money::units(*units))
                            .ok_or("overflow")?,
                        Err(_) => Money::units(*units),
                    }
                }
            };
            let max_amount = match max {
                None => None,
                Some(MaxBid::Above(units)) => amount.checked_add(Money::units(*units)),
                Some(MaxBid::Tie) => model.best.get(&auction_id).map(|(_, max)| *max),
            };
            Command::PlaceBid(PlaceBid {
                auction_id,
                bidder: user_id(*user),
                bidder_region: region(*user, *at_home),
                amount,
                max_amount,
            })
        }
        Op::BuyNow {
            user,
            auction: index,
            home: at_home,
            ..
        } => Command::BuyNow(BuyNow {
            auction_id: auction(*index),
            buyer: user_id(*user),
            buyer_region: region(*user, *at_home),
        }),
        Op::Cancel {
            user,
            auction: index,
            ..
        } => Command::CancelAuction(CancelAuction {
            auction_id: auction(*index),
            seller: user_id(*user),
        }),
        Op::Advance { .. } | Op::Close | Op::Retry => return Ok(None),
    }))
}

fn key_of(op: &Op) -> Option<u8> {
    match op {
        Op::Deposit { key, .. }
        | Op::Withdraw { key, .. }
        | Op::Create { key, .. }
        | Op::Bid { key, .. }
        | Op::BuyNow { key, .. }
        | Op::Cancel { key, .. } => *key,
        Op::Advance { .. } | Op::Close | Op::Retry => None,
    }
}

async fn step(h: &Harness<MemoryStore>, model: &mut Model, op: &Op) {
    match op {
        Op::Advance { minutes } => return h.clock.advance(TimeDelta::minutes(*minutes)),
        Op::Close => {
            h.engine.close_due_auctions(100).await.expect("close");
            return;
        }
        _ => {}
    }
    let (command, small_key) = match op {
        Op::Retry => match model.last.clone() {
            Some(last) => last,
            None => return,
        },
        // An amount that does not even parse never reaches the engine.
        _ => match command(h, model, op).await {
            Ok(Some(command)) => (command, key_of(op)),
            _ => return,
        },
    };
    model.last = Some((command.clone(), small_key));
    let actor = command.actor();
    let key = small_key.map(|k| IdempotencyKey::new(format!("key-{k}")).expect("key"));
    let before = snapshot(h, model).await;
    let result = h.engine.execute(command.clone(), key).await;

    let earlier = small_key.and_then(|k| model.keys.get(&(actor, k)).cloned());
    if let Some((first_command, first_receipt)) = earlier {
        if first_command == command {
            assert_eq!(result.expect("a replay succeeds"), first_receipt);
        } else {
            assert!(
                matches!(result, Err(EngineError::IdempotencyConflict { .. })),
                "{result:?}"
            );
        }
        assert_eq!(
            snapshot(h, model).await,
            before,
            "a replay or conflict changes nothing"
        );
        return;
    }
    match result {
        Ok(receipt) => {
            match &receipt {
                Receipt::Deposited(entry) => {
                    model.net_deposits = model.net_deposits.checked_add(entry.amount).expect("sum");
                }
                Receipt::Withdrawn(entry) => {
                    model.net_deposits = model.net_deposits.checked_sub(entry.amount).expect("sum");
                }
                Receipt::AuctionCreated(auction) => model.auctions.push(auction.id),
                Receipt::BidPlaced(_) => {
                    let Command::PlaceBid(bid) = &command else {
                        unreachable!("a bid receipt answers a bid")
                    };
                    let offer = bid.max_amount.unwrap_or(bid.amount);
                    let best = model
                        .best
                        .entry(bid.auction_id)
                        .or_insert((bid.bidder, offer));
                    // Strictly higher: on equal maxima the earlier one leads.
                    if offer > best.1 {
                        *best = (bid.bidder, offer);
                    }
                }
                _ => {}
            }
            if let Some(k) = small_key {
                model.keys.insert((actor, k), (command, receipt));
            }
        }
        Err(EngineError::Rejected(_)) => {
            assert_eq!(
                snapshot(h, model).await,
                before,
                "a refused command leaves no trace"
            );
        }
        Err(other) => panic!("{op:?} failed: {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn books_balance_after_every_step(ops in prop::collection::vec(op(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let h = Harness::new(MemoryStore::new());
            let mut model = Model::default();
            // Start from a market where something can happen.
            let setup = (0..USERS).map(|user| Op::Deposit { user, amount: "300".into(), key: None })
                .chain([
                    Op::Create { seller: 0, local: false, start: 10, policy: AuctionPolicy::fixed(Money::units(5)), buy_now: Some(200), minutes: 60, key: None },
                    Op::Create { seller: 1, local: true, start: 10, policy: AuctionPolicy::fixed(Money::units(1)), buy_now: None, minutes: 90, key: None },
                ]);
            for op in setup.chain(ops) {
                let op = &op;
                step(&h, &mut model, op).await;
                check_invariants(&h, &model).await;
            }
        });
    }
}
