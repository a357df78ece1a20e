//! One consistent view of the cluster for a solve: the watch caches' objects
//! turned into the solver's input. Pure, so a test builds the problem a real
//! cluster would pose from plain objects.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Node;
use spotwright_api::{conditions, keys};
use spotwright_api::{NodeClaim, NodeClass, NodePool};
use spotwright_solver::model::{
    DaemonSetFacts, ExistingNode, InstanceType, NodePoolFacts, Operator, PendingPod, PlacedPod,
    Requirement, Resources,
};

use super::claim::is_condition_true;
use super::disruption::is_disrupting;
use super::facts::{self, FactsError};
use super::pod::CachedPod;
use super::volumes::{and_terms, VolumeTopology};

/// What the cluster holds, as the caches saw it.
pub struct Objects<'a> {
    pub pods: &'a [&'a CachedPod],
    pub nodes: &'a [&'a Node],
    pub claims: &'a [&'a NodeClaim],
    pub nodepools: &'a [&'a NodePool],
    pub nodeclasses: &'a [&'a NodeClass],
    pub daemonsets: &'a [&'a DaemonSet],
    /// Namespaces annotated `spotwright.io/capacity`.
    pub opted_in: &'a BTreeSet<String>,
    pub scheduler_name: &'a str,
    /// Where the pods' volumes let them run.
    pub volumes: &'a VolumeTopology<'a>,
}

/// The solver's input, owned.
#[derive(Clone, Debug, Default)]
pub struct Problem {
    pub pods: Vec<PendingPod>,
    pub nodes: Vec<ExistingNode>,
    pub nodepools: Vec<NodePoolFacts>,
    pub daemonsets: Vec<DaemonSetFacts>,
    /// Objects that could not be read, with why; reported as Events.
    pub unreadable: Vec<(String, FactsError)>,
    /// NodePools left out, with why (their NodeClass is missing or unresolved).
    pub skipped_pools: Vec<(String, String)>,
    /// Per NodePool: its nodes and in-flight claims, and their capacity.
    pub usage: HashMap<String, PoolUsage>,
}

/// A NodePool's nodes and in-flight NodeClaims: how many, and their
/// summed capacity (what `spec.limits` and `status.resources` count).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolUsage {
    pub nodes: u64,
    pub capacity: Resources,
}

impl PoolUsage {
    fn count(&mut self, capacity: &Resources) {
        self.nodes += 1;
        facts::add_resources(&mut self.capacity, capacity);
    }
}

/// The solver's input for the objects: pending pods, nodes (registered and
/// in flight), NodePools with their usage, DaemonSets.
pub fn build(objects: &Objects, instance_types: &[InstanceType]) -> Problem {
    let mut problem = Problem::default();
    let pods_by_node = sort_pods(objects, &mut problem);
    for ds in objects.daemonsets {
        match facts::daemonset_facts(ds) {
            Ok(f) => problem.daemonsets.push(f),
            Err(err) => problem.unreadable.push((object_name(&ds.metadata), err)),
        }
    }
    let mut used = HashMap::new();
    add_nodes(
        objects,
        instance_types,
        &pods_by_node,
        &mut problem,
        &mut used,
    );
    add_in_flight(objects, instance_types, &mut problem, &mut used);
    for pool in objects.nodepools {
        add_nodepool(objects, pool, &used, &mut problem);
    }
    problem.usage = used;
    problem
}

/// Pods bound to a node, by node; Spotwright's pending pods go into the problem.
fn sort_pods<'a>(
    objects: &Objects<'a>,
    problem: &mut Problem,
) -> HashMap<&'a str, Vec<&'a CachedPod>> {
    let mut pods_by_node: HashMap<&str, Vec<&CachedPod>> = HashMap::new();
    for pod in objects.pods {
        if pod.terminal {
            continue;
        }
        if let Some(node) = pod.node_name.as_deref() {
            pods_by_node.entry(node).or_default().push(pod);
        } else if pod.is_provisionable(objects.scheduler_name, objects.opted_in) {
            match pending_with_volumes(pod, objects.volumes) {
                Ok(pending) => problem.pods.push(pending),
                Err(err) => problem.unreadable.push((pod.key(), err)),
            }
        }
    }
    pods_by_node
}

/// The pod as the solver places it, held to where its volumes are.
fn pending_with_volumes(
    pod: &CachedPod,
    volumes: &VolumeTopology,
) -> Result<PendingPod, FactsError> {
    let mut pending = pod.pending()?;
    let claims = pod.volume_claims();
    if !claims.is_empty() {
        let terms = volumes.terms(pod.namespace(), &claims).map_err(|reason| {
            FactsError::unreadable(&format!("pod {}", pod.key()), "spec.volumes", reason)
        })?;
        pending.required_affinity = and_terms(&pending.required_affinity, &terms);
    }
    Ok(pending)
}

/// Registered nodes, with what runs on them; a node that is leaving takes
/// no new pods. Counts each NodePool's nodes and capacity.
fn add_nodes(
    objects: &Objects,
    instance_types: &[InstanceType],
    pods_by_node: &HashMap<&str, Vec<&CachedPod>>,
    problem: &mut Problem,
    used: &mut HashMap<String, PoolUsage>,
) {
    let initializing = initializing_claims(objects, instance_types);
    // The extender keeps new pods off these, so the solve must not count on them.
    let leaving: BTreeSet<&str> = objects
        .claims
        .iter()
        .filter(|c| is_condition_true(c, conditions::DRIFTED) || is_disrupting(c))
        .filter_map(|c| c.status.as_ref()?.node_name.as_deref())
        .collect();
    for node in objects.nodes {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let on_node = pods_by_node
            .get(name)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut requested = Resources::default();
        for pod in on_node {
            // An unreadable pod was reported when it was pending; bound, it
            // counts for nothing rather than a guess.
            if let Ok(r) = &pod.shape.requests {
                facts::add_resources(&mut requested, r);
            }
        }
        let placed = on_node.iter().map(|p| p.placed()).collect();
        let (mut existing, capacity) = match initializing.get(name) {
            Some((claim, instance_type)) => (
                initializing_node(node, claim, instance_type, requested, placed),
                instance_type.capacity.clone(),
            ),
            None => (
                facts::existing_node(node, requested, placed),
                facts::node_capacity(node),
            ),
        };
        existing.unavailable |= leaving.contains(name);
        if let Some(pool) = existing.labels.get(keys::NODEPOOL_LABEL) {
            used.entry(pool.clone()).or_default().count(&capacity);
        }
        problem.nodes.push(existing);
    }
}

/// Claims whose Node registered but has not initialized (not Ready yet,
/// its startup taints on, allocatable not yet reported), by node name, with
/// their instance type.
fn initializing_claims<'a>(
    objects: &Objects<'a>,
    instance_types: &'a [InstanceType],
) -> HashMap<&'a str, (&'a NodeClaim, &'a InstanceType)> {
    objects
        .claims
        .iter()
        .filter(|c| !is_condition_true(c, conditions::INITIALIZED))
        .filter_map(|c| {
            let status = c.status.as_ref()?;
            let node = status.node_name.as_deref()?;
            let type_name = status.instance_type.as_deref()?;
            let instance_type = instance_types.iter().find(|t| t.name == type_name)?;
            Some((node, (*c, instance_type)))
        })
        .collect()
}

/// An initializing node as it will be once it is Ready: its claim's type,
/// labels and taints, not the Node's `not-ready` taint, startup taints or
/// missing allocatable, which would make every pending pod look as if it
/// had nowhere to go and launch a second node for it.
fn initializing_node(
    node: &Node,
    claim: &NodeClaim,
    instance_type: &InstanceType,
    requested: Resources,
    placed: Vec<PlacedPod>,
) -> ExistingNode {
    let mut existing = facts::in_flight_node(claim, instance_type, &requested);
    let mut labels = facts::labels_of(node);
    labels.append(&mut existing.labels);
    existing.labels = labels;
    existing.name = node.metadata.name.clone().unwrap_or_default();
    existing.pods = placed;
    existing.in_flight = false;
    existing.unavailable |= node.metadata.deletion_timestamp.is_some();
    existing
}

/// Claims launched whose Node has not registered: pods may be waiting for
/// them, so they count as nodes (and against their pool's limits).
fn add_in_flight(
    objects: &Objects,
    instance_types: &[InstanceType],
    problem: &mut Problem,
    used: &mut HashMap<String, PoolUsage>,
) {
    let by_name: HashMap<&str, &InstanceType> = instance_types
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let registered: BTreeSet<&str> = objects
        .nodes
        .iter()
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    for claim in objects.claims {
        let status = claim.status.as_ref();
        let node_registered = status
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| registered.contains(n));
        if node_registered {
            continue;
        }
        let Some(instance_type) = status
            .and_then(|s| s.instance_type.as_deref())
            .and_then(|t| by_name.get(t))
        else {
            // Not launched yet: the launcher owns it until it has a type.
            continue;
        };
        if let Some(pool) = claim
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(keys::NODEPOOL_LABEL))
        {
            used.entry(pool.clone())
                .or_default()
                .count(&instance_type.capacity);
        }
        problem.nodes.push(facts::in_flight_node(
            claim,
            instance_type,
            &Resources::default(),
        ));
    }
}

/// Pods held out of a pass because the node launched for them is not judged
/// yet take that node's room and count where they will run. A later pass of
/// the same burst would otherwise fill a node in flight as if it were empty:
/// the scheduler then crowds pods off it, and each of those waits for a
/// launch of its own, on smaller, later nodes.
pub fn reserve_awaited(problem: &mut Problem, awaiting: &[(&CachedPod, &NodeClaim)]) {
    if awaiting.is_empty() {
        return;
    }
    let by_name: HashMap<String, usize> = problem
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| (node.name.clone(), i))
        .collect();
    for (pod, claim) in awaiting {
        let Ok(requests) = &pod.shape.requests else {
            continue;
        };
        let registered = claim
            .status
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .and_then(|name| by_name.get(name));
        let in_flight = claim
            .metadata
            .name
            .as_deref()
            .and_then(|name| by_name.get(name));
        let Some(&index) = registered.or(in_flight) else {
            continue;
        };
        let node = &mut problem.nodes[index];
        facts::add_resources(&mut node.requested, requests);
        node.pods.push(pod.placed());
    }
}

/// A NodePool that can launch, limited to its NodeClass's zones; or why it
/// is left out.
fn add_nodepool(
    objects: &Objects,
    pool: &NodePool,
    used: &HashMap<String, PoolUsage>,
    problem: &mut Problem,
) {
    let name = pool.metadata.name.clone().unwrap_or_default();
    if pool.metadata.deletion_timestamp.is_some() {
        problem.skipped_pools.push((name, "being deleted".into()));
        return;
    }
    let class_name = &pool.spec.template.spec.node_class_ref.name;
    let Some(class) = objects
        .nodeclasses
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(class_name))
    else {
        problem
            .skipped_pools
            .push((name, format!("NodeClass {class_name} not found")));
        return;
    };
    let zones: BTreeSet<String> = class
        .status
        .as_ref()
        .map(|s| s.subnets.iter().map(|s| s.zone.clone()).collect())
        .unwrap_or_default();
    if zones.is_empty() {
        problem.skipped_pools.push((
            name,
            format!("NodeClass {class_name} has no resolved subnets yet"),
        ));
        return;
    }
    let usage = used.get(&name).cloned().unwrap_or_default();
    match facts::nodepool_facts(pool, usage.nodes, &usage.capacity) {
        Ok(mut facts) => {
            // Launches can only go where the NodeClass has subnets.
            facts.requirements.push(Requirement {
                key: keys::ZONE_LABEL.to_owned(),
                operator: Operator::In,
                values: zones.into_iter().collect(),
                min_values: None,
            });
            problem.nodepools.push(facts);
        }
        Err(err) => problem.unreadable.push((name, err)),
    }
}

fn object_name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    match &meta.namespace {
        Some(ns) => format!("{ns}/{}", meta.name.as_deref().unwrap_or_default()),
        None => meta.name.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    fn m5_large() -> InstanceType {
        let two_cpus = Resources {
            cpu_millis: 1930,
            memory_bytes: 7 << 30,
            pods: 29,
            ..Resources::default()
        };
        InstanceType {
            name: "m5.large".into(),
            labels: [
                (keys::INSTANCE_TYPE_LABEL.to_owned(), "m5.large".to_owned()),
                (keys::INSTANCE_CPU_LABEL.to_owned(), "2".to_owned()),
            ]
            .into(),
            capacity: two_cpus.clone(),
            allocatable: two_cpus,
            offerings: Vec::new(),
        }
    }

    /// A Node just registered: NotReady, tainted so, nothing allocatable yet.
    fn fresh_node() -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}},
            "spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "False"}]}
        }))
        .unwrap()
    }

    fn claim(initialized: bool) -> NodeClaim {
        let status = if initialized { "True" } else { "False" };
        serde_json::from_value(json!({
            "apiVersion": "spotwright.io/v1alpha1", "kind": "NodeClaim",
            "metadata": {"name": "pool-abcde", "labels": {keys::NODEPOOL_LABEL: "pool"}},
            "spec": {"nodeClassRef": {"name": "default"}},
            "status": {"nodeName": "n1", "instanceType": "m5.large", "zone": "us-east-1a",
                "capacityType": "spot",
                "conditions": [{"type": conditions::INITIALIZED, "status": status,
                    "reason": "Test", "message": "", "lastTransitionTime": "2026-12-02T00:00:00Z"}]}
        }))
        .unwrap()
    }

    /// A pending pod of Spotwright's scheduler that requests one CPU.
    fn pending_pod(name: &str) -> CachedPod {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "team"},
            "spec": {"schedulerName": "spotwright", "containers": [
                {"name": "c", "resources": {"requests": {"cpu": "1"}}}]},
            "status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}
        }))
        .unwrap();
        CachedPod::from(&pod)
    }

    fn problem_with(claim: &NodeClaim) -> Problem {
        problem_of(&[&pending_pod("p")], &[&fresh_node()], claim)
    }

    fn problem_of(pods: &[&CachedPod], nodes: &[&Node], claim: &NodeClaim) -> Problem {
        build(
            &Objects {
                pods,
                nodes,
                claims: &[claim],
                nodepools: &[],
                nodeclasses: &[],
                daemonsets: &[],
                opted_in: &BTreeSet::new(),
                scheduler_name: "spotwright",
                volumes: &VolumeTopology::default(),
            },
            &[m5_large()],
        )
    }

    #[test]
    fn a_node_still_initializing_counts_as_its_claim_will_be() {
        let problem = problem_with(&claim(false));
        assert_eq!(problem.pods.len(), 1);
        let node = &problem.nodes[0];
        assert_eq!(node.name, "n1");
        assert_eq!(node.allocatable.cpu_millis, 1930);
        assert!(node.taints.is_empty(), "{:?}", node.taints);
        assert_eq!(
            node.labels.get(keys::ZONE_LABEL).map(String::as_str),
            Some("us-east-1a")
        );
        assert_eq!(
            node.labels.get(keys::HOSTNAME_LABEL).map(String::as_str),
            Some("n1")
        );
        assert_eq!(problem.usage["pool"].capacity.cpu_millis, 1930);
    }

    fn solve_problem(problem: &Problem) -> spotwright_solver::Plan {
        spotwright_solver::solve(&spotwright_solver::Input {
            pods: &problem.pods,
            nodes: &problem.nodes,
            nodepools: &problem.nodepools,
            daemonsets: &problem.daemonsets,
            instance_types: &[m5_large()],
        })
    }

    /// The solve of `new` beside `awaiting`, which waits for `claim`'s node
    /// (two CPUs: room for one of them).
    fn solve_beside(awaiting: &CachedPod, new: &CachedPod, nodes: &[&Node], claim: &NodeClaim) {
        let mut problem = problem_of(&[new], nodes, claim);
        reserve_awaited(&mut problem, &[(awaiting, claim)]);
        let node = &problem.nodes[0];
        assert_eq!(node.requested.cpu_millis, 1000, "{node:?}");
        assert_eq!(node.pods.len(), 1, "the awaited pod counts there");
        let plan = solve_problem(&problem);
        assert!(plan.to_existing.is_empty(), "{plan:?}");
        assert_eq!(plan.unschedulable.len(), 1, "{plan:?}");
    }

    #[test]
    fn a_pod_awaiting_its_node_keeps_its_room_from_the_next_pass() {
        let (awaiting, new) = (pending_pod("awaiting"), pending_pod("new"));
        let mut in_flight = claim(false);
        if let Some(status) = in_flight.status.as_mut() {
            status.node_name = None;
        }
        // In flight (no Node yet): the node goes by the claim's name.
        solve_beside(&awaiting, &new, &[], &in_flight);
        // Registered, still initializing: by the Node's name.
        solve_beside(&awaiting, &new, &[&fresh_node()], &claim(false));
        // Without the reservation the new pod would take the awaited room.
        let plan = solve_problem(&problem_of(&[&new], &[], &in_flight));
        assert_eq!(
            plan.to_existing,
            [("team/new".to_owned(), "pool-abcde".to_owned())]
        );
    }

    #[test]
    fn an_initialized_node_counts_as_the_node_says() {
        let problem = problem_with(&claim(true));
        let node = &problem.nodes[0];
        assert_eq!(node.allocatable.cpu_millis, 0);
        assert_eq!(node.taints.len(), 1);
    }
}

#[cfg(test)]
mod volume_tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
    use serde_json::json;

    fn pod_with_claim(name: &str, claim: &str) -> CachedPod {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "team"},
            "spec": {"schedulerName": "spotwright", "containers": [{"name": "c"}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]},
            "status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}
        }))
        .expect("a pod");
        CachedPod::from(&pod)
    }

    #[test]
    fn a_pod_s_volume_holds_it_to_its_zone_and_a_missing_claim_leaves_it_out() {
        let claim: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "team"}, "spec": {"volumeName": "pv"}}))
        .expect("a claim");
        let volume: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": "pv"}, "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In",
                    "values": ["us-east-1b"]}]}]}}}}))
        .expect("a volume");
        let volumes = VolumeTopology::new(&[&claim], &[&volume], &[]);
        let (held, lost) = (pod_with_claim("p", "data"), pod_with_claim("q", "gone"));
        let problem = build(
            &Objects {
                pods: &[&held, &lost],
                nodes: &[],
                claims: &[],
                nodepools: &[],
                nodeclasses: &[],
                daemonsets: &[],
                opted_in: &BTreeSet::new(),
                scheduler_name: "spotwright",
                volumes: &volumes,
            },
            &[],
        );
        assert_eq!(problem.pods.len(), 1);
        let zone = &problem.pods[0].required_affinity;
        assert_eq!(zone.len(), 1);
        assert_eq!(zone[0][0].key, keys::ZONE_LABEL);
        assert_eq!(zone[0][0].values, ["us-east-1b"]);
        assert_eq!(problem.unreadable.len(), 1);
        assert_eq!(problem.unreadable[0].0, "team/q");
        assert!(problem.unreadable[0]
            .1
            .to_string()
            .contains("team/gone not found"));
    }
}
