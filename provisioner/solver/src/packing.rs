//! First-fit decreasing over existing nodes, the nodes opened in this solve,
//! then new nodes from the pools in weight order. A new node keeps every
//! instance type (and offering) that still fits all of its pods.

use crate::catalog::PoolCatalog;
use crate::classes::{ClassPool, Classes};
use crate::limits::{max_cost, Budget};
use crate::model::{ExistingNode, NodePoolFacts};
use crate::offerings::{zone_slots, zones_of, SlotMask};
use crate::pods::PodFacts;
use crate::resources::{Res, CPU, MEMORY};
use crate::topology::{NodeTally, ZoneCounts};
use crate::Input;

pub(crate) struct ExistingState {
    pub allocatable: Res,
    pub requested: Res,
    pub zone: Option<usize>,
    pub tally: NodeTally,
}

/// A node opened in this solve.
#[derive(Clone, Debug)]
pub(crate) struct OpenNode {
    pub catalog: usize,
    pub pods: Vec<usize>,
    /// Sum of the pods' requests (no DaemonSets: those are per type).
    pub requests: Res,
    /// (pool type index, allowed slots), cheapest type first.
    pub types: Vec<(u32, SlotMask)>,
    /// Per-dimension maximum of what the remaining types leave for pods:
    /// a cheap first test before filtering types.
    pub upper: Res,
    /// Pinned zone, once a pod that spreads by zone (or is counted by such
    /// a spread) is on it.
    pub zone: Option<usize>,
    pub tally: NodeTally,
    /// The largest cost among the remaining types, held against the pool's
    /// limits (empty for a pool without limits).
    pub reserved: Vec<u64>,
    /// Cpu and memory left in the cheapest remaining type: the quick test
    /// for a pod that would ride for free.
    pub free: (u64, u64),
    /// Union of the remaining types' slots.
    pub slots: SlotMask,
    /// Opened under `minValuesPolicy: BestEffort` for a pod no node keeping
    /// `minValues` could take: its types may keep fewer values.
    pub relaxed: bool,
}

pub(crate) struct Placement {
    pub to_existing: Vec<(usize, usize)>,
    pub open: Vec<OpenNode>,
    /// Pods no node could take; the reason is worked out afterwards.
    pub unplaced: Vec<usize>,
}

/// The result of trying one pod on one node, before committing.
pub(crate) struct Fit {
    pub types: Vec<(u32, SlotMask)>,
    pub zone: Option<usize>,
}

pub(crate) struct Packer<'s> {
    pub input: &'s Input<'s>,
    pub catalogs: &'s [PoolCatalog],
    /// Catalog indices, heaviest pool first, ties by name.
    pub pool_order: Vec<usize>,
    pub classes: &'s Classes,
    pub pods: &'s [PodFacts],
    pub existing: Vec<ExistingState>,
    pub zone_counts: ZoneCounts,
    pub budgets: Vec<Budget>,
    pub open: Vec<OpenNode>,
    /// Open nodes that may still take the smallest pod, in opening order.
    pub active: Vec<usize>,
    pub smallest_pod: Res,
    /// Per catalog, a node with no pods and every type, cloned (not rebuilt)
    /// for each new node of a pool without limits.
    pub templates: Vec<Option<OpenNode>>,
}

impl<'s> Packer<'s> {
    pub fn new(
        input: &'s Input<'s>,
        catalogs: &'s [PoolCatalog],
        classes: &'s Classes,
        pods: &'s [PodFacts],
        existing: Vec<ExistingState>,
        zone_counts: ZoneCounts,
    ) -> Self {
        let nodepools: &[NodePoolFacts] = input.nodepools;
        let mut pool_order: Vec<usize> = (0..catalogs.len()).collect();
        pool_order.sort_by(|a, b| {
            let (pa, pb) = (
                &nodepools[catalogs[*a].nodepool],
                &nodepools[catalogs[*b].nodepool],
            );
            pb.weight
                .cmp(&pa.weight)
                .then_with(|| pa.name.cmp(&pb.name))
        });
        let budgets = catalogs
            .iter()
            .map(|c| Budget::new(&nodepools[c.nodepool].limits))
            .collect();
        let mut smallest_pod = pods.first().map(|p| p.requests.clone()).unwrap_or_default();
        for pod in pods {
            for i in 0..4 {
                smallest_pod.base[i] = smallest_pod.base[i].min(pod.requests.base[i]);
            }
            for (a, b) in smallest_pod.ext.iter_mut().zip(&pod.requests.ext) {
                *a = (*a).min(*b);
            }
        }
        Packer {
            input,
            catalogs,
            pool_order,
            classes,
            pods,
            existing,
            zone_counts,
            budgets,
            open: Vec::new(),
            active: Vec::new(),
            smallest_pod,
            templates: Vec::new(),
        }
        .with_templates()
    }

    fn with_templates(mut self) -> Self {
        self.templates = (0..self.catalogs.len())
            .map(|c| self.build_empty_node(c, false))
            .collect();
        self
    }

    pub fn run(&mut self) -> Placement {
        let mut order: Vec<usize> = (0..self.pods.len()).collect();
        // First-fit decreasing by (cpu, memory), as Karpenter sorts; pods
        // with pod affinity after the rest, so their targets are placed.
        order.sort_by(|a, b| {
            let (fa, fb) = (&self.pods[*a], &self.pods[*b]);
            let follows = |f: &PodFacts| !f.affinity_host.is_empty() || !f.affinity_zone.is_empty();
            let (ra, rb) = (&fa.requests.base, &fb.requests.base);
            follows(fa)
                .cmp(&follows(fb))
                .then(rb[CPU].cmp(&ra[CPU]))
                .then(rb[MEMORY].cmp(&ra[MEMORY]))
        });
        let mut to_existing = Vec::new();
        let mut unplaced = Vec::new();
        for pod in order {
            if self.pods[pod].unsupported.is_some() {
                unplaced.push(pod);
                continue;
            }
            if let Some(node) = self.best_existing(pod) {
                self.commit_existing(pod, node);
                to_existing.push((pod, node));
                continue;
            }
            if self.place_on_open(pod) {
                continue;
            }
            if !self.open_new(pod, false) && !self.open_new(pod, true) {
                unplaced.push(pod);
            }
        }
        self.repack();
        self.merge_nodes();
        let open = std::mem::take(&mut self.open)
            .into_iter()
            .filter(|n| !n.pods.is_empty())
            .collect();
        Placement {
            to_existing,
            open,
            unplaced,
        }
    }

    /// The existing node the pod fits on that meets its soft constraints,
    /// then ends fullest.
    fn best_existing(&self, pod: usize) -> Option<usize> {
        let facts = &self.pods[pod];
        let class = &self.classes.list[facts.class];
        let mut best: Option<((bool, f64), usize)> = None;
        for (i, node) in self.existing.iter().enumerate() {
            if !class.existing[i] || !node.requested.fits_with(&facts.requests, &node.allocatable) {
                continue;
            }
            if !node.tally.anti_affinity_allows(&facts.matches, &facts.anti)
                || !node.tally.hostname_spread_allows(&facts.hostname_spread)
                || !self.host_affinity_allows(facts, &node.tally)
            {
                continue;
            }
            if facts.needs_zone {
                match node.zone {
                    Some(z) if self.zone_allows(facts, class.eligible_zones, z) => {}
                    _ => continue,
                }
            }
            let mut after = node.requested.clone();
            after.add_assign(&facts.requests);
            let soft = self.soft_allows(facts, &node.tally, node.zone, class.eligible_zones);
            let score = (soft, after.fullness(&node.allocatable));
            let better = |(soft_before, full_before): (bool, f64)| match (score.0, soft_before) {
                (true, false) => true,
                (false, true) => false,
                _ => score.1 > full_before,
            };
            if best.is_none_or(|(b, _)| better(b)) {
                best = Some((score, i));
            }
        }
        best.map(|(_, i)| i)
    }

    fn commit_existing(&mut self, pod: usize, node: usize) {
        let facts = &self.pods[pod];
        let state = &mut self.existing[node];
        state.requested.add_assign(&facts.requests);
        state.tally.add_pod(&facts.matches, &facts.anti);
        self.zone_counts.see(&facts.matches);
        if let Some(z) = state.zone {
            self.zone_counts.add(&facts.matches, z);
        }
    }

    /// Among the nodes opened in this solve: first one whose current
    /// cheapest type still has room for the pod (it rides for free), else
    /// the first that can grow to take it.
    fn place_on_open(&mut self, pod: usize) -> bool {
        let facts = &self.pods[pod];
        let eligible = self.classes.list[facts.class].eligible_zones;
        let ride = |soft_only: bool| {
            (0..self.active.len()).find_map(|position| {
                let node = &self.open[self.active[position]];
                if !self.fits_cheapest(node, pod)
                    || (soft_only && !self.soft_allows(facts, &node.tally, node.zone, eligible))
                {
                    return None;
                }
                let fit = self.try_fit(node, pod)?;
                let keeps_cheapest =
                    fit.types.first().map(|t| t.0) == node.types.first().map(|t| t.0);
                keeps_cheapest.then_some((position, fit))
            })
        };
        // A free ride that meets the soft constraints first: it costs the same.
        let free_ride = if facts.has_soft() {
            ride(true).or_else(|| ride(false))
        } else {
            ride(false)
        };
        if let Some((position, fit)) = free_ride {
            self.commit_at(position, pod, fit);
            return true;
        }
        let grown = (0..self.active.len()).find_map(|position| {
            self.try_fit(&self.open[self.active[position]], pod)
                .map(|fit| (position, fit))
        });
        let Some((position, fit)) = grown else {
            return false;
        };
        // Growing costs the step to a dearer type; a node of its own may be cheaper.
        let node = &self.open[self.active[position]];
        let pool = &self.catalogs[node.catalog];
        let before = node
            .types
            .first()
            .map_or(0.0, |(t, _)| pool.types[*t as usize].cheapest);
        let after = fit
            .types
            .first()
            .map_or(f64::INFINITY, |(t, _)| pool.types[*t as usize].cheapest);
        if self
            .cheapest_new_node(pod)
            .is_some_and(|alone| alone < after - before)
            && self.open_new(pod, false)
        {
            return true;
        }
        self.commit_at(position, pod, fit);
        true
    }

    /// Price of the cheapest type of the first pool (by weight) that could
    /// take the pod alone; limits and zones are left to `open_new`.
    fn cheapest_new_node(&self, pod: usize) -> Option<f64> {
        let facts = &self.pods[pod];
        self.pool_order.iter().find_map(|catalog| {
            let ClassPool::Allowed(masks) = &self.classes.list[facts.class].pools[*catalog] else {
                return None;
            };
            let pool = &self.catalogs[*catalog];
            if pool.unusable.is_some() {
                return None;
            }
            pool.types
                .iter()
                .zip(masks)
                .find(|(t, mask)| **mask != 0 && facts.requests.fits_in(&t.for_pods))
                .map(|(t, _)| t.cheapest)
        })
    }

    fn commit_at(&mut self, position: usize, pod: usize, fit: Fit) {
        let node = self.active[position];
        self.commit_open(node, pod, fit);
        if !self.open[node]
            .requests
            .fits_with(&self.smallest_pod, &self.open[node].upper)
        {
            self.active.remove(position);
        }
    }

    /// Cheap test: the pod fits what the node's cheapest remaining type
    /// leaves, with no constraint against it. `try_fit` confirms.
    pub(crate) fn fits_cheapest(&self, node: &OpenNode, pod: usize) -> bool {
        let facts = &self.pods[pod];
        if node.free.0 < facts.requests.base[CPU] || node.free.1 < facts.requests.base[MEMORY] {
            return false;
        }
        let Some((cheapest, mask)) = node.types.first() else {
            return false;
        };
        let ClassPool::Allowed(masks) = &self.classes.list[facts.class].pools[node.catalog] else {
            return false;
        };
        mask & masks[*cheapest as usize] != 0
            && node.requests.fits_with(
                &facts.requests,
                &self.catalogs[node.catalog].types[*cheapest as usize].for_pods,
            )
            && node.tally.anti_affinity_allows(&facts.matches, &facts.anti)
            && node.tally.hostname_spread_allows(&facts.hostname_spread)
            && (!facts.needs_zone || node.zone.is_some())
    }

    /// Opens a node for `pod` in the first pool (by weight) that can take
    /// it; `relaxed`: only in `BestEffort` pools, `minValues` not enforced.
    fn open_new(&mut self, pod: usize, relaxed: bool) -> bool {
        for position in 0..self.pool_order.len() {
            let catalog = self.pool_order[position];
            if relaxed && !self.catalogs[catalog].best_effort {
                continue;
            }
            let Some(mut empty) = self.empty_node(catalog, true) else {
                continue;
            };
            empty.relaxed = relaxed;
            if let Some(fit) = self.try_fit(&empty, pod) {
                let index = self.open.len();
                self.open.push(empty);
                self.commit_open(index, pod, fit);
                if self.open[index]
                    .requests
                    .fits_with(&self.smallest_pod, &self.open[index].upper)
                {
                    self.active.push(index);
                }
                return true;
            }
        }
        false
    }

    /// A node of this pool with no pods yet: every type the pool's limits
    /// still admit (or every type, when `within_limits` is false).
    pub(crate) fn empty_node(&self, catalog: usize, within_limits: bool) -> Option<OpenNode> {
        if !within_limits || self.budgets[catalog].is_unlimited() {
            if let Some(Some(template)) = self.templates.get(catalog) {
                return Some(template.clone());
            }
        }
        self.build_empty_node(catalog, within_limits)
    }

    fn build_empty_node(&self, catalog: usize, within_limits: bool) -> Option<OpenNode> {
        let budget = &self.budgets[catalog];
        let pool = &self.catalogs[catalog];
        if pool.unusable.is_some() {
            return None;
        }
        let types: Vec<(u32, SlotMask)> = pool
            .types
            .iter()
            .enumerate()
            .filter(|(_, t)| !within_limits || budget.admits(&t.limit_cost))
            .map(|(i, t)| (i as u32, t.slots))
            .collect();
        if types.is_empty() {
            return None;
        }
        let zero = self.catalogs[catalog].types[0].for_pods.clone();
        let mut node = OpenNode {
            catalog,
            pods: Vec::new(),
            requests: Res {
                base: [0; 4],
                ext: vec![0; zero.ext.len()],
            },
            types,
            upper: Res {
                base: [0; 4],
                ext: vec![0; zero.ext.len()],
            },
            zone: None,
            tally: NodeTally::default(),
            reserved: Vec::new(),
            free: (0, 0),
            slots: 0,
            relaxed: false,
        };
        node.upper = self.upper_of(catalog, &node.types);
        node.slots = node.types.iter().fold(0, |acc, (_, m)| acc | m);
        Some(node)
    }

    pub(crate) fn upper_of(&self, catalog: usize, types: &[(u32, SlotMask)]) -> Res {
        let pool = &self.catalogs[catalog];
        let mut upper = pool.types[types[0].0 as usize].for_pods.clone();
        for (t, _) in &types[1..] {
            upper.max_assign(&pool.types[*t as usize].for_pods);
        }
        upper
    }

    /// Whether `pod` can join `node`, and the node's types and zone if it does.
    pub(crate) fn try_fit(&self, node: &OpenNode, pod: usize) -> Option<Fit> {
        let facts = &self.pods[pod];
        let class = &self.classes.list[facts.class];
        let ClassPool::Allowed(masks) = &class.pools[node.catalog] else {
            return None;
        };
        if node.slots & class.pool_slots[node.catalog] == 0
            || !node.requests.fits_with(&facts.requests, &node.upper)
            || !node.tally.anti_affinity_allows(&facts.matches, &facts.anti)
            || !node.tally.hostname_spread_allows(&facts.hostname_spread)
            || !self.host_affinity_allows(facts, &node.tally)
        {
            return None;
        }
        let mut restrict = SlotMask::MAX;
        if facts.needs_zone {
            if let Some(z) = node.zone {
                if !self.zone_allows(facts, class.eligible_zones, z) {
                    return None;
                }
                restrict = zone_slots(z);
            }
        }
        let catalog = &self.catalogs[node.catalog];
        let mut after = node.requests.clone();
        after.add_assign(&facts.requests);
        let mut types: Vec<(u32, SlotMask)> = node
            .types
            .iter()
            .filter_map(|(t, mask)| {
                let allowed = mask & masks[*t as usize] & restrict;
                (allowed != 0 && after.fits_in(&catalog.types[*t as usize].for_pods))
                    .then_some((*t, allowed))
            })
            .collect();
        if types.is_empty() {
            return None;
        }
        let mut zone = node.zone;
        if facts.needs_zone && zone.is_none() {
            let chosen = self.choose_zone(facts, class.eligible_zones, node.catalog, &types)?;
            types.retain_mut(|(_, mask)| {
                *mask &= zone_slots(chosen);
                *mask != 0
            });
            zone = Some(chosen);
        }
        let short = || {
            catalog
                .min_values_shortfall(&types, self.input.instance_types)
                .is_some()
        };
        // A relaxed node takes only pods no node of its pool could take
        // with minValues kept: the others keep their diversity.
        let refused = if node.relaxed {
            !self.needs_relaxing(pod, node.catalog)
        } else {
            short()
        };
        if refused || !self.limits_admit(node, &types) {
            return None;
        }
        Some(Fit { types, zone })
    }

    /// The zone for a node that gets pinned: within every zone spread's
    /// maxSkew, least loaded, then cheapest.
    fn choose_zone(
        &self,
        facts: &PodFacts,
        eligible: u64,
        catalog: usize,
        types: &[(u32, SlotMask)],
    ) -> Option<usize> {
        let union = types.iter().fold(0, |acc, (_, m)| acc | m);
        let zones = zones_of(union);
        let pool = &self.catalogs[catalog];
        let mut best: Option<(u32, f64, usize)> = None;
        for z in (0..64).filter(|z| zones & (1 << z) != 0) {
            if !self.zone_allows(facts, eligible, z) {
                continue;
            }
            let load = self.zone_counts.load(&facts.zone_spread, z);
            let price = types
                .iter()
                .filter_map(|(t, m)| pool.types[*t as usize].cheapest_in(m & zone_slots(z)))
                .min_by(f64::total_cmp)
                .unwrap_or(f64::INFINITY);
            let better = match best {
                None => true,
                Some((l, p, _)) => load < l || (load == l && price < p),
            };
            if better {
                best = Some((load, price, z));
            }
        }
        best.map(|(_, _, z)| z)
    }

    pub(crate) fn commit_open(&mut self, index: usize, pod: usize, fit: Fit) {
        let facts = &self.pods[pod];
        let catalog = self.open[index].catalog;
        let upper = self.upper_of(catalog, &fit.types);
        self.reserve(index, &fit.types);
        let node = &mut self.open[index];
        node.slots = fit.types.iter().fold(0, |acc, (_, m)| acc | m);
        node.types = fit.types;
        node.upper = upper;
        node.zone = fit.zone;
        node.requests.add_assign(&facts.requests);
        node.tally.add_pod(&facts.matches, &facts.anti);
        node.pods.push(pod);
        self.zone_counts.see(&facts.matches);
        if let Some(z) = node.zone {
            self.zone_counts.add(&facts.matches, z);
        }
        self.open[index].free = self.slack_of(index);
    }
}

impl Packer<'_> {
    /// What a node of pool `catalog` with `types` holds against the pool's
    /// limits: the largest cost among the types it may launch as.
    pub(crate) fn held_by(&self, catalog: usize, types: &[(u32, SlotMask)]) -> Vec<u64> {
        let pool = &self.catalogs[catalog];
        let mut held = Vec::new();
        if !pool.limited {
            return held;
        }
        for (t, _) in pool.launchable(types, self.input.instance_types).iter() {
            max_cost(&mut held, &pool.types[*t as usize].limit_cost);
        }
        held
    }

    /// Whether what is left of the pool's limits lets `node` hold what
    /// `types` would: as a node grows, its cheapest types may be larger ones.
    fn limits_admit(&self, node: &OpenNode, types: &[(u32, SlotMask)]) -> bool {
        self.budgets[node.catalog].is_unlimited()
            || self.budgets[node.catalog]
                .admits_change(&node.reserved, &self.held_by(node.catalog, types))
    }

    /// Holds against the pool's limits what `types` hold ([`Self::held_by`]),
    /// in place of what node `index` held before.
    pub(crate) fn reserve(&mut self, index: usize, types: &[(u32, SlotMask)]) {
        let catalog = self.open[index].catalog;
        let held = self.held_by(catalog, types);
        let node = &mut self.open[index];
        let budget = &mut self.budgets[catalog];
        budget.give_back(&node.reserved);
        budget.take(&held);
        node.reserved = held;
    }
}

pub(crate) fn existing_state(
    node: &ExistingNode,
    zone: Option<usize>,
    names: &crate::resources::ResourceNames,
) -> ExistingState {
    ExistingState {
        allocatable: names.dense(&node.allocatable),
        requested: names.dense(&node.requested),
        zone,
        tally: NodeTally::default(),
    }
}

impl ExistingState {
    pub fn count_resident(&mut self, matches: &[crate::topology::SelectorId]) {
        self.tally.add_pod(matches, &[]);
    }
}
