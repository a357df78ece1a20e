//! Nodes and in-flight NodeClaims as places pods can go.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use spotwright_api::keys;
use spotwright_api::quantity;
use spotwright_api::NodeClaim;
use spotwright_solver::model::{ExistingNode, InstanceType, PlacedPod, Resources, Taint};

use super::selectors::{effect, labels};

/// A registered Node with the pods bound to it: what they request in all,
/// and each for spread and anti-affinity counts.
pub fn existing_node(node: &Node, requested: Resources, pods: Vec<PlacedPod>) -> ExistingNode {
    let spec = node.spec.as_ref();
    let taints = spec
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|t| {
            Some(Taint {
                key: t.key.clone(),
                value: t.value.clone(),
                effect: effect(&t.effect)?,
            })
        })
        .collect::<Vec<_>>();
    let disrupted = taints.iter().any(|t| t.key == keys::DISRUPTED_TAINT_KEY);
    ExistingNode {
        name: node.metadata.name.clone().unwrap_or_default(),
        labels: labels(node.metadata.labels.as_ref()),
        taints,
        allocatable: resources(node.status.as_ref().and_then(|s| s.allocatable.as_ref())),
        requested,
        pods,
        in_flight: false,
        unavailable: disrupted
            || node.metadata.deletion_timestamp.is_some()
            || spec.and_then(|s| s.unschedulable).unwrap_or(false),
    }
}

/// The Node's labels.
pub fn labels_of(node: &Node) -> BTreeMap<String, String> {
    labels(node.metadata.labels.as_ref())
}

/// A NodeClaim launched (or being launched) whose Node has not registered:
/// pods the scheduler cannot place yet may be waiting for it, so the solver
/// counts it as a node and does not launch twice for them.
pub fn in_flight_node(
    claim: &NodeClaim,
    instance_type: &InstanceType,
    daemon_overhead: &Resources,
) -> ExistingNode {
    let mut node_labels = instance_type.labels.clone();
    node_labels.extend(labels(claim.metadata.labels.as_ref()));
    let status = claim.status.as_ref();
    if let Some(zone) = status.and_then(|s| s.zone.clone()) {
        node_labels.insert(keys::ZONE_LABEL.to_owned(), zone);
    }
    if let Some(ct) = status.and_then(|s| s.capacity_type.clone()) {
        node_labels.insert(keys::CAPACITY_TYPE_LABEL.to_owned(), ct);
    }
    let taints = claim
        .spec
        .taints
        .iter()
        .filter_map(|t| {
            Some(Taint {
                key: t.key.clone(),
                value: t.value.clone(),
                effect: effect(&t.effect)?,
            })
        })
        .collect();
    ExistingNode {
        name: claim.metadata.name.clone().unwrap_or_default(),
        labels: node_labels,
        taints,
        allocatable: instance_type.allocatable.clone(),
        requested: daemon_overhead.clone(),
        pods: Vec::new(),
        in_flight: true,
        unavailable: claim.metadata.deletion_timestamp.is_some(),
    }
}

/// `status.capacity`: what counts against a NodePool's limits.
pub fn node_capacity(node: &Node) -> Resources {
    resources(node.status.as_ref().and_then(|s| s.capacity.as_ref()))
}

pub fn resources(list: Option<&BTreeMap<String, Quantity>>) -> Resources {
    let mut r = Resources::default();
    for (name, q) in list.into_iter().flatten() {
        let value =
            |v: Result<i64, _>| v.ok().and_then(|v: i64| u64::try_from(v).ok()).unwrap_or(0);
        match name.as_str() {
            "cpu" => r.cpu_millis = value(quantity::milli_value(&q.0)),
            "memory" => r.memory_bytes = value(quantity::value(&q.0)),
            "ephemeral-storage" => r.ephemeral_bytes = value(quantity::value(&q.0)),
            "pods" => r.pods = value(quantity::value(&q.0)),
            other => {
                let v = value(quantity::value(&q.0));
                if v > 0 {
                    r.extended.push((other.to_owned(), v));
                }
            }
        }
    }
    r.extended.sort();
    r
}

pub fn add(into: &mut Resources, other: &Resources) {
    into.cpu_millis = into.cpu_millis.saturating_add(other.cpu_millis);
    into.memory_bytes = into.memory_bytes.saturating_add(other.memory_bytes);
    into.ephemeral_bytes = into.ephemeral_bytes.saturating_add(other.ephemeral_bytes);
    into.pods = into.pods.saturating_add(other.pods);
    for (name, value) in &other.extended {
        match into.extended.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = v.saturating_add(*value),
            None => into.extended.push((name.clone(), *value)),
        }
    }
    into.extended.sort();
}
