//! Writes to Nodes: labels, taints, cordon, deletion. Every taint write
//! carries the resourceVersion the taints were computed from, so a
//! concurrent change makes it fail (409) instead of clobbering someone
//! else's taint.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Taint};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};
use spotwright_api::keys;

use super::ignore_not_found;
use crate::model::node::{disrupted_taint, node_taints};
use crate::Error;

/// Adds `metadata.resourceVersion` to a patch: the API server then refuses
/// it (409) if the object changed since it was read.
pub fn with_resource_version(mut patch: Value, version: Option<String>) -> Value {
    if let (Some(version), Some(object)) = (version, patch.as_object_mut()) {
        let metadata = object.entry("metadata").or_insert_with(|| json!({}));
        if let Some(metadata) = metadata.as_object_mut() {
            metadata.insert("resourceVersion".to_owned(), json!(version));
        }
    }
    patch
}

async fn merge(client: &Client, node: &str, patch: &Value) -> Result<(), Error> {
    Api::<Node>::all(client.clone())
        .patch(node, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(Error::kube("patch", format!("Node {node}")))?;
    Ok(())
}

/// Sets `labels` (every other label stays) and, when given, replaces the
/// taint list, in one patch: a label patch first would change the
/// resourceVersion the taints were computed from, and the taint patch
/// after it would always be refused.
pub async fn set_labels_and_taints(
    client: &Client,
    node: &Node,
    labels: &BTreeMap<String, String>,
    taints: Option<&[Taint]>,
) -> Result<(), Error> {
    let patch = match taints {
        Some(taints) => with_resource_version(
            json!({"metadata": {"labels": labels}, "spec": {"taints": taints}}),
            node.resource_version(),
        ),
        None => json!({"metadata": {"labels": labels}}),
    };
    merge(client, &node.name_any(), &patch).await
}

/// Taints the Node `spotwright.io/disrupted:NoSchedule` and cordons it, in one patch.
pub async fn cordon(client: &Client, node: &Node) -> Result<(), Error> {
    let mut taints = node_taints(node).to_vec();
    if !taints
        .iter()
        .any(|t| t.key == keys::DISRUPTED_TAINT_KEY && t.effect == "NoSchedule")
    {
        taints.push(disrupted_taint());
    }
    let patch = json!({"spec": {"unschedulable": true, "taints": taints}});
    let patch = with_resource_version(patch, node.resource_version());
    merge(client, &node.name_any(), &patch).await
}

/// Adds or removes the `spotwright.io/disrupted:NoSchedule` taint.
pub async fn set_disrupted_taint(client: &Client, node: &Node, on: bool) -> Result<(), Error> {
    let taints = node_taints(node);
    let has = taints.iter().any(|t| t.key == keys::DISRUPTED_TAINT_KEY);
    if has == on {
        return Ok(());
    }
    let taints: Vec<Taint> = if on {
        taints.iter().cloned().chain([disrupted_taint()]).collect()
    } else {
        taints
            .iter()
            .filter(|t| t.key != keys::DISRUPTED_TAINT_KEY)
            .cloned()
            .collect()
    };
    set_labels_and_taints(client, node, &BTreeMap::new(), Some(&taints)).await
}

/// The Node `name` as the API server has it now; `None` once it is gone.
pub async fn get(client: &Client, name: &str) -> Result<Option<Node>, Error> {
    Api::<Node>::all(client.clone())
        .get_opt(name)
        .await
        .map_err(Error::kube("get", format!("Node {name}")))
}

/// Deletes the Node. Gone already is done.
pub async fn delete(client: &Client, name: &str) -> Result<(), Error> {
    let deleted = Api::<Node>::all(client.clone())
        .delete(name, &Default::default())
        .await
        .map(drop)
        .map_err(Error::kube("delete", format!("Node {name}")));
    ignore_not_found(deleted)
}
