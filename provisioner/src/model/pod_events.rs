//! When a node's workload pods last changed: the time `consolidateAfter`
//! counts from, for emptiness and for consolidation. Each keeps it in
//! memory per Node; the pod-events controller records it on the NodeClaim
//! (`status.lastPodEventTime`, with the pods' fingerprint in
//! `status.lastPodEventPods`), so that a provisioner that restarts, or a
//! replica that takes over the lead, resumes a node's timer instead of
//! starting it again, but only while the node holds the pods recorded.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use spotwright_api::NodeClaim;

use crate::model::claim::{elapsed, last_pod_event_time};
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

/// A fingerprint as `status.lastPodEventPods` holds it: 16 hex digits.
pub fn fingerprint_text(fingerprint: u64) -> String {
    format!("{fingerprint:016x}")
}

/// What the claim records: both fields, or nothing (a record that lacks
/// the pods, or holds anything but 16 hex digits, cannot be resumed).
pub fn recorded(claim: &NodeClaim) -> Option<PodsSeen> {
    let since = last_pod_event_time(claim)?;
    let text = claim.status.as_ref()?.last_pod_event_pods.as_deref()?;
    let digits = text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit());
    let fingerprint = u64::from_str_radix(text, 16).ok().filter(|_| digits)?;
    Some(PodsSeen { fingerprint, since })
}

/// What a look at a node's pods makes of it. `previous` is this process's
/// last look, `recorded` the claim's record. The time moves to `now`
/// whenever the pods differ from the last look. At a node's first look (a
/// new node, or the first look of a process that just started) it is the
/// recorded time if the node still holds the pods recorded and the time is
/// not in the future; otherwise the pods changed while nobody looked, or
/// after the record was written, and the time starts at `now`: a resumed
/// timer may run long, not short (save for a pod that landed and left again
/// before the record caught up, which leaves the pods recorded).
pub fn next_seen(
    previous: Option<PodsSeen>,
    recorded: Option<PodsSeen>,
    fingerprint: u64,
    now: Timestamp,
) -> PodsSeen {
    let since = match previous {
        Some(seen) if seen.fingerprint == fingerprint => seen.since,
        Some(_) => now,
        None => recorded
            .filter(|at| at.fingerprint == fingerprint && at.since <= now)
            .map_or(now, |at| at.since),
    };
    PodsSeen { fingerprint, since }
}

/// What this process last wrote to a claim's record, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    pub at: Timestamp,
    pub what: PodsSeen,
}

/// The same record as the API keeps it: the same pods, the time in whole
/// seconds.
fn same_record(a: PodsSeen, b: PodsSeen) -> bool {
    a.fingerprint == b.fingerprint && a.since.as_second() == b.since.as_second()
}

/// Whether the claim's record should be written now: it differs from what
/// was seen, this process has not already written what was seen, and it
/// last wrote at least [`RECORD_AT_MOST_EVERY`] ago (or never). A record
/// the API did not keep whole (a NodeClaim CRD without
/// `lastPodEventPods`, [`record_pruned`]) is therefore written once per
/// change of the pods, not again every ten seconds.
pub fn record_due(
    seen: PodsSeen,
    recorded: Option<PodsSeen>,
    last_written: Option<Written>,
    now: Timestamp,
) -> bool {
    !recorded.is_some_and(|at| same_record(at, seen))
        && last_written.is_none_or(|written| {
            !same_record(written.what, seen) && elapsed(written.at, now) >= RECORD_AT_MOST_EVERY
        })
}

/// Whether the API server dropped the pods from the record this process
/// wrote: the claim holds the time written but no `lastPodEventPods`, as
/// under a NodeClaim CRD older than that field (pruned as unknown).
pub fn record_pruned(claim: &NodeClaim, written: Written) -> bool {
    let pods = claim
        .status
        .as_ref()
        .and_then(|s| s.last_pod_event_pods.as_ref());
    pods.is_none()
        && last_pod_event_time(claim)
            .is_some_and(|time| time.as_second() == written.what.since.as_second())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

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
            next_seen(Some(first), Some(seen(8, -50)), 8, at(30)),
            seen(8, 30)
        );
    }

    #[test]
    fn a_first_look_resumes_the_record_only_for_the_same_pods() {
        assert_eq!(next_seen(None, Some(seen(7, -40)), 7, at(0)), seen(7, -40));
        assert_eq!(
            next_seen(None, Some(seen(6, -40)), 7, at(0)),
            seen(7, 0),
            "the pods changed since the record"
        );
        assert_eq!(
            next_seen(None, Some(seen(7, 60)), 7, at(0)),
            seen(7, 0),
            "a time in the future is not believed"
        );
    }

    #[test]
    fn a_record_is_written_when_it_differs_at_most_every_ten_seconds() {
        assert!(record_due(seen(1, 0), None, None, at(0)));
        assert!(
            !record_due(seen(1, 0), Some(seen(1, 0)), None, at(100)),
            "already recorded"
        );
        assert!(
            record_due(seen(2, 0), Some(seen(1, 0)), None, at(100)),
            "other pods in the same second"
        );
        assert!(
            record_due(seen(1, 5), Some(seen(1, 0)), None, at(5)),
            "first write of this process"
        );
        let written = |second, what| {
            Some(Written {
                at: at(second),
                what,
            })
        };
        assert!(
            !record_due(seen(1, 5), Some(seen(1, 0)), written(1, seen(1, 1)), at(10)),
            "written 9 s ago"
        );
        assert!(record_due(
            seen(1, 5),
            Some(seen(1, 0)),
            written(1, seen(1, 1)),
            at(11)
        ));
        assert!(
            !record_due(seen(1, 5), None, written(6, seen(1, 5)), at(100)),
            "written as it is, but not kept whole: not again"
        );
        let within_the_second = PodsSeen {
            fingerprint: 1,
            since: at(5) + Duration::from_millis(700),
        };
        assert!(
            !record_due(within_the_second, Some(seen(1, 5)), None, at(20)),
            "the API keeps whole seconds"
        );
    }

    /// A claim with this status.
    fn claim(status: serde_json::Value) -> NodeClaim {
        serde_json::from_value(json!({
            "apiVersion": "spotwright.io/v1alpha1", "kind": "NodeClaim",
            "metadata": {"name": "c"}, "spec": {"nodeClassRef": {"name": "default"}},
            "status": status}))
        .expect("a NodeClaim")
    }

    #[test]
    fn a_record_without_the_pods_written_is_pruned() {
        let written = Written {
            at: at(9),
            what: seen(0xab, 5),
        };
        let time_only = claim(json!({"lastPodEventTime": at(5).to_string()}));
        assert!(record_pruned(&time_only, written));
        let whole = claim(json!({"lastPodEventTime": at(5).to_string(),
            "lastPodEventPods": fingerprint_text(0xab)}));
        assert!(!record_pruned(&whole, written));
        let not_yet = claim(json!({"lastPodEventTime": at(1).to_string()}));
        assert!(
            !record_pruned(&not_yet, written),
            "an older record: the write not seen yet"
        );
        assert!(!record_pruned(&claim(json!({})), written));
    }

    #[test]
    fn a_record_is_read_only_whole() {
        let time = at(0).to_string();
        let both =
            claim(json!({"lastPodEventTime": time, "lastPodEventPods": fingerprint_text(0xab)}));
        assert_eq!(recorded(&both), Some(seen(0xab, 0)));
        assert_eq!(recorded(&claim(json!({"lastPodEventTime": time}))), None);
        for bad in [
            "ab",
            "+00000000000000ab",
            "00000000000000zz",
            "000000000000000000ab",
        ] {
            let unreadable = claim(json!({"lastPodEventTime": time, "lastPodEventPods": bad}));
            assert_eq!(recorded(&unreadable), None, "{bad}");
        }
    }

    proptest! {
        /// Over any sequence of looks, writes and restarts (a restart
        /// forgets everything but the record), with pods that change to sets
        /// never seen before: the remembered time is never in the future
        /// nor before the pods last changed, restarts included; a process
        /// writes at least RECORD_AT_MOST_EVERY apart; and the record
        /// catches up with its memory within that and one look.
        #[test]
        fn looks_writes_and_restarts_keep_their_bounds(
            recorded_at_start in prop::option::of(-100i64..=0),
            looks in prop::collection::vec((any::<bool>(), 1i64..8, prop::bool::weighted(0.1)), 1..60),
        ) {
            let mut now = 0;
            let mut pods = 0u64;
            let mut recorded = recorded_at_start.map(|second| seen(pods, second));
            // When the pods became what they are, if known.
            let mut changed_at = recorded.map(|r| r.since);
            let (mut previous, mut last_written): (Option<PodsSeen>, _) = (None, None);
            let mut differs_from = None;
            for (change, step, restart) in looks {
                now += step;
                if change {
                    pods += 1;
                    changed_at = Some(at(now));
                }
                if restart {
                    (previous, last_written, differs_from) = (None, None, None);
                }
                let next = next_seen(previous, recorded, pods, at(now));
                prop_assert!(next.since <= at(now));
                let lower_bound = *changed_at.get_or_insert(next.since);
                prop_assert!(next.since >= lower_bound, "{next:?} before {lower_bound}");
                if record_due(next, recorded, last_written, at(now)) {
                    if let Some(before) = last_written {
                        prop_assert!(elapsed(before.at, at(now)) >= RECORD_AT_MOST_EVERY);
                    }
                    recorded = Some(next);
                    last_written = Some(Written { at: at(now), what: next });
                }
                if recorded == Some(next) {
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
