//! The extender behind the real `spotwright-scheduler`: where pods land.
//! The test's nodes carry an isolation taint that only its own NodePool
//! tolerates, so pods of other tests never change their fill.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use spotwright_api::NodeClaim;
use spotwright_e2e::harness::extender::{Extender, EXTENDER_METRICS_PORT};
use spotwright_e2e::harness::process::eventually;
use spotwright_e2e::harness::prometheus::Prometheus;
use spotwright_e2e::harness::webhook::{counter_in, opted_in_namespace, Webhook};
use spotwright_e2e::harness::{env, unique_suffix, Env};
use spotwright_e2e::node_agent::nodes::register;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Pool {
    name: String,
    namespace: String,
    nodes: [String; 3],
}

/// A NodePool with an isolation taint, an opted-in namespace for it, and
/// three Ready KWOK nodes: `a` half full, `b` three quarters full, `c` empty.
async fn pool(env: &Env, client: &Client) -> Pool {
    let id = unique_suffix();
    let name = format!("e2e-ext-{id}");
    let taint = json!({"key": "e2e.spotwright.io/isolated", "value": id, "effect": "NoSchedule"});
    let nodepool = json!({
        "apiVersion": "spotwright.io/v1alpha1", "kind": "NodePool", "metadata": {"name": name},
        "spec": {"template": {"spec": {"nodeClassRef": {"name": "default"}, "taints": [taint]}}}
    });
    env.apply(&nodepool);
    let namespace = format!("ext-{id}");
    opted_in_namespace(env, client, &namespace, &name).await;

    let nodes = ["a", "b", "c"].map(|n| format!("{name}-{n}"));
    let api: Api<Node> = Api::all(client.clone());
    for node in &nodes {
        let manifest: Node = serde_json::from_value(json!({
            "metadata": {
                "name": node,
                "annotations": {"kwok.x-k8s.io/node": "fake"},
                "labels": {
                    "kubernetes.io/hostname": node, "type": "kwok",
                    "spotwright.io/capacity-type": "spot", "spotwright.io/nodepool": name,
                    "node.kubernetes.io/instance-type": "m5.large", "topology.kubernetes.io/zone": "us-east-1a"
                }
            },
            "spec": {"taints": [taint, {"key": "spotwright.io/capacity-type", "value": "spot", "effect": "NoSchedule"}]},
            "status": {"allocatable": {"cpu": "2", "memory": "8Gi", "pods": "29"}, "capacity": {"cpu": "2", "memory": "8Gi", "pods": "29"}},
        }))
        .unwrap();
        register(&api, &manifest).await.expect("node registered");
    }
    eventually(
        "the pool's nodes to be Ready",
        Duration::from_secs(30),
        || async {
            let mut ready = 0;
            for node in &nodes {
                if api.get(node).await.is_ok_and(|n| is_ready(&n)) {
                    ready += 1;
                }
            }
            ready == nodes.len()
        },
    )
    .await;
    // Fill: bound directly, as a kubelet would run them.
    fill(client, &namespace, &nodes[0], "1000m", "4Gi").await;
    fill(client, &namespace, &nodes[1], "1500m", "6Gi").await;
    Pool {
        name,
        namespace,
        nodes,
    }
}

/// Ready, and the node lifecycle controller has lifted the `not-ready` taint
/// it puts on every new Node (it lags the condition).
fn is_ready(node: &Node) -> bool {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let lifecycle_taint = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| ts.iter().any(|t| t.key.starts_with("node.kubernetes.io/")));
    ready && !lifecycle_taint
}

async fn fill(client: &Client, namespace: &str, node: &str, cpu: &str, memory: &str) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": format!("fill-{node}")},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": cpu, "memory": memory}}}],
            "tolerations": [{"operator": "Exists"}]}
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &pod)
        .await
        .expect("filler pod");
}

/// Creates an opted-in pod and returns the node the scheduler bound it to.
async fn schedule(client: &Client, pool: &Pool, name: &str) -> String {
    let pods = Api::<Pod>::namespaced(client.clone(), &pool.namespace);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}}}]}
    }))
    .unwrap();
    let created = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect("pod created");
    let scheduler = created
        .spec
        .as_ref()
        .and_then(|s| s.scheduler_name.clone())
        .unwrap_or_default();
    assert_eq!(
        scheduler, "spotwright-scheduler",
        "the webhook handed the pod to the Spotwright scheduler"
    );
    eventually(
        &format!("{name} to be bound"),
        Duration::from_secs(30),
        || async {
            pods.get(name)
                .await
                .is_ok_and(|p| p.spec.and_then(|s| s.node_name).is_some())
        },
    )
    .await;
    pods.get(name)
        .await
        .ok()
        .and_then(|p| p.spec?.node_name)
        .unwrap_or_default()
}

async fn drift(client: &Client, pool: &Pool, node: &str) {
    let api: Api<NodeClaim> = Api::all(client.clone());
    let claim_name = format!("{node}-claim");
    let claim: NodeClaim = serde_json::from_value(json!({
        "apiVersion": "spotwright.io/v1alpha1", "kind": "NodeClaim",
        "metadata": {"name": claim_name, "labels": {"spotwright.io/nodepool": pool.name}},
        "spec": {"nodeClassRef": {"name": "default"}}
    }))
    .unwrap();
    api.create(&PostParams::default(), &claim)
        .await
        .expect("nodeclaim created");
    let status = json!({"status": {"nodeName": node, "instanceType": "m5.large", "zone": "us-east-1a", "capacityType": "spot",
        "conditions": [{"type": "Drifted", "status": "True", "reason": "AMIDrift", "message": "e2e", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    api.patch_status(&claim_name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("nodeclaim status");
}

async fn cleanup(env: &Env, pool: &Pool) {
    env.kubectl(&["delete", "namespace", &pool.namespace, "--wait=false"]);
    let nodes: Vec<&str> = pool.nodes.iter().map(String::as_str).collect();
    env.kubectl(&[&["delete", "node", "--wait=false"][..], &nodes].concat());
    env.kubectl(&[
        "delete",
        "nodeclaims",
        "-l",
        &format!("spotwright.io/nodepool={}", pool.name),
        "--wait=false",
    ]);
    env.kubectl(&["delete", "nodepool", &pool.name, "--wait=false"]);
}

/// Gives the extender's watches a moment to see a change made through the API.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

/// The pod the scheduler would send for `schedule`, for asking the extender directly.
fn probe_pod(pool: &Pool) -> serde_json::Value {
    json!({
        "metadata": {"name": "probe", "namespace": pool.namespace},
        "spec": {"schedulerName": "spotwright-scheduler", "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}}}]}
    })
}

async fn wait_until_filtered_out(
    extender: &Extender,
    probe: &serde_json::Value,
    names: &[&str],
    node: &str,
) {
    eventually(
        &format!("the extender to filter out {node}"),
        Duration::from_secs(30),
        || async move {
            extender
                .filter(probe, names)
                .await
                .is_some_and(|passed| !passed.iter().any(|n| n == node) && !passed.is_empty())
        },
    )
    .await;
}

#[tokio::test]
async fn pods_land_where_the_score_prefers_and_never_on_drifted_or_disrupted_nodes() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    let _webhook = Webhook::start(env, "extender-placement").await;
    // Packing alone decides here, so that its preference is wider than what
    // the stock plugins (which spread: least-allocated) add on top.
    let packing_only = [
        "--weight-packing",
        "1",
        "--weight-price",
        "0",
        "--weight-interruption",
        "0",
        "--weight-age",
        "0",
    ];
    let extender = Extender::start_with(env, "placement", &packing_only).await;
    let pool = pool(env, &client).await;
    let [a, b, c] = &pool.nodes;
    let names = [a.as_str(), b.as_str(), c.as_str()];
    let probe = probe_pod(&pool);

    // The scheduler asks the extender only once the pod exists, so the
    // extender's watches must have seen the fill first: wait for its ranking.
    let extender = &extender;
    let probe = &probe;
    eventually(
        "the extender to rank b > a > c by fill",
        Duration::from_secs(30),
        || async move {
            let scores = extender.prioritize(probe, &names).await.unwrap_or_default();
            let score = |n: &str| scores.iter().find(|(h, _)| h == n).map(|(_, s)| *s);
            matches!((score(a), score(b), score(c)), (Some(sa), Some(sb), Some(sc)) if sb > sa && sa > sc)
        },
    )
    .await;
    // Packing: the fullest node that still fits wins.
    let first = schedule(&client, &pool, "first").await;
    assert_eq!(
        &first,
        b,
        "most-allocated node preferred; extender metrics:\n{}",
        extender.metrics().await
    );

    // A drifted node (its NodeClaim says so) gets nothing new, though it is the fullest.
    drift(&client, &pool, b).await;
    wait_until_filtered_out(extender, probe, &names, b).await;
    assert_eq!(
        &schedule(&client, &pool, "second").await,
        a,
        "next fullest, since b drifted"
    );

    // A node tainted as disrupted gets nothing new either.
    env.kubectl_ok(&[
        "taint",
        "node",
        a,
        "spotwright.io/disrupted=true:NoSchedule",
    ]);
    wait_until_filtered_out(extender, probe, &names, a).await;
    assert_eq!(
        &schedule(&client, &pool, "third").await,
        c,
        "only c is left"
    );
    cleanup(env, &pool).await;
}

#[tokio::test]
async fn with_the_extender_down_pods_still_schedule_as_ignorable_promises() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    let _webhook = Webhook::start(env, "extender-down").await;
    let pool = pool(env, &client).await;
    // No extender runs: `ignorable: true` makes the scheduler skip it.
    let node = schedule(&client, &pool, "unscored").await;
    assert!(
        pool.nodes.contains(&node),
        "bound to one of the pool's nodes, got {node:?}"
    );
    cleanup(env, &pool).await;
}

#[tokio::test]
async fn prometheus_scrapes_the_extender() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    let _webhook = Webhook::start(env, "extender-metrics").await;
    let extender = Extender::start(env, "metrics").await;
    let prometheus = Prometheus::start(
        env,
        "spotwright-extender",
        &[&format!("127.0.0.1:{EXTENDER_METRICS_PORT}")],
    )
    .await;
    let pool = pool(env, &client).await;
    settle().await;
    schedule(&client, &pool, "scraped").await;
    let local = counter_in(
        &extender.metrics().await,
        "spotwright_extender_requests_total{outcome=\"ok\",verb=\"filter\"}",
    );
    assert!(local >= 1.0, "the scheduler called filter: {local}");
    let prometheus = &prometheus;
    for query in [
        "sum(spotwright_extender_requests_total{job=\"spotwright-extender\",verb=\"filter\",outcome=\"ok\"})",
        "sum(spotwright_extender_request_duration_seconds_count{job=\"spotwright-extender\",verb=\"filter\"})",
    ] {
        eventually(&format!("Prometheus to answer {query}"), Duration::from_secs(30), || async move {
            prometheus.query_value(query).await.is_some_and(|v| v >= 1.0)
        })
        .await;
    }
    cleanup(env, &pool).await;
}
