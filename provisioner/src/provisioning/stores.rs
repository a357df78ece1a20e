//! Watch-fed caches of what a solve reads. Pod events wake the batcher.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use spotwright_api::keys;
use spotwright_api::{NodeClaim, NodeClass, NodePool};
use spotwright_solver::model::InstanceType;
use tokio::sync::Notify;

use super::snapshot::{self, Objects, Problem};

#[derive(Clone)]
pub struct Stores {
    pub pods: Store<Pod>,
    pub nodes: Store<Node>,
    pub claims: Store<NodeClaim>,
    pub nodepools: Store<NodePool>,
    pub nodeclasses: Store<NodeClass>,
    pub daemonsets: Store<DaemonSet>,
    pub namespaces: Store<Namespace>,
    /// Notified on every change of a Pod, Node or NodeClaim.
    pub changed: Arc<Notify>,
}

impl Stores {
    /// Starts the watches; `ready()` resolves once each has listed.
    pub fn start(client: &Client) -> Stores {
        let changed = Arc::new(Notify::new());
        Stores {
            pods: watch(Api::all(client.clone()), Some(changed.clone())),
            nodes: watch(Api::all(client.clone()), Some(changed.clone())),
            claims: watch(Api::all(client.clone()), Some(changed.clone())),
            nodepools: watch(Api::all(client.clone()), Some(changed.clone())),
            nodeclasses: watch(Api::all(client.clone()), None),
            daemonsets: watch(Api::all(client.clone()), None),
            namespaces: watch(Api::all(client.clone()), None),
            changed,
        }
    }

    pub async fn ready(&self) {
        let _ = futures::join!(
            self.pods.wait_until_ready(),
            self.nodes.wait_until_ready(),
            self.claims.wait_until_ready(),
            self.nodepools.wait_until_ready(),
            self.nodeclasses.wait_until_ready(),
            self.daemonsets.wait_until_ready(),
            self.namespaces.wait_until_ready(),
        );
    }

    /// Every object the caches hold, at one moment.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            pods: self.pods.state(),
            nodes: self.nodes.state(),
            claims: self.claims.state(),
            nodepools: self.nodepools.state(),
            nodeclasses: self.nodeclasses.state(),
            daemonsets: self.daemonsets.state(),
            opted_in: self.opted_in(),
        }
    }

    /// Namespaces that opted in with `spotwright.io/capacity`.
    pub fn opted_in(&self) -> BTreeSet<String> {
        self.namespaces
            .state()
            .iter()
            .filter(|ns| {
                ns.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(keys::CAPACITY_ANNOTATION))
            })
            .filter_map(|ns| ns.metadata.name.clone())
            .collect()
    }
}

/// The caches' objects at one moment: what a pass or a disruption sweep reads.
pub struct Snapshot {
    pub pods: Vec<Arc<Pod>>,
    pub nodes: Vec<Arc<Node>>,
    pub claims: Vec<Arc<NodeClaim>>,
    pub nodepools: Vec<Arc<NodePool>>,
    pub nodeclasses: Vec<Arc<NodeClass>>,
    pub daemonsets: Vec<Arc<DaemonSet>>,
    pub opted_in: BTreeSet<String>,
}

impl Snapshot {
    /// The solver's input for this moment.
    pub fn problem(&self, scheduler_name: &str, instance_types: &[InstanceType]) -> Problem {
        let (pods, nodes, claims) = (refs(&self.pods), refs(&self.nodes), refs(&self.claims));
        let (nodepools, nodeclasses) = (refs(&self.nodepools), refs(&self.nodeclasses));
        let daemonsets = refs(&self.daemonsets);
        snapshot::build(
            &Objects {
                pods: &pods,
                nodes: &nodes,
                claims: &claims,
                nodepools: &nodepools,
                nodeclasses: &nodeclasses,
                daemonsets: &daemonsets,
                opted_in: &self.opted_in,
                scheduler_name,
            },
            instance_types,
        )
    }
}

/// Borrows of cached objects, as the pure functions take them.
pub fn refs<K>(objects: &[Arc<K>]) -> Vec<&K> {
    objects.iter().map(AsRef::as_ref).collect()
}

fn watch<K>(api: Api<K>, changed: Option<Arc<Notify>>) -> Store<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    spawn_cache(api, watcher::Config::default(), changed, keep)
}

/// Keeps an object as it is.
pub fn keep<K>(_: &mut K) {}

/// A watch-fed cache of `K`, in a task of its own: each object passes
/// through `slim` first (only what the readers use is kept; managed fields
/// never are), `changed` is notified on every event, and a failed watch is
/// logged and retried with backoff.
pub fn spawn_cache<K>(
    api: Api<K>,
    config: watcher::Config,
    changed: Option<Arc<Notify>>,
    slim: fn(&mut K),
) -> Store<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let kind = K::kind(&()).to_string();
    let stream = reflector::reflector(
        writer,
        watcher(api, config)
            .modify(move |object| {
                object.meta_mut().managed_fields = None;
                slim(object);
            })
            .default_backoff(),
    );
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => {
                    if let Some(changed) = &changed {
                        changed.notify_one();
                    }
                }
                Err(err) => tracing::warn!(kind, error = %err, "watch failed; retrying"),
            }
        }
    });
    reader
}
