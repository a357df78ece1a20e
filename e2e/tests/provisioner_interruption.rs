//! The interruption loop against moto's SQS and the real API server: a Spot
//! interruption warning for a Spotwright instance deletes its NodeClaim,
//! marks its offering unavailable and writes the interruption record the
//! extender reads; a malformed body and a notice for an unknown instance
//! are counted and deleted, and the queue ends empty.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use spotwright_api::interruption::{InterruptionRecord, LABEL_SELECTOR};
use spotwright_api::keys::CapacityType;
use spotwright_api::NodeClaim;
use spotwright_api::NodePool;
use spotwright_e2e::harness::process::eventually;
use spotwright_e2e::harness::{env, unique_suffix};
use spotwright_provisioner::act::aws::fleet::ClusterSettings;
use spotwright_provisioner::act::ec2_launcher::Ec2Launcher;
use spotwright_provisioner::act::events::Events;
use spotwright_provisioner::controllers::interruption::{
    self, event_name, Interruption, InterruptionSettings,
};
use spotwright_provisioner::metrics::Metrics;
use spotwright_provisioner::model::clock::SystemClock;
use spotwright_provisioner::state::{ClusterState, StateConfig};

const EVENTS_NAMESPACE: &str = "default";

fn spot_warning(instance_id: &str) -> String {
    json!({
        "version": "0",
        "id": "1e5527d7-bb36-4607-3370-4164db56a40e",
        "detail-type": "EC2 Spot Instance Interruption Warning",
        "source": "aws.ec2",
        "account": "123456789012",
        "time": "2026-11-25T13:00:00Z",
        "region": "us-east-1",
        "resources": [format!("arn:aws:ec2:us-east-1a:instance/{instance_id}")],
        "detail": {"instance-id": instance_id, "instance-action": "terminate"}
    })
    .to_string()
}

async fn launched_claim(client: &Client, name: &str, pool: &str, instance_id: &str) {
    let api: Api<NodeClaim> = Api::all(client.clone());
    let claim: NodeClaim = serde_json::from_value(json!({
        "apiVersion": "spotwright.io/v1alpha1", "kind": "NodeClaim",
        "metadata": {"name": name, "labels": {"spotwright.io/nodepool": pool}},
        "spec": {
            "nodeClassRef": {"name": "default"},
            "requirements": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]
        }
    }))
    .expect("claim manifest");
    api.create(&PostParams::default(), &claim)
        .await
        .expect("claim created");
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {
            "providerID": format!("aws:///us-east-1a/{instance_id}"),
            "instanceType": "m5.large", "zone": "us-east-1a", "capacityType": "spot",
            "nodeName": name,
            "conditions": [{"type": "Launched", "status": "True", "reason": "Launched", "message": "", "lastTransitionTime": now}]
        }})),
    )
    .await
    .expect("claim status");
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"},
                     "labels": {"kubernetes.io/hostname": name, "type": "kwok"}},
        "spec": {"providerID": format!("aws:///us-east-1a/{instance_id}")}
    }))
    .expect("node manifest");
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .expect("node created");
}

async fn queue_counts(sqs: &aws_sdk_sqs::Client, url: &str) -> (u64, u64) {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("GetQueueAttributes")
        .attributes
        .unwrap_or_default();
    let count = |name: &A| {
        attributes
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(u64::MAX)
    };
    (
        count(&A::ApproximateNumberOfMessages),
        count(&A::ApproximateNumberOfMessagesNotVisible),
    )
}

fn launcher(config: &aws_config::SdkConfig) -> Arc<Ec2Launcher> {
    Arc::new(Ec2Launcher::new(
        aws_sdk_ec2::Client::new(config),
        ClusterSettings {
            name: "e2e".into(),
            endpoint: String::new(),
            certificate_authority: String::new(),
            service_cidr: None,
        },
    ))
}

/// The interruption loop on its own cluster state, reading the queue every
/// second; with its launcher and metrics, for the test to look at.
fn start_loop(
    client: &kube::Client,
    sqs: &aws_sdk_sqs::Client,
    config: &aws_config::SdkConfig,
    queue_url: &str,
) -> (tokio::task::JoinHandle<()>, Arc<Ec2Launcher>, Metrics) {
    let registry = prometheus::Registry::new();
    let metrics = Metrics::register(&registry).expect("metrics");
    let launcher = launcher(config);
    let settings = InterruptionSettings {
        wait_seconds: 1,
        ..InterruptionSettings::new(queue_url.to_owned(), EVENTS_NAMESPACE.into())
    };
    let looping = tokio::spawn(interruption::run(Interruption {
        client: client.clone(),
        state: ClusterState::watch(client, &StateConfig::default()),
        events: Events::new(client.clone()),
        clock: Arc::new(SystemClock),
        sqs: sqs.clone(),
        launcher: launcher.clone(),
        metrics: metrics.clone(),
        settings,
    }));
    (looping, launcher, metrics)
}

/// Messages of `kind` handled with `outcome`, as the metric counts them.
fn handled(metrics: &Metrics, kind: &str, outcome: &str) -> u64 {
    metrics
        .interruption_messages
        .with_label_values(&[kind, outcome])
        .get()
}

async fn send(sqs: &aws_sdk_sqs::Client, queue_url: &str, body: String) {
    sqs.send_message()
        .queue_url(queue_url)
        .message_body(body)
        .send()
        .await
        .expect("SendMessage");
}

async fn nodepool(client: &Client, name: &str, budget: &str) {
    let pool: NodePool = serde_json::from_value(json!({
        "apiVersion": "spotwright.io/v1alpha1", "kind": "NodePool", "metadata": {"name": name},
        "spec": {
            "template": {"spec": {
                "nodeClassRef": {"name": "default"},
                "requirements": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]
            }},
            "disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "Never", "budgets": [{"nodes": budget}]}
        }
    }))
    .expect("nodepool manifest");
    Api::<NodePool>::all(client.clone())
        .create(&PostParams::default(), &pool)
        .await
        .expect("nodepool created");
}

#[tokio::test]
async fn a_rebalance_marks_the_claim_for_replacement_and_a_scheduled_change_deletes() {
    let client = env().client().await;
    let config = spotwright_provisioner::act::aws::config::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let id = unique_suffix();
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("e2e-rebalance-{id}"))
        .send()
        .await
        .expect("CreateQueue on moto")
        .queue_url
        .expect("queue URL");
    let (frozen, open) = (format!("e2e-frozen-{id}"), format!("e2e-open-{id}"));
    nodepool(&client, &frozen, "0").await;
    nodepool(&client, &open, "1").await;
    let (kept, kept_instance) = (format!("e2e-rb-{id}"), format!("i-0e2erb{id}"));
    let (retired, retired_instance) = (format!("e2e-sc-{id}"), format!("i-0e2esc{id}"));
    launched_claim(&client, &kept, &frozen, &kept_instance).await;
    launched_claim(&client, &retired, &open, &retired_instance).await;

    let (looping, launcher, metrics) = start_loop(&client, &sqs, &config, &queue_url);
    let rebalance = json!({
        "version": "0", "id": "5f8d7d5e-1234-4c3e-9c5b-1f0e5d6a7b8c",
        "detail-type": "EC2 Instance Rebalance Recommendation", "source": "aws.ec2",
        "account": "123456789012", "time": "2026-11-25T13:00:00Z", "region": "us-east-1",
        "resources": [], "detail": {"instance-id": kept_instance}
    });
    let running = json!({
        "version": "0", "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2",
        "account": "123456789012", "time": "2026-11-25T13:00:00Z", "region": "us-east-1",
        "resources": [], "detail": {"instance-id": retired_instance, "state": "running"}
    });
    let health = json!({
        "version": "0", "id": "12134567-1234-1234-1234-123456789012",
        "detail-type": "AWS Health Event", "source": "aws.health",
        "account": "123456789012", "time": "2026-11-25T13:00:00Z", "region": "us-east-1",
        "resources": [retired_instance, "i-0e2enobody"],
        "detail": {
            "service": "EC2", "eventTypeCategory": "scheduledChange",
            "eventTypeCode": "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
            "affectedEntities": [{"entityValue": retired_instance}, {"entityValue": "i-0e2enobody"}]
        }
    });
    for body in [rebalance, running, health] {
        send(&sqs, &queue_url, body.to_string()).await;
    }
    let counter = |kind: &str, outcome: &str| handled(&metrics, kind, outcome);
    eventually(
        "all three messages handled",
        Duration::from_secs(60),
        || async {
            counter("rebalance", "marked") == 1
                && counter("state_change", "ignored") == 1
                && counter("scheduled_change", "deleted") == 1
        },
    )
    .await;
    let claims: Api<NodeClaim> = Api::all(client.clone());
    let still = claims
        .get(&kept)
        .await
        .expect("the rebalanced claim is kept");
    assert!(still.metadata.deletion_timestamp.is_none());
    assert!(
        still
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(spotwright_api::keys::REBALANCE_ANNOTATION)),
        "marked for replacement (disruption launches the new node first): {:?}",
        still.metadata.annotations
    );
    assert!(claims
        .get_opt(&retired)
        .await
        .expect("claim read")
        .is_none_or(|c| c.metadata.deletion_timestamp.is_some()));
    assert!(launcher.is_offering_unavailable(CapacityType::Spot, "m5.large", "us-east-1a"));
    eventually("the queue to be empty", Duration::from_secs(30), || async {
        queue_counts(&sqs, &queue_url).await == (0, 0)
    })
    .await;

    looping.abort();
    let _ = claims.delete(&kept, &DeleteParams::default()).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let pools: Api<NodePool> = Api::all(client.clone());
    for name in [&kept, &retired] {
        let _ = nodes.delete(name, &DeleteParams::default()).await;
    }
    for name in [&frozen, &open] {
        let _ = pools.delete(name, &DeleteParams::default()).await;
    }
    let _ = sqs.delete_queue().queue_url(&queue_url).send().await;
}

#[tokio::test]
async fn a_spot_interruption_deletes_the_claim_and_records_the_interruption() {
    let client = env().client().await;
    let config = spotwright_provisioner::act::aws::config::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let id = unique_suffix();
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("e2e-interruption-{id}"))
        .send()
        .await
        .expect("CreateQueue on moto")
        .queue_url
        .expect("queue URL");

    let (claim_name, instance_id) = (format!("e2e-intr-{id}"), format!("i-0e2e{id}"));
    launched_claim(&client, &claim_name, "e2e-interruption", &instance_id).await;

    let (looping, launcher, metrics) = start_loop(&client, &sqs, &config, &queue_url);

    for body in [
        "{not an event".to_owned(),
        spot_warning(&format!("i-0e2eunknown{id}")),
        spot_warning(&instance_id),
    ] {
        send(&sqs, &queue_url, body).await;
    }

    let counter = |kind: &str, outcome: &str| handled(&metrics, kind, outcome);
    eventually(
        "all three messages handled",
        Duration::from_secs(60),
        || async {
            counter("malformed", "malformed") == 1
                && counter("spot_interruption", "unknown_instance") == 1
                && counter("spot_interruption", "deleted") == 1
        },
    )
    .await;

    let claims: Api<NodeClaim> = Api::all(client.clone());
    eventually(
        "the claim to be deleted",
        Duration::from_secs(30),
        || async {
            match claims.get_opt(&claim_name).await {
                Ok(None) => true,
                Ok(Some(claim)) => claim.metadata.deletion_timestamp.is_some(),
                Err(_) => false,
            }
        },
    )
    .await;
    assert!(launcher.is_offering_unavailable(CapacityType::Spot, "m5.large", "us-east-1a"));

    let events: Api<Event> = Api::namespaced(client.clone(), EVENTS_NAMESPACE);
    let records = events
        .list(&ListParams::default().labels(LABEL_SELECTOR))
        .await
        .expect("events listed");
    let event = records
        .items
        .iter()
        .find(|e| {
            e.metadata.name.as_deref() == Some(event_name(&claim_name, &instance_id).as_str())
        })
        .expect("the interruption record");
    let record = InterruptionRecord::from_event(event).expect("a readable record");
    assert_eq!(
        (
            record.instance_type.as_str(),
            record.zone.as_str(),
            record.count
        ),
        ("m5.large", "us-east-1a", 1)
    );

    eventually("the queue to be empty", Duration::from_secs(30), || async {
        queue_counts(&sqs, &queue_url).await == (0, 0)
    })
    .await;
    assert_eq!(counter("malformed", "malformed"), 1);

    looping.abort();
    let _ = events
        .delete(
            &event_name(&claim_name, &instance_id),
            &DeleteParams::default(),
        )
        .await;
    let _ = Api::<Node>::all(client.clone())
        .delete(&claim_name, &DeleteParams::default())
        .await;
    let _ = sqs.delete_queue().queue_url(&queue_url).send().await;
}
