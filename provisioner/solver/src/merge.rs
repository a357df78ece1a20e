//! Third pass, for node count: dissolve whole nodes into the others (all
//! pods onto one node, or spread over several) when that raises the price
//! by no more than the node's own price plus `NODE_OVERHEAD_PER_HOUR`.

use crate::classes::ClassPool;
use crate::offerings::SlotMask;
use crate::packing::{Fit, OpenNode, Packer};
use crate::resources::{CPU, MEMORY};
use crate::topology::SelectorId;

/// What one more node costs beyond its instance price, in $/h, when
/// deciding whether to fold a node into another: DaemonSet pods, its IPs,
/// its root volume and the control plane's work are real but not in the
/// input. A merge is taken when the merged node's price is at most the two
/// nodes' prices plus this. 0 merges only when it does not raise the
/// instance bill (with prices linear in size, that is almost always the
/// case: one node rounds up once, not twice, and pays kube-reserved once).
pub(crate) const NODE_OVERHEAD_PER_HOUR: f64 = 0.0;

/// Price comparisons tolerate this much floating-point noise.
const PRICE_EPSILON: f64 = 1e-9;

impl Packer<'_> {
    /// Cheapest price of the node's current cheapest type.
    fn node_price(&self, node: &OpenNode) -> f64 {
        node.types.first().map_or(f64::INFINITY, |(t, _)| {
            self.catalogs[node.catalog].types[*t as usize].cheapest
        })
    }

    /// Nodes opened in this solve, smallest (cheapest) first, are each
    /// offered whole to the other nodes: the target that grows the least
    /// takes every pod, if all of them pass the placement checks in turn
    /// and the merged node costs at most both nodes plus
    /// `NODE_OVERHEAD_PER_HOUR`. First-fit decreasing and the "a node of
    /// its own is cheaper than growing" rule leave such nodes (pods that
    /// came when no open node had room in its cheapest type); a Karpenter
    /// user expects fewer, fuller nodes.
    pub(crate) fn merge_nodes(&mut self) {
        let mut order: Vec<usize> = (0..self.open.len())
            .filter(|n| !self.open[*n].pods.is_empty())
            .collect();
        let prices: Vec<f64> = self.open.iter().map(|n| self.node_price(n)).collect();
        order.sort_by(|a, b| prices[*a].total_cmp(&prices[*b]).then(a.cmp(b)));
        let mut alive = vec![false; self.open.len()];
        for n in &order {
            alive[*n] = true;
        }
        let mut lacking = Lacking::count(self, &order);
        for &source in &order {
            if self.affinity_bound(source) {
                continue;
            }
            let pods = self.pods_to_move(source);
            if pods
                .first()
                .is_none_or(|p| !lacking.may_move(self, source, *p))
            {
                continue;
            }
            let moves = self
                .best_target(source, &pods, &order, &alive)
                .and_then(|target| self.fold(source, target, &pods))
                .or_else(|| self.scatter(source, &pods, &order, &alive))
                .filter(|moves| self.limits_allow(source, moves));
            if let Some(moves) = moves {
                lacking.dissolve(self, source, moves);
                alive[source] = false;
            }
        }
    }

    /// Whether the pool's limits let every target of `moves` hold what its
    /// grown types hold, once `source` gives its share back. Each move was
    /// checked alone; a scatter grows several targets from the same budget.
    fn limits_allow(&self, source: usize, moves: &[(usize, usize, Fit)]) -> bool {
        let catalog = self.open[source].catalog;
        if self.budgets[catalog].is_unlimited() {
            return true;
        }
        let mut last: Vec<(usize, &Fit)> = Vec::new();
        for (_, target, fit) in moves {
            match last.iter_mut().find(|(t, _)| t == target) {
                Some(slot) => slot.1 = fit,
                None => last.push((*target, fit)),
            }
        }
        let mut budget = self.budgets[catalog].clone();
        budget.give_back(&self.open[source].reserved);
        for (target, fit) in last {
            let before = &self.open[target].reserved;
            let after = self.held_by(catalog, &fit.types);
            if !budget.admits_change(before, &after) {
                return false;
            }
            budget.give_back(before);
            budget.take(&after);
        }
        true
    }

    /// Per pool type, the slots every pod of the node allows (0: refused).
    fn allowed_masks(&self, node: &OpenNode) -> Vec<SlotMask> {
        let pool = &self.catalogs[node.catalog];
        let mut masks: Vec<SlotMask> = pool.types.iter().map(|t| t.slots).collect();
        let mut classes: Vec<usize> = node.pods.iter().map(|p| self.pods[*p].class).collect();
        classes.sort_unstable();
        classes.dedup();
        for class in classes {
            match &self.classes.list[class].pools[node.catalog] {
                ClassPool::Allowed(allowed) => {
                    for (m, a) in masks.iter_mut().zip(allowed) {
                        *m &= a;
                    }
                }
                ClassPool::Refused(_) => masks.iter_mut().for_each(|m| *m = 0),
            }
        }
        masks
    }

    /// The node that would take all of `source`'s pods for the smallest
    /// price increase, within the overhead rule (cheap estimate; `fold`
    /// checks for real).
    fn best_target(
        &self,
        source: usize,
        pods: &[usize],
        order: &[usize],
        alive: &[bool],
    ) -> Option<usize> {
        let from = &self.open[source];
        let masks = self.allowed_masks(from);
        let pool = &self.catalogs[from.catalog];
        let source_price = self.node_price(from);
        let mut best: Option<(f64, usize)> = None;
        // Largest first: they are the likeliest to have room for free.
        for &target in order.iter().rev() {
            if target == source || !alive[target] {
                continue;
            }
            let to = &self.open[target];
            if to.catalog != from.catalog
                || (from.zone.is_some() && to.zone != from.zone)
                || to.slots & from.slots == 0
                || !to.requests.fits_with(&from.requests, &to.upper)
            {
                continue;
            }
            let compatible = pods.iter().all(|p| {
                let facts = &self.pods[*p];
                to.tally.anti_affinity_allows(&facts.matches, &facts.anti)
                    && to.tally.hostname_spread_allows(&facts.hostname_spread)
            });
            if !compatible {
                continue;
            }
            // Types are sorted by price: stop at the first one too dear.
            let limit = self.node_price(to) + source_price + NODE_OVERHEAD_PER_HOUR + PRICE_EPSILON;
            let Some(price) = to
                .types
                .iter()
                .take_while(|(t, _)| pool.types[*t as usize].cheapest <= limit)
                .find(|(t, mask)| {
                    mask & masks[*t as usize] != 0
                        && to
                            .requests
                            .fits_with(&from.requests, &pool.types[*t as usize].for_pods)
                })
                .map(|(t, _)| pool.types[*t as usize].cheapest)
            else {
                continue;
            };
            let growth = price - self.node_price(to);
            if growth > source_price + NODE_OVERHEAD_PER_HOUR + PRICE_EPSILON {
                continue;
            }
            if best.is_none_or(|(g, _)| growth < g - PRICE_EPSILON) {
                best = Some((growth, target));
                if growth <= PRICE_EPSILON {
                    // Nothing grows less than not at all.
                    break;
                }
            }
        }
        best.map(|(_, t)| t)
    }

    /// Pods of `source`, most constrained first (anti-affinity, hostname
    /// spread: they refuse most nodes, so a hopeless move fails early),
    /// then largest first.
    fn pods_to_move(&self, source: usize) -> Vec<usize> {
        let mut pods = self.open[source].pods.clone();
        pods.sort_by_key(|p| {
            let facts = &self.pods[*p];
            (
                facts.anti.is_empty(),
                facts.hostname_spread.is_empty(),
                std::cmp::Reverse(facts.requests.base[CPU]),
                std::cmp::Reverse(facts.requests.base[MEMORY]),
            )
        });
        pods
    }

    /// Spread the pods of `source` over the other nodes, each where it
    /// raises the price least, when the total rise is at most `source`'s
    /// price plus `NODE_OVERHEAD_PER_HOUR` (for a node no single node can
    /// absorb, such as one that grew to the largest type). Tried on copies
    /// of the touched nodes first; nothing changes unless every pod moves.
    fn scatter(
        &mut self,
        source: usize,
        pods: &[usize],
        order: &[usize],
        alive: &[bool],
    ) -> Option<Vec<(usize, usize, Fit)>> {
        let zone = self.open[source].zone;
        let catalog = self.open[source].catalog;
        let allowance = self.node_price(&self.open[source]) + NODE_OVERHEAD_PER_HOUR;
        if let Some(z) = zone {
            for p in pods {
                self.zone_counts.remove(&self.pods[*p].matches, z);
            }
        }
        let mut touched: Vec<(usize, OpenNode)> = Vec::new();
        let mut moves: Vec<(usize, usize, Fit)> = Vec::with_capacity(pods.len());
        let mut rise = 0.0;
        let mut ok = true;
        for &p in pods {
            let facts = &self.pods[p];
            let class = &self.classes.list[facts.class];
            let ClassPool::Allowed(masks) = &class.pools[catalog] else {
                ok = false;
                break;
            };
            let mut best: Option<(f64, usize)> = None;
            // Largest first, as in `best_target`.
            for &target in order.iter().rev() {
                if target == source || !alive[target] {
                    continue;
                }
                let node = touched
                    .iter()
                    .find(|(t, _)| *t == target)
                    .map_or(&self.open[target], |(_, n)| n);
                if node.catalog != catalog
                    || (facts.needs_zone && node.zone != zone)
                    || !node.requests.fits_with(&facts.requests, &node.upper)
                    || !node.tally.anti_affinity_allows(&facts.matches, &facts.anti)
                    || !node.tally.hostname_spread_allows(&facts.hostname_spread)
                {
                    continue;
                }
                let pool = &self.catalogs[catalog];
                let limit = self.node_price(node) + allowance - rise + PRICE_EPSILON;
                let Some(price) = node
                    .types
                    .iter()
                    .take_while(|(t, _)| pool.types[*t as usize].cheapest <= limit)
                    .find(|(t, mask)| {
                        mask & masks[*t as usize] != 0
                            && node
                                .requests
                                .fits_with(&facts.requests, &pool.types[*t as usize].for_pods)
                    })
                    .map(|(t, _)| pool.types[*t as usize].cheapest)
                else {
                    continue;
                };
                let growth = price - self.node_price(node);
                if best.is_none_or(|(g, _)| growth < g - PRICE_EPSILON) {
                    best = Some((growth, target));
                    if growth <= PRICE_EPSILON {
                        break;
                    }
                }
            }
            let Some((_, target)) = best else {
                ok = false;
                break;
            };
            let slot = match touched.iter().position(|(t, _)| *t == target) {
                Some(i) => i,
                None => {
                    touched.push((target, self.open[target].clone()));
                    touched.len() - 1
                }
            };
            let node = &touched[slot].1;
            let Some(fit) = self.try_fit(node, p) else {
                ok = false;
                break;
            };
            let before = self.node_price(node);
            let mut grown = node.clone();
            grown.upper = self.upper_of(catalog, &fit.types);
            grown.types = fit.types.clone();
            grown.zone = fit.zone;
            grown.requests.add_assign(&facts.requests);
            grown.tally.add_pod(&facts.matches, &facts.anti);
            rise += self.node_price(&grown) - before;
            touched[slot].1 = grown;
            moves.push((p, target, fit));
            if rise > allowance + PRICE_EPSILON {
                ok = false;
                break;
            }
        }
        if !ok {
            self.restore_zone_counts(source, pods);
            return None;
        }
        Some(moves)
    }

    fn restore_zone_counts(&mut self, source: usize, pods: &[usize]) {
        if let Some(z) = self.open[source].zone {
            for p in pods {
                self.zone_counts.add(&self.pods[*p].matches, z);
            }
        }
    }

    /// Move every pod of `source` onto `target` if each passes `try_fit` in
    /// turn (largest first) and the price rule holds; otherwise change nothing.
    fn fold(
        &mut self,
        source: usize,
        target: usize,
        pods: &[usize],
    ) -> Option<Vec<(usize, usize, Fit)>> {
        // The pods stay in the same zone (or are counted by no zone
        // spread): take them out of the counts so the checks see the zone
        // without them, and put them back if the fold is refused.
        let zone = self.open[source].zone;
        if let Some(z) = zone {
            for p in pods {
                self.zone_counts.remove(&self.pods[*p].matches, z);
            }
        }
        let before = self.node_price(&self.open[source]) + self.node_price(&self.open[target]);
        let mut trial = self.open[target].clone();
        let mut fits: Vec<(usize, usize, Fit)> = Vec::with_capacity(pods.len());
        let mut ok = true;
        for p in pods {
            let Some(fit) = self.try_fit(&trial, *p) else {
                ok = false;
                break;
            };
            let facts = &self.pods[*p];
            trial.upper = self.upper_of(trial.catalog, &fit.types);
            trial.types = fit.types.clone();
            trial.zone = fit.zone;
            trial.requests.add_assign(&facts.requests);
            trial.tally.add_pod(&facts.matches, &facts.anti);
            fits.push((*p, target, fit));
        }
        ok = ok && self.node_price(&trial) <= before + NODE_OVERHEAD_PER_HOUR + PRICE_EPSILON;
        if !ok {
            self.restore_zone_counts(source, pods);
            return None;
        }
        Some(fits)
    }
}

/// Per selector that some pod holds as anti-affinity, how many live nodes
/// have no pod it matches: a pod holding it can only move to one of those.
/// The number only falls while merging (a node dies, or gains such a pod),
/// so a source whose most constrained pod has nowhere to go is skipped in
/// O(1) instead of scanning every node.
struct Lacking {
    selectors: Vec<SelectorId>,
    nodes: Vec<usize>,
}

impl Lacking {
    fn count(packer: &Packer, order: &[usize]) -> Self {
        let mut selectors: Vec<SelectorId> = packer
            .pods
            .iter()
            .flat_map(|p| p.anti.iter().copied())
            .collect();
        selectors.sort_unstable();
        selectors.dedup();
        let nodes = selectors
            .iter()
            .map(|s| {
                order
                    .iter()
                    .filter(|n| packer.open[**n].tally.count(*s) == 0)
                    .count()
            })
            .collect();
        Lacking { selectors, nodes }
    }

    fn index(&self, selector: SelectorId) -> Option<usize> {
        self.selectors.binary_search(&selector).ok()
    }

    /// Some other node may take `pod` as far as its anti-affinity goes.
    fn may_move(&self, packer: &Packer, source: usize, pod: usize) -> bool {
        let tally = &packer.open[source].tally;
        packer.pods[pod].anti.iter().all(|s| {
            self.index(*s).is_none_or(|i| {
                let own = usize::from(tally.count(*s) == 0);
                self.nodes[i] > own
            })
        })
    }

    /// Carry out the moves, keep the counts, and retire `source`.
    fn dissolve(&mut self, packer: &mut Packer, source: usize, moves: Vec<(usize, usize, Fit)>) {
        // The source's share goes back first: the targets may grow into it.
        let held = std::mem::take(&mut packer.open[source].reserved);
        packer.budgets[packer.open[source].catalog].give_back(&held);
        for (i, s) in self.selectors.iter().enumerate() {
            if packer.open[source].tally.count(*s) == 0 {
                self.nodes[i] = self.nodes[i].saturating_sub(1);
            }
        }
        for (pod, target, fit) in moves {
            for s in &packer.pods[pod].matches {
                if let Some(i) = self.index(*s) {
                    if packer.open[target].tally.count(*s) == 0 {
                        self.nodes[i] = self.nodes[i].saturating_sub(1);
                    }
                }
            }
            packer.remove_from_open(source, pod);
            packer.commit_open(target, pod, fit);
        }
        packer.refit(source);
    }
}
