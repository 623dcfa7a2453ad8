-- The starting state for place_bid.sql, on a migrated NeighborBid
-- database: 64 rich wallets and :auctions open auctions, each led by
-- wallet 1 with its escrow held. Run with
--   psql -v auctions=1000 -f setup.sql
INSERT INTO wallets (user_id, balance, locked)
SELECT user_id, 1000000000000, 0 FROM generate_series(1, 64) AS user_id;

INSERT INTO auctions (seller, title, description, scope, start_price, policy, starts_at,
                      ends_at, status, current_price, leader, reserve_met, extensions,
                      bid_count, seq, created_at)
SELECT 0, 'pgbench', '', 'national', 10, '{}', now(), now() + interval '1 day', 'open',
       10, 1, true, 0, 0, 0, now()
FROM generate_series(1, :auctions);

INSERT INTO holds (auction_id, user_id, amount) SELECT id, 1, 10 FROM auctions;
UPDATE wallets SET balance = balance - 10 * (SELECT count(*) FROM auctions),
                   locked = 10 * (SELECT count(*) FROM auctions)
WHERE user_id = 1;
