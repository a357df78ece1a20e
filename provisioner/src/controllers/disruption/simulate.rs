//! Before a node is disrupted, its pods are placed in a simulation with the
//! provisioner's own solver: on the nodes that stay, plus new nodes. The new
//! nodes of that plan are the replacements to launch first; a pod the plan
//! cannot place blocks the disruption.

use std::collections::HashSet;

use spotwright_solver::model::{InstanceType, PendingPod, Resources};
use spotwright_solver::{solve, Input, NewNode};

use crate::model::problem::Problem;

/// The node to disrupt, as the simulation sees it.
pub struct Leaving<'a> {
    /// Its Node's name.
    pub node: &'a str,
    pub nodepool: &'a str,
    /// Its capacity, given back to the pool's limits.
    pub capacity: Resources,
    /// Its workload pods, to be placed elsewhere.
    pub pods: Vec<PendingPod>,
}

/// What the disruption would take.
#[derive(Clone, Debug, PartialEq)]
pub enum Simulation {
    /// Every pod fits: launch these first (none when they fit on other nodes).
    Fits(Vec<NewNode>),
    /// Some pod has nowhere to go: `pod key: reason`, the first few.
    Blocked(String),
}

/// Simulates moving `leaving`'s pods. `problem` is the cluster as the
/// provisioner sees it; nodes named in `unavailable` (those that are
/// themselves going, or whose room is promised to another node's pods)
/// take no pods. Pending pods of the problem are left out: the provisioner
/// serves them on its own.
pub fn simulate(
    mut problem: Problem,
    leaving: Leaving,
    unavailable: &HashSet<String>,
    instance_types: &[InstanceType],
) -> Simulation {
    problem.nodes.retain(|n| n.name != leaving.node);
    for node in &mut problem.nodes {
        if unavailable.contains(&node.name) {
            node.unavailable = true;
        }
    }
    for pool in problem
        .nodepools
        .iter_mut()
        .filter(|p| p.name == leaving.nodepool)
    {
        for limit in &mut pool.limits {
            limit.used = limit
                .used
                .saturating_sub(limit.resource.of(&leaving.capacity));
        }
    }
    if leaving.pods.is_empty() {
        return Simulation::Fits(Vec::new());
    }
    let plan = solve(&Input {
        pods: &leaving.pods,
        nodes: &problem.nodes,
        nodepools: &problem.nodepools,
        daemonsets: &problem.daemonsets,
        instance_types,
    });
    if plan.unschedulable.is_empty() {
        return Simulation::Fits(plan.new_nodes);
    }
    let reasons: Vec<String> = plan
        .unschedulable
        .iter()
        .take(3)
        .map(|(pod, why)| format!("{pod}: {why}"))
        .collect();
    let more = plan.unschedulable.len().saturating_sub(3);
    let suffix = if more > 0 {
        format!(" (and {more} more)")
    } else {
        String::new()
    };
    Simulation::Blocked(format!("{}{suffix}", reasons.join("; ")))
}
