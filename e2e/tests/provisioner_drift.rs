//! Drift detection against the real control plane: the drift controller
//! runs in-process and watches only this test's NodeClaim (by label). The
//! NodeClass's resolved AMIs are written by the test, standing in for the
//! NodeClass controller's SSM refresh.

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;
use spotwright_api::{NodeClaim, NodeClass, NodePool};
use spotwright_e2e::harness::process::eventually;
use spotwright_e2e::harness::{env, expect_events, unique_suffix};
use spotwright_e2e::node_agent::nodes::register;
use spotwright_provisioner::act::events::Events;
use spotwright_provisioner::controllers::drift::{
    self, Drift, DriftSettings, AMI_DRIFT, NODEPOOL_DRIFT, NOT_DRIFTED, REQUIREMENTS_DRIFT,
};
use spotwright_provisioner::model::clock::SystemClock;
use spotwright_provisioner::model::hashing::template_hashes;
use spotwright_provisioner::state::{ClusterState, StateConfig};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Label on the test's NodeClaim; the controller selects on it.
const TEST_LABEL: &str = "e2e.spotwright.io/drift";

const WAIT: Duration = Duration::from_secs(30);

/// The claim's `Drifted` condition as (status, reason).
fn drifted(claim: &NodeClaim) -> Option<(String, String)> {
    claim
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Drifted")
        .map(|c| (c.status.clone(), c.reason.clone()))
}

async fn wait_for_drift(claims: &Api<NodeClaim>, name: &str, status: &str, reason: &str) {
    let what = format!("Drifted={status} with reason {reason}");
    eventually(&what, WAIT, || async {
        claims.get(name).await.ok().as_ref().and_then(drifted)
            == Some((status.to_owned(), reason.to_owned()))
    })
    .await;
}

async fn set_amis(classes: &Api<NodeClass>, name: &str, ids: &[&str]) {
    let amis: Vec<_> = ids
        .iter()
        .map(|id| json!({"id": id, "source": "e2e"}))
        .collect();
    classes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"amis": amis}})),
        )
        .await
        .expect("NodeClass status");
}

async fn patch_pool(pools: &Api<NodePool>, name: &str, template_spec: serde_json::Value) {
    pools
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"template": {"spec": template_spec}}})),
        )
        .await
        .expect("NodePool patched");
}

#[tokio::test]
async fn ami_template_and_requirement_changes_drift_and_reverting_clears() {
    let _serial = SERIAL.lock().await;
    let client = env().client().await;
    let id = unique_suffix();
    let name = format!("e2e-drift-{id}");
    let classes: Api<NodeClass> = Api::all(client.clone());
    let pools: Api<NodePool> = Api::all(client.clone());
    let claims: Api<NodeClaim> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client.clone());

    // A NodeClass whose SSM path does not exist: only the test writes its AMIs.
    let class: NodeClass = serde_json::from_value(json!({
        "apiVersion": "spotwright.io/v1alpha1", "kind": "NodeClass", "metadata": {"name": name},
        "spec": {
            "amiSelector": {"ssmParameter": format!("/e2e/drift/{id}/image_id")},
            "subnetSelector": [{"id": "subnet-e2e"}],
            "securityGroupSelector": [{"id": "sg-e2e"}]
        }
    }))
    .expect("class manifest");
    let class = classes
        .create(&PostParams::default(), &class)
        .await
        .expect("NodeClass created");
    set_amis(&classes, &name, &["ami-0e2e0001"]).await;
    let pool: NodePool = serde_json::from_value(json!({
        "apiVersion": "spotwright.io/v1alpha1", "kind": "NodePool", "metadata": {"name": name},
        "spec": {"template": {
            "metadata": {"labels": {"team": "red"}},
            "spec": {
                "nodeClassRef": {"name": name},
                "taints": [{"key": "e2e.spotwright.io/dedicated", "effect": "NoSchedule"}],
                "requirements": [{"key": "team", "operator": "In", "values": ["red"]}]
            }
        }}
    }))
    .expect("pool manifest");
    let pool = pools
        .create(&PostParams::default(), &pool)
        .await
        .expect("NodePool created");

    // The claim as the provisioner makes it: with the hashes of what the API
    // server stored (defaults applied), then launched from the first AMI.
    let (pool_hash, class_hash) = template_hashes(&pool, &class);
    let provider_id = format!("aws:///us-east-1a/i-0e2ed{id}");
    let claim: NodeClaim = serde_json::from_value(json!({
        "apiVersion": "spotwright.io/v1alpha1", "kind": "NodeClaim",
        "metadata": {
            "name": name,
            "labels": {"spotwright.io/nodepool": name, "team": "red", TEST_LABEL: id},
            "annotations": {"spotwright.io/nodepool-hash": pool_hash, "spotwright.io/nodeclass-hash": class_hash}
        },
        "spec": {"nodeClassRef": {"name": name}}
    }))
    .expect("claim manifest");
    claims
        .create(&PostParams::default(), &claim)
        .await
        .expect("NodeClaim created");
    claims
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {
                "providerID": provider_id, "instanceType": "m5.large", "zone": "us-east-1a",
                "capacityType": "spot", "imageID": "ami-0e2e0001", "nodeName": name
            }})),
        )
        .await
        .expect("claim status");
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"},
            "labels": {"kubernetes.io/hostname": name, "type": "kwok", "team": "red", "spotwright.io/nodepool": name}},
        "spec": {"providerID": provider_id},
    }))
    .expect("node manifest");
    register(&nodes, &node).await.expect("node registered");

    let settings = DriftSettings {
        interval: Duration::from_millis(500),
        ..DriftSettings::default()
    };
    let config = StateConfig {
        claim_selector: Some(format!("{TEST_LABEL}={id}")),
    };
    let controller = tokio::spawn(drift::run(Drift {
        client: client.clone(),
        state: ClusterState::watch(&client, &config),
        events: Events::new(client.clone()),
        clock: std::sync::Arc::new(SystemClock),
        settings,
    }));

    // Nothing changed: no drift is recorded.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fresh = claims.get(&name).await.expect("claim");
    assert_eq!(drifted(&fresh), None, "an unchanged claim has not drifted");

    // A new AMI resolved: the node's image is no longer among them.
    set_amis(&classes, &name, &["ami-0e2e0002"]).await;
    wait_for_drift(&claims, &name, "True", AMI_DRIFT).await;
    expect_events(&client, &name, &[AMI_DRIFT]).await;
    // The nodeName registration recorded survives the drift writes.
    let after = claims.get(&name).await.expect("claim");
    assert_eq!(
        after.status.as_ref().and_then(|s| s.node_name.as_deref()),
        Some(name.as_str())
    );
    // The old AMI is back (a rolled-back SSM parameter): the drift clears.
    set_amis(&classes, &name, &["ami-0e2e0002", "ami-0e2e0001"]).await;
    wait_for_drift(&claims, &name, "False", NOT_DRIFTED).await;

    // The template's taints change: NodePool drift; changed back, cleared.
    let taint = json!({"key": "e2e.spotwright.io/dedicated", "effect": "NoSchedule"});
    let extra = json!({"key": "e2e.spotwright.io/extra", "effect": "NoSchedule"});
    patch_pool(&pools, &name, json!({"taints": [taint, extra]})).await;
    wait_for_drift(&claims, &name, "True", NODEPOOL_DRIFT).await;
    patch_pool(&pools, &name, json!({"taints": [taint]})).await;
    wait_for_drift(&claims, &name, "False", NOT_DRIFTED).await;

    // A requirement the node's labels no longer meet: requirements drift.
    let blue = json!([{"key": "team", "operator": "In", "values": ["blue"]}]);
    patch_pool(&pools, &name, json!({"requirements": blue})).await;
    wait_for_drift(&claims, &name, "True", REQUIREMENTS_DRIFT).await;
    let both = json!([{"key": "team", "operator": "In", "values": ["blue", "red"]}]);
    patch_pool(&pools, &name, json!({"requirements": both})).await;
    wait_for_drift(&claims, &name, "False", NOT_DRIFTED).await;

    controller.abort();
    let _ = claims
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"finalizers": null}})),
        )
        .await;
    let _ = claims.delete(&name, &DeleteParams::default()).await;
    let _ = nodes.delete(&name, &DeleteParams::default()).await;
    let _ = pools.delete(&name, &DeleteParams::default()).await;
    let _ = classes.delete(&name, &DeleteParams::default()).await;
}
