//! The node agent on the real control plane and moto: an EC2 instance
//! tagged for the cluster becomes a Ready Node with EKS allocatable, and
//! leaves with its instance; the system node group it keeps runs the
//! add-ons.

use std::time::Duration;

use aws_sdk_ec2::types::{
    InstanceMarketOptionsRequest, InstanceType, MarketType, ResourceType, Tag, TagSpecification,
};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use kube::Api;
use spotwright_api::keys;
use spotwright_e2e::harness::env;
use spotwright_e2e::harness::process::eventually;

async fn ec2() -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(&spotwright_e2e::aws::sdk_config().await)
}

async fn node_for(api: &Api<Node>, instance_id: &str) -> Option<Node> {
    let nodes = api.list(&Default::default()).await.ok()?;
    nodes.items.into_iter().find(|n| {
        n.spec
            .as_ref()
            .and_then(|s| s.provider_id.as_deref())
            .is_some_and(|p| p.ends_with(&format!("/{instance_id}")))
    })
}

fn ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test]
async fn a_tagged_spot_instance_becomes_a_ready_node_and_leaves_with_it() {
    let env = env();
    let nodes: Api<Node> = Api::all(env.client().await);
    let ec2 = ec2().await;
    let image = ec2.describe_images().send().await.expect("DescribeImages");
    let image_id = image
        .images()
        .iter()
        .find_map(|i| i.image_id())
        .expect("moto ships AMIs")
        .to_owned();
    let tags = TagSpecification::builder()
        .resource_type(ResourceType::Instance)
        .tags(
            Tag::builder()
                .key("kubernetes.io/cluster/spotwright-local")
                .value("owned")
                .build(),
        )
        .tags(
            Tag::builder()
                .key("spotwright.io/nodepool")
                .value("e2e")
                .build(),
        )
        .build();
    let run = ec2
        .run_instances()
        .image_id(image_id)
        .instance_type(InstanceType::M5Large)
        .min_count(1)
        .max_count(1)
        .placement(
            aws_sdk_ec2::types::Placement::builder()
                .availability_zone("us-east-1b")
                .build(),
        )
        .instance_market_options(
            InstanceMarketOptionsRequest::builder()
                .market_type(MarketType::Spot)
                .build(),
        )
        .tag_specifications(tags)
        .send()
        .await
        .expect("RunInstances");
    let instance_id = run.instances()[0]
        .instance_id()
        .expect("instance id")
        .to_owned();

    eventually(
        "a Ready Node for the instance",
        Duration::from_secs(30),
        || async {
            node_for(&nodes, &instance_id)
                .await
                .is_some_and(|n| ready(&n))
        },
    )
    .await;
    let node = node_for(&nodes, &instance_id).await.expect("node");
    let spec = node.spec.as_ref().expect("spec");
    assert_eq!(
        spec.provider_id.as_deref(),
        Some(format!("aws:///us-east-1b/{instance_id}").as_str())
    );
    let labels = node.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["node.kubernetes.io/instance-type"], "m5.large");
    assert_eq!(labels["topology.kubernetes.io/zone"], "us-east-1b");
    assert_eq!(labels["spotwright.io/nodepool"], "e2e");
    assert_eq!(labels["spotwright.io/capacity-type"], "spot");
    assert!(spec
        .taints
        .as_ref()
        .is_some_and(|ts| ts.iter().any(|t| t.key == "spotwright.io/capacity-type")));
    let allocatable = node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.clone())
        .expect("allocatable");
    assert_eq!(allocatable["cpu"].0, "1930m");
    assert_eq!(allocatable["pods"].0, "29");

    ec2.terminate_instances()
        .instance_ids(&instance_id)
        .send()
        .await
        .expect("TerminateInstances");
    eventually(
        "the Node to go with its instance",
        Duration::from_secs(30),
        || async { node_for(&nodes, &instance_id).await.is_none() },
    )
    .await;
}

#[tokio::test]
async fn the_system_node_group_runs_the_add_ons_on_two_on_demand_nodes() {
    let env = env();
    let client = env.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let selector = format!("{}=system", keys::EKS_NODEGROUP_LABEL);
    eventually(
        "two Ready system nodes",
        Duration::from_secs(60),
        || async {
            let listed = nodes
                .list(&ListParams::default().labels(&selector))
                .await
                .map(|l| l.items)
                .unwrap_or_default();
            listed.len() == 2 && listed.iter().all(ready)
        },
    )
    .await;
    let listed = nodes
        .list(&ListParams::default().labels(&selector))
        .await
        .expect("nodes")
        .items;
    let mut zones = std::collections::BTreeSet::new();
    for node in &listed {
        let labels = node.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels[keys::EKS_CAPACITY_TYPE_LABEL], keys::EKS_ON_DEMAND);
        assert!(
            !labels.contains_key(keys::CAPACITY_TYPE_LABEL),
            "{labels:?}"
        );
        zones.insert(labels[keys::ZONE_LABEL].clone());
        let taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        assert!(
            taints.iter().any(|t| t.key == "CriticalAddonsOnly"),
            "{taints:?}"
        );
    }
    assert_eq!(zones.len(), 2, "one per zone");

    let ec2 = ec2().await;
    let tagged = ec2
        .describe_instances()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name(format!("tag:{}", keys::EKS_NODEGROUP_TAG))
                .values("system")
                .build(),
        )
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("instance-state-name")
                .values("running")
                .build(),
        )
        .send()
        .await
        .expect("DescribeInstances");
    let instances: Vec<_> = tagged
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .collect();
    assert_eq!(instances.len(), 2);
    for instance in instances {
        let tag = |key: &str| {
            instance
                .tags()
                .iter()
                .find(|t| t.key() == Some(key))
                .and_then(|t| t.value())
                .map(str::to_owned)
        };
        assert_eq!(
            tag(keys::EKS_CLUSTER_NAME_TAG).as_deref(),
            Some("spotwright-local")
        );
        assert_eq!(
            tag("kubernetes.io/cluster/spotwright-local").as_deref(),
            Some("owned")
        );
        assert_eq!(tag(keys::NODECLAIM_TAG), None, "not Spotwright's");
        assert!(instance.instance_lifecycle().is_none(), "on-demand");
    }

    let pods: Api<Pod> = Api::namespaced(client, "kube-system");
    eventually(
        "coredns running on the system nodes",
        Duration::from_secs(60),
        || async {
            let running: Vec<Pod> = pods
                .list(&ListParams::default().labels("k8s-app=kube-dns"))
                .await
                .map(|l| l.items)
                .unwrap_or_default()
                .into_iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .collect();
            running.len() == 2
                && running.iter().all(|p| {
                    let node = p
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_name.clone())
                        .unwrap_or_default();
                    listed
                        .iter()
                        .any(|n| n.metadata.name.as_deref() == Some(node.as_str()))
                })
        },
    )
    .await;
}
