//! [`GatedStore`]: any store whose transactions can be held at the door.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::{Store, StoreError};

/// Wraps a store; while its gate is closed, [`Store::begin`] waits. So a
/// test can hold a transaction "in flight" and see what queues behind it.
#[derive(Debug)]
pub struct GatedStore<S> {
    inner: S,
    open: watch::Sender<bool>,
    begun: AtomicUsize,
    waiting: AtomicUsize,
}

impl<S> GatedStore<S> {
    /// `inner`, with the gate open.
    pub fn new(inner: S) -> Arc<GatedStore<S>> {
        Arc::new(GatedStore {
            inner,
            open: watch::Sender::new(true),
            begun: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
        })
    }

    /// Makes later transactions wait at `begin`.
    pub fn close(&self) {
        self.open.send_replace(false);
    }

    /// Lets waiting and later transactions through.
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    /// Transactions begun so far (read-only ones not counted).
    pub fn begun(&self) -> usize {
        self.begun.load(Ordering::SeqCst)
    }

    /// Transactions waiting at the closed gate.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl<S: Store> Store for GatedStore<S> {
    type Tx = S::Tx;

    async fn begin(&self) -> Result<S::Tx, StoreError> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|open| *open).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        self.begun.fetch_add(1, Ordering::SeqCst);
        self.inner.begin().await
    }

    async fn begin_read(&self) -> Result<S::Tx, StoreError> {
        self.inner.begin_read().await
    }
}
