use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use kube::runtime::events::{Recorder, Reporter};
use prometheus::Registry;
use spotwright_api::eks::DEFAULT_ROOT_VOLUME_GIB;
use spotwright_provisioner::aws::catalog::fetch_instance_types;
use spotwright_provisioner::aws::fleet::ClusterSettings;
use spotwright_provisioner::aws::pricing::{fetch_on_demand_prices, pricing_client};
use spotwright_provisioner::cli::Cli;
use spotwright_provisioner::controllers::drift::{self, DriftSettings};
use spotwright_provisioner::controllers::orphans::{self, Ec2Instances, OrphanSettings};
use spotwright_provisioner::controllers::registration::{self, RegistrationSettings};
use spotwright_provisioner::controllers::removal::{self, RemovalSettings};
use spotwright_provisioner::controllers::termination::{self, TerminationSettings};
use spotwright_provisioner::disruption::decide::DisruptionTiming;
use spotwright_provisioner::interruption::{self, InterruptionSettings};
use spotwright_provisioner::leader::{run_as_leader, LeaderSettings};
use spotwright_provisioner::metrics::{CountedInstances, Metrics};
use spotwright_provisioner::nodeclass;
use spotwright_provisioner::provisioning::ec2::Ec2Launcher;
use spotwright_provisioner::provisioning::stores::Stores;
use spotwright_provisioner::provisioning::{self, Settings};
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
    cli.validate().map_err(anyhow::Error::msg)?;
    let registry = Registry::new();
    let metrics = Metrics::register(&registry).context("registering metrics")?;
    let metrics_listener = startup::bind("metrics-listen", cli.metrics_listen).await?;
    let client = startup::kube_client().await?;
    let (trigger, mut shutdown) = Shutdown::new();
    on_signals(trigger).context("installing signal handlers")?;
    let readiness = Readiness::default();
    tokio::spawn(serve_health(
        metrics_listener,
        registry,
        readiness.clone(),
        shutdown.clone(),
    ));

    let aws = spotwright_provisioner::aws::config::sdk_config().await;
    let region = aws
        .region()
        .map(ToString::to_string)
        .unwrap_or_else(|| "us-east-1".into());
    let ec2 = aws_sdk_ec2::Client::new(&aws);
    let launcher = Arc::new(Ec2Launcher::new(
        ec2.clone(),
        ClusterSettings {
            name: cli.cluster_name.clone(),
            endpoint: cli.cluster_endpoint.clone(),
            certificate_authority: cli.cluster_ca_bundle.clone(),
            service_cidr: None,
        },
    ));
    // The first catalog is fetched before anything else: without it no pod can be placed.
    let pricing = cli.pricing_api.then(|| pricing_client(&aws));
    let mut on_demand = on_demand_prices(pricing.as_ref(), &region).await;
    let types = fetch_instance_types(&ec2, &on_demand, DEFAULT_ROOT_VOLUME_GIB)
        .await
        .context("reading instance types from EC2 (DescribeInstanceTypes)")?;
    tracing::info!(
        instance_types = types.len(),
        on_demand_prices = on_demand.len(),
        region,
        "catalog loaded"
    );
    launcher.set_instance_types(types);
    readiness.set(true);

    let work = {
        let (client, launcher, cli_refresh) =
            (client.clone(), launcher.clone(), cli.catalog_refresh);
        let pricing_refresh = cli.pricing_refresh;
        let settings = Settings {
            scheduler_name: cli.scheduler_name.clone(),
            batch_idle: cli.batch_idle_duration,
            batch_max: cli.batch_max_duration,
            resync: Duration::from_secs(15),
            launch_concurrency: 8,
            disruption_interval: cli.disruption_interval,
            disruption: DisruptionTiming {
                replacement_timeout: cli.replacement_timeout,
                // Long enough for a failed launch's capacity to come back.
                retry_after: Duration::from_secs(60),
            },
        };
        let nodeclass_changed = Arc::new(tokio::sync::Notify::new());
        let nodeclass_settings = nodeclass::Settings {
            refresh: cli.nodeclass_refresh,
            eks_ami_ssm_prefix: cli.eks_ami_ssm_prefix.clone(),
            on_change: Some(nodeclass_changed.clone()),
        };
        let ssm = aws_sdk_ssm::Client::new(&aws);
        let registration_timeout = cli.registration_timeout;
        let orphan_grace = cli.orphan_grace;
        let ec2_instances = || Ec2Instances {
            ec2: ec2.clone(),
            cluster_name: cli.cluster_name.clone(),
        };
        let drained = Arc::new(CountedInstances::new(
            ec2_instances(),
            &metrics,
            "nodeclaim_deleted",
        ));
        let orphaned = Arc::new(CountedInstances::new(ec2_instances(), &metrics, "orphan"));
        let interruption_queue = cli.interruption_queue().map(str::to_owned);
        let sqs = interruption_queue
            .as_ref()
            .map(|_| aws_sdk_sqs::Client::new(&aws));
        let events_namespace = cli.leader_election_namespace.clone();
        async move {
            tracing::info!("leading: starting the controllers");
            tokio::spawn(nodeclass::run(
                nodeclass::Clients {
                    kube: client.clone(),
                    ec2: ec2.clone(),
                    ssm,
                },
                nodeclass_settings,
            ));
            tokio::spawn(registration::run(
                client.clone(),
                RegistrationSettings {
                    registration_timeout,
                    claim_selector: None,
                },
            ));
            tokio::spawn(drift::run(
                client.clone(),
                DriftSettings {
                    wake: Some(nodeclass_changed),
                    drifted: Some(metrics.drifted_nodeclaims.clone()),
                    ..DriftSettings::default()
                },
            ));
            tokio::spawn(removal::run(
                client.clone(),
                RemovalSettings {
                    claim_selector: None,
                    ..RemovalSettings::default()
                },
            ));
            tokio::spawn(termination::run(
                client.clone(),
                TerminationSettings {
                    evictions_blocked: Some(metrics.evictions_blocked.clone()),
                    ..TerminationSettings::default()
                },
                drained,
            ));
            tokio::spawn(orphans::run(
                client.clone(),
                OrphanSettings {
                    grace_period: orphan_grace,
                    ..OrphanSettings::default()
                },
                orphaned,
            ));
            if let (Some(queue), Some(sqs)) = (interruption_queue, sqs) {
                let (client, launcher, metrics) =
                    (client.clone(), launcher.clone(), metrics.clone());
                tokio::spawn(async move {
                    let queue_url = resolve_queue(&sqs, &queue).await;
                    interruption::run(
                        client,
                        sqs,
                        InterruptionSettings::new(queue_url, events_namespace),
                        launcher,
                        metrics,
                    )
                    .await;
                });
            }
            let catalog = launcher.clone();
            tokio::spawn(async move {
                let mut last_pricing = tokio::time::Instant::now();
                loop {
                    tokio::time::sleep(cli_refresh).await;
                    if last_pricing.elapsed() >= pricing_refresh {
                        on_demand = on_demand_prices(pricing.as_ref(), &region).await;
                        last_pricing = tokio::time::Instant::now();
                    }
                    match fetch_instance_types(catalog.ec2(), &on_demand, DEFAULT_ROOT_VOLUME_GIB)
                        .await
                    {
                        Ok(types) => catalog.set_instance_types(types),
                        Err(err) => {
                            tracing::warn!(error = %err, "catalog refresh failed; keeping the last one")
                        }
                    }
                }
            });
            let stores = Stores::start(&client);
            stores.ready().await;
            tracing::info!("caches synced; provisioning");
            let recorder = Recorder::new(
                client.clone(),
                Reporter {
                    controller: "spotwright-provisioner".into(),
                    instance: std::env::var("POD_NAME").ok(),
                },
            );
            provisioning::run(provisioning::pass::Context {
                client,
                stores,
                launcher,
                metrics,
                recorder,
                settings,
            })
            .await;
        }
    };
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

/// The queue's URL: a URL as is, a name through GetQueueUrl (retried until
/// it resolves, as the loop itself would retry).
async fn resolve_queue(sqs: &aws_sdk_sqs::Client, queue: &str) -> String {
    if queue.starts_with("https://") || queue.starts_with("http://") {
        return queue.to_owned();
    }
    let mut backoff = Duration::from_secs(1);
    loop {
        match sqs.get_queue_url().queue_name(queue).send().await {
            Ok(output) => {
                if let Some(url) = output.queue_url {
                    return url;
                }
                tracing::warn!(queue, "GetQueueUrl returned no URL");
            }
            Err(err) => {
                tracing::warn!(queue, error = %aws_sdk_sqs::error::DisplayErrorContext(&err), "GetQueueUrl failed; retrying")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

/// On-demand prices from the Pricing API, or none (the bundled snapshot then prices everything).
async fn on_demand_prices(
    client: Option<&aws_sdk_pricing::Client>,
    region: &str,
) -> HashMap<String, f64> {
    let Some(client) = client else {
        return HashMap::new();
    };
    match fetch_on_demand_prices(client, region).await {
        Ok(prices) => prices,
        Err(err) => {
            tracing::warn!(error = %err, "Pricing API unavailable; using the bundled price snapshot");
            HashMap::new()
        }
    }
}
