//! The disruption simulation: a leaving node's pods go to nodes that stay,
//! or to new nodes; nodes that are going themselves take nothing; pool
//! limits count the leaving node as gone; a pod with nowhere to go blocks.

#[path = "../solver/tests/common/mod.rs"]
mod common;

use std::collections::HashSet;

use common::*;
use spotwright_provisioner::model::problem::Problem;
use spotwright_provisioner::model::simulate::{Cluster, Leaving, Simulation};
use spotwright_solver::model::{InstanceType, Limit, LimitedResource, PendingPod, Resources};

fn types() -> Vec<InstanceType> {
    [2, 4, 8]
        .iter()
        .map(|c| itype(&format!("m{c}"), *c, "amd64", &["z1"], 0.1))
        .collect()
}

fn problem(nodes: Vec<spotwright_solver::model::ExistingNode>) -> Problem {
    Problem {
        nodes,
        nodepools: vec![pool("p")],
        ..Problem::default()
    }
}

/// A leaving node, owned: its name, capacity and pods.
struct Gone(&'static str, Resources, Vec<PendingPod>);

fn leaving(node: &'static str, pods: &[(&str, u64)]) -> Gone {
    let pods = pods.iter().map(|(name, cpu)| pod(name, *cpu, 0)).collect();
    Gone(node, res(4000, 8), pods)
}

/// One drift simulation on a fresh cluster.
fn simulate(
    problem: Problem,
    gone: Gone,
    going: &HashSet<String>,
    types: &[InstanceType],
) -> Simulation {
    let mut cluster = Cluster::new(problem, going, types.to_vec());
    cluster.replacement_for(&Leaving {
        node: gone.0,
        nodepool: "p",
        capacity: &gone.1,
        pods: &gone.2,
    })
}

fn new_node_cpus(simulation: &Simulation) -> Vec<u64> {
    match simulation {
        Simulation::Fits(nodes) => nodes
            .iter()
            .map(|n| {
                n.instance_types
                    .first()
                    .map_or(0, |t| t[1..].parse().unwrap_or(0))
            })
            .collect(),
        Simulation::Blocked(why) => panic!("blocked: {why}"),
    }
}

#[test]
fn pods_that_fit_on_a_staying_node_need_no_replacement() {
    let nodes = vec![node("old", "z1", 4000, 3000), node("roomy", "z1", 4000, 0)];
    let result = simulate(
        problem(nodes),
        leaving("old", &[("a", 1000), ("b", 1000)]),
        &HashSet::new(),
        &types(),
    );
    assert_eq!(result, Simulation::Fits(vec![]));
}

#[test]
fn nodes_that_are_going_take_nothing_so_a_replacement_is_launched() {
    let nodes = vec![
        node("old", "z1", 4000, 3000),
        node("also-drifted", "z1", 4000, 0),
    ];
    let going: HashSet<String> = ["also-drifted".to_owned()].into();
    let result = simulate(
        problem(nodes),
        leaving("old", &[("a", 1000), ("b", 1000)]),
        &going,
        &types(),
    );
    assert_eq!(
        new_node_cpus(&result),
        vec![2],
        "one node of the cheapest type that fits the 2 CPU"
    );
}

#[test]
fn the_leaving_node_itself_takes_nothing() {
    let nodes = vec![node("old", "z1", 16000, 0)];
    let result = simulate(
        problem(nodes),
        leaving("old", &[("a", 1500)]),
        &HashSet::new(),
        &types(),
    );
    assert_eq!(new_node_cpus(&result).len(), 1);
}

#[test]
fn the_leaving_node_is_taken_off_the_pool_limit() {
    let mut p = problem(vec![node("old", "z1", 4000, 2000)]);
    p.nodepools[0].limits = vec![
        Limit {
            resource: LimitedResource::Cpu,
            max: 4000,
            used: 4000,
        },
        Limit {
            resource: LimitedResource::Nodes,
            max: 1,
            used: 1,
        },
    ];
    let result = simulate(p, leaving("old", &[("a", 1000)]), &HashSet::new(), &types());
    assert_eq!(
        new_node_cpus(&result).len(),
        1,
        "the replacement fits the limit the old node frees"
    );
}

#[test]
fn a_pod_with_nowhere_to_go_blocks_and_says_why() {
    let nodes = vec![node("old", "z1", 16000, 0)];
    let result = simulate(
        problem(nodes),
        leaving("old", &[("huge", 64000)]),
        &HashSet::new(),
        &types(),
    );
    match result {
        Simulation::Blocked(why) => assert!(why.contains("ns/huge"), "{why}"),
        other => panic!("expected a block, got {other:?}"),
    }
}

#[test]
fn an_empty_node_leaves_without_a_replacement() {
    let result = simulate(
        problem(vec![node("old", "z1", 4000, 0)]),
        leaving("old", &[]),
        &HashSet::new(),
        &types(),
    );
    assert_eq!(result, Simulation::Fits(vec![]));
}
