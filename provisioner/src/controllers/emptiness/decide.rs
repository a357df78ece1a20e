//! Emptiness decisions, pure: whether a node counts as empty, for how
//! long, and whether it may go now.

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use spotwright_api::duration::Lifetime;
use spotwright_api::v1alpha1::ConsolidationPolicy;
use spotwright_api::{conditions, NodeClaim, NodePool};

use crate::model::claim::{elapsed, find_condition, is_condition_true};
pub use crate::model::disruption::NOMINATION_WINDOW;
use crate::model::pod::{do_not_disrupt, CachedPod};

/// What the NodePool says about removing its empty nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmptinessPolicy {
    pub policy: ConsolidationPolicy,
    /// `Never` turns removal off.
    pub consolidate_after: Lifetime,
    /// How long a node is kept after it is initialized, however empty
    /// (`--nomination-window`, [`NOMINATION_WINDOW`] by default).
    pub nomination_window: Duration,
}

impl EmptinessPolicy {
    /// From a NodePool; an unparsable `consolidateAfter` is an error, so the
    /// pool's nodes are kept rather than removed on a guess.
    pub fn of(
        pool: &NodePool,
        nomination_window: Duration,
    ) -> Result<Self, spotwright_api::duration::DurationError> {
        Ok(EmptinessPolicy {
            policy: pool.spec.disruption.consolidation_policy,
            consolidate_after: Lifetime::parse(&pool.spec.disruption.consolidate_after)?,
            nomination_window,
        })
    }
}

/// What removal does with one claim.
#[derive(Clone, Debug, PartialEq)]
pub enum EmptinessDecision {
    /// Not a candidate: deleting, not initialized, no Node, or `Never`.
    Ignore,
    /// Has workload pods.
    NotEmpty,
    /// Empty, but not for long enough yet.
    Wait { remaining: Duration },
    /// Empty long enough, but something asks not to be disrupted.
    Blocked { reason: String },
    /// Empty for `empty_for`: delete the claim.
    Remove { empty_for: Duration },
}

/// Decides for one claim. `pods` are the pods bound to the claim's Node;
/// `empty_since` is when its workload pods last changed
/// ([`crate::model::pod_events`]), which for an empty node is since when
/// it is empty (no time known: not empty for any time yet).
pub fn decide(
    claim: &NodeClaim,
    node: Option<&Node>,
    pods: &[&CachedPod],
    policy: EmptinessPolicy,
    empty_since: Option<Timestamp>,
    now: Timestamp,
) -> EmptinessDecision {
    let Some(node) = node else {
        return EmptinessDecision::Ignore;
    };
    let candidate = claim.meta().deletion_timestamp.is_none()
        && node.meta().deletion_timestamp.is_none()
        && is_condition_true(claim, conditions::INITIALIZED);
    // Both policies include emptiness.
    let Lifetime::After(consolidate_after) = policy.consolidate_after else {
        return EmptinessDecision::Ignore;
    };
    if !candidate {
        return EmptinessDecision::Ignore;
    }
    if pods.iter().any(|p| p.is_workload()) {
        return EmptinessDecision::NotEmpty;
    }
    let empty_for = empty_since.map_or(Duration::ZERO, |since| elapsed(since, now));
    let window = policy.nomination_window;
    let ready_for = find_condition(claim, conditions::INITIALIZED)
        .map_or(window, |c| elapsed(c.last_transition_time.0, now));
    let remaining = consolidate_after
        .saturating_sub(empty_for)
        .max(window.saturating_sub(ready_for));
    if !remaining.is_zero() {
        return EmptinessDecision::Wait { remaining };
    }
    match do_not_disrupt(node, pods) {
        Some(reason) => EmptinessDecision::Blocked { reason },
        None => EmptinessDecision::Remove { empty_for },
    }
}
