//! Writes to NodeClaims: the one status writer, creation, deletion with a
//! uid precondition, finalizers and annotations.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};
use spotwright_api::NodeClaim;

use super::nodes::with_resource_version;
use super::{ignore_not_found, FIELD_MANAGER};
use crate::model::claim::{conditions_with, node_name, ConditionUpdate, TERMINATION_FINALIZER};
use crate::Error;

fn api(client: &Client) -> Api<NodeClaim> {
    Api::all(client.clone())
}

fn object(claim: &NodeClaim) -> String {
    format!("NodeClaim {}", claim.name_any())
}

/// Server-side applies the claim's `conditions` (and `nodeName`) as the
/// provisioner, guarded by the resourceVersion they were computed from.
/// `nodeName` defaults to the one recorded: the provisioner's field manager
/// owns it (registration), and an apply that left it out would remove it.
pub async fn write_status(
    client: &Client,
    claim: &NodeClaim,
    conditions: &[Condition],
    node: Option<&str>,
) -> Result<(), Error> {
    let name = claim.name_any();
    let mut status = json!({ "conditions": conditions });
    if let Some(node_name) = node.or_else(|| node_name(claim)) {
        status["nodeName"] = json!(node_name);
    }
    let patch = json!({
        "apiVersion": "spotwright.io/v1alpha1",
        "kind": "NodeClaim",
        "metadata": {"name": name, "resourceVersion": claim.resource_version()},
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api(client)
        .patch_status(&name, &params, &Patch::Apply(&patch))
        .await
        .map_err(Error::kube("apply status of", object(claim)))?;
    Ok(())
}

/// Sets one condition on the claim, when that changes it.
pub async fn write_condition(
    client: &Client,
    claim: &NodeClaim,
    update: ConditionUpdate<'_>,
    now: Timestamp,
) -> Result<(), Error> {
    match conditions_with(claim, update, now) {
        Some(conditions) => write_status(client, claim, &conditions, None).await,
        None => Ok(()),
    }
}

/// Merges `status` (a `{"status": ...}` document) into the claim's status.
pub async fn merge_status(client: &Client, name: &str, status: &Value) -> Result<(), Error> {
    api(client)
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .map_err(Error::kube("patch status of", format!("NodeClaim {name}")))?;
    Ok(())
}

/// Creates a claim.
pub async fn create(client: &Client, claim: &NodeClaim) -> Result<NodeClaim, Error> {
    api(client)
        .create(&PostParams::default(), claim)
        .await
        .map_err(Error::kube("create", object(claim)))
}

/// Deletes the claim, and only that one: the uid precondition never
/// deletes a newer claim of the same name. Returns whether it was still
/// there (gone already is done, not an error).
pub async fn delete(client: &Client, claim: &NodeClaim) -> Result<bool, Error> {
    let mut params = DeleteParams::background();
    params.preconditions = Some(Preconditions {
        uid: claim.uid(),
        resource_version: None,
    });
    match api(client).delete(&claim.name_any(), &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(source) => Err(Error::kube("delete", object(claim))(source)),
    }
}

/// Deletes the claim named `name`, whichever it is. Gone already is done.
pub async fn delete_named(client: &Client, name: &str) -> Result<(), Error> {
    let deleted = api(client)
        .delete(name, &DeleteParams::background())
        .await
        .map(drop)
        .map_err(Error::kube("delete", format!("NodeClaim {name}")));
    ignore_not_found(deleted)
}

/// Merges `metadata` into the claim's metadata; guarded by the claim's
/// resourceVersion when `guarded`. Returns the claim as written.
pub async fn patch_metadata(
    client: &Client,
    claim: &NodeClaim,
    metadata: Value,
    guarded: bool,
) -> Result<NodeClaim, Error> {
    let patch = json!({ "metadata": metadata });
    let patch = match guarded {
        true => with_resource_version(patch, claim.resource_version()),
        false => patch,
    };
    api(client)
        .patch(
            &claim.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(Error::kube("patch", object(claim)))
}

/// Adds the termination finalizer.
pub async fn add_finalizer(client: &Client, claim: &NodeClaim) -> Result<(), Error> {
    let mut finalizers = claim.finalizers().to_vec();
    finalizers.push(TERMINATION_FINALIZER.to_owned());
    patch_metadata(client, claim, json!({ "finalizers": finalizers }), true).await?;
    Ok(())
}

/// Removes the termination finalizer, letting the claim go. Gone already is done.
pub async fn remove_finalizer(client: &Client, claim: &NodeClaim) -> Result<(), Error> {
    let finalizers: Vec<&String> = claim
        .finalizers()
        .iter()
        .filter(|f| *f != TERMINATION_FINALIZER)
        .collect();
    let patched = patch_metadata(client, claim, json!({ "finalizers": finalizers }), true).await;
    ignore_not_found(patched.map(drop))
}

/// Drops every finalizer, unguarded: for a claim nothing was launched for.
pub async fn release(client: &Client, claim: &NodeClaim) -> Result<(), Error> {
    let released = patch_metadata(client, claim, json!({ "finalizers": null }), false).await;
    ignore_not_found(released.map(drop))
}
