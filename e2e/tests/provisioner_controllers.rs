//! The provisioner's registration, termination and removal controllers, and
//! its leader election, against the real control plane. EC2 is replaced by
//! a fake that records terminations; nodes are KWOK nodes made by the test.
//! Each test's controllers only watch NodeClaims carrying the test's own
//! label, so claims of other tests are never touched.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use spotwright_api::{keys, NodeClaim};
use spotwright_e2e::harness::process::eventually;
use spotwright_e2e::harness::{env, event_reasons, expect_events, unique_suffix, Env};
use spotwright_e2e::node_agent::nodes::register;
use spotwright_provisioner::act::events::Events;
use spotwright_provisioner::act::instances::{InstanceInfo, Instances};
use spotwright_provisioner::controllers::emptiness::{self, Emptiness, EmptinessSettings};
use spotwright_provisioner::controllers::pod_events::{self, PodEvents};
use spotwright_provisioner::controllers::registration::{self, Registration, RegistrationSettings};
use spotwright_provisioner::controllers::termination::{self, Termination, TerminationSettings};
use spotwright_provisioner::model;
use spotwright_provisioner::model::claim::{elapsed, TERMINATION_FINALIZER};
use spotwright_provisioner::model::clock::{SharedClock, SystemClock};
use spotwright_provisioner::model::pod_events::PodsSeen;
use spotwright_provisioner::run::leader::{run_as_leader, LeaderSettings};
use spotwright_provisioner::state::{ClusterState, StateConfig};
use spotwright_provisioner::Error;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Label on every NodeClaim a test makes; its controllers select on it.
const TEST_LABEL: &str = "e2e.spotwright.io/controllers";

/// EC2 stand-in: records what was terminated.
#[derive(Default)]
struct FakeInstances {
    terminated: Mutex<Vec<String>>,
}

impl FakeInstances {
    fn terminated(&self) -> Vec<String> {
        self.terminated
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
    }
}

impl Instances for FakeInstances {
    async fn terminate(&self, ids: &[String]) -> Result<(), Error> {
        if let Ok(mut terminated) = self.terminated.lock() {
            terminated.extend_from_slice(ids);
        }
        Ok(())
    }

    async fn list_cluster_instances(&self) -> Result<Vec<InstanceInfo>, Error> {
        Ok(Vec::new())
    }
}

fn instance_of(id: &str) -> String {
    format!("i-0e2e{id}")
}

fn provider_id_of(id: &str) -> String {
    format!("aws:///us-east-1a/{}", instance_of(id))
}

/// A Ready KWOK node with the test's providerID.
async fn kwok_node(client: &Client, name: &str, id: &str, extra_labels: serde_json::Value) -> Node {
    let mut labels = json!({"kubernetes.io/hostname": name, "type": "kwok", "user-label": "kept"});
    if let (Some(labels), Some(extra)) = (labels.as_object_mut(), extra_labels.as_object()) {
        labels.extend(extra.clone());
    }
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"}, "labels": labels},
        "spec": {"providerID": provider_id_of(id), "taints": [{"key": "user-taint", "effect": "NoSchedule"}]},
        "status": {"allocatable": {"cpu": "2", "memory": "8Gi", "pods": "29"}, "capacity": {"cpu": "2", "memory": "8Gi", "pods": "29"}},
    }))
    .expect("node manifest");
    let api: Api<Node> = Api::all(client.clone());
    register(&api, &node).await.expect("node registered");
    eventually("the node to be Ready", Duration::from_secs(30), || async {
        api.get_opt(name).await.ok().flatten().is_some_and(|n| {
            n.status
                .and_then(|s| s.conditions)
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
    })
    .await;
    api.get(name).await.expect("node")
}

/// A launched NodeClaim of `pool` for instance `id`; `status` is merged in.
async fn launched_claim(
    client: &Client,
    name: &str,
    pool: &str,
    id: &str,
    status: serde_json::Value,
) -> NodeClaim {
    let api: Api<NodeClaim> = Api::all(client.clone());
    let claim: NodeClaim = serde_json::from_value(json!({
        "apiVersion": "spotwright.io/v1alpha1", "kind": "NodeClaim",
        "metadata": {"name": name, "labels": {"spotwright.io/nodepool": pool, TEST_LABEL: id}},
        "spec": {
            "nodeClassRef": {"name": "default"},
            "requirements": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}],
            "taints": [{"key": "e2e.spotwright.io/dedicated", "value": id, "effect": "NoSchedule"}],
            "startupTaints": [{"key": "e2e.spotwright.io/agent-not-ready", "effect": "NoExecute"}]
        }
    }))
    .expect("claim manifest");
    api.create(&PostParams::default(), &claim)
        .await
        .expect("claim created");
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let mut body = json!({
        "providerID": provider_id_of(id), "instanceType": "m5.large", "zone": "us-east-1a", "capacityType": "spot",
        "conditions": [{"type": "Launched", "status": "True", "reason": "Launched", "message": "", "lastTransitionTime": now}]
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), status.as_object()) {
        body.extend(extra.clone());
    }
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": body})),
    )
    .await
    .expect("claim status")
}

fn condition(claim: &NodeClaim, type_: &str) -> Option<String> {
    claim
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

/// The cluster state a test's controllers share: its own claims only.
fn state(client: &Client, id: &str) -> ClusterState {
    let config = StateConfig {
        claim_selector: Some(format!("{TEST_LABEL}={id}")),
    };
    ClusterState::watch(client, &config)
}

fn clock() -> SharedClock {
    Arc::new(SystemClock)
}

async fn cleanup(client: &Client, claim: &str, node: &str) {
    let claims: Api<NodeClaim> = Api::all(client.clone());
    let _ = claims
        .patch(
            claim,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"finalizers": null}})),
        )
        .await;
    let _ = claims.delete(claim, &DeleteParams::default()).await;
    let _ = Api::<Node>::all(client.clone())
        .delete(node, &DeleteParams::default())
        .await;
}

#[tokio::test]
async fn registration_labels_and_taints_the_node_and_records_conditions() {
    let _serial = SERIAL.lock().await;
    let client = env().client().await;
    let id = unique_suffix();
    let (claim_name, node_name) = (format!("e2e-reg-{id}"), format!("e2e-reg-{id}"));
    launched_claim(&client, &claim_name, "e2e-reg", &id, json!({})).await;
    kwok_node(&client, &node_name, &id, json!({})).await;

    let controller = tokio::spawn(registration::run(Registration {
        client: client.clone(),
        state: state(&client, &id),
        events: Events::new(client.clone()),
        clock: clock(),
        settings: RegistrationSettings::default(),
    }));

    let nodes: Api<Node> = Api::all(client.clone());
    let claims: Api<NodeClaim> = Api::all(client.clone());
    eventually(
        "the claim to be Registered, not yet Initialized",
        Duration::from_secs(30),
        || async {
            claims.get(&claim_name).await.ok().is_some_and(|c| {
                condition(&c, "Registered").as_deref() == Some("True")
                    && condition(&c, "Initialized").as_deref() == Some("False")
                    && c.status.as_ref().and_then(|s| s.node_name.as_deref())
                        == Some(node_name.as_str())
            })
        },
    )
    .await;
    let node = nodes.get(&node_name).await.expect("node");
    let labels = node.labels();
    for (key, value) in [
        ("spotwright.io/nodepool", "e2e-reg"),
        ("spotwright.io/capacity-type", "spot"),
        ("node.kubernetes.io/instance-type", "m5.large"),
        ("topology.kubernetes.io/zone", "us-east-1a"),
        ("kubernetes.io/arch", "amd64"),
        ("user-label", "kept"),
    ] {
        assert_eq!(
            labels.get(key).map(String::as_str),
            Some(value),
            "label {key}"
        );
    }
    let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
    let keys: Vec<&str> = taints.iter().map(|t| t.key.as_str()).collect();
    for key in [
        "user-taint",
        "e2e.spotwright.io/dedicated",
        "e2e.spotwright.io/agent-not-ready",
    ] {
        assert!(keys.contains(&key), "taint {key} in {keys:?}");
    }

    // The agent the startup taint waits for is done: the claim is initialized,
    // and the startup taint does not come back.
    let kept: Vec<_> = taints
        .into_iter()
        .filter(|t| t.key != "e2e.spotwright.io/agent-not-ready")
        .collect();
    nodes
        .patch(
            &node_name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"taints": kept}})),
        )
        .await
        .expect("startup taint removed");
    eventually(
        "the claim to be Initialized",
        Duration::from_secs(30),
        || async {
            claims
                .get(&claim_name)
                .await
                .ok()
                .is_some_and(|c| condition(&c, "Initialized").as_deref() == Some("True"))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let node = nodes.get(&node_name).await.expect("node");
    let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
    assert!(!taints
        .iter()
        .any(|t| t.key == "e2e.spotwright.io/agent-not-ready"));

    expect_events(&client, &claim_name, &["Registered", "Initialized"]).await;

    controller.abort();
    cleanup(&client, &claim_name, &node_name).await;
}

#[tokio::test]
async fn a_node_write_refused_for_a_stale_read_is_decided_again_and_retried() {
    let _serial = SERIAL.lock().await;
    let client = env().client().await;
    let id = unique_suffix();
    let (claim_name, node_name) = (format!("e2e-stale-{id}"), format!("e2e-stale-{id}"));
    let claim = launched_claim(&client, &claim_name, "e2e-stale", &id, json!({})).await;
    let stale = kwok_node(&client, &node_name, &id, json!({})).await;
    // Someone else writes the Node after our read, as its agent and the
    // node controller do in its first second.
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch(
            &node_name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"written-meanwhile": "yes"}}})),
        )
        .await
        .expect("a concurrent write");
    let ctx = Registration {
        client: client.clone(),
        state: state(&client, &id),
        events: Events::new(client.clone()),
        clock: clock(),
        settings: RegistrationSettings::default(),
    };
    let now = k8s_openapi::jiff::Timestamp::now();
    let decision = registration::decide(&claim, Some(&stale), None, &ctx.settings, now);

    let written = registration::write_node(&ctx, &claim, &stale, None, decision, now)
        .await
        .expect("the write is retried on the Node as it is now");

    assert!(
        matches!(written, registration::RegistrationDecision::Register { .. }),
        "{written:?}"
    );
    let node = nodes.get(&node_name).await.expect("node");
    let labels = node.labels();
    assert_eq!(
        labels.get("spotwright.io/nodepool").map(String::as_str),
        Some("e2e-stale")
    );
    assert_eq!(
        labels.get("written-meanwhile").map(String::as_str),
        Some("yes")
    );
    let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
    let keys: Vec<&str> = taints.iter().map(|t| t.key.as_str()).collect();
    for key in ["user-taint", "e2e.spotwright.io/dedicated"] {
        assert!(keys.contains(&key), "taint {key} in {keys:?}");
    }
    cleanup(&client, &claim_name, &node_name).await;
}

fn has_unregistered_taint(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| ts.iter().any(|t| t.key == keys::UNREGISTERED_TAINT_KEY))
}

/// A KWOK node as Spotwright's user data registers it: with the
/// registration taint beside the test's own.
async fn unregistered_kwok_node(client: &Client, name: &str, id: &str) {
    let node = kwok_node(client, name, id, json!({})).await;
    let mut taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
    taints.push(k8s_openapi::api::core::v1::Taint {
        key: keys::UNREGISTERED_TAINT_KEY.to_owned(),
        effect: "NoSchedule".to_owned(),
        ..Default::default()
    });
    Api::<Node>::all(client.clone())
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"taints": taints}})),
        )
        .await
        .expect("registration taint added");
}

#[tokio::test]
async fn registration_opens_a_launch_group_s_nodes_together() {
    let _serial = SERIAL.lock().await;
    let client = env().client().await;
    let id = unique_suffix();
    let claims: Api<NodeClaim> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    let members: Vec<(String, String)> = ["a", "b"]
        .iter()
        .map(|m| (format!("e2e-gate-{id}{m}"), format!("{id}{m}")))
        .collect();
    for (name, instance) in &members {
        launched_claim(&client, name, "e2e-gate", instance, json!({})).await;
        let group = json!({"metadata": {
            "labels": {TEST_LABEL: id},
            "annotations": {keys::LAUNCH_GROUP_ANNOTATION: format!("{id}/2")}}});
        claims
            .patch(name, &PatchParams::default(), &Patch::Merge(&group))
            .await
            .expect("claim joins the group");
    }
    let (first, second) = (&members[0], &members[1]);
    unregistered_kwok_node(&client, &first.0, &first.1).await;
    let controller = tokio::spawn(registration::run(Registration {
        client: client.clone(),
        state: state(&client, &id),
        events: Events::new(client.clone()),
        clock: clock(),
        settings: RegistrationSettings {
            gate: Duration::from_secs(60),
            ..RegistrationSettings::default()
        },
    }));
    eventually(
        "the first claim to be Registered",
        Duration::from_secs(30),
        || async {
            claims
                .get(&first.0)
                .await
                .ok()
                .is_some_and(|c| condition(&c, "Registered").as_deref() == Some("True"))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let waiting = nodes.get(&first.0).await.expect("first node");
    assert!(
        has_unregistered_taint(&waiting),
        "the first node waits for its sibling"
    );

    unregistered_kwok_node(&client, &second.0, &second.1).await;
    eventually(
        "both nodes to lose the registration taint",
        Duration::from_secs(20),
        || async {
            let mut open = true;
            for (name, _) in &members {
                open &= nodes
                    .get(name)
                    .await
                    .is_ok_and(|n| !has_unregistered_taint(&n));
            }
            open
        },
    )
    .await;

    controller.abort();
    for (name, _) in &members {
        cleanup(&client, name, name).await;
    }
}

#[tokio::test]
async fn a_claim_whose_node_never_registers_is_deleted_after_the_timeout() {
    let _serial = SERIAL.lock().await;
    let client = env().client().await;
    let id = unique_suffix();
    let claim_name = format!("e2e-late-{id}");
    launched_claim(&client, &claim_name, "e2e-late", &id, json!({})).await;
    let settings = RegistrationSettings {
        registration_timeout: Duration::from_secs(3),
        ..RegistrationSettings::default()
    };
    let controller = tokio::spawn(registration::run(Registration {
        client: client.clone(),
        state: state(&client, &id),
        events: Events::new(client.clone()),
        clock: clock(),
        settings,
    }));
    let claims: Api<NodeClaim> = Api::all(client.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        matches!(claims.get_opt(&claim_name).await, Ok(Some(_))),
        "deleted before the timeout"
    );
    eventually(
        "the unregistered claim to be deleted",
        Duration::from_secs(45),
        || async { matches!(claims.get_opt(&claim_name).await, Ok(None)) },
    )
    .await;
    expect_events(&client, &claim_name, &["RegistrationTimedOut"]).await;
    controller.abort();
}

/// The ReplicaSet's web pods bound to `node`.
async fn web_pods(pods: &Api<Pod>, node: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels("app=web"))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
        .collect()
}

/// A claim's node running one web pod that its PodDisruptionBudget
/// (`pdb_spec`) does not let go, a DaemonSet pod beside it, and a
/// termination controller that has put its finalizer on the claim.
struct BlockedDrain {
    client: Client,
    id: String,
    claim_name: String,
    node_name: String,
    namespace: String,
    instances: Arc<FakeInstances>,
    deleted_at_grace: prometheus::IntCounter,
    controller: tokio::task::JoinHandle<()>,
}

impl BlockedDrain {
    async fn set_up(name: &str, pdb_spec: serde_json::Value, grace: Option<&str>) -> BlockedDrain {
        let client = env().client().await;
        let id = unique_suffix();
        let object_name = format!("e2e-{name}-{id}");
        let (claim_name, node_name, namespace) =
            (object_name.clone(), object_name.clone(), object_name);
        kwok_node(&client, &node_name, &id, json!({})).await;
        launched_claim(
            &client,
            &claim_name,
            &format!("e2e-{name}"),
            &id,
            json!({"nodeName": node_name}),
        )
        .await;
        let claims: Api<NodeClaim> = Api::all(client.clone());
        if let Some(grace) = grace {
            let spec = json!({"spec": {"terminationGracePeriod": grace}});
            claims
                .patch(&claim_name, &PatchParams::default(), &Patch::Merge(&spec))
                .await
                .expect("grace period set");
        }
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let manifest = json!({"metadata": {"name": namespace}});
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(manifest).expect("ns"),
            )
            .await
            .expect("namespace");
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        // Managed, as a PDB with maxUnavailable needs: once gone, its
        // replacement waits Pending, the node being cordoned.
        let web: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": node_name},
                    "tolerations": [{"key": "user-taint", "operator": "Exists"}],
                    "containers": [{"name": "web", "image": "registry.k8s.io/pause:3.10"}]}}}
        }))
        .expect("replica set");
        Api::<ReplicaSet>::namespaced(client.clone(), &namespace)
            .create(&PostParams::default(), &web)
            .await
            .expect("replica set created");
        let daemon = json!({
            "metadata": {"name": "agent", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": "00000000-0000-0000-0000-000000000001"}]},
            "spec": {
                "nodeName": node_name,
                "tolerations": [{"operator": "Exists"}],
                "containers": [{"name": "agent", "image": "registry.k8s.io/pause:3.10"}]
            }
        });
        let daemon: Pod = serde_json::from_value(daemon).expect("pod");
        pods.create(&PostParams::default(), &daemon)
            .await
            .expect("pod created");
        let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &namespace);
        let pdb = json!({"metadata": {"name": "web"}, "spec": pdb_spec});
        let pdb: PodDisruptionBudget = serde_json::from_value(pdb).expect("pdb");
        pdbs.create(&PostParams::default(), &pdb)
            .await
            .expect("pdb created");
        eventually(
            "the pod to run and the PDB to count it",
            Duration::from_secs(30),
            || async {
                let running = web_pods(&pods, &node_name)
                    .await
                    .iter()
                    .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
                let counted = pdbs
                    .get("web")
                    .await
                    .ok()
                    .and_then(|p| p.status)
                    .is_some_and(|s| {
                        s.current_healthy == Some(1) && s.disruptions_allowed == Some(0)
                    });
                running && counted
            },
        )
        .await;

        let instances = Arc::new(FakeInstances::default());
        let deleted_at_grace =
            prometheus::IntCounter::new("deleted_at_grace", "pods deleted").expect("counter");
        let settings = TerminationSettings {
            drain_poll: Duration::from_millis(500),
            eviction_backoff: Duration::from_secs(1),
            pods_deleted_at_grace: Some(deleted_at_grace.clone()),
            ..TerminationSettings::default()
        };
        let controller = tokio::spawn(termination::run(Termination {
            client: client.clone(),
            state: state(&client, &id),
            events: Events::new(client.clone()),
            clock: clock(),
            instances: instances.clone(),
            settings,
        }));
        eventually(
            "the termination finalizer on the claim",
            Duration::from_secs(30),
            || async {
                claims
                    .get(&claim_name)
                    .await
                    .ok()
                    .is_some_and(|c| c.finalizers().iter().any(|f| f == TERMINATION_FINALIZER))
            },
        )
        .await;
        BlockedDrain {
            client,
            id,
            claim_name,
            node_name,
            namespace,
            instances,
            deleted_at_grace,
            controller,
        }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// No web pod is left on the node but one being deleted.
    async fn web_is_going(&self) -> bool {
        let left = web_pods(&self.pods(), &self.node_name).await;
        left.iter().all(|p| p.metadata.deletion_timestamp.is_some())
    }

    /// Waits for the claim to be gone, then checks the node and instance went too.
    async fn assert_finished(&self) {
        let claims: Api<NodeClaim> = Api::all(self.client.clone());
        eventually("the claim to be gone", Duration::from_secs(60), || async {
            matches!(claims.get_opt(&self.claim_name).await, Ok(None))
        })
        .await;
        assert!(self.web_is_going().await, "the web pod is gone or going");
        let nodes: Api<Node> = Api::all(self.client.clone());
        assert!(
            matches!(nodes.get_opt(&self.node_name).await, Ok(None)),
            "node deleted"
        );
        assert_eq!(self.instances.terminated(), vec![instance_of(&self.id)]);
    }

    async fn clean_up(self) {
        self.controller.abort();
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let _ = namespaces
            .delete(&self.namespace, &DeleteParams::default())
            .await;
        cleanup(&self.client, &self.claim_name, &self.node_name).await;
    }
}

#[tokio::test]
async fn termination_drains_through_a_pdb_then_terminates_and_deletes() {
    let _serial = SERIAL.lock().await;
    let drain = BlockedDrain::set_up(
        "term",
        json!({"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}),
        None,
    )
    .await;
    let client = drain.client.clone();
    let claims: Api<NodeClaim> = Api::all(client.clone());
    claims
        .delete(&drain.claim_name, &DeleteParams::default())
        .await
        .expect("claim deleted");

    let nodes: Api<Node> = Api::all(client.clone());
    eventually(
        "the node to be tainted disrupted and cordoned",
        Duration::from_secs(30),
        || async {
            nodes
                .get(&drain.node_name)
                .await
                .ok()
                .and_then(|n| n.spec)
                .is_some_and(|s| {
                    s.unschedulable == Some(true)
                        && s.taints
                            .unwrap_or_default()
                            .iter()
                            .any(|t| t.key == "spotwright.io/disrupted" && t.effect == "NoSchedule")
                })
        },
    )
    .await;
    // The budget refuses: the pod stays, nothing is terminated, and the
    // blocked drain is reported.
    eventually("a DrainBlocked Event", Duration::from_secs(30), || async {
        event_reasons(&client, &drain.claim_name)
            .await
            .iter()
            .any(|r| r == "DrainBlocked")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!drain.web_is_going().await, "evicted despite the PDB");
    assert!(
        drain.instances.terminated().is_empty(),
        "terminated before the drain"
    );
    let claim = claims
        .get(&drain.claim_name)
        .await
        .expect("claim held by its finalizer");
    assert_eq!(condition(&claim, "Disrupting").as_deref(), Some("True"));

    // The budget allows it now: drained, terminated, gone.
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &drain.namespace);
    pdbs.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"minAvailable": 0}})),
    )
    .await
    .expect("pdb relaxed");
    drain.assert_finished().await;
    assert_eq!(drain.deleted_at_grace.get(), 0, "evicted, not deleted");
    drain.clean_up().await;
}

#[tokio::test]
async fn a_termination_grace_period_ends_a_drain_a_pdb_blocks() {
    let _serial = SERIAL.lock().await;
    const GRACE_SECONDS: u64 = 8;
    let pdb = json!({"maxUnavailable": 0, "selector": {"matchLabels": {"app": "web"}}});
    let grace = format!("{GRACE_SECONDS}s");
    let drain = BlockedDrain::set_up("grace", pdb, Some(&grace)).await;
    let claims: Api<NodeClaim> = Api::all(drain.client.clone());
    let deleted = std::time::Instant::now();
    claims
        .delete(&drain.claim_name, &DeleteParams::default())
        .await
        .expect("claim deleted");
    eventually("the web pod to be deleted", Duration::from_secs(60), || {
        drain.web_is_going()
    })
    .await;
    let waited = deleted.elapsed();
    assert!(
        waited >= Duration::from_secs(GRACE_SECONDS - 2),
        "the PDB held the pod for the grace period, not {waited:?}"
    );
    drain.assert_finished().await;
    expect_events(
        &drain.client,
        &drain.claim_name,
        &["DrainBlocked", "PodDeletedAfterGracePeriod"],
    )
    .await;
    assert_eq!(drain.deleted_at_grace.get(), 1, "one pod deleted");
    drain.clean_up().await;
}

#[tokio::test]
async fn removal_deletes_the_claim_of_an_empty_node_unless_told_not_to() {
    let _serial = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    let id = unique_suffix();
    let pool = format!("e2e-rm-{id}");
    let nodepool = json!({
        "apiVersion": "spotwright.io/v1alpha1", "kind": "NodePool", "metadata": {"name": pool},
        "spec": {
            "template": {"spec": {"nodeClassRef": {"name": "default"}}},
            "disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "2s"}
        }
    });
    env.apply(&nodepool);
    // Initialized 5 minutes ago: past the nomination window, in which a
    // new node is never removed as empty.
    let now = k8s_openapi::jiff::Timestamp::now().as_second() - 300;
    let now = k8s_openapi::jiff::Timestamp::from_second(now)
        .expect("a timestamp")
        .to_string();
    let initialized = |node: &str| {
        json!({"nodeName": node, "conditions": [
            {"type": "Launched", "status": "True", "reason": "Launched", "message": "", "lastTransitionTime": now},
            {"type": "Registered", "status": "True", "reason": "NodeRegistered", "message": "", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "reason": "NodeInitialized", "message": "", "lastTransitionTime": now}
        ]})
    };
    // Two empty nodes: one plain, one marked do-not-disrupt.
    let (empty, kept) = (format!("{pool}-empty"), format!("{pool}-kept"));
    let kept_id = format!("{id}1");
    kwok_node(&client, &empty, &id, json!({})).await;
    kwok_node(&client, &kept, &kept_id, json!({})).await;
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch(
            &kept,
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"metadata": {"annotations": {"spotwright.io/do-not-disrupt": "true"}}}),
            ),
        )
        .await
        .expect("annotated");
    launched_claim(&client, &empty, &pool, &id, initialized(&empty)).await;
    let claims: Api<NodeClaim> = Api::all(client.clone());
    let kept_claim: NodeClaim = serde_json::from_value(json!({
        "apiVersion": "spotwright.io/v1alpha1", "kind": "NodeClaim",
        "metadata": {"name": kept, "labels": {"spotwright.io/nodepool": pool, TEST_LABEL: id}},
        "spec": {"nodeClassRef": {"name": "default"}}
    }))
    .expect("claim");
    claims
        .create(&PostParams::default(), &kept_claim)
        .await
        .expect("kept claim");
    let mut status = initialized(&kept);
    status["providerID"] = json!(provider_id_of(&kept_id));
    claims
        .patch_status(
            &kept,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await
        .expect("kept status");

    let settings = EmptinessSettings {
        sweep_interval: Duration::from_millis(500),
        ..EmptinessSettings::default()
    };
    let controller = tokio::spawn(emptiness::run(Emptiness {
        client: client.clone(),
        state: state(&client, &id),
        events: Events::new(client.clone()),
        clock: clock(),
        settings,
    }));
    eventually(
        "the empty node's claim to be deleted",
        Duration::from_secs(30),
        || async { matches!(claims.get_opt(&empty).await, Ok(None)) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        matches!(claims.get_opt(&kept).await, Ok(Some(_))),
        "do-not-disrupt node removed"
    );

    controller.abort();
    cleanup(&client, &empty, &empty).await;
    cleanup(&client, &kept, &kept).await;
    env.kubectl(&["delete", "nodepool", &pool, "--ignore-not-found"]);
}

/// Emptiness and the pod-events recorder, as a leading provisioner runs them.
fn removal_controllers(client: &Client, id: &str) -> [tokio::task::JoinHandle<()>; 2] {
    let state = state(client, id);
    let recorder = tokio::spawn(pod_events::run(PodEvents {
        client: client.clone(),
        state: state.clone(),
        clock: clock(),
        sweep_interval: Duration::from_millis(500),
    }));
    let emptiness = tokio::spawn(emptiness::run(Emptiness {
        client: client.clone(),
        state,
        events: Events::new(client.clone()),
        clock: clock(),
        settings: EmptinessSettings {
            sweep_interval: Duration::from_millis(500),
            ..EmptinessSettings::default()
        },
    }));
    [recorder, emptiness]
}

/// A WhenEmpty pool named `<prefix>-<id>` with `consolidate_after`, and one
/// initialized claim of it whose KWOK node runs one pod, all three named
/// after the pool. Returns that name.
async fn one_pod_on_an_initialized_node(
    env: &Env,
    client: &Client,
    id: &str,
    prefix: &str,
    consolidate_after: &str,
) -> String {
    let pool = format!("{prefix}-{id}");
    env.apply(&json!({
        "apiVersion": "spotwright.io/v1alpha1", "kind": "NodePool", "metadata": {"name": pool},
        "spec": {
            "template": {"spec": {"nodeClassRef": {"name": "default"}}},
            "disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": consolidate_after}
        }
    }));
    let long_ago = Timestamp::now() - Duration::from_secs(300);
    let long_ago = Timestamp::from_second(long_ago.as_second())
        .expect("a timestamp")
        .to_string();
    kwok_node(client, &pool, id, json!({})).await;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": pool},
        "spec": {"nodeName": pool, "tolerations": [{"operator": "Exists"}],
                 "containers": [{"name": "c", "image": "fake"}]}
    }))
    .expect("pod manifest");
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .expect("pod bound to the node");
    launched_claim(client, &pool, &pool, id, json!({"nodeName": pool, "conditions": [
        {"type": "Launched", "status": "True", "reason": "Launched", "message": "", "lastTransitionTime": long_ago},
        {"type": "Registered", "status": "True", "reason": "NodeRegistered", "message": "", "lastTransitionTime": long_ago},
        {"type": "Initialized", "status": "True", "reason": "NodeInitialized", "message": "", "lastTransitionTime": long_ago}
    ]}))
    .await;
    pool
}

/// What the claim records: its last pod event and the pods then.
async fn recorded_on(claims: &Api<NodeClaim>, name: &str) -> Option<PodsSeen> {
    claims
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .as_ref()
        .and_then(model::pod_events::recorded)
}

/// One pod on an initialized node of a WhenEmpty pool, with emptiness and
/// the recorder running and the pod's landing recorded.
struct RecordedNode {
    pool: String,
    pods: Api<Pod>,
    claims: Api<NodeClaim>,
    controllers: [tokio::task::JoinHandle<()>; 2],
}

impl RecordedNode {
    async fn start(env: &Env, client: &Client, id: &str, prefix: &str, after: &str) -> Self {
        let pool = one_pod_on_an_initialized_node(env, client, id, prefix, after).await;
        let claims: Api<NodeClaim> = Api::all(client.clone());
        let controllers = removal_controllers(client, id);
        eventually("a recorded pod event", Duration::from_secs(10), || async {
            recorded_on(&claims, &pool).await.is_some()
        })
        .await;
        let pods = Api::namespaced(client.clone(), "default");
        RecordedNode {
            pool,
            pods,
            claims,
            controllers,
        }
    }

    async fn recorded(&self) -> Option<PodsSeen> {
        recorded_on(&self.claims, &self.pool).await
    }

    async fn delete_the_pod(&self) {
        self.pods
            .delete(&self.pool, &DeleteParams::default().grace_period(0))
            .await
            .expect("pod deleted");
    }

    /// The restart: every controller and its memory gone, then new ones.
    fn restart(&mut self, client: &Client, id: &str) {
        self.stop();
        self.controllers = removal_controllers(client, id);
    }

    fn stop(&self) {
        self.controllers.iter().for_each(|task| task.abort());
    }

    async fn removed_within(&self, within: Duration) {
        eventually("the empty node's claim to be deleted", within, || async {
            matches!(self.claims.get_opt(&self.pool).await, Ok(None))
        })
        .await;
    }

    async fn clean_up(self, env: &Env, client: &Client) {
        self.stop();
        cleanup(client, &self.pool, &self.pool).await;
        env.kubectl(&["delete", "nodepool", &self.pool, "--ignore-not-found"]);
    }
}

/// The claim records when its node's last pod left, and a provisioner that
/// starts again (new controllers, nothing in memory) 15 s later removes the
/// node `consolidateAfter` (30 s) after that, not 30 s after it started.
#[tokio::test]
async fn an_empty_node_s_timer_survives_a_restart_through_the_recorded_pod_event() {
    let _serial = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    let id = unique_suffix();
    let mut node = RecordedNode::start(env, &client, &id, "e2e-resume", "30s").await;

    node.delete_the_pod().await;
    let emptied = Timestamp::now();
    let emptied_second = Timestamp::from_second(emptied.as_second()).expect("a timestamp");
    eventually(
        "the pod's leaving recorded",
        Duration::from_secs(15),
        || async {
            node.recorded()
                .await
                .is_some_and(|at| at.since >= emptied_second)
        },
    )
    .await;
    let at = node.recorded().await.expect("recorded").since;
    assert!(
        at.duration_since(emptied).as_secs_f64() < 3.0,
        "recorded {at}, the pod left at {emptied}"
    );

    tokio::time::sleep(Duration::from_secs(15).saturating_sub(elapsed(emptied, Timestamp::now())))
        .await;
    assert!(
        matches!(node.claims.get_opt(&node.pool).await, Ok(Some(_))),
        "removed before consolidateAfter"
    );
    node.restart(&client, &id);
    node.removed_within(Duration::from_secs(45)).await;
    let removed_after = elapsed(emptied, Timestamp::now()).as_secs_f64();
    assert!(
        (28.0..42.0).contains(&removed_after),
        "removed {removed_after:.1} s after the pod left: consolidateAfter is 30 s, and a timer started again at the restart ends after 45 s"
    );
    node.clean_up(env, &client).await;
}

/// A pod that leaves while no provisioner runs: the claim's record names
/// pods the node no longer holds, so a provisioner that starts again times
/// the node from its first look, not from the record (by then older than
/// `consolidateAfter`, which would remove the node at once).
#[tokio::test]
async fn a_pod_that_left_while_no_provisioner_ran_starts_the_timer_again() {
    let _serial = SERIAL.lock().await;
    let env = env();
    let client = env.client().await;
    let id = unique_suffix();
    let mut node = RecordedNode::start(env, &client, &id, "e2e-unseen", "15s").await;
    let record = node.recorded().await.expect("recorded");
    node.stop();

    // Nothing runs while the record grows older than consolidateAfter and
    // the pod leaves.
    tokio::time::sleep(Duration::from_secs(17)).await;
    node.delete_the_pod().await;
    eventually("the pod gone", Duration::from_secs(10), || async {
        matches!(node.pods.get_opt(&node.pool).await, Ok(None))
    })
    .await;
    assert_eq!(node.recorded().await, Some(record), "nobody wrote");

    let restarted = Timestamp::now();
    node.restart(&client, &id);
    node.removed_within(Duration::from_secs(40)).await;
    let removed_after = elapsed(restarted, Timestamp::now()).as_secs_f64();
    assert!(
        (13.0..27.0).contains(&removed_after),
        "removed {removed_after:.1} s after the restart: consolidateAfter is 15 s, and a timer resumed from the record (taken while the pod ran) ends at once"
    );
    node.clean_up(env, &client).await;
}

#[tokio::test]
async fn only_one_elector_leads_and_the_other_takes_over_when_it_stops() {
    let _serial = SERIAL.lock().await;
    let client = env().client().await;
    let id = unique_suffix();
    let settings = |who: &str| LeaderSettings {
        namespace: "default".to_owned(),
        lease_name: format!("e2e-lease-{id}"),
        identity: format!("{who}-{id}"),
        lease_duration: Duration::from_secs(4),
        renew_interval: Duration::from_secs(1),
        retry_interval: Duration::from_millis(300),
    };
    let leading = Arc::new(Mutex::new(Vec::<String>::new()));
    let elector = |who: &'static str| {
        let (client, settings, leading) = (client.clone(), settings(who), leading.clone());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            run_as_leader(client, settings, async move {
                if let Ok(mut l) = leading.lock() {
                    l.push(who.to_owned());
                }
                let _ = stop_rx.await;
            })
            .await
        });
        (task, stop_tx)
    };
    let (a, stop_a) = elector("a");
    let (b, stop_b) = elector("b");
    let leaders = || leading.lock().map(|l| l.clone()).unwrap_or_default();
    eventually("a leader", Duration::from_secs(10), || async {
        !leaders().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let first = leaders();
    assert_eq!(first.len(), 1, "two leaders at once: {first:?}");

    // The leader steps down cleanly: the other takes over at once.
    let (first_task, second_task, second_stop) = if first[0] == "a" {
        let _ = stop_a.send(());
        (a, b, stop_b)
    } else {
        let _ = stop_b.send(());
        (b, a, stop_a)
    };
    let finished = first_task.await.expect("elector task");
    assert!(
        finished.is_ok(),
        "stepping down is not a loss: {finished:?}"
    );
    eventually(
        "the other elector to lead",
        Duration::from_secs(10),
        || async { leaders().len() == 2 },
    )
    .await;
    let both = leaders();
    assert_ne!(both[0], both[1]);

    // A third elector waits while the second leads; when the second crashes
    // (no release), the third takes over after the lease expires.
    let (third, stop_third) = elector("c");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(leaders().len(), 2, "took a live lease");
    second_task.abort();
    drop(second_stop);
    eventually(
        "the third elector to lead after expiry",
        Duration::from_secs(15),
        || async { leaders().len() == 3 },
    )
    .await;
    let _ = stop_third.send(());
    let _ = third.await;
    let _ = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), "default")
        .delete(&format!("e2e-lease-{id}"), &DeleteParams::default())
        .await;
}

/// The API server checks NodePools as the CRD says: `Gte`/`Lte` (and
/// `Gt`/`Lt`) take one integer, `Exists` takes no values, `limits` keys are
/// resources Spotwright counts with quantities, `minValuesPolicy` is
/// `Strict` or `BestEffort`.
#[tokio::test]
async fn the_api_server_accepts_gte_lte_and_every_limit_and_refuses_malformed_ones() {
    let client = env().client().await;
    let resource = kube::api::ApiResource::erase::<spotwright_api::NodePool>(&());
    // Untyped: a bad enum value must reach the API server to be refused.
    let pools: Api<kube::api::DynamicObject> = Api::all_with(client, &resource);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let pool = |(requirement, limits, policy): &(serde_json::Value, serde_json::Value, &str)| {
        let mut object =
            kube::api::DynamicObject::new(&format!("e2e-ops-{}", unique_suffix()), &resource);
        object.data = json!({"spec": {
            "template": {"spec": {"nodeClassRef": {"name": "default"},
                "requirements": [requirement], "minValuesPolicy": policy}},
            "limits": limits}});
        object
    };
    let exists = json!({"key": "spotwright.io/instance-family", "operator": "Exists"});
    let gte = json!({"key": "spotwright.io/instance-cpu", "operator": "Gte", "values": ["4"]});
    let lte =
        json!({"key": "spotwright.io/instance-memory", "operator": "Lte", "values": ["65536"]});
    let every_limit = json!({"cpu": "1000", "memory": "4000Gi", "ephemeral-storage": "10Ti",
        "pods": 500, "nodes": 20, "nvidia.com/gpu": 8});
    for case in [
        (gte, json!({}), "Strict"),
        (lte, json!({}), "Strict"),
        (exists.clone(), every_limit, "BestEffort"),
    ] {
        let created = pools.create(&dry_run, &pool(&case)).await;
        assert!(created.is_ok(), "{case:?} refused: {created:?}");
    }
    for (case, message) in [
        (
            (
                json!({"key": "spotwright.io/instance-cpu", "operator": "Gte", "values": ["four"]}),
                json!({}),
                "Strict",
            ),
            "one integer",
        ),
        (
            (
                json!({"key": "spotwright.io/instance-cpu", "operator": "Lt", "values": ["1", "2"]}),
                json!({}),
                "Strict",
            ),
            "one integer",
        ),
        (
            (
                json!({"key": "spotwright.io/instance-family", "operator": "Exists", "values": ["m5"]}),
                json!({}),
                "Strict",
            ),
            "no values",
        ),
        (
            (exists.clone(), json!({"gpus": 4}), "Strict"),
            "limits keys are",
        ),
        (
            (exists.clone(), json!({"nodes": "twenty"}), "Strict"),
            "should match",
        ),
        (
            (exists.clone(), json!({}), "Sometimes"),
            "Unsupported value",
        ),
    ] {
        match pools.create(&dry_run, &pool(&case)).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{case:?}: {status:?}");
                assert!(
                    status.message.contains(message),
                    "{case:?}: {}",
                    status.message
                );
            }
            other => panic!("{case:?} was not refused: {other:?}"),
        }
    }
}
