//! The floor of the scale benchmark: the same workload on Nodes made before
//! the scale-up, with no autoscaler, placed by the default scheduler. What
//! is left is the plane's own pace (the ReplicaSet controller's creates,
//! the scheduler's binds and Events, KWOK's status writes), which no
//! autoscaler on the same plane can beat (`bench/scale/run --floor`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::instance_types::price_table;
use k8s_openapi::api::core::v1::Node;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use spotwright_api::keys::{ARCH_LABEL, HOSTNAME_LABEL, INSTANCE_TYPE_LABEL, OS_LABEL, ZONE_LABEL};

/// The floor's "NodePool": the label its nodes carry, with the pool's name.
pub const FLOOR_POOL_LABEL: &str = "scale-bench.spotwright.io/pool";
/// The floor's capacity type label (always `spot`, so that the driver
/// prices the nodes as Spot nodes of the same types).
pub const FLOOR_CAPACITY_LABEL: &str = "scale-bench.spotwright.io/capacity-type";
/// KWOK plays the kubelet of a Node with this annotation (`e2e/cluster`).
const KWOK_NODE_ANNOTATION: &str = "kwok.x-k8s.io/node";

/// The Nodes of the floor's fleet: `count` of one entry of the
/// instance-types file, named `floor-<i>`, the zones taken in turn. The
/// type must have a Spot offering in every zone.
pub fn floor_nodes(
    entry: &Value,
    count: usize,
    zones: &[String],
    pool: &str,
) -> Result<Vec<Value>, String> {
    let name = entry["name"]
        .as_str()
        .ok_or("an instance type without a name")?;
    let resources = entry
        .get("resources")
        .filter(|r| r.is_object())
        .ok_or_else(|| format!("{name}: no resources"))?;
    let arch = entry["architecture"].as_str().unwrap_or("amd64");
    if zones.is_empty() {
        return Err("no zone for the floor's nodes".into());
    }
    let offered = spot_zones(entry);
    if let Some(zone) = zones.iter().find(|z| !offered.contains(*z)) {
        return Err(format!("{name} has no Spot offering in {zone}"));
    }
    Ok((0..count)
        .map(|i| {
            let node = format!("floor-{i}");
            json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": node,
                    "annotations": {KWOK_NODE_ANNOTATION: "fake"},
                    "labels": {
                        HOSTNAME_LABEL: node, OS_LABEL: "linux", ARCH_LABEL: arch,
                        INSTANCE_TYPE_LABEL: name, ZONE_LABEL: zones[i % zones.len()],
                        FLOOR_POOL_LABEL: pool, FLOOR_CAPACITY_LABEL: "spot",
                    },
                },
                "status": {"capacity": resources, "allocatable": resources},
            })
        })
        .collect())
}

/// The zones where an instance-types entry has a priced Spot offering, as
/// the driver's price table reads them.
fn spot_zones(entry: &Value) -> BTreeSet<String> {
    price_table(&Value::Array(vec![entry.clone()]))
        .into_keys()
        .filter(|(_, _, capacity)| capacity == "spot")
        .map(|(_, zone, _)| zone)
        .collect()
}

/// Creates the floor's Nodes and waits (up to `timeout`) until KWOK has
/// made every one Ready.
pub async fn make_floor(client: &Client, nodes: &[Value], timeout: Duration) -> Result<(), String> {
    let api: Api<Node> = Api::all(client.clone());
    for value in nodes {
        let node: Node =
            serde_json::from_value(value.clone()).map_err(|e| format!("a floor node: {e}"))?;
        let name = node.metadata.name.clone().unwrap_or_default();
        api.create(&PostParams::default(), &node)
            .await
            .map_err(|e| format!("creating the node {name}: {e}"))?;
    }
    let began = Instant::now();
    let selector = ListParams::default().labels(FLOOR_POOL_LABEL);
    loop {
        let ready = match api.list(&selector).await {
            Ok(list) => list.items.iter().filter(|n| is_ready(n)).count(),
            Err(err) => {
                eprintln!("[floor] listing nodes: {err}");
                0
            }
        };
        if ready >= nodes.len() {
            return Ok(());
        }
        if began.elapsed() > timeout {
            return Err(format!(
                "{ready} of {} floor nodes Ready after {timeout:?}",
                nodes.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn is_ready(node: &Node) -> bool {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(zones: &[&str]) -> Value {
        let offerings: Vec<Value> = zones
            .iter()
            .flat_map(|z| {
                ["spot", "on-demand"].map(|capacity| {
                    json!({"Price": 1.0, "Available": true, "Requirements": [
                        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": [capacity]},
                        {"key": ZONE_LABEL, "operator": "In", "values": [z]}]})
                })
            })
            .collect();
        json!({"name": "r5a.16xlarge", "architecture": "amd64", "offerings": offerings,
            "resources": {"cpu": "63770m", "memory": "487940096Ki", "pods": "737"}})
    }

    fn zones(names: &[&str]) -> Vec<String> {
        names.iter().map(|z| z.to_string()).collect()
    }

    #[test]
    fn nodes_take_the_zones_in_turn_and_carry_the_types_resources() {
        let abc = zones(&["us-east-1a", "us-east-1b", "us-east-1c"]);
        let nodes = floor_nodes(
            &entry(&["us-east-1a", "us-east-1b", "us-east-1c"]),
            4,
            &abc,
            "floor",
        )
        .unwrap();
        let zone_of = |n: &Value| {
            n["metadata"]["labels"][ZONE_LABEL]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(
            nodes.iter().map(zone_of).collect::<Vec<_>>(),
            ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1a"]
        );
        let last = &nodes[3];
        assert_eq!(last["metadata"]["name"], "floor-3");
        assert_eq!(last["metadata"]["labels"][HOSTNAME_LABEL], "floor-3");
        assert_eq!(
            last["metadata"]["labels"][INSTANCE_TYPE_LABEL],
            "r5a.16xlarge"
        );
        assert_eq!(last["metadata"]["labels"][FLOOR_POOL_LABEL], "floor");
        assert_eq!(last["metadata"]["labels"][FLOOR_CAPACITY_LABEL], "spot");
        assert_eq!(
            last["metadata"]["annotations"][KWOK_NODE_ANNOTATION],
            "fake"
        );
        assert_eq!(last["status"]["allocatable"]["pods"], "737");
        assert_eq!(last["status"]["capacity"]["cpu"], "63770m");
        let parsed: Node = serde_json::from_value(last.clone()).unwrap();
        assert_eq!(parsed.metadata.name.as_deref(), Some("floor-3"));
    }

    #[test]
    fn a_zone_without_a_spot_offering_is_refused() {
        let err = floor_nodes(
            &entry(&["us-east-1a"]),
            2,
            &zones(&["us-east-1a", "us-east-1b"]),
            "floor",
        )
        .unwrap_err();
        assert!(err.contains("us-east-1b"), "{err}");
        let mut on_demand_in_b = entry(&["us-east-1a", "us-east-1b"]);
        let offerings = on_demand_in_b["offerings"].as_array_mut().unwrap();
        offerings.retain(|o| {
            !(o["Requirements"][1]["values"][0] == "us-east-1b"
                && o["Requirements"][0]["values"][0] == "spot")
        });
        assert_eq!(offerings.len(), 3);
        let zones_ab = zones(&["us-east-1a", "us-east-1b"]);
        assert!(floor_nodes(&on_demand_in_b, 2, &zones_ab, "floor").is_err());
        assert!(floor_nodes(&entry(&["us-east-1a"]), 2, &[], "floor").is_err());
        assert!(floor_nodes(&json!({"name": "x"}), 2, &zones(&["us-east-1a"]), "floor").is_err());
    }
}
