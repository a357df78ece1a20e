//! Writes to NodePools' metadata: the deletion finalizer that keeps a pool
//! until its nodes are drained.

use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use spotwright_api::NodePool;

use super::ignore_not_found;
use super::nodes::with_resource_version;
use crate::model::claim::TERMINATION_FINALIZER;
use crate::Error;

/// Adds (`present`) or removes the termination finalizer, guarded by the
/// pool's resourceVersion. Gone already is done.
pub async fn set_finalizer(client: &Client, pool: &NodePool, present: bool) -> Result<(), Error> {
    let mut finalizers: Vec<String> = pool
        .finalizers()
        .iter()
        .filter(|f| *f != TERMINATION_FINALIZER)
        .cloned()
        .collect();
    if present {
        finalizers.push(TERMINATION_FINALIZER.to_owned());
    }
    let patch = json!({"metadata": {"finalizers": finalizers}});
    let patch = with_resource_version(patch, pool.resource_version());
    let name = pool.name_any();
    let patched = Api::<NodePool>::all(client.clone())
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(drop)
        .map_err(Error::kube("patch", format!("NodePool {name}")));
    ignore_not_found(patched)
}
