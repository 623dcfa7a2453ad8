//! A reachable Redis and a channel prefix of one's own, per test (feature
//! `testing`).
//!
//! [`TestRedis::connect`] uses the server that `REDIS_URL` names
//! (`redis://127.0.0.1:6379` when unset). When none answers, the test fails
//! and says how to provide one; it is never skipped.

use std::time::Duration;

use neighborbid_core::AuctionId;

use crate::RedisConfig;

/// The Redis server of one test, with a prefix no other test uses.
#[derive(Debug)]
pub struct TestRedis {
    config: RedisConfig,
    client: redis::Client,
}

impl TestRedis {
    /// Connects to `REDIS_URL` and picks a fresh channel prefix.
    ///
    /// # Panics
    ///
    /// When no Redis answers, with a message saying how to provide one.
    pub async fn connect() -> TestRedis {
        let url =
            std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let client = redis::Client::open(url.as_str())
            .unwrap_or_else(|error| panic!("REDIS_URL={url} is not a Redis URL: {error}"));
        let ping = async {
            let mut connection = client.get_multiplexed_async_connection().await?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
        };
        match tokio::time::timeout(Duration::from_secs(5), ping).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => panic!("{}", no_redis(&url, &error.to_string())),
            Err(_) => panic!("{}", no_redis(&url, "no answer within 5 s")),
        }
        let mut config = RedisConfig::new(url);
        config.prefix = format!("neighborbid-test-{:016x}", fastrand::u64(..));
        TestRedis { config, client }
    }

    /// The configuration to give the code under test.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// Waits until at least `subscribers` connections listen to `auction`'s
    /// channel, so that nothing published afterwards can miss them.
    ///
    /// # Panics
    ///
    /// When that does not happen within 10 seconds.
    pub async fn wait_for_subscribers(&self, auction: AuctionId, subscribers: u64) {
        let channel = self.config.channel(auction);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if self.subscribers(&channel).await >= subscribers {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{channel} did not get {subscribers} subscribers within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A connection to publish or subscribe with directly.
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    async fn subscribers(&self, channel: &str) -> u64 {
        let mut connection = self
            .client
            .get_multiplexed_async_connection()
            .await
            .expect("Redis went away during the test");
        let (_, count): (String, u64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async(&mut connection)
            .await
            .expect("PUBSUB NUMSUB");
        count
    }
}

fn no_redis(url: &str, error: &str) -> String {
    format!(
        "this test needs Redis, and none answered at {url} ({error}). Start one \
         (for example `docker run --rm -p 6379:6379 redis:7`) and point REDIS_URL at it."
    )
}
