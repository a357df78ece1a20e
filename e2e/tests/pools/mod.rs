//! NodePools, namespaces and what the provisioner's e2e binaries ask of
//! them: shared by the e2e binaries that `mod pools;` it, so each
//! binary uses only part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::json;
use spotwright_api::NodeClaim;
use spotwright_e2e::harness::process::eventually;
use spotwright_e2e::harness::provisioner::{ec2, ensure_network, local_nodeclass};
use spotwright_e2e::harness::webhook::{opted_in_namespace, Webhook};
use spotwright_e2e::harness::{unique_suffix, Env};

pub const MOTO: &str = "http://127.0.0.1:15000";
pub const MIN_TYPES: usize = 5;
pub const CPU_LIMIT: u64 = 200;

/// A NodeClass on the test network and a Spot-only NodePool that removes
/// empty nodes at once, with `minValues` on instance types and a CPU limit.
pub async fn pool(env: &Env, client: &Client, id: &str) -> String {
    pool_with(env, client, id, "0s").await
}

/// The same, removing empty nodes after `consolidate_after`.
pub async fn pool_with(env: &Env, client: &Client, id: &str, consolidate_after: &str) -> String {
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
pub async fn pool_from(
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

/// What a test runs in: the webhook (serving while this is held), a
/// NodePool made by [`pool_from`] and the namespace opted in to it.
pub struct Scenario {
    pub webhook: Webhook,
    pub pool: String,
    pub namespace: String,
}

/// Starts the webhook `name` and makes a NodePool of `template_spec` and
/// `spec` with its namespace ([`pool_from`]).
pub async fn scenario(
    env: &'static Env,
    client: &Client,
    name: &str,
    template_spec: serde_json::Value,
    spec: serde_json::Value,
) -> Scenario {
    let webhook = Webhook::start(env, name).await;
    let id = unique_suffix();
    let pool = pool_from(env, client, &id, template_spec, spec).await;
    Scenario {
        webhook,
        pool,
        namespace: format!("prov-{id}"),
    }
}

pub fn kubernetes_minor(env: &Env) -> String {
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

pub async fn pool_claims(client: &Client, pool: &str) -> Vec<NodeClaim> {
    Api::<NodeClaim>::all(client.clone())
        .list(&ListParams::default().labels(&format!("spotwright.io/nodepool={pool}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// Running (or pending) instances launched for `pool`, by instance id, with their NodeClaim tag.
pub async fn pool_instances(pool: &str) -> BTreeMap<String, String> {
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

pub async fn running_pods(client: &Client, namespace: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .collect()
}

/// Deletes the namespace and the NodePool, waits until the pool's claims and
/// instances are gone, then deletes its NodeClass. NodePool deletion takes
/// the nodes at once: waiting for emptiness would add the pool's
/// `consolidateAfter` or the nomination window to every test.
pub async fn cleanup(env: &Env, client: &Client, pool: &str, namespace: &str) {
    env.kubectl(&["delete", "namespace", namespace, "--wait=false"]);
    env.kubectl(&["delete", "nodepool", pool, "--wait=false"]);
    eventually(
        &format!("{pool}'s nodes and claims to go"),
        Duration::from_secs(120),
        || async {
            pool_claims(client, pool).await.is_empty() && pool_instances(pool).await.is_empty()
        },
    )
    .await;
    env.kubectl(&["delete", "nodeclass", pool, "--wait=false"]);
}

/// A NodePool template spec for amd64 Spot capacity, plus `more` requirements.
pub fn spot_amd64(more: serde_json::Value) -> serde_json::Value {
    let mut requirements = vec![
        json!({"key": "spotwright.io/capacity-type", "operator": "In", "values": ["spot"]}),
        json!({"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}),
    ];
    requirements.extend(more.as_array().cloned().unwrap_or_default());
    json!({ "requirements": requirements })
}

/// A NodePool spec part: empty nodes go after `after`, at most `nodes` at once.
pub fn when_empty(after: &str, nodes: &str) -> serde_json::Value {
    json!({"disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": after,
        "budgets": [{"nodes": nodes}]}})
}
