//! Registration: a Node whose providerID matches a NodeClaim gets the
//! claim's labels and taints, and the claim records `Registered` and
//! `Initialized`. A claim whose instance never registers within the timeout
//! is deleted; the termination finalizer then terminates the instance, and
//! its pods, still pending, are solved again.
//!
//! The decisions are pure functions of (claim, node, now); [`run`] is the
//! thin adapter that watches NodeClaims and Nodes and applies them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, Controller, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use spotwright_api::keys;
use spotwright_api::v1alpha1::RequirementOperator;
use spotwright_api::{conditions, NodeClaim};

/// Field manager of every write the provisioner's controllers make.
pub const FIELD_MANAGER: &str = "spotwright-provisioner";
/// Name under which the controllers report Events.
pub const REPORTER: &str = "spotwright-provisioner";

/// How registration behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrationSettings {
    /// A launched claim whose Node has not registered after this long is deleted.
    pub registration_timeout: Duration,
    /// Only NodeClaims matching this label selector are handled (all when
    /// `None`): lets tests, or shards, keep to their own claims.
    pub claim_selector: Option<String>,
}

impl Default for RegistrationSettings {
    fn default() -> Self {
        RegistrationSettings {
            registration_timeout: Duration::from_secs(15 * 60),
            claim_selector: None,
        }
    }
}

/// What to write onto the Node so it matches its claim.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeUpdate {
    /// Labels to set; every other label of the Node stays as it is.
    pub labels: BTreeMap<String, String>,
    /// The Node's full new taint list, when taints must be added.
    pub taints: Option<Vec<Taint>>,
}

impl NodeUpdate {
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.taints.is_none()
    }

    /// The Node as it is after the update.
    pub fn applied_to(&self, node: &Node) -> Node {
        let mut node = node.clone();
        node.metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .extend(self.labels.clone());
        if let Some(taints) = &self.taints {
            node.spec.get_or_insert_with(Default::default).taints = Some(taints.clone());
        }
        node
    }
}

/// What registration does next for one claim.
#[derive(Clone, Debug, PartialEq)]
pub enum RegistrationDecision {
    /// Deleting, or not launched yet: nothing to do here.
    Ignore,
    /// Launched, no Node yet; the timeout is reached after `remaining`.
    AwaitNode { remaining: Duration },
    /// Launched this long ago without a Node: delete the claim.
    TimedOut { waited: Duration },
    /// A Node matches: update it, then record what was observed.
    Register {
        node_name: String,
        node_update: NodeUpdate,
        initialized: bool,
    },
}

/// The labels a claim's Node must carry: the claim's own labels, the
/// single-valued `In` requirements, and the launched instance's facts.
pub fn node_labels(claim: &NodeClaim) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = claim.labels().clone();
    for requirement in &claim.spec.requirements {
        if let (RequirementOperator::In, [value]) =
            (requirement.operator, requirement.values.as_slice())
        {
            labels.insert(requirement.key.clone(), value.clone());
        }
    }
    if let Some(status) = &claim.status {
        let facts = [
            (keys::INSTANCE_TYPE_LABEL, &status.instance_type),
            (keys::ZONE_LABEL, &status.zone),
            (keys::CAPACITY_TYPE_LABEL, &status.capacity_type),
        ];
        for (key, value) in facts {
            if let Some(value) = value.as_ref().filter(|v| !v.is_empty()) {
                labels.insert(key.to_owned(), value.clone());
            }
        }
    }
    labels
}

/// Whether two taints are the same taint (the API server keys them so).
pub fn same_taint(a: &Taint, b: &Taint) -> bool {
    a.key == b.key && a.effect == b.effect
}

/// The update that makes `node` match `claim`. Labels are only ever set,
/// never removed. Taints (and startup taints) are added only until the
/// claim is registered: after that, whoever removes a startup taint (a CNI,
/// an agent) must not see it come back.
pub fn plan_node_update(claim: &NodeClaim, node: &Node) -> NodeUpdate {
    let current = node.labels();
    let labels = node_labels(claim)
        .into_iter()
        .filter(|(key, value)| current.get(key) != Some(value))
        .collect();
    let taints = if is_condition_true(claim, conditions::REGISTERED) {
        None
    } else {
        let existing = node_taints(node);
        let missing: Vec<Taint> = claim
            .spec
            .taints
            .iter()
            .chain(&claim.spec.startup_taints)
            .filter(|wanted| !existing.iter().any(|t| same_taint(t, wanted)))
            .fold(Vec::new(), |mut acc, t| {
                if !acc.iter().any(|a| same_taint(a, t)) {
                    acc.push(t.clone());
                }
                acc
            });
        (!missing.is_empty()).then(|| existing.iter().cloned().chain(missing).collect())
    };
    NodeUpdate { labels, taints }
}

/// A registered Node is initialized when it is Ready, reports allocatable
/// resources, and none of the claim's startup taints remain.
pub fn is_initialized(claim: &NodeClaim, node: &Node) -> bool {
    let status = node.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let allocatable = status
        .and_then(|s| s.allocatable.as_ref())
        .is_some_and(|a| a.contains_key("cpu") && a.contains_key("memory"));
    let taints = node_taints(node);
    let startup_gone = !claim
        .spec
        .startup_taints
        .iter()
        .any(|s| taints.iter().any(|t| same_taint(t, s)));
    ready && allocatable && startup_gone
}

/// Decides what registration does for `claim`, given the Node carrying its
/// providerID (if any).
pub fn decide(
    claim: &NodeClaim,
    node: Option<&Node>,
    settings: &RegistrationSettings,
    now: Timestamp,
) -> RegistrationDecision {
    if claim.meta().deletion_timestamp.is_some() || provider_id(claim).is_none() {
        return RegistrationDecision::Ignore;
    }
    if let Some(node) = node {
        // Initialized is sticky: a node that was once ready and later is
        // not stays initialized; readiness after that is not our business.
        // Judged on the Node as it will be once updated: startup taints
        // added now mean it is not initialized yet.
        let node_update = plan_node_update(claim, node);
        let initialized = is_condition_true(claim, conditions::INITIALIZED)
            || is_initialized(claim, &node_update.applied_to(node));
        return RegistrationDecision::Register {
            node_name: node.name_any(),
            node_update,
            initialized,
        };
    }
    if is_condition_true(claim, conditions::REGISTERED) {
        // The Node left after registering (deleted by hand, or by the
        // termination controller): not a registration timeout.
        return RegistrationDecision::Ignore;
    }
    let waited = launched_at(claim).map_or(Duration::ZERO, |at| elapsed(at, now));
    match settings.registration_timeout.checked_sub(waited) {
        Some(remaining) if !remaining.is_zero() => RegistrationDecision::AwaitNode { remaining },
        _ => RegistrationDecision::TimedOut { waited },
    }
}

/// The claim's `status.providerID`, when it is launched.
pub fn provider_id(claim: &NodeClaim) -> Option<&str> {
    claim
        .status
        .as_ref()
        .and_then(|s| s.provider_id.as_deref())
        .filter(|p| !p.is_empty())
}

/// When the claim was launched: its `Launched` condition turning true, else its creation.
fn launched_at(claim: &NodeClaim) -> Option<Timestamp> {
    find_condition(claim, conditions::LAUNCHED)
        .filter(|c| c.status == "True")
        .map(|c| c.last_transition_time.0)
        .or_else(|| claim.meta().creation_timestamp.as_ref().map(|t| t.0))
}

/// How long ago `then` was (zero if in the future).
pub fn elapsed(then: Timestamp, now: Timestamp) -> Duration {
    let span = now.duration_since(then);
    Duration::try_from(span).unwrap_or(Duration::ZERO)
}

pub fn find_condition<'a>(claim: &'a NodeClaim, type_: &str) -> Option<&'a Condition> {
    claim
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

pub fn is_condition_true(claim: &NodeClaim, type_: &str) -> bool {
    find_condition(claim, type_).is_some_and(|c| c.status == "True")
}

fn node_taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
}

/// A condition to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionUpdate<'a> {
    pub type_: &'a str,
    pub status: bool,
    pub reason: &'a str,
    pub message: String,
}

/// Sets a condition in `conditions`; `lastTransitionTime` changes only when
/// the status does. Returns whether anything changed.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    update: ConditionUpdate<'_>,
    observed_generation: Option<i64>,
    now: Timestamp,
) -> bool {
    let status = if update.status { "True" } else { "False" };
    let fresh = Condition {
        type_: update.type_.to_owned(),
        status: status.to_owned(),
        reason: update.reason.to_owned(),
        message: update.message,
        observed_generation,
        last_transition_time: Time(now),
    };
    match conditions.iter_mut().find(|c| c.type_ == update.type_) {
        None => {
            conditions.push(fresh);
            true
        }
        Some(existing) => {
            let transition_time = if existing.status == status {
                existing.last_transition_time.clone()
            } else {
                fresh.last_transition_time.clone()
            };
            let next = Condition {
                last_transition_time: transition_time,
                ..fresh
            };
            let changed = *existing != next;
            *existing = next;
            changed
        }
    }
}

/// The claim's conditions after registering `node_name`.
pub fn registered_conditions(
    claim: &NodeClaim,
    node_name: &str,
    initialized: bool,
    now: Timestamp,
) -> (Vec<Condition>, bool) {
    let mut conditions = claim
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let generation = claim.meta().generation;
    let mut changed = set_condition(
        &mut conditions,
        ConditionUpdate {
            type_: conditions::REGISTERED,
            status: true,
            reason: "NodeRegistered",
            message: format!("Node {node_name} joined with the claim's providerID"),
        },
        generation,
        now,
    );
    let (reason, message) = if initialized {
        ("NodeInitialized", format!("Node {node_name} is Ready"))
    } else {
        (
            "NodeNotReady",
            format!(
                "Node {node_name} is not Ready, reports no allocatable, or keeps startup taints"
            ),
        )
    };
    changed |= set_condition(
        &mut conditions,
        ConditionUpdate {
            type_: conditions::INITIALIZED,
            status: initialized,
            reason,
            message,
        },
        generation,
        now,
    );
    (conditions, changed)
}

/// Registration failures; all are retried.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error("updating Node {node}: {source}")]
    Node { node: String, source: kube::Error },
    #[error("updating NodeClaim {claim}: {source}")]
    Claim { claim: String, source: kube::Error },
}

struct Context {
    client: Client,
    nodes: Store<Node>,
    recorder: Recorder,
    settings: RegistrationSettings,
}

/// Runs the registration controller until the watches end.
pub async fn run(client: Client, settings: RegistrationSettings) {
    let (nodes, writer) = reflector::store();
    let node_watch = reflector::reflector(
        writer,
        watcher(Api::<Node>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects()
    .for_each(|_| futures::future::ready(()));
    tokio::spawn(node_watch);
    // Claims are judged against the Nodes: only start once they are listed.
    if nodes.wait_until_ready().await.is_err() {
        tracing::error!("node cache writer dropped; registration stops");
        return;
    }
    let recorder = Recorder::new(client.clone(), reporter());
    let context = Arc::new(Context {
        client: client.clone(),
        nodes,
        recorder,
        settings,
    });
    let claims: Api<NodeClaim> = Api::all(client.clone());
    let controller = Controller::new(claims, claims_config(&context.settings.claim_selector));
    let claim_store = controller.store();
    controller
        .watches(
            Api::<Node>::all(client),
            watcher::Config::default(),
            move |node: Node| claims_for_node(&claim_store, &node),
        )
        .run(reconcile, error_policy, context)
        .for_each(|result| {
            if let Err(err) = result {
                tracing::debug!(error = %err, "registration reconcile failed");
            }
            futures::future::ready(())
        })
        .await;
}

/// The watch over the NodeClaims a controller handles.
pub(crate) fn claims_config(selector: &Option<String>) -> watcher::Config {
    match selector {
        Some(selector) => watcher::Config::default().labels(selector),
        None => watcher::Config::default(),
    }
}

pub(crate) fn reporter() -> Reporter {
    Reporter {
        controller: REPORTER.to_owned(),
        instance: std::env::var("POD_NAME").ok(),
    }
}

fn claims_for_node(claims: &Store<NodeClaim>, node: &Node) -> Vec<ObjectRef<NodeClaim>> {
    let Some(provider) = node.spec.as_ref().and_then(|s| s.provider_id.as_deref()) else {
        return Vec::new();
    };
    claims
        .state()
        .iter()
        .filter(|c| provider_id(c) == Some(provider))
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

/// The Node carrying `provider`, from the cache.
pub fn node_with_provider_id(nodes: &Store<Node>, provider: &str) -> Option<Arc<Node>> {
    nodes.find(|n| n.spec.as_ref().and_then(|s| s.provider_id.as_deref()) == Some(provider))
}

fn error_policy(_: Arc<NodeClaim>, err: &RegistrationError, _: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "registration failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(claim: Arc<NodeClaim>, ctx: Arc<Context>) -> Result<Action, RegistrationError> {
    let now = Timestamp::now();
    let node = provider_id(&claim).and_then(|p| node_with_provider_id(&ctx.nodes, p));
    match decide(&claim, node.as_deref(), &ctx.settings, now) {
        RegistrationDecision::Ignore => Ok(Action::await_change()),
        // A Node event triggers a look, but it comes from another watch than
        // the Node cache and may be seen first: look again soon regardless.
        RegistrationDecision::AwaitNode { remaining } => {
            Ok(Action::requeue(remaining.min(Duration::from_secs(5))))
        }
        RegistrationDecision::TimedOut { waited } => {
            let name = claim.name_any();
            let note = format!(
                "no Node registered within {}s of launch; deleting the claim so its instance is terminated and its pods are solved again",
                waited.as_secs()
            );
            tracing::warn!(claim = %name, "{note}");
            record(
                &ctx.recorder,
                &claim.object_ref(&()),
                EventType::Warning,
                "RegistrationTimedOut",
                "Delete",
                note,
            )
            .await;
            let api: Api<NodeClaim> = Api::all(ctx.client.clone());
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => Ok(Action::await_change()),
                Err(kube::Error::Api(status)) if status.code == 404 => Ok(Action::await_change()),
                Err(source) => Err(RegistrationError::Claim {
                    claim: name,
                    source,
                }),
            }
        }
        RegistrationDecision::Register {
            node_name,
            node_update,
            initialized,
        } => {
            if let Some(node) = node.as_deref().filter(|_| !node_update.is_empty()) {
                patch_node(&ctx.client, node, &node_update).await?;
            }
            let (conditions, changed) = registered_conditions(&claim, &node_name, initialized, now);
            let recorded_name = claim.status.as_ref().and_then(|s| s.node_name.as_deref());
            if changed || recorded_name != Some(node_name.as_str()) {
                apply_status(&ctx.client, &claim, &node_name, &conditions).await?;
                announce(&ctx.recorder, &claim, &node_name, initialized).await;
            }
            // Until initialized, look again even if no watch event comes.
            Ok(if initialized {
                Action::await_change()
            } else {
                Action::requeue(Duration::from_secs(10))
            })
        }
    }
}

async fn announce(recorder: &Recorder, claim: &NodeClaim, node_name: &str, initialized: bool) {
    let reference = claim.object_ref(&());
    let was_registered = is_condition_true(claim, conditions::REGISTERED);
    if !was_registered {
        let note = format!("Node {node_name} registered; labels and taints applied");
        record(
            recorder,
            &reference,
            EventType::Normal,
            "Registered",
            "Register",
            note,
        )
        .await;
    }
    if initialized && !is_condition_true(claim, conditions::INITIALIZED) {
        let note = format!("Node {node_name} is Ready and its startup taints are gone");
        record(
            recorder,
            &reference,
            EventType::Normal,
            "Initialized",
            "Initialize",
            note,
        )
        .await;
    }
}

/// Publishes an Event; a failure to do so is logged, never fatal.
pub(crate) async fn record(
    recorder: &Recorder,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: None,
    };
    if let Err(err) = recorder.publish(&event, reference).await {
        tracing::debug!(error = %err, reason, "could not publish event");
    }
}

/// Labels by merge patch (other labels untouched). Taints replace the whole
/// list, so that patch carries the resourceVersion of the Node they were
/// computed from: a concurrent change makes it fail (409) and the reconcile
/// retries instead of clobbering someone else's taint.
async fn patch_node(
    client: &Client,
    node: &Node,
    update: &NodeUpdate,
) -> Result<(), RegistrationError> {
    let name = &node.name_any();
    let api: Api<Node> = Api::all(client.clone());
    let params = PatchParams::default();
    let err = |source| RegistrationError::Node {
        node: name.to_owned(),
        source,
    };
    if !update.labels.is_empty() {
        let patch = json!({"metadata": {"labels": update.labels}});
        api.patch(name, &params, &Patch::Merge(&patch))
            .await
            .map_err(err)?;
    }
    if let Some(taints) = &update.taints {
        let patch = json!({"spec": {"taints": taints}});
        let patch = with_resource_version(patch, node.resource_version());
        api.patch(name, &params, &Patch::Merge(&patch))
            .await
            .map_err(err)?;
    }
    Ok(())
}

/// Adds `metadata.resourceVersion` to a patch: the API server then refuses
/// it (409) if the object changed since it was read.
pub(crate) fn with_resource_version(
    mut patch: serde_json::Value,
    version: Option<String>,
) -> serde_json::Value {
    if let (Some(version), Some(object)) = (version, patch.as_object_mut()) {
        let metadata = object.entry("metadata").or_insert_with(|| json!({}));
        if let Some(metadata) = metadata.as_object_mut() {
            metadata.insert("resourceVersion".to_owned(), json!(version));
        }
    }
    patch
}

async fn apply_status(
    client: &Client,
    claim: &NodeClaim,
    node_name: &str,
    conditions: &[Condition],
) -> Result<(), RegistrationError> {
    let name = claim.name_any();
    let api: Api<NodeClaim> = Api::all(client.clone());
    let patch = json!({
        "apiVersion": "spotwright.io/v1alpha1",
        "kind": "NodeClaim",
        "metadata": {"name": name, "resourceVersion": claim.resource_version()},
        "status": {"nodeName": node_name, "conditions": conditions},
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(&name, &params, &Patch::Apply(&patch))
        .await
        .map_err(|source| RegistrationError::Claim {
            claim: name,
            source,
        })?;
    Ok(())
}
