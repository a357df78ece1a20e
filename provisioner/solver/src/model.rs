//! Plain data the provisioner's decisions work on. The Kubernetes and AWS
//! adapters fill these in; the solver, the launch planner and the removal
//! rules read them and never do I/O.

use std::collections::BTreeMap;
use std::sync::Arc;

pub use spotwright_api::keys::CapacityType;

/// Requested or available resources, in base units. Extended resources
/// (`nvidia.com/gpu`, ...) are kept sorted by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub ephemeral_bytes: u64,
    pub pods: u64,
    pub extended: Vec<(String, u64)>,
}

/// One node-selector requirement, as in a NodePool, a pod's required node
/// affinity, or a NodeClaim.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
    /// NodePools only: keep at least this many distinct values in a launch.
    pub min_values: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
    /// NodePools only (Kubernetes has no such pod operator): `>=`.
    Gte,
    /// NodePools only: `<=`.
    Lte,
}

impl Operator {
    /// For `Gt`, `Lt`, `Gte` and `Lte`: whether `value` stands so to `bound`.
    pub fn compares(self, value: i64, bound: i64) -> Option<bool> {
        match self {
            Operator::Gt => Some(value > bound),
            Operator::Lt => Some(value < bound),
            Operator::Gte => Some(value >= bound),
            Operator::Lte => Some(value <= bound),
            _ => None,
        }
    }
}

/// `OR` over terms, each an `AND` of requirements (a pod's
/// `requiredDuringSchedulingIgnoredDuringExecution`). Empty: no constraint.
pub type NodeSelectorTerms = Vec<Vec<Requirement>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: Option<String>,
    pub effect: TaintEffect,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Toleration {
    /// `None` with `Exists` tolerates every key.
    pub key: Option<String>,
    /// `true` for `Exists`, `false` for `Equal`.
    pub exists: bool,
    pub value: Option<String>,
    /// `None` tolerates every effect.
    pub effect: Option<TaintEffect>,
}

/// `matchLabels` and `matchExpressions` of a label selector, as requirements
/// (`In`, `NotIn`, `Exists`, `DoesNotExist`) over pod labels.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SpreadConstraint {
    /// `topology.kubernetes.io/zone` or `kubernetes.io/hostname`; other keys
    /// are reported as unsupported.
    pub topology_key: String,
    pub max_skew: u32,
    /// `whenUnsatisfiable: DoNotSchedule` (a `ScheduleAnyway` constraint is a preference).
    pub hard: bool,
    pub selector: LabelSelector,
}

/// One preferred node-affinity term.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PreferredTerm {
    pub weight: i32,
    pub requirements: Vec<Requirement>,
}

/// A pod that could not be scheduled, as the solver needs it. The default
/// is a pod with no key, requests or constraints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PendingPod {
    /// `namespace/name`.
    pub key: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub requests: Resources,
    pub node_selector: BTreeMap<String, String>,
    pub required_affinity: NodeSelectorTerms,
    /// `preferredDuringSchedulingIgnoredDuringExecution` node affinity:
    /// the heaviest is solved as required, and dropped if nothing can take
    /// the pod with it, then the next ([`crate::solve`]).
    pub preferred_affinity: Vec<PreferredTerm>,
    pub tolerations: Vec<Toleration>,
    pub topology_spread: Vec<SpreadConstraint>,
    /// Required pod anti-affinity on `kubernetes.io/hostname`: no two pods
    /// matching any of these selectors (in the pod's namespace) on one node.
    pub hostname_anti_affinity: Vec<LabelSelector>,
    /// Required pod anti-affinity on `topology.kubernetes.io/zone`: the pod
    /// goes to no zone holding a pod (of its namespace) matching one of these.
    pub zone_anti_affinity: Vec<LabelSelector>,
    /// Required pod affinity on `kubernetes.io/hostname`: the pod goes to a
    /// node holding a pod (of its namespace) matching each of these, running
    /// or placed in this solve; as in kube-scheduler, a pod that matches its
    /// own term may go anywhere while no pod matches it.
    pub hostname_affinity: Vec<LabelSelector>,
    /// The same on `topology.kubernetes.io/zone`: a zone holding such a pod.
    pub zone_affinity: Vec<LabelSelector>,
    /// Preferred pod anti-affinity on `kubernetes.io/hostname` (weights
    /// aside): honoured where it costs nothing extra, like `ScheduleAnyway`
    /// spreads.
    pub preferred_hostname_anti_affinity: Vec<LabelSelector>,
}

/// What a DaemonSet puts on every node it matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonSetFacts {
    pub name: String,
    pub requests: Resources,
    pub node_selector: BTreeMap<String, String>,
    pub required_affinity: NodeSelectorTerms,
    pub tolerations: Vec<Toleration>,
}

/// A pod already running (or bound), for spread and anti-affinity counts.
/// Shared: the replicas of one template have the same namespace and labels,
/// and a large cluster has tens of thousands of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedPod {
    pub namespace: Arc<str>,
    pub labels: Arc<BTreeMap<String, String>>,
}

/// A node that exists, or a NodeClaim in flight whose instance type is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExistingNode {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub allocatable: Resources,
    /// Requests of the pods already bound to it (DaemonSet pods included).
    pub requested: Resources,
    pub pods: Vec<PlacedPod>,
    /// A NodeClaim that has not registered a Node yet.
    pub in_flight: bool,
    /// Being disrupted or deleted: takes no new pods.
    pub unavailable: bool,
}

/// A NodePool as the solver needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct NodePoolFacts {
    pub name: String,
    pub weight: i32,
    pub requirements: Vec<Requirement>,
    /// Labels every node of the pool carries (template labels plus
    /// `spotwright.io/nodepool`).
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// `spec.limits`: caps on the sum over the pool's nodes and NodeClaims.
    /// Empty: unlimited.
    pub limits: Vec<Limit>,
    /// What happens when the requirements' `minValues` cannot be met.
    pub min_values_policy: MinValuesPolicy,
}

/// `spec.template.spec.minValuesPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MinValuesPolicy {
    /// A launch that cannot keep `minValues` open is not made.
    #[default]
    Strict,
    /// A pod that no launch keeping `minValues` can take gets one that
    /// keeps as many values as there are ([`RelaxedMinValues`]).
    BestEffort,
}

/// A `minValues` a new node could not keep, under `BestEffort`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelaxedMinValues {
    pub key: String,
    pub wanted: u32,
    /// Distinct values the launch keeps open (fewer than `wanted`).
    pub kept: u32,
}

/// What a NodePool's `spec.limits` can cap: the sum of its nodes' capacity
/// in one resource, or the number of nodes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LimitedResource {
    /// In millicores.
    Cpu,
    /// In bytes.
    Memory,
    /// In bytes.
    EphemeralStorage,
    /// Pod slots (each node's `pods` capacity).
    Pods,
    /// Nodes and NodeClaims, one each.
    Nodes,
    /// An extended resource such as `nvidia.com/gpu`.
    Extended(String),
}

impl LimitedResource {
    /// The `spec.limits` key this stands for, or `None` for a key that is
    /// neither a base resource, `nodes`, nor a domain-prefixed name.
    pub fn parse(key: &str) -> Option<Self> {
        Some(match key {
            "cpu" => LimitedResource::Cpu,
            "memory" => LimitedResource::Memory,
            "ephemeral-storage" => LimitedResource::EphemeralStorage,
            "pods" => LimitedResource::Pods,
            "nodes" => LimitedResource::Nodes,
            other if other.contains('/') => LimitedResource::Extended(other.to_owned()),
            _ => return None,
        })
    }

    pub fn key(&self) -> &str {
        match self {
            LimitedResource::Cpu => "cpu",
            LimitedResource::Memory => "memory",
            LimitedResource::EphemeralStorage => "ephemeral-storage",
            LimitedResource::Pods => "pods",
            LimitedResource::Nodes => "nodes",
            LimitedResource::Extended(name) => name,
        }
    }

    /// What one node of `capacity` counts against this limit.
    pub fn of(&self, capacity: &Resources) -> u64 {
        match self {
            LimitedResource::Cpu => capacity.cpu_millis,
            LimitedResource::Memory => capacity.memory_bytes,
            LimitedResource::EphemeralStorage => capacity.ephemeral_bytes,
            LimitedResource::Pods => capacity.pods,
            LimitedResource::Nodes => 1,
            LimitedResource::Extended(name) => capacity
                .extended
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, v)| *v),
        }
    }
}

/// One entry of a NodePool's `spec.limits`, with what the pool holds now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    pub resource: LimitedResource,
    /// The cap, in the resource's base unit.
    pub max: u64,
    /// The pool's nodes and in-flight NodeClaims, counted the same way.
    pub used: u64,
}

impl Limit {
    /// How much more the pool may take.
    pub fn left(&self) -> u64 {
        self.max.saturating_sub(self.used)
    }
}

/// Where and how an instance type can be bought.
#[derive(Clone, Debug, PartialEq)]
pub struct Offering {
    pub zone: String,
    pub capacity_type: CapacityType,
    /// $/hour.
    pub price: f64,
    /// `false` while a capacity error has marked it unavailable.
    pub available: bool,
}

/// An EC2 instance type with the labels a node of it carries and what it
/// offers to pods.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceType {
    pub name: String,
    /// `node.kubernetes.io/instance-type`, `kubernetes.io/arch`,
    /// `kubernetes.io/os` and the `spotwright.io/instance-*` labels.
    pub labels: BTreeMap<String, String>,
    pub capacity: Resources,
    /// Capacity minus kube-reserved, system-reserved and eviction threshold
    /// (`spotwright_api::eks`); DaemonSets are not subtracted here.
    pub allocatable: Resources,
    pub offerings: Vec<Offering>,
}
