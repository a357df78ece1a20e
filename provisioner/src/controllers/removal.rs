//! Removal of empty nodes: a node of a NodePool whose consolidation policy
//! allows it (`WhenEmpty`, and `WhenEmptyOrUnderutilized`, which includes
//! it) that has carried no workload pod for `consolidateAfter` is removed by
//! deleting its NodeClaim; the termination finalizer does the rest.
//!
//! Workload pods are those that are not DaemonSet-owned, not mirror pods and
//! not terminal. `spotwright.io/do-not-disrupt: "true"` on the Node or any of
//! its pods keeps the node, and an Event on the Node says so.
//!
//! When a node became empty is kept in memory: after a restart the clock
//! starts again, which only ever delays a removal.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, PodSpec, PodStatus};
use k8s_openapi::jiff::Timestamp;
use kube::api::DeleteParams;
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use spotwright_api::duration::Lifetime;
use spotwright_api::v1alpha1::{ConsolidationPolicy, DisruptionReason};
use spotwright_api::{conditions, keys, NodeClaim, NodePool};

use super::registration::{claims_config, elapsed, is_condition_true, record, reporter};
use crate::disruption::budgets;
use crate::disruption::decide::{is_promised, pool_counts};
use crate::provisioning::stores::{keep, spawn_cache};

/// How the removal loop runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemovalSettings {
    /// How often every claim is looked at.
    pub sweep_interval: Duration,
    /// Only NodeClaims matching this label selector are handled (all when
    /// `None`): lets tests, or shards, keep to their own claims.
    pub claim_selector: Option<String>,
}

impl Default for RemovalSettings {
    fn default() -> Self {
        RemovalSettings {
            sweep_interval: Duration::from_secs(5),
            claim_selector: None,
        }
    }
}

/// Owned by a DaemonSet: it runs on every node and goes with it.
pub fn is_daemonset_pod(pod: &Pod) -> bool {
    pod.owner_references()
        .iter()
        .any(|o| o.kind == "DaemonSet" && o.api_version.starts_with("apps/"))
}

/// The kubelet's mirror of a static pod: it cannot be evicted.
pub fn is_mirror_pod(pod: &Pod) -> bool {
    pod.annotations().contains_key(keys::MIRROR_POD_ANNOTATION)
}

/// Finished: it holds nothing on the node.
pub fn is_terminal_pod(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// A pod that makes a node non-empty and that a drain must evict.
pub fn is_workload_pod(pod: &Pod) -> bool {
    !is_daemonset_pod(pod) && !is_mirror_pod(pod) && !is_terminal_pod(pod)
}

/// Whether an object carries `spotwright.io/do-not-disrupt: "true"`.
pub fn has_do_not_disrupt(annotations: &BTreeMap<String, String>) -> bool {
    annotations
        .get(keys::DO_NOT_DISRUPT_ANNOTATION)
        .is_some_and(|v| v == "true")
}

/// What the NodePool says about removing its empty nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmptinessPolicy {
    pub policy: ConsolidationPolicy,
    /// `Never` turns removal off.
    pub consolidate_after: Lifetime,
}

impl EmptinessPolicy {
    /// From a NodePool; an unparsable `consolidateAfter` is an error, so the
    /// pool's nodes are kept rather than removed on a guess.
    pub fn of(pool: &NodePool) -> Result<Self, spotwright_api::duration::DurationError> {
        Ok(EmptinessPolicy {
            policy: pool.spec.disruption.consolidation_policy,
            consolidate_after: Lifetime::parse(&pool.spec.disruption.consolidate_after)?,
        })
    }
}

/// What removal does with one claim.
#[derive(Clone, Debug, PartialEq)]
pub enum EmptinessDecision {
    /// Not a candidate: deleting, not initialized, no Node, or `Never`.
    Ignore,
    /// Has workload pods.
    NotEmpty,
    /// Empty, but not for long enough yet.
    Wait { remaining: Duration },
    /// Empty long enough, but something asks not to be disrupted.
    Blocked { reason: String },
    /// Empty for `empty_for`: delete the claim.
    Remove { empty_for: Duration },
}

/// When the node has been empty since, after observing `empty` now.
pub fn next_empty_since(
    empty: bool,
    previous: Option<Timestamp>,
    now: Timestamp,
) -> Option<Timestamp> {
    empty.then(|| previous.unwrap_or(now))
}

/// Decides for one claim. `pods` are the pods bound to the claim's Node;
/// `empty_since` is the result of [`next_empty_since`] for this look.
pub fn decide(
    claim: &NodeClaim,
    node: Option<&Node>,
    pods: &[&Pod],
    policy: EmptinessPolicy,
    empty_since: Option<Timestamp>,
    now: Timestamp,
) -> EmptinessDecision {
    let Some(node) = node else {
        return EmptinessDecision::Ignore;
    };
    let candidate = claim.meta().deletion_timestamp.is_none()
        && node.meta().deletion_timestamp.is_none()
        && is_condition_true(claim, conditions::INITIALIZED);
    // Both policies include emptiness.
    let Lifetime::After(consolidate_after) = policy.consolidate_after else {
        return EmptinessDecision::Ignore;
    };
    if !candidate {
        return EmptinessDecision::Ignore;
    }
    if pods.iter().any(|p| is_workload_pod(p)) {
        return EmptinessDecision::NotEmpty;
    }
    let empty_for = empty_since.map_or(Duration::ZERO, |since| elapsed(since, now));
    if let Some(remaining) = consolidate_after
        .checked_sub(empty_for)
        .filter(|r| !r.is_zero())
    {
        return EmptinessDecision::Wait { remaining };
    }
    match do_not_disrupt(node, pods) {
        Some(reason) => EmptinessDecision::Blocked { reason },
        None => EmptinessDecision::Remove { empty_for },
    }
}

/// Why voluntary disruption must skip the node, if it must: the Node or one
/// of its running pods carries `spotwright.io/do-not-disrupt: "true"`.
pub fn do_not_disrupt(node: &Node, pods: &[&Pod]) -> Option<String> {
    if has_do_not_disrupt(node.annotations()) {
        return Some(format!(
            "Node has {}: \"true\"",
            keys::DO_NOT_DISRUPT_ANNOTATION
        ));
    }
    let pod = pods
        .iter()
        .filter(|p| !is_terminal_pod(p))
        .find(|p| has_do_not_disrupt(p.annotations()))?;
    Some(format!(
        "pod {}/{} has {}: \"true\"",
        pod.namespace().unwrap_or_default(),
        pod.name_any(),
        keys::DO_NOT_DISRUPT_ANNOTATION
    ))
}

/// Removal failures.
#[derive(Debug, thiserror::Error)]
pub enum RemovalError {
    #[error("deleting NodeClaim {claim}: {source}")]
    Delete { claim: String, source: kube::Error },
}

/// What the loop remembers per claim.
#[derive(Clone, Debug, Default)]
struct Tracking {
    empty_since: Option<Timestamp>,
    /// The last block reason announced, so each is announced once.
    blocked: Option<String>,
}

struct Caches {
    claims: Store<NodeClaim>,
    nodes: Store<Node>,
    pods: Store<Pod>,
    pools: Store<NodePool>,
}

/// Keeps of a pod what emptiness reads: owners, the two annotations that
/// matter, deletion, node and phase. Pods are the largest cache by far.
fn slim_pod(pod: &mut Pod) {
    pod.metadata.labels = None;
    if let Some(annotations) = pod.metadata.annotations.as_mut() {
        annotations.retain(|key, _| {
            key == keys::MIRROR_POD_ANNOTATION || key == keys::DO_NOT_DISRUPT_ANNOTATION
        });
    }
    if let Some(spec) = pod.spec.as_mut() {
        *spec = PodSpec {
            node_name: spec.node_name.take(),
            ..PodSpec::default()
        };
    }
    if let Some(status) = pod.status.as_mut() {
        *status = PodStatus {
            phase: status.phase.take(),
            ..PodStatus::default()
        };
    }
}

/// Runs the removal loop forever.
pub async fn run(client: Client, settings: RemovalSettings) {
    let caches = Caches {
        claims: spawn_cache(
            Api::all(client.clone()),
            claims_config(&settings.claim_selector),
            None,
            keep,
        ),
        nodes: spawn_cache(
            Api::all(client.clone()),
            watcher::Config::default(),
            None,
            keep,
        ),
        pods: spawn_cache(
            Api::all(client.clone()),
            watcher::Config::default().fields("spec.nodeName!="),
            None,
            slim_pod,
        ),
        pools: spawn_cache(
            Api::all(client.clone()),
            watcher::Config::default(),
            None,
            keep,
        ),
    };
    for (what, ready) in [
        ("nodeclaims", caches.claims.wait_until_ready().await),
        ("nodes", caches.nodes.wait_until_ready().await),
        ("pods", caches.pods.wait_until_ready().await),
        ("nodepools", caches.pools.wait_until_ready().await),
    ] {
        if ready.is_err() {
            tracing::error!(cache = what, "cache writer dropped; removal stops");
            return;
        }
    }
    let recorder = Recorder::new(client.clone(), reporter());
    let mut tracking: HashMap<String, Tracking> = HashMap::new();
    let mut ticker = tokio::time::interval(settings.sweep_interval);
    loop {
        ticker.tick().await;
        sweep(&client, &recorder, &caches, &mut tracking).await;
    }
}

async fn sweep(
    client: &Client,
    recorder: &Recorder,
    caches: &Caches,
    tracking: &mut HashMap<String, Tracking>,
) {
    let now = Timestamp::now();
    let nodes: HashMap<String, Arc<Node>> = caches
        .nodes
        .state()
        .into_iter()
        .map(|n| (n.name_any(), n))
        .collect();
    let pods = caches.pods.state();
    let mut pods_by_node: HashMap<&str, Vec<&Pod>> = HashMap::new();
    for pod in &pods {
        if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            pods_by_node.entry(node).or_default().push(pod);
        }
    }
    let claims = caches.claims.state();
    let names: HashSet<String> = claims.iter().map(|c| c.name_any()).collect();
    tracking.retain(|name, _| names.contains(name));
    let mut allowed = budgets_left(&caches.pools, &claims, now);
    let existing: HashSet<String> = claims.iter().map(|c| c.name_any()).collect();
    for claim in claims {
        let name = claim.name_any();
        let Some(policy) = policy_for(&caches.pools, &claim) else {
            continue;
        };
        // A replacement waits empty for its old node's pods (until that
        // node is drained and gone): not removable yet.
        if is_promised(&claim, &existing) {
            continue;
        }
        let node_name = claim.status.as_ref().and_then(|s| s.node_name.clone());
        let node = node_name.as_deref().and_then(|n| nodes.get(n));
        let node_pods = node_name
            .as_deref()
            .and_then(|n| pods_by_node.get(n))
            .map_or(&[][..], Vec::as_slice);
        let state = tracking.entry(name.clone()).or_default();
        let empty = node.is_some() && !node_pods.iter().any(|p| is_workload_pod(p));
        state.empty_since = next_empty_since(empty, state.empty_since, now);
        let decision = decide(
            &claim,
            node.map(Arc::as_ref),
            node_pods,
            policy,
            state.empty_since,
            now,
        );
        match decision {
            EmptinessDecision::Blocked { reason } => {
                if state.blocked.as_ref() != Some(&reason) {
                    if let Some(node) = node {
                        let note = format!("empty, but not removed: {reason}");
                        record(
                            recorder,
                            &node.object_ref(&()),
                            EventType::Normal,
                            "DisruptionBlocked",
                            "Remove",
                            note,
                        )
                        .await;
                    }
                    state.blocked = Some(reason);
                }
            }
            EmptinessDecision::Remove { empty_for } => {
                let pool = claim.labels().get(keys::NODEPOOL_LABEL);
                let left = pool.and_then(|p| allowed.get_mut(p));
                match left {
                    Some(left) if *left > 0 => *left -= 1,
                    _ => {
                        tracing::debug!(claim = %name, "empty, but the pool's disruption budget is used up");
                        continue;
                    }
                }
                if let Err(err) = remove(client, &claim).await {
                    tracing::warn!(error = %err, "removal failed; retrying");
                    continue;
                }
                let note = format!(
                    "removed: no pods but DaemonSet, mirror or finished ones for {}s",
                    empty_for.as_secs()
                );
                tracing::info!(claim = %name, "{note}");
                record(
                    recorder,
                    &claim.object_ref(&()),
                    EventType::Normal,
                    "Empty",
                    "Remove",
                    note.clone(),
                )
                .await;
                if let Some(node) = node {
                    record(
                        recorder,
                        &node.object_ref(&()),
                        EventType::Normal,
                        "Empty",
                        "Remove",
                        note,
                    )
                    .await;
                }
            }
            _ => state.blocked = None,
        }
    }
}

/// Per NodePool, how many nodes emptiness may still remove this sweep.
fn budgets_left(
    pools: &Store<NodePool>,
    claims: &[Arc<NodeClaim>],
    now: Timestamp,
) -> HashMap<String, usize> {
    let counts = pool_counts(claims.iter().map(AsRef::as_ref));
    pools
        .state()
        .iter()
        .map(|pool| {
            let name = pool.name_any();
            let count = counts.get(&name).copied().unwrap_or_default();
            let left = budgets::allowed(
                &pool.spec.disruption.budgets,
                DisruptionReason::Empty,
                count.nodes,
                count.disrupting,
                now,
            );
            (name, left)
        })
        .collect()
}

/// The claim's NodePool's policy; claims of unknown pools are left alone.
fn policy_for(pools: &Store<NodePool>, claim: &NodeClaim) -> Option<EmptinessPolicy> {
    let pool_name = claim.labels().get(keys::NODEPOOL_LABEL)?;
    let pool = pools.find(|p| &p.name_any() == pool_name)?;
    match EmptinessPolicy::of(&pool) {
        Ok(policy) => Some(policy),
        Err(err) => {
            tracing::warn!(nodepool = %pool_name, error = %err, "bad consolidateAfter; not removing its nodes");
            None
        }
    }
}

async fn remove(client: &Client, claim: &NodeClaim) -> Result<(), RemovalError> {
    let name = claim.name_any();
    let api: Api<NodeClaim> = Api::all(client.clone());
    // The uid precondition: never delete a newer claim of the same name.
    let mut params = DeleteParams::background();
    params.preconditions = Some(kube::api::Preconditions {
        uid: claim.uid(),
        resource_version: None,
    });
    match api.delete(&name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(RemovalError::Delete {
            claim: name,
            source,
        }),
    }
}
