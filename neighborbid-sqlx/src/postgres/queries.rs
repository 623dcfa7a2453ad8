//! What browsing, pages and the API read from a [`PgStore`](super::PgStore):
//! plain reads, no row locks.

use async_trait::async_trait;
use neighborbid_core::store::Queries;
use neighborbid_core::{
    Auction, AuctionFilter, AuctionId, Bid, Hold, LedgerEntry, Page, StoreError, UserId, Wallet,
};

use super::{AuctionRow, EntryRow, HoldRow, PgTx, WalletRow};
use crate::codec::{self, auction_columns, bid_columns, entry_columns, limit};

#[async_trait]
impl Queries for PgTx {
    async fn get_auction(&mut self, id: AuctionId) -> Result<Option<Auction>, StoreError> {
        let sql = concat!(
            "SELECT ",
            auction_columns!(),
            " FROM auctions WHERE id = $1"
        );
        self.auction(sql, id).await
    }

    async fn list_auctions(
        &mut self,
        filter: &AuctionFilter,
        page: Page,
    ) -> Result<Vec<Auction>, StoreError> {
        let rows = codec::list_auctions(filter, page)
            .build_query_as::<AuctionRow>()
            .fetch_all(&mut *self.tx)
            .await
            .map_err(self.error())?;
        codec::convert(rows, AuctionRow::into_auction)
    }

    async fn count_auctions(&mut self, filter: &AuctionFilter) -> Result<u64, StoreError> {
        let count: i64 = codec::count_auctions(filter)
            .build_query_scalar()
            .fetch_one(&mut *self.tx)
            .await
            .map_err(self.error())?;
        Ok(u64::try_from(count).unwrap_or_default())
    }

    async fn auction_bids(&mut self, id: AuctionId, page: Page) -> Result<Vec<Bid>, StoreError> {
        let sql = concat!(
            "SELECT ",
            bid_columns!(),
            " FROM bids WHERE auction_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3"
        );
        self.bids(sql, id.0, page).await
    }

    async fn user_bids(&mut self, user: UserId, page: Page) -> Result<Vec<Bid>, StoreError> {
        let sql = concat!(
            "SELECT ",
            bid_columns!(),
            " FROM bids WHERE bidder = $1 ORDER BY id DESC LIMIT $2 OFFSET $3"
        );
        self.bids(sql, user.0, page).await
    }

    async fn get_wallet(&mut self, user: UserId) -> Result<Wallet, StoreError> {
        let row = sqlx::query_as::<_, WalletRow>(
            "SELECT user_id, balance, locked FROM wallets WHERE user_id = $1",
        )
        .bind(user.0)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(self.error())?;
        match row {
            Some(row) => row.into_wallet(),
            None => Ok(Wallet::empty(user)),
        }
    }

    async fn wallet_history(
        &mut self,
        user: UserId,
        page: Page,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let (limit, offset) = limit(page);
        let rows = sqlx::query_as::<_, EntryRow>(concat!(
            "SELECT ",
            entry_columns!(),
            " FROM ledger_entries WHERE user_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3"
        ))
        .bind(user.0)
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(self.error())?;
        codec::convert(rows, EntryRow::into_entry)
    }

    async fn user_holds(&mut self, user: UserId) -> Result<Vec<Hold>, StoreError> {
        let rows = sqlx::query_as::<_, HoldRow>(
            "SELECT auction_id, user_id, amount FROM holds WHERE user_id = $1 ORDER BY auction_id",
        )
        .bind(user.0)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(self.error())?;
        codec::convert(rows, HoldRow::into_hold)
    }
}
