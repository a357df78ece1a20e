//! Turning the packing's open nodes into NodeClaim-ready `NewNode`s: types
//! that fit, cheapest first; zones; capacity types, Spot first; price; and
//! the requirements the NodeClaim carries.

use spotwright_api::keys::{CAPACITY_TYPE_LABEL, INSTANCE_TYPE_LABEL, ZONE_LABEL};

use crate::catalog::PoolCatalog;
use crate::model::{Operator, PendingPod, RelaxedMinValues, Requirement};
use crate::offerings::{
    slot_capacity_type, slot_zone, slots, zones_of, CandidateLabels, SlotMask, Zones, SPOT_SLOTS,
};
use crate::packing::OpenNode;
use crate::pods::PodFacts;
use crate::preferences::placement_terms;
use crate::requirements::matching_term;
use crate::resources::ResourceNames;
use crate::{Input, NewNode};

pub(crate) struct PlanContext<'s> {
    pub input: &'s Input<'s>,
    pub catalogs: &'s [PoolCatalog],
    pub pods: &'s [PodFacts],
    pub names: &'s ResourceNames,
    pub zones: &'s Zones,
}

fn requirement(key: &str, values: Vec<String>, min_values: Option<u32>) -> Requirement {
    Requirement {
        key: key.to_string(),
        operator: Operator::In,
        values,
        min_values,
    }
}

pub(crate) fn new_node(node: &OpenNode, cx: &PlanContext<'_>) -> NewNode {
    let catalog = &cx.catalogs[node.catalog];
    let pool = &cx.input.nodepools[catalog.nodepool];
    // What the node held against its pool's limits is all it may launch as.
    let kept = catalog.launchable(&node.types, cx.input.instance_types);
    let union: SlotMask = kept.iter().fold(0, |acc, (_, m)| acc | m);
    // Spot when any Spot offering is left; on-demand only otherwise.
    let buy: SlotMask = if union & SPOT_SLOTS != 0 {
        SPOT_SLOTS
    } else {
        !SPOT_SLOTS
    };

    let mut types: Vec<(u32, SlotMask, f64)> = kept
        .iter()
        .map(|(t, m)| {
            (
                *t,
                *m,
                catalog.types[*t as usize]
                    .cheapest_in(*m)
                    .unwrap_or(f64::INFINITY),
            )
        })
        .collect();
    let name_of = |t: u32| {
        cx.input.instance_types[catalog.types[t as usize].instance_type]
            .name
            .as_str()
    };
    types.sort_by(|a, b| {
        a.2.total_cmp(&b.2)
            .then_with(|| name_of(a.0).cmp(name_of(b.0)))
    });
    let price = types
        .iter()
        .filter_map(|(t, m, _)| catalog.types[*t as usize].cheapest_in(m & buy))
        .min_by(f64::total_cmp)
        .unwrap_or(f64::INFINITY);

    let mut requests = node.requests.clone();
    if let Some((t, _, _)) = types.first() {
        requests.add_assign(&catalog.types[*t as usize].overhead);
    }
    let mut zones: Vec<String> = (0..64)
        .filter(|z| zones_of(union) & (1 << z) != 0)
        .map(|z| cx.zones.names[z].clone())
        .collect();
    zones.sort();
    let capacity_types = PoolCatalog::capacity_types(union);
    let instance_types: Vec<String> = types
        .iter()
        .map(|(t, _, _)| name_of(*t).to_string())
        .collect();

    let mut requirements = pool.requirements.clone();
    let mut add = |r: Requirement| {
        if !requirements.contains(&r) {
            requirements.push(r);
        }
    };
    for r in pod_requirements(node, cx) {
        add(r);
    }
    let type_min_values = pool
        .requirements
        .iter()
        .find(|r| r.key == INSTANCE_TYPE_LABEL)
        .and_then(|r| r.min_values);
    add(requirement(
        INSTANCE_TYPE_LABEL,
        instance_types.clone(),
        type_min_values,
    ));
    add(requirement(ZONE_LABEL, zones.clone(), None));
    add(requirement(
        CAPACITY_TYPE_LABEL,
        capacity_types
            .iter()
            .map(|c| c.as_str().to_string())
            .collect(),
        None,
    ));

    let min_values_relaxed = relaxed_min_values(node, cx);
    for relaxed in &min_values_relaxed {
        for r in requirements.iter_mut().filter(|r| r.key == relaxed.key) {
            r.min_values = r.min_values.map(|m| m.min(relaxed.kept));
        }
    }
    NewNode {
        nodepool: pool.name.clone(),
        pods: node
            .pods
            .iter()
            .map(|p| cx.input.pods[*p].key.clone())
            .collect(),
        requests: cx.names.sparse(&requests),
        instance_types,
        zones,
        capacity_types,
        requirements,
        price,
        min_values_relaxed,
    }
}

/// The `minValues` a relaxed node keeps fewer values of than its pool asks.
fn relaxed_min_values(node: &OpenNode, cx: &PlanContext<'_>) -> Vec<RelaxedMinValues> {
    if !node.relaxed {
        return Vec::new();
    }
    let catalog = &cx.catalogs[node.catalog];
    catalog
        .min_values_unmet(&node.types, cx.input.instance_types)
        .into_iter()
        .map(|(key, wanted, kept)| RelaxedMinValues {
            key: key.to_owned(),
            wanted: u32::try_from(wanted).unwrap_or(u32::MAX),
            kept: u32::try_from(kept).unwrap_or(u32::MAX),
        })
        .collect()
}

/// The node constraints of the node's pods, as requirements: each node
/// selector pair as `In`, and of each pod's affinity the first term that one
/// of the node's remaining offerings satisfies.
fn pod_requirements(node: &OpenNode, cx: &PlanContext<'_>) -> Vec<Requirement> {
    let catalog = &cx.catalogs[node.catalog];
    let mut seen_classes: Vec<usize> = Vec::new();
    let mut out = Vec::new();
    for pod in &node.pods {
        let class = cx.pods[*pod].class;
        if seen_classes.contains(&class) {
            continue;
        }
        seen_classes.push(class);
        let source: &PendingPod = &cx.input.pods[*pod];
        let terms = placement_terms(source);
        for (key, value) in &source.node_selector {
            out.push(requirement(key, vec![value.clone()], None));
        }
        let term = node.types.iter().find_map(|(t, m)| {
            let labels = &cx.input.instance_types[catalog.types[*t as usize].instance_type].labels;
            slots(*m).find_map(|s| {
                let candidate = CandidateLabels {
                    pool: &catalog.labels,
                    instance_type: labels,
                    zone: &cx.zones.names[slot_zone(s)],
                    capacity_type: slot_capacity_type(s),
                };
                matching_term(&terms, &candidate).flatten()
            })
        });
        if let Some(term) = term.and_then(|t| terms.get(t)) {
            out.extend(term.iter().cloned());
        }
    }
    out
}
