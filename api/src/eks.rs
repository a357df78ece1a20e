//! Node capacity and allocatable the way the EKS-optimized AMI computes them,
//! so the provisioner's bin-packing and the nodes that register agree.
//!
//! The formulas (for an instance with `v` vCPUs, `m` MiB of memory, `e` ENIs
//! of `a` IPv4 addresses each, and a root volume of `d` GiB):
//! - max pods (VPC CNI, no prefix delegation): `e * (a - 1) + 2`;
//! - memory capacity: `m * (1 - 0.075)` MiB: the hypervisor and firmware take
//!   about 7.5% of the nominal size (the figure Karpenter uses by default);
//! - kube-reserved CPU: 6% of the first core, 1% of the second, 0.5% of the
//!   third and fourth, 0.25% of every core above four;
//! - kube-reserved memory: `11 * maxPods + 255` MiB;
//! - kube-reserved ephemeral storage: 1 GiB; system-reserved: none;
//! - eviction thresholds: `memory.available < 100Mi`, `nodefs.available < 10%`;
//! - allocatable = capacity - kube-reserved - system-reserved - eviction threshold.

/// What EC2 says about an instance type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstanceFacts {
    pub vcpus: u32,
    pub memory_mib: u64,
    pub max_enis: u32,
    pub ipv4_per_eni: u32,
}

/// Resources of a node, in base units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeResources {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub ephemeral_storage_bytes: u64,
    pub pods: u64,
}

impl NodeResources {
    /// As Kubernetes quantities: `cpu`, `memory`, `ephemeral-storage`, `pods`.
    pub fn quantities(&self) -> [(&'static str, String); 4] {
        [
            ("cpu", format!("{}m", self.cpu_millis)),
            ("memory", format!("{}Ki", self.memory_bytes / 1024)),
            (
                "ephemeral-storage",
                format!("{}Ki", self.ephemeral_storage_bytes / 1024),
            ),
            ("pods", self.pods.to_string()),
        ]
    }
}

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
/// Share of nominal memory the OS never sees.
pub const VM_MEMORY_OVERHEAD: f64 = 0.075;
/// Root volume size when a NodeClass does not set one.
pub const DEFAULT_ROOT_VOLUME_GIB: u64 = 20;

/// Pods the VPC CNI can give addresses to.
pub fn max_pods(facts: &InstanceFacts) -> u64 {
    u64::from(facts.max_enis) * u64::from(facts.ipv4_per_eni.saturating_sub(1)) + 2
}

/// What the kubelet reports as capacity.
pub fn capacity(facts: &InstanceFacts, root_volume_gib: u64) -> NodeResources {
    let memory_mib = (facts.memory_mib as f64 * (1.0 - VM_MEMORY_OVERHEAD)).floor() as u64;
    NodeResources {
        cpu_millis: u64::from(facts.vcpus) * 1000,
        memory_bytes: memory_mib * MIB,
        ephemeral_storage_bytes: root_volume_gib * GIB,
        pods: max_pods(facts),
    }
}

/// kube-reserved CPU in millicores for `vcpus` cores.
pub fn kube_reserved_cpu_millis(vcpus: u32) -> u64 {
    // Per-core shares in thousandths of a millicore, so 0.25% stays exact.
    let shares = [(1u32, 60_000u64), (1, 10_000), (2, 5_000)];
    let mut left = vcpus;
    let mut micro = 0u64;
    for (cores, per_core) in shares {
        let taken = left.min(cores);
        micro += u64::from(taken) * per_core;
        left -= taken;
    }
    micro += u64::from(left) * 2_500;
    micro / 1000
}

/// kube-reserved memory in bytes for a node that fits `max_pods` pods.
pub fn kube_reserved_memory_bytes(max_pods: u64) -> u64 {
    (11 * max_pods + 255) * MIB
}

/// What pods can use: capacity minus reservations and eviction thresholds.
pub fn allocatable(facts: &InstanceFacts, root_volume_gib: u64) -> NodeResources {
    let capacity = capacity(facts, root_volume_gib);
    let eviction_memory = 100 * MIB;
    let eviction_storage = capacity.ephemeral_storage_bytes / 10;
    NodeResources {
        cpu_millis: capacity
            .cpu_millis
            .saturating_sub(kube_reserved_cpu_millis(facts.vcpus)),
        memory_bytes: capacity
            .memory_bytes
            .saturating_sub(kube_reserved_memory_bytes(capacity.pods) + eviction_memory),
        ephemeral_storage_bytes: capacity
            .ephemeral_storage_bytes
            .saturating_sub(GIB + eviction_storage),
        pods: capacity.pods,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M5_LARGE: InstanceFacts = InstanceFacts {
        vcpus: 2,
        memory_mib: 8192,
        max_enis: 3,
        ipv4_per_eni: 10,
    };
    const M5_24XLARGE: InstanceFacts = InstanceFacts {
        vcpus: 96,
        memory_mib: 393_216,
        max_enis: 15,
        ipv4_per_eni: 50,
    };

    #[test]
    fn max_pods_match_the_eks_table() {
        assert_eq!(max_pods(&M5_LARGE), 29);
        assert_eq!(max_pods(&M5_24XLARGE), 737);
        let t3_nano = InstanceFacts {
            vcpus: 2,
            memory_mib: 512,
            max_enis: 2,
            ipv4_per_eni: 2,
        };
        assert_eq!(max_pods(&t3_nano), 4);
    }

    #[test]
    fn kube_reserved_cpu_follows_the_tiers() {
        assert_eq!(kube_reserved_cpu_millis(1), 60);
        assert_eq!(kube_reserved_cpu_millis(2), 70);
        assert_eq!(kube_reserved_cpu_millis(4), 80);
        assert_eq!(kube_reserved_cpu_millis(8), 90);
        assert_eq!(kube_reserved_cpu_millis(96), 310);
    }

    #[test]
    fn m5_large_allocatable() {
        let a = allocatable(&M5_LARGE, 20);
        assert_eq!(a.cpu_millis, 1930);
        // 8192 MiB * 0.925 = 7577 MiB; minus 11*29+255 = 574 MiB and 100 MiB.
        assert_eq!(a.memory_bytes, (7577 - 574 - 100) * MIB);
        assert_eq!(a.ephemeral_storage_bytes, 20 * GIB - GIB - 2 * GIB);
        assert_eq!(a.pods, 29);
    }

    #[test]
    fn allocatable_never_exceeds_capacity() {
        for vcpus in [1, 2, 4, 16, 192] {
            for memory_mib in [512, 4096, 786_432] {
                let facts = InstanceFacts {
                    vcpus,
                    memory_mib,
                    max_enis: 4,
                    ipv4_per_eni: 15,
                };
                let (c, a) = (capacity(&facts, 20), allocatable(&facts, 20));
                assert!(a.cpu_millis <= c.cpu_millis && a.memory_bytes <= c.memory_bytes);
                assert!(a.ephemeral_storage_bytes <= c.ephemeral_storage_bytes && a.pods == c.pods);
            }
        }
    }

    #[test]
    fn quantities_are_kubernetes_strings() {
        let q = allocatable(&M5_LARGE, 20).quantities();
        assert_eq!(q[0], ("cpu", "1930m".to_owned()));
        assert_eq!(q[3], ("pods", "29".to_owned()));
        assert!(q[1].1.ends_with("Ki"));
    }
}
