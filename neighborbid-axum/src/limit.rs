//! Per-user rate limiting of mutating requests (HTTP and WebSocket bids
//! share one budget).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use axum::http::StatusCode;
use neighborbid_core::UserId;

use crate::error::ApiError;

/// How many mutating requests a user may send: a sustained rate and a
/// burst (a token bucket).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second, sustained.
    pub per_second: u32,
    /// Requests allowed at once after a quiet spell.
    pub burst: u32,
}

impl Default for RateLimit {
    /// 20 a second, bursts of 40: far above a person, well below a script
    /// hammering the database.
    fn default() -> Self {
        RateLimit {
            per_second: 20,
            burst: 40,
        }
    }
}

/// Buckets beyond which idle ones are forgotten.
const MAX_BUCKETS: usize = 100_000;

#[derive(Debug)]
pub(crate) struct Limiter {
    limit: Option<RateLimit>,
    buckets: Mutex<HashMap<UserId, (f64, Instant)>>,
}

impl Limiter {
    pub(crate) fn new(limit: Option<RateLimit>) -> Limiter {
        Limiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `user`'s budget, or says to slow down.
    pub(crate) fn check(&self, user: UserId) -> Result<(), ApiError> {
        self.check_at(user, Instant::now())
    }

    /// [`check`](Self::check) at `now` (the tests drive the clock).
    fn check_at(&self, user: UserId, now: Instant) -> Result<(), ApiError> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let (rate, burst) = (f64::from(limit.per_second), f64::from(limit.burst.max(1)));
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_BUCKETS {
            // A bucket refilled to the brim carries no information.
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets.entry(user).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens < 1.0 {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests; slow down",
            ));
        }
        *tokens -= 1.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limited(per_second: u32, burst: u32) -> Limiter {
        Limiter::new(Some(RateLimit { per_second, burst }))
    }

    #[test]
    fn a_burst_passes_then_the_user_is_told_to_slow_down_alone() {
        let limiter = limited(1, 3);
        for _ in 0..3 {
            limiter.check(UserId(1)).expect("within the burst");
        }
        let refused = limiter.check(UserId(1)).expect_err("over the burst");
        assert_eq!(
            (refused.status().as_u16(), refused.code()),
            (429, "rate_limited")
        );
        limiter.check(UserId(2)).expect("others are not affected");
        assert!(Limiter::new(None).check(UserId(1)).is_ok());
    }

    /// How many of `user`'s requests at `at` pass before one is refused
    /// (up to 100).
    fn passing(limiter: &Limiter, user: UserId, at: Instant) -> usize {
        (0..100)
            .take_while(|_| limiter.check_at(user, at).is_ok())
            .count()
    }

    #[test]
    fn the_budget_refills_at_the_rate_up_to_the_burst() {
        let limiter = limited(2, 4);
        let t0 = Instant::now();
        let after = |millis| t0 + Duration::from_millis(millis);
        assert_eq!(passing(&limiter, UserId(1), t0), 4);
        assert_eq!(
            passing(&limiter, UserId(1), after(250)),
            0,
            "half a request"
        );
        assert_eq!(passing(&limiter, UserId(1), after(500)), 1, "a whole one");
        assert_eq!(
            passing(&limiter, UserId(1), after(100_000)),
            4,
            "never above the burst"
        );
    }

    #[test]
    fn only_full_buckets_are_forgotten_when_there_are_too_many() {
        let limiter = limited(3, 4);
        let t0 = Instant::now();
        let buckets = || limiter.buckets.lock().unwrap().len();
        // User 0 spends everything, user 1 all but one; the rest one each.
        assert_eq!(passing(&limiter, UserId(0), t0), 4);
        for _ in 0..3 {
            limiter.check_at(UserId(1), t0).expect("within the burst");
        }
        for user in 2..MAX_BUCKETS as i64 {
            limiter.check_at(UserId(user), t0).expect("a first request");
        }
        assert_eq!(buckets(), MAX_BUCKETS);
        // A second later the one-request users are full again (3 + 3
        // tokens, at most 4), and so is user 1, exactly (1 + 3); user 0 is
        // not (3).
        let later = t0 + Duration::from_secs(1);
        limiter.check_at(UserId(-1), later).expect("a newcomer");
        assert_eq!(buckets(), 2, "user 0 and the newcomer");
        assert_eq!(
            passing(&limiter, UserId(0), later),
            3,
            "user 0 kept its debt"
        );
    }
}
