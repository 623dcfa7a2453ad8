//! The outbox ([`Outbox`](neighborbid_core::store::Outbox)), written once
//! for both databases. Payloads are
//! [`StoredEvent`](neighborbid_core::store::StoredEvent)s, not the wire's
//! JSON of an event. A backend supplies what differs: how a time is
//! bound (`time`), what locks the rows a relay takes (`lock`: Postgres
//! skips rows another relay holds; SQLite's writer lock already excludes
//! other relays), and how a list of events is marked delivered (its
//! `mark_delivered_rows`).

/// Implements `Outbox` for the transaction type `$tx` of the module that
/// invokes it.
macro_rules! impl_outbox {
    ($tx:ty, lock: $lock:literal, time: $time:path) => {
        #[async_trait::async_trait]
        impl neighborbid_core::store::Outbox for $tx {
            async fn events_after(
                &mut self,
                id: neighborbid_core::AuctionId,
                after: u64,
                limit: u32,
            ) -> Result<Vec<neighborbid_core::Event>, neighborbid_core::StoreError> {
                let sql = "SELECT payload FROM outbox WHERE auction_id = $1 AND seq > $2 \
                           ORDER BY seq LIMIT $3";
                let events: Vec<sqlx::types::Json<neighborbid_core::store::StoredEvent>> =
                    sqlx::query_scalar(sql)
                        .bind(id.0)
                        .bind(i64::try_from(after).unwrap_or(i64::MAX))
                        .bind(i64::from(limit))
                        .fetch_all(&mut *self.tx)
                        .await
                        .map_err(self.error())?;
                crate::codec::convert(events, |event| event.0.into_event())
            }

            async fn undelivered_events(
                &mut self,
                before: neighborbid_core::Timestamp,
                limit: u32,
            ) -> Result<Vec<neighborbid_core::Event>, neighborbid_core::StoreError> {
                let sql = concat!(
                    "SELECT payload FROM outbox WHERE delivered_at IS NULL AND at <= $1 \
                     ORDER BY auction_id, seq LIMIT $2",
                    $lock
                );
                let events: Vec<sqlx::types::Json<neighborbid_core::store::StoredEvent>> =
                    sqlx::query_scalar(sql)
                        .bind($time(before))
                        .bind(i64::from(limit))
                        .fetch_all(&mut *self.tx)
                        .await
                        .map_err(self.error())?;
                crate::codec::convert(events, |event| event.0.into_event())
            }

            async fn mark_delivered(
                &mut self,
                events: &[neighborbid_core::EventId],
                at: neighborbid_core::Timestamp,
            ) -> Result<(), neighborbid_core::StoreError> {
                self.mark_delivered_rows(events, at).await
            }

            async fn forget_events(
                &mut self,
                closed_before: neighborbid_core::Timestamp,
                after: neighborbid_core::AuctionId,
                limit: u32,
            ) -> Result<neighborbid_core::store::ForgottenEvents, neighborbid_core::StoreError>
            {
                // Two statements that pick the same auctions in one
                // transaction (SQLite takes no DELETE inside a WITH).
                const PICKED: &str = "SELECT id FROM auctions WHERE id > $2 AND closed_at <= $1 \
                                      ORDER BY id LIMIT $3";
                let last: Option<i64> =
                    sqlx::query_scalar(&format!("SELECT MAX(id) FROM ({PICKED}) AS picked"))
                        .bind($time(closed_before))
                        .bind(after.0)
                        .bind(i64::from(limit))
                        .fetch_one(&mut *self.tx)
                        .await
                        .map_err(self.error())?;
                let delete =
                    format!("DELETE FROM outbox WHERE at <= $1 AND auction_id IN ({PICKED})");
                let done = sqlx::query(&delete)
                    .bind($time(closed_before))
                    .bind(after.0)
                    .bind(i64::from(limit))
                    .execute(&mut *self.tx)
                    .await
                    .map_err(self.error())?;
                Ok(neighborbid_core::store::ForgottenEvents {
                    events: done.rows_affected(),
                    last_auction: last.map(neighborbid_core::AuctionId),
                })
            }
        }
    };
}
pub(crate) use impl_outbox;
