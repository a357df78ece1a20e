//! Why a pod was left out: pool by pool, the first rule that refused it.

use crate::classes::ClassPool;
use crate::offerings::SlotMask;
use crate::packing::Packer;

impl Packer<'_> {
    /// Why no pool could launch a node for `pod`, pool by pool.
    pub fn explain(&self, pod: usize) -> String {
        let facts = &self.pods[pod];
        if let Some(reason) = &facts.unsupported {
            return reason.clone();
        }
        let class = &self.classes.list[facts.class];
        let mut reasons = Vec::new();
        for &catalog in &self.pool_order {
            let pool = &self.input.nodepools[self.catalogs[catalog].nodepool];
            let reason = match &class.pools[catalog] {
                ClassPool::Refused(reason) => reason.clone(),
                ClassPool::Allowed(_) => self.explain_pool(catalog, pod, &pool.name),
            };
            reasons.push(reason);
        }
        if reasons.is_empty() {
            return "no existing node fits and there is no NodePool".into();
        }
        format!(
            "no existing node fits and no NodePool can launch one: {}",
            reasons.join("; ")
        )
    }

    fn explain_pool(&self, catalog: usize, pod: usize, name: &str) -> String {
        let facts = &self.pods[pod];
        let pool = &self.catalogs[catalog];
        let ClassPool::Allowed(masks) = &self.classes.list[facts.class].pools[catalog] else {
            return format!("pool {name} refuses the pod");
        };
        let fitting: Vec<usize> = (0..pool.types.len())
            .filter(|t| masks[*t] != 0 && facts.requests.fits_in(&pool.types[*t].for_pods))
            .collect();
        if fitting.is_empty() {
            return format!("pool {name}: no instance type has room for the pod's requests plus DaemonSet overhead");
        }
        let budget = &self.budgets[catalog];
        let admitted = |t: &usize| budget.admits(&pool.types[*t].limit_cost);
        if !fitting.iter().any(admitted) {
            let limits = &self.input.nodepools[pool.nodepool].limits;
            let mut exceeded: Vec<&str> = fitting
                .iter()
                .filter_map(|t| budget.exceeded_by(&pool.types[*t].limit_cost))
                .filter_map(|i| limits.get(i).map(|l| l.resource.key()))
                .collect();
            exceeded.sort_unstable();
            exceeded.dedup();
            return format!("exceeds NodePool {name}'s {} limit", exceeded.join(", "));
        }
        let remaining: Vec<(u32, SlotMask)> = fitting
            .iter()
            .filter(|t| admitted(t))
            .map(|t| (*t as u32, masks[*t]))
            .collect();
        if let Some(shortfall) = pool.min_values_shortfall(&remaining, self.input.instance_types) {
            return format!("pool {name}: {shortfall}");
        }
        if facts.hostname_spread.iter().any(|(_, skew)| *skew == 0) {
            return format!(
                "pool {name}: hostname topology spread with maxSkew 0 can never be met"
            );
        }
        if !facts.affinity_host.is_empty() || !facts.affinity_zone.is_empty() {
            return format!(
                "pool {name}: no node or zone that holds the pods its required pod affinity names can take it"
            );
        }
        if !facts.zone_anti.is_empty() {
            return format!(
                "pool {name}: every zone it offers holds a pod the pod's zone anti-affinity excludes"
            );
        }
        if !facts.zone_spread.is_empty() {
            return format!(
                "pool {name}: no zone keeps the pod's zone topology spread within maxSkew"
            );
        }
        format!("pool {name}: no zone-pinned node of this pool can take the pod")
    }
}
