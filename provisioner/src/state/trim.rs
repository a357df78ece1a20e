//! What the cluster state keeps of each object: only what some controller
//! reads. Managed fields never; the rest per kind. Pods are not trimmed
//! here: the state keeps each as a compact `CachedPod` ([`super::pods`]),
//! since a trimmed `Pod` still costs its type's own size (about 2.4 KB,
//! and 2.1 KB a container, before any content; "Cluster state at scale"
//! in `docs/benchmarks.md`).

use k8s_openapi::api::apps::v1::{DaemonSet, ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{
    Container, Namespace, Node, NodeStatus, PodSpec, PodTemplateSpec, ResourceRequirements, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
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

/// The annotations of a node some controller reads: Spotwright's own
/// (`spotwright.io/do-not-disrupt`). Every other annotation goes (an empty
/// map with them).
fn keep_read_annotations(meta: &mut ObjectMeta) {
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|key, _| {
            key.split_once('/')
                .is_some_and(|(prefix, _)| prefix == keys::GROUP)
        });
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// Requests are what placement counts (the API server has already
/// defaulted them from limits); limits and claims are read by nobody here.
fn requests_only(resources: ResourceRequirements) -> ResourceRequirements {
    ResourceRequirements {
        requests: resources.requests,
        ..ResourceRequirements::default()
    }
}

/// A container as the solver sees it: its name, requests and restart policy.
fn container(c: &mut Container) {
    *c = Container {
        name: std::mem::take(&mut c.name),
        resources: c.resources.take().map(requests_only),
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
    spec.resources = spec.resources.take().map(requests_only);
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

/// The conditions of a list that `keep` selects; none left is no list.
fn only_condition<C>(conditions: Option<Vec<C>>, keep: impl Fn(&C) -> bool) -> Option<Vec<C>> {
    let kept: Vec<C> = conditions?.into_iter().filter(|c| keep(c)).collect();
    (!kept.is_empty()).then_some(kept)
}

/// A node: labels, the annotations read, its spec (providerID, taints,
/// unschedulable), capacity, allocatable and the `Ready` condition. Its
/// image list (tens of entries on a real node), addresses, system info and
/// the other conditions go.
pub fn node(node: &mut Node) {
    common(node);
    keep_read_annotations(&mut node.metadata);
    if let Some(status) = node.status.as_mut() {
        *status = NodeStatus {
            capacity: status.capacity.take(),
            allocatable: status.allocatable.take(),
            conditions: only_condition(status.conditions.take(), |c| c.type_ == "Ready"),
            ..NodeStatus::default()
        };
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

/// A ReplicaSet: how many replicas it wants, whether its controller has
/// acted on that (`observedGeneration`), and its pods' scheduler name; what
/// tells the batching loop that a burst's pods all exist.
pub fn replicaset(rs: &mut ReplicaSet) {
    common(rs);
    rs.metadata.annotations = None;
    rs.metadata.labels = None;
    if let Some(spec) = rs.spec.as_mut() {
        let scheduler_name = spec
            .template
            .as_mut()
            .and_then(|t| t.spec.as_mut())
            .and_then(|s| s.scheduler_name.take());
        spec.template = scheduler_name.map(|name| PodTemplateSpec {
            spec: Some(PodSpec {
                scheduler_name: Some(name),
                ..PodSpec::default()
            }),
            ..PodTemplateSpec::default()
        });
    }
    rs.status = rs.status.take().map(|status| ReplicaSetStatus {
        observed_generation: status.observed_generation,
        replicas: status.replicas,
        ..ReplicaSetStatus::default()
    });
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
    fn daemonset_templates_keep_what_placement_reads_and_lose_the_rest() {
        let mut ds: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "kube-system",
                "annotations": {LAST_APPLIED: "{...}"}, "managedFields": [{"manager": "kubectl"}]},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "c", "image": "agent", "command": ["run"],
                    "env": [{"name": "X", "value": "1"}],
                    "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "1"}}}],
                    "tolerations": [{"operator": "Exists"}],
                    "volumes": [{"name": "cfg", "configMap": {"name": "c"}},
                        {"name": "data", "persistentVolumeClaim": {"claimName": "d"}}]}}},
            "status": {"currentNumberScheduled": 1, "desiredNumberScheduled": 1,
                "numberMisscheduled": 0, "numberReady": 1}
        }))
        .unwrap();
        daemonset(&mut ds);
        assert!(ds.metadata.managed_fields.is_none() && ds.status.is_none());
        assert!(ds.metadata.annotations.unwrap_or_default().is_empty());
        let spec = ds.spec.and_then(|s| s.template.spec).unwrap_or_default();
        assert_eq!(spec.tolerations.map(|t| t.len()), Some(1));
        let c = &spec.containers[0];
        assert!(c.image.is_none() && c.command.is_none() && c.env.is_none());
        let resources = c.resources.clone().unwrap_or_default();
        assert!(resources.requests.is_some() && resources.limits.is_none());
        let volumes = spec.volumes.unwrap_or_default();
        assert_eq!(volumes.len(), 1);
        assert_eq!(volumes[0].name, "data");
    }

    #[test]
    fn nodes_keep_what_placement_and_registration_read() {
        let mut n: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"},
                "annotations": {keys::DO_NOT_DISRUPT_ANNOTATION: "true", "node.alpha.kubernetes.io/ttl": "0"},
                "managedFields": [{"manager": "kubelet"}]},
            "spec": {"providerID": "aws:///us-east-1a/i-0abc", "unschedulable": true,
                "taints": [{"key": "k", "effect": "NoSchedule"}]},
            "status": {
                "capacity": {"cpu": "4", "memory": "16Gi"},
                "allocatable": {"cpu": "3900m", "memory": "15Gi"},
                "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                "nodeInfo": {"machineID": "m", "systemUUID": "s", "bootID": "b", "kernelVersion": "k",
                    "osImage": "o", "containerRuntimeVersion": "c", "kubeletVersion": "v", "kubeProxyVersion": "",
                    "operatingSystem": "linux", "architecture": "amd64"},
                "images": [{"names": ["busybox"], "sizeBytes": 1}]}
        }))
        .unwrap();
        node(&mut n);
        assert!(n.metadata.managed_fields.is_none());
        assert_eq!(n.metadata.labels.as_ref().map(|l| l.len()), Some(1));
        let annotations = n.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations.len(), 1);
        assert!(annotations.contains_key(keys::DO_NOT_DISRUPT_ANNOTATION));
        let spec = n.spec.clone().unwrap_or_default();
        assert!(spec.provider_id.is_some() && spec.unschedulable == Some(true));
        assert_eq!(spec.taints.map(|t| t.len()), Some(1));
        let status = n.status.unwrap_or_default();
        assert_eq!(status.capacity.map(|c| c.len()), Some(2));
        assert_eq!(status.allocatable.map(|c| c.len()), Some(2));
        let conditions: Vec<String> = status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.type_)
            .collect();
        assert_eq!(conditions, ["Ready"]);
        assert!(
            status.addresses.is_none() && status.node_info.is_none() && status.images.is_none()
        );
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

    #[test]
    fn replicasets_keep_their_count_generation_and_scheduler() {
        let mut rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "web-1", "uid": "u1", "generation": 3,
                "labels": {"app": "web"}, "annotations": {"deployment.kubernetes.io/revision": "1"}},
            "spec": {"replicas": 5, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"schedulerName": "spotwright-scheduler",
                        "containers": [{"name": "c", "image": "i"}]}}},
            "status": {"replicas": 4, "observedGeneration": 3, "readyReplicas": 2}
        }))
        .unwrap();
        replicaset(&mut rs);
        let spec = rs.spec.unwrap_or_default();
        assert_eq!(spec.replicas, Some(5));
        let template = spec.template.unwrap_or_default();
        assert!(template.metadata.is_none());
        let pod = template.spec.unwrap_or_default();
        assert_eq!(pod.scheduler_name.as_deref(), Some("spotwright-scheduler"));
        assert!(pod.containers.is_empty());
        let status = rs.status.unwrap_or_default();
        assert_eq!((status.observed_generation, status.replicas), (Some(3), 4));
        assert!(status.ready_replicas.is_none());
        assert!(rs.metadata.labels.is_none() && rs.metadata.annotations.is_none());
        assert_eq!(rs.metadata.generation, Some(3));
    }
}
