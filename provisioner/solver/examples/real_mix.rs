//! Plan cost against a lower bound on a realistic mixed workload and real
//! EC2 instance types (us-east-1 facts from moto's DescribeInstanceTypes
//! data, on-demand prices from the bundled snapshot, Spot prices from the
//! snapshot's documented discount model, not market data). The workload,
//! pool and DaemonSets are described in `tests/common/real_mix.rs`.
//!
//! Run: `cargo run --release -p spotwright-solver --example real_mix`.
//!
//! The lower bound is `workload::cost_lower_bound` over the pool's allowed
//! types and their Spot offerings only: the pods' requests (DaemonSet
//! overhead excluded) at the cheapest Spot $/vCPU, or at the cheapest Spot
//! $/GiB, whichever total is larger. No plan can cost less. A tighter one,
//! the LP relaxation (`real_mix::lp_bound`), is printed beside it: fractional
//! instances covering the pods' total cpu and memory, each type counting
//! its allocatable minus the DaemonSets (so DaemonSet overhead included).

#[path = "../tests/common/real_mix.rs"]
mod real_mix;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use spotwright_solver::model::{CapacityType, InstanceType};
use spotwright_solver::solve;
use spotwright_solver::workload::cost_lower_bound;

/// Cheapest Spot $/h per vCPU and per GiB of capacity, with the type.
fn cheapest_units(types: &[InstanceType]) -> ((f64, String), (f64, String)) {
    let spot = |t: &InstanceType| {
        t.offerings
            .iter()
            .filter(|o| o.capacity_type == CapacityType::Spot)
            .map(|o| o.price)
            .min_by(f64::total_cmp)
            .unwrap_or(f64::INFINITY)
    };
    let best = |per: &dyn Fn(&InstanceType) -> f64| {
        types
            .iter()
            .map(|t| (per(t), t.name.clone()))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .expect("the pool allows some type")
    };
    (
        best(&|t| spot(t) * 1000.0 / t.capacity.cpu_millis as f64),
        best(&|t| spot(t) / real_mix::gib(t.capacity.memory_bytes)),
    )
}

fn main() {
    let all_types = real_mix::instance_types();
    let allowed = real_mix::allowed_spot_types(&all_types);
    let ((per_vcpu, vcpu_type), (per_gib, gib_type)) = cheapest_units(&allowed);
    println!(
        "{} instance types from the CSV, {} allowed by the pool (Spot, amd64, c/m/r, generation > 4).",
        all_types.len(),
        allowed.len()
    );
    println!(
        "Cheapest Spot $/vCPU·h {per_vcpu:.5} ({vcpu_type}), $/GiB·h {per_gib:.5} ({gib_type}) \
         (Spot = snapshot on-demand × the documented discount model, not market prices)."
    );
    println!();
    println!(
        "| pods | nodes | median solve | plan $/h (model Spot) | bound $/h (model Spot) | cpu-bound / memory-bound $/h | plan / bound | LP bound $/h | plan / LP | types used | unschedulable |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut used_by_size = Vec::new();
    for (size, runs) in [(500usize, 11usize), (2_000, 7), (10_000, 5)] {
        let workload = real_mix::workload(size);
        let input = workload.input();
        let mut times: Vec<Duration> = Vec::with_capacity(runs);
        let mut plan = None;
        for _ in 0..runs {
            let start = Instant::now();
            let p = solve(&input);
            times.push(start.elapsed());
            plan = Some(p);
        }
        times.sort();
        let median = times[runs / 2];
        let plan = plan.expect("at least one run");
        let placed: usize = plan.new_nodes.iter().map(|n| n.pods.len()).sum();
        assert_eq!(
            placed + plan.to_existing.len() + plan.unschedulable.len(),
            size
        );
        let cost: f64 = plan.new_nodes.iter().map(|n| n.price).sum();
        let bound = cost_lower_bound(&workload.pods, &allowed);
        let lp = real_mix::lp_bound(&workload.pods, &allowed, &workload.daemonsets);
        let cpu: f64 = workload
            .pods
            .iter()
            .map(|p| p.requests.cpu_millis as f64 / 1000.0)
            .sum();
        let gib: f64 = workload
            .pods
            .iter()
            .map(|p| real_mix::gib(p.requests.memory_bytes))
            .sum();
        let mut used: BTreeMap<String, usize> = BTreeMap::new();
        for node in &plan.new_nodes {
            *used.entry(node.instance_types[0].clone()).or_default() += 1;
        }
        println!(
            "| {size} | {} | {:.1} ms | {cost:.2} | {bound:.2} | {:.2} / {:.2} | {:.3} | {lp:.2} | {:.3} | {} | {} |",
            plan.new_nodes.len(),
            median.as_secs_f64() * 1e3,
            cpu * per_vcpu,
            gib * per_gib,
            cost / bound,
            cost / lp,
            used.len(),
            plan.unschedulable.len(),
        );
        for (pod, reason) in plan.unschedulable.iter().take(5) {
            println!("  unschedulable {pod}: {reason}");
        }
        used_by_size.push((size, used));
    }
    println!();
    println!("Instance types used (each node's cheapest listed type: nodes):");
    for (size, used) in used_by_size {
        let mut by_count: Vec<_> = used.into_iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let list: Vec<String> = by_count.iter().map(|(t, n)| format!("{t} {n}")).collect();
        println!("- {size} pods: {}", list.join(", "));
    }
}
