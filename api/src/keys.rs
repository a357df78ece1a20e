//! Well-known keys: the names users type into YAML and dashboards.
//! They are the user-facing contract (`docs/contract.md`); never rename one.

/// API group of every Spotwright kind.
pub const GROUP: &str = "spotwright.io";

/// Annotation on a Namespace or Pod choosing the capacity a pod runs on.
pub const CAPACITY_ANNOTATION: &str = "spotwright.io/capacity";
/// Annotation on a Namespace or Pod restricting pods to one NodePool.
pub const NODEPOOL_ANNOTATION: &str = "spotwright.io/nodepool";
/// Annotation on a Pod or Node that makes voluntary disruption skip the node.
pub const DO_NOT_DISRUPT_ANNOTATION: &str = "spotwright.io/do-not-disrupt";
/// Kubernetes' annotation on a Pod: what deleting it costs, relative to
/// its siblings. Consolidation weighs it (with priority) as disruption cost.
pub const POD_DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Node label: `spot` or `on-demand`. Also the key of the Spot taint.
pub const CAPACITY_TYPE_LABEL: &str = "spotwright.io/capacity-type";
/// Node label: the NodePool that launched the node.
pub const NODEPOOL_LABEL: &str = "spotwright.io/nodepool";
pub const INSTANCE_CATEGORY_LABEL: &str = "spotwright.io/instance-category";
pub const INSTANCE_FAMILY_LABEL: &str = "spotwright.io/instance-family";
pub const INSTANCE_SIZE_LABEL: &str = "spotwright.io/instance-size";
pub const INSTANCE_CPU_LABEL: &str = "spotwright.io/instance-cpu";
pub const INSTANCE_MEMORY_LABEL: &str = "spotwright.io/instance-memory";
pub const INSTANCE_GENERATION_LABEL: &str = "spotwright.io/instance-generation";
/// Node label: how many GPUs the instance has (only on GPU instances).
pub const INSTANCE_GPU_COUNT_LABEL: &str = "spotwright.io/instance-gpu-count";
/// Node label: the GPU's model, lowercase (`t4`, `a10g`; only on GPU instances).
pub const INSTANCE_GPU_NAME_LABEL: &str = "spotwright.io/instance-gpu-name";
/// Node label: GiB of local NVMe instance storage (only where there is some).
pub const INSTANCE_LOCAL_NVME_LABEL: &str = "spotwright.io/instance-local-nvme";
/// Node label: the instance's baseline network bandwidth in Mbit/s (where EC2 says).
pub const INSTANCE_NETWORK_BANDWIDTH_LABEL: &str = "spotwright.io/instance-network-bandwidth";
/// Node label: the zone's id (`use1-az1`), the same across AWS accounts.
pub const ZONE_ID_LABEL: &str = "topology.k8s.aws/zone-id";

pub const INSTANCE_TYPE_LABEL: &str = "node.kubernetes.io/instance-type";
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
pub const ARCH_LABEL: &str = "kubernetes.io/arch";
pub const OS_LABEL: &str = "kubernetes.io/os";
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// EKS managed node groups label their capacity with this key.
pub const EKS_CAPACITY_TYPE_LABEL: &str = "eks.amazonaws.com/capacityType";
/// The value EKS managed node groups use for on-demand capacity.
pub const EKS_ON_DEMAND: &str = "ON_DEMAND";
/// EKS managed node groups label their nodes with the group's name.
pub const EKS_NODEGROUP_LABEL: &str = "eks.amazonaws.com/nodegroup";
/// EKS tags a managed node group's instances with the group's name.
pub const EKS_NODEGROUP_TAG: &str = "eks:nodegroup-name";
/// EKS tags a managed node group's instances with the cluster's name.
pub const EKS_CLUSTER_NAME_TAG: &str = "eks:cluster-name";

/// Annotation on a NodeClaim: the hash of its NodePool's `spec.template`
/// (requirements excluded) when the claim was made. A different hash now
/// means the claim has drifted (`NodePoolDrift`).
pub const NODEPOOL_HASH_ANNOTATION: &str = "spotwright.io/nodepool-hash";
/// Annotation on a NodeClaim: the hash of its NodeClass's `spec` when the
/// claim was made (`NodeClassDrift` when it differs).
pub const NODECLASS_HASH_ANNOTATION: &str = "spotwright.io/nodeclass-hash";

/// Taint on a node that is being replaced or removed: nothing new lands there.
pub const DISRUPTED_TAINT_KEY: &str = "spotwright.io/disrupted";
/// Taint (`NoSchedule`) a Spotwright node registers with (its user data's
/// `--register-with-taints`). Registration lifts it once the node carries
/// its claim's labels and taints and the other nodes of the same launch
/// group have registered too (or `--registration-gate` has passed), so the
/// scheduler sees a burst's nodes together.
pub const UNREGISTERED_TAINT_KEY: &str = "spotwright.io/unregistered";
/// Annotation on a NodeClaim made by a provisioning pass: `<id>/<size>`, the
/// pass's id and how many claims it made. Registration lifts
/// [`UNREGISTERED_TAINT_KEY`] from the pass's nodes together.
pub const LAUNCH_GROUP_ANNOTATION: &str = "spotwright.io/launch-group";

/// On a NodeClaim launched under `minValuesPolicy: BestEffort` that keeps
/// fewer values than a `minValues` asks: `<key>=<kept>/<wanted>`, comma-separated.
pub const MIN_VALUES_RELAXED_ANNOTATION: &str = "spotwright.io/min-values-relaxed";

/// Annotation on a new NodeClaim: the pods it was launched for and what they
/// request (JSON, see [`crate::reservation`]). The extender keeps that room
/// for them on the claim's node for a while after the node registers.
pub const RESERVED_FOR_ANNOTATION: &str = "spotwright.io/reserved-for";

/// Annotation on a NodeClaim being replaced: JSON with the reason, when the
/// replacement began and the names of the replacement NodeClaims. Written
/// before anything else is done, so a restarted provisioner resumes the
/// replacement from it instead of starting a second one.
pub const DISRUPTION_ANNOTATION: &str = "spotwright.io/disruption";
/// Label on a replacement NodeClaim: the name of the NodeClaim it replaces.
pub const REPLACES_LABEL: &str = "spotwright.io/replaces";
/// Annotation on a replacement NodeClaim that replaces several at once
/// (consolidation): the names of all of them, comma-separated. Its room
/// stays promised until every one is gone.
pub const REPLACES_ALL_ANNOTATION: &str = "spotwright.io/replaces-all";
/// Annotation on a NodeClaim (RFC 3339 time): EC2 recommended rebalancing
/// away from its instance. Disruption replaces it within budget.
pub const REBALANCE_ANNOTATION: &str = "spotwright.io/rebalance-recommended";

/// The value of [`CAPACITY_TYPE_LABEL`] on Spot nodes, and of the Spot taint.
pub const SPOT: &str = "spot";
/// The value of [`CAPACITY_TYPE_LABEL`] on on-demand nodes.
pub const ON_DEMAND: &str = "on-demand";

/// The name of Spotwright's second kube-scheduler.
pub const SCHEDULER_NAME: &str = "spotwright-scheduler";
/// The scheduler the API server defaults a pod to.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// The namespace Spotwright installs itself into.
pub const SYSTEM_NAMESPACE: &str = "spotwright-system";
/// Namespaces the webhook never touches, besides its own.
pub const KUBERNETES_SYSTEM_NAMESPACES: [&str; 3] =
    ["kube-system", "kube-public", "kube-node-lease"];

/// Annotation the kubelet puts on mirror pods of static pods.
pub const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// EC2 tag every instance of a cluster carries: `kubernetes.io/cluster/<name>: owned`.
pub fn cluster_tag_key(cluster_name: &str) -> String {
    format!("kubernetes.io/cluster/{cluster_name}")
}
/// EC2 tag naming the NodePool an instance was launched for.
pub const NODEPOOL_TAG: &str = "spotwright.io/nodepool";
/// EC2 tag naming the NodeClaim an instance belongs to.
pub const NODECLAIM_TAG: &str = "spotwright.io/nodeclaim";

/// Capacity a node runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CapacityType {
    Spot,
    OnDemand,
}

impl CapacityType {
    pub fn as_str(self) -> &'static str {
        match self {
            CapacityType::Spot => SPOT,
            CapacityType::OnDemand => ON_DEMAND,
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            SPOT => Some(CapacityType::Spot),
            ON_DEMAND => Some(CapacityType::OnDemand),
            _ => None,
        }
    }
}

/// Label (`"true"`) on the `events.k8s.io/v1` Events that record a Spot
/// interruption; `node.kubernetes.io/instance-type` and
/// `topology.kubernetes.io/zone` labels on the same Event name the pool.
/// See [`crate::interruption`].
pub const INTERRUPTION_LABEL: &str = "spotwright.io/interruption";
/// The `reason` of an interruption Event.
pub const INTERRUPTION_REASON: &str = "SpotInterrupted";
/// The `action` of an interruption Event.
pub const INTERRUPTION_ACTION: &str = "Interrupt";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_type_round_trips_through_its_label_value() {
        for ct in [CapacityType::Spot, CapacityType::OnDemand] {
            assert_eq!(CapacityType::parse(ct.as_str()), Some(ct));
        }
        assert_eq!(CapacityType::parse("ON_DEMAND"), None);
    }

    #[test]
    fn cluster_tag_names_the_cluster() {
        assert_eq!(
            cluster_tag_key("spotwright-local"),
            "kubernetes.io/cluster/spotwright-local"
        );
    }
}
