//! The webhook against the real API server: what `kubectl` users see.
//! Tests share the webhook's port, so they take turns (SERIAL).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use spotwright_e2e::harness::process::eventually;
use spotwright_e2e::harness::prometheus::Prometheus;
use spotwright_e2e::harness::webhook::{
    await_opt_in, counter_in, rotate_certificate, Webhook, WEBHOOK_METRICS_PORT,
};
use spotwright_e2e::harness::{env, Env};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn unique(base: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{base}-{:x}", nanos % 0xffff_ffff)
}

async fn namespace(client: &Client, base: &str, annotations: &[(&str, &str)]) -> String {
    let name = unique(base);
    let annotations: BTreeMap<String, String> = annotations
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name, "annotations": annotations}}))
            .unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace created");
    name
}

fn pod_manifest(name: &str, annotations: &[(&str, &str)]) -> Pod {
    let annotations: BTreeMap<String, String> = annotations
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}
    }))
    .unwrap()
}

async fn create_pod(
    client: &Client,
    namespace: &str,
    name: &str,
    annotations: &[(&str, &str)],
) -> Pod {
    Api::<Pod>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &pod_manifest(name, annotations))
        .await
        .unwrap_or_else(|e| panic!("pod {namespace}/{name} not created: {e}"))
}

fn scheduler(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .unwrap_or("")
}

fn has_spot_toleration(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_ref())
        .is_some_and(|ts| {
            ts.iter().any(|t| {
                t.key.as_deref() == Some("spotwright.io/capacity-type")
                    && t.value.as_deref() == Some("spot")
                    && t.effect.as_deref() == Some("NoSchedule")
            })
        })
}

/// `(key, operator, values)` of every required node-selector expression, per term.
fn required(pod: &Pod) -> Vec<Vec<(String, String, Vec<String>)>> {
    let terms = pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|r| r.node_selector_terms.clone())
        .unwrap_or_default();
    terms
        .into_iter()
        .map(|t| {
            t.match_expressions
                .unwrap_or_default()
                .into_iter()
                .map(|e| (e.key, e.operator, e.values.unwrap_or_default()))
                .collect()
        })
        .collect()
}

fn expr(key: &str, operator: &str, values: &[&str]) -> (String, String, Vec<String>) {
    (
        key.into(),
        operator.into(),
        values.iter().map(|v| (*v).into()).collect(),
    )
}

fn untouched(pod: &Pod) -> bool {
    scheduler(pod) == "default-scheduler" && !has_spot_toleration(pod) && required(pod).is_empty()
}

async fn deployment_pods(
    client: &Client,
    namespace: &str,
    name: &str,
    replicas: usize,
) -> Vec<Pod> {
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}}
        }
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &deployment)
        .await
        .expect("deployment created");
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let selector = ListParams::default().labels(&format!("app={name}"));
    eventually(
        &format!("{replicas} pods of {namespace}/{name}"),
        Duration::from_secs(60),
        || async {
            pods.list(&selector)
                .await
                .is_ok_and(|l| l.items.len() >= replicas)
        },
    )
    .await;
    pods.list(&selector).await.expect("pods listed").items
}

async fn apiserver_fail_open_count(client: &Client) -> f64 {
    let request = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client
        .request_text(request)
        .await
        .expect("API server metrics");
    text.lines()
        .filter(|l| {
            l.starts_with("apiserver_admission_webhook_fail_open_count{")
                && l.contains("name=\"pods.spotwright.io\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn cleanup(client: &Client, namespaces: &[String]) {
    for ns in namespaces {
        let _ = Api::<Namespace>::all(client.clone())
            .delete(ns, &DeleteParams::default())
            .await;
    }
}

#[tokio::test]
async fn an_opted_in_deployment_gets_spot_scheduling() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    let _webhook = Webhook::start(env, "spot-deployment").await;
    let ns = namespace(&client, "team-spot", &[("spotwright.io/capacity", "spot")]).await;
    await_opt_in(&client, &ns).await;
    let pods = deployment_pods(&client, &ns, "web", 3).await;
    for pod in &pods {
        assert!(has_spot_toleration(pod), "{:?}", pod.spec);
        assert_eq!(
            required(pod),
            vec![vec![expr("spotwright.io/capacity-type", "In", &["spot"])]]
        );
        assert_eq!(scheduler(pod), "spotwright-scheduler");
    }
    cleanup(&client, &[ns]).await;
}

#[tokio::test]
async fn plain_and_system_namespaces_are_untouched() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    let _webhook = Webhook::start(env, "untouched").await;
    let plain = namespace(&client, "plain", &[]).await;
    for pod in deployment_pods(&client, &plain, "web", 2).await {
        assert!(
            untouched(&pod),
            "plain namespace pod was mutated: {:?}",
            pod.spec
        );
    }
    // kube-system is excluded even when someone annotates it.
    env.kubectl_ok(&[
        "annotate",
        "--overwrite",
        "namespace",
        "kube-system",
        "spotwright.io/capacity=spot",
    ]);
    let name = unique("e2e-untouched");
    for pod in deployment_pods(&client, "kube-system", &name, 2).await {
        assert!(
            untouched(&pod),
            "kube-system pod was mutated: {:?}",
            pod.spec
        );
    }
    env.kubectl_ok(&[
        "-n",
        "kube-system",
        "delete",
        "deployment",
        &name,
        "--wait=false",
    ]);
    env.kubectl_ok(&[
        "annotate",
        "namespace",
        "kube-system",
        "spotwright.io/capacity-",
    ]);
    cleanup(&client, &[plain]).await;
}

#[tokio::test]
async fn each_capacity_value_and_a_nodepool_follow_the_contract() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    env.kubectl_with_input(&["apply", "--server-side", "-f", "-"], Some(GPU_NODEPOOL));
    let _webhook = Webhook::start(env, "contract").await;
    let preferred = namespace(
        &client,
        "pref",
        &[("spotwright.io/capacity", "spot-preferred")],
    )
    .await;
    let on_demand = namespace(&client, "od", &[("spotwright.io/capacity", "on-demand")]).await;
    let spot = namespace(&client, "spot", &[("spotwright.io/capacity", "spot")]).await;
    let pooled = namespace(
        &client,
        "pool",
        &[
            ("spotwright.io/capacity", "spot"),
            ("spotwright.io/nodepool", "e2e-gpu"),
        ],
    )
    .await;
    for ns in [&preferred, &on_demand, &spot, &pooled] {
        await_opt_in(&client, ns).await;
    }

    let pod = create_pod(&client, &preferred, "p", &[]).await;
    assert!(has_spot_toleration(&pod));
    assert_eq!(
        required(&pod),
        vec![vec![expr("spotwright.io/nodepool", "Exists", &[])]]
    );
    let preferred_terms = pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref());
    let preferred_terms = preferred_terms
        .and_then(|n| {
            n.preferred_during_scheduling_ignored_during_execution
                .clone()
        })
        .unwrap_or_default();
    assert_eq!(preferred_terms.len(), 1);
    assert_eq!(preferred_terms[0].weight, 100);

    let pod = create_pod(&client, &on_demand, "p", &[]).await;
    assert!(!has_spot_toleration(&pod));
    assert_eq!(
        required(&pod),
        vec![vec![expr(
            "spotwright.io/capacity-type",
            "In",
            &["on-demand"]
        )]]
    );
    assert_eq!(scheduler(&pod), "spotwright-scheduler");

    let pod = create_pod(
        &client,
        &spot,
        "opted-out",
        &[("spotwright.io/capacity", "none")],
    )
    .await;
    assert!(
        untouched(&pod),
        "a pod-level none was mutated: {:?}",
        pod.spec
    );

    let pod = create_pod(&client, &pooled, "p", &[]).await;
    assert_eq!(
        required(&pod),
        vec![vec![
            expr("spotwright.io/capacity-type", "In", &["spot"]),
            expr("spotwright.io/nodepool", "In", &["e2e-gpu"])
        ]]
    );
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    assert!(tolerations
        .iter()
        .any(|t| t.key.as_deref() == Some("nvidia.com/gpu")
            && t.effect.as_deref() == Some("NoSchedule")));
    cleanup(&client, &[preferred, on_demand, spot, pooled]).await;
}

const GPU_NODEPOOL: &str = r#"
apiVersion: spotwright.io/v1alpha1
kind: NodePool
metadata:
  name: e2e-gpu
spec:
  template:
    spec:
      nodeClassRef:
        name: default
      taints:
        - key: nvidia.com/gpu
          value: "true"
          effect: NoSchedule
"#;

#[tokio::test]
async fn pods_are_still_created_while_the_webhook_is_down() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    let mut webhook = Webhook::start(env, "fail-open").await;
    let ns = namespace(&client, "fail-open", &[("spotwright.io/capacity", "spot")]).await;
    await_opt_in(&client, &ns).await;
    webhook.process.kill();
    let before = apiserver_fail_open_count(&client).await;
    let started = Instant::now();
    let pod = create_pod(&client, &ns, "while-down", &[]).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "creation took {took:?}, more than the webhook timeout of 2s"
    );
    assert!(
        untouched(&pod),
        "nothing could have mutated it: {:?}",
        pod.spec
    );
    let after = apiserver_fail_open_count(&client).await;
    assert!(
        after >= before + 1.0,
        "apiserver_admission_webhook_fail_open_count went from {before} to {after}"
    );
    cleanup(&client, &[ns]).await;
}

#[tokio::test]
async fn an_invalid_value_is_a_warning_in_kubectl_output() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    let webhook = Webhook::start(env, "invalid").await;
    let ns = namespace(&client, "typo", &[("spotwright.io/capacity", "spto")]).await;
    let mut last = String::new();
    eventually(
        "kubectl to print the webhook's warning",
        Duration::from_secs(10),
        || {
            let output = env.kubectl(&[
                "-n",
                &ns,
                "run",
                &unique("p"),
                "--image=registry.k8s.io/pause:3.10",
                "--restart=Never",
            ]);
            last = String::from_utf8_lossy(&output.stderr).into_owned();
            let warned = output.status.success()
                && last.contains("Warning: spotwright.io/capacity: \"spto\"");
            async move { warned }
        },
    )
    .await;
    assert!(last.contains("pod admitted unchanged"), "{last}");
    assert!(
        webhook
            .counter("spotwright_webhook_invalid_annotations_total{reason=\"unknown-capacity\"}")
            .await
            >= 1.0
    );
    cleanup(&client, &[ns]).await;
}

#[tokio::test]
async fn certificates_rotate_while_pods_are_created_with_no_failure() {
    let _turn = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    let webhook = Webhook::start(env, "rotation").await;
    let ns = namespace(&client, "rotation", &[("spotwright.io/capacity", "spot")]).await;
    await_opt_in(&client, &ns).await;
    let fail_open_before = apiserver_fail_open_count(&client).await;
    let cert_before = std::fs::read(webhook.tls_dir.join("tls.crt")).expect("cert file");

    let creator = {
        let client = client.clone();
        let ns = ns.clone();
        tokio::spawn(async move {
            let mut results = Vec::new();
            for i in 0..80 {
                let pod = Api::<Pod>::namespaced(client.clone(), &ns)
                    .create(
                        &PostParams::default(),
                        &pod_manifest(&format!("p-{i}"), &[]),
                    )
                    .await;
                results.push(
                    pod.map(|p| scheduler(&p) == "spotwright-scheduler")
                        .map_err(|e| e.to_string()),
                );
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            results
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    let tls_dir = webhook.tls_dir.clone();
    let rotate_in = tls_dir.clone();
    tokio::task::spawn_blocking(move || rotate_certificate(env, &rotate_in))
        .await
        .unwrap();
    let results = creator.await.unwrap();
    let failed: Vec<_> = results.iter().filter(|r| !matches!(r, Ok(true))).collect();
    assert!(
        failed.is_empty(),
        "{} of {} creations failed or went unmutated: {failed:?}",
        failed.len(),
        results.len()
    );
    assert_ne!(
        std::fs::read(tls_dir.join("tls.crt")).unwrap(),
        cert_before,
        "the certificate was rotated"
    );
    eventually(
        "the webhook to count the reload",
        Duration::from_secs(5),
        || async {
            webhook
                .counter("spotwright_webhook_cert_reloads_total{result=\"success\"}")
                .await
                >= 1.0
        },
    )
    .await;
    assert_eq!(
        apiserver_fail_open_count(&client).await,
        fail_open_before,
        "no admission failed open"
    );
    cleanup(&client, &[ns]).await;
}

#[tokio::test]
async fn prometheus_scrapes_the_admission_counter() {
    let _turn = SERIAL.lock().await;
    let env: &'static Env = env();
    let client = env.client().await;
    let webhook = Webhook::start(env, "prometheus").await;
    let prometheus = Prometheus::start(
        env,
        "spotwright-webhook",
        &[&format!("127.0.0.1:{WEBHOOK_METRICS_PORT}")],
    )
    .await;
    let ns = namespace(&client, "scraped", &[("spotwright.io/capacity", "spot")]).await;
    await_opt_in(&client, &ns).await;
    let before = counter_in(
        &webhook.metrics().await,
        "spotwright_webhook_admissions_total{outcome=\"mutated\"}",
    );
    for i in 0..5 {
        create_pod(&client, &ns, &format!("p-{i}"), &[]).await;
    }
    let expected = before + 5.0;
    let query =
        "spotwright_webhook_admissions_total{job=\"spotwright-webhook\",outcome=\"mutated\"}";
    let prometheus = &prometheus;
    eventually(
        "Prometheus to report the mutated admissions",
        Duration::from_secs(30),
        || async move { prometheus.query_value(query).await == Some(expected) },
    )
    .await;
    assert_eq!(prometheus.query_value(query).await, Some(expected));
    cleanup(&client, &[ns]).await;
}
