//! Which nodes consolidation may act on, and when it may look at all.

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};
use spotwright_api::keys::{CapacityType, INSTANCE_TYPE_LABEL};
use spotwright_api::{conditions, NodeClaim, NodePool};
use spotwright_solver::model::InstanceType;

use crate::model::claim::{
    elapsed, find_condition, is_condition_true, nodepool_of, offering_price,
};
use crate::model::consolidation::cost::pod_cost;
use crate::model::consolidation::{Candidate, SPOT_TO_SPOT_MIN_TYPES};
use crate::model::disruption::is_disrupting;
use crate::model::facts;
use crate::model::pod::do_not_disrupt;
use crate::model::pod_events::PodsSeenByNode;
use crate::state::Snapshot;

/// No pod waits for Spotwright, no claim is still coming up, and no
/// disruption is under way.
pub(super) fn quiet(snapshot: &Snapshot, scheduler_name: &str) -> bool {
    let pending = snapshot
        .pods
        .iter()
        .any(|p| p.is_provisionable(scheduler_name, &snapshot.opted_in));
    let moving = snapshot
        .claims
        .iter()
        .any(|c| is_disrupting(c) || !is_condition_true(c, conditions::INITIALIZED));
    !pending && !moving
}
/// The pool's `minValues` on instance types, else Karpenter's 15.
pub(super) fn min_types(pool: &NodePool) -> usize {
    pool.spec
        .template
        .spec
        .requirements
        .iter()
        .filter(|r| r.key == INSTANCE_TYPE_LABEL)
        .filter_map(|r| r.min_values)
        .max()
        .map_or(SPOT_TO_SPOT_MIN_TYPES, |m| m as usize)
}

/// The pool's nodes consolidation may act on now.
pub(super) fn candidates(
    snapshot: &Snapshot,
    settled: &PodsSeenByNode,
    pool: &str,
    consolidate_after: Duration,
    nomination_window: Duration,
    instance_types: &[InstanceType],
    now: Timestamp,
) -> Vec<Candidate> {
    snapshot
        .claims
        .iter()
        .filter(|c| nodepool_of(c) == pool && c.meta().deletion_timestamp.is_none())
        .filter(|c| old_enough(c, nomination_window, now))
        .filter_map(|claim| {
            let node = snapshot.node_named_by(claim)?;
            let since = settled.get(&node.name_any())?.since;
            if elapsed(since, now) < consolidate_after {
                return None;
            }
            candidate(snapshot, claim, node, instance_types)
        })
        .collect()
}

/// Initialized for longer than the nomination window.
fn old_enough(claim: &NodeClaim, nomination_window: Duration, now: Timestamp) -> bool {
    find_condition(claim, conditions::INITIALIZED).is_some_and(|c| {
        c.status == "True" && elapsed(c.last_transition_time.0, now) >= nomination_window
    })
}

/// The claim as a candidate: `None` when it is empty (emptiness removes
/// it), carries `do-not-disrupt`, has no known price or an unreadable pod.
fn candidate(
    snapshot: &Snapshot,
    claim: &NodeClaim,
    node: &Node,
    instance_types: &[InstanceType],
) -> Option<Candidate> {
    let node_name = node.name_any();
    let pods = snapshot.pods_on(&node_name);
    if do_not_disrupt(node, &pods).is_some() {
        return None;
    }
    let workload: Vec<_> = pods.iter().filter(|p| p.is_workload()).collect();
    if workload.is_empty() {
        return None;
    }
    let mut pending = Vec::new();
    let mut disruption_cost = 0.0;
    for pod in workload {
        pending.push(pod.pending().ok()?);
        disruption_cost += pod_cost(pod.shape.priority, pod.shape.deletion_cost);
    }
    let status = claim.status.as_ref()?;
    Some(Candidate {
        claim: claim.name_any(),
        node: node_name,
        nodepool: nodepool_of(claim),
        capacity: facts::node_capacity(node),
        capacity_type: CapacityType::parse(status.capacity_type.as_deref()?)?,
        price: offering_price(claim, instance_types).filter(|p| *p > 0.0)?,
        pods: pending,
        disruption_cost,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn initialized_at(seconds: i64) -> NodeClaim {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "spotwright.io/v1alpha1", "kind": "NodeClaim",
            "metadata": {"name": "c"}, "spec": {"nodeClassRef": {"name": "default"}},
            "status": {"conditions": [{"type": conditions::INITIALIZED, "status": "True",
                "reason": "Initialized", "message": "",
                "lastTransitionTime": Timestamp::from_second(seconds).expect("a time").to_string()}]}
        }))
        .expect("a NodeClaim")
    }

    #[test]
    fn a_node_is_a_candidate_only_after_the_configured_nomination_window() {
        let claim = initialized_at(1_000);
        let at = |s: i64| Timestamp::from_second(s).expect("a time");
        let short = Duration::from_secs(10);
        assert!(!old_enough(&claim, short, at(1_009)));
        assert!(old_enough(&claim, short, at(1_010)));
        let default = crate::model::disruption::NOMINATION_WINDOW;
        assert!(!old_enough(&claim, default, at(1_010)));
        assert!(old_enough(&claim, default, at(1_030)));
    }
}
