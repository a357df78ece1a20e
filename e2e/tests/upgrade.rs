//! The users' upgrade, for real: the plane starts at Kubernetes 1.35,
//! `e2e/cluster upgrade 1.36` moves it in place, `eks@latest` then resolves
//! the 1.36 image, and every Spotwright node is replaced new node first
//! under the budget and the PDB. The system node group is never touched.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use spotwright_api::{keys, NodeClaim};
use spotwright_e2e::harness::process::eventually;
use spotwright_e2e::harness::provisioner::Provisioner;
use spotwright_e2e::harness::system::system_view;
use spotwright_e2e::harness::webhook::Webhook;
use spotwright_e2e::harness::{env_at, unique_suffix, Env};

mod pools;

use pools::*;

const FROM: &str = "1.35";
const TO: &str = "1.36";
const REPLICAS: usize = 30;

fn is_true(claim: &NodeClaim, type_: &str) -> bool {
    claim.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    })
}

fn drift_reason(claim: &NodeClaim) -> Option<String> {
    let status = claim.status.as_ref()?;
    let drifted = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Drifted" && c.status == "True")?;
    Some(drifted.reason.clone())
}

/// The kubelet version of every node of `pool`.
async fn kubelets(client: &Client, pool: &str) -> BTreeSet<String> {
    Api::<Node>::all(client.clone())
        .list(&ListParams::default().labels(&format!("{}={pool}", keys::NODEPOOL_LABEL)))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| Some(n.status?.node_info?.kubelet_version))
        .collect()
}

/// What a sampler saw while the nodes rolled.
#[derive(Default)]
struct Seen {
    stop: AtomicBool,
    samples: AtomicUsize,
    pdb_violations: AtomicUsize,
    lowest_healthy: AtomicUsize,
    system_disturbed: AtomicUsize,
    ami_drifted: AtomicUsize,
}

fn sample(
    client: Client,
    pool: String,
    namespace: String,
    seen: Arc<Seen>,
) -> tokio::task::JoinHandle<()> {
    seen.lowest_healthy.store(usize::MAX, Ordering::SeqCst);
    tokio::spawn(async move {
        let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &namespace);
        let mut drifted = BTreeSet::new();
        while !seen.stop.load(Ordering::SeqCst) {
            if let Some(status) = pdbs.get("web").await.ok().and_then(|p| p.status) {
                if let (Some(healthy), Some(desired)) =
                    (status.current_healthy, status.desired_healthy)
                {
                    seen.samples.fetch_add(1, Ordering::SeqCst);
                    seen.lowest_healthy
                        .fetch_min(healthy.max(0) as usize, Ordering::SeqCst);
                    if healthy < desired {
                        seen.pdb_violations.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            if !system_view(&client).await.is_whole() {
                seen.system_disturbed.fetch_add(1, Ordering::SeqCst);
            }
            for claim in claims(&client, &pool).await {
                if drift_reason(&claim).as_deref() == Some("AMIDrift") {
                    drifted.insert(claim.name_any());
                }
            }
            seen.ami_drifted.store(drifted.len(), Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

async fn claims(client: &Client, pool: &str) -> Vec<NodeClaim> {
    pool_claims(client, pool).await
}

fn cluster(env: &Env, args: &[&str]) -> String {
    let output = Command::new(env.repo.join("e2e/cluster"))
        .args(args)
        .output()
        .expect("e2e/cluster runs");
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "e2e/cluster {args:?} failed:\n{log}"
    );
    log
}

#[tokio::test]
async fn a_control_plane_upgrade_rolls_every_spotwright_node_to_the_new_version() {
    let env = env_at(FROM);
    assert_eq!(kubernetes_minor(env), FROM, "the plane starts at {FROM}");
    let client = env.client().await;
    let _webhook = Webhook::start(env, "upgrade").await;
    let id = unique_suffix();
    let namespace = format!("prov-{id}");
    let pool = pool_from(
        env,
        &client,
        &id,
        json!({"requirements": [
            {"key": "spotwright.io/capacity-type", "operator": "In", "values": ["spot"]},
            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
            {"key": "spotwright.io/instance-category", "operator": "In", "values": ["c", "m"]},
            {"key": "spotwright.io/instance-cpu", "operator": "In", "values": ["4"]}
        ]}),
        json!({"disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "30s",
            "budgets": [{"nodes": "2"}]}}),
    )
    .await;
    let _provisioner = Provisioner::start(env, "upgrade", MOTO, &[]).await;
    env.apply(&json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{
                "name": "app", "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}}}]}}}
    }));
    env.apply(&json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}
    }));
    eventually(
        "30 pods Running on initialized 1.35 nodes",
        Duration::from_secs(240),
        || async {
            let claims = claims(&client, &pool).await;
            running_pods(&client, &namespace).await.len() == REPLICAS
                && !claims.is_empty()
                && claims.iter().all(|c| is_true(c, "Initialized"))
        },
    )
    .await;
    let old: BTreeSet<String> = claims(&client, &pool)
        .await
        .iter()
        .map(|c| c.name_any())
        .collect();
    let before = kubelets(&client, &pool).await;
    assert_eq!(before.len(), 1, "{before:?}");
    assert!(
        before.iter().all(|v| v.starts_with(&format!("v{FROM}."))),
        "{before:?}"
    );
    eventually(
        "the PDB to be computed",
        Duration::from_secs(30),
        || async {
            Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace)
                .get("web")
                .await
                .ok()
                .and_then(|p| p.status)
                .is_some_and(|s| s.desired_healthy == Some(29) && s.current_healthy == Some(30))
        },
    )
    .await;
    let system = system_view(&client).await;
    assert!(system.is_whole(), "{system:?}");

    let seen = Arc::new(Seen::default());
    let sampler = sample(
        client.clone(),
        pool.clone(),
        namespace.clone(),
        seen.clone(),
    );
    let upgrade_started = Instant::now();
    let log = cluster(env, &["upgrade", TO]);
    let upgraded = Instant::now();
    let upgrade_took = upgrade_started.elapsed();
    assert_eq!(kubernetes_minor(env), TO, "the plane is at {TO}:\n{log}");

    let mut first_launch = None;
    while first_launch.is_none() {
        let launched = claims(&client, &pool)
            .await
            .iter()
            .any(|c| !old.contains(&c.name_any()) && is_true(c, "Launched"));
        if launched {
            first_launch = Some(upgraded.elapsed());
        }
        assert!(
            upgraded.elapsed() < Duration::from_secs(60),
            "no replacement launched within 60 s of the upgrade; see {}/e2e/upgrade-provisioner.log",
            env.state.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eventually(
        "every node replaced by a 1.36 one, 30 pods Running",
        Duration::from_secs(480),
        || async {
            let claims = claims(&client, &pool).await;
            let all_new = !claims.is_empty()
                && claims
                    .iter()
                    .all(|c| !old.contains(&c.name_any()) && is_true(c, "Initialized"));
            all_new
                && kubelets(&client, &pool)
                    .await
                    .iter()
                    .all(|v| v.starts_with(&format!("v{TO}.")))
                && running_pods(&client, &namespace).await.len() == REPLICAS
        },
    )
    .await;
    let all_replaced = upgraded.elapsed();
    seen.stop.store(true, Ordering::SeqCst);
    let _ = sampler.await;
    eprintln!(
        "upgrade {FROM} -> {TO}: plane upgraded in {:.1}s; first replacement launched {:.1}s after, all {} nodes replaced {:.1}s after; PDB lowest healthy {} of {REPLICAS} over {} samples",
        upgrade_took.as_secs_f64(),
        first_launch.unwrap_or_default().as_secs_f64(),
        old.len(),
        all_replaced.as_secs_f64(),
        seen.lowest_healthy.load(Ordering::SeqCst),
        seen.samples.load(Ordering::SeqCst),
    );
    assert!(
        seen.samples.load(Ordering::SeqCst) > 50,
        "the PDB was sampled throughout"
    );
    assert_eq!(
        seen.pdb_violations.load(Ordering::SeqCst),
        0,
        "the PDB was violated"
    );
    assert!(
        seen.ami_drifted.load(Ordering::SeqCst) >= 1,
        "the claims drifted with reason AMIDrift"
    );
    assert_eq!(
        seen.system_disturbed.load(Ordering::SeqCst),
        0,
        "the system node group was touched"
    );
    assert_eq!(
        system_view(&client).await,
        system,
        "the same system nodes and add-ons"
    );
    cleanup(env, &client, &pool, &namespace).await;
}
