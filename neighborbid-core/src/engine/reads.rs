//! The engine's reads: auctions, lists, wallets and events, each in a
//! read-only transaction (no lock, nothing written).

use crate::auction::{Auction, Bid};
use crate::engine::{AuctionView, Engine, WalletView};
use crate::error::{EngineError, Rejection};
use crate::event::Event;
use crate::ids::{AuctionId, UserId};
use crate::notify::Notifier;
use crate::store::{AuctionFilter, Outbox, Page, Queries, Store};

impl<S: Store, N: Notifier> Engine<S, N> {
    /// An auction with its latest bids (`bids` chooses which).
    pub async fn auction(&self, id: AuctionId, bids: Page) -> Result<AuctionView, EngineError> {
        let mut tx = self.inner.store.begin_read().await?;
        let auction = tx
            .get_auction(id)
            .await?
            .ok_or(Rejection::AuctionNotFound { auction_id: id })?;
        let bids = tx.auction_bids(id, bids).await?;
        Ok(AuctionView { auction, bids })
    }

    /// Auctions matching `filter`, in its order; its phase is judged at
    /// the engine's clock.
    pub async fn list_auctions(
        &self,
        filter: &AuctionFilter,
        page: Page,
    ) -> Result<Vec<Auction>, EngineError> {
        filter.check()?;
        let filter = self.at_now(filter);
        let mut tx = self.inner.store.begin_read().await?;
        Ok(tx.list_auctions(&filter, page).await?)
    }

    /// How many auctions match `filter` (as [`Engine::list_auctions`]).
    pub async fn count_auctions(&self, filter: &AuctionFilter) -> Result<u64, EngineError> {
        filter.check()?;
        let filter = self.at_now(filter);
        let mut tx = self.inner.store.begin_read().await?;
        Ok(tx.count_auctions(&filter).await?)
    }

    fn at_now(&self, filter: &AuctionFilter) -> AuctionFilter {
        AuctionFilter {
            now: self.now(),
            ..filter.clone()
        }
    }

    /// The auctions `seller` created, newest first.
    pub async fn user_auctions(
        &self,
        seller: UserId,
        page: Page,
    ) -> Result<Vec<Auction>, EngineError> {
        let filter = AuctionFilter {
            seller: Some(seller),
            ..AuctionFilter::default()
        };
        self.list_auctions(&filter, page).await
    }

    /// The bids `user` placed, newest first.
    pub async fn user_bids(&self, user: UserId, page: Page) -> Result<Vec<Bid>, EngineError> {
        let mut tx = self.inner.store.begin_read().await?;
        Ok(tx.user_bids(user, page).await?)
    }

    /// A wallet with its latest history (`history` chooses which) and open
    /// holds.
    pub async fn wallet(&self, user: UserId, history: Page) -> Result<WalletView, EngineError> {
        let mut tx = self.inner.store.begin_read().await?;
        Ok(WalletView {
            wallet: tx.get_wallet(user).await?,
            history: tx.wallet_history(user, history).await?,
            holds: tx.user_holds(user).await?,
        })
    }

    /// Committed events of an auction with `seq > after`, oldest first: for
    /// a client that noticed a gap, or a relay.
    pub async fn events_after(
        &self,
        id: AuctionId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<Event>, EngineError> {
        let mut tx = self.inner.store.begin_read().await?;
        Ok(tx.events_after(id, after, limit).await?)
    }
}
