//! `spotwright-scale-bench`: what `bench/scale/run` runs against the local
//! cluster (see that script for the whole procedure).
//!
//! - `instance-types --out FILE`: Karpenter's KWOK instance-types file from
//!   moto's EC2 and the bundled prices (`scale::instance_types`).
//! - `floor-nodes ...`: the floor's Nodes, made before its scale-up
//!   (`scale::floor`), Ready when it returns.
//! - `run ...`: one scale-up of the workload to `--pods`, then to zero, for
//!   one system (or the floor); writes one JSON document of every figure to
//!   `--out`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use spotwright_api::eks::InstanceFacts;
use spotwright_api::keys::CapacityType;
use spotwright_api::prices::PriceCatalog;
use spotwright_e2e::scale::figures::{
    after_first_wave, bucket_delta, histogram_buckets, histogram_count, histogram_quantile,
    histogram_sum, quantiles, requests_by_client, WAVE_GAP_SECONDS,
};
use spotwright_e2e::scale::floor;
use spotwright_e2e::scale::instance_types::{
    karpenter_instance_types, price_table, Offering, TypeFacts,
};
use spotwright_e2e::scale::run::{
    no_launched_nodes, no_pods_left, pool_instance_count, scale_to_zero, scale_up, LaunchedNode,
    System,
};
use spotwright_e2e::scale::traces::{
    self, sampled_traceparent, Received, SpanRecord, MUTATING_WEBHOOK_SPAN,
};
use spotwright_e2e::scale::workload::wide_deployments;

#[derive(Parser)]
#[command(
    name = "spotwright-scale-bench",
    about = "The scale benchmark's driver (bench/scale/run)"
)]
struct Cli {
    #[command(subcommand)]
    command: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Writes Karpenter's KWOK instance-types file from moto and the bundled prices.
    InstanceTypes {
        #[arg(long)]
        out: PathBuf,
    },
    /// Makes the floor's Nodes (no autoscaler) and waits until they are Ready.
    FloorNodes {
        /// The instance-types file (`instance-types`): the type's resources and zones.
        #[arg(long)]
        prices: PathBuf,
        #[arg(long, default_value = "r5a.16xlarge")]
        instance_type: String,
        #[arg(long, default_value_t = 40)]
        count: usize,
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "us-east-1a,us-east-1b,us-east-1c"
        )]
        zones: Vec<String>,
        #[arg(long, default_value = "spot")]
        pool: String,
    },
    /// One scale-up to --pods and back to zero.
    Run(Box<RunArgs>),
}

#[derive(clap::Args)]
struct RunArgs {
    #[arg(long, value_parser = parse_system)]
    system: System,
    #[arg(long)]
    pods: u32,
    /// An existing namespace (opted in, for Spotwright).
    #[arg(long)]
    namespace: String,
    /// The system's NodePool: its nodes are counted, and at the end they
    /// (and for Spotwright its EC2 instances) must all go.
    #[arg(long, default_value = "spot")]
    pool: String,
    /// The instance-types file (`instance-types`): it prices every node.
    #[arg(long)]
    prices: PathBuf,
    /// Processes to account, `name=pid` (CPU seconds of each; peak RSS too).
    #[arg(long = "process", value_parser = parse_process)]
    processes: Vec<(String, u32)>,
    /// The API server's audit log (JSON lines), to count requests by client.
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// The cluster's state folder (its PKI reaches the schedulers' /metrics).
    #[arg(long)]
    state: PathBuf,
    /// Secure port of the scheduler that places this system's pods.
    #[arg(long)]
    scheduler_port: u16,
    /// Metrics URL of the system's controller (text format), if any.
    #[arg(long)]
    controller_metrics: Option<String>,
    #[arg(long, default_value_t = 900)]
    timeout_seconds: u64,
    /// Receive the API server's trace exports here (`host:port`; its
    /// tracing configuration must point there, as `e2e/cluster up` writes it
    /// with `SPOTWRIGHT_APISERVER_TRACING_ENDPOINT`): the webhook's latency
    /// at rest is then read from the API server's own spans.
    #[arg(long)]
    trace_receiver: Option<std::net::SocketAddr>,
    #[arg(long)]
    out: PathBuf,
}

fn parse_system(text: &str) -> Result<System, String> {
    match text {
        "spotwright" => Ok(System::Spotwright),
        "karpenter" => Ok(System::Karpenter),
        "floor" => Ok(System::Floor),
        other => Err(format!(
            "unknown system {other:?} (spotwright, karpenter or floor)"
        )),
    }
}

fn parse_process(text: &str) -> Result<(String, u32), String> {
    let (name, pid) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not name=pid"))?;
    let pid = pid.parse().map_err(|e| format!("pid of {name}: {e}"))?;
    Ok((name.to_owned(), pid))
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Action::InstanceTypes { out } => instance_types(out).await,
        Action::FloorNodes {
            prices,
            instance_type,
            count,
            zones,
            pool,
        } => floor_nodes(prices, &instance_type, count, &zones, &pool).await,
        Action::Run(args) => run(*args).await,
    }
}

async fn floor_nodes(
    prices: PathBuf,
    instance_type: &str,
    count: usize,
    zones: &[String],
    pool: &str,
) -> Result<()> {
    let file: Value = serde_json::from_slice(
        &std::fs::read(&prices).with_context(|| format!("reading {}", prices.display()))?,
    )?;
    let entry = file
        .as_array()
        .and_then(|types| types.iter().find(|t| t["name"] == instance_type))
        .with_context(|| format!("{instance_type} is not in {}", prices.display()))?;
    let nodes = floor::floor_nodes(entry, count, zones, pool).map_err(anyhow::Error::msg)?;
    let client = spotwright_e2e::named_client("spotwright-scale-bench")
        .await
        .context("the cluster")?;
    floor::make_floor(&client, &nodes, Duration::from_secs(120))
        .await
        .map_err(anyhow::Error::msg)?;
    eprintln!("[floor] {count} {instance_type} nodes Ready");
    Ok(())
}

async fn instance_types(out: PathBuf) -> Result<()> {
    let ec2 = spotwright_e2e::harness::provisioner::ec2().await;
    let mut types = Vec::new();
    let mut pages = ec2.describe_instance_types().into_paginator().send();
    while let Some(page) = pages.next().await {
        for info in page.context("DescribeInstanceTypes")?.instance_types() {
            if let Some(facts) = type_facts(info) {
                types.push(facts);
            }
        }
    }
    let catalog = PriceCatalog::embedded().context("the bundled prices")?;
    let mut prices: BTreeMap<(String, String), Offering> = BTreeMap::new();
    let mut pages = ec2
        .describe_instance_type_offerings()
        .location_type(aws_sdk_ec2::types::LocationType::AvailabilityZone)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for offering in page
            .context("DescribeInstanceTypeOfferings")?
            .instance_type_offerings()
        {
            let (Some(name), Some(zone)) = (offering.instance_type(), offering.location()) else {
                continue;
            };
            prices.insert(
                (name.as_str().to_owned(), zone.to_owned()),
                Offering {
                    spot: None,
                    on_demand: catalog.price(name.as_str(), CapacityType::OnDemand),
                },
            );
        }
    }
    // Both systems price Spot by the snapshot's discount model: moto's Spot
    // price history is one flat figure (0.00001) for every type, and the
    // provisioner runs with --spot-price-history false.
    for ((name, _), offering) in prices.iter_mut() {
        offering.spot = catalog.price(name, CapacityType::Spot);
    }
    let file = karpenter_instance_types(&types, &prices);
    let count = file.as_array().map_or(0, Vec::len);
    if count == 0 {
        bail!("no eligible instance type with a price in moto's catalog");
    }
    std::fs::write(&out, serde_json::to_vec_pretty(&file)?)
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!("{count} instance types -> {}", out.display());
    Ok(())
}

fn type_facts(info: &aws_sdk_ec2::types::InstanceTypeInfo) -> Option<TypeFacts> {
    let name = info.instance_type()?.as_str().to_owned();
    let archs = info.processor_info()?.supported_architectures();
    let arch = if archs.iter().any(|a| a.as_str() == "x86_64") {
        "amd64"
    } else if archs.iter().any(|a| a.as_str() == "arm64") {
        "arm64"
    } else {
        return None;
    };
    let network = info.network_info()?;
    Some(TypeFacts {
        name,
        arch: arch.to_owned(),
        eks: InstanceFacts {
            vcpus: u32::try_from(info.v_cpu_info()?.default_v_cpus()?).ok()?,
            memory_mib: u64::try_from(info.memory_info()?.size_in_mib()?).ok()?,
            max_enis: u32::try_from(network.maximum_network_interfaces()?).ok()?,
            ipv4_per_eni: u32::try_from(network.ipv4_addresses_per_interface()?).ok()?,
        },
    })
}

/// CPU seconds and peak RSS (MiB) of a process, from /proc.
fn process_usage(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    // USER_HZ is 100 on Linux for every architecture this runs on.
    Some((ticks / 100.0, hwm_kib / 1024.0))
}

/// [`process_usage`] of each `(name, pid)` still alive.
fn usage_of(processes: &[(String, u32)]) -> BTreeMap<&str, (f64, f64)> {
    processes
        .iter()
        .filter_map(|(name, pid)| Some((name.as_str(), process_usage(*pid)?)))
        .collect()
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The three /metrics texts a run compares: API server, scheduler, controller.
struct Scrapes {
    apiserver: String,
    scheduler: String,
    controller: String,
}

fn scrape(args: &RunArgs) -> Scrapes {
    let kubectl = std::env::var("SPOTWRIGHT_KUBECTL").unwrap_or_else(|_| "kubectl".to_owned());
    let pki = args.state.join("pki");
    let file = |name: &str| pki.join(name).to_string_lossy().into_owned();
    let scheduler_url = format!("https://127.0.0.1:{}/metrics", args.scheduler_port);
    let (ca, cert, key) = (file("ca.crt"), file("admin.crt"), file("admin.key"));
    Scrapes {
        apiserver: command_output(&kubectl, &["get", "--raw", "/metrics"]),
        scheduler: command_output(
            "curl",
            &[
                "-sfk",
                "--cacert",
                &ca,
                "--cert",
                &cert,
                "--key",
                &key,
                &scheduler_url,
            ],
        ),
        controller: args
            .controller_metrics
            .as_deref()
            .map(|url| command_output("curl", &["-sf", url]))
            .unwrap_or_default(),
    }
}

/// p50/p90/p99 (ms) and count of a histogram's observations between scrapes.
fn histogram_figures(before: &str, after: &str, metric: &str, matching: &[&str]) -> Value {
    let delta = bucket_delta(
        &histogram_buckets(before, metric, matching),
        &histogram_buckets(after, metric, matching),
    );
    let ms = |seconds: f64| (seconds * 1e6).round() / 1e3;
    let quantile = |q: f64| histogram_quantile(q, &delta).map(ms);
    let count = histogram_count(&delta);
    let sum = histogram_sum(after, metric, matching) - histogram_sum(before, metric, matching);
    // The mean is exact where a quantile is only interpolated inside a bucket.
    let mean = (count > 0.0).then(|| ms(sum / count));
    json!({"count": count, "mean_ms": mean, "p50_ms": quantile(0.5), "p90_ms": quantile(0.9),
        "p99_ms": quantile(0.99)})
}

fn fleet(nodes: &[LaunchedNode], prices: &BTreeMap<(String, String, String), f64>) -> Value {
    let mut usd = 0.0;
    let mut unpriced = Vec::new();
    let mut by_type: BTreeMap<&str, u32> = BTreeMap::new();
    for node in nodes {
        *by_type.entry(&node.instance_type).or_default() += 1;
        let key = (
            node.instance_type.clone(),
            node.zone.clone(),
            node.capacity_type.clone(),
        );
        match prices.get(&key) {
            Some(price) => usd += price,
            None => unpriced.push(format!("{} ({} {} {})", node.name, key.0, key.1, key.2)),
        }
    }
    let spot = nodes.iter().filter(|n| n.capacity_type == "spot").count();
    let created: Vec<Option<i64>> = nodes.iter().map(|n| n.created).collect();
    let later = after_first_wave(&created, WAVE_GAP_SECONDS);
    json!({"nodes": nodes.len(), "spot_nodes": spot, "nodes_after_first_wave": later,
        "usd_per_hour": (usd * 1e4).round() / 1e4,
        "instance_types": by_type.len(), "unpriced": unpriced, "by_type": by_type})
}

async fn run(args: RunArgs) -> Result<()> {
    let client = spotwright_e2e::named_client("spotwright-scale-bench")
        .await
        .context("the cluster")?;
    let traces = match args.trace_receiver {
        Some(addr) => Some(traces::receive(addr).await.context("the trace receiver")?),
        None => None,
    };
    let prices_file: Value = serde_json::from_slice(
        &std::fs::read(&args.prices)
            .with_context(|| format!("reading {}", args.prices.display()))?,
    )?;
    let prices = price_table(&prices_file);
    let shapes = wide_deployments(args.pods);
    let timeout = Duration::from_secs(args.timeout_seconds);
    let audit_from = args
        .audit_log
        .as_ref()
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len());
    let usage_before = usage_of(&args.processes);
    let before = scrape(&args);

    let up = scale_up(
        &client,
        args.system,
        &args.pool,
        &args.namespace,
        &shapes,
        timeout,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let after = scrape(&args);
    // The raw texts beside the report, to read any figure again.
    for (when, scrapes) in [("before", &before), ("after", &after)] {
        for (part, text) in [
            ("apiserver", &scrapes.apiserver),
            ("scheduler", &scrapes.scheduler),
            ("controller", &scrapes.controller),
        ] {
            let _ = std::fs::write(
                args.out.with_extension(format!("{part}.{when}.metrics")),
                text,
            );
        }
    }
    let usage_up = usage_of(&args.processes);
    let audit = args.audit_log.as_ref().map(|path| {
        let bytes = std::fs::read(path).unwrap_or_default();
        let from = usize::try_from(audit_from).unwrap_or(0).min(bytes.len());
        requests_by_client(&String::from_utf8_lossy(&bytes[from..]))
    });
    eprintln!(
        "[scale] {} of {} pods Running after {:?}s on {} nodes",
        up.running,
        up.pods,
        up.seconds_to_all_running,
        up.nodes.len()
    );

    let ec2 = spotwright_e2e::harness::provisioner::ec2().await;
    let (system, pool) = (args.system, args.pool.clone());
    let to_zero = scale_to_zero(&client, &args.namespace, &shapes, timeout, || {
        let (client, ec2, pool) = (client.clone(), ec2.clone(), pool.clone());
        let namespace = args.namespace.clone();
        async move {
            let instances = match system {
                System::Spotwright => pool_instance_count(&ec2, &pool).await.ok(),
                System::Karpenter => Some(0),
                System::Floor => return no_pods_left(&client, &namespace).await,
            };
            instances == Some(0) && no_launched_nodes(&client, system, &pool).await
        }
    })
    .await
    .map_err(anyhow::Error::msg)?;
    let usage_end = usage_of(&args.processes);
    let at_rest = webhook_at_rest(&client, &args, traces.as_ref()).await;
    let processes: BTreeMap<&str, Value> = usage_end
        .iter()
        .map(|(name, (cpu_end, hwm))| {
            let cpu_before = usage_before.get(name).map_or(0.0, |u| u.0);
            let cpu_up = usage_up.get(name).map_or(0.0, |u| u.0);
            let round = |x: f64| (x * 100.0).round() / 100.0;
            (
                *name,
                json!({"cpu_seconds_scale_up": round(cpu_up - cpu_before),
                "cpu_seconds_total": round(cpu_end - cpu_before), "peak_rss_mib": round(*hwm)}),
            )
        })
        .collect();

    let report = json!({
        "system": args.system,
        "pods": up.pods,
        "running": up.running,
        "seconds_to_all_running": up.seconds_to_all_running.map(|s| (s * 100.0).round() / 100.0),
        "pod_seconds": up.pod_seconds,
        "fleet": fleet(&up.nodes, &prices),
        "misplaced_pods": up.misplaced,
        "seconds_to_no_capacity": (to_zero * 100.0).round() / 100.0,
        "processes": processes,
        "requests_by_client": audit,
        "webhook_admission": histogram_figures(&before.apiserver, &after.apiserver,
            "apiserver_admission_webhook_admission_duration_seconds", &["spotwright"]),
        "webhook_admission_at_rest": at_rest,
        "scheduler_attempt": histogram_figures(&before.scheduler, &after.scheduler,
            "scheduler_scheduling_attempt_duration_seconds", &["result=\"scheduled\""]),
        "scheduler_algorithm": histogram_figures(&before.scheduler, &after.scheduler,
            "scheduler_scheduling_algorithm_duration_seconds", &[]),
        "controller": {
            "batch": histogram_figures(&before.controller, &after.controller,
                "spotwright_provisioner_batch_duration_seconds", &[]),
            "solve": histogram_figures(&before.controller, &after.controller,
                "spotwright_provisioner_solve_duration_seconds", &[]),
        },
    });
    std::fs::write(&args.out, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    if up.running != up.pods {
        bail!(
            "{} of {} pods Running within {timeout:?}",
            up.running,
            up.pods
        );
    }
    if !up.misplaced.is_empty() {
        bail!(
            "{} pods not on the system's Spot nodes, e.g. {}",
            up.misplaced.len(),
            up.misplaced[0]
        );
    }
    Ok(())
}

/// Dry-run pod creations, one at a time, on the quiet cluster after the run.
const AT_REST_PROBES: u32 = 200;

/// The webhook's admission latency as the API server records it when
/// nothing else runs: [`AT_REST_PROBES`] server-side dry-run creations of a
/// pod in the namespace (the webhook has no side effects, so it is called;
/// nothing is stored), with the client's round trip beside it. Each carries
/// a sampled `traceparent`: with `traces`, the API server's span of each
/// webhook call gives its latency to the microsecond.
async fn webhook_at_rest(
    client: &kube::Client,
    args: &RunArgs,
    traces: Option<&Received>,
) -> Value {
    let probe = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "webhook-probe"},
        "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}
    });
    let params = kube::api::PostParams {
        dry_run: true,
        ..Default::default()
    };
    let url = format!("/api/v1/namespaces/{}/pods", args.namespace);
    let before = scrape(args).apiserver;
    let mut round_trips = Vec::new();
    let mut trace_ids = std::collections::BTreeSet::new();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    for i in 0..AT_REST_PROBES {
        let (traceparent, trace_id) = sampled_traceparent(seed.wrapping_add(u64::from(i)));
        let request = kube::core::Request::new(url.as_str())
            .create(&params, probe.to_string().into_bytes())
            .map_err(|e| e.to_string())
            .and_then(|mut request| {
                let value = http::HeaderValue::from_str(&traceparent).map_err(|e| e.to_string())?;
                request.headers_mut().insert("traceparent", value);
                Ok(request)
            });
        let started = Instant::now();
        let created = match request {
            Ok(request) => client
                .request::<Value>(request)
                .await
                .map_err(|e| e.to_string()),
            Err(err) => Err(err),
        };
        if let Err(err) = created {
            return json!({"error": format!("dry-run create: {err}")});
        }
        round_trips.push(started.elapsed().as_secs_f64() * 1e3);
        trace_ids.insert(trace_id);
    }
    let after = scrape(args).apiserver;
    let client = quantiles(&round_trips);
    let round_ms = |x: f64| (x * 1e3).round() / 1e3;
    let traced = match traces {
        Some(received) => webhook_spans(received, &trace_ids).await,
        None => Value::Null,
    };
    json!({
        "apiserver": histogram_figures(&before, &after,
            "apiserver_admission_webhook_admission_duration_seconds", &["spotwright"]),
        "apiserver_traced_ms": traced,
        "create_round_trip_ms": {"p50": round_ms(client.p50), "p90": round_ms(client.p90),
            "max": round_ms(client.max)},
    })
}

/// The API server's spans of the probes' traces, once exported (its batch
/// exporter sends every 5 s), as [`traces::call_figures`]. Waits at most
/// 30 s for every webhook call's span.
async fn webhook_spans(
    received: &Received,
    trace_ids: &std::collections::BTreeSet<Vec<u8>>,
) -> Value {
    let ours = || -> Vec<SpanRecord> {
        received.lock().map_or_else(
            |_| Vec::new(),
            |spans| {
                spans
                    .iter()
                    .filter(|s| trace_ids.contains(&s.trace_id))
                    .cloned()
                    .collect()
            },
        )
    };
    let calls = |spans: &[SpanRecord]| {
        spans
            .iter()
            .filter(|s| s.name == MUTATING_WEBHOOK_SPAN)
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while calls(&ours()) < trace_ids.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    traces::call_figures(&ours())
}
