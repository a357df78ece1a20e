//! When a batch of pending pods is complete: after `idle` without a new
//! pending pod, or `max` after the first one, whichever comes first. Big
//! scale-ups then solve together (one good packing instead of many small
//! launches), and a trickle of pods still waits at most `max`.

use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Batcher {
    idle: Duration,
    max: Duration,
    opened: Option<Instant>,
    last: Option<Instant>,
}

impl Batcher {
    pub fn new(idle: Duration, max: Duration) -> Self {
        Batcher {
            idle,
            max,
            opened: None,
            last: None,
        }
    }

    /// A pending pod not seen before arrived at `now`.
    pub fn observe(&mut self, now: Instant) {
        self.opened.get_or_insert(now);
        self.last = Some(now);
    }

    pub fn is_open(&self) -> bool {
        self.opened.is_some()
    }

    /// When the open batch closes; `None` when no batch is open.
    pub fn deadline(&self) -> Option<Instant> {
        let opened = self.opened?;
        let last = self.last.unwrap_or(opened);
        Some((last + self.idle).min(opened + self.max))
    }

    /// When the open batch will have gone `quiet` without a new pending
    /// pod; `None` when no batch is open.
    pub fn quiet_at(&self, quiet: Duration) -> Option<Instant> {
        self.opened?;
        Some(self.last? + quiet)
    }

    pub fn is_due(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|d| now >= d)
    }

    pub fn close(&mut self) {
        self.opened = None;
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const IDLE: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(10);

    #[test]
    fn closes_after_idle() {
        let t0 = Instant::now();
        let mut b = Batcher::new(IDLE, MAX);
        assert!(!b.is_due(t0));
        b.observe(t0);
        b.observe(t0 + Duration::from_millis(600));
        assert!(!b.is_due(t0 + Duration::from_millis(1500)));
        assert!(b.is_due(t0 + Duration::from_millis(1600)));
        b.close();
        assert!(!b.is_open());
    }

    #[test]
    fn quiet_counts_from_the_last_pod_of_the_open_batch() {
        let t0 = Instant::now();
        let quiet = Duration::from_millis(300);
        let mut b = Batcher::new(IDLE, MAX);
        assert_eq!(b.quiet_at(quiet), None);
        b.observe(t0);
        b.observe(t0 + Duration::from_millis(200));
        assert_eq!(b.quiet_at(quiet), Some(t0 + Duration::from_millis(500)));
        b.close();
        assert_eq!(b.quiet_at(quiet), None);
    }

    #[test]
    fn a_steady_trickle_still_closes_at_max() {
        let t0 = Instant::now();
        let mut b = Batcher::new(IDLE, MAX);
        for i in 0..30 {
            b.observe(t0 + Duration::from_millis(500 * i));
        }
        assert_eq!(b.deadline(), Some(t0 + MAX));
    }

    proptest! {
        #[test]
        fn the_deadline_is_never_later_than_max_after_opening(gaps in proptest::collection::vec(0u64..3000, 1..50)) {
            let t0 = Instant::now();
            let mut b = Batcher::new(IDLE, MAX);
            let mut now = t0;
            let mut first = None;
            for gap in gaps {
                now += Duration::from_millis(gap);
                b.observe(now);
                let opened = *first.get_or_insert(now);
                let deadline = b.deadline().unwrap();
                prop_assert!(deadline <= opened + MAX);
                prop_assert!(deadline <= now + IDLE);
                prop_assert!(deadline >= now.min(opened + MAX));
            }
        }
    }
}
