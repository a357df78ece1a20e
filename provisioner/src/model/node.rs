//! Node facts: the labels and taints a claim gives its Node.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Taint};
use kube::ResourceExt;
use spotwright_api::keys;
use spotwright_api::v1alpha1::RequirementOperator;
use spotwright_api::NodeClaim;

/// The labels a claim's Node must carry: the claim's own labels, the
/// single-valued `In` requirements, and the launched instance's facts.
pub fn node_labels(claim: &NodeClaim) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = claim.labels().clone();
    for requirement in &claim.spec.requirements {
        if let (RequirementOperator::In, [value]) =
            (requirement.operator, requirement.values.as_slice())
        {
            labels.insert(requirement.key.clone(), value.clone());
        }
    }
    if let Some(status) = &claim.status {
        let facts = [
            (keys::INSTANCE_TYPE_LABEL, &status.instance_type),
            (keys::ZONE_LABEL, &status.zone),
            (keys::CAPACITY_TYPE_LABEL, &status.capacity_type),
        ];
        for (key, value) in facts {
            if let Some(value) = value.as_ref().filter(|v| !v.is_empty()) {
                labels.insert(key.to_owned(), value.clone());
            }
        }
    }
    labels
}

/// Whether two taints are the same taint (the API server keys them so).
pub fn same_taint(a: &Taint, b: &Taint) -> bool {
    a.key == b.key && a.effect == b.effect
}

/// The Node's taints.
pub fn node_taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
}

/// The Node's `spec.providerID`.
pub fn node_provider_id(node: &Node) -> Option<&str> {
    node.spec.as_ref()?.provider_id.as_deref()
}

/// The disruption taint put on a node that is replaced or drained.
pub fn disrupted_taint() -> Taint {
    Taint {
        key: keys::DISRUPTED_TAINT_KEY.to_owned(),
        effect: "NoSchedule".to_owned(),
        value: None,
        time_added: None,
    }
}

/// Whether the Node carries the disruption taint.
pub fn has_disrupted_taint(node: &Node) -> bool {
    node_taints(node)
        .iter()
        .any(|t| t.key == keys::DISRUPTED_TAINT_KEY && t.effect == "NoSchedule")
}
