-- NeighborBid schema (Postgres). The database enforces what must never
-- break even if application code is wrong: amounts are exact NUMERIC and
-- never negative, idempotency keys are unique per user, rows reference what
-- they belong to, and history is append-only.

CREATE TABLE wallets (
    user_id BIGINT PRIMARY KEY,
    balance NUMERIC NOT NULL DEFAULT 0 CHECK (balance >= 0),
    locked  NUMERIC NOT NULL DEFAULT 0 CHECK (locked >= 0)
);

CREATE TABLE auctions (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seller        BIGINT NOT NULL,
    title         TEXT NOT NULL,
    description   TEXT NOT NULL,
    scope         TEXT NOT NULL CHECK (scope IN ('local', 'national')),
    region        TEXT,
    start_price   NUMERIC NOT NULL CHECK (start_price > 0),
    -- Increment, reserve, close and buy-now rules (core's AuctionPolicy);
    -- fixed at creation.
    policy        JSONB NOT NULL,
    buy_now_price NUMERIC CHECK (buy_now_price > 0),
    starts_at     TIMESTAMPTZ NOT NULL,
    ends_at       TIMESTAMPTZ NOT NULL CHECK (ends_at > starts_at),
    status        TEXT NOT NULL
                  CHECK (status IN ('open', 'sold', 'unsold', 'bought_now', 'cancelled')),
    current_price NUMERIC NOT NULL CHECK (current_price >= 0),
    leader        BIGINT REFERENCES wallets (user_id),
    -- The leader's maximum, held in escrow; the price never exceeds it.
    max_bid       NUMERIC CHECK (max_bid >= current_price),
    reserve_met   BOOLEAN NOT NULL,
    extensions    BIGINT NOT NULL CHECK (extensions >= 0),
    bid_count     BIGINT NOT NULL CHECK (bid_count >= 0),
    seq           BIGINT NOT NULL CHECK (seq >= 0),
    created_at    TIMESTAMPTZ NOT NULL,
    closed_at     TIMESTAMPTZ,
    CHECK ((scope = 'local') = (region IS NOT NULL)),
    CHECK ((status = 'open') = (closed_at IS NULL))
);
-- The closer's queue: open auctions by end time.
CREATE INDEX auctions_due ON auctions (ends_at, id) WHERE status = 'open';
CREATE INDEX auctions_seller ON auctions (seller, id);

CREATE TABLE bids (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    auction_id BIGINT NOT NULL REFERENCES auctions (id),
    bidder     BIGINT NOT NULL REFERENCES wallets (user_id),
    amount     NUMERIC NOT NULL CHECK (amount > 0),
    placed_at  TIMESTAMPTZ NOT NULL,
    seq        BIGINT NOT NULL,
    auto       BOOLEAN NOT NULL,
    UNIQUE (auction_id, seq)
);
CREATE INDEX bids_auction ON bids (auction_id, id);
CREATE INDEX bids_bidder ON bids (bidder, id);

-- Wallet history: one row per money movement, with the wallet after it.
CREATE TABLE ledger_entries (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       BIGINT NOT NULL REFERENCES wallets (user_id),
    kind          TEXT NOT NULL CHECK (kind IN (
                      'deposit', 'withdrawal', 'bid_hold', 'hold_release',
                      'settlement_debit', 'sale_credit', 'buy_now_debit', 'buy_now_credit')),
    amount        NUMERIC NOT NULL CHECK (amount > 0),
    auction_id    BIGINT REFERENCES auctions (id),
    balance_after NUMERIC NOT NULL CHECK (balance_after >= 0),
    locked_after  NUMERIC NOT NULL CHECK (locked_after >= 0),
    at            TIMESTAMPTZ NOT NULL
);
CREATE INDEX ledger_entries_user ON ledger_entries (user_id, id);

-- Escrow: the amount a user has locked on an auction. A closed hold is
-- deleted, so every row is open.
CREATE TABLE holds (
    auction_id BIGINT NOT NULL REFERENCES auctions (id),
    user_id    BIGINT NOT NULL REFERENCES wallets (user_id),
    amount     NUMERIC NOT NULL CHECK (amount > 0),
    PRIMARY KEY (auction_id, user_id)
);
CREATE INDEX holds_user ON holds (user_id, auction_id);

-- Events, written in the transaction of their change; a relay delivers the
-- ones not yet delivered.
CREATE TABLE outbox (
    auction_id   BIGINT NOT NULL REFERENCES auctions (id),
    seq          BIGINT NOT NULL CHECK (seq > 0),
    at           TIMESTAMPTZ NOT NULL,
    payload      JSONB NOT NULL,
    delivered_at TIMESTAMPTZ,
    PRIMARY KEY (auction_id, seq)
);
CREATE INDEX outbox_undelivered ON outbox (auction_id, seq) WHERE delivered_at IS NULL;

CREATE TABLE idempotency (
    user_id    BIGINT NOT NULL,
    key        TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    record     JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

CREATE FUNCTION neighborbid_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'table % is append-only', TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END;
$$;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION neighborbid_append_only();
CREATE TRIGGER bids_append_only BEFORE UPDATE OR DELETE ON bids
    FOR EACH ROW EXECUTE FUNCTION neighborbid_append_only();

-- An outbox row only ever gains its delivery time.
CREATE FUNCTION neighborbid_outbox_delivery_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.auction_id <> OLD.auction_id OR NEW.seq <> OLD.seq
       OR NEW.at <> OLD.at OR NEW.payload <> OLD.payload THEN
        RAISE EXCEPTION 'outbox rows only gain a delivery time'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER outbox_delivery_only BEFORE UPDATE OR DELETE ON outbox
    FOR EACH ROW EXECUTE FUNCTION neighborbid_outbox_delivery_only();
