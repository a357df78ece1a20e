//! What disrupting costs, and the guard against churn that is about time:
//! how often a NodePool may consolidate. (How long a node's pods have been
//! settled is [`crate::model::pod_events`].)

use std::collections::VecDeque;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::model::claim::elapsed;

/// The eviction cost of one pod, as Karpenter weighs it: 1, plus its
/// `pod-deletion-cost` over 2^27, plus its priority over 2^25, kept within
/// 0 and 10 (so no pod makes a disruption cheaper than none, and a
/// system-critical one counts as ten).
pub fn pod_cost(priority: i32, deletion_cost: i32) -> f64 {
    let cost = 1.0 + f64::from(deletion_cost) / 2f64.powi(27) + f64::from(priority) / 2f64.powi(25);
    cost.clamp(0.0, 10.0)
}

/// A per-NodePool limit on consolidation actions: at most `max` begun in
/// any `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub max: usize,
    pub window: Duration,
}

impl RateLimit {
    /// Whether one more may begin now, given when the pool's last ones
    /// began (oldest first); forgets those out of the window.
    pub fn allows(&self, begun: &mut VecDeque<Timestamp>, now: Timestamp) -> bool {
        while begun
            .front()
            .is_some_and(|t| elapsed(*t, now) >= self.window)
        {
            begun.pop_front();
        }
        begun.len() < self.max
    }

    /// When the next may begin: `None` when one may begin now.
    pub fn wait(&self, begun: &VecDeque<Timestamp>, now: Timestamp) -> Option<Duration> {
        if begun.len() < self.max {
            return None;
        }
        let oldest = begun.get(begun.len() - self.max)?;
        Some(self.window.saturating_sub(elapsed(*oldest, now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn pod_cost_weighs_priority_and_deletion_cost() {
        assert_eq!(pod_cost(0, 0), 1.0);
        assert!(pod_cost(1000, 0) > pod_cost(0, 0));
        assert!(pod_cost(0, 1 << 26) > pod_cost(0, 0));
        assert_eq!(
            pod_cost(2_000_000_000, 0),
            10.0,
            "system-critical is capped"
        );
        assert_eq!(pod_cost(0, i32::MIN), 0.0, "never below zero");
    }

    #[test]
    fn the_rate_limit_counts_a_rolling_window() {
        let limit = RateLimit {
            max: 2,
            window: Duration::from_secs(60),
        };
        let mut begun = VecDeque::from([at(0), at(10)]);
        assert!(!limit.allows(&mut begun, at(59)));
        assert_eq!(limit.wait(&begun, at(59)), Some(Duration::from_secs(1)));
        assert!(limit.allows(&mut begun, at(60)));
        assert_eq!(begun, VecDeque::from([at(10)]));
        assert_eq!(limit.wait(&begun, at(60)), None);
    }

    proptest! {
        /// However actions are spread, no window of the limit's length
        /// ever holds more than `max` of them when each asks first.
        #[test]
        fn no_window_holds_more_than_max(
            attempts in proptest::collection::vec(0i64..600, 1..60),
            max in 1usize..5,
        ) {
            let limit = RateLimit { max, window: Duration::from_secs(60) };
            let mut sorted = attempts.clone();
            sorted.sort_unstable();
            let mut begun = VecDeque::new();
            let mut taken = Vec::new();
            for t in sorted {
                if limit.allows(&mut begun, at(t)) {
                    begun.push_back(at(t));
                    taken.push(t);
                }
            }
            for (i, start) in taken.iter().enumerate() {
                let within = taken[i..].iter().filter(|t| **t < start + 60).count();
                prop_assert!(within <= max);
            }
        }
    }
}
