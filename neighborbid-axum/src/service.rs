//! The engine as the API's handlers see it: one object-safe trait, so the
//! router's state is one concrete type, whatever the store and notifier.

use async_trait::async_trait;
use neighborbid_core::{
    Auction, AuctionFilter, AuctionId, AuctionView, Bid, BidReceipt, BuyNow, CancelAuction,
    CreateAuction, Deposit, EndEarly, Engine, EngineError, IdempotencyKey, LedgerEntry, Notifier,
    Page, PlaceBid, Store, Timestamp, UserId, WalletView, Withdraw,
};

/// The commands and reads the API offers, each as the engine's method of
/// the same name.
#[async_trait]
pub(crate) trait Auctions: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
    async fn create_auction(
        &self,
        cmd: CreateAuction,
        key: Option<IdempotencyKey>,
    ) -> Result<Auction, EngineError>;
    async fn place_bid(
        &self,
        cmd: PlaceBid,
        key: Option<IdempotencyKey>,
    ) -> Result<BidReceipt, EngineError>;
    async fn buy_now(
        &self,
        cmd: BuyNow,
        key: Option<IdempotencyKey>,
    ) -> Result<Auction, EngineError>;
    async fn cancel_auction(
        &self,
        cmd: CancelAuction,
        key: Option<IdempotencyKey>,
    ) -> Result<Auction, EngineError>;
    async fn end_early(
        &self,
        cmd: EndEarly,
        key: Option<IdempotencyKey>,
    ) -> Result<Auction, EngineError>;
    async fn deposit(
        &self,
        cmd: Deposit,
        key: Option<IdempotencyKey>,
    ) -> Result<LedgerEntry, EngineError>;
    async fn withdraw(
        &self,
        cmd: Withdraw,
        key: Option<IdempotencyKey>,
    ) -> Result<LedgerEntry, EngineError>;
    async fn auction(&self, id: AuctionId, bids: Page) -> Result<AuctionView, EngineError>;
    async fn list_auctions(
        &self,
        filter: &AuctionFilter,
        page: Page,
    ) -> Result<Vec<Auction>, EngineError>;
    async fn count_auctions(&self, filter: &AuctionFilter) -> Result<u64, EngineError>;
    async fn user_auctions(&self, seller: UserId, page: Page) -> Result<Vec<Auction>, EngineError>;
    async fn user_bids(&self, user: UserId, page: Page) -> Result<Vec<Bid>, EngineError>;
    async fn wallet(&self, user: UserId, history: Page) -> Result<WalletView, EngineError>;
}

#[async_trait]
impl<S: Store, N: Notifier> Auctions for Engine<S, N> {
    fn now(&self) -> Timestamp {
        Engine::now(self)
    }

    async fn create_auction(
        &self,
        cmd: CreateAuction,
        key: Option<IdempotencyKey>,
    ) -> Result<Auction, EngineError> {
        Engine::create_auction(self, cmd, key).await
    }

    async fn place_bid(
        &self,
        cmd: PlaceBid,
        key: Option<IdempotencyKey>,
    ) -> Result<BidReceipt, EngineError> {
        Engine::place_bid(self, cmd, key).await
    }

    async fn buy_now(
        &self,
        cmd: BuyNow,
        key: Option<IdempotencyKey>,
    ) -> Result<Auction, EngineError> {
        Engine::buy_now(self, cmd, key).await
    }

    async fn cancel_auction(
        &self,
        cmd: CancelAuction,
        key: Option<IdempotencyKey>,
    ) -> Result<Auction, EngineError> {
        Engine::cancel_auction(self, cmd, key).await
    }

    async fn end_early(
        &self,
        cmd: EndEarly,
        key: Option<IdempotencyKey>,
    ) -> Result<Auction, EngineError> {
        Engine::end_early(self, cmd, key).await
    }

    async fn deposit(
        &self,
        cmd: Deposit,
        key: Option<IdempotencyKey>,
    ) -> Result<LedgerEntry, EngineError> {
        Engine::deposit(self, cmd, key).await
    }

    async fn withdraw(
        &self,
        cmd: Withdraw,
        key: Option<IdempotencyKey>,
    ) -> Result<LedgerEntry, EngineError> {
        Engine::withdraw(self, cmd, key).await
    }

    async fn auction(&self, id: AuctionId, bids: Page) -> Result<AuctionView, EngineError> {
        Engine::auction(self, id, bids).await
    }

    async fn list_auctions(
        &self,
        filter: &AuctionFilter,
        page: Page,
    ) -> Result<Vec<Auction>, EngineError> {
        Engine::list_auctions(self, filter, page).await
    }

    async fn count_auctions(&self, filter: &AuctionFilter) -> Result<u64, EngineError> {
        Engine::count_auctions(self, filter).await
    }

    async fn user_auctions(&self, seller: UserId, page: Page) -> Result<Vec<Auction>, EngineError> {
        Engine::user_auctions(self, seller, page).await
    }

    async fn user_bids(&self, user: UserId, page: Page) -> Result<Vec<Bid>, EngineError> {
        Engine::user_bids(self, user, page).await
    }

    async fn wallet(&self, user: UserId, history: Page) -> Result<WalletView, EngineError> {
        Engine::wallet(self, user, history).await
    }
}
