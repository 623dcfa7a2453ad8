//! Server time. The engine reads the clock once per command; the client's
//! clock never decides anything.

use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};

/// A point in server time (UTC).
pub type Timestamp = DateTime<Utc>;

/// Drops sub-microsecond precision, which SQL databases do not keep, so a
/// stored timestamp reads back equal.
pub fn to_micros(at: Timestamp) -> Timestamp {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

/// Where the engine gets the time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The current time, to the microsecond.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        to_micros(Utc::now())
    }
}

/// A clock that moves only when told to, for tests and simulations.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock {
            now: Mutex::new(to_micros(start)),
        }
    }

    /// Moves the clock forward (or backward, for a negative delta).
    pub fn advance(&self, by: TimeDelta) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now = to_micros(*now + by);
    }

    /// Sets the clock.
    pub fn set(&self, at: Timestamp) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = to_micros(at);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}
