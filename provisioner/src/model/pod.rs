//! Pods as the cluster state keeps them, and the predicates emptiness,
//! disruption, termination and provisioning share.
//!
//! A pod is most of the state's memory (50,000 of them in a large
//! cluster), and its Kubernetes type alone is about 2.4 KB before any
//! content. So the state keeps a [`CachedPod`]: the few facts that are this
//! pod's alone (name, uid, node, phase), and an `Arc` of a [`PodShape`]
//! with everything read from its template (labels, owner, requests,
//! placement), which the replicas of one template share.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use spotwright_api::{keys, reservation};
use spotwright_solver::model::{PendingPod, PlacedPod, Resources};

use super::facts::{placement, requests_of, FactsError, Placement, UnreadableField};

/// What the replicas of one template have in common, as read once when
/// the pod arrives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PodShape {
    pub namespace: Arc<str>,
    pub labels: Arc<BTreeMap<String, String>>,
    pub scheduler_name: Option<String>,
    /// The UID of its controller (ReplicaSet, StatefulSet, Job...), whose
    /// pods are interchangeable in the room a new node holds for them.
    pub controller: Option<Arc<str>>,
    /// Owned by a DaemonSet: it runs on every node and goes with it.
    pub daemonset: bool,
    /// The kubelet's mirror of a static pod: it cannot be evicted.
    pub mirror: bool,
    /// Carries `spotwright.io/do-not-disrupt: "true"`.
    pub do_not_disrupt: bool,
    /// `spec.priority` (0 when unset).
    pub priority: i32,
    /// `controller.kubernetes.io/pod-deletion-cost` (0 when unset or unreadable).
    pub deletion_cost: i32,
    /// What it needs on a node, the way the scheduler counts it.
    pub requests: Result<Resources, UnreadableField>,
    pub placement: Result<Placement, UnreadableField>,
}

impl PodShape {
    pub fn of(pod: &Pod) -> PodShape {
        let spec = pod.spec.as_ref();
        PodShape {
            namespace: pod.metadata.namespace.as_deref().unwrap_or_default().into(),
            labels: Arc::new(pod.metadata.labels.clone().unwrap_or_default()),
            scheduler_name: spec.and_then(|s| s.scheduler_name.clone()),
            controller: reservation::group_of(pod.owner_references()).map(Arc::from),
            daemonset: pod
                .owner_references()
                .iter()
                .any(|o| o.kind == "DaemonSet" && o.api_version.starts_with("apps/")),
            mirror: pod.annotations().contains_key(keys::MIRROR_POD_ANNOTATION),
            do_not_disrupt: has_do_not_disrupt(pod.annotations()),
            priority: spec.and_then(|s| s.priority).unwrap_or_default(),
            deletion_cost: pod
                .annotations()
                .get(keys::POD_DELETION_COST_ANNOTATION)
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_default(),
            requests: requests_of(spec),
            placement: placement(spec),
        }
    }
}

/// A pod as the cluster state keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedPod {
    pub name: String,
    pub uid: Option<String>,
    /// Its creation time: the order kube-scheduler's queue first takes pods in.
    pub created: Option<Timestamp>,
    pub node_name: Option<String>,
    /// `Succeeded` or `Failed`: it holds nothing on its node.
    pub terminal: bool,
    /// `PodScheduled=False` with reason `Unschedulable`: the scheduler gave
    /// up on it, and its message (why no node fits), kept only then.
    pub unschedulable: Option<String>,
    /// No `PodScheduled` condition and no scheduling gate: the scheduler
    /// has not tried it yet, and nothing holds it back from trying.
    pub untried: bool,
    /// Has a deletion timestamp.
    pub deleting: bool,
    pub shape: Arc<PodShape>,
}

impl From<&Pod> for CachedPod {
    fn from(pod: &Pod) -> Self {
        CachedPod::new(pod, Arc::new(PodShape::of(pod)))
    }
}

impl CachedPod {
    /// `pod` with `shape`, which must be `PodShape::of(pod)` or equal to it.
    pub fn new(pod: &Pod, shape: Arc<PodShape>) -> CachedPod {
        let status = pod.status.as_ref();
        let unschedulable = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| {
                cs.iter().find(|c| {
                    c.type_ == "PodScheduled"
                        && c.status == "False"
                        && c.reason.as_deref() == Some("Unschedulable")
                })
            })
            .map(|c| c.message.clone().unwrap_or_default());
        let scheduled_condition = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "PodScheduled"));
        let gated = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduling_gates.as_ref())
            .is_some_and(|gates| !gates.is_empty());
        CachedPod {
            name: pod.name_any(),
            uid: pod.metadata.uid.clone(),
            created: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            terminal: matches!(
                status.and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            ),
            unschedulable,
            untried: !scheduled_condition && !gated,
            deleting: pod.metadata.deletion_timestamp.is_some(),
            shape,
        }
    }

    pub fn namespace(&self) -> &str {
        &self.shape.namespace
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace(), self.name)
    }

    /// A pod that makes a node non-empty and that a drain must evict.
    pub fn is_workload(&self) -> bool {
        !self.shape.daemonset && !self.shape.mirror && !self.terminal
    }

    /// Waiting for a node, not finished, and meant for Spotwright. Either
    /// the scheduler marked it unschedulable and it names Spotwright's
    /// scheduler or lives in a namespace that opted in (a pod the default
    /// scheduler could not place there would fit on a node Spotwright
    /// launches only if the webhook mutated it; such pods are Spotwright's
    /// too). Or it names Spotwright's scheduler, which has not tried it
    /// yet: a burst is then solved as it is created, not in the order and
    /// at the rate the scheduler marks it (the solve places such a pod on
    /// a node that has room before it launches one).
    pub fn is_provisionable(&self, scheduler_name: &str, opted_in: &BTreeSet<String>) -> bool {
        if self.node_name.is_some() || self.deleting {
            return false;
        }
        if self.shape.daemonset || self.shape.mirror || self.terminal {
            return false;
        }
        let names_ours = self.shape.scheduler_name.as_deref() == Some(scheduler_name);
        if self.unschedulable.is_some() {
            names_ours || opted_in.contains(self.namespace())
        } else {
            names_ours && self.untried
        }
    }

    /// The pod as the solver places it, or which field it cannot read.
    pub fn pending(&self) -> Result<PendingPod, FactsError> {
        let object = || format!("pod {}", self.key());
        let requests = self.shape.requests.clone().map_err(|e| e.of(&object()))?;
        let placement = self.shape.placement.as_ref().map_err(|e| e.of(&object()))?;
        Ok(PendingPod {
            key: self.key(),
            namespace: self.namespace().to_owned(),
            labels: self.shape.labels.as_ref().clone(),
            requests,
            node_selector: placement.node_selector.clone(),
            required_affinity: placement.required_affinity.clone(),
            preferred_affinity: placement.preferred_affinity.clone(),
            tolerations: placement.tolerations.clone(),
            topology_spread: placement.topology_spread.clone(),
            hostname_anti_affinity: placement.hostname_anti_affinity.clone(),
            zone_anti_affinity: placement.zone_anti_affinity.clone(),
            hostname_affinity: placement.hostname_affinity.clone(),
            zone_affinity: placement.zone_affinity.clone(),
            preferred_hostname_anti_affinity: placement.preferred_hostname_anti_affinity.clone(),
        })
    }

    /// The PersistentVolumeClaims the pod's volumes use, generic ephemeral
    /// ones (`<pod>-<volume>`) included.
    pub fn volume_claims(&self) -> Vec<String> {
        let Ok(placement) = &self.shape.placement else {
            return Vec::new();
        };
        let ephemeral = placement
            .ephemeral_volumes
            .iter()
            .map(|v| format!("{}-{v}", self.name));
        placement
            .volume_claims
            .iter()
            .cloned()
            .chain(ephemeral)
            .collect()
    }

    /// The pod as spread and anti-affinity count it where it runs.
    pub fn placed(&self) -> PlacedPod {
        PlacedPod {
            namespace: self.shape.namespace.clone(),
            labels: self.shape.labels.clone(),
        }
    }

    /// What an Event about the pod refers to.
    pub fn reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Pod".to_owned()),
            namespace: Some(self.namespace().to_owned()),
            name: Some(self.name.clone()),
            uid: self.uid.clone(),
            ..ObjectReference::default()
        }
    }
}

/// Whether an object carries `spotwright.io/do-not-disrupt: "true"`.
pub fn has_do_not_disrupt(annotations: &BTreeMap<String, String>) -> bool {
    annotations
        .get(keys::DO_NOT_DISRUPT_ANNOTATION)
        .is_some_and(|v| v == "true")
}

/// Why voluntary disruption must skip the node, if it must: the Node or one
/// of its running pods carries `spotwright.io/do-not-disrupt: "true"`.
pub fn do_not_disrupt(node: &Node, pods: &[&CachedPod]) -> Option<String> {
    if has_do_not_disrupt(node.annotations()) {
        return Some(format!(
            "Node has {}: \"true\"",
            keys::DO_NOT_DISRUPT_ANNOTATION
        ));
    }
    let pod = pods
        .iter()
        .find(|p| !p.terminal && p.shape.do_not_disrupt)?;
    Some(format!(
        "pod {} has {}: \"true\"",
        pod.key(),
        keys::DO_NOT_DISRUPT_ANNOTATION
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> CachedPod {
        let pod: Pod = serde_json::from_value(value).unwrap();
        CachedPod::from(&pod)
    }

    #[test]
    fn unbound_pods_for_spotwright_are_provisionable_once_unschedulable_or_untried() {
        let unschedulable = json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]});
        let gated_status = json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]});
        let make = |scheduler: &str, ns: &str, status: serde_json::Value| {
            pod(
                json!({"metadata": {"name": "p", "namespace": ns}, "spec": {"schedulerName": scheduler, "containers": []}, "status": status}),
            )
        };
        let opted: BTreeSet<String> = ["team-a".to_owned()].into();
        let ours = "spotwright-scheduler";
        assert!(make(ours, "x", unschedulable.clone()).is_provisionable(ours, &opted));
        assert!(make("default-scheduler", "team-a", unschedulable.clone())
            .is_provisionable(ours, &opted));
        assert!(
            !make("default-scheduler", "x", unschedulable.clone()).is_provisionable(ours, &opted)
        );
        // Not tried yet: ours only if it names Spotwright's scheduler.
        assert!(make(ours, "x", json!({})).is_provisionable(ours, &opted));
        assert!(!make("default-scheduler", "team-a", json!({})).is_provisionable(ours, &opted));
        // Gated, by its condition or (before the scheduler wrote one) its spec.
        assert!(!make(ours, "x", gated_status).is_provisionable(ours, &opted));
        let gated_spec = pod(json!({"metadata": {"name": "p", "namespace": "x"},
            "spec": {"schedulerName": ours, "containers": [], "schedulingGates": [{"name": "g"}]}}));
        assert!(!gated_spec.is_provisionable(ours, &opted));
        // Bound, or going.
        let mut bound = make(ours, "x", json!({}));
        bound.node_name = Some("n1".to_owned());
        assert!(!bound.is_provisionable(ours, &opted));
        let mut deleting = make(ours, "x", unschedulable);
        deleting.deleting = true;
        assert!(!deleting.is_provisionable(ours, &opted));
    }

    #[test]
    fn daemonset_mirror_and_finished_pods_are_not_workload() {
        let daemon = pod(
            json!({"metadata": {"name": "d", "namespace": "n", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "uid": "u"}]},
            "spec": {"containers": []}}),
        );
        let mirror = pod(json!({"metadata": {"name": "m", "namespace": "n",
            "annotations": {keys::MIRROR_POD_ANNOTATION: "x"}}, "spec": {"containers": []}}));
        let done = pod(json!({"metadata": {"name": "f", "namespace": "n"},
            "spec": {"containers": []}, "status": {"phase": "Succeeded"}}));
        let running = pod(json!({"metadata": {"name": "r", "namespace": "n"},
            "spec": {"containers": []}, "status": {"phase": "Running"}}));
        assert!(!daemon.is_workload() && !mirror.is_workload() && !done.is_workload());
        assert!(running.is_workload());
    }

    #[test]
    fn a_pod_s_controller_is_its_group_and_a_mere_owner_is_not() {
        let owned = |controller: bool| {
            pod(
                json!({"metadata": {"name": "p", "namespace": "n", "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "cm-1"},
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs-1",
                 "controller": controller}]},
                "spec": {"containers": []}}),
            )
        };
        assert_eq!(owned(true).shape.controller.as_deref(), Some("rs-1"));
        assert_eq!(owned(false).shape.controller, None);
    }

    #[test]
    fn a_bad_quantity_is_an_error_naming_the_pod() {
        let p = pod(
            json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "lots"}}}]}}),
        );
        let err = p.pending().unwrap_err().to_string();
        assert!(err.contains("pod ns/p") && err.contains("cpu"), "{err}");
    }

    #[test]
    fn pending_pods_carry_the_shape_and_their_own_key() {
        let p = pod(
            json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"app": "web"}},
            "spec": {"nodeSelector": {"zone": "a"}, "tolerations": [{"key": "k", "operator": "Exists"}],
                "containers": [{"name": "a", "resources": {"requests": {"cpu": "250m"}}}]}}),
        );
        let pending = p.pending().unwrap();
        assert_eq!(pending.key, "ns/p");
        assert_eq!(pending.namespace, "ns");
        assert_eq!(pending.labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(pending.requests.cpu_millis, 250);
        assert_eq!(pending.node_selector.len(), 1);
        assert_eq!(pending.tolerations.len(), 1);
        let reference = p.reference();
        assert_eq!(reference.uid.as_deref(), Some("u-1"));
        assert_eq!(reference.kind.as_deref(), Some("Pod"));
    }

    #[test]
    fn do_not_disrupt_names_the_pod_unless_it_finished() {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap();
        let held = pod(json!({"metadata": {"name": "p", "namespace": "ns",
            "annotations": {keys::DO_NOT_DISRUPT_ANNOTATION: "true"}}, "spec": {"containers": []}}));
        let reason = do_not_disrupt(&node, &[&held]).unwrap_or_default();
        assert!(reason.contains("pod ns/p"), "{reason}");
        let mut finished = held.clone();
        finished.terminal = true;
        assert!(do_not_disrupt(&node, &[&finished]).is_none());
    }
}
