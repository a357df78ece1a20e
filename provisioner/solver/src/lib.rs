//! The provisioner's scheduling simulation as a pure function: pending pods,
//! existing nodes, NodePools, DaemonSets and instance types in; a placement,
//! the cheapest new nodes and a reason for every pod left out. See
//! `docs/solver.md` for the algorithm.

mod catalog;
mod classes;
mod constraints;
mod daemonsets;
mod limits;
mod merge;
pub mod model;
mod offerings;
mod packing;
mod plan;
mod pods;
mod preferences;
mod reasons;
mod repack;
mod requirements;
mod resources;
mod taints;
mod topology;
pub mod workload;

pub use requirements::label_matches;

use model::{
    CapacityType, DaemonSetFacts, ExistingNode, InstanceType, NodePoolFacts, PendingPod,
    RelaxedMinValues, Requirement, Resources,
};

/// Everything one solve looks at.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    pub pods: &'a [PendingPod],
    /// Existing nodes and in-flight NodeClaims.
    pub nodes: &'a [ExistingNode],
    pub nodepools: &'a [NodePoolFacts],
    pub daemonsets: &'a [DaemonSetFacts],
    pub instance_types: &'a [InstanceType],
}

/// Where every pod goes. Each input pod is in exactly one of the three.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// `(pod key, node name)`.
    pub to_existing: Vec<(String, String)>,
    pub new_nodes: Vec<NewNode>,
    /// `(pod key, human reason)`.
    pub unschedulable: Vec<(String, String)>,
}

/// A node to launch: the NodeClaim's content.
#[derive(Clone, Debug, PartialEq)]
pub struct NewNode {
    pub nodepool: String,
    /// Pod keys.
    pub pods: Vec<String>,
    /// The pods' requests plus the DaemonSet overhead of the cheapest type.
    pub requests: Resources,
    /// Every compatible type that fits, cheapest first (by cheapest
    /// available offering in the allowed zones and capacity types).
    pub instance_types: Vec<String>,
    pub zones: Vec<String>,
    /// Spot first.
    pub capacity_types: Vec<CapacityType>,
    /// Pool requirements ∧ pod constraints ∧ instance type, zone and
    /// capacity type `In` the lists above (`minValues` carried from the pool).
    pub requirements: Vec<Requirement>,
    /// $/h of the cheapest offering chosen (Spot when any is left).
    pub price: f64,
    /// Under `minValuesPolicy: BestEffort`, the `minValues` this launch
    /// could not keep (its requirements carry the relaxed figures).
    pub min_values_relaxed: Vec<RelaxedMinValues>,
}

/// Places `input.pods`. Pure and deterministic: the same input gives the
/// same plan. Preferred node affinity is honoured as Karpenter does it
/// ([`preferences`]).
pub fn solve(input: &Input) -> Plan {
    preferences::solve_relaxing(input, solve_required)
}

/// The instance types at least one of `nodepools` may launch (an available
/// offering its requirements allow, with room for its DaemonSets), in
/// their order. Solving with only these places pods as with all of them
/// (as long as they still offer every zone the others did), and builds
/// each pool's catalog from a few hundred types instead of a region's
/// thousand-odd: callers that solve many times over one cluster filter
/// once.
pub fn launchable_types(
    nodepools: &[NodePoolFacts],
    daemonsets: &[DaemonSetFacts],
    instance_types: &[InstanceType],
) -> Vec<InstanceType> {
    let input = Input {
        pods: &[],
        nodes: &[],
        nodepools,
        daemonsets,
        instance_types,
    };
    let names = resource_names(&input);
    let zones = offered_zones(&input);
    let mut launchable = vec![false; instance_types.len()];
    for (i, pool) in nodepools.iter().enumerate() {
        let catalog = catalog::build(i, pool, instance_types, daemonsets, &zones, &names);
        for pool_type in &catalog.types {
            launchable[pool_type.instance_type] = true;
        }
    }
    instance_types
        .iter()
        .zip(launchable)
        .filter(|(_, launchable)| *launchable)
        .map(|(t, _)| t.clone())
        .collect()
}

/// Places `input.pods` by their required constraints only.
fn solve_required(input: &Input) -> Plan {
    let names = resource_names(input);
    let mut zones = offered_zones(input);
    let node_zones: Vec<Option<usize>> = input
        .nodes
        .iter()
        .map(|n| classes::node_zone(n, &mut zones))
        .collect();
    let catalogs: Vec<catalog::PoolCatalog> = input
        .nodepools
        .iter()
        .enumerate()
        .map(|(i, pool)| {
            catalog::build(
                i,
                pool,
                input.instance_types,
                input.daemonsets,
                &zones,
                &names,
            )
        })
        .collect();
    let class_context = classes::ClassContext {
        catalogs: &catalogs,
        nodepools: input.nodepools,
        instance_types: input.instance_types,
        nodes: input.nodes,
        zones: &zones,
        node_zones: &node_zones,
    };
    let classes = classes::group(input.pods, &class_context);
    let mut interned = pods::intern_selectors(input.pods);
    let pod_facts = pods::facts(input.pods, &classes.of_pod, &mut interned, &names);
    let mut zone_counts = topology::ZoneCounts::new(interned.selectors.len(), zones.names.len());
    let existing = input
        .nodes
        .iter()
        .zip(&node_zones)
        .map(|(node, zone)| {
            let mut state = packing::existing_state(node, *zone, &names);
            for matches in pods::existing_matches(node, &interned.selectors) {
                state.count_resident(&matches);
                zone_counts.see(&matches);
                if let Some(z) = zone {
                    zone_counts.add(&matches, *z);
                }
            }
            state
        })
        .collect();
    let mut packer = packing::Packer::new(
        input,
        &catalogs,
        &classes,
        &pod_facts,
        existing,
        zone_counts,
    );
    let placement = packer.run();
    let plan_context = plan::PlanContext {
        input,
        catalogs: &catalogs,
        pods: &pod_facts,
        names: &names,
        zones: &zones,
    };
    plan_of(&placement, &packer, &plan_context)
}

/// Every resource any pod, DaemonSet, node or instance type names.
fn resource_names(input: &Input) -> resources::ResourceNames {
    resources::ResourceNames::collect(
        input
            .pods
            .iter()
            .map(|p| &p.requests)
            .chain(input.daemonsets.iter().map(|d| &d.requests))
            .chain(
                input
                    .nodes
                    .iter()
                    .flat_map(|n| [&n.allocatable, &n.requested]),
            )
            .chain(
                input
                    .instance_types
                    .iter()
                    .flat_map(|t| [&t.capacity, &t.allocatable]),
            ),
    )
}

/// The zones any offering is in, interned in name order.
fn offered_zones(input: &Input) -> offerings::Zones {
    let mut zones = offerings::Zones::default();
    let mut offered: Vec<&str> = input
        .instance_types
        .iter()
        .flat_map(|t| t.offerings.iter().map(|o| o.zone.as_str()))
        .collect();
    offered.sort_unstable();
    offered.dedup();
    for zone in offered {
        zones.intern(zone);
    }
    zones
}

/// The packer's placement in the plan's terms: names, new nodes, reasons.
fn plan_of(
    placement: &packing::Placement,
    packer: &packing::Packer,
    context: &plan::PlanContext,
) -> Plan {
    let input = context.input;
    Plan {
        to_existing: placement
            .to_existing
            .iter()
            .map(|(pod, node)| {
                (
                    input.pods[*pod].key.clone(),
                    input.nodes[*node].name.clone(),
                )
            })
            .collect(),
        new_nodes: placement
            .open
            .iter()
            .map(|n| plan::new_node(n, context))
            .collect(),
        unschedulable: placement
            .unplaced
            .iter()
            .map(|pod| (input.pods[*pod].key.clone(), packer.explain(*pod)))
            .collect(),
    }
}
