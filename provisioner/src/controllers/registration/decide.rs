//! Registration's decisions, pure functions of (claim, node, now): what
//! to write onto the Node so it matches its claim, when the claim counts as
//! registered and initialized, and when its instance has waited too long.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};
use spotwright_api::{conditions, NodeClaim};

use crate::model::claim::{
    elapsed, find_condition, is_condition_true, provider_id, set_condition, ConditionUpdate,
};
use crate::model::launch_group::is_unregistered_taint;
use crate::model::node::{claim_capacity, claim_taints, node_labels, node_taints, same_taint};

/// How registration behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrationSettings {
    /// A launched claim whose Node has not registered after this long is deleted.
    pub registration_timeout: Duration,
    /// Claims are looked at on every claim or Node change, and at least this often.
    pub recheck: Duration,
    /// The longest a registered node keeps the registration taint while
    /// other nodes of its launch group have not registered (zero: lifted at
    /// registration).
    pub gate: Duration,
}

impl Default for RegistrationSettings {
    fn default() -> Self {
        RegistrationSettings {
            registration_timeout: Duration::from_secs(15 * 60),
            recheck: Duration::from_secs(5),
            gate: Duration::from_secs(5),
        }
    }
}

/// What to write onto the Node so it matches its claim.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeUpdate {
    /// Labels to set; every other label of the Node stays as it is.
    pub labels: BTreeMap<String, String>,
    /// The Node's full new taint list, when taints must be added or the
    /// registration taint lifted.
    pub taints: Option<Vec<Taint>>,
}

impl NodeUpdate {
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.taints.is_none()
    }

    /// The Node as it is after the update.
    pub fn applied_to(&self, node: &Node) -> Node {
        let mut node = node.clone();
        node.metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .extend(self.labels.clone());
        if let Some(taints) = &self.taints {
            node.spec.get_or_insert_with(Default::default).taints = Some(taints.clone());
        }
        node
    }
}

/// What registration does next for one claim.
#[derive(Clone, Debug, PartialEq)]
pub enum RegistrationDecision {
    /// Deleting, or not launched yet: nothing to do here.
    Ignore,
    /// Launched, no Node yet; the timeout is reached after `remaining`.
    AwaitNode { remaining: Duration },
    /// Launched this long ago without a Node: delete the claim.
    TimedOut { waited: Duration },
    /// A Node matches: update it, then record what was observed.
    /// `gate_opens_in`: the registration taint stays on for at most this
    /// long (siblings still to come).
    Register {
        node_name: String,
        node_update: NodeUpdate,
        initialized: bool,
        gate_opens_in: Option<Duration>,
    },
}

/// How far a claim's launch group has come: how many of its claims have a
/// Node, out of how many the pass made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupProgress {
    pub registered: usize,
    pub size: usize,
}

/// Whether the registration taint may come off a Node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    Open,
    /// Siblings are still to register; the bound is reached after `opens_in`.
    Closed {
        opens_in: Duration,
    },
}

/// The gate of a Node created at `registered_at`: open once every claim of
/// its group has a Node (or it has no group), or once it has waited `bound`.
pub fn gate(
    group: Option<GroupProgress>,
    registered_at: Option<Timestamp>,
    bound: Duration,
    now: Timestamp,
) -> Gate {
    if group.is_none_or(|g| g.registered >= g.size) {
        return Gate::Open;
    }
    let waited = registered_at.map_or(bound, |at| elapsed(at, now));
    match bound.checked_sub(waited) {
        Some(opens_in) if !opens_in.is_zero() => Gate::Closed { opens_in },
        _ => Gate::Open,
    }
}

/// The update that makes `node` match `claim`. Labels are only ever set,
/// never removed. Taints (and startup taints) are added only until the
/// claim is registered: after that, whoever removes a startup taint (a CNI,
/// an agent) must not see it come back. The registration taint is lifted
/// when `gate` is open, in the same write.
pub fn plan_node_update(claim: &NodeClaim, node: &Node, gate: Gate) -> NodeUpdate {
    let current = node.labels();
    let labels = node_labels(claim)
        .into_iter()
        .filter(|(key, value)| current.get(key) != Some(value))
        .collect();
    let existing = node_taints(node);
    let missing: Vec<Taint> = if is_condition_true(claim, conditions::REGISTERED) {
        Vec::new()
    } else {
        claim_taints(claim, claim_capacity(claim))
            .filter(|wanted| !existing.iter().any(|t| same_taint(t, wanted)))
            .fold(Vec::new(), |mut acc, t| {
                if !acc.iter().any(|a| same_taint(a, t)) {
                    acc.push(t.clone());
                }
                acc
            })
    };
    let lift = gate == Gate::Open && existing.iter().any(is_unregistered_taint);
    let taints = (lift || !missing.is_empty()).then(|| {
        existing
            .iter()
            .filter(|t| !(lift && is_unregistered_taint(t)))
            .cloned()
            .chain(missing)
            .collect()
    });
    NodeUpdate { labels, taints }
}

/// A registered Node is initialized when it is Ready, reports allocatable
/// resources, and none of the claim's startup taints remain, nor the
/// registration taint.
pub fn is_initialized(claim: &NodeClaim, node: &Node) -> bool {
    let status = node.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let allocatable = status
        .and_then(|s| s.allocatable.as_ref())
        .is_some_and(|a| a.contains_key("cpu") && a.contains_key("memory"));
    let taints = node_taints(node);
    let startup_gone = !claim
        .spec
        .startup_taints
        .iter()
        .any(|s| taints.iter().any(|t| same_taint(t, s)));
    let gate_open = !taints.iter().any(is_unregistered_taint);
    ready && allocatable && startup_gone && gate_open
}

/// Decides what registration does for `claim`, given the Node carrying its
/// providerID (if any) and how far the claim's launch group has come.
pub fn decide(
    claim: &NodeClaim,
    node: Option<&Node>,
    group: Option<GroupProgress>,
    settings: &RegistrationSettings,
    now: Timestamp,
) -> RegistrationDecision {
    if claim.meta().deletion_timestamp.is_some() || provider_id(claim).is_none() {
        return RegistrationDecision::Ignore;
    }
    if let Some(node) = node {
        // Initialized is sticky: a node that was once ready and later is
        // not stays initialized; readiness after that is not our business.
        // Judged on the Node as it will be once updated: startup taints
        // added now mean it is not initialized yet.
        let registered_at = node.meta().creation_timestamp.as_ref().map(|t| t.0);
        let gate = gate(group, registered_at, settings.gate, now);
        let node_update = plan_node_update(claim, node, gate);
        let initialized = is_condition_true(claim, conditions::INITIALIZED)
            || is_initialized(claim, &node_update.applied_to(node));
        let gate_opens_in = match gate {
            Gate::Closed { opens_in } if node_taints(node).iter().any(is_unregistered_taint) => {
                Some(opens_in)
            }
            _ => None,
        };
        return RegistrationDecision::Register {
            node_name: node.name_any(),
            node_update,
            initialized,
            gate_opens_in,
        };
    }
    if is_condition_true(claim, conditions::REGISTERED) {
        // The Node left after registering (deleted by hand, or by the
        // termination controller): not a registration timeout.
        return RegistrationDecision::Ignore;
    }
    let waited = launched_at(claim).map_or(Duration::ZERO, |at| elapsed(at, now));
    match settings.registration_timeout.checked_sub(waited) {
        Some(remaining) if !remaining.is_zero() => RegistrationDecision::AwaitNode { remaining },
        _ => RegistrationDecision::TimedOut { waited },
    }
}

/// When the claim was launched: its `Launched` condition turning true, else its creation.
fn launched_at(claim: &NodeClaim) -> Option<Timestamp> {
    find_condition(claim, conditions::LAUNCHED)
        .filter(|c| c.status == "True")
        .map(|c| c.last_transition_time.0)
        .or_else(|| claim.meta().creation_timestamp.as_ref().map(|t| t.0))
}

/// The claim's conditions after registering `node_name`.
pub fn registered_conditions(
    claim: &NodeClaim,
    node_name: &str,
    initialized: bool,
    now: Timestamp,
) -> (Vec<Condition>, bool) {
    let mut conditions = claim
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let generation = claim.meta().generation;
    let mut changed = set_condition(
        &mut conditions,
        ConditionUpdate {
            type_: conditions::REGISTERED,
            status: true,
            reason: "NodeRegistered",
            message: format!("Node {node_name} joined with the claim's providerID"),
        },
        generation,
        now,
    );
    let (reason, message) = if initialized {
        ("NodeInitialized", format!("Node {node_name} is Ready"))
    } else {
        (
            "NodeNotReady",
            format!(
                "Node {node_name} is not Ready, reports no allocatable, or keeps startup taints"
            ),
        )
    };
    changed |= set_condition(
        &mut conditions,
        ConditionUpdate {
            type_: conditions::INITIALIZED,
            status: initialized,
            reason,
            message,
        },
        generation,
        now,
    );
    (conditions, changed)
}
