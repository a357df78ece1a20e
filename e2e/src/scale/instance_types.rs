//! Karpenter's KWOK provider reads its instance types from a JSON file
//! (`--instance-types-file-path`): name, architecture, operating systems,
//! resources, and offerings (price, capacity type, zone). This writes that
//! file from what Spotwright's provisioner sees on the local cluster, so
//! both systems choose among the same types at the same prices: the types
//! and zones from moto's EC2, on-demand prices from the bundled snapshot and
//! Spot prices from its discount model (the provisioner runs with
//! `--spot-price-history false`: moto's history is one flat figure), and as resources the allocatable the
//! EKS formulas give (what our node agent's nodes report). The same file
//! prices every node of either system afterwards.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};
use spotwright_api::eks::{allocatable, InstanceFacts, DEFAULT_ROOT_VOLUME_GIB};
use spotwright_api::prices::InstanceTypeName;

/// An instance type as EC2 describes it, reduced to what the file needs.
#[derive(Clone, Debug, PartialEq)]
pub struct TypeFacts {
    pub name: String,
    pub arch: String,
    pub eks: InstanceFacts,
}

/// The NodePool both systems run with asks for these: amd64 c/m/r of
/// generation 5 or later (`manifests/examples/nodepool-spot.yaml`).
pub fn eligible(facts: &TypeFacts) -> bool {
    let name = InstanceTypeName::parse(&facts.name);
    facts.arch == "amd64"
        && ["c", "m", "r"].contains(&name.category)
        && name.generation.is_some_and(|g| g > 4)
}

/// Price of one offering.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Offering {
    pub spot: Option<f64>,
    pub on_demand: Option<f64>,
}

/// The file's JSON: one entry per eligible type offered in some zone, with
/// a Spot offering per zone that has a Spot price and an on-demand
/// offering per zone when the type has an on-demand price.
pub fn karpenter_instance_types(
    types: &[TypeFacts],
    prices: &BTreeMap<(String, String), Offering>,
) -> Value {
    let mut entries = Vec::new();
    for facts in types.iter().filter(|t| eligible(t)) {
        let mut offerings = Vec::new();
        for ((name, zone), offering) in prices.range((facts.name.clone(), String::new())..) {
            if *name != facts.name {
                break;
            }
            for (capacity, price) in [("spot", offering.spot), ("on-demand", offering.on_demand)] {
                let Some(price) = price else { continue };
                offerings.push(json!({
                    "Price": price, "Available": true,
                    "Requirements": [
                        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": [capacity]},
                        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone]}
                    ]
                }));
            }
        }
        if offerings.is_empty() {
            continue;
        }
        let resources = allocatable(&facts.eks, DEFAULT_ROOT_VOLUME_GIB);
        let resources: serde_json::Map<String, Value> = resources
            .quantities()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v)))
            .collect();
        entries.push(json!({
            "name": facts.name, "architecture": facts.arch,
            "operatingSystems": ["linux"], "resources": resources, "offerings": offerings
        }));
    }
    Value::Array(entries)
}

/// (type, zone, capacity type) → USD per hour, read back from the file.
pub fn price_table(file: &Value) -> BTreeMap<(String, String, String), f64> {
    let mut table = BTreeMap::new();
    for entry in file.as_array().into_iter().flatten() {
        let name = entry["name"].as_str().unwrap_or_default();
        for offering in entry["offerings"].as_array().into_iter().flatten() {
            let mut capacity = "";
            let mut zone = "";
            for requirement in offering["Requirements"].as_array().into_iter().flatten() {
                let value = requirement["values"][0].as_str().unwrap_or_default();
                match requirement["key"].as_str() {
                    Some("karpenter.sh/capacity-type") => capacity = value,
                    Some("topology.kubernetes.io/zone") => zone = value,
                    _ => {}
                }
            }
            if let Some(price) = offering["Price"].as_f64() {
                table.insert(
                    (name.to_owned(), zone.to_owned(), capacity.to_owned()),
                    price,
                );
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(name: &str, arch: &str) -> TypeFacts {
        TypeFacts {
            name: name.to_owned(),
            arch: arch.to_owned(),
            eks: InstanceFacts {
                vcpus: 4,
                memory_mib: 16384,
                max_enis: 4,
                ipv4_per_eni: 15,
            },
        }
    }

    #[test]
    fn only_the_pools_types_with_their_zone_prices() {
        let types = [
            facts("m5.xlarge", "amd64"),
            facts("m4.xlarge", "amd64"),
            facts("m6g.xlarge", "arm64"),
            facts("t3.xlarge", "amd64"),
            facts("c6i.xlarge", "amd64"),
        ];
        let mut prices = BTreeMap::new();
        let both = Offering {
            spot: Some(0.05),
            on_demand: Some(0.192),
        };
        for name in ["m5.xlarge", "m4.xlarge", "m6g.xlarge", "t3.xlarge"] {
            prices.insert((name.to_owned(), "us-east-1a".to_owned()), both);
        }
        let spot_only = Offering {
            spot: Some(0.06),
            on_demand: None,
        };
        prices.insert(("m5.xlarge".to_owned(), "us-east-1b".to_owned()), spot_only);
        let file = karpenter_instance_types(&types, &prices);
        let names: Vec<&str> = file
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["name"].as_str())
            .collect();
        // m4: generation 4; arm64; t: not c/m/r; c6i: no offering in any zone.
        assert_eq!(names, ["m5.xlarge"]);
        assert_eq!(file[0]["resources"]["pods"], "58");
        assert_eq!(file[0]["resources"]["cpu"], "3920m");
        let table = price_table(&file);
        let key = |zone: &str, capacity: &str| {
            ("m5.xlarge".to_owned(), zone.to_owned(), capacity.to_owned())
        };
        assert_eq!(table.len(), 3);
        assert_eq!(table[&key("us-east-1a", "spot")], 0.05);
        assert_eq!(table[&key("us-east-1a", "on-demand")], 0.192);
        assert_eq!(table[&key("us-east-1b", "spot")], 0.06);
    }
}
