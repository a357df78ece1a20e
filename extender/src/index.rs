//! The watch-fed index the request path reads: per node its facts, what its
//! bound pods request and its NodeClaim; recent interruption records.
//! Requests only read it (a shared lock, no I/O); `cache.rs` feeds it from
//! watches, tests and benchmarks fill it directly.
//!
//! The index also memoizes, per node, the parts of the decisions that only
//! change when the node or its NodeClaim does: the filter verdict
//! ([`filter::check`]) and the score basis ([`Basis::new`]). A call with
//! 5,000 candidates then costs one hash lookup per node, instead of
//! re-deriving the same answers from scattered data thousands of times a
//! second. Both are the same pure functions the request path would call.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// foldhash: every call looks up thousands of node names, and SipHash
/// would be a large share of its time.
use foldhash::HashMap;
use spotwright_api::interruption::InterruptionRecord;
use spotwright_api::prices::PriceCatalog;

use crate::facts::{ClaimFacts, NodeFacts, PodFacts, Resources};
use crate::filter::{self, Reason, Window};
use crate::score::{self, Basis};
use crate::slots::{Asker, Kinship, Slots};

/// One change from a watch.
#[derive(Clone, Debug, PartialEq)]
pub enum Change<T> {
    /// Added or modified.
    Upsert(T),
    /// Deleted (or no longer of interest), by key.
    Remove(String),
    /// A full list after a (re)start: replaces everything of that kind.
    Replace(Vec<T>),
}

/// An interruption record and the key of the Event it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyedInterruption {
    /// `namespace/name` of the Event.
    pub key: String,
    pub record: InterruptionRecord,
}

/// A small number standing for one (instance type, zone) pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolId(u32);

/// Interruptions per pool within a window, for one call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolCounts(Vec<u32>);

impl PoolCounts {
    pub fn get(&self, pool: Option<PoolId>) -> u32 {
        pool.and_then(|p| self.0.get(p.0 as usize))
            .copied()
            .unwrap_or(0)
    }
}

/// How many objects of each kind the index holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sizes {
    pub nodes: usize,
    pub pods: usize,
    pub nodeclaims: usize,
    pub interruptions: usize,
    /// Binds, since the start, that put more pods of a group on a node than
    /// its NodeClaim was launched for ([`Slots::overfilled`]).
    pub overfills: u64,
}

/// The memoized decisions of a known node.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Decided {
    verdict: Option<Reason>,
    basis: Basis,
    pool: Option<PoolId>,
}

/// Everything known under one node name, so that a call reads each
/// candidate with one lookup.
#[derive(Debug, Default)]
struct NodeEntry {
    /// Sum of the requests of the pods bound to the node (`pods` counts them).
    requested: Resources,
    /// `Some` exactly when `facts` is.
    decided: Option<Decided>,
    /// The NodeClaim whose `status.nodeName` is this name.
    claim: Option<Arc<ClaimFacts>>,
    facts: Option<Box<NodeFacts>>,
}

impl NodeEntry {
    fn is_empty(&self) -> bool {
        self.facts.is_none() && self.requested.is_zero() && self.claim.is_none()
    }
}

/// Node entries, stored densely: the name table stays small (name → slot)
/// and a call's lookups touch fewer cache lines than with entries inline.
#[derive(Debug, Default)]
struct Nodes {
    slots: HashMap<String, u32>,
    entries: Vec<NodeEntry>,
    free: Vec<u32>,
}

impl Nodes {
    fn get(&self, name: &str) -> Option<&NodeEntry> {
        let slot = *self.slots.get(name)?;
        self.entries.get(slot as usize)
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut NodeEntry> {
        let slot = *self.slots.get(name)?;
        self.entries.get_mut(slot as usize)
    }

    /// The entry of `name`, created empty when there is none.
    fn get_or_insert(&mut self, name: &str) -> &mut NodeEntry {
        let slot = match self.slots.get(name) {
            Some(slot) => *slot as usize,
            None => {
                let slot = match self.free.pop() {
                    Some(slot) => slot as usize,
                    None => {
                        self.entries.push(NodeEntry::default());
                        self.entries.len() - 1
                    }
                };
                self.slots.insert(name.to_owned(), slot as u32);
                slot
            }
        };
        &mut self.entries[slot]
    }

    fn remove(&mut self, name: &str) {
        if let Some(slot) = self.slots.remove(name) {
            if let Some(entry) = self.entries.get_mut(slot as usize) {
                *entry = NodeEntry::default();
                self.free.push(slot);
            }
        }
    }

    /// Drops the entries nothing refers to any more.
    fn prune(&mut self) {
        let entries = &mut self.entries;
        let free = &mut self.free;
        self.slots
            .retain(|_, slot| match entries.get_mut(*slot as usize) {
                Some(entry) if !entry.is_empty() => true,
                Some(entry) => {
                    *entry = NodeEntry::default();
                    free.push(*slot);
                    false
                }
                None => false,
            });
    }

    fn names_with_facts(&self) -> Vec<String> {
        self.slots
            .iter()
            .filter(|(_, slot)| {
                self.entries
                    .get(**slot as usize)
                    .is_some_and(|e| e.facts.is_some())
            })
            .map(|(name, _)| name.clone())
            .collect()
    }
}

#[derive(Debug)]
struct State {
    catalog: &'static PriceCatalog,
    nodes: Nodes,
    node_count: usize,
    pods: HashMap<String, PodFacts>,
    claims: HashMap<String, Arc<ClaimFacts>>,
    /// NodeClaims without `status.nodeName` yet, by `status.providerID`.
    claim_by_provider: HashMap<String, Arc<ClaimFacts>>,
    /// The room NodeClaims hold for the pods they were launched for.
    slots: Slots,
    interruptions: HashMap<String, (InterruptionRecord, PoolId)>,
    /// See [`Sizes::overfills`].
    overfills: u64,
    /// When pencils last expired (Unix seconds).
    pencils_expired: i64,
    /// instance type → zone → pool.
    pools: HashMap<String, HashMap<String, PoolId>>,
    pool_count: u32,
}

/// The index. Share it behind an `Arc`.
#[derive(Debug)]
pub struct Index {
    state: RwLock<State>,
}

impl Index {
    /// An empty index that prices nodes with `catalog`.
    pub fn new(catalog: &'static PriceCatalog) -> Self {
        Index {
            state: RwLock::new(State {
                catalog,
                nodes: Nodes::default(),
                node_count: 0,
                pods: HashMap::default(),
                claims: HashMap::default(),
                claim_by_provider: HashMap::default(),
                slots: Slots::default(),
                interruptions: HashMap::default(),
                overfills: 0,
                pencils_expired: i64::MIN,
                pools: HashMap::default(),
                pool_count: 0,
            }),
        }
    }

    /// A consistent view for one request.
    pub fn read(&self) -> IndexRead<'_> {
        IndexRead(
            self.state
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn apply_nodes(&self, change: Change<NodeFacts>) {
        let mut state = self.write();
        match change {
            Change::Upsert(facts) => state.set_node(facts),
            Change::Remove(name) => state.remove_node(&name),
            Change::Replace(all) => {
                for name in state.nodes.names_with_facts() {
                    state.remove_node(&name);
                }
                for facts in all {
                    state.set_node(facts);
                }
            }
        }
    }

    pub fn apply_pods(&self, change: Change<PodFacts>) {
        match change {
            Change::Upsert(pod) => {
                let mut state = self.write();
                let moved = state
                    .pods
                    .get(&pod.key)
                    .is_none_or(|old| old.node_name != pod.node_name);
                let bound_at = moved.then(|| (pod.group.clone(), pod.node_name.clone()));
                state.remove_pod(&pod.key);
                state.add_pod(pod);
                if let Some((group, node)) = bound_at {
                    state.count_overfill(&group, &node);
                }
            }
            Change::Remove(key) => self.write().remove_pod(&key),
            Change::Replace(all) => {
                // Sum outside the lock: a relist can hold tens of thousands of pods.
                let mut requested: HashMap<String, Resources> = HashMap::default();
                let mut pods = HashMap::with_capacity_and_hasher(all.len(), Default::default());
                for pod in all {
                    let slot = requested.entry(pod.node_name.clone()).or_default();
                    *slot = slot.plus(pod.requests);
                    pods.insert(pod.key.clone(), pod);
                }
                let mut state = self.write();
                state.pods = pods;
                for entry in &mut state.nodes.entries {
                    entry.requested = Resources::default();
                }
                for (node, sum) in requested {
                    state.nodes.get_or_insert(&node).requested = sum;
                }
                state.nodes.prune();
                state.bind_all_again();
            }
        }
    }

    pub fn apply_claims(&self, change: Change<ClaimFacts>) {
        let mut state = self.write();
        match change {
            Change::Upsert(claim) => {
                let kept = state.slots.pencils_of(&claim.name);
                state.remove_claim(&claim.name);
                state.add_claim(claim);
                state.slots.restore(kept);
            }
            Change::Remove(name) => state.remove_claim(&name),
            Change::Replace(all) => {
                let names: Vec<String> = state.claims.keys().cloned().collect();
                for name in names {
                    state.remove_claim(&name);
                }
                for claim in all {
                    state.add_claim(claim);
                }
            }
        }
    }

    /// Applies interruption records, then forgets those that happened
    /// before `forget_before` (Unix seconds): they can no longer count.
    pub fn apply_interruptions(&self, change: Change<KeyedInterruption>, forget_before: i64) {
        let mut state = self.write();
        match change {
            Change::Upsert(keyed) => {
                let pool = state.intern(&keyed.record.instance_type, &keyed.record.zone);
                state.interruptions.insert(keyed.key, (keyed.record, pool));
            }
            Change::Remove(key) => {
                state.interruptions.remove(&key);
            }
            Change::Replace(all) => {
                state.interruptions.clear();
                for keyed in all {
                    let pool = state.intern(&keyed.record.instance_type, &keyed.record.zone);
                    state.interruptions.insert(keyed.key, (keyed.record, pool));
                }
            }
        }
        state
            .interruptions
            .retain(|_, (r, _)| r.at_unix_seconds >= forget_before);
    }

    pub fn sizes(&self) -> Sizes {
        self.read().sizes()
    }

    /// The reserved pod `pod_key` was steered to `node` alone at `now`
    /// (Unix seconds): its slot there is taken until its bind is seen
    /// ([`Slots::pencil`]), or until [`Index::expire_pencils`] drops it.
    pub fn pencil(&self, pod_key: &str, node: &str, now: i64) {
        self.write().slots.pencil(pod_key, node, now);
    }

    /// Forgets the pencils older than `seconds` at `now` (Unix seconds);
    /// at most once a second, as it walks every pencil.
    pub fn expire_pencils(&self, now: i64, seconds: i64) {
        if self.read().0.pencils_expired >= now {
            return;
        }
        let mut state = self.write();
        state.pencils_expired = now;
        state.slots.expire(now.saturating_sub(seconds));
    }
}

impl State {
    fn intern(&mut self, instance_type: &str, zone: &str) -> PoolId {
        if let Some(id) = self.pool_id(instance_type, zone) {
            return id;
        }
        let id = PoolId(self.pool_count);
        self.pool_count += 1;
        self.pools
            .entry(instance_type.to_owned())
            .or_default()
            .insert(zone.to_owned(), id);
        id
    }

    fn pool_id(&self, instance_type: &str, zone: &str) -> Option<PoolId> {
        self.pools.get(instance_type)?.get(zone).copied()
    }

    /// Re-derives the memoized decisions of one node.
    fn decide(&mut self, name: &str) {
        let catalog = self.catalog;
        let Some(entry) = self.nodes.get(name) else {
            return;
        };
        let decided = entry.facts.as_deref().map(|facts| {
            let claim = entry.claim.as_deref();
            (
                filter::check(facts, claim),
                Basis::new(facts, claim, catalog),
                score::pool(facts, claim).map(|(it, z)| (it.to_owned(), z.to_owned())),
            )
        });
        let decided = decided.map(|(verdict, basis, pool)| Decided {
            verdict,
            basis,
            pool: pool.map(|(it, z)| self.intern(&it, &z)),
        });
        if let Some(entry) = self.nodes.get_mut(name) {
            entry.decided = decided;
        }
    }

    fn set_node(&mut self, facts: NodeFacts) {
        let name = facts.name.clone();
        let entry = self.nodes.get_or_insert(&name);
        if entry.facts.is_none() {
            self.node_count += 1;
        }
        entry.facts = Some(Box::new(facts));
        self.decide(&name);
    }

    fn remove_node(&mut self, name: &str) {
        let Some(entry) = self.nodes.get_mut(name) else {
            return;
        };
        if entry.facts.take().is_some() {
            self.node_count -= 1;
        }
        entry.decided = None;
        // Keep the pod sums and the claim while they still name the node.
        if entry.is_empty() {
            self.nodes.remove(name);
        }
    }

    fn add_pod(&mut self, pod: PodFacts) {
        let entry = self.nodes.get_or_insert(&pod.node_name);
        entry.requested = entry.requested.plus(pod.requests);
        self.slots.bind(&pod.key, &pod.group, &pod.node_name);
        self.pods.insert(pod.key.clone(), pod);
    }

    /// Counts a bind of a pod of `group` that overfills `node`.
    fn count_overfill(&mut self, group: &str, node: &str) {
        let Some(claim) = self.nodes.get(node).and_then(|e| e.claim.as_deref()) else {
            return;
        };
        if self.slots.overfilled(&claim.name, node, group) {
            self.overfills += 1;
        }
    }

    /// Starts holding the room of `claim` for its pods not bound yet.
    fn hold(&mut self, claim: &ClaimFacts) {
        let Some(reserved) = &claim.reserved else {
            return;
        };
        let pods = &self.pods;
        self.slots
            .add_claim(&claim.name, reserved.members(), |key| {
                pods.contains_key(key)
            });
    }

    /// Binds every pod again in the slots, after a relist of pods.
    fn bind_all_again(&mut self) {
        self.slots.unbind_all();
        for pod in self.pods.values() {
            self.slots.bind(&pod.key, &pod.group, &pod.node_name);
        }
    }

    fn remove_pod(&mut self, key: &str) {
        let Some(old) = self.pods.remove(key) else {
            return;
        };
        self.slots.unbind(&old.key, &old.group, &old.node_name);
        if let Some(entry) = self.nodes.get_mut(&old.node_name) {
            entry.requested = entry.requested.minus(old.requests);
            if entry.is_empty() {
                self.nodes.remove(&old.node_name);
            }
        }
    }

    fn add_claim(&mut self, claim: ClaimFacts) {
        self.hold(&claim);
        let claim = Arc::new(claim);
        if let Some(node) = &claim.node_name {
            self.nodes.get_or_insert(node).claim = Some(claim.clone());
            self.decide(node);
        } else if let Some(provider) = &claim.provider_id {
            self.claim_by_provider
                .insert(provider.clone(), claim.clone());
        }
        self.claims.insert(claim.name.clone(), claim);
    }

    fn remove_claim(&mut self, name: &str) {
        let Some(old) = self.claims.remove(name) else {
            return;
        };
        self.slots.remove_claim(&old.name);
        // Only drop links that still point at this claim.
        if let Some(node) = &old.node_name {
            if let Some(entry) = self.nodes.get_mut(node) {
                if entry.claim.as_ref().is_some_and(|c| c.name == name) {
                    entry.claim = None;
                    if entry.is_empty() {
                        self.nodes.remove(node);
                    } else {
                        self.decide(node);
                    }
                }
            }
        } else if let Some(provider) = &old.provider_id {
            if self
                .claim_by_provider
                .get(provider)
                .is_some_and(|c| c.name == name)
            {
                self.claim_by_provider.remove(provider);
            }
        }
    }
}

/// A read view of the index, held for the length of one request.
pub struct IndexRead<'a>(RwLockReadGuard<'a, State>);

/// What the index knows under one node name.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NodeView<'a> {
    /// `None` when the Node has not been seen.
    pub facts: Option<&'a NodeFacts>,
    /// What the pods bound to it request.
    pub requested: Resources,
    /// Its NodeClaim: the one whose `status.nodeName` is the node's name, else
    /// one without a nodeName whose `status.providerID` is the node's.
    pub claim: Option<&'a ClaimFacts>,
    /// The filter's verdict (`None`: passes, or unknown node).
    pub verdict: Option<Reason>,
    /// The score basis; `None` for an unknown node.
    pub basis: Option<Basis>,
    pub pool: Option<PoolId>,
}

impl IndexRead<'_> {
    /// Everything known about a node, decisions included.
    pub fn node(&self, name: &str) -> NodeView<'_> {
        let Some(entry) = self.0.nodes.get(name) else {
            return NodeView::default();
        };
        let facts = entry.facts.as_deref();
        let by_provider = match (&entry.claim, facts) {
            (None, Some(facts)) => self.claim_by_provider(facts.provider_id.as_deref()),
            _ => None,
        };
        match (facts, by_provider) {
            // A claim matched by providerID only: decide now (rare and short-lived:
            // until the provisioner records the node's name on the claim).
            (Some(facts), Some(claim)) => self.view(facts, entry.requested, Some(claim)),
            _ => NodeView {
                facts,
                requested: entry.requested,
                claim: entry.claim.as_deref(),
                verdict: entry.decided.and_then(|d| d.verdict),
                basis: entry.decided.map(|d| d.basis),
                pool: entry.decided.and_then(|d| d.pool),
            },
        }
    }

    /// The view of a node whose facts come from elsewhere (the request's own
    /// Node objects): pods and NodeClaim from the index, decisions made now.
    pub fn node_with<'a>(&'a self, facts: &'a NodeFacts) -> NodeView<'a> {
        let (requested, claim) = match self.0.nodes.get(&facts.name) {
            Some(entry) => (entry.requested, entry.claim.as_deref()),
            None => (Resources::default(), None),
        };
        let claim = claim.or_else(|| self.claim_by_provider(facts.provider_id.as_deref()));
        self.view(facts, requested, claim)
    }

    fn view<'a>(
        &'a self,
        facts: &'a NodeFacts,
        requested: Resources,
        claim: Option<&'a ClaimFacts>,
    ) -> NodeView<'a> {
        NodeView {
            facts: Some(facts),
            requested,
            claim,
            verdict: filter::check(facts, claim),
            basis: Some(Basis::new(facts, claim, self.0.catalog)),
            pool: score::pool(facts, claim).and_then(|(it, z)| self.0.pool_id(it, z)),
        }
    }

    fn claim_by_provider(&self, provider_id: Option<&str>) -> Option<&ClaimFacts> {
        if self.0.claim_by_provider.is_empty() {
            return None;
        }
        provider_id
            .and_then(|p| self.0.claim_by_provider.get(p))
            .map(|c| &**c)
    }

    /// How many pods `claim` (node `node`) holds room for that `asker`
    /// may not take their place. None when the claim was launched for the
    /// asker or holds a slot of its group (see `slots`), and none for a pod
    /// no claim holds room for: only a pod with a node of its own on the
    /// way is kept off, as that node's arrival makes the scheduler try it
    /// again. Any other pod would wait for the scheduler's periodic retry,
    /// with the provisioner seeing room for it and launching nothing.
    pub fn held_from(&self, claim: &ClaimFacts, node: &str, asker: Asker<'_>) -> u64 {
        u64::from(self.0.slots.held_from(&claim.name, node, asker))
    }

    /// How `claim` (node `node`) stands to the pod `asker`: launched for
    /// it, holding a slot it may take, or neither.
    pub fn kinship(&self, claim: &ClaimFacts, node: &str, asker: Asker<'_>) -> Kinship {
        self.0.slots.kinship(&claim.name, node, asker)
    }

    /// Whether some claim was launched for the pod `pod_key`, not bound yet.
    pub fn is_launched_for(&self, pod_key: &str) -> bool {
        self.0.slots.is_launched_for(pod_key)
    }

    /// Whether a node launched for the pod `pod_key` is still on its way:
    /// a claim launched for it is not `Initialized` yet, and `window`
    /// covers the claim's creation.
    pub fn awaits_launched_node(&self, pod_key: &str, window: Window) -> bool {
        self.0.slots.claims_of(pod_key).iter().any(|name| {
            self.0
                .claims
                .get(name)
                .is_some_and(|c| !c.initialized && window.covers(c.created))
        })
    }

    /// Interruptions per pool that happened at or after `since` (Unix seconds).
    pub fn interruptions_since(&self, since: i64) -> PoolCounts {
        let mut counts = vec![0u32; self.0.pool_count as usize];
        for (record, pool) in self.0.interruptions.values() {
            if record.at_unix_seconds >= since {
                if let Some(slot) = counts.get_mut(pool.0 as usize) {
                    *slot = slot.saturating_add(record.count);
                }
            }
        }
        PoolCounts(counts)
    }

    /// The id of a pool, if the index has met it.
    pub fn pool_id(&self, instance_type: &str, zone: &str) -> Option<PoolId> {
        self.0.pool_id(instance_type, zone)
    }

    pub fn sizes(&self) -> Sizes {
        Sizes {
            nodes: self.0.node_count,
            pods: self.0.pods.len(),
            nodeclaims: self.0.claims.len(),
            interruptions: self.0.interruptions.len(),
            overfills: self.0.overfills,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> Index {
        Index::new(PriceCatalog::embedded().unwrap())
    }

    fn node(name: &str) -> NodeFacts {
        NodeFacts {
            name: name.to_owned(),
            provider_id: Some(format!("aws:///z/{name}")),
            instance_type: Some("m5.large".into()),
            zone: Some("z".into()),
            ready: true,
            ..NodeFacts::default()
        }
    }

    fn pod(key: &str, node: &str, cpu: u64) -> PodFacts {
        PodFacts {
            key: key.to_owned(),
            group: key.to_owned(),
            node_name: node.to_owned(),
            requests: Resources {
                cpu_millis: cpu,
                memory_bytes: cpu * 1000,
                pods: 1,
            },
        }
    }

    fn requested(index: &Index, node: &str) -> Resources {
        index.read().node(node).requested
    }

    #[test]
    fn pod_requests_add_up_per_node_and_follow_changes() {
        let index = index();
        index.apply_nodes(Change::Upsert(node("n1")));
        index.apply_pods(Change::Upsert(pod("a", "n1", 100)));
        index.apply_pods(Change::Upsert(pod("b", "n1", 200)));
        assert_eq!(requested(&index, "n1").cpu_millis, 300);
        assert_eq!(requested(&index, "n1").pods, 2);
        // A modified pod replaces its old request; a moved one leaves its node.
        index.apply_pods(Change::Upsert(pod("a", "n1", 50)));
        assert_eq!(requested(&index, "n1").cpu_millis, 250);
        index.apply_pods(Change::Upsert(pod("b", "n2", 200)));
        assert_eq!(requested(&index, "n1").cpu_millis, 50);
        assert_eq!(requested(&index, "n2").cpu_millis, 200);
        index.apply_pods(Change::Remove("a".into()));
        assert_eq!(requested(&index, "n1"), Resources::default());
        index.apply_pods(Change::Remove("unknown".into()));
        assert_eq!(index.sizes().pods, 1);
    }

    #[test]
    fn pods_seen_before_their_node_are_kept() {
        let index = index();
        index.apply_pods(Change::Upsert(pod("a", "n1", 100)));
        assert_eq!(index.read().node("n1").facts, None);
        assert_eq!(index.read().node("n1").basis, None);
        assert_eq!(index.sizes().nodes, 0);
        index.apply_nodes(Change::Upsert(node("n1")));
        assert_eq!(index.sizes().nodes, 1);
        assert_eq!(requested(&index, "n1").cpu_millis, 100);
        index.apply_nodes(Change::Remove("n1".into()));
        assert_eq!(index.sizes().nodes, 0);
        assert_eq!(index.read().node("n1").basis, None);
        assert_eq!(requested(&index, "n1").cpu_millis, 100);
    }

    #[test]
    fn a_relist_replaces_everything() {
        let index = index();
        index.apply_nodes(Change::Upsert(node("gone")));
        index.apply_pods(Change::Upsert(pod("old", "gone", 100)));
        index.apply_nodes(Change::Replace(vec![node("n1"), node("n2")]));
        index.apply_pods(Change::Replace(vec![
            pod("a", "n1", 10),
            pod("b", "n1", 20),
        ]));
        assert_eq!(
            index.sizes(),
            Sizes {
                nodes: 2,
                pods: 2,
                nodeclaims: 0,
                interruptions: 0,
                overfills: 0,
            }
        );
        assert_eq!(requested(&index, "n1").cpu_millis, 30);
        assert_eq!(requested(&index, "gone"), Resources::default());
        assert_eq!(index.read().node("gone").facts, None);
    }

    #[test]
    fn overfills_count_binds_past_the_claim_and_pencils_outlive_its_changes() {
        use crate::facts::ReservedRoom;
        let index = index();
        index.apply_nodes(Change::Upsert(node("n1")));
        let claim = ClaimFacts {
            name: "c1".into(),
            node_name: Some("n1".into()),
            reserved: Some(ReservedRoom {
                pods: vec!["a".into(), "b".into()],
                groups: vec!["g".into(), "g".into()],
                ..ReservedRoom::default()
            }),
            ..ClaimFacts::default()
        };
        index.apply_claims(Change::Upsert(claim.clone()));
        index.pencil("a", "n1", 100);
        // The claim changes (say its status): a's pencil stays.
        index.apply_claims(Change::Upsert(ClaimFacts {
            initialized: true,
            ..claim
        }));
        assert_eq!(index.read().0.slots.held("c1", "n1"), 1, "b's slot only");
        index.expire_pencils(110, 10);
        assert_eq!(index.read().0.slots.held("c1", "n1"), 1, "10 s old");
        index.expire_pencils(111, 10);
        assert_eq!(index.read().0.slots.held("c1", "n1"), 2);
        let bind = |key: &str| PodFacts {
            group: "g".into(),
            ..pod(key, "n1", 10)
        };
        for key in ["a", "b", "c"] {
            index.apply_pods(Change::Upsert(bind(key)));
        }
        assert_eq!(index.sizes().overfills, 1, "c is one more than c1 was for");
        // c's status changes, still on n1: not another bind.
        index.apply_pods(Change::Upsert(bind("c")));
        assert_eq!(index.sizes().overfills, 1);
    }

    #[test]
    fn verdicts_follow_the_node_and_its_claim() {
        let index = index();
        index.apply_nodes(Change::Upsert(node("n1")));
        assert_eq!(index.read().node("n1").verdict, None);
        let drifted = ClaimFacts {
            name: "c1".into(),
            node_name: Some("n1".into()),
            drifted: true,
            ..ClaimFacts::default()
        };
        index.apply_claims(Change::Upsert(drifted.clone()));
        assert_eq!(index.read().node("n1").verdict, Some(Reason::Drifted));
        assert!(
            index
                .read()
                .node("n1")
                .basis
                .unwrap()
                .lifecycle
                .unwrap()
                .drifted
        );
        index.apply_nodes(Change::Upsert(NodeFacts {
            deleting: true,
            ..node("n1")
        }));
        assert_eq!(index.read().node("n1").verdict, Some(Reason::Deleting));
        index.apply_nodes(Change::Upsert(node("n1")));
        index.apply_claims(Change::Upsert(ClaimFacts {
            drifted: false,
            ..drifted
        }));
        assert_eq!(index.read().node("n1").verdict, None);
        index.apply_claims(Change::Upsert(ClaimFacts {
            name: "c1".into(),
            node_name: Some("n1".into()),
            disrupting: true,
            ..ClaimFacts::default()
        }));
        assert_eq!(index.read().node("n1").verdict, Some(Reason::Disrupting));
        index.apply_claims(Change::Remove("c1".into()));
        assert_eq!(index.read().node("n1").verdict, None);
        assert_eq!(index.read().node("n1").basis.unwrap().lifecycle, None);
    }

    #[test]
    fn claims_are_found_by_node_name_then_provider_id() {
        let index = index();
        let by_name = ClaimFacts {
            name: "c1".into(),
            node_name: Some("n1".into()),
            ..ClaimFacts::default()
        };
        let by_provider = ClaimFacts {
            name: "c2".into(),
            provider_id: Some("aws:///z/n2".into()),
            disrupting: true,
            ..ClaimFacts::default()
        };
        index.apply_claims(Change::Upsert(by_name));
        index.apply_claims(Change::Upsert(by_provider.clone()));
        index.apply_nodes(Change::Upsert(node("n1")));
        index.apply_nodes(Change::Upsert(node("n2")));
        index.apply_nodes(Change::Upsert(node("n3")));
        let read = index.read();
        assert_eq!(read.node("n1").claim.map(|c| c.name.as_str()), Some("c1"));
        let n2 = read.node("n2");
        assert_eq!(n2.claim.map(|c| c.name.as_str()), Some("c2"));
        assert_eq!(n2.verdict, Some(Reason::Disrupting));
        assert_eq!(read.node("n3").claim, None);
        // Nodes from a request find their claims the same way.
        let from_request = node("n2");
        assert_eq!(
            read.node_with(&from_request).verdict,
            Some(Reason::Disrupting)
        );
        drop(read);
        // The claim registers its node: the link moves to the name.
        index.apply_claims(Change::Upsert(ClaimFacts {
            node_name: Some("n2".into()),
            ..by_provider
        }));
        assert_eq!(
            index.read().node("n2").claim.map(|c| c.name.as_str()),
            Some("c2")
        );
        assert_eq!(index.read().node("n2").verdict, Some(Reason::Disrupting));
        index.apply_claims(Change::Remove("c1".into()));
        assert!(index.read().node("n1").claim.is_none());
        assert_eq!(index.sizes().nodeclaims, 1);
        // A relist of claims drops links of claims that are gone.
        index.apply_claims(Change::Replace(vec![]));
        assert!(index.read().node("n2").claim.is_none());
        assert_eq!(index.read().node("n2").verdict, None);
        assert_eq!(index.sizes().nodeclaims, 0);
    }

    #[test]
    fn interruptions_count_per_pool_inside_the_window() {
        let index = index();
        let record = |zone: &str, at: i64| InterruptionRecord {
            instance_type: "m5.large".into(),
            zone: zone.into(),
            at_unix_seconds: at,
            count: 1,
        };
        for (key, zone, at) in [
            ("e1", "a", 100),
            ("e2", "a", 200),
            ("e3", "b", 300),
            ("e4", "a", 10),
        ] {
            index.apply_interruptions(
                Change::Upsert(KeyedInterruption {
                    key: key.into(),
                    record: record(zone, at),
                }),
                50,
            );
        }
        // e4 was already too old to keep.
        assert_eq!(index.sizes().interruptions, 3);
        let read = index.read();
        let (a, b) = (read.pool_id("m5.large", "a"), read.pool_id("m5.large", "b"));
        let pools = read.interruptions_since(150);
        assert_eq!(pools.get(a), 1);
        assert_eq!(pools.get(b), 1);
        assert_eq!(pools.get(read.pool_id("m5.large", "c")), 0);
        assert_eq!(read.interruptions_since(0).get(a), 2);
        drop(read);
        index.apply_interruptions(Change::Remove("e1".into()), 0);
        let read = index.read();
        assert_eq!(read.interruptions_since(0).get(a), 1);
        drop(read);
        // A node of pool (m5.large, a) is tied to the same pool.
        index.apply_nodes(Change::Upsert(NodeFacts {
            zone: Some("a".into()),
            ..node("n1")
        }));
        let read = index.read();
        assert_eq!(read.node("n1").pool, a);
        assert_eq!(read.interruptions_since(0).get(read.node("n1").pool), 1);
    }
}
