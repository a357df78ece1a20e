//! Underutilized consolidation (`consolidation::evaluate`) over a fleet of
//! about 1,000 nodes and 10,000 pods of real instance types, built in
//! `common/fleet.rs`: the solver's real mix packed onto types of at most
//! 16 vCPU, then a third of the pods deleted.
//!
//! Run: `cargo bench -p spotwright-provisioner --bench consolidation`.
//!
//! - `underutilized-1000-nodes/evaluate`: the full evaluation, multi-node
//!   then single-node.
//! - `…/evaluate-single-node-only`: the same with `max_multi: 1`, which
//!   skips the multi-node search (it needs two candidates at least); the
//!   difference to `evaluate` is the multi-node search's time.
//! - `…/simulate-each-candidate-alone`: every candidate simulated alone,
//!   what a sweep costs when no candidate can go, each passes the cheap
//!   bound and so nothing prunes the single-node search (the worst case).
//! - `…/simulate-100-candidates`: one simulation of the first 100
//!   candidates in `evaluate`'s order, the most the multi-node search
//!   tries at once.
//! - `one-simulation/*`: one single-node simulation, each iteration the
//!   next candidate: `as-evaluated`, then with the running pods left out,
//!   and with no existing nodes, to show where a simulation's time goes.
//!
//! Before the measurements it prints the fleet, the simulations and
//! decision of one evaluation, and a table of consolidating smaller fleets
//! of the same workload to a fixpoint: $/h before, after, and the LP bound.

#[path = "common/fleet.rs"]
mod fleet;

use std::collections::HashSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, SamplingMode};
use fleet::{evaluate_pool, rules, settings, Fleet, Launch};
use spotwright_provisioner::model::consolidation::{
    cheapest_to_disrupt_first, Candidate, Settings, MAX_MULTI_CANDIDATES,
};
use spotwright_provisioner::model::problem::Problem;
use spotwright_provisioner::model::simulate::{Cluster, Leaving};
use spotwright_solver::model::ExistingNode;

/// Pods packed before the scale-down, and the share deleted: about
/// 1,000 nodes and 10,000 pods remain.
const PODS_PACKED: usize = 15_000;
const SCALE_DOWN: f64 = 1.0 / 3.0;
const SEED: u64 = 42;

/// Which listed type each node of the benchmarked fleet runs as.
const LAUNCH: Launch = Launch::AnyListed;

/// The fixpoint table's fleets: the same workload at a twentieth, a tenth
/// and a fifth.
const FIXPOINT_PODS_PACKED: [usize; 3] = [750, 1_500, 3_000];

/// [`settings`] without the multi-node search.
fn single_node_only() -> Settings {
    Settings {
        max_multi: 1,
        ..settings()
    }
}

fn underutilized_fleet(pods_packed: usize, launch: Launch) -> Fleet {
    fleet::underutilized(pods_packed, launch, SCALE_DOWN, SEED)
}

fn leaving<'a>(candidates: &'a [Candidate], chosen: &[usize]) -> Vec<Leaving<'a>> {
    chosen.iter().map(|&i| candidates[i].leaving()).collect()
}

/// Prints the fleet and what one evaluation of it decides.
fn describe(fleet: &Fleet, candidates: &[Candidate]) {
    let mut types: Vec<(&str, usize)> = fleet.type_counts().into_iter().collect();
    types.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let commonest: Vec<String> = types
        .iter()
        .take(5)
        .map(|(name, count)| format!("{name} {count}"))
        .collect();
    println!(
        "fleet ({}): {} nodes, {} pods, {} instance types (most: {}), ${:.2}/h (LP bound ${:.2}/h)",
        LAUNCH.as_str(),
        fleet.nodes.len(),
        fleet.pod_count(),
        types.len(),
        commonest.join(", "),
        fleet.price(),
        fleet.lp_bound()
    );
    for (name, settings) in [
        ("full", settings()),
        ("single-node only", single_node_only()),
    ] {
        let start = Instant::now();
        let evaluation = evaluate_pool(&mut fleet.cluster(), candidates, &rules(), &settings);
        let elapsed = start.elapsed();
        let decision = evaluation.decision.as_ref().map_or_else(
            || "none".to_owned(),
            |d| {
                format!(
                    "{} {} nodes, ${:.3}/h -> ${:.3}/h, {} pods move",
                    d.action.as_str(),
                    d.candidates.len(),
                    d.before,
                    d.after,
                    d.moves.len()
                )
            },
        );
        println!(
            "evaluate ({name}): {} simulations, {} rejected, decision: {decision}; one run {:.2?}",
            evaluation.simulations,
            evaluation.rejected.len(),
            elapsed
        );
    }
}

/// The table of consolidating smaller fleets of the same workload until
/// no decision pays.
fn fixpoint_table() {
    println!();
    println!("| nodes run as | pods packed → kept | nodes before → after | decisions (delete / replace) | simulations | time | $/h before | $/h after | LP bound $/h | after / LP |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for launch in [Launch::Cheapest, Launch::AnyListed] {
        for pods_packed in FIXPOINT_PODS_PACKED {
            fixpoint_row(launch, pods_packed);
        }
    }
    println!();
}

fn fixpoint_row(launch: Launch, pods_packed: usize) {
    let mut fleet = underutilized_fleet(pods_packed, launch);
    let (nodes, pods, before) = (fleet.nodes.len(), fleet.pod_keys().len(), fleet.price());
    let start = Instant::now();
    let fixpoint = fleet::consolidate_to_fixpoint(&mut fleet, &rules(), &settings(), 1_000);
    let elapsed = start.elapsed();
    assert!(fixpoint.settled, "no fixpoint within 1,000 decisions");
    assert_eq!(fleet.pod_keys().len(), pods, "every pod is still running");
    assert!(fleet.overfull_nodes().is_empty());
    let (after, lp) = (fleet.price(), fleet.lp_bound());
    println!(
        "| {} | {pods_packed} → {pods} | {nodes} → {} | {} / {} | {} | {:.1} s | {before:.3} | {after:.3} | {lp:.3} | {:.3} |",
        launch.as_str(),
        fleet.nodes.len(),
        fixpoint.deletes,
        fixpoint.replacements,
        fixpoint.simulations,
        elapsed.as_secs_f64(),
        after / lp
    );
}

fn underutilized_1000_nodes(c: &mut Criterion) {
    let fleet = underutilized_fleet(PODS_PACKED, LAUNCH);
    let candidates = fleet.candidates();
    describe(&fleet, &candidates);
    let mut cluster = fleet.cluster();
    let order = cheapest_to_disrupt_first(&candidates);
    let most_multi = order.len().min(MAX_MULTI_CANDIDATES);

    let mut group = c.benchmark_group("consolidation/underutilized-1000-nodes");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(60))
        .warm_up_time(Duration::from_secs(1));
    group.bench_function("evaluate", |b| {
        b.iter(|| evaluate_pool(&mut cluster, black_box(&candidates), &rules(), &settings()))
    });
    group.bench_function("evaluate-single-node-only", |b| {
        b.iter(|| {
            evaluate_pool(
                &mut cluster,
                black_box(&candidates),
                &rules(),
                &single_node_only(),
            )
        })
    });
    // A sweep in which no candidate can go and each passes the cheap
    // bound: every one is simulated alone, nothing prunes.
    let each_alone: Vec<Vec<Leaving>> = (0..candidates.len())
        .map(|i| leaving(&candidates, &[i]))
        .collect();
    group.bench_function("simulate-each-candidate-alone", |b| {
        b.iter(|| {
            for one in &each_alone {
                black_box(cluster.simulate(one));
            }
        })
    });
    let first_multi = leaving(&candidates, &order[..most_multi]);
    group.bench_function("simulate-100-candidates", |b| {
        b.iter(|| cluster.simulate(black_box(&first_multi)))
    });
    group.finish();
}

/// Single-node simulations over the 1,000-node fleet (each iteration the
/// next candidate), as `evaluate` makes them and with parts of the input
/// taken away, to show where a simulation's time goes: the running pods
/// (counted for spread and anti-affinity), the existing nodes.
fn one_simulation_breakdown(c: &mut Criterion) {
    let fleet = underutilized_fleet(PODS_PACKED, LAUNCH);
    let candidates = fleet.candidates();
    let none = HashSet::new();
    let without_running_pods = Problem {
        nodes: fleet
            .problem()
            .nodes
            .into_iter()
            .map(|n| ExistingNode {
                pods: Vec::new(),
                ..n
            })
            .collect(),
        ..fleet.problem()
    };
    let without_nodes = Problem {
        nodes: Vec::new(),
        ..fleet.problem()
    };
    let all_types = fleet.instance_types.clone();
    let variants = [
        ("as-evaluated", fleet.cluster()),
        (
            "no-running-pods",
            Cluster::new(without_running_pods, &none, all_types.clone()),
        ),
        (
            "no-existing-nodes",
            Cluster::new(without_nodes, &none, all_types),
        ),
    ];
    let mut group = c.benchmark_group("consolidation/one-simulation");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(5));
    for (name, mut cluster) in variants {
        let mut next = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                next = (next + 1) % candidates.len();
                cluster.simulate(&leaving(&candidates, &[next]))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, underutilized_1000_nodes, one_simulation_breakdown);

fn main() {
    // `cargo bench` passes `--bench`; a test run of the target (`cargo test
    // --benches`, unoptimized) skips the table.
    if std::env::args().any(|a| a == "--bench") {
        fixpoint_table();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
