//! Stored data outlives the code that wrote it. Rows written by the
//! version of 2026-12 are checked in (`tests/fixtures/`, one file per
//! database) with what the store read back from them then; each database's
//! test loads its rows into a fresh, migrated database and reads them back
//! through the store. A change to a stored format (a column's encoding, the
//! JSON of an event or an idempotency record) that cannot read them fails
//! here, instead of on a user's data.
//!
//! The expected reading is `Debug` text, not serde, so a change of the
//! serde layout cannot change the expectation along with the data.
//!
//! `NEIGHBORBID_BLESS_FIXTURES=1` rewrites both files from a scenario run
//! now: only for a new fixture set, never to make an old one pass.

use std::fmt::Write as _;
use std::path::PathBuf;

use chrono::TimeDelta;
use neighborbid_core::store::{AuctionStore, Outbox, Queries, WalletLedger};
use neighborbid_core::testkit::{bid_of, money, Harness, ALICE, BOB, CAROL, SELLER};
use neighborbid_core::{
    AuctionFilter, AuctionId, BuyNow, BuyNowPolicy, CancelAuction, ClosePolicy, Deposit, EndEarly,
    EventId, IdempotencyKey, Increment, Page, Region, Scope, Store, Transaction, UserId, Withdraw,
};

/// The tables, parents first (the order rows load in).
pub(crate) const TABLES: &[&str] = &[
    "wallets",
    "auctions",
    "bids",
    "ledger_entries",
    "holds",
    "outbox",
    "idempotency",
];

/// The fixture set a bless run writes: the format of today's code.
pub(crate) const SET: &str = "2026-12";

pub(crate) const USERS: [UserId; 4] = [ALICE, BOB, CAROL, SELLER];

/// The idempotency keys the scenario uses, by user.
const KEYS: &[(UserId, &str)] = &[
    (ALICE, "deposit"),
    (ALICE, "bid"),
    (BOB, "bid"),
    (BOB, "buy"),
    (CAROL, "withdraw"),
    (SELLER, "list"),
    (SELLER, "cancel"),
    (SELLER, "end"),
];

fn key(name: &str) -> Option<IdempotencyKey> {
    Some(IdempotencyKey::new(name).expect("a key"))
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A file of fixture set `set`.
pub(crate) fn fixture(set: &str, file: &str) -> PathBuf {
    fixtures().join(format!("{set}-{file}"))
}

/// Every fixture set checked in: each stays, and is checked, for good.
pub(crate) fn sets() -> Vec<String> {
    let mut sets: Vec<String> = std::fs::read_dir(fixtures())
        .expect("tests/fixtures")
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            Some(name.strip_suffix("-read-back.txt")?.to_owned())
        })
        .collect();
    sets.sort();
    assert!(sets.iter().any(|set| set == SET), "no fixture set {SET}");
    sets
}

/// Whether this run rewrites the fixtures.
pub(crate) fn blessing() -> bool {
    std::env::var("NEIGHBORBID_BLESS_FIXTURES").is_ok_and(|v| v == "1")
}

/// Writes set [`SET`] from `store`, on which [`write_every_kind`] ran:
/// its rows as `dump` (the file `<SET>-<database>.sql`) and its reading.
pub(crate) async fn bless<S: Store>(store: &S, database: &str, dump: String) {
    std::fs::write(fixture(SET, &format!("{database}.sql")), dump).expect("write the rows");
    let version = super::upgrade::latest_version(database).await;
    std::fs::write(fixture(SET, "schema.txt"), format!("{version}\n")).expect("write the schema");
    let reading = read_back(store).await;
    std::fs::write(fixture(SET, "read-back.txt"), reading).expect("write the reading");
}

/// The rows of `set` for `database`, as SQL.
pub(crate) fn rows(set: &str, database: &str) -> String {
    std::fs::read_to_string(fixture(set, &format!("{database}.sql"))).expect("the fixture rows")
}

/// Asserts that `store`, loaded with the rows of `set`, reads them back as
/// they were read when the set was written, but for fields added since.
pub(crate) async fn assert_reads_back<S: Store>(store: &S, set: &str) {
    let expected = std::fs::read_to_string(fixture(set, "read-back.txt")).expect("the reading");
    let reading = read_back(store).await;
    if let Err(difference) = reads_back_as(&expected, &reading) {
        panic!("fixture set {set}: {difference}");
    }
}

/// Whether `reading` is `expected` with, at most, fields added: a field a
/// later version added (a new column, read back as its default) is not in
/// an older set's reading, and everything that is must read back the
/// same. Field names are unique within a struct, so a changed value
/// cannot pass for an added field followed by the old one.
pub(crate) fn reads_back_as(expected: &str, reading: &str) -> Result<(), String> {
    let (expected, read): (Vec<&str>, Vec<&str>) =
        (expected.lines().collect(), reading.lines().collect());
    let (mut e, mut r) = (0, 0);
    while e < expected.len() {
        if read.get(r) == Some(&expected[e]) {
            (e, r) = (e + 1, r + 1);
            continue;
        }
        r = added_field(&read, r).ok_or_else(|| {
            format!(
                "line {} was {:?}, now reads {:?}",
                e + 1,
                expected[e],
                read.get(r).copied().unwrap_or("(the end)")
            )
        })?;
    }
    match read.get(r) {
        None => Ok(()),
        Some(line) => Err(format!("reads more than it did: {line:?}")),
    }
}

/// Where the field that starts at line `at` of a `{:#?}` text ends (the
/// next line's index), if a field starts there: `name: value,` on one
/// line, or `name: Type {` (or `(`, `[`) to its closing line.
fn added_field(lines: &[&str], at: usize) -> Option<usize> {
    let line = lines.get(at)?;
    let text = line.trim_start();
    let indent = &line[..line.len() - text.len()];
    let (name, _) = text.split_once(": ")?;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
        return None;
    }
    let Some(open) = text.chars().last().filter(|c| "{([".contains(*c)) else {
        return Some(at + 1);
    };
    let close = match open {
        '{' => '}',
        '(' => ')',
        _ => ']',
    };
    (at + 1..lines.len())
        .find(|&end| {
            lines[end]
                .strip_prefix(indent)
                .is_some_and(|rest| rest.starts_with(close))
        })
        .map(|end| end + 1)
}

/// Writes every kind of stored value through the engine: every auction
/// status, proxy and plain bids, holds, every kind of history entry, events
/// delivered and not, and an idempotency record of every receipt kind.
pub(crate) async fn write_every_kind<S: Store>(store: S) {
    let h = Harness::new(store);
    let engine = &h.engine;
    for user in [ALICE, BOB, CAROL] {
        h.fund(user, 1_000).await;
    }
    let deposit = Deposit {
        user: ALICE,
        amount: "12.34".parse().expect("money"),
    };
    engine
        .deposit(deposit, key("deposit"))
        .await
        .expect("deposit");
    let withdraw = Withdraw {
        user: CAROL,
        amount: money(100),
    };
    engine
        .withdraw(withdraw, key("withdraw"))
        .await
        .expect("withdraw");

    // Sold, with a proxy bid, a soft close and a ladder.
    let mut sold = h.national(100, 10);
    sold.listing.title = "Bicycle".to_owned();
    sold.listing.description = "Blue, 21 gears".to_owned();
    sold.listing.category = Some("sports".to_owned());
    sold.listing
        .attributes
        .insert("size".to_owned(), "M".to_owned());
    sold.listing.policy.increment = Increment::ebay_ladder();
    sold.listing.policy.reserve_price = Some(money(150));
    sold.listing.policy.close = ClosePolicy::Soft {
        window_secs: 60,
        extend_by_secs: 120,
        max_extensions: 3,
    };
    let sold = engine
        .create_auction(sold, key("list"))
        .await
        .expect("listing")
        .id;
    let mut proxy = bid_of(sold, ALICE, 120);
    proxy.max_amount = Some(money(300));
    engine
        .place_bid(proxy, key("bid"))
        .await
        .expect("proxy bid");
    let refused = engine.place_bid(bid_of(sold, BOB, 200), None).await;
    assert!(refused.is_err(), "the proxy outbids Bob: {refused:?}");
    engine
        .place_bid(bid_of(sold, BOB, 310), key("bid"))
        .await
        .expect("Bob outbids the proxy");

    // Bought now, locally, after a bid.
    let mut bought = h.national(50, 5);
    bought.listing.scope = Scope::Local {
        region: Region::new("seoul/mapo/hapjeong"),
    };
    bought.listing.buy_now_price = Some(money(400));
    bought.listing.policy.buy_now = BuyNowPolicy::UntilReserveMet;
    bought.listing.policy.reserve_price = Some(money(300));
    let bought = h.create(bought).await.id;
    let mut bid = bid_of(bought, CAROL, 50);
    bid.bidder_region = Some(Region::new("seoul/mapo/hapjeong"));
    engine.place_bid(bid, None).await.expect("bid");
    let buy = BuyNow {
        auction_id: bought,
        buyer: BOB,
        buyer_region: Some(Region::new("seoul/mapo/hapjeong")),
    };
    engine.buy_now(buy, key("buy")).await.expect("buy now");

    // Cancelled, ended early, unsold, and one still open with a hold.
    let cancelled = h.create(h.national(10, 1)).await.id;
    let cancel = CancelAuction {
        auction_id: cancelled,
        seller: SELLER,
    };
    engine
        .cancel_auction(cancel, key("cancel"))
        .await
        .expect("cancel");
    let ended = h.create(h.national(10, 1)).await.id;
    engine
        .place_bid(bid_of(ended, CAROL, 15), None)
        .await
        .expect("bid");
    h.clock.advance(TimeDelta::minutes(10));
    let end = EndEarly {
        auction_id: ended,
        seller: SELLER,
    };
    engine.end_early(end, key("end")).await.expect("end early");
    let mut unsold = h.national(10, 1);
    unsold.ends_at = h.now() + TimeDelta::minutes(30);
    h.create(unsold).await;
    let mut open = h.national(10, 1);
    open.ends_at = h.now() + TimeDelta::days(7);
    let open = h.create(open).await.id;
    engine
        .place_bid(bid_of(open, ALICE, 10), None)
        .await
        .expect("bid");

    h.clock.advance(TimeDelta::hours(2));
    let closed = engine.close_due_auctions(10).await.expect("close");
    assert_eq!(closed.len(), 2, "the sold and the unsold auction");

    // The relay delivered the first auction's events.
    let mut tx = engine.store().begin().await.expect("begin");
    let events: Vec<EventId> = tx
        .events_after(sold, 0, 100)
        .await
        .expect("events")
        .iter()
        .map(|event| event.id())
        .collect();
    tx.mark_delivered(&events, h.now())
        .await
        .expect("delivered");
    tx.commit().await.expect("commit");
}

/// Everything the store reads back, as `Debug` text.
pub(crate) async fn read_back<S: Store>(store: &S) -> String {
    let mut tx = store.begin().await.expect("begin");
    let mut text = String::new();
    let page = Page::first(100);
    let filter = AuctionFilter::default();
    let auctions = tx.list_auctions(&filter, page).await.expect("auctions");
    writeln!(text, "auctions: {auctions:#?}").ok();
    let ids: Vec<AuctionId> = auctions.iter().map(|auction| auction.id).collect();
    for id in ids {
        let bids = tx.auction_bids(id, page).await.expect("bids");
        let holds = tx.auction_holds(id).await.expect("holds");
        let events = tx.events_after(id, 0, 100).await.expect("events");
        writeln!(text, "auction {id}: bids {bids:#?}").ok();
        writeln!(text, "auction {id}: holds {holds:#?}").ok();
        writeln!(text, "auction {id}: events {events:#?}").ok();
    }
    let far = chrono::DateTime::<chrono::Utc>::MAX_UTC;
    let undelivered = tx.undelivered_events(far, 1_000).await.expect("outbox");
    let undelivered: Vec<EventId> = undelivered.iter().map(|event| event.id()).collect();
    writeln!(text, "undelivered: {undelivered:?}").ok();
    for user in USERS {
        let wallet = tx.get_wallet(user).await.expect("wallet");
        let history = tx.wallet_history(user, page).await.expect("history");
        writeln!(text, "user {user}: {wallet:#?}").ok();
        writeln!(text, "user {user}: history {history:#?}").ok();
    }
    for (user, name) in KEYS {
        let key = IdempotencyKey::new(*name).expect("key");
        let record = tx.load_idempotency(*user, &key).await.expect("record");
        writeln!(text, "user {user}, key {name}: {record:#?}").ok();
    }
    text
}
