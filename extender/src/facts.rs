//! The plain data the decisions read, and its conversion from Kubernetes
//! objects. What the index keeps per Node, bound Pod and NodeClaim is one
//! of these small structs, never the object itself: a 5,000-node cluster
//! with 50,000 pods then fits in a few MiB, and the filter and the score
//! work on data that tests build in one line.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use spotwright_api::conditions;
use spotwright_api::duration::Lifetime;
use spotwright_api::keys::{self, CapacityType};
use spotwright_api::quantity::{self, QuantityError};
use spotwright_api::reservation::{self, Reservation};
use spotwright_api::NodeClaim;

/// Resources in base units. For a node: allocatable or requested; for a
/// pod: what it requests (`pods` is then 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub pods: u64,
}

impl Resources {
    pub fn plus(self, other: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
            pods: self.pods.saturating_add(other.pods),
        }
    }

    pub fn minus(self, other: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_sub(other.memory_bytes),
            pods: self.pods.saturating_sub(other.pods),
        }
    }

    pub fn is_zero(&self) -> bool {
        *self == Resources::default()
    }
}

/// What the filter and the score need to know about a Node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeFacts {
    pub name: String,
    /// `spec.providerID`, such as `aws:///us-east-1a/i-0123`.
    pub provider_id: Option<String>,
    /// `node.kubernetes.io/instance-type`.
    pub instance_type: Option<String>,
    /// `topology.kubernetes.io/zone`.
    pub zone: Option<String>,
    /// `spotwright.io/capacity-type`, else EKS's `eks.amazonaws.com/capacityType`.
    pub capacity_type: Option<CapacityType>,
    /// `status.allocatable` (cpu, memory, pods); zero where missing or unreadable.
    pub allocatable: Resources,
    /// `status.capacity.cpu` in millicores: the node's vCPUs, for price per vCPU.
    pub capacity_cpu_millis: u64,
    /// `metadata.creationTimestamp`, in Unix seconds.
    pub created: Option<i64>,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// Carries the `spotwright.io/disrupted` taint, whatever its effect.
    pub disrupted_taint: bool,
}

impl NodeFacts {
    pub fn from_node(node: &Node) -> Self {
        let labels = node.metadata.labels.as_ref();
        let label = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| labels.and_then(|l| l.get(*k)))
                .filter(|v| !v.is_empty())
                .cloned()
        };
        let capacity_type = label(&[keys::CAPACITY_TYPE_LABEL])
            .and_then(|v| CapacityType::parse(&v))
            .or_else(|| {
                label(&[keys::EKS_CAPACITY_TYPE_LABEL]).and_then(|v| match v.as_str() {
                    keys::EKS_ON_DEMAND => Some(CapacityType::OnDemand),
                    "SPOT" => Some(CapacityType::Spot),
                    _ => None,
                })
            });
        let spec = node.spec.as_ref();
        let status = node.status.as_ref();
        let allocatable = status.and_then(|s| s.allocatable.as_ref());
        let capacity = status.and_then(|s| s.capacity.as_ref());
        NodeFacts {
            name: node.metadata.name.clone().unwrap_or_default(),
            provider_id: spec.and_then(|s| s.provider_id.clone()),
            instance_type: label(&[
                keys::INSTANCE_TYPE_LABEL,
                "beta.kubernetes.io/instance-type",
            ]),
            zone: label(&[keys::ZONE_LABEL, "failure-domain.beta.kubernetes.io/zone"]),
            capacity_type,
            allocatable: Resources {
                cpu_millis: resource(allocatable, "cpu", quantity::milli_value),
                memory_bytes: resource(allocatable, "memory", quantity::value),
                pods: resource(allocatable, "pods", quantity::value),
            },
            capacity_cpu_millis: resource(capacity, "cpu", quantity::milli_value),
            created: unix_seconds(node.metadata.creation_timestamp.as_ref()),
            ready: status
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .is_some_and(|c| c.status == "True"),
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            deleting: node.metadata.deletion_timestamp.is_some(),
            disrupted_taint: spec
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|t| t.iter().any(|t| t.key == keys::DISRUPTED_TAINT_KEY)),
        }
    }
}

/// A node's expiry (`spec.expireAfter` of its NodeClaim).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Expiry {
    /// Not set, or not readable: no opinion.
    #[default]
    Unknown,
    /// `Never`.
    Never,
    /// Replaced once this many seconds old.
    AfterSeconds(u64),
}

/// What the filter and the score need to know about a NodeClaim.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClaimFacts {
    pub name: String,
    /// `status.nodeName`.
    pub node_name: Option<String>,
    /// `status.providerID`.
    pub provider_id: Option<String>,
    pub capacity_type: Option<CapacityType>,
    pub instance_type: Option<String>,
    pub zone: Option<String>,
    /// `metadata.creationTimestamp`, in Unix seconds: when the instance's life began.
    pub created: Option<i64>,
    pub expiry: Expiry,
    /// Condition `Drifted` is `True`.
    pub drifted: bool,
    /// Condition `Disrupting` is `True`.
    pub disrupting: bool,
    /// Condition `Initialized` is `True`: its Node is Ready, without startup
    /// or registration taints.
    pub initialized: bool,
    /// The room the claim holds for the pods it was launched for
    /// (`spotwright.io/reserved-for`); `None` when absent or unreadable.
    pub reserved: Option<ReservedRoom>,
}

/// A claim's reservation: what its pods request together, their UIDs and
/// their groups.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReservedRoom {
    /// `pods` is how many pods.
    pub requests: Resources,
    pub pods: Vec<String>,
    /// Per pod: its controller's UID (empty, or missing: none).
    pub groups: Vec<String>,
}

impl ReservedRoom {
    /// Each pod's key and group: its controller's UID, else its own key
    /// (a group of one), as [`PodFacts::group`] has it.
    pub fn members(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pods.iter().enumerate().map(|(i, key)| {
            let group = self.groups.get(i).filter(|g| !g.is_empty());
            (key.as_str(), group.unwrap_or(key).as_str())
        })
    }
}

impl ReservedRoom {
    fn from_annotation(claim: &NodeClaim) -> Option<ReservedRoom> {
        let value = claim.annotations().get(reservation::ANNOTATION)?;
        match Reservation::parse(value) {
            Ok(r) => Some(ReservedRoom {
                requests: Resources {
                    cpu_millis: r.cpu_millis,
                    memory_bytes: r.memory_bytes,
                    pods: r.pods.len() as u64,
                },
                pods: r.pods,
                groups: r.groups,
            }),
            Err(err) => {
                tracing::debug!(claim = %claim.name_any(), error = %err, "no room held for its pods");
                None
            }
        }
    }
}

impl ClaimFacts {
    pub fn from_claim(claim: &NodeClaim) -> Self {
        let status = claim.status.as_ref();
        let condition = |kind: &str| {
            status.is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == kind && c.status == "True")
            })
        };
        let expiry = match claim.spec.expire_after.as_deref().map(Lifetime::parse) {
            None => Expiry::Unknown,
            Some(Ok(Lifetime::Never)) => Expiry::Never,
            Some(Ok(Lifetime::After(d))) => Expiry::AfterSeconds(d.as_secs()),
            Some(Err(err)) => {
                tracing::debug!(error = %err, "NodeClaim expireAfter unreadable; age term neutral");
                Expiry::Unknown
            }
        };
        let non_empty = |v: Option<&String>| v.filter(|v| !v.is_empty()).cloned();
        ClaimFacts {
            name: claim.metadata.name.clone().unwrap_or_default(),
            node_name: non_empty(status.and_then(|s| s.node_name.as_ref())),
            provider_id: non_empty(status.and_then(|s| s.provider_id.as_ref())),
            capacity_type: status
                .and_then(|s| s.capacity_type.as_deref())
                .and_then(CapacityType::parse),
            instance_type: non_empty(status.and_then(|s| s.instance_type.as_ref())),
            zone: non_empty(status.and_then(|s| s.zone.as_ref())),
            created: unix_seconds(claim.metadata.creation_timestamp.as_ref()),
            expiry,
            drifted: condition(conditions::DRIFTED),
            disrupting: condition(conditions::DISRUPTING),
            initialized: condition(conditions::INITIALIZED),
            reserved: ReservedRoom::from_annotation(claim),
        }
    }
}

/// A pod bound to a node, and what it requests there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodFacts {
    /// `metadata.uid`, or `namespace/name` when there is none.
    pub key: String,
    /// Its controller's UID, else `key`: replicas of one controller are
    /// interchangeable in the room held for them (`slots`).
    pub group: String,
    pub node_name: String,
    pub requests: Resources,
}

impl PodFacts {
    /// `None` for a pod that is not bound, or has finished (it holds nothing).
    pub fn from_pod(pod: &Pod) -> Option<Self> {
        let spec = pod.spec.as_ref()?;
        let node_name = spec.node_name.clone().filter(|n| !n.is_empty())?;
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            return None;
        }
        let requests = pod_requests(
            spec.containers
                .iter()
                .map(|c| c.resources.as_ref().and_then(|r| r.requests.as_ref())),
            spec.init_containers.iter().flatten().map(|c| InitContainer {
                requests: c.resources.as_ref().and_then(|r| r.requests.as_ref()),
                sidecar: c.restart_policy.as_deref() == Some("Always"),
            }),
            spec.resources.as_ref().and_then(|r| r.requests.as_ref()),
            spec.overhead.as_ref(),
        )
        .unwrap_or_else(|err| {
            // The API server validated it; count what can be read rather than drop the pod.
            tracing::warn!(error = %err, pod = ?pod.metadata.name, "unreadable pod request counted as zero");
            Resources {
                pods: 1,
                ..Resources::default()
            }
        });
        let key = pod_key(pod)?;
        Some(PodFacts {
            group: reservation::group_of(pod.owner_references())
                .map_or_else(|| key.clone(), str::to_owned),
            key,
            node_name,
            requests,
        })
    }
}

/// The index key of a pod: its uid, else `namespace/name`.
pub fn pod_key(pod: &Pod) -> Option<String> {
    pod.metadata.uid.clone().or_else(|| {
        let name = pod.metadata.name.as_deref()?;
        Some(format!(
            "{}/{name}",
            pod.metadata.namespace.as_deref().unwrap_or_default()
        ))
    })
}

/// An init container's requests, and whether it is a sidecar
/// (`restartPolicy: Always`, which keeps running beside the app containers).
#[derive(Clone, Copy, Debug)]
pub struct InitContainer<'a> {
    pub requests: Option<&'a BTreeMap<String, Quantity>>,
    pub sidecar: bool,
}

/// What a pod requests of a node, the way the scheduler counts it
/// (`k8s.io/component-helpers/resource.PodRequests`), for cpu and memory:
/// - the app containers' requests add up, and so do the sidecars', which
///   run beside them;
/// - each ordinary init container runs alone after the sidecars started
///   before it, so it needs its own request plus theirs;
/// - the pod needs the larger of the two, per resource;
/// - pod-level `spec.resources.requests`, when set, replace that figure;
/// - `spec.overhead` (RuntimeClass) is added.
///
/// `pods` is 1. Resizes in progress (`status.containerStatuses[].allocatedResources`)
/// are not read.
pub fn pod_requests<'a>(
    containers: impl IntoIterator<Item = Option<&'a BTreeMap<String, Quantity>>>,
    init_containers: impl IntoIterator<Item = InitContainer<'a>>,
    pod_level: Option<&'a BTreeMap<String, Quantity>>,
    overhead: Option<&'a BTreeMap<String, Quantity>>,
) -> Result<Resources, QuantityError> {
    let mut total = CpuMemory::default();
    for requests in containers {
        total = total.plus(CpuMemory::of(requests)?);
    }
    let mut sidecars = CpuMemory::default();
    let mut init_peak = CpuMemory::default();
    for init in init_containers {
        let own = CpuMemory::of(init.requests)?;
        let running = if init.sidecar {
            total = total.plus(own);
            sidecars = sidecars.plus(own);
            sidecars
        } else {
            own.plus(sidecars)
        };
        init_peak = init_peak.max(running);
    }
    let mut needed = total.max(init_peak);
    if let Some(pod_level) = pod_level {
        if let Some(cpu) = pod_level.get("cpu") {
            needed.cpu_millis = non_negative(quantity::milli_value(&cpu.0)?);
        }
        if let Some(memory) = pod_level.get("memory") {
            needed.memory_bytes = non_negative(quantity::value(&memory.0)?);
        }
    }
    let needed = needed.plus(CpuMemory::of(overhead)?);
    Ok(Resources {
        cpu_millis: needed.cpu_millis,
        memory_bytes: needed.memory_bytes,
        pods: 1,
    })
}

/// cpu and memory of one resource list.
#[derive(Clone, Copy, Debug, Default)]
struct CpuMemory {
    cpu_millis: u64,
    memory_bytes: u64,
}

impl CpuMemory {
    fn of(list: Option<&BTreeMap<String, Quantity>>) -> Result<CpuMemory, QuantityError> {
        let Some(list) = list else {
            return Ok(CpuMemory::default());
        };
        Ok(CpuMemory {
            cpu_millis: match list.get("cpu") {
                Some(q) => non_negative(quantity::milli_value(&q.0)?),
                None => 0,
            },
            memory_bytes: match list.get("memory") {
                Some(q) => non_negative(quantity::value(&q.0)?),
                None => 0,
            },
        })
    }

    fn plus(self, other: CpuMemory) -> CpuMemory {
        CpuMemory {
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
        }
    }

    fn max(self, other: CpuMemory) -> CpuMemory {
        CpuMemory {
            cpu_millis: self.cpu_millis.max(other.cpu_millis),
            memory_bytes: self.memory_bytes.max(other.memory_bytes),
        }
    }
}

fn non_negative(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn resource(
    list: Option<&BTreeMap<String, Quantity>>,
    name: &str,
    parse: fn(&str) -> Result<i64, QuantityError>,
) -> u64 {
    list.and_then(|l| l.get(name))
        .and_then(|q| parse(&q.0).ok())
        .map_or(0, non_negative)
}

fn unix_seconds(time: Option<&Time>) -> Option<i64> {
    time.map(|t| t.0.as_second())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list(cpu: &str, memory: &str) -> BTreeMap<String, Quantity> {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ])
    }

    fn init(requests: &BTreeMap<String, Quantity>, sidecar: bool) -> InitContainer<'_> {
        InitContainer {
            requests: Some(requests),
            sidecar,
        }
    }

    #[test]
    fn app_containers_add_up() {
        let (a, b) = (list("100m", "128Mi"), list("250m", "64Mi"));
        let r = pod_requests([Some(&a), Some(&b), None], [], None, None).unwrap();
        assert_eq!(
            r,
            Resources {
                cpu_millis: 350,
                memory_bytes: 192 << 20,
                pods: 1
            }
        );
    }

    #[test]
    fn the_largest_init_container_wins_per_resource() {
        let app = list("100m", "1Gi");
        let big_cpu = list("2", "10Mi");
        let r = pod_requests([Some(&app)], [init(&big_cpu, false)], None, None).unwrap();
        assert_eq!((r.cpu_millis, r.memory_bytes), (2000, 1 << 30));
    }

    #[test]
    fn sidecars_add_to_the_app_and_to_later_init_containers() {
        let app = list("100m", "100Mi");
        let sidecar = list("50m", "50Mi");
        let migrate = list("500m", "10Mi");
        // Sidecar first: the migration runs beside it (550m), the app beside it too (150m).
        let r = pod_requests(
            [Some(&app)],
            [init(&sidecar, true), init(&migrate, false)],
            None,
            None,
        )
        .unwrap();
        assert_eq!((r.cpu_millis, r.memory_bytes), (550, 150 << 20));
        // Migration first: it runs alone (500m); the sidecar only adds to the app.
        let r = pod_requests(
            [Some(&app)],
            [init(&migrate, false), init(&sidecar, true)],
            None,
            None,
        )
        .unwrap();
        assert_eq!((r.cpu_millis, r.memory_bytes), (500, 150 << 20));
    }

    #[test]
    fn pod_level_requests_replace_and_overhead_adds() {
        let app = list("100m", "100Mi");
        let pod_level = BTreeMap::from([("cpu".to_owned(), Quantity("1".to_owned()))]);
        let overhead = list("10m", "1Mi");
        let r = pod_requests([Some(&app)], [], Some(&pod_level), Some(&overhead)).unwrap();
        assert_eq!((r.cpu_millis, r.memory_bytes), (1010, 101 << 20));
    }

    #[test]
    fn bad_quantities_are_errors() {
        let bad = list("lots", "1Gi");
        assert!(pod_requests([Some(&bad)], [], None, None).is_err());
    }

    #[test]
    fn node_facts_from_a_node() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {
                "name": "ip-10-0-1-1.ec2.internal",
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {
                    "node.kubernetes.io/instance-type": "m5.large",
                    "topology.kubernetes.io/zone": "us-east-1a",
                    "spotwright.io/capacity-type": "spot"
                }
            },
            "spec": {
                "providerID": "aws:///us-east-1a/i-1",
                "taints": [{"key": "spotwright.io/disrupted", "effect": "NoExecute"}]
            },
            "status": {
                "capacity": {"cpu": "2", "memory": "7Gi", "pods": "29"},
                "allocatable": {"cpu": "1930m", "memory": "6Gi", "pods": "29"},
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        }))
        .unwrap();
        let facts = NodeFacts::from_node(&node);
        assert_eq!(facts.name, "ip-10-0-1-1.ec2.internal");
        assert_eq!(facts.instance_type.as_deref(), Some("m5.large"));
        assert_eq!(facts.capacity_type, Some(CapacityType::Spot));
        assert_eq!(
            facts.allocatable,
            Resources {
                cpu_millis: 1930,
                memory_bytes: 6 << 30,
                pods: 29
            }
        );
        assert_eq!(facts.capacity_cpu_millis, 2000);
        assert!(facts.ready && facts.disrupted_taint);
        assert!(!facts.unschedulable && !facts.deleting);
        assert_eq!(facts.created, Some(1_767_225_600));
    }

    #[test]
    fn eks_capacity_labels_and_missing_conditions() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n", "labels": {"eks.amazonaws.com/capacityType": "ON_DEMAND"},
                         "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"unschedulable": true}
        }))
        .unwrap();
        let facts = NodeFacts::from_node(&node);
        assert_eq!(facts.capacity_type, Some(CapacityType::OnDemand));
        assert!(!facts.ready && facts.unschedulable && facts.deleting);
        assert_eq!(facts.allocatable, Resources::default());
    }

    #[test]
    fn claim_facts_from_a_claim() {
        let claim: NodeClaim = serde_json::from_value(json!({
            "apiVersion": "spotwright.io/v1alpha1", "kind": "NodeClaim",
            "metadata": {"name": "default-x", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"nodeClassRef": {"name": "default"}, "expireAfter": "720h"},
            "status": {
                "nodeName": "n1", "providerID": "aws:///us-east-1a/i-1", "capacityType": "spot",
                "instanceType": "m5.large", "zone": "us-east-1a",
                "conditions": [
                    {"type": "Drifted", "status": "True", "reason": "AMI", "message": "", "lastTransitionTime": "2026-01-02T00:00:00Z"},
                    {"type": "Disrupting", "status": "False", "reason": "", "message": "", "lastTransitionTime": "2026-01-02T00:00:00Z"},
                    {"type": "Initialized", "status": "True", "reason": "NodeInitialized", "message": "", "lastTransitionTime": "2026-01-01T00:01:00Z"}
                ]
            }
        }))
        .unwrap();
        let facts = ClaimFacts::from_claim(&claim);
        assert_eq!(facts.node_name.as_deref(), Some("n1"));
        assert_eq!(facts.expiry, Expiry::AfterSeconds(720 * 3600));
        assert!(facts.drifted && !facts.disrupting && facts.initialized);
        assert_eq!(facts.capacity_type, Some(CapacityType::Spot));
    }

    #[test]
    fn pod_facts_only_for_bound_running_pods() {
        let pod = |node: Option<&str>, phase: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
                "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]},
                "status": {"phase": phase}
            }))
            .unwrap()
        };
        let bound = PodFacts::from_pod(&pod(Some("n1"), "Running")).unwrap();
        assert_eq!(bound.key, "u1");
        assert_eq!(bound.requests.cpu_millis, 1000);
        assert_eq!(bound.requests.pods, 1);
        assert!(PodFacts::from_pod(&pod(None, "Pending")).is_none());
        assert!(PodFacts::from_pod(&pod(Some("n1"), "Succeeded")).is_none());
        assert!(PodFacts::from_pod(&pod(Some("n1"), "Failed")).is_none());
    }
}
