//! The instance catalog's pure conversion, on SDK output types built here.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_ec2::primitives::DateTime;
use aws_sdk_ec2::types::{
    ArchitectureType, EphemeralNvmeSupport, GpuDeviceInfo, GpuInfo, InstanceStorageInfo,
    InstanceType as Ec2Type, InstanceTypeInfo, InstanceTypeOffering, LocationType, MemoryInfo,
    NetworkCardInfo, NetworkInfo, ProcessorInfo, SpotPrice, UsageClassType, VCpuInfo,
};
use spotwright_api::eks::{self, InstanceFacts};
use spotwright_api::prices::PriceCatalog;
use spotwright_provisioner::act::aws::catalog::{convert, Arch, Catalog, PriceBook};
use spotwright_provisioner::model::launch::UnavailableOfferings;
use spotwright_solver::model::CapacityType;

fn info(
    name: &str,
    arch: ArchitectureType,
    vcpus: i32,
    mib: i64,
    enis: i32,
    ips: i32,
) -> InstanceTypeInfo {
    InstanceTypeInfo::builder()
        .instance_type(Ec2Type::from(name))
        .processor_info(
            ProcessorInfo::builder()
                .supported_architectures(arch)
                .build(),
        )
        .v_cpu_info(VCpuInfo::builder().default_v_cpus(vcpus).build())
        .memory_info(MemoryInfo::builder().size_in_mib(mib).build())
        .network_info(
            NetworkInfo::builder()
                .maximum_network_interfaces(enis)
                .ipv4_addresses_per_interface(ips)
                .build(),
        )
        .supported_usage_classes(UsageClassType::OnDemand)
        .supported_usage_classes(UsageClassType::Spot)
        .build()
}

fn offered(name: &str, zone: &str) -> InstanceTypeOffering {
    InstanceTypeOffering::builder()
        .instance_type(Ec2Type::from(name))
        .location_type(LocationType::AvailabilityZone)
        .location(zone)
        .build()
}

fn spot(name: &str, zone: &str, price: &str, at: i64) -> SpotPrice {
    SpotPrice::builder()
        .instance_type(Ec2Type::from(name))
        .availability_zone(zone)
        .spot_price(price)
        .timestamp(DateTime::from_secs(at))
        .build()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn types_get_labels_allocatable_and_priced_offerings_per_zone() {
    let infos = [
        info("m5.large", ArchitectureType::X8664, 2, 8192, 3, 10),
        info("m6g.large", ArchitectureType::Arm64, 2, 8192, 3, 10),
        // A Mac and a 32-bit-only type: no Linux node runs there.
        info("mac1.metal", ArchitectureType::X8664Mac, 12, 32768, 8, 30),
        info("t1.micro", ArchitectureType::I386, 1, 627, 2, 2),
        // Described but offered nowhere.
        info("m5.xlarge", ArchitectureType::X8664, 4, 16384, 4, 15),
    ];
    let offerings = [
        offered("m5.large", "us-east-1a"),
        offered("m5.large", "us-east-1b"),
        offered("m6g.large", "us-east-1a"),
        offered("mac1.metal", "us-east-1a"),
        offered("t1.micro", "us-east-1a"),
    ];
    let history = [
        spot("m5.large", "us-east-1a", "0.0400", 100),
        spot("m5.large", "us-east-1a", "0.0350", 200),
        spot("m5.large", "us-east-1a", "0.0500", 150),
        spot("m5.large", "us-east-1b", "bogus", 200),
    ];
    let on_demand = HashMap::from([("m5.large".to_owned(), 0.1)]);
    let spot_prices = convert::latest_spot_prices(&history);
    let prices = PriceBook {
        on_demand: &on_demand,
        spot: &spot_prices,
        snapshot: PriceCatalog::embedded().ok(),
    };
    let types = convert::instance_types(&infos, &offerings, &prices, 20);
    let names: Vec<&str> = types.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["m5.large", "m6g.large"]);

    let m5 = &types[0];
    let label = |k: &str| m5.labels.get(k).map(String::as_str);
    assert_eq!(label("node.kubernetes.io/instance-type"), Some("m5.large"));
    assert_eq!(label("kubernetes.io/arch"), Some("amd64"));
    assert_eq!(label("kubernetes.io/os"), Some("linux"));
    assert_eq!(label("spotwright.io/instance-category"), Some("m"));
    assert_eq!(label("spotwright.io/instance-family"), Some("m5"));
    assert_eq!(label("spotwright.io/instance-size"), Some("large"));
    assert_eq!(label("spotwright.io/instance-cpu"), Some("2"));
    assert_eq!(label("spotwright.io/instance-memory"), Some("8192"));
    assert_eq!(label("spotwright.io/instance-generation"), Some("5"));
    assert_eq!(types[1].labels["kubernetes.io/arch"], "arm64");

    let facts = InstanceFacts {
        vcpus: 2,
        memory_mib: 8192,
        max_enis: 3,
        ipv4_per_eni: 10,
    };
    let allocatable = eks::allocatable(&facts, 20);
    assert_eq!(m5.allocatable.cpu_millis, 1930);
    assert_eq!(m5.allocatable.memory_bytes, allocatable.memory_bytes);
    assert_eq!(m5.allocatable.pods, 29);
    assert_eq!(m5.capacity.cpu_millis, 2000);

    let price = |zone: &str, ct: CapacityType| {
        m5.offerings
            .iter()
            .find(|o| o.zone == zone && o.capacity_type == ct)
            .map(|o| o.price)
    };
    assert_eq!(m5.offerings.len(), 4);
    // The newest history entry wins.
    assert_eq!(price("us-east-1a", CapacityType::Spot), Some(0.035));
    // No usable history in 1b: the snapshot's model on the API's on-demand price.
    let modelled = 0.1 * (1.0 - spotwright_api::prices::spot_discount("m5.large"));
    assert!(close(
        price("us-east-1b", CapacityType::Spot).unwrap(),
        modelled
    ));
    // The Pricing API's on-demand price beats the snapshot's 0.096.
    assert_eq!(price("us-east-1a", CapacityType::OnDemand), Some(0.1));
    // m6g has no API price: the snapshot's.
    let m6g_od = types[1]
        .offerings
        .iter()
        .find(|o| o.capacity_type == CapacityType::OnDemand)
        .unwrap();
    assert_eq!(
        Some(m6g_od.price),
        PriceCatalog::embedded()
            .unwrap()
            .price("m6g.large", CapacityType::OnDemand)
    );
    assert!(m5.offerings.iter().all(|o| o.available));
}

#[test]
fn nvidia_gpus_become_an_extended_resource() {
    let mut g5 = info("g5.xlarge", ArchitectureType::X8664, 4, 16384, 4, 15);
    g5.gpu_info = Some(
        GpuInfo::builder()
            .gpus(
                GpuDeviceInfo::builder()
                    .manufacturer("NVIDIA")
                    .name("A10G")
                    .count(1)
                    .build(),
            )
            .build(),
    );
    let facts = convert::type_facts(&g5).unwrap();
    assert_eq!(facts.nvidia_gpus, 1);
    assert_eq!(facts.gpus, Some((1, "a10g".to_owned())));
    assert_eq!(facts.arch, Arch::Amd64);
    let (od, sp) = (HashMap::new(), HashMap::new());
    let prices = PriceBook {
        on_demand: &od,
        spot: &sp,
        snapshot: PriceCatalog::embedded().ok(),
    };
    let zones = ["us-east-1a".to_owned()].into_iter().collect();
    let t = convert::instance_type(&facts, &zones, &prices, 20).unwrap();
    assert_eq!(t.allocatable.extended, [("nvidia.com/gpu".to_owned(), 1)]);
    assert_eq!(t.labels["spotwright.io/instance-gpu-count"], "1");
    assert_eq!(t.labels["spotwright.io/instance-gpu-name"], "a10g");
}

#[test]
fn nvme_storage_and_bandwidth_become_labels_where_ec2_gives_them() {
    let mut i4i = info("i4i.xlarge", ArchitectureType::X8664, 4, 32768, 4, 15);
    i4i.instance_storage_info = Some(
        InstanceStorageInfo::builder()
            .total_size_in_gb(937)
            .nvme_support(EphemeralNvmeSupport::Required)
            .build(),
    );
    i4i.network_info = Some(
        NetworkInfo::builder()
            .maximum_network_interfaces(4)
            .ipv4_addresses_per_interface(15)
            .network_cards(
                NetworkCardInfo::builder()
                    .baseline_bandwidth_in_gbps(1.875)
                    .build(),
            )
            .build(),
    );
    let labels = convert::labels(&convert::type_facts(&i4i).unwrap());
    assert_eq!(labels["spotwright.io/instance-local-nvme"], "937");
    assert_eq!(labels["spotwright.io/instance-network-bandwidth"], "1875");
    assert!(!labels.contains_key("spotwright.io/instance-gpu-count"));

    // EBS-only storage is no local NVMe; no network cards, no bandwidth label.
    let mut m5 = info("m5.large", ArchitectureType::X8664, 2, 8192, 3, 10);
    m5.instance_storage_info = Some(
        InstanceStorageInfo::builder()
            .total_size_in_gb(75)
            .nvme_support(EphemeralNvmeSupport::Unsupported)
            .build(),
    );
    let labels = convert::labels(&convert::type_facts(&m5).unwrap());
    assert!(!labels.contains_key("spotwright.io/instance-local-nvme"));
    assert!(!labels.contains_key("spotwright.io/instance-network-bandwidth"));
}

#[test]
fn types_without_any_price_are_left_out() {
    let infos = [info("zz9.large", ArchitectureType::X8664, 2, 4096, 2, 4)];
    let offerings = [offered("zz9.large", "us-east-1a")];
    let (od, sp) = (HashMap::new(), HashMap::new());
    let prices = PriceBook {
        on_demand: &od,
        spot: &sp,
        snapshot: PriceCatalog::embedded().ok(),
    };
    assert!(convert::instance_types(&infos, &offerings, &prices, 20).is_empty());
}

#[test]
fn spot_only_types_offer_no_on_demand() {
    let mut only_spot = info("m5.large", ArchitectureType::X8664, 2, 8192, 3, 10);
    only_spot.supported_usage_classes = Some(vec![UsageClassType::Spot]);
    let facts = convert::type_facts(&only_spot).unwrap();
    assert!(facts.spot && !facts.on_demand);
}

#[test]
fn the_catalog_marks_unavailable_offerings_for_the_solver() {
    let infos = [info("m5.large", ArchitectureType::X8664, 2, 8192, 3, 10)];
    let offerings = [
        offered("m5.large", "us-east-1a"),
        offered("m5.large", "us-east-1b"),
    ];
    let (od, sp) = (HashMap::new(), HashMap::new());
    let prices = PriceBook {
        on_demand: &od,
        spot: &sp,
        snapshot: PriceCatalog::embedded().ok(),
    };
    let now = Instant::now();
    let catalog = Catalog::new(
        convert::instance_types(&infos, &offerings, &prices, 20),
        now,
    );
    assert_eq!(catalog.get("m5.large").map(|t| t.offerings.len()), Some(4));
    assert_eq!(catalog.refreshed_at(), Some(now));

    let mut unavailable = UnavailableOfferings::default();
    unavailable.mark(CapacityType::Spot, "m5.large", "us-east-1a", now);
    let input = catalog.solver_input(&unavailable, now);
    let flags: Vec<(String, CapacityType, bool)> = input[0]
        .offerings
        .iter()
        .map(|o| (o.zone.clone(), o.capacity_type, o.available))
        .collect();
    assert!(flags.contains(&("us-east-1a".into(), CapacityType::Spot, false)));
    assert_eq!(flags.iter().filter(|f| f.2).count(), 3);
    // Three minutes later it is back.
    let later = catalog.solver_input(&unavailable, now + Duration::from_secs(180));
    assert!(later[0].offerings.iter().all(|o| o.available));
    // The catalog itself is never changed.
    assert!(catalog.instance_types()[0]
        .offerings
        .iter()
        .all(|o| o.available));
}
