-- What one accepted bid costs Postgres, statement for statement as the
-- engine does it without coalescing: lock the auction, read its holds,
-- lock both wallets in ascending order, refund the previous leader, hold
-- the new bid, two history rows, the hold rows, the bid row, the auction
-- row, the outbox event. Run by `loadgen --pgbench`, or by hand:
--   pgbench -n -M prepared -c 64 -j 2 -T 10 -D auctions=1 -f place_bid.sql
\set auction random(1, :auctions)
\set bidder random(1, 64)
BEGIN;
SELECT leader, current_price AS price, seq FROM auctions WHERE id = :auction FOR UPDATE \gset
SELECT user_id, amount FROM holds WHERE auction_id = :auction;
SELECT user_id FROM wallets WHERE user_id IN (:leader, :bidder) ORDER BY user_id FOR UPDATE;
UPDATE wallets SET balance = balance + :price, locked = locked - :price WHERE user_id = :leader;
UPDATE wallets SET balance = balance - (:price + 1), locked = locked + (:price + 1)
WHERE user_id = :bidder;
INSERT INTO ledger_entries (user_id, kind, amount, auction_id, balance_after, locked_after, at)
SELECT user_id, 'hold_release', :price, :auction, balance, locked, now()
FROM wallets WHERE user_id = :leader;
INSERT INTO ledger_entries (user_id, kind, amount, auction_id, balance_after, locked_after, at)
SELECT user_id, 'bid_hold', :price + 1, :auction, balance, locked, now()
FROM wallets WHERE user_id = :bidder;
DELETE FROM holds WHERE auction_id = :auction AND user_id = :leader;
INSERT INTO holds (auction_id, user_id, amount) VALUES (:auction, :bidder, :price + 1)
ON CONFLICT (auction_id, user_id) DO UPDATE SET amount = EXCLUDED.amount;
INSERT INTO bids (auction_id, bidder, amount, placed_at, seq, auto)
VALUES (:auction, :bidder, :price + 1, now(), :seq + 1, false);
UPDATE auctions SET current_price = :price + 1, leader = :bidder, bid_count = bid_count + 1,
                    seq = :seq + 1
WHERE id = :auction;
INSERT INTO outbox (auction_id, seq, at, payload) VALUES (:auction, :seq + 1, now(), '{}');
COMMIT;
