//! The solver on real EC2 instance types (moto's DescribeInstanceTypes
//! facts, snapshot prices; Spot prices from the snapshot's documented
//! discount model) and a realistic 500-pod mix: every pod placed, no node
//! over its allocatable, pool and topology rules kept, and the cost within
//! 1.5× the lower bound, so a packing regression fails here.

#[path = "common/real_mix.rs"]
mod real_mix;

use std::collections::{BTreeMap, BTreeSet};

use spotwright_solver::model::{CapacityType, InstanceType, PendingPod};
use spotwright_solver::workload::cost_lower_bound;
use spotwright_solver::{launchable_types, solve, Input};

const PODS: usize = 500;

#[test]
fn the_facts_csv_is_real_and_priced() {
    let facts = real_mix::facts();
    assert!(facts.len() > 500, "{} types", facts.len());
    let m5 = facts
        .iter()
        .find(|(name, _, _)| name == "m5.large")
        .expect("m5.large is in the CSV");
    assert_eq!(
        (
            m5.1.vcpus,
            m5.1.memory_mib,
            m5.1.max_enis,
            m5.1.ipv4_per_eni
        ),
        (2, 8192, 3, 10)
    );
    assert_eq!(m5.2, "amd64");
    let types = real_mix::instance_types();
    assert_eq!(types.len(), facts.len(), "every CSV type has a price");
    let m5 = types.iter().find(|t| t.name == "m5.large").unwrap();
    assert_eq!(m5.allocatable.cpu_millis, 1930);
    assert_eq!(m5.allocatable.pods, 29);
    assert_eq!(m5.offerings.len(), 6, "Spot and on-demand in three zones");
    assert_eq!(m5.labels["spotwright.io/instance-generation"], "5");
    assert_eq!(m5.labels["spotwright.io/instance-category"], "m");
    let allowed = real_mix::allowed_spot_types(&types);
    assert!(allowed.len() > 100, "{} allowed types", allowed.len());
    assert!(allowed.iter().all(|t| t.name.starts_with(['c', 'm', 'r'])));
}

#[test]
fn a_realistic_mix_is_placed_within_allocatable_and_near_the_bound() {
    let workload = real_mix::workload(PODS);
    let input = workload.input();
    let plan = solve(&input);
    assert!(
        plan.unschedulable.is_empty(),
        "unschedulable: {:?}",
        &plan.unschedulable[..plan.unschedulable.len().min(5)]
    );
    assert!(plan.to_existing.is_empty());
    assert_eq!(plan, solve(&input), "deterministic");

    let pods: BTreeMap<&str, &PendingPod> =
        workload.pods.iter().map(|p| (p.key.as_str(), p)).collect();
    let types: BTreeMap<&str, &InstanceType> = workload
        .instance_types
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let ds_cpu: u64 = workload
        .daemonsets
        .iter()
        .map(|d| d.requests.cpu_millis)
        .sum();
    let ds_mem: u64 = workload
        .daemonsets
        .iter()
        .map(|d| d.requests.memory_bytes)
        .sum();
    let mut seen = BTreeSet::new();
    let mut web_per_zone: BTreeMap<&str, usize> = BTreeMap::new();
    for node in &plan.new_nodes {
        assert_eq!(node.capacity_types, vec![CapacityType::Spot]);
        assert!(
            node.instance_types.len() >= 10,
            "minValues 10: {:?}",
            node.instance_types
        );
        let cpu: u64 = node
            .pods
            .iter()
            .map(|k| pods[k.as_str()].requests.cpu_millis)
            .sum();
        let mem: u64 = node
            .pods
            .iter()
            .map(|k| pods[k.as_str()].requests.memory_bytes)
            .sum();
        for name in &node.instance_types {
            let t = types[name.as_str()];
            assert!(real_mix::pool_allows(t), "{name} is outside the pool");
            assert!(
                cpu + ds_cpu <= t.allocatable.cpu_millis
                    && mem + ds_mem <= t.allocatable.memory_bytes
                    && node.pods.len() as u64 + workload.daemonsets.len() as u64
                        <= t.allocatable.pods,
                "{} pods ({cpu}m, {mem} B) plus DaemonSets overflow {name}",
                node.pods.len()
            );
            let spot = t
                .offerings
                .iter()
                .filter(|o| o.capacity_type == CapacityType::Spot)
                .map(|o| o.price)
                .fold(f64::INFINITY, f64::min);
            assert!(node.price <= spot + 1e-12, "{name}: price above its Spot");
        }
        let mut services = BTreeSet::new();
        for key in &node.pods {
            assert!(seen.insert(key.as_str()), "{key} placed twice");
            let pod = pods[key.as_str()];
            if !pod.hostname_anti_affinity.is_empty() {
                assert!(
                    services.insert(&pod.labels["app"]),
                    "two {} replicas on one node",
                    pod.labels["app"]
                );
            }
            if pod.labels["app"] == "web" {
                assert_eq!(node.zones.len(), 1, "a web node is pinned to one zone");
                *web_per_zone.entry(node.zones[0].as_str()).or_default() += 1;
            }
        }
    }
    assert_eq!(seen.len(), PODS, "every pod placed once");
    let counts: Vec<usize> = real_mix::ZONES
        .iter()
        .map(|z| web_per_zone.get(z).copied().unwrap_or(0))
        .collect();
    assert!(
        counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1,
        "web zone skew: {counts:?}"
    );

    let cost: f64 = plan.new_nodes.iter().map(|n| n.price).sum();
    let allowed = real_mix::allowed_spot_types(&workload.instance_types);
    let bound = cost_lower_bound(&workload.pods, &allowed);
    let lp = real_mix::lp_bound(&workload.pods, &allowed, &workload.daemonsets);
    assert!(bound > 0.0 && lp >= bound - 1e-9, "bound {bound}, LP {lp}");
    assert!(cost >= lp - 1e-9, "plan {cost} below the LP bound {lp}");
    assert!(
        cost <= 1.5 * bound,
        "plan ${cost:.2}/h is {:.2}× the lower bound ${bound:.2}/h",
        cost / bound
    );
}

#[test]
fn solving_with_only_the_launchable_types_gives_the_same_plan() {
    let workload = real_mix::workload(PODS);
    let input = workload.input();
    let launchable = launchable_types(
        &workload.nodepools,
        &workload.daemonsets,
        input.instance_types,
    );

    let expected: Vec<&str> = workload
        .instance_types
        .iter()
        .filter(|t| real_mix::pool_allows(t))
        .map(|t| t.name.as_str())
        .collect();
    let kept: Vec<&str> = launchable.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(kept, expected);
    assert!(kept.len() < workload.instance_types.len());

    let narrowed = Input {
        instance_types: &launchable,
        ..input
    };
    assert_eq!(solve(&narrowed), solve(&input));
}
