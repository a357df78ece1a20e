//! Termination: the `spotwright.io/termination` finalizer on every
//! NodeClaim. Watches (through the cluster state) NodeClaims, Nodes and
//! Pods. Decides ([`decide::plan`]) the next step of each claim from the
//! objects as they are, so a controller that crashes midway picks up where
//! it stopped. Does, when a claim is deleted: taints its Node
//! `spotwright.io/disrupted:NoSchedule` and cordons it, evicts its workload
//! pods through the Eviction API (PodDisruptionBudgets are respected: a
//! refusal backs off, is reported and retried), then terminates the
//! instance, deletes the Node and drops the finalizer. A claim with a
//! `terminationGracePeriod` stops waiting once it has drained that long:
//! the pods left are deleted, PodDisruptionBudgets or not.

pub mod decide;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::{Client, Resource, ResourceExt};
use prometheus::IntCounter;
use spotwright_api::{conditions, keys, NodeClaim};
use tokio::time::Instant;

pub use decide::*;

use crate::act::events::{Events, Notice};
use crate::act::instances::Instances;
use crate::act::{claims, nodes, pods};
use crate::model::claim::{has_finalizer, ConditionUpdate};
use crate::model::clock::SharedClock;
use crate::state::{ClusterState, Kind, Snapshot};
use crate::Error;

/// Claims worked on at once.
const CONCURRENCY: usize = 8;
/// The least time between two sweeps: pods change often cluster-wide.
const SWEEP_GAP: Duration = Duration::from_millis(100);
/// How long a write takes to come back through the watch: a claim just
/// written is not looked at again sooner, so a stale copy is not acted on.
const SETTLE: Duration = Duration::from_secs(1);

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
    /// How soon a failed step is tried again.
    pub error_retry: Duration,
    /// Counts refused evictions.
    pub evictions_blocked: Option<IntCounter>,
    /// Counts pods deleted because a drain outlasted its grace period.
    pub pods_deleted_at_grace: Option<IntCounter>,
}

impl Default for TerminationSettings {
    fn default() -> Self {
        TerminationSettings {
            drain_poll: Duration::from_secs(2),
            eviction_backoff: Duration::from_secs(1),
            eviction_backoff_max: Duration::from_secs(20),
            error_retry: Duration::from_secs(5),
            evictions_blocked: None,
            pods_deleted_at_grace: None,
        }
    }
}

/// What termination works with.
pub struct Termination<I> {
    pub client: Client,
    pub state: ClusterState,
    pub events: Events,
    pub clock: SharedClock,
    pub instances: Arc<I>,
    pub settings: TerminationSettings,
}

/// Per claim: when to look again, and refused drain passes in a row.
#[derive(Default)]
struct Memory {
    not_before: HashMap<String, Instant>,
    refusals: HashMap<String, u32>,
}

/// What one step asks of the next.
struct Next {
    /// Look again after this long; `None`: only when something changes.
    after: Option<Duration>,
    /// Refused evictions in this step, for drain steps.
    refused: Option<u64>,
}

/// Runs termination until the process ends: a sweep on each claim, Node or
/// Pod change, each claim no sooner than its step asked.
pub async fn run<I: Instances>(ctx: Termination<I>) {
    let mut changes = ctx
        .state
        .subscribe(&[Kind::NodeClaims, Kind::Nodes, Kind::Pods]);
    ctx.state.ready().await;
    let mut memory = Memory::default();
    loop {
        sweep(&ctx, &mut memory).await;
        let now = Instant::now();
        let next = memory
            .not_before
            .values()
            .filter(|at| **at > now)
            .min()
            .copied();
        let wait = next.map_or(ctx.settings.drain_poll, |at| {
            at.saturating_duration_since(now)
        });
        changes.pace(SWEEP_GAP, wait.max(SWEEP_GAP)).await;
    }
}

async fn sweep<I: Instances>(ctx: &Termination<I>, memory: &mut Memory) {
    let snapshot = ctx.state.snapshot();
    let now = Instant::now();
    memory
        .not_before
        .retain(|name, _| snapshot.claim(name).is_some());
    memory
        .refusals
        .retain(|name, _| snapshot.claim(name).is_some());
    let due: Vec<(Arc<NodeClaim>, u32)> = snapshot
        .claims
        .iter()
        .filter(|c| {
            let live = c.meta().deletion_timestamp.is_none();
            let idle = live && has_finalizer(c);
            let waiting = memory
                .not_before
                .get(&c.name_any())
                .is_some_and(|at| *at > now);
            !idle && !waiting
        })
        .map(|c| {
            let in_a_row = memory.refusals.get(&c.name_any()).copied().unwrap_or(0);
            (c.clone(), in_a_row)
        })
        .collect();
    let snapshot = &snapshot;
    let steps: Vec<BoxFuture<'_, (String, Result<Next, Error>)>> = due
        .into_iter()
        .map(|(claim, in_a_row)| {
            async move {
                let next = reconcile(ctx, snapshot, &claim, in_a_row).await;
                (claim.name_any(), next)
            }
            .boxed()
        })
        .collect();
    let results: Vec<(String, Result<Next, Error>)> = futures::stream::iter(steps)
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for (name, result) in results {
        let after = match result {
            Ok(next) => {
                match next.refused {
                    Some(0) => {
                        memory.refusals.remove(&name);
                    }
                    Some(_) => *memory.refusals.entry(name.clone()).or_default() += 1,
                    None => {}
                }
                next.after
            }
            // A conflict: the cached copy was stale; the watch brings the new one.
            Err(err) if err.metric_reason() == "conflict" => Some(SETTLE),
            Err(err) => {
                tracing::warn!(claim = %name, error = %err, reason = err.metric_reason(), "termination step failed; retrying");
                Some(ctx.settings.error_retry)
            }
        };
        match after {
            Some(after) => memory.not_before.insert(name, now + after),
            None => memory.not_before.remove(&name),
        };
    }
}

async fn reconcile<I: Instances>(
    ctx: &Termination<I>,
    snapshot: &Snapshot,
    claim: &NodeClaim,
    in_a_row: u32,
) -> Result<Next, Error> {
    if claim.meta().deletion_timestamp.is_none() {
        // Only the finalizer matters for a live claim.
        if plan(claim, None, &[], ctx.clock.now()) == TerminationStep::AddFinalizer {
            claims::add_finalizer(&ctx.client, claim).await?;
        }
        return Ok(Next {
            after: Some(SETTLE),
            refused: None,
        });
    }
    let node = snapshot.node_of(claim).map(AsRef::as_ref);
    let pods = node
        .map(|n| snapshot.pods_on(&n.name_any()))
        .unwrap_or_default();
    let step = plan(claim, node, &pods, ctx.clock.now());
    if matches!(
        step,
        TerminationStep::Cordon { .. }
            | TerminationStep::Evict { .. }
            | TerminationStep::ForceDelete { .. }
            | TerminationStep::AwaitPodExit { .. }
    ) {
        // Every draining pass makes sure, so a failed write is retried.
        mark_disrupting(ctx, claim).await?;
    }
    execute(ctx, claim, node, step, in_a_row).await
}

async fn execute<I: Instances>(
    ctx: &Termination<I>,
    claim: &NodeClaim,
    node: Option<&Node>,
    step: TerminationStep,
    in_a_row: u32,
) -> Result<Next, Error> {
    let poll = Next {
        after: Some(ctx.settings.drain_poll),
        refused: None,
    };
    match step {
        TerminationStep::Nothing => Ok(Next {
            after: None,
            refused: None,
        }),
        TerminationStep::AddFinalizer => {
            claims::add_finalizer(&ctx.client, claim).await?;
            Ok(Next {
                after: Some(SETTLE),
                refused: None,
            })
        }
        TerminationStep::Cordon { node: node_name } => {
            let Some(node) = node else {
                return Ok(poll);
            };
            nodes::cordon(&ctx.client, node).await?;
            let note = format!(
                "Node {node_name} tainted {}:NoSchedule and cordoned; draining",
                keys::DISRUPTED_TAINT_KEY
            );
            let notice = Notice::normal("Draining", "Terminate", note);
            ctx.events.about(claim, notice).await;
            Ok(Next {
                after: Some(Duration::from_millis(200)),
                refused: None,
            })
        }
        TerminationStep::Evict { node, pods } => {
            evict_all(ctx, claim, &node, &pods, in_a_row).await
        }
        TerminationStep::ForceDelete { node, pods } => {
            delete_all(ctx, claim, &node, &pods).await?;
            Ok(Next {
                after: Some(ctx.settings.drain_poll),
                refused: Some(0),
            })
        }
        TerminationStep::AwaitPodExit { .. } => Ok(poll),
        TerminationStep::Finish { node, instance_id } => {
            finish(ctx, claim, node.as_deref(), instance_id.as_deref()).await?;
            Ok(Next {
                after: Some(SETTLE),
                refused: Some(0),
            })
        }
    }
}

/// One drain pass: evicts every pod; refusals back off, doubling, and are
/// reported on the claim.
async fn evict_all<I: Instances>(
    ctx: &Termination<I>,
    claim: &NodeClaim,
    node: &str,
    to_evict: &[PodRef],
    in_a_row: u32,
) -> Result<Next, Error> {
    let mut refused = Vec::new();
    for pod in to_evict {
        if !pods::evict(&ctx.client, &pod.namespace, &pod.name).await? {
            refused.push(format!("{}/{}", pod.namespace, pod.name));
        }
    }
    if let Some(counter) = &ctx.settings.evictions_blocked {
        counter.inc_by(refused.len() as u64);
    }
    if refused.is_empty() {
        return Ok(Next {
            after: Some(ctx.settings.drain_poll),
            refused: Some(0),
        });
    }
    let backoff = eviction_delay(
        ctx.settings.eviction_backoff,
        ctx.settings.eviction_backoff_max,
        in_a_row.saturating_add(1),
    );
    let deadline = grace_deadline(claim);
    let wait = wait_within_grace(backoff, deadline, ctx.clock.now());
    tracing::info!(
        node,
        refused = refused.len(),
        wait_ms = wait.as_millis() as u64,
        "evictions refused by PodDisruptionBudgets; retrying"
    );
    if report_blocked_drain(in_a_row) {
        let until = match deadline {
            Some(at) => format!("until the terminationGracePeriod ends at {at}"),
            None => "with no terminationGracePeriod, never forced".to_owned(),
        };
        let note = format!(
            "Node {node}: PodDisruptionBudgets refused evicting {}; retrying with backoff {until}",
            refused.join(", ")
        );
        let notice = Notice::warning("DrainBlocked", "Terminate", note);
        ctx.events.about(claim, notice).await;
    }
    Ok(Next {
        after: Some(wait),
        refused: Some(refused.len() as u64),
    })
}

/// The grace period is over: deletes every pod left, each named in an Event.
async fn delete_all<I: Instances>(
    ctx: &Termination<I>,
    claim: &NodeClaim,
    node: &str,
    to_delete: &[PodRef],
) -> Result<(), Error> {
    let grace = claim.spec.termination_grace_period.as_deref().unwrap_or("");
    for pod in to_delete {
        pods::delete(&ctx.client, &pod.namespace, &pod.name).await?;
        if let Some(counter) = &ctx.settings.pods_deleted_at_grace {
            counter.inc();
        }
        let note = format!(
            "pod {}/{} deleted from Node {node}: the terminationGracePeriod of {grace} is over, \
             so PodDisruptionBudgets and do-not-disrupt no longer hold the drain",
            pod.namespace, pod.name
        );
        let notice = Notice::warning("PodDeletedAfterGracePeriod", "Terminate", note);
        ctx.events.about(claim, notice).await;
    }
    Ok(())
}

/// Drained: terminate the instance, delete the Node, drop the finalizer.
async fn finish<I: Instances>(
    ctx: &Termination<I>,
    claim: &NodeClaim,
    node_name: Option<&str>,
    instance_id: Option<&str>,
) -> Result<(), Error> {
    if let Some(node_name) = node_name {
        let note = format!("Node {node_name} drained");
        let notice = Notice::normal("Drained", "Terminate", note);
        ctx.events.about(claim, notice).await;
    }
    if let Some(instance) = instance_id {
        ctx.instances.terminate(&[instance.to_owned()]).await?;
    }
    if let Some(node_name) = node_name {
        nodes::delete(&ctx.client, node_name).await?;
    }
    let note = match instance_id {
        Some(id) => format!("instance {id} terminated"),
        None => "no instance was launched".to_owned(),
    };
    let notice = Notice::normal("Terminated", "Terminate", note);
    ctx.events.about(claim, notice).await;
    claims::remove_finalizer(&ctx.client, claim).await
}

/// Records `Disrupting=True` on the claim.
async fn mark_disrupting<I>(ctx: &Termination<I>, claim: &NodeClaim) -> Result<(), Error> {
    let update = ConditionUpdate {
        type_: conditions::DISRUPTING,
        status: true,
        reason: "Terminating",
        message: "the claim is deleted; its node is drained and its instance terminated".to_owned(),
    };
    claims::write_condition(&ctx.client, claim, update, ctx.clock.now()).await
}
