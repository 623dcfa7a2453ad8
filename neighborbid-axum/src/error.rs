//! Every failure as a JSON body with a stable machine `code`.
//!
//! | status | codes |
//! |---|---|
//! | 400 | `invalid_json`, `invalid_body`, `invalid_query`, `invalid_path`, `invalid_amount`, `invalid_auction`, `max_below_amount`, `invalid_idempotency_key`, `invalid_price_range`, `not_websocket` |
//! | 401 | `unauthorized` |
//! | 403 | `forbidden`, `not_seller`, `seller_cannot_bid`, `region_not_eligible` |
//! | 404 | `not_found`, `auction_not_found` |
//! | 405 | `method_not_allowed` |
//! | 413 | `payload_too_large` |
//! | 415 | `unsupported_media_type` |
//! | 422 | `idempotency_conflict`, `bid_too_low`, `outbid_by_proxy`, `insufficient_funds`, `auction_ended`, `auction_not_started`, `auction_cancelled`, `has_bids`, `buy_now_unavailable`, `max_not_raised`, `balance_limit` |
//! | 429 | `rate_limited` |
//! | 500 | `internal` (no details: they go to the log) |
//! | 503 | `unavailable`, `busy` (retry; `Retry-After` says when) |
//!
//! `idempotency_conflict` (422) is an `Idempotency-Key` used before for a
//! different request, as the IETF Idempotency-Key draft
//! (draft-ietf-httpapi-idempotency-key-header) says; its 409, for a request
//! still in flight, never happens here: a retry waits for the first
//! request's answer and gets it.
//!
//! `invalid_body` covers a body of the wrong shape: a missing or unknown
//! field, a wrong type, or an amount that is not a plain decimal string
//! (`"-5"`, `"1e3"`, `120` as a number, beyond the largest amount);
//! `invalid_amount` a well-formed amount the currency refuses (zero, too
//! many decimal places). The message says which field and why.

use std::any::Any;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use neighborbid_core::{EngineError, Rejection, StoreErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tower_http::catch_panic::CatchPanicLayer;

/// A failed request: an HTTP status and the JSON body sent with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

/// The JSON body of every error response (and of WebSocket error messages).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable machine name, such as `"bid_too_low"`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// Fields that help the client act, such as `min_next_bid`.
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

impl ApiError {
    /// An error with `status`, machine `code` and human `message`.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                code: code.to_owned(),
                message: message.into(),
                details: Map::new(),
            },
        }
    }

    /// Adds a detail field to the body.
    pub fn with(mut self, field: &str, value: impl Serialize) -> ApiError {
        let value = serde_json::to_value(value).unwrap_or(Value::Null);
        self.body.details.insert(field.to_owned(), value);
        self
    }

    /// 401: the request needs a signed-in user.
    pub fn unauthorized() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "sign in first")
    }

    /// 404 for a path that names nothing.
    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    /// 405 for a path that exists, asked with a method it does not take.
    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this path does not take that method",
        )
    }

    /// 500, with the cause kept out of the response.
    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The machine code.
    pub fn code(&self) -> &str {
        &self.body.code
    }

    /// The JSON body.
    pub fn body(&self) -> &ErrorBody {
        &self.body
    }
}

/// What a panicking handler's request gets from [`catch_panics`].
pub type PanicAnswer = fn(Box<dyn Any + Send + 'static>) -> Response;

/// A layer that answers a request whose handler panicked with 500
/// `internal`, as any other failure, instead of dropping the connection
/// without a word. The API's router has it; a host puts it on its own
/// routes too (the example server does).
pub fn catch_panics() -> CatchPanicLayer<PanicAnswer> {
    CatchPanicLayer::custom(|_| {
        tracing::error!("a request handler panicked");
        ApiError::internal().into_response()
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry = self.status == StatusCode::SERVICE_UNAVAILABLE
            || self.status == StatusCode::TOO_MANY_REQUESTS;
        // A `retry_after_seconds` detail says how long; otherwise 1 s.
        let seconds = (self.body.details.get("retry_after_seconds"))
            .and_then(Value::as_u64)
            .unwrap_or(1);
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if retry {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> ApiError {
        use Rejection as R;
        let status = match &rejection {
            R::AuctionNotFound { .. } => StatusCode::NOT_FOUND,
            R::InvalidAmount { .. }
            | R::InvalidAuction { .. }
            | R::InvalidQuery { .. }
            | R::MaxBelowAmount => StatusCode::BAD_REQUEST,
            R::NotSeller | R::SellerCannotBid | R::RegionNotEligible { .. } => {
                StatusCode::FORBIDDEN
            }
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let error = ApiError::new(status, rejection.code(), rejection.to_string());
        match rejection {
            R::AuctionNotFound { auction_id } => error.with("auction_id", auction_id),
            R::AuctionNotStarted { starts_at } => error.with("starts_at", starts_at),
            R::AuctionEnded { ended_at } => error.with("ended_at", ended_at),
            R::BidTooLow { min_next_bid } => error.with("min_next_bid", min_next_bid),
            R::RegionNotEligible { region } => error.with("region", region),
            R::InsufficientFunds {
                available,
                required,
            } => error
                .with("available", available)
                .with("required", required),
            R::InvalidAmount { field, reason } => error
                .with("field", field)
                .with("reason", reason.to_string()),
            R::MaxNotRaised { max } => error.with("max", max),
            R::OutbidByProxy {
                price,
                min_next_bid,
            } => error
                .with("price", price)
                .with("min_next_bid", min_next_bid),
            _ => error,
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> ApiError {
        match error {
            EngineError::Rejected(rejection) => rejection.into(),
            EngineError::IdempotencyConflict { key } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_conflict",
                "this Idempotency-Key was already used for a different request",
            )
            .with("key", key),
            EngineError::Store(store) if store.kind() == StoreErrorKind::Conflict => {
                tracing::warn!(error = %store, "gave up after repeated conflicts");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "too much contention right now; retry",
                )
            }
            EngineError::Store(store) if store.kind() == StoreErrorKind::Unavailable => {
                tracing::error!(error = %store, "store unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the service is temporarily unavailable; retry",
                )
            }
            other => {
                tracing::error!(error = %other, "request failed");
                ApiError::internal()
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        let (status, code) = match &rejection {
            JsonRejection::JsonSyntaxError(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            JsonRejection::MissingJsonContentType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            _ => (StatusCode::BAD_REQUEST, "invalid_body"),
        };
        ApiError::new(status, code, rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            rejection.body_text(),
        )
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            rejection.body_text(),
        )
    }
}

impl From<WebSocketUpgradeRejection> for ApiError {
    fn from(rejection: WebSocketUpgradeRejection) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_websocket",
            rejection.body_text(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use neighborbid_core::{Money, StoreError};

    /// The codes the module's table lists under `status`.
    fn documented(status: StatusCode) -> Vec<String> {
        let row = format!("//! | {} | ", status.as_u16());
        let line = include_str!("error.rs")
            .lines()
            .find(|line| line.starts_with(&row))
            .unwrap_or_else(|| panic!("no row for {status} in the table"));
        line.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn rejections_keep_their_code_status_and_the_fields_a_client_needs() {
        use neighborbid_core::{AuctionId, MoneyError, Region};
        use Rejection as R;
        let at = chrono::DateTime::UNIX_EPOCH;
        let m = Money::units;
        let cases: Vec<(Rejection, u16, &[&str])> = vec![
            (
                R::AuctionNotFound {
                    auction_id: AuctionId(7),
                },
                404,
                &["auction_id"],
            ),
            (R::AuctionNotStarted { starts_at: at }, 422, &["starts_at"]),
            (R::AuctionEnded { ended_at: at }, 422, &["ended_at"]),
            (R::AuctionCancelled, 422, &[]),
            (
                R::BidTooLow {
                    min_next_bid: m(130),
                },
                422,
                &["min_next_bid"],
            ),
            (R::SellerCannotBid, 403, &[]),
            (
                R::RegionNotEligible {
                    region: Region::new("seoul/mapo"),
                },
                403,
                &["region"],
            ),
            (
                R::InsufficientFunds {
                    available: m(5),
                    required: m(9),
                },
                422,
                &["available", "required"],
            ),
            (R::BalanceLimit, 422, &[]),
            (
                R::InvalidAmount {
                    field: "amount",
                    reason: MoneyError::Zero,
                },
                400,
                &["field", "reason"],
            ),
            (
                R::InvalidAuction {
                    reason: "no title".into(),
                },
                400,
                &[],
            ),
            (
                R::InvalidQuery {
                    reason: "bad sort".into(),
                },
                400,
                &[],
            ),
            (R::NotSeller, 403, &[]),
            (R::HasBids, 422, &[]),
            (R::BuyNowUnavailable, 422, &[]),
            (R::MaxBelowAmount, 400, &[]),
            (R::MaxNotRaised { max: m(200) }, 422, &["max"]),
            (
                R::OutbidByProxy {
                    price: m(150),
                    min_next_bid: m(160),
                },
                422,
                &["price", "min_next_bid"],
            ),
        ];
        for (rejection, status, fields) in cases {
            let code = rejection.code();
            let error = ApiError::from(EngineError::from(rejection));
            assert_eq!((error.status().as_u16(), error.code()), (status, code));
            assert!(
                documented(error.status()).contains(&code.to_owned()),
                "{code}"
            );
            let mut details: Vec<_> = error.body().details.keys().map(String::as_str).collect();
            let mut expected = fields.to_vec();
            // serde_json keeps insertion order when a crate asks it to.
            details.sort_unstable();
            expected.sort_unstable();
            assert_eq!(details, expected, "{code}");
        }
        let low = ApiError::from(Rejection::BidTooLow {
            min_next_bid: m(130),
        });
        assert_eq!(low.body().details["min_next_bid"], "130");
    }

    #[test]
    fn only_errors_worth_retrying_say_when() {
        let retry_after = |error: ApiError| {
            let response = error.into_response();
            let value = response.headers().get(header::RETRY_AFTER);
            value.map(|value| value.to_str().unwrap().to_owned())
        };
        let unavailable = StoreError::new(StoreErrorKind::Unavailable, "connection refused");
        let unavailable = ApiError::from(EngineError::Store(unavailable));
        assert_eq!(
            (unavailable.status().as_u16(), unavailable.code()),
            (503, "unavailable")
        );
        assert_eq!(retry_after(unavailable), Some("1".into()));
        let limited = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down");
        assert_eq!(retry_after(limited), Some("1".into()));
        assert_eq!(retry_after(ApiError::from(Rejection::HasBids)), None);
        assert_eq!(retry_after(ApiError::internal()), None);
    }

    #[test]
    fn store_failures_say_nothing_about_internals() {
        let error = ApiError::from(EngineError::Store(StoreError::new(
            StoreErrorKind::Other,
            "relation \"wallets\" does not exist",
        )));
        assert_eq!(error.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(error.body().message, "internal error");
        assert!(error.body().details.is_empty());
        let busy = ApiError::from(EngineError::Store(StoreError::conflict("deadlock")));
        assert_eq!((busy.status().as_u16(), busy.code()), (503, "busy"));
    }
}
