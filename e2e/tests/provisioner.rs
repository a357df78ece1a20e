//! The provisioner on the real control plane and moto: pending pods become
//! Spot nodes (through CreateFleet, registered by the node agent), the
//! nodes go when the pods go, a kill -9 mid-launch leaks nothing, and a
//! capacity error on the cheapest types still places every pod.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::json;
use spotwright_api::eks::DEFAULT_ROOT_VOLUME_GIB;
use spotwright_api::reservation::{self, Reservation};
use spotwright_e2e::harness::process::eventually;
use spotwright_e2e::harness::provisioner::{ec2, FaultProxy, Provisioner};
use spotwright_e2e::harness::webhook::{counter_in, Webhook};
use spotwright_e2e::harness::{env, unique_suffix, Env};
use spotwright_provisioner::act::aws::catalog::{fetch_instance_types, SpotPrices};
use spotwright_solver::model::InstanceType;

mod pools;

use pools::*;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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

/// Each claim's `spotwright.io/reserved-for` names, beside each pod it was
/// launched for, that pod's ReplicaSet: the group whose replicas the
/// extender lets take each other's room.
async fn assert_reservations_name_each_pod_s_replica_set(
    client: &Client,
    pool: &str,
    namespace: &str,
) {
    let controllers: HashMap<String, String> = running_pods(client, namespace)
        .await
        .iter()
        .filter_map(|pod| {
            let owner = pod
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true) && o.kind == "ReplicaSet")?;
            Some((pod.metadata.uid.clone()?, owner.uid.clone()))
        })
        .collect();
    let mut checked = 0;
    for claim in pool_claims(client, pool).await {
        let Some(value) = claim
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(reservation::ANNOTATION))
        else {
            continue;
        };
        let written = Reservation::parse(value).expect("a reservation");
        assert_eq!(written.groups.len(), written.pods.len(), "{written:?}");
        for (uid, group) in written.pods.iter().zip(&written.groups) {
            if let Some(replica_set) = controllers.get(uid) {
                assert_eq!(group, replica_set, "pod {uid} in {value}");
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "no reservation named a running pod");
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
    assert_reservations_name_each_pod_s_replica_set(&client, &pool, &namespace).await;

    let catalog = fetch_instance_types(
        &ec2().await,
        &HashMap::new(),
        SpotPrices::History,
        DEFAULT_ROOT_VOLUME_GIB,
    )
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
    // The fleet gauge counts the launched Spot claims at a later pass.
    eventually(
        "spotwright_provisioner_nodeclaims{capacity_type=\"spot\"} to count the pool's claims",
        Duration::from_secs(30),
        || async {
            let metrics = provisioner.metrics().await;
            let spot = counter_in(
                &metrics,
                "spotwright_provisioner_nodeclaims{capacity_type=\"spot\"}",
            );
            let launched = pool_claims(&client, &pool).await.len();
            launched >= 1 && spot >= launched as f64
        },
    )
    .await;

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
    // Each trial kills the provisioner the previous one restarted: one
    // start per trial (each reads moto's whole catalog: about a second, from
    // the answers e2e/plane/moto/server.py keeps).
    let mut provisioner = Provisioner::start(env, "crash-first", MOTO, &[]).await;
    for trial in 0..TRIALS {
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
        provisioner = Provisioner::start(env, &format!("crash-{trial}-restarted"), MOTO, &[]).await;
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
    cleanup(env, &client, &pool, &namespace).await;
    drop(provisioner);
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

#[tokio::test]
async fn deleting_a_nodepool_drains_its_nodes_one_at_a_time_and_leaves_nothing() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    let Scenario {
        webhook: _webhook,
        pool,
        namespace,
    } = scenario(
        env,
        &client,
        "provisioner-pool-deletion",
        spot_amd64(json!([])),
        when_empty("0s", "1"),
    )
    .await;
    let _provisioner = Provisioner::start(env, "pool-deletion", MOTO, &[]).await;
    env.apply(&json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "spread", "namespace": namespace},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "spread"}},
            "template": {"metadata": {"labels": {"app": "spread"}}, "spec": {
                "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "spread"}}}]}}}}}
    }));
    eventually(
        "three pods on three nodes",
        Duration::from_secs(180),
        || async { running_pods(&client, &namespace).await.len() == 3 },
    )
    .await;
    let pools: Api<spotwright_api::NodePool> = Api::all(client.clone());
    let live = pools.get(&pool).await.expect("the pool");
    assert!(
        live.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == "spotwright.io/termination"),
        "the pool carries the finalizer"
    );
    let claims = pool_claims(&client, &pool).await;
    assert_eq!(claims.len(), 3);
    for claim in &claims {
        let owners = claim.metadata.owner_references.clone().unwrap_or_default();
        assert!(
            owners.iter().any(|o| o.kind == "NodePool"
                && o.name == pool
                && Some(&o.uid) == live.metadata.uid.as_ref()),
            "{owners:?}"
        );
    }

    env.kubectl_ok(&["delete", "nodepool", &pool, "--wait=false"]);
    let mut most_deleting_at_once = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    loop {
        let claims = pool_claims(&client, &pool).await;
        let deleting = claims
            .iter()
            .filter(|c| c.metadata.deletion_timestamp.is_some())
            .count();
        most_deleting_at_once = most_deleting_at_once.max(deleting);
        if claims.is_empty() {
            break;
        }
        assert!(
            matches!(pools.get_opt(&pool).await, Ok(Some(_))),
            "the pool went before its {} claims",
            claims.len()
        );
        assert!(
            std::time::Instant::now() < deadline,
            "claims left: {}",
            claims.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(most_deleting_at_once, 1, "the budget of one node held");
    eventually(
        "the pool and its instances to go",
        Duration::from_secs(60),
        || async {
            matches!(pools.get_opt(&pool).await, Ok(None)) && pool_instances(&pool).await.is_empty()
        },
    )
    .await;
    assert!(
        pool_nodes(&client, &pool).await.is_empty(),
        "no node of the pool is left"
    );
    spotwright_e2e::harness::expect_events(
        &client,
        &pool,
        &["NodePoolDeleting", "NodePoolDeleted"],
    )
    .await;
    env.kubectl(&["delete", "namespace", &namespace, "--wait=false"]);
    env.kubectl(&["delete", "nodeclass", &pool, "--wait=false"]);
}
