//! Synthetic workloads for benchmarks and tests, mirroring Karpenter's
//! scheduling benchmark as of `sigs.k8s.io/karpenter` v1.15.0
//! (`pkg/controllers/provisioning/scheduling/scheduling_benchmark_test.go`,
//! `pkg/cloudprovider/fake/instancetype.go`; details in
//! `bench/karpenter/WORKLOAD.md`):
//!
//! - [`karpenter_instance_types`]: type `i` (from 0) is `fake-it-i` with
//!   `i+1` vCPU, `2(i+1)` GiB, `10(i+1)` pods, kube-reserved 100m and 10Mi,
//!   price `0.1 × vCPU + 0.1 × GB` (decimal GB, as `PriceFromResources`) on
//!   every offering: Spot in `test-zone-1` and `-2`, on-demand in all three
//!   zones, as the fake cloud provider offers them.
//! - [`karpenter_diverse_pods`]: `makeDiversePods`: five equal classes (the
//!   remainder generic), cpu uniform over {100m, 250m, 500m, 1, 1.5} and
//!   memory over {100, 256, 512, 1024, 2048, 4096} MiB, label values uniform
//!   over `a`..`g`, every pod labelled `testing/cluster: unspecified`:
//!   1. generic pods `my-label: v`;
//!   2. zonal topology spread (maxSkew 1, DoNotSchedule) on `my-label: v2`,
//!      `v2` drawn independently of the pod's own `my-label`;
//!   3. the same on `kubernetes.io/hostname`;
//!   4. zonal pod self-affinity on `my-affininity: v` (sic): required pod
//!      affinity on `topology.kubernetes.io/zone` to its own group, so each
//!      group lands in one zone, as Karpenter places it;
//!   5. `app: nginx` pods with hostname anti-affinity to each other.
//! - [`karpenter_benchmark`]: those with one NodePool `default` (no
//!   requirements, no limits, no taints), no DaemonSets and no nodes.
//!
//! Draws come from a seeded SplitMix64 in Go's per-pod draw order, not Go's
//! `math/rand` stream: the same distributions, not the same pods. The
//! `solve_report` example reads Karpenter's exact pods when they were dumped
//! (`DUMP_WORKLOAD=1 bench/karpenter/run`).

use std::collections::BTreeMap;

use spotwright_api::keys::{
    ARCH_LABEL, HOSTNAME_LABEL, INSTANCE_CPU_LABEL, INSTANCE_FAMILY_LABEL, INSTANCE_MEMORY_LABEL,
    INSTANCE_TYPE_LABEL, NODEPOOL_LABEL, OS_LABEL, ZONE_LABEL,
};

use crate::model::{
    CapacityType, DaemonSetFacts, ExistingNode, InstanceType, LabelSelector, MinValuesPolicy,
    NodePoolFacts, Offering, Operator, PendingPod, Requirement, Resources, SpreadConstraint,
};
use crate::Input;

pub const ZONES: [&str; 3] = ["test-zone-1", "test-zone-2", "test-zone-3"];
const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// An owned solver input.
#[derive(Clone, Debug, Default)]
pub struct Workload {
    pub pods: Vec<PendingPod>,
    pub nodes: Vec<ExistingNode>,
    pub nodepools: Vec<NodePoolFacts>,
    pub daemonsets: Vec<DaemonSetFacts>,
    pub instance_types: Vec<InstanceType>,
}

impl Workload {
    pub fn input(&self) -> Input<'_> {
        Input {
            pods: &self.pods,
            nodes: &self.nodes,
            nodepools: &self.nodepools,
            daemonsets: &self.daemonsets,
            instance_types: &self.instance_types,
        }
    }
}

/// Karpenter's benchmark: `pods` diverse pods, 400 instance types, one pool.
pub fn karpenter_benchmark(pods: usize) -> Workload {
    Workload {
        pods: karpenter_diverse_pods(pods, 42),
        nodes: Vec::new(),
        nodepools: vec![default_pool()],
        daemonsets: Vec::new(),
        instance_types: karpenter_instance_types(400),
    }
}

pub fn default_pool() -> NodePoolFacts {
    NodePoolFacts {
        name: "default".into(),
        weight: 0,
        requirements: Vec::new(),
        labels: [(NODEPOOL_LABEL.to_string(), "default".to_string())].into(),
        taints: Vec::new(),
        limits: Vec::new(),
        min_values_policy: MinValuesPolicy::Strict,
    }
}

/// `count` instance types as Karpenter's `fake.InstanceTypes(count)`.
pub fn karpenter_instance_types(count: usize) -> Vec<InstanceType> {
    (0..count)
        .map(|i| {
            let n = i as u64 + 1;
            let capacity = Resources {
                cpu_millis: n * 1000,
                memory_bytes: 2 * n * GIB,
                ephemeral_bytes: 0,
                pods: 10 * n,
                extended: Vec::new(),
            };
            let allocatable = Resources {
                cpu_millis: capacity.cpu_millis - 100,
                memory_bytes: capacity.memory_bytes - 10 * MIB,
                ..capacity.clone()
            };
            let price = 0.1 * n as f64 + 0.1 * capacity.memory_bytes as f64 / 1e9;
            let offering = |zone: &str, capacity_type| Offering {
                zone: zone.into(),
                capacity_type,
                price,
                available: true,
            };
            let name = format!("fake-it-{i}");
            InstanceType {
                labels: [
                    (INSTANCE_TYPE_LABEL, name.clone()),
                    (ARCH_LABEL, "amd64".into()),
                    (OS_LABEL, "linux".into()),
                    (INSTANCE_FAMILY_LABEL, "fake".into()),
                    (INSTANCE_CPU_LABEL, n.to_string()),
                    (INSTANCE_MEMORY_LABEL, (2 * n * 1024).to_string()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
                name,
                capacity,
                allocatable,
                offerings: vec![
                    offering(ZONES[0], CapacityType::Spot),
                    offering(ZONES[1], CapacityType::Spot),
                    offering(ZONES[0], CapacityType::OnDemand),
                    offering(ZONES[1], CapacityType::OnDemand),
                    offering(ZONES[2], CapacityType::OnDemand),
                ],
            }
        })
        .collect()
}

/// SplitMix64: small, seeded, good enough for workload draws (and for the
/// benchmarks' and property tests' fixtures, which draw the same way).
#[derive(Clone, Debug)]
pub struct Draws(u64);

impl Draws {
    pub fn new(seed: u64) -> Draws {
        Draws(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A draw in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One of `from`, which must not be empty.
    pub fn choose<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len() as u64) as usize]
    }

    pub fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        *self.choose(from)
    }
}

const LABEL_VALUES: [&str; 7] = ["a", "b", "c", "d", "e", "f", "g"];
const CPU_MILLIS: [u64; 5] = [100, 250, 500, 1000, 1500];
const MEMORY_MIB: [u64; 6] = [100, 256, 512, 1024, 2048, 4096];

fn selector(key: &str, value: &str) -> LabelSelector {
    LabelSelector {
        requirements: vec![Requirement {
            key: key.into(),
            operator: Operator::In,
            values: vec![value.into()],
            min_values: None,
        }],
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Generic,
    ZoneSpread,
    HostnameSpread,
    ZoneAffinity,
    HostnameAntiAffinity,
}

/// `count` pods in Karpenter's `makeDiversePods` mix.
pub fn karpenter_diverse_pods(count: usize, seed: u64) -> Vec<PendingPod> {
    let mut draws = Draws::new(seed);
    let per_kind = count / 5;
    let kinds = [
        Kind::Generic,
        Kind::ZoneSpread,
        Kind::HostnameSpread,
        Kind::ZoneAffinity,
        Kind::HostnameAntiAffinity,
    ];
    let mut pods = Vec::with_capacity(count);
    for kind in kinds {
        for _ in 0..per_kind {
            let index = pods.len();
            pods.push(pod(index, kind, &mut draws));
        }
    }
    while pods.len() < count {
        let index = pods.len();
        pods.push(pod(index, Kind::Generic, &mut draws));
    }
    pods
}

fn pod(index: usize, kind: Kind, draws: &mut Draws) -> PendingPod {
    let name = format!("pod-{index}");
    let mut pod = PendingPod {
        key: format!("default/{name}"),
        namespace: "default".into(),
        labels: BTreeMap::new(),
        ..PendingPod::default()
    };
    match kind {
        Kind::Generic => {
            pod.labels
                .insert("my-label".into(), draws.pick(&LABEL_VALUES).into());
        }
        Kind::ZoneSpread | Kind::HostnameSpread => {
            pod.labels
                .insert("my-label".into(), draws.pick(&LABEL_VALUES).into());
            let key = if matches!(kind, Kind::ZoneSpread) {
                ZONE_LABEL
            } else {
                HOSTNAME_LABEL
            };
            pod.topology_spread.push(SpreadConstraint {
                topology_key: key.into(),
                max_skew: 1,
                hard: true,
                selector: selector("my-label", draws.pick(&LABEL_VALUES)),
            });
        }
        Kind::ZoneAffinity => {
            let value = (draws.next_u64() % LABEL_VALUES.len() as u64) as usize;
            pod.labels
                .insert("my-affininity".into(), LABEL_VALUES[value].into());
            pod.zone_affinity
                .push(selector("my-affininity", LABEL_VALUES[value]));
        }
        Kind::HostnameAntiAffinity => {
            pod.labels.insert("app".into(), "nginx".into());
            pod.hostname_anti_affinity.push(selector("app", "nginx"));
        }
    }
    pod.labels
        .insert("testing/cluster".into(), "unspecified".into());
    pod.requests.cpu_millis = draws.pick(&CPU_MILLIS);
    pod.requests.memory_bytes = draws.pick(&MEMORY_MIB) * MIB;
    pod
}

/// A pod of the benchmark's shape, for callers that bring their own draws
/// (the example replays Karpenter's dumped pods through it).
pub fn blank_pod(index: usize, cpu_millis: u64, memory_mib: u64) -> PendingPod {
    PendingPod {
        key: format!("default/pod-{index}"),
        namespace: "default".into(),
        labels: BTreeMap::new(),
        requests: Resources {
            cpu_millis,
            memory_bytes: memory_mib * MIB,
            ..Resources::default()
        },
        ..PendingPod::default()
    }
}

/// Label selector `key In [value]`.
pub fn match_label(key: &str, value: &str) -> LabelSelector {
    selector(key, value)
}

/// A lower bound on the $/h of any plan for `pods`: the cheapest price per
/// vCPU times all cpu requested, or the cheapest price per GiB times all
/// memory requested, whichever is larger.
pub fn cost_lower_bound(pods: &[PendingPod], instance_types: &[InstanceType]) -> f64 {
    let cheapest = |t: &InstanceType| {
        t.offerings
            .iter()
            .filter(|o| o.available)
            .map(|o| o.price)
            .min_by(f64::total_cmp)
    };
    let per_vcpu = instance_types
        .iter()
        .filter(|t| t.capacity.cpu_millis > 0)
        .filter_map(|t| cheapest(t).map(|p| p * 1000.0 / t.capacity.cpu_millis as f64))
        .min_by(f64::total_cmp)
        .unwrap_or(0.0);
    let per_gib = instance_types
        .iter()
        .filter(|t| t.capacity.memory_bytes > 0)
        .filter_map(|t| cheapest(t).map(|p| p * GIB as f64 / t.capacity.memory_bytes as f64))
        .min_by(f64::total_cmp)
        .unwrap_or(0.0);
    let cpu: f64 = pods
        .iter()
        .map(|p| p.requests.cpu_millis as f64 / 1000.0)
        .sum();
    let gib: f64 = pods
        .iter()
        .map(|p| p.requests.memory_bytes as f64 / GIB as f64)
        .sum();
    (cpu * per_vcpu).max(gib * per_gib)
}
