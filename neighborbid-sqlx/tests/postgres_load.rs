//! `PgStore` under load, with real concurrent connections: 32 tasks on one
//! hot auction, 32 tasks on many auctions from shared wallets without a
//! single deadlock, and closed auctions' events forgotten while bids, the
//! closer and a relay run. Kept apart from the suite so each runs alone.

use std::time::Duration;

use neighborbid_core::testkit::{self, Load};
use neighborbid_sqlx::testing::TestDatabase;
use sqlx::Row;

const TASKS: usize = 32;
const DURATION: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_auction_with_32_bidders() {
    let db = TestDatabase::create().await;
    let store = db.store_with(db.options().max_connections(32)).await;
    // Keyed, as API clients bid: coalesced batches also store records.
    let load = Load {
        keyed: true,
        ..Load::new(TASKS, DURATION)
    };
    let report = testkit::hot_auction(store.clone(), load).await;
    println!(
        "hot auction on Postgres: {report:?}, {:?}",
        store.conflicts()
    );
    assert!(report.accepted > 0, "{report:?}");
    assert_eq!(store.conflicts().deadlocks, 0);
    let records: i64 = sqlx::query("SELECT count(*) FROM idempotency")
        .fetch_one(store.pool())
        .await
        .expect("the idempotency table")
        .get(0);
    assert_eq!(
        u64::try_from(records).ok(),
        Some(report.accepted),
        "one record per accepted bid (refusals store none)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_auctions_and_wallets_never_deadlock() {
    let db = TestDatabase::create().await;
    let store = db.store_with(db.options().max_connections(32)).await;
    let report = testkit::many_auctions(store.clone(), Load::new(TASKS, DURATION)).await;
    println!(
        "many auctions on Postgres: {report:?}, {:?}",
        store.conflicts()
    );
    assert!(report.accepted > 0, "{report:?}");
    assert_eq!(
        store.conflicts().deadlocks,
        0,
        "40P01 seen by the store: the lock order was broken"
    );
    // The server's own count for this database agrees.
    let deadlocks: i64 =
        sqlx::query("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
            .fetch_one(store.pool())
            .await
            .expect("pg_stat_database")
            .get(0);
    assert_eq!(deadlocks, 0, "40P01 counted by Postgres");
}

/// Forgetting closed auctions' events while bidders, the closer and a relay
/// (which marks events delivered) work on the same rows: every pass
/// succeeds, money is conserved, and once every auction has closed a last
/// pass leaves the outbox empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_forgotten_while_bids_closes_and_a_relay_run() {
    use std::sync::{Arc, Mutex};

    use neighborbid_core::testkit::{assert_books, bid_of, national_auction, RecordingNotifier};
    use neighborbid_core::{
        AuctionId, AuctionStatus, CreateAuction, Engine, EngineError, Money, Page, PlaceBid, Relay,
        RelayConfig, UserId,
    };

    const SELLER: UserId = UserId(1);
    const BIDDERS: [UserId; 4] = [UserId(2), UserId(3), UserId(4), UserId(5)];
    let db = TestDatabase::create().await;
    let store = db.store_with(db.options().max_connections(16)).await;
    let sent = Arc::new(RecordingNotifier::default());
    let config = RelayConfig {
        interval: Duration::from_millis(5),
        grace: Duration::from_millis(20),
        ..RelayConfig::default()
    };
    let relay = Relay::new(store.clone(), Arc::clone(&sent), config);
    let engine = Engine::new(store.clone(), relay.sender());
    let (stop_relay, relay_stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(relay.run(async {
        let _ = relay_stopped.await;
    }));
    testkit::fund(&engine, &BIDDERS, 1_000_000).await;
    let deposits = Money::units(4_000_000);

    let auctions = Arc::new(Mutex::new(Vec::<AuctionId>::new()));
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn({
        let (engine, auctions) = (engine.clone(), Arc::clone(&auctions));
        async move {
            for n in 0_i64.. {
                if tokio::time::Instant::now() >= until {
                    break;
                }
                let lasts = chrono::TimeDelta::milliseconds(100 + 50 * (n % 5));
                let cmd = CreateAuction {
                    ends_at: engine.now() + lasts,
                    ..national_auction(engine.now(), 10, 1)
                };
                let auction = engine.create_auction(cmd, None).await.expect("create");
                auctions.lock().expect("auctions").push(auction.id);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }));
    for (i, bidder) in BIDDERS.into_iter().enumerate() {
        let (engine, auctions) = (engine.clone(), Arc::clone(&auctions));
        tasks.push(tokio::spawn(async move {
            while tokio::time::Instant::now() < until {
                let recent = auctions
                    .lock()
                    .expect("auctions")
                    .iter()
                    .rev()
                    .nth(i % 3)
                    .copied();
                let Some(id) = recent else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                let view = engine.auction(id, Page::first(1)).await.expect("auction");
                let bid = PlaceBid {
                    amount: view.auction.min_next_bid(),
                    ..bid_of(id, bidder, 1)
                };
                match engine.place_bid(bid, None).await {
                    Ok(_) | Err(EngineError::Rejected(_)) => {}
                    Err(error) => panic!("bid failed: {error}"),
                }
            }
        }));
    }
    let closer = tokio::spawn({
        let engine = engine.clone();
        async move {
            while tokio::time::Instant::now() < until {
                engine.close_due_auctions(100).await.expect("close");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    let forgetter = tokio::spawn({
        let engine = engine.clone();
        async move {
            let mut forgotten = 0;
            while tokio::time::Instant::now() < until {
                forgotten += engine.forget_events(Duration::ZERO).await.expect("forget");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            forgotten
        }
    });
    for task in tasks {
        task.await.expect("a task");
    }
    closer.await.expect("the closer");
    let forgotten = forgetter.await.expect("the forgetter");

    // The last auction ends within 300 ms of its creation.
    tokio::time::sleep(Duration::from_millis(350)).await;
    engine.close_due_auctions(1_000).await.expect("close");
    engine.forget_events(Duration::ZERO).await.expect("forget");
    let _ = stop_relay.send(());
    relay.await.expect("the relay");

    let ids = auctions.lock().expect("auctions").clone();
    println!(
        "{} auctions, {forgotten} events forgotten while running, {} sent by the relay, {:?}",
        ids.len(),
        sent.events().len(),
        store.conflicts()
    );
    assert!(forgotten > 0, "a pass ran while auctions closed");
    for id in &ids {
        let view = engine.auction(*id, Page::first(1)).await.expect("auction");
        assert_ne!(
            view.auction.bidding.status,
            AuctionStatus::Open,
            "auction {id}"
        );
    }
    let left: i64 = sqlx::query("SELECT count(*) FROM outbox")
        .fetch_one(store.pool())
        .await
        .expect("the outbox")
        .get(0);
    assert_eq!(left, 0, "every auction closed, every event forgotten");
    let users: Vec<UserId> = std::iter::once(SELLER).chain(BIDDERS).collect();
    assert_books(&engine, &users, deposits).await;
}
