//! The decision: which pods move to Spotwright's capacity, and the patch
//! that moves them. A pure function of (pod, namespace annotations,
//! NodePools, settings); the server around it does the I/O.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration};
use serde_json::{json, Value};
use spotwright_api::keys;

use crate::patch::{Add, Patch, Pointer};
use crate::pod::{PodView, SpecView};

/// What the webhook is configured with.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The scheduler opted-in pods are handed to; `None` leaves `schedulerName` alone.
    pub scheduler_name: Option<String>,
    /// The namespace Spotwright runs in: never mutated.
    pub own_namespace: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            scheduler_name: Some(keys::SCHEDULER_NAME.to_owned()),
            own_namespace: keys::SYSTEM_NAMESPACE.to_owned(),
        }
    }
}

/// The annotations of a namespace that matter here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceFacts {
    pub capacity: Option<String>,
    pub nodepool: Option<String>,
}

impl NamespaceFacts {
    pub fn from_annotations(annotations: Option<&BTreeMap<String, String>>) -> Self {
        let get = |key: &str| annotations.and_then(|a| a.get(key)).cloned();
        NamespaceFacts {
            capacity: get(keys::CAPACITY_ANNOTATION),
            nodepool: get(keys::NODEPOOL_ANNOTATION),
        }
    }
}

/// What the decision may read of the cluster: watch-fed, never the API server.
pub trait ClusterView {
    /// `None` when the namespace is not (yet) known.
    fn namespace(&self, name: &str) -> Option<NamespaceFacts>;
    /// The taints of a NodePool's nodes; `None` when there is no such NodePool.
    fn nodepool_taints(&self, name: &str) -> Option<Vec<Taint>>;
}

/// Capacity a pod asked for through `spotwright.io/capacity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capacity {
    Spot,
    SpotPreferred,
    OnDemand,
}

impl Capacity {
    pub const VALUES: &'static str = "spot, spot-preferred, on-demand, none";

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "spot" => Some(Capacity::Spot),
            "spot-preferred" => Some(Capacity::SpotPreferred),
            "on-demand" => Some(Capacity::OnDemand),
            _ => None,
        }
    }
}

/// Why a pod is left alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    NotCreate,
    SystemNamespace,
    MirrorPod,
    DaemonSetPod,
    AlreadyBound,
    OptedOut,
    NotOptedIn,
    NamespaceUnknown,
    PinnedOnDemand,
}

/// Why an opt-in could not be honoured; the pod is admitted unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalid {
    UnknownCapacity(String),
    UnknownNodePool(String),
    NodePoolWithoutCapacity(String),
}

impl Invalid {
    /// The metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Invalid::UnknownCapacity(_) => "unknown-capacity",
            Invalid::UnknownNodePool(_) => "unknown-nodepool",
            Invalid::NodePoolWithoutCapacity(_) => "nodepool-without-capacity",
        }
    }

    /// The warning `kubectl` shows.
    pub fn warning(&self) -> String {
        match self {
            Invalid::UnknownCapacity(value) => format!(
                "{}: {value:?} is not one of {}; pod admitted unchanged",
                keys::CAPACITY_ANNOTATION,
                Capacity::VALUES
            ),
            Invalid::UnknownNodePool(name) => {
                format!(
                    "{}: NodePool {name:?} does not exist; pod admitted unchanged",
                    keys::NODEPOOL_ANNOTATION
                )
            }
            Invalid::NodePoolWithoutCapacity(name) => format!(
                "{} is {name:?} but {} is not set; pod admitted unchanged",
                keys::NODEPOOL_ANNOTATION,
                keys::CAPACITY_ANNOTATION
            ),
        }
    }
}

/// The webhook's answer for one pod.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Out of scope: no patch.
    Skipped(SkipReason),
    /// Opted in, but the request cannot be honoured: no patch, a warning.
    Invalid(Invalid),
    /// Opted in and already as wanted: an empty patch.
    Unchanged,
    /// Opted in: this patch.
    Mutated(Patch),
}

/// Decides for a pod being created in `namespace`.
pub fn decide(
    namespace: &str,
    pod: &PodView,
    view: &impl ClusterView,
    settings: &Settings,
) -> Decision {
    if let Some(reason) = exclusion(namespace, pod, settings) {
        return Decision::Skipped(reason);
    }
    let annotations = pod.metadata.annotations.as_ref();
    let pod_capacity = annotations.and_then(|a| a.get(keys::CAPACITY_ANNOTATION));
    if pod_capacity.is_some_and(|v| v == "none") {
        return Decision::Skipped(SkipReason::OptedOut);
    }
    let pod_nodepool = annotations.and_then(|a| a.get(keys::NODEPOOL_ANNOTATION));
    let namespace_facts = view.namespace(namespace);
    if namespace_facts.is_none() && pod_capacity.is_none() && pod_nodepool.is_none() {
        return Decision::Skipped(SkipReason::NamespaceUnknown);
    }
    let facts = namespace_facts.unwrap_or_default();
    let capacity_value = pod_capacity.or(facts.capacity.as_ref());
    let nodepool = pod_nodepool.or(facts.nodepool.as_ref());

    let capacity = match capacity_value.map(String::as_str) {
        None | Some("none") => {
            return match nodepool {
                Some(name) => Decision::Invalid(Invalid::NodePoolWithoutCapacity(name.clone())),
                None => Decision::Skipped(SkipReason::NotOptedIn),
            };
        }
        Some(value) => match Capacity::parse(value) {
            Some(capacity) => capacity,
            None => return Decision::Invalid(Invalid::UnknownCapacity(value.to_owned())),
        },
    };
    let nodepool = match nodepool {
        None => None,
        Some(name) => match view.nodepool_taints(name) {
            Some(taints) => Some((name.as_str(), taints)),
            None => return Decision::Invalid(Invalid::UnknownNodePool(name.clone())),
        },
    };
    if pins_on_demand(pod, capacity) {
        return Decision::Skipped(SkipReason::PinnedOnDemand);
    }
    let patch = patch_for(pod, capacity, nodepool, settings);
    if patch.is_empty() {
        Decision::Unchanged
    } else {
        Decision::Mutated(patch)
    }
}

fn exclusion(namespace: &str, pod: &PodView, settings: &Settings) -> Option<SkipReason> {
    if keys::KUBERNETES_SYSTEM_NAMESPACES.contains(&namespace)
        || namespace == settings.own_namespace
    {
        return Some(SkipReason::SystemNamespace);
    }
    let meta = &pod.metadata;
    if meta
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(keys::MIRROR_POD_ANNOTATION))
    {
        return Some(SkipReason::MirrorPod);
    }
    if meta
        .owner_references
        .as_ref()
        .is_some_and(|owners| owners.iter().any(|o| o.kind == "DaemonSet"))
    {
        return Some(SkipReason::DaemonSetPod);
    }
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
    {
        return Some(SkipReason::AlreadyBound);
    }
    None
}

/// A pod pinned to on-demand capacity by its own node selector or required
/// affinity stays where it is. Our own on-demand label does not count when
/// the pod asked for Spotwright's on-demand nodes: that is the same wish.
fn pins_on_demand(pod: &PodView, capacity: Capacity) -> bool {
    let own_label_counts = capacity != Capacity::OnDemand;
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let selector_pins = spec.node_selector.as_ref().is_some_and(|selector| {
        (own_label_counts
            && selector
                .get(keys::CAPACITY_TYPE_LABEL)
                .is_some_and(|v| v == keys::ON_DEMAND))
            || selector
                .get(keys::EKS_CAPACITY_TYPE_LABEL)
                .is_some_and(|v| v == keys::EKS_ON_DEMAND)
    });
    let expression_pins = |e: &NodeSelectorRequirement| {
        let all = |want: &str| {
            e.operator == "In"
                && e.values
                    .as_ref()
                    .is_some_and(|v| !v.is_empty() && v.iter().all(|x| x == want))
        };
        (own_label_counts && e.key == keys::CAPACITY_TYPE_LABEL && all(keys::ON_DEMAND))
            || (e.key == keys::EKS_CAPACITY_TYPE_LABEL && all(keys::EKS_ON_DEMAND))
    };
    let terms = required_terms(spec);
    let affinity_pins = !terms.is_empty()
        && terms.iter().all(|t| {
            t.match_expressions
                .as_ref()
                .is_some_and(|es| es.iter().any(expression_pins))
        });
    selector_pins || affinity_pins
}

fn required_terms(spec: &SpecView) -> &[NodeSelectorTerm] {
    spec.affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|r| r.node_selector_terms.as_slice())
        .unwrap_or(&[])
}

/// The requirement `key operator values`.
fn requirement(key: &str, operator: &str, values: &[&str]) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.to_owned(),
        operator: operator.to_owned(),
        values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).to_owned()).collect()),
    }
}

fn same_requirement(a: &NodeSelectorRequirement, b: &NodeSelectorRequirement) -> bool {
    let sorted = |r: &NodeSelectorRequirement| {
        let mut v = r.values.clone().unwrap_or_default();
        v.sort();
        v.dedup();
        v
    };
    a.key == b.key && a.operator == b.operator && sorted(a) == sorted(b)
}

/// What the pod must end up with.
struct Wanted {
    tolerations: Vec<Toleration>,
    required: Vec<NodeSelectorRequirement>,
    preferred_spot: bool,
}

fn wanted(capacity: Capacity, nodepool: Option<(&str, Vec<Taint>)>) -> Wanted {
    let spot_toleration = Toleration {
        key: Some(keys::CAPACITY_TYPE_LABEL.to_owned()),
        operator: Some("Equal".to_owned()),
        value: Some(keys::SPOT.to_owned()),
        effect: Some("NoSchedule".to_owned()),
        toleration_seconds: None,
    };
    let mut tolerations = Vec::new();
    let mut required = Vec::new();
    match capacity {
        Capacity::Spot => {
            tolerations.push(spot_toleration);
            required.push(requirement(keys::CAPACITY_TYPE_LABEL, "In", &[keys::SPOT]));
        }
        Capacity::SpotPreferred => {
            tolerations.push(spot_toleration);
            required.push(requirement(keys::NODEPOOL_LABEL, "Exists", &[]));
        }
        Capacity::OnDemand => required.push(requirement(
            keys::CAPACITY_TYPE_LABEL,
            "In",
            &[keys::ON_DEMAND],
        )),
    }
    if let Some((name, taints)) = nodepool {
        required.push(requirement(keys::NODEPOOL_LABEL, "In", &[name]));
        tolerations.extend(taints.iter().map(toleration_for));
    }
    Wanted {
        tolerations,
        required,
        preferred_spot: capacity == Capacity::SpotPreferred,
    }
}

fn toleration_for(taint: &Taint) -> Toleration {
    let value = taint.value.clone().filter(|v| !v.is_empty());
    Toleration {
        key: Some(taint.key.clone()),
        operator: Some(if value.is_some() { "Equal" } else { "Exists" }.to_owned()),
        value,
        effect: Some(taint.effect.clone()),
        toleration_seconds: None,
    }
}

/// Kubernetes' rule for whether `existing` tolerates the taint `wanted` is for.
fn tolerates(existing: &Toleration, wanted: &Toleration) -> bool {
    let effect_ok =
        existing.effect.as_deref().is_none_or(str::is_empty) || existing.effect == wanted.effect;
    if !effect_ok {
        return false;
    }
    let key = existing.key.as_deref().unwrap_or("");
    match existing.operator.as_deref() {
        Some("Exists") => key.is_empty() || Some(key) == wanted.key.as_deref(),
        Some("Equal") | None | Some("") => {
            Some(key) == wanted.key.as_deref()
                && existing.value.as_deref().unwrap_or("") == wanted.value.as_deref().unwrap_or("")
        }
        Some(_) => false,
    }
}

fn to_value<T: serde::Serialize>(item: &T) -> Value {
    // Serialising k8s-openapi structs to a Value cannot fail: no maps with non-string keys.
    serde_json::to_value(item).unwrap_or(Value::Null)
}

fn patch_for(
    pod: &PodView,
    capacity: Capacity,
    nodepool: Option<(&str, Vec<Taint>)>,
    settings: &Settings,
) -> Patch {
    let wanted = wanted(capacity, nodepool);
    let spec_path = Pointer::root().child("spec");
    let mut patch = Vec::new();
    let empty = SpecView::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty);
    if pod.spec.is_none() {
        patch.push(Add::new(&spec_path, json!({})));
    }
    add_tolerations(&mut patch, &spec_path, spec, &wanted.tolerations);
    add_affinity(&mut patch, &spec_path, spec, &wanted);
    if let Some(name) = settings.scheduler_name.as_deref() {
        let current = spec.scheduler_name.as_deref().unwrap_or("");
        if current.is_empty() || current == keys::DEFAULT_SCHEDULER_NAME {
            patch.push(Add::new(&spec_path.child("schedulerName"), json!(name)));
        }
    }
    patch
}

fn add_tolerations(patch: &mut Patch, spec_path: &Pointer, spec: &SpecView, wanted: &[Toleration]) {
    let existing = spec.tolerations.as_deref().unwrap_or(&[]);
    let mut missing: Vec<&Toleration> = Vec::new();
    for toleration in wanted {
        let already = existing
            .iter()
            .chain(missing.iter().copied())
            .any(|e| tolerates(e, toleration));
        if !already {
            missing.push(toleration);
        }
    }
    if missing.is_empty() {
        return;
    }
    let path = spec_path.child("tolerations");
    if spec.tolerations.is_none() {
        patch.push(Add::new(&path, to_value(&missing)));
    } else {
        patch.extend(
            missing
                .into_iter()
                .map(|t| Add::new(&path.end(), to_value(t))),
        );
    }
}

fn add_affinity(patch: &mut Patch, spec_path: &Pointer, spec: &SpecView, wanted: &Wanted) {
    let preferred_term = json!({
        "weight": 100,
        "preference": {"matchExpressions": [requirement(keys::CAPACITY_TYPE_LABEL, "In", &[keys::SPOT])]},
    });
    let affinity_path = spec_path.child("affinity");
    let node_affinity_path = affinity_path.child("nodeAffinity");
    let required_path = node_affinity_path.child("requiredDuringSchedulingIgnoredDuringExecution");
    let preferred_path =
        node_affinity_path.child("preferredDuringSchedulingIgnoredDuringExecution");

    let node_affinity = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref());
    let Some(node_affinity) = node_affinity else {
        // Nothing to merge with: add the whole subtree at the first missing level.
        let mut subtree = serde_json::Map::new();
        if !wanted.required.is_empty() {
            subtree.insert(
                "requiredDuringSchedulingIgnoredDuringExecution".to_owned(),
                json!({"nodeSelectorTerms": [{"matchExpressions": wanted.required}]}),
            );
        }
        if wanted.preferred_spot {
            subtree.insert(
                "preferredDuringSchedulingIgnoredDuringExecution".to_owned(),
                json!([preferred_term]),
            );
        }
        if spec.affinity.is_none() {
            patch.push(Add::new(&affinity_path, json!({"nodeAffinity": subtree})));
        } else {
            patch.push(Add::new(&node_affinity_path, Value::Object(subtree)));
        }
        return;
    };

    match node_affinity
        .required_during_scheduling_ignored_during_execution
        .as_ref()
    {
        None => patch.push(Add::new(
            &required_path,
            json!({"nodeSelectorTerms": [{"matchExpressions": wanted.required}]}),
        )),
        Some(required) if required.node_selector_terms.is_empty() => patch.push(Add::new(
            &required_path.child("nodeSelectorTerms").end(),
            json!({"matchExpressions": wanted.required}),
        )),
        Some(required) => {
            let terms_path = required_path.child("nodeSelectorTerms");
            for (index, term) in required.node_selector_terms.iter().enumerate() {
                let existing = term.match_expressions.as_deref().unwrap_or(&[]);
                let missing: Vec<&NodeSelectorRequirement> = wanted
                    .required
                    .iter()
                    .filter(|w| !existing.iter().any(|e| same_requirement(e, w)))
                    .collect();
                if missing.is_empty() {
                    continue;
                }
                let expressions_path = terms_path.index(index).child("matchExpressions");
                if term.match_expressions.is_none() {
                    patch.push(Add::new(&expressions_path, to_value(&missing)));
                } else {
                    patch.extend(
                        missing
                            .into_iter()
                            .map(|m| Add::new(&expressions_path.end(), to_value(m))),
                    );
                }
            }
        }
    }

    if wanted.preferred_spot {
        let spot = requirement(keys::CAPACITY_TYPE_LABEL, "In", &[keys::SPOT]);
        match node_affinity
            .preferred_during_scheduling_ignored_during_execution
            .as_ref()
        {
            None => patch.push(Add::new(&preferred_path, json!([preferred_term]))),
            Some(preferred) => {
                let present = preferred.iter().any(|p| {
                    p.preference
                        .match_expressions
                        .as_ref()
                        .is_some_and(|es| es.iter().any(|e| same_requirement(e, &spot)))
                });
                if !present {
                    patch.push(Add::new(&preferred_path.end(), preferred_term));
                }
            }
        }
    }
}
