//! Termination's decisions, pure: the next step for a claim from the claim,
//! its Node and the pods bound to it, and the backoff after refusals.

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::{Resource, ResourceExt};
use spotwright_api::duration::parse_go_duration;
use spotwright_api::NodeClaim;

use crate::model::claim::{has_finalizer, instance_id, provider_id};
use crate::model::node::has_disrupted_taint;
use crate::model::pod::CachedPod;

/// A pod, by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
}

/// The next step for one claim.
#[derive(Clone, Debug, PartialEq)]
pub enum TerminationStep {
    /// Alive, without the finalizer: add it.
    AddFinalizer,
    /// Alive with the finalizer, or gone past it: nothing to do.
    Nothing,
    /// Deleting: taint the Node as disrupted and cordon it.
    Cordon { node: String },
    /// Deleting, cordoned: evict these pods.
    Evict { node: String, pods: Vec<PodRef> },
    /// Deleting past its `terminationGracePeriod`: delete these pods,
    /// whatever their PodDisruptionBudgets and `do-not-disrupt` say.
    ForceDelete { node: String, pods: Vec<PodRef> },
    /// Every workload pod is evicted; wait for them to exit.
    AwaitPodExit { node: String, pods: usize },
    /// Drained (or no Node): terminate, delete the Node, drop the finalizer.
    Finish {
        node: Option<String>,
        instance_id: Option<String>,
    },
}

fn is_cordoned(node: &Node) -> bool {
    let unschedulable = node.spec.as_ref().and_then(|s| s.unschedulable);
    unschedulable.unwrap_or(false) && has_disrupted_taint(node)
}

/// When a deleting claim's drain stops waiting for evictions: its deletion
/// plus its `terminationGracePeriod`. `None` while it is alive, and when it
/// has no grace period (the drain then never forces).
pub fn grace_deadline(claim: &NodeClaim) -> Option<Timestamp> {
    let deleted = claim.meta().deletion_timestamp.as_ref()?.0;
    let grace = parse_go_duration(claim.spec.termination_grace_period.as_deref()?).ok()?;
    deleted
        .checked_add(SignedDuration::try_from(grace).ok()?)
        .ok()
}

/// Plans the next step from the claim, its Node (if any), the pods bound to
/// it and the time.
pub fn plan(
    claim: &NodeClaim,
    node: Option<&Node>,
    pods: &[&CachedPod],
    now: Timestamp,
) -> TerminationStep {
    if claim.meta().deletion_timestamp.is_none() {
        return if has_finalizer(claim) {
            TerminationStep::Nothing
        } else {
            TerminationStep::AddFinalizer
        };
    }
    if !has_finalizer(claim) {
        return TerminationStep::Nothing;
    }
    let instance_id = provider_id(claim).and_then(instance_id).map(str::to_owned);
    let Some(node) = node else {
        return TerminationStep::Finish {
            node: None,
            instance_id,
        };
    };
    let node_name = node.name_any();
    if !is_cordoned(node) {
        return TerminationStep::Cordon { node: node_name };
    }
    let workload: Vec<&CachedPod> = pods.iter().copied().filter(|p| p.is_workload()).collect();
    let to_evict: Vec<PodRef> = workload
        .iter()
        .filter(|p| !p.deleting)
        .map(|p| PodRef {
            namespace: p.namespace().to_owned(),
            name: p.name.clone(),
        })
        .collect();
    let overdue = grace_deadline(claim).is_some_and(|deadline| now >= deadline);
    if !to_evict.is_empty() && overdue {
        return TerminationStep::ForceDelete {
            node: node_name,
            pods: to_evict,
        };
    }
    if !to_evict.is_empty() {
        return TerminationStep::Evict {
            node: node_name,
            pods: to_evict,
        };
    }
    if !workload.is_empty() {
        return TerminationStep::AwaitPodExit {
            node: node_name,
            pods: workload.len(),
        };
    }
    TerminationStep::Finish {
        node: Some(node_name),
        instance_id,
    }
}

/// The wait after the `refusals`-th refused drain pass in a row (from 1).
pub fn eviction_delay(base: Duration, max: Duration, refusals: u32) -> Duration {
    let doublings = refusals.saturating_sub(1).min(16);
    base.saturating_mul(1u32 << doublings).min(max)
}

/// The wait after a refused drain pass, ending no later than the grace
/// deadline so that the forced deletion is not late.
pub fn wait_within_grace(wait: Duration, deadline: Option<Timestamp>, now: Timestamp) -> Duration {
    let Some(deadline) = deadline else {
        return wait;
    };
    let left = Duration::try_from(deadline.duration_since(now)).unwrap_or(Duration::ZERO);
    wait.min(left.max(Duration::from_millis(100)))
}

/// Whether a refused drain pass is reported with an Event: the first of a
/// streak and every tenth after, so a drain blocked for hours stays visible
/// without flooding.
pub fn report_blocked_drain(refusals_before: u32) -> bool {
    refusals_before.is_multiple_of(10)
}
