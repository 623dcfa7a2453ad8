//! The read-only queries ([`Queries`](neighborbid_core::store::Queries)),
//! written once for both databases: sqlx binds `$n` by number on SQLite as
//! on Postgres, and each backend module names its own row types
//! (`AuctionRow`, `BidRow`, `WalletRow`, `EntryRow`, `HoldRow`: the same
//! columns, decoded from each database's amounts and times) and its
//! transaction's `error()`.

/// Implements `Queries` for the transaction type `$tx` of the module that
/// invokes it.
macro_rules! impl_queries {
    ($tx:ty) => {
        #[async_trait::async_trait]
        impl neighborbid_core::store::Queries for $tx {
            async fn get_auction(
                &mut self,
                id: neighborbid_core::AuctionId,
            ) -> Result<Option<neighborbid_core::Auction>, neighborbid_core::StoreError> {
                let sql = concat!(
                    "SELECT ",
                    crate::codec::auction_columns!(),
                    " FROM auctions WHERE id = $1"
                );
                sqlx::query_as::<_, AuctionRow>(sql)
                    .bind(id.0)
                    .fetch_optional(&mut *self.tx)
                    .await
                    .map_err(self.error())?
                    .map(AuctionRow::into_auction)
                    .transpose()
            }

            async fn list_auctions(
                &mut self,
                filter: &neighborbid_core::AuctionFilter,
                page: neighborbid_core::Page,
            ) -> Result<Vec<neighborbid_core::Auction>, neighborbid_core::StoreError> {
                let rows = crate::codec::list_auctions(filter, page)
                    .build_query_as::<AuctionRow>()
                    .fetch_all(&mut *self.tx)
                    .await
                    .map_err(self.error())?;
                crate::codec::convert(rows, AuctionRow::into_auction)
            }

            async fn count_auctions(
                &mut self,
                filter: &neighborbid_core::AuctionFilter,
            ) -> Result<u64, neighborbid_core::StoreError> {
                let count: i64 = crate::codec::count_auctions(filter)
                    .build_query_scalar()
                    .fetch_one(&mut *self.tx)
                    .await
                    .map_err(self.error())?;
                Ok(u64::try_from(count).unwrap_or_default())
            }

            async fn auction_bids(
                &mut self,
                id: neighborbid_core::AuctionId,
                page: neighborbid_core::Page,
            ) -> Result<Vec<neighborbid_core::Bid>, neighborbid_core::StoreError> {
                let sql = concat!(
                    "SELECT ",
                    crate::codec::bid_columns!(),
                    " FROM bids WHERE auction_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3"
                );
                self.page_of_bids(sql, id.0, page).await
            }

            async fn user_bids(
                &mut self,
                user: neighborbid_core::UserId,
                page: neighborbid_core::Page,
            ) -> Result<Vec<neighborbid_core::Bid>, neighborbid_core::StoreError> {
                let sql = concat!(
                    "SELECT ",
                    crate::codec::bid_columns!(),
                    " FROM bids WHERE bidder = $1 ORDER BY id DESC LIMIT $2 OFFSET $3"
                );
                self.page_of_bids(sql, user.0, page).await
            }

            async fn get_wallet(
                &mut self,
                user: neighborbid_core::UserId,
            ) -> Result<neighborbid_core::Wallet, neighborbid_core::StoreError> {
                let sql = "SELECT user_id, balance, locked FROM wallets WHERE user_id = $1";
                let row = sqlx::query_as::<_, WalletRow>(sql)
                    .bind(user.0)
                    .fetch_optional(&mut *self.tx)
                    .await
                    .map_err(self.error())?;
                match row {
                    Some(row) => row.into_wallet(),
                    None => Ok(neighborbid_core::Wallet::empty(user)),
                }
            }

            async fn wallet_history(
                &mut self,
                user: neighborbid_core::UserId,
                page: neighborbid_core::Page,
            ) -> Result<Vec<neighborbid_core::LedgerEntry>, neighborbid_core::StoreError> {
                let (limit, offset) = crate::codec::limit(page);
                let sql = concat!(
                    "SELECT ",
                    crate::codec::entry_columns!(),
                    " FROM ledger_entries WHERE user_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3"
                );
                let rows = sqlx::query_as::<_, EntryRow>(sql)
                    .bind(user.0)
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&mut *self.tx)
                    .await
                    .map_err(self.error())?;
                crate::codec::convert(rows, EntryRow::into_entry)
            }

            async fn user_holds(
                &mut self,
                user: neighborbid_core::UserId,
            ) -> Result<Vec<neighborbid_core::Hold>, neighborbid_core::StoreError> {
                let sql = "SELECT auction_id, user_id, amount FROM holds \
                           WHERE user_id = $1 ORDER BY auction_id";
                let rows = sqlx::query_as::<_, HoldRow>(sql)
                    .bind(user.0)
                    .fetch_all(&mut *self.tx)
                    .await
                    .map_err(self.error())?;
                crate::codec::convert(rows, HoldRow::into_hold)
            }
        }

        impl $tx {
            /// Bids by `sql`, which selects `bid_columns!()` for one id
            /// (`$1`) and a page (`$2`, `$3`).
            async fn page_of_bids(
                &mut self,
                sql: &'static str,
                id: i64,
                page: neighborbid_core::Page,
            ) -> Result<Vec<neighborbid_core::Bid>, neighborbid_core::StoreError> {
                let (limit, offset) = crate::codec::limit(page);
                let rows = sqlx::query_as::<_, BidRow>(sql)
                    .bind(id)
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&mut *self.tx)
                    .await
                    .map_err(self.error())?;
                crate::codec::convert(rows, BidRow::into_bid)
            }
        }
    };
}
pub(crate) use impl_queries;
