//! The watches' backoff: doubling from 250 ms to 4 s. kube-runtime's
//! default climbs to 30 s, so a control plane back from a 20-second
//! upgrade was seen again only after a further 10 to 30 s; these watches
//! are a handful per process, cheap to retry sooner.

use std::time::Duration;

use kube::runtime::utils::{Backoff, ResetTimerBackoff};

const FIRST: Duration = Duration::from_millis(250);
const MOST: Duration = Duration::from_secs(4);
/// A watch that ran this long without failing starts again from `FIRST`.
const RESET_AFTER: Duration = Duration::from_secs(60);

/// Doubling waits from `FIRST`, capped at `MOST`; never gives up.
#[derive(Clone, Debug)]
pub struct Doubling {
    next: Duration,
}

impl Default for Doubling {
    fn default() -> Self {
        Doubling { next: FIRST }
    }
}

impl Iterator for Doubling {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let wait = self.next;
        self.next = self.next.saturating_mul(2).min(MOST);
        Some(wait)
    }
}

impl Backoff for Doubling {
    fn reset(&mut self) {
        self.next = FIRST;
    }
}

/// The backoff every watch of the state uses.
pub fn watch_backoff() -> ResetTimerBackoff<Doubling> {
    ResetTimerBackoff::new(Doubling::default(), RESET_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_four_seconds_and_reset() {
        let millis: Vec<u128> = Doubling::default().take(7).map(|d| d.as_millis()).collect();
        assert_eq!(millis, [250, 500, 1000, 2000, 4000, 4000, 4000]);
        let mut backoff = Doubling::default();
        backoff.nth(5);
        backoff.reset();
        assert_eq!(backoff.next(), Some(FIRST));
    }
}
