//! The write path of [`SqliteTx`]: a batch of decisions, row by row.
//! SQLite runs in-process, so a statement per row costs no round trip; the
//! transaction already holds the database's write lock.

use neighborbid_core::rules::Decision;
use neighborbid_core::store::{AuctionStore, BatchRecord, BatchWrites, StoredEvent};
use neighborbid_core::{Auction, Bid, BidId, Event, Hold, StoreError};
use sqlx::types::Json;

use super::{push_bidding_update, SqliteTx};
use crate::codec::{expect_one, to_i64};
use crate::statement::Statement;

impl SqliteTx {
    /// [`Transaction::write_decisions`](neighborbid_core::Transaction::write_decisions).
    pub(super) async fn write_batch(
        &mut self,
        decisions: &[Decision],
        records: &[BatchRecord<'_>],
    ) -> Result<Vec<Option<Bid>>, StoreError> {
        let Some(writes) = BatchWrites::of(decisions) else {
            return Ok(Vec::new());
        };
        self.update_auction(writes.auction).await?;
        let mut bids = Vec::with_capacity(decisions.len());
        for decision in decisions {
            bids.push(match &decision.bid {
                Some(bid) => Some(self.insert_bid(bid).await?),
                None => None,
            });
        }
        for wallet in writes.wallets {
            self.save_wallet_row(wallet).await?;
        }
        for entry in writes.entries {
            self.append_entry_row(entry).await?;
        }
        for hold in writes.holds {
            self.set_hold(hold).await?;
        }
        for event in writes.events {
            self.append_event(event).await?;
        }
        for record in records {
            let stored = record.with_bid(&bids);
            self.save_idempotency(record.user, record.key, &stored)
                .await?;
        }
        Ok(bids)
    }

    async fn update_auction(&mut self, auction: &Auction) -> Result<(), StoreError> {
        let mut statement = Statement::new("");
        push_bidding_update(&mut statement, auction)?;
        let (sql, arguments) = statement.finish()?;
        let updated = sqlx::query_with(&sql, arguments)
            .execute(&mut *self.tx)
            .await
            .map_err(self.error())?;
        expect_one(updated.rows_affected(), "auction", auction.id)
    }

    async fn insert_bid(&mut self, bid: &Bid) -> Result<Bid, StoreError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO bids (auction_id, bidder, amount, placed_at, seq, auto) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
        )
        .bind(bid.auction_id.0)
        .bind(bid.bidder.0)
        .bind(bid.amount.to_string())
        .bind(bid.placed_at.timestamp_micros())
        .bind(to_i64(bid.seq, "seq")?)
        .bind(bid.auto)
        .fetch_one(&mut *self.tx)
        .await
        .map_err(self.error())?;
        Ok(Bid {
            id: BidId(id),
            ..bid.clone()
        })
    }

    async fn append_event(&mut self, event: &Event) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO outbox (auction_id, seq, at, payload) VALUES (?1, ?2, ?3, ?4)")
            .bind(event.auction_id.0)
            .bind(to_i64(event.seq, "seq")?)
            .bind(event.at.timestamp_micros())
            .bind(Json(StoredEvent::from(event)))
            .execute(&mut *self.tx)
            .await
            .map_err(self.error())?;
        Ok(())
    }

    async fn set_hold(&mut self, hold: &Hold) -> Result<(), StoreError> {
        let query = if hold.amount.is_zero() {
            sqlx::query("DELETE FROM holds WHERE auction_id = ?1 AND user_id = ?2")
                .bind(hold.auction_id.0)
                .bind(hold.user.0)
        } else {
            sqlx::query(
                "INSERT INTO holds (auction_id, user_id, amount) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (auction_id, user_id) DO UPDATE SET amount = excluded.amount",
            )
            .bind(hold.auction_id.0)
            .bind(hold.user.0)
            .bind(hold.amount.to_string())
        };
        query.execute(&mut *self.tx).await.map_err(self.error())?;
        Ok(())
    }
}
