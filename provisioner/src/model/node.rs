//! Node facts: the labels and taints a claim gives its Node.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Taint};
use kube::ResourceExt;
use spotwright_api::keys::{self, CapacityType};
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

/// Whether the taint is the Spot taint (`spotwright.io/capacity-type=spot`).
pub fn is_spot_taint(taint: &Taint) -> bool {
    taint.key == keys::CAPACITY_TYPE_LABEL && taint.value.as_deref() == Some(keys::SPOT)
}

/// The taints a claim's Node registers with: its NodePool's taints and
/// startup taints, except that the Spot taint goes on Spot nodes only, so a
/// pool that allows both never puts it on an on-demand node. `capacity` is
/// the node's (`None` while unknown: the taint then stays).
pub fn claim_taints(
    claim: &NodeClaim,
    capacity: Option<CapacityType>,
) -> impl Iterator<Item = &Taint> {
    claim
        .spec
        .taints
        .iter()
        .chain(&claim.spec.startup_taints)
        .filter(move |t| !(capacity == Some(CapacityType::OnDemand) && is_spot_taint(t)))
}

/// The capacity type a launched claim reports.
pub fn claim_capacity(claim: &NodeClaim) -> Option<CapacityType> {
    let status = claim.status.as_ref()?;
    CapacityType::parse(status.capacity_type.as_deref()?)
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

#[cfg(test)]
mod tests {
    use spotwright_api::v1alpha1::{NodeClaimSpec, NodeClaimStatus};

    use super::*;

    fn taint(key: &str, value: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: "NoSchedule".into(),
            time_added: None,
        }
    }

    fn claim(capacity: Option<&str>) -> NodeClaim {
        let mut claim = NodeClaim::new(
            "c",
            NodeClaimSpec {
                taints: vec![
                    taint(keys::CAPACITY_TYPE_LABEL, keys::SPOT),
                    taint("team", "a"),
                ],
                startup_taints: vec![taint("agent", "starting")],
                ..NodeClaimSpec::default()
            },
        );
        claim.status = Some(NodeClaimStatus {
            capacity_type: capacity.map(Into::into),
            ..NodeClaimStatus::default()
        });
        claim
    }

    fn keys_of<'a>(taints: impl Iterator<Item = &'a Taint>) -> Vec<&'a str> {
        taints.map(|t| t.key.as_str()).collect()
    }

    #[test]
    fn the_spot_taint_goes_on_spot_nodes_only() {
        let on_demand = claim(Some(keys::ON_DEMAND));
        assert_eq!(claim_capacity(&on_demand), Some(CapacityType::OnDemand));
        assert_eq!(
            keys_of(claim_taints(&on_demand, claim_capacity(&on_demand))),
            ["team", "agent"]
        );
        let spot = claim(Some(keys::SPOT));
        assert_eq!(
            keys_of(claim_taints(&spot, claim_capacity(&spot))),
            [keys::CAPACITY_TYPE_LABEL, "team", "agent"]
        );
        // Not launched yet: the taint stays, so nothing lands early.
        let unknown = claim(None);
        assert_eq!(claim_capacity(&unknown), None);
        assert_eq!(keys_of(claim_taints(&unknown, None)).len(), 3);
    }

    #[test]
    fn only_the_spot_value_is_the_spot_taint() {
        assert!(is_spot_taint(&taint(keys::CAPACITY_TYPE_LABEL, keys::SPOT)));
        assert!(!is_spot_taint(&taint(
            keys::CAPACITY_TYPE_LABEL,
            keys::ON_DEMAND
        )));
        assert!(!is_spot_taint(&taint("other", keys::SPOT)));
    }
}
