//! The row reads and writes of a command's transaction that both
//! databases share: an auction's holds, a wallet decision (new balances
//! and a history entry) and idempotency records. The backend module
//! names its `HoldRow` type (the database's amounts). Each backend's `AuctionStore` and `WalletLedger`
//! call these; what differs (locking, Postgres's batch statement) stays
//! in the backend's module.

/// Implements the shared row statements as methods of the transaction
/// type `$tx`, with `$amount` and `$time` encoding an amount and a time as
/// the database stores them.
macro_rules! impl_rows {
    ($tx:ty, amount: $amount:path, time: $time:path) => {
        impl $tx {
            /// The record under `(user, key)`, if any.
            async fn load_record(
                &mut self,
                user: neighborbid_core::UserId,
                key: &neighborbid_core::IdempotencyKey,
            ) -> Result<Option<neighborbid_core::IdempotencyRecord>, neighborbid_core::StoreError>
            {
                let record: Option<sqlx::types::Json<neighborbid_core::IdempotencyRecord>> =
                    sqlx::query_scalar(
                        "SELECT record FROM idempotency WHERE user_id = $1 AND key = $2",
                    )
                    .bind(user.0)
                    .bind(key.as_str())
                    .fetch_optional(&mut *self.tx)
                    .await
                    .map_err(self.error())?;
                Ok(record.map(|sqlx::types::Json(record)| record))
            }

            /// Stores a record under `(user, key)`; a second one under the
            /// same key breaks the table's unique key.
            async fn save_record(
                &mut self,
                user: neighborbid_core::UserId,
                key: &neighborbid_core::IdempotencyKey,
                record: &neighborbid_core::IdempotencyRecord,
            ) -> Result<(), neighborbid_core::StoreError> {
                sqlx::query("INSERT INTO idempotency (user_id, key, record) VALUES ($1, $2, $3)")
                    .bind(user.0)
                    .bind(key.as_str())
                    .bind(sqlx::types::Json(record))
                    .execute(&mut *self.tx)
                    .await
                    .map_err(self.error())?;
                Ok(())
            }

            /// The open holds on an auction, by user.
            async fn hold_rows(
                &mut self,
                auction: neighborbid_core::AuctionId,
            ) -> Result<Vec<neighborbid_core::Hold>, neighborbid_core::StoreError> {
                let rows = sqlx::query_as::<_, HoldRow>(
                    "SELECT auction_id, user_id, amount FROM holds WHERE auction_id = $1 \
                     ORDER BY user_id",
                )
                .bind(auction.0)
                .fetch_all(&mut *self.tx)
                .await
                .map_err(self.error())?;
                crate::codec::convert(rows, HoldRow::into_hold)
            }

            /// Writes a wallet decision: the wallet's new balances and its
            /// history entry.
            async fn write_wallet_rows(
                &mut self,
                decision: &neighborbid_core::rules::WalletDecision,
            ) -> Result<(), neighborbid_core::StoreError> {
                self.save_wallet_row(&decision.wallet).await?;
                self.append_entry_row(&decision.entry).await
            }

            /// Writes a locked wallet's balances.
            async fn save_wallet_row(
                &mut self,
                wallet: &neighborbid_core::Wallet,
            ) -> Result<(), neighborbid_core::StoreError> {
                let updated =
                    sqlx::query("UPDATE wallets SET balance = $2, locked = $3 WHERE user_id = $1")
                        .bind(wallet.user.0)
                        .bind($amount(wallet.balance))
                        .bind($amount(wallet.locked))
                        .execute(&mut *self.tx)
                        .await
                        .map_err(self.error())?;
                crate::codec::expect_one(updated.rows_affected(), "wallet", wallet.user)
            }

            /// Appends a wallet history entry.
            async fn append_entry_row(
                &mut self,
                entry: &neighborbid_core::LedgerEntry,
            ) -> Result<(), neighborbid_core::StoreError> {
                sqlx::query(
                    "INSERT INTO ledger_entries \
                     (user_id, kind, amount, auction_id, balance_after, locked_after, at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(entry.user.0)
                .bind(entry.kind.as_str())
                .bind($amount(entry.amount))
                .bind(entry.auction_id.map(|id| id.0))
                .bind($amount(entry.balance_after))
                .bind($amount(entry.locked_after))
                .bind($time(entry.at))
                .execute(&mut *self.tx)
                .await
                .map_err(self.error())?;
                Ok(())
            }
        }
    };
}
pub(crate) use impl_rows;
