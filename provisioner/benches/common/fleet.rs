//! An underutilized fleet of real instance types, for consolidation's
//! benchmark: the solver's "real mix" (`real_mix.rs`, described in
//! `docs/benchmarks.md`) packed by the solver onto a NodePool of types of
//! at most 16 vCPU, then scaled down.
//!
//! - **Packed**: the solver places `pods` pods of the mix; every new node
//!   becomes a running Spot node of one of its listed types ([`Launch`]:
//!   the cheapest, or any, drawn with the seed, as EC2's
//!   price-capacity-optimized allocation may pick any pool of the list) in
//!   one of its zones (dealt round them), its pods and the DaemonSets
//!   counted in `requested`.
//! - **Scaled down**: a share of the pods is deleted at random (a fixed
//!   seed): `web` pods in equal numbers per zone, so their zone spread
//!   stays within its maxSkew, every other pod uniformly. Nodes left
//!   empty are dropped (emptiness deletes them without a simulation).
//! - **Consolidating**: every node is a candidate of the one NodePool,
//!   priced at its type's Spot offering in its zone, its disruption cost
//!   one per pod. [`Fleet::apply`] carries out a decision the way the
//!   controller would once it has run: the candidates go, their pods land
//!   where [`Decision::moves`] says, and a replacement runs as its
//!   cheapest kept type priced at [`Decision::after`] (the worst case).
#![allow(dead_code)]

#[path = "../../solver/tests/common/real_mix.rs"]
pub mod real_mix;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use spotwright_api::keys::{
    CAPACITY_TYPE_LABEL, HOSTNAME_LABEL, INSTANCE_CPU_LABEL, SPOT, ZONE_LABEL,
};
use spotwright_provisioner::model::consolidation::{
    evaluate, Action, Candidate, Decision, Evaluation, Pool, Rules, Settings, MAX_MULTI_CANDIDATES,
    NEW_NODE, SPOT_TO_SPOT_MIN_TYPES,
};
use spotwright_provisioner::model::problem::Problem;
use spotwright_provisioner::model::simulate::Cluster;
use spotwright_solver::model::{
    CapacityType, DaemonSetFacts, ExistingNode, InstanceType, NodePoolFacts, Operator, PendingPod,
    PlacedPod, Requirement, Resources,
};
use spotwright_solver::workload::Draws;
use spotwright_solver::{solve, NewNode};

/// The largest type the fleet's NodePool launches, in vCPU: small enough
/// that 10,000 pods of the mix need about 1,000 nodes.
pub const MAX_VCPUS: u64 = 16;

/// A running node of the fleet.
#[derive(Clone, Debug)]
pub struct FleetNode {
    pub name: String,
    pub instance_type: String,
    pub zone: String,
    /// $/h.
    pub price: f64,
    pub pods: Vec<PendingPod>,
}

/// Running nodes, and what they were launched from.
pub struct Fleet {
    pub nodes: Vec<FleetNode>,
    pub nodepool: NodePoolFacts,
    pub daemonsets: Vec<DaemonSetFacts>,
    pub instance_types: Vec<InstanceType>,
    /// Replacements launched so far, to name the next.
    replacements: usize,
}

/// The real mix's NodePool, limited to types of at most [`MAX_VCPUS`].
pub fn nodepool() -> NodePoolFacts {
    let mut pool = real_mix::nodepool();
    pool.requirements.push(Requirement {
        key: INSTANCE_CPU_LABEL.into(),
        operator: Operator::Lte,
        values: vec![MAX_VCPUS.to_string()],
        min_values: None,
    });
    pool
}

/// Which of a new node's listed types it runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Launch {
    /// The first listed: the cheapest.
    Cheapest,
    /// Any listed, drawn uniformly.
    AnyListed,
}

impl Launch {
    pub fn as_str(self) -> &'static str {
        match self {
            Launch::Cheapest => "cheapest listed type",
            Launch::AnyListed => "any listed type",
        }
    }
}

/// [`packed`] with `pods` pods, then `share` of them deleted; `seed`
/// draws both.
pub fn underutilized(pods: usize, launch: Launch, share: f64, seed: u64) -> Fleet {
    let mut draws = Draws::new(seed);
    let mut fleet = packed(pods, launch, &mut draws);
    fleet.scale_down(share, &mut draws);
    fleet
}

/// The nodes the solver launches for `pods` pods of the mix.
fn packed(pods: usize, launch: Launch, draws: &mut Draws) -> Fleet {
    let mut workload = real_mix::workload(pods);
    workload.nodepools = vec![nodepool()];
    let plan = solve(&workload.input());
    assert!(
        plan.unschedulable.is_empty(),
        "the mix does not fit: {:?}",
        &plan.unschedulable[..plan.unschedulable.len().min(3)]
    );
    let mut by_key: HashMap<String, PendingPod> = workload
        .pods
        .into_iter()
        .map(|p| (p.key.clone(), p))
        .collect();
    let nodes = plan
        .new_nodes
        .iter()
        .enumerate()
        .map(|(i, new_node)| {
            let instance_type = match launch {
                Launch::Cheapest => &new_node.instance_types[0],
                Launch::AnyListed => draws.choose(&new_node.instance_types),
            };
            let zone = &new_node.zones[i % new_node.zones.len()];
            let mut node = FleetNode {
                name: format!("node-{i}"),
                instance_type: instance_type.clone(),
                zone: zone.clone(),
                price: spot_price(find_type(&workload.instance_types, instance_type), zone),
                pods: Vec::new(),
            };
            node.pods = new_node
                .pods
                .iter()
                .map(|key| take(&mut by_key, key))
                .collect();
            node
        })
        .collect();
    Fleet {
        nodes,
        nodepool: workload.nodepools.remove(0),
        daemonsets: workload.daemonsets,
        instance_types: workload.instance_types,
        replacements: 0,
    }
}

fn take(pods: &mut HashMap<String, PendingPod>, key: &str) -> PendingPod {
    pods.remove(key)
        .unwrap_or_else(|| panic!("{key} is planned but not a pod of the mix"))
}

fn find_type<'a>(types: &'a [InstanceType], name: &str) -> &'a InstanceType {
    types
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("{name} is not a known instance type"))
}

/// The type's Spot price in `zone`.
fn spot_price(instance_type: &InstanceType, zone: &str) -> f64 {
    instance_type
        .offerings
        .iter()
        .find(|o| o.capacity_type == CapacityType::Spot && o.zone == zone)
        .map(|o| o.price)
        .unwrap_or_else(|| panic!("{} has no Spot offering in {zone}", instance_type.name))
}

impl Fleet {
    pub fn pod_count(&self) -> usize {
        self.nodes.iter().map(|n| n.pods.len()).sum()
    }

    /// $/h of the running nodes.
    pub fn price(&self) -> f64 {
        self.nodes.iter().map(|n| n.price).sum()
    }

    pub fn pods(&self) -> impl Iterator<Item = &PendingPod> {
        self.nodes.iter().flat_map(|n| &n.pods)
    }

    /// The running pods' keys, sorted (a key twice if a pod runs twice).
    pub fn pod_keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.pods().map(|p| p.key.as_str()).collect();
        keys.sort_unstable();
        keys
    }

    /// How many nodes run each instance type.
    pub fn type_counts(&self) -> BTreeMap<&str, usize> {
        let mut counts = BTreeMap::new();
        for node in &self.nodes {
            *counts.entry(node.instance_type.as_str()).or_default() += 1;
        }
        counts
    }

    /// The types the NodePool may launch, with their Spot offerings only.
    pub fn pool_types(&self) -> Vec<InstanceType> {
        real_mix::allowed_spot_types(&self.instance_types)
            .into_iter()
            .filter(|t| t.capacity.cpu_millis <= MAX_VCPUS * 1000)
            .collect()
    }

    /// The LP bound on the $/h of any fleet of the pool's types that holds
    /// the running pods and the DaemonSets ([`real_mix::lp_bound`]).
    pub fn lp_bound(&self) -> f64 {
        let pods: Vec<PendingPod> = self.pods().cloned().collect();
        real_mix::lp_bound(&pods, &self.pool_types(), &self.daemonsets)
    }

    /// Deletes `share` of the pods at random: `web` pods in the same
    /// number from each zone, the others uniformly. Empty nodes go.
    fn scale_down(&mut self, share: f64, draws: &mut Draws) {
        let mut web_by_zone: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut others: Vec<&str> = Vec::new();
        for node in &self.nodes {
            for pod in &node.pods {
                match pod.labels.get("app").map(String::as_str) {
                    Some("web") => web_by_zone.entry(&node.zone).or_default().push(&pod.key),
                    _ => others.push(&pod.key),
                }
            }
        }
        let per_zone = web_by_zone.values().map(Vec::len).min().unwrap_or(0);
        let mut deleted: HashSet<String> = HashSet::new();
        for keys in web_by_zone.values_mut() {
            deleted.extend(pick(draws, keys, share_of(per_zone, share)));
        }
        let others_deleted = share_of(others.len(), share);
        deleted.extend(pick(draws, &mut others, others_deleted));
        for node in &mut self.nodes {
            node.pods.retain(|p| !deleted.contains(&p.key));
        }
        self.nodes.retain(|n| !n.pods.is_empty());
    }

    /// The cluster as consolidation sees it.
    pub fn cluster(&self) -> Cluster {
        Cluster::new(self.problem(), &HashSet::new(), self.instance_types.clone())
    }

    /// The running nodes, the NodePool and the DaemonSets.
    pub fn problem(&self) -> Problem {
        Problem {
            nodes: self.nodes.iter().map(|n| self.existing(n)).collect(),
            nodepools: vec![self.nodepool.clone()],
            daemonsets: self.daemonsets.clone(),
            ..Problem::default()
        }
    }

    /// Every node, as a candidate of the one NodePool.
    pub fn candidates(&self) -> Vec<Candidate> {
        self.nodes
            .iter()
            .map(|n| Candidate {
                claim: format!("claim-{}", n.name),
                node: n.name.clone(),
                nodepool: self.nodepool.name.clone(),
                capacity: find_type(&self.instance_types, &n.instance_type)
                    .capacity
                    .clone(),
                capacity_type: CapacityType::Spot,
                price: n.price,
                pods: n.pods.clone(),
                disruption_cost: n.pods.len() as f64,
            })
            .collect()
    }

    /// `node` as the solver sees it: its type's labels and allocatable,
    /// its pods and the DaemonSets requested.
    fn existing(&self, node: &FleetNode) -> ExistingNode {
        let instance_type = find_type(&self.instance_types, &node.instance_type);
        let mut labels = instance_type.labels.clone();
        labels.extend(self.nodepool.labels.clone());
        labels.insert(ZONE_LABEL.into(), node.zone.clone());
        labels.insert(HOSTNAME_LABEL.into(), node.name.clone());
        labels.insert(CAPACITY_TYPE_LABEL.into(), SPOT.into());
        let mut requested = Resources::default();
        for requests in node.pods.iter().map(|p| &p.requests) {
            add_one(&mut requested, requests);
        }
        for requests in self.daemonsets.iter().map(|d| &d.requests) {
            add_one(&mut requested, requests);
        }
        ExistingNode {
            name: node.name.clone(),
            labels,
            taints: self.nodepool.taints.clone(),
            allocatable: instance_type.allocatable.clone(),
            requested,
            pods: node.pods.iter().map(placed).collect(),
            in_flight: false,
            unavailable: false,
        }
    }

    /// Carries out `decision` (made over `candidates`, which [`Fleet::candidates`]
    /// gave): the candidates go, their pods move, a replacement runs.
    pub fn apply(&mut self, decision: &Decision, candidates: &[Candidate]) {
        let going: HashSet<&str> = decision
            .candidates
            .iter()
            .map(|&i| candidates[i].node.as_str())
            .collect();
        let mut moving: HashMap<String, PendingPod> = HashMap::new();
        for node in self.nodes.iter_mut().filter(|n| going.contains(&*n.name)) {
            moving.extend(node.pods.drain(..).map(|p| (p.key.clone(), p)));
        }
        self.nodes.retain(|n| !going.contains(&*n.name));
        let replacement = match &decision.action {
            Action::Replace(new_node) => self.launch_replacement(new_node, decision.after),
            Action::Delete => String::new(),
        };
        for (key, to) in &decision.moves {
            let to = if to == NEW_NODE { &replacement } else { to };
            let pod = moving.remove(key).expect("a move is of a leaving pod");
            let node = self
                .nodes
                .iter_mut()
                .find(|n| &n.name == to)
                .unwrap_or_else(|| panic!("{key} moves to {to}, which is not running"));
            node.pods.push(pod);
        }
        assert!(moving.is_empty(), "pods left behind: {:?}", moving.keys());
    }

    /// Runs `new_node` as its cheapest type at `price`; its name.
    fn launch_replacement(&mut self, new_node: &NewNode, price: f64) -> String {
        self.replacements += 1;
        let name = format!("replacement-{}", self.replacements);
        self.nodes.push(FleetNode {
            name: name.clone(),
            instance_type: new_node.instance_types[0].clone(),
            zone: new_node.zones[0].clone(),
            price,
            pods: Vec::new(),
        });
        name
    }

    /// Nodes whose pods and DaemonSets exceed their type's allocatable.
    pub fn overfull_nodes(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| {
                let node = self.existing(n);
                node.requested.cpu_millis > node.allocatable.cpu_millis
                    || node.requested.memory_bytes > node.allocatable.memory_bytes
                    || node.requested.pods > node.allocatable.pods
            })
            .map(|n| n.name.clone())
            .collect()
    }
}

/// Adds one pod's `requests` (and its pod slot) to `sum`.
fn add_one(sum: &mut Resources, requests: &Resources) {
    sum.cpu_millis += requests.cpu_millis;
    sum.memory_bytes += requests.memory_bytes;
    sum.ephemeral_bytes += requests.ephemeral_bytes;
    sum.pods += 1;
}

fn placed(pod: &PendingPod) -> PlacedPod {
    PlacedPod {
        namespace: Arc::from(pod.namespace.as_str()),
        labels: Arc::new(pod.labels.clone()),
    }
}

/// `share` of `n`, rounded.
fn share_of(n: usize, share: f64) -> usize {
    (n as f64 * share).round() as usize
}

/// `count` of `items`, drawn without replacement (a partial Fisher-Yates
/// shuffle), as owned strings.
fn pick(draws: &mut Draws, items: &mut [&str], count: usize) -> Vec<String> {
    let count = count.min(items.len());
    for i in 0..count {
        let j = i + draws.below((items.len() - i) as u64) as usize;
        items.swap(i, j);
    }
    items[..count].iter().map(|s| s.to_string()).collect()
}

/// The NodePool's consolidation rules: a 10% threshold, Spot to Spot with
/// 15 cheaper types, a budget that does not bind.
pub fn rules() -> Rules {
    Rules {
        threshold: 0.1,
        min_types: SPOT_TO_SPOT_MIN_TYPES,
        budget: 1_000,
    }
}

/// Spot to Spot on, $0.001/h per unit of disruption cost, multi-node over
/// at most 100 candidates.
pub fn settings() -> Settings {
    Settings {
        spot_to_spot: true,
        eviction_price: 0.001,
        max_multi: MAX_MULTI_CANDIDATES,
    }
}

/// `evaluate` over the one NodePool's `candidates`, with no recent peak to
/// keep room for (the scale-down is older than `consolidateAfter`).
pub fn evaluate_pool(
    cluster: &mut Cluster,
    candidates: &[Candidate],
    rules: &Rules,
    settings: &Settings,
) -> Evaluation {
    evaluate(cluster, Pool::at_rest(candidates, rules), settings)
}

/// What consolidating a fleet until no decision pays did.
#[derive(Clone, Debug)]
pub struct Fixpoint {
    /// Decisions carried out.
    pub deletes: usize,
    pub replacements: usize,
    /// Candidates those decisions removed.
    pub nodes_removed: usize,
    /// Solver runs over all the evaluations.
    pub simulations: usize,
    /// Whether it stopped because no decision paid (not at `max_steps`).
    pub settled: bool,
}

/// Evaluates and applies decisions until none is found, at most `max_steps`.
pub fn consolidate_to_fixpoint(
    fleet: &mut Fleet,
    rules: &Rules,
    settings: &Settings,
    max_steps: usize,
) -> Fixpoint {
    let mut fixpoint = Fixpoint {
        deletes: 0,
        replacements: 0,
        nodes_removed: 0,
        simulations: 0,
        settled: false,
    };
    for _ in 0..max_steps {
        let candidates = fleet.candidates();
        let evaluation = evaluate_pool(&mut fleet.cluster(), &candidates, rules, settings);
        fixpoint.simulations += evaluation.simulations;
        let Some(decision) = evaluation.decision else {
            fixpoint.settled = true;
            break;
        };
        match decision.action {
            Action::Delete => fixpoint.deletes += 1,
            Action::Replace(_) => fixpoint.replacements += 1,
        }
        fixpoint.nodes_removed += decision.candidates.len();
        fleet.apply(&decision, &candidates);
    }
    fixpoint
}
