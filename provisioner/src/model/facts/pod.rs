//! Pods: what they request and where they may go, in the solver's terms.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodAffinityTerm, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use spotwright_api::quantity;
use spotwright_solver::model::{
    LabelSelector, NodeSelectorTerms, PreferredTerm, Resources, SpreadConstraint, Toleration,
};

use super::selectors::{
    label_selector, preferred_node_affinity, required_node_affinity, tolerations,
};
use super::{FactsError, FieldError};

const HOSTNAME: &str = "kubernetes.io/hostname";
const ZONE: &str = "topology.kubernetes.io/zone";

/// Where a pod may go, as the solver reads it. The replicas of one
/// template share it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Placement {
    pub node_selector: BTreeMap<String, String>,
    pub required_affinity: NodeSelectorTerms,
    pub preferred_affinity: Vec<PreferredTerm>,
    pub tolerations: Vec<Toleration>,
    pub topology_spread: Vec<SpreadConstraint>,
    /// Required pod anti-affinity on `kubernetes.io/hostname` within the
    /// pod's namespace.
    pub hostname_anti_affinity: Vec<LabelSelector>,
    /// The same on `topology.kubernetes.io/zone`.
    pub zone_anti_affinity: Vec<LabelSelector>,
    /// Required pod affinity on `kubernetes.io/hostname` and on
    /// `topology.kubernetes.io/zone` within the pod's namespace.
    pub hostname_affinity: Vec<LabelSelector>,
    pub zone_affinity: Vec<LabelSelector>,
    /// Preferred pod anti-affinity on `kubernetes.io/hostname` within the
    /// pod's namespace (other preferred terms are left to the scheduler).
    pub preferred_hostname_anti_affinity: Vec<LabelSelector>,
    /// The PersistentVolumeClaims its volumes name, and its generic
    /// ephemeral volumes (whose claims are `<pod>-<volume>`).
    pub volume_claims: Vec<String>,
    pub ephemeral_volumes: Vec<String>,
    /// Required constraints the solver does not model, described: the node
    /// launched for the pod may not suit it, and the pod is told so.
    pub unmodelled: Vec<String>,
}

/// A field of a pod that could not be read, before it is pinned on the pod.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UnreadableField {
    pub field: &'static str,
    pub reason: String,
}

impl UnreadableField {
    fn new(field: &'static str, reason: impl std::fmt::Display) -> Self {
        UnreadableField {
            field,
            reason: reason.to_string(),
        }
    }

    /// The error naming `object` (`pod ns/name`).
    pub fn of(&self, object: &str) -> FactsError {
        FactsError::unreadable(object, self.field, &self.reason)
    }
}

/// What a pod needs on a node, or which field says it unreadably.
pub fn requests_of(spec: Option<&PodSpec>) -> Result<Resources, UnreadableField> {
    let spec = spec.ok_or_else(|| UnreadableField::new("spec", FieldError::Missing))?;
    pod_requests(spec).map_err(|e| UnreadableField::new("resources", e))
}

/// Where a pod may go: selectors, node affinity, tolerations, spread, and
/// pod (anti-)affinity on hostname and zone within the namespace (other
/// topology keys and namespaces are left to the scheduler, and named).
pub fn placement(spec: Option<&PodSpec>) -> Result<Placement, UnreadableField> {
    let spec = spec.ok_or_else(|| UnreadableField::new("spec", FieldError::Missing))?;
    let mut topology_spread = Vec::new();
    for c in spec.topology_spread_constraints.iter().flatten() {
        topology_spread.push(SpreadConstraint {
            topology_key: c.topology_key.clone(),
            max_skew: u32::try_from(c.max_skew.max(1)).unwrap_or(1),
            hard: c.when_unsatisfiable == "DoNotSchedule",
            selector: label_selector(c.label_selector.as_ref())
                .map_err(|e| UnreadableField::new("spec.topologySpreadConstraints", e))?,
        });
    }
    let affinity = spec.affinity.as_ref();
    let mut unmodelled = Vec::new();
    let anti = affinity
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let anti = PodTerms::sort(anti, "anti-affinity", &mut unmodelled)?;
    let attract = affinity
        .and_then(|a| a.pod_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let attract = PodTerms::sort(attract, "affinity", &mut unmodelled)?;
    let preferred_anti: Vec<PodAffinityTerm> = affinity
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .map(|w| w.pod_affinity_term.clone())
        .collect();
    // Preferences the solver does not model are the scheduler's to score:
    // nothing to report.
    let preferred_anti = PodTerms::sort(Some(&preferred_anti), "anti-affinity", &mut Vec::new())?;
    let volumes = spec.volumes.iter().flatten();
    let volume_claims = volumes
        .clone()
        .filter_map(|v| Some(v.persistent_volume_claim.as_ref()?.claim_name.clone()))
        .collect();
    let ephemeral_volumes = volumes
        .filter(|v| v.ephemeral.is_some())
        .map(|v| v.name.clone())
        .collect();
    Ok(Placement {
        node_selector: spec.node_selector.clone().unwrap_or_default(),
        required_affinity: required_node_affinity(spec.affinity.as_ref())
            .map_err(|e| UnreadableField::new("spec.affinity.nodeAffinity", e))?,
        preferred_affinity: preferred_node_affinity(spec.affinity.as_ref())
            .map_err(|e| UnreadableField::new("spec.affinity.nodeAffinity", e))?,
        tolerations: tolerations(spec.tolerations.as_ref())
            .map_err(|e| UnreadableField::new("spec.tolerations", e))?,
        topology_spread,
        hostname_anti_affinity: anti.hostname,
        zone_anti_affinity: anti.zone,
        hostname_affinity: attract.hostname,
        zone_affinity: attract.zone,
        preferred_hostname_anti_affinity: preferred_anti.hostname,
        volume_claims,
        ephemeral_volumes,
        unmodelled,
    })
}

/// Required pod (anti-)affinity terms by the topology the solver models:
/// hostname or zone, within the pod's namespace.
#[derive(Default)]
struct PodTerms {
    hostname: Vec<LabelSelector>,
    zone: Vec<LabelSelector>,
}

impl PodTerms {
    /// Sorts `terms`; the ones on other keys or across namespaces are
    /// described in `unmodelled`.
    fn sort(
        terms: Option<&Vec<PodAffinityTerm>>,
        kind: &str,
        unmodelled: &mut Vec<String>,
    ) -> Result<PodTerms, UnreadableField> {
        let mut sorted = PodTerms::default();
        for term in terms.into_iter().flatten() {
            let own_namespace = term.namespaces.as_ref().is_none_or(Vec::is_empty)
                && term.namespace_selector.is_none();
            let list = match term.topology_key.as_str() {
                HOSTNAME if own_namespace => &mut sorted.hostname,
                ZONE if own_namespace => &mut sorted.zone,
                key => {
                    let scope = if own_namespace {
                        ""
                    } else {
                        " across namespaces"
                    };
                    unmodelled.push(format!("required pod {kind} on {key}{scope}"));
                    continue;
                }
            };
            let field = if kind == "affinity" {
                "spec.affinity.podAffinity"
            } else {
                "spec.affinity.podAntiAffinity"
            };
            list.push(
                label_selector(term.label_selector.as_ref())
                    .map_err(|e| UnreadableField::new(field, e))?,
            );
        }
        Ok(sorted)
    }
}

/// What a pod needs on a node, the way the scheduler counts it: app
/// containers and restartable init containers (sidecars) run together;
/// each ordinary init container runs alone after the sidecars before it;
/// pod-level requests replace cpu and memory; pod overhead adds on top.
pub fn pod_requests(spec: &PodSpec) -> Result<Resources, FieldError> {
    let mut running: BTreeMap<String, i64> = BTreeMap::new();
    for c in &spec.containers {
        add(
            &mut running,
            c.resources.as_ref().and_then(|r| r.requests.as_ref()),
        )?;
    }
    let mut sidecars: BTreeMap<String, i64> = BTreeMap::new();
    let mut init_peak: BTreeMap<String, i64> = BTreeMap::new();
    for c in spec.init_containers.iter().flatten() {
        let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        if c.restart_policy.as_deref() == Some("Always") {
            add(&mut sidecars, requests)?;
            continue;
        }
        let mut alone = sidecars.clone();
        add(&mut alone, requests)?;
        for (name, value) in alone {
            let slot = init_peak.entry(name).or_default();
            *slot = (*slot).max(value);
        }
    }
    for (name, value) in sidecars {
        *running.entry(name).or_default() += value;
    }
    for (name, value) in init_peak {
        let slot = running.entry(name).or_default();
        *slot = (*slot).max(value);
    }
    if let Some(pod_level) = spec.resources.as_ref().and_then(|r| r.requests.as_ref()) {
        for name in ["cpu", "memory"] {
            if let Some(q) = pod_level.get(name) {
                running.insert(name.to_owned(), parse(name, q)?);
            }
        }
    }
    add(&mut running, spec.overhead.as_ref())?;
    let mut resources = Resources {
        pods: 1,
        ..Resources::default()
    };
    for (name, value) in running {
        let value = u64::try_from(value.max(0)).unwrap_or(0);
        match name.as_str() {
            "cpu" => resources.cpu_millis = value,
            "memory" => resources.memory_bytes = value,
            "ephemeral-storage" => resources.ephemeral_bytes = value,
            "pods" => {}
            _ if value > 0 => resources.extended.push((name, value)),
            _ => {}
        }
    }
    Ok(resources)
}

fn parse(name: &str, q: &Quantity) -> Result<i64, FieldError> {
    let result = if name == "cpu" {
        quantity::milli_value(&q.0)
    } else {
        quantity::value(&q.0)
    };
    result.map_err(|source| FieldError::Quantity {
        resource: name.to_owned(),
        source,
    })
}

fn add(
    into: &mut BTreeMap<String, i64>,
    list: Option<&BTreeMap<String, Quantity>>,
) -> Result<(), FieldError> {
    for (name, q) in list.into_iter().flatten() {
        let v = parse(name, q)?;
        let slot = into.entry(name.clone()).or_default();
        *slot = slot.saturating_add(v);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;
    use spotwright_solver::model::Operator;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn requests_count_sidecars_init_peaks_overhead_and_extended_resources() {
        let p = pod(
            json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {
                "containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "1Gi", "nvidia.com/gpu": "1"}}},
                    {"name": "b", "resources": {"requests": {"cpu": "250m", "ephemeral-storage": "2Gi"}}}],
                "initContainers": [
                    {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}},
                    {"name": "migrate", "resources": {"requests": {"cpu": "2", "memory": "512Mi"}}}],
                "overhead": {"cpu": "10m"}
            }}),
        );
        let r = pod_requests(p.spec.as_ref().unwrap()).unwrap();
        // init peak: side 100m + migrate 2000m = 2100m > running 850m; plus overhead.
        assert_eq!(r.cpu_millis, 2110);
        assert_eq!(r.memory_bytes, 1 << 30);
        assert_eq!(r.ephemeral_bytes, 2 << 30);
        assert_eq!(r.extended, vec![("nvidia.com/gpu".to_owned(), 1)]);
        assert_eq!(r.pods, 1);
    }

    #[test]
    fn preferred_node_affinity_is_read_with_its_weights() {
        let p = pod(
            json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {
            "containers": [{"name": "a"}],
            "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 20, "preference": {"matchExpressions": [
                    {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1b"]}]}},
                {"weight": 80, "preference": {"matchExpressions": [
                    {"key": "spotwright.io/instance-cpu", "operator": "Gt", "values": ["4"]}]}}
            ]}}}}),
        );
        let read = placement(p.spec.as_ref()).expect("readable");
        assert!(read.required_affinity.is_empty());
        let read: Vec<(i32, &str, Operator)> = read
            .preferred_affinity
            .iter()
            .map(|t| {
                (
                    t.weight,
                    t.requirements[0].key.as_str(),
                    t.requirements[0].operator,
                )
            })
            .collect();
        assert_eq!(
            read,
            vec![
                (20, "topology.kubernetes.io/zone", Operator::In),
                (80, "spotwright.io/instance-cpu", Operator::Gt)
            ]
        );
        let bad = pod(
            json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {
            "containers": [{"name": "a"}],
            "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 1, "preference": {"matchExpressions": [
                    {"key": "k", "operator": "Near", "values": ["x"]}]}}]}}}}),
        );
        let err = placement(bad.spec.as_ref()).expect_err("an unknown operator");
        assert_eq!(err.field, "spec.affinity.nodeAffinity");
    }

    #[test]
    fn a_bad_quantity_names_the_field_and_the_resource() {
        let p = pod(
            json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "lots"}}}]}}),
        );
        let err = requests_of(p.spec.as_ref()).unwrap_err();
        assert_eq!(err.field, "resources");
        let named = err.of("pod ns/p").to_string();
        assert!(
            named.contains("pod ns/p") && named.contains("cpu"),
            "{named}"
        );
        assert_eq!(requests_of(None).unwrap_err().field, "spec");
    }

    #[test]
    fn spread_and_hostname_and_zone_anti_affinity_are_read() {
        let p = pod(
            json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"}}, "spec": {
                "containers": [],
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "web"}}},
                    {"topologyKey": "topology.kubernetes.io/zone", "labelSelector": {"matchLabels": {"app": "web"}}},
                    {"topologyKey": "topology.kubernetes.io/zone", "namespaces": ["other"], "labelSelector": {"matchLabels": {"app": "db"}}},
                    {"topologyKey": "topology.k8s.aws/zone-id", "labelSelector": {"matchLabels": {"app": "web"}}}],
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 50, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "web"}}}},
                    {"weight": 50, "podAffinityTerm": {"topologyKey": "rack", "labelSelector": {"matchLabels": {"app": "web"}}}}]}}
            }}),
        );
        let placement = placement(p.spec.as_ref()).unwrap();
        assert_eq!(placement.topology_spread.len(), 1);
        assert!(placement.topology_spread[0].hard);
        assert_eq!(placement.hostname_anti_affinity.len(), 1);
        assert_eq!(placement.zone_anti_affinity.len(), 1);
        assert_eq!(placement.preferred_hostname_anti_affinity.len(), 1);
        assert_eq!(
            placement.unmodelled,
            [
                "required pod anti-affinity on topology.kubernetes.io/zone across namespaces",
                "required pod anti-affinity on topology.k8s.aws/zone-id"
            ]
        );
    }

    #[test]
    fn pod_affinity_is_read_and_the_rest_named_as_unmodelled() {
        let p = pod(
            json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {
                "containers": [],
                "affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"topologyKey": "topology.kubernetes.io/zone", "labelSelector": {"matchLabels": {"app": "db"}}},
                    {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "cache"}}},
                    {"topologyKey": "kubernetes.io/hostname", "namespaceSelector": {}, "labelSelector": {"matchLabels": {"app": "x"}}},
                    {"topologyKey": "rack", "labelSelector": {"matchLabels": {"app": "db"}}}]}},
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "d"}},
                    {"name": "cfg", "configMap": {"name": "c"}}]
            }}),
        );
        let placement = placement(p.spec.as_ref()).unwrap();
        assert_eq!(placement.zone_affinity.len(), 1);
        assert_eq!(placement.hostname_affinity.len(), 1);
        assert_eq!(
            placement.unmodelled,
            [
                "required pod affinity on kubernetes.io/hostname across namespaces",
                "required pod affinity on rack"
            ]
        );
        assert_eq!(placement.volume_claims, ["d"]);
        let plain =
            pod(json!({"metadata": {"name": "q", "namespace": "ns"}, "spec": {"containers": []}}));
        assert!(super::placement(plain.spec.as_ref())
            .unwrap()
            .unmodelled
            .is_empty());
    }
}
