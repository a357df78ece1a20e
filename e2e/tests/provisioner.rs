//! The provisioner on the real control plane and moto: pending pods become
//! Spot nodes (through CreateFleet, registered by the node agent), the
//! nodes go when the pods go, a kill -9 mid-launch leaks nothing, and a
//! capacity error on the cheapest types still places every pod.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::json;
use spotwright_api::eks::DEFAULT_ROOT_VOLUME_GIB;
use spotwright_api::NodeClaim;
use spotwright_e2e::harness::process::eventually;
use spotwright_e2e::harness::provisioner::{
    ec2, ensure_network, local_nodeclass, FaultProxy, Provisioner,
};
use spotwright_e2e::harness::webhook::{counter_in, opted_in_namespace, Webhook};
use spotwright_e2e::harness::{env, unique_suffix, Env};
use spotwright_provisioner::act::aws::catalog::fetch_instance_types;
use spotwright_solver::model::InstanceType;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const MOTO: &str = "http://127.0.0.1:15000";
const MIN_TYPES: usize = 5;
const CPU_LIMIT: u64 = 200;

/// A NodeClass on the test network and a Spot-only NodePool that removes
/// empty nodes at once, with `minValues` on instance types and a CPU limit.
async fn pool(env: &Env, client: &Client, id: &str) -> String {
    pool_with(env, client, id, "0s").await
}

/// The same, removing empty nodes after `consolidate_after`.
async fn pool_with(env: &Env, client: &Client, id: &str, consolidate_after: &str) -> String {
    ensure_network(&kubernetes_minor(env)).await;
    let name = format!("e2e-prov-{id}");
    let class = local_nodeclass(&name, json!({"alias": "eks@latest"}));
    let nodepool = json!({
        "apiVersion": "spotwright.io/v1alpha1", "kind": "NodePool", "metadata": {"name": name},
        "spec": {
            "template": {"spec": {
                "nodeClassRef": {"name": name},
                "requirements": [
                    {"key": "spotwright.io/capacity-type", "operator": "In", "values": ["spot"]},
                    {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                    {"key": "spotwright.io/instance-category", "operator": "In", "values": ["c", "m", "r"]},
                    {"key": "node.kubernetes.io/instance-type", "operator": "Exists", "minValues": MIN_TYPES}
                ]
            }},
            "disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": consolidate_after},
            "limits": {"cpu": CPU_LIMIT.to_string()}
        }
    });
    for object in [class, nodepool] {
        env.apply(&object);
    }
    let namespace = format!("prov-{id}");
    opted_in_namespace(env, client, &namespace, &name).await;
    name
}

/// A NodeClass on the test network and a NodePool of `template_spec`
/// (its class filled in) and `spec` (merged in; empty nodes go at once),
/// with namespace `prov-<id>` opted in to it.
async fn pool_from(
    env: &Env,
    client: &Client,
    id: &str,
    mut template_spec: serde_json::Value,
    spec: serde_json::Value,
) -> String {
    ensure_network(&kubernetes_minor(env)).await;
    let name = format!("e2e-prov-{id}");
    template_spec["nodeClassRef"] = json!({"name": name});
    let mut nodepool = json!({
        "apiVersion": "spotwright.io/v1alpha1", "kind": "NodePool", "metadata": {"name": name},
        "spec": {
            "template": {"spec": template_spec},
            "disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "0s"}
        }
    });
    for (key, value) in spec.as_object().into_iter().flatten() {
        nodepool["spec"][key] = value.clone();
    }
    env.apply(&local_nodeclass(&name, json!({"alias": "eks@latest"})));
    env.apply(&nodepool);
    opted_in_namespace(env, client, &format!("prov-{id}"), &name).await;
    name
}

fn kubernetes_minor(env: &Env) -> String {
    let out = env.kubectl(&["version", "-o", "json"]);
    let version: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let server = &version["serverVersion"];
    format!(
        "{}.{}",
        server["major"].as_str().unwrap_or("1"),
        server["minor"]
            .as_str()
            .unwrap_or("36")
            .trim_end_matches('+')
    )
}

/// Deployments of `replicas` pods each, one per size.
fn deploy(env: &Env, namespace: &str, sizes: &[(&str, &str, &str)], replicas: u32) {
    for (name, cpu, memory) in sizes {
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{
                    "name": "app", "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}}}
        });
        env.apply(&deployment);
    }
}

fn scale(env: &Env, namespace: &str, sizes: &[(&str, &str, &str)], replicas: u32) {
    for (name, _, _) in sizes {
        env.kubectl_ok(&[
            "scale",
            "-n",
            namespace,
            &format!("deployment/{name}"),
            &format!("--replicas={replicas}"),
        ]);
    }
}

async fn pool_nodes(client: &Client, pool: &str) -> Vec<Node> {
    Api::<Node>::all(client.clone())
        .list(&ListParams::default().labels(&format!("spotwright.io/nodepool={pool}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

async fn pool_claims(client: &Client, pool: &str) -> Vec<NodeClaim> {
    Api::<NodeClaim>::all(client.clone())
        .list(&ListParams::default().labels(&format!("spotwright.io/nodepool={pool}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// Running (or pending) instances launched for `pool`, by instance id, with their NodeClaim tag.
async fn pool_instances(pool: &str) -> BTreeMap<String, String> {
    let ec2 = ec2().await;
    let out = ec2
        .describe_instances()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:spotwright.io/nodepool")
                .values(pool)
                .build(),
        )
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .build(),
        )
        .send()
        .await
        .expect("DescribeInstances");
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| {
            let claim = i
                .tags()
                .iter()
                .find(|t| t.key() == Some("spotwright.io/nodeclaim"))?
                .value()?
                .to_owned();
            Some((i.instance_id()?.to_owned(), claim))
        })
        .collect()
}

async fn running_pods(client: &Client, namespace: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .collect()
}

fn cpu_millis(node: &Node) -> u64 {
    node.status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("cpu"))
        .and_then(|q| spotwright_api::quantity::milli_value(&q.0).ok())
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(0)
}

/// Every pool node is a Spot node the node agent registered for a moto instance.
fn assert_spot_agent_node(node: &Node) {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("spotwright.io/capacity-type")
            .map(String::as_str),
        Some("spot"),
        "{labels:?}"
    );
    assert_eq!(
        labels
            .get("e2e.spotwright.io/node-agent")
            .map(String::as_str),
        Some("true"),
        "{labels:?}"
    );
    let provider = node
        .spec
        .as_ref()
        .and_then(|s| s.provider_id.as_deref())
        .unwrap_or_default();
    assert!(provider.starts_with("aws:///us-east-1"), "{provider}");
}

/// The node carries every label the solver matched pods against, with the
/// value it assumed: the catalog's labels for its instance type (the
/// `spotwright.io/instance-*` family, os, arch, type), and the zone's id.
fn assert_promised_labels(node: &Node, catalog: &[InstanceType]) {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let type_name = labels
        .get("node.kubernetes.io/instance-type")
        .cloned()
        .unwrap_or_default();
    let promised = catalog
        .iter()
        .find(|t| t.name == type_name)
        .unwrap_or_else(|| panic!("{type_name:?} is not in the catalog: {labels:?}"));
    for key in [
        "spotwright.io/instance-category",
        "spotwright.io/instance-family",
        "spotwright.io/instance-size",
        "spotwright.io/instance-cpu",
        "spotwright.io/instance-memory",
        "spotwright.io/instance-generation",
        "spotwright.io/instance-network-bandwidth",
        "kubernetes.io/os",
    ] {
        assert!(
            promised.labels.contains_key(key),
            "the catalog promises {key} for {type_name}"
        );
    }
    for (key, value) in &promised.labels {
        assert_eq!(
            labels.get(key),
            Some(value),
            "{key} on {type_name}'s node: {labels:?}"
        );
    }
    let zone_id = labels
        .get("topology.k8s.aws/zone-id")
        .cloned()
        .unwrap_or_default();
    assert!(
        zone_id.starts_with("use1-az"),
        "zone id {zone_id:?}: {labels:?}"
    );
}

async fn cleanup(env: &Env, client: &Client, pool: &str, namespace: &str) {
    env.kubectl(&["delete", "namespace", namespace, "--wait=false"]);
    eventually(
        &format!("{pool}'s nodes and claims to go"),
        Duration::from_secs(120),
        || async {
            pool_claims(client, pool).await.is_empty() && pool_instances(pool).await.is_empty()
        },
    )
    .await;
    env.kubectl(&["delete", "nodepool", pool, "--wait=false"]);
    env.kubectl(&["delete", "nodeclass", pool, "--wait=false"]);
}

#[tokio::test]
async fn forty_mixed_pods_land_on_diverse_spot_nodes_and_the_nodes_go_with_them() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    let _webhook = Webhook::start(env, "provisioner-forty").await;
    let id = unique_suffix();
    let pool = pool(env, &client, &id).await;
    let namespace = format!("prov-{id}");
    let provisioner = Provisioner::start(env, "forty", MOTO, &[]).await;
    let sizes = [
        ("small", "250m", "512Mi"),
        ("medium", "500m", "1Gi"),
        ("large", "1", "2Gi"),
        ("xlarge", "2", "4Gi"),
    ];
    deploy(env, &namespace, &sizes, 10);

    let mut peak_cpu = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let cpu: u64 = pool_nodes(&client, &pool)
            .await
            .iter()
            .map(cpu_millis)
            .sum();
        peak_cpu = peak_cpu.max(cpu);
        let running = running_pods(&client, &namespace).await.len();
        if running == 40 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {running}/40 pods Running after 180s; see {}/e2e/forty-provisioner.log",
            env.state.display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        peak_cpu <= CPU_LIMIT * 1000,
        "the NodePool's cpu limit was exceeded: {peak_cpu}m"
    );

    let catalog = fetch_instance_types(&ec2().await, &HashMap::new(), DEFAULT_ROOT_VOLUME_GIB)
        .await
        .expect("the catalog as the provisioner reads it");
    for pod in running_pods(&client, &namespace).await {
        let node_name = pod.spec.and_then(|s| s.node_name).unwrap_or_default();
        let node = Api::<Node>::all(client.clone())
            .get(&node_name)
            .await
            .expect("pod's node");
        assert_spot_agent_node(&node);
        assert_promised_labels(&node, &catalog);
        assert_eq!(
            node.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("spotwright.io/nodepool")),
            Some(&pool)
        );
    }
    // The NodePool's status reports its nodes, and that it can launch.
    let pools: Api<spotwright_api::NodePool> = Api::all(client.clone());
    eventually(
        "the NodePool's status to count its nodes",
        Duration::from_secs(30),
        || async {
            pools
                .get(&pool)
                .await
                .ok()
                .and_then(|p| p.status)
                .is_some_and(|s| {
                    s.nodes.unwrap_or(0) >= 1
                        && s.conditions
                            .iter()
                            .any(|c| c.type_ == "Ready" && c.status == "True")
                })
        },
    )
    .await;
    // Each CreateFleet named at least minValues instance types.
    let fleets = ec2()
        .await
        .describe_fleets()
        .send()
        .await
        .expect("DescribeFleets");
    let mut ours = 0;
    for fleet in fleets.fleets() {
        let claim_tag = fleet
            .tags()
            .iter()
            .any(|t| t.key() == Some("spotwright.io/nodepool") && t.value() == Some(pool.as_str()));
        if !claim_tag {
            continue;
        }
        ours += 1;
        let types: BTreeSet<String> = fleet
            .launch_template_configs()
            .iter()
            .flat_map(|c| c.overrides())
            .filter_map(|o| o.instance_type().map(|t| t.as_str().to_owned()))
            .collect();
        assert!(types.len() >= MIN_TYPES, "a fleet named only {types:?}");
    }
    assert!(
        ours >= 1,
        "no CreateFleet request tagged for {pool} in DescribeFleets"
    );
    let metrics = provisioner.metrics().await;
    assert!(
        metrics.contains("spotwright_provisioner_nodeclaims_created_total{capacity_type=\"spot\""),
        "{metrics}"
    );

    // Scaling to 0 removes every node the pods caused.
    scale(env, &namespace, &sizes, 0);
    eventually(
        "every node of the pool to go",
        Duration::from_secs(120),
        || async {
            pool_nodes(&client, &pool).await.is_empty()
                && pool_claims(&client, &pool).await.is_empty()
                && pool_instances(&pool).await.is_empty()
        },
    )
    .await;
    let metrics = provisioner.metrics().await;
    let terminated = counter_in(
        &metrics,
        "spotwright_provisioner_nodes_terminated_total{reason=\"nodeclaim_deleted\"}",
    );
    assert!(terminated >= 1.0, "terminations are counted: {terminated}");
    cleanup(env, &client, &pool, &namespace).await;
}

/// Instances, NodeClaims and Nodes of `pool` agree one to one.
async fn one_to_one(client: &Client, pool: &str) -> Result<usize, String> {
    let instances = pool_instances(pool).await;
    let claims: BTreeSet<String> = pool_claims(client, pool)
        .await
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    let tagged: Vec<&String> = instances.values().collect();
    let distinct: BTreeSet<&String> = tagged.iter().copied().collect();
    if distinct.len() != tagged.len() {
        return Err(format!("two instances for one NodeClaim: {instances:?}"));
    }
    let tagged: BTreeSet<String> = distinct.into_iter().cloned().collect();
    if tagged != claims {
        return Err(format!("instances {tagged:?} vs NodeClaims {claims:?}"));
    }
    let nodes = pool_nodes(client, pool).await;
    let providers: BTreeSet<String> = nodes
        .iter()
        .filter_map(|n| n.spec.as_ref()?.provider_id.clone())
        .collect();
    if providers.len() != nodes.len() || nodes.len() != instances.len() {
        return Err(format!(
            "{} nodes ({} distinct providerIDs) for {} instances",
            nodes.len(),
            providers.len(),
            instances.len()
        ));
    }
    Ok(instances.len())
}

fn random_below(bound: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    u64::from(nanos.wrapping_mul(2_654_435_761)) % bound.max(1)
}

#[tokio::test]
async fn kill_9_during_launches_leaks_no_instance_and_duplicates_no_node() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    let _webhook = Webhook::start(env, "provisioner-crash").await;
    let id = unique_suffix();
    let pool = pool(env, &client, &id).await;
    let namespace = format!("prov-{id}");
    const TRIALS: usize = 20;
    let mut kill_points = Vec::new();
    for trial in 0..TRIALS {
        let mut provisioner = Provisioner::start(env, &format!("crash-{trial}"), MOTO, &[]).await;
        // One pod per node (hostname anti-affinity), so every trial launches.
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("crash-{trial}"), "namespace": namespace, "labels": {"app": "crash"}},
            "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "crash"}}}]}}}
        });
        env.kubectl_with_input(&["apply", "-f", "-"], Some(&pod.to_string()));
        // The batch closes after 1 s; the launch follows within about a second.
        let wait = 800 + random_below(1500);
        kill_points.push(wait);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        provisioner.kill9();
        let _restarted =
            Provisioner::start(env, &format!("crash-{trial}-restarted"), MOTO, &[]).await;
        let want = trial + 1;
        eventually(
            &format!("trial {trial}: {want} pods Running"),
            Duration::from_secs(120),
            || async { running_pods(&client, &namespace).await.len() == want },
        )
        .await;
        let mut last = Err(String::new());
        for _ in 0..60 {
            last = one_to_one(&client, &pool).await;
            if last.as_ref().is_ok_and(|n| *n == want) {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert_eq!(
            last,
            Ok(want),
            "trial {trial} (killed {wait} ms after the pod): instances, claims and nodes disagree"
        );
    }
    eprintln!("kill points (ms after pod creation): {kill_points:?}");
    let _provisioner = Provisioner::start(env, "crash-cleanup", MOTO, &[]).await;
    cleanup(env, &client, &pool, &namespace).await;
}

/// The `n` cheapest amd64 `.large` types of categories c, m and r by the
/// Spot price model the provisioner uses against moto: where a one-core
/// pod's node goes first.
fn cheapest_large_types(n: usize) -> Vec<String> {
    use spotwright_api::keys::CapacityType;
    use spotwright_api::prices::{InstanceTypeName, PriceCatalog};
    let catalog = PriceCatalog::embedded().expect("price snapshot");
    let mut priced: Vec<(f64, String)> = catalog
        .on_demand_prices()
        .filter(|(name, _)| {
            let parsed = InstanceTypeName::parse(name);
            let graviton = parsed.family[parsed.category.len()..].contains('g');
            parsed.size == "large" && ["c", "m", "r"].contains(&parsed.category) && !graviton
        })
        .filter_map(|(name, _)| Some((catalog.price(name, CapacityType::Spot)?, name.to_owned())))
        .collect();
    priced.sort_by(|a, b| a.0.total_cmp(&b.0));
    priced.into_iter().take(n).map(|(_, name)| name).collect()
}

#[tokio::test]
async fn capacity_errors_on_the_cheapest_types_still_place_every_pod() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    let _webhook = Webhook::start(env, "provisioner-ice").await;
    let id = unique_suffix();
    let pool = pool(env, &client, &id).await;
    let namespace = format!("prov-{id}");
    let faulted = cheapest_large_types(20);
    let proxy = FaultProxy::start(env, &faulted).await;
    let _provisioner = Provisioner::start(env, "ice", &FaultProxy::url(), &[]).await;
    // Four one-core pods, one per node: four launches that each start with the faulted types.
    for i in 0..4 {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("ice-{i}"), "namespace": namespace, "labels": {"app": "ice"}},
            "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "ice"}}}]}}}
        });
        env.kubectl_with_input(&["apply", "-f", "-"], Some(&pod.to_string()));
    }
    eventually(
        "all 4 pods Running despite capacity errors",
        Duration::from_secs(180),
        || async { running_pods(&client, &namespace).await.len() == 4 },
    )
    .await;
    let (calls, faults) = proxy.calls().await;
    assert!(faults >= 1, "the cheapest types were never asked for ({calls} CreateFleet calls): the test proves nothing");
    for claim in pool_claims(&client, &pool).await {
        let launched = claim
            .status
            .and_then(|s| s.instance_type)
            .unwrap_or_default();
        assert!(
            !faulted.contains(&launched),
            "launched {launched}, which had no capacity"
        );
    }
    eprintln!("CreateFleet calls {calls}, overrides faulted {faults}; faulted types {faulted:?}");
    cleanup(env, &client, &pool, &namespace).await;
}

/// A bare pod in `namespace` asking for 500m, required onto nodes matching `terms`.
fn selective_pod(env: &Env, namespace: &str, name: &str, terms: serde_json::Value) {
    env.apply(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": terms}]}}},
            "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}}}]}
    }));
}

/// What a failed wait needs to be understood from CI's output alone: the
/// pool's claims, the namespace's pods and events, the nodes, and the tail
/// of the provisioner's log.
fn state_dump(env: &Env, pool: &str, namespace: &str, provisioner: &str) -> String {
    let show = |args: &[&str]| {
        let out = env.kubectl(args);
        format!(
            "$ kubectl {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let selector = format!("spotwright.io/nodepool={pool}");
    let log = env
        .state
        .join("e2e")
        .join(format!("{provisioner}-provisioner.log"));
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let tail = strip_ansi(&lines[lines.len().saturating_sub(60)..].join("\n"));
    [
        show(&["get", "nodeclaims", "-l", &selector, "-o", "yaml"]),
        show(&["get", "pods", "-n", namespace, "-o", "yaml"]),
        show(&["get", "events", "-n", namespace]),
        show(&["get", "nodes", "--show-labels"]),
        format!("provisioner log (tail):\n{tail}"),
    ]
    .join("\n")
}

/// Waits for the one pod of `namespace` to run, and gives its node's zone.
async fn zone_of_the_running_pod(client: &Client, namespace: &str) -> String {
    eventually("the pod to run", Duration::from_secs(150), || async {
        running_pods(client, namespace).await.len() == 1
    })
    .await;
    let pod = running_pods(client, namespace).await.remove(0);
    let node_name = pod.spec.and_then(|s| s.node_name).unwrap_or_default();
    let node = Api::<Node>::all(client.clone())
        .get(&node_name)
        .await
        .expect("the pod's node");
    let labels = node.metadata.labels.unwrap_or_default();
    labels
        .get("topology.kubernetes.io/zone")
        .cloned()
        .unwrap_or_default()
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An escape runs to its final letter ("\u{1b}[2m").
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn pod_events(env: &Env, namespace: &str, pod: &str) -> String {
    let out = env.kubectl(&[
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        &format!("involvedObject.name={pod}"),
        "-o",
        "custom-columns=REASON:.reason,MESSAGE:.message",
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_pod_selecting_every_promised_label_runs_on_the_first_node_launched_for_it() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    let _webhook = Webhook::start(env, "provisioner-labels").await;
    let id = unique_suffix();
    let pool = pool(env, &client, &id).await;
    let namespace = format!("prov-{id}");
    let _provisioner = Provisioner::start(env, "labels", MOTO, &[]).await;
    let gt = |key: &str, value: &str| json!({"key": key, "operator": "Gt", "values": [value]});
    let exists = |key: &str| json!({"key": key, "operator": "Exists"});
    selective_pod(
        env,
        &namespace,
        "picky",
        json!([
            gt("spotwright.io/instance-cpu", "3"),
            gt("spotwright.io/instance-memory", "4096"),
            gt("spotwright.io/instance-generation", "4"),
            {"key": "spotwright.io/instance-category", "operator": "In", "values": ["c", "m"]},
            exists("spotwright.io/instance-family"),
            exists("spotwright.io/instance-size"),
            exists("spotwright.io/instance-network-bandwidth"),
            {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
            exists("topology.kubernetes.io/zone"),
        ]),
    );
    eventually("the picky pod to run", Duration::from_secs(150), || async {
        running_pods(&client, &namespace).await.len() == 1
    })
    .await;
    let claims = pool_claims(&client, &pool).await;
    assert_eq!(
        claims.len(),
        1,
        "one NodeClaim, no loop: {:?}",
        claims
            .iter()
            .map(|c| c.metadata.name.clone())
            .collect::<Vec<_>>()
    );
    let pod = running_pods(&client, &namespace).await.remove(0);
    let node = pod.spec.and_then(|s| s.node_name).unwrap_or_default();
    let claim_node = claims[0]
        .status
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    assert_eq!(node, claim_node, "the pod runs on the node launched for it");
    cleanup(env, &client, &pool, &namespace).await;
}

#[tokio::test]
async fn a_pod_the_scheduler_refuses_on_its_node_gets_one_launch_and_a_mismatch_event() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    let _webhook = Webhook::start(env, "provisioner-mismatch").await;
    let id = unique_suffix();
    // Empty nodes stay a while, so the scheduler gets to refuse the node.
    let pool = pool_with(env, &client, &id, "10m").await;
    let namespace = format!("prov-{id}");
    let mut provisioner = Provisioner::start(env, "mismatch", MOTO, &[]).await;
    // The solver's catalog has no zone-id label, so it believes any node
    // fits; the node carries one, so the scheduler refuses it.
    selective_pod(
        env,
        &namespace,
        "refused",
        json!([
        {"key": "topology.k8s.aws/zone-id", "operator": "DoesNotExist"}]),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    while !pod_events(env, &namespace, "refused").contains("NominationMismatch") {
        if tokio::time::Instant::now() > deadline || !provisioner.process.is_running() {
            panic!(
                "no mismatch Event on the pod after 180s (or the provisioner exited)\n{}",
                state_dump(env, &pool, &namespace, "mismatch")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let metrics = provisioner.metrics().await;
    let mismatches = counter_in(
        &metrics,
        "spotwright_provisioner_nomination_mismatches_total{reason=\"node_affinity\"}",
    );
    assert!(mismatches >= 1.0, "{metrics}");
    // Long past the first retries (at once, then 15 s): still the one launch.
    tokio::time::sleep(Duration::from_secs(45)).await;
    let claims = pool_claims(&client, &pool).await;
    assert_eq!(
        claims.len(),
        1,
        "one launch for the refused pod: {:?}",
        claims
            .iter()
            .map(|c| c.metadata.name.clone())
            .collect::<Vec<_>>()
    );
    assert!(running_pods(&client, &namespace).await.is_empty());
    env.kubectl(&["delete", "pod", "-n", &namespace, "refused", "--wait=false"]);
    env.kubectl(&[
        "patch",
        "nodepool",
        &pool,
        "--type=merge",
        "-p",
        r#"{"spec":{"disruption":{"consolidateAfter":"0s"}}}"#,
    ]);
    cleanup(env, &client, &pool, &namespace).await;
}

#[tokio::test]
async fn best_effort_launches_with_fewer_types_than_min_values_and_says_so() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    let _webhook = Webhook::start(env, "provisioner-best-effort").await;
    let id = unique_suffix();
    let namespace = format!("prov-{id}");
    // Three types, five asked: Strict would launch nothing.
    let types = ["c5.large", "c5.xlarge", "m5.large"];
    let pool = pool_from(
        env,
        &client,
        &id,
        json!({
            "minValuesPolicy": "BestEffort",
            "requirements": [
                {"key": "spotwright.io/capacity-type", "operator": "In", "values": ["spot"]},
                {"key": "node.kubernetes.io/instance-type", "operator": "In",
                    "values": types, "minValues": 5}
            ]
        }),
        json!({}),
    )
    .await;
    let _provisioner = Provisioner::start(env, "best-effort", MOTO, &[]).await;
    selective_pod(
        env,
        &namespace,
        "relaxed",
        json!([{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]),
    );
    eventually("the pod to run", Duration::from_secs(150), || async {
        running_pods(&client, &namespace).await.len() == 1
    })
    .await;
    let claims = pool_claims(&client, &pool).await;
    assert_eq!(claims.len(), 1, "one launch");
    let claim = &claims[0];
    let annotations = claim.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations
            .get("spotwright.io/min-values-relaxed")
            .map(String::as_str),
        Some("node.kubernetes.io/instance-type=3/5"),
        "{annotations:?}"
    );
    let kept: Vec<i32> = claim
        .spec
        .requirements
        .iter()
        .filter(|r| r.key == "node.kubernetes.io/instance-type")
        .filter_map(|r| r.min_values)
        .collect();
    assert!(
        !kept.is_empty() && kept.iter().all(|m| *m == 3),
        "the claim asks for the 3 it keeps: {kept:?}"
    );
    let claim_name = claim.metadata.name.clone().unwrap_or_default();
    let out = env.kubectl(&[
        "get",
        "events",
        "-A",
        "--field-selector",
        &format!("involvedObject.name={claim_name}"),
        "-o",
        "custom-columns=REASON:.reason,MESSAGE:.message",
    ]);
    let events = String::from_utf8_lossy(&out.stdout);
    assert!(
        events.contains("MinValuesRelaxed") && events.contains("=3/5"),
        "{events}"
    );
    cleanup(env, &client, &pool, &namespace).await;
}

#[tokio::test]
async fn the_heaviest_preference_that_can_be_met_picks_the_zone_of_the_node() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    let _webhook = Webhook::start(env, "provisioner-preferences").await;
    let id = unique_suffix();
    let pool = pool(env, &client, &id).await;
    let namespace = format!("prov-{id}");
    let _provisioner = Provisioner::start(env, "preferences", MOTO, &[]).await;
    let zone = |zone: &str| json!({"key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone]});
    env.apply(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "choosy", "namespace": namespace},
        "spec": {
            "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [zone("us-east-1a")]}},
                // The heaviest: no such zone, so it is dropped first.
                {"weight": 100, "preference": {"matchExpressions": [zone("us-east-1z")]}},
                {"weight": 50, "preference": {"matchExpressions": [zone("us-east-1c")]}}
            ]}},
            "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}}}]}
    }));
    assert_eq!(
        zone_of_the_running_pod(&client, &namespace).await,
        "us-east-1c",
        "weight 50 is the heaviest preference a node can meet"
    );
    assert_eq!(pool_claims(&client, &pool).await.len(), 1);
    cleanup(env, &client, &pool, &namespace).await;
}

#[tokio::test]
async fn followers_join_their_target_and_zone_anti_affine_replicas_split() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    let _webhook = Webhook::start(env, "provisioner-affinity").await;
    let id = unique_suffix();
    let pool = pool(env, &client, &id).await;
    let namespace = format!("prov-{id}");
    let _provisioner = Provisioner::start(env, "affinity", MOTO, &[]).await;
    let pod = |name: &str, app: &str, affinity: serde_json::Value| {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": app}},
            "spec": {"affinity": affinity,
                "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}}]}
        })
    };
    let term = |key: &str, app: &str| {
        json!({"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": key, "labelSelector": {"matchLabels": {"app": app}}}]})
    };
    // Followers first: the solver still places the target before them.
    for name in ["follower-0", "follower-1"] {
        env.apply(&pod(
            name,
            "follower",
            json!({"podAffinity": term("kubernetes.io/hostname", "cache")}),
        ));
    }
    env.apply(&pod("cache", "cache", json!({})));
    for name in ["replica-0", "replica-1"] {
        env.apply(&pod(
            name,
            "replica",
            json!({"podAntiAffinity": term("topology.kubernetes.io/zone", "replica")}),
        ));
    }
    eventually("all five pods to run", Duration::from_secs(180), || async {
        running_pods(&client, &namespace).await.len() == 5
    })
    .await;
    let pods = running_pods(&client, &namespace).await;
    let node_of = |name: &str| {
        pods.iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .and_then(|p| p.spec.as_ref()?.node_name.clone())
            .unwrap_or_default()
    };
    assert_eq!(node_of("follower-0"), node_of("cache"));
    assert_eq!(node_of("follower-1"), node_of("cache"));
    let nodes = Api::<Node>::all(client.clone());
    let mut zones = Vec::new();
    for replica in ["replica-0", "replica-1"] {
        let node = nodes
            .get(&node_of(replica))
            .await
            .expect("the replica's node");
        let labels = node.metadata.labels.unwrap_or_default();
        zones.push(
            labels
                .get("topology.kubernetes.io/zone")
                .cloned()
                .unwrap_or_default(),
        );
    }
    assert_ne!(zones[0], zones[1], "one replica per zone: {zones:?}");
    let claims = pool_claims(&client, &pool).await;
    assert!(
        claims.len() <= 3,
        "no node launched that no pod could use: {} claims",
        claims.len()
    );
    cleanup(env, &client, &pool, &namespace).await;
}

#[tokio::test]
async fn a_pod_bound_to_a_zonal_volume_gets_a_node_in_that_zone() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    let _webhook = Webhook::start(env, "provisioner-volume").await;
    let id = unique_suffix();
    let pool = pool(env, &client, &id).await;
    let namespace = format!("prov-{id}");
    let volume = format!("e2e-pv-{id}");
    let class = format!("e2e-manual-{id}");
    env.apply(&json!({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": volume},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "storageClassName": class, "hostPath": {"path": "/tmp/e2e"},
            "persistentVolumeReclaimPolicy": "Retain",
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1c"]}]}]}}}
    }));
    env.apply(&json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": namespace},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class, "volumeName": volume,
            "resources": {"requests": {"storage": "1Gi"}}}
    }));
    let _provisioner = Provisioner::start(env, "volume", MOTO, &[]).await;
    env.apply(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "stateful", "namespace": namespace},
        "spec": {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
            "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}}}]}
    }));
    assert_eq!(
        zone_of_the_running_pod(&client, &namespace).await,
        "us-east-1c",
        "the volume's zone"
    );
    assert_eq!(pool_claims(&client, &pool).await.len(), 1, "one launch");
    cleanup(env, &client, &pool, &namespace).await;
    env.kubectl(&["delete", "pv", &volume, "--wait=false"]);
}

#[tokio::test]
async fn a_nodes_limit_caps_launches_and_gte_picks_the_types() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    let _webhook = Webhook::start(env, "provisioner-limits").await;
    let id = unique_suffix();
    let namespace = format!("prov-{id}");
    let pool = pool_from(
        env,
        &client,
        &id,
        json!({"requirements": [
            {"key": "spotwright.io/capacity-type", "operator": "In", "values": ["spot"]},
            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
            {"key": "spotwright.io/instance-cpu", "operator": "Gte", "values": ["4"]}
        ]}),
        json!({"limits": {"nodes": 1}}),
    )
    .await;
    let provisioner = Provisioner::start(env, "limits", MOTO, &[]).await;
    // One pod per node: the second needs a node the limit does not allow.
    for i in 0..2 {
        env.apply(&json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("capped-{i}"), "namespace": namespace, "labels": {"app": "capped"}},
            "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "capped"}}}]}}}
        }));
    }
    eventually("one pod to run", Duration::from_secs(150), || async {
        running_pods(&client, &namespace).await.len() == 1
    })
    .await;
    eventually(
        "the other pod told which limit blocks it",
        Duration::from_secs(60),
        || async {
            (0..2).any(|i| {
                pod_events(env, &namespace, &format!("capped-{i}")).contains("nodes limit")
            })
        },
    )
    .await;
    let claims = pool_claims(&client, &pool).await;
    assert_eq!(claims.len(), 1, "the nodes limit holds");
    let cpus: u64 = claims[0]
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("spotwright.io/instance-cpu"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(cpus >= 4, "Gte 4 picked a type with {cpus} vCPU");
    let metrics = provisioner.metrics().await;
    assert!(
        counter_in(
            &metrics,
            "spotwright_provisioner_unschedulable_pods_total{reason=\"no_fit\"}"
        ) >= 1.0,
        "{metrics}"
    );
    cleanup(env, &client, &pool, &namespace).await;
}
