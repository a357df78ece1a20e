//! Pods: what they request, where they may go, and whether Spotwright
//! should find them a node.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use spotwright_api::keys;
use spotwright_api::quantity;
use spotwright_solver::model::{PendingPod, PlacedPod, Resources, SpreadConstraint};

use super::selectors::{label_selector, labels, required_node_affinity, tolerations};
use super::{FactsError, FieldError};

const HOSTNAME: &str = "kubernetes.io/hostname";

/// `namespace/name`.
pub fn key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Unschedulable per the scheduler, not yet bound, not finished, and meant
/// for Spotwright: it names Spotwright's scheduler, or it lives in a
/// namespace that opted in (a pod the default scheduler could not place
/// there would fit on a node Spotwright launches only if the webhook
/// mutated it; such pods are Spotwright's too).
pub fn is_provisionable(pod: &Pod, scheduler_name: &str, opted_in: &BTreeSet<String>) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    if spec.node_name.is_some() || pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let unschedulable = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            })
        });
    if !unschedulable || is_daemon_or_mirror(pod) {
        return false;
    }
    let ours = spec.scheduler_name.as_deref() == Some(scheduler_name);
    ours || pod
        .metadata
        .namespace
        .as_ref()
        .is_some_and(|ns| opted_in.contains(ns))
}

/// DaemonSet pods and mirror pods: they come with the node, never ask for one.
pub fn is_daemon_or_mirror(pod: &Pod) -> bool {
    let mirror = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(keys::MIRROR_POD_ANNOTATION));
    let daemon = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "DaemonSet" && o.controller == Some(true));
    mirror || daemon
}

pub fn pending_pod(pod: &Pod) -> Result<PendingPod, FactsError> {
    let object = format!("pod {}", key(pod));
    let unreadable =
        |field: &str, reason: FieldError| FactsError::unreadable(&object, field, reason);
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| unreadable("spec", FieldError::Missing))?;
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut topology_spread = Vec::new();
    for c in spec.topology_spread_constraints.iter().flatten() {
        topology_spread.push(SpreadConstraint {
            topology_key: c.topology_key.clone(),
            max_skew: u32::try_from(c.max_skew.max(1)).unwrap_or(1),
            hard: c.when_unsatisfiable == "DoNotSchedule",
            selector: label_selector(c.label_selector.as_ref())
                .map_err(|e| unreadable("spec.topologySpreadConstraints", e))?,
        });
    }
    let mut hostname_anti_affinity = Vec::new();
    let anti = spec
        .affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    for term in anti.into_iter().flatten() {
        // Other topology keys and other namespaces are left to the scheduler.
        if term.topology_key == HOSTNAME && term.namespaces.as_ref().is_none_or(Vec::is_empty) {
            hostname_anti_affinity.push(
                label_selector(term.label_selector.as_ref())
                    .map_err(|e| unreadable("spec.affinity.podAntiAffinity", e))?,
            );
        }
    }
    Ok(PendingPod {
        key: key(pod),
        namespace,
        labels: labels(pod.metadata.labels.as_ref()),
        requests: pod_requests(spec).map_err(|e| unreadable("resources", e))?,
        node_selector: spec.node_selector.clone().unwrap_or_default(),
        required_affinity: required_node_affinity(spec.affinity.as_ref())
            .map_err(|e| unreadable("spec.affinity.nodeAffinity", e))?,
        tolerations: tolerations(spec.tolerations.as_ref())
            .map_err(|e| unreadable("spec.tolerations", e))?,
        topology_spread,
        hostname_anti_affinity,
    })
}

pub fn placed_pod(pod: &Pod) -> PlacedPod {
    PlacedPod {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        labels: labels(pod.metadata.labels.as_ref()),
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
    use serde_json::json;

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
    fn a_bad_quantity_is_an_error_naming_the_pod() {
        let p = pod(
            json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "lots"}}}]}}),
        );
        let err = pending_pod(&p).unwrap_err().to_string();
        assert!(err.contains("pod ns/p") && err.contains("cpu"), "{err}");
    }

    #[test]
    fn only_unschedulable_unbound_pods_for_spotwright_are_provisionable() {
        let unschedulable = json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]});
        let make = |scheduler: &str, ns: &str, status: serde_json::Value| {
            pod(
                json!({"metadata": {"name": "p", "namespace": ns}, "spec": {"schedulerName": scheduler, "containers": []}, "status": status}),
            )
        };
        let opted: BTreeSet<String> = ["team-a".to_owned()].into();
        assert!(is_provisionable(
            &make("spotwright-scheduler", "x", unschedulable.clone()),
            "spotwright-scheduler",
            &opted
        ));
        assert!(is_provisionable(
            &make("default-scheduler", "team-a", unschedulable.clone()),
            "spotwright-scheduler",
            &opted
        ));
        assert!(!is_provisionable(
            &make("default-scheduler", "x", unschedulable.clone()),
            "spotwright-scheduler",
            &opted
        ));
        assert!(!is_provisionable(
            &make("spotwright-scheduler", "x", json!({})),
            "spotwright-scheduler",
            &opted
        ));
    }

    #[test]
    fn spread_and_hostname_anti_affinity_are_read() {
        let p = pod(
            json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"}}, "spec": {
                "containers": [],
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "web"}}}]}}
            }}),
        );
        let pending = pending_pod(&p).unwrap();
        assert_eq!(pending.topology_spread.len(), 1);
        assert!(pending.topology_spread[0].hard);
        assert_eq!(pending.hostname_anti_affinity.len(), 1);
    }
}
