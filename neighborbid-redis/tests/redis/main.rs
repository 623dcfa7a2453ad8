//! Two engine + hub "nodes" on one Postgres database and one Redis, as two
//! server processes behind a load balancer would be: events cross between
//! them in order, a Redis outage and a crash after commit lose nothing, and
//! a watcher that never reads slows nobody.
//!
//! Needs Postgres (`DATABASE_URL`, see `neighborbid_sqlx::testing`) and
//! Redis (`REDIS_URL`, see `neighborbid_redis::testing`); each test has its
//! own database and channel prefix.

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use neighborbid_core::store::Outbox;
use neighborbid_core::testkit::{self, bid_of, TcpProxy, ALICE, BOB};
use neighborbid_core::{
    AuctionId, Delivery, Engine, Hub, Money, NoopNotifier, Notifier, Page, PublicEvent, Relay,
    RelayConfig, RelaySender, Store, Watch,
};
use neighborbid_redis::testing::TestRedis;
use neighborbid_redis::{RedisConfig, RedisNotifier, Subscriber};
use neighborbid_sqlx::testing::TestDatabase;
use neighborbid_sqlx::PgStore;
use redis::ConnectionAddr;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a watcher may wait for any one delivery.
const PATIENCE: Duration = Duration::from_secs(15);

/// One server process: an engine whose events go to its hub and, through a
/// relay, to Redis; and a subscriber feeding the hub from Redis.
struct Node {
    engine: Engine<PgStore, (Hub, RelaySender)>,
    hub: Hub,
    /// Whether the node's subscriber is connected.
    connected: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Node {
    async fn start(db: &TestDatabase, redis: &RedisConfig, hub: Hub) -> Node {
        Node::with_relay(db, redis, hub, fast_relay()).await
    }

    async fn with_relay(
        db: &TestDatabase,
        redis: &RedisConfig,
        hub: Hub,
        relay: RelayConfig,
    ) -> Node {
        let store = db.store().await;
        let notifier = RedisNotifier::new(redis).expect("Redis URL");
        let relay = Relay::new(store.clone(), notifier, relay);
        let engine = Engine::new(store, (hub.clone(), relay.sender()));
        let subscriber = Subscriber::new(redis, hub.clone()).expect("Redis URL");
        let mut connected = subscriber.connected();
        let (stop, stopped) = watch::channel(false);
        let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let tasks = vec![
            tokio::spawn(relay.run(until_stopped(stopped.clone()))),
            tokio::spawn(subscriber.run(until_stopped(stopped))),
        ];
        // Rooms opened before the first connection would be told to
        // resynchronize when it comes; the tests open theirs after.
        tokio::time::timeout(PATIENCE, connected.wait_for(|up| *up))
            .await
            .expect("the subscriber connects")
            .expect("the subscriber runs");
        Node {
            engine,
            hub,
            connected,
            stop,
            tasks,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            task.await.expect("node task");
        }
    }
}

/// A relay that recovers within a fraction of a second, to keep tests short.
fn fast_relay() -> RelayConfig {
    RelayConfig {
        grace: Duration::from_millis(300),
        interval: Duration::from_millis(100),
        ..RelayConfig::default()
    }
}

/// A national auction with rich bidders [`ALICE`] and [`BOB`].
async fn open_auction<N: Notifier>(engine: &Engine<PgStore, N>) -> AuctionId {
    testkit::fund(engine, &[ALICE, BOB], 1_000_000).await;
    let auction = testkit::national_auction(engine.now(), 100, 1);
    engine
        .create_auction(auction, None)
        .await
        .expect("create")
        .id
}

/// `count` winning bids, ALICE and BOB in turn, each one unit above the
/// last; every one must commit.
async fn bid<N: Notifier>(engine: &Engine<PgStore, N>, auction: AuctionId, count: u64) {
    for _ in 0..count {
        let now = engine
            .auction(auction, Page::first(1))
            .await
            .expect("auction")
            .auction;
        let bidder = if now.bidding.leader == Some(ALICE) {
            BOB
        } else {
            ALICE
        };
        let units = 100 + u64::from(now.bidding.bid_count);
        engine
            .place_bid(bid_of(auction, bidder, units), None)
            .await
            .expect("the bid commits");
    }
}

/// What a watcher's screen shows of an auction: the state of its last
/// event or snapshot.
struct Screen {
    watch: Watch,
    seq: u64,
    price: Money,
    /// Sequence numbers received as events, in order.
    events: Vec<u64>,
    resyncs: u32,
    /// The longest time from an event's commit to its arrival here.
    max_latency: Duration,
}

impl Screen {
    /// Watches, then loads the snapshot, as the WebSocket handler does.
    async fn open<N: Notifier>(engine: &Engine<PgStore, N>, hub: &Hub, auction: AuctionId) -> Self {
        let mut screen = Screen {
            watch: hub.watch(auction, None),
            seq: 0,
            price: Money::ZERO,
            events: Vec::new(),
            resyncs: 0,
            max_latency: Duration::ZERO,
        };
        screen.reload(engine).await;
        screen
    }

    async fn reload<N: Notifier>(&mut self, engine: &Engine<PgStore, N>) {
        let auction = engine
            .auction(self.watch.auction(), Page::first(1))
            .await
            .expect("snapshot")
            .auction;
        self.seq = auction.bidding.seq;
        self.price = auction.bidding.current_price;
        self.watch.resume_after(auction.bidding.seq);
    }

    /// Applies deliveries until the screen shows `seq`.
    async fn follow_to<N: Notifier>(&mut self, engine: &Engine<PgStore, N>, seq: u64) {
        while self.seq < seq {
            let delivery = tokio::time::timeout(PATIENCE, self.watch.next())
                .await
                .unwrap_or_else(|_| panic!("stuck at {} waiting for {seq}", self.seq));
            match delivery {
                Delivery::Event(event) => {
                    assert_eq!(event.seq, self.seq + 1, "events arrive in order, no gaps");
                    let latency = (Utc::now() - event.at).to_std().unwrap_or_default();
                    self.max_latency = self.max_latency.max(latency);
                    self.seq = event.seq;
                    self.events.push(event.seq);
                    for public in &event.public {
                        if let PublicEvent::BidPlaced { amount, .. } = public {
                            self.price = *amount;
                        }
                    }
                }
                Delivery::Resync => {
                    self.resyncs += 1;
                    self.reload(engine).await;
                }
            }
        }
    }

    /// Nothing more arrives for a while.
    async fn assert_quiet(&mut self) {
        let more = tokio::time::timeout(Duration::from_millis(500), self.watch.next()).await;
        assert!(more.is_err(), "unexpected delivery: {more:?}");
    }
}

async fn assert_all_delivered(store: &PgStore) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut tx = store.begin().await.expect("begin");
        let left = tx
            .undelivered_events(Utc::now() + TimeDelta::days(1), 1_000)
            .await
            .expect("outbox");
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} events never left the outbox",
            left.len()
        );
        drop(tx);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn price_in_database<N: Notifier>(
    engine: &Engine<PgStore, N>,
    auction: AuctionId,
) -> (u64, Money) {
    let auction = engine
        .auction(auction, Page::first(1))
        .await
        .expect("auction")
        .auction;
    (auction.bidding.seq, auction.bidding.current_price)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_on_node_b_gets_every_event_of_bids_on_node_a() {
    let db = TestDatabase::create().await;
    let redis = TestRedis::connect().await;
    let a = Node::start(&db, redis.config(), Hub::default()).await;
    let b = Node::start(&db, redis.config(), Hub::default()).await;
    let auction = open_auction(&a.engine).await;
    let mut on_b = Screen::open(&b.engine, &b.hub, auction).await;
    let mut on_a = Screen::open(&a.engine, &a.hub, auction).await;
    redis.wait_for_subscribers(auction, 2).await;

    tokio::join!(
        bid(&a.engine, auction, 300),
        on_b.follow_to(&b.engine, 300),
        on_a.follow_to(&a.engine, 300),
    );
    for screen in [&on_a, &on_b] {
        assert_eq!(screen.resyncs, 0);
        assert_eq!(screen.events, (1..=300).collect::<Vec<_>>());
        assert_eq!(
            (screen.seq, screen.price),
            price_in_database(&b.engine, auction).await
        );
    }
    println!(
        "300 bids on node A; slowest event reached node B after {:?}",
        on_b.max_latency
    );
    a.stop().await;
    b.stop().await;
    assert_all_delivered(&db.store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribed_connection_stays_up_across_many_health_checks() {
    let db = TestDatabase::create().await;
    let redis = TestRedis::connect().await;
    let checked_often = RedisConfig {
        health_check: Duration::from_millis(50),
        ..redis.config().clone()
    };
    let a = Node::start(&db, &checked_often, Hub::default()).await;
    let mut b = Node::start(&db, &checked_often, Hub::default()).await;
    let auction = open_auction(&a.engine).await;
    let mut on_b = Screen::open(&b.engine, &b.hub, auction).await;
    redis.wait_for_subscribers(auction, 1).await;
    b.connected.borrow_and_update();

    // Twenty health checks on a connection in subscribed mode, where
    // Redis answers PING with an array rather than a string.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert!(
        !b.connected.has_changed().expect("subscriber runs"),
        "the subscriber never dropped its connection"
    );
    assert!(
        on_b.watch.try_next().is_none(),
        "no resynchronization reached the room"
    );
    bid(&a.engine, auction, 5).await;
    on_b.follow_to(&b.engine, 5).await;
    assert_eq!(on_b.resyncs, 0);
    assert_eq!(on_b.events, [1, 2, 3, 4, 5]);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bids_go_on_through_a_redis_outage_and_watchers_catch_up() {
    let db = TestDatabase::create().await;
    let redis = TestRedis::connect().await;
    let ConnectionAddr::Tcp(host, port) = redis.client().get_connection_info().addr().clone()
    else {
        panic!("REDIS_URL must be a TCP address for this test");
    };
    let proxy = TcpProxy::start(format!("{host}:{port}")).await;
    let through_proxy = RedisConfig {
        url: format!("redis://{}", proxy.address()),
        ..redis.config().clone()
    };
    let a = Node::start(&db, &through_proxy, Hub::default()).await;
    let b = Node::start(&db, &through_proxy, Hub::default()).await;
    let auction = open_auction(&a.engine).await;
    let mut on_b = Screen::open(&b.engine, &b.hub, auction).await;
    redis.wait_for_subscribers(auction, 1).await;

    bid(&a.engine, auction, 20).await;
    on_b.follow_to(&b.engine, 20).await;

    proxy.cut();
    let outage = Instant::now();
    bid(&a.engine, auction, 40).await;
    println!(
        "40 bids committed during the outage in {:?}",
        outage.elapsed()
    );
    proxy.restore();
    bid(&a.engine, auction, 20).await;

    on_b.follow_to(&b.engine, 80).await;
    assert!(
        on_b.resyncs >= 1,
        "the reconnected subscriber told the room it may have missed events"
    );
    assert_eq!(
        (on_b.seq, on_b.price),
        price_in_database(&b.engine, auction).await
    );
    assert_all_delivered(a.engine.store()).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_committed_before_a_crash_are_relayed_once_each_on_restart() {
    use neighborbid_core::testkit::{Fault, FaultyStore};

    let db = TestDatabase::create().await;
    let redis = TestRedis::connect().await;
    // Node B's own relay must leave A's events alone: here only A's
    // restart may deliver them.
    let patient = RelayConfig {
        grace: Duration::from_secs(3600),
        ..fast_relay()
    };
    let b = Node::with_relay(&db, redis.config(), Hub::default(), patient).await;
    // Node A commits, then dies before publishing anything.
    let dying = Engine::new(db.store().await, NoopNotifier);
    let auction = open_auction(&dying).await;
    let mut on_b = Screen::open(&b.engine, &b.hub, auction).await;
    redis.wait_for_subscribers(auction, 1).await;
    let mut raw = redis
        .client()
        .get_async_pubsub()
        .await
        .expect("raw subscriber");
    raw.subscribe(redis.config().channel(auction))
        .await
        .expect("subscribe");
    bid(&dying, auction, 30).await;
    drop(dying);

    // On restart, its relay publishes all 30, then dies before marking
    // them delivered; the next start publishes them all again.
    let store = FaultyStore::new(db.store().await);
    store.switch().arm(Fault::MarkDelivered);
    let notifier = RedisNotifier::new(redis.config()).expect("Redis URL");
    let instant = RelayConfig {
        grace: Duration::ZERO,
        ..RelayConfig::default()
    };
    let relay = Relay::new(store, notifier, instant);
    assert!(relay.deliver_undelivered().await.is_err());
    assert_eq!(relay.deliver_undelivered().await.expect("restart"), 30);
    assert_eq!(relay.deliver_undelivered().await.expect("done"), 0);

    let mut published = Vec::new();
    let mut messages = raw.on_message();
    while published.len() < 60 {
        let message = tokio::time::timeout(PATIENCE, futures_next(&mut messages))
            .await
            .expect("published");
        let event: neighborbid_core::Event =
            serde_json::from_slice(message.get_payload_bytes()).expect("an event");
        published.push(event.seq);
    }
    let once: Vec<u64> = (1..=30).collect();
    assert_eq!(
        published,
        [once.clone(), once.clone()].concat(),
        "at least once"
    );

    on_b.follow_to(&b.engine, 30).await;
    assert_eq!(on_b.events, once, "each applied once, in order");
    assert_eq!(on_b.resyncs, 0);
    on_b.assert_quiet().await;
    assert_all_delivered(&db.store().await).await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_never_reads_slows_nobody_and_holds_no_backlog() {
    const BUFFER: usize = 16;
    let db = TestDatabase::create().await;
    let redis = TestRedis::connect().await;
    let a = Node::start(&db, redis.config(), Hub::default()).await;
    let b = Node::start(&db, redis.config(), Hub::new(BUFFER)).await;
    let auction = open_auction(&a.engine).await;
    let mut stuck = b.hub.watch(auction, None);
    let mut readers = Vec::new();
    for _ in 0..3 {
        readers.push(Screen::open(&b.engine, &b.hub, auction).await);
    }
    redis.wait_for_subscribers(auction, 1).await;

    let following = readers
        .iter_mut()
        .map(|reader| reader.follow_to(&b.engine, 200));
    tokio::join!(
        bid(&a.engine, auction, 200),
        futures_util::future::join_all(following)
    );
    for reader in &readers {
        assert_eq!(
            reader.resyncs, 0,
            "a reader kept up beside the stuck watcher"
        );
        assert_eq!(reader.events, (1..=200).collect::<Vec<_>>());
    }
    println!(
        "slowest event to a reader beside a stuck watcher: {:?}",
        readers.iter().map(|r| r.max_latency).max()
    );
    // The stuck watcher's room kept at most BUFFER events for it: it is
    // told to reload instead of being handed 200.
    assert_eq!(stuck.next().await, Delivery::Resync);
    stuck.resume_after(200);
    bid(&a.engine, auction, 1).await;
    let next = tokio::time::timeout(PATIENCE, stuck.next())
        .await
        .expect("event");
    assert!(matches!(next, Delivery::Event(event) if event.seq == 201));
    a.stop().await;
    b.stop().await;
}

async fn futures_next<S: futures_util::Stream + Unpin>(stream: &mut S) -> S::Item {
    use futures_util::StreamExt;
    stream.next().await.expect("the stream ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_auctions_stay_in_their_process_unless_fanned_out() {
    let redis = TestRedis::connect().await;
    let event = |auction: i64, local: bool| neighborbid_core::Event {
        auction_id: AuctionId(auction),
        seq: 1,
        at: Utc::now(),
        local,
        public: vec![PublicEvent::Unsold],
        private: Vec::new(),
    };
    let (local, national) = (event(1, true), event(2, false));
    let mut raw = redis
        .client()
        .get_async_pubsub()
        .await
        .expect("raw subscriber");
    for auction in [local.auction_id, national.auction_id] {
        raw.subscribe(redis.config().channel(auction))
            .await
            .expect("subscribe");
    }
    let mut fan_out = redis.config().clone();
    fan_out.fan_out_local = true;
    for config in [redis.config(), &fan_out] {
        let notifier = RedisNotifier::new(config).expect("Redis URL");
        notifier
            .notify(&[local.clone(), national.clone()])
            .await
            .expect("published");
    }
    // Messages on one connection arrive in publish order: the default
    // notifier sent only the national event, the fanning one both.
    let mut messages = raw.on_message();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let message = tokio::time::timeout(PATIENCE, futures_next(&mut messages))
            .await
            .expect("published");
        seen.push(message.get_channel_name().to_owned());
    }
    let channel = |event: &neighborbid_core::Event| redis.config().channel(event.auction_id);
    assert_eq!(
        seen,
        [channel(&national), channel(&local), channel(&national)]
    );
}
