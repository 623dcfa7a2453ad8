//! The auction rules as pure functions: no I/O, no clock, no async.
//!
//! Each function takes the state the engine loaded (under lock), the
//! command and the server time, and returns a [`Decision`]: the new auction
//! state, the bid, the wallet postings with their history entries, the
//! holds, and the event. The engine writes the decision and commits; if a
//! rule refuses, nothing is written.
//!
//! The rules are those of NeighborBid's first (Django) version:
//!
//! - the first bid is at least the start price, later bids at least the
//!   current price plus the bid unit;
//! - bids are taken only while the auction is open, started and before
//!   `ends_at`, even if the closer has not run yet;
//! - the seller cannot bid or buy; a local auction admits only users its
//!   [`RegionPolicy`] accepts;
//! - the new leader's bid is held in escrow (balance -> locked) and the
//!   previous leader's hold is released in the same decision;
//! - **a leader who bids again** simply replaces their own bid: their old
//!   hold is released and the new one placed in the same decision, so only
//!   the difference needs to be available and nothing is held twice; no
//!   outbid notice is sent to them;
//! - buy-now releases every hold, debits the buyer's balance, credits the
//!   seller and ends the auction; it is not offered once the leading bid has
//!   reached the buy-now price;
//! - settlement pays the seller from the winner's hold; an auction without
//!   bids ends unsold;
//! - the seller may cancel an auction without bids until it ends.
//!
//! Each auction's [`AuctionPolicy`](crate::AuctionPolicy) adds what the best
//! auction sites do, NeighborBid's first version's being the default
//! ([`AuctionPolicy::fixed`](crate::AuctionPolicy::fixed)): increments by a
//! fixed unit, a price ladder or a percentage; proxy (maximum) bids with
//! eBay's semantics (see [`place_bid`]); a hidden reserve price; a soft
//! close that extends the end after late bids; and when buy-now goes away.

use std::fmt;

use crate::auction::{Auction, AuctionStatus, Bid, Bidding, Listing, Region, Scope};
use crate::clock::to_micros;
use crate::command::{BuyNow, CancelAuction, CreateAuction, Deposit, EndEarly, PlaceBid, Withdraw};
use crate::error::Rejection;
use crate::event::{Event, PrivateEvent, PrivateNotice, PublicEvent};
use crate::ids::{AuctionId, BidId, UserId};
use crate::money::{Currency, Money};
use crate::wallet::{EntryKind, Hold, LedgerEntry, LedgerError, Postings, Wallet};
use crate::Timestamp;

/// Decides who may bid on a local auction. The embedder can replace it
/// (same district, a radius, ...).
pub trait RegionPolicy: Send + Sync + fmt::Debug + 'static {
    /// Whether a user from `user_region` (unknown: `None`) may bid on or buy
    /// from an auction of `auction_region`.
    fn admits(&self, auction_region: &Region, user_region: Option<&Region>) -> bool;
}

/// The default policy: only users of exactly the auction's region.
#[derive(Clone, Copy, Debug, Default)]
pub struct SameRegion;

impl RegionPolicy for SameRegion {
    fn admits(&self, auction_region: &Region, user_region: Option<&Region>) -> bool {
        user_region == Some(auction_region)
    }
}

/// Admits users who live in the same area as the auction: the same first
/// `depth` parts of the region path. With paths like
/// `"seoul/mapo/mangwon"`, depth 2 admits the whole district (`"seoul/mapo"`)
/// and depth 3 only the neighbourhood.
#[derive(Clone, Copy, Debug)]
pub struct SameArea {
    /// How many leading path parts must match (at least 1).
    pub depth: usize,
}

impl RegionPolicy for SameArea {
    fn admits(&self, auction_region: &Region, user_region: Option<&Region>) -> bool {
        let area = auction_region.ancestor(self.depth.max(1));
        user_region.is_some_and(|user| area.contains(user))
    }
}

/// The configuration the rules read.
#[derive(Clone, Copy, Debug)]
pub struct Rules<'a> {
    /// Amount limits.
    pub currency: &'a Currency,
    /// Who may bid on local auctions.
    pub region_policy: &'a dyn RegionPolicy,
}

/// The state a decision about an auction is made on, loaded under lock.
#[derive(Clone, Copy, Debug)]
pub struct AuctionState<'a> {
    /// The auction.
    pub auction: &'a Auction,
    /// Its open holds.
    pub holds: &'a [Hold],
    /// The wallets the command touches (see [`wallets_to_lock`]).
    pub wallets: &'a [Wallet],
}

/// Everything a command changes about one auction, to be written in one
/// transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The auction after the change (its `seq` raised by one).
    pub auction: Auction,
    /// The bid to record, if one was accepted.
    pub bid: Option<Bid>,
    /// New states of the wallets touched, in ascending user order.
    pub wallets: Vec<Wallet>,
    /// History entries, in the order they happened.
    pub entries: Vec<LedgerEntry>,
    /// New amounts of the holds touched; zero means closed.
    pub holds: Vec<Hold>,
    /// The event of this change.
    pub event: Event,
}

/// A deposit or withdrawal, to be written in one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalletDecision {
    /// The wallet after it.
    pub wallet: Wallet,
    /// Its history entry.
    pub entry: LedgerEntry,
}

/// Why a rule produced no decision.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The command is not allowed.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The loaded state is inconsistent (a bug or a damaged store).
    #[error("inconsistent state: {0}")]
    Inconsistent(String),
}

/// The commands that change an auction, for [`wallets_to_lock`].
#[derive(Clone, Copy, Debug)]
pub enum AuctionAction {
    /// A bid by this user.
    Bid(UserId),
    /// A buy-now by this user.
    BuyNow(UserId),
    /// Settlement by the closer.
    Settle,
    /// Cancellation by the seller.
    Cancel,
}

impl AuctionAction {
    /// The users besides the auction's hold owners whose wallets the
    /// action may touch: the bidder, the buyer and the seller, the seller.
    pub fn parties(self, auction: &Auction) -> Vec<UserId> {
        match self {
            AuctionAction::Bid(user) => vec![user],
            AuctionAction::BuyNow(user) => vec![user, auction.listing.seller],
            AuctionAction::Settle => vec![auction.listing.seller],
            AuctionAction::Cancel => Vec::new(),
        }
    }
}

/// The wallets to lock for `parties` (see [`AuctionAction::parties`]) on an
/// auction with `holds`: theirs and every hold owner's, ascending and
/// without duplicates. Every locker locks wallets in this order, after
/// the auction.
pub fn wallets_to_lock(holds: &[Hold], parties: &[UserId]) -> Vec<UserId> {
    let mut users: Vec<UserId> = holds.iter().map(|hold| hold.user).collect();
    users.extend_from_slice(parties);
    users.sort();
    users.dedup();
    users
}

/// The control characters that free text (a description) may hold: line
/// breaks and tabs.
pub const LAYOUT: &[char] = &['\n', '\r', '\t'];

/// Whether `text` holds no control character but those `allowed`: the
/// rules let no other into an auction's text, since every store must keep
/// what the rules let in and Postgres cannot keep NUL (no field needs the
/// rest). Hosts can hold their own text to the same rule.
pub fn plain_text(text: &str, allowed: &[char]) -> bool {
    text.chars()
        .all(|c| !c.is_control() || allowed.contains(&c))
}

/// Validates a new auction. The store assigns its id.
pub fn create_auction(
    rules: Rules<'_>,
    cmd: &CreateAuction,
    now: Timestamp,
) -> Result<Auction, Rejection> {
    let invalid = |reason: &str| Rejection::InvalidAuction {
        reason: reason.to_owned(),
    };
    let listing = &cmd.listing;
    let title = listing.title.trim();
    if title.is_empty() || title.chars().count() > Listing::MAX_TITLE {
        return Err(invalid("title must be 1 to 200 characters"));
    }
    if listing.description.chars().count() > Listing::MAX_DESCRIPTION {
        return Err(invalid("description must be at most 10000 characters"));
    }
    let one_line = |text: &str| plain_text(text, &[]);
    let mut labels = listing.category.iter().chain(
        listing
            .attributes
            .iter()
            .flat_map(|(name, value)| [name, value]),
    );
    let region = match &listing.scope {
        Scope::Local { region } => region.as_str(),
        Scope::National => "",
    };
    let plain = one_line(title)
        && plain_text(&listing.description, LAYOUT)
        && one_line(region)
        && labels.all(|label| one_line(label));
    if !plain {
        return Err(invalid(
            "text may not hold control characters (the description may hold line breaks and tabs)",
        ));
    }
    let label = |text: &str| !text.trim().is_empty() && text.chars().count() <= Listing::MAX_LABEL;
    if listing
        .category
        .as_deref()
        .is_some_and(|category| !label(category))
    {
        return Err(invalid("a category is 1 to 100 characters"));
    }
    if listing.attributes.len() > Listing::MAX_ATTRIBUTES
        || !listing
            .attributes
            .iter()
            .all(|(name, value)| label(name) && label(value))
    {
        return Err(invalid(
            "at most 20 attributes, names and values of 1 to 100 characters",
        ));
    }
    if let Scope::Local { region } = &listing.scope {
        if region.as_str().trim().is_empty() || region.as_str().len() > 200 {
            return Err(invalid(
                "a local auction needs a region name of 1 to 200 bytes",
            ));
        }
    }
    let positive = |field, amount| positive(rules, field, amount);
    let start_price = positive("start_price", listing.start_price)?;
    let policy = listing.policy.validate(rules.currency)?;
    let buy_now_price = listing
        .buy_now_price
        .map(|price| positive("buy_now_price", price))
        .transpose()?;
    if buy_now_price.is_some_and(|price| price < start_price) {
        return Err(invalid("buy_now_price must be at least start_price"));
    }
    if let Some(reserve) = policy.reserve_price {
        if reserve <= start_price {
            return Err(invalid("reserve_price must be above start_price"));
        }
        if buy_now_price.is_some_and(|price| price < reserve) {
            return Err(invalid("buy_now_price must be at least reserve_price"));
        }
    }
    let starts_at = to_micros(cmd.starts_at.unwrap_or(now));
    let ends_at = to_micros(cmd.ends_at);
    let in_range =
        |at: Timestamp| (CreateAuction::EARLIEST..=CreateAuction::latest()).contains(&at);
    if !in_range(starts_at) || !in_range(ends_at) {
        return Err(invalid(
            "starts_at and ends_at must lie between 1970-01-01 and 9999-12-31",
        ));
    }
    if ends_at <= starts_at || ends_at <= now {
        return Err(invalid("ends_at must be after starts_at and in the future"));
    }
    Ok(Auction {
        id: AuctionId::UNASSIGNED,
        listing: Listing {
            title: title.to_owned(),
            start_price,
            policy,
            buy_now_price,
            ..listing.clone()
        },
        starts_at,
        created_at: now,
        bidding: Bidding {
            ends_at,
            status: AuctionStatus::Open,
            current_price: start_price,
            leader: None,
            max_bid: None,
            reserve_met: false,
            extensions: 0,
            bid_count: 0,
            seq: 0,
            closed_at: None,
        },
    })
}

/// Decides a bid. Every bid carries a maximum (`max_amount`, or the
/// amount itself): the leader is whoever has the highest maximum (the
/// earlier one on a tie), and the price is the lower of the leader's
/// maximum and the runner-up's maximum plus one increment, but at least
/// what the leader bid. A challenger whose maximum does not beat the
/// leader's still pushes the price up to it; the decision is written and
/// the receipt says the challenger does not lead.
pub fn place_bid(
    rules: Rules<'_>,
    state: AuctionState<'_>,
    cmd: &PlaceBid,
    now: Timestamp,
) -> Result<Decision, RuleError> {
    let auction = state.auction;
    check_bid(rules, auction, cmd, now)?;
    let amount = cmd.amount;
    let max = cmd.max_amount.unwrap_or(amount);

    let increment = &auction.listing.policy.increment;
    let before = &auction.bidding;
    // Who leads after this bid, at what price, up to what maximum.
    let (leader, mut price, leader_max) = match (before.leader, before.max_bid) {
        (None, _) => (cmd.bidder, amount, max),
        (Some(leader), Some(held)) if leader == cmd.bidder => {
            // A plain bid sets the price; a maximum only raises the ceiling.
            let price = match cmd.max_amount {
                Some(_) => before.current_price,
                None => amount,
            };
            let raised = held.max(max);
            if cmd.max_amount.is_some() && raised == held {
                return Err(Rejection::MaxNotRaised { max: held }.into());
            }
            (leader, price, raised)
        }
        (Some(_), Some(held)) if max > held => {
            (cmd.bidder, amount.max(max.min(increment.above(held))), max)
        }
        (Some(leader), Some(held)) => (leader, held.min(increment.above(max)), held),
        (Some(_), None) => return Err(inconsistent("a leader without a maximum")),
    };
    let leading = leader == cmd.bidder;

    let mut next = advance(auction);
    let mut postings = Postings::new(now, state.wallets, state.holds);
    let mut released = Vec::new();
    if leading && (before.leader != Some(leader) || before.max_bid != Some(leader_max)) {
        released = postings.release_all(auction.id).map_err(ledger(max))?;
        postings
            .post(leader, EntryKind::BidHold, leader_max, Some(auction.id))
            .map_err(ledger(leader_max))?;
    } else if !leading {
        // A losing maximum moves no money, but it must be one the
        // challenger could have paid: nobody pushes prices with money they
        // do not have.
        let available = postings.wallet(cmd.bidder).balance;
        if available < max {
            return Err(Rejection::InsufficientFunds {
                available,
                required: max,
            }
            .into());
        }
    }

    let mut later = Vec::new();
    if !before.reserve_met {
        match auction.listing.policy.reserve_price {
            None => next.bidding.reserve_met = true,
            Some(reserve) if leader_max >= reserve => {
                price = price.max(reserve);
                next.bidding.reserve_met = true;
                later.push(PublicEvent::ReserveMet { price });
            }
            Some(_) => {}
        }
    }
    next.bidding.leader = Some(leader);
    next.bidding.max_bid = Some(leader_max);

    let mut public = Vec::new();
    let mut bid = None;
    if price != before.current_price || before.leader != Some(leader) {
        next.bidding.current_price = price;
        next.bidding.bid_count = next.bidding.bid_count.saturating_add(1);
        public.push(PublicEvent::BidPlaced {
            bidder: leader,
            amount: price,
            bid_count: next.bidding.bid_count,
            min_next_bid: next.min_next_bid(),
            auto: !leading,
        });
        bid = Some(Bid {
            id: BidId::UNASSIGNED,
            auction_id: auction.id,
            bidder: leader,
            amount: price,
            placed_at: now,
            seq: next.bidding.seq,
            auto: !leading,
        });
        if let Some(extended) = extend(&mut next, now) {
            later.push(extended);
        }
    }
    public.extend(later);
    if auction.buy_now_available() && !next.buy_now_available() {
        public.push(PublicEvent::BuyNowWithdrawn);
    }
    let outbid = outbid_notices(&released, leader, price);
    Ok(decision(next, bid, postings, public, outbid, now))
}

/// The refusals of [`place_bid`] that depend on the auction alone, not on
/// holds or wallets: amounts, the auction's phase, who may bid, the
/// minimum next bid. The engine asks this before locking any wallet, so a
/// stale bid on a hot auction costs one auction lock and nothing more.
pub fn check_bid(
    rules: Rules<'_>,
    auction: &Auction,
    cmd: &PlaceBid,
    now: Timestamp,
) -> Result<(), Rejection> {
    let amount = positive(rules, "amount", cmd.amount)?;
    if let Some(max) = cmd.max_amount {
        if positive(rules, "max_amount", max)? < amount {
            return Err(Rejection::MaxBelowAmount);
        }
    }
    check_live(auction, now)?;
    check_participant(rules, auction, cmd.bidder, cmd.bidder_region.as_ref())?;
    let min_next_bid = auction.min_next_bid();
    if amount < min_next_bid {
        return Err(Rejection::BidTooLow { min_next_bid });
    }
    Ok(())
}

/// Moves a soft-closing auction's end after a bid in its last window.
fn extend(next: &mut Auction, now: Timestamp) -> Option<PublicEvent> {
    let (window, extend_by, max_extensions) = next.listing.policy.close.soft()?;
    let in_window = now + window >= next.bidding.ends_at;
    let new_end = to_micros(now + extend_by);
    if !in_window || next.bidding.extensions >= max_extensions || new_end <= next.bidding.ends_at {
        return None;
    }
    next.bidding.ends_at = new_end;
    next.bidding.extensions += 1;
    Some(PublicEvent::Extended { ends_at: new_end })
}

/// Decides a buy-now purchase.
pub fn buy_now(
    rules: Rules<'_>,
    state: AuctionState<'_>,
    cmd: &BuyNow,
    now: Timestamp,
) -> Result<Decision, RuleError> {
    let auction = state.auction;
    check_live(auction, now)?;
    check_participant(rules, auction, cmd.buyer, cmd.buyer_region.as_ref())?;
    let price = match auction.listing.buy_now_price {
        Some(price) if auction.buy_now_available() => price,
        _ => return Err(Rejection::BuyNowUnavailable.into()),
    };

    let mut postings = Postings::new(now, state.wallets, state.holds);
    let released = postings.release_all(auction.id).map_err(ledger(price))?;
    postings
        .post(cmd.buyer, EntryKind::BuyNowDebit, price, Some(auction.id))
        .map_err(ledger(price))?;
    postings
        .post(
            auction.listing.seller,
            EntryKind::BuyNowCredit,
            price,
            Some(auction.id),
        )
        .map_err(ledger(price))?;

    let mut next = advance(auction);
    next.bidding.status = AuctionStatus::BoughtNow;
    next.bidding.current_price = price;
    next.bidding.leader = Some(cmd.buyer);
    next.bidding.max_bid = None;
    next.bidding.closed_at = Some(now);
    let public = vec![PublicEvent::BoughtNow {
        buyer: cmd.buyer,
        price,
    }];
    let mut private = outbid_notices(&released, cmd.buyer, price);
    private.push(PrivateNotice {
        user: cmd.buyer,
        event: PrivateEvent::Won { price },
    });
    Ok(decision(next, None, postings, public, private, now))
}

/// What a seller's own change needs: it is theirs, open, and not past its
/// end (after it, the closer settles it).
fn check_seller_running(
    auction: &Auction,
    seller: UserId,
    now: Timestamp,
) -> Result<(), RuleError> {
    if seller != auction.listing.seller {
        return Err(Rejection::NotSeller.into());
    }
    check_open(auction)?;
    if now >= auction.bidding.ends_at {
        return Err(Rejection::AuctionEnded {
            ended_at: auction.bidding.ends_at,
        }
        .into());
    }
    Ok(())
}

/// Decides a cancellation by the seller.
pub fn cancel(
    state: AuctionState<'_>,
    cmd: &CancelAuction,
    now: Timestamp,
) -> Result<Decision, RuleError> {
    let auction = state.auction;
    check_seller_running(auction, cmd.seller, now)?;
    if auction.bidding.leader.is_some() {
        return Err(Rejection::HasBids.into());
    }
    let postings = Postings::new(now, state.wallets, state.holds);
    let mut next = advance(auction);
    next.bidding.status = AuctionStatus::Cancelled;
    next.bidding.closed_at = Some(now);
    Ok(decision(
        next,
        None,
        postings,
        vec![PublicEvent::Cancelled],
        vec![],
        now,
    ))
}

/// Settles an auction whose end has passed: the winner's hold pays the
/// seller (any rest of the hold is released), or it ends unsold. `None`
/// when the auction is not due (still running, or already closed).
pub fn settle(state: AuctionState<'_>, now: Timestamp) -> Result<Option<Decision>, RuleError> {
    if !state.auction.is_due(now) {
        return Ok(None);
    }
    close(state, now, vec![]).map(Some)
}

/// Decides the seller's ending of a running auction now: it settles as
/// [`settle`] would have at its end, after an
/// [`EndedEarly`](PublicEvent::EndedEarly) event that records it in the
/// auction's history.
pub fn end_early(
    state: AuctionState<'_>,
    cmd: &EndEarly,
    now: Timestamp,
) -> Result<Decision, RuleError> {
    let auction = state.auction;
    check_seller_running(auction, cmd.seller, now)?;
    // Before its start there is nothing to settle: the seller cancels.
    if now <= auction.starts_at {
        return Err(Rejection::AuctionNotStarted {
            starts_at: auction.starts_at,
        }
        .into());
    }
    let mut shortened = auction.clone();
    shortened.bidding.ends_at = now;
    let state = AuctionState {
        auction: &shortened,
        ..state
    };
    close(state, now, vec![PublicEvent::EndedEarly { ends_at: now }])
}

/// Closes an auction now: the winner's hold pays the seller, or it ends
/// unsold; `first` events go before the outcome.
fn close(
    state: AuctionState<'_>,
    now: Timestamp,
    first: Vec<PublicEvent>,
) -> Result<Decision, RuleError> {
    let auction = state.auction;
    let mut postings = Postings::new(now, state.wallets, state.holds);
    let mut next = advance(auction);
    next.bidding.closed_at = Some(now);
    let (public, private) = match auction.bidding.leader {
        Some(winner) if auction.bidding.reserve_met => {
            let price = auction.bidding.current_price;
            postings
                .post(winner, EntryKind::SettlementDebit, price, Some(auction.id))
                .map_err(ledger(price))?;
            postings
                .post(
                    auction.listing.seller,
                    EntryKind::SaleCredit,
                    price,
                    Some(auction.id),
                )
                .map_err(ledger(price))?;
            next.bidding.status = AuctionStatus::Sold;
            (
                vec![PublicEvent::Sold { winner, price }],
                vec![PrivateNotice {
                    user: winner,
                    event: PrivateEvent::Won { price },
                }],
            )
        }
        Some(_) => {
            next.bidding.status = AuctionStatus::Unsold;
            (
                vec![PublicEvent::ReserveNotMet, PublicEvent::Unsold],
                vec![],
            )
        }
        None => {
            next.bidding.status = AuctionStatus::Unsold;
            (vec![PublicEvent::Unsold], vec![])
        }
    };
    // Whatever escrow remains goes back: the rest of the winner's maximum,
    // or the whole hold when the reserve was not met.
    postings
        .release_all(auction.id)
        .map_err(ledger(auction.bidding.current_price))?;
    let public = first.into_iter().chain(public).collect();
    Ok(decision(next, None, postings, public, private, now))
}

/// Decides a deposit.
pub fn deposit(
    rules: Rules<'_>,
    wallet: &Wallet,
    cmd: &Deposit,
    now: Timestamp,
) -> Result<WalletDecision, RuleError> {
    wallet_movement(rules, wallet, EntryKind::Deposit, cmd.amount, now)
}

/// Decides a withdrawal of available balance.
pub fn withdraw(
    rules: Rules<'_>,
    wallet: &Wallet,
    cmd: &Withdraw,
    now: Timestamp,
) -> Result<WalletDecision, RuleError> {
    wallet_movement(rules, wallet, EntryKind::Withdrawal, cmd.amount, now)
}

fn wallet_movement(
    rules: Rules<'_>,
    wallet: &Wallet,
    kind: EntryKind,
    amount: Money,
    now: Timestamp,
) -> Result<WalletDecision, RuleError> {
    let amount = positive(rules, "amount", amount)?;
    let mut postings = Postings::new(now, std::slice::from_ref(wallet), &[]);
    postings
        .post(wallet.user, kind, amount, None)
        .map_err(ledger(amount))?;
    let (mut wallets, mut entries, _) = postings.finish();
    match (wallets.pop(), entries.pop()) {
        (Some(wallet), Some(entry)) => Ok(WalletDecision { wallet, entry }),
        _ => Err(inconsistent("a posting left no entry")),
    }
}

/// A positive amount valid in the currency, or why `field` is not.
fn positive(rules: Rules<'_>, field: &'static str, amount: Money) -> Result<Money, Rejection> {
    rules
        .currency
        .check_positive(amount)
        .map_err(|reason| Rejection::InvalidAmount { field, reason })
}

fn check_open(auction: &Auction) -> Result<(), Rejection> {
    match auction.bidding.status {
        AuctionStatus::Open => Ok(()),
        AuctionStatus::Cancelled => Err(Rejection::AuctionCancelled),
        AuctionStatus::Sold | AuctionStatus::Unsold | AuctionStatus::BoughtNow => {
            Err(Rejection::AuctionEnded {
                ended_at: auction.bidding.closed_at.unwrap_or(auction.bidding.ends_at),
            })
        }
    }
}

fn check_live(auction: &Auction, now: Timestamp) -> Result<(), Rejection> {
    check_open(auction)?;
    if now < auction.starts_at {
        return Err(Rejection::AuctionNotStarted {
            starts_at: auction.starts_at,
        });
    }
    if now >= auction.bidding.ends_at {
        return Err(Rejection::AuctionEnded {
            ended_at: auction.bidding.ends_at,
        });
    }
    Ok(())
}

fn check_participant(
    rules: Rules<'_>,
    auction: &Auction,
    user: UserId,
    region: Option<&Region>,
) -> Result<(), Rejection> {
    if user == auction.listing.seller {
        return Err(Rejection::SellerCannotBid);
    }
    if let Scope::Local { region: local } = &auction.listing.scope {
        if !rules.region_policy.admits(local, region) {
            return Err(Rejection::RegionNotEligible {
                region: local.clone(),
            });
        }
    }
    Ok(())
}

/// The auction with its sequence number raised for one more change.
fn advance(auction: &Auction) -> Auction {
    let mut next = auction.clone();
    next.bidding.seq += 1;
    next
}

fn outbid_notices(released: &[Hold], new_leader: UserId, price: Money) -> Vec<PrivateNotice> {
    released
        .iter()
        .filter(|hold| hold.user != new_leader)
        .map(|hold| PrivateNotice {
            user: hold.user,
            event: PrivateEvent::Outbid { price },
        })
        .collect()
}

fn decision(
    auction: Auction,
    bid: Option<Bid>,
    postings: Postings,
    public: Vec<PublicEvent>,
    private: Vec<PrivateNotice>,
    now: Timestamp,
) -> Decision {
    let (wallets, entries, holds) = postings.finish();
    let event = Event {
        auction_id: auction.id,
        seq: auction.bidding.seq,
        at: now,
        local: matches!(auction.listing.scope, Scope::Local { .. }),
        public,
        private,
    };
    Decision {
        auction,
        bid,
        wallets,
        entries,
        holds,
        event,
    }
}

fn inconsistent(message: &str) -> RuleError {
    RuleError::Inconsistent(message.to_owned())
}

/// Turns a ledger refusal into the rejection a client sees.
fn ledger(required: Money) -> impl Fn(LedgerError) -> RuleError {
    move |error| match error {
        LedgerError::Insufficient { available } => Rejection::InsufficientFunds {
            available,
            required,
        }
        .into(),
        LedgerError::LimitExceeded => Rejection::BalanceLimit.into(),
        LedgerError::Inconsistent { .. } => RuleError::Inconsistent(error.to_string()),
    }
}

#[cfg(test)]
pub(crate) mod tests;
