//! The time decisions are made at: injected, so that the paths that depend
//! on it (conditions, pool status, budgets, timeouts) are tested without
//! sleeping.

use std::sync::{Arc, Mutex};

use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Tells the time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;

    /// Now, to the second: what a condition's `lastTransitionTime` holds.
    fn now_seconds(&self) -> Timestamp {
        Timestamp::from_second(self.now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

/// The system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that stands still until moved: for tests.
#[derive(Clone, Debug)]
pub struct FixedClock(Arc<Mutex<Timestamp>>);

impl FixedClock {
    pub fn at(now: Timestamp) -> Self {
        FixedClock(Arc::new(Mutex::new(now)))
    }

    /// Moves the clock on by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        if let (Ok(mut now), Ok(by)) = (self.0.lock(), SignedDuration::try_from(by)) {
            *now = now.checked_add(by).unwrap_or(*now);
        }
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0.lock().map(|t| *t).unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

/// The clock every controller shares.
pub type SharedClock = Arc<dyn Clock>;
