//! Which instance types a consolidation replacement may be launched with.
//!
//! The solver returns every type that fits, cheapest first. A replacement
//! keeps only those that save the pool's threshold whatever EC2 picks among
//! them, so the saving is a bound and not a hope; and no more of them than
//! keeps the result stable: wherever the launch lands, that node could not
//! itself be replaced by a cheaper one at the next look.

use spotwright_api::keys::{CAPACITY_TYPE_LABEL, INSTANCE_TYPE_LABEL};
use spotwright_solver::model::{CapacityType, InstanceType, Operator, Requirement};
use spotwright_solver::NewNode;

use super::{Candidate, Rules, Settings};

/// A replacement that passed, or why not.
pub type Chosen = Result<(NewNode, f64), String>;

/// The replacement for `candidates`, restricted to the types that save at
/// least the threshold and keep the result stable, with the worst $/h it
/// can cost; or why there is none.
pub fn choose(
    new_node: &NewNode,
    candidates: &[&Candidate],
    rules: &Rules,
    settings: &Settings,
    instance_types: &[InstanceType],
) -> Chosen {
    let before: f64 = candidates.iter().map(|c| c.price).sum();
    let Some(&capacity) = new_node.capacity_types.first() else {
        return Err("the replacement has no capacity type".into());
    };
    let priced = priced_types(new_node, capacity, instance_types);
    let limit = before * (1.0 - rules.threshold);
    let cheap: Vec<&(String, f64)> = priced.iter().filter(|(_, p)| *p <= limit).collect();
    if cheap.is_empty() {
        return Err(format!(
            "no instance type that fits is {:.0}% cheaper than ${before:.4}/h",
            rules.threshold * 100.0
        ));
    }
    let all_spot = candidates
        .iter()
        .all(|c| c.capacity_type == CapacityType::Spot);
    let spot_to_spot = all_spot && capacity == CapacityType::Spot;
    if spot_to_spot {
        if !settings.spot_to_spot {
            return Err("Spot-to-Spot consolidation is turned off".into());
        }
        if cheap.len() < rules.min_types {
            return Err(format!(
                "Spot to Spot needs {} cheaper instance types, {} fit",
                rules.min_types,
                cheap.len()
            ));
        }
    }
    let kept = stable_prefix(&priced, &cheap, capacity, rules, settings);
    if spot_to_spot && kept < rules.min_types {
        return Err("no stable set of cheaper instance types".into());
    }
    let kept: Vec<&(String, f64)> = cheap.into_iter().take(kept).collect();
    let after = kept.last().map_or(f64::INFINITY, |(_, p)| *p);
    let names: Vec<String> = kept.iter().map(|(n, _)| n.clone()).collect();
    if let Some(key) = broken_min_values(new_node, &names, instance_types) {
        return Err(format!("the cheaper types cannot keep minValues on {key}"));
    }
    Ok((restricted(new_node, names, capacity, kept[0].1), after))
}

/// Each type of the new node with its cheapest available offering of
/// `capacity` in the new node's zones, cheapest first; types without one
/// are left out.
fn priced_types(
    new_node: &NewNode,
    capacity: CapacityType,
    instance_types: &[InstanceType],
) -> Vec<(String, f64)> {
    let mut priced: Vec<(String, f64)> = new_node
        .instance_types
        .iter()
        .filter_map(|name| {
            let t = instance_types.iter().find(|t| &t.name == name)?;
            let price = t
                .offerings
                .iter()
                .filter(|o| o.available && o.capacity_type == capacity)
                .filter(|o| new_node.zones.contains(&o.zone))
                .map(|o| o.price)
                .min_by(f64::total_cmp)?;
            Some((name.clone(), price))
        })
        .collect();
    priced.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    priced
}

/// How many of the cheapest `cheap` types to keep so that a node of any of
/// them could not be consolidated again: fewer types than a replacement of
/// it would need are at least the threshold cheaper than the dearest kept.
fn stable_prefix(
    priced: &[(String, f64)],
    cheap: &[&(String, f64)],
    capacity: CapacityType,
    rules: &Rules,
    settings: &Settings,
) -> usize {
    let needed = match capacity {
        // Replacing a Spot node means Spot to Spot (or nothing at all).
        CapacityType::Spot if !settings.spot_to_spot => return cheap.len(),
        CapacityType::Spot => rules.min_types.max(1),
        CapacityType::OnDemand => 1,
    };
    let mut kept = 0;
    for (_, price) in cheap {
        let cheaper_again = priced
            .iter()
            .filter(|(_, p)| *p <= price * (1.0 - rules.threshold))
            .count();
        if cheaper_again >= needed {
            break;
        }
        kept += 1;
    }
    kept
}

/// A requirement's `minValues` (other than on instance types, which the
/// Spot-to-Spot rule covers) that `names` cannot keep.
fn broken_min_values(
    new_node: &NewNode,
    names: &[String],
    instance_types: &[InstanceType],
) -> Option<String> {
    for requirement in &new_node.requirements {
        let Some(wanted) = requirement.min_values else {
            continue;
        };
        let mut values: Vec<&str> = instance_types
            .iter()
            .filter(|t| names.contains(&t.name))
            .filter_map(|t| t.labels.get(&requirement.key).map(String::as_str))
            .collect();
        if requirement.key == INSTANCE_TYPE_LABEL {
            values = names.iter().map(String::as_str).collect();
        }
        values.sort_unstable();
        values.dedup();
        if values.len() < wanted as usize {
            return Some(requirement.key.clone());
        }
    }
    None
}

/// `new_node` launched with only `names`, of `capacity` only.
fn restricted(
    new_node: &NewNode,
    names: Vec<String>,
    capacity: CapacityType,
    price: f64,
) -> NewNode {
    let mut node = new_node.clone();
    for requirement in &mut node.requirements {
        if requirement.operator != Operator::In {
            continue;
        }
        if requirement.key == INSTANCE_TYPE_LABEL {
            requirement.values = names.clone();
        } else if requirement.key == CAPACITY_TYPE_LABEL {
            requirement.values = vec![capacity.as_str().to_owned()];
        }
    }
    if !node
        .requirements
        .iter()
        .any(|r| r.key == CAPACITY_TYPE_LABEL)
    {
        node.requirements.push(Requirement {
            key: CAPACITY_TYPE_LABEL.to_owned(),
            operator: Operator::In,
            values: vec![capacity.as_str().to_owned()],
            min_values: None,
        });
    }
    node.instance_types = names;
    node.capacity_types = vec![capacity];
    node.price = price;
    node
}
