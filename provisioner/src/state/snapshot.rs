//! The cluster at one moment, indexed: what every controller reads instead
//! of asking the API server. Built from the watch caches once per change
//! ([`super::ClusterState::snapshot`]) and shared until the next one.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use spotwright_api::{keys, NodeClaim, NodeClass, NodePool};
use spotwright_solver::model::InstanceType;

use crate::model::claim::{instance_id, node_name, provider_id};
use crate::model::node::node_provider_id;
use crate::model::pod::CachedPod;
use crate::model::pod_events::{self, next_seen, workload_fingerprint, PodsSeen, PodsSeenByNode};
use crate::model::problem::{self, Objects, Problem};
use crate::model::volumes::VolumeTopology;

/// The objects of the state at one moment, as the caches hold them.
#[derive(Clone, Debug, Default)]
pub struct Lists {
    pub pods: Vec<Arc<CachedPod>>,
    pub nodes: Vec<Arc<Node>>,
    pub claims: Vec<Arc<NodeClaim>>,
    pub nodepools: Vec<Arc<NodePool>>,
    pub nodeclasses: Vec<Arc<NodeClass>>,
    pub daemonsets: Vec<Arc<DaemonSet>>,
    pub replicasets: Vec<Arc<ReplicaSet>>,
    pub namespaces: Vec<Arc<Namespace>>,
    pub volume_claims: Vec<Arc<PersistentVolumeClaim>>,
    pub volumes: Vec<Arc<PersistentVolume>>,
    pub storage_classes: Vec<Arc<StorageClass>>,
}

/// The cluster at one moment, with the indexes the controllers look up by.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub pods: Vec<Arc<CachedPod>>,
    pub nodes: Vec<Arc<Node>>,
    pub claims: Vec<Arc<NodeClaim>>,
    pub nodepools: Vec<Arc<NodePool>>,
    pub nodeclasses: Vec<Arc<NodeClass>>,
    pub daemonsets: Vec<Arc<DaemonSet>>,
    pub replicasets: Vec<Arc<ReplicaSet>>,
    pub volume_claims: Vec<Arc<PersistentVolumeClaim>>,
    pub volumes: Vec<Arc<PersistentVolume>>,
    pub storage_classes: Vec<Arc<StorageClass>>,
    /// Namespaces annotated `spotwright.io/capacity`.
    pub opted_in: BTreeSet<String>,
    claim_by_name: HashMap<String, usize>,
    claim_by_instance: HashMap<String, usize>,
    node_by_name: HashMap<String, usize>,
    node_by_provider: HashMap<String, usize>,
    pods_by_node: HashMap<String, Vec<usize>>,
    pool_by_name: HashMap<String, usize>,
    class_by_name: HashMap<String, usize>,
}

fn position_by<K>(objects: &[Arc<K>], key: impl Fn(&K) -> Option<&str>) -> HashMap<String, usize> {
    objects
        .iter()
        .enumerate()
        .filter_map(|(i, o)| Some((key(o)?.to_owned(), i)))
        .collect()
}

impl Snapshot {
    /// Indexes `lists`. Pure: a test or a benchmark builds one from plain objects.
    pub fn build(lists: Lists) -> Snapshot {
        let mut pods_by_node: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, pod) in lists.pods.iter().enumerate() {
            if let Some(node) = pod.node_name.as_deref() {
                match pods_by_node.get_mut(node) {
                    Some(on_node) => on_node.push(i),
                    None => {
                        pods_by_node.insert(node.to_owned(), vec![i]);
                    }
                }
            }
        }
        let opted_in = lists
            .namespaces
            .iter()
            .filter(|ns| {
                ns.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(keys::CAPACITY_ANNOTATION))
            })
            .filter_map(|ns| ns.metadata.name.clone())
            .collect();
        Snapshot {
            claim_by_name: position_by(&lists.claims, |c| c.metadata.name.as_deref()),
            claim_by_instance: position_by(&lists.claims, |c| provider_id(c).and_then(instance_id)),
            node_by_name: position_by(&lists.nodes, |n| n.metadata.name.as_deref()),
            node_by_provider: position_by(&lists.nodes, node_provider_id),
            pool_by_name: position_by(&lists.nodepools, |p| p.metadata.name.as_deref()),
            class_by_name: position_by(&lists.nodeclasses, |c| c.metadata.name.as_deref()),
            pods_by_node,
            opted_in,
            pods: lists.pods,
            nodes: lists.nodes,
            claims: lists.claims,
            nodepools: lists.nodepools,
            nodeclasses: lists.nodeclasses,
            daemonsets: lists.daemonsets,
            replicasets: lists.replicasets,
            volume_claims: lists.volume_claims,
            volumes: lists.volumes,
            storage_classes: lists.storage_classes,
        }
    }

    pub fn claim(&self, name: &str) -> Option<&Arc<NodeClaim>> {
        self.claim_by_name.get(name).map(|&i| &self.claims[i])
    }

    /// The claim whose providerID names EC2 instance `id`.
    pub fn claim_of_instance(&self, id: &str) -> Option<&Arc<NodeClaim>> {
        self.claim_by_instance.get(id).map(|&i| &self.claims[i])
    }

    pub fn node(&self, name: &str) -> Option<&Arc<Node>> {
        self.node_by_name.get(name).map(|&i| &self.nodes[i])
    }

    /// The Node carrying `provider` as its providerID.
    pub fn node_with_provider_id(&self, provider: &str) -> Option<&Arc<Node>> {
        self.node_by_provider.get(provider).map(|&i| &self.nodes[i])
    }

    /// The claim's Node by the name registration recorded.
    pub fn node_named_by(&self, claim: &NodeClaim) -> Option<&Arc<Node>> {
        self.node(node_name(claim)?)
    }

    /// The claim's Node: by its recorded name, else by providerID (a claim
    /// deleted before registration recorded the name).
    pub fn node_of(&self, claim: &NodeClaim) -> Option<&Arc<Node>> {
        self.node_named_by(claim)
            .or_else(|| self.node_with_provider_id(provider_id(claim)?))
    }

    /// The pods bound to Node `node`.
    pub fn pods_on(&self, node: &str) -> Vec<&CachedPod> {
        self.pods_by_node
            .get(node)
            .map(|on_node| on_node.iter().map(|&i| self.pods[i].as_ref()).collect())
            .unwrap_or_default()
    }

    /// Each Node's workload pods, and since when they are what they are,
    /// after `previous`, the last look; at a Node's first look, since the
    /// time its claim recorded ([`next_seen`]).
    pub fn pods_seen(&self, previous: &PodsSeenByNode, now: Timestamp) -> PodsSeenByNode {
        let recorded: HashMap<&str, PodsSeen> = self
            .claims
            .iter()
            .filter_map(|c| Some((node_name(c)?, pod_events::recorded(c)?)))
            .collect();
        let look = |node: &Arc<Node>| {
            let name = node.name_any();
            let print = workload_fingerprint(&self.pods_on(&name));
            let last = previous.get(&name).copied();
            let seen = next_seen(last, recorded.get(name.as_str()).copied(), print, now);
            (name, seen)
        };
        self.nodes.iter().map(look).collect()
    }

    pub fn pool(&self, name: &str) -> Option<&Arc<NodePool>> {
        self.pool_by_name.get(name).map(|&i| &self.nodepools[i])
    }

    pub fn class(&self, name: &str) -> Option<&Arc<NodeClass>> {
        self.class_by_name.get(name).map(|&i| &self.nodeclasses[i])
    }

    /// The NodeClass a NodePool's template names.
    pub fn class_of(&self, pool: &NodePool) -> Option<&Arc<NodeClass>> {
        self.class(&pool.spec.template.spec.node_class_ref.name)
    }

    /// The solver's input for this moment.
    pub fn problem(&self, scheduler_name: &str, instance_types: &[InstanceType]) -> Problem {
        let (pods, nodes, claims) = (refs(&self.pods), refs(&self.nodes), refs(&self.claims));
        let (nodepools, nodeclasses) = (refs(&self.nodepools), refs(&self.nodeclasses));
        let daemonsets = refs(&self.daemonsets);
        let (volume_claims, volumes) = (refs(&self.volume_claims), refs(&self.volumes));
        let storage_classes = refs(&self.storage_classes);
        let volumes = VolumeTopology::new(&volume_claims, &volumes, &storage_classes);
        problem::build(
            &Objects {
                pods: &pods,
                nodes: &nodes,
                claims: &claims,
                nodepools: &nodepools,
                nodeclasses: &nodeclasses,
                daemonsets: &daemonsets,
                opted_in: &self.opted_in,
                scheduler_name,
                volumes: &volumes,
            },
            instance_types,
        )
    }
}

/// Borrows of cached objects, as the pure functions take them.
pub fn refs<K>(objects: &[Arc<K>]) -> Vec<&K> {
    objects.iter().map(AsRef::as_ref).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::pod_events::{fingerprint, fingerprint_text};
    use serde_json::json;

    fn object<K: serde::de::DeserializeOwned>(value: serde_json::Value) -> Arc<K> {
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn pod(value: serde_json::Value) -> Arc<CachedPod> {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(value).unwrap();
        Arc::new(CachedPod::from(&pod))
    }

    #[test]
    fn indexes_find_claims_nodes_and_pods() {
        let lists = Lists {
            claims: vec![object(json!({
                "apiVersion": "spotwright.io/v1alpha1", "kind": "NodeClaim",
                "metadata": {"name": "c1"},
                "spec": {"nodeClassRef": {"name": "default"}},
                "status": {"providerID": "aws:///us-east-1a/i-0abc", "nodeName": "n1"}}))],
            nodes: vec![
                object(
                    json!({"metadata": {"name": "n1"}, "spec": {"providerID": "aws:///us-east-1a/i-0abc"}}),
                ),
                object(
                    json!({"metadata": {"name": "n2"}, "spec": {"providerID": "aws:///us-east-1b/i-0def"}}),
                ),
            ],
            pods: vec![
                pod(
                    json!({"metadata": {"name": "p1", "namespace": "a"}, "spec": {"nodeName": "n1", "containers": []}}),
                ),
                pod(
                    json!({"metadata": {"name": "p2", "namespace": "a"}, "spec": {"nodeName": "n2", "containers": []}}),
                ),
                pod(
                    json!({"metadata": {"name": "p3", "namespace": "a"}, "spec": {"nodeName": "n1", "containers": []}}),
                ),
                pod(
                    json!({"metadata": {"name": "p4", "namespace": "a"}, "spec": {"containers": []}}),
                ),
            ],
            namespaces: vec![
                object(
                    json!({"metadata": {"name": "a", "annotations": {keys::CAPACITY_ANNOTATION: "spot"}}}),
                ),
                object(json!({"metadata": {"name": "b"}})),
            ],
            ..Lists::default()
        };
        let snapshot = Snapshot::build(lists);
        let claim = snapshot.claim("c1").cloned().unwrap();
        assert!(snapshot.claim("c2").is_none());
        assert_eq!(
            snapshot
                .claim_of_instance("i-0abc")
                .map(|c| c.metadata.name.clone()),
            Some(Some("c1".to_owned()))
        );
        let node = snapshot.node_of(&claim).unwrap();
        assert_eq!(node.metadata.name.as_deref(), Some("n1"));
        let on_n1: Vec<_> = snapshot
            .pods_on("n1")
            .iter()
            .map(|p| p.name.clone())
            .collect();
        assert_eq!(on_n1, ["p1", "p3"]);
        assert!(snapshot.pods_on("n3").is_empty());
        assert_eq!(
            snapshot
                .node_with_provider_id("aws:///us-east-1b/i-0def")
                .and_then(|n| n.metadata.name.clone()),
            Some("n2".to_owned())
        );
        assert_eq!(snapshot.opted_in, BTreeSet::from(["a".to_owned()]));
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + second).unwrap()
    }

    /// n1's claim recorded at 0 that n1 held `recorded_on_n1`; n2 has no
    /// claim.
    fn nodes_with_pods(pods_on_n1: &[&str], recorded_on_n1: &[&str]) -> Snapshot {
        let on_n1 = pods_on_n1.iter().map(|name| {
            pod(
                json!({"metadata": {"name": name, "namespace": "a", "uid": name},
                       "spec": {"nodeName": "n1", "containers": []}}),
            )
        });
        let recorded_pods = fingerprint_text(fingerprint(recorded_on_n1.iter().copied()));
        Snapshot::build(Lists {
            claims: vec![object(json!({
                "apiVersion": "spotwright.io/v1alpha1", "kind": "NodeClaim",
                "metadata": {"name": "c1"},
                "spec": {"nodeClassRef": {"name": "default"}},
                "status": {"nodeName": "n1", "lastPodEventTime": at(0).to_string(),
                           "lastPodEventPods": recorded_pods}}))],
            nodes: vec![
                object(json!({"metadata": {"name": "n1"}})),
                object(json!({"metadata": {"name": "n2"}})),
            ],
            pods: on_n1.collect(),
            ..Lists::default()
        })
    }

    #[test]
    fn a_first_look_resumes_the_claim_s_recorded_pod_event_and_a_change_moves_it() {
        let held = ["p1", "p2"];
        let first = nodes_with_pods(&held, &held).pods_seen(&PodsSeenByNode::new(), at(100));
        assert_eq!(first["n1"].since, at(0), "resumed from the claim");
        assert_eq!(first["n2"].since, at(100), "no claim: from now");
        let same = nodes_with_pods(&["p2", "p1"], &held).pods_seen(&first, at(110));
        assert_eq!(same, first);
        let one_left = nodes_with_pods(&["p1"], &held).pods_seen(&first, at(120));
        assert_eq!(one_left["n1"].since, at(120));
        assert_eq!(one_left["n2"].since, at(100));
    }

    #[test]
    fn a_first_look_at_other_pods_than_recorded_starts_from_now() {
        let left_unseen = nodes_with_pods(&["p1"], &["p1", "p2"]);
        let first = left_unseen.pods_seen(&PodsSeenByNode::new(), at(100));
        assert_eq!(first["n1"].since, at(100));
    }
}
