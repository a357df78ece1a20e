//! Pods grouped by node constraints (node selector, required affinity,
//! tolerations). Compatibility with every pool's offerings and every existing
//! node is worked out once per group, not once per pod.

use std::collections::{BTreeMap, HashMap};

use spotwright_api::keys::ZONE_LABEL;

use crate::catalog::PoolCatalog;
use crate::model::{
    CapacityType, ExistingNode, InstanceType, NodePoolFacts, NodeSelectorTerms, PendingPod,
    PreferredTerm, Toleration,
};
use crate::offerings::{
    slot_capacity_type, slot_zone, slots, zones_of, CandidateLabels, SlotMask, Zones,
};
use crate::preferences::placement_terms;
use crate::requirements::node_constraints_match;
use crate::taints::{
    blocking_spot_taint, describe, first_blocking_pool_taint, first_blocking_taint,
};

/// Whether pods of one class may go to one pool, and on which offerings.
#[derive(Debug)]
pub(crate) enum ClassPool {
    /// Why not, for the unschedulable reason.
    Refused(String),
    /// Allowed slots per pool type (same order as the catalog); 0: refused.
    Allowed(Vec<SlotMask>),
}

#[derive(Debug)]
pub(crate) struct PodClass {
    /// One entry per pool catalog.
    pub pools: Vec<ClassPool>,
    /// One entry per existing node: may pods of this class go there at all.
    pub existing: Vec<bool>,
    /// Zones a pod of this class could land in: the domains its zone
    /// topology spread is measured over.
    pub eligible_zones: u64,
    /// Per pool: every slot any type allows this class (0 when refused), a
    /// one-word test before filtering a node's types.
    pub pool_slots: Vec<SlotMask>,
}

type ClassKey<'a> = (
    &'a BTreeMap<String, String>,
    &'a NodeSelectorTerms,
    &'a [PreferredTerm],
    &'a [Toleration],
);

pub(crate) struct Classes {
    pub list: Vec<PodClass>,
    /// Class of each input pod.
    pub of_pod: Vec<usize>,
}

pub(crate) struct ClassContext<'a, 'i> {
    pub catalogs: &'i [PoolCatalog],
    pub nodepools: &'a [NodePoolFacts],
    pub instance_types: &'a [InstanceType],
    pub nodes: &'a [ExistingNode],
    pub zones: &'i Zones,
    pub node_zones: &'i [Option<usize>],
}

pub(crate) fn group<'a>(pods: &'a [PendingPod], cx: &ClassContext<'a, '_>) -> Classes {
    let mut index: HashMap<ClassKey<'a>, usize> = HashMap::new();
    let mut list = Vec::new();
    let mut of_pod = Vec::with_capacity(pods.len());
    for pod in pods {
        let key: ClassKey<'a> = (
            &pod.node_selector,
            &pod.required_affinity,
            &pod.preferred_affinity,
            &pod.tolerations,
        );
        let class = *index.entry(key).or_insert_with(|| {
            let terms = placement_terms(pod);
            let mut class = build(&pod.node_selector, &terms, &pod.tolerations, cx);
            if !pod.preferred_affinity.is_empty() {
                // Spread domains follow the required constraints only, as
                // kube-scheduler's nodeAffinityPolicy Honor counts them.
                let required = build(
                    &pod.node_selector,
                    &pod.required_affinity,
                    &pod.tolerations,
                    cx,
                );
                class.eligible_zones = required.eligible_zones;
            }
            list.push(class);
            list.len() - 1
        });
        of_pod.push(class);
    }
    Classes { list, of_pod }
}

/// Whether some offering of some usable pool meets the node selector and
/// `term`.
fn satisfiable(
    node_selector: &BTreeMap<String, String>,
    term: &NodeSelectorTerms,
    cx: &ClassContext<'_, '_>,
) -> bool {
    cx.catalogs
        .iter()
        .filter(|catalog| catalog.unusable.is_none())
        .any(|catalog| {
            catalog.types.iter().any(|t| {
                let labels = &cx.instance_types[t.instance_type].labels;
                slots(t.slots).any(|s| {
                    let candidate = CandidateLabels {
                        pool: &catalog.labels,
                        instance_type: labels,
                        zone: &cx.zones.names[slot_zone(s)],
                        capacity_type: slot_capacity_type(s),
                    };
                    node_constraints_match(node_selector, term, &candidate)
                })
            })
        })
}

/// Of OR'd required terms, the one new nodes are launched for: the first, in
/// order, that some pool's offering meets, as Karpenter does. (Their union
/// would let a launch pick an offering that meets none of them.) Existing
/// nodes are judged on every term, as the scheduler does.
fn launch_terms(
    node_selector: &BTreeMap<String, String>,
    terms: &NodeSelectorTerms,
    cx: &ClassContext<'_, '_>,
) -> NodeSelectorTerms {
    if terms.len() < 2 {
        return terms.clone();
    }
    terms
        .iter()
        .map(|term| vec![term.clone()])
        .find(|single| satisfiable(node_selector, single, cx))
        .unwrap_or_else(|| terms.clone())
}

fn build(
    node_selector: &BTreeMap<String, String>,
    terms: &NodeSelectorTerms,
    tolerations: &[Toleration],
    cx: &ClassContext<'_, '_>,
) -> PodClass {
    let mut eligible_zones = 0u64;
    let for_launch = launch_terms(node_selector, terms, cx);
    let pools: Vec<ClassPool> = cx
        .catalogs
        .iter()
        .map(|catalog| {
            let pool = &cx.nodepools[catalog.nodepool];
            if let Some(reason) = &catalog.unusable {
                return ClassPool::Refused(reason.clone());
            }
            if let Some(taint) = first_blocking_pool_taint(tolerations, &pool.taints) {
                return ClassPool::Refused(format!("pool {} has taint {}", pool.name, describe(taint)));
            }
            let spot_taint = blocking_spot_taint(tolerations, &pool.taints);
            let masks: Vec<SlotMask> = catalog
                .types
                .iter()
                .map(|t| {
                    let labels = &cx.instance_types[t.instance_type].labels;
                    slots(t.slots)
                        .filter(|s| {
                            if spot_taint.is_some() && slot_capacity_type(*s) == CapacityType::Spot {
                                return false;
                            }
                            let candidate = CandidateLabels {
                                pool: &catalog.labels,
                                instance_type: labels,
                                zone: &cx.zones.names[slot_zone(*s)],
                                capacity_type: slot_capacity_type(*s),
                            };
                            node_constraints_match(node_selector, &for_launch, &candidate)
                        })
                        .fold(0, |mask, s| mask | (1 << s))
                })
                .collect();
            let union = masks.iter().fold(0, |acc, m| acc | m);
            if let (0, Some(taint)) = (union, spot_taint) {
                return ClassPool::Refused(format!(
                    "pool {} has taint {} on its Spot nodes and offers no on-demand node the pod fits",
                    pool.name,
                    describe(taint)
                ));
            }
            if union == 0 {
                return ClassPool::Refused(format!(
                    "pool {}: its requirements and instance types do not meet the pod's node selector/affinity",
                    pool.name
                ));
            }
            eligible_zones |= zones_of(union);
            ClassPool::Allowed(masks)
        })
        .collect();
    let existing = cx
        .nodes
        .iter()
        .zip(cx.node_zones)
        .map(|(node, zone)| {
            let ok = !node.unavailable
                && first_blocking_taint(tolerations, &node.taints).is_none()
                && node_constraints_match(node_selector, terms, &node.labels);
            if ok {
                if let Some(z) = zone {
                    eligible_zones |= 1 << z;
                }
            }
            ok
        })
        .collect();
    let pool_slots = pools
        .iter()
        .map(|p| match p {
            ClassPool::Allowed(masks) => masks.iter().fold(0, |acc, m| acc | m),
            ClassPool::Refused(_) => 0,
        })
        .collect();
    PodClass {
        pools,
        existing,
        eligible_zones,
        pool_slots,
    }
}

/// The zone of an existing node, interned.
pub(crate) fn node_zone(node: &ExistingNode, zones: &mut Zones) -> Option<usize> {
    node.labels.get(ZONE_LABEL).and_then(|z| zones.intern(z))
}
