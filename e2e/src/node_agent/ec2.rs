//! EC2 calls of the node agent: the cluster's instances and their types,
//! and the system node group's launches.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_ec2::types::{
    Filter, InstanceStateName, InstanceType, Placement, ResourceType, Tag, TagSpecification,
};
use spotwright_api::eks::InstanceFacts;

use super::known::Lifecycle;
use super::{Instance, SystemNodeGroup, TypeFacts};

#[derive(Debug, thiserror::Error)]
pub enum Ec2Error {
    #[error("EC2 {call}: {message}")]
    Call { call: &'static str, message: String },
}

fn call_error<E: std::error::Error>(call: &'static str) -> impl Fn(E) -> Ec2Error {
    move |err| Ec2Error::Call {
        call,
        message: aws_sdk_ec2::error::DisplayErrorContext(err).to_string(),
    }
}

fn owned_by(cluster: &str) -> Filter {
    Filter::builder()
        .name(format!(
            "tag:{}",
            spotwright_api::keys::cluster_tag_key(cluster)
        ))
        .values("owned")
        .build()
}

/// Those of `ids` tagged `kubernetes.io/cluster/<cluster>: owned`.
pub async fn cluster_instances_among(
    client: &aws_sdk_ec2::Client,
    cluster: &str,
    ids: &[String],
) -> Result<Vec<Instance>, Ec2Error> {
    let mut instances = Vec::new();
    // EC2 takes at most 1,000 ids per DescribeInstances.
    for chunk in ids.chunks(500) {
        let request = client
            .describe_instances()
            .filters(owned_by(cluster))
            .set_instance_ids(Some(chunk.to_vec()));
        instances.extend(described(request).await?);
    }
    Ok(instances)
}

async fn described(
    request: aws_sdk_ec2::operation::describe_instances::builders::DescribeInstancesFluentBuilder,
) -> Result<Vec<Instance>, Ec2Error> {
    let mut pages = request.into_paginator().send();
    let mut instances = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(call_error("DescribeInstances"))?;
        for reservation in page.reservations() {
            instances.extend(reservation.instances().iter().filter_map(instance_of));
        }
    }
    Ok(instances)
}

fn instance_of(instance: &aws_sdk_ec2::types::Instance) -> Option<Instance> {
    let state = instance.state().and_then(|s| s.name());
    let tags: BTreeMap<String, String> = instance
        .tags()
        .iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_owned(),
                t.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect();
    Some(Instance {
        id: instance.instance_id()?.to_owned(),
        instance_type: instance.instance_type()?.as_str().to_owned(),
        zone: instance
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap_or_default()
            .to_owned(),
        running: state == Some(&InstanceStateName::Running),
        spot: instance
            .instance_lifecycle()
            .is_some_and(|l| l.as_str() == "spot"),
        private_ip: instance.private_ip_address().map(str::to_owned),
        private_dns_name: instance.private_dns_name().map(str::to_owned),
        image_id: instance.image_id().map(str::to_owned),
        tags,
    })
}

/// The state of every instance of the account and region, by id: what
/// DescribeInstanceStatus answers, far lighter than describing each
/// instance again.
pub async fn instance_states(
    client: &aws_sdk_ec2::Client,
) -> Result<Vec<(String, Lifecycle)>, Ec2Error> {
    let mut pages = client
        .describe_instance_status()
        .include_all_instances(true)
        .into_paginator()
        .send();
    let mut states = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(call_error("DescribeInstanceStatus"))?;
        for status in page.instance_statuses() {
            let state = status.instance_state().and_then(|s| s.name());
            if let (Some(id), Some(state)) = (status.instance_id(), state) {
                states.push((id.to_owned(), lifecycle_of(state)));
            }
        }
    }
    Ok(states)
}

fn lifecycle_of(state: &InstanceStateName) -> Lifecycle {
    match state {
        InstanceStateName::Running => Lifecycle::Running,
        InstanceStateName::Pending => Lifecycle::Starting,
        InstanceStateName::Stopping | InstanceStateName::Stopped => Lifecycle::Stopped,
        _ => Lifecycle::Ended,
    }
}

/// Facts of the named instance types, as EC2 reports them.
pub async fn instance_types(
    client: &aws_sdk_ec2::Client,
    names: &[String],
) -> Result<HashMap<String, TypeFacts>, Ec2Error> {
    let mut facts = HashMap::new();
    for chunk in names.chunks(100) {
        let mut request = client.describe_instance_types();
        for name in chunk {
            request = request.instance_types(InstanceType::from(name.as_str()));
        }
        let reply = request
            .send()
            .await
            .map_err(call_error("DescribeInstanceTypes"))?;
        for info in reply.instance_types() {
            let (Some(name), Some(cpu), Some(memory), Some(network)) = (
                info.instance_type(),
                info.v_cpu_info(),
                info.memory_info(),
                info.network_info(),
            ) else {
                continue;
            };
            let arch = info
                .processor_info()
                .map(|p| p.supported_architectures())
                .and_then(|archs| archs.first())
                .map(|a| {
                    if a.as_str() == "arm64" {
                        "arm64"
                    } else {
                        "amd64"
                    }
                })
                .unwrap_or("amd64");
            let facts_of = InstanceFacts {
                vcpus: cpu.default_v_cpus().unwrap_or(0).max(0) as u32,
                memory_mib: memory.size_in_mib().unwrap_or(0).max(0) as u64,
                max_enis: network.maximum_network_interfaces().unwrap_or(1).max(1) as u32,
                ipv4_per_eni: network.ipv4_addresses_per_interface().unwrap_or(1).max(1) as u32,
            };
            facts.insert(
                name.as_str().to_owned(),
                TypeFacts {
                    facts: facts_of,
                    arch: arch.to_owned(),
                },
            );
        }
    }
    Ok(facts)
}

/// Launches one on-demand instance of the system node group in `zone`,
/// tagged as EKS tags a managed node group's instances.
pub async fn launch_system_instance(
    client: &aws_sdk_ec2::Client,
    cluster: &str,
    group: &SystemNodeGroup,
    zone: &str,
    image: Option<&str>,
) -> Result<String, Ec2Error> {
    let images = client
        .describe_images()
        .send()
        .await
        .map_err(call_error("DescribeImages"))?;
    let any_image = images.images().iter().find_map(|i| i.image_id());
    let image = image.or(any_image).ok_or_else(|| Ec2Error::Call {
        call: "DescribeImages",
        message: "no image to launch the system node group from".to_owned(),
    })?;
    let tag = |key: &str, value: &str| Tag::builder().key(key).value(value).build();
    let tags = TagSpecification::builder()
        .resource_type(ResourceType::Instance)
        .tags(tag(
            &spotwright_api::keys::cluster_tag_key(cluster),
            "owned",
        ))
        .tags(tag(spotwright_api::keys::EKS_CLUSTER_NAME_TAG, cluster))
        .tags(tag(spotwright_api::keys::EKS_NODEGROUP_TAG, &group.name))
        .tags(tag("Name", &format!("{cluster}-{}", group.name)))
        .build();
    let reply = client
        .run_instances()
        .image_id(image)
        .instance_type(InstanceType::from(group.instance_type.as_str()))
        .placement(Placement::builder().availability_zone(zone).build())
        .min_count(1)
        .max_count(1)
        .tag_specifications(tags)
        .send()
        .await
        .map_err(call_error("RunInstances"))?;
    Ok(reply
        .instances()
        .first()
        .and_then(|i| i.instance_id())
        .unwrap_or_default()
        .to_owned())
}

/// Every parameter under `prefix` (recursively), as (name, value).
pub async fn parameters_under(
    client: &aws_sdk_ssm::Client,
    prefix: &str,
) -> Result<Vec<(String, String)>, Ec2Error> {
    let mut pages = client
        .get_parameters_by_path()
        .path(prefix)
        .recursive(true)
        .into_paginator()
        .send();
    let mut found = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|err| Ec2Error::Call {
            call: "SSM GetParametersByPath",
            message: aws_sdk_ssm::error::DisplayErrorContext(err).to_string(),
        })?;
        for parameter in page.parameters() {
            if let (Some(name), Some(value)) = (parameter.name(), parameter.value()) {
                found.push((name.to_owned(), value.to_owned()));
            }
        }
    }
    Ok(found)
}

/// Each zone's id, as EC2 reports it (`us-east-1a` → `use1-az6`).
pub async fn zone_ids(client: &aws_sdk_ec2::Client) -> Result<HashMap<String, String>, Ec2Error> {
    let reply = client
        .describe_availability_zones()
        .send()
        .await
        .map_err(call_error("DescribeAvailabilityZones"))?;
    Ok(reply
        .availability_zones()
        .iter()
        .filter_map(|z| Some((z.zone_name()?.to_owned(), z.zone_id()?.to_owned())))
        .collect())
}
