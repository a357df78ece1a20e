//! When a node's workload pods last changed: the time `consolidateAfter`
//! counts from, for emptiness and for consolidation. Each keeps it in
//! memory per Node; the pod-events controller records it on the NodeClaim
//! (`status.lastPodEventTime`), so that a provisioner that restarts, or a
//! replica that takes over the lead, resumes a node's timer instead of
//! starting it again.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::model::claim::elapsed;
use crate::model::hashing::{fnv1a, FNV_OFFSET};
use crate::model::pod::CachedPod;

/// A claim's recorded time is written again only when it is at least this
/// old: at most one status write per node in this time, however often its
/// pods change (a burst binds pods to each node for several seconds).
pub const RECORD_AT_MOST_EVERY: Duration = Duration::from_secs(10);

/// A node's workload pods, as one fingerprint, and since when they are
/// what they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodsSeen {
    pub fingerprint: u64,
    pub since: Timestamp,
}

/// Per Node name.
pub type PodsSeenByNode = HashMap<String, PodsSeen>;

/// A fingerprint of a set of pod uids, the same in any order.
pub fn fingerprint<'a>(uids: impl IntoIterator<Item = &'a str>) -> u64 {
    uids.into_iter()
        .map(|uid| fnv1a(uid.as_bytes(), FNV_OFFSET))
        .fold(0u64, |acc, h| acc ^ h)
}

/// The fingerprint of the workload pods among `pods` (DaemonSet, mirror and
/// finished pods come and go without making a node any less empty).
pub fn workload_fingerprint(pods: &[&CachedPod]) -> u64 {
    let workload = pods.iter().filter(|p| p.is_workload());
    fingerprint(workload.map(|p| p.uid.as_deref().unwrap_or(&p.name)))
}

/// What a look at a node's pods makes of it. `previous` is this process's
/// last look, `recorded` the claim's `lastPodEventTime`. The time moves to
/// `now` whenever the pods differ from the last look. At a node's first
/// look (a new node, or the first look of a process that just started)
/// it is the recorded time, if any and not in the future: pods that came
/// or went while no provisioner ran are not seen.
pub fn next_seen(
    previous: Option<PodsSeen>,
    recorded: Option<Timestamp>,
    fingerprint: u64,
    now: Timestamp,
) -> PodsSeen {
    let since = match previous {
        Some(seen) if seen.fingerprint == fingerprint => seen.since,
        Some(_) => now,
        None => recorded.filter(|at| *at <= now).unwrap_or(now),
    };
    PodsSeen { fingerprint, since }
}

/// Whether the claim's recorded time should be written now: it differs
/// from what was seen (in whole seconds, as the API keeps it), and this
/// process last wrote it at least [`RECORD_AT_MOST_EVERY`] ago (or never).
pub fn record_due(
    seen: PodsSeen,
    recorded: Option<Timestamp>,
    last_written: Option<Timestamp>,
    now: Timestamp,
) -> bool {
    recorded.map(Timestamp::as_second) != Some(seen.since.as_second())
        && last_written.is_none_or(|at| elapsed(at, now) >= RECORD_AT_MOST_EVERY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + second).unwrap()
    }

    fn seen(fingerprint: u64, second: i64) -> PodsSeen {
        PodsSeen {
            fingerprint,
            since: at(second),
        }
    }

    #[test]
    fn the_fingerprint_is_the_set_of_uids() {
        let a = fingerprint(["u1", "u2"]);
        assert_eq!(a, fingerprint(["u2", "u1"]), "order does not matter");
        assert_ne!(a, fingerprint(["u1", "u2", "u3"]));
        assert_ne!(a, fingerprint(["u1"]));
    }

    #[test]
    fn the_time_moves_only_when_the_pods_change() {
        let first = next_seen(None, None, 7, at(0));
        assert_eq!(first, seen(7, 0));
        assert_eq!(next_seen(Some(first), None, 7, at(30)), seen(7, 0));
        assert_eq!(next_seen(Some(first), None, 8, at(30)), seen(8, 30));
        // What is recorded counts only at the first look.
        assert_eq!(
            next_seen(Some(first), Some(at(-50)), 8, at(30)),
            seen(8, 30)
        );
    }

    #[test]
    fn a_first_look_resumes_the_recorded_time() {
        assert_eq!(next_seen(None, Some(at(-40)), 7, at(0)), seen(7, -40));
        assert_eq!(
            next_seen(None, Some(at(60)), 7, at(0)),
            seen(7, 0),
            "a time in the future is not believed"
        );
    }

    #[test]
    fn a_record_is_written_when_it_differs_at_most_every_ten_seconds() {
        assert!(record_due(seen(1, 0), None, None, at(0)));
        assert!(
            !record_due(seen(1, 0), Some(at(0)), None, at(100)),
            "already recorded"
        );
        assert!(
            record_due(seen(1, 5), Some(at(0)), None, at(5)),
            "first write of this process"
        );
        assert!(
            !record_due(seen(1, 5), Some(at(0)), Some(at(1)), at(10)),
            "written 9 s ago"
        );
        assert!(record_due(seen(1, 5), Some(at(0)), Some(at(1)), at(11)));
        let within_the_second = PodsSeen {
            fingerprint: 1,
            since: at(5) + Duration::from_millis(700),
        };
        assert!(
            !record_due(within_the_second, Some(at(5)), None, at(20)),
            "the API keeps whole seconds"
        );
    }

    proptest! {
        /// Over any sequence of looks and writes: the remembered time is
        /// never in the future nor before the last change of pods seen;
        /// writes are at least RECORD_AT_MOST_EVERY apart; and the record
        /// catches up with the memory within that and one look.
        #[test]
        fn looks_and_writes_keep_their_bounds(
            recorded_at_start in prop::option::of(-100i64..100),
            looks in prop::collection::vec((0u64..3, 1i64..8), 1..60),
        ) {
            let mut now = 0;
            let mut previous: Option<PodsSeen> = None;
            let mut recorded = recorded_at_start.map(at);
            let mut last_written = None;
            let mut changed_at = None;
            let mut differs_from = None;
            for (print, step) in looks {
                now += step;
                if previous.is_some_and(|p| p.fingerprint != print) {
                    changed_at = Some(at(now));
                }
                let next = next_seen(previous, recorded, print, at(now));
                prop_assert!(next.since <= at(now));
                // Since the first look's time, or the last change after it.
                let lower_bound = *changed_at.get_or_insert(next.since);
                prop_assert!(next.since >= lower_bound);
                if record_due(next, recorded, last_written, at(now)) {
                    if let Some(before) = last_written {
                        prop_assert!(elapsed(before, at(now)) >= RECORD_AT_MOST_EVERY);
                    }
                    recorded = Some(next.since);
                    last_written = Some(at(now));
                }
                if recorded == Some(next.since) {
                    differs_from = None;
                } else {
                    let since = *differs_from.get_or_insert(now);
                    prop_assert!(now - since < 10 + 8, "the record lags from {since} to {now}");
                }
                previous = Some(next);
            }
        }
    }
}
