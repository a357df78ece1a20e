//! The users' upgrade, for real: the plane starts at Kubernetes 1.35,
//! `e2e/cluster upgrade 1.36` moves it in place, `eks@latest` then resolves
//! the 1.36 image, and every Spotwright node is replaced new node first
//! under the budget and the PDB. The system node group is never touched.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use spotwright_api::{keys, NodeClaim};
use spotwright_e2e::harness::process::eventually;
use spotwright_e2e::harness::provisioner::Provisioner;
use spotwright_e2e::harness::rollout::{deployment, one_at_a_time, pdb_counts, Guard};
use spotwright_e2e::harness::system::system_view;
use spotwright_e2e::harness::{env_at, Env};

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

/// Claims of `pool` seen drifted with reason `AMIDrift`, sampled until `stop`.
fn ami_drifted(
    client: Client,
    pool: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<BTreeSet<String>> {
    tokio::spawn(async move {
        let mut drifted = BTreeSet::new();
        while !stop.load(Ordering::SeqCst) {
            for claim in claims(&client, &pool).await {
                if drift_reason(&claim).as_deref() == Some("AMIDrift") {
                    drifted.insert(claim.name_any());
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        drifted
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
    let Scenario {
        webhook: _webhook,
        pool,
        namespace,
    } = scenario(
        env,
        &client,
        "upgrade",
        spot_amd64(json!([
            {"key": "spotwright.io/instance-category", "operator": "In", "values": ["c", "m"]},
            {"key": "spotwright.io/instance-cpu", "operator": "In", "values": ["4"]}
        ])),
        when_empty("30s", "2"),
    )
    .await;
    let _provisioner = Provisioner::start(env, "upgrade", MOTO, &[]).await;
    env.apply(&deployment(
        &namespace,
        "web",
        REPLICAS as u32,
        "500m",
        "512Mi",
    ));
    env.apply(&one_at_a_time(&namespace, "web"));
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
    pdb_counts(&client, &namespace, "web", REPLICAS as i32).await;
    let system = system_view(&client).await;
    assert!(system.is_whole(), "{system:?}");

    let (guard, guarding) = Guard::start(client.clone(), &namespace, "web");
    let stop = Arc::new(AtomicBool::new(false));
    let drifting = ami_drifted(client.clone(), pool.clone(), stop.clone());
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
    stop.store(true, Ordering::SeqCst);
    guard.stop();
    let drifted = drifting.await.unwrap_or_default();
    let _ = guarding.await;
    eprintln!(
        "upgrade {FROM} -> {TO}: plane upgraded in {:.1}s; first replacement launched {:.1}s after, all {} nodes replaced {:.1}s after; PDB lowest healthy {} of {REPLICAS} over {} samples",
        upgrade_took.as_secs_f64(),
        first_launch.unwrap_or_default().as_secs_f64(),
        old.len(),
        all_replaced.as_secs_f64(),
        guard.lowest_healthy.load(Ordering::SeqCst),
        guard.pdb_samples.load(Ordering::SeqCst),
    );
    guard.assert_held(50);
    assert!(
        !drifted.is_empty(),
        "the claims drifted with reason AMIDrift"
    );
    assert_eq!(
        system_view(&client).await,
        system,
        "the same system nodes and add-ons"
    );
    cleanup(env, &client, &pool, &namespace).await;
}
