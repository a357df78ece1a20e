//! The cluster's coordinates for node user data (API server endpoint, CA,
//! service CIDR and IP family) from EKS `DescribeCluster`, each overridable
//! by a flag. The merge is pure ([`settle`]); the one call is [`discover`].

use aws_sdk_eks::types::IpFamily as EksIpFamily;

use super::error::sdk_error;
use super::fleet::ClusterSettings;
use crate::error::Error;

/// The cluster's IP family: which service CIDR nodes get.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum IpFamily {
    Ipv4,
    Ipv6,
}

/// What the flags set; `None` (or an empty flag) means "ask EKS".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterOverrides {
    pub endpoint: Option<String>,
    pub certificate_authority: Option<String>,
    pub service_cidr: Option<String>,
    pub ip_family: Option<IpFamily>,
}

impl ClusterOverrides {
    /// Whether every value is set, so EKS need not be asked.
    pub fn complete(&self) -> bool {
        self.endpoint.is_some()
            && self.certificate_authority.is_some()
            && self.service_cidr.is_some()
    }
}

/// The parts of a `DescribeCluster` answer nodes need.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DescribedCluster {
    pub endpoint: Option<String>,
    pub certificate_authority: Option<String>,
    pub service_ipv4_cidr: Option<String>,
    pub service_ipv6_cidr: Option<String>,
    pub ip_family: Option<IpFamily>,
    pub version: Option<String>,
    pub status: Option<String>,
}

/// The settings nodes join with: each override wins, EKS fills the rest.
/// The service CIDR follows the IP family (the override's, else EKS's,
/// else IPv4). Errors name every value that is still missing.
pub fn settle(
    name: &str,
    overrides: &ClusterOverrides,
    described: Option<&DescribedCluster>,
) -> Result<ClusterSettings, Error> {
    let described = described.cloned().unwrap_or_default();
    let ip_family = overrides
        .ip_family
        .or(described.ip_family)
        .unwrap_or(IpFamily::Ipv4);
    let described_cidr = match ip_family {
        IpFamily::Ipv4 => described.service_ipv4_cidr,
        IpFamily::Ipv6 => described.service_ipv6_cidr,
    };
    let endpoint = overrides.endpoint.clone().or(described.endpoint);
    let certificate_authority = overrides
        .certificate_authority
        .clone()
        .or(described.certificate_authority);
    let service_cidr = overrides.service_cidr.clone().or(described_cidr);
    let mut missing = Vec::new();
    if endpoint.is_none() {
        missing.push("endpoint (--cluster-endpoint)");
    }
    if certificate_authority.is_none() {
        missing.push("CA (--cluster-ca-bundle)");
    }
    if service_cidr.is_none() {
        missing.push("service CIDR (--cluster-service-cidr)");
    }
    if !missing.is_empty() {
        return Err(Error::Config(format!(
            "cluster {name}: no {} from EKS DescribeCluster or the flags",
            missing.join(", ")
        )));
    }
    let service_cidr = service_cidr.unwrap_or_default();
    validate_cidr(&service_cidr, ip_family)?;
    Ok(ClusterSettings {
        name: name.to_owned(),
        endpoint: endpoint.unwrap_or_default(),
        certificate_authority: certificate_authority.unwrap_or_default(),
        service_cidr: Some(service_cidr),
    })
}

/// A CIDR of the cluster's family, such as `10.100.0.0/16` or `fd00::/108`.
fn validate_cidr(cidr: &str, family: IpFamily) -> Result<(), Error> {
    let invalid = || Error::Config(format!("service CIDR {cidr:?} is not an {family:?} CIDR"));
    let (address, prefix) = cidr.split_once('/').ok_or_else(invalid)?;
    let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
    let max = match family {
        IpFamily::Ipv4 => address.parse::<std::net::Ipv4Addr>().map(|_| 32),
        IpFamily::Ipv6 => address.parse::<std::net::Ipv6Addr>().map(|_| 128),
    }
    .map_err(|_| invalid())?;
    if prefix > max {
        return Err(invalid());
    }
    Ok(())
}

/// Asks EKS for what the overrides leave open; no call when they set it all.
pub async fn discover(
    eks: &aws_sdk_eks::Client,
    name: &str,
    overrides: &ClusterOverrides,
) -> Result<(ClusterSettings, Option<DescribedCluster>), Error> {
    if overrides.complete() {
        return Ok((settle(name, overrides, None)?, None));
    }
    let described = describe(eks, name).await?;
    Ok((settle(name, overrides, Some(&described))?, Some(described)))
}

/// One `DescribeCluster` call (the SDK retries throttling with backoff).
pub async fn describe(eks: &aws_sdk_eks::Client, name: &str) -> Result<DescribedCluster, Error> {
    let answer = eks
        .describe_cluster()
        .name(name)
        .send()
        .await
        .map_err(sdk_error("DescribeCluster"))?;
    let Some(cluster) = answer.cluster else {
        return Ok(DescribedCluster::default());
    };
    let network = cluster.kubernetes_network_config.as_ref();
    Ok(DescribedCluster {
        endpoint: non_empty(cluster.endpoint.clone()),
        certificate_authority: non_empty(
            cluster
                .certificate_authority
                .as_ref()
                .and_then(|ca| ca.data.clone()),
        ),
        service_ipv4_cidr: non_empty(network.and_then(|n| n.service_ipv4_cidr.clone())),
        service_ipv6_cidr: non_empty(network.and_then(|n| n.service_ipv6_cidr.clone())),
        ip_family: network
            .and_then(|n| n.ip_family.as_ref())
            .and_then(|family| match family {
                EksIpFamily::Ipv4 => Some(IpFamily::Ipv4),
                EksIpFamily::Ipv6 => Some(IpFamily::Ipv6),
                _ => None,
            }),
        version: non_empty(cluster.version.clone()),
        status: cluster.status.as_ref().map(|s| s.as_str().to_owned()),
    })
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described() -> DescribedCluster {
        DescribedCluster {
            endpoint: Some("https://ABC.gr7.us-east-1.eks.amazonaws.com".into()),
            certificate_authority: Some("Q0E=".into()),
            service_ipv4_cidr: Some("172.20.0.0/16".into()),
            service_ipv6_cidr: Some("fd12:3456::/108".into()),
            ip_family: Some(IpFamily::Ipv4),
            version: Some("1.36".into()),
            status: Some("ACTIVE".into()),
        }
    }

    #[test]
    fn eks_fills_what_the_flags_leave_open() {
        let settings = settle("c1", &ClusterOverrides::default(), Some(&described())).unwrap();
        assert_eq!(
            settings,
            ClusterSettings {
                name: "c1".into(),
                endpoint: "https://ABC.gr7.us-east-1.eks.amazonaws.com".into(),
                certificate_authority: "Q0E=".into(),
                service_cidr: Some("172.20.0.0/16".into()),
            }
        );
    }

    #[test]
    fn each_flag_wins_over_eks() {
        let overrides = ClusterOverrides {
            endpoint: Some("https://private.example".into()),
            certificate_authority: None,
            service_cidr: Some("10.100.0.0/16".into()),
            ip_family: None,
        };
        let settings = settle("c1", &overrides, Some(&described())).unwrap();
        assert_eq!(settings.endpoint, "https://private.example");
        assert_eq!(settings.certificate_authority, "Q0E=");
        assert_eq!(settings.service_cidr.as_deref(), Some("10.100.0.0/16"));
    }

    #[test]
    fn the_ip_family_picks_the_service_cidr() {
        let mut cluster = described();
        cluster.ip_family = Some(IpFamily::Ipv6);
        let settings = settle("c1", &ClusterOverrides::default(), Some(&cluster)).unwrap();
        assert_eq!(settings.service_cidr.as_deref(), Some("fd12:3456::/108"));
        let overrides = ClusterOverrides {
            ip_family: Some(IpFamily::Ipv4),
            ..ClusterOverrides::default()
        };
        let settings = settle("c1", &overrides, Some(&cluster)).unwrap();
        assert_eq!(settings.service_cidr.as_deref(), Some("172.20.0.0/16"));
    }

    #[test]
    fn missing_values_are_named() {
        let err = settle("c1", &ClusterOverrides::default(), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("endpoint (--cluster-endpoint)"), "{err}");
        assert!(err.contains("CA (--cluster-ca-bundle)"), "{err}");
        assert!(
            err.contains("service CIDR (--cluster-service-cidr)"),
            "{err}"
        );
    }

    #[test]
    fn a_cidr_of_the_wrong_family_is_refused() {
        let overrides = ClusterOverrides {
            service_cidr: Some("10.100.0.0/16".into()),
            ip_family: Some(IpFamily::Ipv6),
            ..ClusterOverrides::default()
        };
        assert!(settle("c1", &overrides, Some(&described())).is_err());
        for bad in ["10.0.0.0", "10.0.0.0/33", "banana/8"] {
            let overrides = ClusterOverrides {
                service_cidr: Some(bad.into()),
                ..ClusterOverrides::default()
            };
            assert!(
                settle("c1", &overrides, Some(&described())).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn complete_overrides_need_no_call() {
        let overrides = ClusterOverrides {
            endpoint: Some("https://e".into()),
            certificate_authority: Some("Q0E=".into()),
            service_cidr: Some("10.0.0.0/24".into()),
            ip_family: None,
        };
        assert!(overrides.complete());
        assert!(!ClusterOverrides::default().complete());
    }
}
