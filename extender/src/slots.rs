//! The room new NodeClaims hold for the pods they were launched for, kept
//! as slots per *group* of interchangeable pods: the replicas of one
//! controller (same template, so same requests and constraints). The
//! solver places a group's pods as a count per node; which replica lands
//! in which slot does not matter.
//!
//! That is what lets a burst follow the plan. kube-scheduler places a
//! Deployment spread over zones (maxSkew 1) in lockstep, one pod per zone
//! at a time, in its own order: a pod whose own node is in a zone that is
//! ahead is refused there and goes where it may. If it takes a slot of its
//! own group, the plan holds: the replica that slot was for takes the one
//! left on the first pod's node. If it takes anyone's room, the pods
//! planned there are crowded off and need new nodes.
//!
//! Pure bookkeeping, kept up to date change by change: a slot of group `G`
//! on claim `C` is open while fewer pods of `G` are bound (or steered, see
//! below) to `C`'s node than `C` was launched for, and as long as some pod
//! of `G` a claim was launched for is neither bound nor steered yet.
//!
//! **Steered pods.** kube-scheduler places the next pod as soon as it has
//! chosen a node for the last one; the bind reaches the extender through
//! its watch a round trip or more later (seconds, when the API server
//! makes the bind wait). Until then the slot the last pod took looks open,
//! and the next replica is steered to the same node, into room planned for
//! another group, whose pod is crowded off. So a prioritize call that
//! steers a pod to one node *pencils* it in there ([`Slots::pencil`]): the
//! slot counts as taken until the pod's bind is seen (wherever it lands) or
//! the pencil expires ([`Slots::expire`]).

use foldhash::HashMap;

/// A reserved pod: its group, the claims launched for it, whether bound.
#[derive(Clone, Debug)]
struct Reserved {
    group: String,
    claims: Vec<String>,
    bound: bool,
}

/// What one claim was launched for.
#[derive(Clone, Debug, Default)]
struct Planned {
    pods: Vec<String>,
    /// Pods per group.
    groups: Vec<(String, u32)>,
}

/// The pod a question is about: its key (UID) and its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asker<'a> {
    pub key: &'a str,
    pub group: &'a str,
}

/// How a claim stands to one pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kinship {
    /// Launched for this pod, which is not bound yet, and a slot of its
    /// group is still open there.
    Own,
    /// Launched for this pod, but other replicas took every slot of its
    /// group there: it may take the slot one of them left (a
    /// [`Kinship::StandIn`] elsewhere); landing here would crowd off a pod
    /// of another group planned here.
    Taken,
    /// Holds an open slot of the pod's group, which the pod (itself
    /// launched for elsewhere) may take in place of a replica.
    StandIn,
    /// Neither.
    Stranger,
}

/// A reserved pod steered to one node, not bound yet.
#[derive(Clone, Debug)]
struct Pencil {
    group: String,
    node: String,
    /// Unix seconds.
    at: i64,
}

/// Pencils set aside while a claim is replaced ([`Slots::pencils_of`]).
#[derive(Debug, Default)]
pub struct Kept(Vec<(String, Pencil)>);

#[derive(Debug, Default)]
pub struct Slots {
    planned: HashMap<String, Planned>,
    reserved: HashMap<String, Reserved>,
    /// Per group: reserved pods not bound yet.
    unbound: HashMap<String, u32>,
    /// Per node, per group: pods bound there.
    bound_here: HashMap<String, HashMap<String, u32>>,
    /// Per pod: where it was steered; only reserved pods not bound yet.
    pencils: HashMap<String, Pencil>,
    /// Per group: pencilled pods.
    pencilled: HashMap<String, u32>,
    /// Per node, per group: pods pencilled there.
    pencilled_here: HashMap<String, HashMap<String, u32>>,
}

fn bump_at(map: &mut HashMap<String, HashMap<String, u32>>, node: &str, group: &str, up: bool) {
    if up {
        bump(map.entry(node.to_owned()).or_default(), group, true);
    } else if let Some(here) = map.get_mut(node) {
        bump(here, group, false);
        if here.is_empty() {
            map.remove(node);
        }
    }
}

fn count_at(map: &HashMap<String, HashMap<String, u32>>, node: &str, group: &str) -> u32 {
    map.get(node)
        .and_then(|h| h.get(group))
        .copied()
        .unwrap_or(0)
}

fn bump(map: &mut HashMap<String, u32>, key: &str, up: bool) {
    if up {
        *map.entry(key.to_owned()).or_default() += 1;
    } else if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl Slots {
    /// Adds what `claim` was launched for: `pods` as (key, group);
    /// `is_bound` says which of them are bound already.
    /// Its pods' pencils outlive the change when they are still reserved.
    pub fn add_claim<'a>(
        &mut self,
        claim: &str,
        pods: impl IntoIterator<Item = (&'a str, &'a str)>,
        is_bound: impl Fn(&str) -> bool,
    ) {
        let kept = self.pencils_of(claim);
        self.remove_claim(claim);
        let mut planned = Planned::default();
        for (key, group) in pods {
            let entry = self.reserved.entry(key.to_owned()).or_insert_with(|| {
                let bound = is_bound(key);
                if !bound {
                    bump(&mut self.unbound, group, true);
                }
                Reserved {
                    group: group.to_owned(),
                    claims: Vec::new(),
                    bound,
                }
            });
            if entry.claims.iter().any(|c| c == claim) {
                continue;
            }
            entry.claims.push(claim.to_owned());
            planned.pods.push(key.to_owned());
            match planned.groups.iter_mut().find(|(g, _)| *g == entry.group) {
                Some((_, n)) => *n += 1,
                None => planned.groups.push((entry.group.clone(), 1)),
            }
        }
        if !planned.pods.is_empty() {
            self.planned.insert(claim.to_owned(), planned);
        }
        self.restore(kept);
    }

    /// The pencils of the pods `claim` was launched for, to be
    /// [restored](Slots::restore) after the claim is replaced: a claim
    /// changes many times while its node comes up.
    pub fn pencils_of(&self, claim: &str) -> Kept {
        Kept(self.planned.get(claim).map_or_else(Vec::new, |planned| {
            planned
                .pods
                .iter()
                .filter_map(|key| Some((key.clone(), self.pencils.get(key)?.clone())))
                .collect()
        }))
    }

    /// Pencils again the pods of `kept` that are still reserved and not bound.
    pub fn restore(&mut self, kept: Kept) {
        for (key, pencil) in kept.0 {
            if !self.pencils.contains_key(&key) {
                self.pencil(&key, &pencil.node, pencil.at);
            }
        }
    }

    pub fn remove_claim(&mut self, claim: &str) {
        let Some(planned) = self.planned.remove(claim) else {
            return;
        };
        for key in planned.pods {
            let Some(entry) = self.reserved.get_mut(&key) else {
                continue;
            };
            entry.claims.retain(|c| c != claim);
            if entry.claims.is_empty() {
                if !entry.bound {
                    bump(&mut self.unbound, &entry.group, false);
                }
                self.reserved.remove(&key);
                self.erase(&key);
            }
        }
    }

    /// A pod of `group` is bound to `node`.
    pub fn bind(&mut self, key: &str, group: &str, node: &str) {
        bump_at(&mut self.bound_here, node, group, true);
        if let Some(entry) = self.reserved.get_mut(key).filter(|e| !e.bound) {
            entry.bound = true;
            bump(&mut self.unbound, &entry.group, false);
        }
        self.erase(key);
    }

    /// Whether more pods of `group` are bound to `node` than `claim` (its
    /// NodeClaim) was launched for, when it was launched for any.
    pub fn overfilled(&self, claim: &str, node: &str, group: &str) -> bool {
        self.planned.get(claim).is_some_and(|planned| {
            planned
                .groups
                .iter()
                .any(|(g, count)| g == group && count_at(&self.bound_here, node, g) > *count)
        })
    }

    /// The pod `key` was steered to `node` at `at` (Unix seconds): its
    /// slot there counts as taken until its bind is seen. Only a reserved
    /// pod not bound yet is pencilled; a pencil of its own elsewhere is
    /// replaced.
    pub fn pencil(&mut self, key: &str, node: &str, at: i64) {
        let Some(group) = self.waiting(key).map(|e| e.group.clone()) else {
            return;
        };
        self.erase(key);
        bump(&mut self.pencilled, &group, true);
        bump_at(&mut self.pencilled_here, node, &group, true);
        self.pencils.insert(
            key.to_owned(),
            Pencil {
                group,
                node: node.to_owned(),
                at,
            },
        );
    }

    /// Forgets the pencils made before `before` (Unix seconds): pods whose
    /// bind never came there (the scheduling attempt failed).
    pub fn expire(&mut self, before: i64) {
        let stale: Vec<String> = self
            .pencils
            .iter()
            .filter(|(_, p)| p.at < before)
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            self.erase(&key);
        }
    }

    fn erase(&mut self, key: &str) {
        if let Some(old) = self.pencils.remove(key) {
            bump(&mut self.pencilled, &old.group, false);
            bump_at(&mut self.pencilled_here, &old.node, &old.group, false);
        }
    }

    /// The pod `key` of `group`, bound to `node`, is gone from there.
    pub fn unbind(&mut self, key: &str, group: &str, node: &str) {
        bump_at(&mut self.bound_here, node, group, false);
        if let Some(entry) = self.reserved.get_mut(key).filter(|e| e.bound) {
            entry.bound = false;
            bump(&mut self.unbound, &entry.group, true);
        }
    }

    /// Forgets every bound pod (before a relist binds them again).
    pub fn unbind_all(&mut self) {
        self.bound_here.clear();
        self.unbound.clear();
        for entry in self.reserved.values_mut() {
            entry.bound = false;
            bump(&mut self.unbound, &entry.group, true);
        }
    }

    /// Open slots of `group` on a claim launched for `count` of its pods,
    /// whose node is `node`, as the pod `asker` sees them: its own pencil
    /// (it is asked about again) takes no slot.
    fn open(&self, node: &str, group: &str, count: u32, asker: Option<&str>) -> u32 {
        let mine = asker
            .and_then(|key| self.pencils.get(key))
            .filter(|p| p.group == group);
        let mine_here = u32::from(mine.is_some_and(|p| p.node == node));
        let taken = count_at(&self.bound_here, node, group)
            + count_at(&self.pencilled_here, node, group).saturating_sub(mine_here);
        let waiting = self.unbound.get(group).copied().unwrap_or(0);
        let steered = self.pencilled.get(group).copied().unwrap_or(0);
        let waiting = waiting.saturating_sub(steered.saturating_sub(u32::from(mine.is_some())));
        count.saturating_sub(taken).min(waiting)
    }

    /// Open slots on `claim` (node `node`), over all its groups.
    pub fn held(&self, claim: &str, node: &str) -> u32 {
        self.planned.get(claim).map_or(0, |planned| {
            planned
                .groups
                .iter()
                .map(|(group, count)| self.open(node, group, *count, None))
                .sum()
        })
    }

    /// The reservation of the pod `key`, while it is not bound.
    fn waiting(&self, key: &str) -> Option<&Reserved> {
        self.reserved.get(key).filter(|e| !e.bound)
    }

    /// How `claim` (node `node`) stands to the pod `asker`.
    pub fn kinship(&self, claim: &str, node: &str, asker: Asker<'_>) -> Kinship {
        self.waiting(asker.key).map_or(Kinship::Stranger, |own| {
            self.kinship_of(own, claim, node, asker)
        })
    }

    fn kinship_of(&self, own: &Reserved, claim: &str, node: &str, asker: Asker<'_>) -> Kinship {
        let open = self.planned.get(claim).is_some_and(|planned| {
            planned.groups.iter().any(|(g, count)| {
                g == asker.group && self.open(node, g, *count, Some(asker.key)) > 0
            })
        });
        let launched_for = own.claims.iter().any(|c| c == claim);
        match (launched_for, open) {
            (true, true) => Kinship::Own,
            (true, false) => Kinship::Taken,
            (false, true) => Kinship::StandIn,
            (false, false) => Kinship::Stranger,
        }
    }

    /// Open slots on `claim` (node `node`) that `asker` may not take: none
    /// when the claim was launched for it or holds a slot of its group, and
    /// none for a pod no claim was launched for (only a pod whose own node
    /// is on its way is kept off; see `filter::awaits_own_node`).
    pub fn held_from(&self, claim: &str, node: &str, asker: Asker<'_>) -> u32 {
        let Some(own) = self.waiting(asker.key) else {
            return 0;
        };
        match self.kinship_of(own, claim, node, asker) {
            Kinship::Own | Kinship::Taken | Kinship::StandIn => 0,
            Kinship::Stranger => self.held(claim, node),
        }
    }

    /// Whether some claim was launched for the pod `key`, not bound yet.
    pub fn is_launched_for(&self, key: &str) -> bool {
        self.waiting(key).is_some()
    }

    /// The claims launched for the pod `key`, not bound yet.
    pub fn claims_of(&self, key: &str) -> &[String] {
        self.waiting(key).map_or(&[], |e| e.claims.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn asker<'a>(key: &'a str, group: &'a str) -> Asker<'a> {
        Asker { key, group }
    }

    /// Claim `c1` (node n1) for a1 and b1, `c2` (node n2) for a2 and b2:
    /// groups `a` and `b`, one of each per node.
    fn two_nodes() -> Slots {
        let mut slots = Slots::default();
        slots.add_claim("c1", [("a1", "a"), ("b1", "b")], |_| false);
        slots.add_claim("c2", [("a2", "a"), ("b2", "b")], |_| false);
        slots
    }

    #[test]
    fn a_replica_may_take_a_slot_of_its_group_and_the_other_takes_its_own() {
        let mut slots = two_nodes();
        assert_eq!(slots.kinship("c1", "n1", asker("a1", "a")), Kinship::Own);
        assert_eq!(
            slots.kinship("c2", "n2", asker("a1", "a")),
            Kinship::StandIn
        );
        assert_eq!(slots.held_from("c2", "n2", asker("a1", "a")), 0);
        // a1 lands on n2, in a2's slot: n2 holds b2's only, n1 one for a2.
        slots.bind("a1", "a", "n2");
        assert_eq!(slots.held("c2", "n2"), 1);
        assert_eq!(slots.held("c1", "n1"), 2);
        assert_eq!(
            slots.kinship("c2", "n2", asker("a2", "a")),
            Kinship::Taken,
            "a1 took it: a2 there would crowd b2 off"
        );
        assert_eq!(slots.held_from("c2", "n2", asker("a2", "a")), 0);
        assert_eq!(
            slots.kinship("c1", "n1", asker("a2", "a")),
            Kinship::StandIn
        );
        slots.bind("a2", "a", "n1");
        slots.bind("b2", "b", "n2");
        assert_eq!(slots.held("c2", "n2"), 0);
        assert_eq!(slots.held("c1", "n1"), 1, "b1's slot");
    }

    #[test]
    fn a_pod_of_another_group_is_held_off_and_one_launched_for_nowhere_is_not() {
        let mut slots = two_nodes();
        slots.add_claim("c3", [("c1", "c")], |_| false);
        assert_eq!(
            slots.kinship("c1", "n1", asker("c1", "c")),
            Kinship::Stranger
        );
        assert_eq!(slots.held_from("c1", "n1", asker("c1", "c")), 2);
        assert_eq!(slots.held_from("c1", "n1", asker("x", "a")), 0);
        slots.bind("c1", "c", "n3");
        assert_eq!(
            slots.held_from("c1", "n1", asker("c1", "c")),
            0,
            "bound: no node is its own any more"
        );
    }

    #[test]
    fn slots_close_once_no_pod_of_the_group_waits() {
        let mut slots = two_nodes();
        // a1 and a2 both land on an old node: no a-slot stays open anywhere.
        slots.bind("a1", "a", "old");
        assert_eq!(slots.held("c1", "n1"), 2, "a2 may still take a1's");
        slots.bind("a2", "a", "old");
        assert_eq!(slots.held("c1", "n1"), 1);
        assert_eq!(slots.held("c2", "n2"), 1);
        slots.unbind("a2", "a", "old");
        assert_eq!(slots.held("c1", "n1"), 2);
        slots.remove_claim("c1");
        assert_eq!(slots.held("c1", "n1"), 0);
        assert!(!slots.is_launched_for("b1"));
        assert_eq!(slots.claims_of("a2"), ["c2".to_owned()]);
    }

    #[test]
    fn a_steered_pod_takes_its_slot_before_its_bind_is_seen() {
        // One replica of group `a` per claim.
        let mut slots = Slots::default();
        for i in 1..=3 {
            slots.add_claim(&format!("c{i}"), [(format!("a{i}").as_str(), "a")], |_| {
                false
            });
        }
        assert_eq!(
            slots.kinship("c2", "n2", asker("a3", "a")),
            Kinship::StandIn
        );
        slots.pencil("a1", "n2", 100);
        assert_eq!(slots.held("c2", "n2"), 0, "a1 is on its way there");
        assert_eq!(
            slots.kinship("c2", "n2", asker("a3", "a")),
            Kinship::Stranger,
            "the slot a1 was steered to is taken"
        );
        assert_eq!(
            slots.kinship("c1", "n1", asker("a3", "a")),
            Kinship::StandIn,
            "a1's own slot is free for another replica"
        );
        assert_eq!(
            slots.kinship("c2", "n2", asker("a1", "a")),
            Kinship::StandIn,
            "asked again, a1 is not kept off by its own pencil"
        );
        assert_eq!(slots.kinship("c2", "n2", asker("a2", "a")), Kinship::Taken);
        // The claim changes (its node came): the pencil stays.
        slots.add_claim("c1", [("a1", "a")], |_| false);
        assert_eq!(slots.held("c2", "n2"), 0);
        slots.expire(100);
        assert_eq!(slots.held("c2", "n2"), 0, "made at 100: not before it");
        slots.expire(101);
        assert_eq!(slots.held("c2", "n2"), 1, "expired");
        slots.pencil("a1", "n2", 102);
        slots.bind("a1", "a", "n2");
        assert_eq!(slots.held("c2", "n2"), 0, "bound there now");
        assert!(!slots.overfilled("c2", "n2", "a"));
        slots.bind("a3", "a", "n2");
        assert!(slots.overfilled("c2", "n2", "a"));
        slots.bind("b9", "b", "n2");
        assert!(
            !slots.overfilled("c2", "n2", "b"),
            "c2 was launched for no pod of b"
        );
        slots.pencil("nobody", "n2", 103);
        assert!(
            slots.pencils.is_empty(),
            "only reserved pods not bound are pencilled"
        );
    }

    /// Random operations on a small world.
    #[derive(Clone, Debug)]
    enum Op {
        AddClaim(usize, Vec<usize>),
        RemoveClaim(usize),
        Bind(usize, usize),
        Unbind(usize),
        UnbindAll,
        Pencil(usize, usize),
        Expire(usize),
    }

    const PODS: usize = 8;
    const CLAIMS: usize = 3;

    fn group_of(pod: usize) -> String {
        format!("g{}", pod % 3)
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..CLAIMS, proptest::collection::vec(0..PODS, 0..5))
                .prop_map(|(c, pods)| Op::AddClaim(c, pods)),
            (0..CLAIMS).prop_map(Op::RemoveClaim),
            (0..PODS, 0..CLAIMS + 1).prop_map(|(p, n)| Op::Bind(p, n)),
            (0..PODS).prop_map(Op::Unbind),
            Just(Op::UnbindAll),
            (0..PODS, 0..CLAIMS + 1).prop_map(|(p, n)| Op::Pencil(p, n)),
            (0..40usize).prop_map(Op::Expire),
        ]
    }

    /// The open slots derived from scratch: what the incremental
    /// bookkeeping must always equal.
    fn derived(
        claims: &BTreeMap<usize, Vec<usize>>,
        bound: &BTreeMap<usize, usize>,
        pencils: &BTreeMap<usize, (usize, usize)>,
        claim: usize,
    ) -> u32 {
        let Some(pods) = claims.get(&claim) else {
            return 0;
        };
        let mut reserved: Vec<usize> = claims.values().flatten().copied().collect();
        reserved.sort_unstable();
        reserved.dedup();
        let mut groups: Vec<String> = pods.iter().map(|p| group_of(*p)).collect();
        groups.sort();
        groups.dedup();
        groups
            .iter()
            .map(|g| {
                let count = pods.iter().filter(|p| group_of(**p) == *g).count() as u32;
                let here = bound
                    .iter()
                    .chain(pencils.iter().map(|(p, (n, _))| (p, n)))
                    .filter(|(p, n)| group_of(**p) == *g && **n == claim)
                    .count() as u32;
                let waiting = reserved
                    .iter()
                    .filter(|p| {
                        group_of(**p) == *g && !bound.contains_key(p) && !pencils.contains_key(p)
                    })
                    .count() as u32;
                count.saturating_sub(here).min(waiting)
            })
            .sum()
    }

    proptest! {
        #[test]
        fn the_bookkeeping_always_equals_a_derivation_from_scratch(ops in proptest::collection::vec(op(), 0..40)) {
            let mut slots = Slots::default();
            let mut claims: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            // pod → node index (CLAIMS stands for an old node without a claim).
            let mut bound: BTreeMap<usize, usize> = BTreeMap::new();
            // pod → (node index, when): steered pods, reserved and not bound.
            let mut pencils: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
            let key = |p: usize| format!("p{p}");
            for (step, op) in ops.into_iter().enumerate() {
                match op {
                    Op::AddClaim(c, mut pods) => {
                        pods.sort_unstable();
                        pods.dedup();
                        let keys: Vec<(String, String)> = pods.iter().map(|p| (key(*p), group_of(*p))).collect();
                        let bound_now = bound.clone();
                        slots.add_claim(&format!("c{c}"), keys.iter().map(|(k, g)| (k.as_str(), g.as_str())), |k| {
                            bound_now.keys().any(|p| key(*p) == k)
                        });
                        if pods.is_empty() { claims.remove(&c); } else { claims.insert(c, pods); }
                    }
                    Op::RemoveClaim(c) => {
                        slots.remove_claim(&format!("c{c}"));
                        claims.remove(&c);
                    }
                    Op::Bind(p, n) => {
                        if let Some(old) = bound.insert(p, n) {
                            slots.unbind(&key(p), &group_of(p), &format!("n{old}"));
                        }
                        slots.bind(&key(p), &group_of(p), &format!("n{n}"));
                        pencils.remove(&p);
                    }
                    Op::Pencil(p, n) => {
                        slots.pencil(&key(p), &format!("n{n}"), step as i64);
                        let reserved = claims.values().any(|pods| pods.contains(&p));
                        if reserved && !bound.contains_key(&p) {
                            pencils.insert(p, (n, step));
                        }
                    }
                    Op::Expire(before) => {
                        slots.expire(before as i64);
                        pencils.retain(|_, (_, at)| *at >= before);
                    }
                    Op::Unbind(p) => {
                        if let Some(old) = bound.remove(&p) {
                            slots.unbind(&key(p), &group_of(p), &format!("n{old}"));
                        }
                    }
                    Op::UnbindAll => {
                        slots.unbind_all();
                        for (p, n) in &bound {
                            slots.bind(&key(*p), &group_of(*p), &format!("n{n}"));
                        }
                    }
                }
                pencils.retain(|p, _| claims.values().any(|pods| pods.contains(p)));
                for c in 0..CLAIMS {
                    prop_assert_eq!(
                        slots.held(&format!("c{c}"), &format!("n{c}")),
                        derived(&claims, &bound, &pencils, c)
                    );
                }
            }
        }
    }
}
