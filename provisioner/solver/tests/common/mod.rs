//! Builders shared by the solver's integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use spotwright_solver::model::*;

pub const GIB: u64 = 1 << 30;
pub const ZONE: &str = "topology.kubernetes.io/zone";
pub const HOSTNAME: &str = "kubernetes.io/hostname";
pub const INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";
pub const INSTANCE_CPU: &str = "spotwright.io/instance-cpu";
pub const CAPACITY_TYPE: &str = "spotwright.io/capacity-type";
pub const ARCH: &str = "kubernetes.io/arch";

pub fn res(cpu_millis: u64, memory_gib: u64) -> Resources {
    Resources {
        cpu_millis,
        memory_bytes: memory_gib * GIB,
        ..Resources::default()
    }
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn req(key: &str, operator: Operator, values: &[&str]) -> Requirement {
    Requirement {
        key: key.into(),
        operator,
        values: values.iter().map(|v| v.to_string()).collect(),
        min_values: None,
    }
}

pub fn selector(key: &str, value: &str) -> LabelSelector {
    LabelSelector {
        requirements: vec![req(key, Operator::In, &[value])],
    }
}

/// `cpus` vCPU, 2 GiB per vCPU, 110 pods, no reserved; one Spot and one
/// on-demand offering per zone at `price_per_cpu × cpus` (on-demand twice that).
pub fn itype(
    name: &str,
    cpus: u64,
    arch: &str,
    zones: &[&str],
    price_per_cpu: f64,
) -> InstanceType {
    let capacity = Resources {
        cpu_millis: cpus * 1000,
        memory_bytes: 2 * cpus * GIB,
        pods: 110,
        ..Resources::default()
    };
    let mut offerings = Vec::new();
    for zone in zones {
        offerings.push(Offering {
            zone: zone.to_string(),
            capacity_type: CapacityType::Spot,
            price: price_per_cpu * cpus as f64,
            available: true,
        });
        offerings.push(Offering {
            zone: zone.to_string(),
            capacity_type: CapacityType::OnDemand,
            price: 2.0 * price_per_cpu * cpus as f64,
            available: true,
        });
    }
    InstanceType {
        name: name.into(),
        labels: labels(&[
            (INSTANCE_TYPE, name),
            (ARCH, arch),
            (INSTANCE_CPU, &cpus.to_string()),
            ("spotwright.io/instance-family", &name[..1]),
        ]),
        allocatable: capacity.clone(),
        capacity,
        offerings,
    }
}

pub fn pool(name: &str) -> NodePoolFacts {
    NodePoolFacts {
        name: name.into(),
        weight: 0,
        requirements: vec![],
        labels: labels(&[("spotwright.io/nodepool", name)]),
        taints: vec![],
        limits: Vec::new(),
        min_values_policy: MinValuesPolicy::Strict,
    }
}

pub fn pod(name: &str, cpu_millis: u64, memory_gib: u64) -> PendingPod {
    PendingPod {
        key: format!("ns/{name}"),
        namespace: "ns".into(),
        labels: BTreeMap::new(),
        requests: res(cpu_millis, memory_gib),
        ..PendingPod::default()
    }
}

pub fn node(name: &str, zone: &str, cpu_millis: u64, requested_cpu: u64) -> ExistingNode {
    ExistingNode {
        name: name.into(),
        labels: labels(&[(ZONE, zone), (HOSTNAME, name)]),
        taints: vec![],
        allocatable: Resources {
            cpu_millis,
            memory_bytes: 64 * GIB,
            pods: 110,
            ..Resources::default()
        },
        requested: Resources {
            cpu_millis: requested_cpu,
            ..Resources::default()
        },
        pods: vec![],
        in_flight: false,
        unavailable: false,
    }
}

pub fn taint(key: &str, value: &str, effect: TaintEffect) -> Taint {
    Taint {
        key: key.into(),
        value: Some(value.into()),
        effect,
    }
}

pub fn tolerate(key: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        exists: true,
        value: None,
        effect: None,
    }
}

pub fn spread(key: &str, max_skew: u32, app: &str) -> SpreadConstraint {
    SpreadConstraint {
        topology_key: key.into(),
        max_skew,
        hard: true,
        selector: selector("app", app),
    }
}
