//! Flags (each also read from the environment).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use spotwright_api::duration::parse_go_duration;
use spotwright_serving::telemetry::LogFormat;

use crate::act::aws::catalog::SpotPrices;
use crate::act::aws::eks::{ClusterOverrides, IpFamily};
use crate::Error;

/// The most launches one pass may run at once: each holds a task and an EC2
/// connection, and a throttled CreateFleet is retried, not hurried.
pub const MAX_LAUNCH_CONCURRENCY: usize = 256;

fn duration(value: &str) -> Result<Duration, String> {
    parse_go_duration(value).map_err(|e| e.to_string())
}

#[derive(Debug, Parser)]
#[command(
    name = "spotwright-provisioner",
    version,
    about = "Spotwright's controllers: launches right-sized, diversified Spot nodes for pending pods, registers them and removes empty ones"
)]
pub struct Cli {
    /// The EKS cluster's name: instances are tagged kubernetes.io/cluster/<name>=owned and only those are ever terminated.
    #[arg(long, env = "SPOTWRIGHT_CLUSTER_NAME")]
    pub cluster_name: String,
    /// The API server URL written into node user data (nodeadm); empty: from EKS DescribeCluster.
    #[arg(long, env = "SPOTWRIGHT_CLUSTER_ENDPOINT", default_value = "")]
    pub cluster_endpoint: String,
    /// Base64 cluster CA written into node user data; empty: from EKS DescribeCluster.
    #[arg(long, env = "SPOTWRIGHT_CLUSTER_CA_BUNDLE", default_value = "")]
    pub cluster_ca_bundle: String,
    /// The cluster's service CIDR (nodeadm infers the DNS address from it); empty: from EKS DescribeCluster.
    #[arg(long, env = "SPOTWRIGHT_CLUSTER_SERVICE_CIDR", default_value = "")]
    pub cluster_service_cidr: String,
    /// `ipv4` or `ipv6`: which of the cluster's service CIDRs nodes get; empty: from EKS DescribeCluster.
    #[arg(long, env = "SPOTWRIGHT_CLUSTER_IP_FAMILY", default_value = "")]
    pub cluster_ip_family: String,
    /// Address of the plain-HTTP listener serving /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "SPOTWRIGHT_PROVISIONER_METRICS_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_listen: SocketAddr,
    /// Run only while holding the Lease (turn off only for a single local process).
    #[arg(long, env = "SPOTWRIGHT_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "spotwright-system")]
    pub leader_election_namespace: String,
    /// The scheduler whose unschedulable pods are Spotwright's.
    #[arg(long, env = "SPOTWRIGHT_SCHEDULER_NAME", default_value = spotwright_api::keys::SCHEDULER_NAME)]
    pub scheduler_name: String,
    /// A batch of pending pods closes after this long without a new one, or after 300 ms without one when every ReplicaSet its pods belong to has all its pods.
    #[arg(long, env = "SPOTWRIGHT_BATCH_IDLE_DURATION", default_value = "1s", value_parser = duration)]
    pub batch_idle_duration: Duration,
    /// A batch closes this long after its first pod at the latest.
    #[arg(long, env = "SPOTWRIGHT_BATCH_MAX_DURATION", default_value = "10s", value_parser = duration)]
    pub batch_max_duration: Duration,
    /// Launches (the NodeClaim, then CreateFleet) one pass runs at once. A burst's nodes register together only when their launches end together; EC2 throttles CreateFleet per account, and a throttled launch is retried.
    #[arg(long, env = "SPOTWRIGHT_LAUNCH_CONCURRENCY", default_value_t = 64)]
    pub launch_concurrency: usize,
    /// A launched instance whose Node has not registered by then is terminated and its pods solved again.
    #[arg(long, env = "SPOTWRIGHT_REGISTRATION_TIMEOUT", default_value = "15m", value_parser = duration)]
    pub registration_timeout: Duration,
    /// The longest a registered node keeps the `spotwright.io/unregistered` taint while other nodes launched in the same pass have not registered; `0s` lifts it at registration.
    #[arg(long, env = "SPOTWRIGHT_REGISTRATION_GATE", default_value = "5s", value_parser = duration)]
    pub registration_gate: Duration,
    /// How long a node is kept after it is initialized before emptiness or consolidation may take it, even with `consolidateAfter: 0s`: the pods it was launched for bind on the scheduler's own retry (backoff up to 10 s).
    #[arg(long, env = "SPOTWRIGHT_NOMINATION_WINDOW", default_value = "30s", value_parser = duration)]
    pub nomination_window: Duration,
    /// How often drifted, expired and rebalance-recommended nodes are looked at for replacement.
    #[arg(long, env = "SPOTWRIGHT_DISRUPTION_INTERVAL", default_value = "5s", value_parser = duration)]
    pub disruption_interval: Duration,
    /// Replacement nodes not initialized by then are terminated, the old node untainted, and the replacement retried later.
    #[arg(long, env = "SPOTWRIGHT_REPLACEMENT_TIMEOUT", default_value = "10m", value_parser = duration)]
    pub replacement_timeout: Duration,
    /// Whether underutilized consolidation may replace Spot nodes with cheaper Spot nodes (only when the NodePool's minValues, or 15, cheaper instance types still fit).
    #[arg(long, env = "SPOTWRIGHT_SPOT_TO_SPOT_CONSOLIDATION", default_value_t = true, action = clap::ArgAction::Set)]
    pub spot_to_spot_consolidation: bool,
    /// $/h that one unit of disruption cost (a pod, weighed by priority and pod-deletion-cost) is worth: a consolidation must save more than its pods' cost times this.
    #[arg(
        long,
        env = "SPOTWRIGHT_CONSOLIDATION_EVICTION_PRICE",
        default_value_t = 0.001
    )]
    pub consolidation_eviction_price: f64,
    /// At most this many consolidation actions begin per NodePool within --consolidation-rate-window.
    #[arg(long, env = "SPOTWRIGHT_CONSOLIDATION_RATE_LIMIT", default_value_t = 5)]
    pub consolidation_rate_limit: usize,
    /// The rolling window of --consolidation-rate-limit.
    #[arg(long, env = "SPOTWRIGHT_CONSOLIDATION_RATE_WINDOW", default_value = "10m", value_parser = duration)]
    pub consolidation_rate_window: Duration,
    /// Cluster-tagged instances without a NodeClaim older than this are terminated.
    #[arg(long, env = "SPOTWRIGHT_ORPHAN_GRACE", default_value = "2m", value_parser = duration)]
    pub orphan_grace: Duration,
    /// SSM prefix of the EKS-optimized AMI parameters (`alias: eks@latest`).
    #[arg(
        long,
        env = "SPOTWRIGHT_EKS_AMI_SSM_PREFIX",
        default_value = crate::act::aws::ami::DEFAULT_EKS_AMI_SSM_PREFIX
    )]
    pub eks_ami_ssm_prefix: String,
    /// How often NodeClasses are resolved again (AMIs from SSM, subnets, security groups).
    #[arg(long, env = "SPOTWRIGHT_NODECLASS_REFRESH", default_value = "30s", value_parser = duration)]
    pub nodeclass_refresh: Duration,
    /// How often instance types, offerings and Spot prices are read again.
    #[arg(long, env = "SPOTWRIGHT_CATALOG_REFRESH", default_value = "10m", value_parser = duration)]
    pub catalog_refresh: Duration,
    /// Read on-demand prices from the AWS Pricing API (else the bundled snapshot only).
    #[arg(long, env = "SPOTWRIGHT_PRICING_API", default_value_t = true, action = clap::ArgAction::Set)]
    pub pricing_api: bool,
    /// Read Spot prices from EC2's Spot price history (else the bundled
    /// snapshot's discount model: see docs/provisioner-aws.md, "Prices").
    #[arg(long, env = "SPOTWRIGHT_SPOT_PRICE_HISTORY", default_value_t = true, action = clap::ArgAction::Set)]
    pub spot_price_history: bool,
    /// How often on-demand prices are read from the Pricing API.
    #[arg(long, env = "SPOTWRIGHT_PRICING_REFRESH", default_value = "12h", value_parser = duration)]
    pub pricing_refresh: Duration,
    /// SQS queue (URL or name) that EventBridge delivers Spot interruption warnings, rebalance recommendations, instance state changes and AWS Health scheduled changes to; empty turns interruption handling off.
    #[arg(long, env = "SPOTWRIGHT_INTERRUPTION_QUEUE", default_value = "")]
    pub interruption_queue: String,
    /// Log format: `json` in cluster (the manifests set it), `text` on a terminal.
    #[arg(
        long,
        env = "SPOTWRIGHT_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

impl Cli {
    /// Where the catalog's Spot prices come from (`--spot-price-history`).
    pub fn spot_prices(&self) -> SpotPrices {
        if self.spot_price_history {
            SpotPrices::History
        } else {
            SpotPrices::Modeled
        }
    }

    pub fn validate(&self) -> Result<(), Error> {
        if self.cluster_name.trim().is_empty() {
            return Err(Error::Config("--cluster-name must not be empty".into()));
        }
        if self.batch_idle_duration.is_zero() || self.batch_max_duration < self.batch_idle_duration
        {
            return Err(Error::Config(
                "--batch-idle-duration must be > 0 and not above --batch-max-duration".into(),
            ));
        }
        if !(1..=MAX_LAUNCH_CONCURRENCY).contains(&self.launch_concurrency) {
            return Err(Error::Config(format!(
                "--launch-concurrency must be between 1 and {MAX_LAUNCH_CONCURRENCY}"
            )));
        }
        let price = self.consolidation_eviction_price;
        if !price.is_finite() || price < 0.0 {
            return Err(Error::Config(
                "--consolidation-eviction-price must be a non-negative number".into(),
            ));
        }
        if self.consolidation_rate_limit == 0 || self.consolidation_rate_window.is_zero() {
            return Err(Error::Config(
                "--consolidation-rate-limit and --consolidation-rate-window must be above zero"
                    .into(),
            ));
        }
        if self.nomination_window.is_zero() {
            return Err(Error::Config(
                "--nomination-window must be above zero: a new node is kept until the pods it was launched for can bind".into(),
            ));
        }
        if self.registration_gate > Duration::from_secs(60) {
            return Err(Error::Config(
                "--registration-gate must not be above 1m: a registered node sits idle while it waits".into(),
            ));
        }
        self.cluster_overrides()?;
        Ok(())
    }

    /// The cluster settings the flags set; the rest comes from EKS.
    pub fn cluster_overrides(&self) -> Result<ClusterOverrides, Error> {
        let set = |value: &str| Some(value.trim().to_owned()).filter(|v| !v.is_empty());
        let ip_family = match self.cluster_ip_family.trim() {
            "" => None,
            family => Some(IpFamily::from_str(family, true).map_err(|_| {
                Error::Config(format!(
                    "--cluster-ip-family must be ipv4 or ipv6, not {family:?}"
                ))
            })?),
        };
        Ok(ClusterOverrides {
            endpoint: set(&self.cluster_endpoint),
            certificate_authority: set(&self.cluster_ca_bundle),
            service_cidr: set(&self.cluster_service_cidr),
            ip_family,
        })
    }

    /// The interruption queue, when set.
    pub fn interruption_queue(&self) -> Option<&str> {
        Some(self.interruption_queue.trim()).filter(|q| !q.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bad_durations() {
        let cli = Cli::try_parse_from(["p", "--cluster-name", "c"]).unwrap();
        assert_eq!(cli.batch_idle_duration, Duration::from_secs(1));
        assert_eq!(cli.batch_max_duration, Duration::from_secs(10));
        assert_eq!(cli.registration_timeout, Duration::from_secs(900));
        assert_eq!(cli.registration_gate, Duration::from_secs(5));
        assert_eq!(cli.launch_concurrency, 64);
        assert!(cli.leader_elect);
        assert!(cli.validate().is_ok());
        assert_eq!(cli.interruption_queue(), None);
        assert_eq!(cli.spot_prices(), SpotPrices::History);
        let modeled =
            Cli::try_parse_from(["p", "--cluster-name", "c", "--spot-price-history", "false"])
                .unwrap();
        assert_eq!(modeled.spot_prices(), SpotPrices::Modeled);
        let queued =
            Cli::try_parse_from(["p", "--cluster-name", "c", "--interruption-queue", " q "])
                .unwrap();
        assert_eq!(queued.interruption_queue(), Some("q"));
        assert!(
            Cli::try_parse_from(["p", "--cluster-name", "c", "--batch-idle-duration", "soon"])
                .is_err()
        );
        let inverted =
            Cli::try_parse_from(["p", "--cluster-name", "c", "--batch-idle-duration", "20s"])
                .unwrap();
        assert!(inverted.validate().is_err());
        for (launch_concurrency, valid) in
            [("0", false), ("1", true), ("256", true), ("257", false)]
        {
            let launches = Cli::try_parse_from([
                "p",
                "--cluster-name",
                "c",
                "--launch-concurrency",
                launch_concurrency,
            ])
            .unwrap();
            assert_eq!(launches.validate().is_ok(), valid, "{launch_concurrency}");
        }
        assert!(cli.spot_to_spot_consolidation);
        let negative = Cli::try_parse_from([
            "p",
            "--cluster-name",
            "c",
            "--consolidation-eviction-price=-1",
        ])
        .unwrap();
        assert!(negative.validate().is_err());
        let unlimited = Cli::try_parse_from([
            "p",
            "--cluster-name",
            "c",
            "--consolidation-rate-limit",
            "0",
        ])
        .unwrap();
        assert!(unlimited.validate().is_err());
        assert_eq!(cli.nomination_window, Duration::from_secs(30));
        let no_window =
            Cli::try_parse_from(["p", "--cluster-name", "c", "--nomination-window", "0s"]).unwrap();
        assert!(no_window.validate().is_err());
        let long_gate =
            Cli::try_parse_from(["p", "--cluster-name", "c", "--registration-gate", "2m"]).unwrap();
        assert!(long_gate.validate().is_err());
        let no_gate =
            Cli::try_parse_from(["p", "--cluster-name", "c", "--registration-gate", "0s"]).unwrap();
        assert!(no_gate.validate().is_ok());
    }

    #[test]
    fn cluster_flags_override_discovery() {
        let cli = Cli::try_parse_from(["p", "--cluster-name", "c"]).unwrap();
        assert_eq!(
            cli.cluster_overrides().unwrap(),
            ClusterOverrides::default()
        );
        let set = Cli::try_parse_from([
            "p",
            "--cluster-name",
            "c",
            "--cluster-service-cidr",
            "10.100.0.0/16",
            "--cluster-ip-family",
            "IPv6",
        ])
        .unwrap();
        let overrides = set.cluster_overrides().unwrap();
        assert_eq!(overrides.service_cidr.as_deref(), Some("10.100.0.0/16"));
        assert_eq!(overrides.ip_family, Some(IpFamily::Ipv6));
        let bad =
            Cli::try_parse_from(["p", "--cluster-name", "c", "--cluster-ip-family", "v5"]).unwrap();
        assert!(bad.validate().is_err());
    }
}
