//! Termination: the `spotwright.io/termination` finalizer on every
//! NodeClaim. When a claim is deleted: taint its Node
//! `spotwright.io/disrupted:NoSchedule` and cordon it, evict its workload
//! pods through the Eviction API (PodDisruptionBudgets are respected: a
//! refusal is retried later), then terminate the instance, delete the Node
//! and drop the finalizer.
//!
//! Every step is derived from the objects as they are ([`plan`]), so a
//! controller that crashes midway picks up where it stopped.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use k8s_openapi::jiff::Timestamp;
use kube::api::{EvictParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::Controller;
use kube::{Api, Client, Resource, ResourceExt};
use prometheus::IntCounter;
use serde_json::json;
use spotwright_api::{conditions, keys, NodeClaim};

use super::registration::{
    claims_config, provider_id, record, reporter, set_condition, with_resource_version,
    ConditionUpdate, FIELD_MANAGER,
};
use super::removal::is_workload_pod;

/// The finalizer that holds a NodeClaim until its node is drained and its instance gone.
pub const TERMINATION_FINALIZER: &str = "spotwright.io/termination";

/// An EC2 instance of the cluster, as the controllers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceInfo {
    pub id: String,
    /// The `spotwright.io/nodeclaim` tag, when the instance has one.
    pub nodeclaim: Option<String>,
    /// The `spotwright.io/nodeclaim-uid` tag: tells a claim from an earlier
    /// one of the same name.
    pub nodeclaim_uid: Option<String>,
    pub launch_time: Option<Timestamp>,
}

/// An EC2 call failed.
#[derive(Debug, thiserror::Error)]
#[error("EC2: {0}")]
pub struct InstancesError(pub String);

/// What the controllers need from EC2; the EC2 adapter implements it.
pub trait Instances: Send + Sync + 'static {
    /// Terminates the instances. Idempotent: ids already terminated or
    /// unknown to EC2 are not an error.
    fn terminate(&self, ids: &[String]) -> impl Future<Output = Result<(), InstancesError>> + Send;
    /// Instances tagged `kubernetes.io/cluster/<name>: owned` that are not
    /// (yet) terminated: pending, running, stopping or stopped.
    fn list_cluster_instances(
        &self,
    ) -> impl Future<Output = Result<Vec<InstanceInfo>, InstancesError>> + Send;
}

/// The instance id of an `aws:///<zone>/<instance-id>` providerID.
pub fn instance_id(provider_id: &str) -> Option<&str> {
    let rest = provider_id.strip_prefix("aws://")?;
    rest.rsplit('/').next().filter(|id| id.starts_with("i-"))
}

/// A pod, by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
}

/// The next step for one claim.
#[derive(Clone, Debug, PartialEq)]
pub enum TerminationStep {
    /// Alive, without the finalizer: add it.
    AddFinalizer,
    /// Alive with the finalizer, or gone past it: nothing to do.
    Nothing,
    /// Deleting: taint the Node as disrupted and cordon it.
    Cordon { node: String },
    /// Deleting, cordoned: evict these pods.
    Evict { node: String, pods: Vec<PodRef> },
    /// Every workload pod is evicted; wait for them to exit.
    AwaitPodExit { node: String, pods: usize },
    /// Drained (or no Node): terminate, delete the Node, drop the finalizer.
    Finish {
        node: Option<String>,
        instance_id: Option<String>,
    },
}

/// The disruption taint termination puts on the Node.
pub fn disrupted_taint() -> Taint {
    Taint {
        key: keys::DISRUPTED_TAINT_KEY.to_owned(),
        effect: "NoSchedule".to_owned(),
        value: None,
        time_added: None,
    }
}

fn is_cordoned(node: &Node) -> bool {
    let spec = node.spec.as_ref();
    let unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
    let tainted = spec.and_then(|s| s.taints.as_ref()).is_some_and(|ts| {
        ts.iter()
            .any(|t| t.key == keys::DISRUPTED_TAINT_KEY && t.effect == "NoSchedule")
    });
    unschedulable && tainted
}

fn has_finalizer(claim: &NodeClaim) -> bool {
    claim
        .finalizers()
        .iter()
        .any(|f| f == TERMINATION_FINALIZER)
}

/// Plans the next step from the claim, its Node (if any) and the pods bound to it.
pub fn plan(claim: &NodeClaim, node: Option<&Node>, pods: &[Pod]) -> TerminationStep {
    if claim.meta().deletion_timestamp.is_none() {
        return if has_finalizer(claim) {
            TerminationStep::Nothing
        } else {
            TerminationStep::AddFinalizer
        };
    }
    if !has_finalizer(claim) {
        return TerminationStep::Nothing;
    }
    let instance_id = provider_id(claim).and_then(instance_id).map(str::to_owned);
    let Some(node) = node else {
        return TerminationStep::Finish {
            node: None,
            instance_id,
        };
    };
    let node_name = node.name_any();
    if !is_cordoned(node) {
        return TerminationStep::Cordon { node: node_name };
    }
    let workload: Vec<&Pod> = pods.iter().filter(|p| is_workload_pod(p)).collect();
    let to_evict: Vec<PodRef> = workload
        .iter()
        .filter(|p| p.meta().deletion_timestamp.is_none())
        .map(|p| PodRef {
            namespace: p.namespace().unwrap_or_default(),
            name: p.name_any(),
        })
        .collect();
    if !to_evict.is_empty() {
        return TerminationStep::Evict {
            node: node_name,
            pods: to_evict,
        };
    }
    if !workload.is_empty() {
        return TerminationStep::AwaitPodExit {
            node: node_name,
            pods: workload.len(),
        };
    }
    TerminationStep::Finish {
        node: Some(node_name),
        instance_id,
    }
}

/// Termination failures; all are retried.
#[derive(Debug, thiserror::Error)]
pub enum TerminationError {
    #[error("NodeClaim {claim}: {source}")]
    Claim { claim: String, source: kube::Error },
    #[error("Node {node}: {source}")]
    Node { node: String, source: kube::Error },
    #[error("listing pods on {node}: {source}")]
    Pods { node: String, source: kube::Error },
    #[error("evicting {namespace}/{name}: {source}")]
    Evict {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("terminating {instance}: {source}")]
    Terminate {
        instance: String,
        source: InstancesError,
    },
}

/// How termination behaves.
#[derive(Clone, Debug)]
pub struct TerminationSettings {
    /// How soon to look again while pods are being evicted or exiting.
    pub drain_poll: Duration,
    /// The wait after a PodDisruptionBudget first refused an eviction of a
    /// claim's pods; it doubles with each refusal in a row, up to
    /// `eviction_backoff_max`.
    pub eviction_backoff: Duration,
    pub eviction_backoff_max: Duration,
    /// Only NodeClaims matching this label selector are handled (all when
    /// `None`): lets tests, or shards, keep to their own claims.
    pub claim_selector: Option<String>,
    /// Counts refused evictions.
    pub evictions_blocked: Option<IntCounter>,
}

impl Default for TerminationSettings {
    fn default() -> Self {
        TerminationSettings {
            drain_poll: Duration::from_secs(2),
            eviction_backoff: Duration::from_secs(1),
            eviction_backoff_max: Duration::from_secs(20),
            claim_selector: None,
            evictions_blocked: None,
        }
    }
}

/// The wait after the `refusals`-th refused drain pass in a row (from 1).
pub fn eviction_delay(base: Duration, max: Duration, refusals: u32) -> Duration {
    let doublings = refusals.saturating_sub(1).min(16);
    base.saturating_mul(1u32 << doublings).min(max)
}

struct Context<I> {
    client: Client,
    instances: Arc<I>,
    recorder: Recorder,
    settings: TerminationSettings,
    /// Refused drain passes in a row, per claim.
    refusals: Mutex<HashMap<String, u32>>,
}

/// Runs the termination controller until its watch ends.
pub async fn run<I: Instances>(client: Client, settings: TerminationSettings, instances: Arc<I>) {
    let config = claims_config(&settings.claim_selector);
    let context = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter()),
        client: client.clone(),
        instances,
        settings,
        refusals: Mutex::new(HashMap::new()),
    });
    Controller::new(Api::<NodeClaim>::all(client), config)
        .run(reconcile, error_policy, context)
        .for_each(|result| {
            if let Err(err) = result {
                tracing::debug!(error = %err, "termination reconcile failed");
            }
            futures::future::ready(())
        })
        .await;
}

fn error_policy<I: Instances>(
    _: Arc<NodeClaim>,
    err: &TerminationError,
    _: Arc<Context<I>>,
) -> Action {
    tracing::warn!(error = %err, "termination step failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile<I: Instances>(
    claim: Arc<NodeClaim>,
    ctx: Arc<Context<I>>,
) -> Result<Action, TerminationError> {
    if claim.meta().deletion_timestamp.is_none() {
        // Only the finalizer matters for a live claim: no need to look further.
        let step = plan(&claim, None, &[]);
        return execute(&ctx, &claim, None, step).await;
    }
    let node = find_node(&ctx.client, &claim).await?;
    let pods = match &node {
        Some(node) => pods_on(&ctx.client, &node.name_any()).await?,
        None => Vec::new(),
    };
    let step = plan(&claim, node.as_ref(), &pods);
    if matches!(
        step,
        TerminationStep::Cordon { .. }
            | TerminationStep::Evict { .. }
            | TerminationStep::AwaitPodExit { .. }
    ) {
        // Every draining pass makes sure, so a failed write is retried.
        mark_disrupting(&ctx.client, &claim)
            .await
            .map_err(|source| TerminationError::Claim {
                claim: claim.name_any(),
                source,
            })?;
    }
    execute(&ctx, &claim, node.as_ref(), step).await
}

async fn execute<I: Instances>(
    ctx: &Context<I>,
    claim: &NodeClaim,
    node: Option<&Node>,
    step: TerminationStep,
) -> Result<Action, TerminationError> {
    let claim_name = claim.name_any();
    let claim_err = |source| TerminationError::Claim {
        claim: claim_name.clone(),
        source,
    };
    let claims: Api<NodeClaim> = Api::all(ctx.client.clone());
    match step {
        TerminationStep::Nothing => Ok(Action::await_change()),
        TerminationStep::AddFinalizer => {
            let mut finalizers = claim.finalizers().to_vec();
            finalizers.push(TERMINATION_FINALIZER.to_owned());
            let patch = json!({"metadata": {"finalizers": finalizers}});
            let patch = with_resource_version(patch, claim.resource_version());
            claims
                .patch(&claim_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(claim_err)?;
            Ok(Action::await_change())
        }
        TerminationStep::Cordon { node: node_name } => {
            let Some(node) = node else {
                return Ok(Action::requeue(ctx.settings.drain_poll));
            };
            cordon(&ctx.client, node).await?;
            let note = format!(
                "Node {node_name} tainted {}:NoSchedule and cordoned; draining",
                keys::DISRUPTED_TAINT_KEY
            );
            record(
                &ctx.recorder,
                &claim.object_ref(&()),
                EventType::Normal,
                "Draining",
                "Terminate",
                note,
            )
            .await;
            Ok(Action::requeue(Duration::from_millis(200)))
        }
        TerminationStep::Evict {
            node: node_name,
            pods,
        } => {
            let mut refused = 0u64;
            for pod in &pods {
                if !evict(&ctx.client, pod).await? {
                    refused += 1;
                }
            }
            if let Some(counter) = &ctx.settings.evictions_blocked {
                counter.inc_by(refused);
            }
            let in_a_row = match ctx.refusals.lock() {
                Ok(mut refusals) if refused > 0 => {
                    let n = refusals.entry(claim_name.clone()).or_default();
                    *n = n.saturating_add(1);
                    *n
                }
                Ok(mut refusals) => {
                    refusals.remove(&claim_name);
                    0
                }
                Err(_) => u32::from(refused > 0),
            };
            if refused > 0 {
                let wait = eviction_delay(
                    ctx.settings.eviction_backoff,
                    ctx.settings.eviction_backoff_max,
                    in_a_row,
                );
                tracing::info!(node = %node_name, refused, wait_ms = wait.as_millis() as u64, "evictions refused by PodDisruptionBudgets; retrying");
                Ok(Action::requeue(wait))
            } else {
                Ok(Action::requeue(ctx.settings.drain_poll))
            }
        }
        TerminationStep::AwaitPodExit { .. } => Ok(Action::requeue(ctx.settings.drain_poll)),
        TerminationStep::Finish {
            node: node_name,
            instance_id,
        } => {
            if let Ok(mut refusals) = ctx.refusals.lock() {
                refusals.remove(&claim_name);
            }
            if let Some(node_name) = &node_name {
                let note = format!("Node {node_name} drained");
                record(
                    &ctx.recorder,
                    &claim.object_ref(&()),
                    EventType::Normal,
                    "Drained",
                    "Terminate",
                    note,
                )
                .await;
            }
            if let Some(instance) = &instance_id {
                ctx.instances
                    .terminate(std::slice::from_ref(instance))
                    .await
                    .map_err(|source| TerminationError::Terminate {
                        instance: instance.clone(),
                        source,
                    })?;
            }
            if let Some(node_name) = &node_name {
                delete_node(&ctx.client, node_name).await?;
            }
            let note = match &instance_id {
                Some(id) => format!("instance {id} terminated"),
                None => "no instance was launched".to_owned(),
            };
            record(
                &ctx.recorder,
                &claim.object_ref(&()),
                EventType::Normal,
                "Terminated",
                "Terminate",
                note,
            )
            .await;
            let finalizers: Vec<&String> = claim
                .finalizers()
                .iter()
                .filter(|f| *f != TERMINATION_FINALIZER)
                .collect();
            let patch = json!({"metadata": {"finalizers": finalizers}});
            let patch = with_resource_version(patch, claim.resource_version());
            match claims
                .patch(&claim_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => Ok(Action::await_change()),
                Err(kube::Error::Api(status)) if status.code == 404 => Ok(Action::await_change()),
                Err(source) => Err(claim_err(source)),
            }
        }
    }
}

/// The claim's Node: by `status.nodeName`, else by providerID (a claim
/// deleted before registration recorded the name).
async fn find_node(client: &Client, claim: &NodeClaim) -> Result<Option<Node>, TerminationError> {
    let api: Api<Node> = Api::all(client.clone());
    let node_err = |node: &str| {
        let node = node.to_owned();
        move |source| TerminationError::Node { node, source }
    };
    if let Some(name) = claim.status.as_ref().and_then(|s| s.node_name.as_deref()) {
        let node = api.get_opt(name).await.map_err(node_err(name))?;
        if node.is_some() {
            return Ok(node);
        }
    }
    let Some(provider) = provider_id(claim) else {
        return Ok(None);
    };
    let nodes = api
        .list(&ListParams::default())
        .await
        .map_err(node_err("*"))?;
    Ok(nodes
        .items
        .into_iter()
        .find(|n| n.spec.as_ref().and_then(|s| s.provider_id.as_deref()) == Some(provider)))
}

async fn pods_on(client: &Client, node: &str) -> Result<Vec<Pod>, TerminationError> {
    let api: Api<Pod> = Api::all(client.clone());
    let params = ListParams::default().fields(&format!("spec.nodeName={node}"));
    let list = api
        .list(&params)
        .await
        .map_err(|source| TerminationError::Pods {
            node: node.to_owned(),
            source,
        })?;
    Ok(list.items)
}

/// Taints and cordons in one patch, guarded by the Node's resourceVersion
/// so a concurrent taint change is never overwritten.
async fn cordon(client: &Client, node: &Node) -> Result<(), TerminationError> {
    let name = node.name_any();
    let mut taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    if !taints
        .iter()
        .any(|t| t.key == keys::DISRUPTED_TAINT_KEY && t.effect == "NoSchedule")
    {
        taints.push(disrupted_taint());
    }
    let patch = json!({"spec": {"unschedulable": true, "taints": taints}});
    let patch = with_resource_version(patch, node.resource_version());
    Api::<Node>::all(client.clone())
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| TerminationError::Node { node: name, source })?;
    Ok(())
}

/// Records `Disrupting=True` on the claim.
async fn mark_disrupting(client: &Client, claim: &NodeClaim) -> Result<(), kube::Error> {
    let update = ConditionUpdate {
        type_: conditions::DISRUPTING,
        status: true,
        reason: "Terminating",
        message: "the claim is deleted; its node is drained and its instance terminated".to_owned(),
    };
    write_condition(client, claim, update).await
}

/// Sets one condition on the claim, when that changes it.
pub async fn write_condition(
    client: &Client,
    claim: &NodeClaim,
    update: ConditionUpdate<'_>,
) -> Result<(), kube::Error> {
    let mut conditions = claim
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    if !set_condition(
        &mut conditions,
        update,
        claim.meta().generation,
        Timestamp::now(),
    ) {
        return Ok(());
    }
    let name = claim.name_any();
    let mut patch = json!({
        "apiVersion": "spotwright.io/v1alpha1",
        "kind": "NodeClaim",
        "metadata": {"name": name, "resourceVersion": claim.resource_version()},
        "status": {"conditions": conditions},
    });
    // Server-side apply drops what this manager applied before and leaves
    // out now: registration applied nodeName with the same manager, so it
    // must be applied again here or the claim would lose it.
    if let Some(node_name) = claim.status.as_ref().and_then(|s| s.node_name.as_deref()) {
        patch["status"]["nodeName"] = json!(node_name);
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Api::<NodeClaim>::all(client.clone())
        .patch_status(&name, &params, &Patch::Apply(&patch))
        .await?;
    Ok(())
}

/// Evicts one pod; `false` when a PodDisruptionBudget refused (429).
async fn evict(client: &Client, pod: &PodRef) -> Result<bool, TerminationError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
    match api.evict(&pod.name, &EvictParams::default()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 429 => Ok(false),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(true),
        Err(source) => Err(TerminationError::Evict {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            source,
        }),
    }
}

async fn delete_node(client: &Client, name: &str) -> Result<(), TerminationError> {
    let api: Api<Node> = Api::all(client.clone());
    match api.delete(name, &Default::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(TerminationError::Node {
            node: name.to_owned(),
            source,
        }),
    }
}
