//! [`PgTx`]'s wallet ledger: wallets locked in ascending user id,
//! history and escrow holds.

use async_trait::async_trait;
use neighborbid_core::rules::WalletDecision;
use neighborbid_core::store::WalletLedger;
use neighborbid_core::{Hold, StoreError, UserId, Wallet};

use super::*;

#[async_trait]
impl WalletLedger for PgTx {
    async fn lock_wallets(&mut self, users: &[UserId]) -> Result<Vec<Wallet>, StoreError> {
        let ids: Vec<i64> = users.iter().map(|user| user.0).collect();
        // Existing wallets are only locked: a row lock writes far less than
        // an update (no new row version), and a hot auction's batch locks
        // dozens of wallets. Locked in ascending order, like every locker.
        let rows = sqlx::query_as::<_, WalletRow>(
            "SELECT user_id, balance, locked FROM wallets WHERE user_id = ANY($1) \
             ORDER BY user_id FOR UPDATE",
        )
        .bind(&ids)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(self.error())?;
        let rows = if rows.len() == ids.len() {
            rows
        } else {
            // Some wallet does not exist yet: one statement creates the
            // missing ones and locks them all, visiting users in ascending
            // order, so a brand-new wallet's insert is waited on like a row
            // lock. (The wallets locked above are already this
            // transaction's.)
            sqlx::query_as::<_, WalletRow>(
                "INSERT INTO wallets (user_id) SELECT * FROM unnest($1::bigint[]) \
                 ON CONFLICT (user_id) DO UPDATE SET balance = wallets.balance \
                 RETURNING user_id, balance, locked",
            )
            .bind(&ids)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(self.error())?
        };
        let mut wallets = codec::convert(rows, WalletRow::into_wallet)?;
        wallets.sort_by_key(|wallet| wallet.user);
        if wallets.len() != users.len() {
            return Err(StoreError::new(
                StoreErrorKind::Other,
                format!("locked {} wallets of {}", wallets.len(), users.len()),
            ));
        }
        Ok(wallets)
    }

    async fn auction_holds(&mut self, auction: AuctionId) -> Result<Vec<Hold>, StoreError> {
        self.hold_rows(auction).await
    }

    async fn write_wallet_decision(&mut self, decision: &WalletDecision) -> Result<(), StoreError> {
        self.write_wallet_rows(decision).await
    }
}
