//! The books, read straight from Postgres in one snapshot and held against
//! the money rules and against what the crowd was told. Each finding is a
//! line of text, so a soak can count them instead of stopping at the
//! first.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rust_decimal::Decimal;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Row};

use crate::load::Log;

/// A connection for reading the books, named so fault injection spares it.
pub(crate) async fn connect(url: &str) -> PgConnection {
    let options: PgConnectOptions = url.parse().expect("a database URL");
    options
        .application_name(CHECKER)
        .connect()
        .await
        .expect("the checker connects to Postgres")
}

/// The checker's `application_name`.
pub(crate) const CHECKER: &str = "neighborbid-faults-checker";

type Rows = Vec<sqlx::postgres::PgRow>;

/// Checks the books while the crowd is paused: money is conserved and
/// never negative, escrow matches holds, every answer the crowd got is in
/// the database exactly once and nothing else is, and every ended auction
/// is settled once.
pub(crate) async fn check(db: &mut PgConnection, log: &Log) -> Vec<String> {
    let mut found = Vec::new();
    let mut tx = db.begin().await.expect("a transaction");
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await
        .expect("a snapshot");

    // Money in wallets is what came in minus what went out, by the ledger
    // and by the answers.
    let totals = &rows(&mut tx,
        "SELECT (SELECT COALESCE(SUM(balance + locked), 0) FROM wallets) AS held,
                (SELECT COALESCE(SUM(amount), 0) FROM ledger_entries WHERE kind = 'deposit') AS deposited,
                (SELECT COALESCE(SUM(amount), 0) FROM ledger_entries WHERE kind = 'withdrawal') AS withdrawn,
                (SELECT COUNT(*) FROM wallets WHERE balance < 0 OR locked < 0) AS negative",
    )
    .await[0];
    let (held, deposited, withdrawn): (Decimal, Decimal, Decimal) = (
        totals.get("held"),
        totals.get("deposited"),
        totals.get("withdrawn"),
    );
    if held != deposited - withdrawn {
        found.push(format!(
            "wallets hold {held}, but the ledger says {deposited} in and {withdrawn} out"
        ));
    }
    let told: Decimal = log
        .accounts
        .values()
        .map(|account| {
            account.deposits.iter().sum::<Decimal>() - account.withdrawals.iter().sum::<Decimal>()
        })
        .sum();
    if held != told {
        found.push(format!("wallets hold {held}, but the answers say {told}"));
    }
    if totals.get::<i64, _>("negative") != 0 {
        found.push("a wallet is negative".into());
    }

    // Escrow is the open holds, and the history ends at the wallet.
    for row in rows(
        &mut tx,
        "SELECT w.user_id, w.balance, w.locked,
                (SELECT COALESCE(SUM(amount), 0) FROM holds h WHERE h.user_id = w.user_id) AS held,
                last.balance_after, last.locked_after
         FROM wallets w
         LEFT JOIN LATERAL (SELECT balance_after, locked_after FROM ledger_entries e
                            WHERE e.user_id = w.user_id ORDER BY id DESC LIMIT 1) last ON true",
    )
    .await
    {
        let user: i64 = row.get("user_id");
        let (balance, locked, held): (Decimal, Decimal, Decimal) =
            (row.get("balance"), row.get("locked"), row.get("held"));
        if locked != held {
            found.push(format!("user {user}: locked {locked}, open holds {held}"));
        }
        let last: (Option<Decimal>, Option<Decimal>) =
            (row.get("balance_after"), row.get("locked_after"));
        if last != (Some(balance), Some(locked)) && last != (None, None) {
            found.push(format!(
                "user {user}: wallet {balance}/{locked}, last history entry {last:?}"
            ));
        }
    }
    if !rows(
        &mut tx,
        "SELECT 1 FROM holds h JOIN auctions a ON a.id = h.auction_id WHERE a.status <> 'open'",
    )
    .await
    .is_empty()
    {
        found.push("a closed auction still holds money".into());
    }

    // Every acknowledged change is there once, and nothing else is: per
    // user, what the database holds equals what the answers said.
    let deposits: ByUser<Decimal> = by_user(
        &mut tx,
        "SELECT user_id, amount FROM ledger_entries WHERE kind = 'deposit'",
    )
    .await;
    let withdrawals: ByUser<Decimal> = by_user(
        &mut tx,
        "SELECT user_id, amount FROM ledger_entries WHERE kind = 'withdrawal'",
    )
    .await;
    let bids: ByUser<i64> = by_user(&mut tx, "SELECT bidder, id FROM bids WHERE NOT auto").await;
    let created: ByUser<i64> = by_user(&mut tx, "SELECT seller, id FROM auctions").await;
    let cancelled: ByUser<i64> = by_user(
        &mut tx,
        "SELECT seller, id FROM auctions WHERE status = 'cancelled'",
    )
    .await;
    let bought: ByUser<i64> = by_user(
        &mut tx,
        "SELECT leader, id FROM auctions WHERE status = 'bought_now'",
    )
    .await;
    let keys: ByUser<String> = by_user(&mut tx, "SELECT user_id, key FROM idempotency").await;
    let users: BTreeSet<i64> = [&deposits, &withdrawals]
        .into_iter()
        .flat_map(BTreeMap::keys)
        .chain(
            [&bids, &created, &cancelled, &bought]
                .into_iter()
                .flat_map(BTreeMap::keys),
        )
        .chain(keys.keys())
        .chain(log.accounts.keys())
        .copied()
        .collect();
    for user in users {
        let told = log.accounts.get(&user).cloned().unwrap_or_default();
        let mismatches = [
            mismatch("deposits", deposits.get(&user), &told.deposits),
            mismatch("withdrawals", withdrawals.get(&user), &told.withdrawals),
            mismatch("bids", bids.get(&user), &told.bids),
            mismatch("auctions", created.get(&user), &told.created),
            mismatch("cancellations", cancelled.get(&user), &told.cancelled),
            mismatch("buy-nows", bought.get(&user), &told.bought),
            mismatch("idempotency records", keys.get(&user), &told.effective_keys),
        ];
        found.extend(
            mismatches
                .into_iter()
                .flatten()
                .map(|m| format!("user {user}: {m}")),
        );
        for bid in bids.get(&user).into_iter().flatten() {
            if !told.bids.contains(bid) {
                found.extend(explain_bid(&mut tx, *bid, log).await);
            }
        }
    }
    let auto: i64 = rows(&mut tx, "SELECT COUNT(*) AS n FROM bids WHERE auto").await[0].get("n");
    if auto as u64 != log.proxy_answers {
        found.push(format!(
            "{auto} automatic bids stored, {} bids answered by a maximum",
            log.proxy_answers
        ));
    }

    // Every closed auction was settled once, as its status says.
    for row in rows(
        &mut tx,
        "SELECT a.id, a.status,
                COUNT(*) FILTER (WHERE e.kind = 'settlement_debit') AS debits,
                COUNT(*) FILTER (WHERE e.kind = 'sale_credit') AS credits,
                COUNT(*) FILTER (WHERE e.kind = 'buy_now_debit') AS buy_debits,
                COUNT(*) FILTER (WHERE e.kind = 'buy_now_credit') AS buy_credits
         FROM auctions a LEFT JOIN ledger_entries e ON e.auction_id = a.id
         GROUP BY a.id, a.status",
    )
    .await
    {
        let (id, status): (i64, String) = (row.get("id"), row.get("status"));
        let counts: [i64; 4] =
            ["debits", "credits", "buy_debits", "buy_credits"].map(|c| row.get(c));
        let expected = match status.as_str() {
            "sold" => [1, 1, 0, 0],
            "bought_now" => [0, 0, 1, 1],
            _ => [0; 4],
        };
        if counts != expected {
            found.push(format!(
                "auction {id} ({status}): settlement entries {counts:?}, expected {expected:?}"
            ));
        }
    }
    for row in rows(
        &mut tx,
        "SELECT a.id, COUNT(o.seq) AS closings FROM auctions a
         LEFT JOIN outbox o ON o.auction_id = a.id AND o.payload->'public' @> ANY (ARRAY[
             '[{\"type\": \"sold\"}]', '[{\"type\": \"unsold\"}]',
             '[{\"type\": \"bought_now\"}]', '[{\"type\": \"cancelled\"}]']::jsonb[])
         WHERE a.status <> 'open' GROUP BY a.id HAVING COUNT(o.seq) <> 1",
    )
    .await
    {
        found.push(format!(
            "auction {} closed with {} closing events",
            row.get::<i64, _>("id"),
            row.get::<i64, _>("closings")
        ));
    }
    tx.commit().await.expect("the snapshot ends");
    found
}

/// Waits (up to `limit`) until the closer has settled every auction that
/// ended before now; what is still open after that is a finding.
pub(crate) async fn await_settled(db: &mut PgConnection, limit: Duration) -> Vec<String> {
    let due = "SELECT id FROM auctions WHERE status = 'open' AND ends_at < $1";
    let now = chrono::Utc::now();
    let started = std::time::Instant::now();
    loop {
        let open: Vec<i64> = sqlx::query_scalar(due)
            .bind(now)
            .fetch_all(&mut *db)
            .await
            .expect("due auctions");
        if open.is_empty() {
            return Vec::new();
        }
        if started.elapsed() > limit {
            return vec![format!(
                "auctions {open:?} ended but were not settled within {limit:?}"
            )];
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn rows(tx: &mut PgConnection, sql: &str) -> Rows {
    sqlx::query(sql)
        .fetch_all(tx)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
}

/// What the database and the answers say about a bid nobody was told of.
async fn explain_bid(tx: &mut PgConnection, bid: i64, log: &Log) -> Vec<String> {
    let row = &rows(
        tx,
        &format!("SELECT row_to_json(b)::text AS bid FROM bids b WHERE id = {bid}"),
    )
    .await[0];
    let mut lines = vec![format!("  bid {}", row.get::<String, _>("bid"))];
    let records = rows(tx, &format!(
        "SELECT key, record::text AS record FROM idempotency WHERE record::text LIKE '%\"id\": {bid},%'"
    ))
    .await;
    for record in records {
        let key: String = record.get("key");
        lines.push(format!(
            "  recorded under {key}: {}\n  answered: {:?}",
            record.get::<String, _>("record"),
            log.by_key.lock().expect("answers by key").get(&key)
        ));
    }
    lines
}

type ByUser<T> = BTreeMap<i64, Vec<T>>;

/// The second column of `sql`'s rows, grouped by the first (a user id).
async fn by_user<T>(tx: &mut PgConnection, sql: &str) -> ByUser<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    rows(tx, sql)
        .await
        .iter()
        .fold(BTreeMap::new(), |mut map, row| {
            map.entry(row.get(0)).or_default().push(row.get(1));
            map
        })
}

/// How what is stored differs from what was answered, in any order
/// (amounts compare by value: `1.50` equals `1.5`).
fn mismatch<T: Ord + Clone + std::fmt::Debug>(
    what: &str,
    stored: Option<&Vec<T>>,
    answered: &[T],
) -> Option<String> {
    let mut stored = stored.cloned().unwrap_or_default();
    let mut answered = answered.to_vec();
    stored.sort();
    answered.sort();
    (stored != answered).then(|| format!("{what} stored {stored:?}, answered {answered:?}"))
}
