//! A NodePool's `spec.limits` in the packing loop. Each pool type carries
//! its cost against the pool's limits (one entry per limit, in the pool's
//! order); a budget is what is left of them. A new node holds the largest
//! cost among its remaining types, so however the launch resolves, the
//! pool stays within its limits.

use crate::model::{InstanceType, Limit};

/// What one node of `instance_type` counts against each of `limits`.
pub(crate) fn cost_of(limits: &[Limit], instance_type: &InstanceType) -> Vec<u64> {
    limits
        .iter()
        .map(|l| l.resource.of(&instance_type.capacity))
        .collect()
}

/// The per-limit maximum of two costs (an empty one counts as zero).
pub(crate) fn max_cost(held: &mut Vec<u64>, cost: &[u64]) {
    if held.len() < cost.len() {
        held.resize(cost.len(), 0);
    }
    for (a, b) in held.iter_mut().zip(cost) {
        *a = (*a).max(*b);
    }
}

/// What is left of a pool's limits; empty for a pool without limits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Budget {
    left: Vec<u64>,
}

impl Budget {
    pub(crate) fn new(limits: &[Limit]) -> Self {
        Budget {
            left: limits.iter().map(Limit::left).collect(),
        }
    }

    pub(crate) fn is_unlimited(&self) -> bool {
        self.left.is_empty()
    }

    pub(crate) fn admits(&self, cost: &[u64]) -> bool {
        self.left.iter().zip(cost).all(|(left, c)| c <= left)
    }

    /// The first limit `cost` exceeds, by index into the pool's limits.
    pub(crate) fn exceeded_by(&self, cost: &[u64]) -> Option<usize> {
        self.left.iter().zip(cost).position(|(left, c)| c > left)
    }

    /// Whether a node holding `from` may hold `to` instead.
    pub(crate) fn admits_change(&self, from: &[u64], to: &[u64]) -> bool {
        self.left.iter().enumerate().all(|(i, left)| {
            let from = from.get(i).copied().unwrap_or(0);
            let to = to.get(i).copied().unwrap_or(0);
            to <= left.saturating_add(from)
        })
    }

    pub(crate) fn take(&mut self, cost: &[u64]) {
        for (left, c) in self.left.iter_mut().zip(cost) {
            *left = left.saturating_sub(*c);
        }
    }

    pub(crate) fn give_back(&mut self, cost: &[u64]) {
        for (left, c) in self.left.iter_mut().zip(cost) {
            *left = left.saturating_add(*c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LimitedResource, Resources};

    fn limit(resource: LimitedResource, max: u64, used: u64) -> Limit {
        Limit {
            resource,
            max,
            used,
        }
    }

    fn gpu_type(cpu_millis: u64, gpus: u64) -> InstanceType {
        InstanceType {
            name: "g".into(),
            labels: Default::default(),
            capacity: Resources {
                cpu_millis,
                memory_bytes: 1 << 30,
                ephemeral_bytes: 0,
                pods: 29,
                extended: vec![("nvidia.com/gpu".into(), gpus)],
            },
            allocatable: Resources::default(),
            offerings: Vec::new(),
        }
    }

    #[test]
    fn every_kind_of_limit_counts_what_the_node_brings() {
        let limits = [
            limit(LimitedResource::Nodes, 3, 1),
            limit(LimitedResource::Pods, 100, 0),
            limit(LimitedResource::Extended("nvidia.com/gpu".into()), 4, 2),
            limit(LimitedResource::Cpu, 10_000, 0),
        ];
        let cost = cost_of(&limits, &gpu_type(4000, 1));
        assert_eq!(cost, vec![1, 29, 1, 4000]);
        let mut budget = Budget::new(&limits);
        assert!(budget.admits(&cost));
        budget.take(&cost);
        assert!(budget.admits(&cost), "a second node: 3 nodes, 4 GPUs");
        budget.take(&cost);
        assert_eq!(budget.exceeded_by(&cost), Some(0), "no fourth node");
        budget.give_back(&cost);
        assert!(budget.admits(&cost));
        let two_gpus = cost_of(&limits, &gpu_type(4000, 2));
        assert_eq!(budget.exceeded_by(&two_gpus), Some(2), "GPUs run out first");
    }

    #[test]
    fn a_pool_without_limits_admits_anything() {
        let budget = Budget::new(&[]);
        assert!(budget.is_unlimited());
        assert!(budget.admits(&[]));
        assert_eq!(budget.exceeded_by(&[]), None);
    }

    #[test]
    fn the_held_cost_is_the_largest_per_limit() {
        let mut held = Vec::new();
        max_cost(&mut held, &[1, 8, 0]);
        max_cost(&mut held, &[1, 4, 2]);
        assert_eq!(held, vec![1, 8, 2]);
    }
}
