//! Pure conversion of EC2's descriptions into the solver's instance types.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_ec2::types::{
    ArchitectureType, InstanceTypeInfo, InstanceTypeOffering, SpotPrice, UsageClassType,
};
use spotwright_api::eks::{self, InstanceFacts, NodeResources};
use spotwright_api::keys;
use spotwright_api::prices::{spot_discount, InstanceTypeName, PriceCatalog};
use spotwright_solver::model::{CapacityType, InstanceType, Offering, Resources};

/// CPU architecture of an instance type and of the AMI it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    /// The `kubernetes.io/arch` value.
    pub fn kubernetes(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The name EC2 and the EKS AMI paths use.
    pub fn ec2(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }
}

/// What the catalog reads from one `InstanceTypeInfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeFacts {
    pub name: String,
    pub arch: Arch,
    pub eks: InstanceFacts,
    pub nvidia_gpus: u32,
    /// Every GPU of any maker, and the first one's model (lowercase).
    pub gpus: Option<(u32, String)>,
    /// GiB of NVMe instance storage, if any.
    pub local_nvme_gib: Option<u64>,
    /// Baseline network bandwidth, Mbit/s, when EC2 gives it.
    pub network_bandwidth_mbps: Option<u64>,
    pub spot: bool,
    pub on_demand: bool,
}

/// `None` for types a Linux node cannot use (32-bit or Mac only) or that
/// EC2 describes without CPU, memory or network facts.
pub fn type_facts(info: &InstanceTypeInfo) -> Option<TypeFacts> {
    let name = info.instance_type()?.as_str().to_owned();
    let archs = info.processor_info()?.supported_architectures();
    let arch = if archs.contains(&ArchitectureType::X8664) {
        Arch::Amd64
    } else if archs.contains(&ArchitectureType::Arm64) {
        Arch::Arm64
    } else {
        return None;
    };
    let vcpus = u32::try_from(info.v_cpu_info()?.default_v_cpus()?).ok()?;
    let memory_mib = u64::try_from(info.memory_info()?.size_in_mib()?).ok()?;
    let network = info.network_info()?;
    let max_enis = u32::try_from(network.maximum_network_interfaces()?).ok()?;
    let ipv4_per_eni = u32::try_from(network.ipv4_addresses_per_interface()?).ok()?;
    if vcpus == 0 || memory_mib == 0 || max_enis == 0 {
        return None;
    }
    let nvidia_gpus = info
        .gpu_info()
        .map(|g| g.gpus())
        .unwrap_or_default()
        .iter()
        .filter(|g| {
            g.manufacturer()
                .is_some_and(|m| m.eq_ignore_ascii_case("nvidia"))
        })
        .filter_map(|g| u32::try_from(g.count()?).ok())
        .sum();
    let gpu_devices = info.gpu_info().map(|g| g.gpus()).unwrap_or_default();
    let gpu_count: u32 = gpu_devices
        .iter()
        .filter_map(|g| u32::try_from(g.count()?).ok())
        .sum();
    let gpus = gpu_devices
        .first()
        .and_then(|g| g.name())
        .filter(|_| gpu_count > 0)
        .map(|name| (gpu_count, name.to_lowercase()));
    let local_nvme_gib = info
        .instance_storage_info()
        .filter(|s| {
            s.nvme_support()
                .is_some_and(|n| n.as_str() != "unsupported")
        })
        .and_then(|s| u64::try_from(s.total_size_in_gb()?).ok())
        .filter(|gib| *gib > 0);
    let bandwidth_gbps: f64 = network
        .network_cards()
        .iter()
        .filter_map(|c| c.baseline_bandwidth_in_gbps())
        .sum();
    let network_bandwidth_mbps =
        (bandwidth_gbps > 0.0).then(|| (bandwidth_gbps * 1000.0).round() as u64);
    // An empty list means EC2 (or its emulator) did not say: assume both.
    let classes = info.supported_usage_classes();
    let sells = |class: UsageClassType| classes.is_empty() || classes.contains(&class);
    Some(TypeFacts {
        name,
        arch,
        eks: InstanceFacts {
            vcpus,
            memory_mib,
            max_enis,
            ipv4_per_eni,
        },
        nvidia_gpus,
        gpus,
        local_nvme_gib,
        network_bandwidth_mbps,
        spot: sells(UsageClassType::Spot),
        on_demand: sells(UsageClassType::OnDemand),
    })
}

/// The labels a node of this type carries: the well-known ones and the
/// `spotwright.io/instance-*` family (the GPU, NVMe and bandwidth ones only
/// where the type has them). The launcher puts them on the NodeClaim, and
/// registration on its Node, so a pod selecting one lands where the solver
/// placed it.
pub fn labels(facts: &TypeFacts) -> BTreeMap<String, String> {
    let name = InstanceTypeName::parse(&facts.name);
    let mut labels = BTreeMap::from([
        (keys::INSTANCE_TYPE_LABEL, facts.name.clone()),
        (keys::ARCH_LABEL, facts.arch.kubernetes().to_owned()),
        (keys::OS_LABEL, "linux".to_owned()),
        (keys::INSTANCE_CATEGORY_LABEL, name.category.to_owned()),
        (keys::INSTANCE_FAMILY_LABEL, name.family.to_owned()),
        (keys::INSTANCE_SIZE_LABEL, name.size.to_owned()),
        (keys::INSTANCE_CPU_LABEL, facts.eks.vcpus.to_string()),
        (
            keys::INSTANCE_MEMORY_LABEL,
            facts.eks.memory_mib.to_string(),
        ),
    ]);
    if let Some(generation) = name.generation {
        labels.insert(keys::INSTANCE_GENERATION_LABEL, generation.to_string());
    }
    if let Some((count, model)) = &facts.gpus {
        labels.insert(keys::INSTANCE_GPU_COUNT_LABEL, count.to_string());
        labels.insert(keys::INSTANCE_GPU_NAME_LABEL, model.clone());
    }
    if let Some(gib) = facts.local_nvme_gib {
        labels.insert(keys::INSTANCE_LOCAL_NVME_LABEL, gib.to_string());
    }
    if let Some(mbps) = facts.network_bandwidth_mbps {
        labels.insert(keys::INSTANCE_NETWORK_BANDWIDTH_LABEL, mbps.to_string());
    }
    labels
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

fn resources(node: NodeResources, nvidia_gpus: u32) -> Resources {
    let extended = if nvidia_gpus > 0 {
        vec![("nvidia.com/gpu".to_owned(), u64::from(nvidia_gpus))]
    } else {
        Vec::new()
    };
    Resources {
        cpu_millis: node.cpu_millis,
        memory_bytes: node.memory_bytes,
        ephemeral_bytes: node.ephemeral_storage_bytes,
        pods: node.pods,
        extended,
    }
}

/// Zones each instance type is offered in (`location-type availability-zone`).
pub fn zones_by_type(offerings: &[InstanceTypeOffering]) -> HashMap<String, BTreeSet<String>> {
    let mut zones: HashMap<String, BTreeSet<String>> = HashMap::new();
    for offering in offerings {
        if let (Some(instance_type), Some(zone)) = (offering.instance_type(), offering.location()) {
            zones
                .entry(instance_type.as_str().to_owned())
                .or_default()
                .insert(zone.to_owned());
        }
    }
    zones
}

/// The newest Spot price per (instance type, zone); unparsable or
/// non-positive prices are ignored.
pub fn latest_spot_prices(history: &[SpotPrice]) -> HashMap<(String, String), f64> {
    let mut latest: HashMap<(String, String), (i64, f64)> = HashMap::new();
    for entry in history {
        let (Some(instance_type), Some(zone), Some(price)) = (
            entry.instance_type(),
            entry.availability_zone(),
            entry
                .spot_price()
                .and_then(|p| p.trim().parse::<f64>().ok()),
        ) else {
            continue;
        };
        if !(price.is_finite() && price > 0.0) {
            continue;
        }
        let at = entry.timestamp().map_or(i64::MIN, |t| t.secs());
        let key = (instance_type.as_str().to_owned(), zone.to_owned());
        match latest.get(&key) {
            Some(&(seen, _)) if seen > at => {}
            _ => {
                latest.insert(key, (at, price));
            }
        }
    }
    latest.into_iter().map(|(k, (_, p))| (k, p)).collect()
}

/// Where prices come from, best first: on-demand from the Pricing API, then
/// the bundled snapshot; Spot from the price history, then the snapshot's
/// discount model applied to the on-demand price.
#[derive(Clone, Copy, Debug)]
pub struct PriceBook<'a> {
    pub on_demand: &'a HashMap<String, f64>,
    pub spot: &'a HashMap<(String, String), f64>,
    pub snapshot: Option<&'a PriceCatalog>,
}

impl PriceBook<'_> {
    pub fn on_demand(&self, instance_type: &str) -> Option<f64> {
        self.on_demand
            .get(instance_type)
            .copied()
            .filter(|p| *p > 0.0)
            .or_else(|| self.snapshot?.price(instance_type, CapacityType::OnDemand))
    }

    pub fn spot(&self, instance_type: &str, zone: &str) -> Option<f64> {
        let key = (instance_type.to_owned(), zone.to_owned());
        self.spot.get(&key).copied().or_else(|| {
            self.on_demand(instance_type)
                .map(|p| p * (1.0 - spot_discount(instance_type)))
        })
    }
}

/// One solver instance type; `None` when no offering has a price.
pub fn instance_type(
    facts: &TypeFacts,
    zones: &BTreeSet<String>,
    prices: &PriceBook<'_>,
    root_volume_gib: u64,
) -> Option<InstanceType> {
    let mut offerings = Vec::new();
    for zone in zones {
        if facts.spot {
            if let Some(price) = prices.spot(&facts.name, zone) {
                offerings.push(offering(zone, CapacityType::Spot, price));
            }
        }
        if facts.on_demand {
            if let Some(price) = prices.on_demand(&facts.name) {
                offerings.push(offering(zone, CapacityType::OnDemand, price));
            }
        }
    }
    if offerings.is_empty() {
        return None;
    }
    Some(InstanceType {
        name: facts.name.clone(),
        labels: labels(facts),
        capacity: resources(
            eks::capacity(&facts.eks, root_volume_gib),
            facts.nvidia_gpus,
        ),
        allocatable: resources(
            eks::allocatable(&facts.eks, root_volume_gib),
            facts.nvidia_gpus,
        ),
        offerings,
    })
}

fn offering(zone: &str, capacity_type: CapacityType, price: f64) -> Offering {
    Offering {
        zone: zone.to_owned(),
        capacity_type,
        price,
        available: true,
    }
}

/// Every usable, priced instance type offered in at least one zone, by name.
pub fn instance_types(
    infos: &[InstanceTypeInfo],
    offerings: &[InstanceTypeOffering],
    prices: &PriceBook<'_>,
    root_volume_gib: u64,
) -> Vec<InstanceType> {
    let zones = zones_by_type(offerings);
    let mut types: Vec<InstanceType> = infos
        .iter()
        .filter_map(type_facts)
        .filter_map(|facts| {
            let zones = zones.get(&facts.name)?;
            instance_type(&facts, zones, prices, root_volume_gib)
        })
        .collect();
    types.sort_by(|a, b| a.name.cmp(&b.name));
    types.dedup_by(|a, b| a.name == b.name);
    types
}
