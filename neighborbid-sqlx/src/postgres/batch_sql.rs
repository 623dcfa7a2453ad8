//! The statements of a batch of decisions on Postgres (one command's is a
//! batch of one): the parties' locks, the batch's reads, and its one write.

use neighborbid_core::store::{BatchRecord, BatchWrites, StoredEvent};
use neighborbid_core::{Hold, StoreError};
use sqlx::types::Json;
use sqlx::{Encode, Postgres, Type};

use super::push_bidding_update;
use crate::codec::to_i64;
use crate::statement::{List, Statement};

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

/// Pushes `UNNEST(` and returns the list of its arrays.
pub(super) fn unnest<'s, 'q>(statement: &'s mut Statement<'q, Postgres>) -> List<'s, 'q, Postgres> {
    statement.push("UNNEST(");
    statement.list()
}

impl<'q> List<'_, 'q, Postgres> {
    /// Binds `values` as the next array of an [`unnest`], cast to
    /// `sql_type[]`.
    pub(super) fn array<T>(&mut self, values: Vec<T>, sql_type: &str) -> &mut Self
    where
        Vec<T>: 'q + Encode<'q, Postgres> + Type<Postgres>,
    {
        self.bind(values).push("::").push(sql_type).push("[]")
    }

    /// Closes the [`unnest`] and pushes `rest` (an alias, say).
    pub(super) fn then(&mut self, rest: &str) {
        self.push(")").push(rest);
    }
}

/// Every row of a batch of decisions in one statement, built piece by
/// piece (see [`Statement`]): the CTEs touch disjoint rows (one final
/// bidding state per auction, wallet and hold), and `WITH ORDINALITY`
/// keeps history entries and events in order. A record's receipt gets the id of its bid
/// (matched by `seq`) at `receipt.bid.id`, where serde puts it (`Receipt`
/// is tagged by a `type` field); the conformance suite's replays of keyed
/// bids check that path. The statement returns how many auction and
/// wallet rows it updated and the new bids' ids by `seq`.
pub(super) fn write_batch<'q>(
    writes: &BatchWrites<'q>,
    records: &[(&'q BatchRecord<'q>, Option<i64>)],
) -> Result<Statement<'q, Postgres>, StoreError> {
    let BatchWrites {
        auction,
        bids,
        wallets,
        entries,
        holds,
        events,
    } = writes;
    let seqs = |seqs: Vec<u64>| -> Result<Vec<i64>, StoreError> {
        seqs.into_iter().map(|seq| to_i64(seq, "seq")).collect()
    };
    let (closed, open): (Vec<&Hold>, Vec<&Hold>) =
        holds.iter().partition(|hold| hold.amount.is_zero());
    let mut query = Statement::new("WITH saved_auction AS (");
    push_bidding_update(&mut query, auction)?;
    query.push(
        " RETURNING id
), new_bids AS (
    INSERT INTO bids (auction_id, bidder, amount, placed_at, seq, auto)
    SELECT auction_id, bidder, amount, placed_at, seq, auto FROM ",
    );
    unnest(&mut query)
        .array(column(bids, |b| b.auction_id.0), "bigint")
        .array(column(bids, |b| b.bidder.0), "bigint")
        .array(column(bids, |b| b.amount.amount()), "numeric")
        .array(column(bids, |b| b.placed_at), "timestamptz")
        .array(seqs(column(bids, |b| b.seq))?, "bigint")
        .array(column(bids, |b| b.auto), "boolean")
        .then(
            " WITH ORDINALITY AS b(auction_id, bidder, amount, placed_at, seq, auto, n)
    ORDER BY n
    RETURNING id, seq
), saved_wallets AS (
    UPDATE wallets SET balance = w.balance, locked = w.locked FROM ",
        );
    unnest(&mut query)
        .array(column(wallets, |w| w.user.0), "bigint")
        .array(column(wallets, |w| w.balance.amount()), "numeric")
        .array(column(wallets, |w| w.locked.amount()), "numeric")
        .then(
            " AS w(user_id, balance, locked)
    WHERE wallets.user_id = w.user_id
    RETURNING wallets.user_id
), new_entries AS (
    INSERT INTO ledger_entries (user_id, kind, amount, auction_id, balance_after, locked_after, at)
    SELECT user_id, kind, amount, auction_id, balance_after, locked_after, at FROM ",
        );
    unnest(&mut query)
        .array(column(entries, |e| e.user.0), "bigint")
        .array(column(entries, |e| e.kind.as_str()), "text")
        .array(column(entries, |e| e.amount.amount()), "numeric")
        .array(column(entries, |e| e.auction_id.map(|id| id.0)), "bigint")
        .array(column(entries, |e| e.balance_after.amount()), "numeric")
        .array(column(entries, |e| e.locked_after.amount()), "numeric")
        .array(column(entries, |e| e.at), "timestamptz")
        .then(
            " WITH ORDINALITY
         AS e(user_id, kind, amount, auction_id, balance_after, locked_after, at, n)
    ORDER BY n
), closed_holds AS (
    DELETE FROM holds USING ",
        );
    unnest(&mut query)
        .array(column(&closed, |h| h.auction_id.0), "bigint")
        .array(column(&closed, |h| h.user.0), "bigint")
        .then(
            " AS h(auction_id, user_id)
    WHERE holds.auction_id = h.auction_id AND holds.user_id = h.user_id
), open_holds AS (
    INSERT INTO holds (auction_id, user_id, amount) SELECT * FROM ",
        );
    unnest(&mut query)
        .array(column(&open, |h| h.auction_id.0), "bigint")
        .array(column(&open, |h| h.user.0), "bigint")
        .array(column(&open, |h| h.amount.amount()), "numeric")
        .then(
            "
    ON CONFLICT (auction_id, user_id) DO UPDATE SET amount = EXCLUDED.amount
), new_events AS (
    INSERT INTO outbox (auction_id, seq, at, payload)
    SELECT auction_id, seq, at, payload FROM ",
        );
    unnest(&mut query)
        .array(column(events, |e| e.auction_id.0), "bigint")
        .array(seqs(column(events, |e| e.seq))?, "bigint")
        .array(column(events, |e| e.at), "timestamptz")
        .array(column(events, |e| Json(StoredEvent::from(e))), "jsonb")
        .then(
            " WITH ORDINALITY AS o(auction_id, seq, at, payload, n)
    ORDER BY n
), new_records AS (
    INSERT INTO idempotency (user_id, key, record)
    SELECT r.user_id, r.key,
           CASE WHEN b.id IS NULL THEN r.record
                ELSE jsonb_set(r.record, '{receipt,bid,id}', to_jsonb(b.id)) END
    FROM ",
        );
    let records: Vec<&(&BatchRecord, Option<i64>)> = records.iter().collect();
    unnest(&mut query)
        .array(column(&records, |(r, _)| r.user.0), "bigint")
        .array(column(&records, |(r, _)| r.key.as_str()), "text")
        .array(column(&records, |(r, _)| Json(&r.record)), "jsonb")
        .array(column(&records, |(_, bid_seq)| *bid_seq), "bigint")
        .then(
            " AS r(user_id, key, record, bid_seq)
    LEFT JOIN new_bids b ON b.seq = r.bid_seq
)
SELECT (SELECT count(*) FROM saved_auction) AS auctions,
       (SELECT count(*) FROM saved_wallets) AS wallets,
       COALESCE((SELECT array_agg(id ORDER BY seq) FROM new_bids), '{}') AS bid_ids",
        );
    Ok(query)
}
