//! Which claims' record (`status.lastPodEventTime`, `lastPodEventPods`)
//! to write at this sweep.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use spotwright_api::duration::Lifetime;
use spotwright_api::v1alpha1::NodeClaim;
use spotwright_api::{conditions, NodePool};

use crate::model::claim::{is_condition_true, node_name, nodepool_of};
use crate::model::disruption::is_disrupting;
use crate::model::pod_events::{record_due, recorded, PodsSeen, PodsSeenByNode, Written};

/// Whether a restart could resume a timer of this pool's nodes: its
/// `consolidateAfter` is a time above zero. With `0s` a node is acted on at
/// once and with `Never` not at all, so a record would never be read.
pub fn resumes_timers(pool: &NodePool) -> bool {
    matches!(
        Lifetime::parse(&pool.spec.disruption.consolidate_after),
        Ok(Lifetime::After(after)) if !after.is_zero()
    )
}

/// The claims whose record is due, with what to record. Only claims of
/// `timed_pools` ([`resumes_timers`]) that are initialized and neither
/// being deleted nor disrupted: emptiness and consolidation time no other
/// claim, and a node that is still registering has its pods bound in a
/// burst, so a record written then would be written again at once (and
/// would race registration's own status writes, as one written while the
/// claim is let go would race termination's).
pub fn records_due(
    claims: &[Arc<NodeClaim>],
    timed_pools: &HashSet<String>,
    pods: &PodsSeenByNode,
    written: &HashMap<String, Written>,
    now: Timestamp,
) -> Vec<(String, PodsSeen)> {
    let timed = |claim: &&Arc<NodeClaim>| {
        is_condition_true(claim, conditions::INITIALIZED)
            && !is_disrupting(claim)
            && timed_pools.contains(&nodepool_of(claim))
    };
    let due = |claim: &Arc<NodeClaim>| {
        let seen = *pods.get(node_name(claim)?)?;
        let name = claim.name_any();
        let last_written = written.get(&name).copied();
        record_due(seen, recorded(claim), last_written, now).then_some((name, seen))
    };
    claims.iter().filter(timed).filter_map(due).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use spotwright_api::keys;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + second).expect("a time")
    }

    fn condition(type_: &str, status: &str) -> serde_json::Value {
        json!({"type": type_, "status": status, "reason": "Test", "message": "",
               "lastTransitionTime": "2023-11-14T22:13:20Z"})
    }

    /// A claim of pool `pool` on Node `node-<name>`, initialized or not.
    fn claim(name: &str, pool: &str, initialized: &str) -> serde_json::Value {
        json!({"apiVersion": "spotwright.io/v1alpha1", "kind": "NodeClaim",
            "metadata": {"name": name, "labels": {keys::NODEPOOL_LABEL: pool}},
            "spec": {"nodeClassRef": {"name": "default"}},
            "status": {"nodeName": format!("node-{name}"),
                       "conditions": [condition(conditions::INITIALIZED, initialized)]}})
    }

    fn object(value: serde_json::Value) -> Arc<NodeClaim> {
        Arc::new(serde_json::from_value(value).expect("a NodeClaim"))
    }

    fn seen_on(names: &[&str], second: i64) -> PodsSeenByNode {
        let seen = PodsSeen {
            fingerprint: 1,
            since: at(second),
        };
        names.iter().map(|n| (format!("node-{n}"), seen)).collect()
    }

    fn timed() -> HashSet<String> {
        HashSet::from(["timed".to_string()])
    }

    #[test]
    fn only_initialized_claims_that_stay_in_timed_pools_are_recorded() {
        let mut leaving = claim("leaving", "timed", "True");
        leaving["metadata"]["deletionTimestamp"] = json!("2023-11-14T22:13:20Z");
        let mut disrupted = claim("disrupted", "timed", "True");
        disrupted["status"]["conditions"]
            .as_array_mut()
            .expect("conditions")
            .push(condition(conditions::DISRUPTING, "True"));
        let claims = [
            claim("ready", "timed", "True"),
            claim("registering", "timed", "False"),
            leaving,
            disrupted,
            claim("untimed", "instant", "True"),
            claim("no-node-seen", "timed", "True"),
        ]
        .map(object);
        let nodes = ["ready", "registering", "leaving", "disrupted", "untimed"];
        let pods = seen_on(&nodes, 5);
        let due = records_due(&claims, &timed(), &pods, &HashMap::new(), at(20));
        assert_eq!(due, vec![("ready".to_string(), pods["node-ready"])]);
    }

    #[test]
    fn a_claim_written_lately_waits() {
        let claims = [object(claim("ready", "timed", "True"))];
        let pods = seen_on(&["ready"], 15);
        let earlier = Written {
            at: at(12),
            what: PodsSeen {
                fingerprint: 0,
                since: at(0),
            },
        };
        let written = HashMap::from([("ready".to_string(), earlier)]);
        assert!(records_due(&claims, &timed(), &pods, &written, at(20)).is_empty());
        assert_eq!(
            records_due(&claims, &timed(), &pods, &written, at(22)).len(),
            1
        );
    }

    #[test]
    fn only_a_consolidate_after_above_zero_resumes_timers() {
        let pool = |after: &str| -> NodePool {
            serde_json::from_value(json!({
                "apiVersion": "spotwright.io/v1alpha1", "kind": "NodePool",
                "metadata": {"name": "p"},
                "spec": {"template": {"spec": {"nodeClassRef": {"name": "default"}}},
                         "disruption": {"consolidateAfter": after}}}))
            .expect("a NodePool")
        };
        assert!(resumes_timers(&pool("30s")));
        assert!(resumes_timers(&pool("1h")));
        assert!(!resumes_timers(&pool("0s")));
        assert!(!resumes_timers(&pool("Never")));
        assert!(
            !resumes_timers(&pool("soon")),
            "refused elsewhere, not timed"
        );
    }
}
