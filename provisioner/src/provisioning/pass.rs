//! The batching loop and one provisioning pass.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource};
use serde_json::json;
use spotwright_api::keys;
use spotwright_api::{NodeClaim, NodeClass, NodePool};
use spotwright_solver::{solve, Input, NewNode};

use super::claim::nodepool_of;
use super::claim::{claim_name, new_claim};
use super::pool_status;
use super::stores::{refs, Stores};
use super::{Launched, Launcher};
use crate::batch::Batcher;
use crate::disruption::controller::{self as disruption, Memory};
use crate::disruption::decide::DisruptionTiming;
use crate::metrics::Metrics;

#[derive(Clone, Debug)]
pub struct Settings {
    pub scheduler_name: String,
    pub batch_idle: Duration,
    pub batch_max: Duration,
    /// Pending pods are solved again this often even without news (a launch
    /// that failed, capacity that came back).
    pub resync: Duration,
    /// Launches in flight at once.
    pub launch_concurrency: usize,
    /// How often voluntary disruption sweeps (drift, expiry, rebalance).
    pub disruption_interval: Duration,
    pub disruption: DisruptionTiming,
}

pub struct Context<L> {
    pub client: Client,
    pub stores: Stores,
    pub launcher: Arc<L>,
    pub metrics: Metrics,
    pub recorder: Recorder,
    pub settings: Settings,
}

/// Runs until the process ends: watches for new pending pods, closes
/// batches, and runs a pass per batch (and per resync while pods wait).
/// Disruption sweeps run in between, never during a pass, so no claim is
/// launched by both at once.
pub async fn run<L: Launcher>(ctx: Context<L>) {
    let mut batcher = Batcher::new(ctx.settings.batch_idle, ctx.settings.batch_max);
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut last_pass = Instant::now();
    let mut last_sweep = Instant::now();
    let mut memory = Memory::default();
    let mut batch_opened: Option<Instant> = None;
    loop {
        let wake = batcher
            .deadline()
            .unwrap_or_else(|| last_pass + ctx.settings.resync)
            .min(last_sweep + ctx.settings.disruption_interval)
            .max(Instant::now() + Duration::from_millis(50));
        tokio::select! {
            _ = ctx.stores.changed.notified() => {}
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        let now = Instant::now();
        let pending = pending_keys(&ctx);
        ctx.metrics
            .pending_pods
            .set(i64::try_from(pending.len()).unwrap_or(i64::MAX));
        if pending.iter().any(|k| !seen.contains(k)) {
            batcher.observe(now);
            batch_opened.get_or_insert(now);
        }
        seen = pending;
        let resync_due = now >= last_pass + ctx.settings.resync;
        if batcher.is_due(now) || resync_due {
            if let Some(opened) = batch_opened.take() {
                ctx.metrics
                    .batch_duration
                    .observe(now.duration_since(opened).as_secs_f64());
            }
            batcher.close();
            last_pass = Instant::now();
            if let Err(err) = pass(&ctx).await {
                tracing::warn!(error = %err, "provisioning pass failed; retrying at the next one");
            }
        }
        if Instant::now() >= last_sweep + ctx.settings.disruption_interval {
            last_sweep = Instant::now();
            disruption::sweep(&ctx, ctx.settings.disruption, &mut memory).await;
        }
    }
}

fn pending_keys<L>(ctx: &Context<L>) -> BTreeSet<String> {
    let opted_in = ctx.stores.opted_in();
    ctx.stores
        .pods
        .state()
        .iter()
        .filter(|p| crate::facts::is_provisionable(p, &ctx.settings.scheduler_name, &opted_in))
        .map(|p| crate::facts::pod_key(p))
        .collect()
}

/// Pods by `namespace/name`, for the Events of a pass: one lookup per
/// event, not a scan of every pod.
type PodsByKey<'a> = HashMap<String, &'a Pod>;

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("creating NodeClaim for NodePool {pool}: {source}")]
    CreateClaim { pool: String, source: kube::Error },
}

/// One pass: finish launches an earlier process began, solve, launch.
pub async fn pass<L: Launcher>(ctx: &Context<L>) -> Result<(), PassError> {
    resume(ctx).await;
    let now = ctx.stores.snapshot();
    let instance_types = ctx.launcher.instance_types();
    let problem = now.problem(&ctx.settings.scheduler_name, &instance_types);
    let (pods_r, claims_r) = (refs(&now.pods), refs(&now.claims));
    let (pools_r, classes_r) = (refs(&now.nodepools), refs(&now.nodeclasses));
    ctx.metrics
        .fleet_cost
        .set(fleet_cost(&claims_r, &instance_types));
    for (object, err) in &problem.unreadable {
        tracing::warn!(object, error = %err, "left out of the solve");
    }
    let pools_api: Api<NodePool> = Api::all(ctx.client.clone());
    for pool in &pools_r {
        let name = pool.metadata.name.as_deref().unwrap_or_default();
        let usage = problem.usage.get(name).copied().unwrap_or_default();
        let not_ready = problem
            .skipped_pools
            .iter()
            .find(|(p, _)| p == name)
            .map(|(_, why)| why.as_str());
        if let Some(status) = pool_status::desired(pool, usage, not_ready) {
            pool_status::write(&pools_api, pool, &status).await;
        }
    }
    if problem.pods.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let plan = solve(&Input {
        pods: &problem.pods,
        nodes: &problem.nodes,
        nodepools: &problem.nodepools,
        daemonsets: &problem.daemonsets,
        instance_types: &instance_types,
    });
    ctx.metrics
        .solve_duration
        .observe(started.elapsed().as_secs_f64());
    tracing::info!(
        pending = problem.pods.len(),
        to_existing = plan.to_existing.len(),
        new_nodes = plan.new_nodes.len(),
        unschedulable = plan.unschedulable.len(),
        solve_ms = started.elapsed().as_secs_f64() * 1000.0,
        "solved"
    );
    let skipped = problem
        .skipped_pools
        .iter()
        .map(|(pool, why)| format!("NodePool {pool} skipped: {why}"))
        .collect::<Vec<_>>()
        .join("; ");
    let by_key: PodsByKey = pods_r
        .iter()
        .map(|p| (crate::facts::pod_key(p), *p))
        .collect();
    for (pod_key, reason) in &plan.unschedulable {
        ctx.metrics
            .unschedulable_pods
            .with_label_values(&["no_fit"])
            .inc();
        let note = if skipped.is_empty() {
            reason.clone()
        } else {
            format!("{reason}; {skipped}")
        };
        pod_event(
            ctx,
            &by_key,
            pod_key,
            EventType::Warning,
            "NoNodeFits",
            note,
        )
        .await;
    }

    let launches = plan
        .new_nodes
        .iter()
        .map(|node| launch_new(ctx, node, &pools_r, &classes_r, &by_key));
    let results: Vec<Result<(), PassError>> = futures::stream::iter(launches)
        .buffer_unordered(ctx.settings.launch_concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

async fn launch_new<L: Launcher>(
    ctx: &Context<L>,
    node: &NewNode,
    pools: &[&NodePool],
    classes: &[&NodeClass],
    pods: &PodsByKey<'_>,
) -> Result<(), PassError> {
    let Some(pool) = pools
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(node.nodepool.as_str()))
    else {
        return Ok(());
    };
    let class_name = &pool.spec.template.spec.node_class_ref.name;
    let Some(class) = classes
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(class_name.as_str()))
    else {
        return Ok(());
    };
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    let claim = new_claim(&claim_name(&node.nodepool), pool, class, node);
    let created = api
        .create(&PostParams::default(), &claim)
        .await
        .map_err(|source| PassError::CreateClaim {
            pool: node.nodepool.clone(),
            source,
        })?;
    let why =
        format!(
        "{} pod(s) need {}m CPU, {} MiB; {} compatible instance type(s), cheapest {} at ${:.4}/h",
        node.pods.len(),
        node.requests.cpu_millis,
        node.requests.memory_bytes / (1024 * 1024),
        node.instance_types.len(),
        node.instance_types.first().map(String::as_str).unwrap_or("-"),
        node.price
    );
    let name = created.metadata.name.clone().unwrap_or_default();
    for pod_key in node.pods.iter().take(50) {
        pod_event(
            ctx,
            pods,
            pod_key,
            EventType::Normal,
            "Nominated",
            format!("for NodeClaim {name}: {why}"),
        )
        .await;
    }
    launch_claim(ctx, &created, class, Some(why)).await;
    Ok(())
}

/// Launches NodeClaims that have no instance yet (an earlier process
/// crashed, or a launch failed halfway). The launcher finds an instance an
/// earlier attempt made instead of launching twice.
async fn resume<L: Launcher>(ctx: &Context<L>) {
    let claims = ctx.stores.claims.state();
    let classes = ctx.stores.nodeclasses.state();
    for claim in claims.iter().filter(|c| needs_launch(c)) {
        let class_name = &claim.spec.node_class_ref.name;
        let Some(class) = classes
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(class_name.as_str()))
        else {
            continue;
        };
        tracing::info!(
            claim = claim.metadata.name.as_deref().unwrap_or_default(),
            "resuming launch"
        );
        launch_claim(ctx, claim, class, None).await;
    }
}

fn needs_launch(claim: &NodeClaim) -> bool {
    claim.metadata.deletion_timestamp.is_none()
        && claim
            .status
            .as_ref()
            .and_then(|s| s.provider_id.as_ref())
            .is_none()
}

pub(crate) async fn launch_claim<L: Launcher>(
    ctx: &Context<L>,
    claim: &NodeClaim,
    class: &NodeClass,
    why: Option<String>,
) {
    let name = claim.metadata.name.clone().unwrap_or_default();
    let pool = nodepool_of(claim);
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    match ctx.launcher.launch(claim, class).await {
        Ok(launched) => {
            ctx.metrics
                .nodeclaims_created
                .with_label_values(&[
                    &pool,
                    launched.capacity_type.as_str(),
                    &launched.instance_type,
                ])
                .inc();
            let status = launched_status(&launched);
            if let Err(err) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await
            {
                // The next pass resumes: the launcher finds this instance by its tags.
                tracing::warn!(claim = name, error = %err, "recording the launch failed; will resume");
                return;
            }
            let note = format!(
                "{} {} in {} (${:.4}/h){}",
                launched.instance_type,
                launched.capacity_type.as_str(),
                launched.zone,
                launched.price,
                why.map(|w| format!(": {w}")).unwrap_or_default()
            );
            publish(ctx, &claim_ref(claim), EventType::Normal, "Launched", note).await;
        }
        Err(failure) => {
            ctx.metrics
                .launch_failures
                .with_label_values(&[&failure.reason()])
                .inc();
            tracing::warn!(claim = name, error = %failure, "launch failed; deleting the NodeClaim so its pods are solved again");
            publish(
                ctx,
                &claim_ref(claim),
                EventType::Warning,
                "LaunchFailed",
                failure.to_string(),
            )
            .await;
            // Nothing was launched for it: drop the finalizer, then the claim.
            let release = json!({"metadata": {"finalizers": null}});
            let _ = api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&release))
                .await;
            let _ = api.delete(&name, &Default::default()).await;
        }
    }
}

fn launched_status(launched: &Launched) -> serde_json::Value {
    let now =
        k8s_openapi::jiff::Timestamp::from_second(k8s_openapi::jiff::Timestamp::now().as_second())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
            .to_string();
    json!({"status": {
        "providerID": launched.provider_id(),
        "instanceType": launched.instance_type,
        "zone": launched.zone,
        "capacityType": launched.capacity_type.as_str(),
        "imageID": launched.image_id,
        "conditions": [{
            "type": spotwright_api::conditions::LAUNCHED, "status": "True", "reason": "Launched",
            "message": format!("{} {} in {}", launched.instance_type, launched.capacity_type.as_str(), launched.zone),
            "lastTransitionTime": now,
        }]
    }})
}

/// $/h of the instances behind the NodeClaims, at their offering's price.
fn fleet_cost(
    claims: &[&NodeClaim],
    instance_types: &[spotwright_solver::model::InstanceType],
) -> f64 {
    claims
        .iter()
        .filter_map(|c| {
            let s = c.status.as_ref()?;
            let t = instance_types
                .iter()
                .find(|t| Some(&t.name) == s.instance_type.as_ref())?;
            let capacity = keys::CapacityType::parse(s.capacity_type.as_deref()?)?;
            t.offerings
                .iter()
                .find(|o| Some(&o.zone) == s.zone.as_ref() && o.capacity_type == capacity)
                .map(|o| o.price)
        })
        .sum()
}

fn claim_ref(claim: &NodeClaim) -> ObjectReference {
    claim.object_ref(&())
}

async fn pod_event<L>(
    ctx: &Context<L>,
    pods: &PodsByKey<'_>,
    key: &str,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let Some(pod) = pods.get(key) else {
        return;
    };
    publish(ctx, &pod.object_ref(&()), type_, reason, note).await;
}

pub(crate) async fn publish<L>(
    ctx: &Context<L>,
    reference: &ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note.chars().take(1000).collect()),
        action: "Provisioning".to_owned(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&event, reference).await {
        tracing::debug!(error = %err, reason, "event not recorded");
    }
}
