//! Watch-fed caches: the webhook never calls the API server on the request path.

use std::future::Future;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Client};
use spotwright_api::NodePool;

use crate::view::CachedView;

/// Starts the watches (Namespaces as metadata only, to keep memory small); returns the view and a future that resolves once both
/// caches hold a full initial list.
pub fn start(client: Client) -> (CachedView, impl Future<Output = ()>) {
    let (namespaces, namespace_writer) = reflector::store();
    let (nodepools, nodepool_writer) = reflector::store();
    let namespace_stream = watcher(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(namespace_writer)
    .touched_objects();
    let nodepool_stream = watcher(Api::<NodePool>::all(client), watcher::Config::default())
        .default_backoff()
        .reflect(nodepool_writer)
        .touched_objects();
    tokio::spawn(drain("namespaces", namespace_stream));
    tokio::spawn(drain("nodepools", nodepool_stream));
    let view = CachedView {
        namespaces: namespaces.clone(),
        nodepools: nodepools.clone(),
    };
    let synced = async move {
        let _ = futures::join!(namespaces.wait_until_ready(), nodepools.wait_until_ready());
    };
    (view, synced)
}

async fn drain<S, K>(what: &'static str, stream: S)
where
    S: futures::Stream<Item = Result<K, watcher::Error>>,
{
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        // The backoff retries; the cache keeps serving what it last saw.
        if let Err(err) = event {
            tracing::warn!(cache = what, error = %err, "watch failed; retrying");
        }
    }
}
