//! What the API's handlers and sockets share: one concrete state type.

use std::sync::Arc;

use axum::extract::FromRef;
use neighborbid_core::{AuctionId, BidReceipt, Hub, IdempotencyKey, Page, PlaceBid};

use crate::error::ApiError;
use crate::identity::{Actor, Identity};
use crate::limit::Limiter;
use crate::service::Auctions;
use crate::wire::BidRequest;
use crate::ApiConfig;

/// What every handler shares.
pub(crate) struct Shared {
    pub(crate) engine: Arc<dyn Auctions>,
    pub(crate) hub: Hub,
    pub(crate) identity: Arc<dyn Identity>,
    pub(crate) config: ApiConfig,
    pub(crate) limiter: Limiter,
    pub(crate) observer: Arc<dyn crate::Observer>,
    pub(crate) catalogue: Arc<dyn crate::Catalogue>,
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
    /// The last event of each watched auction as sent to watchers without
    /// private notices: rendered once, shared by all of them.
    pub(crate) rendered: crate::ws::Rendered,
}

/// The router's state: cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState(pub(crate) Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The API's routes identify callers with the same extractors as a host's
/// own routes ([`SignedIn`](crate::SignedIn), [`MaybeSignedIn`](crate::MaybeSignedIn)).
impl FromRef<AppState> for Arc<dyn Identity> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.identity)
    }
}

impl Shared {
    /// The page of latest bids an auction's detail and snapshot show.
    pub(crate) fn recent_bids(&self) -> Page {
        Page::first(self.config.recent_bids)
    }

    /// A bid by `me`, from HTTP or a socket: rate-limited, observed.
    pub(crate) async fn bid(
        &self,
        me: &Actor,
        auction_id: AuctionId,
        body: BidRequest,
        key: Option<IdempotencyKey>,
    ) -> Result<BidReceipt, ApiError> {
        self.limiter.check(me.user)?;
        let started = std::time::Instant::now();
        let command = PlaceBid {
            auction_id,
            bidder: me.user,
            bidder_region: me.region.clone(),
            amount: body.amount,
            max_amount: body.max_amount,
        };
        let result = (self.engine.place_bid(command, key).await).map_err(ApiError::from);
        let refused = result.as_ref().err().map(ApiError::code);
        self.observer.bid_decided(refused, started.elapsed());
        result
    }
}
