//! Provisioning. Watches (through the cluster state) Pods, Nodes,
//! NodeClaims, NodePools, NodeClasses, DaemonSets and Namespaces. Decides
//! with the solver (a pure function over [`crate::model::problem`]) where
//! the pending pods go. Does: one NodeClaim per new node, created before any
//! EC2 call and carrying everything the launch needs, then the launch
//! ([`crate::act::launcher::launch_claim`]); reports every pod the solve
//! could not place, and each NodePool's status. A pass after a crash
//! finishes any launch an earlier process began (`resume`).
//!
//! The batching loop that decides when a pass runs lives in
//! [`crate::run::turns`], which also gives disruption its turns.

pub mod nominations;
mod pool_status;

use nominations::{ClaimNow, Hold, Mismatch, Nominations, PodNow};

use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::ResourceExt;
use serde_json::json;
use spotwright_api::keys::CapacityType;
use spotwright_api::reservation;
use spotwright_api::{NodeClaim, NodePool};
use spotwright_solver::model::{InstanceType, Resources};
use spotwright_solver::{solve, Input, NewNode, Plan};

use crate::act::claims;
use crate::act::events::Notice;
use crate::act::launcher::{launch_claim, needs_launch, Launcher, Launching, Origin};
use crate::model::claim::{find_condition, node_name};
use crate::model::clock::SharedClock;
use crate::model::facts;
use crate::model::launch_group::LaunchGroup;
use crate::model::new_claim::{
    claim_name, min_values_relaxed, new_claim, reserve_for_pods, ReservedPod,
};
use crate::model::pod::CachedPod;
use crate::model::problem::{self, Problem};
use crate::model::queue_order::deal_in_queue_order;
use crate::model::reservations;
use crate::model::token_bucket::TokenBucket;
use crate::state::{ClusterState, Snapshot};
use crate::Error;

/// How provisioning behaves.
#[derive(Clone, Debug)]
pub struct ProvisioningSettings {
    /// The scheduler whose unschedulable pods are Spotwright's.
    pub scheduler_name: String,
    /// Launches in flight at once.
    pub launch_concurrency: usize,
}

/// What provisioning works with.
pub struct Provisioning<L> {
    pub act: Launching<L>,
    pub state: ClusterState,
    pub clock: SharedClock,
    pub settings: ProvisioningSettings,
    /// The pods each launch was for, across passes.
    pub nominations: Mutex<Nominations>,
    /// How many `Nominated` Events a burst publishes.
    pub nominated_events: Mutex<TokenBucket>,
}

/// `Nominated` Events published at once, then each second: a burst's
/// first launches tell their pods, later ones mostly do not (the pods'
/// NodeClaims still get their own Events).
pub const NOMINATED_EVENTS_BURST: u32 = 100;
pub const NOMINATED_EVENTS_PER_SECOND: f64 = 10.0;
/// A node's pods past this many never get one.
pub const NOMINATED_EVENTS_PER_NODE: usize = 50;

/// The bucket `Nominated` Events are taken from.
pub fn nominated_events_bucket() -> Mutex<TokenBucket> {
    Mutex::new(TokenBucket::new(
        NOMINATED_EVENTS_BURST,
        NOMINATED_EVENTS_PER_SECOND,
    ))
}

/// The pods a pass would solve for, by `namespace/name`: what the batching
/// loop compares to see new arrivals.
pub fn pending_keys(snapshot: &Snapshot, scheduler_name: &str) -> BTreeSet<String> {
    snapshot
        .pods
        .iter()
        .filter(|p| p.is_provisionable(scheduler_name, &snapshot.opted_in))
        .map(|p| p.key())
        .collect()
}

/// `nodeclaim:<name>` of every NodeClaim whose node is initialized (no
/// namespace has a colon, so these never meet a pod's key): news for the
/// batching loop besides new pending pods. A node that became ready may
/// have been filled by other pods than the ones it was launched for; those
/// are solved again at the next pass, which this brings a batch window
/// after the node, not a resync later.
pub fn ready_claim_keys(claims: &[Arc<NodeClaim>]) -> impl Iterator<Item = String> + '_ {
    claims.iter().filter_map(|claim| {
        find_condition(claim, spotwright_api::conditions::INITIALIZED)
            .filter(|c| c.status == "True")
            .and(claim.metadata.name.as_deref())
            .map(|name| format!("nodeclaim:{name}"))
    })
}

/// `crowded:<namespace/name>` of every pod the scheduler refused while the
/// node launched for it, initialized, has no room left for it by the
/// requests of the pods bound there: news for the batching loop, so the pod
/// is solved again a batch window after the binds that crowded it off. Its
/// verdict need not change: the scheduler tries a pod that fits on no node
/// again only after a node event, or minutes, and the pass that launched for
/// such pods waited for one (docs/benchmarks.md). `nominated`: pod and claim,
/// as [`Nominations::claims`] lists them.
pub fn crowded_keys<'a>(
    snapshot: &Snapshot,
    nominated: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<String> {
    // A burst nominates thousands of pods and this runs at every look: only
    // those whose claim is initialized are looked up, with no allocation.
    let ready_node_of: HashMap<(&str, &str), &str> = nominated
        .into_iter()
        .filter_map(|(pod, claim)| match claim_now(snapshot, claim, None) {
            ClaimNow::Ready { node, .. } => Some((pod.split_once('/')?, node)),
            _ => None,
        })
        .collect();
    if ready_node_of.is_empty() {
        return Vec::new();
    }
    snapshot
        .pods
        .iter()
        .filter(|p| p.node_name.is_none() && p.unschedulable.is_some())
        .filter_map(|p| {
            let node = ready_node_of.get(&(p.namespace(), p.name.as_str()))?;
            (!has_room(snapshot, node, p)).then(|| format!("crowded:{}", p.key()))
        })
        .collect()
}

/// The scheduler's verdict on each pending pod it marked unschedulable, by
/// `namespace/name`: a hash of its message.
pub type Verdicts = HashMap<String, u64>;

/// The verdicts on the pods a pass would solve for.
pub fn verdicts(
    pods: &[Arc<CachedPod>],
    scheduler_name: &str,
    opted_in: &BTreeSet<String>,
) -> Verdicts {
    pods.iter()
        .filter(|p| p.is_provisionable(scheduler_name, opted_in))
        .filter_map(|p| Some((p.key(), nominations::hash_of(p.unschedulable.as_deref()?))))
        .collect()
}

/// `verdict:<namespace/name>:<hash>` of every pod whose verdict changed
/// since `before`: the scheduler tried it again and found otherwise (nodes
/// came, other pods filled them). News for the batching loop: a pod crowded
/// off the node launched for it is solved a batch window after the
/// scheduler says so, not at the resync. A pod's first verdict is no news
/// (the pod itself was, and under a burst the scheduler marks pods for
/// seconds after they were created), nor is the same verdict again.
pub fn changed_verdicts<'a>(
    before: &'a Verdicts,
    now: &'a Verdicts,
) -> impl Iterator<Item = String> + 'a {
    now.iter().filter_map(move |(pod, verdict)| {
        let earlier = before.get(pod)?;
        (earlier != verdict).then(|| format!("verdict:{pod}:{verdict:x}"))
    })
}

/// Pods by `namespace/name`, for the Events of a pass: one lookup per
/// event, not a scan of every pod.
type PodsByKey<'a> = HashMap<String, &'a CachedPod>;

/// One pass: finish launches an earlier process began, report the pools,
/// solve, launch.
pub async fn pass<L: Launcher>(ctx: &Provisioning<L>) -> Result<(), Error> {
    resume(ctx).await;
    let snapshot = ctx.state.snapshot();
    let instance_types = ctx.act.launcher.instance_types();
    let mut problem = snapshot.problem(&ctx.settings.scheduler_name, &instance_types);
    let by_key: PodsByKey = snapshot
        .pods
        .iter()
        .map(|p| (p.key(), p.as_ref()))
        .collect();
    let held = judge_nominations(ctx, &snapshot, &by_key, &problem).await;
    problem.pods.retain(|p| !held.pods.contains(&p.key));
    let awaiting: Vec<(&CachedPod, &NodeClaim)> = held
        .awaiting
        .iter()
        .filter_map(|(pod, claim)| Some((*by_key.get(pod)?, snapshot.claim(claim)?.as_ref())))
        .collect();
    problem::reserve_awaited(&mut problem, &awaiting);
    ctx.act
        .metrics
        .fleet_cost
        .set(fleet_cost(&snapshot.claims, &instance_types));
    for (capacity, count) in claims_by_capacity(&snapshot.claims) {
        ctx.act
            .metrics
            .nodeclaims
            .with_label_values(&[capacity])
            .set(count);
    }
    for (object, err) in &problem.unreadable {
        tracing::warn!(object, error = %err, "left out of the solve");
    }
    write_pool_statuses(ctx, &snapshot, &problem).await;
    if problem.pods.is_empty() {
        return Ok(());
    }
    let mut plan = solve_timed(ctx, &problem, &instance_types);
    deal_in_queue_order(&mut plan.new_nodes, &problem.pods, |key| {
        by_key.get(key).and_then(|pod| pod.created)
    });
    report_unschedulable(ctx, &problem, &plan, &by_key).await;
    hold_room_for_pods_solved_onto_claims(ctx, &snapshot, &plan, &by_key).await;
    let group = LaunchGroup::new(plan.new_nodes.len(), group_nonce(ctx.clock.now()));
    let launches = plan
        .new_nodes
        .iter()
        .map(|node| launch_new(ctx, &snapshot, node, &by_key, &group));
    let results: Vec<Result<(), Error>> = futures::stream::iter(launches)
        .buffer_unordered(ctx.settings.launch_concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// A launch group's id: the pass's time, hashed with a per-process key so
/// that two provisioners (or two passes in one nanosecond) do not collide.
fn group_nonce(now: Timestamp) -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(now.as_nanosecond())
}

fn solve_timed<L>(
    ctx: &Provisioning<L>,
    problem: &Problem,
    instance_types: &[InstanceType],
) -> Plan {
    let started = Instant::now();
    let plan = solve(&Input {
        pods: &problem.pods,
        nodes: &problem.nodes,
        nodepools: &problem.nodepools,
        daemonsets: &problem.daemonsets,
        instance_types,
    });
    let took = started.elapsed().as_secs_f64();
    ctx.act.metrics.solve_duration.observe(took);
    tracing::info!(
        pending = problem.pods.len(),
        to_existing = plan.to_existing.len(),
        new_nodes = plan.new_nodes.len(),
        unschedulable = plan.unschedulable.len(),
        solve_ms = took * 1000.0,
        "solved"
    );
    plan
}

/// Each NodePool's status, written when it changed.
async fn write_pool_statuses<L>(ctx: &Provisioning<L>, snapshot: &Snapshot, problem: &Problem) {
    let api: Api<NodePool> = Api::all(ctx.act.client.clone());
    let now = ctx.clock.now();
    for pool in &snapshot.nodepools {
        let name = pool.metadata.name.as_deref().unwrap_or_default();
        let usage = problem.usage.get(name).cloned().unwrap_or_default();
        let not_ready = problem
            .skipped_pools
            .iter()
            .find(|(p, _)| p == name)
            .map(|(_, why)| why.as_str());
        if let Some(status) = pool_status::desired(pool, &usage, not_ready, now) {
            pool_status::write(&api, pool, &status).await;
        }
    }
}

/// An Event and the metric for every pod the solve could not place.
async fn report_unschedulable<L>(
    ctx: &Provisioning<L>,
    problem: &Problem,
    plan: &Plan,
    pods: &PodsByKey<'_>,
) {
    let skipped = problem
        .skipped_pools
        .iter()
        .map(|(pool, why)| format!("NodePool {pool} skipped: {why}"))
        .collect::<Vec<_>>()
        .join("; ");
    for (pod_key, reason) in &plan.unschedulable {
        ctx.act
            .metrics
            .unschedulable_pods
            .with_label_values(&["no_fit"])
            .inc();
        let note = if skipped.is_empty() {
            reason.clone()
        } else {
            format!("{reason}; {skipped}")
        };
        if let Some(pod) = pods.get(pod_key) {
            let notice = Notice::warning("NoNodeFits", "Provision", note);
            ctx.act.events.publish(&pod.reference(), notice).await;
        }
    }
}

/// Adds the pods this pass solved onto claims already launched to the room
/// those claims hold ([`reservations::grown`]). Each claim is one patch,
/// guarded by its resourceVersion: a claim changed meanwhile is left as it
/// is, and its pods, if still pending, are solved again at the next pass.
async fn hold_room_for_pods_solved_onto_claims<L>(
    ctx: &Provisioning<L>,
    snapshot: &Snapshot,
    plan: &Plan,
    pods: &PodsByKey<'_>,
) {
    let grown = reservations::grown(&plan.to_existing, &snapshot.claims, |key| {
        reserved_pod(pods.get(key)?)
    });
    for reservations::Grown { claim, reservation } in grown {
        let annotations = json!({ reservation::ANNOTATION: reservation.to_annotation() });
        let patch = json!({ "annotations": annotations });
        match claims::patch_metadata(&ctx.act.client, claim, patch, true).await {
            Ok(_) => {}
            Err(err) if err.is_conflict() || err.is_not_found() => {
                tracing::debug!(claim = claim.name_any(), error = %err, "claim changed; its room is left as it was");
            }
            Err(err) => {
                tracing::warn!(claim = claim.name_any(), error = %err, "room not held for the pods solved onto it");
            }
        }
    }
}

fn reserved_pod(pod: &CachedPod) -> Option<ReservedPod<'_>> {
    Some(ReservedPod {
        uid: pod.uid.as_deref()?,
        requests: pod.shape.requests.as_ref().ok()?,
        controller: pod.shape.controller.as_deref(),
    })
}

/// Creates the claim of one new node, tells its pods, and launches it.
async fn launch_new<L: Launcher>(
    ctx: &Provisioning<L>,
    snapshot: &Snapshot,
    node: &NewNode,
    pods: &PodsByKey<'_>,
    group: &LaunchGroup,
) -> Result<(), Error> {
    let Some(pool) = snapshot.pool(&node.nodepool) else {
        return Ok(());
    };
    let Some(class) = snapshot.class_of(pool) else {
        return Ok(());
    };
    let mut claim = new_claim(&claim_name(&node.nodepool), pool, class, node);
    reserve_for_pods(&mut claim, node, |key| reserved_pod(pods.get(key)?));
    group.annotate(&mut claim);
    let created = claims::create(&ctx.act.client, &claim).await?;
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
    if let Some(relaxed) = min_values_relaxed(node) {
        let note = format!(
            "minValuesPolicy BestEffort: capacity is short, so this launch keeps fewer values than minValues asks (key=kept/wanted): {relaxed}"
        );
        let notice = Notice::warning("MinValuesRelaxed", "Provision", note);
        ctx.act.events.about(&created, notice).await;
    }
    if let Ok(mut nominations) = ctx.nominations.lock() {
        let now = ctx.clock.now();
        for pod in &node.pods {
            nominations.nominated(pod, &name, now);
        }
    }
    let told = nominated_events_to_publish(ctx, node.pods.len());
    let first_pods = node.pods.iter().take(NOMINATED_EVENTS_PER_NODE);
    for (i, pod) in first_pods.filter_map(|key| pods.get(key)).enumerate() {
        if i < told {
            let note = format!("for NodeClaim {name}: {why}");
            let notice = Notice::normal("Nominated", "Provision", note);
            ctx.act.events.publish(&pod.reference(), notice).await;
        }
        let unmodelled = pod.shape.placement.as_ref().map(|p| &p.unmodelled);
        if let Some(unmodelled) = unmodelled.ok().filter(|u| !u.is_empty()) {
            let note = format!(
                "NodeClaim {name} was chosen without modelling {}; if the scheduler does not place the pod there, no node is launched again for the same reason",
                unmodelled.join(", ")
            );
            let notice = Notice::warning("UnmodelledConstraints", "Provision", note);
            ctx.act.events.publish(&pod.reference(), notice).await;
        }
    }
    launch_claim(&ctx.act, &created, class, Origin::New(why), ctx.clock.now()).await;
    Ok(())
}

/// How many of a new node's pods get a `Nominated` Event (see
/// [`sample_nominated`]); counts the rest as sampled out.
fn nominated_events_to_publish<L>(ctx: &Provisioning<L>, pods: usize) -> usize {
    let now = ctx.clock.now();
    let sampled = ctx.nominated_events.lock().map_or(
        NominatedSample {
            told: 0,
            sampled_out: pods.min(NOMINATED_EVENTS_PER_NODE),
        },
        |mut bucket| sample_nominated(&mut bucket, pods, now),
    );
    ctx.act
        .metrics
        .events_sampled_out
        .with_label_values(&["Nominated"])
        .inc_by(u64::try_from(sampled.sampled_out).unwrap_or(0));
    sampled.told
}

/// Of a new node's pods, how many are told (get a `Nominated` Event) and
/// how many are counted as sampled out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NominatedSample {
    pub told: usize,
    pub sampled_out: usize,
}

/// A new node's first `NOMINATED_EVENTS_PER_NODE` pods get a `Nominated`
/// Event as far as `bucket` has tokens at `now`; those the bucket refuses
/// are sampled out. Pods past the per-node cap are neither.
pub fn sample_nominated(bucket: &mut TokenBucket, pods: usize, now: Timestamp) -> NominatedSample {
    let wanted = pods.min(NOMINATED_EVENTS_PER_NODE);
    let told = bucket.take_up_to(wanted, now);
    NominatedSample {
        told,
        sampled_out: wanted - told,
    }
}

/// The pending pods a pass must not launch for.
#[derive(Debug, Default)]
struct Held {
    pods: BTreeSet<String>,
    /// Of those, the ones waiting for the node launched for them: pod and claim.
    awaiting: Vec<(String, String)>,
}

/// Judges every nominated pod against the snapshot, reports each new
/// mismatch (an Event on the pod and the metric), and returns the pending
/// pods this pass must not launch for.
async fn judge_nominations<L>(
    ctx: &Provisioning<L>,
    snapshot: &Snapshot,
    pods: &PodsByKey<'_>,
    problem: &Problem,
) -> Held {
    let now = ctx.clock.now();
    let (found, held) = {
        let Ok(mut nominations) = ctx.nominations.lock() else {
            return Held::default();
        };
        let mut found = Vec::new();
        for (pod_key, claim_name) in nominations.nominated_pods() {
            let pod_now = match pods.get(&pod_key) {
                None => PodNow::Gone,
                Some(pod) => match (&pod.node_name, &pod.unschedulable) {
                    (Some(node), _) => PodNow::Bound { node },
                    (None, Some(message)) => PodNow::Pending { message },
                    // Not tried by the scheduler yet: nothing to judge.
                    (None, None) => continue,
                },
            };
            let claim_now = claim_now(snapshot, &claim_name, pods.get(&pod_key).copied());
            found.extend(nominations.judge(&pod_key, pod_now, claim_now, now));
        }
        let mut held = Held::default();
        for pending in &problem.pods {
            let message = pods
                .get(&pending.key)
                .and_then(|p| p.unschedulable.as_deref())
                .unwrap_or_default();
            let claim = nominations
                .claim_of(&pending.key)
                .map_or(ClaimNow::Gone, |name| {
                    claim_now(snapshot, name, pods.get(&pending.key).copied())
                });
            if let Some(hold) = nominations.hold(&pending.key, message, claim, now) {
                tracing::debug!(pod = pending.key, ?hold, "left out of this pass");
                if let Hold::Awaiting { claim } = hold {
                    held.awaiting.push((pending.key.clone(), claim));
                }
                held.pods.insert(pending.key.clone());
            } else {
                // Its claim as judged says why it is solved (Gone if it has none).
                tracing::debug!(pod = pending.key, ?claim, "solved in this pass");
            }
        }
        (found, held)
    };
    for mismatch in found {
        report_mismatch(ctx, pods, mismatch).await;
    }
    held
}

/// What became of a claim, as [`Nominations::judge`] needs it for `pod`.
fn claim_now<'a>(snapshot: &'a Snapshot, name: &str, pod: Option<&CachedPod>) -> ClaimNow<'a> {
    let Some(claim) = snapshot.claim(name) else {
        return ClaimNow::Gone;
    };
    let initialized = find_condition(claim, spotwright_api::conditions::INITIALIZED)
        .filter(|c| c.status == "True");
    match (initialized, node_name(claim)) {
        (Some(c), Some(node)) => ClaimNow::Ready {
            node,
            since: c.last_transition_time.0,
            room: pod.is_none_or(|p| has_room(snapshot, node, p)),
        },
        (_, node) => ClaimNow::Launching { node },
    }
}

/// Whether `pod` fits on Node `node` beside the pods bound there.
fn has_room(snapshot: &Snapshot, node: &str, pod: &CachedPod) -> bool {
    let Some(allocatable) = snapshot
        .node(node)
        .and_then(|n| n.status.as_ref()?.allocatable.as_ref())
    else {
        return false;
    };
    let allocatable = facts::resources(Some(allocatable));
    let mut used = Resources::default();
    for bound in snapshot.pods_on(node).iter().filter(|p| !p.terminal) {
        if let Ok(r) = &bound.shape.requests {
            facts::add_resources(&mut used, r);
        }
    }
    if let Ok(r) = &pod.shape.requests {
        facts::add_resources(&mut used, r);
    }
    used.cpu_millis <= allocatable.cpu_millis
        && used.memory_bytes <= allocatable.memory_bytes
        && used.pods <= allocatable.pods
}

async fn report_mismatch<L>(ctx: &Provisioning<L>, pods: &PodsByKey<'_>, m: Mismatch) {
    ctx.act
        .metrics
        .nomination_mismatches
        .with_label_values(&[m.reason])
        .inc();
    if m.reason == "bound_elsewhere" {
        // Not a disagreement: the pod runs. In a burst the scheduler fills
        // new nodes in its own order, so thousands of pods land on another
        // pod's node; a Warning Event for each would be noise and load.
        tracing::debug!(
            pod = m.pod,
            claim = m.claim,
            "bound elsewhere: {}",
            m.detail
        );
        return;
    }
    let note = match m.reason {
        reason if nominations::moves_with_other_pods(reason) => format!(
            "the scheduler did not place this pod on the node of NodeClaim {}, launched for it ({reason}): {}; it is solved again after a backoff, as other pods landing change this verdict",
            m.claim, m.detail
        ),
        reason => format!(
            "the scheduler did not place this pod on the node of NodeClaim {}, launched for it ({reason}): {}; no new node is launched for it while that is the reason",
            m.claim, m.detail
        ),
    };
    tracing::warn!(
        pod = m.pod,
        claim = m.claim,
        reason = m.reason,
        "nomination mismatch: {note}"
    );
    if let Some(pod) = pods.get(&m.pod) {
        let notice = Notice::warning("NominationMismatch", "Provision", note);
        ctx.act.events.publish(&pod.reference(), notice).await;
    }
}

/// Launches NodeClaims that have no instance yet (an earlier process
/// crashed, or a launch failed halfway). The launcher finds an instance an
/// earlier attempt made instead of launching twice.
async fn resume<L: Launcher>(ctx: &Provisioning<L>) {
    let snapshot = ctx.state.snapshot();
    for claim in snapshot.claims.iter().filter(|c| needs_launch(c)) {
        let Some(class) = snapshot.class(&claim.spec.node_class_ref.name) else {
            continue;
        };
        tracing::info!(
            claim = claim.metadata.name.as_deref().unwrap_or_default(),
            "resuming launch"
        );
        launch_claim(&ctx.act, claim, class, Origin::Found(None), ctx.clock.now()).await;
    }
}

/// $/h of the instances behind the NodeClaims, at their offering's price.
fn fleet_cost(claims: &[Arc<NodeClaim>], instance_types: &[InstanceType]) -> f64 {
    claims
        .iter()
        .filter_map(|c| crate::model::claim::offering_price(c, instance_types))
        .sum()
}

/// The claims by capacity type, for `spotwright_provisioner_nodeclaims`:
/// every one of [`crate::metrics::NODECLAIM_CAPACITY_TYPES`], `launching`
/// for a claim whose launch has not recorded its capacity type yet.
fn claims_by_capacity(claims: &[Arc<NodeClaim>]) -> [(&'static str, i64); 3] {
    let (mut spot, mut on_demand, mut launching) = (0, 0, 0);
    for claim in claims {
        match crate::model::node::claim_capacity(claim) {
            Some(CapacityType::Spot) => spot += 1,
            Some(CapacityType::OnDemand) => on_demand += 1,
            None => launching += 1,
        }
    }
    let [s, o, l] = crate::metrics::NODECLAIM_CAPACITY_TYPES;
    [(s, spot), (o, on_demand), (l, launching)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_are_counted_by_the_capacity_type_their_launch_recorded() {
        let claim = |capacity: Option<&str>| {
            let mut claim = NodeClaim::new("c", Default::default());
            claim.status = capacity.map(|c| spotwright_api::v1alpha1::NodeClaimStatus {
                capacity_type: Some(c.to_owned()),
                ..Default::default()
            });
            Arc::new(claim)
        };
        let claims = [
            claim(Some("spot")),
            claim(Some("spot")),
            claim(Some("on-demand")),
            claim(None),
        ];
        assert_eq!(
            claims_by_capacity(&claims),
            [("spot", 2), ("on-demand", 1), ("launching", 1)]
        );
        assert_eq!(
            claims_by_capacity(&[]),
            [("spot", 0), ("on-demand", 0), ("launching", 0)],
            "every series is set, so a fleet that went to zero reads 0"
        );
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_780_000_000 + seconds).expect("a time")
    }

    /// (told, sampled out) for a new node of `pods` pods, `seconds` in.
    fn sample(bucket: &mut TokenBucket, pods: usize, seconds: i64) -> (usize, usize) {
        let s = sample_nominated(bucket, pods, at(seconds));
        (s.told, s.sampled_out)
    }

    #[test]
    fn a_burst_tells_its_first_nodes_pods_then_samples_at_the_rate() {
        let mut bucket = nominated_events_bucket().into_inner().expect("a bucket");
        // Two 60-pod nodes at once: the cap of 50 each, the burst of 100 in all.
        assert_eq!(sample(&mut bucket, 60, 0), (50, 0));
        assert_eq!(sample(&mut bucket, 60, 0), (50, 0));
        assert_eq!(sample(&mut bucket, 30, 0), (0, 30));
        // Two seconds later the bucket holds what the rate put back.
        let refilled = (2.0 * NOMINATED_EVENTS_PER_SECOND) as usize;
        assert_eq!(sample(&mut bucket, 40, 2), (refilled, 40 - refilled));
    }

    #[test]
    fn a_small_node_is_told_whole_and_nothing_is_sampled_out() {
        let mut bucket = nominated_events_bucket().into_inner().expect("a bucket");
        assert_eq!(sample(&mut bucket, 3, 0), (3, 0));
        assert_eq!(sample(&mut bucket, 0, 0), (0, 0));
    }

    fn claim(name: &str, initialized: Option<&str>) -> Arc<NodeClaim> {
        let conditions: Vec<_> = initialized
            .map(|status| {
                json!({"type": spotwright_api::conditions::INITIALIZED, "status": status,
                    "reason": "Initialized", "message": "",
                    "lastTransitionTime": "2026-12-04T00:00:00Z"})
            })
            .into_iter()
            .collect();
        let claim = json!({"apiVersion": "spotwright.io/v1alpha1", "kind": "NodeClaim",
            "metadata": {"name": name}, "spec": {"nodeClassRef": {"name": "default"}},
            "status": {"conditions": conditions}});
        Arc::new(serde_json::from_value(claim).expect("a NodeClaim"))
    }

    fn pod(name: &str, scheduler: &str, message: Option<&str>) -> Arc<CachedPod> {
        pod_on(name, scheduler, "0", message, None)
    }

    /// A pod of `scheduler` asking for `cpu`, refused by it with `message`
    /// if any, bound to `node` if any.
    fn pod_on(
        name: &str,
        scheduler: &str,
        cpu: &str,
        message: Option<&str>,
        node: Option<&str>,
    ) -> Arc<CachedPod> {
        let conditions: Vec<_> = message
            .map(|m| {
                json!({"type": "PodScheduled", "status": "False",
                    "reason": "Unschedulable", "message": m})
            })
            .into_iter()
            .collect();
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"schedulerName": scheduler, "nodeName": node,
                "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
            "status": {"conditions": conditions}}))
        .expect("a Pod");
        Arc::new(CachedPod::from(&pod))
    }

    #[test]
    fn only_a_changed_scheduler_verdict_is_news() {
        let ours = "spotwright-scheduler";
        let opted = BTreeSet::new();
        let three = "0/3 nodes are available: 3 Insufficient cpu.";
        let four = "0/4 nodes are available: 4 Insufficient cpu.";
        let untried = verdicts(&[pod("p", ours, None)], ours, &opted);
        let first = verdicts(
            &[
                pod("p", ours, Some(three)),
                pod("theirs", "default-scheduler", Some(three)),
            ],
            ours,
            &opted,
        );
        assert_eq!(
            first.keys().collect::<Vec<_>>(),
            ["ns/p"],
            "only pods a pass would solve"
        );
        let news = |before: &Verdicts, now: &Verdicts| -> Vec<String> {
            changed_verdicts(before, now).collect()
        };
        assert!(
            news(&untried, &first).is_empty(),
            "a first verdict is no news"
        );
        assert!(news(&first, &first).is_empty(), "nor the same one again");
        let second = verdicts(&[pod("p", ours, Some(four))], ours, &opted);
        let changed = news(&first, &second);
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert!(changed[0].starts_with("verdict:ns/p:"), "{changed:?}");
    }

    fn sized_pod(
        name: &str,
        cpu: &str,
        message: Option<&str>,
        node: Option<&str>,
    ) -> Arc<CachedPod> {
        pod_on(name, "spotwright-scheduler", cpu, message, node)
    }

    /// NodeClaim `name`, initialized if `ready`, whose node is `node` (2 CPUs).
    fn claim_on(
        name: &str,
        node: &str,
        ready: bool,
    ) -> (Arc<NodeClaim>, Arc<k8s_openapi::api::core::v1::Node>) {
        let status = if ready { "True" } else { "False" };
        let claim = json!({"apiVersion": "spotwright.io/v1alpha1", "kind": "NodeClaim",
            "metadata": {"name": name}, "spec": {"nodeClassRef": {"name": "default"}},
            "status": {"nodeName": node, "conditions": [{"type": spotwright_api::conditions::INITIALIZED,
                "status": status, "reason": "Initialized", "message": "",
                "lastTransitionTime": "2026-12-04T00:00:00Z"}]}});
        let node = json!({"metadata": {"name": node},
            "status": {"allocatable": {"cpu": "2", "memory": "8Gi", "pods": "110"}}});
        (
            Arc::new(serde_json::from_value(claim).expect("a NodeClaim")),
            Arc::new(serde_json::from_value(node).expect("a Node")),
        )
    }

    #[test]
    fn a_refused_pod_whose_ready_node_others_filled_is_news() {
        let refused = Some("0/3 nodes are available: 3 Insufficient cpu.");
        let (full, full_node) = claim_on("full", "n1", true);
        let (roomy, roomy_node) = claim_on("roomy", "n2", true);
        let (booting, booting_node) = claim_on("booting", "n3", false);
        let snapshot = Snapshot::build(crate::state::Lists {
            pods: vec![
                sized_pod("other", "1500m", None, Some("n1")),
                sized_pod("light", "500m", None, Some("n2")),
                sized_pod("crowded", "1", refused, None),
                sized_pod("untried", "1", None, None),
                sized_pod("fits", "1", refused, None),
                sized_pod("waits", "1", refused, None),
                sized_pod("bound", "1", None, Some("n1")),
            ],
            nodes: vec![full_node, roomy_node, booting_node],
            claims: vec![full, roomy, booting],
            ..Default::default()
        });
        let nominated = [
            ("ns/crowded", "full"),
            ("ns/untried", "full"),
            ("ns/fits", "roomy"),
            ("ns/waits", "booting"),
            ("ns/bound", "full"),
            ("ns/gone", "full"),
        ];
        assert_eq!(
            crowded_keys(&snapshot, nominated),
            ["crowded:ns/crowded"],
            "only a refused, unbound pod whose initialized node has no room left"
        );
        assert!(crowded_keys(&snapshot, []).is_empty());
    }

    #[test]
    fn only_initialized_claims_are_news_and_never_look_like_a_pod() {
        let claims = [
            claim("launching", None),
            claim("registered", Some("False")),
            claim("ready", Some("True")),
        ];
        let keys: Vec<String> = ready_claim_keys(&claims).collect();
        assert_eq!(keys, ["nodeclaim:ready"]);
    }
}
