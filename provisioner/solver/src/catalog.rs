//! Per-NodePool catalog, computed once per solve: which instance types and
//! offerings the pool allows, each type's DaemonSet overhead and what is
//! left for pods, cheapest first.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

use spotwright_api::keys::{CAPACITY_TYPE_LABEL, INSTANCE_TYPE_LABEL, ZONE_LABEL};

use crate::limits::max_cost;
use crate::model::{
    CapacityType, DaemonSetFacts, InstanceType, MinValuesPolicy, NodePoolFacts, Operator,
};
use crate::offerings::{
    slot, slot_capacity_type, slot_zone, slots, zones_of, CandidateLabels, SlotMask, Zones,
};
use crate::requirements::all_match;
use crate::resources::{Res, ResourceNames};

/// One instance type as a node of one pool.
#[derive(Debug)]
pub(crate) struct PoolType {
    pub instance_type: usize,
    /// Offerings that are available and allowed by the pool's requirements.
    pub slots: SlotMask,
    /// `(slot, $/h)` of those offerings.
    pub prices: Vec<(u32, f64)>,
    /// Allocatable minus this type's DaemonSet overhead: what pods may use.
    pub for_pods: Res,
    pub overhead: Res,
    /// What a node of this type counts against each of the pool's limits.
    pub limit_cost: Vec<u64>,
    pub cheapest: f64,
}

impl PoolType {
    /// Cheapest price among the offerings in `mask`.
    pub fn cheapest_in(&self, mask: SlotMask) -> Option<f64> {
        self.prices
            .iter()
            .filter(|(s, _)| mask & (1 << s) != 0)
            .map(|(_, p)| *p)
            .min_by(f64::total_cmp)
    }
}

#[derive(Debug)]
pub(crate) struct PoolCatalog {
    pub nodepool: usize,
    /// Labels every node of the pool carries: template labels plus the
    /// single-valued `In` requirements on keys no instance type defines.
    pub labels: BTreeMap<String, String>,
    /// Cheapest first.
    pub types: Vec<PoolType>,
    /// `(key, minimum distinct values)` from the pool's requirements.
    pub min_values: Vec<(String, usize)>,
    /// `minValuesPolicy: BestEffort`: nodes may be opened that keep fewer.
    pub best_effort: bool,
    /// Set when the pool cannot launch anything at all, and why.
    pub unusable: Option<String>,
    /// The pool has `spec.limits`: a new node keeps only the types a launch
    /// may offer ([`PoolCatalog::launchable`]).
    pub limited: bool,
}

/// Whether `cost` is at most `ceiling` on every limit.
fn within(cost: &[u64], ceiling: &[u64]) -> bool {
    cost.iter().zip(ceiling).all(|(c, most)| c <= most)
}

/// The labels the pool itself puts on its nodes.
fn pool_node_labels(
    pool: &NodePoolFacts,
    instance_types: &[InstanceType],
) -> BTreeMap<String, String> {
    let mut labels = pool.labels.clone();
    for requirement in &pool.requirements {
        let defined_by_type = instance_types
            .iter()
            .any(|t| t.labels.contains_key(&requirement.key));
        let special = requirement.key == ZONE_LABEL || requirement.key == CAPACITY_TYPE_LABEL;
        if !defined_by_type
            && !special
            && requirement.operator == Operator::In
            && requirement.values.len() == 1
        {
            labels
                .entry(requirement.key.clone())
                .or_insert_with(|| requirement.values[0].clone());
        }
    }
    labels
}

pub(crate) fn build(
    pool_index: usize,
    pool: &NodePoolFacts,
    instance_types: &[InstanceType],
    daemonsets: &[DaemonSetFacts],
    zones: &Zones,
    names: &ResourceNames,
) -> PoolCatalog {
    let labels = pool_node_labels(pool, instance_types);
    let mut types = Vec::new();
    for (index, instance_type) in instance_types.iter().enumerate() {
        let mut mask: SlotMask = 0;
        let mut prices: Vec<(u32, f64)> = Vec::new();
        for offering in instance_type.offerings.iter().filter(|o| o.available) {
            let Some(zone) = zones.get(&offering.zone) else {
                continue;
            };
            let candidate = CandidateLabels {
                pool: &labels,
                instance_type: &instance_type.labels,
                zone: &offering.zone,
                capacity_type: offering.capacity_type,
            };
            if !all_match(&pool.requirements, &candidate) || !offering.price.is_finite() {
                continue;
            }
            let s = slot(zone, offering.capacity_type);
            match prices.iter_mut().find(|(existing, _)| *existing == s) {
                Some((_, price)) => *price = price.min(offering.price),
                None => prices.push((s, offering.price)),
            }
            mask |= 1 << s;
        }
        if mask == 0 {
            continue;
        }
        let candidates: Vec<CandidateLabels<'_>> = slots(mask)
            .map(|s| CandidateLabels {
                pool: &labels,
                instance_type: &instance_type.labels,
                zone: &zones.names[slot_zone(s)],
                capacity_type: slot_capacity_type(s),
            })
            .collect();
        let overhead = crate::daemonsets::overhead(daemonsets, &pool.taints, &candidates, names);
        // A type that cannot even hold its DaemonSets would never become Ready.
        let Some(for_pods) = names
            .dense(&instance_type.allocatable)
            .checked_sub(&overhead)
        else {
            continue;
        };
        let cheapest = prices
            .iter()
            .map(|(_, p)| *p)
            .min_by(f64::total_cmp)
            .unwrap_or(f64::INFINITY);
        types.push(PoolType {
            instance_type: index,
            slots: mask,
            prices,
            for_pods,
            overhead,
            limit_cost: crate::limits::cost_of(&pool.limits, instance_type),
            cheapest,
        });
    }
    types.sort_by(|a, b| {
        a.cheapest.total_cmp(&b.cheapest).then_with(|| {
            instance_types[a.instance_type]
                .name
                .cmp(&instance_types[b.instance_type].name)
        })
    });
    let min_values: Vec<(String, usize)> = pool
        .requirements
        .iter()
        .filter_map(|r| r.min_values.map(|n| (r.key.clone(), n as usize)))
        .collect();
    let mut catalog = PoolCatalog {
        nodepool: pool_index,
        labels,
        types,
        min_values,
        best_effort: pool.min_values_policy == MinValuesPolicy::BestEffort,
        unusable: None,
        limited: !pool.limits.is_empty(),
    };
    if catalog.types.is_empty() {
        catalog.unusable = Some(format!(
            "pool {} has no available instance type offering that meets its requirements",
            pool.name
        ));
    } else {
        let all: Vec<(u32, SlotMask)> = (0..catalog.types.len() as u32)
            .map(|t| (t, catalog.types[t as usize].slots))
            .collect();
        match catalog.min_values_shortfall(&all, instance_types) {
            Some(reason) if !catalog.best_effort => {
                catalog.unusable = Some(format!("pool {}: {reason}", pool.name));
            }
            _ => {}
        }
    }
    catalog
}

impl PoolCatalog {
    /// The types a node of this pool keeps (cheapest first) and holds
    /// against its limits. In a pool with limits: the types that cost no
    /// more against them than its cheapest type, and beyond that only as
    /// far up as `minValues` needs (adding the next cheapest type's cost each
    /// time); every type otherwise. A node is held at what it may launch as:
    /// holding the largest of every type that fits (up to 384 vCPUs for a
    /// node of two pods) would spend a `cpu` limit on capacity no launch
    /// takes, and leave later pods only small types or none.
    pub fn launchable<'t>(
        &self,
        types: &'t [(u32, SlotMask)],
        instance_types: &[InstanceType],
    ) -> Cow<'t, [(u32, SlotMask)]> {
        if !self.limited {
            return Cow::Borrowed(types);
        }
        let mut ceiling: Vec<u64> = Vec::new();
        for (t, _) in types {
            let cost = &self.types[*t as usize].limit_cost;
            if !ceiling.is_empty() && within(cost, &ceiling) {
                continue;
            }
            max_cost(&mut ceiling, cost);
            let kept: Vec<(u32, SlotMask)> = types
                .iter()
                .filter(|(t, _)| within(&self.types[*t as usize].limit_cost, &ceiling))
                .copied()
                .collect();
            if self.min_values_unmet(&kept, instance_types).is_empty() {
                return Cow::Owned(kept);
            }
        }
        // Not even every type keeps minValues (a relaxed node): all of them.
        Cow::Borrowed(types)
    }

    /// `None` when `remaining` (pool type index, allowed slots) keeps at
    /// least the pool's `minValues` distinct values on every key that has one.
    pub fn min_values_shortfall(
        &self,
        remaining: &[(u32, SlotMask)],
        instance_types: &[InstanceType],
    ) -> Option<String> {
        self.min_values_unmet(remaining, instance_types)
            .first()
            .map(|(key, needed, have)| {
                format!("minValues {needed} on {key} not met (only {have} would remain)")
            })
    }

    /// Every `(key, minValues, distinct values kept)` that `remaining` falls short on.
    pub fn min_values_unmet(
        &self,
        remaining: &[(u32, SlotMask)],
        instance_types: &[InstanceType],
    ) -> Vec<(&str, usize, usize)> {
        self.min_values
            .iter()
            .map(|(key, needed)| {
                let have = self.distinct_values(key, remaining, instance_types);
                (key.as_str(), *needed, have)
            })
            .filter(|(_, needed, have)| have < needed)
            .collect()
    }

    fn distinct_values(
        &self,
        key: &str,
        remaining: &[(u32, SlotMask)],
        instance_types: &[InstanceType],
    ) -> usize {
        if key == INSTANCE_TYPE_LABEL {
            return remaining.len();
        }
        let union: SlotMask = remaining.iter().fold(0, |acc, (_, m)| acc | m);
        if key == ZONE_LABEL {
            return zones_of(union).count_ones() as usize;
        }
        if key == CAPACITY_TYPE_LABEL {
            let spot = union & crate::offerings::SPOT_SLOTS != 0;
            let on_demand = union & !crate::offerings::SPOT_SLOTS != 0;
            return usize::from(spot) + usize::from(on_demand);
        }
        if self.labels.contains_key(key) {
            return 1;
        }
        let mut seen: HashSet<&str> = HashSet::new();
        for (t, _) in remaining {
            let it = &instance_types[self.types[*t as usize].instance_type];
            if let Some(v) = it.labels.get(key) {
                seen.insert(v);
            }
        }
        seen.len()
    }

    /// The capacity types present in `mask`, Spot first.
    pub fn capacity_types(mask: SlotMask) -> Vec<CapacityType> {
        let mut out = Vec::new();
        if mask & crate::offerings::SPOT_SLOTS != 0 {
            out.push(CapacityType::Spot);
        }
        if mask & !crate::offerings::SPOT_SLOTS != 0 {
            out.push(CapacityType::OnDemand);
        }
        out
    }
}
