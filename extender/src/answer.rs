//! From request bytes to reply bytes, for both verbs: parse the
//! `ExtenderArgs`, read the index once, run the pure decision
//! ([`crate::filter`], [`crate::score`]), write the reply.
//!
//! With `NodeNames` (`nodeCacheCapable: true`) every node fact comes from
//! the index; with full `Nodes` the request's Node objects are used and the
//! index adds the bound pods and the NodeClaims.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::value::RawValue;

use crate::facts::{pod_requests, InitContainer, NodeFacts, Resources};
use crate::filter::{self, Reason, Window};
use crate::index::{Index, IndexRead, NodeView};
use crate::score::{self, Candidate, Weights};
use crate::slots::{Asker, Kinship};
use crate::wire::{
    node_names, priorities_json, ExtenderArgs, FilterResult, NameStyle, NodeNames, PodView,
    RequirementsView,
};

/// How the extender decides; from flags.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub weights: Weights,
    /// How far back interruption records count.
    pub interruption_window: Duration,
    /// How long after its creation a node holds the room of its NodeClaim's
    /// pods for them ([`filter::holds_room`]); zero (this struct's default,
    /// for tests; the command line's is 20 s) holds nothing.
    pub hold_room_for: Duration,
    /// Steer a pod to the node launched for it ([`score::prefer_launched`]).
    pub prefer_launched_node: bool,
    /// How long after its NodeClaim's creation a pod whose node is still on
    /// its way (not `Initialized`) is kept off nodes holding room for other
    /// pods; zero turns it off.
    pub await_launched_node_for: Duration,
    /// When non-zero, a steered pod is steered to one node only and its
    /// slot there counts as taken for this long, or until its bind is seen
    /// ([`crate::slots::Slots::pencil`]); zero (this struct's default, for
    /// tests; the command line's is 10 s) steers to every slot of its group.
    pub pencil_for: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            weights: Weights::default(),
            interruption_window: Duration::from_secs(3600),
            hold_room_for: Duration::ZERO,
            prefer_launched_node: true,
            await_launched_node_for: Duration::from_secs(60),
            pencil_for: Duration::ZERO,
        }
    }
}

/// Why a request cannot be answered (HTTP 400). Messages are one line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("malformed ExtenderArgs: {0}")]
    Malformed(String),
    #[error("ExtenderArgs has no Pod")]
    MissingPod,
    #[error("ExtenderArgs has neither NodeNames nor Nodes")]
    NoNodes,
    #[error("malformed NodeNames: {0}")]
    BadNodeNames(String),
    #[error("malformed Pod: {0}")]
    BadPod(String),
    #[error("malformed Nodes.items[{index}]: {reason}")]
    BadNode { index: usize, reason: String },
}

/// A filter reply and what it decided.
#[derive(Debug)]
pub struct FilterAnswer {
    pub body: Vec<u8>,
    /// Rejections per reason, indexed by [`Reason::index`].
    pub rejected: [u64; filter::REASONS],
    pub passed: usize,
}

/// The nodes of one request.
enum Nodes<'a> {
    Names(NodeNames<'a>),
    /// Raw items and the facts read from them.
    Full(Vec<(&'a RawValue, NodeFacts)>),
}

struct Parsed<'a> {
    pod: &'a RawValue,
    nodes: Nodes<'a>,
}

fn one_line(message: String) -> String {
    if message.contains('\n') {
        message.replace('\n', " ")
    } else {
        message
    }
}

fn parse(body: &[u8]) -> Result<Parsed<'_>, RequestError> {
    // serde would also read a struct from an array of its fields.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(RequestError::Malformed(
            "expected a JSON object (ExtenderArgs)".to_owned(),
        ));
    }
    let args: ExtenderArgs = serde_json::from_slice(body)
        .map_err(|e| RequestError::Malformed(one_line(e.to_string())))?;
    let pod = args
        .pod
        .filter(|raw| raw.get().trim_start().starts_with('{'))
        .ok_or(RequestError::MissingPod)?;
    let nodes = match (args.node_names, args.nodes) {
        (Some(names), _) => Nodes::Names(
            node_names(names).map_err(|e| RequestError::BadNodeNames(one_line(e.to_string())))?,
        ),
        (None, Some(list)) => {
            let items = list.items.unwrap_or_default();
            let mut full = Vec::with_capacity(items.len());
            for (index, raw) in items.into_iter().enumerate() {
                let node: Node =
                    serde_json::from_str(raw.get()).map_err(|e| RequestError::BadNode {
                        index,
                        reason: one_line(e.to_string()),
                    })?;
                let facts = NodeFacts::from_node(&node);
                if facts.name.is_empty() {
                    return Err(RequestError::BadNode {
                        index,
                        reason: "no metadata.name".to_owned(),
                    });
                }
                full.push((raw, facts));
            }
            Nodes::Full(full)
        }
        (None, None) => return Err(RequestError::NoNodes),
    };
    Ok(Parsed { pod, nodes })
}

fn messages<'a, T>(
    list: &[(T, Reason)],
    name: impl Fn(&T) -> &'a str,
) -> Vec<(&'a str, &'static str)> {
    list.iter().map(|(n, r)| (name(n), r.message())).collect()
}

fn requests(resources: &Option<RequirementsView>) -> Option<&BTreeMap<String, Quantity>> {
    resources.as_ref().and_then(|r| r.requests.as_ref())
}

/// The request's pod as held room sees it: its key as the index keys pods
/// (UID, else `namespace/name`) and its group (its controller's UID, else
/// its key); `None` when room is never held from it: a DaemonSet's pod (its
/// share was counted in when the node was sized) or a pod whose metadata
/// cannot be read.
struct Asking {
    key: String,
    group: Option<String>,
}

impl Asking {
    fn of(pod: PodView) -> Option<Asking> {
        let meta = pod.metadata?;
        let controller = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true));
        if controller.is_some_and(|o| o.kind.as_deref() == Some("DaemonSet")) {
            return None;
        }
        let group = controller
            .and_then(|o| o.uid.clone())
            .filter(|u| !u.is_empty());
        let key = meta.uid.or_else(|| {
            let name = meta.name.as_deref()?;
            Some(format!(
                "{}/{name}",
                meta.namespace.as_deref().unwrap_or_default()
            ))
        })?;
        Some(Asking { key, group })
    }

    fn slots(&self) -> Asker<'_> {
        Asker {
            key: &self.key,
            group: self.group.as_deref().unwrap_or(&self.key),
        }
    }
}

/// The verdict on one node for the request's pod: the memoized one, else
/// whether the node's held room turns the pod away: while the node is in
/// `window`, or while the pod's own node is on its way (`awaiting`).
fn verdict(
    read: &IndexRead,
    view: NodeView,
    asker: Option<&Asking>,
    window: Window,
    awaiting: bool,
) -> Option<Reason> {
    if view.verdict.is_some() {
        return view.verdict;
    }
    let (facts, claim, asker) = (view.facts?, view.claim?, asker?);
    let young = window.covers(facts.created);
    if !young && !awaiting {
        // The common case: no lookup per node.
        return None;
    }
    let held = read.held_from(claim, &facts.name, asker.slots());
    if young {
        return filter::holds_room(facts, held, window);
    }
    filter::awaits_own_node(held, awaiting)
}

/// Answers `POST /filter`; `now` is Unix seconds.
pub fn filter(
    body: &[u8],
    index: &Index,
    settings: &Settings,
    now: i64,
) -> Result<FilterAnswer, RequestError> {
    let parsed = parse(body)?;
    let asker = pod_view(parsed.pod).ok().and_then(Asking::of);
    expire_pencils(index, settings, now);
    let window = Window {
        now,
        seconds: i64::try_from(settings.hold_room_for.as_secs()).unwrap_or(i64::MAX),
    };
    let read = index.read();
    let awaiting = asker.as_ref().is_some_and(|a| {
        read.awaits_launched_node(
            &a.key,
            Window {
                now,
                seconds: i64::try_from(settings.await_launched_node_for.as_secs())
                    .unwrap_or(i64::MAX),
            },
        )
    });
    let verdict = |view| verdict(&read, view, asker.as_ref(), window, awaiting);
    let answer = match &parsed.nodes {
        Nodes::Names(requested) => {
            let names = requested.strs();
            let out = filter::partition(names.iter().map(|name| (*name, verdict(read.node(name)))));
            drop(read);
            let passed = out.passed.len();
            FilterAnswer {
                body: FilterResult {
                    style: requested.style(),
                    failed_nodes: messages(&out.failed, |n| *n),
                    failed_and_unresolvable_nodes: messages(&out.unresolvable, |n| *n),
                    nodes: None,
                    node_names: Some(out.passed),
                    error: "",
                }
                .to_json(),
                rejected: out.counts,
                passed,
            }
        }
        Nodes::Full(nodes) => {
            let out =
                filter::partition(nodes.iter().map(|(raw, facts)| {
                    ((*raw, facts.name.as_str()), verdict(read.node_with(facts)))
                }));
            drop(read);
            FilterAnswer {
                body: FilterResult {
                    style: NameStyle::Escaped,
                    nodes: Some(out.passed.iter().map(|(raw, _)| *raw).collect()),
                    node_names: None,
                    failed_nodes: messages(&out.failed, |(_, n)| *n),
                    failed_and_unresolvable_nodes: messages(&out.unresolvable, |(_, n)| *n),
                    error: "",
                }
                .to_json(),
                rejected: out.counts,
                passed: out.passed.len(),
            }
        }
    };
    Ok(answer)
}

fn pod_view(pod: &RawValue) -> Result<PodView, RequestError> {
    serde_json::from_str(pod.get()).map_err(|e| RequestError::BadPod(one_line(e.to_string())))
}

/// What the pod of a request asks of a node.
pub fn pod_demand(pod: &RawValue) -> Result<Resources, RequestError> {
    demand_of(&pod_view(pod)?)
}

fn demand_of(pod: &PodView) -> Result<Resources, RequestError> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(Resources {
            pods: 1,
            ..Resources::default()
        });
    };
    pod_requests(
        spec.containers
            .iter()
            .flatten()
            .map(|c| requests(&c.resources)),
        spec.init_containers
            .iter()
            .flatten()
            .map(|c| InitContainer {
                requests: requests(&c.resources),
                sidecar: c.restart_policy.as_deref() == Some("Always"),
            }),
        requests(&spec.resources),
        spec.overhead.as_ref(),
    )
    .map_err(|e| RequestError::BadPod(e.to_string()))
}

/// Whether a prioritize call could steer its pod to the node launched for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steering {
    /// The node launched for the pod was among the candidates: it got the top score.
    OwnNode,
    /// Its own node was not a candidate, or other replicas took its slots
    /// there, but nodes holding a slot of its group (another replica's)
    /// were: they got the top score.
    StandIn,
    /// Its own node was a candidate but other replicas took its slots
    /// there, and no slot of its group was among the candidates: its own
    /// node got the top score all the same.
    OwnNodeTaken,
    /// A node is being launched for the pod, but neither it nor a slot of
    /// its group was among the candidates (not there yet, gated, full, or
    /// filtered out).
    OwnNodeAbsent,
    /// No node was launched for the pod (or steering is off).
    NotLaunchedFor,
}

impl Steering {
    pub const ALL: [Steering; 5] = [
        Steering::OwnNode,
        Steering::StandIn,
        Steering::OwnNodeTaken,
        Steering::OwnNodeAbsent,
        Steering::NotLaunchedFor,
    ];

    pub fn as_label(self) -> &'static str {
        match self {
            Steering::OwnNode => "own_node",
            Steering::StandIn => "stand_in",
            Steering::OwnNodeTaken => "own_node_taken",
            Steering::OwnNodeAbsent => "own_node_absent",
            Steering::NotLaunchedFor => "not_launched_for",
        }
    }
}

/// Answers `POST /prioritize`; `now` is Unix seconds.
pub fn prioritize(
    body: &[u8],
    index: &Index,
    settings: &Settings,
    now: i64,
) -> Result<Vec<u8>, RequestError> {
    prioritize_steering(body, index, settings, now).map(|(reply, _)| reply)
}

/// [`prioritize`], with whether the pod could be steered to its own node.
pub fn prioritize_steering(
    body: &[u8],
    index: &Index,
    settings: &Settings,
    now: i64,
) -> Result<(Vec<u8>, Steering), RequestError> {
    let parsed = parse(body)?;
    // One parse of the pod for both its requests and its key.
    let view = pod_view(parsed.pod)?;
    let pod = demand_of(&view)?;
    let asker = settings
        .prefer_launched_node
        .then(|| Asking::of(view))
        .flatten();
    let window = i64::try_from(settings.interruption_window.as_secs()).unwrap_or(i64::MAX);
    let pencilling = expire_pencils(index, settings, now);
    let read = index.read();
    let awaited = asker.as_ref().is_some_and(|a| read.is_launched_for(&a.key));
    let steering = |kinship: &[Kinship]| {
        if kinship.contains(&Kinship::Own) {
            Steering::OwnNode
        } else if kinship.contains(&Kinship::StandIn) {
            Steering::StandIn
        } else if kinship.contains(&Kinship::Taken) {
            Steering::OwnNodeTaken
        } else if awaited {
            Steering::OwnNodeAbsent
        } else {
            Steering::NotLaunchedFor
        }
    };
    let pools = read.interruptions_since(now.saturating_sub(window));
    let candidate = |view: NodeView| {
        let kinship = match (view.claim, view.facts, asker.as_ref()) {
            (Some(claim), Some(facts), Some(asker)) => {
                read.kinship(claim, &facts.name, asker.slots())
            }
            _ => Kinship::Stranger,
        };
        let candidate = Candidate::new(
            view.basis.as_ref(),
            view.requested,
            pools.get(view.pool),
            now,
        );
        (candidate, kinship)
    };
    let (names, style) = match &parsed.nodes {
        Nodes::Names(requested) => (requested.strs(), requested.style()),
        Nodes::Full(nodes) => (
            Cow::Owned(nodes.iter().map(|(_, f)| f.name.as_str()).collect()),
            NameStyle::Escaped,
        ),
    };
    let (candidates, kinship): (Vec<_>, Vec<_>) = match &parsed.nodes {
        Nodes::Names(_) => names.iter().map(|name| candidate(read.node(name))).unzip(),
        Nodes::Full(nodes) => nodes
            .iter()
            .map(|(_, facts)| candidate(read.node_with(facts)))
            .unzip(),
    };
    drop(read);
    let mut scores = score::prioritize(&settings.weights, &pod, candidates);
    let mut steered = score::steer_to(&kinship);
    if let (true, Some(asker)) = (pencilling, asker.as_ref()) {
        if let Some(best) = score::narrow_to_best(&mut steered, &scores) {
            index.pencil(&asker.key, names[best], now);
        }
    }
    score::prefer_launched(&mut scores, &steered);
    Ok((
        priorities_json(names.iter().copied().zip(scores), style),
        steering(&kinship),
    ))
}

/// Drops the pencils that outlived [`Settings::pencil_for`]; whether
/// pencilling is on.
fn expire_pencils(index: &Index, settings: &Settings, now: i64) -> bool {
    let seconds = settings.pencil_for.as_secs();
    if seconds > 0 {
        index.expire_pencils(now, i64::try_from(seconds).unwrap_or(i64::MAX));
    }
    seconds > 0
}
