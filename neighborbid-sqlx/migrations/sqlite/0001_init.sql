-- NeighborBid schema (SQLite). Same tables and guarantees as the Postgres
-- schema. SQLite has no exact decimal type, so amounts are stored as
-- decimal TEXT ("12.50") and checked as such: a non-negative amount is a
-- plain decimal literal (digits and dots, no sign); a positive
-- one also has a non-zero digit. Times are INTEGER microseconds since the
-- Unix epoch (UTC), which compare and sort exactly.

CREATE TABLE wallets (
    user_id INTEGER PRIMARY KEY,
    balance TEXT NOT NULL DEFAULT '0'
            CHECK (balance GLOB '[0-9]*' AND balance NOT GLOB '*[^0-9.]*'),
    locked  TEXT NOT NULL DEFAULT '0'
            CHECK (locked GLOB '[0-9]*' AND locked NOT GLOB '*[^0-9.]*')
) STRICT;

CREATE TABLE auctions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    seller        INTEGER NOT NULL,
    title         TEXT NOT NULL,
    description   TEXT NOT NULL,
    scope         TEXT NOT NULL CHECK (scope IN ('local', 'national')),
    region        TEXT,
    start_price   TEXT NOT NULL CHECK (start_price GLOB '[0-9]*' AND start_price NOT GLOB '*[^0-9.]*'
                                       AND start_price GLOB '*[1-9]*'),
    policy        TEXT NOT NULL CHECK (json_valid(policy)),
    buy_now_price TEXT CHECK (buy_now_price GLOB '[0-9]*' AND buy_now_price NOT GLOB '*[^0-9.]*'
                              AND buy_now_price GLOB '*[1-9]*'),
    starts_at     INTEGER NOT NULL,
    ends_at       INTEGER NOT NULL CHECK (ends_at > starts_at),
    status        TEXT NOT NULL
                  CHECK (status IN ('open', 'sold', 'unsold', 'bought_now', 'cancelled')),
    current_price TEXT NOT NULL CHECK (current_price GLOB '[0-9]*' AND current_price NOT GLOB '*[^0-9.]*'),
    leader        INTEGER REFERENCES wallets (user_id),
    max_bid       TEXT CHECK (max_bid GLOB '[0-9]*' AND max_bid NOT GLOB '*[^0-9.]*'),
    reserve_met   INTEGER NOT NULL CHECK (reserve_met IN (0, 1)),
    extensions    INTEGER NOT NULL CHECK (extensions >= 0),
    bid_count     INTEGER NOT NULL CHECK (bid_count >= 0),
    seq           INTEGER NOT NULL CHECK (seq >= 0),
    created_at    INTEGER NOT NULL,
    closed_at     INTEGER,
    CHECK ((scope = 'local') = (region IS NOT NULL)),
    CHECK ((status = 'open') = (closed_at IS NULL))
) STRICT;
CREATE INDEX auctions_due ON auctions (ends_at, id) WHERE status = 'open';
CREATE INDEX auctions_seller ON auctions (seller, id);

CREATE TABLE bids (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    auction_id INTEGER NOT NULL REFERENCES auctions (id),
    bidder     INTEGER NOT NULL REFERENCES wallets (user_id),
    amount     TEXT NOT NULL CHECK (amount GLOB '[0-9]*' AND amount NOT GLOB '*[^0-9.]*'
                                    AND amount GLOB '*[1-9]*'),
    placed_at  INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    auto       INTEGER NOT NULL CHECK (auto IN (0, 1)),
    UNIQUE (auction_id, seq)
) STRICT;
CREATE INDEX bids_auction ON bids (auction_id, id);
CREATE INDEX bids_bidder ON bids (bidder, id);

CREATE TABLE ledger_entries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       INTEGER NOT NULL REFERENCES wallets (user_id),
    kind          TEXT NOT NULL CHECK (kind IN (
                      'deposit', 'withdrawal', 'bid_hold', 'hold_release',
                      'settlement_debit', 'sale_credit', 'buy_now_debit', 'buy_now_credit')),
    amount        TEXT NOT NULL CHECK (amount GLOB '[0-9]*' AND amount NOT GLOB '*[^0-9.]*'
                                       AND amount GLOB '*[1-9]*'),
    auction_id    INTEGER REFERENCES auctions (id),
    balance_after TEXT NOT NULL CHECK (balance_after GLOB '[0-9]*' AND balance_after NOT GLOB '*[^0-9.]*'),
    locked_after  TEXT NOT NULL CHECK (locked_after GLOB '[0-9]*' AND locked_after NOT GLOB '*[^0-9.]*'),
    at            INTEGER NOT NULL
) STRICT;
CREATE INDEX ledger_entries_user ON ledger_entries (user_id, id);

CREATE TABLE holds (
    auction_id INTEGER NOT NULL REFERENCES auctions (id),
    user_id    INTEGER NOT NULL REFERENCES wallets (user_id),
    amount     TEXT NOT NULL CHECK (amount GLOB '[0-9]*' AND amount NOT GLOB '*[^0-9.]*'
                                    AND amount GLOB '*[1-9]*'),
    PRIMARY KEY (auction_id, user_id)
) STRICT;
CREATE INDEX holds_user ON holds (user_id, auction_id);

CREATE TABLE outbox (
    auction_id   INTEGER NOT NULL REFERENCES auctions (id),
    seq          INTEGER NOT NULL CHECK (seq > 0),
    at           INTEGER NOT NULL,
    payload      TEXT NOT NULL,
    delivered_at INTEGER,
    PRIMARY KEY (auction_id, seq)
) STRICT;
CREATE INDEX outbox_undelivered ON outbox (auction_id, seq) WHERE delivered_at IS NULL;

CREATE TABLE idempotency (
    user_id    INTEGER NOT NULL,
    key        TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    record     TEXT NOT NULL,
    created_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    PRIMARY KEY (user_id, key)
) STRICT;

CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'table ledger_entries is append-only'); END;
CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'table ledger_entries is append-only'); END;
CREATE TRIGGER bids_no_update BEFORE UPDATE ON bids
BEGIN SELECT RAISE(ABORT, 'table bids is append-only'); END;
CREATE TRIGGER bids_no_delete BEFORE DELETE ON bids
BEGIN SELECT RAISE(ABORT, 'table bids is append-only'); END;
CREATE TRIGGER outbox_delivery_only BEFORE UPDATE ON outbox
WHEN NEW.auction_id IS NOT OLD.auction_id OR NEW.seq IS NOT OLD.seq
  OR NEW.at IS NOT OLD.at OR NEW.payload IS NOT OLD.payload
BEGIN SELECT RAISE(ABORT, 'outbox rows only gain a delivery time'); END;
CREATE TRIGGER outbox_no_delete BEFORE DELETE ON outbox
BEGIN SELECT RAISE(ABORT, 'outbox rows only gain a delivery time'); END;
