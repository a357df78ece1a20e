//! Underutilized consolidation on the local plane: a scale-down shrinks
//! the pool to near what a fresh solve would launch, behind a PDB; a
//! workload that goes up and down does not churn; `do-not-disrupt`, a
//! budget of 0 and `WhenEmpty` each hold it back.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use spotwright_api::eks::DEFAULT_ROOT_VOLUME_GIB;
use spotwright_api::{keys, NodeClaim, NodeClass, NodePool};
use spotwright_e2e::harness::process::eventually;
use spotwright_e2e::harness::provisioner::{ec2, Provisioner};
use spotwright_e2e::harness::rollout::{deployment, one_at_a_time, pdb_counts, Guard};
use spotwright_e2e::harness::webhook::Webhook;
use spotwright_e2e::harness::{env, event_reasons, expect_events, unique_suffix, Env};
use spotwright_provisioner::act::aws::catalog::{fetch_instance_types, SpotPrices};
use spotwright_provisioner::model::claim::offering_price;
use spotwright_provisioner::model::pod::CachedPod;
use spotwright_provisioner::model::problem::{build, Objects};
use spotwright_provisioner::model::volumes::VolumeTopology;
use spotwright_solver::model::InstanceType;
use spotwright_solver::{solve, Input};

mod pools;

use pools::*;

/// A NodePool spec part: underutilized nodes go after `after`, at most
/// `nodes` at once.
fn underutilized(after: &str, nodes: &str) -> serde_json::Value {
    json!({"disruption": {"consolidationPolicy": "WhenEmptyOrUnderutilized",
        "consolidateAfter": after, "budgets": [{"nodes": nodes}]}})
}

/// Only 4-vCPU c and m types: every node the same size, so which node can
/// go is plain arithmetic.
fn four_vcpu() -> serde_json::Value {
    spot_amd64(json!([
        {"key": "spotwright.io/instance-category", "operator": "In", "values": ["c", "m"]},
        {"key": "spotwright.io/instance-cpu", "operator": "In", "values": ["4"]}
    ]))
}

async fn catalog() -> Vec<InstanceType> {
    fetch_instance_types(
        &ec2().await,
        &HashMap::new(),
        SpotPrices::History,
        DEFAULT_ROOT_VOLUME_GIB,
    )
    .await
    .expect("the catalog as the provisioner reads it")
}

/// Live (not deleting) claims of `pool`.
async fn live_claims(client: &Client, pool: &str) -> Vec<NodeClaim> {
    pool_claims(client, pool)
        .await
        .into_iter()
        .filter(|c| c.meta().deletion_timestamp.is_none())
        .collect()
}

/// $/h of the pool's live claims, at their offerings' prices.
fn fleet_cost(claims: &[NodeClaim], catalog: &[InstanceType]) -> f64 {
    claims
        .iter()
        .filter_map(|c| offering_price(c, catalog))
        .sum()
}

fn initialized(claim: &NodeClaim) -> bool {
    claim.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Initialized" && c.status == "True")
    })
}

/// The claim's `Disrupting=True` reason and since when, if any.
fn disrupting(claim: &NodeClaim) -> Option<(String, String)> {
    let status = claim.status.as_ref()?;
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Disrupting" && c.status == "True")?;
    Some((c.reason.clone(), c.last_transition_time.0.to_string()))
}

/// $/h of what the solver would launch from nothing for the pods now
/// running in `namespace`, in `pool`, over `catalog`.
async fn fresh_solve_cost(
    client: &Client,
    namespace: &str,
    pool: &str,
    catalog: &[InstanceType],
) -> f64 {
    let nodepool = Api::<NodePool>::all(client.clone())
        .get(pool)
        .await
        .expect("the NodePool");
    let class = Api::<NodeClass>::all(client.clone())
        .get(pool)
        .await
        .expect("the NodeClass");
    let daemonsets = Api::<DaemonSet>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("DaemonSets")
        .items;
    let opted_in = BTreeSet::new();
    let volumes = VolumeTopology::new(&[], &[], &[]);
    let problem = build(
        &Objects {
            pods: &[],
            nodes: &[],
            claims: &[],
            nodepools: &[&nodepool],
            nodeclasses: &[&class],
            daemonsets: &daemonsets.iter().collect::<Vec<_>>(),
            opted_in: &opted_in,
            scheduler_name: keys::SCHEDULER_NAME,
            volumes: &volumes,
        },
        catalog,
    );
    let pods: Vec<_> = running_pods(client, namespace)
        .await
        .iter()
        .map(|p| CachedPod::from(p).pending().expect("a readable pod"))
        .collect();
    let plan = solve(&Input {
        pods: &pods,
        nodes: &[],
        nodepools: &problem.nodepools,
        daemonsets: &problem.daemonsets,
        instance_types: catalog,
    });
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    plan.new_nodes.iter().map(|n| n.price).sum()
}

fn scale(env: &Env, namespace: &str, name: &str, replicas: usize) {
    let out = env.kubectl(&[
        "scale",
        "deployment",
        name,
        "-n",
        namespace,
        &format!("--replicas={replicas}"),
    ]);
    assert!(out.status.success(), "kubectl scale: {out:?}");
}

/// Waits until `replicas` pods run in `namespace` and every claim of `pool`
/// is initialized.
async fn settled(client: &Client, namespace: &str, pool: &str, replicas: usize, timeout: u64) {
    eventually(
        &format!("{replicas} pods Running on initialized nodes"),
        Duration::from_secs(timeout),
        || async {
            let claims = pool_claims(client, pool).await;
            running_pods(client, namespace).await.len() == replicas
                && claims.iter().all(initialized)
                && claims.iter().all(|c| c.meta().deletion_timestamp.is_none())
        },
    )
    .await;
}

/// A counter's total over all its labels in a Prometheus text page.
fn total(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

const CONSOLIDATE_AFTER: u64 = 20;
const PEAK: usize = 48;
const REMAINING: usize = 6;

#[tokio::test]
async fn a_scale_down_shrinks_the_pool_to_near_a_fresh_solve_behind_the_pdb() {
    let env = env();
    let client = env.client().await;
    let Scenario {
        webhook: _webhook,
        pool,
        namespace,
    } = scenario(
        env,
        &client,
        "consolidation",
        spot_amd64(json!([
            {"key": "spotwright.io/instance-category", "operator": "In", "values": ["c", "m", "r"]}
        ])),
        underutilized(&format!("{CONSOLIDATE_AFTER}s"), "100%"),
    )
    .await;
    let provisioner = Provisioner::start(env, "consolidation", MOTO, &[]).await;
    env.apply(&deployment(&namespace, "web", PEAK as u32, "500m", "1Gi"));
    env.apply(&one_at_a_time(&namespace, "web"));
    settled(&client, &namespace, &pool, PEAK, 240).await;
    pdb_counts(&client, &namespace, "web", PEAK as i32).await;
    let catalog = catalog().await;
    let at_peak = live_claims(&client, &pool).await;
    let peak_cost = fleet_cost(&at_peak, &catalog);

    let (guard, guarding) = Guard::start(client.clone(), &namespace, "web");
    scale(env, &namespace, "web", REMAINING);
    let scaled = Instant::now();
    eventually("6 pods left Running", Duration::from_secs(30), || async {
        running_pods(&client, &namespace).await.len() == REMAINING
    })
    .await;
    let fresh = fresh_solve_cost(&client, &namespace, &pool, &catalog).await;
    let mut reasons = BTreeSet::new();
    let limit = Duration::from_secs(CONSOLIDATE_AFTER + 60);
    let shrunk = loop {
        let claims = pool_claims(&client, &pool).await;
        reasons.extend(claims.iter().filter_map(|c| disrupting(c).map(|d| d.0)));
        let live: Vec<NodeClaim> = claims
            .iter()
            .filter(|c| c.meta().deletion_timestamp.is_none())
            .cloned()
            .collect();
        let done = claims.len() == live.len()
            && live
                .iter()
                .all(|c| initialized(c) && disrupting(c).is_none())
            && fleet_cost(&live, &catalog) <= 1.2 * fresh
            && pool_instances(&pool).await.len() == live.len()
            && running_pods(&client, &namespace).await.len() == REMAINING;
        if done {
            break scaled.elapsed();
        }
        assert!(
            scaled.elapsed() < limit,
            "the pool is at ${:.4}/h with {} claims {:?}, not within 1.2 × ${fresh:.4}/h, {}s after the scale-down; see {}/e2e/consolidation-provisioner.log",
            fleet_cost(&live, &catalog),
            claims.len(),
            claims.iter().map(|c| c.status.as_ref().and_then(|s| s.instance_type.clone())).collect::<Vec<_>>(),
            limit.as_secs(),
            env.state.display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    guard.stop();
    let _ = guarding.await;
    guard.assert_held(50);
    let after = live_claims(&client, &pool).await;
    let after_cost = fleet_cost(&after, &catalog);
    eprintln!(
        "consolidation: {} nodes ${peak_cost:.4}/h at {PEAK} pods; scaled to {REMAINING}; {} node(s) ${after_cost:.4}/h ({:.2} × a fresh solve's ${fresh:.4}/h) {:.1}s after the scale-down; lowest healthy {}/{REMAINING}",
        at_peak.len(),
        after.len(),
        after_cost / fresh,
        shrunk.as_secs_f64(),
        guard.lowest_healthy.load(std::sync::atomic::Ordering::SeqCst),
    );
    assert!(
        reasons.contains("Underutilized"),
        "the nodes went by consolidation: {reasons:?}"
    );
    let old: Vec<String> = at_peak.iter().map(|c| c.name_any()).collect();
    eventually(
        "a Consolidating Event on the claims it took",
        Duration::from_secs(10),
        || async {
            for name in &old {
                if event_reasons(&client, name)
                    .await
                    .iter()
                    .any(|r| r == "Consolidating")
                {
                    return true;
                }
            }
            false
        },
    )
    .await;
    let metrics = provisioner.metrics().await;
    assert!(
        total(
            &metrics,
            "spotwright_provisioner_consolidation_actions_total",
            "result=\"completed\""
        ) >= 1.0,
        "{metrics}"
    );
    assert!(
        total(
            &metrics,
            "spotwright_provisioner_consolidation_savings_dollars_per_hour",
            ""
        ) > 0.0
    );
    assert!(metrics.contains("spotwright_provisioner_consolidation_evaluation_seconds_count"));
    cleanup(env, &client, &pool, &namespace).await;
}

/// Distinct consolidation actions seen on `pool`'s claims, by when each
/// began (the claims of one action share it).
async fn note_actions(client: &Client, pool: &str, seen: &mut BTreeMap<String, BTreeSet<String>>) {
    for claim in pool_claims(client, pool).await {
        if let Some((reason, since)) = disrupting(&claim) {
            if reason == "Underutilized" {
                seen.entry(since).or_default().insert(claim.name_any());
            }
        }
    }
}

/// Two 4-vCPU nodes, annotated `do-not-disrupt` before they are each
/// left under half full: one could go.
async fn two_half_empty_nodes(env: &Env, client: &Client, namespace: &str, pool: &str) {
    env.apply(&deployment(namespace, "web", 12, "500m", "256Mi"));
    settled(client, namespace, pool, 12, 240).await;
    set_node_annotation(client, pool, Some("true")).await;
    keep_two_per_node(env, client, namespace).await;
    scale(env, namespace, "web", 4);
    settled(client, namespace, pool, 4, 60).await;
    let claims = live_claims(client, pool).await;
    assert_eq!(claims.len(), 2, "12 pods of 500m took two 4-vCPU nodes");
    let on_nodes: BTreeSet<String> = running_pods(client, namespace)
        .await
        .into_iter()
        .filter_map(|p| p.spec?.node_name)
        .collect();
    assert_eq!(on_nodes.len(), 2, "two pods left on each node");
}

/// Gives two pods on each node a higher `pod-deletion-cost`, so that the
/// ReplicaSet keeps those when it scales down (it ranks by that first).
async fn keep_two_per_node(env: &Env, client: &Client, namespace: &str) {
    let mut per_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pod in running_pods(client, namespace).await {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        per_node
            .entry(node.unwrap_or_default())
            .or_default()
            .push(pod.name_any());
    }
    for pods in per_node.values() {
        for pod in pods.iter().take(2) {
            let out = env.kubectl(&[
                "annotate",
                "pod",
                pod,
                "-n",
                namespace,
                &format!("{}=100", keys::POD_DELETION_COST_ANNOTATION),
            ]);
            assert!(out.status.success(), "kubectl annotate: {out:?}");
        }
    }
}

async fn set_node_annotation(client: &Client, pool: &str, value: Option<&str>) {
    let nodes: Api<Node> = Api::all(client.clone());
    for claim in live_claims(client, pool).await {
        let Some(name) = claim.status.and_then(|s| s.node_name) else {
            continue;
        };
        let patch = json!({"metadata": {"annotations": {keys::DO_NOT_DISRUPT_ANNOTATION: value}}});
        nodes
            .patch(
                &name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .expect("annotate the node");
    }
}

fn patch_pool(env: &Env, pool: &str, disruption: serde_json::Value) {
    let patch = json!({"spec": {"disruption": disruption}}).to_string();
    let out = env.kubectl(&["patch", "nodepool", pool, "--type=merge", "-p", &patch]);
    assert!(out.status.success(), "kubectl patch: {out:?}");
}

/// Holds `pool` for `seconds` and checks that no consolidation began.
async fn held(client: &Client, pool: &str, seconds: u64, guard: &str) {
    let mut seen = BTreeMap::new();
    let until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < until {
        note_actions(client, pool, &mut seen).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        seen.is_empty(),
        "{guard} did not hold consolidation back: {seen:?}"
    );
    assert_eq!(
        live_claims(client, pool).await.len(),
        2,
        "{guard}: both nodes stay"
    );
}

/// The guards, run alongside the steady-state workload: do-not-disrupt, a
/// budget of 0 and WhenEmpty each hold an underutilized pool; lifting them
/// lets it consolidate, which shows it was they that held it.
async fn guards(env: &'static Env, client: Client) {
    let id = unique_suffix();
    let namespace = format!("prov-{id}");
    let pool = pool_from(env, &client, &id, four_vcpu(), underutilized("5s", "100%")).await;
    two_half_empty_nodes(env, &client, &namespace, &pool).await;
    held(&client, &pool, 20, "do-not-disrupt on the Nodes").await;
    patch_pool(env, &pool, json!({"budgets": [{"nodes": "0"}]}));
    set_node_annotation(&client, &pool, None).await;
    held(&client, &pool, 20, "a budget of 0").await;
    // The NodePool says what the budget holds back.
    expect_events(&client, &pool, &["ConsolidationHeld"]).await;
    patch_pool(
        env,
        &pool,
        json!({"consolidationPolicy": "WhenEmpty", "budgets": [{"nodes": "100%"}]}),
    );
    held(&client, &pool, 20, "consolidationPolicy: WhenEmpty").await;
    patch_pool(
        env,
        &pool,
        json!({"consolidationPolicy": "WhenEmptyOrUnderutilized"}),
    );
    eventually(
        "one node consolidated away",
        Duration::from_secs(90),
        || async {
            live_claims(&client, &pool).await.len() == 1
                && pool_claims(&client, &pool).await.len() == 1
                && running_pods(&client, &namespace).await.len() == 4
        },
    )
    .await;
    cleanup(env, &client, &pool, &namespace).await;
}

const STEADY_FOR: Duration = Duration::from_secs(300);
const STEADY_STEP: Duration = Duration::from_secs(15);
/// 20 replicas, up and down by 10%.
const STEADY_CYCLE: [usize; 4] = [20, 22, 20, 18];

#[tokio::test]
async fn a_workload_going_up_and_down_by_ten_percent_causes_at_most_one_consolidation() {
    let env = env();
    let client = env.client().await;
    let _webhook = Webhook::start(env, "consolidation-steady").await;
    let id = unique_suffix();
    let namespace = format!("prov-{id}");
    let pool = pool_from(env, &client, &id, four_vcpu(), underutilized("90s", "100%")).await;
    let _provisioner = Provisioner::start(env, "consolidation-steady", MOTO, &[]).await;
    let guarding = tokio::spawn(guards(env, client.clone()));
    env.apply(&deployment(&namespace, "web", 20, "500m", "256Mi"));
    settled(&client, &namespace, &pool, 20, 240).await;
    let started = Instant::now();
    let mut seen = BTreeMap::new();
    let mut launched = BTreeSet::new();
    let mut step = 0;
    while started.elapsed() < STEADY_FOR {
        scale(
            env,
            &namespace,
            "web",
            STEADY_CYCLE[step % STEADY_CYCLE.len()],
        );
        step += 1;
        let next = Instant::now() + STEADY_STEP;
        while Instant::now() < next {
            note_actions(&client, &pool, &mut seen).await;
            launched.extend(
                pool_claims(&client, &pool)
                    .await
                    .iter()
                    .map(|c| c.name_any()),
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    eprintln!(
        "steady state: {step} scalings over {}s; {} consolidation action(s) {seen:?}; {} claims launched in all",
        started.elapsed().as_secs(),
        seen.len(),
        launched.len()
    );
    assert!(seen.len() <= 1, "consolidation churned: {seen:?}");
    if let Err(err) = guarding.await {
        std::panic::resume_unwind(err.into_panic());
    }
    cleanup(env, &client, &pool, &namespace).await;
}
