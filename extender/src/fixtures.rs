//! A synthetic cluster for benchmarks, the load target and tests: an index
//! filled directly, no API server. Deterministic for a given seed.

use serde_json::{json, Value};
use spotwright_api::interruption::InterruptionRecord;
use spotwright_api::keys::CapacityType;
use spotwright_api::prices::PriceCatalog;

use crate::facts::{ClaimFacts, Expiry, NodeFacts, PodFacts, ReservedRoom, Resources};
use crate::index::{Change, Index, KeyedInterruption};

const GIB: u64 = 1 << 30;
/// Instance types of the synthetic nodes: (type, vCPUs, GiB, max pods).
pub const INSTANCE_TYPES: [(&str, u64, u64, u64); 8] = [
    ("m5.xlarge", 4, 16, 58),
    ("m5.2xlarge", 8, 32, 58),
    ("m6i.2xlarge", 8, 32, 58),
    ("c5.2xlarge", 8, 16, 58),
    ("c6i.4xlarge", 16, 32, 234),
    ("r5.2xlarge", 8, 64, 58),
    ("m7i.4xlarge", 16, 64, 234),
    ("m5.4xlarge", 16, 64, 234),
];
pub const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
/// The "now" of the synthetic cluster, in Unix seconds (2026-11-25).
pub const NOW: i64 = 1_795_564_800;

/// splitmix64: a small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The embedded price snapshot; it is part of the binary and parses (a
/// unit test of `spotwright-api` checks it), so fixtures may rely on it.
pub fn catalog() -> &'static PriceCatalog {
    match PriceCatalog::embedded() {
        Ok(catalog) => catalog,
        Err(err) => panic!("the embedded price snapshot does not parse: {err}"),
    }
}

/// The name of synthetic node `i`.
pub fn node_name(i: usize) -> String {
    format!(
        "ip-10-{}-{}-{}.ec2.internal",
        (i >> 16) & 255,
        (i >> 8) & 255,
        i & 255
    )
}

/// A synthetic cluster: its index and its node names.
pub struct Synthetic {
    pub index: Index,
    pub names: Vec<String>,
}

/// `nodes` nodes (70% Spot, 1% tainted disrupted, 1% NotReady, 2% with a
/// Drifted NodeClaim), `pods` bound pods spread over them (50m–1 CPU,
/// 64Mi–2Gi each), and a few interruption records.
pub fn synthetic(nodes: usize, pods: usize, seed: u64) -> Synthetic {
    let mut rng = Rng(seed);
    let index = Index::new(catalog());
    let mut names = Vec::with_capacity(nodes);
    let mut facts = Vec::with_capacity(nodes);
    let mut claims = Vec::with_capacity(nodes);
    for i in 0..nodes {
        let name = node_name(i);
        let (instance_type, vcpus, gib, max_pods) =
            INSTANCE_TYPES[rng.below(INSTANCE_TYPES.len() as u64) as usize];
        let zone = ZONES[rng.below(ZONES.len() as u64) as usize];
        let capacity_type = if rng.below(10) < 7 {
            CapacityType::Spot
        } else {
            CapacityType::OnDemand
        };
        let provider_id = format!("aws:///{zone}/i-{i:017x}");
        let created = NOW - rng.below(30 * 86_400) as i64;
        let roll = rng.below(100);
        facts.push(NodeFacts {
            name: name.clone(),
            provider_id: Some(provider_id.clone()),
            instance_type: Some(instance_type.to_owned()),
            zone: Some(zone.to_owned()),
            capacity_type: Some(capacity_type),
            allocatable: Resources {
                cpu_millis: vcpus * 1000 - 100,
                memory_bytes: gib * GIB * 9 / 10,
                pods: max_pods,
            },
            capacity_cpu_millis: vcpus * 1000,
            created: Some(created),
            ready: roll != 1,
            unschedulable: false,
            deleting: false,
            disrupted_taint: roll == 0,
        });
        claims.push(ClaimFacts {
            name: format!("default-{i:05}"),
            node_name: Some(name.clone()),
            provider_id: Some(provider_id),
            capacity_type: Some(capacity_type),
            instance_type: Some(instance_type.to_owned()),
            zone: Some(zone.to_owned()),
            created: Some(created),
            expiry: Expiry::AfterSeconds(30 * 86_400),
            drifted: (2..4).contains(&roll),
            disrupting: false,
            initialized: true,
            reserved: None,
        });
        names.push(name);
    }
    index.apply_nodes(Change::Replace(facts));
    index.apply_claims(Change::Replace(claims));
    let mut bound = Vec::with_capacity(pods);
    for p in 0..pods {
        let node = &names[rng.below(nodes as u64) as usize];
        let key = format!("{:08x}-0000-4000-8000-{p:012x}", rng.next() as u32);
        bound.push(PodFacts {
            group: format!("rs-{}", p % 50),
            key,
            node_name: node.clone(),
            requests: Resources {
                cpu_millis: 50 + rng.below(20) * 50,
                memory_bytes: (64 << 20) * (1 + rng.below(32)),
                pods: 1,
            },
        });
    }
    if nodes > 0 {
        index.apply_pods(Change::Replace(bound));
    }
    let interruptions = (0..12)
        .map(|i| KeyedInterruption {
            key: format!("spotwright-system/interruption-{i}"),
            record: InterruptionRecord {
                instance_type: INSTANCE_TYPES[i % 3].0.to_owned(),
                zone: ZONES[i % 2].to_owned(),
                at_unix_seconds: NOW - (i as i64) * 240,
                count: 1,
            },
        })
        .collect();
    index.apply_interruptions(Change::Replace(interruptions), NOW - 3600);
    Synthetic { index, names }
}

/// The UID of [`pod_json`].
pub const POD_UID: &str = "5b3f1f4e-8a55-4b9e-9d59-2b7a3f0c1e2d";

/// Makes every `every`-th node of `cluster` 30 s old, with a NodeClaim
/// holding room for 20 pods not bound yet, the pod of [`pod_json`] among
/// those of the first: a cluster in the middle of a burst, where the filter
/// checks held room on each young candidate.
pub fn hold_room(cluster: &Synthetic, every: usize) {
    let mut nodes = Vec::new();
    let mut claims = Vec::new();
    for (i, name) in cluster.names.iter().enumerate().step_by(every.max(1)) {
        let read = cluster.index.read();
        let view = read.node(name);
        let (Some(facts), Some(claim)) = (view.facts, view.claim) else {
            continue;
        };
        let mut pods: Vec<String> = (0..20).map(|k| format!("held-{i}-{k}")).collect();
        if i == 0 {
            pods[0] = POD_UID.to_owned();
        }
        nodes.push(NodeFacts {
            created: Some(NOW - 30),
            ..facts.clone()
        });
        claims.push(ClaimFacts {
            reserved: Some(ReservedRoom {
                requests: Resources {
                    cpu_millis: facts.allocatable.cpu_millis / 2,
                    memory_bytes: facts.allocatable.memory_bytes / 2,
                    pods: 20,
                },
                pods,
                groups: Vec::new(),
            }),
            ..claim.clone()
        });
    }
    for node in nodes {
        cluster.index.apply_nodes(Change::Upsert(node));
    }
    for claim in claims {
        cluster.index.apply_claims(Change::Upsert(claim));
    }
}

/// A realistic pod of a Deployment, as the scheduler sends it: two
/// containers, an init container, probes, tolerations, affinity.
pub fn pod_json() -> Value {
    json!({
        "metadata": {
            "name": "web-7d9f8b6c5d-x2x9q",
            "generateName": "web-7d9f8b6c5d-",
            "namespace": "team-spot",
            "uid": POD_UID,
            "labels": {"app": "web", "pod-template-hash": "7d9f8b6c5d"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f8b6c5d",
                                 "uid": "0c6c7a0e-1d0b-4a4f-9b3c-6f7c1c2d3e4f", "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "schedulerName": "spotwright-scheduler",
            "initContainers": [{
                "name": "migrate", "image": "registry.example.com/web:1.4.2", "command": ["/bin/migrate"],
                "resources": {"requests": {"cpu": "200m", "memory": "128Mi"}}
            }],
            "containers": [
                {
                    "name": "web", "image": "registry.example.com/web:1.4.2",
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 5},
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10}
                },
                {
                    "name": "proxy", "image": "registry.example.com/proxy:2.0",
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}
                }
            ],
            "tolerations": [
                {"key": "spotwright.io/capacity-type", "operator": "Equal", "value": "spot", "effect": "NoSchedule"},
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "spotwright.io/capacity-type", "operator": "In", "values": ["spot"]}]}
            ]}}},
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst"
        },
        "status": {"phase": "Pending"}
    })
}

/// An `ExtenderArgs` body with `NodeNames` (`nodeCacheCapable: true`).
pub fn args_with_names(names: &[String]) -> Vec<u8> {
    serde_json::to_vec(&json!({"Pod": pod_json(), "Nodes": null, "NodeNames": names}))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_synthetic_cluster_has_what_it_promises() {
        let cluster = synthetic(500, 5000, 7);
        let sizes = cluster.index.sizes();
        assert_eq!(
            (sizes.nodes, sizes.pods, sizes.nodeclaims),
            (500, 5000, 500)
        );
        assert_eq!(sizes.interruptions, 12);
        assert_eq!(cluster.names.len(), 500);
        assert_eq!(node_name(258), "ip-10-0-1-2.ec2.internal");
        let again = synthetic(500, 5000, 7);
        assert_eq!(again.names, cluster.names);
        assert!(!args_with_names(&cluster.names).is_empty());
    }

    #[test]
    fn a_cluster_holding_room_turns_the_pod_away_from_some_young_nodes() {
        use crate::answer::{filter, Settings};
        let cluster = synthetic(500, 5000, 7);
        let body = args_with_names(&cluster.names);
        let settings = Settings {
            hold_room_for: std::time::Duration::from_secs(90),
            ..Settings::default()
        };
        let before = filter(&body, &cluster.index, &settings, NOW).expect("answered");
        hold_room(&cluster, 10);
        let after = filter(&body, &cluster.index, &settings, NOW).expect("answered");
        let reserved = crate::filter::Reason::Reserved.index();
        assert_eq!(before.rejected[reserved], 0);
        assert!(after.rejected[reserved] > 0, "{:?}", after.rejected);
        assert!(
            after.rejected[reserved] < 50,
            "not node 0, its own: {:?}",
            after.rejected
        );
    }
}
