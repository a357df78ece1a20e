//! Kubernetes writes of the node agent.

use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Api;

use super::{ExistingNode, MANAGED_LABEL};

/// The Nodes this agent made.
pub async fn managed_nodes(api: &Api<Node>) -> Result<Vec<ExistingNode>, kube::Error> {
    let list = api
        .list(&ListParams::default().labels(&format!("{MANAGED_LABEL}=true")))
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|n| {
            Some(ExistingNode {
                name: n.metadata.name?,
                provider_id: n.spec.and_then(|s| s.provider_id),
            })
        })
        .collect())
}

/// Registers a Node, then writes its status as the kubelet would.
pub async fn register(api: &Api<Node>, node: &Node) -> Result<(), kube::Error> {
    let name = node.metadata.name.clone().unwrap_or_default();
    match api.create(&PostParams::default(), node).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(err) => return Err(err),
    }
    // The Node is created with its status, as the kubelet registers it: KWOK
    // fills an allocatable it finds empty with its own figures (1k CPUs).
    // Not every status field is kept on create, so the kubelet then writes
    // status through the subresource, and so does the agent.
    let status = serde_json::json!({"status": node.status});
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

pub async fn remove(api: &Api<Node>, name: &str) -> Result<(), kube::Error> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(err) => Err(err),
    }
}
