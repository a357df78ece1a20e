//! Pod predicates shared by emptiness, disruption and termination.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use spotwright_api::keys;

/// Owned by a DaemonSet: it runs on every node and goes with it.
pub fn is_daemonset_pod(pod: &Pod) -> bool {
    pod.owner_references()
        .iter()
        .any(|o| o.kind == "DaemonSet" && o.api_version.starts_with("apps/"))
}

/// The kubelet's mirror of a static pod: it cannot be evicted.
pub fn is_mirror_pod(pod: &Pod) -> bool {
    pod.annotations().contains_key(keys::MIRROR_POD_ANNOTATION)
}

/// Finished: it holds nothing on the node.
pub fn is_terminal_pod(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// A pod that makes a node non-empty and that a drain must evict.
pub fn is_workload_pod(pod: &Pod) -> bool {
    !is_daemonset_pod(pod) && !is_mirror_pod(pod) && !is_terminal_pod(pod)
}

/// Whether an object carries `spotwright.io/do-not-disrupt: "true"`.
pub fn has_do_not_disrupt(annotations: &BTreeMap<String, String>) -> bool {
    annotations
        .get(keys::DO_NOT_DISRUPT_ANNOTATION)
        .is_some_and(|v| v == "true")
}

/// Why voluntary disruption must skip the node, if it must: the Node or one
/// of its running pods carries `spotwright.io/do-not-disrupt: "true"`.
pub fn do_not_disrupt(node: &Node, pods: &[&Pod]) -> Option<String> {
    if has_do_not_disrupt(node.annotations()) {
        return Some(format!(
            "Node has {}: \"true\"",
            keys::DO_NOT_DISRUPT_ANNOTATION
        ));
    }
    let pod = pods
        .iter()
        .filter(|p| !is_terminal_pod(p))
        .find(|p| has_do_not_disrupt(p.annotations()))?;
    Some(format!(
        "pod {}/{} has {}: \"true\"",
        pod.namespace().unwrap_or_default(),
        pod.name_any(),
        keys::DO_NOT_DISRUPT_ANNOTATION
    ))
}
