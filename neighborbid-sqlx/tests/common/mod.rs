//! What the Postgres and SQLite tests share.

pub(crate) mod stored;
pub(crate) mod upgrade;

use neighborbid_core::testkit::{money, Harness, ALICE, BOB};
use neighborbid_core::{IdempotencyKey, PlaceBid, Store};

/// Statements the schema must refuse, each touching rows that
/// [`seed_rows`] wrote. The same SQL runs on both databases.
pub(crate) const REFUSED: &[(&str, &str)] = &[
    ("UPDATE wallets SET balance = '-1'", "a negative balance"),
    (
        "UPDATE wallets SET locked = '-0.01'",
        "a negative locked amount",
    ),
    ("UPDATE holds SET amount = '0'", "an empty hold"),
    ("UPDATE auctions SET status = 'paused'", "an unknown status"),
    (
        "UPDATE auctions SET current_price = '-5'",
        "a negative price",
    ),
    ("UPDATE ledger_entries SET amount = '1'", "changing history"),
    ("DELETE FROM ledger_entries", "deleting history"),
    ("UPDATE bids SET amount = '1'", "changing a bid"),
    ("DELETE FROM bids", "deleting a bid"),
    ("UPDATE outbox SET payload = '{}'", "changing an event"),
    ("DELETE FROM outbox", "deleting an open auction's event"),
    (
        "INSERT INTO idempotency (user_id, key, record) \
         SELECT user_id, key, record FROM idempotency",
        "a second record under one idempotency key",
    ),
    (
        "INSERT INTO holds (auction_id, user_id, amount) VALUES (999999, 2, '1')",
        "a hold on no auction",
    ),
    (
        "INSERT INTO bids (auction_id, bidder, amount, placed_at, seq) \
         SELECT auction_id, 999999, amount, placed_at, seq + 100 FROM bids",
        "a bid by no wallet",
    ),
];

/// Writes a row into every table through the engine: wallets, an auction,
/// bids, history, a hold, events and an idempotency record.
pub(crate) async fn seed_rows<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 500).await;
    h.fund(BOB, 500).await;
    let auction = h.create(h.national(100, 10)).await;
    h.bid(auction.id, ALICE, 100).await.expect("bid");
    let bid = PlaceBid {
        auction_id: auction.id,
        bidder: BOB,
        bidder_region: None,
        amount: money(110),
        max_amount: None,
    };
    let key = IdempotencyKey::new("seed").expect("key");
    h.engine.place_bid(bid, Some(key)).await.expect("bid");
}
