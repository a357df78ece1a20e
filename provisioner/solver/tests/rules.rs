//! One test per solver rule, through the public API.

mod common;

use common::*;
use spotwright_solver::model::*;
use spotwright_solver::{solve, Input, Plan};

struct Case {
    pods: Vec<PendingPod>,
    nodes: Vec<ExistingNode>,
    pools: Vec<NodePoolFacts>,
    daemonsets: Vec<DaemonSetFacts>,
    types: Vec<InstanceType>,
}

impl Case {
    fn new(types: Vec<InstanceType>) -> Self {
        Case {
            pods: vec![],
            nodes: vec![],
            pools: vec![pool("default")],
            daemonsets: vec![],
            types,
        }
    }

    fn solve(&self) -> Plan {
        solve(&Input {
            pods: &self.pods,
            nodes: &self.nodes,
            nodepools: &self.pools,
            daemonsets: &self.daemonsets,
            instance_types: &self.types,
        })
    }
}

fn sizes(zones: &[&str]) -> Vec<InstanceType> {
    [1, 2, 4, 8, 16]
        .iter()
        .map(|c| itype(&format!("m{c}"), *c, "amd64", zones, 0.1))
        .collect()
}

fn reason(plan: &Plan, pod: &str) -> String {
    plan.unschedulable
        .iter()
        .find(|(k, _)| k == pod)
        .map(|(_, r)| r.clone())
        .unwrap_or_default()
}

#[test]
fn pods_share_a_node_of_the_cheapest_fitting_type_unless_a_new_node_is_cheaper() {
    let mut case = Case::new(sizes(&["a"]));
    case.pods = (0..3).map(|i| pod(&format!("p{i}"), 1000, 1)).collect();
    let plan = case.solve();
    // m2 (two pods) + m1 (0.3) beats growing to an m4 (0.4).
    assert_eq!(plan.new_nodes.len(), 2, "{plan:?}");
    let shared = &plan.new_nodes[0];
    assert_eq!(shared.pods.len(), 2);
    assert_eq!(
        shared.instance_types,
        vec!["m2", "m4", "m8", "m16"],
        "every type that fits, cheapest first"
    );
    assert!(
        (shared.price - 0.2).abs() < 1e-9,
        "spot m2: {}",
        shared.price
    );
    assert!(shared.requirements.contains(&req(
        INSTANCE_TYPE,
        Operator::In,
        &["m2", "m4", "m8", "m16"]
    )));
    let total: f64 = plan.new_nodes.iter().map(|n| n.price).sum();
    assert!((total - 0.3).abs() < 1e-9);
}

#[test]
fn gt_and_lt_on_instance_cpu_restrict_types() {
    let mut case = Case::new(sizes(&["a"]));
    let mut p = pod("p", 100, 0);
    p.required_affinity = vec![vec![
        req(INSTANCE_CPU, Operator::Gt, &["2"]),
        req(INSTANCE_CPU, Operator::Lt, &["16"]),
    ]];
    case.pods = vec![p];
    let plan = case.solve();
    assert_eq!(plan.new_nodes[0].instance_types, vec!["m4", "m8"]);
}

#[test]
fn affinity_terms_are_ored_and_node_selector_is_anded() {
    let mut types = sizes(&["a"]);
    types.push(itype("g4", 4, "arm64", &["a"], 0.05));
    let mut case = Case::new(types);
    let mut p = pod("p", 100, 0);
    p.required_affinity = vec![
        vec![req(INSTANCE_CPU, Operator::In, &["16"])],
        vec![req(ARCH, Operator::In, &["arm64"])],
    ];
    p.node_selector = labels(&[(ARCH, "arm64")]);
    case.pods = vec![p];
    let plan = case.solve();
    assert_eq!(plan.new_nodes[0].instance_types, vec!["g4"]);
    assert!(plan.new_nodes[0]
        .requirements
        .contains(&req(ARCH, Operator::In, &["arm64"])));
}

#[test]
fn the_first_satisfiable_term_decides_a_new_node() {
    let mut case = Case::new(sizes(&["a", "b"]));
    let mut p = pod("p", 100, 0);
    p.required_affinity = vec![
        // Nothing offers 3 CPUs: skipped.
        vec![req(INSTANCE_CPU, Operator::In, &["3"])],
        // The first a launch can meet: on-demand, although Spot is cheaper.
        vec![req(CAPACITY_TYPE, Operator::In, &["on-demand"])],
        vec![req(ZONE, Operator::In, &["b"])],
    ];
    case.pods = vec![p];
    let plan = case.solve();
    let node = &plan.new_nodes[0];
    assert_eq!(node.capacity_types, vec![CapacityType::OnDemand]);
    assert_eq!(node.zones, vec!["a", "b"]);
    assert!(node
        .requirements
        .iter()
        .any(|r| r.key == CAPACITY_TYPE && r.values == ["on-demand"]));
}

#[test]
fn untolerated_pool_taint_is_the_reason() {
    let mut case = Case::new(sizes(&["a"]));
    case.pools[0].taints = vec![taint("team", "x", TaintEffect::NoSchedule)];
    case.pods = vec![pod("plain", 100, 0), {
        let mut p = pod("tolerant", 100, 0);
        p.tolerations = vec![tolerate("team")];
        p
    }];
    let plan = case.solve();
    assert_eq!(plan.new_nodes.len(), 1);
    assert_eq!(plan.new_nodes[0].pods, vec!["ns/tolerant"]);
    assert!(
        reason(&plan, "ns/plain").contains("pool default has taint team=x:NoSchedule"),
        "{plan:?}"
    );
}

#[test]
fn the_spot_taint_of_a_mixed_pool_keeps_only_its_spot_nodes_from_untolerating_pods() {
    let mut case = Case::new(sizes(&["a"]));
    case.pools[0].taints = vec![taint(CAPACITY_TYPE, "spot", TaintEffect::NoSchedule)];
    case.pods = vec![pod("plain", 100, 0), {
        let mut p = pod("tolerant", 100, 0);
        p.tolerations = vec![tolerate(CAPACITY_TYPE)];
        p
    }];
    let plan = case.solve();
    let node_of = |name: &str| {
        plan.new_nodes
            .iter()
            .find(|n| n.pods.iter().any(|p| p == name))
            .unwrap_or_else(|| panic!("{name} has no new node: {plan:?}"))
    };
    // The untolerating pod gets an on-demand node (the tolerating one may share it).
    assert_eq!(
        node_of("ns/plain").capacity_types,
        vec![CapacityType::OnDemand]
    );
    // Alone, the tolerating pod may have the pool's Spot too, cheapest first.
    let plain = case.pods.remove(0);
    let alone = case.solve();
    assert_eq!(alone.new_nodes.len(), 1, "{alone:?}");
    assert_eq!(
        alone.new_nodes[0].capacity_types,
        vec![CapacityType::Spot, CapacityType::OnDemand]
    );
    case.pods.insert(0, plain);
    // A Spot-only pool has nowhere for the untolerating pod, and says why.
    case.pools[0].requirements = vec![req(CAPACITY_TYPE, Operator::In, &["spot"])];
    let plan = case.solve();
    assert!(
        reason(&plan, "ns/plain")
            .contains("spotwright.io/capacity-type=spot:NoSchedule on its Spot nodes"),
        "{plan:?}"
    );
}

#[test]
fn prefer_no_schedule_does_not_block() {
    let mut case = Case::new(sizes(&["a"]));
    case.pools[0].taints = vec![taint("soft", "x", TaintEffect::PreferNoSchedule)];
    case.pods = vec![pod("p", 100, 0)];
    assert_eq!(case.solve().new_nodes.len(), 1);
}

#[test]
fn daemonset_overhead_is_counted_per_type_with_its_own_selector_and_tolerations() {
    let mut types = vec![
        itype("amd2", 2, "amd64", &["a"], 0.1),
        itype("arm2", 2, "arm64", &["a"], 0.1),
    ];
    types.push(itype("arm4", 4, "arm64", &["a"], 0.1));
    let mut case = Case::new(types);
    case.pools[0].taints = vec![taint("pool", "p", TaintEffect::NoSchedule)];
    let ds = |name: &str, cpu: u64, arch: Option<&str>, tolerates: bool| DaemonSetFacts {
        name: name.into(),
        requests: res(cpu, 0),
        node_selector: arch.map(|a| labels(&[(ARCH, a)])).unwrap_or_default(),
        required_affinity: vec![],
        tolerations: if tolerates {
            vec![tolerate("pool")]
        } else {
            vec![]
        },
    };
    case.daemonsets = vec![
        ds("everywhere", 200, None, true),
        ds("arm-agent", 500, Some("arm64"), true),
        ds("does-not-tolerate", 1000, None, false),
    ];
    let mut p = pod("p", 1500, 0);
    p.tolerations = vec![tolerate("pool")];
    case.pods = vec![p];
    let plan = case.solve();
    let node = &plan.new_nodes[0];
    // amd2: 1500 + 200 fits 2000; arm2: 1500 + 700 does not; arm4 does.
    assert_eq!(node.instance_types, vec!["amd2", "arm4"]);
    assert_eq!(
        node.requests.cpu_millis, 1700,
        "pod plus the cheapest type's DaemonSets"
    );
    assert_eq!(node.requests.pods, 2);
}

#[test]
fn nodepool_limits_are_never_exceeded_and_are_the_reason() {
    let mut case = Case::new(vec![itype("m4", 4, "amd64", &["a"], 0.1)]);
    case.pools[0].limits = vec![limit(LimitedResource::Cpu, 10_000, 2_000)];
    case.pods = (0..3).map(|i| pod(&format!("p{i}"), 3000, 1)).collect();
    let plan = case.solve();
    assert_eq!(
        plan.new_nodes.len(),
        2,
        "2 used + 4 + 4 = 10; a third node would breach"
    );
    assert_eq!(plan.unschedulable.len(), 1);
    assert!(
        plan.unschedulable[0]
            .1
            .contains("exceeds NodePool default's cpu limit"),
        "{plan:?}"
    );
}

#[test]
fn heavier_pool_first_then_name() {
    let mut case = Case::new(sizes(&["a"]));
    case.pools = vec![pool("b"), pool("a"), {
        let mut heavy = pool("z-heavy");
        heavy.weight = 10;
        heavy.taints = vec![taint("heavy", "1", TaintEffect::NoSchedule)];
        heavy
    }];
    // Larger, so it is placed first and opens the heavy pool's node.
    let mut tolerant = pod("tolerant", 200, 0);
    tolerant.tolerations = vec![tolerate("heavy")];
    case.pods = vec![pod("plain", 100, 0), tolerant];
    let plan = case.solve();
    let pool_of = |key: &str| {
        plan.new_nodes
            .iter()
            .find(|n| n.pods.iter().any(|p| p == key))
            .map(|n| n.nodepool.clone())
    };
    assert_eq!(pool_of("ns/tolerant").as_deref(), Some("z-heavy"));
    assert_eq!(
        pool_of("ns/plain").as_deref(),
        Some("a"),
        "equal weight: by name"
    );
}

#[test]
fn min_values_stops_a_node_from_growing_and_explains_the_impossible() {
    let mut case = Case::new(sizes(&["a"]));
    let mut minimum = req(INSTANCE_TYPE, Operator::Exists, &[]);
    minimum.min_values = Some(3);
    case.pools[0].requirements = vec![minimum.clone()];
    // 3 types fit a 3-cpu node (m4, m8, m16); 5 cpu leaves only 2.
    case.pods = vec![pod("a", 3000, 0), pod("b", 2000, 0), pod("huge", 9000, 0)];
    let plan = case.solve();
    for node in &plan.new_nodes {
        assert!(node.instance_types.len() >= 3, "{node:?}");
        let carried = node
            .requirements
            .iter()
            .find(|r| r.key == INSTANCE_TYPE && r.operator == Operator::In);
        assert_eq!(carried.and_then(|r| r.min_values), Some(3));
    }
    assert_eq!(plan.new_nodes.len(), 2, "a and b may not share: {plan:?}");
    assert!(reason(&plan, "ns/huge").contains("minValues 3"), "{plan:?}");
}

#[test]
fn hard_zone_spread_pins_each_node_to_one_zone_within_max_skew() {
    let mut case = Case::new(sizes(&["a", "b", "c"]));
    case.pods = (0..6)
        .map(|i| {
            let mut p = pod(&format!("p{i}"), 100, 0);
            p.labels = labels(&[("app", "web")]);
            p.topology_spread = vec![spread(ZONE, 1, "web")];
            p
        })
        .collect();
    let plan = case.solve();
    let mut per_zone = std::collections::BTreeMap::new();
    for node in &plan.new_nodes {
        assert_eq!(node.zones.len(), 1);
        *per_zone.entry(node.zones[0].clone()).or_insert(0) += node.pods.len();
    }
    assert_eq!(
        per_zone.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2]
    );
}

#[test]
fn zone_spread_counts_pods_already_running() {
    let mut case = Case::new(sizes(&["a", "b"]));
    let mut busy = node("busy", "a", 0, 0);
    busy.pods = vec![
        PlacedPod {
            namespace: "ns".into(),
            labels: labels(&[("app", "web")]).into()
        };
        2
    ];
    case.nodes = vec![busy];
    case.pods = (0..2)
        .map(|i| {
            let mut p = pod(&format!("p{i}"), 100, 0);
            p.labels = labels(&[("app", "web")]);
            p.topology_spread = vec![spread(ZONE, 1, "web")];
            p
        })
        .collect();
    let plan = case.solve();
    assert!(
        plan.new_nodes.iter().all(|n| n.zones == vec!["b"]),
        "{plan:?}"
    );
}

#[test]
fn hard_hostname_spread_puts_max_skew_per_node() {
    let mut case = Case::new(sizes(&["a"]));
    case.pods = (0..4)
        .map(|i| {
            let mut p = pod(&format!("p{i}"), 100, 0);
            p.labels = labels(&[("app", "web")]);
            p.topology_spread = vec![spread(HOSTNAME, 2, "web")];
            p
        })
        .collect();
    let plan = case.solve();
    assert_eq!(plan.new_nodes.len(), 2);
    assert!(plan.new_nodes.iter().all(|n| n.pods.len() == 2));
}

#[test]
fn hostname_anti_affinity_separates_pods_and_avoids_existing_matches() {
    let mut case = Case::new(sizes(&["a"]));
    let mut occupied = node("occupied", "a", 16_000, 0);
    occupied.pods = vec![PlacedPod {
        namespace: "ns".into(),
        labels: labels(&[("app", "db")]).into(),
    }];
    case.nodes = vec![occupied, node("free", "a", 16_000, 0)];
    case.pods = (0..3)
        .map(|i| {
            let mut p = pod(&format!("p{i}"), 100, 0);
            p.labels = labels(&[("app", "db")]);
            p.hostname_anti_affinity = vec![selector("app", "db")];
            p
        })
        .collect();
    let plan = case.solve();
    assert_eq!(plan.to_existing.len(), 1);
    assert_eq!(plan.to_existing[0].1, "free");
    assert_eq!(plan.new_nodes.len(), 2);
    assert!(plan.new_nodes.iter().all(|n| n.pods.len() == 1));
}

#[test]
fn existing_nodes_first_fullest_first_unavailable_and_tainted_skipped() {
    let mut case = Case::new(sizes(&["a"]));
    let mut gone = node("gone", "a", 16_000, 15_000);
    gone.unavailable = true;
    let mut tainted = node("tainted", "a", 16_000, 15_000);
    tainted.taints = vec![taint(
        "spotwright.io/disrupted",
        "x",
        TaintEffect::NoSchedule,
    )];
    case.nodes = vec![
        node("roomy", "a", 16_000, 0),
        node("almost-full", "a", 4_000, 3_000),
        gone,
        tainted,
    ];
    case.pods = vec![pod("p", 500, 0)];
    let plan = case.solve();
    assert_eq!(
        plan.to_existing,
        vec![("ns/p".to_string(), "almost-full".to_string())]
    );
    assert!(plan.new_nodes.is_empty());
}

#[test]
fn unavailable_offerings_are_not_used() {
    let mut t = itype("m2", 2, "amd64", &["a", "b"], 0.1);
    for o in &mut t.offerings {
        o.available = !(o.capacity_type == CapacityType::Spot);
    }
    t.offerings[3].available = false; // on-demand in b
    let mut case = Case::new(vec![t]);
    case.pods = vec![pod("p", 100, 0)];
    let plan = case.solve();
    let node = &plan.new_nodes[0];
    assert_eq!(node.capacity_types, vec![CapacityType::OnDemand]);
    assert_eq!(node.zones, vec!["a"]);
    assert!((node.price - 0.4).abs() < 1e-9);
}

#[test]
fn spot_before_on_demand_even_when_on_demand_is_cheaper() {
    let mut t = itype("m2", 2, "amd64", &["a"], 0.1);
    t.offerings[0].price = 0.5; // spot
    t.offerings[1].price = 0.3; // on-demand
    let mut case = Case::new(vec![t]);
    case.pods = vec![pod("p", 100, 0)];
    let plan = case.solve();
    assert_eq!(
        plan.new_nodes[0].capacity_types,
        vec![CapacityType::Spot, CapacityType::OnDemand]
    );
    assert!((plan.new_nodes[0].price - 0.5).abs() < 1e-9);
    case.pools[0].requirements = vec![req(CAPACITY_TYPE, Operator::In, &["on-demand"])];
    let plan = case.solve();
    assert_eq!(
        plan.new_nodes[0].capacity_types,
        vec![CapacityType::OnDemand]
    );
    assert!((plan.new_nodes[0].price - 0.3).abs() < 1e-9);
}

#[test]
fn extended_resources_select_the_types_that_have_them() {
    let mut gpu = itype("gpu4", 4, "amd64", &["a"], 1.0);
    gpu.allocatable.extended = vec![("nvidia.com/gpu".into(), 1)];
    let mut case = Case::new(vec![itype("m4", 4, "amd64", &["a"], 0.1), gpu]);
    let mut p = pod("trainer", 100, 0);
    p.requests.extended = vec![("nvidia.com/gpu".into(), 1)];
    case.pods = vec![p.clone(), {
        let mut q = p;
        q.key = "ns/trainer2".into();
        q
    }];
    let plan = case.solve();
    assert_eq!(plan.new_nodes.len(), 2, "one gpu per node");
    assert!(plan
        .new_nodes
        .iter()
        .all(|n| n.instance_types == vec!["gpu4"]));
}

#[test]
fn unsupported_topology_key_and_oversized_pods_get_reasons() {
    let mut case = Case::new(sizes(&["a"]));
    let mut odd = pod("odd", 100, 0);
    odd.topology_spread = vec![spread("example.com/rack", 1, "x")];
    case.pods = vec![odd, pod("huge", 64_000, 0)];
    let plan = case.solve();
    assert!(reason(&plan, "ns/odd").contains("unsupported key example.com/rack"));
    assert!(
        reason(&plan, "ns/huge").contains("no instance type has room"),
        "{plan:?}"
    );
}

#[test]
fn slack_on_small_nodes_is_filled_before_big_nodes_grow() {
    let mut case = Case::new(sizes(&["a"]));
    let mut pods: Vec<PendingPod> = (0..2)
        .map(|i| {
            let mut p = pod(&format!("lonely{i}"), 2500, 0);
            p.labels = labels(&[("app", "lonely")]);
            p.hostname_anti_affinity = vec![selector("app", "lonely")];
            p
        })
        .collect();
    pods.extend((0..3).map(|i| pod(&format!("filler{i}"), 1000, 0)));
    case.pods = pods;
    let plan = case.solve();
    // Two m4 (2.5 + 1.5 slack each) take a filler each; the third is
    // cheaper on its own m1 (0.1) than growing an m4 to an m8 (+0.4).
    assert_eq!(plan.new_nodes.len(), 3, "{plan:?}");
    let total: f64 = plan.new_nodes.iter().map(|n| n.price).sum();
    assert!((total - 0.9).abs() < 1e-9, "{total}");
}

#[test]
fn karpenter_benchmark_workload_is_fully_placed_with_one_nginx_per_node() {
    use spotwright_solver::workload::{cost_lower_bound, karpenter_benchmark};
    let workload = karpenter_benchmark(2_000);
    let classes = |prefix: &str| {
        workload
            .pods
            .iter()
            .filter(|p| p.labels.keys().any(|k| k.starts_with(prefix)))
            .count()
    };
    assert_eq!(
        workload
            .pods
            .iter()
            .filter(|p| !p.hostname_anti_affinity.is_empty())
            .count(),
        400
    );
    assert_eq!(
        workload
            .pods
            .iter()
            .filter(|p| !p.topology_spread.is_empty())
            .count(),
        800
    );
    assert_eq!(classes("my-affininity"), 400);
    let plan = solve(&workload.input());
    assert!(
        plan.unschedulable.is_empty(),
        "{:?}",
        plan.unschedulable.first()
    );
    assert_eq!(
        plan.new_nodes.iter().map(|n| n.pods.len()).sum::<usize>(),
        2_000
    );
    assert!(
        plan.new_nodes.len() >= 400,
        "one node per nginx pod at least"
    );
    for node in &plan.new_nodes {
        let nginx = node
            .pods
            .iter()
            .filter(|k| {
                workload
                    .pods
                    .iter()
                    .any(|p| &p.key == *k && p.labels.contains_key("app"))
            })
            .count();
        assert!(nginx <= 1);
        let counted = node.pods.iter().any(|k| {
            workload
                .pods
                .iter()
                .any(|p| &p.key == k && p.labels.contains_key("my-label"))
        });
        if counted {
            assert_eq!(
                node.zones.len(),
                1,
                "my-label pods are counted by zone spreads, so their node is pinned"
            );
        }
    }
    let cost: f64 = plan.new_nodes.iter().map(|n| n.price).sum();
    let bound = cost_lower_bound(&workload.pods, &workload.instance_types);
    assert!(
        cost >= bound && cost < 1.5 * bound,
        "cost {cost} vs bound {bound}"
    );
}

#[test]
fn in_flight_node_claims_take_pods_like_nodes() {
    let mut case = Case::new(sizes(&["a"]));
    let mut claim = node("claim-1", "a", 4_000, 0);
    claim.in_flight = true;
    case.nodes = vec![claim];
    case.pods = vec![pod("p", 1000, 0)];
    let plan = case.solve();
    assert_eq!(
        plan.to_existing,
        vec![("ns/p".to_string(), "claim-1".to_string())]
    );
}

#[test]
fn no_execute_taints_block_too() {
    let mut case = Case::new(sizes(&["a"]));
    case.pools[0].taints = vec![taint("dedicated", "x", TaintEffect::NoExecute)];
    case.pods = vec![pod("p", 100, 0)];
    let plan = case.solve();
    assert!(
        reason(&plan, "ns/p").contains("dedicated=x:NoExecute"),
        "{plan:?}"
    );
}

#[test]
fn pod_slots_are_a_resource() {
    let mut t = itype("m16", 16, "amd64", &["a"], 0.1);
    t.allocatable.pods = 3;
    let mut case = Case::new(vec![t]);
    case.daemonsets = vec![DaemonSetFacts {
        name: "agent".into(),
        requests: res(10, 0),
        node_selector: Default::default(),
        required_affinity: vec![],
        tolerations: vec![],
    }];
    case.pods = (0..5).map(|i| pod(&format!("p{i}"), 100, 0)).collect();
    let plan = case.solve();
    // 3 slots minus the DaemonSet pod: two pods per node.
    assert_eq!(
        plan.new_nodes
            .iter()
            .map(|n| n.pods.len())
            .collect::<Vec<_>>(),
        vec![2, 2, 1]
    );
}

#[test]
fn soft_spread_constraints_do_not_constrain() {
    let mut case = Case::new(sizes(&["a", "b"]));
    case.pods = (0..4)
        .map(|i| {
            let mut p = pod(&format!("p{i}"), 100, 0);
            p.labels = labels(&[("app", "web")]);
            p.topology_spread = vec![SpreadConstraint {
                hard: false,
                ..spread(HOSTNAME, 1, "web")
            }];
            p
        })
        .collect();
    assert_eq!(case.solve().new_nodes.len(), 1);
}

#[test]
fn memory_limit_is_named_when_memory_is_what_blocks() {
    let mut case = Case::new(vec![itype("m4", 4, "amd64", &["a"], 0.1)]);
    case.pools[0].limits = vec![limit(LimitedResource::Memory, 4 * GIB, 0)];
    case.pods = vec![pod("p", 100, 0)];
    let plan = case.solve();
    assert!(
        reason(&plan, "ns/p").contains("exceeds NodePool default's memory limit"),
        "{plan:?}"
    );
}

#[test]
fn small_nodes_are_folded_into_one_when_that_costs_no_more() {
    let mut case = Case::new(sizes(&["a"]));
    case.pods = vec![
        pod("big", 1900, 0),
        pod("mid", 1000, 0),
        pod("small", 900, 0),
    ];
    let plan = case.solve();
    // Packing: big on an m2; mid and small each alone on an m1 (0.1) rather
    // than growing the m2 to an m4 (+0.2): three nodes, 0.4 $/h. Merging:
    // mid onto small's m1 makes an m2 (+0.1 = mid's node), then that onto
    // big's m2 makes an m4 (+0.2 = its node): one node, still 0.4 $/h.
    assert_eq!(plan.new_nodes.len(), 1, "{plan:?}");
    assert_eq!(plan.new_nodes[0].pods.len(), 3);
    assert_eq!(plan.new_nodes[0].instance_types[0], "m4");
    assert!((plan.new_nodes[0].price - 0.4).abs() < 1e-9);
}

#[test]
fn a_merge_that_raises_the_bill_is_not_taken() {
    let mut case = Case::new(sizes(&["a"]));
    case.pods = vec![pod("big", 1900, 0), pod("small", 900, 0)];
    let plan = case.solve();
    // One m4 (0.4 $/h) would hold both; an m2 and an m1 cost 0.3 $/h. The
    // per-node overhead allowance (0 $/h) does not cover the 0.1 difference.
    assert_eq!(plan.new_nodes.len(), 2, "{plan:?}");
    let total: f64 = plan.new_nodes.iter().map(|n| n.price).sum();
    assert!((total - 0.3).abs() < 1e-9, "{total}");
}

fn limit(resource: LimitedResource, max: u64, used: u64) -> Limit {
    Limit {
        resource,
        max,
        used,
    }
}

#[test]
fn a_nodes_limit_caps_the_count_and_names_itself() {
    let mut case = Case::new(vec![itype("m4", 4, "amd64", &["a"], 0.1)]);
    case.pools[0].limits = vec![limit(LimitedResource::Nodes, 3, 1)];
    case.pods = (0..3).map(|i| pod(&format!("p{i}"), 3000, 1)).collect();
    let plan = case.solve();
    assert_eq!(plan.new_nodes.len(), 2, "1 node held + 2 new = 3: {plan:?}");
    assert!(
        reason(&plan, "ns/p2").contains("exceeds NodePool default's nodes limit")
            || reason(&plan, "ns/p0").contains("nodes limit")
            || reason(&plan, "ns/p1").contains("nodes limit"),
        "{plan:?}"
    );
}

#[test]
fn a_pods_limit_counts_each_node_s_pod_slots() {
    // A pods limit of one and a half nodes' pod slots admits one node.
    let mut case = Case::new(vec![itype("m4", 4, "amd64", &["a"], 0.1)]);
    let slots = case.types[0].capacity.pods;
    case.pools[0].limits = vec![limit(LimitedResource::Pods, slots + slots / 2, 0)];
    case.pods = (0..2).map(|i| pod(&format!("p{i}"), 3000, 1)).collect();
    let plan = case.solve();
    assert_eq!(plan.new_nodes.len(), 1, "{plan:?}");
    assert_eq!(plan.unschedulable.len(), 1);
    assert!(plan.unschedulable[0].1.contains("pods limit"), "{plan:?}");
}

#[test]
fn an_extended_resource_limit_steers_away_from_the_types_that_carry_it() {
    let mut gpu = itype("g4", 4, "amd64", &["a"], 0.05);
    gpu.capacity.extended = vec![("nvidia.com/gpu".into(), 1)];
    gpu.allocatable.extended = gpu.capacity.extended.clone();
    let plain = itype("m4", 4, "amd64", &["a"], 0.1);
    let mut case = Case::new(vec![gpu, plain]);
    case.pools[0].limits = vec![limit(
        LimitedResource::Extended("nvidia.com/gpu".into()),
        1,
        1,
    )];
    case.pods = vec![pod("p", 1000, 1)];
    let plan = case.solve();
    assert_eq!(plan.new_nodes.len(), 1, "{plan:?}");
    assert_eq!(
        plan.new_nodes[0].instance_types,
        vec!["m4".to_owned()],
        "the GPU type is cheaper but the pool has no GPU left"
    );
}

#[test]
fn best_effort_relaxes_min_values_only_for_the_pod_that_needs_it() {
    let mut case = Case::new(sizes(&["a"]));
    let mut minimum = req(INSTANCE_TYPE, Operator::Exists, &[]);
    minimum.min_values = Some(3);
    case.pools[0].requirements = vec![minimum];
    case.pools[0].min_values_policy = MinValuesPolicy::BestEffort;
    // As in the Strict case: a and b get nodes that keep 3 types; only m16
    // fits huge, so its node keeps 1 of the 3 asked.
    case.pods = vec![pod("a", 3000, 0), pod("b", 2000, 0), pod("huge", 9000, 0)];
    let plan = case.solve();
    assert!(plan.unschedulable.is_empty(), "{plan:?}");
    assert_eq!(plan.new_nodes.len(), 3, "{plan:?}");
    for node in &plan.new_nodes {
        let carried = node
            .requirements
            .iter()
            .filter(|r| r.key == INSTANCE_TYPE)
            .filter_map(|r| r.min_values)
            .collect::<Vec<_>>();
        if node.pods == vec!["ns/huge".to_owned()] {
            assert_eq!(node.instance_types, vec!["m16".to_owned()]);
            assert_eq!(
                node.min_values_relaxed,
                vec![RelaxedMinValues {
                    key: INSTANCE_TYPE.into(),
                    wanted: 3,
                    kept: 1
                }]
            );
            assert!(
                carried.iter().all(|m| *m == 1),
                "the claim asks for what it keeps: {carried:?}"
            );
        } else {
            assert!(node.instance_types.len() >= 3, "{node:?}");
            assert!(node.min_values_relaxed.is_empty(), "{node:?}");
            assert!(carried.iter().all(|m| *m == 3), "{carried:?}");
        }
    }
}

#[test]
fn best_effort_launches_when_capacity_errors_leave_too_few_types() {
    let mut types = sizes(&["a"]);
    // Capacity errors took every offering but m8's and m16's.
    for t in types
        .iter_mut()
        .filter(|t| t.name != "m8" && t.name != "m16")
    {
        for offering in &mut t.offerings {
            offering.available = false;
        }
    }
    let mut minimum = req(INSTANCE_TYPE, Operator::Exists, &[]);
    minimum.min_values = Some(3);
    let mut strict = Case::new(types.clone());
    strict.pools[0].requirements = vec![minimum.clone()];
    strict.pods = vec![pod("p", 1000, 0)];
    let plan = strict.solve();
    assert!(plan.new_nodes.is_empty(), "Strict: no launch: {plan:?}");
    assert!(reason(&plan, "ns/p").contains("minValues 3"), "{plan:?}");

    let mut best_effort = Case::new(types);
    best_effort.pools[0].requirements = vec![minimum];
    best_effort.pools[0].min_values_policy = MinValuesPolicy::BestEffort;
    best_effort.pods = vec![pod("p", 1000, 0)];
    let plan = best_effort.solve();
    assert_eq!(plan.new_nodes.len(), 1, "{plan:?}");
    assert_eq!(plan.new_nodes[0].instance_types, vec!["m8", "m16"]);
    assert_eq!(plan.new_nodes[0].min_values_relaxed[0].kept, 2);
}

fn prefer(weight: i32, requirements: Vec<Requirement>) -> PreferredTerm {
    PreferredTerm {
        weight,
        requirements,
    }
}

#[test]
fn the_heaviest_satisfiable_preference_decides_the_new_node() {
    let mut case = Case::new(sizes(&["a", "b", "c"]));
    let mut p = pod("p", 1000, 0);
    p.preferred_affinity = vec![
        prefer(10, vec![req(ZONE, Operator::In, &["c"])]),
        // Heaviest, but no type is m99: dropped first.
        prefer(100, vec![req(INSTANCE_TYPE, Operator::In, &["m99"])]),
        prefer(50, vec![req(ZONE, Operator::In, &["b"])]),
    ];
    case.pods = vec![p];
    let plan = case.solve();
    assert!(plan.unschedulable.is_empty(), "{plan:?}");
    assert_eq!(plan.new_nodes[0].zones, vec!["b".to_owned()], "{plan:?}");
    let zone = plan.new_nodes[0]
        .requirements
        .iter()
        .find(|r| r.key == ZONE && r.values == ["b"]);
    assert!(zone.is_some(), "the claim carries the preference: {plan:?}");
}

#[test]
fn a_preference_nothing_meets_still_leaves_the_pod_a_node() {
    let mut case = Case::new(sizes(&["a"]));
    let mut p = pod("p", 1000, 0);
    p.required_affinity = vec![vec![req(ZONE, Operator::In, &["a"])]];
    p.preferred_affinity = vec![prefer(1, vec![req(ZONE, Operator::In, &["z"])])];
    case.pods = vec![p, pod("q", 1000, 0)];
    let plan = case.solve();
    assert!(plan.unschedulable.is_empty(), "{plan:?}");
    assert_eq!(plan.new_nodes.len(), 1, "one node for both: {plan:?}");
}

#[test]
fn preferences_do_not_stop_pods_sharing_a_node_that_meets_them() {
    let mut case = Case::new(sizes(&["a", "b"]));
    case.pods = (0..4)
        .map(|i| {
            let mut p = pod(&format!("p{i}"), 500, 0);
            p.preferred_affinity = vec![prefer(1, vec![req(ZONE, Operator::In, &["b"])])];
            p
        })
        .collect();
    let plan = case.solve();
    assert_eq!(plan.new_nodes.len(), 1, "{plan:?}");
    assert_eq!(plan.new_nodes[0].zones, vec!["b".to_owned()]);
}

#[test]
fn zone_anti_affinity_sends_each_replica_to_a_zone_of_its_own() {
    let mut case = Case::new(sizes(&["a", "b", "c"]));
    // A replica already runs in zone a.
    let mut running = node("n0", "a", 4000, 0);
    running.pods = vec![PlacedPod {
        namespace: "ns".into(),
        labels: labels(&[("app", "db")]).into(),
    }];
    case.nodes = vec![running];
    case.pods = (0..3)
        .map(|i| {
            let mut p = pod(&format!("db{i}"), 500, 0);
            p.labels = labels(&[("app", "db")]);
            p.zone_anti_affinity = vec![selector("app", "db")];
            p
        })
        .collect();
    let plan = case.solve();
    assert!(plan.to_existing.is_empty(), "zone a is taken: {plan:?}");
    let mut zones: Vec<String> = plan
        .new_nodes
        .iter()
        .map(|n| {
            assert_eq!(n.zones.len(), 1, "pinned: {n:?}");
            n.zones[0].clone()
        })
        .collect();
    zones.sort();
    assert_eq!(zones, vec!["b", "c"], "{plan:?}");
    assert_eq!(plan.unschedulable.len(), 1, "no zone left for the third");
    assert!(
        plan.unschedulable[0].1.contains("zone anti-affinity"),
        "{plan:?}"
    );
}

fn follower(name: &str, cpu: u64, target: &str) -> PendingPod {
    let mut p = pod(name, cpu, 0);
    p.labels = labels(&[("app", "follower")]);
    p.hostname_affinity = vec![selector("app", target)];
    p
}

#[test]
fn hostname_affinity_puts_followers_on_the_node_of_their_pending_target() {
    let mut case = Case::new(sizes(&["a"]));
    let mut target = pod("target", 1500, 0);
    target.labels = labels(&[("app", "cache")]);
    // Listed first, the followers are still placed after their target.
    case.pods = vec![
        follower("f0", 500, "cache"),
        follower("f1", 500, "cache"),
        target,
        pod("other", 1500, 0),
    ];
    let plan = case.solve();
    assert!(plan.unschedulable.is_empty(), "{plan:?}");
    let with_target = plan
        .new_nodes
        .iter()
        .find(|n| n.pods.contains(&"ns/target".to_owned()))
        .expect("a node for the target");
    for f in ["ns/f0", "ns/f1"] {
        assert!(with_target.pods.contains(&f.to_owned()), "{plan:?}");
    }
}

#[test]
fn hostname_affinity_to_a_running_pod_means_its_node_or_nothing() {
    let mut case = Case::new(sizes(&["a"]));
    let mut running = node("n0", "a", 2000, 0);
    running.pods = vec![PlacedPod {
        namespace: "ns".into(),
        labels: labels(&[("app", "cache")]).into(),
    }];
    case.nodes = vec![running, node("n1", "a", 8000, 0)];
    case.pods = vec![
        follower("fits", 1000, "cache"),
        follower("too-big", 3000, "cache"),
    ];
    let plan = case.solve();
    assert_eq!(
        plan.to_existing,
        vec![("ns/fits".to_owned(), "n0".to_owned())]
    );
    assert!(
        plan.new_nodes.is_empty(),
        "no new node has the target: {plan:?}"
    );
    assert!(
        reason(&plan, "ns/too-big").contains("pod affinity"),
        "{plan:?}"
    );
}

#[test]
fn the_first_of_a_self_affine_group_goes_anywhere_and_the_rest_follow() {
    let mut case = Case::new(sizes(&["a", "b", "c"]));
    case.pods = (0..4)
        .map(|i| {
            let mut p = pod(&format!("g{i}"), 500, 0);
            p.labels = labels(&[("app", "group")]);
            p.zone_affinity = vec![selector("app", "group")];
            p
        })
        .collect();
    let plan = case.solve();
    assert!(plan.unschedulable.is_empty(), "{plan:?}");
    let zones: std::collections::BTreeSet<&String> =
        plan.new_nodes.iter().flat_map(|n| &n.zones).collect();
    assert_eq!(zones.len(), 1, "one zone for the group: {plan:?}");
}

#[test]
fn zone_affinity_follows_a_running_target_to_its_zone() {
    let mut case = Case::new(sizes(&["a", "b", "c"]));
    let mut running = node("n0", "b", 1000, 900);
    running.pods = vec![PlacedPod {
        namespace: "ns".into(),
        labels: labels(&[("app", "db")]).into(),
    }];
    case.nodes = vec![running];
    let mut p = pod("api", 2000, 0);
    p.zone_affinity = vec![selector("app", "db")];
    case.pods = vec![p];
    let plan = case.solve();
    assert_eq!(plan.new_nodes.len(), 1, "{plan:?}");
    assert_eq!(plan.new_nodes[0].zones, vec!["b".to_owned()], "{plan:?}");
}

fn web_preferring_apart(name: &str) -> PendingPod {
    let mut p = pod(name, 500, 0);
    p.labels = labels(&[("app", "web")]);
    p.preferred_hostname_anti_affinity = vec![selector("app", "web")];
    p
}

#[test]
fn preferred_anti_affinity_picks_between_free_rides_but_opens_no_node() {
    let mut case = Case::new(vec![itype("m4", 4, "amd64", &["a"], 0.1)]);
    // Two nodes with room for both web pods each: apart costs nothing.
    case.pods = vec![
        pod("a", 2500, 0),
        pod("b", 2500, 0),
        web_preferring_apart("w0"),
        web_preferring_apart("w1"),
    ];
    let plan = case.solve();
    assert_eq!(plan.new_nodes.len(), 2, "{plan:?}");
    for node in &plan.new_nodes {
        let webs = node.pods.iter().filter(|p| p.starts_with("ns/w")).count();
        assert_eq!(webs, 1, "one web pod per node: {plan:?}");
    }
    // Alone, they share one node rather than pay for a second.
    let mut alone = Case::new(vec![itype("m4", 4, "amd64", &["a"], 0.1)]);
    alone.pods = vec![web_preferring_apart("w0"), web_preferring_apart("w1")];
    assert_eq!(alone.solve().new_nodes.len(), 1);
}

#[test]
fn a_schedule_anyway_spread_picks_the_emptier_zone_among_free_places() {
    let mut case = Case::new(sizes(&["a", "b"]));
    let mut crowded = node("in-a", "a", 4000, 2000);
    crowded.pods = vec![PlacedPod {
        namespace: "ns".into(),
        labels: labels(&[("app", "web")]).into(),
    }];
    // Fuller, so without the spread it would be chosen.
    let roomy = node("in-b", "b", 4000, 0);
    case.nodes = vec![crowded, roomy];
    let mut p = pod("w", 500, 0);
    p.labels = labels(&[("app", "web")]);
    let mut soft = spread(ZONE, 1, "web");
    soft.hard = false;
    p.topology_spread = vec![soft];
    case.pods = vec![p.clone()];
    let plan = case.solve();
    assert_eq!(
        plan.to_existing,
        vec![("ns/w".to_owned(), "in-b".to_owned())]
    );
    p.topology_spread.clear();
    case.pods = vec![p];
    let plan = case.solve();
    assert_eq!(
        plan.to_existing,
        vec![("ns/w".to_owned(), "in-a".to_owned())],
        "the fullest, without the spread"
    );
}

/// `count` one-vCPU pods, one per node (hostname anti-affinity).
fn one_per_node(count: usize) -> Vec<PendingPod> {
    (0..count)
        .map(|i| {
            let mut p = pod(&format!("p{i}"), 1000, 1);
            p.labels = labels(&[("app", "web")]);
            p.hostname_anti_affinity = vec![selector("app", "web")];
            p
        })
        .collect()
}

#[test]
fn a_node_holds_against_a_cpu_limit_only_the_types_it_may_launch_as() {
    // Every one-pod node fits each 2-vCPU type and the 96-vCPU one. Held at
    // the largest type that fits, 200 vCPUs would admit two nodes; held at
    // what it launches as (no more than its cheapest type), all 30.
    let mut types: Vec<InstanceType> = (0..12)
        .map(|i| {
            itype(
                &format!("s{i:02}"),
                2,
                "amd64",
                &["a"],
                0.1 + i as f64 * 0.001,
            )
        })
        .collect();
    types.push(itype("h96", 96, "amd64", &["a"], 0.2));
    let mut case = Case::new(types);
    case.pools[0].limits = vec![limit(LimitedResource::Cpu, 200_000, 0)];
    case.pods = one_per_node(30);
    let plan = case.solve();
    assert!(plan.unschedulable.is_empty(), "{plan:?}");
    assert_eq!(plan.new_nodes.len(), 30);
    for node in &plan.new_nodes {
        assert_eq!(node.instance_types.len(), 12, "{node:?}");
        assert!(!node.instance_types.iter().any(|t| t == "h96"), "{node:?}");
    }
}

#[test]
fn min_values_widens_what_a_node_under_a_limit_holds_no_further_than_it_needs() {
    // minValues 3 and two 2-vCPU types: the node keeps the 4-vCPU types
    // too, and holds 4 vCPUs, not the 96 it could also be.
    let mut case = Case::new(vec![
        itype("s0", 2, "amd64", &["a"], 0.1),
        itype("s1", 2, "amd64", &["a"], 0.11),
        itype("m0", 4, "amd64", &["a"], 0.12),
        itype("m1", 4, "amd64", &["a"], 0.13),
        itype("h96", 96, "amd64", &["a"], 0.2),
    ]);
    let mut minimum = req(INSTANCE_TYPE, Operator::Exists, &[]);
    minimum.min_values = Some(3);
    case.pools[0].requirements = vec![minimum];
    // 20 nodes × 4 vCPUs = 80 of 100; a 96-vCPU hold admits one node.
    case.pools[0].limits = vec![limit(LimitedResource::Cpu, 100_000, 0)];
    case.pods = one_per_node(20);
    let plan = case.solve();
    assert!(plan.unschedulable.is_empty(), "{plan:?}");
    for node in &plan.new_nodes {
        assert_eq!(node.instance_types, ["s0", "s1", "m0", "m1"], "{node:?}");
    }
}

#[test]
fn without_limits_a_node_keeps_every_type_that_fits() {
    let mut case = Case::new(vec![
        itype("s0", 2, "amd64", &["a"], 0.1),
        itype("h96", 96, "amd64", &["a"], 0.2),
    ]);
    case.pods = one_per_node(1);
    let plan = case.solve();
    assert_eq!(plan.new_nodes[0].instance_types, ["s0", "h96"]);
}
