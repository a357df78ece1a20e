//! The one cluster state: a single watch per kind (Pods, Nodes, NodeClaims,
//! NodePools, NodeClasses, DaemonSets, ReplicaSets, Namespaces, and the volume kinds:
//! PersistentVolumeClaims, PersistentVolumes, StorageClasses), trimmed to what the
//! controllers read ([`trim`]; pods kept compact by [`pods`]), shared by
//! every controller. Controllers read
//! a [`Snapshot`] (built once per change, indexed by name, providerID and
//! node) and wait for the kinds they care about with [`Changes`]; none of
//! them lists anything from the API server.

pub mod backoff;
pub mod pods;
pub mod snapshot;
pub mod trim;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use prometheus::IntCounter;
use spotwright_api::{NodeClaim, NodeClass, NodePool};
use tokio::sync::watch;

pub use pods::PodStore;
pub use snapshot::{refs, Lists, Snapshot};

/// One kind's events, from the API server or recorded.
pub type Feed<K> = BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>;

/// The kinds the state holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Pods,
    Nodes,
    NodeClaims,
    NodePools,
    NodeClasses,
    DaemonSets,
    /// ReplicaSets: when a burst's pods all exist.
    ReplicaSets,
    Namespaces,
    /// PersistentVolumeClaims, PersistentVolumes and StorageClasses.
    Volumes,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Pods,
        Kind::Nodes,
        Kind::NodeClaims,
        Kind::NodePools,
        Kind::NodeClasses,
        Kind::DaemonSets,
        Kind::ReplicaSets,
        Kind::Namespaces,
        Kind::Volumes,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// What the state watches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateConfig {
    /// Only NodeClaims matching this label selector are held (all when
    /// `None`): lets tests, or shards, keep to their own claims.
    pub claim_selector: Option<String>,
}

/// The feeds of every kind.
pub struct Feeds {
    pub pods: Feed<Pod>,
    pub nodes: Feed<Node>,
    pub claims: Feed<NodeClaim>,
    pub nodepools: Feed<NodePool>,
    pub nodeclasses: Feed<NodeClass>,
    pub daemonsets: Feed<DaemonSet>,
    pub replicasets: Feed<ReplicaSet>,
    pub namespaces: Feed<Namespace>,
    pub volume_claims: Feed<PersistentVolumeClaim>,
    pub volumes: Feed<PersistentVolume>,
    pub storage_classes: Feed<StorageClass>,
}

impl Feeds {
    /// One watch per kind against the API server.
    pub fn watch(client: &Client, config: &StateConfig) -> Feeds {
        let all = watcher::Config::default;
        let claims = match &config.claim_selector {
            Some(selector) => all().labels(selector),
            None => all(),
        };
        Feeds {
            pods: watcher(Api::all(client.clone()), all()).boxed(),
            nodes: watcher(Api::all(client.clone()), all()).boxed(),
            claims: watcher(Api::all(client.clone()), claims).boxed(),
            nodepools: watcher(Api::all(client.clone()), all()).boxed(),
            nodeclasses: watcher(Api::all(client.clone()), all()).boxed(),
            daemonsets: watcher(Api::all(client.clone()), all()).boxed(),
            replicasets: watcher(Api::all(client.clone()), all()).boxed(),
            namespaces: watcher(Api::all(client.clone()), all()).boxed(),
            volume_claims: watcher(Api::all(client.clone()), all()).boxed(),
            volumes: watcher(Api::all(client.clone()), all()).boxed(),
            storage_classes: watcher(Api::all(client.clone()), all()).boxed(),
        }
    }
}

struct Stores {
    pods: PodStore,
    nodes: Store<Node>,
    claims: Store<NodeClaim>,
    nodepools: Store<NodePool>,
    nodeclasses: Store<NodeClass>,
    daemonsets: Store<DaemonSet>,
    replicasets: Store<ReplicaSet>,
    namespaces: Store<Namespace>,
    volume_claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    storage_classes: Store<StorageClass>,
}

struct Shared {
    stores: Stores,
    /// Per kind, a counter bumped on each of its events.
    versions: Vec<watch::Sender<u64>>,
    /// Bumped on every event of any kind.
    generation: AtomicU64,
    /// The last snapshot and the generation it was built at.
    cached: Mutex<Option<(u64, Arc<Snapshot>)>>,
    /// Counts snapshot builds, once set.
    builds: OnceLock<IntCounter>,
    /// True once every kind has been listed. Waiters wait on this, not on
    /// the stores: a kube-runtime store wakes only the last task that
    /// polled it, and the controllers wait for the state together.
    synced: watch::Sender<bool>,
}

impl Stores {
    /// Resolves once every kind has been listed; one task only may wait.
    async fn listed(&self) {
        let _ = futures::join!(
            self.pods.wait_until_ready(),
            self.nodes.wait_until_ready(),
            self.claims.wait_until_ready(),
            self.nodepools.wait_until_ready(),
            self.nodeclasses.wait_until_ready(),
            self.daemonsets.wait_until_ready(),
            self.replicasets.wait_until_ready(),
            self.namespaces.wait_until_ready(),
            self.volume_claims.wait_until_ready(),
            self.volumes.wait_until_ready(),
            self.storage_classes.wait_until_ready(),
        );
    }
}

/// The shared cluster state; cheap to clone.
#[derive(Clone)]
pub struct ClusterState(Arc<Shared>);

impl ClusterState {
    /// Watches the API server, one watch per kind.
    pub fn watch(client: &Client, config: &StateConfig) -> ClusterState {
        ClusterState::start(Feeds::watch(client, config))
    }

    /// Feeds the state from `feeds` (each in a task of its own) until they end.
    pub fn start(feeds: Feeds) -> ClusterState {
        let versions: Vec<watch::Sender<u64>> =
            Kind::ALL.iter().map(|_| watch::Sender::new(0)).collect();
        let pods = PodStore::default();
        let (nodes, nodes_writer) = reflector::store();
        let (claims, claims_writer) = reflector::store();
        let (nodepools, nodepools_writer) = reflector::store();
        let (nodeclasses, nodeclasses_writer) = reflector::store();
        let (daemonsets, daemonsets_writer) = reflector::store();
        let (replicasets, replicasets_writer) = reflector::store();
        let (namespaces, namespaces_writer) = reflector::store();
        let (volume_claims, volume_claims_writer) = reflector::store();
        let (volumes, volumes_writer) = reflector::store();
        let (storage_classes, storage_classes_writer) = reflector::store();
        let state = ClusterState(Arc::new(Shared {
            stores: Stores {
                pods: pods.clone(),
                nodes,
                claims,
                nodepools,
                nodeclasses,
                daemonsets,
                replicasets,
                namespaces,
                volume_claims,
                volumes,
                storage_classes,
            },
            versions,
            generation: AtomicU64::new(0),
            cached: Mutex::new(None),
            builds: OnceLock::new(),
            synced: watch::Sender::new(false),
        }));
        state.reflect_pods(pods, feeds.pods);
        state.reflect(Kind::Nodes, nodes_writer, feeds.nodes, trim::node);
        state.reflect(Kind::NodeClaims, claims_writer, feeds.claims, trim::common);
        state.reflect(
            Kind::NodePools,
            nodepools_writer,
            feeds.nodepools,
            trim::common,
        );
        state.reflect(
            Kind::NodeClasses,
            nodeclasses_writer,
            feeds.nodeclasses,
            trim::common,
        );
        state.reflect(
            Kind::DaemonSets,
            daemonsets_writer,
            feeds.daemonsets,
            trim::daemonset,
        );
        state.reflect(
            Kind::ReplicaSets,
            replicasets_writer,
            feeds.replicasets,
            trim::replicaset,
        );
        state.reflect(
            Kind::Namespaces,
            namespaces_writer,
            feeds.namespaces,
            trim::namespace,
        );
        state.reflect(
            Kind::Volumes,
            volume_claims_writer,
            feeds.volume_claims,
            trim::common,
        );
        state.reflect(Kind::Volumes, volumes_writer, feeds.volumes, trim::common);
        state.reflect(
            Kind::Volumes,
            storage_classes_writer,
            feeds.storage_classes,
            trim::common,
        );
        let shared = state.0.clone();
        tokio::spawn(async move {
            shared.stores.listed().await;
            shared.synced.send_replace(true);
        });
        state
    }

    /// Applies `feed` to its store in a task of its own: each object is
    /// trimmed first, every event bumps the kind's version, and a failed
    /// watch is logged and retried with backoff.
    fn reflect<K>(
        &self,
        kind: Kind,
        writer: reflector::store::Writer<K>,
        feed: Feed<K>,
        trim: fn(&mut K),
    ) where
        K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
    {
        let stream =
            reflector::reflector(writer, feed.modify(trim).backoff(backoff::watch_backoff()));
        self.follow(kind, stream.boxed());
    }

    /// Applies the pods' feed to `store` the same way; the store keeps
    /// each pod in its compact form.
    fn reflect_pods(&self, store: PodStore, feed: Feed<Pod>) {
        let stream = feed.backoff(backoff::watch_backoff()).map(move |event| {
            let event = event?;
            store.apply(event);
            Ok(())
        });
        self.follow(Kind::Pods, stream.boxed());
    }

    /// Drives `stream` in a task: every event bumps `kind`'s version.
    fn follow<T: Send + 'static>(
        &self,
        kind: Kind,
        stream: BoxStream<'static, Result<T, watcher::Error>>,
    ) {
        let shared = self.0.clone();
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(_) => {
                        shared.generation.fetch_add(1, Ordering::Release);
                        shared.versions[kind.index()].send_modify(|v| *v = v.wrapping_add(1));
                    }
                    Err(err) => tracing::warn!(?kind, error = %err, "watch failed; retrying"),
                }
            }
        });
    }

    /// Resolves once every kind has been listed; any number of tasks may wait.
    pub async fn ready(&self) {
        let mut synced = self.0.synced.subscribe();
        let _ = synced.wait_for(|listed| *listed).await;
    }

    /// The cluster now: the snapshot of the last change, built at most once per change.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        let generation = self.0.generation.load(Ordering::Acquire);
        if let Ok(cached) = self.0.cached.lock() {
            if let Some((built_at, snapshot)) = cached.as_ref() {
                if *built_at == generation {
                    return snapshot.clone();
                }
            }
        }
        let snapshot = Arc::new(Snapshot::build(self.lists()));
        if let Some(builds) = self.0.builds.get() {
            builds.inc();
        }
        if let Ok(mut cached) = self.0.cached.lock() {
            let newer = cached.as_ref().is_some_and(|(at, _)| *at > generation);
            if !newer {
                *cached = Some((generation, snapshot.clone()));
            }
        }
        snapshot
    }

    /// Counts every snapshot build in `counter` from now on.
    pub fn count_builds(&self, counter: IntCounter) {
        let _ = self.0.builds.set(counter);
    }

    /// Every object the caches hold, unindexed.
    pub fn lists(&self) -> Lists {
        let s = &self.0.stores;
        Lists {
            pods: s.pods.state(),
            nodes: s.nodes.state(),
            claims: s.claims.state(),
            nodepools: s.nodepools.state(),
            nodeclasses: s.nodeclasses.state(),
            daemonsets: s.daemonsets.state(),
            replicasets: s.replicasets.state(),
            namespaces: s.namespaces.state(),
            volume_claims: s.volume_claims.state(),
            volumes: s.volumes.state(),
            storage_classes: s.storage_classes.state(),
        }
    }

    /// A waiter for changes of `kinds`.
    pub fn subscribe(&self, kinds: &[Kind]) -> Changes {
        Changes {
            receivers: kinds
                .iter()
                .map(|k| self.0.versions[k.index()].subscribe())
                .collect(),
            _state: self.clone(),
        }
    }
}

/// Waits for the next change of some kinds.
pub struct Changes {
    receivers: Vec<watch::Receiver<u64>>,
    /// Keeps the senders alive as long as anyone waits.
    _state: ClusterState,
}

impl Changes {
    /// Resolves when one of the kinds changed since the last call (at once
    /// if one did in between).
    pub async fn changed(&mut self) {
        if self.receivers.is_empty() {
            return std::future::pending().await;
        }
        let waits = self.receivers.iter_mut().map(|r| Box::pin(r.changed()));
        if futures::future::select_all(waits).await.0.is_err() {
            // Unreachable while `_state` holds the senders.
            std::future::pending::<()>().await;
        }
    }

    /// Resolves on the next change, or after `at_most` without one.
    pub async fn changed_or_after(&mut self, at_most: Duration) {
        let _ = tokio::time::timeout(at_most, self.changed()).await;
    }

    /// Paces a sweep loop: waits `at_least` (changes meanwhile are
    /// coalesced into one wake), then for the next change or until
    /// `at_most` has passed in all. Under constant churn a loop then sweeps
    /// every `at_least`, not on every event.
    pub async fn pace(&mut self, at_least: Duration, at_most: Duration) {
        tokio::time::sleep(at_least.min(at_most)).await;
        self.changed_or_after(at_most.saturating_sub(at_least))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;
    use serde_json::json;

    fn feed<K: Send + 'static>(objects: Vec<K>) -> Feed<K> {
        let mut events = vec![Ok(watcher::Event::Init)];
        events.extend(
            objects
                .into_iter()
                .map(|o| Ok(watcher::Event::InitApply(o))),
        );
        events.push(Ok(watcher::Event::InitDone));
        stream::iter(events).chain(stream::pending()).boxed()
    }

    fn node(name: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name,
            "managedFields": [{"manager": "kubelet"}]}}))
        .unwrap()
    }

    fn feeds(nodes: Vec<Node>) -> Feeds {
        Feeds {
            pods: feed(Vec::new()),
            nodes: feed(nodes),
            claims: feed(Vec::new()),
            nodepools: feed(Vec::new()),
            nodeclasses: feed(Vec::new()),
            daemonsets: feed(Vec::new()),
            replicasets: feed(Vec::new()),
            namespaces: feed(Vec::new()),
            volume_claims: feed(Vec::new()),
            volumes: feed(Vec::new()),
            storage_classes: feed(Vec::new()),
        }
    }

    #[tokio::test]
    async fn a_recorded_feed_fills_the_state_trimmed_and_wakes_subscribers() {
        let state = ClusterState::start(feeds(vec![node("a"), node("b")]));
        let mut nodes_changed = state.subscribe(&[Kind::Nodes]);
        tokio::time::timeout(std::time::Duration::from_secs(5), state.ready())
            .await
            .expect("the state syncs");
        let snapshot = state.snapshot();
        assert_eq!(snapshot.nodes.len(), 2);
        assert!(snapshot
            .node("a")
            .is_some_and(|n| n.metadata.managed_fields.is_none()));
        // The same generation gives the same snapshot, not a rebuild.
        assert!(Arc::ptr_eq(&snapshot, &state.snapshot()));
        tokio::time::timeout(std::time::Duration::from_secs(5), nodes_changed.changed())
            .await
            .expect("node events wake a node subscriber");
        let mut pods_changed = state.subscribe(&[Kind::Pods]);
        let woke = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            pods_changed.changed(),
        )
        .await;
        assert!(woke.is_err(), "no pod event: a pod subscriber sleeps");
    }

    /// Every controller waits for the state at start, together.
    #[tokio::test]
    async fn every_task_waiting_for_the_state_wakes_when_it_is_listed() {
        let (list_nodes, listed) = futures::channel::oneshot::channel::<()>();
        let mut nodes = vec![node("a")];
        let mut feeds = feeds(Vec::new());
        feeds.nodes = stream::once(listed)
            .flat_map(move |_| feed(std::mem::take(&mut nodes)))
            .boxed();
        let state = ClusterState::start(feeds);
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let state = state.clone();
                tokio::spawn(async move { state.ready().await })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(waiters.iter().all(|w| !w.is_finished()), "not listed yet");
        list_nodes.send(()).expect("the feed waits");
        for waiter in waiters {
            tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
                .await
                .expect("every waiter wakes")
                .expect("no panic");
        }
        assert_eq!(state.snapshot().nodes.len(), 1);
    }
}
