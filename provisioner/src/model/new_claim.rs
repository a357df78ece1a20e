//! A solver's new node as the NodeClaim created before any EC2 call: the
//! claim is the crash-safety anchor (its UID is the CreateFleet client
//! token), so a restarted provisioner finds and finishes every launch.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use spotwright_api::keys;
use spotwright_api::reservation::{self, Reservation};
use spotwright_api::v1alpha1::{
    NodeClaimSpec, NodeClassReference, NodeSelectorRequirementWithMinValues, RequirementOperator,
};
use spotwright_api::{NodeClaim, NodeClass, NodePool};
use spotwright_solver::model::{Operator, Requirement, Resources};
use spotwright_solver::NewNode;

use super::claim::TERMINATION_FINALIZER;
use super::hashing::annotate_hashes;

pub fn api_requirement(r: &Requirement) -> NodeSelectorRequirementWithMinValues {
    NodeSelectorRequirementWithMinValues {
        key: r.key.clone(),
        operator: match r.operator {
            Operator::In => RequirementOperator::In,
            Operator::NotIn => RequirementOperator::NotIn,
            Operator::Exists => RequirementOperator::Exists,
            Operator::DoesNotExist => RequirementOperator::DoesNotExist,
            Operator::Gt => RequirementOperator::Gt,
            Operator::Lt => RequirementOperator::Lt,
            Operator::Gte => RequirementOperator::Gte,
            Operator::Lte => RequirementOperator::Lte,
        },
        values: r.values.clone(),
        min_values: r.min_values.and_then(|v| i32::try_from(v).ok()),
    }
}

/// `<nodepool>-<5 lowercase letters or digits>`, like a ReplicaSet's pods.
pub fn claim_name(nodepool: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    let mut bits = hasher.finish();
    let suffix: String = (0..5)
        .map(|_| {
            let c = ALPHABET[(bits % ALPHABET.len() as u64) as usize] as char;
            bits /= ALPHABET.len() as u64;
            c
        })
        .collect();
    // Names are DNS labels: leave room for the suffix.
    let prefix: String = nodepool.chars().take(57).collect();
    format!("{prefix}-{suffix}")
}

/// The claim records the hashes of `pool`'s template and `class`'s spec
/// (drift detection compares them later).
pub fn new_claim(name: &str, pool: &NodePool, class: &NodeClass, node: &NewNode) -> NodeClaim {
    let template = &pool.spec.template;
    let mut labels = template.metadata.labels.clone();
    labels.insert(keys::NODEPOOL_LABEL.to_owned(), node.nodepool.clone());
    let mut resources = BTreeMap::new();
    resources.insert(
        "cpu".to_owned(),
        Quantity(format!("{}m", node.requests.cpu_millis)),
    );
    resources.insert(
        "memory".to_owned(),
        Quantity(format!("{}Ki", node.requests.memory_bytes.div_ceil(1024))),
    );
    resources.insert("pods".to_owned(), Quantity(node.requests.pods.to_string()));
    let mut claim = NodeClaim::new(
        name,
        NodeClaimSpec {
            node_class_ref: NodeClassReference {
                name: template.spec.node_class_ref.name.clone(),
            },
            requirements: node.requirements.iter().map(api_requirement).collect(),
            taints: template.spec.taints.clone(),
            startup_taints: template.spec.startup_taints.clone(),
            resources,
            expire_after: template.spec.expire_after.clone(),
            termination_grace_period: template.spec.termination_grace_period.clone(),
        },
    );
    let mut annotations = template.metadata.annotations.clone();
    if let Some(relaxed) = min_values_relaxed(node) {
        annotations.insert(keys::MIN_VALUES_RELAXED_ANNOTATION.to_owned(), relaxed);
    }
    claim.metadata = ObjectMeta {
        name: Some(name.to_owned()),
        labels: Some(labels),
        annotations: (!annotations.is_empty()).then_some(annotations),
        finalizers: Some(vec![TERMINATION_FINALIZER.to_owned()]),
        owner_references: owned_by(pool).map(|owner| vec![owner]),
        ..ObjectMeta::default()
    };
    annotate_hashes(&mut claim, pool, class);
    claim
}

/// One pod a claim is launched for, as its reservation records it.
pub struct ReservedPod<'a> {
    pub uid: &'a str,
    pub requests: &'a Resources,
    /// Its controller's UID: the replicas of one controller may take each
    /// other's room.
    pub controller: Option<&'a str>,
}

/// Records on `claim` the room it holds for the pods it is launched for:
/// `pods` gives each of `node.pods` (`None` for a pod without a UID, which
/// is left out). Nothing when no pod is left.
pub fn reserve_for_pods<'a>(
    claim: &mut NodeClaim,
    node: &NewNode,
    pods: impl Fn(&str) -> Option<ReservedPod<'a>>,
) {
    let mut reservation = Reservation::default();
    for ReservedPod {
        uid,
        requests,
        controller,
    } in node.pods.iter().filter_map(|key| pods(key))
    {
        reservation.add(uid, requests.cpu_millis, requests.memory_bytes, controller);
    }
    if !reservation.pods.is_empty() {
        claim
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(
                reservation::ANNOTATION.to_owned(),
                reservation.to_annotation(),
            );
    }
}

/// The claim's owner: its NodePool, so that nothing is orphaned when the
/// pool goes (the garbage collector deletes what the pool's own finalizer
/// did not already drain). Not `blockOwnerDeletion`: that would need
/// `update` on `nodepools/finalizers` where owner-reference enforcement is on.
fn owned_by(pool: &NodePool) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: NodePool::api_version(&()).into_owned(),
        kind: NodePool::kind(&()).into_owned(),
        name: pool.metadata.name.clone()?,
        uid: pool.metadata.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: None,
    })
}

/// `<key>=<kept>/<wanted>` for each `minValues` the node could not keep.
pub fn min_values_relaxed(node: &NewNode) -> Option<String> {
    let relaxed: Vec<String> = node
        .min_values_relaxed
        .iter()
        .map(|r| format!("{}={}/{}", r.key, r.kept, r.wanted))
        .collect();
    (!relaxed.is_empty()).then(|| relaxed.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use spotwright_solver::model::RelaxedMinValues;

    #[test]
    fn names_are_dns_labels_with_the_pool_prefix() {
        let a = claim_name("general");
        let b = claim_name("general");
        assert!(
            a.starts_with("general-") && a.len() == "general-".len() + 5,
            "{a}"
        );
        assert_ne!(a, b, "two claims of one pool get different names");
        let long = claim_name(&"x".repeat(80));
        assert!(long.len() <= 63);
    }

    #[test]
    fn requirements_round_trip_with_min_values() {
        let r = Requirement {
            key: keys::INSTANCE_TYPE_LABEL.into(),
            operator: Operator::In,
            values: vec!["m5.large".into(), "m6i.large".into()],
            min_values: Some(2),
        };
        let api = api_requirement(&r);
        assert_eq!(api.operator, RequirementOperator::In);
        assert_eq!(api.min_values, Some(2));
        assert_eq!(crate::model::facts::requirement(&api), r);
    }

    #[test]
    fn a_relaxed_launch_is_annotated_with_what_it_kept() {
        let pool: NodePool = serde_json::from_value(serde_json::json!({
            "apiVersion": "spotwright.io/v1alpha1", "kind": "NodePool",
            "metadata": {"name": "p"},
            "spec": {"template": {
                "metadata": {"annotations": {"team": "a"}},
                "spec": {"nodeClassRef": {"name": "c"}, "minValuesPolicy": "BestEffort"}}}
        }))
        .expect("a NodePool");
        let class = NodeClass::new("c", Default::default());
        let mut node = NewNode {
            nodepool: "p".into(),
            pods: vec!["ns/a".into()],
            requests: Default::default(),
            instance_types: vec!["m5.large".into(), "m6i.large".into()],
            zones: vec!["us-east-1a".into()],
            capacity_types: vec![],
            requirements: vec![],
            price: 0.1,
            min_values_relaxed: vec![],
        };
        let annotation = |claim: &NodeClaim| {
            claim
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(keys::MIN_VALUES_RELAXED_ANNOTATION).cloned())
        };
        assert_eq!(annotation(&new_claim("p-x", &pool, &class, &node)), None);
        node.min_values_relaxed = vec![RelaxedMinValues {
            key: keys::INSTANCE_TYPE_LABEL.into(),
            wanted: 5,
            kept: 2,
        }];
        let claim = new_claim("p-x", &pool, &class, &node);
        assert_eq!(
            annotation(&claim).as_deref(),
            Some("node.kubernetes.io/instance-type=2/5")
        );
        let annotations = claim.metadata.annotations.unwrap_or_default();
        assert_eq!(annotations["team"], "a", "the template's stay");
    }

    /// A new m5.large of pool `p` for `pods`.
    fn one_large_node(pods: &[&str]) -> NewNode {
        NewNode {
            nodepool: "p".into(),
            pods: pods.iter().map(|p| p.to_string()).collect(),
            requests: Default::default(),
            instance_types: vec!["m5.large".into()],
            zones: vec![],
            capacity_types: vec![],
            requirements: vec![],
            price: 0.1,
            min_values_relaxed: vec![],
        }
    }

    #[test]
    fn a_claim_reserves_what_its_pods_request_by_their_uids() {
        let node = one_large_node(&["ns/a", "ns/no-uid", "ns/b", "ns/gone"]);
        let requests = |cpu_millis, memory_bytes| Resources {
            cpu_millis,
            memory_bytes,
            pods: 1,
            ..Resources::default()
        };
        let (a, b) = (requests(500, 1 << 30), requests(250, 1 << 29));
        let pods = |key: &str| match key {
            "ns/a" => Some(ReservedPod {
                uid: "uid-a",
                requests: &a,
                controller: Some("rs-1"),
            }),
            "ns/b" => Some(ReservedPod {
                uid: "uid-b",
                requests: &b,
                controller: None,
            }),
            _ => None,
        };
        let mut claim = NodeClaim::new("p-x", Default::default());
        reserve_for_pods(&mut claim, &node, pods);
        let annotations = claim.metadata.annotations.unwrap_or_default();
        let written = Reservation::parse(&annotations[reservation::ANNOTATION]);
        assert_eq!(
            written,
            Ok(Reservation {
                cpu_millis: 750,
                memory_bytes: (1 << 30) + (1 << 29),
                pods: vec!["uid-a".into(), "uid-b".into()],
                groups: vec!["rs-1".into(), String::new()],
            })
        );
        let mut alone = NodeClaim::new("p-z", Default::default());
        reserve_for_pods(&mut alone, &one_large_node(&["ns/b"]), pods);
        let written = alone.metadata.annotations.unwrap_or_default();
        assert_eq!(
            Reservation::parse(&written[reservation::ANNOTATION]).map(|r| r.groups),
            Ok(vec![]),
            "no pod with a controller: no groups written"
        );

        let mut unknown = NodeClaim::new("p-y", Default::default());
        reserve_for_pods(&mut unknown, &node, |_| None);
        assert_eq!(unknown.metadata.annotations, None, "no pod, no reservation");
    }

    #[test]
    fn the_claim_is_owned_by_its_pool_and_keeps_its_grace_period() {
        let pool = |uid: Option<&str>| -> NodePool {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "spotwright.io/v1alpha1", "kind": "NodePool",
                "metadata": {"name": "p", "uid": uid},
                "spec": {"template": {"spec": {
                    "nodeClassRef": {"name": "c"}, "terminationGracePeriod": "90s"}}}
            }))
            .expect("a NodePool")
        };
        let class = NodeClass::new("c", Default::default());
        let node = one_large_node(&[]);
        let claim = new_claim("p-x", &pool(Some("u-1")), &class, &node);
        let owners = claim.metadata.owner_references.unwrap_or_default();
        assert_eq!(owners.len(), 1);
        assert_eq!(
            (
                owners[0].kind.as_str(),
                owners[0].name.as_str(),
                owners[0].uid.as_str()
            ),
            ("NodePool", "p", "u-1")
        );
        assert_eq!(owners[0].api_version, "spotwright.io/v1alpha1");
        assert_eq!(claim.spec.termination_grace_period.as_deref(), Some("90s"));
        let unsaved = new_claim("p-x", &pool(None), &class, &node);
        assert_eq!(unsaved.metadata.owner_references, None, "no uid, no owner");
    }
}
