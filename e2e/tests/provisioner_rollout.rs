//! The upgrade story on the real control plane and moto: a new AMI in the
//! NodeClass's SSM parameter rolls every node, new node first, with the
//! PodDisruptionBudget and the NodePool's budget held throughout, and a
//! kill -9 of the provisioner mid-rollout neither stops the rollout nor
//! replaces any node twice. A NodePool template change rolls its nodes too,
//! except the one a `do-not-disrupt` pod holds. A rebalance recommendation
//! replaces its node before any interruption, and a Spot interruption
//! warning drains and replaces within the two-minute notice.

mod pools;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use spotwright_api::{keys, NodeClaim};
use spotwright_e2e::harness::process::eventually;
use spotwright_e2e::harness::provisioner::{
    ensure_network, local_nodeclass, ssm, x86_64_images, Provisioner,
};
use spotwright_e2e::harness::rollout::{deployment, one_at_a_time, pdb_counts, Guard};
use spotwright_e2e::harness::system::system_view;
use spotwright_e2e::harness::webhook::{counter_in, opted_in_namespace, Webhook};
use spotwright_e2e::harness::{env, event_reasons, unique_suffix, Env};

use pools::{cleanup, pool_claims, MOTO};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Two of moto's x86_64 images: the "current" and the "new" node image.
async fn two_images() -> (String, String) {
    match x86_64_images().await.as_slice() {
        [a, b, ..] => (a.clone(), b.clone()),
        other => panic!("moto ships at least two x86_64 AMIs, found {other:?}"),
    }
}

async fn put_image(path: &str, image: &str) {
    ssm()
        .await
        .put_parameter()
        .name(path)
        .value(image)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .expect("PutParameter");
}

/// A NodeClass whose AMI is the SSM parameter `ssm_path`, a Spot NodePool
/// of 4-vCPU c/m types with `budget`, and a namespace opted in to it.
async fn setup(
    env: &Env,
    client: &Client,
    id: &str,
    ssm_path: &str,
    budget: &str,
) -> (String, String) {
    ensure_network("1.36").await;
    let name = format!("e2e-roll-{id}");
    let class = local_nodeclass(&name, json!({"ssmParameter": ssm_path}));
    let nodepool = json!({
        "apiVersion": "spotwright.io/v1alpha1", "kind": "NodePool", "metadata": {"name": name},
        "spec": {
            "template": {"spec": {
                "nodeClassRef": {"name": name},
                "requirements": [
                    {"key": "spotwright.io/capacity-type", "operator": "In", "values": ["spot"]},
                    {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                    {"key": "spotwright.io/instance-category", "operator": "In", "values": ["c", "m"]},
                    {"key": "spotwright.io/instance-cpu", "operator": "In", "values": ["4"]}
                ]
            }},
            "disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "30s",
                "budgets": [{"nodes": budget}]}
        }
    });
    for object in [class, nodepool] {
        env.apply(&object);
    }
    let namespace = format!("roll-{id}");
    opted_in_namespace(env, client, &namespace, &name).await;
    (name, namespace)
}

fn is_true(claim: &NodeClaim, type_: &str) -> bool {
    claim.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    })
}

fn image_of(claim: &NodeClaim) -> Option<String> {
    claim.status.as_ref()?.image_id.clone()
}

/// Counted as disrupted by the budget: being replaced or being deleted.
fn in_disruption(claim: &NodeClaim) -> bool {
    claim.metadata.deletion_timestamp.is_some()
        || claim
            .annotations()
            .contains_key(keys::DISRUPTION_ANNOTATION)
}

async fn running(client: &Client, namespace: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        })
        .collect()
}

/// What the sampler saw of the pool's claims during a rollout.
#[derive(Default)]
struct Watch {
    stop: AtomicBool,
    max_disrupting: AtomicUsize,
    samples: AtomicUsize,
}

/// Samples the pool's claims every 100 ms until stopped; also records, per
/// old claim, every replacement claim ever seen for it.
fn sample(
    client: Client,
    pool: String,
    watch: Arc<Watch>,
    replacements: Arc<std::sync::Mutex<BTreeMap<String, BTreeSet<String>>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !watch.stop.load(Ordering::SeqCst) {
            let claims = pool_claims(&client, &pool).await;
            let disrupting = claims.iter().filter(|c| in_disruption(c)).count();
            watch.max_disrupting.fetch_max(disrupting, Ordering::SeqCst);
            if let Ok(mut seen) = replacements.lock() {
                for claim in &claims {
                    if let Some(old) = claim.labels().get(keys::REPLACES_LABEL) {
                        seen.entry(old.clone())
                            .or_default()
                            .insert(claim.name_any());
                    }
                }
            }
            watch.samples.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

#[tokio::test]
async fn a_new_ami_rolls_every_node_within_the_pdb_and_budget_even_across_a_crash() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    let _webhook = Webhook::start(env, "rollout-ami").await;
    let id = unique_suffix();
    let ssm_path = format!("/spotwright-e2e/rollout-{id}/image_id");
    let (old_image, new_image) = two_images().await;
    put_image(&ssm_path, &old_image).await;
    let (pool, namespace) = setup(env, &client, &id, &ssm_path, "2").await;
    let mut provisioner = Provisioner::start(env, "rollout-ami", MOTO, &[]).await;

    // 30 pods of 500m: about 7 per 4-vCPU node, so 5 nodes.
    env.apply(&deployment(&namespace, "web", 30, "500m", "512Mi"));
    env.apply(&one_at_a_time(&namespace, "web"));
    eventually(
        "30 pods Running on initialized nodes",
        Duration::from_secs(180),
        || async {
            let claims = pool_claims(&client, &pool).await;
            running(&client, &namespace).await.len() == 30
                && !claims.is_empty()
                && claims.iter().all(|c| is_true(c, "Initialized"))
        },
    )
    .await;
    let old: BTreeMap<String, Option<String>> = pool_claims(&client, &pool)
        .await
        .iter()
        .map(|c| (c.name_any(), image_of(c)))
        .collect();
    assert!(
        old.values()
            .all(|i| i.as_deref() == Some(old_image.as_str())),
        "{old:?}"
    );
    pdb_counts(&client, &namespace, "web", 30).await;

    let system_before = system_view(&client).await;
    assert!(system_before.is_whole(), "{system_before:?}");
    let (guard, guarding) = Guard::start(client.clone(), &namespace, "web");
    let watch = Arc::new(Watch::default());
    let replacements = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    let sampler = sample(
        client.clone(),
        pool.clone(),
        watch.clone(),
        replacements.clone(),
    );
    let written = Instant::now();
    put_image(&ssm_path, &new_image).await;

    // The first replacement launch, then a crash right after it.
    let mut first_launch = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    while first_launch.is_none() {
        let claims = pool_claims(&client, &pool).await;
        if claims
            .iter()
            .any(|c| !old.contains_key(&c.name_any()) && is_true(c, "Launched"))
        {
            first_launch = Some(written.elapsed());
        }
        assert!(
            Instant::now() < deadline,
            "no replacement launched 120 s after the SSM write; see {}/e2e/rollout-ami-provisioner.log",
            env.state.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    provisioner.kill9();
    drop(provisioner);
    let restarted = Provisioner::start(env, "rollout-ami-restarted", MOTO, &[]).await;

    eventually(
        "every old node replaced and 30 pods Running on new-image nodes",
        Duration::from_secs(420),
        || async {
            let claims = pool_claims(&client, &pool).await;
            let settled = claims.iter().all(|c| {
                !old.contains_key(&c.name_any())
                    && is_true(c, "Initialized")
                    && image_of(c).as_deref() == Some(new_image.as_str())
            });
            settled && !claims.is_empty() && running(&client, &namespace).await.len() == 30
        },
    )
    .await;
    let rollout = written.elapsed();
    // The restarted process finished at least the replacements it began.
    let metrics = restarted.metrics().await;
    let drained = counter_in(
        &metrics,
        "spotwright_provisioner_disruption_decisions_total{reason=\"Drifted\",result=\"drained\"}",
    );
    let timed = counter_in(
        &metrics,
        "spotwright_provisioner_drift_replacement_seconds_count",
    );
    assert!(
        drained >= 1.0 && timed >= 1.0,
        "drains and drift-to-replacement times are counted:\n{metrics}"
    );
    watch.stop.store(true, Ordering::SeqCst);
    guard.stop();
    let _ = sampler.await;
    let _ = guarding.await;
    let first_launch = first_launch.unwrap_or_default();
    eprintln!(
        "rollout of {} nodes: first replacement launched {:.1}s after the SSM write, all replaced in {:.1}s ({} samples, peak {} disrupted)",
        old.len(),
        first_launch.as_secs_f64(),
        rollout.as_secs_f64(),
        watch.samples.load(Ordering::SeqCst),
        watch.max_disrupting.load(Ordering::SeqCst)
    );
    guard.assert_held(100);
    assert_eq!(
        system_view(&client).await,
        system_before,
        "the same system nodes and add-on pods, untouched"
    );
    let seen = replacements.lock().map(|s| s.clone()).unwrap_or_default();
    assert!(
        watch.max_disrupting.load(Ordering::SeqCst) >= 1 && !seen.is_empty(),
        "the sampler saw the rollout itself (claims being replaced)"
    );
    assert!(
        watch.max_disrupting.load(Ordering::SeqCst) <= 2,
        "the budget of 2 was exceeded: {} at once",
        watch.max_disrupting.load(Ordering::SeqCst)
    );
    for name in old.keys() {
        let sets = seen.get(name).cloned().unwrap_or_default();
        assert!(
            sets.len() <= 1,
            "{name} was replaced more than once: {sets:?}"
        );
    }
    eprintln!(
        "{} nodes before the rollout, {} after",
        old.len(),
        pool_claims(&client, &pool).await.len()
    );
    cleanup(env, &client, &pool, &namespace).await;
}

#[tokio::test]
async fn a_nodepool_change_rolls_its_nodes_except_one_a_do_not_disrupt_pod_holds() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    let _webhook = Webhook::start(env, "rollout-template").await;
    let id = unique_suffix();
    let ssm_path = format!("/spotwright-e2e/rollout-{id}/image_id");
    let (image, _) = two_images().await;
    put_image(&ssm_path, &image).await;
    let (pool, namespace) = setup(env, &client, &id, &ssm_path, "1").await;
    let _provisioner = Provisioner::start(env, "rollout-template", MOTO, &[]).await;

    // One pod per node (hostname anti-affinity): two movable, one held.
    let anti = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchLabels": {"app": "spread"}}, "topologyKey": "kubernetes.io/hostname"}]}});
    let container = json!([{"name": "app", "image": "registry.k8s.io/pause:3.10",
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]);
    env.apply(&json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "spread", "namespace": namespace},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "spread"}},
            "template": {"metadata": {"labels": {"app": "spread"}},
                "spec": {"affinity": anti, "containers": container}}}
    }));
    env.apply(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "held", "namespace": namespace, "labels": {"app": "spread"},
            "annotations": {"spotwright.io/do-not-disrupt": "true"}},
        "spec": {"affinity": anti, "containers": container}
    }));
    eventually(
        "3 pods Running on 3 initialized nodes",
        Duration::from_secs(180),
        || async {
            let claims = pool_claims(&client, &pool).await;
            running(&client, &namespace).await.len() == 3
                && claims.len() == 3
                && claims.iter().all(|c| is_true(c, "Initialized"))
        },
    )
    .await;
    let held_node = Api::<Pod>::namespaced(client.clone(), &namespace)
        .get("held")
        .await
        .ok()
        .and_then(|p| p.spec?.node_name)
        .expect("the held pod's node");
    let before: Vec<NodeClaim> = pool_claims(&client, &pool).await;
    let held_claim = before
        .iter()
        .find(|c| {
            c.status.as_ref().and_then(|s| s.node_name.as_deref()) == Some(held_node.as_str())
        })
        .map(ResourceExt::name_any)
        .expect("the held node's claim");

    // A template label change: every claim's NodePool hash is stale.
    env.kubectl_ok(&[
        "patch",
        "nodepool",
        &pool,
        "--type=merge",
        "-p",
        r#"{"spec":{"template":{"metadata":{"labels":{"e2e.spotwright.io/revision":"2"}}}}}"#,
    ]);
    eventually(
        "the two movable nodes replaced",
        Duration::from_secs(300),
        || async {
            let claims = pool_claims(&client, &pool).await;
            let replaced = before
                .iter()
                .filter(|c| c.name_any() != held_claim)
                .all(|c| !claims.iter().any(|n| n.name_any() == c.name_any()));
            let fresh = claims
                .iter()
                .filter(|c| c.name_any() != held_claim)
                .filter(|c| is_true(c, "Initialized"))
                .count();
            replaced && fresh == 2 && running(&client, &namespace).await.len() == 3
        },
    )
    .await;
    let claims = pool_claims(&client, &pool).await;
    let held = claims
        .iter()
        .find(|c| c.name_any() == held_claim)
        .expect("the held node's claim stays");
    assert!(is_true(held, "Drifted"), "it has drifted all the same");
    assert!(!in_disruption(held), "but it is not being replaced");
    eventually(
        "a node Event saying why it stays",
        Duration::from_secs(30),
        || async {
            event_reasons(&client, &held_node)
                .await
                .iter()
                .any(|r| r == "DisruptionBlocked")
        },
    )
    .await;
    cleanup(env, &client, &pool, &namespace).await;
}

fn ec2_event(detail_type: &str, detail: serde_json::Value) -> String {
    json!({
        "version": "0", "id": "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b",
        "detail-type": detail_type, "source": "aws.ec2",
        "account": "123456789012", "time": "2026-11-25T13:00:00Z", "region": "us-east-1",
        "resources": [], "detail": detail
    })
    .to_string()
}

fn instance_of(claim: &NodeClaim) -> String {
    claim
        .status
        .as_ref()
        .and_then(|s| s.provider_id.as_deref())
        .and_then(|p| p.rsplit('/').next())
        .unwrap_or_default()
        .to_owned()
}

/// The single claim of the pool other than `not`, once initialized.
async fn await_claim(client: &Client, pool: &str, not: Option<&str>, what: &str) -> NodeClaim {
    let mut found = None;
    let deadline = Instant::now() + Duration::from_secs(180);
    while found.is_none() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        found = pool_claims(client, pool).await.into_iter().find(|c| {
            Some(c.name_any().as_str()) != not
                && c.metadata.deletion_timestamp.is_none()
                && is_true(c, "Initialized")
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    found.unwrap_or_else(|| unreachable!())
}

async fn pod_node(client: &Client, namespace: &str) -> Option<String> {
    running(client, namespace)
        .await
        .into_iter()
        .next()
        .and_then(|p| p.spec?.node_name)
}

#[tokio::test]
async fn a_rebalance_replaces_first_and_a_spot_warning_drains_within_the_notice() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    let _webhook = Webhook::start(env, "rollout-interruption").await;
    let id = unique_suffix();
    let ssm_path = format!("/spotwright-e2e/rollout-{id}/image_id");
    let (image, _) = two_images().await;
    put_image(&ssm_path, &image).await;
    let (pool, namespace) = setup(env, &client, &id, &ssm_path, "1").await;
    let sqs = aws_sdk_sqs::Client::new(&spotwright_e2e::aws::sdk_config().await);
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("e2e-rollout-{id}"))
        .send()
        .await
        .expect("CreateQueue on moto")
        .queue_url
        .expect("queue URL");
    let provisioner = Provisioner::start(
        env,
        "rollout-interruption",
        MOTO,
        &["--interruption-queue", &queue_url],
    )
    .await;
    env.apply(&deployment(&namespace, "one", 1, "1", "1Gi"));
    let first = await_claim(&client, &pool, None, "the first node").await;
    eventually("the pod Running", Duration::from_secs(60), || async {
        pod_node(&client, &namespace).await.is_some()
    })
    .await;
    let send = |body: String| {
        let (sqs, url) = (sqs.clone(), queue_url.clone());
        async move {
            sqs.send_message()
                .queue_url(url)
                .message_body(body)
                .send()
                .await
                .expect("SendMessage");
        }
    };

    // Garbage first: it is counted and dropped, and the loop goes on.
    send("{this is not an EventBridge event".to_owned()).await;
    let detail = json!({"instance-id": instance_of(&first)});
    send(ec2_event("EC2 Instance Rebalance Recommendation", detail)).await;
    // The replacement must be initialized before the old claim starts to go.
    let (mut replacement_up, mut old_going) = (None, None);
    let started = Instant::now();
    while replacement_up.is_none() || old_going.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "rebalance not carried out; see {}/e2e/rollout-interruption-provisioner.log",
            env.state.display()
        );
        let claims = pool_claims(&client, &pool).await;
        let old = claims.iter().find(|c| c.name_any() == first.name_any());
        if old_going.is_none() && old.is_none_or(|c| c.metadata.deletion_timestamp.is_some()) {
            old_going = Some(started.elapsed());
        }
        let up = claims.iter().any(|c| {
            c.labels().get(keys::REPLACES_LABEL) == Some(&first.name_any())
                && is_true(c, "Initialized")
        });
        if replacement_up.is_none() && up {
            replacement_up = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        replacement_up <= old_going,
        "the replacement came up at {replacement_up:?}, after the old node started to go at {old_going:?}"
    );
    let second = await_claim(&client, &pool, Some(&first.name_any()), "the replacement").await;
    eventually(
        "the pod to move to the replacement",
        Duration::from_secs(120),
        || async {
            pod_node(&client, &namespace).await
                == second.status.as_ref().and_then(|s| s.node_name.clone())
        },
    )
    .await;

    // A Spot interruption warning: two minutes' notice.
    let warned = Instant::now();
    let detail = json!({"instance-id": instance_of(&second), "instance-action": "terminate"});
    send(ec2_event("EC2 Spot Instance Interruption Warning", detail)).await;
    let second_node = second.status.as_ref().and_then(|s| s.node_name.clone());
    eventually(
        "the pod Running on a new node, within the notice",
        Duration::from_secs(120),
        || async {
            let node = pod_node(&client, &namespace).await;
            node.is_some() && node != second_node
        },
    )
    .await;
    eprintln!(
        "rebalance: replacement up after {:.1}s, old node draining after {:.1}s; spot warning: pod moved in {:.1}s",
        replacement_up.unwrap_or_default().as_secs_f64(),
        old_going.unwrap_or_default().as_secs_f64(),
        warned.elapsed().as_secs_f64()
    );
    let metrics = provisioner.metrics().await;
    assert!(
        metrics.contains("spotwright_provisioner_interruption_messages_total{kind=\"malformed\",outcome=\"malformed\"} 1"),
        "the garbage message was counted:\n{metrics}"
    );
    cleanup(env, &client, &pool, &namespace).await;
    let _ = sqs.delete_queue().queue_url(&queue_url).send().await;
}

#[tokio::test]
async fn an_expired_node_is_replaced_even_with_a_budget_of_zero() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    let _webhook = Webhook::start(env, "rollout-expiry").await;
    let id = unique_suffix();
    let ssm_path = format!("/spotwright-e2e/rollout-{id}/image_id");
    let (image, _) = two_images().await;
    put_image(&ssm_path, &image).await;
    let (pool, namespace) = setup(env, &client, &id, &ssm_path, "0").await;
    env.kubectl_ok(&[
        "patch",
        "nodepool",
        &pool,
        "--type=merge",
        "-p",
        r#"{"spec":{"template":{"spec":{"expireAfter":"40s"}}}}"#,
    ]);
    let _provisioner = Provisioner::start(env, "rollout-expiry", MOTO, &[]).await;
    env.apply(&deployment(&namespace, "one", 1, "1", "1Gi"));
    let first = await_claim(&client, &pool, None, "the first node").await;
    assert_eq!(first.spec.expire_after.as_deref(), Some("40s"));
    let second = await_claim(&client, &pool, Some(&first.name_any()), "the replacement").await;
    assert_eq!(
        second.labels().get(keys::REPLACES_LABEL),
        Some(&first.name_any()),
        "a replacement launched for the expired node, new node first"
    );
    eventually(
        "the expired claim gone and the pod Running elsewhere",
        Duration::from_secs(120),
        || async {
            // The replacement expires in turn 40 s on: any node but the first will do.
            let first_node = first.status.as_ref().and_then(|s| s.node_name.clone());
            let node = pod_node(&client, &namespace).await;
            let claims = pool_claims(&client, &pool).await;
            !claims.iter().any(|c| c.name_any() == first.name_any())
                && node.is_some()
                && node != first_node
        },
    )
    .await;
    cleanup(env, &client, &pool, &namespace).await;
}
