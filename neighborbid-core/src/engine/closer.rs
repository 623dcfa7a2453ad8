//! The closer: a loop that settles auctions as they end, and its memory
//! of auctions it could not settle, so that one such auction never holds
//! up the others.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::decide::decision_time;
use super::{finish, invariant, Attempt};
use crate::auction::Auction;
use crate::engine::Engine;
use crate::error::{EngineError, StoreErrorKind};
use crate::ids::AuctionId;
use crate::notify::Notifier;
use crate::rules::{self, AuctionAction, AuctionState};
use crate::store::{AuctionStore, Store, Transaction};

/// Auctions one pass of the closer settles at most before the next.
const BATCH: usize = 100;

impl<S: Store, N: Notifier> Engine<S, N> {
    /// Settles auctions as they end, until `shutdown` completes: a pass
    /// of [`close_due_auctions`](Self::close_due_auctions) every `every`
    /// (at once again while passes find a full batch). Auctions settle
    /// only while a closer runs; several processes may each run one.
    /// Failures are logged and the next pass tries again.
    ///
    /// ```no_run
    /// # async fn run(engine: neighborbid_core::Engine<neighborbid_core::MemoryStore, neighborbid_core::Hub>) {
    /// let closer = engine.clone();
    /// tokio::spawn(async move {
    ///     closer.run_closer(std::time::Duration::from_secs(1), std::future::pending()).await
    /// });
    /// # }
    /// ```
    pub async fn run_closer(&self, every: Duration, shutdown: impl Future<Output = ()>) {
        self.run_closer_with(every, shutdown, |_| {}).await;
    }

    /// [`run_closer`](Self::run_closer), calling `settled` with the
    /// auctions each pass settled (for metrics, say).
    pub async fn run_closer_with(
        &self,
        every: Duration,
        shutdown: impl Future<Output = ()>,
        mut settled: impl FnMut(&[Auction]),
    ) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let full = match self.close_due_auctions(BATCH).await {
                Ok(closed) => {
                    if !closed.is_empty() {
                        tracing::info!(count = closed.len(), "settled auctions");
                        settled(&closed);
                    }
                    closed.len() == BATCH
                }
                Err(error) => {
                    tracing::warn!(%error, "closer failed; retrying");
                    false
                }
            };
            let wait = if full { Duration::ZERO } else { every };
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// The longest wait before the closer tries a stuck auction again.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(600);

/// An auction the closer could not settle. It is set aside, every other
/// due auction still settles, and it is tried again after a delay that
/// doubles with each failure (see
/// [`EngineConfig::stuck_retry_delay`](crate::EngineConfig::stuck_retry_delay)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StuckAuction {
    /// The auction.
    pub auction_id: AuctionId,
    /// Failed attempts to settle it, in a row.
    pub failures: u32,
    /// What the last attempt failed with.
    pub error: String,
    /// How long until the closer tries it again (zero: on its next pass).
    pub retry_in: Duration,
}

/// Whether a failure to settle belongs to the auction (set it aside and go
/// on) rather than to the store as a whole (stop the pass, as any command
/// would fail now).
pub(super) fn sets_aside(error: &EngineError) -> bool {
    match error {
        EngineError::Store(error) => !matches!(
            error.kind(),
            StoreErrorKind::Unavailable | StoreErrorKind::Conflict
        ),
        _ => true,
    }
}

struct Entry {
    failures: u32,
    error: String,
    retry_at: Instant,
}

/// Auctions set aside by this process's closer.
#[derive(Default)]
pub(super) struct SetAside {
    auctions: Mutex<HashMap<AuctionId, Entry>>,
}

impl SetAside {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AuctionId, Entry>> {
        self.auctions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The auctions whose next try has not come yet.
    pub(super) fn waiting(&self, now: Instant) -> Vec<AuctionId> {
        let auctions = self.lock();
        let waiting = auctions.iter().filter(|(_, entry)| entry.retry_at > now);
        waiting.map(|(id, _)| *id).collect()
    }

    /// Records a failure and returns the delay before the next try.
    pub(super) fn failed(
        &self,
        id: AuctionId,
        error: &EngineError,
        first_delay: Duration,
        now: Instant,
    ) -> (u32, Duration) {
        let mut auctions = self.lock();
        let failures = auctions.get(&id).map_or(1, |entry| entry.failures + 1);
        let delay = retry_delay(first_delay, failures);
        let entry = Entry {
            failures,
            error: error.to_string(),
            retry_at: now + delay,
        };
        auctions.insert(id, entry);
        (failures, delay)
    }

    /// Forgets an auction once it settled (or someone else settled it).
    pub(super) fn settled(&self, id: AuctionId) {
        self.lock().remove(&id);
    }

    /// What is set aside now, by auction id.
    pub(super) fn list(&self, now: Instant) -> Vec<StuckAuction> {
        let mut stuck: Vec<StuckAuction> = (self.lock().iter())
            .map(|(id, entry)| StuckAuction {
                auction_id: *id,
                failures: entry.failures,
                error: entry.error.clone(),
                retry_in: entry.retry_at.saturating_duration_since(now),
            })
            .collect();
        stuck.sort_by_key(|stuck| stuck.auction_id);
        stuck
    }
}

/// `first` after the first failure, doubling with each further one, at
/// most [`MAX_RETRY_DELAY`].
fn retry_delay(first: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    first.saturating_mul(1 << doublings).min(MAX_RETRY_DELAY)
}

impl<S: Store, N: Notifier> Engine<S, N> {
    /// Settles the first due auction not in `skip`, recording which one
    /// it claimed in `claimed` (so a failure can be pinned on it).
    pub(super) async fn attempt_close_next(
        &self,
        skip: &[AuctionId],
        claimed: &Mutex<Option<AuctionId>>,
    ) -> Attempt<Option<Auction>> {
        let mut tx = self.inner.store.begin().await?;
        let result = self.close_next_in(&mut tx, skip, claimed).await;
        finish(tx, result).await
    }

    /// [`attempt_close_next`](Self::attempt_close_next)'s work inside its
    /// transaction.
    async fn close_next_in(
        &self,
        tx: &mut S::Tx,
        skip: &[AuctionId],
        claimed: &Mutex<Option<AuctionId>>,
    ) -> Attempt<Option<Auction>> {
        let Some(auction) = tx.claim_due_auction(self.now(), skip).await? else {
            return Ok((None, Vec::new()));
        };
        *claimed.lock().unwrap_or_else(|e| e.into_inner()) = Some(auction.id);
        let now = decision_time(tx, &*self.inner.config.clock).await?;
        let parties = AuctionAction::Settle.parties(&auction);
        let (holds, wallets) = tx.lock_parties(auction.id, &parties).await?;
        let state = AuctionState {
            auction: &auction,
            holds: &holds,
            wallets: &wallets,
        };
        let decision = rules::settle(state, now)?
            .ok_or_else(|| invariant("the store claimed an auction that is not due"))?;
        tx.write_decisions(std::slice::from_ref(&decision), &[])
            .await?;
        Ok((Some(decision.auction), vec![decision.event]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Rejection, StoreError};

    #[test]
    fn retries_wait_double_up_to_ten_minutes() {
        let delays: Vec<u64> = (1..=12)
            .map(|failures| retry_delay(Duration::from_secs(1), failures).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
        assert_eq!(retry_delay(Duration::from_secs(1), u32::MAX).as_secs(), 600);
    }

    #[test]
    fn only_failures_of_the_auction_itself_set_it_aside() {
        let store = |kind| EngineError::Store(StoreError::new(kind, "x"));
        assert!(!sets_aside(&store(StoreErrorKind::Unavailable)));
        assert!(!sets_aside(&store(StoreErrorKind::Conflict)));
        assert!(sets_aside(&store(StoreErrorKind::Corrupt)));
        assert!(sets_aside(&store(StoreErrorKind::Other)));
        assert!(sets_aside(&EngineError::Invariant("x".into())));
        assert!(sets_aside(&Rejection::BalanceLimit.into()));
    }

    #[test]
    fn an_auction_waits_its_delay_then_is_tried_again_and_forgotten_once_settled() {
        let aside = SetAside::default();
        let (id, start) = (AuctionId(4), Instant::now());
        let error = EngineError::Invariant("broken".into());
        let second = Duration::from_secs(1);
        assert_eq!(aside.failed(id, &error, second, start), (1, second));
        assert_eq!(aside.waiting(start), [id]);
        assert!(aside.waiting(start + second).is_empty());
        let again = start + second;
        assert_eq!(aside.failed(id, &error, second, again), (2, second * 2));
        let listed = aside.list(again);
        assert_eq!(
            listed,
            [StuckAuction {
                auction_id: id,
                failures: 2,
                error: "invariant broken: broken".into(),
                retry_in: second * 2,
            }]
        );
        aside.settled(id);
        assert!(aside.list(again).is_empty());
    }
}
