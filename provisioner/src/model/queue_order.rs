//! The solver decides how many pods of a kind each new node takes; which of
//! those interchangeable pods goes to which node is still free. kube-scheduler
//! places pods one at a time, oldest first, and judges a zone spread by the
//! pods placed so far: a pod whose node lies in a zone already ahead is
//! turned away there, and takes room planned for another pod elsewhere. So
//! interchangeable pods are dealt to the plan's nodes in creation order,
//! the zones taking turns, and every prefix of the scheduler's order stays
//! as even as the whole.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::jiff::Timestamp;
use spotwright_solver::model::PendingPod;
use spotwright_solver::NewNode;

/// Where one pod of a group sits in the plan: node index, slot in its list.
type Slot = (usize, usize);

/// Re-deals the pods on `new_nodes` so that, among pods that differ only in
/// name, the older a pod the earlier its node's zone comes in a round that
/// visits each zone in turn. Each node keeps as many pods of each kind as
/// the solver gave it, so its size and requests stay right. `created` gives
/// a pod's creation time (`None` sorts last, then by key).
pub fn deal_in_queue_order(
    new_nodes: &mut [NewNode],
    pods: &[PendingPod],
    created: impl Fn(&str) -> Option<Timestamp>,
) {
    for (slots, mut keys) in groups(new_nodes, pods) {
        if keys.len() < 2 {
            continue;
        }
        keys.sort_by_cached_key(|key| (created(key).is_none(), created(key), key.clone()));
        let zones: Vec<String> = slots
            .iter()
            .map(|&(node, _)| new_nodes[node].zones.join(","))
            .collect();
        for (slot, key) in zone_turns(&slots, &zones).into_iter().zip(keys) {
            new_nodes[slot.0].pods[slot.1] = key;
        }
    }
}

/// The plan's pods by kind: each kind's slots and keys (in plan order).
fn groups(new_nodes: &[NewNode], pods: &[PendingPod]) -> Vec<(Vec<Slot>, Vec<String>)> {
    let by_key: HashMap<&str, &PendingPod> = pods.iter().map(|p| (p.key.as_str(), p)).collect();
    let mut kinds: Vec<(&PendingPod, Vec<Slot>, Vec<String>)> = Vec::new();
    let mut by_labels: HashMap<(&str, &BTreeMap<String, String>), Vec<usize>> = HashMap::new();
    for (node_index, node) in new_nodes.iter().enumerate() {
        for (slot_index, key) in node.pods.iter().enumerate() {
            let Some(pod) = by_key.get(key.as_str()).copied() else {
                continue;
            };
            let candidates = by_labels
                .entry((pod.namespace.as_str(), &pod.labels))
                .or_default();
            let kind = candidates
                .iter()
                .copied()
                .find(|&k| interchangeable(kinds[k].0, pod));
            let kind = kind.unwrap_or_else(|| {
                kinds.push((pod, Vec::new(), Vec::new()));
                candidates.push(kinds.len() - 1);
                kinds.len() - 1
            });
            kinds[kind].1.push((node_index, slot_index));
            kinds[kind].2.push(key.clone());
        }
    }
    kinds
        .into_iter()
        .map(|(_, slots, keys)| (slots, keys))
        .collect()
}

/// Two pods the solver cannot tell apart but by their names.
fn interchangeable(a: &PendingPod, b: &PendingPod) -> bool {
    PendingPod {
        key: String::new(),
        ..a.clone()
    } == PendingPod {
        key: String::new(),
        ..b.clone()
    }
}

/// `slots` reordered so that zones take turns: each round visits every zone
/// with slots left, the zones with the most slots first.
fn zone_turns(slots: &[Slot], zones: &[String]) -> Vec<Slot> {
    let mut by_zone: BTreeMap<&str, Vec<Slot>> = BTreeMap::new();
    for (slot, zone) in slots.iter().zip(zones) {
        by_zone.entry(zone.as_str()).or_default().push(*slot);
    }
    let mut queues: Vec<Vec<Slot>> = by_zone.into_values().collect();
    queues.sort_by_key(|q| std::cmp::Reverse(q.len()));
    let mut turns = Vec::with_capacity(slots.len());
    for round in 0..queues.first().map_or(0, Vec::len) {
        turns.extend(queues.iter().filter_map(|q| q.get(round)));
    }
    turns
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use spotwright_solver::model::Resources;

    fn pod(key: &str, app: &str) -> PendingPod {
        PendingPod {
            key: key.to_owned(),
            namespace: "ns".to_owned(),
            labels: [("app".to_owned(), app.to_owned())].into(),
            ..PendingPod::default()
        }
    }

    fn node(zone: &str, pods: &[&str]) -> NewNode {
        NewNode {
            nodepool: "p".to_owned(),
            pods: pods.iter().map(|p| (*p).to_owned()).collect(),
            requests: Resources::default(),
            instance_types: Vec::new(),
            zones: vec![zone.to_owned()],
            capacity_types: Vec::new(),
            requirements: Vec::new(),
            price: 0.0,
            min_values_relaxed: Vec::new(),
        }
    }

    /// Pod `pN` was created at second N.
    fn created(key: &str) -> Option<Timestamp> {
        let n: i64 = key.trim_start_matches('p').parse().ok()?;
        Timestamp::from_second(1_800_000_000 + n).ok()
    }

    fn zone_of<'a>(nodes: &'a [NewNode], key: &str) -> &'a str {
        let node = nodes.iter().find(|n| n.pods.iter().any(|p| p == key));
        node.map_or("", |n| n.zones[0].as_str())
    }

    #[test]
    fn the_oldest_pods_take_turns_over_the_zones() {
        // The solver filled zone a first: in the scheduler's order the
        // second pod would find zone a one ahead.
        let mut nodes = vec![
            node("a", &["p1", "p2"]),
            node("b", &["p3", "p4"]),
            node("c", &["p5", "p6"]),
        ];
        let pods: Vec<PendingPod> = (1..=6).map(|i| pod(&format!("p{i}"), "web")).collect();
        deal_in_queue_order(&mut nodes, &pods, created);
        let order: Vec<&str> = (1..=6).map(|i| zone_of(&nodes, &format!("p{i}"))).collect();
        assert_eq!(order, ["a", "b", "c", "a", "b", "c"]);
    }

    #[test]
    fn pods_of_different_kinds_keep_their_nodes() {
        let mut nodes = vec![node("a", &["p1", "p2"]), node("b", &["p3", "p4"])];
        let pods = vec![
            pod("p1", "web"),
            pod("p2", "web"),
            pod("p3", "db"),
            pod("p4", "db"),
        ];
        deal_in_queue_order(&mut nodes, &pods, created);
        assert_eq!(nodes[0].pods, ["p1", "p2"]);
        assert_eq!(nodes[1].pods, ["p3", "p4"]);
    }

    proptest! {
        /// Every node keeps its number of pods of each kind; every pod is
        /// still placed once; and in creation order, a kind's zone counts
        /// are never further apart than one more than in the whole plan.
        #[test]
        fn dealing_keeps_the_plan_and_evens_every_prefix(
            layout in prop::collection::vec((0usize..3, prop::collection::vec(0usize..2, 1..6)), 1..8),
        ) {
            let mut nodes = Vec::new();
            let mut pods = Vec::new();
            let mut next = 0;
            for (zone, kinds) in &layout {
                let mut keys = Vec::new();
                for kind in kinds {
                    next += 1;
                    let key = format!("p{}", (next * 7919) % 1000);
                    pods.push(pod(&key, ["web", "db"][*kind]));
                    keys.push(key);
                }
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                nodes.push(node(["a", "b", "c"][*zone], &keys));
            }
            let kind_of = |key: &str| pods.iter().find(|p| p.key == key).map(|p| p.labels["app"].clone());
            let count = |nodes: &[NewNode]| -> Vec<BTreeMap<String, usize>> {
                nodes.iter().map(|n| n.pods.iter().fold(BTreeMap::new(), |mut m, p| {
                    *m.entry(kind_of(p).unwrap_or_default()).or_insert(0) += 1;
                    m
                })).collect()
            };
            let before = count(&nodes);
            deal_in_queue_order(&mut nodes, &pods, created);
            prop_assert_eq!(count(&nodes), before);
            let mut placed: Vec<&String> = nodes.iter().flat_map(|n| &n.pods).collect();
            placed.sort();
            placed.dedup();
            prop_assert_eq!(placed.len(), pods.len());
            for app in ["web", "db"] {
                let mut keys: Vec<&str> = pods.iter().filter(|p| p.labels["app"] == app).map(|p| p.key.as_str()).collect();
                keys.sort_by_key(|k| created(k));
                let spread = |counts: &BTreeMap<&str, i64>| {
                    let used: Vec<i64> = counts.values().copied().collect();
                    used.iter().max().unwrap_or(&0) - used.iter().min().unwrap_or(&0)
                };
                let mut totals: BTreeMap<&str, i64> = BTreeMap::new();
                for key in &keys {
                    *totals.entry(zone_of(&nodes, key)).or_insert(0) += 1;
                }
                let mut prefix: BTreeMap<&str, i64> = totals.keys().map(|z| (*z, 0)).collect();
                for key in &keys {
                    *prefix.entry(zone_of(&nodes, key)).or_insert(0) += 1;
                    prop_assert!(spread(&prefix) <= spread(&totals).max(1), "{prefix:?} of {totals:?}");
                }
            }
        }
    }
}
