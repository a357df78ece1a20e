use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use prometheus::Registry;
use spotwright_provisioner::act::aws::eks::discover;
use spotwright_provisioner::act::aws::fleet::ClusterSettings;
use spotwright_provisioner::act::aws::pricing::pricing_client;
use spotwright_provisioner::act::ec2_launcher::Ec2Launcher;
use spotwright_provisioner::act::kube_client::counted_client;
use spotwright_provisioner::cli::Cli;
use spotwright_provisioner::controllers::disruption::consolidate::ConsolidationSettings;
use spotwright_provisioner::controllers::disruption::decide::DisruptionTiming;
use spotwright_provisioner::controllers::disruption::DisruptionSettings;
use spotwright_provisioner::controllers::emptiness::EmptinessSettings;
use spotwright_provisioner::controllers::interruption::InterruptionSettings;
use spotwright_provisioner::controllers::orphans::OrphanSettings;
use spotwright_provisioner::controllers::provisioning::ProvisioningSettings;
use spotwright_provisioner::controllers::registration::RegistrationSettings;
use spotwright_provisioner::metrics::Metrics;
use spotwright_provisioner::model::clock::SystemClock;
use spotwright_provisioner::model::consolidation::cost::RateLimit;
use spotwright_provisioner::model::consolidation::MAX_MULTI_CANDIDATES;
use spotwright_provisioner::run::catalog::{self, CatalogSource};
use spotwright_provisioner::run::leader::{run_as_leader, LeaderSettings};
use spotwright_provisioner::run::turns::TurnSettings;
use spotwright_provisioner::run::{self, Settings, Wiring};
use spotwright_provisioner::state::{ClusterState, StateConfig};
use spotwright_serving::health::{serve_health, Readiness};
use spotwright_serving::shutdown::{on_signals, Shutdown};
use spotwright_serving::{startup, telemetry};

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    startup::exit_on_error("spotwright-provisioner", run(cli).await);
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    cli.validate()?;
    let registry = Registry::new();
    let metrics = Metrics::register(&registry).context("registering metrics")?;
    let metrics_listener = startup::bind("metrics-listen", cli.metrics_listen).await?;
    let client = counted_client(metrics.kube_requests.clone())
        .await
        .context("connecting to the Kubernetes API server")?;
    let (trigger, mut shutdown) = Shutdown::new();
    on_signals(trigger).context("installing signal handlers")?;
    let readiness = Readiness::default();
    tokio::spawn(serve_health(
        metrics_listener,
        registry,
        readiness.clone(),
        shutdown.clone(),
    ));

    let aws = spotwright_provisioner::act::aws::config::sdk_config().await;
    let region = aws
        .region()
        .map(ToString::to_string)
        .unwrap_or_else(|| "us-east-1".into());
    let ec2 = aws_sdk_ec2::Client::new(&aws);
    let cluster = cluster_settings(&cli, &aws).await?;
    let launcher = Arc::new(Ec2Launcher::new(ec2.clone(), cluster));
    // Every replica watches from the start, so a new leader starts warm and
    // /readyz means the state is synced.
    let state = ClusterState::watch(&client, &StateConfig::default());
    state.count_builds(metrics.snapshot_builds.clone());
    let source = CatalogSource {
        pricing: cli.pricing_api.then(|| pricing_client(&aws)),
        spot_prices: cli.spot_prices(),
        region,
        refresh: cli.catalog_refresh,
        pricing_refresh: cli.pricing_refresh,
    };
    let on_demand = catalog::load(&launcher, &source)
        .await
        .context("reading instance types from EC2 (DescribeInstanceTypes)")?;
    tokio::spawn(catalog::refresh(launcher.clone(), source, on_demand));
    {
        let (state, readiness) = (state.clone(), readiness.clone());
        tokio::spawn(async move {
            state.ready().await;
            readiness.set(true);
        });
    }
    let wiring = Wiring {
        client: client.clone(),
        state,
        launcher,
        metrics,
        clock: Arc::new(SystemClock),
        ec2,
        ssm: aws_sdk_ssm::Client::new(&aws),
        cluster_name: cli.cluster_name.clone(),
        settings: settings(&cli, &aws),
    };
    // Boxed: the controllers' futures nest deep enough to strain the compiler's layout queries.
    let work = Box::pin(run::controllers(wiring));
    if cli.leader_elect {
        let leader = LeaderSettings::new(cli.leader_election_namespace.clone());
        tokio::select! {
            result = run_as_leader(client, leader, work) => {
                result.context("leader election")?;
            }
            _ = shutdown.wait() => tracing::info!("shutting down"),
        }
    } else {
        tokio::select! {
            _ = work => {}
            _ = shutdown.wait() => tracing::info!("shutting down"),
        }
    }
    Ok(())
}

/// What nodes join with: the flags, and EKS DescribeCluster for the rest.
async fn cluster_settings(
    cli: &Cli,
    aws: &aws_config::SdkConfig,
) -> anyhow::Result<ClusterSettings> {
    let overrides = cli.cluster_overrides()?;
    let eks = aws_sdk_eks::Client::new(aws);
    let (settings, described) = discover(&eks, &cli.cluster_name, &overrides)
        .await
        .with_context(|| {
            format!(
                "discovering cluster {} (EKS DescribeCluster); or set --cluster-endpoint, --cluster-ca-bundle and --cluster-service-cidr",
                cli.cluster_name
            )
        })?;
    tracing::info!(
        cluster = settings.name,
        endpoint = settings.endpoint,
        service_cidr = settings.service_cidr.as_deref().unwrap_or_default(),
        eks_version = described
            .as_ref()
            .and_then(|d| d.version.as_deref())
            .unwrap_or("-"),
        eks_status = described
            .as_ref()
            .and_then(|d| d.status.as_deref())
            .unwrap_or("-"),
        from_eks = described.is_some(),
        "cluster settings for node user data"
    );
    Ok(settings)
}

/// The controllers' settings from the flags.
fn settings(cli: &Cli, aws: &aws_config::SdkConfig) -> Settings {
    let interruption = cli.interruption_queue().map(|queue| {
        (
            aws_sdk_sqs::Client::new(aws),
            InterruptionSettings::new(queue.to_owned(), cli.leader_election_namespace.clone()),
        )
    });
    Settings {
        provisioning: ProvisioningSettings {
            scheduler_name: cli.scheduler_name.clone(),
            launch_concurrency: cli.launch_concurrency,
        },
        turns: TurnSettings {
            batch_idle: cli.batch_idle_duration,
            batch_max: cli.batch_max_duration,
            resync: Duration::from_secs(15),
            disruption_interval: cli.disruption_interval,
        },
        disruption: DisruptionSettings {
            scheduler_name: cli.scheduler_name.clone(),
            timing: DisruptionTiming {
                replacement_timeout: cli.replacement_timeout,
                // Long enough for a failed launch's capacity to come back.
                retry_after: Duration::from_secs(60),
            },
            consolidation: ConsolidationSettings {
                decisions: spotwright_provisioner::model::consolidation::Settings {
                    spot_to_spot: cli.spot_to_spot_consolidation,
                    eviction_price: cli.consolidation_eviction_price,
                    max_multi: MAX_MULTI_CANDIDATES,
                },
                rate_limit: RateLimit {
                    max: cli.consolidation_rate_limit,
                    window: cli.consolidation_rate_window,
                },
                nomination_window: cli.nomination_window,
            },
        },
        registration: RegistrationSettings {
            registration_timeout: cli.registration_timeout,
            gate: cli.registration_gate,
            ..RegistrationSettings::default()
        },
        orphans: OrphanSettings {
            grace_period: cli.orphan_grace,
            ..OrphanSettings::default()
        },
        emptiness: EmptinessSettings {
            nomination_window: cli.nomination_window,
            ..EmptinessSettings::default()
        },
        nodeclass_refresh: cli.nodeclass_refresh,
        eks_ami_ssm_prefix: cli.eks_ami_ssm_prefix.clone(),
        interruption,
    }
}
