//! The HTTP routes: each one calls one engine method.

use axum::extract::{FromRequestParts, State};
use axum::http::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use neighborbid_core::{
    AuctionFilter, AuctionId, BuyNow, CancelAuction, CreateAuction, Deposit, EndEarly,
    IdempotencyKey, LedgerEntry, Listing, Money, Scope, ScopeFilter, Withdraw,
};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::extract::{Body, Path, Query};
use crate::identity::{MaybeSignedIn, SignedIn};
use crate::state::AppState;
use crate::wire::{
    AmountRequest, AuctionBody, AuctionDetail, BidBody, BidRequest, CreateAuctionRequest,
    ListQuery, PageBody, PageQuery, ScopeParam, ScopeRequest,
};

/// The `Idempotency-Key` header, if any.
pub(crate) struct IdemKey(Option<IdempotencyKey>);

impl<St: Send + Sync> FromRequestParts<St> for IdemKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &St) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(IdemKey(None));
        };
        let invalid = || {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
        };
        let text = value.to_str().map_err(|_| invalid())?;
        Ok(IdemKey(Some(
            IdempotencyKey::new(text).map_err(|_| invalid())?,
        )))
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn created<T: Serialize>(body: T) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}

pub(crate) async fn list_auctions(
    State(state): State<AppState>,
    MaybeSignedIn(caller): MaybeSignedIn,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<PageBody<AuctionBody>>> {
    let invalid = |message: &str| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message);
    let scope = match (query.scope, query.region) {
        (None, None) => None,
        (Some(ScopeParam::National), None) => Some(ScopeFilter::National),
        (Some(ScopeParam::National), Some(_)) => {
            return Err(invalid("region applies to local auctions only"))
        }
        (Some(ScopeParam::Local) | None, region) => Some(ScopeFilter::Local { region }),
    };
    let min_price = price(query.min_price.as_deref(), "min_price")?;
    let max_price = price(query.max_price.as_deref(), "max_price")?;
    if min_price.zip(max_price).is_some_and(|(min, max)| min > max) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_price_range",
            "min_price must not be above max_price",
        ));
    }
    let text = query.q.filter(|q| !q.trim().is_empty());
    if text.as_ref().is_some_and(|q| q.chars().count() > 200) {
        return Err(invalid("q is at most 200 characters"));
    }
    let filter = AuctionFilter {
        status: query.status,
        scope,
        seller: query.seller,
        text,
        category: query.category,
        min_price,
        max_price,
        phase: query.phase,
        sort: query.sort.unwrap_or_default(),
        ..AuctionFilter::default()
    };
    state.catalogue.check_filter(&filter)?;
    let page = PageQuery {
        offset: query.offset,
        limit: query.limit,
    }
    .page();
    let auctions = state.engine.list_auctions(&filter, page).await?;
    let total = state.engine.count_auctions(&filter).await?;
    let viewer = caller.map(|actor| actor.user);
    let items = auctions
        .iter()
        .map(|auction| AuctionBody::new(auction, viewer))
        .collect();
    Ok(Json(PageBody::counted(items, page, total)))
}

/// A price bound of a listing: a non-negative amount.
fn price(text: Option<&str>, field: &str) -> ApiResult<Option<Money>> {
    text.map(|text| {
        text.trim().parse::<Money>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_price_range",
                format!("{field} must be a non-negative amount like \"12.50\""),
            )
        })
    })
    .transpose()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DetailQuery {
    /// How many of the latest bids to include (default 20).
    #[serde(default)]
    bids: Option<u32>,
}

pub(crate) async fn get_auction(
    State(state): State<AppState>,
    MaybeSignedIn(caller): MaybeSignedIn,
    Path(id): Path<i64>,
    Query(query): Query<DetailQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let bids = neighborbid_core::Page::first(query.bids.unwrap_or(state.config.recent_bids));
    let view = state.engine.auction(AuctionId(id), bids).await?;
    let viewer = caller.map(|actor| actor.user);
    // The body depends on the change (seq) and on who looks (redaction).
    let etag = format!(
        "\"{}-{}-{}\"",
        id,
        view.auction.bidding.seq,
        viewer.map_or(0, |user| user.0)
    );
    let etag = HeaderValue::from_str(&etag).map_err(|_| ApiError::internal())?;
    let headers_out = [
        (ETAG, etag.clone()),
        (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    let unchanged = headers
        .get(IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag));
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, headers_out).into_response());
    }
    let detail = AuctionDetail {
        auction: AuctionBody::new(&view.auction, viewer),
        bids: view.bids,
        server_now: state.engine.now(),
    };
    Ok((headers_out, Json(detail)).into_response())
}

pub(crate) async fn auction_bids(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<PageBody<neighborbid_core::Bid>>> {
    let page = query.page();
    let view = state.engine.auction(AuctionId(id), page).await?;
    Ok(Json(PageBody::new(view.bids, page)))
}

pub(crate) async fn create_auction(
    State(state): State<AppState>,
    SignedIn(me): SignedIn,
    IdemKey(key): IdemKey,
    Body(body): Body<CreateAuctionRequest>,
) -> ApiResult<Response> {
    state.limiter.check(me.user)?;
    let scope = match body.scope {
        ScopeRequest::National => Scope::National,
        ScopeRequest::Local { region } => Scope::Local {
            region: region.or_else(|| me.region.clone()).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "region_required",
                    "a local auction needs a region (you have none)",
                )
            })?,
        },
    };
    let mut command = CreateAuction {
        listing: Listing {
            description: body.description,
            category: body.category,
            attributes: body.attributes,
            scope,
            buy_now_price: body.buy_now_price,
            ..Listing::new(me.user, body.title, body.start_price, body.policy)
        },
        starts_at: body.starts_at,
        ends_at: body.ends_at,
    };
    state.catalogue.check_listing(&me, &mut command)?;
    let auction = state.engine.create_auction(command, key).await?;
    Ok(created(AuctionBody::new(&auction, Some(me.user))))
}

pub(crate) async fn place_bid(
    State(state): State<AppState>,
    SignedIn(me): SignedIn,
    Path(id): Path<i64>,
    IdemKey(key): IdemKey,
    Body(body): Body<BidRequest>,
) -> ApiResult<Response> {
    let receipt = state.bid(&me, AuctionId(id), body, key).await?;
    Ok(created(BidBody::new(&receipt, me.user)))
}

/// One bid, as HTTP and the WebSocket both place it.
pub(crate) async fn buy_now(
    State(state): State<AppState>,
    SignedIn(me): SignedIn,
    Path(id): Path<i64>,
    IdemKey(key): IdemKey,
) -> ApiResult<Json<AuctionBody>> {
    state.limiter.check(me.user)?;
    let command = BuyNow {
        auction_id: AuctionId(id),
        buyer: me.user,
        buyer_region: me.region.clone(),
    };
    let auction = state.engine.buy_now(command, key).await?;
    Ok(Json(AuctionBody::new(&auction, Some(me.user))))
}

pub(crate) async fn cancel(
    State(state): State<AppState>,
    SignedIn(me): SignedIn,
    Path(id): Path<i64>,
    IdemKey(key): IdemKey,
) -> ApiResult<Json<AuctionBody>> {
    state.limiter.check(me.user)?;
    let command = CancelAuction {
        auction_id: AuctionId(id),
        seller: me.user,
    };
    let auction = state.engine.cancel_auction(command, key).await?;
    Ok(Json(AuctionBody::new(&auction, Some(me.user))))
}

pub(crate) async fn end_early(
    State(state): State<AppState>,
    SignedIn(me): SignedIn,
    Path(id): Path<i64>,
    IdemKey(key): IdemKey,
) -> ApiResult<Json<AuctionBody>> {
    if !state.config.end_early {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "end_early_disabled",
            "this site does not let sellers end auctions early",
        ));
    }
    state.limiter.check(me.user)?;
    let command = EndEarly {
        auction_id: AuctionId(id),
        seller: me.user,
    };
    let auction = state.engine.end_early(command, key).await?;
    Ok(Json(AuctionBody::new(&auction, Some(me.user))))
}

/// `GET /me/wallet`: balances, open holds and one page of history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletBody {
    /// Balance and locked (escrowed) amounts.
    pub wallet: neighborbid_core::Wallet,
    /// Open escrow holds; their sum is `wallet.locked`.
    pub holds: Vec<neighborbid_core::Hold>,
    /// History entries, newest first.
    pub history: PageBody<LedgerEntry>,
}

pub(crate) async fn my_wallet(
    State(state): State<AppState>,
    SignedIn(me): SignedIn,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<WalletBody>> {
    let page = query.page();
    let view = state.engine.wallet(me.user, page).await?;
    Ok(Json(WalletBody {
        wallet: view.wallet,
        holds: view.holds,
        history: PageBody::new(view.history, page),
    }))
}

pub(crate) async fn deposit(
    State(state): State<AppState>,
    SignedIn(me): SignedIn,
    IdemKey(key): IdemKey,
    Body(body): Body<AmountRequest>,
) -> ApiResult<Response> {
    state.limiter.check(me.user)?;
    let deposit = Deposit {
        user: me.user,
        amount: body.amount,
    };
    Ok(created(state.engine.deposit(deposit, key).await?))
}

pub(crate) async fn withdraw(
    State(state): State<AppState>,
    SignedIn(me): SignedIn,
    IdemKey(key): IdemKey,
    Body(body): Body<AmountRequest>,
) -> ApiResult<Response> {
    state.limiter.check(me.user)?;
    let withdrawal = Withdraw {
        user: me.user,
        amount: body.amount,
    };
    Ok(created(state.engine.withdraw(withdrawal, key).await?))
}

pub(crate) async fn my_bids(
    State(state): State<AppState>,
    SignedIn(me): SignedIn,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<PageBody<neighborbid_core::Bid>>> {
    let page = query.page();
    let bids = state.engine.user_bids(me.user, page).await?;
    Ok(Json(PageBody::new(bids, page)))
}

pub(crate) async fn my_auctions(
    State(state): State<AppState>,
    SignedIn(me): SignedIn,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<PageBody<AuctionBody>>> {
    let page = query.page();
    let auctions = state.engine.user_auctions(me.user, page).await?;
    let items = auctions
        .iter()
        .map(|auction| AuctionBody::new(auction, Some(me.user)))
        .collect();
    Ok(Json(PageBody::new(items, page)))
}
