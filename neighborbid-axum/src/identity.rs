//! Who is acting: the host application's accounts plug in here.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use axum::extract::{FromRef, FromRequestParts};
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
///
/// The host's own routes get the same caller with the [`SignedIn`] and
/// [`MaybeSignedIn`] extractors, from any state that gives an
/// `Arc<dyn Identity>` (axum's `FromRef`):
///
/// ```
/// use std::sync::Arc;
///
/// use axum::extract::FromRef;
/// use axum::http::request::Parts;
/// use axum::routing::get;
/// use neighborbid_axum::{async_trait, Actor, ApiError, Identity, SignedIn};
/// use neighborbid_core::UserId;
///
/// /// Users as a gateway in front of the app names them, in `X-User-Id`.
/// struct GatewayHeader;
///
/// #[async_trait]
/// impl Identity for GatewayHeader {
///     async fn identify(&self, request: &Parts) -> Result<Option<Actor>, ApiError> {
///         let Some(value) = request.headers.get("x-user-id") else {
///             return Ok(None); // anonymous: may read, not act
///         };
///         let id = value.to_str().ok().and_then(|id| id.parse().ok());
///         let user = id.ok_or_else(ApiError::unauthorized)?;
///         Ok(Some(Actor { user: UserId(user), region: None }))
///     }
/// }
///
/// #[derive(Clone)]
/// struct AppState {
///     identity: Arc<dyn Identity>,
/// }
///
/// impl FromRef<AppState> for Arc<dyn Identity> {
///     fn from_ref(state: &AppState) -> Self {
///         state.identity.clone()
///     }
/// }
///
/// async fn hello(SignedIn(me): SignedIn) -> String {
///     format!("hello, user {}", me.user)
/// }
///
/// let identity: Arc<dyn Identity> = Arc::new(GatewayHeader);
/// let routes: axum::Router = axum::Router::new()
///     .route("/hello", get(hello))
///     .with_state(AppState { identity: identity.clone() });
/// // The API takes the same identity: `Api::new(engine, hub, identity)`.
/// ```
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

/// The signed-in caller of a host's own route, by the same [`Identity`] as
/// the API's routes: anonymous requests get 401 `unauthorized`, invalid
/// credentials the identity's error. The state must give an
/// `Arc<dyn Identity>` through axum's `FromRef` (see [`Identity`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedIn(pub Actor);

/// The caller of a host's own route, if signed in (`None`: anonymous);
/// invalid credentials still get the identity's error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaybeSignedIn(pub Option<Actor>);

impl<S> FromRequestParts<S> for MaybeSignedIn
where
    S: Send + Sync,
    Arc<dyn Identity>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let identity = Arc::<dyn Identity>::from_ref(state);
        Ok(MaybeSignedIn(identity.identify(parts).await?))
    }
}

impl<S> FromRequestParts<S> for SignedIn
where
    S: Send + Sync,
    Arc<dyn Identity>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let MaybeSignedIn(actor) = MaybeSignedIn::from_request_parts(parts, state).await?;
        actor.map(SignedIn).ok_or_else(ApiError::unauthorized)
    }
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

    #[derive(Clone)]
    struct HostState {
        identity: Arc<dyn Identity>,
    }

    impl FromRef<HostState> for Arc<dyn Identity> {
        fn from_ref(state: &HostState) -> Self {
            state.identity.clone()
        }
    }

    #[tokio::test]
    async fn host_routes_get_the_same_caller() {
        let tokens = StaticTokens::new();
        let alice = Actor {
            user: UserId(2),
            region: None,
        };
        tokens.insert("t-alice", alice.clone());
        let state = HostState {
            identity: Arc::new(tokens),
        };
        let mut signed = request("/me", Some("Bearer t-alice"));
        let SignedIn(me) = SignedIn::from_request_parts(&mut signed, &state)
            .await
            .expect("signed in");
        assert_eq!(me, alice);
        let mut anonymous = request("/me", None);
        let maybe = MaybeSignedIn::from_request_parts(&mut anonymous, &state).await;
        assert_eq!(maybe.expect("anonymous is fine"), MaybeSignedIn(None));
        let refused = SignedIn::from_request_parts(&mut anonymous, &state).await;
        assert_eq!(refused.expect_err("401").code(), "unauthorized");
        let mut forged = request("/me", Some("Bearer forged"));
        let refused = MaybeSignedIn::from_request_parts(&mut forged, &state).await;
        assert_eq!(refused.expect_err("401").code(), "unauthorized");
    }
}
