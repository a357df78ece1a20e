//! Scale benchmark of the provisioner's cluster state ([`ClusterState`]).
//!
//! Generates a cluster the way an API server would return it (EKS/KWOK-like
//! Nodes with their status, images and managed fields; Deployment and
//! DaemonSet pods with full specs and statuses, about 2% of them pending;
//! NodeClaims, NodePools, NodeClasses, DaemonSets and Namespaces), records it
//! as a watch stream (one `{"type":"ADDED","object":…}` line per event, one
//! file per kind, in a temp dir), then replays the files through
//! `ClusterState::start`: `Init`, one `InitApply` per line, `InitDone`, each
//! object parsed only when the reflector asks for it, as a paginated list
//! would deliver it. Objects are generated and written one at a time, so
//! after the sync only the state holds them.
//!
//! Measures: VmRSS and VmHWM (from `/proc/self/status`) and the live heap (a
//! thin counter around the system allocator, one relaxed atomic add per
//! allocation) before generating, once the state is synced, after the timed
//! rebuilds and after the `problem` calls; the time of a full snapshot
//! rebuild (`Snapshot::build(state.lists())`) and of the solver's input
//! (`Snapshot::problem`); per kind, the heap its objects take untrimmed and
//! trimmed, and where a trimmed pod's and node's bytes go, measured in a
//! child process that holds the same recording without a state (so its
//! figures don't disturb this process's).
//!
//! Prints a Markdown table, then one JSON line (what `bench/state/run` reads).
//!
//! ```text
//! cargo run --release -p spotwright-provisioner --example state_scale -- \
//!     [--nodes 5000] [--pods 50000] [--rounds 30] [--problem-rounds 10]
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs::File;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use futures::{stream, StreamExt};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::core::WatchEvent;
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use spotwright_api::{keys, NodeClaim, NodeClass, NodePool};
use spotwright_provisioner::state::{trim, ClusterState, Feed, Feeds, Snapshot};

/// The system allocator, counting the bytes it has handed out and not got
/// back: what the process holds, without what the allocator keeps in reserve
/// (which RSS includes).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Allocations handed out and not given back.
static BLOCKS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
            BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
            BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        BLOCKS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size >= layout.size() {
                LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[derive(Parser, Debug)]
#[command(about = "Scale benchmark of the provisioner's cluster state")]
struct Args {
    /// Nodes in the generated cluster.
    #[arg(long, default_value_t = 5_000)]
    nodes: usize,
    /// Pods in the generated cluster (about 2% pending, the rest bound).
    #[arg(long, default_value_t = 50_000)]
    pods: usize,
    /// Timed snapshot rebuilds (after one untimed).
    #[arg(long, default_value_t = 30)]
    rounds: usize,
    /// Timed `Snapshot::problem` calls (after one untimed).
    #[arg(long, default_value_t = 10)]
    problem_rounds: usize,
    /// Skip the child process that measures the objects untrimmed.
    #[arg(long)]
    no_untrimmed: bool,
    /// Internal: hold the recording in DIR untrimmed, print its memory as JSON.
    #[arg(long, value_name = "DIR", hide = true)]
    hold_untrimmed: Option<PathBuf>,
}

const MIB: f64 = 1024.0 * 1024.0;

/// A field of `/proc/self/status` (`VmRSS`, `VmHWM`), in MiB.
fn proc_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn heap_mib() -> f64 {
    LIVE.load(Ordering::Relaxed) as f64 / MIB
}

/// The process's memory at one moment.
#[derive(Clone, Copy, Debug, Serialize)]
struct Memory {
    rss_mib: f64,
    hwm_mib: f64,
    heap_mib: f64,
    /// Live allocations, in thousands (each costs the allocator 8–16 bytes
    /// more than the heap figure counts).
    heap_blocks_k: f64,
}

fn memory() -> Memory {
    Memory {
        rss_mib: round1(proc_mib("VmRSS")),
        hwm_mib: round1(proc_mib("VmHWM")),
        heap_mib: round1(heap_mib()),
        heap_blocks_k: round1(BLOCKS.load(Ordering::Relaxed) as f64 / 1e3),
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// min / median / p90 / max of some durations, in ms.
#[derive(Clone, Copy, Debug, Serialize)]
struct Spread {
    min: f64,
    median: f64,
    p90: f64,
    max: f64,
}

fn spread(samples: &[Duration]) -> Spread {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    if n == 0 {
        return Spread {
            min: 0.0,
            median: 0.0,
            p90: 0.0,
            max: 0.0,
        };
    }
    let median = if n % 2 == 1 {
        ms[n / 2]
    } else {
        (ms[n / 2 - 1] + ms[n / 2]) / 2.0
    };
    // Nearest rank.
    let p90 = ms[(n * 9).div_ceil(10).max(1) - 1];
    Spread {
        min: round2(ms[0]),
        median: round2(median),
        p90: round2(p90),
        max: round2(ms[n - 1]),
    }
}

// ---------------------------------------------------------------------------
// The generated cluster.

const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A name suffix of five characters, distinct for every `n` below 27^5 (the
/// API server's are random; these must not collide).
fn unique_suffix(n: usize) -> String {
    let mut x = (n as u64).wrapping_mul(7_654_321) % 27u64.pow(5);
    (0..5)
        .map(|_| {
            let c = ALPHABET[(x % 27) as usize] as char;
            x /= 27;
            c
        })
        .collect()
}

/// A seed from a name (FNV-1a), for what is generated once per name.
fn seed(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Deterministic randomness (splitmix64): every run generates the same cluster.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn hex(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len + 16);
        while s.len() < len {
            s.push_str(&format!("{:016x}", self.next()));
        }
        s.truncate(len);
        s
    }

    fn uid(&mut self) -> String {
        let h = self.hex(32);
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }

    /// The alphabet of generated name suffixes (no vowels).
    fn suffix(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len())] as char)
            .collect()
    }

    /// A time in November 2026, as the API server writes it.
    fn time(&mut self) -> String {
        let (day, secs) = (1 + self.below(20), self.below(86_400));
        format!(
            "2026-11-{day:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

struct InstanceType {
    name: &'static str,
    family: &'static str,
    size: &'static str,
    cpu: u32,
    memory_gib: u32,
    generation: u32,
    max_pods: u32,
}

const TYPES: [InstanceType; 8] = [
    InstanceType {
        name: "m6i.2xlarge",
        family: "m6i",
        size: "2xlarge",
        cpu: 8,
        memory_gib: 32,
        generation: 6,
        max_pods: 58,
    },
    InstanceType {
        name: "m6i.4xlarge",
        family: "m6i",
        size: "4xlarge",
        cpu: 16,
        memory_gib: 64,
        generation: 6,
        max_pods: 234,
    },
    InstanceType {
        name: "m5.2xlarge",
        family: "m5",
        size: "2xlarge",
        cpu: 8,
        memory_gib: 32,
        generation: 5,
        max_pods: 58,
    },
    InstanceType {
        name: "c6i.4xlarge",
        family: "c6i",
        size: "4xlarge",
        cpu: 16,
        memory_gib: 32,
        generation: 6,
        max_pods: 234,
    },
    InstanceType {
        name: "c5.4xlarge",
        family: "c5",
        size: "4xlarge",
        cpu: 16,
        memory_gib: 32,
        generation: 5,
        max_pods: 234,
    },
    InstanceType {
        name: "r6i.2xlarge",
        family: "r6i",
        size: "2xlarge",
        cpu: 8,
        memory_gib: 64,
        generation: 6,
        max_pods: 58,
    },
    InstanceType {
        name: "m7i.4xlarge",
        family: "m7i",
        size: "4xlarge",
        cpu: 16,
        memory_gib: 64,
        generation: 7,
        max_pods: 234,
    },
    InstanceType {
        name: "r5.4xlarge",
        family: "r5",
        size: "4xlarge",
        cpu: 16,
        memory_gib: 128,
        generation: 5,
        max_pods: 234,
    },
];

const ZONES: [(&str, &str); 3] = [
    ("us-east-1a", "use1-az1"),
    ("us-east-1b", "use1-az2"),
    ("us-east-1c", "use1-az4"),
];

/// The pools Spotwright's nodes belong to: (name, capacity type, NodeClass).
const POOLS: [(&str, &str, &str); 3] = [
    ("default", keys::SPOT, "default"),
    ("batch", keys::SPOT, "default"),
    ("steady", keys::ON_DEMAND, "al2023"),
];

const TEAMS: usize = 40;
const APP_NAMES: [&str; 12] = [
    "checkout",
    "cart",
    "catalog",
    "search",
    "payments",
    "ledger",
    "profile",
    "gateway",
    "notifier",
    "recommender",
    "inventory",
    "reports",
];
/// Workload pods per Deployment.
const REPLICAS: usize = 25;
/// The DaemonSets whose pods run on every node: (namespace, name, cpu, memory).
const NODE_DAEMONS: [(&str, &str, &str, &str); 2] = [
    ("kube-system", "kube-proxy", "100m", "64Mi"),
    ("kube-system", "aws-node", "25m", "128Mi"),
];

fn team(i: usize) -> String {
    format!("team-{i:02}")
}

/// Teams whose namespaces opted in to Spotwright's capacity.
fn opted_in(team_index: usize) -> bool {
    team_index.is_multiple_of(4)
}

fn node_ip(i: usize) -> String {
    format!("10.{}.{}.{}", 16 + (i >> 16), (i >> 8) & 255, i & 255)
}

fn node_name(i: usize) -> String {
    format!("ip-{}.ec2.internal", node_ip(i).replace('.', "-"))
}

fn instance_id(i: usize) -> String {
    format!(
        "i-0{:016x}",
        (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d) >> 4
    )
}

fn provider_id(i: usize) -> String {
    format!("aws:///{}/{}", ZONES[i % 3].0, instance_id(i))
}

fn instance_type(i: usize) -> &'static InstanceType {
    &TYPES[i % TYPES.len()]
}

/// Nodes launched by Spotwright (they carry NodeClaims): the first tenth.
fn spotwright_pool(
    i: usize,
    claimed_nodes: usize,
) -> Option<(&'static str, &'static str, &'static str)> {
    (i < claimed_nodes).then(|| POOLS[i % POOLS.len()])
}

/// Images nodes have pulled: (digest name, tag name, size).
struct Images(Vec<(String, String, u64)>);

impl Images {
    fn new(rng: &mut Rng) -> Images {
        let mut images = Vec::new();
        for (repo, tag) in [
            (
                "602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/pause",
                "3.10",
            ),
            (
                "602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/kube-proxy",
                "v1.36.3-minimal-eksbuild.2",
            ),
            (
                "602401143452.dkr.ecr.us-east-1.amazonaws.com/amazon-k8s-cni",
                "v1.19.2-eksbuild.1",
            ),
            (
                "602401143452.dkr.ecr.us-east-1.amazonaws.com/amazon-k8s-cni-init",
                "v1.19.2-eksbuild.1",
            ),
            (
                "602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/aws-ebs-csi-driver",
                "v1.38.1",
            ),
            ("quay.io/prometheus/node-exporter", "v1.8.2"),
        ] {
            images.push(image(rng, repo, tag));
        }
        for app in 0..200 {
            let repo = format!(
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/{}/{}",
                team(app % TEAMS),
                APP_NAMES[app % APP_NAMES.len()]
            );
            images.push(image(
                rng,
                &repo,
                &format!("v{}.{}.{}", 1 + app % 5, app % 17, app % 9),
            ));
        }
        Images(images)
    }

    fn app(&self, app: usize) -> &(String, String, u64) {
        let apps = &self.0[6..];
        &apps[app % apps.len()]
    }
}

fn image(rng: &mut Rng, repo: &str, tag: &str) -> (String, String, u64) {
    (
        format!("{repo}@sha256:{}", rng.hex(64)),
        format!("{repo}:{tag}"),
        20_000_000 + rng.next() % 400_000_000,
    )
}

fn managed(
    manager: &str,
    operation: &str,
    time: &str,
    subresource: Option<&str>,
    fields: Value,
) -> Value {
    let mut entry = json!({"manager": manager, "operation": operation, "apiVersion": "v1",
        "time": time, "fieldsType": "FieldsV1", "fieldsV1": fields});
    if let Some(sub) = subresource {
        entry["subresource"] = json!(sub);
    }
    entry
}

fn node(i: usize, claimed_nodes: usize, images: &Images, rng: &mut Rng) -> Value {
    let t = instance_type(i);
    let (zone, zone_id) = ZONES[i % 3];
    let name = node_name(i);
    let ip = node_ip(i);
    let arch = if t.family.ends_with('g') {
        "arm64"
    } else {
        "amd64"
    };
    let mut labels = json!({
        "beta.kubernetes.io/arch": arch, "beta.kubernetes.io/instance-type": t.name,
        "beta.kubernetes.io/os": "linux", "kubernetes.io/arch": arch, "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux", "node.kubernetes.io/instance-type": t.name,
        "topology.kubernetes.io/region": "us-east-1", "topology.kubernetes.io/zone": zone,
        "topology.k8s.aws/zone-id": zone_id, "type": "kwok",
    });
    let mut taints = Vec::new();
    match spotwright_pool(i, claimed_nodes) {
        Some((pool, capacity, _)) => {
            for (key, value) in [
                (keys::NODEPOOL_LABEL, pool.to_owned()),
                (keys::CAPACITY_TYPE_LABEL, capacity.to_owned()),
                (keys::INSTANCE_CATEGORY_LABEL, t.family[..1].to_owned()),
                (keys::INSTANCE_FAMILY_LABEL, t.family.to_owned()),
                (keys::INSTANCE_GENERATION_LABEL, t.generation.to_string()),
                (keys::INSTANCE_SIZE_LABEL, t.size.to_owned()),
                (keys::INSTANCE_CPU_LABEL, t.cpu.to_string()),
                (
                    keys::INSTANCE_MEMORY_LABEL,
                    (t.memory_gib * 1024).to_string(),
                ),
            ] {
                labels[key] = json!(value);
            }
            if capacity == keys::SPOT {
                taints.push(json!({"key": keys::CAPACITY_TYPE_LABEL, "value": keys::SPOT, "effect": "NoSchedule"}));
            }
        }
        None => {
            let group = format!("general-{}", i % 4);
            labels["eks.amazonaws.com/nodegroup"] = json!(group);
            labels["eks.amazonaws.com/capacityType"] = json!(keys::EKS_ON_DEMAND);
            labels["eks.amazonaws.com/nodegroup-image"] = json!("ami-0c1d2e3f4a5b6c7d8");
            if i.is_multiple_of(10) {
                taints.push(json!({"key": "dedicated", "value": "data", "effect": "NoSchedule"}));
            }
        }
    }
    let created = rng.time();
    let heartbeat = rng.time();
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": status, "lastHeartbeatTime": heartbeat,
            "lastTransitionTime": created, "reason": reason, "message": message})
    };
    let memory_kib = u64::from(t.memory_gib) * 1024 * 1024 - 360_000;
    let node_images: Vec<Value> = (0..30)
        .map(|k| {
            let (digest, tag, size) = if k < 6 {
                &images.0[k]
            } else {
                images.app(rng.below(200))
            };
            json!({"names": [digest, tag], "sizeBytes": size})
        })
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name, "uid": rng.uid(), "resourceVersion": (1_000_000 + i).to_string(),
            "creationTimestamp": created, "labels": labels,
            "annotations": {
                "alpha.kubernetes.io/provided-node-ip": ip,
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                "kwok.x-k8s.io/node": "fake",
            },
            "managedFields": [
                managed("kubelet", "Update", &created, None, json!({"f:metadata": {
                    "f:annotations": {".": {}, "f:alpha.kubernetes.io/provided-node-ip": {},
                        "f:volumes.kubernetes.io/controller-managed-attach-detach": {}},
                    "f:labels": {".": {}, "f:beta.kubernetes.io/arch": {}, "f:beta.kubernetes.io/os": {},
                        "f:kubernetes.io/arch": {}, "f:kubernetes.io/hostname": {}, "f:kubernetes.io/os": {},
                        "f:node.kubernetes.io/instance-type": {}, "f:topology.kubernetes.io/region": {},
                        "f:topology.kubernetes.io/zone": {}}},
                    "f:spec": {"f:providerID": {}}})),
                managed("kube-controller-manager", "Update", &created, None, json!({
                    "f:metadata": {"f:annotations": {"f:node.alpha.kubernetes.io/ttl": {}}},
                    "f:spec": {"f:podCIDR": {}, "f:podCIDRs": {".": {}, "v:\"10.244.0.0/24\"": {}}}})),
                managed("spotwright-provisioner", "Update", &created, None, json!({"f:metadata": {"f:labels": {
                    "f:spotwright.io/capacity-type": {}, "f:spotwright.io/instance-cpu": {},
                    "f:spotwright.io/instance-family": {}, "f:spotwright.io/instance-memory": {},
                    "f:spotwright.io/instance-size": {}, "f:spotwright.io/nodepool": {}}},
                    "f:spec": {"f:taints": {}}})),
                managed("kubelet", "Update", &heartbeat, Some("status"), json!({"f:status": {
                    "f:allocatable": {"f:cpu": {}, "f:ephemeral-storage": {}, "f:memory": {}, "f:pods": {}},
                    "f:capacity": {"f:cpu": {}, "f:ephemeral-storage": {}, "f:memory": {}, "f:pods": {}},
                    "f:conditions": {
                        "k:{\"type\":\"DiskPressure\"}": {"f:lastHeartbeatTime": {}},
                        "k:{\"type\":\"MemoryPressure\"}": {"f:lastHeartbeatTime": {}},
                        "k:{\"type\":\"PIDPressure\"}": {"f:lastHeartbeatTime": {}},
                        "k:{\"type\":\"Ready\"}": {"f:lastHeartbeatTime": {}, "f:lastTransitionTime": {},
                            "f:message": {}, "f:reason": {}, "f:status": {}}},
                    "f:images": {}, "f:nodeInfo": {"f:bootID": {}}}})),
            ],
        },
        "spec": {
            "providerID": provider_id(i),
            "podCIDR": format!("10.{}.{}.0/24", 100 + (i >> 8), i & 255),
            "podCIDRs": [format!("10.{}.{}.0/24", 100 + (i >> 8), i & 255)],
            "taints": taints,
        },
        "status": {
            "capacity": {"cpu": t.cpu.to_string(), "ephemeral-storage": "104845292Ki", "hugepages-1Gi": "0",
                "hugepages-2Mi": "0", "memory": format!("{memory_kib}Ki"), "pods": t.max_pods.to_string()},
            "allocatable": {"cpu": format!("{}m", t.cpu * 1000 - 90), "ephemeral-storage": "95551679124",
                "hugepages-1Gi": "0", "hugepages-2Mi": "0", "memory": format!("{}Ki", memory_kib - 1_100_000),
                "pods": t.max_pods.to_string()},
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": ip},
                {"type": "InternalDNS", "address": name},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": rng.hex(32), "systemUUID": format!("ec2{}", &rng.uid()[3..]),
                "bootID": rng.uid(), "kernelVersion": "6.1.115-126.197.amzn2023.x86_64",
                "osImage": "Amazon Linux 2023.6.20241111", "containerRuntimeVersion": "containerd://1.7.23",
                "kubeletVersion": "v1.36.3-eks-7f9249a", "kubeProxyVersion": "", "operatingSystem": "linux",
                "architecture": arch,
            },
            "images": node_images,
            "runtimeHandlers": [
                {"name": "runc", "features": {"recursiveReadOnlyMounts": true, "userNamespaces": true}},
                {"name": "", "features": {"recursiveReadOnlyMounts": true, "userNamespaces": true}},
            ],
            "features": {"supplementalGroupsPolicy": true},
        },
    })
}

/// What a pod is.
#[derive(Clone, Copy)]
enum Role {
    /// A Deployment's replica bound to node `node`.
    Workload { app: usize, node: usize },
    /// A replica the scheduler could not place.
    Pending { app: usize },
    /// The pod of DaemonSet `daemon` (of [`NODE_DAEMONS`]) on node `node`.
    Daemon { daemon: usize, node: usize },
}

fn app_name(app: usize) -> String {
    format!("{}-{app}", APP_NAMES[app % APP_NAMES.len()])
}

/// The namespace of a Deployment; pending pods go to opted-in teams or name
/// Spotwright's scheduler (alternately), the way Spotwright finds them.
fn app_team(app: usize) -> usize {
    app % TEAMS
}

fn template_hash(app: usize) -> String {
    Rng(app as u64 ^ 0x5eed).suffix(10)
}

fn env(name: &str, value: Value) -> Value {
    let mut var = json!({"name": name});
    match value {
        Value::String(s) => var["value"] = json!(s),
        from => var["valueFrom"] = from,
    }
    var
}

fn app_container(app: usize, main: bool, images: &Images) -> Value {
    let name = app_name(app);
    let (_, tag, _) = images.app(app);
    let (cpu, memory) = [
        ("100m", "128Mi"),
        ("250m", "512Mi"),
        ("500m", "1Gi"),
        ("1", "2Gi"),
        ("2", "4Gi"),
    ][app % 5];
    if !main {
        return json!({
            "name": "envoy", "image": "envoyproxy/envoy:v1.31.0",
            "args": ["-c", "/etc/envoy/envoy.yaml", "--service-cluster", name, "--log-level", "warn"],
            "ports": [{"name": "proxy", "containerPort": 15001, "protocol": "TCP"}],
            "env": [env("ENVOY_UID", json!("0")), env("POD_IP", json!({"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}))],
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
            "volumeMounts": [{"name": "envoy-config", "mountPath": "/etc/envoy", "readOnly": true}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 15021, "scheme": "HTTP"}, "periodSeconds": 5,
                "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
            "imagePullPolicy": "IfNotPresent",
        });
    }
    json!({
        "name": name.clone(), "image": tag,
        "command": ["/app/server"],
        "args": ["--port=8080", "--metrics-port=9090", "--log-format=json", format!("--service={name}")],
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}],
        "env": [
            env("POD_NAME", json!({"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}})),
            env("POD_NAMESPACE", json!({"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}})),
            env("GOMAXPROCS", json!({"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1"}})),
            env("FEATURE_FLAGS", json!("fast-checkout,new-cart,coupons-v2")),
            env("DATABASE_URL", json!({"secretKeyRef": {"name": format!("{name}-db"), "key": "url"}})),
        ],
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}},
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/app", "readOnly": true},
            {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true},
        ],
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"}, "initialDelaySeconds": 10,
            "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http", "scheme": "HTTP"}, "timeoutSeconds": 1,
            "periodSeconds": 5, "successThreshold": 1, "failureThreshold": 3},
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {"runAsNonRoot": true, "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
    })
}

fn daemon_container(daemon: usize) -> Value {
    let (_, name, cpu, memory) = NODE_DAEMONS[daemon];
    let image = if daemon == 0 {
        "602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/kube-proxy:v1.36.3-minimal-eksbuild.2"
    } else {
        "602401143452.dkr.ecr.us-east-1.amazonaws.com/amazon-k8s-cni:v1.19.2-eksbuild.1"
    };
    json!({
        "name": name, "image": image,
        "command": [format!("/usr/local/bin/{name}")],
        "args": ["--v=2", "--config=/var/lib/config/config.conf", "--hostname-override=$(NODE_NAME)"],
        "env": [
            env("NODE_NAME", json!({"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}})),
            env("AWS_VPC_K8S_CNI_LOGLEVEL", json!("DEBUG")),
            env("WARM_ENI_TARGET", json!("1")),
            env("ENABLE_PREFIX_DELEGATION", json!("false")),
            env("MY_POD_NAME", json!({"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}})),
        ],
        "resources": {"requests": {"cpu": cpu, "memory": memory}},
        "volumeMounts": [
            {"name": "varlog", "mountPath": "/var/log"},
            {"name": "xtables-lock", "mountPath": "/run/xtables.lock"},
            {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true},
        ],
        "livenessProbe": {"exec": {"command": ["/app/grpc-health-probe", "-addr=:50051", "-connect-timeout=5s"]},
            "initialDelaySeconds": 60, "timeoutSeconds": 10, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3},
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {"privileged": true},
    })
}

fn kube_api_access() -> Value {
    json!({"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}})
}

fn pod(k: usize, role: Role, images: &Images, rng: &mut Rng) -> Value {
    let created = rng.time();
    let started = rng.time();
    let (namespace, name, labels, owner, containers, volumes) = match role {
        Role::Workload { app, .. } | Role::Pending { app } => {
            let app_label = app_name(app);
            let hash = template_hash(app);
            let rs = format!("{app_label}-{hash}");
            let namespace = match role {
                Role::Pending { .. } if k % 2 == 1 => team(4 * (app % (TEAMS / 4))),
                _ => team(app_team(app)),
            };
            let mut containers = vec![app_container(app, true, images)];
            let mut volumes = vec![
                json!({"name": "config", "configMap": {"name": format!("{app_label}-config"), "defaultMode": 420}}),
                kube_api_access(),
            ];
            if app.is_multiple_of(3) {
                containers.push(app_container(app, false, images));
                volumes.push(json!({"name": "envoy-config", "configMap": {"name": "envoy", "defaultMode": 420}}));
            }
            (
                namespace,
                format!("{rs}-{}", unique_suffix(k)),
                json!({"app": app_label, "pod-template-hash": hash, "app.kubernetes.io/part-of": "shop",
                    "version": format!("v{}", app % 40)}),
                json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "uid": rng.uid(),
                    "controller": true, "blockOwnerDeletion": true}),
                containers,
                volumes,
            )
        }
        Role::Daemon { daemon, .. } => {
            let (namespace, ds, _, _) = NODE_DAEMONS[daemon];
            (
                namespace.to_owned(),
                format!("{ds}-{}", unique_suffix(k)),
                json!({"k8s-app": ds, "controller-revision-hash": "7b9c5d8f6", "pod-template-generation": "3"}),
                json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "name": ds, "uid": rng.uid(),
                    "controller": true, "blockOwnerDeletion": true}),
                vec![daemon_container(daemon)],
                vec![
                    json!({"name": "varlog", "hostPath": {"path": "/var/log", "type": ""}}),
                    json!({"name": "xtables-lock", "hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"}}),
                    kube_api_access(),
                ],
            )
        }
    };
    let mut tolerations = vec![
        json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}),
        json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}),
    ];
    let mut spec = json!({
        "volumes": volumes, "containers": containers,
        "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default", "serviceAccount": "default",
        "securityContext": {"runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"}},
        "schedulerName": keys::DEFAULT_SCHEDULER_NAME, "priority": 0, "enableServiceLinks": true,
        "preemptionPolicy": "PreemptLowerPriority",
    });
    let mut annotations = json!({});
    match role {
        Role::Workload { app, .. } | Role::Pending { app } => {
            let app_label = app_name(app);
            let selector = json!({"matchLabels": {"app": app_label}});
            if app.is_multiple_of(2) {
                tolerations.push(json!({"key": keys::CAPACITY_TYPE_LABEL, "operator": "Equal", "value": keys::SPOT, "effect": "NoSchedule"}));
            }
            if app.is_multiple_of(4) {
                spec["topologySpreadConstraints"] = json!([{"maxSkew": 1, "topologyKey": keys::ZONE_LABEL,
                    "whenUnsatisfiable": "DoNotSchedule", "labelSelector": selector}]);
            }
            if app.is_multiple_of(7) {
                spec["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"topologyKey": keys::HOSTNAME_LABEL, "labelSelector": selector}]}});
            } else if app % 10 == 1 {
                spec["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [
                        {"key": keys::ARCH_LABEL, "operator": "In", "values": ["amd64"]},
                        {"key": keys::INSTANCE_FAMILY_LABEL, "operator": "In", "values": ["m6i", "m7i", "c6i"]}]}]}}});
            }
            annotations["prometheus.io/scrape"] = json!("true");
            annotations["prometheus.io/port"] = json!("9090");
            annotations["kubectl.kubernetes.io/restartedAt"] = json!(created);
            if k.is_multiple_of(10) {
                let applied = json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"annotations": {}, "labels": labels, "name": name, "namespace": namespace},
                    "spec": {"containers": spec["containers"].clone(), "volumes": spec["volumes"].clone()}});
                annotations["kubectl.kubernetes.io/last-applied-configuration"] =
                    json!(format!("{applied}\n"));
            }
            if matches!(role, Role::Pending { .. }) && k.is_multiple_of(2) {
                spec["schedulerName"] = json!(keys::SCHEDULER_NAME);
            }
        }
        Role::Daemon { node, .. } => {
            tolerations = vec![json!({"operator": "Exists"})];
            spec["hostNetwork"] = json!(true);
            spec["priorityClassName"] = json!("system-node-critical");
            spec["priority"] = json!(2_000_001_000);
            spec["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": [node_name(node)]}]}]}}});
        }
    }
    spec["tolerations"] = json!(tolerations);
    let container_names: Vec<String> = spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect();
    let condition = |type_: &str| json!({"type": type_, "status": "True", "lastProbeTime": null, "lastTransitionTime": started});
    let status = match role {
        Role::Pending { .. } => json!({
            "phase": "Pending", "qosClass": "Burstable",
            "conditions": [{"type": "PodScheduled", "status": "False", "lastProbeTime": null,
                "lastTransitionTime": created, "reason": "Unschedulable",
                "message": "0/5000 nodes are available: 1200 Insufficient cpu, 800 Insufficient memory, 3000 node(s) didn't match pod topology spread constraints. preemption: 0/5000 nodes are available: 5000 No preemption victims found for incoming pod."}],
        }),
        Role::Workload { node, .. } | Role::Daemon { node, .. } => {
            spec["nodeName"] = json!(node_name(node));
            let pod_ip = format!("10.{}.{}.{}", 100 + (node >> 8), node & 255, 2 + k % 250);
            let host_ip = node_ip(node);
            let statuses: Vec<Value> = container_names
                .iter()
                .enumerate()
                .map(|(c, cname)| {
                    let image = spec["containers"][c]["image"].clone();
                    json!({"name": cname, "image": image, "imageID": format!("{}@sha256:{}", image.as_str().unwrap_or_default(), rng.hex(64)),
                        "containerID": format!("containerd://{}", rng.hex(64)), "ready": true, "restartCount": 0,
                        "started": true, "state": {"running": {"startedAt": started}}, "lastState": {},
                        "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                            "readOnly": true, "recursiveReadOnly": "Disabled"}]})
                })
                .collect();
            json!({
                "phase": "Running",
                "conditions": [condition("PodReadyToStartContainers"), condition("Initialized"),
                    condition("Ready"), condition("ContainersReady"), condition("PodScheduled")],
                "hostIP": host_ip, "hostIPs": [{"ip": host_ip}], "podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
                "startTime": started, "containerStatuses": statuses, "qosClass": "Burstable",
            })
        }
    };
    let mut managed_fields = vec![managed(
        "kube-controller-manager",
        "Update",
        &created,
        None,
        json!({
        "f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}, "f:pod-template-hash": {}},
            "f:ownerReferences": {".": {}, "k:{\"uid\":\"0d6c9e7a\"}": {}}},
        "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:args": {}, "f:env": {}, "f:image": {},
            "f:imagePullPolicy": {}, "f:livenessProbe": {}, "f:name": {}, "f:ports": {}, "f:readinessProbe": {},
            "f:resources": {"f:limits": {}, "f:requests": {}}, "f:securityContext": {}, "f:volumeMounts": {}}},
            "f:dnsPolicy": {}, "f:enableServiceLinks": {}, "f:restartPolicy": {}, "f:schedulerName": {},
            "f:securityContext": {}, "f:terminationGracePeriodSeconds": {}, "f:tolerations": {}, "f:volumes": {}}}),
    )];
    if !matches!(role, Role::Pending { .. }) {
        managed_fields.push(managed("kubelet", "Update", &started, Some("status"), json!({"f:status": {
            "f:conditions": {"k:{\"type\":\"ContainersReady\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}},
                "k:{\"type\":\"Initialized\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}},
                "k:{\"type\":\"PodReadyToStartContainers\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}},
                "k:{\"type\":\"Ready\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}}},
            "f:containerStatuses": {}, "f:hostIP": {}, "f:hostIPs": {}, "f:phase": {}, "f:podIP": {},
            "f:podIPs": {".": {}, "k:{\"ip\":\"10.0.0.1\"}": {".": {}, "f:ip": {}}}, "f:startTime": {}}})));
    }
    let mut metadata = json!({
        "name": name, "generateName": name[..name.len() - 5].to_owned(), "namespace": namespace,
        "uid": rng.uid(), "resourceVersion": (2_000_000 + k).to_string(), "creationTimestamp": created,
        "labels": labels, "ownerReferences": [owner], "managedFields": managed_fields,
    });
    if annotations.as_object().is_some_and(|a| !a.is_empty()) {
        metadata["annotations"] = annotations;
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status})
}

/// NodeClaim `i`; a registered one is node `i`'s, one in flight has an
/// instance no Node carries yet (`instance`).
fn claim(i: usize, instance: usize, registered: bool, rng: &mut Rng) -> Value {
    let (pool, capacity, class) = POOLS[i % POOLS.len()];
    let t = instance_type(i);
    let (zone, _) = ZONES[i % 3];
    let created = rng.time();
    let condition = |type_: &str, reason: &str| {
        json!({"type": type_, "status": "True", "reason": reason, "message": "",
            "lastTransitionTime": created, "observedGeneration": 1})
    };
    let mut conditions = vec![condition("Launched", "Launched")];
    let mut status = json!({"providerID": provider_id(instance), "instanceType": t.name, "zone": zone,
        "capacityType": capacity, "imageID": "ami-0a1b2c3d4e5f60718",
        "capacity": {"cpu": t.cpu.to_string(), "memory": format!("{}Gi", t.memory_gib), "pods": t.max_pods.to_string()},
        "allocatable": {"cpu": format!("{}m", t.cpu * 1000 - 90), "memory": format!("{}Mi", t.memory_gib * 1024 - 1100),
            "pods": t.max_pods.to_string()}});
    if registered {
        status["nodeName"] = json!(node_name(i));
        conditions.push(condition("Registered", "NodeRegistered"));
        conditions.push(condition("Initialized", "Initialized"));
    }
    status["conditions"] = json!(conditions);
    json!({
        "apiVersion": "spotwright.io/v1alpha1", "kind": "NodeClaim",
        "metadata": {"name": format!("{pool}-{}", unique_suffix(i)), "uid": rng.uid(),
            "resourceVersion": (3_000_000 + i).to_string(), "generation": 1, "creationTimestamp": created,
            "labels": {keys::NODEPOOL_LABEL: pool, keys::CAPACITY_TYPE_LABEL: capacity,
                keys::INSTANCE_TYPE_LABEL: t.name, keys::ZONE_LABEL: zone},
            "annotations": {keys::NODEPOOL_HASH_ANNOTATION: "12816436412339426617",
                keys::NODECLASS_HASH_ANNOTATION: "4371829410265481630"},
            "finalizers": ["spotwright.io/termination"],
            "managedFields": [managed("spotwright-provisioner", "Update", &created, None,
                json!({"f:metadata": {"f:annotations": {}, "f:finalizers": {}, "f:labels": {}}, "f:spec": {}}))]},
        "spec": {
            "nodeClassRef": {"name": class},
            "requirements": [
                {"key": keys::INSTANCE_TYPE_LABEL, "operator": "In",
                    "values": TYPES.iter().map(|t| t.name).collect::<Vec<_>>(), "minValues": 5},
                {"key": keys::ZONE_LABEL, "operator": "In", "values": [zone]},
                {"key": keys::CAPACITY_TYPE_LABEL, "operator": "In", "values": [capacity]},
                {"key": keys::ARCH_LABEL, "operator": "In", "values": ["amd64"]},
                {"key": keys::NODEPOOL_LABEL, "operator": "In", "values": [pool]},
            ],
            "taints": if capacity == keys::SPOT {
                json!([{"key": keys::CAPACITY_TYPE_LABEL, "value": keys::SPOT, "effect": "NoSchedule"}])
            } else {
                json!([])
            },
            "resources": {"cpu": "6500m", "memory": "24Gi", "pods": "12"},
            "expireAfter": "720h",
        },
        "status": status,
    })
}

fn nodepool(i: usize) -> Value {
    let (name, capacity, class) = POOLS[i];
    json!({
        "apiVersion": "spotwright.io/v1alpha1", "kind": "NodePool",
        "metadata": {"name": name, "uid": Rng(i as u64).uid(), "resourceVersion": "4000", "generation": 3,
            "creationTimestamp": "2026-10-01T08:00:00Z",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"spotwright.io/v1alpha1\",\"kind\":\"NodePool\"}\n"}},
        "spec": {
            "template": {"metadata": {"labels": {"team": "platform"}}, "spec": {
                "nodeClassRef": {"name": class},
                "requirements": [
                    {"key": keys::CAPACITY_TYPE_LABEL, "operator": "In", "values": [capacity]},
                    {"key": keys::INSTANCE_CATEGORY_LABEL, "operator": "In", "values": ["c", "m", "r"]},
                    {"key": keys::INSTANCE_GENERATION_LABEL, "operator": "Gt", "values": ["4"]},
                    {"key": keys::ARCH_LABEL, "operator": "In", "values": ["amd64"]},
                    {"key": keys::INSTANCE_TYPE_LABEL, "operator": "Exists", "minValues": 5},
                ],
                "taints": if capacity == keys::SPOT {
                    json!([{"key": keys::CAPACITY_TYPE_LABEL, "value": keys::SPOT, "effect": "NoSchedule"}])
                } else {
                    json!([])
                },
                "expireAfter": "720h"}},
            "disruption": {"consolidationPolicy": "WhenEmptyOrUnderutilized", "consolidateAfter": "30s",
                "budgets": [{"nodes": "10%"}, {"nodes": "0", "schedule": "0 9 * * 1-5", "duration": "8h"}]},
            "limits": {"cpu": "20000", "memory": "80000Gi"},
            "weight": 10 * (3 - i as i32),
        },
        "status": {"nodes": 0, "resources": {"cpu": "0", "memory": "0"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "",
                "lastTransitionTime": "2026-10-01T08:00:05Z"}]},
    })
}

fn nodeclass(name: &str) -> Value {
    json!({
        "apiVersion": "spotwright.io/v1alpha1", "kind": "NodeClass",
        "metadata": {"name": name, "uid": Rng(seed(name)).uid(), "resourceVersion": "4100", "generation": 1,
            "creationTimestamp": "2026-10-01T08:00:00Z"},
        "spec": {
            "amiSelector": {"ssmParameter": "/aws/service/eks/optimized-ami/1.36/amazon-linux-2023/x86_64/standard/recommended/image_id"},
            "subnetSelector": [{"tags": {"karpenter.sh/discovery": "prod"}}],
            "securityGroupSelector": [{"tags": {"karpenter.sh/discovery": "prod"}}],
            "instanceProfile": "spotwright-node",
            "tags": {"team": "platform", "cost-center": "1234"},
            "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"volumeSize": "100Gi", "volumeType": "gp3", "encrypted": true}}],
        },
        "status": {
            "amis": [{"id": "ami-0a1b2c3d4e5f60718", "source": "/aws/service/eks/optimized-ami/1.36/amazon-linux-2023/x86_64/standard/recommended/image_id"}],
            "subnets": ZONES.iter().enumerate().map(|(i, (zone, _))| json!({"id": format!("subnet-0{i}a1b2c3d4e5f6"), "zone": zone})).collect::<Vec<_>>(),
            "securityGroups": [{"id": "sg-0123456789abcdef0", "name": "eks-cluster-sg-prod"}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "Resolved", "message": "",
                "lastTransitionTime": "2026-10-01T08:00:03Z"}],
        },
    })
}

fn daemonset(namespace: &str, name: &str, daemon: usize, nodes: usize) -> Value {
    let container = if daemon < NODE_DAEMONS.len() {
        daemon_container(daemon)
    } else {
        json!({"name": name, "image": format!("registry.example.com/{name}:v1.8.2"),
            "args": ["--path.rootfs=/host"], "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}})
    };
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace, "uid": Rng(daemon as u64 + 99).uid(),
            "resourceVersion": "5000", "generation": 3, "creationTimestamp": "2026-10-01T08:00:00Z",
            "labels": {"k8s-app": name},
            "annotations": {"deprecated.daemonset.template.generation": "3"},
            "managedFields": [managed("eks", "Apply", "2026-10-01T08:00:00Z", None, json!({"f:spec": {"f:template": {}}}))]},
        "spec": {
            "selector": {"matchLabels": {"k8s-app": name}},
            "template": {
                "metadata": {"labels": {"k8s-app": name}},
                "spec": {"containers": [container], "hostNetwork": true, "priorityClassName": "system-node-critical",
                    "tolerations": [{"operator": "Exists"}],
                    "volumes": [{"name": "varlog", "hostPath": {"path": "/var/log", "type": ""}}]},
            },
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%", "maxSurge": 0}},
        },
        "status": {"currentNumberScheduled": nodes, "numberMisscheduled": 0, "desiredNumberScheduled": nodes,
            "numberReady": nodes, "observedGeneration": 3, "updatedNumberScheduled": nodes, "numberAvailable": nodes},
    })
}

fn namespace(name: &str, opted: bool) -> Value {
    let mut metadata = json!({"name": name, "uid": Rng(seed(name)).uid(), "resourceVersion": "300",
        "creationTimestamp": "2026-10-01T08:00:00Z", "labels": {"kubernetes.io/metadata.name": name},
        "managedFields": [managed("kubectl-create", "Update", "2026-10-01T08:00:00Z", None,
            json!({"f:metadata": {"f:labels": {".": {}, "f:kubernetes.io/metadata.name": {}}}}))]});
    if opted {
        metadata["annotations"] = json!({keys::CAPACITY_ANNOTATION: keys::SPOT});
    }
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata,
        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
}

// ---------------------------------------------------------------------------
// Recording.

/// How many objects of each kind the cluster has.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    nodes: usize,
    pods: usize,
    claims: usize,
    nodepools: usize,
    nodeclasses: usize,
    daemonsets: usize,
    namespaces: usize,
}

const KINDS: [&str; 7] = [
    "pods",
    "nodes",
    "claims",
    "nodepools",
    "nodeclasses",
    "daemonsets",
    "namespaces",
];

/// Writes one watch event per line, checking the first object of each role
/// against its type: a field the type does not know would silently shrink
/// the benchmark.
struct Recorder {
    out: BufWriter<File>,
    bytes: u64,
    count: usize,
}

impl Recorder {
    fn create(path: &Path) -> anyhow::Result<Recorder> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Recorder {
            out: BufWriter::with_capacity(1 << 20, file),
            bytes: 0,
            count: 0,
        })
    }

    fn add(&mut self, object: Value) -> anyhow::Result<()> {
        let line = serde_json::to_vec(&json!({"type": "ADDED", "object": object}))?;
        self.out.write_all(&line)?;
        self.out.write_all(b"\n")?;
        self.bytes += line.len() as u64 + 1;
        self.count += 1;
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<(usize, u64)> {
        self.out.flush()?;
        Ok((self.count, self.bytes))
    }
}

/// Every path of `original` that is missing or different after a round trip
/// through `K`.
fn lost_fields<K: DeserializeOwned + Serialize>(original: &Value) -> anyhow::Result<Vec<String>> {
    fn walk(path: String, a: &Value, b: &Value, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (key, value) in a {
                    match b.get(key) {
                        Some(other) => walk(format!("{path}.{key}"), value, other, out),
                        // Nulls and empty lists/maps are what serializers leave out.
                        None if value.is_null()
                            || value.as_array().is_some_and(Vec::is_empty)
                            || value.as_object().is_some_and(|o| o.is_empty()) => {}
                        None => out.push(format!("{path}.{key}")),
                    }
                }
            }
            (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    walk(format!("{path}[{i}]"), x, y, out);
                }
            }
            _ if a == b => {}
            _ => out.push(format!("{path}: {a} became {b}")),
        }
    }
    let typed: K = serde_json::from_value(original.clone())?;
    let back = serde_json::to_value(&typed)?;
    let mut lost = Vec::new();
    walk(String::new(), original, &back, &mut lost);
    Ok(lost)
}

fn check<K: DeserializeOwned + Serialize>(what: &str, object: &Value) -> anyhow::Result<()> {
    let lost = lost_fields::<K>(object)?;
    if !lost.is_empty() {
        bail!("generated {what} has fields its type drops: {lost:?}");
    }
    Ok(())
}

/// Generates the cluster into `dir`, one file per kind; returns the bytes
/// written per kind, in [`KINDS`] order.
fn record(dir: &Path, nodes: usize, pods: usize) -> anyhow::Result<(Sizes, [u64; 7])> {
    let mut rng = Rng(42);
    let images = Images::new(&mut rng);
    let claims = nodes / 10;
    // A few claims are launched but their Node has not registered yet.
    let in_flight = claims / 50;
    let claimed_nodes = claims - in_flight;
    let mut bytes = [0u64; 7];

    let mut out = Recorder::create(&dir.join("nodes.jsonl"))?;
    for i in 0..nodes {
        let object = node(i, claimed_nodes, &images, &mut rng);
        if i == 0 || i == claimed_nodes {
            check::<Node>("node", &object)?;
        }
        out.add(object)?;
    }
    let (node_count, b) = out.finish()?;
    bytes[1] = b;

    let pending = pods / 50;
    let bound = pods - pending;
    let daemon_pods = if nodes == 0 {
        0
    } else {
        bound.min(NODE_DAEMONS.len() * nodes)
    };
    let mut out = Recorder::create(&dir.join("pods.jsonl"))?;
    for k in 0..pods {
        let role = if k < daemon_pods {
            Role::Daemon {
                daemon: k / nodes,
                node: k % nodes,
            }
        } else if k < bound {
            let w = k - daemon_pods;
            Role::Workload {
                app: w / REPLICAS,
                node: (w * 7 + w / nodes.max(1)) % nodes.max(1),
            }
        } else {
            Role::Pending {
                app: (k - bound) / 5,
            }
        };
        let object = pod(k, role, &images, &mut rng);
        if k == 0 || k == daemon_pods || k == bound || k == bound + 1 || k % 10_000 == 0 {
            check::<Pod>("pod", &object)?;
        }
        out.add(object)?;
    }
    let (pod_count, b) = out.finish()?;
    bytes[0] = b;

    let mut out = Recorder::create(&dir.join("claims.jsonl"))?;
    for i in 0..claims {
        let registered = i < claimed_nodes;
        let instance = if registered { i } else { nodes + i };
        let object = claim(i, instance, registered, &mut rng);
        if i == 0 {
            check::<NodeClaim>("NodeClaim", &object)?;
        }
        out.add(object)?;
    }
    let (claim_count, b) = out.finish()?;
    bytes[2] = b;

    let mut out = Recorder::create(&dir.join("nodepools.jsonl"))?;
    for i in 0..POOLS.len() {
        let object = nodepool(i);
        check::<NodePool>("NodePool", &object)?;
        out.add(object)?;
    }
    let (pool_count, b) = out.finish()?;
    bytes[3] = b;

    let mut out = Recorder::create(&dir.join("nodeclasses.jsonl"))?;
    for name in ["default", "al2023"] {
        let object = nodeclass(name);
        check::<NodeClass>("NodeClass", &object)?;
        out.add(object)?;
    }
    let (class_count, b) = out.finish()?;
    bytes[4] = b;

    let mut out = Recorder::create(&dir.join("daemonsets.jsonl"))?;
    let mut daemonsets: Vec<(&str, &str)> = NODE_DAEMONS.iter().map(|d| (d.0, d.1)).collect();
    daemonsets.extend([
        ("kube-system", "ebs-csi-node"),
        ("monitoring", "node-exporter"),
    ]);
    for (i, (ns, name)) in daemonsets.into_iter().enumerate() {
        let object = daemonset(ns, name, i, nodes);
        check::<DaemonSet>("DaemonSet", &object)?;
        out.add(object)?;
    }
    let (ds_count, b) = out.finish()?;
    bytes[5] = b;

    let mut out = Recorder::create(&dir.join("namespaces.jsonl"))?;
    for name in [
        "default",
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "monitoring",
        keys::SYSTEM_NAMESPACE,
    ] {
        out.add(namespace(name, false))?;
    }
    for t in 0..TEAMS {
        let object = namespace(&team(t), opted_in(t));
        if t == 0 {
            check::<Namespace>("Namespace", &object)?;
        }
        out.add(object)?;
    }
    let (ns_count, b) = out.finish()?;
    bytes[6] = b;

    Ok((
        Sizes {
            nodes: node_count,
            pods: pod_count,
            claims: claim_count,
            nodepools: pool_count,
            nodeclasses: class_count,
            daemonsets: ds_count,
            namespaces: ns_count,
        },
        bytes,
    ))
}

// ---------------------------------------------------------------------------
// Replaying.

fn parse_line<K: DeserializeOwned>(path: &Path, number: usize, line: &str) -> K {
    match serde_json::from_str::<WatchEvent<K>>(line) {
        Ok(WatchEvent::Added(object) | WatchEvent::Modified(object)) => object,
        Ok(other) => panic!("{}:{number}: unexpected {other:?}", path.display()),
        Err(err) => panic!("{}:{number}: {err}", path.display()),
    }
}

/// A recorded watch: `Init`, one `InitApply` per line of `path` (parsed when
/// the reflector asks for it), `InitDone`, then silence, as a watch that
/// has listed everything and sees no change.
fn replay<K>(path: PathBuf) -> anyhow::Result<Feed<K>>
where
    K: DeserializeOwned + Send + 'static,
{
    let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let lines = tokio::io::BufReader::with_capacity(1 << 20, tokio::fs::File::from_std(file));
    let objects = stream::unfold(
        (tokio::io::AsyncBufReadExt::lines(lines), 0usize),
        move |(mut lines, number)| {
            let path = path.clone();
            async move {
                let line = lines
                    .next_line()
                    .await
                    .unwrap_or_else(|err| panic!("{}: {err}", path.display()))?;
                let object = parse_line(&path, number + 1, &line);
                Some((Ok(watcher::Event::InitApply(object)), (lines, number + 1)))
            }
        },
    );
    Ok(stream::iter([Ok(watcher::Event::Init)])
        .chain(objects)
        .chain(stream::iter([Ok(watcher::Event::InitDone)]))
        .chain(stream::pending())
        .boxed())
}

fn feeds(dir: &Path) -> anyhow::Result<Feeds> {
    Ok(Feeds {
        pods: replay(dir.join("pods.jsonl"))?,
        nodes: replay(dir.join("nodes.jsonl"))?,
        claims: replay(dir.join("claims.jsonl"))?,
        nodepools: replay(dir.join("nodepools.jsonl"))?,
        nodeclasses: replay(dir.join("nodeclasses.jsonl"))?,
        daemonsets: replay(dir.join("daemonsets.jsonl"))?,
        namespaces: replay(dir.join("namespaces.jsonl"))?,
    })
}

// ---------------------------------------------------------------------------
// The untrimmed comparison (a child process).

/// Loads `file` untrimmed, as a store would hold it (`Arc` of a clone);
/// returns the objects and the heap they take.
fn load<K: DeserializeOwned + Clone>(file: &Path) -> anyhow::Result<(Vec<Arc<K>>, f64)> {
    let before = heap_mib();
    let reader = std::io::BufReader::new(
        File::open(file).with_context(|| format!("opening {}", file.display()))?,
    );
    let mut objects = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let object: K = parse_line(file, i + 1, &line?);
        objects.push(Arc::new(object.clone()));
    }
    objects.shrink_to_fit();
    Ok((objects, heap_mib() - before))
}

/// Trims `objects` in place as the state does (trim, then the store's clone);
/// returns the heap freed.
fn trim_all<K: Clone>(objects: &mut [Arc<K>], trim: fn(&mut K)) -> f64 {
    let before = heap_mib();
    for object in objects.iter_mut() {
        let mut copy = (**object).clone();
        trim(&mut copy);
        *object = Arc::new(copy.clone());
    }
    before - heap_mib()
}

/// Heap bytes a clone of `value` allocates (its own inline size excluded).
fn heap_bytes<T: Clone>(value: &T) -> usize {
    let before = LIVE.load(Ordering::Relaxed);
    let copy = value.clone();
    let bytes = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    drop(copy);
    bytes
}

/// Where a held object's bytes go: part, average bytes per object.
fn average<K>(
    objects: &[Arc<K>],
    parts: impl Fn(&K) -> Vec<(&'static str, usize)>,
) -> serde_json::Map<String, Value> {
    let mut sums: Vec<(&'static str, f64)> = Vec::new();
    for object in objects {
        for (i, (name, bytes)) in parts(object).into_iter().enumerate() {
            match sums.get_mut(i) {
                Some(slot) => slot.1 += bytes as f64,
                None => sums.push((name, bytes as f64)),
            }
        }
    }
    let n = objects.len().max(1) as f64;
    sums.into_iter()
        .map(|(name, sum)| (name.to_owned(), json!((sum / n).round())))
        .collect()
}

fn pod_parts(pod: &Pod) -> Vec<(&'static str, usize)> {
    let m = &pod.metadata;
    let (labels, annotations) = (heap_bytes(&m.labels), heap_bytes(&m.annotations));
    let owners = heap_bytes(&m.owner_references);
    let containers = pod.spec.as_ref().map_or(0, |s| heap_bytes(&s.containers));
    vec![
        ("Pod struct and Arc", std::mem::size_of::<Pod>() + 16),
        ("metadata.labels", labels),
        ("metadata.annotations", annotations),
        ("metadata.ownerReferences", owners),
        (
            "metadata, other",
            heap_bytes(m).saturating_sub(labels + annotations + owners),
        ),
        ("spec.containers", containers),
        (
            "spec, other",
            heap_bytes(&pod.spec).saturating_sub(containers),
        ),
        ("status", heap_bytes(&pod.status)),
    ]
}

fn node_parts(node: &Node) -> Vec<(&'static str, usize)> {
    let m = &node.metadata;
    let (labels, annotations) = (heap_bytes(&m.labels), heap_bytes(&m.annotations));
    let status = node.status.as_ref();
    let conditions = status.map_or(0, |s| heap_bytes(&s.conditions));
    let resources = status.map_or(0, |s| heap_bytes(&s.capacity) + heap_bytes(&s.allocatable));
    vec![
        ("Node struct and Arc", std::mem::size_of::<Node>() + 16),
        ("metadata.labels", labels),
        ("metadata.annotations", annotations),
        (
            "metadata, other",
            heap_bytes(m).saturating_sub(labels + annotations),
        ),
        ("spec", heap_bytes(&node.spec)),
        ("status.conditions", conditions),
        ("status.capacity, allocatable", resources),
        (
            "status, other",
            heap_bytes(&node.status).saturating_sub(conditions + resources),
        ),
    ]
}

/// The child: holds the recording untrimmed, reports, trims, reports.
fn hold_untrimmed(dir: &Path) -> anyhow::Result<()> {
    let (mut pods, pods_mib) = load::<Pod>(&dir.join("pods.jsonl"))?;
    let (mut nodes, nodes_mib) = load::<Node>(&dir.join("nodes.jsonl"))?;
    let (mut claims, claims_mib) = load::<NodeClaim>(&dir.join("claims.jsonl"))?;
    let (mut pools, pools_mib) = load::<NodePool>(&dir.join("nodepools.jsonl"))?;
    let (mut classes, classes_mib) = load::<NodeClass>(&dir.join("nodeclasses.jsonl"))?;
    let (mut daemonsets, ds_mib) = load::<DaemonSet>(&dir.join("daemonsets.jsonl"))?;
    let (mut namespaces, ns_mib) = load::<Namespace>(&dir.join("namespaces.jsonl"))?;
    let untrimmed = memory();
    let untrimmed_mib = [
        pods_mib,
        nodes_mib,
        claims_mib,
        pools_mib,
        classes_mib,
        ds_mib,
        ns_mib,
    ];
    let saved_mib = [
        trim_all(&mut pods, trim::pod),
        trim_all(&mut nodes, trim::node),
        trim_all(&mut claims, trim::common),
        trim_all(&mut pools, trim::common),
        trim_all(&mut classes, trim::common),
        trim_all(&mut daemonsets, trim::daemonset),
        trim_all(&mut namespaces, trim::namespace),
    ];
    let kinds: serde_json::Map<String, Value> = KINDS
        .iter()
        .zip(untrimmed_mib.iter().zip(saved_mib))
        .map(|(kind, (untrimmed, saved))| {
            (
                (*kind).to_owned(),
                json!({"untrimmed_heap_mib": round1(*untrimmed), "trimmed_heap_mib": round1(untrimmed - saved)}),
            )
        })
        .collect();
    let parts = json!({"pods": average(&pods, pod_parts), "nodes": average(&nodes, node_parts)});
    println!(
        "{}",
        json!({"untrimmed": untrimmed, "kinds": kinds, "trimmed_bytes_per_object": parts})
    );
    Ok(())
}

fn measure_untrimmed(dir: &Path) -> anyhow::Result<Value> {
    let exe = std::env::current_exe().context("finding this program")?;
    let output = std::process::Command::new(exe)
        .arg("--hold-untrimmed")
        .arg(dir)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running the untrimmed child")?;
    if !output.status.success() {
        bail!("the untrimmed child failed: {}", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("reading the child's report {line:?}"))
}

// ---------------------------------------------------------------------------

/// The temp dir of the recording, removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(dir) = &args.hold_untrimmed {
        return hold_untrimmed(dir);
    }
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let before = memory();

    let dir = TempDir(
        std::env::temp_dir().join(format!("spotwright-state-scale-{}", std::process::id())),
    );
    std::fs::create_dir_all(&dir.0).with_context(|| format!("creating {}", dir.0.display()))?;
    let started = Instant::now();
    let (sizes, bytes) = record(&dir.0, args.nodes, args.pods)?;
    let generate_s = started.elapsed().as_secs_f64();
    let after_generating = memory();

    let untrimmed = if args.no_untrimmed {
        Value::Null
    } else {
        measure_untrimmed(&dir.0)?
    };

    let started = Instant::now();
    let state = ClusterState::start(feeds(&dir.0)?);
    tokio::time::timeout(Duration::from_secs(600), state.ready())
        .await
        .context("the state did not sync within 10 minutes")?;
    let sync_s = started.elapsed().as_secs_f64();
    let lists = state.lists();
    let held = [
        lists.pods.len(),
        lists.nodes.len(),
        lists.claims.len(),
        lists.nodepools.len(),
        lists.nodeclasses.len(),
        lists.daemonsets.len(),
        lists.namespaces.len(),
    ];
    drop(lists);
    let expected = [
        sizes.pods,
        sizes.nodes,
        sizes.claims,
        sizes.nodepools,
        sizes.nodeclasses,
        sizes.daemonsets,
        sizes.namespaces,
    ];
    if held != expected {
        bail!("the state holds {held:?} objects per kind, the recording has {expected:?}");
    }
    let objects: usize = held.iter().sum();
    let synced = memory();

    // One untimed rebuild, then the timed ones; each snapshot is dropped
    // outside the timing (the state replaces the previous one the same way).
    drop(std::hint::black_box(Snapshot::build(state.lists())));
    let mut builds = Vec::with_capacity(args.rounds);
    for _ in 0..args.rounds {
        let t = Instant::now();
        let snapshot = std::hint::black_box(Snapshot::build(state.lists()));
        builds.push(t.elapsed());
        drop(snapshot);
    }
    // The lists alone: the part of a rebuild spent copying out of the stores.
    let mut lists = Vec::with_capacity(args.rounds);
    for _ in 0..args.rounds {
        let t = Instant::now();
        let copied = std::hint::black_box(state.lists());
        lists.push(t.elapsed());
        drop(copied);
    }
    let after_builds = memory();
    let snapshot = state.snapshot();
    let problem = snapshot.problem(keys::SCHEDULER_NAME, &[]);
    let (problem_pods, problem_nodes, problem_pools) = (
        problem.pods.len(),
        problem.nodes.len(),
        problem.nodepools.len(),
    );
    let unreadable = problem.unreadable.len();
    drop(problem);
    let mut problems = Vec::with_capacity(args.problem_rounds);
    for _ in 0..args.problem_rounds {
        let t = Instant::now();
        let problem = std::hint::black_box(snapshot.problem(keys::SCHEDULER_NAME, &[]));
        problems.push(t.elapsed());
        drop(problem);
    }
    drop(snapshot);
    let after = memory();
    let build = spread(&builds);
    let lists = spread(&lists);
    let problem = spread(&problems);

    let json_mib: Vec<f64> = bytes.iter().map(|b| round1(*b as f64 / MIB)).collect();
    let mut kinds = serde_json::Map::new();
    for (i, kind) in KINDS.iter().enumerate() {
        let mut entry = json!({"objects": held[i], "json_mib": json_mib[i]});
        if let Some(child) = untrimmed["kinds"][kind].as_object() {
            for (key, value) in child {
                entry[key] = value.clone();
            }
        }
        kinds.insert((*kind).to_owned(), entry);
    }
    let summary = json!({
        "nodes": sizes.nodes, "pods": sizes.pods, "objects": objects,
        "generate_s": round1(generate_s), "sync_s": round1(sync_s),
        "before": before, "after_generating": after_generating, "synced": synced, "after_builds": after_builds, "at_end": after,
        "state_heap_mib": round1(synced.heap_mib - before.heap_mib),
        "build_ms": build, "lists_ms": lists, "build_rounds": args.rounds,
        "problem_ms": problem, "problem_rounds": args.problem_rounds,
        "problem": {"pending_pods": problem_pods, "nodes": problem_nodes, "nodepools": problem_pools, "unreadable": unreadable},
        "untrimmed": untrimmed["untrimmed"].clone(),
        "trimmed_bytes_per_object": untrimmed["trimmed_bytes_per_object"].clone(),
        "kinds": kinds,
    });

    let ms = |s: &Spread| {
        format!(
            "{:.2} / {:.2} / {:.2} / {:.2}",
            s.min, s.median, s.p90, s.max
        )
    };
    let mib = |m: &Memory| {
        format!(
            "{:.1} MiB ({:.1} MiB peak; heap {:.1} MiB in {:.2} M allocations)",
            m.rss_mib,
            m.hwm_mib,
            m.heap_mib,
            m.heap_blocks_k / 1e3
        )
    };
    println!(
        "## Cluster state at scale: {} nodes, {} pods",
        thousands(sizes.nodes),
        thousands(sizes.pods)
    );
    println!();
    println!("| measure | result |");
    println!("| --- | --- |");
    println!(
        "| objects in the state | {} ({} pods, {} nodes, {} NodeClaims, {} NodePools, {} NodeClasses, {} DaemonSets, {} Namespaces) |",
        thousands(objects),
        thousands(held[0]),
        thousands(held[1]),
        thousands(held[2]),
        held[3],
        held[4],
        held[5],
        held[6]
    );
    println!(
        "| recording | {:.1} MiB of JSON lines, generated in {generate_s:.1} s; replayed in {sync_s:.1} s |",
        bytes.iter().sum::<u64>() as f64 / MIB
    );
    println!("| RSS before generating | {} |", mib(&before));
    println!(
        "| RSS once synced (only the state holds objects) | {} |",
        mib(&synced)
    );
    println!("| RSS after the timed rebuilds | {} |", mib(&after_builds));
    println!("| RSS after the `problem` calls too | {} |", mib(&after));
    println!(
        "| heap held by the state | {:.1} MiB |",
        synced.heap_mib - before.heap_mib
    );
    if let Some(rss) = untrimmed["untrimmed"]["rss_mib"].as_f64() {
        println!(
            "| untrimmed objects alone (child process, no state) | {rss:.1} MiB RSS, heap {:.1} MiB |",
            untrimmed["untrimmed"]["heap_mib"].as_f64().unwrap_or_default()
        );
    }
    println!(
        "| `Snapshot::build(state.lists())`, {} rounds, ms min / median / p90 / max | {} |",
        args.rounds,
        ms(&build)
    );
    println!(
        "| of which `state.lists()` alone, ms min / median / p90 / max | {} |",
        ms(&lists)
    );
    println!(
        "| `snapshot.problem(..)`, {} rounds, ms min / median / p90 / max | {} ({} pending pods, {} nodes, {} pools) |",
        args.problem_rounds,
        ms(&problem),
        problem_pods,
        problem_nodes,
        problem_pools
    );
    println!();
    println!("| kind | objects | JSON MiB | heap untrimmed MiB | heap trimmed MiB |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (i, kind) in KINDS.iter().enumerate() {
        let entry = &kinds[*kind];
        let figure = |key: &str| {
            entry[key]
                .as_f64()
                .map_or("–".to_owned(), |v| format!("{v:.1}"))
        };
        println!(
            "| {kind} | {} | {:.1} | {} | {} |",
            thousands(held[i]),
            json_mib[i],
            figure("untrimmed_heap_mib"),
            figure("trimmed_heap_mib")
        );
    }
    if let Some(parts) = untrimmed["trimmed_bytes_per_object"].as_object() {
        for (kind, parts) in parts {
            let Some(parts) = parts.as_object() else {
                continue;
            };
            println!();
            println!("| a trimmed {kind} object, by part | bytes |");
            println!("| --- | ---: |");
            for (part, bytes) in parts {
                println!(
                    "| {part} | {} |",
                    thousands(bytes.as_f64().unwrap_or_default() as usize)
                );
            }
            let total: f64 = parts.values().filter_map(Value::as_f64).sum();
            println!("| total | {} |", thousands(total as usize));
        }
    }
    println!();
    println!("{summary}");
    Ok(())
}
