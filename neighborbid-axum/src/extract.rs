//! Extractors whose failures are [`ApiError`]s: a 4xx JSON body with a
//! stable code, as every API route answers. A host's own routes beside the
//! API can use them to answer the same way.

use axum::extract::{FromRequest, FromRequestParts};

use crate::error::ApiError;

/// A JSON body; a bad one is 400 `invalid_json` or `invalid_body`, 413
/// `payload_too_large` or 415 `unsupported_media_type`.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Body<T>(pub T);

/// A query string; a bad one is 400 `invalid_query`.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// Path parameters; a bad one (`/auctions/abc`, an id beyond `i64`) is 400
/// `invalid_path`.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);
