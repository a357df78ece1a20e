//! Before nodes are disrupted, their pods are placed in a simulation with
//! the provisioner's own solver: on the nodes that stay, plus new nodes.
//! Drift uses it for one node (the new nodes are the replacements to
//! launch first; a pod the plan cannot place blocks the disruption), and
//! consolidation for one or several (whether they can go, and for what).
//!
//! One [`Cluster`] serves every simulation of a sweep: a node that leaves
//! is taken out of the solver's input for one solve and put back after,
//! so a thousand simulations do not copy the cluster a thousand times.

use std::collections::{HashMap, HashSet};

use spotwright_solver::model::{InstanceType, PendingPod, Resources};
use spotwright_solver::{launchable_types, solve, Input, NewNode, Plan};

use crate::model::problem::Problem;

/// A node to disrupt, as the simulation sees it.
#[derive(Clone, Debug)]
pub struct Leaving<'a> {
    /// Its Node's name.
    pub node: &'a str,
    pub nodepool: &'a str,
    /// Its capacity, given back to the pool's limits.
    pub capacity: &'a Resources,
    /// Its workload pods, to be placed elsewhere.
    pub pods: &'a [PendingPod],
}

/// What a drift replacement would take.
#[derive(Clone, Debug, PartialEq)]
pub enum Simulation {
    /// Every pod fits: launch these first (none when they fit on other nodes).
    Fits(Vec<NewNode>),
    /// Some pod has nowhere to go: `pod key: reason`, the first few.
    Blocked(String),
}

/// The cluster as the provisioner sees it, ready for simulations.
pub struct Cluster {
    problem: Problem,
    instance_types: Vec<InstanceType>,
    index: HashMap<String, usize>,
}

impl Cluster {
    /// `problem` is the cluster as the provisioner sees it; nodes named in
    /// `unavailable` (those that are themselves going, or whose room is
    /// promised to another node's pods) take no pods. Pending pods of the
    /// problem are left out: the provisioner serves them on its own.
    /// Instance types no pool may launch are dropped once here
    /// ([`launchable_types`]), not in every simulation.
    pub fn new(
        mut problem: Problem,
        unavailable: &HashSet<String>,
        instance_types: Vec<InstanceType>,
    ) -> Cluster {
        problem.pods.clear();
        for node in &mut problem.nodes {
            if unavailable.contains(&node.name) {
                node.unavailable = true;
            }
        }
        let index = problem
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        let instance_types =
            launchable_types(&problem.nodepools, &problem.daemonsets, &instance_types);
        Cluster {
            problem,
            instance_types,
            index,
        }
    }

    pub fn problem(&self) -> &Problem {
        &self.problem
    }

    pub fn instance_types(&self) -> &[InstanceType] {
        &self.instance_types
    }

    /// Places the pods of `leaving` as if those nodes were gone: they take
    /// no pods, their pods no longer count where they ran, and their
    /// capacity is given back to their pools' limits.
    pub fn simulate(&mut self, leaving: &[Leaving]) -> Plan {
        let pods: Vec<PendingPod> = leaving.iter().flat_map(|l| l.pods).cloned().collect();
        self.simulate_pods(leaving, &pods)
    }

    /// [`Cluster::simulate`] with the moving pods given (`pods` must be
    /// those of `leaving`, in any order).
    pub fn simulate_pods(&mut self, leaving: &[Leaving], pods: &[PendingPod]) -> Plan {
        if pods.is_empty() {
            return Plan::default();
        }
        let undo = self.take_out(leaving);
        let plan = solve(&Input {
            pods,
            nodes: &self.problem.nodes,
            nodepools: &self.problem.nodepools,
            daemonsets: &self.problem.daemonsets,
            instance_types: &self.instance_types,
        });
        self.put_back(undo);
        plan
    }

    fn take_out(&mut self, leaving: &[Leaving]) -> Undo {
        let mut undo = Undo::default();
        for gone in leaving {
            if let Some(&i) = self.index.get(gone.node) {
                let node = &mut self.problem.nodes[i];
                let pods = std::mem::take(&mut node.pods);
                undo.nodes.push((i, node.unavailable, pods));
                node.unavailable = true;
            }
            for (p, pool) in self.problem.nodepools.iter_mut().enumerate() {
                if pool.name != gone.nodepool {
                    continue;
                }
                for (l, limit) in pool.limits.iter_mut().enumerate() {
                    undo.limits.push((p, l, limit.used));
                    limit.used = limit.used.saturating_sub(limit.resource.of(gone.capacity));
                }
            }
        }
        undo
    }

    fn put_back(&mut self, undo: Undo) {
        for (i, unavailable, pods) in undo.nodes.into_iter().rev() {
            let node = &mut self.problem.nodes[i];
            node.unavailable = unavailable;
            node.pods = pods;
        }
        for (p, l, used) in undo.limits.into_iter().rev() {
            self.problem.nodepools[p].limits[l].used = used;
        }
    }

    /// Drift's question: where would one leaving node's pods go?
    pub fn replacement_for(&mut self, leaving: &Leaving) -> Simulation {
        if leaving.pods.is_empty() {
            return Simulation::Fits(Vec::new());
        }
        let plan = self.simulate(std::slice::from_ref(leaving));
        if plan.unschedulable.is_empty() {
            return Simulation::Fits(plan.new_nodes);
        }
        Simulation::Blocked(unschedulable_summary(&plan))
    }
}

/// What [`Cluster::take_out`] changed, to restore.
#[derive(Default)]
struct Undo {
    /// Node index, its `unavailable`, its pods.
    nodes: Vec<(usize, bool, Vec<spotwright_solver::model::PlacedPod>)>,
    /// Pool index, limit index, its `used`.
    limits: Vec<(usize, usize, u64)>,
}

/// `pod key: reason` for the first few pods a plan could not place.
pub fn unschedulable_summary(plan: &Plan) -> String {
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
    format!("{}{suffix}", reasons.join("; "))
}
