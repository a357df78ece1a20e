//! Drift: a NodeClaim whose node no longer matches what its NodePool and
//! NodeClass would launch today gets the `Drifted` condition, status
//! `True`, with one of these reasons (checked in this order):
//!
//! - `AMIDrift`: the claim's `status.imageID` is not among the NodeClass's
//!   resolved AMIs (`status.amis`, re-resolved from SSM every minute by
//!   [`crate::nodeclass`]; for `eks@latest` from the API server's version,
//!   so a control-plane upgrade drifts every node). Only judged when the
//!   class has resolved AMIs: a failed resolution drifts nothing.
//! - `NodeClassDrift` / `NodePoolDrift`: the hash recorded on the claim when
//!   it was made ([`keys::NODECLASS_HASH_ANNOTATION`],
//!   [`keys::NODEPOOL_HASH_ANNOTATION`]) differs from the hash of the
//!   NodeClass's spec / the NodePool's template now. Requirements are not
//!   part of the NodePool hash. Claims without the annotation (made before
//!   hashes existed) never spec-drift.
//! - `RequirementsDrift`: the Node's labels (the labels the claim gives its
//!   Node, while there is none) fail one of the NodePool's requirements.
//!   `minValues` is ignored. A well-known instance key
//!   (type, zone, capacity type, family, ...) the labels lack is unknown, not
//!   a failure.
//!
//! A drift that reverts sets the condition to `False` (reason
//! `NotDrifted`), keeping when it changed; a claim that never drifted gets
//! no `Drifted` condition at all. Only `True` means drifted (the extender
//! and disruption read it so).
//!
//! [`drift`] decides; [`run`] lists the objects every `interval` and writes
//! the conditions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use prometheus::IntGaugeVec;
use tokio::sync::Notify;

use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::events::{EventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{json, Value};
use spotwright_api::keys;
use spotwright_api::{conditions, NodeClaim, NodeClass, NodePool};

use super::registration::{
    find_condition, node_labels, provider_id, record, reporter, set_condition, ConditionUpdate,
    FIELD_MANAGER,
};
use crate::hashing::hash_json;
use crate::launch::request::{meets, INSTANCE_TYPE_KEYS};
use crate::provisioning::claim::nodepool_of;

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

/// How the drift controller behaves.
#[derive(Clone, Debug)]
pub struct DriftSettings {
    /// How often every claim is judged. With the NodeClass refresh of a
    /// minute, a new AMI shows as drift within about 1.5 minutes.
    pub interval: Duration,
    /// Only NodeClaims matching this label selector are judged (all when
    /// `None`), like [`super::registration::RegistrationSettings`].
    pub claim_selector: Option<String>,
    /// Judges at once when notified (a NodeClass's AMIs changed).
    pub wake: Option<Arc<Notify>>,
    /// Set to the drifted claims by reason after each round.
    pub drifted: Option<IntGaugeVec>,
}

impl Default for DriftSettings {
    fn default() -> Self {
        DriftSettings {
            interval: Duration::from_secs(30),
            claim_selector: None,
            wake: None,
            drifted: None,
        }
    }
}

/// A taint as hashed: without `timeAdded`, which the API server may set.
fn taint_value(taint: &Taint) -> Value {
    json!({"key": taint.key, "value": taint.value.clone().unwrap_or_default(), "effect": taint.effect})
}

/// Taints as a set: their order in the YAML does not matter.
fn taint_set(taints: &[Taint]) -> Value {
    let mut values: Vec<Value> = taints.iter().map(taint_value).collect();
    values.sort_by_key(|v| v.to_string());
    values.dedup();
    Value::Array(values)
}

/// Hash of the NodePool's `spec.template` without its requirements: labels,
/// annotations, taints, startup taints, NodeClass reference, `expireAfter`.
pub fn nodepool_hash(pool: &NodePool) -> String {
    let template = &pool.spec.template;
    hash_json(&json!({
        "labels": template.metadata.labels,
        "annotations": template.metadata.annotations,
        "taints": taint_set(&template.spec.taints),
        "startupTaints": taint_set(&template.spec.startup_taints),
        "nodeClassRef": template.spec.node_class_ref.name,
        "expireAfter": template.spec.expire_after,
    }))
}

/// Hash of the NodeClass's `spec`.
pub fn nodeclass_hash(class: &NodeClass) -> String {
    hash_json(&serde_json::to_value(&class.spec).unwrap_or(Value::Null))
}

/// The NodePool and NodeClass hashes a claim records when it is made.
pub fn template_hashes(pool: &NodePool, class: &NodeClass) -> (String, String) {
    (nodepool_hash(pool), nodeclass_hash(class))
}

/// Records [`template_hashes`] on a new claim as its hash annotations.
pub fn annotate_hashes(claim: &mut NodeClaim, pool: &NodePool, class: &NodeClass) {
    let (pool_hash, class_hash) = template_hashes(pool, class);
    let annotations = claim.annotations_mut();
    annotations.insert(keys::NODEPOOL_HASH_ANNOTATION.to_owned(), pool_hash);
    annotations.insert(keys::NODECLASS_HASH_ANNOTATION.to_owned(), class_hash);
}

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
        let mut judged = crate::facts::requirement(requirement);
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
    let mut conditions = claim
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    set_condition(&mut conditions, update, claim.meta().generation, now).then_some(conditions)
}

/// Judges every claim every `settings.interval`, until the process ends.
pub async fn run(client: Client, settings: DriftSettings) {
    let recorder = Recorder::new(client.clone(), reporter());
    loop {
        match judge_all(&client, &settings, &recorder).await {
            Ok(changed) if changed > 0 => {
                tracing::debug!(changed, "drift conditions written")
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "drift not judged this round"),
        }
        match &settings.wake {
            Some(wake) => {
                tokio::select! {
                    _ = tokio::time::sleep(settings.interval) => {}
                    _ = wake.notified() => {}
                }
            }
            None => tokio::time::sleep(settings.interval).await,
        }
    }
}

/// One round: lists claims, Nodes, NodePools and NodeClasses, and writes
/// every `Drifted` condition that changed. Returns how many were written.
pub async fn judge_all(
    client: &Client,
    settings: &DriftSettings,
    recorder: &Recorder,
) -> Result<usize, kube::Error> {
    let claim_params = match &settings.claim_selector {
        Some(selector) => ListParams::default().labels(selector),
        None => ListParams::default(),
    };
    let claims = Api::<NodeClaim>::all(client.clone())
        .list(&claim_params)
        .await?;
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    let pools = Api::<NodePool>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    let classes = Api::<NodeClass>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    let by_provider: HashMap<&str, &Node> = nodes
        .items
        .iter()
        .filter_map(|n| Some((n.spec.as_ref()?.provider_id.as_deref()?, n)))
        .collect();
    let by_name: HashMap<String, &Node> = nodes.items.iter().map(|n| (n.name_any(), n)).collect();
    let pools: HashMap<String, &NodePool> = pools.items.iter().map(|p| (p.name_any(), p)).collect();
    let classes: HashMap<String, &NodeClass> =
        classes.items.iter().map(|c| (c.name_any(), c)).collect();
    let mut written = 0;
    let mut drifted: BTreeMap<&'static str, i64> = [
        AMI_DRIFT,
        NODEPOOL_DRIFT,
        NODECLASS_DRIFT,
        REQUIREMENTS_DRIFT,
    ]
    .into_iter()
    .map(|r| (r, 0))
    .collect();
    for claim in claims
        .items
        .iter()
        .filter(|c| c.meta().deletion_timestamp.is_none())
    {
        let node = provider_id(claim)
            .and_then(|p| by_provider.get(p).copied())
            .or_else(|| {
                let name = claim.status.as_ref()?.node_name.as_deref()?;
                by_name.get(name).copied()
            });
        let pool = pools.get(&nodepool_of(claim)).copied();
        let class = classes.get(&claim.spec.node_class_ref.name).copied();
        let verdict = drift(claim, node, pool, class);
        if let Some(count) = verdict.as_ref().and_then(|(r, _)| drifted.get_mut(r)) {
            *count += 1;
        }
        let was = find_condition(claim, conditions::DRIFTED)
            .filter(|c| c.status == "True")
            .map(|c| c.reason.clone());
        let Some(conditions) = drifted_conditions(claim, verdict.clone(), Timestamp::now()) else {
            continue;
        };
        match write_conditions(client, claim, &conditions).await {
            Ok(()) => written += 1,
            Err(err) => {
                // A conflict or a deleted claim: judged again next round.
                tracing::debug!(claim = %claim.name_any(), error = %err, "drift condition not written");
                continue;
            }
        }
        match verdict {
            Some((reason, message)) if was.as_deref() != Some(reason) => {
                tracing::info!(claim = %claim.name_any(), reason, "{message}");
                record(
                    recorder,
                    &claim.object_ref(&()),
                    EventType::Normal,
                    reason,
                    "Drift",
                    message,
                )
                .await;
            }
            None if was.is_some() => {
                tracing::info!(claim = %claim.name_any(), "drift reverted");
            }
            _ => {}
        }
    }
    if let Some(gauge) = &settings.drifted {
        for (reason, count) in drifted {
            gauge.with_label_values(&[reason]).set(count);
        }
    }
    Ok(written)
}

/// Server-side applies the claim's conditions as the provisioner, with the
/// resourceVersion they were computed from. `nodeName` is applied too when
/// set: the provisioner's field manager owns it (registration), and an
/// apply that left it out would remove it.
async fn write_conditions(
    client: &Client,
    claim: &NodeClaim,
    conditions: &[Condition],
) -> Result<(), kube::Error> {
    let name = claim.name_any();
    let mut status = json!({ "conditions": conditions });
    if let (Some(node_name), Some(object)) = (
        claim.status.as_ref().and_then(|s| s.node_name.as_ref()),
        status.as_object_mut(),
    ) {
        object.insert("nodeName".to_owned(), json!(node_name));
    }
    let patch = json!({
        "apiVersion": "spotwright.io/v1alpha1",
        "kind": "NodeClaim",
        "metadata": {"name": name, "resourceVersion": claim.resource_version()},
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Api::<NodeClaim>::all(client.clone())
        .patch_status(&name, &params, &Patch::Apply(&patch))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
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
