//! Second pass for cost: move pods from the large nodes into the slack of
//! small ones, then shrink the nodes they left.

use crate::classes::ClassPool;
use crate::offerings::{zone_slots, SlotMask};
use crate::packing::{OpenNode, Packer};
use crate::resources::{CPU, MEMORY};

impl Packer<'_> {
    /// First-fit decreasing leaves the nodes opened late (for small pods
    /// that refuse to share, like hostname anti-affinity) with slack in
    /// their cheapest type, while the early nodes grew large. Move pods,
    /// largest first, from the largest nodes into that slack, where they
    /// ride for free, then shrink each node they left. Every move passes the
    /// same checks as a placement; zone-pinned pods only move within their zone.
    pub(crate) fn repack(&mut self) {
        let mut origins: Vec<usize> = (0..self.open.len()).collect();
        let size = |n: &OpenNode| n.requests.base[CPU];
        origins.sort_by(|a, b| size(&self.open[*b]).cmp(&size(&self.open[*a])));
        // Smallest nodes first as destinations, each with its free slack
        // (cpu, memory) in its cheapest type: a plain number test before the
        // full checks.
        let mut slack: Vec<(usize, u64, u64)> = origins.iter().rev().map(|n| (*n, 0, 0)).collect();
        for entry in &mut slack {
            let (cpu, memory) = self.slack_of(entry.0);
            (entry.1, entry.2) = (cpu, memory);
        }
        let smallest = (self.smallest_pod.base[CPU], self.smallest_pod.base[MEMORY]);
        for origin in origins {
            if self.affinity_bound(origin) {
                continue;
            }
            slack.retain(|(_, cpu, memory)| *cpu >= smallest.0 && *memory >= smallest.1);
            if slack.is_empty() {
                break;
            }
            let mut pods = self.open[origin].pods.clone();
            pods.sort_by(|a, b| {
                let (ra, rb) = (&self.pods[*a].requests.base, &self.pods[*b].requests.base);
                rb[CPU].cmp(&ra[CPU]).then(rb[MEMORY].cmp(&ra[MEMORY]))
            });
            let mut moved = false;
            for pod in pods {
                let zone = self.open[origin].zone;
                let request = &self.pods[pod].requests.base;
                let target = slack.iter().position(|(d, cpu, memory)| {
                    *d != origin
                        && *cpu >= request[CPU]
                        && *memory >= request[MEMORY]
                        && (!self.pods[pod].needs_zone || self.open[*d].zone == zone)
                        && self.fits_cheapest(&self.open[*d], pod)
                });
                let Some(position) = target else { continue };
                let target = slack[position].0;
                // A move shrinks a node at best: not worth a soft constraint.
                let facts = &self.pods[pod];
                let destination = &self.open[target];
                let eligible = self.classes.list[facts.class].eligible_zones;
                if facts.has_soft()
                    && !self.soft_allows(facts, &destination.tally, destination.zone, eligible)
                {
                    continue;
                }
                let Some(fit) = self.try_fit(&self.open[target], pod) else {
                    continue;
                };
                if fit.types.first().map(|t| t.0) != self.open[target].types.first().map(|t| t.0) {
                    continue;
                }
                self.remove_from_open(origin, pod);
                self.commit_open(target, pod, fit);
                let (cpu, memory) = self.slack_of(target);
                (slack[position].1, slack[position].2) = (cpu, memory);
                moved = true;
            }
            if moved {
                self.refit(origin);
                if let Some(entry) = slack.iter_mut().find(|(n, _, _)| *n == origin) {
                    let (cpu, memory) = self.slack_of(origin);
                    (entry.1, entry.2) = (cpu, memory);
                }
            }
        }
    }

    /// A node holding a pod with pod affinity, or one another pod's affinity
    /// names: moving pods off it could leave a follower without its target.
    pub(crate) fn affinity_bound(&self, index: usize) -> bool {
        self.open[index]
            .pods
            .iter()
            .any(|p| self.pods[*p].affinity_bound)
    }

    /// Room left in the node's cheapest remaining type.
    pub(crate) fn slack_of(&self, index: usize) -> (u64, u64) {
        let node = &self.open[index];
        let Some((cheapest, _)) = node.types.first() else {
            return (0, 0);
        };
        let room = &self.catalogs[node.catalog].types[*cheapest as usize]
            .for_pods
            .base;
        (
            room[CPU].saturating_sub(node.requests.base[CPU]),
            room[MEMORY].saturating_sub(node.requests.base[MEMORY]),
        )
    }

    pub(crate) fn remove_from_open(&mut self, index: usize, pod: usize) {
        let facts = &self.pods[pod];
        let node = &mut self.open[index];
        node.pods.retain(|p| *p != pod);
        for (total, part) in node.requests.base.iter_mut().zip(&facts.requests.base) {
            *total -= part;
        }
        for (total, part) in node.requests.ext.iter_mut().zip(&facts.requests.ext) {
            *total -= part;
        }
        node.tally.remove_pod(&facts.matches, &facts.anti);
        self.open[index].free = self.slack_of(index);
    }

    /// Recompute a node's types after pods left: every type its remaining
    /// pods allow and fit that what is left of the pool's limits admits,
    /// or, if what those would hold does not fit in the limits, no type
    /// larger than what the node holds already (so limits and minValues
    /// stay met).
    pub(crate) fn refit(&mut self, index: usize) {
        let node = &self.open[index];
        if node.pods.is_empty() {
            self.reserve(index, &[]);
            return;
        }
        let budget = &self.budgets[node.catalog];
        let mut types =
            self.fitting_types(index, |cost| budget.admits_change(&node.reserved, cost));
        if !budget.admits_change(&node.reserved, &self.held_by(node.catalog, &types)) {
            types = self.fitting_types(index, |cost| {
                cost.iter()
                    .zip(&node.reserved)
                    .all(|(cost, held)| cost <= held)
            });
        }
        if types.is_empty() {
            return;
        }
        let catalog = node.catalog;
        let upper = self.upper_of(catalog, &types);
        self.reserve(index, &types);
        let node = &mut self.open[index];
        node.slots = types.iter().fold(0, |acc, (_, m)| acc | m);
        node.types = types;
        node.upper = upper;
        self.open[index].free = self.slack_of(index);
    }

    /// The pool types node `index`'s pods allow and fit, whose cost against
    /// the pool's limits passes `admitted`.
    fn fitting_types(
        &self,
        index: usize,
        admitted: impl Fn(&[u64]) -> bool,
    ) -> Vec<(u32, SlotMask)> {
        let node = &self.open[index];
        let catalog = node.catalog;
        let mut classes: Vec<usize> = node.pods.iter().map(|p| self.pods[*p].class).collect();
        classes.sort_unstable();
        classes.dedup();
        let restrict = node.zone.map_or(SlotMask::MAX, zone_slots);
        let pool = &self.catalogs[catalog];
        pool.types
            .iter()
            .enumerate()
            .filter_map(|(t, pool_type)| {
                if !admitted(&pool_type.limit_cost) {
                    return None;
                }
                let mut mask = pool_type.slots & restrict;
                for class in &classes {
                    match &self.classes.list[*class].pools[catalog] {
                        ClassPool::Allowed(masks) => mask &= masks[t],
                        ClassPool::Refused(_) => mask = 0,
                    }
                }
                (mask != 0 && node.requests.fits_in(&pool_type.for_pods))
                    .then_some((t as u32, mask))
            })
            .collect()
    }
}
