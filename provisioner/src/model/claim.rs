//! NodeClaim facts every controller reads: its pool, its instance, its
//! conditions, its finalizer.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};
use spotwright_api::{keys, NodeClaim};

/// The finalizer that holds a NodeClaim until its node is drained and its instance gone.
pub const TERMINATION_FINALIZER: &str = "spotwright.io/termination";

/// The NodePool a claim belongs to (its `spotwright.io/nodepool` label).
pub fn nodepool_of(claim: &NodeClaim) -> String {
    claim
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(keys::NODEPOOL_LABEL))
        .cloned()
        .unwrap_or_default()
}

/// The claim's `status.providerID`, when it is launched.
pub fn provider_id(claim: &NodeClaim) -> Option<&str> {
    claim
        .status
        .as_ref()
        .and_then(|s| s.provider_id.as_deref())
        .filter(|p| !p.is_empty())
}

/// The instance id of an `aws:///<zone>/<instance-id>` providerID.
pub fn instance_id(provider_id: &str) -> Option<&str> {
    let rest = provider_id.strip_prefix("aws://")?;
    rest.rsplit('/').next().filter(|id| id.starts_with("i-"))
}

/// $/h of the claim's offering (its instance type, zone and capacity
/// type) in `instance_types`, once it is launched.
pub fn offering_price(
    claim: &NodeClaim,
    instance_types: &[spotwright_solver::model::InstanceType],
) -> Option<f64> {
    let status = claim.status.as_ref()?;
    let capacity = keys::CapacityType::parse(status.capacity_type.as_deref()?)?;
    instance_types
        .iter()
        .find(|t| Some(&t.name) == status.instance_type.as_ref())?
        .offerings
        .iter()
        .find(|o| Some(&o.zone) == status.zone.as_ref() && o.capacity_type == capacity)
        .map(|o| o.price)
}

/// The Node name the claim recorded, when registration did.
pub fn node_name(claim: &NodeClaim) -> Option<&str> {
    claim.status.as_ref()?.node_name.as_deref()
}

/// Whether the claim still holds the termination finalizer.
pub fn has_finalizer(claim: &NodeClaim) -> bool {
    claim
        .finalizers()
        .iter()
        .any(|f| f == TERMINATION_FINALIZER)
}

/// When the claim's Node last gained or lost a workload pod, as recorded
/// (`status.lastPodEventTime`).
pub fn last_pod_event_time(claim: &NodeClaim) -> Option<Timestamp> {
    Some(claim.status.as_ref()?.last_pod_event_time.as_ref()?.0)
}

/// How long before `now` `then` was (zero if after it).
pub fn elapsed(then: Timestamp, now: Timestamp) -> Duration {
    let span = now.duration_since(then);
    Duration::try_from(span).unwrap_or(Duration::ZERO)
}

pub fn find_condition<'a>(claim: &'a NodeClaim, type_: &str) -> Option<&'a Condition> {
    claim
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

pub fn is_condition_true(claim: &NodeClaim, type_: &str) -> bool {
    find_condition(claim, type_).is_some_and(|c| c.status == "True")
}

/// A condition to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionUpdate<'a> {
    pub type_: &'a str,
    pub status: bool,
    pub reason: &'a str,
    pub message: String,
}

/// Sets a condition in `conditions`; `lastTransitionTime` changes only when
/// the status does. Returns whether anything changed.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    update: ConditionUpdate<'_>,
    observed_generation: Option<i64>,
    now: Timestamp,
) -> bool {
    let status = if update.status { "True" } else { "False" };
    let fresh = Condition {
        type_: update.type_.to_owned(),
        status: status.to_owned(),
        reason: update.reason.to_owned(),
        message: update.message,
        observed_generation,
        last_transition_time: Time(now),
    };
    match conditions.iter_mut().find(|c| c.type_ == update.type_) {
        None => {
            conditions.push(fresh);
            true
        }
        Some(existing) => {
            let transition_time = if existing.status == status {
                existing.last_transition_time.clone()
            } else {
                fresh.last_transition_time.clone()
            };
            let next = Condition {
                last_transition_time: transition_time,
                ..fresh
            };
            let changed = *existing != next;
            *existing = next;
            changed
        }
    }
}

/// The claim's conditions with `update` applied, when that changes them.
pub fn conditions_with(
    claim: &NodeClaim,
    update: ConditionUpdate<'_>,
    now: Timestamp,
) -> Option<Vec<Condition>> {
    let mut conditions = claim
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    set_condition(&mut conditions, update, claim.meta().generation, now).then_some(conditions)
}
