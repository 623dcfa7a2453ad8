//! Failed log-ins, counted per account and per client address, so nobody
//! can guess passwords, or keep the server hashing, faster than a person
//! types: past a few free failures each further try must wait twice as
//! long as the last, up to [`MAX_WAIT`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures an account may have before it must wait.
pub(crate) const FREE_PER_ACCOUNT: u32 = 5;
/// Failures a client address may have before it must wait (households
/// share one address).
pub(crate) const FREE_PER_CLIENT: u32 = 20;
/// The longest wait.
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// Failures older than this are forgotten.
const MEMORY: Duration = Duration::from_secs(60 * 60);
/// Entries kept before old ones are swept.
const SWEEP_AT: usize = 10_000;

/// What is counted: an account's name or a client's address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Client(IpAddr),
}

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    last: Instant,
}

/// The failed log-ins of the last hour.
#[derive(Debug, Default)]
pub(crate) struct LoginThrottle {
    failures: Mutex<HashMap<Key, Failures>>,
}

impl LoginThrottle {
    /// How long `username` from `client` must still wait before trying,
    /// or `None` when it may try now.
    pub(crate) fn wait(&self, username: &str, client: IpAddr, now: Instant) -> Option<Duration> {
        let failures = self.lock();
        let wait = |key: Key, free: u32| {
            let entry = failures.get(&key)?;
            let over = entry.count.checked_sub(free)?;
            let due = entry.last + backoff(over);
            (due > now).then(|| due - now)
        };
        let account = wait(Key::Account(username.to_owned()), FREE_PER_ACCOUNT);
        let client = wait(Key::Client(client), FREE_PER_CLIENT);
        account.max(client)
    }

    /// Counts a failed log-in.
    pub(crate) fn failed(&self, username: &str, client: IpAddr, now: Instant) {
        let mut failures = self.lock();
        if failures.len() >= SWEEP_AT {
            failures.retain(|_, entry| now.duration_since(entry.last) < MEMORY);
        }
        for key in [Key::Account(username.to_owned()), Key::Client(client)] {
            let entry = failures.entry(key).or_insert(Failures {
                count: 0,
                last: now,
            });
            if now.duration_since(entry.last) >= MEMORY {
                entry.count = 0;
            }
            entry.count += 1;
            entry.last = now;
        }
    }

    /// Forgets an account's failures once its password was given.
    pub(crate) fn succeeded(&self, username: &str) {
        self.lock().remove(&Key::Account(username.to_owned()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Failures>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The wait after the `over`-th failure beyond the free ones: 1 s, then
/// doubling, at most [`MAX_WAIT`].
fn backoff(over: u32) -> Duration {
    Duration::from_secs(1u64 << over.min(20)).min(MAX_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn an_account_waits_after_its_free_failures_and_longer_each_time() {
        let throttle = LoginThrottle::default();
        let start = Instant::now();
        for _ in 0..FREE_PER_ACCOUNT {
            assert_eq!(throttle.wait("mina", HOME, start), None);
            throttle.failed("mina", HOME, start);
        }
        assert_eq!(
            throttle.wait("mina", HOME, start),
            Some(Duration::from_secs(1))
        );
        assert_eq!(throttle.wait("jun", HOME, start), None, "others may try");
        let later = start + Duration::from_secs(1);
        assert_eq!(throttle.wait("mina", HOME, later), None);
        throttle.failed("mina", HOME, later);
        assert_eq!(
            throttle.wait("mina", HOME, later),
            Some(Duration::from_secs(2))
        );
        throttle.succeeded("mina");
        assert_eq!(throttle.wait("mina", HOME, later), None);
    }

    #[test]
    fn a_client_trying_many_accounts_waits_too() {
        let throttle = LoginThrottle::default();
        let now = Instant::now();
        for n in 0..FREE_PER_CLIENT {
            throttle.failed(&format!("user{n}"), HOME, now);
        }
        assert!(throttle.wait("someone-else", HOME, now).is_some());
        let elsewhere = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(throttle.wait("someone-else", elsewhere, now), None);
    }

    #[test]
    fn waits_double_up_to_fifteen_minutes_and_failures_are_forgotten_after_an_hour() {
        let waits: Vec<u64> = (0..12).map(|over| backoff(over).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900]);
        let throttle = LoginThrottle::default();
        let start = Instant::now();
        for _ in 0..FREE_PER_ACCOUNT + 3 {
            throttle.failed("mina", HOME, start);
        }
        let next_hour = start + MEMORY;
        throttle.failed("mina", HOME, next_hour);
        assert_eq!(
            throttle.wait("mina", HOME, next_hour),
            None,
            "counted afresh"
        );
    }
}
