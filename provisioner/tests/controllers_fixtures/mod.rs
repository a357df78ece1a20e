//! Objects for the controllers' tests, built from the JSON users would write.
#![allow(dead_code)]

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};
use spotwright_api::NodeClaim;
pub use spotwright_provisioner::model::pod::CachedPod;

pub fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).expect("valid timestamp")
}

pub fn rfc3339(seconds: i64) -> String {
    at(seconds).to_string()
}

pub fn condition(type_: &str, status: bool, since: i64) -> Value {
    json!({
        "type": type_, "status": if status { "True" } else { "False" },
        "reason": "Test", "message": "", "lastTransitionTime": rfc3339(since)
    })
}

/// A launched claim of NodePool `default`: m5.large Spot in us-east-1a,
/// one taint, one startup taint; `conditions` as given.
pub fn claim(conditions: Vec<Value>) -> NodeClaim {
    serde_json::from_value(json!({
        "apiVersion": "spotwright.io/v1alpha1", "kind": "NodeClaim",
        "metadata": {
            "name": "default-abc", "uid": "u-1", "resourceVersion": "7",
            "creationTimestamp": rfc3339(0),
            "labels": {"spotwright.io/nodepool": "default", "team": "a"},
            "finalizers": ["spotwright.io/termination"]
        },
        "spec": {
            "nodeClassRef": {"name": "default"},
            "requirements": [
                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large", "m5.xlarge"]},
                {"key": "spotwright.io/instance-cpu", "operator": "Gt", "values": ["1"]}
            ],
            "taints": [{"key": "dedicated", "value": "ml", "effect": "NoSchedule"}],
            "startupTaints": [{"key": "node.cilium.io/agent-not-ready", "effect": "NoExecute"}]
        },
        "status": {
            "providerID": "aws:///us-east-1a/i-0123456789abcdef0",
            "instanceType": "m5.large", "zone": "us-east-1a", "capacityType": "spot",
            "conditions": conditions
        }
    }))
    .expect("claim fixture")
}

/// A Node carrying the claim's providerID, with `labels`, `taints`, readiness.
pub fn node(labels: Value, taints: Value, ready: bool) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": "ip-10-0-0-1.ec2.internal", "resourceVersion": "3", "labels": labels},
        "spec": {"providerID": "aws:///us-east-1a/i-0123456789abcdef0", "taints": taints},
        "status": {
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            "allocatable": {"cpu": "1930m", "memory": "7Gi", "pods": "29"}
        }
    }))
    .expect("node fixture")
}

/// What a pod is, for the drain and emptiness rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodKind {
    Workload,
    DaemonSet,
    Mirror,
    Succeeded,
    Failed,
    /// A workload pod already being deleted.
    Terminating,
}

/// A pod as the cluster state holds it.
pub fn pod(name: &str, kind: PodKind) -> CachedPod {
    CachedPod::from(&pod_object(name, kind))
}

/// The pod as the API server serves it.
pub fn pod_object(name: &str, kind: PodKind) -> Pod {
    let mut pod = json!({
        "metadata": {"name": name, "namespace": "apps", "annotations": {}},
        "spec": {"nodeName": "ip-10-0-0-1.ec2.internal", "containers": [{"name": "c"}]},
        "status": {"phase": "Running"}
    });
    match kind {
        PodKind::Workload => {}
        PodKind::DaemonSet => {
            pod["metadata"]["ownerReferences"] = json!([{
                "apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "uid": "d-1", "controller": true
            }])
        }
        PodKind::Mirror => {
            pod["metadata"]["annotations"]["kubernetes.io/config.mirror"] = json!("abc")
        }
        PodKind::Succeeded => pod["status"]["phase"] = json!("Succeeded"),
        PodKind::Failed => pod["status"]["phase"] = json!("Failed"),
        PodKind::Terminating => pod["metadata"]["deletionTimestamp"] = json!(rfc3339(0)),
    }
    serde_json::from_value(pod).expect("pod fixture")
}

pub fn annotate<T: kube::Resource>(mut object: T, key: &str, value: &str) -> T {
    object
        .meta_mut()
        .annotations
        .get_or_insert_with(Default::default)
        .insert(key.to_owned(), value.to_owned());
    object
}
