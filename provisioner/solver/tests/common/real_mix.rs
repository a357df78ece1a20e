//! A realistic mixed workload on real EC2 instance types, shared by the
//! `real_mix` example and test.
//!
//! - Instance types: `provisioner/solver/data/instance-facts-us-east-1.csv`
//!   (real DescribeInstanceTypes facts, written by
//!   `scripts/generate-instance-facts`), capacity and allocatable as the
//!   EKS AMI computes them (`spotwright_api::eks`, 20 GiB root volume),
//!   offered Spot and on-demand in us-east-1a/b/c. On-demand prices are the
//!   bundled snapshot (`api/data/prices-us-east-1.csv`); Spot prices are
//!   the snapshot's documented discount model (`spotwright_api::prices`:
//!   on-demand × 0.30 for generation ≤ 5, × 0.35 for 6, × 0.40 for 7,
//!   × 0.45 for 8+), not market data.
//! - NodePool `default`: Spot only, amd64, categories c/m/r, generation > 4,
//!   `node.kubernetes.io/instance-type Exists minValues 10`.
//! - DaemonSets: a log agent (100m/128Mi, tolerates everything) and a node
//!   exporter (50m/64Mi).
//! - Pods ([`mix`]), shares of `n`:
//!   - 40% `web`: 250m/512Mi, zone spread maxSkew 1 (DoNotSchedule);
//!   - 25% `api`: 1 CPU/2Gi in services of 10 replicas; one service in
//!     five also has hostname anti-affinity between its replicas;
//!   - 12% `cache`: 500m/8Gi (memory-heavy);
//!   - 20% `batch`: 2 CPU/4Gi, namespace `batch`;
//!   - the rest (3%) `big`: 8 CPU/32Gi.
#![allow(dead_code)]

use std::collections::BTreeMap;

use spotwright_api::eks::{self, InstanceFacts, DEFAULT_ROOT_VOLUME_GIB};
use spotwright_api::keys::{
    ARCH_LABEL, CAPACITY_TYPE_LABEL, INSTANCE_CATEGORY_LABEL, INSTANCE_CPU_LABEL,
    INSTANCE_FAMILY_LABEL, INSTANCE_GENERATION_LABEL, INSTANCE_MEMORY_LABEL, INSTANCE_SIZE_LABEL,
    INSTANCE_TYPE_LABEL, NODEPOOL_LABEL, OS_LABEL, ZONE_LABEL,
};
use spotwright_api::prices::{InstanceTypeName, PriceCatalog};
use spotwright_solver::model::{
    CapacityType, DaemonSetFacts, InstanceType, LabelSelector, MinValuesPolicy, NodePoolFacts,
    Offering, Operator, PendingPod, Requirement, Resources, SpreadConstraint, Toleration,
};
use spotwright_solver::workload::Workload;

pub const FACTS_CSV: &str = include_str!("../../data/instance-facts-us-east-1.csv");
pub const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// One CSV row: name, EC2 facts, Kubernetes architecture.
pub fn facts() -> Vec<(String, InstanceFacts, String)> {
    FACTS_CSV
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("name,"))
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(f.len(), 6, "malformed instance facts line {line:?}");
            let num = |i: usize| -> u64 {
                f[i].parse()
                    .unwrap_or_else(|_| panic!("bad number in {line:?}"))
            };
            let facts = InstanceFacts {
                vcpus: num(1) as u32,
                memory_mib: num(2),
                max_enis: num(3) as u32,
                ipv4_per_eni: num(4) as u32,
            };
            (f[0].to_string(), facts, f[5].to_string())
        })
        .collect()
}

fn resources(node: eks::NodeResources) -> Resources {
    Resources {
        cpu_millis: node.cpu_millis,
        memory_bytes: node.memory_bytes,
        ephemeral_bytes: node.ephemeral_storage_bytes,
        pods: node.pods,
        extended: Vec::new(),
    }
}

/// Every type of the CSV as the solver sees it (all categories and
/// architectures: the NodePool does the filtering).
pub fn instance_types() -> Vec<InstanceType> {
    let prices = PriceCatalog::embedded().expect("the embedded price snapshot parses");
    facts()
        .into_iter()
        .filter_map(|(name, facts, arch)| {
            let parts = InstanceTypeName::parse(&name);
            let mut labels: BTreeMap<String, String> = [
                (INSTANCE_TYPE_LABEL, name.clone()),
                (ARCH_LABEL, arch),
                (OS_LABEL, "linux".to_string()),
                (INSTANCE_CATEGORY_LABEL, parts.category.to_string()),
                (INSTANCE_FAMILY_LABEL, parts.family.to_string()),
                (INSTANCE_SIZE_LABEL, parts.size.to_string()),
                (INSTANCE_CPU_LABEL, facts.vcpus.to_string()),
                (INSTANCE_MEMORY_LABEL, facts.memory_mib.to_string()),
            ]
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            if let Some(generation) = parts.generation {
                labels.insert(INSTANCE_GENERATION_LABEL.into(), generation.to_string());
            }
            let mut offerings = Vec::new();
            for capacity_type in [CapacityType::Spot, CapacityType::OnDemand] {
                let Some(price) = prices.price(&name, capacity_type) else {
                    continue;
                };
                for zone in ZONES {
                    offerings.push(Offering {
                        zone: zone.into(),
                        capacity_type,
                        price,
                        available: true,
                    });
                }
            }
            if offerings.is_empty() {
                return None;
            }
            Some(InstanceType {
                labels,
                capacity: resources(eks::capacity(&facts, DEFAULT_ROOT_VOLUME_GIB)),
                allocatable: resources(eks::allocatable(&facts, DEFAULT_ROOT_VOLUME_GIB)),
                offerings,
                name,
            })
        })
        .collect()
}

fn req(key: &str, operator: Operator, values: &[&str], min_values: Option<u32>) -> Requirement {
    Requirement {
        key: key.into(),
        operator,
        values: values.iter().map(|v| v.to_string()).collect(),
        min_values,
    }
}

/// The NodePool a cost-minded user writes.
pub fn nodepool() -> NodePoolFacts {
    NodePoolFacts {
        name: "default".into(),
        weight: 0,
        requirements: vec![
            req(CAPACITY_TYPE_LABEL, Operator::In, &["spot"], None),
            req(ARCH_LABEL, Operator::In, &["amd64"], None),
            req(
                INSTANCE_CATEGORY_LABEL,
                Operator::In,
                &["c", "m", "r"],
                None,
            ),
            req(INSTANCE_GENERATION_LABEL, Operator::Gt, &["4"], None),
            req(INSTANCE_TYPE_LABEL, Operator::Exists, &[], Some(10)),
        ],
        labels: [(NODEPOOL_LABEL.to_string(), "default".to_string())].into(),
        taints: Vec::new(),
        limits: Vec::new(),
        min_values_policy: MinValuesPolicy::Strict,
    }
}

/// Whether `t` passes [`nodepool`]'s requirements (for the bound and checks).
pub fn pool_allows(t: &InstanceType) -> bool {
    let label = |k: &str| t.labels.get(k).map(String::as_str);
    label(ARCH_LABEL) == Some("amd64")
        && matches!(label(INSTANCE_CATEGORY_LABEL), Some("c" | "m" | "r"))
        && label(INSTANCE_GENERATION_LABEL)
            .and_then(|g| g.parse::<u32>().ok())
            .is_some_and(|g| g > 4)
        && t.offerings
            .iter()
            .any(|o| o.available && o.capacity_type == CapacityType::Spot)
}

/// The types the pool may launch, with only their Spot offerings: what
/// `workload::cost_lower_bound` should price against.
pub fn allowed_spot_types(types: &[InstanceType]) -> Vec<InstanceType> {
    types
        .iter()
        .filter(|t| pool_allows(t))
        .map(|t| InstanceType {
            offerings: t
                .offerings
                .iter()
                .filter(|o| o.capacity_type == CapacityType::Spot)
                .cloned()
                .collect(),
            ..t.clone()
        })
        .collect()
}

fn mem(cpu_millis: u64, memory_mib: u64) -> Resources {
    Resources {
        cpu_millis,
        memory_bytes: memory_mib * MIB,
        ..Resources::default()
    }
}

pub fn daemonsets() -> Vec<DaemonSetFacts> {
    vec![
        DaemonSetFacts {
            name: "logging/fluent-bit".into(),
            requests: mem(100, 128),
            node_selector: BTreeMap::new(),
            required_affinity: Vec::new(),
            tolerations: vec![Toleration {
                key: None,
                exists: true,
                value: None,
                effect: None,
            }],
        },
        DaemonSetFacts {
            name: "monitoring/node-exporter".into(),
            requests: mem(50, 64),
            node_selector: BTreeMap::new(),
            required_affinity: Vec::new(),
            tolerations: Vec::new(),
        },
    ]
}

fn app(value: &str) -> LabelSelector {
    LabelSelector {
        requirements: vec![req("app", Operator::In, &[value], None)],
    }
}

fn pod(namespace: &str, name: String, app_label: &str, requests: Resources) -> PendingPod {
    PendingPod {
        key: format!("{namespace}/{name}"),
        namespace: namespace.into(),
        labels: [("app".to_string(), app_label.to_string())].into(),
        requests,
        ..PendingPod::default()
    }
}

/// `n` pods in the mix of the module documentation.
pub fn mix(n: usize) -> Vec<PendingPod> {
    let web = n * 40 / 100;
    let api = n * 25 / 100;
    let cache = n * 12 / 100;
    let batch = n * 20 / 100;
    let big = n - web - api - cache - batch;
    let mut pods = Vec::with_capacity(n);
    for i in 0..web {
        let mut p = pod("shop", format!("web-{i}"), "web", mem(250, 512));
        p.topology_spread.push(SpreadConstraint {
            topology_key: ZONE_LABEL.into(),
            max_skew: 1,
            hard: true,
            selector: app("web"),
        });
        pods.push(p);
    }
    for i in 0..api {
        let service = i / 10;
        let label = format!("api-{service}");
        let mut p = pod(
            "shop",
            format!("{label}-{}", i % 10),
            &label,
            mem(1000, 2048),
        );
        if service % 5 == 0 {
            p.hostname_anti_affinity.push(app(&label));
        }
        pods.push(p);
    }
    for i in 0..cache {
        pods.push(pod("shop", format!("cache-{i}"), "cache", mem(500, 8192)));
    }
    for i in 0..batch {
        pods.push(pod("batch", format!("batch-{i}"), "batch", mem(2000, 4096)));
    }
    for i in 0..big {
        pods.push(pod(
            "analytics",
            format!("big-{i}"),
            "big",
            mem(8000, 32 * 1024),
        ));
    }
    pods
}

/// The whole solver input for `n` pods.
pub fn workload(n: usize) -> Workload {
    Workload {
        pods: mix(n),
        nodes: Vec::new(),
        nodepools: vec![nodepool()],
        daemonsets: daemonsets(),
        instance_types: instance_types(),
    }
}

pub fn gib(bytes: u64) -> f64 {
    bytes as f64 / GIB as f64
}

/// The LP relaxation of "cover the pods' total cpu and memory with
/// instances": minimise `Σ x_t · spot_t` over fractional counts `x_t ≥ 0`
/// with `Σ x_t · usable_t ≥` the pods' total on both cpu and memory, where
/// `usable_t` is the type's allocatable minus every DaemonSet (all of them
/// land on every node of [`nodepool`]: no taints, no selectors). Any plan
/// is a feasible point (its nodes hold its pods), so no plan costs less.
/// With two constraints an optimal vertex uses one or two types, so every
/// single type and pair is tried. Pod slots are left out (a relaxation).
pub fn lp_bound(pods: &[PendingPod], types: &[InstanceType], daemonsets: &[DaemonSetFacts]) -> f64 {
    let need_cpu: f64 = pods.iter().map(|p| p.requests.cpu_millis as f64).sum();
    let need_mem: f64 = pods.iter().map(|p| p.requests.memory_bytes as f64).sum();
    let ds_cpu: u64 = daemonsets.iter().map(|d| d.requests.cpu_millis).sum();
    let ds_mem: u64 = daemonsets.iter().map(|d| d.requests.memory_bytes).sum();
    let usable: Vec<(f64, f64, f64)> = types
        .iter()
        .filter_map(|t| {
            let price = t
                .offerings
                .iter()
                .filter(|o| o.available && o.capacity_type == CapacityType::Spot)
                .map(|o| o.price)
                .min_by(f64::total_cmp)?;
            let cpu = t.allocatable.cpu_millis.checked_sub(ds_cpu)? as f64;
            let mem = t.allocatable.memory_bytes.checked_sub(ds_mem)? as f64;
            (cpu > 0.0 && mem > 0.0).then_some((cpu, mem, price))
        })
        .collect();
    let mut best = f64::INFINITY;
    for (i, &(c1, m1, p1)) in usable.iter().enumerate() {
        best = best.min(p1 * (need_cpu / c1).max(need_mem / m1));
        for &(c2, m2, p2) in &usable[i + 1..] {
            // Both constraints tight: x1·c1 + x2·c2 = C, x1·m1 + x2·m2 = M.
            let det = c1 * m2 - c2 * m1;
            if det == 0.0 {
                continue;
            }
            let x1 = (need_cpu * m2 - c2 * need_mem) / det;
            let x2 = (c1 * need_mem - need_cpu * m1) / det;
            if x1 >= 0.0 && x2 >= 0.0 {
                best = best.min(x1 * p1 + x2 * p2);
            }
        }
    }
    best
}
