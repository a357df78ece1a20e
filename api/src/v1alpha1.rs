//! `spotwright.io/v1alpha1`: NodePool, NodeClass and NodeClaim.
//! All three are cluster-scoped. Field docs become the OpenAPI
//! descriptions that `kubectl explain` shows.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What nodes may be launched for which pods.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "spotwright.io",
    version = "v1alpha1",
    kind = "NodePool",
    plural = "nodepools",
    status = "NodePoolStatus",
    category = "spotwright",
    printcolumn = r#"{"name":"NodeClass","type":"string","jsonPath":".spec.template.spec.nodeClassRef.name"}"#,
    printcolumn = r#"{"name":"Nodes","type":"integer","jsonPath":".status.nodes"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Weight","type":"integer","jsonPath":".spec.weight","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolSpec {
    /// The template every NodeClaim of this pool is made from.
    pub template: NodeClaimTemplate,
    /// How and when nodes of this pool may be disrupted.
    #[serde(default)]
    pub disruption: Disruption,
    /// Upper bounds on the pool's totals: `cpu`, `memory`, `ephemeral-storage` and `pods` cap the sum of its nodes' capacity, `nodes` their number, and a domain-prefixed name such as `nvidia.com/gpu` an extended resource. NodeClaims in flight count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// Priority among NodePools that fit the same pod: higher is tried first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub weight: Option<i32>,
}

/// The template of the nodes a NodePool launches.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimTemplate {
    /// Labels and annotations every node of the pool gets.
    #[serde(default)]
    pub metadata: TemplateMetadata,
    /// The node's taints, requirements, NodeClass and lifetime.
    pub spec: NodeClaimTemplateSpec,
}

/// Metadata copied onto every node of the pool.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMetadata {
    /// Labels put on every node of the pool.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations put on every node of the pool.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// What a node of the pool is and how long it lives.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimTemplateSpec {
    /// Taints every node of the pool carries; pods must tolerate them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    /// Taints present only until the node is initialized (for example by a CNI or agent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub startup_taints: Vec<Taint>,
    /// Constraints on the nodes' labels, such as instance types, zones or capacity type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub requirements: Vec<NodeSelectorRequirementWithMinValues>,
    /// The NodeClass that says how to launch the nodes on EC2.
    pub node_class_ref: NodeClassReference,
    /// Lifetime after which a node is replaced regardless of budgets, such as `720h`; `Never` disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(Never|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$"))]
    pub expire_after: Option<String>,
    /// How long a draining node waits for its pods to be evicted, such as `1h`; once it has waited that long, the pods still on it are deleted regardless of PodDisruptionBudgets and `spotwright.io/do-not-disrupt`. Unset: a drain never forces, it reports the blocked evictions and retries. Copied onto each NodeClaim at launch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub termination_grace_period: Option<String>,
    /// What happens when the requirements' `minValues` cannot be met: `Strict` (the default) launches nothing for the pod; `BestEffort` launches keeping as many values as there are, and annotates the NodeClaim `spotwright.io/min-values-relaxed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_values_policy: Option<MinValuesPolicy>,
}

/// A node-label requirement, with an optional floor on the variety of values.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!(self.operator in ['Gt', 'Lt', 'Gte', 'Lte']) || (has(self.values) && size(self.values) == 1 && self.values[0].matches('^-?[0-9]+$'))",
        "message": "Gt, Lt, Gte and Lte take exactly one integer value"
    },
    {
        "rule": "!(self.operator in ['Exists', 'DoesNotExist']) || !has(self.values) || size(self.values) == 0",
        "message": "Exists and DoesNotExist take no values"
    }
]))]
pub struct NodeSelectorRequirementWithMinValues {
    /// The node label the requirement applies to.
    pub key: String,
    /// How the label's value is compared with `values`.
    pub operator: RequirementOperator,
    /// The values compared; a single integer for Gt, Lt, Gte and Lte, none for Exists and DoesNotExist.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(max = 63)))]
    pub values: Vec<String>,
    /// The least number of distinct values of this key a launch must keep open (for diversity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 50))]
    pub min_values: Option<i32>,
}

/// What happens when a NodePool's `minValues` cannot be met.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum MinValuesPolicy {
    /// No launch that keeps fewer values than `minValues`.
    #[default]
    Strict,
    /// When capacity is short, launch keeping as many values as there are.
    BestEffort,
}

/// Operators of a node-label requirement.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum RequirementOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
    /// Greater than or equal to (one integer value; NodePools only).
    Gte,
    /// Less than or equal to (one integer value; NodePools only).
    Lte,
}

/// Names the NodeClass a NodePool launches with.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct NodeClassReference {
    /// Name of the NodeClass.
    pub name: String,
}

/// When nodes of a pool may be removed or replaced.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Disruption {
    /// Which nodes consolidation may remove: only empty ones, or also under-used ones.
    #[serde(default)]
    pub consolidation_policy: ConsolidationPolicy,
    /// How long a node must have been a consolidation candidate before it is acted on, such as `30s`.
    #[serde(default = "default_consolidate_after")]
    pub consolidate_after: String,
    /// How many nodes may be disrupted at once; the most restrictive active budget wins.
    #[serde(default = "default_budgets")]
    pub budgets: Vec<Budget>,
    /// Percent of the candidates' $/h that an underutilized consolidation must save, or nothing moves (0 to 100, default 10). A replacement is launched only with instance types at least this much cheaper.
    #[serde(default = "default_consolidation_threshold")]
    #[schemars(range(min = 0, max = 100))]
    pub consolidation_threshold: u32,
}

impl Default for Disruption {
    fn default() -> Self {
        Disruption {
            consolidation_policy: ConsolidationPolicy::default(),
            consolidate_after: default_consolidate_after(),
            budgets: default_budgets(),
            consolidation_threshold: default_consolidation_threshold(),
        }
    }
}

fn default_consolidation_threshold() -> u32 {
    10
}

fn default_consolidate_after() -> String {
    "30s".to_owned()
}

fn default_budgets() -> Vec<Budget> {
    vec![Budget {
        nodes: "10%".to_owned(),
        reasons: Vec::new(),
        schedule: None,
        duration: None,
    }]
}

/// Which nodes consolidation may act on.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum ConsolidationPolicy {
    WhenEmpty,
    #[default]
    WhenEmptyOrUnderutilized,
}

/// A limit on concurrent disruptions, optionally for some reasons and time windows only.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    /// Nodes that may be disrupted at once: a count such as `2` or a percent of the pool such as `10%`.
    #[schemars(regex(pattern = r"^((100|[0-9]{1,2})%|[0-9]+)$"))]
    pub nodes: String,
    /// The disruption reasons this budget limits; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<DisruptionReason>,
    /// A cron schedule (UTC) at which the budget becomes active; requires `duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// How long the budget stays active after each `schedule` firing, such as `8h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
}

/// Why a node is disrupted.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum DisruptionReason {
    /// The node has no workload pods.
    Empty,
    /// The node's pods fit elsewhere at a lower price.
    Underutilized,
    /// The node no longer matches its NodePool or NodeClass (see the `Drifted` condition).
    Drifted,
    /// EC2 recommended rebalancing away from the node's Spot pool: a
    /// replacement is launched first, then the node drains.
    Rebalance,
}

/// Upper bounds on a pool's totals, by key: `cpu`, `memory`,
/// `ephemeral-storage` and `pods` cap the sum of the nodes' capacity,
/// `nodes` their number, and a domain-prefixed name (`nvidia.com/gpu`) an
/// extended resource. In-flight NodeClaims count as nodes.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(transparent)]
#[schemars(schema_with = "limits_schema")]
pub struct Limits(pub BTreeMap<String, Quantity>);

/// The schema of [`Limits`]: a map of quantities whose keys are the ones
/// the provisioner counts, so a typo is refused rather than ignored.
fn limits_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 32,
        "additionalProperties": {
            "x-kubernetes-int-or-string": true,
            "pattern": QUANTITY_PATTERN
        },
        "x-kubernetes-validations": [{
            "rule": "self.all(k, k in ['cpu', 'memory', 'ephemeral-storage', 'pods', 'nodes'] || k.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$'))",
            "message": "limits keys are cpu, memory, ephemeral-storage, pods, nodes, or an extended resource such as nvidia.com/gpu"
        }]
    })
}

/// A Kubernetes quantity (`1000`, `500m`, `4000Gi`, `1e3`).
const QUANTITY_PATTERN: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

/// Observed state of a NodePool.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolStatus {
    /// Number of nodes the pool has launched and not yet removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<i64>,
    /// Total capacity of the pool's nodes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, Quantity>,
    /// Current state: Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// How to launch nodes on EC2.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "spotwright.io",
    version = "v1alpha1",
    kind = "NodeClass",
    plural = "nodeclasses",
    status = "NodeClassStatus",
    category = "spotwright",
    printcolumn = r#"{"name":"AMI","type":"string","jsonPath":".status.amis[0].id"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct NodeClassSpec {
    /// Where the node image comes from.
    pub ami_selector: AmiSelector,
    /// Subnets to launch into; a subnet matches a term when it has all the term's tags, or the term's id.
    #[serde(default)]
    pub subnet_selector: Vec<SelectorTerm>,
    /// Security groups to attach; a group matches a term when it has all the term's tags, or the term's id.
    #[serde(default)]
    pub security_group_selector: Vec<SelectorTerm>,
    /// IAM instance profile the nodes run with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile: Option<String>,
    /// Extra user data, merged into the EKS bootstrap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// Tags put on every instance, volume and launch template.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Block devices of the nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block_device_mappings: Vec<BlockDeviceMapping>,
}

/// The node image: an SSM parameter path, or the `eks@latest` alias.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AmiSelector {
    /// An SSM Parameter Store path whose value is an AMI id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssm_parameter: Option<String>,
    /// `eks@latest`: the EKS-optimized AMI for the control plane's Kubernetes version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

/// Selects EC2 resources by tags or by id.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct SelectorTerm {
    /// Tags the resource must all carry; the value `*` matches any value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// The resource's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// A block device of the node.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BlockDeviceMapping {
    /// Device name, such as `/dev/xvda`.
    pub device_name: String,
    /// The EBS volume behind the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ebs: Option<EbsVolume>,
}

/// An EBS volume.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EbsVolume {
    /// Size, such as `100Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_size: Option<Quantity>,
    /// Volume type, such as `gp3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_type: Option<String>,
    /// Provisioned IOPS (io1, io2, gp3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iops: Option<i64>,
    /// Throughput in MiB/s (gp3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<i64>,
    /// Whether the volume is encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
    /// Whether the volume is deleted with the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_on_termination: Option<bool>,
}

/// Observed state of a NodeClass: what its selectors resolved to.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeClassStatus {
    /// AMIs the selector currently resolves to; a node on any other image has drifted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amis: Vec<ResolvedAmi>,
    /// Subnets the selector currently resolves to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<ResolvedSubnet>,
    /// Security groups the selector currently resolves to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<ResolvedSecurityGroup>,
    /// Current state: Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A resolved AMI.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct ResolvedAmi {
    /// The AMI id.
    pub id: String,
    /// The SSM path it was read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// A resolved subnet.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct ResolvedSubnet {
    /// The subnet id.
    pub id: String,
    /// Its availability zone.
    pub zone: String,
    /// Its availability zone's id (`use1-az1`), when EC2 gives it.
    #[serde(default, rename = "zoneID", skip_serializing_if = "Option::is_none")]
    pub zone_id: Option<String>,
}

/// A resolved security group.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct ResolvedSecurityGroup {
    /// The security group id.
    pub id: String,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// One launched instance, owned by the provisioner.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "spotwright.io",
    version = "v1alpha1",
    kind = "NodeClaim",
    plural = "nodeclaims",
    status = "NodeClaimStatus",
    category = "spotwright",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".status.instanceType"}"#,
    printcolumn = r#"{"name":"Capacity","type":"string","jsonPath":".status.capacityType"}"#,
    printcolumn = r#"{"name":"Zone","type":"string","jsonPath":".status.zone"}"#,
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".status.nodeName"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Initialized\")].status"}"#,
    printcolumn = r#"{"name":"Disruption","type":"string","jsonPath":".status.conditions[?(@.type==\"Disrupting\")].reason"}"#,
    printcolumn = r#"{"name":"Drifted","type":"string","jsonPath":".status.conditions[?(@.type==\"Drifted\")].status","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimSpec {
    /// The NodeClass the instance is launched with.
    pub node_class_ref: NodeClassReference,
    /// The requirements the instance was chosen under.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub requirements: Vec<NodeSelectorRequirementWithMinValues>,
    /// Taints the node carries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    /// Taints the node carries until it is initialized.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub startup_taints: Vec<Taint>,
    /// Resources the pods planned onto this node request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, Quantity>,
    /// Lifetime after which the node is replaced, copied from its NodePool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_after: Option<String>,
    /// How long a drain of this node may be held up before its pods are deleted, copied from its NodePool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub termination_grace_period: Option<String>,
}

/// Observed state of a NodeClaim.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimStatus {
    /// `aws:///<zone>/<instance-id>`.
    #[serde(
        rename = "providerID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub provider_id: Option<String>,
    /// EC2 instance type, such as `m6i.large`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// Availability zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// `spot` or `on-demand`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_type: Option<String>,
    /// The AMI the instance booted from.
    #[serde(rename = "imageID", default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// The Node that registered for this claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The instance's capacity.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capacity: BTreeMap<String, Quantity>,
    /// What pods can use of it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allocatable: BTreeMap<String, Quantity>,
    /// Launched, Registered, Initialized, Drifted, Disrupting.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// When a workload pod last landed on or left the claim's Node, as the
    /// provisioner saw it (written once the claim is Initialized, at most
    /// every 10 s). `consolidateAfter` counts from it, so a provisioner that
    /// restarts or takes over the lead does not start the node's timer again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pod_event_time: Option<Time>,
    /// Which workload pods the Node held at `lastPodEventTime`: a hash of
    /// their UIDs, 16 hex digits. A provisioner resumes the recorded time
    /// only while the Node holds the same pods; if they changed since (while
    /// no provisioner ran, or before the record caught up), the time starts
    /// again from its first look.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pod_event_pods: Option<String>,
}
