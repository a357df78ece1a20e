//! When the agent looks at EC2 again. A kubelet registers as soon as its
//! instance has booted, each on its own; the agent looks every second, so a
//! pass whose CreateFleet calls return over a few hundred milliseconds was
//! registered in two looks a second apart, and the whole pass waited for the
//! second (`--registration-gate`). After a look that registered Nodes, the
//! next comes after `follow_up`: the rest of a burst is caught while it
//! lands, and an idle cluster is still read once a second.

use std::time::Duration;

/// How often the agent looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    /// Between looks while nothing new turns up.
    pub interval: Duration,
    /// After a look that registered Nodes; zero: `interval` always.
    pub follow_up: Duration,
}

/// The wait before the next look, after one that registered `registered`
/// Nodes, or failed for the `failures`-th time in a row (which doubles the
/// interval up to 32 times, whatever was registered before).
pub fn next_look(pace: Pace, registered: usize, failures: u32) -> Duration {
    if failures > 0 {
        return pace.interval.saturating_mul(2u32.pow(failures.min(5)));
    }
    if registered > 0 && !pace.follow_up.is_zero() {
        return pace.follow_up.min(pace.interval);
    }
    pace.interval
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACE: Pace = Pace {
        interval: Duration::from_millis(1000),
        follow_up: Duration::from_millis(100),
    };

    #[test]
    fn an_idle_look_waits_the_interval() {
        assert_eq!(next_look(PACE, 0, 0), Duration::from_millis(1000));
    }

    #[test]
    fn a_look_that_registered_nodes_follows_up_soon() {
        assert_eq!(next_look(PACE, 17, 0), Duration::from_millis(100));
    }

    #[test]
    fn zero_follow_up_keeps_the_interval() {
        let pace = Pace {
            follow_up: Duration::ZERO,
            ..PACE
        };
        assert_eq!(next_look(pace, 17, 0), Duration::from_millis(1000));
    }

    #[test]
    fn the_follow_up_is_never_longer_than_the_interval() {
        let pace = Pace {
            interval: Duration::from_millis(50),
            follow_up: Duration::from_millis(100),
        };
        assert_eq!(next_look(pace, 3, 0), Duration::from_millis(50));
    }

    #[test]
    fn failures_back_off_up_to_32_intervals() {
        assert_eq!(next_look(PACE, 0, 1), Duration::from_millis(2000));
        assert_eq!(next_look(PACE, 5, 3), Duration::from_millis(8000));
        assert_eq!(next_look(PACE, 0, 40), Duration::from_millis(32000));
    }
}
