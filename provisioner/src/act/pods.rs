//! Pods: evicted through the Eviction API (PodDisruptionBudgets decide), or
//! deleted outright once a drain's grace period is over.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, EvictParams};
use kube::{Api, Client};

use super::ignore_not_found;
use crate::Error;

/// Evicts one pod; `false` when a PodDisruptionBudget refused (429). Gone
/// already is done.
pub async fn evict(client: &Client, namespace: &str, name: &str) -> Result<bool, Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    match api.evict(name, &EvictParams::default()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 429 => Ok(false),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(true),
        Err(source) => Err(Error::kube("evict", format!("Pod {namespace}/{name}"))(
            source,
        )),
    }
}

/// Deletes one pod, with its own grace period, bypassing its
/// PodDisruptionBudgets. Gone already is done.
pub async fn delete(client: &Client, namespace: &str, name: &str) -> Result<(), Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let deleted = api
        .delete(name, &DeleteParams::default())
        .await
        .map(drop)
        .map_err(Error::kube("delete", format!("Pod {namespace}/{name}")));
    ignore_not_found(deleted)
}
