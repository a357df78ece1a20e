//! Which claims' `status.lastPodEventTime` to write at this sweep.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use spotwright_api::conditions;
use spotwright_api::v1alpha1::NodeClaim;

use crate::model::claim::{is_condition_true, node_name};
use crate::model::pod_events::{record_due, recorded, PodsSeen, PodsSeenByNode};

/// The claims whose record is due, with what to record. Only
/// initialized claims that are not being deleted: emptiness and
/// consolidation time no other claim, and a node that is still
/// registering has its pods bound in a burst, so a record written then
/// would be written again at once (and would race registration's own
/// status writes).
pub fn records_due(
    claims: &[Arc<NodeClaim>],
    pods: &PodsSeenByNode,
    written: &HashMap<String, Timestamp>,
    now: Timestamp,
) -> Vec<(String, PodsSeen)> {
    let timed = |claim: &&Arc<NodeClaim>| {
        claim.metadata.deletion_timestamp.is_none()
            && is_condition_true(claim, conditions::INITIALIZED)
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
    use crate::model::pod_events::PodsSeen;
    use serde_json::json;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + second).expect("a time")
    }

    fn claim(name: &str, initialized: &str, deleting: bool) -> Arc<NodeClaim> {
        let deletion = deleting.then_some("2023-11-14T22:13:20Z");
        let claim = json!({"apiVersion": "spotwright.io/v1alpha1", "kind": "NodeClaim",
            "metadata": {"name": name, "deletionTimestamp": deletion},
            "spec": {"nodeClassRef": {"name": "default"}},
            "status": {"nodeName": format!("node-{name}"), "conditions": [
                {"type": conditions::INITIALIZED, "status": initialized, "reason": "Test",
                 "message": "", "lastTransitionTime": "2023-11-14T22:13:20Z"}]}});
        Arc::new(serde_json::from_value(claim).expect("a NodeClaim"))
    }

    fn seen_on(names: &[&str], second: i64) -> PodsSeenByNode {
        let seen = PodsSeen {
            fingerprint: 1,
            since: at(second),
        };
        names.iter().map(|n| (format!("node-{n}"), seen)).collect()
    }

    #[test]
    fn only_initialized_claims_that_stay_are_recorded() {
        let claims = [
            claim("ready", "True", false),
            claim("registering", "False", false),
            claim("leaving", "True", true),
            claim("no-node-seen", "True", false),
        ];
        let pods = seen_on(&["ready", "registering", "leaving"], 5);
        let due = records_due(&claims, &pods, &HashMap::new(), at(20));
        assert_eq!(due, vec![("ready".to_string(), pods["node-ready"])]);
    }

    #[test]
    fn a_claim_written_lately_waits() {
        let claims = [claim("ready", "True", false)];
        let pods = seen_on(&["ready"], 15);
        let written = HashMap::from([("ready".to_string(), at(12))]);
        assert!(records_due(&claims, &pods, &written, at(20)).is_empty());
        assert_eq!(records_due(&claims, &pods, &written, at(22)).len(), 1);
    }
}
