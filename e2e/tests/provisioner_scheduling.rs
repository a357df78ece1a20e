//! Scheduling fidelity on the real control plane and moto, each case through
//! the real second scheduler: every promised label, no launch loop,
//! `minValuesPolicy: BestEffort`, preferred node affinity, pod affinity and
//! zone anti-affinity, scheduling gates, volumes' zones, and `spec.limits`
//! with `Gte`.

mod pools;

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client};
use serde_json::json;
use spotwright_api::reservation::{self, Reservation};
use spotwright_e2e::harness::process::eventually;
use spotwright_e2e::harness::provisioner::Provisioner;
use spotwright_e2e::harness::webhook::{counter_in, Webhook};
use spotwright_e2e::harness::{env, unique_suffix, Env};

use pools::*;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    let reserved = claims[0]
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(reservation::ANNOTATION))
        .map(|value| Reservation::parse(value));
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    assert!(
        matches!(&reserved, Some(Ok(r)) if r.pods == [uid.clone()] && r.cpu_millis > 0),
        "the claim holds room for its pod {uid}: {reserved:?}"
    );
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

/// One of two pods that each need a node of their own (hostname
/// anti-affinity), `gated` with a scheduling gate when `gated` is true.
fn apart_pod(env: &Env, namespace: &str, name: &str, gated: bool) {
    let gates = if gated {
        json!([{"name": "example.com/hold"}])
    } else {
        json!([])
    };
    env.apply(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "apart"}},
        "spec": {
            "schedulingGates": gates,
            "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "apart"}}}]}},
            "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}}}]}
    }));
}

#[tokio::test]
async fn a_gated_pod_gets_no_node_until_its_gate_is_removed() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    let _webhook = Webhook::start(env, "provisioner-gates").await;
    let id = unique_suffix();
    let pool = pool(env, &client, &id).await;
    let namespace = format!("prov-{id}");
    let _provisioner = Provisioner::start(env, "gates", MOTO, &[]).await;
    // The gated pod is created first, so every pass that sees the open one
    // (the watch keeps their order) has seen the gated one too.
    apart_pod(env, &namespace, "held", true);
    apart_pod(env, &namespace, "open", false);
    eventually("the open pod to run", Duration::from_secs(150), || async {
        running_pods(&client, &namespace).await.len() == 1
    })
    .await;
    // A batch closes a second after its last pod: a few passes' time.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        pool_claims(&client, &pool).await.len(),
        1,
        "no launch for the gated pod\n{}",
        state_dump(env, &pool, &namespace, "gates")
    );
    env.kubectl_ok(&[
        "patch",
        "pod",
        "held",
        "-n",
        &namespace,
        "--type=json",
        "-p",
        r#"[{"op": "remove", "path": "/spec/schedulingGates"}]"#,
    ]);
    eventually("both pods to run", Duration::from_secs(150), || async {
        running_pods(&client, &namespace).await.len() == 2
    })
    .await;
    assert_eq!(pool_claims(&client, &pool).await.len(), 2, "one node each");
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
    // The replicas come once the group runs: launched together, the
    // scheduler may bind the target to a replica's new node first (it
    // picks among ready nodes, without the extender here), where its
    // followers cannot all follow.
    eventually(
        "the target and its followers to run",
        Duration::from_secs(180),
        || async { running_pods(&client, &namespace).await.len() == 3 },
    )
    .await;
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
    let Scenario {
        webhook: _webhook,
        pool,
        namespace,
    } = scenario(
        env,
        &client,
        "provisioner-limits",
        spot_amd64(json!([
            {"key": "spotwright.io/instance-cpu", "operator": "Gte", "values": ["4"]}
        ])),
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
