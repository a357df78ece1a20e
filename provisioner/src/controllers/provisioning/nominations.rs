//! Nominations: which pending pods each launch was for, and what became of
//! them. Pure: the pass feeds it what the snapshot says and the time.
//!
//! The solver and kube-scheduler can disagree (a label the node lacks, a
//! rule the solver does not model). Unchecked, that is a launch loop: the
//! pod stays pending, the next pass launches again, forever. So a pod the
//! scheduler still refuses once the node launched for it has been ready for
//! a grace period (or sooner, once the scheduler gave a new verdict after
//! the node was ready) is a *mismatch*: it gets no new launch while the
//! scheduler's reason stays the same. And launches for any one pod back
//! off: the second at once, then doubling from `first_retry` up to
//! `max_retry`.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::model::claim::elapsed;

/// How nominations are judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NominationSettings {
    /// How long after a pod's first launch another may follow; doubled per launch.
    pub first_retry: Duration,
    /// The longest wait between launches for one pod.
    pub max_retry: Duration,
    /// How long the node launched for a pod may be ready before a
    /// still-pending pod counts as refused by the scheduler.
    pub grace: Duration,
    /// How long the node must have been ready before a new verdict of the
    /// scheduler (a message other than the one when the node was first
    /// seen ready) counts as one that weighed the node, grace or not: the
    /// scheduler's cache may lag a moment behind ours.
    pub settle: Duration,
}

impl Default for NominationSettings {
    fn default() -> Self {
        NominationSettings {
            first_retry: Duration::from_secs(15),
            max_retry: Duration::from_secs(10 * 60),
            grace: Duration::from_secs(30),
            settle: Duration::from_secs(2),
        }
    }
}

/// What became of the claim a pod was nominated for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimNow<'a> {
    /// Deleted (its launch failed, or its node went).
    Gone,
    /// Launched or launching, its node (once registered) not ready yet.
    Launching { node: Option<&'a str> },
    /// Its node, initialized since then; `room`: whether the pod still fits
    /// beside the pods bound there (others may have taken it meanwhile).
    Ready {
        node: &'a str,
        since: Timestamp,
        room: bool,
    },
}

/// What the snapshot says of a pod with a nomination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodNow<'a> {
    /// Still unschedulable, with the scheduler's message.
    Pending { message: &'a str },
    /// Bound to a node.
    Bound { node: &'a str },
    /// Deleted, or no longer Spotwright's.
    Gone,
}

/// A disagreement between the solver and the scheduler, found once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub pod: String,
    pub claim: String,
    /// The metric's `reason`: `node_affinity`, `resources`, `taints`,
    /// `topology_spread`, `pod_affinity`, `volumes`, `ports`, `other`, or
    /// `bound_elsewhere` (the scheduler placed it on another node).
    pub reason: &'static str,
    /// The scheduler's message, or where it bound the pod.
    pub detail: String,
}

/// Why a pass leaves a pod out of the solve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hold {
    /// The node launched for it is not judged yet: launching, or ready for
    /// less than the grace period. It is the pod's place until then.
    Awaiting { claim: String },
    /// A launch for it was recent: the next no sooner than `until`.
    Backoff { until: Timestamp },
    /// The scheduler refused the node launched for it, and its main reason
    /// is still the same.
    Refused { reason: &'static str },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    claim: String,
    launches: u32,
    last_launch: Timestamp,
    /// The scheduler's main reason when it refused the node launched for
    /// the pod. Only the main one: the rest of its message changes as other
    /// nodes come and go.
    refused: Option<&'static str>,
    /// Other pods took the node launched for it: no longer its place.
    released: bool,
    /// A hash of the scheduler's message when the node launched for it was
    /// first seen ready: a later, different one is a verdict on that node.
    verdict_at_ready: Option<u64>,
}

/// Every pod launched for that is still pending.
#[derive(Clone, Debug, Default)]
pub struct Nominations {
    settings: NominationSettings,
    pods: HashMap<String, Record>,
}

impl Nominations {
    pub fn new(settings: NominationSettings) -> Self {
        Nominations {
            settings,
            pods: HashMap::new(),
        }
    }

    /// A claim was created for `pod`.
    pub fn nominated(&mut self, pod: &str, claim: &str, now: Timestamp) {
        let record = self.pods.entry(pod.to_owned()).or_insert(Record {
            claim: String::new(),
            launches: 0,
            last_launch: now,
            refused: None,
            released: false,
            verdict_at_ready: None,
        });
        record.claim = claim.to_owned();
        // A launch after other pods took the last one's room is no retry of
        // a failure: it does not lengthen the backoff.
        if !record.released {
            record.launches = record.launches.saturating_add(1);
        }
        record.last_launch = now;
        record.refused = None;
        record.released = false;
        record.verdict_at_ready = None;
    }

    /// The pods nominated, to look up for [`Self::judge`].
    pub fn nominated_pods(&self) -> Vec<(String, String)> {
        self.pods
            .iter()
            .map(|(pod, r)| (pod.clone(), r.claim.clone()))
            .collect()
    }

    /// Each nominated pod with its claim, borrowed.
    pub fn claims(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pods
            .iter()
            .map(|(pod, r)| (pod.as_str(), r.claim.as_str()))
    }

    /// The claim last created for `pod`.
    pub fn claim_of(&self, pod: &str) -> Option<&str> {
        self.pods.get(pod).map(|r| r.claim.as_str())
    }

    /// Judges one nominated pod by what became of it and of its claim. A
    /// bound or gone pod is forgotten; a pending one whose node has been
    /// ready for the grace period is refused. A mismatch is returned once.
    pub fn judge(
        &mut self,
        pod: &str,
        now_pod: PodNow,
        claim: ClaimNow,
        now: Timestamp,
    ) -> Option<Mismatch> {
        let record = self.pods.get_mut(pod)?;
        match (now_pod, claim) {
            (PodNow::Gone, _) => {
                self.pods.remove(pod);
                None
            }
            (PodNow::Bound { node }, claim) => {
                let record = self.pods.remove(pod)?;
                let elsewhere = match claim {
                    ClaimNow::Ready { node: ours, .. } => ours != node,
                    ClaimNow::Launching { node: ours } => ours != Some(node),
                    ClaimNow::Gone => false,
                };
                elsewhere.then(|| Mismatch {
                    pod: pod.to_owned(),
                    claim: record.claim,
                    reason: "bound_elsewhere",
                    detail: format!("bound to {node}"),
                })
            }
            (PodNow::Pending { message }, ClaimNow::Ready { since, room, .. }) => {
                if record.refused.is_some() || record.released {
                    return None;
                }
                if !room {
                    // Not a disagreement: the scheduler gave the node to
                    // other pods. No grace can make it fit there, so the pod
                    // is solved again at once (in a burst the scheduler
                    // fills new nodes in its own order, not the solver's).
                    record.released = true;
                    return None;
                }
                let verdict = hash_of(message);
                let at_ready = *record.verdict_at_ready.get_or_insert(verdict);
                let ready_for = elapsed(since, now);
                let new_verdict = at_ready != verdict && ready_for >= self.settings.settle;
                if ready_for < self.settings.grace && !new_verdict {
                    return None;
                }
                let reason = main_reason(message);
                record.refused = Some(reason);
                Some(Mismatch {
                    pod: pod.to_owned(),
                    claim: record.claim.clone(),
                    reason,
                    detail: message.to_owned(),
                })
            }
            (PodNow::Pending { .. }, _) => None,
        }
    }

    /// Whether the pass must leave `pod` out, given the scheduler's message
    /// and its claim now (after [`Self::judge`]).
    pub fn hold(&self, pod: &str, message: &str, claim: ClaimNow, now: Timestamp) -> Option<Hold> {
        let record = self.pods.get(pod)?;
        match &record.refused {
            _ if record.released => return None,
            Some(refused)
                if *refused == main_reason(message) && !moves_with_other_pods(refused) =>
            {
                return Some(Hold::Refused { reason: refused });
            }
            Some(_) => {}
            None => {
                let judged = match claim {
                    ClaimNow::Gone => true,
                    ClaimNow::Launching { .. } => false,
                    ClaimNow::Ready { since, .. } => elapsed(since, now) >= self.settings.grace,
                };
                if !judged {
                    return Some(Hold::Awaiting {
                        claim: record.claim.clone(),
                    });
                }
            }
        }
        let wait = self.retry_after(record.launches);
        (elapsed(record.last_launch, now) < wait).then(|| Hold::Backoff {
            until: record
                .last_launch
                .checked_add(wait)
                .unwrap_or(record.last_launch),
        })
    }

    /// The wait after the `launches`-th launch for one pod.
    /// The first retry is at once: a launch that failed (capacity errors
    /// on every offering it tried) is retried on what is left.
    fn retry_after(&self, launches: u32) -> Duration {
        if launches <= 1 {
            return Duration::ZERO;
        }
        let doublings = launches.saturating_sub(2).min(16);
        self.settings
            .first_retry
            .saturating_mul(1u32 << doublings)
            .min(self.settings.max_retry)
    }
}

/// A scheduler message as a verdict to compare: two messages differ when
/// their hashes do.
pub fn hash_of(message: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    message.hash(&mut hasher);
    hasher.finish()
}

/// Whether a refusal for `reason` can lift as other pods land: a topology
/// spread or pod (anti-)affinity verdict depends on where the pods it
/// counts are, which a burst keeps changing. Such a pod is solved again
/// after the backoff instead of being held while the reason stays.
pub fn moves_with_other_pods(reason: &str) -> bool {
    matches!(reason, "topology_spread" | "pod_affinity")
}

/// The most specific reason in the scheduler's message.
fn main_reason(message: &str) -> &'static str {
    scheduler_reasons(message)
        .first()
        .copied()
        .unwrap_or("other")
}

/// The kinds of reason in kube-scheduler's `FailedScheduling` message
/// (`0/5 nodes are available: 1 node(s) didn't match Pod's node
/// affinity/selector, 4 Insufficient cpu. ...`), most specific first.
pub fn scheduler_reasons(message: &str) -> Vec<&'static str> {
    const KINDS: [(&str, &[&str]); 7] = [
        ("node_affinity", &["didn't match Pod's node affinity"]),
        (
            "pod_affinity",
            &["pod affinity", "pod anti-affinity", "anti-affinity"],
        ),
        ("topology_spread", &["topology spread"]),
        ("volumes", &["volume", "PersistentVolumeClaim"]),
        ("taints", &["untolerated taint", "had taint"]),
        ("ports", &["free ports"]),
        ("resources", &["Insufficient", "Too many pods"]),
    ];
    let found: Vec<&'static str> = KINDS
        .iter()
        .filter(|(_, phrases)| phrases.iter().any(|p| message.contains(p)))
        .map(|(kind, _)| *kind)
        .collect();
    if found.is_empty() {
        vec!["other"]
    } else {
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    const AFFINITY: &str = "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 node(s) had untolerated taint {node-role: system}.";

    #[test]
    fn a_pod_refused_by_the_ready_node_is_a_mismatch_once_and_held_for_that_reason() {
        let mut n = Nominations::new(NominationSettings::default());
        n.nominated("a/p", "pool-x", at(0));
        let pending = PodNow::Pending { message: AFFINITY };
        let ready = ClaimNow::Ready {
            node: "n1",
            since: at(20),
            room: true,
        };
        let launching = ClaimNow::Launching { node: None };
        assert_eq!(n.judge("a/p", pending, launching, at(10)), None);
        assert_eq!(
            n.judge("a/p", pending, ready, at(40)),
            None,
            "within the grace"
        );
        let found = n.judge("a/p", pending, ready, at(50)).unwrap();
        assert_eq!(found.reason, "node_affinity");
        assert_eq!(found.claim, "pool-x");
        assert_eq!(
            n.judge("a/p", pending, ready, at(60)),
            None,
            "reported once"
        );
        // Held for as long as the reason is the same, long past any backoff.
        assert!(matches!(
            n.hold("a/p", AFFINITY, ready, at(100_000)),
            Some(Hold::Refused { .. })
        ));
        // Other nodes' reasons come and go; the main one holds.
        assert!(matches!(
            n.hold(
                "a/p",
                "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
                ready,
                at(100_000)
            ),
            Some(Hold::Refused {
                reason: "node_affinity"
            })
        ));
        // A different reason now: a launch may try again.
        assert_eq!(
            n.hold(
                "a/p",
                "0/4 nodes are available: 4 Insufficient cpu.",
                ready,
                at(100_000)
            ),
            None
        );
    }

    #[test]
    fn a_node_other_pods_took_is_no_mismatch_and_the_pod_is_solved_again() {
        let mut n = Nominations::new(NominationSettings::default());
        n.nominated("a/p", "pool-x", at(0));
        let full = ClaimNow::Ready {
            node: "n1",
            since: at(10),
            room: false,
        };
        let pending = PodNow::Pending {
            message: "0/3 nodes are available: 3 Insufficient cpu.",
        };
        assert_eq!(n.judge("a/p", pending, full, at(60)), None);
        assert_eq!(
            n.hold("a/p", "", full, at(60)),
            None,
            "free to launch again"
        );
    }

    #[test]
    fn a_pod_whose_node_others_filled_is_solved_again_at_once_without_backoff() {
        let mut n = Nominations::new(NominationSettings::default());
        n.nominated("a/p", "pool-x", at(0));
        n.nominated("a/p", "pool-y", at(1));
        let pending = PodNow::Pending {
            message: "0/3 nodes are available: 3 Insufficient cpu.",
        };
        let full = |since| ClaimNow::Ready {
            node: "n1",
            since: at(since),
            room: false,
        };
        // Within the grace, and inside the backoff of its second launch.
        assert!(matches!(
            n.hold("a/p", "", ClaimNow::Launching { node: None }, at(2)),
            Some(Hold::Awaiting { .. })
        ));
        assert_eq!(n.judge("a/p", pending, full(2), at(3)), None);
        assert_eq!(n.hold("a/p", "", full(2), at(3)), None, "released at once");
        // Relaunched and filled by others again: still no wait, no matter how often.
        for round in 0..5 {
            let t = 4 + round * 2;
            n.nominated("a/p", "pool-z", at(t));
            assert_eq!(n.judge("a/p", pending, full(t), at(t + 1)), None);
            assert_eq!(n.hold("a/p", "", full(t), at(t + 1)), None);
        }
        // A failed launch after that backs off as the second launch did, not more.
        n.nominated("a/p", "pool-w", at(20));
        assert_eq!(
            n.hold("a/p", "", ClaimNow::Gone, at(21)),
            Some(Hold::Backoff { until: at(35) })
        );
    }

    #[test]
    fn a_refusal_that_moves_with_other_pods_backs_off_instead_of_holding() {
        const SPREAD: &str = "0/88 nodes are available: 2 node(s) didn't match pod topology spread constraints, 62 Insufficient memory.";
        let mut n = Nominations::new(NominationSettings::default());
        n.nominated("a/p", "pool-x", at(0));
        n.nominated("a/p", "pool-y", at(0));
        let pending = PodNow::Pending { message: SPREAD };
        let ready = ClaimNow::Ready {
            node: "n1",
            since: at(1),
            room: true,
        };
        let found = n.judge("a/p", pending, ready, at(40));
        assert_eq!(found.map(|m| m.reason), Some("topology_spread"));
        assert_eq!(
            n.hold("a/p", SPREAD, ready, at(40)),
            None,
            "past the backoff"
        );
        n.nominated("a/p", "pool-z", at(40));
        assert_eq!(
            n.hold("a/p", SPREAD, ClaimNow::Gone, at(41)),
            Some(Hold::Backoff { until: at(70) }),
            "the third launch waits 30 s"
        );
    }

    #[test]
    fn a_new_verdict_after_the_node_is_ready_is_judged_before_the_grace() {
        const BEFORE: &str = "0/40 nodes are available: 40 Insufficient cpu.";
        const SPREAD: &str = "0/41 nodes are available: 1 node(s) didn't match pod topology spread constraints, 40 Insufficient cpu.";
        let mut n = Nominations::new(NominationSettings::default());
        n.nominated("a/p", "pool-x", at(0));
        let ready = ClaimNow::Ready {
            node: "n1",
            since: at(10),
            room: true,
        };
        let pending = |message| PodNow::Pending { message };
        // First seen ready with the verdict of before: wait.
        assert_eq!(n.judge("a/p", pending(BEFORE), ready, at(11)), None);
        // A new verdict, but too soon for the scheduler to have weighed the node.
        assert_eq!(n.judge("a/p", pending(SPREAD), ready, at(11)), None);
        let found = n.judge("a/p", pending(SPREAD), ready, at(12));
        assert_eq!(found.map(|m| m.reason), Some("topology_spread"));
        // Solved again at once: its first retry does not wait.
        assert_eq!(n.hold("a/p", SPREAD, ready, at(12)), None);
        // The same verdict as when the node was first seen ready waits out the grace.
        n.nominated("a/q", "pool-x", at(0));
        assert_eq!(n.judge("a/q", pending(SPREAD), ready, at(12)), None);
        assert_eq!(n.judge("a/q", pending(SPREAD), ready, at(39)), None);
        assert!(n.judge("a/q", pending(SPREAD), ready, at(40)).is_some());
    }

    #[test]
    fn a_bound_pod_is_forgotten_and_binding_elsewhere_is_named() {
        let mut n = Nominations::new(NominationSettings::default());
        n.nominated("a/p", "pool-x", at(0));
        n.nominated("a/q", "pool-x", at(0));
        let ready = ClaimNow::Ready {
            node: "n1",
            since: at(5),
            room: true,
        };
        assert_eq!(
            n.judge("a/p", PodNow::Bound { node: "n1" }, ready, at(9)),
            None
        );
        // Bound to its node before the claim recorded it initialized: no mismatch.
        n.nominated("a/r", "pool-x", at(0));
        let registered = ClaimNow::Launching { node: Some("n1") };
        let bound = PodNow::Bound { node: "n1" };
        assert_eq!(n.judge("a/r", bound, registered, at(9)), None);
        let elsewhere = n.judge("a/q", PodNow::Bound { node: "n7" }, ready, at(9));
        assert_eq!(elsewhere.map(|m| m.reason), Some("bound_elsewhere"));
        assert!(n.nominated_pods().is_empty());
    }

    #[test]
    fn a_pod_waits_for_the_node_launched_for_it_until_it_is_judged() {
        let mut n = Nominations::new(NominationSettings::default());
        n.nominated("a/p", "pool-x", at(0));
        let launching = ClaimNow::Launching { node: Some("n1") };
        let awaiting = Some(Hold::Awaiting {
            claim: "pool-x".into(),
        });
        // Long past the backoff, the node launched for it is still its place.
        assert_eq!(n.hold("a/p", "", launching, at(5_000)), awaiting);
        let ready = ClaimNow::Ready {
            node: "n1",
            since: at(4_990),
            room: true,
        };
        assert_eq!(n.hold("a/p", "", ready, at(5_000)), awaiting);
        // Its claim gone (the launch failed): the backoff alone decides.
        assert_eq!(n.hold("a/p", "", ClaimNow::Gone, at(5_000)), None);
    }

    #[test]
    fn launches_for_one_pod_back_off_doubling_to_the_cap() {
        let settings = NominationSettings::default();
        let mut n = Nominations::new(settings);
        n.nominated("a/p", "c", at(0));
        assert_eq!(
            n.hold("a/p", "", ClaimNow::Gone, at(0)),
            None,
            "the first retry is at once"
        );
        let mut last = at(0);
        let mut waits = Vec::new();
        for _ in 0..8 {
            n.nominated("a/p", "c", last);
            let Some(Hold::Backoff { until }) = n.hold("a/p", "", ClaimNow::Gone, last) else {
                panic!("held right after a launch");
            };
            assert_eq!(
                n.hold("a/p", "", ClaimNow::Gone, until),
                None,
                "free at {until}"
            );
            waits.push(elapsed(last, until).as_secs());
            last = until;
        }
        assert_eq!(waits, [15, 30, 60, 120, 240, 480, 600, 600]);
    }

    proptest::proptest! {
        #[test]
        fn waits_between_launches_never_shrink_and_never_pass_the_cap(
            first in 1u64..120, cap in 1u64..3_600, launches in 1u32..64,
        ) {
            let n = Nominations::new(NominationSettings {
                first_retry: Duration::from_secs(first),
                max_retry: Duration::from_secs(cap),
                grace: Duration::from_secs(30),
                ..NominationSettings::default()
            });
            let (now, next) = (n.retry_after(launches), n.retry_after(launches + 1));
            proptest::prop_assert!(now <= next);
            proptest::prop_assert!(next <= Duration::from_secs(cap));
            if launches >= 2 {
                proptest::prop_assert!(now >= Duration::from_secs(first).min(Duration::from_secs(cap)));
            }
        }
    }

    #[test]
    fn scheduler_messages_name_their_reasons() {
        assert_eq!(scheduler_reasons(AFFINITY), ["node_affinity", "taints"]);
        assert_eq!(
            scheduler_reasons(
                "0/2 nodes are available: 2 node(s) didn't match pod topology spread constraints."
            ),
            ["topology_spread"]
        );
        assert_eq!(
            scheduler_reasons("0/1 nodes are available: 1 Insufficient memory."),
            ["resources"]
        );
        assert_eq!(scheduler_reasons(""), ["other"]);
    }
}
