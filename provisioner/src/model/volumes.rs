//! Where a pod's volumes let it run: the node affinity of the
//! PersistentVolume each of its claims is bound to, or, for a claim that
//! waits for its first consumer, its StorageClass's allowed topologies.
//! Pure: the problem builder asks it for each pending pod with claims.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{
    NodeSelectorRequirement, NodeSelectorTerm, PersistentVolume, PersistentVolumeClaim,
};
use k8s_openapi::api::storage::v1::StorageClass;
use spotwright_api::keys::ZONE_LABEL;
use spotwright_solver::model::{NodeSelectorTerms, Requirement};

use super::facts::node_requirement;

/// The zone label the EBS CSI driver writes into the node affinity of the
/// volumes it provisions; its values are zone names, so a launch asks for
/// `topology.kubernetes.io/zone` instead (the driver labels the node itself).
pub const EBS_CSI_ZONE_LABEL: &str = "topology.ebs.csi.aws.com/zone";

const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";

/// The volume objects of the cluster, indexed.
#[derive(Default)]
pub struct VolumeTopology<'a> {
    claims: HashMap<(&'a str, &'a str), &'a PersistentVolumeClaim>,
    volumes: HashMap<&'a str, &'a PersistentVolume>,
    classes: HashMap<&'a str, &'a StorageClass>,
    default_class: Option<&'a StorageClass>,
}

impl<'a> VolumeTopology<'a> {
    pub fn new(
        claims: &[&'a PersistentVolumeClaim],
        volumes: &[&'a PersistentVolume],
        classes: &[&'a StorageClass],
    ) -> Self {
        let name = |m: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            m.name.as_deref().unwrap_or_default()
        };
        VolumeTopology {
            claims: claims
                .iter()
                .map(|c| {
                    let namespace = c.metadata.namespace.as_deref().unwrap_or_default();
                    ((namespace, name(&c.metadata)), *c)
                })
                .collect(),
            volumes: volumes.iter().map(|v| (name(&v.metadata), *v)).collect(),
            classes: classes.iter().map(|c| (name(&c.metadata), *c)).collect(),
            default_class: classes.iter().copied().find(|c| {
                c.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                    .is_some_and(|v| v == "true")
            }),
        }
    }

    /// The node-selector terms every claim of a pod in `namespace` adds
    /// (ANDed across claims), or why the pod cannot be placed yet.
    pub fn terms(&self, namespace: &str, claims: &[String]) -> Result<NodeSelectorTerms, String> {
        let mut all: NodeSelectorTerms = Vec::new();
        for claim_name in claims {
            let terms = self.claim_terms(namespace, claim_name)?;
            all = and_terms(&all, &terms);
        }
        Ok(all)
    }

    fn claim_terms(&self, namespace: &str, name: &str) -> Result<NodeSelectorTerms, String> {
        let claim = self
            .claims
            .get(&(namespace, name))
            .ok_or_else(|| format!("PersistentVolumeClaim {namespace}/{name} not found"))?;
        let spec = claim.spec.as_ref();
        let bound_to = spec
            .and_then(|s| s.volume_name.as_deref())
            .filter(|v| !v.is_empty());
        if let Some(volume) = bound_to {
            return self.volume_terms(volume, name);
        }
        let class = match spec.and_then(|s| s.storage_class_name.as_deref()) {
            Some(class) => self.classes.get(class).copied(),
            None => self.default_class,
        };
        let Some(class) = class else {
            return Err(format!(
                "PersistentVolumeClaim {namespace}/{name} is unbound and has no StorageClass"
            ));
        };
        if class.volume_binding_mode.as_deref() != Some("WaitForFirstConsumer") {
            return Err(format!(
                "PersistentVolumeClaim {namespace}/{name} is unbound and binds immediately: the scheduler waits for it"
            ));
        }
        class_terms(class)
    }

    /// The required node affinity of PersistentVolume `volume` (none: anywhere).
    fn volume_terms(&self, volume: &str, claim: &str) -> Result<NodeSelectorTerms, String> {
        let found = self
            .volumes
            .get(volume)
            .ok_or_else(|| format!("PersistentVolume {volume} of claim {claim} not found"))?;
        let required = found
            .spec
            .as_ref()
            .and_then(|s| s.node_affinity.as_ref())
            .and_then(|a| a.required.as_ref());
        match required {
            Some(selector) => convert(&selector.node_selector_terms)
                .map_err(|e| format!("PersistentVolume {volume}: {e}")),
            None => Ok(Vec::new()),
        }
    }
}

/// A StorageClass's `allowedTopologies` as terms (none: anywhere).
fn class_terms(class: &StorageClass) -> Result<NodeSelectorTerms, String> {
    let terms: Vec<NodeSelectorTerm> = class
        .allowed_topologies
        .iter()
        .flatten()
        .map(|t| NodeSelectorTerm {
            match_expressions: Some(
                t.match_label_expressions
                    .iter()
                    .flatten()
                    .map(|e| NodeSelectorRequirement {
                        key: e.key.clone(),
                        operator: "In".to_owned(),
                        values: Some(e.values.clone()),
                    })
                    .collect(),
            ),
            match_fields: None,
        })
        .collect();
    convert(&terms).map_err(|e| format!("StorageClass {:?}: {e}", class.metadata.name))
}

/// Kubernetes terms as the solver's, the EBS CSI zone key read as the zone.
fn convert(terms: &[NodeSelectorTerm]) -> Result<NodeSelectorTerms, String> {
    terms
        .iter()
        .map(|term| {
            term.match_expressions
                .iter()
                .flatten()
                .map(|r| {
                    node_requirement(r).map(|mut r| {
                        if r.key == EBS_CSI_ZONE_LABEL {
                            r.key = ZONE_LABEL.to_owned();
                        }
                        r
                    })
                })
                .collect::<Result<Vec<Requirement>, _>>()
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// `a AND b` for OR'd terms: every pair joined (an empty side adds nothing).
pub fn and_terms(a: &NodeSelectorTerms, b: &NodeSelectorTerms) -> NodeSelectorTerms {
    if a.is_empty() {
        return b.clone();
    }
    if b.is_empty() {
        return a.clone();
    }
    a.iter()
        .flat_map(|x| {
            b.iter()
                .map(move |y| x.iter().chain(y).cloned().collect::<Vec<Requirement>>())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use spotwright_solver::model::Operator;

    fn object<K: serde::de::DeserializeOwned>(value: serde_json::Value) -> K {
        serde_json::from_value(value).expect("a valid object")
    }

    fn zone(zones: &[&str]) -> Requirement {
        Requirement {
            key: ZONE_LABEL.to_owned(),
            operator: Operator::In,
            values: zones.iter().map(|z| (*z).to_owned()).collect(),
            min_values: None,
        }
    }

    struct Cluster {
        claims: Vec<PersistentVolumeClaim>,
        volumes: Vec<PersistentVolume>,
        classes: Vec<StorageClass>,
    }

    impl Cluster {
        fn terms(&self, claims: &[&str]) -> Result<NodeSelectorTerms, String> {
            let claims_ref: Vec<&PersistentVolumeClaim> = self.claims.iter().collect();
            let volumes: Vec<&PersistentVolume> = self.volumes.iter().collect();
            let classes: Vec<&StorageClass> = self.classes.iter().collect();
            let topology = VolumeTopology::new(&claims_ref, &volumes, &classes);
            let names: Vec<String> = claims.iter().map(|c| (*c).to_owned()).collect();
            topology.terms("ns", &names)
        }
    }

    fn cluster() -> Cluster {
        Cluster {
            claims: vec![
                object(json!({"metadata": {"name": "bound", "namespace": "ns"},
                    "spec": {"volumeName": "pv-b"}})),
                object(json!({"metadata": {"name": "ebs", "namespace": "ns"},
                    "spec": {"volumeName": "pv-ebs"}})),
                object(json!({"metadata": {"name": "waiting", "namespace": "ns"},
                    "spec": {"storageClassName": "gp3"}})),
                object(json!({"metadata": {"name": "immediate", "namespace": "ns"},
                    "spec": {"storageClassName": "now"}})),
                object(json!({"metadata": {"name": "defaulted", "namespace": "ns"}, "spec": {}})),
            ],
            volumes: vec![
                object(
                    json!({"metadata": {"name": "pv-b"}, "spec": {"nodeAffinity": {"required": {
                    "nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1b"]}]}]}}}}),
                ),
                object(
                    json!({"metadata": {"name": "pv-ebs"}, "spec": {"nodeAffinity": {"required": {
                    "nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "topology.ebs.csi.aws.com/zone", "operator": "In", "values": ["us-east-1c"]}]}]}}}}),
                ),
            ],
            classes: vec![
                object(json!({"metadata": {"name": "gp3",
                        "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                    "provisioner": "ebs.csi.aws.com", "volumeBindingMode": "WaitForFirstConsumer",
                    "allowedTopologies": [{"matchLabelExpressions": [
                        {"key": "topology.kubernetes.io/zone", "values": ["us-east-1a", "us-east-1b"]}]}]})),
                object(json!({"metadata": {"name": "now"}, "provisioner": "x",
                    "volumeBindingMode": "Immediate"})),
            ],
        }
    }

    #[test]
    fn a_bound_claim_holds_the_pod_to_its_volume_s_zone() {
        assert_eq!(
            cluster().terms(&["bound"]),
            Ok(vec![vec![zone(&["us-east-1b"])]])
        );
        assert_eq!(
            cluster().terms(&["ebs"]),
            Ok(vec![vec![zone(&["us-east-1c"])]]),
            "the EBS CSI zone key is read as the zone"
        );
    }

    #[test]
    fn a_claim_waiting_for_its_consumer_follows_its_class_s_topologies() {
        let want = Ok(vec![vec![zone(&["us-east-1a", "us-east-1b"])]]);
        assert_eq!(cluster().terms(&["waiting"]), want);
        assert_eq!(cluster().terms(&["defaulted"]), want, "the default class");
        assert_eq!(
            cluster().terms(&["waiting", "bound"]),
            Ok(vec![vec![
                zone(&["us-east-1a", "us-east-1b"]),
                zone(&["us-east-1b"])
            ]]),
            "claims AND together"
        );
    }

    #[test]
    fn a_missing_or_immediately_binding_claim_is_a_reason_not_a_guess() {
        let missing = cluster().terms(&["nope"]).unwrap_err();
        assert!(missing.contains("ns/nope not found"), "{missing}");
        let immediate = cluster().terms(&["immediate"]).unwrap_err();
        assert!(immediate.contains("binds immediately"), "{immediate}");
        let mut no_default = cluster();
        no_default
            .classes
            .retain(|c| c.metadata.name.as_deref() == Some("now"));
        let unbound = no_default.terms(&["defaulted"]).unwrap_err();
        assert!(unbound.contains("no StorageClass"), "{unbound}");
    }

    #[test]
    fn terms_and_as_a_cross_product() {
        let a = vec![vec![zone(&["a"])], vec![zone(&["b"])]];
        let b = vec![vec![zone(&["c"])]];
        assert_eq!(
            and_terms(&a, &b),
            vec![
                vec![zone(&["a"]), zone(&["c"])],
                vec![zone(&["b"]), zone(&["c"])]
            ]
        );
        assert_eq!(and_terms(&Vec::new(), &b), b);
        assert_eq!(and_terms(&a, &Vec::new()), a);
    }
}
