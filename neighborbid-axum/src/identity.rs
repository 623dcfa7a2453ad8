//! Who is acting: the host application's accounts plug in here.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use neighborbid_core::{Region, UserId};

use crate::error::ApiError;

/// The user a request acts for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// The user (and their wallet).
    pub user: UserId,
    /// Their neighbourhood, for local auctions.
    pub region: Option<Region>,
}

/// Tells who sent a request. The host implements it over its own account
/// system (session cookies, bearer tokens, a gateway's header...); the
/// router never takes a user id from a request body or path.
#[async_trait]
pub trait Identity: Send + Sync + 'static {
    /// The acting user: `Ok(None)` for a request without credentials
    /// (anonymous; reads only), an error (usually
    /// [`ApiError::unauthorized`]) for credentials that are present but
    /// invalid or expired.
    async fn identify(&self, request: &Parts) -> Result<Option<Actor>, ApiError>;
}

#[async_trait]
impl<I: Identity + ?Sized> Identity for Arc<I> {
    async fn identify(&self, request: &Parts) -> Result<Option<Actor>, ApiError> {
        (**self).identify(request).await
    }
}

/// The bearer token of a request: the `Authorization: Bearer ...` header
/// (the scheme in any case, as RFC 9110 says), or else, on a WebSocket
/// upgrade only, an `access_token` query parameter: browsers cannot set
/// headers on a WebSocket. A URL ends up in access logs, so a browser page
/// should rather rely on a cookie its host's [`Identity`] reads (the example
/// server's session cookie); plain HTTP requests never take a token from
/// the URL.
pub fn bearer_token(request: &Parts) -> Option<&str> {
    let header = request
        .headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim_start_matches(' '))
        .filter(|token| !token.is_empty());
    let upgrade = request
        .headers
        .get(axum::http::header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"));
    header.or_else(|| {
        request
            .uri
            .query()
            .filter(|_| upgrade)?
            .split('&')
            .find_map(|pair| pair.strip_prefix("access_token="))
    })
}

/// Bearer tokens registered by the host: for tests, scripts and service
/// accounts. Cheap to clone; clones share the tokens.
#[derive(Clone, Debug, Default)]
pub struct StaticTokens {
    tokens: Arc<RwLock<HashMap<String, Actor>>>,
}

impl StaticTokens {
    /// No tokens yet.
    pub fn new() -> StaticTokens {
        StaticTokens::default()
    }

    /// Lets `token` act as `actor`.
    pub fn insert(&self, token: impl Into<String>, actor: Actor) {
        self.write().insert(token.into(), actor);
    }

    /// Revokes `token`.
    pub fn remove(&self, token: &str) {
        self.write().remove(token);
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Actor>> {
        self.tokens.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Identity for StaticTokens {
    async fn identify(&self, request: &Parts) -> Result<Option<Actor>, ApiError> {
        let Some(token) = bearer_token(request) else {
            return Ok(None);
        };
        let tokens = self.tokens.read().unwrap_or_else(PoisonError::into_inner);
        match tokens.get(token) {
            Some(actor) => Ok(Some(actor.clone())),
            None => Err(ApiError::unauthorized()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, authorization: Option<&str>) -> Parts {
        let mut request = axum::http::Request::builder().uri(uri);
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        if uri.starts_with("/live") {
            request = request.header(axum::http::header::UPGRADE, "websocket");
        }
        request.body(()).expect("a request").into_parts().0
    }

    #[tokio::test]
    async fn static_tokens_identify_until_revoked() {
        let tokens = StaticTokens::new();
        let alice = Actor {
            user: UserId(2),
            region: None,
        };
        tokens.insert("t-alice", alice.clone());
        // Through an `Arc`, as a router holds it.
        let shared: Arc<dyn Identity> = Arc::new(tokens.clone());
        let with_header = request("/me", Some("Bearer t-alice"));
        let with_query = request("/live?x=1&access_token=t-alice", None);
        for parts in [&with_header, &with_query] {
            let actor = shared.identify(parts).await;
            assert_eq!(actor.expect("known"), Some(alice.clone()));
        }
        for scheme in ["bearer t-alice", "BEARER t-alice", "Bearer   t-alice"] {
            let actor = shared.identify(&request("/me", Some(scheme))).await;
            assert_eq!(actor.expect("known"), Some(alice.clone()), "{scheme}");
        }
        let plain_http = request("/me?access_token=t-alice", None);
        assert_eq!(bearer_token(&plain_http), None, "only on an upgrade");
        for other in ["Basic t-alice", "Bearert-alice", "Bearer ", "Bearer"] {
            let parts = request("/me", Some(other));
            assert_eq!(bearer_token(&parts), None, "{other}");
        }
        let anonymous = shared.identify(&request("/me", None)).await;
        assert_eq!(anonymous.expect("no credentials"), None);
        tokens.remove("t-alice");
        let revoked = shared.identify(&with_header).await.expect_err("revoked");
        assert_eq!(revoked.code(), "unauthorized");
    }
}
