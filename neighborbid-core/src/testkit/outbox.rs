//! Events: gapless sequences, the outbox, the relay, coalesced batches, forgetting closed auctions' events.

use super::*;
use crate::store::Outbox;

/// The outbox events of auctions closed long enough ago are forgotten,
/// atomically, auction by auction; open auctions and recently closed ones
/// keep theirs, and the auctions, bids and money stay as they were.
pub async fn closed_auctions_events_are_forgotten<S: Store>(store: S) {
    use std::time::Duration;
    let h = Harness::new(store);
    h.fund(ALICE, 1_000).await;
    let mut old = Vec::new();
    for units in [100, 200] {
        let auction = h.create(h.national(units, 10)).await;
        h.bid(auction.id, ALICE, units).await.expect("bid");
        old.push(auction.id);
    }
    let cancelled = h.create(h.national(50, 10)).await;
    let cancel = CancelAuction {
        auction_id: cancelled.id,
        seller: SELLER,
    };
    h.engine.cancel_auction(cancel, None).await.expect("cancel");
    old.push(cancelled.id);
    h.clock.advance(TimeDelta::hours(2));
    assert_eq!(
        h.engine.close_due_auctions(10).await.expect("close").len(),
        2
    );
    let closed_at = h.now();
    // Bid on at `closed_at` as well: one stays open, one closes a day later.
    let open = CreateAuction {
        ends_at: h.now() + TimeDelta::days(30),
        ..h.national(100, 10)
    };
    let open = h.create(open).await;
    let recent = h.create(h.national(100, 10)).await;
    for id in [open.id, recent.id] {
        h.bid(id, ALICE, 100).await.expect("bid");
    }
    let open_events = h.outbox(open.id).await;
    let mut old_events = Vec::new();
    for id in &old {
        old_events.push(h.outbox(*id).await);
    }
    assert!(old_events.iter().all(|events| !events.is_empty()));
    let day = Duration::from_secs(86_400);
    assert_eq!(h.engine.forget_events(day).await.expect("forget"), 0);

    h.clock.advance(TimeDelta::days(1));
    assert_eq!(
        h.engine.close_due_auctions(10).await.expect("close").len(),
        1
    );
    let recent_events = h.outbox(recent.id).await;
    let books = (h.wallet(ALICE).await, h.wallet(SELLER).await);

    // One auction a transaction: rolled back, nothing goes.
    let store = h.engine.store();
    let mut tx = store.begin().await.expect("begin");
    let first = tx.forget_events(closed_at, AuctionId(0), 1).await;
    let first = first.expect("forget");
    assert_eq!(first.last_auction, Some(old[0]));
    assert_eq!(first.events, old_events[0].len() as u64);
    tx.rollback().await.expect("rollback");
    assert_eq!(h.outbox(old[0]).await, old_events[0]);

    let forgotten = h.engine.forget_events(day).await.expect("forget");
    let expected: usize = old_events.iter().map(Vec::len).sum();
    assert_eq!(forgotten, expected as u64);
    for id in &old {
        assert_eq!(h.outbox(*id).await, Vec::new(), "auction {id}");
    }
    assert_eq!(h.outbox(open.id).await, open_events, "an open auction's");
    assert_eq!(h.outbox(recent.id).await, recent_events, "closed since");
    let sold = h
        .engine
        .auction(old[1], Page::first(10))
        .await
        .expect("auction");
    assert_eq!(sold.auction.bidding.status, AuctionStatus::Sold);
    assert_eq!(sold.bids.len(), 1, "bids stay");
    assert_eq!((h.wallet(ALICE).await, h.wallet(SELLER).await), books);
    let undelivered = {
        let mut tx = store.begin().await.expect("begin");
        tx.undelivered_events(h.now(), 1_000)
            .await
            .expect("undelivered")
    };
    assert!(undelivered
        .iter()
        .all(|event| !old.contains(&event.auction_id)));
    assert_eq!(h.engine.forget_events(day).await.expect("again"), 0);
}

/// Every change of an auction has the next sequence number, in the outbox
/// and at the notifier, with no gaps.
pub async fn events_have_gapless_sequence<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 10_000).await;
    h.fund(BOB, 10_000).await;
    let auction = h.create(h.national(100, 10)).await;
    let other = h.create(h.national(100, 10)).await;
    for (i, bidder) in [ALICE, BOB, ALICE, BOB, BOB].into_iter().enumerate() {
        h.bid(auction.id, bidder, 100 + 10 * i as u64)
            .await
            .expect("bid");
        // Refused bids and other auctions' bids take no number.
        assert!(h.bid(auction.id, bidder, 1).await.is_err());
        h.bid(other.id, bidder, 100 + 10 * i as u64)
            .await
            .expect("other");
    }
    h.clock.advance(TimeDelta::hours(1));
    h.engine.close_due_auctions(10).await.expect("close");

    let stored = h
        .engine
        .events_after(auction.id, 0, 1_000)
        .await
        .expect("events");
    let seqs: Vec<u64> = stored.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=6).collect::<Vec<_>>());
    assert_eq!(h.auction(auction.id).await.bidding.seq, 6);
    assert_eq!(
        h.delivered(auction.id),
        stored,
        "the notifier got exactly what was committed, in order"
    );
    let tail = h
        .engine
        .events_after(auction.id, 4, 1_000)
        .await
        .expect("tail");
    assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), [5, 6]);
    let bids = h
        .engine
        .auction(auction.id, Page::default())
        .await
        .expect("view")
        .bids;
    let bid_seqs: Vec<u64> = bids.iter().rev().map(|b| b.seq).collect();
    assert_eq!(
        bid_seqs,
        [1, 2, 3, 4, 5],
        "bids carry the number of their change"
    );
}

/// A failing notifier never undoes a committed change.
pub async fn notifier_failure_keeps_commit<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 500).await;
    let auction = h.create(h.national(100, 10)).await;
    h.notifier.set_failing(true);
    let receipt = h.bid(auction.id, ALICE, 100).await.expect("the bid stands");
    assert_eq!(h.auction(auction.id).await, receipt.auction);
    assert_eq!(h.wallet(ALICE).await.locked, money(100));
    assert!(h.notifier.events().is_empty());
    let outbox = h.outbox(auction.id).await;
    assert_eq!(outbox.len(), 1, "the event waits in the outbox");
}

/// The outbox lists committed events by auction and sequence number, up to
/// a time, until a committed transaction marks them delivered.
pub async fn outbox_lists_undelivered_events<S: Store>(store: S) {
    let h = Harness::new(store);
    h.fund(ALICE, 1_000).await;
    let first = h.create(h.national(100, 10)).await;
    let second = h.create(h.national(100, 10)).await;
    h.bid(second.id, ALICE, 100).await.expect("bid");
    h.clock.advance(TimeDelta::seconds(10));
    let later = h.now();
    h.bid(first.id, ALICE, 100).await.expect("bid");
    h.bid(first.id, ALICE, 110).await.expect("raise");

    let undelivered = |before: Timestamp, limit: u32| {
        let store = h.engine.store();
        async move {
            let mut tx = store.begin().await.expect("begin");
            let events = tx
                .undelivered_events(before, limit)
                .await
                .expect("undelivered");
            // The rows are locked (SKIP LOCKED on Postgres): a dropped
            // transaction may release them only after the next read.
            tx.rollback().await.expect("rollback");
            events.iter().map(Event::id).collect::<Vec<_>>()
        }
    };
    let id = |auction: &Auction, seq| EventId {
        auction_id: auction.id,
        seq,
    };
    let all = vec![id(&first, 1), id(&first, 2), id(&second, 1)];
    assert_eq!(undelivered(later, 100).await, all);
    assert_eq!(undelivered(later, 2).await, all[..2]);
    assert_eq!(
        undelivered(later - TimeDelta::seconds(1), 100).await,
        [id(&second, 1)],
        "younger events are left out"
    );

    let mark = |events: Vec<EventId>, commit: bool| {
        let store = h.engine.store();
        let now = h.now();
        async move {
            let mut tx = store.begin().await.expect("begin");
            tx.mark_delivered(&events, now).await.expect("mark");
            if commit {
                tx.commit().await.expect("commit");
            } else {
                tx.rollback().await.expect("rollback");
            }
        }
    };
    mark(all.clone(), false).await;
    assert_eq!(
        undelivered(later, 100).await,
        all,
        "a rollback marks nothing"
    );
    let unknown = EventId {
        auction_id: AuctionId(i64::MAX),
        seq: 1,
    };
    mark(vec![id(&first, 1), unknown], true).await;
    assert_eq!(undelivered(later, 100).await, all[1..]);
    mark(all.clone(), true).await;
    assert!(undelivered(later, 100).await.is_empty());
    assert_eq!(
        h.outbox(first.id).await.len(),
        2,
        "delivered events stay readable"
    );
}

/// Events committed but never sent (the process died after commit) are
/// sent by a relay, once each to a consumer that drops duplicates, even when
/// the relay dies between sending and marking them.
pub async fn relay_recovers_unsent_events<S: Store>(store: S) {
    let store = Arc::new(FaultyStore::new(store));
    let switch = store.switch();
    let h = Harness::new(Arc::clone(&store));
    h.notifier.set_failing(true); // nothing leaves the dying process
    h.fund(ALICE, 1_000).await;
    h.fund(BOB, 1_000).await;
    let auction = h.create(h.national(100, 10)).await;
    for (bidder, amount) in [(ALICE, 100), (BOB, 110), (ALICE, 120)] {
        h.bid(auction.id, bidder, amount).await.expect("bid");
    }

    let hub = Hub::new(64);
    let mut consumer = hub.watch(auction.id, None);
    let sent = Arc::new(RecordingNotifier::default());
    let config = RelayConfig {
        grace: std::time::Duration::ZERO,
        clock: h.clock.clone(),
        ..RelayConfig::default()
    };
    let relay = Relay::new(store, (Arc::clone(&sent), hub.clone()), config);
    assert_eq!(relay.deliver_undelivered().await.expect("relay"), 3);
    assert_eq!(relay.deliver_undelivered().await.expect("again"), 0);
    assert_eq!(next_seqs(&mut consumer, 3).await, [1, 2, 3]);

    for (bidder, amount) in [(BOB, 130), (ALICE, 140)] {
        h.bid(auction.id, bidder, amount).await.expect("bid");
    }
    switch.arm(Fault::MarkDelivered);
    assert!(
        relay.deliver_undelivered().await.is_err(),
        "sent, then died before marking"
    );
    assert_eq!(relay.deliver_undelivered().await.expect("restart"), 2);
    assert_eq!(relay.deliver_undelivered().await.expect("done"), 0);
    let seqs: Vec<u64> = sent.events().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 4, 5], "at least once");
    assert_eq!(next_seqs(&mut consumer, 2).await, [4, 5]);
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(50), consumer.next())
            .await
            .is_err(),
        "the consumer applied nothing twice"
    );
    assert_eq!(sent.events()[..5], h.outbox(auction.id).await);
    let recovered = 3 + 2 + 2; // the first two resent after the failed marking
    assert_eq!(
        relay.counts(),
        RelayCounts {
            recovered,
            ..RelayCounts::default()
        }
    );
}

/// An engine whose notifier is a relay's sender: committed events go out
/// once, without waiting for the recovery path, and are marked delivered.
pub async fn relay_sends_after_commit_and_marks<S: Store>(store: S) {
    let store = Arc::new(store);
    let h = Harness::new(Arc::clone(&store));
    h.fund(ALICE, 1_000).await;
    let auction = h.create(h.national(100, 10)).await;
    let hub = Hub::new(64);
    let mut consumer = hub.watch(auction.id, None);
    let sent = Arc::new(RecordingNotifier::default());
    let config = RelayConfig {
        // The recovery path must not pick the events up: only sending
        // after commit can deliver them in this test.
        grace: std::time::Duration::from_secs(3600),
        interval: std::time::Duration::from_millis(10),
        clock: h.clock.clone(),
        ..RelayConfig::default()
    };
    let relay = Relay::new(Arc::clone(&store), (Arc::clone(&sent), hub.clone()), config);
    let sender = relay.sender();
    let engine = Engine::with_config(
        Arc::clone(&store),
        sender.clone(),
        h.engine.config().clone(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(relay.run(async {
        let _ = stopped.await;
    }));
    for amount in [100, 110, 120] {
        let bid = bid_of(auction.id, ALICE, amount);
        engine.place_bid(bid, None).await.expect("bid");
    }
    assert_eq!(next_seqs(&mut consumer, 3).await, [1, 2, 3]);
    let _ = stop.send(());
    task.await.expect("the relay stops");
    assert_eq!(sent.events(), h.outbox(auction.id).await, "each sent once");
    let mut tx = store.begin().await.expect("begin");
    let left = tx
        .undelivered_events(h.now() + TimeDelta::days(1), 100)
        .await
        .expect("undelivered");
    assert!(left.is_empty(), "all marked delivered: {left:?}");
    let counts = RelayCounts {
        sent: 3,
        ..RelayCounts::default()
    };
    assert_eq!(sender.counts(), counts, "read from the engine's side");
}

/// A relay counts the events its queue had no room for and those the
/// notifier refused; its recovery path then sends them all.
pub async fn relay_counts_a_full_queue_and_failed_sends<S: Store>(store: S) {
    let store = Arc::new(store);
    let h = Harness::new(Arc::clone(&store));
    h.fund(ALICE, 1_000).await;
    let auction = h.create(h.national(100, 10)).await;
    let sent = Arc::new(RecordingNotifier::default());
    let config = RelayConfig {
        queue: 1,
        grace: std::time::Duration::ZERO,
        clock: h.clock.clone(),
        ..RelayConfig::default()
    };
    let relay = Relay::new(Arc::clone(&store), Arc::clone(&sent), config);
    let engine = Engine::with_config(
        Arc::clone(&store),
        relay.sender(),
        h.engine.config().clone(),
    );
    for amount in [100, 110, 120] {
        let bid = bid_of(auction.id, ALICE, amount);
        engine.place_bid(bid, None).await.expect("bid");
    }
    // The relay is not running: the first event waits in its queue.
    let full = RelayCounts {
        queue_full: 2,
        ..RelayCounts::default()
    };
    assert_eq!(relay.counts(), full);

    sent.set_failing(true);
    assert!(relay.deliver_undelivered().await.is_err(), "refused");
    let failed = RelayCounts { failed: 3, ..full };
    assert_eq!(relay.counts(), failed);
    sent.set_failing(false);
    assert_eq!(relay.deliver_undelivered().await.expect("recovery"), 3);
    let recovered = RelayCounts {
        recovered: 3,
        ..failed
    };
    assert_eq!(relay.counts(), recovered);
    assert_eq!(sent.events(), h.outbox(auction.id).await);
}

/// Bids that arrive while their auction's transaction is in flight are
/// decided together in the next one, in arrival order, each with the
/// answer it would have had alone: refusals, replays and key conflicts
/// included.
pub async fn coalesced_bids_share_one_transaction<S: Store>(store: S) {
    let store = GatedStore::new(store);
    let h = Harness::new(Arc::clone(&store));
    for user in [ALICE, BOB, CAROL] {
        h.fund(user, 1_000).await;
    }
    let auction = h.create(h.national(100, 10)).await;
    let begun = store.begun();
    let key = |key: &str| Some(IdempotencyKey::new(key).expect("a key"));
    let plan = [
        (ALICE, 100, key("a-1")), // alone: held at the gate
        (BOB, 110, None),         // from here on, one batch
        (CAROL, 110, None),       // too low once Bob leads
        (CAROL, 120, key("c-1")),
        (CAROL, 120, key("c-1")), // the same request again
        (CAROL, 150, key("c-1")), // the key for another bid
        (ALICE, 100, key("a-1")), // the first request again: from the store
        (ALICE, 130, key("a-2")), // a new key of hers
        (BOB, 140, key("a-1")),   // the same key text, Bob's own
    ];
    store.close();
    let mut tasks = Vec::new();
    for (queued, (bidder, units, key)) in plan.into_iter().enumerate() {
        let engine = h.engine.clone();
        let bid = bid_of(auction.id, bidder, units);
        tasks.push(tokio::spawn(
            async move { engine.place_bid(bid, key).await },
        ));
        let arrived = || match queued {
            0 => store.waiting() == 1,
            _ => h.engine.waiting_bids(auction.id) == queued,
        };
        while !arrived() {
            tokio::task::yield_now().await;
        }
    }
    store.open();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("a bid task"));
    }

    assert_eq!(store.begun() - begun, 2, "one transaction per batch");
    for (index, units) in [(0, 100), (1, 110), (3, 120), (7, 130), (8, 140)] {
        let price = results[index]
            .as_ref()
            .ok()
            .map(|r| r.auction.bidding.current_price);
        assert_eq!(
            price,
            Some(money(units)),
            "bid {index}: {:?}",
            results[index]
        );
    }
    assert_eq!(
        results[2].as_ref().err().and_then(EngineError::rejection),
        Some(&Rejection::BidTooLow {
            min_next_bid: money(120)
        })
    );
    assert_eq!(
        results[4].as_ref().ok(),
        results[3].as_ref().ok(),
        "a replay"
    );
    assert!(matches!(
        results[5],
        Err(EngineError::IdempotencyConflict { .. })
    ));
    assert_eq!(
        results[6].as_ref().ok(),
        results[0].as_ref().ok(),
        "a replay of a committed bid"
    );
    let amounts: Vec<(u64, Money)> = h
        .delivered(auction.id)
        .iter()
        .map(|event| match &event.public[0] {
            PublicEvent::BidPlaced { amount, .. } => (event.seq, *amount),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        amounts,
        [
            (1, money(100)),
            (2, money(110)),
            (3, money(120)),
            (4, money(130)),
            (5, money(140))
        ]
    );
    assert_eq!(h.delivered(auction.id), h.outbox(auction.id).await);
    assert_eq!(h.wallet(BOB).await.locked, money(140));
    for user in [ALICE, CAROL] {
        assert_eq!(h.wallet(user).await.locked, Money::ZERO);
    }
    h.assert_books(&[SELLER, ALICE, BOB, CAROL], money(3_000))
        .await;
    // The replayed key answers later too, from the store.
    let again = h
        .engine
        .place_bid(bid_of(auction.id, CAROL, 120), key("c-1"))
        .await;
    assert_eq!(again.ok(), results[3].as_ref().ok().cloned());
}

async fn next_seqs(watch: &mut Watch, n: usize) -> Vec<u64> {
    let mut seqs = Vec::new();
    for _ in 0..n {
        let delivery = tokio::time::timeout(std::time::Duration::from_secs(10), watch.next())
            .await
            .expect("an event within 10 s");
        match delivery {
            Delivery::Event(event) => seqs.push(event.seq),
            Delivery::Resync => panic!("unexpected resync after {seqs:?}"),
        }
    }
    seqs
}
