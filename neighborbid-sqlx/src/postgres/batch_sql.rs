//! The statements of a batch of decisions on Postgres (one command's is a
//! batch of one): the parties' locks, the batch's reads, and its one write.

/// An auction's holds, and the wallets of their owners and of the users
/// `$2`, locked in ascending order (`PgTx::lock_parties`).
macro_rules! lock_parties_sql {
    () => {
        "\
WITH h AS (SELECT user_id, amount FROM holds WHERE auction_id = $1),
w AS (SELECT user_id, balance, locked FROM wallets
      WHERE user_id = ANY(ARRAY(SELECT user_id FROM h) || $2::bigint[])
      ORDER BY user_id FOR UPDATE)
SELECT 'hold', user_id, amount, NULL::numeric, NULL::text, NULL::jsonb FROM h
UNION ALL
SELECT 'wallet', user_id, balance, locked, NULL, NULL FROM w"
    };
}
pub(super) const LOCK_PARTIES: &str = lock_parties_sql!();

/// [`LOCK_PARTIES`] and the idempotency records under the keys `$3`,
/// `$4` (see `PgTx::batch_reads`).
pub(super) const BATCH_READS: &str = concat!(
    lock_parties_sql!(),
    "
UNION ALL
SELECT 'record', i.user_id, NULL, NULL, i.key, i.record
FROM UNNEST($3::bigint[], $4::text[]) AS k(user_id, key)
CROSS JOIN LATERAL (SELECT user_id, key, record FROM idempotency
                    WHERE user_id = k.user_id AND key = k.key LIMIT 1) AS i"
);

/// One field of each row, as an array parameter for `UNNEST`.
pub(super) fn column<'a, R, T>(rows: &[&'a R], field: impl Fn(&'a R) -> T) -> Vec<T> {
    rows.iter().map(|row| field(*row)).collect()
}

/// `UPDATE` of an auction's columns, bound by [`bind_auction`] as `$1..$20`,
/// and its id as `$21`.
macro_rules! update_auction_sql {
    () => {
        "UPDATE auctions SET seller = $1, title = $2, description = $3, scope = $4, \
         region = $5, start_price = $6, policy = $7, buy_now_price = $8, starts_at = $9, \
         ends_at = $10, status = $11, current_price = $12, leader = $13, max_bid = $14, \
         reserve_met = $15, extensions = $16, bid_count = $17, seq = $18, \
         created_at = $19, closed_at = $20 WHERE id = $21"
    };
}

/// Every row of a batch of decisions in one statement (the auction's last
/// state first, as `$1..$21`): the CTEs touch disjoint rows (one final
/// state per auction, wallet and hold), and
/// `WITH ORDINALITY` keeps history entries and events in order. A record's
/// receipt gets the id of its bid (matched by `seq`) at `receipt.bid.id`,
/// where serde puts it (`Receipt` is tagged by a `type` field); the
/// conformance suite's replays of keyed bids check that path.
pub(super) const WRITE_BATCH: &str = concat!(
    "WITH saved_auction AS (",
    update_auction_sql!(),
    " RETURNING id
), new_bids AS (
    INSERT INTO bids (auction_id, bidder, amount, placed_at, seq, auto)
    SELECT auction_id, bidder, amount, placed_at, seq, auto
    FROM UNNEST($22::bigint[], $23::bigint[], $24::numeric[], $25::timestamptz[], $26::bigint[],
                $27::boolean[]) WITH ORDINALITY
         AS b(auction_id, bidder, amount, placed_at, seq, auto, n)
    ORDER BY n
    RETURNING id, seq
), saved_wallets AS (
    UPDATE wallets SET balance = w.balance, locked = w.locked
    FROM UNNEST($28::bigint[], $29::numeric[], $30::numeric[]) AS w(user_id, balance, locked)
    WHERE wallets.user_id = w.user_id
    RETURNING wallets.user_id
), new_entries AS (
    INSERT INTO ledger_entries (user_id, kind, amount, auction_id, balance_after, locked_after, at)
    SELECT user_id, kind, amount, auction_id, balance_after, locked_after, at
    FROM UNNEST($31::bigint[], $32::text[], $33::numeric[], $34::bigint[], $35::numeric[],
                $36::numeric[], $37::timestamptz[]) WITH ORDINALITY
         AS e(user_id, kind, amount, auction_id, balance_after, locked_after, at, n)
    ORDER BY n
), closed_holds AS (
    DELETE FROM holds USING UNNEST($38::bigint[], $39::bigint[]) AS h(auction_id, user_id)
    WHERE holds.auction_id = h.auction_id AND holds.user_id = h.user_id
), open_holds AS (
    INSERT INTO holds (auction_id, user_id, amount)
    SELECT * FROM UNNEST($40::bigint[], $41::bigint[], $42::numeric[])
    ON CONFLICT (auction_id, user_id) DO UPDATE SET amount = EXCLUDED.amount
), new_events AS (
    INSERT INTO outbox (auction_id, seq, at, payload)
    SELECT auction_id, seq, at, payload
    FROM UNNEST($43::bigint[], $44::bigint[], $45::timestamptz[], $46::jsonb[]) WITH ORDINALITY
         AS o(auction_id, seq, at, payload, n)
    ORDER BY n
), new_records AS (
    INSERT INTO idempotency (user_id, key, record)
    SELECT r.user_id, r.key,
           CASE WHEN b.id IS NULL THEN r.record
                ELSE jsonb_set(r.record, '{receipt,bid,id}', to_jsonb(b.id)) END
    FROM UNNEST($47::bigint[], $48::text[], $49::jsonb[], $50::bigint[])
         AS r(user_id, key, record, bid_seq)
    LEFT JOIN new_bids b ON b.seq = r.bid_seq
)
SELECT (SELECT count(*) FROM saved_auction) AS auctions,
       (SELECT count(*) FROM saved_wallets) AS wallets,
       COALESCE((SELECT array_agg(id ORDER BY seq) FROM new_bids), '{}') AS bid_ids",
);
