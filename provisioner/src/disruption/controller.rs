//! Carries out [`super::decide`]: one sweep looks at every claim, moves each
//! begun replacement one step on, and begins at most one new replacement per
//! NodePool. It runs in the provisioning loop, between passes, so a
//! replacement is never launched twice at once.
//!
//! The steps of one replacement:
//! 1. simulate with the solver ([`super::simulate`]);
//! 2. record the plan on the old claim ([`keys::DISRUPTION_ANNOTATION`]);
//! 3. create the replacement claims, mark the old one `Disrupting` and
//!    taint its node `spotwright.io/disrupted:NoSchedule`;
//! 4. launch the replacements and wait until they are initialized; on a
//!    failed launch or after the timeout, delete them, untaint, and retry
//!    after a while;
//! 5. delete the old claim: the termination finalizer drains through the
//!    Eviction API (PodDisruptionBudgets respected) and terminates.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use spotwright_api::{conditions, keys, NodeClaim, NodeClass, NodePool};
use spotwright_solver::model::InstanceType;

use super::budgets;
use super::decide::{self, Cause, DisruptionTiming, Progress, Replacement, ROLLED_BACK};
use super::simulate::{simulate, Leaving, Simulation};
use crate::controllers::registration::{elapsed, find_condition, ConditionUpdate};
use crate::controllers::removal::{do_not_disrupt, is_workload_pod};
use crate::controllers::termination::{disrupted_taint, write_condition};
use crate::facts;
use crate::provisioning::claim::{claim_name, new_claim, nodepool_of};
use crate::provisioning::pass::{launch_claim, publish, Context};
use crate::provisioning::snapshot::Problem;
use crate::provisioning::stores::Snapshot;
use crate::provisioning::Launcher;

/// What a sweep remembers between sweeps: the last block announced per
/// claim (its result and cause), so each is announced (Event, metric) once
/// rather than every sweep.
#[derive(Default)]
pub struct Memory {
    announced: HashMap<String, (Cause, String)>,
}

/// The objects of one sweep, indexed.
struct View {
    objects: Snapshot,
    claims: HashMap<String, Arc<NodeClaim>>,
    nodes: HashMap<String, Arc<Node>>,
    pods_by_node: HashMap<String, Vec<Arc<Pod>>>,
}

impl View {
    fn new(objects: Snapshot) -> View {
        let by_name = |c: &Arc<NodeClaim>| (c.name_any(), c.clone());
        let claims = objects.claims.iter().map(by_name).collect();
        let nodes = objects
            .nodes
            .iter()
            .map(|n| (n.name_any(), n.clone()))
            .collect();
        let mut pods_by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
        for pod in &objects.pods {
            if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
                pods_by_node.entry(node).or_default().push(pod.clone());
            }
        }
        View {
            objects,
            claims,
            nodes,
            pods_by_node,
        }
    }

    fn claim(&self, name: &str) -> Option<&NodeClaim> {
        self.claims.get(name).map(AsRef::as_ref)
    }

    fn node_of(&self, claim: &NodeClaim) -> Option<&Node> {
        let name = claim.status.as_ref()?.node_name.as_deref()?;
        self.nodes.get(name).map(AsRef::as_ref)
    }

    fn pods_on(&self, node: &str) -> Vec<&Pod> {
        self.pods_by_node
            .get(node)
            .map(|pods| pods.iter().map(AsRef::as_ref).collect())
            .unwrap_or_default()
    }

    fn pool(&self, name: &str) -> Option<&NodePool> {
        self.objects
            .nodepools
            .iter()
            .find(|p| p.name_any() == name)
            .map(AsRef::as_ref)
    }

    fn class_of(&self, pool: &NodePool) -> Option<&NodeClass> {
        let name = &pool.spec.template.spec.node_class_ref.name;
        self.objects
            .nodeclasses
            .iter()
            .find(|c| &c.name_any() == name)
            .map(AsRef::as_ref)
    }
}

/// One sweep.
pub async fn sweep<L: Launcher>(ctx: &Context<L>, timing: DisruptionTiming, memory: &mut Memory) {
    let view = View::new(ctx.stores.snapshot());
    let now = Timestamp::now();
    let live: HashSet<String> = view.claims.keys().cloned().collect();
    memory.announced.retain(|name, _| live.contains(name));
    for claim in view
        .objects
        .claims
        .iter()
        .filter(|c| c.meta().deletion_timestamp.is_none())
    {
        if let Some(state) = decide::replacement_of(claim) {
            advance(ctx, &view, claim, state, now, timing).await;
        }
    }
    let mut candidates: Vec<(&NodeClaim, Cause, String)> = view
        .objects
        .claims
        .iter()
        .filter(|c| !decide::backing_off(c, now, timing.retry_after))
        .filter(|c| !decide::is_promised(c, &live))
        .filter_map(|c| decide::cause(c, now).map(|(cause, why)| (c.as_ref(), cause, why)))
        .collect();
    decide::order(&mut candidates);
    let mut counts = decide::pool_counts(view.objects.claims.iter().map(AsRef::as_ref));
    let mut begun_in: HashSet<String> = HashSet::new();
    let going: HashSet<String> = going_away(&view, &candidates);
    // Built at the first simulation and reused: every candidate of a sweep
    // is simulated against the same cluster.
    let mut cluster: Option<(Problem, Vec<InstanceType>)> = None;
    for (claim, cause, why) in candidates {
        let pool_name = nodepool_of(claim);
        if begun_in.contains(&pool_name) {
            continue;
        }
        let Some(pool) = view.pool(&pool_name) else {
            continue;
        };
        let Some(node) = view.node_of(claim) else {
            continue;
        };
        let pods = view.pods_on(&node.name_any());
        if let Some(reason) = do_not_disrupt(node, &pods) {
            let note = format!("{why}, but not replaced: {reason}");
            announce(
                ctx,
                memory,
                claim,
                Some(node),
                cause,
                "do_not_disrupt",
                note,
            )
            .await;
            continue;
        }
        let count = counts.get(&pool_name).copied().unwrap_or_default();
        if let Some(reason) = cause.budget_reason() {
            let allowed = budgets::allowed(
                &pool.spec.disruption.budgets,
                reason,
                count.nodes,
                count.disrupting,
                now,
            );
            if allowed == 0 {
                let problems = budgets::problems(&pool.spec.disruption.budgets);
                let note = if problems.is_empty() {
                    format!(
                        "{why}, but the NodePool's {reason:?} budget is used up ({} of {} nodes disrupted)",
                        count.disrupting, count.nodes
                    )
                } else {
                    format!("{why}, but the NodePool's budgets are invalid (nothing is disrupted until fixed): {}", problems.join("; "))
                };
                announce(ctx, memory, claim, None, cause, "budget", note).await;
                continue;
            }
        }
        let (problem, instance_types) = cluster.get_or_insert_with(|| {
            let instance_types = ctx.launcher.instance_types();
            let problem = view
                .objects
                .problem(&ctx.settings.scheduler_name, &instance_types);
            (problem, instance_types)
        });
        let plan = Planned {
            cause,
            why: &why,
            going: &going,
            problem: problem.clone(),
            instance_types,
        };
        match begin(ctx, &view, claim, node, &pods, plan, now).await {
            Ok(true) => {
                begun_in.insert(pool_name.clone());
                counts.entry(pool_name).or_default().disrupting += 1;
                memory.announced.remove(&claim.name_any());
            }
            Ok(false) => {}
            Err(blocked) => {
                let note = format!("{why}, but not replaced: {blocked}");
                announce(ctx, memory, claim, Some(node), cause, "unschedulable", note).await;
            }
        }
    }
}

/// Nodes (and in-flight claims, by claim name) that a simulation must not
/// place pods on: those being replaced or deleted, the other candidates,
/// and replacements whose room is promised to their old node's pods.
fn going_away(view: &View, candidates: &[(&NodeClaim, Cause, String)]) -> HashSet<String> {
    let existing: HashSet<String> = view.claims.keys().cloned().collect();
    let candidate_names: HashSet<String> =
        candidates.iter().map(|(c, _, _)| c.name_any()).collect();
    let mut names = HashSet::new();
    for claim in &view.objects.claims {
        let promised = decide::is_promised(claim, &existing);
        if decide::is_disrupting(claim) || promised || candidate_names.contains(&claim.name_any()) {
            names.insert(claim.name_any());
            if let Some(node) = claim.status.as_ref().and_then(|s| s.node_name.clone()) {
                names.insert(node);
            }
        }
    }
    names
}

/// What [`begin`] simulates with and why.
struct Planned<'a> {
    cause: Cause,
    why: &'a str,
    going: &'a HashSet<String>,
    problem: Problem,
    instance_types: &'a [InstanceType],
}

/// Simulates and, when the pods fit, records the plan and begins it.
/// `Ok(false)`: nothing begun, to be tried next sweep (a write conflicted).
async fn begin<L: Launcher>(
    ctx: &Context<L>,
    view: &View,
    claim: &NodeClaim,
    node: &Node,
    pods: &[&Pod],
    plan: Planned<'_>,
    now: Timestamp,
) -> Result<bool, String> {
    let Planned {
        cause,
        why,
        going,
        problem,
        instance_types,
    } = plan;
    let node_name = node.name_any();
    let pool_name = nodepool_of(claim);
    let mut moving = Vec::new();
    for pod in pods.iter().filter(|p| is_workload_pod(p)) {
        moving.push(facts::pending_pod(pod).map_err(|e| e.to_string())?);
    }
    let leaving = Leaving {
        node: &node_name,
        nodepool: &pool_name,
        capacity: facts::node_capacity(node),
        pods: moving,
    };
    let new_nodes = match simulate(problem, leaving, going, instance_types) {
        Simulation::Fits(new_nodes) => new_nodes,
        Simulation::Blocked(why) => return Err(why),
    };
    let mut replacements = Vec::new();
    for new_node in &new_nodes {
        let pool = view
            .pool(&new_node.nodepool)
            .ok_or("the replacement's NodePool is gone")?;
        let class = view
            .class_of(pool)
            .ok_or("the replacement's NodeClass is gone")?;
        let mut replacement = new_claim(&claim_name(&new_node.nodepool), pool, class, new_node);
        replacement
            .labels_mut()
            .insert(keys::REPLACES_LABEL.to_owned(), claim.name_any());
        replacements.push((replacement, class));
    }
    let state = Replacement {
        cause,
        started: now,
        replacements: replacements.iter().map(|(r, _)| r.name_any()).collect(),
    };
    // The record comes first: whatever happens after, a restart resumes it.
    let record = json!({"metadata": {
        "resourceVersion": claim.resource_version(),
        "annotations": {keys::DISRUPTION_ANNOTATION: state.to_annotation()},
    }});
    let claims: Api<NodeClaim> = Api::all(ctx.client.clone());
    let recorded = match claims
        .patch(
            &claim.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&record),
        )
        .await
    {
        Ok(recorded) => recorded,
        Err(err) => {
            tracing::debug!(claim = %claim.name_any(), error = %err, "replacement not recorded; next sweep");
            return Ok(false);
        }
    };
    ctx.metrics
        .disruption_decisions
        .with_label_values(&[cause.as_str(), "replacing"])
        .inc();
    let types: Vec<String> = new_nodes
        .iter()
        .map(|n| n.instance_types.first().cloned().unwrap_or_default())
        .collect();
    let note = format!(
        "{why}: replacing node {node_name} with {} new node(s) [{}] for {} pod(s), new node first",
        new_nodes.len(),
        types.join(", "),
        pods.iter().filter(|p| is_workload_pod(p)).count()
    );
    tracing::info!(claim = %claim.name_any(), "{note}");
    tell(ctx, claim, Some(node), EventType::Normal, "Replacing", note).await;
    let mut created = Vec::new();
    for (replacement, class) in &replacements {
        match claims.create(&PostParams::default(), replacement).await {
            Ok(object) => created.push((object, *class)),
            // Seen as gone by the next step, which rolls back and retries.
            Err(err) => {
                tracing::warn!(claim = %replacement.name_any(), error = %err, "replacement claim not created")
            }
        }
    }
    mark(ctx, &recorded, Some(node), cause, &state).await;
    for (replacement, class) in &created {
        launch_replacement(ctx, replacement, class, claim).await;
    }
    Ok(true)
}

async fn launch_replacement<L: Launcher>(
    ctx: &Context<L>,
    replacement: &NodeClaim,
    class: &NodeClass,
    old: &NodeClaim,
) {
    let why = format!("replaces {}", old.name_any());
    launch_claim(ctx, replacement, class, Some(why)).await;
}

/// `Disrupting=True` on the claim and the disruption taint on its node;
/// both idempotent, so each step repeats them until they hold.
async fn mark<L>(
    ctx: &Context<L>,
    claim: &NodeClaim,
    node: Option<&Node>,
    cause: Cause,
    state: &Replacement,
) {
    let message = format!(
        "{}: replacements {:?} first, then drain",
        cause.as_str(),
        state.replacements
    );
    let update = ConditionUpdate {
        type_: conditions::DISRUPTING,
        status: true,
        reason: cause.as_str(),
        message,
    };
    if let Err(err) = write_condition(&ctx.client, claim, update).await {
        tracing::debug!(claim = %claim.name_any(), error = %err, "Disrupting not written; next sweep");
    }
    if let Some(node) = node {
        if let Err(err) = set_disrupted_taint(ctx, node, true).await {
            tracing::debug!(node = %node.name_any(), error = %err, "taint not written; next sweep");
        }
    }
}

/// Moves a begun replacement one step on.
async fn advance<L: Launcher>(
    ctx: &Context<L>,
    view: &View,
    claim: &NodeClaim,
    state: Result<Replacement, String>,
    now: Timestamp,
    timing: DisruptionTiming,
) {
    let node = view.node_of(claim);
    let state = match state {
        Ok(state) => state,
        Err(why) => return roll_back(ctx, view, claim, node, None, why).await,
    };
    let replacements: Vec<(&str, Option<&NodeClaim>)> = state
        .replacements
        .iter()
        .map(|name| (name.as_str(), view.claim(name)))
        .collect();
    match decide::progress(&state, &replacements, now, timing.replacement_timeout) {
        Progress::RollBack(why) => roll_back(ctx, view, claim, node, Some(&state), why).await,
        Progress::Launch(names) => {
            mark(ctx, claim, node, state.cause, &state).await;
            for name in names {
                let Some(replacement) = view.claim(&name) else {
                    continue;
                };
                let class = view
                    .objects
                    .nodeclasses
                    .iter()
                    .find(|c| c.name_any() == replacement.spec.node_class_ref.name);
                if let Some(class) = class {
                    launch_replacement(ctx, replacement, class, claim).await;
                }
            }
        }
        Progress::Wait => mark(ctx, claim, node, state.cause, &state).await,
        Progress::Drain => drain(ctx, claim, node, &state, now).await,
    }
}

/// The replacements are up: delete the old claim; termination drains it.
async fn drain<L>(
    ctx: &Context<L>,
    claim: &NodeClaim,
    node: Option<&Node>,
    state: &Replacement,
    now: Timestamp,
) {
    let mut params = DeleteParams::background();
    params.preconditions = Some(Preconditions {
        uid: claim.uid(),
        resource_version: None,
    });
    match Api::<NodeClaim>::all(ctx.client.clone())
        .delete(&claim.name_any(), &params)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => return,
        Err(err) => {
            tracing::warn!(claim = %claim.name_any(), error = %err, "deleting the replaced claim failed; next sweep");
            return;
        }
    }
    ctx.metrics
        .disruption_decisions
        .with_label_values(&[state.cause.as_str(), "drained"])
        .inc();
    if state.cause == Cause::Drifted {
        if let Some(drifted) = find_condition(claim, conditions::DRIFTED) {
            ctx.metrics
                .drift_replacement
                .observe(elapsed(drifted.last_transition_time.0, now).as_secs_f64());
        }
    }
    let note = format!(
        "replacements {:?} initialized after {}s; draining (PodDisruptionBudgets respected) and terminating",
        state.replacements,
        elapsed(state.started, now).as_secs()
    );
    tracing::info!(claim = %claim.name_any(), "{note}");
    tell(ctx, claim, node, EventType::Normal, "Replaced", note).await;
}

/// Gives a replacement up: its replacement claims are deleted (their
/// instances terminated), the node untainted, the record removed, and
/// `Disrupting=False` holds the claim back for `retry_after`.
async fn roll_back<L>(
    ctx: &Context<L>,
    view: &View,
    claim: &NodeClaim,
    node: Option<&Node>,
    state: Option<&Replacement>,
    why: String,
) {
    let claims: Api<NodeClaim> = Api::all(ctx.client.clone());
    for name in state.map(|s| s.replacements.as_slice()).unwrap_or_default() {
        if view
            .claim(name)
            .is_some_and(|c| c.meta().deletion_timestamp.is_none())
        {
            if let Err(err) = claims.delete(name, &DeleteParams::background()).await {
                tracing::warn!(claim = %name, error = %err, "deleting a replacement failed; next sweep");
                return;
            }
        }
    }
    if let Some(node) = node {
        if let Err(err) = set_disrupted_taint(ctx, node, false).await {
            tracing::warn!(node = %node.name_any(), error = %err, "untainting failed; next sweep");
            return;
        }
    }
    let update = ConditionUpdate {
        type_: conditions::DISRUPTING,
        status: false,
        reason: ROLLED_BACK,
        message: why.clone(),
    };
    if let Err(err) = write_condition(&ctx.client, claim, update).await {
        tracing::warn!(claim = %claim.name_any(), error = %err, "Disrupting=False not written; next sweep");
        return;
    }
    let forget = json!({"metadata": {"annotations": {keys::DISRUPTION_ANNOTATION: null}}});
    if let Err(err) = claims
        .patch(
            &claim.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&forget),
        )
        .await
    {
        tracing::warn!(claim = %claim.name_any(), error = %err, "replacement record not removed; next sweep");
        return;
    }
    let cause = state.map_or("Unknown", |s| s.cause.as_str());
    ctx.metrics
        .disruption_decisions
        .with_label_values(&[cause, "rolled_back"])
        .inc();
    let note = format!("replacement given up, node untainted, retried later: {why}");
    tracing::warn!(claim = %claim.name_any(), "{note}");
    tell(
        ctx,
        claim,
        node,
        EventType::Warning,
        "ReplacementRolledBack",
        note,
    )
    .await;
}

/// An Event on the claim and, when it has one, on its Node: users look at either.
async fn tell<L>(
    ctx: &Context<L>,
    claim: &NodeClaim,
    node: Option<&Node>,
    type_: EventType,
    reason: &str,
    note: String,
) {
    if let Some(node) = node {
        publish(ctx, &node.object_ref(&()), type_, reason, note.clone()).await;
    }
    publish(ctx, &claim.object_ref(&()), type_, reason, note).await;
}

/// Why a candidate waits, once per distinct reason: an Event (on the Node
/// when there is one, else the claim) and the decision metric.
async fn announce<L>(
    ctx: &Context<L>,
    memory: &mut Memory,
    claim: &NodeClaim,
    node: Option<&Node>,
    cause: Cause,
    result: &str,
    note: String,
) {
    let name = claim.name_any();
    let key = (cause, result.to_owned());
    if memory.announced.get(&name) == Some(&key) {
        return;
    }
    ctx.metrics
        .disruption_decisions
        .with_label_values(&[cause.as_str(), result])
        .inc();
    tracing::info!(claim = %name, "{note}");
    let reference = match node {
        Some(node) => node.object_ref(&()),
        None => claim.object_ref(&()),
    };
    publish(
        ctx,
        &reference,
        EventType::Normal,
        "DisruptionBlocked",
        note,
    )
    .await;
    memory.announced.insert(name, key);
}

/// Adds or removes the `spotwright.io/disrupted:NoSchedule` taint, guarded
/// by the Node's resourceVersion so no concurrent taint change is lost.
async fn set_disrupted_taint<L>(
    ctx: &Context<L>,
    node: &Node,
    on: bool,
) -> Result<(), kube::Error> {
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let has = taints.iter().any(|t| t.key == keys::DISRUPTED_TAINT_KEY);
    if has == on {
        return Ok(());
    }
    let taints: Vec<_> = if on {
        taints.into_iter().chain([disrupted_taint()]).collect()
    } else {
        taints
            .into_iter()
            .filter(|t| t.key != keys::DISRUPTED_TAINT_KEY)
            .collect()
    };
    let patch = json!({"metadata": {"resourceVersion": node.resource_version()}, "spec": {"taints": taints}});
    Api::<Node>::all(ctx.client.clone())
        .patch(
            &node.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}
