//! A NodePool's recent peak: how many pods of each template its nodes held
//! at each look within a window, so that consolidation leaves room for the
//! ones that left only a moment ago.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::model::claim::elapsed;

/// Pods per template key, as counted at one look.
pub type Counts = HashMap<u64, usize>;

/// The looks at one NodePool within its window, oldest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PoolHistory {
    looks: VecDeque<(Timestamp, Counts)>,
}

impl PoolHistory {
    /// Adds a look, and forgets those older than `window`.
    pub fn record(&mut self, now: Timestamp, window: Duration, counts: Counts) {
        self.looks.push_back((now, counts));
        while self
            .looks
            .front()
            .is_some_and(|(at, _)| elapsed(*at, now) > window)
        {
            self.looks.pop_front();
        }
    }

    /// Per template, how many fewer pods the last look counted than the
    /// most any look in the window counted (templates with none fewer are
    /// left out), in key order.
    pub fn missing(&self) -> Vec<(u64, usize)> {
        let Some((_, last)) = self.looks.back() else {
            return Vec::new();
        };
        let mut peak: Counts = HashMap::new();
        for (_, counts) in &self.looks {
            for (template, count) in counts {
                let most = peak.entry(*template).or_default();
                *most = (*most).max(*count);
            }
        }
        let mut missing: Vec<(u64, usize)> = peak
            .into_iter()
            .map(|(t, most)| (t, most.saturating_sub(last.get(&t).copied().unwrap_or(0))))
            .filter(|(_, gone)| *gone > 0)
            .collect();
        missing.sort_unstable();
        missing
    }

    /// Every template key any look counted.
    pub fn templates(&self) -> impl Iterator<Item = u64> + '_ {
        self.looks.iter().flat_map(|(_, c)| c.keys().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    const WINDOW: Duration = Duration::from_secs(60);

    #[test]
    fn a_dip_within_the_window_is_missing_and_forgotten_after() {
        let mut history = PoolHistory::default();
        history.record(at(0), WINDOW, HashMap::from([(1, 22), (2, 3)]));
        history.record(at(30), WINDOW, HashMap::from([(1, 18), (2, 3)]));
        assert_eq!(history.missing(), vec![(1, 4)]);
        history.record(at(61), WINDOW, HashMap::from([(1, 18)]));
        assert_eq!(
            history.missing(),
            vec![(2, 3)],
            "the 22 is out of the window"
        );
        history.record(at(95), WINDOW, HashMap::from([(1, 18)]));
        assert_eq!(history.missing(), vec![]);
    }

    proptest! {
        /// The last look plus what is missing is the peak of the window.
        #[test]
        fn last_plus_missing_is_the_peak(counts in proptest::collection::vec(0usize..30, 1..20)) {
            let mut history = PoolHistory::default();
            for (i, count) in counts.iter().enumerate() {
                history.record(at(i as i64 * 10), WINDOW, HashMap::from([(7, *count)]));
            }
            let kept = counts.len().min(7);
            let window = &counts[counts.len() - kept..];
            let peak = window.iter().copied().max().unwrap_or(0);
            let last = counts[counts.len() - 1];
            let missing = history.missing().first().map_or(0, |(_, n)| *n);
            prop_assert_eq!(last + missing, peak);
        }
    }
}
