//! Time is an input. Whatever decides by the time (a grant's expiry, an event's timestamp, a
//! record's `updated_at`) reads it from a [`Clock`] it was given: the system's in a server, a
//! [`ManualClock`] in a test, which moves only when the test moves it, so expiry is tested
//! exactly and without waiting.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::UnixSeconds;

/// Where the time comes from; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// `None`: the system clock. Otherwise milliseconds since the epoch, set by a test.
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match &self.manual {
            Some(ms) => ms.load(Ordering::SeqCst),
            None => system_ms(),
        }
    }

    /// Seconds since the Unix epoch, the unit stored and sent.
    pub fn now(&self) -> UnixSeconds {
        self.now_ms().div_euclid(1000)
    }
}

fn system_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A clock that stands still until moved, for tests. Every [`Clock`] taken from it with
/// [`ManualClock::clock`] reads the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    ms: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock standing at the system's time now.
    pub fn starting_now() -> Self {
        Self {
            ms: Arc::new(AtomicI64::new(system_ms())),
        }
    }

    /// A [`Clock`] reading this one.
    pub fn clock(&self) -> Clock {
        Clock {
            manual: Some(self.ms.clone()),
        }
    }

    /// Seconds since the Unix epoch.
    pub fn now(&self) -> UnixSeconds {
        self.clock().now()
    }

    /// Sets the time (a test on dates: a deadline across a holiday); it may go back.
    pub fn set(&self, at: UnixSeconds) {
        self.ms.store(at.saturating_mul(1000), Ordering::SeqCst);
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.ms.fetch_add(by, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_moved_and_every_reader_sees_it() {
        let manual = ManualClock::starting_now();
        let (a, b) = (manual.clock(), manual.clock());
        let start = a.now_ms();
        assert_eq!(b.now_ms(), start);
        manual.advance(Duration::from_millis(61_500));
        assert_eq!(a.now_ms(), start + 61_500);
        assert_eq!(b.now(), (start + 61_500).div_euclid(1000));
        let system = Clock::system().now();
        assert!((system - start / 1000).abs() < 5, "the system clock is the time now");
    }
}
