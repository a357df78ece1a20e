//! Whether a burst of new pending pods is complete: every pod its
//! ReplicaSets want exists. A batch then closes after a short quiet time
//! (`run::turns::COMPLETE_QUIET`) instead of its idle second (a `kubectl
//! scale` to 1,000 is created in a few seconds, and the second of quiet
//! after it was a second with no launch).
//!
//! Only ReplicaSets give that answer: their controller records, in
//! `status.observedGeneration`, that it has acted on the latest
//! `spec.replicas`, and their pods can be counted. A batch holding any other
//! pod (a Job's, a StatefulSet's, a bare one), or news that is not a pod,
//! waits out the idle time as before; so does any batch while a ReplicaSet
//! of Spotwright's is short of pods or its count is not caught up.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;

use super::pod::CachedPod;

/// A ReplicaSet as the check reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaSetCount {
    pub uid: String,
    /// `spec.replicas`.
    pub wanted: u32,
    /// Its controller acted on the latest spec: `status.observedGeneration`
    /// has reached `metadata.generation`.
    pub observed: bool,
    /// Its pods are Spotwright's: its namespace opted in, or its template
    /// names Spotwright's scheduler.
    pub ours: bool,
}

impl ReplicaSetCount {
    /// `None` for a ReplicaSet without a UID (never one the API server sent).
    pub fn of(rs: &ReplicaSet, opted_in: &BTreeSet<String>, scheduler_name: &str) -> Option<Self> {
        let uid = rs.metadata.uid.clone()?;
        let spec = rs.spec.as_ref();
        let wanted = spec.and_then(|s| s.replicas).unwrap_or(1);
        let generation = rs.metadata.generation.unwrap_or(0);
        let observed_generation = rs
            .status
            .as_ref()
            .and_then(|s| s.observed_generation)
            .unwrap_or(-1);
        let names_ours = spec
            .and_then(|s| s.template.as_ref())
            .and_then(|t| t.spec.as_ref())
            .and_then(|s| s.scheduler_name.as_deref())
            == Some(scheduler_name);
        let in_opted_in = rs
            .metadata
            .namespace
            .as_ref()
            .is_some_and(|ns| opted_in.contains(ns));
        Some(ReplicaSetCount {
            uid,
            wanted: u32::try_from(wanted).unwrap_or(0),
            observed: observed_generation >= generation,
            ours: names_ours || in_opted_in,
        })
    }
}

/// Whether the batch whose arrivals are `arrivals` (keys as the batching
/// loop sees them: `namespace/name` for a pod, `kind:...` for other news)
/// is complete. Pure over the caches' objects.
pub fn batch_complete(
    arrivals: &BTreeSet<String>,
    pods: &[Arc<CachedPod>],
    replica_sets: &[Arc<ReplicaSet>],
    opted_in: &BTreeSet<String>,
    scheduler_name: &str,
) -> bool {
    // No namespace or pod name has a colon; news keys do.
    if arrivals.is_empty() || arrivals.iter().any(|k| k.contains(':')) {
        return false;
    }
    let arrived: HashSet<(&str, &str)> =
        arrivals.iter().filter_map(|k| k.split_once('/')).collect();
    let mut controllers = Vec::new();
    let mut live: HashMap<&str, u32> = HashMap::new();
    for pod in pods {
        let controller = pod.shape.controller.as_deref();
        if arrived.contains(&(pod.namespace(), pod.name.as_str())) {
            controllers.push(controller);
        }
        if let Some(uid) = controller.filter(|_| !pod.deleting && !pod.terminal) {
            *live.entry(uid).or_default() += 1;
        }
    }
    let counts: Vec<ReplicaSetCount> = replica_sets
        .iter()
        .filter_map(|rs| ReplicaSetCount::of(rs, opted_in, scheduler_name))
        .collect();
    complete(&controllers, &counts, &live)
}

/// The rule, over plain counts. `arrivals`: each new pod's controller UID.
/// `live`: pods neither deleting nor finished, by controller UID.
///
/// Complete when every new pod belongs to a known ReplicaSet, and each
/// ReplicaSet that is Spotwright's or holds a new pod is settled: acted on
/// its latest spec, with exactly as many live pods as it wants. More than
/// it wants means our copy of it is behind its pods (a scale-up we have not
/// heard of yet), not that the burst is over.
pub fn complete(
    arrivals: &[Option<&str>],
    replica_sets: &[ReplicaSetCount],
    live: &HashMap<&str, u32>,
) -> bool {
    if arrivals.is_empty() {
        return false;
    }
    let by_uid: HashMap<&str, &ReplicaSetCount> = replica_sets
        .iter()
        .map(|rs| (rs.uid.as_str(), rs))
        .collect();
    let mut holding: HashSet<&str> = HashSet::new();
    for controller in arrivals {
        match controller.filter(|uid| by_uid.contains_key(uid)) {
            Some(uid) => holding.insert(uid),
            None => return false,
        };
    }
    replica_sets
        .iter()
        .filter(|rs| rs.ours || holding.contains(rs.uid.as_str()))
        .all(|rs| rs.observed && live.get(rs.uid.as_str()).copied().unwrap_or(0) == rs.wanted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn set(uid: &str, wanted: u32, ours: bool) -> ReplicaSetCount {
        ReplicaSetCount {
            uid: uid.to_owned(),
            wanted,
            observed: true,
            ours,
        }
    }

    fn live(counts: &[(&'static str, u32)]) -> HashMap<&'static str, u32> {
        counts.iter().copied().collect()
    }

    #[test]
    fn a_burst_whose_replica_sets_have_all_their_pods_is_complete() {
        let sets = [set("a", 3, true), set("b", 2, true)];
        let arrivals = [Some("a"), Some("a"), Some("b")];
        assert!(complete(&arrivals, &sets, &live(&[("a", 3), ("b", 2)])));
    }

    #[test]
    fn a_replica_set_short_of_pods_keeps_the_batch_open_even_without_an_arrival() {
        let sets = [set("a", 3, true), set("b", 2, true)];
        let arrivals = [Some("a")];
        assert!(!complete(&arrivals, &sets, &live(&[("a", 3), ("b", 1)])));
        // Not Spotwright's and no pod in the batch: not waited for.
        let theirs = [set("a", 3, true), set("b", 2, false)];
        assert!(complete(&arrivals, &theirs, &live(&[("a", 3), ("b", 1)])));
    }

    #[test]
    fn unknown_controllers_stale_counts_and_unobserved_specs_keep_it_open() {
        let sets = [set("a", 3, true)];
        let counts = live(&[("a", 3)]);
        assert!(!complete(&[Some("a"), None], &sets, &counts), "a bare pod");
        assert!(
            !complete(&[Some("job")], &sets, &counts),
            "not a ReplicaSet"
        );
        assert!(!complete(&[], &sets, &counts), "nothing arrived");
        let behind = live(&[("a", 4)]);
        assert!(
            !complete(&[Some("a")], &sets, &behind),
            "our copy is behind"
        );
        let unobserved = [ReplicaSetCount {
            observed: false,
            ..set("a", 3, true)
        }];
        assert!(!complete(&[Some("a")], &unobserved, &counts));
    }

    #[test]
    fn the_counts_come_from_the_objects() {
        let opted_in: BTreeSet<String> = ["team".to_owned()].into();
        let rs = |ns: &str, generation: i64, observed: i64, scheduler: &str| -> ReplicaSet {
            serde_json::from_value(json!({
                "metadata": {"name": "web", "namespace": ns, "uid": "u", "generation": generation},
                "spec": {"replicas": 4, "selector": {},
                    "template": {"spec": {"schedulerName": scheduler, "containers": []}}},
                "status": {"replicas": 0, "observedGeneration": observed}
            }))
            .unwrap()
        };
        let count = |r: &ReplicaSet| ReplicaSetCount::of(r, &opted_in, "ours").unwrap();
        assert_eq!(count(&rs("team", 2, 2, "default")), set("u", 4, true));
        assert!(!count(&rs("team", 3, 2, "default")).observed);
        assert!(count(&rs("other", 2, 2, "ours")).ours);
        assert!(!count(&rs("other", 2, 2, "default")).ours);
    }

    #[test]
    fn pods_are_counted_by_controller_and_news_keeps_the_batch_open() {
        let pod = |name: &str, controller: &str, deleting: bool| -> Arc<CachedPod> {
            let pod = serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "team",
                    "deletionTimestamp": deleting.then_some("2026-01-01T00:00:00Z"),
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "name": "web", "uid": controller, "controller": true}]},
                "spec": {"containers": []}
            }))
            .unwrap();
            Arc::new(CachedPod::from(&pod))
        };
        let rs: Arc<ReplicaSet> = Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "web", "namespace": "team", "uid": "u", "generation": 1},
                "spec": {"replicas": 2, "selector": {}},
                "status": {"replicas": 2, "observedGeneration": 1}
            }))
            .unwrap(),
        );
        let opted_in: BTreeSet<String> = ["team".to_owned()].into();
        let arrivals: BTreeSet<String> = ["team/p1".to_owned()].into();
        let two = [pod("p1", "u", false), pod("p2", "u", false)];
        let check = |arrivals: &BTreeSet<String>, pods: &[Arc<CachedPod>]| {
            batch_complete(arrivals, pods, std::slice::from_ref(&rs), &opted_in, "ours")
        };
        assert!(check(&arrivals, &two));
        let one_leaving = [pod("p1", "u", false), pod("p2", "u", true)];
        assert!(
            !check(&arrivals, &one_leaving),
            "a deleting pod is not live"
        );
        let mut with_news = arrivals.clone();
        with_news.insert("nodeclaim:spot-abc".to_owned());
        assert!(!check(&with_news, &two));
    }

    fn sets_and_counts() -> impl Strategy<Value = (Vec<ReplicaSetCount>, Vec<u32>)> {
        prop::collection::vec((0u32..6, any::<bool>()), 1..6).prop_map(|specs| {
            let sets = specs
                .iter()
                .enumerate()
                .map(|(i, (wanted, ours))| set(&format!("rs{i}"), *wanted, *ours))
                .collect();
            let counts = specs.iter().map(|(wanted, _)| *wanted).collect();
            (sets, counts)
        })
    }

    proptest! {
        /// From any settled state with arrivals, one pod more or less on a
        /// ReplicaSet that counts reopens the batch, as does a pod of no
        /// ReplicaSet.
        #[test]
        fn any_miscount_or_unknown_pod_keeps_the_batch_open(
            (sets, counts) in sets_and_counts(),
            arriving in any::<prop::sample::Index>(),
            touched in any::<prop::sample::Index>(),
            more in any::<bool>(),
        ) {
            let uids: Vec<&str> = sets.iter().map(|s| s.uid.as_str()).collect();
            let settled: HashMap<&str, u32> = uids.iter().copied().zip(counts.iter().copied()).collect();
            let arrival = uids[arriving.index(uids.len())];
            prop_assert!(complete(&[Some(arrival)], &sets, &settled));
            prop_assert!(!complete(&[Some(arrival), None], &sets, &settled));
            let i = touched.index(sets.len());
            if sets[i].ours || uids[i] == arrival {
                let mut off = settled.clone();
                let count = off.entry(uids[i]).or_default();
                if more {
                    *count += 1;
                } else if *count > 0 {
                    *count -= 1;
                } else {
                    *count += 1;
                }
                prop_assert!(!complete(&[Some(arrival)], &sets, &off));
            }
        }
    }
}
