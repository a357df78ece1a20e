//! The packing loop's checks that go beyond resources and taints: zone
//! spread, pod affinity and anti-affinity by zone and hostname, the soft
//! constraints honoured where they cost nothing, and whether a pod needs a
//! relaxed `minValues`.

use crate::classes::ClassPool;
use crate::offerings::SlotMask;
use crate::packing::Packer;
use crate::pods::PodFacts;
use crate::topology::{NodeTally, SelectorId};

impl Packer<'_> {
    /// Whether one more of `facts`'s pods in zone `z` keeps its zone spread
    /// within maxSkew and meets its zone pod affinity and anti-affinity.
    pub(crate) fn zone_allows(&self, facts: &PodFacts, eligible: u64, z: usize) -> bool {
        self.zone_counts.allows(&facts.zone_spread, eligible, z)
            && facts
                .zone_anti
                .iter()
                .all(|s| self.zone_counts.count(*s, z) == 0)
            && facts
                .affinity_zone
                .iter()
                .all(|s| self.zone_counts.count(*s, z) > 0 || self.first_of_its_kind(facts, *s))
    }

    /// The soft constraints hold on a node with `tally`, in `zone` if known.
    pub(crate) fn soft_allows(
        &self,
        facts: &PodFacts,
        tally: &NodeTally,
        zone: Option<usize>,
        eligible: u64,
    ) -> bool {
        facts.soft_anti.iter().all(|s| tally.count(*s) == 0)
            && tally.hostname_spread_allows(&facts.soft_hostname_spread)
            && zone.is_none_or(|z| {
                self.zone_counts
                    .allows(&facts.soft_zone_spread, eligible, z)
            })
    }

    /// Hostname pod affinity: every term's pods are on the node.
    pub(crate) fn host_affinity_allows(&self, facts: &PodFacts, tally: &NodeTally) -> bool {
        facts
            .affinity_host
            .iter()
            .all(|s| tally.count(*s) > 0 || self.first_of_its_kind(facts, *s))
    }

    /// kube-scheduler's exception: while no pod anywhere matches an
    /// affinity term, a pod that matches its own term may go anywhere.
    pub(crate) fn first_of_its_kind(&self, facts: &PodFacts, selector: SelectorId) -> bool {
        !self.zone_counts.seen(selector) && facts.matches.contains(&selector)
    }

    /// Whether the types of pool `catalog` that could hold `pod` alone
    /// already fall short of the pool's `minValues`.
    pub(crate) fn needs_relaxing(&self, pod: usize, catalog: usize) -> bool {
        let facts = &self.pods[pod];
        let ClassPool::Allowed(masks) = &self.classes.list[facts.class].pools[catalog] else {
            return false;
        };
        let pool = &self.catalogs[catalog];
        let alone: Vec<(u32, SlotMask)> = pool
            .types
            .iter()
            .zip(masks)
            .enumerate()
            .filter(|(_, (t, mask))| **mask != 0 && facts.requests.fits_in(&t.for_pods))
            .map(|(i, (_, mask))| (i as u32, *mask))
            .collect();
        pool.min_values_shortfall(&alone, self.input.instance_types)
            .is_some()
    }
}
