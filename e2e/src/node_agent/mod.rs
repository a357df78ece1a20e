//! The node agent plays the kubelet and the cloud node lifecycle for the
//! local cluster: every running EC2 instance tagged for the cluster gets a
//! Node (which KWOK then keeps Ready), and a Node whose instance is gone is
//! deleted. What a Node looks like is decided here, from plain data; the
//! EC2 and Kubernetes calls are in [`ec2`] and [`nodes`].

pub mod ec2;
pub mod known;
pub mod nodes;
pub mod pace;

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeSpec, NodeStatus, NodeSystemInfo, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use spotwright_api::eks::{self, InstanceFacts};
use spotwright_api::keys;

/// Label on every Node the agent made; the agent only deletes those.
pub const MANAGED_LABEL: &str = "e2e.spotwright.io/node-agent";
/// KWOK manages Nodes with this annotation (value `fake`).
pub const KWOK_ANNOTATION: &str = "kwok.x-k8s.io/node";
/// The taint on the system node group's nodes (`CriticalAddonsOnly=true:NoSchedule`).
pub const SYSTEM_TAINT_KEY: &str = "CriticalAddonsOnly";

/// The managed node group the agent keeps running, as EKS would.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemNodeGroup {
    pub name: String,
    pub size: usize,
    pub instance_type: String,
}

/// How many instances of the system node group to launch, and in which
/// zones: running ones count, and new ones go to the zones with the fewest.
pub fn system_launches(
    instances: &[Instance],
    group: &SystemNodeGroup,
    zones: &[&str],
) -> Vec<String> {
    let mut per_zone: Vec<(usize, &str)> = zones
        .iter()
        .map(|zone| {
            let running = instances
                .iter()
                .filter(|i| i.running && i.zone == *zone)
                .filter(|i| i.tags.get(keys::EKS_NODEGROUP_TAG) == Some(&group.name))
                .count();
            (running, *zone)
        })
        .collect();
    let running: usize = per_zone.iter().map(|(n, _)| n).sum();
    let mut launches = Vec::new();
    for _ in running..group.size {
        let Some(emptiest) = per_zone.iter_mut().min_by_key(|(n, zone)| (*n, *zone)) else {
            break;
        };
        emptiest.0 += 1;
        launches.push(emptiest.1.to_owned());
    }
    launches
}

/// An EC2 instance, as far as the agent cares.
#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    pub id: String,
    pub instance_type: String,
    pub zone: String,
    pub running: bool,
    pub spot: bool,
    pub private_ip: Option<String>,
    pub private_dns_name: Option<String>,
    pub image_id: Option<String>,
    pub tags: BTreeMap<String, String>,
}

impl Instance {
    /// The Node name: the private DNS name, as on EKS, else the instance id.
    pub fn node_name(&self) -> String {
        self.private_dns_name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| self.id.clone())
    }

    pub fn provider_id(&self) -> String {
        format!("aws:///{}/{}", self.zone, self.id)
    }
}

/// What the agent knows of an instance type.
#[derive(Clone, Debug, PartialEq)]
pub struct TypeFacts {
    pub facts: InstanceFacts,
    /// `amd64` or `arm64`.
    pub arch: String,
}

/// How the agent's Nodes are made.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The kubelet version of an instance whose image is not known.
    pub kubelet_version: String,
    /// The kubelet version each known image runs (from the EKS AMI parameters).
    pub image_versions: HashMap<String, String>,
    /// Each zone's id (`us-east-1a` → `use1-az6`), which the cloud node
    /// lifecycle labels a Node with before it takes pods.
    pub zone_ids: HashMap<String, String>,
    pub root_volume_gib: u64,
}

impl Settings {
    /// The kubelet a node of this instance runs: its image's, as on EKS.
    pub fn kubelet_version_of(&self, instance: &Instance) -> String {
        instance
            .image_id
            .as_ref()
            .and_then(|image| self.image_versions.get(image))
            .unwrap_or(&self.kubelet_version)
            .clone()
    }
}

/// Parses `1.35=v1.35.4,1.36=v1.36.3`: the kubelet version of each minor.
pub fn parse_kubelet_versions(text: &str) -> Result<BTreeMap<String, String>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((minor, version)) if !minor.is_empty() && version.starts_with('v') => {
                Ok((minor.to_owned(), version.to_owned()))
            }
            _ => Err(format!(
                "{pair:?} is not <minor>=v<version>, e.g. 1.36=v1.36.3"
            )),
        })
        .collect()
}

/// The x86_64 image the EKS AMI parameters name for `kubelet_version`'s
/// minor (`v1.35.4` → `<prefix>/1.35/amazon-linux-2023/x86_64/...`).
pub fn x86_64_image_of(
    parameters: &[(String, String)],
    prefix: &str,
    kubelet_version: &str,
) -> Option<String> {
    let version = kubelet_version.strip_prefix('v')?;
    let minor = version.rsplit_once('.').map_or(version, |(minor, _)| minor);
    let path = format!("{prefix}/{minor}/amazon-linux-2023/x86_64/standard/recommended/image_id");
    parameters
        .iter()
        .find(|(name, _)| *name == path)
        .map(|(_, image)| image.clone())
}

/// The kubelet version of each image the EKS AMI parameters name:
/// `<prefix>/<minor>/.../image_id = <image>` runs the minor's kubelet.
pub fn image_versions(
    parameters: &[(String, String)],
    prefix: &str,
    kubelet_versions: &BTreeMap<String, String>,
) -> HashMap<String, String> {
    parameters
        .iter()
        .filter_map(|(path, image)| {
            let rest = path.strip_prefix(prefix)?.strip_prefix('/')?;
            let minor = rest.split('/').next()?;
            Some((image.clone(), kubelet_versions.get(minor)?.clone()))
        })
        .collect()
}

/// A Node the agent made earlier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExistingNode {
    pub name: String,
    pub provider_id: Option<String>,
}

/// What to change.
#[derive(Debug, Default)]
pub struct Plan {
    pub create: Vec<Node>,
    pub delete: Vec<String>,
    /// Running instances whose type is not known (yet): no Node for them.
    pub unknown_types: Vec<String>,
}

/// Nodes for running instances that have none; deletion for Nodes whose instance is not running.
pub fn plan(
    instances: &[Instance],
    types: &HashMap<String, TypeFacts>,
    existing: &[ExistingNode],
    settings: &Settings,
) -> Plan {
    let mut plan = Plan::default();
    let running: Vec<&Instance> = instances.iter().filter(|i| i.running).collect();
    for instance in &running {
        if existing.iter().any(|n| n.name == instance.node_name()) {
            continue;
        }
        match types.get(&instance.instance_type) {
            Some(facts) => plan.create.push(node_for(instance, facts, settings)),
            None => plan.unknown_types.push(instance.instance_type.clone()),
        }
    }
    for node in existing {
        let backed = running
            .iter()
            .any(|i| Some(i.provider_id()) == node.provider_id && i.node_name() == node.name);
        if !backed {
            plan.delete.push(node.name.clone());
        }
    }
    plan.unknown_types.sort();
    plan.unknown_types.dedup();
    plan
}

/// The Node a kubelet on this instance would register.
pub fn node_for(instance: &Instance, facts: &TypeFacts, settings: &Settings) -> Node {
    let name = instance.node_name();
    let capacity_type = if instance.spot {
        keys::SPOT
    } else {
        keys::ON_DEMAND
    };
    let region = instance
        .zone
        .trim_end_matches(|c: char| c.is_ascii_lowercase())
        .to_owned();
    let mut labels = BTreeMap::from([
        (MANAGED_LABEL.to_owned(), "true".to_owned()),
        (keys::HOSTNAME_LABEL.to_owned(), name.clone()),
        (
            keys::INSTANCE_TYPE_LABEL.to_owned(),
            instance.instance_type.clone(),
        ),
        (keys::ZONE_LABEL.to_owned(), instance.zone.clone()),
        ("topology.kubernetes.io/region".to_owned(), region),
        (keys::ARCH_LABEL.to_owned(), facts.arch.clone()),
        (keys::OS_LABEL.to_owned(), "linux".to_owned()),
        (
            keys::CAPACITY_TYPE_LABEL.to_owned(),
            capacity_type.to_owned(),
        ),
        ("type".to_owned(), "kwok".to_owned()),
    ]);
    if let Some(pool) = instance.tags.get(keys::NODEPOOL_TAG) {
        labels.insert(keys::NODEPOOL_LABEL.to_owned(), pool.clone());
    }
    if let Some(zone_id) = settings.zone_ids.get(&instance.zone) {
        labels.insert(keys::ZONE_ID_LABEL.to_owned(), zone_id.clone());
    }
    let mut taints = Vec::new();
    if let Some(group) = instance.tags.get(keys::EKS_NODEGROUP_TAG) {
        // As EKS labels a managed node group's nodes; none of Spotwright's.
        labels.remove(keys::CAPACITY_TYPE_LABEL);
        labels.insert(keys::EKS_NODEGROUP_LABEL.to_owned(), group.clone());
        let capacity = if instance.spot {
            "SPOT"
        } else {
            keys::EKS_ON_DEMAND
        };
        labels.insert(
            keys::EKS_CAPACITY_TYPE_LABEL.to_owned(),
            capacity.to_owned(),
        );
        // The usual system node group taint: only add-ons that tolerate it.
        taints.push(Taint {
            key: SYSTEM_TAINT_KEY.to_owned(),
            value: Some("true".to_owned()),
            effect: "NoSchedule".to_owned(),
            time_added: None,
        });
    } else if instance.spot {
        // The bootstrap registers Spot nodes with the Spot taint, as kubelet's
        // --register-with-taints does on a real node.
        taints.push(Taint {
            key: keys::CAPACITY_TYPE_LABEL.to_owned(),
            value: Some(keys::SPOT.to_owned()),
            effect: "NoSchedule".to_owned(),
            time_added: None,
        });
    }
    if instance.tags.contains_key(keys::NODEPOOL_TAG) {
        // Spotwright's user data registers its nodes with the registration
        // taint (kubelet's --register-with-taints); the provisioner lifts it.
        taints.push(Taint {
            key: keys::UNREGISTERED_TAINT_KEY.to_owned(),
            value: None,
            effect: "NoSchedule".to_owned(),
            time_added: None,
        });
    }
    let taints = (!taints.is_empty()).then_some(taints);
    let to_map = |resources: eks::NodeResources| {
        resources
            .quantities()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Quantity(v)))
            .collect::<BTreeMap<_, _>>()
    };
    let mut addresses = vec![NodeAddress {
        type_: "Hostname".to_owned(),
        address: name.clone(),
    }];
    if let Some(ip) = &instance.private_ip {
        addresses.insert(
            0,
            NodeAddress {
                type_: "InternalIP".to_owned(),
                address: ip.clone(),
            },
        );
    }
    Node {
        metadata: ObjectMeta {
            name: Some(name),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                KWOK_ANNOTATION.to_owned(),
                "fake".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            provider_id: Some(instance.provider_id()),
            taints,
            ..NodeSpec::default()
        }),
        status: Some(NodeStatus {
            capacity: Some(to_map(eks::capacity(
                &facts.facts,
                settings.root_volume_gib,
            ))),
            allocatable: Some(to_map(eks::allocatable(
                &facts.facts,
                settings.root_volume_gib,
            ))),
            addresses: Some(addresses),
            node_info: Some(NodeSystemInfo {
                architecture: facts.arch.clone(),
                kubelet_version: settings.kubelet_version_of(instance),
                kube_proxy_version: String::new(),
                operating_system: "linux".to_owned(),
                os_image: "Amazon Linux 2023 (KWOK)".to_owned(),
                container_runtime_version: "containerd://2.0.0".to_owned(),
                kernel_version: "6.1.0".to_owned(),
                machine_id: instance.id.clone(),
                system_uuid: instance.id.clone(),
                boot_id: instance.id.clone(),
                ..NodeSystemInfo::default()
            }),
            ..NodeStatus::default()
        }),
    }
}

#[cfg(test)]
mod tests;
