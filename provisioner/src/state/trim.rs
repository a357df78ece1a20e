//! What the cluster state keeps of each object: only what some controller
//! reads. Managed fields never; the rest per kind. Pods are the largest
//! part of the state by far, so they lose most.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Container, Namespace, Node, Pod, PodSpec, PodStatus, Volume};
use kube::Resource;
use spotwright_api::keys;

/// `kubectl apply`'s copy of the whole object: large, and read by nobody here.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what no controller reads from any object.
pub fn common<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// A container as the solver sees it: its name, requests and restart policy.
fn container(c: &mut Container) {
    *c = Container {
        name: std::mem::take(&mut c.name),
        resources: c.resources.take(),
        restart_policy: c.restart_policy.take(),
        ..Container::default()
    };
}

/// Keeps of a pod spec what placement reads: requests, affinity,
/// tolerations, spread, selectors, the node and scheduler names, and the
/// volumes that bind it to a zone (claims).
fn pod_spec(spec: &mut PodSpec) {
    spec.containers.iter_mut().for_each(container);
    spec.init_containers
        .iter_mut()
        .flatten()
        .for_each(container);
    spec.ephemeral_containers = None;
    spec.volumes = spec.volumes.take().map(|volumes| {
        volumes
            .into_iter()
            .filter(|v| v.persistent_volume_claim.is_some() || v.ephemeral.is_some())
            .map(|v| Volume {
                name: v.name,
                persistent_volume_claim: v.persistent_volume_claim,
                ephemeral: v.ephemeral,
                ..Volume::default()
            })
            .collect()
    });
}

/// A pod: its placement facts, phase, conditions and nomination.
pub fn pod(pod: &mut Pod) {
    common(pod);
    if let Some(spec) = pod.spec.as_mut() {
        pod_spec(spec);
    }
    if let Some(status) = pod.status.as_mut() {
        *status = PodStatus {
            phase: status.phase.take(),
            conditions: status.conditions.take(),
            nominated_node_name: status.nominated_node_name.take(),
            ..PodStatus::default()
        };
    }
}

/// A node without its image list (tens of entries on a real node).
pub fn node(node: &mut Node) {
    common(node);
    if let Some(status) = node.status.as_mut() {
        status.images = None;
    }
}

/// A DaemonSet: the pod template that adds to every node, and its selector.
pub fn daemonset(ds: &mut DaemonSet) {
    common(ds);
    if let Some(spec) = ds.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        pod_spec(spec);
    }
    ds.status = None;
}

/// A namespace: its name and whether it opted in.
pub fn namespace(ns: &mut Namespace) {
    common(ns);
    if let Some(annotations) = ns.metadata.annotations.as_mut() {
        annotations.retain(|key, _| key == keys::CAPACITY_ANNOTATION);
    }
    ns.metadata.labels = None;
    ns.spec = None;
    ns.status = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pods_keep_what_placement_reads_and_lose_the_rest() {
        let mut p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "a", "namespace": "n", "labels": {"app": "a"},
                "annotations": {LAST_APPLIED: "{...}", keys::DO_NOT_DISRUPT_ANNOTATION: "true"},
                "managedFields": [{"manager": "kubectl"}]},
            "spec": {"nodeName": "n1", "schedulerName": "s",
                "containers": [{"name": "c", "image": "busybox", "command": ["sleep"],
                    "env": [{"name": "X", "value": "1"}],
                    "resources": {"requests": {"cpu": "1"}}}],
                "tolerations": [{"key": "k", "operator": "Exists"}],
                "volumes": [{"name": "cfg", "configMap": {"name": "c"}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "d"}}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "c", "image": "busybox", "imageID": "", "ready": true, "restartCount": 0}]}
        }))
        .unwrap();
        pod(&mut p);
        assert!(p.metadata.managed_fields.is_none());
        let annotations = p.metadata.annotations.clone().unwrap_or_default();
        assert!(!annotations.contains_key(LAST_APPLIED));
        assert!(annotations.contains_key(keys::DO_NOT_DISRUPT_ANNOTATION));
        let spec = p.spec.clone().unwrap_or_default();
        assert_eq!(spec.node_name.as_deref(), Some("n1"));
        assert_eq!(spec.tolerations.map(|t| t.len()), Some(1));
        let c = &spec.containers[0];
        assert!(c.image.is_none() && c.command.is_none() && c.env.is_none());
        assert!(c.resources.is_some());
        let volumes = spec.volumes.unwrap_or_default();
        assert_eq!(volumes.len(), 1);
        assert_eq!(volumes[0].name, "data");
        let status = p.status.unwrap_or_default();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert!(status.pod_ip.is_none() && status.container_statuses.is_none());
        assert_eq!(status.conditions.map(|c| c.len()), Some(1));
    }

    #[test]
    fn namespaces_keep_only_the_opt_in() {
        let mut ns: Namespace = serde_json::from_value(json!({
            "metadata": {"name": "team", "labels": {"a": "b"},
                "annotations": {keys::CAPACITY_ANNOTATION: "spot", "other": "x"}}
        }))
        .unwrap();
        namespace(&mut ns);
        let annotations = ns.metadata.annotations.unwrap_or_default();
        assert_eq!(annotations.len(), 1);
        assert!(annotations.contains_key(keys::CAPACITY_ANNOTATION));
    }
}
