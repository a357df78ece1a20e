//! A small cluster for the extender's tests: one node per filter reason and
//! a few healthy ones of different fill, price and pool.
#![allow(dead_code)]

use serde_json::{json, Value};
use spotwright_api::interruption::InterruptionRecord;
use spotwright_api::keys::CapacityType;
use spotwright_extender::facts::{ClaimFacts, Expiry, NodeFacts, PodFacts, Resources};
use spotwright_extender::fixtures::catalog;
use spotwright_extender::index::{Change, Index, KeyedInterruption};

pub const GIB: u64 = 1 << 30;
/// The tests' "now", Unix seconds.
pub const NOW: i64 = 1_795_564_800;

pub fn node(name: &str, instance_type: &str, zone: &str, capacity: CapacityType) -> NodeFacts {
    NodeFacts {
        name: name.to_owned(),
        provider_id: Some(format!("aws:///{zone}/i-{name}")),
        instance_type: Some(instance_type.to_owned()),
        zone: Some(zone.to_owned()),
        capacity_type: Some(capacity),
        allocatable: Resources {
            cpu_millis: 3900,
            memory_bytes: 14 * GIB,
            pods: 58,
        },
        capacity_cpu_millis: 4000,
        created: Some(NOW - 86_400),
        ready: true,
        ..NodeFacts::default()
    }
}

pub fn claim(name: &str, node: &str) -> ClaimFacts {
    ClaimFacts {
        name: name.to_owned(),
        node_name: Some(node.to_owned()),
        created: Some(NOW - 86_400),
        expiry: Expiry::AfterSeconds(30 * 86_400),
        ..ClaimFacts::default()
    }
}

pub fn pod(key: &str, node: &str, cpu_millis: u64, memory_gib: u64) -> PodFacts {
    PodFacts {
        key: key.to_owned(),
        group: key.to_owned(),
        node_name: node.to_owned(),
        requests: Resources {
            cpu_millis,
            memory_bytes: memory_gib * GIB,
            pods: 1,
        },
    }
}

/// Nodes:
/// - `full`, `half`, `empty`: healthy m5.xlarge Spot nodes in us-east-1a, with
///   3, 2 and 0 CPUs requested;
/// - `ondemand`: a healthy empty on-demand m5.xlarge;
/// - `noisy`: like `half` but in us-east-1b, whose pool had 3 interruptions;
/// - `tainted`, `deleting`, `notready`, `cordoned`, `drifted`, `disrupting`:
///   one per filter reason.
pub fn index() -> Index {
    let index = Index::new(catalog());
    let spot = |name: &str| node(name, "m5.xlarge", "us-east-1a", CapacityType::Spot);
    let mut nodes = vec![
        spot("full"),
        spot("half"),
        spot("empty"),
        node(
            "ondemand",
            "m5.xlarge",
            "us-east-1a",
            CapacityType::OnDemand,
        ),
        node("noisy", "m5.xlarge", "us-east-1b", CapacityType::Spot),
    ];
    let mut tainted = spot("tainted");
    tainted.disrupted_taint = true;
    let mut deleting = spot("deleting");
    deleting.deleting = true;
    let mut notready = spot("notready");
    notready.ready = false;
    let mut cordoned = spot("cordoned");
    cordoned.unschedulable = true;
    nodes.extend([
        tainted,
        deleting,
        notready,
        cordoned,
        spot("drifted"),
        spot("disrupting"),
    ]);
    index.apply_nodes(Change::Replace(nodes));
    let mut claims: Vec<ClaimFacts> = ["full", "half", "empty", "ondemand", "noisy"]
        .iter()
        .map(|n| claim(&format!("claim-{n}"), n))
        .collect();
    claims.push(ClaimFacts {
        drifted: true,
        ..claim("claim-drifted", "drifted")
    });
    claims.push(ClaimFacts {
        disrupting: true,
        ..claim("claim-disrupting", "disrupting")
    });
    index.apply_claims(Change::Replace(claims));
    index.apply_pods(Change::Replace(vec![
        pod("p1", "full", 2000, 8),
        pod("p2", "full", 1000, 2),
        pod("p3", "half", 2000, 6),
        pod("p4", "noisy", 2000, 6),
    ]));
    let interruptions = (0..3)
        .map(|i| KeyedInterruption {
            key: format!("spotwright-system/interruption-{i}"),
            record: InterruptionRecord {
                instance_type: "m5.xlarge".into(),
                zone: "us-east-1b".into(),
                at_unix_seconds: NOW - 600 * i,
                count: 1,
            },
        })
        .collect();
    index.apply_interruptions(Change::Replace(interruptions), NOW - 3600);
    index
}

pub const HEALTHY: [&str; 5] = ["full", "half", "empty", "ondemand", "noisy"];
pub const REJECTED: [&str; 6] = [
    "tainted",
    "deleting",
    "notready",
    "cordoned",
    "drifted",
    "disrupting",
];

/// A pod requesting 500m and 1Gi.
pub fn pod_json() -> Value {
    json!({
        "metadata": {"name": "web-1", "namespace": "team-spot", "uid": "u-1"},
        "spec": {"containers": [{"name": "web", "image": "nginx", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}]}
    })
}

pub fn args_names(names: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&json!({"Pod": pod_json(), "Nodes": null, "NodeNames": names})).unwrap()
}

/// A v1.Node as the scheduler sends it without nodeCacheCapable.
pub fn node_json(name: &str, ready: bool) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "node.kubernetes.io/instance-type": "m5.xlarge",
            "topology.kubernetes.io/zone": "us-east-1a",
            "spotwright.io/capacity-type": "spot"
        }},
        "spec": {"providerID": format!("aws:///us-east-1a/i-{name}")},
        "status": {
            "capacity": {"cpu": "4", "memory": "16Gi", "pods": "58"},
            "allocatable": {"cpu": "3900m", "memory": "14Gi", "pods": "58"},
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            "images": [{"names": ["registry.example.com/big:1"], "sizeBytes": 123456789}]
        }
    })
}

pub fn args_nodes(nodes: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "Pod": pod_json(),
        "Nodes": {"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": nodes},
        "NodeNames": null
    }))
    .unwrap()
}

/// `{"Host": score}` from a prioritize reply.
pub fn scores(reply: &[u8]) -> std::collections::BTreeMap<String, i64> {
    let list: Vec<Value> = serde_json::from_slice(reply).expect("prioritize reply is a JSON array");
    list.iter()
        .map(|hp| {
            (
                hp["Host"].as_str().expect("Host").to_owned(),
                hp["Score"].as_i64().expect("Score"),
            )
        })
        .collect()
}
