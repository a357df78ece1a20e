//! Drift decisions, pure: whether a claim has drifted from what its
//! NodePool and NodeClass would launch today, and the condition that says so.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use spotwright_api::keys;
use spotwright_api::{conditions, NodeClaim, NodeClass, NodePool};

use crate::model::claim::{conditions_with, find_condition, ConditionUpdate};
use crate::model::hashing::{nodeclass_hash, nodepool_hash};
use crate::model::launch::request::{meets, INSTANCE_TYPE_KEYS};
use crate::model::node::node_labels;

/// The claim's image is no longer one of its NodeClass's AMIs.
pub const AMI_DRIFT: &str = "AMIDrift";
/// The NodePool's template (requirements excluded) changed.
pub const NODEPOOL_DRIFT: &str = "NodePoolDrift";
/// The NodeClass's spec changed.
pub const NODECLASS_DRIFT: &str = "NodeClassDrift";
/// The node's labels no longer meet the NodePool's requirements.
pub const REQUIREMENTS_DRIFT: &str = "RequirementsDrift";
/// Reason of a `Drifted=False` condition: an earlier drift reverted.
pub const NOT_DRIFTED: &str = "NotDrifted";

/// With [`INSTANCE_TYPE_KEYS`], the label keys that describe the instance
/// or its placement: the Node may not carry every one (nor the claim before
/// launch), so an absent one is unknown rather than a failed requirement.
const PLACEMENT_KEYS: [&str; 3] = [
    keys::ZONE_LABEL,
    keys::CAPACITY_TYPE_LABEL,
    keys::EKS_CAPACITY_TYPE_LABEL,
];

/// Why the claim has drifted, as `(reason, message)`; `None` when it has not.
/// `node` is the claim's Node, `pool` its NodePool and `class` its
/// NodeClass, each if it exists.
pub fn drift(
    claim: &NodeClaim,
    node: Option<&Node>,
    pool: Option<&NodePool>,
    class: Option<&NodeClass>,
) -> Option<(&'static str, String)> {
    let annotation = |key: &str| claim.annotations().get(key).filter(|v| !v.is_empty());
    if let Some(class) = class {
        let image = claim
            .status
            .as_ref()
            .and_then(|s| s.image_id.as_deref())
            .filter(|i| !i.is_empty());
        let amis = class.status.as_ref().map(|s| &s.amis[..]).unwrap_or(&[]);
        if let Some(image) = image.filter(|i| !amis.is_empty() && !amis.iter().any(|a| a.id == *i))
        {
            let ids: Vec<&str> = amis.iter().map(|a| a.id.as_str()).collect();
            return Some((
                AMI_DRIFT,
                format!(
                    "image {image} is no longer among NodeClass {}'s AMIs ({})",
                    class.name_any(),
                    ids.join(", ")
                ),
            ));
        }
        if let Some(recorded) = annotation(keys::NODECLASS_HASH_ANNOTATION) {
            let now = nodeclass_hash(class);
            if *recorded != now {
                return Some((
                    NODECLASS_DRIFT,
                    format!(
                        "NodeClass {} changed since the claim was made (hash {recorded} -> {now})",
                        class.name_any()
                    ),
                ));
            }
        }
    }
    let pool = pool?;
    if let Some(recorded) = annotation(keys::NODEPOOL_HASH_ANNOTATION) {
        let now = nodepool_hash(pool);
        if *recorded != now {
            return Some((
                NODEPOOL_DRIFT,
                format!(
                    "NodePool {}'s template changed since the claim was made (hash {recorded} -> {now})",
                    pool.name_any()
                ),
            ));
        }
    }
    requirements_drift(claim, node, pool)
}

/// `RequirementsDrift`: the Node's labels (the claim's, before there is a
/// Node) fail one of the pool's requirements.
fn requirements_drift(
    claim: &NodeClaim,
    node: Option<&Node>,
    pool: &NodePool,
) -> Option<(&'static str, String)> {
    let labels: BTreeMap<String, String> = match node {
        Some(node) => node.labels().clone(),
        None => node_labels(claim),
    };
    for requirement in &pool.spec.template.spec.requirements {
        let value = labels.get(&requirement.key).map(String::as_str);
        let key = requirement.key.as_str();
        let instance_key = INSTANCE_TYPE_KEYS.contains(&key) || PLACEMENT_KEYS.contains(&key);
        if value.is_none() && instance_key {
            continue;
        }
        let mut judged = crate::model::facts::requirement(requirement);
        judged.min_values = None;
        if !meets(&judged, value) {
            let shown = value.map_or_else(|| "absent".to_owned(), |v| format!("{v:?}"));
            return Some((
                REQUIREMENTS_DRIFT,
                format!(
                    "label {} is {shown}, which fails NodePool {}'s requirement {} {:?} {:?}",
                    requirement.key,
                    pool.name_any(),
                    requirement.key,
                    requirement.operator,
                    requirement.values
                ),
            ));
        }
    }
    None
}

/// The claim's conditions with `Drifted` set from `drift`, when that
/// changes anything: `True` with the reason while drifted, `False` once an
/// earlier drift reverted, and nothing for a claim that never drifted.
pub fn drifted_conditions(
    claim: &NodeClaim,
    drift: Option<(&str, String)>,
    now: Timestamp,
) -> Option<Vec<Condition>> {
    let previous = find_condition(claim, conditions::DRIFTED);
    let update = match drift {
        Some((reason, message)) => ConditionUpdate {
            type_: conditions::DRIFTED,
            status: true,
            reason,
            message,
        },
        None if previous.is_some_and(|c| c.status == "True") => ConditionUpdate {
            type_: conditions::DRIFTED,
            status: false,
            reason: NOT_DRIFTED,
            message: "the node matches its NodePool and NodeClass again".to_owned(),
        },
        None => return None,
    };
    conditions_with(claim, update, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::hashing::{annotate_hashes, template_hashes};
    use k8s_openapi::api::core::v1::Taint;
    use proptest::prelude::*;
    use spotwright_api::v1alpha1::{
        NodeClaimSpec, NodeClaimTemplate, NodeClaimTemplateSpec, NodeClassReference, NodeClassSpec,
        NodeClassStatus, NodePoolSpec, NodeSelectorRequirementWithMinValues, RequirementOperator,
        ResolvedAmi,
    };

    fn taint(key: &str) -> Taint {
        Taint {
            key: key.to_owned(),
            effect: "NoSchedule".to_owned(),
            ..Taint::default()
        }
    }

    fn requirement(key: &str, values: &[&str]) -> NodeSelectorRequirementWithMinValues {
        NodeSelectorRequirementWithMinValues {
            key: key.to_owned(),
            operator: RequirementOperator::In,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
            min_values: None,
        }
    }

    fn pool(
        taints: Vec<Taint>,
        requirements: Vec<NodeSelectorRequirementWithMinValues>,
    ) -> NodePool {
        NodePool::new(
            "general",
            NodePoolSpec {
                template: NodeClaimTemplate {
                    metadata: Default::default(),
                    spec: NodeClaimTemplateSpec {
                        taints,
                        requirements,
                        node_class_ref: NodeClassReference {
                            name: "default".into(),
                        },
                        ..Default::default()
                    },
                },
                ..Default::default()
            },
        )
    }

    fn class(amis: &[&str]) -> NodeClass {
        let mut class = NodeClass::new("default", NodeClassSpec::default());
        class.status = Some(NodeClassStatus {
            amis: amis
                .iter()
                .map(|id| ResolvedAmi {
                    id: (*id).to_owned(),
                    source: None,
                })
                .collect(),
            ..Default::default()
        });
        class
    }

    /// A launched claim made from `pool` and `class`, booted from `image`.
    fn claim(pool: &NodePool, class: &NodeClass, image: &str) -> NodeClaim {
        let mut claim = NodeClaim::new(
            "general-abcde",
            NodeClaimSpec {
                node_class_ref: NodeClassReference {
                    name: "default".into(),
                },
                ..Default::default()
            },
        );
        claim
            .labels_mut()
            .insert(keys::NODEPOOL_LABEL.into(), "general".into());
        annotate_hashes(&mut claim, pool, class);
        claim.status = Some(spotwright_api::v1alpha1::NodeClaimStatus {
            image_id: Some(image.to_owned()),
            instance_type: Some("m5.large".into()),
            ..Default::default()
        });
        claim
    }

    fn node(labels: &[(&str, &str)]) -> Node {
        let mut node = Node::default();
        node.metadata.name = Some("ip-10-0-0-1".into());
        node.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        node
    }

    fn reason(verdict: Option<(&'static str, String)>) -> Option<&'static str> {
        verdict.map(|(r, _)| r)
    }

    #[test]
    fn an_unchanged_claim_has_not_drifted() {
        let p = pool(vec![taint("a")], vec![requirement("team", &["red"])]);
        let c = class(&["ami-1", "ami-2"]);
        let claim = claim(&p, &c, "ami-1");
        let n = node(&[("team", "red")]);
        assert_eq!(drift(&claim, Some(&n), Some(&p), Some(&c)), None);
        assert_eq!(drifted_conditions(&claim, None, Timestamp::now()), None);
    }

    #[test]
    fn an_image_no_longer_resolved_is_ami_drift_until_it_is_back() {
        let p = pool(vec![], vec![]);
        let c = class(&["ami-1"]);
        let claim = claim(&p, &c, "ami-1");
        let moved = class(&["ami-2"]);
        let (r, message) = drift(&claim, None, Some(&p), Some(&moved)).unwrap_or_default();
        assert_eq!(r, AMI_DRIFT);
        assert!(
            message.contains("ami-1") && message.contains("ami-2"),
            "{message}"
        );
        // An unresolved class (no AMIs) says nothing about the image.
        assert_eq!(drift(&claim, None, Some(&p), Some(&class(&[]))), None);
        assert_eq!(drift(&claim, None, Some(&p), Some(&c)), None);
    }

    #[test]
    fn spec_changes_drift_but_requirement_changes_do_not_change_the_hash() {
        let p = pool(vec![taint("a")], vec![requirement("team", &["red"])]);
        let c = class(&["ami-1"]);
        let claim = claim(&p, &c, "ami-1");
        let tainted = pool(
            vec![taint("a"), taint("b")],
            vec![requirement("team", &["red"])],
        );
        assert_eq!(
            reason(drift(&claim, None, Some(&tainted), Some(&c))),
            Some(NODEPOOL_DRIFT)
        );
        let mut changed_class = c.clone();
        changed_class.spec.user_data = Some("echo hi".into());
        assert_eq!(
            reason(drift(&claim, None, Some(&p), Some(&changed_class))),
            Some(NODECLASS_DRIFT)
        );
        let widened = pool(
            vec![taint("a")],
            vec![requirement("team", &["red", "blue"])],
        );
        assert_eq!(nodepool_hash(&widened), nodepool_hash(&p));
        // Taint order and timeAdded do not matter.
        let mut reordered = pool(vec![taint("b"), taint("a")], vec![]);
        reordered.spec.template.spec.taints[0].time_added = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
        );
        assert_eq!(nodepool_hash(&reordered), nodepool_hash(&tainted));
    }

    #[test]
    fn claims_without_hashes_never_spec_drift() {
        let p = pool(vec![], vec![]);
        let c = class(&["ami-1"]);
        let mut claim = claim(&p, &c, "ami-1");
        claim.metadata.annotations = None;
        let tainted = pool(vec![taint("b")], vec![]);
        assert_eq!(drift(&claim, None, Some(&tainted), Some(&c)), None);
    }

    #[test]
    fn labels_that_fail_a_requirement_are_requirements_drift() {
        let p = pool(vec![], vec![requirement("team", &["red"])]);
        let c = class(&["ami-1"]);
        let claim = claim(&p, &c, "ami-1");
        let blue = pool(vec![], vec![requirement("team", &["blue"])]);
        let n = node(&[("team", "red")]);
        assert_eq!(
            reason(drift(&claim, Some(&n), Some(&blue), Some(&c))),
            Some(REQUIREMENTS_DRIFT)
        );
        // Without a Node, the claim's own labels count: it has no team label.
        assert_eq!(
            reason(drift(&claim, None, Some(&p), Some(&c))),
            Some(REQUIREMENTS_DRIFT)
        );
        // Instance facts the labels lack are unknown; present ones are judged.
        let by_family = pool(
            vec![],
            vec![requirement(keys::INSTANCE_FAMILY_LABEL, &["c5"])],
        );
        assert_eq!(drift(&claim, Some(&n), Some(&by_family), Some(&c)), None);
        let by_type = pool(
            vec![],
            vec![requirement(keys::INSTANCE_TYPE_LABEL, &["c5.large"])],
        );
        assert_eq!(
            reason(drift(&claim, None, Some(&by_type), Some(&c))),
            Some(REQUIREMENTS_DRIFT),
            "the claim's launched type is m5.large"
        );
        // minValues is ignored.
        let mut min = requirement("team", &["red"]);
        min.min_values = Some(3);
        let with_min = pool(vec![], vec![min]);
        assert_eq!(drift(&claim, Some(&n), Some(&with_min), Some(&c)), None);
    }

    #[test]
    fn a_reverted_drift_turns_the_condition_false() {
        let p = pool(vec![], vec![]);
        let c = class(&["ami-1"]);
        let mut claim = claim(&p, &c, "ami-1");
        let t0 = Timestamp::now();
        let drifted =
            drifted_conditions(&claim, Some((AMI_DRIFT, "x".into())), t0).unwrap_or_default();
        let condition = drifted.iter().find(|c| c.type_ == conditions::DRIFTED);
        assert_eq!(
            condition.map(|c| (c.status.as_str(), c.reason.as_str())),
            Some(("True", AMI_DRIFT))
        );
        if let Some(status) = claim.status.as_mut() {
            status.conditions = drifted;
        }
        // The same drift again writes nothing.
        assert_eq!(
            drifted_conditions(&claim, Some((AMI_DRIFT, "x".into())), t0),
            None
        );
        let cleared = drifted_conditions(&claim, None, t0).unwrap_or_default();
        let condition = cleared.iter().find(|c| c.type_ == conditions::DRIFTED);
        assert_eq!(
            condition.map(|c| (c.status.as_str(), c.reason.as_str())),
            Some(("False", NOT_DRIFTED))
        );
    }

    #[test]
    fn hashes_are_stable_across_processes() {
        // Pinned: a change here drifts every node of every cluster on upgrade.
        let p = pool(vec![taint("a")], vec![]);
        // FNV-1a 64 of {"annotations":{},"expireAfter":null,"labels":{},
        // "nodeClassRef":"default","startupTaints":[],
        // "taints":[{"effect":"NoSchedule","key":"a","value":""}]}
        assert_eq!(nodepool_hash(&p), "5a6bc826f5fc1451");
        let c = class(&[]);
        assert_eq!(template_hashes(&p, &c).1, nodeclass_hash(&c));
    }

    fn arb_taints() -> impl Strategy<Value = Vec<Taint>> {
        prop::collection::vec("[a-c]{1,2}", 0..4)
            .prop_map(|names| names.iter().map(|k| taint(k)).collect())
    }

    proptest! {
        #[test]
        fn unchanged_inputs_never_drift(
            taints in arb_taints(),
            teams in prop::collection::vec("[a-z]{1,4}", 1..4),
            pick in 0usize..4,
            amis in prop::collection::vec("ami-[0-9a-f]{4}", 1..4),
            image_pick in 0usize..4,
        ) {
            let team_refs: Vec<&str> = teams.iter().map(String::as_str).collect();
            let p = pool(taints, vec![requirement("team", &team_refs)]);
            let ami_refs: Vec<&str> = amis.iter().map(String::as_str).collect();
            let c = class(&ami_refs);
            let claim = claim(&p, &c, &amis[image_pick % amis.len()]);
            let n = node(&[("team", teams[pick % teams.len()].as_str())]);
            prop_assert_eq!(drift(&claim, Some(&n), Some(&p), Some(&c)), None);
        }

        #[test]
        fn reverting_a_template_change_clears_the_drift(
            before in arb_taints(),
            after in arb_taints(),
        ) {
            let p = pool(before.clone(), vec![]);
            let c = class(&["ami-1"]);
            let mut claim = claim(&p, &c, "ami-1");
            let changed = pool(after.clone(), vec![]);
            let same_set = {
                let mut a: Vec<&str> = before.iter().map(|t| t.key.as_str()).collect();
                let mut b: Vec<&str> = after.iter().map(|t| t.key.as_str()).collect();
                a.sort();
                a.dedup();
                b.sort();
                b.dedup();
                a == b
            };
            let verdict = drift(&claim, None, Some(&changed), Some(&c));
            prop_assert_eq!(verdict.is_none(), same_set);
            let now = Timestamp::now();
            if let Some(conditions) = drifted_conditions(&claim, verdict, now) {
                if let Some(status) = claim.status.as_mut() {
                    status.conditions = conditions;
                }
            }
            let reverted = drifted_conditions(&claim, drift(&claim, None, Some(&p), Some(&c)), now);
            let drifted_now = reverted
                .as_deref()
                .or(claim.status.as_ref().map(|s| &s.conditions[..]))
                .and_then(|cs| cs.iter().find(|c| c.type_ == conditions::DRIFTED))
                .is_some_and(|c| c.status == "True");
            prop_assert!(!drifted_now);
        }
    }
}
