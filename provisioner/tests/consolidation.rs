//! Underutilized consolidation's decisions: deletes when pods fit
//! elsewhere, replacements only when they save the threshold with enough
//! cheaper types, multi-node within the budget, and nothing that does not
//! pay for its disruption or would not be stable.

#[path = "../solver/tests/common/mod.rs"]
mod common;

use std::collections::HashSet;

use common::*;
use proptest::prelude::*;
use spotwright_provisioner::model::consolidation::{
    evaluate, Action, Candidate, Decision, Evaluation, Pool, Rules, Settings,
    SPOT_TO_SPOT_MIN_TYPES,
};
use spotwright_provisioner::model::problem::Problem;
use spotwright_provisioner::model::simulate::{Cluster, Leaving};
use spotwright_solver::model::{CapacityType, ExistingNode, InstanceType, PendingPod, PlacedPod};

/// `c1` .. `c30`: n vCPU, 2n GiB, Spot at $0.01 per vCPU, on-demand twice that.
fn types() -> Vec<InstanceType> {
    (1..=30)
        .map(|c| itype(&format!("c{c}"), c, "amd64", &["z1"], 0.01))
        .collect()
}

fn spot_price(cpus: u64) -> f64 {
    0.01 * cpus as f64
}

/// A node of `cpus` vCPU running `pods` (millicores each), and its candidate.
fn running(name: &str, cpus: u64, pods: &[u64]) -> (ExistingNode, Candidate) {
    let pending: Vec<PendingPod> = pods
        .iter()
        .enumerate()
        .map(|(i, cpu)| pod(&format!("{name}-{i}"), *cpu, 0))
        .collect();
    let mut existing = node(name, "z1", cpus * 1000, pods.iter().sum());
    existing.pods = pending
        .iter()
        .map(|_| PlacedPod {
            namespace: "ns".into(),
            labels: Default::default(),
        })
        .collect();
    let candidate = Candidate {
        claim: format!("claim-{name}"),
        node: name.into(),
        nodepool: "p".into(),
        capacity: res(cpus * 1000, 2 * cpus),
        capacity_type: CapacityType::Spot,
        price: spot_price(cpus),
        disruption_cost: pending.len() as f64,
        pods: pending,
    };
    (existing, candidate)
}

fn cluster_of(nodes: Vec<ExistingNode>) -> Cluster {
    let problem = Problem {
        nodes,
        nodepools: vec![pool("p")],
        ..Problem::default()
    };
    Cluster::new(problem, &HashSet::new(), types())
}

fn rules(threshold: f64, budget: usize) -> Rules {
    Rules {
        threshold,
        min_types: SPOT_TO_SPOT_MIN_TYPES,
        budget,
    }
}

fn settings() -> Settings {
    Settings {
        spot_to_spot: true,
        eviction_price: 0.001,
        max_multi: 100,
    }
}

/// Evaluates with no recent peak.
fn run(
    cluster: &mut Cluster,
    candidates: &[Candidate],
    rules: &Rules,
    settings: &Settings,
) -> Evaluation {
    evaluate(cluster, Pool::at_rest(candidates, rules), settings)
}

fn decide(
    nodes: Vec<(ExistingNode, Candidate)>,
    rules: &Rules,
) -> Option<(Decision, Vec<Candidate>)> {
    let (existing, candidates): (Vec<_>, Vec<_>) = nodes.into_iter().unzip();
    let mut cluster = cluster_of(existing);
    let evaluation = run(&mut cluster, &candidates, rules, &settings());
    evaluation.decision.map(|d| (d, candidates))
}

fn names(decision: &Decision, candidates: &[Candidate]) -> Vec<String> {
    let mut names: Vec<String> = decision
        .candidates
        .iter()
        .map(|&i| candidates[i].node.clone())
        .collect();
    names.sort();
    names
}

#[test]
fn the_dearer_node_whose_pods_fit_elsewhere_is_deleted() {
    let nodes = vec![running("a", 4, &[1000]), running("b", 8, &[1000, 1000])];
    let (decision, candidates) = decide(nodes, &rules(0.1, 10)).expect("a deletion");
    assert_eq!(decision.action, Action::Delete);
    assert_eq!(names(&decision, &candidates), ["b"]);
    assert_eq!(decision.before, spot_price(8));
    assert_eq!(decision.after, 0.0);
    assert_eq!(decision.moves.len(), 2);
    assert!(decision.moves.iter().all(|(_, to)| to == "a"));
}

#[test]
fn room_for_the_pools_recent_peak_is_kept() {
    let (a, ca) = running("a", 4, &[1000]);
    let (b, cb) = running("b", 8, &[1000, 1000]);
    let candidates = vec![ca, cb];
    let peak: Vec<PendingPod> = (0..6).map(|i| pod(&format!("gone-{i}"), 1000, 0)).collect();
    let rules = rules(0.1, 10);
    let pool = Pool {
        candidates: &candidates,
        recent_peak: &peak,
        rules: &rules,
    };
    let evaluation = evaluate(
        &mut cluster_of(vec![a.clone(), b.clone()]),
        pool,
        &settings(),
    );
    assert_eq!(
        evaluation.decision, None,
        "the six pods just gone would need a launch"
    );
    let pool = Pool {
        recent_peak: &peak[..2],
        ..pool
    };
    let evaluation = evaluate(&mut cluster_of(vec![a, b]), pool, &settings());
    let decision = evaluation.decision.expect("room for two more is left");
    assert!(
        decision.moves.iter().all(|(pod, _)| !pod.contains("gone")),
        "only the candidates' own pods are moved: {:?}",
        decision.moves
    );
}

#[test]
fn a_lone_big_spot_node_is_replaced_by_a_cheaper_one_with_fifteen_types() {
    let (decision, _) =
        decide(vec![running("big", 30, &[1000])], &rules(0.1, 10)).expect("a replacement");
    let Action::Replace(new_node) = &decision.action else {
        panic!("expected a replacement, got {:?}", decision.action);
    };
    assert!(new_node.instance_types.len() >= SPOT_TO_SPOT_MIN_TYPES);
    assert_eq!(new_node.capacity_types, vec![CapacityType::Spot]);
    assert!(decision.after <= decision.before * 0.9);
    // Stable: fewer than 15 types are 10% cheaper than the dearest kept.
    let cheaper_again = (1..=30)
        .filter(|c| spot_price(*c) <= decision.after * 0.9)
        .count();
    assert!(cheaper_again < SPOT_TO_SPOT_MIN_TYPES, "{cheaper_again}");
    let requirement = new_node
        .requirements
        .iter()
        .find(|r| r.key == INSTANCE_TYPE)
        .expect("an instance-type requirement");
    assert_eq!(requirement.values, new_node.instance_types);
}

#[test]
fn spot_to_spot_needs_fifteen_cheaper_types_or_the_pools_min_values() {
    // A 16-vCPU node: 14 types are 10% cheaper, one short of 15.
    assert!(decide(vec![running("mid", 16, &[1000])], &rules(0.1, 10)).is_none());
    let relaxed = Rules {
        min_types: 10,
        ..rules(0.1, 10)
    };
    let (decision, _) =
        decide(vec![running("mid", 16, &[1000])], &relaxed).expect("minValues 10 allows it");
    let Action::Replace(new_node) = &decision.action else {
        panic!("expected a replacement");
    };
    assert!(new_node.instance_types.len() >= 10);
}

#[test]
fn nothing_moves_for_less_than_the_threshold() {
    // Half price leaves exactly 15 types; 60% cheaper leaves 12.
    assert!(decide(vec![running("big", 30, &[1000])], &rules(0.5, 10)).is_some());
    assert!(decide(vec![running("big", 30, &[1000])], &rules(0.6, 10)).is_none());
}

#[test]
fn turning_spot_to_spot_off_keeps_spot_nodes() {
    let (existing, candidate) = running("big", 30, &[1000]);
    let mut cluster = cluster_of(vec![existing]);
    let off = Settings {
        spot_to_spot: false,
        ..settings()
    };
    let evaluation = run(&mut cluster, &[candidate], &rules(0.1, 10), &off);
    assert_eq!(evaluation.decision, None);
    assert!(evaluation.rejected[0].1.contains("turned off"));
}

#[test]
fn an_on_demand_node_moves_to_spot_without_the_fifteen_types_rule() {
    let (existing, mut candidate) = running("od", 4, &[1000]);
    candidate.capacity_type = CapacityType::OnDemand;
    candidate.price = 2.0 * spot_price(4);
    let mut cluster = cluster_of(vec![existing]);
    let evaluation = run(&mut cluster, &[candidate], &rules(0.1, 10), &settings());
    let decision = evaluation.decision.expect("on-demand to Spot");
    let Action::Replace(new_node) = &decision.action else {
        panic!("expected a replacement");
    };
    assert_eq!(new_node.capacity_types, vec![CapacityType::Spot]);
    assert!(decision.after <= 0.9 * 0.08);
}

#[test]
fn a_saving_that_does_not_pay_for_the_evictions_is_refused() {
    let (existing, candidate) = running("b", 8, &[1000, 1000]);
    let (other, _) = running("a", 8, &[]);
    let mut cluster = cluster_of(vec![existing, other]);
    let dear = Settings {
        eviction_price: 0.05,
        ..settings()
    };
    let evaluation = run(
        &mut cluster,
        std::slice::from_ref(&candidate),
        &rules(0.1, 10),
        &dear,
    );
    assert_eq!(evaluation.decision, None, "2 pods × $0.05 > $0.08 saved");
    let evaluation = run(&mut cluster, &[candidate], &rules(0.1, 10), &settings());
    assert!(evaluation.decision.is_some());
}

#[test]
fn multi_node_deletes_as_many_as_fit_within_the_budget() {
    let nodes = || {
        (0..4)
            .map(|i| running(&format!("n{i}"), 4, &[500]))
            .collect::<Vec<_>>()
    };
    let (decision, _) = decide(nodes(), &rules(0.1, 10)).expect("a multi-node delete");
    assert_eq!(decision.action, Action::Delete);
    assert_eq!(
        decision.candidates.len(),
        3,
        "three go, their pods on the fourth"
    );
    let (decision, _) = decide(nodes(), &rules(0.1, 2)).expect("within a budget of 2");
    assert_eq!(decision.candidates.len(), 2);
    assert!(
        decide(nodes(), &rules(0.1, 0)).is_none(),
        "a budget of 0 stops it"
    );
}

#[test]
fn a_node_that_is_going_anyway_takes_no_pods() {
    let (a, candidate) = running("a", 4, &[1000]);
    let (b, _) = running("b", 8, &[]);
    let going: HashSet<String> = ["b".to_owned()].into();
    let problem = Problem {
        nodes: vec![a, b],
        nodepools: vec![pool("p")],
        ..Problem::default()
    };
    let mut cluster = Cluster::new(problem, &going, types());
    let plan = cluster.simulate(&[Leaving {
        node: "a",
        nodepool: "p",
        capacity: &candidate.capacity,
        pods: &candidate.pods,
    }]);
    assert!(plan.to_existing.is_empty());
    assert_eq!(plan.new_nodes.len(), 1);
    // The cluster is as it was after the simulation.
    assert!(!cluster.problem().nodes[0].unavailable);
    assert_eq!(cluster.problem().nodes[0].pods.len(), 1);
}

/// A random cluster: nodes of 2 to 16 vCPU, each up to 6 pods that fit.
fn clusters() -> impl Strategy<Value = Vec<(u64, Vec<u64>)>> {
    let one = (
        prop::sample::select(vec![2u64, 4, 8, 16]),
        prop::collection::vec(250u64..2000, 0..6),
    )
        .prop_map(|(cpus, mut pods)| {
            while pods.iter().sum::<u64>() > cpus * 1000 {
                pods.pop();
            }
            (cpus, pods)
        });
    prop::collection::vec(one, 1..7)
}

/// One running node per `(cpus, pod cpus)` of `shape`, named `n0`, `n1`, …
fn running_all(shape: &[(u64, Vec<u64>)]) -> (Vec<ExistingNode>, Vec<Candidate>) {
    shape
        .iter()
        .enumerate()
        .map(|(i, (cpus, pods))| running(&format!("n{i}"), *cpus, pods))
        .unzip()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever it decides keeps the rules: within budget, saves the
    /// threshold, pays for its disruption, places every pod on the other
    /// nodes plus at most the one replacement, and is stable.
    #[test]
    fn every_decision_keeps_the_rules(shape in clusters(), threshold in 0u32..60, budget in 0usize..5) {
        let rules = rules(f64::from(threshold) / 100.0, budget);
        let (existing, candidates) = running_all(&shape);
        let mut cluster = cluster_of(existing.clone());
        let evaluation = run(&mut cluster, &candidates, &rules, &settings());
        let again = run(&mut cluster_of(existing), &candidates, &rules, &settings());
        prop_assert_eq!(&evaluation.decision, &again.decision, "deterministic");
        let Some(decision) = evaluation.decision else { return Ok(()); };
        prop_assert!(decision.candidates.len() <= budget);
        prop_assert!(decision.savings() >= rules.threshold * decision.before - 1e-9);
        prop_assert!(decision.value(&settings()) > 0.0);
        let going: Vec<&Candidate> = decision.candidates.iter().map(|&i| &candidates[i]).collect();
        let moving: usize = going.iter().map(|c| c.pods.len()).sum();
        prop_assert_eq!(decision.moves.len(), moving);
        let leaving: Vec<Leaving> = going
            .iter()
            .map(|c| Leaving { node: &c.node, nodepool: "p", capacity: &c.capacity, pods: &c.pods })
            .collect();
        let plan = cluster.simulate(&leaving);
        prop_assert!(plan.unschedulable.is_empty());
        match &decision.action {
            Action::Delete => prop_assert!(plan.new_nodes.is_empty()),
            Action::Replace(new_node) => {
                prop_assert_eq!(plan.new_nodes.len(), 1);
                prop_assert!(new_node.instance_types.len() >= SPOT_TO_SPOT_MIN_TYPES);
                for name in &new_node.instance_types {
                    let cpus: u64 = name[1..].parse().unwrap_or(u64::MAX);
                    prop_assert!(spot_price(cpus) <= decision.after + 1e-9);
                }
                let fits: Vec<f64> = plan.new_nodes[0]
                    .instance_types
                    .iter()
                    .map(|n| spot_price(n[1..].parse().unwrap_or(0)))
                    .collect();
                let cheaper_again = fits
                    .iter()
                    .filter(|p| **p <= decision.after * (1.0 - rules.threshold))
                    .count();
                prop_assert!(cheaper_again < SPOT_TO_SPOT_MIN_TYPES, "unstable: {}", cheaper_again);
            }
        }
    }

    /// The search prunes candidates that cannot beat the best found, and
    /// still no candidate alone is worth more than what it decides.
    #[test]
    fn no_single_candidate_is_worth_more_than_the_decision(shape in clusters(), threshold in 0u32..60, budget in 1usize..5) {
        let rules = rules(f64::from(threshold) / 100.0, budget);
        let (existing, candidates) = running_all(&shape);
        let mut cluster = cluster_of(existing);
        let best = run(&mut cluster, &candidates, &rules, &settings())
            .decision
            .map(|d| d.value(&settings()));
        for alone in candidates.chunks(1) {
            let Some(single) = run(&mut cluster, alone, &rules, &settings()).decision else { continue; };
            let single = single.value(&settings());
            prop_assert!(best.is_some_and(|best| best >= single - 1e-12), "{:?} < {}", best, single);
        }
    }
}
