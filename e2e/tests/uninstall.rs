//! Deprovisioning, as docs/uninstall.md tells it: the documented order
//! leaves no instance and no object stuck on a finalizer, and
//! `spotwright-recover` cleans up after a provisioner that is already gone.

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use spotwright_e2e::harness::process::eventually;
use spotwright_e2e::harness::provisioner::{ec2, Provisioner, CLUSTER_NAME};
use spotwright_e2e::harness::system::system_view;
use spotwright_e2e::harness::webhook::Webhook;
use spotwright_e2e::harness::{env, unique_suffix, Env};

mod pools;

use pools::*;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A Spot pool and `replicas` pods that each need a node of their own.
async fn pool_with_nodes(
    env: &'static Env,
    client: &kube::Client,
    replicas: u32,
) -> (String, String) {
    let id = unique_suffix();
    let namespace = format!("prov-{id}");
    let pool = pool_from(
        env,
        client,
        &id,
        spot_amd64(json!([])),
        when_empty("0s", "100%"),
    )
    .await;
    env.apply(&json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "alone", "namespace": namespace},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "alone"}},
            "template": {"metadata": {"labels": {"app": "alone"}}, "spec": {
                "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "alone"}}}]}}}}}
    }));
    eventually(
        "each pod on a node of its own",
        Duration::from_secs(180),
        || async { running_pods(client, &namespace).await.len() == replicas as usize },
    )
    .await;
    assert_eq!(pool_instances(&pool).await.len(), replicas as usize);
    (pool, namespace)
}

/// Running or pending instances launched for any NodeClaim of the cluster.
async fn claimed_instances() -> Vec<String> {
    let filter = |name: &str, values: &[&str]| {
        let mut filter = aws_sdk_ec2::types::Filter::builder().name(name);
        for value in values {
            filter = filter.values(*value);
        }
        filter.build()
    };
    let reply = ec2()
        .await
        .describe_instances()
        .filters(filter("tag-key", &["spotwright.io/nodeclaim"]))
        .filters(filter(
            &format!("tag:kubernetes.io/cluster/{CLUSTER_NAME}"),
            &["owned"],
        ))
        .filters(filter("instance-state-name", &["pending", "running"]))
        .send()
        .await
        .expect("DescribeInstances");
    reply
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| i.instance_id().map(str::to_owned))
        .collect()
}

fn object_exists(env: &Env, kind: &str, name: &str) -> bool {
    env.kubectl(&["get", kind, name]).status.success()
}

#[tokio::test]
async fn the_documented_uninstall_order_leaves_no_instance_and_nothing_stuck() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    let webhook = Webhook::start(env, "uninstall-order").await;
    let provisioner = Provisioner::start(env, "uninstall-order", MOTO, &[]).await;
    let (_pool, namespace) = pool_with_nodes(env, &client, 2).await;
    let system = system_view(&client).await;

    // docs/uninstall.md, in order, with the provisioner running throughout.
    env.kubectl_ok(&["delete", "nodepools", "--all", "--timeout=300s"]);
    env.kubectl_ok(&["delete", "nodeclaims", "--all", "--timeout=120s"]);
    assert_eq!(
        claimed_instances().await,
        Vec::<String>::new(),
        "instances left after the pools went"
    );
    drop(provisioner);
    drop(webhook);
    env.kubectl_ok(&["delete", "namespace", &namespace, "--wait=false"]);
    env.kubectl_ok(&[
        "delete",
        "-k",
        "manifests/overlays/local",
        "--ignore-not-found",
        "--wait=false",
    ]);
    eventually(
        "the CRDs and the namespace to go",
        Duration::from_secs(120),
        || async {
            [
                "nodepools.spotwright.io",
                "nodeclaims.spotwright.io",
                "nodeclasses.spotwright.io",
            ]
            .iter()
            .all(|crd| !object_exists(env, "crd", crd))
                && !object_exists(env, "namespace", "spotwright-system")
        },
    )
    .await;
    assert_eq!(claimed_instances().await, Vec::<String>::new());
    assert_eq!(
        system_view(&client).await,
        system,
        "the system node group stays"
    );
    // Put Spotwright back for the binaries that run after this one.
    env.install();
}

#[tokio::test]
async fn recovery_terminates_the_instances_and_lifts_the_finalizers_a_gone_provisioner_left() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    let _webhook = Webhook::start(env, "uninstall-recover").await;
    let mut provisioner = Provisioner::start(env, "uninstall-recover", MOTO, &[]).await;
    let (pool, namespace) = pool_with_nodes(env, &client, 2).await;
    let system = system_view(&client).await;
    assert!(system.is_whole(), "{system:?}");
    provisioner.kill9();
    drop(provisioner);

    let selector = format!("spotwright.io/nodepool={pool}");
    env.kubectl_ok(&["delete", "nodepool", &pool, "--wait=false"]);
    env.kubectl_ok(&["delete", "nodeclaims", "-l", &selector, "--wait=false"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        pool_claims(&client, &pool).await.len(),
        2,
        "held by their finalizer"
    );
    assert!(
        object_exists(env, "nodepool", &pool),
        "held by its finalizer"
    );

    let dry_run = Command::new(env.bin("spotwright-recover"))
        .args(["--cluster-name", CLUSTER_NAME, "--dry-run"])
        .env("KUBECONFIG", &env.kubeconfig)
        .output()
        .expect("spotwright-recover runs");
    let said = String::from_utf8_lossy(&dry_run.stdout);
    assert!(
        dry_run.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&dry_run.stderr)
    );
    assert!(said.starts_with("would terminate"), "{said}");
    assert_eq!(
        pool_instances(&pool).await.len(),
        2,
        "a dry run changes nothing"
    );

    let recovered = Command::new(env.bin("spotwright-recover"))
        .args(["--cluster-name", CLUSTER_NAME])
        .env("KUBECONFIG", &env.kubeconfig)
        .output()
        .expect("spotwright-recover runs");
    assert!(
        recovered.status.success(),
        "{}",
        String::from_utf8_lossy(&recovered.stderr)
    );
    eventually(
        "the pool, its claims and instances to go",
        Duration::from_secs(60),
        || async {
            pool_claims(&client, &pool).await.is_empty()
                && !object_exists(env, "nodepool", &pool)
                && pool_instances(&pool).await.is_empty()
        },
    )
    .await;
    assert_eq!(
        system_view(&client).await,
        system,
        "the system node group is never touched"
    );
    env.kubectl(&["delete", "namespace", &namespace, "--wait=false"]);
    env.kubectl(&["delete", "nodeclass", &pool, "--wait=false"]);
}
