//! Property tests: random small clusters, checked against the plan's
//! invariants by code written independently of the solver.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::*;
use proptest::prelude::*;
use spotwright_solver::model::*;
use spotwright_solver::workload::Draws;
use spotwright_solver::{solve, Input, Plan};

const ZONES: [&str; 3] = ["a", "b", "c"];
const MIB: u64 = 1 << 20;

#[derive(Debug)]
struct World {
    pods: Vec<PendingPod>,
    nodes: Vec<ExistingNode>,
    pools: Vec<NodePoolFacts>,
    daemonsets: Vec<DaemonSetFacts>,
    types: Vec<InstanceType>,
}

fn all_tolerated() -> Toleration {
    Toleration {
        key: None,
        exists: true,
        value: None,
        effect: None,
    }
}

fn world(seed: u64, max_pods: u64) -> World {
    let mut d = Draws::new(seed);
    let types: Vec<InstanceType> = (0..1 + d.below(6))
        .map(|i| {
            let cpus = [1, 2, 4, 8, 16][d.below(5) as usize];
            let arch = if d.chance(30) { "arm64" } else { "amd64" };
            let mut t = itype(
                &format!("t{i}"),
                cpus,
                arch,
                &ZONES,
                0.05 + d.below(10) as f64 / 100.0,
            );
            t.allocatable.cpu_millis -= 100;
            t.allocatable.pods = 4 + d.below(30);
            t.capacity.pods = t.allocatable.pods;
            for o in &mut t.offerings {
                o.available = d.chance(80);
                o.price *= 1.0 + d.below(5) as f64 / 10.0;
            }
            t
        })
        .collect();
    let pools: Vec<NodePoolFacts> = (0..1 + d.below(3))
        .map(|i| {
            let mut p = pool(&format!("p{i}"));
            p.weight = d.below(3) as i32;
            if d.chance(30) {
                p.taints = vec![taint("team", &format!("p{i}"), TaintEffect::NoSchedule)];
            }
            if d.chance(30) {
                let zones: Vec<&str> = ZONES.iter().copied().filter(|_| d.chance(60)).collect();
                p.requirements.push(req(ZONE, Operator::In, &zones));
            }
            if d.chance(20) {
                p.requirements
                    .push(req(CAPACITY_TYPE, Operator::In, &["on-demand"]));
            }
            if d.chance(20) {
                p.requirements.push(req(INSTANCE_CPU, Operator::Gt, &["1"]));
            }
            if d.chance(25) {
                let mut m = req(INSTANCE_TYPE, Operator::Exists, &[]);
                m.min_values = Some(1 + d.below(3) as u32);
                p.requirements.push(m);
                if d.chance(50) {
                    p.min_values_policy = MinValuesPolicy::BestEffort;
                }
            }
            let mut limit = |resource, max: u64, used: u64| {
                p.limits.push(Limit {
                    resource,
                    max,
                    used,
                })
            };
            if d.chance(40) {
                limit(
                    LimitedResource::Cpu,
                    4_000 + d.below(40_000),
                    d.below(3_000),
                );
            }
            if d.chance(20) {
                limit(
                    LimitedResource::Memory,
                    (8 + d.below(64)) * GIB,
                    d.below(4) * GIB,
                );
            }
            if d.chance(20) {
                limit(LimitedResource::Nodes, 1 + d.below(4), d.below(2));
            }
            if d.chance(15) {
                limit(LimitedResource::Pods, 20 + d.below(200), d.below(20));
            }
            p
        })
        .collect();
    let daemonsets: Vec<DaemonSetFacts> = (0..d.below(3))
        .map(|i| DaemonSetFacts {
            name: format!("ds{i}"),
            requests: Resources {
                cpu_millis: 50 + d.below(150),
                memory_bytes: 64 * MIB,
                ..Resources::default()
            },
            node_selector: if d.chance(40) {
                labels(&[(ARCH, "arm64")])
            } else {
                BTreeMap::new()
            },
            required_affinity: vec![],
            tolerations: if d.chance(50) {
                vec![all_tolerated()]
            } else {
                vec![]
            },
        })
        .collect();
    let nodes: Vec<ExistingNode> = (0..d.below(4))
        .map(|i| {
            let mut n = node(
                &format!("n{i}"),
                ZONES[d.below(3) as usize],
                2_000 + d.below(6_000),
                0,
            );
            n.requested.cpu_millis = d.below(n.allocatable.cpu_millis);
            n.requested.pods = d.below(3);
            n.unavailable = d.chance(20);
            if d.chance(20) {
                n.taints = vec![taint("team", "x", TaintEffect::NoSchedule)];
            }
            n.pods = vec![PlacedPod {
                namespace: "ns".into(),
                labels: labels(&[("app", "existing")]).into(),
            }];
            n
        })
        .collect();
    let pods = (0..d.below(max_pods + 1))
        .map(|i| {
            let mut p = pod(&format!("p{i}"), 50 + d.below(3_000), 0);
            p.requests.memory_bytes = (64 + d.below(4_000)) * MIB;
            p.labels = labels(&[("app", "plain")]);
            let group = d.below(2);
            match d.below(11) {
                1 => {
                    let app = format!("zs{group}");
                    p.labels = labels(&[("app", &app)]);
                    p.topology_spread = vec![spread(ZONE, 1 + group as u32, &app)];
                    p.tolerations = vec![all_tolerated()];
                }
                2 => {
                    let app = format!("hs{group}");
                    p.labels = labels(&[("app", &app)]);
                    p.topology_spread = vec![spread(HOSTNAME, 1 + group as u32, &app)];
                }
                3 => {
                    let app = format!("aa{group}");
                    p.labels = labels(&[("app", &app)]);
                    p.hostname_anti_affinity = vec![selector("app", &app)];
                }
                4 => p.node_selector = labels(&[(ZONE, ZONES[d.below(3) as usize])]),
                5 => p.tolerations = vec![tolerate("team")],
                6 => p.required_affinity = affinity_terms(&mut d),
                7 => p.node_selector = labels(&[(ARCH, ["amd64", "arm64"][d.below(2) as usize])]),
                8 => {
                    let app = format!("za{group}");
                    p.labels = labels(&[("app", &app)]);
                    p.zone_anti_affinity = vec![selector("app", &app)];
                }
                // Pod affinity: targets `<kind>-t` and followers `<kind>-f`.
                9 | 10 => {
                    let kind = if d.chance(50) { "ha" } else { "zf" };
                    let target = format!("{kind}{group}-t");
                    if d.chance(40) {
                        p.labels = labels(&[("app", &target)]);
                    } else {
                        p.labels = labels(&[("app", &format!("{kind}{group}-f"))]);
                        if kind == "ha" {
                            p.hostname_affinity = vec![selector("app", &target)];
                        } else {
                            p.zone_affinity = vec![selector("app", &target)];
                        }
                    }
                }
                _ => {}
            }
            if d.chance(15) {
                let zone = ["a", "b", "c", "nowhere"][d.below(4) as usize];
                p.preferred_affinity.push(PreferredTerm {
                    weight: 1 + d.below(100) as i32,
                    requirements: vec![req(ZONE, Operator::In, &[zone])],
                });
            }
            p
        })
        .collect();
    World {
        pods,
        nodes,
        pools,
        daemonsets,
        types,
    }
}

/// One or two OR'd terms of one or two requirements over the labels nodes
/// carry (and one they never do).
fn affinity_terms(d: &mut Draws) -> NodeSelectorTerms {
    (0..1 + d.below(2))
        .map(|_| {
            (0..1 + d.below(2))
                .map(|_| match d.below(7) {
                    0 => req(
                        ARCH,
                        Operator::In,
                        &[["amd64", "arm64"][d.below(2) as usize]],
                    ),
                    1 => req(
                        INSTANCE_CPU,
                        Operator::Gt,
                        &[["1", "2", "4"][d.below(3) as usize]],
                    ),
                    2 => req(
                        INSTANCE_CPU,
                        Operator::Lt,
                        &[["2", "8", "16"][d.below(3) as usize]],
                    ),
                    3 => req(ZONE, Operator::NotIn, &[ZONES[d.below(3) as usize]]),
                    4 => req(CAPACITY_TYPE, Operator::In, &["spot"]),
                    5 => req("spotwright.io/instance-family", Operator::Exists, &[]),
                    _ => req("example.com/never", Operator::DoesNotExist, &[]),
                })
                .collect()
        })
        .collect()
}

/// A node-selector requirement against node labels, as Kubernetes
/// documents it (and, for NodeClaims, `Gte`/`Lte` as the CRD does).
fn k8s_requirement(r: &Requirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&r.key);
    let number = |v: &String| v.parse::<i64>().ok();
    let bound = || {
        (r.values.len() == 1)
            .then(|| r.values[0].parse::<i64>().ok())
            .flatten()
    };
    let compare = |holds: fn(i64, i64) -> bool| matches!((value.and_then(number), bound()), (Some(v), Some(b)) if holds(v, b));
    match r.operator {
        Operator::In => value.is_some_and(|v| r.values.contains(v)),
        Operator::NotIn => value.is_none_or(|v| !r.values.contains(v)),
        Operator::Exists => value.is_some(),
        Operator::DoesNotExist => value.is_none(),
        Operator::Gt => compare(|v, b| v > b),
        Operator::Lt => compare(|v, b| v < b),
        Operator::Gte => compare(|v, b| v >= b),
        Operator::Lte => compare(|v, b| v <= b),
    }
}

/// kube-scheduler's NodeAffinity filter (`nodeSelector` and required node
/// affinity), written here from the Kubernetes documentation, not from the
/// solver: what the real scheduler will check on the node.
fn scheduler_admits(pod: &PendingPod, labels: &BTreeMap<String, String>) -> bool {
    let selector = pod
        .node_selector
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v));
    let terms = pod.required_affinity.is_empty()
        || pod
            .required_affinity
            .iter()
            .any(|term| !term.is_empty() && term.iter().all(|r| k8s_requirement(r, labels)));
    selector && terms
}

/// Every node the launch of `node` might make: each candidate type in each
/// of its zones and capacity types where the type is offered, labelled as
/// it will be, that meets the claim's requirements (the launch narrows its
/// overrides by them).
fn possible_labels(
    w: &World,
    pool: &NodePoolFacts,
    node: &spotwright_solver::NewNode,
) -> Vec<BTreeMap<String, String>> {
    let mut all = Vec::new();
    for t in w
        .types
        .iter()
        .filter(|t| node.instance_types.contains(&t.name))
    {
        for o in t.offerings.iter().filter(|o| {
            o.available
                && node.zones.contains(&o.zone)
                && node.capacity_types.contains(&o.capacity_type)
        }) {
            let mut labels = t.labels.clone();
            labels.extend(pool.labels.clone());
            labels.insert(ZONE.to_owned(), o.zone.clone());
            labels.insert(
                CAPACITY_TYPE.to_owned(),
                o.capacity_type.as_str().to_owned(),
            );
            if node
                .requirements
                .iter()
                .all(|r| k8s_requirement(r, &labels))
            {
                all.push(labels);
            }
        }
    }
    all
}

fn tolerated(tolerations: &[Toleration], taints: &[Taint]) -> bool {
    taints.iter().all(|t| {
        t.effect == TaintEffect::PreferNoSchedule
            || tolerations.iter().any(|o| match &o.key {
                None => o.exists,
                Some(k) => *k == t.key && (o.exists || o.value == t.value),
            })
    })
}

fn overhead(w: &World, pool: &NodePoolFacts, t: &InstanceType) -> (u64, u64, u64) {
    w.daemonsets
        .iter()
        .filter(|ds| tolerated(&ds.tolerations, &pool.taints))
        .filter(|ds| {
            ds.node_selector
                .iter()
                .all(|(k, v)| t.labels.get(k) == Some(v))
        })
        .fold((0, 0, 0), |(c, m, n), ds| {
            (
                c + ds.requests.cpu_millis,
                m + ds.requests.memory_bytes,
                n + 1,
            )
        })
}

fn pool_allows(pool: &NodePoolFacts, t: &InstanceType, o: &Offering) -> bool {
    pool.requirements.iter().all(|r| match r.key.as_str() {
        ZONE => r.values.contains(&o.zone),
        CAPACITY_TYPE => r.values.iter().any(|v| v == o.capacity_type.as_str()),
        INSTANCE_CPU => {
            t.labels[INSTANCE_CPU].parse::<i64>().unwrap() > r.values[0].parse::<i64>().unwrap()
        }
        _ => true,
    })
}

/// Zones a pod that tolerates everything and selects nothing could land in.
fn domains(w: &World) -> Vec<String> {
    let mut zones: Vec<String> = Vec::new();
    for pool in &w.pools {
        let usable: Vec<(&InstanceType, Vec<&Offering>)> = w
            .types
            .iter()
            .filter(|t| {
                let (c, m, n) = overhead(w, pool, t);
                c <= t.allocatable.cpu_millis
                    && m <= t.allocatable.memory_bytes
                    && n <= t.allocatable.pods
            })
            .map(|t| {
                (
                    t,
                    t.offerings
                        .iter()
                        .filter(|o| o.available && pool_allows(pool, t, o))
                        .collect::<Vec<_>>(),
                )
            })
            .filter(|(_, o)| !o.is_empty())
            .collect();
        let min_types = pool
            .requirements
            .iter()
            .filter_map(|r| r.min_values)
            .max()
            .unwrap_or(0) as usize;
        let best_effort = pool.min_values_policy == MinValuesPolicy::BestEffort;
        if usable.is_empty() || (usable.len() < min_types && !best_effort) {
            continue;
        }
        zones.extend(
            usable
                .iter()
                .flat_map(|(_, os)| os.iter().map(|o| o.zone.clone())),
        );
    }
    zones.extend(
        w.nodes
            .iter()
            .filter(|n| !n.unavailable)
            .map(|n| n.labels[ZONE].clone()),
    );
    zones.sort();
    zones.dedup();
    zones
}

fn check(w: &World, plan: &Plan) -> Result<(), String> {
    let pods: HashMap<&str, &PendingPod> = w.pods.iter().map(|p| (p.key.as_str(), p)).collect();
    // Every pod exactly once.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for key in plan
        .to_existing
        .iter()
        .map(|(k, _)| k.as_str())
        .chain(
            plan.new_nodes
                .iter()
                .flat_map(|n| n.pods.iter().map(String::as_str)),
        )
        .chain(plan.unschedulable.iter().map(|(k, _)| k.as_str()))
    {
        *seen.entry(key).or_default() += 1;
    }
    if seen.len() != w.pods.len()
        || seen.values().any(|n| *n != 1)
        || !w.pods.iter().all(|p| seen.contains_key(p.key.as_str()))
    {
        return Err(format!("pods not accounted exactly once: {seen:?}"));
    }
    if plan
        .unschedulable
        .iter()
        .any(|(_, reason)| reason.is_empty())
    {
        return Err("unschedulable without a reason".into());
    }
    // Every node's pods, by node id, for the topology checks.
    let mut members: Vec<(Option<String>, Vec<&PendingPod>)> = Vec::new();
    for n in &w.nodes {
        let placed: Vec<&PendingPod> = plan
            .to_existing
            .iter()
            .filter(|(_, node)| *node == n.name)
            .map(|(k, _)| pods[k.as_str()])
            .collect();
        if !placed.is_empty() && n.unavailable {
            return Err(format!("pod placed on unavailable node {}", n.name));
        }
        let cpu: u64 =
            n.requested.cpu_millis + placed.iter().map(|p| p.requests.cpu_millis).sum::<u64>();
        let mem: u64 =
            n.requested.memory_bytes + placed.iter().map(|p| p.requests.memory_bytes).sum::<u64>();
        let count = n.requested.pods + placed.len() as u64;
        if cpu > n.allocatable.cpu_millis
            || mem > n.allocatable.memory_bytes
            || count > n.allocatable.pods
        {
            return Err(format!("existing node {} over allocatable", n.name));
        }
        if placed.iter().any(|p| !tolerated(&p.tolerations, &n.taints)) {
            return Err(format!("untolerated taint on {}", n.name));
        }
        if let Some(p) = placed.iter().find(|p| !scheduler_admits(p, &n.labels)) {
            return Err(format!(
                "the scheduler would refuse {} on {}",
                p.key, n.name
            ));
        }
        members.push((n.labels.get(ZONE).cloned(), placed));
    }
    let mut planned: HashMap<&str, Vec<u64>> = HashMap::new();
    for node in &plan.new_nodes {
        let pool = w
            .pools
            .iter()
            .find(|p| p.name == node.nodepool)
            .ok_or("unknown pool")?;
        let placed: Vec<&PendingPod> = node.pods.iter().map(|k| pods[k.as_str()]).collect();
        let cpu: u64 = placed.iter().map(|p| p.requests.cpu_millis).sum();
        let mem: u64 = placed.iter().map(|p| p.requests.memory_bytes).sum();
        if node.instance_types.is_empty() || node.zones.is_empty() || !node.price.is_finite() {
            return Err(format!("empty new node {node:?}"));
        }
        let mut max_capacity = vec![0; pool.limits.len()];
        for name in &node.instance_types {
            let t = w
                .types
                .iter()
                .find(|t| t.name == *name)
                .ok_or("unknown type")?;
            let (oc, om, on) = overhead(w, pool, t);
            if cpu + oc > t.allocatable.cpu_millis
                || mem + om > t.allocatable.memory_bytes
                || placed.len() as u64 + on > t.allocatable.pods
            {
                return Err(format!(
                    "{} over allocatable with overhead on {name}: {node:?}",
                    node.nodepool
                ));
            }
            let offered = t.offerings.iter().any(|o| {
                o.available
                    && node.zones.contains(&o.zone)
                    && node.capacity_types.contains(&o.capacity_type)
                    && pool_allows(pool, t, o)
            });
            if !offered {
                return Err(format!("{name} has no allowed offering on {node:?}"));
            }
            if placed.iter().any(|p| {
                p.node_selector
                    .get(ZONE)
                    .is_some_and(|z| !node.zones.contains(z))
            }) {
                return Err("zone node selector ignored".into());
            }
            for (held, limit) in max_capacity.iter_mut().zip(&pool.limits) {
                *held = (*held).max(limit.resource.of(&t.capacity));
            }
        }
        if placed
            .iter()
            .any(|p| !tolerated(&p.tolerations, &pool.taints))
        {
            return Err(format!("pool {} taint not tolerated", pool.name));
        }
        let possible = possible_labels(w, pool, node);
        if possible.is_empty() {
            return Err(format!("no launch meets the requirements of {node:?}"));
        }
        for labels in possible {
            if let Some(p) = placed.iter().find(|p| !scheduler_admits(p, &labels)) {
                return Err(format!(
                    "the scheduler would refuse {} ({:?}, {:?}) on a possible node {labels:?}",
                    p.key, p.node_selector, p.required_affinity
                ));
            }
        }
        for r in pool.requirements.iter().filter(|r| r.min_values.is_some()) {
            let wanted = r.min_values.unwrap_or(0) as usize;
            match node.min_values_relaxed.iter().find(|m| m.key == r.key) {
                None if node.instance_types.len() < wanted => {
                    return Err(format!("minValues broken: {node:?}"));
                }
                None => {}
                Some(_) if pool.min_values_policy == MinValuesPolicy::Strict => {
                    return Err(format!("minValues relaxed under Strict: {node:?}"));
                }
                Some(m) => {
                    let carried = node
                        .requirements
                        .iter()
                        .filter(|c| c.key == r.key)
                        .filter_map(|c| c.min_values);
                    if m.kept as usize != node.instance_types.len()
                        || m.kept as usize >= wanted
                        || carried.clone().any(|c| c != m.kept)
                    {
                        return Err(format!("relaxed minValues misreported: {node:?}"));
                    }
                }
            }
        }
        let entry = planned
            .entry(pool.name.as_str())
            .or_insert_with(|| vec![0; pool.limits.len()]);
        for (total, held) in entry.iter_mut().zip(&max_capacity) {
            *total += held;
        }
        let pinned = (node.zones.len() == 1).then(|| node.zones[0].clone());
        if placed
            .iter()
            .any(|p| p.topology_spread.iter().any(|s| s.topology_key == ZONE))
            && pinned.is_none()
        {
            return Err("zone-spread pod on an unpinned node".into());
        }
        members.push((pinned, placed));
    }
    for pool in &w.pools {
        let Some(totals) = planned.get(pool.name.as_str()) else {
            continue;
        };
        for (limit, total) in pool.limits.iter().zip(totals) {
            if *total > 0 && limit.used + total > limit.max {
                return Err(format!(
                    "pool {} {} limit exceeded",
                    pool.name,
                    limit.resource.key()
                ));
            }
        }
    }
    // Hostname spread and anti-affinity, per node.
    for (_, placed) in &members {
        for group in 0..2 {
            let app = |prefix: &str| format!("{prefix}{group}");
            let count = |name: &str| {
                placed
                    .iter()
                    .filter(|p| p.labels.get("app").map(String::as_str) == Some(name))
                    .count()
            };
            if count(&app("aa")) > 1 {
                return Err("anti-affinity broken".into());
            }
            if count(&app("hs")) > 1 + group as usize {
                return Err("hostname spread broken".into());
            }
        }
    }
    // Pod affinity: each follower shares its node (its zone) with a target.
    for group in 0..2u32 {
        for kind in ["ha", "zf"] {
            let (target, follower) = (format!("{kind}{group}-t"), format!("{kind}{group}-f"));
            let has = |placed: &[&PendingPod], app: &str| {
                placed
                    .iter()
                    .any(|p| p.labels.get("app").map(String::as_str) == Some(app))
            };
            let target_zones: Vec<&Option<String>> = members
                .iter()
                .filter(|(_, placed)| has(placed, &target))
                .map(|(zone, _)| zone)
                .collect();
            for (zone, placed) in &members {
                if !has(placed, &follower) {
                    continue;
                }
                let met = if kind == "ha" {
                    has(placed, &target)
                } else {
                    zone.is_some() && target_zones.contains(&zone)
                };
                if !met {
                    return Err(format!("{follower} placed away from {target} ({zone:?})"));
                }
            }
        }
    }
    // Zone anti-affinity: at most one such replica per zone.
    for group in 0..2u32 {
        let app = format!("za{group}");
        let per_zone = pods_per_zone(&members, &app)?;
        if per_zone.values().any(|n| *n > 1) {
            return Err(format!("zone anti-affinity broken for {app}: {per_zone:?}"));
        }
    }
    // Zone spread over the domains.
    let zones = domains(w);
    for group in 0..2u32 {
        let app = format!("zs{group}");
        let mut per_zone: BTreeMap<&str, u32> = zones.iter().map(|z| (z.as_str(), 0)).collect();
        for (zone, n) in pods_per_zone(&members, &app)? {
            *per_zone
                .get_mut(zone)
                .ok_or(format!("zone {zone} outside domains {zones:?}"))? += n;
        }
        let (max, min) = (
            per_zone.values().max().copied().unwrap_or(0),
            per_zone.values().min().copied().unwrap_or(0),
        );
        if max > min + 1 + group {
            return Err(format!("zone skew broken for {app}: {per_zone:?}"));
        }
    }
    Ok(())
}

/// How many pods labelled `app: <app>` each zone holds; such a pod on a
/// node without a zone is an error.
fn pods_per_zone<'a>(
    members: &'a [(Option<String>, Vec<&PendingPod>)],
    app: &str,
) -> Result<BTreeMap<&'a str, u32>, String> {
    let mut per_zone = BTreeMap::new();
    for (zone, placed) in members {
        let n = placed
            .iter()
            .filter(|p| p.labels.get("app").map(String::as_str) == Some(app))
            .count() as u32;
        if n > 0 {
            let zone = zone
                .as_deref()
                .ok_or(format!("{app} pod on a node without a zone"))?;
            *per_zone.entry(zone).or_default() += n;
        }
    }
    Ok(per_zone)
}

fn run(w: &World) -> Plan {
    solve(&Input {
        pods: &w.pods,
        nodes: &w.nodes,
        nodepools: &w.pools,
        daemonsets: &w.daemonsets,
        instance_types: &w.types,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn plans_keep_every_invariant(seed in any::<u64>()) {
        let w = world(seed, 40);
        let plan = run(&w);
        if let Err(problem) = check(&w, &plan) {
            prop_assert!(false, "seed {seed}: {problem}\n{plan:#?}");
        }
    }

    #[test]
    fn solving_is_deterministic(seed in any::<u64>()) {
        let w = world(seed, 25);
        prop_assert_eq!(run(&w), run(&w));
    }
}

#[test]
fn the_checker_catches_a_broken_plan() {
    let w = (0..).map(|seed| world(seed, 40)).find(|w| {
        let plan = run(w);
        plan.new_nodes.iter().any(|n| n.pods.len() > 1)
    });
    let w = w.expect("some seed packs two pods");
    let mut plan = run(&w);
    assert_eq!(check(&w, &plan), Ok(()));
    let node = plan
        .new_nodes
        .iter_mut()
        .find(|n| n.pods.len() > 1)
        .unwrap();
    let dropped = node.pods.pop().unwrap();
    assert!(
        check(&w, &plan).is_err(),
        "dropping {dropped} must be caught"
    );
}

#[test]
fn the_generator_exercises_every_rule() {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for seed in 0..300 {
        let w = world(seed, 40);
        let plan = run(&w);
        let pods: HashMap<&str, &PendingPod> = w.pods.iter().map(|p| (p.key.as_str(), p)).collect();
        *seen.entry("to existing").or_default() += plan.to_existing.len();
        *seen.entry("new nodes").or_default() += plan.new_nodes.len();
        for n in &plan.new_nodes {
            let app = |prefix: &str| {
                n.pods
                    .iter()
                    .filter(|k| pods[k.as_str()].labels["app"].starts_with(prefix))
                    .count()
            };
            *seen.entry("zone spread placed").or_default() += app("zs");
            *seen.entry("anti-affinity placed").or_default() += app("aa");
            *seen.entry("hostname spread placed").or_default() += app("hs");
            *seen.entry("zone anti-affinity placed").or_default() += app("za");
            *seen
                .entry("hostname affinity followers placed")
                .or_default() += n
                .pods
                .iter()
                .filter(|k| !pods[k.as_str()].hostname_affinity.is_empty())
                .count();
            *seen.entry("zone affinity followers placed").or_default() += n
                .pods
                .iter()
                .filter(|k| !pods[k.as_str()].zone_affinity.is_empty())
                .count();
            let with_terms = n
                .pods
                .iter()
                .filter(|k| pods[k.as_str()].required_affinity.len() > 1);
            *seen.entry("OR'd affinity terms placed").or_default() += with_terms.count();
            let preferred_zone = n.pods.iter().filter(|k| {
                pods[k.as_str()]
                    .preferred_affinity
                    .iter()
                    .any(|t| t.requirements.iter().any(|r| r.values == n.zones))
            });
            *seen.entry("preferred zone honoured").or_default() += preferred_zone.count();
            if !n.min_values_relaxed.is_empty() {
                *seen.entry("minValues relaxed").or_default() += 1;
            }
        }
        for (_, reason) in &plan.unschedulable {
            let kind = if reason.contains("nodes limit") || reason.contains("pods limit") {
                "count limit"
            } else if reason.contains("limit") {
                "limit"
            } else if reason.contains("taint") {
                "taint"
            } else if reason.contains("minValues") {
                "minValues"
            } else {
                "other"
            };
            *seen.entry(kind).or_default() += 1;
        }
    }
    for kind in [
        "to existing",
        "new nodes",
        "zone spread placed",
        "anti-affinity placed",
        "hostname spread placed",
        "zone anti-affinity placed",
        "hostname affinity followers placed",
        "zone affinity followers placed",
        "OR'd affinity terms placed",
        "minValues relaxed",
        "preferred zone honoured",
        "count limit",
        "limit",
        "taint",
        "minValues",
    ] {
        assert!(
            seen.get(kind).copied().unwrap_or(0) > 0,
            "{kind} never happens: {seen:?}"
        );
    }
}
