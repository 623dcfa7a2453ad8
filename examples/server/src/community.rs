//! The site's community features, in its own tables beside the accounts:
//! questions and answers on auctions, watchlists with their notices
//! ("ending soon", "ended"), seller profiles, and users' public names.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use neighborbid_axum::extract::{Body, Path};
use neighborbid_axum::wire::AuctionBody;
use neighborbid_axum::ApiError;
use neighborbid_core::{
    rules::{plain_text, LAYOUT},
    Auction, AuctionFilter, AuctionId, AuctionStatus, Engine, Notifier, Page, Phase, Store, UserId,
};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::accounts::{database, now, Account};
use crate::Site;

/// Longest question, in characters.
pub(crate) const MAX_QUESTION: usize = 500;
/// Longest answer, in characters.
pub(crate) const MAX_ANSWER: usize = 1000;

/// Creates the tables if needed; `serial` is the dialect's auto-increment
/// primary key.
pub(crate) async fn create_tables(pool: &AnyPool, serial: &str) -> Result<(), sqlx::Error> {
    for statement in [
        format!(
            "CREATE TABLE IF NOT EXISTS questions (
                id {serial},
                auction_id BIGINT NOT NULL,
                asker_id BIGINT NOT NULL REFERENCES accounts (id),
                body TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                answer TEXT,
                answered_at BIGINT)"
        ),
        "CREATE INDEX IF NOT EXISTS questions_auction ON questions (auction_id, id)".to_owned(),
        "CREATE TABLE IF NOT EXISTS watchlist (
            account_id BIGINT NOT NULL REFERENCES accounts (id),
            auction_id BIGINT NOT NULL,
            created_at BIGINT NOT NULL,
            soon_sent BIGINT NOT NULL DEFAULT 0,
            end_sent BIGINT NOT NULL DEFAULT 0,
            PRIMARY KEY (account_id, auction_id))"
            .to_owned(),
        "CREATE INDEX IF NOT EXISTS watchlist_pending ON watchlist (end_sent, auction_id)"
            .to_owned(),
        format!(
            "CREATE TABLE IF NOT EXISTS notices (
                id {serial},
                account_id BIGINT NOT NULL REFERENCES accounts (id),
                auction_id BIGINT NOT NULL,
                kind TEXT NOT NULL,
                title TEXT NOT NULL,
                detail TEXT NOT NULL,
                created_at BIGINT NOT NULL)"
        ),
        "CREATE INDEX IF NOT EXISTS notices_account ON notices (account_id, id)".to_owned(),
    ] {
        sqlx::query(&statement).execute(pool).await?;
    }
    Ok(())
}

/// The signed-in account of a request, or 401.
pub(crate) async fn signed_in<S>(site: &Site<S>, parts: &Parts) -> Result<Account, ApiError> {
    let token = crate::accounts::session_token(parts).ok_or_else(ApiError::unauthorized)?;
    site.accounts
        .session(token)
        .await?
        .ok_or_else(ApiError::unauthorized)
}

/// The auction `id`, or 404 `auction_not_found`.
pub(crate) async fn auction<S: Store>(site: &Site<S>, id: i64) -> Result<Auction, ApiError> {
    Ok(site
        .engine
        .auction(AuctionId(id), Page::first(1))
        .await?
        .auction)
}

/// An insert's outcome where a row with the same key is as good as ours.
pub(crate) fn inserted_or_there(
    result: Result<sqlx::any::AnyQueryResult, sqlx::Error>,
) -> Result<(), ApiError> {
    match result {
        Err(sqlx::Error::Database(error)) if error.is_unique_violation() => Ok(()),
        other => other.map(|_| ()).map_err(database),
    }
}

/// Text of 1 to `max` characters (after trimming), with no control
/// characters but line breaks and tabs, or 400 `code`.
fn text(body: &str, max: usize, code: &str, what: &str) -> Result<String, ApiError> {
    let body = body.trim();
    if body.is_empty() || body.chars().count() > max || !plain_text(body, LAYOUT) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            code,
            format!("{what} is 1 to {max} characters, without control characters"),
        ));
    }
    Ok(body.to_owned())
}

/// `POST` bodies of questions and answers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TextBody {
    body: String,
}

/// A question with its answer, as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct Question {
    id: i64,
    auction_id: i64,
    asker: String,
    body: String,
    created_at: i64,
    answer: Option<String>,
    answered_at: Option<i64>,
}

const QUESTION_COLUMNS: &str = "q.id, q.auction_id, a.username AS asker, q.body, q.created_at, \
     q.answer, q.answered_at FROM questions q JOIN accounts a ON a.id = q.asker_id";

fn question(row: &AnyRow) -> Result<Question, ApiError> {
    Ok(Question {
        id: row.try_get("id").map_err(database)?,
        auction_id: row.try_get("auction_id").map_err(database)?,
        asker: row.try_get("asker").map_err(database)?,
        body: row.try_get("body").map_err(database)?,
        created_at: row.try_get("created_at").map_err(database)?,
        answer: row.try_get("answer").map_err(database)?,
        answered_at: row.try_get("answered_at").map_err(database)?,
    })
}

async fn find_question(pool: &AnyPool, id: i64) -> Result<Option<Question>, ApiError> {
    let row = sqlx::query(&format!("SELECT {QUESTION_COLUMNS} WHERE q.id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(database)?;
    row.as_ref().map(question).transpose()
}

/// `GET /site/auctions/{id}/questions`: oldest first.
pub(crate) async fn questions<S: Store>(
    State(site): State<Arc<Site<S>>>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    auction(&site, id).await?;
    let rows = sqlx::query(&format!(
        "SELECT {QUESTION_COLUMNS} WHERE q.auction_id = $1 ORDER BY q.id LIMIT 200"
    ))
    .bind(id)
    .fetch_all(site.accounts.pool())
    .await
    .map_err(database)?;
    let list = rows.iter().map(question).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(list).into_response())
}

/// `POST /site/auctions/{id}/questions`: any signed-in user asks.
pub(crate) async fn ask<S: Store>(
    State(site): State<Arc<Site<S>>>,
    Path(id): Path<i64>,
    parts: Parts,
    Body(body): Body<TextBody>,
) -> Result<Response, ApiError> {
    let account = signed_in(&site, &parts).await?;
    let body = text(&body.body, MAX_QUESTION, "invalid_question", "a question")?;
    auction(&site, id).await?;
    let row = sqlx::query(
        "INSERT INTO questions (auction_id, asker_id, body, created_at) \
         VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(id)
    .bind(account.id)
    .bind(body)
    .bind(now())
    .fetch_one(site.accounts.pool())
    .await
    .map_err(database)?;
    let question_id: i64 = row.try_get("id").map_err(database)?;
    let question = find_question(site.accounts.pool(), question_id)
        .await?
        .ok_or_else(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(question)).into_response())
}

/// `POST /site/questions/{id}/answer`: the auction's seller answers, once.
pub(crate) async fn answer<S: Store>(
    State(site): State<Arc<Site<S>>>,
    Path(id): Path<i64>,
    parts: Parts,
    Body(body): Body<TextBody>,
) -> Result<Response, ApiError> {
    let account = signed_in(&site, &parts).await?;
    let body = text(&body.body, MAX_ANSWER, "invalid_answer", "an answer")?;
    let pool = site.accounts.pool();
    let question = find_question(pool, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let auction = auction(&site, question.auction_id).await?;
    if auction.listing.seller != UserId(account.id) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_seller",
            "only the seller answers questions",
        ));
    }
    // The condition makes a second answer (even a concurrent one) a no-op.
    let updated = sqlx::query(
        "UPDATE questions SET answer = $1, answered_at = $2 WHERE id = $3 AND answer IS NULL",
    )
    .bind(body)
    .bind(now())
    .bind(id)
    .execute(pool)
    .await
    .map_err(database)?;
    if updated.rows_affected() == 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_answered",
            "this question has its answer",
        ));
    }
    let question = find_question(pool, id)
        .await?
        .ok_or_else(ApiError::internal)?;
    Ok(Json(question).into_response())
}

/// `PUT /site/watchlist/{auction}`: watch (again: no change).
pub(crate) async fn watch<S: Store>(
    State(site): State<Arc<Site<S>>>,
    Path(id): Path<i64>,
    parts: Parts,
) -> Result<Response, ApiError> {
    let account = signed_in(&site, &parts).await?;
    auction(&site, id).await?;
    let pool = site.accounts.pool();
    let watched =
        sqlx::query("SELECT 1 AS one FROM watchlist WHERE account_id = $1 AND auction_id = $2")
            .bind(account.id)
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err(database)?;
    if watched.is_none() {
        // A concurrent PUT of the same pair may win: the auction is watched.
        inserted_or_there(
            sqlx::query(
                "INSERT INTO watchlist (account_id, auction_id, created_at) VALUES ($1, $2, $3)",
            )
            .bind(account.id)
            .bind(id)
            .bind(now())
            .execute(pool)
            .await,
        )?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /site/watchlist/{auction}`: stop watching.
pub(crate) async fn unwatch<S: Store>(
    State(site): State<Arc<Site<S>>>,
    Path(id): Path<i64>,
    parts: Parts,
) -> Result<Response, ApiError> {
    let account = signed_in(&site, &parts).await?;
    sqlx::query("DELETE FROM watchlist WHERE account_id = $1 AND auction_id = $2")
        .bind(account.id)
        .bind(id)
        .execute(site.accounts.pool())
        .await
        .map_err(database)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /site/watchlist`: my watched auctions, latest watched first.
pub(crate) async fn watchlist<S: Store>(
    State(site): State<Arc<Site<S>>>,
    parts: Parts,
) -> Result<Response, ApiError> {
    let account = signed_in(&site, &parts).await?;
    let rows = sqlx::query(
        "SELECT auction_id FROM watchlist WHERE account_id = $1 \
         ORDER BY created_at DESC, auction_id DESC LIMIT 200",
    )
    .bind(account.id)
    .fetch_all(site.accounts.pool())
    .await
    .map_err(database)?;
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        let id: i64 = row.try_get("auction_id").map_err(database)?;
        let auction = auction(&site, id).await?;
        items.push(AuctionBody::new(&auction, Some(UserId(account.id))));
    }
    Ok(Json(serde_json::json!({ "items": items })).into_response())
}

/// A notice about a watched auction.
#[derive(Debug, Serialize)]
pub(crate) struct Notice {
    id: i64,
    auction_id: i64,
    kind: String,
    title: String,
    detail: String,
    created_at: i64,
}

/// `GET /site/notices`: my latest 50 notices, newest first.
pub(crate) async fn notices<S: Store>(
    State(site): State<Arc<Site<S>>>,
    parts: Parts,
) -> Result<Response, ApiError> {
    let account = signed_in(&site, &parts).await?;
    let rows = sqlx::query(
        "SELECT id, auction_id, kind, title, detail, created_at FROM notices \
         WHERE account_id = $1 ORDER BY id DESC LIMIT 50",
    )
    .bind(account.id)
    .fetch_all(site.accounts.pool())
    .await
    .map_err(database)?;
    let notice = |row: &AnyRow| -> Result<Notice, sqlx::Error> {
        Ok(Notice {
            id: row.try_get("id")?,
            auction_id: row.try_get("auction_id")?,
            kind: row.try_get("kind")?,
            title: row.try_get("title")?,
            detail: row.try_get("detail")?,
            created_at: row.try_get("created_at")?,
        })
    };
    let list = rows
        .iter()
        .map(notice)
        .collect::<Result<Vec<_>, _>>()
        .map_err(database)?;
    Ok(Json(serde_json::json!({ "items": list })).into_response())
}

/// The "ending soon" notice's text for an open auction with `left` to go,
/// if that is within `soon` (and not already past).
fn ending_soon(left: chrono::TimeDelta, soon: chrono::TimeDelta) -> Option<String> {
    let within = left > chrono::TimeDelta::zero() && left <= soon;
    // Whole minutes, rounded up: "about 1 min" for the last seconds.
    within.then(|| format!("ends in about {} min", (left.num_seconds() + 59) / 60))
}

/// Sends the watchers of each watched auction an "ending soon" notice once
/// it ends within `soon`, and an "ended" notice once it is closed. Each
/// watcher gets each notice once, even with several server processes: the
/// flag is claimed and the notice written in one transaction.
pub(crate) async fn send_watch_notices<S: Store, N: Notifier>(
    engine: &Engine<S, N>,
    pool: &AnyPool,
    soon: Duration,
) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    let pending: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT auction_id FROM watchlist WHERE end_sent = 0 ORDER BY auction_id LIMIT 500",
    )
    .fetch_all(pool)
    .await?;
    let mut sent = 0;
    for id in pending {
        let auction = match engine.auction(AuctionId(id), Page::first(1)).await {
            Ok(view) => view.auction,
            Err(error) => {
                tracing::warn!(auction = id, %error, "watched auction not readable");
                continue;
            }
        };
        let now = engine.now();
        let left = auction.bidding.ends_at - now;
        // "Ended" waits for the settlement, so it can tell the outcome.
        // Each notice claims its flag; "ended" also settles "soon", which
        // would come too late. (One assignment per column: Postgres refuses
        // two.)
        let (flag, claim, kind, detail) = if auction.bidding.status != AuctionStatus::Open {
            let claim = "end_sent = 1, soon_sent = 1";
            ("end_sent", claim, "ended", outcome(&auction))
        } else if let Some(detail) = ending_soon(left, chrono::TimeDelta::from_std(soon)?) {
            ("soon_sent", "soon_sent = 1", "ending_soon", detail)
        } else {
            continue;
        };
        let mut tx = pool.begin().await?;
        let claimed: Vec<i64> = sqlx::query_scalar(&format!(
            "UPDATE watchlist SET {claim} \
             WHERE auction_id = $1 AND {flag} = 0 RETURNING account_id"
        ))
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        for account in &claimed {
            sqlx::query(
                "INSERT INTO notices (account_id, auction_id, kind, title, detail, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(account)
            .bind(id)
            .bind(kind)
            .bind(&auction.listing.title)
            .bind(&detail)
            .bind(now.timestamp())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        sent += claimed.len();
    }
    Ok(sent)
}

fn outcome(auction: &Auction) -> String {
    match auction.bidding.status {
        AuctionStatus::Sold => format!("sold for {}", auction.bidding.current_price),
        AuctionStatus::BoughtNow => format!("bought now for {}", auction.bidding.current_price),
        AuctionStatus::Cancelled => "cancelled by the seller".to_owned(),
        AuctionStatus::Unsold | AuctionStatus::Open => "ended without a sale".to_owned(),
    }
}

/// `GET /site/users/{id}`: a user's name and neighbourhood, which the page
/// shows bidders by (the first NeighborBid's rooms named every bidder).
pub(crate) async fn user<S: Store>(
    State(site): State<Arc<Site<S>>>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    Ok(Json(account(&site, id).await?).into_response())
}

/// The account `id`, or 404.
async fn account<S: Store>(site: &Site<S>, id: i64) -> Result<Account, ApiError> {
    site.accounts
        .find(id)
        .await?
        .ok_or_else(ApiError::not_found)
}

/// `GET /site/sellers/{id}`: a seller, their open auctions (ending
/// soonest first) and how many items they sold.
pub(crate) async fn seller<S: Store>(
    State(site): State<Arc<Site<S>>>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let account = account(&site, id).await?;
    let mine = |status| AuctionFilter {
        seller: Some(UserId(id)),
        status: Some(status),
        ..AuctionFilter::default()
    };
    let open = AuctionFilter {
        sort: neighborbid_core::AuctionSort::EndingSoonest,
        ..mine(AuctionStatus::Open)
    };
    let now = site.engine.now();
    let open: Vec<AuctionBody> = site
        .engine
        .list_auctions(&open, Page::first(100))
        .await?
        .iter()
        .filter(|auction| Phase::of(auction, now) != Phase::Ended)
        .map(|auction| AuctionBody::new(auction, None))
        .collect();
    let sold = site
        .engine
        .count_auctions(&mine(AuctionStatus::Sold))
        .await?
        + site
            .engine
            .count_auctions(&mine(AuctionStatus::BoughtNow))
            .await?;
    Ok(Json(serde_json::json!({
        "seller": account,
        "open_auctions": open,
        "sold_count": sold,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[test]
    fn ending_soon_only_within_the_window_in_whole_minutes_rounded_up() {
        let soon = TimeDelta::minutes(10);
        let notice = |seconds| ending_soon(TimeDelta::seconds(seconds), soon);
        assert_eq!(notice(-1), None, "already over");
        assert_eq!(notice(0), None, "ending now: the ended notice will say");
        assert_eq!(notice(1).as_deref(), Some("ends in about 1 min"));
        assert_eq!(notice(60).as_deref(), Some("ends in about 1 min"));
        assert_eq!(notice(61).as_deref(), Some("ends in about 2 min"));
        assert_eq!(notice(600).as_deref(), Some("ends in about 10 min"));
        assert_eq!(notice(601), None, "not yet");
    }

    #[test]
    fn text_is_trimmed_and_holds_1_to_max_characters() {
        let check = |body: &str| text(body, 5, "invalid_question", "a question");
        assert_eq!(check("  héllo ").expect("five characters"), "héllo");
        for bad in ["", "   ", "sixsix", "a\u{0}b"] {
            let refused = check(bad).expect_err("refused");
            assert_eq!(refused.code(), "invalid_question", "{bad:?}");
        }
    }
}
